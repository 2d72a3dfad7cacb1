"""VM semantics beyond the conformance suite, on every engine: frames, atomics, faults, callbacks.

The conformance suite misses a few things (32-bit mod by zero, a callee's own frame); these
tests pin them and the memory-safety promises (a bad access is a VmFault naming the insn).
"""

from __future__ import annotations

import pytest

from kernel_sim.bpf.engine import engine_kinds, run_raw
from kernel_sim.uapi.insn import (
    BPF_ADD,
    BPF_AND,
    BPF_CMPXCHG,
    BPF_DIV,
    BPF_END,
    BPF_FETCH,
    BPF_JEQ,
    BPF_JNE,
    BPF_JSGT,
    BPF_MOD,
    BPF_MOV,
    BPF_OR,
    BPF_SUB,
    BPF_TO_BE,
    BPF_XCHG,
    BPF_XOR,
    encode,
    insn,
)
from kernel_sim.vm import asm
from kernel_sim.vm.asm import DW, B, H, W, alu32, alu64, exit_, flatten, jmp, ldx, mov64, st, stx
from kernel_sim.vm.memory import AddressSpace, VmFault
from kernel_sim.vm.program import func_pc

KINDS = engine_kinds()
U64 = (1 << 64) - 1


def run(*parts, mem: bytes = b"", helpers=None, trace=None, kind="interp", max_insns=None):
    return run_raw(encode(flatten(*parts)), mem, kind, helpers, trace, max_insns)


@pytest.fixture(params=KINDS)
def kind(request):
    return request.param


def test_mod32_by_zero_zeroes_the_upper_half(kind):
    r0, _ = run(asm.lddw(0, 0x1_0000_0005), mov64(1, imm=0), alu32(BPF_MOD, 0, 1), exit_(), kind=kind)
    assert r0 == 5


def test_mod64_by_zero_keeps_dst_and_div_by_zero_is_zero(kind):
    prog = [asm.lddw(0, 0x1_0000_0005), mov64(1, imm=0), alu64(BPF_MOD, 0, 1), exit_()]
    assert run(*prog, kind=kind)[0] == 0x1_0000_0005
    assert run(asm.lddw(0, 77), mov64(1, imm=0), alu64(BPF_DIV, 0, 1), exit_(), kind=kind)[0] == 0
    assert run(asm.lddw(0, 77), mov64(1, imm=0), alu32(BPF_DIV, 0, 1), exit_(), kind=kind)[0] == 0


def test_signed_div_mod_truncate_toward_zero(kind):
    sdiv = insn(0x3F, 0, 1, 1)  # ALU64 DIV X, off=1
    smod = insn(0x9F, 0, 1, 1)
    assert run(mov64(0, imm=-7), mov64(1, imm=2), sdiv, exit_(), kind=kind)[0] == (-3) & U64
    assert run(mov64(0, imm=-7), mov64(1, imm=2), smod, exit_(), kind=kind)[0] == (-1) & U64
    assert run(mov64(0, imm=7), mov64(1, imm=-2), smod, exit_(), kind=kind)[0] == 1


def test_callee_gets_its_own_frame(kind):
    """main writes r10-8; the callee writes its own r10-8; main's slot is intact afterwards."""
    r0, _ = run(
        asm.lddw(1, 0x1122334455667788),   # 0-1
        stx(DW, 10, 1, -8),                # 2
        asm.call_local(7),                 # 3 -> 11
        ldx(DW, 2, 10, -8),                # 4
        asm.lddw(3, 0x1122334455667788),   # 5-6
        mov64(0, imm=1),                   # 7
        jmp(BPF_JEQ, 2, 3, off=1),         # 8
        mov64(0, imm=-1),                  # 9
        exit_(),                           # 10
        # the callee
        st(DW, 10, -8, 0x99),              # 11
        exit_(),                           # 12
        kind=kind,
    )
    assert r0 == 1


def test_callee_frame_is_512_below_and_r6_r9_survive(kind):
    r0, _ = run(
        mov64(6, imm=6), mov64(7, imm=7), mov64(8, imm=8), mov64(9, imm=9),
        asm.call_local(10),
        mov64(1, 0), alu64(BPF_SUB, 1, 10),           # r1 = callee r10 - main r10
        jmp(BPF_JNE, 1, imm=512, off=5),
        alu64(BPF_ADD, 6, 7), alu64(BPF_ADD, 6, 8), alu64(BPF_ADD, 6, 9),
        mov64(0, 6), exit_(),
        mov64(0, imm=-1), exit_(),
        # callee
        mov64(0, 10), mov64(6, imm=0), mov64(7, imm=0), mov64(8, imm=0), mov64(9, imm=0), exit_(),
        kind=kind,
    )
    assert r0 == 30


def test_more_than_eight_frames_fault(kind):
    # a function that calls itself forever: the 8th nested frame does not exist
    with pytest.raises(VmFault):
        run(asm.call_local(1), exit_(), asm.call_local(-1), exit_(), kind=kind)


def test_movsx_and_sign_extending_loads(kind):
    mem = bytes([0x80, 0xFF, 0x00, 0x80, 0xF0, 0xFF, 0xFF, 0xFF])
    assert run(ldx(B, 0, 1, 0, signed=True), exit_(), mem=mem, kind=kind)[0] == (-128) & U64
    assert run(ldx(H, 0, 1, 2, signed=True), exit_(), mem=mem, kind=kind)[0] == (-0x8000) & U64
    assert run(ldx(W, 0, 1, 4, signed=True), exit_(), mem=mem, kind=kind)[0] == (-16) & U64
    movsx8_64 = insn(0xBF, 0, 1, 8)
    movsx16_32 = insn(0xBC, 0, 1, 16)
    assert run(mov64(1, imm=0x1F0), movsx8_64, exit_(), kind=kind)[0] == (-16) & U64
    assert run(mov64(1, imm=0x18000), movsx16_32, exit_(), kind=kind)[0] == 0xFFFF8000


def test_bswap_and_to_be(kind):
    to_be16 = insn(0xD4 | BPF_TO_BE, 0, 0, 0, 16)
    bswap32 = insn(0xD7, 0, 0, 0, 32)
    assert run(asm.lddw(0, 0xAABBCCDD11223344), to_be16, exit_(), kind=kind)[0] == 0x4433
    assert run(asm.lddw(0, 0xAABBCCDD11223344), bswap32, exit_(), kind=kind)[0] == 0x44332211
    assert BPF_END == 0xD0


@pytest.mark.parametrize("size", [W, DW])
@pytest.mark.parametrize("op, expect_mem", [
    (BPF_ADD, 0x10 + 0x3), (BPF_OR, 0x10 | 0x3), (BPF_AND, 0x10 & 0x3), (BPF_XOR, 0x10 ^ 0x3),
])
@pytest.mark.parametrize("fetch", [False, True])
def test_atomics(kind, size, op, expect_mem, fetch):
    r0, mem = run(
        mov64(2, imm=3),
        asm.atomic(size, op | (BPF_FETCH if fetch else 0), 1, 2, 0),
        mov64(0, 2),
        exit_(),
        mem=(0x10).to_bytes(8, "little"), kind=kind,
    )
    assert int.from_bytes(mem, "little") == expect_mem
    assert r0 == (0x10 if fetch else 3)


def test_xchg_and_cmpxchg(kind):
    mem = (0xFFFFFFFF_00000005).to_bytes(8, "little")
    r0, out = run(mov64(2, imm=9), asm.atomic(DW, BPF_XCHG, 1, 2), mov64(0, 2), exit_(), mem=mem, kind=kind)
    assert r0 == 0xFFFFFFFF_00000005 and int.from_bytes(out, "little") == 9
    # 32-bit cmpxchg: compares the low half of r0, loads the old value zero-extended
    r0, out = run(asm.lddw(0, 0x77_00000005), mov64(2, imm=8), asm.atomic(W, BPF_CMPXCHG, 1, 2), exit_(),
                  mem=mem, kind=kind)
    assert r0 == 5 and out[:4] == (8).to_bytes(4, "little") and out[4:] == mem[4:]
    r0, out = run(mov64(0, imm=6), mov64(2, imm=8), asm.atomic(W, BPF_CMPXCHG, 1, 2), exit_(), mem=mem, kind=kind)
    assert r0 == 5 and out == mem


def test_gotol_and_jmp32_signed(kind):
    r0, _ = run(mov64(0, imm=1), asm.gotol(1), mov64(0, imm=2), exit_(), kind=kind)
    assert r0 == 1
    # 0x1_0000_0000 is 0 as a 32-bit value: JSGT 32 against -1 is taken
    r0, _ = run(asm.lddw(1, 0x1_0000_0000), mov64(0, imm=0), asm.jmp32(BPF_JSGT, 1, imm=-1, off=1),
                exit_(), mov64(0, imm=1), exit_(), kind=kind)
    assert r0 == 1


@pytest.mark.parametrize("prog", [
    [ldx(DW, 0, 1, 0), exit_()],                            # r1 = 0: no memory at all
    [ldx(DW, 0, 1, 1), exit_()],                            # 8 bytes at 1 of an 8-byte region
    [st(DW, 10, 3584, 1), exit_()],                         # past the top of the 8 frames
    [st(B, 10, -4097, 1), mov64(0, imm=0), exit_()],        # below the 8 frames of stack
    [asm.lddw(2, 0xFFFFF000_00000010), ldx(W, 0, 2, 0), exit_()],  # a handle is not memory
])
def test_bad_access_is_a_fault_naming_the_insn(kind, prog):
    mem = b"\x01" * 8 if prog[0] == ldx(DW, 0, 1, 1) else b""
    with pytest.raises(VmFault) as err:
        run(*prog, mem=mem, kind=kind)
    assert "insn" in str(err.value)


def test_fault_does_not_touch_memory(kind):
    mem = bytes(range(8))
    with pytest.raises(VmFault):
        run(st(W, 1, 6, 0x41414141), exit_(), mem=mem, kind=kind)
    # run_raw raised before returning the buffer; a fresh run sees the same input
    assert run(ldx(DW, 0, 1, 0), exit_(), mem=mem, kind=kind)[0] == int.from_bytes(mem, "little")


def test_runaway_loop_hits_the_instruction_budget():
    """The interpreter's backstop for unverified code (vm exec); verified programs terminate anyway."""
    with pytest.raises(VmFault, match="instructions"):
        run(mov64(0, imm=0), ja(-1), exit_(), kind="interp", max_insns=10_000)


def ja(off):
    return asm.ja(off)


def test_helpers_are_traced_and_unknown_ones_fault(kind):
    trace: list = []
    helpers = {7: lambda run_, r1, r2, r3, r4, r5: r1 + r2}
    r0, _ = run(mov64(1, imm=40), mov64(2, imm=2), asm.call(7), exit_(), helpers=helpers, trace=trace, kind=kind)
    assert r0 == 42
    assert trace == [(7, (40, 2, 0, 0, 0), 42)]
    with pytest.raises(VmFault, match="unknown helper 99"):
        run(asm.call(99), exit_(), helpers=helpers, kind=kind)


def test_callx_calls_the_helper_named_by_a_register(kind):
    helpers = {5: lambda run_, r1, *rest: r1 * 2}
    r0, _ = run(mov64(1, imm=21), mov64(3, imm=5), insn(0x8D, 3), exit_(), helpers=helpers, kind=kind)
    assert r0 == 42


def test_callback_through_a_function_pointer(kind):
    """A helper calling back into the program (as bpf_loop does) runs the subprogram in a new frame."""

    def loop(run_, r1, r2, r3, r4, r5):
        pc = func_pc(r2)
        total = 0
        for i in range(r1):
            total += run_.call_function(pc, i, r3)
        return total

    r0, _ = run(
        mov64(1, imm=4), asm.lddw_func(2, 4), mov64(3, imm=10), asm.call(181), exit_(),
        # callback(i, ctx): return i * ctx, after scribbling on its own stack
        st(DW, 10, -8, 1), mov64(0, 1), alu64(0x20, 0, 2), exit_(),
        helpers={181: loop}, kind=kind,
    )
    assert r0 == (0 + 1 + 2 + 3) * 10


def test_st_imm_and_mov_sizes(kind):
    r0, mem = run(st(H, 1, 0, 0x1234), st(B, 1, 2, -1), alu32(BPF_MOV, 0, imm=-1), exit_(),
                  mem=bytes(4), kind=kind)
    assert r0 == 0xFFFFFFFF and mem == bytes([0x34, 0x12, 0xFF, 0])


def test_a_loaded_program_that_faults_stops_with_zero_and_is_logged(caplog):
    """Bypassing the verifier: the run ends with r0 = 0, the fault is kept and logged."""
    from kernel_sim.bpf.engine import LoadedEngine, make_vm_engine
    from kernel_sim.kernel import Kernel
    from kernel_sim.vm.helpers import helper_table
    from kernel_sim.vm.program import VmProgram

    kernel = Kernel()
    vmprog = VmProgram.build(flatten(mov64(0, imm=5), ldx(DW, 0, 1, 4096), exit_()), helper_table(), kernel.vm,
                             name="faulty")
    for kind in KINDS:
        engine = LoadedEngine(kernel, vmprog, make_vm_engine(vmprog, kind), kind)
        with caplog.at_level("WARNING", logger="kernel_sim.vm"):
            assert engine.run_ctx(bytes(16)) == 0
        assert engine.faults == 1 and engine.last_fault.pc == 1
        assert "bpf prog faulty stopped: invalid read of 8 bytes" in caplog.text
        assert engine.run_ctx(bytes(16)) == 0 and engine.faults == 2
    assert not [k for k in kernel.vm.regions if k >= 0xFFFFC000]  # the runs' stacks and ctx are unmapped


@pytest.mark.parametrize("helper_id, args", [
    (113, (0, 1 << 40, 0)),            # probe_read_kernel of 1 TiB into the stack
    (112, (0, 1 << 40, 0)),            # probe_read_user
    (115, (0, 1 << 40, 0)),            # probe_read_kernel_str
    (16, (0, 1 << 40, 0)),             # get_current_comm
])
def test_absurd_helper_sizes_are_efault_not_memory_errors(helper_id, args):
    """Unverified code asking a helper for a huge size gets -EFAULT; nothing is allocated."""
    from kernel_sim.vm.helpers import helper_table

    dst_from_fp = [mov64(1, 10), alu64(0x00, 1, imm=-16)]
    prog = [*dst_from_fp, asm.lddw(2, args[1]), mov64(3, imm=args[2]), asm.call(helper_id), exit_()]
    r0, _ = run(*prog, helpers=helper_table())
    assert r0 == (-14) & U64


def test_run_keys_still_mapped_are_not_reused():
    """A long run keeps its keys even after the key cycle wraps around past them."""
    from kernel_sim.vm.memory import RUN_KEYS
    from kernel_sim.vm.runctx import RunContext

    vm = AddressSpace()
    long_run = RunContext(None, vm=vm)
    addr = long_run.map_region(bytearray(b"mine"))
    for _ in range(len(RUN_KEYS) + 5):
        other = RunContext(None, vm=vm)
        other.map_region(bytearray(8))
        other.unmap_all()
    assert vm.read(addr, 4) == b"mine"


@pytest.mark.parametrize("kind", KINDS)
def test_atomic_add_from_two_threads_loses_nothing(kind):
    """Two simulated CPUs hammering one counter with lock xadd: every increment lands."""
    import threading

    vm = AddressSpace()
    counter = bytearray(8)
    addr = vm.map_region(counter)
    loop = [asm.lddw(1, addr), mov64(2, imm=1), mov64(3, imm=3000),
            asm.atomic(DW, BPF_ADD, 1, 2), alu64(BPF_ADD, 3, imm=-1), jmp(BPF_JNE, 3, imm=0, off=-3),
            mov64(0, imm=0), exit_()]
    code = encode(flatten(*loop))
    errors: list = []

    def worker():
        try:
            run_raw(code, b"", kind, vm=vm)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    import sys

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads often, so an unlocked read-modify-write would tear
    try:
        threads = [threading.Thread(target=worker) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    assert not errors
    assert int.from_bytes(counter, "little") == 6000
