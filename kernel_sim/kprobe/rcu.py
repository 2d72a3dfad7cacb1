"""A small RCU for the kprobe core: readers never lock; retired points are freed after a grace period.

Linux never frees a kprobe's out-of-line instruction slot while a CPU may still be inside it:
``unregister_kprobe`` disarms the probe and unlinks it, then waits for a grace period
(``synchronize_rcu``: every CPU that could have seen the probe has left its handler and its
single-step), and only then frees the slot. This module gives the kprobe core the same
guarantee for simulated CPUs (threads):

- ``read_lock`` / ``read_unlock`` bracket a read-side critical section: from the break trap to
  the end of the out-of-line step (or of the simulation). They nest; each thread has its own
  record whose sequence number is odd while the thread is inside.
- ``call(fn)`` queues ``fn`` to run once every thread that was inside a section at that moment
  has left it (Linux's call_rcu). It never blocks, so it is safe from inside a handler.
- ``synchronize()`` waits for that grace period and runs the callbacks that became due (Linux's
  synchronize_rcu). Called from inside a read-side section it cannot wait for itself; it
  returns at once and the callbacks run when the section ends.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable


class _Reader:
    """One thread's read-side state: nesting depth and a sequence number, odd while inside.

    A thread that died inside a section (it cannot leave it any more) counts as quiescent.
    """

    __slots__ = ("nesting", "seq", "thread")

    def __init__(self) -> None:
        self.nesting = 0
        self.seq = 0
        self.thread = weakref.ref(threading.current_thread())

    def gone(self) -> bool:
        thread = self.thread()
        return thread is None or not thread.is_alive()


class Rcu:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._local = threading.local()
        self._readers: list[_Reader] = []
        # (the readers inside when fn was queued, with their sequence numbers then; fn)
        self._callbacks: list[tuple[list[tuple[_Reader, int]], Callable[[], None]]] = []

    def _me(self) -> _Reader:
        me = getattr(self._local, "reader", None)
        if me is None:
            me = self._local.reader = _Reader()
            with self._lock:
                self._readers = [r for r in self._readers if not r.gone()] + [me]  # drop dead threads
        return me

    # -- readers -----------------------------------------------------------------------------------
    def read_lock(self) -> None:
        me = self._me()
        me.nesting += 1
        if me.nesting == 1:
            me.seq += 1  # odd: inside

    def read_unlock(self) -> None:
        me = self._local.reader
        me.nesting -= 1
        if me.nesting == 0:
            me.seq += 1  # even: quiescent
            if self._callbacks:
                self.poll()

    def in_reader(self) -> bool:
        me = getattr(self._local, "reader", None)
        return me is not None and me.nesting > 0

    # -- writers -----------------------------------------------------------------------------------
    def _inside(self) -> list[tuple[_Reader, int]]:
        with self._lock:
            readers = list(self._readers)
        return [(r, s) for r in readers if (s := r.seq) & 1]

    @staticmethod
    def _elapsed(snapshot: list[tuple[_Reader, int]]) -> bool:
        return all(r.seq != s or r.gone() for r, s in snapshot)

    def call(self, fn: Callable[[], None]) -> None:
        """Run fn after a grace period (now, if no thread is inside a read-side section)."""
        snapshot = self._inside()
        if not snapshot:
            fn()
            return
        with self._lock:
            self._callbacks.append((snapshot, fn))

    def poll(self) -> None:
        """Run the callbacks whose grace period has elapsed."""
        due, waiting = [], []
        with self._lock:
            for cb in self._callbacks:
                (due if self._elapsed(cb[0]) else waiting).append(cb)
            if not due:
                return
            self._callbacks = waiting
        for _, fn in due:
            fn()

    def pending(self) -> int:
        """Callbacks still waiting for their grace period."""
        with self._lock:
            return len(self._callbacks)

    def synchronize(self, patience: float = 5.0) -> bool:
        """Wait until every thread inside a read-side section now has left it, then run due callbacks.

        True when the grace period elapsed. False from inside a read-side section (waiting would
        deadlock on ourselves) or after ``patience`` seconds (a reader blocked on something the
        caller holds): the queued callbacks then still run, at the readers' read_unlock, so
        deferral alone keeps freed memory safe; the wait only adds Linux's promise that no
        handler runs any more once unregister returns.
        """
        if self.in_reader():
            return False
        snapshot = self._inside()
        deadline = time.monotonic() + patience
        delay = 0.0
        while not self._elapsed(snapshot):
            if time.monotonic() > deadline:
                return False
            time.sleep(delay)
            delay = min(0.001, delay + 0.0001)
        self.poll()
        return True
