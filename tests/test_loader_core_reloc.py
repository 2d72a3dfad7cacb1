"""CO-RE pieces that need no kernel: instruction patching, flavour names, and the relocator
against a target BTF blob whose layout differs from the object's."""

from __future__ import annotations

import struct

import pytest

from loader.btf_values import BtfTypes
from loader.core_reloc import CoreError, CoreRelocator, TargetBtf, essential_name, patch_insn
from loader.obj import load_object
from loader.obj.model import CoreReloc
from tests.conftest import REPO

INSN = struct.Struct("<BBhi")


def test_patch_kinds():
    insns = bytearray(INSN.pack(0x07, 1, 0, 8) + INSN.pack(0x61, 0x21, 4, 0) + INSN.pack(0x18, 1, 0, 3)
                      + INSN.pack(0, 0, 0, 9) + INSN.pack(0x05, 0, 1, 0))
    patch_insn(insns, 0, 1280)  # add r1, imm
    patch_insn(insns, 1, 1268)  # ldxw r1, [r2 + off]
    patch_insn(insns, 2, 77)  # lddw: low imm set, high cleared
    assert INSN.unpack_from(insns, 0) == (0x07, 1, 0, 1280)
    assert INSN.unpack_from(insns, 8) == (0x61, 0x21, 1268, 0)
    assert INSN.unpack_from(insns, 16)[3] == 77 and INSN.unpack_from(insns, 24)[3] == 0
    with pytest.raises(CoreError):
        patch_insn(insns, 4, 1)  # a jump takes no CO-RE value
    with pytest.raises(CoreError):
        patch_insn(insns, 1, 1 << 16)  # does not fit a load offset
    with pytest.raises(CoreError):
        patch_insn(insns, 9, 1)


def test_flavours():
    assert essential_name("task_struct___v2") == "task_struct"
    assert essential_name("task_struct") == "task_struct"
    assert essential_name("___x") == "___x"


def build_btf(types: list[bytes], strings: bytes) -> bytes:
    body = b"".join(types)
    return struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(body), len(body), len(strings)) + body + strings


def test_relocator_follows_member_names_into_anonymous_members():
    obj = load_object(REPO / "tests" / "objects" / "core.bpf.o")
    local = BtfTypes(obj.btf.to_bytes())
    # Target: struct task_struct { long junk; union { struct { int tgid; int pid; }; }; void *real_parent; }
    strings = b"\0int\0task_struct\0junk\0tgid\0pid\0real_parent\0"
    off = {n: strings.index(b"\0" + n.encode() + b"\0") + 1 for n in ("int", "task_struct", "junk", "tgid", "pid",
                                                                        "real_parent")}
    t = [
        struct.pack("<III", off["int"], 1 << 24, 4) + struct.pack("<I", (1 << 24) | 32),  # 1 int
        struct.pack("<III", 0, 4 << 24 | 2, 8)  # 2 anonymous struct { int tgid; int pid; }
        + struct.pack("<III", off["tgid"], 1, 0) + struct.pack("<III", off["pid"], 1, 32),
        struct.pack("<III", 0, 5 << 24 | 1, 8) + struct.pack("<III", 0, 2, 0),  # 3 anonymous union { struct }
        struct.pack("<III", 0, 2 << 24, 5),  # 4 pointer to task_struct
        struct.pack("<III", off["task_struct"], 4 << 24 | 3, 24)  # 5 struct task_struct
        + struct.pack("<III", off["junk"], 1, 0) + struct.pack("<III", 0, 3, 64)
        + struct.pack("<III", off["real_parent"], 4, 128),
    ]
    target = TargetBtf(BtfTypes(build_btf(t, strings)))
    relocator = CoreRelocator(local, target)
    values = {r.access_str: relocator.value(r) for r in obj.programs["parent_pid"].core_relocs}
    assert values == {"0:2": 16, "0:1": 8, "0:0": 12}  # real_parent, tgid, pid
    missing = CoreRelocator(local, TargetBtf(BtfTypes(build_btf(t[:1], strings))))
    with pytest.raises(CoreError, match="not found"):
        missing.value(CoreReloc(insn_off=2, type_id=5, access_str="0:2", kind=0))
    assert missing.value(CoreReloc(insn_off=2, type_id=5, access_str="0:2", kind=2)) == 0  # FIELD_EXISTS
