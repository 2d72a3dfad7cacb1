"""The user-visible BPF log (verifier and BTF): Linux's attribute rules and truncation.

Linux (kernel/bpf/log.c, 6.4+): log_buf and log_size come together, a buffer needs a level,
the level has only known bits; by default the log rotates (the buffer keeps the tail), with
BPF_LOG_FIXED it keeps the head. The full length plus the NUL goes back in log_true_size, and
a log that did not fit turns the command's result into ENOSPC.
"""

from __future__ import annotations

import errno

from ..fs.file import oserror
from ..usermem import copy_to_user

BPF_LOG_LEVEL1 = 1
BPF_LOG_LEVEL2 = 2
BPF_LOG_STATS = 4
BPF_LOG_FIXED = 8
BPF_LOG_MASK = BPF_LOG_LEVEL1 | BPF_LOG_LEVEL2 | BPF_LOG_STATS | BPF_LOG_FIXED


class VerifierLog:
    def __init__(self, level: int, buf: int, size: int) -> None:
        if bool(buf) != bool(size) or (buf and level == 0) or level & ~BPF_LOG_MASK or size > 0xFFFFFFFF >> 2:
            raise oserror(errno.EINVAL)
        self.level = level
        self.buf = buf
        self.size = size
        self._parts: list[str] = []

    @property
    def enabled(self) -> bool:
        return bool(self.level)

    def write(self, text: str) -> None:
        if self.level:
            self._parts.append(text)

    def text(self) -> str:
        return "".join(self._parts)

    def finish(self, attr: memoryview | None = None, layout=None, true_size_field: str | None = None) -> None:
        """Copy the log to the user buffer, write log_true_size back; ENOSPC if it was cut."""
        if not self.level:
            return
        data = self.text().encode()
        true_size = len(data) + 1
        if attr is not None and layout is not None and true_size_field:
            field = getattr(layout, true_size_field)
            if field.offset + 4 <= len(attr):
                attr[field.offset : field.offset + 4] = true_size.to_bytes(4, "little")
        if not self.buf:
            return
        room = self.size - 1
        kept = data if len(data) <= room else (data[:room] if self.level & BPF_LOG_FIXED else data[len(data) - room :])
        copy_to_user(self.buf, kept + b"\0")
        if true_size > self.size:
            raise oserror(errno.ENOSPC)
