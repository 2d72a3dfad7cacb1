"""The kernel symbol table, built as the seed's ksym builds it: link, generate the table, link again.

First link: every kernel function (Linux's names: the syscall entry points of the arch, the
functions they call, a few notrace entry and trampoline symbols) gets machine code for the arch
(kernel_sim/arch) and an address in the kernel text, laid out in order and aligned as the arch
aligns functions. Then the symbol table is *generated from that image* — as ``nm -n`` on the
first link's output is turned into an assembly table — into a .rodata blob: count, addresses,
name offsets, type letters, names. Second link: the same text plus the blob after it (text
comes before .rodata, so no text address moves: the link checks it). Lookups run on the parsed
blob, not on the layout's Python objects: name -> address, address -> (name, offset) with a
symbol's extent running to the next symbol (as kallsyms_lookup_size_offset computes it).

/proc/kallsyms and /sys/kernel/tracing/available_filter_functions are generated from the table.
Like scripts/kallsyms, the table does not list its own kallsyms_* symbols.
"""

from __future__ import annotations

import bisect
import struct
from dataclasses import dataclass

from .arch import Arch, get_arch
from .syscall_table import ENTRY_PREFIX, syscalls_of

PAGE = 4096
BODY_THUNK = "__sim_call_body"  # where a function's Python body runs (then it returns)
CALL_RETURN = "__sim_call_return"  # the return address of a call made from Python
KRETPROBE_TRAMPOLINE = "arch_rethook_trampoline"


@dataclass(frozen=True)
class KernelFunction:
    """A function of the kernel image: its name, nm type letter, and how it is built."""

    name: str
    kind: str = "T"  # nm type: T global text, t static text
    notrace: bool = False  # no ftrace site: not in available_filter_functions, not kprobe-able
    entry: bool = False  # indirect-call target (x86: starts with endbr64)
    special: str = ""  # "thunk", "return", "trampoline": code other than a normal function


# The Linux-named functions kernel_sim runs (kernel_sim/syscall_entry.py) and their neighbours
# in Linux's call chains, with Linux's linkage (static functions are 't').
CORE_FUNCTIONS: tuple[tuple[str, str], ...] = (
    ("do_sys_openat2", "t"), ("do_sys_open", "T"), ("getname_flags", "T"), ("do_filp_open", "T"),
    ("vfs_open", "T"), ("security_file_open", "T"), ("ksys_read", "T"), ("vfs_read", "T"),
    ("ksys_write", "T"), ("vfs_write", "T"), ("close_fd", "T"), ("filp_close", "T"),
    ("do_unlinkat", "T"), ("do_execveat_common", "t"), ("bprm_execve", "t"), ("kernel_clone", "T"),
    ("copy_process", "t"), ("wake_up_new_task", "T"), ("do_exit", "T"), ("do_group_exit", "T"),
    ("do_nanosleep", "t"), ("hrtimer_nanosleep", "T"), ("__sys_connect", "T"),
    ("inet_stream_connect", "T"), ("tcp_v4_connect", "T"), ("tcp_connect", "T"),
    ("__sys_bpf", "t"), ("bpf_prog_load", "t"), ("map_create", "t"), ("bpf_map_update_value", "t"),
    ("__do_sys_perf_event_open", "t"), ("perf_event_alloc", "t"), ("perf_ioctl", "t"),
    ("do_epoll_wait", "t"), ("do_epoll_ctl", "T"), ("do_eventfd", "t"), ("newuname", "T"),
    ("schedule", "T"), ("__schedule", "t"), ("finish_task_switch", "t"), ("try_to_wake_up", "t"),
    ("wake_up_process", "T"), ("kmalloc_trace", "T"), ("kfree", "T"),
)


def kernel_functions(arch: str) -> list[KernelFunction]:
    """Every function of the arch's kernel image, in link order."""
    prefix = ENTRY_PREFIX[arch]
    funcs: list[KernelFunction] = []
    if arch == "x86_64":
        funcs.append(KernelFunction("entry_SYSCALL_64", notrace=True))
        funcs.append(KernelFunction("do_syscall_64", notrace=True))
        funcs.append(KernelFunction("x64_sys_call"))
    else:
        funcs.append(KernelFunction("handle_exception", notrace=True))
        funcs.append(KernelFunction("do_syscall"))
    for name in sorted(syscalls_of(arch)):
        funcs.append(KernelFunction(prefix + name, entry=True))
    seen = {f.name for f in funcs}
    for name, kind in CORE_FUNCTIONS:
        if name.startswith("__x64_") and arch != "x86_64":
            continue
        if name not in seen:
            funcs.append(KernelFunction(name, kind))
            seen.add(name)
    funcs.append(KernelFunction(BODY_THUNK, "t", notrace=True, special="thunk"))
    funcs.append(KernelFunction(CALL_RETURN, "t", notrace=True, special="return"))
    funcs.append(KernelFunction(KRETPROBE_TRAMPOLINE, "T", notrace=True, special="trampoline"))
    return funcs


@dataclass
class LinkedSymbol:
    name: str
    addr: int
    size: int
    kind: str
    notrace: bool
    body_call: int = -1  # offset of the call of the Python body (-1: none)


@dataclass
class KernelImage:
    """The output of a link: the text bytes at text_base and the .rodata after them."""

    arch: str
    text_base: int
    text: bytes
    symbols: list[LinkedSymbol]
    rodata_base: int
    rodata: bytes

    @property
    def text_end(self) -> int:
        return self.text_base + len(self.text)


def _layout(arch: Arch, funcs: list[KernelFunction]) -> list[tuple[KernelFunction, int, int]]:
    """Addresses and sizes: code lengths do not depend on addresses, so this is the link map."""
    out, addr = [], arch.text_base
    for f in funcs:
        size = len(_code_of(arch, f, addr, addr))
        out.append((f, addr, size))
        addr += size
        addr = -(-addr // arch.func_align) * arch.func_align
    return out


def _code_of(arch: Arch, f: KernelFunction, addr: int, thunk: int) -> bytes:
    if f.special == "thunk":
        return arch.emit_thunk()
    if f.special in ("trampoline", "return"):
        return arch.emit_trampoline()  # the return point is never executed: a break guards it
    return arch.emit_function(addr, thunk, f.entry).code


def link(arch_name: str, funcs: list[KernelFunction], rodata: bytes = b"") -> KernelImage:
    """One link: lay out the text, relocate the body calls, append .rodata page-aligned."""
    arch = get_arch(arch_name)
    layout = _layout(arch, funcs)
    thunk = next(addr for f, addr, _ in layout if f.special == "thunk")
    text = bytearray()
    symbols = []
    for f, addr, _size in layout:
        pad = addr - arch.text_base - len(text)
        text += (arch.pad_byte * pad)[:pad]
        if f.special:
            code, body_call = _code_of(arch, f, addr, thunk), -1
        else:
            fc = arch.emit_function(addr, thunk, f.entry)
            code, body_call = fc.code, fc.body_call
        text += code
        symbols.append(LinkedSymbol(f.name, addr, len(code), f.kind, f.notrace, body_call))
    pad = -len(text) % arch.func_align
    text += (arch.pad_byte * pad)[:pad]
    rodata_base = arch.text_base + -(-len(text) // PAGE) * PAGE
    return KernelImage(arch_name, arch.text_base, bytes(text), symbols, rodata_base, rodata)


# -- the generated table ---------------------------------------------------------------------------
_HDR = struct.Struct("<4sIQ")  # magic, count, text end (_etext)
_MAGIC = b"KSYM"


def generate_table(image: KernelImage) -> bytes:
    """The symbol table of a first link's image, as a .rodata blob (what ksym's tool emits).

    Layout: header; u64 addresses[count] sorted; u32 name_offsets[count]; u8 type[count]
    (upper bit: notrace); NUL-terminated names. Duplicates by address keep the first name.
    """
    syms, seen = [], set()
    for s in sorted(image.symbols, key=lambda s: s.addr):
        if s.addr in seen or s.name.startswith("kallsyms_"):
            continue
        seen.add(s.addr)
        syms.append(s)
    names = bytearray()
    offsets = []
    for s in syms:
        offsets.append(len(names))
        names += s.name.encode() + b"\0"
    out = bytearray(_HDR.pack(_MAGIC, len(syms), image.text_end))
    out += struct.pack(f"<{len(syms)}Q", *(s.addr for s in syms))
    out += struct.pack(f"<{len(syms)}I", *offsets)
    out += bytes(ord(s.kind) | (0x80 if s.notrace else 0) for s in syms)
    out += names
    return bytes(out)


class SymbolTable:
    """Lookups over a generated table blob (kallsyms_lookup_name / kallsyms_lookup_size_offset)."""

    def __init__(self, blob: bytes) -> None:
        magic, count, self.text_end = _HDR.unpack_from(blob, 0)
        if magic != _MAGIC:
            raise ValueError("not a ksym table")
        at = _HDR.size
        self.addrs = list(struct.unpack_from(f"<{count}Q", blob, at))
        at += 8 * count
        offsets = struct.unpack_from(f"<{count}I", blob, at)
        at += 4 * count
        types = blob[at : at + count]
        at += count
        names_blob = blob[at:]
        self.names = [names_blob[o : names_blob.index(b"\0", o)].decode() for o in offsets]
        self.kinds = [chr(t & 0x7F) for t in types]
        self.notrace = [bool(t & 0x80) for t in types]
        self._by_name = {n: i for i, n in enumerate(self.names)}

    def __len__(self) -> int:
        return len(self.names)

    def __contains__(self, name: str) -> bool:
        return name in self._by_name

    def lookup_name(self, name: str) -> int | None:
        """name -> address (None if the kernel has no such symbol)."""
        i = self._by_name.get(name)
        return None if i is None else self.addrs[i]

    def _index(self, addr: int) -> int | None:
        i = bisect.bisect_right(self.addrs, addr) - 1
        if i < 0 or addr >= self.text_end:
            return None
        return i

    def lookup_address(self, addr: int) -> tuple[str, int] | None:
        """address -> (symbol name, offset into it), or None outside the kernel text."""
        i = self._index(addr)
        return None if i is None else (self.names[i], addr - self.addrs[i])

    def size_offset(self, addr: int) -> tuple[int, int, int] | None:
        """(symbol start, size, offset) of the symbol holding addr; its size runs to the next one."""
        i = self._index(addr)
        if i is None:
            return None
        end = self.addrs[i + 1] if i + 1 < len(self.addrs) else self.text_end
        return self.addrs[i], end - self.addrs[i], addr - self.addrs[i]

    def is_traceable(self, name: str) -> bool:
        i = self._by_name.get(name)
        return i is not None and not self.notrace[i]

    def kallsyms(self, show_addresses: bool = True) -> str:
        """/proc/kallsyms: "address type name" in address order (zeros without CAP_SYSLOG)."""
        return "".join(f"{a if show_addresses else 0:016x} {k} {n}\n"
                       for a, k, n in zip(self.addrs, self.kinds, self.names, strict=True))

    def available_filter_functions(self) -> str:
        """The traceable functions (those with an ftrace site), in address order."""
        return "".join(f"{n}\n" for n, nt in zip(self.names, self.notrace, strict=True) if not nt)


@dataclass
class Ksym:
    """The linked kernel: its final image and the table lookups run on."""

    image: KernelImage
    table: SymbolTable

    def symbol(self, name: str) -> LinkedSymbol | None:
        return self._by_name.get(name)

    def __post_init__(self) -> None:
        self._by_name = {s.name: s for s in self.image.symbols}


def build(arch: str) -> Ksym:
    """The two-stage link: first link, generate the table from it, link again with the table."""
    funcs = kernel_functions(arch)
    first = link(arch, funcs)
    blob = generate_table(first)
    final = link(arch, funcs, rodata=blob)
    if final.text != first.text or [s.addr for s in final.symbols] != [s.addr for s in first.symbols]:
        raise AssertionError("the second link moved kernel text")
    return Ksym(final, SymbolTable(final.rodata))
