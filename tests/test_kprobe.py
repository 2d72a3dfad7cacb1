"""Kprobes on all three arches: trap sequences, registers at the probe point, offsets, shared points.

The probes here run Python pre/post handlers; the BPF side is in test_kprobe_perf.py. Every
sequence of traps is recorded by the simulated CPU and asserted, not assumed.
"""

from __future__ import annotations

import errno

import pytest

from kernel_sim.arch import get_arch
from kernel_sim.arch.kmem import MemoryFault
from kernel_sim.kernel import Kernel
from kernel_sim.kprobe import KernelOops
from kernel_sim.uapi.epoll import O_RDONLY
from kernel_sim.uapi.ptrace import PARM_REGS, RC_REG
from kernel_sim.usermem import strncpy_from_user

ARCHES = ["x86_64", "riscv64", "loongarch64"]
# The first instruction of a (non-entry) function and how it moves the stack pointer.
FIRST_INSN_SP = {"x86_64": -8, "riscv64": -32, "loongarch64": -16}


@pytest.fixture(params=ARCHES)
def kernel(request):
    return Kernel(arch=request.param)


def _open(kernel, path="/proc/version") -> int:
    return kernel.syscalls(kernel.init_task).openat(path, O_RDONLY)


def _expected_sequence(arch: str, addr: int, slot: int, length: int) -> list[tuple[str, int]]:
    if arch == "x86_64":  # int3, single-step with TF, debug trap after the slot's instruction
        second = [("debug", slot + length)]
    else:  # the slot's second break, recognised by kprobe_handler_from_break
        second = [("break", slot + length)]
    return [("break", addr), ("pre", addr), ("slot", slot)] + second + [("post", addr), ("resume", addr + length)]


def test_entry_probe_trap_sequence_and_registers(kernel):
    arch = kernel.arch
    kp_sys = kernel.kprobes
    log = kp_sys.record_traps()
    seen = []

    def pre(kp, frame):
        regs = frame.regs
        seen.append(("pre", frame.sp, kp_sys.arch.return_address(frame, kp_sys.mem),
                     strncpy_from_user(getattr(regs, PARM_REGS[arch][1]), 256)))

    def post(kp, frame):
        seen.append(("post", frame.sp))

    kp = kp_sys.register_kprobe("do_sys_openat2", 0, pre, post)
    fd = _open(kernel, "/proc/version")
    assert fd >= 3
    point = kp_sys.manager.points[kp.addr]
    assert log == _expected_sequence(arch, kp.addr, point.slot, point.insn.length)
    (_, sp_pre, ret_addr, filename), (_, sp_post) = seen
    assert filename == b"/proc/version"
    assert ret_addr == kp_sys.table.lookup_name("__sim_call_return")
    # Linux runs the pre-handler (and the BPF program) before the probed instruction: the
    # post-handler sees the stack pointer the prologue's first instruction made.
    assert sp_post - sp_pre == FIRST_INSN_SP[arch]
    assert kp.nhit == 1


def test_unprobed_calls_take_the_fast_path(kernel):
    log = kernel.kprobes.record_traps()
    assert _open(kernel) >= 3
    assert log == [] and kernel.kprobes.hot == {}


def test_probes_at_every_instruction_boundary(kernel):
    """A probe on each instruction of do_sys_openat2, the call and the ret included (simulated)."""
    kp_sys = kernel.kprobes
    arch = get_arch(kernel.arch)
    sym = kp_sys.ksym.symbol("do_sys_openat2")
    code = kp_sys._pristine(sym.addr, sym.size)
    hits = []
    probes = []
    for off, insn in arch.decode_all(code):
        probes.append(kp_sys.register_kprobe("do_sys_openat2", off, lambda kp, f: hits.append(kp.offset),
                                             lambda kp, f: hits.append(-kp.offset - 1)))
        assert insn.kind != "break"
    log = kp_sys.record_traps()
    first = _open(kernel)
    offsets = [off for off, _ in arch.decode_all(code)]
    assert hits == [x for off in offsets for x in (off, -off - 1)]
    simulated = [a - sym.addr for e, a in log if e == "simulate"]
    assert simulated == [off for off, i in arch.decode_all(code) if i.kind in ("call", "ret")]
    for kp in probes:
        kp_sys.unregister_kprobe(kp)
    assert kp_sys.hot == {}
    assert _open(kernel) == first + 1  # the function still does its job, probed or not


def test_offset_inside_an_instruction_is_eilseq(kernel):
    kp_sys = kernel.kprobes
    arch = get_arch(kernel.arch)
    sym = kp_sys.ksym.symbol("do_sys_openat2")
    code = kp_sys._pristine(sym.addr, sym.size)
    boundaries = {off for off, _ in arch.decode_all(code)}
    inside = [off for off in range(sym.size) if off not in boundaries]
    assert inside
    for off in inside:
        with pytest.raises(OSError) as e:
            kp_sys.register_kprobe("do_sys_openat2", off)
        assert e.value.errno == errno.EILSEQ


@pytest.mark.parametrize("symbol, offset, retprobe, code", [
    ("no_such_function", 0, False, errno.ENOENT),
    ("arch_rethook_trampoline", 0, False, errno.EINVAL),  # notrace / blacklisted
    ("__sim_call_body", 0, False, errno.EINVAL),
])
def test_registration_errnos(kernel, symbol, offset, retprobe, code):
    with pytest.raises(OSError) as e:
        if retprobe:
            kernel.kprobes.register_kretprobe(symbol, offset=offset)
        else:
            kernel.kprobes.register_kprobe(symbol, offset)
    assert e.value.errno == code


def test_kretprobe_off_the_entry_is_einval(kernel):
    arch = get_arch(kernel.arch)
    sym = kernel.kprobes.ksym.symbol("vfs_read")
    second = arch.decode_all(kernel.kprobes._pristine(sym.addr, sym.size))[1][0]
    kernel.kprobes.register_kprobe("vfs_read", second)  # fine for a kprobe
    with pytest.raises(OSError) as e:
        kernel.kprobes.register_kretprobe("vfs_read", offset=second)
    assert e.value.errno == errno.EINVAL


def test_two_probes_share_one_break_point(kernel):
    kp_sys = kernel.kprobes
    arch = get_arch(kernel.arch)
    addr = kp_sys.table.lookup_name("do_sys_openat2")
    original = kp_sys.mem.fetch(addr, 4)
    order = []
    a = kp_sys.register_kprobe("do_sys_openat2", 0, lambda kp, f: order.append("a"))
    b = kp_sys.register_kprobe("do_sys_openat2", 0, lambda kp, f: order.append("b"))
    assert list(kp_sys.manager.points) == [addr]
    brk = arch.break_insn(arch.decode(original).length)
    assert kp_sys.mem.fetch(addr, len(brk)) == brk
    log = kp_sys.record_traps()
    _open(kernel)
    assert order == ["a", "b"]
    assert [e for e, _ in log].count("break") == (1 if kernel.arch == "x86_64" else 2)  # one point, one trap
    b.disable()
    _open(kernel)
    assert order == ["a", "b", "a"]
    kp_sys.unregister_kprobe(a)
    assert kp_sys.mem.fetch(addr, len(brk)) == brk  # b still holds the point
    kp_sys.unregister_kprobe(b)
    assert kp_sys.mem.fetch(addr, 4) == original and not kp_sys.manager.points and kp_sys.hot == {}


def test_kernel_text_is_read_only_until_opened(kernel):
    kp_sys = kernel.kprobes
    addr = kp_sys.table.lookup_name("vfs_write")
    with pytest.raises(MemoryFault):
        kp_sys.mem.write(addr, b"\x90")
    kp_sys.aux.set_writeable_for_address(addr, 1, True)
    before = kp_sys.mem.fetch(addr, 1)
    kp_sys.mem.write(addr, before)
    kp_sys.aux.set_writeable_for_address(addr, 1, False)
    with pytest.raises(MemoryFault):
        kp_sys.mem.write(addr, before)
    slot = kp_sys.aux.alloc_executable_memory(8)
    with pytest.raises(MemoryFault):
        kp_sys.mem.write(slot, b"\0")  # insn slots are read-only and executable too
    stack_like = kp_sys.table.text_end + 4096 * 16
    with pytest.raises(MemoryFault):
        kp_sys.mem.fetch(stack_like, 1)


def test_riscv_breaks_match_instruction_width():
    kernel = Kernel(arch="riscv64")
    kp_sys = kernel.kprobes
    addr = kp_sys.table.lookup_name("do_sys_openat2")
    kp_sys.register_kprobe("do_sys_openat2", 0)  # c.addi16sp: 16-bit -> c.ebreak
    kp_sys.register_kprobe("do_sys_openat2", 2)  # sd ra,24(sp): 32-bit -> ebreak
    assert kp_sys.mem.fetch(addr, 2) == b"\x02\x90"
    assert kp_sys.mem.fetch(addr + 2, 4) == (0x00100073).to_bytes(4, "little")
    log = kp_sys.record_traps()
    _open(kernel)
    breaks = [a - addr for e, a in log if e == "break" and a - addr in (0, 2)]
    assert breaks == [0, 2]


def test_x86_entry_probe_skips_endbr64():
    kernel = Kernel(arch="x86_64")
    kp_sys = kernel.kprobes
    base = kp_sys.table.lookup_name("__x64_sys_openat")
    assert kp_sys.mem.fetch(base, 4) == b"\xf3\x0f\x1e\xfa"
    kp = kp_sys.register_kprobe("__x64_sys_openat", 0)
    assert kp.addr == base + 4 and kp.offset == 4
    assert kp_sys.mem.fetch(base, 5) == b"\xf3\x0f\x1e\xfa\xcc"


def test_probe_by_address(kernel):
    kp_sys = kernel.kprobes
    addr = kp_sys.table.lookup_name("vfs_read")
    hits = []
    kp = kp_sys.register_kprobe(None, addr=addr, pre_handler=lambda kp, f: hits.append(f.pc))
    task = kernel.init_task
    fd = kernel.syscalls(task).openat("/proc/version", O_RDONLY)
    buf = task.memory.alloc(5)
    assert kernel.syscall(task, "read", fd, buf, 5) == 5 and task.memory.get(buf, 5) == b"Linux"
    assert kp.symbol == "" and len(hits) == 1
    # The trap's pc: x86 reports it past the int3, riscv/loongarch at the break.
    assert hits[0] == addr + (1 if kernel.arch == "x86_64" else 0)


def test_kretprobe_sees_the_return_value(kernel):
    kp_sys = kernel.kprobes
    log = kp_sys.record_traps()
    got = []
    rp = kp_sys.register_kretprobe("do_sys_openat2",
                                   handler=lambda ri, f: got.append((getattr(f.regs, RC_REG[kernel.arch]), f.pc,
                                                                     ri.data.get("entry"))),
                                   entry_handler=lambda ri, f: ri.data.update(entry=True))
    fd = _open(kernel)
    bad = _open_errno(kernel)
    call_return = kp_sys.table.lookup_name("__sim_call_return")
    assert got == [(fd, call_return, True), ((-bad) & (2**64 - 1), call_return, True)]
    trampoline = kp_sys.table.lookup_name("arch_rethook_trampoline")
    assert ("break", trampoline) in log and ("trampoline", trampoline) in log
    kp_sys.unregister_kretprobe(rp)
    assert len(rp.free) == rp.maxactive and kp_sys.hot == {}


def _open_errno(kernel) -> int:
    with pytest.raises(OSError) as e:
        _open(kernel, "/no/such/file")
    return e.value.errno


def test_kretprobe_can_change_the_return_value(kernel):
    def handler(ri, frame):
        frame.return_value = 4242

    kernel.kprobes.register_kretprobe("do_sys_openat2", handler=handler)
    got = kernel.kcall("do_sys_openat2", (0, 0, 0), lambda *a: 7)
    assert got == 4242


def test_kretprobe_pool_exhaustion_counts_misses(kernel):
    kp_sys = kernel.kprobes
    returns = []
    rp = kp_sys.register_kretprobe("vfs_write", handler=lambda ri, f: returns.append(f.return_value), maxactive=1)

    def outer(*_):
        return kernel.kcall("vfs_write", (0, 0, 0, 0), lambda *_: 5) + 10

    assert kernel.kcall("vfs_write", (0, 0, 0, 0), outer) == 15
    assert returns == [15] and rp.nmissed == 1


def test_body_exception_unwinds_kretprobe_instances(kernel):
    kp_sys = kernel.kprobes
    rp = kp_sys.register_kretprobe("vfs_write", handler=lambda ri, f: None, maxactive=2)

    def boom(*_):
        raise RuntimeError("body failed")

    with pytest.raises(RuntimeError):
        kernel.kcall("vfs_write", (0, 0, 0, 0), boom)
    assert len(rp.free) == 2 and kp_sys.kretprobes.depth() == 0
    assert kernel.kcall("vfs_write", (0, 0, 0, 0), lambda *_: 3) == 3


def test_handlers_hit_inside_a_handler_are_missed(kernel):
    kp_sys = kernel.kprobes
    inner = kp_sys.register_kprobe("vfs_read", 0, lambda kp, f: None)

    def pre(kp, frame):
        kernel.kcall("vfs_read", (0, 0, 0, 0), lambda *_: 0)

    outer = kp_sys.register_kprobe("vfs_write", 0, pre)
    assert kernel.kcall("vfs_write", (0, 0, 0, 0), lambda *_: 1) == 1
    assert outer.nhit == 1 and inner.nhit == 0 and inner.nmissed == 1


def test_unhandled_break_oopses(kernel):
    kp_sys = kernel.kprobes
    addr = kp_sys.table.lookup_name("vfs_write")
    arch = get_arch(kernel.arch)
    length = arch.decode(kp_sys.mem.fetch(addr, 4)).length
    kp_sys.aux.write_text(addr, arch.break_insn(length))  # a stray break nobody registered
    kp_sys.hot["vfs_write"] = 1
    with pytest.raises(KernelOops):
        kernel.kcall("vfs_write", (0, 0, 0, 0), lambda *_: 0)


def test_debugfs_lists_probes_and_the_blacklist(kernel):
    from loader.kernel_info import read_file

    kp_sys = kernel.kprobes
    sys = kernel.syscalls(kernel.init_task)
    kp = kp_sys.register_kprobe("vfs_read", 0)
    kp_sys.register_kretprobe("do_sys_openat2")
    kp.disable()
    lines = read_file(sys, "/sys/kernel/debug/kprobes/list").splitlines()
    read_addr = kp_sys.table.lookup_name("vfs_read")
    open_addr = kp_sys.table.lookup_name("do_sys_openat2")
    expected = sorted([(open_addr, f"{open_addr:016x}  r  do_sys_openat2+0x0    "),
                       (read_addr, f"{read_addr:016x}  k  vfs_read+0x0    [DISABLED]")])
    assert lines == [line for _, line in expected]
    blacklist = read_file(sys, "/sys/kernel/debug/kprobes/blacklist")
    tramp = kp_sys.table.lookup_name("arch_rethook_trampoline")
    assert f"0x{tramp:016x}-" in blacklist and "\tarch_rethook_trampoline\n" in blacklist
    assert "\tvfs_read\n" not in blacklist


def test_prologue_really_builds_the_frame(kernel):
    """Registers at the body call, against the entry's: the emulated prologue did what it says."""
    kp_sys = kernel.kprobes
    arch = get_arch(kernel.arch)
    sym = kp_sys.ksym.symbol("vfs_write")
    mem = kp_sys.mem
    entry, at_call, at_ret = {}, {}, {}
    kp_sys.register_kprobe("vfs_write", 0, lambda kp, f: entry.update(sp=f.sp))
    kp_sys.register_kprobe("vfs_write", sym.body_call, lambda kp, f: at_call.update(
        sp=f.sp, fp=f.get({"x86_64": "rbp", "riscv64": "s0", "loongarch64": "r22"}[kernel.arch])))
    kp_sys.register_kretprobe("vfs_write", handler=lambda ri, f: at_ret.update(sp=f.sp, rc=f.return_value))
    assert kernel.kcall("vfs_write", (1, 2, 3, 4), lambda *a: sum(a)) == 10
    # The kretprobe swapped the caller's return address for the trampoline at entry.
    trampoline = kp_sys.table.lookup_name("arch_rethook_trampoline")
    sp0 = entry["sp"]
    if kernel.arch == "x86_64":
        assert mem.read_u64(sp0) == trampoline  # where the call pushed the return address
        assert at_call["fp"] == sp0 - 8 and at_call["sp"] == sp0 - 8 - 8 - 16
        assert at_ret["sp"] == sp0 + 8  # ret popped it
    else:
        frame = {"riscv64": 32, "loongarch64": 16}[kernel.arch]
        assert at_call["fp"] == sp0 and at_call["sp"] == sp0 - frame
        ra_slot = {"riscv64": 24, "loongarch64": 8}[kernel.arch]
        assert mem.read_u64(at_call["sp"] + ra_slot) == trampoline  # ra, saved by the prologue
        assert at_ret["sp"] == sp0
    assert at_ret["rc"] == 10
    assert arch.decode(kp_sys._pristine(sym.addr + sym.body_call, 8)).kind == "call"


def test_kretprobe_on_a_syscall_entry_point(kernel):
    from kernel_sim.syscall_table import ENTRY_PREFIX

    got = []
    rp = kernel.kprobes.register_kretprobe(ENTRY_PREFIX[kernel.arch] + "openat",
                                           handler=lambda ri, f: got.append(f.return_value))
    fd = _open(kernel)
    assert got == [fd]
    if kernel.arch == "x86_64":
        assert rp.kp.offset == 4  # after endbr64


def test_kretprobe_unregistered_mid_call_returns_without_its_handler(kernel):
    kp_sys = kernel.kprobes
    got = []
    rp = kp_sys.register_kretprobe("vfs_write", handler=lambda ri, f: got.append(f.return_value))

    def body(*_):
        kp_sys.unregister_kretprobe(rp)  # while this call's instance is in flight
        return 9

    assert kernel.kcall("vfs_write", (0, 0, 0, 0), body) == 9
    assert got == [] and len(rp.free) == rp.maxactive


@pytest.mark.parametrize("arch", ARCHES)
def test_random_register_unregister_sequences(arch):
    """Any order of registering / unregistering probes at any boundaries: the right handlers run,
    the function still works, and the text is byte-identical to the link once all are gone."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    kernel = Kernel(arch=arch)
    kp_sys = kernel.kprobes
    sym = kp_sys.ksym.symbol("vfs_write")
    offsets = [off for off, _ in get_arch(arch).decode_all(kp_sys._pristine(sym.addr, sym.size))]
    pristine = kp_sys.mem.read(sym.addr, sym.size)

    @settings(max_examples=40, deadline=None)
    @given(st.lists(st.tuples(st.sampled_from(offsets), st.booleans()), max_size=12))
    def run(ops):
        live = []
        hits = []
        for off, remove in ops:
            if remove and live:
                kp_sys.unregister_kprobe(live.pop(0))
            else:
                live.append(kp_sys.register_kprobe("vfs_write", off, lambda kp, f: hits.append(kp)))
        assert kernel.kcall("vfs_write", (1, 2, 3, 4), lambda *a: 42) == 42
        assert sorted(map(id, hits)) == sorted(map(id, live))
        assert set(kp_sys.manager.points) == {kp.addr for kp in live}
        for kp in live:
            kp_sys.unregister_kprobe(kp)
        assert kp_sys.mem.read(sym.addr, sym.size) == pristine and kp_sys.hot == {}

    run()
