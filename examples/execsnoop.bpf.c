// SPDX-License-Identifier: GPL-2.0
/* execsnoop: report every exec from the sched/sched_process_exec tracepoint
 * through a BPF ring buffer (BPF_MAP_TYPE_RINGBUF, one buffer shared by all CPUs).
 *
 *   bpfload run examples/execsnoop.bpf.o --tracepoint sched/sched_process_exec
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define TASK_COMM_LEN 16
#define FILENAME_LEN 128

/* /sys/kernel/tracing/events/sched/sched_process_exec/format */
struct sched_process_exec_ctx {
	__u16 common_type;
	__u8 common_flags;
	__u8 common_preempt_count;
	__s32 common_pid;
	__u32 filename_loc;	/* __data_loc char[]: offset in the low 16 bits, length in the high 16 */
	__s32 pid;
	__s32 old_pid;
};

struct event {
	__u32 pid;
	__u32 old_pid;
	__u32 uid;
	__u32 __pad;
	__u64 ts_ns;
	char comm[TASK_COMM_LEN];
	char filename[FILENAME_LEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} rb SEC(".maps");

SEC("tracepoint/sched/sched_process_exec")
int execsnoop(struct sched_process_exec_ctx *ctx)
{
	struct event *e;
	__u32 off = ctx->filename_loc & 0xffff;

	e = bpf_ringbuf_reserve(&rb, sizeof(*e), 0);
	if (!e)
		return 0;
	e->pid = ctx->pid;
	e->old_pid = ctx->old_pid;
	e->uid = (__u32)bpf_get_current_uid_gid();
	e->__pad = 0;
	e->ts_ns = bpf_ktime_get_ns();
	bpf_get_current_comm(&e->comm, sizeof(e->comm));
	bpf_probe_read_kernel_str(&e->filename, sizeof(e->filename), (void *)ctx + off);
	bpf_ringbuf_submit(e, 0);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
