"""RunContext and the execution driver shared by both engines.

Why: everything about one run that is not a register lives here — the kernel, the CPU and
task it runs for, the per-run memory (stack, ctx, packet) mapped under run keys and unmapped
afterwards, the tail-call counter, the helper trace that lets tests compare the interpreter
and the JIT call for call, and the bpf_loop-style callback entry. Engines implement

    run(run: RunContext, r1: int, r2: int = 0) -> int         # r0 as u64
    call_function(run, pc, r1, r2, r3, r4, r5) -> int          # a subprogram, own frame

and ``execute`` wraps a run: maps the stack, runs, follows tail calls (at most 33, Linux's
MAX_TAIL_CALL_CNT), unmaps, and lets a VmFault out only after cleaning up.
"""

from __future__ import annotations

from .memory import KEY_SHIFT, MAX_BPF_STACK, MAX_CALL_FRAMES, STACK_SIZE, VmFault, as_region

MAX_TAIL_CALL_CNT = 33
U64 = 0xFFFFFFFFFFFFFFFF
DEFAULT_MAX_INSNS = 50_000_000  # a run-time backstop for unverified code (vm exec, tests)


class TailCall(Exception):  # noqa: N818  (control flow, not an error)
    """Raised by bpf_tail_call on success: the current program ends, ``engine`` starts."""

    def __init__(self, engine, prog=None, ctx: int | None = None) -> None:
        super().__init__("tail call")
        self.engine = engine
        self.prog = prog
        self.ctx = ctx  # r1 for the next program (bpf_tail_call's ctx argument)


class ProgramExit(Exception):  # noqa: N818  (control flow, not an error)
    """Raised by a helper that ends the program with r0 (the conformance suite's unwind)."""

    def __init__(self, r0: int) -> None:
        super().__init__(f"exit {r0}")
        self.r0 = r0 & U64


class RunContext:
    """One program invocation's environment (see the module docstring)."""

    def __init__(self, kernel=None, *, vm=None, cpu: int = 0, task=None, prog=None,
                 trace: list | None = None, printk=None, max_insns: int = DEFAULT_MAX_INSNS) -> None:
        self.kernel = kernel
        self.vm = vm if vm is not None else kernel.vm
        self.cpu = cpu
        self.task = task
        self.prog = prog            # the BpfProg running (None for raw VM runs)
        self.prog_type = 0          # its type (helpers whose meaning depends on it: bpf_redirect)
        self.trace = trace          # list -> (helper_id, (r1..r5), ret) per helper call
        self.printk = printk        # callable(str) or None -> kernel.tracing.printk
        self.max_insns = max_insns
        self.insns = 0              # instructions executed (engines may count lazily)
        self.tail_call_cnt = 0
        self.ctx = 0                # r1 at entry: what a tail call hands to the next program
        self.stack_base = 0
        self.depth = 0              # current call frame (0 = main); r10 = stack_base + (depth+1)*512
        self.engine = None          # the engine currently running (for callbacks)
        self.func_ip = 0
        self.xdp_frags = False      # an XDP packet with more than the linear part (tail helpers refuse)
        self.ringbuf_records: dict[int, object] = {}   # reserved, not yet submitted: addr -> map
        self._keys: list[int] = []

    # -- per-run memory ------------------------------------------------------------------------
    def map_region(self, buf) -> int:
        """Map ``buf`` for the duration of this run; returns its address."""
        key = self.vm.run_keys(1)[0]
        while key in self.vm.regions:  # still held by a long run on another CPU: skip it
            key = self.vm.run_keys(1)[0]
        self.vm.regions[key] = as_region(buf)
        self._keys.append(key)
        return key << KEY_SHIFT

    def unmap_all(self) -> None:
        for key in self._keys:
            self.vm.regions.pop(key, None)
        self._keys.clear()

    def frame_pointer(self, depth: int) -> int:
        """r10 of call frame ``depth``."""
        if depth >= MAX_CALL_FRAMES:
            raise VmFault(-1, self.stack_base + STACK_SIZE, MAX_BPF_STACK, "call (too many frames)")
        return self.stack_base + (depth + 1) * MAX_BPF_STACK

    # -- helpers -------------------------------------------------------------------------------
    def call_helper(self, fn, fn_id: int, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
        """Call one helper, record it in the trace, return its u64 result."""
        if fn is None:
            raise VmFault(-1, fn_id, 0, f"call to unknown helper {fn_id}")
        try:
            ret = fn(self, r1, r2, r3, r4, r5) & U64
        except (TailCall, ProgramExit):
            if self.trace is not None:
                self.trace.append((fn_id, (r1, r2, r3, r4, r5), 0))
            raise
        if self.trace is not None:
            self.trace.append((fn_id, (r1, r2, r3, r4, r5), ret))
        return ret

    def call_function(self, pc: int, r1: int = 0, r2: int = 0, r3: int = 0, r4: int = 0, r5: int = 0) -> int:
        """Run the subprogram at ``pc`` of the running program in a new frame (bpf_loop callbacks)."""
        return self.engine.call_function(self, pc, r1, r2, r3, r4, r5) & U64

    def emit_printk(self, text: str) -> None:
        if self.printk is not None:
            self.printk(text)
        elif self.kernel is not None and getattr(self.kernel, "tracing", None) is not None:
            self.kernel.tracing.printk(text)


def execute(engine, run: RunContext, r1: int, r2: int = 0) -> int:
    """Run ``engine`` (then whatever it tail-calls) on a fresh stack; returns r0 (u64).

    A VmFault propagates to the caller after the run's memory is unmapped.
    """
    stack = bytearray(STACK_SIZE)
    run.stack_base = run.map_region(stack)
    run.ctx = r1
    try:
        while True:
            run.engine = engine
            run.depth = 0
            try:
                return engine.run(run, r1, r2) & U64
            except TailCall as tc:
                engine = tc.engine
                if tc.prog is not None:
                    run.prog = tc.prog
                r1, r2 = (run.ctx if tc.ctx is None else tc.ctx), 0
            except ProgramExit as ex:
                return ex.r0
    finally:
        # a record reserved and never submitted would block the ring's consumer forever
        for addr, ringbuf_map in list(run.ringbuf_records.items()):
            ringbuf_map.ringbuf_discard(addr, 0)
        run.ringbuf_records.clear()
        run.unmap_all()
