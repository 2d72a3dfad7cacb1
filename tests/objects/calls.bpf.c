// SPDX-License-Identifier: GPL-2.0
/* bpf-to-bpf calls: .text functions shared by two programs, a nested call, a static
 * non-inlined function inside a program section, and a bpf_loop callback
 * (a function pointer: BPF_PSEUDO_FUNC). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

__u64 total = 0;

__noinline int leaf(int x)
{
	return x * 3 + 1;
}

__noinline int middle(int x)
{
	return leaf(x) + leaf(x + 1);
}

static int loop_body(__u32 index, void *data)
{
	*(__u64 *)data += index;
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_getpid")
int first(void *ctx)
{
	__u64 acc = 0;

	bpf_loop(4, loop_body, &acc, 0);
	total += acc + middle(2);
	return 0;
}

static __noinline int local_helper(int x)
{
	return x + 7;
}

SEC("tracepoint/syscalls/sys_enter_getppid")
int second(void *ctx)
{
	total += leaf(5) + local_helper(1);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_getppid")
int third(void *ctx)
{
	total += local_helper(2);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
