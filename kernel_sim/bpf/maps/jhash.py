"""Bob Jenkins' lookup3 hash as Linux's jhash()/jhash2() compute it (include/linux/jhash.h).

Hash maps place keys in buckets by ``jhash(key) & (n_buckets - 1)``; the bucket order is the
order get_next_key and the batch commands walk, so with BPF_F_ZERO_SEED (seed 0) a simulated
map walks its keys in exactly the order Linux does.
"""

from __future__ import annotations

import functools
import struct

JHASH_INITVAL = 0xDEADBEEF
_M = 0xFFFFFFFF


def _rol(x: int, k: int) -> int:
    return ((x << k) | (x >> (32 - k))) & _M


def _mix(a: int, b: int, c: int) -> tuple[int, int, int]:
    a = (a - c) & _M; a ^= _rol(c, 4); c = (c + b) & _M  # noqa: E702
    b = (b - a) & _M; b ^= _rol(a, 6); a = (a + c) & _M  # noqa: E702
    c = (c - b) & _M; c ^= _rol(b, 8); b = (b + a) & _M  # noqa: E702
    a = (a - c) & _M; a ^= _rol(c, 16); c = (c + b) & _M  # noqa: E702
    b = (b - a) & _M; b ^= _rol(a, 19); a = (a + c) & _M  # noqa: E702
    c = (c - b) & _M; c ^= _rol(b, 4); b = (b + a) & _M  # noqa: E702
    return a, b, c


def _final(a: int, b: int, c: int) -> int:
    c ^= b; c = (c - _rol(b, 14)) & _M  # noqa: E702
    a ^= c; a = (a - _rol(c, 11)) & _M  # noqa: E702
    b ^= a; b = (b - _rol(a, 25)) & _M  # noqa: E702
    c ^= b; c = (c - _rol(b, 16)) & _M  # noqa: E702
    a ^= c; a = (a - _rol(c, 4)) & _M  # noqa: E702
    b ^= a; b = (b - _rol(a, 14)) & _M  # noqa: E702
    c ^= b; c = (c - _rol(b, 24)) & _M  # noqa: E702
    return c


def jhash(key: bytes, initval: int) -> int:
    """jhash() over arbitrary bytes."""
    length = len(key)
    a = b = c = (JHASH_INITVAL + length + initval) & _M
    pos = 0
    while length > 12:
        x, y, z = struct.unpack_from("<III", key, pos)
        a, b, c = _mix((a + x) & _M, (b + y) & _M, (c + z) & _M)
        length -= 12
        pos += 12
    if length == 0:
        return c
    tail = key[pos:] + bytes(12 - length)
    x, y, z = struct.unpack("<III", tail)
    return _final((a + x) & _M, (b + y) & _M, (c + z) & _M)


def jhash2(key: bytes, initval: int) -> int:
    """jhash2() over a key that is a whole number of u32 words."""
    words = struct.unpack(f"<{len(key) // 4}I", key)
    length = len(words)
    a = b = c = (JHASH_INITVAL + (length << 2) + initval) & _M
    i = 0
    while length > 3:
        a, b, c = _mix((a + words[i]) & _M, (b + words[i + 1]) & _M, (c + words[i + 2]) & _M)
        length -= 3
        i += 3
    if length == 0:
        return c
    if length == 3:
        c = (c + words[i + 2]) & _M
    if length >= 2:
        b = (b + words[i + 1]) & _M
    a = (a + words[i]) & _M
    return _final(a, b, c)


@functools.lru_cache(maxsize=1 << 16)
def htab_hash(key: bytes, seed: int) -> int:
    """Linux's htab_map_hash: jhash2 for keys of whole u32 words, jhash otherwise (memoized:
    keys come back after LRU evictions and deletes, and jhash in Python costs microseconds)."""
    if len(key) % 4 == 0:
        return jhash2(key, seed)
    return jhash(key, seed)
