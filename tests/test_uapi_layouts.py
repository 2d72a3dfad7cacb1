"""The uapi byte layouts agree with the Linux uapi headers installed on this machine.

A C program compiled against <linux/bpf.h> and <linux/perf_event.h> prints sizeof/offsetof of
every member the ctypes layouts declare; each must match.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess

import pytest

from kernel_sim.uapi import bpf, insn, perf
from kernel_sim.uapi.epoll import EPOLL_EVENT

LAYOUTS = [*bpf.ATTR_LAYOUTS, perf.PerfEventAttr, perf.PerfEventMmapPage]
CC = shutil.which("cc") or shutil.which("gcc")


def _c_name(layout, name: str, header_fields: set[str] | None = None) -> str | None:
    """The member path in C, or None where C cannot name it (bit-fields, padding)."""
    names = getattr(layout, "_c_names_", {})
    return names[name] if name in names else name


def _members(layout) -> list[str]:
    return [name for name, _ in layout._fields_
            if not name.startswith("_") and _c_name(layout, name) is not None]


def _newer(layout) -> frozenset[str]:
    return getattr(layout, "_c_newer_", frozenset())


@pytest.fixture(scope="module")
def c_offsets(tmp_path_factory) -> dict[str, int]:
    assert CC, "a C compiler is part of this machine's image (gcc); it is needed to read the uapi headers"
    lines = ["#include <stddef.h>", "#include <stdio.h>", "#include <linux/bpf.h>",
             "#include <linux/perf_event.h>", "#include <sys/epoll.h>", "int main(void) {"]
    for layout in LAYOUTS:
        ctype, prefix = layout._c_type_, layout._c_prefix_
        for name in _members(layout):
            if name in _newer(layout):
                continue
            c_name = _c_name(layout, name)
            lines.append(f'printf("{layout.__name__}.{name} %zu\\n", offsetof({ctype}, {prefix}{c_name}));')
        if prefix == "":
            lines.append(f'printf("{layout.__name__} sizeof %zu\\n", sizeof({ctype}));')
    lines.append('printf("epoll_event sizeof %zu\\n", sizeof(struct epoll_event));')
    lines.append('printf("bpf_insn sizeof %zu\\n", sizeof(struct bpf_insn));')
    lines.append("return 0; }")
    d = tmp_path_factory.mktemp("uapi")
    src, exe = d / "layouts.c", d / "layouts"
    src.write_text("\n".join(lines))
    subprocess.run([CC, "-o", str(exe), str(src)], check=True)
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout
    return {k: int(v) for k, v in (line.rsplit(" ", 1) for line in out.splitlines())}


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda lay: lay.__name__)
def test_member_offsets_match_linux(layout, c_offsets):
    checked = 0
    for name in _members(layout):
        key = f"{layout.__name__}.{name}"
        if name in _newer(layout):
            assert key not in c_offsets
            continue
        assert getattr(layout, name).offset == c_offsets[key], name
        checked += 1
    assert checked > 0


@pytest.mark.parametrize("layout", [lay for lay in LAYOUTS if lay._c_prefix_ == "" and lay._c_type_ != "union bpf_attr"
                                    and not getattr(lay, "_c_partial_", False)],
                         ids=lambda lay: lay.__name__)
def test_struct_sizes_match_linux(layout, c_offsets):
    # Members newer than the installed header make ours larger; otherwise the sizes are equal.
    header = c_offsets[f"{layout.__name__} sizeof"]
    if _newer(layout):
        assert ctypes.sizeof(layout) > header
    else:
        assert ctypes.sizeof(layout) == header


def test_epoll_event_and_insn_sizes(c_offsets):
    assert EPOLL_EVENT.size == c_offsets["epoll_event sizeof"] == 12
    assert insn.INSN_SIZE == c_offsets["bpf_insn sizeof"] == 8


def test_perf_ioctl_numbers_match_the_seed_and_linux():
    assert perf.PERF_EVENT_IOC_ENABLE == 0x2400
    assert perf.PERF_EVENT_IOC_DISABLE == 0x2401
    assert perf.PERF_EVENT_IOC_SET_BPF == 0x40042408
    assert perf.PERF_EVENT_IOC_ID == 0x80082407
    assert perf.DATA_HEAD_OFFSET == 1024 and perf.DATA_TAIL_OFFSET == 1032


def test_insn_roundtrip():
    prog = [insn.insn(insn.BPF_ALU64 | insn.BPF_MOV | insn.BPF_K, 0, 0, 0, 0xFFFFFFFF),
            *insn.ld_imm64(1, 0x1122334455667788, insn.BPF_PSEUDO_MAP_VALUE),
            insn.insn(insn.BPF_JMP | insn.BPF_EXIT)]
    raw = insn.encode(prog)
    assert len(raw) == 32
    assert insn.decode(raw) == prog
    assert prog[1].src == insn.BPF_PSEUDO_MAP_VALUE and raw[9] == 0x21
