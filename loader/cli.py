"""The bpfload command line: one entry point, subcommands in the style of bpftool.

Every failure a user can cause ends as one line on stderr naming the problem and a non-zero
exit code; no traceback reaches the terminal.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from .backends import KERNEL_KINDS, open_kernel

ARCHES = ("x86_64", "riscv64", "loongarch64")


class CliError(Exception):
    """A problem to report in one line (exit code 1 unless given)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def add_kernel_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kernel", choices=KERNEL_KINDS, default="sim", help="kernel to use (default: sim)")
    p.add_argument("--arch", choices=ARCHES, default="x86_64", help="simulated kernel's arch")
    p.add_argument("--cpus", type=int, default=2, help="simulated kernel's CPU count")
    p.add_argument("--release", default=None, help="simulated kernel's uname release")


def kernel_from_args(args: argparse.Namespace):
    if args.kernel == "linux":
        return open_kernel("linux")
    if args.cpus < 1:
        raise CliError(f"--cpus must be at least 1 (got {args.cpus})")
    options = {"arch": args.arch, "cpus": args.cpus}
    if args.release:
        options["release"] = args.release
    return open_kernel("sim", **options)


def cmd_kernel_info(args: argparse.Namespace) -> int:
    from .kernel_info import kernel_info

    for key, value in kernel_info(kernel_from_args(args)).items():
        print(f"{key:<16}{value}")
    return 0


SUBCOMMANDS: dict[str, Callable[[argparse._SubParsersAction], None]] = {}


def subcommand(fn: Callable[[argparse._SubParsersAction], None]):
    SUBCOMMANDS[fn.__name__] = fn
    return fn


@subcommand
def kernel(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("kernel", help="facts about the kernel in use")
    ks = p.add_subparsers(dest="kernel_cmd", required=True)
    info = ks.add_parser("info", help="uname, arch, CPUs, kprobe PMU type, symbol count")
    add_kernel_options(info)
    info.set_defaults(func=cmd_kernel_info)


# Subcommands living in their own modules register themselves with @subcommand on import.
SUBCOMMAND_MODULES = ("loader.cli_run", "loader.cli_inspect", "loader.cli_vm", "loader.cli_bpftool")


def _load_subcommand_modules() -> None:
    import importlib

    for name in SUBCOMMAND_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name != name:
                raise


def build_parser() -> argparse.ArgumentParser:
    _load_subcommand_modules()
    parser = argparse.ArgumentParser(
        prog="bpfload",
        description="Load and run eBPF objects on a simulated kernel (default) or on Linux, the way Aya does.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in SUBCOMMANDS.values():
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CliError as e:
        print(f"bpfload: {e}", file=sys.stderr)
        return e.code
    except OSError as e:
        where = f" ({e.filename})" if e.filename else ""
        print(f"bpfload: {e.strerror or e}{where}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
