"""Scalar ranges: a tnum plus unsigned and signed min/max, for 64-bit values and 32-bit subregisters.

The same value is described four ways (known bits, [umin, umax], [smin, smax]); each operation
computes each description soundly and ``sync`` lets them tighten each other, as Linux's
reg_bounds_sync does. ``Bounds`` is immutable and carries its width (32 or 64), so the ALU32
forms run the same code on the subregister and zero-extend the result.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

from . import tnum as T
from .tnum import Tnum


def _smask(bits: int) -> int:
    return (1 << bits) - 1


def to_signed(v: int, bits: int) -> int:
    v &= _smask(bits)
    return v - (1 << bits) if v >> (bits - 1) else v


class Bounds(NamedTuple):
    tn: Tnum
    umin: int
    umax: int
    smin: int
    smax: int
    bits: int = 64
    # What JMP32 tests taught about the low half when the upper half is unknown (64-bit values
    # only): (umin32, umax32, smin32, smax32), or None. Linux keeps these ranges for every register.
    r32: tuple | None = None

    @property
    def is_const(self) -> bool:
        return self.tn.is_const

    @property
    def const(self) -> int:
        return self.tn.value

    @property
    def empty(self) -> bool:
        if self.r32 is not None and (self.r32[0] > self.r32[1] or self.r32[2] > self.r32[3]):
            return True
        return self.umin > self.umax or self.smin > self.smax

    def contains(self, other: Bounds) -> bool:
        if not (self.umin <= other.umin and other.umax <= self.umax and self.smin <= other.smin
                and other.smax <= self.smax and self.tn.contains(other.tn)):
            return False
        if self.r32 is None:
            return True
        a, b = self.sub32(), other.sub32()
        return a.umin <= b.umin and b.umax <= a.umax and a.smin <= b.smin and b.smax <= a.smax

    def sub32(self) -> Bounds:
        """The low 32 bits as a 32-bit value."""
        if self.bits == 32:
            return self
        tn = T.subreg(self.tn)
        if self.umax <= T.U32 or (self.umin >> 32) == (self.umax >> 32):
            lo, hi = self.umin & T.U32, self.umax & T.U32
        else:
            lo, hi = tn.value, tn.value | tn.mask
        if -(1 << 31) <= self.smin and self.smax < (1 << 31):
            slo, shi = self.smin, self.smax
        else:
            slo, shi = -(1 << 31), (1 << 31) - 1
        if self.r32 is not None:
            u0, u1, s0, s1 = self.r32
            lo, hi, slo, shi = max(lo, u0), min(hi, u1), max(slo, s0), min(shi, s1)
        return sync(Bounds(tn, lo, hi, slo, shi, 32))

    def zext(self) -> Bounds:
        """A 32-bit result written to a 64-bit register (upper half zero)."""
        if self.bits == 64:
            return self
        r32 = (self.umin, self.umax, self.smin, self.smax)
        return sync(Bounds(Tnum(self.tn.value, self.tn.mask), self.umin, self.umax, self.umin, self.umax, 64, r32))


@functools.cache
def unknown(bits: int = 64) -> Bounds:
    m = _smask(bits)
    return Bounds(Tnum(0, m), 0, m, -(1 << (bits - 1)), (1 << (bits - 1)) - 1, bits)


@functools.lru_cache(maxsize=4096)
def const(v: int, bits: int = 64) -> Bounds:
    v &= _smask(bits)
    s = to_signed(v, bits)
    return Bounds(Tnum(v, 0), v, v, s, s, bits)


def urange(lo: int, hi: int, bits: int = 64) -> Bounds:
    return sync(Bounds(T.trange(lo, hi), lo, hi, -(1 << (bits - 1)), (1 << (bits - 1)) - 1, bits))


def sync(b: Bounds) -> Bounds:
    """Let the four descriptions tighten each other (twice, as Linux)."""
    tn, umin, umax, smin, smax, bits = b[:6]
    m = _smask(bits)
    sb = 1 << (bits - 1)
    for _ in range(2):
        # tnum -> ranges
        umin = max(umin, tn.value)
        umax = min(umax, tn.value | tn.mask)
        t_smin = to_signed(tn.value | (tn.mask & sb), bits)
        t_smax = to_signed((tn.value | tn.mask) & ~(tn.mask & sb) & m, bits)
        smin = max(smin, t_smin)
        smax = min(smax, t_smax)
        # signed <-> unsigned when the range does not cross the sign boundary
        if smin >= 0 or smax < 0:
            umin = max(umin, smin & m)
            umax = min(umax, smax & m)
        if (umin ^ umax) & sb == 0 and umin <= umax:
            smin = max(smin, to_signed(umin, bits))
            smax = min(smax, to_signed(umax, bits))
        if smin < 0 <= smax:
            # a signed range across zero is two unsigned intervals: [smin, max] and [0, smax]
            if umin > smax:  # only the negative part is left
                umin = max(umin, smin & m)
                smin, smax = to_signed(umin, bits), min(-1, to_signed(umax, bits)) if umax & sb else -1
            elif umax < (smin & m):  # only the non-negative part
                umax = min(umax, smax)
                smin, smax = umin, umax
        # ranges -> tnum
        if umin <= umax:
            tn = T.intersect(tn, T.trange(umin, umax))
            tn = Tnum(tn.value & m, tn.mask & m)
    return Bounds(tn, umin, umax, smin, smax, bits, b.r32)


def _from_u(tn: Tnum, lo: int, hi: int, bits: int, ok: bool) -> Bounds:
    m = _smask(bits)
    tn = Tnum(tn.value & m, tn.mask & m)
    if not ok:
        lo, hi = 0, m
    return sync(Bounds(tn, lo, hi, -(1 << (bits - 1)), (1 << (bits - 1)) - 1, bits))


def alu(op: int, a: Bounds, b: Bounds, signed_div: bool = False) -> Bounds:
    """dst = a <op> b on ``a.bits``-wide values; ``op`` is the BPF_OP nibble."""
    bits = a.bits
    m = _smask(bits)
    smin_l, smax_l = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if a.is_const and b.is_const:
        v = _const_op(op, a.const, b.const, bits, signed_div)
        if v is not None:
            return const(v, bits)
    if op == 0x00:  # add
        tn = T.add(a.tn, b.tn)
        ok = a.umax + b.umax <= m
        out = _from_u(tn, a.umin + b.umin, a.umax + b.umax, bits, ok)
        slo, shi = a.smin + b.smin, a.smax + b.smax
        if smin_l <= slo and shi <= smax_l:
            out = sync(out._replace(smin=max(out.smin, slo), smax=min(out.smax, shi)))
        return out
    if op == 0x10:  # sub
        tn = T.sub(a.tn, b.tn)
        ok = a.umin >= b.umax
        out = _from_u(tn, a.umin - b.umax, a.umax - b.umin, bits, ok)
        slo, shi = a.smin - b.smax, a.smax - b.smin
        if smin_l <= slo and shi <= smax_l:
            out = sync(out._replace(smin=max(out.smin, slo), smax=min(out.smax, shi)))
        return out
    if op == 0x20:  # mul
        tn = T.mul(a.tn, b.tn)
        return _from_u(tn, a.umin * b.umin, a.umax * b.umax, bits, a.umax * b.umax <= m)
    if op == 0x50:  # and
        tn = T.and_(a.tn, b.tn)
        return _from_u(tn, tn.value, min(a.umax, b.umax), bits, True)
    if op == 0x40:  # or
        tn = T.or_(a.tn, b.tn)
        return _from_u(tn, max(a.umin, b.umin), (tn.value | tn.mask) & m, bits, True)
    if op == 0xA0:  # xor
        tn = T.xor(a.tn, b.tn)
        return _from_u(tn, tn.value, (tn.value | tn.mask) & m, bits, True)
    if op in (0x60, 0x70, 0xC0):  # shifts
        if not b.is_const or b.const >= bits:
            if op == 0x70:
                return urange(0, a.umax, bits)
            return unknown(bits)
        s = b.const
        if op == 0x60:
            tn = T.lshift(a.tn, s)
            return _from_u(tn, a.umin << s, a.umax << s, bits, (a.umax << s) <= m)
        if op == 0x70:
            tn = T.rshift(Tnum(a.tn.value & m, a.tn.mask & m), s)
            return _from_u(tn, a.umin >> s, a.umax >> s, bits, True)
        tn = T.arshift(a.tn, s, bits)
        out = _from_u(tn, 0, m, bits, False)
        return sync(out._replace(smin=max(out.smin, a.smin >> s), smax=min(out.smax, a.smax >> s)))
    if op == 0x30:  # div
        if signed_div:
            return unknown(bits)
        if b.is_const:
            c = b.const
            if c == 0:
                return const(0, bits)
            return urange(a.umin // c, a.umax // c, bits)
        return urange(0, a.umax, bits)
    if op == 0x90:  # mod
        if signed_div:
            return unknown(bits)
        if b.is_const:
            c = b.const
            if c == 0:
                return a
            if a.umax < c:
                return a
            return urange(0, c - 1, bits)
        return urange(0, a.umax, bits)
    return unknown(bits)


def _const_op(op: int, x: int, y: int, bits: int, signed_div: bool) -> int | None:
    m = _smask(bits)
    if op == 0x00:
        return x + y
    if op == 0x10:
        return x - y
    if op == 0x20:
        return x * y
    if op == 0x40:
        return x | y
    if op == 0x50:
        return x & y
    if op == 0xA0:
        return x ^ y
    if op == 0x60:
        return x << (y & (bits - 1))
    if op == 0x70:
        return (x & m) >> (y & (bits - 1))
    if op == 0xC0:
        return to_signed(x, bits) >> (y & (bits - 1))
    if op == 0x30:
        if y == 0:
            return 0
        if signed_div:
            sx, sy = to_signed(x, bits), to_signed(y, bits)
            q = abs(sx) // abs(sy)
            return -q if (sx < 0) != (sy < 0) else q
        return x // y
    if op == 0x90:
        if y == 0:
            return x
        if signed_div:
            sx, sy = to_signed(x, bits), to_signed(y, bits)
            r = abs(sx) % abs(sy)
            return -r if sx < 0 else r
        return x % y
    return None


def neg(a: Bounds) -> Bounds:
    return alu(0x10, const(0, a.bits), a)


def truncate(a: Bounds, size: int) -> Bounds:
    """Zero-extended low ``size`` bytes (narrow loads, le16/le32, ALU32 results)."""
    if size * 8 >= a.bits:
        return a
    m = (1 << (8 * size)) - 1
    if a.umax <= m:
        return a
    if a.is_const:
        return const(a.const & m, a.bits)
    tn = T.cast(a.tn, size)
    return urange(tn.value, tn.value | tn.mask, a.bits)._replace(tn=tn)


def sign_extend(a: Bounds, from_bits: int, bits: int = 64) -> Bounds:
    """MOVSX / LDX MEMSX: the low ``from_bits`` sign-extended to ``bits``."""
    if a.is_const:
        return const(to_signed(a.const, from_bits), bits)
    half = 1 << (from_bits - 1)
    if a.umax < half:
        return sync(Bounds(a.tn, a.umin, a.umax, a.umin, a.umax, bits)) if a.bits == bits else urange(a.umin, a.umax,
                                                                                                       bits)
    return sync(Bounds(T.UNKNOWN if bits == 64 else Tnum(0, _smask(bits)), 0, _smask(bits), -half, half - 1, bits))


# ---- conditional jumps -------------------------------------------------------------------

JEQ, JGT, JGE, JSET, JNE, JSGT, JSGE, JLT, JLE, JSLT, JSLE = 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0xA0, 0xB0, \
    0xC0, 0xD0
FLIP = {JEQ: JEQ, JNE: JNE, JGT: JLT, JLT: JGT, JGE: JLE, JLE: JGE, JSGT: JSLT, JSLT: JSGT, JSGE: JSLE, JSLE: JSGE,
        JSET: JSET}
NEGATE = {JEQ: JNE, JNE: JEQ, JGT: JLE, JLE: JGT, JGE: JLT, JLT: JGE, JSGT: JSLE, JSLE: JSGT, JSGE: JSLT,
          JSLT: JSGE, JSET: None}


def branch_taken(op: int, a: Bounds, b: Bounds) -> int:
    """1 if ``a op b`` always holds, 0 if never, -1 if unknown."""
    if op == JEQ:
        if a.is_const and b.is_const:
            return int(a.const == b.const)
        if a.umin > b.umax or a.umax < b.umin or a.smin > b.smax or a.smax < b.smin:
            return 0
        if (a.tn.value ^ b.tn.value) & ~(a.tn.mask | b.tn.mask):
            return 0
        return -1
    if op == JNE:
        r = branch_taken(JEQ, a, b)
        return r if r < 0 else 1 - r
    if op == JSET:
        if b.is_const:
            if a.tn.value & b.const:
                return 1
            if not ((a.tn.value | a.tn.mask) & b.const):
                return 0
        return -1
    if op == JGT:
        return 1 if a.umin > b.umax else 0 if a.umax <= b.umin else -1
    if op == JGE:
        return 1 if a.umin >= b.umax else 0 if a.umax < b.umin else -1
    if op == JLT:
        return 1 if a.umax < b.umin else 0 if a.umin >= b.umax else -1
    if op == JLE:
        return 1 if a.umax <= b.umin else 0 if a.umin > b.umax else -1
    if op == JSGT:
        return 1 if a.smin > b.smax else 0 if a.smax <= b.smin else -1
    if op == JSGE:
        return 1 if a.smin >= b.smax else 0 if a.smax < b.smin else -1
    if op == JSLT:
        return 1 if a.smax < b.smin else 0 if a.smin >= b.smax else -1
    if op == JSLE:
        return 1 if a.smax <= b.smin else 0 if a.smin > b.smax else -1
    return -1


def refine(op: int | None, a: Bounds, b: Bounds) -> tuple[Bounds, Bounds]:
    """Both operands' bounds given that ``a op b`` holds (may come out empty)."""
    if op is None:
        return a, b
    if op == JEQ:
        tn = T.intersect(a.tn, b.tn)
        lo, hi = max(a.umin, b.umin), min(a.umax, b.umax)
        slo, shi = max(a.smin, b.smin), min(a.smax, b.smax)
        r32 = a.r32
        if b.r32 is not None:
            r32 = b.r32 if r32 is None else (max(r32[0], b.r32[0]), min(r32[1], b.r32[1]), max(r32[2], b.r32[2]),
                                             min(r32[3], b.r32[3]))
        r = sync(Bounds(tn, lo, hi, slo, shi, a.bits, r32))
        return r, r
    if op == JNE:
        if b.is_const:
            a = _exclude(a, b.const)
        if a.is_const:
            b = _exclude(b, a.const)
        return a, b
    if op == JSET:
        if b.is_const and b.const and b.const & (b.const - 1) == 0:
            a = sync(a._replace(tn=T.or_(a.tn, Tnum(b.const, 0))))
        return a, b
    if op in (JLT, JLE, JSLT, JSLE):
        b2, a2 = refine(FLIP[op], b, a)
        return a2, b2
    if op == JGT:
        return (sync(a._replace(umin=max(a.umin, b.umin + 1))), sync(b._replace(umax=min(b.umax, a.umax - 1))))
    if op == JGE:
        return (sync(a._replace(umin=max(a.umin, b.umin))), sync(b._replace(umax=min(b.umax, a.umax))))
    if op == JSGT:
        return (sync(a._replace(smin=max(a.smin, b.smin + 1))), sync(b._replace(smax=min(b.smax, a.smax - 1))))
    if op == JSGE:
        return (sync(a._replace(smin=max(a.smin, b.smin))), sync(b._replace(smax=min(b.smax, a.smax))))
    return a, b


def refine_not(op: int, a: Bounds, b: Bounds) -> tuple[Bounds, Bounds]:
    """Both operands' bounds given that ``a op b`` does not hold."""
    if op == JSET:
        if b.is_const:
            k = b.const
            a = sync(a._replace(tn=Tnum(a.tn.value & ~k, a.tn.mask & ~k)))
        return a, b
    return refine(NEGATE[op], a, b)


def _exclude(a: Bounds, v: int) -> Bounds:
    if a.umin == v:
        a = a._replace(umin=v + 1)
    if a.umax == v:
        a = a._replace(umax=v - 1)
    sv = to_signed(v, a.bits)
    if a.smin == sv:
        a = a._replace(smin=sv + 1)
    if a.smax == sv:
        a = a._replace(smax=sv - 1)
    if a.empty:
        return a
    return sync(a)


def fmt_scalar(b: Bounds) -> str:
    """Linux's print of a scalar: a constant, or scalar(...) with the bounds that say something.

    As print_scalar_ranges(): smin, smax, umin, umax, smin32, smax32, umin32, umax32, each
    omitted at its type's extreme, and a later one with the same value folded into the first
    ("smax=umax=1023"), never mixing negative and positive; then var_off unless unknown.
    """
    if b.is_const:
        return _snum(to_signed(b.const, 64))
    s32 = b.sub32()
    rows = [["smin", b.smin, b.smin == -(1 << 63)], ["smax", b.smax, b.smax == (1 << 63) - 1],
            ["umin", b.umin, b.umin == 0], ["umax", b.umax, b.umax == _smask(64)],
            ["smin32", _s32(s32.smin), s32.smin == -(1 << 31)], ["smax32", _s32(s32.smax), s32.smax == (1 << 31) - 1],
            ["umin32", s32.umin, s32.umin == 0], ["umax32", s32.umax, s32.umax == T.U32]]
    out = []
    for i, (name, val, omit) in enumerate(rows):
        if omit:
            continue
        neg1 = name[0] == "s" and val < 0
        names = [name]
        for j in range(i + 2, len(rows), 2):
            n2, v2, o2 = rows[j]
            if o2 or v2 != val or (n2[0] == "s" and v2 < 0) != neg1:
                continue
            rows[j][2] = True
            names.append(n2)
        out.append("=".join(names) + "=" + (_snum(val) if name[0] == "s" else _unum(val)))
    if b.tn.mask != _smask(64):
        out.append(f"var_off=(0x{b.tn.value:x}; 0x{b.tn.mask:x})")
    return "scalar(" + ",".join(out) + ")"


def _s32(v: int) -> int:
    """Linux prints a 32-bit signed bound outside S16 as its u32 pattern."""
    return v if -32768 <= v <= 32767 else v & T.U32


def _snum(v: int) -> str:
    """verbose_snum(): decimal within S16, else the 64-bit pattern in hex."""
    return str(v) if -32768 <= v <= 32767 else f"0x{v & _smask(64):x}"


def _unum(v: int) -> str:
    return str(v) if v <= 0xFFFF else f"0x{v:x}"
