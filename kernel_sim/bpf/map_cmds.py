"""The bpf() map commands: MAP_CREATE, the element commands, the batch commands and MAP_FREEZE.

Each handler follows the order of checks of Linux's kernel/bpf/syscall.c, because the order
decides which errno userland sees when several things are wrong: attr tail (CHECK_ATTR),
flags, the fd (EBADF, EINVAL for a non-map), the fd's open mode (EPERM; a frozen map is not
writable from the syscall side), BPF_F_LOCK (EINVAL: no map here has a bpf_spin_lock), the
key and value copies (EFAULT), then the map type's own rules (kernel_sim/bpf/maps/).
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from ..fs.file import oserror
from ..task import current
from ..uapi.bpf import (
    BPF_F_LOCK,
    BPF_F_NUMA_NODE,
    BPF_F_TOKEN_FD,
    BpfCmd,
    MapBatchAttr,
    MapCreateAttr,
    MapElemAttr,
    MapType,
)
from ..usermem import copy_from_user, copy_to_user
from .maps import ENOTSUPP, MAP_TYPES, BpfMapFile, UnifiedMap
from .maps.base import NUMA_NO_NODE, file_flags
from .maps.btf_fields import spin_lock_offset
from .maps.hash import HashMap
from .prog import obj_name
from .syscall import bpf_command, check_attr_unused_zero

if TYPE_CHECKING:
    from ..kernel import Kernel

MAP_CREATE_END = MapCreateAttr.map_token_fd.offset + 4  # Linux 6.18: later bytes must be zero
ELEM_END = {
    BpfCmd.MAP_LOOKUP_ELEM: 32, BpfCmd.MAP_UPDATE_ELEM: 32, BpfCmd.MAP_DELETE_ELEM: 16,
    BpfCmd.MAP_GET_NEXT_KEY: 24, BpfCmd.MAP_LOOKUP_AND_DELETE_ELEM: 32,
}
BATCH_END = MapBatchAttr.flags.offset + 8
FREEZE_END = 4
_NAME_OFF = MapCreateAttr.map_name.offset


def map_file(fd: int) -> BpfMapFile:
    """The map file behind fd: EBADF for no file, EINVAL for a file that is not a map."""
    file = current().files.get(fd)
    if not getattr(file, "is_bpf_map", False):
        raise oserror(errno.EINVAL)
    return file


def copy_key(m: UnifiedMap, ukey: int) -> bytes | None:
    """Linux's __bpf_copy_key: key_size bytes, or NULL for keyless maps (a key there is EINVAL)."""
    if m.key_size:
        return copy_from_user(ukey, m.key_size)
    if ukey:
        raise oserror(errno.EINVAL)
    return None


# -- MAP_CREATE ------------------------------------------------------------------------------------
_BTF_KINDS_WITH_SIZE = {1, 4, 5, 6, 15, 16, 19}  # INT, STRUCT, UNION, ENUM, DATASEC, FLOAT, ENUM64
_BTF_MODIFIERS = {8, 9, 10, 11, 18}  # TYPEDEF, VOLATILE, CONST, RESTRICT, TYPE_TAG


def _btf_type_size(btf, type_id: int) -> int | None:
    """The byte size of a BTF type when it can be resolved simply (None: do not check)."""
    seen = 0
    while 0 < type_id <= len(btf.types) and seen < 32:
        kind, _name, size_or_type = btf.types[type_id - 1]
        if kind in _BTF_KINDS_WITH_SIZE:
            return size_or_type
        if kind == 2:  # PTR
            return 8
        if kind not in _BTF_MODIFIERS:
            return None
        type_id = size_or_type
        seen += 1
    return None


def _keyless_btf_ok(m: UnifiedMap, btf, value_type_id: int) -> bool:
    """Linux allows a void key only for global data: a one-entry array whose value is a DATASEC."""
    if m.map_type != MapType.ARRAY or m.max_entries != 1 or value_type_id > len(btf.types):
        return False
    return btf.types[value_type_id - 1][0] == 15


def _attach_btf(m: UnifiedMap, a: MapCreateAttr) -> None:
    file = current().files.get(a.btf_fd)
    btf = getattr(file, "btf", None) if getattr(file, "is_btf", False) else None
    if btf is None:
        raise oserror(errno.EINVAL)
    if a.btf_value_type_id:
        if not a.btf_key_type_id and not _keyless_btf_ok(m, btf, a.btf_value_type_id):
            raise oserror(errno.EINVAL)
        for type_id, size in ((a.btf_key_type_id, m.key_size), (a.btf_value_type_id, m.value_size)):
            if type_id > len(btf.types):
                raise oserror(errno.EINVAL)
            got = _btf_type_size(btf, type_id) if type_id else None
            if got is not None and got != size:
                raise oserror(errno.EINVAL)
        lock = spin_lock_offset(btf, a.btf_value_type_id)
        if lock is not None:
            if m.map_type not in SPIN_LOCK_MAP_TYPES:
                raise oserror(errno.EOPNOTSUPP)
            m.spin_lock_off = lock
    btf.refs += 1
    m.btf = btf
    m.btf_key_type_id = a.btf_key_type_id
    m.btf_value_type_id = a.btf_value_type_id
    m.btf_vmlinux_value_type_id = a.btf_vmlinux_value_type_id


@bpf_command(BpfCmd.MAP_CREATE)
def map_create(kernel: Kernel, attr: memoryview) -> int:
    check_attr_unused_zero(attr, MAP_CREATE_END)
    a = MapCreateAttr.from_attr(attr)
    if a.map_flags & BPF_F_TOKEN_FD:
        current().files.get(a.map_token_fd)
        raise oserror(errno.EINVAL)  # the simulated kernel has no BPF tokens
    if a.btf_vmlinux_value_type_id:
        raise oserror(errno.EINVAL)  # only struct_ops maps take it, and there are none here
    if a.btf_key_type_id and not a.btf_value_type_id:
        raise oserror(errno.EINVAL)
    if a.map_type not in (MapType.BLOOM_FILTER, MapType.ARENA) and a.map_extra:
        raise oserror(errno.EINVAL)
    f_flags = file_flags(a.map_flags)
    if a.map_flags & BPF_F_NUMA_NODE and a.numa_node not in (0, NUMA_NO_NODE):
        raise oserror(errno.EINVAL)  # one NUMA node, node 0
    cls = MAP_TYPES.get(a.map_type)
    if cls is None:
        raise oserror(errno.EINVAL)
    cls.alloc_check(a)
    if a.map_ifindex:
        raise oserror(errno.EOPNOTSUPP if a.map_type in (MapType.ARRAY, MapType.HASH) else errno.EINVAL)
    try:
        m = cls(kernel, a)
    except MemoryError:  # the VM address space or the host ran out
        raise oserror(errno.ENOMEM) from None
    try:
        raw_name = bytes(attr[_NAME_OFF:_NAME_OFF + 16]).ljust(16, b"\0")
        m.name = obj_name(raw_name)
        if a.btf_key_type_id or a.btf_value_type_id:
            _attach_btf(m, a)
    except OSError:
        m.release()
        raise
    m.register()
    return current().files.install(BpfMapFile(m, f_flags))


# -- element commands --------------------------------------------------------------------------------
def _elem_attr(attr: memoryview, cmd: int) -> MapElemAttr:
    check_attr_unused_zero(attr, ELEM_END[cmd])
    return MapElemAttr.from_attr(attr)


def _no_spin_lock(m: UnifiedMap, flags: int) -> None:
    """BPF_F_LOCK needs a struct bpf_spin_lock in the value (else EINVAL)."""
    m.lock_flag(flags)


SPIN_LOCK_MAP_TYPES = {MapType.HASH, MapType.ARRAY, MapType.CGROUP_STORAGE, MapType.SK_STORAGE,
                       MapType.INODE_STORAGE, MapType.TASK_STORAGE, MapType.CGRP_STORAGE}


@bpf_command(BpfCmd.MAP_LOOKUP_ELEM)
def map_lookup_elem(kernel: Kernel, attr: memoryview) -> int:
    a = _elem_attr(attr, BpfCmd.MAP_LOOKUP_ELEM)
    if a.flags & ~BPF_F_LOCK:
        raise oserror(errno.EINVAL)
    f = map_file(a.map_fd)
    if not f.can_read:
        raise oserror(errno.EPERM)
    m = f.map
    _no_spin_lock(m, a.flags)
    key = copy_key(m, a.key)
    if m.map_type == MapType.BLOOM_FILTER:  # the value is the input: is it (probably) in the set?
        m.sys_peek(copy_from_user(a.value, m.value_size))
        return 0
    copy_to_user(a.value, m.hide_lock(m.sys_lookup(key, a.flags)))
    return 0


@bpf_command(BpfCmd.MAP_UPDATE_ELEM)
def map_update_elem(kernel: Kernel, attr: memoryview) -> int:
    a = _elem_attr(attr, BpfCmd.MAP_UPDATE_ELEM)
    f = map_file(a.map_fd)
    if not f.can_write:
        raise oserror(errno.EPERM)
    m = f.map
    _no_spin_lock(m, a.flags)
    key = copy_key(m, a.key)
    value = copy_from_user(a.value, m.user_value_size)
    m.sys_update(key, m.hide_lock(value), a.flags, f)
    return 0


@bpf_command(BpfCmd.MAP_DELETE_ELEM)
def map_delete_elem(kernel: Kernel, attr: memoryview) -> int:
    a = _elem_attr(attr, BpfCmd.MAP_DELETE_ELEM)
    f = map_file(a.map_fd)
    if not f.can_write:
        raise oserror(errno.EPERM)
    m = f.map
    m.sys_delete(copy_key(m, a.key))
    return 0


@bpf_command(BpfCmd.MAP_GET_NEXT_KEY)
def map_get_next_key(kernel: Kernel, attr: memoryview) -> int:
    a = _elem_attr(attr, BpfCmd.MAP_GET_NEXT_KEY)
    f = map_file(a.map_fd)
    if not f.can_read:
        raise oserror(errno.EPERM)
    m = f.map
    key = copy_key(m, a.key) if a.key else None
    copy_to_user(a.next_key, m.sys_get_next_key(key))
    return 0


@bpf_command(BpfCmd.MAP_LOOKUP_AND_DELETE_ELEM)
def map_lookup_and_delete_elem(kernel: Kernel, attr: memoryview) -> int:
    a = _elem_attr(attr, BpfCmd.MAP_LOOKUP_AND_DELETE_ELEM)
    if a.flags & ~BPF_F_LOCK:
        raise oserror(errno.EINVAL)
    f = map_file(a.map_fd)
    if not f.can_read or not f.can_write:
        raise oserror(errno.EPERM)
    m = f.map
    if a.flags and m.map_type in (MapType.QUEUE, MapType.STACK):
        raise oserror(errno.EINVAL)
    _no_spin_lock(m, a.flags)
    key = copy_key(m, a.key)
    copy_to_user(a.value, m.hide_lock(m.sys_lookup_and_delete(key, a.flags)))
    return 0


# -- batch commands ----------------------------------------------------------------------------------
_BATCH_OPS = {
    BpfCmd.MAP_LOOKUP_BATCH: ("lookup", True, False),
    BpfCmd.MAP_LOOKUP_AND_DELETE_BATCH: ("lookup_and_delete", True, True),
    BpfCmd.MAP_UPDATE_BATCH: ("update", False, True),
    BpfCmd.MAP_DELETE_BATCH: ("delete", False, True),
}


def _write_count(attr: memoryview, a: MapBatchAttr, count: int) -> None:
    a.count = count
    a.write_field(attr, "count")


def _check_elem_flags(m: UnifiedMap, a: MapBatchAttr) -> None:
    if a.elem_flags & ~BPF_F_LOCK:
        raise oserror(errno.EINVAL)
    m.lock_flag(a.elem_flags)


def _htab_lookup_batch(m: HashMap, attr: memoryview, a: MapBatchAttr, delete: bool) -> int:
    """Linux's __htab_map_lookup_and_delete_batch: tokens are u32 bucket indexes."""
    _check_elem_flags(m, a)
    if a.flags:
        raise oserror(errno.EINVAL)
    max_count = a.count
    if max_count == 0:
        return 0
    _write_count(attr, a, 0)
    batch = int.from_bytes(copy_from_user(a.in_batch, 4), "little") if a.in_batch else 0
    if batch >= m.n_buckets:
        raise oserror(errno.ENOENT)
    entries, nxt, err = m.lookup_batch(batch, max_count, delete)
    if entries:
        copy_to_user(a.keys, b"".join(k for k, _ in entries))
        copy_to_user(a.values, b"".join(m.hide_lock(v) for _, v in entries))
    copy_to_user(a.out_batch, nxt.to_bytes(4, "little"))
    _write_count(attr, a, len(entries))
    if err:
        raise oserror(err)
    return 0


def _generic_lookup_batch(m: UnifiedMap, attr: memoryview, a: MapBatchAttr) -> int:
    _check_elem_flags(m, a)
    max_count = a.count
    if max_count == 0:
        return 0
    _write_count(attr, a, 0)
    prev = copy_from_user(a.in_batch, m.key_size) if a.in_batch else None
    ks, vs = m.key_size, m.user_value_size
    cp = 0
    err = 0
    while cp < max_count:
        try:
            key = m.sys_get_next_key(prev)
        except OSError as e:
            err = e.errno
            break
        try:
            value = m.sys_lookup(key, a.elem_flags)
        except OSError as e:
            if e.errno != errno.ENOENT:
                raise
            prev = key
            continue
        copy_to_user(a.keys + cp * ks, key)
        copy_to_user(a.values + cp * vs, m.hide_lock(value))
        prev = key
        cp += 1
    _write_count(attr, a, cp)
    if cp:
        copy_to_user(a.out_batch, prev)
    if err:
        raise oserror(err)
    return 0


def _generic_update_batch(m: UnifiedMap, f: BpfMapFile, attr: memoryview, a: MapBatchAttr, delete: bool) -> int:
    _check_elem_flags(m, a)
    max_count = a.count
    if max_count == 0:
        return 0
    _write_count(attr, a, 0)
    ks, vs = m.key_size, m.user_value_size
    cp = 0
    err: OSError | None = None
    while cp < max_count:
        try:
            key = copy_from_user(a.keys + cp * ks, ks)
            if delete:
                m.sys_delete(key)
            else:
                m.sys_update(key, m.hide_lock(copy_from_user(a.values + cp * vs, vs)), a.elem_flags, f)
        except OSError as e:
            err = e
            break
        cp += 1
    _write_count(attr, a, cp)
    if err is not None:
        raise err
    return 0


def _batch(cmd: int):
    op, reads, writes = _BATCH_OPS[cmd]

    def handler(kernel: Kernel, attr: memoryview) -> int:
        check_attr_unused_zero(attr, BATCH_END)
        a = MapBatchAttr.from_attr(attr)
        f = map_file(a.map_fd)
        if reads and not f.can_read:
            raise oserror(errno.EPERM)
        if writes and not f.can_write:
            raise oserror(errno.EPERM)
        m = f.map
        if op not in m.batch_ops:
            raise oserror(ENOTSUPP)
        if op in ("lookup", "lookup_and_delete") and isinstance(m, HashMap):
            return _htab_lookup_batch(m, attr, a, delete=op == "lookup_and_delete")
        if op == "lookup":
            return _generic_lookup_batch(m, attr, a)
        return _generic_update_batch(m, f, attr, a, delete=op == "delete")

    handler.__name__ = f"map_{op}_batch"
    return handler


for _cmd in _BATCH_OPS:
    bpf_command(_cmd)(_batch(_cmd))


# -- MAP_FREEZE ------------------------------------------------------------------------------------
@bpf_command(BpfCmd.MAP_FREEZE)
def map_freeze(kernel: Kernel, attr: memoryview) -> int:
    """Freeze the syscall side: later syscall writes are EPERM; programs may still write."""
    check_attr_unused_zero(attr, FREEZE_END)
    fd = int.from_bytes(bytes(attr[:4]).ljust(4, b"\0"), "little")
    f = map_file(fd)
    m = f.map
    if m.spin_lock_off is not None:
        raise oserror(ENOTSUPP)
    if not f.can_write:
        raise oserror(errno.EPERM)
    with m.lock:
        if m.writable_mmaps or m.frozen:
            raise oserror(errno.EBUSY)
        m.frozen = True
    return 0
