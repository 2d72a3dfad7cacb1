"""The checks Linux makes before simulating anything: subprograms, jump ranges, opcodes, the CFG.

Order and messages follow kernel/bpf/verifier.c: add_subprog_and_kfunc ("call to invalid
destination"), check_subprogs ("jump out of range from insn %d to %d", "last insn is not an
exit or jmp"), the opcode pass of resolve_pseudo_ldimm64 ("BPF_LDX uses reserved fields",
"invalid bpf_ld_imm64 insn", "unknown opcode %02x"), then check_cfg ("unreachable insn %d",
"jump into the middle of ldimm64 insn %d"). It also computes, per instruction, which
registers are live (read before written on some path), which the state pruning uses.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field

from ...uapi.insn import (
    BPF_ALU,
    BPF_ALU64,
    BPF_JMP,
    BPF_JMP32,
    BPF_LD,
    BPF_LDX,
    BPF_PSEUDO_CALL,
    BPF_PSEUDO_FUNC,
    BPF_PSEUDO_KFUNC_CALL,
    BPF_ST,
    BPF_STX,
    LD_IMM64,
    Insn,
)

# Helpers that call back into the program (bpf_loop, for_each_map_elem, timer_set_callback,
# find_vma, user_ringbuf_drain): Linux forces a checkpoint at their call sites.
CALLBACK_HELPERS = frozenset({181, 164, 170, 180, 209})


class StructureError(Exception):
    def __init__(self, code: int, msg: str) -> None:
        super().__init__(msg)
        self.errno = code
        self.msg = msg


def _valid_opcodes() -> frozenset[int]:
    ok = set()
    for cls in (BPF_ALU, BPF_ALU64):
        for op in (0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x90, 0xA0, 0xB0, 0xC0):
            ok |= {cls | op, cls | op | 0x08}
        ok.add(cls | 0x80)  # neg
    ok |= {0xD4, 0xDC, 0xD7}  # le, be, bswap
    for cls in (BPF_JMP, BPF_JMP32):
        for op in (0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0xA0, 0xB0, 0xC0, 0xD0):
            ok |= {cls | op, cls | op | 0x08}
        ok.add(cls)  # ja / gotol
    ok |= {0x85, 0x95}  # call, exit
    ok |= {0x20, 0x28, 0x30, 0x40, 0x48, 0x50, LD_IMM64}  # ld abs/ind, lddw
    ok |= {0x61, 0x69, 0x71, 0x79, 0x81, 0x89, 0x91}  # ldx mem / memsx
    ok |= {0x62, 0x6A, 0x72, 0x7A, 0x63, 0x6B, 0x73, 0x7B}  # st / stx mem
    ok |= {0xC3, 0xDB, 0xCB, 0xD3}  # atomics (w, dw, and the b/h load-acquire / store-release forms)
    return frozenset(ok)


VALID_OPCODES = _valid_opcodes()


def is_pseudo_call(ins: Insn) -> bool:
    return ins.code == 0x85 and ins.src == BPF_PSEUDO_CALL


def is_pseudo_func(ins: Insn) -> bool:
    return ins.code == LD_IMM64 and ins.src == BPF_PSEUDO_FUNC


def jump_target(i: int, ins: Insn) -> int:
    if ins.code == (BPF_JMP32 | 0x00):
        return i + ins.imm + 1
    return i + ins.off + 1


def is_jump(ins: Insn) -> bool:
    """A jump with a target (not call / exit)."""
    return ins.cls in (BPF_JMP, BPF_JMP32) and ins.code & 0xF0 not in (0x80, 0x90)


def is_cond_jump(ins: Insn) -> bool:
    return is_jump(ins) and ins.code & 0xF0 != 0x00


@dataclass
class Structure:
    subprog_starts: list[int]  # sorted; [0, ...]
    prune_points: set[int] = field(default_factory=set)
    loop_regs: int = 0  # registers compared by conditional jumps inside loops (bitmask)
    force_points: set[int] = field(default_factory=set)  # calls of callback helpers: always checkpointed
    relevant_in: list[int] = field(default_factory=list)  # registers whose exact value may matter, per insn
    live_in: list[int] = field(default_factory=list)  # bitmask of live registers before each insn

    def subprog_of(self, idx: int) -> int:
        k = 0
        for n, s in enumerate(self.subprog_starts):
            if s <= idx:
                k = n
        return k


def analyse(insns: list[Insn], ret_checked: bool = False) -> Structure:
    n = len(insns)
    starts = {0}
    for i, ins in enumerate(insns):
        if is_pseudo_call(ins) or is_pseudo_func(ins):
            t = i + ins.imm + 1
            if t < 0 or t >= n:
                raise StructureError(errno.EINVAL, "call to invalid destination\n")
            starts.add(t)
        elif ins.code == 0x85 and ins.src == BPF_PSEUDO_KFUNC_CALL:
            # kernel_sim has no kernel BTF, so no id names a kernel function
            raise StructureError(errno.EINVAL, f"kernel btf_id {ins.imm} is not a function\n")
    subs = sorted(starts)
    bounds_ = subs + [n]
    for k, start in enumerate(subs):
        end = bounds_[k + 1]
        for i in range(start, end):
            ins = insns[i]
            if is_jump(ins):
                t = jump_target(i, ins)
                if t < start or t >= end:
                    raise StructureError(errno.EINVAL, f"jump out of range from insn {i} to {t}\n")
        last = insns[end - 1]
        if last.code not in (0x95, 0x05, 0x06):
            raise StructureError(errno.EINVAL, "last insn is not an exit or jmp\n")
    i = 0
    while i < n:
        ins = insns[i]
        if ins.cls == BPF_LDX and ((ins.code & 0xE0) not in (0x60, 0x80) or ins.imm != 0):
            raise StructureError(errno.EINVAL, "BPF_LDX uses reserved fields\n")
        if ins.code == LD_IMM64:
            nxt = insns[i + 1] if i + 1 < n else None
            if nxt is None or nxt.code or nxt.dst or nxt.src or nxt.off:
                raise StructureError(errno.EINVAL, "invalid bpf_ld_imm64 insn\n")
            i += 2
            continue
        if ins.code not in VALID_OPCODES:
            raise StructureError(errno.EINVAL, f"unknown opcode {ins.code:02x}\n")
        i += 1
    st = Structure(subs)
    _check_cfg(insns, st)
    st.live_in = _liveness(insns)
    st.loop_regs = _loop_regs(insns)
    st.relevant_in = _relevance(insns, ret_checked)
    return st


def _relevance(insns: list[Insn], ret_checked: bool) -> list[int]:
    """Backward: registers whose value may reach something the verifier checks.

    Linux prunes with precision marks: a scalar that only flows into the return value (of a type
    without a return range), a helper's "anything" argument or nowhere need not match between
    states. This static version keeps everything else exact: jump operands, address and size
    operands, values stored to memory, arguments of bpf-to-bpf calls.
    """
    from ..helper_protos import ARG_ANYTHING, ARG_DONTCARE, PROTOS

    n = len(insns)
    rel = [0] * n
    first_sub = min((j + x.imm + 1 for j, x in enumerate(insns) if is_pseudo_call(x) or is_pseudo_func(x)),
                    default=n)
    changed = True
    while changed:
        changed = False
        for i in range(n - 1, -1, -1):
            ins = insns[i]
            out = 0
            for t in successors(insns, i):
                if 0 <= t < n:
                    out |= rel[t]
            cls, code = ins.cls, ins.code
            d, sbit = 1 << ins.dst, 1 << ins.src
            if cls in (BPF_ALU, BPF_ALU64):
                op = code & 0xF0
                if out & d:
                    new = (out & ~d) | (0 if op == 0xB0 else d) | (sbit if code & 0x08 else 0)
                else:
                    new = out & ~d
            elif cls == BPF_LDX:
                new = (out & ~d) | sbit
            elif cls == BPF_ST:
                new = out | d
            elif cls == BPF_STX:
                new = out | d | sbit | (1 if ins.imm == 0xF1 and code & 0xE0 == 0xC0 else 0)
            elif code == LD_IMM64:
                new = out & ~d
            elif cls == BPF_LD:
                new = (out & ~0b111111) | (1 << 6) | (sbit if code & 0xE0 == 0x40 else 0)
            elif code == 0x85:
                args = 0b111110
                if ins.src == 0:
                    proto = PROTOS.get(ins.imm)
                    if proto is not None:
                        args = 0
                        for k, kind in enumerate(proto.args):
                            if kind not in (ARG_ANYTHING, ARG_DONTCARE):
                                args |= 1 << (k + 1)
                new = (out & ~0b111111) | args
            elif code == 0x95:
                new = 1 if ret_checked or i >= first_sub else 0  # a subprogram's R0 goes back to its caller
            elif is_cond_jump(ins):
                new = out | d | (sbit if code & 0x08 else 0)
            else:
                new = out
            new |= 1 << 10
            if new != rel[i]:
                rel[i] = new
                changed = True
    return rel


def successors(insns: list[Insn], i: int) -> list[int]:
    """Intra-procedural successors (a bpf-to-bpf call falls through to the next insn)."""
    ins = insns[i]
    if ins.code == LD_IMM64:
        return [i + 2]
    if ins.code == 0x95:
        return []
    if is_jump(ins):
        t = jump_target(i, ins)
        return [t] if ins.code & 0xF0 == 0 else [i + 1, t]
    return [i + 1]


def _check_cfg(insns: list[Insn], st: Structure) -> None:
    n = len(insns)
    seen = bytearray(n)
    todo = [0]
    seen[0] = 1
    while todo:
        i = todo.pop()
        ins = insns[i]
        succ = successors(insns, i)
        if is_pseudo_call(ins) or is_pseudo_func(ins):
            succ = succ + [i + ins.imm + 1]
        if is_jump(ins):
            st.prune_points.add(jump_target(i, ins))
            if is_cond_jump(ins):
                st.prune_points.add(i)
        if ins.code == 0x85:  # after any call (visit_func_call_insn), and a bpf-to-bpf call itself
            st.prune_points.add(i + 1)
            if ins.src == 0 and ins.imm in CALLBACK_HELPERS:
                st.prune_points.add(i)
                st.force_points.add(i)
            if is_pseudo_call(ins):
                st.prune_points.add(i)
        for t in succ:
            if 0 <= t < n and not seen[t]:
                seen[t] = 1
                todo.append(t)
    i = 0
    while i < n:
        if not seen[i]:
            raise StructureError(errno.EINVAL, f"unreachable insn {i}\n")
        if insns[i].code == LD_IMM64:
            if seen[i + 1]:
                raise StructureError(errno.EINVAL, f"jump into the middle of ldimm64 insn {i}\n")
            i += 2
            continue
        i += 1


def _uses_defs(ins: Insn) -> tuple[int, int]:
    """(registers read, registers written) as bitmasks, for liveness."""
    cls, code = ins.cls, ins.code
    d, s = 1 << ins.dst, 1 << ins.src
    if cls in (BPF_ALU, BPF_ALU64):
        op = code & 0xF0
        use = 0 if op == 0xB0 else d
        if code & 0x08 and op not in (0x80, 0xD0):
            use |= s
        return use, d
    if cls == BPF_LDX:
        return s, d
    if cls == BPF_ST:
        return d, 0
    if cls == BPF_STX:
        use = d | s
        if code & 0xE0 == 0xC0:
            if ins.imm == 0xF1:
                return use | 1, 1
            if ins.imm & 1:
                return use, s
        return use, 0
    if cls == BPF_LD:
        if code == LD_IMM64:
            return 0, d
        return (1 << 6) | (s if code & 0xE0 == 0x40 else 0), 0b111111
    if cls in (BPF_JMP, BPF_JMP32):
        op = code & 0xF0
        if op == 0x80:
            if ins.src == 0:  # a helper reads only its own arguments
                from ..helper_protos import ARG_DONTCARE, PROTOS

                proto = PROTOS.get(ins.imm)
                if proto is not None:
                    n = len([a for a in proto.args if a != ARG_DONTCARE])
                    return ((1 << (n + 1)) - 2), 0b111111
            return 0b111110, 0b111111
        if op == 0x90:
            return 1, 0
        if op == 0:
            return 0, 0
        return d | (s if code & 0x08 else 0), 0
    return 0, 0


def _liveness(insns: list[Insn]) -> list[int]:
    n = len(insns)
    ud = [_uses_defs(x) for x in insns]
    succ = [successors(insns, i) if i == 0 or insns[i - 1].code != LD_IMM64 or True else [] for i in range(n)]
    live = [0] * n
    changed = True
    while changed:
        changed = False
        for i in range(n - 1, -1, -1):
            out = 0
            for t in succ[i]:
                if 0 <= t < n:
                    out |= live[t]
            use, defs = ud[i]
            new = use | (out & ~defs) | (1 << 10)
            if new != live[i]:
                live[i] = new
                changed = True
    return live


def _loop_regs(insns: list[Insn]) -> int:
    """Operands of conditional jumps inside a back edge's span: what decides whether a loop ends."""
    in_loop = bytearray(len(insns))
    for i, ins in enumerate(insns):
        if is_jump(ins):
            t = jump_target(i, ins)
            if t <= i:
                in_loop[t:i + 1] = b"\1" * (i + 1 - t)
    mask = 0
    for i, ins in enumerate(insns):
        if in_loop[i] and is_cond_jump(ins):
            mask |= 1 << ins.dst
            if ins.code & 0x08:
                mask |= 1 << ins.src
    return mask
