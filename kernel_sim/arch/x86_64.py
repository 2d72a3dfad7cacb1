"""x86_64: int3 breaks, TF single-step, and the handful of instructions kernel_sim's prologues use.

A traceable function is ``push %rbp; mov %rsp,%rbp; push %rbx; sub $0x10,%rsp; call <body>;
add $0x10,%rsp; pop %rbx; pop %rbp; ret`` (indirect-call targets such as the __x64_sys_*
entry points start with ``endbr64``), padded with int3 as Linux pads its text. The return
address sits on the stack at entry (*rsp).
"""

from __future__ import annotations

import struct

from .base import TRAP_BREAK, TRAP_DEBUG, TRAP_NONE, Arch, FunctionCode, IllegalInstruction, Insn, Trapframe

X86_EFLAGS_TF = 0x100
X86_EFLAGS_IF = 0x200
INT3 = b"\xcc"
ENDBR64 = b"\xf3\x0f\x1e\xfa"
_REG64 = ["rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
          "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"]
_I32 = struct.Struct("<i")


class X86Trapframe(Trapframe):
    arch = "x86_64"
    single_step_capable = True

    def __init__(self) -> None:
        super().__init__()
        self.regs.cs = 0x10  # __KERNEL_CS
        self.regs.ss = 0x18  # __KERNEL_DS
        self.regs.eflags = X86_EFLAGS_IF | 0x2

    def break_address(self) -> int:
        return self.regs.rip - 1  # int3 is a trap: rip is past the 0xCC

    def set_single_step(self, enable: bool) -> None:
        if enable:
            self.regs.eflags |= X86_EFLAGS_TF
        else:
            self.regs.eflags &= ~X86_EFLAGS_TF


class X86_64(Arch):
    name = "x86_64"
    text_base = 0xFFFFFFFF81000000
    slot_base = 0xFFFFFFFFA0000000  # module area: where kprobe insn slots live
    stack_base = 0xFFFFC90000000000
    func_align = 16
    pad_byte = INT3
    trapframe = X86Trapframe
    ret_in_register = False

    # -- code generation -----------------------------------------------------------------------
    def emit_function(self, addr: int, thunk: int, entry: bool) -> FunctionCode:
        code = bytearray(ENDBR64 if entry else b"")
        code += b"\x55"  # push %rbp
        code += b"\x48\x89\xe5"  # mov %rsp,%rbp
        code += b"\x53"  # push %rbx
        code += b"\x48\x83\xec\x10"  # sub $0x10,%rsp
        call_at = len(code)
        code += b"\xe8" + _I32.pack(thunk - (addr + call_at + 5))  # call <body thunk>
        code += b"\x48\x83\xc4\x10"  # add $0x10,%rsp
        code += b"\x5b"  # pop %rbx
        code += b"\x5d"  # pop %rbp
        code += b"\xc3"  # ret
        return FunctionCode(bytes(code), call_at)

    def emit_thunk(self) -> bytes:
        return b"\xc3"  # ret: the body's value is in %rax by then

    def emit_trampoline(self) -> bytes:
        return INT3

    def break_insn(self, length: int) -> bytes:
        return INT3

    def slot_code(self, insn: bytes) -> bytes:
        return bytes(insn)  # single-stepped with TF: no second break needed

    # -- decoding --------------------------------------------------------------------------------
    def _decode(self, code: bytes, off: int = 0) -> Insn:
        b0 = code[off]
        if b0 == 0xCC:
            return Insn(1, "int3", "break")
        if 0x50 <= b0 <= 0x57:
            return Insn(1, "push", "op")
        if 0x58 <= b0 <= 0x5F:
            return Insn(1, "pop", "op")
        if b0 == 0x41 and len(code) > off + 1 and 0x50 <= code[off + 1] <= 0x5F:
            return Insn(2, "push" if code[off + 1] < 0x58 else "pop", "op")
        if b0 == 0x90:
            return Insn(1, "nop", "op")
        if b0 == 0xC9:
            return Insn(1, "leave", "op")
        if b0 == 0xC3:
            return Insn(1, "ret", "ret")
        if b0 == 0xE8:
            return Insn(5, "call", "call")
        tail = bytes(code[off : off + 5])
        if tail[:4] == ENDBR64:
            return Insn(4, "endbr64", "op")
        if tail[:3] == b"\x48\x89\xe5":
            return Insn(3, "mov", "op")
        if tail[:3] in (b"\x48\x83\xec", b"\x48\x83\xc4"):
            return Insn(4, "sub" if tail[2] == 0xEC else "add", "op")
        if tail == b"\x0f\x1f\x44\x00\x00":
            return Insn(5, "nopl", "op")
        raise IllegalInstruction(f"x86_64: cannot decode {tail.hex()}")

    # -- execution -------------------------------------------------------------------------------
    def execute(self, frame: Trapframe, mem) -> int:
        pc = frame.regs.rip
        code = mem.fetch(pc, 5)
        trap = self.run(frame, mem, code, pc)
        if trap == TRAP_NONE and frame.regs.eflags & X86_EFLAGS_TF:
            return TRAP_DEBUG  # the single-step trap comes after the instruction completes
        return trap

    def compile(self, code: bytes, pc: int):
        run = self.run

        def step(frame: Trapframe, mem) -> int:
            trap = run(frame, mem, code, pc)
            if trap == TRAP_NONE and frame.regs.eflags & X86_EFLAGS_TF:
                return TRAP_DEBUG
            return trap

        return step

    def run(self, frame: Trapframe, mem, code: bytes, pc: int) -> int:
        """Execute the instruction ``code`` as if it sat at ``pc`` (also used to simulate)."""
        r = frame.regs
        insn = self.decode(code)
        b0 = code[0]
        nxt = pc + insn.length
        if b0 == 0xCC:
            r.rip = nxt
            return TRAP_BREAK
        if insn.mnemonic in ("push", "pop"):
            num = (code[1] if b0 == 0x41 else b0) & 7
            reg = _REG64[num + (8 if b0 == 0x41 else 0)]
            if insn.mnemonic == "push":
                r.rsp -= 8
                mem.write_u64(r.rsp, getattr(r, reg))
            else:
                setattr(r, reg, mem.read_u64(r.rsp))
                r.rsp += 8
        elif insn.mnemonic == "mov":
            r.rbp = r.rsp
        elif insn.mnemonic in ("sub", "add"):
            imm = code[3] - 256 if code[3] >= 0x80 else code[3]
            r.rsp = (r.rsp - imm if insn.mnemonic == "sub" else r.rsp + imm) & ((1 << 64) - 1)
        elif insn.mnemonic == "leave":
            r.rsp = r.rbp
            r.rbp = mem.read_u64(r.rsp)
            r.rsp += 8
        elif insn.mnemonic == "ret":
            r.rip = mem.read_u64(r.rsp)
            r.rsp += 8
            return TRAP_NONE
        elif insn.mnemonic == "call":
            target = (nxt + _I32.unpack_from(code, 1)[0]) & ((1 << 64) - 1)
            r.rsp -= 8
            mem.write_u64(r.rsp, nxt)
            r.rip = target
            return TRAP_NONE
        r.rip = nxt
        return TRAP_NONE

    # -- calls and kretprobes ------------------------------------------------------------------
    def enter(self, frame: Trapframe, mem, ret_addr: int) -> None:
        frame.regs.rsp -= 8
        mem.write_u64(frame.regs.rsp, ret_addr)

    def return_address(self, frame: Trapframe, mem) -> int:
        return mem.read_u64(frame.regs.rsp)

    def set_return_address(self, frame: Trapframe, mem, addr: int) -> None:
        mem.write_u64(frame.regs.rsp, addr)
