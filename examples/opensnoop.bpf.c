// SPDX-License-Identifier: GPL-2.0
/* opensnoop: report every open from a kprobe on do_sys_openat2.
 *
 * do_sys_openat2(int dfd, const char __user *filename, struct open_how *how)
 * Each call sends one struct event through the perf event array `events`
 * (one BPF output perf buffer per CPU on the user side).
 *
 *   bpfload run examples/opensnoop.bpf.o --kprobe do_sys_openat2
 */
#include <linux/bpf.h>
#include <linux/ptrace.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "pt_regs_compat.h"

#define TASK_COMM_LEN 16
#define NAME_MAX 256

/* Explicit padding: the user side decodes this with struct "<IIiI16s256s". */
struct event {
	__u32 pid;		/* tgid, what userland calls pid */
	__u32 uid;
	__s32 dfd;
	__u32 __pad;
	char comm[TASK_COMM_LEN];
	char filename[NAME_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} events SEC(".maps");

SEC("kprobe/do_sys_openat2")
int opensnoop(struct pt_regs *ctx)
{
	struct event e = {};

	e.pid = bpf_get_current_pid_tgid() >> 32;
	e.uid = (__u32)bpf_get_current_uid_gid();
	e.dfd = (__s32)PT_REGS_PARM1(ctx);
	bpf_get_current_comm(&e.comm, sizeof(e.comm));
	bpf_probe_read_user_str(&e.filename, sizeof(e.filename), (const void *)PT_REGS_PARM2(ctx));
	bpf_perf_event_output(ctx, &events, BPF_F_CURRENT_CPU, &e, sizeof(e));
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
