"""eventfd through the Syscalls seam: the same test body on kernel_sim and on Linux."""

from __future__ import annotations

import errno
import struct
import threading
import time

import pytest

from kernel_sim.uapi.epoll import EFD_CLOEXEC, EFD_NONBLOCK, EFD_SEMAPHORE, EVENTFD_MAX

U64 = struct.Struct("<Q")


def test_counter_accumulates_and_read_resets(kernel):
    fd = kernel.eventfd(3, EFD_NONBLOCK)
    assert kernel.write(fd, U64.pack(4)) == 8
    assert kernel.read(fd, 8) == U64.pack(7)
    with pytest.raises(OSError) as e:
        kernel.read(fd, 8)
    assert e.value.errno == errno.EAGAIN
    kernel.close(fd)


def test_semaphore_reads_one_at_a_time(kernel):
    fd = kernel.eventfd(2, EFD_SEMAPHORE | EFD_NONBLOCK)
    assert kernel.read(fd, 8) == U64.pack(1)
    assert kernel.read(fd, 8) == U64.pack(1)
    with pytest.raises(OSError) as e:
        kernel.read(fd, 8)
    assert e.value.errno == errno.EAGAIN


def test_short_buffers_and_bad_values_are_einval(kernel):
    fd = kernel.eventfd(1, EFD_NONBLOCK)
    for call in (lambda: kernel.read(fd, 4), lambda: kernel.write(fd, b"\1\0\0\0"),
                 lambda: kernel.write(fd, U64.pack(2**64 - 1))):
        with pytest.raises(OSError) as e:
            call()
        assert e.value.errno == errno.EINVAL
    # A larger read buffer still returns exactly 8 bytes.
    assert kernel.read(fd, 64) == U64.pack(1)


def test_overflow_blocks_or_eagain(kernel):
    fd = kernel.eventfd(0, EFD_NONBLOCK)
    kernel.write(fd, U64.pack(EVENTFD_MAX))
    with pytest.raises(OSError) as e:
        kernel.write(fd, U64.pack(1))
    assert e.value.errno == errno.EAGAIN
    assert kernel.write(fd, U64.pack(0)) == 8  # adding zero always fits
    assert kernel.read(fd, 8) == U64.pack(EVENTFD_MAX)


def test_initval_is_truncated_to_32_bits(kernel):
    fd = kernel.eventfd(0, EFD_NONBLOCK)
    kernel.close(fd)
    fd = kernel.eventfd(5, EFD_NONBLOCK | EFD_CLOEXEC)
    assert kernel.read(fd, 8) == U64.pack(5)


def test_unknown_flags_are_einval(kernel):
    with pytest.raises(OSError) as e:
        kernel.eventfd(0, 0x10)
    assert e.value.errno == errno.EINVAL


def test_blocking_read_wakes_on_write_from_another_thread(kernel):
    fd = kernel.eventfd(0, 0)
    got = []
    reader = threading.Thread(target=lambda: got.append(kernel.read(fd, 8)))
    reader.start()
    time.sleep(0.05)
    assert not got
    kernel.write(fd, U64.pack(9))
    reader.join(2)
    assert got == [U64.pack(9)]


def test_closed_fd_is_ebadf(kernel):
    fd = kernel.eventfd(0, EFD_NONBLOCK)
    kernel.close(fd)
    for call in (lambda: kernel.read(fd, 8), lambda: kernel.write(fd, U64.pack(1)), lambda: kernel.close(fd)):
        with pytest.raises(OSError) as e:
            call()
        assert e.value.errno == errno.EBADF
