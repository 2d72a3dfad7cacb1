// SPDX-License-Identifier: GPL-2.0
/* CO-RE against the running kernel's BTF (/sys/kernel/btf/vmlinux of Linux or kernel_sim):
 * local views of task_struct and pt_regs whose layouts are NOT the kernel's, read with
 * BPF_CORE_READ from a raw tracepoint on sys_enter. Only the loader's relocations can make
 * these reads hit the right bytes. x86_64 pt_regs member names (di, orig_ax). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

struct task_struct {
	char comm[16];
	struct task_struct *real_parent;
	int tgid;
	int pid;
} __attribute__((preserve_access_index));

struct pt_regs {
	unsigned long orig_ax;
	unsigned long di;
} __attribute__((preserve_access_index));

struct seen {
	int tgid;
	int pid;
	int parent_tgid;
	int hits;
	long id;
	unsigned long di;
	unsigned long orig_ax;
	char comm[16];
};

const volatile int target_tgid = 0;
const volatile long target_nr = 0;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct seen);
} seen SEC(".maps");

SEC("raw_tp/sys_enter")
int core_task(struct bpf_raw_tracepoint_args *ctx)
{
	struct task_struct *t = (void *)bpf_get_current_task();
	struct pt_regs *regs = (void *)ctx->args[0];
	__u32 zero = 0;
	struct seen *s;

	if ((bpf_get_current_pid_tgid() >> 32) != target_tgid || ctx->args[1] != target_nr)
		return 0;
	s = bpf_map_lookup_elem(&seen, &zero);
	if (!s)
		return 0;
	s->tgid = BPF_CORE_READ(t, tgid);
	s->pid = BPF_CORE_READ(t, pid);
	s->parent_tgid = BPF_CORE_READ(t, real_parent, tgid);
	s->id = ctx->args[1];
	s->di = BPF_CORE_READ(regs, di);
	s->orig_ax = BPF_CORE_READ(regs, orig_ax);
	BPF_CORE_READ_STR_INTO(&s->comm, t, comm);
	s->hits++;
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
