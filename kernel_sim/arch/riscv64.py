"""riscv64 (RV64GC): ebreak / c.ebreak breaks and the out-of-line slot closed by a second break.

A function is ``c.addi16sp sp,-32; sd ra,24(sp); c.sdsp s0,16(sp); addi s0,sp,32; jal ra,<body>;
c.ldsp ra,24(sp); c.ldsp s0,16(sp); c.addi16sp sp,32; c.jr ra`` — mixed 16- and 32-bit
instructions, so probes at offsets meet both (a 16-bit one is replaced by c.ebreak, a 32-bit one
by ebreak). There is no single-step trap: the slot holds the saved instruction followed by a
break, and the kprobe core recognises that second break. jal / jalr / c.jr write pc and are
simulated in place, as Linux's riscv kprobes simulate them.
"""

from __future__ import annotations

import struct

from .base import TRAP_BREAK, TRAP_NONE, Arch, FunctionCode, IllegalInstruction, Insn, Trapframe, s_ext

EBREAK = struct.pack("<I", 0x00100073)
C_EBREAK = struct.pack("<H", 0x9002)
C_NOP = struct.pack("<H", 0x0001)
_XREG = [None, "ra", "sp", "gp", "tp", "t0", "t1", "t2", "s0", "s1", "a0", "a1", "a2", "a3", "a4", "a5",
         "a6", "a7", "s2", "s3", "s4", "s5", "s6", "s7", "s8", "s9", "s10", "s11", "t3", "t4", "t5", "t6"]
_H = struct.Struct("<H")
_W = struct.Struct("<I")
MASK64 = (1 << 64) - 1


def _i_type(opcode: int, rd: int, funct3: int, rs1: int, imm: int) -> bytes:
    return _W.pack(((imm & 0xFFF) << 20) | (rs1 << 15) | (funct3 << 12) | (rd << 7) | opcode)


def _s_type(opcode: int, funct3: int, rs1: int, rs2: int, imm: int) -> bytes:
    imm &= 0xFFF
    return _W.pack(((imm >> 5) << 25) | (rs2 << 20) | (rs1 << 15) | (funct3 << 12) | ((imm & 0x1F) << 7) | opcode)


def jal(rd: int, offset: int) -> bytes:
    o = offset & 0x1FFFFF
    imm = (((o >> 20) & 1) << 31) | (((o >> 1) & 0x3FF) << 21) | (((o >> 11) & 1) << 20) | (((o >> 12) & 0xFF) << 12)
    return _W.pack(imm | (rd << 7) | 0x6F)


def _jal_offset(w: int) -> int:
    imm = (((w >> 31) & 1) << 20) | (((w >> 21) & 0x3FF) << 1) | (((w >> 20) & 1) << 11) | (((w >> 12) & 0xFF) << 12)
    return s_ext(imm, 21)


def _reg(frame: Trapframe, num: int) -> int:
    name = _XREG[num]
    return 0 if name is None else getattr(frame.regs, name)


def _set(frame: Trapframe, num: int, value: int) -> None:
    name = _XREG[num]
    if name is not None:
        setattr(frame.regs, name, value & MASK64)


class Riscv64Trapframe(Trapframe):
    arch = "riscv64"

    def __init__(self) -> None:
        super().__init__()
        self.regs.status = 0x120  # SPP | SPIE: trapped from supervisor mode


class Riscv64(Arch):
    name = "riscv64"
    link_register = "ra"
    text_base = 0xFFFFFFFF80002000
    slot_base = 0xFFFFFFFF01000000  # the module area below the kernel image
    stack_base = 0xFFFFFFC800000000
    func_align = 8
    pad_byte = C_NOP
    trapframe = Riscv64Trapframe

    def emit_function(self, addr: int, thunk: int, entry: bool) -> FunctionCode:
        code = bytearray()
        code += _H.pack(0x713D)  # c.addi16sp sp,-32
        code += _s_type(0x23, 3, 2, 1, 24)  # sd ra,24(sp)
        code += _H.pack(0xE822)  # c.sdsp s0,16(sp)
        code += _i_type(0x13, 8, 0, 2, 32)  # addi s0,sp,32
        call_at = len(code)
        code += jal(1, thunk - (addr + call_at))  # jal ra,<body thunk>
        code += _H.pack(0x60E2)  # c.ldsp ra,24(sp)
        code += _H.pack(0x6442)  # c.ldsp s0,16(sp)
        code += _H.pack(0x6105)  # c.addi16sp sp,32
        code += _H.pack(0x8082)  # c.jr ra (ret)
        return FunctionCode(bytes(code), call_at)

    def emit_thunk(self) -> bytes:
        return _H.pack(0x8082)  # ret

    def emit_trampoline(self) -> bytes:
        return EBREAK

    def break_insn(self, length: int) -> bytes:
        return C_EBREAK if length == 2 else EBREAK

    def slot_code(self, insn: bytes) -> bytes:
        return bytes(insn) + self.break_insn(len(insn))

    # -- decoding --------------------------------------------------------------------------------
    def _decode(self, code: bytes, off: int = 0) -> Insn:
        h = code[off] | (code[off + 1] << 8)
        if h & 3 != 3:
            return self._decode16(h)
        if len(code) < off + 4:
            raise IllegalInstruction("riscv64: truncated 32-bit instruction")
        w = _W.unpack_from(code, off)[0]
        op = w & 0x7F
        f3 = (w >> 12) & 7
        if w == 0x00100073:
            return Insn(4, "ebreak", "break")
        if op == 0x13 and f3 == 0:
            return Insn(4, "addi", "op")
        if op == 0x23 and f3 == 3:
            return Insn(4, "sd", "op")
        if op == 0x03 and f3 == 3:
            return Insn(4, "ld", "op")
        if op == 0x6F:
            return Insn(4, "jal", "call")
        if op == 0x67 and f3 == 0:
            return Insn(4, "jalr", "ret")
        raise IllegalInstruction(f"riscv64: cannot decode {w:08x}")

    @staticmethod
    def _decode16(h: int) -> Insn:
        if h == 0x9002:
            return Insn(2, "c.ebreak", "break")
        if h == 0x0001:
            return Insn(2, "c.nop", "op")
        f3, op = h >> 13, h & 3
        if op == 1 and f3 == 3 and ((h >> 7) & 0x1F) == 2:
            return Insn(2, "c.addi16sp", "op")
        if op == 1 and f3 == 0:
            return Insn(2, "c.addi", "op")
        if op == 2 and f3 == 7:
            return Insn(2, "c.sdsp", "op")
        if op == 2 and f3 == 3:
            return Insn(2, "c.ldsp", "op")
        if op == 2 and f3 == 4 and not (h >> 12) & 1 and (h >> 2) & 0x1F == 0 and (h >> 7) & 0x1F:
            return Insn(2, "c.jr", "ret")
        raise IllegalInstruction(f"riscv64: cannot decode {h:04x}")

    # -- execution -------------------------------------------------------------------------------
    def execute(self, frame: Trapframe, mem) -> int:
        pc = frame.regs.epc
        return self.run(frame, mem, mem.fetch(pc, 4), pc)

    def run(self, frame: Trapframe, mem, code: bytes, pc: int) -> int:
        insn = self.decode(code)
        r = frame.regs
        m = insn.mnemonic
        nxt = pc + insn.length
        if insn.kind == "break":
            return TRAP_BREAK  # epc stays at the break, as the ebreak exception reports it
        if insn.length == 2:
            h = _H.unpack_from(code)[0]
            if m == "c.addi16sp":
                imm = (((h >> 12) & 1) << 9) | (((h >> 6) & 1) << 4) | (((h >> 5) & 1) << 6) \
                    | (((h >> 3) & 3) << 7) | (((h >> 2) & 1) << 5)
                r.sp = (r.sp + s_ext(imm, 10)) & MASK64
            elif m == "c.addi":
                rd = (h >> 7) & 0x1F
                imm = s_ext((((h >> 12) & 1) << 5) | ((h >> 2) & 0x1F), 6)
                _set(frame, rd, _reg(frame, rd) + imm)
            elif m == "c.sdsp":
                off = (((h >> 10) & 7) << 3) | (((h >> 7) & 7) << 6)
                mem.write_u64(r.sp + off, _reg(frame, (h >> 2) & 0x1F))
            elif m == "c.ldsp":
                off = (((h >> 12) & 1) << 5) | (((h >> 5) & 3) << 3) | (((h >> 2) & 7) << 6)
                _set(frame, (h >> 7) & 0x1F, mem.read_u64(r.sp + off))
            elif m == "c.jr":
                r.epc = _reg(frame, (h >> 7) & 0x1F) & ~1 & MASK64
                return TRAP_NONE
            r.epc = nxt
            return TRAP_NONE
        w = _W.unpack_from(code)[0]
        rd, rs1, rs2 = (w >> 7) & 0x1F, (w >> 15) & 0x1F, (w >> 20) & 0x1F
        if m == "addi":
            _set(frame, rd, _reg(frame, rs1) + s_ext(w >> 20, 12))
        elif m == "sd":
            mem.write_u64(_reg(frame, rs1) + s_ext(((w >> 25) << 5) | ((w >> 7) & 0x1F), 12), _reg(frame, rs2))
        elif m == "ld":
            _set(frame, rd, mem.read_u64(_reg(frame, rs1) + s_ext(w >> 20, 12)))
        elif m == "jal":
            _set(frame, rd, nxt)
            r.epc = (pc + _jal_offset(w)) & MASK64
            return TRAP_NONE
        elif m == "jalr":
            target = (_reg(frame, rs1) + s_ext(w >> 20, 12)) & ~1 & MASK64
            _set(frame, rd, nxt)
            r.epc = target
            return TRAP_NONE
        r.epc = nxt
        return TRAP_NONE
