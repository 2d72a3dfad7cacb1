"""Links: what attaching a program returns; detaching is closing them (Aya's link types).

A link owns the descriptors that keep a program attached: a BPF link fd (LINK_CREATE,
RAW_TRACEPOINT_OPEN), a perf event fd (kprobe/uprobe/tracepoint events, attached by link or
by ioctl SET_BPF), and for the old tracefs path the probe event it created in kprobe_events
or uprobe_events, which is removed again on detach. Links detach on ``detach()``, on ``with``
exit and when their program (or the Ebpf object) is closed.
"""

from __future__ import annotations

import ctypes
import socket
from collections.abc import Callable

from kernel_sim.uapi.bpf import BpfCmd, ObjPinAttr, make_attr
from kernel_sim.uapi.epoll import O_APPEND, O_WRONLY
from kernel_sim.uapi.perf import PERF_EVENT_IOC_DISABLE


class Link:
    """Base: detach once; later detaches are no-ops."""

    kind = "link"

    def __init__(self, sys) -> None:
        self.sys = sys
        self.detached = False
        self.on_detach: list[Callable[[Link], None]] = []

    def _release(self) -> None:
        raise NotImplementedError

    def detach(self) -> None:
        if self.detached:
            return
        self.detached = True
        try:
            self._release()
        finally:
            for cb in self.on_detach:
                cb(self)

    close = detach

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.detach()

    @property
    def fd(self) -> int:
        return -1

    @property
    def bpf_link_fd(self) -> int | None:
        """The BPF link fd, for links that are kernel BPF links (pinnable); None otherwise."""
        return None

    def pin(self, path: str) -> None:
        """BPF_OBJ_PIN the link in bpffs: it then outlives this process's fds until unlinked."""
        fd = self.bpf_link_fd
        if fd is None or self.detached:
            raise ValueError(f"{type(self).__name__} is not a BPF link that can be pinned")
        pbuf = ctypes.create_string_buffer(path.encode())
        self.sys.bpf(BpfCmd.OBJ_PIN, make_attr(ObjPinAttr, pathname=ctypes.addressof(pbuf), bpf_fd=fd))


class FdLink(Link):
    """A BPF link fd (BPF_LINK_CREATE, BPF_RAW_TRACEPOINT_OPEN): closing it detaches."""

    kind = "fd"

    def __init__(self, sys, link_fd: int) -> None:
        super().__init__(sys)
        self.link_fd = link_fd

    @property
    def fd(self) -> int:
        return self.link_fd

    @property
    def bpf_link_fd(self) -> int | None:
        return self.link_fd if self.link_fd >= 0 else None

    def _release(self) -> None:
        self.sys.close(self.link_fd)
        self.link_fd = -1

    def __repr__(self) -> str:
        return f"<FdLink fd={self.link_fd}{' detached' if self.detached else ''}>"


class ProbeEvent:
    """A probe created by writing to tracefs kprobe_events/uprobe_events (the < 5.4 path)."""

    def __init__(self, sys, events_file: str, group: str, name: str) -> None:
        self.sys = sys
        self.events_file = events_file
        self.group = group
        self.name = name

    def remove(self) -> None:
        fd = self.sys.openat(self.events_file, O_WRONLY | O_APPEND)
        try:
            self.sys.write(fd, f"-:{self.group}/{self.name}\n".encode())
        finally:
            self.sys.close(fd)


class PerfLink(Link):
    """A perf event with the program on it: via a BPF perf link, or via ioctl SET_BPF + ENABLE."""

    kind = "perf"

    def __init__(self, sys, perf_fd: int, link_fd: int | None = None, probe_event: ProbeEvent | None = None) -> None:
        super().__init__(sys)
        self.perf_fd = perf_fd
        self.link_fd = link_fd
        self.probe_event = probe_event

    @property
    def fd(self) -> int:
        return self.link_fd if self.link_fd is not None else self.perf_fd

    @property
    def bpf_link_fd(self) -> int | None:
        return self.link_fd

    @property
    def attach_mode(self) -> str:
        return "perf_link" if self.link_fd is not None else "ioctl"

    def _release(self) -> None:
        try:
            if self.link_fd is not None:
                self.sys.close(self.link_fd)
                self.link_fd = None
            else:
                try:
                    self.sys.ioctl(self.perf_fd, PERF_EVENT_IOC_DISABLE, 0)
                except OSError:
                    pass
            self.sys.close(self.perf_fd)
            self.perf_fd = -1
        finally:
            if self.probe_event is not None:
                try:
                    self.probe_event.remove()
                except OSError:
                    pass

    def __repr__(self) -> str:
        return f"<PerfLink perf_fd={self.perf_fd} mode={self.attach_mode}{' detached' if self.detached else ''}>"


class SocketLink(Link):
    """A socket filter attached with SO_ATTACH_BPF; detaching is SO_DETACH_BPF."""

    kind = "socket"
    SO_ATTACH_BPF = 50
    SO_DETACH_BPF = 27

    def __init__(self, sys, sock: socket.socket) -> None:
        super().__init__(sys)
        self.sock = sock

    @property
    def fd(self) -> int:
        return self.sock.fileno()

    def _release(self) -> None:
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, self.SO_DETACH_BPF, 0)
        except OSError:
            pass
