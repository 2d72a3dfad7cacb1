"""BPF in kernel_sim: the bpf() syscall, maps, programs, verifier, VM and helpers."""
