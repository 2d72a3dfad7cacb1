"""The loader's exceptions: one clear class per failure a user can act on.

Linux errors from map access keep their errno (OSError subclasses or plain OSError), so
callers can test ``e.errno`` exactly as with ``os`` functions; a missing key is KeyError,
as for a dict.
"""

from __future__ import annotations

import errno as _errno


class EbpfError(Exception):
    """Base class of everything the loader raises on its own account."""


class ProgramError(EbpfError):
    """A program cannot be loaded/attached in its current state (not loaded, wrong kind...)."""


class VerifierError(ProgramError):
    """BPF_PROG_LOAD was rejected; ``log`` holds the verifier's log, ``errno`` its errno."""

    def __init__(self, message: str, log: str = "", errno: int = _errno.EINVAL) -> None:
        self.message = message
        self.log = log
        self.errno = errno
        text = message
        if log.strip():
            text += "\nverifier log:\n" + log.rstrip()
        super().__init__(text)


class AttachError(ProgramError):
    """perf_event_open / link creation / tracefs write failed while attaching a program."""

    def __init__(self, message: str, errno: int | None = None) -> None:
        self.errno = errno
        super().__init__(message)


class MapError(EbpfError):
    """A map cannot be created, found, or used as the requested type."""

    def __init__(self, message: str, errno: int | None = None) -> None:
        self.errno = errno
        super().__init__(message)


class MapTypeError(MapError, TypeError):
    """A typed wrapper was given a map of another BPF map type."""


class BtfError(EbpfError):
    """BTF could not be loaded or a type could not be decoded."""


class UnsupportedError(EbpfError):
    """A program or map kind the loader parses but cannot attach/create on this kernel."""


def oserror(code: int, what: str = "") -> OSError:
    """OSError(errno) with the kernel's message, as ``os`` functions raise it."""
    import os

    msg = os.strerror(code)
    return OSError(code, f"{what}: {msg}" if what else msg)
