"""ksym: the two-stage link, lookups both ways, /proc/kallsyms and available_filter_functions."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from kernel_sim import ksym
from kernel_sim.arch import get_arch
from kernel_sim.kernel import Kernel
from kernel_sim.syscall_table import ENTRY_PREFIX, syscalls_of
from kernel_sim.uapi.epoll import O_RDONLY
from loader.backends import open_kernel
from loader.kernel_info import read_file

ARCHES = ["x86_64", "riscv64", "loongarch64"]


@pytest.fixture(scope="module", params=ARCHES)
def linked(request):
    return ksym.build(request.param)


def test_second_link_keeps_text_and_adds_the_table_after_it(linked):
    image = linked.image
    first = ksym.link(image.arch, ksym.kernel_functions(image.arch))
    assert first.text == image.text
    assert first.rodata == b"" and image.rodata == ksym.generate_table(first)
    assert image.rodata_base >= image.text_end and image.rodata_base % 4096 == 0


def test_every_function_the_kernel_runs_has_a_symbol(linked):
    arch = linked.image.arch
    names = set(linked.table.names)
    for fn in ("do_sys_openat2", "vfs_read", "vfs_write", "do_execveat_common", "kernel_clone", "do_exit",
               "do_nanosleep", "tcp_v4_connect", "do_unlinkat", ksym.KRETPROBE_TRAMPOLINE):
        assert fn in names
    for sc in syscalls_of(arch):
        assert ENTRY_PREFIX[arch] + sc in names


def test_lookups_agree_with_the_link_map(linked):
    table = linked.table
    for sym in linked.image.symbols:
        assert table.lookup_name(sym.name) == sym.addr
        assert table.lookup_address(sym.addr) == (sym.name, 0)
        assert table.lookup_address(sym.addr + sym.size - 1) == (sym.name, sym.size - 1)
    assert table.lookup_name("no_such_function") is None
    assert table.lookup_address(linked.image.text_base - 1) is None
    assert table.lookup_address(table.text_end) is None


def test_symbol_extent_runs_to_the_next_symbol(linked):
    table = linked.table
    for i in range(len(table) - 1):
        start, size, off = table.size_offset(table.addrs[i] + 1)
        assert (start, off) == (table.addrs[i], 1)
        assert start + size == table.addrs[i + 1]


def test_function_code_decodes_to_whole_instructions(linked):
    arch = get_arch(linked.image.arch)
    image = linked.image
    for sym in image.symbols:
        code = image.text[sym.addr - image.text_base : sym.addr - image.text_base + sym.size]
        insns = arch.decode_all(code)
        assert sum(i.length for _, i in insns) == sym.size
        if sym.body_call >= 0:
            assert (sym.body_call, "call") in [(off, i.kind) for off, i in insns]


def test_table_parses_from_bytes_only(linked):
    parsed = ksym.SymbolTable(bytes(linked.image.rodata))
    assert parsed.names == linked.table.names and parsed.addrs == linked.table.addrs
    with pytest.raises(ValueError):
        ksym.SymbolTable(b"\0" * 64)


_LLVM_TRIPLE = {"x86_64": "x86_64", "riscv64": "riscv64"}


@pytest.mark.parametrize("arch", ["x86_64", "riscv64"])
def test_llvm_disassembles_the_text_as_we_decode_it(arch):
    """llvm-mc (installed with clang) reads our bytes as the instructions our decoder names."""
    if shutil.which("llvm-mc") is None:
        pytest.skip("llvm-mc is not installed")
    linked = ksym.build(arch)
    sym = linked.symbol("do_sys_openat2")
    image = linked.image
    code = image.text[sym.addr - image.text_base : sym.addr - image.text_base + sym.size]
    hexes = " ".join(f"0x{b:02x}" for b in code)
    cmd = ["llvm-mc", f"-triple={_LLVM_TRIPLE[arch]}", "--disassemble"] + (["-mattr=+c"] if arch == "riscv64" else [])
    out = subprocess.run(cmd, input=hexes, capture_output=True, text=True, check=True).stdout
    mnemonics = [line.split()[0] for line in out.splitlines() if line.startswith("\t") and not line.startswith("\t.")]
    ours = [i.mnemonic for _, i in get_arch(arch).decode_all(code)]
    assert len(mnemonics) == len(ours)
    assert [m.rstrip("q") for m in mnemonics][: len(ours)] == [
        {"c.addi16sp": "addi", "c.sdsp": "sd", "c.ldsp": "ld", "c.jr": "ret"}.get(m, m) for m in ours]


@pytest.mark.parametrize("arch", ARCHES)
def test_proc_kallsyms_lists_the_table_in_address_order(arch):
    sys = open_kernel("sim", arch=arch)
    text = read_file(sys, "/proc/kallsyms")
    lines = text.splitlines()
    table = sys.kernel.kprobes.table
    assert len(lines) == len(table)
    parsed = [re.fullmatch(r"([0-9a-f]{16}) ([Tt]) (\S+)", line).groups() for line in lines]
    addrs = [int(a, 16) for a, _, _ in parsed]
    assert addrs == sorted(addrs)
    by_name = {n: int(a, 16) for a, _, n in parsed}
    assert by_name["do_sys_openat2"] == table.lookup_name("do_sys_openat2")
    assert ("t", "do_sys_openat2") in {(k, n) for _, k, n in parsed}
    assert not any(n.startswith("kallsyms_") for _, _, n in parsed)


def test_kallsyms_hides_addresses_from_unprivileged_readers():
    kernel = Kernel()
    user = kernel.syscalls(kernel.spawn("user", uid=1000))
    lines = read_file(user, "/proc/kallsyms").splitlines()
    assert lines and all(line.startswith("0000000000000000 ") for line in lines)


@pytest.mark.parametrize("arch", ARCHES)
def test_available_filter_functions_are_the_traceable_ones(arch):
    sys = open_kernel("sim", arch=arch)
    names = read_file(sys, "/sys/kernel/tracing/available_filter_functions").splitlines()
    table = sys.kernel.kprobes.table
    assert "do_sys_openat2" in names and "vfs_read" in names
    assert ksym.KRETPROBE_TRAMPOLINE not in names and ksym.BODY_THUNK not in names
    assert names == [n for n in table.names if table.is_traceable(n)]
    fd = sys.openat("/sys/kernel/tracing/available_filter_functions", O_RDONLY)
    sys.close(fd)
