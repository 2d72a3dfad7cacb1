"""`bpfload inspect` and `bpfload disasm` against the LLVM tools and bpftool on the same files."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from loader.cli import main
from loader.obj import load_object

REPO = Path(__file__).resolve().parent.parent
OBJECTS = sorted((REPO / "examples").glob("*.o")) + sorted((REPO / "tests" / "objects").glob("*.o"))
IDS = [p.relative_to(REPO).as_posix() for p in OBJECTS]

needs_objdump = pytest.mark.skipif(shutil.which("llvm-objdump") is None, reason="llvm-objdump not installed")


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


@needs_objdump
@pytest.mark.parametrize("path", OBJECTS, ids=IDS)
def test_disasm_is_llvm_objdump_dr_alu32(capsys, path: Path):
    """Byte-for-byte the text of `llvm-objdump -dr --mattr=+alu32`."""
    rel = path.relative_to(REPO).as_posix()
    theirs = subprocess.run(["llvm-objdump", "-dr", "--mattr=+alu32", rel], cwd=REPO, capture_output=True,
                            text=True, check=True).stdout
    rc, ours, err = run_cli(capsys, "disasm", "--alu32", str(REPO / rel))
    assert rc == 0, err
    assert ours.replace(str(REPO / rel), rel) == theirs


@needs_objdump
@pytest.mark.parametrize("path", OBJECTS, ids=IDS)
def test_disasm_is_llvm_objdump_dr(capsys, path: Path):
    """The text of plain `llvm-objdump -dr`, except where LLVM prints <unknown> (it does not
    decode 32-bit atomics without +alu32; we always do)."""
    rel = path.relative_to(REPO).as_posix()
    theirs = subprocess.run(["llvm-objdump", "-dr", rel], cwd=REPO, capture_output=True, text=True,
                            check=True).stdout.splitlines()
    rc, ours, err = run_cli(capsys, "disasm", str(REPO / rel))
    assert rc == 0, err
    ours = ours.replace(str(REPO / rel), rel).splitlines()
    assert len(ours) == len(theirs)
    unknown = 0
    for a, b in zip(ours, theirs, strict=True):
        if b.endswith("\t<unknown>"):
            unknown += 1
            assert a.split("\t")[:2] == b.split("\t")[:2] and "<unknown>" not in a
        else:
            assert a == b


@needs_objdump
def test_disasm_without_relocs_is_llvm_objdump_d(capsys):
    path = REPO / "examples" / "opensnoop.bpf.o"
    theirs = subprocess.run(["llvm-objdump", "-d", str(path)], capture_output=True, text=True, check=True).stdout
    rc, ours, _ = run_cli(capsys, "disasm", "--no-relocs", str(path))
    assert rc == 0 and ours == theirs


def _objdump_insn_lines(path: Path, section: str) -> list[str]:
    text = subprocess.run(["llvm-objdump", "-d", "--mattr=+alu32", f"--section={section}", str(path)],
                          capture_output=True, text=True, check=True).stdout
    return [line for line in text.splitlines() if re.match(r"\s+\d+:\t", line)]


@needs_objdump
@pytest.mark.parametrize("path", [REPO / "examples" / "globals.bpf.o", REPO / "tests" / "objects" / "calls.bpf.o",
                                  REPO / "examples" / "opensnoop.bpf.o"], ids=lambda p: p.name)
def test_disasm_program_is_the_linked_program(capsys, path: Path):
    obj = load_object(path)
    for name, prog in obj.programs.items():
        rc, out, err = run_cli(capsys, "disasm", "--alu32", str(path), "--program", name)
        assert rc == 0, err
        ours = [line for line in out.splitlines() if re.match(r"\s+\d+:\t", line)]
        # The program's own instructions read as llvm-objdump prints them, except the
        # re-linked calls / function pointers and jump annotations.
        first = prog.section_offset // 8
        theirs = [ln for ln in _objdump_insn_lines(path, prog.section)
                  if first <= int(ln.split(":")[0]) < first + prog.size // 8]
        text = lambda ln: ln.split("\t", 1)[1]  # noqa: E731  (bytes and text; indexes differ)
        for a, b in zip(ours, theirs, strict=False):
            if "call" in b or " ll" in b:
                continue
            assert text(a) == text(b)  # jump annotations included: the object's labels carry over
        callee_lines = 0
        for callee in prog.callees:
            section, offset, size = obj.functions[callee]
            callee_lines += sum(1 for ln in _objdump_insn_lines(path, section)
                                if offset // 8 <= int(ln.split(":")[0]) < (offset + size) // 8)
        assert len(ours) == len(theirs) + callee_lines
        for callee in prog.callees:
            assert f"<{callee}>:" in out
        for r in prog.map_relocs:
            assert f"{r.insn_index * 8:016x}:  {'MAP_FD' if r.kind == 'map_fd' else 'MAP_VALUE'}\t{r.map_name}" in out


@pytest.mark.skipif(shutil.which("bpftool") is None, reason="bpftool not installed")
@pytest.mark.parametrize("path", [p for p in OBJECTS if p.name != "nobtf.bpf.o"], ids=lambda p: p.name)
def test_inspect_btf_dump_is_bpftools(capsys, path: Path):
    """The BTF section of `inspect --json` is `bpftool btf dump file`, but for DATASEC blocks,
    which we show after the size/offset fixups the kernel needs (bpftool shows clang's zeros)."""
    rc, out, err = run_cli(capsys, "inspect", "--json", str(path))
    assert rc == 0, err
    ours = json.loads(out)["btf"]["dump"]
    theirs = subprocess.run(["bpftool", "btf", "dump", "file", str(path)], capture_output=True, text=True,
                            check=True).stdout.splitlines()
    assert len(ours) == len(theirs)

    def not_datasec(lines):
        keep, in_ds = [], False
        for ln in lines:
            if not ln.startswith("\t"):
                in_ds = " DATASEC " in ln
            if not in_ds:
                keep.append(ln)
        return keep

    assert not_datasec(ours) == not_datasec(theirs)
    for a, b in zip(ours, theirs, strict=True):
        if " DATASEC " in b:
            assert a.split(" size=")[0] == b.split(" size=")[0]


@pytest.mark.parametrize("path", OBJECTS, ids=IDS)
def test_inspect_reports_everything(capsys, path: Path):
    obj = load_object(path)
    rc, out, err = run_cli(capsys, "inspect", str(path))
    assert rc == 0 and not err
    for section in ("Sections:", "Programs:", "Maps:", "Relocations:"):
        assert section in out
    for name, prog in obj.programs.items():
        assert re.search(rf"^  {re.escape(name)}\s+{prog.kind.value}\s+{re.escape(prog.section)}\s", out, re.M)
    for name, m in obj.maps.items():
        assert re.search(rf"^  {re.escape(name)}\s+{m.type_name}\s+{m.key_size}\s+{m.value_size}\s+{m.max_entries}\s",
                         out, re.M)
    rc, out, _ = run_cli(capsys, "inspect", "--json", str(path))
    data = json.loads(out)
    assert [p["name"] for p in data["programs"]] == list(obj.programs)
    assert sum(len(p["map_relocs"]) for p in data["programs"]) == sum(len(p.map_relocs) for p in obj.programs.values())


@pytest.mark.parametrize(
    "argv, message",
    [
        (["inspect", "missing.o"], "missing.o: no such file"),
        (["disasm", "missing.o"], "missing.o: no such file"),
        (["disasm", str(REPO / "examples" / "opensnoop.bpf.o"), "--program", "nope"], "no program 'nope'"),
        (["inspect", str(REPO / "tests" / "objects" / "bigendian.bpfeb")], "big-endian"),
        (["disasm", str(REPO / "tests" / "objects" / "bigendian.bpfeb")], "big-endian"),
        (["inspect", str(REPO / "tests" / "objects")], "is a directory"),
    ],
)
def test_errors_are_one_line(capsys, argv, message):
    rc, out, err = run_cli(capsys, *argv)
    assert rc == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith("bpfload: ") and message in err


@pytest.mark.parametrize("path", sorted((REPO / "examples").glob("*.o")), ids=lambda p: p.name)
def test_disasm_program_quotes_the_source(capsys, path: Path):
    """Source comments come from BTF line info; each is a line of the example's C source, and the
    first precedes instruction 0."""
    c_file = path.parent / (path.name.split(".")[0] + ".bpf.c")  # opensnoop.riscv64.bpf.o <- opensnoop.bpf.c
    source = {ln.strip() for ln in c_file.read_text().splitlines()}
    header = path.parent / "aya_log.h"
    source |= {ln.strip() for ln in header.read_text().splitlines()}
    for name in load_object(path).programs:
        rc, out, _ = run_cli(capsys, "disasm", str(path), "--program", name)
        lines = out.splitlines()
        comments = [ln[2:] for ln in lines if ln.startswith("; ")]
        assert comments and all(c in source for c in comments), [c for c in comments if c not in source]
        first = next(i for i, ln in enumerate(lines) if re.match(r"\s+0:\t", ln))
        assert lines[first - 1].startswith("; ")
        rc, out, _ = run_cli(capsys, "disasm", "--no-source", str(path), "--program", name)
        assert not any(ln.startswith("; ") for ln in out.splitlines())


@pytest.mark.skipif(shutil.which("llvm-readelf") is None, reason="llvm-readelf not installed")
@pytest.mark.parametrize("path", OBJECTS, ids=IDS)
def test_inspect_sections_are_llvm_readelfs(capsys, path: Path):
    theirs = []
    for line in subprocess.run(["llvm-readelf", "-SW", str(path)], capture_output=True, text=True,
                               check=True).stdout.splitlines():
        m = re.match(r"\s*\[\s*(\d+)\]\s+(\S+)\s+(\w+)\s+[0-9a-f]+\s+[0-9a-f]+\s+([0-9a-f]+)\s+\S+\s+(\w*)\s", line)
        if m and m.group(1) != "0":
            idx, name, typ, size, flags = m.groups()
            theirs.append((int(idx), name, typ, int(size, 16), "".join(f for f in flags if f in "WAX")))
    rc, out, _ = run_cli(capsys, "inspect", "--json", str(path))
    ours = [(s["index"], s["name"], s["type"], s["size"], s["flags"]) for s in json.loads(out)["sections"]]
    assert ours == theirs
