"""The eBPF instruction encoding (linux/bpf_common.h, linux/bpf.h, RFC 9669).

Userland (assemblers, the loader's relocator, disassemblers) and the kernel (verifier, VM)
share these numbers, so they live in uapi. An instruction is 8 bytes, little-endian:
opcode:8, dst_reg:4 (low nibble), src_reg:4 (high nibble), off:s16, imm:s32.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

# Instruction classes (low 3 bits of the opcode).
BPF_LD = 0x00
BPF_LDX = 0x01
BPF_ST = 0x02
BPF_STX = 0x03
BPF_ALU = 0x04
BPF_JMP = 0x05
BPF_JMP32 = 0x06
BPF_ALU64 = 0x07

# Size field (load/store).
BPF_W = 0x00
BPF_H = 0x08
BPF_B = 0x10
BPF_DW = 0x18
SIZE_BYTES = {BPF_W: 4, BPF_H: 2, BPF_B: 1, BPF_DW: 8}

# Mode field (load/store).
BPF_IMM = 0x00
BPF_ABS = 0x20
BPF_IND = 0x40
BPF_MEM = 0x60
BPF_MEMSX = 0x80
BPF_ATOMIC = 0xC0

# Source bit (ALU/JMP).
BPF_K = 0x00
BPF_X = 0x08

# ALU operations (high 4 bits).
BPF_ADD = 0x00
BPF_SUB = 0x10
BPF_MUL = 0x20
BPF_DIV = 0x30
BPF_OR = 0x40
BPF_AND = 0x50
BPF_LSH = 0x60
BPF_RSH = 0x70
BPF_NEG = 0x80
BPF_MOD = 0x90
BPF_XOR = 0xA0
BPF_MOV = 0xB0
BPF_ARSH = 0xC0
BPF_END = 0xD0

# Byte-swap direction (BPF_END; BPF_ALU64 | BPF_END is the unconditional bswap).
BPF_TO_LE = 0x00
BPF_TO_BE = 0x08

# Jump operations (high 4 bits).
BPF_JA = 0x00
BPF_JEQ = 0x10
BPF_JGT = 0x20
BPF_JGE = 0x30
BPF_JSET = 0x40
BPF_JNE = 0x50
BPF_JSGT = 0x60
BPF_JSGE = 0x70
BPF_CALL = 0x80
BPF_EXIT = 0x90
BPF_JLT = 0xA0
BPF_JLE = 0xB0
BPF_JSLT = 0xC0
BPF_JSLE = 0xD0

# Atomic operations (imm of BPF_STX | BPF_ATOMIC).
BPF_FETCH = 0x01
BPF_XCHG = 0xE0 | BPF_FETCH
BPF_CMPXCHG = 0xF0 | BPF_FETCH

# src_reg of BPF_LD | BPF_IMM | BPF_DW (lddw subtypes).
BPF_PSEUDO_MAP_FD = 1
BPF_PSEUDO_MAP_VALUE = 2
BPF_PSEUDO_BTF_ID = 3
BPF_PSEUDO_FUNC = 4
BPF_PSEUDO_MAP_IDX = 5
BPF_PSEUDO_MAP_IDX_VALUE = 6

# src_reg of BPF_JMP | BPF_CALL.
BPF_PSEUDO_CALL = 1
BPF_PSEUDO_KFUNC_CALL = 2

# Registers.
BPF_REG_0, BPF_REG_1, BPF_REG_2, BPF_REG_3, BPF_REG_4, BPF_REG_5 = range(6)
BPF_REG_6, BPF_REG_7, BPF_REG_8, BPF_REG_9, BPF_REG_10 = range(6, 11)
MAX_BPF_REG = 11
MAX_BPF_STACK = 512

INSN_SIZE = 8
LD_IMM64 = BPF_LD | BPF_IMM | BPF_DW  # 0x18

_INSN = struct.Struct("<BBhi")


def BPF_CLASS(code: int) -> int:
    return code & 0x07


def BPF_SIZE(code: int) -> int:
    return code & 0x18


def BPF_MODE(code: int) -> int:
    return code & 0xE0


def BPF_OP(code: int) -> int:
    return code & 0xF0


def BPF_SRC(code: int) -> int:
    return code & 0x08


class Insn(NamedTuple):
    """One decoded 8-byte instruction (struct bpf_insn)."""

    code: int
    dst: int
    src: int
    off: int
    imm: int

    def encode(self) -> bytes:
        return _INSN.pack(self.code, (self.src << 4) | (self.dst & 0xF), self.off, self.imm)

    @property
    def cls(self) -> int:
        return self.code & 0x07


def decode(data: bytes | bytearray | memoryview) -> list[Insn]:
    """Split a program into instructions; the length must be a multiple of 8."""
    if len(data) % INSN_SIZE:
        raise ValueError(f"program length {len(data)} is not a multiple of {INSN_SIZE}")
    out = []
    for code, regs, off, imm in _INSN.iter_unpack(bytes(data)):
        out.append(Insn(code, regs & 0xF, regs >> 4, off, imm))
    return out


def encode(insns: list[Insn]) -> bytes:
    return b"".join(i.encode() for i in insns)


def insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> Insn:
    """Build an instruction; imm given as unsigned 32-bit is folded to signed."""
    imm &= 0xFFFFFFFF
    if imm & 0x80000000:
        imm -= 1 << 32
    return Insn(code, dst, src, off, imm)


def ld_imm64(dst: int, value: int, src: int = 0) -> list[Insn]:
    """The two halves of an lddw loading a 64-bit value (or a pseudo value with src set)."""
    value &= (1 << 64) - 1
    return [insn(LD_IMM64, dst, src, 0, value & 0xFFFFFFFF), insn(0, 0, 0, 0, value >> 32)]
