"""Control-flow analysis for the JIT: basic blocks, dominators, loops and merge points.

Why: Python has no goto, so the JIT rebuilds structured control flow (``while True`` loops and
``if``/``else``) from the jumps of each BPF function, following Ramsey's "Beyond Relooper"
(dominator tree + reverse postorder). This module only computes the facts that algorithm
needs; a function whose graph is irreducible is reported as such and gets the block-dispatch
fallback.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..uapi.insn import BPF_CALL, BPF_EXIT, BPF_JA, BPF_JMP, BPF_JMP32, LD_IMM64, Insn


@dataclass
class Block:
    """A maximal straight-line run of instructions [start, end) and how it ends.

    kind: "fall" (continues at succs[0]), "ja" (jumps to succs[0]), "cond" (last insn is a
    conditional jump: succs = [taken, not taken]), "exit", "bad" (falls off the function, or a
    trap block standing for a jump target outside the function or inside an lddw: the JIT
    emits a fault at ``bad_pc``).
    """

    start: int
    end: int
    kind: str = "fall"
    succs: list[int] = field(default_factory=list)
    preds: list[int] = field(default_factory=list)
    bad_pc: int = -1


def is_jump(ins: Insn) -> bool:
    if ins.dst > 10 or ins.src > 10:
        return False          # faults where it stands (see jit_emit.bad_register)
    cls = ins.code & 7
    if cls not in (BPF_JMP, BPF_JMP32):
        return False
    op = ins.code & 0xF0
    # 0xe0 / 0xf0 are no jumps: such an instruction faults where it stands, as in the interpreter
    return op not in (BPF_CALL, BPF_EXIT, 0xE0, 0xF0)


def is_exit(ins: Insn) -> bool:
    return (ins.code & 0xF7) == BPF_JMP | BPF_EXIT and ins.dst <= 10 and ins.src <= 10


def jump_target(pc: int, ins: Insn) -> int:
    """Where a jump goes when taken (JMP32|JA is gotol: the offset is in imm)."""
    if (ins.code & 7) == BPF_JMP32 and (ins.code & 0xF0) == BPF_JA:
        return pc + ins.imm + 1
    return pc + ins.off + 1


def insn_width(insns: list[Insn], pc: int) -> int:
    return 2 if insns[pc].code == LD_IMM64 else 1


@dataclass
class FuncGraph:
    """The blocks of one BPF function [start, end) with the orderings the emitter needs."""

    start: int
    end: int
    blocks: dict[int, Block]
    rpo: list[int]                 # reachable block starts in reverse postorder
    rpo_index: dict[int, int]
    idom: dict[int, int]
    loop_headers: set[int]
    merge_nodes: set[int]
    dom_children: dict[int, list[int]]
    reducible: bool


def build_graph(insns: list[Insn], start: int, end: int) -> FuncGraph:
    """Split [start, end) into blocks and analyse them."""
    slot_ok = set()
    pc = start
    while pc < end:
        slot_ok.add(pc)
        pc += insn_width(insns, pc)
    leaders = {start}
    pc = start
    while pc < end:
        ins = insns[pc]
        nxt = pc + insn_width(insns, pc)
        if is_jump(ins):
            t = jump_target(pc, ins)
            if t in slot_ok:
                leaders.add(t)
            if nxt < end:
                leaders.add(nxt)
        elif is_exit(ins) and nxt < end:
            leaders.add(nxt)
        pc = nxt
    order = sorted(leaders)
    blocks: dict[int, Block] = {}
    traps: dict[int, Block] = {}
    for i, s in enumerate(order):
        limit = order[i + 1] if i + 1 < len(order) else end
        pc = s
        last = s
        while pc < limit:
            last = pc
            pc += insn_width(insns, pc)
        b = Block(s, pc)
        ins = insns[last]
        if is_exit(ins):
            b.kind = "exit"
        elif is_jump(ins):
            t = jump_target(last, ins)
            if t not in slot_ok:
                _trap(traps, t)
            if (ins.code & 0xF0) == BPF_JA:
                b.kind, b.succs = "ja", [t]
            else:
                if pc >= end:
                    _trap(traps, pc)
                b.kind, b.succs = ("fall", [pc]) if t == pc else ("cond", [t, pc])
        else:
            if pc >= end:
                _trap(traps, pc)
            b.kind, b.succs = "fall", [pc]
        blocks[s] = b
    blocks.update(traps)
    # reverse postorder (iterative DFS)
    post: list[int] = []
    seen = {start}
    stack = [(start, iter(blocks[start].succs))]
    while stack:
        node, it = stack[-1]
        for s in it:
            if s not in seen:
                seen.add(s)
                stack.append((s, iter(blocks[s].succs)))
                break
        else:
            stack.pop()
            post.append(node)
    rpo = post[::-1]
    rpo_index = {b: i for i, b in enumerate(rpo)}
    for b in rpo:
        for s in blocks[b].succs:
            blocks[s].preds.append(b)
    idom = _dominators(blocks, rpo, rpo_index)
    loop_headers: set[int] = set()
    reducible = True
    forward_in: dict[int, int] = {b: 0 for b in rpo}
    for b in rpo:
        for s in set(blocks[b].succs):
            if rpo_index[s] <= rpo_index[b]:
                if _dominates(idom, s, b):
                    loop_headers.add(s)
                else:
                    reducible = False
            else:
                forward_in[s] += 1
    merge_nodes = {b for b, n in forward_in.items() if n >= 2}
    dom_children: dict[int, list[int]] = {b: [] for b in rpo}
    for b in rpo:
        if b != start:
            dom_children[idom[b]].append(b)
    return FuncGraph(start, end, blocks, rpo, rpo_index, idom, loop_headers, merge_nodes, dom_children, reducible)


def _trap(traps: dict[int, Block], pc: int) -> None:
    """A block standing for execution reaching ``pc`` outside the function or inside an lddw:
    the interpreter faults there, so the JIT emits a fault at ``pc``."""
    if pc not in traps:
        traps[pc] = Block(pc, pc, "bad", bad_pc=pc)


def _dominators(blocks: dict[int, Block], rpo: list[int], index: dict[int, int]) -> dict[int, int]:
    """Cooper, Harvey and Kennedy's iterative algorithm."""
    entry = rpo[0]
    idom = {entry: entry}
    changed = True
    while changed:
        changed = False
        for b in rpo[1:]:
            new = None
            for p in blocks[b].preds:
                if p not in idom:
                    continue
                if new is None:
                    new = p
                    continue
                x, y = p, new
                while x != y:
                    while index[x] > index[y]:
                        x = idom[x]
                    while index[y] > index[x]:
                        y = idom[y]
                new = x
            if idom.get(b) != new:
                idom[b] = new
                changed = True
    return idom


def _dominates(idom: dict[int, int], a: int, b: int) -> bool:
    while True:
        if a == b:
            return True
        parent = idom[b]
        if parent == b:
            return False
        b = parent


def function_ranges(entries: list[int], n: int) -> dict[int, int]:
    """Entry pc -> end pc of each BPF function (functions are contiguous, entries sorted)."""
    entries = sorted(set(e for e in entries if 0 <= e < n))
    return {e: (entries[i + 1] if i + 1 < len(entries) else n) for i, e in enumerate(entries)}
