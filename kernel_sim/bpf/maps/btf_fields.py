"""Special fields of a map value found in its BTF: where the struct bpf_spin_lock sits.

Linux records a value's special fields (btf_parse_fields) when a map is created with BTF; a
bpf_spin_lock makes BPF_F_LOCK valid, hides the lock word from userland (lookups return it
zeroed, updates do not write it), and forbids MAP_FREEZE and mmap (ENOTSUPP). The simulated
BTF object keeps only (kind, name, size) per type, so the members are read here from the raw
BTF blob.
"""

from __future__ import annotations

import struct

_HDR = struct.Struct("<HBBIIIII")
_TYPE = struct.Struct("<III")
STRUCT, UNION = 4, 5
_MODIFIERS = {8, 9, 10, 11, 18}  # TYPEDEF, VOLATILE, CONST, RESTRICT, TYPE_TAG
_EXTRA = {1: lambda v: 4, 3: lambda v: 12, 4: lambda v: 12 * v, 5: lambda v: 12 * v, 6: lambda v: 8 * v,
          13: lambda v: 8 * v, 14: lambda v: 4, 15: lambda v: 12 * v, 17: lambda v: 4, 19: lambda v: 12 * v}


def parse_types(data: bytes) -> list[tuple[int, str, int, list[tuple[str, int, int]]]]:
    """[(kind, name, size_or_type, members[(name, type_id, bit_offset)])] for type ids 1.."""
    _magic, _ver, _flags, hdr_len, type_off, type_len, str_off, _str_len = _HDR.unpack_from(data)
    types_at = hdr_len + type_off
    strings_at = hdr_len + str_off

    def name(off: int) -> str:
        end = data.find(b"\0", strings_at + off)
        return data[strings_at + off:end].decode(errors="replace")

    out = []
    pos = types_at
    while pos < types_at + type_len:
        name_off, info, size_or_type = _TYPE.unpack_from(data, pos)
        kind = (info >> 24) & 0x1F
        vlen = info & 0xFFFF
        kind_flag = info >> 31
        pos += _TYPE.size
        members = []
        if kind in (STRUCT, UNION):
            for i in range(vlen):
                m_name, m_type, m_off = _TYPE.unpack_from(data, pos + 12 * i)
                members.append((name(m_name), m_type, m_off & 0xFFFFFF if kind_flag else m_off))
        out.append((kind, name(name_off), size_or_type, members))
        pos += _EXTRA.get(kind, lambda v: 0)(vlen)
    return out


def spin_lock_offset(btf, type_id: int) -> int | None:
    """Byte offset of a top-level struct bpf_spin_lock member of the value type, or None."""
    try:
        types = parse_types(btf.data)
    except (struct.error, IndexError, ValueError):
        return None

    def resolve(tid: int):
        for _ in range(32):
            if not 0 < tid <= len(types):
                return None
            t = types[tid - 1]
            if t[0] not in _MODIFIERS:
                return t
            tid = t[2]
        return None

    value = resolve(type_id)
    if value is None or value[0] not in (STRUCT, UNION):
        return None
    for _name, m_type, bit_off in value[3]:
        t = resolve(m_type)
        if t is not None and t[0] == STRUCT and t[1] == "bpf_spin_lock":
            return bit_off // 8
    return None
