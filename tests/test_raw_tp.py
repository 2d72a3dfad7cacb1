"""BPF_RAW_TRACEPOINT_OPEN on both kernels: errnos, the link and its info, and what programs see.

The same raw bpf() calls go to kernel_sim and to this machine's Linux 6.18: the errno table
was measured there first. Programs on sys_enter / sys_exit read their arguments from the u64
ctx array and follow the ``struct pt_regs *`` with bpf_probe_read_kernel, so the test checks
that the simulated pointer arguments are real readable kernel memory with the arch's layout.
"""

from __future__ import annotations

import ctypes
import errno
import struct

import pytest
from test_maps_util import MapUser
from test_prog_load_run import load

from kernel_sim.uapi.bpf import (
    BpfCmd,
    BpfProgInfo,
    InfoAttr,
    LinkDetachAttr,
    LinkType,
    MapType,
    ProgType,
    RawTracepointAttr,
    make_attr,
)
from kernel_sim.uapi.bpf_enums import HelperId as H
from kernel_sim.uapi.insn import BPF_ADD, BPF_JNE, BPF_PSEUDO_MAP_FD, BPF_RSH
from kernel_sim.uapi.ptrace import PtRegsX86_64
from kernel_sim.vm.asm import DW, W, alu64, call, exit_, jmp, lddw, ldx, mov64, st, stx
from loader.backends import open_kernel
from loader.ebpf import Ebpf
from tests.conftest import REPO

R0_EXIT = [mov64(0, imm=0), exit_()]
NR_OPENAT = 257  # x86_64 (this machine and the simulated kernel's default arch)
O_NOFOLLOW = 0o400000
O_CLOEXEC = 0o2000000
DI = PtRegsX86_64.rdi.offset
DX = PtRegsX86_64.rdx.offset
ORIG_AX = PtRegsX86_64.orig_rax.offset
MISSING = "/nonexistent-raw-tp-test"


def open_rtp(sys, name: bytes | int | None, prog_fd: int, tail: bytes = b"") -> int:
    """RAW_TRACEPOINT_OPEN; ``name`` bytes are put in a buffer, an int is used as the address."""
    keep = None
    if isinstance(name, bytes):
        keep = ctypes.create_string_buffer(name)
        addr = ctypes.addressof(keep)
    else:
        addr = name or 0
    attr = make_attr(RawTracepointAttr, name=addr, prog_fd=prog_fd) + tail
    try:
        fd = sys.bpf(BpfCmd.RAW_TRACEPOINT_OPEN, attr)
    finally:
        del keep
    getattr(sys, "links", []).append(fd)
    return fd


def err(fn, *args) -> int:
    try:
        fd = fn(*args)
    except OSError as e:
        return e.errno
    raise AssertionError(f"succeeded with fd {fd}")


def link_info(sys, fd: int, name_buf=None, name_len: int = 0) -> tuple[bytes, int]:
    """OBJ_GET_INFO_BY_FD of a link (64 bytes asked for); returns (info bytes, info_len)."""
    info = ctypes.create_string_buffer(64)
    if name_buf is not None:
        struct.pack_into("<QI", info, 16, ctypes.addressof(name_buf) if name_buf else 0, name_len)
    attr = make_attr(InfoAttr, bpf_fd=fd, info_len=64, info=ctypes.addressof(info))
    sys.bpf(BpfCmd.OBJ_GET_INFO_BY_FD, attr)
    return info.raw, InfoAttr.from_attr(memoryview(attr)).info_len


def prog_id(sys, fd: int) -> int:
    info = BpfProgInfo()
    attr = make_attr(InfoAttr, bpf_fd=fd, info_len=ctypes.sizeof(info), info=ctypes.addressof(info))
    sys.bpf(BpfCmd.OBJ_GET_INFO_BY_FD, attr)
    return info.id


@pytest.fixture
def sys(bpf_kernel):
    """bpf_kernel whose raw tracepoint links are closed at the end (Linux keeps them while the fd lives)."""
    opened: list[int] = []
    bpf_kernel.links = opened
    yield bpf_kernel
    for fd in opened:
        try:
            bpf_kernel.close(fd)
        except OSError:
            pass


def test_errnos_match_linux(sys):
    rt = load(sys, ProgType.RAW_TRACEPOINT, R0_EXIT)
    kp = load(sys, ProgType.KPROBE, R0_EXIT)
    tp = load(sys, ProgType.TRACEPOINT, R0_EXIT)
    map_fd = MapUser(sys).create(MapType.ARRAY, 4, 4, 1)
    assert err(open_rtp, sys, b"no_such_tracepoint", rt) == errno.ENOENT
    assert err(open_rtp, sys, b"", rt) == errno.ENOENT
    assert err(open_rtp, sys, b"sys_enter_openat", rt) == errno.ENOENT          # a trace event, not a raw tp
    assert err(open_rtp, sys, b"raw_syscalls/sys_enter", rt) == errno.ENOENT
    assert err(open_rtp, sys, b"sys_enter" + b"x" * 200, rt) == errno.ENOENT   # cut at 127 bytes
    assert err(open_rtp, sys, None, rt) == errno.EFAULT                        # raw tp programs need a name
    assert err(open_rtp, sys, 1, rt) == errno.EFAULT
    assert err(open_rtp, sys, b"sys_enter", kp) == errno.EINVAL
    assert err(open_rtp, sys, b"no_such_tracepoint", tp) == errno.EINVAL       # type checked before the name
    assert err(open_rtp, sys, b"sys_enter", 9999) == errno.EBADF
    assert err(open_rtp, sys, b"sys_enter", map_fd) == errno.EINVAL
    assert err(open_rtp, sys, b"sys_enter", rt, bytes(8) + b"\1") == errno.EINVAL  # past the cookie
    # A program that reads ctx past the tracepoint's arguments is refused at attach.
    reads_arg2 = load(sys, ProgType.RAW_TRACEPOINT, [ldx(DW, 0, 1, 16)] + R0_EXIT)
    assert err(open_rtp, sys, b"sys_enter", reads_arg2) == errno.EINVAL       # (regs, id)
    reads_arg1_hi = load(sys, ProgType.RAW_TRACEPOINT, [ldx(W, 0, 1, 12)] + R0_EXIT)
    for name in (b"sys_enter", b"sys_exit", b"sched_process_exit"):
        assert open_rtp(sys, name, reads_arg1_hi) > 0
    for name in (b"sched_switch", b"sched_process_exec"):
        assert open_rtp(sys, name, reads_arg2) > 0


@pytest.mark.parametrize("prog_type", [ProgType.RAW_TRACEPOINT, ProgType.RAW_TRACEPOINT_WRITABLE])
def test_link_and_its_info(sys, prog_type):
    prog = load(sys, prog_type, R0_EXIT)
    fd = open_rtp(sys, b"sys_enter", prog, struct.pack("<Q", 0xC00C1E))
    info, used = link_info(sys, fd)
    ltype, lid, pid = struct.unpack_from("<III", info)
    tp_name, tp_len, cookie = struct.unpack_from("<QI4xQ", info, 16)
    assert (ltype, pid, used) == (LinkType.RAW_TRACEPOINT, prog_id(sys, prog), 64)
    assert lid > 0 and (tp_name, tp_len, cookie) == (0, len(b"sys_enter\0"), 0xC00C1E)
    name = ctypes.create_string_buffer(b"\xff" * 32)
    info, _ = link_info(sys, fd, name, 32)
    assert name.raw[:10] == b"sys_enter\0" and struct.unpack_from("<I", info, 24)[0] == 10
    short = ctypes.create_string_buffer(b"\xff" * 8)
    with pytest.raises(OSError) as e:
        link_info(sys, fd, short, 4)
    assert e.value.errno == errno.ENOSPC and short.raw[:5] == b"sys\0\xff"
    for buf, n in ((0, 4), (name, 0)):
        with pytest.raises(OSError) as e:
            link_info(sys, fd, buf, n)
        assert e.value.errno == errno.EINVAL
    with pytest.raises(OSError) as e:
        sys.bpf(BpfCmd.LINK_DETACH, make_attr(LinkDetachAttr, link_fd=fd))
    assert e.value.errno == errno.EOPNOTSUPP
    second = open_rtp(sys, b"sys_enter", prog)  # one program, two links: allowed
    assert struct.unpack_from("<I", link_info(sys, second)[0], 4)[0] != lid


def syscall_recorder(sys, map_fd: int, tgid: int) -> tuple[int, int]:
    """sys_enter / sys_exit programs that record openat calls of ``tgid`` into the array map.

    slot 0 (sys_enter): [id, regs->di, regs->dx, count]; slot 1 (sys_exit): [regs->orig_ax, ret, 0, count].
    """

    def prog(slot: int, first, second) -> list:
        return [
            mov64(6, 1),
            call(H.get_current_pid_tgid), alu64(BPF_RSH, 0, imm=32),
            jmp(BPF_JNE, 0, imm=tgid, off="out"),
            *first,                                               # r7, r8, r9 = the three values
            st(W, 10, -4, slot), mov64(2, 10), alu64(BPF_ADD, 2, imm=-4),
            lddw(1, map_fd, BPF_PSEUDO_MAP_FD), call(H.map_lookup_elem),
            jmp(0x15, 0, imm=0, off="out"),                       # JEQ r0, 0
            stx(DW, 0, 7, 0), stx(DW, 0, 8, 8), stx(DW, 0, 9, 16),
            ldx(DW, 1, 0, 24), alu64(BPF_ADD, 1, imm=1), stx(DW, 0, 1, 24),
            "out", *R0_EXIT,
        ] + second

    def read_reg(dst: int, off: int) -> list:
        """dst = *(u64 *)(ctx[0] + off) through bpf_probe_read_kernel into the stack."""
        return [mov64(1, 10), alu64(BPF_ADD, 1, imm=-16), mov64(2, imm=8), ldx(DW, 3, 6, 0),
                alu64(BPF_ADD, 3, imm=off), call(H.probe_read_kernel), ldx(DW, dst, 10, -16)]

    enter = prog(0, [ldx(DW, 7, 6, 8), jmp(BPF_JNE, 7, imm=NR_OPENAT, off="out"),
                     *read_reg(8, DI), *read_reg(9, DX)], [])
    exit_prog = prog(1, [*read_reg(7, ORIG_AX), jmp(BPF_JNE, 7, imm=NR_OPENAT, off="out"),
                         ldx(DW, 8, 6, 8), mov64(9, imm=0)], [])
    return (load(sys, ProgType.RAW_TRACEPOINT, resolve(enter)),
            load(sys, ProgType.RAW_TRACEPOINT, resolve(exit_prog)))


def resolve(items: list) -> list:
    """Turn string labels and off="label" jumps into relative offsets (lddw counts two slots)."""
    flat, labels = [], {}
    for item in items:
        if isinstance(item, str):
            labels[item] = sum(len(x) if isinstance(x, list) else 1 for x in flat)
        else:
            flat.append(item)
    out, pc = [], 0
    for item in flat:
        insns = item if isinstance(item, list) else [item]
        for insn in insns:
            if isinstance(insn.off, str):
                insn = insn._replace(off=labels[insn.off] - pc - 1)
            out.append(insn)
            pc += 1
    return out


def test_programs_see_the_syscall_arguments(sys):
    maps = MapUser(sys)
    map_fd = maps.create(MapType.ARRAY, 4, 32, 2)
    enter, exit_prog = syscall_recorder(sys, map_fd, sys.getpid())
    links = [open_rtp(sys, b"sys_enter", enter), open_rtp(sys, b"sys_exit", exit_prog)]
    flags = O_NOFOLLOW
    with pytest.raises(OSError) as e:
        sys.openat(MISSING, flags)
    assert e.value.errno == errno.ENOENT
    nr, di, dx, count = struct.unpack("<4Q", maps.lookup(map_fd, struct.pack("<I", 0), 32))
    # dfd is an int: glibc leaves the upper half of rdi zero, so only the low 32 bits are AT_FDCWD.
    assert (nr, di & 0xFFFFFFFF, dx & ~O_CLOEXEC, count) == (NR_OPENAT, -100 & 0xFFFFFFFF, flags, 1)
    orig_ax, ret, _, count = struct.unpack("<4Q", maps.lookup(map_fd, struct.pack("<I", 1), 32))
    assert (orig_ax, ret, count) == (NR_OPENAT, -errno.ENOENT & (2**64 - 1), 1)
    for fd in links:
        sys.close(fd)
        sys.links.remove(fd)
    with pytest.raises(OSError):
        sys.openat(MISSING, flags)
    assert maps.lookup(map_fd, struct.pack("<I", 0), 32)[24:] == struct.pack("<Q", 1)  # detached: no new run


@pytest.fixture
def sim():
    k = open_kernel("sim")
    yield k
    k.close_all()


def test_loader_raw_tracepoint_attach(sim):
    """loader/programs.py RawTracePoint: attach by name, the program runs on the kernel's syscalls."""
    with Ebpf.load_file(REPO / "tests" / "objects" / "sections.bpf.o", kernel=sim) as ebpf:
        prog = ebpf.program("raw_enter")
        prog.load()
        link = prog.attach()
        kprog = sim.kernel.ids["prog"].objects[prog_id(sim, prog.fd)]
        before = kprog.run_cnt
        with pytest.raises(OSError):
            sim.openat(MISSING, 0)
        assert kprog.run_cnt > before
        link.detach()
        after = kprog.run_cnt
        with pytest.raises(OSError):
            sim.openat(MISSING, 0)
        assert kprog.run_cnt == after


def test_sched_tracepoints_hand_out_task_and_bprm_pointers(sim):
    """sched_process_exec(p, old_pid, bprm) and sched_process_exit(p, group_dead) on kernel_sim: the
    pointers are kernel memory a program follows (p->pid, bprm->filename as a string)."""
    from kernel_sim.bpf.raw_tp import LinuxBinprm
    from kernel_sim.task_kmem import TaskStruct

    maps = MapUser(sim)
    map_fd = maps.create(MapType.ARRAY, 4, 64, 2)

    def prog(slot: int, body: list) -> list:
        return resolve([
            mov64(6, 1),
            st(W, 10, -4, slot), mov64(2, 10), alu64(BPF_ADD, 2, imm=-4),
            lddw(1, map_fd, BPF_PSEUDO_MAP_FD), call(H.map_lookup_elem),
            jmp(0x15, 0, imm=0, off="out"), mov64(8, 0),
            ldx(DW, 1, 6, 8), stx(W, 8, 1, 0),                              # value[0] = ctx[1]
            mov64(1, 8), alu64(BPF_ADD, 1, imm=4), mov64(2, imm=4),          # value[4] = p->pid
            ldx(DW, 3, 6, 0), alu64(BPF_ADD, 3, imm=TaskStruct.pid.offset), call(H.probe_read_kernel),
            *body,
            "out", *R0_EXIT,
        ])

    exec_body = [  # value[8..56] = bprm->filename as a string
        mov64(1, 10), alu64(BPF_ADD, 1, imm=-16), mov64(2, imm=8), ldx(DW, 3, 6, 16),
        alu64(BPF_ADD, 3, imm=LinuxBinprm.filename.offset), call(H.probe_read_kernel),
        mov64(1, 8), alu64(BPF_ADD, 1, imm=8), mov64(2, imm=48), ldx(DW, 3, 10, -16),
        call(H.probe_read_kernel_str),
    ]
    on_exec = load(sim, ProgType.RAW_TRACEPOINT, prog(0, exec_body))
    on_exit = load(sim, ProgType.RAW_TRACEPOINT, prog(1, []))
    links = [open_rtp(sim, b"sched_process_exec", on_exec), open_rtp(sim, b"sched_process_exit", on_exit)]
    k = sim.kernel
    worker = k.spawn("worker")
    assert k.syscall(worker, "execve", worker.memory.put_str("/bin/cat"), 0, 0) == 0
    old_pid, pid = struct.unpack_from("<ii", maps.lookup(map_fd, struct.pack("<I", 0), 64))
    filename = maps.lookup(map_fd, struct.pack("<I", 0), 64)[8:].split(b"\0")[0]
    assert (old_pid, pid, filename) == (worker.pid, worker.pid, b"/bin/cat")
    k.syscall(worker, "exit", 0)
    group_dead, pid = struct.unpack_from("<ii", maps.lookup(map_fd, struct.pack("<I", 1), 64))
    assert (group_dead, pid) == (1, worker.pid)
    for fd in links:
        sim.close(fd)
    regions = len(k.vm.regions)
    worker2 = k.spawn("worker2")
    k.syscall(worker2, "execve", worker2.memory.put_str("/bin/cat"), 0, 0)
    assert len(k.vm.regions) == regions  # detached: no bprm or task regions made any more


def test_link_by_id(sys):
    prog = load(sys, ProgType.RAW_TRACEPOINT, R0_EXIT)
    fd = open_rtp(sys, b"sched_switch", prog)
    lid = struct.unpack_from("<I", link_info(sys, fd)[0], 4)[0]
    from kernel_sim.uapi.bpf import GetIdAttr

    other = sys.bpf(BpfCmd.LINK_GET_FD_BY_ID, make_attr(GetIdAttr, start_id=lid))
    sys.links.append(other)
    name = ctypes.create_string_buffer(32)
    info, _ = link_info(sys, other, name, 32)
    assert struct.unpack_from("<III", info) == (LinkType.RAW_TRACEPOINT, lid, prog_id(sys, prog))
    assert name.value == b"sched_switch"


def test_loader_unknown_raw_tracepoint_is_enoent(sim):
    from loader.errors import AttachError

    with Ebpf.load_file(REPO / "tests" / "objects" / "sections.bpf.o", kernel=sim) as ebpf:
        prog = ebpf.program("raw_enter")
        prog.load()
        with pytest.raises(AttachError) as e:
            prog.attach("no_such_tracepoint")
        assert e.value.errno == errno.ENOENT
