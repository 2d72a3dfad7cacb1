// SPDX-License-Identifier: GPL-2.0
/* One legacy map per "maps/NAME" section, as older Aya and libbpf objects have them,
 * with Aya's bare "kprobe" and "kretprobe" program sections. */
#include <linux/bpf.h>
#include <linux/ptrace.h>
#include <bpf/bpf_helpers.h>

struct bpf_map_def_aya {
	__u32 type, key_size, value_size, max_entries, map_flags, id, pinning;
};

struct bpf_map_def_aya __attribute__((section("maps/COUNTS"), used)) COUNTS = {
	.type = BPF_MAP_TYPE_HASH, .key_size = 4, .value_size = 8, .max_entries = 128,
};

struct bpf_map_def_aya __attribute__((section("maps/EVENTS"), used)) EVENTS = {
	.type = BPF_MAP_TYPE_PERF_EVENT_ARRAY, .key_size = 4, .value_size = 4,
};

SEC("kprobe")
int enter(struct pt_regs *ctx)
{
	__u32 k = 1;
	__u64 one = 1;

	bpf_map_update_elem(&COUNTS, &k, &one, BPF_ANY);
	return 0;
}

SEC("kretprobe")
int leave(struct pt_regs *ctx)
{
	__u32 k = 1;

	bpf_perf_event_output(ctx, &EVENTS, BPF_F_CURRENT_CPU, &k, sizeof(k));
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
