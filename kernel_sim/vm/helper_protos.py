"""Helper prototypes as the verifier sees them: argument kinds, return kind, licence, program types.

Linux describes every helper with a ``struct bpf_func_proto`` (include/linux/bpf.h) and each
program type's ``get_func_proto`` decides which helpers it may call. The verifier checks the
arguments against these kinds before the call and gives R0 the return kind after it. Only the
helpers kernel_sim implements are listed; any other id below ``FUNC_MAX_ID`` is refused with
Linux's "program of this type cannot use helper" message, ids at or above it with
"invalid func unknown#N".
"""

from __future__ import annotations

from dataclasses import dataclass

from ..uapi.bpf_enums import HelperId, ProgType

FUNC_MAX_ID = 212  # __BPF_FUNC_MAX_ID in Linux 6.18

# Argument kinds (enum bpf_arg_type).
ARG_DONTCARE = "dontcare"
ARG_CONST_MAP_PTR = "const_map_ptr"
ARG_PTR_TO_MAP_KEY = "ptr_to_map_key"
ARG_PTR_TO_MAP_VALUE = "ptr_to_map_value"
ARG_PTR_TO_MEM = "ptr_to_mem"  # readable memory of the size given by the next argument
ARG_PTR_TO_MEM_OR_NULL = "ptr_to_mem_or_null"
ARG_PTR_TO_UNINIT_MEM = "ptr_to_uninit_mem"  # memory the helper fills
ARG_CONST_SIZE = "const_size"
ARG_CONST_SIZE_OR_ZERO = "const_size_or_zero"
ARG_CONST_ALLOC_SIZE_OR_ZERO = "const_alloc_size_or_zero"
ARG_PTR_TO_CTX = "ptr_to_ctx"
ARG_PTR_TO_RINGBUF_MEM = "ptr_to_ringbuf_mem"  # releases the reservation
ARG_PTR_TO_FUNC = "ptr_to_func"
ARG_PTR_TO_STACK_OR_NULL = "ptr_to_stack_or_null"
ARG_PTR_TO_CONST_STR = "ptr_to_const_str"
ARG_PTR_TO_LONG = "ptr_to_long"
ARG_ANYTHING = "anything"

# Return kinds (enum bpf_return_type).
RET_INTEGER = "integer"
RET_VOID = "void"
RET_PTR_TO_MAP_VALUE_OR_NULL = "map_value_or_null"
RET_PTR_TO_MEM_OR_NULL = "ringbuf_mem_or_null"  # bpf_ringbuf_reserve: size from the const arg

_T = ProgType
TRACING = frozenset({_T.KPROBE, _T.TRACEPOINT, _T.PERF_EVENT, _T.RAW_TRACEPOINT, _T.RAW_TRACEPOINT_WRITABLE,
                     _T.TRACING, _T.LSM, _T.SYSCALL})
# Availability measured on Linux 6.18 (root: bpf_base_func_proto gives most helpers to every type).
NET = frozenset({_T.SOCKET_FILTER, _T.SCHED_CLS, _T.SCHED_ACT, _T.XDP, _T.CGROUP_SKB, _T.SK_SKB, _T.LWT_IN,
                 _T.LWT_OUT, _T.LWT_XMIT, _T.FLOW_DISSECTOR})
ALL = frozenset(ProgType) - {_T.UNSPEC}
SKB = frozenset({_T.SOCKET_FILTER, _T.SCHED_CLS, _T.SCHED_ACT, _T.CGROUP_SKB, _T.SK_SKB, _T.LWT_IN, _T.LWT_OUT,
                 _T.LWT_XMIT})
PERF_OUT = TRACING | frozenset({_T.SOCKET_FILTER, _T.SCHED_CLS, _T.SCHED_ACT, _T.XDP, _T.CGROUP_SKB,
                                _T.LWT_IN, _T.LWT_OUT, _T.LWT_XMIT, _T.SK_SKB})


@dataclass(frozen=True)
class HelperProto:
    """What the verifier needs to know about one helper."""

    func_id: int
    args: tuple[str, ...]
    ret: str = RET_INTEGER
    gpl_only: bool = False
    prog_types: frozenset = ALL

    @property
    def name(self) -> str:
        return helper_name(self.func_id)


def helper_name(func_id: int) -> str:
    """Linux's func_id_name(): "bpf_<name>", or "unknown" outside the helper table."""
    try:
        return "bpf_" + HelperId(func_id).name
    except ValueError:
        return "unknown"


H = HelperId
_MEM_SIZE = (ARG_PTR_TO_MEM, ARG_CONST_SIZE_OR_ZERO)
_PROTOS = [
    HelperProto(H.map_lookup_elem, (ARG_CONST_MAP_PTR, ARG_PTR_TO_MAP_KEY), RET_PTR_TO_MAP_VALUE_OR_NULL),
    HelperProto(H.map_update_elem, (ARG_CONST_MAP_PTR, ARG_PTR_TO_MAP_KEY, ARG_PTR_TO_MAP_VALUE, ARG_ANYTHING)),
    HelperProto(H.map_delete_elem, (ARG_CONST_MAP_PTR, ARG_PTR_TO_MAP_KEY)),
    HelperProto(H.map_push_elem, (ARG_CONST_MAP_PTR, ARG_PTR_TO_MAP_VALUE, ARG_ANYTHING)),
    HelperProto(H.map_pop_elem, (ARG_CONST_MAP_PTR, ARG_PTR_TO_UNINIT_MEM)),
    HelperProto(H.map_peek_elem, (ARG_CONST_MAP_PTR, ARG_PTR_TO_UNINIT_MEM)),
    HelperProto(H.probe_read, (ARG_PTR_TO_UNINIT_MEM, ARG_CONST_SIZE_OR_ZERO, ARG_ANYTHING), gpl_only=True,
                prog_types=TRACING),
    HelperProto(H.probe_read_str, (ARG_PTR_TO_UNINIT_MEM, ARG_CONST_SIZE_OR_ZERO, ARG_ANYTHING), gpl_only=True,
                prog_types=TRACING),
    HelperProto(H.probe_read_user, (ARG_PTR_TO_UNINIT_MEM, ARG_CONST_SIZE_OR_ZERO, ARG_ANYTHING), gpl_only=True),
    HelperProto(H.probe_read_user_str, (ARG_PTR_TO_UNINIT_MEM, ARG_CONST_SIZE_OR_ZERO, ARG_ANYTHING),
                gpl_only=True),
    HelperProto(H.probe_read_kernel, (ARG_PTR_TO_UNINIT_MEM, ARG_CONST_SIZE_OR_ZERO, ARG_ANYTHING), gpl_only=True),
    HelperProto(H.probe_read_kernel_str, (ARG_PTR_TO_UNINIT_MEM, ARG_CONST_SIZE_OR_ZERO, ARG_ANYTHING),
                gpl_only=True),
    HelperProto(H.ktime_get_ns, ()),
    HelperProto(H.ktime_get_boot_ns, ()),
    HelperProto(H.ktime_get_coarse_ns, (), prog_types=ALL - TRACING | {_T.SYSCALL}),
    HelperProto(H.trace_printk, (ARG_PTR_TO_MEM, ARG_CONST_SIZE) + (ARG_DONTCARE,) * 3, gpl_only=True),
    HelperProto(H.get_prandom_u32, ()),
    HelperProto(H.get_smp_processor_id, ()),
    HelperProto(H.get_numa_node_id, ()),
    HelperProto(H.get_current_pid_tgid, ()),
    HelperProto(H.get_current_uid_gid, ()),
    HelperProto(H.get_current_comm, (ARG_PTR_TO_UNINIT_MEM, ARG_CONST_SIZE)),
    HelperProto(H.get_current_task, (), gpl_only=True),
    HelperProto(H.get_current_cgroup_id, ()),
    HelperProto(H.tail_call, (ARG_PTR_TO_CTX, ARG_CONST_MAP_PTR, ARG_ANYTHING), RET_VOID),
    HelperProto(H.perf_event_output, (ARG_PTR_TO_CTX, ARG_CONST_MAP_PTR, ARG_ANYTHING) + _MEM_SIZE,
                gpl_only=True),
    HelperProto(H.get_stackid, (ARG_PTR_TO_CTX, ARG_CONST_MAP_PTR, ARG_ANYTHING), gpl_only=True,
                prog_types=TRACING),
    HelperProto(H.ringbuf_output, (ARG_CONST_MAP_PTR, ARG_PTR_TO_MEM, ARG_CONST_SIZE_OR_ZERO, ARG_ANYTHING)),
    HelperProto(H.ringbuf_reserve, (ARG_CONST_MAP_PTR, ARG_CONST_ALLOC_SIZE_OR_ZERO, ARG_ANYTHING),
                RET_PTR_TO_MEM_OR_NULL),
    HelperProto(H.ringbuf_submit, (ARG_PTR_TO_RINGBUF_MEM, ARG_ANYTHING), RET_VOID),
    HelperProto(H.ringbuf_discard, (ARG_PTR_TO_RINGBUF_MEM, ARG_ANYTHING), RET_VOID),
    HelperProto(H.ringbuf_query, (ARG_CONST_MAP_PTR, ARG_ANYTHING)),
    HelperProto(H.get_func_ip, (ARG_PTR_TO_CTX,), prog_types=TRACING),
    HelperProto(H.loop, (ARG_ANYTHING, ARG_PTR_TO_FUNC, ARG_PTR_TO_STACK_OR_NULL, ARG_ANYTHING)),
    HelperProto(H.snprintf, (ARG_PTR_TO_MEM_OR_NULL, ARG_CONST_SIZE_OR_ZERO, ARG_PTR_TO_CONST_STR,
                             ARG_PTR_TO_MEM_OR_NULL, ARG_CONST_SIZE_OR_ZERO), gpl_only=True),
    HelperProto(H.skb_load_bytes, (ARG_PTR_TO_CTX, ARG_ANYTHING, ARG_PTR_TO_UNINIT_MEM, ARG_CONST_SIZE),
                prog_types=SKB | {_T.SYSCALL}),
    HelperProto(H.redirect, (ARG_ANYTHING, ARG_ANYTHING), prog_types=frozenset({_T.XDP, _T.SCHED_CLS,
                                                                                _T.SCHED_ACT, _T.SYSCALL})),
    HelperProto(H.xdp_adjust_head, (ARG_PTR_TO_CTX, ARG_ANYTHING), prog_types=frozenset({_T.XDP, _T.SYSCALL})),
    HelperProto(H.xdp_adjust_tail, (ARG_PTR_TO_CTX, ARG_ANYTHING), prog_types=frozenset({_T.XDP, _T.SYSCALL})),
]
PROTOS: dict[int, HelperProto] = {int(p.func_id): p for p in _PROTOS}

# Helpers that change packet data: packet pointers derived before the call are invalidated.
CHANGES_PKT_DATA = frozenset({int(H.xdp_adjust_head), int(H.xdp_adjust_tail)})


def helper_proto(func_id: int, prog_type: int) -> HelperProto | None:
    """The prototype if ``prog_type`` may call ``func_id`` in kernel_sim, else None."""
    proto = PROTOS.get(func_id)
    if proto is None or prog_type not in proto.prog_types:
        return None
    return proto
