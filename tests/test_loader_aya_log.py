"""aya-log record decoding (loader/aya_log.py) from records built per the wire format."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loader.aya_log import AyaLogError, decode_record


def field(tag: int, value: bytes) -> bytes:
    return struct.pack("<BH", tag, len(value)) + value


def record(args: list[bytes], level: int = 3, line: int = 42, pad: int = 0) -> bytes:
    head = (field(1, b"syscall_counter") + field(2, bytes([level])) + field(3, b"syscall_counter")
            + field(4, b"src/main.rs") + field(5, struct.pack("<I", line)) + field(6, struct.pack("<Q", len(args))))
    return head + b"".join(args) + bytes(pad)


def test_the_example_record():
    raw = record([field(17, b"syscall "), field(0, b"\x01"), field(9, struct.pack("<Q", 39)),
                  field(17, b" called, "), field(0, b"\x01"), field(9, struct.pack("<Q", 5)), field(17, b" times")],
                 pad=5)
    rec = decode_record(raw)
    assert (rec.target, rec.level_name, rec.module, rec.file, rec.line) == (
        "syscall_counter", "INFO", "syscall_counter", "src/main.rs", 42)
    assert rec.message == "syscall 39 called, 5 times"
    assert str(rec) == "[INFO syscall_counter] syscall 39 called, 5 times"


def test_display_hints():
    raw = record([field(0, b"\x02"), field(8, struct.pack("<I", 0xBEEF)), field(17, b" "),
                  field(0, b"\x03"), field(8, struct.pack("<I", 0xBEEF)), field(17, b" "),
                  field(0, b"\x04"), field(8, struct.pack(">I", 0x7F000001)[::-1]), field(17, b" "),
                  field(0, b"\x06"), field(13, bytes([0, 0x1A, 0x2B, 0x3C, 0x4D, 0x5E])), field(17, b" "),
                  field(3, struct.pack("<i", -7))], level=1)
    rec = decode_record(raw)
    assert rec.message == "beef BEEF 127.0.0.1 00:1a:2b:3c:4d:5e -7"
    assert rec.level_name == "ERROR"


def test_truncated_records_are_errors():
    raw = record([field(17, b"x" * 10)])
    with pytest.raises(AyaLogError):
        decode_record(raw[:-4])
    with pytest.raises(AyaLogError):
        decode_record(field(1, b"t"))  # no NumArgs


@given(st.lists(st.one_of(st.integers(0, 2**64 - 1).map(lambda v: ("u64", v)),
                          st.text(max_size=20).map(lambda s: ("str", s))), max_size=12),
       st.integers(1, 5), st.integers(0, 7))
def test_any_message(args, level, pad):
    wire = [field(9, struct.pack("<Q", v)) if k == "u64" else field(17, v.encode()) for k, v in args]
    rec = decode_record(record(wire, level=level, pad=pad))
    assert rec.message == "".join(str(v) for _k, v in args)
    assert rec.level == level
