"""Which loads read the program's ctx, and the rewrite of ctx fields that are pointers.

Why: a UAPI ctx such as ``struct xdp_md`` or ``struct __sk_buff`` declares ``data`` and
``data_end`` as __u32, yet a program's 32-bit load of them must yield a 64-bit packet pointer.
Linux rewrites those loads in the verifier (convert_ctx_access). We do the same at load time:
the ctx buffer a run maps is the UAPI struct followed by a shadow area holding the real
64-bit pointers, and every ``ldxw rX, [ctx + off]`` of a pointer field becomes
``ldxdw rX, [ctx + shadow_off]``. Both engines then run the rewritten instructions unchanged.

Finding the ctx loads needs to know which registers hold the ctx pointer: a small forward
must-analysis over the CFG (r1 at entry; copies through mov and 8-byte stack spills; any
other write kills). The same pass gives Linux's ``max_ctx_offset`` (the end of the furthest
ctx access), which BPF_PROG_TEST_RUN checks for raw tracepoint and syscall programs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..uapi.bpf_enums import ProgType
from ..uapi.insn import (
    BPF_ALU,
    BPF_ALU64,
    BPF_CALL,
    BPF_DW,
    BPF_EXIT,
    BPF_JA,
    BPF_JMP,
    BPF_JMP32,
    BPF_LDX,
    BPF_MEM,
    BPF_MOV,
    BPF_PSEUDO_CALL,
    BPF_ST,
    BPF_STX,
    BPF_X,
    LD_IMM64,
    SIZE_BYTES,
    Insn,
)

XDP_MD_SIZE = 24
SK_BUFF_SIZE = 192  # struct __sk_buff


@dataclass(frozen=True)
class CtxLayout:
    """A ctx struct: its UAPI size, its pointer fields (offset -> shadow offset) and hidden u64s."""

    size: int
    pointers: dict[int, int] = field(default_factory=dict)
    hidden: int = 0  # further u64 slots after the pointer shadows (e.g. skb header pointers)

    @property
    def buffer_size(self) -> int:
        return self.size + 8 * (len(self.pointers) + self.hidden)


XDP_LAYOUT = CtxLayout(XDP_MD_SIZE, {0: XDP_MD_SIZE, 4: XDP_MD_SIZE + 8, 8: XDP_MD_SIZE + 16})
# __sk_buff: data, data_end, data_meta shadows, then the network and mac header pointers that
# LD_ABS / LD_IND use (SKF_NET_OFF / SKF_LL_OFF bases).
SKB_LAYOUT = CtxLayout(SK_BUFF_SIZE, {76: SK_BUFF_SIZE, 80: SK_BUFF_SIZE + 8, 140: SK_BUFF_SIZE + 16}, hidden=2)
SKB_DATA_SHADOW = SK_BUFF_SIZE
SKB_NET_HDR = SK_BUFF_SIZE + 24
SKB_MAC_HDR = SK_BUFF_SIZE + 32
_SKB_TYPES = {ProgType.SOCKET_FILTER, ProgType.SCHED_CLS, ProgType.SCHED_ACT, ProgType.CGROUP_SKB,
              ProgType.LWT_IN, ProgType.LWT_OUT, ProgType.LWT_XMIT, ProgType.LWT_SEG6LOCAL, ProgType.SK_SKB}


def layout_for(prog_type: int) -> CtxLayout | None:
    """The ctx layout with pointer fields for a program type (None: ctx is plain memory)."""
    if prog_type == ProgType.XDP:
        return XDP_LAYOUT
    if prog_type in _SKB_TYPES:
        return SKB_LAYOUT
    return None


def _successors(insns: list[Insn], pc: int) -> list[int]:
    ins = insns[pc]
    cls = ins.code & 7
    if ins.code == LD_IMM64:
        return [pc + 2]
    if cls in (BPF_JMP, BPF_JMP32):
        op = ins.code & 0xF0
        if op == BPF_EXIT and cls == BPF_JMP:
            return []
        if op == BPF_CALL and cls == BPF_JMP:
            return [pc + 1]
        if op == BPF_JA:
            return [pc + 1 + (ins.imm if cls == BPF_JMP32 else ins.off)]
        return [pc + 1, pc + 1 + ins.off]
    return [pc + 1]


def _transfer(ins: Insn, state: frozenset) -> frozenset:
    """Registers (ints) and stack slots (('fp', off)) holding the ctx pointer after ``ins``."""
    cls = ins.code & 7
    s = set(state)
    if cls in (BPF_ALU, BPF_ALU64):
        if ins.code == (BPF_ALU64 | BPF_MOV | BPF_X) and ins.off == 0 and ins.src in state:
            s.add(ins.dst)
        else:
            s.discard(ins.dst)
    elif cls == BPF_LDX:
        s.discard(ins.dst)
        if ins.code == (BPF_LDX | BPF_MEM | BPF_DW) and ins.src == 10 and ("fp", ins.off) in state:
            s.add(ins.dst)
    elif cls in (BPF_STX, BPF_ST) and ins.dst == 10:
        if cls == BPF_STX and (ins.code & 0xE0) != BPF_MEM:  # atomics may write src too
            s.discard(ins.src)
        size = SIZE_BYTES.get(ins.code & 0x18, 8)
        for item in list(s):
            if isinstance(item, tuple) and ins.off - 7 <= item[1] < ins.off + size:
                s.discard(item)
        if ins.code == (BPF_STX | BPF_MEM | BPF_DW) and ins.src in state:
            s.add(("fp", ins.off))
    elif cls == BPF_STX and (ins.code & 0xE0) != BPF_MEM:
        s.discard(ins.src)
        s.discard(0)
    elif ins.code == LD_IMM64:
        s.discard(ins.dst)
    elif cls == BPF_JMP and (ins.code & 0xF0) == BPF_CALL:
        s.difference_update(range(6))
    return frozenset(s)


@dataclass
class CtxAccessInfo:
    loads: dict[int, tuple[int, int]]   # pc -> (offset, size) of ctx loads
    max_ctx_offset: int


def analyse(insns: list[Insn]) -> CtxAccessInfo:
    """Forward must-analysis of ctx-holding registers from r1 at the main entry."""
    n = len(insns)
    states: dict[int, frozenset] = {0: frozenset({1})}
    work = [0]
    while work:
        pc = work.pop()
        if not 0 <= pc < n:
            continue
        ins = insns[pc]
        out = _transfer(ins, states[pc])
        targets = _successors(insns, pc)
        if ins.code == BPF_JMP | BPF_CALL and ins.src == BPF_PSEUDO_CALL:
            callee = pc + ins.imm + 1
            targets = targets + [callee]
        for t in targets:
            if not 0 <= t < n:
                continue
            if t != pc + 1 and ins.code == BPF_JMP | BPF_CALL and ins.src == BPF_PSEUDO_CALL:
                incoming = frozenset(r for r in states[pc] if isinstance(r, int) and 1 <= r <= 5)
            else:
                incoming = out
            old = states.get(t)
            new = incoming if old is None else old & incoming
            if new != old:
                states[t] = new
                work.append(t)
    loads: dict[int, tuple[int, int]] = {}
    max_off = 0
    for pc, state in states.items():
        ins = insns[pc]
        cls = ins.code & 7
        size = SIZE_BYTES.get(ins.code & 0x18, 0)
        if cls == BPF_LDX and ins.src in state:
            loads[pc] = (ins.off, size)
            max_off = max(max_off, ins.off + size)
        elif cls in (BPF_ST, BPF_STX) and ins.dst in state:
            max_off = max(max_off, ins.off + size)
    return CtxAccessInfo(loads, max_off)


def rewrite_pointer_loads(insns: list[Insn], layout: CtxLayout | None, info: CtxAccessInfo) -> list[Insn]:
    """Turn 32-bit ctx loads of pointer fields into 64-bit loads of their shadow slots."""
    if layout is None or not layout.pointers:
        return list(insns)
    out = list(insns)
    for pc, (off, size) in info.loads.items():
        shadow = layout.pointers.get(off)
        if shadow is not None and size == 4 and (insns[pc].code & 0xE0) == BPF_MEM:
            out[pc] = insns[pc]._replace(code=BPF_LDX | BPF_MEM | BPF_DW, off=shadow)
    return out

