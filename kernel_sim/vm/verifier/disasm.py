"""One instruction as the verifier log prints it ("3: (bf) r1 = r10"), after kernel/bpf/disasm.c."""

from __future__ import annotations

from ...uapi.insn import (
    BPF_ALU,
    BPF_ALU64,
    BPF_ATOMIC,
    BPF_CMPXCHG,
    BPF_DW,
    BPF_END,
    BPF_FETCH,
    BPF_IMM,
    BPF_JMP,
    BPF_JMP32,
    BPF_LD,
    BPF_LDX,
    BPF_MEM,
    BPF_MEMSX,
    BPF_PSEUDO_CALL,
    BPF_PSEUDO_KFUNC_CALL,
    BPF_PSEUDO_MAP_FD,
    BPF_PSEUDO_MAP_IDX,
    BPF_PSEUDO_MAP_IDX_VALUE,
    BPF_PSEUDO_MAP_VALUE,
    BPF_ST,
    BPF_STX,
    BPF_X,
    BPF_XCHG,
    Insn,
)
from ..helper_protos import helper_name

ALU_OPS = {0x00: "+=", 0x10: "-=", 0x20: "*=", 0x30: "/=", 0x40: "|=", 0x50: "&=", 0x60: "<<=", 0x70: ">>=",
           0x80: "neg", 0x90: "%=", 0xA0: "^=", 0xB0: "=", 0xC0: "s>>=", 0xD0: "endian"}
JMP_OPS = {0x10: "==", 0x20: ">", 0x30: ">=", 0x40: "&", 0x50: "!=", 0x60: "s>", 0x70: "s>=", 0xA0: "<",
           0xB0: "<=", 0xC0: "s<", 0xD0: "s<="}
SIZES = {0x00: "u32", 0x08: "u16", 0x10: "u8", 0x18: "u64"}
SBITS = {0x00: 32, 0x08: 16, 0x10: 8, 0x18: 64}
ATOMIC_OPS = {0x00: "+=", 0x40: "|=", 0x50: "&=", 0xA0: "^="}
ATOMIC_NAMES = {0x00: "add", 0x40: "or", 0x50: "and", 0xA0: "xor"}


def fmt_insn(ins: Insn, nxt: Insn | None = None, map_ref=None, map_addr=None) -> str:
    """The text after "N: " for one instruction (no newline)."""
    code, cls = ins.code, ins.code & 7
    head = f"({code:02x})"
    if cls in (BPF_ALU, BPF_ALU64):
        r = "r" if cls == BPF_ALU64 else "w"
        op = code & 0xF0
        if op == BPF_END:
            if cls == BPF_ALU64:
                return f"{head} r{ins.dst} = bswap{ins.imm} r{ins.dst}"
            return f"{head} r{ins.dst} = {'be' if code & BPF_X else 'le'}{ins.imm} r{ins.dst}"
        if op == 0x80:
            return f"{head} {r}{ins.dst} = -{r}{ins.dst}"
        sym = ALU_OPS.get(op, "?")
        if ins.off == 1 and op in (0x30, 0x90):
            sym = "s" + sym
        if code & BPF_X:
            if op == 0xB0 and ins.off in (8, 16, 32):
                return f"{head} {r}{ins.dst} = (s{ins.off}){r}{ins.src}"
            return f"{head} {r}{ins.dst} {sym} {r}{ins.src}"
        return f"{head} {r}{ins.dst} {sym} {ins.imm}"
    if cls == BPF_STX:
        size = SIZES[code & 0x18]
        mode = code & 0xE0
        if mode == BPF_MEM:
            return f"{head} *({size} *)(r{ins.dst} {ins.off:+d}) = r{ins.src}"
        if mode == BPF_ATOMIC:
            w = "64" if code & 0x18 == BPF_DW else ""
            if ins.imm in ATOMIC_OPS:
                return f"{head} lock *({size} *)(r{ins.dst} {ins.off:+d}) {ATOMIC_OPS[ins.imm]} r{ins.src}"
            if ins.imm & BPF_FETCH and (ins.imm & ~BPF_FETCH) in ATOMIC_NAMES:
                name = ATOMIC_NAMES[ins.imm & ~BPF_FETCH]
                return f"{head} r{ins.src} = atomic{w}_fetch_{name}(({size} *)(r{ins.dst} {ins.off:+d}), r{ins.src})"
            if ins.imm == BPF_XCHG:
                return f"{head} r{ins.src} = atomic{w}_xchg(({size} *)(r{ins.dst} {ins.off:+d}), r{ins.src})"
            if ins.imm == BPF_CMPXCHG:
                return f"{head} r0 = atomic{w}_cmpxchg(({size} *)(r{ins.dst} {ins.off:+d}), r0, r{ins.src})"
        return f"{head} BUG_stx_{code:02x}"
    if cls == BPF_ST:
        return f"{head} *({SIZES[code & 0x18]} *)(r{ins.dst} {ins.off:+d}) = {ins.imm}"
    if cls == BPF_LDX:
        if code & 0xE0 == BPF_MEMSX:
            return f"{head} r{ins.dst} = *(s{SBITS[code & 0x18]} *)(r{ins.src} {ins.off:+d})"
        return f"{head} r{ins.dst} = *({SIZES[code & 0x18]} *)(r{ins.src} {ins.off:+d})"
    if cls == BPF_LD:
        mode = code & 0xE0
        if mode == 0x20:
            return f"{head} r0 = *({SIZES[code & 0x18]} *)skb[{ins.imm}]"
        if mode == 0x40:
            return f"{head} r0 = *({SIZES[code & 0x18]} *)skb[r{ins.src} + {ins.imm}]"
        if mode == BPF_IMM and code & 0x18 == BPF_DW:
            hi = (nxt.imm & 0xFFFFFFFF) if nxt is not None else 0
            if map_ref is not None and map_addr is not None:
                addr = map_addr(map_ref.map, map_ref.value_off)
                if addr is not None:
                    return f"{head} r{ins.dst} = 0x{addr:x}"
            if map_ref is not None and ins.src in (BPF_PSEUDO_MAP_FD, BPF_PSEUDO_MAP_IDX):
                return f"{head} r{ins.dst} = map[id:{getattr(map_ref.map, 'id', 0)}]"
            if map_ref is not None and ins.src in (BPF_PSEUDO_MAP_VALUE, BPF_PSEUDO_MAP_IDX_VALUE):
                return f"{head} r{ins.dst} = map[id:{getattr(map_ref.map, 'id', 0)}][0]+{map_ref.value_off}"
            return f"{head} r{ins.dst} = 0x{(hi << 32) | (ins.imm & 0xFFFFFFFF):x}"
        return f"{head} BUG_ld_{code:02x}"
    if cls in (BPF_JMP, BPF_JMP32):
        op = code & 0xF0
        r = "r" if cls == BPF_JMP else "w"
        if op == 0x80:
            if ins.src == BPF_PSEUDO_CALL:
                return f"{head} call pc{ins.imm:+d}"
            if ins.src == BPF_PSEUDO_KFUNC_CALL:
                return f"{head} call kernel-function"
            return f"{head} call {helper_name(ins.imm)}#{ins.imm}"
        if op == 0x90:
            return f"{head} exit"
        if op == 0x00:
            if cls == BPF_JMP32:
                return f"{head} gotol pc{ins.imm:+d}"
            return f"{head} goto pc{ins.off:+d}"
        sym = JMP_OPS.get(op, "?")
        if code & BPF_X:
            return f"{head} if {r}{ins.dst} {sym} {r}{ins.src} goto pc{ins.off:+d}"
        return f"{head} if {r}{ins.dst} {sym} 0x{ins.imm & 0xFFFFFFFF:x} goto pc{ins.off:+d}"
    return f"{head} BUG_{code:02x}"
