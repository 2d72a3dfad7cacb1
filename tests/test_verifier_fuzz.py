"""Random programs: the verifier never crashes, and it answers as Linux 6.18 does.

The generator mixes random instructions (ALU, loads/stores around the stack and ctx, jumps,
helper calls, lddw) with the usual idioms (map lookup + NULL check, stack buffers passed to
helpers). Each program goes through PROG_LOAD on kernel_sim and, where bpf() is allowed, on
Linux: both must give the same errno and the same error line.
"""

from __future__ import annotations

import random
import re
from types import SimpleNamespace

import pytest
from conftest import boot, linux_bpf_denied
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_verifier import error_line, load, make_map

from kernel_sim.bpf.preprocess import MapRef, PreprocessedProgram
from kernel_sim.uapi.bpf_enums import MapType
from kernel_sim.uapi.insn import insn as I  # noqa: N812 - the assembler's short name
from kernel_sim.vm.verifier import VerifierError, verify

ALU_OPS = [0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80, 0x90, 0xA0, 0xB0, 0xC0]
JMP_OPS = [0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0xA0, 0xB0, 0xC0, 0xD0]
PROG_TYPES = [1, 2, 5, 6, 17]


def random_program(rnd: random.Random, map_fd: int, ring_fd: int | None = None) -> list:
    def reg():
        return rnd.choice([0, 1, 2, 3, 4, 5, 6, 10]) if rnd.random() < 0.97 else rnd.randint(0, 15)

    def imm():
        return rnd.choice([0, 1, -1, 8, -8, 16, 64, 0x7FFFFFFF, -512, 4, 2, 255, rnd.randint(-1000, 1000)])

    n = rnd.randint(2, 16)
    prog = [I(0xB7, 0, 0, 0, 0)] if rnd.random() < 0.7 else []
    while len(prog) < n:
        k = rnd.random()
        size = rnd.choice([0x00, 0x08, 0x10, 0x18])
        if k < 0.3:
            cls, x = rnd.choice([0x04, 0x07]), rnd.choice([0, 8])
            prog.append(I(cls | rnd.choice(ALU_OPS) | x, reg(), reg() if x else 0, 0, imm()))
        elif k < 0.42:
            prog.append(I(0x61 | size, reg(), rnd.choice([1, 10, 10, 2, 0]), rnd.choice([-8, -16, -4, 0, 8, 16, 24,
                                                                                           -512, -520]), 0))
        elif k < 0.54:
            prog.append(I(0x63 | size, rnd.choice([10, 10, 1, 2, 0]), reg(), rnd.choice([-8, -16, -4, 0, 8, -512]), 0))
        elif k < 0.58:
            prog.append(I(0x62 | size, rnd.choice([10, 10, 1]), 0, rnd.choice([-8, -16, -4, 0, 8]), imm()))
        elif k < 0.75 and len(prog) + 2 < n:
            cls, x = rnd.choice([0x05, 0x06]), rnd.choice([0, 8])
            off = rnd.randint(-3, max(0, min(5, n - len(prog) - 2)))
            prog.append(I(cls | rnd.choice(JMP_OPS) | x, reg(), reg() if x else 0, off, 0 if x else imm()))
        elif k < 0.8:
            prog.append(I(0x85, 0, 0, 0, rnd.choice([1, 2, 5, 7, 8, 14, 16, 4, 113, 6, 999, 25, 131])))
        elif k < 0.85:
            prog += [I(0x18, reg(), 0, 0, imm()), I(0, 0, 0, 0, imm())]
        elif k < 0.93:  # lookup idiom, maybe with the NULL check
            prog += [I(0x7A, 10, 0, -8, rnd.choice([0, 1, 70])), I(0xBF, 2, 10), I(0x07, 2, 0, 0, -8),
                     I(0x18, 1, 1, 0, map_fd), I(0, 0, 0, 0, 0), I(0x85, 0, 0, 0, 1)]
            if rnd.random() < 0.7:
                prog.append(I(0x15, 0, 0, 1, 0))
            prog.append(I(0x79 if rnd.random() < 0.5 else 0x7B, rnd.choice([0, 1]), rnd.choice([0, 1]),
                          rnd.choice([0, 4, 8, -8]), 0))
        elif k < 0.935 and ring_fd is not None:  # ring buffer record, maybe checked, maybe submitted
            prog += [I(0x18, 1, 1, 0, ring_fd), I(0, 0, 0, 0, 0), I(0xB7, 2, 0, 0, rnd.choice([8, 16])),
                     I(0xB7, 3, 0, 0, 0), I(0x85, 0, 0, 0, 131)]
            if rnd.random() < 0.8:
                prog.append(I(0x15, 0, 0, 4 if rnd.random() < 0.8 else 3, 0))
            prog += [I(0x7A, 0, 0, rnd.choice([0, 8, 12]), 1), I(0xBF, 1, 0), I(0xB7, 2, 0, 0, 0),
                     I(0x85, 0, 0, 0, rnd.choice([132, 133]))]
        elif k < 0.945:  # a helper filling a stack buffer
            prog += [I(0xBF, 1, 10), I(0x07, 1, 0, 0, rnd.choice([-16, -32, -8, -520])),
                     I(0xB7, 2, 0, 0, rnd.choice([16, 32, 0, 8])), I(0xB7, 3, 0, 0, 0),
                     I(0x85, 0, 0, 0, rnd.choice([113, 115, 16]))]
        elif k < 0.955:  # packet bounds idiom (meaningful for XDP)
            n_ = rnd.choice([4, 14, 20])
            prog += [I(0x61, 2, 1, 0), I(0x61, 3, 1, 4), I(0xBF, 4, 2), I(0x07, 4, 0, 0, n_),
                     I(0x2D, 4, 3, 1, 0), I(0x71, 0, 2, rnd.choice([0, n_ - 1, n_]))]
        elif k < 0.96:  # a counted loop around a little arithmetic
            body = [I(0x07 | rnd.choice([0x00, 0x20, 0xA0]), 0, 0, 0, imm()) for _ in range(rnd.randint(0, 2))]
            prog += [I(0xB7, 6, 0, 0, 0)] + body + [I(0x07, 6, 0, 0, 1),
                                                    I(0xA5, 6, 0, -(len(body) + 2), rnd.choice([3, 10, 100]))]
        else:
            prog.append(I(0xBF, reg(), reg(), 0, 0))
    prog.append(I(0x95))
    if rnd.random() < 0.2:  # a bpf-to-bpf call to a small subprogram placed after main
        at = rnd.randrange(len(prog) - 1)
        while at and prog[at - 1].code == 0x18:  # never between the halves of an lddw
            at -= 1
        sub = [I(0xBF, 0, rnd.choice([1, 2, 10]), 0, 0), I(0x07, 0, 0, 0, imm()), I(0x95)]
        prog.insert(at, I(0x85, 0, 1, 0, len(prog) - at))
        prog = _fix_jumps(prog, at) + sub
    return prog


def _fix_jumps(prog: list, at: int) -> list:
    """Keep jumps that cross the inserted call pointing at the same instructions."""
    out = []
    for i, x in enumerate(prog):
        if x.code & 7 in (5, 6) and x.code & 0xF0 not in (0x80, 0x90) and i != at:
            old_i = i if i < at else i - 1
            target = old_i + x.off + 1
            new_target = target if target <= at else target + 1
            new_i = i
            x = x._replace(off=new_target - new_i - 1)
        out.append(x)
    return out


class FakeMap:
    map_type = MapType.ARRAY
    key_size = 4
    value_size = 8
    max_entries = 4
    map_flags = 0
    name = ""


@settings(max_examples=int(__import__("os").environ.get("VFUZZ_EXAMPLES", "300")), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), prog_type=st.sampled_from(PROG_TYPES), level=st.sampled_from([0, 1, 2, 4]))
def test_never_crashes(seed, prog_type, level):
    """Whatever the program, verify() returns or raises VerifierError with a stats line."""
    rnd = random.Random(seed)
    prog = random_program(rnd, 3)
    refs = {i: MapRef(i, FakeMap(), None) for i, x in enumerate(prog) if x.code == 0x18 and x.src == 1}
    meta = SimpleNamespace(prog_type=prog_type, gpl_compatible=rnd.random() < 0.8)
    written = []
    log = SimpleNamespace(level=level, write=written.append)
    try:
        result = verify(None, PreprocessedProgram(prog, refs), meta, log)
    except VerifierError as e:
        assert e.errno in (1, 7, 13, 22, 28), e.log  # 14 (EFAULT) would be a verifier bug
        assert "processed " in e.log
        return
    assert result.verified_insns >= 1
    if level:
        assert "processed " in "".join(written)


@pytest.mark.parametrize("chunk", range(int(__import__("os").environ.get("VFUZZ_CHUNKS", "4"))))
def test_same_answers_as_linux(chunk):
    """150 random programs per chunk: same errno and error line on kernel_sim and on Linux."""
    reason = linux_bpf_denied()
    if reason:
        pytest.skip(reason)
    sim, linux = boot("sim"), boot("linux")
    try:
        fds = {"sim": make_map(sim), "linux": make_map(linux)}
        rnd = random.Random(1000 + chunk)
        differ = []
        for _ in range(150):
            seed = rnd.getrandbits(32)
            prog_type = rnd.choice(PROG_TYPES)
            answers = []
            for kind, sys in (("sim", sim), ("linux", linux)):
                prog = random_program(random.Random(seed), fds[kind])
                got, log = load(sys, prog, prog_type)
                answers.append((got, error_line(log) if got else ""))
            if answers[0] != answers[1]:
                differ.append((seed, prog_type, answers))
        assert not differ, differ
    finally:
        sim.close_all()
        linux.close_all()


def _normal(log: str) -> str:
    """Map addresses differ between kernels, and Linux counts states per hash bucket."""
    log = re.sub(r"= 0x[0-9a-f]{12,}", "= ADDR", log)
    return re.sub(r"max_states_per_insn \d+", "max_states_per_insn N", log)


def test_same_logs_as_linux():
    """Whole level-1 logs (trace of the failing path, states, error, statistics) equal Linux's."""
    reason = linux_bpf_denied()
    if reason:
        pytest.skip(reason)
    sim, linux = boot("sim"), boot("linux")
    try:
        fds = {"sim": make_map(sim), "linux": make_map(linux)}
        rnd = random.Random(77)
        differ = []
        for _ in range(200):
            seed, prog_type = rnd.getrandbits(32), rnd.choice(PROG_TYPES)
            logs = [_normal(load(sys, random_program(random.Random(seed), fds[kind]), prog_type)[1])
                    for kind, sys in (("sim", sim), ("linux", linux))]
            if logs[0] != logs[1]:
                differ.append((seed, prog_type))
        assert not differ, differ
    finally:
        sim.close_all()
        linux.close_all()


def pointer_math_program(rnd: random.Random, map_fd: int) -> list:
    """lookup; r1 = random u32; a few bounds tests (64/32-bit, signed/unsigned) and ALU; v += r1; load."""
    prog = [I(0x7A, 10, 0, -8, 0), I(0xBF, 2, 10), I(0x07, 2, 0, 0, -8), I(0x18, 1, 1, 0, map_fd), I(0, 0, 0, 0, 0),
            I(0x85, 0, 0, 0, 1), I(0x55, 0, 0, 2, 0), I(0xB7, 0, 0, 0, 0), I(0x95), I(0xBF, 6, 0),
            I(0x85, 0, 0, 0, 7), I(0xBF, 1, 0)]
    body = []
    for _ in range(rnd.randint(1, 5)):
        k = rnd.random()
        if k < 0.3:
            body.append(I(rnd.choice([0x57, 0x54, 0x77, 0x74, 0x67, 0x07, 0x04, 0x17, 0xC7, 0xA7, 0x47, 0xBC, 0xBF]), 1,
                          0, 0, rnd.choice([1, 3, 7, 15, 31, 63, 64, 0xFF, 32, 2, 4, -1, -8])))
        elif k < 0.75:
            body.append((rnd.choice([0x05, 0x06]) | rnd.choice([0x20, 0x30, 0xA0, 0xB0, 0x60, 0x70, 0xC0, 0xD0, 0x10,
                                                                  0x50]),
                         rnd.choice([0, 1, 5, 8, 31, 32, 56, 63, 64, -1, -64, 100])))
        else:
            body.append(I(0xBC if rnd.random() < 0.5 else 0xBF, 1, 1, 0, 0))
    for i, b in enumerate(body):  # tests jump to the "r0 = 0; exit" at the end
        prog.append(I(b[0], 1, 0, len(body) - i - 1 + 3, b[1]) if len(b) == 2 else b)
    return prog + [I(0x0F, 6, 1), I(rnd.choice([0x71, 0x79]), 0, 6, rnd.choice([0, 1, 8, 56, 63])), I(0x95),
                   I(0xB7, 0, 0, 0, 0), I(0x95)]


def test_pointer_math_accepted_alike():
    """Map-value pointer arithmetic after bounds tests: whatever Linux accepts, kernel_sim accepts.

    (The converse may fail where Linux's own ranges go inconsistent on a path that cannot happen
    and it reports an error there; kernel_sim drops such paths.)"""
    reason = linux_bpf_denied()
    if reason:
        pytest.skip(reason)
    sim, linux = boot("sim"), boot("linux")
    try:
        fds = {"sim": make_map(sim, value_size=64), "linux": make_map(linux, value_size=64)}
        rnd = random.Random(5)
        differ = []
        for _ in range(400):
            seed, prog_type = rnd.getrandbits(32), rnd.choice([1, 2])
            got = [load(sys, pointer_math_program(random.Random(seed), fds[kind]), prog_type)[0] == 0
                   for kind, sys in (("sim", sim), ("linux", linux))]
            if got[1] and not got[0]:
                differ.append((seed, prog_type, got))
        assert not differ, differ
    finally:
        sim.close_all()
        linux.close_all()
