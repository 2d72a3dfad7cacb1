"""aya-log: decode the log records Aya programs send through their AYA_LOGS perf event array.

Wire format (aya-log-common 0.1.x, the perf-event-array flavour; see examples/aya_log.h):
a record is a run of fields ``tag:u8 len:u16le value[len]``. Header fields (RecordField):
Target=1 str, Level=2 u8, Module=3 str, File=4 str, Line=5 u32, NumArgs=6 u64; then NumArgs
argument fields (Argument): DisplayHint=0 (u8, applies to the next value), integers I8..Usize
(1..5) and U8..Usize (6..10), F32=11, F64=12, ArrU8Len6=13, ArrU8Len16=14, ArrU16Len8=15,
Bytes=16, Str=17. The message is the arguments rendered in order (literal text arrives as Str
arguments). Perf samples are padded, so decoding stops after NumArgs arguments.
"""

from __future__ import annotations

import ipaddress
import logging
import struct
from dataclasses import dataclass

from .errors import EbpfError

LOG_MAP = "AYA_LOGS"
LOG_BUF_MAP = "AYA_LOG_BUF"

LEVELS = {1: "ERROR", 2: "WARN", 3: "INFO", 4: "DEBUG", 5: "TRACE"}
PY_LEVELS = {1: logging.ERROR, 2: logging.WARNING, 3: logging.INFO, 4: logging.DEBUG, 5: 5}

# RecordField
TARGET, LEVEL, MODULE, FILE, LINE, NUM_ARGS = 1, 2, 3, 4, 5, 6
# Argument
DISPLAY_HINT = 0
_INTS = {1: "<b", 2: "<h", 3: "<i", 4: "<q", 5: "<q", 6: "<B", 7: "<H", 8: "<I", 9: "<Q", 10: "<Q",
         11: "<f", 12: "<d"}
ARR_U8_LEN6, ARR_U8_LEN16, ARR_U16_LEN8, BYTES, STR = 13, 14, 15, 16, 17
# DisplayHint
HINT_DEFAULT, HINT_LOWER_HEX, HINT_UPPER_HEX, HINT_IPV4, HINT_IPV6, HINT_LOWER_MAC, HINT_UPPER_MAC = range(1, 8)

_FIELD = struct.Struct("<BH")


class AyaLogError(EbpfError):
    """A record that does not follow aya-log's wire format."""


@dataclass
class LogRecord:
    target: str
    level: int
    module: str
    file: str
    line: int
    message: str

    @property
    def level_name(self) -> str:
        return LEVELS.get(self.level, f"LEVEL{self.level}")

    def __str__(self) -> str:
        return f"[{self.level_name} {self.module}] {self.message}"


def _fields(raw: bytes, pos: int):
    while pos + _FIELD.size <= len(raw):
        tag, length = _FIELD.unpack_from(raw, pos)
        pos += _FIELD.size
        if pos + length > len(raw):
            raise AyaLogError(f"field {tag} of {length} bytes runs past the record ({len(raw)} bytes)")
        yield tag, raw[pos : pos + length], pos + length
        pos += length


def _render(kind: int, value: bytes, hint: int) -> str:
    if kind in _INTS:
        fmt = _INTS[kind]
        if len(value) != struct.calcsize(fmt):
            raise AyaLogError(f"argument kind {kind} with {len(value)} bytes")
        v = struct.unpack(fmt, value)[0]
        if isinstance(v, float):
            return str(v)
        if hint == HINT_LOWER_HEX:
            return format(v, "x")
        if hint == HINT_UPPER_HEX:
            return format(v, "X")
        if hint == HINT_IPV4:
            return str(ipaddress.IPv4Address(v & 0xFFFFFFFF))
        return str(v)
    if kind == STR:
        return value.decode(errors="replace")
    if kind in (ARR_U8_LEN6, ARR_U8_LEN16, ARR_U16_LEN8, BYTES):
        if hint in (HINT_LOWER_MAC, HINT_UPPER_MAC) and len(value) == 6:
            text = ":".join(f"{b:02x}" for b in value)
            return text.upper() if hint == HINT_UPPER_MAC else text
        if hint == HINT_IPV6 and len(value) == 16:
            return str(ipaddress.IPv6Address(value))
        if hint == HINT_IPV4 and len(value) == 4:
            return str(ipaddress.IPv4Address(value))
        if hint == HINT_UPPER_HEX:
            return value.hex().upper()
        return value.hex()
    raise AyaLogError(f"unknown argument kind {kind}")


def decode_record(raw: bytes) -> LogRecord:
    """One aya-log record (trailing perf padding ignored)."""
    header: dict[int, object] = {}
    it = _fields(raw, 0)
    for tag, value, _end in it:
        if tag in (TARGET, MODULE, FILE):
            header[tag] = value.decode(errors="replace")
        elif tag == LEVEL:
            header[tag] = value[0] if value else 0
        elif tag == LINE:
            header[tag] = int.from_bytes(value, "little")
        elif tag == NUM_ARGS:
            header[tag] = int.from_bytes(value, "little")
            break
        else:
            raise AyaLogError(f"unexpected header field {tag}")
    if NUM_ARGS not in header:
        raise AyaLogError("record has no NumArgs field")
    parts: list[str] = []
    hint = HINT_DEFAULT
    for _ in range(int(header[NUM_ARGS])):
        try:
            tag, value, _end = next(it)
        except StopIteration:
            raise AyaLogError("record ends before its arguments") from None
        if tag == DISPLAY_HINT:
            hint = value[0] if value else HINT_DEFAULT
            continue
        parts.append(_render(tag, value, hint))
        hint = HINT_DEFAULT
    return LogRecord(str(header.get(TARGET, "")), int(header.get(LEVEL, 0)), str(header.get(MODULE, "")),
                     str(header.get(FILE, "")), int(header.get(LINE, 0)), "".join(parts))


class EbpfLogger:
    """Aya's EbpfLogger: reads AYA_LOGS on every CPU and hands records to Python logging."""

    def __init__(self, ebpf, logger: logging.Logger | None = None, page_count: int = 2) -> None:
        from .perf_buffer import PerfEventArray

        self.logger = logger or logging.getLogger("aya_log")
        self.perf = PerfEventArray(ebpf.take_map(LOG_MAP))
        self.buffers = self.perf.open_all(page_count)

    def read(self) -> list[LogRecord]:
        """Every record waiting now, each also logged at its level."""
        out: list[LogRecord] = []
        for buf in self.buffers:
            samples, lost = buf.read_events()
            if lost:
                self.logger.warning("aya-log: %d records lost on cpu %d", lost, buf.cpu)
            for raw in samples:
                rec = decode_record(raw)
                self.logger.log(PY_LEVELS.get(rec.level, logging.INFO), "%s", rec.message,
                                extra={"bpf_target": rec.target, "bpf_module": rec.module})
                out.append(rec)
        return out

    def close(self) -> None:
        self.perf.close()
