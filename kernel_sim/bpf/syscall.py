"""The bpf() system call: attr checks shared by all commands, then dispatch by command.

Command handlers live beside the objects they work on (maps, programs, links, BTF, pins) and
register themselves with ``@bpf_command``. Unknown commands answer EINVAL, as Linux does.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..fs.file import oserror
from ..uapi.bpf import BPF_ATTR_SIZE
from ..uapi.epoll import PAGE_SIZE

if TYPE_CHECKING:
    from ..kernel import Kernel

Handler = Callable[["Kernel", memoryview], int]
BPF_COMMANDS: dict[int, Handler] = {}


def bpf_command(cmd: int) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        BPF_COMMANDS[int(cmd)] = fn
        return fn

    return register


def attr_view(attr) -> memoryview:
    """A writable byte view of the caller's attr (bytearray, memoryview or ctypes object)."""
    view = memoryview(attr)
    if view.readonly:
        raise oserror(errno.EFAULT)
    return view.cast("B") if view.format != "B" or view.ndim != 1 else view


def check_uarg_tail_zero(view: memoryview, known: int) -> None:
    """Linux's bpf_check_uarg_tail_zero: larger-than-known attrs must be zero past the end."""
    if len(view) > PAGE_SIZE:
        raise oserror(errno.E2BIG)
    if len(view) > known and any(view[known:]):
        raise oserror(errno.E2BIG)


def check_attr_unused_zero(view: memoryview, last_field_end: int) -> None:
    """Linux's CHECK_ATTR: bytes after the command's last field (within bpf_attr) must be zero."""
    end = min(len(view), BPF_ATTR_SIZE)
    if last_field_end < end and any(view[last_field_end:end]):
        raise oserror(errno.EINVAL)


def sys_bpf(kernel: Kernel, cmd: int, attr) -> int:
    view = attr_view(attr)
    check_uarg_tail_zero(view, BPF_ATTR_SIZE)
    handler = BPF_COMMANDS.get(cmd)
    if handler is None:
        raise oserror(errno.EINVAL)
    return handler(kernel, view)
