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
from typing import Any, NamedTuple

from checker import symbolic as sym
from checker.errors import InputError
from checker.fields import FunctionShape, ListShape, MapShape, RecordShape, Shape
from checker.interface import SymmetricVocabulary
from checker.symbolic import Term
from model.lang.ir import Design
from model.system.interp import TIMED_OUT, SysState
from model.system.layout import Layout
from model.x86 import segments
from model.x86.arch import (
    AC_FLAG,
    ADDRESS_MASK,
    DF_FLAG,
    IF,
    NT,
    RF,
    TF,
    VECTOR_NAMES,
    is_canonical,
)
from model.x86.delivery import IST_WITHOUT_TSS
from model.x86.memory import GUEST_MEMORY, read, region_name
from model.x86.msr import CR3
from model.x86.state import CodeAddr, Cpu, Frame, Gate, Idt, Machine, Platform, Run, Value

VECTORS = 256  # IDT entries (SDM §6.10)
VECTOR_BY_NAME: dict[str, int] = {
    **{name: v for v, name in VECTOR_NAMES.items()},
    **{name.lstrip("#"): v for v, name in VECTOR_NAMES.items()},
}


class Part(Enum):
    """A part of the state a vocabulary name may read."""

    CPU = "cpu"  # each CPU's registers, latches and run state (its `Cpu` record)
    FRAMES = "frames"  # the live interrupt frames
    FRAME_MEMORY = "frame memory"  # the stack words inside live frames (the saved RIP)
    INCIDENTS = "incidents"  # the sticky incidents
    TABLES = "tables"  # the IDTs' gates and the TSSs' slots
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
    """A field of a record the vocabulary hands out (a CPU, a frame, a gate, a TSS...).

    `get` computes it from the record's source (each record kind says what that is);
    `shape` is the checker's type of a nested record or list (checker.fields), None for a
    scalar. Adding a field to a record is one `Field` line in its table."""

    name: str
    doc: str
    get: Callable[[Any], Any]
    index: bool = False  # holds a CPU number or a per-CPU instance name
    shape: Shape = None


@dataclass(frozen=True)
class Name:
    """One vocabulary name."""

    name: str
    type: str
    doc: str
    reads: tuple[Read, ...]
    compute: Callable[[Vocabulary], Any]
    renumbering: Renumbering = Renumbering.INVARIANT
    shape: Shape = None  # its fields, for the load-time check of `a.b` (checker.fields)


class VocabularyError(ValueError):
    """The table is malformed (a programming error in this module, caught by the tests)."""


class Record(Mapping[str, Any]):
    """A record of the vocabulary: each field computed from `source` when first read (a
    property reads a few fields of many records)."""

    __slots__ = ("_cache", "_fields", "_source")

    def __init__(self, fields: Mapping[str, Field], source: Any):
        self._fields = fields
        self._source = source
        self._cache: dict[str, Any] = {}

    def __getitem__(self, key: str) -> Any:
        cache = self._cache
        if key in cache:
            return cache[key]
        value = cache[key] = self._fields[key].get(self._source)
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def __repr__(self) -> str:
        return "{" + ", ".join(f"{k}: {self[k]!r}" for k in self._fields) + "}"


def record_shape(name: str, fields: Sequence[Field]) -> RecordShape:
    return RecordShape(name, tuple((f.name, f.shape) for f in fields))


def _cr3(c: Cpu) -> Value | str:
    value = dict(c.msrs).get(CR3)
    return "none" if value is None else value


def _table(fields: Sequence[Field]) -> dict[str, Field]:
    return {f.name: f for f in fields}


def _bit(flags: int | Term, bit: int) -> Any:
    """An RFLAGS bit: a bool, or a boolean term when RFLAGS is symbolic (after SYSRET)."""
    if isinstance(flags, int):
        return bool(flags & bit)
    return sym.ne(sym.band(flags, bit), 0)


def _iopl(flags: int | Term) -> Any:
    if isinstance(flags, int):
        return (flags >> 12) & 3
    return sym.band(sym.lshr(flags, 12), 3)


# -- the records -----------------------------------------------------------------------------
# Each record kind is computed from a source: a CPU from (vocabulary, number, Cpu), RFLAGS
# from the flags value, a gate from (vector, Gate or None, within the limit), a TSS from
# the Tss (or None), a frame from (vocabulary, Frame).


class _At(NamedTuple):
    v: Vocabulary
    i: int
    c: Cpu


RFLAGS_FIELDS: tuple[Field, ...] = (
    Field("IF", "interrupt enable (bit 9)", lambda f: _bit(f, IF)),
    Field("DF", "direction (bit 10)", lambda f: _bit(f, DF_FLAG)),
    Field("TF", "trap: single-step (bit 8)", lambda f: _bit(f, TF)),
    Field("AC", "alignment check / SMAP override (bit 18)", lambda f: _bit(f, AC_FLAG)),
    Field("NT", "nested task (bit 14)", lambda f: _bit(f, NT)),
    Field("RF", "resume (bit 16)", lambda f: _bit(f, RF)),
    Field("IOPL", "I/O privilege level (bits 13:12)", _iopl),
    Field("value", "the whole register", lambda f: f),
)
_RFLAGS = _table(RFLAGS_FIELDS)

CR4_FIELDS: tuple[Field, ...] = (
    Field("MCE", "machine-check enable (bit 6)", lambda c: c.cr4_mce),
)
_CR4 = _table(CR4_FIELDS)


def _rsp_stack(a: _At) -> str:
    """The stack RSP points into (its top counts as inside), `guest memory`, `unmapped`,
    `non-canonical`, or `symbolic` for a guest-chosen pointer."""
    rsp = a.c.rsp
    if isinstance(rsp, Term):
        return "symbolic"
    if isinstance(rsp, CodeAddr):
        return "non-canonical"
    platform = a.v.table.platform
    if not is_canonical(rsp):
        return "non-canonical"
    name = region_name(platform, rsp & ADDRESS_MASK)
    if name in (GUEST_MEMORY, "unmapped"):
        top = next((r for r in platform.regions if r.hi == rsp), None)
        if top is not None:
            return top.name
    return name


CPU_FIELDS: tuple[Field, ...] = (
    Field("id", "the CPU's number", lambda a: a.i, index=True),
    Field("cpl", "its current privilege level", lambda a: a.c.cpl),
    Field("cs", "the CS selector it holds (what IRET, SYSCALL, SYSRET, delivery loaded; the "
          "design's selector for its CPL before any load)",
          lambda a: segments.cs_of(a.v.table.platform, a.c)),
    Field("ss", "the SS selector it holds (IRET, MOV SS, LSS, SYSCALL, SYSRET; a delivery "
          "that changes CPL loads NULL, SDM §6.14.2; the design's selector for its CPL "
          "before any load)",
          lambda a: segments.ss_of(a.v.table.platform, a.c)),
    Field("rsp", "RSP (a number, or symbolic when guest-chosen)", lambda a: a.c.rsp),
    Field("rsp_stack", "the stack RSP points into (its top included), `guest memory`, "
          "`unmapped`, `non-canonical` or `symbolic`", _rsp_stack, index=True),
    Field("rflags", "RFLAGS as a record: `IF DF TF AC NT RF IOPL value`",
          lambda a: Record(_RFLAGS, a.c.rflags), shape=record_shape("rflags", RFLAGS_FIELDS)),
    Field("interrupts_enabled", "RFLAGS.IF", lambda a: _bit(a.c.rflags, IF)),
    Field("routine", "the routine its next instruction is in", lambda a: a.c.pc.routine),
    Field("halted", "halted (HLT), waiting for an event", lambda a: a.c.run is Run.HALTED),
    Field("shutdown", "in shutdown (triple fault)", lambda a: a.c.run is Run.SHUTDOWN),
    Field("running", "neither halted nor shut down nor wild",
          lambda a: a.c.run is Run.RUNNING),
    Field("wild", "lost: it reached an address where the design has no code (wild-jump)",
          lambda a: a.c.run is Run.WILD),
    Field("in_guest", "running guest code (CPL 3)", lambda a: a.c.cpl == 3),
    Field("running_guest", "running (not halted, not shut down) above ring 0: guest code, "
          "a PV guest's kernel included (ring 1 or 3)",
          lambda a: a.c.run is Run.RUNNING and a.c.cpl != 0),
    Field("nmi_blocked", "NMIs blocked (from NMI delivery to the next IRET)",
          lambda a: a.c.nmi_blocked),
    Field("nmi_pending", "an NMI latched while blocked", lambda a: a.c.nmi_pending),
    Field("ipi_pending", "an NMI IPI sent to it has not yet arrived", lambda a: a.c.ipi_nmi),
    Field("mcip", "MCG_STATUS.MCIP", lambda a: a.c.mcip),
    Field("shadow", "the interrupt shadow on the next boundary: `none`, `sti` or `mov_ss` "
          "(SDM §6.8.3)", lambda a: a.c.shadow.name.lower()),
    Field("held_db", "a #DB held back by MOV SS / POP SS, taken after the next instruction",
          lambda a: a.c.held_db),
    Field("db_unsure", "the held #DB is one the SDM does not say is raised (a delivery's "
          "pushes on a watched address): the next boundary takes it or drops it",
          lambda a: a.c.db_unsure),
    Field("gs", "whose GS base is active: `kernel` (this CPU's per-CPU area) or `user` "
          "(anything else: the guest's, after an odd number of SWAPGS from Xen's)",
          lambda a: "kernel" if a.c.gs_base is None else "user"),
    Field("gs_swapped", "SWAPGS parity: KERNEL_GS_BASE's original value is live in GS",
          lambda a: a.c.gs_swapped),
    Field("cr4", "CR4 as a record: `MCE`", lambda a: Record(_CR4, a.c),
          shape=record_shape("cr4", CR4_FIELDS)),
    Field("cr3", "the value the last MOV to CR3 wrote (a number), `none` before the first",
          lambda a: _cr3(a.c)),
    Field("idt", "the IDT its IDTR names (an instance name, or `empty`)",
          lambda a: a.c.idtr or "empty", index=True),
    Field("tss", "the TSS its TR names (an instance name, or `none`)",
          lambda a: a.c.tr or "none", index=True),
)
_CPU_TABLE = _table(CPU_FIELDS)
CPU_SHAPE = record_shape("CPU", CPU_FIELDS)


class _Gate(NamedTuple):
    vector: int
    gate: Gate | None
    in_limit: bool


GATE_FIELDS: tuple[Field, ...] = (
    Field("vector", "its vector", lambda g: g.vector),
    Field("routine", "the handler's routine, `none` without a gate",
          lambda g: g.gate.routine if g.gate is not None else "none"),
    Field("type", "`interrupt` (clears IF) or `trap`, `none` without a gate",
          lambda g: g.gate.kind if g.gate is not None else "none"),
    Field("dpl", "its DPL (INT n from a CPL above it is #GP)",
          lambda g: g.gate.dpl if g.gate is not None else 0),
    Field("ist", "its IST index, 0 for none", lambda g: g.gate.ist if g.gate is not None else 0),
    Field("present", "a gate with P=1 within the IDT's limit (delivery through anything "
          "else faults)", lambda g: g.gate is not None and g.gate.present and g.in_limit),
    Field("in_limit", "the vector lies within the IDT's limit", lambda g: g.in_limit),
)
_GATE = _table(GATE_FIELDS)
GATE_SHAPE = record_shape("gate", GATE_FIELDS)


class Gates(Sequence[Record]):
    """An IDT's 256 gates by vector number (or by vector name, `gate["NMI"]`), each a
    gate record; vectors without a gate read as `present` false."""

    def __init__(self, idt: Idt | None):
        self._idt = idt

    def __len__(self) -> int:
        return VECTORS

    def _key(self) -> tuple[int, tuple[tuple[int, Gate], ...]]:
        idt = self._idt
        return (0, ()) if idt is None else (idt.limit, idt.gates)

    def __eq__(self, other: object) -> bool:
        """Two IDTs' gates are equal when every vector reads the same (names aside)."""
        if isinstance(other, Gates):
            return self._key() == other._key()
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        gates = self._idt.gates if self._idt is not None else ()
        return "{" + ", ".join(f"{v}: {self[v]!r}" for v, _ in gates) + "}"

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, slice):
            return [self[k] for k in range(VECTORS)[key]]
        if isinstance(key, str):
            if key not in VECTOR_BY_NAME:
                raise KeyError(key)
            key = VECTOR_BY_NAME[key]
        if isinstance(key, bool) or not isinstance(key, int) or not 0 <= key < VECTORS:
            raise IndexError(key)
        idt = self._idt
        if idt is None:
            return Record(_GATE, _Gate(key, None, False))
        return Record(_GATE, _Gate(key, idt.gate(key), key < idt.limit))


IDT_FIELDS: tuple[Field, ...] = (
    Field("limit", "how many vectors it covers (0: IDTR empty)",
          lambda t: t.limit if t is not None else 0),
    Field("gate", "its gates by vector: `gate[NMI]`, `gate[2]`, `gate['NMI']` (a gate record)",
          lambda t: Gates(t), shape=ListShape(GATE_SHAPE)),
)
_IDT = _table(IDT_FIELDS)
IDT_SHAPE = record_shape("IDT", IDT_FIELDS)

TSS_FIELDS: tuple[Field, ...] = (
    Field("loaded", "a TSS is there (false for a CPU without TR)", lambda t: t is not None),
    Field("rsp0", "the stack RSP0 names, or `none`",
          lambda t: (t.rsp0 or "none") if t is not None else "none"),
    Field("ist", "the stacks IST1-7 name, by slot number: `ist[1]`..`ist[7]` (`ist[0]` is "
          "always `none`: no IST)",
          lambda t: ["none"] + [s or "none" for s in (t.ist if t is not None else (None,) * 7)],
          shape=ListShape(None)),
)
_TSS = _table(TSS_FIELDS)
TSS_SHAPE = record_shape("TSS", TSS_FIELDS)


class _Of(NamedTuple):
    v: Vocabulary
    f: Frame


FRAME_FIELDS: tuple[Field, ...] = (
    Field("cpu", "the CPU whose delivery pushed it", lambda a: a.f.cpu, index=True),
    Field("vector", "its vector", lambda a: a.f.vector),
    Field("source", "the event kind that pushed it (`nmi`, `exception`, `external`, ...)",
          lambda a: a.f.source),
    Field("stack", "the stack instance holding it, or `guest memory`", lambda a: a.f.stack,
          index=True),
    Field("clobbered", "overwritten, before the interrupted context returned through it, by "
          "something other than its own handler's deliberate store",
          lambda a: a.f.clobbered),
    Field("modified_by_handler", "its own handler stored into it (a fixup's saved RIP, the "
          "saved RFLAGS an exit path edits)", lambda a: a.f.modified),
    Field("on_guest_stack", "pushed at ring 0 onto guest-controlled memory",
          lambda a: a.f.on_guest_stack),
    Field("from_cpl", "the CPL of the interrupted context", lambda a: a.f.from_cpl),
    Field("guest_chosen", "its address derives from a symbolic guest input",
          lambda a: isinstance(a.f.lo, Term)),
    Field("on_hypervisor_stack", "it lies on a hypervisor-owned stack",
          lambda a: a.f.stack in a.v.hypervisor_stacks),
    Field("interrupted", "the saved RIP, `routine+index`",
          lambda a: str(read(a.v.machine, a.f.lo))),
)
_FRAME = _table(FRAME_FIELDS)
FRAME_SHAPE = record_shape("frame", FRAME_FIELDS)


def _cpu_record(v: Vocabulary, i: int) -> Record:
    return Record(_CPU_TABLE, _At(v, i, v.machine.cpus[i]))


def _cpus(v: Vocabulary) -> list[Record]:
    return [_cpu_record(v, i) for i in range(len(v.machine.cpus))]


def _frames(v: Vocabulary) -> list[Record]:
    return [Record(_FRAME, _Of(v, f)) for f in v.machine.frames]


_ALIVE = (Run.RUNNING, Run.HALTED)


def _running(v: Vocabulary) -> Callable[[int, str], bool]:
    m = v.machine
    return lambda cpu, routine: (
        m.cpus[cpu].pc.routine == routine and m.cpus[cpu].run in _ALIVE
    )


def _frames_on(v: Vocabulary) -> Callable[[str], int]:
    m = v.machine
    return lambda stack: sum(1 for f in m.frames if f.stack == stack)


def _cpu_number(v: Vocabulary, cpu: Any) -> int:
    if isinstance(cpu, bool) or not isinstance(cpu, int) or not 0 <= cpu < len(v.machine.cpus):
        raise KeyError(f"no CPU {cpu!r}")
    return cpu


def _idt_of(v: Vocabulary) -> Callable[[int], Record]:
    m = v.machine
    return lambda cpu: Record(_IDT, m.idt(m.cpus[_cpu_number(v, cpu)].idtr))


def _tss_of(v: Vocabulary) -> Callable[[int], Record]:
    m = v.machine
    return lambda cpu: Record(_TSS, m.tss(m.cpus[_cpu_number(v, cpu)].tr))


def _idts(v: Vocabulary) -> dict[str, Record]:
    return {t.name: Record(_IDT, t) for t in v.machine.idts}


def _tsss(v: Vocabulary) -> dict[str, Record]:
    return {t.name: Record(_TSS, t) for t in v.machine.tsss}


_CPU, _FRAMES, _INCIDENTS = (Part.CPU,), (Part.FRAMES,), (Part.INCIDENTS,)
_CPU_TABLES = (Part.CPU, Part.TABLES)
_CPU_LIST = ListShape(CPU_SHAPE)

# The vectors by the SDM's mnemonic (Table 6-1), as constants: `gate[NMI]`, `f.vector == PF`.
def _constant(value: int) -> Callable[[Vocabulary], int]:
    return lambda v: value


_VECTOR_CONSTANTS: tuple[Name, ...] = tuple(
    Name(name.lstrip("#"), "int", f"vector {vector} ({name}), a constant",
         (Part.CONSTANT,), _constant(vector))
    for vector, name in sorted(VECTOR_NAMES.items())
)

# The frame sources of asynchronous events (model.x86.delivery.Source values): what the
# environment or another CPU delivers at an instruction boundary, not what an instruction
# raises. The delivery of one pushes its frame, so some explored state has a live one iff
# some such event was delivered (checker.interface.Eventful).
ASYNC_SOURCES = frozenset({"nmi", "machine-check", "external"})

# The names every design has, in the order the reference lists them.
BUILTIN: tuple[Name, ...] = (
    Name("cpus", "list of CPU records",
         "the CPUs, each a record (see docs/design-language.md#vocabulary)",
         _CPU, _cpus, Renumbering.SEQUENCE, _CPU_LIST),
    Name("cpu", "list of CPU records", "the same list, for cpu[1].halted",
         _CPU, _cpus, Renumbering.SEQUENCE, _CPU_LIST),
    Name("ncpus", "int", "the number of CPUs",
         (Part.CONSTANT,), lambda v: len(v.machine.cpus)),
    Name("frames", "list of frame records",
         "live interrupt frames: cpu, vector, source, stack, clobbered, modified_by_handler, "
         "on_guest_stack, from_cpl, guest_chosen (its address derives from a symbolic guest "
         "input), on_hypervisor_stack, interrupted (the saved RIP, routine+index)",
         (Part.FRAMES, Part.FRAME_MEMORY), _frames, Renumbering.COLLECTION,
         ListShape(FRAME_SHAPE)),
    Name("frame_clobbered", "bool",
         "some live frame the interrupted context will still return through was overwritten "
         "by something other than its own handler's deliberate store (a nested delivery, a "
         "push, another CPU, guest code)",
         _FRAMES, lambda v: any(f.clobbered for f in v.machine.frames)),
    Name("frame_modified_by_handler", "bool",
         "some live frame was stored into by its own handler (a fixup setting the saved "
         "RIP, an exit path editing the saved RFLAGS): deliberate, not a clobber",
         _FRAMES, lambda v: any(f.modified for f in v.machine.frames)),
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
    # The IDT a CPU's IDTR names holds no CPU number (gates name shared routines), so a
    # renumbering maps idt_of(i) to idt_of(π(i)); a TSS names per-CPU stacks, so tss_of
    # and the by-name tables are read on the unreduced state space.
    Name("idt_of", "function (cpu) -> IDT record",
         "idt_of(cpu): the IDT CPU cpu's IDTR names: `limit`, `gate[v]` (an empty IDTR: "
         "limit 0, no gate present)",
         _CPU_TABLES, _idt_of, Renumbering.INDEX_FUNCTION, FunctionShape(IDT_SHAPE)),
    Name("tss_of", "function (cpu) -> TSS record",
         "tss_of(cpu): the TSS CPU cpu's TR names: `loaded`, `rsp0`, `ist[1]`..`ist[7]`",
         _CPU_TABLES, _tss_of, Renumbering.CHANGES, FunctionShape(TSS_SHAPE)),
    Name("idts", "IDT records by instance name", "every IDT instance: idts['idt_table[0]']",
         (Part.TABLES,), _idts, Renumbering.CHANGES, MapShape(IDT_SHAPE)),
    Name("tsss", "TSS records by instance name", "every TSS instance: tsss['tss[1]']",
         (Part.TABLES,), _tsss, Renumbering.CHANGES, MapShape(TSS_SHAPE)),
    *_VECTOR_CONSTANTS,
    Name("event_frames", "int",
         "how many live frames asynchronous events pushed (NMIs, NMI IPIs included, #MCs, "
         "external interrupts); the vacuity check's fact",
         _FRAMES, lambda v: sum(1 for f in v.machine.frames if f.source in ASYNC_SOURCES)),
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
        self.platform = platform
        self.hypervisor_stacks = frozenset(
            r.name for r in platform.regions if r.owner == "hypervisor"
        )
        self._descriptions = {e.name: e.doc for e in entries}

    def descriptions(self) -> Mapping[str, str]:
        """Every name with its one-line meaning (the names the checker accepts)."""
        return self._descriptions

    def shapes(self) -> Mapping[str, Shape]:
        """The fields of each name that has records (the checker's load-time field check)."""
        return {n: e.shape for n, e in self.entries.items() if e.shape is not None}

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
    Part.TABLES: "IDTs and TSSs",
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
    constants = {e.name for e in _VECTOR_CONSTANTS}
    for e in BUILTIN:
        if e.name not in constants:
            lines.append(f"| `{e.name}` | {e.type} | {e.doc} | {_reads_text(e.reads)} |")
    lines.append(
        "| " + " ".join(f"`{e.name}`" for e in _VECTOR_CONSTANTS) + " | int | the vectors "
        "by the SDM's mnemonic (Table 6-1): `idt_of(0).gate[NMI]`, `f.vector == PF` | nothing |"
    )
    lines.append(
        "| every design variable by name | int, or a list (a per-CPU variable, an array) "
        "| its value | that variable |"
    )
    lines += ["", "| CPU record field | meaning |", "|---|---|"]
    lines += [f"| `{f.name}` | {f.doc} |" for f in CPU_FIELDS]
    for title, fields in (
        ("`rflags` field (of a CPU record)", RFLAGS_FIELDS),
        ("`cr4` field (of a CPU record)", CR4_FIELDS),
        ("frame record field", FRAME_FIELDS),
        ("IDT record field (`idt_of(cpu)`, `idts[name]`)", IDT_FIELDS),
        ("gate record field (`idt_of(cpu).gate[NMI]`)", GATE_FIELDS),
        ("TSS record field (`tss_of(cpu)`, `tsss[name]`)", TSS_FIELDS),
    ):
        lines += ["", f"| {title} | meaning |", "|---|---|"]
        lines += [f"| `{f.name}` | {f.doc} |" for f in fields]
    return "\n".join(lines) + "\n"
