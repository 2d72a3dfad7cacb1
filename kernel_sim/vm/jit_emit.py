"""The JIT's instruction translator: one BPF instruction -> Python statements on local registers.

Why a bit-width analysis: registers are Python ints holding u64 values, and most of the cost
of naive translation is the ``& 0xFFFFFFFFFFFFFFFF`` after every operation. The translator
tracks, per register, an upper bound on the bit width of its value (0..64); a mask is emitted
only when an operation may overflow 64 (or 32) bits, and signed comparisons of values known
to be below 2**63 are plain comparisons. Widths flow through the control-flow graph (see
jit.py) and are refined on conditional edges (after ``if r1 < 100`` r1 fits in 7 bits).

Generated names: r0..r10 registers; run, R (regions dict), S (this run's stack buffer), sb
(stack base address); _a scratch address; module constants _U8.._S64 (bound unpack_from),
_P8.._P64 (bound pack_into), _H<id> helpers, f_<pc>_<depth> functions.
"""

from __future__ import annotations

from ..uapi.insn import (
    BPF_ADD,
    BPF_ALU,
    BPF_ALU64,
    BPF_AND,
    BPF_ARSH,
    BPF_ATOMIC,
    BPF_CALL,
    BPF_CMPXCHG,
    BPF_DIV,
    BPF_END,
    BPF_FETCH,
    BPF_JEQ,
    BPF_JGE,
    BPF_JGT,
    BPF_JLE,
    BPF_JLT,
    BPF_JMP,
    BPF_JMP32,
    BPF_JNE,
    BPF_JSET,
    BPF_JSGE,
    BPF_JSGT,
    BPF_JSLE,
    BPF_JSLT,
    BPF_LDX,
    BPF_LSH,
    BPF_MEM,
    BPF_MEMSX,
    BPF_MOD,
    BPF_MOV,
    BPF_MUL,
    BPF_NEG,
    BPF_OR,
    BPF_PSEUDO_CALL,
    BPF_RSH,
    BPF_ST,
    BPF_STX,
    BPF_SUB,
    BPF_TO_BE,
    BPF_X,
    BPF_XCHG,
    BPF_XOR,
    LD_IMM64,
    Insn,
)
from .memory import MAX_BPF_STACK, MAX_CALL_FRAMES

M64 = 0xFFFFFFFFFFFFFFFF
M32 = 0xFFFFFFFF
BPF_LOAD_ACQ = 0x100
BPF_STORE_REL = 0x110
SIZES = {0x00: 4, 0x08: 2, 0x10: 1, 0x18: 8}
_SUFFIX = {1: "8", 2: "16", 4: "32", 8: "64"}
_CMP = {BPF_JEQ: "==", BPF_JNE: "!=", BPF_JGT: ">", BPF_JGE: ">=", BPF_JLT: "<", BPF_JLE: "<=",
        BPF_JSGT: ">", BPF_JSGE: ">=", BPF_JSLT: "<", BPF_JSLE: "<="}
_SIGNED = {BPF_JSGT, BPF_JSGE, BPF_JSLT, BPF_JSLE}
ALL64 = (64,) * 11


def width(v: int) -> int:
    return v.bit_length()


class Translator:
    """Translates the instructions of one program for functions at a given call depth.

    ``stmts`` returns Python statement lines (without indentation) for a straight-line
    instruction and updates the width vector ``w``; ``cond`` returns the condition of a
    conditional jump; ``refine`` narrows widths along one edge of it.
    """

    def __init__(self, insns: list[Insn], imm64: dict[int, int], helpers: dict, depth: int,
                 names: dict, stack_fast: bool = True) -> None:
        self.insns = insns
        self.imm64 = imm64
        self.helpers = helpers
        self.depth = depth
        self.fp = (depth + 1) * MAX_BPF_STACK      # r10's offset in the stack buffer
        self.names = names                          # constants the generated code needs
        self.calls: list[int] = []                  # bpf-to-bpf call targets seen
        self.stack_fast = stack_fast                # False when the function writes r10
        self.uses_trace = False                     # the function needs _T = run.trace

    # -- helpers for the generated text -------------------------------------------------------
    def const(self, name: str, value) -> str:
        self.names[name] = value
        return name

    def _stack_off(self, reg: int, off: int, size: int) -> int | None:
        """The constant offset in S of an r10-relative access inside this frame, or None."""
        if reg == 10 and self.stack_fast and -MAX_BPF_STACK <= off and off + size <= 0:
            return self.fp + off
        return None

    def _addr(self, reg: int, off: int) -> tuple[str, str]:
        """(region expression, offset expression) of a generic access at reg + off."""
        if off == 0:
            return f"R[r{reg} >> 32]", f"r{reg} & 0xFFFFFFFF"
        return f"R[(_a := r{reg} + {off}) >> 32]", "_a & 0xFFFFFFFF"

    # -- straight-line instructions ---------------------------------------------------------------
    def stmts(self, pc: int, w: list[int]) -> list[str]:  # noqa: C901, PLR0911, PLR0912
        ins = self.insns[pc]
        code, dst, src, off, imm = ins
        cls = code & 7
        if bad_register(ins):
            return [self._fault(pc, 0, 0, "invalid register")]
        if code == LD_IMM64:
            value = self.imm64.get(pc)
            if value is None:
                value = imm & M32
                if pc + 1 < len(self.insns):
                    value |= (self.insns[pc + 1].imm & M32) << 32
            w[dst] = width(value)
            return [f"r{dst} = {value:#x}"]
        if cls in (BPF_ALU, BPF_ALU64):
            return self._alu(pc, ins, w)
        if cls == BPF_LDX:
            mode = code & 0xE0
            if mode not in (BPF_MEM, BPF_MEMSX):
                return [self._fault(pc, 0, 0, f"opcode 0x{code:02x}")]
            return [self._load(dst, src, off, code & 0x18, mode == BPF_MEMSX, w)]
        if cls == BPF_ST:
            size = SIZES[code & 0x18]
            value = imm & M64 & ((1 << (8 * size)) - 1)
            return [self._store(dst, off, size, f"{value:#x}")]
        if cls == BPF_STX:
            mode = code & 0xE0
            size = SIZES[code & 0x18]
            if mode == BPF_MEM:
                value = f"r{src}" if w[src] <= 8 * size else f"r{src} & {(1 << (8 * size)) - 1:#x}"
                return [self._store(dst, off, size, value)]
            if mode == BPF_ATOMIC:
                return self._atomic(pc, ins, w)
            return [self._fault(pc, 0, 0, f"opcode 0x{code:02x}")]
        if cls == BPF_JMP and (code & 0xF0) == BPF_CALL:
            return self._call(pc, ins, w)
        if cls == 0x00 and (code & 0xE0) in (0x20, 0x40):
            # LD_ABS / LD_IND: the interpreter's skb load; out of range ends the program with 0
            where = f"{imm}" if (code & 0xE0) == 0x20 else f"_s32(r{src} + {imm})"
            w[0] = 8 * SIZES[code & 0x18] if (code & 0x18) != 0x18 else 64
            return [f"_v = _ld_packet(R, r6, {where}, {code & 0x18})",
                    "if _v is None: raise _ProgramExit(0)",
                    "r0 = _v"]
        return [self._fault(pc, 0, 0, f"opcode 0x{code:02x} (unsupported)")]

    def _fault(self, pc: int, addr: int, size: int, what: str) -> str:
        return f"raise _VmFault({pc}, {addr}, {size}, {what!r})"

    def _load(self, dst: int, src: int, off: int, size_code: int, signed: bool, w: list[int]) -> str:
        size = SIZES[size_code]
        fn = ("_S" if signed else "_U") + _SUFFIX[size]
        so = self._stack_off(src, off, size)
        if so is not None and not signed and size == 1:
            expr = f"S[{so}]"
        elif so is not None:
            expr = f"{fn}(S, {so})[0]"
        else:
            region, offset = self._addr(src, off)
            # Regions index to ints (memory.as_region): a byte is one subscript, not a struct call.
            expr = f"{region}[{offset}]" if size == 1 and not signed else f"{fn}({region}, {offset})[0]"
        if signed:
            w[dst] = 64
            return f"r{dst} = {expr} & {M64:#x}"
        w[dst] = 8 * size
        return f"r{dst} = {expr}"

    def _store(self, dst: int, off: int, size: int, value: str) -> str:
        fn = "_P" + _SUFFIX[size]
        so = self._stack_off(dst, off, size)
        if so is not None:
            if size == 1:
                return f"S[{so}] = {value}"
            return f"{fn}(S, {so}, {value})"
        region, offset = self._addr(dst, off)
        if size == 1:
            return f"{region}[{offset}] = {value}"
        return f"{fn}({region}, {offset}, {value})"

    def _atomic(self, pc: int, ins: Insn, w: list[int]) -> list[str]:
        code, dst, src, off, imm = ins
        size_code = code & 0x18
        size = SIZES[size_code]
        if imm == BPF_LOAD_ACQ:
            return [self._load(dst, src, off, size_code, False, w)]
        if imm == BPF_STORE_REL:
            value = f"r{src}" if w[src] <= 8 * size else f"r{src} & {(1 << (8 * size)) - 1:#x}"
            return [self._store(dst, off, size, value)]
        if size_code not in (0x00, 0x18):
            return [f"raise _VmFault({pc}, (r{dst} + {off}) & {M64:#x}, 0, 'atomic of this size')"]
        mask = M32 if size == 4 else M64
        sfx = _SUFFIX[size]
        operand = f"r{src}" if w[src] <= 8 * size else f"(r{src} & {mask:#x})"
        so = self._stack_off(dst, off, size)
        if so is not None:
            lines = ["with _LOCK:", f"    _v = _U{sfx}(S, {so})[0]"]
            buf, at = "S", str(so)
        else:
            region, offset = self._addr(dst, off)
            lines = ["with _LOCK:", f"    _b = {region}", f"    _o = {offset}", f"    _v = _U{sfx}(_b, _o)[0]"]
            buf, at = "_b", "_o"
        op = imm & ~BPF_FETCH
        if imm == BPF_XCHG:
            new = operand
        elif imm == BPF_CMPXCHG:
            r0 = "r0" if w[0] <= 8 * size else f"(r0 & {mask:#x})"
            lines.append(f"    if _v == {r0}:")
            lines.append(f"        _P{sfx}({buf}, {at}, {operand})")
            lines.append("    r0 = _v")
            w[0] = 8 * size
            return lines
        elif op == BPF_ADD:
            new = f"(_v + {operand}) & {mask:#x}"
        elif op == BPF_OR:
            new = f"_v | {operand}"
        elif op == BPF_AND:
            new = f"_v & {operand}"
        elif op == BPF_XOR:
            new = f"_v ^ {operand}"
        else:
            return [f"raise _VmFault({pc}, (r{dst} + {off}) & {M64:#x}, 0, 'atomic op {imm:#x}')"]
        lines.append(f"    _P{sfx}({buf}, {at}, {new})")
        if imm & BPF_FETCH:
            lines.append(f"    r{src} = _v")
            w[src] = 8 * size
        return lines

    def _call(self, pc: int, ins: Insn, w: list[int]) -> list[str]:
        code, dst, src, off, imm = ins
        args = "r1, r2, r3, r4, r5"
        if code & BPF_X:
            w[0] = 64
            return [f"_f = _HT.get(r{dst})",
                    f"if _f is None: raise _VmFault({pc}, r{dst}, 0, 'call to unknown helper %d' % r{dst})",
                    f"r0 = run.call_helper(_f, r{dst}, {args})"]
        if src == BPF_PSEUDO_CALL:
            target = pc + imm + 1
            if self.depth + 1 >= MAX_CALL_FRAMES:
                return [self._fault(pc, 0, 0, "call (more than 8 frames)")]
            self.calls.append(target)
            w[0] = 64
            # a tail call inside the subprogram replaces that subprogram only: its target's r0
            # comes back here (as Linux does; the interpreter does the same)
            return [f"run.depth = {self.depth + 1}",
                    "try:",
                    f"    r0 = f_{target}_{self.depth + 1}(run, R, S, sb, r0, {args}, r6, r7, r8, r9)",
                    "except _TailCall as _tc:",
                    "    r0 = _chase_tail_calls(run, _tc)",
                    f"run.depth = {self.depth}"]
        if src != 0:
            return [self._fault(pc, 0, 0, f"call of kind {src} (kfunc)")]
        fn = self.helpers.get(imm)
        if fn is None:
            return [self._fault(pc, imm, 0, f"call to unknown helper {imm}")]
        name = self.const(f"_H{imm}" if imm >= 0 else f"_Hm{-imm}", fn)
        w[0] = 64
        self.uses_trace = True
        # untraced runs call the helper directly (one Python frame less); traced runs go
        # through run.call_helper, which records (id, args, ret)
        return [f"r0 = {name}(run, {args}) & {M64:#x} if _T is None else run.call_helper({name}, {imm}, {args})"]

    # -- ALU -----------------------------------------------------------------------------------
    def _alu(self, pc: int, ins: Insn, w: list[int]) -> list[str]:  # noqa: C901, PLR0911, PLR0912, PLR0915
        code, dst, src, off, imm = ins
        is64 = (code & 7) == BPF_ALU64
        op = code & 0xF0
        d = f"r{dst}"
        wd = w[dst]
        if op == BPF_END:
            return [self._endian(pc, d, imm, bool(code & BPF_TO_BE), is64, w, dst)]
        if code & BPF_X:
            b, wb, bconst = f"r{src}", w[src], None
        else:
            bconst = imm & M64 if is64 else imm & M32
            b, wb = f"{bconst:#x}", width(bconst)
        if is64:
            if op == BPF_ADD:
                if bconst is not None and imm < 0:
                    w[dst] = 64
                    return [f"{d} = ({d} - {-imm:#x}) & {M64:#x}"]
                nw = max(wd, wb) + 1
                if nw <= 64:
                    w[dst] = nw
                    return [f"{d} += {b}"]
                w[dst] = 64
                return [f"{d} = ({d} + {b}) & {M64:#x}"]
            if op == BPF_SUB:
                if bconst is not None and 0 < -imm and max(wd, width(-imm)) + 1 <= 64:
                    w[dst] = max(wd, width(-imm)) + 1
                    return [f"{d} += {-imm:#x}"]
                w[dst] = 64
                return [f"{d} = ({d} - {b}) & {M64:#x}"]
            if op == BPF_MUL:
                nw = wd + wb
                if nw <= 64:
                    w[dst] = nw
                    return [f"{d} *= {b}"]
                w[dst] = 64
                return [f"{d} = ({d} * {b}) & {M64:#x}"]
            if op in (BPF_DIV, BPF_MOD) and off == 1:
                w[dst] = 64
                return [f"{d} = _alu64({op}, {d}, {b}, 1)"]
            if op == BPF_DIV:
                if bconst is not None:
                    w[dst] = wd if bconst else 0
                    return [f"{d} //= {b}" if bconst else f"{d} = 0"]
                return [f"{d} = {d} // {b} if {b} else 0"]
            if op == BPF_MOD:
                if bconst is not None:
                    if not bconst:
                        return []
                    w[dst] = min(wd, wb)
                    return [f"{d} %= {b}"]
                # the remainder is below the divisor, but x % 0 = x: the width stays wd
                return [f"if {b}: {d} %= {b}"]
            if op == BPF_OR:
                w[dst] = max(wd, wb)
                return [f"{d} |= {b}"]
            if op == BPF_AND:
                w[dst] = min(wd, wb)
                return [f"{d} &= {b}"]
            if op == BPF_XOR:
                w[dst] = max(wd, wb)
                return [f"{d} ^= {b}"]
            if op == BPF_LSH:
                if bconst is not None:
                    k = bconst & 63
                    if wd + k <= 64:
                        w[dst] = wd + k
                        return [f"{d} <<= {k}"] if k else []
                    w[dst] = 64
                    return [f"{d} = ({d} << {k}) & {M64:#x}"]
                w[dst] = 64
                return [f"{d} = ({d} << ({b} & 63)) & {M64:#x}"]
            if op == BPF_RSH:
                if bconst is not None:
                    k = bconst & 63
                    w[dst] = max(wd - k, 0)
                    return [f"{d} >>= {k}"] if k else []
                return [f"{d} >>= {b} & 63"]
            if op == BPF_ARSH:
                sh = str(bconst & 63) if bconst is not None else f"({b} & 63)"
                if wd < 64:
                    if bconst is not None:
                        w[dst] = max(wd - (bconst & 63), 0)
                    return [f"{d} >>= {sh}"]
                return [f"{d} = (({d} - (({d} >> 63) << 64)) >> {sh}) & {M64:#x}"]
            if op == BPF_NEG:
                w[dst] = 64 if wd else 0
                return [f"{d} = -{d} & {M64:#x}"]
            if op == BPF_MOV:
                if off in (8, 16, 32) and bconst is None:
                    if wb < off:
                        w[dst] = wb
                        return [f"{d} = {b}"]
                    w[dst] = 64
                    m, s = (1 << off) - 1, 1 << (off - 1)
                    return [f"{d} = ((({b} & {m:#x}) ^ {s:#x}) - {s:#x}) & {M64:#x}"]
                if off in (8, 16, 32):
                    value = _sext(bconst, off)
                    w[dst] = width(value)
                    return [f"{d} = {value:#x}"]
                w[dst] = wb
                return [f"{d} = {b}"]
            return [self._fault(pc, 0, 0, f"opcode 0x{code:02x} (unsupported)")]
        # 32-bit ALU: operate on low halves, zero-extend the result.
        lo_d = d if wd <= 32 else f"({d} & {M32:#x})"
        lo_b = b if wb <= 32 else f"({b} & {M32:#x})"
        w[dst] = 32
        if op == BPF_ADD:
            if wd < 32 and wb < 32:
                w[dst] = max(wd, wb) + 1
                return [f"{d} = {lo_d} + {lo_b}"]
            return [f"{d} = ({d} + {b}) & {M32:#x}"]
        if op == BPF_SUB:
            return [f"{d} = ({d} - {b}) & {M32:#x}"]
        if op == BPF_MUL:
            if wd + wb <= 32:
                w[dst] = wd + wb
                return [f"{d} = {d} * {b}"]
            return [f"{d} = ({d} * {b}) & {M32:#x}"]
        if op in (BPF_DIV, BPF_MOD) and off == 1:
            return [f"{d} = _alu32({op}, {d}, {b}, 1)"]
        if op == BPF_DIV:
            if bconst is not None:
                w[dst] = min(wd, 32) if bconst else 0
                return [f"{d} = {lo_d} // {b}" if bconst else f"{d} = 0"]
            return [f"{d} = {lo_d} // {lo_b} if {lo_b} else 0"]
        if op == BPF_MOD:
            if bconst is not None:
                w[dst] = min(wd, 32, wb) if bconst else min(wd, 32)
                return [f"{d} = {lo_d} % {b}" if bconst else f"{d} = {lo_d}"]
            w[dst] = min(wd, 32)
            return [f"{d} = {lo_d} % {lo_b} if {lo_b} else {lo_d}"]
        if op == BPF_OR:
            w[dst] = min(max(wd, wb), 32)
            return [f"{d} = {lo_d} | {lo_b}"]
        if op == BPF_AND:
            w[dst] = min(wd, wb, 32)
            if wd <= 32 or wb <= 32:
                return [f"{d} &= {b}"]
            return [f"{d} = {d} & {b} & {M32:#x}"]
        if op == BPF_XOR:
            w[dst] = min(max(wd, wb), 32)
            return [f"{d} = {lo_d} ^ {lo_b}"]
        if op == BPF_LSH:
            if bconst is not None:
                k = bconst & 31
                if wd + k <= 32:
                    w[dst] = wd + k
                    return [f"{d} <<= {k}"] if k else []
                return [f"{d} = ({d} << {k}) & {M32:#x}"]
            return [f"{d} = ({d} << ({b} & 31)) & {M32:#x}"]
        if op == BPF_RSH:
            if bconst is not None:
                k = bconst & 31
                w[dst] = max(min(wd, 32) - k, 0)
                return [f"{d} = {lo_d} >> {k}"]
            w[dst] = min(wd, 32)
            return [f"{d} = {lo_d} >> ({b} & 31)"]
        if op == BPF_ARSH:
            sh = str(bconst & 31) if bconst is not None else f"({b} & 31)"
            if wd < 32:
                w[dst] = wd
                return [f"{d} >>= {sh}"]
            return [f"{d} = ((({d} & {M32:#x}) ^ 0x80000000) - 0x80000000 >> {sh}) & {M32:#x}"]
        if op == BPF_NEG:
            w[dst] = 32 if wd else 0
            return [f"{d} = -{d} & {M32:#x}"]
        if op == BPF_MOV:
            if off in (8, 16) and bconst is None:
                if wb < off:
                    w[dst] = wb
                    return [f"{d} = {b}"]
                m, s = (1 << off) - 1, 1 << (off - 1)
                return [f"{d} = ((({b} & {m:#x}) ^ {s:#x}) - {s:#x}) & {M32:#x}"]
            if off in (8, 16):
                value = _sext(bconst, off) & M32
                w[dst] = width(value)
                return [f"{d} = {value:#x}"]
            w[dst] = min(wb, 32)
            return [f"{d} = {lo_b}"]
        return [self._fault(pc, 0, 0, f"opcode 0x{code:02x} (unsupported)")]

    def _endian(self, pc: int, d: str, bits: int, to_be: bool, is64: bool, w: list[int], dst: int) -> str:
        if bits not in (16, 32, 64):   # refused by the verifier; unverified, a fault as the interpreter
            return f"raise _VmFault({pc}, 0, 0, 'opcode (byte swap of {bits} bits)')"
        mask = (1 << bits) - 1
        if not (to_be or is64):
            if w[dst] <= bits:
                return "pass"
            w[dst] = bits
            return f"{d} &= {mask:#x}"
        w[dst] = bits
        if bits == 16:
            return f"{d} = (({d} & 0xff) << 8) | (({d} >> 8) & 0xff)"
        return f"{d} = int.from_bytes(({d} & {mask:#x}).to_bytes({bits // 8}, 'little'), 'big')"

    # -- conditional jumps -----------------------------------------------------------------------
    def cond(self, pc: int, w: list[int]) -> str:
        """The Python condition under which the jump at ``pc`` is taken."""
        code, dst, src, off, imm = self.insns[pc]
        is32 = (code & 7) == BPF_JMP32
        op = code & 0xF0
        if bad_register(self.insns[pc]):
            return f"_bad_jump({pc})"
        wd = w[dst]
        if code & BPF_X:
            b, wb, bconst = f"r{src}", w[src], None
        else:
            bconst = imm & (M32 if is32 else M64)
            b, wb = f"{bconst:#x}", width(bconst)
        a = f"r{dst}"
        if is32:
            if wd > 32:
                a = f"({a} & {M32:#x})"
                wd = 32
            if wb > 32:
                b = f"({b} & {M32:#x})"
                wb = 32
        bits = 32 if is32 else 64
        if op == BPF_JSET:
            return f"{a} & {b}"
        if op not in _CMP:
            return f"_bad_jump({pc})"
        cmp = _CMP[op]
        if op in _SIGNED:
            sbit = 1 << (bits - 1)
            if bconst is not None:
                sval = bconst - (1 << bits) if bconst & sbit else bconst
                if wd < bits:
                    return f"{a} {cmp} {sval}"
                return f"({a} ^ {sbit:#x}) {cmp} {bconst ^ sbit:#x}"
            if wd < bits and wb < bits:
                return f"{a} {cmp} {b}"
            return f"({a} ^ {sbit:#x}) {cmp} ({b} ^ {sbit:#x})"
        return f"{a} {cmp} {b}"

    def refine(self, pc: int, w: tuple, taken: bool) -> tuple:
        """Widths along one edge of the conditional jump at ``pc`` (unsigned compares only)."""
        code, dst, src, off, imm = self.insns[pc]
        op = code & 0xF0
        is32 = (code & 7) == BPF_JMP32
        if is32 or bad_register(self.insns[pc]):
            return w
        if code & BPF_X:
            wb, breg = w[src], src
        else:
            wb, breg = width(imm & M64), None
        wd = w[dst]
        small_d = small_b = False   # which side gets the other's bound
        if op == BPF_JEQ and taken or op == BPF_JNE and not taken:
            small_d = small_b = True
        elif op in (BPF_JLT, BPF_JLE) and taken or op in (BPF_JGT, BPF_JGE) and not taken:
            small_d = True
        elif op in (BPF_JGT, BPF_JGE) and taken or op in (BPF_JLT, BPF_JLE) and not taken:
            small_b = True
        elif op in (BPF_JSLT, BPF_JSLE) and taken or op in (BPF_JSGT, BPF_JSGE) and not taken:
            # a <s b with both known non-negative is a <u b
            if wd < 64 and (imm >= 0 if breg is None else wb < 64):
                small_d = True
        elif op in (BPF_JSGT, BPF_JSGE) and taken or op in (BPF_JSLT, BPF_JSLE) and not taken:
            if wd < 64 and breg is not None and wb < 64:
                small_b = True
        if not (small_d or small_b):
            return w
        out = list(w)
        if small_d and wb < wd:
            out[dst] = wb
        if small_b and breg is not None and wd < wb:
            out[breg] = wd
        return tuple(out)


def _sext(v: int, bits: int) -> int:
    v &= (1 << bits) - 1
    if v >> (bits - 1):
        v -= 1 << bits
    return v & M64


def bad_register(ins: Insn) -> bool:
    """Whether ``ins`` names r11-r15 in either register field: the verifier refuses it; the
    interpreter (and so the JIT) faults when such an instruction is reached."""
    return ins.dst > 10 or ins.src > 10


def writes_r10(ins: Insn) -> bool:
    """Whether ``ins`` may change r10 (the verifier forbids it; the JIT then keeps r10 dynamic)."""
    cls = ins.code & 7
    if cls in (BPF_ALU, BPF_ALU64, BPF_LDX) or ins.code == LD_IMM64:
        return ins.dst == 10
    if cls == BPF_STX and (ins.code & 0xE0) == BPF_ATOMIC:
        return ins.src == 10 and bool(ins.imm & BPF_FETCH) or ins.imm == BPF_LOAD_ACQ and ins.dst == 10
    return False
