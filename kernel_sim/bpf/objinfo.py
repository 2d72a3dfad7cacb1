"""BPF_OBJ_GET_INFO_BY_FD, *_GET_NEXT_ID and *_GET_FD_BY_ID for every kind of BPF object.

Each object file knows how to fill its kernel info struct (``bpf_info(user_info)``); the rules
around it are shared and are Linux's: the user's info_len may be shorter (the kernel copies
that much and writes the used length back) or longer (then the extra bytes must be zero, else
E2BIG); a descriptor that is not a BPF object is EINVAL.
"""

from __future__ import annotations

import ctypes
import errno
from typing import TYPE_CHECKING

from ..fs.file import oserror
from ..task import current
from ..uapi.bpf import BpfCmd, GetIdAttr, InfoAttr
from ..usermem import copy_from_user, copy_to_user
from .syscall import bpf_command, check_attr_unused_zero

if TYPE_CHECKING:
    from ..kernel import Kernel

INT_MAX = 0x7FFFFFFF


@bpf_command(BpfCmd.OBJ_GET_INFO_BY_FD)
def obj_get_info_by_fd(kernel: Kernel, attr: memoryview) -> int:
    check_attr_unused_zero(attr, InfoAttr.info.offset + 8)
    a = InfoAttr.from_attr(attr)
    file = current().files.get(a.bpf_fd)
    fill = getattr(file, "bpf_info", None)
    if fill is None:
        raise oserror(errno.EINVAL)
    info_type = file.info_type
    size = ctypes.sizeof(info_type)
    if a.info_len > size:
        tail = copy_from_user(a.info + size, a.info_len - size)
        if any(tail):
            raise oserror(errno.E2BIG)
    used = min(size, a.info_len)
    user = info_type.from_buffer_copy(copy_from_user(a.info, used).ljust(size, b"\0"))
    info = fill(user)
    copy_to_user(a.info, bytes(info)[:used])
    a.info_len = used
    a.write_field(attr, "info_len")
    return 0


def copy_array(addr: int, room: int, data: bytes) -> None:
    """Copy what fits of an array the user asked for (Linux copies min(user len, real len))."""
    if addr and room:
        copy_to_user(addr, data[:room])


_KIND = {
    BpfCmd.PROG_GET_NEXT_ID: "prog", BpfCmd.MAP_GET_NEXT_ID: "map",
    BpfCmd.BTF_GET_NEXT_ID: "btf", BpfCmd.LINK_GET_NEXT_ID: "link",
}
_FD_KIND = {
    BpfCmd.PROG_GET_FD_BY_ID: "prog", BpfCmd.MAP_GET_FD_BY_ID: "map",
    BpfCmd.BTF_GET_FD_BY_ID: "btf", BpfCmd.LINK_GET_FD_BY_ID: "link",
}


def _next_id(kind: str):
    def handler(kernel: Kernel, attr: memoryview) -> int:
        check_attr_unused_zero(attr, GetIdAttr.next_id.offset + 4)
        a = GetIdAttr.from_attr(attr)
        if a.start_id >= INT_MAX:
            raise oserror(errno.EINVAL)
        nxt = kernel.ids[kind].next_after(a.start_id)
        if nxt is None:
            raise oserror(errno.ENOENT)
        a.next_id = nxt
        a.write_field(attr, "next_id")
        return 0

    return handler


def _fd_by_id(kind: str):
    def handler(kernel: Kernel, attr: memoryview) -> int:
        check_attr_unused_zero(attr, GetIdAttr.open_flags.offset + 4)
        a = GetIdAttr.from_attr(attr)
        obj = kernel.ids[kind].objects.get(a.start_id)
        if obj is None:
            raise oserror(errno.ENOENT)
        opener = getattr(obj, "open_file", None)
        if opener is None:
            raise oserror(errno.EINVAL)
        return current().files.install(opener(a.open_flags))

    return handler


for _cmd, _kind in _KIND.items():
    bpf_command(_cmd)(_next_id(_kind))
for _cmd, _kind in _FD_KIND.items():
    bpf_command(_cmd)(_fd_by_id(_kind))
