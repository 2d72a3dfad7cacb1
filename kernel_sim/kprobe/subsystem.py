"""The kernel's kprobe subsystem: text in memory, the symbol table, registration by name, kcall.

``Kprobes(kernel)`` links the kernel image (kernel_sim/ksym.py), maps its text read-only and
executable, builds the KprobeManager over a ``SimKprobeAuxiliaryOps`` and publishes
/proc/kallsyms and tracefs available_filter_functions. ``register_kprobe`` /
``register_kretprobe`` take a symbol and an offset and answer as Linux's register_kprobe does
(ENOENT unknown symbol, EINVAL notrace or blacklisted function or a kretprobe off the entry,
EILSEQ off an instruction boundary). ``kcall`` is the executor Kernel.kcall delegates to.
"""

from __future__ import annotations

import errno
import threading
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..arch import IllegalInstruction, Trapframe, get_arch
from ..arch.kmem import PAGE, KernelMemory
from ..arch.x86_64 import ENDBR64
from ..fs.file import oserror
from ..ksym import BODY_THUNK, CALL_RETURN, KRETPROBE_TRAMPOLINE, build
from ..task import current
from .core import Handler, Kprobe, KprobeManager
from .executor import Executor
from .kretprobe import Kretprobe, KretprobeManager, RetHandler

if TYPE_CHECKING:
    from ..kernel import Kernel

KSYM_NAME_LEN = 512


class SimKprobeAuxiliaryOps:
    """KprobeAuxiliaryOps over KernelMemory: text_poke-style patching, insn slot pages."""

    def __init__(self, mem: KernelMemory, slot_base: int, slot_size: int = 16) -> None:
        self.mem = mem
        self.slot_base = slot_base
        self.slot_size = slot_size
        # FIFO reuse: a freed slot goes to the back, so a CPU still stepping in it (the probe was
        # unregistered under it) finishes before the slot is handed out again.
        self._free: deque[int] = deque()
        self._pages = 0
        self._lock = threading.Lock()

    def set_writeable_for_address(self, addr: int, length: int, writable: bool) -> None:
        self.mem.set_writable(addr, length, writable)

    def write_text(self, addr: int, data: bytes) -> None:
        """Patch read-only executable memory: open the page, write, close it again."""
        self.set_writeable_for_address(addr, len(data), True)
        try:
            self.mem.write(addr, data)
        finally:
            self.set_writeable_for_address(addr, len(data), False)

    def alloc_executable_memory(self, size: int) -> int:
        if size > self.slot_size:
            raise ValueError(f"an insn slot holds {self.slot_size} bytes, not {size}")
        with self._lock:
            if not self._free:
                base = self.slot_base + self._pages * PAGE
                self._pages += 1
                self.mem.add(f"kprobe_insn_page {self._pages}", base, PAGE, write=False, exec_=True)
                self._free.extend(range(base, base + PAGE, self.slot_size))
            return self._free.popleft()

    def dealloc_executable_memory(self, addr: int, size: int) -> None:
        with self._lock:
            self._free.append(addr)


class Kprobes:
    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.arch = get_arch(kernel.arch)
        self.ksym = build(kernel.arch)
        self.table = self.ksym.table
        image = self.ksym.image
        self.mem = KernelMemory()
        text = self.mem.add(".text", image.text_base, -(-len(image.text) // PAGE) * PAGE, write=False, exec_=True)
        text.buf[: len(image.text)] = image.text
        rodata = self.mem.add(".rodata", image.rodata_base, max(PAGE, -(-len(image.rodata) // PAGE) * PAGE),
                              write=False, exec_=False)
        rodata.buf[: len(image.rodata)] = image.rodata
        self.aux = SimKprobeAuxiliaryOps(self.mem, self.arch.slot_base)
        self.hot: dict[str, int] = {}  # function name -> armed points in it: the slow-path set
        self.manager = KprobeManager(self.arch, self.mem, self.aux, on_arm=self._on_arm)
        self.trampoline = self.table.lookup_name(KRETPROBE_TRAMPOLINE)
        self.kretprobes = KretprobeManager(self.arch, self.mem, self.trampoline)
        self.manager.extra_break_handlers[self.trampoline] = self.kretprobes.trampoline_handler
        self.executor = Executor(self.arch, self.mem, self.manager, self.kretprobes,
                                 self.table.lookup_name(BODY_THUNK), self.table.lookup_name(CALL_RETURN))
        self._addr_of = {name: self.table.lookup_name(name) for name in self.table.names}

    # -- tracing the trap sequence -----------------------------------------------------------------
    def record_traps(self) -> list[tuple[str, int]]:
        """Start recording (event, address) of every trap and handler step; returns the log."""
        log: list[tuple[str, int]] = []
        self.manager.trap_log = self.executor.trap_log = self.kretprobes.trap_log = log
        return log

    # -- pseudo files ----------------------------------------------------------------------------------
    def populate_files(self) -> None:
        vfs = self.kernel.vfs

        def kallsyms() -> str:
            task = current()
            return self.table.kallsyms(show_addresses=task is None or task.uid == 0)

        vfs.add_file("/proc/kallsyms", kallsyms, fs="procfs")
        vfs.add_file("/sys/kernel/tracing/available_filter_functions", self.table.available_filter_functions,
                     fs="tracefs")
        vfs.add_file("/sys/kernel/tracing/kprobe_profile", self._kprobe_profile, fs="tracefs")
        vfs.add_file("/sys/kernel/debug/kprobes/list", self._debugfs_list, fs="tracefs")
        vfs.add_file("/sys/kernel/debug/kprobes/blacklist", self._debugfs_blacklist, fs="tracefs")
        vfs.add_file("/sys/kernel/debug/kprobes/enabled", lambda: "1\n", fs="tracefs")

    def _debugfs_list(self) -> str:
        """debugfs kprobes/list: "address  k|r  symbol+0xoff  " and [DISABLED], as Linux prints it."""
        lines = []
        with self.manager.lock:
            for addr, probes in sorted(self.manager.break_list.items()):
                name, off = self.table.lookup_address(addr) or ("", 0)
                for p in probes:
                    lines.append(f"{addr:016x}  {p.kind}  {name}+{off:#x}    {'' if p.enabled else '[DISABLED]'}\n")
        return "".join(lines)

    def _debugfs_blacklist(self) -> str:
        """debugfs kprobes/blacklist: the functions kprobes refuse (entry code, trampolines)."""
        out = []
        for i, name in enumerate(self.table.names):
            if self.table.notrace[i]:
                start, size, _ = self.table.size_offset(self.table.addrs[i])
                out.append(f"0x{start:016x}-0x{start + size:016x}\t{name}\n")
        return "".join(out)

    def _kprobe_profile(self) -> str:
        """tracefs kprobe_profile: each kprobe event's hits and misses."""
        lines = []
        for key, tp in sorted(self.kernel.tracing.by_name.items()):
            probe = getattr(tp, "probe", None)
            if isinstance(probe, TraceKprobe):
                lines.append(f"  {key.split('/', 1)[1]:<44} {probe.nhit:>15} {probe.nmissed:>15}\n")
        return "".join(lines)

    # -- execution ---------------------------------------------------------------------------------
    def kcall(self, name: str, args: tuple, body: Callable):
        """Kernel.kcall: the Python body directly unless a probe is armed in the function."""
        if name not in self.hot:
            return body(*args)
        return self.executor.call(self._addr_of[name], args, body)

    def kcall_lazy(self, name: str, make_args: Callable[[], tuple], body: Callable[[], object]):
        """kcall whose register arguments are built only when the function runs as machine code.

        Why: a syscall wrapper's argument is a pointer to the user pt_regs in the task's kernel
        memory, and filling that struct costs more than an unprobed syscall; only a probe (which
        puts the function on the slow path) can observe it, so it is built then and only then.
        """
        if name not in self.hot:
            return body()
        return self.executor.call(self._addr_of[name], make_args(), lambda *_: body())

    def _on_arm(self, addr: int, delta: int) -> None:
        found = self.table.lookup_address(addr)
        if found is None:
            return
        name = found[0]
        count = self.hot.get(name, 0) + delta
        if count > 0:
            self.hot[name] = count
        else:
            self.hot.pop(name, None)

    # -- registration ------------------------------------------------------------------------------
    def resolve(self, symbol: str | None, offset: int = 0, retprobe: bool = False, addr: int = 0) -> int:
        """The probe address for symbol+offset (or a bare address), with Linux's errnos."""
        if symbol:
            base = self.table.lookup_name(symbol)
            if base is None:
                raise oserror(errno.ENOENT)
            addr = base + offset
            if offset == 0 and self.arch.name == "x86_64" and self._pristine(addr, 4) == ENDBR64:
                addr += 4  # x86 with IBT: a probe on the entry goes after endbr64 (arch_adjust_kprobe_addr)
        where = self.table.size_offset(addr)
        if where is None:
            raise oserror(errno.EINVAL)
        start, size, off = where
        name = self.table.names[self.table.addrs.index(start)]
        if not self.table.is_traceable(name):
            raise oserror(errno.EINVAL)  # notrace / blacklisted (entry code, trampolines)
        if retprobe and off not in (0, 4 if self._pristine(start, 4) == ENDBR64 else 0):
            raise oserror(errno.EINVAL)  # kretprobes only on a function entry
        code = self._pristine(start, size)
        at = 0
        try:
            while at < off:
                at += self.arch.decode(code, at).length
            if at != off or self.arch.decode(code, at).kind == "break":
                raise oserror(errno.EILSEQ)
        except (IllegalInstruction, IndexError):
            raise oserror(errno.EILSEQ) from None
        return addr

    def _pristine(self, addr: int, n: int) -> bytes:
        """The linked text (what the image holds, whatever breaks are patched in now)."""
        image = self.ksym.image
        off = addr - image.text_base
        return image.text[off : off + n]

    def register_kprobe(self, symbol: str | None, offset: int = 0, pre_handler: Handler | None = None,
                        post_handler: Handler | None = None, *, addr: int = 0, enabled: bool = True) -> Kprobe:
        where = self.resolve(symbol, offset, addr=addr)
        base = self.table.lookup_name(symbol) if symbol else where
        kp = Kprobe(symbol or "", base, where - base, pre_handler, post_handler, enabled)
        code = self._pristine(where, 16)
        return self.manager.register_kprobe(kp, code, self.arch.decode(code))

    def unregister_kprobe(self, kp: Kprobe) -> None:
        self.manager.unregister_kprobe(kp)

    def register_kretprobe(self, symbol: str | None, handler: RetHandler | None = None,
                           entry_handler: RetHandler | None = None, *, offset: int = 0, addr: int = 0,
                           maxactive: int = 0) -> Kretprobe:
        where = self.resolve(symbol, offset, retprobe=True, addr=addr)
        base = self.table.lookup_name(symbol) if symbol else where
        kp = Kprobe(symbol or "", base, where - base, kind="r")
        # Linux's default pool: max(10, 2 * NR_CPUS) instances.
        rp = Kretprobe(kp, handler, entry_handler, maxactive or max(10, 2 * self.kernel.ncpus))
        kp.pre_handler = self.kretprobes.make_entry_handler(rp)
        code = self._pristine(where, 16)
        self.manager.register_kprobe(kp, code, self.arch.decode(code))
        return rp

    def unregister_kretprobe(self, rp: Kretprobe) -> None:
        rp.registered = False
        self.manager.unregister_kprobe(rp.kp)

    # -- the legacy tracefs path -----------------------------------------------------------------------
    def trace_event_hook(self, symbol: str, offset: int, retprobe: bool) -> None:
        """Validation for tracefs kprobe_events definitions (Linux's errnos)."""
        self.resolve(symbol, offset, retprobe)

    def trace_event_probe(self, tp, symbol: str, offset: int, retprobe: bool) -> TraceKprobe:
        return TraceKprobe(self, tp, symbol, offset, retprobe)


class TraceKprobe:
    """The kprobe behind a tracefs "p:kprobes/NAME SYMBOL" event.

    Linux registers it disabled and enables it while perf events use the trace event; here it is
    registered (armed) while the tracepoint has events and unregistered when the last goes, so
    the function stays on the fast path otherwise. A hit runs each enabled event's program on
    the pt_regs, as kprobe_perf_func's trace_call_bpf does.
    """

    def __init__(self, kprobes: Kprobes, tp, symbol: str, offset: int, retprobe: bool) -> None:
        self.kprobes = kprobes
        self.tp = tp
        self.symbol = symbol
        self.offset = offset
        self.retprobe = retprobe
        self.probe: Kprobe | Kretprobe | None = None
        self.nhit = 0
        self._missed_before = 0  # misses of earlier registrations of this event's probe

    @property
    def nmissed(self) -> int:
        return self._missed_before + (self.probe.nmissed if self.probe is not None else 0)

    def _fire(self, _probe, frame: Trapframe) -> None:
        self.nhit += 1
        ctx = None
        for event in list(self.tp.events):
            if event.enabled and event.prog is not None:
                ctx = ctx if ctx is not None else frame.ctx_bytes()
                event.fire(ctx)

    def sync(self) -> None:
        if self.tp.events and self.probe is None:
            if self.retprobe:
                self.probe = self.kprobes.register_kretprobe(self.symbol, handler=self._fire, offset=self.offset)
            else:
                self.probe = self.kprobes.register_kprobe(self.symbol, self.offset, pre_handler=self._fire)
        elif not self.tp.events and self.probe is not None:
            self.release()

    def release(self) -> None:
        self._missed_before = self.nmissed
        if isinstance(self.probe, Kretprobe):
            self.kprobes.unregister_kretprobe(self.probe)
        elif self.probe is not None:
            self.kprobes.unregister_kprobe(self.probe)
        self.probe = None

