// SPDX-License-Identifier: GPL-2.0
/* Legacy SEC("maps") definitions: libbpf's 5-field bpf_map_def and Aya's 7-field one
 * (with id and pinning) in the same section, sized by the symbol table. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct bpf_map_def_libbpf {
	__u32 type, key_size, value_size, max_entries, map_flags;
};

struct bpf_map_def_aya {
	__u32 type, key_size, value_size, max_entries, map_flags, id, pinning;
};

struct bpf_map_def_libbpf SEC("maps") packets = {
	.type = BPF_MAP_TYPE_ARRAY, .key_size = 4, .value_size = 8, .max_entries = 4,
};

struct bpf_map_def_libbpf SEC("maps") by_proto = {
	.type = BPF_MAP_TYPE_HASH, .key_size = 4, .value_size = 8, .max_entries = 256,
	.map_flags = BPF_F_NO_PREALLOC,
};

struct bpf_map_def_aya SEC("maps") pinned_stats = {
	.type = BPF_MAP_TYPE_PERCPU_ARRAY, .key_size = 4, .value_size = 16, .max_entries = 2,
	.id = 7, .pinning = 1,
};

SEC("socket")
int count_packets(struct __sk_buff *skb)
{
	__u32 key = skb->protocol & 3;
	__u64 *v = bpf_map_lookup_elem(&packets, &key), one = 1;

	if (v)
		__sync_fetch_and_add(v, 1);
	else
		bpf_map_update_elem(&by_proto, &key, &one, BPF_ANY);
	return 0;
}

SEC("xdp")
int xdp_stats(struct xdp_md *ctx)
{
	__u32 key = 1;
	__u64 *v = bpf_map_lookup_elem(&pinned_stats, &key);

	if (v)
		*v += ctx->data_end - ctx->data;
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
__u32 _version SEC("version") = 0x050400;
