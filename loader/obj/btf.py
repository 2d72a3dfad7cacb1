"""BTF and BTF.ext parsing (linux/btf.h layouts), pure: bytes in, Python objects out.

Why the loader needs it: BTF-defined maps (`.maps`) are described only in BTF, the kernel
wants the object's BTF (BPF_BTF_LOAD) plus per-program func_info/line_info to print source
lines in verifier logs, and typed map access decodes keys/values from BTF.

`Btf.raw` keeps the object's bytes; `Btf.fixup_datasecs()` patches the DATASEC sizes and VAR
offsets clang leaves as 0 (libbpf and Aya do the same before BPF_BTF_LOAD) in a copy that
`Btf.to_bytes()` returns. Errors raise BtfError (a ValueError); the ELF parser turns them into
ObjectError naming the section and offset.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

BTF_MAGIC = 0xEB9F

KIND_NAMES = {
    0: "UNKN",
    1: "INT",
    2: "PTR",
    3: "ARRAY",
    4: "STRUCT",
    5: "UNION",
    6: "ENUM",
    7: "FWD",
    8: "TYPEDEF",
    9: "VOLATILE",
    10: "CONST",
    11: "RESTRICT",
    12: "FUNC",
    13: "FUNC_PROTO",
    14: "VAR",
    15: "DATASEC",
    16: "FLOAT",
    17: "DECL_TAG",
    18: "TYPE_TAG",
    19: "ENUM64",
}
KIND = {v: k for k, v in KIND_NAMES.items()}

# Kinds whose third word is a size; the others carry a type id there.
_SIZED = {"INT", "STRUCT", "UNION", "ENUM", "DATASEC", "FLOAT", "ENUM64"}
_MODIFIERS = {"TYPEDEF", "VOLATILE", "CONST", "RESTRICT", "TYPE_TAG"}

INT_SIGNED = 1
INT_CHAR = 2
INT_BOOL = 4

FUNC_LINKAGE = {0: "static", 1: "global", 2: "extern"}
VAR_LINKAGE = {0: "static", 1: "global-alloc", 2: "global-extern"}

_HDR = struct.Struct("<HBBIIIII")
_TYPE = struct.Struct("<III")
_EXT_HDR = struct.Struct("<HBBIIIII")
_U32 = struct.Struct("<I")


class BtfError(ValueError):
    """Malformed BTF; `offset` is the byte offset inside the BTF (or BTF.ext) section."""

    def __init__(self, message: str, offset: int = 0):
        super().__init__(message)
        self.offset = offset


@dataclass
class BtfMember:
    name: str
    type: int
    bit_offset: int
    bitfield_size: int = 0


@dataclass
class BtfType:
    """One BTF type. Fields not meaningful for a kind stay at their defaults."""

    id: int
    kind: str  # "INT", "STRUCT", ... (KIND_NAMES values)
    name: str
    name_off: int = 0
    size: int = 0  # sized kinds
    type: int = 0  # PTR, TYPEDEF, CONST, VOLATILE, RESTRICT, FUNC, VAR, TYPE_TAG, DECL_TAG
    vlen: int = 0
    kind_flag: bool = False
    members: list[BtfMember] = field(default_factory=list)  # STRUCT/UNION
    enum_values: list[tuple[str, int]] = field(default_factory=list)  # ENUM/ENUM64
    params: list[tuple[str, int]] = field(default_factory=list)  # FUNC_PROTO (name, type)
    array: tuple[int, int, int] | None = None  # (elem type, index type, nelems)
    int_encoding: int = 0
    int_bits: int = 0
    int_offset: int = 0
    linkage: int = 0  # FUNC (vlen) / VAR
    secinfo: list[tuple[int, int, int]] = field(default_factory=list)  # DATASEC (var type, offset, size)
    component_idx: int = -1  # DECL_TAG
    byte_offset: int = 0  # where this type's record starts inside the type section


@dataclass
class Btf:
    """The parsed .BTF section. types[0] is void; ids index the list."""

    raw: bytes
    types: list[BtfType]
    strings: bytes
    hdr_len: int = 24
    type_off: int = 0
    str_off: int = 0
    _patched: bytearray | None = None

    # -- lookups -----------------------------------------------------------------------
    def string(self, off: int) -> str:
        return string_at(self.strings, off)

    def type_by_id(self, type_id: int) -> BtfType:
        if not 0 <= type_id < len(self.types):
            raise BtfError(f"type id {type_id} out of range (have {len(self.types) - 1})")
        return self.types[type_id]

    def find(self, name: str, kind: str | None = None) -> BtfType | None:
        for t in self.types:
            if t.name == name and (kind is None or t.kind == kind):
                return t
        return None

    def skip_modifiers(self, type_id: int) -> BtfType:
        """Follow typedef/const/volatile/restrict/type_tag to the underlying type."""
        t = self.type_by_id(type_id)
        seen = 0
        while t.kind in _MODIFIERS:
            t = self.type_by_id(t.type)
            seen += 1
            if seen > 64:
                raise BtfError(f"modifier loop at type {type_id}")
        return t

    def size_of(self, type_id: int, _depth: int = 0) -> int:
        """sizeof() of a type, as the kernel's btf_type_id_size computes it."""
        if _depth > 64:
            raise BtfError(f"type {type_id} nests too deeply")
        t = self.skip_modifiers(type_id)
        if t.kind in _SIZED:
            return t.size
        if t.kind == "PTR":
            return 8
        if t.kind == "ARRAY":
            assert t.array is not None
            return t.array[2] * self.size_of(t.array[0], _depth + 1)
        if t.kind == "VAR":
            return self.size_of(t.type, _depth + 1)
        raise BtfError(f"type [{t.id}] {t.kind} has no size")

    def type_name(self, type_id: int, _depth: int = 0) -> str:
        """A C-ish spelling of a type, for `bpfload inspect`."""
        if type_id == 0:
            return "void"
        if _depth > 16:
            return "..."
        t = self.type_by_id(type_id)
        if t.kind in ("STRUCT", "UNION", "ENUM", "ENUM64", "FWD"):
            tag = {"STRUCT": "struct", "UNION": "union", "FWD": "struct"}.get(t.kind, "enum")
            return f"{tag} {t.name or '(anon)'}"
        if t.kind == "PTR":
            return self.type_name(t.type, _depth + 1) + " *"
        if t.kind == "ARRAY":
            assert t.array is not None
            return f"{self.type_name(t.array[0], _depth + 1)}[{t.array[2]}]"
        if t.kind in ("CONST", "VOLATILE", "RESTRICT"):
            return f"{t.kind.lower()} {self.type_name(t.type, _depth + 1)}"
        if t.kind == "TYPE_TAG":
            return self.type_name(t.type, _depth + 1)
        return t.name or f"({t.kind.lower()})"

    # -- kernel-ready bytes ---------------------------------------------------------------
    def fixup_datasecs(self, section_sizes: dict[str, int], symbol_offsets: dict[str, int]) -> None:
        """Fill DATASEC sizes and VAR offsets from the ELF section headers / symbols.

        clang writes 0 for both in objects (the linker would fix them); the kernel rejects a
        DATASEC whose vars lie outside its size, so libbpf and Aya patch them before loading.
        """
        buf = bytearray(self.raw)
        base = self.hdr_len + self.type_off
        for t in self.types:
            if t.kind != "DATASEC":
                continue
            size = section_sizes.get(t.name, t.size)
            if t.size == 0 and 0 < size <= 0xFFFFFFFF:
                _TYPE.pack_into(buf, base + t.byte_offset, t.name_off, _info(t), size)
                t.size = size
            new_info = []
            for i, (vtype, voff, vsize) in enumerate(t.secinfo):
                var = self.types[vtype] if 0 <= vtype < len(self.types) else None
                if (var is not None and var.kind == "VAR" and voff == 0
                        and 0 <= symbol_offsets.get(var.name, -1) <= 0xFFFFFFFF):
                    voff = symbol_offsets[var.name]
                    struct.pack_into("<III", buf, base + t.byte_offset + 12 + 12 * i, vtype, voff, vsize)
                new_info.append((vtype, voff, vsize))
            t.secinfo = new_info
        self._patched = buf

    def to_bytes(self) -> bytes:
        """The BTF to give BPF_BTF_LOAD (with DATASEC fixups when they were applied)."""
        return bytes(self._patched) if self._patched is not None else self.raw


def _info(t: BtfType) -> int:
    return (KIND[t.kind] << 24) | (int(t.kind_flag) << 31) | (t.vlen & 0xFFFF)


def string_at(strings: bytes, off: int) -> str:
    if not 0 <= off < max(len(strings), 1):
        raise BtfError(f"string offset {off} outside the string section ({len(strings)} bytes)")
    end = strings.find(b"\0", off)
    if end < 0:
        raise BtfError(f"string at {off} is not NUL-terminated")
    return strings[off:end].decode("utf-8", "replace")


def parse_btf(data: bytes) -> Btf:
    """Parse a little-endian .BTF section."""
    data = bytes(data)
    if len(data) < _HDR.size:
        raise BtfError(f"BTF header truncated ({len(data)} bytes)", 0)
    magic, version, _flags, hdr_len, type_off, type_len, str_off, str_len = _HDR.unpack_from(data)
    if magic != BTF_MAGIC:
        if magic == 0x9FEB:
            raise BtfError("big-endian BTF is not supported", 0)
        raise BtfError(f"bad BTF magic {magic:#x}", 0)
    if version != 1:
        raise BtfError(f"unsupported BTF version {version}", 2)
    if hdr_len < _HDR.size or hdr_len > len(data):
        raise BtfError(f"bad BTF header length {hdr_len}", 4)
    body = len(data) - hdr_len
    if type_off + type_len > body or str_off + str_len > body:
        raise BtfError(
            f"BTF type/string sections ({type_off}+{type_len}, {str_off}+{str_len}) exceed the data ({body} bytes)", 8
        )
    strings = data[hdr_len + str_off : hdr_len + str_off + str_len]
    if str_len and strings[-1:] != b"\0":
        raise BtfError("BTF string section is not NUL-terminated", hdr_len + str_off)
    tdata = data[hdr_len + type_off : hdr_len + type_off + type_len]
    types: list[BtfType] = [BtfType(0, "UNKN", "void")]
    pos = 0
    while pos < len(tdata):
        start = pos
        at = hdr_len + type_off + pos
        if pos + 12 > len(tdata):
            raise BtfError(f"type [{len(types)}] truncated", at)
        name_off, info, size_or_type = _TYPE.unpack_from(tdata, pos)
        pos += 12
        kind_num = (info >> 24) & 0x1F
        kind = KIND_NAMES.get(kind_num)
        if kind is None or kind_num == 0:
            raise BtfError(f"type [{len(types)}] has unknown kind {kind_num}", at)
        vlen = info & 0xFFFF
        try:
            name = string_at(strings, name_off)
        except BtfError as e:
            raise BtfError(f"type [{len(types)}]: {e}", at) from None
        t = BtfType(
            id=len(types), kind=kind, name=name, name_off=name_off, vlen=vlen, kind_flag=bool(info >> 31),
            byte_offset=start,
        )
        if kind in _SIZED:
            t.size = size_or_type
        else:
            t.type = size_or_type

        if kind == "INT":
            _need(tdata, pos, 4, t, "int encoding", hdr_len + type_off)
            (enc,) = _U32.unpack_from(tdata, pos)
            pos += 4
            t.int_encoding, t.int_offset, t.int_bits = (enc >> 24) & 0xF, (enc >> 16) & 0xFF, enc & 0xFF
        elif kind == "ARRAY":
            _need(tdata, pos, 12, t, "array", hdr_len + type_off)
            t.array = struct.unpack_from("<III", tdata, pos)
            pos += 12
        elif kind in ("STRUCT", "UNION"):
            _need(tdata, pos, 12 * vlen, t, "members", hdr_len + type_off)
            for _ in range(vlen):
                m_name, m_type, m_off = struct.unpack_from("<III", tdata, pos)
                pos += 12
                bits = m_off >> 24 if t.kind_flag else 0
                boff = m_off & 0xFFFFFF if t.kind_flag else m_off
                t.members.append(BtfMember(_str(strings, m_name, t), m_type, boff, bits))
        elif kind == "ENUM":
            _need(tdata, pos, 8 * vlen, t, "enum values", hdr_len + type_off)
            for _ in range(vlen):
                e_name, e_val = struct.unpack_from("<Ii", tdata, pos)
                pos += 8
                t.enum_values.append((_str(strings, e_name, t), e_val))
        elif kind == "ENUM64":
            _need(tdata, pos, 12 * vlen, t, "enum64 values", hdr_len + type_off)
            for _ in range(vlen):
                e_name, lo, hi = struct.unpack_from("<III", tdata, pos)
                pos += 12
                t.enum_values.append((_str(strings, e_name, t), (hi << 32) | lo))
        elif kind == "FUNC_PROTO":
            _need(tdata, pos, 8 * vlen, t, "params", hdr_len + type_off)
            for _ in range(vlen):
                p_name, p_type = struct.unpack_from("<II", tdata, pos)
                pos += 8
                t.params.append((_str(strings, p_name, t), p_type))
        elif kind == "FUNC":
            t.linkage = vlen
        elif kind == "VAR":
            _need(tdata, pos, 4, t, "linkage", hdr_len + type_off)
            (t.linkage,) = _U32.unpack_from(tdata, pos)
            pos += 4
        elif kind == "DATASEC":
            _need(tdata, pos, 12 * vlen, t, "section vars", hdr_len + type_off)
            for _ in range(vlen):
                t.secinfo.append(struct.unpack_from("<III", tdata, pos))
                pos += 12
        elif kind == "DECL_TAG":
            _need(tdata, pos, 4, t, "component index", hdr_len + type_off)
            (t.component_idx,) = struct.unpack_from("<i", tdata, pos)
            pos += 4
        types.append(t)
    # Referenced ids must exist (the kernel checks this too; we check so lookups never IndexError).
    n = len(types)
    for t in types[1:]:
        refs = []
        if t.kind not in _SIZED and t.kind not in ("FWD",):
            refs.append(t.type)
        refs += [m.type for m in t.members] + [p[1] for p in t.params] + [s[0] for s in t.secinfo]
        if t.array:
            refs += [t.array[0], t.array[1]]
        for r in refs:
            if r >= n:
                raise BtfError(f"type [{t.id}] {t.kind} refers to missing type {r}", hdr_len + type_off + t.byte_offset)
    return Btf(raw=data, types=types, strings=strings, hdr_len=hdr_len, type_off=type_off, str_off=str_off)


def _need(tdata: bytes, pos: int, n: int, t: BtfType, what: str, base: int) -> None:
    if pos + n > len(tdata):
        raise BtfError(f"type [{t.id}] {t.kind}: {what} truncated", base + pos)


def _str(strings: bytes, off: int, t: BtfType) -> str:
    try:
        return string_at(strings, off)
    except BtfError as e:
        raise BtfError(f"type [{t.id}] {t.kind}: {e}", t.byte_offset) from None


# ---- .BTF.ext ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExtRecord:
    """A raw .BTF.ext record; insn_off in *bytes* relative to its section (as in the file)."""

    insn_off: int
    fields: tuple[int, ...]


@dataclass
class BtfExt:
    """Parsed .BTF.ext: per ELF section name, func_info / line_info / CO-RE relocation records."""

    raw: bytes
    func_info_rec_size: int = 8
    line_info_rec_size: int = 16
    core_relo_rec_size: int = 16
    func_info: dict[str, list[ExtRecord]] = field(default_factory=dict)  # fields = (type_id,)
    line_info: dict[str, list[ExtRecord]] = field(default_factory=dict)  # (file_name_off, line_off, line_col)
    core_relos: dict[str, list[ExtRecord]] = field(default_factory=dict)  # (type_id, access_str_off, kind)


def parse_btf_ext(data: bytes, strings: bytes) -> BtfExt:
    """Parse .BTF.ext; `strings` is the .BTF string section (section names live there)."""
    data = bytes(data)
    if len(data) < 8:
        raise BtfError(f"BTF.ext header truncated ({len(data)} bytes)", 0)
    magic, version, _flags, hdr_len = struct.unpack_from("<HBBI", data)
    if magic != BTF_MAGIC:
        raise BtfError(f"bad BTF.ext magic {magic:#x}", 0)
    if version != 1:
        raise BtfError(f"unsupported BTF.ext version {version}", 2)
    if hdr_len < 24 or hdr_len > len(data):
        raise BtfError(f"bad BTF.ext header length {hdr_len}", 4)
    fi_off, fi_len, li_off, li_len = struct.unpack_from("<IIII", data, 8)
    cr_off = cr_len = 0
    if hdr_len >= 32:
        cr_off, cr_len = struct.unpack_from("<II", data, 24)
    ext = BtfExt(raw=data)
    for what, off, length, nfields, min_rec in (
        ("func_info", fi_off, fi_len, 1, 8),
        ("line_info", li_off, li_len, 3, 16),
        ("core_relos", cr_off, cr_len, 3, 16),
    ):
        if not length:
            continue
        start = hdr_len + off
        end = start + length
        if end > len(data):
            raise BtfError(f"BTF.ext {what} ({off}+{length}) exceeds the section ({len(data)} bytes)", 8)
        if length < 4:
            raise BtfError(f"BTF.ext {what} too short", start)
        (rec_size,) = _U32.unpack_from(data, start)
        if rec_size < min_rec or rec_size % 4:
            raise BtfError(f"BTF.ext {what} record size {rec_size} invalid", start)
        setattr(ext, {"func_info": "func_info_rec_size", "line_info": "line_info_rec_size"}.get(what, "core_relo_rec_size"), rec_size)
        table: dict[str, list[ExtRecord]] = getattr(ext, what)
        pos = start + 4
        while pos < end:
            if pos + 8 > end:
                raise BtfError(f"BTF.ext {what} section header truncated", pos)
            sec_name_off, num = struct.unpack_from("<II", data, pos)
            try:
                sec_name = string_at(strings, sec_name_off)
            except BtfError as e:
                raise BtfError(f"BTF.ext {what}: {e}", pos) from None
            pos += 8
            if num == 0 or pos + num * rec_size > end:
                raise BtfError(f"BTF.ext {what} for {sec_name}: {num} records of {rec_size} bytes overrun", pos)
            recs = table.setdefault(sec_name, [])
            for _ in range(num):
                vals = struct.unpack_from("<" + "I" * (1 + nfields), data, pos)
                recs.append(ExtRecord(vals[0], tuple(vals[1:])))
                pos += rec_size
    return ext
