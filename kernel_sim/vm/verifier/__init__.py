"""The verifier's entry point (placeholder until the verifier lands: accepts everything)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class VerifierResult:
    verified_insns: int
    # Per-instruction facts the engines may use (e.g. which loads hit the stack); optional.
    insn_aux: dict = field(default_factory=dict)


class VerifierError(OSError):
    """Rejection: errno (EACCES / EINVAL / E2BIG ...) and the log text Linux would print."""

    def __init__(self, code: int, log: str) -> None:
        super().__init__(code, log)
        self.log = log


def verify(kernel, prepared, meta, log) -> VerifierResult:
    """Check ``prepared`` (a PreprocessedProgram) for ``meta.prog_type``; write to ``log``."""
    return VerifierResult(verified_insns=len(prepared.insns))
