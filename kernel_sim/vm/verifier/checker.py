"""The abstract interpreter: every path of the program, one instruction at a time (do_check).

Each path carries a ``State``; a conditional jump whose outcome depends on unknown values
pushes the taken side and continues with the fall-through (the order Linux uses, so the log
shows the same failing path). At prune points (jump targets, conditional jumps, after calls)
the state is compared with the explored ones and dropped when one covers it; loops therefore
verify by running their iterations until the states repeat or the 1,000,000 processed-
instruction budget runs out, as in Linux 6.18 (checkpoints every 2 jumps / 8 instructions,
"infinite loop detected" on an exact repeat, eviction of states that keep missing).

Linux prunes with backward precision tracking; kernel_sim approximates it statically: a
scalar register whose value cannot reach a checked use (structure._relevance) is ignored when
states are compared, and past 1/64 of the budget every scalar outside loop-exit tests is.
The log follows Linux's format: the trace (cut back to the branch point when a path ends at
level 1, "from X to Y" at level 2), the state after each instruction aligned as
vlog_alignment() does, the error line(s), the statistics line.
"""

from __future__ import annotations

import errno
import time

from ...uapi.bpf_enums import MapType, ProgType
from ...uapi.insn import (
    BPF_ALU,
    BPF_ALU64,
    BPF_JMP,
    BPF_JMP32,
    BPF_LD,
    BPF_LDX,
    BPF_PSEUDO_BTF_ID,
    BPF_PSEUDO_CALL,
    BPF_PSEUDO_FUNC,
    BPF_ST,
    BPF_STX,
    LD_IMM64,
    Insn,
)
from .. import ctx_layouts
from .. import helper_protos as HP
from . import bounds as B
from .disasm import fmt_insn
from .state import (
    CONST_PTR_TO_MAP,
    MAX_STACK,
    NOT_INIT,
    PTR_TO_CTX,
    PTR_TO_FUNC,
    PTR_TO_MAP_VALUE,
    PTR_TO_MEM,
    PTR_TO_PACKET,
    PTR_TO_PACKET_END,
    PTR_TO_PACKET_META,
    PTR_TO_STACK,
    SCALAR,
    STACK_INVALID,
    STACK_MISC,
    STACK_SPILL,
    STACK_ZERO,
    Frame,
    Reg,
    State,
    const_scalar,
    scalar,
    states_cover,
)
from .structure import Structure, is_cond_jump, jump_target

COMPLEXITY_LIMIT_INSNS = 1_000_000
COMPLEXITY_LIMIT_JMP_SEQ = 8192
MAX_CALL_FRAMES = 8
MAX_VAR_OFF = 1 << 29
BPF_F_RDONLY_PROG = 1 << 7
SIZES = {0x00: 4, 0x08: 2, 0x10: 1, 0x18: 8}
ALU_STR = {0x00: "+=", 0x10: "-=", 0x20: "*=", 0x30: "/=", 0x40: "|=", 0x50: "&=", 0x60: "<<=", 0x70: ">>=",
           0x80: "neg", 0x90: "%=", 0xA0: "^=", 0xB0: "=", 0xC0: "s>>=", 0xD0: "endian"}
PKT_TYPES = (PTR_TO_PACKET, PTR_TO_PACKET_META)
MEM_KINDS = {PTR_TO_STACK: "stack", PTR_TO_CTX: "ctx", PTR_TO_MAP_VALUE: "map_value", PTR_TO_PACKET: "packet",
             PTR_TO_PACKET_META: "packet", PTR_TO_MEM: "mem"}

# check_reg_type's "expected=" lists, as Linux 6.18 prints them.
EXPECTED = {
    HP.ARG_CONST_MAP_PTR: "map_ptr",
    HP.ARG_PTR_TO_CTX: "ctx",
    HP.ARG_PTR_TO_RINGBUF_MEM: "ringbuf_mem",
    HP.ARG_PTR_TO_FUNC: "func",
    HP.ARG_PTR_TO_STACK_OR_NULL: "fp",
    HP.ARG_PTR_TO_CONST_STR: "map_value",
    HP.ARG_CONST_SIZE: "scalar",
    HP.ARG_CONST_SIZE_OR_ZERO: "scalar",
    HP.ARG_CONST_ALLOC_SIZE_OR_ZERO: "scalar",
}
MEM_EXPECTED = "fp, pkt, pkt_meta, map_key, map_value, mem, ringbuf_mem, buf, trusted_ptr_"
MEM_ACCEPT = (PTR_TO_STACK, PTR_TO_PACKET, PTR_TO_PACKET_META, PTR_TO_MAP_VALUE, PTR_TO_MEM, "map_key")

# Which map types each helper takes, and which helpers each special map type allows.
HELPER_MAPS = {
    int(HP.H.tail_call): {MapType.PROG_ARRAY},
    int(HP.H.perf_event_output): {MapType.PERF_EVENT_ARRAY},
    int(HP.H.ringbuf_output): {MapType.RINGBUF},
    int(HP.H.ringbuf_reserve): {MapType.RINGBUF},
    int(HP.H.ringbuf_query): {MapType.RINGBUF},
    int(HP.H.get_stackid): {MapType.STACK_TRACE},
    int(HP.H.map_push_elem): {MapType.QUEUE, MapType.STACK},
    int(HP.H.map_pop_elem): {MapType.QUEUE, MapType.STACK},
    int(HP.H.map_peek_elem): {MapType.QUEUE, MapType.STACK, MapType.BLOOM_FILTER},
}
MAP_HELPERS = {
    MapType.PROG_ARRAY: {int(HP.H.tail_call)},
    MapType.PERF_EVENT_ARRAY: {int(HP.H.perf_event_output), 22, 55},
    MapType.RINGBUF: {int(HP.H.ringbuf_output), int(HP.H.ringbuf_reserve), int(HP.H.ringbuf_query)},
    MapType.STACK_TRACE: {int(HP.H.get_stackid)},
    MapType.QUEUE: {int(HP.H.map_push_elem), int(HP.H.map_pop_elem), int(HP.H.map_peek_elem)},
    MapType.STACK: {int(HP.H.map_push_elem), int(HP.H.map_pop_elem), int(HP.H.map_peek_elem)},
}


# check_return_code(): the range R0 must be in at exit, per program type (measured on Linux 6.18)
RET_RANGES = {int(t): (0, 1) for t in (ProgType.CGROUP_SKB, ProgType.CGROUP_SOCK, ProgType.SOCK_OPS,
                                       ProgType.CGROUP_DEVICE, ProgType.CGROUP_SOCK_ADDR, ProgType.CGROUP_SYSCTL,
                                       ProgType.CGROUP_SOCKOPT, ProgType.SK_LOOKUP, ProgType.NETFILTER)}
RET_CHECKED = frozenset(RET_RANGES)
CGROUP_INET_EGRESS = 1
STR_HELPERS = frozenset({int(HP.H.probe_read_str), int(HP.H.probe_read_kernel_str),
                         int(HP.H.probe_read_user_str), int(HP.H.get_stack)})


class Reject(Exception):
    """A verification failure: errno and the message line(s) Linux prints."""

    def __init__(self, code: int, msg: str) -> None:
        super().__init__(msg)
        self.errno = code
        self.msg = msg


class _PathDone(Exception):
    pass


def _s(v: int, bits: int = 64) -> int:
    return B.to_signed(v, bits)


class Checker:
    def __init__(self, insns: list[Insn], structure: Structure, map_refs: dict, prog_type: int, arch: str,
                 gpl: bool, log_level: int, map_addr=None, ncpus: int = 1, attach_type: int = 0) -> None:
        self.attach_type = attach_type
        self.ncpus = ncpus
        self.map_addr = map_addr  # map object -> the kernel address the log prints for it
        self.insns = insns
        self.st = structure
        self.map_refs = map_refs
        self.prog_type = prog_type
        self.arch = arch
        self.gpl = gpl
        self.level = log_level
        self.trace = bool(log_level & 3)
        self.out: list[str] = []
        self.insn_line_end = -1  # len(out) right after an instruction line
        self.insn_processed = 0
        self.limit = COMPLEXITY_LIMIT_INSNS
        self.jmps_processed = 0
        self.prev_jmps = 0
        self.prev_insns = 0
        self.explored: dict[int, list[State]] = {}  # fully explored states per insn (they prune)
        self.progress: dict[int, dict[tuple, list[State]]] = {}  # states whose paths are still open
        self.nprogress: dict[int, int] = {}
        self.pending: list[tuple[State, int]] = []
        self.total_states = 0
        self.peak_states = 0
        self.max_states_per_insn = 0
        self.id_gen = 0
        self.stack_depth: dict[int, int] = {}
        self.callees: dict[int, set[int]] = {}
        self.aux: dict[int, dict] = {}
        self.scratched_regs = (1 << 11) - 1
        self.scratched_slots: set[int] = set()
        self.start_ns = time.monotonic_ns()

    # -- log --------------------------------------------------------------------------------
    def verbose(self, text: str) -> None:
        self.out.append(text)

    def text(self) -> str:
        return "".join(self.out)

    def stats(self) -> str:
        lines = ""
        if self.level & 4:
            usec = (time.monotonic_ns() - self.start_ns) // 1000
            depths = "+".join(str(self.stack_depth.get(i, 0)) for i in range(len(self.st.subprog_starts)))
            lines = f"verification time {usec} usec\nstack depth {depths}\n"
        return lines + (f"processed {self.insn_processed} insns (limit {COMPLEXITY_LIMIT_INSNS}) max_states_per_insn "
                        f"{self.max_states_per_insn} total_states {self.total_states} peak_states {self.peak_states} "
                        "mark_read 0\n")

    def fmt_state(self, frame: Frame, all_regs: bool, refs: dict | None = None, precise: int = 0) -> str:
        parts = [f"frame{frame.frameno}:"] if frame.frameno else []
        for i, r in enumerate(frame.regs):
            if r.type == NOT_INIT:
                continue
            if not all_regs and not self.scratched_regs >> i & 1:
                continue
            p = "P" if precise >> i & 1 and r.type == SCALAR else ""
            parts.append(f"R{i}={p}{r.fmt(frame.frameno)}")
        spill_at = {start: (size, reg) for start, (size, reg) in frame.spills.items()}
        for k in range(MAX_STACK // 8 - 1, -1, -1):
            lo = 8 * k
            if not all_regs and lo not in self.scratched_slots:
                continue
            slot = frame.slots[lo:lo + 8]
            if not any(slot):
                continue
            name = f"fp{lo - MAX_STACK}"
            sp = spill_at.get(lo)
            if sp is not None and sp[0] == 8:
                parts.append(f"{name}={sp[1].fmt(frame.frameno)}")
            elif sp is not None:
                chars = "".join("?m0m"[c] for c in reversed(slot[sp[0]:]))
                parts.append(f"{name}={chars}{sp[1].fmt(frame.frameno)}")
            else:
                # narrow spills are kernel_sim's extra precision; Linux shows those bytes as misc
                chars = "".join("?m0m"[c] for c in reversed(slot))
                parts.append(f"{name}={chars}")
        if refs:
            parts.append("refs=" + ",".join(str(r) for r in refs))
        if frame.callback:
            parts.append("cb")
        return " ".join(parts)

    def print_insn_state(self, state: State, idx: int) -> None:
        frame = state.cur
        text = self.fmt_state(frame, False, state.refs)
        self.scratched_regs = 0
        self.scratched_slots = set()
        text = " " + text if text else ""
        if self.insn_line_end == len(self.out) and self.out:
            line = self.out[-1].rstrip("\n")
            pos = len(line) + 1
            pad = (max(pos + 4, 40) + 7) // 8 * 8 - pos - 1  # vlog_alignment()
            self.out[-1] = line + " " * pad + ";" + text + "\n"
        else:
            self.verbose(f"{idx}:{text}\n")

    # -- ids and helpers ------------------------------------------------------------------------
    def new_id(self) -> int:
        self.id_gen += 1
        return self.id_gen

    def scratch(self, regno: int) -> None:
        self.scratched_regs |= 1 << regno

    def read_reg(self, state: State, regno: int) -> Reg:
        if regno > 10:
            raise Reject(errno.EINVAL, f"R{regno} is invalid\n")
        self.scratch(regno)
        r = state.cur.regs[regno]
        if r.type == NOT_INIT:
            raise Reject(errno.EACCES, f"R{regno} !read_ok\n")
        return r

    def check_dst(self, regno: int) -> None:
        if regno > 10:
            raise Reject(errno.EINVAL, f"R{regno} is invalid\n")
        if regno == 10:
            raise Reject(errno.EACCES, "frame pointer is read only\n")
        self.scratch(regno)

    def set_reg(self, state: State, regno: int, reg: Reg) -> None:
        self.scratch(regno)
        state.cur.regs[regno] = reg

    def note_mem(self, idx: int, reg: Reg) -> None:
        kind = MEM_KINDS.get(reg.type, reg.type)
        a = self.aux.setdefault(idx, {})
        prev = a.get("mem")
        a["mem"] = kind if prev in (None, kind) else "mixed"

    # -- the main loop -------------------------------------------------------------------------
    def live_regs_table(self) -> str:
        """Level 2's preamble: the subprograms and the registers live before each instruction."""
        out = [f"func#{k} @{start}\n" for k, start in enumerate(self.st.subprog_starts)]
        out.append("Live regs before insn:\n")
        i = 0
        while i < len(self.insns):
            ins = self.insns[i]
            live = self.st.live_in[i]
            mask = "".join(str(r) if live >> r & 1 else "." for r in range(10))
            nxt = self.insns[i + 1] if ins.code == LD_IMM64 and i + 1 < len(self.insns) else None
            out.append(f"{i:7d}: {mask} {fmt_insn(ins, nxt, self.map_refs.get(i), self.map_addr)}\n")
            i += 2 if ins.code == LD_IMM64 else 1
        return "".join(out)

    def run(self) -> None:
        state = State()
        f = Frame(0, 0, -1)
        r1 = Reg(PTR_TO_CTX)
        f.regs[1] = r1
        state.frames.append(f)
        state.insn_idx = 0
        state.branches = 1
        if self.level & 2:
            self.verbose(self.live_regs_table())
        do_print_state = False  # the initial state shows as the scratched "0: R1=ctx() R10=fp0" line
        while True:
            idx = state.insn_idx
            self.insn_processed += 1
            if self.insn_processed > self.limit:
                raise Reject(errno.E2BIG, f"BPF program is too large. Processed {self.insn_processed} insn\n")
            pruned = False
            if idx in self.st.prune_points:
                pruned = self.is_state_visited(state, idx)
            if pruned:
                if self.trace:
                    if do_print_state and self.level & 2:
                        self.verbose(f"\nfrom {state.prev_insn} to {idx}: safe\n")
                    else:
                        self.verbose(f"{idx}: safe\n")
                done = True
            else:
                if self.trace:
                    if self.level & 2 and do_print_state:
                        self.verbose(f"\nfrom {state.prev_insn} to {idx}: {self.fmt_state(state.cur, True)}\n")
                    if self.scratched_regs or self.scratched_slots:
                        self.print_insn_state(state, idx)
                    ins = self.insns[idx]
                    nxt = self.insns[idx + 1] if ins.code == LD_IMM64 and idx + 1 < len(self.insns) else None
                    self.verbose(f"{idx}: {fmt_insn(ins, nxt, self.map_refs.get(idx), self.map_addr)}\n")
                    self.insn_line_end = len(self.out)
                do_print_state = False
                try:
                    nxt_idx = self.step(state, idx)
                    done = False
                except _PathDone:
                    done = True
                if self.trace and not done and is_cond_jump(self.insns[idx]) \
                        and (self.scratched_regs or self.scratched_slots) and self.insn_line_end == len(self.out):
                    self.print_insn_state(state, idx)  # check_cond_jmp_op prints at once; others wait
                if not done:
                    state.prev_insn = idx
                    state.insn_idx = nxt_idx
                    continue
            # the path ended (exit or pruned): count down the branches, pick the next one
            self.update_branch_counts(state)
            if not self.pending:
                return
            state, (n, keep) = self.pending.pop()
            if not self.level & 2 and self.trace:
                del self.out[n:]
                if n:
                    self.out[n - 1] = self.out[n - 1][:keep]
            self.scratched_regs = (1 << 11) - 1
            self.scratched_slots = set(range(0, MAX_STACK, 8))
            do_print_state = True

    def update_branch_counts(self, state: State) -> None:
        st = state.parent
        while st is not None:
            st.branches -= 1
            if st.branches:
                break
            # fully explored: it may now prune other paths
            bucket = self.progress[st.at][st.sig]
            bucket.remove(st)
            self.nprogress[st.at] -= 1
            if not bucket:
                del self.progress[st.at][st.sig]
            self.explored.setdefault(st.at, []).append(st)
            st = st.parent

    def push(self, state: State, target: int, prev: int) -> State:
        s = state.copy()
        s.insn_idx = target
        s.prev_insn = prev
        if s.parent is not None:
            s.parent.branches += 1
        # the log position, in characters: Linux cuts the log back to it when the branch is popped
        self.pending.append((s, (len(self.out), len(self.out[-1]) if self.out else 0)))
        if len(self.pending) > COMPLEXITY_LIMIT_JMP_SEQ:
            raise Reject(errno.E2BIG, f"The sequence of {len(self.pending)} jumps is too complex.\n")
        return s

    def live_of(self, state: State, idx: int):
        frames = state.frames

        def live(i: int) -> int:
            if i == len(frames) - 1:
                return self.st.live_in[idx]
            site = frames[i + 1].callsite
            return self.st.live_in[site + 1] & ~0b111111 if site + 1 < len(self.insns) else 0

        return live

    def loop_precise(self, idx: int) -> int:
        """Registers Linux's precision tracking would have marked in a looping state at ``idx``: the
        operands of the first conditional jump ahead that are not written before it."""
        written = 0
        i = idx
        for _ in range(64):
            if not 0 <= i < len(self.insns):
                return 0
            ins = self.insns[i]
            if is_cond_jump(ins):
                regs = 1 << ins.dst | ((1 << ins.src) if ins.code & 0x08 else 0)
                return regs & ~written
            if ins.cls in (BPF_ALU, BPF_ALU64, BPF_LDX) or ins.code == LD_IMM64:
                written |= 1 << ins.dst
            if ins.code & 0xF7 == 0x05 and ins.cls in (BPF_JMP, BPF_JMP32):
                i = jump_target(i, ins)
                continue
            if ins.code in (0x95, 0x85):
                return 0
            i += 2 if ins.code == LD_IMM64 else 1
        return 0

    def loose_mask(self) -> int:
        """Registers whose scalar ranges pruning may ignore.

        Linux prunes with precision tracking: a scalar's range matters only if it was used in a way
        that needs it. Without that bookkeeping, chains of independent branches multiply paths
        (2^n for n diamonds). Past 1/64 of the budget, kernel_sim treats every scalar register
        except those deciding loop exits as imprecise, so it does not refuse (by budget) programs
        Linux verifies; the memory model still bounds-checks every access at run time.
        """
        if self.insn_processed * 64 < self.limit:
            return 0
        return ~self.st.loop_regs & 0x7FF

    def loop_sig(self, state: State, live: int) -> tuple:
        regs = state.cur.regs
        return (len(state.frames),) + tuple(regs[i].loop_key() if live >> i & 1 else None for i in range(11))

    def is_state_visited(self, cur: State, idx: int) -> bool:
        force = idx in self.st.force_points
        add = force or (self.jmps_processed - self.prev_jmps >= 2 and self.insn_processed - self.prev_insns >= 8)
        live = self.live_of(cur, idx)
        sig = self.loop_sig(cur, live(len(cur.frames) - 1))
        progress = self.progress.setdefault(idx, {})
        for old in progress.get(sig, ()):
            if states_cover(old, cur, live, exact=True):
                self.verbose(f"infinite loop detected at insn {idx}\n")
                self.scratched_regs = (1 << 11) - 1
                cs = self.fmt_state(cur.cur, True)
                os_ = self.fmt_state(old.cur, True, precise=self.loop_precise(idx))
                raise Reject(errno.EINVAL, f"cur state: {cs}\nold state: {os_}\n")
        if progress and not force and self.jmps_processed - self.prev_jmps < 20 \
                and self.insn_processed - self.prev_insns < 100:
            add = False
        lst = self.explored.get(idx)
        if lst:
            for k in range(len(lst) - 1, -1, -1):
                old = lst[k]
                budget = self.loose_mask()
                if states_cover(old, cur, live, loose=budget | (~self.st.relevant_in[idx] & 0x7FF),
                                loose_callers=budget):
                    old.hit += 1
                    return True
                if add:  # Linux counts a miss only when it would record the new state
                    old.miss += 1
                if old.miss > old.hit * 3 + 3:
                    del lst[k]
        count = len(lst or ()) + self.nprogress.get(idx, 0)
        self.max_states_per_insn = max(self.max_states_per_insn, count)
        if not add:
            return False
        new = cur.copy()
        new.branches = 1
        new.parent = cur.parent
        new.sig = sig
        new.at = idx
        cur.parent = new
        progress.setdefault(sig, []).append(new)
        self.nprogress[idx] = self.nprogress.get(idx, 0) + 1
        self.total_states += 1
        self.peak_states = max(self.peak_states, self.total_states)
        self.prev_jmps = self.jmps_processed
        self.prev_insns = self.insn_processed
        return False

    # -- one instruction -----------------------------------------------------------------------
    def step(self, state: State, idx: int) -> int:
        ins = self.insns[idx]
        cls = ins.cls
        if cls in (BPF_ALU, BPF_ALU64):
            self.check_alu(state, idx, ins)
            return idx + 1
        if cls == BPF_LDX:
            self.check_ldx(state, idx, ins)
            return idx + 1
        if cls == BPF_STX:
            self.check_stx(state, idx, ins)
            return idx + 1
        if cls == BPF_ST:
            if ins.src != 0 or (ins.code & 0xE0) != 0x60:
                raise Reject(errno.EINVAL, "BPF_ST uses reserved fields\n")
            self.check_dst_base(state, ins.dst)
            base = self.read_reg(state, ins.dst)
            self.note_mem(idx, base)
            self.check_mem_access(state, idx, ins.dst, ins.off, SIZES[ins.code & 0x18], True, const_scalar(ins.imm),
                                  is_st=True)
            return idx + 1
        if cls == BPF_LD:
            return self.check_ld(state, idx, ins)
        # jumps (calls and exits count as jumps for the checkpoint heuristic, as in Linux)
        op = ins.code & 0xF0
        self.jmps_processed += 1
        if op == 0x80:
            return self.check_call(state, idx, ins)
        if op == 0x90:
            if ins.code & 0x08 or ins.imm or ins.src or ins.dst or cls == BPF_JMP32:
                raise Reject(errno.EINVAL, "BPF_EXIT uses reserved fields\n")
            return self.check_exit(state, idx)
        if op == 0x00:
            if ins.code & 0x08 or ins.src or ins.dst or (cls == BPF_JMP and ins.imm) or (cls == BPF_JMP32 and ins.off):
                raise Reject(errno.EINVAL, "BPF_JA uses reserved fields\n")
            return jump_target(idx, ins)
        return self.check_cond_jmp(state, idx, ins)

    def check_dst_base(self, state: State, regno: int) -> None:
        if regno > 10:
            raise Reject(errno.EINVAL, f"R{regno} is invalid\n")

    # -- ALU -----------------------------------------------------------------------------------
    def check_alu(self, state: State, idx: int, ins: Insn) -> None:
        is64 = ins.cls == BPF_ALU64
        bits = 64 if is64 else 32
        op = ins.code & 0xF0
        x = bool(ins.code & 0x08)
        if op == 0xD0:  # end / bswap
            if (ins.imm not in (16, 32, 64) or ins.off or ins.src or (is64 and x)):
                raise Reject(errno.EINVAL, "BPF_END uses reserved fields\n")
            self.read_reg(state, ins.dst)
            self.check_dst(ins.dst)
            dst = state.cur.regs[ins.dst]
            size = ins.imm // 8
            if dst.type == SCALAR and not x and not is64:
                nb = B.truncate(dst.b, size)
            elif dst.type == SCALAR and dst.b.is_const:
                v = dst.b.const & ((1 << ins.imm) - 1)
                nb = B.const(int.from_bytes(v.to_bytes(size, "little"), "big"))
            else:
                nb = B.urange(0, (1 << ins.imm) - 1) if ins.imm < 64 else B.unknown()
            self.set_reg(state, ins.dst, scalar(nb))
            return
        if op == 0x80:  # neg
            if x or ins.src or ins.off or ins.imm:
                raise Reject(errno.EINVAL, "BPF_NEG uses reserved fields\n")
            dst = self.read_reg(state, ins.dst)
            self.check_dst(ins.dst)
            if dst.type != SCALAR:
                self.set_reg(state, ins.dst, scalar())
                return
            b = dst.b if is64 else dst.b.sub32()
            self.set_reg(state, ins.dst, scalar(B.neg(b).zext()))
            return
        if op == 0xB0:  # mov
            if x:
                if ins.imm or ins.off not in ((0, 8, 16, 32) if is64 else (0, 8, 16)):
                    raise Reject(errno.EINVAL, "BPF_MOV uses reserved fields\n")
                src = self.read_reg(state, ins.src)
                self.check_dst(ins.dst)
                if ins.off:
                    if src.type != SCALAR:  # root may leak pointers: just an unknown scalar
                        self.set_reg(state, ins.dst, scalar())
                        return
                    b = B.sign_extend(src.b if is64 else src.b.sub32(), ins.off, bits)
                    self.set_reg(state, ins.dst, scalar(b.zext()))
                    return
                if is64:
                    self.id_before_mov(src)
                    self.set_reg(state, ins.dst, src.copy())
                    return
                if src.type != SCALAR:
                    self.set_reg(state, ins.dst, scalar(B.urange(0, B.T.U32)))
                    return
                if src.b.umax <= B.T.U32:
                    self.id_before_mov(src)
                    self.set_reg(state, ins.dst, src.copy())
                    return
                self.set_reg(state, ins.dst, scalar(src.b.sub32().zext()))
                return
            if ins.src or ins.off:
                raise Reject(errno.EINVAL, "BPF_MOV uses reserved fields\n")
            self.check_dst(ins.dst)
            v = ins.imm if is64 else ins.imm & 0xFFFFFFFF
            self.set_reg(state, ins.dst, const_scalar(v))
            return
        if op not in ALU_STR or op in (0xD0,):
            raise Reject(errno.EINVAL, f"invalid BPF_ALU opcode {op:x}\n")
        signed_ok = op in (0x30, 0x90)
        if x:
            if ins.imm or ins.off not in ((0, 1) if signed_ok else (0,)):
                raise Reject(errno.EINVAL, "BPF_ALU uses reserved fields\n")
            src = self.read_reg(state, ins.src)
        else:
            if ins.src or ins.off not in ((0, 1) if signed_ok else (0,)):
                raise Reject(errno.EINVAL, "BPF_ALU uses reserved fields\n")
            src = const_scalar(ins.imm if is64 else ins.imm & 0xFFFFFFFF)
        dst = self.read_reg(state, ins.dst)
        if not x and op in (0x30, 0x90) and ins.imm == 0:
            raise Reject(errno.EINVAL, "div by zero\n")
        if not x and op in (0x60, 0x70, 0xC0) and not 0 <= ins.imm < bits:
            raise Reject(errno.EINVAL, f"invalid shift {ins.imm}\n")
        self.check_dst(ins.dst)
        if dst.type != SCALAR or src.type != SCALAR:
            self.set_reg(state, ins.dst, self.ptr_alu(state, ins, op, is64, dst, src))
            return
        if op in (0x30, 0x90):  # Linux 6.18 tracks no ranges through div/mod: any result, 64 bits
            self.set_reg(state, ins.dst, scalar())
            return
        if is64:
            nb = B.alu(op, dst.b, src.b, ins.off == 1)
            if op in (0x00, 0x10, 0x20, 0x40, 0x50, 0xA0, 0x60) and not nb.is_const:
                # the low half of these 64-bit results is the 32-bit operation on the low halves
                lo = B.alu(op, dst.b.sub32(), src.b.sub32())
                nb = B.sync(nb._replace(r32=(lo.umin, lo.umax, lo.smin, lo.smax)))
        else:
            nb = B.alu(op, dst.b.sub32(), src.b.sub32(), ins.off == 1).zext()
        out = scalar(nb)
        if is64 and op in (0x00, 0x10) and dst.id and not dst.addc and src.b.is_const:
            # "rX = rY; rX += k" stays linked to rY (Linux's BPF_ADD_CONST), once
            k = _s(src.b.const)
            if -(1 << 31) <= k < (1 << 31) and not (op == 0x10 and k == -(1 << 31)):
                out.id, out.addc, out.delta = dst.id, True, (k if op == 0x00 else -k)
        self.set_reg(state, ins.dst, out)

    def id_before_mov(self, src: Reg) -> None:
        """assign_scalar_id_before_mov(): a copied scalar shares an id with its source."""
        if src.type != SCALAR:
            return
        if src.addc:
            src.id, src.addc, src.delta = 0, False, 0
        if not src.id and not src.b.is_const:
            src.id = self.new_id()

    def ptr_alu(self, state: State, ins: Insn, op: int, is64: bool, dst: Reg, src: Reg) -> Reg:
        d = ins.dst
        if dst.type != SCALAR and src.type != SCALAR:
            if op == 0x10:
                return scalar()
            raise Reject(errno.EACCES, f"R{d} pointer {ALU_STR[op]} pointer prohibited\n")
        ptr, off_reg = (dst, src) if dst.type != SCALAR else (src, dst)
        if not is64:
            if op == 0x10:
                return scalar()
            raise Reject(errno.EACCES, f"R{d} 32-bit pointer arithmetic prohibited\n")
        if ptr.null:
            raise Reject(errno.EACCES, f"R{d} pointer arithmetic on {ptr.type_str()} prohibited, null-check it first\n")
        if ptr.type in (CONST_PTR_TO_MAP, PTR_TO_PACKET_END, PTR_TO_FUNC) or ptr.ref and ptr.type != PTR_TO_MEM:
            raise Reject(errno.EACCES, f"R{d} pointer arithmetic on {ptr.type_str()} prohibited\n")
        for r in (off_reg, ptr):
            self.sane_offset(r, ptr.type_str())
        if op in (0x40, 0x50, 0xA0):
            raise Reject(errno.EACCES, f"R{d} bitwise operator {ALU_STR[op]} on pointer prohibited\n")
        if op not in (0x00, 0x10):
            raise Reject(errno.EACCES, f"R{d} pointer arithmetic with {ALU_STR[op]} operator prohibited\n")
        if op == 0x10 and dst.type == SCALAR:
            raise Reject(errno.EACCES, f"R{d} tried to subtract pointer from scalar\n")
        out = ptr.copy()
        k = off_reg.b
        if k.is_const:
            v = _s(k.const)
            if op == 0x10:
                v = -v
            out.off += v
            return out
        if op == 0x10:
            k = B.neg(k)
        out.b = B.alu(0x00, out.b, k)
        if out.type in PKT_TYPES:
            out.id = self.new_id()
            out.rng = 0
        return out

    def sane_offset(self, reg: Reg, ptr_type: str) -> None:
        """check_reg_sane_offset(): operands of pointer arithmetic must stay far from overflow."""
        b = reg.b
        if b.is_const and abs(_s(b.const)) >= MAX_VAR_OFF:
            raise Reject(errno.EINVAL, f"math between {ptr_type} pointer and {_s(b.const)} is not allowed\n")
        if abs(reg.off) >= MAX_VAR_OFF:
            raise Reject(errno.EINVAL, f"{ptr_type} pointer offset {reg.off} is not allowed\n")
        if b.smin == -(1 << 63):
            raise Reject(errno.EINVAL, f"math between {ptr_type} pointer and register with unbounded min value is "
                                       "not allowed\n")
        if abs(b.smin) >= MAX_VAR_OFF:
            raise Reject(errno.EINVAL, f"value {b.smin} makes {ptr_type} pointer be out of bounds\n")

    # -- loads and stores ------------------------------------------------------------------------
    def check_ldx(self, state: State, idx: int, ins: Insn) -> None:
        base = self.read_reg(state, ins.src)
        self.check_dst(ins.dst)
        self.note_mem(idx, base)
        size = SIZES[ins.code & 0x18]
        val = self.check_mem_access(state, idx, ins.src, ins.off, size, False, None)
        if ins.code & 0xE0 == 0x80 and val.type == SCALAR:
            val = scalar(B.sign_extend(val.b, 8 * size))
        self.set_reg(state, ins.dst, val)

    def check_stx(self, state: State, idx: int, ins: Insn) -> None:
        mode = ins.code & 0xE0
        size = SIZES[ins.code & 0x18]
        if mode == 0xC0:
            self.check_atomic(state, idx, ins, size)
            return
        if mode != 0x60 or ins.imm:
            raise Reject(errno.EINVAL, "BPF_STX uses reserved fields\n")
        val = self.read_reg(state, ins.src)
        self.read_reg(state, ins.dst)
        base = state.cur.regs[ins.dst]
        self.note_mem(idx, base)
        self.check_mem_access(state, idx, ins.dst, ins.off, size, True, val)

    def check_atomic(self, state: State, idx: int, ins: Insn, size: int) -> None:
        op = ins.imm
        if op not in (0x00, 0x40, 0x50, 0xA0, 0x01, 0x41, 0x51, 0xA1, 0xE1, 0xF1, 0x100, 0x110):
            raise Reject(errno.EINVAL, f"BPF_ATOMIC uses invalid atomic opcode {op:02x}\n")
        if op == 0x100:  # load-acquire: dst = *(src + off)
            self.check_ldx(state, idx, ins._replace(code=0x61 | (ins.code & 0x18)))
            return
        if op == 0x110:  # store-release: *(dst + off) = src
            self.check_stx(state, idx, ins._replace(code=0x63 | (ins.code & 0x18), imm=0))
            return
        if size not in (4, 8):
            raise Reject(errno.EINVAL, "invalid atomic operand size\n")
        self.read_reg(state, ins.src)
        base = self.read_reg(state, ins.dst)
        if op == 0xF1:
            self.read_reg(state, 0)
        if base.type in (PTR_TO_CTX, PTR_TO_PACKET, PTR_TO_PACKET_META):
            raise Reject(errno.EACCES, f"BPF_ATOMIC stores into R{ins.dst} {base.type_str()} is not allowed\n")
        self.note_mem(idx, base)
        old = self.check_mem_access(state, idx, ins.dst, ins.off, size, False, None)
        self.check_mem_access(state, idx, ins.dst, ins.off, size, True, scalar())
        if op == 0xF1:
            self.set_reg(state, 0, scalar(old.b) if old.type == SCALAR else scalar())
        elif op & 1:
            self.check_dst(ins.src)
            self.set_reg(state, ins.src, scalar(old.b) if old.type == SCALAR else scalar())

    def check_mem_access(self, state: State, idx: int, regno: int, off: int, size: int, write: bool,
                         val: Reg | None, is_st: bool = False) -> Reg:
        """Check one load/store through R``regno``; return the loaded value (a scalar for stores)."""
        reg = state.cur.regs[regno]
        t = reg.type
        if t == PTR_TO_STACK:
            return self.stack_access(state, regno, reg, off, size, write, val, is_st)
        if reg.null or t in (SCALAR, CONST_PTR_TO_MAP, PTR_TO_PACKET_END, PTR_TO_FUNC, NOT_INIT):
            raise Reject(errno.EACCES, f"R{regno} invalid mem access '{reg.type_str()}'\n")
        sized = scalar(B.urange(0, (1 << (8 * size)) - 1)) if size < 8 else scalar()
        if t == PTR_TO_CTX:
            self.check_ptr_off(regno, reg)
            if not reg.b.is_const or reg.b.const:
                raise Reject(errno.EACCES, f"variable ctx access var_off={_tn(reg.b)} off={off} size={size}\n")
            acc = ctx_layouts.ctx_access(self.prog_type, off, size, write, self.arch)
            if not acc.ok:
                raise Reject(errno.EACCES, f"invalid bpf_context access off={off} size={size}\n")
            if write and val is not None and val.type != SCALAR:
                raise Reject(errno.EACCES, f"R{regno} leaks addr into ctx\n")
            if acc.result != "scalar" and not write:
                out = Reg(acc.result)
                self.aux.setdefault(idx, {})["ctx_field"] = acc.result
                return out
            return sized
        if t == PTR_TO_MAP_VALUE:
            m = reg.map
            vs = getattr(m, "value_size", 0)
            if write and getattr(m, "map_flags", 0) & BPF_F_RDONLY_PROG:
                raise Reject(errno.EACCES, f"write into map forbidden, value_size={vs} off={reg.off + off} size={size}\n")
            self.region_check(regno, reg, off, size, vs, lambda o: f"invalid access to map value, value_size={vs} "
                                                                    f"off={o} size={size}\n")
            if not write and reg.b.is_const:
                known = self.rdonly_value(m, reg.off + off + reg.b.const, size)
                if known is not None:
                    return const_scalar(known)
            return sized
        if t == PTR_TO_MEM:
            ms = reg.mem_size
            self.region_check(regno, reg, off, size, ms, lambda o: f"invalid access to memory, mem_size={ms} "
                                                                    f"off={o} size={size}\n")
            return sized
        if t in PKT_TYPES:
            lo = reg.off + off + reg.b.smin
            hi = reg.off + off + reg.b.umax + size
            if lo < 0 or hi > reg.rng or reg.b.umax >= MAX_VAR_OFF:
                o = reg.off + off
                raise Reject(errno.EACCES, f"invalid access to packet, off={o} size={size}, R{regno}(id={reg.id},"
                                           f"off={o},r={reg.rng})\n" + f"R{regno} offset is outside of the packet\n")
            return sized
        raise Reject(errno.EACCES, f"R{regno} invalid mem access '{reg.type_str()}'\n")

    def check_ptr_off(self, regno: int, reg: Reg) -> None:
        """__check_ptr_off_reg() for pointers that must not be moved (ctx)."""
        if reg.off < 0:
            raise Reject(errno.EACCES, f"negative offset {reg.type_str()} ptr R{regno} off={reg.off} disallowed\n")
        if reg.off:
            raise Reject(errno.EACCES, f"dereference of modified {reg.type_str()} ptr R{regno} off={reg.off} "
                                       "disallowed\n")

    def region_check(self, regno: int, reg: Reg, off: int, size: int, limit: int, msg) -> None:
        base = reg.off + off
        b = reg.b
        if b.is_const:
            o = base + _s(b.const)
            if o < 0 or size > limit or o > limit - size:
                raise Reject(errno.EACCES, msg(o) + f"R{regno} min value is outside of the allowed memory range\n")
            return
        if b.smin < 0 and (base + b.smin < 0):
            raise Reject(errno.EACCES, f"R{regno} min value is negative, either use unsigned index or do a if "
                                       "(index >=0) check.\n")
        lo = base + b.smin
        if lo < 0 or lo > limit - size:
            raise Reject(errno.EACCES, msg(lo) + f"R{regno} min value is outside of the allowed memory range\n")
        if b.umax >= MAX_VAR_OFF:
            raise Reject(errno.EACCES, f"R{regno} unbounded memory access, make sure to bounds check any such access\n")
        hi = base + b.umax
        if hi > limit - size:
            raise Reject(errno.EACCES, msg(hi) + f"R{regno} max value is outside of the allowed memory range\n")

    def rdonly_value(self, m, off: int, size: int) -> int | None:
        if not (getattr(m, "map_flags", 0) & BPF_F_RDONLY_PROG and getattr(m, "frozen", False)):
            return None
        try:
            data = m.sys_lookup(b"\0\0\0\0", 0)
        except Exception:  # noqa: BLE001 - any map without a plain lookup gives no constant
            return None
        if off < 0 or off + size > len(data):
            return None
        return int.from_bytes(data[off:off + size], "little")

    def frame_of(self, state: State, reg: Reg) -> Frame:
        return state.frames[reg.frame]

    def stack_access(self, state: State, regno: int, reg: Reg, off: int, size: int, write: bool, val: Reg | None,
                     is_st: bool) -> Reg:
        frame = self.frame_of(state, reg)
        what = " write to" if write else " read from"
        if reg.b.is_const:
            abs_off = reg.off + off + _s(reg.b.const)
            if abs_off % size:
                raise Reject(errno.EACCES, f"misaligned stack access off {_tn(reg.b)}+{reg.off}+{off} size {size}\n")
            if abs_off < -MAX_STACK or abs_off + size > 0:
                raise Reject(_stack_errno(abs_off), f"invalid{what} stack R{regno} off={abs_off} size={size}\n")
            self.note_depth(frame, -abs_off)
            start = abs_off + MAX_STACK
            self.scratched_slots.add(start & ~7)
            if write:
                self.stack_write(frame, start, size, val, is_st)
                return scalar()
            return self.stack_read(frame, regno, start, size)
        if reg.b.smax >= MAX_VAR_OFF or reg.b.smin <= -MAX_VAR_OFF:
            raise Reject(errno.EACCES, f"invalid unbounded variable-offset{what} stack R{regno}\n")
        lo = reg.off + off + reg.b.smin
        hi = reg.off + off + reg.b.smax
        if lo < -MAX_STACK or hi + size > 0:
            raise Reject(_stack_errno(lo), f"invalid variable-offset{what} stack R{regno} var_off={_tn(reg.b)} "
                                           f"off={reg.off + off} size={size}\n")
        self.note_depth(frame, -lo)
        for p in range(lo + MAX_STACK, hi + size + MAX_STACK):
            if write:
                self.drop_spill_at(frame, p)
                frame.slots[p] = STACK_MISC
        return scalar(B.urange(0, (1 << (8 * size)) - 1)) if size < 8 else scalar()

    def note_depth(self, frame: Frame, depth: int) -> None:
        sp = frame.subprog
        if depth > self.stack_depth.get(sp, 0):
            self.stack_depth[sp] = depth

    def drop_spill_at(self, frame: Frame, p: int) -> None:
        for start, (sz, _r) in list(frame.spills.items()):
            if start <= p < start + sz:
                del frame.spills[start]
                for q in range(start, start + sz):
                    if frame.slots[q] == STACK_SPILL:
                        frame.slots[q] = STACK_MISC

    def stack_write(self, frame: Frame, start: int, size: int, val: Reg | None, is_st: bool) -> None:
        if val is not None and val.type not in (SCALAR, NOT_INIT) and size != 8:
            raise Reject(errno.EACCES, "invalid size of register spill\n")
        for p in range(start, start + size):
            self.drop_spill_at(frame, p)
        if val is not None and start % 8 == 0:
            # Linux spills a register (or a BPF_ST immediate) written at a slot boundary, any size
            if val.type == SCALAR and size < 8 and not is_st and not val.b.is_const and val.b.umax >> (8 * size):
                sv = val.copy()  # Linux keeps the whole register (a fill truncates it); no link
                sv.id, sv.addc, sv.delta = 0, False, 0
            else:
                if not is_st:
                    self.id_before_mov(val)  # the spilled copy stays linked to the register
                sv = val.copy()
            frame.spills[start] = (size, sv)
            for p in range(start, start + size):
                frame.slots[p] = STACK_SPILL
            return
        zero = val is not None and val.type == SCALAR and val.b.is_const and val.b.const == 0
        for p in range(start, start + size):
            frame.slots[p] = STACK_ZERO if zero else STACK_MISC

    def stack_read(self, frame: Frame, regno: int, start: int, size: int) -> Reg:
        sp = frame.spills.get(start)
        if sp is not None:
            ssize, sreg = sp
            if ssize == size:
                if size < 8 and sreg.type == SCALAR:
                    return scalar(B.truncate(sreg.b, size)) if not sreg.b.is_const else const_scalar(
                        sreg.b.const & ((1 << (8 * size)) - 1))
                return sreg.copy()
            if sreg.type != SCALAR:
                raise Reject(errno.EACCES, "invalid size of register fill\n")
            if size < ssize:
                return scalar(B.truncate(sreg.b, size))
        for start_, (sz, r) in frame.spills.items():
            if start_ < start + size and start < start_ + sz and r.type != SCALAR:
                raise Reject(errno.EACCES, "invalid size of register fill\n")
        bytes_ = frame.slots[start:start + size]
        if all(c == STACK_ZERO for c in bytes_):
            return const_scalar(0)
        return scalar(B.urange(0, (1 << (8 * size)) - 1)) if size < 8 else scalar()

    # -- LD_IMM64 / LD_ABS -----------------------------------------------------------------------
    def check_ld(self, state: State, idx: int, ins: Insn) -> int:
        if ins.code == LD_IMM64:
            self.check_dst(ins.dst)
            ref = self.map_refs.get(idx)
            if ref is not None:
                if ref.value_off is None:
                    r = Reg(CONST_PTR_TO_MAP)
                    r.map = ref.map
                else:
                    r = Reg(PTR_TO_MAP_VALUE, off=ref.value_off)
                    r.map = ref.map
                self.set_reg(state, ins.dst, r)
                return idx + 2
            if ins.src == BPF_PSEUDO_FUNC:
                r = Reg(PTR_TO_FUNC)
                r.subprog = idx + ins.imm + 1
                self.set_reg(state, ins.dst, r)
                return idx + 2
            if ins.src == BPF_PSEUDO_BTF_ID:
                self.set_reg(state, ins.dst, scalar())
                return idx + 2
            hi = self.insns[idx + 1].imm & 0xFFFFFFFF
            self.set_reg(state, ins.dst, const_scalar((hi << 32) | (ins.imm & 0xFFFFFFFF)))
            return idx + 2
        # LD_ABS / LD_IND
        if self.prog_type not in (ProgType.SOCKET_FILTER, ProgType.SCHED_CLS, ProgType.SCHED_ACT,
                                  ProgType.CGROUP_SKB):
            raise Reject(errno.EINVAL, "BPF_LD_[ABS|IND] instructions not allowed for this program type\n")
        mode = ins.code & 0xE0
        if ins.dst or ins.off or (ins.code & 0x18) == 0x18 or (mode == 0x20 and ins.src):
            raise Reject(errno.EINVAL, "BPF_LD_[ABS|IND] uses reserved fields\n")
        r6 = self.read_reg(state, 6)
        if mode == 0x40:
            self.read_reg(state, ins.src)
        if r6.type != PTR_TO_CTX:
            raise Reject(errno.EINVAL, "at the time of BPF_LD_ABS|IND R6 != pointer to skb\n")
        for r in range(1, 6):
            state.cur.regs[r] = Reg()
        self.set_reg(state, 0, scalar())
        return idx + 1

    # -- conditional jumps -----------------------------------------------------------------------
    def check_cond_jmp(self, state: State, idx: int, ins: Insn) -> int:
        op = ins.code & 0xF0
        is32 = ins.cls == BPF_JMP32
        if op not in B.NEGATE:
            raise Reject(errno.EINVAL, f"invalid BPF_JMP/JMP32 opcode {op:x}\n")
        if ins.code & 0x08 and ins.imm or not ins.code & 0x08 and ins.src:
            raise Reject(errno.EINVAL, "BPF_JMP/JMP32 uses reserved fields\n")
        dst = self.read_reg(state, ins.dst)  # Linux 6.18 checks dst before src here
        if ins.code & 0x08:
            src = self.read_reg(state, ins.src)
        else:
            src = const_scalar(ins.imm if not is32 else ins.imm & 0xFFFFFFFF)
        target = jump_target(idx, ins)
        taken = self.branch_taken(op, dst, src, is32)
        if taken == 1:
            return target
        if taken == 0:
            return idx + 1
        other = self.push(state, target, idx)
        # refine: ``other`` holds (dst op src), ``state`` holds !(dst op src)
        ok_t = self.refine(other, ins, op, True, is32)
        ok_f = self.refine(state, ins, op, False, is32)
        if not ok_t:
            self.drop_pending(other)
        if not ok_f:
            raise _PathDone()
        return idx + 1

    def drop_pending(self, s: State) -> None:
        for i in range(len(self.pending) - 1, -1, -1):
            if self.pending[i][0] is s:
                del self.pending[i]
                if s.parent is not None:
                    s.parent.branches -= 1
                return

    def branch_taken(self, op: int, dst: Reg, src: Reg, is32: bool) -> int:
        if dst.type == SCALAR and src.type == SCALAR:
            a, b = (dst.b.sub32(), src.b.sub32()) if is32 else (dst.b, src.b)
            return B.branch_taken(op, a, b)
        ptr, other = (dst, src) if dst.type != SCALAR else (src, dst)
        # reg_not_null(): only these pointer kinds are known non-NULL (not the stack, ctx or packet)
        if ptr.type in (PTR_TO_MAP_VALUE, PTR_TO_MEM, "map_key") and other.type == SCALAR and other.b.is_const \
                and other.b.const == 0 and not ptr.null and op in (B.JEQ, B.JNE) and not is32:
            return 0 if op == B.JEQ else 1
        return -1

    def refine(self, state: State, ins: Insn, op: int, holds: bool, is32: bool) -> bool:
        """Narrow ``state`` by the branch outcome; False when that outcome is impossible."""
        regs = state.cur.regs
        dst = regs[ins.dst]
        src = regs[ins.src] if ins.code & 0x08 else const_scalar(ins.imm if not is32 else ins.imm & 0xFFFFFFFF)
        if dst.type == SCALAR and src.type == SCALAR:
            fn = B.refine if holds else B.refine_not
            if is32:
                a32, b32 = fn(op, dst.b.sub32(), src.b.sub32())
                if a32.empty or b32.empty:
                    return False
                na = _apply32(dst.b, a32)
                nb = _apply32(src.b, b32)
            else:
                na, nb = fn(op, dst.b, src.b)
            if na.empty or nb.empty or na.sub32().empty or nb.sub32().empty:
                return False
            self.update_scalar(state, ins.dst, na)
            if ins.code & 0x08:
                self.update_scalar(state, ins.src, nb)
            return True
        if is32:
            return True
        # NULL checks of maybe-null pointers against 0
        eq = (op == B.JEQ) == holds
        if op in (B.JEQ, B.JNE):
            for ptr_no, other in ((ins.dst, src), (ins.src if ins.code & 0x08 else -1, dst)):
                if ptr_no < 0:
                    continue
                ptr = regs[ptr_no]
                if ptr.null and other.type == SCALAR and other.b.is_const and other.b.const == 0:
                    self.mark_null(state, ptr.id, eq)
                    return True
        # packet pointer against pkt_end
        if ins.code & 0x08:
            self.pkt_compare(state, op, dst, src, holds)
        return True

    def update_scalar(self, state: State, regno: int, b: B.Bounds) -> None:
        r = state.cur.regs[regno]
        r.b = b
        if r.id:  # sync_linked_regs(): copies share the range, "rX = rY + k" ones shifted by k
            for other in state.all_regs():
                if other is r or other.type != SCALAR or other.id != r.id:
                    continue
                if other.delta == r.delta and other.addc == r.addc:
                    other.b = b
                else:
                    other.b = B.alu(0x00, b, B.const(other.delta - r.delta))

    def mark_null(self, state: State, pid: int, is_null: bool) -> None:
        if not pid:
            return
        for f in state.frames:
            for i, r in enumerate(f.regs):
                if r.null and r.id == pid:
                    f.regs[i] = self._nulled(r, is_null)
            for start, (size, r) in list(f.spills.items()):
                if r.null and r.id == pid:
                    f.spills[start] = (size, self._nulled(r, is_null))
        if is_null and pid in state.refs:
            del state.refs[pid]

    def _nulled(self, r: Reg, is_null: bool) -> Reg:
        if is_null:
            return const_scalar(0)
        n = r.copy()
        n.null = False
        n.id = 0
        return n

    def pkt_compare(self, state: State, op: int, dst: Reg, src: Reg, holds: bool) -> None:
        # normalise to "pkt <cmp> pkt_end"
        if dst.type in PKT_TYPES and src.type == PTR_TO_PACKET_END:
            pkt, cmp = dst, op
        elif src.type in PKT_TYPES and dst.type == PTR_TO_PACKET_END:
            pkt, cmp = src, B.FLIP[op]
        else:
            return
        # pkt > end / pkt >= end: the false side means [pkt .. off) is inside the packet
        safe = None
        if cmp == B.JGT and not holds:
            safe = pkt.off
        elif cmp == B.JGE and not holds:
            safe = pkt.off - 1
        elif cmp == B.JLE and holds:
            safe = pkt.off
        elif cmp == B.JLT and holds:
            safe = pkt.off - 1
        if pkt.type == PTR_TO_PACKET:  # mark_pkt_end(): the compared pointer is at or past the end
            if (cmp == B.JGT and holds) or (cmp == B.JLE and not holds):
                pkt.rng = -2  # BEYOND_PKT_END
            elif (cmp == B.JGE and holds) or (cmp == B.JLT and not holds):
                pkt.rng = -1  # AT_PKT_END
        if safe is None or safe <= 0 or not pkt.b.is_const and pkt.b.umax >= MAX_VAR_OFF:
            return
        for r in list(state.all_regs()):
            if r.type == pkt.type and r.id == pkt.id:
                r.rng = max(r.rng, safe)
        for f in state.frames:
            for _size, r in f.spills.values():
                if r.type == pkt.type and r.id == pkt.id:
                    r.rng = max(r.rng, safe)

    # -- calls and exit --------------------------------------------------------------------------
    def check_call(self, state: State, idx: int, ins: Insn) -> int:
        if ins.code & 0x08 or ins.src not in (0, BPF_PSEUDO_CALL, 2) or ins.off or ins.dst or ins.cls == BPF_JMP32:
            raise Reject(errno.EINVAL, "BPF_CALL uses reserved fields\n")
        if ins.src == BPF_PSEUDO_CALL:
            return self.enter_subprog(state, idx, idx + ins.imm + 1, callback=False)
        return self.check_helper(state, idx, ins.imm)

    def enter_subprog(self, state: State, idx: int, target: int, callback: bool, args: list[Reg] | None = None,
                      show: bool = True) -> int:
        if len(state.frames) >= MAX_CALL_FRAMES:
            raise Reject(errno.E2BIG, f"the call stack of {len(state.frames) + 1} frames is too deep\n")
        caller = state.cur
        callee_sp = self.st.subprog_starts.index(target)
        self.callees.setdefault(caller.subprog, set()).add(callee_sp)
        f = Frame(len(state.frames), callee_sp, idx)
        f.callback = callback
        if args is None:
            for r in range(1, 6):
                f.regs[r] = caller.regs[r].copy()
            for r in range(0, 6):
                caller.regs[r] = Reg()
        else:
            for r, a in enumerate(args, start=1):
                f.regs[r] = a
        state.frames.append(f)
        if not show:
            return target
        if self.trace:
            self.verbose(f"caller:\n {self.fmt_state(caller, True, state.refs)}\ncallee:\n "
                         f"{self.fmt_state(f, True, state.refs)}\n")
            self.insn_line_end = -1
        self.scratched_regs = (1 << 11) - 1
        return target

    def check_exit(self, state: State, idx: int) -> int:
        r0 = state.cur.regs[0]
        self.scratch(0)
        if len(state.frames) > 1:
            if r0.type == NOT_INIT:
                raise Reject(errno.EACCES, "R0 !read_ok\n")
            callee = state.frames.pop()
            if r0.type == PTR_TO_STACK:
                raise Reject(errno.EINVAL, "cannot return stack pointer to the caller\n")
            if callee.callback:
                if r0.type != SCALAR:
                    raise Reject(errno.EINVAL, f"At callback return the register R0 is not a known value "
                                               f"({r0.type_str()})\n")
                if r0.b.smin < 0 or r0.b.smax > 1:
                    raise Reject(errno.EINVAL, f"At callback return the register R0 has{_range_words(r0.b)} should "
                                               "have been in [0, 1]\n")
                raise _PathDone()
            state.cur.regs[0] = r0
            if self.trace:
                self.verbose(f"returning from callee:\n {self.fmt_state(callee, True, state.refs)}\nto caller at "
                             f"{callee.callsite + 1}:\n {self.fmt_state(state.cur, True, state.refs)}\n")
                self.insn_line_end = -1
            self.scratched_regs = 0
            return callee.callsite + 1
        if state.refs:
            rid, at = next(iter(state.refs.items()))
            raise Reject(errno.EINVAL, f"Unreleased reference id={rid} alloc_insn={at}\n"
                                       "BPF_EXIT instruction in main prog would lead to reference leak\n")
        if r0.type == NOT_INIT:
            raise Reject(errno.EACCES, "R0 !read_ok\n")
        self.check_return_code(r0)
        raise _PathDone()

    def check_return_code(self, r0: Reg) -> None:
        rng = RET_RANGES.get(self.prog_type)
        if rng is None:
            return
        if self.prog_type == ProgType.CGROUP_SKB and self.attach_type == CGROUP_INET_EGRESS:
            rng = (0, 3)  # egress may also ask for congestion notification
        if r0.type != SCALAR:
            raise Reject(errno.EINVAL, f"At program exit the register R0 is not a known value ({r0.type_str()})\n")
        if r0.b.smin < rng[0] or r0.b.smax > rng[1]:
            raise Reject(errno.EINVAL, f"At program exit the register R0 has{_range_words(r0.b)} "
                                       f"should have been in [{rng[0]}, {rng[1]}]\n")

    def check_helper(self, state: State, idx: int, func_id: int) -> int:
        name = HP.helper_name(func_id)
        if func_id < 0 or func_id >= HP.FUNC_MAX_ID:
            raise Reject(errno.EINVAL, f"invalid func {name}#{func_id}\n")
        proto = HP.helper_proto(func_id, self.prog_type)
        if proto is None:
            raise Reject(errno.EINVAL, f"program of this type cannot use helper {name}#{func_id}\n")
        if proto.gpl_only and not self.gpl:
            raise Reject(errno.EINVAL, "cannot call GPL-restricted function from non-GPL compatible program\n")
        self.aux.setdefault(idx, {})["helper"] = func_id
        regs = state.cur.regs
        meta: dict = {}
        args = proto.args
        for i, kind in enumerate(args):
            if kind == HP.ARG_DONTCARE:
                break
            regno = i + 1
            reg = self.read_reg(state, regno)
            self.check_arg(state, regno, reg, kind, args[i + 1] if i + 1 < len(args) else None, meta, proto)
        # map / helper compatibility
        m = meta.get("map")
        if m is not None:
            mt = getattr(m, "map_type", None)
            allowed = HELPER_MAPS.get(func_id)
            if func_id == int(HP.H.tail_call) and mt != MapType.PROG_ARRAY:
                raise Reject(errno.EINVAL, "expected prog array map for tail call")  # Linux prints no newline
            if (allowed is not None and mt not in allowed) or (mt in MAP_HELPERS and func_id not in MAP_HELPERS[mt]):
                raise Reject(errno.EINVAL, f"cannot pass map_type {int(mt)} into func {name}#{func_id}\n")
        if func_id == int(HP.H.loop):
            return self.call_loop(state, idx, regs)
        # return value
        ret = Reg()
        if proto.ret == HP.RET_INTEGER:
            ret = scalar()
        elif proto.ret == HP.RET_PTR_TO_MAP_VALUE_OR_NULL:
            if getattr(m, "map_type", None) in (MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS):
                ret = Reg(CONST_PTR_TO_MAP)  # map-in-map: the inner map (shaped like inner_meta)
                ret.map = getattr(m, "inner_meta", None)
            else:
                ret = Reg(PTR_TO_MAP_VALUE)
                ret.map = m
            ret.null = True
            ret.id = self.new_id()
            if func_id == int(HP.H.map_lookup_elem) and getattr(m, "map_type", None) in (MapType.ARRAY,
                                                                                        MapType.PERCPU_ARRAY):
                key = self.const_map_key(state, regs[2], getattr(m, "key_size", 0))
                if key is not None and key < getattr(m, "max_entries", 0):
                    ret.null, ret.id = False, 0  # an array slot named by a constant key always exists
        elif proto.ret == HP.RET_PTR_TO_MEM_OR_NULL:
            ret = Reg(PTR_TO_MEM)
            ret.null = True
            ret.ringbuf = True
            ret.mem_size = meta.get("alloc_size", 0)
            self.new_id()
            ret.id = ret.ref = self.new_id()
            state.refs[ret.id] = idx
        if func_id in STR_HELPERS and "size_max" in meta:
            # do_refine_retval_range(): a negative errno or at most the buffer's size
            ret = scalar(B.sync(B.unknown()._replace(smin=-4095, smax=meta["size_max"])))
        if func_id == int(HP.H.get_smp_processor_id):
            ret = scalar(B.urange(0, max(self.ncpus, 1) - 1))  # Linux bounds it by nr_cpu_ids
        rel = meta.get("release")
        if rel:
            state.refs.pop(rel, None)
            for f in state.frames:
                for i, r in enumerate(f.regs):
                    if r.ref == rel:
                        f.regs[i] = scalar()
                for start, (size, r) in list(f.spills.items()):
                    if r.ref == rel:
                        f.spills[start] = (size, scalar())
        if func_id in HP.CHANGES_PKT_DATA:
            for f in state.frames:
                for i, r in enumerate(f.regs):
                    if r.type in PKT_TYPES or r.type == PTR_TO_PACKET_END:
                        f.regs[i] = scalar()
        for r in range(1, 6):
            regs[r] = Reg()
        self.set_reg(state, 0, ret)
        return idx + 1

    def const_map_key(self, state: State, reg: Reg, key_size: int) -> int | None:
        """get_constant_map_key(): the key a stack pointer names, when zeroed or a spilled constant."""
        if reg.type != PTR_TO_STACK or not reg.b.is_const or key_size <= 0:
            return None
        frame = self.frame_of(state, reg)
        start = reg.off + _s(reg.b.const) + MAX_STACK
        if not 0 <= start <= MAX_STACK - key_size:
            return None
        if all(c == STACK_ZERO for c in frame.slots[start:start + key_size]):
            return 0
        sp = frame.spills.get(start)
        if sp is None or sp[0] != key_size or sp[1].type != SCALAR or not sp[1].b.is_const:
            return None
        return sp[1].b.const & ((1 << (8 * key_size)) - 1)

    def call_loop(self, state: State, idx: int, regs: list[Reg]) -> int:
        """The callback runs as a pushed path of its own (R1 the index, R2 the ctx argument), as Linux
        does; the caller goes on with R0 unknown."""
        cb = regs[2]
        ctx_arg = regs[3].copy()
        other = self.push(state, cb.subprog, idx)
        self.enter_subprog(other, idx, cb.subprog, callback=True, args=[scalar(), ctx_arg], show=False)
        for r in range(1, 6):
            regs[r] = Reg()
        self.set_reg(state, 0, scalar())
        return idx + 1

    def check_arg(self, state: State, regno: int, reg: Reg, kind: str, next_kind: str | None, meta: dict,
                  proto) -> None:
        def mismatch(expected: str):
            raise Reject(errno.EACCES, f"R{regno} type={reg.type_str()} expected={expected}\n")

        if kind == HP.ARG_ANYTHING:
            return
        if kind == HP.ARG_CONST_MAP_PTR:
            if reg.type != CONST_PTR_TO_MAP:
                mismatch("map_ptr")
            meta["map"] = reg.map
            return
        if kind == HP.ARG_PTR_TO_CTX:
            if reg.type != PTR_TO_CTX:
                mismatch("ctx")
            self.check_ptr_off(regno, reg)
            return
        if kind in (HP.ARG_CONST_SIZE, HP.ARG_CONST_SIZE_OR_ZERO, HP.ARG_CONST_ALLOC_SIZE_OR_ZERO):
            if reg.type != SCALAR:
                mismatch("scalar")
            if kind == HP.ARG_CONST_ALLOC_SIZE_OR_ZERO:
                if not reg.b.is_const:
                    raise Reject(errno.EACCES, f"R{regno} is not a known constant'\n")
                meta["alloc_size"] = reg.b.const
                return
            self.check_size(state, regno, reg, kind == HP.ARG_CONST_SIZE_OR_ZERO, meta)
            return
        if kind == HP.ARG_PTR_TO_RINGBUF_MEM:
            if reg.type != PTR_TO_MEM or not reg.ringbuf or reg.null:
                mismatch("ringbuf_mem")
            if reg.off or not reg.b.is_const or reg.b.const:
                raise Reject(errno.EACCES, f"R{regno} must have zero offset when passed to release func\n")
            if not reg.ref or reg.ref not in state.refs:
                raise Reject(errno.EINVAL, f"R{regno} must be referenced when passed to release function\n")
            meta["release"] = reg.ref
            return
        if kind == HP.ARG_PTR_TO_FUNC:
            if reg.type != PTR_TO_FUNC:
                mismatch("func")
            return
        if kind == HP.ARG_PTR_TO_STACK_OR_NULL:
            if reg.type == SCALAR and reg.b.is_const and reg.b.const == 0:
                return
            if reg.type != PTR_TO_STACK:
                mismatch("fp")
            return
        if kind == HP.ARG_PTR_TO_CONST_STR:
            if reg.type != PTR_TO_MAP_VALUE or reg.null:
                mismatch("map_value")
            return
        # memory arguments
        nullable = kind == HP.ARG_PTR_TO_MEM_OR_NULL
        if nullable and reg.type == SCALAR and reg.b.is_const and reg.b.const == 0:
            meta["mem_null"] = True
            return
        if reg.type not in MEM_ACCEPT or reg.null:
            mismatch(MEM_EXPECTED)
        if kind == HP.ARG_PTR_TO_MAP_KEY:
            m = meta.get("map")
            self.helper_mem(state, regno, reg, getattr(m, "key_size", 0), False)
            return
        if kind == HP.ARG_PTR_TO_MAP_VALUE:
            m = meta.get("map")
            self.helper_mem(state, regno, reg, getattr(m, "value_size", 0), False)
            return
        meta["mem_reg"] = (regno, reg, kind == HP.ARG_PTR_TO_UNINIT_MEM)

    def check_size(self, state: State, regno: int, reg: Reg, zero_ok: bool, meta: dict) -> None:
        b = reg.b
        mem = meta.pop("mem_reg", None)
        if b.smin < 0:
            raise Reject(errno.EACCES, f"R{regno} min value is negative, either use unsigned or 'var &= const'\n")
        if b.umin == 0 and not zero_ok:
            raise Reject(errno.EACCES, f"R{regno} invalid zero-sized read: u64=[{b.umin},{b.umax}]\n")
        if b.umax >= MAX_VAR_OFF:
            raise Reject(errno.EACCES, f"R{regno} unbounded memory access, use 'var &= const' or 'if (var < const)'\n")
        meta["size_max"] = b.umax
        if mem is None:
            return
        mregno, mreg, write = mem
        self.helper_mem(state, mregno, state.cur.regs[mregno], b.umax, write)

    def helper_mem(self, state: State, regno: int, reg: Reg, size: int, write: bool) -> None:
        """Check (and for a write, initialise) ``size`` bytes at R``regno`` for a helper (size 0: the bounds)."""
        t = reg.type
        if t == PTR_TO_STACK:
            frame = self.frame_of(state, reg)
            what = " write to" if write else " read from"
            lo = reg.off + reg.b.smin
            hi = reg.off + reg.b.smax
            if lo < -MAX_STACK or hi + size > 0:
                code = _stack_errno(lo)
                if reg.b.is_const:
                    raise Reject(code, f"invalid{what} stack R{regno} off={lo} size={size}\n")
                raise Reject(code, f"invalid variable-offset{what} stack R{regno} var_off={_tn(reg.b)} "
                                   f"off={reg.off} size={size}\n")
            self.note_depth(frame, -lo)
            if write:
                for p in range(lo + MAX_STACK, hi + size + MAX_STACK):
                    self.drop_spill_at(frame, p)
                    frame.slots[p] = STACK_MISC
                    if frame is state.cur:
                        self.scratched_slots.add(p & ~7)
            else:
                for p in range(lo + MAX_STACK, hi + size + MAX_STACK):
                    if frame.slots[p] == STACK_INVALID:
                        frame.slots[p] = STACK_MISC
            return
        if t == PTR_TO_MAP_VALUE:
            m = reg.map
            vs = getattr(m, "value_size", 0)
            if write and getattr(m, "map_flags", 0) & BPF_F_RDONLY_PROG:
                raise Reject(errno.EACCES, f"write into map forbidden, value_size={vs} off={reg.off} size={size}\n")
            self.region_check(regno, reg, 0, size, vs, lambda o: f"invalid access to map value, value_size={vs} "
                                                                  f"off={o} size={size}\n")
            return
        if t == PTR_TO_MEM:
            ms = reg.mem_size
            self.region_check(regno, reg, 0, size, ms, lambda o: f"invalid access to memory, mem_size={ms} "
                                                                  f"off={o} size={size}\n")
            return
        if t in PKT_TYPES:
            if reg.off + reg.b.umax + size > reg.rng or reg.off + reg.b.smin < 0:
                raise Reject(errno.EACCES, f"invalid access to packet, off={reg.off} size={size}, R{regno}(id={reg.id},"
                                           f"off={reg.off},r={reg.rng})\n")

    # -- after the walk ----------------------------------------------------------------------------
    def check_max_stack_depth(self) -> None:
        def rnd(d: int) -> int:
            return (d + 15) // 16 * 16

        def walk(sp: int, frames: int, depth: int, seen: tuple) -> None:
            depth += rnd(self.stack_depth.get(sp, 0))
            if frames > MAX_CALL_FRAMES:
                raise Reject(errno.E2BIG, f"the call stack of {frames} frames is too deep !\n")
            if depth > MAX_STACK:
                raise Reject(errno.EACCES, f"combined stack size of {frames} calls is {depth}. Too large\n")
            for c in sorted(self.callees.get(sp, ())):
                if c not in seen:
                    walk(c, frames + 1, depth, seen + (c,))

        walk(0, 1, 0, (0,))


def _apply32(orig: B.Bounds, r32: B.Bounds) -> B.Bounds:
    """Carry a refined 32-bit view back to the 64-bit bounds when the upper half is known zero."""
    if orig.umax <= B.T.U32:
        z = r32.zext()
        tn = B.T.intersect(orig.tn, z.tn)
        nb = B.Bounds(tn, max(orig.umin, z.umin), min(orig.umax, z.umax), max(orig.smin, z.smin),
                      min(orig.smax, z.smax), 64, z.r32)
        return nb if nb.empty else B.sync(nb)
    # upper half unknown: keep what the refinement learnt about the low half in the tnum
    lo = r32.tn
    hi_mask = B.T.U64 & ~B.T.U32
    tn = B.T.intersect(orig.tn, B.T.Tnum((orig.tn.value & hi_mask) | lo.value, (orig.tn.mask & hi_mask) | lo.mask))
    if (orig.tn.value ^ lo.value) & ~orig.tn.mask & ~lo.mask & B.T.U32:
        return orig._replace(umin=1, umax=0)  # contradiction: this branch cannot happen
    out = B.sync(orig._replace(tn=tn))
    return out._replace(r32=(r32.umin, r32.umax, r32.smin, r32.smax))


def _range_words(b: B.Bounds) -> str:
    """verbose_invalid_scalar(): " smin=.. smax=.." or " unknown scalar value"."""
    what = (f" smin={b.smin}" if b.smin > -(1 << 63) else "") + (f" smax={b.smax}" if b.smax < (1 << 63) - 1 else "")
    return what or " unknown scalar value"


def _stack_errno(min_off: int) -> int:
    """check_stack_access_within_bounds(): EACCES when the start is outside the frame, EINVAL
    when only the end runs past its top."""
    return errno.EACCES if min_off >= 0 or min_off < -MAX_STACK else errno.EINVAL


def _with_bounds(r: Reg, b: B.Bounds) -> Reg:
    n = r.copy()
    n.b = b
    return n


def _tn(b: B.Bounds) -> str:
    if b.is_const:
        return str(_s(b.const))
    return f"(0x{b.tn.value:x}; 0x{b.tn.mask:x})"


def is_cond(ins: Insn) -> bool:
    return is_cond_jump(ins)


__all__ = ["Checker", "Reject", "BPF_JMP"]
