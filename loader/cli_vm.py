"""``bpfload vm exec``: run bare eBPF instructions, speaking the bpf_conformance plugin protocol.

The conformance runner starts the plugin with the input memory as hex bytes on the command
line, writes the program as hex bytes to stdin and reads r0 in hex from stdout; any error is a
message and a non-zero exit. The VM environment is loader.backends.run_bare's:
r1 = memory (or 0), r2 = its length, helper 5 returns its argument (0 ends the program).
The runner passes only MEM-HEX and its own options to the plugin, so point it at a one-line
wrapper: ``#!/bin/sh`` + ``exec bpfload vm exec "$@"`` (add ``--engine jit`` for the JIT).
"""

from __future__ import annotations

import argparse
import sys

from .cli import CliError, subcommand


def parse_hex(text: str, what: str) -> bytes:
    """Hex bytes, whitespace anywhere (and an optional 0x per token) allowed."""
    tokens = text.split()
    digits = "".join(t[2:] if t.lower().startswith("0x") else t for t in tokens)
    try:
        return bytes.fromhex(digits)
    except ValueError:
        raise CliError(f"{what} is not hex bytes") from None


def cmd_vm_exec(args: argparse.Namespace) -> int:
    from .backends import BareRunError, run_bare, vm_engines

    if args.engine not in vm_engines():
        raise CliError(f"engine {args.engine!r} is not available here (have: {', '.join(vm_engines())})")
    mem = parse_hex(" ".join(args.mem), "the memory argument")
    code = parse_hex(sys.stdin.read(), "the program on stdin")
    if not code:
        raise CliError("no program on stdin")
    if len(code) % 8:
        raise CliError(f"program length {len(code)} is not a multiple of 8")
    try:
        r0 = run_bare(code, mem, args.engine)
    except BareRunError as e:
        raise CliError(str(e)) from None
    print(f"{r0:x}")
    return 0


@subcommand
def vm(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("vm", help="the eBPF VM on its own")
    vs = p.add_subparsers(dest="vm_cmd", required=True)
    ex = vs.add_parser("exec", help="run a program (hex on stdin) on MEM-HEX; print r0 in hex (conformance plugin)")
    ex.add_argument("mem", nargs="*", help="input memory as hex bytes (r1 points to it, r2 is its length)")
    ex.add_argument("--engine", choices=("interp", "jit"), default="interp", help="interpreter (default) or JIT")
    ex.set_defaults(func=cmd_vm_exec)
