"""BPF_MAP_TYPE_RINGBUF as a map: the existing RingBuf (kernel_sim/bpf/ringbuf.py) behind a map file.

The map file's mmap and poll delegate to the RingBuf; data submitted by a program wakes the
map's wait queue (epoll, poll mirrors). The RingBuf's kernel view (consumer page, producer
page, data twice) is mapped into the VM once, at ``ringbuf_base``, so a reserved record's
address is ``ringbuf_base + DATA_OFF + offset`` and programs write samples in place.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from ...fs.file import oserror
from ...uapi.bpf import BPF_F_NUMA_NODE, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP, MapCreateAttr, MapType
from ...uapi.epoll import EPOLLIN, EPOLLRDNORM, O_ACCMODE, O_RDONLY
from ..ringbuf import DATA_OFF, RingBuf, valid_size
from .base import SIM_MAX_MAP_BYTES, BpfMapFile, UnifiedMap

if TYPE_CHECKING:
    from ...kernel import Kernel


class RingBufMap(UnifiedMap):
    map_type = MapType.RINGBUF

    @classmethod
    def alloc_check(cls, attr: MapCreateAttr) -> None:
        if attr.map_flags & ~BPF_F_NUMA_NODE:
            raise oserror(errno.EINVAL)
        if attr.key_size or attr.value_size or not valid_size(attr.max_entries):
            raise oserror(errno.EINVAL)
        if attr.max_entries > SIM_MAX_MAP_BYTES:
            raise oserror(errno.ENOMEM)

    def __init__(self, kernel: Kernel, attr: MapCreateAttr) -> None:
        super().__init__(kernel, attr)
        self.ringbuf = RingBuf(attr.max_entries, wake=self._wake)
        self.ringbuf_base = kernel.vm.map_region(self.ringbuf.mem)

    def _wake(self) -> None:
        self.wq.wake(EPOLLIN | EPOLLRDNORM)

    def free_storage(self) -> None:
        self.kernel.vm.unmap_region(self.ringbuf_base)
        self.ringbuf.close()

    def poll(self) -> int:
        return EPOLLIN | EPOLLRDNORM if self.ringbuf.readable() else 0

    def mmap(self, file: BpfMapFile, length: int, prot: int, flags: int, offset: int):
        if (file.flags & O_ACCMODE) == O_RDONLY:
            raise oserror(errno.EINVAL)
        return self.ringbuf.mmap(length, prot, flags, offset)

    # -- program side: addresses of records in the VM ------------------------------------------
    def record_addr(self, data_off: int) -> int:
        return self.ringbuf_base + DATA_OFF + data_off

    def record_off(self, addr: int) -> int:
        return addr - self.ringbuf_base - DATA_OFF

    def ringbuf_reserve(self, size: int, flags: int = 0) -> int:
        """bpf_ringbuf_reserve: the record's VM address, or 0 (no room, or flags set)."""
        if flags:
            return 0
        off = self.ringbuf.reserve(size)
        return 0 if off is None else self.record_addr(off)

    def ringbuf_submit(self, addr: int, flags: int = 0) -> None:
        self.ringbuf.submit(self.record_off(addr), flags)

    def ringbuf_discard(self, addr: int, flags: int = 0) -> None:
        self.ringbuf.discard(self.record_off(addr), flags)

    def ringbuf_output(self, data: bytes, flags: int = 0) -> int:
        if flags & ~(BPF_RB_NO_WAKEUP | BPF_RB_FORCE_WAKEUP):
            return -errno.EINVAL
        return self.ringbuf.output(bytes(data), flags)

    def ringbuf_query(self, flags: int) -> int:
        return self.ringbuf.query(flags)
