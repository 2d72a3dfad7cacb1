// SPDX-License-Identifier: GPL-2.0
/* globals: global data in .data, .rodata and .bss, set from userland before
 * load (Aya's EbpfLoader::set_global / libbpf's skeleton rodata), and a real
 * bpf-to-bpf call (__noinline) that the loader links into the program.
 *
 *   bpfload run examples/globals.bpf.o --tracepoint raw_syscalls/sys_enter
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

/* .rodata: frozen after load; set target_tgid before loading to filter. */
const volatile __u32 target_tgid = 0;
const volatile __u64 sample_every = 1;

/* .data: initialised, writable from the program and from userland. */
__u64 calls_seen = 0;
__u32 version = 3;

/* .bss: zero-initialised. */
__u64 calls_sampled;
__u32 last_tgid;

struct sys_enter_ctx {
	__u16 common_type;
	__u8 common_flags;
	__u8 common_preempt_count;
	__s32 common_pid;
	__s64 id;
	__u64 args[6];
};

/* A real BPF-to-BPF call: not inlined, lives in .text, appended by the loader. */
__noinline int should_sample(__u64 seen)
{
	__u64 every = sample_every;

	if (every == 0)
		return 0;
	return seen % every == 0;
}

SEC("tracepoint/raw_syscalls/sys_enter")
int count_syscalls(struct sys_enter_ctx *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;

	if (target_tgid && tgid != target_tgid)
		return 0;
	calls_seen++;
	if (should_sample(calls_seen)) {
		calls_sampled++;
		last_tgid = tgid;
	}
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
