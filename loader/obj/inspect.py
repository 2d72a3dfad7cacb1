"""Human and JSON views of a BpfObject (`bpfload inspect`), and BTF in bpftool's dump format.

The BTF lines follow `bpftool btf dump file X` so the two can be diffed; DATASEC sizes and
variable offsets are shown after the loader's fixups (bpftool shows clang's zeros).
"""

from __future__ import annotations

from typing import Any

from .btf import FUNC_LINKAGE, INT_BOOL, INT_CHAR, INT_SIGNED, Btf, BtfType
from .model import BpfObject

_VAR_LINKAGE = {0: "static", 1: "global", 2: "extern"}


def _q(name: str) -> str:
    return f"'{name or '(anon)'}'"


def format_btf_type(btf: Btf, t: BtfType) -> list[str]:
    """One type as bpftool prints it (first line, then tab-indented member lines)."""
    head = f"[{t.id}] {t.kind} {_q(t.name)}"
    k = t.kind
    if k == "INT":
        enc = "(none)"
        if t.int_encoding & INT_SIGNED:
            enc = "SIGNED"
        elif t.int_encoding & INT_CHAR:
            enc = "CHAR"
        elif t.int_encoding & INT_BOOL:
            enc = "BOOL"
        return [f"{head} size={t.size} bits_offset={t.int_offset} nr_bits={t.int_bits} encoding={enc}"]
    if k in ("PTR", "CONST", "VOLATILE", "RESTRICT", "TYPEDEF", "TYPE_TAG"):
        return [f"{head} type_id={t.type}"]
    if k == "ARRAY":
        assert t.array is not None
        return [f"{head} type_id={t.array[0]} index_type_id={t.array[1]} nr_elems={t.array[2]}"]
    if k in ("STRUCT", "UNION"):
        lines = [f"{head} size={t.size} vlen={t.vlen}"]
        for m in t.members:
            extra = f" bitfield_size={m.bitfield_size}" if m.bitfield_size else ""
            lines.append(f"\t{_q(m.name)} type_id={m.type} bits_offset={m.bit_offset}{extra}")
        return lines
    if k in ("ENUM", "ENUM64"):
        enc = "SIGNED" if t.kind_flag else "UNSIGNED"
        lines = [f"{head} encoding={enc} size={t.size} vlen={t.vlen}"]
        for name, val in t.enum_values:
            if k == "ENUM" and t.kind_flag is False:
                val &= 0xFFFFFFFF
            lines.append(f"\t{_q(name)} val={val}")
        return lines
    if k == "FWD":
        return [f"{head} fwd_kind={'union' if t.kind_flag else 'struct'}"]
    if k == "FUNC":
        return [f"{head} type_id={t.type} linkage={FUNC_LINKAGE.get(t.linkage, t.linkage)}"]
    if k == "FUNC_PROTO":
        lines = [f"{head} ret_type_id={t.type} vlen={t.vlen}"]
        lines += [f"\t{_q(n)} type_id={ty}" for n, ty in t.params]
        return lines
    if k == "VAR":
        return [f"{head} type_id={t.type}, linkage={_VAR_LINKAGE.get(t.linkage, t.linkage)}"]
    if k == "DATASEC":
        lines = [f"{head} size={t.size} vlen={t.vlen}"]
        for vtype, off, size in t.secinfo:
            var = btf.types[vtype]
            lines.append(f"\ttype_id={vtype} offset={off} size={size} ({var.kind} {_q(var.name)})")
        return lines
    if k == "FLOAT":
        return [f"{head} size={t.size}"]
    if k == "DECL_TAG":
        return [f"{head} type_id={t.type} component_idx={t.component_idx}"]
    return [head]


def btf_dump(btf: Btf) -> list[str]:
    out: list[str] = []
    for t in btf.types[1:]:
        out += format_btf_type(btf, t)
    return out


CORE_KINDS = {0: "field_byte_offset", 1: "field_byte_size", 2: "field_exists", 3: "field_signed",
              4: "field_lshift_u64", 5: "field_rshift_u64", 6: "type_id_local", 7: "type_id_target",
              8: "type_exists", 9: "type_size", 10: "enumval_exists", 11: "enumval_value", 12: "type_matches"}


def core_spec(btf: Btf, type_id: int, access: str) -> str:
    """A CO-RE access string spelled out: "0:2" on task_struct -> "struct task_struct[0].real_parent"."""
    try:
        parts = [int(x) for x in access.split(":") if x != ""]
        text = btf.type_name(type_id)
        if not parts:
            return text
        t = btf.skip_modifiers(type_id)
        if t.kind in ("ENUM", "ENUM64"):
            return f"{text}::{t.enum_values[parts[0]][0]}"
        text += f"[{parts[0]}]"
        for idx in parts[1:]:
            if t.kind in ("STRUCT", "UNION"):
                m = t.members[idx]
                text += f".{m.name or '(anon)'}"
                t = btf.skip_modifiers(m.type)
            elif t.kind == "ARRAY" and t.array is not None:
                text += f"[{idx}]"
                t = btf.skip_modifiers(t.array[0])
            else:
                return f"{btf.type_name(type_id)} {access}"
        return text
    except (ValueError, IndexError):
        return f"{btf.type_name(type_id)} {access}"


def _target(t) -> str:
    if t is None:
        return "-"
    return "/".join(t) if isinstance(t, tuple) else str(t)


def _table(rows: list[list[str]], header: list[str]) -> list[str]:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    fmt = lambda r: "  " + "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()  # noqa: E731
    return [fmt(header)] + [fmt(r) for r in rows]


def inspect_text(obj: BpfObject, *, btf_types: bool = True) -> str:
    """The `bpfload inspect` report: header, sections, programs, maps, globals, relocations, BTF."""
    lines = [f"{obj.name}: BPF object, license {obj.license or '(none)'!s}, kernel version {obj.kernel_version:#x}"]
    if obj.btf is not None:
        ext = obj.btf_ext
        ext_text = "no BTF.ext"
        if ext is not None:
            fi = sum(len(v) for v in ext.func_info.values())
            li = sum(len(v) for v in ext.line_info.values())
            cr = sum(len(v) for v in ext.core_relos.values())
            ext_text = f"BTF.ext: {fi} func_info, {li} line_info, {cr} CO-RE relocations"
        lines.append(f"BTF: {len(obj.btf.types) - 1} types; {ext_text}")
    else:
        lines.append("BTF: none")

    lines += ["", "Sections:"]
    lines += _table([[s.index, s.name, s.type, s.flags or "-", s.size] for s in obj.sections],
                    ["IDX", "NAME", "TYPE", "FLAGS", "SIZE"])

    lines += ["", "Programs:"]
    rows = []
    for p in obj.programs.values():
        rows.append([p.name, p.kind.value, p.section, p.prog_type.name.lower(),
                     p.expected_attach_type.name.lower() if p.expected_attach_type is not None else "-",
                     _target(p.attach_target), p.insn_count, ",".join(p.callees) or "-"])
    lines += _table(rows, ["NAME", "KIND", "SECTION", "PROG_TYPE", "ATTACH_TYPE", "TARGET", "INSNS", "CALLS"]) \
        if rows else ["  (none)"]

    lines += ["", "Maps:"]
    rows = []
    for m in obj.maps.values():
        extra = []
        if m.pinning:
            extra.append("pinned by name")
        if m.inner is not None:
            extra.append(f"inner {m.inner.type_name} {m.inner.key_size}/{m.inner.value_size}x{m.inner.max_entries}")
        if m.initial_slots:
            extra.append("values " + ",".join(f"[{k}]={v}" for k, v in sorted(m.initial_slots.items())))
        if m.frozen:
            extra.append("frozen")
        rows.append([m.name, m.type_name, m.key_size, m.value_size, m.max_entries, f"{m.map_flags:#x}", m.kind.value,
                     "; ".join(extra) or "-"])
    lines += _table(rows, ["NAME", "TYPE", "KEY", "VALUE", "MAX_ENTRIES", "FLAGS", "FROM", "NOTES"]) \
        if rows else ["  (none)"]

    if obj.globals:
        lines += ["", "Globals:"]
        lines += _table([[g.name, g.map_name, g.offset, g.size] for g in obj.globals.values()],
                        ["NAME", "MAP", "OFFSET", "SIZE"])

    lines += ["", "Relocations:"]
    rows = []
    for p in obj.programs.values():
        for r in p.map_relocs:
            rows.append([p.name, r.insn_index, r.kind, r.map_name, r.offset, r.symbol])
    lines += _table(rows, ["PROGRAM", "INSN", "KIND", "MAP", "OFFSET", "SYMBOL"]) if rows else ["  (none)"]

    core = [(p.name, c) for p in obj.programs.values() for c in p.core_relocs]
    if core and obj.btf is not None:
        lines += ["", "CO-RE relocations:"]
        lines += _table([[name, c.insn_off, CORE_KINDS.get(c.kind, c.kind), c.access_str,
                          core_spec(obj.btf, c.type_id, c.access_str)] for name, c in core],
                        ["PROGRAM", "INSN", "KIND", "ACCESS", "SPEC"])

    if btf_types and obj.btf is not None:
        lines += ["", "BTF types:"]
        lines += ["  " + line for line in btf_dump(obj.btf)]
    return "\n".join(lines) + "\n"


def inspect_json(obj: BpfObject) -> dict[str, Any]:
    """The same report as plain data (for `bpfload inspect --json` and tests)."""
    def map_dict(m) -> dict[str, Any]:
        return {
            "name": m.name, "type": m.type_name, "map_type": int(m.map_type), "key_size": m.key_size,
            "value_size": m.value_size, "max_entries": m.max_entries, "map_flags": m.map_flags,
            "pinning": int(m.pinning), "kind": m.kind.value, "section": m.section, "frozen": m.frozen,
            "btf_key_type_id": m.btf_key_type_id, "btf_value_type_id": m.btf_value_type_id,
            "inner": map_dict(m.inner) if m.inner is not None else None,
            "initial_slots": {str(k): v for k, v in m.initial_slots.items()},
        }

    return {
        "file": obj.name,
        "license": obj.license,
        "kernel_version": obj.kernel_version,
        "sections": [{"index": s.index, "name": s.name, "type": s.type, "flags": s.flags, "size": s.size}
                     for s in obj.sections],
        "programs": [
            {
                "name": p.name, "section": p.section, "kind": p.kind.value, "prog_type": p.prog_type.name.lower(),
                "expected_attach_type": p.expected_attach_type.name.lower() if p.expected_attach_type else None,
                "attach_target": list(p.attach_target) if isinstance(p.attach_target, tuple) else p.attach_target,
                "insns": p.insn_count, "callees": p.callees, "func_info": len(p.func_info),
                "line_info": len(p.line_info),
                "core_relocs": [{"insn": c.insn_off, "kind": CORE_KINDS.get(c.kind, c.kind), "access": c.access_str,
                                 "type_id": c.type_id,
                                 "spec": core_spec(obj.btf, c.type_id, c.access_str) if obj.btf else None}
                                for c in p.core_relocs],
                "map_relocs": [{"insn": r.insn_index, "kind": r.kind, "map": r.map_name, "offset": r.offset,
                                "symbol": r.symbol} for r in p.map_relocs],
            }
            for p in obj.programs.values()
        ],
        "maps": [map_dict(m) for m in obj.maps.values()],
        "globals": [{"name": g.name, "map": g.map_name, "offset": g.offset, "size": g.size}
                    for g in obj.globals.values()],
        "btf": None if obj.btf is None else {"types": len(obj.btf.types) - 1, "dump": btf_dump(obj.btf)},
    }
