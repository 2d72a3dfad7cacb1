"""BPF_BTF_LOAD and the BPF log rules, on both kernels."""

from __future__ import annotations

import ctypes
import errno
import struct

import pytest

from kernel_sim.uapi.bpf import BpfCmd, BtfLoadAttr, make_attr

INT_TYPE = struct.pack("<III", 1, 1 << 24, 4) + struct.pack("<I", (1 << 24) | 32)


def btf_blob(types: bytes = INT_TYPE, strs: bytes = b"\0int\0", magic: int = 0xEB9F) -> bytes:
    return struct.pack("<HBBIIIII", magic, 1, 0, 24, 0, len(types), len(types), len(strs)) + types + strs


def load(kernel, blob: bytes, level: int = 1, size: int = 4096):
    """(fd or errno, log text, log_true_size)."""
    data = ctypes.create_string_buffer(blob, len(blob))
    log = ctypes.create_string_buffer(max(size, 1))
    attr = make_attr(BtfLoadAttr, btf=ctypes.addressof(data), btf_size=len(blob),
                     btf_log_buf=ctypes.addressof(log) if size else 0, btf_log_size=size, btf_log_level=level)
    try:
        result = kernel.bpf(BpfCmd.BTF_LOAD, attr)
    except OSError as e:
        result = -e.errno
    return result, log.value.decode(), BtfLoadAttr.from_attr(attr).btf_log_true_size


def test_valid_btf_loads_and_logs_its_header(bpf_kernel):
    fd, log, true_size = load(bpf_kernel, btf_blob())
    assert fd > 0
    assert log.startswith("magic: 0xeb9f\nversion: 1\nflags: 0x0\nhdr_len: 24\n")
    assert "[1] INT int size=4 bits_offset=0 nr_bits=32 encoding=SIGNED\n" in log
    assert true_size == len(log) + 1
    bpf_kernel.close(fd)


@pytest.mark.parametrize("blob, message", [
    (btf_blob(magic=0), "Invalid magic"),
    (btf_blob()[:-1] + b"x", "Invalid string section"),
    (btf_blob(types=b"", strs=b"\0"), "No type found"),
])
def test_invalid_btf_is_einval_with_linux_message(bpf_kernel, blob, message):
    result, log, _ = load(bpf_kernel, blob)
    assert result == -errno.EINVAL
    assert log.endswith(message)


def test_log_rules(bpf_kernel):
    assert load(bpf_kernel, btf_blob(), level=0, size=0)[0] > 0
    assert load(bpf_kernel, btf_blob(), level=0, size=64)[0] == -errno.EINVAL  # a buffer needs a level
    fd, log, true_size = load(bpf_kernel, btf_blob(), level=1, size=0)  # a level without a buffer is fine
    assert fd > 0 and log == "" and true_size > 100  # and the true size still comes back
    assert load(bpf_kernel, btf_blob(), level=64, size=64)[0] == -errno.EINVAL


def test_truncated_log_rotates_and_is_enospc(bpf_kernel):
    result, log, true_size = load(bpf_kernel, btf_blob(), size=40)
    assert result == -errno.ENOSPC
    assert len(log) == 39 and log.endswith("encoding=SIGNED\n")  # the tail is kept
    result, log, _ = load(bpf_kernel, btf_blob(), level=1 | 8, size=40)  # BPF_LOG_FIXED keeps the head
    assert result == -errno.ENOSPC and log.startswith("magic: 0xeb9f\n") and len(log) == 39
    assert true_size > 40
