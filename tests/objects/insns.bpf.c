// SPDX-License-Identifier: GPL-2.0
/* A spread of instruction forms for the disassembler tests (built with -mcpu=v3:
 * 32-bit subregisters and jmp32), all reachable by the verifier. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

__u64 u64s[4] = {1, 2, 3, 4};
__u32 u32s[4] = {5, 6, 7, 8};
__s64 s64v = -5;

SEC("socket")
int insns(struct __sk_buff *skb)
{
	__u32 a = u32s[0], b = u32s[1];
	__u64 x = u64s[0], y = u64s[1];
	__s64 s = s64v;
	__u32 r = 0;

	a = a * 7 + b;
	a ^= b | 0x55;
	a = a << 3 | a >> 29;
	if (b != 0)
		a = a % b + a / b;
	x = (x * y) ^ (y >> 7);
	if (y != 0)
		x += x / y - x % y;
	s = -s;
	s >>= 2;
	x += (__u64)s;
	r = bpf_htons((__u16)a) + bpf_htonl(a) + (__u32)bpf_cpu_to_be64(x);
	__sync_fetch_and_add(&u64s[2], 1);
	__sync_fetch_and_or(&u64s[3], 2);
	r += __sync_fetch_and_and(&u32s[2], 3);
	r += __sync_fetch_and_xor(&u32s[3], 4);
	r += __sync_lock_test_and_set(&u32s[1], r);
	r += __sync_val_compare_and_swap(&u64s[1], 2, x);
	if ((__s32)a < 10)
		r += 1;
	if (a >= 100 && b <= 3)
		r += 2;
	if ((__s64)x > -7)
		r += 3;
	if (x & 0x10)
		r += 4;
	return r & 1;
}

char LICENSE[] SEC("license") = "GPL";
