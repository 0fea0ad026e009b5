"""CPU symmetry of a design (its `symmetric` declaration): one state per orbit.

A symmetric design runs CPUs 1..n-1 on the same code, each on its own instance of every
per-CPU stack, IDT, TSS and variable, and refers to CPU numbers only through `cpu` (the
running CPU), the design variables it names as `ids` (a CPU number) and `masks` (one bit
per CPU), and the loop positions it names as `order`. Renumbering those CPUs then maps
reachable states to reachable states, and `representative` picks one state per orbit:
the CPUs are sorted by a signature of everything they own, written without their own
number, and the state is renumbered accordingly (registers, stack words and FRED MSRs
that hold addresses in per-CPU stacks, frames, IDT and TSS instance names, per-CPU variables,
budgets, the `ids` and `masks` variables). CPU 0 is never moved.

A loop over the CPUs (`for (i = 0; i < ncpus; i++)`, with `i` declared `order`) visits
them in index order: only the CPUs it has passed (below i) are exchanged, the others keep
their numbers. The position must only grow (a loop that starts again from 0 would shrink
the set the reduction has already exchanged).

Two CPUs with equal signatures are exchangeable in the rest of the state too unless some
other CPU's registers or stack words point into their stacks: then the representative is
still in the orbit (sound) but an orbit may have more than one (less reduction).
`tests/test_symmetry_reduction.py` checks on the shipped designs that every orbit has
exactly one.
"""

from __future__ import annotations

import bisect
from collections.abc import Hashable, Sequence
from operator import itemgetter
from typing import Any

from checker.errors import InputError
from model.lang.ir import Binary, Call, Const, Index, Loc, StackTop, ThisCpu, Var, walk
from model.system.interp import SysState
from model.system.layout import Layout, split_instance
from model.x86.state import CodeAddr, Cpu, Frame, Machine, Platform, Value

_ADDRESS = itemgetter(0)  # a memory word's address
_MEMO_LIMIT = 1 << 18  # entries a memo keeps before it is emptied


class CpuSymmetry:
    """Renumbering of CPUs 1..n-1 of one laid-out design."""

    def __init__(self, layout: Layout, platform: Platform, budgets_per_cpu: int):
        d = layout.design
        self.budgets_per_cpu = budgets_per_cpu  # SysState.budgets: this many per CPU, then shared
        self.layout = layout
        self.n = layout.ncpus
        self.ids, self.masks, self.order = d.symmetry_vars
        self.permuted = tuple(range(1, self.n))
        # Per-CPU stack instances, by address: (lo, hi, base name, cpu), and by key.
        spans = []
        self._lo_of: dict[tuple[str, int], int] = {}
        for r in platform.regions:
            where = split_instance(r.name)
            if where:
                spans.append((r.lo, r.hi, *where))
                self._lo_of[where] = r.lo
        spans.sort()
        self._spans = spans
        self._range = (spans[0][0], max(s[1] for s in spans)) if spans else (1, 0)
        self._spans_of: list[list[tuple[int, int, str]]] = [[] for _ in range(self.n)]
        for lo, hi, base, cpu in spans:
            self._spans_of[cpu].append((lo, hi, base))
        self._suffix = [f"[{c}]" for c in range(self.n)]
        # Instance names of per-CPU stacks, IDTs and TSSs: name -> (base, cpu).
        self._mappings: dict[tuple[int, ...], tuple[dict[str, str], list[int]]] = {}
        self._names: dict[str, tuple[str, int]] = {}
        for base in layout.per_cpu:
            for c in range(self.n):
                self._names[f"{base}[{c}]"] = (base, c)
        self._starts = [s[0] for s in spans]
        self._percpu_slots = tuple(layout.var_index[v] for v in sorted(layout.percpu_vars))
        self._id_slots = tuple(layout.var_index[v] for v in self.ids)
        self._mask_slots = tuple(layout.var_index[v] for v in self.masks)
        self._order_slots = tuple(layout.var_index[v] for v in self.order)
        # Memos (issue 18 item 3), by value: what a renumbering makes of a CPU record, of
        # the memory and of the frames, and each CPU's signature; by identity: the
        # renamed tables, and the tables' part of each CPU's signature (tables rarely
        # change, and successors share them). Bounded: emptied when full.
        self._memo: dict[Hashable, Any] = {}
        self._signatures: dict[Hashable, str] = {}
        self._by_identity: dict[tuple[int, Any], tuple[Any, Any]] = {}
        self._table_ids: dict[Hashable, int] = {}
        self._last_tables: tuple[Any, Any, list[int]] | None = None
        self._all = [list(self.permuted)] if self.n > 2 else []
        self._groups: dict[tuple[Any, ...], list[list[int]]] = {}  # by `order` positions

    # -- where an address lies ---------------------------------------------------------------
    def _owner(self, v: Any) -> tuple[int, str, int] | None:
        """(offset, stack base name, cpu) when `v` is an address in a per-CPU stack or
        its top (an address that is both one stack's top and the next one's bottom is
        the next one's)."""
        if type(v) is not int or not self._range[0] <= v <= self._range[1]:
            return None
        k = bisect.bisect_right(self._starts, v) - 1
        if k < 0:
            return None
        lo, hi, base, cpu = self._spans[k]
        if v > hi:
            return None
        return v - lo, base, cpu  # v == hi: the stack's top, where an empty stack's RSP points

    def _mapping(self, p: tuple[int, ...]) -> tuple[dict[str, str], list[int]]:
        """For a renumbering: instance names old -> new, and per stack span (in address
        order) how far its addresses move. Cached: few renumberings ever occur."""
        cached = self._mappings.get(p)
        if cached is None:
            names = {x: f"{base}[{p[c]}]" for x, (base, c) in self._names.items() if p[c] != c}
            deltas = [self._lo_of[(base, p[c])] - lo for lo, _hi, base, c in self._spans]
            cached = self._mappings[p] = (names, deltas)
        return cached

    def _move(self, v: Any, deltas: list[int]) -> Any:
        if type(v) is not int or not self._range[0] <= v <= self._range[1]:
            return v
        k = bisect.bisect_right(self._starts, v) - 1
        if k < 0 or v > self._spans[k][1]:
            return v
        return v + deltas[k]

    # -- renumbering ---------------------------------------------------------------------------
    def _memo_full(self) -> None:
        for memo in (self._memo, self._signatures, self._by_identity):
            if len(memo) > _MEMO_LIMIT:
                memo.clear()

    def _same_object(self, obj: Any, pt: tuple[int, ...], make: Any) -> Any:
        """`make(obj)` for one renumbering, remembered by the object's identity."""
        key = (id(obj), pt)
        hit = self._by_identity.get(key)
        if hit is not None and hit[0] is obj:
            return hit[1]
        out = make(obj)
        self._by_identity[key] = (obj, out)
        return out

    def apply(self, s: SysState, p: Sequence[int]) -> SysState:
        """The state with CPU c renumbered p[c] (p fixes CPU 0)."""
        m = s.machine
        n = self.n
        inv = [0] * n
        for old, new in enumerate(p):
            inv[new] = old
        pt = tuple(p)
        names, deltas = self._mapping(pt)
        move = self._move
        memo = self._memo
        self._memo_full()

        def rename(x: str | None) -> str | None:
            return names.get(x, x) if x is not None else None

        cpus = []
        for new in range(n):
            c = m.cpus[inv[new]]
            key: Hashable = (c, pt)
            moved = memo.get(key)
            if moved is None:
                moved = memo[key] = c._replace(
                    rsp=move(c.rsp, deltas),
                    regs=tuple(move(v, deltas) for v in c.regs),
                    idtr=rename(c.idtr),
                    tr=rename(c.tr),
                    # MSRs WRMSR wrote (IA32_FRED_RSPn: a stack's top) move with their stacks.
                    msrs=tuple((k, move(v, deltas)) for k, v in c.msrs) if c.msrs else (),
                )
            cpus.append(moved)
        memory = m.memory
        if memory:
            key = (memory, pt)  # few distinct memories: a few thousand on kexec-4
            moved_memory = memo.get(key)
            if moved_memory is None:
                moved_memory = memo[key] = tuple(sorted(
                    ((move(a, deltas), move(v, deltas)) for a, v in memory), key=_ADDRESS
                ))
            memory = moved_memory
        # Frames stay ordered by CPU, oldest first within a CPU (Machine.frames).
        frames = m.frames
        if frames:
            key = (frames, pt)
            moved_frames = memo.get(key)
            if moved_frames is None:
                moved_frames = memo[key] = tuple(sorted(
                    (
                        f._replace(
                            cpu=p[f.cpu], lo=move(f.lo, deltas),
                            stack=names.get(f.stack, f.stack),
                        )
                        for f in frames
                    ),
                    key=lambda f: f.cpu,
                ))
            frames = moved_frames
        # Each instance keeps its slot: the renamed tables in the original name order.
        idts = self._same_object(m.idts, pt, lambda tables: _in_order(
            tuple(t._replace(name=names.get(t.name, t.name)) for t in tables), tables
        ))
        tsss = self._same_object(m.tsss, pt, lambda tables: _in_order(
            tuple(
                t._replace(
                    name=names.get(t.name, t.name),
                    rsp0=rename(t.rsp0),
                    ist=tuple(rename(x) for x in t.ist),
                )
                for t in tables
            ),
            tables,
        ))
        machine = Machine(
            cpus=tuple(cpus), memory=memory, frames=frames, idts=idts, tsss=tsss,
            incidents=m.incidents, sym_memory=m.sym_memory,
        )
        values = list(s.vars)
        for base in self._percpu_slots:
            for new in range(n):
                values[base + new] = s.vars[base + inv[new]]
        for slot in self._id_slots:
            v = values[slot]
            if type(v) is int and 0 <= v < n:
                values[slot] = p[v]
        for slot in self._mask_slots:
            v = values[slot]
            if type(v) is int:
                out = v & ~((1 << n) - 1)
                for old in range(n):
                    if v >> old & 1:
                        out |= 1 << p[old]
                values[slot] = out
        k = self.budgets_per_cpu
        budgets: list[int] = []
        for new in range(n):
            budgets.extend(s.budgets[inv[new] * k : inv[new] * k + k])
        budgets.extend(s.budgets[n * k :])
        lazy = tuple(s.lazy[inv[new]] for new in range(n)) if s.lazy else s.lazy
        return s._replace(machine=machine, vars=tuple(values), budgets=tuple(budgets), lazy=lazy)

    # -- the representative --------------------------------------------------------------------
    def quick_key(self, s: SysState, cpu: int) -> tuple[Any, ...]:
        """A cheap part of the signature (where the CPU is, its latches, its per-CPU
        variables and budgets): most CPUs are told apart by it alone."""
        c = s.machine.cpus[cpu]
        k = self.budgets_per_cpu
        vars_ = s.vars
        return (
            c.pc, c.run, c.nmi_blocked, c.nmi_pending, c.mcip, c.cpl,
            tuple([
                (0, v) if type(v) is int else _sortable(v)
                for v in (vars_[base + cpu] for base in self._percpu_slots)
            ]),
            s.budgets[cpu * k : cpu * k + k],
        )

    def signature(self, s: SysState, cpu: int) -> str:
        """Everything CPU `cpu` owns, written without its number (its own stacks and
        instances are "self"; references to other CPUs keep their numbers). Remembered
        by what it is made of: the CPU record, the memory and frames (few distinct
        ones occur), its tables, its bits of the `masks` and `ids` variables."""
        m = s.machine
        vars_ = s.vars
        key = (
            cpu, m.cpus[cpu], m.memory, m.frames,
            self._tables_of(m)[cpu],
            tuple(_bit(vars_[slot], cpu) for slot in self._mask_slots),
            tuple(vars_[slot] == cpu for slot in self._id_slots),
            s.lazy[cpu] if s.lazy else None,
        )
        text = self._signatures.get(key)
        if text is None:
            text = self._signatures[key] = self._signature(s, cpu)
        return text

    def _tables_of(self, m: Machine) -> list[int]:
        """Per CPU, a number standing for its IDT and TSS instances (equal numbers: equal
        instances, up to the CPU number in their names)."""
        last = self._last_tables
        if last is not None and last[0] is m.idts and last[1] is m.tsss:
            return last[2]
        idts, tsss = m.idts, m.tsss
        out = []
        for suffix in self._suffix:
            mine = (
                tuple((t.limit, t.gates) for t in idts if t.name.endswith(suffix)),
                tuple((t.name, t.rsp0, t.ist) for t in tsss if t.name.endswith(suffix)),
                suffix,
            )
            out.append(self._table_ids.setdefault(mine, len(self._table_ids)))
        self._last_tables = (idts, tsss, out)
        return out

    def _signature(self, s: SysState, cpu: int) -> str:
        m = s.machine
        owner = self._owner
        lo_all, hi_all = self._range

        def addr(v: Any) -> Any:
            if type(v) is not int or v < lo_all or v > hi_all:
                return v
            where = owner(v)
            if where is None:
                return v
            off, base, c = where
            return (base, "self" if c == cpu else c, off)

        def name(x: str | None) -> Any:
            where = self._names.get(x) if x is not None else None
            if where is None:
                return x
            return (where[0], "self" if where[1] == cpu else where[1])

        c: Cpu = m.cpus[cpu]
        own_cpu = (
            c._replace(rsp=0, regs=(), idtr=None, tr=None, msrs=()),
            addr(c.rsp), tuple(addr(v) for v in c.regs), name(c.idtr), name(c.tr),
            tuple((k, addr(v)) for k, v in c.msrs),
        )
        memory: list[tuple[str, int, Any]] = []
        words = m.memory
        if words:
            addresses = [a for a, _ in words]
            for lo, hi, base in self._spans_of[cpu]:
                first = bisect.bisect_left(addresses, lo)
                last = bisect.bisect_left(addresses, hi, first)
                memory.extend((base, a - lo, addr(v)) for a, v in words[first:last])
        frames = [_frame_sig(f, addr(f.lo)) for f in m.frames if f.cpu == cpu]
        suffix = self._suffix[cpu]
        idts = [(t.name, t.limit, t.gates) for t in m.idts if t.name.endswith(suffix)]
        tsss = [
            (t.name[: -len(suffix)], name(t.rsp0), tuple(name(x) for x in t.ist))
            for t in m.tsss if t.name.endswith(suffix)
        ]
        vars_ = s.vars
        masks = tuple(_bit(vars_[slot], cpu) for slot in self._mask_slots)
        ids = tuple(vars_[slot] == cpu for slot in self._id_slots)
        lazy = s.lazy[cpu] if s.lazy else None
        return repr((own_cpu, memory, frames, [i[1:] for i in idts], tsss, masks, ids, lazy))

    def groups(self, s: SysState) -> list[list[int]]:
        """The classes of CPUs that may trade places: all of 1..n-1, except that a loop
        over the CPUs (`order` variable at position i) visits them in index order, so the
        CPUs it has yet to visit (>= i) keep their numbers and only those it has passed
        trade places. (Letting the CPUs ahead of the loop trade places too is unsound: the
        loop would then visit one of them twice and the other never.)"""
        if not self._order_slots:
            return self._all
        positions = tuple([s.vars[slot] for slot in self._order_slots])
        out = self._groups.get(positions)
        if out is None:
            classes: dict[tuple[int, ...], list[int]] = {}
            for cpu in self.permuted:
                key = tuple(0 if type(pos) is int and cpu < pos else cpu for pos in positions)
                classes.setdefault(key, []).append(cpu)
            out = self._groups[positions] = list(classes.values())
        return out

    def representative(self, s: SysState) -> SysState:
        if self.n <= 2 or s.symbolic:
            return s  # one permuted CPU; symbolic states are left as they are
        p = list(range(self.n))
        moved = False
        quick_key = self.quick_key
        cpus = s.machine.cpus
        for cls in self.groups(s):
            if len(cls) < 2:
                continue
            # Already in order, no two alike (the common case): nothing to renumber. The
            # pc leads the quick key: strictly increasing pcs settle it alone.
            pcs = [cpus[c].pc for c in cls]
            if all(a < b for a, b in zip(pcs, pcs[1:], strict=False)):  # noqa: RUF007
                continue
            keys = [quick_key(s, c) for c in cls]
            if all(a < b for a, b in zip(keys, keys[1:], strict=False)):  # noqa: RUF007
                continue
            # Sort by the quick key, and by the whole signature among equal quick keys.
            quick = dict(zip(cls, keys, strict=True))
            ranked = sorted(cls, key=quick.__getitem__)
            if len(set(quick.values())) < len(cls):
                full = {
                    c: self.signature(s, c) for c in cls
                    if sum(q == quick[c] for q in quick.values()) > 1
                }
                ranked = sorted(cls, key=lambda c: (quick[c], full.get(c, "")))
            for slot, old in zip(cls, ranked, strict=True):
                p[old] = slot
                moved |= slot != old
        if not moved:
            return s
        return self.apply(s, p)


def _sortable(v: Value) -> tuple[int, Any]:
    """A per-CPU value as a key that orders values of every type: numbers, code addresses
    and symbolic terms (a variable may hold any of them, in different CPUs at once)."""
    if type(v) is int:
        return (0, v)
    if isinstance(v, CodeAddr):
        return (1, (v.routine, v.index))
    return (2, repr(v))


def _bit(mask: Value, cpu: int) -> Value:
    """CPU `cpu`'s bit of a mask variable (a symbolic or code value stays as it is)."""
    return (mask >> cpu) & 1 if type(mask) is int else mask


def _frame_sig(f: Frame, where: Any) -> tuple[Any, ...]:
    return (f.vector, f.source, where, f.from_cpl, f.clobbered, f.on_guest_stack, f.modified)


def _in_order(tables: tuple[Any, ...], like: tuple[Any, ...]) -> tuple[Any, ...]:
    by_name = {t.name: t for t in tables}
    return tuple(by_name[t.name] for t in like)


# -- checking a `symmetric` declaration --------------------------------------------------------
_COMPARISONS = frozenset({"==", "!=", "<", "<=", ">", ">="})


def _constant_cpu(e: object) -> int | None:
    return e.value if isinstance(e, Const) else None


def _singles_out(node: object, per_cpu: frozenset[str], ids: frozenset[str]) -> str | None:
    """Why an expression node names one CPU of 1..n-1 by number, or None."""
    match node:
        case Index(name, subscript) if name in per_cpu:
            k = _constant_cpu(subscript)
            if k is not None and k >= 1:
                return f"{name}[{k}]"
        case StackTop(stack):
            where = split_instance(stack)
            if where is not None and where[1] >= 1:
                return f"top({stack})"
        case Call("per_cpu", (_, index)):
            k = _constant_cpu(index)
            if k is not None and k >= 1:
                return f"per_cpu(..., {k})"
        case Binary(op, left, right) if op in _COMPARISONS:
            for a, b in ((left, right), (right, left)):
                k = _constant_cpu(b)
                if k is not None and k >= 1 and (
                    isinstance(a, ThisCpu) or (isinstance(a, Var) and a.name in ids)
                ):
                    return f"a comparison of a CPU number with {k}"
    return None




def check_declaration(
    layout: Layout, symmetry: CpuSymmetry, init_states: Sequence[SysState]
) -> None:
    """Refuse a `symmetric` declaration the design does not honour (issue 13: a wrong one
    made the reduced run say "violated" where the full run says "holds"). CPUs 1..n-1 must
    start alike (every initial state renumbered is an initial state: start routine,
    registers, per-CPU tables, variables), and no code may name one of them by number
    (`send_nmi(1)`, `x[2]`, `top(kstack[1])`, `cpu == 1`): the reduction would merge
    states the code tells apart."""
    d = layout.design
    loc = d.symmetry_loc or Loc(d.path, 1)
    per_cpu = frozenset(layout.per_cpu | layout.percpu_vars)
    ids = frozenset(d.symmetry_vars[0])
    for routine in d.routines.values():
        for ins in routine.instrs:
            for node in walk(ins.args):
                why = None
                if isinstance(node, str) and node != routine.name:
                    where = split_instance(node)
                    if where is not None and where[1] >= 1 and where[0] in per_cpu:
                        why = node
                elif ins.op == "c.assign_index" and node is ins.args[1]:
                    k = _constant_cpu(node)
                    if k is not None and k >= 1 and ins.args[0] in per_cpu:
                        why = f"{ins.args[0]}[{k}]"
                elif ins.op in ("c.send_nmi", "send_nmi") and node is ins.args[0]:
                    k = _constant_cpu(node)
                    why = f"send_nmi({k})" if k is not None and k >= 1 else None
                else:
                    why = _singles_out(node, per_cpu, ids)
                if why is not None:
                    raise InputError(
                        f"symmetric: CPUs 1..{layout.ncpus - 1} are declared interchangeable "
                        f"but {ins.loc} names one of them ({why}); drop the declaration or "
                        "write the code without CPU numbers", loc.file, loc.line,
                    )
    # The design's part of the start (the environment's per-CPU budgets may differ: the
    # representative of each initial state is explored, which is sound when the code is).
    starts = {(s.machine, s.vars) for s in init_states}
    n = layout.ncpus
    for j in range(2, n):
        swap = list(range(n))
        swap[1], swap[j] = j, 1
        for s in init_states:
            t = symmetry.apply(s, swap)
            if (t.machine, t.vars) not in starts:
                raise InputError(
                    f"symmetric: CPUs 1..{n - 1} are declared interchangeable but CPU 1 and "
                    f"CPU {j} start differently (start routine, registers, per-CPU tables or "
                    "variables); drop the declaration or make them start alike",
                    loc.file, loc.line,
                )
