"""What every simulated architecture provides: code generation, decoding, a trapframe, one-step execution.

kernel_sim's kernel functions are real machine code in a kernel text image (kernel_sim/ksym.py
lays it out). An ``Arch`` knows how to *write* a function for that image (a Linux-like
prologue, a call of the function's Python body through a thunk, an epilogue), how to *decode*
an instruction (its length, what kind it is, so kprobes land on instruction boundaries and
know which instructions must be simulated rather than stepped out of line) and how to
*execute* one instruction on a trapframe (only the instructions it writes: enough that
single-stepping is real and the stack pointer moves as the instructions say).

``Trapframe`` implements the seed's ``ProbeArgs``: break_address, debug_address, update_pc,
set_single_step; its ``regs`` is the arch's ``struct pt_regs`` (kernel_sim/uapi/ptrace.py),
which is also the ctx a kprobe program reads.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from ..uapi.ptrace import IP_REG, PARM_REGS, PT_REGS, RC_REG, SP_REG

# Trap kinds ``Arch.execute`` reports after one instruction.
TRAP_NONE = 0
TRAP_BREAK = 1  # a break instruction (int3 / ebreak / c.ebreak / break 0) was fetched
TRAP_DEBUG = 2  # x86: the instruction completed with TF set (the single-step debug exception)

MASK64 = (1 << 64) - 1


class IllegalInstruction(Exception):
    """The fetched bytes are not an instruction this arch model decodes (#UD / illegal insn)."""


class Insn(NamedTuple):
    """A decoded instruction: its length, its mnemonic, and how kprobes must treat it.

    kind: "op" (executed out of line), "call" / "jump" / "ret" (pc-relative or pc-writing:
    simulated in place, as Linux's riscv/loongarch kprobes simulate branches and x86 emulates
    call/ret), "break" (cannot be probed).
    """

    length: int
    mnemonic: str
    kind: str = "op"


class ProbeArgs(Protocol):
    """The seed's ProbeArgs: what the kprobe core needs from a trapframe."""

    def break_address(self) -> int: ...

    def debug_address(self) -> int: ...

    def update_pc(self, pc: int) -> None: ...

    def set_single_step(self, enable: bool) -> None: ...


class Trapframe:
    """The registers of a trapped (or running) kernel function, as the arch's struct pt_regs."""

    arch: str = ""
    single_step_capable = False

    def __init__(self) -> None:
        self.regs = PT_REGS[self.arch]()
        self.kprobe_ctl = None  # the kprobe point whose instruction this CPU is stepping out of line
        self._ip = IP_REG[self.arch]
        self._sp = SP_REG[self.arch]

    # -- register access --------------------------------------------------------------------
    def get(self, name: str) -> int:
        return getattr(self.regs, name)

    def set(self, name: str, value: int) -> None:
        setattr(self.regs, name, value & MASK64)

    @property
    def pc(self) -> int:
        return getattr(self.regs, self._ip)

    @pc.setter
    def pc(self, value: int) -> None:
        setattr(self.regs, self._ip, value & MASK64)

    @property
    def sp(self) -> int:
        return getattr(self.regs, self._sp)

    @sp.setter
    def sp(self, value: int) -> None:
        setattr(self.regs, self._sp, value & MASK64)

    def set_args(self, args: tuple) -> None:
        for reg, value in zip(PARM_REGS[self.arch], args, strict=False):
            setattr(self.regs, reg, value & MASK64)

    @property
    def return_value(self) -> int:
        return getattr(self.regs, RC_REG[self.arch])

    @return_value.setter
    def return_value(self, value: int) -> None:
        setattr(self.regs, RC_REG[self.arch], value & MASK64)

    def ctx_bytes(self) -> bytes:
        """The pt_regs bytes a kprobe program gets as ctx (a copy: programs cannot write regs)."""
        return ctypes.string_at(ctypes.addressof(self.regs), ctypes.sizeof(self.regs))

    # -- ProbeArgs ---------------------------------------------------------------------------
    def break_address(self) -> int:
        """The address of the break instruction that trapped (riscv/loongarch: pc itself)."""
        return self.pc

    def debug_address(self) -> int:
        """Where the second trap happened (riscv/loongarch: the slot's second break)."""
        return self.pc

    def update_pc(self, pc: int) -> None:
        self.pc = pc

    def set_single_step(self, enable: bool) -> None:
        raise NotImplementedError(f"{self.arch} has no single-step trap: kprobes use a second break")


class Memory(Protocol):
    def fetch(self, addr: int, n: int) -> bytes: ...

    def read_u64(self, addr: int) -> int: ...

    def write_u64(self, addr: int, value: int) -> None: ...


@dataclass
class FunctionCode:
    """One kernel function's machine code, as ``Arch.emit_function`` writes it."""

    code: bytes
    body_call: int  # offset of the instruction that calls the Python body


class Arch:
    """Per-arch code generation, decoding and execution; subclasses fill in the encodings."""

    name = ""
    text_base = 0
    slot_base = 0  # where KprobeAuxiliaryOps hands out executable memory (the module area)
    stack_base = 0
    func_align = 16
    pad_byte = b"\0"
    trapframe: type[Trapframe] = Trapframe
    ret_in_register = True  # riscv/loongarch: ra; x86: on the stack
    link_register = ""  # the pt_regs field holding the return address at entry (riscv: ra)

    def __init__(self) -> None:
        self._decoded: dict[bytes, Insn] = {}  # instruction bytes -> decoded (the set is small)

    def emit_function(self, addr: int, thunk: int, entry: bool) -> FunctionCode:
        raise NotImplementedError

    def emit_thunk(self) -> bytes:
        """The body thunk: the Python body runs when pc reaches it, then this returns."""
        raise NotImplementedError

    def emit_trampoline(self) -> bytes:
        """The kretprobe trampoline: a break that runs the return handlers."""
        raise NotImplementedError

    def break_insn(self, length: int) -> bytes:
        """The break that replaces an instruction of ``length`` bytes (its first bytes)."""
        raise NotImplementedError

    def decode(self, code: bytes, off: int = 0) -> Insn:
        """The instruction at ``off``, decoded once per distinct encoding (memoized)."""
        key = bytes(code[off : off + 5]) if off or len(code) > 5 else code
        insn = self._decoded.get(key)
        if insn is None:
            insn = self._decoded[key] = self._decode(key)
        return insn

    def _decode(self, code: bytes, off: int = 0) -> Insn:
        raise NotImplementedError

    def execute(self, frame: Trapframe, mem: Memory) -> int:
        """Execute the instruction at frame.pc; returns TRAP_NONE, TRAP_BREAK or TRAP_DEBUG."""
        raise NotImplementedError

    def compile(self, code: bytes, pc: int):
        """A step function for the instruction ``code`` at ``pc`` (what ``execute`` does there).

        The executor caches it by address while executable memory is unchanged, so a step costs
        no fetch and no decode.
        """
        run = self.run

        def step(frame: Trapframe, mem: Memory) -> int:
            return run(frame, mem, code, pc)

        return step

    def run(self, frame: Trapframe, mem: Memory, code: bytes, pc: int) -> int:
        """Execute the instruction ``code`` as if it sat at ``pc`` (also used to simulate)."""
        raise NotImplementedError

    def slot_code(self, insn: bytes) -> bytes:
        """An out-of-line slot: the saved instruction, then (no single-step) a second break."""
        raise NotImplementedError

    # kretprobes: where the caller's return address lives at function entry (the link register
    # here; x86 overrides these: its call pushes the address on the stack).
    def return_address(self, frame: Trapframe, mem: Memory) -> int:
        return getattr(frame.regs, self.link_register)

    def set_return_address(self, frame: Trapframe, mem: Memory, addr: int) -> None:
        setattr(frame.regs, self.link_register, addr)

    def enter(self, frame: Trapframe, mem: Memory, ret_addr: int) -> None:
        """Set up a call: the caller's return address where the arch's call instruction puts it."""
        self.set_return_address(frame, mem, ret_addr)

    def decode_all(self, code: bytes) -> list[tuple[int, Insn]]:
        """(offset, insn) for every instruction of a function's code."""
        out, off = [], 0
        while off < len(code):
            insn = self.decode(code, off)
            out.append((off, insn))
            off += insn.length
        return out


def s_ext(value: int, bits: int) -> int:
    sign = 1 << (bits - 1)
    return (value & (sign - 1)) - (value & sign)
