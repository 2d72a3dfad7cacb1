"""struct pt_regs per arch: the ctx of kprobe programs, as libbpf's PT_REGS_* macros read it.

x86_64: arch/x86/include/asm/ptrace.h (21 u64, 168 bytes). riscv64: epc, the 31 integer
registers x1..x31, status, badaddr, cause, orig_a0 (288 bytes; libbpf casts to
user_regs_struct, the first 32 fields). loongarch64: regs[32], orig_a0, csr_era, csr_badvaddr,
csr_crmd, csr_prmd, csr_euen, csr_ecfg, csr_estat (320 bytes).
"""

from __future__ import annotations

import ctypes

_X86_64 = ("r15 r14 r13 r12 rbp rbx r11 r10 r9 r8 rax rcx rdx rsi rdi orig_rax rip cs eflags rsp ss").split()
_RISCV64 = ("epc ra sp gp tp t0 t1 t2 s0 s1 a0 a1 a2 a3 a4 a5 a6 a7 s2 s3 s4 s5 s6 s7 s8 s9 s10 s11 "
            "t3 t4 t5 t6 status badaddr cause orig_a0").split()
_LOONGARCH64 = [f"r{i}" for i in range(32)] + (
    "orig_a0 csr_era csr_badvaddr csr_crmd csr_prmd csr_euen csr_ecfg csr_estat").split()


def _regs(name: str, fields: list[str]) -> type[ctypes.Structure]:
    return type(name, (ctypes.Structure,), {"_fields_": [(f, ctypes.c_uint64) for f in fields]})


PtRegsX86_64 = _regs("PtRegsX86_64", _X86_64)
PtRegsRiscv64 = _regs("PtRegsRiscv64", _RISCV64)
PtRegsLoongarch64 = _regs("PtRegsLoongarch64", _LOONGARCH64)

PT_REGS = {"x86_64": PtRegsX86_64, "riscv64": PtRegsRiscv64, "loongarch64": PtRegsLoongarch64}
PT_REGS_SIZE = {arch: ctypes.sizeof(t) for arch, t in PT_REGS.items()}

# What libbpf's bpf_tracing.h reads: PT_REGS_PARM1..8 (kernel functions), RET (return
# address holder for kretprobe is RC), RC, SP, FP, IP, and the syscall-wrapper parameters.
PARM_REGS = {
    "x86_64": ["rdi", "rsi", "rdx", "rcx", "r8", "r9"],
    "riscv64": ["a0", "a1", "a2", "a3", "a4", "a5", "a6", "a7"],
    "loongarch64": ["r4", "r5", "r6", "r7", "r8", "r9", "r10", "r11"],
}
RC_REG = {"x86_64": "rax", "riscv64": "a0", "loongarch64": "r4"}
SP_REG = {"x86_64": "rsp", "riscv64": "sp", "loongarch64": "r3"}
FP_REG = {"x86_64": "rbp", "riscv64": "s0", "loongarch64": "r22"}
IP_REG = {"x86_64": "rip", "riscv64": "epc", "loongarch64": "csr_era"}
RA_REG = {"riscv64": "ra", "loongarch64": "r1"}  # x86 keeps the return address on the stack
SYSCALL_NR_REG = {"x86_64": "orig_rax", "riscv64": "a7", "loongarch64": "r11"}
