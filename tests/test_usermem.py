"""copy_from_user / copy_to_user: real addresses, EFAULT instead of a crash."""

from __future__ import annotations

import ctypes
import errno
import mmap

import pytest

from kernel_sim.usermem import copy_from_user, copy_to_user, strncpy_from_user


def test_roundtrip_through_real_addresses():
    buf = ctypes.create_string_buffer(b"kernel_sim\0tail", 16)
    addr = ctypes.addressof(buf)
    assert copy_from_user(addr, 6) == b"kernel"
    copy_to_user(addr, b"K")
    assert buf.raw[:6] == b"Kernel"
    assert strncpy_from_user(addr, 64) == b"Kernel_sim"
    assert strncpy_from_user(addr, 3) == b"Ker"


@pytest.mark.parametrize("addr", [0, 8, 0x1000, 0x7FFFFFFFF000, 0xFFFF888000000000, 2**64 - 8])
def test_bad_addresses_are_efault(addr):
    for call in (lambda: copy_from_user(addr, 8), lambda: copy_to_user(addr, b"x" * 8),
                 lambda: strncpy_from_user(addr, 8)):
        with pytest.raises(OSError) as e:
            call()
        assert e.value.errno == errno.EFAULT


def test_read_only_memory_is_efault_for_writes():
    m = mmap.mmap(-1, 4096, prot=mmap.PROT_READ)
    view = (ctypes.c_char * 4096).from_address(_mmap_address(m))
    assert copy_from_user(ctypes.addressof(view), 4) == b"\0" * 4
    with pytest.raises(OSError) as e:
        copy_to_user(ctypes.addressof(view), b"x")
    assert e.value.errno == errno.EFAULT


def test_string_ending_at_an_unmapped_page():
    m = mmap.mmap(-1, 8192)
    base = _mmap_address(m)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    assert libc.mprotect(base + 4096, 4096, 0) == 0  # second page inaccessible
    m[4096 - 3:4096] = b"ab\0"
    assert strncpy_from_user(base + 4096 - 3, 64) == b"ab"
    m[4096 - 3:4096] = b"abc"  # no NUL before the fault
    with pytest.raises(OSError) as e:
        strncpy_from_user(base + 4096 - 3, 64)
    assert e.value.errno == errno.EFAULT
    assert strncpy_from_user(base + 4096 - 3, 3) == b"abc"  # maxlen reached first


def _mmap_address(m: mmap.mmap) -> int:
    """Address of an mmap object's memory (read-only maps included), via the buffer protocol."""
    obj = ctypes.py_object(m)
    buf = ctypes.c_void_p()
    length = ctypes.c_ssize_t()
    ctypes.pythonapi.PyObject_AsReadBuffer.argtypes = [ctypes.py_object, ctypes.POINTER(ctypes.c_void_p),
                                                      ctypes.POINTER(ctypes.c_ssize_t)]
    ctypes.pythonapi.PyObject_AsReadBuffer(obj, ctypes.byref(buf), ctypes.byref(length))
    return buf.value
