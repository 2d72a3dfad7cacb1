"""Key/value codecs: map bytes <-> Python values, from BTF or from a type the caller gives.

A map only knows sizes; what the bytes mean comes from the object's BTF (the key/value type
ids of a BTF-defined map) or from the caller (a ``struct`` format, a ctypes type, or a codec).
Without either, keys and values of 1/2/4/8 bytes are unsigned ints and others raw bytes, which
is what almost every example map holds.

BTF decoding turns ints (signed or not, any width), enums, pointers, floats, structs/unions
(dicts by member name; bitfields included), arrays (lists) and char arrays (str up to the first
NUL) into Python values. The type section is parsed here from the raw BTF bytes, so this module
needs nothing from the object parser but ``(btf_bytes, type_id)``.
"""

from __future__ import annotations

import ctypes
import struct
from dataclasses import dataclass, field
from typing import Any

from .errors import BtfError

# BTF kinds (linux/btf.h).
BTF_KIND_INT = 1
BTF_KIND_PTR = 2
BTF_KIND_ARRAY = 3
BTF_KIND_STRUCT = 4
BTF_KIND_UNION = 5
BTF_KIND_ENUM = 6
BTF_KIND_FWD = 7
BTF_KIND_TYPEDEF = 8
BTF_KIND_VOLATILE = 9
BTF_KIND_CONST = 10
BTF_KIND_RESTRICT = 11
BTF_KIND_FUNC = 12
BTF_KIND_FUNC_PROTO = 13
BTF_KIND_VAR = 14
BTF_KIND_DATASEC = 15
BTF_KIND_FLOAT = 16
BTF_KIND_DECL_TAG = 17
BTF_KIND_TYPE_TAG = 18
BTF_KIND_ENUM64 = 19

BTF_INT_SIGNED = 1 << 0
BTF_INT_CHAR = 1 << 1
BTF_INT_BOOL = 1 << 2

_HEADER = struct.Struct("<HBBIIIII")  # magic, version, flags, hdr_len, type_off, type_len, str_off, str_len
_TYPE = struct.Struct("<III")  # name_off, info, size/type
BTF_MAGIC = 0xEB9F


@dataclass
class BtfMember:
    name: str
    type_id: int
    bit_offset: int
    bitfield_size: int = 0


@dataclass
class BtfTypeInfo:
    """One parsed type: just what decoding needs."""

    kind: int
    name: str
    size_or_type: int
    vlen: int = 0
    kind_flag: bool = False
    int_encoding: int = 0
    int_bits: int = 0
    int_offset: int = 0
    elem_type: int = 0
    nelems: int = 0
    members: list[BtfMember] = field(default_factory=list)
    enum_signed: bool = False
    vars: list[tuple[int, int, int]] = field(default_factory=list)  # DATASEC: (var type id, offset, size)
    enumerators: list[tuple[str, int]] = field(default_factory=list)  # ENUM/ENUM64: (name, value)


class BtfTypes:
    """The type table of a raw BTF blob (ids start at 1; 0 is void)."""

    def __init__(self, raw: bytes) -> None:
        if len(raw) < _HEADER.size:
            raise BtfError("BTF blob shorter than its header")
        magic, _ver, _flags, hdr_len, type_off, type_len, str_off, str_len = _HEADER.unpack_from(raw)
        if magic != BTF_MAGIC:
            raise BtfError(f"bad BTF magic {magic:#x}")
        base = hdr_len
        self.strings = raw[base + str_off : base + str_off + str_len]
        data = raw[base + type_off : base + type_off + type_len]
        self.types: list[BtfTypeInfo | None] = [None]
        pos = 0
        while pos + _TYPE.size <= len(data):
            name_off, info, size_or_type = _TYPE.unpack_from(data, pos)
            pos += _TYPE.size
            kind = (info >> 24) & 0x1F
            vlen = info & 0xFFFF
            t = BtfTypeInfo(kind, self._str(name_off), size_or_type, vlen, bool(info >> 31))
            if kind == BTF_KIND_INT:
                (word,) = struct.unpack_from("<I", data, pos)
                pos += 4
                t.int_encoding, t.int_offset, t.int_bits = (word >> 24) & 0xF, (word >> 16) & 0xFF, word & 0xFF
            elif kind == BTF_KIND_ARRAY:
                t.elem_type, _index, t.nelems = struct.unpack_from("<III", data, pos)
                pos += 12
            elif kind in (BTF_KIND_STRUCT, BTF_KIND_UNION):
                for _ in range(vlen):
                    m_name, m_type, m_off = struct.unpack_from("<III", data, pos)
                    pos += 12
                    if t.kind_flag:
                        t.members.append(BtfMember(self._str(m_name), m_type, m_off & 0xFFFFFF, m_off >> 24))
                    else:
                        t.members.append(BtfMember(self._str(m_name), m_type, m_off))
            elif kind == BTF_KIND_ENUM:
                t.enum_signed = t.kind_flag
                for _ in range(vlen):
                    e_name, e_val = struct.unpack_from("<Ii" if t.kind_flag else "<II", data, pos)
                    t.enumerators.append((self._str(e_name), e_val))
                    pos += 8
            elif kind == BTF_KIND_ENUM64:
                t.enum_signed = t.kind_flag
                for _ in range(vlen):
                    e_name, lo, hi = struct.unpack_from("<III", data, pos)
                    value = (hi << 32) | lo
                    if t.kind_flag and value >> 63:
                        value -= 1 << 64
                    t.enumerators.append((self._str(e_name), value))
                    pos += 12
            elif kind == BTF_KIND_FUNC_PROTO:
                pos += 8 * vlen
            elif kind == BTF_KIND_VAR:
                pos += 4
            elif kind == BTF_KIND_DATASEC:
                for _ in range(vlen):
                    t.vars.append(struct.unpack_from("<III", data, pos))
                    pos += 12
            elif kind == BTF_KIND_DECL_TAG:
                pos += 4
            self.types.append(t)

    def _str(self, off: int) -> str:
        end = self.strings.find(b"\0", off)
        return self.strings[off : end if end >= 0 else len(self.strings)].decode(errors="replace")

    def get(self, type_id: int) -> BtfTypeInfo:
        if not 0 < type_id < len(self.types):
            raise BtfError(f"BTF type id {type_id} out of range (1..{len(self.types) - 1})")
        return self.types[type_id]  # type: ignore[return-value]

    def resolve(self, type_id: int) -> BtfTypeInfo:
        """Skip typedef/const/volatile/restrict/type_tag to the type that has a layout."""
        for _ in range(64):
            t = self.get(type_id)
            if t.kind not in (BTF_KIND_TYPEDEF, BTF_KIND_VOLATILE, BTF_KIND_CONST, BTF_KIND_RESTRICT,
                              BTF_KIND_TYPE_TAG):
                return t
            type_id = t.size_or_type
        raise BtfError("BTF type chain too long")

    def size_of(self, type_id: int) -> int:
        t = self.resolve(type_id)
        if t.kind in (BTF_KIND_INT, BTF_KIND_STRUCT, BTF_KIND_UNION, BTF_KIND_ENUM, BTF_KIND_ENUM64, BTF_KIND_FLOAT,
                      BTF_KIND_DATASEC):
            return t.size_or_type
        if t.kind == BTF_KIND_PTR:
            return 8
        if t.kind == BTF_KIND_ARRAY:
            return t.nelems * self.size_of(t.elem_type)
        if t.kind == BTF_KIND_VAR:
            return self.size_of(t.size_or_type)
        raise BtfError(f"BTF type {type_id} (kind {t.kind}) has no size")

    def decode(self, type_id: int, raw: bytes | memoryview, bit_offset: int = 0, bit_size: int = 0) -> Any:
        t = self.resolve(type_id)
        if t.kind == BTF_KIND_INT:
            nbytes = t.size_or_type
            signed = bool(t.int_encoding & BTF_INT_SIGNED)
            if bit_size or t.int_offset or t.int_bits != nbytes * 8:
                width = bit_size or t.int_bits
                shift = bit_offset + t.int_offset
                value = (int.from_bytes(bytes(raw), "little") >> shift) & ((1 << width) - 1)
                if signed and value >> (width - 1):
                    value -= 1 << width
                return bool(value) if t.int_encoding & BTF_INT_BOOL else value
            value = int.from_bytes(bytes(raw[:nbytes]), "little", signed=signed)
            return bool(value) if t.int_encoding & BTF_INT_BOOL else value
        if t.kind in (BTF_KIND_ENUM, BTF_KIND_ENUM64):
            return int.from_bytes(bytes(raw[: t.size_or_type]), "little", signed=t.enum_signed)
        if t.kind == BTF_KIND_PTR:
            return int.from_bytes(bytes(raw[:8]), "little")
        if t.kind == BTF_KIND_FLOAT:
            return struct.unpack_from({4: "<f", 8: "<d"}.get(t.size_or_type, "<d"), raw)[0]
        if t.kind == BTF_KIND_ARRAY:
            elem = self.resolve(t.elem_type)
            esize = self.size_of(t.elem_type)
            if elem.kind == BTF_KIND_INT and esize == 1 and (elem.int_encoding & BTF_INT_CHAR or elem.name == "char"):
                chunk = bytes(raw[: t.nelems])
                return chunk.split(b"\0", 1)[0].decode(errors="replace")
            return [self.decode(t.elem_type, raw[i * esize : (i + 1) * esize]) for i in range(t.nelems)]
        if t.kind in (BTF_KIND_STRUCT, BTF_KIND_UNION):
            out: dict[str, Any] = {}
            for i, m in enumerate(t.members):
                name = m.name or f"_{i}"
                if m.bitfield_size:
                    byte = m.bit_offset // 8
                    size = self.size_of(m.type_id)
                    out[name] = self.decode(m.type_id, raw[byte : byte + size], m.bit_offset % 8, m.bitfield_size)
                else:
                    byte = m.bit_offset // 8
                    out[name] = self.decode(m.type_id, raw[byte : byte + self.size_of(m.type_id)])
            return out
        if t.kind == BTF_KIND_DATASEC:  # a global-data map's value: its variables by name
            out = {}
            for var_id, off, size in t.vars:
                var = self.get(var_id)
                out[var.name] = self.decode(var.size_or_type, raw[off : off + size])
            return out
        raise BtfError(f"cannot decode BTF kind {t.kind}")

    def encode(self, type_id: int, value: Any) -> bytes:
        """The inverse of decode for ints, enums, pointers, char arrays, arrays and structs."""
        size = self.size_of(type_id)
        if isinstance(value, bytes | bytearray | memoryview):
            return _exact(bytes(value), size)
        t = self.resolve(type_id)
        if t.kind in (BTF_KIND_INT, BTF_KIND_ENUM, BTF_KIND_ENUM64, BTF_KIND_PTR):
            signed = bool(t.int_encoding & BTF_INT_SIGNED) if t.kind == BTF_KIND_INT else t.enum_signed
            return int(value).to_bytes(size, "little", signed=signed and int(value) < 0)
        if t.kind == BTF_KIND_FLOAT:
            return struct.pack({4: "<f", 8: "<d"}.get(size, "<d"), value)
        if t.kind == BTF_KIND_ARRAY:
            if isinstance(value, str):
                return _exact(value.encode()[:size].ljust(size, b"\0"), size)
            esize = self.size_of(t.elem_type)
            out = b"".join(self.encode(t.elem_type, v) for v in value)
            return out.ljust(t.nelems * esize, b"\0")
        if t.kind in (BTF_KIND_STRUCT, BTF_KIND_UNION):
            buf = bytearray(size)
            for m in t.members:
                if m.name not in value:
                    continue
                if m.bitfield_size:
                    word = int.from_bytes(buf, "little")
                    mask = ((1 << m.bitfield_size) - 1) << m.bit_offset
                    word = (word & ~mask) | ((int(value[m.name]) << m.bit_offset) & mask)
                    buf[:] = word.to_bytes(size, "little")
                else:
                    part = self.encode(m.type_id, value[m.name])
                    buf[m.bit_offset // 8 : m.bit_offset // 8 + len(part)] = part
            return bytes(buf)
        if t.kind == BTF_KIND_DATASEC:
            buf = bytearray(size)
            for var_id, off, vsize in t.vars:
                var = self.get(var_id)
                if var.name in value:
                    buf[off : off + vsize] = self.encode(var.size_or_type, value[var.name])
            return bytes(buf)
        raise BtfError(f"cannot encode BTF kind {t.kind}")


def _exact(raw: bytes, size: int) -> bytes:
    if len(raw) != size:
        raise ValueError(f"expected {size} bytes, got {len(raw)}")
    return raw


class Codec:
    """Converts between one map key/value (``size`` bytes) and a Python value."""

    size: int

    def encode(self, value: Any) -> bytes:
        raise NotImplementedError

    def decode(self, raw: bytes) -> Any:
        raise NotImplementedError


class BytesCodec(Codec):
    def __init__(self, size: int) -> None:
        self.size = size

    def encode(self, value: Any) -> bytes:
        if isinstance(value, int):  # an int of the field's width (a u128 counter, say)
            return value.to_bytes(self.size, "little", signed=value < 0)
        if isinstance(value, str):
            value = value.encode().ljust(self.size, b"\0")
        return _exact(bytes(value), self.size)

    def decode(self, raw: bytes) -> Any:
        return bytes(raw)


class IntCodec(Codec):
    """Little-endian integers (native order of every arch the project models)."""

    def __init__(self, size: int, signed: bool = False) -> None:
        self.size = size
        self.signed = signed

    def encode(self, value: Any) -> bytes:
        if isinstance(value, bytes | bytearray | memoryview):
            return _exact(bytes(value), self.size)
        value = int(value)
        return value.to_bytes(self.size, "little", signed=self.signed or value < 0)

    def decode(self, raw: bytes) -> int:
        return int.from_bytes(raw[: self.size], "little", signed=self.signed)


class StructCodec(Codec):
    """A ``struct`` format: one field decodes to its value, several to a tuple."""

    def __init__(self, fmt: str | struct.Struct) -> None:
        self.st = fmt if isinstance(fmt, struct.Struct) else struct.Struct(fmt)
        self.size = self.st.size
        self.single = len(self.st.unpack(bytes(self.size))) == 1

    def encode(self, value: Any) -> bytes:
        if isinstance(value, bytes | bytearray | memoryview):
            return _exact(bytes(value), self.size)
        return self.st.pack(value) if self.single else self.st.pack(*value)

    def decode(self, raw: bytes) -> Any:
        out = self.st.unpack_from(raw)
        return out[0] if self.single else out


class CtypesCodec(Codec):
    """A ctypes type: values decode to instances (copies) of it."""

    def __init__(self, ctype: type) -> None:
        self.ctype = ctype
        self.size = ctypes.sizeof(ctype)

    def encode(self, value: Any) -> bytes:
        if isinstance(value, bytes | bytearray | memoryview):
            return _exact(bytes(value), self.size)
        if not isinstance(value, self.ctype):
            value = self.ctype(value)
        return bytes(value)

    def decode(self, raw: bytes) -> Any:
        obj = self.ctype.from_buffer_copy(bytes(raw[: self.size]))
        return obj.value if isinstance(obj, ctypes._SimpleCData) else obj


class BtfCodec(Codec):
    """Decodes through a closure compiled once from the BTF type (no type walking per value)."""

    def __init__(self, types: BtfTypes, type_id: int) -> None:
        self.types = types
        self.type_id = type_id
        self.size = types.size_of(type_id)
        self._decode = compile_decoder(types, type_id)

    def encode(self, value: Any) -> bytes:
        return self.types.encode(self.type_id, value)

    def decode(self, raw: bytes) -> Any:
        return self._decode(raw)


_INT_FMT = {(1, False): "<B", (1, True): "<b", (2, False): "<H", (2, True): "<h", (4, False): "<I", (4, True): "<i",
            (8, False): "<Q", (8, True): "<q"}


def compile_decoder(types: BtfTypes, type_id: int):
    """A function bytes -> value equal to ``types.decode(type_id, ·)``, built once per type."""
    t = types.resolve(type_id)
    if t.kind == BTF_KIND_INT and not t.int_offset and t.int_bits == t.size_or_type * 8:
        fmt = _INT_FMT.get((t.size_or_type, bool(t.int_encoding & BTF_INT_SIGNED)))
        if fmt is not None:
            unpack = struct.Struct(fmt).unpack_from
            if t.int_encoding & BTF_INT_BOOL:
                return lambda raw: bool(unpack(raw)[0])
            return lambda raw: unpack(raw)[0]
    if t.kind == BTF_KIND_ARRAY:
        elem = types.resolve(t.elem_type)
        esize = types.size_of(t.elem_type)
        n = t.nelems
        if elem.kind == BTF_KIND_INT and esize == 1 and (elem.int_encoding & BTF_INT_CHAR or elem.name == "char"):
            return lambda raw: bytes(raw[:n]).split(b"\0", 1)[0].decode(errors="replace")
        dec = compile_decoder(types, t.elem_type)
        return lambda raw: [dec(raw[i * esize : (i + 1) * esize]) for i in range(n)]
    if t.kind in (BTF_KIND_STRUCT, BTF_KIND_UNION) and not any(m.bitfield_size for m in t.members):
        fields = []
        for i, m in enumerate(t.members):
            off = m.bit_offset // 8
            size = types.size_of(m.type_id)
            fields.append((m.name or f"_{i}", off, off + size, compile_decoder(types, m.type_id)))
        return lambda raw: {name: dec(raw[lo:hi]) for name, lo, hi, dec in fields}
    return lambda raw: types.decode(type_id, raw)  # bitfields, datasecs, enums, floats: the general walk


def default_codec(size: int) -> Codec:
    return IntCodec(size) if size in (1, 2, 4, 8) else BytesCodec(size)


def make_codec(spec: Any, size: int, btf: BtfTypes | None = None, type_id: int = 0) -> Codec:
    """The codec for a key or value of ``size`` bytes.

    spec: None (BTF when ``btf`` and ``type_id`` are given, else the default), a Codec, a
    ``struct`` format or Struct, a ctypes type, ``bytes`` (raw) or ``int`` (unsigned int).
    A spec whose size differs from the map's is a ValueError: silently reading the wrong
    width is the bug this check prevents.
    """
    if spec is None:
        if btf is not None and type_id:
            try:
                codec: Codec = BtfCodec(btf, type_id)
                if codec.size == size:
                    return codec
            except BtfError:
                pass
        return default_codec(size)
    if isinstance(spec, Codec):
        codec = spec
    elif spec is bytes:
        codec = BytesCodec(size)
    elif spec is int:
        codec = IntCodec(size)
    elif isinstance(spec, str | struct.Struct):
        codec = StructCodec(spec)
    elif isinstance(spec, type) and issubclass(spec, ctypes._SimpleCData | ctypes.Structure | ctypes.Union
                                              | ctypes.Array):
        codec = CtypesCodec(spec)
    else:
        raise TypeError(f"unsupported key/value type {spec!r}: use a struct format, a ctypes type, int or bytes")
    if codec.size != size:
        raise ValueError(f"type {spec!r} is {codec.size} bytes but the map's is {size}")
    return codec
