"""The architectural state: small immutable values, cheap to hash and compare.

A `Machine` holds what code and events can change (CPUs, stack memory, live frames, the
IDTs and TSSs); a `Platform` holds what they cannot (where the stacks are, the vendor, the
double-fault rule). Nothing here knows which hypervisor runs on the machine.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field
from enum import IntEnum
from itertools import pairwise
from typing import Any, NamedTuple, TypeVar

from checker.symbolic import MASK, Term, add, band, decide, ne

# Every step rebuilds a Cpu, a Machine and a state. Building a NamedTuple from a list with
# tuple.__new__ is about 3x cheaper than the stock `_replace` (a keyword dict popped once
# per field, then `_make`).
_new = tuple.__new__
_C = TypeVar("_C", bound=type)


def fast_replace(cls: _C) -> _C:
    """Class decorator: a cheaper `_replace` for a NamedTuple, with the same results and
    the same ValueError for a field it does not have (typing.NamedTuple forbids defining
    `_replace` in the class body, so it is set afterwards)."""
    index = {name: i for i, name in enumerate(cls._fields)}  # type: ignore[attr-defined]

    def _replace(self: Any, **changes: Any) -> Any:
        fields = list(self)
        for name, value in changes.items():
            i = index.get(name)
            if i is None:
                raise ValueError(f"Got unexpected field names: {list(changes)!r}")
            fields[i] = value
        return _new(type(self), fields)

    cls._replace = _replace  # type: ignore[attr-defined]
    return cls


def flag_set(flags: int | Term, bit: int) -> bool:
    """Is an RFLAGS bit set? Decided (splitting the state) when RFLAGS is symbolic, e.g.
    after SYSRET loaded a guest's R11."""
    if isinstance(flags, int):
        return bool(flags & bit)
    return decide(ne(band(flags, bit), 0))


class CodeAddr(NamedTuple):
    """An instruction address: a routine of the design and an index into it."""

    routine: str
    index: int  # type: ignore[assignment]  # shadows tuple.index, as NamedTuples may

    def __str__(self) -> str:
        return f"{self.routine}+{self.index}"


# A register or memory word: an integer, or a code address (what CALL and delivery push).
Value = int | CodeAddr | Term  # a Term is a symbolic value (checker.symbolic)

# General-purpose registers other than RSP, in a fixed order (RSP lives in `Cpu.rsp`).
REGISTERS: tuple[str, ...] = (
    "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp",
    "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15",
)
REGISTER_INDEX: dict[str, int] = {name: i for i, name in enumerate(REGISTERS)}
WORD = 8  # bytes per stack slot


class Selectors(NamedTuple):
    """The design's CS and SS selector for each CPL: what a CPU starts with (`Cpu.cs`,
    `Cpu.ss` then hold what IRET, SYSCALL, SYSRET, SYSENTER, MOV SS and delivery load) and
    the GDT a design that declares none gets (flat_gdt).

    Which selectors a kernel's GDT provides is its choice, not the architecture's: the
    defaults are a flat GDT laid out as SYSCALL/SYSRET require (SDM Vol. 2 SYSRET: SS =
    STAR[63:48] + 8, CS = STAR[63:48] + 16, with STAR[63:48] = 0x23), ring 0 code and data
    at 0x08 and 0x10, ring 1 code at 0x19. A design declares its own (`selector`)."""

    ring0_cs: int = 0x08
    ring0_ss: int = 0x10
    ring1_cs: int = 0x19
    ring3_cs: int = 0x33  # also CPL 2's
    ring3_ss: int = 0x2B  # the SS of CPL 2 and 3
    ring1_ss: int = 0x39  # a 32-bit PV kernel's stack (Xen: FLAT_RING1_SS, 0xe021)

    def cs(self, cpl: int) -> int:
        return self.ring0_cs if cpl == 0 else self.ring1_cs if cpl == 1 else self.ring3_cs

    def ss(self, cpl: int) -> int:
        return self.ring0_ss if cpl == 0 else self.ring1_ss if cpl == 1 else self.ring3_ss


class Descriptor(NamedTuple):
    """A code or data segment descriptor (SDM §3.4.5), the fields the model reads.

    `kind` is "code", "data" or "system" (S = 0: TSS, LDT, gates: never a valid CS/SS).
    `writable` is W for data (R for code, which nothing here reads); `long` is L (64-bit
    code); `db` is D/B (False: a 16-bit stack or code segment); `base` is kept for what
    reads it (64-bit mode ignores it for CS and SS, SDM §3.4.4). The checks that read
    them are model.x86.segments."""

    kind: str
    dpl: int
    present: bool = True
    long: bool = False
    db: bool = True
    writable: bool = True
    conforming: bool = False
    base: int = 0


class DescriptorTable(NamedTuple):
    """A GDT or an LDT: `entries` maps an index (selector >> 3) to its descriptor; every
    other entry is a zero descriptor (not present, system type 0)."""

    name: str
    entries: tuple[tuple[int, Descriptor], ...]

    def entry(self, index: int) -> Descriptor | None:
        for i, d in self.entries:
            if i == index:
                return d
        return None


def flat_gdt(s: Selectors) -> DescriptorTable:
    """The GDT of a design that declares none: each selector it names (or the defaults) a
    present flat segment of its RPL's privilege, 64-bit code except ring 1 (a 32-bit PV
    kernel), and SYSRETL's compatibility-mode code at STAR[63:48] (the user SS - 8)."""
    entries = {
        (s.ring3_ss - 8) >> 3: Descriptor("code", 3),
        s.ring1_cs >> 3: Descriptor("code", 1),
        s.ring1_ss >> 3: Descriptor("data", 1),
        s.ring0_cs >> 3: Descriptor("code", 0, long=True, db=False),
        s.ring0_ss >> 3: Descriptor("data", 0),
        s.ring3_ss >> 3: Descriptor("data", 3),
        s.ring3_cs >> 3: Descriptor("code", 3, long=True, db=False),
    }
    return DescriptorTable("gdt", tuple(sorted(entries.items())))


class Breakpoint(NamedTuple):
    """One armed debug-address register (DR0-DR3 with its DR7 fields, SDM Vol. 3B
    §17.2.4): `kind` is "exec" (R/W=00), "write" (01) or "rw" (11, reads or writes);
    `address` is a linear address, or a code address for an instruction breakpoint;
    `length` is DR7 LENn, 1, 2, 4 or 8 bytes (model.x86.debug applies them)."""

    kind: str
    address: int | CodeAddr
    length: int = 1


class Run(IntEnum):
    """What a CPU is doing between instructions."""

    RUNNING = 0
    HALTED = 1  # HLT: waits for an event (SDM Vol. 2 HLT)
    SHUTDOWN = 2  # triple fault (SDM §6.15 #DF): nothing but RESET/INIT restarts it
    # Control went to an address whose code the model does not know (a wild jump or
    # return): what the CPU does next is unknown, so the model follows it no further.
    WILD = 3


class Shadow(IntEnum):
    """Interrupt shadows for the next instruction boundary (SDM §6.8.3, STI)."""

    NONE = 0
    STI = 1
    MOV_SS = 2


class Gate(NamedTuple):
    """A 64-bit IDT gate (SDM §6.14.1). `routine` is the handler entry point."""

    routine: str
    kind: str = "interrupt"  # "interrupt" clears IF on delivery, "trap" keeps it
    dpl: int = 0
    ist: int = 0
    present: bool = True


class Idt(NamedTuple):
    """An IDT: `limit` counts the vectors it covers, `gates` is sparse and sorted."""

    name: str
    limit: int
    gates: tuple[tuple[int, Gate], ...]

    def gate(self, vector: int) -> Gate | None:
        for v, g in self.gates:
            if v == vector:
                return g
        return None

    def with_gate(self, vector: int, gate: Gate | None) -> Idt:
        rest = tuple((v, g) for v, g in self.gates if v != vector)
        if gate is not None:
            rest = tuple(sorted(rest + ((vector, gate),)))
        return self._replace(gates=rest)


class Tss(NamedTuple):
    """A 64-bit TSS (SDM §7.7): RSP0 and IST1-7, each a named stack or None (unusable)."""

    name: str
    rsp0: str | None
    ist: tuple[str | None, ...]  # seven slots, IST1 at index 0


@fast_replace
class Frame(NamedTuple):
    """An interrupt frame pushed by delivery, tracked until IRET or a copy consumes it.

    It is clobbered when something other than its own handler's deliberate store writes
    over it: a delivery's pushes, a PUSH or CALL, another CPU, guest code, or a store made
    while a newer frame of its CPU is live (a nested handler). Its own handler (its CPU at
    CPL 0, with no newer frame live) storing into it only marks it `modified`.

    `lo` is the address of the saved RIP; the five words SS, RSP, RFLAGS, CS, RIP occupy
    [lo, lo + 40). The error code (when pushed) sits below `lo` and is not tracked: handlers
    legitimately rewrite it (Xen stores the vector in its upper half).
    """

    cpu: int
    vector: int
    source: str  # the event kind that pushed it (see delivery.Source)
    lo: int | Term  # symbolic when pushed at a guest-chosen stack pointer
    stack: str  # the region holding it, "guest memory" for guest-controlled addresses
    from_cpl: int  # the CPL of the interrupted context (the saved CS's RPL)
    clobbered: bool = False  # overwritten by anything but its own handler's stores
    on_guest_stack: bool = False
    modified: bool = False  # its own handler stored into it (a fixup's saved RIP)

    @property
    def hi(self) -> int | Term:
        lo = self.lo
        if isinstance(lo, int):
            return (lo + 5 * WORD) & MASK  # add()'s wrap-around, without the call
        return add(lo, 5 * WORD)


@fast_replace
class Cpu(NamedTuple):
    """One logical CPU with its local APIC state."""

    cpl: int
    pc: CodeAddr
    rsp: Value
    regs: tuple[Value, ...]
    rflags: int | Term
    nmi_blocked: bool = False  # from NMI delivery to the next IRET (SDM §6.7.1)
    nmi_pending: bool = False  # the one latched NMI; more while blocked are lost
    mcip: bool = False  # MCG_STATUS.MCIP (SDM §15.3.1.2)
    shadow: Shadow = Shadow.NONE
    # A #DB trap pending for the next boundary (a breakpoint or single-step trap of the
    # previous instruction), held back past the next instruction by MOV SS (SDM §6.8.3).
    held_db: bool = False
    # The held #DB is one the SDM does not say is raised (a delivery's own pushes hitting
    # a data breakpoint, model.x86.debug.delivery_pushes_hit): the boundary that would take
    # it may as well drop it, both explored.
    db_unsure: bool = False
    # The held #DB's cause bits as FRED's event data reports them (model.x86.debug.DR6_BS
    # for a single step, B0-B3 are not kept for held traps); kept under CR4.FRED only,
    # 0 otherwise (the IDT model has no DR6), so IDT states are unchanged.
    db_cause: int = 0
    run: Run = Run.RUNNING
    idtr: str | None = None
    tr: str | None = None
    gs_swapped: bool = False  # SWAPGS parity: True while KERNEL_GS_BASE is live in GS
    delivering: int | None = None  # the vector being delivered, during a delivery only
    ipi_nmi: bool = False  # an NMI IPI sent to this CPU's LAPIC and not yet arrived
    cr4_mce: bool = True  # CR4.MCE: #MC reporting enabled
    # IA32_GS_BASE and IA32_KERNEL_GS_BASE (model.x86.msr): None is this CPU's own per-CPU
    # area, so CPUs stay interchangeable; SWAPGS exchanges the two.
    gs_base: Value | None = None
    kernel_gs_base: Value | None = 0
    msrs: tuple[tuple[int, Value], ...] = ()  # other MSRs WRMSR wrote, sorted by index
    # The CS and SS selectors (model.x86.segments): None is the design's selector for the
    # CPU's CPL (Platform.selectors), what a CPU starts with.
    cs: int | None = None
    ss: int | None = None
    gdtr: str | None = None  # None: the design's first GDT (Platform.gdts)
    ldtr: str | None = None  # None: no LDT loaded, unless the design declares one
    # CR4.FRED: events are delivered by FRED (model.x86.fred), not through the IDT; and
    # FRED's current stack level (0-3, meaningful at CPL 0).
    fred: bool = False
    csl: int = 0

    def reg(self, name: str) -> Value:
        return self.regs[REGISTER_INDEX[name]]

    def with_reg(self, name: str, value: Value) -> Cpu:
        regs = list(self.regs)
        regs[REGISTER_INDEX[name]] = value
        fields = list(self)
        fields[_CPU_REGS] = tuple(regs)
        return _new(Cpu, fields)

    def with_pc(self, pc: CodeAddr) -> Cpu:
        fields = list(self)
        fields[_CPU_PC] = pc
        return _new(Cpu, fields)

    def with_rsp(self, rsp: Value) -> Cpu:
        fields = list(self)
        fields[_CPU_RSP] = rsp
        return _new(Cpu, fields)


_CPU_PC = Cpu._fields.index("pc")
_CPU_RSP = Cpu._fields.index("rsp")
_CPU_REGS = Cpu._fields.index("regs")


def frames_with(frames: tuple[Frame, ...], frame: Frame) -> tuple[Frame, ...]:
    """`frames` (kept in CPU order) with `frame` as its CPU's newest live frame."""
    k = len(frames)
    while k and frames[k - 1].cpu > frame.cpu:
        k -= 1
    return frames[:k] + (frame,) + frames[k:]


@fast_replace
class Machine(NamedTuple):
    """Everything code and events can change."""

    cpus: tuple[Cpu, ...]
    memory: tuple[tuple[int, Value], ...]  # written stack words, sorted by address
    # Live frames, ordered by CPU and oldest first within a CPU: nothing in the semantics
    # reads the order across CPUs, so one order keeps "CPU 1's frame, then CPU 2's" and the
    # reverse from being two states (4.6x fewer kexec states on 4 CPUs).
    frames: tuple[Frame, ...]
    idts: tuple[Idt, ...]
    tsss: tuple[Tss, ...]
    incidents: tuple[str, ...] = ()  # sticky, sorted: things that happened (see incident())
    sym_memory: tuple[tuple[Term, Value], ...] = ()  # words written at symbolic addresses

    def idt(self, name: str | None) -> Idt | None:
        for t in self.idts:
            if t.name == name:
                return t
        return None

    def tss(self, name: str | None) -> Tss | None:
        for t in self.tsss:
            if t.name == name:
                return t
        return None

    def with_cpu(self, i: int, cpu: Cpu) -> Machine:
        cpus = list(self.cpus)
        cpus[i] = cpu
        fields = list(self)
        fields[0] = tuple(cpus)
        return _new(Machine, fields)

    def with_memory(
        self, memory: tuple[tuple[int, Value], ...], frames: tuple[Frame, ...]
    ) -> Machine:
        fields = list(self)
        fields[1] = memory
        fields[2] = frames
        return _new(Machine, fields)

    def with_idt(self, idt: Idt) -> Machine:
        return self._replace(idts=tuple(idt if t.name == idt.name else t for t in self.idts))

    def with_tss(self, tss: Tss) -> Machine:
        return self._replace(tsss=tuple(tss if t.name == tss.name else t for t in self.tsss))

    def with_frame(self, frame: Frame) -> Machine:
        """The machine with `frame` as its CPU's newest live frame."""
        return self._replace(frames=frames_with(self.frames, frame))

    def incident(self, what: str) -> Machine:
        """Record a sticky happening (e.g. an IST delivery with no TSS loaded)."""
        if what in self.incidents:
            return self
        return self._replace(incidents=tuple(sorted(self.incidents + (what,))))


@dataclass(frozen=True)
class StackRegion:
    """A stack's memory: [lo, lo + size). `owner` is "hypervisor" or "guest"."""

    name: str
    lo: int
    size: int
    owner: str = "hypervisor"

    @property
    def hi(self) -> int:
        return self.lo + self.size

    @property
    def top(self) -> int:
        """The initial RSP: one past the highest word (what a TSS slot points at)."""
        return self.lo + self.size


@dataclass(frozen=True)
class Platform:
    """What no instruction changes: memory layout, vendor and rule knobs, MSRs."""

    regions: tuple[StackRegion, ...] = ()
    vendor: str = "intel"  # SYSRET's non-canonical RCX behaviour (Intel or AMD)
    df_rule: str = "sdm"  # "sdm": Table 6-5; "strict": any fault delivering #DF shuts down
    # IA32_FMASK, the RFLAGS bits SYSCALL clears: what software wrote (the design's
    # `fmask`); 0, clearing nothing, when it says nothing.
    fmask: int = 0
    selectors: Selectors = field(default_factory=Selectors)  # the CS/SS delivery pushes per CPL
    lstar: str | None = None  # the routine SYSCALL enters
    mode64: bool = True  # 64-bit mode (INTO is #UD); False models a compat-mode guest
    # The debug registers software armed (model.x86.debug), the same on every CPU, and
    # CR4.SMAP (model.x86.smap).
    breakpoints: tuple[Breakpoint, ...] = ()
    smap: bool = False
    # The descriptor tables the design declares (`gdt`, `ldt`); with no `gdt` a flat GDT
    # made from `selectors` (flat_gdt). A CPU starts on the first of each.
    gdts: tuple[DescriptorTable, ...] = ()
    ldts: tuple[DescriptorTable, ...] = ()
    star: int | None = None  # IA32_STAR as software wrote it; None: made from `selectors`
    # The FRED MSRs' values before software writes them (the design's `fred` block), per
    # CPU as (index, value) pairs, and the ring-0 entry point of each ring-3 FRED entry
    # routine (IA32_FRED_CONFIG + 256): (ring-3 routine, ring-0 routine) pairs.
    fred_msrs: tuple[tuple[tuple[int, Value], ...], ...] = ()
    fred_ring0: tuple[tuple[str, str], ...] = ()
    # A word the design never wrote where the reset TR's TSS lies (linear 0x04-0x5B) reads
    # as an unknown value, every one explored (model.x86.delivery.reset_tss_slot); False
    # assumes it reads 0, one answer of many the SDM leaves open, cheaper to explore.
    unwritten_unknown: bool = True
    _by_name: dict[str, StackRegion] = field(default_factory=dict, compare=False, repr=False)
    # The non-empty regions sorted by address, when no two overlap (a binary search then
    # finds the only candidate); None falls back to the first match in declaration order.
    _starts: list[int] | None = field(init=False, compare=False, repr=False)
    _sorted: list[tuple[int, StackRegion]] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.gdts:
            object.__setattr__(self, "gdts", (flat_gdt(self.selectors),))
        self._by_name.update({r.name: r for r in self.regions})
        ordered = sorted((r for r in self.regions if r.size > 0), key=lambda r: r.lo)
        disjoint = all(a.hi <= b.lo for a, b in pairwise(ordered))
        object.__setattr__(self, "_starts", [r.lo for r in ordered] if disjoint else None)
        object.__setattr__(self, "_sorted", [(r.hi, r) for r in ordered])

    def gdt(self, name: str | None) -> DescriptorTable | None:
        """The GDT GDTR names (None: the first declared)."""
        if name is None:
            return self.gdts[0] if self.gdts else None
        return next((t for t in self.gdts if t.name == name), None)

    def ldt(self, name: str | None) -> DescriptorTable | None:
        """The LDT LDTR names (None: the first declared, or none)."""
        if name is None:
            return self.ldts[0] if self.ldts else None
        return next((t for t in self.ldts if t.name == name), None)

    def region(self, name: str) -> StackRegion:
        return self._by_name[name]

    def region_at(self, address: int) -> StackRegion | None:
        starts = self._starts
        if starts is not None:
            i = bisect_right(starts, address) - 1
            if i >= 0:
                hi, r = self._sorted[i]
                if address < hi:
                    return r
            return None
        for r in self.regions:
            if r.lo <= address < r.hi:
                return r
        return None
