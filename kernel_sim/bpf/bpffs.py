"""bpffs at /sys/fs/bpf: BPF_OBJ_PIN and BPF_OBJ_GET.

A pin is a node in the kernel's VFS that keeps the object alive: it holds an open file of the
object (for maps that is a user reference, as Linux's pinned maps hold a uref). Removing the
node (``Kernel.unlink``) drops the last reference to it and with it the pin's file; the object
lives on while fds or programs still hold it. OBJ_GET opens a new file with the requested mode
(BPF_F_RDONLY / BPF_F_WRONLY). Errnos are Linux's: a non-BPF fd is EINVAL, a path outside
bpffs EPERM (pin) / EACCES (get), an existing name EEXIST.
"""

from __future__ import annotations

import errno
import weakref
from typing import TYPE_CHECKING

from ..fs.file import File, oserror
from ..fs.vfs import Dir, OpenHook
from ..task import current
from ..uapi.bpf import BPF_F_PATH_FD, BPF_F_RDONLY, BPF_F_WRONLY, BpfCmd, ObjPinAttr
from ..usermem import strncpy_from_user
from .syscall import bpf_command, check_attr_unused_zero

if TYPE_CHECKING:
    from ..kernel import Kernel

BPFFS = "/sys/fs/bpf"
OBJ_END = 20  # through path_fd
PATH_MAX = 4096


def _raise_eio(_flags: int) -> File:
    raise oserror(errno.EIO)


class PinNode(OpenHook):
    """A pinned BPF object: open() of it is EIO as for bpffs object files; OBJ_GET opens it."""

    mode = 0o600

    def __init__(self, file: File) -> None:
        super().__init__(_raise_eio, 0o600)
        self.obj = _object_of(file)
        self.kind = _kind_of(file)
        self._finalizer = weakref.finalize(self, file.put)
        file.get()


def _kind_of(file: File) -> str | None:
    for kind in ("map", "prog", "link"):
        if getattr(file, f"is_bpf_{kind}", False):
            return kind
    return None


def _object_of(file: File):
    return getattr(file, {"map": "map", "prog": "prog", "link": "link"}.get(_kind_of(file) or "", "-"), None)


def _read_path(addr: int) -> str:
    raw = strncpy_from_user(addr, PATH_MAX)
    return raw.decode(errors="surrogateescape")


def _split(path: str) -> tuple[str, str]:
    parts = [p for p in path.split("/") if p and p != "."]
    if not parts:
        return "/", ""
    return "/" + "/".join(parts[:-1]), parts[-1]


def _obj_attr(attr: memoryview) -> tuple[ObjPinAttr, int]:
    check_attr_unused_zero(attr, OBJ_END)
    a = ObjPinAttr.from_attr(attr)
    path_fd = int.from_bytes(bytes(attr[16:20]).ljust(4, b"\0"), "little")
    if not a.file_flags & BPF_F_PATH_FD and path_fd:
        raise oserror(errno.EINVAL)
    return a, path_fd


@bpf_command(BpfCmd.OBJ_PIN)
def obj_pin(kernel: Kernel, attr: memoryview) -> int:
    a, _path_fd = _obj_attr(attr)
    if a.file_flags & ~BPF_F_PATH_FD:
        raise oserror(errno.EINVAL)
    try:
        file = current().files.get(a.bpf_fd)
    except OSError:
        raise oserror(errno.EINVAL) from None
    if _kind_of(file) is None:
        raise oserror(errno.EINVAL)
    path = _read_path(a.pathname)
    parent_path, name = _split(path)
    if not name:
        raise oserror(errno.EEXIST)
    parent = kernel.vfs.lookup(parent_path)  # ENOENT / ENOTDIR
    if not isinstance(parent, Dir):
        raise oserror(errno.ENOTDIR)
    if name in parent.children:
        raise oserror(errno.EEXIST)
    norm = parent_path.rstrip("/") + "/" + name
    if not (norm.startswith(BPFFS + "/") and norm != BPFFS):
        raise oserror(errno.EPERM)
    parent.children[name] = PinNode(file)
    return 0


@bpf_command(BpfCmd.OBJ_GET)
def obj_get(kernel: Kernel, attr: memoryview) -> int:
    a, _path_fd = _obj_attr(attr)
    if a.bpf_fd or a.file_flags & ~(BPF_F_RDONLY | BPF_F_WRONLY | BPF_F_PATH_FD):
        raise oserror(errno.EINVAL)
    flags = a.file_flags & (BPF_F_RDONLY | BPF_F_WRONLY)
    if flags == BPF_F_RDONLY | BPF_F_WRONLY:
        raise oserror(errno.EINVAL)
    path = _read_path(a.pathname)
    node = kernel.vfs.lookup(path)  # ENOENT / ENOTDIR
    if not isinstance(node, PinNode) or node.obj is None:
        raise oserror(errno.EACCES)
    if node.kind == "map":
        opened = node.obj.open_file(flags)
    elif node.kind == "link" and flags:
        raise oserror(errno.EINVAL)  # links open read-write only
    else:
        opened = node.obj.open_file()
    return current().files.install(opened)


def pinned_paths(kernel: Kernel, root: str = BPFFS) -> list[str]:
    """Every pin under root (for tools and tests)."""
    out: list[str] = []

    def walk(path: str, node) -> None:
        if isinstance(node, PinNode):
            out.append(path)
        elif isinstance(node, Dir):
            for name, child in node.children.items():
                walk(path.rstrip("/") + "/" + name, child)

    walk(root, kernel.vfs.lookup(root))
    return sorted(out)
