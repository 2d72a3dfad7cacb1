// SPDX-License-Identifier: GPL-2.0
/* syscount: count system calls per process (tgid) in a hash map, from the
 * raw_syscalls/sys_enter tracepoint. Userland prints the table.
 *
 *   bpfload run examples/syscount.bpf.o --tracepoint raw_syscalls/sys_enter
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define TASK_COMM_LEN 16

/* /sys/kernel/tracing/events/raw_syscalls/sys_enter/format */
struct sys_enter_ctx {
	__u16 common_type;
	__u8 common_flags;
	__u8 common_preempt_count;
	__s32 common_pid;
	__s64 id;
	__u64 args[6];
};

struct counter {
	__u64 count;
	__s64 last_nr;
	char comm[TASK_COMM_LEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, __u32);		/* tgid */
	__type(value, struct counter);
} counts SEC(".maps");

SEC("tracepoint/raw_syscalls/sys_enter")
int syscount(struct sys_enter_ctx *ctx)
{
	__u32 pid = bpf_get_current_pid_tgid() >> 32;
	struct counter *c, zero = {};

	c = bpf_map_lookup_elem(&counts, &pid);
	if (!c) {
		bpf_get_current_comm(&zero.comm, sizeof(zero.comm));
		bpf_map_update_elem(&counts, &pid, &zero, BPF_NOEXIST);
		c = bpf_map_lookup_elem(&counts, &pid);
		if (!c)
			return 0;
	}
	__sync_fetch_and_add(&c->count, 1);
	c->last_nr = ctx->id;
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
