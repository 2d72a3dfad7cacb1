// SPDX-License-Identifier: GPL-2.0
/* Aya-style bare section names ("kprobe", "kretprobe", "uprobe", ...): the program
 * name comes from the function symbol, the target from the attach call; several
 * programs share a section. */
#include <linux/bpf.h>
#include <linux/ptrace.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, __u64);
} hits SEC(".maps");

static __always_inline int bump(__u32 k)
{
	__u64 *v = bpf_map_lookup_elem(&hits, &k);

	if (v)
		__sync_fetch_and_add(v, 1);
	return 0;
}

SEC("kprobe") int probe_open(struct pt_regs *ctx) { return bump(0); }
SEC("kprobe") int probe_close(struct pt_regs *ctx) { return bump(1); }
SEC("kretprobe") int ret_open(struct pt_regs *ctx) { return bump(2); }
SEC("uprobe") int malloc_enter(struct pt_regs *ctx) { return bump(3); }
SEC("uretprobe") int malloc_exit(struct pt_regs *ctx) { return bump(4); }
SEC("tracepoint") int any_tp(void *ctx) { return bump(5); }
SEC("raw_tp") int any_raw_tp(void *ctx) { return bump(6); }
SEC("perf_event") int on_sample(void *ctx) { return bump(7); }

char LICENSE[] SEC("license") = "GPL";
