"""open_kernel: the one place where userland gets a kernel.

``open_kernel("sim")`` boots an embedded kernel_sim and returns its Syscalls for a new
userland process; ``open_kernel("linux")`` returns ctypes calls into this machine's kernel.
Swapping kernels is this one argument.
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
