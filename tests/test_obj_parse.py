"""loader.obj against the LLVM tools: every example and test object parses, and what the parser
finds (programs, sizes, relocations, BTF types) is what llvm-readelf / llvm-objdump / bpftool
print for the same file."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from kernel_sim.uapi.insn import BPF_PSEUDO_CALL, BPF_PSEUDO_FUNC, LD_IMM64, decode
from loader.obj import MapKind, load_object

REPO = Path(__file__).resolve().parent.parent
OBJECTS = sorted((REPO / "examples").glob("*.o")) + sorted((REPO / "tests" / "objects").glob("*.o"))
IDS = [p.relative_to(REPO).as_posix() for p in OBJECTS]

needs_llvm = pytest.mark.skipif(shutil.which("llvm-readelf") is None, reason="llvm-readelf not installed")
needs_bpftool = pytest.mark.skipif(shutil.which("bpftool") is None, reason="bpftool not installed")


def run(*cmd: str) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def readelf_symbols(path: Path) -> list[dict]:
    out = []
    for line in run("llvm-readelf", "-sW", str(path)).splitlines():
        m = re.match(r"\s*\d+:\s+([0-9a-f]+)\s+(\d+)\s+(\w+)\s+(\w+)\s+\w+\s+(\w+)\s*(\S*)", line)
        if m:
            value, size, typ, bind, ndx, name = m.groups()
            out.append({"value": int(value, 16), "size": int(size), "type": typ, "bind": bind, "ndx": ndx,
                        "name": name})
    return out


def readelf_sections(path: Path) -> dict[int, dict]:
    out = {}
    for line in run("llvm-readelf", "-SW", str(path)).splitlines():
        m = re.match(r"\s*\[\s*(\d+)\]\s+(\S+)\s+(\w+)\s+[0-9a-f]+\s+([0-9a-f]+)\s+([0-9a-f]+)\s+\S+\s+(\w*)\s", line)
        if m:
            idx, name, typ, off, size, flags = m.groups()
            out[int(idx)] = {"name": name, "type": typ, "offset": int(off, 16), "size": int(size, 16), "flags": flags}
    return out


def readelf_relocs(path: Path) -> dict[str, list[tuple[int, str, str]]]:
    """Relocation section target name -> [(offset, type, symbol)]."""
    out: dict[str, list[tuple[int, str, str]]] = {}
    current = None
    for line in run("llvm-readelf", "-rW", str(path)).splitlines():
        m = re.match(r"Relocation section '\.rel(.*)' at offset", line)
        if m:
            current = out.setdefault(m.group(1), [])
            continue
        m = re.match(r"([0-9a-f]{16})\s+[0-9a-f]+\s+(R_BPF_\w+)\s+[0-9a-f]+\s+(\S+)", line)
        if m and current is not None:
            current.append((int(m.group(1), 16), m.group(2), m.group(3)))
    return out


def test_there_are_objects():
    names = {p.name for p in OBJECTS}
    assert {"opensnoop.bpf.o", "opensnoop_tp.bpf.o"} <= names


@needs_llvm
@pytest.mark.parametrize("path", OBJECTS, ids=IDS)
def test_programs_match_symbol_table(path: Path):
    obj = load_object(path)
    sections = readelf_sections(path)
    funcs = [s for s in readelf_symbols(path) if s["type"] == "FUNC"]
    expected = {
        s["name"]: s for s in funcs if sections[int(s["ndx"])]["name"] != ".text"
    }
    assert set(obj.programs) == set(expected)
    for name, sym in expected.items():
        prog = obj.programs[name]
        assert prog.section == sections[int(sym["ndx"])]["name"]
        assert prog.section_offset == sym["value"]
        assert prog.size == sym["size"]
        # The program's own code is byte-identical to the file; callees come after it.
        sec = sections[int(sym["ndx"])]
        raw = path.read_bytes()[sec["offset"] + sym["value"] : sec["offset"] + sym["value"] + sym["size"]]
        own = prog.insns[: prog.size]
        relinked = {
            i for i in range(0, len(raw), 8)
            if (raw[i] == 0x85 and raw[i + 1] >> 4 == BPF_PSEUDO_CALL) or (raw[i] == LD_IMM64 and own[i + 1] >> 4 == 4)
        }  # calls and function-pointer lddws get new offsets
        for i in range(0, len(raw), 8):
            if i not in relinked:
                assert own[i : i + 8] == raw[i : i + 8], f"{name} insn {i // 8}"
        callee_size = sum(f["size"] for f in funcs if f["name"] in prog.callees)
        assert prog.insn_count * 8 == prog.size + callee_size


@needs_llvm
@pytest.mark.parametrize("path", OBJECTS, ids=IDS)
def test_map_relocations_match_readelf(path: Path):
    obj = load_object(path)
    relocs = readelf_relocs(path)
    syms = {s["name"]: s for s in readelf_symbols(path)}
    sections = readelf_sections(path)
    for prog in obj.programs.values():
        lo, hi = prog.section_offset, prog.section_offset + prog.size
        want = sorted(
            ((off - lo) // 8, sym)
            for off, typ, sym in relocs.get(prog.section, [])
            if typ == "R_BPF_64_64" and lo <= off < hi and sym in syms
            and sections[int(syms[sym]["ndx"])]["flags"].find("X") < 0
        )
        own = sorted((r.insn_index, r.symbol) for r in prog.map_relocs if r.insn_index < prog.size // 8)
        assert own == want
        insns = decode(prog.insns)
        for r in prog.map_relocs:
            assert insns[r.insn_index].code == LD_IMM64
            assert r.map_name in obj.maps
            m = obj.maps[r.map_name]
            if r.kind == "map_value":
                assert m.is_global_data and 0 <= r.offset < m.value_size
            else:
                assert m.kind in (MapKind.LEGACY, MapKind.BTF)


@needs_llvm
@pytest.mark.parametrize("path", OBJECTS, ids=IDS)
def test_calls_land_on_function_starts(path: Path):
    """After linking, every bpf-to-bpf call points at the first instruction of an appended callee."""
    obj = load_object(path)
    for prog in obj.programs.values():
        insns = decode(prog.insns)
        starts = {0}
        pos = prog.size // 8
        for callee in prog.callees:
            starts.add(pos)
            pos += obj.functions[callee][2] // 8
        assert pos == len(insns)
        for i, ins in enumerate(insns):
            if (ins.code == 0x85 and ins.src == BPF_PSEUDO_CALL) or (ins.code == LD_IMM64 and ins.src == BPF_PSEUDO_FUNC):
                assert i + ins.imm + 1 in starts, f"{prog.name}: call at {i} -> {i + ins.imm + 1}"


@needs_llvm
@pytest.mark.parametrize("path", OBJECTS, ids=IDS)
def test_global_data_maps_match_sections(path: Path):
    obj = load_object(path)
    sections = {s["name"]: s for s in readelf_sections(path).values()}
    data_secs = {n for n, s in sections.items() if re.match(r"\.(data|rodata|bss)(\.|$)", n) and "A" in s["flags"]}
    assert {m.name for m in obj.maps.values() if m.is_global_data} == {n for n in data_secs if sections[n]["size"]}
    raw = path.read_bytes()
    for m in obj.maps.values():
        if not m.is_global_data:
            continue
        s = sections[m.name]
        assert m.value_size == s["size"] and m.max_entries == 1 and m.key_size == 4
        if s["type"] == "NOBITS":
            assert m.data == bytes(s["size"])
        else:
            assert m.data == raw[s["offset"] : s["offset"] + s["size"]]
        assert m.frozen == m.name.startswith(".rodata")
    for var in obj.globals.values():
        sym = next(s for s in readelf_symbols(path) if s["name"] == var.name)
        assert (var.offset, var.size) == (sym["value"], sym["size"])


@needs_bpftool
@pytest.mark.parametrize("path", OBJECTS, ids=IDS)
def test_btf_types_match_bpftool(path: Path):
    obj = load_object(path)
    if obj.btf is None:
        pytest.skip(f"{path.name} has no BTF")  # true everywhere: the object was built without -g
    dump = run("bpftool", "btf", "dump", "file", str(path))
    heads = re.findall(r"^\[(\d+)\] (\w+) '([^']*)'", dump, re.M)
    assert len(heads) == len(obj.btf.types) - 1
    for tid, kind, name in heads:
        t = obj.btf.types[int(tid)]
        assert (t.kind, t.name or "(anon)") == (kind, name)
    # Sizes bpftool prints for structs/ints agree with ours.
    for tid, size in re.findall(r"^\[(\d+)\] (?:STRUCT|UNION|INT) '[^']*' size=(\d+)", dump, re.M):
        assert obj.btf.types[int(tid)].size == int(size)


@pytest.mark.parametrize("path", OBJECTS, ids=IDS)
def test_func_info_and_line_info_are_rebased(path: Path):
    obj = load_object(path)
    if obj.btf_ext is None:
        pytest.skip(f"{path.name} has no .BTF.ext")  # true everywhere: built without -g
    for prog in obj.programs.values():
        # One FUNC record at each function start, in order, all FUNC types.
        assert prog.func_info and prog.func_info[0].insn_off == 0
        assert len(prog.func_info) == 1 + len(prog.callees)
        for fi in prog.func_info:
            assert obj.btf.types[fi.type_id].kind == "FUNC"
        assert obj.btf.types[prog.func_info[0].type_id].name == prog.name
        offs = [li.insn_off for li in prog.line_info]
        assert offs == sorted(offs) and offs[0] == 0 and offs[-1] < prog.insn_count
        assert len(prog.func_info_bytes()) == 8 * len(prog.func_info)
        assert struct.unpack_from("<II", prog.func_info_bytes()) == (0, prog.func_info[0].type_id)


@pytest.mark.parametrize("path", OBJECTS, ids=IDS)
def test_all_programs_are_gpl(path: Path):
    obj = load_object(path)
    assert obj.license == "GPL"
