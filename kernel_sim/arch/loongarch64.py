"""loongarch64: ``break 0`` breaks and the out-of-line slot closed by a second break.

A function is ``addi.d $sp,$sp,-16; st.d $ra,$sp,8; st.d $fp,$sp,0; addi.d $fp,$sp,16;
bl <body>; ld.d $ra,$sp,8; ld.d $fp,$sp,0; addi.d $sp,$sp,16; jirl $zero,$ra,0`` (all 32-bit).
No single-step: the slot holds the saved instruction and a second ``break 0``; ``bl`` and
``jirl`` write pc and are simulated in place, as Linux's loongarch kprobes do.
"""

from __future__ import annotations

import struct

from .base import TRAP_BREAK, TRAP_NONE, Arch, FunctionCode, IllegalInstruction, Insn, Trapframe, s_ext

_W = struct.Struct("<I")
BREAK0 = _W.pack(0x002A0000)
NOP = _W.pack(0x03400000)  # andi $zero,$zero,0
MASK64 = (1 << 64) - 1
SP, RA, FP = 3, 1, 22


def _ri12(op: int, rd: int, rj: int, si12: int) -> bytes:
    return _W.pack(op | ((si12 & 0xFFF) << 10) | (rj << 5) | rd)


def addi_d(rd: int, rj: int, si12: int) -> bytes:
    return _ri12(0x02C00000, rd, rj, si12)


def st_d(rd: int, rj: int, si12: int) -> bytes:
    return _ri12(0x29C00000, rd, rj, si12)


def ld_d(rd: int, rj: int, si12: int) -> bytes:
    return _ri12(0x28C00000, rd, rj, si12)


def bl(offset: int) -> bytes:
    o = (offset >> 2) & 0x3FFFFFF
    return _W.pack(0x54000000 | ((o & 0xFFFF) << 10) | (o >> 16))


def _bl_offset(w: int) -> int:
    return s_ext((((w & 0x3FF) << 16) | ((w >> 10) & 0xFFFF)), 26) << 2


def _get(frame: Trapframe, n: int) -> int:
    return 0 if n == 0 else getattr(frame.regs, f"r{n}")


def _set(frame: Trapframe, n: int, value: int) -> None:
    if n:
        setattr(frame.regs, f"r{n}", value & MASK64)


class Loongarch64Trapframe(Trapframe):
    arch = "loongarch64"

    def __init__(self) -> None:
        super().__init__()
        self.regs.csr_crmd = 0xB0  # PLV0, DA=0, PG=1
        self.regs.csr_prmd = 0x4


class Loongarch64(Arch):
    name = "loongarch64"
    link_register = "r1"
    text_base = 0x9000000000200000
    slot_base = 0xFFFF800002000000  # the module area
    stack_base = 0x9000000100000000
    func_align = 8
    pad_byte = NOP
    trapframe = Loongarch64Trapframe

    def emit_function(self, addr: int, thunk: int, entry: bool) -> FunctionCode:
        code = bytearray()
        code += addi_d(SP, SP, -16)
        code += st_d(RA, SP, 8)
        code += st_d(FP, SP, 0)
        code += addi_d(FP, SP, 16)
        call_at = len(code)
        code += bl(thunk - (addr + call_at))
        code += ld_d(RA, SP, 8)
        code += ld_d(FP, SP, 0)
        code += addi_d(SP, SP, 16)
        code += _W.pack(0x4C000020)  # jirl $zero,$ra,0 (ret)
        return FunctionCode(bytes(code), call_at)

    def emit_thunk(self) -> bytes:
        return _W.pack(0x4C000020)

    def emit_trampoline(self) -> bytes:
        return BREAK0

    def break_insn(self, length: int) -> bytes:
        return BREAK0

    def slot_code(self, insn: bytes) -> bytes:
        return bytes(insn) + BREAK0

    def _decode(self, code: bytes, off: int = 0) -> Insn:
        if len(code) < off + 4:
            raise IllegalInstruction("loongarch64: truncated instruction")
        w = _W.unpack_from(code, off)[0]
        if w >> 15 == 0x54:
            return Insn(4, "break", "break")
        top10 = w >> 22
        if top10 == 0x00B:
            return Insn(4, "addi.d", "op")
        if top10 == 0x00D:
            return Insn(4, "andi", "op")
        if top10 == 0x0A7:
            return Insn(4, "st.d", "op")
        if top10 == 0x0A3:
            return Insn(4, "ld.d", "op")
        if w >> 26 == 0x15:
            return Insn(4, "bl", "call")
        if w >> 26 == 0x13:
            return Insn(4, "jirl", "ret")
        raise IllegalInstruction(f"loongarch64: cannot decode {w:08x}")

    def execute(self, frame: Trapframe, mem) -> int:
        pc = frame.regs.csr_era
        return self.run(frame, mem, mem.fetch(pc, 4), pc)

    def run(self, frame: Trapframe, mem, code: bytes, pc: int) -> int:
        insn = self.decode(code)
        w = _W.unpack_from(code)[0]
        r = frame.regs
        rd, rj = w & 0x1F, (w >> 5) & 0x1F
        si12 = s_ext((w >> 10) & 0xFFF, 12)
        m = insn.mnemonic
        nxt = pc + 4
        if m == "break":
            return TRAP_BREAK  # era stays at the break
        if m == "addi.d":
            _set(frame, rd, _get(frame, rj) + si12)
        elif m == "andi":
            _set(frame, rd, _get(frame, rj) & ((w >> 10) & 0xFFF))
        elif m == "st.d":
            mem.write_u64((_get(frame, rj) + si12) & MASK64, _get(frame, rd))
        elif m == "ld.d":
            _set(frame, rd, mem.read_u64((_get(frame, rj) + si12) & MASK64))
        elif m == "bl":
            r.r1 = nxt
            r.csr_era = (pc + _bl_offset(w)) & MASK64
            return TRAP_NONE
        elif m == "jirl":
            target = (_get(frame, rj) + (s_ext((w >> 10) & 0xFFFF, 16) << 2)) & MASK64
            _set(frame, rd, nxt)
            r.csr_era = target
            return TRAP_NONE
        r.csr_era = nxt
        return TRAP_NONE
