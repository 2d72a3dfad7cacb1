"""Linux's BPF LRU (kernel/bpf/bpf_lru_list.c) for lru_hash and lru_percpu_hash.

Why model it instead of a plain "evict the oldest": Linux does not evict one element per insert.
Each CPU takes free nodes from the global free list in batches of ``target_free``
(max_entries / possible CPUs / 2, between 1 and 128); when none are left it flushes the CPU's
pending nodes into the global inactive list, rotates the active/inactive lists (nodes with the
reference bit go to the active list) and shrinks the inactive list by up to ``target_free``
unreferenced nodes at once. So a 256-entry map filled with 300 keys on a 2-CPU machine keeps 236
of them, on Linux and here. The reference bit is set by program lookups (bpf_map_lookup_elem)
and by updates that replace an existing element, not by syscall lookups.

Nodes are the map's value slots (ints); lists are Linux's circular doubly linked lists with
sentinel heads, kept in two arrays of next/prev indexes so moves are O(1).
"""

from __future__ import annotations

from collections.abc import Callable

LOCAL_FREE_TARGET = 128
LOCAL_NR_SCANS = LOCAL_FREE_TARGET
PERCPU_FREE_TARGET = 4

ACTIVE, INACTIVE, FREE, LOCAL_FREE, LOCAL_PENDING = range(5)


class _Lists:
    """Intrusive circular lists over node ids; list heads are extra ids past the nodes."""

    def __init__(self, nnodes: int, nheads: int) -> None:
        total = nnodes + nheads
        self.nxt = list(range(total))
        self.prv = list(range(total))
        self._next_head = nnodes

    def new_head(self) -> int:
        h = self._next_head
        self._next_head += 1
        return h

    def empty(self, head: int) -> bool:
        return self.nxt[head] == head

    def first(self, head: int) -> int | None:
        n = self.nxt[head]
        return None if n == head else n

    def delete(self, node: int) -> None:
        p, n = self.prv[node], self.nxt[node]
        self.nxt[p] = n
        self.prv[n] = p
        self.nxt[node] = self.prv[node] = node

    def add(self, node: int, head: int) -> None:
        """list_add: right after head (the new first element)."""
        n = self.nxt[head]
        self.nxt[head] = node
        self.prv[node] = head
        self.nxt[node] = n
        self.prv[n] = node

    def move(self, node: int, head: int) -> None:
        self.delete(node)
        self.add(node, head)

    def reverse(self, head: int):
        """list_for_each_entry_safe_reverse: tail first; the body may move the current node."""
        node = self.prv[head]
        while node != head:
            prev = self.prv[node]
            yield node
            node = prev

    def forward(self, head: int):
        node = self.nxt[head]
        while node != head:
            nxt = self.nxt[node]
            yield node
            node = nxt


class _LruList:
    """struct bpf_lru_list: active, inactive and free lists, counts, the rotation cursor."""

    def __init__(self, lists: _Lists) -> None:
        self.heads = {ACTIVE: lists.new_head(), INACTIVE: lists.new_head(), FREE: lists.new_head()}
        self.counts = {ACTIVE: 0, INACTIVE: 0}
        self.next_inactive_rotation = self.heads[INACTIVE]


class _LocalList:
    """struct bpf_lru_locallist: a CPU's free and pending nodes."""

    def __init__(self, lists: _Lists, cpu: int) -> None:
        self.free = lists.new_head()
        self.pending = lists.new_head()
        self.next_steal = cpu


class BpfLru:
    """The LRU of one map. ``del_from_htab(node)`` removes the node's key from the hash table
    (returns False if the node holds no live key); it is called with the map lock held."""

    def __init__(self, nr_elems: int, ncpus: int, percpu: bool, del_from_htab: Callable[[int], bool]) -> None:
        self.percpu = percpu
        self.ncpus = ncpus
        self.del_from_htab = del_from_htab
        self.nr_scans = LOCAL_NR_SCANS
        nheads = (3 * ncpus) if percpu else (3 + 2 * ncpus)
        self.L = _Lists(nr_elems, nheads)
        self.type = [FREE] * nr_elems
        self.ref = bytearray(nr_elems)
        self.cpu = [0] * nr_elems
        if percpu:
            self.pcpu_lists = [_LruList(self.L) for _ in range(ncpus)]
            per = max(nr_elems // ncpus, 1)
            for i in range(nr_elems):
                cpu = min(i // per, ncpus - 1)
                self.cpu[i] = cpu
                self.L.add(i, self.pcpu_lists[cpu].heads[FREE])
        else:
            self.common = _LruList(self.L)
            self.locals = [_LocalList(self.L, cpu) for cpu in range(ncpus)]
            self.target_free = min(max(nr_elems // ncpus // 2, 1), LOCAL_FREE_TARGET)
            for i in range(nr_elems):
                self.L.add(i, self.common.heads[FREE])

    # -- reference bit ----------------------------------------------------------------------
    def set_ref(self, node: int) -> None:
        if not self.ref[node]:
            self.ref[node] = 1

    # -- node moves inside a bpf_lru_list ---------------------------------------------------------
    def _count(self, lst: _LruList, t: int, delta: int) -> None:
        if t in lst.counts:
            lst.counts[t] += delta

    def _node_move(self, lst: _LruList, node: int, tgt: int) -> None:
        if self.type[node] != tgt:
            self._count(lst, self.type[node], -1)
            self._count(lst, tgt, 1)
            self.type[node] = tgt
        self.ref[node] = 0
        if node == lst.next_inactive_rotation:
            lst.next_inactive_rotation = self.L.prv[node]
        self.L.move(node, lst.heads[tgt])

    def _node_move_in(self, lst: _LruList, node: int, tgt: int) -> None:
        self._count(lst, tgt, 1)
        self.type[node] = tgt
        self.ref[node] = 0
        self.L.move(node, lst.heads[tgt])

    def _node_move_to_free(self, lst: _LruList, node: int, free_head: int, tgt_free_type: int) -> None:
        if node == lst.next_inactive_rotation:
            lst.next_inactive_rotation = self.L.prv[node]
        self._count(lst, self.type[node], -1)
        self.type[node] = tgt_free_type
        self.L.move(node, free_head)

    # -- rotation and shrinking ---------------------------------------------------------------------
    def _rotate_active(self, lst: _LruList) -> None:
        head = lst.heads[ACTIVE]
        first = self.L.first(head)
        i = 0
        for node in self.L.reverse(head):
            self._node_move(lst, node, ACTIVE if self.ref[node] else INACTIVE)
            i += 1
            if i == self.nr_scans or node == first:
                break

    def _rotate_inactive(self, lst: _LruList) -> None:
        L = self.L
        inactive = lst.heads[INACTIVE]
        if L.empty(inactive):
            return
        last = L.nxt[lst.next_inactive_rotation]
        if last == inactive:
            last = L.nxt[last]
        cur = lst.next_inactive_rotation
        nxt = inactive
        i = 0
        while i < self.nr_scans:
            if cur == inactive:
                cur = L.prv[cur]
                continue
            nxt = L.prv[cur]
            if self.ref[cur]:
                self._node_move(lst, cur, ACTIVE)
            if cur == last:
                break
            cur = nxt
            i += 1
        lst.next_inactive_rotation = nxt

    def _rotate(self, lst: _LruList) -> None:
        if lst.counts[INACTIVE] < lst.counts[ACTIVE]:
            self._rotate_active(lst)
        self._rotate_inactive(lst)

    def _shrink_inactive(self, lst: _LruList, tgt: int, free_head: int, free_type: int) -> int:
        n = i = 0
        for node in self.L.reverse(lst.heads[INACTIVE]):
            if self.ref[node]:
                self._node_move(lst, node, ACTIVE)
            elif self.del_from_htab(node):
                self._node_move_to_free(lst, node, free_head, free_type)
                n += 1
                if n == tgt:
                    break
            i += 1
            if i == self.nr_scans:
                break
        return n

    def _shrink(self, lst: _LruList, tgt: int, free_head: int, free_type: int) -> int:
        n = self._shrink_inactive(lst, tgt, free_head, free_type)
        if n:
            return n
        victims = lst.heads[INACTIVE] if not self.L.empty(lst.heads[INACTIVE]) else lst.heads[ACTIVE]
        for node in self.L.reverse(victims):  # force: ignore the reference bit
            if self.del_from_htab(node):
                self._node_move_to_free(lst, node, free_head, free_type)
                return 1
        return 0

    # -- common LRU: per-CPU local lists in front of the global one ------------------------------------
    def _flush_local(self, loc: _LocalList) -> None:
        for node in self.L.reverse(loc.pending):
            self._node_move_in(self.common, node, ACTIVE if self.ref[node] else INACTIVE)

    def _pop_free_to_local(self, loc: _LocalList) -> None:
        lst = self.common
        self._flush_local(loc)
        self._rotate(lst)
        nfree = 0
        for node in self.L.forward(lst.heads[FREE]):
            self._node_move_to_free(lst, node, loc.free, LOCAL_FREE)
            nfree += 1
            if nfree == self.target_free:
                break
        if nfree < self.target_free:
            self._shrink(lst, self.target_free - nfree, loc.free, LOCAL_FREE)

    def _add_pending(self, loc: _LocalList, cpu: int, node: int) -> None:
        self.cpu[node] = cpu
        self.type[node] = LOCAL_PENDING
        self.ref[node] = 0
        self.L.move(node, loc.pending)

    def _local_pop_free(self, loc: _LocalList) -> int | None:
        node = self.L.first(loc.free)
        if node is not None:
            self.L.delete(node)
        return node

    def _local_pop_pending(self, loc: _LocalList) -> int | None:
        for force in (False, True):
            for node in self.L.reverse(loc.pending):
                if (not self.ref[node] or force) and self.del_from_htab(node):
                    self.L.delete(node)
                    return node
        return None

    def _common_pop_free(self, cpu: int) -> int | None:
        loc = self.locals[cpu]
        node = self._local_pop_free(loc)
        if node is None:
            self._pop_free_to_local(loc)
            node = self._local_pop_free(loc)
        if node is not None:
            self._add_pending(loc, cpu, node)
            return node
        first = steal = loc.next_steal
        while True:
            victim = self.locals[steal]
            node = self._local_pop_free(victim)
            if node is None:
                node = self._local_pop_pending(victim)
            steal = (steal + 1) % self.ncpus
            if node is not None or steal == first:
                break
        loc.next_steal = steal
        if node is not None:
            self._add_pending(loc, cpu, node)
        return node

    def _percpu_pop_free(self, cpu: int) -> int | None:
        lst = self.pcpu_lists[cpu]
        self._rotate(lst)
        free = lst.heads[FREE]
        if self.L.empty(free):
            self._shrink(lst, PERCPU_FREE_TARGET, free, FREE)
        node = self.L.first(free)
        if node is not None:
            self.ref[node] = 0
            self._node_move(lst, node, INACTIVE)
        return node

    # -- the two entry points ---------------------------------------------------------------------------
    def pop_free(self, cpu: int) -> int | None:
        """A free node for a new element on ``cpu`` (evicting as Linux does), or None."""
        cpu %= self.ncpus
        return self._percpu_pop_free(cpu) if self.percpu else self._common_pop_free(cpu)

    def push_free(self, node: int) -> None:
        """The node's element was deleted or replaced."""
        if self.percpu:
            self._node_move(self.pcpu_lists[self.cpu[node]], node, FREE)
            return
        if self.type[node] == LOCAL_PENDING:
            self.type[node] = LOCAL_FREE
            self.ref[node] = 0
            self.L.move(node, self.locals[self.cpu[node]].free)
            return
        self._node_move(self.common, node, FREE)
