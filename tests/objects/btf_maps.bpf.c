// SPDX-License-Identifier: GPL-2.0
/* BTF-defined maps: key/value by type and by size, flags, pinning, numa_node,
 * map-in-map with an inner definition and initial values, a program array. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct flow_key {
	__u32 saddr;
	__u32 daddr;
	__u16 sport;
	__u16 dport;
	__u8 proto;
	__u8 __pad[3];
};

struct flow_stats {
	__u64 packets;
	__u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, struct flow_key);
	__type(value, struct flow_stats);
	__uint(map_flags, BPF_F_NO_COMMON_LRU);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 64);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, 24);
	__uint(numa_node, 0);
} sized SEC(".maps");

struct inner {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} inner_a SEC(".maps"), inner_b SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 3);
	__type(key, __u32);
	__array(values, struct inner);
} outer SEC(".maps") = {
	.values = { [0] = &inner_a, [2] = &inner_b },
};

int tail(void *ctx);

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 2);
	__uint(key_size, sizeof(__u32));
	__array(values, int (void *));
} jumps SEC(".maps") = {
	.values = { [1] = (void *)&tail },
};

struct {
	__uint(type, BPF_MAP_TYPE_QUEUE);
	__uint(max_entries, 16);
	__type(value, __u32);
} queue SEC(".maps");

SEC("tracepoint/syscalls/sys_enter_getpid")
int tail(void *ctx)
{
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_getpid")
int use_maps(void *ctx)
{
	struct flow_key k = {};
	struct flow_stats *s, zero = {};
	__u32 idx = 0, v = 1;
	void *in;

	s = bpf_map_lookup_elem(&flows, &k);
	if (!s) {
		bpf_map_update_elem(&flows, &k, &zero, BPF_ANY);
		return 0;
	}
	s->packets++;
	in = bpf_map_lookup_elem(&outer, &idx);
	if (in) {
		__u64 *x = bpf_map_lookup_elem(in, &idx);
		if (x)
			*x += 1;
	}
	bpf_map_push_elem(&queue, &v, 0);
	bpf_map_lookup_elem(&sized, &idx);
	bpf_tail_call(ctx, &jumps, 1);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
