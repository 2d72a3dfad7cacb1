"""Typed map wrappers over bpf() map commands, in Aya's shape and Python's idioms.

``MapData`` is a created (or opened) kernel map: its fd and definition. ``Map`` is the generic
wrapper (raw bytes in, raw bytes out); HashMap, Array, PerCpuHashMap, Queue, ... add the
behaviour of their BPF map type and key/value codecs (BTF, struct format, ctypes or int/bytes;
see btf_values). Every operation is one bpf() call through the Syscalls seam; Linux's ENOENT
becomes KeyError (as for a dict), every other failure the OSError Linux raised.
"""

from __future__ import annotations

import ctypes
import errno
from collections.abc import Iterator
from typing import Any

from kernel_sim.uapi.bpf import (
    BPF_ANY,
    BpfCmd,
    BpfMapInfo,
    InfoAttr,
    MapBatchAttr,
    MapElemAttr,
    MapFreezeAttr,
    MapType,
    ObjPinAttr,
    make_attr,
)
from kernel_sim.uapi.epoll import O_RDONLY

from .btf_values import BtfTypes, Codec, IntCodec, make_codec
from .errors import MapError, MapTypeError

ONLINE_CPUS = "/sys/devices/system/cpu/online"
POSSIBLE_CPUS = "/sys/devices/system/cpu/possible"


def parse_cpu_list(text: str) -> list[int]:
    """Linux's cpu list format ("0-3,5,7-8") as sorted CPU numbers."""
    cpus: list[int] = []
    for part in text.strip().split(","):
        part = part.strip()
        if not part:
            continue
        lo, _, hi = part.partition("-")
        cpus.extend(range(int(lo), int(hi or lo) + 1))
    return sorted(set(cpus))


def read_text(sys, path: str) -> str:
    fd = sys.openat(path, O_RDONLY)
    try:
        out = bytearray()
        while chunk := sys.read(fd, 65536):
            out += chunk
        return out.decode()
    finally:
        sys.close(fd)


def online_cpus(sys) -> list[int]:
    return parse_cpu_list(read_text(sys, ONLINE_CPUS))


def possible_cpus(sys) -> list[int]:
    return parse_cpu_list(read_text(sys, POSSIBLE_CPUS))


def nr_possible_cpus(sys) -> int:
    """Per-CPU values come in one slot per possible CPU (highest possible id + 1)."""
    return max(possible_cpus(sys)) + 1


def _buf(data: bytes | int) -> ctypes.Array:
    return ctypes.create_string_buffer(data, len(data)) if isinstance(data, bytes) else ctypes.create_string_buffer(data)


def _addr(buf) -> int:
    return ctypes.addressof(buf) if buf is not None else 0


class MapData:
    """A kernel map: fd, definition, optional BTF type ids. Owns the fd."""

    def __init__(self, sys, fd: int, name: str, map_type: int, key_size: int, value_size: int,
                 max_entries: int, map_flags: int = 0, *, btf: BtfTypes | None = None,
                 btf_key_type_id: int = 0, btf_value_type_id: int = 0, pinned_path: str | None = None) -> None:
        self.sys = sys
        self.fd = fd
        self.name = name
        self.map_type = map_type
        self.key_size = key_size
        self.value_size = value_size
        self.max_entries = max_entries
        self.map_flags = map_flags
        self.btf = btf
        self.btf_key_type_id = btf_key_type_id
        self.btf_value_type_id = btf_value_type_id
        self.pinned_path = pinned_path

    @classmethod
    def from_fd(cls, sys, fd: int, name: str | None = None) -> MapData:
        """Wrap an existing map fd, reading its definition with OBJ_GET_INFO_BY_FD."""
        info = BpfMapInfo()
        attr = make_attr(InfoAttr, bpf_fd=fd, info_len=ctypes.sizeof(info), info=ctypes.addressof(info))
        sys.bpf(BpfCmd.OBJ_GET_INFO_BY_FD, attr)
        return cls(sys, fd, name or info.name.decode(), info.type, info.key_size, info.value_size,
                   info.max_entries, info.map_flags)

    @classmethod
    def from_pin(cls, sys, path: str, name: str | None = None) -> MapData:
        raw = path.encode() + b"\0"
        pbuf = _buf(raw)
        fd = sys.bpf(BpfCmd.OBJ_GET, make_attr(ObjPinAttr, pathname=ctypes.addressof(pbuf)))
        data = cls.from_fd(sys, fd, name)
        data.pinned_path = path
        return data

    def info(self) -> BpfMapInfo:
        info = BpfMapInfo()
        attr = make_attr(InfoAttr, bpf_fd=self.fd, info_len=ctypes.sizeof(info), info=ctypes.addressof(info))
        self.sys.bpf(BpfCmd.OBJ_GET_INFO_BY_FD, attr)
        return info

    def pin(self, path: str) -> None:
        pbuf = _buf(path.encode() + b"\0")
        self.sys.bpf(BpfCmd.OBJ_PIN, make_attr(ObjPinAttr, pathname=ctypes.addressof(pbuf), bpf_fd=self.fd))
        self.pinned_path = path

    def freeze(self) -> None:
        self.sys.bpf(BpfCmd.MAP_FREEZE, make_attr(MapFreezeAttr, map_fd=self.fd))

    def close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            self.sys.close(fd)

    @property
    def closed(self) -> bool:
        return self.fd < 0

    def __repr__(self) -> str:
        try:
            kind = MapType(self.map_type).name
        except ValueError:
            kind = str(self.map_type)
        return f"<MapData {self.name!r} {kind} fd={self.fd} key={self.key_size} value={self.value_size} " \
               f"max_entries={self.max_entries}>"

    # -- raw element commands (bytes in, bytes out) --------------------------------------------
    def _elem(self, cmd: int, key: bytes | None, value_buf=None, flags: int = 0, next_key_buf=None) -> int:
        kbuf = _buf(key) if key is not None else None
        attr = make_attr(MapElemAttr, map_fd=self.fd, key=_addr(kbuf),
                         value=_addr(next_key_buf if next_key_buf is not None else value_buf), flags=flags)
        return self.sys.bpf(cmd, attr)

    def lookup(self, key: bytes | None, flags: int = 0, value_size: int | None = None) -> bytes:
        """MAP_LOOKUP_ELEM; raises OSError (ENOENT when absent)."""
        vbuf = _buf(value_size if value_size is not None else max(self.value_size, 1))
        self._elem(BpfCmd.MAP_LOOKUP_ELEM, key, vbuf, flags)
        return vbuf.raw

    def update(self, key: bytes | None, value: bytes, flags: int = BPF_ANY) -> None:
        self._elem(BpfCmd.MAP_UPDATE_ELEM, key, _buf(value), flags)

    def delete(self, key: bytes) -> None:
        self._elem(BpfCmd.MAP_DELETE_ELEM, key)

    def lookup_and_delete(self, key: bytes | None, flags: int = 0, value_size: int | None = None) -> bytes:
        vbuf = _buf(value_size if value_size is not None else max(self.value_size, 1))
        self._elem(BpfCmd.MAP_LOOKUP_AND_DELETE_ELEM, key, vbuf, flags)
        return vbuf.raw

    def next_key(self, key: bytes | None) -> bytes | None:
        """MAP_GET_NEXT_KEY: the key after ``key`` (None: the first), or None at the end."""
        nbuf = _buf(max(self.key_size, 1))
        try:
            self._elem(BpfCmd.MAP_GET_NEXT_KEY, key, next_key_buf=nbuf)
        except OSError as e:
            if e.errno == errno.ENOENT:
                return None
            raise
        return nbuf.raw

    def iter_batch(self, value_size: int, chunk: int = 256) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) pairs with BPF_MAP_LOOKUP_BATCH, ``chunk`` entries per call.

        Tokens are opaque (a bucket index for hash maps, the last key for others): the buffers
        are sized for either. ENOSPC (a hash bucket larger than the chunk) doubles the chunk.
        Raises the first call's OSError (EINVAL/ENOTSUP where the map type has no batch ops).
        """
        ks = self.key_size
        token = max(ks, 8)
        in_b, out_b = _buf(token), _buf(token)
        first = True
        while True:
            keys, values = _buf(max(chunk * ks, 1)), _buf(max(chunk * value_size, 1))
            attr = make_attr(MapBatchAttr, in_batch=0 if first else ctypes.addressof(in_b),
                             out_batch=ctypes.addressof(out_b), keys=ctypes.addressof(keys),
                             values=ctypes.addressof(values), count=chunk, map_fd=self.fd)
            done = False
            try:
                self.sys.bpf(BpfCmd.MAP_LOOKUP_BATCH, attr)
            except OSError as e:
                if e.errno == errno.ENOSPC and chunk < 1 << 16 and MapBatchAttr.from_attr(attr).count == 0:
                    chunk *= 2
                    continue
                if e.errno != errno.ENOENT:
                    raise
                done = True
            n = MapBatchAttr.from_attr(attr).count
            kraw, vraw = keys.raw, values.raw
            for i in range(n):
                yield kraw[i * ks : (i + 1) * ks], vraw[i * value_size : (i + 1) * value_size]
            if done:
                return
            ctypes.memmove(in_b, out_b, token)
            first = False

    def iter_keys(self) -> Iterator[bytes]:
        key = self.next_key(None)
        seen = 0
        while key is not None:
            yield key
            seen += 1
            if seen > max(self.max_entries, 1) * 4:  # a map being rewritten under us: stop, as bpftool does
                return
            key = self.next_key(key)


def _key_error(e: OSError, key: Any) -> Exception:
    return KeyError(key) if e.errno == errno.ENOENT else e


class Map:
    """Generic map wrapper: raw bytes keys and values unless codecs are given.

    Typed subclasses accept a Map (of any class) or MapData, share its fd, and check the BPF
    map type as Aya's ``TryFrom<Map>`` does.
    """

    MAP_TYPES: tuple[int, ...] = ()  # empty: any type

    def __init__(self, map: Map | MapData, key: Any = None, value: Any = None) -> None:
        data = map.data if isinstance(map, Map) else map
        if not isinstance(data, MapData):
            raise TypeError(f"expected a Map or MapData, got {type(map).__name__}")
        if self.MAP_TYPES and data.map_type not in self.MAP_TYPES:
            names = ", ".join(MapType(t).name for t in self.MAP_TYPES)
            raise MapTypeError(f"map {data.name!r} is {_type_name(data.map_type)}, not {names}")
        self.data = data
        self.key_codec: Codec = self._make_key_codec(key)
        self.value_codec: Codec = self._make_value_codec(value)

    def _make_key_codec(self, key: Any) -> Codec:
        return make_codec(key if key is not None else (bytes if type(self) is Map else None), self.data.key_size,
                          self.data.btf, self.data.btf_key_type_id)

    def _make_value_codec(self, value: Any) -> Codec:
        return make_codec(value if value is not None else (bytes if type(self) is Map else None),
                          self.data.value_size, self.data.btf, self.data.btf_value_type_id)

    # -- identity --------------------------------------------------------------------------------
    @property
    def fd(self) -> int:
        return self.data.fd

    @property
    def name(self) -> str:
        return self.data.name

    @property
    def map_type(self) -> int:
        return self.data.map_type

    @property
    def key_size(self) -> int:
        return self.data.key_size

    @property
    def value_size(self) -> int:
        return self.data.value_size

    @property
    def max_entries(self) -> int:
        return self.data.max_entries

    def pin(self, path: str) -> None:
        self.data.pin(path)

    def info(self) -> BpfMapInfo:
        return self.data.info()

    def close(self) -> None:
        self.data.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} fd={self.fd}>"

    # -- dict-like access ---------------------------------------------------------------------------
    def _decode_value(self, raw: bytes) -> Any:
        return self.value_codec.decode(raw)

    def _encode_value(self, value: Any) -> bytes:
        return self.value_codec.encode(value)

    def __getitem__(self, key: Any) -> Any:
        try:
            raw = self.data.lookup(self.key_codec.encode(key), value_size=self._value_buf_size())
        except OSError as e:
            raise _key_error(e, key) from None
        return self._decode_value(raw)

    def _value_buf_size(self) -> int:
        return self.data.value_size

    def get(self, key: Any, default: Any = None, flags: int = 0) -> Any:
        try:
            raw = self.data.lookup(self.key_codec.encode(key), flags, value_size=self._value_buf_size())
        except OSError as e:
            if e.errno == errno.ENOENT:
                return default
            raise
        return self._decode_value(raw)

    def insert(self, key: Any, value: Any, flags: int = BPF_ANY) -> None:
        """MAP_UPDATE_ELEM with Linux's flags (BPF_ANY, BPF_NOEXIST, BPF_EXIST, BPF_F_LOCK)."""
        self.data.update(self.key_codec.encode(key), self._encode_value(value), flags)

    def __setitem__(self, key: Any, value: Any) -> None:
        self.insert(key, value)

    def remove(self, key: Any) -> None:
        try:
            self.data.delete(self.key_codec.encode(key))
        except OSError as e:
            raise _key_error(e, key) from None

    def __delitem__(self, key: Any) -> None:
        self.remove(key)

    def __contains__(self, key: Any) -> bool:
        try:
            self.data.lookup(self.key_codec.encode(key), value_size=self._value_buf_size())
        except OSError as e:
            if e.errno == errno.ENOENT:
                return False
            raise
        return True

    def keys(self) -> Iterator[Any]:
        for raw in self.data.iter_keys():
            yield self.key_codec.decode(raw)

    def __iter__(self) -> Iterator[Any]:
        return self.keys()

    # Errnos that mean "no batch lookup for this map/kernel": fall back to GET_NEXT_KEY + LOOKUP.
    _NO_BATCH = frozenset({errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS, 524})

    def items(self) -> Iterator[tuple[Any, Any]]:
        """(key, value) pairs: one BPF_MAP_LOOKUP_BATCH per chunk where the kernel has it, else
        GET_NEXT_KEY + LOOKUP per key (keys deleted in between are skipped)."""
        batch = self.data.iter_batch(self._value_buf_size())
        try:
            first = next(batch, None)
        except OSError as e:
            if e.errno not in self._NO_BATCH:
                raise
        else:
            if first is not None:
                yield self.key_codec.decode(first[0]), self._decode_value(first[1])
                for kraw, vraw in batch:
                    yield self.key_codec.decode(kraw), self._decode_value(vraw)
            return
        yield from self._items_by_key()

    def _items_by_key(self) -> Iterator[tuple[Any, Any]]:
        for raw in self.data.iter_keys():
            try:
                value = self.data.lookup(raw, value_size=self._value_buf_size())
            except OSError as e:
                if e.errno == errno.ENOENT:
                    continue
                raise
            yield self.key_codec.decode(raw), self._decode_value(value)

    def values(self) -> Iterator[Any]:
        for _k, v in self.items():
            yield v

    def __len__(self) -> int:
        return sum(1 for _ in self.data.iter_keys())

    def to_dict(self) -> dict[Any, Any]:
        return dict(self.items())


def _type_name(map_type: int) -> str:
    try:
        return MapType(map_type).name
    except ValueError:
        return f"type {map_type}"


class HashMap(Map):
    MAP_TYPES = (MapType.HASH, MapType.LRU_HASH)


class LruHashMap(HashMap):
    MAP_TYPES = (MapType.LRU_HASH, MapType.HASH)


class Array(Map):
    """Index -> value; every index below max_entries exists; elements cannot be deleted."""

    MAP_TYPES = (MapType.ARRAY,)

    def _make_key_codec(self, key: Any) -> Codec:
        return make_codec(key, self.data.key_size) if key is not None else IntCodec(self.data.key_size)

    def __len__(self) -> int:
        return self.data.max_entries

    def keys(self) -> Iterator[int]:
        return iter(range(self.data.max_entries))

    def _check_index(self, index: int) -> None:
        if not 0 <= int(index) < self.data.max_entries:
            raise IndexError(f"index {index} out of range for array {self.name!r} of {self.data.max_entries}")

    def __getitem__(self, index: int) -> Any:
        self._check_index(index)
        return super().__getitem__(index)

    def _items_by_key(self) -> Iterator[tuple[int, Any]]:
        for i in range(self.data.max_entries):
            yield i, self[i]


class _PerCpu:
    """Values are one slot per possible CPU, each rounded up to 8 bytes (Linux's layout)."""

    data: MapData
    value_codec: Codec

    def _slots(self) -> int:
        n = getattr(self, "_nr_cpus", None)
        if n is None:
            n = self._nr_cpus = nr_possible_cpus(self.data.sys)
        return n

    def _stride(self) -> int:
        return (self.data.value_size + 7) // 8 * 8

    def _value_buf_size(self) -> int:
        return self._stride() * self._slots()

    def _decode_value(self, raw: bytes) -> list[Any]:
        s = self._stride()
        return [self.value_codec.decode(raw[i * s : i * s + self.data.value_size]) for i in range(self._slots())]

    def _encode_value(self, values: Any) -> bytes:
        """A list with one value per possible CPU, or one value for every CPU."""
        s = self._stride()
        if not isinstance(values, list | tuple) or (
            isinstance(values, tuple) and len(values) != self._slots()
        ):
            values = [values] * self._slots()
        if len(values) != self._slots():
            raise ValueError(f"per-CPU map {self.data.name!r} needs {self._slots()} values, got {len(values)}")
        return b"".join(self.value_codec.encode(v).ljust(s, b"\0") for v in values)


class PerCpuHashMap(_PerCpu, HashMap):
    MAP_TYPES = (MapType.PERCPU_HASH, MapType.LRU_PERCPU_HASH)


class LruPerCpuHashMap(PerCpuHashMap):
    MAP_TYPES = (MapType.LRU_PERCPU_HASH, MapType.PERCPU_HASH)


class PerCpuArray(_PerCpu, Array):
    MAP_TYPES = (MapType.PERCPU_ARRAY,)


class _KeylessMap(Map):
    """Queue and stack: no keys; push/pop/peek with key NULL."""

    def _make_key_codec(self, key: Any) -> Codec:
        return IntCodec(4)

    def push(self, value: Any, flags: int = BPF_ANY) -> None:
        """MAP_UPDATE_ELEM (BPF_EXIST: overwrite the oldest when full)."""
        self.data.update(None, self.value_codec.encode(value), flags)

    def pop(self) -> Any:
        """MAP_LOOKUP_AND_DELETE_ELEM; KeyError when empty (ENOENT)."""
        try:
            return self.value_codec.decode(self.data.lookup_and_delete(None))
        except OSError as e:
            raise _key_error(e, None) from None

    def peek(self) -> Any:
        try:
            return self.value_codec.decode(self.data.lookup(None))
        except OSError as e:
            raise _key_error(e, None) from None

    def __len__(self) -> int:
        raise TypeError(f"{type(self).__name__} has no length (the kernel does not count it)")

    def keys(self):
        raise TypeError(f"{type(self).__name__} has no keys")


class Queue(_KeylessMap):
    MAP_TYPES = (MapType.QUEUE,)


class Stack(_KeylessMap):
    MAP_TYPES = (MapType.STACK,)


class ProgramArray(Map):
    """Tail-call table: index -> program fd (userland writes fds; reads are not allowed)."""

    MAP_TYPES = (MapType.PROG_ARRAY,)

    def _make_key_codec(self, key: Any) -> Codec:
        return IntCodec(4)

    def _make_value_codec(self, value: Any) -> Codec:
        return IntCodec(4)

    def set(self, index: int, program: Any, flags: int = BPF_ANY) -> None:
        """Store a loaded program (anything with ``.fd``) or a program fd at ``index``."""
        fd = program if isinstance(program, int) else program.fd
        if fd is None or fd < 0:
            raise MapError(f"program for index {index} is not loaded")
        self.data.update(self.key_codec.encode(index), IntCodec(4).encode(fd), flags)

    def __setitem__(self, index: int, program: Any) -> None:
        self.set(index, program)

    def clear_index(self, index: int) -> None:
        self.remove(index)

    def __getitem__(self, index: int) -> int:
        """The id of the program at ``index`` (what Linux's lookup on a prog array returns)."""
        return super().__getitem__(index)

    def indices(self) -> Iterator[int]:
        """The indexes that hold a program (array keys always run 0..max_entries-1)."""
        for i in range(self.data.max_entries):
            if i in self:
                yield i

    def items(self) -> Iterator[tuple[int, int]]:
        for i in self.indices():
            try:
                yield i, self[i]
            except KeyError:
                continue


class _MapOfMaps(Map):
    """Outer map of a map-in-map: values are inner map fds on update, map ids on lookup."""

    def _make_key_codec(self, key: Any) -> Codec:
        return make_codec(key, self.data.key_size) if key is not None else IntCodec(self.data.key_size)

    def _make_value_codec(self, value: Any) -> Codec:
        return IntCodec(4)

    def set(self, key: Any, inner: Any, flags: int = BPF_ANY) -> None:
        """Store a map (anything with ``.fd``) or a map fd under ``key``."""
        fd = inner if isinstance(inner, int) else inner.fd
        self.data.update(self.key_codec.encode(key), IntCodec(4).encode(fd), flags)

    def __setitem__(self, key: Any, inner: Any) -> None:
        self.set(key, inner)


class ArrayOfMaps(_MapOfMaps):
    MAP_TYPES = (MapType.ARRAY_OF_MAPS,)

    def items(self) -> Iterator[tuple[int, int]]:
        for i in range(self.data.max_entries):
            try:
                yield i, self[i]
            except KeyError:
                continue


class HashOfMaps(_MapOfMaps):
    MAP_TYPES = (MapType.HASH_OF_MAPS,)


class StackTraceMap(Map):
    """stack id -> array of u64 instruction pointers (zero-terminated)."""

    MAP_TYPES = (MapType.STACK_TRACE,)

    def _make_value_codec(self, value: Any) -> Codec:
        return make_codec(value, self.data.value_size) if value is not None else _IpsCodec(self.data.value_size)


class _IpsCodec(Codec):
    def __init__(self, size: int) -> None:
        self.size = size

    def encode(self, value: Any) -> bytes:
        return b"".join(int(v).to_bytes(8, "little") for v in value).ljust(self.size, b"\0")

    def decode(self, raw: bytes) -> list[int]:
        ips = [int.from_bytes(raw[i : i + 8], "little") for i in range(0, self.size - 7, 8)]
        while ips and ips[-1] == 0:
            ips.pop()
        return ips


def typed_map(data: MapData) -> Map:
    """The wrapper class Aya's ``Map`` enum variant would give for the map's type."""
    from .perf_buffer import PerfEventArray
    from .ringbuf_reader import RingBuf

    cls = {
        MapType.HASH: HashMap,
        MapType.LRU_HASH: LruHashMap,
        MapType.ARRAY: Array,
        MapType.PERCPU_HASH: PerCpuHashMap,
        MapType.LRU_PERCPU_HASH: LruPerCpuHashMap,
        MapType.PERCPU_ARRAY: PerCpuArray,
        MapType.QUEUE: Queue,
        MapType.STACK: Stack,
        MapType.PROG_ARRAY: ProgramArray,
        MapType.ARRAY_OF_MAPS: ArrayOfMaps,
        MapType.HASH_OF_MAPS: HashOfMaps,
        MapType.STACK_TRACE: StackTraceMap,
        MapType.PERF_EVENT_ARRAY: PerfEventArray,
        MapType.RINGBUF: RingBuf,
    }.get(data.map_type, Map)
    try:
        return cls(data)
    except ValueError:
        return Map(data)
