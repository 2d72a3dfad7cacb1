"""EBPFPreProcessor's map references on both kernels: a closed fd is EBADF, an fd that is not a
map is EINVAL, both with Linux's log line."""

from __future__ import annotations

import ctypes
import errno

import pytest

from kernel_sim.uapi.bpf import BpfCmd, ProgLoadAttr, ProgType, make_attr
from kernel_sim.uapi.insn import encode, insn, ld_imm64


def _load_with_map_fd(sys, fd: int) -> tuple[int, str]:
    prog = encode([*ld_imm64(1, fd, src=1), insn(0xB7, 0, 0, 0, 0), insn(0x95, 0, 0, 0, 0)])
    code, lic = ctypes.create_string_buffer(prog), ctypes.create_string_buffer(b"GPL")
    log = ctypes.create_string_buffer(4096)
    with pytest.raises(OSError) as e:
        sys.bpf(BpfCmd.PROG_LOAD, make_attr(ProgLoadAttr, prog_type=ProgType.SOCKET_FILTER, insn_cnt=4,
                                            insns=ctypes.addressof(code), license=ctypes.addressof(lic),
                                            log_level=1, log_buf=ctypes.addressof(log), log_size=4096))
    return e.value.errno, log.value.decode()


def test_closed_fd_is_ebadf(bpf_kernel):
    fd = bpf_kernel.eventfd(0, 0)
    bpf_kernel.close(fd)
    code, log = _load_with_map_fd(bpf_kernel, fd)
    assert code == errno.EBADF
    assert log.startswith(f"fd {fd} is not pointing to valid bpf_map\n")


def test_an_fd_that_is_not_a_map_is_einval(bpf_kernel):
    fd = bpf_kernel.eventfd(0, 0)
    try:
        code, log = _load_with_map_fd(bpf_kernel, fd)
    finally:
        bpf_kernel.close(fd)
    assert code == errno.EINVAL
    assert log.startswith(f"fd {fd} is not pointing to valid bpf_map\n")
