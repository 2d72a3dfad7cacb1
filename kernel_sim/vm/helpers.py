"""BPF helper functions by Linux id: ``fn(run, r1, r2, r3, r4, r5) -> u64``.

Why one table for both engines: the interpreter and the JIT call the same Python functions
through ``RunContext.call_helper``, so a helper behaves identically (and is traced identically)
whichever engine runs the program. Helpers see program memory only through ``run.vm``:
a bad pointer gives the helper's Linux error (-EFAULT, with the destination zeroed where Linux
zeroes it), never an exception. Maps are found from the handle addresses lddw loaded
(``run.vm.object_at``) and used through their program-side API (prog_lookup, prog_update,
prog_delete, prog_push/pop/peek, perf_event_output, prog_at, ringbuf_*). User memory
(probe_read_user*) is real process memory read with copy_from_user, as the syscall layer does.
"""

from __future__ import annotations

import errno
import random
import struct

from ..uapi.bpf_enums import HelperId
from ..usermem import TASK_SIZE, copy_from_user, strncpy_from_user
from .ctxaccess import SKB_DATA_SHADOW, XDP_MD_SIZE
from .memory import KEY_SHIFT
from .program import func_pc
from .runctx import MAX_TAIL_CALL_CNT, TailCall

U64 = 0xFFFFFFFFFFFFFFFF
U32 = 0xFFFFFFFF
MAX_BPRINTF_VARARGS = 12
MAX_BPRINTF_BUF = 1024
MAX_BPRINTF_STR = 1024
BPF_MAX_LOOPS = 1 << 23
_rng = random.Random()


def neg(errno_value: int) -> int:
    """-errno as the u64 a helper returns."""
    return (-errno_value) & U64


def _ret(value: int) -> int:
    """A map method's 0 / -errno as a u64."""
    return value & U64


def _map(run, addr: int):
    return run.vm.object_at(addr)


def _room(run, addr: int, size: int) -> bool:
    """Whether [addr, addr + size) is mapped VM memory (checked before allocating size bytes)."""
    buf, off = run.vm.region(addr)
    return buf is not None and 0 <= size and off + size <= len(memoryview(buf).cast("B"))


def _zero(run, addr: int, size: int) -> None:
    """Clear a destination the way Linux's helpers do on failure (only if it is all mapped)."""
    if _room(run, addr, size):
        run.vm.write(addr, bytes(size))


def _write(run, addr: int, data: bytes) -> bool:
    return run.vm.write(addr, bytes(data))


# -- memory reads: bytes, or the errno the helper reports ----------------------------------------------
def read_kernel(run, addr: int, size: int) -> bytes | None:
    """``size`` bytes of VM memory (maps, stack, ctx, packet) or None."""
    return run.vm.read(addr, size)


def _kernel_reader(run, addr: int, size: int) -> bytes | int:
    """probe_read_kernel: a user-range address is -ERANGE (x86_64's copy_from_kernel_nofault)."""
    if addr < TASK_SIZE:
        return errno.ERANGE
    data = run.vm.read(addr, size)
    return errno.EFAULT if data is None else data


def _user_reader(run, addr: int, size: int) -> bytes | int:
    try:
        return copy_from_user(addr, size)
    except OSError:
        return errno.EFAULT


def read_kernel_str(run, addr: int, size: int) -> bytes | None:
    """The string at addr (without NUL), at most size - 1 bytes, or None when unreadable."""
    if size <= 0:
        return b""
    buf, off = run.vm.region(addr)
    if buf is None:
        return None
    view = memoryview(buf).cast("B")
    if off >= len(view):
        return None
    chunk = bytes(view[off:off + size - 1])
    nul = chunk.find(b"\0")
    if nul >= 0:
        return chunk[:nul]
    if off + size - 1 > len(view):
        return None  # ran off the region before a NUL
    return chunk


def _kernel_str_reader(run, addr: int, size: int) -> bytes | int:
    if addr < TASK_SIZE:
        return errno.ERANGE
    data = read_kernel_str(run, addr, size)
    return errno.EFAULT if data is None else data


def _user_str_reader(run, addr: int, size: int) -> bytes | int:
    try:
        return strncpy_from_user(addr, size - 1)
    except OSError:
        return errno.EFAULT


def _compat_reader(run, addr: int, size: int) -> bytes | int:
    """bpf_probe_read (compat): user below TASK_SIZE, kernel above, as on x86_64."""
    return _user_reader(run, addr, size) if addr < TASK_SIZE else _kernel_reader(run, addr, size)


def _compat_str_reader(run, addr: int, size: int) -> bytes | int:
    return _user_str_reader(run, addr, size) if addr < TASK_SIZE else _kernel_str_reader(run, addr, size)


def _probe_read(reader):
    def helper(run, dst, size, src, r4, r5) -> int:
        if not _room(run, dst, size):
            return neg(errno.EFAULT)  # the verifier makes this impossible; never allocate for it
        data = reader(run, src, size) if size else b""
        if isinstance(data, int):
            _zero(run, dst, size)
            return neg(data)
        return 0 if _write(run, dst, data) else neg(errno.EFAULT)

    return helper


def _probe_read_str(reader):
    def helper(run, dst, size, src, r4, r5) -> int:
        if size == 0:
            return 0
        if not _room(run, dst, size):
            return neg(errno.EFAULT)
        data = reader(run, src, size)
        if isinstance(data, int):
            _zero(run, dst, size)
            return neg(data)
        _write(run, dst, data + b"\0")
        return len(data) + 1

    return helper


# -- maps ------------------------------------------------------------------------------------------------
def map_lookup_elem(run, map_addr, key_addr, r3, r4, r5) -> int:
    m = _map(run, map_addr)
    key = read_kernel(run, key_addr, m.key_size) if m is not None else None
    if key is None:
        return 0
    return m.prog_lookup(key, run.cpu) & U64


def map_update_elem(run, map_addr, key_addr, value_addr, flags, r5) -> int:
    m = _map(run, map_addr)
    if m is None:
        return neg(errno.EINVAL)
    key = read_kernel(run, key_addr, m.key_size)
    value = read_kernel(run, value_addr, m.value_size)
    if key is None or value is None:
        return neg(errno.EFAULT)
    return _ret(m.prog_update(key, value, flags, run.cpu))


def map_delete_elem(run, map_addr, key_addr, r3, r4, r5) -> int:
    m = _map(run, map_addr)
    if m is None:
        return neg(errno.EINVAL)
    key = read_kernel(run, key_addr, m.key_size)
    if key is None:
        return neg(errno.EFAULT)
    return _ret(m.prog_delete(key))


def map_push_elem(run, map_addr, value_addr, flags, r4, r5) -> int:
    m = _map(run, map_addr)
    value = read_kernel(run, value_addr, m.value_size) if m is not None else None
    if value is None:
        return neg(errno.EFAULT)
    return _ret(m.prog_push(value, flags))


def _pop_like(method: str):
    def helper(run, map_addr, value_addr, r3, r4, r5) -> int:
        m = _map(run, map_addr)
        if m is None:
            return neg(errno.EINVAL)
        got = getattr(m, method)()
        if isinstance(got, int):
            return _ret(got)
        return 0 if _write(run, value_addr, got) else neg(errno.EFAULT)

    return helper


# -- time, ids, task ----------------------------------------------------------------------------------------
def ktime_get_ns(run, r1, r2, r3, r4, r5) -> int:
    return run.kernel.clock_ns() if run.kernel is not None else 0


def get_prandom_u32(run, r1, r2, r3, r4, r5) -> int:
    return _rng.getrandbits(32)


def get_smp_processor_id(run, r1, r2, r3, r4, r5) -> int:
    return run.cpu


def get_current_pid_tgid(run, r1, r2, r3, r4, r5) -> int:
    task = run.task
    return (task.tgid << 32 | task.pid) if task is not None else neg(errno.EINVAL)


def get_current_uid_gid(run, r1, r2, r3, r4, r5) -> int:
    task = run.task
    return (task.gid << 32 | task.uid) if task is not None else neg(errno.EINVAL)


def get_current_comm(run, buf, size, r3, r4, r5) -> int:
    task = run.task
    if not _room(run, buf, size):
        return neg(errno.EFAULT)
    if task is None:
        _zero(run, buf, size)
        return neg(errno.EINVAL)
    comm = task.comm.encode()[:15][:max(size - 1, 0)]
    return 0 if _write(run, buf, comm.ljust(size, b"\0")) else neg(errno.EFAULT)


def get_current_task(run, r1, r2, r3, r4, r5) -> int:
    """The task's struct task_struct (kernel_sim/task_kmem.py): readable with bpf_probe_read_kernel."""
    from ..task_kmem import task_struct_addr

    if run.task is None:
        return 0
    if run.kernel is not None and run.vm is run.kernel.vm:
        return task_struct_addr(run.kernel, run.task)
    return run.vm.handle_of(run.task)  # a VM of its own (no kernel memory): an opaque handle


def get_func_ip(run, r1, r2, r3, r4, r5) -> int:
    return run.func_ip


# -- control flow --------------------------------------------------------------------------------------------
def tail_call(run, ctx, map_addr, index, r4, r5) -> int:
    """On success the current program ends and the target starts with the same ctx (TailCall)."""
    m = _map(run, map_addr)
    prog_at = getattr(m, "prog_at", None)
    if prog_at is None or run.tail_call_cnt >= MAX_TAIL_CALL_CNT:
        return neg(errno.ENOENT)
    target = prog_at(index & U32)
    if target is None:
        return neg(errno.ENOENT)
    run.tail_call_cnt += 1
    raise TailCall(target.engine, target, ctx)


def loop(run, nr_loops, callback, callback_ctx, flags, r5) -> int:
    if flags:
        return neg(errno.EINVAL)
    if nr_loops > BPF_MAX_LOOPS:
        return neg(errno.E2BIG)
    pc = func_pc(callback)
    if pc is None:
        return neg(errno.EINVAL)
    for i in range(nr_loops):
        if run.call_function(pc, i, callback_ctx):
            return i + 1
    return nr_loops


# -- output ----------------------------------------------------------------------------------------------------
BPF_F_CTXLEN_MASK = 0xFFFFF << 32
BPF_F_INDEX_MASK = 0xFFFFFFFF


def _packet_prefix(run, ctx: int, n: int) -> bytes | None:
    """The first n bytes of an skb / XDP program's packet (from data), or None past its end."""
    from ..uapi.bpf_enums import ProgType

    shadow_off = XDP_MD_SIZE if run.prog_type == ProgType.XDP else SKB_DATA_SHADOW
    shadow = read_kernel(run, ctx + shadow_off, 16)
    if shadow is None:
        return None
    data, data_end = struct.unpack("<QQ", shadow)
    return read_kernel(run, data, n) if data + n <= data_end else None


def perf_event_output(run, ctx, map_addr, flags, data_addr, size) -> int:
    """The sample is ``size`` bytes at data_addr; skb / XDP programs may append the first
    (flags >> 32) packet bytes (BPF_F_CTXLEN_MASK), -EFAULT when the packet is shorter."""
    m = _map(run, map_addr)
    out = getattr(m, "perf_event_output", None)
    if out is None:
        return neg(errno.EINVAL)
    data = read_kernel(run, data_addr, size)
    if data is None:
        return neg(errno.EFAULT)
    ctx_len = (flags & BPF_F_CTXLEN_MASK) >> 32
    if flags & BPF_F_CTXLEN_MASK:
        from .ctxaccess import layout_for

        if layout_for(run.prog_type) is None:
            return neg(errno.EINVAL)  # tracing programs have no packet to append
        if flags & ~(BPF_F_CTXLEN_MASK | BPF_F_INDEX_MASK):
            return neg(errno.EINVAL)
        packet = _packet_prefix(run, ctx, ctx_len)
        if packet is None:
            return neg(errno.EFAULT)
        data += packet
        flags &= BPF_F_INDEX_MASK
    return _ret(out(run.cpu, flags, data))


BPF_F_USER_STACK = 1 << 8


def _stack_ips(run, ctx: int, user: bool) -> list[int]:
    """The simple stack the simulated kernel knows: the probed instruction (pt_regs' ip for
    kprobe / perf_event programs) and the traced function's address (get_func_ip). There are
    no deeper kernel frames and no user stacks (an empty stack: the map answers -EFAULT)."""
    from ..uapi.bpf_enums import ProgType
    from ..uapi.ptrace import IP_REG, PT_REGS

    if user:
        return []
    ips: list[int] = []
    if run.prog_type in (ProgType.KPROBE, ProgType.PERF_EVENT) and run.kernel is not None:
        regs = PT_REGS.get(run.kernel.arch)
        field = getattr(regs, IP_REG.get(run.kernel.arch, ""), None) if regs is not None else None
        raw = read_kernel(run, ctx + field.offset, 8) if field is not None else None
        if raw is not None and int.from_bytes(raw, "little"):
            ips.append(int.from_bytes(raw, "little"))
    if run.func_ip and run.func_ip not in ips:
        ips.append(run.func_ip)
    return ips


def get_stackid(run, ctx, map_addr, flags, r4, r5) -> int:
    """The id of the (simple, see _stack_ips) stack in a stack-trace map."""
    m = _map(run, map_addr)
    store = getattr(m, "prog_store_stack", None)
    if store is None:
        return neg(errno.EINVAL)
    return _ret(store(_stack_ips(run, ctx, bool(flags & BPF_F_USER_STACK)), flags))


def ringbuf_output(run, map_addr, data_addr, size, flags, r5) -> int:
    m = _map(run, map_addr)
    data = read_kernel(run, data_addr, size)
    if m is None or not hasattr(m, "ringbuf_output"):
        return neg(errno.EINVAL)
    if data is None:
        return neg(errno.EFAULT)
    return _ret(m.ringbuf_output(data, flags))


def ringbuf_reserve(run, map_addr, size, flags, r4, r5) -> int:
    m = _map(run, map_addr)
    if m is None or not hasattr(m, "ringbuf_reserve"):
        return 0
    addr = m.ringbuf_reserve(size, flags)
    if addr:
        run.ringbuf_records[addr] = m
    return addr


def _ringbuf_commit(discard: bool):
    def helper(run, addr, flags, r3, r4, r5) -> int:
        m = run.ringbuf_records.pop(addr, None)
        if m is not None:
            (m.ringbuf_discard if discard else m.ringbuf_submit)(addr, flags)
        return 0

    return helper


def ringbuf_query(run, map_addr, flags, r3, r4, r5) -> int:
    m = _map(run, map_addr)
    return m.ringbuf_query(flags) & U64 if m is not None and hasattr(m, "ringbuf_query") else 0


# -- packets ---------------------------------------------------------------------------------------------------
XDP_FRAME_HEAD = 40            # sizeof(struct xdp_frame) at the start of the headroom
XDP_TAILROOM = 320             # SKB_DATA_ALIGN(sizeof(struct skb_shared_info))
ETH_HLEN = 14
_Q3 = struct.Struct("<QQQ")


def _s32(v: int) -> int:
    v &= U32
    return v - (1 << 32) if v & 0x80000000 else v


def xdp_adjust_head(run, ctx, delta, r3, r4, r5) -> int:
    """Move xdp->data (and the metadata with it) by delta, keeping 14 bytes and the frame head."""
    shadow = read_kernel(run, ctx + XDP_MD_SIZE, 24)
    if shadow is None:
        return neg(errno.EINVAL)
    data, data_end, meta = _Q3.unpack(shadow)
    hard_start = data >> KEY_SHIFT << KEY_SHIFT
    metalen = data - meta
    new_data = data + _s32(delta)
    if new_data < hard_start + XDP_FRAME_HEAD + metalen or new_data > data_end - ETH_HLEN:
        return neg(errno.EINVAL)
    if metalen:
        run.vm.write(meta + _s32(delta), read_kernel(run, meta, metalen))
    run.vm.write(ctx + XDP_MD_SIZE, _Q3.pack(new_data, data_end, meta + _s32(delta)))
    return 0


def xdp_adjust_tail(run, ctx, delta, r3, r4, r5) -> int:
    """Move xdp->data_end by delta within the frame (new bytes zeroed), keeping 14 bytes."""
    shadow = read_kernel(run, ctx + XDP_MD_SIZE, 24)
    if shadow is None:
        return neg(errno.EINVAL)
    data, data_end, meta = _Q3.unpack(shadow)
    buf, _ = run.vm.region(data)
    if buf is None or getattr(run, "xdp_frags", False):
        return neg(errno.EINVAL)  # multi-buffer packets: not modelled
    hard_end = (data >> KEY_SHIFT << KEY_SHIFT) + len(memoryview(buf).cast("B")) - XDP_TAILROOM
    new_end = data_end + _s32(delta)
    if new_end > hard_end or new_end < data + ETH_HLEN:
        return neg(errno.EINVAL)
    if new_end > data_end:
        run.vm.write(data_end, bytes(new_end - data_end))
    run.vm.write(ctx + XDP_MD_SIZE, _Q3.pack(data, new_end, meta))
    return 0


def skb_load_bytes(run, ctx, offset, to, size, r5) -> int:
    """Copy size bytes at skb->data + offset; -EFAULT (and a zeroed buffer) outside the packet."""
    shadow = read_kernel(run, ctx + SKB_DATA_SHADOW, 16)
    if shadow is not None and offset <= 0xFFFF:
        data, data_end = struct.unpack("<QQ", shadow)
        if data + offset + size <= data_end:
            got = read_kernel(run, data + offset, size)
            if got is not None and _write(run, to, got):
                return 0
    _zero(run, to, size)
    return neg(errno.EFAULT)


XDP_ABORTED, XDP_REDIRECT = 0, 4
TC_ACT_SHOT, TC_ACT_REDIRECT = 2, 7
BPF_F_INGRESS = 1


def redirect(run, ifindex, flags, r3, r4, r5) -> int:
    """XDP: XDP_REDIRECT (flags must be 0); tc: TC_ACT_REDIRECT (only BPF_F_INGRESS). Nothing is sent."""
    from ..uapi.bpf_enums import ProgType

    if run.prog_type == ProgType.XDP:
        return XDP_ABORTED if flags else XDP_REDIRECT
    return TC_ACT_SHOT if flags & ~BPF_F_INGRESS else TC_ACT_REDIRECT


def get_numa_node_id(run, r1, r2, r3, r4, r5) -> int:
    return 0


def get_current_cgroup_id(run, r1, r2, r3, r4, r5) -> int:
    return 1  # the root cgroup: the simulated kernel has no cgroup hierarchy


# -- printf family (Linux's bpf_bprintf_prepare rules) ------------------------------------------------------------
class FormatError(Exception):
    pass


def _format_ip(ip: bytes, mod: str) -> str:
    """%pI4 / %pi4 (zero-padded) / %pI6 (full groups) / %pi6 (no colons), as Linux's vsprintf."""
    if len(ip) == 4:
        return ".".join(f"{b:03d}" if mod == "i" else str(b) for b in ip)
    groups = [f"{ip[k]:02x}{ip[k + 1]:02x}" for k in range(0, 16, 2)]
    return "".join(groups) if mod == "i" else ":".join(groups)


def bprintf(run, fmt: bytes, args: list[int]) -> str:
    """Format like bpf_trace_printk / bpf_snprintf: %d %i %u %x %X with l/ll, %c, %s, %p[Kxs],
    %p[iI][46], %%, flags "0+- " and a width; anything else (or too few args) raises FormatError
    (-EINVAL). The text holds bytes as latin-1 characters (%c and %s copy bytes unchanged)."""
    out: list[str] = []
    i, n, argi = 0, len(fmt), 0
    while i < n:
        ch = fmt[i]
        if ch != 0x25:
            if ch >= 0x80 or not (0x20 <= ch < 0x7F or chr(ch).isspace()):
                raise FormatError
            out.append(chr(ch))
            i += 1
            continue
        if i + 1 < n and fmt[i + 1] == 0x25:
            out.append("%")
            i += 2
            continue
        if argi >= len(args):
            raise FormatError
        arg = args[argi]
        argi += 1
        j = i + 1
        while j < n and fmt[j] in b"0+- ":
            j += 1
        while j < n and 0x30 <= fmt[j] <= 0x39:
            j += 1
        spec = fmt[i + 1:j].decode()
        conv = chr(fmt[j]) if j < n else ""
        if conv == "p":
            mod = chr(fmt[j + 1]) if j + 1 < n else ""
            if mod in ("i", "I") and j + 2 < n and fmt[j + 2] in b"46":
                family = chr(fmt[j + 2])
                j += 2
                if family == "6" and j + 1 < n and fmt[j + 1] == 0x63:  # %pI6c prints as %pI6
                    j += 1
                got = _compat_reader(run, arg, 4 if family == "4" else 16) if run is not None else None
                ip = bytes(4 if family == "4" else 16) if not isinstance(got, bytes) else got
                out.append(f"%{spec}s" % _format_ip(ip, mod))
                i = j + 1
                continue
            if mod in ("K", "x", "s", "S", "B"):
                j += 1
            if mod in ("s", "S", "B"):  # no kernel symbols: Linux prints the bare address
                text = f"0x{arg & U64:x}"
            elif spec:
                text = f"%{spec}x" % (arg & U64)
            else:
                text = f"{arg & U64:016x}"   # %p / %pK are hashed on Linux: not reproducible here
            out.append(f"%{spec}s" % text if mod in ("s", "S", "B") else text)
            i = j + 1
            continue
        if conv == "s":
            got = _compat_str_reader(run, arg, MAX_BPRINTF_STR) if run is not None else b""
            s = (b"" if isinstance(got, int) else got).decode("latin-1")
            out.append(f"%{spec}s" % s)
            i = j + 1
            continue
        if conv == "c":
            out.append(f"%{spec}c" % chr(arg & 0xFF))
            i = j + 1
            continue
        bits = 32
        if conv == "l":
            bits = 64
            j += 1
            if j < n and fmt[j] == 0x6C:
                j += 1
        conv = chr(fmt[j]) if j < n else ""
        if conv not in ("d", "i", "u", "x", "X"):
            raise FormatError
        v = arg & ((1 << bits) - 1)
        if conv in ("d", "i") and v >> (bits - 1):
            v -= 1 << bits
        out.append(f"%{spec}{'d' if conv in ('d', 'i', 'u') else conv}" % v)
        i = j + 1
    return "".join(out)


def _format_string(run, fmt_addr: int, fmt_size: int) -> bytes | None:
    raw = read_kernel(run, fmt_addr, fmt_size) if fmt_size else None
    if raw is None or b"\0" not in raw:
        return None
    return raw[:raw.index(b"\0")]


def trace_printk(run, fmt_addr, fmt_size, a1, a2, a3) -> int:
    fmt = _format_string(run, fmt_addr, fmt_size)
    if fmt is None:
        return neg(errno.EINVAL)
    try:
        text = bprintf(run, fmt, [a1, a2, a3])
    except FormatError:
        return neg(errno.EINVAL)
    text = text[:MAX_BPRINTF_BUF - 1]
    run.emit_printk(text)
    return len(text)


def _args_array(run, data_addr: int, data_len: int) -> list[int] | None:
    if data_len % 8 or data_len > 8 * MAX_BPRINTF_VARARGS or (data_len and not data_addr):
        return None
    raw = read_kernel(run, data_addr, data_len) if data_len else b""
    if raw is None:
        return None
    return list(struct.unpack(f"<{data_len // 8}Q", raw))


def trace_vprintk(run, fmt_addr, fmt_size, data_addr, data_len, r5) -> int:
    fmt = _format_string(run, fmt_addr, fmt_size)
    args = _args_array(run, data_addr, data_len)
    if fmt is None or args is None:
        return neg(errno.EINVAL)
    try:
        text = bprintf(run, fmt, args)[:MAX_BPRINTF_BUF - 1]
    except FormatError:
        return neg(errno.EINVAL)
    run.emit_printk(text)
    return len(text)


def snprintf(run, str_addr, str_size, fmt_addr, data_addr, data_len) -> int:
    """Returns the formatted length + 1 (the NUL), writing at most str_size bytes."""
    fmt = read_kernel_str(run, fmt_addr, MAX_BPRINTF_BUF)  # a constant string (read-only map)
    args = _args_array(run, data_addr, data_len)
    if fmt is None or args is None:
        return neg(errno.EINVAL)
    try:
        text = bprintf(run, fmt, args).encode("latin-1")[:MAX_BPRINTF_BUF - 1]
    except FormatError:
        return neg(errno.EINVAL)
    if str_size:
        _write(run, str_addr, text[:str_size - 1] + b"\0")
    return len(text) + 1


H = HelperId
HELPERS: dict[int, object] = {
    H.map_lookup_elem: map_lookup_elem,
    H.map_update_elem: map_update_elem,
    H.map_delete_elem: map_delete_elem,
    H.map_push_elem: map_push_elem,
    H.map_pop_elem: _pop_like("prog_pop"),
    H.map_peek_elem: _pop_like("prog_peek"),
    H.probe_read: _probe_read(_compat_reader),
    H.probe_read_str: _probe_read_str(_compat_str_reader),
    H.probe_read_user: _probe_read(_user_reader),
    H.probe_read_kernel: _probe_read(_kernel_reader),
    H.probe_read_user_str: _probe_read_str(_user_str_reader),
    H.probe_read_kernel_str: _probe_read_str(_kernel_str_reader),
    H.ktime_get_ns: ktime_get_ns,
    H.ktime_get_boot_ns: ktime_get_ns,
    H.ktime_get_coarse_ns: ktime_get_ns,
    H.get_numa_node_id: get_numa_node_id,
    H.get_current_cgroup_id: get_current_cgroup_id,
    H.xdp_adjust_head: xdp_adjust_head,
    H.xdp_adjust_tail: xdp_adjust_tail,
    H.skb_load_bytes: skb_load_bytes,
    H.redirect: redirect,
    H.trace_printk: trace_printk,
    H.trace_vprintk: trace_vprintk,
    H.get_prandom_u32: get_prandom_u32,
    H.get_smp_processor_id: get_smp_processor_id,
    H.get_current_pid_tgid: get_current_pid_tgid,
    H.get_current_uid_gid: get_current_uid_gid,
    H.get_current_comm: get_current_comm,
    H.get_current_task: get_current_task,
    H.get_func_ip: get_func_ip,
    H.tail_call: tail_call,
    H.perf_event_output: perf_event_output,
    H.get_stackid: get_stackid,
    H.ringbuf_output: ringbuf_output,
    H.ringbuf_reserve: ringbuf_reserve,
    H.ringbuf_submit: _ringbuf_commit(False),
    H.ringbuf_discard: _ringbuf_commit(True),
    H.ringbuf_query: ringbuf_query,
    H.loop: loop,
    H.snprintf: snprintf,
}


def helper_table() -> dict[int, object]:
    """The helpers loaded programs may call (the verifier decides which per program type)."""
    return {int(k): v for k, v in HELPERS.items()}
