"""epoll through the Syscalls seam: the same test body on kernel_sim and on Linux."""

from __future__ import annotations

import errno
import select
import struct
import threading
import time

import pytest

from kernel_sim.uapi.epoll import (
    EFD_NONBLOCK,
    EPOLL_CLOEXEC,
    EPOLL_CTL_ADD,
    EPOLL_CTL_DEL,
    EPOLL_CTL_MOD,
    EPOLLERR,
    EPOLLET,
    EPOLLEXCLUSIVE,
    EPOLLIN,
    EPOLLONESHOT,
    EPOLLOUT,
    EPOLLPRI,
)

U64 = struct.Struct("<Q")


def _errno(call) -> int:
    with pytest.raises(OSError) as e:
        call()
    return e.value.errno


def test_level_triggered_reports_until_drained(kernel):
    ep = kernel.epoll_create1(0)
    efd = kernel.eventfd(0, EFD_NONBLOCK)
    kernel.epoll_ctl(ep, EPOLL_CTL_ADD, efd, EPOLLIN)
    assert kernel.epoll_wait(ep, 8, 0) == []
    kernel.write(efd, U64.pack(1))
    assert kernel.epoll_wait(ep, 8, 0) == [(efd, EPOLLIN)]
    assert kernel.epoll_wait(ep, 8, 0) == [(efd, EPOLLIN)]
    kernel.read(efd, 8)
    assert kernel.epoll_wait(ep, 8, 0) == []


def test_edge_triggered_reports_once_per_change(kernel):
    ep = kernel.epoll_create1(EPOLL_CLOEXEC)
    efd = kernel.eventfd(0, EFD_NONBLOCK)
    kernel.epoll_ctl(ep, EPOLL_CTL_ADD, efd, EPOLLIN | EPOLLET)
    kernel.write(efd, U64.pack(1))
    assert kernel.epoll_wait(ep, 8, 0) == [(efd, EPOLLIN)]
    assert kernel.epoll_wait(ep, 8, 0) == []
    kernel.write(efd, U64.pack(1))  # a new event, though still readable
    assert kernel.epoll_wait(ep, 8, 0) == [(efd, EPOLLIN)]


def test_oneshot_disarms_until_mod(kernel):
    ep = kernel.epoll_create1(0)
    efd = kernel.eventfd(1, EFD_NONBLOCK)
    kernel.epoll_ctl(ep, EPOLL_CTL_ADD, efd, EPOLLIN | EPOLLONESHOT)
    assert kernel.epoll_wait(ep, 8, 0) == [(efd, EPOLLIN)]
    kernel.write(efd, U64.pack(1))
    assert kernel.epoll_wait(ep, 8, 0) == []
    kernel.epoll_ctl(ep, EPOLL_CTL_MOD, efd, EPOLLIN | EPOLLONESHOT)
    assert kernel.epoll_wait(ep, 8, 0) == [(efd, EPOLLIN)]


def test_out_and_in_masks(kernel):
    ep = kernel.epoll_create1(0)
    efd = kernel.eventfd(2, EFD_NONBLOCK)
    kernel.epoll_ctl(ep, EPOLL_CTL_ADD, efd, EPOLLIN | EPOLLOUT)
    assert kernel.epoll_wait(ep, 8, 0) == [(efd, EPOLLIN | EPOLLOUT)]


def test_maxevents_limits_and_rotates(kernel):
    ep = kernel.epoll_create1(0)
    fds = [kernel.eventfd(1, EFD_NONBLOCK) for _ in range(3)]
    for fd in fds:
        kernel.epoll_ctl(ep, EPOLL_CTL_ADD, fd, EPOLLIN)
    first = kernel.epoll_wait(ep, 2, 0)
    second = kernel.epoll_wait(ep, 2, 0)
    assert len(first) == 2 and len(second) == 2
    # Level-triggered items go to the back of the ready list: the third comes next.
    assert second[0][0] not in {fd for fd, _ in first}
    assert {fd for fd, _ in first + second} == set(fds)


def test_del_stops_reports_and_close_removes(kernel):
    ep = kernel.epoll_create1(0)
    a = kernel.eventfd(1, EFD_NONBLOCK)
    b = kernel.eventfd(1, EFD_NONBLOCK)
    kernel.epoll_ctl(ep, EPOLL_CTL_ADD, a, EPOLLIN)
    kernel.epoll_ctl(ep, EPOLL_CTL_ADD, b, EPOLLIN)
    kernel.epoll_ctl(ep, EPOLL_CTL_DEL, a, 0)
    assert kernel.epoll_wait(ep, 8, 0) == [(b, EPOLLIN)]
    kernel.close(b)
    assert kernel.epoll_wait(ep, 8, 0) == []


def test_ctl_errors_as_linux(kernel):
    ep = kernel.epoll_create1(0)
    efd = kernel.eventfd(0, EFD_NONBLOCK)
    other = kernel.eventfd(0, EFD_NONBLOCK)
    kernel.epoll_ctl(ep, EPOLL_CTL_ADD, efd, EPOLLIN)
    assert _errno(lambda: kernel.epoll_ctl(ep, EPOLL_CTL_ADD, efd, EPOLLIN)) == errno.EEXIST
    assert _errno(lambda: kernel.epoll_ctl(ep, EPOLL_CTL_MOD, other, EPOLLIN)) == errno.ENOENT
    assert _errno(lambda: kernel.epoll_ctl(ep, EPOLL_CTL_DEL, other, 0)) == errno.ENOENT
    assert _errno(lambda: kernel.epoll_ctl(ep, EPOLL_CTL_ADD, ep, EPOLLIN)) == errno.EINVAL
    assert _errno(lambda: kernel.epoll_ctl(efd, EPOLL_CTL_ADD, other, EPOLLIN)) == errno.EINVAL
    assert _errno(lambda: kernel.epoll_ctl(ep, 99, other, EPOLLIN)) == errno.EINVAL
    assert _errno(lambda: kernel.epoll_ctl(9999, EPOLL_CTL_ADD, other, EPOLLIN)) == errno.EBADF
    assert _errno(lambda: kernel.epoll_ctl(ep, EPOLL_CTL_ADD, 9999, EPOLLIN)) == errno.EBADF
    kernel.epoll_ctl(ep, EPOLL_CTL_ADD, other, EPOLLIN | EPOLLEXCLUSIVE)
    assert _errno(lambda: kernel.epoll_ctl(ep, EPOLL_CTL_MOD, other, EPOLLIN)) == errno.EINVAL
    assert _errno(lambda: kernel.epoll_create1(1)) == errno.EINVAL


def test_pseudo_files_poll_as_their_filesystem_and_directories_cannot_be_watched(kernel):
    ep = kernel.epoll_create1(0)
    proc = kernel.openat("/proc/version", 0)
    sysfs = kernel.openat("/sys/devices/system/cpu/online", 0)
    kernel.epoll_ctl(ep, EPOLL_CTL_ADD, proc, EPOLLIN | EPOLLPRI | EPOLLOUT)
    kernel.epoll_ctl(ep, EPOLL_CTL_ADD, sysfs, EPOLLIN | EPOLLPRI | EPOLLOUT)
    assert sorted(kernel.epoll_wait(ep, 4, 0)) == sorted(
        [(proc, EPOLLIN | EPOLLOUT), (sysfs, EPOLLIN | EPOLLPRI | EPOLLOUT | EPOLLERR)])
    d = kernel.openat("/sys/devices/system/cpu", 0)
    assert _errno(lambda: kernel.epoll_ctl(ep, EPOLL_CTL_ADD, d, EPOLLIN)) == errno.EPERM


def test_wait_errors_as_linux(kernel):
    ep = kernel.epoll_create1(0)
    efd = kernel.eventfd(0, EFD_NONBLOCK)
    assert _errno(lambda: kernel.epoll_wait(ep, 0, 0)) == errno.EINVAL
    assert _errno(lambda: kernel.epoll_wait(ep, -1, 0)) == errno.EINVAL
    assert _errno(lambda: kernel.epoll_wait(9999, 0, 0)) == errno.EBADF  # the fd is checked first
    assert _errno(lambda: kernel.epoll_wait(9999, 1, 0)) == errno.EBADF
    assert _errno(lambda: kernel.epoll_wait(efd, 1, 0)) == errno.EINVAL


def test_timeout_waits_and_wakeup_from_another_thread(kernel):
    ep = kernel.epoll_create1(0)
    efd = kernel.eventfd(0, EFD_NONBLOCK)
    kernel.epoll_ctl(ep, EPOLL_CTL_ADD, efd, EPOLLIN)
    t0 = time.monotonic()
    assert kernel.epoll_wait(ep, 1, 50) == []
    assert time.monotonic() - t0 >= 0.045
    threading.Timer(0.05, lambda: kernel.write(efd, U64.pack(1))).start()
    t0 = time.monotonic()
    assert kernel.epoll_wait(ep, 1, 5000) == [(efd, EPOLLIN)]
    assert time.monotonic() - t0 < 2


def test_nested_epoll_is_readable_when_inner_is_ready(kernel):
    outer = kernel.epoll_create1(0)
    inner = kernel.epoll_create1(0)
    efd = kernel.eventfd(0, EFD_NONBLOCK)
    kernel.epoll_ctl(inner, EPOLL_CTL_ADD, efd, EPOLLIN)
    kernel.epoll_ctl(outer, EPOLL_CTL_ADD, inner, EPOLLIN)
    assert kernel.epoll_wait(outer, 4, 0) == []
    kernel.write(efd, U64.pack(1))
    assert kernel.epoll_wait(outer, 4, 0) == [(inner, EPOLLIN)]


def test_poll_handle_is_a_real_descriptor_tracking_readiness(kernel):
    ep = kernel.epoll_create1(0)
    efd = kernel.eventfd(0, EFD_NONBLOCK)
    kernel.epoll_ctl(ep, EPOLL_CTL_ADD, efd, EPOLLIN)
    handle = kernel.poll_handle(ep)
    assert select.select([handle], [], [], 0)[0] == []
    threading.Timer(0.02, lambda: kernel.write(efd, U64.pack(1))).start()
    assert select.select([handle], [], [], 2)[0] == [handle]
    assert kernel.epoll_wait(ep, 4, 0) == [(efd, EPOLLIN)]
    kernel.read(efd, 8)
    assert kernel.epoll_wait(ep, 4, 0) == []
    assert select.select([handle], [], [], 0)[0] == []
