"""Syscall entry points take the user pt_regs, as on Linux with ARCH_HAS_SYSCALL_WRAPPER.

``__x64_sys_<name>(const struct pt_regs *regs)`` (x86_64 >= 4.17) and ``__riscv_sys_<name>``
(riscv64 >= 6.6) get ONE argument: the registers the entry code saved, with the syscall
arguments in the syscall ABI's registers (x86_64: di, si, dx, r10, r8, r9; riscv: a0-a5) and the
number in orig_rax / a7. libbpf's BPF_KSYSCALL reads them through that inner pt_regs
(PT_REGS_SYSCALL_REGS(ctx) = PARM1, then bpf_probe_read_kernel). loongarch64 selects no wrapper:
``sys_<name>`` gets the plain arguments and PT_REGS_SYSCALL_REGS(ctx) is ctx itself. The
dispatchers: ``x64_sys_call(regs, nr)``, ``do_syscall(regs)``. Inner functions keep plain
register arguments. The programs here are hand-assembled BPF, loaded and attached with raw
bpf() / perf_event_open through the sim's Syscalls seam.
"""

from __future__ import annotations

import ctypes
import errno
import shutil
import struct
import subprocess

import pytest

from kernel_sim.syscall_entry import WRAPPED_ARCHES
from kernel_sim.syscall_table import ENTRY_PREFIX, syscall_nr
from kernel_sim.task_kmem import task_kmem
from kernel_sim.uapi.bpf import BpfCmd, MapCreateAttr, MapElemAttr, MapType, ProgLoadAttr, ProgType, make_attr
from kernel_sim.uapi.bpf_enums import HelperId
from kernel_sim.uapi.epoll import O_RDONLY
from kernel_sim.uapi.insn import (
    BPF_ADD,
    BPF_ALU64,
    BPF_CALL,
    BPF_DW,
    BPF_EXIT,
    BPF_JMP,
    BPF_K,
    BPF_LDX,
    BPF_MEM,
    BPF_MOV,
    BPF_PSEUDO_MAP_FD,
    BPF_REG_0,
    BPF_REG_1,
    BPF_REG_2,
    BPF_REG_3,
    BPF_REG_4,
    BPF_REG_6,
    BPF_REG_7,
    BPF_REG_10,
    BPF_ST,
    BPF_STX,
    BPF_W,
    BPF_X,
    encode,
    insn,
    ld_imm64,
)
from kernel_sim.uapi.perf import (
    ATTR_FLAG_DISABLED,
    PERF_EVENT_IOC_ENABLE,
    PERF_EVENT_IOC_SET_BPF,
    PerfEventAttr,
)
from kernel_sim.uapi.ptrace import PARM_REGS, PT_REGS, RC_REG, SYSCALL_NR_REG
from kernel_sim.usermem import TASK_SIZE
from loader.backends import open_kernel
from loader.kernel_info import read_file

ARCHES = ["x86_64", "riscv64", "loongarch64"]
# The syscall ABI's argument registers (x86_64 passes the 4th in r10, not rcx).
SYSCALL_ARG_REGS = {"x86_64": ["rdi", "rsi", "rdx", "r10", "r8", "r9"],
                    "riscv64": ["a0", "a1", "a2", "a3", "a4", "a5"],
                    "loongarch64": ["r4", "r5", "r6", "r7", "r8", "r9"]}
VALUE = struct.Struct("<QQ64s")  # nr, filename pointer, filename
ENOSYS = (-errno.ENOSYS) & (2**64 - 1)


def _off(arch: str, reg: str) -> int:
    return getattr(PT_REGS[arch], reg).offset


def _mov_imm(dst, imm):
    return insn(BPF_ALU64 | BPF_MOV | BPF_K, dst, imm=imm)


def _mov_reg(dst, src):
    return insn(BPF_ALU64 | BPF_MOV | BPF_X, dst, src)


def _add_imm(dst, imm):
    return insn(BPF_ALU64 | BPF_ADD | BPF_K, dst, imm=imm)


def _call(helper):
    return insn(BPF_JMP | BPF_CALL, imm=int(helper))


def _read_kernel(stack_at: int, base_reg: int, off: int) -> list:
    """bpf_probe_read_kernel(r10 + stack_at, 8, base_reg + off)."""
    return [_mov_reg(BPF_REG_1, BPF_REG_10), _add_imm(BPF_REG_1, stack_at), _mov_imm(BPF_REG_2, 8),
            _mov_reg(BPF_REG_3, base_reg), _add_imm(BPF_REG_3, off), _call(HelperId.probe_read_kernel)]


def ksyscall_program(arch: str, map_fd: int) -> bytes:
    """BPF_KSYSCALL(prog, int dfd, const char *filename) by hand: records (nr, filename, *filename).

    With a wrapper the arguments come from the inner pt_regs (PARM1) by bpf_probe_read_kernel, the
    number from its orig_rax / a7; without one (loongarch) the filename is ctx's PARM2 itself.
    """
    key_at, value_at = -84, -80
    prog = [_mov_reg(BPF_REG_6, BPF_REG_1), insn(BPF_ST | BPF_MEM | BPF_W, BPF_REG_10, off=key_at, imm=0)]
    prog += [insn(BPF_ST | BPF_MEM | BPF_DW, BPF_REG_10, off=value_at + i, imm=0) for i in range(0, 80, 8)]
    if arch in WRAPPED_ARCHES:
        prog += [insn(BPF_LDX | BPF_MEM | BPF_DW, BPF_REG_7, BPF_REG_6, off=_off(arch, PARM_REGS[arch][0]))]
        prog += _read_kernel(value_at + 8, BPF_REG_7, _off(arch, SYSCALL_ARG_REGS[arch][1]))
        prog += _read_kernel(value_at, BPF_REG_7, _off(arch, SYSCALL_NR_REG[arch]))
    else:
        prog += [insn(BPF_LDX | BPF_MEM | BPF_DW, BPF_REG_3, BPF_REG_6, off=_off(arch, PARM_REGS[arch][1])),
                 insn(BPF_STX | BPF_MEM | BPF_DW, BPF_REG_10, BPF_REG_3, off=value_at + 8)]
    prog += [_mov_reg(BPF_REG_1, BPF_REG_10), _add_imm(BPF_REG_1, value_at + 16), _mov_imm(BPF_REG_2, 64),
             insn(BPF_LDX | BPF_MEM | BPF_DW, BPF_REG_3, BPF_REG_10, off=value_at + 8),
             _call(HelperId.probe_read_user_str),
             *ld_imm64(BPF_REG_1, map_fd, BPF_PSEUDO_MAP_FD),
             _mov_reg(BPF_REG_2, BPF_REG_10), _add_imm(BPF_REG_2, key_at),
             _mov_reg(BPF_REG_3, BPF_REG_10), _add_imm(BPF_REG_3, value_at),
             _mov_imm(BPF_REG_4, 0), _call(HelperId.map_update_elem),
             _mov_imm(BPF_REG_0, 0), insn(BPF_JMP | BPF_EXIT)]
    return encode(prog)


class Raw:
    """bpf() / perf_event_open with raw attrs through one Syscalls object."""

    def __init__(self, sys) -> None:
        self.sys = sys
        self.keep: list = []

    def buf(self, data: bytes) -> int:
        b = ctypes.create_string_buffer(data, len(data))
        self.keep.append(b)
        return ctypes.addressof(b)

    def array(self, value_size: int) -> int:
        return self.sys.bpf(BpfCmd.MAP_CREATE, make_attr(MapCreateAttr, map_type=MapType.ARRAY, key_size=4,
                                                         value_size=value_size, max_entries=1))

    def lookup(self, map_fd: int, size: int) -> bytes:
        out = ctypes.create_string_buffer(size)
        self.sys.bpf(BpfCmd.MAP_LOOKUP_ELEM, make_attr(MapElemAttr, map_fd=map_fd, key=self.buf(bytes(4)),
                                                        value=ctypes.addressof(out)))
        return out.raw

    def load(self, prog: bytes) -> int:
        log = ctypes.create_string_buffer(1 << 16)
        self.keep.append(log)
        attr = make_attr(ProgLoadAttr, prog_type=ProgType.KPROBE, insn_cnt=len(prog) // 8, insns=self.buf(prog),
                         license=self.buf(b"GPL\0"), log_level=1, log_size=len(log), log_buf=ctypes.addressof(log))
        try:
            return self.sys.bpf(BpfCmd.PROG_LOAD, attr)
        except OSError as e:
            raise AssertionError(f"PROG_LOAD failed: {e}\n{log.value.decode(errors='replace')}") from None

    def attach(self, prog_fd: int, symbol: str) -> int:
        kprobe_type = int(read_file(self.sys, "/sys/bus/event_source/devices/kprobe/type"))
        attr = PerfEventAttr(type=kprobe_type, size=ctypes.sizeof(PerfEventAttr), config=0,
                             config1=self.buf(symbol.encode() + b"\0"), flags=ATTR_FLAG_DISABLED)
        fd = self.sys.perf_event_open(bytearray(bytes(attr)), -1, 0, -1, 0)
        self.sys.ioctl(fd, PERF_EVENT_IOC_SET_BPF, prog_fd)
        self.sys.ioctl(fd, PERF_EVENT_IOC_ENABLE, 0)
        return fd


@pytest.fixture(params=ARCHES)
def sys(request):
    s = open_kernel("sim", arch=request.param, cpus=1)
    yield s
    s.close_all()


def test_ksyscall_program_on_the_openat_entry_reads_the_inner_pt_regs(sys):
    arch = sys.kernel.arch
    raw = Raw(sys)
    map_fd = raw.array(VALUE.size)
    raw.attach(raw.load(ksyscall_program(arch, map_fd)), ENTRY_PREFIX[arch] + "openat")
    task = sys.task
    for path in ("/proc/version", "/proc/kallsyms"):
        name = task.memory.put_str(path)
        assert sys.kernel.syscall(task, "openat", -100, name, O_RDONLY, 0) >= 3
        nr, pointer, filename = VALUE.unpack(raw.lookup(map_fd, VALUE.size))
        assert (pointer, filename.split(b"\0")[0]) == (name, path.encode())
        assert nr == (syscall_nr(arch, "openat") if arch in WRAPPED_ARCHES else 0)


@pytest.mark.parametrize("arch", ARCHES)
def test_entry_and_dispatcher_registers(arch):
    """What a probe sees: the wrapper's PARM1 is a kernel pointer to the saved user registers (not
    the first argument), the dispatcher gets (regs, nr) on x86_64 and (regs) elsewhere, and the
    inner function still gets plain arguments."""
    sys = open_kernel("sim", arch=arch, cpus=1)
    kernel, task = sys.kernel, sys.task
    seen: dict[str, tuple] = {}

    def record(where):
        return lambda kp, frame: seen.setdefault(where, tuple(frame.get(r) for r in PARM_REGS[arch][:4]))

    dispatcher = "x64_sys_call" if arch == "x86_64" else "do_syscall"
    for where in (dispatcher, ENTRY_PREFIX[arch] + "openat", "do_sys_openat2"):
        kernel.kprobes.register_kprobe(where, 0, record(where))
    name = task.memory.put_str("/proc/version")
    at_entry = {}

    def snapshot(kp, frame):  # the saved registers as a probe on the dispatcher finds them
        at_entry["regs"] = kernel.vm.read(frame.get(PARM_REGS[arch][0]), ctypes.sizeof(PT_REGS[arch]))

    kernel.kprobes.register_kprobe(dispatcher, 0, snapshot)
    fd = kernel.syscall(task, "openat", -100, name, O_RDONLY, 0o644)
    assert fd >= 3
    nr = syscall_nr(arch, "openat")
    regs_addr = task_kmem(kernel).regs_addr(task)
    assert regs_addr >= TASK_SIZE  # kernel memory: bpf_probe_read_kernel's range
    after = PT_REGS[arch].from_buffer_copy(kernel.vm.read(regs_addr, ctypes.sizeof(PT_REGS[arch])))
    assert getattr(after, RC_REG[arch]) == fd  # regs->ax = the result, once the call returned
    regs = PT_REGS[arch].from_buffer_copy(at_entry["regs"])
    args = [(-100) & (2**64 - 1), name, O_RDONLY, 0o644]
    assert [getattr(regs, r) for r in SYSCALL_ARG_REGS[arch][:4]] == args
    assert getattr(regs, SYSCALL_NR_REG[arch]) == nr
    if arch == "x86_64":
        assert regs.rax == ENOSYS  # the entry code's -ENOSYS while the call runs
        assert seen[dispatcher][:2] == (regs_addr, nr)
    else:
        assert regs.orig_a0 == args[0] and seen[dispatcher][0] == regs_addr
    entry = seen[ENTRY_PREFIX[arch] + "openat"]
    assert entry == ((regs_addr, 0, 0, 0) if arch in WRAPPED_ARCHES else tuple(args))
    assert seen["do_sys_openat2"][:2] == (args[0], name)  # inner functions: plain arguments
    sys.close_all()


CLANG_KSYSCALL = r"""
#include <linux/bpf.h>
#include <linux/ptrace.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

struct value { __u64 nr; __u64 filename; char name[64]; };
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct value);
} seen SEC(".maps");

SEC("kprobe/__x64_sys_openat")
int BPF_KPROBE(openat_entry)
{
	struct pt_regs *regs = PT_REGS_SYSCALL_REGS(ctx);
	struct value v = {};
	__u32 zero = 0;

	bpf_probe_read_kernel(&v.nr, sizeof(v.nr), &regs->orig_rax);
	bpf_probe_read_kernel(&v.filename, sizeof(v.filename), &PT_REGS_PARM2_SYSCALL(regs));
	bpf_probe_read_user_str(v.name, sizeof(v.name), (const char *)v.filename);
	bpf_map_update_elem(&seen, &zero, &v, BPF_ANY);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
"""


@pytest.mark.skipif(shutil.which("clang") is None, reason="clang is needed to build the BPF object")
def test_clang_built_syscall_kprobe_on_x64_sys_openat(tmp_path):
    """libbpf's own macros (PT_REGS_SYSCALL_REGS, PT_REGS_PARM2_SYSCALL) built by clang, loaded
    by the loader: the program finds the filename through the inner pt_regs."""
    from loader.ebpf import Ebpf

    src, obj = tmp_path / "ksyscall.bpf.c", tmp_path / "ksyscall.bpf.o"
    src.write_text(CLANG_KSYSCALL)
    subprocess.run(["clang", "-O2", "-g", "-target", "bpf", "-D__TARGET_ARCH_x86",
                    "-I/usr/include/x86_64-linux-gnu", "-c", str(src), "-o", str(obj)], check=True)
    sim = open_kernel("sim", arch="x86_64", cpus=1)
    try:
        with Ebpf.load_file(obj, kernel=sim) as ebpf:
            prog = ebpf.program("openat_entry")
            prog.load()
            prog.attach()
            name = sim.task.memory.put_str("/proc/version")
            assert sim.kernel.syscall(sim.task, "openat", -100, name, O_RDONLY, 0) >= 3
            value = ebpf.map("seen")[0]  # decoded with the object's BTF: struct value's members
            assert (value["nr"], value["filename"], value["name"]) == (257, name, "/proc/version")
    finally:
        sim.close_all()
