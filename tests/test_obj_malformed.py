"""Malformed and unsupported objects: each raises one ObjectError naming the file, the section
and (where there is one) the offset; fuzzed truncations and byte flips never raise anything else."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loader.obj import ObjectError, load_object, parse_object
from loader.obj.btf import parse_btf

REPO = Path(__file__).resolve().parent.parent
OPENSNOOP = REPO / "examples" / "opensnoop.bpf.o"
GLOBALS = REPO / "examples" / "globals.bpf.o"
LEGACY = REPO / "tests" / "objects" / "legacy_maps.bpf.o"
CALLS = REPO / "tests" / "objects" / "calls.bpf.o"
BTF_MAPS = REPO / "tests" / "objects" / "btf_maps.bpf.o"
BIGENDIAN = REPO / "tests" / "objects" / "bigendian.bpfeb"

SHDR = struct.Struct("<IIQQQQIIQQ")  # Elf64_Shdr


class Elf:
    """Just enough ELF reading to find what to corrupt, independent of the parser under test."""

    def __init__(self, data: bytes) -> None:
        self.data = bytearray(data)
        self.shoff = struct.unpack_from("<Q", data, 0x28)[0]
        self.shnum, self.shstrndx = struct.unpack_from("<HH", data, 0x3C)
        strtab = self.header(self.shstrndx)
        names = data[strtab[4] : strtab[4] + strtab[5]]
        self.index = {}
        for i in range(self.shnum):
            off = self.header(i)[0]
            self.index[names[off : names.index(b"\0", off)].decode()] = i

    def header(self, i: int) -> list[int]:
        return list(SHDR.unpack_from(self.data, self.shoff + i * SHDR.size))

    def set_header(self, section: str, **fields: int) -> bytes:
        order = ["name", "type", "flags", "addr", "offset", "size", "link", "info", "addralign", "entsize"]
        i = self.index[section]
        h = self.header(i)
        for k, v in fields.items():
            h[order.index(k)] = v
        SHDR.pack_into(self.data, self.shoff + i * SHDR.size, *h)
        return bytes(self.data)

    def section(self, name: str) -> tuple[int, int]:
        h = self.header(self.index[name])
        return h[4], h[5]


def expect_error(data: bytes, *, name: str = "bad.o", section: str | None = None, contains: str = "") -> ObjectError:
    with pytest.raises(ObjectError) as info:
        parse_object(data, name)
    e = info.value
    assert name in str(e)
    if section is not None:
        assert e.section == section, str(e)
        assert f"section {section}" in str(e)
    if contains:
        assert contains in str(e), str(e)
    return e


# -- header-level --------------------------------------------------------------------------------


@pytest.mark.parametrize("cut", [0, 3, 16, 40, 63])
def test_truncated_header(cut: int):
    e = expect_error(OPENSNOOP.read_bytes()[:cut])
    assert e.offset is not None


@pytest.mark.parametrize("fraction", [0.1, 0.3, 0.5, 0.7, 0.9, 0.999])
def test_truncated_file(fraction: float):
    data = OPENSNOOP.read_bytes()
    e = expect_error(data[: int(len(data) * fraction)])
    assert "past the end of the file" in str(e)


def test_wrong_machine():
    data = bytearray(OPENSNOOP.read_bytes())
    struct.pack_into("<H", data, 18, 62)  # EM_X86_64
    expect_error(bytes(data), contains="wrong machine 62")


def test_big_endian_object_built_with_bpfeb():
    data = BIGENDIAN.read_bytes()
    assert data[5] == 2  # really ELFDATA2MSB, as clang -target bpfeb wrote it
    with pytest.raises(ObjectError, match="big-endian") as info:
        load_object(BIGENDIAN)
    assert str(BIGENDIAN) in str(info.value)


def test_not_elf():
    expect_error(b"#!/bin/sh\necho hi\n" * 10, contains="not an ELF")


def test_not_relocatable():
    data = bytearray(OPENSNOOP.read_bytes())
    struct.pack_into("<H", data, 16, 2)  # ET_EXEC
    expect_error(bytes(data), contains="not a relocatable object")


# -- section headers -------------------------------------------------------------------------------


def test_section_data_past_end_names_the_section():
    elf = Elf(OPENSNOOP.read_bytes())
    data = elf.set_header("kprobe/do_sys_openat2", offset=len(elf.data) - 16)
    expect_error(data, section="kprobe/do_sys_openat2", contains="past the end of the file")


def test_section_size_past_end_names_the_section():
    elf = Elf(OPENSNOOP.read_bytes())
    data = elf.set_header(".BTF", size=10**9)
    expect_error(data, section=".BTF")


def test_bad_section_name_offset():
    elf = Elf(OPENSNOOP.read_bytes())
    data = elf.set_header("license", name=0xFFFFFF)
    expect_error(data, contains="bad name offset")


def test_bad_shstrndx():
    data = bytearray(OPENSNOOP.read_bytes())
    struct.pack_into("<H", data, 0x3E, 999)
    expect_error(bytes(data), contains="section name table index")


def test_missing_symbol_table():
    elf = Elf(OPENSNOOP.read_bytes())
    data = elf.set_header(".symtab", type=1)  # now PROGBITS: no SHT_SYMTAB left
    expect_error(data, section=".symtab", contains="no symbol table")


def test_bad_symbol_entry_size():
    elf = Elf(OPENSNOOP.read_bytes())
    data = elf.set_header(".symtab", entsize=16)
    expect_error(data, section=".symtab", contains="entry size")


def test_huge_bss_is_refused_without_allocating_it():
    elf = Elf(GLOBALS.read_bytes())
    data = elf.set_header(".bss", size=1 << 40)
    expect_error(data, section=".bss", contains="global data")


def test_btf_maps_without_btf():
    elf = Elf(OPENSNOOP.read_bytes())
    off = elf.section(".strtab")[0]  # llvm puts section names in .strtab
    data = bytearray(elf.data)
    strtab = bytes(data[off : off + elf.section(".strtab")[1]]).replace(b".BTF", b".XYZ")
    data[off : off + len(strtab)] = strtab  # .BTF, .BTF.ext and their .rel sections all renamed
    expect_error(bytes(data), section=".maps", contains="needs BTF")


def test_corrupt_btf_magic():
    elf = Elf(OPENSNOOP.read_bytes())
    off, _ = elf.section(".BTF")
    data = bytearray(elf.data)
    data[off : off + 2] = b"\x00\x00"
    e = expect_error(bytes(data), section=".BTF", contains="bad BTF magic")
    assert e.offset == off


def test_btf_type_refers_to_missing_type():
    elf = Elf(OPENSNOOP.read_bytes())
    off, size = elf.section(".BTF")
    btf = parse_btf(bytes(elf.data[off : off + size]))
    ptr = next(t for t in btf.types if t.kind == "PTR")
    data = bytearray(elf.data)
    struct.pack_into("<I", data, off + btf.hdr_len + btf.type_off + ptr.byte_offset + 8, 99999)
    expect_error(bytes(data), section=".BTF", contains="missing type 99999")


def test_corrupt_btf_ext():
    elf = Elf(OPENSNOOP.read_bytes())
    off, _ = elf.section(".BTF.ext")
    data = bytearray(elf.data)
    struct.pack_into("<I", data, off + 12, 10**6)  # func_info_len
    expect_error(bytes(data), section=".BTF.ext", contains="exceeds")


# -- relocations ------------------------------------------------------------------------------------


def reloc_section(elf: Elf, target: str) -> int:
    return elf.section(".rel" + target)[0]


def test_relocation_offset_outside_section():
    elf = Elf(OPENSNOOP.read_bytes())
    rel = reloc_section(elf, "kprobe/do_sys_openat2")
    data = bytearray(elf.data)
    struct.pack_into("<Q", data, rel, 0x100000)
    expect_error(bytes(data), section="kprobe/do_sys_openat2", contains="bad relocation")


def test_relocation_offset_misaligned():
    elf = Elf(OPENSNOOP.read_bytes())
    rel = reloc_section(elf, "kprobe/do_sys_openat2")
    data = bytearray(elf.data)
    r_offset = struct.unpack_from("<Q", data, rel)[0]
    struct.pack_into("<Q", data, rel, r_offset + 3)
    expect_error(bytes(data), section="kprobe/do_sys_openat2", contains="bad relocation")


def test_relocation_on_a_non_lddw_instruction():
    elf = Elf(OPENSNOOP.read_bytes())
    rel = reloc_section(elf, "kprobe/do_sys_openat2")
    data = bytearray(elf.data)
    struct.pack_into("<Q", data, rel, 0)  # instruction 0 is `r6 = r1`
    expect_error(bytes(data), section="kprobe/do_sys_openat2", contains="neither an lddw nor a call")


def test_relocation_with_bad_symbol_index():
    elf = Elf(OPENSNOOP.read_bytes())
    rel = reloc_section(elf, "kprobe/do_sys_openat2")
    data = bytearray(elf.data)
    struct.pack_into("<Q", data, rel + 8, (5000 << 32) | 1)
    expect_error(bytes(data), section=".relkprobe/do_sys_openat2", contains="symbol 5000")


def test_relocation_of_unsupported_type():
    elf = Elf(OPENSNOOP.read_bytes())
    rel = reloc_section(elf, "kprobe/do_sys_openat2")
    data = bytearray(elf.data)
    info = struct.unpack_from("<Q", data, rel + 8)[0]
    struct.pack_into("<Q", data, rel + 8, (info & ~0xFFFFFFFF) | 77)
    expect_error(bytes(data), section="kprobe/do_sys_openat2", contains="unsupported type 77")


def test_relocation_to_a_symbol_that_is_no_map():
    """The lddw is relocated against LICENSE (in section "license"), which holds no map."""
    data = OPENSNOOP.read_bytes()
    elf = Elf(data)
    rel = reloc_section(elf, "kprobe/do_sys_openat2")
    symoff, symsize = elf.section(".symtab")
    strtab = elf.section(".strtab")[0]
    names = [
        data[strtab + st_name : data.index(b"\0", strtab + st_name)]
        for st_name, *_ in struct.iter_unpack("<IBBHQQ", data[symoff : symoff + symsize])
    ]
    lic = names.index(b"LICENSE")
    buf = bytearray(data)
    struct.pack_into("<Q", buf, rel + 8, (lic << 32) | 1)
    expect_error(bytes(buf), section="kprobe/do_sys_openat2", contains="holds no map")


def test_call_to_missing_function():
    """Point a .text call's target past the end of .text."""
    elf = Elf(CALLS.read_bytes())
    off, _ = elf.section("tracepoint/syscalls/sys_enter_getppid")
    data = bytearray(elf.data)
    # instruction 4 is `call 18` relocated against .text (local_helper): make it jump far away
    assert data[off + 32] == 0x85
    struct.pack_into("<i", data, off + 36, 5000)
    expect_error(bytes(data), section="tracepoint/syscalls/sys_enter_getppid", contains="targets offset")


# -- maps -------------------------------------------------------------------------------------------


def test_unknown_legacy_map_type():
    elf = Elf(LEGACY.read_bytes())
    off, _ = elf.section("maps")
    data = bytearray(elf.data)
    struct.pack_into("<I", data, off, 999)  # first map's type
    e = expect_error(bytes(data), section="maps", contains="unknown map type 999")
    assert e.offset == off


def test_unknown_btf_map_type():
    data = bytearray(BTF_MAPS.read_bytes())
    elf = Elf(bytes(data))
    off, size = elf.section(".BTF")
    btf = parse_btf(bytes(data[off : off + size]))
    flows = btf.find("flows", "VAR")
    member = next(m for m in btf.skip_modifiers(flows.type).members if m.name == "type")
    arr = btf.types[btf.types[member.type].type]
    assert arr.kind == "ARRAY"
    struct.pack_into("<I", data, off + btf.hdr_len + btf.type_off + arr.byte_offset + 12 + 8, 4242)
    expect_error(bytes(data), section=".maps", contains="unknown map type 4242")


def test_legacy_map_too_small():
    data = bytearray(LEGACY.read_bytes())
    elf = Elf(bytes(data))
    symoff, symsize = elf.section(".symtab")
    maps_index = elf.index["maps"]
    for i in range(symsize // 24):
        at = symoff + i * 24
        _name, _info, _other, shndx, _value, size = struct.unpack_from("<IBBHQQ", data, at)
        if shndx == maps_index and size == 20:
            struct.pack_into("<Q", data, at + 16, 8)
            break
    expect_error(bytes(data), section="maps", contains="at least 16")


def test_unknown_program_section():
    elf = Elf(OPENSNOOP.read_bytes())
    off = elf.section(".strtab")[0]
    data = bytearray(elf.data)
    at = data.index(b"kprobe/do_sys_openat2\0", off)
    data[at : at + 6] = b"kprobX"
    expect_error(bytes(data), section="kprobX/do_sys_openat2", contains="unknown program section")


def test_missing_file_is_oserror():
    with pytest.raises(OSError):
        load_object(REPO / "does-not-exist.o")


# -- fuzzing ------------------------------------------------------------------------------------------

SEEDS = [OPENSNOOP.read_bytes(), GLOBALS.read_bytes(), LEGACY.read_bytes(), BTF_MAPS.read_bytes(), CALLS.read_bytes()]


def parse_or_object_error(data: bytes) -> None:
    try:
        parse_object(data, "fuzz.o")
    except ObjectError as e:
        assert "fuzz.o" in str(e)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, len(SEEDS) - 1), cut=st.integers(0, 10**6))
def test_fuzz_truncation(seed: int, cut: int):
    data = SEEDS[seed]
    parse_or_object_error(data[: cut % (len(data) + 1)])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, len(SEEDS) - 1),
    flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 255)), min_size=1, max_size=8),
)
def test_fuzz_byte_flips(seed: int, flips: list[tuple[int, int]]):
    data = bytearray(SEEDS[seed])
    for pos, mask in flips:
        data[pos % len(data)] ^= mask
    parse_or_object_error(bytes(data))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, len(SEEDS) - 1),
    region=st.sampled_from([".BTF", ".BTF.ext", ".symtab", ".maps", "maps", ".strtab"]),
    flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 255)), min_size=1, max_size=4),
)
def test_fuzz_structured_sections(seed: int, region: str, flips: list[tuple[int, int]]):
    """Flips aimed at the sections the parser interprets (not at code bytes, which it copies)."""
    elf = Elf(SEEDS[seed])
    if region not in elf.index:
        region = ".symtab"
    off, size = elf.section(region)
    data = bytearray(elf.data)
    for pos, mask in flips:
        data[off + pos % max(size, 1)] ^= mask
    parse_or_object_error(bytes(data))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, len(SEEDS) - 1),
    field=st.integers(0, 9),
    value=st.one_of(st.integers(0, 2**16), st.integers(0, 2**64 - 1)),
    which=st.integers(0, 100),
)
def test_fuzz_section_header_fields(seed: int, field: int, value: int, which: int):
    elf = Elf(SEEDS[seed])
    i = which % elf.shnum
    h = elf.header(i)
    h[field] = value % (2**32 if field in (0, 1, 6, 7) else 2**64)
    SHDR.pack_into(elf.data, elf.shoff + i * SHDR.size, *h)
    parse_or_object_error(bytes(elf.data))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=600), use_seed=st.booleans(), flips=st.lists(st.integers(0, 10**6), max_size=6))
def test_fuzz_btf_parsers_raise_only_btf_error(data: bytes, use_seed: bool, flips: list[int]):
    from loader.obj.btf import BtfError, parse_btf, parse_btf_ext

    elf = Elf(OPENSNOOP.read_bytes())
    off, size = elf.section(".BTF")
    btf_raw = bytearray(elf.data[off : off + size]) if use_seed else bytearray(data)
    for f in flips:
        if btf_raw:
            btf_raw[f % len(btf_raw)] ^= 0xFF
    try:
        btf = parse_btf(bytes(btf_raw))
        for t in btf.types:
            btf.type_name(t.id)
            try:
                btf.size_of(t.id)
            except BtfError:
                pass
    except BtfError:
        pass
    ext_off, ext_size = elf.section(".BTF.ext")
    ext_raw = bytearray(elf.data[ext_off : ext_off + ext_size]) if use_seed else bytearray(data)
    for f in flips:
        if ext_raw:
            ext_raw[f % len(ext_raw)] ^= 0xFF
    try:
        parse_btf_ext(bytes(ext_raw), parse_btf(bytes(elf.data[off : off + size])).strings)
    except BtfError:
        pass
