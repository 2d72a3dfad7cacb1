"""The glue from BPF_PROG_LOAD to a runnable program: verify, build the VmProgram, pick an engine.

Why here and not in prog.py: prog.py is about the syscall's attribute rules; this module is
about execution. It installs ``prog.BUILD_ENGINE``. The engine is the JIT
(kernel_sim.vm.jit.JitEngine) when the kernel asks for it and the module exists, else the
reference interpreter. ``run_raw`` runs bare instructions on a private address space, which
is what the conformance suite and ``bpfload vm exec`` need.
"""

from __future__ import annotations

import importlib
import logging

from ..cpus import current_cpu
from ..fs.file import oserror
from ..task import current
from ..uapi.insn import Insn, decode
from ..vm.ctxaccess import CtxLayout, analyse, layout_for, rewrite_pointer_loads
from ..vm.helpers import helper_table
from ..vm.interpreter import Interpreter
from ..vm.memory import AddressSpace, VmFault
from ..vm.program import VmProgram
from ..vm.runctx import ProgramExit, RunContext, execute
from . import prog as prog_module

log_faults = logging.getLogger("kernel_sim.vm")


def jit_class():
    """kernel_sim.vm.jit.JitEngine, or None while the JIT is absent or broken."""
    try:
        return importlib.import_module("kernel_sim.vm.jit").JitEngine
    except (ImportError, AttributeError):
        return None


def engine_kinds() -> list[str]:
    """The engines available in this tree: always "interp", "jit" when it imports."""
    return ["interp", "jit"] if jit_class() is not None else ["interp"]


def uses_ld_abs(vmprog: VmProgram) -> bool:
    return any(i.code & 0x07 == 0 and i.code & 0xE0 in (0x20, 0x40) for i in vmprog.insns)


def uses_subprog_tail_call(vmprog: VmProgram) -> bool:
    """A bpf_tail_call outside the main function (its target returns to the subprogram's caller)."""
    main_end = next((e for e in vmprog.subprogs if e > 0), len(vmprog.insns))
    return any(i.code == 0x85 and i.src == 0 and i.imm == 12 for i in vmprog.insns[main_end:])


def jit_can_run(cls, vmprog: VmProgram) -> bool:
    """Whether the JIT implements everything ``vmprog`` uses (it declares the optional parts)."""
    if uses_ld_abs(vmprog) and not getattr(cls, "SUPPORTS_LD_ABS", False):
        return False
    return not (uses_subprog_tail_call(vmprog) and not getattr(cls, "SUPPORTS_SUBPROG_TAIL_CALL", False))


def make_vm_engine(vmprog: VmProgram, kind: str):
    """An engine for ``vmprog``: "jit" falls back to the interpreter when there is no JIT, or when
    the program uses what the JIT does not declare: LD_ABS / LD_IND (``SUPPORTS_LD_ABS``), tail
    calls from subprograms (``SUPPORTS_SUBPROG_TAIL_CALL``)."""
    if kind == "jit":
        cls = jit_class()
        if cls is not None and jit_can_run(cls, vmprog):
            try:
                return cls(vmprog)
            except Exception as e:  # noqa: BLE001 - a JIT bug must not fail PROG_LOAD: interpret instead
                log_faults.warning("JIT failed on prog %s (%s: %s); using the interpreter",
                                   vmprog.name or "?", type(e).__name__, e)
    elif kind != "interp":
        raise ValueError(f"unknown engine {kind!r}: choose interp or jit")
    return Interpreter(vmprog)


# -- the conformance runner's environment ------------------------------------------------------
def _unwind(run, r1, r2, r3, r4, r5) -> int:
    """bpf_conformance's helper 5: returns its argument; a 0 ends the program with r0 = 0."""
    if r1 == 0:
        raise ProgramExit(0)
    return r1


CONFORMANCE_HELPERS = {5: _unwind}


def run_raw(insns: bytes | list[Insn], mem: bytes = b"", kind: str = "interp", helpers: dict | None = None,
            trace: list | None = None, max_insns: int | None = None, vm: AddressSpace | None = None,
            kernel=None, prog_type: int = 0) -> tuple[int, bytes]:
    """Run bare instructions as the conformance runner does: r1 = mem (or 0), r2 = len(mem).

    Returns (r0, memory after the run). Raises VmFault on a bad access.
    """
    if isinstance(insns, bytes | bytearray):
        insns = decode(insns)
    vm = vm if vm is not None else AddressSpace()
    vmprog = VmProgram.build(insns, CONFORMANCE_HELPERS if helpers is None else helpers, vm)
    engine = make_vm_engine(vmprog, kind)
    run = RunContext(kernel, vm=vm, trace=trace, printk=None if kernel is not None else lambda text: None)
    if max_insns is not None:
        run.max_insns = max_insns
    run.prog_type = prog_type
    buf = bytearray(mem)
    r1 = run.map_region(buf) if mem else 0
    r0 = execute(engine, run, r1, len(mem))
    return r0, bytes(buf)


# -- loaded programs -----------------------------------------------------------------------------
class LoadedEngine:
    """What BpfProg.engine holds: the VM engine plus the facts a run needs."""

    def __init__(self, kernel, vmprog: VmProgram, vm_engine, kind: str, layout: CtxLayout | None = None,
                 max_ctx_offset: int = 0) -> None:
        self.kernel = kernel
        self.vmprog = vmprog
        self.vm_engine = vm_engine
        self.kind = kind
        self.layout = layout                  # ctx with pointer fields (xdp_md, __sk_buff) or None
        self.max_ctx_offset = max_ctx_offset  # end of the furthest direct ctx access
        self.prog = None          # the BpfProg when its runner knows it (BPF_PROG_TEST_RUN binds it)
        self.last_fault: VmFault | None = None
        self.faults = 0

    def new_run(self, trace: list | None = None) -> RunContext:
        task = current()
        run = RunContext(self.kernel, cpu=current_cpu(), task=task, prog=self.prog, trace=trace)
        run.prog_type = self.vmprog.prog_type
        return run

    def run(self, run: RunContext, r1: int, r2: int = 0) -> int:
        """The engine interface, so a LoadedEngine can be tail-called."""
        return self.vm_engine.run(run, r1, r2)

    def call_function(self, run: RunContext, pc: int, *args: int) -> int:
        return self.vm_engine.call_function(run, pc, *args)

    def execute(self, run: RunContext, r1: int, r2: int = 0) -> int:
        """Run with faults turned into a stop: r0 = 0, the fault kept in ``last_fault`` and logged.

        Linux has no such outcome (its verifier proves every access); here a fault means an
        unverified access slipped through, so it is reported on the "kernel_sim.vm" logger and
        never reaches trace_pipe or the program's maps.
        """
        try:
            return execute(self.vm_engine, run, r1, r2)
        except VmFault as fault:
            self.last_fault = fault
            self.faults += 1
            log_faults.warning("bpf prog %s stopped: %s", self.vmprog.name or "?", fault)
            return 0

    def run_ctx(self, ctx: bytes | bytearray, func_ip: int = 0) -> int:
        """Run on a copy of ctx mapped as a region; r1 points to it. func_ip: bpf_get_func_ip's answer."""
        run = self.new_run()
        run.func_ip = func_ip
        addr = run.map_region(bytearray(ctx))
        return self.execute(run, addr)


def build_engine(kernel, prepared, meta, log) -> tuple[LoadedEngine, int]:
    """prog.BUILD_ENGINE: verifier, then VmProgram, then the engine the kernel asks for."""
    from ..vm import verifier

    try:
        result = verifier.verify(kernel, prepared, meta, log)
    except verifier.VerifierError as e:
        log.write(e.log)
        raise oserror(e.errno) from None
    info = analyse(prepared.insns)
    layout = layout_for(meta.prog_type)
    insns = rewrite_pointer_loads(prepared.insns, layout, info)
    vmprog = VmProgram.build(insns, helper_table(), kernel.vm, prepared.map_refs, meta.name,
                             int(meta.prog_type), getattr(result, "insn_aux", None))
    kind = getattr(kernel, "engine", "interp")
    vm_engine = make_vm_engine(vmprog, kind)
    return LoadedEngine(kernel, vmprog, vm_engine, kind, layout, info.max_ctx_offset), result.verified_insns


prog_module.BUILD_ENGINE = build_engine
