"""BPF_PROG_TEST_RUN (BPF_PROG_RUN) for socket filter / tc, XDP, raw tracepoint and syscall programs.

What Linux 6.18 does and this module mirrors (errnos measured on the real kernel):
- common: CHECK_ATTR, ctx_in/ctx_size_in and ctx_out/ctx_size_out come in pairs (EINVAL), the
  fd must be a program (EBADF / EINVAL), a type without test_run is ENOTSUPP (524);
- skb types (socket filter, sched_cls/act, cgroup_skb, lwt): data of 14..3712 bytes, flags
  other than CHECKSUM_COMPLETE, cpu or batch_size -> EINVAL; the program sees a __sk_buff with
  len, pkt_type (as eth_type_trans on lo decides), protocol (from the Ethernet type), mark, priority, ingress_ifindex, ifindex 1,
  cb, wire_len, tstamp, gso_segs/size, hwtstamp and, for tc types, data/data_end/data_meta as
  64-bit pointers (kernel_sim/vm/ctxaccess.py). Socket filters see the packet from the L3
  header (len = size - 14) and get the Ethernet header back zeroed, as Linux's test run does.
  ctx_in may set only mark, priority, ingress_ifindex, ifindex (<= 1: the simulated kernel has
  only lo, others are ENODEV), cb, tstamp, wire_len (>= len), gso_segs, gso_size, hwtstamp.
  Not modelled: hash, vlan, queue_mapping, napi_id, the sk fields (they read as 0).
- XDP: data of 14..73152 bytes (ENOMEM beyond: no frag left) (the program sees the linear part: at most 3520 + metadata
  bytes), flags other than LIVE_FRAMES -> EINVAL, batch_size without live frames -> EINVAL;
  xdp_md ctx_in: data_meta and egress_ifindex must be 0, data (metadata length) a multiple of 4
  and <= data_end <= size, rx_queue_index needs ingress_ifindex (1 only; others ENODEV).
  Live-frames mode (batch_size <= 256, else E2BIG) runs each repetition on its own copy of the
  frame and reports retval 0 and the input size, as Linux answers; frames go nowhere.
- raw tracepoint: ctx only (<= 96 bytes, >= the program's furthest ctx access), no data,
  ctx_out, repeat or duration; BPF_F_TEST_RUN_ON_CPU picks the CPU (ENXIO past the last one).
- syscall: ctx only (<= 65535 bytes, >= the furthest access); the ctx is written back to ctx_in.
repeat runs the program that many times on the same buffers; duration is the mean in ns.
"""

from __future__ import annotations

import errno
import struct
import time

from ..cpus import current_cpu, on_cpu
from ..fs.file import oserror
from ..task import current
from ..uapi.bpf import BPF_F_TEST_RUN_ON_CPU, BPF_F_TEST_XDP_LIVE_FRAMES, BpfCmd, ProgType, TestRunAttr
from ..uapi.epoll import PAGE_SIZE
from ..usermem import copy_from_user, copy_to_user
from ..vm.ctxaccess import SK_BUFF_SIZE, SKB_LAYOUT, XDP_LAYOUT, XDP_MD_SIZE
from .syscall import bpf_command, check_attr_unused_zero

ENOTSUPP = 524
ETH_HLEN = 14
BPF_F_TEST_SKB_CHECKSUM_COMPLETE = 1 << 2
SKB_MAX_DATA = 3712       # PAGE_SIZE - NET_SKB_PAD - SKB_DATA_ALIGN(sizeof(skb_shared_info)) on x86_64
XDP_MAX_LINEAR = 3520     # PAGE_SIZE - XDP_PACKET_HEADROOM - shared info
XDP_MAX_DATA = XDP_MAX_LINEAR + 17 * PAGE_SIZE  # + MAX_SKB_FRAGS pages of frags
XDP_PACKET_HEADROOM = 256
XDP_TAILROOM = 320
RAW_TP_MAX_CTX = 12 * 8   # MAX_BPF_FUNC_ARGS u64s
TEST_XDP_MAX_BATCH = 256
U32 = 0xFFFFFFFF

_SKB_TYPES = {ProgType.SOCKET_FILTER, ProgType.SCHED_CLS, ProgType.SCHED_ACT, ProgType.CGROUP_SKB,
              ProgType.LWT_IN, ProgType.LWT_OUT, ProgType.LWT_XMIT, ProgType.LWT_SEG6LOCAL}
_L2_TYPES = {ProgType.SCHED_CLS, ProgType.SCHED_ACT}

# __sk_buff offsets
_LEN, _PKT_TYPE, _MARK, _PROTOCOL, _PRIORITY, _INGRESS_IFINDEX, _IFINDEX = 0, 4, 8, 16, 32, 36, 40
_CB, _CB_END, _TSTAMP, _WIRE_LEN, _GSO_SEGS, _GSO_SIZE, _HWTSTAMP = 48, 68, 152, 160, 164, 176, 184
# byte ranges ctx_in may set (everything else must be zero)
_SKB_SETTABLE = [(_MARK, 4), (_PRIORITY, 12), (_CB, 20), (_TSTAMP, 16), (_GSO_SIZE, 4), (_HWTSTAMP, 8)]
# fields copied back into ctx_out (convert_skb_to___skb)
_SKB_OUT_FIELDS = [(_MARK, 4), (_PRIORITY, 4), (_INGRESS_IFINDEX, 4), (_IFINDEX, 4), (_CB, 20), (_TSTAMP, 8),
                   (_WIRE_LEN, 4), (_GSO_SEGS, 4), (_HWTSTAMP, 8)]
GSO_MAX_SEGS = 65535
GSO_LEGACY_MAX_SIZE = 65536


def _prog_from_fd(fd: int):
    file = current().files.get(fd)  # EBADF
    if not getattr(file, "is_bpf_prog", False):
        raise oserror(errno.EINVAL)
    return file.prog


@bpf_command(BpfCmd.PROG_TEST_RUN)
def prog_test_run(kernel, attr: memoryview) -> int:
    check_attr_unused_zero(attr, TestRunAttr.batch_size.offset + 4)
    a = TestRunAttr.from_attr(attr)
    if bool(a.ctx_size_in) != bool(a.ctx_in) or bool(a.ctx_size_out) != bool(a.ctx_out):
        raise oserror(errno.EINVAL)
    prog = _prog_from_fd(a.prog_fd)
    prog.engine.prog = prog
    ptype = prog.prog_type
    if ptype in _SKB_TYPES:
        return _run_skb(kernel, prog, a, attr)
    if ptype == ProgType.XDP:
        return _run_xdp(kernel, prog, a, attr)
    if ptype == ProgType.RAW_TRACEPOINT:
        return _run_raw_tp(kernel, prog, a, attr)
    if ptype == ProgType.SYSCALL:
        return _run_syscall(kernel, prog, a, attr)
    raise oserror(ENOTSUPP, "Unknown error 524")


# -- shared steps (bpf_test_init, bpf_ctx_init, bpf_test_run, bpf_test_finish, bpf_ctx_finish) -----
def _data_init(a: TestRunAttr, max_size: int, too_big: int = errno.EINVAL) -> bytearray:
    if a.data_size_in < ETH_HLEN:
        raise oserror(errno.EINVAL)
    if a.data_size_in > max_size:
        raise oserror(too_big)
    return bytearray(copy_from_user(a.data_in, a.data_size_in))


def _ctx_init(a: TestRunAttr, max_size: int) -> bytearray | None:
    """The user's ctx zero-extended to max_size; a longer one must be zero past it (E2BIG)."""
    if not a.ctx_in and not a.ctx_out:
        return None
    ctx = bytearray(max_size)
    if a.ctx_in:
        size = a.ctx_size_in
        if size > max_size:
            if size > PAGE_SIZE:
                raise oserror(errno.E2BIG)
            if any(copy_from_user(a.ctx_in + max_size, size - max_size)):
                raise oserror(errno.E2BIG)
            size = max_size
        ctx[:size] = copy_from_user(a.ctx_in, size)
    return ctx


def _repeat(engine, a: TestRunAttr, start_run, run_once=None) -> tuple[int, int]:
    """Run ``repeat`` times; start_run() prepares a RunContext and r1. Returns (retval, duration)."""
    repeat = max(a.repeat, 1)
    retval = 0
    t0 = time.perf_counter_ns()
    for _ in range(repeat):
        run, r1 = start_run()
        retval = (run_once(run, r1) if run_once else engine.execute(run, r1)) & U32
    duration = (time.perf_counter_ns() - t0) // repeat
    return retval, min(duration, U32)


def _finish(a: TestRunAttr, attr: memoryview, data: bytes | None, size: int, retval: int, duration: int) -> int:
    """bpf_test_finish: copy data_out (clamped: ENOSPC), then data_size_out, retval, duration."""
    err = 0
    copy = data if data is not None else b""
    if a.data_size_out and len(copy) > a.data_size_out:
        copy = copy[:a.data_size_out]
        err = errno.ENOSPC
    if a.data_out and data is not None:
        copy_to_user(a.data_out, copy)
    out = TestRunAttr(data_size_out=size, retval=retval, duration=duration)
    out.write_field(attr, "data_size_out")
    out.write_field(attr, "retval")
    out.write_field(attr, "duration")
    if err:
        raise oserror(err)
    return 0


def _ctx_finish(a: TestRunAttr, attr: memoryview, ctx: bytes | None) -> int:
    if ctx is None or not a.ctx_out:
        return 0
    copy = ctx if len(ctx) <= a.ctx_size_out else ctx[:a.ctx_size_out]
    copy_to_user(a.ctx_out, copy)
    TestRunAttr(ctx_size_out=len(ctx)).write_field(attr, "ctx_size_out")
    if len(copy) < len(ctx):
        raise oserror(errno.ENOSPC)
    return 0


def _u32(buf, off: int) -> int:
    return struct.unpack_from("<I", buf, off)[0]


# -- skb --------------------------------------------------------------------------------------------
PACKET_HOST, PACKET_MULTICAST, PACKET_OTHERHOST = 0, 2, 3


def _pkt_type(dest: bytes) -> int:
    """eth_type_trans on lo (address and broadcast address all zero): any group address is
    multicast (lo has no broadcast address), a unicast one other than lo's is another host's."""
    if dest[0] & 1:
        return PACKET_MULTICAST
    return PACKET_HOST if dest == bytes(6) else PACKET_OTHERHOST


def _check_skb_ctx(ctx: bytearray) -> None:
    allowed = bytearray(SK_BUFF_SIZE)
    for off, n in _SKB_SETTABLE:
        allowed[off:off + n] = b"\xff" * n
    if any(b & ~m & 0xFF for b, m in zip(ctx, allowed, strict=True)):
        raise oserror(errno.EINVAL)
    if _u32(ctx, _IFINDEX) > 1:
        raise oserror(errno.ENODEV)


def _run_skb(kernel, prog, a: TestRunAttr, attr: memoryview) -> int:
    if a.flags & ~BPF_F_TEST_SKB_CHECKSUM_COMPLETE or a.cpu or a.batch_size:
        raise oserror(errno.EINVAL)
    packet = _data_init(a, SKB_MAX_DATA)
    ctx_user = _ctx_init(a, SK_BUFF_SIZE)
    engine = prog.engine
    l2 = prog.prog_type in _L2_TYPES
    start = 0 if l2 else ETH_HLEN
    skb_len = len(packet) - start
    ctx = bytearray(SKB_LAYOUT.buffer_size)
    if ctx_user is not None:
        _check_skb_ctx(ctx_user)
        ctx[:SK_BUFF_SIZE] = ctx_user
        wire_len = _u32(ctx, _WIRE_LEN)
        if wire_len and (wire_len < skb_len or wire_len > GSO_LEGACY_MAX_SIZE):
            raise oserror(errno.EINVAL)
        if _u32(ctx, _GSO_SEGS) > GSO_MAX_SEGS:
            raise oserror(errno.EINVAL)
    struct.pack_into("<I", ctx, _LEN, skb_len)
    struct.pack_into("<I", ctx, _PKT_TYPE, _pkt_type(packet[:6]))
    proto = struct.unpack_from(">H", packet, 12)[0]
    if proto < 0x600:
        proto = 0x0001 if packet[ETH_HLEN:ETH_HLEN + 2] == b"\xff\xff" else 0x0004
    struct.pack_into("<I", ctx, _PROTOCOL, int.from_bytes(proto.to_bytes(2, "big"), "little"))
    struct.pack_into("<I", ctx, _IFINDEX, 1)
    if ctx_user is not None and not _u32(ctx, _WIRE_LEN):  # without a ctx, wire_len stays 0
        struct.pack_into("<I", ctx, _WIRE_LEN, skb_len)

    def start_run():
        run = engine.new_run()
        base = run.map_region(packet)
        r1 = run.map_region(ctx)
        # data, data_end, data_meta, then the network and mac headers LD_ABS / LD_IND use
        struct.pack_into("<QQQQQ", ctx, SK_BUFF_SIZE, base + start, base + len(packet), base + start,
                         base + ETH_HLEN, base)
        return run, r1

    retval, duration = _repeat(engine, a, start_run)
    out = bytes(packet)
    if not l2:
        out = bytes(ETH_HLEN) + out[ETH_HLEN:]
    _finish(a, attr, out, len(out), retval, duration)
    if ctx_user is not None:
        for off, n in _SKB_OUT_FIELDS:
            ctx_user[off:off + n] = ctx[off:off + n]
    return _ctx_finish(a, attr, bytes(ctx_user) if ctx_user is not None else None)


# -- xdp --------------------------------------------------------------------------------------------
def _run_xdp(kernel, prog, a: TestRunAttr, attr: memoryview) -> int:
    live = bool(a.flags & BPF_F_TEST_XDP_LIVE_FRAMES)
    if a.flags & ~BPF_F_TEST_XDP_LIVE_FRAMES or (a.batch_size and not live):
        raise oserror(errno.EINVAL)
    if live and a.batch_size > TEST_XDP_MAX_BATCH:
        raise oserror(errno.E2BIG)
    ctx_user = _ctx_init(a, XDP_MD_SIZE)
    packet = _data_init(a, XDP_MAX_DATA, errno.ENOMEM)  # out of frags: ENOMEM, as Linux
    meta, end = 0, len(packet)
    if ctx_user is not None:
        data, data_end, data_meta, ingress, rxq, egress = struct.unpack("<6I", ctx_user)
        if data_meta or data_end > len(packet) or data > data_end or data % 4 or (live and (a.data_out or a.ctx_out)):
            raise oserror(errno.EINVAL)
        if egress or (rxq and not ingress):
            raise oserror(errno.EINVAL)
        if ingress > 1:
            raise oserror(errno.ENODEV)
        if rxq:
            raise oserror(errno.EINVAL)  # lo has one rx queue
        meta, end = data, data_end
        if live and end - meta < ETH_HLEN:
            raise oserror(errno.EINVAL)
    # The frame: XDP_PACKET_HEADROOM, the data (metadata first), the tailroom; a packet longer
    # than one page's worth keeps its tail contiguous here but invisible (Linux's frags).
    frags = len(packet) - meta > XDP_MAX_LINEAR
    end = min(end, XDP_MAX_LINEAR + meta)
    meta0 = XDP_PACKET_HEADROOM - meta
    frame_size = max(PAGE_SIZE, meta0 + len(packet) + XDP_TAILROOM)
    hidden_tail = len(packet) - end   # bytes after the program's data_end that still go out
    engine = prog.engine
    ctx = bytearray(XDP_LAYOUT.buffer_size)
    struct.pack_into("<I", ctx, 12, 1)  # ingress_ifindex: the test run's packets arrive on lo
    frame = bytearray(frame_size)
    frame[meta0:meta0 + len(packet)] = packet
    state = {}

    def start_run():
        run = engine.new_run()
        run.xdp_frags = frags
        work = bytearray(frame) if live else frame
        base = run.map_region(work)
        r1 = run.map_region(ctx)
        if not state:  # the first run sets the pointers; later repeats keep what the program did
            state["ptrs"] = (meta0 + meta, meta0 + end, meta0)
        data, data_end, data_meta = state["ptrs"]
        struct.pack_into("<III", ctx, 0, data - data_meta, data_end - data_meta, 0)
        struct.pack_into("<QQQ", ctx, XDP_MD_SIZE, base + data, base + data_end, base + data_meta)
        state["base"] = base
        return run, r1

    def run_once(run, r1):
        retval = engine.execute(run, r1)
        if live:
            return retval  # the next frame starts afresh
        base = state["base"]
        data, data_end, data_meta = struct.unpack_from("<QQQ", ctx, XDP_MD_SIZE)
        state["ptrs"] = (data - base, data_end - base, data_meta - base)
        return retval

    retval, duration = _repeat(engine, a, start_run, run_once)
    if live:  # every run had its own copy of the frame; nothing comes back but the sizes
        _finish(a, attr, bytes(packet), len(packet), 0, duration)
        return 0
    data, data_end, data_meta = state["ptrs"]
    out = bytes(frame[data_meta:data_end + hidden_tail])
    _finish(a, attr, out, len(out), retval, duration)
    if ctx_user is not None:
        struct.pack_into("<II", ctx_user, 0, data - data_meta, data_end - data_meta)
    return _ctx_finish(a, attr, bytes(ctx_user) if ctx_user is not None else None)


# -- raw tracepoint and syscall ------------------------------------------------------------------------
def _run_raw_tp(kernel, prog, a: TestRunAttr, attr: memoryview) -> int:
    if a.data_in or a.data_out or a.ctx_out or a.duration or a.repeat or a.batch_size:
        raise oserror(errno.EINVAL)
    size = a.ctx_size_in
    if size < prog.engine.max_ctx_offset or size > RAW_TP_MAX_CTX:
        raise oserror(errno.EINVAL)
    if a.flags & ~BPF_F_TEST_RUN_ON_CPU or (not a.flags and a.cpu):
        raise oserror(errno.EINVAL)
    ctx = bytearray(copy_from_user(a.ctx_in, size)) if size else bytearray()
    cpu = a.cpu if a.flags & BPF_F_TEST_RUN_ON_CPU else current_cpu()
    if cpu >= kernel.ncpus:
        raise oserror(errno.ENXIO)
    engine = prog.engine
    with on_cpu(cpu):
        run = engine.new_run()
        r1 = run.map_region(ctx) if size else 0
        retval = engine.execute(run, r1) & U32
    TestRunAttr(retval=retval).write_field(attr, "retval")
    return 0


def _run_syscall(kernel, prog, a: TestRunAttr, attr: memoryview) -> int:
    if a.data_in or a.data_out or a.ctx_out or a.duration or a.repeat or a.flags or a.batch_size:
        raise oserror(errno.EINVAL)
    size = a.ctx_size_in
    if size < prog.engine.max_ctx_offset or size > 0xFFFF:
        raise oserror(errno.EINVAL)
    ctx = bytearray(copy_from_user(a.ctx_in, size)) if size else bytearray()
    engine = prog.engine
    run = engine.new_run()
    r1 = run.map_region(ctx) if size else 0
    retval = engine.execute(run, r1) & U32
    if size:
        copy_to_user(a.ctx_in, bytes(ctx))
    TestRunAttr(retval=retval).write_field(attr, "retval")
    return 0
