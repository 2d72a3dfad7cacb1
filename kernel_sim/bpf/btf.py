"""BPF_BTF_LOAD: BTF objects in the kernel, checked as Linux's btf_parse checks them.

The header and sections are validated with Linux's log lines ("magic: 0xeb9f", ...,
"Invalid magic", "Invalid string section", "No type found"), each type record is walked by
its kind's size, and names must point into the string section. A loaded BTF is a file with an
id (BTF_GET_FD_BY_ID / BTF_GET_NEXT_ID / OBJ_GET_INFO_BY_FD).
"""

from __future__ import annotations

import errno
import struct
from typing import TYPE_CHECKING

from ..fs.file import File, oserror
from ..task import current
from ..uapi.bpf import BpfBtfInfo, BpfCmd, BtfLoadAttr
from ..usermem import copy_from_user
from .objinfo import copy_array
from .syscall import bpf_command, check_attr_unused_zero
from .verifier_log import VerifierLog

if TYPE_CHECKING:
    from ..kernel import Kernel

BTF_MAGIC = 0xEB9F
BTF_VERSION = 1
BTF_MAX_SIZE = 16 * 1024 * 1024
_HDR = struct.Struct("<HBBIIIII")
_TYPE = struct.Struct("<III")
KIND_NAMES = {1: "INT", 2: "PTR", 3: "ARRAY", 4: "STRUCT", 5: "UNION", 6: "ENUM", 7: "FWD", 8: "TYPEDEF",
              9: "VOLATILE", 10: "CONST", 11: "RESTRICT", 12: "FUNC", 13: "FUNC_PROTO", 14: "VAR",
              15: "DATASEC", 16: "FLOAT", 17: "DECL_TAG", 18: "TYPE_TAG", 19: "ENUM64"}


def _extra_size(kind: int, vlen: int) -> int:
    return {1: 4, 3: 12, 4: 12 * vlen, 5: 12 * vlen, 6: 8 * vlen, 13: 8 * vlen, 14: 4, 15: 12 * vlen,
            17: 4, 19: 12 * vlen}.get(kind, 0)


class BtfParseError(Exception):
    pass


def parse_btf(data: bytes, log: list[str]) -> list[tuple[int, str, int]]:
    """Validate a BTF blob; returns [(kind, name, size_or_type)] per type id (id 1 first)."""
    if len(data) < _HDR.size:
        log.append("btf_header not found")
        raise BtfParseError
    magic, version, flags, hdr_len, type_off, type_len, str_off, str_len = _HDR.unpack_from(data)
    log += [f"magic: 0x{magic:x}", f"version: {version}", f"flags: 0x{flags:x}", f"hdr_len: {hdr_len}",
            f"type_off: {type_off}", f"type_len: {type_len}", f"str_off: {str_off}", f"str_len: {str_len}",
            f"btf_total_size: {len(data)}"]
    if magic != BTF_MAGIC:
        log.append("Invalid magic")
        raise BtfParseError
    if version != BTF_VERSION:
        log.append("Unsupported version")
        raise BtfParseError
    if flags:
        log.append("Unsupported flags")
        raise BtfParseError
    if hdr_len < _HDR.size or hdr_len > len(data):
        log.append("Unsupported btf_header")
        raise BtfParseError
    body = data[hdr_len:]
    if type_off % 4 or type_off + type_len > len(body) or str_off + str_len > len(body) or str_off < type_off + type_len:
        log.append("Invalid section offset" if type_off % 4 == 0 else "Unaligned type_off")
        raise BtfParseError
    strings = body[str_off : str_off + str_len]
    if not strings or strings[0] != 0 or strings[-1] != 0:
        log.append("Invalid string section")
        raise BtfParseError
    if type_len == 0:
        log.append("No type found")
        raise BtfParseError

    def name(off: int) -> str:
        if off >= len(strings):
            raise BtfParseError
        return strings[off : strings.index(b"\0", off)].decode(errors="replace")

    types: list[tuple[int, str, int]] = []
    pos, end = type_off, type_off + type_len
    while pos < end:
        if pos + _TYPE.size > end:
            log.append("Type section too small")
            raise BtfParseError
        name_off, info, size_or_type = _TYPE.unpack_from(body, pos)
        kind, vlen = (info >> 24) & 0x1F, info & 0xFFFF
        if kind not in KIND_NAMES:
            log.append(f"[{len(types) + 1}] Invalid kind:{kind}")
            raise BtfParseError
        try:
            tname = name(name_off)
        except BtfParseError:
            log.append(f"[{len(types) + 1}] {KIND_NAMES[kind]} Invalid name_offset:{name_off}")
            raise
        pos += _TYPE.size + _extra_size(kind, vlen)
        if pos > end:
            log.append(f"[{len(types) + 1}] {KIND_NAMES[kind]} {tname} meta_left:{end - pos} meta_needed:{-(end - pos)}")
            raise BtfParseError
        types.append((kind, tname, size_or_type))
        line = f"[{len(types)}] {KIND_NAMES[kind]} {tname or '(anon)'} size={size_or_type}"
        if kind == 1:  # INT: its encoding word follows the common record
            (enc,) = struct.unpack_from("<I", body, pos - 4)
            encoding = {1: "SIGNED", 2: "CHAR", 4: "BOOL"}.get((enc >> 24) & 0xF, "(none)")
            line += f" bits_offset={(enc >> 16) & 0xFF} nr_bits={enc & 0xFF} encoding={encoding}"
        log.append(line)
    return types


class BtfObject:
    def __init__(self, kernel: Kernel, data: bytes, types) -> None:
        self.data = data
        self.types = types
        self.id = kernel.ids["btf"].alloc(self)
        self.kernel = kernel
        self.refs = 0


    def open_file(self, flags: int = 0) -> File:
        return BtfFile(self)


class BtfFile(File):
    name = "btf"
    is_btf = True
    info_type = BpfBtfInfo

    def __init__(self, btf: BtfObject) -> None:
        super().__init__()
        self.btf = btf
        btf.refs += 1

    def bpf_info(self, user: BpfBtfInfo) -> BpfBtfInfo:
        copy_array(user.btf, min(user.btf_size, len(self.btf.data)), self.btf.data)
        return BpfBtfInfo(btf=user.btf, btf_size=len(self.btf.data), id=self.btf.id)

    def release(self) -> None:
        self.btf.refs -= 1
        if self.btf.refs == 0:
            self.btf.kernel.ids["btf"].remove(self.btf.id)


@bpf_command(BpfCmd.BTF_LOAD)
def btf_load(kernel: Kernel, attr: memoryview) -> int:
    check_attr_unused_zero(attr, BtfLoadAttr.btf_log_true_size.offset + 4)
    a = BtfLoadAttr.from_attr(attr)
    log = VerifierLog(a.btf_log_level, a.btf_log_buf, a.btf_log_size)
    if a.btf_size > BTF_MAX_SIZE:
        raise oserror(errno.E2BIG)
    data = copy_from_user(a.btf, a.btf_size) if a.btf_size else b""
    lines: list[str] = []
    try:
        types = parse_btf(data, lines)
    except BtfParseError:
        log.write("\n".join(lines))  # Linux ends a failed log without a newline
        log.finish(attr, BtfLoadAttr, "btf_log_true_size")
        raise oserror(errno.EINVAL) from None
    log.write("".join(line + "\n" for line in lines))
    log.finish(attr, BtfLoadAttr, "btf_log_true_size")
    return current().files.install(BtfFile(BtfObject(kernel, data, types)))
