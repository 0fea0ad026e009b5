"""Persistent sets of a design's actions, for partial-order reduction (checker --por).

The candidate for CPU p is every action of p enabled in the state: its next step and the
events the environment may deliver to it. That set is persistent (no sequence of other
CPUs' actions can reach an action that depends on it) when

1. each action in it is local to p: it changes nothing but p's registers and latches, p's
   own stacks, frames, budgets and per-CPU variables (checked on the successor), and it
   reads nothing another CPU can write: no global variable, no per-CPU variable that
   some code indexes (`crash_save_done[c]`), no shared stack, table or wait condition
   (checked on the instruction, once per pc); and
2. no other CPU can still reach an instruction that reaches into p: an NMI IPI to other
   CPUs, a gate, IST or TSS write through an index or to a shared table, `free_init`.
   "Can still reach" follows the control flow from everything the CPU may resume at: its
   pc, code addresses in its registers and on its stacks (return addresses, interrupted
   RIPs), and the handlers its IDT names (or FRED's entry points); nor may it hold an
   address in p's stack in RSP, a register, a word of its stacks or a FRED stack MSR
   (IA32_FRED_RSPn).

An address can also be computed (`add $0x10000, %rax`, a wrong stack size): so an
instruction that writes %rsp from an operand (`mov %rax, %rsp`, `sub $8, %rsp`) or from
a frame (IRET, ERETS, ERETU: a computed word pushed there), an rsp-relative operand
whose displacement may cross the unmapped gap between two CPUs' stacks, and `top(s)+c`
outside the stack all count as reaching into another CPU; and when two CPUs' stacks lie
closer than a frame (a push at one's edge lands in the other) no set is persistent.

The model also judges invisibility (a step changes no vocabulary name the properties
read); the checker adds the cycle proviso (no step into a state already expanded).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

from model.lang import isa
from model.lang.ir import (
    Abs,
    Binary,
    Call,
    CodeRef,
    Const,
    Design,
    Index,
    Instr,
    Mem,
    Name,
    Reg,
    StackTop,
    Target,
    Var,
    walk,
)
from model.system.interp import SysState
from model.system.layout import Layout, split_instance
from model.system.vocabulary import Part, Read, Variable
from model.x86 import msr
from model.x86.arch import LOWER_HALF_END, MC, NMI
from model.x86.memory import FRAME_BYTES
from model.x86.state import CodeAddr, Platform, Run

# Which steps are local, and which reach into other CPUs, comes from the instruction
# table's read/write sets (model/lang/isa.py: isa.effects), never from a list of names.
_SELF = Var("SELF")
_MEMO_LIMIT = 1 << 18  # entries a memo keeps before it is emptied
# How far below or above RSP a push, pop, IRET or an event's frame (FRED's red zone and
# alignment included) may reach.
_FRAME_REACH = 0x200
# Instructions that name %rsp last without writing it.
_RSP_READ_ONLY = frozenset({"cmp", "test", "bt", "push"})
# Instructions that load RSP from memory.
_LOADS_RSP = frozenset({"iret", "erets", "eretu"})




def _names(ins: Instr) -> list[tuple[str, bool]]:
    """The names an instruction mentions, each with whether it is indexed (`x[i]`)."""
    out: list[tuple[str, bool]] = []
    for node in walk(ins.args):
        if isinstance(node, (Var, Name)):
            out.append((node.name, False))
        elif isinstance(node, StackTop):
            out.append((node.stack, False))
        elif isinstance(node, Index):
            out.append((node.name, True))
    if ins.op in ("assign_index", "c.assign_index") and ins.args and isinstance(ins.args[0], str):
        out.append((ins.args[0], True))
    for node in walk(ins.args):
        # per_cpu(x, i) reaches CPU i's copy of x, as x[i] does
        match node:
            case Call("per_cpu", (Var(name), *_)):
                out.append((name, True))
    return out


def _names_instance(ins: Instr) -> bool:
    """Does the instruction name one CPU's instance of a per-CPU stack (`top(kstack[1])`)?"""
    return any(isinstance(node, StackTop) and "[" in node.stack for node in walk(ins.args))


class Persistence:
    """The static facts of one laid-out design that persistent sets need."""

    def __init__(
        self, design: Design, layout: Layout, platform: Platform, budgets: int,
        reads: Mapping[str, tuple[Read, ...]],
    ):
        self.layout = layout
        # What each vocabulary name reads (model.system.vocabulary), for visibility.
        self.reads = reads
        self.var_slots = {
            n: (layout.var_index[n], layout.var_index[n] + (
                layout.ncpus if n in layout.percpu_vars else layout.lengths[n]
            ))
            for n in layout.var_index
        }
        self.budgets_per_cpu = budgets
        variables = {v.name: v for v in design.variables}
        self.globals = {n for n, v in variables.items() if not v.per_cpu}
        percpu = {n for n, v in variables.items() if v.per_cpu}
        shared_names = {s.name for s in design.stacks if not s.per_cpu}
        shared_names |= {t.name for t in design.idts if not t.per_cpu}
        shared_names |= {t.name for t in design.tsss if not t.per_cpu}
        self.per_cpu_stacks = frozenset(s.name for s in design.stacks if s.per_cpu)
        self.stack_size = {s.name: s.size for s in design.stacks}
        self.gap = _stack_gap(platform)
        instrs = [
            (CodeAddr(r.name, k), ins)
            for r in design.routines.values() for k, ins in enumerate(r.instrs)
        ]
        indexed = {n for _, ins in instrs for n, ix in _names(ins) if ix}
        # Per-CPU variables some code reaches by index are shared between the CPUs.
        self.shared_vars = self.globals | (percpu & indexed)
        self.shared_names = shared_names
        self.per_cpu_names = layout.per_cpu | percpu
        self.local_pc = {pc: self._local(ins) for pc, ins in instrs}
        foreign = {pc for pc, ins in instrs if self._foreign(ins)}
        self.reaches_foreign = _backward_closure(instrs, design, foreign)
        self_nmi = {pc for pc, ins in instrs if isa.OTHER_CPU in _writes(ins)}
        self.reaches_self_nmi = _backward_closure(instrs, design, self_nmi)
        # INT n can reach any gate (software interrupts read the IDT: isa.TABLES).
        self.int_n = any(
            ins.op in isa.BY_OP and isa.TABLES in isa.BY_OP[ins.op].reads for _, ins in instrs
        )
        # Which CPU's stack a region is, to attribute written words to a CPU.
        self.platform = platform
        self.cpu_of_region: dict[str, int] = {}
        for r in platform.regions:
            where = split_instance(r.name)
            if where is not None:
                self.cpu_of_region[r.name] = where[1]
        # may_reach_foreign's memo, and numbers for the IDT instances it reads
        self._reach_memo: dict[Hashable, bool] = {}
        self._tokens: dict[int, tuple[Any, int]] = {}
        self._token_of: dict[Hashable, int] = {}
        self._memory_ids: dict[Hashable, int] = {}
        self._owners: dict[int, int | None] = {}  # _owner's memo, by address
        self.slots_of: list[frozenset[int]] = [
            frozenset(
                layout.var_index[n] + c for n in percpu - self.shared_vars
            )
            for c in range(layout.ncpus)
        ]

    # -- static -------------------------------------------------------------------------------
    def _local(self, ins: Instr) -> bool:
        if not isa.effects(ins, self.per_cpu_stacks) <= isa.LOCAL_EFFECTS:
            return False
        for name, ix in _names(ins):
            if name in self.shared_vars or name in self.shared_names:
                return False
            if ix and name in self.per_cpu_names:
                return False
        return not self._foreign(ins)

    def _foreign(self, ins: Instr) -> bool:
        """Reaches into another CPU (or into state every CPU shares)."""
        reach = isa.effects(ins, self.per_cpu_stacks)
        if reach & {isa.MEMORY, isa.PERCPU}:
            # Memory through any base but %rsp, an absolute address, `mem()` or %gs: may be
            # another CPU's stack or data: reading it races with that CPU's own pushes as
            # much as writing it does (issue 13: a write into CPU 1's stack, a mem() read).
            return True
        if _names_instance(ins):
            return True  # `top(kstack[1])`: a named instance of some CPU's stack
        if self._escapes(ins):
            return True
        writes = _writes(ins)
        if isa.OTHER_CPU in writes:
            return not (ins.args and ins.args[0] == _SELF)
        if isa.CODE in writes:
            return True
        if isa.TABLES in writes:
            return any(
                ix or name in self.shared_names
                for name, ix in _names(ins)
                if name in self.layout.per_cpu or name in self.shared_names
            )
        return False

    def _escapes(self, ins: Instr) -> bool:
        """Can a stack access of `ins` leave its CPU's own stacks: %rsp written from an
        operand or a frame (a computed address), a displacement past the gap between two CPUs'
        stacks, or `top(s)+c` outside the stack?"""
        args = ins.args
        if ins.op in _LOADS_RSP:
            return True  # IRET/ERET load RSP from a frame whose words may be computed
        rsp = [isinstance(a, Reg) and a.name == "rsp" for a in args]
        if args and ins.op not in _RSP_READ_ONLY and (rsp[-1] or (ins.op == "xchg" and any(rsp))):
            return True
        for node in walk(args):
            if isinstance(node, Mem) and node.base == "rsp" and node.seg != "gs":
                d = node.disp - (1 << 64) if node.disp >= 1 << 63 else node.disp
                if abs(d) + _FRAME_REACH > self.gap:
                    return True
            if isinstance(node, Abs) and any(isinstance(t, StackTop) for t in walk(node.expr)):
                at = _top_offset(node.expr)
                if at is None or not -self.stack_size.get(at[0], 0) <= at[1] <= -node.size:
                    return True
        return False

    # -- per state ------------------------------------------------------------------------------
    def may_reach_foreign(self, s: SysState, q: int, memory: Hashable = None) -> bool:
        """Can CPU q still run an instruction that reaches into another CPU? From where
        it may resume (pc, code addresses in registers and on its stacks) and from the
        handlers of the events it can still take. Remembered by what it reads: CPU q's
        record, the memory (few distinct ones occur; `memory`: a number standing for
        the state's), the IDTs and q's budgets."""
        m = s.machine
        k = q * self.budgets_per_cpu
        key = (
            q, m.cpus[q], (m.memory,) if memory is None else memory,
            self._tables_token(m.idts), s.budgets[k : k + 3],
        )
        memo = self._reach_memo
        known = memo.get(key)
        if known is None:
            if len(memo) > _MEMO_LIMIT:
                memo.clear()
            known = memo[key] = self._may_reach_foreign(s, q)
        return known

    def _tables_token(self, idts: tuple[Any, ...]) -> int:
        """A number for the IDT instances (equal numbers: equal instances), found by
        identity first: successors share their tables."""
        hit = self._tokens.get(id(idts))
        if hit is not None and hit[0] is idts:
            return hit[1]
        if len(self._tokens) > _MEMO_LIMIT:
            self._tokens.clear()
        token = self._token_of.setdefault(idts, len(self._token_of))
        self._tokens[id(idts)] = (idts, token)
        return token

    def _may_reach_foreign(self, s: SysState, q: int) -> bool:
        m = s.machine
        cpu = m.cpus[q]
        if cpu.run is Run.SHUTDOWN:
            return False
        # A stack pointer or register that points into another CPU's stack: a push, or a
        # move into %rsp and then a push, writes there.
        # (A stack's top is past its region: the pushes land below it.)
        for v in (cpu.rsp, *cpu.regs):
            if type(v) is int and self._pushes_into(v) not in (q, None):
                return True
        # So does a FRED stack MSR (IA32_FRED_RSPn, written or the `fred` block's): FRED
        # delivers an event by pushing below it, with no instruction of this CPU between.
        fred_msrs = self.platform.fred_msrs[q] if self.platform.fred_msrs else ()
        for _, v in (*cpu.msrs, *fred_msrs):
            if type(v) is int and self._pushes_into(v) not in (q, None):
                return True
        resume = [cpu.pc, *(v for v in cpu.regs if type(v) is CodeAddr)]
        resume += [
            v for a, v in m.memory if type(v) is CodeAddr and self._owner(a) in (q, None)
        ]
        # A word on its stacks that IRET or `pop %rsp` may load into RSP.
        for a, v in m.memory:
            if type(v) is int and self._owner(a) in (q, None) and (
                self._pushes_into(v) not in (q, None)
            ):
                return True
        idt = m.idt(cpu.idtr)
        gates = dict(idt.gates) if idt is not None else {}
        k = q * self.budgets_per_cpu
        nmi, mce, ext = s.budgets[k : k + 3]
        # An NMI can still come: the environment's, a sent or latched one, or one this
        # CPU sends itself (another CPU's would be foreign, and so already decisive).
        nmi_possible = bool(nmi) or cpu.ipi_nmi or cpu.nmi_pending
        entries = resume
        for vector, gate in gates.items():
            # #DF and the other exceptions can come from any fault: always possible.
            if vector == NMI or (vector == MC and not mce):
                continue
            if vector >= 32 and not ext and not self.int_n:
                continue
            entries.append(CodeAddr(gate.routine, 0))
        if self.layout.design.fred_possible:
            # Under FRED every event enters at IA32_FRED_CONFIG's entry or 256 past it.
            for r3, r0 in self.platform.fred_ring0:
                entries += [CodeAddr(r3, 0), CodeAddr(r0, 0)]
            config = dict(cpu.msrs).get(msr.IA32_FRED_CONFIG)
            if type(config) is CodeAddr:
                entries.append(config)
        if not nmi_possible:
            nmi_possible = any(pc in self.reaches_self_nmi for pc in entries)
        if nmi_possible and NMI in gates:
            entries.append(CodeAddr(gates[NMI].routine, 0))
        reach = self.reaches_foreign
        return any(pc in reach for pc in entries)

    def _pushes_into(self, address: int) -> int | None:
        """The CPU whose stack holds `address`, or the word below it (a stack's top)."""
        owner = self._owner(address)
        return self._owner(address - 1) if owner is None else owner

    def _owner(self, address: int) -> int | None:
        """The CPU whose stack holds `address` (None: a shared stack, or none)."""
        try:
            return self._owners[address]
        except KeyError:
            pass
        if len(self._owners) > _MEMO_LIMIT:
            self._owners.clear()
        region = self.platform.region_at(address)
        owner = self._owners[address] = (
            None if region is None else self.cpu_of_region.get(region.name)
        )
        return owner

    def visible(self, s: SysState, t: SysState, p: int, observed: frozenset[str]) -> bool:
        """Could a property reading `observed` see the step from s to t, a step that
        changes only what CPU p owns (changes_only)? Judged on what it changes, so the
        answer is the same in every state where p takes the same step: a name sees it
        when a part it reads (the vocabulary table's read set) changed."""
        reads = self.reads
        for name in observed:
            parts = reads.get(name)
            if parts is None:
                return True  # a name the vocabulary does not know: assume it sees the step
            for part in parts:
                if self._changed(part, s, t, p):
                    return True
        return False

    def _changed(self, part: Read, s: SysState, t: SysState, p: int) -> bool:
        """Did the step from s to t change `part`? (Only CPU p's own things can have
        changed: changes_only holds.)"""
        a, b = s.machine, t.machine
        if isinstance(part, Variable):
            lo, hi = self.var_slots[part.name]
            return s.vars[lo:hi] != t.vars[lo:hi]
        if part is Part.CPU:
            return a.cpus[p] != b.cpus[p]
        if part is Part.FRAMES:
            return a.frames != b.frames
        if part is Part.FRAME_MEMORY:
            if a.memory == b.memory:
                return False
            written = {address for address, _ in set(a.memory) ^ set(b.memory)}
            for f in (*a.frames, *b.frames):
                at = f.lo
                if not isinstance(at, int) or any(at <= w < at + FRAME_BYTES for w in written):
                    return True
            return False
        if part is Part.INCIDENTS:
            return a.incidents != b.incidents
        if part is Part.TABLES:
            return a.idts != b.idts or a.tsss != b.tsss
        return False  # Part.CONSTANT

    def changes_only(self, s: SysState, t: SysState, p: int) -> bool:
        """Did the step from s to t change nothing but what CPU p owns?"""
        if t.init_freed != s.init_freed or t.path != s.path:
            return False
        a, b = s.machine, t.machine
        if b.incidents != a.incidents or b.sym_memory != a.sym_memory:
            return False
        for j, (c0, c1) in enumerate(zip(a.cpus, b.cpus, strict=True)):
            if j != p and c0 != c1:
                return False
        if b.memory != a.memory:
            changed = set(a.memory) ^ set(b.memory)
            if any(self._owner(addr) != p for addr, _ in changed):
                return False
        if b.frames != a.frames and (
            [f for f in a.frames if f.cpu != p] != [f for f in b.frames if f.cpu != p]
        ):
            return False
        suffix = f"[{p}]"
        if b.idts != a.idts and any(
            x != y and not x.name.endswith(suffix) for x, y in zip(a.idts, b.idts, strict=True)
        ):
            return False
        if b.tsss != a.tsss and any(
            x != y and not x.name.endswith(suffix) for x, y in zip(a.tsss, b.tsss, strict=True)
        ):
            return False
        if t.vars != s.vars:
            own = self.slots_of[p]
            pairs = enumerate(zip(s.vars, t.vars, strict=True))
            if any(x != y and k not in own for k, (x, y) in pairs):
                return False
        if t.budgets != s.budgets:
            k = self.budgets_per_cpu
            lo, hi = p * k, p * k + k
            if any(
                x != y and not lo <= j < hi
                for j, (x, y) in enumerate(zip(s.budgets, t.budgets, strict=True))
            ):
                return False
        return not (s.lazy and any(
            x != y for j, (x, y) in enumerate(zip(s.lazy, t.lazy, strict=True)) if j != p
        ))

    def reduces(self) -> bool:
        """Whether any state can have a candidate: with one CPU every action is that CPU's,
        and with stacks closer than a frame's reach POR is off (see `candidates`)."""
        return self.layout.ncpus > 1 and self.gap >= _FRAME_REACH

    def candidates(
        self, s: SysState, actions: Sequence[Any], step: Callable[[Any], SysState],
        wait_ops: frozenset[str], instr_at: Callable[[CodeAddr], Instr | None],
        observed: frozenset[str],
    ) -> list[list[int]]:
        """Index lists into `actions`, one per CPU whose enabled actions are persistent,
        in CPU order (fewest actions first)."""
        if s.symbolic or len(actions) < 2 or self.gap < _FRAME_REACH:
            return []
        by_cpu: dict[int, list[int]] = {}
        for k, a in enumerate(actions):
            by_cpu.setdefault(a.cpu, []).append(k)
        # The checks that look at one CPU's next step first (cheap, and they turn most
        # CPUs down), then whether any other CPU may still reach into it.
        eligible: list[tuple[int, list[int]]] = []
        for p, indexes in by_cpu.items():
            if len(indexes) == len(actions):
                continue
            cpu = s.machine.cpus[p]
            if cpu.run is Run.RUNNING:
                ins = instr_at(cpu.pc)
                if ins is None or ins.op in wait_ops or not self.local_pc.get(cpu.pc, False):
                    continue  # a step that reads shared state, or one that may not be offered
            if any(actions[k].kind in ("fault", "timeout") for k in indexes):
                continue
            eligible.append((p, indexes))
        if not eligible:
            return []
        n = len(s.machine.cpus)
        memory = self._memory_ids.get(s.machine.memory)
        if memory is None:
            if len(self._memory_ids) > _MEMO_LIMIT:
                self._memory_ids.clear()
                self._reach_memo.clear()  # its keys hold these numbers
            memory = self._memory_ids[s.machine.memory] = len(self._memory_ids)
        interferes = [self.may_reach_foreign(s, q, memory) for q in range(n)]
        if sum(interferes) > 1:
            return []
        out: list[list[int]] = []
        for p, indexes in eligible:
            if any(interferes[q] for q in range(n) if q != p):
                continue
            if all(
                self.changes_only(s, t, p) and not self.visible(s, t, p, observed)
                for t in (step(actions[k]) for k in indexes)
            ):
                out.append(indexes)
        out.sort(key=len)
        return out


def _writes(ins: Instr) -> frozenset[str]:
    """What the table says an instruction writes."""
    e = isa.BY_OP.get(ins.op)
    if e is not None:
        return e.writes
    b = isa.BUILTIN_BY_OP.get(ins.op)
    return b.writes if b is not None else isa.EFFECTS


def _stack_gap(platform: Platform) -> int:
    """The least distance between two CPUs' stacks that only unmapped memory fills (a
    push into it faults); guest memory between guest stacks is mapped: no gap."""
    gap = 1 << 64
    regions = [(r, split_instance(r.name)) for r in platform.regions]
    for r, a in regions:
        for u, b in regions:
            if a is None or b is None or a[1] == b[1] or r.lo > u.lo:
                continue
            if r.hi <= LOWER_HALF_END and u.hi <= LOWER_HALF_END:
                return 0
            gap = min(gap, max(0, u.lo - r.hi))
    return gap


def _top_offset(expr: object) -> tuple[str, int] | None:
    """`top(s) + c - d...` as (s, offset), or None for any other expression."""
    match expr:
        case StackTop(stack):
            return stack, 0
        case Binary("+" | "-" as op, left, Const(value)):
            inner = _top_offset(left)
            if inner is None:
                return None
            return inner[0], inner[1] + (value if op == "+" else -value)
        case Binary("+", Const(value), right):
            inner = _top_offset(right)
            return None if inner is None else (inner[0], inner[1] + value)
    return None


def _backward_closure(
    instrs: list[tuple[CodeAddr, Instr]], design: Design, targets: set[CodeAddr]
) -> frozenset[CodeAddr]:
    """Every pc from which control may flow to one of `targets`: fall-through, jump,
    branch and call targets, and code addresses an instruction names (a gate's handler, a
    label it takes the address of) all count as edges."""
    preds: dict[CodeAddr, set[CodeAddr]] = {}
    lengths = {r.name: len(r.instrs) for r in design.routines.values()}
    for pc, ins in instrs:
        succs = []
        if pc.index + 1 < lengths[pc.routine]:
            succs.append(CodeAddr(pc.routine, pc.index + 1))
        for node in walk(ins.args):
            if isinstance(node, Target):
                succs.append(CodeAddr(node.routine, node.index))
            elif isinstance(node, CodeRef):
                succs.append(CodeAddr(node.routine, node.instr))
        if any(isinstance(a, isa.Indirect) for a in ins.args):
            # An indirect jump or call may reach any routine (a table of code addresses).
            succs.extend(CodeAddr(r, 0) for r in lengths)
        for nxt in succs:
            preds.setdefault(nxt, set()).add(pc)
    seen = set(targets)
    todo = list(targets)
    while todo:
        pc = todo.pop()
        for prev in preds.get(pc, ()):
            if prev not in seen:
                seen.add(prev)
                todo.append(prev)
    return frozenset(seen)
