"""BTF sanitizing (loader/btf_sanitize.py): newer kinds rewritten so an older kernel takes the BTF."""

from __future__ import annotations

import ctypes
import errno

import pytest

from kernel_sim.uapi.bpf import BpfCmd, BtfLoadAttr, make_attr
from loader.btf_sanitize import NEW_KINDS, sanitize, type_kinds
from loader.btf_values import BTF_KIND_DATASEC, BTF_KIND_STRUCT, BtfTypes
from loader.ebpf import Ebpf
from loader.obj import load_object
from tests.conftest import REPO

OBJECTS = [p for p in sorted((REPO / "examples").glob("*.bpf.o")) + sorted((REPO / "tests" / "objects").glob("*.bpf.o"))
           if load_object(p).btf is not None]


@pytest.mark.parametrize("path", OBJECTS, ids=lambda p: p.name)
def test_sanitized_blob_keeps_ids_and_sizes(path):
    raw = load_object(path).btf.to_bytes()
    clean = sanitize(raw)
    before, after = type_kinds(raw), type_kinds(clean)
    assert len(before) == len(after)  # every type id keeps its place
    assert not set(after) & NEW_KINDS
    old, new = BtfTypes(raw), BtfTypes(clean)
    for type_id, kind in enumerate(before, start=1):
        if kind == BTF_KIND_DATASEC:
            assert after[type_id - 1] == BTF_KIND_STRUCT
            assert new.size_of(type_id) == old.size_of(type_id)
            assert "." not in new.get(type_id).name and "/" not in new.get(type_id).name
            assert [m.bit_offset // 8 for m in new.get(type_id).members] == [off for _v, off, _s in
                                                                               old.get(type_id).vars]
        elif kind not in NEW_KINDS:
            assert after[type_id - 1] == kind


@pytest.mark.parametrize("path", OBJECTS, ids=lambda p: p.name)
def test_kernels_accept_sanitized_btf(bpf_kernel, path):
    clean = sanitize(load_object(path).btf.to_bytes())
    blob = ctypes.create_string_buffer(clean, len(clean))
    log = ctypes.create_string_buffer(1 << 16)
    fd = bpf_kernel.bpf(BpfCmd.BTF_LOAD, make_attr(BtfLoadAttr, btf=ctypes.addressof(blob), btf_size=len(clean),
                                                   btf_log_buf=ctypes.addressof(log), btf_log_size=len(log),
                                                   btf_log_level=1))
    bpf_kernel.close(fd)


class OldBtfKernel:
    """A kernel from before FUNC/VAR/DATASEC/FLOAT/tags: BTF with them is refused with EINVAL."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.kind = inner.kind
        self.refused = 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def bpf(self, cmd, attr):
        if cmd == BpfCmd.BTF_LOAD:
            a = BtfLoadAttr.from_attr(attr)
            if set(type_kinds(ctypes.string_at(a.btf, a.btf_size))) & NEW_KINDS:
                self.refused += 1
                raise OSError(errno.EINVAL, "unknown BTF kind")
        return self.inner.bpf(cmd, attr)


def test_loader_sanitizes_when_btf_is_refused(bpf_kernel):
    old = OldBtfKernel(bpf_kernel)
    with Ebpf.load_file(REPO / "examples" / "globals.bpf.o", kernel=old) as ebpf:
        assert old.refused == 1 and ebpf.btf_fd is not None
        assert any("sanitized" in w for w in ebpf.warnings)
        prog = ebpf.program("count_syscalls")
        prog.load()  # func_info names FUNC ids that are TYPEDEFs now: loaded without it if refused
        assert ebpf.map(".bss")[0] == {"calls_seen": 0, "calls_sampled": 0, "last_tgid": 0}
