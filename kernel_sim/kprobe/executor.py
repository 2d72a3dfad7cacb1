"""The CPU side of a kernel function call: fetch, execute, trap — used only for probed functions.

``Kernel.kcall(name, args, body)`` takes the fast path (``body(*args)``, one set lookup) unless
a probe is armed somewhere in the function. Then ``Executor.call`` runs the function's machine
code: a trapframe with the arguments in the arch's argument registers, the stack pointer on
this thread's kernel stack, the return address where the arch's call puts it; each step fetches
the bytes at pc and executes them (kernel_sim/arch). A break traps into
``kprobe_handler_from_break``, the x86 single-step into ``kprobe_handler_from_debug``. When pc
reaches the body thunk the Python body runs and its value goes into the return register; the
thunk's ``ret`` and the function's epilogue then run as machine code, so a kretprobe's swapped
return address really is where control goes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from ..arch import TRAP_BREAK, TRAP_DEBUG, Arch
from ..arch.kmem import KernelMemory
from .core import KprobeManager, kprobe_handler_from_break, kprobe_handler_from_debug
from .kretprobe import KretprobeManager

STACK_SIZE = 16 * 1024
MAX_STEPS = 10_000


class KernelOops(Exception):
    """An unhandled trap or a runaway function: the simulated kernel would oops here."""


class Executor:
    def __init__(self, arch: Arch, mem: KernelMemory, manager: KprobeManager, kretprobes: KretprobeManager,
                 thunk: int, call_return: int) -> None:
        self.arch = arch
        self.mem = mem
        self.manager = manager
        self.kretprobes = kretprobes
        self.thunk = thunk
        self.call_return = call_return
        self._local = threading.local()
        self._stacks = 0
        self._lock = threading.Lock()
        self.trap_log: list[tuple[str, int]] | None = None
        # pc -> (memory generation, step function): fetch and decode once per unchanged text
        self._tcache: dict[int, tuple[int, Callable]] = {}

    def _stack_top(self) -> int:
        sp = getattr(self._local, "sp", None)
        if sp is None:
            with self._lock:
                base = self.arch.stack_base + self._stacks * 2 * STACK_SIZE  # a guard gap between stacks
                self._stacks += 1
            self.mem.add(f"kernel stack {self._stacks}", base, STACK_SIZE, write=True, exec_=False)
            sp = self._local.sp = base + STACK_SIZE
        return sp

    def call(self, addr: int, args: tuple, body: Callable) -> object:
        arch, mem, manager = self.arch, self.mem, self.manager
        frame = arch.trapframe()
        frame.set_args(args)
        outer_sp = self._stack_top()
        frame.sp = (outer_sp - 64) & ~15
        arch.enter(frame, mem, self.call_return)
        frame.pc = addr
        depth = self.kretprobes.depth()
        result: object = None
        int_result = False
        log = self.trap_log
        tcache = self._tcache
        try:
            for _ in range(MAX_STEPS):
                pc = frame.pc
                if pc == self.call_return:
                    break
                if pc == self.thunk:
                    self._local.sp = frame.sp - 64  # calls the body makes nest below this frame
                    try:
                        result = body(*args)
                    finally:
                        self._local.sp = outer_sp
                    if isinstance(result, bool) or not isinstance(result, int):
                        frame.return_value = 0
                    else:
                        frame.return_value = result
                        int_result = True
                entry = tcache.get(pc)
                if entry is None or entry[0] != mem.generation:
                    gen = mem.generation  # read before the fetch: a patch racing it invalidates the entry
                    entry = tcache[pc] = (gen, arch.compile(mem.fetch(pc, 8), pc))
                trap = entry[1](frame, mem)
                if trap == TRAP_BREAK:
                    if log is not None:
                        log.append(("break", pc))
                    if not kprobe_handler_from_break(manager, frame):
                        raise KernelOops(f"unhandled break at {pc:#x}")
                elif trap == TRAP_DEBUG:
                    if log is not None:
                        log.append(("debug", frame.pc))
                    if not kprobe_handler_from_debug(manager, frame):
                        raise KernelOops(f"unexpected debug trap at {frame.pc:#x}")
            else:
                raise KernelOops(f"function at {addr:#x} did not return")
        finally:
            self._local.sp = outer_sp
            manager.abort_step(frame)  # died mid-step (an oops): leave the kprobe read-side section
            self.kretprobes.unwind(depth)
        if int_result:  # an int body: its value is what the return register holds now
            rv = frame.return_value
            return rv - (1 << 64) if rv >> 63 else rv
        return result
