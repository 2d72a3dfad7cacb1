"""BPF helpers on both kernels (maps, loop, tail calls, snprintf, probe_read*, ids) and, where only
the simulated kernel can show it, through its internals (trace_printk, ringbuf, perf output).

Programs are hand-assembled, valid for Linux's verifier, and run with BPF_PROG_TEST_RUN.
"""

from __future__ import annotations

import ctypes
import errno
import struct

import pytest
from test_prog_load_run import load
from test_prog_load_run import test_run as prog_run

from kernel_sim.bpf.engine import engine_kinds, run_raw
from kernel_sim.uapi.bpf import (
    BPF_F_RDONLY_PROG,
    BpfCmd,
    MapCreateAttr,
    MapElemAttr,
    MapFreezeAttr,
    MapType,
    ProgType,
    make_attr,
)
from kernel_sim.uapi.bpf_enums import HelperId as H
from kernel_sim.uapi.insn import BPF_ADD, BPF_JEQ, BPF_JNE, BPF_PSEUDO_MAP_FD, BPF_PSEUDO_MAP_VALUE, BPF_SUB
from kernel_sim.vm import asm
from kernel_sim.vm.asm import DW, W, alu64, call, exit_, jmp, ldx, mov64, st, stx
from kernel_sim.vm.helpers import FormatError, bprintf
from kernel_sim.vm.memory import AddressSpace

U64 = (1 << 64) - 1
PKT = bytes(64)


def map_create(sys, map_type, key_size, value_size, max_entries, flags=0) -> int:
    return sys.bpf(BpfCmd.MAP_CREATE, make_attr(MapCreateAttr, map_type=map_type, key_size=key_size,
                                                value_size=value_size, max_entries=max_entries, map_flags=flags))


def map_update(sys, fd, key: bytes, value: bytes, flags=0) -> None:
    k = ctypes.create_string_buffer(key, max(len(key), 1))
    v = ctypes.create_string_buffer(value, len(value))
    sys.bpf(BpfCmd.MAP_UPDATE_ELEM, make_attr(MapElemAttr, map_fd=fd, key=ctypes.addressof(k) if key else 0,
                                              value=ctypes.addressof(v), flags=flags))


def map_lookup(sys, fd, key: bytes, size: int) -> bytes:
    k = ctypes.create_string_buffer(key, len(key))
    v = ctypes.create_string_buffer(size)
    sys.bpf(BpfCmd.MAP_LOOKUP_ELEM, make_attr(MapElemAttr, map_fd=fd, key=ctypes.addressof(k),
                                              value=ctypes.addressof(v)))
    return v.raw


def map_fd(reg: int, fd: int):
    return asm.lddw(reg, fd, BPF_PSEUDO_MAP_FD)


def test_map_update_then_lookup(bpf_kernel):
    fd = map_create(bpf_kernel, MapType.ARRAY, 4, 8, 4)
    prog = [
        st(W, 10, -4, 2),                              # key = 2
        asm.lddw(1, 0x1122334455667788), stx(DW, 10, 1, -16),
        map_fd(1, fd), mov64(2, 10), alu64(BPF_ADD, 2, imm=-4), mov64(3, 10), alu64(BPF_ADD, 3, imm=-16),
        mov64(4, imm=0), call(H.map_update_elem),
        map_fd(1, fd), mov64(2, 10), alu64(BPF_ADD, 2, imm=-4), call(H.map_lookup_elem),
        jmp(BPF_JNE, 0, imm=0, off=1), exit_(),
        ldx(W, 0, 0, 4), exit_(),                      # upper half of the value
    ]
    r = prog_run(bpf_kernel, load(bpf_kernel, ProgType.SOCKET_FILTER, prog), PKT)
    assert (r.err, r.retval) == (0, 0x11223344)
    assert map_lookup(bpf_kernel, fd, struct.pack("<I", 2), 8) == struct.pack("<Q", 0x1122334455667788)


def test_map_update_errors_come_back_as_negative_errno(bpf_kernel):
    fd = map_create(bpf_kernel, MapType.ARRAY, 4, 8, 4)
    prog = [
        st(W, 10, -4, 9), st(DW, 10, -16, 0),          # key 9 of 4 entries
        map_fd(1, fd), mov64(2, 10), alu64(BPF_ADD, 2, imm=-4), mov64(3, 10), alu64(BPF_ADD, 3, imm=-16),
        mov64(4, imm=0), call(H.map_update_elem), exit_(),
    ]
    r = prog_run(bpf_kernel, load(bpf_kernel, ProgType.SOCKET_FILTER, prog), PKT)
    assert r.retval == (-errno.E2BIG) & 0xFFFFFFFF


def test_queue_push_peek_pop(bpf_kernel):
    fd = map_create(bpf_kernel, MapType.QUEUE, 0, 4, 4)
    prog = [
        st(W, 10, -4, 5), map_fd(1, fd), mov64(2, 10), alu64(BPF_ADD, 2, imm=-4), mov64(3, imm=0),
        call(H.map_push_elem),
        st(W, 10, -4, 6), map_fd(1, fd), mov64(2, 10), alu64(BPF_ADD, 2, imm=-4), mov64(3, imm=0),
        call(H.map_push_elem),
        st(W, 10, -8, 0), map_fd(1, fd), mov64(2, 10), alu64(BPF_ADD, 2, imm=-8), call(H.map_peek_elem),
        ldx(W, 6, 10, -8),                              # 5
        map_fd(1, fd), mov64(2, 10), alu64(BPF_ADD, 2, imm=-8), call(H.map_pop_elem),
        map_fd(1, fd), mov64(2, 10), alu64(BPF_ADD, 2, imm=-8), call(H.map_pop_elem),
        ldx(W, 7, 10, -8),                              # 6
        map_fd(1, fd), mov64(2, 10), alu64(BPF_ADD, 2, imm=-8), call(H.map_pop_elem),  # empty: -ENOENT
        alu64(0x60, 6, imm=8), alu64(0x40, 6, 7), alu64(0x60, 6, imm=8),
        alu64(0x50, 0, imm=0xFF), alu64(0x40, 0, 6), exit_(),
    ]
    r = prog_run(bpf_kernel, load(bpf_kernel, ProgType.SOCKET_FILTER, prog), PKT)
    assert r.retval == (5 << 16) | (6 << 8) | ((-errno.ENOENT) & 0xFF)


@pytest.mark.parametrize("stop_at, expect", [(100, (0 + 1 + 2 + 3 + 4 + 5 + 6 + 7 + 8 + 9) << 8 | 10),
                                             (3, (0 + 1 + 2 + 3) << 8 | 4)])
def test_loop_runs_the_callback(bpf_kernel, stop_at, expect):
    prog = [
        st(DW, 10, -8, 0),
        mov64(1, imm=10), asm.lddw_func(2, 9), mov64(3, 10), alu64(BPF_ADD, 3, imm=-8), mov64(4, imm=0),
        call(H.loop),                                   # r0 = iterations
        ldx(DW, 1, 10, -8), alu64(0x60, 1, imm=8), alu64(0x40, 0, 1), exit_(),
        # callback(index, ctx): *ctx += index; return index == stop_at
        ldx(DW, 3, 2, 0), alu64(BPF_ADD, 3, 1), stx(DW, 2, 3, 0),
        mov64(0, imm=0), jmp(BPF_JNE, 1, imm=stop_at, off=1), mov64(0, imm=1), exit_(),
    ]
    r = prog_run(bpf_kernel, load(bpf_kernel, ProgType.SOCKET_FILTER, prog, funcs=[0, 12]), PKT)
    assert (r.err, r.retval) == (0, expect)


def test_tail_call_and_its_limit(bpf_kernel):
    progs = map_create(bpf_kernel, MapType.PROG_ARRAY, 4, 4, 2)
    counter = map_create(bpf_kernel, MapType.ARRAY, 4, 8, 1)
    caller = [
        map_fd(2, progs), mov64(3, imm=0), call(H.tail_call),
        mov64(0, imm=1), exit_(),
    ]
    caller_fd = load(bpf_kernel, ProgType.SOCKET_FILTER, caller)
    assert prog_run(bpf_kernel, caller_fd, PKT).retval == 1            # empty slot: falls through
    target = load(bpf_kernel, ProgType.SOCKET_FILTER, [mov64(0, imm=7), exit_()])
    map_update(bpf_kernel, progs, struct.pack("<I", 0), struct.pack("<I", target))
    assert prog_run(bpf_kernel, caller_fd, PKT).retval == 7
    # a program that counts its runs and tail-calls itself: 1 + 33 runs, then the call fails
    selfcall = [
        mov64(6, 1),
        st(W, 10, -4, 0), map_fd(1, counter), mov64(2, 10), alu64(BPF_ADD, 2, imm=-4), call(H.map_lookup_elem),
        jmp(BPF_JEQ, 0, imm=0, off=3), ldx(DW, 1, 0, 0), alu64(BPF_ADD, 1, imm=1), stx(DW, 0, 1, 0),
        mov64(1, 6), map_fd(2, progs), mov64(3, imm=1), call(H.tail_call),
        mov64(0, imm=99), exit_(),
    ]
    self_fd = load(bpf_kernel, ProgType.SOCKET_FILTER, selfcall)
    map_update(bpf_kernel, progs, struct.pack("<I", 1), struct.pack("<I", self_fd))
    assert prog_run(bpf_kernel, self_fd, PKT).retval == 99
    assert map_lookup(bpf_kernel, counter, struct.pack("<I", 0), 8) == struct.pack("<Q", 34)
    map_update(bpf_kernel, progs, struct.pack("<I", 1), struct.pack("<I", caller_fd))  # break the cycle


def _const_string_map(sys, text: bytes) -> int:
    fd = map_create(sys, MapType.ARRAY, 4, 64, 1, BPF_F_RDONLY_PROG)
    map_update(sys, fd, struct.pack("<I", 0), text.ljust(64, b"\0"))
    sys.bpf(BpfCmd.MAP_FREEZE, make_attr(MapFreezeAttr, map_fd=fd))
    return fd


@pytest.mark.parametrize("fmt, args", [
    (b"%d|%u|%x|%lld|%llx", [-5 & U64, -5 & U64, 0xABCDEF12345, -7 & U64, 0xABCDEF12345]),
    (b"[%5d][%-4x][%05u][%c]%%", [42, 0xA, 7, 0x41]),
    (b"%s!", None),                                  # a string from the stack
    (b"%pI4 %pi4", "ip4"),
    (b"%pI6", "ip6"),
    (b"%pi6", "ip6"),
    (b"%px|%-18px|%ps|%c|%3c", [0xDEADBEEF, 0xDEADBEEF, 0xDEADBEEF, 0xEF, 0x41]),
])
def test_snprintf_formats_as_linux(bpf_kernel, fmt, args):
    fmt_map = _const_string_map(bpf_kernel, fmt)
    out = map_create(bpf_kernel, MapType.ARRAY, 4, 64, 1)
    if args is None:   # args[0] = pointer to "hey" on the stack
        setup = [st(W, 10, -40, int.from_bytes(b"hey\0", "little")), mov64(1, 10), alu64(BPF_ADD, 1, imm=-40),
                 stx(DW, 10, 1, -96)]
        nargs = 1
    elif isinstance(args, str):   # both args point to an address on the stack
        addr = bytes([10, 2, 3, 4]) if args == "ip4" else bytes.fromhex("20010db8000000000000000000000001")
        addr = addr.ljust(16, b"\0")
        setup = [asm.lddw(1, int.from_bytes(addr[:8], "little")), stx(DW, 10, 1, -48),
                 asm.lddw(1, int.from_bytes(addr[8:], "little")), stx(DW, 10, 1, -40),
                 mov64(1, 10), alu64(BPF_ADD, 1, imm=-48), stx(DW, 10, 1, -96), stx(DW, 10, 1, -88)]
        nargs = 2
    else:
        setup = []
        for i, a in enumerate(args):
            setup += [asm.lddw(1, a), stx(DW, 10, 1, -96 + 8 * i)]
        nargs = len(args)
    prog = [
        *setup,
        st(W, 10, -4, 0), map_fd(1, out), mov64(2, 10), alu64(BPF_ADD, 2, imm=-4), call(H.map_lookup_elem),
        jmp(BPF_JNE, 0, imm=0, off=2), mov64(0, imm=-1), exit_(),
        mov64(1, 0), mov64(2, imm=64), asm.lddw(3, fmt_map, BPF_PSEUDO_MAP_VALUE),
        mov64(4, 10), alu64(BPF_ADD, 4, imm=-96), mov64(5, imm=8 * nargs), call(H.snprintf), exit_(),
    ]
    r = prog_run(bpf_kernel, load(bpf_kernel, ProgType.SOCKET_FILTER, prog), PKT)
    text = map_lookup(bpf_kernel, out, struct.pack("<I", 0), 64)
    expected = {
        b"%d|%u|%x|%lld|%llx": b"-5|4294967291|def12345|-7|abcdef12345",
        b"[%5d][%-4x][%05u][%c]%%": b"[   42][a   ][00007][A]%",
        b"%s!": b"hey!",
        b"%pI4 %pi4": b"10.2.3.4 010.002.003.004",
        b"%pI6": b"2001:0db8:0000:0000:0000:0000:0000:0001",
        b"%pi6": b"20010db8000000000000000000000001",
        b"%px|%-18px|%ps|%c|%3c": b"00000000deadbeef|deadbeef          |0xdeadbeef|\xef|  A",
    }[fmt]
    assert r.retval == len(expected) + 1
    assert text[:len(expected) + 1] == expected + b"\0"


@pytest.mark.parametrize("fmt, nargs", [(b"%q", 1), (b"%d %d", 1), (b"%lq", 1), (b"\x01", 0)])
def test_bad_formats_are_refused(fmt, nargs):
    """Linux's verifier refuses these constant formats; the helper refuses them at run time too."""
    with pytest.raises(FormatError):
        bprintf(None, fmt, [0] * nargs)


def test_probe_read_user_and_kernel(bpf_kernel):
    """A raw tracepoint whose ctx carries a pointer into this process: read_user sees it."""
    user = ctypes.create_string_buffer(b"hello world\0")
    prog = [
        ldx(DW, 6, 1, 0),                                            # the user pointer
        mov64(1, 10), alu64(BPF_ADD, 1, imm=-16), mov64(2, imm=8), mov64(3, 6), call(H.probe_read_user),
        mov64(7, 0),                                                  # 0
        mov64(1, 10), alu64(BPF_ADD, 1, imm=-32), mov64(2, imm=16), mov64(3, 6), call(H.probe_read_user_str),
        mov64(8, 0),                                                  # 12 ("hello world" + NUL)
        mov64(1, 10), alu64(BPF_ADD, 1, imm=-48), mov64(2, imm=8), mov64(3, imm=0), call(H.probe_read_kernel),
        mov64(9, 0),                                                  # -ERANGE: a user address
        ldx(W, 0, 10, -16), alu64(BPF_SUB, 0, 8), alu64(BPF_ADD, 0, 7), alu64(BPF_ADD, 0, 9),
        ldx(DW, 1, 10, -48), alu64(BPF_ADD, 0, 1),                    # the failed read zeroed the buffer
        exit_(),
    ]
    fd = load(bpf_kernel, ProgType.RAW_TRACEPOINT, prog)
    r = prog_run(bpf_kernel, fd, ctx=struct.pack("<Q", ctypes.addressof(user)))
    assert r.err == 0
    assert r.retval == (int.from_bytes(b"hell", "little") - 12 - errno.ERANGE) & 0xFFFFFFFF


def test_current_pid_and_cpu(bpf_kernel):
    prog = [call(H.get_current_pid_tgid), alu64(0x70, 0, imm=32), exit_()]   # tgid
    fd = load(bpf_kernel, ProgType.RAW_TRACEPOINT, prog)
    assert prog_run(bpf_kernel, fd).retval == bpf_kernel.getpid()
    cpu = load(bpf_kernel, ProgType.RAW_TRACEPOINT, [call(H.get_smp_processor_id), exit_()])
    assert prog_run(bpf_kernel, cpu, flags=1, cpu=1).retval == 1
    clock = load(bpf_kernel, ProgType.RAW_TRACEPOINT, [
        call(H.ktime_get_ns), mov64(6, 0), call(H.ktime_get_ns), alu64(BPF_SUB, 0, 6), alu64(0x70, 0, imm=63),
        alu64(0xA0, 0, imm=1), exit_()])                              # 1 when the clock did not go back
    assert prog_run(bpf_kernel, clock).retval == 1


# -- the simulated kernel's side only ------------------------------------------------------------------
@pytest.fixture
def sim():
    from loader.backends import open_kernel

    sys = open_kernel("sim")
    yield sys
    sys.close_all()


def test_trace_printk_reaches_trace_pipe(sim):
    fmt = b"n=%d s=%x\0"
    prog = [
        asm.lddw(1, int.from_bytes(fmt[:8], "little")), stx(DW, 10, 1, -16),
        asm.lddw(1, int.from_bytes(fmt[8:].ljust(8, b"\0"), "little")), stx(DW, 10, 1, -8),
        mov64(1, 10), alu64(BPF_ADD, 1, imm=-16), mov64(2, imm=len(fmt)), mov64(3, imm=-3), mov64(4, imm=255),
        call(H.trace_printk), exit_(),
    ]
    r = prog_run(sim, load(sim, ProgType.SOCKET_FILTER, prog), PKT)
    assert r.retval == len("n=-3 s=ff")
    assert sim.kernel.tracing.lines[-1].endswith(b"bpf_trace_printk: n=-3 s=ff\n")


def test_ringbuf_reserve_submit_and_output(sim):
    rb = map_create(sim, MapType.RINGBUF, 0, 0, 4096)
    prog = [
        map_fd(1, rb), mov64(2, imm=8), mov64(3, imm=0), call(H.ringbuf_reserve),
        jmp(BPF_JNE, 0, imm=0, off=1), exit_(),
        asm.lddw(1, 0xCAFE), stx(DW, 0, 1, 0), mov64(1, 0), mov64(2, imm=0), call(H.ringbuf_submit),
        st(DW, 10, -8, 0xBEEF), map_fd(1, rb), mov64(2, 10), alu64(BPF_ADD, 2, imm=-8), mov64(3, imm=8),
        mov64(4, imm=0), call(H.ringbuf_output),
        map_fd(1, rb), mov64(2, imm=0), call(H.ringbuf_query),            # BPF_RB_AVAIL_DATA
        exit_(),
    ]
    r = prog_run(sim, load(sim, ProgType.SOCKET_FILTER, prog), PKT)
    assert r.retval == 2 * 16                                             # two 8-byte records + headers
    ring = sim.task.files.get(rb).map.ringbuf
    data = bytes(ring.data_view()[:32]) if hasattr(ring, "data_view") else None
    if data is not None:
        assert struct.unpack_from("<I", data, 0)[0] == 8 and struct.unpack_from("<Q", data, 8)[0] == 0xCAFE
        assert struct.unpack_from("<Q", data, 24)[0] == 0xBEEF


# -- helpers against fake maps, on every engine -----------------------------------------------------------
class FakePerfArray:
    key_size = 4
    value_size = 4
    map_type = MapType.PERF_EVENT_ARRAY

    def __init__(self) -> None:
        self.out: list = []

    def perf_event_output(self, cpu, flags, data):
        self.out.append((cpu, flags, bytes(data)))
        return 0


@pytest.mark.parametrize("kind", engine_kinds())
def test_perf_event_output_and_trace(kind):
    from kernel_sim.vm.helpers import helper_table

    vm = AddressSpace()
    fake = FakePerfArray()
    handle = vm.handle_of(fake)
    trace: list = []
    prog = [
        st(DW, 10, -8, 0x41424344), mov64(6, 1),
        mov64(1, 6), asm.lddw(2, handle), asm.lddw(3, 0xFFFFFFFF), mov64(4, 10), alu64(BPF_ADD, 4, imm=-8),
        mov64(5, imm=4), call(H.perf_event_output), exit_(),
    ]
    r0, _ = run_raw(asm.flatten(*prog), b"ctx!", kind, helper_table(), trace, vm=vm)
    assert r0 == 0
    assert fake.out == [(0, 0xFFFFFFFF, b"DCBA")]
    assert [t[0] for t in trace] == [H.perf_event_output]


def test_unsubmitted_ringbuf_record_is_discarded_at_exit(sim):
    """Unverified code (vm exec, raw runs) may forget a reservation: the run discards it."""
    from kernel_sim.vm.helpers import helper_table

    rb = map_create(sim, MapType.RINGBUF, 0, 0, 4096)
    ringbuf_map = sim.task.files.get(rb).map
    kernel = sim.kernel
    prog = [asm.lddw(1, kernel.vm.handle_of(ringbuf_map)), mov64(2, imm=8), mov64(3, imm=0),
            call(H.ringbuf_reserve), mov64(0, imm=0), exit_()]
    run_raw(asm.flatten(*prog), b"", "interp", helper_table(), vm=kernel.vm, kernel=kernel)
    header = struct.unpack_from("<I", bytes(ringbuf_map.ringbuf.data_view()[:4]))[0]
    assert header == 8 | (1 << 30)          # length 8, DISCARD set, BUSY cleared


def _xdp_adjust(helper: int, delta: int):
    """r0 = helper(ctx, delta) in the low 16 bits, (data_end - data) read afterwards above them."""
    return [
        mov64(6, 1), mov64(1, 6), mov64(2, imm=delta), call(helper), alu64(0x50, 0, imm=0xFFFF), mov64(7, 0),
        ldx(W, 2, 6, 0), ldx(W, 3, 6, 4), alu64(BPF_SUB, 3, 2), alu64(0x60, 3, imm=16), alu64(0x40, 7, 3),
        ldx(W, 2, 6, 0), ldx(W, 3, 6, 4), mov64(4, 2), alu64(BPF_ADD, 4, imm=1),
        jmp(0x20, 4, 3, off=1), st(asm.B, 2, 0, 0xAA),                  # mark the first byte at data
        mov64(0, 7), exit_(),
    ]


@pytest.mark.parametrize("helper, delta", [
    (H.xdp_adjust_head, -216), (H.xdp_adjust_head, -217), (H.xdp_adjust_head, 50), (H.xdp_adjust_head, 51),
    (H.xdp_adjust_head, -4), (H.xdp_adjust_tail, 4), (H.xdp_adjust_tail, -50), (H.xdp_adjust_tail, -51),
    (H.xdp_adjust_tail, 3456), (H.xdp_adjust_tail, 3457),
])
def test_xdp_adjust_head_and_tail(bpf_kernel, helper, delta):
    pkt = bytes(range(1, 65))
    fd = load(bpf_kernel, ProgType.XDP, _xdp_adjust(helper, delta))
    r = prog_run(bpf_kernel, fd, pkt, data_out=4096)
    ok = r.retval & 0xFFFF == 0
    if helper == H.xdp_adjust_head:
        assert ok == (-216 <= delta <= 50)
        start = delta if ok else 0
        size = 64 - start
        expect = (bytes(-start) + pkt if start < 0 else pkt[start:]) if ok else pkt
    else:
        assert ok == (-50 <= delta <= 3456)
        size = 64 + delta if ok else 64
        expect = pkt[:size] + bytes(max(size - 64, 0))
    assert r.retval >> 16 == size
    assert (r.err, r.data_size_out) == (0, size)
    assert r.data[:size] == b"\xaa" + expect[1:]


def test_skb_load_bytes(bpf_kernel):
    prog = [
        mov64(6, 1),
        mov64(1, 6), mov64(2, imm=4), mov64(3, 10), alu64(BPF_ADD, 3, imm=-8), mov64(4, imm=4),
        call(H.skb_load_bytes), mov64(7, 0),
        mov64(1, 6), mov64(2, imm=62), mov64(3, 10), alu64(BPF_ADD, 3, imm=-16), mov64(4, imm=4),
        call(H.skb_load_bytes),                                         # past the end: -EFAULT
        alu64(0x50, 0, imm=0xFF), ldx(W, 1, 10, -8), alu64(0x60, 1, imm=8), alu64(0x40, 0, 1),
        alu64(0x40, 0, 7), exit_(),
    ]
    pkt = bytes(range(64))
    r = prog_run(bpf_kernel, load(bpf_kernel, ProgType.SCHED_CLS, prog), pkt)
    assert r.retval == ((int.from_bytes(pkt[4:8], "little") << 8) | ((-errno.EFAULT) & 0xFF)) & 0xFFFFFFFF


@pytest.mark.parametrize("prog_type, flags, expect", [
    (ProgType.XDP, 0, 4), (ProgType.XDP, 1, 0), (ProgType.SCHED_CLS, 0, 7), (ProgType.SCHED_CLS, 2, 2),
])
def test_redirect_verdicts(bpf_kernel, prog_type, flags, expect):
    prog = [mov64(1, imm=1), mov64(2, imm=flags), call(H.redirect), exit_()]
    assert prog_run(bpf_kernel, load(bpf_kernel, prog_type, prog), PKT).retval == expect


@pytest.mark.parametrize("engine", ["jit", "interp"])
def test_tail_call_from_a_subprogram_returns_to_its_caller(bpf_kernel, engine):
    """Linux (x86-64): the target replaces the subprogram only; main adds 100 to its r0.

    On the simulated kernel with either engine choice (a JIT without the feature hands the
    program to the interpreter).
    """
    sys = bpf_kernel
    if sys.kind == "sim":
        from loader.backends import open_kernel

        sys = open_kernel("sim", engine=engine)
    progs = map_create(sys, MapType.PROG_ARRAY, 4, 4, 1)
    target = load(sys, ProgType.SOCKET_FILTER, [mov64(0, imm=7), exit_()])
    map_update(sys, progs, struct.pack("<I", 0), struct.pack("<I", target))
    main = [asm.call_local(2), alu64(BPF_ADD, 0, imm=100), exit_(),
            map_fd(2, progs), mov64(3, imm=0), call(H.tail_call), mov64(0, imm=1), exit_()]
    fd = load(sys, ProgType.SOCKET_FILTER, main, funcs=[0, 3])
    assert prog_run(sys, fd, PKT).retval == 107


@pytest.mark.parametrize("kind", engine_kinds())
@pytest.mark.parametrize("ctx_len, expect", [(0, b"DCBA"), (6, b"DCBApacket"[:4] + b"packet"), (7, None)])
def test_perf_event_output_appends_packet_bytes(kind, ctx_len, expect):
    """XDP's BPF_F_CTXLEN_MASK: the first (flags >> 32) packet bytes follow the sample."""
    from kernel_sim.vm.ctxaccess import XDP_LAYOUT, XDP_MD_SIZE
    from kernel_sim.vm.helpers import helper_table

    vm = AddressSpace()
    packet = vm.map_region(bytearray(b"packet"))
    ctx = bytearray(XDP_LAYOUT.buffer_size)
    struct.pack_into("<QQQ", ctx, XDP_MD_SIZE, packet, packet + 6, packet)
    fake = FakePerfArray()
    prog = [
        st(DW, 10, -8, 0x41424344), mov64(6, 1),
        mov64(1, 6), asm.lddw(2, vm.handle_of(fake)), asm.lddw(3, (ctx_len << 32) | 0xFFFFFFFF),
        mov64(4, 10), alu64(BPF_ADD, 4, imm=-8), mov64(5, imm=4), call(H.perf_event_output), exit_(),
    ]
    r0, _ = run_raw(asm.flatten(*prog), bytes(ctx), kind, helper_table(), vm=vm, prog_type=ProgType.XDP)
    if expect is None:
        assert r0 == (-errno.EFAULT) & U64 and fake.out == []
    else:
        assert r0 == 0 and fake.out == [(0, 0xFFFFFFFF, expect)]


@pytest.mark.parametrize("helper, delta, repeat", [(H.xdp_adjust_head, 2, 3), (H.xdp_adjust_tail, -5, 4)])
def test_xdp_repeat_runs_on_the_same_frame(bpf_kernel, helper, delta, repeat):
    fd = load(bpf_kernel, ProgType.XDP, _xdp_adjust(helper, delta))
    r = prog_run(bpf_kernel, fd, bytes(range(1, 65)), data_out=4096, repeat=repeat)
    assert (r.err, r.data_size_out) == (0, 64 - abs(delta) * repeat)


def test_current_comm_and_uid(bpf_kernel):
    """bpf_get_current_comm fills 16 bytes (NUL-padded) with the caller's comm; uid_gid packs both."""
    import os

    out = map_create(bpf_kernel, MapType.ARRAY, 4, 16, 1)
    prog = [
        st(DW, 10, -16, -1), st(DW, 10, -8, -1),
        mov64(1, 10), alu64(BPF_ADD, 1, imm=-16), mov64(2, imm=16), call(H.get_current_comm), mov64(6, 0),
        st(W, 10, -20, 0), map_fd(1, out), mov64(2, 10), alu64(BPF_ADD, 2, imm=-20), mov64(3, 10),
        alu64(BPF_ADD, 3, imm=-16), mov64(4, imm=0), call(H.map_update_elem),
        call(H.get_current_uid_gid), alu64(0x70, 0, imm=32), alu64(0x60, 0, imm=8), alu64(0x40, 0, 6), exit_(),
    ]
    r = prog_run(bpf_kernel, load(bpf_kernel, ProgType.RAW_TRACEPOINT, prog))
    if bpf_kernel.kind == "linux":
        comm, gid = open("/proc/self/comm").read().strip().encode(), os.getgid()
    else:
        comm, gid = bpf_kernel.task.comm.encode(), bpf_kernel.task.gid
    assert r.retval == gid << 8
    assert map_lookup(bpf_kernel, out, struct.pack("<I", 0), 16) == comm[:15].ljust(16, b"\0")


@pytest.mark.parametrize("flags, user", [(0, False), (1 << 8, True)])
def test_get_stackid_stores_the_probed_ip(sim, flags, user):
    """A kprobe's stack in the simulated kernel is its pt_regs ip; user stacks do not exist."""
    from kernel_sim.uapi.ptrace import PT_REGS

    stacks = map_create(sim, MapType.STACK_TRACE, 4, 8 * 4, 16)
    prog = [map_fd(2, stacks), mov64(3, imm=flags), call(H.get_stackid), exit_()]
    fd = load(sim, ProgType.KPROBE, prog)
    regs = PT_REGS["x86_64"](rip=0xFFFFFFFF81234567)
    r0 = sim.task.files.get(fd).prog.run_ctx(bytes(regs))
    if user:
        assert r0 == (-errno.EFAULT) & U64
        return
    assert 0 <= r0 < 16
    assert map_lookup(sim, stacks, struct.pack("<I", r0), 32) == struct.pack("<QQQQ", 0xFFFFFFFF81234567, 0, 0, 0)
