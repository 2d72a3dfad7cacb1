"""Raw bpf() map calls for the map tests, the same bytes on either kernel (no tests here).

``MapUser`` speaks the Linux ABI through a ``Syscalls`` object: attrs are ctypes layouts from
kernel_sim.uapi.bpf and pointers are addresses of ctypes buffers kept alive for the call, so a
sequence of calls can be replayed on ``open_kernel("sim")`` and ``open_kernel("linux")`` and
the answers (bytes and errnos) compared. ``res`` turns an OSError into its errno name so that
results compare with ``==``.
"""

from __future__ import annotations

import ctypes
import errno

from kernel_sim.uapi.bpf import (
    BpfCmd,
    BpfMapInfo,
    InfoAttr,
    MapBatchAttr,
    MapCreateAttr,
    MapElemAttr,
    MapFreezeAttr,
    ObjPinAttr,
    make_attr,
)

ENOTSUPP = 524


def ename(code: int) -> str:
    return "ENOTSUPP" if code == ENOTSUPP else errno.errorcode.get(code, str(code))


def res(fn, *args, **kw):
    """fn's result, or ("err", ERRNAME) when it raised OSError."""
    try:
        return fn(*args, **kw)
    except OSError as e:
        return ("err", ename(e.errno))


def _buf(data: bytes | None):
    if data is None:
        return None, 0
    b = ctypes.create_string_buffer(bytes(data), max(len(data), 1))
    return b, ctypes.addressof(b)


def round8(n: int) -> int:
    return (n + 7) & ~7


class MapUser:
    """One process's raw map calls on a kernel (sim or linux)."""

    def __init__(self, sys) -> None:
        self.sys = sys
        self.fds: list[int] = []

    def possible_cpus(self) -> int:
        fd = self.sys.openat("/sys/devices/system/cpu/possible", 0)
        try:
            text = self.sys.read(fd, 100).decode().strip()
        finally:
            self.sys.close(fd)
        n = 0
        for part in text.split(","):
            lo, _, hi = part.partition("-")
            n = max(n, int(hi or lo) + 1)
        return n

    def close(self, fd: int) -> None:
        self.sys.close(fd)
        if fd in self.fds:
            self.fds.remove(fd)

    def close_all(self) -> None:
        for fd in list(self.fds):
            try:
                self.sys.close(fd)
            except OSError:
                pass
        self.fds.clear()

    # -- create -------------------------------------------------------------------------------
    def create(self, map_type: int, key_size: int, value_size: int, max_entries: int, flags: int = 0,
               name: bytes = b"", raw_name: bytes | None = None, **fields) -> int:
        attr = make_attr(MapCreateAttr, map_type=map_type, key_size=key_size, value_size=value_size,
                         max_entries=max_entries, map_flags=flags, **fields)
        off = MapCreateAttr.map_name.offset
        if raw_name is not None:
            attr[off:off + 16] = raw_name
        else:
            attr[off:off + len(name)] = name
        fd = self.sys.bpf(BpfCmd.MAP_CREATE, attr)
        self.fds.append(fd)
        return fd

    def create_raw(self, attr: bytearray) -> int:
        fd = self.sys.bpf(BpfCmd.MAP_CREATE, attr)
        self.fds.append(fd)
        return fd

    # -- elements -----------------------------------------------------------------------------
    def _elem(self, cmd: int, fd: int, key: bytes | None, value_buf, flags: int) -> int:
        kb, kaddr = _buf(key)
        vaddr = ctypes.addressof(value_buf) if value_buf is not None else 0
        attr = make_attr(MapElemAttr, map_fd=fd, key=kaddr, value=vaddr, flags=flags)
        ret = self.sys.bpf(cmd, attr)
        del kb
        return ret

    def update(self, fd: int, key: bytes | None, value: bytes | None, flags: int = 0) -> int:
        vb, _ = _buf(value)
        return self._elem(BpfCmd.MAP_UPDATE_ELEM, fd, key, vb, flags)

    def lookup(self, fd: int, key: bytes | None, value_size: int, flags: int = 0) -> bytes:
        vb = ctypes.create_string_buffer(max(value_size, 1))
        self._elem(BpfCmd.MAP_LOOKUP_ELEM, fd, key, vb, flags)
        return vb.raw[:value_size]

    def next_key(self, fd: int, key: bytes | None, key_size: int) -> bytes:
        nb = ctypes.create_string_buffer(max(key_size, 1))
        self._elem(BpfCmd.MAP_GET_NEXT_KEY, fd, key, nb, 0)
        return nb.raw[:key_size]

    def delete(self, fd: int, key: bytes | None, flags: int = 0) -> int:
        return self._elem(BpfCmd.MAP_DELETE_ELEM, fd, key, None, flags)

    def lookup_and_delete(self, fd: int, key: bytes | None, value_size: int, flags: int = 0) -> bytes:
        vb = ctypes.create_string_buffer(max(value_size, 1))
        self._elem(BpfCmd.MAP_LOOKUP_AND_DELETE_ELEM, fd, key, vb, flags)
        return vb.raw[:value_size]

    def keys(self, fd: int, key_size: int, limit: int = 100000) -> list[bytes]:
        """All keys in get_next_key order."""
        out: list[bytes] = []
        key = None
        while len(out) < limit:
            try:
                key = self.next_key(fd, key, key_size)
            except OSError as e:
                if e.errno == errno.ENOENT:
                    break
                raise
            out.append(key)
        return out

    # -- batches ------------------------------------------------------------------------------
    def batch(self, cmd: int, fd: int, count: int, key_size: int, value_size: int, *,
              in_batch: bytes | None = None, batch_size: int = 8, keys: bytes | None = None,
              values: bytes | None = None, elem_flags: int = 0, flags: int = 0):
        """(errno name or 0, count written back, keys, values, out_batch bytes)."""
        n = max(count, 1)
        kb = ctypes.create_string_buffer(keys if keys is not None else b"\xee" * (n * key_size), max(n * key_size, 1))
        vb = ctypes.create_string_buffer(values if values is not None else b"\xee" * (n * value_size),
                                         max(n * value_size, 1))
        ib, iaddr = _buf(in_batch)
        ob = ctypes.create_string_buffer(b"\xee" * batch_size, batch_size)
        attr = make_attr(MapBatchAttr, in_batch=iaddr, out_batch=ctypes.addressof(ob), keys=ctypes.addressof(kb),
                         values=ctypes.addressof(vb), count=count, map_fd=fd, elem_flags=elem_flags, flags=flags)
        try:
            self.sys.bpf(cmd, attr)
            err = 0
        except OSError as e:
            err = ename(e.errno)
        got = MapBatchAttr.from_attr(attr)
        del ib
        return err, got.count, kb.raw[: n * key_size], vb.raw[: n * value_size], ob.raw

    # -- objects ------------------------------------------------------------------------------
    def freeze(self, fd: int) -> int:
        return self.sys.bpf(BpfCmd.MAP_FREEZE, make_attr(MapFreezeAttr, map_fd=fd))

    def pin(self, fd: int, path: str, file_flags: int = 0) -> int:
        pb = ctypes.create_string_buffer(path.encode())
        return self.sys.bpf(BpfCmd.OBJ_PIN, make_attr(ObjPinAttr, pathname=ctypes.addressof(pb), bpf_fd=fd,
                                                      file_flags=file_flags))

    def obj_get(self, path: str, file_flags: int = 0) -> int:
        pb = ctypes.create_string_buffer(path.encode())
        fd = self.sys.bpf(BpfCmd.OBJ_GET, make_attr(ObjPinAttr, pathname=ctypes.addressof(pb), file_flags=file_flags))
        self.fds.append(fd)
        return fd

    def info(self, fd: int) -> BpfMapInfo:
        info = BpfMapInfo()
        attr = make_attr(InfoAttr, bpf_fd=fd, info_len=ctypes.sizeof(info), info=ctypes.addressof(info))
        self.sys.bpf(BpfCmd.OBJ_GET_INFO_BY_FD, attr)
        return info


def info_tuple(info: BpfMapInfo) -> tuple:
    """The fields of bpf_map_info that do not depend on which kernel answered."""
    return (info.type, info.key_size, info.value_size, info.max_entries, info.map_flags, bytes(info.name),
            info.btf_key_type_id, info.btf_value_type_id, info.map_extra)
