// SPDX-License-Identifier: GPL-2.0
/* latency: a log2 histogram of vfs_read latency in nanoseconds, from a kprobe
 * (remember the start time per thread) and a kretprobe (add log2(delta) to the
 * histogram). Userland prints it the way bcc's funclatency does.
 *
 *   bpfload run examples/latency.bpf.o --kprobe vfs_read --kretprobe vfs_read
 */
#include <linux/bpf.h>
#include <linux/ptrace.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#define MAX_SLOTS 64

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, __u32);	/* thread id */
	__type(value, __u64);	/* entry timestamp */
} start SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_SLOTS);
	__type(key, __u32);	/* log2 slot */
	__type(value, __u64);	/* count */
} hist SEC(".maps");

static __always_inline __u32 log2l(__u64 v)
{
	__u32 r = 0;

	/* Unrolled binary search: no loops for old verifiers. */
	if (v >> 32) { v >>= 32; r += 32; }
	if (v >> 16) { v >>= 16; r += 16; }
	if (v >> 8) { v >>= 8; r += 8; }
	if (v >> 4) { v >>= 4; r += 4; }
	if (v >> 2) { v >>= 2; r += 2; }
	if (v >> 1) { r += 1; }
	return r;
}

SEC("kprobe/vfs_read")
int vfs_read_entry(struct pt_regs *ctx)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	__u64 ts = bpf_ktime_get_ns();

	bpf_map_update_elem(&start, &tid, &ts, BPF_ANY);
	return 0;
}

SEC("kretprobe/vfs_read")
int vfs_read_return(struct pt_regs *ctx)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	__u64 *tsp, delta, *slot;
	__u32 idx;

	tsp = bpf_map_lookup_elem(&start, &tid);
	if (!tsp)
		return 0;
	delta = bpf_ktime_get_ns() - *tsp;
	bpf_map_delete_elem(&start, &tid);
	idx = delta ? log2l(delta) + 1 : 0;	/* slot i holds [2^(i-1), 2^i) */
	if (idx >= MAX_SLOTS)
		idx = MAX_SLOTS - 1;
	slot = bpf_map_lookup_elem(&hist, &idx);
	if (slot)
		__sync_fetch_and_add(slot, 1);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
