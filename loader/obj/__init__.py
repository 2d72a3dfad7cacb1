"""Pure BPF object parsing (aya-obj's role): ELF bytes in, BpfObject out, no syscalls."""

from .model import (
    BpfObject,
    Btf,
    BtfExt,
    BtfType,
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
    ProgramKind,
    SectionInfo,
)

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
    "load_object",
    "parse_object",
]


def parse_object(data: bytes, name: str = "<bytes>") -> BpfObject:
    """Parse a BPF ELF object from bytes; every malformed input raises ObjectError."""
    from .elf import parse_object as _parse

    return _parse(data, name)


def load_object(path) -> BpfObject:
    """Read and parse a BPF ELF object file."""
    from .elf import load_object as _load

    return _load(path)
