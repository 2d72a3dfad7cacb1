"""The arithmetic of the eBPF ISA (RFC 9669 plus clang's v4 additions) as small pure functions.

Why a module of its own: the interpreter uses these directly and the JIT's tests compare
against them, so "what does sdiv32 of INT_MIN by -1 give" is answered in exactly one place.
All values are Python ints holding unsigned 64-bit register contents; results are u64.
"""

from __future__ import annotations

from ..uapi.insn import (
    BPF_ADD,
    BPF_AND,
    BPF_ARSH,
    BPF_DIV,
    BPF_JEQ,
    BPF_JGE,
    BPF_JGT,
    BPF_JLE,
    BPF_JLT,
    BPF_JNE,
    BPF_JSET,
    BPF_JSGE,
    BPF_JSGT,
    BPF_JSLE,
    BPF_JSLT,
    BPF_LSH,
    BPF_MOD,
    BPF_MOV,
    BPF_MUL,
    BPF_NEG,
    BPF_OR,
    BPF_RSH,
    BPF_SUB,
    BPF_XOR,
)

U64 = 0xFFFFFFFFFFFFFFFF
U32 = 0xFFFFFFFF


class BadOpcode(ValueError):
    """An operation the ISA does not define (only unverified code reaches one)."""


def s64(v: int) -> int:
    """u64 -> signed."""
    v &= U64
    return v - (1 << 64) if v & (1 << 63) else v


def s32(v: int) -> int:
    """low 32 bits -> signed."""
    v &= U32
    return v - (1 << 32) if v & (1 << 31) else v


def sext(v: int, bits: int) -> int:
    """Sign-extend the low ``bits`` of v to a u64."""
    mask = (1 << bits) - 1
    v &= mask
    if v >> (bits - 1):
        v -= 1 << bits
    return v & U64


def imm64(imm: int) -> int:
    """An instruction's 32-bit immediate as a 64-bit operand (sign-extended)."""
    return imm & U64


def _sdiv(a: int, b: int) -> int:
    """Signed division truncating toward zero (C semantics); b != 0."""
    q = abs(a) // abs(b)
    return -q if (a < 0) != (b < 0) else q


def _smod(a: int, b: int) -> int:
    """Signed remainder with the dividend's sign (C semantics); b != 0."""
    return a - _sdiv(a, b) * b


def alu64(op: int, dst: int, src: int, off: int = 0) -> int:
    """dst OP src on 64 bits. ``off`` selects signed div/mod (1) or MOVSX width (8/16/32)."""
    if op == BPF_ADD:
        return (dst + src) & U64
    if op == BPF_SUB:
        return (dst - src) & U64
    if op == BPF_MUL:
        return (dst * src) & U64
    if op == BPF_DIV:
        if src == 0:
            return 0
        if off == 1:
            return _sdiv(s64(dst), s64(src)) & U64
        return dst // src
    if op == BPF_MOD:
        if src == 0:
            return dst
        if off == 1:
            return _smod(s64(dst), s64(src)) & U64
        return dst % src
    if op == BPF_OR:
        return dst | src
    if op == BPF_AND:
        return dst & src
    if op == BPF_XOR:
        return dst ^ src
    if op == BPF_LSH:
        return (dst << (src & 63)) & U64
    if op == BPF_RSH:
        return dst >> (src & 63)
    if op == BPF_ARSH:
        return (s64(dst) >> (src & 63)) & U64
    if op == BPF_NEG:
        return (-dst) & U64
    if op == BPF_MOV:
        return sext(src, off) if off in (8, 16, 32) else src
    raise BadOpcode(f"bad ALU64 op 0x{op:02x}")


def alu32(op: int, dst: int, src: int, off: int = 0) -> int:
    """dst OP src on the low 32 bits; the result is zero-extended to 64 bits."""
    a, b = dst & U32, src & U32
    if op == BPF_ADD:
        return (a + b) & U32
    if op == BPF_SUB:
        return (a - b) & U32
    if op == BPF_MUL:
        return (a * b) & U32
    if op == BPF_DIV:
        if b == 0:
            return 0
        if off == 1:
            return _sdiv(s32(a), s32(b)) & U32
        return a // b
    if op == BPF_MOD:
        if b == 0:
            return a  # 32-bit mod by zero keeps the low half and zeroes the upper half
        if off == 1:
            return _smod(s32(a), s32(b)) & U32
        return a % b
    if op == BPF_OR:
        return a | b
    if op == BPF_AND:
        return a & b
    if op == BPF_XOR:
        return a ^ b
    if op == BPF_LSH:
        return (a << (b & 31)) & U32
    if op == BPF_RSH:
        return a >> (b & 31)
    if op == BPF_ARSH:
        return (s32(a) >> (b & 31)) & U32
    if op == BPF_NEG:
        return (-a) & U32
    if op == BPF_MOV:
        return sext(b, off) & U32 if off in (8, 16) else b
    raise BadOpcode(f"bad ALU op 0x{op:02x}")


def bswap(v: int, bits: int) -> int:
    """Reverse the bytes of the low ``bits`` of v (16, 32 or 64); upper bits become zero."""
    n = bits // 8
    return int.from_bytes((v & ((1 << bits) - 1)).to_bytes(n, "little"), "big")


def endian(v: int, bits: int, to_be: bool, alu64_class: bool) -> int:
    """BPF_END: to_le / to_be (ALU class, on a little-endian machine) or bswap (ALU64 class)."""
    if bits not in (16, 32, 64):  # only unverified code: the interpreter faults before calling this
        return v & U64
    if alu64_class or to_be:
        return bswap(v, bits)
    return v & ((1 << bits) - 1)


def jmp_cond(op: int, a: int, b: int, is32: bool) -> bool:
    """Whether a conditional jump is taken; a, b are u64 register values (or sign-extended imm)."""
    if is32:
        a &= U32
        b &= U32
        sa, sb = s32(a), s32(b)
    else:
        sa, sb = s64(a), s64(b)
    if op == BPF_JEQ:
        return a == b
    if op == BPF_JNE:
        return a != b
    if op == BPF_JGT:
        return a > b
    if op == BPF_JGE:
        return a >= b
    if op == BPF_JLT:
        return a < b
    if op == BPF_JLE:
        return a <= b
    if op == BPF_JSET:
        return bool(a & b)
    if op == BPF_JSGT:
        return sa > sb
    if op == BPF_JSGE:
        return sa >= sb
    if op == BPF_JSLT:
        return sa < sb
    if op == BPF_JSLE:
        return sa <= sb
    raise BadOpcode(f"bad jump op 0x{op:02x}")
