"""A small VFS for the pseudo filesystems (sysfs, procfs, tracefs, bpffs).

Nodes are directories, generated files (content made when opened, as seq_file does) and
objects that open into their own File (trace_pipe, pinned BPF objects). open() gives the
errnos Linux gives: ENOENT, ENOTDIR, EISDIR, EACCES for writing a file that has no write op.
"""

from __future__ import annotations

import errno
from collections.abc import Callable

from ..uapi.epoll import (
    EPOLLERR,
    EPOLLIN,
    EPOLLOUT,
    EPOLLPRI,
    EPOLLRDNORM,
    EPOLLWRNORM,
    O_ACCMODE,
    O_CREAT,
    O_DIRECTORY,
    O_RDONLY,
    O_WRONLY,
)
from .file import File, oserror


class Node:
    mode = 0o444


class Dir(Node):
    mode = 0o755

    def __init__(self) -> None:
        self.children: dict[str, Node] = {}


# Per filesystem: whether opening a file without a write op for writing is refused (kernfs
# answers EACCES at open; procfs opens and fails the write with EIO), and the poll mask of a
# file without a poll op of its own (kernfs adds EPOLLERR | EPOLLPRI to the default mask).
_DEFAULT_POLLMASK = EPOLLIN | EPOLLOUT | EPOLLRDNORM | EPOLLWRNORM
FS_FLAVOURS = {
    "sysfs": (True, _DEFAULT_POLLMASK | EPOLLERR | EPOLLPRI),
    "procfs": (False, _DEFAULT_POLLMASK),
    "tracefs": (False, _DEFAULT_POLLMASK),
    "rootfs": (False, 0),  # regular files: no poll op (epoll refuses them with EPERM)
}


class GenFile(Node):
    """A file whose content is generated at open; writes go to an optional handler."""

    def __init__(
        self,
        read: Callable[[], str | bytes],
        write: Callable[[bytes], int] | None = None,
        *,
        fs: str = "sysfs",
        mode: int | None = None,
    ) -> None:
        self.read_fn = read
        self.write_fn = write
        self.refuse_write_open, self.pollmask = FS_FLAVOURS[fs]
        self.mode = mode if mode is not None else (0o644 if write else 0o444)


class OpenHook(Node):
    """A node that makes its own File when opened (trace_pipe, pinned objects)."""

    def __init__(self, opener: Callable[[int], File], mode: int = 0o444) -> None:
        self.opener = opener
        self.mode = mode


class DirFile(File):
    name = "dir"

    def read(self, n: int) -> bytes:
        raise oserror(errno.EISDIR)


class GenOpenFile(File):
    """An open generated file: reads walk the content made at open time."""

    def __init__(self, node: GenFile, flags: int) -> None:
        super().__init__(flags)
        self.node = node
        self._content: bytes | None = None
        self.pollable = bool(node.pollmask)

    def poll(self) -> int:
        return self.node.pollmask

    def _data(self) -> bytes:
        if self._content is None:
            content = self.node.read_fn()
            self._content = content.encode() if isinstance(content, str) else bytes(content)
        return self._content

    def read(self, n: int) -> bytes:
        if (self.flags & O_ACCMODE) == O_WRONLY:
            raise oserror(errno.EBADF)
        data = self._data()[self.pos : self.pos + n]
        self.pos += len(data)
        return data

    def write(self, data: bytes) -> int:
        if (self.flags & O_ACCMODE) == O_RDONLY:
            raise oserror(errno.EBADF)
        if self.node.write_fn is None:
            raise oserror(errno.EIO)
        return self.node.write_fn(bytes(data))


def _split(path: str) -> list[str]:
    return [p for p in path.split("/") if p and p != "."]


class Vfs:
    def __init__(self) -> None:
        self.root = Dir()

    def _walk(self, parts: list[str]) -> Node:
        node: Node = self.root
        for i, part in enumerate(parts):
            if not isinstance(node, Dir):
                raise oserror(errno.ENOTDIR, "/" + "/".join(parts[:i]))
            if part == "..":
                node = self._walk(parts[: max(i - 1, 0)])
                continue
            nxt = node.children.get(part)
            if nxt is None:
                raise oserror(errno.ENOENT, "/" + "/".join(parts[: i + 1]))
            node = nxt
        return node

    def lookup(self, path: str) -> Node:
        return self._walk(_split(path))

    def mkdir(self, path: str) -> Dir:
        node: Node = self.root
        for part in _split(path):
            assert isinstance(node, Dir), path
            node = node.children.setdefault(part, Dir())
        assert isinstance(node, Dir), path
        return node

    def add(self, path: str, node: Node, *, exist_ok: bool = True) -> Node:
        parts = _split(path)
        parent = self.mkdir("/".join(parts[:-1]))
        if parts[-1] in parent.children and not exist_ok:
            raise oserror(errno.EEXIST)
        parent.children[parts[-1]] = node
        return node

    def add_file(self, path: str, read: Callable[[], str | bytes], write=None, **kw) -> GenFile:
        node = GenFile(read, write, **kw)
        self.add(path, node)
        return node

    def remove(self, path: str) -> Node:
        parts = _split(path)
        if not parts:
            raise oserror(errno.EBUSY)
        parent = self._walk(parts[:-1])
        if not isinstance(parent, Dir):
            raise oserror(errno.ENOTDIR)
        node = parent.children.get(parts[-1])
        if node is None:
            raise oserror(errno.ENOENT)
        if isinstance(node, Dir):
            raise oserror(errno.EISDIR)
        del parent.children[parts[-1]]
        return node

    def listdir(self, path: str) -> list[str]:
        node = self.lookup(path)
        if not isinstance(node, Dir):
            raise oserror(errno.ENOTDIR)
        return sorted(node.children)

    def open(self, path: str, flags: int) -> File:
        try:
            node = self.lookup(path)
        except OSError as e:
            if e.errno == errno.ENOENT and flags & O_CREAT:
                raise oserror(errno.EACCES) from None  # pseudo filesystems take no new files
            raise
        acc = flags & O_ACCMODE
        if isinstance(node, Dir):
            if acc != O_RDONLY:
                raise oserror(errno.EISDIR)
            return DirFile(flags)
        if flags & O_DIRECTORY:
            raise oserror(errno.ENOTDIR)
        if isinstance(node, OpenHook):
            return node.opener(flags)
        assert isinstance(node, GenFile)
        if acc != O_RDONLY and node.write_fn is None and node.refuse_write_open:
            raise oserror(errno.EACCES)
        return GenOpenFile(node, flags)
