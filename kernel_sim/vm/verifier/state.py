"""Abstract machine state: registers, stack slots, call frames, and how states compare.

A register is NOT_INIT, a scalar (with ``Bounds``), or a pointer kind with a fixed offset and a
variable part (also ``Bounds``). The stack of each frame is 512 bytes of byte states (invalid,
misc, zero) plus, per aligned 8-byte slot, a spilled register. ``State.covers`` is the pruning
test: an explored state covers the current one when every live register and stack slot of
the old one admits everything the new one may hold.
"""

from __future__ import annotations

from . import bounds as B
from .bounds import Bounds

NOT_INIT = "not_init"
SCALAR = "scalar"
PTR_TO_CTX = "ctx"
CONST_PTR_TO_MAP = "map_ptr"
PTR_TO_MAP_VALUE = "map_value"
PTR_TO_MAP_KEY = "map_key"
PTR_TO_STACK = "fp"
PTR_TO_PACKET = "pkt"
PTR_TO_PACKET_META = "pkt_meta"
PTR_TO_PACKET_END = "pkt_end"
PTR_TO_MEM = "mem"
PTR_TO_FUNC = "func"

STACK_INVALID = 0
STACK_MISC = 1
STACK_ZERO = 2
STACK_SPILL = 3

MAX_STACK = 512
ZERO = B.const(0)


class Reg:
    __slots__ = ("type", "null", "off", "b", "id", "ref", "map", "mem_size", "rng", "frame", "ringbuf", "subprog",
                 "addc", "delta")

    def __init__(self, type: str = NOT_INIT, b: Bounds = ZERO, off: int = 0) -> None:
        self.type = type
        self.null = False
        self.off = off
        self.b = b
        self.id = 0
        self.ref = 0
        self.map = None
        self.mem_size = 0
        self.rng = 0
        self.frame = 0
        self.ringbuf = False
        self.subprog = 0
        self.addc = False  # scalar linked to its id's others plus ``delta`` (Linux's BPF_ADD_CONST)
        self.delta = 0

    def copy(self) -> Reg:
        r = Reg.__new__(Reg)
        for s in Reg.__slots__:
            setattr(r, s, getattr(self, s))
        return r

    @property
    def is_ptr(self) -> bool:
        return self.type not in (NOT_INIT, SCALAR)

    def type_str(self) -> str:
        """reg_type_str(): prefixes and the _or_null postfix as Linux names them."""
        name = self.type
        if self.ringbuf:
            name = "ringbuf_" + name
        return name + ("_or_null" if self.null else "")

    def loop_key(self) -> tuple:
        """Everything but the ids: what must repeat for a path to be going round in circles."""
        return (self.type, self.null, self.off, self.b, id(self.map), self.mem_size, self.rng, self.frame,
                self.ringbuf, self.subprog, self.addc, self.delta)

    def key(self) -> tuple:
        return (self.type, self.null, self.off, self.b, self.id, self.ref, id(self.map), self.mem_size, self.rng,
                self.frame, self.ringbuf, self.addc, self.delta, self.subprog)

    def fmt(self, frameno: int | None = None) -> str:
        """Linux's print of the register; a stack pointer into another frame shows that frame."""
        if self.type == SCALAR:
            text = B.fmt_scalar(self.b)
            if self.id and text.startswith("scalar("):
                ident = f"{self.id}{self.delta:+d}" if self.addc else str(self.id)
                text = f"scalar(id={ident}" + ("," if text != "scalar()" else "") + text[len("scalar("):]
            return text
        if self.type == PTR_TO_STACK:
            fp = "fp" if frameno is None or frameno == self.frame else f"fp[{self.frame}]"
            if self.b.is_const:
                return f"{fp}{self.off}"
            return f"{fp}(off={self.off}," + B.fmt_scalar(self.b)[len("scalar("):]
        extra = []
        if self.id and self.type != PTR_TO_CTX:
            extra.append(f"id={self.id}")
        if self.ref:
            extra.append(f"ref_obj_id={self.ref}")
        if self.type in (PTR_TO_MAP_VALUE, CONST_PTR_TO_MAP) and self.map is not None:
            name = getattr(self.map, "name", "") or ""
            if name:
                extra.append(f"map={name}")
            extra.append(f"ks={getattr(self.map, 'key_size', 0)},vs={getattr(self.map, 'value_size', 0)}")
        if self.off:
            extra.append(f"off={self.off}")
        if self.type in (PTR_TO_PACKET, PTR_TO_PACKET_META):
            extra.append(f"r={self.rng}" if self.rng >= 0 else f"r=0x{self.rng & (2**64 - 1):x}")
        if self.type == PTR_TO_MEM:
            extra.append(f"sz={self.mem_size}")
        if not self.b.is_const:
            s = B.fmt_scalar(self.b)
            extra.append(s[len("scalar("):-1])
        return f"{self.type_str()}({','.join(extra)})"


def scalar(b: Bounds | None = None) -> Reg:
    return Reg(SCALAR, b if b is not None else B.unknown())


def const_scalar(v: int) -> Reg:
    return Reg(SCALAR, B.const(v))


class Frame:
    __slots__ = ("regs", "slots", "spills", "callsite", "subprog", "frameno", "callback")

    def __init__(self, frameno: int, subprog: int, callsite: int) -> None:
        self.regs = [Reg() for _ in range(11)]
        self.slots = bytearray(MAX_STACK)  # per byte, index 0 = fp-512
        self.spills: dict[int, tuple[int, Reg]] = {}  # by first byte (0..511): (size, spilled register)
        self.callsite = callsite
        self.subprog = subprog
        self.frameno = frameno
        self.callback = False
        r10 = Reg(PTR_TO_STACK, ZERO)
        r10.frame = frameno
        self.regs[10] = r10

    def copy(self) -> Frame:
        f = Frame.__new__(Frame)
        f.regs = [r.copy() for r in self.regs]
        f.slots = bytearray(self.slots)
        f.spills = {k: (sz, r.copy()) for k, (sz, r) in self.spills.items()}
        f.callsite = self.callsite
        f.subprog = self.subprog
        f.frameno = self.frameno
        f.callback = self.callback
        return f


class State:
    __slots__ = ("frames", "refs", "parent", "branches", "insn_idx", "prev_insn", "sig", "at", "miss", "hit")

    def __init__(self) -> None:
        self.frames: list[Frame] = []
        self.refs: dict[int, int] = {}  # acquired reference id -> insn that acquired it
        self.parent = None
        self.branches = 0
        self.insn_idx = 0
        self.prev_insn = -1
        self.sig = None  # explored states: the loop signature (see Checker.loop_sig)
        self.at = -1  # explored states: the instruction they were recorded at
        self.miss = 0
        self.hit = 0

    @property
    def cur(self) -> Frame:
        return self.frames[-1]

    def copy(self) -> State:
        s = State()
        s.frames = [f.copy() for f in self.frames]
        s.refs = dict(self.refs)
        s.parent = self.parent
        s.insn_idx = self.insn_idx
        s.prev_insn = self.prev_insn
        return s

    def all_regs(self):
        """Every register and spilled register of every frame (for id-based updates)."""
        for f in self.frames:
            yield from f.regs
            for _sz, r in f.spills.values():
                yield r


def _reg_covers(old: Reg, cur: Reg, idmap: dict, exact: bool) -> bool:
    if old.type == NOT_INIT:
        return not exact or cur.type == NOT_INIT
    if exact:
        return old.key()[:-1] == cur.key()[:-1] or _same_modulo_ids(old, cur, idmap)
    if old.type != cur.type:
        return False
    if old.type == SCALAR:
        if not old.b.contains(cur.b) or (old.addc, old.delta) != (cur.addc, cur.delta):
            return False
        return _check_ids(old.id, cur.id, idmap)
    if old.null != cur.null or old.off != cur.off or old.map is not cur.map or old.ringbuf != cur.ringbuf:
        return False
    if old.frame != cur.frame or old.mem_size != cur.mem_size or old.subprog != cur.subprog:
        return False
    if not old.b.contains(cur.b):
        return False
    if old.type == PTR_TO_PACKET and cur.rng < old.rng:
        return False
    if (old.null or old.type in (PTR_TO_PACKET, PTR_TO_PACKET_META)) and not _check_ids(old.id, cur.id, idmap):
        return False
    return _check_ids(old.ref, cur.ref, idmap)


def _same_modulo_ids(old: Reg, cur: Reg, idmap: dict) -> bool:
    a, b = old.key(), cur.key()
    if a[:4] != b[:4] or a[6:-1] != b[6:-1]:
        return False
    return _check_ids(old.id, cur.id, idmap) and _check_ids(old.ref, cur.ref, idmap)


def _check_ids(a: int, b: int, idmap: dict) -> bool:
    if not a and not b:
        return True
    if not a or not b:
        return not a  # old without id admits anything
    seen = idmap.get(("o", a))
    if seen is None:
        if ("c", b) in idmap:
            return False
        idmap[("o", a)] = b
        idmap[("c", b)] = a
        return True
    return seen == b


def frame_covers(old: Frame, cur: Frame, live: int, idmap: dict, exact: bool, loose: int = 0) -> bool:
    if old.subprog != cur.subprog or old.callsite != cur.callsite:
        return False
    for i in range(11):
        if exact or live >> i & 1:
            o, c = old.regs[i], cur.regs[i]
            if loose >> i & 1 and o.type == SCALAR and c.type == SCALAR:
                continue  # imprecise: any scalar will do (see Checker.loose_mask)
            if not _reg_covers(o, c, idmap, exact):
                return False
    if exact:
        if old.slots != cur.slots or old.spills.keys() != cur.spills.keys():
            return False
        return all(o[0] == cur.spills[k][0] and _reg_covers(o[1], cur.spills[k][1], idmap, True)
                   for k, o in old.spills.items())
    for start, (size, ospill) in old.spills.items():
        csp = cur.spills.get(start)
        if csp is None or csp[0] != size:
            if ospill.type == SCALAR and ospill.b == B.unknown(ospill.b.bits) and \
                    all(c in (STACK_MISC, STACK_ZERO) for c in cur.slots[start:start + size]):
                continue
            if ospill.type == SCALAR and size < 8 and ospill.b.umin == 0 and ospill.b.umax == (1 << (8 * size)) - 1 \
                    and all(c in (STACK_MISC, STACK_ZERO) for c in cur.slots[start:start + size]):
                continue
            return False
        if not _reg_covers(ospill, csp[1], idmap, False):
            return False
    for p in range(MAX_STACK):
        o = old.slots[p]
        if o in (STACK_INVALID, STACK_SPILL):
            continue
        c = cur.slots[p]
        if c == o or (o == STACK_MISC and c == STACK_ZERO):
            continue
        if c == STACK_SPILL and _spill_scalar_at(cur, p, o == STACK_ZERO):
            continue
        return False
    return True


def _spill_scalar_at(f: Frame, p: int, need_zero: bool) -> bool:
    for start, (size, r) in f.spills.items():
        if start <= p < start + size:
            return r.type == SCALAR and (not need_zero or (r.b.is_const and r.b.const == 0))
    return False


def states_cover(old: State, cur: State, live_of, exact: bool = False, loose: int = 0, loose_callers: int = 0) -> bool:
    """True when ``old`` (explored) admits ``cur``; ``live_of(frame_index)`` gives live register masks."""
    if len(old.frames) != len(cur.frames):
        return False
    if old.refs.keys() != cur.refs.keys() if exact else len(old.refs) != len(cur.refs):
        return False
    idmap: dict = {}
    for i, (of, cf) in enumerate(zip(old.frames, cur.frames, strict=True)):
        mask = loose if i == len(cur.frames) - 1 else loose_callers
        if not frame_covers(of, cf, live_of(i), idmap, exact, mask):
            return False
    return True
