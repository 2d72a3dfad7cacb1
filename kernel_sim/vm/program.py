"""VmProgram: one verified program in the form both engines (interpreter, JIT) execute.

Why a separate representation: the loader's instructions still carry pseudo immediates (map
fds, map value offsets, function references). Preprocessing resolves each lddw once into the
plain 64-bit value the program will see, so the engines never look a map up at run time:
- BPF_PSEUDO_MAP_FD / _MAP_IDX -> ``vm.handle_of(map)`` (a non-dereferenceable handle);
- BPF_PSEUDO_MAP_VALUE / _MAP_IDX_VALUE -> ``map.direct_value_addr(off)``;
- BPF_PSEUDO_FUNC -> ``func_addr(pc)`` (what bpf_loop & co. take as a callback);
- src 0 -> the immediate itself.
The helper table (id -> ``fn(run, r1, r2, r3, r4, r5) -> u64``) is per program, so the
conformance runner can install its own helper 5 while loaded programs get Linux's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ..uapi.insn import (
    BPF_CALL,
    BPF_JMP,
    BPF_PSEUDO_BTF_ID,
    BPF_PSEUDO_CALL,
    BPF_PSEUDO_FUNC,
    BPF_PSEUDO_MAP_FD,
    BPF_PSEUDO_MAP_IDX,
    BPF_PSEUDO_MAP_IDX_VALUE,
    BPF_PSEUDO_MAP_VALUE,
    LD_IMM64,
    Insn,
)
from .memory import HANDLE_KEY, KEY_SHIFT, AddressSpace

Helper = Callable[..., int]

# Function "pointers" (BPF_PSEUDO_FUNC) live in the handle key's upper half: never a region,
# so dereferencing one faults, and they cannot collide with object handles (id << 4, small).
FUNC_TAG = (HANDLE_KEY << KEY_SHIFT) | 0x80000000


def func_addr(pc: int) -> int:
    """The address a program sees for the subprogram starting at instruction ``pc``."""
    return FUNC_TAG | (pc & 0x7FFFFFFF)


def func_pc(addr: int) -> int | None:
    """The subprogram entry an address from func_addr stands for, or None."""
    if addr & ~0x7FFFFFFF & 0xFFFFFFFFFFFFFFFF != FUNC_TAG:
        return None
    return addr & 0x7FFFFFFF


@dataclass
class VmProgram:
    """Instructions + resolved lddw values + helpers + subprogram entries, ready to run."""

    insns: list[Insn]
    imm64: dict[int, int]  # index of an lddw's first half -> the 64-bit value it loads
    helpers: dict[int, Helper]
    vm: AddressSpace
    subprogs: list[int] = field(default_factory=lambda: [0])  # entry pcs, sorted, main first
    name: str = ""
    prog_type: int = 0
    insn_aux: dict = field(default_factory=dict)  # the verifier's per-insn facts (optional)

    @classmethod
    def build(cls, insns: list[Insn], helpers: dict[int, Helper], vm: AddressSpace,
              map_refs: dict | None = None, name: str = "", prog_type: int = 0,
              insn_aux: dict | None = None) -> VmProgram:
        """Resolve lddw values and find subprogram entries. ``map_refs`` is preprocess.py's."""
        map_refs = map_refs or {}
        imm64: dict[int, int] = {}
        entries = {0}
        n = len(insns)
        i = 0
        while i < n:
            ins = insns[i]
            if ins.code == LD_IMM64:
                hi = insns[i + 1].imm if i + 1 < n else 0
                value = (ins.imm & 0xFFFFFFFF) | ((hi & 0xFFFFFFFF) << 32)
                ref = map_refs.get(i)
                if ins.src in (BPF_PSEUDO_MAP_FD, BPF_PSEUDO_MAP_IDX):
                    value = vm.handle_of(ref.map) if ref is not None else 0  # raw code: no map, a null
                elif ins.src in (BPF_PSEUDO_MAP_VALUE, BPF_PSEUDO_MAP_IDX_VALUE):
                    value = ref.map.direct_value_addr(ref.value_off) if ref is not None else 0
                elif ins.src == BPF_PSEUDO_FUNC:
                    target = i + ins.imm + 1
                    entries.add(target)
                    value = func_addr(target)
                elif ins.src == BPF_PSEUDO_BTF_ID:
                    value = 0  # kernel variables (ksyms) are not modelled
                imm64[i] = value
                i += 2
                continue
            if ins.code == BPF_JMP | BPF_CALL and ins.src == BPF_PSEUDO_CALL:
                entries.add(i + ins.imm + 1)
            i += 1
        return cls(list(insns), imm64, dict(helpers), vm, sorted(entries), name, prog_type, insn_aux or {})

    def subprog_of(self, pc: int) -> int:
        """The entry of the subprogram containing ``pc``."""
        entry = 0
        for e in self.subprogs:
            if e <= pc:
                entry = e
        return entry
