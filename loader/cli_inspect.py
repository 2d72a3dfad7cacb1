"""`bpfload inspect OBJ` and `bpfload disasm OBJ [--program NAME]`: look inside a BPF object
without a kernel (pure loader.obj), the way llvm-readelf / llvm-objdump / bpftool btf dump do."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .cli import CliError, subcommand


def _load(path: str):
    from .obj import ObjectError, load_object

    if not Path(path).exists():
        raise CliError(f"{path}: no such file")
    if Path(path).is_dir():
        raise CliError(f"{path}: is a directory, not a BPF object")
    try:
        return load_object(path)
    except ObjectError as e:
        raise CliError(str(e)) from None


def cmd_inspect(args: argparse.Namespace) -> int:
    from .obj.inspect import inspect_json, inspect_text

    obj = _load(args.object)
    if args.json:
        print(json.dumps(inspect_json(obj), indent=2))
    else:
        print(inspect_text(obj, btf_types=not args.no_btf), end="")
    return 0


def cmd_disasm(args: argparse.Namespace) -> int:
    from .obj import ObjectError
    from .obj.disasm import disassemble_object, disassemble_program
    from .obj.elf import code_sections

    obj = _load(args.object)
    if args.program:
        names = args.program
        missing = [n for n in names if n not in obj.programs]
        if missing:
            raise CliError(f"no program {missing[0]!r} in {args.object} (has: {', '.join(obj.programs) or 'none'})")
        labels = {cs.name: cs.labels for cs in code_sections(Path(args.object).read_bytes(), args.object)}
        print("\n".join(disassemble_program(obj.programs[n], obj, args.alu32, not args.no_source, labels)
                        for n in names), end="")
        return 0
    try:
        text = disassemble_object(Path(args.object).read_bytes(), args.object, with_relocs=not args.no_relocs,
                                  alu32=args.alu32)
    except ObjectError as e:
        raise CliError(str(e)) from None
    print(text, end="")
    return 0


@subcommand
def inspect(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("inspect", help="programs, sections, maps, BTF types and relocations of a BPF object")
    p.add_argument("object", help="BPF ELF object (.o)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--no-btf", action="store_true", help="leave out the BTF type dump")
    p.set_defaults(func=cmd_inspect)


@subcommand
def disasm(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("disasm", help="disassemble a BPF object (llvm-objdump syntax)")
    p.add_argument("object", help="BPF ELF object (.o)")
    p.add_argument("--program", "-p", action="append", metavar="NAME",
                   help="show this program as the loader loads it (callees linked, map references marked); repeatable")
    p.add_argument("--no-relocs", action="store_true", help="without relocation lines (llvm-objdump -d, not -dr)")
    p.add_argument("--no-source", action="store_true", help="with --program: leave out BTF source lines")
    p.add_argument("--alu32", action="store_true",
                   help="32-bit loads/stores/atomics with wN registers (llvm-objdump --mattr=+alu32)")
    p.set_defaults(func=cmd_disasm)
