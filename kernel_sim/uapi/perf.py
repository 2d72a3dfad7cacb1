"""linux/perf_event.h as userland and kernel see it: types, attr, ioctls, mmap page, records."""

from __future__ import annotations

import ctypes
import struct
from ctypes import c_int32, c_uint8, c_uint16, c_uint32, c_uint64
from enum import IntEnum


class PerfType(IntEnum):
    HARDWARE = 0
    SOFTWARE = 1
    TRACEPOINT = 2
    HW_CACHE = 3
    RAW = 4
    BREAKPOINT = 5
    MAX = 6  # the seed kernels' kprobe PMU type (read from sysfs by Aya)


class PerfSwId(IntEnum):
    CPU_CLOCK = 0
    TASK_CLOCK = 1
    PAGE_FAULTS = 2
    CONTEXT_SWITCHES = 3
    CPU_MIGRATIONS = 4
    PAGE_FAULTS_MIN = 5
    PAGE_FAULTS_MAJ = 6
    ALIGNMENT_FAULTS = 7
    EMULATION_FAULTS = 8
    DUMMY = 9
    BPF_OUTPUT = 10
    CGROUP_SWITCHES = 11


class PerfRecordType(IntEnum):
    MMAP = 1
    LOST = 2
    COMM = 3
    EXIT = 4
    THROTTLE = 5
    UNTHROTTLE = 6
    FORK = 7
    READ = 8
    SAMPLE = 9
    MMAP2 = 10
    AUX = 11
    ITRACE_START = 12
    LOST_SAMPLES = 13
    SWITCH = 14
    SWITCH_CPU_WIDE = 15
    NAMESPACES = 16
    KSYMBOL = 17
    BPF_EVENT = 18
    CGROUP = 19
    TEXT_POKE = 20
    AUX_OUTPUT_HW_ID = 21


# sample_type bits.
PERF_SAMPLE_IP = 1 << 0
PERF_SAMPLE_TID = 1 << 1
PERF_SAMPLE_TIME = 1 << 2
PERF_SAMPLE_ADDR = 1 << 3
PERF_SAMPLE_READ = 1 << 4
PERF_SAMPLE_CALLCHAIN = 1 << 5
PERF_SAMPLE_ID = 1 << 6
PERF_SAMPLE_CPU = 1 << 7
PERF_SAMPLE_PERIOD = 1 << 8
PERF_SAMPLE_STREAM_ID = 1 << 9
PERF_SAMPLE_RAW = 1 << 10

# perf_event_attr flag bits (the bitfield word at offset 40).
ATTR_FLAG_DISABLED = 1 << 0
ATTR_FLAG_INHERIT = 1 << 1
ATTR_FLAG_PINNED = 1 << 2
ATTR_FLAG_EXCLUSIVE = 1 << 3
ATTR_FLAG_EXCLUDE_USER = 1 << 4
ATTR_FLAG_EXCLUDE_KERNEL = 1 << 5
ATTR_FLAG_EXCLUDE_HV = 1 << 6
ATTR_FLAG_EXCLUDE_IDLE = 1 << 7
ATTR_FLAG_MMAP = 1 << 8
ATTR_FLAG_COMM = 1 << 9
ATTR_FLAG_FREQ = 1 << 10
ATTR_FLAG_INHERIT_STAT = 1 << 11
ATTR_FLAG_ENABLE_ON_EXEC = 1 << 12
ATTR_FLAG_TASK = 1 << 13
ATTR_FLAG_WATERMARK = 1 << 14
ATTR_FLAG_WRITE_BACKWARD = 1 << 27

# perf_event_open flags.
PERF_FLAG_FD_NO_GROUP = 1 << 0
PERF_FLAG_FD_OUTPUT = 1 << 1
PERF_FLAG_PID_CGROUP = 1 << 2
PERF_FLAG_FD_CLOEXEC = 1 << 3

PERF_ATTR_SIZE_VER0 = 64
PERF_ATTR_SIZE_VER5 = 112
PERF_ATTR_SIZE_VER8 = 136


def _IOC(direction: int, type_: int, nr: int, size: int) -> int:
    return (direction << 30) | (size << 16) | (type_ << 8) | nr


_IOC_NONE, _IOC_WRITE, _IOC_READ = 0, 1, 2

PERF_EVENT_IOC_ENABLE = _IOC(_IOC_NONE, ord("$"), 0, 0)  # 0x2400
PERF_EVENT_IOC_DISABLE = _IOC(_IOC_NONE, ord("$"), 1, 0)  # 0x2401
PERF_EVENT_IOC_REFRESH = _IOC(_IOC_NONE, ord("$"), 2, 0)
PERF_EVENT_IOC_RESET = _IOC(_IOC_NONE, ord("$"), 3, 0)
PERF_EVENT_IOC_PERIOD = _IOC(_IOC_WRITE, ord("$"), 4, 8)
PERF_EVENT_IOC_SET_OUTPUT = _IOC(_IOC_NONE, ord("$"), 5, 0)
PERF_EVENT_IOC_SET_FILTER = _IOC(_IOC_WRITE, ord("$"), 6, 8)
PERF_EVENT_IOC_ID = _IOC(_IOC_READ, ord("$"), 7, 8)
PERF_EVENT_IOC_SET_BPF = _IOC(_IOC_WRITE, ord("$"), 8, 4)  # 0x40042408
PERF_EVENT_IOC_PAUSE_OUTPUT = _IOC(_IOC_WRITE, ord("$"), 9, 4)
PERF_EVENT_IOC_QUERY_BPF = _IOC(_IOC_READ | _IOC_WRITE, ord("$"), 10, 8)
PERF_EVENT_IOC_MODIFY_ATTRIBUTES = _IOC(_IOC_WRITE, ord("$"), 11, 8)


class PerfEventAttr(ctypes.Structure):
    """struct perf_event_attr (PERF_ATTR_SIZE_VER8 = 136 bytes); bitfields folded into ``flags``."""

    _c_type_ = "struct perf_event_attr"
    _c_prefix_ = ""
    _c_names_ = {"flags": None, "sample_period": "sample_period"}  # flags: the bit-field word
    _c_newer_ = frozenset({"config3"})  # Linux 6.3
    _fields_ = [
        ("type", c_uint32),
        ("size", c_uint32),
        ("config", c_uint64),
        ("sample_period", c_uint64),  # union with sample_freq
        ("sample_type", c_uint64),
        ("read_format", c_uint64),
        ("flags", c_uint64),  # disabled:1, inherit:1, ... (ATTR_FLAG_*)
        ("wakeup_events", c_uint32),  # union with wakeup_watermark
        ("bp_type", c_uint32),
        ("config1", c_uint64),  # union: bp_addr, kprobe_func, uprobe_path
        ("config2", c_uint64),  # union: bp_len, kprobe_addr, probe_offset
        ("branch_sample_type", c_uint64),
        ("sample_regs_user", c_uint64),
        ("sample_stack_user", c_uint32),
        ("clockid", c_int32),
        ("sample_regs_intr", c_uint64),
        ("aux_watermark", c_uint32),
        ("sample_max_stack", c_uint16),
        ("_reserved_2", c_uint16),
        ("aux_sample_size", c_uint32),
        ("_reserved_3", c_uint32),
        ("sig_data", c_uint64),
        ("config3", c_uint64),
    ]

    @property
    def disabled(self) -> bool:
        return bool(self.flags & ATTR_FLAG_DISABLED)

    @property
    def watermark(self) -> bool:
        return bool(self.flags & ATTR_FLAG_WATERMARK)

    @property
    def wakeup_watermark(self) -> int:
        return self.wakeup_events

    @classmethod
    def from_attr(cls, attr: bytes | bytearray | memoryview) -> PerfEventAttr:
        raw = bytes(attr[: ctypes.sizeof(cls)])
        return cls.from_buffer_copy(raw.ljust(ctypes.sizeof(cls), b"\0"))


class PerfEventMmapPage(ctypes.Structure):
    """struct perf_event_mmap_page: the first page of a perf buffer mapping."""

    _c_type_ = "struct perf_event_mmap_page"
    _c_prefix_ = ""
    _fields_ = [
        ("version", c_uint32),
        ("compat_version", c_uint32),
        ("lock", c_uint32),
        ("index", c_uint32),
        ("offset", ctypes.c_int64),
        ("time_enabled", c_uint64),
        ("time_running", c_uint64),
        ("capabilities", c_uint64),
        ("pmc_width", c_uint16),
        ("time_shift", c_uint16),
        ("time_mult", c_uint32),
        ("time_offset", c_uint64),
        ("time_zero", c_uint64),
        ("size", c_uint32),
        ("_reserved_1", c_uint32),
        ("time_cycles", c_uint64),
        ("time_mask", c_uint64),
        ("_reserved", c_uint8 * (116 * 8)),
        ("data_head", c_uint64),
        ("data_tail", c_uint64),
        ("data_offset", c_uint64),
        ("data_size", c_uint64),
        ("aux_head", c_uint64),
        ("aux_tail", c_uint64),
        ("aux_offset", c_uint64),
        ("aux_size", c_uint64),
    ]


DATA_HEAD_OFFSET = PerfEventMmapPage.data_head.offset  # 1024
DATA_TAIL_OFFSET = PerfEventMmapPage.data_tail.offset  # 1032
DATA_OFFSET_OFFSET = PerfEventMmapPage.data_offset.offset
DATA_SIZE_OFFSET = PerfEventMmapPage.data_size.offset

# struct perf_event_header { u32 type; u16 misc; u16 size; }
PERF_EVENT_HEADER = struct.Struct("<IHH")
# PERF_RECORD_LOST body after the header: { u64 id; u64 lost; }
PERF_RECORD_LOST_BODY = struct.Struct("<QQ")
# PERF_RECORD_SAMPLE with PERF_SAMPLE_RAW: header, then { u32 size; char data[size]; } padded to 8.
PERF_SAMPLE_RAW_SIZE = struct.Struct("<I")

PERF_RECORD_MISC_CPUMODE_MASK = 7
PERF_RECORD_MISC_KERNEL = 1
PERF_RECORD_MISC_USER = 2
