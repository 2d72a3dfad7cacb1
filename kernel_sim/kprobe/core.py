"""The kprobe core, with the seed's names: Kprobe, KprobePoint(List), KprobeManager and the two handlers.

Registering a probe patches its address once (the first probe there): the original instruction
is copied into an out-of-line slot from ``KprobeAuxiliaryOps`` and a break replaces it in the
(otherwise read-only) text. When a CPU fetches the break, the trap handler calls
``kprobe_handler_from_break``: it runs the pre-handlers (the BPF program runs here, on the
registers as they are at the probe point, as Linux does), then

- x86_64: points pc at the slot and sets TF; the instruction runs out of line, the debug trap
  calls ``kprobe_handler_from_debug``, which runs the post-handlers, clears TF and resumes after
  the probed instruction;
- riscv64 / loongarch64: points pc at the slot, whose second break traps again;
  ``kprobe_handler_from_break`` finds no probe at that address and hands over to
  ``kprobe_handler_from_debug`` (the debug list is keyed by the second break's address).

Instructions that write pc (call/jal/bl, ret/jr/jirl) are simulated at the probe address instead
of stepped out of line — running them in a slot would compute the wrong target or return
address (Linux simulates them too); the post-handlers then run at once.
Several probes on one address share the point and run in registration order, each with its own
enable flag; the last unregister restores the original instruction.

The handlers take no lock. A CPU is inside an RCU read-side section (rcu.py) from the break to
the trap that ends the out-of-line step; the last unregister at an address disarms and unlinks
the point at once but frees its slot only after a grace period, as Linux's unregister_kprobe
does (synchronize_rcu before free_insn_slot) — a CPU already sent to the slot finishes there.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from ..arch import Arch, Insn, Trapframe
from ..arch.kmem import KernelMemory
from .rcu import Rcu


class CallBackFunc(Protocol):
    """How a BPF program hooks into a probe (the seed's CallBackFunc): called with the trapframe."""

    def call(self, args: Trapframe) -> None: ...


class KprobeAuxiliaryOps(Protocol):
    """The kernel services the kprobe core needs (the seed's KprobeAuxiliaryOps)."""

    def set_writeable_for_address(self, addr: int, length: int, writable: bool) -> None: ...

    def alloc_executable_memory(self, size: int) -> int: ...

    def dealloc_executable_memory(self, addr: int, size: int) -> None: ...

    def write_text(self, addr: int, data: bytes) -> None: ...


Handler = Callable[["Kprobe", Trapframe], None]


@dataclass(eq=False)
class Kprobe:
    """One probe: where it is and what it runs. ``addr`` is symbol_addr + offset."""

    symbol: str
    symbol_addr: int
    offset: int = 0
    pre_handler: Handler | None = None
    post_handler: Handler | None = None
    enabled: bool = True
    event_callback: CallBackFunc | None = None  # runs with the pre-handlers (Linux's order)
    nhit: int = 0
    nmissed: int = 0
    kind: str = "k"  # "k" kprobe, "r" a kretprobe's entry probe (as debugfs kprobes/list shows them)
    addr: int = field(init=False)

    def __post_init__(self) -> None:
        self.addr = self.symbol_addr + self.offset

    def enable(self) -> None:
        self.enabled = True

    def disable(self) -> None:
        self.enabled = False


class KprobeBuilder:
    """The seed's builder: KprobeBuilder(symbol, symbol_addr, offset, pre, post, enable).build()."""

    def __init__(self, symbol: str, symbol_addr: int, offset: int = 0, pre_handler: Handler | None = None,
                 post_handler: Handler | None = None, enable: bool = True) -> None:
        self.kw = dict(symbol=symbol, symbol_addr=symbol_addr, offset=offset, pre_handler=pre_handler,
                       post_handler=post_handler, enabled=enable)
        self.callback: CallBackFunc | None = None

    def with_event_callback(self, callback: CallBackFunc) -> KprobeBuilder:
        self.callback = callback
        return self

    def build(self) -> Kprobe:
        return Kprobe(**self.kw, event_callback=self.callback)


class KprobePoint:
    """A patched address: the saved instruction, its slot, the break that replaced it.

    ``probes`` is replaced, never mutated (a CPU iterating it while another registers or
    unregisters sees one consistent list, as Linux's RCU-protected aggr kprobe list).
    The slot lives until ``release``, which the manager runs only after a grace period.
    """

    def __init__(self, arch: Arch, aux: KprobeAuxiliaryOps, addr: int, original: bytes, insn: Insn) -> None:
        self.arch = arch
        self.aux = aux
        self.addr = addr
        self.insn = insn
        self.original = bytes(original[: insn.length])
        self.simulate = insn.kind in ("call", "jump", "ret")
        self.probes: tuple[Kprobe, ...] = ()
        self.slot = 0
        self.slot_size = 0
        if not self.simulate:
            code = arch.slot_code(self.original)
            self.slot_size = len(code)
            self.slot = aux.alloc_executable_memory(self.slot_size)
            aux.write_text(self.slot, code)
        # x86: the debug trap comes with pc past the stepped instruction; riscv/loongarch: at the
        # second break, which also sits right after the instruction in the slot.
        self.debug_address = self.slot + insn.length if self.slot else 0
        self.brk = arch.break_insn(insn.length)
        self.armed = False
        self.released = False

    def arm(self) -> None:
        self.aux.write_text(self.addr, self.brk)
        self.armed = True

    def disarm(self) -> None:
        self.aux.write_text(self.addr, self.original[: len(self.brk)])
        self.armed = False

    def release(self) -> None:
        """Free the slot. Only after a grace period: a CPU may be stepping it until then."""
        if self.armed:
            self.disarm()
        if self.slot and not self.released:
            self.aux.dealloc_executable_memory(self.slot, self.slot_size)
        self.released = True


class KprobePointList(dict):
    """address -> KprobePoint (the seed's KprobePointList)."""


class KprobeManager:
    """break_list: address -> probes; registration; the trap handlers.

    The trap handlers take no lock: they run inside an RCU read-side section (``self.rcu``)
    from the break to the end of the out-of-line step, and unregistering frees a point's slot
    only after a grace period, so no CPU can be sent into a freed (or reused) slot.

    ``trap_log`` (a list, or None for no recording) receives (event, address) tuples so tests
    can assert the sequence: ("break", a), ("pre", a), ("slot", s), ("debug", d), ("post", a),
    ("resume", r), ("simulate", a).
    """

    def __init__(self, arch: Arch, mem: KernelMemory, aux: KprobeAuxiliaryOps,
                 on_arm: Callable[[int, int], None] | None = None) -> None:
        self.arch = arch
        self.mem = mem
        self.aux = aux
        self.break_list: dict[int, tuple[Kprobe, ...]] = {}
        self.points = KprobePointList()
        self.lock = threading.RLock()
        self.rcu = Rcu()
        self.trap_log: list[tuple[str, int]] | None = None
        self.on_arm = on_arm  # (address, +1 / -1): the kernel keeps its set of probed functions
        self.extra_break_handlers: dict[int, Callable[[Trapframe], bool]] = {}  # kretprobe trampoline
        self._local = threading.local()

    # -- registration ---------------------------------------------------------------------------
    def register_kprobe(self, kprobe: Kprobe, original: bytes, insn: Insn) -> Kprobe:
        """Add a probe at kprobe.addr; the first one there patches the text (original: its insn bytes)."""
        with self.lock:
            point = self.points.get(kprobe.addr)
            if point is None:
                point = KprobePoint(self.arch, self.aux, kprobe.addr, original, insn)
                point.probes = (kprobe,)
                self.break_list[kprobe.addr] = point.probes
                self.points[kprobe.addr] = point  # published before the break is written
                point.arm()
                if self.on_arm:
                    self.on_arm(kprobe.addr, +1)
            else:
                if kprobe in point.probes:
                    raise ValueError("kprobe registered twice")
                point.probes = point.probes + (kprobe,)
                self.break_list[kprobe.addr] = point.probes
        return kprobe

    def unregister_kprobe(self, kprobe: Kprobe) -> None:
        """Remove a probe; the last one at its address restores the text and retires the point.

        As Linux: disarm and unlink now, free the slot after a grace period. From outside a
        handler this waits for the grace period (synchronize_rcu); from inside one (a handler
        unregistering a probe) the slot is freed when this CPU leaves its read-side section.
        """
        with self.lock:
            point = self.points.get(kprobe.addr)
            if point is None or kprobe not in point.probes:
                return
            point.probes = tuple(p for p in point.probes if p is not kprobe)
            if point.probes:
                self.break_list[kprobe.addr] = point.probes
            else:
                point.disarm()  # first: a CPU that still hits the break finds it gone and retries
                del self.points[kprobe.addr]
                del self.break_list[kprobe.addr]
                if self.on_arm:
                    self.on_arm(kprobe.addr, -1)
                self.rcu.call(point.release)
        # Outside the lock (a handler may be waiting for it): once this returns, no CPU runs this
        # probe's handlers any more, whether or not the point stays for other probes.
        self.rcu.synchronize()

    # -- the handlers ------------------------------------------------------------------------------
    def _log(self, event: str, addr: int) -> None:
        if self.trap_log is not None:
            self.trap_log.append((event, addr))

    def kprobe_handler_from_break(self, frame: Trapframe) -> bool:
        """The break trap: a probe's break (pre-handlers, then the out-of-line step) or, without
        single-step, the slot's second break (handed to kprobe_handler_from_debug)."""
        addr = frame.break_address()
        ctl = frame.kprobe_ctl
        if ctl is not None and addr == ctl.debug_address and not frame.single_step_capable:
            return self.kprobe_handler_from_debug(frame)
        rcu = self.rcu
        rcu.read_lock()
        stepping = False
        try:
            point = self.points.get(addr)
            if point is None:
                extra = self.extra_break_handlers.get(addr)
                if extra is not None:
                    return extra(frame)
                if not self._still_break(addr):
                    frame.update_pc(addr)  # the probe went away after we hit it: retry the instruction
                    return True
                return False
            probes = point.probes
            self._log("pre", addr)
            if getattr(self._local, "active", False):
                for p in probes:  # a probe hit inside a handler: counted, not run (Linux's nmissed)
                    p.nmissed += 1
            else:
                self._local.active = True
                try:
                    for p in probes:
                        if p.enabled:
                            p.nhit += 1
                            if p.pre_handler is not None:
                                p.pre_handler(p, frame)
                            if p.event_callback is not None:
                                p.event_callback.call(frame)
                finally:
                    self._local.active = False
            if point.simulate:
                self._log("simulate", addr)
                self.arch.run(frame, self.mem, point.original, addr)
                self._post(point.probes, frame, addr)
                return True
            self._log("slot", point.slot)
            frame.kprobe_ctl = point  # Linux's per-CPU kprobe_ctlblk: the point being stepped
            frame.update_pc(point.slot)
            if frame.single_step_capable:
                frame.set_single_step(True)
            stepping = True  # the read-side section lasts until the step's trap
            return True
        finally:
            if not stepping:
                rcu.read_unlock()

    def kprobe_handler_from_debug(self, frame: Trapframe) -> bool:
        """The second trap (x86 debug / riscv, loongarch second break): post-handlers, resume.

        The point comes from the frame (Linux's kprobe_ctlblk), not from a lookup: it is still
        valid even if it was unregistered while this CPU stepped its slot (it then has no
        probes left, and its slot is not freed before this CPU leaves the read-side section).
        """
        point = frame.kprobe_ctl
        if point is None or point.debug_address != frame.debug_address():
            return False
        frame.kprobe_ctl = None
        try:
            if frame.single_step_capable:
                frame.set_single_step(False)
            self._post(point.probes, frame, point.addr)
            resume = point.addr + point.insn.length
            self._log("resume", resume)
            frame.update_pc(resume)
        finally:
            self.rcu.read_unlock()
        return True

    def abort_step(self, frame: Trapframe) -> None:
        """The function died between the break and the step's trap: leave the read-side section."""
        if frame.kprobe_ctl is not None:
            frame.kprobe_ctl = None
            self.rcu.read_unlock()

    def _post(self, probes: tuple[Kprobe, ...], frame: Trapframe, addr: int) -> None:
        self._log("post", addr)
        if getattr(self._local, "active", False):
            return
        self._local.active = True
        try:
            for p in probes:
                if p.enabled and p.post_handler is not None:
                    p.post_handler(p, frame)
        finally:
            self._local.active = False

    def _still_break(self, addr: int) -> bool:
        try:
            code = self.mem.fetch(addr, 4)
            return self.arch.decode(code).kind == "break"
        except Exception:
            return False


def kprobe_handler_from_break(manager: KprobeManager, frame: Trapframe) -> bool:
    """The break trap's entry into kprobes (the seed's free function): True if it was ours."""
    return manager.kprobe_handler_from_break(frame)


def kprobe_handler_from_debug(manager: KprobeManager, frame: Trapframe) -> bool:
    """The x86 debug (single-step) trap's entry into kprobes: True if it was ours."""
    return manager.kprobe_handler_from_debug(frame)
