"""The design, the machine and the environment as one transition system.

An action is one atomic step of one CPU: its next instruction (or one pseudo-C statement),
the environment making a marked step fault, or the delivery of an event the environment
may raise at that boundary (NMI, #MC, an external interrupt), an NMI IPI arriving, a
latched NMI or held-back #DB being taken, or a wait timing out when nothing else can move.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from checker import symbolic as sym
from checker.errors import InputError, ModelInputError
from checker.interface import SymmetricVocabulary
from checker.symbolic import Decisions, Infeasible, NeedDecision, Solver, Term, require, run_with
from model.lang.ir import Design
from model.system.interp import TIMED_OUT, Blocked, Interpreter, SysState
from model.system.layout import Layout, build_layout, initial_machines, platform_of
from model.system.por import Persistence
from model.system.symmetry import CpuSymmetry
from model.x86 import events as ev
from model.x86.arch import DF, FLAG_NAMES, IF, vector_name
from model.x86.delivery import IST_WITHOUT_TSS, Event, Source, deliver
from model.x86.memory import read, region_name
from model.x86.state import REGISTERS, CodeAddr, Frame, Machine, Run, Value


class Action(NamedTuple):
    kind: str  # step, fault, nmi, mce, ext, ipi, pending-nmi, held-db, timeout
    cpu: int
    arg: int = 0  # the choice of a `choose`, or the vector of an external interrupt
    # The outcomes of the symbolic conditions this step meets, in order (checker.symbolic):
    # one action per feasible combination, so next_state stays deterministic.
    decisions: tuple[bool, ...] = ()


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


BUDGETS_PER_CPU = 4  # nmi, mce, external, double faults
_WAIT_OPS = frozenset({"c.wait_until", "c.wait_timeout", "wait_until", "wait_timeout"})
PER_CPU_BUDGETS = ("nmi", "mce", "external", "double_faults")


class DesignSystem:
    """A `checker.interface.TransitionSystem` over a parsed design."""

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
        self.platform = platform_of(self.layout)
        unknown = [n for n in env.symbolic if n not in design.inputs]
        if unknown:
            known = ", ".join(sorted(design.inputs)) or "none"
            raise ModelInputError(
                f"design {design.name!r} has no input {unknown[0]!r} (inputs: {known})",
                "environment.symbolic",
            )
        self.interp = Interpreter(self.layout, self.platform, frozenset(env.symbolic))
        self.solver = Solver()

        self._successors: dict[Action, SysState] = {}  # of the state whose actions were last asked
        self._successors_of: SysState | None = None
        self.ncpus = ncpus
        self.var_names = [v.name for v in design.variables]
        self.persistence = Persistence(design, self.layout, self.platform, BUDGETS_PER_CPU)
        self._por_of: SysState | None = None  # successors persistent_sets computed
        self._por_succ: dict[Action, SysState] = {}
        # The design's `symmetric` declaration: CPUs 1..n-1 are interchangeable.
        self.symmetry = (
            CpuSymmetry(self.layout, self.platform, BUDGETS_PER_CPU)
            if design.symmetric and ncpus > 2 else None
        )

    # -- TransitionSystem ----------------------------------------------------------------------
    def init_states(self) -> Sequence[SysState]:
        machines, values = initial_machines(self.layout)
        env = self.env
        per_cpu = (env.nmi, env.mce, env.external, env.double_faults)
        budgets = tuple(
            b[i] if isinstance(b, tuple) else b for i in range(self.ncpus) for b in per_cpu
        ) + (env.faults,)
        return [SysState(m, values, budgets) for m in machines]

    def actions(self, s: SysState) -> Sequence[Action]:
        base = self._base_actions(s)
        if not s.symbolic:
            return base
        # A symbolic state: run each step to find the symbolic conditions it meets, and
        # offer one action per feasible combination of outcomes (z3 decides feasibility).
        self._successors = {}
        self._successors_of = s
        out: list[Action] = []
        for a in base:
            pending: list[tuple[bool, ...]] = [()]
            while pending:
                choices = pending.pop()
                try:
                    succ, _taken = self._run(s, a._replace(decisions=choices))
                except NeedDecision as need:
                    prior = (*s.path, *self._taken(s, a._replace(decisions=choices)))
                    # The prefix is satisfiable, so when one outcome is not the other is.
                    if self.solver.satisfiable((*prior, need.cond)):
                        if self.solver.satisfiable((*prior, sym.lnot(need.cond))):
                            pending.append((*choices, False))
                        pending.append((*choices, True))
                    else:
                        pending.append((*choices, False))
                    continue
                except Infeasible:
                    continue
                done = a._replace(decisions=choices)
                self._successors[done] = succ
                out.append(done)
        return out

    def _taken(self, s: SysState, a: Action) -> list[Any]:
        """The conditions the decided prefix of `a` took (to extend them by one)."""
        d = Decisions(a.decisions)
        token = sym._current.set(d)
        try:
            self._raw_next(s, a)
        except (NeedDecision, Infeasible):
            pass
        finally:
            sym._current.reset(token)
        return d.taken

    def _run(self, s: SysState, a: Action) -> tuple[SysState, list[Any]]:
        """Run one action under its decisions; the successor carries the conditions taken
        in its path condition, pruned and canonically named."""
        succ, d = run_with(a.decisions, self._raw_next, s, a)
        if d.index < len(a.decisions):
            raise Infeasible()  # more decisions than the step meets: not this action
        taken = tuple(c for c in d.taken if isinstance(c, Term))
        path = s.path + taken
        succ = succ._replace(path=path)
        if taken and not self.interp.unique_names:
            succ = self._pin(succ, taken)
        if not self.interp.unique_names:
            succ = canonical(succ)
        return succ, d.taken

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
            model = self.solver.model(s.path, [name])
            if model is None:
                continue
            x = sym.var(name)
            if not self.solver.satisfiable((*s.path, sym.ne(x, model[name]))):
                extra.append(sym.eq(x, model[name]))
        return s._replace(path=s.path + tuple(extra)) if extra else s

    def _base_actions(self, s: SysState) -> list[Action]:
        out: list[Action] = []
        m = s.machine
        b = s.budgets
        env = self.env
        for i, cpu in enumerate(m.cpus):
            if cpu.run is Run.SHUTDOWN:
                continue
            base = i * BUDGETS_PER_CPU
            quiet = env.quiet_without_idt and cpu.idtr is None
            if b[base + 1] and cpu.cr4_mce and not quiet:
                # #MC outranks everything at a boundary (SDM §6.9 Table 6-2).
                out.append(Action("mce", i))
            if ev.db_due(cpu):
                out.append(Action("held-db", i))
                continue
            if ev.pending_nmi_due(cpu):
                out.append(Action("pending-nmi", i))
                continue
            if cpu.run is Run.RUNNING:
                ins = self.interp.instr_at(cpu.pc)
                if ins is not None:
                    if ins.op in ("c.wait_until", "c.wait_timeout"):
                        if self.interp.wait_ready(s, i, ins):
                            out.append(Action("step", i))
                    elif ins.op in (
                        "choose", "c.choose", "c.choose_range", "input", "c.input", "verw"
                    ):
                        n = self.interp.choices(s, i, ins)
                        out.extend(Action("step", i, k) for k in range(n))
                    else:
                        out.append(Action("step", i))
                    if ins.fault is not None and b[-1]:
                        out.append(Action("fault", i))
                else:
                    out.append(Action("step", i))  # reports the missing instruction
            if b[base + 3]:
                out.append(Action("df", i))
            if b[base] and not quiet and not (cpu.nmi_blocked and cpu.nmi_pending):
                out.append(Action("nmi", i))
            if cpu.ipi_nmi:
                out.append(Action("ipi", i))
            if b[base + 2] and ev.can_take_external(cpu):
                for v in env.external_vectors:
                    if env.pic or ev.lapic_accepts(v):
                        out.append(Action("ext", i, v))
        if not out:
            for i, cpu in enumerate(m.cpus):
                if cpu.run is Run.RUNNING:
                    ins = self.interp.instr_at(cpu.pc)
                    if ins is not None and ins.op == "c.wait_timeout":
                        out.append(Action("timeout", i))
        return out

    def next_state(self, s: SysState, a: Action) -> SysState:
        if self._por_of is s and a in self._por_succ:
            return self._por_succ[a]
        if s.symbolic or a.decisions:
            if self._successors_of is s and a in self._successors:
                return self._successors[a]
            return self._run(s, a)[0]
        try:
            succ = self._raw_next(s, a)
        except NeedDecision as need:  # pragma: no cover - a design bug, reported plainly
            raise InputError(
                f"a step decides on the symbolic value {need.cond!r} it has just made; "
                "split it into two steps", self.design.path, 1,
            ) from None
        return canonical(succ) if succ.symbolic and not self.interp.unique_names else succ

    def _raw_next(self, s: SysState, a: Action) -> SysState:
        i = a.cpu
        if s.lazy and a.kind != "step":
            s = self.interp.settle_flags(s, i)  # an event interrupts: flags become real bits
        p = self.platform
        m = s.machine
        kind = a.kind
        if kind == "step":
            try:
                return self.interp.step(s, i, a.arg)
            except Blocked:  # pragma: no cover - actions() only offers ready waits
                return s
        if kind == "fault":
            s = self._spend(s, -1)
            return self.interp.environment_fault(s, i)
        base = i * BUDGETS_PER_CPU
        if kind == "nmi":
            return self._spend(s, base)._replace(machine=ev.nmi_arrives(p, m, i))
        if kind == "mce":
            return self._spend(s, base + 1)._replace(machine=ev.machine_check_arrives(p, m, i))
        if kind == "ext":
            require(ev.interrupts_enabled(m.cpus[i]))  # IF may be symbolic (a guest's RFLAGS)
            return self._spend(s, base + 2)._replace(
                machine=ev.external_arrives(p, m, i, a.arg, pic=self.env.pic)
            )
        if kind == "df":
            df = Event(Source.EXCEPTION, DF, 0)
            return self._spend(s, base + 3)._replace(machine=deliver(p, m, i, df, m.cpus[i].pc))
        if kind == "ipi":
            return s._replace(machine=ev.nmi_ipi_arrives(p, m, i))
        if kind == "pending-nmi":
            return s._replace(machine=ev.deliver_pending_nmi(p, m, i))
        if kind == "held-db":
            return s._replace(machine=ev.deliver_held_db(p, m, i))
        if kind == "timeout":
            return self.interp.timeout(s, i)
        raise ValueError(kind)

    @staticmethod
    def _spend(s: SysState, slot: int) -> SysState:
        b = list(s.budgets)
        b[slot] -= 1
        return s._replace(budgets=tuple(b))

    # -- partial-order reduction (checker.interface.Reducible) --------------------------------
    def persistent_sets(
        self, s: SysState, actions: Sequence[Action], observed: frozenset[str] = frozenset()
    ) -> list[list[int]]:
        """One candidate per CPU whose enabled actions are all local to it, change none of
        the `observed` vocabulary names, and no other CPU can still reach into it
        (model.system.por)."""
        self._por_of, self._por_succ = s, {}

        def step(a: Action) -> SysState:
            succ = self._por_succ.get(a)
            if succ is None:
                succ = self._por_succ[a] = self.next_state(s, a)
            return succ

        return self.persistence.candidates(
            s, actions, step, _WAIT_OPS, self.interp.instr_at, observed
        )

    # -- symmetry (checker.interface.Symmetric) -------------------------------------------------
    def symmetry_vocabulary(self) -> SymmetricVocabulary | None:
        """How the vocabulary behaves when CPUs 1..n-1 are renumbered: per-CPU lists
        permute, frames' `cpu` and CPU records' `id` are CPU numbers, `running` takes one,
        and the design's `ids`/`masks` variables change; everything else is invariant."""
        if self.symmetry is None:
            return None
        ids, masks, _order = self.design.symmetry_vars
        per_cpu = {v.name for v in self.design.variables if v.per_cpu}
        # A per-CPU variable the design also names as ids/masks is not a plain sequence.
        sequences = frozenset({"cpus", "cpu"} | (per_cpu - set(ids) - set(masks)))
        changing = sequences | {"frames", "running", "frames_on"} | set(ids) | set(masks)
        return SymmetricVocabulary(
            permuted=frozenset(self.symmetry.permuted),
            invariant=frozenset(n for n in self.vocabulary_names() if n not in changing),
            sequences=sequences,
            collections=frozenset({"frames"}),
            # CPU numbers, and names of per-CPU instances ('nmi_ist[1]', 'idt_table[1]')
            index_fields=frozenset({"id", "cpu", "stack", "idt", "tss"}),
            index_arguments={"running": (0,)},
        )

    def representative(self, s: SysState) -> SysState:
        """The orbit's representative under renumbering CPUs 1..n-1 (model.system.symmetry)."""
        return s if self.symmetry is None else self.symmetry.representative(s)

    # -- symbolic witnesses ----------------------------------------------------------------------
    def statistics(self) -> dict[str, float | int]:
        """Solver statistics for the exploration's summary (z3 queries, cache hits, time)."""
        return self.solver.stats.as_dict()

    def possible(self, s: SysState, cond: Any) -> bool:
        """Is `cond` satisfiable together with the state's path condition?"""
        return self.solver.satisfiable((*s.path, cond))

    def witness(
        self, init: SysState, actions: Sequence[Action], bad: Sequence[Any] = ()
    ) -> dict[str, int] | None:
        """Concrete values for every symbolic input along a trace (named `input@step`),
        such that the same actions reach a state satisfying `bad` too: the trace is re-run
        with one symbol per input introduction and no pruning, and z3 solves the whole
        path condition at once. None when the trace introduced no symbol."""
        self.interp.unique_names = True
        try:
            state = init
            for k, a in enumerate(actions):
                self.interp.step_index = k + 1  # as the text trace numbers steps
                state = self._run(state, a)[0]
        finally:
            self.interp.unique_names = False
        names = {n for n in sym.symbols(state.path)} | sym.symbols((state.machine, state.vars))
        introduced = {n for n in names if "@" in n}
        if not introduced:
            return None
        conds = [*state.path, *bad]
        return self.solver.model(conds, introduced)

    def replay_concrete(
        self, init: SysState, actions: Sequence[Action], values: Mapping[str, int]
    ) -> SysState:
        """Re-run a trace with the witness's concrete values: no symbol, no z3."""
        self.interp.witness_values = dict(values)
        try:
            state = init
            for k, a in enumerate(actions):
                self.interp.step_index = k + 1  # as the text trace numbers steps
                state = self._raw_next(state, a._replace(decisions=()))
        finally:
            self.interp.witness_values = None
        return state

    def is_terminal(self, s: SysState) -> bool:
        """Every CPU halted or shut down: nothing is left to run (not a deadlock)."""
        return all(c.run is not Run.RUNNING for c in s.machine.cpus)

    # -- vocabulary ----------------------------------------------------------------------------
    def vocabulary_names(self) -> Mapping[str, str]:
        names = {
            "cpus": "the CPUs, each a record (see docs/design-language.md#vocabulary)",
            "cpu": "the same list, for cpu[1].halted",
            "ncpus": "the number of CPUs",
            "frames": (
                "live interrupt frames: cpu, vector, source, stack, clobbered, on_guest_stack, "
                "from_cpl, guest_chosen (its address derives from a symbolic guest input), "
                "on_hypervisor_stack, interrupted (the saved RIP, routine+index)"
            ),
            "frame_clobbered": "some live frame has been overwritten before its IRET",
            "frame_on_guest_stack": (
                "some live frame was pushed at ring 0 onto guest-controlled memory"
            ),
            "any_shutdown": "some CPU is in shutdown (triple fault)",
            "all_halted": "every CPU is halted or shut down",
            "incidents": (
                "sticky happenings: ist-without-tss, freed-init-code-executed, timeout-fired, ..."
            ),
            "timed_out": "a wait_timeout gave up",
            "ist_without_tss": "a delivery went through an IST slot with no TSS loaded",
            "freed_code_executed": "a CPU executed code in a freed init section",
            "assertion_failed": "an assert() in the design failed",
            "running": "running(cpu, routine): CPU cpu's next instruction is in routine",
            "frames_on": "frames_on(stack): how many live frames lie on a stack (instance name)",
            "nmi_frames": "how many live frames real NMIs pushed",
        }
        for v in self.design.variables:
            kind = "per-CPU list" if v.per_cpu else "global"
            names[v.name] = f"design variable ({kind})"
        return names

    def vocabulary(self, s: SysState) -> Mapping[str, Any]:
        return _Vocabulary(self, s)

    # -- descriptions --------------------------------------------------------------------------
    def describe_state(self, s: SysState) -> Mapping[str, str | int | bool]:
        m = s.machine
        out: dict[str, str | int | bool] = {}
        for i, c in enumerate(m.cpus):
            out[f"cpu{i}.pc"] = self._where(c.pc)
            out[f"cpu{i}.cpl"] = c.cpl
            out[f"cpu{i}.rsp"] = self._addr(c.rsp)
            out[f"cpu{i}.flags"] = (
                " ".join(n for n, bit in FLAG_NAMES if c.rflags & bit) or "-"
                if isinstance(c.rflags, int) else f"symbolic {c.rflags!r}"
            )
            out[f"cpu{i}.run"] = c.run.name.lower()
            out[f"cpu{i}.nmi"] = (
                ("blocked" if c.nmi_blocked else "open") + (" +latched" if c.nmi_pending else "")
            )
            out[f"cpu{i}.mcip"] = c.mcip
            out[f"cpu{i}.idtr"] = c.idtr or "empty"
            out[f"cpu{i}.tr"] = c.tr or "none"
            regs = {n: c.reg(n) for n in ("rax", "rcx", "rdi", "r11") if c.reg(n) != 0}
            if regs:
                out[f"cpu{i}.regs"] = " ".join(f"{k}={self._value(v)}" for k, v in regs.items())
        out["frames"] = "; ".join(self._frame(f) for f in m.frames) or "none"
        for name in self.var_names:
            out[f"var.{name}"] = self._var_text(s, name)
        out["incidents"] = ", ".join(m.incidents) or "none"
        return out

    def describe_action(self, s: SysState, a: Action) -> Mapping[str, str | int | bool]:
        m = s.machine
        cpu = m.cpus[a.cpu]
        out: dict[str, str | int | bool] = {"cpu": a.cpu, "kind": a.kind}
        if a.kind in ("step", "fault"):
            ins = self.interp.instr_at(cpu.pc)
            text = ins.text if ins is not None else "?"
            if a.kind == "fault" and ins is not None and ins.fault is not None:
                text = f"{text}  -> raises {vector_name(ins.fault)}"
            elif ins is not None and ins.op in ("choose", "c.choose", "c.choose_range"):
                text = f"{text}  [choice {a.arg + 1}]"
            elif ins is not None and ins.op == "verw":
                text = f"{text}  [ZF={a.arg}]"
            out["label"] = f"cpu{a.cpu}: {text}"
            if ins is not None:
                # a macro's line: the invocation, with the macro's own line(s) beside it
                out["file"] = ins.loc.site.file
                out["line"] = ins.loc.site.line
                if ins.loc.via is not None:
                    out["macro"] = ins.loc.macro_lines()
            out["routine"] = cpu.pc.routine
        elif a.kind == "ext":
            note = {2: " (a fake NMI)", 18: " (a fake #MC)"}.get(a.arg, "")
            out["label"] = f"cpu{a.cpu}: external interrupt, vector {a.arg:#x}{note}"
        else:
            out["label"] = f"cpu{a.cpu}: " + {
                "nmi": "NMI arrives",
                "df": "a double fault is raised",
                "mce": "#MC arrives",
                "ipi": "NMI IPI arrives",
                "pending-nmi": "latched NMI is taken",
                "held-db": "held-back #DB is taken",
                "timeout": "the wait times out",
            }[a.kind]
        damage = self.damage(s, self.next_state(s, a))
        if damage:
            out["damage"] = damage
        return out

    def damage(self, before: SysState, after: SysState) -> str:
        """What an action broke: frames it clobbered, frames it put on guest memory, a
        triple fault, a new incident."""
        notes: list[str] = []
        old = set(before.machine.frames)
        for f in after.machine.frames:
            if f.clobbered and f._replace(clobbered=False) in old:
                notes.append(f"clobbers {self._frame(f)}")
            if f.on_guest_stack and f not in old and f._replace(clobbered=False) not in old:
                notes.append(f"pushes {self._frame(f)} onto guest-controlled memory")
        for i, (c0, c1) in enumerate(zip(before.machine.cpus, after.machine.cpus, strict=True)):
            if c1.run is Run.SHUTDOWN and c0.run is not Run.SHUTDOWN:
                notes.append(f"cpu{i} shuts down (triple fault)")
        for inc in after.machine.incidents:
            if inc not in before.machine.incidents:
                notes.append(inc)
        return "; ".join(notes)

    # -- review and coverage (optional TransitionSystem methods) ----------------------------------
    def action_key(self, s: SysState, a: Action) -> str:
        """A stable name for an action that survives edits to the design (for replay)."""
        key = f"{a.kind}:{a.cpu}:{a.arg}"
        if a.decisions:
            key += ":" + "".join("T" if d else "F" for d in a.decisions)
        return key

    def inspect_state(self, s: SysState) -> dict[str, Any]:
        """A structured, JSON-able view of a state for the review report: CPUs with their
        registers and design line, stacks with their written words and live frames."""
        m = s.machine
        cpus = []
        for i, c in enumerate(m.cpus):
            ins = self.interp.instr_at(c.pc)
            cpus.append({
                "id": i,
                "pc": str(c.pc),
                "routine": c.pc.routine,
                "instruction": ins.text if ins else None,
                "file": ins.loc.site.file if ins else None,
                "line": ins.loc.site.line if ins else None,
                "macro": (ins.loc.macro_lines() or None) if ins else None,
                "cpl": c.cpl,
                "rsp": self._addr(c.rsp),
                "rflags": self._value(c.rflags),
                "flags": [n for n, bit in FLAG_NAMES if c.rflags & bit]
                if isinstance(c.rflags, int) else [repr(c.rflags)],
                "run": c.run.name.lower(),
                "nmi_blocked": c.nmi_blocked,
                "nmi_pending": c.nmi_pending,
                "mcip": c.mcip,
                "shadow": c.shadow.name.lower(),
                "idtr": c.idtr,
                "tr": c.tr,
                "gs_swapped": c.gs_swapped,
                "ipi_pending": c.ipi_nmi,
                "registers": {n: self._value(c.reg(n)) for n in REGISTERS},
            })
        stacks = []
        for r in self.platform.regions:
            words = [
                {"address": f"{a:#x}", "offset": a - r.lo, "value": self._value(v)}
                for a, v in m.memory if r.lo <= a < r.hi
            ]
            frames = [self._frame_record(f) for f in m.frames if r.lo <= f.lo < r.hi]
            rsps = [
                i for i, c in enumerate(m.cpus) if isinstance(c.rsp, int) and r.lo <= c.rsp <= r.hi
            ]
            if words or frames or rsps:
                stacks.append({
                    "name": r.name, "owner": r.owner, "lo": f"{r.lo:#x}", "size": r.size,
                    "words": words, "frames": frames, "rsp_of": rsps,
                })
        elsewhere = [
            self._frame_record(f) for f in m.frames if self.platform.region_at(f.lo) is None
        ]
        if elsewhere:
            stacks.append({"name": "guest memory", "owner": "guest", "lo": None, "size": None,
                           "words": [], "frames": elsewhere, "rsp_of": []})
        return {
            "cpus": cpus,
            "stacks": stacks,
            "variables": {n: self._var_text(s, n) for n in self.var_names},
            "incidents": list(m.incidents),
            "budgets": list(s.budgets),
        }

    def coverage(self, states: Iterable[SysState]) -> dict[str, Any]:
        """What an exploration reached: design lines (an instruction some CPU was about to
        execute), routines, IDT vectors (frames seen) and environment events (enabled
        actions), against everything the design contains."""
        lines: set[tuple[str, int]] = set()
        routines: set[str] = set()
        vectors: set[int] = set()
        events: set[str] = set()
        for s in states:
            for c in s.machine.cpus:
                routines.add(c.pc.routine)
                ins = self.interp.instr_at(c.pc)
                if ins is not None:  # a macro's line and its invocation are both reached
                    lines.update((loc.file, loc.line) for loc in ins.loc.chain())
            for f in s.machine.frames:
                vectors.add(f.vector)
            for a in self._base_actions(s):  # no z3: which events were offered is enough
                events.add(a.kind if a.kind != "ext" else f"ext:{a.arg:#x}")
        all_lines: dict[str, set[int]] = {}
        for r in self.design.routines.values():
            for ins in r.instrs:
                for loc in ins.loc.chain():
                    all_lines.setdefault(loc.file, set()).add(loc.line)
        files = {
            f: {
                "reached": sorted(n for (ff, n) in lines if ff == f),
                "unreached": sorted(n for n in ls if (f, n) not in lines),
            }
            for f, ls in all_lines.items()
        }
        gated = sorted({g.vector for t in self.design.idts for g in t.gates})
        return {
            "files": files,
            "routines": {name: name in routines for name in sorted(self.design.routines)},
            "vectors": {str(v): v in vectors for v in sorted(set(gated) | vectors)},
            "events": sorted(events),
            "unreached_lines": sum(len(v["unreached"]) for v in files.values()),
        }

    def _frame_record(self, f: Frame) -> dict[str, Any]:
        return {
            "cpu": f.cpu, "vector": f.vector, "name": vector_name(f.vector), "source": f.source,
            "lo": f"{f.lo:#x}", "hi": f"{f.hi:#x}", "stack": f.stack, "from_cpl": f.from_cpl,
            "clobbered": f.clobbered, "on_guest_stack": f.on_guest_stack,
        }

    def _var_text(self, s: SysState, name: str) -> str:
        values = self._var_values(s, name)
        if isinstance(values, tuple) and not isinstance(values, Term):  # a Term is a tuple too
            return "[" + ", ".join(self._value(v) for v in values) + "]"
        return self._value(values)

    # -- helpers ---------------------------------------------------------------------------------
    def _where(self, pc: CodeAddr) -> str:
        ins = self.interp.instr_at(pc)
        if ins is None:
            return str(pc)
        macro = f", macro {ins.loc.macro_lines()}" if ins.loc.via is not None else ""
        return f"{pc} ({ins.text} @ line {ins.loc.site.line}{macro})"

    def _addr(self, v: Value) -> str:
        if isinstance(v, CodeAddr | Term):
            return repr(v) if isinstance(v, Term) else str(v)
        name = region_name(self.platform, v)
        top = next((r for r in self.platform.regions if r.hi == v), None)
        if name == "unmapped" and top is not None:
            return f"{top.name}+{v - top.lo:#x} (top)"
        if name in ("guest memory", "unmapped"):
            return f"{v:#x} ({name})"
        r = self.platform.region(name)
        return f"{name}+{v - r.lo:#x}"

    def _value(self, v: Value) -> str:
        if isinstance(v, Term):
            return repr(v)
        return str(v) if isinstance(v, CodeAddr) else f"{v:#x}"

    def _frame(self, f: Frame) -> str:
        from_ = "guest" if f.from_cpl == 3 else f"CPL{f.from_cpl}"
        flags = (" CLOBBERED" if f.clobbered else "") + (
            " ON-GUEST-STACK" if f.on_guest_stack else ""
        )
        return (
            f"{vector_name(f.vector)} frame ({f.source}) of cpu{f.cpu} at {self._addr(f.lo)} "
            f"from {from_}{flags}"
        )

    def _var_values(self, s: SysState, name: str) -> Value | tuple[Value, ...]:
        base = self.layout.var_index[name]
        if name in self.layout.percpu_vars:
            return s.vars[base : base + self.ncpus]
        length = self.layout.lengths[name]
        return s.vars[base] if length == 1 else s.vars[base : base + length]


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
    live = sym.symbols((s.machine, s.vars, s.lazy))
    if not live:
        return s._replace(path=(), symbolic=False) if s.symbolic or s.path else s
    # Keep the conditions that reach a live symbol through shared symbols.
    conds = [(c, sym.symbols(c)) for c in s.path]
    reach = set(live)
    changed = True
    kept: set[int] = set()
    while changed:
        changed = False
        for k, (_c, names) in enumerate(conds):
            if k not in kept and names & reach:
                kept.add(k)
                reach |= names
                changed = True
    order: list[str] = []
    _first_names((s.machine, s.vars, s.lazy), order)
    for k in sorted(kept, key=lambda k: repr(conds[k][0])):
        _first_names(conds[k][0], order)
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


def _first_names(value: Any, out: list[str]) -> None:
    """Symbol names in order of first appearance (a deterministic traversal)."""
    if isinstance(value, Term):
        if value.op == "var":
            if value.args[0] not in out:
                out.append(value.args[0])
        else:
            for a in value.args:
                _first_names(a, out)
    elif isinstance(value, tuple):
        for a in value:
            _first_names(a, out)


class _Vocabulary(Mapping[str, Any]):
    """The names a property expression sees, computed on demand."""

    def __init__(self, system: DesignSystem, s: SysState):
        self.system = system
        self.s = s
        self.cache: dict[str, Any] = {}

    def __getitem__(self, key: str) -> Any:
        if key in self.cache:
            return self.cache[key]
        value = self._compute(key)
        self.cache[key] = value
        return value

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.system.vocabulary_names())

    def __len__(self) -> int:
        return len(self.system.vocabulary_names())

    def _compute(self, key: str) -> Any:
        sysm = self.system
        m: Machine = self.s.machine
        if key in ("cpus", "cpu"):
            return [self._cpu_record(i) for i in range(len(m.cpus))]
        if key == "ncpus":
            return len(m.cpus)
        if key == "frames":
            hypervisor = {r.name for r in sysm.platform.regions if r.owner == "hypervisor"}
            return [
                {
                    "cpu": f.cpu, "vector": f.vector, "source": f.source, "stack": f.stack,
                    "clobbered": f.clobbered, "on_guest_stack": f.on_guest_stack,
                    "from_cpl": f.from_cpl,
                    # pushed at an address computed from a symbolic guest input
                    "guest_chosen": isinstance(f.lo, Term),
                    # where the interrupted code was: the saved RIP, "routine+index"
                    "interrupted": str(read(m, f.lo)),
                    "on_hypervisor_stack": f.stack in hypervisor,
                }
                for f in m.frames
            ]
        if key == "frame_clobbered":
            return any(f.clobbered for f in m.frames)
        if key == "frame_on_guest_stack":
            return any(f.on_guest_stack for f in m.frames)
        if key == "any_shutdown":
            return any(c.run is Run.SHUTDOWN for c in m.cpus)
        if key == "all_halted":
            return all(c.run is not Run.RUNNING for c in m.cpus)
        if key == "incidents":
            return list(m.incidents)
        if key == "timed_out":
            return TIMED_OUT in m.incidents
        if key == "ist_without_tss":
            return IST_WITHOUT_TSS in m.incidents
        if key == "freed_code_executed":
            return "freed-init-code-executed" in m.incidents
        if key == "assertion_failed":
            return any(i.startswith("assertion-failed") for i in m.incidents)
        if key == "running":
            return lambda cpu, routine: m.cpus[cpu].pc.routine == routine and m.cpus[
                cpu
            ].run is not Run.SHUTDOWN
        if key == "frames_on":
            return lambda stack: sum(1 for f in m.frames if f.stack == stack)
        if key == "nmi_frames":
            return sum(1 for f in m.frames if f.source == "nmi")
        if key in sysm.layout.var_index:
            v = sysm._var_values(self.s, key)
            return list(v) if isinstance(v, tuple) else v
        raise KeyError(key)

    def _cpu_record(self, i: int) -> dict[str, Any]:
        c = self.s.machine.cpus[i]
        return {
            "id": i,
            "cpl": c.cpl,
            "routine": c.pc.routine,
            "halted": c.run is Run.HALTED,
            "shutdown": c.run is Run.SHUTDOWN,
            "running": c.run is Run.RUNNING,
            "nmi_blocked": c.nmi_blocked,
            "nmi_pending": c.nmi_pending,
            "mcip": c.mcip,
            "interrupts_enabled": bool(c.rflags & IF) if isinstance(c.rflags, int)
            else sym.ne(sym.band(c.rflags, IF), 0),
            "idt": c.idtr or "empty",
            "tss": c.tr or "none",
            "ipi_pending": c.ipi_nmi,
            "in_guest": c.cpl == 3,
        }
