"""Program section names, as libbpf's SEC() table and Aya's ProgramSection name them.

The section name decides the program type, the expected attach type given to BPF_PROG_LOAD,
and (for probes and tracepoints) where the program attaches. Both spellings are accepted:
libbpf's "kprobe/do_sys_openat2" and Aya's bare "kprobe" (the target then comes from the
attach call, and the program name from the function symbol).

`attach_target` is what libbpf would attach to by default. Older Aya macros wrote
"kprobe/<program name>", so for Aya objects the text after the slash may be the program's own
name rather than a kernel function: Aya's API always names the target in attach(), and so
does bpfload's Ebpf API; the section's target is only a default (for `bpfload run`).
"""

from __future__ import annotations

from dataclasses import dataclass

from kernel_sim.uapi.bpf_enums import AttachType, ProgType

from .model import ProgramKind


@dataclass(frozen=True)
class SectionKind:
    kind: ProgramKind
    prog_type: ProgType
    expected_attach_type: AttachType | None
    attach_target: str | tuple[str, str] | None
    sleepable: bool = False


K = ProgramKind
# prefix -> (kind, prog type, expected attach type). Longest prefix wins; "x.s" = sleepable x.
_PREFIXES: dict[str, tuple[ProgramKind, ProgType, AttachType | None]] = {
    "kprobe": (K.KPROBE, ProgType.KPROBE, None),
    "kretprobe": (K.KRETPROBE, ProgType.KPROBE, None),
    "ksyscall": (K.KPROBE, ProgType.KPROBE, None),
    "kretsyscall": (K.KRETPROBE, ProgType.KPROBE, None),
    "uprobe": (K.UPROBE, ProgType.KPROBE, None),
    "uretprobe": (K.URETPROBE, ProgType.KPROBE, None),
    "tracepoint": (K.TRACEPOINT, ProgType.TRACEPOINT, None),
    "tp": (K.TRACEPOINT, ProgType.TRACEPOINT, None),
    "raw_tracepoint": (K.RAW_TRACEPOINT, ProgType.RAW_TRACEPOINT, None),
    "raw_tp": (K.RAW_TRACEPOINT, ProgType.RAW_TRACEPOINT, None),
    "tp_btf": (K.BTF_TRACEPOINT, ProgType.TRACING, AttachType.TRACE_RAW_TP),
    "perf_event": (K.PERF_EVENT, ProgType.PERF_EVENT, None),
    "socket": (K.SOCKET_FILTER, ProgType.SOCKET_FILTER, None),
    "socket_filter": (K.SOCKET_FILTER, ProgType.SOCKET_FILTER, None),
    "xdp": (K.XDP, ProgType.XDP, AttachType.XDP),
    "classifier": (K.SCHED_CLS, ProgType.SCHED_CLS, None),
    "tc": (K.SCHED_CLS, ProgType.SCHED_CLS, None),
    "action": (K.SCHED_ACT, ProgType.SCHED_ACT, None),
    "fentry": (K.FENTRY, ProgType.TRACING, AttachType.TRACE_FENTRY),
    "fexit": (K.FEXIT, ProgType.TRACING, AttachType.TRACE_FEXIT),
    "fmod_ret": (K.FEXIT, ProgType.TRACING, AttachType.MODIFY_RETURN),
    "lsm": (K.LSM, ProgType.LSM, AttachType.LSM_MAC),
    "cgroup_skb/ingress": (K.CGROUP_SKB, ProgType.CGROUP_SKB, AttachType.CGROUP_INET_INGRESS),
    "cgroup_skb/egress": (K.CGROUP_SKB, ProgType.CGROUP_SKB, AttachType.CGROUP_INET_EGRESS),
    "sk_skb/stream_parser": (K.SK_SKB, ProgType.SK_SKB, AttachType.SK_SKB_STREAM_PARSER),
    "sk_skb/stream_verdict": (K.SK_SKB, ProgType.SK_SKB, AttachType.SK_SKB_STREAM_VERDICT),
    "sk_msg": (K.SK_MSG, ProgType.SK_MSG, AttachType.SK_MSG_VERDICT),
    "sockops": (K.SOCK_OPS, ProgType.SOCK_OPS, AttachType.CGROUP_SOCK_OPS),
    "syscall": (K.SYSCALL, ProgType.SYSCALL, None),
}
# Prefixes that are complete names (the section is exactly this, no "/target").
_EXACT_ONLY = {"cgroup_skb/ingress", "cgroup_skb/egress", "sk_skb/stream_parser", "sk_skb/stream_verdict"}


def classify_section(name: str) -> SectionKind | None:
    """The program kind a section name declares, or None when it names no program kind."""
    if name in _EXACT_ONLY:
        kind, ptype, atype = _PREFIXES[name]
        return SectionKind(kind, ptype, atype, None)
    head, sep, rest = name.partition("/")
    sleepable = head.endswith(".s")
    if sleepable:
        head = head[:-2]
    entry = _PREFIXES.get(head)
    if entry is None:
        return None
    kind, ptype, atype = entry
    target: str | tuple[str, str] | None = rest if sep and rest else None
    if kind is K.TRACEPOINT and isinstance(target, str):
        category, slash, event = target.partition("/")
        target = (category, event) if slash and category and event else None
    return SectionKind(kind, ptype, atype, target, sleepable)


def is_program_section_name(name: str) -> bool:
    return classify_section(name) is not None
