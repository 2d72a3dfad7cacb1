"""The BPF verifier of kernel_sim: Linux 6.18's checks, messages and errnos.

``verify(kernel, prepared, meta, log)`` runs the structural checks (structure.py), then the
abstract interpreter over every path (checker.py). On success the log receives what Linux
prints at the attr's log_level (the trace at level 1/2, the "processed N insns ..." line) and
the result says how many instructions were processed. On rejection it raises
``VerifierError(errno, text)``: the text is the whole log Linux would give (trace of the
failing path, the error line, the stats line); the caller writes it to the user's log.

``VerifierResult.insn_aux`` maps an instruction index to facts the engines may use:

- ``"mem"``: for loads/stores/atomics, the kind of memory the base register pointed to on
  every verified path: "stack", "ctx", "map_value", "packet", "mem" (ring buffer records), or
  "mixed" when paths disagree;
- ``"ctx_field"``: for a ctx load that yields a packet pointer: "pkt", "pkt_end", "pkt_meta";
- ``"helper"``: for a helper call, its id.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field

from .checker import RET_CHECKED, Checker, Reject
from .structure import StructureError, analyse


@dataclass
class VerifierResult:
    verified_insns: int
    # Per-instruction facts the engines may use (see the module docstring).
    insn_aux: dict = field(default_factory=dict)


class VerifierError(OSError):
    """Rejection: errno (EACCES / EINVAL / E2BIG ...) and the log text Linux would print."""

    def __init__(self, code: int, log: str) -> None:
        super().__init__(code, log)
        self.log = log


def _stats0() -> str:
    return "processed 0 insns (limit 1000000) max_states_per_insn 0 total_states 0 peak_states 0 mark_read 0\n"


def _map_addr(kernel):
    """How the log prints an lddw of a map: its kernel address (Linux prints the pointer for root)."""
    vm = getattr(kernel, "vm", None)

    def addr(bpf_map, value_off):
        try:
            if value_off is None:
                return vm.handle_of(bpf_map) if vm is not None else None
            return bpf_map.direct_value_addr(value_off)
        except Exception:  # noqa: BLE001 - the log then prints map[id:N]
            return None

    return addr


def verify(kernel, prepared, meta, log) -> VerifierResult:
    """Check ``prepared`` (a PreprocessedProgram) for ``meta.prog_type``; write to ``log``."""
    level = getattr(log, "level", 0) if log is not None else 0
    insns = prepared.insns
    try:
        structure = analyse(insns, ret_checked=int(meta.prog_type) in RET_CHECKED)
    except StructureError as e:
        raise VerifierError(e.errno, e.msg + _stats0()) from None
    arch = getattr(kernel, "arch", "x86_64") if kernel is not None else "x86_64"
    checker = Checker(insns, structure, prepared.map_refs, int(meta.prog_type), arch,
                      bool(getattr(meta, "gpl_compatible", False)), level, _map_addr(kernel),
                      int(getattr(kernel, "ncpus", 1) or 1), int(getattr(meta, "expected_attach_type", 0) or 0))
    try:
        checker.run()
        checker.check_max_stack_depth()
    except Reject as e:
        raise VerifierError(e.errno, checker.text() + e.msg + checker.stats()) from None
    except Exception as e:  # noqa: BLE001 - a verifier bug must not crash PROG_LOAD
        # Linux answers its own internal inconsistencies with EFAULT and a "verifier bug" line.
        raise VerifierError(errno.EFAULT, checker.text() + f"verifier bug: {type(e).__name__}: {e}\n"
                            + checker.stats()) from None
    if log is not None and level:
        # At level 1 Linux keeps only the trace of a failing path: a verified program logs the stats.
        log.write((checker.text() if level & 2 else "") + checker.stats())
    return VerifierResult(verified_insns=checker.insn_processed, insn_aux=checker.aux)
