"""`bpfload prog show` / `map show` / `map dump`: bpftool's text, checked against bpftool itself on Linux."""

from __future__ import annotations

import ctypes
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from kernel_sim.uapi.bpf import BpfCmd, MapCreateAttr, MapElemAttr, MapType, make_attr
from loader.backends import open_kernel
from loader.cli import main
from loader.cli_bpftool import hex_bytes, map_dump_lines, map_show_lines, prog_show_lines
from tests.conftest import linux_bpf_denied

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
needs_bpf = pytest.mark.skipif(linux_bpf_denied() is not None, reason=str(linux_bpf_denied()))
needs_bpftool = pytest.mark.skipif(shutil.which("bpftool") is None, reason="bpftool is not installed")


def test_hex_layout_is_bpftools():
    assert hex_bytes(bytes(range(4))) == "00 01 02 03"
    assert hex_bytes(bytes(range(18))) == ("00 01 02 03 04 05 06 07  08 09 0a 0b 0c 0d 0e 0f\n10 11")


def bpftool(*args: str) -> list[str]:
    out = subprocess.run(["bpftool", *args], capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if not line.startswith("\tpids ")]


def _create(sys, map_type, key_size, value_size, max_entries, name=b"") -> int:
    return sys.bpf(BpfCmd.MAP_CREATE, make_attr(MapCreateAttr, map_type=map_type, key_size=key_size,
                                                value_size=value_size, max_entries=max_entries, map_name=name))


def _update(sys, fd: int, key: bytes, value: bytes) -> None:
    k = ctypes.create_string_buffer(key, len(key))
    v = ctypes.create_string_buffer(value, len(value))
    sys.bpf(BpfCmd.MAP_UPDATE_ELEM, make_attr(MapElemAttr, map_fd=fd, key=ctypes.addressof(k),
                                              value=ctypes.addressof(v)))


def _map_id(sys, fd: int) -> int:
    from loader.cli_bpftool import BpfMapInfo, _info

    return _info(sys, fd, BpfMapInfo()).id


@pytest.mark.parametrize("map_type, key_size, value_size, entries", [
    (MapType.HASH, 4, 8, [(b"\x01\0\0\0", b"\x2a" + bytes(7)), (b"\x02\0\0\0", bytes(range(8)))]),
    (MapType.HASH, 8, 40, [(bytes(range(8)), bytes(range(40)))]),
    (MapType.ARRAY, 4, 20, []),
    (MapType.PERCPU_ARRAY, 4, 12, []),
])
@needs_bpf
@needs_bpftool
def test_map_show_and_dump_match_bpftool(map_type, key_size, value_size, entries):
    sys = open_kernel("linux")
    fd = _create(sys, map_type, key_size, value_size, 3, b"bpfload_t")
    try:
        for key, value in entries:
            _update(sys, fd, key, value)
        map_id = _map_id(sys, fd)
        assert map_dump_lines(sys, fd) == bpftool("map", "dump", "id", str(map_id))
        assert map_show_lines(sys, fd) == bpftool("map", "show", "id", str(map_id))
    finally:
        sys.close(fd)


_LOADED = re.compile(r"loaded_at (\S+)")


@needs_bpf
@needs_bpftool
def test_prog_show_matches_bpftool():
    from loader.ebpf import Ebpf

    sys = open_kernel("linux")
    ebpf = Ebpf.load_file(str(EXAMPLES / "opensnoop_tp.bpf.o"), kernel=sys)
    try:
        prog = ebpf.program("opensnoop_tp")
        prog.load()
        mine = prog_show_lines(sys, prog.fd)
        prog_id = int(mine[0].split(":")[0])
        theirs = bpftool("prog", "show", "id", str(prog_id))
        # The wall-clock of the load is computed twice: the same second, or the next one.
        a, b = _LOADED.search(mine[1]).group(1), _LOADED.search(theirs[1]).group(1)
        assert abs(int(a[17:19]) - int(b[17:19])) in (0, 1, 59)
        assert [_LOADED.sub("", line) for line in mine] == [_LOADED.sub("", line) for line in theirs]
        assert "name opensnoop_tp" in mine[0] and "map_ids" in mine[2]
    finally:
        ebpf.close()


def test_sim_load_run_then_dump_shows_counts(capsys):
    assert main(["map", "dump", "name", "counts", "--load", str(EXAMPLES / "syscount.bpf.o"), "--run", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    found = int(re.match(r"Found (\d+) elements?", out[-1]).group(1))
    assert found > 0 and sum(line == "key:" for line in out) == found  # 4B key + 32B value: broken names


def test_sim_prog_and_map_show(capsys):
    assert main(["prog", "show", "--load", str(EXAMPLES / "latency.bpf.o")]) == 0
    out = capsys.readouterr().out
    heads = [line for line in out.splitlines() if not line.startswith("\t")]
    assert len(heads) == 2 and all(re.match(r"\d+: kprobe  name vfs_read_\w+  tag [0-9a-f]{16}  gpl$", h)
                                   for h in heads)
    assert "\tloaded_at " in out and "map_ids " in out
    assert main(["map", "show", "--load", str(EXAMPLES / "latency.bpf.o"), "--json"]) == 0
    import json

    maps = json.loads(capsys.readouterr().out)
    assert {m["name"] for m in maps} >= {"start", "hist"}
    assert {m["type"] for m in maps} >= {"hash", "array"}


def test_unknown_id_and_name_are_one_line(capsys):
    assert main(["map", "dump", "id", "424242"]) == 1
    assert capsys.readouterr().err.strip() == "bpfload: can't get map by id (424242): No such file or directory"
    assert main(["map", "dump", "name", "nope"]) == 1
    assert "no map named 'nope'" in capsys.readouterr().err
