"""Arbitrary instruction streams (no verifier) never crash an engine: r0 or a VmFault, nothing else.

This is what ``bpfload vm exec`` runs: unverified code. Registers 11-15, jumps anywhere, unknown
opcodes, calls to unknown helpers, wild pointers and endless loops must all end as a VmFault
(or a normal exit). The JIT translates verified programs; the named bad cases below hold for it too.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernel_sim.bpf.engine import engine_kinds, run_raw
from kernel_sim.vm import asm
from kernel_sim.vm.helpers import helper_table
from kernel_sim.vm.memory import VmFault

COMMON = [0x07, 0x0F, 0x17, 0x1F, 0x27, 0x2F, 0x37, 0x3F, 0x47, 0x4F, 0x57, 0x5F, 0x67, 0x6F, 0x77, 0x7F, 0x87,
          0x97, 0x9F, 0xA7, 0xAF, 0xB7, 0xBF, 0xC7, 0xCF, 0xD4, 0xDC, 0xD7, 0x04, 0x0C, 0x14, 0x34, 0x3C, 0x94,
          0x9C, 0xB4, 0xBC, 0x05, 0x06, 0x15, 0x1D, 0x25, 0x2D, 0x55, 0x5D, 0x65, 0x6D, 0x16, 0x56, 0x85, 0x8D,
          0x95, 0x18, 0x61, 0x69, 0x71, 0x79, 0x81, 0x89, 0x91, 0x62, 0x6A, 0x72, 0x7A, 0x63, 0x6B, 0x73, 0x7B,
          0xC3, 0xDB, 0x20, 0x28, 0x30, 0x40, 0x48, 0x50]

insn_bytes = st.builds(
    lambda code, regs, off, imm: struct.pack("<BBhi", code, regs, off, imm),
    st.one_of(st.sampled_from(COMMON), st.integers(0, 255)),
    st.integers(0, 255),
    st.one_of(st.integers(-8, 8), st.integers(-(1 << 15), (1 << 15) - 1)),
    st.one_of(st.sampled_from([0, 1, 5, 8, 16, 32, 64, -1, 0x100, 0x110, 0xE1, 0xF1]), st.integers(-(1 << 31), (1 << 31) - 1)),
)


def outcome(code: bytes, mem: bytes, kind: str):
    try:
        r0, out = run_raw(code, mem, kind, max_insns=5_000)
        return ("r0", r0, out)
    except VmFault as fault:
        return ("fault", fault.pc)


@settings(max_examples=200, deadline=None)
@given(prog=st.lists(insn_bytes, min_size=1, max_size=16), mem=st.binary(max_size=16))
def test_arbitrary_code_ends_in_r0_or_a_fault(prog, mem):
    """The interpreter (the engine vm exec uses by default) on unverified code."""
    result = outcome(b"".join(prog), mem, "interp")
    assert result[0] in ("r0", "fault")


@pytest.mark.parametrize("kind", engine_kinds())
@pytest.mark.parametrize("code", [
    "b70c000001000000 9500000000000000",      # mov r12, 1
    "bf0b000000000000 9500000000000000",      # mov r11, r0
    "79f0000000000000 9500000000000000",      # ldxdw r0, [r15]
    "850000000000ff7f",                        # call 0x7fff0000 (unknown helper, last insn)
    "0500ff7f00000000",                        # ja +32767: out of the program
    "8510000000000000",                        # call pc+1: past the end
])
def test_bad_registers_and_targets_fault(kind, code):
    with pytest.raises(VmFault):
        run_raw(bytes.fromhex(code.replace(" ", "")), b"", kind, max_insns=5_000)


HELPER_ARGS = st.one_of(st.sampled_from([0, 1, 8, 16, 64, 4096, 1 << 40, (1 << 64) - 1]), st.integers(0, (1 << 64) - 1))


@settings(max_examples=150, deadline=None)
@given(calls=st.lists(st.tuples(st.sampled_from(sorted(helper_table())), st.lists(HELPER_ARGS, min_size=5, max_size=5),
                                st.lists(st.sampled_from([None, 1, 10]), min_size=5, max_size=5)),
                      min_size=1, max_size=4),
       mem=st.binary(max_size=64))
def test_helpers_with_wild_arguments_never_raise(calls, mem):
    """Every helper, called with numbers, null and near-valid pointers (into mem and the stack)."""
    prog = []
    for fid, args, bases in calls:
        for reg, (value, base) in enumerate(zip(args, bases, strict=True), start=1):
            prog += asm.lddw(reg, value) if base is None else [asm.mov64(reg, base), asm.alu64(0, reg, imm=-(value % 512))]
        prog.append(asm.call(fid))
    prog.append(asm.exit_())
    try:
        run_raw(asm.flatten(*prog), mem, "interp", helper_table(), max_insns=10_000)
    except VmFault:
        pass
