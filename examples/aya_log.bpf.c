// SPDX-License-Identifier: GPL-2.0
/* aya_log: logging the way Aya's log macros do, from a tracepoint that runs on the
 * real kernel too. Each openat sends one aya-log record (format in aya_log.h):
 *
 *   debug!(ctx, "pid {} openat flags {:x}", pid, flags)
 *   warn!(ctx, "pid {} opens with O_CREAT", pid)      (only when O_CREAT is set)
 *
 *   bpfload run examples/aya_log.bpf.o --tracepoint syscalls/sys_enter_openat
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "aya_log.h"

#define O_CREAT 0100

struct sys_enter_openat_ctx {
	__u16 common_type;
	__u8 common_flags;
	__u8 common_preempt_count;
	__s32 common_pid;
	__s32 __syscall_nr;
	__u32 __pad;
	__u64 dfd;
	const char *filename;
	__u64 flags;
	__u64 mode;
};

#define AYA_HEADER \
	AYA_STR_FIELD(target, 7); \
	AYA_U8_FIELD(level); \
	AYA_STR_FIELD(module, 7); \
	AYA_STR_FIELD(file, 11); \
	AYA_U32_FIELD(line); \
	AYA_U64_FIELD(num_args)

#define AYA_SET_HEADER(r, lvl, ln, n) do { \
	AYA_SET_STR((r)->target, AYA_TARGET, "aya_log"); \
	AYA_SET((r)->level, AYA_LEVEL, lvl); \
	AYA_SET_STR((r)->module, AYA_MODULE, "aya_log"); \
	AYA_SET_STR((r)->file, AYA_FILE, "src/main.rs"); \
	AYA_SET((r)->line, AYA_LINE, ln); \
	AYA_SET((r)->num_args, AYA_NUM_ARGS, n); \
} while (0)

/* "pid {} openat flags {:x}": Str, Hint, U32, Str, Hint, U64 */
struct flags_record {
	AYA_HEADER;
	AYA_STR_FIELD(lit0, 4);		/* "pid " */
	AYA_U8_FIELD(hint0);
	AYA_U32_FIELD(pid);
	AYA_STR_FIELD(lit1, 14);	/* " openat flags " */
	AYA_U8_FIELD(hint1);
	AYA_U64_FIELD(flags);
} __attribute__((packed));

/* "pid {} opens with O_CREAT": Str, Hint, U32, Str */
struct creat_record {
	AYA_HEADER;
	AYA_STR_FIELD(lit0, 4);		/* "pid " */
	AYA_U8_FIELD(hint0);
	AYA_U32_FIELD(pid);
	AYA_STR_FIELD(lit1, 19);	/* " opens with O_CREAT" */
} __attribute__((packed));

enum { AYA_ARG_U32 = 8 };

SEC("tracepoint/syscalls/sys_enter_openat")
int aya_log_openat(struct sys_enter_openat_ctx *ctx)
{
	__u32 zero = 0, pid = bpf_get_current_pid_tgid() >> 32;
	__u64 flags = ctx->flags;
	void *buf = bpf_map_lookup_elem(&AYA_LOG_BUF, &zero);
	struct flags_record *f = buf;
	struct creat_record *c = buf;

	if (!buf)
		return 0;
	AYA_SET_HEADER(f, AYA_DEBUG, 31, 6);
	AYA_SET_STR(f->lit0, AYA_ARG_STR, "pid ");
	AYA_SET(f->hint0, AYA_ARG_DISPLAY_HINT, AYA_HINT_DEFAULT);
	AYA_SET(f->pid, AYA_ARG_U32, pid);
	AYA_SET_STR(f->lit1, AYA_ARG_STR, " openat flags ");
	AYA_SET(f->hint1, AYA_ARG_DISPLAY_HINT, AYA_HINT_LOWER_HEX);
	AYA_SET(f->flags, AYA_ARG_U64, flags);
	bpf_perf_event_output(ctx, &AYA_LOGS, BPF_F_CURRENT_CPU, f, sizeof(*f));

	if (flags & O_CREAT) {
		AYA_SET_HEADER(c, AYA_WARN, 33, 4);
		AYA_SET_STR(c->lit0, AYA_ARG_STR, "pid ");
		AYA_SET(c->hint0, AYA_ARG_DISPLAY_HINT, AYA_HINT_DEFAULT);
		AYA_SET(c->pid, AYA_ARG_U32, pid);
		AYA_SET_STR(c->lit1, AYA_ARG_STR, " opens with O_CREAT");
		bpf_perf_event_output(ctx, &AYA_LOGS, BPF_F_CURRENT_CPU, c, sizeof(*c));
	}
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
