"""clang -O2 output verifies on kernel_sim exactly when it verifies on Linux.

Small C programs of the kinds the project's examples are made of (kprobes reading pt_regs,
bpf_probe_read_user_str into stack buffers, perf_event_output of stack structs, map lookups with
NULL checks, ring buffer reserve/submit, loops over arrays, bpf-to-bpf calls, global data,
packet parsing, bpf_loop, tail calls, stack ids, bpf_snprintf, per-CPU scratch buffers, unrolled
loops, string scans) are compiled for BPF ISA v1 and v3 (ALU32/JMP32) and loaded from the
object through raw bpf() on both kernels. Programs Linux refuses must be refused with the same
errno and error line.
"""

from __future__ import annotations

import ctypes
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from loader.obj import load_object
from tests.conftest import boot, linux_bpf_denied
from tests.test_obj_linux_load import MiniLoader

CLANG = shutil.which("clang")
pytestmark = pytest.mark.skipif(CLANG is None, reason="clang is not installed")

HEADER = r"""
#include <linux/bpf.h>
#include <linux/ptrace.h>
#include <bpf/bpf_helpers.h>
char LICENSE[] SEC("license") = "GPL";
struct event { unsigned int pid; unsigned long long ts; char comm[16]; char path[128]; };
struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 1024); __type(key, unsigned int);
         __type(value, unsigned long long); } counts SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 64); __type(key, unsigned int);
         __type(value, unsigned long long); } hist SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY); __uint(key_size, 4); __uint(value_size, 4); } events SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_RINGBUF); __uint(max_entries, 1 << 16); } rb SEC(".maps");
volatile unsigned long long total = 0;
const volatile unsigned int target_pid = 0;
unsigned long long buckets[16];
"""

GOOD = r"""
SEC("kprobe/do_sys_openat2")
int kprobe_open(struct pt_regs *ctx)
{
    struct event e = {};
    const char *name = (const char *)ctx->rsi;
    e.pid = bpf_get_current_pid_tgid() >> 32;
    if (target_pid && e.pid != target_pid)
        return 0;
    e.ts = bpf_ktime_get_ns();
    bpf_get_current_comm(e.comm, sizeof(e.comm));
    bpf_probe_read_user_str(e.path, sizeof(e.path), name);
    bpf_perf_event_output(ctx, &events, BPF_F_CURRENT_CPU, &e, sizeof(e));
    return 0;
}

SEC("kprobe/count")
int kprobe_count(struct pt_regs *ctx)
{
    unsigned int pid = bpf_get_current_pid_tgid() >> 32;
    unsigned long long one = 1, *v = bpf_map_lookup_elem(&counts, &pid);
    if (v)
        __sync_fetch_and_add(v, 1);
    else
        bpf_map_update_elem(&counts, &pid, &one, BPF_NOEXIST);
    __sync_fetch_and_add(&total, 1);
    return 0;
}

SEC("kprobe/ringbuf")
int kprobe_ringbuf(struct pt_regs *ctx)
{
    struct event *e = bpf_ringbuf_reserve(&rb, sizeof(*e), 0);
    if (!e)
        return 0;
    e->pid = bpf_get_current_pid_tgid() >> 32;
    e->ts = ctx->rdi;
    bpf_get_current_comm(e->comm, sizeof(e->comm));
    bpf_probe_read_kernel_str(e->path, sizeof(e->path), (void *)ctx->rsi);
    bpf_ringbuf_submit(e, 0);
    return 0;
}

static __always_inline unsigned int log2l(unsigned long long v)
{
    unsigned int r = 0;
    for (int i = 0; i < 63 && v > 1; i++) { v >>= 1; r++; }
    return r;
}

SEC("kprobe/hist")
int kprobe_hist(struct pt_regs *ctx)
{
    unsigned int slot = log2l(ctx->rdx);
    if (slot >= 64)
        slot = 63;
    unsigned long long *v = bpf_map_lookup_elem(&hist, &slot);
    if (v)
        (*v)++;
    if (slot < 16)
        buckets[slot]++;
    return 0;
}

static __noinline int sum_array(unsigned long long *a, int n)
{
    unsigned long long s = 0;
    for (int i = 0; i < n && i < 16; i++)
        s += a[i];
    return s & 0xff;
}

static __noinline int pick(int x)
{
    if (x > 10)
        return x - 10;
    return x + 1;
}

SEC("kprobe/calls")
int kprobe_calls(struct pt_regs *ctx)
{
    unsigned long long arr[16];
    for (int i = 0; i < 16; i++)
        arr[i] = i * (ctx->rdi & 3);
    return sum_array(arr, 16) + pick(ctx->rsi & 0xff);
}

SEC("tracepoint/syscalls/sys_enter_openat")
int tp_open(void *ctx)
{
    struct event e = {};
    long fname = *(long *)(ctx + 24);
    e.pid = bpf_get_current_pid_tgid() >> 32;
    bpf_probe_read_user_str(e.path, sizeof(e.path), (void *)fname);
    bpf_perf_event_output(ctx, &events, BPF_F_CURRENT_CPU, &e, sizeof(e));
    return 0;
}

SEC("socket")
int sock_prog(struct __sk_buff *skb)
{
    unsigned int key = skb->len & 63;
    unsigned long long *v = bpf_map_lookup_elem(&hist, &key);
    if (v)
        __sync_fetch_and_add(v, skb->len);
    return skb->len > 100 ? 0 : -1;
}

struct ethhdr_ { unsigned char d[6], s[6]; unsigned short proto; };

SEC("xdp")
int xdp_prog(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
    struct ethhdr_ *eth = data;
    if ((void *)(eth + 1) > end)
        return XDP_PASS;
    unsigned int key = eth->proto & 63;
    unsigned long long *v = bpf_map_lookup_elem(&hist, &key);
    if (v)
        *v += 1;
    unsigned char *p = data;
    unsigned int sum = 0;
    for (int i = 0; i < 32; i++) {
        if ((void *)(p + i + 1) > end)
            break;
        sum += p[i];
    }
    return sum & 1 ? XDP_DROP : XDP_PASS;
}

static long loop_cb(unsigned int i, void *ctx)
{
    unsigned long long *acc = ctx;
    *acc += i;
    return *acc > 1000;
}

SEC("raw_tracepoint/sys_enter")
int rawtp_loop(struct bpf_raw_tracepoint_args *ctx)
{
    unsigned long long acc = ctx->args[1];
    bpf_loop(100, loop_cb, &acc, 0);
    total += acc;
    return 0;
}

SEC("kprobe/strcmp")
int kprobe_str(struct pt_regs *ctx)
{
    char buf[32];
    const char want[] = "bash";
    long n = bpf_probe_read_user_str(buf, sizeof(buf), (void *)ctx->rdi);
    if (n <= 0)
        return 0;
    for (int i = 0; i < sizeof(want); i++) {
        if (buf[i] != want[i])
            return 0;
    }
    bpf_printk("matched %s %ld", buf, n);
    return 1;
}
struct ev { unsigned int pid; char comm[16]; unsigned long long stack; };
struct { __uint(type, BPF_MAP_TYPE_STACK_TRACE); __uint(max_entries, 128); __uint(key_size, 4); __uint(value_size, 127 * 8); } stacks SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_PROG_ARRAY); __uint(max_entries, 4); __uint(key_size, 4); __uint(value_size, 4); } jmp SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY); __uint(max_entries, 1); __type(key, unsigned int); __type(value, struct ev); } heap SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 64); __type(key, unsigned long long); __type(value, unsigned long long); } starts SEC(".maps");
const char fmt_str[] = "pid %d comm %s";

SEC("kprobe/a")
int rb_output(struct pt_regs *ctx)
{
    unsigned int zero = 0;
    struct ev *e = bpf_map_lookup_elem(&heap, &zero);
    if (!e)
        return 0;
    e->pid = bpf_get_current_pid_tgid();
    bpf_get_current_comm(e->comm, sizeof(e->comm));
    e->stack = bpf_get_stackid(ctx, &stacks, 0);
    bpf_ringbuf_output(&rb, e, sizeof(*e), 0);
    return 0;
}

SEC("kprobe/b")
int tail(struct pt_regs *ctx)
{
    bpf_tail_call(ctx, &jmp, ctx->rdi & 3);
    return 0;
}

SEC("kprobe/c")
int snp(struct pt_regs *ctx)
{
    char out[64];
    unsigned long long args[2] = { ctx->rdi, (unsigned long long)ctx->rsi };
    long n = bpf_snprintf(out, sizeof(out), fmt_str, args, sizeof(args));
    if (n < 0)
        return 0;
    bpf_trace_printk(out, sizeof(out));
    return n;
}

SEC("kprobe/d")
int latency(struct pt_regs *ctx)
{
    unsigned long long id = bpf_get_current_pid_tgid(), *tsp, delta;
    tsp = bpf_map_lookup_elem(&starts, &id);
    if (!tsp)
        return 0;
    delta = bpf_ktime_get_ns() - *tsp;
    bpf_map_delete_elem(&starts, &id);
    unsigned int slot = 0;
    #pragma unroll
    for (int i = 0; i < 32; i++)
        if (delta >> i) slot = i;
    return slot;
}

SEC("kprobe/e")
int strscan(struct pt_regs *ctx)
{
    char buf[64];
    int n = bpf_probe_read_user_str(buf, sizeof(buf), (void *)ctx->rdi);
    int count = 0;
    for (int i = 0; i < sizeof(buf) && i < n; i++) {
        if (buf[i] == '/')
            count++;
    }
    return count;
}

SEC("kprobe/f")
int task_read(struct pt_regs *ctx)
{
    unsigned long task = bpf_get_current_task();
    unsigned int pid = 0;
    bpf_probe_read_kernel(&pid, sizeof(pid), (void *)(task + 1234));
    return pid;
}
"""

# (program source, the error line both kernels print)
BAD = {
    "unchecked_lookup": (r"""
SEC("kprobe/x")
int unchecked_lookup(struct pt_regs *ctx)
{
    unsigned int key = 1;
    unsigned long long *v = bpf_map_lookup_elem(&hist, &key);
    return *v;
}""", "R0 invalid mem access 'map_value_or_null'"),
    "unbounded_index": (r"""
SEC("kprobe/x")
int unbounded_index(struct pt_regs *ctx)
{
    unsigned int key = 1;
    unsigned long long *v = bpf_map_lookup_elem(&hist, &key);
    if (!v)
        return 0;
    return v[ctx->rdi];
}""", "math between map_value pointer and register with unbounded min value is not allowed"),
    "ringbuf_leak": (r"""
SEC("kprobe/x")
int ringbuf_leak(struct pt_regs *ctx)
{
    struct event *e = bpf_ringbuf_reserve(&rb, sizeof(*e), 0);
    if (!e)
        return 0;
    e->pid = 1;
    return 0;
}""", "BPF_EXIT instruction in main prog would lead to reference leak"),
    "loop_bad": (r"""
static long cb_bad(unsigned int i, void *ctx) { return 5; }
SEC("raw_tracepoint/x")
int loop_bad(void *ctx) { bpf_loop(10, cb_bad, 0, 0); return 0; }
""", "At callback return the register R0 has smin=5 smax=5 should have been in [0, 1]"),
    "loop_index": (r"""
static long cb_idx(unsigned int i, void *ctx) { unsigned long long *p = ctx; return p[i]; }
SEC("raw_tracepoint/y")
int loop_index(void *ctx) { unsigned long long v = 0; bpf_loop(10, cb_idx, &v, 0); return 0; }
""", "invalid unbounded variable-offset read from stack R2"),
    "ctx_write": (r"""
SEC("kprobe/x")
int ctx_write(struct pt_regs *ctx)
{
    ctx->rax = 0;
    return 0;
}""", "invalid bpf_context access off=80 size=8"),
}


def compile_c(tmp_path: Path, name: str, body: str, cpu: str) -> Path:
    src = tmp_path / f"{name}.c"
    src.write_text(HEADER + body)
    out = tmp_path / f"{name}_{cpu}.o"
    subprocess.run([CLANG, "-O2", "-g", "-target", "bpf", f"-mcpu={cpu}", "-I/usr/include/x86_64-linux-gnu",
                    "-c", str(src), "-o", str(out)], check=True, capture_output=True)
    return out


def load_all(kind: str, path: Path) -> dict[str, str]:
    """program name -> "ok" or the PROG_LOAD failure text."""
    sys = boot(kind)
    obj = load_object(path)
    loader = MiniLoader(sys, obj)
    out = {}
    try:
        loader.load_btf()
        loader.create_maps()
        for name in obj.programs:
            try:
                loader.load_program(name)
                out[name] = "ok"
            except AssertionError as e:
                out[name] = str(e)
    finally:
        loader.close()
        sys.close_all()
    return out


def kinds() -> list[str]:
    return ["sim"] if linux_bpf_denied() else ["linux", "sim"]


@pytest.mark.parametrize("cpu", ["v1", "v3"])
def test_clang_programs_verify(tmp_path, cpu):
    obj = compile_c(tmp_path, "good", GOOD, cpu)
    for kind in kinds():
        results = load_all(kind, obj)
        assert len(results) == 16
        bad = {name: text for name, text in results.items() if text != "ok"}
        assert not bad, f"{kind}: {bad}"


def _errno_and_line(text: str) -> tuple[str, str]:
    m = re.match(r"PROG_LOAD \w+: \[Errno (\d+)\]", text)
    lines = [x for x in text.split("\n") if x]
    stats = max(i for i, x in enumerate(lines) if x.startswith("processed "))
    return (m.group(1) if m else text[:80]), lines[stats - 1]


@pytest.mark.parametrize("name", sorted(BAD))
def test_clang_programs_rejected_alike(tmp_path, name):
    body, line = BAD[name]
    obj = compile_c(tmp_path, name, body, "v3")
    seen = {}
    for kind in kinds():
        text = load_all(kind, obj)[name]
        assert text != "ok", f"{kind} accepted {name}"
        seen[kind] = _errno_and_line(text)
        assert seen[kind][1] == line, f"{kind}: {text}"
    assert len(set(seen.values())) == 1, seen


def test_global_data_rodata_constant(tmp_path):
    """A frozen .rodata value is a known constant to the verifier (Linux reads it at load time)."""
    body = r"""
const volatile unsigned int limit = 8;
SEC("kprobe/x")
int rodata_bound(struct pt_regs *ctx)
{
    unsigned long long arr[8] = {};
    unsigned long long s = 0;
    for (unsigned int i = 0; i < limit; i++)
        s += arr[i];
    return s;
}"""
    obj = compile_c(tmp_path, "rodata", body, "v3")
    for kind in kinds():
        assert load_all(kind, obj)["rodata_bound"] == "ok", kind


def test_log_buffer_gets_the_trace(tmp_path):
    """The failing path's trace reaches the user's log buffer through PROG_LOAD, as on Linux."""
    obj = compile_c(tmp_path, "ctx_write", BAD["ctx_write"][0], "v1")
    text = load_all("sim", obj)["ctx_write"]
    assert "0: R1=ctx() R10=fp0\n" in text
    assert re.search(r"\d+: \(7b\) \*\(u64 \*\)\(r1 \+80\) = r\d", text)
    assert ctypes.sizeof(ctypes.c_uint64) == 8


def _comparable(text: str) -> str:
    """A failing load's log without what kernel_sim does not print: BTF source lines ("; ...") and
    BTF argument notes ("arg#..."); map addresses and Linux's per-bucket state count differ by nature."""
    body = text.split("\n", 1)[1]
    body = "\n".join(x for x in body.split("\n") if not x.startswith(";") and not x.startswith("arg#"))
    body = re.sub(r"= 0x[0-9a-f]{12,}", "= ADDR", body)
    return re.sub(r"max_states_per_insn \d+", "max_states_per_insn N", body)


@pytest.mark.parametrize("name", sorted(BAD))
def test_clang_failure_logs_match_linux(tmp_path, name):
    """The whole level-1 log of a refused clang program: trace, states, error and statistics as Linux's."""
    reason = linux_bpf_denied()
    if reason:
        pytest.skip(reason)
    obj = compile_c(tmp_path, name, BAD[name][0], "v3")
    linux, sim = (_comparable(load_all(kind, obj)[name]) for kind in ("linux", "sim"))
    assert sim == linux
