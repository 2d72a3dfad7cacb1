"""BPF programs in the kernel: BpfProgMeta, BpfProg, the program file and BPF_PROG_LOAD.

PROG_LOAD reads bpf_attr as Linux does (type, insns, license, log, name, attach type, BTF
fields), runs the EBPFPreProcessor (map fds -> maps), the verifier, and builds the execution
engine (interpreter or JIT) once; the program is then a file with an id and a tag.
"""

from __future__ import annotations

import errno
import hashlib
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..fs.file import File, oserror
from ..task import current
from ..uapi.bpf import (
    BPF_F_ANY_ALIGNMENT,
    BPF_F_SLEEPABLE,
    BPF_F_STRICT_ALIGNMENT,
    BPF_F_TEST_RND_HI32,
    BPF_F_TEST_STATE_FREQ,
    BPF_F_XDP_DEV_BOUND_ONLY,
    BPF_F_XDP_HAS_FRAGS,
    BpfCmd,
    BpfProgInfo,
    ProgLoadAttr,
    ProgType,
)
from ..uapi.insn import BPF_PSEUDO_MAP_FD, BPF_PSEUDO_MAP_VALUE, LD_IMM64, Insn, decode, encode
from ..usermem import copy_from_user, strncpy_from_user
from .objinfo import copy_array
from .preprocess import EBPFPreProcessor, PreprocessError
from .syscall import bpf_command, check_attr_unused_zero
from .verifier_log import VerifierLog

if TYPE_CHECKING:
    from ..kernel import Kernel

BPF_COMPLEXITY_LIMIT_INSNS = 1_000_000
_PROG_FLAGS = (BPF_F_STRICT_ALIGNMENT | BPF_F_ANY_ALIGNMENT | BPF_F_TEST_STATE_FREQ | BPF_F_SLEEPABLE
               | BPF_F_TEST_RND_HI32 | BPF_F_XDP_HAS_FRAGS | BPF_F_XDP_DEV_BOUND_ONLY)
GPL_COMPATIBLE = {"GPL", "GPL v2", "GPL and additional rights", "Dual BSD/GPL", "Dual MIT/GPL", "Dual MPL/GPL"}
_NAME_OK = re.compile(rb"[A-Za-z0-9_.]*")


def obj_name(raw: bytes) -> str:
    """Linux's bpf_obj_name_cpy: alnum, '_' and '.', NUL-terminated within 16 bytes."""
    nul = raw.find(b"\0")
    if nul < 0:
        raise oserror(errno.EINVAL)
    name = raw[:nul]
    if not _NAME_OK.fullmatch(name):
        raise oserror(errno.EINVAL)
    return name.decode()


def prog_tag(insns: list[Insn], sha256: bool) -> bytes:
    """The program tag: the first 8 bytes of a digest of the instructions with map imms zeroed.

    Linux used SHA-1 until it moved program digests to SHA-256 (6.18 answers with SHA-256).
    """
    out = []
    was_ld_map = False
    for ins in insns:
        if not was_ld_map and ins.code == LD_IMM64 and ins.src in (BPF_PSEUDO_MAP_FD, BPF_PSEUDO_MAP_VALUE):
            was_ld_map = True
            ins = ins._replace(imm=0)
        elif was_ld_map and ins.code == 0 and ins.dst == 0 and ins.src == 0 and ins.off == 0:
            was_ld_map = False
            ins = ins._replace(imm=0)
        else:
            was_ld_map = False
        out.append(ins)
    digest = (hashlib.sha256 if sha256 else hashlib.sha1)(encode(out)).digest()
    return digest[:8]


def kernel_uses_sha256_tags(release: str) -> bool:
    m = re.match(r"(\d+)\.(\d+)", release)
    return bool(m) and (int(m.group(1)), int(m.group(2))) >= (6, 18)


@dataclass
class BpfProgMeta:
    """What the kernel remembers of a loaded program (the seed's BpfProgMeta, plus Linux's info)."""

    prog_type: int
    name: str
    license: str
    gpl_compatible: bool
    kern_version: int
    prog_flags: int
    expected_attach_type: int
    insns: list[Insn]
    tag: bytes
    load_time_ns: int
    uid: int
    btf_id: int = 0
    map_ids: list[int] = field(default_factory=list)
    verified_insns: int = 0
    attach_btf_id: int = 0  # the kernel BTF type a TRACING program attaches to (tp_btf: btf_trace_<tp>)


class BpfProg:
    """A verified program ready to run: its meta, its maps and its compiled engine."""

    def __init__(self, kernel: Kernel, meta: BpfProgMeta, prepared, engine) -> None:
        self.kernel = kernel
        self.meta = meta
        self.prepared = prepared
        self.engine = engine
        self.id = kernel.ids["prog"].alloc(self)
        self.refs = 0
        self.run_cnt = 0
        self.run_time_ns = 0

    @property
    def prog_type(self) -> int:
        return self.meta.prog_type

    def run_ctx(self, ctx: bytes | bytearray) -> int:
        """Run on a copy of ctx (pt_regs, tracepoint record, ...) and return r0."""
        self.run_cnt += 1
        return self.engine.run_ctx(ctx)

    def open_file(self, flags: int = 0) -> File:
        return BpfProgFile(self)

    def release(self) -> None:
        self.kernel.ids["prog"].remove(self.id)
        for bpf_map in self.prepared.used_maps:
            put = getattr(bpf_map, "put", None)
            if put:
                put()


class BpfProgFile(File):
    name = "bpf-prog"
    is_bpf_prog = True
    info_type = BpfProgInfo

    def __init__(self, prog: BpfProg) -> None:
        super().__init__()
        self.prog = prog
        prog.refs += 1

    def bpf_info(self, user: BpfProgInfo) -> BpfProgInfo:
        """struct bpf_prog_info, copying the arrays the user asked for."""
        prog, meta = self.prog, self.prog.meta
        xlated = encode(xlated_insns(prog))
        map_ids = b"".join(i.to_bytes(4, "little") for i in meta.map_ids)
        copy_array(user.xlated_prog_insns, min(user.xlated_prog_len, len(xlated)), xlated)
        copy_array(user.map_ids, 4 * min(user.nr_map_ids, len(meta.map_ids)), map_ids)
        info = BpfProgInfo(
            type=meta.prog_type, id=prog.id, xlated_prog_len=len(xlated), jited_prog_len=0,
            load_time=meta.load_time_ns, created_by_uid=meta.uid, nr_map_ids=len(meta.map_ids),
            name=meta.name.encode(), gpl_compatible=int(meta.gpl_compatible), btf_id=meta.btf_id,
            verified_insns=meta.verified_insns, run_cnt=prog.run_cnt, run_time_ns=prog.run_time_ns,
        )
        info.tag[:] = list(meta.tag)
        info.xlated_prog_insns = user.xlated_prog_insns
        info.map_ids = user.map_ids
        return info

    def release(self) -> None:
        self.prog.refs -= 1
        if self.prog.refs == 0:
            self.prog.release()


# The engine builder (verifier + VM) is installed by kernel_sim.bpf.engine to keep this module
# about the syscall; it takes (kernel, prepared, meta, log) and returns (engine, verified_insns).
BUILD_ENGINE = None


@bpf_command(BpfCmd.PROG_LOAD)
def prog_load(kernel: Kernel, attr: memoryview) -> int:
    check_attr_unused_zero(attr, ProgLoadAttr.log_true_size.offset + 4)
    a = ProgLoadAttr.from_attr(attr)
    if a.prog_flags & ~_PROG_FLAGS:
        raise oserror(errno.EINVAL)
    if a.insn_cnt == 0 or a.insn_cnt > BPF_COMPLEXITY_LIMIT_INSNS:
        raise oserror(errno.E2BIG)
    try:
        prog_type = ProgType(a.prog_type)
    except ValueError:
        raise oserror(errno.EINVAL) from None
    license_text = strncpy_from_user(a.license, 127).decode(errors="replace") if a.license else ""
    insns = decode(copy_from_user(a.insns, 8 * a.insn_cnt))
    name = obj_name(bytes(attr[ProgLoadAttr.prog_name.offset:ProgLoadAttr.prog_name.offset + 16]).ljust(16, b"\0"))
    log = VerifierLog(a.log_level, a.log_buf, a.log_size)
    task = current()
    meta = BpfProgMeta(
        prog_type=prog_type, name=name, license=license_text, gpl_compatible=license_text in GPL_COMPATIBLE,
        kern_version=a.kern_version, prog_flags=a.prog_flags, expected_attach_type=a.expected_attach_type,
        insns=insns, tag=prog_tag(insns, kernel_uses_sha256_tags(kernel.release)),
        load_time_ns=time.monotonic_ns(), uid=task.uid,
        btf_id=_btf_id(a.prog_btf_fd) if a.func_info_cnt or a.line_info_cnt else 0,
        attach_btf_id=a.attach_btf_id,
    )
    try:
        prepared = EBPFPreProcessor(a.fd_array).run(insns)
        if BUILD_ENGINE is None:
            raise oserror(errno.ENOSYS)
        engine, meta.verified_insns = BUILD_ENGINE(kernel, prepared, meta, log)
    except PreprocessError as e:
        log.write(e.log + _stats_line(0))
        log.finish(attr, ProgLoadAttr, "log_true_size")
        raise oserror(e.errno) from None
    except OSError:
        log.finish(attr, ProgLoadAttr, "log_true_size")
        raise
    log.finish(attr, ProgLoadAttr, "log_true_size")
    meta.map_ids = [getattr(m, "id", 0) for m in prepared.used_maps]
    for bpf_map in prepared.used_maps:
        get = getattr(bpf_map, "get", None)
        if get:
            get()
    prog = BpfProg(kernel, meta, prepared, engine)
    return task.files.install(BpfProgFile(prog))


def xlated_insns(prog: BpfProg) -> list[Insn]:
    """The program as bpftool dumps it: map references show the map's id in place of the fd."""
    insns = list(prog.meta.insns)
    for idx, ref in prog.prepared.map_refs.items():
        insns[idx] = insns[idx]._replace(imm=getattr(ref.map, "id", 0))
    return insns


def _btf_id(fd: int) -> int:
    if not fd:
        return 0
    file = current().files.get(fd)
    btf = getattr(file, "btf", None)
    if btf is None:
        raise oserror(errno.EINVAL)
    return btf.id


def _stats_line(processed: int) -> str:
    return (f"processed {processed} insns (limit {BPF_COMPLEXITY_LIMIT_INSNS}) max_states_per_insn 0 "
            "total_states 0 peak_states 0 mark_read 0\n")
