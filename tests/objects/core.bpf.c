// SPDX-License-Identifier: GPL-2.0
/* CO-RE relocations without vmlinux.h: a local view of task_struct marked
 * preserve_access_index, read with BPF_CORE_READ. Parsed, not loaded. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

struct task_struct {
	int pid;
	int tgid;
	struct task_struct *real_parent;
} __attribute__((preserve_access_index));

SEC("tracepoint/sched/sched_process_fork")
int parent_pid(void *ctx)
{
	struct task_struct *t = (void *)bpf_get_current_task();
	int ppid = BPF_CORE_READ(t, real_parent, tgid);
	int pid = BPF_CORE_READ(t, pid);

	return ppid + pid;
}

char LICENSE[] SEC("license") = "GPL";
