"""BPF_PROG_LOAD to a runnable program, and BPF_PROG_TEST_RUN, on both kernels.

The same raw syscalls go to kernel_sim and to this machine's Linux (where bpf() is allowed):
results, errnos and output bytes must agree.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct

import pytest

from kernel_sim.uapi.bpf import BpfCmd, BtfLoadAttr, ProgLoadAttr, ProgType, make_attr
from kernel_sim.uapi.bpf import TestRunAttr as RunAttr
from kernel_sim.uapi.insn import BPF_ADD, BPF_SUB, encode
from kernel_sim.vm import asm
from kernel_sim.vm.asm import DW, W, alu64, exit_, ldx, mov64, st
from loader.backends import open_kernel

ENOTSUPP = 524
BPF_F_SLEEPABLE = 1 << 4


def func_btf(sys, n_funcs: int) -> int:
    """A BTF with an int, a no-argument FUNC_PROTO returning it and n static FUNCs f0..fn-1."""
    strs = b"\0int\0" + b"".join(f"f{i}\0".encode() for i in range(n_funcs))
    types = struct.pack("<IIII", 1, 1 << 24, 4, (1 << 24) | 32) + struct.pack("<III", 0, 13 << 24, 1)
    off = 5
    for i in range(n_funcs):
        types += struct.pack("<III", off, 12 << 24, 2)
        off += len(f"f{i}") + 1
    blob = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(strs)) + types + strs
    data = ctypes.create_string_buffer(blob, len(blob))
    return sys.bpf(BpfCmd.BTF_LOAD, make_attr(BtfLoadAttr, btf=ctypes.addressof(data), btf_size=len(blob)))


def load(sys, prog_type: int, insns, flags: int = 0, license: bytes = b"GPL", funcs: list[int] | None = None) -> int:
    """PROG_LOAD; ``funcs`` (subprogram entry insns, 0 first) adds the BTF func_info bpf_loop needs."""
    insns = asm.flatten(*insns)
    code = encode(insns)
    buf = ctypes.create_string_buffer(code, len(code))
    lic = ctypes.create_string_buffer(license)
    log = ctypes.create_string_buffer(1 << 16)
    extra = {}
    if funcs:
        info = b"".join(struct.pack("<II", off, 3 + i) for i, off in enumerate(funcs))
        info_buf = ctypes.create_string_buffer(info, len(info))
        extra = dict(prog_btf_fd=func_btf(sys, len(funcs)), func_info_rec_size=8,
                     func_info=ctypes.addressof(info_buf), func_info_cnt=len(funcs))
    attr = make_attr(ProgLoadAttr, prog_type=prog_type, insn_cnt=len(insns), insns=ctypes.addressof(buf),
                     license=ctypes.addressof(lic), prog_flags=flags, log_level=1, log_buf=ctypes.addressof(log),
                     log_size=1 << 16, **extra)
    try:
        return sys.bpf(BpfCmd.PROG_LOAD, attr)
    except OSError as e:
        raise AssertionError(f"load failed: {e}\n{log.value.decode()}") from None


class Result:
    def __init__(self, err: int, attr: RunAttr, data: bytes, ctx: bytes, ctx_in: bytes) -> None:
        self.err = err
        self.retval = attr.retval
        self.data_size_out = attr.data_size_out
        self.ctx_size_out = attr.ctx_size_out
        self.data = data
        self.ctx = ctx
        self.ctx_in = ctx_in


def test_run(sys, fd: int, data: bytes | None = None, ctx: bytes | None = None, data_out: int = 0,
             ctx_out: int = 0, **fields) -> Result:
    din = ctypes.create_string_buffer(data, len(data)) if data is not None else None
    cin = ctypes.create_string_buffer(ctx, len(ctx)) if ctx is not None else None
    dout = ctypes.create_string_buffer(max(data_out, 1))
    cout = ctypes.create_string_buffer(max(ctx_out, 1))
    if din is not None:
        fields.update(data_in=ctypes.addressof(din), data_size_in=len(data))
    if cin is not None:
        fields.update(ctx_in=ctypes.addressof(cin), ctx_size_in=len(ctx))
    if data_out:
        fields.update(data_out=ctypes.addressof(dout), data_size_out=data_out)
    if ctx_out:
        fields.update(ctx_out=ctypes.addressof(cout), ctx_size_out=ctx_out)
    attr = make_attr(RunAttr, prog_fd=fd, **fields)
    try:
        err = sys.bpf(BpfCmd.PROG_TEST_RUN, attr)
    except OSError as e:
        err = -e.errno
    return Result(err, RunAttr.from_attr(attr), dout.raw[:data_out], cout.raw[:ctx_out],
                  cin.raw[:len(ctx)] if cin is not None else b"")


test_run.__test__ = False  # a helper, not a test

R42 = [mov64(0, imm=42), exit_()]
PKT = bytes(range(64))
XDP_LEN = [  # r0 = data_end - data
    ldx(W, 2, 1, 0), ldx(W, 3, 1, 4), mov64(0, 3), alu64(BPF_SUB, 0, 2), exit_(),
]


def test_trivial_program_loads_and_runs(bpf_kernel):
    fd = load(bpf_kernel, ProgType.SOCKET_FILTER, R42)
    r = test_run(bpf_kernel, fd, PKT)
    assert (r.err, r.retval, r.data_size_out) == (0, 42, len(PKT))
    bpf_kernel.close(fd)


def test_sim_run_ctx_uses_the_engine():
    """BpfProg.run_ctx is the simulated kernel's internal entry (attached events use it)."""
    sim = open_kernel("sim")
    fd = load(sim, ProgType.KPROBE, [ldx(DW, 0, 1, 8), exit_()])
    prog = sim.task.files.get(fd).prog
    assert prog.run_ctx(struct.pack("<QQ", 1, 0x1234)) == 0x1234
    assert prog.run_cnt == 1


def test_xdp_sees_packet_pointers(bpf_kernel):
    fd = load(bpf_kernel, ProgType.XDP, XDP_LEN)
    assert test_run(bpf_kernel, fd, PKT).retval == 64
    # metadata before the packet: data = 8, data_end = 40
    r = test_run(bpf_kernel, fd, PKT, ctx=struct.pack("<6I", 8, 40, 0, 0, 0, 0), ctx_out=24)
    assert (r.err, r.retval) == (0, 32)
    assert struct.unpack("<6I", r.ctx)[:2] == (8, 40)


def test_xdp_writes_reach_data_out(bpf_kernel):
    prog = [
        ldx(W, 2, 1, 0), ldx(W, 3, 1, 4),
        mov64(4, 2), alu64(BPF_ADD, 4, imm=4),
        asm.jmp(0x20, 4, 3, off=1),           # if data + 4 > data_end: skip the store
        st(W, 2, 0, 0x11223344),
        mov64(0, imm=2), exit_(),
    ]
    fd = load(bpf_kernel, ProgType.XDP, prog)
    r = test_run(bpf_kernel, fd, PKT, data_out=128)
    assert (r.err, r.retval, r.data_size_out) == (0, 2, 64)
    assert r.data[:64] == bytes.fromhex("44332211") + PKT[4:]


def test_socket_filter_sees_l3_and_returns_zeroed_ethernet_header(bpf_kernel):
    fd = load(bpf_kernel, ProgType.SOCKET_FILTER, [ldx(W, 0, 1, 0), exit_()])  # skb->len
    r = test_run(bpf_kernel, fd, PKT, data_out=64)
    assert (r.err, r.retval, r.data_size_out) == (0, 50, 64)
    assert r.data == bytes(14) + PKT[14:]
    fd2 = load(bpf_kernel, ProgType.SCHED_CLS, [ldx(W, 0, 1, 0), exit_()])
    r = test_run(bpf_kernel, fd2, PKT, data_out=64)
    assert (r.retval, r.data) == (64, PKT)


def test_skb_ctx_in_and_out(bpf_kernel):
    # mark += 1; cb[0] = 7; r0 = priority
    prog = [ldx(W, 2, 1, 8), alu64(BPF_ADD, 2, imm=1), asm.stx(W, 1, 2, 8), st(W, 1, 48, 7),
            ldx(W, 0, 1, 32), exit_()]
    fd = load(bpf_kernel, ProgType.SCHED_CLS, prog)
    ctx = bytearray(192)
    struct.pack_into("<I", ctx, 8, 100)
    struct.pack_into("<I", ctx, 32, 5)
    r = test_run(bpf_kernel, fd, PKT, ctx=bytes(ctx), ctx_out=192)
    assert (r.err, r.retval, r.ctx_size_out) == (0, 5, 192)
    assert struct.unpack_from("<I", r.ctx, 8)[0] == 101
    assert struct.unpack_from("<I", r.ctx, 48)[0] == 7
    assert struct.unpack_from("<I", r.ctx, 40)[0] == 1          # ifindex: lo
    assert struct.unpack_from("<I", r.ctx, 160)[0] == 64        # wire_len
    assert struct.unpack_from("<I", r.ctx, 0)[0] == 0           # len is not copied out


@pytest.mark.parametrize("offset", [0, 4, 16, 44, 68, 76, 160, 180])
def test_skb_ctx_fields_that_cannot_be_set(bpf_kernel, offset):
    fd = load(bpf_kernel, ProgType.SOCKET_FILTER, R42)
    ctx = bytearray(192)
    ctx[offset] = 1
    assert test_run(bpf_kernel, fd, PKT, ctx=bytes(ctx)).err == -errno.EINVAL


def test_enospc_when_data_out_is_short(bpf_kernel):
    fd = load(bpf_kernel, ProgType.XDP, R42)
    r = test_run(bpf_kernel, fd, PKT, data_out=10)
    assert (r.err, r.retval, r.data_size_out, r.data) == (-errno.ENOSPC, 42, 64, PKT[:10])
    fd2 = load(bpf_kernel, ProgType.SOCKET_FILTER, R42)
    r = test_run(bpf_kernel, fd2, PKT, ctx=bytes(192), ctx_out=8)
    assert (r.err, r.retval, r.ctx_size_out) == (-errno.ENOSPC, 42, 192)


@pytest.mark.parametrize("prog_type", [ProgType.SOCKET_FILTER, ProgType.SCHED_CLS, ProgType.XDP])
@pytest.mark.parametrize("case, expect", [
    ({"data": None}, -errno.EINVAL),
    ({"data": bytes(13)}, -errno.EINVAL),
    ({"data": bytes(14)}, 0),
    ({"data": None, "ctx": bytes(8)}, -errno.EINVAL),
    ({"data": PKT, "batch_size": 1}, -errno.EINVAL),
    ({"data": PKT, "flags": 1 << 3}, -errno.EINVAL),
    ({"data": PKT, "ctx": bytes(193) + b"\x01"}, -errno.E2BIG),
    ({"data": PKT, "ctx": bytes(5000)}, -errno.E2BIG),
    ({"data": PKT, "ctx_size_in": 8}, -errno.EINVAL),
    ({"data": PKT, "repeat": 5}, 0),
])
def test_packet_test_run_errnos(bpf_kernel, prog_type, case, expect):
    fd = load(bpf_kernel, prog_type, R42)
    case = dict(case)
    r = test_run(bpf_kernel, fd, case.pop("data"), **case)
    assert r.err == expect
    if expect == 0:
        assert r.retval == 42


def test_packet_size_limits(bpf_kernel):
    sock = load(bpf_kernel, ProgType.SOCKET_FILTER, R42)
    assert test_run(bpf_kernel, sock, bytes(3712)).err == 0
    assert test_run(bpf_kernel, sock, bytes(3713)).err == -errno.EINVAL
    xdp = load(bpf_kernel, ProgType.XDP, R42)
    assert test_run(bpf_kernel, xdp, bytes(5000)).err == 0
    assert test_run(bpf_kernel, xdp, bytes(73152)).err == 0
    assert test_run(bpf_kernel, xdp, bytes(73153)).err == -errno.ENOMEM


@pytest.mark.parametrize("md, expect", [
    ((0, 64, 0, 0, 0, 0), 0), ((4, 64, 0, 0, 0, 0), 0), ((3, 64, 0, 0, 0, 0), -errno.EINVAL),
    ((0, 65, 0, 0, 0, 0), -errno.EINVAL), ((8, 4, 0, 0, 0, 0), -errno.EINVAL), ((0, 64, 4, 0, 0, 0), -errno.EINVAL),
    ((0, 64, 0, 0, 1, 0), -errno.EINVAL), ((0, 64, 0, 0, 0, 1), -errno.EINVAL), ((0, 64, 0, 999, 0, 0), -errno.ENODEV),
])
def test_xdp_md_checks(bpf_kernel, md, expect):
    fd = load(bpf_kernel, ProgType.XDP, XDP_LEN)
    r = test_run(bpf_kernel, fd, PKT, ctx=struct.pack("<6I", *md))
    assert r.err == expect
    if not expect:
        assert r.retval == md[1] - md[0]


def test_raw_tracepoint(bpf_kernel):
    fd = load(bpf_kernel, ProgType.RAW_TRACEPOINT, [ldx(DW, 0, 1, 8), exit_()])
    args = struct.pack("<QQ", 5, 77)
    assert (test_run(bpf_kernel, fd, ctx=args).retval) == 77
    assert test_run(bpf_kernel, fd, ctx=args[:8]).err == -errno.EINVAL       # shorter than the access
    assert test_run(bpf_kernel, fd, ctx=bytes(104)).err == -errno.EINVAL     # more than 12 args
    assert test_run(bpf_kernel, fd, PKT, ctx=args).err == -errno.EINVAL
    assert test_run(bpf_kernel, fd, ctx=args, repeat=2).err == -errno.EINVAL
    assert test_run(bpf_kernel, fd, ctx=args, ctx_out=16).err == -errno.EINVAL
    assert test_run(bpf_kernel, fd, ctx=args, cpu=1).err == -errno.EINVAL
    assert test_run(bpf_kernel, fd, ctx=args, flags=1, cpu=1).retval == 77
    assert test_run(bpf_kernel, fd, ctx=args, flags=1, cpu=4096).err == -errno.ENXIO
    fd42 = load(bpf_kernel, ProgType.RAW_TRACEPOINT, R42)
    assert test_run(bpf_kernel, fd42).retval == 42


def test_syscall_program_writes_ctx_back(bpf_kernel):
    fd = load(bpf_kernel, ProgType.SYSCALL, [ldx(W, 0, 1, 4), st(W, 1, 0, 99), exit_()], flags=BPF_F_SLEEPABLE)
    r = test_run(bpf_kernel, fd, ctx=struct.pack("<II", 1, 7))
    assert (r.err, r.retval) == (0, 7)
    assert r.ctx_in == struct.pack("<II", 99, 7)
    assert test_run(bpf_kernel, fd).err == -errno.EINVAL                     # reads ctx: needs one
    assert test_run(bpf_kernel, fd, ctx=bytes(8), repeat=2).err == -errno.EINVAL
    assert test_run(bpf_kernel, fd, PKT, ctx=bytes(8)).err == -errno.EINVAL


@pytest.mark.parametrize("prog_type", [ProgType.KPROBE, ProgType.TRACEPOINT, ProgType.PERF_EVENT])
def test_types_without_test_run_are_enotsupp(bpf_kernel, prog_type):
    fd = load(bpf_kernel, prog_type, R42)
    assert test_run(bpf_kernel, fd, PKT).err == -ENOTSUPP


def test_test_run_fd_errors(bpf_kernel):
    assert test_run(bpf_kernel, 9999, PKT).err == -errno.EBADF
    if bpf_kernel.kind == "linux":
        fd = os.open("/dev/null", os.O_RDONLY)
    else:
        fd = bpf_kernel.eventfd(0, 0)
    assert test_run(bpf_kernel, fd, PKT).err == -errno.EINVAL
    bpf_kernel.close(fd)


def ld_abs(size: int, imm: int):
    return asm.insn(0x20 | size, 0, 0, 0, imm)


def ld_ind(size: int, src: int, imm: int):
    return asm.insn(0x40 | size, 0, src, 0, imm)


LD_ABS_PROG = [
    mov64(6, 1),
    ld_abs(asm.B, 0), mov64(7, 0),                                   # data[0]
    ld_abs(asm.H, 2), alu64(0x60, 7, imm=16), alu64(0xA0, 7, 0),     # be16 data[2:4]
    mov64(8, imm=1), ld_ind(W, 8, 4), alu64(0x60, 7, imm=8), alu64(0xA0, 7, 0),  # be32 data[5:9]
    ld_abs(asm.B, -0x200000 + 12), alu64(0x60, 7, imm=4), alu64(0xA0, 7, 0),    # mac header byte 12
    ld_abs(asm.B, -0x100000 + 1), alu64(0x60, 7, imm=4), alu64(0xA0, 7, 0),     # network header byte 1
    mov64(0, 7), mov64(1, 0), alu64(0x70, 1, imm=32), alu64(0xA0, 0, 1), exit_(),
]


@pytest.mark.parametrize("prog_type", [ProgType.SOCKET_FILTER, ProgType.SCHED_CLS])
def test_ld_abs_and_ld_ind(bpf_kernel, prog_type):
    """Legacy packet loads: big-endian, relative to skb->data, SKF_NET_OFF / SKF_LL_OFF bases."""
    pkt = bytes((i * 37 + 11) & 0xFF for i in range(64))
    fd = load(bpf_kernel, prog_type, LD_ABS_PROG)
    r = test_run(bpf_kernel, fd, pkt)
    start = 14 if prog_type == ProgType.SOCKET_FILTER else 0
    data = pkt[start:]
    v = data[0]
    v = (v << 16) ^ int.from_bytes(data[2:4], "big")
    v = (v << 8) ^ int.from_bytes(data[5:9], "big")
    v = (v << 4) ^ pkt[12]
    v = (v << 4) ^ pkt[15]
    v &= (1 << 64) - 1
    assert (r.err, r.retval) == (0, (v ^ (v >> 32)) & 0xFFFFFFFF)


def test_ld_abs_out_of_the_packet_returns_zero(bpf_kernel):
    prog = [mov64(6, 1), mov64(0, imm=7), ld_abs(W, 62), mov64(0, imm=9), exit_()]
    fd = load(bpf_kernel, ProgType.SOCKET_FILTER, prog)
    assert test_run(bpf_kernel, fd, PKT).retval == 0                     # 62 + 4 > 50 bytes of L3
    assert test_run(bpf_kernel, fd, bytes(14 + 66)).retval == 9


def test_a_jit_that_fails_to_compile_falls_back_to_the_interpreter(monkeypatch, caplog):
    """PROG_LOAD must not fail (or crash) because of a JIT bug: the program is interpreted."""
    from kernel_sim.bpf import engine as engine_module
    from kernel_sim.vm.interpreter import Interpreter

    class BrokenJit:
        def __init__(self, vmprog):
            raise SyntaxError("generated code is wrong")

    monkeypatch.setattr(engine_module, "jit_class", lambda: BrokenJit)
    sys = open_kernel("sim", engine="jit")
    with caplog.at_level("WARNING", logger="kernel_sim.vm"):
        fd = load(sys, ProgType.SOCKET_FILTER, R42)
    assert isinstance(sys.task.files.get(fd).prog.engine.vm_engine, Interpreter)
    assert "JIT failed" in caplog.text
    assert test_run(sys, fd, PKT).retval == 42


@pytest.mark.parametrize("case, expect", [
    ({}, (0, 0, 64)),
    ({"repeat": 3}, (0, 0, 64)),
    ({"batch_size": 256}, (0, 0, 64)),
    ({"batch_size": 257}, (-errno.E2BIG, 0, 0)),
    ({"ctx": bytes(24)}, (-errno.EINVAL, 0, 0)),
    ({"ctx": struct.pack("<6I", 0, 64, 0, 0, 0, 0)}, (0, 0, 64)),
    ({"ctx": struct.pack("<6I", 0, 64, 0, 0, 0, 0), "ctx_out": 24}, (-errno.EINVAL, 0, 0)),
])
def test_xdp_live_frames(bpf_kernel, case, expect):
    """BPF_F_TEST_XDP_LIVE_FRAMES: the frames are sent on, so no retval comes back."""
    fd = load(bpf_kernel, ProgType.XDP, R42)
    r = test_run(bpf_kernel, fd, PKT, flags=2, **case)
    assert (r.err, r.retval, r.data_size_out) == expect


def test_cgroup_skb_sees_l3_like_a_socket_filter(bpf_kernel):
    """cgroup_skb programs run on the skb from the network header: len = size - 14."""
    prog = [ldx(W, 2, 1, 0), mov64(0, imm=0), asm.jmp(0x50, 2, imm=50, off=1), mov64(0, imm=1), exit_()]
    fd = load(bpf_kernel, ProgType.CGROUP_SKB, prog)
    r = test_run(bpf_kernel, fd, PKT, data_out=64)
    assert (r.err, r.retval, r.data) == (0, 1, bytes(14) + PKT[14:])
