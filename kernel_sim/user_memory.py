"""A simulated task's user memory: real process memory, so pointers are real addresses.

Syscall arguments that point to user memory (file names, buffers, structs) are placed in a
per-task arena; BPF programs read them with bpf_probe_read_user(_str) through the same
copy_from_user as everything else. The arena is a ring: recent allocations stay valid for a
while after their syscall, as a process's stack and heap would.
"""

from __future__ import annotations

import ctypes
import threading


class UserMemory:
    def __init__(self, size: int = 1 << 16) -> None:
        self.size = size
        self.buf = ctypes.create_string_buffer(size)
        self.base = ctypes.addressof(self.buf)
        self._next = 0
        self._lock = threading.Lock()

    def alloc(self, n: int, align: int = 8) -> int:
        n = max(1, n)
        if n > self.size:
            raise ValueError(f"user allocation of {n} bytes exceeds the arena")
        with self._lock:
            off = (self._next + align - 1) // align * align
            if off + n > self.size:
                off = 0
            self._next = off + n
        return self.base + off

    def put(self, data: bytes) -> int:
        addr = self.alloc(len(data))
        ctypes.memmove(addr, data, len(data))
        return addr

    def put_str(self, s: str | bytes) -> int:
        raw = s.encode() if isinstance(s, str) else s
        return self.put(raw + b"\0")

    def get(self, addr: int, n: int) -> bytes:
        return ctypes.string_at(addr, n)
