"""open_kernel: the one place where userland gets a kernel.

``open_kernel("sim")`` boots an embedded kernel_sim and returns its Syscalls for a new
userland process; ``open_kernel("linux")`` returns ctypes calls into this machine's kernel.
Swapping kernels is this one argument. ``run_bare`` is the other door into kernel_sim: the VM
on its own, for ``bpfload vm exec`` (no kernel, no syscalls: the conformance environment).
"""

from __future__ import annotations

from kernel_sim.uapi.syscalls import Syscalls

KERNEL_KINDS = ("sim", "linux")


def open_kernel(kind: str = "sim", **options) -> Syscalls:
    """A Syscalls object for the kernel ``kind``.

    sim options: arch ("x86_64", "riscv64", "loongarch64"), cpus, release, hostname, comm.
    """
    if kind == "sim":
        from kernel_sim.kernel import Kernel

        comm = options.pop("comm", "bpfload")
        return Kernel(**options).syscalls(comm=comm)
    if kind == "linux":
        if options:
            raise ValueError(f"the linux kernel takes no boot options (got {', '.join(options)})")
        from .linux import LinuxSyscalls

        return LinuxSyscalls()
    raise ValueError(f"unknown kernel {kind!r}: choose one of {', '.join(KERNEL_KINDS)}")


class BareRunError(Exception):
    """The VM stopped a bare program (a memory fault, a bad instruction) or failed on it."""


def vm_engines() -> tuple[str, ...]:
    """The VM engines this installation has ("interp", and "jit" when it imports)."""
    from kernel_sim.bpf.engine import engine_kinds

    return tuple(engine_kinds())


def run_bare(code: bytes, mem: bytes, engine: str) -> int:
    """r0 of ``code`` run on the VM with r1 = ``mem`` (or 0), r2 = its length (see
    kernel_sim.bpf.engine.run_raw). Any stop other than exit is a BareRunError naming it."""
    from kernel_sim.bpf.engine import run_raw
    from kernel_sim.vm.memory import VmFault

    try:
        r0, _ = run_raw(code, mem, engine)
    except VmFault as e:
        raise BareRunError(str(e)) from None
    except Exception as e:  # noqa: BLE001 - an engine bug on unverified code is still one error
        raise BareRunError(f"the {engine} engine failed on this program: {type(e).__name__}: {e}") from None
    return r0
