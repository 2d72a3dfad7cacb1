/* SPDX-License-Identifier: GPL-2.0 */
/* PT_REGS_* for the simulated kernel's other arches, with the libbpf this tree builds against.
 *
 * libbpf's riscv support casts ctx to struct user_regs_struct, which only the riscv
 * <asm/ptrace.h> declares; and older libbpf has no loongarch64 at all. Both arches keep the
 * argument registers at fixed u64 slots of struct pt_regs (riscv: a0 is slot 10; loongarch:
 * regs[4]), which is all PT_REGS_PARM1..5 and PT_REGS_RC need. Include after bpf_tracing.h.
 */
#ifndef PT_REGS_COMPAT_H
#define PT_REGS_COMPAT_H

#if defined(__TARGET_ARCH_riscv)
struct user_regs_struct {
	unsigned long pc, ra, sp, gp, tp, t0, t1, t2, s0, s1;
	unsigned long a0, a1, a2, a3, a4, a5, a6, a7;
	unsigned long s2, s3, s4, s5, s6, s7, s8, s9, s10, s11, t3, t4, t5, t6;
};
#elif defined(__TARGET_ARCH_loongarch) && !defined(bpf_target_loongarch)
#define __BPFLOAD_LA_REG(x, n) (((const unsigned long *)(x))[n])
#undef PT_REGS_PARM1
#undef PT_REGS_PARM2
#undef PT_REGS_PARM3
#undef PT_REGS_PARM4
#undef PT_REGS_PARM5
#undef PT_REGS_RC
#define PT_REGS_PARM1(x) __BPFLOAD_LA_REG(x, 4)
#define PT_REGS_PARM2(x) __BPFLOAD_LA_REG(x, 5)
#define PT_REGS_PARM3(x) __BPFLOAD_LA_REG(x, 6)
#define PT_REGS_PARM4(x) __BPFLOAD_LA_REG(x, 7)
#define PT_REGS_PARM5(x) __BPFLOAD_LA_REG(x, 8)
#define PT_REGS_RC(x) __BPFLOAD_LA_REG(x, 4)
#endif

#endif
