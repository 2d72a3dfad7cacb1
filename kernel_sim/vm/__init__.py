"""The eBPF VM: address space, verifier, interpreter, JIT and helpers."""
