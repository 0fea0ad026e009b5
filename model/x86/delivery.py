"""Event delivery through the 64-bit IDT, and the double-fault rules.

SDM Vol. 3A §6.12 (exception- and interrupt-handling procedures), §6.14 (64-bit mode:
IST, 16-byte alignment, the frame always includes SS:RSP), §6.15 Table 6-5 (#DF and
shutdown), Vol. 2 INT n/INTO/INT3/INT1 pseudocode for the order of the checks.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import Any, NamedTuple

from checker.symbolic import Term, add, band, bor, decide, eq, lshr, shl, var
from model.x86 import debug, smap
from model.x86.arch import (
    ADDRESS_MASK,
    CONTRIBUTORY_VECTORS,
    DF,
    ERROR_CODE_VECTORS,
    GP,
    IF,
    NP,
    NT,
    PAGE_FAULT_VECTORS,
    RF,
    SS,
    TF,
    UD,
    EventClass,
    canonical_cond,
    idt_error_code,
)
from model.x86.memory import (
    ArchFault,
    classify,
    classify_range,
    location_name,
    read,
    write_words,
)
from model.x86.segments import cs_of, ss_of
from model.x86.state import (
    WORD,
    CodeAddr,
    Cpu,
    Frame,
    Gate,
    Idt,
    Machine,
    Platform,
    Run,
    Shadow,
    Value,
    frames_with,
)


class Source(str, Enum):  # noqa: UP042 (StrEnum would change str(Source.X))
    """How an event reached the CPU: this decides the DPL check, NMI/MCIP side effects,
    the error code and the EXT bit."""

    EXCEPTION = "exception"  # raised by the processor: faults, traps, aborts
    NMI = "nmi"  # a real NMI (pin, LAPIC LINT, or an NMI IPI)
    MACHINE_CHECK = "machine-check"  # a real #MC
    EXTERNAL = "external"  # a maskable interrupt through the LAPIC, any vector 16-255
    INT_N = "int n"
    INT3 = "int3"
    INTO = "into"
    INT1 = "int1"  # ICEBP: a privileged software exception, no DPL check


# SDM Vol. 2 INT n: only INT n, INT3 and INTO compare the gate DPL with CPL.
DPL_CHECKED = frozenset({Source.INT_N, Source.INT3, Source.INTO})


class Event(NamedTuple):
    source: Source
    vector: int
    error_code: int | Term | None = None  # symbolic: a guest-chosen selector

    @property
    def external(self) -> bool:
        """The EXT bit of an error code raised while delivering this event (SDM §6.13)."""
        return self.source not in DPL_CHECKED


class Escalation(Enum):
    """What a second exception raised while delivering a first one leads to (SDM Table 6-5);
    named apart from the checker's explore.Outcome."""

    SERIAL = "serial"
    DOUBLE_FAULT = "double fault"
    SHUTDOWN = "shutdown"


def event_class(event: Event) -> EventClass:
    """SDM Table 6-4. NMI, #MC, INT n and external interrupts are all benign."""
    if event.source is not Source.EXCEPTION:
        return EventClass.BENIGN
    if event.vector == DF:
        return EventClass.DOUBLE_FAULT
    if event.vector in CONTRIBUTORY_VECTORS:
        return EventClass.CONTRIBUTORY
    if event.vector in PAGE_FAULT_VECTORS:
        return EventClass.PAGE_FAULT
    return EventClass.BENIGN


def double_fault_outcome(first: Event, second: Event, df_rule: str = "sdm") -> Escalation:
    """SDM Table 6-5: what happens when `second` is raised while delivering `first`.

    `df_rule="strict"` shuts down on any exception during #DF delivery (what KVM and older
    SDMs do); the default follows the table.
    """
    f, s = event_class(first), event_class(second)
    if f is EventClass.DOUBLE_FAULT:
        if df_rule == "strict" or s in (EventClass.CONTRIBUTORY, EventClass.PAGE_FAULT):
            return Escalation.SHUTDOWN
        return Escalation.SERIAL
    if f is EventClass.CONTRIBUTORY and s is EventClass.CONTRIBUTORY:
        return Escalation.DOUBLE_FAULT
    if f is EventClass.PAGE_FAULT and s in (EventClass.CONTRIBUTORY, EventClass.PAGE_FAULT):
        return Escalation.DOUBLE_FAULT
    return Escalation.SERIAL


def pushes_error_code(event: Event) -> bool:
    """Only exceptions push one, and only on the vectors that define one (SDM §6.13)."""
    return event.source is Source.EXCEPTION and event.vector in ERROR_CODE_VECTORS


# Read once (an enum member read on its class is slow in Python 3.11), and the Cpu
# fields delivery sets, by index.
_NMI = Source.NMI
_MACHINE_CHECK = Source.MACHINE_CHECK
_SOURCE_VALUE = {s: s.value for s in Source}
_RUNNING = Run.RUNNING
_NO_SHADOW = Shadow.NONE
_new = tuple.__new__
_CPL, _CS, _SS, _RSP, _PC, _RFLAGS, _RUN, _SHADOW, _DELIVERING, _NMI_BLOCKED, _MCIP = (
    Cpu._fields.index(name) for name in (
        "cpl", "cs", "ss", "rsp", "pc", "rflags", "run", "shadow", "delivering",
        "nmi_blocked", "mcip",
    )
)

IST_WITHOUT_TSS = "ist-without-tss"
RESET_TSS = 0  # the TR's base after reset (SDM Vol. 3A Table 9-1)


def unwritten_word(address: int) -> Term:
    """The value of a word at `address` the design never wrote: unknown, one symbol per
    address (every value is explored; two reads of the untouched word agree)."""
    return var(f"unwritten@{address:#x}")


def with_unwritten_values(m: Machine, values: Mapping[str, int]) -> Machine:
    """`m` with the never-written words that `values` names (`unwritten_word` symbols,
    as a witness gives them) holding those values, so that a concrete re-run reads them:
    a slot symbol at an unaligned address fills the two words it straddles."""
    words = dict(m.memory)
    for name, value in values.items():
        prefix, _, at = name.partition("@")
        if prefix != "unwritten" or not at.startswith("0x"):
            continue
        address = int(at, 16)
        shift = 8 * (address % WORD)
        if not shift:
            words[address] = value & ADDRESS_MASK
            continue
        low, high = address - address % WORD, address - address % WORD + WORD
        keep_low = (1 << shift) - 1
        words[low] = (_int(words.get(low)) & keep_low) | ((value << shift) & ADDRESS_MASK)
        words[high] = (_int(words.get(high)) & ~keep_low & ADDRESS_MASK) | (
            (value & ADDRESS_MASK) >> (64 - shift))
    return m.with_memory(tuple(sorted(words.items())), m.frames)


def _int(word: Value | None) -> int:
    return word if isinstance(word, int) else 0


def reset_tss_slot(m: Machine, ist: int, unknown: bool = True) -> Value:
    """RSP0 (ist 0) or IST`ist` of a 64-bit TSS at linear address 0, the reset TR's base
    (limit 0xFFFF covers it): 8 bytes at 0x04 or 0x24 + 8 * (ist - 1), which straddle two
    of the model's aligned words. A word the design never wrote there holds whatever was
    in memory, which neither the SDM nor the design says: with `unknown` it reads as an
    unknown value (`unwritten_word`), so every stack pointer is explored (non-canonical:
    #SS; unmapped: #PF; guest memory; a hypervisor stack, whose live frames the pushes
    clobber); without, as 0 (the pushes wrap below 0 and fault, #PF), one answer."""
    offset = RESET_TSS + (0x24 + 8 * (ist - 1) if ist else 0x04)
    low_word = offset - offset % WORD
    if not unknown:
        low, high = read(m, low_word), read(m, low_word + WORD)
        return _straddling(low, high, offset)
    low = read(m, low_word, unwritten_word(low_word))
    high = read(m, low_word + WORD, unwritten_word(low_word + WORD))
    if low == unwritten_word(low_word) and high == unwritten_word(low_word + WORD):
        # Both words untouched: the slot is one unknown 64-bit value (one plain symbol
        # keeps the decisions on it cheap, where two shifted halves would not be).
        return unwritten_word(offset)
    return _straddling(low, high, offset)


def _straddling(low: Value, high: Value, offset: int) -> Value:
    """The 8 bytes at `offset` from the two aligned words they straddle."""
    # Half of a code address is no number the model has: a stack pointer it cannot
    # place, which delivery treats as non-canonical (#SS).
    if isinstance(low, CodeAddr):
        return low
    if isinstance(high, CodeAddr):
        return high
    shift = 8 * (offset % WORD)
    return band(bor(lshr(low, shift), shl(high, 64 - shift)), ADDRESS_MASK)


def shutdown(m: Machine, cpu_i: int) -> Machine:
    """Triple fault: the CPU stops (SDM §6.15 Interrupt 8, "shutdown")."""
    cpu = m.cpus[cpu_i]
    return m.with_cpu(cpu_i, cpu._replace(run=Run.SHUTDOWN, delivering=None))


def deliver(
    platform: Platform,
    m: Machine,
    cpu_i: int,
    event: Event,
    return_pc: CodeAddr | Value,
    instruction_pc: CodeAddr | None = None,
) -> Machine:
    """Deliver `event` on CPU `cpu_i`; `return_pc` is the RIP the frame saves.

    A fault during delivery is combined with the event being delivered by Table 6-5:
    serially (the fault is delivered instead), as #DF, or as shutdown. For INT n, INT3,
    INTO and INT1, `instruction_pc` is the instruction's own address: a fault raised by
    their delivery (the DPL check's #GP, INTO's #UD, a missing gate) is a fault of that
    instruction and saves its address, not the next one (SDM Vol. 2 INT n, §6.5).
    """
    cpu = m.cpus[cpu_i]
    if instruction_pc is not None and event.source in (*DPL_CHECKED, Source.INT1):
        fault_pc: CodeAddr | Value = instruction_pc
    else:
        fault_pc = return_pc
    if event.source is Source.INTO and platform.mode64:
        # SDM Vol. 2 INTO: #UD in 64-bit mode, before any IDT access.
        event = Event(Source.EXCEPTION, UD)
        return_pc = fault_pc
    fields = list(cpu)
    if event.source is _NMI:
        # NMIs stay blocked from acceptance to the next IRET (SDM §6.7.1).
        fields[_NMI_BLOCKED] = True
    elif event.source is _MACHINE_CHECK:
        # SDM Vol. 3B §15.3.1.2 (IA32_MCG_STATUS.MCIP): a second #MC while MCIP is set
        # shuts down; with CR4.MCE clear so does any #MC (SDM §6.15, Interrupt 18).
        if cpu.mcip or not cpu.cr4_mce:
            return shutdown(m, cpu_i)
        fields[_MCIP] = True
    current = event
    while True:
        fields[_DELIVERING] = current.vector
        m = m.with_cpu(cpu_i, _new(Cpu, fields))
        m, fault = _enter_handler(platform, m, cpu_i, current, return_pc)
        if fault is None:
            return m
        fields = list(m.cpus[cpu_i])
        raised = Event(Source.EXCEPTION, fault.vector, fault.error_code)
        return_pc = fault_pc
        outcome = double_fault_outcome(current, raised, platform.df_rule)
        if outcome is Escalation.SHUTDOWN:
            return shutdown(m, cpu_i)
        current = Event(Source.EXCEPTION, DF, 0) if outcome is Escalation.DOUBLE_FAULT else raised


def _smap_fault(
    platform: Platform, m: Machine, cpu_i: int, stores: list[tuple[Value, Value]], cpl: int,
    where: Any,
) -> tuple[Machine, ArchFault] | None:
    """With CR4.SMAP, the first push that lands on a user page faults (#PF) instead of
    writing guest memory (model.x86.smap); the pushes before it are made."""
    rflags = m.cpus[cpu_i].rflags
    for k, (address, _) in enumerate(stores):
        try:
            smap.check(platform, address, cpl, rflags, True, where)
        except ArchFault as fault:
            m, earlier = write_words(platform, m, stores[:k], cpl, where)
            return m, earlier or fault
    return None


def _lookup_gate(idt: Idt | None, vector: Any) -> tuple[Any, Gate | None]:
    """The gate for `vector` (None beyond the limit or for an empty entry). A symbolic
    vector (a guest's INT $N) is split over the table's gates: each branch continues
    with that concrete vector, the last with every other vector."""
    if idt is None:
        return vector, None
    if isinstance(vector, int):
        return vector, (idt.gate(vector) if vector < idt.limit else None)
    for v, g in idt.gates:
        if v < idt.limit and decide(eq(vector, v)):
            return v, g
    return vector, None


def _enter_handler(
    platform: Platform, m: Machine, cpu_i: int, event: Event, return_pc: CodeAddr | Value
) -> tuple[Machine, ArchFault | None]:
    """One delivery attempt: the SDM's checks in order, the stack switch and the frame.

    Returns the new machine, or the machine to continue from and the fault raised.
    """
    cpu = m.cpus[cpu_i]
    idt = m.idt(cpu.idtr)
    vector, gate = _lookup_gate(idt, event.vector)
    if gate is None:
        # Beyond the IDT limit, or not a 64-bit interrupt/trap gate (SDM §6.12.1.1).
        return m, ArchFault(GP, idt_error_code(vector, event.external), "no gate")
    if event.source in DPL_CHECKED and gate.dpl < cpu.cpl:
        return m, ArchFault(GP, idt_error_code(vector, False), "gate DPL < CPL")
    if not gate.present:
        return m, ArchFault(NP, idt_error_code(vector, event.external), "gate not present")

    new_cpl = 0  # every gate's code segment is the hypervisor's ring-0 CS
    ext = 1 if event.external else 0
    new_rsp: Value
    if gate.ist or new_cpl < cpu.cpl:
        tss = m.tss(cpu.tr)
        if tss is None:
            # No LTR yet: the TR still has its reset value, base 0 and limit 0xFFFF (SDM
            # Vol. 3A Table 9-1), so the stack pointer is read from linear memory at
            # 0x04 (RSP0) or 0x24 + 8 * (IST - 1) (the 64-bit TSS layout, SDM Figure
            # 8-11): whatever is there, usually guest memory in a PV hypervisor.
            if gate.ist:
                m = m.incident(IST_WITHOUT_TSS)
            new_rsp = reset_tss_slot(m, gate.ist, platform.unwritten_unknown)
        else:
            slot = tss.ist[gate.ist - 1] if gate.ist else tss.rsp0
            # An unset slot reads as 0: pushing below it touches an unmapped page.
            new_rsp = platform.region(slot).top if slot is not None else 0
    else:
        new_rsp = cpu.rsp
    if isinstance(new_rsp, CodeAddr) or not decide(canonical_cond(new_rsp)):
        # SDM Vol. 2 INT n (IA-32e, 64-bit gate): "IF NewRSP contains a non-canonical
        # address THEN #SS(EXT)", checked before the alignment and the pushes.
        return m, ArchFault(SS, ext, "non-canonical stack pointer for delivery")
    new_rsp = band(new_rsp, ~0xF & ADDRESS_MASK)  # SDM §6.14.2: align RSP to 16 bytes

    # The frame saves the interrupted context's own SS and CS (SDM §6.14.2).
    words: list[Value] = [
        ss_of(platform, cpu),
        cpu.rsp,
        cpu.rflags,
        cs_of(platform, cpu),
        return_pc,
    ]
    if pushes_error_code(event):
        words.append(event.error_code or 0)
    rsp: int | Term = new_rsp
    # A symbolic stack pointer (a guest's): decide where the whole frame lands at once.
    where = (
        classify_range(platform, add(new_rsp, -WORD * len(words)), WORD * len(words))
        if isinstance(new_rsp, Term) else None
    )
    stores: list[tuple[Value, Value]] = []
    for word in words:
        # RSP arithmetic wraps modulo 2^64: an unset TSS slot (0) pushes its first word
        # at 0xFFFFFFFFFFFFFFF8, a canonical unmapped address (#PF), not at -8.
        rsp = add(rsp, -WORD)
        stores.append((rsp, word))
    if platform.smap:
        refused = _smap_fault(platform, m, cpu_i, stores, new_cpl, where)
        if refused is not None:
            return refused
    m, fault = write_words(platform, m, stores, new_cpl, where)
    if fault is not None:
        return m, fault
    # The frame's pushes on a watched address: maybe a #DB trap (debug.delivery_trap).
    watched = bool(platform.breakpoints) and debug.delivery_pushes_hit(
        platform.breakpoints, stores
    )
    rip_slot = add(new_rsp, -5 * WORD)
    # Where the frame landed (for a symbolic RSP the pushes above already decided it).
    kind, region = where if where is not None else classify(platform, rip_slot)
    frame = Frame(
        cpu_i,
        vector,
        _SOURCE_VALUE[event.source],
        rip_slot,
        location_name(kind, region),
        cpu.cpl,
        False,  # clobbered
        new_cpl == 0 and (kind == "guest" or (region is not None and region.owner == "guest")),
    )
    cleared = TF | NT | RF | (IF if gate.kind == "interrupt" else 0)
    flags = band(cpu.rflags, ~cleared & ADDRESS_MASK)
    # (the fields set by index: one record built, not a keyword _replace)
    fields = list(m.cpus[cpu_i])
    fields[_CPL] = new_cpl
    # Every gate's code segment is the hypervisor's CS; a CPL change loads a NULL SS
    # whose RPL is the new CPL, a same-level delivery keeps SS (SDM §6.14.2).
    fields[_CS] = platform.selectors.ring0_cs
    fields[_SS] = new_cpl if new_cpl != cpu.cpl else ss_of(platform, cpu)
    fields[_RSP] = rsp
    fields[_PC] = CodeAddr(gate.routine, 0)
    fields[_RFLAGS] = flags
    fields[_RUN] = _RUNNING
    fields[_SHADOW] = _NO_SHADOW
    fields[_DELIVERING] = None
    cpu = _new(Cpu, fields)
    if watched:
        cpu = debug.delivery_trap(cpu)
    # Machine.with_frame and with_cpu, one machine built.
    cpus = list(m.cpus)
    cpus[cpu_i] = cpu
    built = list(m)
    built[0] = tuple(cpus)
    built[2] = frames_with(m.frames, frame)
    return _new(Machine, built), None
