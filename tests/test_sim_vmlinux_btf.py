"""kernel_sim's /sys/kernel/btf/vmlinux: a valid BTF blob whose types describe the memory the
simulated kernel really hands programs, so CO-RE relocations computed against it read the right
bytes (as they do against Linux's vmlinux BTF on this machine).
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_raw_tp import MISSING, NR_OPENAT

from kernel_sim.btf_vmlinux import build_vmlinux_btf
from kernel_sim.btf_writer import BtfWriter
from kernel_sim.kernel import Kernel
from kernel_sim.task_kmem import Cred, TaskStruct
from kernel_sim.uapi.bpf import BpfCmd, BtfLoadAttr, make_attr
from kernel_sim.uapi.ptrace import PT_REGS
from loader.backends import open_kernel
from loader.core_reloc import kernel_target, read_kernel_btf
from loader.ebpf import EbpfLoader
from loader.obj.btf import parse_btf
from tests.conftest import REPO, linux_bpf_denied

CORE_TASK = REPO / "tests" / "objects" / "core_task.bpf.o"


@pytest.fixture
def sim():
    k = open_kernel("sim")
    yield k
    k.close_all()


def btf_load(sys, blob: bytes) -> int:
    data = ctypes.create_string_buffer(blob, len(blob))
    log = ctypes.create_string_buffer(1 << 16)
    attr = make_attr(BtfLoadAttr, btf=ctypes.addressof(data), btf_size=len(blob), btf_log_buf=ctypes.addressof(log),
                     btf_log_size=1 << 16, btf_log_level=1)
    try:
        return sys.bpf(BpfCmd.BTF_LOAD, attr)
    except OSError as e:
        raise AssertionError(f"BTF_LOAD: {e}\n{log.value.decode()[-2000:]}") from None


def member_offsets(btf, name: str) -> dict[str, int]:
    t = btf.find(name, "STRUCT")
    return {m.name: m.bit_offset // 8 for m in t.members}


@pytest.mark.parametrize("arch", ["x86_64", "riscv64", "loongarch64"])
def test_blob_parses_and_matches_the_memory_layouts(arch):
    blob = build_vmlinux_btf(Kernel(arch=arch))
    btf = parse_btf(blob)
    task = btf.find("task_struct", "STRUCT")
    assert task.size == ctypes.sizeof(TaskStruct)
    assert member_offsets(btf, "task_struct") == {f: getattr(TaskStruct, f).offset for f, _ in TaskStruct._fields_}
    assert member_offsets(btf, "cred") == {f: getattr(Cred, f).offset for f, _ in Cred._fields_}
    regs = btf.find("pt_regs", "STRUCT")
    assert regs.size == ctypes.sizeof(PT_REGS[arch])
    sys_enter = member_offsets(btf, "trace_event_raw_sys_enter")
    assert (sys_enter["ent"], sys_enter["id"], sys_enter["args"], sys_enter["__data"]) == (0, 8, 16, 64)
    assert btf.find("btf_trace_sched_switch", "TYPEDEF") is not None
    assert btf.find("vfs_read", "FUNC") is not None
    entry = {"x86_64": "__x64_sys_openat", "riscv64": "__riscv_sys_openat", "loongarch64": "__loongarch64_sys_openat"}
    assert any(t.kind == "FUNC" and t.name == entry[arch] for t in btf.types if t is not None) or arch != "x86_64"


def test_x86_pt_regs_use_kernel_names():
    btf = parse_btf(build_vmlinux_btf(Kernel(arch="x86_64")))
    offs = member_offsets(btf, "pt_regs")
    regs = PT_REGS["x86_64"]
    assert (offs["di"], offs["orig_ax"], offs["ax"], offs["ip"]) == (
        regs.rdi.offset, regs.orig_rax.offset, regs.rax.offset, regs.rip.offset)


def test_btf_trace_typedefs_carry_the_tp_proto():
    btf = parse_btf(build_vmlinux_btf(Kernel()))
    proto = btf.skip_modifiers(btf.find("btf_trace_sched_process_exec", "TYPEDEF").type)
    assert proto.kind == "PTR"
    fn = btf.type_by_id(proto.type)
    names = [btf.type_name(ptype) for _name, ptype in fn.params]
    assert fn.kind == "FUNC_PROTO" and names[0] == "void *" and len(names) == 4
    assert names[1:] == ["struct task_struct *", "pid_t", "struct linux_binprm *"]


def test_the_file_is_published_and_loads_as_btf(sim):
    blob = read_kernel_btf(sim)
    assert blob == build_vmlinux_btf(sim.kernel)
    fd = btf_load(sim, blob)
    assert fd > 0
    target = kernel_target(sim)
    assert target.by_name.get(("task_struct", 4))


def test_linux_accepts_the_blob():
    """The real kernel's BTF verifier is stricter than kernel_sim's: it must take the blob too."""
    reason = linux_bpf_denied()
    if reason:
        pytest.skip(reason)
    linux = open_kernel("linux")
    for arch in ("x86_64", "riscv64", "loongarch64"):
        fd = btf_load(linux, build_vmlinux_btf(Kernel(arch=arch)))
        os.close(fd)


def test_writer_refuses_undefined_reservations():
    w = BtfWriter()
    w.reserve()
    with pytest.raises(ValueError):
        w.to_bytes()


def test_get_current_task_is_readable_task_struct(sim):
    """bpf_get_current_task points at the task's task_struct region; pid/tgid/comm are the task's."""
    k = sim.kernel
    task = sim.task
    from kernel_sim.task_kmem import task_struct_addr

    addr = task_struct_addr(k, task)
    raw = k.vm.read(addr, ctypes.sizeof(TaskStruct))
    ts = TaskStruct.from_buffer_copy(raw)
    assert (ts.pid, ts.tgid, ts.comm) == (task.pid, task.tgid, task.comm.encode()[:15])
    parent = TaskStruct.from_buffer_copy(k.vm.read(ts.real_parent, ctypes.sizeof(TaskStruct)))
    assert parent.pid == k.init_task.pid
    cred = Cred.from_buffer_copy(k.vm.read(ts.cred, ctypes.sizeof(Cred)))
    assert cred.uid.val == task.uid and cred.euid.val == task.uid


def run_core_task(sys, program: str = "core_task", slot: int = 0) -> tuple:
    """Load core_task.bpf.o through the loader (CO-RE against the kernel's BTF), trigger one openat."""
    tgid = sys.getpid()
    loader = EbpfLoader(kernel=sys).set_global("target_tgid", tgid).set_global("target_nr", NR_OPENAT)
    with loader.load_file(CORE_TASK) as ebpf:
        prog = ebpf.program(program)
        prog.load()
        link = prog.attach()
        try:
            with pytest.raises(OSError) as e:
                sys.openat(MISSING, 0)
            assert e.value.errno == errno.ENOENT
        finally:
            link.detach()
        value = ebpf.map("seen").data.lookup(struct.pack("<I", slot))
    return struct.unpack("<4iqQQ16s", value)


def test_core_program_reads_task_on_sim(sim):
    tgid, pid, parent_tgid, hits, nr, di, orig_ax, comm = run_core_task(sim)
    task = sim.task
    assert hits == 1
    assert (tgid, pid, parent_tgid) == (task.tgid, task.pid, sim.kernel.init_task.tgid)
    assert comm.rstrip(b"\0") == task.comm.encode()[:15]
    assert (nr, orig_ax, di & 0xFFFFFFFF) == (NR_OPENAT, NR_OPENAT, -100 & 0xFFFFFFFF)


def test_core_program_reads_task_on_linux():
    """The same object on this machine's kernel (its own vmlinux BTF) reads the same things."""
    reason = linux_bpf_denied()
    if reason:
        pytest.skip(reason)
    if not os.path.exists("/sys/kernel/btf/vmlinux"):
        pytest.skip("this kernel publishes no BTF")
    linux = open_kernel("linux")
    tgid, pid, parent_tgid, hits, nr, di, orig_ax, comm = run_core_task(linux)
    assert hits >= 1
    assert (tgid, parent_tgid) == (os.getpid(), os.getppid())
    assert pid > 0
    with open("/proc/self/comm", "rb") as f:
        assert comm.rstrip(b"\0") == f.read().strip()
    assert (nr, orig_ax, di & 0xFFFFFFFF) == (NR_OPENAT, NR_OPENAT, -100 & 0xFFFFFFFF)


_CTYPES = [(ctypes.c_uint8, "unsigned char"), (ctypes.c_int16, "short int"), (ctypes.c_uint32, "unsigned int"),
           (ctypes.c_int32, "int"), (ctypes.c_uint64, "long unsigned int"), (ctypes.c_int64, "long int")]


@given(st.lists(st.tuples(st.sampled_from(range(len(_CTYPES))), st.integers(0, 3)), min_size=1, max_size=12))
@settings(max_examples=60, deadline=None)
def test_writer_lays_structs_out_as_c(fields):
    """The writer's natural layout (no explicit offsets) is the C compiler's, as ctypes computes it."""
    cfields = [(f"m{i}", _CTYPES[t][0] * n if n else _CTYPES[t][0]) for i, (t, n) in enumerate(fields)]
    cstruct = type("S", (ctypes.Structure,), {"_fields_": cfields})
    w = BtfWriter()
    index = w.int_type("__ARRAY_SIZE_TYPE__", 4)
    ints = {name: w.int_type(name, ctypes.sizeof(ct), 1 if ct(-1).value == -1 else 0) for ct, name in _CTYPES}
    members = []
    for i, (t, n) in enumerate(fields):
        tid = ints[_CTYPES[t][1]]
        members.append((f"m{i}", w.array(tid, n, index) if n else tid))
    sid = w.struct("s", members)
    assert w.size_of(sid) == ctypes.sizeof(cstruct)
    assert [w.offset_of(sid, f"m{i}") for i in range(len(fields))] == [getattr(cstruct, n).offset for n, _ in cfields]
    parsed = parse_btf(w.to_bytes()).find("s", "STRUCT")
    assert parsed.size == ctypes.sizeof(cstruct)
    assert [m.bit_offset // 8 for m in parsed.members] == [getattr(cstruct, n).offset for n, _ in cfields]


def test_tp_btf_attach_rules_and_args(bpf_kernel):
    """tp_btf programs (TRACING, BPF_TRACE_RAW_TP) name their tracepoint at load: attach_btf_id is
    typedef btf_trace_sys_enter in each kernel's own vmlinux BTF. RAW_TRACEPOINT_OPEN then takes no
    name (EINVAL), and without one gives a raw tracepoint link named sys_enter whose program sees the
    (regs, id) arguments."""
    from test_maps_util import MapUser
    from test_raw_tp import R0_EXIT, err, link_info, open_rtp, resolve

    from kernel_sim.uapi.bpf import MapType, ProgLoadAttr, ProgType
    from kernel_sim.uapi.bpf_enums import HelperId as H
    from kernel_sim.uapi.insn import BPF_ADD, BPF_JNE, BPF_PSEUDO_MAP_FD, BPF_RSH, encode
    from kernel_sim.vm.asm import DW, W, alu64, call, jmp, lddw, ldx, mov64, st, stx

    sys = bpf_kernel
    target = kernel_target(sys)
    if target is None:
        pytest.skip("this kernel publishes no BTF")
    (btf_id,) = target.by_name[("btf_trace_sys_enter", 8)][:1]
    maps = MapUser(sys)
    map_fd = maps.create(MapType.ARRAY, 4, 8, 1)
    insns = resolve([  # if this process called openat: value = ctx[1] (the syscall id)
        mov64(6, 1), call(H.get_current_pid_tgid), alu64(BPF_RSH, 0, imm=32),
        jmp(BPF_JNE, 0, imm=sys.getpid(), off="out"),
        ldx(DW, 7, 6, 8), jmp(BPF_JNE, 7, imm=NR_OPENAT, off="out"),
        st(W, 10, -4, 0), mov64(2, 10), alu64(BPF_ADD, 2, imm=-4),
        lddw(1, map_fd, BPF_PSEUDO_MAP_FD), call(H.map_lookup_elem),
        jmp(0x15, 0, imm=0, off="out"), stx(DW, 0, 7, 0),
        "out", *R0_EXIT,
    ])
    code = encode(insns)
    buf, lic = ctypes.create_string_buffer(code, len(code)), ctypes.create_string_buffer(b"GPL")
    attr = make_attr(ProgLoadAttr, prog_type=ProgType.TRACING, expected_attach_type=23, attach_btf_id=btf_id,
                     insn_cnt=len(insns), insns=ctypes.addressof(buf), license=ctypes.addressof(lic))
    prog = sys.bpf(BpfCmd.PROG_LOAD, attr)
    assert err(open_rtp, sys, b"sys_enter", prog) == errno.EINVAL
    fd = open_rtp(sys, None, prog)
    try:
        name = ctypes.create_string_buffer(32)
        info, _ = link_info(sys, fd, name, 32)
        assert struct.unpack_from("<I", info)[0] == 1 and name.value == b"sys_enter"  # LINK_TYPE_RAW_TRACEPOINT
        with pytest.raises(OSError):
            sys.openat(MISSING, 0)
    finally:
        sys.close(fd)
    assert maps.lookup(map_fd, struct.pack("<I", 0), 8) == struct.pack("<Q", NR_OPENAT)


def test_real_parent_follows_clone(sim):
    """A cloned child's task_struct points at its parent's; the parent's own parent is init."""
    from kernel_sim.task_kmem import task_struct_addr

    k = sim.kernel
    parent = k.spawn("parent")
    child_pid = k.syscall(parent, "clone", 0x11)  # SIGCHLD
    child = k.tasks[child_pid]
    ts = TaskStruct.from_buffer_copy(k.vm.read(task_struct_addr(k, child), ctypes.sizeof(TaskStruct)))
    up = TaskStruct.from_buffer_copy(k.vm.read(ts.real_parent, ctypes.sizeof(TaskStruct)))
    assert (ts.pid, up.pid, up.tgid) == (child_pid, parent.pid, parent.tgid)
    top = TaskStruct.from_buffer_copy(k.vm.read(up.real_parent, ctypes.sizeof(TaskStruct)))
    assert top.pid == k.init_task.pid


def test_comm_is_nul_padded_after_a_rename(sim):
    """exec renames the task: the 16 comm bytes are the new name padded with NULs, no stale tail."""
    from kernel_sim.task_kmem import task_struct_addr

    k = sim.kernel
    task = k.spawn("a-long-process-name")
    task_struct_addr(k, task)
    assert k.syscall(task, "execve", task.memory.put_str("/bin/cat"), 0, 0) == 0
    addr = task_struct_addr(k, task)
    assert k.vm.read(addr + TaskStruct.comm.offset, 16) == b"cat".ljust(16, b"\0")
