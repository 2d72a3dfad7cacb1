"""BTF sanitizing: rewrite type kinds an older kernel does not know into ones it does.

When BPF_BTF_LOAD refuses an object's BTF, libbpf and Aya rewrite the kinds newer kernels
added and try again, keeping every type id (so map key/value ids stay valid) and every
record's size (so the blob's layout does not move). The rewrites, each one a known fact of
libbpf's behaviour:

- VAR -> INT (1 byte, 8 bits), keeping the variable's name;
- DATASEC -> STRUCT of the same size, one member per variable (bit offset = offset * 8),
  with the section name made a C identifier ('.' and '/' become '_');
- FUNC -> TYPEDEF; FUNC_PROTO -> ENUM (4 bytes), one enumerator per parameter (unnamed
  parameters get one shared name appended to the strings: Linux refuses nameless enumerators);
- FLOAT -> anonymous empty STRUCT of the same size;
- DECL_TAG -> anonymous INT (1 byte); TYPE_TAG -> anonymous CONST.
"""

from __future__ import annotations

import struct

from .btf_values import (
    BTF_KIND_ARRAY,
    BTF_KIND_CONST,
    BTF_KIND_DATASEC,
    BTF_KIND_DECL_TAG,
    BTF_KIND_ENUM,
    BTF_KIND_ENUM64,
    BTF_KIND_FLOAT,
    BTF_KIND_FUNC,
    BTF_KIND_FUNC_PROTO,
    BTF_KIND_INT,
    BTF_KIND_STRUCT,
    BTF_KIND_TYPE_TAG,
    BTF_KIND_TYPEDEF,
    BTF_KIND_UNION,
    BTF_KIND_VAR,
    BTF_MAGIC,
)
from .errors import BtfError

_HEADER = struct.Struct("<HBBIIIII")
_TYPE = struct.Struct("<III")
_INT_8BIT = 8  # BTF_INT_ENC(encoding 0, offset 0, bits 8)
PARAM_NAME = b"__param"

NEW_KINDS = frozenset({BTF_KIND_VAR, BTF_KIND_DATASEC, BTF_KIND_FUNC, BTF_KIND_FUNC_PROTO, BTF_KIND_FLOAT,
                       BTF_KIND_DECL_TAG, BTF_KIND_TYPE_TAG})


def _info(kind: int, vlen: int = 0, kind_flag: bool = False) -> int:
    return (int(kind_flag) << 31) | (kind << 24) | (vlen & 0xFFFF)


def _extra_size(kind: int, vlen: int) -> int:
    """Bytes after the 12-byte common part, per kind (linux/btf.h)."""
    if kind in (BTF_KIND_INT, BTF_KIND_VAR, BTF_KIND_DECL_TAG):
        return 4
    if kind == BTF_KIND_ARRAY:
        return 12
    if kind in (BTF_KIND_STRUCT, BTF_KIND_UNION, BTF_KIND_DATASEC, BTF_KIND_ENUM64):
        return 12 * vlen
    if kind in (BTF_KIND_ENUM, BTF_KIND_FUNC_PROTO):
        return 8 * vlen
    return 0


def type_kinds(raw: bytes) -> list[int]:
    """The kind of every type in the blob, in id order (id 1 first)."""
    return [kind for kind, _pos in _walk(raw)[1]]


def _walk(raw: bytes | bytearray) -> tuple[int, list[tuple[int, int]]]:
    if len(raw) < _HEADER.size:
        raise BtfError("BTF blob shorter than its header")
    magic, _v, _f, hdr_len, type_off, type_len, _so, _sl = _HEADER.unpack_from(raw)
    if magic != BTF_MAGIC:
        raise BtfError(f"bad BTF magic {magic:#x}")
    start = hdr_len + type_off
    end = start + type_len
    pos = start
    out: list[tuple[int, int]] = []
    while pos + _TYPE.size <= end:
        _name, info, _size = _TYPE.unpack_from(raw, pos)
        kind, vlen = (info >> 24) & 0x1F, info & 0xFFFF
        out.append((kind, pos))
        pos += _TYPE.size + _extra_size(kind, vlen)
    return start, out


def sanitize(raw: bytes, kinds: frozenset[int] = NEW_KINDS) -> bytes:
    """A copy of the BTF blob with the given kinds rewritten (see the module docstring)."""
    buf = bytearray(raw)
    magic, version, flags, hdr_len, type_off, type_len, str_off, str_len = _HEADER.unpack_from(buf)
    strings_at = hdr_len + str_off
    _start, types = _walk(buf)
    # Enumerators need a name where parameters may have none: one shared string, appended.
    param_name = 0
    if BTF_KIND_FUNC_PROTO in kinds and strings_at + str_len == len(buf):
        param_name = str_len
        buf += PARAM_NAME + b"\0"
        str_len += len(PARAM_NAME) + 1
        _HEADER.pack_into(buf, 0, magic, version, flags, hdr_len, type_off, type_len, str_off, str_len)
    for kind, pos in types:
        if kind not in kinds:
            continue
        name_off, info, size_or_type = _TYPE.unpack_from(buf, pos)
        vlen = info & 0xFFFF
        body = pos + _TYPE.size
        if kind == BTF_KIND_VAR:
            _TYPE.pack_into(buf, pos, name_off, _info(BTF_KIND_INT), 1)
            struct.pack_into("<I", buf, body, _INT_8BIT)
        elif kind == BTF_KIND_DATASEC:
            _dot_to_underscore(buf, strings_at, str_len, name_off)
            _TYPE.pack_into(buf, pos, name_off, _info(BTF_KIND_STRUCT, vlen), size_or_type)
            for i in range(vlen):
                var_id, offset, _vsize = struct.unpack_from("<III", buf, body + 12 * i)
                var_kind, var_pos = types[var_id - 1] if 0 < var_id <= len(types) else (0, -1)
                var_name = _TYPE.unpack_from(buf, var_pos)[0] if var_pos >= 0 else 0
                struct.pack_into("<III", buf, body + 12 * i, var_name, var_id, offset * 8)
        elif kind == BTF_KIND_FUNC:
            _TYPE.pack_into(buf, pos, name_off, _info(BTF_KIND_TYPEDEF), size_or_type)
        elif kind == BTF_KIND_FUNC_PROTO:
            _TYPE.pack_into(buf, pos, name_off, _info(BTF_KIND_ENUM, vlen), 4)
            for i in range(vlen):  # enumerators {name_off, val}: keep names, number them
                pname = struct.unpack_from("<I", buf, body + 8 * i)[0] or param_name
                struct.pack_into("<Ii", buf, body + 8 * i, pname, i)
        elif kind == BTF_KIND_FLOAT:
            _TYPE.pack_into(buf, pos, 0, _info(BTF_KIND_STRUCT), size_or_type)
        elif kind == BTF_KIND_DECL_TAG:
            _TYPE.pack_into(buf, pos, 0, _info(BTF_KIND_INT), 1)
            struct.pack_into("<I", buf, body, _INT_8BIT)
        elif kind == BTF_KIND_TYPE_TAG:
            _TYPE.pack_into(buf, pos, 0, _info(BTF_KIND_CONST), size_or_type)
    return bytes(buf)


_IDENT = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")


def _dot_to_underscore(buf: bytearray, strings_at: int, str_len: int, off: int) -> None:
    """Make a section name a C identifier in place: ".data" -> "_data", "maps/COUNTS" -> "maps_COUNTS"."""
    i = strings_at + off
    end = strings_at + str_len
    first = True
    while i < end and buf[i]:
        if buf[i] not in _IDENT or (first and chr(buf[i]).isdigit()):
            buf[i] = ord("_")
        first = False
        i += 1
