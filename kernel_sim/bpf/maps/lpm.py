"""lpm_trie: longest-prefix-match maps with Linux's trie shape (kernel/bpf/lpm_trie.c).

Keys are ``u32 prefixlen`` + data (bits counted from the most significant bit of data[0]).
The trie is built exactly as Linux builds it — real nodes, intermediate nodes where two
prefixes part, replacement in place — because get_next_key walks it in post-order (more
specific prefixes first) and userland sees that order. Values sit in VM slots (8-byte stride)
like a hash map's, so a program's lookup returns the value's address.
"""

from __future__ import annotations

import errno
from collections import deque
from typing import TYPE_CHECKING

from ...fs.file import File, oserror
from ...uapi.bpf import (
    BPF_EXIST,
    BPF_F_LOCK,
    BPF_F_NO_PREALLOC,
    BPF_F_NUMA_NODE,
    BPF_NOEXIST,
    MapCreateAttr,
    MapType,
)
from .base import ACCESS_MASK, KMALLOC_MAX_SIZE, UnifiedMap, alloc_buffer, flags_access_ok, round8

if TYPE_CHECKING:
    from ...kernel import Kernel

LPM_DATA_SIZE_MAX = 256
LPM_KEY_SIZE_MIN = 4 + 1
LPM_KEY_SIZE_MAX = 4 + LPM_DATA_SIZE_MAX
LPM_VAL_SIZE_MAX = KMALLOC_MAX_SIZE - LPM_DATA_SIZE_MAX - 24  # minus sizeof(struct lpm_trie_node)
LPM_CREATE_FLAG_MASK = BPF_F_NO_PREALLOC | BPF_F_NUMA_NODE | ACCESS_MASK


class _Node:
    __slots__ = ("prefixlen", "data", "bits", "child", "im", "slot")

    def __init__(self, prefixlen: int, data: bytes, slot: int | None, im: bool = False) -> None:
        self.prefixlen = prefixlen
        self.data = data
        self.bits = int.from_bytes(data, "big")
        self.child: list[_Node | None] = [None, None]
        self.im = im
        self.slot = slot


class LpmTrieMap(UnifiedMap):
    map_type = MapType.LPM_TRIE
    batch_ops = frozenset({"lookup", "update", "delete"})

    @classmethod
    def alloc_check(cls, attr: MapCreateAttr) -> None:
        f = attr.map_flags
        if (attr.max_entries == 0 or not f & BPF_F_NO_PREALLOC or f & ~LPM_CREATE_FLAG_MASK
                or not flags_access_ok(f) or not LPM_KEY_SIZE_MIN <= attr.key_size <= LPM_KEY_SIZE_MAX
                or not 1 <= attr.value_size <= LPM_VAL_SIZE_MAX):
            raise oserror(errno.EINVAL)

    def __init__(self, kernel: Kernel, attr: MapCreateAttr) -> None:
        super().__init__(kernel, attr)
        self.data_size = self.key_size - 4
        self.max_prefixlen = self.data_size * 8
        self.root: _Node | None = None
        self.n_entries = 0
        self.stride = round8(self.value_size)
        self.values = alloc_buffer((self.max_entries + 1) * self.stride)
        self.base = kernel.vm.map_region(self.values)
        self._free: deque[int] = deque()
        self._fresh = 0

    def free_storage(self) -> None:
        self.kernel.vm.unmap_region(self.base)

    # -- slots ---------------------------------------------------------------------------------
    def _take(self, value: bytes) -> int:
        if self._free:
            slot = self._free.popleft()
        else:
            slot, self._fresh = self._fresh, self._fresh + 1
        off = slot * self.stride
        self.values[off:off + self.stride] = bytes(value[:self.value_size]).ljust(self.stride, b"\0")
        return slot

    def _release(self, slot: int | None) -> None:
        if slot is not None:
            self._free.append(slot)

    # -- bits ------------------------------------------------------------------------------------
    def _split(self, key: bytes) -> tuple[int, bytes, int]:
        plen = int.from_bytes(key[:4], "little")
        data = bytes(key[4:4 + self.data_size])
        return plen, data, int.from_bytes(data, "big")

    def _bit(self, bits: int, index: int) -> int:
        return (bits >> (self.max_prefixlen - 1 - index)) & 1

    def _match(self, node: _Node, plen: int, bits: int) -> int:
        limit = min(node.prefixlen, plen)
        diff = node.bits ^ bits
        same = self.max_prefixlen - diff.bit_length()
        return min(limit, same)

    # -- lookup ------------------------------------------------------------------------------------
    def _lookup_node(self, key: bytes) -> _Node | None:
        plen, _data, bits = self._split(key)
        if plen > self.max_prefixlen:
            return None
        found = None
        node = self.root
        while node is not None:
            matchlen = self._match(node, plen, bits)
            if matchlen == self.max_prefixlen:
                found = node
                break
            if matchlen < node.prefixlen:
                break
            if not node.im:
                found = node
            node = node.child[self._bit(bits, node.prefixlen)]
        return found

    def sys_lookup(self, key: bytes | None, flags: int) -> bytes:
        with self.lock:
            node = self._lookup_node(key)
            if node is None:
                raise oserror(errno.ENOENT)
            off = node.slot * self.stride
            return bytes(self.values[off:off + self.value_size])

    def prog_lookup(self, key: bytes, cpu: int = 0) -> int:
        with self.lock:
            node = self._lookup_node(bytes(key))
            return 0 if node is None else self.base + node.slot * self.stride

    # -- update --------------------------------------------------------------------------------------
    def _check_add(self, flags: int) -> None:
        if flags == BPF_EXIST:
            raise oserror(errno.ENOENT)
        if self.n_entries == self.max_entries:
            raise oserror(errno.ENOSPC)
        self.n_entries += 1

    def _update(self, key: bytes, value: bytes, flags: int) -> None:
        if flags & BPF_F_LOCK or flags > BPF_EXIST:
            raise oserror(errno.EINVAL)
        plen, data, bits = self._split(key)
        if plen > self.max_prefixlen:
            raise oserror(errno.EINVAL)
        with self.lock:
            new = _Node(plen, data, self._take(value))
            try:
                self._insert(new, plen, bits, flags)
            except OSError:
                self._release(new.slot)
                raise

    def _insert(self, new: _Node, plen: int, bits: int, flags: int) -> None:
        parent, side = None, 0
        node = self.root
        matchlen = 0
        while node is not None:
            matchlen = self._match(node, plen, bits)
            if node.prefixlen != matchlen or node.prefixlen == plen:
                break
            parent, side = node, self._bit(bits, node.prefixlen)
            node = node.child[side]

        def put(n: _Node) -> None:
            if parent is None:
                self.root = n
            else:
                parent.child[side] = n

        if node is None:
            self._check_add(flags)
            put(new)
            return
        if node.prefixlen == matchlen:
            if not node.im:
                if flags == BPF_NOEXIST:
                    raise oserror(errno.EEXIST)
            else:
                self._check_add(flags)
            new.child = node.child
            put(new)
            self._release(node.slot)
            return
        self._check_add(flags)
        if matchlen == plen:
            new.child[self._bit(node.bits, matchlen)] = node
            put(new)
            return
        im = _Node(matchlen, node.data, None, im=True)
        if self._bit(bits, matchlen):
            im.child = [node, new]
        else:
            im.child = [new, node]
        put(im)

    def sys_update(self, key: bytes | None, value: bytes, flags: int, map_file: File | None) -> None:
        self._update(key, value, flags)

    def prog_update(self, key: bytes, value: bytes, flags: int = 0, cpu: int = 0) -> int:
        try:
            self._update(bytes(key), bytes(value), flags)
        except OSError as e:
            return -e.errno
        return 0

    # -- delete ------------------------------------------------------------------------------------
    def _delete(self, key: bytes) -> None:
        plen, _data, bits = self._split(key)
        if plen > self.max_prefixlen:
            raise oserror(errno.EINVAL)
        with self.lock:
            # slots as (holder, index): holder None is the root pointer
            trim = (None, 0)
            trim2 = trim
            parent = None
            node = self.root
            matchlen = 0
            while node is not None:
                matchlen = self._match(node, plen, bits)
                if node.prefixlen != matchlen or node.prefixlen == plen:
                    break
                parent = node
                trim2 = trim
                nb = self._bit(bits, node.prefixlen)
                trim = (node, nb)
                node = node.child[nb]
            if node is None or node.prefixlen != plen or node.prefixlen != matchlen or node.im:
                raise oserror(errno.ENOENT)
            self.n_entries -= 1

            def assign(slot, value) -> None:
                holder, idx = slot
                if holder is None:
                    self.root = value
                else:
                    holder.child[idx] = value

            if node.child[0] is not None and node.child[1] is not None:
                node.im = True
                self._release(node.slot)
                node.slot = None
                return
            if parent is not None and parent.im and node.child[0] is None and node.child[1] is None:
                other = parent.child[1] if node is parent.child[0] else parent.child[0]
                assign(trim2, other)
                self._release(node.slot)
                return
            assign(trim, node.child[0] if node.child[0] is not None else node.child[1])
            self._release(node.slot)

    def sys_delete(self, key: bytes | None) -> None:
        self._delete(key)

    def prog_delete(self, key: bytes) -> int:
        try:
            self._delete(bytes(key))
        except OSError as e:
            return -e.errno
        return 0

    # -- get_next_key: post-order, more specific prefixes first ------------------------------------
    def _key_of(self, node: _Node) -> bytes:
        return node.prefixlen.to_bytes(4, "little") + node.data

    def _leftmost(self, node: _Node | None) -> _Node:
        nxt = None
        while node is not None:
            if node.im:
                node = node.child[0]
            else:
                nxt = node
                node = node.child[0]
                if node is None:
                    node = nxt.child[1]
        return nxt

    def sys_get_next_key(self, key: bytes | None) -> bytes:
        with self.lock:
            root = self.root
            if root is None:
                raise oserror(errno.ENOENT)
            if key is None:
                return self._key_of(self._leftmost(root))
            plen, _data, bits = self._split(key)
            if plen > self.max_prefixlen:
                return self._key_of(self._leftmost(root))
            stack: list[_Node] = []
            node = root
            matchlen = 0
            while node is not None:
                stack.append(node)
                matchlen = self._match(node, plen, bits)
                if node.prefixlen != matchlen or node.prefixlen == plen:
                    break
                node = node.child[self._bit(bits, node.prefixlen)]
            if node is None or node.prefixlen != matchlen or node.im:
                return self._key_of(self._leftmost(root))
            node = stack[-1]
            while len(stack) > 1:
                parent = stack[-2]
                if parent.child[0] is node and parent.child[1] is not None:
                    return self._key_of(self._leftmost(parent.child[1]))
                if not parent.im:
                    return self._key_of(parent)
                node = parent
                stack.pop()
            raise oserror(errno.ENOENT)

    def __len__(self) -> int:
        return self.n_entries
