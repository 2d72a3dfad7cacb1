"""Event decoding for `bpfload run`: BTF or DWARF struct layouts compiled into struct decoders."""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from loader.event_decode import EventDecoder, SampleFormatter, find_event_type, object_types

pytestmark = pytest.mark.skipif(shutil.which("clang") is None, reason="clang is not installed")

SOURCE = r"""
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
enum color { RED = 1, GREEN = 2, BLUE = -3 };
struct inner { unsigned short a; signed char b; };
struct event {
    unsigned int pid;
    int delta;
    char comm[16];
    unsigned long long ts;
    struct inner in;
    enum color c;
    unsigned int flags : 3, kind : 5;
    int sbits : 4;
    unsigned int vals[3];
    _Bool ok;
    void *ptr;
};
#ifdef IN_BTF
struct event keep_me;
#endif
SEC("tracepoint/x") int prog(void *ctx) { struct event e = {}; e.pid = 1; bpf_printk("%d", e.pid); return e.pid; }
char LICENSE[] SEC("license") = "GPL";
"""


@pytest.fixture(scope="module")
def objects(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("ev")
    (d / "ev.c").write_text(SOURCE)
    out = {}
    for name, extra in (("dwarf", []), ("btf", ["-DIN_BTF"])):
        out[name] = d / f"{name}.o"
        subprocess.run(["clang", "-O2", "-g", "-target", "bpf", "-I/usr/include/x86_64-linux-gnu", *extra,
                        "-c", str(d / "ev.c"), "-o", str(out[name])], check=True)
    return out


def sample() -> bytes:
    raw = bytearray(72)
    struct.pack_into("<Ii16sQ", raw, 0, 4242, -7, b"bash\0junk", 123456789012)
    struct.pack_into("<Hb", raw, 32, 65535, -2)
    struct.pack_into("<i", raw, 36, -3)
    struct.pack_into("<I", raw, 40, 5 | 17 << 3 | ((-3) & 0xF) << 8)
    struct.pack_into("<III?", raw, 44, 1, 2, 3, True)
    struct.pack_into("<Q", raw, 64, 0xFFFF888012345678)
    return bytes(raw)


EXPECTED = {"pid": 4242, "delta": -7, "comm": "bash", "ts": 123456789012, "in": {"a": 65535, "b": -2},
            "c": "BLUE", "flags": 5, "kind": 17, "sbits": -3, "vals": [1, 2, 3], "ok": True,
            "ptr": 0xFFFF888012345678}


def test_btf_only_has_the_struct_when_the_program_keeps_it(objects):
    dwarf_sources = object_types(str(objects["dwarf"]))
    btf_sources = object_types(str(objects["btf"]))
    assert dwarf_sources[0].find("event", "STRUCT") is None  # a local variable's type: not in BTF
    assert btf_sources[0].find("event", "STRUCT").size == 72


@pytest.mark.parametrize("which", ["dwarf", "btf"])
def test_every_kind_of_field_decodes(objects, which):
    fmt = SampleFormatter(object_types(str(objects[which])))
    # perf pads a 72-byte sample's record to 8 bytes with its u32 size word: 76 bytes arrive
    assert fmt.decode(sample() + bytes(4)) == EXPECTED
    text = fmt.text(fmt.decode(sample()))
    assert "pid=4242" in text and "comm=bash" in text and "c=BLUE" in text


def test_the_ring_buffer_wants_the_exact_size_and_short_samples_are_zero_filled(objects):
    (btf, *_), = [object_types(str(objects["btf"]))]
    assert find_event_type(btf, 72, padded=False) is not None
    assert find_event_type(btf, 76, padded=False) is None
    assert find_event_type(btf, 76, padded=True) is not None
    dec = EventDecoder(btf, find_event_type(btf, 72))
    assert dec.decode(sample()[:8])["pid"] == 4242 and dec.decode(sample()[:8])["comm"] == ""


def test_no_matching_struct_is_hex():
    fmt = SampleFormatter(None)
    assert fmt.decode(b"\x01\x02\xff") == {"data": "0102ff"}


def test_named_struct_wins(objects):
    sources = object_types(str(objects["btf"]))
    fmt = SampleFormatter(sources, type_name="inner")
    assert fmt.decode(struct.pack("<Hb", 7, -1) + bytes(5)) == {"a": 7, "b": -1}


def test_the_opensnoop_example_decodes(tmp_path):
    obj = Path(__file__).resolve().parent.parent / "examples" / "opensnoop.bpf.o"
    if not obj.exists():
        pytest.skip("examples/opensnoop.bpf.o is not built")
    fmt = SampleFormatter(object_types(str(obj)))
    raw = struct.pack("<IIiI16s256s", 12, 1000, -100, 0, b"cat", b"/etc/passwd") + bytes(4)
    got = fmt.decode(raw)
    assert (got["pid"], got["comm"], got["filename"], got["dfd"]) == (12, "cat", "/etc/passwd", -100)
