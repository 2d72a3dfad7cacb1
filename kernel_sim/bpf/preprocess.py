"""EBPFPreProcessor: resolve the loader's pseudo immediates before verification.

An lddw whose src_reg is BPF_PSEUDO_MAP_FD / _MAP_IDX names a map (by fd, or by index into
fd_array); _MAP_VALUE / _MAP_IDX_VALUE name an address inside the map's value (the second
half's imm is the offset). The preprocessor looks the maps up in the current task's fd table
and records, per instruction, which map and offset it stands for; the engines then load the
map's kernel handle or the value's kernel address. Errors are Linux's, with its log lines:
"fd %d is not pointing to valid bpf_map" (EBADF for a closed fd, EINVAL for a non-map one),
"invalid bpf_ld_imm64 insn" (EINVAL).
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field

from ..task import current
from ..uapi.insn import (
    BPF_PSEUDO_BTF_ID,
    BPF_PSEUDO_FUNC,
    BPF_PSEUDO_MAP_FD,
    BPF_PSEUDO_MAP_IDX,
    BPF_PSEUDO_MAP_IDX_VALUE,
    BPF_PSEUDO_MAP_VALUE,
    LD_IMM64,
    Insn,
)
from ..usermem import copy_from_user

MAX_USED_MAPS = 64


@dataclass
class MapRef:
    """An lddw that loads a map (value_off None) or the address value_off bytes into its value."""

    insn_idx: int
    map: object
    value_off: int | None


@dataclass
class PreprocessedProgram:
    insns: list[Insn]
    map_refs: dict[int, MapRef] = field(default_factory=dict)  # by instruction index
    used_maps: list = field(default_factory=list)  # distinct maps, in first-use order


class PreprocessError(OSError):
    """EINVAL/EBADF/E2BIG with the verifier log line Linux prints for it."""

    def __init__(self, code: int, log: str) -> None:
        super().__init__(code, log)
        self.log = log


class EBPFPreProcessor:
    def __init__(self, fd_array: int = 0) -> None:
        self.fd_array = fd_array

    def _map_from_fd(self, fd: int):
        message = f"fd {fd} is not pointing to valid bpf_map\n"
        try:
            file = current().files.get(fd)
        except OSError:
            raise PreprocessError(errno.EBADF, message) from None  # no such fd: EBADF, as Linux
        bpf_map = getattr(file, "map", None) if getattr(file, "is_bpf_map", False) else None
        if bpf_map is None:
            raise PreprocessError(errno.EINVAL, message)  # an fd, but not a map
        return bpf_map

    def _fd_from_array(self, idx: int) -> int:
        if not self.fd_array:
            raise PreprocessError(errno.EINVAL, "fd_idx without fd_array is invalid\n")
        return int.from_bytes(copy_from_user(self.fd_array + 4 * idx, 4), "little", signed=True)

    def run(self, insns: list[Insn]) -> PreprocessedProgram:
        out = PreprocessedProgram(list(insns))
        i = 0
        while i < len(insns):
            ins = insns[i]
            if ins.code != LD_IMM64:
                i += 1
                continue
            nxt = insns[i + 1] if i + 1 < len(insns) else None
            if nxt is None or nxt.code != 0 or nxt.dst or nxt.src or nxt.off:
                raise PreprocessError(errno.EINVAL, "invalid bpf_ld_imm64 insn\n")
            src = ins.src
            if src in (0, BPF_PSEUDO_BTF_ID, BPF_PSEUDO_FUNC):
                i += 2
                continue
            if src not in (BPF_PSEUDO_MAP_FD, BPF_PSEUDO_MAP_VALUE, BPF_PSEUDO_MAP_IDX, BPF_PSEUDO_MAP_IDX_VALUE):
                raise PreprocessError(errno.EINVAL, "unrecognized bpf_ld_imm64 insn\n")
            fd = ins.imm
            if src in (BPF_PSEUDO_MAP_IDX, BPF_PSEUDO_MAP_IDX_VALUE):
                fd = self._fd_from_array(ins.imm)
            bpf_map = self._map_from_fd(fd)
            value_off = None
            if src in (BPF_PSEUDO_MAP_VALUE, BPF_PSEUDO_MAP_IDX_VALUE):
                value_off = nxt.imm & 0xFFFFFFFF
                direct = getattr(bpf_map, "direct_value_size", None)
                size = direct() if callable(direct) else None
                if size is None:
                    raise PreprocessError(errno.EINVAL, "map does not support direct value access\n")
                if value_off >= size:
                    raise PreprocessError(errno.EINVAL,
                                          f"invalid access to map value pointer, value_size={size} off={value_off}\n")
            elif nxt.imm:
                raise PreprocessError(errno.EINVAL, "invalid bpf_ld_imm64 insn\n")
            out.map_refs[i] = MapRef(i, bpf_map, value_off)
            if all(m is not bpf_map for m in out.used_maps):
                if len(out.used_maps) >= MAX_USED_MAPS:
                    raise PreprocessError(errno.E2BIG, f"too many maps used by the program (max {MAX_USED_MAPS})\n")
                out.used_maps.append(bpf_map)
            i += 2
        return out
