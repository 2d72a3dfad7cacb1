"""queue and stack maps (no keys): push, pop and peek, with BPF_EXIST overwriting the oldest.

Values are copied in and out (helpers take and return bytes), so they need no VM storage.
"""

from __future__ import annotations

import errno
from collections import deque
from typing import TYPE_CHECKING

from ...fs.file import File, oserror
from ...uapi.bpf import BPF_EXIST, BPF_F_NUMA_NODE, BPF_NOEXIST, MapCreateAttr, MapType
from .base import ACCESS_MASK, KMALLOC_MAX_SIZE, UnifiedMap, flags_access_ok

if TYPE_CHECKING:
    from ...kernel import Kernel

QUEUE_STACK_CREATE_FLAG_MASK = BPF_F_NUMA_NODE | ACCESS_MASK


class QueueMap(UnifiedMap):
    map_type = MapType.QUEUE
    lifo = False

    @classmethod
    def alloc_check(cls, attr: MapCreateAttr) -> None:
        if (attr.max_entries == 0 or attr.key_size != 0 or attr.value_size == 0
                or attr.map_flags & ~QUEUE_STACK_CREATE_FLAG_MASK or not flags_access_ok(attr.map_flags)):
            raise oserror(errno.EINVAL)
        if attr.value_size > KMALLOC_MAX_SIZE:
            raise oserror(errno.E2BIG)

    def __init__(self, kernel: Kernel, attr: MapCreateAttr) -> None:
        super().__init__(kernel, attr)
        self.items: deque[bytes] = deque()

    # -- the three operations ----------------------------------------------------------------
    def push(self, value: bytes, flags: int) -> None:
        if flags & BPF_NOEXIST or flags > BPF_EXIST:
            raise oserror(errno.EINVAL)
        with self.lock:
            if len(self.items) >= self.max_entries:
                if not flags & BPF_EXIST:
                    raise oserror(errno.E2BIG)
                self.items.popleft()  # both queue and stack drop their oldest element
            self.items.append(bytes(value[:self.value_size]).ljust(self.value_size, b"\0"))

    def pop(self, delete: bool) -> bytes:
        with self.lock:
            if not self.items:
                raise oserror(errno.ENOENT)
            if not delete:
                return self.items[-1] if self.lifo else self.items[0]
            return self.items.pop() if self.lifo else self.items.popleft()

    # -- syscall side --------------------------------------------------------------------------
    def sys_lookup(self, key: bytes | None, flags: int) -> bytes:
        return self.pop(delete=False)

    def sys_update(self, key: bytes | None, value: bytes, flags: int, map_file: File | None) -> None:
        self.push(value, flags)

    def sys_delete(self, key: bytes | None) -> None:
        raise oserror(errno.EINVAL)

    def sys_get_next_key(self, key: bytes | None) -> bytes:
        raise oserror(errno.EINVAL)

    def sys_lookup_and_delete(self, key: bytes | None, flags: int) -> bytes:
        return self.pop(delete=True)

    # -- program side (bpf_map_push_elem / pop / peek) -------------------------------------------
    def prog_push(self, value: bytes, flags: int = 0) -> int:
        try:
            self.push(bytes(value), flags)
        except OSError as e:
            return -e.errno
        return 0

    def prog_pop(self) -> bytes | int:
        try:
            return self.pop(delete=True)
        except OSError as e:
            return -e.errno

    def prog_peek(self) -> bytes | int:
        try:
            return self.pop(delete=False)
        except OSError as e:
            return -e.errno

    def __len__(self) -> int:
        return len(self.items)


class StackMap(QueueMap):
    map_type = MapType.STACK
    lifo = True
