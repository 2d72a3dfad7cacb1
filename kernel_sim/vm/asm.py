"""Instruction builders in the style of Linux's filter.h macros (BPF_MOV64_IMM, BPF_LDX_MEM, ...).

Why: tests of the VM, the verifier and the JIT, and the benchmarks, write programs by hand;
one small vocabulary keeps them readable. Each function returns one Insn (lddw returns two).
"""

from __future__ import annotations

from ..uapi.insn import (
    BPF_ALU,
    BPF_ALU64,
    BPF_ATOMIC,
    BPF_CALL,
    BPF_EXIT,
    BPF_JA,
    BPF_JMP,
    BPF_JMP32,
    BPF_K,
    BPF_LDX,
    BPF_MEM,
    BPF_MEMSX,
    BPF_MOV,
    BPF_PSEUDO_CALL,
    BPF_PSEUDO_FUNC,
    BPF_ST,
    BPF_STX,
    BPF_X,
    Insn,
    insn,
    ld_imm64,
)

W, H, B, DW = 0x00, 0x08, 0x10, 0x18


def alu64(op: int, dst: int, src: int | None = None, imm: int = 0, off: int = 0) -> Insn:
    """dst = dst OP src (register when src is given, else imm), 64-bit."""
    return insn(BPF_ALU64 | op | (BPF_K if src is None else BPF_X), dst, src or 0, off, imm)


def alu32(op: int, dst: int, src: int | None = None, imm: int = 0, off: int = 0) -> Insn:
    return insn(BPF_ALU | op | (BPF_K if src is None else BPF_X), dst, src or 0, off, imm)


def mov64(dst: int, src: int | None = None, imm: int = 0) -> Insn:
    return alu64(BPF_MOV, dst, src, imm)


def mov32(dst: int, src: int | None = None, imm: int = 0) -> Insn:
    return alu32(BPF_MOV, dst, src, imm)


def lddw(dst: int, value: int, src: int = 0) -> list[Insn]:
    return ld_imm64(dst, value, src)


def lddw_func(dst: int, rel: int) -> list[Insn]:
    """dst = address of the subprogram at (this lddw's index) + rel + 1, as Linux encodes it."""
    first, second = ld_imm64(dst, 0, BPF_PSEUDO_FUNC)
    return [first._replace(imm=rel), second]


def ldx(size: int, dst: int, src: int, off: int = 0, signed: bool = False) -> Insn:
    return insn(BPF_LDX | (BPF_MEMSX if signed else BPF_MEM) | size, dst, src, off)


def stx(size: int, dst: int, src: int, off: int = 0) -> Insn:
    return insn(BPF_STX | BPF_MEM | size, dst, src, off)


def st(size: int, dst: int, off: int, imm: int) -> Insn:
    return insn(BPF_ST | BPF_MEM | size, dst, 0, off, imm)


def atomic(size: int, op: int, dst: int, src: int, off: int = 0) -> Insn:
    """*(dst + off) OP= src (op: BPF_ADD/OR/AND/XOR [| BPF_FETCH], BPF_XCHG, BPF_CMPXCHG)."""
    return insn(BPF_STX | BPF_ATOMIC | size, dst, src, off, op)


def jmp(op: int, dst: int, src: int | None = None, imm: int = 0, off: int = 0) -> Insn:
    return insn(BPF_JMP | op | (BPF_K if src is None else BPF_X), dst, src or 0, off, imm)


def jmp32(op: int, dst: int, src: int | None = None, imm: int = 0, off: int = 0) -> Insn:
    return insn(BPF_JMP32 | op | (BPF_K if src is None else BPF_X), dst, src or 0, off, imm)


def ja(off: int) -> Insn:
    return insn(BPF_JMP | BPF_JA, 0, 0, off)


def gotol(imm: int) -> Insn:
    return insn(BPF_JMP32 | BPF_JA, 0, 0, 0, imm)


def call(helper_id: int) -> Insn:
    return insn(BPF_JMP | BPF_CALL, 0, 0, 0, int(helper_id))


def call_local(rel: int) -> Insn:
    """bpf-to-bpf call to the instruction rel + 1 after this one."""
    return insn(BPF_JMP | BPF_CALL, 0, BPF_PSEUDO_CALL, 0, rel)


def exit_() -> Insn:
    return insn(BPF_JMP | BPF_EXIT)


def flatten(*parts) -> list[Insn]:
    """Join single instructions and lists (lddw) into one program."""
    out: list[Insn] = []
    for p in parts:
        if isinstance(p, Insn):
            out.append(p)
        else:
            out.extend(p)
    return out
