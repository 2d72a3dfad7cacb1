"""Generated programs: kernel_sim (interpreter and JIT) against this machine's Linux.

hypothesis writes straight-line and forward-branching programs over r0-r5 (every ALU and
ALU64 op incl. signed div/mod, MOVSX, BSWAP/END, all conditional jumps in 64 and 32 bits),
and, in the memory variant, stack loads/stores/atomics of every size; folds all registers
(and the stack) into r0 and runs them with BPF_PROG_TEST_RUN as socket filters; the
retval must be the same everywhere.
"""

from __future__ import annotations

import pytest
from conftest import linux_bpf_denied
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_prog_load_run import PKT, load
from test_prog_load_run import test_run as prog_run

from kernel_sim.bpf.engine import engine_kinds
from kernel_sim.uapi.bpf import ProgType
from kernel_sim.uapi.insn import (
    BPF_ADD,
    BPF_ALU,
    BPF_ALU64,
    BPF_AND,
    BPF_ARSH,
    BPF_CMPXCHG,
    BPF_DIV,
    BPF_END,
    BPF_FETCH,
    BPF_JEQ,
    BPF_JGE,
    BPF_JGT,
    BPF_JLE,
    BPF_JLT,
    BPF_JMP,
    BPF_JMP32,
    BPF_JNE,
    BPF_JSET,
    BPF_JSGE,
    BPF_JSGT,
    BPF_JSLE,
    BPF_JSLT,
    BPF_K,
    BPF_LSH,
    BPF_MOD,
    BPF_MOV,
    BPF_MUL,
    BPF_NEG,
    BPF_OR,
    BPF_RSH,
    BPF_SUB,
    BPF_X,
    BPF_XCHG,
    BPF_XOR,
    Insn,
    insn,
)
from kernel_sim.vm import asm
from loader.backends import open_kernel

REGS = st.integers(0, 5)
IMM = st.one_of(st.integers(-(1 << 31), (1 << 31) - 1), st.sampled_from([0, 1, -1, 31, 32, 63, 64, -(1 << 31)]))
VALUES = st.one_of(st.integers(0, (1 << 64) - 1),
                   st.sampled_from([0, 1, (1 << 64) - 1, 1 << 63, (1 << 63) - 1, 0xFFFFFFFF, 1 << 31, 0x80000000_00000000]))
BINOPS = [BPF_ADD, BPF_SUB, BPF_MUL, BPF_DIV, BPF_MOD, BPF_OR, BPF_AND, BPF_XOR, BPF_LSH, BPF_RSH, BPF_ARSH, BPF_MOV]
CONDS = [BPF_JEQ, BPF_JNE, BPF_JGT, BPF_JGE, BPF_JLT, BPF_JLE, BPF_JSET, BPF_JSGT, BPF_JSGE, BPF_JSLT, BPF_JSLE]


@st.composite
def alu_unit(draw) -> list[Insn]:
    cls = draw(st.sampled_from([BPF_ALU, BPF_ALU64]))
    dst = draw(REGS)
    kind = draw(st.sampled_from(["bin_k", "bin_x", "neg", "end", "movsx", "sdiv"]))
    if kind == "neg":
        return [insn(cls | BPF_NEG | BPF_K, dst)]
    if kind == "end":
        bits = draw(st.sampled_from([16, 32, 64]))
        to_be = draw(st.sampled_from([0, 8])) if cls == BPF_ALU else 0  # ALU64 END is only bswap
        return [insn(cls | BPF_END | to_be, dst, 0, 0, bits)]
    if kind == "movsx":
        width = draw(st.sampled_from([8, 16] if cls == BPF_ALU else [8, 16, 32]))
        return [insn(cls | BPF_MOV | BPF_X, dst, draw(REGS), width)]
    if kind == "sdiv":
        op = draw(st.sampled_from([BPF_DIV, BPF_MOD]))
        if draw(st.booleans()):
            return [insn(cls | op | BPF_X, dst, draw(REGS), 1)]
        return [insn(cls | op | BPF_K, dst, 0, 1, draw(IMM.filter(bool)))]
    op = draw(st.sampled_from(BINOPS))
    if kind == "bin_x":
        return [insn(cls | op | BPF_X, dst, draw(REGS))]
    width = 64 if cls == BPF_ALU64 else 32
    if op in (BPF_LSH, BPF_RSH, BPF_ARSH):
        imm = draw(st.integers(0, width - 1))
    elif op in (BPF_DIV, BPF_MOD):
        imm = draw(IMM.filter(bool))
    else:
        imm = draw(IMM)
    return [insn(cls | op | BPF_K, dst, 0, 0, imm)]


SIZES = {1: asm.B, 2: asm.H, 4: asm.W, 8: asm.DW}
ATOMIC_OPS = [BPF_ADD, BPF_OR, BPF_AND, BPF_XOR]
STACK = 64  # bytes of stack the memory units use (initialised up front)


@st.composite
def mem_unit(draw) -> list[Insn]:
    """A stack load / store / atomic at an aligned offset in the initialised area."""
    kind = draw(st.sampled_from(["ldx", "ldsx", "stx", "st", "atomic"]))
    size = draw(st.sampled_from([4, 8] if kind == "atomic" else [1, 2, 4, 8]))
    off = -STACK + size * draw(st.integers(0, STACK // size - 1))
    dst, src = draw(REGS), draw(REGS)
    if kind == "ldx":
        return [asm.ldx(SIZES[size], dst, 10, off)]
    if kind == "ldsx":
        return [asm.ldx(SIZES[min(size, 4)], dst, 10, off - off % 4 if size == 8 else off, signed=True)]
    if kind == "stx":
        return [asm.stx(SIZES[size], 10, src, off)]
    if kind == "st":
        return [asm.st(SIZES[size], 10, off, draw(IMM))]
    op = draw(st.sampled_from([*ATOMIC_OPS, *(o | BPF_FETCH for o in ATOMIC_OPS), BPF_XCHG, BPF_CMPXCHG]))
    return [asm.atomic(SIZES[size], op, 10, src, off)]


# A subprogram appended to programs with calls: uses its own stack frame and its arguments.
SUBPROG = [asm.stx(asm.DW, 10, 1, -8), asm.stx(asm.DW, 10, 2, -16), asm.mov64(0, 1),
           insn(BPF_ALU64 | BPF_MUL | BPF_K, 0, 0, 0, 3), asm.ldx(asm.DW, 3, 10, -16),
           insn(BPF_ALU64 | BPF_XOR | BPF_X, 0, 3), asm.ldx(asm.DW, 4, 10, -8), insn(BPF_ALU64 | BPF_ADD | BPF_X, 0, 4),
           asm.st(asm.DW, 10, -24, -1), asm.exit_()]
CALL_LEN = 1 + 2 * 5  # the call and lddw r1..r5 (the verifier forgets r1-r5 after a call)


def _unit_len(unit) -> int:
    if isinstance(unit, tuple):
        return CALL_LEN if unit[0] == "call" else 1
    return len(unit)


@st.composite
def programs(draw, memory: bool = False, calls: bool = False) -> list[Insn]:
    init = [asm.lddw(r, draw(VALUES)) for r in range(6)]
    if memory:
        for off in range(-STACK, 0, 8):
            init += [asm.lddw(6, draw(VALUES)), asm.stx(asm.DW, 10, 6, off)]
    unit = st.one_of(alu_unit(), mem_unit()) if memory else alu_unit()
    units: list = [draw(unit) for _ in range(draw(st.integers(1, 25)))]
    if calls:
        for _ in range(draw(st.integers(1, 3))):
            units.insert(draw(st.integers(0, len(units))), ("call", tuple(draw(VALUES) for _ in range(5))))
    # sprinkle forward conditional jumps over a few following units
    for _ in range(draw(st.integers(0, 6))):
        at = draw(st.integers(0, len(units)))
        skip = draw(st.integers(0, min(4, len(units) - at)))
        units.insert(at, ("jmp", skip, draw(st.sampled_from([BPF_JMP, BPF_JMP32])), draw(st.sampled_from(CONDS)),
                          draw(REGS), draw(st.one_of(st.none(), REGS)), draw(IMM)))
    body: list[Insn] = []
    calls_at: list[int] = []
    for i, unit in enumerate(units):
        if isinstance(unit, tuple) and unit[0] == "call":
            calls_at.append(len(body))
            body.append(asm.call_local(0))  # target patched below
            body.extend(asm.flatten(*(asm.lddw(r, v) for r, v in zip(range(1, 6), unit[1], strict=True))))
        elif isinstance(unit, tuple):
            _, skip, cls, op, dst, src, imm = unit
            off = sum(_unit_len(u) for u in units[i + 1:i + 1 + skip])
            body.append(insn(cls | op | (BPF_K if src is None else BPF_X), dst, src or 0, off, imm if src is None else 0))
        else:
            body.extend(unit)
    fold = []
    for r in range(1, 6):
        fold.append(insn(BPF_ALU64 | BPF_XOR | BPF_X, 0, r))
    if memory:  # the stack's final contents count too
        for off in range(-STACK, 0, 8):
            fold += [asm.ldx(asm.DW, 6, 10, off), insn(BPF_ALU64 | BPF_XOR | BPF_X, 0, 6),
                     insn(BPF_ALU64 | BPF_LSH | BPF_K, 0, 0, 0, 1)]
    fold += [asm.mov64(1, 0), insn(BPF_ALU64 | BPF_RSH | BPF_K, 1, 0, 0, 32), insn(BPF_ALU64 | BPF_XOR | BPF_X, 0, 1),
             asm.exit_()]
    prog = asm.flatten(*init, *body, *fold)
    if calls:
        start = len(asm.flatten(*init))
        for at in calls_at:
            prog[start + at] = asm.call_local(len(prog) - (start + at) - 1)
        prog += SUBPROG
    return prog


def retval(sys, prog: list[Insn]) -> int:
    fd = load(sys, ProgType.SOCKET_FILTER, prog)
    try:
        r = prog_run(sys, fd, PKT)
        assert r.err == 0
        return r.retval
    finally:
        sys.close(fd)


@pytest.fixture(scope="module")
def sims():
    kernels = {kind: open_kernel("sim", engine=kind) for kind in engine_kinds()}
    yield kernels
    for sys in kernels.values():
        sys.close_all()


@pytest.fixture(scope="module")
def linux():
    reason = linux_bpf_denied()
    if reason:
        pytest.skip(reason)
    return open_kernel("linux")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(prog=programs())
def test_generated_programs_agree_with_linux(sims, linux, prog):
    expected = retval(linux, prog)
    for kind, sys in sims.items():
        assert retval(sys, prog) == expected, kind


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(prog=programs(memory=True))
def test_generated_memory_programs_agree_with_linux(sims, linux, prog):
    """Stack loads/stores of every size, sign-extending loads and all atomics, against Linux."""
    expected = retval(linux, prog)
    for kind, sys in sims.items():
        assert retval(sys, prog) == expected, kind


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(prog=programs(memory=True, calls=True))
def test_generated_programs_with_calls_agree_with_linux(sims, linux, prog):
    """bpf-to-bpf calls in between: the callee's frame must not touch the caller's stack."""
    expected = retval(linux, prog)
    for kind, sys in sims.items():
        assert retval(sys, prog) == expected, kind


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(prog=programs(memory=True, calls=True))
def test_generated_programs_agree_between_engines(sims, prog):
    results = {kind: retval(sys, prog) for kind, sys in sims.items()}
    assert len(set(results.values())) == 1, results


PKT_LEN = 64


@st.composite
def xdp_programs(draw) -> list[Insn]:
    """Bounds-checked packet loads/stores (r6 = data, 32 bytes proven) mixed with ALU work."""
    head = [asm.ldx(asm.W, 6, 1, 0), asm.ldx(asm.W, 7, 1, 4), asm.mov64(8, 6),
            insn(BPF_ALU64 | BPF_ADD | BPF_K, 8, 0, 0, 32)]
    head += [asm.lddw(r, draw(VALUES)) for r in range(6)]
    body: list[Insn] = []
    for _ in range(draw(st.integers(1, 20))):
        kind = draw(st.sampled_from(["alu", "ld", "ldsx", "st", "stx"]))
        if kind == "alu":
            body += draw(alu_unit())
            continue
        size = draw(st.sampled_from([1, 2, 4, 8]))
        off = size * draw(st.integers(0, 32 // size - 1))
        if kind == "ld":
            body.append(asm.ldx(SIZES[size], draw(REGS), 6, off))
        elif kind == "ldsx":
            body.append(asm.ldx(SIZES[min(size, 4)], draw(REGS), 6, off - off % 4 if size == 8 else off, signed=True))
        elif kind == "st":
            body.append(asm.st(SIZES[size], 6, off, draw(IMM)))
        else:
            body.append(asm.stx(SIZES[size], 6, draw(REGS), off))
    fold = [insn(BPF_ALU64 | BPF_XOR | BPF_X, 0, r) for r in range(1, 6)]
    fold += [asm.mov64(1, 0), insn(BPF_ALU64 | BPF_RSH | BPF_K, 1, 0, 0, 32), insn(BPF_ALU64 | BPF_XOR | BPF_X, 0, 1),
             asm.exit_()]
    rest = asm.flatten(*head[4:], *body, *fold)
    # if data + 32 > data_end: return 0 (never taken with 64 bytes; the verifier needs the check)
    check = insn(BPF_JMP | BPF_JGT | BPF_X, 8, 7, len(rest))
    return [*head[:4], check, *rest, asm.mov64(0, imm=0), asm.exit_()]


def xdp_result(sys, prog: list[Insn], packet: bytes):
    fd = load(sys, ProgType.XDP, prog)
    try:
        r = prog_run(sys, fd, packet, data_out=256)
        assert r.err == 0
        return r.retval, r.data[:r.data_size_out]
    finally:
        sys.close(fd)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(prog=xdp_programs(), packet=st.binary(min_size=PKT_LEN, max_size=PKT_LEN))
def test_generated_xdp_packet_programs_agree_with_linux(sims, linux, prog, packet):
    """Packet loads/stores of every size through xdp_md's data pointers; retval and bytes out."""
    expected = xdp_result(linux, prog, packet)
    for kind, sys in sims.items():
        assert xdp_result(sys, prog, packet) == expected, kind
