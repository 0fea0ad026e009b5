"""FRED (Flexible Return and Event Delivery) as pure functions over the machine's values.

Source: Intel, "Flexible Return and Event Delivery (FRED) Architecture Specification"
(document 346446). Its text was not available to this module's author; docs/fred.md
lists every section number cited here and which could be checked against a secondary
source: §4 enumeration, enabling and configuration (verified: revision 6.0's §4.2 is
"Enabling in CR4"; the MSRs' subsection is not), §5 FRED event delivery (§5.1 the new
context, §5.2 the frame, §5.3 the event-related state), §6 ERETS/ERETU and §7 LKGS
(unverified), Appendix B of revision 5.0 (verified: #DF and nested exceptions take the
ring-0 stack-level rules). Where a rule here rests on a secondary source (Bochs' FRED
model, bochs/cpu/fred.cc; Linux arch/x86/include/asm/fred.h and ptrace.h; Xen's
docs/hypervisor-guide/x86/fred.rst) the docstring says so, and where those sources are
silent or disagree the function returns every permitted outcome instead of choosing
one.

The functions answer "which stack, which words, which entry point, which CPU
afterwards"; `deliver_event` (reached through model.x86.dispatch for every event on a CPU
with CR4.FRED set) and the interpreter's ERETS/ERETU/LKGS/MOV CR4 apply the answers. The
state FRED adds lives in `Cpu` (`fred` is CR4.FRED, `csl` the current stack level) and in
the MSRs (`Cpu.msrs` as WRMSR wrote them over `Platform.fred_msrs`, the design's `fred`
block); `FredConfig` and `FredState` are the views the rules read. Where the sources
leave an outcome open and the caller wants one machine, `pick` explores each
(checker.symbolic.oracle).

Shadow stacks (IA32_FRED_SSP1-3, the CET parts of the frame and of ERET*) are out of
scope: the CS word's WFE bit (18) is always pushed as 0 and never checked.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from enum import IntEnum
from typing import Any, NamedTuple

from checker.symbolic import MASK, Term, add, band, bor, decide, eq, lshr, ne, oracle, shl
from model.x86 import debug
from model.x86.arch import (
    DB,
    DF,
    ERROR_CODE_VECTORS,
    GP,
    IF,
    MC,
    NM,
    PF,
    RF,
    RFLAGS_FIXED,
    SS,
    TF,
    UD,
    canonical_cond,
)
from model.x86.delivery import Escalation, Event, Source, double_fault_outcome, shutdown
from model.x86.instructions import GUEST_CODE, CodeAt
from model.x86.memory import (
    ArchFault,
    classify,
    classify_range,
    location_name,
    write_words,
)
from model.x86.msr import (
    IA32_FRED_CONFIG,
    IA32_FRED_RSP0,
    IA32_FRED_RSP1,
    IA32_FRED_RSP2,
    IA32_FRED_RSP3,
    IA32_FRED_STKLVLS,
)
from model.x86.segments import cs_of, ss_of
from model.x86.state import WORD, CodeAddr, Cpu, Frame, Machine, Platform, Run, Shadow, Value

# §4.2: CR4.FRED is bit 32; the MSR indices (as Linux and Bochs define them) live with the
# other MSRs in model.x86.msr.
CR4_FRED = 1 << 32
IA32_FRED_RSP = (IA32_FRED_RSP0, IA32_FRED_RSP1, IA32_FRED_RSP2, IA32_FRED_RSP3)

# IA32_FRED_CONFIG fields (§4; Linux FRED_CONFIG_*): bits 63:12 the entry point (4 KiB
# aligned), bits 10:9 the stack level of maskable interrupts, bits 8:6 the red zone in
# 64-byte units (bit 3, the shadow-stack red zone, is out of scope).
CONFIG_ENTRY_MASK = ~0xFFF & MASK
CONFIG_INT_STKLVL_SHIFT = 9
CONFIG_REDZONE_SHIFT = 6
RING0_ENTRY_OFFSET = 256  # §5.1: events in ring 0 enter at the configured base + 256

FRAME_BYTES = 64  # §5.2: eight words, pushed at a 64-byte aligned RSP
FRAME_ALIGN = 64
STACK_LEVELS = 4

# The frame as seen from the new RSP (Linux struct fred_frame: pt_regs then fred_info).
OFF_ERROR_CODE = 0
OFF_RIP = 8
OFF_CS = 16
OFF_RFLAGS = 24
OFF_RSP = 32
OFF_SS = 40
OFF_EVENT_DATA = 48
OFF_RESERVED = 56

# The saved CS word (§5.2): bits 15:0 CS, 17:16 the stack level at the event, 18 WFE.
CS_SL_SHIFT = 16
CS_WFE = 1 << 18
# The saved SS word (§5.2): bits 15:0 SS, 16 STI blocking, 17 "software event" (SYSCALL,
# SYSENTER, INT n), 18 NMI, 39:32 vector, 51:48 event type, 57 64-bit mode, 58 nested
# exception, 63:60 instruction length.
SS_STI = 1 << 16
SS_SWEVENT = 1 << 17
SS_NMI = 1 << 18
SS_VECTOR_SHIFT = 32
SS_TYPE_SHIFT = 48
SS_64BIT = 1 << 57
SS_NESTED = 1 << 58
SS_LENGTH_SHIFT = 60

# ERET* frame checks (Bochs fred.cc, from the specification's ERETS/ERETU pseudocode):
# RFLAGS bits that must be clear (bit 1 must be set); ERETU also refuses IOPL != 0.
ERETS_RFLAGS_MUST_BE_ZERO = 0xFFFF_FFFF_FFC2_802A & ~RFLAGS_FIXED
ERETU_RFLAGS_MUST_BE_ZERO = 0xFFFF_FFFF_FFC2_B02A & ~RFLAGS_FIXED
ERETS_CS_IGNORED = 0x7_0000  # SL and WFE: every other bit must equal the current CS
ERETS_SS_CHECKED = 0xFFF8_FFFF  # bits 31:19 zero, 15:0 the current SS; 63:32 unchecked
ERETU_SS_CHECKED = 0xFFF8_0003  # bits 31:19 zero and RPL 3
ERETU_CS_CHECKED = 0xFFFF_FFFF_FFFF_0003  # bits 63:16 zero and RPL 3


class EventType(IntEnum):
    """§5.2 (the SS word's bits 51:48): the FRED event types."""

    EXTERNAL_INTERRUPT = 0
    NMI = 2
    HARDWARE_EXCEPTION = 3
    SOFTWARE_INTERRUPT = 4  # INT n
    PRIVILEGED_SOFTWARE_EXCEPTION = 5  # INT1 (ICEBP)
    SOFTWARE_EXCEPTION = 6  # INT3, INTO
    OTHER = 7  # SYSCALL (vector 1), SYSENTER (vector 2)


OTHER_SYSCALL = 1
OTHER_SYSENTER = 2

# The types whose frame records the instruction length (Linux ptrace.h: INT n, INT1,
# INT3, INTO, SYSCALL, SYSENTER); every other event pushes 0 there.
LENGTH_TYPES = frozenset({
    EventType.SOFTWARE_INTERRUPT, EventType.PRIVILEGED_SOFTWARE_EXCEPTION,
    EventType.SOFTWARE_EXCEPTION, EventType.OTHER,
})
# The types whose stack level IA32_FRED_STKLVLS gives (by vector, 0-31).
STKLVLS_TYPES = frozenset({
    EventType.NMI, EventType.HARDWARE_EXCEPTION,
    EventType.PRIVILEGED_SOFTWARE_EXCEPTION, EventType.SOFTWARE_EXCEPTION,
})


class FredEvent(NamedTuple):
    """An event as FRED delivers it. `vector` is symbolic for a guest's INT $N with N
    symbolic; `event_data` is the frame's event-data word (CR2 for #PF, the #DB bits,
    IA32_XFD_ERR for #NM, 0 otherwise); `nested` marks an exception raised while
    delivering another event (§5.1: it follows the ring-0 stack-level rules)."""

    type: EventType
    vector: Any  # int, or a Term for a symbolic INT $N
    error_code: Value = 0
    instruction_length: int = 0
    event_data: Value = 0
    nested: bool = False

    @property
    def pushes_error_code(self) -> bool:
        return self.type is EventType.HARDWARE_EXCEPTION and self.vector in ERROR_CODE_VECTORS


_TYPE_OF_SOURCE: dict[Source, EventType] = {
    Source.EXCEPTION: EventType.HARDWARE_EXCEPTION,
    Source.MACHINE_CHECK: EventType.HARDWARE_EXCEPTION,
    Source.NMI: EventType.NMI,
    # Any vector through the LAPIC or a PIC, vector 2 included: a PIC's vector 2 is an
    # external interrupt under FRED, not an NMI (it neither blocks NMIs nor sets bit 18).
    Source.EXTERNAL: EventType.EXTERNAL_INTERRUPT,
    Source.INT_N: EventType.SOFTWARE_INTERRUPT,
    Source.INT3: EventType.SOFTWARE_EXCEPTION,
    Source.INTO: EventType.SOFTWARE_EXCEPTION,
    Source.INT1: EventType.PRIVILEGED_SOFTWARE_EXCEPTION,
}


def fred_event(
    event: Event, *, instruction_length: int = 0, event_data: Value = 0, nested: bool = False
) -> FredEvent:
    """The FRED view of an IDT-model `Event` (§5.2 event types). INTO in 64-bit mode is
    #UD before any delivery, as under IDT: convert it first. `instruction_length` is
    kept only for the types that record it; the error code only for the exceptions that
    push one (the word is 0 otherwise)."""
    etype = _TYPE_OF_SOURCE[event.source]
    length = instruction_length if etype in LENGTH_TYPES else 0
    code: Value = 0
    if etype is EventType.HARDWARE_EXCEPTION and event.vector in ERROR_CODE_VECTORS:
        code = event.error_code or 0
    return FredEvent(etype, event.vector, code, length, event_data, nested)


def syscall_event(instruction_length: int = 2) -> FredEvent:
    """SYSCALL under FRED: an event of type OTHER, vector 1 (§5.2)."""
    return FredEvent(EventType.OTHER, OTHER_SYSCALL, 0, instruction_length)


def sysenter_event(instruction_length: int = 2) -> FredEvent:
    """SYSENTER under FRED: an event of type OTHER, vector 2 (§5.2)."""
    return FredEvent(EventType.OTHER, OTHER_SYSENTER, 0, instruction_length)


def double_fault_event() -> FredEvent:
    """#DF: a hardware exception with error code 0; never marked nested (Linux ptrace.h:
    the nested bit is "not set for #DF")."""
    return FredEvent(EventType.HARDWARE_EXCEPTION, DF, 0)


def as_idt_event(fev: FredEvent) -> Event:
    """The IDT-model event of the same kind (for Table 6-4/6-5 classification)."""
    source = {
        EventType.EXTERNAL_INTERRUPT: Source.EXTERNAL,
        EventType.NMI: Source.NMI,
        EventType.HARDWARE_EXCEPTION: Source.MACHINE_CHECK if fev.vector == MC
        else Source.EXCEPTION,
        EventType.SOFTWARE_INTERRUPT: Source.INT_N,
        EventType.PRIVILEGED_SOFTWARE_EXCEPTION: Source.INT1,
        EventType.SOFTWARE_EXCEPTION: Source.INT3 if fev.vector == 3 else Source.INTO,
        EventType.OTHER: Source.INT_N,  # benign, like every software event
    }[fev.type]
    code = fev.error_code if isinstance(fev.error_code, int) else 0
    return Event(source, fev.vector, code if fev.pushes_error_code else None)


class FredConfig(NamedTuple):
    """The FRED MSRs (§4), what WRMSR wrote. `entry` is IA32_FRED_CONFIG[63:12]: an
    address, or the code address of the label a design wrote there; `rsp` holds
    IA32_FRED_RSP0-3 (0 after reset)."""

    entry: Value = 0
    int_stack_level: int = 0  # IA32_FRED_CONFIG[10:9]
    redzone: int = 0  # IA32_FRED_CONFIG[8:6] * 64, in bytes
    stklvls: int = 0  # IA32_FRED_STKLVLS: two bits per vector 0-31
    rsp: tuple[Value, Value, Value, Value] = (0, 0, 0, 0)

    def vector_level(self, vector: int) -> int:
        """IA32_FRED_STKLVLS[2v+1:2v]."""
        return (self.stklvls >> (2 * vector)) & 3


def config_from_msrs(msrs: Mapping[int, Value]) -> FredConfig:
    """A `FredConfig` from MSR values (e.g. `dict(cpu.msrs)`); unwritten MSRs read 0.
    A code address written to IA32_FRED_CONFIG is the entry point with no other field."""
    raw = msrs.get(IA32_FRED_CONFIG, 0)
    entry: Value
    if isinstance(raw, int):
        entry = raw & CONFIG_ENTRY_MASK
        int_level = (raw >> CONFIG_INT_STKLVL_SHIFT) & 3
        redzone = ((raw >> CONFIG_REDZONE_SHIFT) & 7) * FRAME_ALIGN
    elif isinstance(raw, CodeAddr):
        entry, int_level, redzone = raw, 0, 0
    else:
        raise ArchFault(GP, 0, "a symbolic IA32_FRED_CONFIG is not modelled")
    levels = msrs.get(IA32_FRED_STKLVLS, 0)
    if not isinstance(levels, int):
        raise ArchFault(GP, 0, "a symbolic IA32_FRED_STKLVLS is not modelled")
    rsp = tuple(msrs.get(index, 0) for index in IA32_FRED_RSP)
    return FredConfig(entry, int_level, redzone, levels & MASK, rsp)  # type: ignore[arg-type]


def wrmsr_faults(index: int, value: Value) -> bool:
    """WRMSR to a FRED MSR #GPs (§4; Bochs msr.cc): IA32_FRED_RSPn must be canonical and
    64-byte aligned, IA32_FRED_CONFIG's entry canonical. True when it faults."""
    if isinstance(value, CodeAddr):
        return False
    if index in IA32_FRED_RSP:
        if not decide(canonical_cond(value)):
            return True
        return decide(ne(band(value, FRAME_ALIGN - 1), 0))
    if index == IA32_FRED_CONFIG:
        return not decide(canonical_cond(band(value, CONFIG_ENTRY_MASK)))
    return False


class FredState(NamedTuple):
    """What FRED adds to a CPU's dynamic state: CR4.FRED and the current stack level."""

    enabled: bool = False  # CR4.FRED
    csl: int = 0  # the current stack level, 0-3 (meaningful in ring 0)


# --- §5.1: the stack level, the new RSP and the entry point ------------------------------


def event_stack_level(config: FredConfig, fev: FredEvent, cpl: int) -> int:
    """§5.1.1: the event's own stack level. Ring 3: 0, unless the event is an exception
    nested on another's delivery or #DF (those follow the ring-0 rules: Appendix B of
    revision 5.0, as quoted in Intel's KVM FRED patches; Xen fred.rst, Bochs). Ring 0:
    maskable interrupts use IA32_FRED_CONFIG[10:9]; NMIs and exceptions
    (hardware, software, privileged software) use IA32_FRED_STKLVLS by vector; INT n,
    SYSCALL and SYSENTER use 0."""
    ring0_rules = cpl == 0 or fev.nested or (
        fev.type is EventType.HARDWARE_EXCEPTION and fev.vector == DF
    )
    if not ring0_rules:
        return 0
    if fev.type is EventType.EXTERNAL_INTERRUPT:
        return config.int_stack_level
    if fev.type in STKLVLS_TYPES:
        assert isinstance(fev.vector, int) and fev.vector < 32
        return config.vector_level(fev.vector)
    return 0


class StackChoice(NamedTuple):
    """Where FRED delivery pushes its frame: the new stack level and the RSP the first
    push starts from (already 64-byte aligned); `loaded` when it came from an MSR."""

    level: int
    rsp: Value
    loaded: bool


def select_stack(
    config: FredConfig, state: FredState, cpl: int, rsp: Value, fev: FredEvent
) -> StackChoice:
    """§5.1.1: new level = max(CSL, the event's level), with CSL taken as 0 in ring 3.
    From ring 3, or to a higher level, RSP is loaded from IA32_FRED_RSP<level> (WRMSR
    keeps those 64-byte aligned); otherwise the current stack is kept, below the red zone
    and aligned down to 64 bytes."""
    old = 0 if cpl == 3 else state.csl
    level = max(old, event_stack_level(config, fev, cpl))
    if cpl == 3 or level > old:
        return StackChoice(level, config.rsp[level], True)
    if isinstance(rsp, CodeAddr):
        return StackChoice(level, rsp, False)  # pushing there faults (the caller checks)
    below = band(add(rsp, -config.redzone), ~(FRAME_ALIGN - 1) & MASK)
    return StackChoice(level, below, False)


class EntryPoint(NamedTuple):
    """The new RIP: `base` is IA32_FRED_CONFIG's entry (an address or a label's code
    address) and `offset` 0 or 256 bytes past it (the design layer maps base + offset to
    its code)."""

    base: Value
    offset: int


def entry_point(config: FredConfig, cpl: int) -> EntryPoint:
    """§5.1: events in ring 3 enter at IA32_FRED_CONFIG & ~0xFFF, events in ring 0 at
    that + 256 (Linux entry_64_fred.S; the issue)."""
    return EntryPoint(config.entry, 0 if cpl == 3 else RING0_ENTRY_OFFSET)


# --- §5.2: the frame -----------------------------------------------------------------------


def cs_word(cs: int, cpl: int, csl: int) -> int:
    """§5.2 the saved CS: the selector, and in bits 17:16 the stack level the event
    interrupted (0 for an event in ring 3); WFE (bit 18) is 0, CET being out of scope."""
    return (cs & 0xFFFF) | ((0 if cpl == 3 else csl) << CS_SL_SHIFT)


def ss_word(ss: int, fev: FredEvent, *, sti_blocking: bool, mode64: bool = True) -> Value:
    """§5.2 the saved SS word: selector, STI blocking (16), software event (17: SYSCALL,
    SYSENTER, INT n), NMI (18), vector (39:32), type (51:48), 64-bit mode (57), nested
    (58, never for #DF), instruction length (63:60). Symbolic when the vector is."""
    low = ss & 0xFFFF
    if sti_blocking:
        low |= SS_STI
    if fev.type in (EventType.OTHER, EventType.SOFTWARE_INTERRUPT):
        low |= SS_SWEVENT
    if fev.type is EventType.NMI:
        low |= SS_NMI
    high = int(fev.type) << SS_TYPE_SHIFT
    if mode64:
        high |= SS_64BIT
    if fev.nested and not (fev.type is EventType.HARDWARE_EXCEPTION and fev.vector == DF):
        high |= SS_NESTED
    high |= (fev.instruction_length & 0xF) << SS_LENGTH_SHIFT
    if isinstance(fev.vector, int):
        return low | high | ((fev.vector & 0xFF) << SS_VECTOR_SHIFT)
    return bor(low | high, shl(band(fev.vector, 0xFF), SS_VECTOR_SHIFT))


def sti_blocking_outcomes(shadow: Shadow) -> tuple[bool, ...]:
    """Bit 16 of the SS word. STI blocking sets it (§5.2; Bochs). Whether blocking by
    MOV SS does is not stated in the sources available here: both are returned."""
    if shadow is Shadow.STI:
        return (True,)
    if shadow is Shadow.MOV_SS:
        return (False, True)
    return (False,)


def event_data_for(fev_type: EventType, vector: int, *, cr2: Value = 0,
                   debug: Value = 0, xfd_err: Value = 0) -> Value:
    """§5.2 event data: CR2 for #PF, the #DB cause bits (DR6-like, bits 3:0 and 14 as
    Bochs keeps them) for #DB, IA32_XFD_ERR for #NM, 0 for everything else (NMI without
    NMI-source reporting included).

    #DB's encoding: DR6 with its polarity made positive (Linux traps.c: FRED stores DR6
    "in the format which debug_read_clear_dr6() returns", DR6 XOR 0xFFFF0FF0). For the
    bits the model produces, B0-B3 and BS (model.x86.debug), that is DR6's own value; the
    spec text for the inverted bits (BLD 11, RTM 16) was not available here, and the
    model never sets them."""
    if fev_type is EventType.HARDWARE_EXCEPTION and vector == PF:
        return cr2
    if fev_type is EventType.HARDWARE_EXCEPTION and vector == NM:
        return xfd_err
    if fev_type in (
        EventType.HARDWARE_EXCEPTION, EventType.PRIVILEGED_SOFTWARE_EXCEPTION
    ) and vector == DB:
        return debug
    return 0


def frame_words(
    rsp: Value,
    fev: FredEvent,
    *,
    cpl: int,
    csl: int,
    cs: int,
    ss: int,
    old_rsp: Value,
    rflags: Value,
    rip: Value,
    sti_blocking: bool,
    mode64: bool = True,
) -> tuple[tuple[Value, Value], ...]:
    """§5.2: the eight words FRED delivery pushes below `rsp` (StackChoice.rsp), in push
    order, as (address, value): 0, event data, SS word, RSP, RFLAGS, CS word, RIP, error
    code (0 when the event has none). The new RSP is `rsp - 64`, pointing at the error
    code, and the frame is the 64 bytes [rsp - 64, rsp)."""
    words: tuple[Value, ...] = (
        0,
        fev.event_data,
        ss_word(ss, fev, sti_blocking=sti_blocking, mode64=mode64),
        old_rsp,
        rflags,
        cs_word(cs, cpl, csl),
        rip,
        fev.error_code if fev.pushes_error_code else 0,
    )
    out: list[tuple[Value, Value]] = []
    at = rsp
    if isinstance(at, CodeAddr):
        raise ArchFault(GP, 0, "FRED delivery with RSP holding a code address")
    for w in words:
        at = add(at, -WORD)
        out.append((at, w))
    return tuple(out)


# --- §5.3: the new context and the event-related state ------------------------------------


def delivered_rflags(old: Value, fmask: int) -> tuple[Value, ...]:
    """RFLAGS after FRED delivery. Bochs loads 2 (every flag clear); Xen's fred.rst says
    IA32_FMASK's behaviour is "extended to all event deliveries". Not settled by the
    sources available here, so both when they differ: 2, and the old value less the
    FMASK bits, RF and TF."""
    if isinstance(old, CodeAddr):
        return (RFLAGS_FIXED,)
    masked = bor(band(old, ~(fmask | RF | TF) & MASK), RFLAGS_FIXED)
    if isinstance(masked, int) and masked == RFLAGS_FIXED:
        return (RFLAGS_FIXED,)
    return (RFLAGS_FIXED, masked)


def accept(cpu: Cpu, fev: FredEvent) -> Cpu | None:
    """§5.3 and as under IDT: accepting an NMI blocks NMIs; a #MC with MCIP already set,
    or with CR4.MCE clear, shuts down (None); otherwise a #MC sets MCIP (SDM Vol. 3B
    §15.3.1.2, unchanged by FRED). A PIC's vector 2 is an external interrupt: no effect."""
    if fev.type is EventType.NMI:
        return cpu._replace(nmi_blocked=True)
    if fev.type is EventType.HARDWARE_EXCEPTION and fev.vector == MC:
        if cpu.mcip or not cpu.cr4_mce:
            return None
        return cpu._replace(mcip=True)
    return cpu


def nested_outcome(first: FredEvent, second_vector: int, df_rule: str = "sdm") -> Escalation:
    """A fault raised while FRED delivers `first`. The sources available here keep the
    IDT's Table 6-5 classes (the frame's nested bit exists for non-#DF nested exceptions:
    Linux ptrace.h; KVM's FRED nested-exception patches): SERIAL delivers the fault as a
    nested exception, DOUBLE_FAULT delivers #DF, and a fault while delivering #DF shuts
    down. Not the issue's simplification "any fault during delivery becomes #DF"."""
    second = Event(Source.EXCEPTION, second_vector, 0)
    return double_fault_outcome(as_idt_event(first), second, df_rule)


def nested_event(first: FredEvent, fault: ArchFault, df_rule: str = "sdm") -> FredEvent | None:
    """The event delivered after `fault` during `first`'s delivery, or None for shutdown."""
    outcome = nested_outcome(first, fault.vector, df_rule)
    if outcome is Escalation.SHUTDOWN:
        return None
    if outcome is Escalation.DOUBLE_FAULT:
        return double_fault_event()
    code = fault.error_code if fault.vector in ERROR_CODE_VECTORS else 0
    data = event_data_for(EventType.HARDWARE_EXCEPTION, fault.vector, cr2=fault_address(fault))
    return FredEvent(
        EventType.HARDWARE_EXCEPTION, fault.vector, code or 0, event_data=data, nested=True
    )


def fault_address(fault: ArchFault) -> Value:
    """The linear address a #PF reports (CR2, and FRED's event data, §5.2), 0 when the
    fault does not carry one (an environment's `@fault(#PF)` names no address)."""
    return fault.address if fault.vector == PF and fault.address is not None else 0


def enter(
    cpu: Cpu, state: FredState, choice: StackChoice, pc: CodeAddr, rflags: Value
) -> tuple[Cpu, FredState]:
    """§5.3: the CPU after a delivery whose pushes succeeded: ring 0 at the entry point,
    RSP below the frame, the new stack level, no shadow; an event from ring 3 swaps the GS
    bases as SWAPGS would (§5.3; Bochs). Apply `accept` first for NMI/#MC."""
    assert not isinstance(choice.rsp, CodeAddr)
    new_rsp = add(choice.rsp, -FRAME_BYTES)
    changes: dict[str, Any] = dict(
        cpl=0, pc=pc, rsp=new_rsp, rflags=rflags, shadow=Shadow.NONE, run=Run.RUNNING,
        delivering=None,
    )
    if cpu.cpl == 3:
        # §5.3: CS and SS from IA32_STAR (the design's ring-0 selectors: `Cpu.cs` None).
        changes.update(gs_base=cpu.kernel_gs_base, kernel_gs_base=cpu.gs_base,
                       gs_swapped=not cpu.gs_swapped, cs=None, ss=None)
    return cpu._replace(**changes), state._replace(csl=choice.level)


# --- §6: ERETS and ERETU -------------------------------------------------------------------


def eret_precondition_faults(cpu: Cpu, state: FredState) -> tuple[int, ...]:
    """§6: ERETS/ERETU are #UD with CR4.FRED clear (Bochs). At CPL > 0 Bochs raises #UD;
    the issue says "requires CPL 0" without the vector: both #UD and #GP(0) are returned.
    Empty when the instruction may proceed."""
    if not state.enabled:
        return (UD,)
    if cpu.cpl != 0:
        return (UD, GP)
    return ()


class EretResult(NamedTuple):
    cpu: Cpu
    state: FredState
    pending_db: bool  # a single-step #DB is due after the return (SS bit 17 with TF)


def _check(cond_ok: Any, what: str) -> None:
    if not (cond_ok if isinstance(cond_ok, bool) else decide(cond_ok)):
        raise ArchFault(GP, 0, what)


def _masked_equals(value: Value, mask: int, want: int) -> Any:
    if isinstance(value, CodeAddr):
        return False
    if isinstance(value, int):
        return (value & mask) == want
    return eq(band(value, mask), want)


def _bit(value: Value, bit: int) -> bool:
    if isinstance(value, CodeAddr):
        return False
    if isinstance(value, int):
        return bool(value & bit)
    return decide(ne(band(value, bit), 0))


def _target(rip: Value, code_at: CodeAt | None) -> CodeAddr:
    """The code at a popped RIP, as IRET finds it (a guest address names no routine)."""
    if isinstance(rip, CodeAddr):
        return rip
    if code_at is not None and isinstance(rip, int):
        found = code_at(rip)
        if found is not None:
            return found
    return CodeAddr(GUEST_CODE, 0)


def _saved_level(cs_w: Value) -> int:
    """The stack level in a CS word's bits 17:16 (split over its values when symbolic)."""
    if isinstance(cs_w, int):
        return (cs_w >> CS_SL_SHIFT) & 3
    assert not isinstance(cs_w, CodeAddr)
    field = band(lshr(cs_w, CS_SL_SHIFT), 3)
    for k in range(STACK_LEVELS - 1):
        if decide(eq(field, k)):
            return k
    return STACK_LEVELS - 1


def _frame(words: Sequence[Value]) -> tuple[Value, Value, Value, Value, Value]:
    """The return state above the error code: RIP, CS, RFLAGS, RSP, SS (§6: ERET* skip
    the error code at RSP and read the five words above it)."""
    if len(words) < 6:
        raise ValueError("ERET* needs the six words from RSP: error code, RIP, CS, "
                         "RFLAGS, RSP, SS")
    return words[1], words[2], words[3], words[4], words[5]


def erets(
    cpu: Cpu, state: FredState, words: Sequence[Value], *, cs: int, ss: int,
    code_at: CodeAt | None = None,
) -> EretResult:
    """§6 ERETS: return within ring 0 through the frame at RSP (`words` = the six words
    from RSP). #GP(0) unless RIP is canonical, the CS word equals the current CS outside
    bits 18:16, RFLAGS has bit 1 set and no reserved/VM bit, and the SS word's bits 31:0
    equal the current SS outside bits 18:16. The stack level only goes down (min of CSL
    and the frame's). STI blocking (bit 16) comes back when the restored IF is set; NMIs
    unblock only when bit 18 says so (Bochs)."""
    assert not eret_precondition_faults(cpu, state)
    rip, cs_w, rflags, rsp, ss_w = _frame(words)
    if not isinstance(rip, CodeAddr):
        _check(canonical_cond(rip), "ERETS to a non-canonical RIP")
    _check(_masked_equals(cs_w, ~ERETS_CS_IGNORED & MASK, cs), "ERETS with a bad CS word")
    _check(_masked_equals(rflags, ERETS_RFLAGS_MUST_BE_ZERO | RFLAGS_FIXED, RFLAGS_FIXED),
           "ERETS with bad RFLAGS")
    _check(_masked_equals(ss_w, ERETS_SS_CHECKED, ss), "ERETS with a bad SS word")
    level = min(state.csl, _saved_level(cs_w))
    shadow = Shadow.STI if _bit(ss_w, SS_STI) and _bit(rflags, IF) else Shadow.NONE
    changes: dict[str, Any] = dict(pc=_target(rip, code_at), rflags=rflags, rsp=rsp, shadow=shadow)
    if _bit(ss_w, SS_NMI):
        changes["nmi_blocked"] = False
    pending = _bit(ss_w, SS_SWEVENT) and _bit(rflags, TF)
    return EretResult(cpu._replace(**changes), state._replace(csl=level), pending)


def eretu(
    cpu: Cpu, state: FredState, words: Sequence[Value], code_at: CodeAt | None = None
) -> EretResult:
    """§6 ERETU: return to ring 3. #GP(0) with CSL > 0 (Bochs), or unless the CS word is
    a bare RPL-3 selector (bits 63:16 zero), RFLAGS has bit 1 set and no reserved, VM or
    IOPL bit (Bochs' mask), the SS word's bits 31:19 are zero with RPL 3, and RIP is
    canonical. Swaps the GS bases back; NMIs unblock only when bit 18 says so; STI
    blocking is not restored. Descriptor loads for non-flat selectors are not modelled."""
    assert not eret_precondition_faults(cpu, state)
    if state.csl != 0:
        raise ArchFault(GP, 0, f"ERETU at stack level {state.csl}")
    rip, cs_w, rflags, rsp, ss_w = _frame(words)
    _check(_masked_equals(cs_w, ERETU_CS_CHECKED, 3), "ERETU with a bad CS word")
    _check(_masked_equals(rflags, ERETU_RFLAGS_MUST_BE_ZERO | RFLAGS_FIXED, RFLAGS_FIXED),
           "ERETU with bad RFLAGS")
    _check(_masked_equals(ss_w, ERETU_SS_CHECKED, 3), "ERETU with a bad SS word")
    if not isinstance(rip, CodeAddr):
        _check(canonical_cond(rip), "ERETU to a non-canonical RIP")
    changes: dict[str, Any] = dict(
        cpl=3, pc=_target(rip, code_at), rflags=rflags, rsp=rsp, shadow=Shadow.NONE,
        gs_base=cpu.kernel_gs_base, kernel_gs_base=cpu.gs_base, gs_swapped=not cpu.gs_swapped,
    )
    if _bit(ss_w, SS_NMI):
        changes["nmi_blocked"] = False
    pending = _bit(ss_w, SS_SWEVENT) and _bit(rflags, TF)
    return EretResult(cpu._replace(**changes), state, pending)


# --- §7 LKGS and SWAPGS under FRED ---------------------------------------------------------


def lkgs(cpu: Cpu, descriptor_base: Value) -> Cpu:
    """§7 LKGS: load the GS selector's descriptor base into IA32_KERNEL_GS_BASE (the GS
    base the kernel is not using), leaving the live GS base alone. `descriptor_base` is
    the base the caller read from the selector's GDT/LDT descriptor (zero-extended, a
    null selector giving 0). Privileged: #GP(0) at CPL > 0 (as WRMSR; not confirmed
    against the specification's text)."""
    if cpu.cpl != 0:
        raise ArchFault(GP, 0, f"LKGS at CPL {cpu.cpl}")
    return cpu._replace(kernel_gs_base=descriptor_base)


def swapgs_faults(state: FredState) -> int | None:
    """SWAPGS is #UD while CR4.FRED is set (Xen fred.rst: SWAPGS, SYSRET, SYSEXIT,
    CLRSSBSY, SETSSBSY "unconditionally #UD"); None when it runs as before."""
    return UD if state.enabled else None


FRED_UD_INSTRUCTIONS = frozenset({"swapgs", "sysret", "sysexit", "clrssbsy", "setssbsy"})


# --- one whole delivery, for the integration -----------------------------------------------


EntryResolver = Callable[[EntryPoint], CodeAddr]


class Delivered(NamedTuple):
    """One permitted outcome of a FRED delivery: the machine and the CPU's FRED state."""

    machine: Machine
    state: FredState


def fred_deliver(
    platform: Platform,
    m: Machine,
    cpu_i: int,
    fev: FredEvent,
    return_pc: Value,
    config: FredConfig,
    state: FredState,
    entry_code: EntryResolver,
    *,
    fault_pc: Value | None = None,
) -> tuple[Delivered, ...]:
    """Deliver `fev` on CPU `cpu_i` by FRED (§5), returning every permitted outcome (the
    RFLAGS and MOV SS questions above may give two). `return_pc` is the RIP the frame
    saves; `fault_pc` (the instruction's own address, for INT n/INT3/INT1/SYSCALL...)
    is saved instead when a fault of the delivery is delivered. `entry_code` maps the
    entry point (base, 0 or 256) to the code there.

    A fault while pushing the frame is combined with the event by `nested_event` (Table
    6-5 classes): delivered as a nested exception (from the same interrupted context, so
    by the ring-0 stack rules), as #DF, or shutdown. The frame is tracked like an IDT
    frame: `Frame.lo` is its RIP slot, the five words RIP, CS, RFLAGS, RSP, SS above it.
    """
    cpu = m.cpus[cpu_i]
    accepted = accept(cpu, fev)
    if accepted is None:
        return (Delivered(shutdown(m, cpu_i), state),)
    cpu = accepted
    m = m.with_cpu(cpu_i, cpu)
    current = fev
    saved_pc = return_pc
    while True:
        choice = select_stack(config, state, cpu.cpl, cpu.rsp, current)
        rsp = choice.rsp
        fault: ArchFault | None = None
        if isinstance(rsp, CodeAddr) or not decide(canonical_cond(rsp)):
            fault = ArchFault(SS, 0, "non-canonical stack pointer for FRED delivery")
            outcomes: list[Delivered] = []
        else:
            outcomes = []
            where = (classify_range(platform, add(rsp, -FRAME_BYTES), FRAME_BYTES)
                     if isinstance(rsp, Term) else None)
            for sti in sti_blocking_outcomes(cpu.shadow):
                words = frame_words(
                    rsp, current, cpl=cpu.cpl, csl=state.csl, cs=cs_of(platform, cpu),
                    ss=ss_of(platform, cpu), old_rsp=cpu.rsp, rflags=cpu.rflags,
                    rip=saved_pc, sti_blocking=sti, mode64=platform.mode64,
                )
                m2, fault = write_words(platform, m, list(words), 0, where)
                if fault is not None:
                    m = m2  # the stores before the fault stay written, as under IDT
                    break
                rip_slot = add(rsp, OFF_RIP - FRAME_BYTES)
                kind, region = where if where is not None else classify(platform, rip_slot)
                frame = Frame(
                    cpu=cpu_i, vector=current.vector, source=_source_name(current),
                    lo=rip_slot, stack=location_name(kind, region), from_cpl=cpu.cpl,
                    on_guest_stack=kind == "guest"
                    or (region is not None and region.owner == "guest"),
                )
                pc = entry_code(entry_point(config, cpu.cpl))
                # The frame's pushes on a watched address: maybe a #DB trap, as under IDT
                # (model.x86.debug.delivery_pushes_hit), reporting the DRn they match.
                watched = bool(platform.breakpoints) and debug.delivery_pushes_hit(
                    platform.breakpoints, words
                )
                for flags in delivered_rflags(cpu.rflags, platform.fmask):
                    new_cpu, new_state = enter(cpu, state, choice, pc, flags)
                    if watched:
                        new_cpu = debug.delivery_trap(new_cpu, debug.data_breakpoint_bits(
                            platform.breakpoints,
                            [(a, 8, True) for a, _ in words if isinstance(a, (int, Term))],
                        ))
                    done = m2.with_frame(frame).with_cpu(cpu_i, new_cpu)
                    outcomes.append(Delivered(done, new_state))
            if fault is None:
                return tuple(dict.fromkeys(outcomes))
        assert fault is not None
        nxt = nested_event(current, fault, platform.df_rule)
        if nxt is None:
            return (Delivered(shutdown(m, cpu_i), state),)
        current = nxt
        if fault_pc is not None:
            saved_pc = fault_pc


def _source_name(fev: FredEvent) -> str:
    """The `Frame.source` text: the IDT model's source names, "syscall"/"sysenter" for
    type OTHER."""
    if fev.type is EventType.OTHER:
        return "syscall" if fev.vector == OTHER_SYSCALL else "sysenter"
    return as_idt_event(fev).source.value


# --- the integration: FRED delivery of the model's events ----------------------------------


def config_of(platform: Platform, cpu_i: int, cpu: Cpu) -> FredConfig:
    """CPU `cpu_i`'s FRED MSRs: what WRMSR wrote (`Cpu.msrs`) over the design's `fred`
    block (`Platform.fred_msrs`)."""
    msrs: dict[int, Value] = (
        dict(platform.fred_msrs[cpu_i]) if cpu_i < len(platform.fred_msrs) else {}
    )
    msrs.update(cpu.msrs)
    return config_from_msrs(msrs)


def entry_code(platform: Platform) -> EntryResolver:
    """§5.1: the code at IA32_FRED_CONFIG's entry point (offset 0) or 256 bytes past it:
    the routine the design's `fred` block pairs with the ring-3 entry. Anything else (an
    entry point that is a number, or no ring-0 routine declared) is an address with no
    code of the design's: the CPU goes wild there (Run.WILD)."""
    ring0 = dict(platform.fred_ring0)

    def resolve(ep: EntryPoint) -> CodeAddr:
        base = ep.base
        if isinstance(base, CodeAddr):
            if ep.offset == 0:
                return base
            r0 = ring0.get(base.routine)
            if r0 is not None and base.index == 0:
                return CodeAddr(r0, 0)
            return CodeAddr(f"{base}+{ep.offset}", 0)
        return CodeAddr(f"FRED entry {base!r}+{ep.offset}", 0)

    return resolve


def pick(outcomes: Sequence[Delivered]) -> Delivered:
    """One of several permitted outcomes, each explored (checker.symbolic.oracle)."""
    for k, outcome in enumerate(outcomes[:-1]):
        if oracle(f"fred-outcome-{k}"):
            return outcome
    return outcomes[-1]


def deliver_event(
    platform: Platform,
    m: Machine,
    cpu_i: int,
    event: Event | FredEvent,
    return_pc: Value,
    instruction_pc: Value | None = None,
    instruction_length: int = 0,
    *,
    cr2: Value = 0,
    debug: Value = 0,
) -> Machine:
    """Deliver an event on a CPU with CR4.FRED set (§5), one permitted outcome per
    explored branch. An IDT-model `Event` is converted (`fred_event`); SYSCALL and SYSENTER
    come as `FredEvent`s. INTO in 64-bit mode is #UD first, as under IDT (SDM Vol. 2
    INTO). For software events, `instruction_pc` is saved instead of `return_pc` when the
    delivery faults. The frame's event data (§5.2, `event_data_for`) is `cr2`, the
    faulting linear address, for a #PF; `debug`, the #DB cause bits, for a #DB; 0 for
    #NM (the model has no IA32_XFD_ERR), for NMI (NMI-source reporting is not modelled)
    and for every other event."""
    cpu = m.cpus[cpu_i]
    fault_pc: Value | None = None
    if isinstance(event, Event):
        if event.source is Source.INTO and platform.mode64:
            event = Event(Source.EXCEPTION, UD)
            if instruction_pc is not None:
                return_pc = instruction_pc
        elif instruction_pc is not None and event.source in (
            Source.INT_N, Source.INT3, Source.INTO, Source.INT1
        ):
            fault_pc = instruction_pc
        etype = _TYPE_OF_SOURCE[event.source]
        data = event_data_for(etype, event.vector, cr2=cr2, debug=debug)
        fev = fred_event(event, instruction_length=instruction_length, event_data=data)
    else:
        fev = event
        fault_pc = instruction_pc
    state = FredState(cpu.fred, cpu.csl)
    outcomes = fred_deliver(
        platform, m, cpu_i, fev, return_pc, config_of(platform, cpu_i, cpu), state,
        entry_code(platform), fault_pc=fault_pc,
    )
    chosen = outcomes[0] if len(outcomes) == 1 else pick(outcomes)
    done = chosen.machine
    after = done.cpus[cpu_i]
    if after.csl != chosen.state.csl:
        done = done.with_cpu(cpu_i, after._replace(csl=chosen.state.csl))
    return done


# --- CR4 (§4.2: CR4.FRED) --------------------------------------------------------------------

CR4_MCE = 1 << 6
CR4_PAE = 1 << 5  # always set in IA-32e mode (SDM Vol. 3A §9.8.5)
CR4_SMAP = 1 << 21


def cr4_value(cpu: Cpu, smap: bool) -> int:
    """MOV from CR4: the bits the model keeps (PAE, MCE, SMAP, FRED); #GP(0) at CPL > 0
    (SDM Vol. 2 MOV to/from control registers). Every other bit reads 0."""
    if cpu.cpl != 0:
        raise ArchFault(GP, 0, f"MOV from CR4 at CPL {cpu.cpl}")
    return (CR4_PAE | (CR4_MCE if cpu.cr4_mce else 0) | (CR4_SMAP if smap else 0)
            | (CR4_FRED if cpu.fred else 0))


def write_cr4(cpu: Cpu, value: Value, smap: bool) -> Cpu:
    """MOV to CR4: #GP(0) at CPL > 0; sets CR4.MCE (bit 6) and CR4.FRED (bit 32, §4.2: FRED
    event delivery and ERET* from the next event on). Clearing PAE in IA-32e mode is #GP(0)
    (SDM Vol. 3A §9.8.5.4); CR4.SMAP is the design's `smap` and a write that changes it is
    refused here (#GP(0) would be wrong: the model simply cannot follow it), as is a
    symbolic value."""
    if cpu.cpl != 0:
        raise ArchFault(GP, 0, f"MOV to CR4 at CPL {cpu.cpl}")
    if not isinstance(value, int):
        raise ValueError("MOV to CR4 of a value that is not a number")
    if not value & CR4_PAE:
        raise ArchFault(GP, 0, "MOV to CR4 clearing PAE in IA-32e mode")
    if bool(value & CR4_SMAP) != smap:
        raise ValueError("MOV to CR4 changing SMAP, which the model keeps fixed (`smap`)")
    fred_on = bool(value & CR4_FRED)
    changes: dict[str, Any] = dict(cr4_mce=bool(value & CR4_MCE), fred=fred_on)
    if not fred_on:
        changes["csl"] = 0
    return cpu._replace(**changes)
