"""Decoding the bytes a BPF program sends (perf samples, ring buffer records) into Python values.

The object's BTF says what the program's ``struct event`` looks like; this module turns that
struct into a decoder compiled once - a ``struct.Struct`` over the fixed-layout fields plus a
short list of fix-ups (C strings, nested structs, arrays, bitfields) - so that decoding an
event is one ``unpack_from`` and a few slices, not a walk over BTF per event (DESIGN.md "Hot
paths"). Without BTF, or when no struct fits the sample size, events are shown as hex.

Which struct is "the event"? Nothing in the object says so (the perf event array's value is
an fd), so ``find_event_type`` picks the struct whose size matches the sample's - perf pads
raw samples to 8 bytes, so a sample may be up to 7 bytes longer than its struct - and, among
several, prefers the names tools use (``event``, ``data_t``, ...). A caller that knows better
names the struct.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from .obj.btf import INT_BOOL, INT_CHAR, INT_SIGNED, Btf, BtfType

PREFERRED_NAMES = ("event", "event_t", "data_t", "data", "sample", "record")
_INT_FMT = {(1, False): "B", (1, True): "b", (2, False): "H", (2, True): "h",
            (4, False): "I", (4, True): "i", (8, False): "Q", (8, True): "q"}
_MAX_DEPTH = 16


def c_string(raw: bytes) -> str:
    """A NUL-terminated char array as text (undecodable bytes escaped, as bpftool shows them)."""
    end = raw.find(b"\0")
    if end >= 0:
        raw = raw[:end]
    return raw.decode("utf-8", "backslashreplace")


class EventDecoder:
    """bytes -> dict of field name -> value, for one BTF struct (compiled at construction)."""

    def __init__(self, btf: Btf, type_id: int) -> None:
        self.btf = btf
        self.type = btf.skip_modifiers(type_id)
        if self.type.kind not in ("STRUCT", "UNION"):
            raise ValueError(f"type [{type_id}] is a {self.type.kind}, not a struct")
        self.name = self.type.name or "(anon)"
        self.size = self.type.size
        self._decode = _compile_struct(btf, self.type, 0)

    def decode(self, raw: bytes) -> dict[str, Any]:
        if len(raw) < self.size:
            raw = bytes(raw) + bytes(self.size - len(raw))  # a short sample: missing bytes read as 0
        return self._decode(raw, 0)


def _is_char(btf: Btf, type_id: int) -> bool:
    t = btf.skip_modifiers(type_id)
    return t.kind == "INT" and t.size == 1 and (bool(t.int_encoding & INT_CHAR) or t.name in ("char", "signed char",
                                                                                              "unsigned char"))


def _scalar(btf: Btf, t: BtfType) -> Callable[[bytes, int], Any] | None:
    """A decoder of one scalar at an offset, or None if t is not a scalar."""
    if t.kind in ("INT", "ENUM", "ENUM64") and t.size in (1, 2, 4, 8):
        signed = bool(t.int_encoding & INT_SIGNED) if t.kind == "INT" else t.kind_flag
        s = struct.Struct("<" + _INT_FMT[(t.size, signed)])
        if t.kind == "INT" and t.int_encoding & INT_BOOL:
            return lambda raw, off: bool(s.unpack_from(raw, off)[0])
        if t.kind != "INT" and t.enum_values:
            mask = (1 << (8 * t.size)) - 1
            names = {v & mask: n for n, v in t.enum_values}  # BTF may keep -3 as 0xfffffffd

            def enum(raw: bytes, off: int) -> Any:
                v = s.unpack_from(raw, off)[0]
                return names.get(v & mask, v)

            return enum
        return lambda raw, off: s.unpack_from(raw, off)[0]
    if t.kind == "PTR":
        return lambda raw, off: struct.unpack_from("<Q", raw, off)[0]
    if t.kind == "FLOAT" and t.size in (4, 8):
        s = struct.Struct("<f" if t.size == 4 else "<d")
        return lambda raw, off: s.unpack_from(raw, off)[0]
    return None


def _compile(btf: Btf, type_id: int, depth: int) -> Callable[[bytes, int], Any]:
    if depth > _MAX_DEPTH:
        return lambda raw, off: None
    t = btf.skip_modifiers(type_id)
    scalar = _scalar(btf, t)
    if scalar is not None:
        return scalar
    if t.kind in ("STRUCT", "UNION"):
        return _compile_struct(btf, t, depth + 1)
    if t.kind == "ARRAY" and t.array is not None:
        elem, _index, n = t.array
        if _is_char(btf, elem):
            return lambda raw, off: c_string(raw[off : off + n])
        esize = btf.size_of(elem)
        inner = _compile(btf, elem, depth + 1)
        return lambda raw, off: [inner(raw, off + i * esize) for i in range(n)]
    size = btf.size_of(type_id) if t.kind not in ("VOID", "UNKN", "FWD", "FUNC_PROTO") else 0
    return lambda raw, off: bytes(raw[off : off + size]).hex()


def _compile_struct(btf: Btf, t: BtfType, depth: int) -> Callable[[bytes, int], dict[str, Any]]:
    """One struct.Struct for the byte-aligned scalar and char-array fields, fix-ups for the rest."""
    fmt = ["<"]
    pos = 0
    fast: list[tuple[str, Callable[[Any], Any] | None]] = []  # (name, post-process) in fmt order
    slow: list[tuple[str, int, Callable[[bytes, int], Any]]] = []
    order: list[str] = []
    for i, m in enumerate(t.members):
        name = m.name or f"_anon{i}"
        order.append(name)
        mt = btf.skip_modifiers(m.type)
        if m.bitfield_size or m.bit_offset % 8:
            slow.append((name, 0, _bitfield(btf, mt, m.bit_offset, m.bitfield_size or btf.size_of(m.type) * 8)))
            continue
        off = m.bit_offset // 8
        code = None
        post = None
        if t.kind == "STRUCT" and off >= pos:
            if mt.kind in ("INT", "ENUM", "ENUM64") and mt.size in (1, 2, 4, 8) and not (
                    mt.kind == "INT" and mt.int_encoding & INT_BOOL) and not (mt.kind != "INT" and mt.enum_values):
                signed = bool(mt.int_encoding & INT_SIGNED) if mt.kind == "INT" else mt.kind_flag
                code, width = _INT_FMT[(mt.size, signed)], mt.size
            elif mt.kind == "PTR":
                code, width = "Q", 8
            elif mt.kind == "ARRAY" and mt.array is not None and _is_char(btf, mt.array[0]):
                code, width, post = f"{mt.array[2]}s", mt.array[2], c_string
        if code is not None:
            if off > pos:
                fmt.append(f"{off - pos}x")
            fmt.append(code)
            pos = off + width
            fast.append((name, post))
        else:
            slow.append((name, off, _compile(btf, m.type, depth + 1)))
    packed = struct.Struct("".join(fmt))
    names = [n for n, _ in fast]
    posts = [(i, p) for i, (_, p) in enumerate(fast) if p is not None]
    if not slow and order == names:
        def decode_fast(raw: bytes, off: int) -> dict[str, Any]:
            values = list(packed.unpack_from(raw, off))
            for i, p in posts:
                values[i] = p(values[i])
            return dict(zip(names, values, strict=True))

        return decode_fast

    def decode(raw: bytes, off: int) -> dict[str, Any]:
        values = list(packed.unpack_from(raw, off)) if names else []
        for i, p in posts:
            values[i] = p(values[i])
        got = dict(zip(names, values, strict=True))
        for name, moff, fn in slow:
            got[name] = fn(raw, off + moff)
        return {n: got[n] for n in order}

    return decode


def _bitfield(btf: Btf, t: BtfType, bit_offset: int, bits: int) -> Callable[[bytes, int], int]:
    signed = t.kind == "INT" and bool(t.int_encoding & INT_SIGNED)
    first = bit_offset // 8
    nbytes = (bit_offset % 8 + bits + 7) // 8
    shift = bit_offset % 8
    mask = (1 << bits) - 1

    def decode(raw: bytes, off: int) -> int:
        word = int.from_bytes(raw[off + first : off + first + nbytes], "little")
        v = (word >> shift) & mask
        if signed and v >> (bits - 1):
            v -= 1 << bits
        return v

    return decode


def find_event_type(btf: Btf | None, sample_size: int, *, padded: bool = True, name: str | None = None) -> int | None:
    """The id of the struct the program most likely sends, or None.

    ``padded``: perf samples carry up to 7 bytes of padding after the struct; ring buffer
    records are exact. ``name`` picks a struct by name outright (None if absent).
    """
    if btf is None:
        return None
    structs = [t for t in btf.types if t.kind == "STRUCT" and t.size > 0]
    if name is not None:
        for t in structs:
            if t.name == name:
                return t.id
        return None

    def fits(t: BtfType) -> bool:
        return t.size <= sample_size < t.size + 8 if padded else t.size == sample_size

    candidates = [t for t in structs if fits(t) and not t.name.startswith("bpf_") and t.name != "pt_regs"]
    if not candidates:
        return None
    for preferred in PREFERRED_NAMES:
        for t in candidates:
            if t.name == preferred:
                return t.id
    for t in candidates:
        if "event" in t.name:
            return t.id
    # Closest size first (less padding), then the first defined.
    candidates.sort(key=lambda t: sample_size - t.size)
    return candidates[0].id


class SampleFormatter:
    """Decodes samples of one stream, choosing the struct on the first sample it sees.

    ``decode(raw)`` gives a dict (decoded fields, or {"data": hex} without a type) and
    ``text(fields)`` the one-line form the plain output prints.
    """

    def __init__(self, sources: Btf | list[Btf] | None, *, padded: bool = True, type_name: str | None = None) -> None:
        if sources is None:
            sources = []
        self.sources = [sources] if isinstance(sources, Btf) else list(sources)
        self.padded = padded
        self.type_name = type_name
        self._decoders: dict[int, EventDecoder | None] = {}  # by sample size

    def decoder_for(self, size: int) -> EventDecoder | None:
        if size not in self._decoders:
            self._decoders[size] = None
            for btf in self.sources:
                type_id = find_event_type(btf, size, padded=self.padded, name=self.type_name)
                if type_id is not None:
                    self._decoders[size] = EventDecoder(btf, type_id)
                    break
        return self._decoders[size]

    def decode(self, raw: bytes) -> dict[str, Any]:
        dec = self.decoder_for(len(raw))
        if dec is None:
            return {"data": bytes(raw).hex()}
        return dec.decode(raw)

    @staticmethod
    def text(fields: dict[str, Any]) -> str:
        return " ".join(f"{k}={_short(v)}" for k, v in fields.items() if not k.startswith("_"))


def _short(v: Any) -> str:
    if isinstance(v, str):
        return v if v and " " not in v else repr(v)
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}={_short(x)}" for k, x in v.items()) + "}"
    if isinstance(v, list) and len(v) > 8:
        return "[" + ", ".join(map(str, v[:8])) + ", ...]"
    return str(v)


# -- DWARF: where the event struct lives when BTF does not carry it --------------------------------
#
# clang emits BTF only for types reachable from maps, globals and function signatures; a
# program's ``struct event`` is usually a local variable, so it is in the object's DWARF
# (built with -g) but not in its BTF. The types below are translated into the same BtfType
# records, so one compiled decoder serves both.

_DW_ATE_BOOLEAN, _DW_ATE_FLOAT, _DW_ATE_SIGNED, _DW_ATE_SIGNED_CHAR, _DW_ATE_UNSIGNED_CHAR = 0x2, 0x4, 0x5, 0x6, 0x8
_DW_MODIFIERS = {"DW_TAG_typedef": "TYPEDEF", "DW_TAG_const_type": "CONST", "DW_TAG_volatile_type": "VOLATILE",
                 "DW_TAG_restrict_type": "RESTRICT", "DW_TAG_atomic_type": "VOLATILE"}
_DW_TYPES = {"DW_TAG_base_type", "DW_TAG_pointer_type", "DW_TAG_structure_type", "DW_TAG_union_type",
             "DW_TAG_array_type", "DW_TAG_enumeration_type", *_DW_MODIFIERS}


def _attr(die, name: str, default: Any = None) -> Any:
    a = die.attributes.get(name)
    return default if a is None else a.value


def _dw_name(die) -> str:
    v = _attr(die, "DW_AT_name", b"")
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


def btf_from_dwarf(elf) -> Btf | None:
    """The struct/int/array/enum types of an ELF's DWARF as a Btf (no raw bytes), or None."""
    if not elf.has_dwarf_info():
        return None
    try:
        dwarf = elf.get_dwarf_info()
        dies = [die for cu in dwarf.iter_CUs() for die in cu.iter_DIEs() if die.tag in _DW_TYPES]
    except Exception:  # malformed DWARF is no reason to refuse an object: decode as hex
        return None
    ids = {die.offset: i + 1 for i, die in enumerate(dies)}
    types = [BtfType(id=0, kind="UNKN", name="")]

    def ref(die) -> int:
        if "DW_AT_type" not in die.attributes:
            return 0
        try:
            return ids.get(die.get_DIE_from_attribute("DW_AT_type").offset, 0)
        except Exception:
            return 0

    for die in dies:
        tid = ids[die.offset]
        name = _dw_name(die)
        size = _attr(die, "DW_AT_byte_size", 0) or 0
        tag = die.tag
        if tag == "DW_TAG_base_type":
            enc = _attr(die, "DW_AT_encoding", 0)
            if enc == _DW_ATE_FLOAT:
                t = BtfType(id=tid, kind="FLOAT", name=name, size=size)
            else:
                bits = (INT_SIGNED if enc in (_DW_ATE_SIGNED, _DW_ATE_SIGNED_CHAR) else 0)
                bits |= INT_CHAR if enc in (_DW_ATE_SIGNED_CHAR, _DW_ATE_UNSIGNED_CHAR) else 0
                bits |= INT_BOOL if enc == _DW_ATE_BOOLEAN else 0
                t = BtfType(id=tid, kind="INT", name=name, size=size, int_encoding=bits, int_bits=size * 8)
        elif tag == "DW_TAG_pointer_type":
            t = BtfType(id=tid, kind="PTR", name="", type=ref(die))
        elif tag in _DW_MODIFIERS:
            t = BtfType(id=tid, kind=_DW_MODIFIERS[tag], name=name, type=ref(die))
        elif tag in ("DW_TAG_structure_type", "DW_TAG_union_type"):
            from .obj.btf import BtfMember

            members = []
            for child in die.iter_children():
                if child.tag != "DW_TAG_member":
                    continue
                loc = _attr(child, "DW_AT_data_member_location", 0)
                bit_off = _attr(child, "DW_AT_data_bit_offset")
                bit_off = bit_off if bit_off is not None else (loc if isinstance(loc, int) else 0) * 8
                msb_off = _attr(child, "DW_AT_bit_offset")  # DWARF 2/3 bitfields count from the MSB
                if msb_off is not None and "DW_AT_data_bit_offset" not in child.attributes:
                    unit = _attr(child, "DW_AT_byte_size", 0) or 0
                    bit_off += unit * 8 - msb_off - (_attr(child, "DW_AT_bit_size", 0) or 0)
                members.append(BtfMember(_dw_name(child), ref(child), bit_off, _attr(child, "DW_AT_bit_size", 0) or 0))
            t = BtfType(id=tid, kind="STRUCT" if tag == "DW_TAG_structure_type" else "UNION", name=name, size=size,
                        members=members, vlen=len(members))
        elif tag == "DW_TAG_enumeration_type":
            values = [(_dw_name(c), _attr(c, "DW_AT_const_value", 0)) for c in die.iter_children()
                      if c.tag == "DW_TAG_enumerator"]
            signed = any(v < 0 for _, v in values)
            t = BtfType(id=tid, kind="ENUM", name=name, size=size or 4, enum_values=values, kind_flag=signed)
        else:  # DW_TAG_array_type: one BTF ARRAY per dimension, innermost last
            dims = []
            for child in die.iter_children():
                if child.tag == "DW_TAG_subrange_type":
                    count = _attr(child, "DW_AT_count")
                    if count is None:
                        upper = _attr(child, "DW_AT_upper_bound")
                        count = upper + 1 if isinstance(upper, int) else 0
                    dims.append(count)
            elem = ref(die)
            for n in reversed(dims[1:]):
                types.append(BtfType(id=len(types) + len(dies) + 1000000, kind="ARRAY", name="", array=(elem, 0, n)))
                elem = types[-1].id
            t = BtfType(id=tid, kind="ARRAY", name="", array=(elem, 0, dims[0] if dims else 0))
        types.append(t)
    # Renumber so that ids index the list, as Btf expects.
    by_id = {t.id: t for t in types}
    order = sorted(by_id)
    remap = {old: new for new, old in enumerate(order)}
    out = []
    for old in order:
        t = by_id[old]
        t.id = remap[old]
        t.type = remap.get(t.type, 0)
        if t.array is not None:
            t.array = (remap.get(t.array[0], 0), 0, t.array[2])
        for m in t.members:
            m.type = remap.get(m.type, 0)
        out.append(t)
    return Btf(raw=b"", types=out, strings=b"")


def object_types(path: str) -> list[Btf]:
    """Type sources of a BPF object file for decoding events: its BTF, then its DWARF."""
    from elftools.elf.elffile import ELFFile

    from .obj.btf import parse_btf

    sources: list[Btf] = []
    try:
        with open(path, "rb") as f:
            elf = ELFFile(f)
            sec = elf.get_section_by_name(".BTF")
            if sec is not None:
                try:
                    sources.append(parse_btf(sec.data()))
                except ValueError:
                    pass
            dwarf = btf_from_dwarf(elf)
            if dwarf is not None:
                sources.append(dwarf)
    except Exception:  # the loader reports a bad object; decoding just falls back to hex
        return sources
    return sources
