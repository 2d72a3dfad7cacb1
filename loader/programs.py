"""Programs: BPF_PROG_LOAD and the attach paths of each program kind, Aya's way.

A Program holds its relocated instructions (map fds already in the lddw instructions) and
loads on ``load()``; ``attach(...)`` returns a Link. The attach paths:

- KProbe / UProbe: on kernels >= PERF_PROBE_MIN_VERSION, perf_event_open on the kprobe/uprobe
  PMU (type from sysfs, retprobe bit from its format file, config1 = pointer to the symbol or
  path, config2 = offset); below it, a probe event written to tracefs kprobe_events /
  uprobe_events and opened as a tracepoint.
- TracePoint: perf_event_open(PERF_TYPE_TRACEPOINT, id from tracefs events/CAT/NAME/id).
- The perf event then gets the program through a BPF perf link (BPF_LINK_CREATE,
  BPF_PERF_EVENT) when the kernel has perf links, else ioctl SET_BPF + ENABLE.
- RawTracePoint: BPF_RAW_TRACEPOINT_OPEN. SocketFilter: SO_ATTACH_BPF on a real socket.
  Xdp: BPF_LINK_CREATE with BPF_XDP on an ifindex.
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import shutil
import socket
import weakref
from typing import TYPE_CHECKING

from kernel_sim.uapi.bpf import (
    BPF_LOG_LEVEL1,
    AttachType,
    BpfCmd,
    BpfProgInfo,
    InfoAttr,
    LinkCreateAttr,
    ObjPinAttr,
    ProgLoadAttr,
    RawTracepointAttr,
    make_attr,
)
from kernel_sim.uapi.epoll import O_APPEND, O_RDONLY, O_WRONLY
from kernel_sim.uapi.perf import (
    PERF_EVENT_IOC_ENABLE,
    PERF_EVENT_IOC_SET_BPF,
    PERF_FLAG_FD_CLOEXEC,
    PerfEventAttr,
    PerfType,
)

from .errors import AttachError, ProgramError, UnsupportedError, VerifierError
from .links import FdLink, Link, PerfLink, ProbeEvent, SocketLink

if TYPE_CHECKING:
    from loader.obj.model import ProgramDef

# Kernels below this release get probes through tracefs (the product's threshold; Aya's is 4.17).
PERF_PROBE_MIN_VERSION = (5, 4, 0)
TRACEFS_ROOTS = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
PMU_ROOT = "/sys/bus/event_source/devices"
LOG_SIZE_START = 1 << 20
LOG_SIZE_MAX = 1 << 28


# -- small reads through the seam ----------------------------------------------------------------
def read_text(sys, path: str) -> str:
    fd = sys.openat(path, O_RDONLY)
    try:
        out = bytearray()
        while chunk := sys.read(fd, 65536):
            out += chunk
        return out.decode(errors="replace")
    finally:
        sys.close(fd)


def write_text(sys, path: str, text: str) -> None:
    fd = sys.openat(path, O_WRONLY | O_APPEND)
    try:
        sys.write(fd, text.encode())
    finally:
        sys.close(fd)


def parse_release(release: str) -> tuple[int, int, int]:
    """(major, minor, patch) from a uname release such as "6.18.44-fc-v657" or "5.3.0"."""
    m = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", release.strip())
    if not m:
        raise ProgramError(f"cannot parse kernel release {release!r}")
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


def kernel_version(sys) -> tuple[int, int, int]:
    """The running kernel's version as Aya reads it: Ubuntu's /proc/version_signature, else uname."""
    try:
        sig = read_text(sys, "/proc/version_signature").split()
        if sig:
            return parse_release(sig[-1])
    except (OSError, ProgramError):
        pass
    return parse_release(sys.uname().release)


def kernel_version_code(version: tuple[int, int, int]) -> int:
    """LINUX_VERSION_CODE (patch capped at 255, as the kernel does)."""
    major, minor, patch = version
    return (major << 16) | (minor << 8) | min(patch, 255)


def tracefs_root(sys) -> str:
    for name in ("kprobe_events", "available_events"):
        for root in TRACEFS_ROOTS:
            try:
                sys.close(sys.openat(f"{root}/{name}", O_RDONLY))
                return root
            except OSError:
                continue
    raise AttachError("tracefs is not mounted (tried " + ", ".join(TRACEFS_ROOTS) + ")", errno.ENOENT)


def tracepoint_id(sys, category: str, name: str) -> int:
    """The id tracefs gives events/CATEGORY/NAME/id."""
    last: OSError | None = None
    for root in TRACEFS_ROOTS:
        try:
            return int(read_text(sys, f"{root}/events/{category}/{name}/id").strip())
        except OSError as e:
            last = e
    raise AttachError(f"tracepoint {category}/{name} not found in tracefs: {last}",
                      last.errno if last else errno.ENOENT)


def pmu_type(sys, pmu: str) -> int:
    try:
        return int(read_text(sys, f"{PMU_ROOT}/{pmu}/type").strip())
    except OSError as e:
        raise AttachError(f"no {pmu} PMU ({PMU_ROOT}/{pmu}/type: {e.strerror})", e.errno) from None


def retprobe_bit(sys, pmu: str) -> int:
    """The config bit that makes a probe a return probe ("config:N"); bit 0 when the file is absent."""
    try:
        text = read_text(sys, f"{PMU_ROOT}/{pmu}/format/retprobe").strip()
    except OSError:
        return 0
    m = re.fullmatch(r"config:(\d+)", text)
    if not m:
        raise AttachError(f"unexpected {pmu} retprobe format {text!r}")
    return int(m.group(1))


def perf_event_open_tracepoint(sys, tp_id: int, pid: int | None = None) -> int:
    attr = PerfEventAttr(type=PerfType.TRACEPOINT, size=ctypes.sizeof(PerfEventAttr), config=tp_id,
                         sample_period=1, wakeup_events=1)
    cpu = -1 if pid is not None else 0
    return sys.perf_event_open(bytearray(bytes(attr)), -1 if pid is None else pid, cpu, -1, PERF_FLAG_FD_CLOEXEC)


def perf_event_open_probe(sys, pmu: str, retprobe: bool, target: str, offset: int, pid: int | None) -> int:
    """perf_event_open on the kprobe/uprobe PMU: config1 -> NUL-terminated target, config2 = offset."""
    name_buf = ctypes.create_string_buffer(target.encode())
    attr = PerfEventAttr(type=pmu_type(sys, pmu), size=ctypes.sizeof(PerfEventAttr),
                         config=(1 << retprobe_bit(sys, pmu)) if retprobe else 0,
                         config1=ctypes.addressof(name_buf), config2=offset)
    cpu = -1 if pid is not None else 0
    try:
        return sys.perf_event_open(bytearray(bytes(attr)), -1 if pid is None else pid, cpu, -1, PERF_FLAG_FD_CLOEXEC)
    finally:
        del name_buf


# LINK_CREATE errnos that mean "this kernel has no perf links" (524 is the kernel's ENOTSUPP).
_NO_PERF_LINK = frozenset({errno.EINVAL, errno.EOPNOTSUPP, errno.ENOSYS, 524})
# Cached per kernel object: whether BPF_LINK_CREATE accepts BPF_PERF_EVENT (Aya probes it once).
_PERF_LINK_SUPPORT: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _perf_link_known(sys) -> bool:
    try:
        return _PERF_LINK_SUPPORT.get(sys, True)
    except TypeError:  # not weak-referenceable: probe every time
        return True


def _perf_link_note(sys, supported: bool) -> None:
    try:
        _PERF_LINK_SUPPORT[sys] = supported
    except TypeError:
        pass


def perf_attach(sys, prog_fd: int, perf_fd: int, probe_event: ProbeEvent | None = None,
                allow_link: bool = True) -> PerfLink:
    """Put the program on the perf event: a perf link where supported, else SET_BPF + ENABLE."""
    if allow_link and _perf_link_known(sys):
        attr = make_attr(LinkCreateAttr, prog_fd=prog_fd, target_fd=perf_fd, attach_type=AttachType.PERF_EVENT)
        try:
            link_fd = sys.bpf(BpfCmd.LINK_CREATE, attr)
            _perf_link_note(sys, True)
            return PerfLink(sys, perf_fd, link_fd, probe_event)
        except OSError as e:
            if e.errno not in _NO_PERF_LINK:
                raise
            _perf_link_note(sys, False)
    sys.ioctl(perf_fd, PERF_EVENT_IOC_SET_BPF, prog_fd)
    sys.ioctl(perf_fd, PERF_EVENT_IOC_ENABLE, 0)
    return PerfLink(sys, perf_fd, None, probe_event)


_probe_seq = 0


def create_probe_event(sys, kind: str, retprobe: bool, target: str, offset: int) -> tuple[ProbeEvent, int]:
    """The tracefs path: define a probe event, return it and its tracepoint id.

    kind "kprobe": ``p:kprobes/NAME SYMBOL[+OFFSET]`` into kprobe_events;
    kind "uprobe": ``p:uprobes/NAME PATH:0xOFFSET`` into uprobe_events ("r:" for return probes).
    """
    global _probe_seq
    _probe_seq += 1
    root = tracefs_root(sys)
    group = "kprobes" if kind == "kprobe" else "uprobes"
    base = re.sub(r"[^A-Za-z0-9_]", "_", os.path.basename(target))
    name = f"aya_{sys.getpid()}_{'r' if retprobe else 'p'}_{base}_{_probe_seq}"[:60]
    if kind == "kprobe":
        where = f"{target}+{offset}" if offset else target
    else:
        where = f"{target}:{offset:#x}"
    events_file = f"{root}/{kind}_events"
    try:
        write_text(sys, events_file, f"{'r' if retprobe else 'p'}:{group}/{name} {where}\n")
    except OSError as e:
        raise AttachError(f"cannot create {kind} event for {where}: {e.strerror}", e.errno) from None
    event = ProbeEvent(sys, events_file, group, name)
    try:
        tp_id = int(read_text(sys, f"{root}/events/{group}/{name}/id").strip())
    except OSError as e:
        event.remove()
        raise AttachError(f"{kind} event {group}/{name} has no id: {e.strerror}", e.errno) from None
    return event, tp_id


class Program:
    """A program of the object: relocated instructions, loaded on demand, attachable."""

    def __init__(self, sys, definition: ProgramDef, insns: bytes, *, license: str = "GPL", kern_version: int = 0,
                 btf_fd: int | None = None) -> None:
        self.sys = sys
        self.definition = definition
        self.name = definition.name
        self.section = definition.section
        self.insns = insns
        self.license = license  # as the object says: Linux decides what a missing licence allows
        self.kern_version = kern_version
        self.btf_fd = btf_fd
        self.fd: int | None = None
        self.links: list[Link] = []
        self.verifier_log = ""
        self.on_load: list = []  # callbacks(program) run after a successful load (prog-array slots)
        self.attach_btf_id = 0  # BTF-attached kinds (fentry, tp_btf, lsm): the kernel type they hook

    # -- description -------------------------------------------------------------------------------
    @property
    def prog_type(self) -> int:
        return int(self.definition.prog_type)

    @property
    def expected_attach_type(self) -> int:
        eat = self.definition.expected_attach_type
        return int(eat) if eat is not None else 0

    @property
    def insn_count(self) -> int:
        return len(self.insns) // 8

    @property
    def loaded(self) -> bool:
        return self.fd is not None

    @property
    def kernel_name(self) -> str:
        """The name BPF_PROG_LOAD gets: 15 characters of [A-Za-z0-9_.] (as Aya truncates)."""
        return "".join(c if c.isalnum() or c in "_." else "_" for c in self.name)[:15]

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} section={self.section!r} fd={self.fd}>"

    # -- load -------------------------------------------------------------------------------------------
    def _prog_load(self, log_level: int, log_size: int, with_btf: bool) -> tuple[int, str, int]:
        insns = ctypes.create_string_buffer(self.insns, len(self.insns))
        lic = ctypes.create_string_buffer(self.license.encode())
        log = ctypes.create_string_buffer(log_size) if log_size else None
        fields = dict(prog_type=self.prog_type, insn_cnt=self.insn_count, insns=ctypes.addressof(insns),
                      license=ctypes.addressof(lic), kern_version=self.kern_version,
                      prog_name=self.kernel_name.encode(), expected_attach_type=self.expected_attach_type,
                      attach_btf_id=self.attach_btf_id)
        keep = []
        if log is not None:
            fields.update(log_level=log_level, log_size=log_size, log_buf=ctypes.addressof(log))
        d = self.definition
        if with_btf and self.btf_fd is not None and d.func_info:
            fi = ctypes.create_string_buffer(d.func_info_bytes())
            keep.append(fi)
            fields.update(prog_btf_fd=self.btf_fd, func_info_rec_size=8, func_info=ctypes.addressof(fi),
                          func_info_cnt=len(d.func_info))
            if d.line_info:
                li = ctypes.create_string_buffer(d.line_info_bytes())
                keep.append(li)
                fields.update(line_info_rec_size=16, line_info=ctypes.addressof(li), line_info_cnt=len(d.line_info))
        attr = make_attr(ProgLoadAttr, **fields)
        try:
            fd = self.sys.bpf(BpfCmd.PROG_LOAD, attr)
            text = log.value.decode(errors="replace") if log is not None else ""
            return fd, text, 0
        except OSError as e:
            text = log.value.decode(errors="replace") if log is not None else ""
            return -1, text, e.errno or errno.EINVAL

    def load(self) -> None:
        """BPF_PROG_LOAD; on rejection VerifierError with the verifier's log (Aya retries with a log)."""
        if self.fd is not None:
            raise ProgramError(f"program {self.name!r} is already loaded")
        with_btf = self.btf_fd is not None
        fd, log, err = self._prog_load(0, 0, with_btf)
        if fd < 0 and with_btf and err == errno.EINVAL:
            fd2, _log2, _err2 = self._prog_load(0, 0, False)  # old kernels reject func/line info
            if fd2 >= 0:
                fd, err = fd2, 0
        size = LOG_SIZE_START
        while fd < 0:
            _fd, log, err2 = self._prog_load(BPF_LOG_LEVEL1, size, with_btf)
            if _fd >= 0:  # passed with a log (it should not differ, but accept it)
                fd = _fd
                break
            if err2 == errno.ENOSPC and size < LOG_SIZE_MAX:
                size *= 4
                continue
            self.verifier_log = log
            raise VerifierError(f"the kernel rejected program {self.name!r} ({os.strerror(err or err2)})", log,
                                err or err2)
        self.fd = fd
        for callback in self.on_load:
            callback(self)

    def unload(self) -> None:
        """Detach every link and close the program fd."""
        for link in list(self.links):
            link.detach()
        self.links.clear()
        if self.fd is not None:
            fd, self.fd = self.fd, None
            self.sys.close(fd)

    close = unload

    def _need_fd(self) -> int:
        if self.fd is None:
            raise ProgramError(f"program {self.name!r} is not loaded: call load() first")
        return self.fd

    def info(self) -> BpfProgInfo:
        info = BpfProgInfo()
        attr = make_attr(InfoAttr, bpf_fd=self._need_fd(), info_len=ctypes.sizeof(info), info=ctypes.addressof(info))
        self.sys.bpf(BpfCmd.OBJ_GET_INFO_BY_FD, attr)
        return info

    def pin(self, path: str) -> None:
        pbuf = ctypes.create_string_buffer(path.encode())
        self.sys.bpf(BpfCmd.OBJ_PIN, make_attr(ObjPinAttr, pathname=ctypes.addressof(pbuf), bpf_fd=self._need_fd()))

    def _track(self, link: Link) -> Link:
        self.links.append(link)
        link.on_detach.append(lambda lk: self.links.remove(lk) if lk in self.links else None)
        return link

    def attach(self, *args, **kwargs) -> Link:
        raise UnsupportedError(f"attaching {self.definition.kind} programs ({self.section}) is not supported")

    def _attach_perf(self, perf_fd: int, probe_event: ProbeEvent | None = None, allow_link: bool = True) -> Link:
        try:
            link = perf_attach(self.sys, self._need_fd(), perf_fd, probe_event, allow_link)
        except OSError as e:
            self.sys.close(perf_fd)
            if probe_event is not None:
                probe_event.remove()
            raise AttachError(f"cannot attach {self.name!r} to its perf event: {e.strerror}", e.errno) from None
        return self._track(link)


class _ProbeProgram(Program):
    PMU = "kprobe"

    @property
    def retprobe(self) -> bool:
        return self.definition.is_retprobe

    def _attach_probe(self, target: str, offset: int, pid: int | None) -> Link:
        self._need_fd()
        version = kernel_version(self.sys)
        if version < PERF_PROBE_MIN_VERSION:
            probe_event, tp_id = create_probe_event(self.sys, self.PMU, self.retprobe, target, offset)
            try:
                perf_fd = perf_event_open_tracepoint(self.sys, tp_id, pid)
            except OSError as e:
                probe_event.remove()
                raise AttachError(f"perf_event_open of {self.PMU} event for {target!r}: {e.strerror}", e.errno) from None
            return self._attach_perf(perf_fd, probe_event, allow_link=False)
        try:
            perf_fd = perf_event_open_probe(self.sys, self.PMU, self.retprobe, target, offset, pid)
        except OSError as e:
            raise AttachError(f"perf_event_open of {self.PMU} {target!r}+{offset}: {e.strerror}", e.errno) from None
        return self._attach_perf(perf_fd)


class KProbe(_ProbeProgram):
    """kprobe/ and kretprobe/ programs."""

    PMU = "kprobe"

    def attach(self, fn_name: str | None = None, offset: int = 0) -> Link:
        fn_name = fn_name or _default_target(self.definition)
        if not fn_name:
            raise AttachError(f"kprobe {self.name!r} needs a function name")
        return self._attach_probe(fn_name, offset, None)


class UProbe(_ProbeProgram):
    """uprobe/ and uretprobe/ programs: a path and a symbol or an offset in that file."""

    PMU = "uprobe"

    def attach(self, target: str | None = None, symbol: str | int | None = None, offset: int = 0,
               pid: int | None = None) -> Link:
        if target is None:  # from the section: uprobe/PATH:SYMBOL[+OFFSET]
            default = _default_target(self.definition)
            if not isinstance(default, str) or ":" not in default:
                raise AttachError(f"uprobe {self.name!r} needs a target binary")
            target, _, spec = default.rpartition(":")
            sym, plus, off = spec.partition("+")
            symbol = sym or None
            offset += int(off, 0) if plus else 0
        path = resolve_binary(target)
        if isinstance(symbol, int):
            file_offset = symbol + offset
        elif symbol:
            file_offset = symbol_file_offset(path, symbol) + offset
        else:
            file_offset = offset
        return self._attach_probe(path, file_offset, pid)


class TracePoint(Program):
    def attach(self, category: str | None = None, name: str | None = None) -> Link:
        if category is not None and name is None and "/" in category:
            category, name = category.split("/", 1)
        if category is None or name is None:
            target = _default_target(self.definition)
            if not isinstance(target, tuple):
                raise AttachError(f"tracepoint {self.name!r} needs a category and a name")
            category, name = target
        self._need_fd()
        tp_id = tracepoint_id(self.sys, category, name)
        try:
            perf_fd = perf_event_open_tracepoint(self.sys, tp_id)
        except OSError as e:
            raise AttachError(f"perf_event_open of tracepoint {category}/{name}: {e.strerror}", e.errno) from None
        return self._attach_perf(perf_fd)


class RawTracePoint(Program):
    def attach(self, name: str | None = None) -> Link:
        name = name or _default_target(self.definition)
        if not isinstance(name, str) or not name:
            raise AttachError(f"raw tracepoint {self.name!r} needs a tracepoint name")
        nbuf = ctypes.create_string_buffer(name.encode())
        attr = make_attr(RawTracepointAttr, name=ctypes.addressof(nbuf), prog_fd=self._need_fd())
        try:
            fd = self.sys.bpf(BpfCmd.RAW_TRACEPOINT_OPEN, attr)
        except OSError as e:
            raise AttachError(f"raw tracepoint {name!r}: {e.strerror}", e.errno) from None
        return self._track(FdLink(self.sys, fd))


class PerfEventProgram(Program):
    """perf_event programs: attach to a perf event the caller describes (type, config)."""

    def attach(self, perf_type: int, config: int, *, sample_period: int = 0, sample_freq: int = 0,
               pid: int = -1, cpu: int = 0) -> Link:
        flags = 1 << 10 if sample_freq else 0  # freq bit
        attr = PerfEventAttr(type=perf_type, size=ctypes.sizeof(PerfEventAttr), config=config,
                             sample_period=sample_freq or sample_period, flags=flags)
        try:
            perf_fd = self.sys.perf_event_open(bytearray(bytes(attr)), pid, cpu, -1, PERF_FLAG_FD_CLOEXEC)
        except OSError as e:
            raise AttachError(f"perf_event_open({perf_type}, {config}): {e.strerror}", e.errno) from None
        return self._attach_perf(perf_fd)


class SocketFilter(Program):
    def attach(self, sock: socket.socket) -> Link:
        if getattr(self.sys, "kind", "") != "linux":
            raise UnsupportedError("socket filters attach to real sockets: use the linux kernel")
        sock.setsockopt(socket.SOL_SOCKET, SocketLink.SO_ATTACH_BPF, self._need_fd())
        return self._track(SocketLink(self.sys, sock))


class Xdp(Program):
    def attach(self, interface: str | int, flags: int = 0) -> Link:
        ifindex = interface if isinstance(interface, int) else socket.if_nametoindex(interface)
        attr = make_attr(LinkCreateAttr, prog_fd=self._need_fd(), target_fd=ifindex, attach_type=AttachType.XDP,
                         flags=flags)
        try:
            fd = self.sys.bpf(BpfCmd.LINK_CREATE, attr)
        except OSError as e:
            raise AttachError(f"XDP attach to {interface!r}: {e.strerror}", e.errno) from None
        return self._track(FdLink(self.sys, fd))


# enum bpf_attach_type values newer than the uapi enums here (Linux 6.6): tcx links.
BPF_TCX_INGRESS = 46
BPF_TCX_EGRESS = 47


class SchedClassifier(Program):
    """tc classifiers, attached as tcx links (BPF_LINK_CREATE on an ifindex, Linux >= 6.6)."""

    def attach(self, interface: str | int, direction: str = "ingress") -> Link:
        attach_type = {"ingress": BPF_TCX_INGRESS, "egress": BPF_TCX_EGRESS}.get(direction)
        if attach_type is None:
            raise AttachError(f"tc direction must be 'ingress' or 'egress', not {direction!r}")
        try:
            ifindex = interface if isinstance(interface, int) else socket.if_nametoindex(interface)
        except OSError as e:
            raise AttachError(f"no interface {interface!r}", e.errno) from None
        attr = make_attr(LinkCreateAttr, prog_fd=self._need_fd(), target_fd=ifindex, attach_type=attach_type)
        try:
            fd = self.sys.bpf(BpfCmd.LINK_CREATE, attr)
        except OSError as e:
            raise AttachError(f"tcx {direction} attach to {interface!r}: {e.strerror}", e.errno) from None
        return self._track(FdLink(self.sys, fd))


class _BtfAttached(Program):
    """Programs the kernel binds to a BTF type at load (attach_btf_id) and attaches with
    BPF_RAW_TRACEPOINT_OPEN (name NULL), as Aya does for fentry/fexit/tp_btf/lsm."""

    BTF_PREFIX = ""
    BTF_KIND = 12  # FUNC

    def target_name(self, target: str | None) -> str:
        name = target or _default_target(self.definition)
        if not isinstance(name, str) or not name:
            raise ProgramError(f"program {self.name!r} ({self.section}) names no kernel function to attach to")
        return self.BTF_PREFIX + name

    def load(self, target: str | None = None) -> None:
        """Resolve the target in the kernel's BTF (/sys/kernel/btf/vmlinux), then BPF_PROG_LOAD."""
        from .core_reloc import kernel_target

        if self.fd is not None:
            raise ProgramError(f"program {self.name!r} is already loaded")
        name = self.target_name(target)
        kernel = kernel_target(self.sys)
        if kernel is None:
            raise UnsupportedError(f"program {self.name!r} needs the kernel's BTF to find {name!r}, and this kernel "
                                   "publishes none (/sys/kernel/btf/vmlinux)")
        ids = [i for i in kernel.by_name.get((name, self.BTF_KIND), [])]
        if not ids:
            raise ProgramError(f"program {self.name!r}: {name!r} is not in the kernel's BTF")
        self.attach_btf_id = ids[0]
        super().load()

    def attach(self) -> Link:
        attr = make_attr(RawTracepointAttr, name=0, prog_fd=self._need_fd())
        try:
            fd = self.sys.bpf(BpfCmd.RAW_TRACEPOINT_OPEN, attr)
        except OSError as e:
            raise AttachError(f"attaching {self.name!r} ({self.section}): {e.strerror}", e.errno) from None
        return self._track(FdLink(self.sys, fd))


class FEntry(_BtfAttached):
    pass


class FExit(_BtfAttached):
    pass


class Lsm(_BtfAttached):
    BTF_PREFIX = "bpf_lsm_"


class BtfTracePoint(_BtfAttached):
    BTF_PREFIX = "btf_trace_"
    BTF_KIND = 8  # TYPEDEF


def _default_target(d: ProgramDef):
    return d.attach_target


def program_class(d: ProgramDef) -> type[Program]:
    kind = str(getattr(d.kind, "value", d.kind))
    return {
        "kprobe": KProbe, "kretprobe": KProbe, "uprobe": UProbe, "uretprobe": UProbe,
        "tracepoint": TracePoint, "raw_tracepoint": RawTracePoint, "perf_event": PerfEventProgram,
        "socket_filter": SocketFilter, "xdp": Xdp, "sched_cls": SchedClassifier, "sched_act": SchedClassifier,
        "fentry": FEntry, "fexit": FExit, "lsm": Lsm, "tp_btf": BtfTracePoint,
    }.get(kind, Program)


# -- uprobe targets ---------------------------------------------------------------------------------
def resolve_binary(target: str) -> str:
    """An absolute path for a binary or library name (PATH for programs, the linker's dirs for libs)."""
    if "/" in target:
        return os.path.abspath(target)
    found = shutil.which(target)
    if found:
        return os.path.realpath(found)
    for d in ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib"):
        for name in (target, f"lib{target}.so", f"lib{target}.so.6", f"{target}.so"):
            p = os.path.join(d, name)
            if os.path.exists(p):
                return os.path.realpath(p)
    raise AttachError(f"cannot find binary {target!r}", errno.ENOENT)


def symbol_file_offset(path: str, symbol: str) -> int:
    """File offset of ``symbol`` (st_value - vaddr + file offset of the section holding it)."""
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile

    try:
        with open(path, "rb") as f:
            elf = ELFFile(f)
            for sec_name in (".symtab", ".dynsym"):
                sec = elf.get_section_by_name(sec_name)
                if sec is None:
                    continue
                for sym in sec.get_symbol_by_name(symbol) or []:
                    value = sym["st_value"]
                    if not value or sym["st_shndx"] == "SHN_UNDEF":
                        continue
                    for seg in elf.iter_segments():
                        if seg["p_type"] == "PT_LOAD" and seg["p_vaddr"] <= value < seg["p_vaddr"] + seg["p_memsz"]:
                            return value - seg["p_vaddr"] + seg["p_offset"]
                    return value
    except (OSError, ELFError) as e:
        raise AttachError(f"cannot read symbols of {path}: {e}") from None
    raise AttachError(f"symbol {symbol!r} not found in {path}", errno.ENOENT)


__all__ = [
    "BtfTracePoint", "FEntry", "FExit", "KProbe", "Lsm", "PERF_PROBE_MIN_VERSION", "PerfEventProgram", "Program",
    "RawTracePoint", "SchedClassifier", "SocketFilter", "TracePoint", "UProbe", "Xdp", "kernel_version",
    "program_class", "symbol_file_offset",
]
