// SPDX-License-Identifier: GPL-2.0
/* Built with -target bpfeb: a valid big-endian BPF object the loader must refuse. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("socket")
int be_prog(struct __sk_buff *skb)
{
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
