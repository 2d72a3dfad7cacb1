"""A handful of ordinary files so workloads have something real to open, read and exec."""

from __future__ import annotations

from .fs.vfs import Vfs

FILES = {
    "/etc/passwd": "root:x:0:0:root:/root:/bin/bash\nuser:x:1000:1000:user:/home/user:/bin/bash\n",
    "/etc/hostname": "bpfload\n",
    "/etc/ld.so.cache": "ld.so-1.7.0\0glibc-ld.so.cache1.1\0",
    "/etc/nsswitch.conf": "passwd: files\ngroup: files\nhosts: files dns\n",
    "/etc/localtime": "TZif2\0",
    "/usr/lib/x86_64-linux-gnu/libc.so.6": "\x7fELF" + "\0" * 60,
    "/usr/lib/locale/locale-archive": "\0" * 64,
    "/home/user/notes.txt": "remember: kprobes fire in the pre-handler\n",
    "/var/log/syslog": "Nov 24 00:00:00 bpfload kernel: booted\n",
    "/bin/bash": "\x7fELF",
    "/bin/ls": "\x7fELF",
    "/bin/cat": "\x7fELF",
    "/usr/bin/grep": "\x7fELF",
    "/usr/bin/python3": "\x7fELF",
}


def populate(vfs: Vfs) -> None:
    for path, content in FILES.items():
        data = content.encode("latin-1")
        vfs.add_file(path, lambda data=data: data, lambda b: len(b), fs="rootfs", mode=0o644)
    vfs.add_file("/dev/null", lambda: b"", lambda b: len(b), fs="rootfs", mode=0o666)
    vfs.mkdir("/tmp")
