"""copy_from_user / copy_to_user over real addresses of this process.

Userland hands the kernel real addresses (ctypes buffers it keeps alive). Reading them with
ctypes.string_at would crash the interpreter on a bad pointer; process_vm_readv and
process_vm_writev on our own pid fail with EFAULT instead, exactly as the kernel's uaccess
routines report a bad user pointer.
"""

from __future__ import annotations

import ctypes
import errno
import os

_libc = ctypes.CDLL(None, use_errno=True)


class _IoVec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


_libc.process_vm_readv.argtypes = [
    ctypes.c_int, ctypes.POINTER(_IoVec), ctypes.c_ulong, ctypes.POINTER(_IoVec), ctypes.c_ulong, ctypes.c_ulong,
]
_libc.process_vm_readv.restype = ctypes.c_ssize_t
_libc.process_vm_writev.argtypes = _libc.process_vm_readv.argtypes
_libc.process_vm_writev.restype = ctypes.c_ssize_t

_PID = os.getpid()
# Beyond this the address is not a user address on x86_64 (TASK_SIZE_MAX).
TASK_SIZE = 0x00007FFFFFFFF000


def _efault() -> OSError:
    return OSError(errno.EFAULT, os.strerror(errno.EFAULT))


def _check_range(addr: int, n: int) -> None:
    if n < 0 or addr <= 0 or addr + n > TASK_SIZE or addr + n < addr:
        raise _efault()


def copy_from_user(addr: int, n: int) -> bytes:
    """n bytes at user address addr; EFAULT for a bad address (never a crash)."""
    if n == 0:
        return b""
    _check_range(addr, n)
    buf = ctypes.create_string_buffer(n)
    local = _IoVec(ctypes.addressof(buf), n)
    remote = _IoVec(addr, n)
    got = _libc.process_vm_readv(_PID, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
    if got != n:
        raise _efault()
    return buf.raw


def copy_to_user(addr: int, data: bytes | bytearray | memoryview) -> None:
    """Write data at user address addr; EFAULT for a bad or read-only address."""
    n = len(data)
    if n == 0:
        return
    _check_range(addr, n)
    buf = ctypes.create_string_buffer(bytes(data), n)
    local = _IoVec(ctypes.addressof(buf), n)
    remote = _IoVec(addr, n)
    got = _libc.process_vm_writev(_PID, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
    if got != n:
        raise _efault()


def strncpy_from_user(addr: int, maxlen: int) -> bytes:
    """The NUL-terminated string at addr (without the NUL), at most maxlen bytes; EFAULT if unreadable.

    Reads page by page, so a string whose NUL sits just before an unmapped page is read; one
    that runs into an unmapped page before its NUL is EFAULT, as Linux's strncpy_from_user.
    """
    out = bytearray()
    _check_range(addr, 1)
    while len(out) < maxlen:
        chunk = min(4096 - (addr % 4096), maxlen - len(out))
        data = copy_from_user(addr, chunk)
        nul = data.find(b"\0")
        if nul >= 0:
            out += data[:nul]
            return bytes(out)
        out += data
        addr += chunk
    return bytes(out)
