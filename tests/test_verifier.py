"""The verifier's rejections, each checked on kernel_sim and on this machine's Linux 6.18.

Every case loads the same raw program through bpf(BPF_PROG_LOAD) on both kernels (fixture
``bpf_kernel``) and expects the same errno and the same error line (the last line before the
"processed N insns" statistics). Straight-line cases also compare the whole log: kernel_sim
must print the trace exactly as Linux does.
"""

from __future__ import annotations

import ctypes
import errno

import pytest
from conftest import boot, linux_bpf_denied

from kernel_sim.uapi.bpf import BpfCmd, MapCreateAttr, MapType, ProgLoadAttr, make_attr
from kernel_sim.uapi.bpf_enums import ProgType
from kernel_sim.uapi.insn import encode
from kernel_sim.uapi.insn import insn as I  # noqa: N812 - the assembler's short name

SF, KP, TP, XDP, RAW_TP = ProgType.SOCKET_FILTER, ProgType.KPROBE, ProgType.TRACEPOINT, ProgType.XDP, \
    ProgType.RAW_TRACEPOINT
STATS_PREFIX = "processed "


def load(sys, insns, prog_type=SF, license=b"GPL", level=1, log_size=1 << 20):
    """PROG_LOAD through a Syscalls object: (errno or 0, log text)."""
    code = encode(insns)
    ib = ctypes.create_string_buffer(code, len(code))
    lic = ctypes.create_string_buffer(license)
    log = ctypes.create_string_buffer(log_size)
    attr = make_attr(ProgLoadAttr, prog_type=prog_type, insn_cnt=len(insns), insns=ctypes.addressof(ib),
                     license=ctypes.addressof(lic), log_level=level, log_size=len(log) if level else 0,
                     log_buf=ctypes.addressof(log) if level else 0)
    try:
        fd = sys.bpf(BpfCmd.PROG_LOAD, attr)
    except OSError as e:
        return e.errno, log.value.decode()
    sys.close(fd)
    return 0, log.value.decode()


def make_map(sys, map_type=MapType.ARRAY, key_size=4, value_size=8, max_entries=4) -> int:
    return sys.bpf(BpfCmd.MAP_CREATE, make_attr(MapCreateAttr, map_type=map_type, key_size=key_size,
                                                 value_size=value_size, max_entries=max_entries))


def error_line(log: str) -> str:
    """The line before the statistics: Linux's error message."""
    lines = log.rstrip("\n").split("\n")
    stats = [i for i, line in enumerate(lines) if line.startswith(STATS_PREFIX)]
    assert stats, log
    return lines[stats[-1] - 1] if stats[-1] else ""


def lddw_map(reg: int, fd: int) -> list:
    return [I(0x18, reg, 1, 0, fd), I(0, 0, 0, 0, 0)]


def lookup(fd: int) -> list:
    """key = 0 on the stack; r0 = bpf_map_lookup_elem(map, &key)."""
    return [I(0x7A, 10, 0, -8, 0), I(0xBF, 2, 10), I(0x07, 2, 0, 0, -8)] + lddw_map(1, fd) + [I(0x85, 0, 0, 0, 1)]


def const_key_lookup(fd: int, key: int, narrow: bool = False) -> list:
    """A u32 key written as Linux 6.18 recognises constants: zeroed bytes, or a 4-byte spill."""
    store = [I(0x62, 10, 0, -8, key)] if narrow else [I(0xB7, 1, 0, 0, 0), I(0x63, 10, 1, -4)]
    at = -8 if narrow else -4
    return store + [I(0xBF, 2, 10), I(0x07, 2, 0, 0, at)] + lddw_map(1, fd) + [I(0x85, 0, 0, 0, 1)]


def nested_calls(n: int) -> list:
    prog = []
    for _ in range(n):
        prog += [I(0x85, 0, 1, 0, 1), I(0x95)]
    return prog + [I(0xB7, 0, 0, 0, 0), I(0x95)]


def ringbuf_reserve(fd: int) -> list:
    return lddw_map(1, fd) + [I(0xB7, 2, 0, 0, 16), I(0xB7, 3, 0, 0, 0), I(0x85, 0, 0, 0, 131)]


# (name, prog type, program (a function of the array map fd and the ring buffer fd), errno, error line)
REJECTIONS = [
    ("unknown opcode", SF, lambda m, r: [I(0xFF), I(0x95)], errno.EINVAL, "unknown opcode ff"),
    ("register number", SF, lambda m, r: [I(0xB7, 11, 0, 0, 0), I(0x95)], errno.EINVAL, "R11 is invalid"),
    ("lddw without its second half", SF, lambda m, r: [I(0x18, 0, 0, 0, 0), I(0xB7, 0, 0, 0, 0), I(0x95)],
     errno.EINVAL, "invalid bpf_ld_imm64 insn"),
    ("jump out of range", SF, lambda m, r: [I(0x05, 0, 0, 5), I(0x95)], errno.EINVAL,
     "jump out of range from insn 0 to 6"),
    ("jump into lddw", SF, lambda m, r: [I(0xB7, 0, 0, 0, 0), I(0x15, 0, 0, 3, 0), I(0xB7, 0, 0, 0, 0),
                                         I(0xB7, 0, 0, 0, 0), I(0x18, 0, 0, 0, 0), I(0, 0, 0, 0, 0), I(0x95)],
     errno.EINVAL, "jump into the middle of ldimm64 insn 4"),
    ("unreachable", SF, lambda m, r: [I(0xB7, 0, 0, 0, 0), I(0x95), I(0xB7, 0, 0, 0, 0), I(0x95)], errno.EINVAL,
     "unreachable insn 2"),
    ("last insn", SF, lambda m, r: [I(0xB7, 0, 0, 0, 0)], errno.EINVAL, "last insn is not an exit or jmp"),
    ("kfunc call", SF, lambda m, r: [I(0x85, 0, 2, 0, 12345), I(0xB7, 0, 0, 0, 0), I(0x95)], errno.EINVAL,
     "kernel btf_id 12345 is not a function"),
    ("call destination", SF, lambda m, r: [I(0x85, 0, 1, 0, 5), I(0x95)], errno.EINVAL,
     "call to invalid destination"),
    ("r10 is read only", SF, lambda m, r: [I(0xB7, 10, 0, 0, 0), I(0x95)], errno.EACCES,
     "frame pointer is read only"),
    ("R0 not set at exit", SF, lambda m, r: [I(0x95)], errno.EACCES, "R0 !read_ok"),
    ("uninitialised register", SF, lambda m, r: [I(0xBF, 0, 2), I(0x95)], errno.EACCES, "R2 !read_ok"),
    ("MOV reserved fields", SF, lambda m, r: [I(0xB7, 0, 1, 0, 0), I(0x95)], errno.EINVAL,
     "BPF_MOV uses reserved fields"),
    ("ALU reserved fields", SF, lambda m, r: [I(0xB7, 0, 0, 0, 0), I(0x07, 0, 0, 3, 1), I(0x95)], errno.EINVAL,
     "BPF_ALU uses reserved fields"),
    ("JMP reserved fields", SF, lambda m, r: [I(0xB7, 0, 0, 0, 0), I(0x1D, 0, 0, 0, 5), I(0x95)], errno.EINVAL,
     "BPF_JMP/JMP32 uses reserved fields"),
    ("STX reserved fields", SF, lambda m, r: [I(0xB7, 0, 0, 0, 0), I(0x7B, 10, 0, -8, 5), I(0x95)],
     errno.EINVAL, "BPF_STX uses reserved fields"),
    ("LDX reserved fields", SF, lambda m, r: [I(0x79, 0, 10, -8, 5), I(0x95)], errno.EINVAL,
     "BPF_LDX uses reserved fields"),
    ("division by zero", SF, lambda m, r: [I(0xB7, 0, 0, 0, 1), I(0x37, 0, 0, 0, 0), I(0x95)], errno.EINVAL,
     "div by zero"),
    ("shift too far", SF, lambda m, r: [I(0xB7, 0, 0, 0, 1), I(0x67, 0, 0, 0, 64), I(0x95)], errno.EINVAL,
     "invalid shift 64"),
    ("stack write below the frame", SF, lambda m, r: [I(0xB7, 0, 0, 0, 0), I(0x7B, 10, 0, -520, 0), I(0x95)],
     errno.EACCES, "invalid write to stack R10 off=-520 size=8"),
    ("stack read above the frame", SF, lambda m, r: [I(0x79, 0, 10, 8), I(0x95)], errno.EACCES,
     "invalid read from stack R10 off=8 size=8"),
    ("misaligned stack access", SF, lambda m, r: [I(0xB7, 0, 0, 0, 0), I(0x7B, 10, 0, -4), I(0x95)], errno.EACCES,
     "misaligned stack access off 0+0+-4 size 8"),
    ("helper writes below the stack", KP, lambda m, r: [I(0xBF, 1, 10), I(0x07, 1, 0, 0, -520), I(0xB7, 2, 0, 0, 8),
                                                        I(0xB7, 3, 0, 0, 0), I(0x85, 0, 0, 0, 4), I(0x95)],
     errno.EACCES, "invalid write to stack R1 off=-520 size=8"),
    ("kprobe ctx past pt_regs", KP, lambda m, r: [I(0x79, 0, 1, 168), I(0x95)], errno.EACCES,
     "invalid bpf_context access off=168 size=8"),
    ("kprobe ctx is read only", KP, lambda m, r: [I(0xB7, 0, 0, 0, 0), I(0x7B, 1, 0, 0), I(0x95)], errno.EACCES,
     "invalid bpf_context access off=0 size=8"),
    ("tracepoint common header", TP, lambda m, r: [I(0x79, 0, 1, 0), I(0x95)], errno.EACCES,
     "invalid bpf_context access off=0 size=8"),
    ("raw tracepoint past the args", RAW_TP, lambda m, r: [I(0x79, 0, 1, 96), I(0x95)], errno.EACCES,
     "invalid bpf_context access off=96 size=8"),
    ("socket filter writes len", SF, lambda m, r: [I(0xB7, 0, 0, 0, 0), I(0x63, 1, 0, 0), I(0x95)], errno.EACCES,
     "invalid bpf_context access off=0 size=4"),
    ("scalar dereference", KP, lambda m, r: [I(0xB7, 1, 0, 0, 0), I(0x79, 0, 1, 0), I(0x95)], errno.EACCES,
     "R1 invalid mem access 'scalar'"),
    ("map value before the NULL check", KP, lambda m, r: lookup(m) + [I(0x79, 0, 0, 0), I(0x95)], errno.EACCES,
     "R0 invalid mem access 'map_value_or_null'"),
    ("map value past value_size", KP, lambda m, r: lookup(m) + [I(0x15, 0, 0, 1, 0), I(0x79, 0, 0, 4),
                                                              I(0xB7, 0, 0, 0, 0), I(0x95)], errno.EACCES,
     "R0 min value is outside of the allowed memory range"),
    ("unknown helper", SF, lambda m, r: [I(0x85, 0, 0, 0, 999), I(0x95)], errno.EINVAL, "invalid func unknown#999"),
    ("helper not for this type", SF, lambda m, r: [I(0x85, 0, 0, 0, 4), I(0x95)], errno.EINVAL,
     "program of this type cannot use helper bpf_probe_read#4"),
    ("map argument", KP, lambda m, r: [I(0xB7, 1, 0, 0, 0), I(0xB7, 2, 0, 0, 0), I(0x85, 0, 0, 0, 1), I(0x95)],
     errno.EACCES, "R1 type=scalar expected=map_ptr"),
    ("key argument maybe NULL", KP, lambda m, r: lookup(m) + [I(0xBF, 2, 0)] + lddw_map(1, m)
     + [I(0x85, 0, 0, 0, 1), I(0xB7, 0, 0, 0, 0), I(0x95)], errno.EACCES,
     "R2 type=map_value_or_null expected=fp, pkt, pkt_meta, map_key, map_value, mem, ringbuf_mem, buf, trusted_ptr_"),
    ("memory argument", KP, lambda m, r: [I(0xB7, 1, 0, 0, 0), I(0xB7, 2, 0, 0, 8), I(0xB7, 3, 0, 0, 0),
                                         I(0x85, 0, 0, 0, 4), I(0x95)], errno.EACCES,
     "R1 type=scalar expected=fp, pkt, pkt_meta, map_key, map_value, mem, ringbuf_mem, buf, trusted_ptr_"),
    ("ring buffer record not submitted", KP, lambda m, r: ringbuf_reserve(r) + [I(0xB7, 0, 0, 0, 0), I(0x95)],
     errno.EINVAL, "BPF_EXIT instruction in main prog would lead to reference leak"),
    ("submit before the NULL check", KP, lambda m, r: ringbuf_reserve(r) + [I(0xBF, 1, 0), I(0xB7, 2, 0, 0, 0),
                                                                           I(0x85, 0, 0, 0, 132), I(0xB7, 0, 0, 0, 0),
                                                                           I(0x95)],
     errno.EACCES, "R1 type=ringbuf_mem_or_null expected=ringbuf_mem"),
    ("pointer bitwise", SF, lambda m, r: [I(0xBF, 0, 10), I(0x57, 0, 0, 0, 7), I(0x95)], errno.EACCES,
     "R0 bitwise operator &= on pointer prohibited"),
    ("packet without a bounds check", XDP, lambda m, r: [I(0x61, 2, 1, 0), I(0x71, 0, 2, 0), I(0x95)], errno.EACCES,
     "R2 offset is outside of the packet"),
    ("packet past the checked range", XDP, lambda m, r: [I(0x61, 2, 1, 0), I(0x61, 3, 1, 4), I(0xBF, 4, 2),
                                                         I(0x07, 4, 0, 0, 14), I(0x2D, 4, 3, 2, 0), I(0x71, 0, 2, 14),
                                                         I(0x95), I(0xB7, 0, 0, 0, 2), I(0x95)], errno.EACCES,
     "R2 offset is outside of the packet"),
    ("call depth", SF, lambda m, r: nested_calls(8), errno.E2BIG, "the call stack of 9 frames is too deep"),
    ("combined stack", SF, lambda m, r: [I(0x7A, 10, 0, -304, 0), I(0x85, 0, 1, 0, 2), I(0xB7, 0, 0, 0, 0), I(0x95),
                                         I(0x7A, 10, 0, -304, 0), I(0xB7, 0, 0, 0, 0), I(0x95)], errno.EACCES,
     "combined stack size of 2 calls is 608. Too large"),
    ("variable stack read past the top", SF, lambda m, r: [I(0x85, 0, 0, 0, 7), I(0x57, 0, 0, 0, 15), I(0xBF, 1, 10),
                                                            I(0x07, 1, 0, 0, -8), I(0x0F, 1, 0), I(0x71, 0, 1, 0),
                                                            I(0x95)], errno.EINVAL,
     "invalid variable-offset read from stack R1 var_off=(0x0; 0xf) off=-8 size=1"),
    ("LD_ABS without the skb in R6", SF, lambda m, r: [I(0x30, 0, 0, 0, 12), I(0x95)], errno.EACCES, "R6 !read_ok"),
    ("LD_ABS in XDP", XDP, lambda m, r: [I(0xBF, 6, 1), I(0x30, 0, 0, 0, 12), I(0x95)], errno.EINVAL,
     "BPF_LD_[ABS|IND] instructions not allowed for this program type"),
    ("array lookup, constant key past max_entries", KP, lambda m, r: const_key_lookup(m, 4, narrow=True)
     + [I(0x79, 0, 0, 0), I(0x95)], errno.EACCES, "R0 invalid mem access 'map_value_or_null'"),
    ("infinite loop", SF, lambda m, r: [I(0xB7, 0, 0, 0, 0), I(0xB7, 1, 0, 0, 0), I(0x15, 1, 0, -2, 0), I(0x95)],
     errno.EINVAL, "old state: R0=0 R1=0 R10=fp0"),
]


@pytest.fixture
def maps(bpf_kernel):
    array = make_map(bpf_kernel)
    ring = make_map(bpf_kernel, MapType.RINGBUF, 0, 0, 4096)
    return array, ring


@pytest.mark.parametrize("case", REJECTIONS, ids=[c[0] for c in REJECTIONS])
def test_rejection(bpf_kernel, maps, case):
    _name, prog_type, build, code, line = case
    got, log = load(bpf_kernel, build(*maps), prog_type)
    assert (got, error_line(log)) == (code, line), log


def test_gpl_only_helper_needs_gpl(bpf_kernel):
    prog = [I(0xBF, 1, 10), I(0x07, 1, 0, 0, -8), I(0xB7, 2, 0, 0, 8), I(0xB7, 3, 0, 0, 0), I(0x85, 0, 0, 0, 4),
            I(0x95)]
    got, log = load(bpf_kernel, prog, KP, license=b"MIT")
    assert (got, error_line(log)) == (errno.EINVAL,
                                      "cannot call GPL-restricted function from non-GPL compatible program")
    assert load(bpf_kernel, prog, KP, license=b"Dual MIT/GPL")[0] == 0


ACCEPTED = [
    ("bounded loop", SF, lambda m, r: [I(0xB7, 0, 0, 0, 0), I(0x07, 0, 0, 0, 1), I(0xA5, 0, 0, -2, 10), I(0x95)]),
    ("map value after the NULL check", KP, lambda m, r: lookup(m) + [I(0x15, 0, 0, 1, 0), I(0x79, 0, 0, 0),
                                                                   I(0xB7, 0, 0, 0, 0), I(0x95)]),
    ("ring buffer reserve and submit", KP, lambda m, r: ringbuf_reserve(r) + [
        I(0x15, 0, 0, 4, 0), I(0x7A, 0, 0, 8, 1), I(0xBF, 1, 0), I(0xB7, 2, 0, 0, 0), I(0x85, 0, 0, 0, 132),
        I(0xB7, 0, 0, 0, 0), I(0x95)]),
    ("packet inside the checked range", XDP, lambda m, r: [
        I(0x61, 2, 1, 0), I(0x61, 3, 1, 4), I(0xBF, 4, 2), I(0x07, 4, 0, 0, 14), I(0x2D, 4, 3, 2, 0),
        I(0x71, 0, 2, 13), I(0x95), I(0xB7, 0, 0, 0, 2), I(0x95)]),
    ("uninitialised stack read (root)", SF, lambda m, r: [I(0x79, 0, 10, -8), I(0x95)]),
    ("eight nested calls", SF, lambda m, r: nested_calls(7)),
    ("tracepoint record field", TP, lambda m, r: [I(0x79, 0, 1, 8), I(0x95)]),
    ("socket filter cb write", SF, lambda m, r: [I(0xB7, 0, 0, 0, 0), I(0x63, 1, 0, 48), I(0x95)]),
    ("pointer returned", SF, lambda m, r: [I(0xBF, 0, 10), I(0x95)]),
    ("array lookup, zeroed key: no NULL check needed", KP, lambda m, r: const_key_lookup(m, 0)
     + [I(0x79, 0, 0, 0), I(0x95)]),
    ("array lookup, constant key in range", KP, lambda m, r: const_key_lookup(m, 3, narrow=True)
     + [I(0x79, 0, 0, 0), I(0x95)]),
    ("LD_ABS and LD_IND", SF, lambda m, r: [I(0xBF, 6, 1), I(0x30, 0, 0, 0, 12), I(0xB7, 2, 0, 0, 3),
                                            I(0x50, 0, 2, 0, 12), I(0x95)]),
    ("sign-extending a pointer (root)", SF, lambda m, r: [I(0xBF, 0, 10, 8, 0), I(0x95)]),
    ("variable stack read", SF, lambda m, r: [I(0x7A, 10, 0, -8, 0), I(0x85, 0, 0, 0, 7), I(0x57, 0, 0, 0, 7),
                                              I(0xBF, 1, 10), I(0x07, 1, 0, 0, -8), I(0x0F, 1, 0), I(0x71, 0, 1, 0),
                                              I(0x95)]),
    ("atomics, bswap, movsx, gotol-free ALU", SF, lambda m, r: [
        I(0x7A, 10, 0, -8, 1), I(0xB7, 1, 0, 0, 2), I(0xDB, 10, 1, -8, 0x01), I(0xB7, 0, 0, 0, 200),
        I(0xBF, 0, 0, 8, 0), I(0xDC, 0, 0, 0, 16), I(0xD7, 0, 0, 0, 32), I(0x87, 0, 0, 0, 0), I(0x95)]),
]


@pytest.mark.parametrize("case", ACCEPTED, ids=[c[0] for c in ACCEPTED])
def test_accepted(bpf_kernel, maps, case):
    _name, prog_type, build = case
    got, log = load(bpf_kernel, build(*maps), prog_type)
    assert got == 0, log
    assert log.startswith(STATS_PREFIX), log


# Whole logs, compared line for line between the two kernels.
SAME_LOG = ["R0 not set at exit", "r10 is read only", "stack write below the frame", "helper writes below the stack",
            "map argument", "scalar dereference", "misaligned stack access", "packet past the checked range",
            "map value before the NULL check", "submit before the NULL check", "unreachable", "unknown opcode"]


@pytest.mark.parametrize("name", SAME_LOG)
def test_log_matches_linux(name):
    reason = linux_bpf_denied()
    if reason:
        pytest.skip(reason)
    case = {c[0]: c for c in REJECTIONS}[name]
    logs = []
    for kind in ("sim", "linux"):
        sys = boot(kind)
        try:
            m, r = make_map(sys), make_map(sys, MapType.RINGBUF, 0, 0, 4096)
            logs.append(load(sys, case[2](m, r), case[1]))
        finally:
            sys.close_all()
    sim, linux = logs
    # map addresses differ between the kernels; everything else must be identical
    strip = lambda text: "\n".join(x.split(" = 0x")[0] if "(18)" in x else x for x in text.split("\n"))  # noqa: E731
    assert sim[0] == linux[0]
    assert strip(sim[1]) == strip(linux[1])


def test_loop_budget_linux():
    """Linux 6.18 explores loops it cannot bound until 1,000,000 processed instructions."""
    reason = linux_bpf_denied()
    if reason:
        pytest.skip(reason)
    sys = boot("linux")
    got, log = load(sys, UNBOUNDED_LOOP, level=4, log_size=1 << 16)  # stats only: no 40 MB trace
    assert got == errno.E2BIG
    assert log.startswith("BPF program is too large. Processed 1000001 insn\nverification time "), log
    assert "total_states 25001 " in log


def test_loop_budget_sim(monkeypatch):
    """kernel_sim's budget: the same message, the same rule (checked with a small budget: Python is slow)."""
    from types import SimpleNamespace

    from kernel_sim.bpf.preprocess import PreprocessedProgram
    from kernel_sim.vm import verifier
    from kernel_sim.vm.verifier import checker

    assert checker.COMPLEXITY_LIMIT_INSNS == 1_000_000
    monkeypatch.setattr(checker, "COMPLEXITY_LIMIT_INSNS", 20_000)
    meta = SimpleNamespace(prog_type=SF, gpl_compatible=True)
    with pytest.raises(verifier.VerifierError) as err:
        verifier.verify(None, PreprocessedProgram(UNBOUNDED_LOOP), meta, None)
    assert err.value.errno == errno.E2BIG
    assert error_line(err.value.log) == "BPF program is too large. Processed 20001 insn"
    assert "total_states 501 " in err.value.log  # one checkpoint per 40 insns, as Linux (25001 for 1M)


UNBOUNDED_LOOP = [I(0xB7, 0, 0, 0, 0), I(0x07, 0, 0, 0, 1), I(0x55, 0, 0, -2, 0), I(0x95)]


def diamonds(n: int) -> list:
    """n independent if-statements, each adding a different constant: 2^n paths, all safe."""
    prog = [I(0x61, 1, 1, 0), I(0xB7, 2, 0, 0, 0)]
    for k in range(n):
        prog += [I(0x45, 1, 0, 1, 1 << k), I(0x07, 2, 0, 0, 1 << k)]
    return prog + [I(0xBF, 0, 2), I(0x57, 0, 0, 0, 1), I(0x95)]


def test_branch_chains_verify(bpf_kernel):
    """Linux prunes these with precision tracking; kernel_sim must not run out of budget on them."""
    got, log = load(bpf_kernel, diamonds(24), SF, level=4)
    assert got == 0, log


RETURN_CASES = [
    ([I(0xB7, 0, 0, 0, 5), I(0x95)], "At program exit the register R0 has smin=5 smax=5 should have been in [0, 1]"),
    ([I(0x85, 0, 0, 0, 7), I(0x95)], "At program exit the register R0 has unknown scalar value should have been in "
                                     "[0, 1]"),
    ([I(0xBF, 0, 10), I(0x95)], "At program exit the register R0 is not a known value (fp)"),
]


@pytest.mark.parametrize("prog_type", [ProgType.CGROUP_SKB, ProgType.CGROUP_SOCK, ProgType.SOCK_OPS,
                                       ProgType.CGROUP_DEVICE])
def test_return_value_range(bpf_kernel, prog_type):
    """Program types whose return value Linux range-checks at exit; 1 is fine, 5 / unknown / a pointer not."""
    for prog, line in RETURN_CASES:
        got, log = load(bpf_kernel, prog, prog_type)
        assert (got, error_line(log)) == (errno.EINVAL, line), log
    assert load(bpf_kernel, [I(0xB7, 0, 0, 0, 1), I(0x95)], prog_type)[0] == 0
