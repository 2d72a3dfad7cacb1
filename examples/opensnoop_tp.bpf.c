// SPDX-License-Identifier: GPL-2.0
/* opensnoop_tp: the tracepoint flavour of opensnoop, runs on the real kernel too.
 *
 * Attaches to syscalls/sys_enter_openat; the context layout below is the one
 * /sys/kernel/tracing/events/syscalls/sys_enter_openat/format prints.
 *
 *   bpfload run examples/opensnoop_tp.bpf.o --kernel linux --tracepoint syscalls/sys_enter_openat
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define TASK_COMM_LEN 16
#define NAME_MAX 256

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

/* Same layout as opensnoop's event, the dfd slot carries the open flags. */
struct event {
	__u32 pid;
	__u32 uid;
	__s32 flags;
	__u32 __pad;
	char comm[TASK_COMM_LEN];
	char filename[NAME_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} events SEC(".maps");

SEC("tracepoint/syscalls/sys_enter_openat")
int opensnoop_tp(struct sys_enter_openat_ctx *ctx)
{
	struct event e = {};

	e.pid = bpf_get_current_pid_tgid() >> 32;
	e.uid = (__u32)bpf_get_current_uid_gid();
	e.flags = (__s32)ctx->flags;
	bpf_get_current_comm(&e.comm, sizeof(e.comm));
	bpf_probe_read_user_str(&e.filename, sizeof(e.filename), ctx->filename);
	bpf_perf_event_output(ctx, &events, BPF_F_CURRENT_CPU, &e, sizeof(e));
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
