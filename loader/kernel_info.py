"""What `bpfload kernel info` reports, read through the Syscalls seam like any userland tool."""

from __future__ import annotations

from kernel_sim.uapi.epoll import O_RDONLY

KPROBE_TYPE_PATH = "/sys/bus/event_source/devices/kprobe/type"


def read_file(sys, path: str, limit: int = 1 << 20) -> str:
    """A whole (small) pseudo file, through the seam."""
    fd = sys.openat(path, O_RDONLY)
    try:
        out = bytearray()
        while len(out) < limit and (chunk := sys.read(fd, 65536)):
            out += chunk
        return out.decode(errors="replace")
    finally:
        sys.close(fd)


def _try_read(sys, path: str) -> str:
    try:
        return read_file(sys, path).strip()
    except OSError as e:
        return f"unavailable ({e.strerror})"


def kallsyms_count(sys) -> int | str:
    try:
        return sum(1 for line in read_file(sys, "/proc/kallsyms", 1 << 26).splitlines() if line)
    except OSError as e:
        return f"unavailable ({e.strerror})"


def kernel_info(sys) -> dict[str, object]:
    uts = sys.uname()
    return {
        "kernel": sys.kind,
        "release": uts.release,
        "version": uts.version,
        "machine": uts.machine,
        "cpus online": _try_read(sys, "/sys/devices/system/cpu/online"),
        "cpus possible": _try_read(sys, "/sys/devices/system/cpu/possible"),
        "kprobe type": _try_read(sys, KPROBE_TYPE_PATH),
        "symbols": kallsyms_count(sys),
    }
