/* SPDX-License-Identifier: GPL-2.0 */
/* What an Aya-built BPF object looks like, in C: Aya's 7-field bpf_map_def in the
 * legacy "maps" section, and aya-log's record format (aya-log-common 0.1.x, the
 * perf-event-array flavour Aya used when the write-up was made):
 *
 *   maps:  AYA_LOG_BUF  PERCPU_ARRAY, key u32, value 8192 bytes, 1 entry (scratch buffer)
 *          AYA_LOGS     PERF_EVENT_ARRAY, key u32, value u32, max_entries 0 (= nr CPUs)
 *
 *   record = field*, field = tag:u8 len:u16(LE) value[len]
 *   header fields, in order (RecordField): Target=1 (str), Level=2 (u8: Error=1 Warn=2
 *   Info=3 Debug=4 Trace=5), Module=3 (str), File=4 (str), Line=5 (u32), NumArgs=6 (u64)
 *   then NumArgs argument fields (Argument): DisplayHint=0 (u8: Default=1 LowerHex=2
 *   UpperHex=3 Ipv4=4 Ipv6=5 LowerMac=6 UpperMac=7), I8=1 I16=2 I32=3 I64=4 Isize=5
 *   U8=6 U16=7 U32=8 U64=9 Usize=10 F32=11 F64=12 ArrU8Len6=13 ArrU8Len16=14
 *   ArrU16Len8=15 Bytes=16 Str=17. Literal text of the format string is sent as Str
 *   arguments; each {} placeholder as a DisplayHint followed by the value.
 */
#ifndef AYA_LOG_H
#define AYA_LOG_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

/* Aya's bpf_map_def (aya-ebpf/src/bindings): libbpf's five fields plus id and pinning. */
struct aya_bpf_map_def {
	__u32 type;
	__u32 key_size;
	__u32 value_size;
	__u32 max_entries;
	__u32 map_flags;
	__u32 id;
	__u32 pinning;
};

#define AYA_LOG_BUF_CAPACITY 8192

enum aya_record_field { AYA_TARGET = 1, AYA_LEVEL, AYA_MODULE, AYA_FILE, AYA_LINE, AYA_NUM_ARGS };
enum aya_argument { AYA_ARG_DISPLAY_HINT = 0, AYA_ARG_U64 = 9, AYA_ARG_STR = 17 };
enum aya_level { AYA_ERROR = 1, AYA_WARN, AYA_INFO, AYA_DEBUG, AYA_TRACE };
enum aya_display_hint { AYA_HINT_DEFAULT = 1, AYA_HINT_LOWER_HEX };

struct aya_log_buf {
	__u8 buf[AYA_LOG_BUF_CAPACITY];
};

struct aya_bpf_map_def SEC("maps") AYA_LOG_BUF = {
	.type = BPF_MAP_TYPE_PERCPU_ARRAY,
	.key_size = sizeof(__u32),
	.value_size = sizeof(struct aya_log_buf),
	.max_entries = 1,
};

struct aya_bpf_map_def SEC("maps") AYA_LOGS = {
	.type = BPF_MAP_TYPE_PERF_EVENT_ARRAY,
	.key_size = sizeof(__u32),
	.value_size = sizeof(__u32),
	.max_entries = 0,
};

/* Field layouts with explicit byte packing: the wire format has no padding. */
#define AYA_STR_FIELD(name, n) struct { __u8 tag; __u16 len; char v[n]; } __attribute__((packed)) name
#define AYA_U8_FIELD(name) struct { __u8 tag; __u16 len; __u8 v; } __attribute__((packed)) name
#define AYA_U32_FIELD(name) struct { __u8 tag; __u16 len; __u32 v; } __attribute__((packed)) name
#define AYA_U64_FIELD(name) struct { __u8 tag; __u16 len; __u64 v; } __attribute__((packed)) name

#define AYA_SET_STR(f, T, s) do { \
	_Static_assert(sizeof((f).v) == sizeof(s) - 1, "aya-log field size must match the literal"); \
	(f).tag = (T); (f).len = sizeof(s) - 1; __builtin_memcpy((f).v, s, sizeof(s) - 1); } while (0)
#define AYA_SET(f, T, val) do { (f).tag = (T); (f).len = sizeof((f).v); (f).v = (val); } while (0)

#endif
