// SPDX-License-Identifier: GPL-2.0
/* syscall_counter: the write-up's own Aya application, as C.
 *
 * A kprobe on the kernel's syscall dispatcher counts system calls by number in a
 * hash map and logs each one with aya-log's record format (see aya_log.h); the
 * user side prints the log lines with their level and the count table every 5 s.
 * The object is laid out as Aya builds it: a bare "kprobe" section (the program
 * name comes from the function symbol, the function to probe from the attach
 * call) and Aya's 7-field map definitions in the legacy "maps" section.
 *
 * The probed dispatcher takes the user registers saved at syscall entry as its
 * first argument: x64_sys_call(const struct pt_regs *regs, unsigned int nr) on
 * x86_64 (Linux >= 4.17), do_syscall(struct pt_regs *regs) on the simulated
 * riscv64 and loongarch64 kernels. The number is read from those registers with
 * bpf_probe_read_kernel: orig_rax on x86_64, a7 on riscv64, r11 on loongarch64.
 *
 *   bpfload run examples/syscall_counter.bpf.o --kprobe x64_sys_call
 *   bpfload run examples/syscall_counter.riscv64.bpf.o --arch riscv64 --kprobe do_syscall
 */
#include <linux/bpf.h>
#include <linux/ptrace.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "pt_regs_compat.h"
#include "aya_log.h"

/* Where the syscall number sits in the saved user registers. */
#if defined(__TARGET_ARCH_riscv)
#define SYSCALL_NR_OFF (17 * 8)		/* a7: epc, ra, sp, gp, tp, t0-t2, s0, s1, a0-a7 */
#elif defined(__TARGET_ARCH_loongarch)
#define SYSCALL_NR_OFF (11 * 8)		/* regs[11] (a7) */
#else
#define SYSCALL_NR_OFF __builtin_offsetof(struct pt_regs, orig_rax)
#endif

struct aya_bpf_map_def SEC("maps") SYSCALL_COUNTS = {
	.type = BPF_MAP_TYPE_HASH,
	.key_size = sizeof(__u64),	/* syscall number */
	.value_size = sizeof(__u64),	/* count */
	.max_entries = 1024,
};

/* info!(ctx, "syscall {} called, {} times", nr, count) */
struct syscall_log_record {
	AYA_STR_FIELD(target, 15);
	AYA_U8_FIELD(level);
	AYA_STR_FIELD(module, 15);
	AYA_STR_FIELD(file, 11);
	AYA_U32_FIELD(line);
	AYA_U64_FIELD(num_args);
	AYA_STR_FIELD(lit0, 8);		/* "syscall " */
	AYA_U8_FIELD(hint0);
	AYA_U64_FIELD(nr);
	AYA_STR_FIELD(lit1, 9);	/* " called, " */
	AYA_U8_FIELD(hint1);
	AYA_U64_FIELD(count);
	AYA_STR_FIELD(lit2, 6);		/* " times" */
} __attribute__((packed));

SEC("kprobe")
int syscall_counter(struct pt_regs *ctx)
{
	const void *regs = (const void *)PT_REGS_PARM1(ctx);	/* the dispatcher's regs argument */
	__u64 nr = 0, one = 1, count = 1, *c;
	__u32 zero = 0;
	struct syscall_log_record *r;

	bpf_probe_read_kernel(&nr, sizeof(nr), regs + SYSCALL_NR_OFF);

	c = bpf_map_lookup_elem(&SYSCALL_COUNTS, &nr);
	if (c) {
		count = __sync_fetch_and_add(c, 1) + 1;
	} else {
		bpf_map_update_elem(&SYSCALL_COUNTS, &nr, &one, BPF_NOEXIST);
	}

	r = bpf_map_lookup_elem(&AYA_LOG_BUF, &zero);
	if (!r)
		return 0;
	AYA_SET_STR(r->target, AYA_TARGET, "syscall_counter");
	AYA_SET(r->level, AYA_LEVEL, AYA_INFO);
	AYA_SET_STR(r->module, AYA_MODULE, "syscall_counter");
	AYA_SET_STR(r->file, AYA_FILE, "src/main.rs");
	AYA_SET(r->line, AYA_LINE, 42);
	AYA_SET(r->num_args, AYA_NUM_ARGS, 7);
	AYA_SET_STR(r->lit0, AYA_ARG_STR, "syscall ");
	AYA_SET(r->hint0, AYA_ARG_DISPLAY_HINT, AYA_HINT_DEFAULT);
	AYA_SET(r->nr, AYA_ARG_U64, nr);
	AYA_SET_STR(r->lit1, AYA_ARG_STR, " called, ");
	AYA_SET(r->hint1, AYA_ARG_DISPLAY_HINT, AYA_HINT_DEFAULT);
	AYA_SET(r->count, AYA_ARG_U64, count);
	AYA_SET_STR(r->lit2, AYA_ARG_STR, " times");
	bpf_perf_event_output(ctx, &AYA_LOGS, BPF_F_CURRENT_CPU, r, sizeof(*r));
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
