"""BPF links: BPF_LINK_CREATE for perf events (what Aya uses on newer kernels) and LINK_DETACH.

A perf-event link attaches a tracing program to a kprobe / tracepoint perf event, like
PERF_EVENT_IOC_SET_BPF, but the attachment lives as long as the link: the link holds a reference
to the perf event's file (as Linux's bpf_perf_link does), so closing the perf fd — or pinning
the link and closing every fd — leaves the program attached; the link's last reference going
detaches it. Perf links have no LINK_DETACH operation in Linux: EOPNOTSUPP.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from ..fs.file import File, oserror
from ..task import current
from ..uapi.bpf import AttachType, BpfCmd, BpfLinkInfo, LinkCreateAttr, LinkDetachAttr, LinkType
from .syscall import bpf_command, check_attr_unused_zero

if TYPE_CHECKING:
    from ..kernel import Kernel


class BpfLink:
    def __init__(self, kernel: Kernel, link_type: int, prog, target) -> None:
        self.kernel = kernel
        self.type = link_type
        self.prog = prog
        self.target = target
        self.id = kernel.ids["link"].alloc(self)
        self.refs = 0

    def detach(self) -> None:
        """BPF_LINK_DETACH, for link types that have it (perf links do not)."""
        raise oserror(errno.EOPNOTSUPP)

    def release_target(self) -> None:
        """The link's last reference went: detach the program and drop the perf event."""
        if self.target is not None:
            target, self.target = self.target, None
            target.detach_prog()
            target.put()

    def open_file(self, flags: int = 0) -> File:
        return BpfLinkFile(self)


class BpfLinkFile(File):
    name = "bpf_link"
    is_bpf_link = True
    info_type = BpfLinkInfo

    def __init__(self, link: BpfLink) -> None:
        super().__init__()
        self.link = link
        link.refs += 1

    def bpf_info(self, user: BpfLinkInfo) -> BpfLinkInfo:
        return BpfLinkInfo(type=self.link.type, id=self.link.id, prog_id=self.link.prog.id)

    def release(self) -> None:
        self.link.refs -= 1
        if self.link.refs == 0:
            self.link.release_target()
            self.link.kernel.ids["link"].remove(self.link.id)


@bpf_command(BpfCmd.LINK_CREATE)
def link_create(kernel: Kernel, attr: memoryview) -> int:
    a = LinkCreateAttr.from_attr(attr)
    task = current()
    prog_file = task.files.get(a.prog_fd)
    prog = getattr(prog_file, "prog", None)
    if prog is None:
        raise oserror(errno.EINVAL)
    target = task.files.get(a.target_fd)
    if a.attach_type != AttachType.PERF_EVENT or not hasattr(target, "attach_prog"):
        raise oserror(errno.EINVAL)
    target.attach_prog(prog)
    link = BpfLink(kernel, LinkType.PERF_EVENT, prog, target.get())
    return task.files.install(BpfLinkFile(link))


@bpf_command(BpfCmd.LINK_DETACH)
def link_detach(kernel: Kernel, attr: memoryview) -> int:
    check_attr_unused_zero(attr, LinkDetachAttr.link_fd.offset + 4)
    a = LinkDetachAttr.from_attr(attr)
    file = current().files.get(a.link_fd)
    link = getattr(file, "link", None)
    if link is None:
        raise oserror(errno.EINVAL)
    link.detach()
    return 0
