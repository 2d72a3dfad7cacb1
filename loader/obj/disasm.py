"""eBPF disassembly in llvm-objdump's syntax (what `bpfload disasm` prints).

People compare a loader's view of an object with `llvm-objdump -dr`, so the text follows
LLVM's BPF printer: `r6 = r1`, `*(u32 *)(r10 - 8) = r1`, `if r0 == 0 goto +3 <LBB0_2>`,
`r1 = 0 ll`, `lock *(u64 *)(r1 + 16) += r4`, 32-bit subregisters as `wN`.
Two views: an object's code sections as llvm-objdump prints them (section-relative indexes,
symbols as labels, relocation lines), and one linked program as the loader will load it.
"""

from __future__ import annotations

import struct

from kernel_sim.uapi.insn import LD_IMM64

from .model import BpfObject, ProgramDef

_INSN = struct.Struct("<BBhi")

_ALU = {0x00: "+=", 0x10: "-=", 0x20: "*=", 0x30: "/=", 0x40: "|=", 0x50: "&=", 0x60: "<<=", 0x70: ">>=",
        0x90: "%=", 0xA0: "^=", 0xB0: "=", 0xC0: "s>>="}
_JMP = {0x10: "==", 0x20: ">", 0x30: ">=", 0x40: "&", 0x50: "!=", 0x60: "s>", 0x70: "s>=", 0xA0: "<",
        0xB0: "<=", 0xC0: "s<", 0xD0: "s<="}
_SIZE = {0x00: "u32", 0x08: "u16", 0x10: "u8", 0x18: "u64"}
_SSIZE = {0x00: "s32", 0x08: "s16", 0x10: "s8"}
_ATOMIC = {0x00: ("+=", "add"), 0x40: ("|=", "or"), 0x50: ("&=", "and"), 0xA0: ("^=", "xor")}
RELOC_NAMES = {0: "R_BPF_NONE", 1: "R_BPF_64_64", 2: "R_BPF_64_ABS64", 3: "R_BPF_64_ABS32",
               4: "R_BPF_64_NODYLD32", 10: "R_BPF_64_32"}


def _mem(reg: int, off: int) -> str:
    return f"(r{reg} - {-off})" if off < 0 else f"(r{reg} + {off})"


def _signed(off: int) -> str:
    return f"+{off}" if off >= 0 else str(off)


def format_insn(raw: bytes, nxt: bytes | None = None, target_label=None, alu32: bool = False) -> str:
    """One instruction (8 bytes; `nxt` is the second half of an lddw) as llvm-objdump prints it.

    `target_label(delta)` returns the " <LABEL>" suffix for a jump `delta` instructions past
    the next one, or "". `alu32` prints sub-64-bit loads and stores with wN registers, as
    llvm-objdump does with --mattr=+alu32 (and for objects built with -mcpu=v3).
    """
    code, regs, off, imm = _INSN.unpack(raw[:8])
    dst, src = regs & 0xF, regs >> 4
    cls = code & 0x07
    if cls in (0x04, 0x07):  # ALU, ALU64
        r = "r" if cls == 0x07 else "w"
        op = code & 0xF0
        x = code & 0x08
        if op == 0x80:
            return f"{r}{dst} = -{r}{dst}"
        if op == 0xD0:
            if cls == 0x07:
                return f"r{dst} = bswap{imm} r{dst}"
            return f"r{dst} = {'be' if x else 'le'}{imm} r{dst}"
        if op in (0x30, 0x90) and off == 1:
            sym = "s/=" if op == 0x30 else "s%="
            return f"{r}{dst} {sym} {r}{src}" if x else f"{r}{dst} {sym} {imm}"
        if op == 0xB0 and x and off in (8, 16, 32):
            return f"{r}{dst} = (s{off}){r}{src}"
        sym = _ALU.get(op)
        if sym is None:
            return "<unknown>"
        return f"{r}{dst} {sym} {r}{src}" if x else f"{r}{dst} {sym} {imm}"
    if cls in (0x05, 0x06):  # JMP, JMP32
        op = code & 0xF0
        x = code & 0x08
        if cls == 0x05 and op == 0x80:
            return f"call {imm}"
        if cls == 0x05 and op == 0x90:
            return "exit"
        if op == 0x00:
            if cls == 0x06:
                return f"gotol {_signed(imm)}" + (target_label(imm) if target_label else "")
            return f"goto {_signed(off)}" + (target_label(off) if target_label else "")
        sym = _JMP.get(op)
        if sym is None:
            return "<unknown>"
        r = "r" if cls == 0x05 else "w"
        rhs = f"{r}{src}" if x else str(imm)
        return f"if {r}{dst} {sym} {rhs} goto {_signed(off)}" + (target_label(off) if target_label else "")
    if cls == 0x00:  # LD
        if code == LD_IMM64:
            hi = _INSN.unpack(nxt[:8])[3] if nxt is not None else 0
            value = ((hi & 0xFFFFFFFF) << 32) | (imm & 0xFFFFFFFF)
            return f"r{dst} = {value} ll"
        mode, size = code & 0xE0, _SIZE.get(code & 0x18, "u64")
        if mode == 0x20:
            return f"r0 = *({size} *)skb[{imm}]"
        if mode == 0x40:
            return f"r0 = *({size} *)skb[r{src} + {imm}]"
        return "<unknown>"
    mode, sz = code & 0xE0, code & 0x18
    size = _SIZE[sz]
    narrow = "w" if alu32 and sz != 0x18 else "r"
    if cls == 0x01:  # LDX
        if mode == 0x80 and sz in _SSIZE:
            return f"r{dst} = *({_SSIZE[sz]} *){_mem(src, off)}"
        if mode != 0x60:
            return "<unknown>"
        return f"{narrow}{dst} = *({size} *){_mem(src, off)}"
    if cls == 0x02:  # ST
        if mode != 0x60:
            return "<unknown>"
        return f"*({size} *){_mem(dst, off)} = {imm}"
    # STX
    if mode == 0x60:
        return f"*({size} *){_mem(dst, off)} = {narrow}{src}"
    if mode == 0xC0 and sz in (0x00, 0x18):
        # LLVM without alu32 knows only the plain 32-bit add (on rN); the rest are alu32 (wN).
        r = "r" if sz == 0x18 or (imm == 0x00 and not alu32) else "w"
        bits = "64" if sz == 0x18 else "32"
        base = imm & ~0x01
        if imm == 0xE1:
            return f"{r}{src} = xchg{'' if bits == '64' else '32'}_{bits}({_mem_plain(dst, off)}, {r}{src})"
        if imm == 0xF1:
            return f"{r}0 = cmpxchg{'' if bits == '64' else '32'}_{bits}({_mem_plain(dst, off)}, {r}0, {r}{src})"
        if base in _ATOMIC:
            sym, name = _ATOMIC[base]
            if imm & 0x01:
                return f"{r}{src} = atomic_fetch_{name}(({size} *){_mem(dst, off)}, {r}{src})"
            return f"lock *({size} *){_mem(dst, off)} {sym} {r}{src}"
    return "<unknown>"


def _mem_plain(reg: int, off: int) -> str:
    return f"r{reg} - {-off}" if off < 0 else f"r{reg} + {off}"


def _hex(raw: bytes) -> str:
    return " ".join(f"{b:02x}" for b in raw)


def disassemble_code(code: bytes, labels: dict[int, str], relocs: dict[int, tuple[str, str]] | None = None,
                     first_label: bool = True, alu32: bool = False, source: dict[int, str] | None = None) -> list[str]:
    """Lines for a run of instructions; `labels`, `relocs` and `source` ("; line" comments,
    as llvm-objdump -S prints them) keyed by byte offset."""
    out: list[str] = []
    starts = sorted(labels)

    def label_for(pos: int):
        def target(delta: int) -> str:
            dest = (pos // 8 + delta + 1) * 8
            if dest in labels:
                return f" <{labels[dest]}>"
            before = [s for s in starts if s <= dest]
            if before:
                return f" <{labels[before[-1]]}+0x{dest - before[-1]:x}>"
            return ""

        return target

    pos = 0
    while pos + 8 <= len(code):
        if pos in labels and (first_label or pos):
            if out:
                out.append("")
            out.append(f"{pos:016x} <{labels[pos]}>:")
        if source and pos in source:
            out.append(f"; {source[pos]}")
        raw = code[pos : pos + 8]
        is_lddw = raw[0] == LD_IMM64 and pos + 16 <= len(code)
        nxt = code[pos + 8 : pos + 16] if is_lddw else None
        text = format_insn(raw, nxt, label_for(pos), alu32)
        shown = raw + (nxt or b"")
        out.append(f"{pos // 8:8d}:\t{_hex(shown)}\t{text}")
        if relocs and pos in relocs:
            rtype, sym = relocs[pos]
            out.append(f"\t\t{pos:016x}:  {rtype}\t{sym}")
        pos += 16 if is_lddw else 8
    return out


def disassemble_object(data: bytes, name: str = "<bytes>", with_relocs: bool = True, alu32: bool = False) -> str:
    """`llvm-objdump -d[r] FILE` for a BPF object."""
    from .elf import code_sections

    lines = ["", f"{name}:\tfile format elf64-bpf"]
    for sec in code_sections(data, name):
        lines += ["", f"Disassembly of section {sec.name}:", ""]
        lines += disassemble_code(sec.data, sec.labels, sec.relocs if with_relocs else None, alu32=alu32)
    return "\n".join(lines) + "\n"


def disassemble_program(prog: ProgramDef, obj: BpfObject | None = None, alu32: bool = False,
                        with_source: bool = True, section_labels: dict[str, dict[int, str]] | None = None) -> str:
    """The linked program as the loader loads it: callees appended (labelled), map references
    annotated (the loader writes the fd into these lddw instructions), and, when the object
    has BTF line info, the source lines the kernel's verifier log would quote.

    `section_labels` (section -> byte offset -> symbol, from `code_sections`) carries the
    object's local labels (LBB0_3, ...) over to where each function landed in the program.
    """
    labels = {0: prog.name}
    placed = [(prog.section, prog.section_offset, prog.size, 0)]
    pos = prog.size
    for callee in prog.callees:
        labels[pos] = callee
        if obj is not None and callee in obj.functions:
            section, offset, size = obj.functions[callee]
            placed.append((section, offset, size, pos))
            pos += size
    for section, start, size, at in placed if section_labels else ():
        for off, name in section_labels.get(section, {}).items():
            if start < off < start + size:
                labels.setdefault(at + off - start, name)
    relocs = {}
    for r in prog.map_relocs:
        what = r.map_name if r.kind == "map_fd" else f"{r.map_name}+{r.offset}"
        relocs[r.insn_index * 8] = ("MAP_FD" if r.kind == "map_fd" else "MAP_VALUE", what)
    source: dict[int, str] = {}
    if with_source and obj is not None and obj.btf is not None:
        last = None
        for li in prog.line_info:
            try:
                text = obj.btf.string(li.line_off).strip()
            except ValueError:
                continue
            if text and text != last:
                source[li.insn_off * 8] = text
            last = text
    lines = [f"Program {prog.name} (section {prog.section}, {prog.insn_count} instructions):", ""]
    lines += disassemble_code(prog.insns, labels, relocs, alu32=alu32, source=source)
    return "\n".join(lines) + "\n"


__all__ = [
    "RELOC_NAMES",
    "disassemble_code",
    "disassemble_object",
    "disassemble_program",
    "format_insn",
]
