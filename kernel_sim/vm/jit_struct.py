"""Structured control flow for the JIT: a BPF function's blocks -> nested Python loops and ifs.

Why: a block-dispatch loop (``while True: if pc == ...``) costs a chain of comparisons per
jump; Python is fastest on plain ``while True`` / ``if`` / ``continue`` / ``break``. The layout
is Ramsey's "Beyond Relooper" (2022): walk the dominator tree; a loop header becomes
``while True:``; a block reached from several places (a merge node) is emitted once, right
after the code that branches to it. Python lacks labelled jumps, so:
- a branch to a merge node that is in tail position needs no code (it falls through);
- a small merge block without dominated code (a loop latch, ``r0 = 0; exit``) is copied to
  the branches that reach it (bounded by a budget of twice the function's size);
- otherwise the block gets a one-shot ``while True: ... break`` wrapper (decided by a retry:
  the function is generated again with that block wrapped);
- a branch that must leave several Python loops at once sets ``_j`` and breaks; the code
  after each loop dispatches on ``_j`` (only loops with more than one way out get the flag).
Irreducible functions (rare: clang does not produce them) use a block-dispatch state machine.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .jit_cfg import FuncGraph


@dataclass(eq=False)
class PyLoop:
    """A Python ``while True`` in the output: a BPF loop (label ('cont', header)) or a wrapped block."""

    label: tuple
    exits: dict = field(default_factory=dict)   # target label -> flag code


@dataclass(eq=False)
class Frame:
    label: tuple          # ('cont', header) for loops, ('blk', node) for merge blocks
    loop: PyLoop | None   # the Python loop implementing it, if any


class ExitLine:
    """A line leaving ``loop`` towards ``target``: ``break`` or ``_j = n; break``, decided at the end."""

    def __init__(self, loop: PyLoop, target: tuple) -> None:
        self.loop = loop
        self.target = target

    def text(self) -> str:
        if len(self.loop.exits) > 1:
            return f"_j = {self.loop.exits[self.target]}; break"
        return "break"


class OutOfScope(Exception):  # noqa: N818  (control flow)
    """A copied tail branches to a label its new place cannot reach: do not copy it there."""


class Retry(Exception):  # noqa: N818  (control flow)
    """A merge block needs a Python wrapper: start over with it wrapped."""


Line = tuple  # (indent, text or ExitLine, pc)
DEEP = 24     # indentation beyond which tail branches to merge blocks become explicit breaks
MAX_INLINE = 4  # instructions of a shared tail block copied to each branch to it


class StructuredEmitter:
    """Emits one function. ``block_code(b)`` -> list of (text, pc) lines for the block's
    straight-line part; ``cond(b)`` -> (condition text, pc) of its final conditional jump;
    ``tail_code(b)`` -> lines for exit / bad endings."""

    def __init__(self, g: FuncGraph, block_code, cond, end_code, loop_head, loop_else,
                 tail_copy: bool = True) -> None:
        self.g = g
        self.block_code = block_code
        self.cond = cond
        self.end_code = end_code
        self.loop_head = loop_head      # header pc -> the loop statement text
        self.loop_else = loop_else      # header pc -> lines for the loop's else (or [])
        self.wrapped: set[int] = set()
        self.codes = 0
        size = sum(b.end - b.start for b in g.blocks.values())
        self.inline_limit = max(64, 2 * size) if tail_copy else 0
        self.inline_budget = self.inline_limit

    def emit(self, indent: int) -> list[Line]:
        while True:
            self.codes = 0
            self.inline_budget = self.inline_limit
            try:
                lines = self.do_tree(self.g.start, [], frozenset(), indent)
            except Retry:
                continue
            return [(i, t.text() if isinstance(t, ExitLine) else t, pc) for i, t, pc in lines]

    # -- Ramsey's doTree / nodeWithin / doBranch --------------------------------------------------
    def do_tree(self, x: int, ctx: list, tail: frozenset, ind: int) -> list[Line]:
        g = self.g
        merges = sorted((c for c in g.dom_children[x] if c in g.merge_nodes), key=lambda c: -g.rpo_index[c])
        if x in g.loop_headers:
            loop = PyLoop(("cont", x))
            frame = Frame(("cont", x), loop)
            body = self.node_within(x, merges, ctx + [frame], frozenset([("cont", x)]), ind + 1)
            out = [(ind, self.loop_head(x), x)] + (body or [(ind + 1, "pass", x)])
            out += [(ind + i, t, pc) for i, t, pc in self.loop_else(x)]
            return out + self.after_loop(loop, ctx, tail, ind)
        return self.node_within(x, merges, ctx, tail, ind)

    def node_within(self, x: int, ys: list[int], ctx: list, tail: frozenset, ind: int) -> list[Line]:
        if not ys:
            return self.block_body(x, ctx, tail, ind)
        y0, rest = ys[0], ys[1:]
        label = ("blk", y0)
        if y0 in self.wrapped:
            loop = PyLoop(label)
            inner = self.node_within(x, rest, ctx + [Frame(label, loop)], frozenset(), ind + 1)
            out = [(ind, "while True:", x)] + inner
            out += self.after_loop(loop, ctx, frozenset([label]), ind)
        else:
            out = self.node_within(x, rest, ctx + [Frame(label, None)], frozenset([label]), ind)
        return out + self.do_tree(y0, ctx, tail, ind)

    def block_body(self, x: int, ctx: list, tail: frozenset, ind: int) -> list[Line]:
        b = self.g.blocks[x]
        out = [(ind, t, pc) for t, pc in self.block_code(x)]
        if b.kind in ("fall", "ja"):
            return out + self.do_branch(x, b.succs[0], ctx, tail, ind)
        if b.kind == "cond":
            cond, pc = self.cond(x)
            yes = self.do_branch(x, b.succs[0], ctx, tail, ind + 1)
            no = self.do_branch(x, b.succs[1], ctx, tail, ind + 1)
            if not yes and not no:
                return out
            if not yes:
                return out + [(ind, f"if {negate(cond)}:", pc)] + no
            # guard clauses: an arm that always jumps away stays in the if, the other follows
            # unindented (chains of checks stay flat instead of nesting one level per check)
            if no and _jumps_away(yes, ind + 1) and (len(yes) <= len(no) or not _jumps_away(no, ind + 1)):
                return out + [(ind, f"if {cond}:", pc)] + yes + _dedent(no)
            if no and _jumps_away(no, ind + 1):
                return out + [(ind, f"if {negate(cond)}:", pc)] + no + _dedent(yes)
            out += [(ind, f"if {cond}:", pc)] + yes
            if no:
                out += [(ind, "else:", pc)] + no
            return out
        return out + [(ind, t, pc) for t, pc in self.end_code(x)]

    def do_branch(self, x: int, t: int, ctx: list, tail: frozenset, ind: int) -> list[Line]:
        g = self.g
        if g.rpo_index[t] <= g.rpo_index[x]:
            return self.br(("cont", t), ctx, tail, ind, x)
        if t in g.merge_nodes:
            if ("blk", t) not in tail and self._inlinable(t):
                # tail duplication: a small shared tail (a loop latch, "r0 = 0; exit") is
                # copied to the branch instead of wrapping its block and breaking out to it
                budget = self.inline_budget
                self.inline_budget -= self.g.blocks[t].end - self.g.blocks[t].start
                try:
                    return self.block_body(t, ctx, tail, ind)
                except OutOfScope:
                    self.inline_budget = budget
            return self.br(("blk", t), ctx, tail, ind, x)
        return self.do_tree(t, ctx, tail, ind)

    def _inlinable(self, t: int) -> bool:
        g = self.g
        b = g.blocks[t]
        return (self.inline_budget > 0 and t not in g.loop_headers and not g.dom_children[t]
                and b.end - b.start <= MAX_INLINE)

    def br(self, label: tuple, ctx: list, tail: frozenset, ind: int, pc: int) -> list[Line]:
        if label in tail:
            if label[0] == "cont":
                return [(ind, "continue", pc)]   # as cheap as falling through; flattens ifs
            if ind <= DEEP or label[1] in self.wrapped:
                return []
            # deep in nested ifs: wrap the merge block so that branches to it become breaks,
            # which the guard-clause layout keeps flat
            self.wrapped.add(label[1])
            raise Retry
        for fi in range(len(ctx) - 1, -1, -1):
            if ctx[fi].label == label:
                break
        else:
            raise OutOfScope(label)
        target = ctx[fi]
        inner = [f.loop for f in ctx[fi + 1:] if f.loop is not None]
        if not inner:
            if label[0] == "cont":
                return [(ind, "continue", pc)]
            if target.loop is None:
                self.wrapped.add(label[1])
                raise Retry
            return [(ind, self._exit(target.loop, label), pc)]
        return [(ind, self._exit(inner[-1], label), pc)]

    def _exit(self, loop: PyLoop, label: tuple) -> ExitLine:
        if label not in loop.exits:
            self.codes += 1
            loop.exits[label] = self.codes
        return ExitLine(loop, label)

    def after_loop(self, loop: PyLoop, ctx: list, tail: frozenset, ind: int) -> list[Line]:
        """Code right after a Python loop: continue to wherever its breaks were going."""
        exits = list(loop.exits.items())
        if not exits:
            return []
        if len(exits) == 1:
            return self.br(exits[0][0], ctx, tail, ind, -1)
        out: list[Line] = []
        for i, (label, code) in enumerate(exits):
            body = self.br(label, ctx, tail, ind + 1, -1) or [(ind + 1, "pass", -1)]
            head = "if" if i == 0 else "elif"
            out += [(ind, f"{head} _j == {code}:", -1)] + body
        return out


def _jumps_away(lines: list[Line], ind: int) -> bool:
    """Whether the statement list at indent ``ind`` ends in break/continue/return/raise."""
    if not lines or lines[-1][0] != ind:
        return False
    text = lines[-1][1]
    return isinstance(text, ExitLine) or text.startswith(("break", "continue", "return", "raise"))


def _dedent(lines: list[Line]) -> list[Line]:
    return [(i - 1, t, pc) for i, t, pc in lines]


_COMPARE = re.compile(r" (==|!=|<=|>=|<|>) ")
_INVERSE = {"==": "!=", "!=": "==", "<": ">=", ">=": "<", ">": "<=", "<=": ">"}


def negate(cond: str) -> str:
    """``not cond``, written as the inverse comparison when cond is a single comparison."""
    found = _COMPARE.findall(cond)
    if len(found) == 1:
        left, op, right = _COMPARE.split(cond)
        return f"{left} {_INVERSE[op]} {right}"
    return f"not ({cond})"


def dispatch_function(g: FuncGraph, block_code, cond, end_code, indent: int, loop_head: str) -> list[Line]:
    """The fallback (irreducible graphs, or structured code Python cannot compile): a loop over
    a block-number variable with a binary search over block starts (depth log2(blocks))."""
    blocks = sorted(g.rpo)
    out: list[Line] = [(indent, f"_pc = {g.start}", g.start), (indent, loop_head, g.start)]

    def body(x: int, ind: int) -> list[Line]:
        b = g.blocks[x]
        lines = [(ind, t, pc) for t, pc in block_code(x)]
        if b.kind in ("fall", "ja"):
            lines.append((ind, f"_pc = {b.succs[0]}", x))
        elif b.kind == "cond":
            c, pc = cond(x)
            lines.append((ind, f"_pc = {b.succs[0]} if {c} else {b.succs[1]}", pc))
        else:
            lines += [(ind, t, pc) for t, pc in end_code(x)]
        return lines

    def tree(lo: int, hi: int, ind: int) -> list[Line]:
        if hi - lo == 1:
            return body(blocks[lo], ind)
        mid = (lo + hi) // 2
        return ([(ind, f"if _pc < {blocks[mid]}:", -1)] + tree(lo, mid, ind + 1)
                + [(ind, "else:", -1)] + tree(mid, hi, ind + 1))

    return out + tree(0, len(blocks), indent + 1)
