"""Event decoding for `bpfload run`: BTF or DWARF struct layouts compiled into struct decoders."""

from __future__ import annotations

import ctypes
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loader.event_decode import EventDecoder, SampleFormatter, find_event_type, object_types
from loader.obj.btf import INT_CHAR, INT_SIGNED, Btf, BtfMember, BtfType

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
    if shutil.which("clang") is None:
        pytest.skip("clang is not installed")
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


# -- property: the compiled decoder reads what ctypes lays out -----------------------------------------
_SCALARS = {  # name -> (ctypes type, size, signed)
    "u8": (ctypes.c_uint8, 1, False), "s8": (ctypes.c_int8, 1, True), "u16": (ctypes.c_uint16, 2, False),
    "s16": (ctypes.c_int16, 2, True), "u32": (ctypes.c_uint32, 4, False), "s32": (ctypes.c_int32, 4, True),
    "u64": (ctypes.c_uint64, 8, False), "s64": (ctypes.c_int64, 8, True),
}
field_kind = st.one_of(st.sampled_from(sorted(_SCALARS)), st.tuples(st.just("str"), st.integers(1, 24)),
                       st.tuples(st.just("arr"), st.sampled_from(sorted(_SCALARS)), st.integers(1, 4)))


class _Types:
    """Builds BTF records (as the parser would produce them) for generated structs."""

    def __init__(self) -> None:
        self.types = [BtfType(id=0, kind="UNKN", name="")]
        self.ints: dict[str, int] = {}

    def add(self, **kw) -> int:
        self.types.append(BtfType(id=len(self.types), **kw))
        return len(self.types) - 1

    def scalar(self, name: str) -> int:
        if name not in self.ints:
            _, size, signed = _SCALARS[name]
            self.ints[name] = self.add(kind="INT", name=name, size=size, int_encoding=INT_SIGNED if signed else 0,
                                       int_bits=size * 8)
        return self.ints[name]

    def char(self) -> int:
        if "char" not in self.ints:
            self.ints["char"] = self.add(kind="INT", name="char", size=1, int_encoding=INT_SIGNED | INT_CHAR,
                                         int_bits=8)
        return self.ints["char"]


def _layout(kinds, types: _Types, depth: int = 0):
    """A ctypes Structure and the BTF struct id for a list of field kinds."""
    fields, members = [], []
    for i, kind in enumerate(kinds):
        name = f"f{i}"
        if isinstance(kind, str):
            fields.append((name, _SCALARS[kind][0]))
            tid = types.scalar(kind)
        elif kind[0] == "str":
            fields.append((name, ctypes.c_char * kind[1]))
            tid = types.add(kind="ARRAY", name="", array=(types.char(), 0, kind[1]))
        else:
            fields.append((name, _SCALARS[kind[1]][0] * kind[2]))
            tid = types.add(kind="ARRAY", name="", array=(types.scalar(kind[1]), 0, kind[2]))
        members.append((name, tid))
    cls = type(f"S{depth}", (ctypes.Structure,), {"_fields_": fields})
    btf_members = [BtfMember(n, t, getattr(cls, n).offset * 8) for n, t in members]
    sid = types.add(kind="STRUCT", name="event", size=ctypes.sizeof(cls), members=btf_members, vlen=len(members))
    return cls, sid


@settings(max_examples=150, deadline=None)
@given(kinds=st.lists(field_kind, min_size=1, max_size=8), data=st.data())
def test_decoder_agrees_with_ctypes(kinds, data):
    types = _Types()
    cls, sid = _layout(kinds, types)
    btf = Btf(raw=b"", types=types.types, strings=b"")
    raw = data.draw(st.binary(min_size=ctypes.sizeof(cls), max_size=ctypes.sizeof(cls)))
    obj = cls.from_buffer_copy(raw)
    got = EventDecoder(btf, sid).decode(raw)
    assert list(got) == [f"f{i}" for i in range(len(kinds))]
    for i, kind in enumerate(kinds):
        want = getattr(obj, f"f{i}")
        if isinstance(kind, tuple) and kind[0] == "str":
            field_raw = bytes(raw[getattr(cls, f"f{i}").offset:][: kind[1]])
            want = field_raw.split(b"\0", 1)[0].decode("utf-8", "backslashreplace")
        elif isinstance(kind, tuple):
            want = list(want)
        assert got[f"f{i}"] == want, (kind, got, want)
