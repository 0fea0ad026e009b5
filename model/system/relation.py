"""The transition relation of a design on a machine in an environment.

An action is one atomic step of one CPU: its next instruction (or one pseudo-C statement),
the environment making a marked step fault, or the delivery of an event the environment
may raise at that boundary (NMI, #MC, an external interrupt), an NMI IPI arriving, a
latched NMI or held-back #DB being taken, or a wait timing out when nothing else can move.
Which events a CPU may take at a boundary, and which pre-empt the others, is the
architecture's rule (model.x86.events.at_boundary); this module adds the design's steps,
the environment's budgets and the symbolic decisions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from itertools import islice
from typing import Any, NamedTuple

from checker import symbolic as sym
from checker.errors import InputError, ModelInputError
from checker.symbolic import Decisions, Infeasible, NeedDecision, Solver, Term, require, run_with
from model.lang import isa
from model.lang.ir import BreakpointDecl, Design, Instr, Loc
from model.lang.parser import parse_breakpoint
from model.system.interp import Blocked, Interpreter, SysState
from model.system.layout import Layout, build_layout, initial_machines, platform_of
from model.x86 import debug, msr
from model.x86 import events as ev
from model.x86.arch import DF, TF
from model.x86.delivery import Event, Source
from model.x86.dispatch import deliver
from model.x86.state import CodeAddr, Cpu, Machine, Run


class ActionKind(StrEnum):
    """What an action does (the values are what traces and action keys show)."""

    STEP = "step"  # the CPU's next instruction (or pseudo-C statement)
    FAULT = "fault"  # the environment makes a step marked @fault(#X) fault
    MCE = "mce"  # the boundary events of model.x86.events.BoundaryEvent ...
    HELD_DB = "held-db"
    DB_DROPPED = "db-dropped"
    PENDING_NMI = "pending-nmi"
    DF = "df"
    NMI = "nmi"
    IPI = "ipi"
    EXT = "ext"
    TIMEOUT = "timeout"  # a wait_timeout gives up when nothing else can move


# A boundary event other than the instruction is one action of the same name.
_KIND_OF = {e: ActionKind(e.value) for e in ev.BoundaryEvent}


class Action(NamedTuple):
    kind: ActionKind
    cpu: int
    arg: int = 0  # the choice of a `choose`, or the vector of an external interrupt
    # The outcomes of the symbolic conditions this step meets, in order (checker.symbolic):
    # one action per feasible combination, so next_state stays deterministic.
    decisions: tuple[bool, ...] = ()
    # The outcomes of the open rules it meets (checker.symbolic.oracle), in order.
    oracles: tuple[bool, ...] = ()


@dataclass(frozen=True)
class Environment:
    """What the world outside the design may do, per CPU, within budgets."""

    # Each per-CPU budget is one number for every CPU, or a tuple with one number per CPU.
    nmi: int | tuple[int, ...] = 0
    mce: int | tuple[int, ...] = 0
    external: int | tuple[int, ...] = 0
    external_vectors: tuple[int, ...] = ()
    faults: int = 0
    # #DF raised at a boundary: a fault the model does not spell out
    double_faults: int | tuple[int, ...] = 0
    cpus: int | None = None
    quiet_without_idt: bool = False  # no NMI/#MC while IDTR is empty (boot's critical region)
    pic: bool = False  # external interrupts come from an 8259 PIC (any vector) not the LAPIC
    symbolic: tuple[str, ...] = ()  # inputs that are symbolic 64-bit values instead of samples
    # debug state armed on every CPU: `breakpoint` lines, and RFLAGS.TF set at start
    breakpoints: tuple[str, ...] = ()
    single_step: bool = False
    # IA32_FMASK.TF is not known: every CPU starts with it set in one initial state and
    # clear in another (the rest of FMASK as the design says), both explored.
    fmask_tf_either: bool = False
    # Words the design never wrote at the reset TR's TSS read as unknown values, every one
    # explored (Platform.unwritten_unknown); False assumes they read 0 (one answer).
    unwritten_unknown: bool = True
    # The property file sets its event budgets (nmi, mce, external) to 0 on purpose: no
    # vacuity warning for "no asynchronous event delivered" (checker.interface.Eventful).
    events_off: bool = False


# Enum members as plain names (a look-up on the enum class costs ~10x a global read in
# Python 3.11: EnumType.__getattr__); read for every CPU of every state and every step.
_STEP, _FAULT, _TIMEOUT = ActionKind.STEP, ActionKind.FAULT, ActionKind.TIMEOUT
_NMI, _MCE, _EXT, _DF, _IPI = (
    ActionKind.NMI, ActionKind.MCE, ActionKind.EXT, ActionKind.DF, ActionKind.IPI
)
_PENDING_NMI, _HELD_DB, _DB_DROPPED = (
    ActionKind.PENDING_NMI, ActionKind.HELD_DB, ActionKind.DB_DROPPED
)
_RUNNING, _HALTED, _SHUTDOWN = Run.RUNNING, Run.HALTED, Run.SHUTDOWN
_INSTRUCTION = ev.BoundaryEvent.INSTRUCTION
_EXTERNAL = ev.BoundaryEvent.EXTERNAL
BUDGETS_PER_CPU = 4  # nmi, mce, external, double faults
WAIT_OPS = frozenset({"c.wait_until", "c.wait_timeout", "wait_until", "wait_timeout"})
PER_CPU_BUDGETS = ("nmi", "mce", "external", "double_faults")


# A CPU record, its budgets and whether faults are left, and its actions for them: those
# before a wait's step, the wait (None: no wait) and those after its step.
_Known = tuple[
    Cpu, tuple[int, ...], bool, tuple[Action, ...], Instr | None, tuple[Action, ...]
]


class TransitionRelation:
    """Initial states, enabled actions and successors of a design (the core of
    `checker.interface.TransitionSystem`)."""

    def __init__(self, design: Design, env: Environment):
        self.design = design
        self.env = env
        ncpus = env.cpus or design.cpus
        for key in PER_CPU_BUDGETS:
            value = getattr(env, key)
            if isinstance(value, tuple) and len(value) != ncpus:
                raise ModelInputError(
                    f"environment.{key} lists {len(value)} budgets for {ncpus} CPUs",
                    f"environment.{key}",
                )
        self.layout: Layout = build_layout(design, ncpus)
        self.platform = platform_of(self.layout, _environment_breakpoints(env))
        if env.unwritten_unknown != self.platform.unwritten_unknown:
            self.platform = replace(self.platform, unwritten_unknown=env.unwritten_unknown)
        unknown = [n for n in env.symbolic if n not in design.inputs]
        if unknown:
            known = ", ".join(sorted(design.inputs)) or "none"
            raise ModelInputError(
                f"design {design.name!r} has no input {unknown[0]!r} (inputs: {known})",
                "environment.symbolic",
            )
        self.interp = Interpreter(self.layout, self.platform, frozenset(env.symbolic))
        # A design that may deliver by FRED meets open rules (checker.symbolic.oracle):
        # its concrete states' actions are run to find them, as symbolic states' are.
        self.forks = design.fred_possible
        self.solver = Solver()
        self.ncpus = ncpus
        # Successors already worked out for one state (the last whose symbolic actions
        # were expanded, or whose persistent sets were judged): next_state reuses them.
        self._memo_of: SysState | None = None
        self._memo: dict[Action, SysState] = {}
        # _reads_unknown of the last state asked (actions, then next_state per action, ask
        # it of one state in a row); the state is kept, so its identity is not reused.
        self._unknown_of: SysState | None = None
        self._unknown = False
        # States whose canonical form is known to need no renaming (TransitionRelation._hint),
        # by id, each with the state itself (which keeps the id from being reused).
        self._hints: dict[int, tuple[SysState, _Hint | None]] = {}
        # Per CPU index: the actions worked out for a CPU record, by the record's value
        # (a step makes a new record object, but records recur: kexec-4 has a few hundred
        # per CPU), with the budgets they were for (TransitionRelation.base_actions).
        self._cpu_actions: list[dict[Cpu, _Known]] = [{} for _ in range(ncpus)] if ncpus > 1 else []
        # Each CPU's plain step and fault actions, made once (actions are values: a
        # NamedTuple built per state costs more than the tuple look-up).
        self._step_action = tuple(Action(_STEP, i) for i in range(ncpus))
        self._fault_action = tuple(Action(_FAULT, i) for i in range(ncpus))
        self._event_action = {
            (e, i): Action(_KIND_OF[e], i) for e in _KIND_OF for i in range(ncpus)
        }

    # -- TransitionSystem ----------------------------------------------------------------------
    def init_states(self) -> Sequence[SysState]:
        machines, values = initial_machines(self.layout)
        env = self.env
        per_cpu = (env.nmi, env.mce, env.external, env.double_faults)
        budgets = tuple(
            b[i] if isinstance(b, tuple) else b for i in range(self.ncpus) for b in per_cpu
        ) + (env.faults,)
        if env.single_step:
            machines = [_with_single_step(m) for m in machines]
        if env.fmask_tf_either:
            machines = [
                _with_fmask(m, fmask) for m in machines
                for fmask in (self.platform.fmask | TF, self.platform.fmask & ~TF)
            ]
        return [SysState(m, values, budgets) for m in machines]

    def actions(self, s: SysState) -> Sequence[Action]:
        base = self.base_actions(s)
        if not s.symbolic and not self.forks and not self._reads_unknown(s):
            return base
        # A symbolic state: run each step to find the symbolic conditions it meets, and
        # offer one action per feasible combination of outcomes (z3 decides feasibility).
        self._memo_of, self._memo = s, {}
        out: list[Action] = []
        for a in base:
            pending: list[tuple[tuple[bool, ...], tuple[bool, ...]]] = [((), ())]
            while pending:
                choices, oracles = pending.pop()
                tried = a._replace(decisions=choices, oracles=oracles)
                try:
                    succ, _taken = self.run(s, tried)
                except NeedDecision as need:
                    if sym.is_oracle(need.cond):
                        # An open rule (checker.symbolic.oracle): both outcomes.
                        pending.append((choices, (*oracles, False)))
                        pending.append((choices, (*oracles, True)))
                        continue
                    taken = need.taken if need.taken is not None else self._taken(s, tried)
                    prior = (*s.path, *taken)
                    # The prefix is satisfiable, so when one outcome is not the other is.
                    if self.solver.satisfiable((*prior, need.cond)):
                        if self.solver.satisfiable((*prior, sym.lnot(need.cond))):
                            pending.append(((*choices, False), oracles))
                        pending.append(((*choices, True), oracles))
                    else:
                        pending.append(((*choices, False), oracles))
                    continue
                except Infeasible:
                    continue
                done = tried
                self._memo[done] = succ
                out.append(done)
        return out

    def _taken(self, s: SysState, a: Action) -> list[Any]:
        """The conditions the decided prefix of `a` took (to extend them by one)."""
        d = Decisions(a.decisions, a.oracles)
        token = sym._current.set(d)
        try:
            self.raw_next(s, a)
        except (NeedDecision, Infeasible):
            pass
        finally:
            sym._current.reset(token)
        return d.taken

    def run(self, s: SysState, a: Action) -> tuple[SysState, list[Any]]:
        """Run one action under its decisions; the successor carries the conditions taken
        in its path condition, pruned and canonically named."""
        made = sym.VARS_MADE
        succ, d = run_with(a.decisions, self.raw_next, s, a, oracles=a.oracles)
        if d.index < len(a.decisions) or d.oracle_index < len(a.oracles):
            raise Infeasible()  # more decisions than the step meets: not this action
        taken = tuple(dict.fromkeys(
            c for c in d.taken if isinstance(c, Term) and c not in s.path
        )) if d.taken else ()  # (with the conditions the step assumed: an input's range)
        if not (s.symbolic or taken or succ.symbolic or s.path):
            return succ, d.taken  # a concrete step whose only decisions were oracles
        if self.interp.unique_names:
            return succ._replace(path=s.path + taken), d.taken
        hint = self._hint(s) if made == sym.VARS_MADE else None
        if hint is not None and not taken and _still_there(succ, hint):
            # No condition taken and no symbol made: the successor's symbols are some of
            # its state's, which were all canonically named, and those the path condition
            # needs are all still there: it is its own canonical form.
            self._hints[id(succ)] = (succ, hint)
            return succ, d.taken
        path = s.path + taken
        succ = succ._replace(path=path)
        if taken:
            succ = self._pin(succ, taken)
            if (
                hint is not None and succ.path is path and not sym.pinned(taken)
                and all(c.names for c in taken) and _still_there(succ, hint.all())
            ):
                # The same with conditions taken (none pinning a symbol): every symbol is
                # still there, so every condition stays, named as it is, in order.
                every = hint.all()
                succ = succ._replace(path=tuple(sorted(set(path), key=repr)))
                self._hints[id(succ)] = (succ, every)
                return succ, d.taken
        return canonical(succ), d.taken

    def _hint(self, s: SysState) -> _Hint | None:
        """Where the symbols of a canonical symbolic state sit, when every successor that
        takes no condition and makes no symbol is its own canonical form as long as they
        are there (`_still_there`): its symbols and those of its path condition all have
        their base names (NAME, never NAME#k: no order of appearance can number them
        differently) and no condition pins a symbol to one value. None for any other
        state."""
        known = self._hints.get(id(s))
        if known is not None and known[0] is s:
            return known[1]
        hint = None
        if s.symbolic and not sym.pinned(s.path):
            names = sym.names_of(s.machine, s.vars, s.lazy)
            everything = (*names, *sym.names_in_order(s.path))
            if names and all("#" not in n for n in everything):
                hint = _Hint(_locate(s, names), bool(s.path))
        if len(self._hints) >= HINTS_LIMIT:
            for key in list(islice(self._hints, HINTS_LIMIT // 4)):
                del self._hints[key]  # the oldest quarter (see checker.symbolic._NAMES)
        self._hints[id(s)] = (s, hint)
        return hint

    def _pin(self, s: SysState, taken: tuple[Any, ...]) -> SysState:
        """When a step took `f(x) == c` for a single symbol x (an index, a vector), x may
        now have one possible value: ask z3, and if so add `x == value` to the path so
        canonical() substitutes it and the state becomes concrete again."""
        names: set[str] = set()
        for c in taken:
            if c.op == "eq":
                found = sym.symbols(c)
                if len(found) == 1:
                    names |= found
        extra = []
        for name in sorted(names):
            value = self.solver.pinned_value(s.path, name)
            if value is not None:
                extra.append(sym.eq(sym.var(name), value))
        return s._replace(path=s.path + tuple(extra)) if extra else s

    def base_actions(self, s: SysState) -> list[Action]:
        out: list[Action] = []
        m = s.machine
        b = s.budgets
        faults = b[-1] != 0
        cached = self._cpu_actions
        for i, cpu in enumerate(m.cpus):
            if not cached:  # one CPU: every step changes its record, nothing to reuse
                self._one_cpu_actions(s, i, cpu, b, out)
                continue
            # A step changes one CPU record: the others' actions are those worked out for
            # the very same record (and budgets) before, unless they read the state.
            # A wait's readiness is read afresh each time (it reads variables).
            known = cached[i].get(cpu)
            base = i * BUDGETS_PER_CPU
            if (
                known is not None and known[2] == faults
                and known[1] == b[base:base + BUDGETS_PER_CPU]
            ):
                out.extend(known[3])
                wait = known[4]
                if wait is not None:
                    if self.interp.wait_ready(s, i, wait):
                        out.append(self._step_action[i])
                    out.extend(known[5])
                continue
            start = len(out)
            own, at = self._one_cpu_actions(s, i, cpu, b, out)
            if own is False:
                continue
            if len(cached[i]) >= CPU_ACTIONS_LIMIT:
                cached[i].clear()
            if own is True:
                known = (cpu, b[base:base + BUDGETS_PER_CPU], faults, tuple(out[start:]), None, ())
            else:  # a wait: the actions before its step, the wait, and those after it
                ready = len(out) > at and out[at].kind is _STEP and out[at].cpu == i
                after = at + 1 if ready else at
                known = (
                    cpu, b[base:base + BUDGETS_PER_CPU], faults, tuple(out[start:at]), own,
                    tuple(out[after:]),
                )
            cached[i][cpu] = known
        if not out:
            for i, cpu in enumerate(m.cpus):
                if cpu.run is _RUNNING:
                    ins = self.interp.instr_at(cpu.pc)
                    if ins is not None and ins.op == "c.wait_timeout":
                        out.append(Action(_TIMEOUT, i))
        return out

    def _one_cpu_actions(
        self, s: SysState, i: int, cpu: Cpu, b: tuple[int, ...], out: list[Action]
    ) -> tuple[bool | Instr, int]:
        """Append CPU i's actions. True when they depend on nothing but its record, its
        budgets and whether faults are left (so they may be reused for the same record);
        a wait's instruction when they depend besides on its readiness only, with where
        its step goes in `out`; False otherwise."""
        env = self.env
        base = i * BUDGETS_PER_CPU
        quiet = env.quiet_without_idt and cpu.idtr is None and not cpu.fred
        events = ev.at_boundary(
            cpu,
            # The environment raises #MC only while CR4.MCE is set (otherwise it would
            # be a shutdown the design cannot prevent).
            machine_check=bool(b[base + 1]) and cpu.cr4_mce and not quiet,
            double_fault=bool(b[base + 3]),
            nmi=bool(b[base]) and not quiet,
            external=bool(b[base + 2]),
        )
        own: bool | Instr = True
        at = len(out)
        for e in events:
            if e is _INSTRUCTION:
                at = len(out)
                own = self._instruction_actions(s, i, cpu.pc, out)
            elif e is _EXTERNAL:
                for v in env.external_vectors:
                    if env.pic or ev.lapic_accepts(v):
                        out.append(Action(_EXT, i, v))
            else:
                out.append(self._event_action[e, i])
        return own, at

    def _instruction_actions(
        self, s: SysState, i: int, pc: CodeAddr, out: list[Action]
    ) -> bool | Instr:
        """The actions of CPU i's next instruction: one step (one per choice of a
        `choose`), none while a wait is not ready, and the environment's fault. What they
        read beyond the CPU's record: nothing (True), a wait's condition (the wait), or a
        choice's range (False)."""
        ins = self.interp.instr_at(pc)
        if ins is None:
            out.append(self._step_action[i])  # the CPU goes wild (Interpreter.wild)
            return True
        own: bool | Instr = True
        if ins.op in ("c.wait_until", "c.wait_timeout"):
            own = ins
            if self.interp.wait_ready(s, i, ins):
                out.append(self._step_action[i])
        elif ins.op in isa.CHOICE_OPS:
            own = False
            n = self.interp.choices(s, i, ins)
            out.extend(Action(_STEP, i, k) for k in range(n))
        else:
            out.append(self._step_action[i])
        if ins.fault is not None and s.budgets[-1]:
            out.append(self._fault_action[i])
        return own

    def _reads_unknown(self, s: SysState) -> bool:
        """May a step of `s` read an unknown never-written word (unless the property file
        assumes they read 0: `environment.unwritten_unknown = false`)?"""
        if not self.platform.unwritten_unknown:
            return False
        if s is not self._unknown_of:
            self._unknown_of, self._unknown = s, _reads_unwritten(s)
        return self._unknown

    def next_state(self, s: SysState, a: Action) -> SysState:
        if self._memo_of is s:
            known = self._memo.get(a)
            if known is not None:
                return known
        if s.symbolic or a.decisions or a.oracles or (
            self.platform.unwritten_unknown  # _reads_unknown, inlined (a call per step)
            and (self._unknown if s is self._unknown_of else self._reads_unknown(s))
        ):
            return self.run(s, a)[0]
        try:
            if a.kind is _STEP:  # raw_next's commonest case, without the call
                try:
                    succ = self.interp.step(s, a.cpu, a.arg)
                except Blocked:  # pragma: no cover - actions() only offers ready waits
                    succ = s
            else:
                succ = self.raw_next(s, a)
        except NeedDecision as need:  # pragma: no cover - a design bug, reported plainly
            raise InputError(
                f"a step decides on the symbolic value {need.cond!r} it has just made; "
                "split it into two steps", self.design.path, 1,
            ) from None
        return canonical(succ) if succ.symbolic and not self.interp.unique_names else succ

    def successor(self, s: SysState, a: Action) -> SysState:
        """next_state, remembered for `s` until another state's successors are asked
        (partial-order reduction judges a step's successor, then the explorer takes it)."""
        if self._memo_of is not s:
            self._memo_of, self._memo = s, {}
        succ = self._memo.get(a)
        if succ is None:
            succ = self._memo[a] = self.next_state(s, a)
        return succ

    def raw_next(self, s: SysState, a: Action) -> SysState:
        i = a.cpu
        if s.lazy and a.kind != _STEP:
            s = self.interp.settle_flags(s, i)  # an event interrupts: flags become real bits
        p = self.platform
        m = s.machine
        kind = a.kind
        if kind == _STEP:
            try:
                return self.interp.step(s, i, a.arg)
            except Blocked:  # pragma: no cover - actions() only offers ready waits
                return s
        if kind == _FAULT:
            s = self._spend(s, -1)
            return self.interp.environment_fault(s, i)
        base = i * BUDGETS_PER_CPU
        if kind == _NMI:
            return self._spend(s, base).with_machine(ev.nmi_arrives(p, m, i))
        if kind == _MCE:
            return self._spend(s, base + 1).with_machine(ev.machine_check_arrives(p, m, i))
        if kind == _EXT:
            require(ev.interrupts_enabled(m.cpus[i]))  # IF may be symbolic (a guest's RFLAGS)
            return self._spend(s, base + 2).with_machine(
                ev.external_arrives(p, m, i, a.arg, pic=self.env.pic)
            )
        if kind == _DF:
            df = Event(Source.EXCEPTION, DF, 0)
            return self._spend(s, base + 3).with_machine(deliver(p, m, i, df, m.cpus[i].pc))
        if kind == _IPI:
            return s.with_machine(ev.nmi_ipi_arrives(p, m, i))
        if kind == _PENDING_NMI:
            return s.with_machine(ev.deliver_pending_nmi(p, m, i))
        if kind == _HELD_DB:
            return s.with_machine(ev.deliver_held_db(p, m, i))
        if kind == _DB_DROPPED:
            return s.with_machine(m.with_cpu(i, debug.drop_unsure_db(m.cpus[i])))
        if kind == _TIMEOUT:
            return self.interp.timeout(s, i)
        raise ValueError(kind)

    @staticmethod
    def _spend(s: SysState, slot: int) -> SysState:
        b = list(s.budgets)
        b[slot] -= 1
        return s._replace(budgets=tuple(b))

    def is_terminal(self, s: SysState) -> bool:
        """Every CPU halted or shut down: nothing is left to run (not a deadlock). A CPU
        that went wild is not done, so a state it stops in is a deadlock."""
        return all(c.run is _HALTED or c.run is _SHUTDOWN for c in s.machine.cpus)


def _environment_breakpoints(env: Environment) -> tuple[BreakpointDecl, ...]:
    """`environment.breakpoints`, each written as a design's `breakpoint` line."""
    out = []
    for k, text in enumerate(env.breakpoints):
        try:
            out.append(parse_breakpoint(text, Loc("environment.breakpoints", k + 1)))
        except InputError as exc:
            raise ModelInputError(f"{text!r}: {exc.message}", "environment.breakpoints") from None
    return tuple(out)


def _with_single_step(m: Machine) -> Machine:
    """Every CPU starts with RFLAGS.TF set (`environment.single_step`)."""
    return m._replace(cpus=tuple(
        c._replace(rflags=c.rflags | TF) if isinstance(c.rflags, int) else c for c in m.cpus
    ))


def _reads_unwritten(s: SysState) -> bool:
    """May a step of `s` read a word the design never wrote, an unknown value it decides
    on at once? A delivery on a CPU with no TR loaded reads RSP0/IST from linear memory
    (model.x86.delivery.reset_tss_slot): such states take the symbolic path, whose steps
    split on the decisions they meet."""
    # (a loop, not any() over a generator: this runs once per state)
    for c in s.machine.cpus:  # noqa: SIM110
        if c.tr is None and c.idtr is not None:
            return True
    return False


def _with_fmask(m: Machine, fmask: int) -> Machine:
    """Every CPU starts with IA32_FMASK = `fmask`, as if written before the design starts
    (`environment.fmask_tf_either`); a WRMSR of the design's still replaces it."""
    return m._replace(cpus=tuple(
        c._replace(msrs=tuple(sorted({**dict(c.msrs), msr.IA32_FMASK: fmask}.items())))
        for c in m.cpus
    ))


HINTS_LIMIT = 1 << 17
CPU_ACTIONS_LIMIT = 1 << 16  # records remembered per CPU index before starting afresh
# The parts of a state symbols can sit in (SysState fields machine, vars and lazy: the path
# condition is handled apart, budgets and flags are numbers).
_SYMBOL_FIELDS = (0, 1, 6)
assert tuple(SysState._fields[i] for i in _SYMBOL_FIELDS) == ("machine", "vars", "lazy")


class _Hint(NamedTuple):
    """Where each symbol of a state first sits (the indices leading to a term that
    mentions it); `every`: the state has a path condition, so the successor must keep every
    symbol for its path to stay as it is (without one, any symbol left will do)."""

    places: tuple[tuple[str, tuple[int, ...]], ...]
    every: bool

    def all(self) -> _Hint:
        """The hint that needs every symbol to stay."""
        return self if self.every else _Hint(self.places, True)


def _locate(s: SysState, names: tuple[str, ...]) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """For each name, the indices leading to the first term (depth first) that mentions it."""
    places: dict[str, tuple[int, ...]] = {}

    def find(value: Any, at: tuple[int, ...]) -> None:
        if type(value) is Term:
            for n in value.names:
                places.setdefault(n, at)
        elif isinstance(value, tuple):
            if not any(n not in places for n in sym.names_in_order(value)):
                return
            for i, item in enumerate(value):
                find(item, (*at, i))

    for i in _SYMBOL_FIELDS:
        find(s[i], (i,))
    return tuple((n, places[n]) for n in names)


def _still_there(s: SysState, hint: _Hint) -> bool:
    """Does the state still mention the hinted symbols where its predecessor did (all of
    them when `hint.every`, else at least one)?"""
    for name, at in hint.places:
        value: Any = s
        try:
            for i in at:
                value = value[i]
        except (IndexError, TypeError, KeyError):
            value = None
        there = type(value) is Term and name in value.names
        if there and not hint.every:
            return True
        if not there and hint.every:
            return False
    return hint.every


def canonical(s: SysState) -> SysState:
    """One representative of states equal up to the naming of symbols and to constraints
    on symbols that no longer matter: the path keeps only conditions connected to a live
    symbol, and symbols are renamed NAME, NAME#1, ... in order of first appearance."""
    fixed = sym.pinned(s.path)
    if fixed:
        # A symbol the path pins to one value is that value: substitute it everywhere, so
        # the state is as concrete as it can be (and fingerprints like the concrete one).
        path = tuple(c for c in (sym.substitute(c, fixed) for c in s.path) if c is not True)
        s = s._replace(
            machine=sym.substitute_all(s.machine, fixed),
            vars=sym.substitute_all(s.vars, fixed),
            lazy=sym.substitute_all(s.lazy, fixed),
            path=path,
        )
    first = sym.names_of(s.machine, s.vars, s.lazy)
    if not first:
        return s._replace(path=(), symbolic=False) if s.symbolic or s.path else s
    path_in = s.path
    if not path_in and all("#" not in n for n in first):
        # Every live symbol already has its canonical name (NAME, one per input: first
        # appearance cannot number them differently) and there is no path to prune.
        return s if s.symbolic else s._replace(symbolic=True)
    # Keep the conditions that reach a live symbol through shared symbols.
    live = set(first)
    conds = [(c, set(sym.names_in_order(c))) for c in path_in]
    reach = live
    changed = True
    kept: set[int] = set()
    while changed:
        changed = False
        for k, (_c, names) in enumerate(conds):
            if k not in kept and not names.isdisjoint(reach):
                kept.add(k)
                reach |= names
                changed = True
    order: list[str] = list(first)
    for k in sorted(kept, key=lambda k: repr(conds[k][0])):
        order.extend(n for n in sym.names_in_order(conds[k][0]) if n not in order)
    mapping: dict[str, str] = {}
    used: set[str] = set()
    for name in order:
        base = name.split("#")[0]
        fresh, n = base, 1
        while fresh in used:
            fresh = f"{base}#{n}"
            n += 1
        used.add(fresh)
        mapping[name] = fresh
    path = tuple(sorted({sym.rename(conds[k][0], mapping) for k in kept}, key=repr))
    if all(k == v for k, v in mapping.items()):
        return s._replace(path=path, symbolic=True)
    return s._replace(
        machine=sym.rename(s.machine, mapping),
        vars=sym.rename(s.vars, mapping),
        path=path,
        symbolic=True,
        lazy=sym.rename(s.lazy, mapping),
    )


