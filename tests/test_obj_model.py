"""Section-name classification, legacy map definitions against the raw section bytes, and
set_global (Aya's EbpfLoader::set_global) on the parsed object."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from kernel_sim.uapi.bpf_enums import AttachType, ProgType
from loader.obj import MapKind, PinningType, ProgramKind, load_object
from loader.obj.sections import classify_section

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    "section, kind, ptype, attach, target",
    [
        ("kprobe/do_sys_openat2", ProgramKind.KPROBE, ProgType.KPROBE, None, "do_sys_openat2"),
        ("kprobe", ProgramKind.KPROBE, ProgType.KPROBE, None, None),  # Aya: target from attach()
        ("kretprobe/vfs_read", ProgramKind.KRETPROBE, ProgType.KPROBE, None, "vfs_read"),
        ("uprobe//usr/lib/libc.so.6:malloc", ProgramKind.UPROBE, ProgType.KPROBE, None, "/usr/lib/libc.so.6:malloc"),
        ("uretprobe", ProgramKind.URETPROBE, ProgType.KPROBE, None, None),
        ("tracepoint/syscalls/sys_enter_openat", ProgramKind.TRACEPOINT, ProgType.TRACEPOINT, None,
         ("syscalls", "sys_enter_openat")),
        ("tp/sched/sched_switch", ProgramKind.TRACEPOINT, ProgType.TRACEPOINT, None, ("sched", "sched_switch")),
        ("tracepoint/broken", ProgramKind.TRACEPOINT, ProgType.TRACEPOINT, None, None),
        ("raw_tracepoint/sched_switch", ProgramKind.RAW_TRACEPOINT, ProgType.RAW_TRACEPOINT, None, "sched_switch"),
        ("raw_tp/sys_enter", ProgramKind.RAW_TRACEPOINT, ProgType.RAW_TRACEPOINT, None, "sys_enter"),
        ("perf_event", ProgramKind.PERF_EVENT, ProgType.PERF_EVENT, None, None),
        ("socket", ProgramKind.SOCKET_FILTER, ProgType.SOCKET_FILTER, None, None),
        ("xdp", ProgramKind.XDP, ProgType.XDP, AttachType.XDP, None),
        ("classifier", ProgramKind.SCHED_CLS, ProgType.SCHED_CLS, None, None),
        ("tc", ProgramKind.SCHED_CLS, ProgType.SCHED_CLS, None, None),
        ("fentry/do_unlinkat", ProgramKind.FENTRY, ProgType.TRACING, AttachType.TRACE_FENTRY, "do_unlinkat"),
        ("fexit/do_unlinkat", ProgramKind.FEXIT, ProgType.TRACING, AttachType.TRACE_FEXIT, "do_unlinkat"),
        ("lsm/file_open", ProgramKind.LSM, ProgType.LSM, AttachType.LSM_MAC, "file_open"),
        ("tp_btf/sched_switch", ProgramKind.BTF_TRACEPOINT, ProgType.TRACING, AttachType.TRACE_RAW_TP, "sched_switch"),
        ("cgroup_skb/ingress", ProgramKind.CGROUP_SKB, ProgType.CGROUP_SKB, AttachType.CGROUP_INET_INGRESS, None),
    ],
)
def test_classify_section(section, kind, ptype, attach, target):
    k = classify_section(section)
    assert k is not None
    assert (k.kind, k.prog_type, k.expected_attach_type, k.attach_target) == (kind, ptype, attach, target)


def test_sleepable_and_unknown_sections():
    assert classify_section("fentry.s/do_unlinkat").sleepable
    assert not classify_section("fentry/do_unlinkat").sleepable
    for name in ("license", ".text", "kprobes/x", "mystery", ""):
        assert classify_section(name) is None


@pytest.mark.skipif(shutil.which("llvm-readelf") is None, reason="llvm-readelf not installed")
@pytest.mark.parametrize("name", ["legacy_maps.bpf.o", "nobtf.bpf.o"])
def test_legacy_maps_are_the_section_bytes(name):
    """libbpf's 5-field and Aya's 7-field bpf_map_def, sized by the symbols, read from the bytes
    llvm-readelf dumps."""
    path = REPO / "tests" / "objects" / name
    dump = subprocess.run(["llvm-readelf", "-x", "maps", str(path)], capture_output=True, text=True,
                          check=True).stdout
    raw = b"".join(bytes.fromhex("".join(m.split())) for m in re.findall(r"^0x[0-9a-f]+ ((?:[0-9a-f]{8} ?){1,4})",
                                                                          dump, re.M))
    obj = load_object(path)
    legacy = [m for m in obj.maps.values() if m.kind is MapKind.LEGACY]
    assert [m.name for m in legacy] == ["packets", "by_proto", "pinned_stats"]
    sizes = {"packets": 20, "by_proto": 20, "pinned_stats": 28}
    for m in legacy:
        words = struct.unpack_from(f"<{sizes[m.name] // 4}I", raw, m.symbol_offset)
        assert (m.map_type, m.key_size, m.value_size, m.max_entries, m.map_flags) == words[:5]
        if sizes[m.name] == 28:
            assert (m.id, int(m.pinning)) == words[5:]
        else:
            assert (m.id, m.pinning) == (0, PinningType.NONE)
    assert obj.kernel_version == 0x050400


def test_set_global_patches_initial_data():
    obj = load_object(REPO / "examples" / "globals.bpf.o")
    ro = obj.maps[".rodata"]
    before = ro.data
    obj.set_global("target_tgid", struct.pack("<I", 4242))
    var = obj.globals["target_tgid"]
    assert ro.data[var.offset : var.offset + 4] == struct.pack("<I", 4242)
    assert ro.data[: var.offset] + ro.data[var.offset + 4 :] == before[: var.offset] + before[var.offset + 4 :]
    obj.set_global("calls_sampled", struct.pack("<Q", 7))  # .bss too: the loader writes its data like .data
    bss = obj.maps[".bss"]
    assert len(bss.data) == bss.value_size and struct.unpack_from("<Q", bss.data, 8) == (7,)


def test_set_global_checks_size_and_name():
    obj = load_object(REPO / "examples" / "globals.bpf.o")
    with pytest.raises(ValueError, match="4 bytes"):
        obj.set_global("target_tgid", b"\x01\x02\x03\x04\x05\x06\x07\x08")
    with pytest.raises(KeyError, match="no global"):
        obj.set_global("nope", b"\0")


def test_map_in_map_and_prog_array_initial_values():
    obj = load_object(REPO / "tests" / "objects" / "btf_maps.bpf.o")
    outer = obj.maps["outer"]
    assert outer.inner is not None and outer.inner.type_name == "array"
    assert (outer.inner.key_size, outer.inner.value_size, outer.inner.max_entries) == (4, 8, 4)
    assert outer.initial_slots == {0: "inner_a", 2: "inner_b"} and outer.value_size == 4
    assert obj.maps["jumps"].initial_slots == {1: "tail"}
    assert outer.create_btf_ids == (0, 0) and obj.maps["flows"].create_btf_ids != (0, 0)
    flows = obj.maps["flows"]
    assert flows.pinning is PinningType.BY_NAME and obj.btf.types[flows.btf_key_type_id].name == "flow_key"


def test_functions_and_callees():
    obj = load_object(REPO / "tests" / "objects" / "calls.bpf.o")
    assert obj.programs["first"].callees == ["loop_body", "middle", "leaf"]
    assert obj.programs["second"].callees == ["leaf", "local_helper"]
    assert obj.programs["third"].callees == ["local_helper"]
    assert {"leaf", "middle", "loop_body", "local_helper", "first", "second", "third"} <= set(obj.functions)


def test_core_relocations_point_at_the_field_offsets():
    """Each field_byte_offset record sits on the instruction that holds the local offset of the
    field its access string names (clang's `rX = <offset>`), after rebasing to the program."""
    from kernel_sim.uapi.insn import decode
    from loader.obj.inspect import core_spec

    obj = load_object(REPO / "tests" / "objects" / "core.bpf.o")
    prog = obj.programs["parent_pid"]
    insns = decode(prog.insns)
    assert len(prog.core_relocs) == 3
    seen = set()
    for c in prog.core_relocs:
        assert c.kind == 0  # FIELD_BYTE_OFFSET
        t = obj.btf.skip_modifiers(c.type_id)
        member = t.members[int(c.access_str.split(":")[1])]
        assert insns[c.insn_off].imm == member.bit_offset // 8
        seen.add(core_spec(obj.btf, c.type_id, c.access_str))
    assert seen == {"struct task_struct[0].real_parent", "struct task_struct[0].tgid", "struct task_struct[0].pid"}
