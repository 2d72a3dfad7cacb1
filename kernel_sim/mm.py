"""Shared pages between the simulated kernel and userland: memfd-backed mappings.

A perf buffer or a BPF ring buffer is real memory that the kernel writes and userland maps.
The kernel keeps its own mapping of a memfd; each mmap() userland makes is a second, separate
mapping of the same pages, so unmapping it never pulls memory from under the kernel, and the
bytes userland reads are the bytes the kernel wrote — as with Linux's vm_insert_page.
Where Linux maps the same pages twice in a row (the BPF ring buffer's data area), userland's
mapping is built with MAP_FIXED pieces inside one reservation.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os

from .fs.file import oserror

PAGE_SIZE = mmap.PAGESIZE

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_MAP_FAILED = ctypes.c_void_p(-1).value
_MAP_FIXED = 0x10
_MAP_ANONYMOUS = 0x20


class SharedPages:
    """``size`` bytes of page-aligned shared memory; ``kmap`` is the kernel's own mapping."""

    def __init__(self, size: int, name: str = "kernel_sim") -> None:
        if size <= 0 or size % PAGE_SIZE:
            raise ValueError(f"shared memory size {size} is not a positive multiple of the page size")
        self.size = size
        self.fd = os.memfd_create(name, os.MFD_CLOEXEC)
        os.ftruncate(self.fd, size)
        self.kmap = mmap.mmap(self.fd, size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ | mmap.PROT_WRITE)

    def map_user(self, length: int, offset: int, prot: int) -> mmap.mmap:
        """A plain user mapping of [offset, offset+length)."""
        if offset + length > self.size:
            raise oserror(errno.EINVAL)
        return mmap.mmap(self.fd, length, flags=mmap.MAP_SHARED, prot=prot, offset=offset)

    def map_user_pieces(self, pieces: list[tuple[int, int]], prot: int):
        """One contiguous user mapping made of (file offset, length) pieces laid end to end.

        Returns a ctypes char array over the mapping (it has the buffer protocol); its
        ``munmap()`` / ``close()`` remove the mapping.
        """
        total = sum(length for _, length in pieces)
        base = _libc.mmap(None, total, 0, mmap.MAP_PRIVATE | _MAP_ANONYMOUS, -1, 0)
        if base in (None, _MAP_FAILED):
            raise oserror(ctypes.get_errno())
        at = base
        for file_off, length in pieces:
            got = _libc.mmap(at, length, prot, mmap.MAP_SHARED | _MAP_FIXED, self.fd, file_off)
            if got in (None, _MAP_FAILED):
                code = ctypes.get_errno()
                _libc.munmap(base, total)
                raise oserror(code)
            at += length
        view = (ctypes.c_char * total).from_address(base)
        state = {"mapped": True}

        def munmap() -> None:
            if state["mapped"]:
                state["mapped"] = False
                _libc.munmap(base, total)

        view.munmap = munmap
        view.close = munmap
        return view

    def close(self) -> None:
        if self.fd >= 0:
            self.kmap.close()
            os.close(self.fd)
            self.fd = -1
