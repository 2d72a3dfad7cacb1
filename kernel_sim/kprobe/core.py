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
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from ..arch import Arch, Insn, Trapframe
from ..arch.kmem import KernelMemory


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
    """A patched address: the saved instruction, its slot, the break that replaced it."""

    def __init__(self, arch: Arch, aux: KprobeAuxiliaryOps, addr: int, original: bytes, insn: Insn) -> None:
        self.arch = arch
        self.aux = aux
        self.addr = addr
        self.insn = insn
        self.original = bytes(original[: insn.length])
        self.simulate = insn.kind in ("call", "jump", "ret")
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

    def arm(self) -> None:
        self.aux.write_text(self.addr, self.brk)
        self.armed = True

    def disarm(self) -> None:
        self.aux.write_text(self.addr, self.original[: len(self.brk)])
        self.armed = False

    def release(self) -> None:
        if self.armed:
            self.disarm()
        if self.slot:
            self.aux.dealloc_executable_memory(self.slot, self.slot_size)
            self.slot = 0


class KprobePointList(dict):
    """address -> KprobePoint (the seed's KprobePointList)."""


class KprobeManager:
    """break_list / debug_list: address -> probes; registration; the trap handlers.

    ``trap_log`` (a list, or None for no recording) receives (event, address) tuples so tests
    can assert the sequence: ("break", a), ("pre", a), ("slot", s), ("debug", d), ("post", a),
    ("resume", r), ("simulate", a).
    """

    def __init__(self, arch: Arch, mem: KernelMemory, aux: KprobeAuxiliaryOps,
                 on_arm: Callable[[int, int], None] | None = None) -> None:
        self.arch = arch
        self.mem = mem
        self.aux = aux
        self.break_list: dict[int, list[Kprobe]] = {}
        self.debug_list: dict[int, list[Kprobe]] = {}
        self.points = KprobePointList()
        self._debug_points: dict[int, KprobePoint] = {}
        self.lock = threading.RLock()
        self.trap_log: list[tuple[str, int]] | None = None
        self.on_arm = on_arm  # (address, +1 / -1): the kernel keeps its set of probed functions
        self.extra_break_handlers: dict[int, Callable[[Trapframe], bool]] = {}  # kretprobe trampoline
        self._local = threading.local()

    # -- registration ---------------------------------------------------------------------------
    def register_kprobe(self, kprobe: Kprobe, original: bytes, insn: Insn) -> Kprobe:
        """Add a probe at kprobe.addr; the first one there patches the text (original: its insn bytes)."""
        with self.lock:
            probes = self.break_list.get(kprobe.addr)
            if probes is None:
                point = KprobePoint(self.arch, self.aux, kprobe.addr, original, insn)
                self.points[kprobe.addr] = point
                probes = []
                if point.debug_address:
                    self.debug_list[point.debug_address] = probes
                    self._debug_points[point.debug_address] = point
                self.break_list[kprobe.addr] = probes
                probes.append(kprobe)
                point.arm()
                if self.on_arm:
                    self.on_arm(kprobe.addr, +1)
            else:
                if kprobe in probes:
                    raise ValueError("kprobe registered twice")
                probes.append(kprobe)
        return kprobe

    def unregister_kprobe(self, kprobe: Kprobe) -> None:
        with self.lock:
            probes = self.break_list.get(kprobe.addr)
            if probes is None or kprobe not in probes:
                return
            probes.remove(kprobe)
            if probes:
                return
            point = self.points[kprobe.addr]
            point.disarm()  # first: a CPU that still hits the break finds it gone and retries
            del self.points[kprobe.addr]
            del self.break_list[kprobe.addr]
            if point.debug_address:
                self.debug_list.pop(point.debug_address, None)
                self._debug_points.pop(point.debug_address, None)
            point.release()
            if self.on_arm:
                self.on_arm(kprobe.addr, -1)

    # -- the handlers ------------------------------------------------------------------------------
    def _log(self, event: str, addr: int) -> None:
        if self.trap_log is not None:
            self.trap_log.append((event, addr))

    def kprobe_handler_from_break(self, frame: Trapframe) -> bool:
        """The break trap: a probe's break (pre-handlers, then the out-of-line step) or, without
        single-step, the slot's second break (handed to kprobe_handler_from_debug)."""
        addr = frame.break_address()
        probes = self.break_list.get(addr)
        if probes is None:
            extra = self.extra_break_handlers.get(addr)
            if extra is not None:
                return extra(frame)
            if addr in self.debug_list or getattr(frame, "kprobe_ctl", None) is not None:
                return self.kprobe_handler_from_debug(frame)
            if not self._still_break(addr):
                frame.update_pc(addr)  # the probe went away after we hit it: retry the instruction
                return True
            return False
        point = self.points[addr]
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
            self._post(probes, frame, addr)
            return True
        self._log("slot", point.slot)
        frame.kprobe_ctl = point  # Linux's per-CPU kprobe_ctlblk: the point being stepped
        frame.update_pc(point.slot)
        if frame.single_step_capable:
            frame.set_single_step(True)
        return True

    def kprobe_handler_from_debug(self, frame: Trapframe) -> bool:
        """The second trap (x86 debug / riscv, loongarch second break): post-handlers, resume."""
        daddr = frame.debug_address()
        point = self._debug_points.get(daddr)
        probes = self.debug_list.get(daddr)
        if point is None or probes is None:
            # Unregistered while this CPU was stepping its slot: finish the step without handlers.
            point = getattr(frame, "kprobe_ctl", None)
            if point is None or point.debug_address != daddr:
                return False
            probes = []
        frame.kprobe_ctl = None
        if frame.single_step_capable:
            frame.set_single_step(False)
        self._post(probes, frame, point.addr)
        resume = point.addr + point.insn.length
        self._log("resume", resume)
        frame.update_pc(resume)
        return True

    def _post(self, probes: list[Kprobe], frame: Trapframe, addr: int) -> None:
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
