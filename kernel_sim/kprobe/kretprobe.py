"""Kretprobes: an entry probe swaps the return address for a trampoline whose break runs the return handler.

At function entry the caller's return address is where the arch keeps it (x86: *rsp; riscv: ra;
loongarch: $r1). The entry handler takes an instance from the probe's pool (maxactive of them;
none free = a missed return, counted in nmissed), saves the real return address in it, pushes it
on the current thread's instance stack (Linux keeps them per task) and writes the trampoline
address in its place. The function runs normally; its return lands on the trampoline, whose
break traps; the trampoline handler pops the instance, sets pc to the real return address (so
handlers see where the function returns to, as Linux sets it before calling them) and runs the
return handler with the return value in the arch's return register.

Unregistering while calls are in flight: each instance holds its own return address, so a
call whose return address was already swapped still returns through the trampoline to the
right place (without the handler, ``registered`` is False). The trampoline's break runs inside
the kprobe core's RCU read-side section, so unregister_kretprobe returns only after return
handlers already running have finished.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from ..arch import Arch, Trapframe
from ..arch.kmem import KernelMemory
from .core import Kprobe


@dataclass(eq=False)
class KretprobeInstance:
    rp: Kretprobe
    ret_addr: int = 0
    data: dict = field(default_factory=dict)


RetHandler = Callable[[KretprobeInstance, Trapframe], None]


@dataclass(eq=False)
class Kretprobe:
    kp: Kprobe
    handler: RetHandler | None = None
    entry_handler: RetHandler | None = None
    maxactive: int = 20
    nmissed: int = 0
    free: list[KretprobeInstance] = field(default_factory=list)
    registered: bool = True  # instances still in flight after unregister return without the handler

    def __post_init__(self) -> None:
        self.free = [KretprobeInstance(self) for _ in range(self.maxactive)]

    @property
    def enabled(self) -> bool:
        return self.kp.enabled


class KretprobeManager:
    """The trampoline side: per-thread instance stacks and the trampoline break's handler."""

    def __init__(self, arch: Arch, mem: KernelMemory, trampoline: int) -> None:
        self.arch = arch
        self.mem = mem
        self.trampoline = trampoline
        self._local = threading.local()
        self._lock = threading.Lock()
        self.trap_log: list[tuple[str, int]] | None = None

    def _stack(self) -> list[KretprobeInstance]:
        stack = getattr(self._local, "stack", None)
        if stack is None:
            stack = self._local.stack = []
        return stack

    def depth(self) -> int:
        return len(self._stack())

    def make_entry_handler(self, rp: Kretprobe) -> Callable[[Kprobe, Trapframe], None]:
        def pre_handler_kretprobe(_kp: Kprobe, frame: Trapframe) -> None:
            with self._lock:
                ri = rp.free.pop() if rp.free else None
            if ri is None:
                rp.nmissed += 1
                return
            ri.ret_addr = self.arch.return_address(frame, self.mem)
            ri.data = {}
            if rp.entry_handler is not None:
                rp.entry_handler(ri, frame)
            self._stack().append(ri)
            self.arch.set_return_address(frame, self.mem, self.trampoline)

        return pre_handler_kretprobe

    def trampoline_handler(self, frame: Trapframe) -> bool:
        stack = self._stack()
        if not stack:
            return False  # a return to the trampoline nobody prepared: an oops
        ri = stack.pop()
        if self.trap_log is not None:
            self.trap_log.append(("trampoline", self.trampoline))
        frame.update_pc(ri.ret_addr)
        try:
            if ri.rp.registered and ri.rp.enabled and ri.rp.handler is not None:
                ri.rp.handler(ri, frame)
        finally:
            self._recycle(ri)
        return True

    def _recycle(self, ri: KretprobeInstance) -> None:
        with self._lock:
            ri.rp.free.append(ri)

    def unwind(self, depth: int) -> None:
        """Drop the instances of calls that did not return (a body raised): back to their pools."""
        stack = self._stack()
        while len(stack) > depth:
            self._recycle(stack.pop())
