"""The reference interpreter: one instruction at a time, semantics from alu.py.

Why it exists next to the JIT: it is the readable definition of what a program does. The JIT
must agree with it on r0, memory and the sequence of helper calls for every program.

Conventions both engines follow (see runctx.py): registers are u64 Python ints; a helper
call leaves r1-r5 unchanged (the verifier makes them unreadable anyway); a bpf-to-bpf call
(src=1) gets its own 512-byte frame and the callee cannot disturb the caller's r6-r9 / r10;
callx (0x8d) calls the helper whose id is in the dst register; memory is addressed through
``vm.regions`` and any bad access raises VmFault(pc, addr, size).

Two behaviours only this engine has so far (the JIT is used for a program only when it can):
LD_ABS / LD_IND (``ld_packet``; JitEngine.SUPPORTS_LD_ABS opts in), and a tail call made from
a subprogram, whose target replaces that subprogram and returns to its caller (as Linux's
x86-64 JIT does). Unverified code (``bpfload vm exec``) is bounded by ``run.max_insns``.
"""

from __future__ import annotations

import struct
import threading

from ..uapi.insn import (
    BPF_ADD,
    BPF_ALU,
    BPF_ALU64,
    BPF_AND,
    BPF_ATOMIC,
    BPF_CALL,
    BPF_CMPXCHG,
    BPF_END,
    BPF_EXIT,
    BPF_FETCH,
    BPF_JA,
    BPF_JEQ,
    BPF_JGT,
    BPF_JMP,
    BPF_JMP32,
    BPF_JNE,
    BPF_LDX,
    BPF_MEM,
    BPF_MEMSX,
    BPF_MOV,
    BPF_PSEUDO_CALL,
    BPF_ST,
    BPF_STX,
    BPF_SUB,
    BPF_TO_BE,
    BPF_X,
    BPF_XCHG,
    LD_IMM64,
)
from .alu import U32, U64, BadOpcode, alu32, alu64, endian, jmp_cond, s32
from .ctxaccess import SKB_DATA_SHADOW, SKB_NET_HDR
from .memory import VmFault
from .program import VmProgram
from .runctx import ProgramExit, TailCall

BAD_REGISTER = 0x10000  # a pseudo opcode (class LD, no mode) for instructions naming r11-r15
BPF_LOAD_ACQ = 0x100
BPF_STORE_REL = 0x110
ATOMIC_LOCK = threading.Lock()  # atomics are atomic across simulated CPUs
_FMT = {0x00: ("<I", "<i", 4), 0x08: ("<H", "<h", 2), 0x10: ("<B", "<b", 1), 0x18: ("<Q", "<q", 8)}
_MEM_ERRORS = (KeyError, struct.error, IndexError, TypeError, ValueError, OverflowError)


def load(regions: dict, addr: int, size_code: int, pc: int, signed: bool = False) -> int:
    """Read an unsigned (or sign-extended, as u64) value of the given BPF size at addr."""
    ufmt, sfmt, size = _FMT[size_code]
    try:
        v = struct.unpack_from(sfmt if signed else ufmt, regions[addr >> 32], addr & 0xFFFFFFFF)[0]
    except _MEM_ERRORS:
        raise VmFault(pc, addr, size, "read") from None
    return v & U64


def store(regions: dict, addr: int, size_code: int, value: int, pc: int) -> None:
    """Write the low bytes of value at addr."""
    ufmt, _, size = _FMT[size_code]
    try:
        struct.pack_into(ufmt, regions[addr >> 32], addr & 0xFFFFFFFF, value & ((1 << (8 * size)) - 1))
    except _MEM_ERRORS:
        raise VmFault(pc, addr, size, "write") from None


SKF_NET_OFF = -0x100000
SKF_LL_OFF = -0x200000
_BE = {0x00: ">I", 0x08: ">H", 0x10: ">B"}


def ld_packet(regions: dict, ctx: int, off: int, size_code: int) -> int | None:
    """LD_ABS / LD_IND: a big-endian load at ``off`` from skb->data (or the network / mac header
    for SKF_NET_OFF / SKF_LL_OFF based offsets) within the packet; None when out of range, which
    ends the program with r0 = 0, as Linux's skb load helpers do."""
    fmt = _BE.get(size_code)
    try:
        buf, base = regions[ctx >> 32], ctx & 0xFFFFFFFF
        data, end = struct.unpack_from("<QQ", buf, base + SKB_DATA_SHADOW)
        net, mac = struct.unpack_from("<QQ", buf, base + SKB_NET_HDR)
    except _MEM_ERRORS:
        return None
    if fmt is None:
        return None
    if off >= 0:
        addr = data + off
    elif off >= SKF_NET_OFF:
        addr = net + off - SKF_NET_OFF
    elif off >= SKF_LL_OFF:
        addr = mac + off - SKF_LL_OFF
    else:
        return None
    size = struct.calcsize(fmt)
    if addr < mac or addr + size > end or (addr >> 32) != (mac >> 32):
        return None
    try:
        return struct.unpack_from(fmt, regions[addr >> 32], addr & 0xFFFFFFFF)[0]
    except _MEM_ERRORS:
        return None


class Interpreter:
    """Executes a VmProgram. ``run``/``call_function`` follow the engine interface of runctx.py."""

    def __init__(self, program: VmProgram) -> None:
        self.program = program
        # an instruction naming r11-r15 (only unverified code can) faults when it is reached
        self.code = [(i.code, i.dst, i.src, i.off, i.imm) if i.dst <= 10 and i.src <= 10 else (BAD_REGISTER, 0, 0, 0, 0)
                     for i in program.insns]

    def run(self, run, r1: int, r2: int = 0) -> int:
        regs = [0] * 11
        regs[1], regs[2] = r1 & U64, r2 & U64
        regs[10] = run.frame_pointer(run.depth)
        return self._exec(run, regs, 0)

    def call_function(self, run, pc: int, r1: int, r2: int, r3: int, r4: int, r5: int) -> int:
        regs = [0, r1 & U64, r2 & U64, r3 & U64, r4 & U64, r5 & U64, 0, 0, 0, 0, 0]
        outer = run.depth
        run.depth = outer + 1
        try:
            regs[10] = run.frame_pointer(run.depth)
            return self._exec(run, regs, pc)
        finally:
            run.depth = outer

    # The loop is long on purpose: one flat dispatch per class reads like the RFC's tables.
    def _exec(self, run, regs: list[int], pc: int) -> int:  # noqa: C901, PLR0912, PLR0915
        code_list = self.code
        imm64 = self.program.imm64
        helpers = self.program.helpers
        regions = run.vm.regions
        frames: list[tuple[int, tuple[int, ...]]] = []
        budget = run.max_insns - run.insns
        count = 0
        n = len(code_list)
        try:
            while True:
                if pc >= n or pc < 0:
                    raise VmFault(pc, 0, 0, "jump out of the program")
                code, dst, src, off, imm = code_list[pc]
                count += 1
                cls = code & 0x07
                if cls == BPF_ALU64 or cls == BPF_ALU:
                    op = code & 0xF0
                    if op == BPF_END:
                        if imm not in (16, 32, 64):
                            raise VmFault(pc, 0, 0, f"opcode (byte swap of {imm} bits)")
                        regs[dst] = endian(regs[dst], imm, (code & 0x08) == BPF_TO_BE, cls == BPF_ALU64)
                    elif cls == BPF_ALU64:
                        b = regs[src] if code & BPF_X else imm & U64
                        # the commonest operations inline; alu.py is the definition of them all
                        if op == BPF_ADD:
                            regs[dst] = (regs[dst] + b) & U64
                        elif op == BPF_MOV and not off:
                            regs[dst] = b
                        elif op == BPF_SUB:
                            regs[dst] = (regs[dst] - b) & U64
                        elif op == BPF_AND:
                            regs[dst] = regs[dst] & b
                        else:
                            regs[dst] = alu64(op, regs[dst], b, off)
                    else:
                        b = regs[src] if code & BPF_X else imm & U32
                        regs[dst] = alu32(op, regs[dst], b, off)
                    pc += 1
                elif cls == BPF_JMP or cls == BPF_JMP32:
                    op = code & 0xF0
                    if op == BPF_JA:
                        step = imm if cls == BPF_JMP32 else off
                        if step < 0 and count > budget:
                            self._check_budget(run, count, budget, pc)
                        pc += step + 1
                    elif op == BPF_CALL and cls == BPF_JMP:
                        if src == BPF_PSEUDO_CALL:
                            frames.append((pc + 1, (regs[6], regs[7], regs[8], regs[9], regs[10])))
                            run.depth += 1
                            try:
                                regs[10] = run.frame_pointer(run.depth)
                            except VmFault:
                                raise VmFault(pc, 0, 0, "call (more than 8 frames)") from None
                            self._check_budget(run, count, budget, pc)
                            pc += imm + 1
                            continue
                        if src != 0 and not code & BPF_X:
                            raise VmFault(pc, 0, 0, f"call of kind {src} (kfunc)")
                        fn_id = regs[dst] if code & BPF_X else imm
                        fn = helpers.get(fn_id)
                        if fn is None:
                            raise VmFault(pc, fn_id, 0, f"call to unknown helper {fn_id}")
                        run.insns += count
                        budget -= count
                        count = 0
                        try:
                            regs[0] = run.call_helper(fn, fn_id, regs[1], regs[2], regs[3], regs[4], regs[5])
                        except TailCall as tc:
                            if not frames:
                                raise
                            # a subprogram's tail call: the target replaces that subprogram only, and
                            # its r0 returns to the subprogram's caller (Linux, x86-64 JIT)
                            regs[0] = self._chase_tail_calls(run, tc)
                            pc, saved = frames.pop()
                            regs[6], regs[7], regs[8], regs[9], regs[10] = saved
                            run.depth -= 1
                            continue
                        pc += 1
                    elif op == BPF_EXIT and cls == BPF_JMP:
                        if not frames:
                            run.insns += count
                            return regs[0]
                        pc, saved = frames.pop()
                        regs[6], regs[7], regs[8], regs[9], regs[10] = saved
                        run.depth -= 1
                    else:
                        b = regs[src] if code & BPF_X else imm & U64
                        a = regs[dst]
                        if cls == BPF_JMP and op == BPF_JEQ:
                            taken = a == b
                        elif cls == BPF_JMP and op == BPF_JNE:
                            taken = a != b
                        elif cls == BPF_JMP and op == BPF_JGT:
                            taken = a > b
                        else:
                            taken = jmp_cond(op, a, b, cls == BPF_JMP32)
                        if taken:
                            if off < 0 and count > budget:
                                self._check_budget(run, count, budget, pc)
                            pc += off + 1
                        else:
                            pc += 1
                elif cls == BPF_LDX:
                    mode = code & 0xE0
                    if mode not in (BPF_MEM, BPF_MEMSX):
                        raise VmFault(pc, 0, 0, f"opcode 0x{code:02x}")
                    regs[dst] = load(regions, (regs[src] + off) & U64, code & 0x18, pc, mode == BPF_MEMSX)
                    pc += 1
                elif cls == BPF_STX:
                    addr = (regs[dst] + off) & U64
                    mode = code & 0xE0
                    if mode == BPF_MEM:
                        store(regions, addr, code & 0x18, regs[src], pc)
                    elif mode == BPF_ATOMIC and imm == BPF_LOAD_ACQ:
                        regs[dst] = load(regions, (regs[src] + off) & U64, code & 0x18, pc)
                    elif mode == BPF_ATOMIC:
                        self._atomic(regions, regs, code & 0x18, addr, src, imm, pc)
                    else:
                        raise VmFault(pc, 0, 0, f"opcode 0x{code:02x}")
                    pc += 1
                elif cls == BPF_ST:
                    store(regions, (regs[dst] + off) & U64, code & 0x18, imm & U64, pc)
                    pc += 1
                elif code == LD_IMM64:
                    regs[dst] = imm64.get(pc, imm & U32)
                    pc += 2
                elif cls == 0x00 and code & 0xE0 in (0x20, 0x40):  # LD_ABS / LD_IND (skb programs)
                    off = imm if code & 0xE0 == 0x20 else s32(regs[src] + imm)
                    value = ld_packet(regions, regs[6], off, code & 0x18)
                    if value is None:
                        run.insns += count
                        raise ProgramExit(0)
                    regs[0] = value
                    pc += 1
                elif code == BAD_REGISTER:
                    raise VmFault(pc, 0, 0, "register (r11-r15 do not exist)")
                else:
                    raise VmFault(pc, 0, 0, f"opcode 0x{code:02x} (unsupported)")
        except BadOpcode as e:
            raise VmFault(pc, 0, 0, f"opcode ({e})") from None


    @staticmethod
    def _chase_tail_calls(run, tc: TailCall) -> int:
        """Run a tail call's target (and the targets it tail-calls) in the current frame."""
        while True:
            try:
                return tc.engine.run(run, run.ctx if tc.ctx is None else tc.ctx, 0) & U64
            except TailCall as nxt:
                tc = nxt

    @staticmethod
    def _check_budget(run, count: int, budget: int, pc: int) -> None:
        if count > budget:
            run.insns += count
            raise VmFault(pc, 0, 0, f"run (more than {run.max_insns} instructions executed)")

    @staticmethod
    def _atomic(regions: dict, regs: list[int], size_code: int, addr: int, src: int, imm: int, pc: int) -> None:
        """BPF_ATOMIC at addr: add/or/and/xor (+fetch), xchg, cmpxchg, store-release."""
        if imm == BPF_STORE_REL:
            store(regions, addr, size_code, regs[src], pc)
            return
        if size_code not in (0x00, 0x18):
            raise VmFault(pc, addr, 0, "atomic of this size")
        mask = U32 if size_code == 0x00 else U64
        with ATOMIC_LOCK:
            old = load(regions, addr, size_code, pc)
            operand = regs[src] & mask
            if imm == BPF_XCHG:
                new = operand
            elif imm == BPF_CMPXCHG:
                new = operand if (regs[0] & mask) == old else old
            else:
                op = imm & ~BPF_FETCH
                if op not in (0x00, 0x40, 0x50, 0xA0):
                    raise VmFault(pc, addr, 0, f"atomic op 0x{imm:x}")
                new = alu64(op, old, operand) & mask
            store(regions, addr, size_code, new, pc)
        if imm == BPF_CMPXCHG:
            regs[0] = old
        elif imm & BPF_FETCH:
            regs[src] = old
