"""End to end, as Aya does it, with nothing but the Syscalls seam and raw bytes.

A hand-assembled KPROBE program reads the filename argument of do_sys_openat2 (PT_REGS_PARM2)
with bpf_probe_read_user_str into a struct with the pid and sends it with
bpf_perf_event_output(BPF_F_CURRENT_CPU). User side: read the kprobe PMU type from sysfs,
perf_event_open the kprobe, SET_BPF + ENABLE, open and mmap one BPF output event per CPU and
put their fds in a perf_event_array, make openat syscalls, then parse the mmapped pages. With a
buffer too small for the burst, the records that did not fit come back as PERF_RECORD_LOST.
"""

from __future__ import annotations

import ctypes
import mmap
import struct

import pytest

from kernel_sim.uapi.bpf import BpfCmd, MapCreateAttr, MapElemAttr, MapType, ProgLoadAttr, ProgType, make_attr
from kernel_sim.uapi.bpf_enums import HelperId
from kernel_sim.uapi.epoll import O_RDONLY
from kernel_sim.uapi.insn import (
    BPF_ADD,
    BPF_ALU,
    BPF_ALU64,
    BPF_CALL,
    BPF_DW,
    BPF_EXIT,
    BPF_JMP,
    BPF_K,
    BPF_LDX,
    BPF_MEM,
    BPF_MOV,
    BPF_PSEUDO_MAP_FD,
    BPF_REG_0,
    BPF_REG_1,
    BPF_REG_2,
    BPF_REG_3,
    BPF_REG_4,
    BPF_REG_5,
    BPF_REG_6,
    BPF_REG_10,
    BPF_RSH,
    BPF_ST,
    BPF_STX,
    BPF_W,
    BPF_X,
    encode,
    insn,
    ld_imm64,
)
from kernel_sim.uapi.perf import (
    ATTR_FLAG_DISABLED,
    DATA_HEAD_OFFSET,
    DATA_SIZE_OFFSET,
    DATA_TAIL_OFFSET,
    PERF_EVENT_HEADER,
    PERF_EVENT_IOC_ENABLE,
    PERF_EVENT_IOC_SET_BPF,
    PERF_SAMPLE_RAW,
    PerfEventAttr,
    PerfRecordType,
    PerfSwId,
    PerfType,
)
from kernel_sim.uapi.ptrace import PARM_REGS, PT_REGS, RC_REG
from loader.backends import open_kernel
from loader.kernel_info import read_file

ARCHES = ["x86_64", "riscv64", "loongarch64"]
PAGE = mmap.PAGESIZE
NAME_LEN = 64
EVENT = struct.Struct(f"<II{NAME_LEN}s")  # pid, pad, filename
RET_EVENT = struct.Struct("<IIq")  # pid, pad, return value
BPF_F_CURRENT_CPU = 0xFFFFFFFF


def _mov64_imm(dst, imm):
    return insn(BPF_ALU64 | BPF_MOV | BPF_K, dst, imm=imm)


def _mov64_reg(dst, src):
    return insn(BPF_ALU64 | BPF_MOV | BPF_X, dst, src)


def _add_imm(dst, imm):
    return insn(BPF_ALU64 | BPF_ADD | BPF_K, dst, imm=imm)


def _call(helper):
    return insn(BPF_JMP | BPF_CALL, imm=int(helper))


def _pid_into_stack(at: int) -> list:
    """*(u32 *)(r10 + at) = bpf_get_current_pid_tgid() >> 32; *(u32 *)(r10 + at + 4) = 0."""
    return [_call(HelperId.get_current_pid_tgid),
            insn(BPF_ALU64 | BPF_RSH | BPF_K, BPF_REG_0, imm=32),
            insn(BPF_STX | BPF_MEM | BPF_W, BPF_REG_10, BPF_REG_0, off=at),
            insn(BPF_ST | BPF_MEM | BPF_W, BPF_REG_10, off=at + 4, imm=0)]


def _output(map_fd: int, at: int, size: int) -> list:
    """bpf_perf_event_output(ctx, &events, BPF_F_CURRENT_CPU, r10 + at, size); return 0."""
    return [_mov64_reg(BPF_REG_1, BPF_REG_6), *ld_imm64(BPF_REG_2, map_fd, BPF_PSEUDO_MAP_FD),
            insn(BPF_ALU | BPF_MOV | BPF_K, BPF_REG_3, imm=BPF_F_CURRENT_CPU),  # mov32: zero-extended
            _mov64_reg(BPF_REG_4, BPF_REG_10), _add_imm(BPF_REG_4, at), _mov64_imm(BPF_REG_5, size),
            _call(HelperId.perf_event_output), _mov64_imm(BPF_REG_0, 0), insn(BPF_JMP | BPF_EXIT)]


def openat_program(arch: str, map_fd: int) -> bytes:
    parm2 = getattr(PT_REGS[arch], PARM_REGS[arch][1]).offset
    at = -EVENT.size
    return encode([
        _mov64_reg(BPF_REG_6, BPF_REG_1),
        *_pid_into_stack(at),
        _mov64_reg(BPF_REG_1, BPF_REG_10), _add_imm(BPF_REG_1, at + 8),
        _mov64_imm(BPF_REG_2, NAME_LEN),
        insn(BPF_LDX | BPF_MEM | BPF_DW, BPF_REG_3, BPF_REG_6, off=parm2),  # PT_REGS_PARM2(ctx)
        _call(HelperId.probe_read_user_str),
        *_output(map_fd, at, EVENT.size),
    ])


def return_program(arch: str, map_fd: int) -> bytes:
    rc = getattr(PT_REGS[arch], RC_REG[arch]).offset
    at = -RET_EVENT.size
    return encode([
        _mov64_reg(BPF_REG_6, BPF_REG_1),
        *_pid_into_stack(at),
        insn(BPF_LDX | BPF_MEM | BPF_DW, BPF_REG_3, BPF_REG_6, off=rc),  # PT_REGS_RC(ctx)
        insn(BPF_STX | BPF_MEM | BPF_DW, BPF_REG_10, BPF_REG_3, off=at + 8),
        *_output(map_fd, at, RET_EVENT.size),
    ])


class Session:
    """The user side: raw bpf() / perf_event_open / ioctl / mmap through one Syscalls object."""

    def __init__(self, sys, pages: int = 8) -> None:
        self.sys = sys
        self.keep: list = []
        # Aya sizes its perf array from "possible" ("0" or "0-N").
        self.ncpus = int(read_file(sys, "/sys/devices/system/cpu/possible").strip().split("-")[-1]) + 1
        self.map_fd = sys.bpf(BpfCmd.MAP_CREATE, make_attr(
            MapCreateAttr, map_type=MapType.PERF_EVENT_ARRAY, key_size=4, value_size=4, max_entries=self.ncpus))
        self.buffers = []
        for cpu in range(self.ncpus):
            attr = PerfEventAttr(type=PerfType.SOFTWARE, size=ctypes.sizeof(PerfEventAttr),
                                 config=PerfSwId.BPF_OUTPUT, sample_type=PERF_SAMPLE_RAW, sample_period=1,
                                 wakeup_events=1)
            fd = sys.perf_event_open(bytearray(bytes(attr)), -1, cpu, -1, 0)
            ring = sys.mmap(fd, (1 + pages) * PAGE, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED, 0)
            sys.ioctl(fd, PERF_EVENT_IOC_ENABLE, 0)
            key, value = self._buf(struct.pack("<I", cpu)), self._buf(struct.pack("<I", fd))
            sys.bpf(BpfCmd.MAP_UPDATE_ELEM, make_attr(MapElemAttr, map_fd=self.map_fd, key=key, value=value))
            self.buffers.append(ring)

    def _buf(self, data: bytes) -> int:
        buf = ctypes.create_string_buffer(data, len(data))
        self.keep.append(buf)
        return ctypes.addressof(buf)

    def load(self, prog: bytes) -> int:
        log = ctypes.create_string_buffer(1 << 16)
        self.keep.append(log)
        attr = make_attr(ProgLoadAttr, prog_type=ProgType.KPROBE, insn_cnt=len(prog) // 8, insns=self._buf(prog),
                         license=self._buf(b"GPL\0"), log_level=1, log_size=len(log), log_buf=ctypes.addressof(log))
        try:
            return self.sys.bpf(BpfCmd.PROG_LOAD, attr)
        except OSError as e:
            raise AssertionError(f"PROG_LOAD failed: {e}\n{log.value.decode(errors='replace')}") from None

    def attach(self, prog_fd: int, symbol: bytes, retprobe: bool = False) -> int:
        kprobe_type = int(read_file(self.sys, "/sys/bus/event_source/devices/kprobe/type"))
        attr = PerfEventAttr(type=kprobe_type, size=ctypes.sizeof(PerfEventAttr), config=int(retprobe),
                             config1=self._buf(symbol + b"\0"), config2=0, flags=ATTR_FLAG_DISABLED)
        fd = self.sys.perf_event_open(bytearray(bytes(attr)), -1, 0, -1, 0)
        self.sys.ioctl(fd, PERF_EVENT_IOC_SET_BPF, prog_fd)
        self.sys.ioctl(fd, PERF_EVENT_IOC_ENABLE, 0)
        return fd

    @staticmethod
    def drain(ring) -> list[tuple[int, bytes | tuple[int, int]]]:
        """Every record in one ring: (PerfRecordType, raw sample bytes or (id, lost)); consumes them."""
        head = struct.unpack_from("<Q", ring, DATA_HEAD_OFFSET)[0]
        tail = struct.unpack_from("<Q", ring, DATA_TAIL_OFFSET)[0]
        size = struct.unpack_from("<Q", ring, DATA_SIZE_OFFSET)[0]
        data = bytes(ring[PAGE : PAGE + size])
        out = []
        while tail < head:
            at = tail % size
            rec = (data + data)[at : at + PERF_EVENT_HEADER.size + 8 * 1024]
            rtype, _misc, rsize = PERF_EVENT_HEADER.unpack_from(rec)
            body = rec[PERF_EVENT_HEADER.size : rsize]
            if rtype == PerfRecordType.SAMPLE:
                (raw_size,) = struct.unpack_from("<I", body)
                out.append((rtype, body[4 : 4 + raw_size]))
            elif rtype == PerfRecordType.LOST:
                out.append((rtype, struct.unpack_from("<QQ", body)))
            assert rsize % 8 == 0 and rsize > 0
            tail += rsize
        struct.pack_into("<Q", ring, DATA_TAIL_OFFSET, tail)
        return out


@pytest.fixture(params=ARCHES)
def sys(request):
    s = open_kernel("sim", arch=request.param, cpus=2)
    yield s
    s.close_all()


def test_kprobe_program_streams_filenames_through_perf_buffers(sys):
    arch = sys.kernel.arch
    session = Session(sys)
    prog_fd = session.load(openat_program(arch, session.map_fd))
    session.attach(prog_fd, b"do_sys_openat2")
    other = sys.kernel.syscalls(sys.kernel.spawn("worker", cpu=1))  # another process, on CPU 1
    paths = ["/proc/version", "/sys/kernel/tracing/kprobe_events", "/proc/kallsyms"]
    for path in paths:
        sys.openat(path, O_RDONLY)
    other.openat("/sys/devices/system/cpu/online", O_RDONLY)
    try:
        other.openat("/no/such/file", O_RDONLY)
    except FileNotFoundError:
        pass
    per_cpu = [Session.drain(ring) for ring in session.buffers]
    samples = [[EVENT.unpack_from(raw) for kind, raw in recs if kind == PerfRecordType.SAMPLE] for recs in per_cpu]
    got = [[(pid, name.split(b"\0")[0].decode()) for pid, _pad, name in cpu] for cpu in samples]
    assert got[0] == [(sys.task.tgid, p) for p in paths]
    assert got[1] == [(other.task.tgid, "/sys/devices/system/cpu/online"), (other.task.tgid, "/no/such/file")]


def test_kretprobe_program_reports_return_values(sys):
    arch = sys.kernel.arch
    session = Session(sys)
    prog_fd = session.load(return_program(arch, session.map_fd))
    session.attach(prog_fd, b"do_sys_openat2", retprobe=True)
    fds = [sys.openat("/proc/version", O_RDONLY) for _ in range(3)]
    try:
        sys.openat("/no/such/file", O_RDONLY)
    except FileNotFoundError:
        pass
    recs = Session.drain(session.buffers[0])
    values = [RET_EVENT.unpack_from(raw) for kind, raw in recs if kind == PerfRecordType.SAMPLE]
    assert [(pid, ret) for pid, _pad, ret in values] == [(sys.task.tgid, fd) for fd in fds] + [(sys.task.tgid, -2)]


def test_a_buffer_too_small_reports_lost_records(sys):
    arch = sys.kernel.arch
    session = Session(sys, pages=1)
    prog_fd = session.load(openat_program(arch, session.map_fd))
    session.attach(prog_fd, b"do_sys_openat2")
    burst = 60
    for _ in range(burst):
        sys.close(sys.openat("/proc/version", O_RDONLY))
    first = Session.drain(session.buffers[0])
    record = -(-(PERF_EVENT_HEADER.size + 4 + EVENT.size) // 8) * 8  # raw samples padded to 8 bytes
    fitted = PAGE // record
    assert [k for k, _ in first] == [PerfRecordType.SAMPLE] * fitted
    sys.openat("/proc/version", O_RDONLY)  # space again: the LOST record comes before this sample
    second = Session.drain(session.buffers[0])
    assert [k for k, _ in second] == [PerfRecordType.LOST, PerfRecordType.SAMPLE]
    _event_id, lost = second[0][1]
    assert lost == burst - fitted
    assert EVENT.unpack_from(second[1][1])[2].split(b"\0")[0] == b"/proc/version"


def test_program_on_tracefs_kprobe_event(sys):
    """The legacy path with the same program: kprobe_events, events/kprobes/NAME/id, a tracepoint fd."""
    from kernel_sim.uapi.epoll import O_WRONLY

    session = Session(sys)
    prog_fd = session.load(openat_program(sys.kernel.arch, session.map_fd))
    fd = sys.openat("/sys/kernel/tracing/kprobe_events", O_WRONLY)
    sys.write(fd, b"p:kprobes/aya_open do_sys_openat2")
    sys.close(fd)
    ident = int(read_file(sys, "/sys/kernel/tracing/events/kprobes/aya_open/id"))
    attr = PerfEventAttr(type=PerfType.TRACEPOINT, size=ctypes.sizeof(PerfEventAttr), config=ident,
                         sample_period=1, wakeup_events=1, flags=ATTR_FLAG_DISABLED)
    ev = sys.perf_event_open(bytearray(bytes(attr)), -1, 0, -1, 0)
    sys.ioctl(ev, PERF_EVENT_IOC_SET_BPF, prog_fd)
    sys.ioctl(ev, PERF_EVENT_IOC_ENABLE, 0)
    sys.openat("/proc/kallsyms", O_RDONLY)
    recs = Session.drain(session.buffers[0])
    names = [EVENT.unpack_from(raw)[2].split(b"\0")[0] for kind, raw in recs if kind == PerfRecordType.SAMPLE]
    assert names[-1:] == [b"/proc/kallsyms"] and len(names) >= 1


@pytest.mark.parametrize("engine", ["interp", "jit"])
def test_both_engines_run_the_kprobe_program(engine):
    sys = open_kernel("sim", engine=engine)
    session = Session(sys)
    prog_fd = session.load(openat_program("x86_64", session.map_fd))
    session.attach(prog_fd, b"do_sys_openat2")
    sys.openat("/proc/version", O_RDONLY)
    recs = Session.drain(session.buffers[0])
    assert [(k, EVENT.unpack_from(raw)[2].split(b"\0")[0]) for k, raw in recs] == [
        (PerfRecordType.SAMPLE, b"/proc/version")]
    sys.close_all()
