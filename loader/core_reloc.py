"""CO-RE: patch field offsets and type facts for the running kernel's BTF, as Aya/libbpf do.

A CO-RE record (from .BTF.ext) says: instruction ``insn_off`` uses a fact about local type
``type_id`` reached through ``access_str`` ("0:2:1" = the root pointer's element 0, its member
2, that member's member 1). The loader finds the same path *by member names* in the target
kernel's BTF (/sys/kernel/btf/vmlinux, read through the seam), in every same-named candidate
type ("task_struct___old" flavours match "task_struct"), descending through anonymous
struct/union members, and writes the target's value into the instruction: ALU immediates and
lddw get it in ``imm``, loads and stores in ``off``.

Supported kinds: FIELD_BYTE_OFFSET, FIELD_BYTE_SIZE, FIELD_EXISTS, FIELD_SIGNED,
FIELD_LSHIFT_U64 / FIELD_RSHIFT_U64 (bitfields, little-endian), TYPE_ID_LOCAL, TYPE_ID_TARGET, TYPE_EXISTS, TYPE_SIZE, ENUMVAL_EXISTS, ENUMVAL_VALUE.
A relocation with no matching target is an error naming the program and the access path.
"""

from __future__ import annotations

import struct
import weakref
from dataclasses import dataclass

from kernel_sim.uapi.epoll import O_RDONLY

from .btf_values import (
    BTF_INT_SIGNED,
    BTF_KIND_ARRAY,
    BTF_KIND_ENUM,
    BTF_KIND_ENUM64,
    BTF_KIND_INT,
    BTF_KIND_STRUCT,
    BTF_KIND_UNION,
    BtfTypeInfo,
    BtfTypes,
)
from .errors import EbpfError

VMLINUX_BTF = "/sys/kernel/btf/vmlinux"

FIELD_BYTE_OFFSET, FIELD_BYTE_SIZE, FIELD_EXISTS, FIELD_SIGNED = 0, 1, 2, 3
FIELD_LSHIFT_U64, FIELD_RSHIFT_U64 = 4, 5
TYPE_ID_LOCAL, TYPE_ID_TARGET, TYPE_EXISTS, TYPE_SIZE = 6, 7, 8, 9
ENUMVAL_EXISTS, ENUMVAL_VALUE = 10, 11

_INSN = struct.Struct("<BBhi")
_CLASS_LDX, _CLASS_ST, _CLASS_STX, _CLASS_ALU, _CLASS_ALU64 = 1, 2, 3, 4, 7
_LDDW = 0x18


class CoreError(EbpfError):
    """A CO-RE relocation that cannot be satisfied on this kernel."""


def essential_name(name: str) -> str:
    """"task_struct___v2" -> "task_struct": libbpf's flavour suffix is ignored when matching."""
    i = name.find("___")
    return name[:i] if i > 0 else name


def read_kernel_btf(sys) -> bytes | None:
    """The running kernel's BTF, or None where the kernel publishes none."""
    try:
        fd = sys.openat(VMLINUX_BTF, O_RDONLY)
    except OSError:
        return None
    try:
        out = bytearray()
        while chunk := sys.read(fd, 1 << 20):
            out += chunk
        return bytes(out)
    finally:
        sys.close(fd)


_TARGETS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def kernel_target(sys) -> TargetBtf | None:
    """The kernel's BTF parsed and indexed, once per Syscalls object (vmlinux is megabytes)."""
    try:
        if sys in _TARGETS:
            return _TARGETS[sys]
    except TypeError:
        pass
    raw = read_kernel_btf(sys)
    target = TargetBtf(BtfTypes(raw)) if raw else None
    try:
        _TARGETS[sys] = target
    except TypeError:
        pass
    return target


class TargetBtf:
    """The kernel's types with a by-essential-name index, built once."""

    def __init__(self, types: BtfTypes) -> None:
        self.types = types
        self.by_name: dict[tuple[str, int], list[int]] = {}
        for type_id, t in enumerate(types.types):
            if t is not None and t.name:
                kind = _match_kind(t.kind)
                self.by_name.setdefault((essential_name(t.name), kind), []).append(type_id)

    def candidates(self, local: BtfTypeInfo) -> list[int]:
        return self.by_name.get((essential_name(local.name), _match_kind(local.kind)), [])


def _match_kind(kind: int) -> int:
    return BTF_KIND_ENUM if kind == BTF_KIND_ENUM64 else kind


@dataclass
class _Resolved:
    """Where an access path ends: the field's bit offset, its type and (for bitfields) size."""

    bit_offset: int
    type_id: int
    bitfield_size: int = 0


def _skip(types: BtfTypes, type_id: int) -> tuple[int, BtfTypeInfo]:
    """resolve() that also returns the id it landed on."""
    for _ in range(64):
        t = types.get(type_id)
        if t.kind not in (8, 9, 10, 11, 18):  # typedef, volatile, const, restrict, type_tag
            return type_id, t
        type_id = t.size_or_type
    raise CoreError("BTF modifier chain too long")


def _find_member(types: BtfTypes, type_id: int, name: str, base_bits: int = 0) -> _Resolved | None:
    """A member by name, descending into anonymous struct/union members."""
    _id, t = _skip(types, type_id)
    if t.kind not in (BTF_KIND_STRUCT, BTF_KIND_UNION):
        return None
    for m in t.members:
        if m.name == name:
            return _Resolved(base_bits + m.bit_offset, m.type_id, m.bitfield_size)
        if not m.name:
            found = _find_member(types, m.type_id, name, base_bits + m.bit_offset)
            if found is not None:
                return found
    return None


def _walk_local(types: BtfTypes, root: int, access: list[int]) -> tuple[_Resolved, list[str | int]]:
    """Follow the access indices in the object's own BTF; returns the end and the path spec
    (member names, array indices) to look up in the target."""
    type_id, t = _skip(types, root)
    bits = access[0] * 8 * types.size_of(type_id) if access else 0
    path: list[str | int] = []
    res = _Resolved(bits, type_id)
    for idx in access[1:]:
        type_id, t = _skip(types, res.type_id)
        if t.kind in (BTF_KIND_STRUCT, BTF_KIND_UNION):
            if idx >= len(t.members):
                raise CoreError(f"access index {idx} past the members of {t.name or 'anonymous type'}")
            m = t.members[idx]
            path.append(m.name)
            res = _Resolved(res.bit_offset + m.bit_offset, m.type_id, m.bitfield_size)
        elif t.kind == BTF_KIND_ARRAY:
            path.append(idx)
            res = _Resolved(res.bit_offset + idx * 8 * types.size_of(t.elem_type), t.elem_type)
        else:
            raise CoreError(f"access index {idx} into a non-composite type")
    return res, path


def _walk_target(types: BtfTypes, root: int, first: int, path: list[str | int]) -> _Resolved | None:
    type_id, _t = _skip(types, root)
    res = _Resolved(first * 8 * types.size_of(type_id), type_id)
    for step in path:
        type_id, t = _skip(types, res.type_id)
        if isinstance(step, int):
            if t.kind != BTF_KIND_ARRAY:
                return None
            res = _Resolved(res.bit_offset + step * 8 * types.size_of(t.elem_type), t.elem_type)
            continue
        if not step:  # an anonymous member in the local path: keep the target where it is
            return None
        found = _find_member(types, type_id, step)
        if found is None:
            return None
        res = _Resolved(res.bit_offset + found.bit_offset, found.type_id, found.bitfield_size)
    return res


def bitfield_load(bit_off: int, bit_sz: int, type_size: int) -> tuple[int, int]:
    """(byte_off, byte_sz) of the smallest naturally aligned load (of at least the field's type
    size, at most 8 bytes) that covers bits [bit_off, bit_off + bit_sz): libbpf's rule."""
    byte_sz = type_size
    byte_off = bit_off // 8 // byte_sz * byte_sz
    while bit_off + bit_sz - byte_off * 8 > byte_sz * 8:
        if byte_sz >= 8:
            raise CoreError("bitfield does not fit an 8-byte load")
        byte_sz *= 2
        byte_off = bit_off // 8 // byte_sz * byte_sz
    return byte_off, byte_sz


def _field_value(kind: int, types: BtfTypes, res: _Resolved) -> int:
    size = types.size_of(res.type_id)
    if res.bitfield_size:
        bit_sz = res.bitfield_size
        byte_off, byte_sz = bitfield_load(res.bit_offset, bit_sz, size)
    else:
        bit_sz = size * 8
        byte_off, byte_sz = res.bit_offset // 8, size
    if kind == FIELD_BYTE_OFFSET:
        return byte_off
    if kind == FIELD_BYTE_SIZE:
        return byte_sz
    if kind == FIELD_EXISTS:
        return 1
    if kind == FIELD_LSHIFT_U64:  # little-endian: move the field's top bit to bit 63
        return 64 - (res.bit_offset + bit_sz - byte_off * 8)
    if kind == FIELD_RSHIFT_U64:
        return 64 - bit_sz
    if kind == FIELD_SIGNED:
        _id, t = _skip(types, res.type_id)
        if t.kind == BTF_KIND_INT:
            return int(bool(t.int_encoding & BTF_INT_SIGNED))
        return int(t.kind in (BTF_KIND_ENUM, BTF_KIND_ENUM64) and t.enum_signed)
    raise CoreError(f"CO-RE relocation kind {kind} is not supported")


class CoreRelocator:
    """Applies one object's CO-RE records against one target BTF."""

    def __init__(self, local: BtfTypes, target: TargetBtf) -> None:
        self.local = local
        self.target = target

    def value(self, reloc) -> int:
        """The target's value for one record (CoreError when nothing matches)."""
        kind = reloc.kind
        local_id, local_t = _skip(self.local, reloc.type_id)
        if kind == TYPE_ID_LOCAL:
            return reloc.type_id
        cands = self.target.candidates(local_t)
        if kind in (TYPE_EXISTS, TYPE_ID_TARGET, TYPE_SIZE):
            if not cands:
                if kind == TYPE_EXISTS:
                    return 0
                raise CoreError(f"type {local_t.name!r} does not exist in the kernel")
            if kind == TYPE_EXISTS:
                return 1
            return cands[0] if kind == TYPE_ID_TARGET else self.target.types.size_of(cands[0])
        access = [int(x) for x in reloc.access_str.split(":") if x != ""]
        if kind in (ENUMVAL_EXISTS, ENUMVAL_VALUE):
            name = _enum_name(self.local, local_id, access[0])
            for cand in cands:
                values = enum_values(self.target.types, cand)
                if name in values:
                    return 1 if kind == ENUMVAL_EXISTS else values[name]
            if kind == ENUMVAL_EXISTS:
                return 0
            raise CoreError(f"enumerator {name!r} of {local_t.name!r} does not exist in the kernel")
        _end, path = _walk_local(self.local, reloc.type_id, access)
        for cand in cands:
            res = _walk_target(self.target.types, cand, access[0] if access else 0, path)
            if res is not None:
                return _field_value(kind, self.target.types, res)
        if kind == FIELD_EXISTS:
            return 0
        where = ".".join(str(p) for p in path)
        raise CoreError(f"field {local_t.name}.{where} not found in the kernel's BTF "
                        f"({len(cands)} candidate type(s))")

    def apply(self, insns: bytearray, reloc, program: str) -> None:
        try:
            value = self.value(reloc)
        except CoreError as e:
            raise CoreError(f"program {program!r}: CO-RE relocation at insn {reloc.insn_off}: {e}") from None
        patch_insn(insns, reloc.insn_off, value, program)


def patch_insn(insns: bytearray, index: int, value: int, program: str = "") -> None:
    off = index * 8
    if off + 8 > len(insns):
        raise CoreError(f"program {program!r}: CO-RE relocation at insn {index} is past the end")
    code, regs, o, imm = _INSN.unpack_from(insns, off)
    cls = code & 7
    if code == _LDDW:
        _INSN.pack_into(insns, off, code, regs, o, value & 0xFFFFFFFF if value >= 0 else value)
        c2, r2, o2, _i2 = _INSN.unpack_from(insns, off + 8)
        _INSN.pack_into(insns, off + 8, c2, r2, o2, 0)
    elif cls in (_CLASS_ALU, _CLASS_ALU64) and not code & 0x08:
        _INSN.pack_into(insns, off, code, regs, o, value)
    elif cls in (_CLASS_LDX, _CLASS_ST, _CLASS_STX):
        if not -(1 << 15) <= value < 1 << 15:
            raise CoreError(f"program {program!r}: field offset {value} does not fit a load/store")
        _INSN.pack_into(insns, off, code, regs, value, imm)
    else:
        raise CoreError(f"program {program!r}: CO-RE relocation on insn {index} (opcode {code:#x}) "
                        "that takes no immediate")


def _enum_name(types: BtfTypes, type_id: int, index: int) -> str:
    names = list(enum_values(types, type_id))
    if index >= len(names):
        raise CoreError(f"enumerator index {index} out of range")
    return names[index]


def enum_values(types: BtfTypes, type_id: int) -> dict[str, int]:
    """Enumerators of an ENUM/ENUM64 type, by name (from the raw records BtfTypes keeps)."""
    _id, t = _skip(types, type_id)
    return dict(t.enumerators)
