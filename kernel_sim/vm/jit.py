"""The JIT: each BPF function of a verified program becomes one Python function, compiled once.

Why Python source: CPython runs a straight-line function over local variables an order of
magnitude faster than an interpreter loop that decodes instructions and indexes a register
list. So registers are locals r0..r10, each BPF function (per call depth, so that r10 and
every r10-relative stack offset are constants) is one ``def``, loops are Python loops and
forward branches are ``if``/``else`` (jit_struct.py; a block dispatcher only for irreducible
graphs or nesting CPython cannot compile), masks are dropped where a bit-width analysis
proves them useless (jit_emit.py), and ``r1 = r2; r1 += 3`` folds into one statement.

Semantics are the interpreter's (interpreter.py, alu.py): same r0, same memory, same helper
calls (through ``run.call_helper``), same VmFault pc. Memory faults are not checked inline:
a bad access raises KeyError / struct.error / ... inside the generated code, and the engine
maps the failing line back to the instruction and its address (from the frame's registers).

Options: ``count=True`` adds per-block instruction counting into ``run.insns`` (for the
benchmark's instruction figure); ``loop_guard=True`` (default) bounds every loop by
``run.max_insns`` (or ``max_loop_iterations``) iterations per entry, the backstop for programs
no verifier has bounded; it costs one FOR_ITER per iteration instead of a plain jump.
"""

from __future__ import annotations

import heapq
import itertools
import re
import struct
import sys

from ..uapi.insn import BPF_ATOMIC, BPF_JMP, BPF_LDX, BPF_ST, BPF_STX, Insn
from .alu import alu32, alu64, endian, s32
from .interpreter import ATOMIC_LOCK, ld_packet
from .jit_cfg import FuncGraph, build_graph, function_ranges, insn_width
from .jit_emit import ALL64, SIZES, Translator, writes_r10
from .jit_struct import StructuredEmitter, dispatch_function
from .memory import MAX_CALL_FRAMES, VmFault
from .program import VmProgram
from .runctx import ProgramExit, TailCall

M64 = 0xFFFFFFFFFFFFFFFF
MEM_ERRORS = (KeyError, struct.error, IndexError, TypeError, ValueError, OverflowError)
BPF_LOAD_ACQ = 0x100
BPF_STORE_REL = 0x110
_unit_ids = itertools.count(1)


def chase_tail_calls(run, tc: TailCall) -> int:
    """Run a tail call's target (and whatever it tail-calls) in the current frame; its r0."""
    while True:
        try:
            return tc.engine.run(run, run.ctx if tc.ctx is None else tc.ctx, 0) & M64
        except TailCall as nxt:
            tc = nxt


def _base_names() -> dict:
    names = {"_VmFault": VmFault, "_LOCK": ATOMIC_LOCK, "_alu64": alu64, "_alu32": alu32, "_s32": s32, "_endian": endian,
             "_ld_packet": ld_packet, "_ProgramExit": ProgramExit,
             "_TailCall": TailCall, "_chase_tail_calls": chase_tail_calls}
    for sfx, u, s in (("8", "B", "b"), ("16", "H", "h"), ("32", "I", "i"), ("64", "Q", "q")):
        names["_U" + sfx] = struct.Struct("<" + u).unpack_from
        names["_S" + sfx] = struct.Struct("<" + s).unpack_from
        names["_P" + sfx] = struct.Struct("<" + u).pack_into
    return names


_ASSIGN = re.compile(r"^r(\d+) = (.+)$")
_AUG = re.compile(r"^r(\d+) (\+|-|\*|\||&|\^|<<|>>|//|%)= (.+)$")
_RING = re.compile(r"^\((r\d+) (\+|-|\*|<<) (.+)\) & (0xffffffffffffffff|0xffffffff)$")
_MASKED = re.compile(r"^\((.+)\) & (0xffffffffffffffff|0xffffffff)$")
_SIMPLE = re.compile(r"^(r\d+|0x[0-9a-f]+|\d+)$")
_IMPURE = ("_", "R[", "S[", "run", "f_", ";", ":")


def _pure_assignment(text: str) -> tuple[int, str] | None:
    """(register, expression) when ``text`` assigns a side-effect-free, non-faulting expression."""
    if any(tok in text for tok in _IMPURE):
        return None
    m = _AUG.match(text)
    if m:
        b = m.group(3)
        return int(m.group(1)), f"r{m.group(1)} {m.group(2)} {b if _SIMPLE.match(b) else f'({b})'}"
    m = _ASSIGN.match(text)
    if m:
        return int(m.group(1)), m.group(2)
    return None


def fold_assignments(lines: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """Merge ``rX = E`` into the next statement when that one overwrites rX (clang's
    ``r1 = r2; r1 += 3`` becomes ``r1 = r2 + 3``): one store and one load less per pair.
    Only pure, non-faulting statements take part, so fault pcs and registers stay exact."""
    out: list[tuple[str, int]] = []
    for text, pc in lines:
        cur = _pure_assignment(text)
        if cur is not None and out:
            prev = _pure_assignment(out[-1][0])
            if prev is not None and prev[0] == cur[0]:
                reg, expr = cur
                pattern = re.compile(rf"\br{reg}\b")
                uses = len(pattern.findall(expr))
                value = prev[1] if _SIMPLE.match(prev[1]) else f"({prev[1]})"
                ring = _RING.match(expr)
                inner = _MASKED.match(prev[1])
                if ring and inner and ring.group(1) == f"r{reg}" and ring.group(4) == inner.group(2) \
                        and uses == 1:
                    # (a op b) mod 2**n only depends on a mod 2**n: the inner mask goes
                    value = f"({inner.group(1)})"
                if uses == 0 or uses == 1 or _SIMPLE.match(prev[1]):
                    out[-1] = (f"r{reg} = {pattern.sub(lambda _m, v=value: v, expr)}", pc)
                    continue
        out.append((text, pc))
    return out


def _bad_jump(pc: int) -> bool:
    raise VmFault(pc, 0, 0, "jump with an invalid register or condition")


class JitEngine:
    """Runs a VmProgram as compiled Python (engine interface of runctx.py)."""

    SUPPORTS_LD_ABS = True   # LD_ABS / LD_IND go through the interpreter's ld_packet
    SUPPORTS_SUBPROG_TAIL_CALL = True   # a subprogram's tail call returns to its caller (see _call)

    def __init__(self, program: VmProgram, *, count: bool = False, loop_guard: bool = True,
                 max_loop_iterations: int | None = None, structured: bool = True, tail_copy: bool = True
                 ) -> None:
        self.program = program
        self.structured = structured    # False: every function as a block dispatcher (tests)
        self.tail_copy = tail_copy      # False: no copies of small shared tails (tests)
        self.count = count
        self.loop_guard = loop_guard
        self.insns: list[Insn] = list(program.insns)
        self.ranges = function_ranges(program.subprogs, len(self.insns))
        self.ns: dict = _base_names()
        self.ns["_HT"] = program.helpers
        self.ns["_bad_jump"] = _bad_jump
        self.ns["_repeat"] = itertools.repeat
        self.max_loop_iterations = max_loop_iterations
        self.ns["__builtins__"] = __builtins__
        self.line_tables: dict[str, dict[int, int]] = {}
        self.sources: list[str] = []
        self.graphs: dict[int, FuncGraph] = {}
        self._entry = self._function(0, 0)

    # -- engine interface ---------------------------------------------------------------------------
    def run(self, run, r1: int, r2: int = 0) -> int:
        regions = run.vm.regions
        sb = run.stack_base
        run.frame_pointer(run.depth)
        fn = self._entry if run.depth == 0 else self._function(0, run.depth)
        try:
            return fn(run, regions, regions[sb >> 32], sb, 0, r1 & M64, r2 & M64, 0, 0, 0, 0, 0, 0, 0)
        except MEM_ERRORS as exc:
            fault = self._fault_of(exc)
            if fault is None:
                raise
            raise fault from None

    def call_function(self, run, pc: int, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
        outer = run.depth
        depth = outer + 1
        run.frame_pointer(depth)   # VmFault beyond the last frame, as the interpreter
        fn = self._function(pc, depth)
        regions = run.vm.regions
        sb = run.stack_base
        run.depth = depth
        try:
            return fn(run, regions, regions[sb >> 32], sb, 0, r1 & M64, r2 & M64, r3 & M64, r4 & M64, r5 & M64,
                      0, 0, 0, 0)
        except MEM_ERRORS as exc:
            fault = self._fault_of(exc)
            if fault is None:
                raise
            raise fault from None
        finally:
            run.depth = outer

    # -- compilation ----------------------------------------------------------------------------------
    def _function(self, entry: int, depth: int):
        name = f"f_{entry}_{depth}"
        fn = self.ns.get(name)
        if fn is None:
            self._compile_unit(entry, depth)
            fn = self.ns[name]
        return fn

    def _range_of(self, entry: int) -> int:
        end = self.ranges.get(entry)
        if end is None:
            later = [e for e in self.ranges if e > entry]
            end = min(later) if later else len(self.insns)
        return end

    def _compile_unit(self, entry: int, depth: int) -> None:
        """Generate and compile (entry, depth) and every function it calls not compiled yet.

        Structured code nests; CPython refuses more than 100 indentation levels or 20 nested
        loops, and the emitter recurses along the dominator tree. Where that fails the unit is
        generated again as block dispatchers (flat, always compilable)."""
        filename = f"<bpf-jit {self.program.name or 'prog'} #{next(_unit_ids)}>"
        try:
            source, table = self._generate_unit(entry, depth, dispatch=False)
            code = compile(source, filename, "exec")
        except (SyntaxError, RecursionError, MemoryError):
            source, table = self._generate_unit(entry, depth, dispatch=True)
            code = compile(source, filename, "exec")
        self.sources.append(source)
        self.line_tables[filename] = table
        exec(code, self.ns)  # noqa: S102  (the JIT's whole point)

    def _generate_unit(self, entry: int, depth: int, dispatch: bool) -> tuple[str, dict[int, int]]:
        lines: list[str] = []
        table: dict[int, int] = {}
        todo = [(entry, depth)]
        done: set = set()
        while todo:
            key = todo.pop()
            if key in done or f"f_{key[0]}_{key[1]}" in self.ns:
                continue
            done.add(key)
            calls: list[int] = []
            for text, pc in self._gen_function(key[0], key[1], calls, dispatch):
                lines.append(text)
                if pc >= 0:
                    table[len(lines)] = pc
            todo += [(t, key[1] + 1) for t in calls]
        return "\n".join(lines) + "\n", table

    def _gen_function(self, entry: int, depth: int, calls: list[int], dispatch: bool = False
                      ) -> list[tuple[str, int]]:
        n = len(self.insns)
        header = f"def f_{entry}_{depth}(run, R, S, sb, r0, r1, r2, r3, r4, r5, r6, r7, r8, r9):"
        if not 0 <= entry < n:
            return [(header, -1), (f"    raise _VmFault({entry}, 0, 0, 'jump out of the program')", entry)]
        end = self._range_of(entry)
        g = build_graph(self.insns, entry, end)
        self.graphs[entry] = g
        stack_fast = not any(writes_r10(self.insns[pc]) for pc in range(entry, end))
        tr = Translator(self.insns, self.program.imm64, self.program.helpers, depth, self.ns, stack_fast)
        init = ALL64
        if entry == 0 and depth == 0:
            init = (0, 64, 64, 0, 0, 0, 0, 0, 0, 0, 64)
        w_in = self._widths(g, tr, init)
        tr.calls.clear()

        def block_code(x: int) -> list[tuple[str, int]]:
            b = g.blocks[x]
            w = list(w_in[x])
            out: list[tuple[str, int]] = []
            if self.count:
                out.append((f"run.insns += {self._block_len(b)}", x))
            for pc in self._straight(b):
                for text in tr.stmts(pc, w):
                    out.append((text, pc))
            return fold_assignments(out)

        def cond(x: int) -> tuple[str, int]:
            b = g.blocks[x]
            pc = self._last(b)
            w = list(w_in[x])
            for p in self._straight(b):
                tr.stmts(p, w)
            return tr.cond(pc, w), pc

        def end_code(x: int) -> list[tuple[str, int]]:
            b = g.blocks[x]
            if b.kind == "exit":
                return [("return r0", self._last(b))]
            return [(f"raise _VmFault({b.bad_pc}, 0, 0, 'jump out of the function')", b.bad_pc)]

        def loop_head(x: int) -> str:
            # repeat(None, n) yields without allocating: the cheapest bounded loop in CPython
            return "for _ in _repeat(None, _ML):" if self.loop_guard else "while True:"

        def loop_else(x: int) -> list[tuple[int, str, int]]:
            if not self.loop_guard:
                return []
            return [(0, "else:", x), (1, f"raise _VmFault({x}, 0, 0, 'run (loop bound exceeded)')", x)]

        dispatch = dispatch or not g.reducible or not self.structured
        if not dispatch:
            if len(g.blocks) > 150:   # the emitter recurses along the dominator tree
                sys.setrecursionlimit(max(sys.getrecursionlimit(), 20 * len(g.blocks) + 1000))
            body = StructuredEmitter(g, block_code, cond, end_code, loop_head, loop_else, self.tail_copy).emit(1)
        else:
            body = dispatch_function(g, block_code, cond, end_code, 1, loop_head(g.start))
            body += [(1 + i, t, pc) for i, t, pc in loop_else(g.start)]
        calls += sorted(set(tr.calls))
        out = [(header, -1), (f"    r10 = sb + {tr.fp}", entry)]
        if tr.uses_trace:
            out.append(("    _T = run.trace", entry))
        if self.loop_guard and (g.loop_headers or dispatch):
            limit = "run.max_insns" if self.max_loop_iterations is None else str(self.max_loop_iterations)
            out.append((f"    _ML = {limit}", entry))
        out += [("    " * ind + text, pc) for ind, text, pc in body]
        return out

    def _straight(self, b) -> list[int]:
        """The pcs of a block's instructions except a final jump or exit."""
        pcs = []
        pc = b.start
        while pc < b.end:
            pcs.append(pc)
            pc += insn_width(self.insns, pc)
        if b.kind in ("ja", "cond", "exit") or (b.kind == "fall" and pcs and self._is_jump(pcs[-1])):
            pcs.pop()
        elif b.kind == "bad" and pcs and self._is_jump(pcs[-1]):
            pcs.pop()
        return pcs

    def _is_jump(self, pc: int) -> bool:
        from .jit_cfg import is_jump
        return is_jump(self.insns[pc])

    def _last(self, b) -> int:
        pc = b.start
        last = pc
        while pc < b.end:
            last = pc
            pc += insn_width(self.insns, pc)
        return last

    def _block_len(self, b) -> int:
        k, pc = 0, b.start
        while pc < b.end:
            k += 1
            pc += insn_width(self.insns, pc)
        return k

    def _widths(self, g: FuncGraph, tr: Translator, init: tuple) -> dict[int, tuple]:
        """Register bit widths at each block entry (forward dataflow, join = max).

        Widening at loop headers makes a growing width jump to the next threshold (the width
        of a constant the function compares against, 32 or 64), so the fixpoint comes in a few
        passes; narrowing passes then take back what widening overshot (a counter bounded by
        another register's width)."""
        thresholds = sorted({32, 64} | {(self.insns[b.end - 1].imm & M64).bit_length()
                                        for b in g.blocks.values() if b.kind == "cond"})

        def edges(x: int, w_x: tuple) -> list[tuple[int, tuple]]:
            b = g.blocks[x]
            w = list(w_x)
            for pc in self._straight(b):
                tr.stmts(pc, w)
            out = tuple(w)
            if b.kind == "cond":
                pc = self._last(b)
                return [(b.succs[0], tr.refine(pc, out, True)), (b.succs[1], tr.refine(pc, out, False))]
            return [(s, out) for s in b.succs]

        w_in: dict[int, tuple] = {g.start: init}
        heap = [(0, g.start)]
        queued = {g.start}
        while heap:
            _, x = heapq.heappop(heap)
            queued.discard(x)
            for s, ws in edges(x, w_in[x]):
                old = w_in.get(s)
                new = ws if old is None else tuple(max(p, q) for p, q in zip(old, ws, strict=True))
                if old is not None and new != old and s in g.loop_headers:
                    new = tuple(q if q <= p else next(t for t in thresholds if t >= q)
                                for p, q in zip(old, new, strict=True))
                if new != old:
                    w_in[s] = new
                    if s not in queued:
                        queued.add(s)
                        heapq.heappush(heap, (g.rpo_index[s], s))
        if not g.loop_headers:
            return w_in
        for _ in range(3):    # narrowing: recompute from the predecessors, without widening
            incoming: dict[int, tuple] = {g.start: init}
            for x in g.rpo:
                for s, ws in edges(x, w_in[x]):
                    old = incoming.get(s)
                    incoming[s] = ws if old is None else tuple(max(p, q) for p, q in zip(old, ws, strict=True))
            if incoming == w_in:
                break
            w_in = incoming
        return w_in

    # -- faults ----------------------------------------------------------------------------------------
    def _fault_of(self, exc: BaseException) -> VmFault | None:
        """The VmFault for a Python error raised by a memory access in generated code, else None."""
        tb = exc.__traceback__
        last = None
        while tb is not None:
            last = tb
            tb = tb.tb_next
        if last is None:
            return None
        table = self.line_tables.get(last.tb_frame.f_code.co_filename)
        if table is None or last.tb_lineno not in table:
            return None
        pc = table[last.tb_lineno]
        regs = last.tb_frame.f_locals
        code, dst, src, off, imm = self.insns[pc]
        cls = code & 7
        size = SIZES.get(code & 0x18, 0)
        if cls == BPF_LDX or cls == BPF_STX and (code & 0xE0) == BPF_ATOMIC and imm == BPF_LOAD_ACQ:
            base, what = regs.get(f"r{src}", 0), "read"
        elif cls in (BPF_ST, BPF_STX):
            base = regs.get(f"r{dst}", 0)
            what = "read" if (code & 0xE0) == BPF_ATOMIC and imm != BPF_STORE_REL else "write"
        elif cls == BPF_JMP:
            return VmFault(pc, 0, 0, "call")
        else:
            return None
        return VmFault(pc, (base + off) & M64, size, what)


__all__ = ["JitEngine", "MAX_CALL_FRAMES"]
