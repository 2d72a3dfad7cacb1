"""Maps seen from BPF programs: loaded programs on both kernels, and the program-side API on the sim.

The first tests load the same raw programs on kernel_sim and Linux, run them with
BPF_PROG_TEST_RUN and read the maps back through bpf(): program writes and syscall reads must
meet in the same bytes. The rest drive the program-side API (what the VM's helpers call)
directly on the simulated kernel: value addresses in the VM address space, per-CPU copies,
LRU use marks, queue/stack, perf event output, tail-call tables, ring buffers, mmap-able
arrays, map-in-map handles and reference counts.
"""

from __future__ import annotations

import errno
import mmap
import struct

import pytest
from test_maps_util import MapUser, res
from test_perf_events import output_attr
from test_prog_load_run import load, test_run

from kernel_sim.kernel import Kernel
from kernel_sim.uapi.bpf import (
    BPF_ANY,
    BPF_EXIST,
    BPF_F_CURRENT_CPU,
    BPF_F_INNER_MAP,
    BPF_F_MMAPABLE,
    BPF_NOEXIST,
    BPF_RB_AVAIL_DATA,
    BPF_RINGBUF_HDR_SZ,
    HelperId,
    ProgType,
)
from kernel_sim.uapi.bpf import MapType as T
from kernel_sim.uapi.epoll import EPOLLIN
from kernel_sim.uapi.insn import BPF_ADD, BPF_JEQ, BPF_PSEUDO_MAP_FD, BPF_PSEUDO_MAP_VALUE
from kernel_sim.vm.asm import DW, W, alu64, call, exit_, jmp, lddw, ldx, mov64, st, stx
from kernel_sim.vm.memory import VmFault  # noqa: F401  (the address-space contract this file relies on)


def k(i: int) -> bytes:
    return i.to_bytes(4, "little")


def q(i: int) -> bytes:
    return i.to_bytes(8, "little")


def map_ld(dst: int, fd: int, off: int | None = None):
    if off is None:
        return lddw(dst, fd, BPF_PSEUDO_MAP_FD)
    return lddw(dst, fd | (off << 32), BPF_PSEUDO_MAP_VALUE)


def stack_ptr(reg: int, off: int):
    return [mov64(reg, 10), alu64(BPF_ADD, reg, imm=off)]


# -- programs on both kernels ------------------------------------------------------------------------
def test_program_writes_meet_syscall_reads(bpf_kernel):
    u = MapUser(bpf_kernel)
    h = u.create(T.HASH, 4, 8, 4)
    a = u.create(T.ARRAY, 4, 8, 2)
    pc = u.create(T.PERCPU_ARRAY, 4, 8, 1)
    qu = u.create(T.QUEUE, 0, 8, 2)
    u.update(a, k(0), q(5))
    prog = [
        # hash[7] = 0x1122334455667788
        st(W, 10, -4, 7), lddw(1, 0x1122334455667788), stx(DW, 10, 1, -16),
        map_ld(1, h), stack_ptr(2, -4), stack_ptr(3, -16), mov64(4, imm=BPF_ANY),
        call(HelperId.map_update_elem), mov64(6, 0),
        # array[0] += 5
        st(W, 10, -4, 0), map_ld(1, a), stack_ptr(2, -4), call(HelperId.map_lookup_elem),
        jmp(BPF_JEQ, 0, imm=0, off=3), ldx(DW, 1, 0, 0), alu64(BPF_ADD, 1, imm=5), stx(DW, 0, 1, 0),
        # percpu[0] += 1 (this CPU's copy)
        map_ld(1, pc), stack_ptr(2, -4), call(HelperId.map_lookup_elem),
        jmp(BPF_JEQ, 0, imm=0, off=3), ldx(DW, 1, 0, 0), alu64(BPF_ADD, 1, imm=1), stx(DW, 0, 1, 0),
        # push 0xabc with BPF_EXIST (overwrites the oldest once full)
        st(DW, 10, -16, 0xABC), map_ld(1, qu), stack_ptr(2, -16), mov64(3, imm=BPF_EXIST),
        call(HelperId.map_push_elem),
        mov64(0, 6), exit_(),
    ]
    fd = load(bpf_kernel, ProgType.SOCKET_FILTER, prog)
    for _ in range(3):
        r = test_run(bpf_kernel, fd, bytes(64))
        assert (r.err, r.retval) == (0, 0)
    assert u.lookup(h, k(7), 8) == q(0x1122334455667788)
    assert u.lookup(a, k(0), 8) == q(5 + 3 * 5)
    ncpu = u.possible_cpus()
    per_cpu = struct.unpack(f"<{ncpu}Q", u.lookup(pc, k(0), 8 * ncpu))
    assert sum(per_cpu) == 3
    assert [u.lookup_and_delete(qu, None, 8) for _ in range(2)] == [q(0xABC)] * 2
    assert res(u.lookup_and_delete, qu, None, 8) == ("err", "ENOENT")
    # A frozen map still takes program writes.
    u.freeze(a)
    assert test_run(bpf_kernel, fd, bytes(64)).retval == 0
    assert u.lookup(a, k(0), 8) == q(25)
    assert res(u.update, a, k(0), q(1)) == ("err", "EPERM")
    bpf_kernel.close(fd)
    u.close_all()


def test_direct_value_access(bpf_kernel):
    """BPF_PSEUDO_MAP_VALUE: a single-entry array's value is addressable (global data)."""
    u = MapUser(bpf_kernel)
    g = u.create(T.ARRAY, 4, 16, 1)
    u.update(g, k(0), q(40) + q(2))
    prog = [map_ld(1, g, 8), ldx(DW, 2, 1, 0), alu64(BPF_ADD, 2, imm=100), stx(DW, 1, 2, 0),
            map_ld(1, g, 0), ldx(DW, 0, 1, 0), exit_()]
    fd = load(bpf_kernel, ProgType.SOCKET_FILTER, prog)
    assert test_run(bpf_kernel, fd, bytes(64)).retval == 40
    assert u.lookup(g, k(0), 16) == q(40) + q(102)
    bpf_kernel.close(fd)
    u.close_all()


def test_map_outlives_its_fd_while_a_program_holds_it(bpf_kernel):
    u = MapUser(bpf_kernel)
    a = u.create(T.ARRAY, 4, 8, 1)
    map_id = u.info(a).id
    fd = load(bpf_kernel, ProgType.SOCKET_FILTER, [map_ld(1, a, 0), st(DW, 1, 0, 77), mov64(0, imm=0), exit_()])
    u.close(a)
    from kernel_sim.uapi.bpf import BpfCmd, GetIdAttr, make_attr

    again = bpf_kernel.bpf(BpfCmd.MAP_GET_FD_BY_ID, make_attr(GetIdAttr, start_id=map_id))
    assert test_run(bpf_kernel, fd, bytes(64)).err == 0
    assert u.lookup(again, k(0), 8) == q(77)
    bpf_kernel.close(again)
    bpf_kernel.close(fd)
    if bpf_kernel.kind == "sim":  # Linux frees after an RCU grace period: the id lingers a moment
        with pytest.raises(OSError) as e:
            bpf_kernel.bpf(BpfCmd.MAP_GET_FD_BY_ID, make_attr(GetIdAttr, start_id=map_id))
        assert e.value.errno == errno.ENOENT


# -- the program-side API on the simulated kernel ------------------------------------------------------
@pytest.fixture
def sim():
    kernel = Kernel(cpus=2)
    sys = kernel.syscalls()
    u = MapUser(sys)
    u.kernel = kernel
    u.obj = lambda fd: sys.task.files.get(fd).map
    yield u
    sys.close_all()


def test_array_values_live_in_the_vm(sim):
    fd = sim.create(T.ARRAY, 4, 12, 3)
    m = sim.obj(fd)
    vm = sim.kernel.vm
    sim.update(fd, k(1), b"hello world!")
    addr = m.prog_lookup(k(1), 0)
    assert addr and vm.read(addr, 12) == b"hello world!"
    assert m.prog_lookup(k(2), 0) - addr == 16  # 8-byte stride
    assert m.prog_lookup(k(3), 0) == 0
    assert vm.write(addr, b"HELLO")
    assert sim.lookup(fd, k(1), 12) == b"HELLO world!"
    assert m.prog_update(k(0), b"x" * 12, BPF_NOEXIST, 0) == -errno.EEXIST
    assert m.prog_update(k(3), b"x" * 12, BPF_ANY, 0) == -errno.E2BIG
    assert m.prog_delete(k(0)) == -errno.EINVAL
    assert m.direct_value_size() is None
    base = vm.regions[addr >> 32]
    sim.close(fd)
    assert (addr >> 32) not in vm.regions and base is not None


def test_hash_program_side(sim):
    fd = sim.create(T.HASH, 4, 8, 2)
    m = sim.obj(fd)
    assert m.prog_lookup(k(1), 0) == 0
    assert m.prog_update(k(1), q(10), BPF_EXIST, 0) == -errno.ENOENT
    assert m.prog_update(k(1), q(10), BPF_NOEXIST, 0) == 0
    assert m.prog_update(k(1), q(11), BPF_NOEXIST, 0) == -errno.EEXIST
    assert m.prog_update(k(2), q(20), BPF_ANY, 0) == 0
    assert m.prog_update(k(3), q(30), BPF_ANY, 0) == -errno.E2BIG
    assert m.prog_update(k(1), q(12), 7, 0) == -errno.EINVAL
    addr = m.prog_lookup(k(2), 0)
    assert sim.kernel.vm.read(addr, 8) == q(20)
    sim.kernel.vm.write(addr, q(21))
    assert sim.lookup(fd, k(2), 8) == q(21)
    sim.freeze(fd)
    assert m.prog_update(k(2), q(22), BPF_EXIST, 0) == 0  # frozen: programs still write
    assert sim.lookup(fd, k(2), 8) == q(22)
    assert m.prog_delete(k(1)) == 0
    assert m.prog_delete(k(1)) == -errno.ENOENT
    assert sim.keys(fd, 4) == [k(2)]


def test_percpu_copies(sim):
    fd = sim.create(T.PERCPU_HASH, 4, 4, 4)
    m = sim.obj(fd)
    assert m.prog_update(k(1), k(7), BPF_ANY, 1) == 0  # new element: other CPUs zeroed
    assert sim.lookup(fd, k(1), 16) == bytes(8) + k(7) + bytes(4)
    assert m.prog_update(k(1), k(9), BPF_EXIST, 0) == 0  # existing element: only CPU 0 changes
    assert sim.lookup(fd, k(1), 16) == k(9) + bytes(4) + k(7) + bytes(4)
    a0, a1 = m.prog_lookup(k(1), 0), m.prog_lookup(k(1), 1)
    assert a0 != a1 and sim.kernel.vm.read(a1, 4) == k(7)
    arr = sim.create(T.PERCPU_ARRAY, 4, 8, 2)
    pa = sim.obj(arr)
    sim.kernel.vm.write(pa.prog_lookup(k(1), 1), q(5))
    assert pa.prog_update(k(1), q(6), BPF_ANY, 0) == 0
    assert sim.lookup(arr, k(1), 16) == q(6) + q(5)


def test_lru_keeps_the_recently_used(sim):
    fd = sim.create(T.LRU_HASH, 4, 8, 4)
    m = sim.obj(fd)
    for i in range(4):
        assert m.prog_update(k(i), q(i), BPF_ANY, 0) == 0
    assert m.prog_lookup(k(0), 0)  # key 0 is now the most recently used
    for i in range(4, 7):
        assert m.prog_update(k(i), q(i), BPF_ANY, 0) == 0
    kept = {int.from_bytes(x, "little") for x in sim.keys(fd, 4)}
    assert kept == {0, 4, 5, 6}
    assert m.prog_update(k(9), q(9), BPF_NOEXIST, 0) == 0  # NOEXIST on a full LRU evicts too
    assert len(sim.keys(fd, 4)) == 4


def test_queue_and_stack_program_side(sim):
    qfd, sfd = sim.create(T.QUEUE, 0, 4, 2), sim.create(T.STACK, 0, 4, 2)
    qm, sm = sim.obj(qfd), sim.obj(sfd)
    for m in (qm, sm):
        assert m.prog_pop() == -errno.ENOENT
        assert m.prog_peek() == -errno.ENOENT
        assert m.prog_push(k(1), 0) == 0 and m.prog_push(k(2), 0) == 0
        assert m.prog_push(k(3), 0) == -errno.E2BIG
        assert m.prog_push(k(3), BPF_NOEXIST) == -errno.EINVAL
        assert m.prog_push(k(3), BPF_EXIST) == 0
        assert m.prog_update(None, k(4), 0, 0) == -errno.EINVAL  # bpf_map_update_elem is not push
    assert qm.prog_peek() == k(2) and sm.prog_peek() == k(3)
    assert [qm.prog_pop(), qm.prog_pop()] == [k(2), k(3)]
    assert [sm.prog_pop(), sm.prog_pop()] == [k(3), k(2)]
    sim.update(qfd, None, k(8))
    assert qm.prog_pop() == k(8)


def test_perf_event_output(sim):
    fd = sim.create(T.PERF_EVENT_ARRAY, 4, 4, 2)
    m = sim.obj(fd)
    ev = sim.sys.perf_event_open(output_attr(), -1, 0, -1, 0)
    buf = sim.sys.mmap(ev, 2 * mmap.PAGESIZE, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED, 0)
    sim.update(fd, k(0), k(ev))
    assert m.perf_event_output(0, 5, b"x") == -errno.E2BIG
    assert m.perf_event_output(1, BPF_F_CURRENT_CPU, b"x") == -errno.ENOENT
    assert m.perf_event_output(1, 0, b"x") == -errno.EOPNOTSUPP  # the event is CPU 0's
    assert m.perf_event_output(0, 1 << 40, b"x") == -errno.EINVAL
    assert m.perf_event_output(0, BPF_F_CURRENT_CPU, b"abcd") == 0
    event = sim.sys.task.files.get(ev)
    assert event.count == 1 and event.poll() & EPOLLIN
    sim.sys.munmap(buf)
    sim.sys.close(ev)
    assert m.perf_event_output(0, 0, b"x") == 0  # the map keeps the event alive
    sim.close(fd)


def test_perf_event_array_entries_follow_the_map_file(sim):
    fd = sim.create(T.PERF_EVENT_ARRAY, 4, 4, 1)
    m = sim.obj(fd)
    ev = sim.sys.perf_event_open(output_attr(), -1, 0, -1, 0)
    sim.update(fd, k(0), k(ev))
    from kernel_sim.uapi.bpf import BpfCmd, GetIdAttr, make_attr

    other = sim.sys.bpf(BpfCmd.MAP_GET_FD_BY_ID, make_attr(GetIdAttr, start_id=sim.info(fd).id))
    sim.sys.close(fd)  # the file that installed the event: without PRESERVE_ELEMS it is dropped
    assert m.event_at(0) is None
    assert res(sim.delete, other, k(0)) == ("err", "ENOENT")


def test_prog_array_and_map_in_map(sim):
    pa = sim.create(T.PROG_ARRAY, 4, 4, 4)
    m = sim.obj(pa)
    pfd = load(sim.sys, ProgType.SOCKET_FILTER, [mov64(0, imm=3), exit_()])
    sim.update(pa, k(2), k(pfd))
    prog = sim.sys.task.files.get(pfd).prog
    assert m.prog_at(2) is prog and m.prog_at(1) is None and m.prog_at(9) is None
    assert sim.lookup(pa, k(2), 4) == k(prog.id)
    sim.sys.close(pfd)
    assert m.prog_at(2) is prog  # the table holds the program
    sim.close(pa)  # last user reference: the table is cleared, the program freed
    assert prog.id not in sim.kernel.ids["prog"].objects

    inner = sim.create(T.ARRAY, 4, 8, 4, BPF_F_INNER_MAP)
    aom = sim.create(T.ARRAY_OF_MAPS, 4, 4, 2, inner_map_fd=inner)
    sim.update(aom, k(1), k(inner))
    outer, inner_map = sim.obj(aom), sim.obj(inner)
    handle = outer.prog_lookup(k(1), 0)
    assert handle and sim.kernel.vm.object_at(handle) is inner_map
    assert outer.prog_lookup(k(0), 0) == 0
    sim.close(inner)
    assert inner_map.id in sim.kernel.ids["map"].objects  # held by the outer map
    hom = sim.create(T.HASH_OF_MAPS, 4, 4, 2, inner_map_fd=sim.create(T.HASH, 4, 8, 4))
    h2 = sim.create(T.HASH, 4, 8, 8)
    sim.update(hom, k(5), k(h2))
    assert sim.kernel.vm.object_at(sim.obj(hom).prog_lookup(k(5), 0)) is sim.obj(h2)
    assert sim.obj(hom).prog_lookup(k(6), 0) == 0


def test_ringbuf_map(sim):
    fd = sim.create(T.RINGBUF, 0, 0, 4096)
    m = sim.obj(fd)
    vm = sim.kernel.vm
    woke = []
    sim.sys.task.files.get(fd).wq.add(woke.append)
    assert sim.sys.task.files.get(fd).poll() == 0
    addr = m.ringbuf_reserve(5, 0)
    assert addr and m.ringbuf_reserve(5, 1) == 0
    assert vm.write(addr, b"hello")
    m.ringbuf_submit(addr, 0)
    assert woke and sim.sys.task.files.get(fd).poll() & EPOLLIN
    assert m.ringbuf_output(b"xyz", 0) == 0
    assert m.ringbuf_output(b"xyz", 8) == -errno.EINVAL
    assert m.ringbuf_query(BPF_RB_AVAIL_DATA) == 16 + 16
    ro = sim.sys.mmap(fd, 3 * 4096, mmap.PROT_READ, mmap.MAP_SHARED, 0)
    data = bytes(memoryview(ro)[2 * 4096:2 * 4096 + 32])
    assert struct.unpack_from("<I", data, 0)[0] == 5 and data[BPF_RINGBUF_HDR_SZ:BPF_RINGBUF_HDR_SZ + 5] == b"hello"
    assert data[16 + BPF_RINGBUF_HDR_SZ:16 + BPF_RINGBUF_HDR_SZ + 3] == b"xyz"
    sim.sys.munmap(ro)
    assert res(sim.sys.mmap, fd, 4096, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED, 4096) == ("err", "EPERM")


def test_mmapable_array_is_shared_with_programs(sim):
    fd = sim.create(T.ARRAY, 4, 8, 4, BPF_F_MMAPABLE)
    m = sim.obj(fd)
    um = sim.sys.mmap(fd, 4096, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED, 0)
    view = memoryview(um).cast("B")
    view[8:16] = q(1234)
    assert sim.kernel.vm.read(m.prog_lookup(k(1), 0), 8) == q(1234)
    assert m.prog_update(k(2), q(99), BPF_ANY, 0) == 0
    assert bytes(view[16:24]) == q(99)
    assert sim.lookup(fd, k(1), 8) == q(1234)
    assert res(sim.freeze, fd) == ("err", "EBUSY")  # a writable mapping is alive
    view.release()
    sim.sys.munmap(um)
    assert sim.freeze(fd) == 0
    assert res(sim.sys.mmap, fd, 4096, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED, 0) == ("err", "EPERM")
    ro = sim.sys.mmap(fd, 4096, mmap.PROT_READ, mmap.MAP_SHARED, 0)
    assert bytes(memoryview(ro)[16:24]) == q(99)
    sim.sys.munmap(ro)


def test_direct_value_addr(sim):
    one = sim.obj(sim.create(T.ARRAY, 4, 24, 1))
    assert one.direct_value_size() == 24
    assert one.direct_value_addr(8) == one.prog_lookup(k(0), 0) + 8
    with pytest.raises(OSError):
        one.direct_value_addr(24)
    assert sim.obj(sim.create(T.HASH, 4, 8, 1)).direct_value_size() is None


def test_stack_trace_map(sim):
    fd = sim.create(T.STACK_TRACE, 4, 8 * 4, 16)
    m = sim.obj(fd)
    a = m.prog_store_stack([0xFFFFFFFF81000010, 0xFFFFFFFF81000020], 0)
    assert a >= 0
    assert m.prog_store_stack([0xFFFFFFFF81000010, 0xFFFFFFFF81000020], 0) == a  # same stack, same id
    assert sim.lookup(fd, k(a), 32) == struct.pack("<4Q", 0xFFFFFFFF81000010, 0xFFFFFFFF81000020, 0, 0)
    assert m.prog_store_stack([1, 2, 3], 1) == m.prog_store_stack([2, 3], 0)  # skip 1 frame
    assert m.prog_store_stack([1], 1) == -errno.EFAULT  # nothing left after skipping
    assert m.prog_store_stack([1], 1 << 12) == -errno.EINVAL
    ids = {int.from_bytes(x, "little") for x in sim.keys(fd, 4)}
    assert a in ids and len(ids) == 2
    assert sim.delete(fd, k(a)) == 0
    assert res(sim.lookup, fd, k(a), 32) == ("err", "ENOENT")
    # A different stack that lands on a taken id: EEXIST unless BPF_F_REUSE_STACKID.
    from kernel_sim.bpf.maps.jhash import jhash2

    taken = m.prog_store_stack([7], 0)
    clash = next(s for s in range(8, 100000) if jhash2(q(s), 0) & 15 == taken)
    assert m.prog_store_stack([clash], 0) == -errno.EEXIST
    assert m.prog_store_stack([clash], 1 << 10) == taken  # BPF_F_REUSE_STACKID replaces the stack
    assert sim.lookup(fd, k(taken), 32)[:8] == q(clash)


def test_bloom_filter_program_side(sim):
    fd = sim.create(T.BLOOM_FILTER, 0, 4, 100)
    m = sim.obj(fd)
    assert m.prog_peek_value(k(5)) == -errno.ENOENT
    assert m.prog_push(k(5), 0) == 0
    assert m.prog_push(k(6), BPF_EXIST) == -errno.EINVAL
    assert m.prog_peek_value(k(5)) == 0
    misses = sum(m.prog_peek_value(k(i)) == -errno.ENOENT for i in range(1000, 1200))
    assert misses > 150  # one element in a 1024-bit filter: few false positives


def test_lpm_trie_program_side(sim):
    fd = sim.create(T.LPM_TRIE, 8, 8, 4, 1)  # BPF_F_NO_PREALLOC
    m = sim.obj(fd)

    def key(plen, ip):
        return struct.pack("<I", plen) + bytes(ip)

    assert m.prog_update(key(16, [10, 1, 0, 0]), q(16), BPF_ANY, 0) == 0
    assert m.prog_update(key(8, [10, 0, 0, 0]), q(8), BPF_NOEXIST, 0) == 0
    assert m.prog_update(key(8, [10, 0, 0, 0]), q(9), BPF_NOEXIST, 0) == -errno.EEXIST
    addr = m.prog_lookup(key(32, [10, 1, 7, 7]), 0)
    assert sim.kernel.vm.read(addr, 8) == q(16)
    assert sim.kernel.vm.read(m.prog_lookup(key(32, [10, 2, 7, 7]), 0), 8) == q(8)
    assert m.prog_lookup(key(32, [11, 0, 0, 0]), 0) == 0
    assert m.prog_delete(key(16, [10, 1, 0, 0])) == 0
    assert sim.kernel.vm.read(m.prog_lookup(key(32, [10, 1, 7, 7]), 0), 8) == q(8)


def test_percpu_lookup_of_a_cpu_that_does_not_exist(sim):
    for fd in (sim.create(T.PERCPU_ARRAY, 4, 8, 2), sim.create(T.PERCPU_HASH, 4, 8, 2)):
        m = sim.obj(fd)
        m.prog_update(k(0), q(1), BPF_ANY, 0)
        assert m.prog_lookup(k(0), 1) and m.prog_lookup(k(0), 2) == 0 and m.prog_lookup(k(0), -1) == 0


def test_closing_maps_gives_back_vm_regions(sim):
    """Every map type maps its storage once and unmaps it when the last reference goes."""
    vm = sim.kernel.vm
    baseline = len(vm.regions)
    for _ in range(3):
        fds = [sim.create(*args) for args in (
            (T.HASH, 4, 8, 4), (T.ARRAY, 4, 8, 4), (T.PERCPU_HASH, 4, 8, 4), (T.PERCPU_ARRAY, 4, 8, 4),
            (T.LRU_HASH, 4, 8, 4), (T.LRU_PERCPU_HASH, 4, 8, 4), (T.RINGBUF, 0, 0, 4096), (T.LPM_TRIE, 8, 8, 4, 1),
            (T.ARRAY, 4, 8, 4, BPF_F_MMAPABLE), (T.QUEUE, 0, 8, 4), (T.STACK_TRACE, 4, 8, 4), (T.BLOOM_FILTER, 0, 8, 4),
        )]
        assert len(vm.regions) > baseline
        for fd in fds:
            sim.close(fd)
        assert len(vm.regions) == baseline
    assert not sim.kernel.ids["map"].objects


def test_prog_elements_for_each_map_elem(sim):
    h = sim.create(T.HASH, 4, 8, 8)
    for i in range(5):
        sim.update(h, k(i), q(i * 10))
    elems = sim.obj(h).prog_elements(0)
    assert [key for key, _ in elems] == sim.keys(h, 4)  # the same walk as get_next_key
    assert all(sim.kernel.vm.read(addr, 8) == q(int.from_bytes(key, "little") * 10) for key, addr in elems)
    pa = sim.create(T.PERCPU_ARRAY, 4, 8, 3)
    sim.update(pa, k(2), q(1) + q(2))
    elems = sim.obj(pa).prog_elements(1)
    assert [key for key, _ in elems] == [k(0), k(1), k(2)]
    assert sim.kernel.vm.read(elems[2][1], 8) == q(2)
    assert sim.obj(sim.create(T.QUEUE, 0, 8, 2)).prog_elements(0) is None
