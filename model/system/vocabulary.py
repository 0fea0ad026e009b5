"""The names a property expression sees, as one table.

Each entry of the table is one name: its type, its one-line meaning, the parts of the
state it reads, what a renumbering of the CPUs does to it, and how it is computed. Every
use of the vocabulary is derived from the table: the evaluator (`Vocabulary`), the names
the checker accepts at load time (`VocabularyTable.descriptions`), what partial-order
reduction must treat as visible (`VocabularyTable.reads`, model.system.por), the
symmetry of the vocabulary (`VocabularyTable.symmetric`) and the reference section of
docs/design-language.md (`markdown`). A name added here without its read set is refused
when the table is built (`check_entries`), so POR cannot silently miss it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from checker import symbolic as sym
from checker.errors import InputError
from checker.interface import SymmetricVocabulary
from checker.symbolic import Term
from model.lang.ir import Design
from model.system.interp import TIMED_OUT, SysState
from model.system.layout import Layout
from model.x86.arch import IF
from model.x86.delivery import IST_WITHOUT_TSS
from model.x86.memory import read
from model.x86.state import Machine, Platform, Run, Value


class Part(Enum):
    """A part of the state a vocabulary name may read."""

    CPU = "cpu"  # each CPU's registers, latches and run state (its `Cpu` record)
    FRAMES = "frames"  # the live interrupt frames
    FRAME_MEMORY = "frame memory"  # the stack words inside live frames (the saved RIP)
    INCIDENTS = "incidents"  # the sticky incidents
    CONSTANT = "constant"  # nothing that changes: fixed for the system (ncpus)


@dataclass(frozen=True)
class Variable:
    """A design variable, read by name (all its slots: every CPU's copy, every element)."""

    name: str


Read = Part | Variable


class Renumbering(Enum):
    """What renumbering the interchangeable CPUs does to a name's value (checker.symmetry)."""

    INVARIANT = "invariant"  # nothing
    SEQUENCE = "sequence"  # one element per CPU, in CPU order: the elements are permuted
    COLLECTION = "collection"  # records whose index fields are rewritten (frames)
    INDEX_FUNCTION = "index function"  # a function whose first argument is a CPU number
    CHANGES = "changes"  # anything else: a property reading it is explored unreduced


@dataclass(frozen=True)
class Field:
    """A field of a record the vocabulary hands out (a CPU or a frame)."""

    name: str
    doc: str
    index: bool = False  # holds a CPU number or a per-CPU instance name


@dataclass(frozen=True)
class Name:
    """One vocabulary name."""

    name: str
    type: str
    doc: str
    reads: tuple[Read, ...]
    compute: Callable[[Vocabulary], Any]
    renumbering: Renumbering = Renumbering.INVARIANT


class VocabularyError(ValueError):
    """The table is malformed (a programming error in this module, caught by the tests)."""


# -- the records -----------------------------------------------------------------------------

CPU_FIELDS: tuple[Field, ...] = (
    Field("id", "the CPU's number", index=True),
    Field("cpl", "its current privilege level"),
    Field("routine", "the routine its next instruction is in"),
    Field("halted", "halted (HLT), waiting for an event"),
    Field("shutdown", "in shutdown (triple fault)"),
    Field("running", "neither halted nor shut down nor wild"),
    Field("wild", "lost: it reached an address where the design has no code (wild-jump)"),
    Field("nmi_blocked", "NMIs blocked (from NMI delivery to the next IRET)"),
    Field("nmi_pending", "an NMI latched while blocked"),
    Field("mcip", "MCG_STATUS.MCIP"),
    Field("interrupts_enabled", "RFLAGS.IF"),
    Field("idt", "the IDT its IDTR names (an instance name, or `empty`)", index=True),
    Field("tss", "the TSS its TR names (an instance name, or `none`)", index=True),
    Field("ipi_pending", "an NMI IPI sent to it has not yet arrived"),
    Field("in_guest", "running guest code (CPL 3)"),
)

FRAME_FIELDS: tuple[Field, ...] = (
    Field("cpu", "the CPU whose delivery pushed it", index=True),
    Field("vector", "its vector"),
    Field("source", "the event kind that pushed it (`nmi`, `exception`, `external`, ...)"),
    Field("stack", "the stack instance holding it, or `guest memory`", index=True),
    Field("clobbered", "overwritten before its IRET"),
    Field("on_guest_stack", "pushed at ring 0 onto guest-controlled memory"),
    Field("from_cpl", "the CPL of the interrupted context"),
    Field("guest_chosen", "its address derives from a symbolic guest input"),
    Field("on_hypervisor_stack", "it lies on a hypervisor-owned stack"),
    Field("interrupted", "the saved RIP, `routine+index`"),
)


def _cpu_record(v: Vocabulary, i: int) -> dict[str, Any]:
    c = v.machine.cpus[i]
    return {
        "id": i,
        "cpl": c.cpl,
        "routine": c.pc.routine,
        "halted": c.run is Run.HALTED,
        "shutdown": c.run is Run.SHUTDOWN,
        "running": c.run is Run.RUNNING,
        "wild": c.run is Run.WILD,
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


def _cpus(v: Vocabulary) -> list[dict[str, Any]]:
    return [_cpu_record(v, i) for i in range(len(v.machine.cpus))]


def _frames(v: Vocabulary) -> list[dict[str, Any]]:
    m = v.machine
    hypervisor = v.hypervisor_stacks
    return [
        {
            "cpu": f.cpu, "vector": f.vector, "source": f.source, "stack": f.stack,
            "clobbered": f.clobbered, "on_guest_stack": f.on_guest_stack,
            "from_cpl": f.from_cpl,
            "guest_chosen": isinstance(f.lo, Term),
            "interrupted": str(read(m, f.lo)),
            "on_hypervisor_stack": f.stack in hypervisor,
        }
        for f in m.frames
    ]


_ALIVE = (Run.RUNNING, Run.HALTED)


def _running(v: Vocabulary) -> Callable[[int, str], bool]:
    m = v.machine
    return lambda cpu, routine: (
        m.cpus[cpu].pc.routine == routine and m.cpus[cpu].run in _ALIVE
    )


def _frames_on(v: Vocabulary) -> Callable[[str], int]:
    m = v.machine
    return lambda stack: sum(1 for f in m.frames if f.stack == stack)


_CPU, _FRAMES, _INCIDENTS = (Part.CPU,), (Part.FRAMES,), (Part.INCIDENTS,)

# The names every design has, in the order the reference lists them.
BUILTIN: tuple[Name, ...] = (
    Name("cpus", "list of CPU records",
         "the CPUs, each a record (see docs/design-language.md#vocabulary)",
         _CPU, _cpus, Renumbering.SEQUENCE),
    Name("cpu", "list of CPU records", "the same list, for cpu[1].halted",
         _CPU, _cpus, Renumbering.SEQUENCE),
    Name("ncpus", "int", "the number of CPUs",
         (Part.CONSTANT,), lambda v: len(v.machine.cpus)),
    Name("frames", "list of frame records",
         "live interrupt frames: cpu, vector, source, stack, clobbered, on_guest_stack, "
         "from_cpl, guest_chosen (its address derives from a symbolic guest input), "
         "on_hypervisor_stack, interrupted (the saved RIP, routine+index)",
         (Part.FRAMES, Part.FRAME_MEMORY), _frames, Renumbering.COLLECTION),
    Name("frame_clobbered", "bool", "some live frame has been overwritten before its IRET",
         _FRAMES, lambda v: any(f.clobbered for f in v.machine.frames)),
    Name("frame_on_guest_stack", "bool",
         "some live frame was pushed at ring 0 onto guest-controlled memory",
         _FRAMES, lambda v: any(f.on_guest_stack for f in v.machine.frames)),
    Name("any_shutdown", "bool", "some CPU is in shutdown (triple fault)",
         _CPU, lambda v: any(c.run is Run.SHUTDOWN for c in v.machine.cpus)),
    Name("all_halted", "bool", "every CPU is halted or shut down (a wild CPU is neither)",
         _CPU, lambda v: all(c.run is Run.HALTED or c.run is Run.SHUTDOWN
                             for c in v.machine.cpus)),
    Name("any_wild", "bool",
         "some CPU reached an address where the design has no code and is lost (wild-jump)",
         _CPU, lambda v: any(c.run is Run.WILD for c in v.machine.cpus)),
    Name("incidents", "list of str",
         "sticky happenings: ist-without-tss, freed-init-code-executed, timeout-fired, ...",
         _INCIDENTS, lambda v: list(v.machine.incidents)),
    Name("timed_out", "bool", "a wait_timeout gave up",
         _INCIDENTS, lambda v: TIMED_OUT in v.machine.incidents),
    Name("ist_without_tss", "bool", "a delivery went through an IST slot with no TSS loaded",
         _INCIDENTS, lambda v: IST_WITHOUT_TSS in v.machine.incidents),
    Name("freed_code_executed", "bool", "a CPU executed code in a freed init section",
         _INCIDENTS, lambda v: "freed-init-code-executed" in v.machine.incidents),
    Name("assertion_failed", "bool", "an assert() in the design failed",
         _INCIDENTS,
         lambda v: any(i.startswith("assertion-failed") for i in v.machine.incidents)),
    Name("running", "function (cpu, routine) -> bool",
         "running(cpu, routine): CPU cpu's next instruction is in routine",
         _CPU, _running, Renumbering.INDEX_FUNCTION),
    Name("frames_on", "function (stack) -> int",
         "frames_on(stack): how many live frames lie on a stack (instance name)",
         _FRAMES, _frames_on, Renumbering.CHANGES),
    Name("nmi_frames", "int", "how many live frames real NMIs pushed",
         _FRAMES, lambda v: sum(1 for f in v.machine.frames if f.source == "nmi")),
)


# The built-in names whose values are sequences of records, and their records' fields.
RECORD_FIELDS: Mapping[str, tuple[Field, ...]] = {
    "cpus": CPU_FIELDS, "cpu": CPU_FIELDS, "frames": FRAME_FIELDS,
}


def check_entries(entries: Sequence[Name]) -> None:
    """Refuse a table in which some name lacks its read set or is listed twice."""
    seen: set[str] = set()
    for e in entries:
        if e.name in seen:
            raise VocabularyError(f"vocabulary name {e.name!r} is listed twice")
        seen.add(e.name)
        if not e.reads:
            raise VocabularyError(
                f"vocabulary name {e.name!r} does not say what it reads (Part.CONSTANT if nothing)"
            )
        for r in e.reads:
            if not isinstance(r, Part | Variable):
                raise VocabularyError(f"vocabulary name {e.name!r} reads {r!r}, not a Part")


def var_values(layout: Layout, s: SysState, name: str) -> Value | tuple[Value, ...]:
    """A design variable's value: one slot, or a tuple (per-CPU copies, array elements)."""
    base = layout.var_index[name]
    if name in layout.percpu_vars:
        return s.vars[base : base + layout.ncpus]
    length = layout.lengths[name]
    return s.vars[base] if length == 1 else s.vars[base : base + length]


def _variable_entry(layout: Layout, name: str, per_cpu: bool, renumbering: Renumbering) -> Name:
    def compute(v: Vocabulary) -> Any:
        value = var_values(layout, v.state, name)
        # A list for per-CPU copies and arrays; one slot may hold a CodeAddr (a tuple).
        return list(value) if type(value) is tuple else value

    kind = "per-CPU list" if per_cpu else "global"
    return Name(name, "design variable", f"design variable ({kind})", (Variable(name),),
                compute, renumbering)


class VocabularyTable:
    """The vocabulary of one laid-out design: the built-in names and its variables."""

    def __init__(self, design: Design, layout: Layout, platform: Platform,
                 builtin: Sequence[Name] = BUILTIN):
        ids, masks, _order = design.symmetry_vars
        entries = list(builtin)
        taken = {e.name for e in entries}
        for var in design.variables:
            if var.name in taken:
                raise InputError(
                    f"variable {var.name!r} has the name of a property vocabulary name",
                    var.loc.file, var.loc.line,
                )
            if var.name in ids or var.name in masks:
                renumbering = Renumbering.CHANGES
            elif var.per_cpu:
                renumbering = Renumbering.SEQUENCE
            else:
                renumbering = Renumbering.INVARIANT
            entries.append(_variable_entry(layout, var.name, var.per_cpu, renumbering))
        check_entries(entries)
        self.entries: dict[str, Name] = {e.name: e for e in entries}
        self.hypervisor_stacks = frozenset(
            r.name for r in platform.regions if r.owner == "hypervisor"
        )
        self._descriptions = {e.name: e.doc for e in entries}

    def descriptions(self) -> Mapping[str, str]:
        """Every name with its one-line meaning (the names the checker accepts)."""
        return self._descriptions

    def fields(self) -> Mapping[str, frozenset[str]]:
        """The fields of the records in the record sequences (the checker refuses any
        other field before exploring)."""
        return {
            name: frozenset(f.name for f in RECORD_FIELDS[name])
            for name in self.entries if name in RECORD_FIELDS
        }

    def reads(self) -> Mapping[str, tuple[Read, ...]]:
        """What each name reads (partial-order reduction's visibility)."""
        return {n: e.reads for n, e in self.entries.items()}

    def evaluate(self, s: SysState) -> Vocabulary:
        return Vocabulary(self, s)

    def symmetric(self, permuted: Sequence[int]) -> SymmetricVocabulary:
        """How the names behave when CPUs `permuted` are renumbered."""
        by = {r: frozenset(n for n, e in self.entries.items() if e.renumbering is r)
              for r in Renumbering}
        return SymmetricVocabulary(
            permuted=frozenset(permuted),
            invariant=by[Renumbering.INVARIANT],
            sequences=by[Renumbering.SEQUENCE],
            collections=by[Renumbering.COLLECTION],
            # CPU numbers, and names of per-CPU instances ('nmi_ist[1]', 'idt_table[1]')
            index_fields=frozenset(f.name for f in CPU_FIELDS + FRAME_FIELDS if f.index),
            index_arguments={n: (0,) for n in by[Renumbering.INDEX_FUNCTION]},
        )


class Vocabulary(Mapping[str, Any]):
    """The vocabulary of one state: each name computed on demand, once."""

    def __init__(self, table: VocabularyTable, s: SysState):
        self.table = table
        self.state = s
        self.machine: Machine = s.machine
        self.hypervisor_stacks = table.hypervisor_stacks
        self.cache: dict[str, Any] = {}

    def __getitem__(self, key: str) -> Any:
        cache = self.cache
        if key in cache:
            return cache[key]
        entry = self.table.entries.get(key)
        if entry is None:
            raise KeyError(key)
        value = cache[key] = entry.compute(self)
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(self.table.entries)

    def __len__(self) -> int:
        return len(self.table.entries)


# -- the reference ---------------------------------------------------------------------------

_READS_TEXT = {
    Part.CPU: "CPUs",
    Part.FRAMES: "frames",
    Part.FRAME_MEMORY: "frame words",
    Part.INCIDENTS: "incidents",
    Part.CONSTANT: "nothing",
}


def _reads_text(reads: Sequence[Read]) -> str:
    return ", ".join(_READS_TEXT[r] if isinstance(r, Part) else f"variable {r.name}"
                     for r in reads)


def markdown() -> str:
    """The "Vocabulary for properties" section of docs/design-language.md, from the
    table (tests/test_vocabulary.py checks the reference says exactly this)."""
    lines = [
        "| name | type | meaning | reads |",
        "|---|---|---|---|",
    ]
    for e in BUILTIN:
        lines.append(f"| `{e.name}` | {e.type} | {e.doc} | {_reads_text(e.reads)} |")
    lines.append(
        "| every design variable by name | int, or a list (a per-CPU variable, an array) "
        "| its value | that variable |"
    )
    lines += ["", "| CPU record field | meaning |", "|---|---|"]
    lines += [f"| `{f.name}` | {f.doc} |" for f in CPU_FIELDS]
    lines += ["", "| frame record field | meaning |", "|---|---|"]
    lines += [f"| `{f.name}` | {f.doc} |" for f in FRAME_FIELDS]
    return "\n".join(lines) + "\n"
