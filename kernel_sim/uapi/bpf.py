"""linux/bpf.h as userland and kernel see it: flags, and the bpf_attr layout of each command.

bpf_attr is a union; each command reads its own leading struct of it. Each layout below is a
ctypes Structure with the member offsets of the Linux union (checked against the installed
uapi header in tests/test_uapi_layouts.py). ``_c_prefix_`` names the member path a test uses
with offsetof(union bpf_attr, ...). Pointers in these layouts are u64 user addresses.
"""

from __future__ import annotations

import ctypes
from ctypes import c_char, c_uint8, c_uint32, c_uint64

from .bpf_enums import AttachType, BpfCmd, HelperId, LinkType, MapType, ProgType  # noqa: F401 (re-exported)

BPF_OBJ_NAME_LEN = 16
BPF_TAG_SIZE = 8
BPF_ATTR_SIZE = 168  # sizeof(union bpf_attr) in Linux 6.18; larger inputs must be zero-tailed

# Map update flags.
BPF_ANY = 0
BPF_NOEXIST = 1
BPF_EXIST = 2
BPF_F_LOCK = 4

# Map creation flags.
BPF_F_NO_PREALLOC = 1 << 0
BPF_F_NO_COMMON_LRU = 1 << 1
BPF_F_NUMA_NODE = 1 << 2
BPF_F_RDONLY = 1 << 3
BPF_F_WRONLY = 1 << 4
BPF_F_STACK_BUILD_ID = 1 << 5
BPF_F_ZERO_SEED = 1 << 6
BPF_F_RDONLY_PROG = 1 << 7
BPF_F_WRONLY_PROG = 1 << 8
BPF_F_CLONE = 1 << 9
BPF_F_MMAPABLE = 1 << 10
BPF_F_PRESERVE_ELEMS = 1 << 11
BPF_F_INNER_MAP = 1 << 12
BPF_F_LINK = 1 << 13
BPF_F_PATH_FD = 1 << 14
BPF_F_VTYPE_BTF_OBJ_FD = 1 << 15
BPF_F_TOKEN_FD = 1 << 16
BPF_F_SEGV_ON_FAULT = 1 << 17
BPF_F_NO_USER_CONV = 1 << 18

# Prog load flags.
BPF_F_STRICT_ALIGNMENT = 1 << 0
BPF_F_ANY_ALIGNMENT = 1 << 1
BPF_F_TEST_RND_HI32 = 1 << 2
BPF_F_TEST_STATE_FREQ = 1 << 3
BPF_F_SLEEPABLE = 1 << 4
BPF_F_XDP_HAS_FRAGS = 1 << 5
BPF_F_XDP_DEV_BOUND_ONLY = 1 << 6

# Helper flags.
BPF_F_INDEX_MASK = 0xFFFFFFFF
BPF_F_CURRENT_CPU = BPF_F_INDEX_MASK
BPF_F_CTXLEN_MASK = 0xFFFFF << 32

# Ring buffer (BPF_MAP_TYPE_RINGBUF).
BPF_RB_NO_WAKEUP = 1 << 0
BPF_RB_FORCE_WAKEUP = 1 << 1
BPF_RB_AVAIL_DATA = 0
BPF_RB_RING_SIZE = 1
BPF_RB_CONS_POS = 2
BPF_RB_PROD_POS = 3
BPF_RINGBUF_BUSY_BIT = 1 << 31
BPF_RINGBUF_DISCARD_BIT = 1 << 30
BPF_RINGBUF_HDR_SZ = 8

# Test run flags.
BPF_F_TEST_RUN_ON_CPU = 1 << 0
BPF_F_TEST_XDP_LIVE_FRAMES = 1 << 1

# Object pin / get file flags.
BPF_F_RDONLY_FILE = BPF_F_RDONLY
BPF_F_WRONLY_FILE = BPF_F_WRONLY

# Log levels.
BPF_LOG_LEVEL1 = 1
BPF_LOG_LEVEL2 = 2
BPF_LOG_STATS = 4

# Stack trace map.
BPF_F_SKIP_FIELD_MASK = 0xFF
BPF_F_USER_STACK = 1 << 8
BPF_F_FAST_STACK_CMP = 1 << 9
BPF_F_REUSE_STACKID = 1 << 10

# Minimal log buffer Linux accepts when log_level is set.
BPF_LOG_MIN_ALIGNMENT = 8
BPF_MIN_LOG_SIZE = 128
BPF_MAX_VAR_SIZ = 1 << 29


class _Attr(ctypes.Structure):
    """Base of the per-command bpf_attr layouts."""

    _c_type_ = "union bpf_attr"
    _c_prefix_ = ""
    # For the layout test: members whose C path differs, and members newer than some headers.
    _c_names_: dict[str, str] = {}
    _c_newer_: frozenset[str] = frozenset()

    @classmethod
    def from_attr(cls, attr: bytes | bytearray | memoryview):
        """A copy of the command's fields out of an attr buffer of any length (zero-extended)."""
        raw = bytes(attr[: ctypes.sizeof(cls)])
        return cls.from_buffer_copy(raw.ljust(ctypes.sizeof(cls), b"\0"))

    def write_field(self, attr: bytearray | memoryview, name: str) -> None:
        """Write one field back into the caller's attr, where Linux writes back (if it fits)."""
        field = getattr(type(self), name)
        if field.offset + field.size <= len(attr):
            raw = bytes(self)[field.offset : field.offset + field.size]
            memoryview(attr).cast("B")[field.offset : field.offset + field.size] = raw


class MapCreateAttr(_Attr):
    _fields_ = [
        ("map_type", c_uint32),
        ("key_size", c_uint32),
        ("value_size", c_uint32),
        ("max_entries", c_uint32),
        ("map_flags", c_uint32),
        ("inner_map_fd", c_uint32),
        ("numa_node", c_uint32),
        ("map_name", c_char * BPF_OBJ_NAME_LEN),
        ("map_ifindex", c_uint32),
        ("btf_fd", c_uint32),
        ("btf_key_type_id", c_uint32),
        ("btf_value_type_id", c_uint32),
        ("btf_vmlinux_value_type_id", c_uint32),
        ("map_extra", c_uint64),
        ("value_type_btf_obj_fd", ctypes.c_int32),  # with BPF_F_VTYPE_BTF_OBJ_FD
        ("map_token_fd", ctypes.c_int32),  # with BPF_F_TOKEN_FD
    ]
    _c_newer_ = frozenset({"value_type_btf_obj_fd", "map_token_fd"})  # Linux 6.7 / 6.9


class MapElemAttr(_Attr):
    """MAP_LOOKUP_ELEM, MAP_UPDATE_ELEM, MAP_DELETE_ELEM, MAP_GET_NEXT_KEY, LOOKUP_AND_DELETE."""

    _fields_ = [
        ("map_fd", c_uint32),
        ("_pad0", c_uint32),
        ("key", c_uint64),
        ("value", c_uint64),  # union with next_key
        ("flags", c_uint64),
    ]

    @property
    def next_key(self) -> int:
        return self.value


class MapBatchAttr(_Attr):
    _c_prefix_ = "batch."
    _fields_ = [
        ("in_batch", c_uint64),
        ("out_batch", c_uint64),
        ("keys", c_uint64),
        ("values", c_uint64),
        ("count", c_uint32),
        ("map_fd", c_uint32),
        ("elem_flags", c_uint64),
        ("flags", c_uint64),
    ]


class ProgLoadAttr(_Attr):
    _fields_ = [
        ("prog_type", c_uint32),
        ("insn_cnt", c_uint32),
        ("insns", c_uint64),
        ("license", c_uint64),
        ("log_level", c_uint32),
        ("log_size", c_uint32),
        ("log_buf", c_uint64),
        ("kern_version", c_uint32),
        ("prog_flags", c_uint32),
        ("prog_name", c_char * BPF_OBJ_NAME_LEN),
        ("prog_ifindex", c_uint32),
        ("expected_attach_type", c_uint32),
        ("prog_btf_fd", c_uint32),
        ("func_info_rec_size", c_uint32),
        ("func_info", c_uint64),
        ("func_info_cnt", c_uint32),
        ("line_info_rec_size", c_uint32),
        ("line_info", c_uint64),
        ("line_info_cnt", c_uint32),
        ("attach_btf_id", c_uint32),
        ("attach_prog_fd", c_uint32),
        ("core_relo_cnt", c_uint32),
        ("fd_array", c_uint64),
        ("core_relos", c_uint64),
        ("core_relo_rec_size", c_uint32),
        ("log_true_size", c_uint32),
    ]
    _c_newer_ = frozenset({"log_true_size"})  # Linux 6.4


class ObjPinAttr(_Attr):
    """OBJ_PIN and OBJ_GET."""

    _fields_ = [
        ("pathname", c_uint64),
        ("bpf_fd", c_uint32),
        ("file_flags", c_uint32),
    ]


class TestRunAttr(_Attr):
    _c_prefix_ = "test."
    _fields_ = [
        ("prog_fd", c_uint32),
        ("retval", c_uint32),
        ("data_size_in", c_uint32),
        ("data_size_out", c_uint32),
        ("data_in", c_uint64),
        ("data_out", c_uint64),
        ("repeat", c_uint32),
        ("duration", c_uint32),
        ("ctx_size_in", c_uint32),
        ("ctx_size_out", c_uint32),
        ("ctx_in", c_uint64),
        ("ctx_out", c_uint64),
        ("flags", c_uint32),
        ("cpu", c_uint32),
        ("batch_size", c_uint32),
    ]


class GetIdAttr(_Attr):
    """PROG/MAP/BTF/LINK_GET_NEXT_ID and *_GET_FD_BY_ID (start_id is a union with the ids)."""

    _fields_ = [
        ("start_id", c_uint32),
        ("next_id", c_uint32),
        ("open_flags", c_uint32),
    ]


class InfoAttr(_Attr):
    """OBJ_GET_INFO_BY_FD."""

    _c_prefix_ = "info."
    _fields_ = [
        ("bpf_fd", c_uint32),
        ("info_len", c_uint32),
        ("info", c_uint64),
    ]


class BtfLoadAttr(_Attr):
    _fields_ = [
        ("btf", c_uint64),
        ("btf_log_buf", c_uint64),
        ("btf_size", c_uint32),
        ("btf_log_size", c_uint32),
        ("btf_log_level", c_uint32),
        ("btf_log_true_size", c_uint32),
    ]
    _c_newer_ = frozenset({"btf_log_true_size"})  # Linux 6.4


class RawTracepointAttr(_Attr):
    _c_prefix_ = "raw_tracepoint."
    _fields_ = [
        ("name", c_uint64),
        ("prog_fd", c_uint32),
    ]


class LinkCreateAttr(_Attr):
    """LINK_CREATE; for perf events the union after flags holds perf_event.bpf_cookie."""

    _c_prefix_ = "link_create."
    _fields_ = [
        ("prog_fd", c_uint32),
        ("target_fd", c_uint32),
        ("attach_type", c_uint32),
        ("flags", c_uint32),
        ("bpf_cookie", c_uint64),
    ]
    _c_names_ = {"bpf_cookie": "perf_event.bpf_cookie"}


class LinkDetachAttr(_Attr):
    _c_prefix_ = "link_detach."
    _fields_ = [("link_fd", c_uint32)]


class MapFreezeAttr(_Attr):
    """MAP_FREEZE reads only map_fd (the first member of the elem struct)."""

    _fields_ = [("map_fd", c_uint32)]


class ProgBindMapAttr(_Attr):
    _c_prefix_ = "prog_bind_map."
    _fields_ = [("prog_fd", c_uint32), ("map_fd", c_uint32), ("flags", c_uint32)]


class BpfMapInfo(ctypes.Structure):
    _c_type_ = "struct bpf_map_info"
    _c_prefix_ = ""
    _fields_ = [
        ("type", c_uint32),
        ("id", c_uint32),
        ("key_size", c_uint32),
        ("value_size", c_uint32),
        ("max_entries", c_uint32),
        ("map_flags", c_uint32),
        ("name", c_char * BPF_OBJ_NAME_LEN),
        ("ifindex", c_uint32),
        ("btf_vmlinux_value_type_id", c_uint32),
        ("netns_dev", c_uint64),
        ("netns_ino", c_uint64),
        ("btf_id", c_uint32),
        ("btf_key_type_id", c_uint32),
        ("btf_value_type_id", c_uint32),
        ("_pad0", c_uint32),
        ("map_extra", c_uint64),
    ]


class BpfProgInfo(ctypes.Structure):
    _c_type_ = "struct bpf_prog_info"
    _c_prefix_ = ""
    _c_names_ = {"gpl_compatible": None}  # a bit-field: no offsetof
    _fields_ = [
        ("type", c_uint32),
        ("id", c_uint32),
        ("tag", c_uint8 * BPF_TAG_SIZE),
        ("jited_prog_len", c_uint32),
        ("xlated_prog_len", c_uint32),
        ("jited_prog_insns", c_uint64),
        ("xlated_prog_insns", c_uint64),
        ("load_time", c_uint64),
        ("created_by_uid", c_uint32),
        ("nr_map_ids", c_uint32),
        ("map_ids", c_uint64),
        ("name", c_char * BPF_OBJ_NAME_LEN),
        ("ifindex", c_uint32),
        ("gpl_compatible", c_uint32),  # bit 0; the rest of the word is padding
        ("netns_dev", c_uint64),
        ("netns_ino", c_uint64),
        ("nr_jited_ksyms", c_uint32),
        ("nr_jited_func_lens", c_uint32),
        ("jited_ksyms", c_uint64),
        ("jited_func_lens", c_uint64),
        ("btf_id", c_uint32),
        ("func_info_rec_size", c_uint32),
        ("func_info", c_uint64),
        ("nr_func_info", c_uint32),
        ("nr_line_info", c_uint32),
        ("line_info", c_uint64),
        ("jited_line_info", c_uint64),
        ("nr_jited_line_info", c_uint32),
        ("line_info_rec_size", c_uint32),
        ("jited_line_info_rec_size", c_uint32),
        ("nr_prog_tags", c_uint32),
        ("prog_tags", c_uint64),
        ("run_time_ns", c_uint64),
        ("run_cnt", c_uint64),
        ("recursion_misses", c_uint64),
        ("verified_insns", c_uint32),
        ("attach_btf_obj_id", c_uint32),
        ("attach_btf_id", c_uint32),
    ]


class BpfBtfInfo(ctypes.Structure):
    _c_type_ = "struct bpf_btf_info"
    _c_prefix_ = ""
    _fields_ = [
        ("btf", c_uint64),
        ("btf_size", c_uint32),
        ("id", c_uint32),
        ("name", c_uint64),
        ("name_len", c_uint32),
        ("kernel_btf", c_uint32),
    ]


class BpfLinkInfo(ctypes.Structure):
    """The common head of struct bpf_link_info (type, id, prog_id)."""

    _c_type_ = "struct bpf_link_info"
    _c_prefix_ = ""
    _c_partial_ = True  # the per-type union that follows is not modelled
    _fields_ = [("type", c_uint32), ("id", c_uint32), ("prog_id", c_uint32)]


ATTR_LAYOUTS = [
    MapCreateAttr, MapElemAttr, MapBatchAttr, ProgLoadAttr, ObjPinAttr, TestRunAttr, GetIdAttr,
    InfoAttr, BtfLoadAttr, RawTracepointAttr, LinkCreateAttr, LinkDetachAttr, MapFreezeAttr,
    ProgBindMapAttr, BpfMapInfo, BpfProgInfo, BpfBtfInfo, BpfLinkInfo,
]

# Which layout each command reads.
CMD_LAYOUT: dict[int, type[_Attr]] = {
    BpfCmd.MAP_CREATE: MapCreateAttr,
    BpfCmd.MAP_LOOKUP_ELEM: MapElemAttr,
    BpfCmd.MAP_UPDATE_ELEM: MapElemAttr,
    BpfCmd.MAP_DELETE_ELEM: MapElemAttr,
    BpfCmd.MAP_GET_NEXT_KEY: MapElemAttr,
    BpfCmd.MAP_LOOKUP_AND_DELETE_ELEM: MapElemAttr,
    BpfCmd.MAP_FREEZE: MapFreezeAttr,
    BpfCmd.MAP_LOOKUP_BATCH: MapBatchAttr,
    BpfCmd.MAP_LOOKUP_AND_DELETE_BATCH: MapBatchAttr,
    BpfCmd.MAP_UPDATE_BATCH: MapBatchAttr,
    BpfCmd.MAP_DELETE_BATCH: MapBatchAttr,
    BpfCmd.PROG_LOAD: ProgLoadAttr,
    BpfCmd.OBJ_PIN: ObjPinAttr,
    BpfCmd.OBJ_GET: ObjPinAttr,
    BpfCmd.PROG_TEST_RUN: TestRunAttr,
    BpfCmd.PROG_GET_NEXT_ID: GetIdAttr,
    BpfCmd.MAP_GET_NEXT_ID: GetIdAttr,
    BpfCmd.BTF_GET_NEXT_ID: GetIdAttr,
    BpfCmd.LINK_GET_NEXT_ID: GetIdAttr,
    BpfCmd.PROG_GET_FD_BY_ID: GetIdAttr,
    BpfCmd.MAP_GET_FD_BY_ID: GetIdAttr,
    BpfCmd.BTF_GET_FD_BY_ID: GetIdAttr,
    BpfCmd.LINK_GET_FD_BY_ID: GetIdAttr,
    BpfCmd.OBJ_GET_INFO_BY_FD: InfoAttr,
    BpfCmd.BTF_LOAD: BtfLoadAttr,
    BpfCmd.RAW_TRACEPOINT_OPEN: RawTracepointAttr,
    BpfCmd.LINK_CREATE: LinkCreateAttr,
    BpfCmd.LINK_DETACH: LinkDetachAttr,
    BpfCmd.PROG_BIND_MAP: ProgBindMapAttr,
}


def make_attr(layout: type[_Attr], **fields) -> bytearray:
    """A writable attr buffer of the layout's size with the given fields set (userland helper)."""
    obj = layout(**fields)
    return bytearray(bytes(obj))
