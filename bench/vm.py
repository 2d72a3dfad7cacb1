"""VM benchmark: interpreter vs JIT on loop-, branch- and memory-heavy programs.

Prints, per program: instructions executed, ns per executed instruction for the reference
interpreter and for the JIT, the JIT's speed-up measured in the same run, and the JIT's
compile time per instruction. Programs are C in bench/programs/, compiled with
``clang -O2 -target bpf -mcpu=v3`` when clang is present (else the committed .bin text).

    python bench/vm.py [--quick] [--repeat N] [--no-guard]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kernel_sim.uapi.insn import decode  # noqa: E402
from kernel_sim.vm.interpreter import Interpreter  # noqa: E402
from kernel_sim.vm.jit import JitEngine  # noqa: E402
from kernel_sim.vm.memory import AddressSpace  # noqa: E402
from kernel_sim.vm.program import VmProgram  # noqa: E402
from kernel_sim.vm.runctx import RunContext, execute  # noqa: E402

PROGRAMS = Path(__file__).resolve().parent / "programs"
MIB = 1 << 20


def text_of(name: str) -> bytes:
    """The .text of bench/programs/NAME.c, compiled now when clang is here, else NAME.bin
    (the committed build of the same source, clang 14 -O2 -mcpu=v3)."""
    src, binary = PROGRAMS / f"{name}.c", PROGRAMS / f"{name}.bin"
    clang, objcopy = shutil.which("clang"), shutil.which("llvm-objcopy")
    if clang and objcopy:
        with tempfile.TemporaryDirectory() as tmp:
            obj, out = Path(tmp) / "p.o", Path(tmp) / "p.bin"
            subprocess.run([clang, "-O2", "-target", "bpf", "-mcpu=v3", "-c", str(src), "-o", str(obj)], check=True)
            subprocess.run([objcopy, "-O", "binary", "--only-section=.text", str(obj), str(out)], check=True)
            return out.read_bytes()
    return binary.read_bytes()


def workloads(quick: bool) -> list[tuple[str, str, int, int, bytes | None]]:
    """(label, program, r1, r2, memory) — r1 is replaced by the memory's address when given."""
    scale = 4 if quick else 1
    mem = bytes((i % 251) + 1 for i in range(MIB // scale))   # no NUL: strcmp runs to the end
    return [
        ("loop-heavy: primes by trial division", "primes", 0, 6000 // scale, None),
        ("branch-heavy: 64-way switch", "switch", 12345, 40000 // scale, None),
        (f"memory-heavy: memcpy+strcmp {len(mem) // 1024} KiB", "mem", 0, len(mem), mem),
    ]


def run_once(engine, vm: AddressSpace, r1: int, r2: int, mem: bytes | None) -> tuple[int, int, float]:
    run = RunContext(None, vm=vm, printk=lambda text: None, max_insns=10**12)
    if mem is not None:
        r1 = run.map_region(bytearray(mem))
    t0 = time.perf_counter()
    r0 = execute(engine, run, r1, r2)
    return r0, run.insns, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller inputs (a quarter)")
    ap.add_argument("--repeat", type=int, default=3, help="JIT runs per program (best is kept)")
    ap.add_argument("--no-guard", action="store_true", help="JIT without the per-loop iteration bound")
    args = ap.parse_args()
    guard = not args.no_guard
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {load:.1f}, "
          f"JIT loop guard {'on' if guard else 'off'}, JIT best of {args.repeat}")
    header = f"{'program':<38} {'insns':>8} {'executed':>11} {'interp ns/i':>11} {'JIT ns/i':>9} {'speed-up':>9} " \
             f"{'compile us/i':>12}"
    print(header)
    print("-" * len(header))
    for label, name, r1, r2, mem in workloads(args.quick):
        insns = decode(text_of(name))
        vm = AddressSpace()
        prog = VmProgram.build(insns, {}, vm, name=name)
        t0 = time.perf_counter()
        jit = JitEngine(prog, loop_guard=guard)
        compile_s = time.perf_counter() - t0
        counting = JitEngine(prog, loop_guard=guard, count=True)
        r0_c, executed, _ = run_once(counting, vm, r1, r2, mem)
        r0_i, executed_i, t_interp = run_once(Interpreter(prog), vm, r1, r2, mem)
        best = min(run_once(jit, vm, r1, r2, mem)[2] for _ in range(args.repeat))
        r0_j = run_once(jit, vm, r1, r2, mem)[0]
        if not r0_i == r0_j == r0_c or executed != executed_i:
            raise SystemExit(f"{name}: engines disagree: r0 {r0_i:#x}/{r0_j:#x}/{r0_c:#x}, "
                             f"insns {executed_i}/{executed}")
        ns_i, ns_j = t_interp / executed * 1e9, best / executed * 1e9
        print(f"{label:<38} {len(insns):>8} {executed:>11,} {ns_i:>11.1f} {ns_j:>9.1f} {ns_i / ns_j:>8.1f}x "
              f"{compile_s / len(insns) * 1e6:>12.1f}")
    print("targets: JIT <= 20 ns/insn loop-heavy, <= 40 branch-heavy, >= 10x the interpreter; "
          "the figures scale with the machine's load")


if __name__ == "__main__":
    main()
