"""kernel_sim's user-visible ABI: the Linux uapi constants, byte layouts and the Syscalls seam.

It imports nothing else of the project; both kernel and userland import it.
"""
