"""The object model: what a BPF ELF object says, as plain Python data (aya-obj's role).

Parsing (loader/obj/elf.py, btf.py) fills these classes from bytes and never makes a syscall;
the loader (Ebpf) reads them to create maps, patch instructions and load programs. Keeping the
model free of kernel state is what lets `bpfload inspect` and the fuzz tests reuse it.

Conventions the loader can rely on:
- All instruction positions are *instruction indexes* (8-byte units) into `ProgramDef.insns`,
  never byte offsets (the ELF and .BTF.ext use bytes; the parser converts).
- `ProgramDef.insns` is final apart from map references: bpf-to-bpf callees are already
  appended and their call offsets fixed. The loader only rewrites the lddw instructions named
  by `map_relocs` (src_reg = BPF_PSEUDO_MAP_FD / BPF_PSEUDO_MAP_VALUE, imm = map fd, second
  half's imm = `offset` for map_value), exactly as libbpf and Aya do.
- Maps are keyed by the name the loader creates them under: the symbol name for legacy and BTF
  `.maps` maps, the section name for global data (".data", ".rodata", ".rodata.str1.1", ".bss";
  Aya's convention; the kernel-visible name is `MapDef.kernel_name`).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from typing import Literal

from kernel_sim.uapi.bpf_enums import AttachType, MapType, ProgType


class ObjectError(Exception):
    """A malformed or unsupported object; the message names the file, section and offset.

    The only exception parsing raises for bad input: pyelftools/construct/struct errors are
    wrapped, so callers (CLI, loader) can print one line and stop.
    """

    def __init__(self, message: str, *, file: str = "", section: str | None = None, offset: int | None = None):
        self.file = file
        self.section = section
        self.offset = offset
        self.reason = message
        where = file or "<bytes>"
        if section is not None:
            where += f": section {section}"
        if offset is not None:
            where += f" at offset {offset:#x}"
        super().__init__(f"{where}: {message}")


class ProgramKind(StrEnum):
    """A program's kind as the section name states it (Aya's ProgramSection, libbpf's SEC())."""

    KPROBE = "kprobe"
    KRETPROBE = "kretprobe"
    UPROBE = "uprobe"
    URETPROBE = "uretprobe"
    TRACEPOINT = "tracepoint"
    RAW_TRACEPOINT = "raw_tracepoint"
    PERF_EVENT = "perf_event"
    SOCKET_FILTER = "socket_filter"
    XDP = "xdp"
    SCHED_CLS = "sched_cls"
    SCHED_ACT = "sched_act"
    FENTRY = "fentry"
    FEXIT = "fexit"
    LSM = "lsm"
    BTF_TRACEPOINT = "tp_btf"
    CGROUP_SKB = "cgroup_skb"
    SK_SKB = "sk_skb"
    SK_MSG = "sk_msg"
    SOCK_OPS = "sock_ops"
    SYSCALL = "syscall"


class MapKind(StrEnum):
    """Where a map definition came from; decides how the loader creates and fills it."""

    LEGACY = "legacy"  # SEC("maps"): struct bpf_map_def (libbpf 5 fields / Aya 7 fields)
    BTF = "btf"  # SEC(".maps"): BTF-defined map (__uint/__type members)
    DATA = "data"  # .data: ARRAY, 1 entry, initial data
    RODATA = "rodata"  # .rodata*: ARRAY, 1 entry, initial data, frozen after fill
    BSS = "bss"  # .bss: ARRAY, 1 entry, zero-filled


class PinningType(int, Enum):
    """LIBBPF_PIN_* / Aya's PinningType."""

    NONE = 0
    BY_NAME = 1


_NO_BTF_MAP_TYPES = frozenset({
    MapType.PERF_EVENT_ARRAY, MapType.CGROUP_ARRAY, MapType.STACK_TRACE, MapType.ARRAY_OF_MAPS,
    MapType.HASH_OF_MAPS, MapType.DEVMAP, MapType.DEVMAP_HASH, MapType.CPUMAP, MapType.XSKMAP, MapType.SOCKMAP,
    MapType.SOCKHASH, MapType.QUEUE, MapType.STACK, MapType.RINGBUF, MapType.PROG_ARRAY,
})


@dataclass
class MapDef:
    """One map to create (BPF_MAP_CREATE fields plus what the loader needs around it)."""

    name: str
    map_type: int  # MapType value (kept int so unknown-but-valid kernel types survive)
    key_size: int
    value_size: int
    max_entries: int
    map_flags: int = 0
    pinning: PinningType = PinningType.NONE
    numa_node: int = 0
    kind: MapKind = MapKind.LEGACY
    section: str = "maps"
    section_index: int = 0
    symbol_offset: int = 0  # offset of the definition/symbol inside its section
    data: bytes | None = None  # global-data maps: initial value (value_size bytes, zeros for .bss); else None
    frozen: bool = False  # .rodata: loader calls BPF_MAP_FREEZE after writing `data`
    inner: MapDef | None = None  # map-in-map: the inner map's template
    initial_slots: dict[int, str] = field(default_factory=dict)  # map-in-map / prog array `values = {...}`
    btf_key_type_id: int = 0
    btf_value_type_id: int = 0
    id: int = 0  # Aya 7-field bpf_map_def's id

    @property
    def type_name(self) -> str:
        try:
            return MapType(self.map_type).name.lower()
        except ValueError:
            return f"type{self.map_type}"

    @property
    def kernel_name(self) -> str:
        """The name given to BPF_MAP_CREATE (BPF_OBJ_NAME_LEN-1 = 15 characters, [A-Za-z0-9_.])."""
        name = "".join(c if c.isalnum() or c in "_." else "_" for c in self.name)
        return name[:15]

    @property
    def create_btf_ids(self) -> tuple[int, int]:
        """(btf_key_type_id, btf_value_type_id) to pass to BPF_MAP_CREATE.

        The kernel refuses BTF key/value types for map kinds whose values are fds or that have
        no key (libbpf drops them for the same list); the declared ids stay in the fields above
        for decoding.
        """
        if self.map_type in _NO_BTF_MAP_TYPES:
            return (0, 0)
        return (self.btf_key_type_id, self.btf_value_type_id)

    @property
    def is_global_data(self) -> bool:
        return self.kind in (MapKind.DATA, MapKind.RODATA, MapKind.BSS)


@dataclass(frozen=True)
class MapReloc:
    """An lddw at `insn_index` that must refer to map `map_name`.

    kind "map_fd": src_reg = BPF_PSEUDO_MAP_FD, imm = fd.
    kind "map_value": src_reg = BPF_PSEUDO_MAP_VALUE, imm = fd, next insn's imm = `offset`
    (the byte offset of the variable inside the map's value).
    """

    insn_index: int
    map_name: str
    kind: Literal["map_fd", "map_value"]
    offset: int = 0
    symbol: str = ""


@dataclass(frozen=True)
class FuncInfo:
    """bpf_func_info: insn_off in instructions (as BPF_PROG_LOAD wants), BTF FUNC type id."""

    insn_off: int
    type_id: int

    RECORD = struct.Struct("<II")

    def pack(self) -> bytes:
        return self.RECORD.pack(self.insn_off, self.type_id)


@dataclass(frozen=True)
class LineInfo:
    """bpf_line_info: insn_off in instructions; string offsets into the BTF string section."""

    insn_off: int
    file_name_off: int
    line_off: int
    line_col: int  # line << 10 | column

    RECORD = struct.Struct("<IIII")

    @property
    def line(self) -> int:
        return self.line_col >> 10

    @property
    def column(self) -> int:
        return self.line_col & 0x3FF

    def pack(self) -> bytes:
        return self.RECORD.pack(self.insn_off, self.file_name_off, self.line_off, self.line_col)


@dataclass(frozen=True)
class CoreReloc:
    """bpf_core_relo: a CO-RE relocation (insn_off in instructions). Recorded, not applied."""

    insn_off: int
    type_id: int
    access_str: str
    kind: int  # enum bpf_core_relo_kind (0 = FIELD_BYTE_OFFSET, ...)


@dataclass
class ProgramDef:
    """One BPF program: a function symbol in an executable section, ready to load."""

    name: str  # function symbol name (Aya's program name)
    section: str  # ELF section name, e.g. "kprobe/do_sys_openat2"
    kind: ProgramKind
    prog_type: ProgType
    expected_attach_type: AttachType | None  # None -> 0 in BPF_PROG_LOAD
    attach_target: str | tuple[str, str] | None  # "do_sys_openat2", ("syscalls", "sys_enter_openat"), None
    insns: bytes  # linked instructions (callees appended), little-endian struct bpf_insn
    map_relocs: list[MapReloc] = field(default_factory=list)
    func_info: list[FuncInfo] = field(default_factory=list)  # empty when the object has no .BTF.ext
    line_info: list[LineInfo] = field(default_factory=list)
    core_relocs: list[CoreReloc] = field(default_factory=list)
    section_offset: int = 0  # the function's byte offset inside its section
    size: int = 0  # the function's own size in bytes (before callees were appended)
    callees: list[str] = field(default_factory=list)  # .text functions appended, in order
    sleepable: bool = False  # ".s" sections (fentry.s/, uprobe.s/, ...)

    @property
    def insn_count(self) -> int:
        return len(self.insns) // 8

    @property
    def is_retprobe(self) -> bool:
        return self.kind in (ProgramKind.KRETPROBE, ProgramKind.URETPROBE)

    def func_info_bytes(self) -> bytes:
        return b"".join(f.pack() for f in self.func_info)

    def line_info_bytes(self) -> bytes:
        return b"".join(li.pack() for li in self.line_info)


@dataclass(frozen=True)
class GlobalVar:
    """A global variable in .data/.rodata/.bss: where Aya's set_global writes it."""

    name: str
    map_name: str  # the global-data map holding it (its section name)
    offset: int  # byte offset inside the map value
    size: int  # the symbol's st_size; set_global must write exactly this many bytes
    section: str


@dataclass(frozen=True)
class SectionInfo:
    """One ELF section header, for `bpfload inspect` (type as llvm-readelf names it)."""

    index: int
    name: str
    type: str  # "PROGBITS", "NOBITS", "REL", "SYMTAB", ...
    flags: str  # "AX", "WA", ... (llvm-readelf letters)
    offset: int
    size: int


# BTF classes live with their parser; re-exported here so the model is one import.
from .btf import Btf, BtfExt, BtfType  # noqa: E402


@dataclass
class BpfObject:
    """A parsed BPF ELF object."""

    name: str  # file path or "<bytes>"
    license: str = ""
    kernel_version: int = 0  # SEC("version") u32, 0 when absent (BPF_PROG_LOAD kern_version)
    programs: dict[str, ProgramDef] = field(default_factory=dict)
    maps: dict[str, MapDef] = field(default_factory=dict)
    btf: Btf | None = None
    btf_ext: BtfExt | None = None
    globals: dict[str, GlobalVar] = field(default_factory=dict)
    functions: dict[str, tuple[str, int, int]] = field(default_factory=dict)  # name -> (section, offset, size)
    sections: list[SectionInfo] = field(default_factory=list)

    def program(self, name: str) -> ProgramDef:
        try:
            return self.programs[name]
        except KeyError:
            raise KeyError(f"no program {name!r} in {self.name} (has: {', '.join(self.programs) or 'none'})") from None

    def map(self, name: str) -> MapDef:
        try:
            return self.maps[name]
        except KeyError:
            raise KeyError(f"no map {name!r} in {self.name} (has: {', '.join(self.maps) or 'none'})") from None

    def set_global(self, name: str, value: bytes) -> None:
        """Overwrite a global's initial value in its map's data (Aya's EbpfLoader::set_global).

        The value must be exactly the symbol's size (Aya checks the same), so a caller cannot
        overwrite a neighbouring variable.
        """
        var = self.globals.get(name)
        if var is None:
            raise KeyError(f"no global {name!r} in {self.name}")
        if len(value) != var.size:
            raise ValueError(f"global {name!r} is {var.size} bytes, got {len(value)}")
        m = self.maps[var.map_name]
        data = bytearray(m.data if m.data is not None else bytes(m.value_size))
        data[var.offset : var.offset + var.size] = value
        m.data = bytes(data)


__all__ = [
    "BpfObject",
    "Btf",
    "BtfExt",
    "BtfType",
    "CoreReloc",
    "FuncInfo",
    "GlobalVar",
    "LineInfo",
    "MapDef",
    "MapKind",
    "MapReloc",
    "ObjectError",
    "PinningType",
    "ProgramDef",
    "ProgramKind",
    "SectionInfo",
]
