"""Tristate numbers: the verifier's knowledge of which bits of a 64-bit value are known.

A tnum is (value, mask): bits set in mask are unknown, the others equal value's bits. Linux's
kernel/bpf/tnum.c defines the same algebra; these are the few operations the verifier needs.
"""

from __future__ import annotations

from typing import NamedTuple

U64 = (1 << 64) - 1
U32 = (1 << 32) - 1


class Tnum(NamedTuple):
    value: int
    mask: int

    @property
    def is_const(self) -> bool:
        return self.mask == 0

    def contains(self, other: Tnum) -> bool:
        """True when every value ``other`` may hold is one this tnum may hold (tnum_in)."""
        if other.mask & ~self.mask & U64:
            return False
        return (other.value & ~self.mask) == self.value


UNKNOWN = Tnum(0, U64)


def const(v: int) -> Tnum:
    return Tnum(v & U64, 0)


def trange(lo: int, hi: int) -> Tnum:
    """The tightest tnum holding every value of [lo, hi] (unsigned)."""
    chi = lo ^ hi
    bits = chi.bit_length()
    if bits > 63:
        return UNKNOWN
    delta = (1 << bits) - 1
    return Tnum(lo & ~delta & U64, delta)


def add(a: Tnum, b: Tnum) -> Tnum:
    sm = (a.mask + b.mask) & U64
    sv = (a.value + b.value) & U64
    sigma = (sm + sv) & U64
    chi = sigma ^ sv
    mu = chi | a.mask | b.mask
    return Tnum(sv & ~mu & U64, mu & U64)


def sub(a: Tnum, b: Tnum) -> Tnum:
    dv = (a.value - b.value) & U64
    alpha = (dv + a.mask) & U64
    beta = (dv - b.mask) & U64
    chi = alpha ^ beta
    mu = chi | a.mask | b.mask
    return Tnum(dv & ~mu & U64, mu & U64)


def and_(a: Tnum, b: Tnum) -> Tnum:
    alpha = a.value | a.mask
    beta = b.value | b.mask
    v = a.value & b.value
    return Tnum(v, alpha & beta & ~v & U64)


def or_(a: Tnum, b: Tnum) -> Tnum:
    v = a.value | b.value
    mu = a.mask | b.mask
    return Tnum(v, mu & ~v & U64)


def xor(a: Tnum, b: Tnum) -> Tnum:
    v = a.value ^ b.value
    mu = a.mask | b.mask
    return Tnum(v & ~mu & U64, mu)


def mul(a: Tnum, b: Tnum) -> Tnum:
    if a.is_const and b.is_const:
        return const(a.value * b.value)
    acc_v = (a.value * b.value) & U64
    acc_m = Tnum(0, 0)
    x, y = a, b
    while x.value or x.mask:
        if x.value & 1:
            acc_m = add(acc_m, Tnum(0, y.mask))
        elif x.mask & 1:
            acc_m = add(acc_m, Tnum(0, y.value | y.mask))
        x = Tnum(x.value >> 1, x.mask >> 1)
        y = Tnum((y.value << 1) & U64, (y.mask << 1) & U64)
    return add(Tnum(acc_v, 0), acc_m)


def lshift(a: Tnum, s: int) -> Tnum:
    return Tnum((a.value << s) & U64, (a.mask << s) & U64)


def rshift(a: Tnum, s: int) -> Tnum:
    return Tnum(a.value >> s, a.mask >> s)


def arshift(a: Tnum, s: int, bits: int = 64) -> Tnum:
    def sx(v: int) -> int:
        v &= (1 << bits) - 1
        return v - (1 << bits) if v >> (bits - 1) else v

    m = (1 << bits) - 1
    return Tnum((sx(a.value) >> s) & m, (sx(a.mask) >> s) & m)


def intersect(a: Tnum, b: Tnum) -> Tnum:
    v = a.value | b.value
    mu = a.mask & b.mask
    return Tnum(v & ~mu & U64, mu)


def cast(a: Tnum, size: int) -> Tnum:
    """Truncate to ``size`` bytes (zero-extension of the low part)."""
    m = (1 << (8 * size)) - 1
    return Tnum(a.value & m, a.mask & m)


def subreg(a: Tnum) -> Tnum:
    return cast(a, 4)


def umin(a: Tnum) -> int:
    return a.value


def umax(a: Tnum) -> int:
    return a.value | a.mask


def smin(a: Tnum) -> int:
    # lowest signed value: sign bit set if unknown
    v = a.value
    if a.mask >> 63:
        v |= 1 << 63
        return v - (1 << 64)
    return v - (1 << 64) if v >> 63 else v


def smax(a: Tnum) -> int:
    v = a.value | a.mask
    if a.mask >> 63:
        v &= ~(1 << 63)
        return v
    return v - (1 << 64) if v >> 63 else v
