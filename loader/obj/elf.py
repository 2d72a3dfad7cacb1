"""ELF -> BpfObject: programs, maps, relocations, bpf-to-bpf linking (pure, no syscalls).

pyelftools reads the ELF header, section headers, symbols and relocations; everything it
returns is checked against the file's real size before use (pyelftools silently returns short
data for sections that run past the end of the file), and every exception it or the BTF parser
raises on malformed input is turned into one ObjectError naming the file, section and offset.

What is done here, as libbpf/Aya do it:
- each STT_FUNC symbol in an executable section other than .text is a program; functions in
  .text (and calls inside a program's own section) are subprograms, appended after the caller
  with their call offsets fixed (R_BPF_64_32 and intra-section BPF_PSEUDO_CALL);
- lddw instructions relocated against map symbols (legacy "maps", BTF ".maps") become
  MapReloc("map_fd"), against .data/.rodata*/.bss become MapReloc("map_value", offset);
- .BTF.ext func_info/line_info/CO-RE records are rebased onto each linked program.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

from kernel_sim.uapi.bpf_enums import MapType
from kernel_sim.uapi.insn import BPF_PSEUDO_CALL, BPF_PSEUDO_FUNC, LD_IMM64

from .btf import BtfError, parse_btf, parse_btf_ext
from .model import (
    BpfObject,
    CoreReloc,
    FuncInfo,
    GlobalVar,
    LineInfo,
    MapDef,
    MapKind,
    MapReloc,
    ObjectError,
    PinningType,
    ProgramDef,
    SectionInfo,
)
from .sections import classify_section

EM_BPF = 247
ET_REL = 1
SHT_PROGBITS = 1
SHT_SYMTAB = 2
SHT_RELA = 4
SHT_NOBITS = 8
SHT_REL = 9
SHF_WRITE = 0x1
SHF_ALLOC = 0x2
SHF_EXECINSTR = 0x4
SHF_COMPRESSED = 0x800
SHN_UNDEF = 0
SHN_LORESERVE = 0xFF00

R_BPF_NONE = 0
R_BPF_64_64 = 1
R_BPF_64_ABS64 = 2
R_BPF_64_ABS32 = 3
R_BPF_64_NODYLD32 = 4
R_BPF_64_32 = 10

BPF_CALL_INSN = 0x85
# KMALLOC_MAX_SIZE on x86_64 (4 MiB): Linux refuses larger array values, and the cap keeps a
# corrupted .bss size from making the parser allocate gigabytes.
MAX_GLOBAL_DATA = 4 << 20
BPF_F_RDONLY_PROG = 1 << 7

_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
_SHDR_SIZE = 64
_INSN = struct.Struct("<BBhi")
_LEGACY_FIELDS = ("map_type", "key_size", "value_size", "max_entries", "map_flags", "id", "pinning")


@dataclass
class _Section:
    index: int
    name: str
    type: int
    flags: int
    offset: int
    size: int
    link: int
    info: int
    entsize: int
    data: bytes = b""


@dataclass(frozen=True)
class _Sym:
    index: int
    name: str
    type: str  # STT_FUNC, STT_OBJECT, STT_SECTION, STT_NOTYPE, ...
    bind: str
    shndx: int  # -1 for SHN_UNDEF / special indexes
    value: int
    size: int


@dataclass(frozen=True)
class _Rel:
    offset: int
    sym: _Sym
    type: int


@dataclass
class _Func:
    """A function's code inside an executable section."""

    name: str
    section: _Section
    offset: int
    size: int
    relocs: dict[int, _Rel] = field(default_factory=dict)  # local insn index -> relocation

    @property
    def key(self) -> tuple[int, int]:
        return (self.section.index, self.offset)


def load_object(path: str | Path) -> BpfObject:
    """Read and parse a BPF ELF object file (OSError if it cannot be read)."""
    data = Path(path).read_bytes()
    return parse_object(data, str(path))


def parse_object(data: bytes, name: str = "<bytes>") -> BpfObject:
    """Parse a BPF ELF object; any malformed input raises ObjectError, nothing else."""
    parser = _Parser(bytes(data), name)
    try:
        return parser.run()
    except ObjectError:
        raise
    except (BtfError, RecursionError) as e:
        # A BTF lookup failing while maps are read (the BTF section itself was parsed fine):
        # the section being read is named; a BTF-relative offset would mislead there.
        parser.fail(str(e))
    except Exception as e:  # pyelftools / construct / struct errors on malformed input
        parser.fail(f"malformed ELF ({type(e).__name__}: {e})")


@dataclass
class CodeSection:
    """An executable section as a disassembler sees it (labels/relocations keyed by byte offset)."""

    name: str
    index: int
    data: bytes
    labels: dict[int, str]
    relocs: dict[int, tuple[str, str]]


def code_sections(data: bytes, name: str = "<bytes>") -> list[CodeSection]:
    """The object's non-empty executable sections with their symbols and relocations."""
    from .disasm import RELOC_NAMES

    parser = _Parser(bytes(data), name)
    try:
        parser._check_header()
        parser._read_sections()
        parser._read_symbols()
        out = []
        for sec in parser.sections:
            if not (sec.flags & SHF_EXECINSTR) or sec.size == 0 or sec.type != SHT_PROGBITS:
                continue
            labels: dict[int, str] = {}
            for s in sorted(parser.symbols, key=lambda s: (s.type != "STT_FUNC", s.index)):
                if s.shndx == sec.index and s.type in ("STT_FUNC", "STT_NOTYPE") and s.name:
                    labels.setdefault(s.value, s.name)
            relocs = {
                r.offset: (RELOC_NAMES.get(r.type, f"R_BPF_{r.type}"), r.sym.name)
                for r in parser._relocations_for(sec)
            }
            out.append(CodeSection(sec.name, sec.index, sec.data, labels, relocs))
        return out
    except ObjectError:
        raise
    except Exception as e:
        parser.fail(f"malformed ELF ({type(e).__name__}: {e})")


class _Parser:
    def __init__(self, data: bytes, name: str) -> None:
        self.data = data
        self.name = name
        self.where: str | None = None  # section being parsed, for error messages
        self.sections: list[_Section] = []
        self.by_name: dict[str, _Section] = {}
        self.symbols: list[_Sym] = []
        self.obj = BpfObject(name=name)

    # -- errors ----------------------------------------------------------------------------
    def fail(self, message: str, section: str | None = None, offset: int | None = None) -> NoReturn:
        raise ObjectError(message, file=self.name, section=section if section is not None else self.where, offset=offset)

    # -- driver ------------------------------------------------------------------------------
    def run(self) -> BpfObject:
        self._check_header()
        self._read_sections()
        self._read_symbols()
        obj = self.obj
        for sec in self.sections:
            self.where = sec.name
            if sec.name == "license":
                obj.license = self._cstring(sec)
            elif sec.name == "version":
                if len(sec.data) != 4:
                    self.fail(f"version section is {len(sec.data)} bytes, expected 4")
                (obj.kernel_version,) = struct.unpack("<I", sec.data)
        self._read_btf()
        self._read_maps()
        self._read_programs()
        self.where = None
        obj.sections = self._section_infos()
        return obj

    # -- ELF structure ------------------------------------------------------------------------
    def _check_header(self) -> None:
        d = self.data
        if len(d) < 16 or d[:4] != b"\x7fELF":
            self.fail("not an ELF file (bad magic)", offset=0)
        if d[4] != 2:
            self.fail(f"not a 64-bit ELF (EI_CLASS {d[4]})", offset=4)
        if d[5] == 2:
            self.fail("big-endian object (built with -target bpfeb?); only little-endian BPF is supported", offset=5)
        if d[5] != 1:
            self.fail(f"bad ELF data encoding {d[5]}", offset=5)
        if len(d) < _EHDR.size:
            self.fail(f"truncated ELF header ({len(d)} bytes, need {_EHDR.size})", offset=len(d))
        (_, e_type, e_machine, _, _, _, e_shoff, _, _, _, _, e_shentsize, e_shnum, e_shstrndx) = _EHDR.unpack_from(d)
        if e_machine != EM_BPF:
            self.fail(f"wrong machine {e_machine} (expected EM_BPF = {EM_BPF}); not a BPF object", offset=18)
        if e_type != ET_REL:
            self.fail(f"ELF type {e_type} is not a relocatable object (ET_REL)", offset=16)
        if e_shnum == 0 or e_shoff == 0:
            self.fail("no section header table", offset=0x28)
        if e_shentsize != _SHDR_SIZE:
            self.fail(f"section header size {e_shentsize}, expected {_SHDR_SIZE}", offset=0x3A)
        if e_shoff + e_shnum * _SHDR_SIZE > len(d):
            self.fail(
                f"section header table ({e_shnum} x {_SHDR_SIZE} bytes at {e_shoff:#x}) runs past the end of the file "
                f"({len(d)} bytes)",
                offset=e_shoff,
            )
        if e_shstrndx >= e_shnum:
            self.fail(f"section name table index {e_shstrndx} out of range ({e_shnum} sections)", offset=0x3E)

    def _read_sections(self) -> None:
        """Section headers through pyelftools; names and data sliced here, bounds-checked.

        Only the header parsing of pyelftools is used: its section objects decompress, follow
        links and seek to unchecked offsets, which on a corrupted file fails in ways that say
        nothing about the file.
        """
        from elftools.common.exceptions import ELFError
        from elftools.elf.elffile import ELFFile

        try:
            elf = ELFFile(io.BytesIO(self.data))
            headers = [elf._get_section_header(i) for i in range(elf.num_sections())]
        except ELFError as e:
            self.fail(f"bad section header table ({e})", offset=struct.unpack_from("<Q", self.data, 0x28)[0])
        shoff = elf["e_shoff"]
        shstr = headers[elf["e_shstrndx"]]
        self.where = "section name table"
        if shstr["sh_type"] != "SHT_STRTAB":
            self.fail(f"section {elf['e_shstrndx']} is not a string table", offset=shoff + elf["e_shstrndx"] * 64)
        self._check_bounds("section name table", shstr["sh_offset"], shstr["sh_size"], shstr["sh_type"])
        names = self.data[shstr["sh_offset"] : shstr["sh_offset"] + shstr["sh_size"]]
        for index, hdr in enumerate(headers):
            at = shoff + index * _SHDR_SIZE
            sh_type = _num(hdr["sh_type"], _SHT)
            name_off = hdr["sh_name"]
            end = names.find(b"\0", name_off) if name_off < len(names) else -1
            if end < 0:
                self.fail(f"section {index} has a bad name offset {name_off}", offset=at)
            name = names[name_off:end].decode("utf-8", "replace")
            self.where = name or f"#{index}"
            sec = _Section(index, name, sh_type, hdr["sh_flags"], hdr["sh_offset"], hdr["sh_size"], hdr["sh_link"],
                           hdr["sh_info"], hdr["sh_entsize"])
            if index and sh_type != SHT_NOBITS and sh_type != 0:
                self._check_bounds(name, sec.offset, sec.size, sh_type)
                sec.data = self.data[sec.offset : sec.offset + sec.size]
            if sec.flags & SHF_COMPRESSED and (name in _INTERPRETED or sec.flags & (SHF_ALLOC | SHF_EXECINSTR)):
                self.fail("compressed section (SHF_COMPRESSED) is not supported", offset=at)
            self.sections.append(sec)
            self.by_name.setdefault(name, sec)
        self.where = None

    def _section_infos(self) -> list[SectionInfo]:
        out = []
        for sec in self.sections:
            if sec.index == 0:
                continue
            tname = _SHT_NAMES.get(sec.type, f"0x{sec.type & 0xFFFFFFFF:x}" if sec.type >= 0 else "OTHER")
            flags = "".join(ch for bit, ch in ((SHF_WRITE, "W"), (SHF_ALLOC, "A"), (SHF_EXECINSTR, "X"))
                            if sec.flags & bit)
            out.append(SectionInfo(sec.index, sec.name, tname, flags, sec.offset, sec.size))
        return out

    def _check_bounds(self, name: str, offset: int, size: int, sh_type) -> None:
        if sh_type in (SHT_NOBITS, "SHT_NOBITS"):
            return
        if offset + size > len(self.data):
            self.fail(
                f"section data ({size} bytes at {offset:#x}) runs past the end of the file ({len(self.data)} bytes)",
                section=name,
                offset=offset,
            )

    def _read_symbols(self) -> None:
        symtabs = [s for s in self.sections if s.type == SHT_SYMTAB]
        if not symtabs:
            self.fail("no symbol table (.symtab); cannot find programs and maps", section=".symtab")
        sec = symtabs[0]
        self.where = sec.name
        if sec.entsize != 24 or sec.size % 24:
            self.fail(f"symbol table entry size {sec.entsize} / size {sec.size} is not a multiple of 24")
        if not 0 < sec.link < len(self.sections):
            self.fail(f"symbol table links to bad string table {sec.link}")
        strtab = self.sections[sec.link].data
        for i, (st_name, st_info, _other, st_shndx, st_value, st_size) in enumerate(
            struct.iter_unpack("<IBBHQQ", sec.data)
        ):
            if st_name >= max(len(strtab), 1) and st_name:
                self.fail(f"symbol {i} name offset {st_name} outside the string table", offset=sec.offset + i * 24)
            end = strtab.find(b"\0", st_name)
            name = strtab[st_name:end if end >= 0 else len(strtab)].decode("utf-8", "replace")
            stype = _STT.get(st_info & 0xF, f"STT_{st_info & 0xF}")
            bind = _STB.get(st_info >> 4, f"STB_{st_info >> 4}")
            shndx = st_shndx if 0 < st_shndx < SHN_LORESERVE else -1
            if shndx >= len(self.sections):
                self.fail(f"symbol {name or i!r} refers to section {st_shndx}, which does not exist",
                          offset=sec.offset + i * 24)
            if stype == "STT_SECTION" and shndx >= 0 and not name:
                name = self.sections[shndx].name
            self.symbols.append(_Sym(i, name, stype, bind, shndx, st_value, st_size))
        self.where = None

    def _cstring(self, sec: _Section) -> str:
        end = sec.data.find(b"\0")
        if end < 0:
            self.fail("string is not NUL-terminated", offset=sec.offset)
        return sec.data[:end].decode("utf-8", "replace")

    def _relocations_for(self, target: _Section) -> list[_Rel]:
        out: list[_Rel] = []
        for sec in self.sections:
            if sec.type not in (SHT_REL, SHT_RELA) or sec.info != target.index:
                continue
            self.where = sec.name
            if not 0 < sec.link < len(self.sections) or self.sections[sec.link].type != SHT_SYMTAB:
                self.fail(f"relocation section links to {sec.link}, which is not the symbol table")
            width = 16 if sec.type == SHT_REL else 24
            if sec.size % width:
                self.fail(f"relocation section size {sec.size} is not a multiple of {width}")
            for i in range(sec.size // width):
                r_offset, r_info = struct.unpack_from("<QQ", sec.data, i * width)
                sym_index, rtype = r_info >> 32, r_info & 0xFFFFFFFF
                if sym_index >= len(self.symbols):
                    self.fail(f"relocation {i} refers to symbol {sym_index}, which does not exist",
                              offset=sec.offset + i * width)
                out.append(_Rel(r_offset, self.symbols[sym_index], rtype))
        self.where = target.name
        return out

    # -- BTF -------------------------------------------------------------------------------------
    def _read_btf(self) -> None:
        sec = self.by_name.get(".BTF")
        ext = self.by_name.get(".BTF.ext")
        if sec is None:
            if ext is not None:
                self.fail(".BTF.ext present without .BTF", section=".BTF.ext")
            return
        self.where = ".BTF"
        try:
            btf = parse_btf(sec.data)
        except BtfError as e:
            self.fail(str(e), offset=sec.offset + e.offset)
        sizes = {s.name: s.size for s in self.sections}
        offsets = {s.name: s.value for s in self.symbols if s.type == "STT_OBJECT" and s.shndx >= 0}
        btf.fixup_datasecs(sizes, offsets)
        self.obj.btf = btf
        if ext is not None:
            self.where = ".BTF.ext"
            try:
                self.obj.btf_ext = parse_btf_ext(ext.data, btf.strings)
            except BtfError as e:
                self.fail(str(e), offset=ext.offset + e.offset)
        self.where = None

    # -- maps ------------------------------------------------------------------------------------
    def _read_maps(self) -> None:
        for sec in self.sections:
            self.where = sec.name
            if _is_legacy_maps(sec.name):
                self._legacy_maps(sec)
            elif sec.name == ".maps":
                self._btf_maps(sec)
            elif _is_data_section(sec):
                self._data_map(sec)
        self.where = None

    def _section_symbols(self, sec: _Section, types: tuple[str, ...] = ("STT_OBJECT", "STT_NOTYPE")) -> list[_Sym]:
        return sorted(
            (s for s in self.symbols if s.shndx == sec.index and s.type in types and s.name), key=lambda s: s.value
        )

    def _legacy_maps(self, sec: _Section) -> None:
        syms = self._section_symbols(sec)
        if not syms and sec.size:
            self.fail("maps section has no symbols naming its maps")
        for s in syms:
            size = s.size or (sec.size // len(syms))
            if s.value + size > sec.size:
                self.fail(f"map {s.name!r} ({size} bytes at {s.value}) extends past the section end ({sec.size})",
                          offset=sec.offset + s.value)
            if size < 16:
                self.fail(f"map definition {s.name!r} is {size} bytes; bpf_map_def needs at least 16",
                          offset=sec.offset + s.value)
            raw = sec.data[s.value : s.value + min(size, 28)].ljust(28, b"\0")
            vals = dict(zip(_LEGACY_FIELDS, struct.unpack("<7I", raw), strict=True))
            self._check_map_type(s.name, vals["map_type"], sec.offset + s.value)
            pin = vals["pinning"]
            if pin not in (0, 1):
                self.fail(f"map {s.name!r} has unknown pinning {pin}", offset=sec.offset + s.value + 24)
            self._add_map(MapDef(
                name=s.name, map_type=vals["map_type"], key_size=vals["key_size"], value_size=vals["value_size"],
                max_entries=vals["max_entries"], map_flags=vals["map_flags"], pinning=PinningType(pin),
                kind=MapKind.LEGACY, section=sec.name, section_index=sec.index, symbol_offset=s.value, id=vals["id"],
            ), sec.offset + s.value)

    def _check_map_type(self, name: str, map_type: int, offset: int) -> None:
        if map_type == 0 or map_type not in MapType._value2member_map_:
            self.fail(f"map {name!r} has unknown map type {map_type}", offset=offset)

    def _add_map(self, m: MapDef, offset: int) -> None:
        if m.name in self.obj.maps:
            self.fail(f"duplicate map name {m.name!r}", offset=offset)
        self.obj.maps[m.name] = m

    def _btf_maps(self, sec: _Section) -> None:
        btf = self.obj.btf
        if btf is None:
            self.fail(".maps section needs BTF, but the object has no .BTF section")
        datasec = btf.find(".maps", "DATASEC")
        if datasec is None:
            self.fail("no DATASEC '.maps' in BTF")
        syms = {s.name: s for s in self._section_symbols(sec)}
        relocs = self._relocations_for(sec)
        for vtype, _voff, _vsize in datasec.secinfo:
            var = btf.type_by_id(vtype)
            if var.kind != "VAR":
                self.fail(f"'.maps' DATASEC entry [{vtype}] is {var.kind}, expected VAR")
            sym = syms.get(var.name)
            if sym is None:
                self.fail(f"map {var.name!r} is in BTF but has no symbol in .maps")
            m = self._btf_map_def(var.name, var.type, sec.offset + sym.value)
            m.section, m.section_index, m.symbol_offset = sec.name, sec.index, sym.value
            # `values = { [i] = &x }` initialisers: relocations into this map's `values` array.
            values_off = self._member_offset(var.type, "values")
            if values_off is not None:
                for r in relocs:
                    rel = r.offset - sym.value - values_off
                    if 0 <= rel < max(sym.size - values_off, 0) and rel % 8 == 0:
                        m.initial_slots[rel // 8] = r.sym.name
            self._add_map(m, sec.offset + sym.value)

    def _member_offset(self, type_id: int, member: str) -> int | None:
        t = self.obj.btf.skip_modifiers(type_id)  # type: ignore[union-attr]
        for mem in t.members:
            if mem.name == member:
                return mem.bit_offset // 8
        return None

    def _btf_map_def(self, name: str, type_id: int, offset: int, depth: int = 0) -> MapDef:
        btf = self.obj.btf
        assert btf is not None
        t = btf.skip_modifiers(type_id)
        if t.kind != "STRUCT":
            self.fail(f"map {name!r} is a BTF {t.kind}, expected a struct", offset=offset)
        m = MapDef(name=name, map_type=0, key_size=0, value_size=0, max_entries=0, kind=MapKind.BTF)
        key_size = value_size = None
        for mem in t.members:
            if mem.name in ("type", "max_entries", "map_flags", "numa_node", "pinning", "key_size", "value_size",
                            "map_extra"):
                val = self._btf_uint(name, mem.name, mem.type, offset)
                if mem.name == "type":
                    self._check_map_type(name, val, offset)
                    m.map_type = val
                elif mem.name == "key_size":
                    key_size = val
                elif mem.name == "value_size":
                    value_size = val
                elif mem.name == "pinning":
                    if val not in (0, 1):
                        self.fail(f"map {name!r} has unknown pinning {val}", offset=offset)
                    m.pinning = PinningType(val)
                elif mem.name != "map_extra":
                    setattr(m, mem.name, val)
            elif mem.name in ("key", "value"):
                ptr = btf.skip_modifiers(mem.type)
                if ptr.kind != "PTR":
                    self.fail(f"map {name!r} member {mem.name!r} is {ptr.kind}, expected a pointer (__type)",
                              offset=offset)
                size = btf.size_of(ptr.type)
                if mem.name == "key":
                    m.key_size, m.btf_key_type_id = size, ptr.type
                else:
                    m.value_size, m.btf_value_type_id = size, ptr.type
            elif mem.name == "values":
                arr = btf.skip_modifiers(mem.type)
                if arr.kind != "ARRAY" or arr.array is None:
                    self.fail(f"map {name!r} 'values' is {arr.kind}, expected an array (__array)", offset=offset)
                elem = btf.skip_modifiers(arr.array[0])
                if elem.kind != "PTR":
                    self.fail(f"map {name!r} 'values' elements are {elem.kind}, expected pointers", offset=offset)
                inner = btf.skip_modifiers(elem.type)
                if inner.kind == "STRUCT" and depth == 0 and any(x.name == "type" for x in inner.members):
                    m.inner = self._btf_map_def(f"{name}.inner", elem.type, offset, depth + 1)
                value_size = 4  # fds of inner maps / programs
        if m.map_type == 0:
            self.fail(f"map {name!r} has no 'type'", offset=offset)
        for label, explicit, from_type in (("key", key_size, "key_size"), ("value", value_size, "value_size")):
            if explicit is None:
                continue
            current = getattr(m, from_type)
            if current and current != explicit and not (label == "value" and m.inner is not None):
                self.fail(f"map {name!r}: {label} type is {current} bytes but {label}_size says {explicit}",
                          offset=offset)
            setattr(m, from_type, explicit)
        if m.map_type in (MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS) and m.inner is None:
            self.fail(f"map {name!r} is a map-in-map without an inner map definition (__array(values, ...))",
                      offset=offset)
        return m

    def _btf_uint(self, name: str, member: str, type_id: int, offset: int) -> int:
        """__uint(x, N) is `int (*x)[N]`: a pointer to an array of N ints."""
        btf = self.obj.btf
        assert btf is not None
        ptr = btf.skip_modifiers(type_id)
        arr = btf.skip_modifiers(ptr.type) if ptr.kind == "PTR" else ptr
        if ptr.kind != "PTR" or arr.kind != "ARRAY" or arr.array is None:
            self.fail(f"map {name!r} member {member!r} is not __uint() (pointer to array)", offset=offset)
        return arr.array[2]

    def _data_map(self, sec: _Section) -> None:
        if sec.size > MAX_GLOBAL_DATA:
            self.fail(f"{sec.size} bytes of global data; more than a map value can hold ({MAX_GLOBAL_DATA})",
                      offset=sec.offset)
        kind = MapKind.BSS if sec.name.startswith(".bss") else (
            MapKind.RODATA if sec.name.startswith(".rodata") else MapKind.DATA)
        data = bytes(sec.size) if sec.type == SHT_NOBITS else sec.data
        m = MapDef(
            name=sec.name, map_type=MapType.ARRAY, key_size=4, value_size=sec.size, max_entries=1,
            map_flags=BPF_F_RDONLY_PROG if kind is MapKind.RODATA else 0, kind=kind, section=sec.name,
            section_index=sec.index, data=data, frozen=kind is MapKind.RODATA,
        )
        if self.obj.btf is not None:
            ds = self.obj.btf.find(sec.name, "DATASEC")
            if ds is not None:
                m.btf_value_type_id = ds.id
        self._add_map(m, sec.offset)
        for s in self._section_symbols(sec, ("STT_OBJECT",)):
            if s.value + s.size > sec.size:
                self.fail(f"global {s.name!r} ({s.size} bytes at {s.value}) extends past the section end",
                          offset=sec.offset + s.value)
            if s.name in self.obj.globals and s.bind == "STB_LOCAL":
                continue
            self.obj.globals[s.name] = GlobalVar(s.name, sec.name, s.value, s.size, sec.name)

    # -- programs --------------------------------------------------------------------------------
    def _read_programs(self) -> None:
        funcs: dict[int, list[_Func]] = {}
        program_sections: list[tuple[_Section, object]] = []
        for sec in self.sections:
            if not (sec.flags & SHF_EXECINSTR) or sec.type != SHT_PROGBITS or sec.size == 0:
                continue
            self.where = sec.name
            if sec.size % 8:
                self.fail(f"code size {sec.size} is not a multiple of 8")
            kind = None
            if sec.name != ".text":
                kind = classify_section(sec.name)
                if kind is None:
                    self.fail(f"unknown program section {sec.name!r} (no program type for this name)")
                program_sections.append((sec, kind))
            funcs[sec.index] = self._functions(sec)
            relocs = self._relocations_for(sec)
            self._attach_relocs(sec, funcs[sec.index], relocs)
        for sec_funcs in funcs.values():
            for f in sec_funcs:
                self.obj.functions[f.name] = (f.section.name, f.offset, f.size)
        for sec, kind in program_sections:
            self.where = sec.name
            for f in funcs[sec.index]:
                if f.name in self.obj.programs:
                    self.fail(f"duplicate program name {f.name!r}")
                self.obj.programs[f.name] = self._link(f, kind, funcs)

    def _functions(self, sec: _Section) -> list[_Func]:
        syms = [s for s in self.symbols if s.shndx == sec.index and s.type == "STT_FUNC"]
        if not syms:
            # Old clang emitted no FUNC symbols; use a global symbol at 0, else the section name.
            alt = [s for s in self.symbols if s.shndx == sec.index and s.bind == "STB_GLOBAL" and s.value == 0 and s.name]
            return [_Func(alt[0].name if alt else sec.name.replace("/", "_"), sec, 0, sec.size)]
        out = []
        syms.sort(key=lambda s: s.value)
        for i, s in enumerate(syms):
            end = syms[i + 1].value if i + 1 < len(syms) else sec.size
            size = s.size or (end - s.value)
            if s.value % 8 or size % 8 or s.value + size > sec.size or size == 0:
                self.fail(f"function {s.name!r} ({size} bytes at {s.value}) is misaligned or outside the section",
                          offset=sec.offset + s.value)
            out.append(_Func(s.name, sec, s.value, size))
        return out

    def _attach_relocs(self, sec: _Section, funcs: list[_Func], relocs: list[_Rel]) -> None:
        for r in relocs:
            if r.offset % 8 or r.offset + 8 > sec.size:
                self.fail(f"bad relocation: offset {r.offset} is not an instruction in the section ({sec.size} bytes)",
                          offset=sec.offset + min(r.offset, sec.size))
            if r.type not in (R_BPF_64_64, R_BPF_64_32, R_BPF_NONE):
                self.fail(f"bad relocation: unsupported type {r.type} at offset {r.offset}", offset=sec.offset + r.offset)
            if r.type == R_BPF_NONE:
                continue
            f = next((f for f in funcs if f.offset <= r.offset < f.offset + f.size), None)
            if f is None:
                self.fail(f"bad relocation: offset {r.offset} is in no function", offset=sec.offset + r.offset)
            f.relocs[(r.offset - f.offset) // 8] = r

    def _insn_at(self, f: _Func, idx: int) -> tuple[int, int, int, int]:
        code, regs, off, imm = _INSN.unpack_from(f.section.data, f.offset + idx * 8)
        return code, regs, off, imm

    def _link(self, main: _Func, kind, funcs: dict[int, list[_Func]]) -> ProgramDef:
        """Copy `main`, append every function it (transitively) calls, fix calls, collect map relocs."""
        code = bytearray(main.section.data[main.offset : main.offset + main.size])
        placed: dict[tuple[int, int], int] = {main.key: 0}
        order = [main]
        map_relocs: list[MapReloc] = []
        qi = 0
        while qi < len(order):
            f = order[qi]
            qi += 1
            base = placed[f.key]
            n = f.size // 8
            j = 0
            while j < n:
                code_byte, regs, off, imm = self._insn_at(f, j)
                src = regs >> 4
                gi = base + j
                at = f.section.offset + f.offset + j * 8
                r = f.relocs.get(j)
                is_lddw = code_byte == LD_IMM64
                if is_lddw and j + 1 >= n:
                    self.fail(f"lddw at instruction {j} of {f.name!r} has no second half", section=f.section.name,
                              offset=at)
                target: tuple[_Section, int] | None = None
                if code_byte == BPF_CALL_INSN and src == BPF_PSEUDO_CALL:
                    if r is not None:
                        target = self._code_target(r, f, (r.sym.value // 8 + imm + 1) * 8, at)
                    else:
                        target = (f.section, f.offset + (j + imm + 1) * 8)
                elif r is not None and is_lddw:
                    sym_sec = self.sections[r.sym.shndx] if r.sym.shndx >= 0 else None
                    if sym_sec is None:
                        self.fail(f"bad relocation: lddw at instruction {j} of {f.name!r} refers to undefined "
                                  f"symbol {r.sym.name!r} (extern kconfig/ksym symbols are not supported)",
                                  section=f.section.name, offset=at)
                    if sym_sec.flags & SHF_EXECINSTR:
                        # A function pointer (callback for bpf_loop & co): BPF_PSEUDO_FUNC.
                        target = self._code_target(r, f, r.sym.value + imm, at)
                        src = BPF_PSEUDO_FUNC
                    else:
                        map_relocs.append(self._map_reloc(r, sym_sec, gi, imm, f, at))
                elif r is not None:
                    self.fail(f"bad relocation: instruction {j} of {f.name!r} (opcode {code_byte:#04x}) is neither "
                              f"an lddw nor a call", section=f.section.name, offset=at)
                if target is not None:
                    tsec, toff = target
                    callee = next((g for g in funcs.get(tsec.index, []) if g.offset <= toff < g.offset + g.size), None)
                    if callee is None:
                        self.fail(f"call at instruction {j} of {f.name!r} targets offset {toff} of {tsec.name}, "
                                  f"which is in no function", section=f.section.name, offset=at)
                    if callee.key not in placed:
                        placed[callee.key] = len(code) // 8
                        code += callee.section.data[callee.offset : callee.offset + callee.size]
                        order.append(callee)
                    new_target = placed[callee.key] + (toff - callee.offset) // 8
                    rel = new_target - gi - 1
                    dst = regs & 0xF
                    struct.pack_into("<BBhi", code, gi * 8, code_byte, (src << 4) | dst, off, rel)
                j += 2 if is_lddw else 1
        prog = ProgramDef(
            name=main.name, section=main.section.name, kind=kind.kind, prog_type=kind.prog_type,
            expected_attach_type=kind.expected_attach_type, attach_target=kind.attach_target, insns=bytes(code),
            map_relocs=map_relocs, section_offset=main.offset, size=main.size,
            callees=[g.name for g in order[1:]], sleepable=kind.sleepable,
        )
        self._ext_info(prog, order, placed)
        return prog

    def _code_target(self, r: _Rel, f: _Func, toff: int, at: int) -> tuple[_Section, int]:
        if r.sym.shndx < 0:
            self.fail(f"bad relocation: call in {f.name!r} to undefined function {r.sym.name!r}",
                      section=f.section.name, offset=at)
        tsec = self.sections[r.sym.shndx]
        if not tsec.flags & SHF_EXECINSTR:
            self.fail(f"bad relocation: call in {f.name!r} targets {r.sym.name!r} in non-code section {tsec.name}",
                      section=f.section.name, offset=at)
        if toff < 0 or toff >= tsec.size or toff % 8:
            self.fail(f"bad relocation: call in {f.name!r} targets offset {toff} outside {tsec.name}",
                      section=f.section.name, offset=at)
        return tsec, toff

    def _map_reloc(self, r: _Rel, sym_sec: _Section, gi: int, imm: int, f: _Func, at: int) -> MapReloc:
        if sym_sec.name == ".maps" or _is_legacy_maps(sym_sec.name):
            m = next((m for m in self.obj.maps.values()
                      if m.section_index == sym_sec.index and m.symbol_offset == r.sym.value + imm), None)
            if m is None:
                self.fail(f"bad relocation: lddw in {f.name!r} refers to {r.sym.name!r}, which is no map",
                          section=f.section.name, offset=at)
            return MapReloc(gi, m.name, "map_fd", 0, r.sym.name)
        if _is_data_section(sym_sec):
            offset = r.sym.value + imm
            if not 0 <= offset < max(sym_sec.size, 1):
                self.fail(f"bad relocation: offset {offset} of {r.sym.name!r} outside {sym_sec.name} "
                          f"({sym_sec.size} bytes)", section=f.section.name, offset=at)
            return MapReloc(gi, sym_sec.name, "map_value", offset, r.sym.name)
        self.fail(f"bad relocation: lddw in {f.name!r} refers to {r.sym.name!r} in section {sym_sec.name}, "
                  f"which holds no map", section=f.section.name, offset=at)

    def _ext_info(self, prog: ProgramDef, order: list[_Func], placed: dict[tuple[int, int], int]) -> None:
        ext = self.obj.btf_ext
        if ext is None:
            return
        for f in order:
            base = placed[f.key]
            lo, hi = f.offset, f.offset + f.size

            def rebase(insn_off: int, base: int = base, lo: int = lo) -> int:
                return base + (insn_off - lo) // 8

            for rec in ext.func_info.get(f.section.name, []):
                if lo <= rec.insn_off < hi:
                    prog.func_info.append(FuncInfo(rebase(rec.insn_off), rec.fields[0]))
            for rec in ext.line_info.get(f.section.name, []):
                if lo <= rec.insn_off < hi:
                    prog.line_info.append(LineInfo(rebase(rec.insn_off), *rec.fields))
            for rec in ext.core_relos.get(f.section.name, []):
                if lo <= rec.insn_off < hi:
                    access = self.obj.btf.string(rec.fields[1]) if self.obj.btf else ""
                    prog.core_relocs.append(CoreReloc(rebase(rec.insn_off), rec.fields[0], access, rec.fields[2]))
        prog.func_info.sort(key=lambda x: x.insn_off)
        prog.line_info.sort(key=lambda x: x.insn_off)


def _is_legacy_maps(name: str) -> bool:
    """"maps", or "maps/NAME" (one section per map, as older Aya and libbpf objects have them)."""
    return name == "maps" or name.startswith("maps/")


def _is_data_section(sec: _Section) -> bool:
    if not sec.flags & SHF_ALLOC or sec.flags & SHF_EXECINSTR:
        return False
    n = sec.name
    return any(n == p or n.startswith(p + ".") for p in (".data", ".rodata", ".bss"))


_SHT_NAMES = {0: "NULL", 1: "PROGBITS", 2: "SYMTAB", 3: "STRTAB", 4: "RELA", 8: "NOBITS", 9: "REL",
              0x6FFF4C03: "LLVM_ADDRSIG"}
_INTERPRETED = {".BTF", ".BTF.ext", ".symtab", ".strtab", "maps", ".maps", "license", "version"}
_SHT = {"SHT_NULL": 0, "SHT_PROGBITS": 1, "SHT_SYMTAB": 2, "SHT_STRTAB": 3, "SHT_RELA": 4, "SHT_NOBITS": 8,
        "SHT_REL": 9}
_STT = {0: "STT_NOTYPE", 1: "STT_OBJECT", 2: "STT_FUNC", 3: "STT_SECTION", 4: "STT_FILE"}
_STB = {0: "STB_LOCAL", 1: "STB_GLOBAL", 2: "STB_WEAK"}


def _num(value, table: dict[str, int]) -> int:
    if isinstance(value, int):
        return value
    return table.get(value, -1)


__all__ = ["CodeSection", "code_sections", "load_object", "parse_object"]
