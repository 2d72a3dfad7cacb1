"""BPF helper functions by Linux id: ``fn(run, r1, r2, r3, r4, r5) -> u64``.

Helpers see the program's memory only through ``run.vm`` (checked reads/writes: a bad pointer
gives Linux's -EFAULT, never an exception), maps through the handle addresses lddw loaded
(``run.vm.object_at``) and the maps' program-side API (prog_lookup / prog_update / ...).
"""

from __future__ import annotations

from ..uapi.bpf_enums import HelperId

U64 = 0xFFFFFFFFFFFFFFFF


def neg(errno_value: int) -> int:
    """-errno as the u64 a helper returns."""
    return (-errno_value) & U64


def _ktime_get_ns(run, r1, r2, r3, r4, r5) -> int:
    return run.kernel.clock_ns() if run.kernel is not None else 0


HELPERS: dict[int, object] = {
    HelperId.ktime_get_ns: _ktime_get_ns,
}


def helper_table() -> dict[int, object]:
    """The helpers loaded programs may call (the verifier decides which per program type)."""
    return dict(HELPERS)
