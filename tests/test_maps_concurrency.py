"""Maps updated from several simulated CPUs at once (threads) stay consistent.

Each thread runs on its own simulated CPU (``on_cpu``) and hammers one map through the
program-side API while another thread uses bpf() on the same map: no exception escapes, the
element count never passes max_entries, and the bucket walk (get_next_key) sees every key
exactly once.
"""

from __future__ import annotations

import errno
import threading

import pytest
from test_maps_util import MapUser

from kernel_sim.cpus import on_cpu
from kernel_sim.kernel import Kernel
from kernel_sim.uapi.bpf import BPF_ANY, BPF_NOEXIST
from kernel_sim.uapi.bpf import MapType as T

NCPU = 4


@pytest.fixture
def sim():
    kernel = Kernel(cpus=NCPU)
    sys = kernel.syscalls()
    u = MapUser(sys)
    u.obj = lambda fd: sys.task.files.get(fd).map
    yield u
    sys.close_all()


def run_threads(fns) -> list[BaseException]:
    errors: list[BaseException] = []
    start = threading.Barrier(len(fns))

    def wrap(cpu, fn):
        try:
            with on_cpu(cpu):
                start.wait()
                fn(cpu)
        except BaseException as e:  # report, do not hang the barrier
            errors.append(e)

    threads = [threading.Thread(target=wrap, args=(cpu, fn)) for cpu, fn in enumerate(fns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def k(i: int) -> bytes:
    return i.to_bytes(4, "little")


def test_disjoint_inserts_from_all_cpus(sim):
    fd = sim.create(T.HASH, 4, 8, 4 * 300)
    m = sim.obj(fd)
    rets: list[int] = []

    def worker(cpu):
        for i in range(300):
            rets.append(m.prog_update(k(cpu * 1000 + i), (cpu * 1000 + i).to_bytes(8, "little"), BPF_NOEXIST, cpu))

    assert run_threads([worker] * NCPU) == []
    assert set(rets) == {0}
    keys = sim.keys(fd, 4)
    assert len(keys) == len(set(keys)) == NCPU * 300 == len(m)
    for key in keys[::37]:
        assert sim.lookup(fd, key, 8) == key + bytes(4)


def test_contended_keys_with_deletes_and_a_full_map(sim):
    fd = sim.create(T.HASH, 4, 8, 16)
    m = sim.obj(fd)
    seen: set[int] = set()

    def writer(cpu):
        for i in range(2000):
            r = m.prog_update(k((i * 7 + cpu) % 40), i.to_bytes(8, "little"), BPF_ANY, cpu)
            seen.add(r)

    def deleter(cpu):
        for i in range(2000):
            seen.add(m.prog_delete(k(i % 40)))

    universe = {k(i) for i in range(40)}

    def syscall_side(cpu):
        # A walk that meets a deleted key restarts from the first (Linux's get_next_key), so a
        # walk racing deletes and inserts may repeat keys or see more than max_entries over its
        # course; every key it returns is one the writers wrote.
        for _ in range(200):
            keys = sim.keys(fd, 4)
            assert set(keys) <= universe

    assert run_threads([writer, writer, deleter, syscall_side]) == []
    assert seen <= {0, -errno.E2BIG, -errno.ENOENT}
    keys = sim.keys(fd, 4)
    assert len(keys) == len(set(keys)) == len(m) <= 16


def test_lru_under_contention_never_overflows(sim):
    fd = sim.create(T.LRU_HASH, 4, 8, 32)
    m = sim.obj(fd)

    def worker(cpu):
        for i in range(1500):
            key = k(cpu * 10000 + i)
            assert m.prog_update(key, bytes(8), BPF_ANY, cpu) == 0
            m.prog_lookup(key, cpu)

    assert run_threads([worker] * NCPU) == []
    keys = sim.keys(fd, 4)
    assert len(keys) == len(set(keys)) == 32


def test_percpu_counters_do_not_lose_updates(sim):
    """Each CPU bumps its own copy through the value address, as a program's lookup + add does."""
    fd = sim.create(T.PERCPU_ARRAY, 4, 8, 1)
    m = sim.obj(fd)
    vm = sim.obj(fd).kernel.vm

    def worker(cpu):
        addr = m.prog_lookup(k(0), cpu)
        for _ in range(1000):
            n = int.from_bytes(vm.read(addr, 8), "little")
            vm.write(addr, (n + 1).to_bytes(8, "little"))

    assert run_threads([worker] * NCPU) == []
    raw = sim.lookup(fd, k(0), 8 * NCPU)
    assert [int.from_bytes(raw[i * 8:i * 8 + 8], "little") for i in range(NCPU)] == [1000] * NCPU
