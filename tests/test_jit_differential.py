"""JIT vs reference interpreter on generated programs: same r0, stack, helper calls and faults.

Programs are generated so that they always terminate: forward jumps anywhere inside their
segment, and counted loops (r9 is the counter, never written by a loop body). r8 holds a
pointer into the stack (r10 - 256) so that loads and stores also take the JIT's generic
(non-r10) path; some accesses go through arbitrary registers and may fault, which both
engines must report at the same instruction.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kernel_sim.uapi.insn import (
    BPF_ALU,
    BPF_ALU64,
    BPF_ATOMIC,
    BPF_CALL,
    BPF_CMPXCHG,
    BPF_DW,
    BPF_END,
    BPF_EXIT,
    BPF_FETCH,
    BPF_JA,
    BPF_JMP,
    BPF_JMP32,
    BPF_K,
    BPF_LDX,
    BPF_MEM,
    BPF_MEMSX,
    BPF_MOV,
    BPF_ST,
    BPF_STX,
    BPF_W,
    BPF_X,
    BPF_XCHG,
    Insn,
    insn,
    ld_imm64,
)
from kernel_sim.vm.interpreter import Interpreter
from kernel_sim.vm.jit import JitEngine
from kernel_sim.vm.memory import STACK_SIZE, AddressSpace, VmFault
from kernel_sim.vm.program import VmProgram
from kernel_sim.vm.runctx import ProgramExit, RunContext

U64 = 0xFFFFFFFFFFFFFFFF
ALU_OPS = [0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80, 0x90, 0xA0, 0xB0, 0xC0]
JMP_OPS = [0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0xA0, 0xB0, 0xC0, 0xD0]
SIZES = [0x00, 0x08, 0x10, 0x18]
SIZE_BYTES = {0x00: 4, 0x08: 2, 0x10: 1, 0x18: 8}
IMMS = st.one_of(st.integers(-(2**31), 2**31 - 1), st.sampled_from([0, 1, -1, 2, 31, 32, 63, 64, -(2**31), 2**31 - 1, 7]))
WRITABLE = [0, 1, 2, 3, 4, 5, 6, 7]          # r8 (stack pointer) and r9 (loop counter) are reserved
READABLE = list(range(11))


def _helper_sum(run, r1, r2, r3, r4, r5) -> int:
    return (r1 * 31 + r2 * 7 + r3 + (r4 ^ r5)) & U64


def _helper_read(run, r1, r2, r3, r4, r5) -> int:
    data = run.vm.read(r1, 8)
    return int.from_bytes(data, "little") if data is not None else (-14) & U64


HELPERS = {1: _helper_sum, 2: _helper_read}


@st.composite
def straight_insn(draw, writable=WRITABLE) -> list[Insn]:  # noqa: C901, PLR0911
    kind = draw(st.sampled_from(["alu", "alu", "alu", "mov", "lddw", "st", "stx", "ldx", "ptr", "atomic",
                                 "call", "callx", "end", "wild"]))
    dst = draw(st.sampled_from(writable))
    src = draw(st.sampled_from(READABLE))
    imm = draw(IMMS)
    if kind == "alu":
        cls = draw(st.sampled_from([BPF_ALU, BPF_ALU64]))
        op = draw(st.sampled_from(ALU_OPS))
        srcbit = draw(st.sampled_from([BPF_K, BPF_X]))
        off = 1 if op in (0x30, 0x90) and draw(st.booleans()) else 0
        return [insn(cls | op | srcbit, dst, src if srcbit else 0, off, imm)]
    if kind == "mov":
        cls = draw(st.sampled_from([BPF_ALU, BPF_ALU64]))
        off = draw(st.sampled_from([0, 8, 16, 32] if cls == BPF_ALU64 else [0, 8, 16]))
        return [insn(cls | BPF_MOV | BPF_X, dst, src, off, 0)]
    if kind == "lddw":
        return ld_imm64(dst, draw(st.integers(0, U64)))
    if kind == "end":
        cls = draw(st.sampled_from([BPF_ALU, BPF_ALU64]))
        src_bit = draw(st.sampled_from([0, 0x08])) if cls == BPF_ALU else 0
        return [insn(cls | BPF_END | src_bit, dst, 0, 0, draw(st.sampled_from([16, 32, 64])))]
    size = draw(st.sampled_from(SIZES))
    nbytes = SIZE_BYTES[size]
    if kind in ("st", "stx", "ldx", "atomic"):
        base = draw(st.sampled_from([10, 8]))
        lo, hi = (-512, -nbytes) if base == 10 else (-256, 256 - nbytes)
        off = draw(st.integers(lo, hi))
        if kind == "st":
            return [insn(BPF_ST | BPF_MEM | size, base, 0, off, imm)]
        if kind == "stx":
            return [insn(BPF_STX | BPF_MEM | size, base, src, off, 0)]
        if kind == "ldx":
            mode = BPF_MEMSX if size != BPF_DW and draw(st.booleans()) else BPF_MEM
            return [insn(BPF_LDX | mode | size, dst, base, off, 0)]
        size = draw(st.sampled_from([BPF_W, BPF_DW]))
        op = draw(st.sampled_from([0x00, 0x40, 0x50, 0xA0, 0x01, 0x41, 0x51, 0xA1, BPF_XCHG, BPF_CMPXCHG]))
        asrc = draw(st.sampled_from(writable)) if op & BPF_FETCH else src
        return [insn(BPF_STX | BPF_ATOMIC | size, base, asrc, draw(st.integers(lo, -8 if base == 10 else 248)), op)]
    if kind == "ptr":   # a pointer to somewhere in the stack, then an access through it
        delta = draw(st.integers(-520, 8))
        return [insn(BPF_ALU64 | BPF_MOV | BPF_X, dst, 10), insn(BPF_ALU64 | BPF_K, dst, 0, 0, delta),
                insn(BPF_LDX | BPF_MEM | size, draw(st.sampled_from(writable)), dst, draw(st.integers(-8, 8)), 0)]
    if kind == "wild":  # an access through whatever a register holds: usually a fault
        return [insn(BPF_LDX | BPF_MEM | size, dst, src, draw(st.integers(-16, 16)), 0)]
    if kind == "call":
        return [insn(BPF_JMP | BPF_CALL, 0, 0, 0, draw(st.sampled_from([1, 2])))]
    # callx through a register holding a helper id (sometimes an unknown one)
    return [insn(BPF_ALU64 | BPF_MOV | BPF_K, dst, 0, 0, draw(st.sampled_from([1, 2, 1, 99]))),
            insn(BPF_JMP | BPF_CALL | BPF_X, dst, 0, 0, 0)]


@st.composite
def segment(draw, depth: int = 0, writable=WRITABLE) -> list:
    """A list of items: Insn, ('fwd', insn_template, distance_in_items) resolved later, or nested loops."""
    items: list = []
    for _ in range(draw(st.integers(1, 8))):
        choice = draw(st.integers(0, 9))
        if choice < 6:
            items.append(draw(straight_insn(writable)))   # kept whole: no jump lands inside
        elif choice < 9:
            cls = draw(st.sampled_from([BPF_JMP, BPF_JMP32]))
            op = draw(st.sampled_from(JMP_OPS + [BPF_JA]))
            srcbit = draw(st.sampled_from([BPF_K, BPF_X]))
            items.append(("fwd", insn(cls | op | (srcbit if op else 0), draw(st.sampled_from(READABLE)),
                                      draw(st.sampled_from(READABLE)) if srcbit else 0, 0, draw(IMMS)),
                          draw(st.integers(0, 6))))
        elif depth == 0:
            items.append(("loop", draw(st.integers(1, 5)), draw(segment(depth + 1, writable))))
    return items


def assemble(items: list) -> list[Insn]:
    """Resolve forward jumps (to at most the segment's end) and loops into instructions."""
    out: list[Insn] = []
    # first lay out nested loops so each item maps to a run of instructions
    flat: list = []
    for it in items:
        if not isinstance(it, Insn) and it[0] == "loop":
            body = assemble(it[2])
            flat.append([insn(BPF_ALU64 | BPF_MOV | BPF_K, 9, 0, 0, it[1])] + body
                        + [insn(BPF_ALU64 | BPF_K, 9, 0, 0, -1),
                           insn(BPF_JMP | 0x50 | BPF_K, 9, 0, -(len(body) + 2), 0)])
        else:
            flat.append(it)
    starts = []
    pos = 0
    for it in flat:
        starts.append(pos)
        pos += len(it) if isinstance(it, list) else 1
    end = pos
    for i, it in enumerate(flat):
        if isinstance(it, list):
            out.extend(it)
        elif not isinstance(it, Insn):
            _, tmpl, dist = it
            target = starts[i + 1 + dist] if i + 1 + dist < len(flat) else end
            rel = target - (starts[i] + 1)
            if (tmpl.code & 7) == BPF_JMP32 and (tmpl.code & 0xF0) == BPF_JA:
                out.append(tmpl._replace(off=0, imm=rel))
            else:
                out.append(tmpl._replace(off=rel))
        else:
            out.append(it)
    return out


@st.composite
def programs(draw) -> list[Insn]:
    prologue = [insn(BPF_ALU64 | BPF_MOV | BPF_X, 8, 10), insn(BPF_ALU64 | BPF_K, 8, 0, 0, -256)]
    for r in range(10):
        if r != 8 and draw(st.booleans()):
            prologue += ld_imm64(r, draw(st.integers(0, U64)))
    body = assemble(draw(segment()))
    prog = prologue + body + [insn(BPF_JMP | BPF_EXIT)]
    if draw(st.booleans()):
        # a bpf-to-bpf call; the callee writes only r0 and r6-r7 (so r1-r5 stay the caller's)
        callee = assemble(draw(segment(1, [0, 6, 7]))) + [insn(BPF_JMP | BPF_EXIT)]
        at = draw(st.sampled_from([len(prologue), len(prog) - 1]))   # no jump crosses these points
        prog = prog[:at] + [insn(BPF_JMP | BPF_CALL, 0, 1, 0, len(prog) - at)] + prog[at:]
        prog += callee
    return prog


def execute_both_ways(insns: list[Insn], engine_cls) -> tuple:
    vm = AddressSpace()
    prog = VmProgram.build(insns, HELPERS, vm)
    engine = engine_cls(prog)
    trace: list = []
    run = RunContext(None, vm=vm, trace=trace, printk=lambda text: None, max_insns=1_000_000)
    stack = bytearray(STACK_SIZE)
    run.stack_base = run.map_region(stack)
    run.engine = engine
    try:
        result = ("r0", engine.run(run, run.stack_base + 64, 77))
    except VmFault as fault:
        result = ("fault", fault.pc)
    except ProgramExit as stop:
        result = ("r0", stop.r0)
    return result, bytes(stack), trace


def _same(insns: list[Insn], jit=JitEngine) -> None:
    want = execute_both_ways(insns, Interpreter)
    got = execute_both_ways(insns, jit)
    assert got[0] == want[0]
    assert got[2] == want[2]
    assert got[1] == want[1]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(programs())
def test_jit_matches_interpreter(insns: list[Insn]) -> None:
    _same(insns)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(programs())
def test_without_tail_copies_matches_interpreter(insns: list[Insn]) -> None:
    """Without copied tails the layout needs wrapped blocks and multi-level exits (_j flags)."""
    _same(insns, lambda prog: JitEngine(prog, tail_copy=False))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(programs())
def test_dispatch_fallback_matches_interpreter(insns: list[Insn]) -> None:
    """The block-dispatch layout (irreducible or too deeply nested code) on the same programs."""
    _same(insns, lambda prog: JitEngine(prog, structured=False))


def test_generated_programs_do_fault_and_call_helpers() -> None:
    """The generator really reaches faults, helper calls and loops (else the test proves little)."""
    seen = {"fault": 0, "r0": 0, "calls": 0}

    @settings(max_examples=150, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(programs())
    def probe(insns: list[Insn]) -> None:
        result, _, trace = execute_both_ways(insns, JitEngine)
        seen[result[0]] += 1
        seen["calls"] += bool(trace)

    probe()
    assert seen["fault"] > 5 and seen["r0"] > 5 and seen["calls"] > 5
