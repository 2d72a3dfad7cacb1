// SPDX-License-Identifier: GPL-2.0
/* libbpf-style section names with targets. */
#include <linux/bpf.h>
#include <linux/ptrace.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

SEC("kprobe/do_unlinkat") int k_unlink(struct pt_regs *ctx) { return 0; }
SEC("kretprobe/do_unlinkat") int kr_unlink(struct pt_regs *ctx) { return 0; }
SEC("uprobe//usr/lib/x86_64-linux-gnu/libc.so.6:malloc") int u_malloc(struct pt_regs *ctx) { return 0; }
SEC("uretprobe//usr/lib/x86_64-linux-gnu/libc.so.6:malloc") int ur_malloc(struct pt_regs *ctx) { return 0; }
SEC("tp/sched/sched_switch") int tp_switch(void *ctx) { return 0; }
SEC("raw_tracepoint/sched_switch") int raw_switch(void *ctx) { return 0; }
SEC("raw_tp/sys_enter") int raw_enter(void *ctx) { return 0; }
SEC("classifier") int cls(struct __sk_buff *skb) { return TC_ACT_OK; }
SEC("tc") int tc_prog(struct __sk_buff *skb) { return TC_ACT_OK; }
SEC("socket") int sock(struct __sk_buff *skb) { return 0; }

char LICENSE[] SEC("license") = "GPL";
