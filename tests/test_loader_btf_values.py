"""Key/value codecs (loader/btf_values.py): BTF from the example objects, struct formats, ctypes."""

from __future__ import annotations

import ctypes
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loader.btf_values import BtfTypes, BytesCodec, IntCodec, StructCodec, make_codec
from loader.obj import load_object
from tests.conftest import REPO

EXAMPLES = REPO / "examples"


def types_of(name: str):
    obj = load_object(EXAMPLES / name)
    return obj, BtfTypes(obj.btf.to_bytes())


def test_struct_value_from_btf():
    obj, types = types_of("syscount.bpf.o")
    m = obj.maps["counts"]
    codec = make_codec(None, m.value_size, types, m.btf_value_type_id)
    raw = struct.pack("<Qq16s", 5, -3, b"bash")
    assert codec.decode(raw) == {"count": 5, "last_nr": -3, "comm": "bash"}
    assert codec.encode({"count": 5, "last_nr": -3, "comm": "bash"}) == raw
    key = make_codec(None, m.key_size, types, m.btf_key_type_id)
    assert key.decode(struct.pack("<I", 77)) == 77


def test_global_data_sections_decode_by_variable():
    obj, types = types_of("globals.bpf.o")
    m = obj.maps[".rodata"]
    codec = make_codec(None, m.value_size, types, m.btf_value_type_id)
    assert codec.decode(m.data) == {"target_tgid": 0, "sample_every": 1}
    assert codec.encode({"target_tgid": 9, "sample_every": 4}) == struct.pack("<IIQ", 9, 0, 4)


def test_hash_of_u64_from_btf():
    obj, types = types_of("latency.bpf.o")
    m = obj.maps["hist"]
    codec = make_codec(None, m.value_size, types, m.btf_value_type_id)
    assert codec.decode(struct.pack("<Q", 2**63 + 1)) == 2**63 + 1


def build_btf(types: list[bytes], strings: bytes) -> bytes:
    body = b"".join(types)
    return struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(body), len(body), len(strings)) + body + strings


def test_bitfields_arrays_and_char_arrays():
    strings = b"\0u32\0char\0s\0a\0b\0arr\0name\0"
    off = {n: strings.index(b"\0" + n.encode() + b"\0") + 1 for n in ("u32", "char", "s", "a", "b", "arr", "name")}
    t = [
        struct.pack("<III", off["u32"], 1 << 24, 4) + struct.pack("<I", 32),  # 1: u32
        struct.pack("<III", 0, 3 << 24, 0) + struct.pack("<III", 1, 1, 3),  # 2: u32[3]
        struct.pack("<III", off["char"], 1 << 24, 1) + struct.pack("<I", (3 << 24) | 8),  # 3: char (signed|char)
        struct.pack("<III", 0, 3 << 24, 0) + struct.pack("<III", 3, 1, 8),  # 4: char[8]
        struct.pack("<III", off["s"], (1 << 31) | (4 << 24) | 4, 24)  # 5: struct s, kind_flag (bitfields)
        + struct.pack("<III", off["a"], 1, (3 << 24) | 0)
        + struct.pack("<III", off["b"], 1, (5 << 24) | 3)
        + struct.pack("<III", off["arr"], 2, 32)
        + struct.pack("<III", off["name"], 4, 128),
    ]
    types = BtfTypes(build_btf(t, strings))
    codec = make_codec(None, 24, types, 5)
    raw = struct.pack("<I3I8s", 5 | (17 << 3), 1, 2, 3, b"hi\0junk")
    assert codec.decode(raw) == {"a": 5, "b": 17, "arr": [1, 2, 3], "name": "hi"}
    assert codec.decode(codec.encode({"a": 5, "b": 17, "arr": [1, 2, 3], "name": "hi"})) == codec.decode(raw)
    assert make_codec(None, 12, types, 2).decode(struct.pack("<3I", 7, 8, 9)) == [7, 8, 9]


def test_default_and_given_codecs():
    assert isinstance(make_codec(None, 4), IntCodec) and isinstance(make_codec(None, 3), BytesCodec)
    assert make_codec("<HH", 4).decode(b"\x01\x00\x02\x00") == (1, 2)
    assert make_codec(ctypes.c_int32, 4).decode(struct.pack("<i", -5)) == -5
    with pytest.raises(ValueError):
        make_codec("<Q", 4)
    with pytest.raises(TypeError):
        make_codec(3.5, 4)


@given(st.integers(0, 2**32 - 1), st.integers(-(2**63), 2**63 - 1))
def test_struct_roundtrip(a, b):
    c = StructCodec("<Iq")
    assert c.decode(c.encode((a, b))) == (a, b)
    i = IntCodec(8, signed=True)
    assert i.decode(i.encode(b)) == b


@given(st.data())
def test_compiled_decoders_agree_with_the_btf_walk(data):
    from loader.btf_values import compile_decoder

    obj, types = types_of(data.draw(st.sampled_from(["syscount.bpf.o", "globals.bpf.o", "opensnoop.bpf.o",
                                                     "latency.bpf.o"])))
    for m in obj.maps.values():
        for type_id in (m.btf_key_type_id, m.btf_value_type_id):
            if not type_id:
                continue
            try:
                size = types.size_of(type_id)
            except Exception:
                continue
            raw = data.draw(st.binary(min_size=size, max_size=size))
            assert compile_decoder(types, type_id)(raw) == types.decode(type_id, raw)
