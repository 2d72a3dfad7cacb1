"""A small BTF writer: types in, a BTF blob (header, type section, string section) out.

Why: the simulated kernel publishes its own /sys/kernel/btf/vmlinux (kernel_sim/btf_vmlinux.py),
and the types in it must describe the memory kernel_sim really lays out. The writer keeps
each type's size and alignment so structs can be laid out the C way (or take explicit member
offsets from ctypes), and it dedups identical records and strings. Layouts are linux/btf.h's:
a 24-byte header, then 12-byte ``btf_type`` records, each followed by its kind's extra data.
Setup-time only (the blob is built once per kernel), so clarity beats speed here.
"""

from __future__ import annotations

import struct

BTF_MAGIC = 0xEB9F
BTF_VERSION = 1
HDR = struct.Struct("<HBBIIIII")

INT, PTR, ARRAY, STRUCT, UNION, ENUM, FWD, TYPEDEF, VOLATILE, CONST = 1, 2, 3, 4, 5, 6, 7, 8, 9, 10
FUNC, FUNC_PROTO = 12, 13
INT_SIGNED, INT_CHAR, INT_BOOL = 1, 2, 4
FUNC_STATIC, FUNC_GLOBAL = 0, 1
PTR_SIZE = 8


class BtfWriter:
    """Type ids start at 1 (0 is void); ``reserve`` gives an id to fill later (self-referencing structs)."""

    def __init__(self) -> None:
        self._records: list[bytes | None] = [None]      # index = type id; 0 is void
        self._size: list[int] = [0]
        self._align: list[int] = [1]
        self._kind: list[int] = [0]
        self._members: dict[int, dict[str, tuple[int, int]]] = {}  # struct id -> name -> (bit offset, type)
        self._dedup: dict[bytes, int] = {}
        self._strings = bytearray(b"\0")
        self._str_off: dict[str, int] = {"": 0}
        self.named: dict[tuple[int, str], int] = {}       # (kind, name) -> id

    # -- strings and records -------------------------------------------------------------------
    def string(self, s: str) -> int:
        off = self._str_off.get(s)
        if off is None:
            off = self._str_off[s] = len(self._strings)
            self._strings += s.encode() + b"\0"
        return off

    def _add(self, kind: int, name: str, vlen: int, size_or_type: int, extra: bytes = b"", *,
             size: int, align: int, flag: int = 0, dedup: bool = True) -> int:
        record = struct.pack("<III", self.string(name), (flag << 31) | (kind << 24) | vlen, size_or_type) + extra
        if dedup and record in self._dedup:
            return self._dedup[record]
        self._records.append(record)
        self._size.append(size)
        self._align.append(align)
        self._kind.append(kind)
        type_id = len(self._records) - 1
        if dedup:
            self._dedup[record] = type_id
        if name:
            self.named.setdefault((kind, name), type_id)
        return type_id

    # -- kinds -----------------------------------------------------------------------------------
    def int_type(self, name: str, size: int, encoding: int = 0) -> int:
        return self._add(INT, name, 0, size, struct.pack("<I", (encoding << 24) | (size * 8)), size=size, align=size)

    def ptr(self, target: int) -> int:
        return self._add(PTR, "", 0, target, size=PTR_SIZE, align=PTR_SIZE)

    def const(self, target: int) -> int:
        return self._add(CONST, "", 0, target, size=self._size[target], align=self._align[target])

    def volatile(self, target: int) -> int:
        return self._add(VOLATILE, "", 0, target, size=self._size[target], align=self._align[target])

    def typedef(self, name: str, target: int) -> int:
        return self._add(TYPEDEF, name, 0, target, size=self._size[target], align=self._align[target])

    def array(self, elem: int, nelems: int, index_type: int) -> int:
        return self._add(ARRAY, "", 0, 0, struct.pack("<III", elem, index_type, nelems),
                         size=self._size[elem] * nelems, align=self._align[elem])

    def fwd(self, name: str, union: bool = False) -> int:
        return self._add(FWD, name, 0, 0, size=0, align=1, flag=int(union))

    def enum(self, name: str, values: list[tuple[str, int]], size: int = 4) -> int:
        extra = b"".join(struct.pack("<Ii", self.string(n), v) for n, v in values)
        return self._add(ENUM, name, len(values), size, extra, size=size, align=size)

    def func_proto(self, ret: int, params: list[tuple[str, int]]) -> int:
        extra = b"".join(struct.pack("<II", self.string(n), t) for n, t in params)
        return self._add(FUNC_PROTO, "", len(params), ret, extra, size=0, align=1)

    def func(self, name: str, proto: int, linkage: int = FUNC_STATIC) -> int:
        return self._add(FUNC, name, linkage, proto, size=0, align=1)

    def reserve(self) -> int:
        """An id for a struct or union defined later with ``struct(..., type_id=...)``."""
        self._records.append(None)
        self._size.append(0)
        self._align.append(1)
        self._kind.append(STRUCT)
        return len(self._records) - 1

    def struct(self, name: str, members: list[tuple[str, int]] | list[tuple[str, int, int]], *,
               size: int | None = None, union: bool = False, type_id: int | None = None) -> int:
        """A struct (or union) from (name, type) laid out as C does, or (name, type, byte offset) as given.

        ``size`` overrides the computed size (ctypes layouts with tail padding of their own).
        """
        kind = UNION if union else STRUCT
        laid: list[tuple[str, int, int]] = []
        pos, align = 0, 1
        for m in members:
            mname, mtype = m[0], m[1]
            malign = max(self._align[mtype], 1)
            if len(m) == 3:
                off = m[2]  # type: ignore[misc]
            else:
                off = 0 if union else (pos + malign - 1) // malign * malign
            laid.append((mname, mtype, off))
            pos = max(pos, off + self._size[mtype]) if not union else max(pos, self._size[mtype])
            align = max(align, malign)
        total = size if size is not None else (pos + align - 1) // align * align
        extra = b"".join(struct.pack("<III", self.string(n), t, off * 8) for n, t, off in laid)
        record = struct.pack("<III", self.string(name), (kind << 24) | len(laid), total) + extra
        if type_id is None:
            type_id = self._add(kind, name, len(laid), total, extra, size=total, align=align, dedup=False)
        else:
            self._records[type_id] = record
            self._size[type_id], self._align[type_id], self._kind[type_id] = total, align, kind
            if name:
                self.named.setdefault((kind, name), type_id)
        self._members[type_id] = {n: (off * 8, t) for n, t, off in laid}
        return type_id

    # -- queries ---------------------------------------------------------------------------------
    def size_of(self, type_id: int) -> int:
        return self._size[type_id]

    def offset_of(self, struct_id: int, member: str) -> int:
        """A member's byte offset in a struct this writer laid out."""
        return self._members[struct_id][member][0] // 8

    def find(self, name: str, kind: int) -> int | None:
        return self.named.get((kind, name))

    def __len__(self) -> int:
        return len(self._records) - 1

    # -- output ----------------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        missing = [i for i, r in enumerate(self._records) if i and r is None]
        if missing:
            raise ValueError(f"reserved BTF type ids never defined: {missing}")
        types = b"".join(r for r in self._records[1:] if r is not None)
        strings = bytes(self._strings)
        header = HDR.pack(BTF_MAGIC, BTF_VERSION, 0, HDR.size, 0, len(types), len(types), len(strings))
        return header + types + strings
