"""The program context (R1 at entry) per program type: its size and which accesses are valid.

Linux's ``is_valid_access`` callbacks (kernel/trace/bpf_trace.c, net/core/filter.c) decide each
load/store into ctx; a few fields load pointers (packet data / data_end / data_meta). The rules
below are those callbacks' facts: kprobe reads the arch's struct pt_regs, tracepoint reads
past the 8-byte common header up to PERF_MAX_TRACE_SIZE, raw tracepoint reads u64 args, XDP
reads u32 fields of xdp_md, skb programs read __sk_buff and write its cb[] (and tc fields).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..uapi.bpf_enums import ProgType
from ..uapi.ptrace import PT_REGS_SIZE

PERF_MAX_TRACE_SIZE = 2048
MAX_BPF_FUNC_ARGS = 12
SK_BUFF_SIZE = 192  # sizeof(struct __sk_buff)
XDP_MD_SIZE = 24  # sizeof(struct xdp_md)

# Field offsets that load packet pointers.
SKB_DATA, SKB_DATA_END, SKB_DATA_META = 76, 80, 140
XDP_DATA, XDP_DATA_END, XDP_DATA_META = 0, 4, 8
SKB_CB = (48, 68)
SKB_TC_WRITABLE = {8: 4, 12: 4, 32: 4, 44: 4, 72: 4, 152: 8}  # mark, queue_mapping, priority, tc_index, classid, tstamp
SKB_NO_READ_SOCKET_FILTER = {72, SKB_DATA, SKB_DATA_END, SKB_DATA_META, 144, 152, 168}


@dataclass(frozen=True)
class CtxAccess:
    """The verdict on one ctx access: ok, and the register type a load produces."""

    ok: bool
    result: str = "scalar"  # or "pkt", "pkt_end", "pkt_meta"


DENY = CtxAccess(False)
SCALAR = CtxAccess(True)


def ctx_size(prog_type: int, arch: str = "x86_64") -> int:
    """The ctx's size in bytes (what a test run or an attach point passes in)."""
    if prog_type == ProgType.KPROBE:
        return PT_REGS_SIZE[arch]
    if prog_type == ProgType.PERF_EVENT:
        return PT_REGS_SIZE[arch] + 16
    if prog_type == ProgType.TRACEPOINT:
        return PERF_MAX_TRACE_SIZE
    if prog_type in (ProgType.RAW_TRACEPOINT, ProgType.RAW_TRACEPOINT_WRITABLE):
        return 8 * MAX_BPF_FUNC_ARGS
    if prog_type == ProgType.XDP:
        return XDP_MD_SIZE
    if prog_type in (ProgType.SOCKET_FILTER, ProgType.SCHED_CLS, ProgType.SCHED_ACT, ProgType.CGROUP_SKB):
        return SK_BUFF_SIZE
    return 0


def ctx_access(prog_type: int, off: int, size: int, write: bool, arch: str = "x86_64") -> CtxAccess:
    """Whether a ``size``-byte load (or store) at ``off`` into the ctx of ``prog_type`` is valid."""
    if size <= 0:
        return DENY
    if prog_type == ProgType.TRACEPOINT:
        # Linux compares the int offset with sizeof(void *): a negative offset converts to a huge
        # unsigned value and passes; only 0..7 (the common header) and >= 2048 are refused.
        ok = not write and not 0 <= off < 8 and off < PERF_MAX_TRACE_SIZE and off % size == 0
        return SCALAR if ok else DENY
    if off < 0:
        return DENY
    if prog_type == ProgType.KPROBE:
        ok = not write and off % size == 0 and off + size <= PT_REGS_SIZE[arch]
        return SCALAR if ok else DENY
    if prog_type == ProgType.PERF_EVENT:
        regs = PT_REGS_SIZE[arch]
        if write or off + size > regs + 16:
            return DENY
        if off >= regs:  # sample_period / addr: full u64 or narrower aligned loads
            return SCALAR if off % size == 0 else DENY
        return SCALAR if size == 8 and off % 8 == 0 else DENY
    if prog_type in (ProgType.RAW_TRACEPOINT, ProgType.RAW_TRACEPOINT_WRITABLE):
        ok = not write and off < 8 * MAX_BPF_FUNC_ARGS and off % size == 0
        return SCALAR if ok else DENY
    if prog_type == ProgType.XDP:
        if write or off >= XDP_MD_SIZE or off % size or size != 4:
            return DENY
        return CtxAccess(True, {XDP_DATA: "pkt", XDP_DATA_END: "pkt_end", XDP_DATA_META: "pkt_meta"}.get(off, "scalar"))
    if prog_type in (ProgType.SOCKET_FILTER, ProgType.SCHED_CLS, ProgType.SCHED_ACT, ProgType.CGROUP_SKB):
        return _skb_access(prog_type, off, size, write)
    if prog_type == ProgType.SYSCALL:  # the user's buffer: read and write, bounds checked at run time
        return SCALAR if off < 0xFFFF and off % size == 0 else DENY
    # Types kernel_sim does not model in detail: accept aligned accesses (the run-time bounds check
    # of the ctx region still applies) rather than refuse a program Linux would load.
    return SCALAR if off % size == 0 else DENY


def _skb_access(prog_type: int, off: int, size: int, write: bool) -> CtxAccess:
    if off >= SK_BUFF_SIZE or off % size or off + size > SK_BUFF_SIZE:
        return DENY
    tc = prog_type in (ProgType.SCHED_CLS, ProgType.SCHED_ACT)
    if write:
        if SKB_CB[0] <= off and off + size <= SKB_CB[1]:
            return SCALAR
        if tc and off in SKB_TC_WRITABLE and size == SKB_TC_WRITABLE[off]:
            return SCALAR
        return DENY
    field = off & ~3
    if prog_type == ProgType.SOCKET_FILTER and field in SKB_NO_READ_SOCKET_FILTER:
        return DENY
    if field in (SKB_DATA, SKB_DATA_END, SKB_DATA_META):
        if size != 4:
            return DENY
        return CtxAccess(True, {SKB_DATA: "pkt", SKB_DATA_END: "pkt_end", SKB_DATA_META: "pkt_meta"}[field])
    if off in (144, 152, 168, 184):  # flow_keys, tstamp, sk, hwtstamp are u64
        return SCALAR if size == 8 else DENY
    return SCALAR if size <= 4 else DENY
