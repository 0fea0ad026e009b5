"""FRED (model/x86/fred.py): one test per rule, each naming the FRED specification
section (Intel document 346446) it follows. The specification's own text was not
available when these were written; where a rule rests on a secondary source (Bochs
bochs/cpu/fred.cc, Linux asm/fred.h and ptrace.h, Xen docs/hypervisor-guide/x86/fred.rst)
the docstring says which, and where those are silent the model returns every outcome."""

from __future__ import annotations

import pytest

from checker.symbolic import MASK, band, run_with, var
from model.x86.arch import BP, DB, DF, GP, IF, MC, NMI, OF, PF, RFLAGS_FIXED, TF, UD
from model.x86.delivery import Escalation, Event, Source
from model.x86.fred import (
    CR4_FRED,
    FRAME_BYTES,
    IA32_FRED_CONFIG,
    IA32_FRED_RSP0,
    IA32_FRED_RSP1,
    IA32_FRED_RSP3,
    IA32_FRED_STKLVLS,
    OFF_CS,
    OFF_ERROR_CODE,
    OFF_EVENT_DATA,
    OFF_RESERVED,
    OFF_RFLAGS,
    OFF_RIP,
    OFF_RSP,
    OFF_SS,
    RING0_ENTRY_OFFSET,
    SS_NESTED,
    SS_NMI,
    SS_STI,
    SS_SWEVENT,
    EntryPoint,
    EventType,
    FredConfig,
    FredEvent,
    FredState,
    StackChoice,
    accept,
    config_from_msrs,
    cs_word,
    delivered_rflags,
    double_fault_event,
    enter,
    entry_point,
    eret_precondition_faults,
    erets,
    eretu,
    event_data_for,
    event_stack_level,
    frame_words,
    fred_deliver,
    fred_event,
    lkgs,
    nested_event,
    nested_outcome,
    select_stack,
    ss_word,
    sti_blocking_outcomes,
    swapgs_faults,
    syscall_event,
    sysenter_event,
    wrmsr_faults,
)
from model.x86.memory import ArchFault, read
from model.x86.state import CodeAddr, Run, Shadow
from tests.x86_helpers import (
    GUEST_CS64,
    GUEST_SS,
    HYPERVISOR_CS,
    HYPERVISOR_SS,
    make_cpu,
    make_machine,
    platform,
)

# Xen-like FRED configuration (the issue: SL0 primary, SL1 poisoned, SL2 #MC, SL3 #DF).
SL0 = 0xFFFF_8300_0001_8000
SL1 = 0xFFFF_8300_0000_1000
SL2 = 0xFFFF_8300_0000_3000
SL3 = 0xFFFF_8300_0000_9000
ENTRY = 0xFFFF_82D0_4020_0000
STKLVLS = (2 << (2 * MC)) | (3 << (2 * DF))
XEN = FredConfig(entry=ENTRY, int_stack_level=0, redzone=0, stklvls=STKLVLS,
                 rsp=(SL0, SL1, SL2, SL3))
ON = FredState(enabled=True, csl=0)


def hw(vector: int, code: int = 0) -> FredEvent:
    return fred_event(Event(Source.EXCEPTION, vector, code))


# --- event types --------------------------------------------------------------------------


@pytest.mark.parametrize(("source", "vector", "etype"), [
    (Source.EXTERNAL, 0x30, EventType.EXTERNAL_INTERRUPT),
    (Source.NMI, NMI, EventType.NMI),
    (Source.EXCEPTION, GP, EventType.HARDWARE_EXCEPTION),
    (Source.MACHINE_CHECK, MC, EventType.HARDWARE_EXCEPTION),
    (Source.INT_N, 0x80, EventType.SOFTWARE_INTERRUPT),
    (Source.INT1, DB, EventType.PRIVILEGED_SOFTWARE_EXCEPTION),
    (Source.INT3, BP, EventType.SOFTWARE_EXCEPTION),
    (Source.INTO, OF, EventType.SOFTWARE_EXCEPTION),
])
def test_event_types_of_the_idt_sources(source, vector, etype):
    """§5.2 (event type, SS word bits 51:48): 0 external interrupt, 2 NMI, 3 hardware
    exception, 4 software interrupt (INT n), 5 privileged software exception (INT1), 6
    software exception (INT3, INTO), 7 other (SYSCALL, SYSENTER)."""
    fev = fred_event(Event(source, vector))
    assert (fev.type, fev.vector) == (etype, vector)
    assert int(EventType.OTHER) == 7 and int(EventType.SOFTWARE_INTERRUPT) == 4


def test_syscall_and_sysenter_are_events_of_type_other():
    """§5.2: SYSCALL and SYSENTER are delivered as type 7 events, vectors 1 and 2, with
    their instruction length (Linux entry_fred.c FRED_SYSCALL/FRED_SYSENTER)."""
    assert syscall_event() == FredEvent(EventType.OTHER, 1, 0, 2)
    assert sysenter_event() == FredEvent(EventType.OTHER, 2, 0, 2)


def test_pic_vector_2_is_an_external_interrupt_not_an_nmi():
    """§5.2: the type comes from how the event arrived, not its vector: a PIC's vector 2
    is an external interrupt, and accepting it does not block NMIs (cf. seed 001)."""
    p = platform()
    fev = fred_event(Event(Source.EXTERNAL, NMI))
    assert fev.type is EventType.EXTERNAL_INTERRUPT
    cpu = make_cpu(p)
    assert accept(cpu, fev) == cpu
    assert not ss_word(0, fev, sti_blocking=False) & SS_NMI


def test_instruction_length_kept_only_for_software_events():
    """§5.2 (SS word bits 63:60; Linux ptrace.h): the length is recorded for INT n, INT1,
    INT3, INTO, SYSCALL and SYSENTER, and is 0 for every other event."""
    assert fred_event(Event(Source.INT_N, 0x82), instruction_length=3).instruction_length == 3
    assert fred_event(Event(Source.EXCEPTION, GP, 0), instruction_length=3).instruction_length == 0
    assert fred_event(Event(Source.EXTERNAL, 0x30), instruction_length=2).instruction_length == 0


def test_error_code_only_for_exceptions_that_push_one():
    """§5.2: the frame's error-code word holds the exception's error code, 0 otherwise
    (INT $13 pushes none though vector 13 has one, SDM §6.13)."""
    assert hw(GP, 0x18).error_code == 0x18
    assert fred_event(Event(Source.INT_N, GP)).error_code == 0
    assert hw(DB).error_code == 0


# --- stack levels ---------------------------------------------------------------------------


def test_ring3_events_use_level_0_and_rsp0():
    """§5.1.1: an event in ring 3 is delivered at stack level 0 with RSP from
    IA32_FRED_RSP0, whatever level the vector is configured with (Xen fred.rst: "even
    exceptions with a non-zero Stack Level configured")."""
    mc = fred_event(Event(Source.MACHINE_CHECK, MC))
    assert event_stack_level(XEN, mc, cpl=3) == 0
    assert select_stack(XEN, ON, 3, 0x7000_0000_0F80, mc) == StackChoice(0, SL0, True)


def test_ring0_uses_the_per_vector_level_from_stklvls():
    """§5.1.1: in ring 0 an exception's or NMI's level is IA32_FRED_STKLVLS[2v+1:2v]; a
    higher level than the CSL loads IA32_FRED_RSPn."""
    mc = fred_event(Event(Source.MACHINE_CHECK, MC))
    assert event_stack_level(XEN, mc, cpl=0) == 2
    assert select_stack(XEN, ON, 0, SL0 - 0x100, mc) == StackChoice(2, SL2, True)
    assert event_stack_level(XEN, hw(DF), cpl=0) == 3


def test_ring0_external_interrupts_use_the_config_level():
    """§5.1.1: a maskable interrupt's level is IA32_FRED_CONFIG[10:9]; INT n, SYSCALL and
    SYSENTER use level 0."""
    cfg = XEN._replace(int_stack_level=1)
    ext = fred_event(Event(Source.EXTERNAL, 0x30))
    assert event_stack_level(cfg, ext, cpl=0) == 1
    assert event_stack_level(cfg, fred_event(Event(Source.INT_N, 0x30)), cpl=0) == 0
    assert event_stack_level(cfg._replace(stklvls=MASK), syscall_event(), cpl=0) == 0


def test_level_is_max_of_current_and_event_level():
    """§5.1.1: new level = max(CSL, event level): an NMI (level 0) inside the #MC handler
    (CSL 2) stays on level 2, on the current stack."""
    nmi = fred_event(Event(Source.NMI, NMI))
    rsp = SL2 - 0x1C8
    choice = select_stack(XEN, FredState(True, 2), 0, rsp, nmi)
    assert choice == StackChoice(2, (rsp & ~63) & MASK, False)


def test_same_level_keeps_rsp_less_redzone_aligned_to_64():
    """§5.1.1: staying on the current level, RSP is decremented by the red zone
    (IA32_FRED_CONFIG[8:6] x 64) and aligned down to 64 bytes. Hand-computed:
    0x...7F38 - 64 = 0x...7EF8, aligned = 0x...7EC0."""
    cfg = XEN._replace(redzone=64)
    rsp = 0xFFFF_8300_0001_7F38
    choice = select_stack(cfg, ON, 0, rsp, fred_event(Event(Source.EXTERNAL, 0x30)))
    assert choice == StackChoice(0, 0xFFFF_8300_0001_7EC0, False)


def test_symbolic_rsp_same_level_is_aligned_symbolically():
    """§5.1.1 with a symbolic RSP: the new RSP is (RSP - redzone) & ~63, still symbolic."""
    r = var("r")
    choice = select_stack(XEN, ON, 0, r, hw(GP))
    assert choice.level == 0 and not choice.loaded
    assert choice.rsp == band(r, ~63 & MASK)


def test_nested_exception_from_ring3_follows_ring0_rules():
    """§5.1.1 and Appendix B of revision 5.0 ("delivery of a nested exception determines
    the new stack level as is done for events occurring when CPL = 0", as Intel's KVM
    FRED nested-exception patch quotes it; Xen fred.rst: "Nested exceptions originate
    from Ring0 even if they were trying to push a Ring3 event frame"): a nested #PF
    configured at level 1 goes to level 1 even from ring 3; a plain one to level 0."""
    cfg = XEN._replace(stklvls=1 << (2 * PF))
    plain = hw(PF)
    assert event_stack_level(cfg, plain, cpl=3) == 0
    assert event_stack_level(cfg, plain._replace(nested=True), cpl=3) == 1
    assert select_stack(cfg, ON, 3, 0, plain._replace(nested=True)) == StackChoice(1, SL1, True)


def test_double_fault_from_ring3_uses_its_configured_level():
    """§5.1.1 and Appendix B of revision 5.0 (#DF "is NOT a nested event ... however
    ... its delivery determines the new stack level as is done for events occurring when
    CPL = 0", Intel's KVM FRED patch; Bochs: "event is not #DF"): #DF follows the ring-0
    rules even from ring 3, so a bad RSP0 at ring 3 escalates to #DF on level 3 (the
    issue's #DF example)."""
    assert select_stack(XEN, ON, 3, 0, double_fault_event()) == StackChoice(3, SL3, True)


# --- the frame ------------------------------------------------------------------------------


def test_cs_word_holds_the_interrupted_stack_level():
    """§5.2 (Linux struct fred_cs): bits 15:0 the CS selector, bits 17:16 the stack level
    at the time of the event (0 for ring 3), bit 18 WFE (0: CET out of scope)."""
    assert cs_word(HYPERVISOR_CS, 0, 2) == 0x2_E008
    assert cs_word(GUEST_CS64, 3, 2) == 0xE033


def test_ss_word_bits():
    """§5.2 (Linux struct fred_ss; Bochs get_fred_event_info): bits 15:0 SS, 16 STI
    blocking, 17 software event (SYSCALL/SYSENTER/INT n), 18 NMI, 39:32 vector, 51:48
    type, 57 64-bit mode, 58 nested (not for #DF), 63:60 instruction length."""
    nmi = fred_event(Event(Source.NMI, NMI))
    assert ss_word(HYPERVISOR_SS, nmi, sti_blocking=False) == (
        0xE010 | SS_NMI | (2 << 32) | (2 << 48) | (1 << 57))
    intn = fred_event(Event(Source.INT_N, 0x80), instruction_length=2)
    assert ss_word(GUEST_SS, intn, sti_blocking=True) == (
        0xE02B | SS_STI | SS_SWEVENT | (0x80 << 32) | (4 << 48) | (1 << 57) | (2 << 60))
    assert ss_word(0, hw(PF)._replace(nested=True), sti_blocking=False) & SS_NESTED
    assert not ss_word(0, double_fault_event()._replace(nested=True), sti_blocking=False) \
        & SS_NESTED


def test_ss_word_with_a_symbolic_vector_is_symbolic():
    """§5.2: a guest's INT $N with N symbolic pushes the vector field symbolically."""
    n = var("n")
    word = ss_word(GUEST_SS, FredEvent(EventType.SOFTWARE_INTERRUPT, n), sti_blocking=False)
    assert not isinstance(word, int)


def test_sti_blocking_bit_outcomes():
    """§5.2 bit 16: set for blocking by STI. Blocking by MOV SS: not stated in the
    sources available, so both outcomes."""
    assert sti_blocking_outcomes(Shadow.STI) == (True,)
    assert sti_blocking_outcomes(Shadow.NONE) == (False,)
    assert sti_blocking_outcomes(Shadow.MOV_SS) == (False, True)


def test_event_data():
    """§5.2 event data: CR2 for #PF, the #DB bits for #DB, IA32_XFD_ERR for #NM, else 0
    (NMI without NMI-source reporting)."""
    assert event_data_for(EventType.HARDWARE_EXCEPTION, PF, cr2=0xDEAD000) == 0xDEAD000
    assert event_data_for(EventType.HARDWARE_EXCEPTION, DB, debug=0x4000) == 0x4000
    assert event_data_for(EventType.NMI, NMI, cr2=5) == 0
    assert event_data_for(EventType.HARDWARE_EXCEPTION, GP, cr2=5) == 0


def test_frame_from_ring3_page_fault_hand_computed():
    """§5.2 the 64-byte frame, hand-computed: a #PF (error code 6, CR2 0x1000) in ring 3
    at RIP 0x401000, RSP 0x7FF0, RFLAGS 0x202, delivered at RSP0 = SL0. Push order: 0,
    event data, SS word, RSP, RFLAGS, CS word, RIP, error code; new RSP = SL0 - 64."""
    fev = fred_event(Event(Source.EXCEPTION, PF, 6), event_data=0x1000)
    words = frame_words(SL0, fev, cpl=3, csl=0, cs=GUEST_CS64, ss=GUEST_SS,
                        old_rsp=0x7FF0, rflags=0x202, rip=0x401000, sti_blocking=False)
    ss = 0xE02B | (PF << 32) | (3 << 48) | (1 << 57)
    assert words == (
        (SL0 - 8, 0), (SL0 - 16, 0x1000), (SL0 - 24, ss), (SL0 - 32, 0x7FF0),
        (SL0 - 40, 0x202), (SL0 - 48, 0xE033), (SL0 - 56, 0x401000), (SL0 - 64, 6),
    )
    base = SL0 - FRAME_BYTES
    by_offset = {a - base: v for a, v in words}
    assert (by_offset[OFF_ERROR_CODE], by_offset[OFF_RIP], by_offset[OFF_CS]) == (6, 0x401000,
                                                                                  0xE033)
    assert (by_offset[OFF_RFLAGS], by_offset[OFF_RSP], by_offset[OFF_SS]) == (0x202, 0x7FF0, ss)
    assert (by_offset[OFF_EVENT_DATA], by_offset[OFF_RESERVED]) == (0x1000, 0)


def test_frame_for_nmi_in_ring0_hand_computed():
    """§5.2, hand-computed: an NMI in ring 0 at CSL 2 (inside the #MC handler) with no
    error code pushes CS word 0x2E008 and the SS word's NMI bit; error code word 0."""
    nmi = fred_event(Event(Source.NMI, NMI))
    rsp = 0xFFFF_8300_0000_2E40
    pc = CodeAddr("mce_handler", 4)
    words = frame_words(rsp, nmi, cpl=0, csl=2, cs=HYPERVISOR_CS, ss=HYPERVISOR_SS,
                        old_rsp=rsp + 0x48, rflags=0x2, rip=pc, sti_blocking=False)
    assert [v for _, v in words] == [
        0, 0, 0xE010 | SS_NMI | (2 << 32) | (2 << 48) | (1 << 57), rsp + 0x48, 0x2,
        0x2_E008, pc, 0,
    ]
    assert words[-1][0] == rsp - 64


# --- entry and the new context -------------------------------------------------------------


def test_entry_point_ring3_base_ring0_plus_256():
    """§5.1 (Linux entry_64_fred.S): the new RIP is IA32_FRED_CONFIG & ~0xFFF for events
    in ring 3 and that + 256 for events in ring 0."""
    assert entry_point(XEN, 3) == EntryPoint(ENTRY, 0)
    assert entry_point(XEN, 0) == EntryPoint(ENTRY, RING0_ENTRY_OFFSET)
    assert RING0_ENTRY_OFFSET == 256


def test_config_msr_fields():
    """§4 IA32_FRED_CONFIG (Linux FRED_CONFIG_*): bits 63:12 entry, 10:9 interrupt stack
    level, 8:6 red zone in 64-byte units; IA32_FRED_STKLVLS and RSP0-3 as written."""
    cfg = config_from_msrs({IA32_FRED_CONFIG: ENTRY | (1 << 9) | (1 << 6),
                            IA32_FRED_STKLVLS: STKLVLS, IA32_FRED_RSP0: SL0,
                            IA32_FRED_RSP3: SL3})
    assert cfg == FredConfig(ENTRY, 1, 64, STKLVLS, (SL0, 0, 0, SL3))
    assert cfg.vector_level(DF) == 3 and cfg.vector_level(MC) == 2 and cfg.vector_level(NMI) == 0
    label = CodeAddr("entry_FRED_R3", 0)
    assert config_from_msrs({IA32_FRED_CONFIG: label}).entry == label


def test_wrmsr_rsp_must_be_canonical_and_64_byte_aligned():
    """§4 (Bochs msr.cc): WRMSR to IA32_FRED_RSPn #GPs for a non-canonical or
    not-64-byte-aligned value (so unused levels cannot be poisoned: Xen fred.rst)."""
    assert not wrmsr_faults(IA32_FRED_RSP1, SL1)
    assert wrmsr_faults(IA32_FRED_RSP1, SL1 + 8)
    assert wrmsr_faults(IA32_FRED_RSP1, 0x8000_0000_0000_0000)
    assert wrmsr_faults(IA32_FRED_CONFIG, 0x8000_0000_0000_0000)
    assert CR4_FRED == 1 << 32


def test_enter_from_ring3_swaps_gs_and_sets_the_level():
    """§5.3: delivery enters ring 0 at the entry point with RSP at the frame, the new
    stack level, no shadow, and from ring 3 swaps GS base with IA32_KERNEL_GS_BASE."""
    p = platform()
    cpu = make_cpu(p, cpl=3, shadow=Shadow.STI, gs_base=0x1234, kernel_gs_base=None)
    pc = CodeAddr("entry_FRED_R3", 0)
    new, state = enter(cpu, ON, StackChoice(0, SL0, True), pc, RFLAGS_FIXED)
    assert (new.cpl, new.pc, new.rsp, new.shadow, new.rflags) == (
        0, pc, SL0 - 64, Shadow.NONE, RFLAGS_FIXED)
    assert (new.gs_base, new.kernel_gs_base, new.gs_swapped) == (None, 0x1234, True)
    assert state.csl == 0
    cpu0 = make_cpu(p, gs_base=None, kernel_gs_base=7)
    new0, state0 = enter(cpu0, ON, StackChoice(3, SL3, True), pc, RFLAGS_FIXED)
    assert (new0.gs_base, new0.kernel_gs_base, state0.csl) == (None, 7, 3)


def test_delivered_rflags_outcomes():
    """§5.1.2: Bochs clears every flag (RFLAGS = 2); Xen fred.rst says FMASK's behaviour
    extends to every delivery. Both are returned when they differ."""
    assert delivered_rflags(IF | RFLAGS_FIXED, IF) == (RFLAGS_FIXED,)
    assert delivered_rflags(IF | RFLAGS_FIXED | 0x1, IF) == (RFLAGS_FIXED, RFLAGS_FIXED | 0x1)


def test_nmi_delivery_blocks_nmis_and_mc_sets_mcip():
    """§5.3: accepting an NMI blocks NMIs; #MC sets MCIP as under IDT and a second #MC
    with MCIP set shuts down (SDM Vol. 3B §15.3.1.2, unchanged by FRED)."""
    p = platform()
    cpu = make_cpu(p)
    assert accept(cpu, fred_event(Event(Source.NMI, NMI))).nmi_blocked
    mc = fred_event(Event(Source.MACHINE_CHECK, MC))
    once = accept(cpu, mc)
    assert once is not None and once.mcip
    assert accept(once, mc) is None
    assert accept(cpu._replace(cr4_mce=False), mc) is None


# --- #DF and shutdown --------------------------------------------------------------------------


def test_fault_during_delivery_follows_table_6_5():
    """§5 nested exceptions (Linux ptrace.h: "Nested exception during FRED delivery, not
    set for #DF"): a #PF while delivering an interrupt is delivered as a nested #PF; a #PF
    while delivering a #PF is #DF; a fault while delivering #DF shuts down."""
    ext = fred_event(Event(Source.EXTERNAL, 0x30))
    assert nested_outcome(ext, PF) is Escalation.SERIAL
    nested = nested_event(ext, ArchFault(PF, 2))
    assert nested == FredEvent(EventType.HARDWARE_EXCEPTION, PF, 2, nested=True)
    assert nested_event(hw(PF, 2), ArchFault(PF, 2)) == double_fault_event()
    assert nested_event(double_fault_event(), ArchFault(PF, 2)) is None


def test_nested_page_fault_event_data_is_its_address():
    """§5.2 event data: a #PF raised while pushing a frame (nested, §5) records the linear
    address it faulted on, as CR2 would (SDM Vol. 3A §4.7); a fault that names none
    (an environment's `@fault(#PF)`) records 0, and a #GP records 0."""
    ext = fred_event(Event(Source.EXTERNAL, 0x30))
    nested = nested_event(ext, ArchFault(PF, 2, address=0xFFFF_8000_0000_0FF8))
    assert nested is not None and nested.event_data == 0xFFFF_8000_0000_0FF8
    assert nested_event(ext, ArchFault(PF, 2)) == FredEvent(
        EventType.HARDWARE_EXCEPTION, PF, 2, nested=True
    )
    gp = nested_event(ext, ArchFault(GP, 0, address=0x1000))
    assert gp is not None and gp.event_data == 0


# --- ERETS / ERETU -------------------------------------------------------------------------------


def _words(rip, cs, rflags, rsp, ss, code=0):
    return (code, rip, cs, rflags, rsp, ss)


def test_eret_needs_fred_and_cpl0():
    """§6: ERETS/ERETU are #UD with CR4.FRED clear (Bochs). At CPL > 0 Bochs raises #UD
    while the issue only says "requires CPL 0": both #UD and #GP are returned."""
    p = platform()
    assert eret_precondition_faults(make_cpu(p), FredState(False)) == (UD,)
    assert eret_precondition_faults(make_cpu(p, cpl=3), ON) == (UD, GP)
    assert eret_precondition_faults(make_cpu(p), ON) == ()


def test_erets_restores_and_lowers_the_level_only():
    """§6.1 ERETS: RIP, RFLAGS, RSP from the frame; the new CSL is min(CSL, frame's SL)."""
    p = platform()
    cpu = make_cpu(p, nmi_blocked=True)
    back = CodeAddr("hv", 7)
    res = erets(cpu, FredState(True, 2), _words(back, 0x0_E008, 0x202, SL0 - 0x80,
                                                 HYPERVISOR_SS), cs=HYPERVISOR_CS,
                ss=HYPERVISOR_SS)
    assert (res.cpu.pc, res.cpu.rflags, res.cpu.rsp, res.state.csl) == (back, 0x202,
                                                                       SL0 - 0x80, 0)
    assert res.cpu.nmi_blocked  # the frame's NMI bit was clear
    up = erets(cpu, FredState(True, 1), _words(back, 0x3_E008, 0x2, SL0, HYPERVISOR_SS),
               cs=HYPERVISOR_CS, ss=HYPERVISOR_SS)
    assert up.state.csl == 1


def test_eret_unblocks_nmis_only_with_the_frame_nmi_bit():
    """§6 (Bochs ERETS/ERETU): NMI blocking is cleared only when the frame's SS word has
    bit 18 set, i.e. returning from the NMI's own frame."""
    p = platform()
    cpu = make_cpu(p, nmi_blocked=True)
    res = erets(cpu, ON, _words(CodeAddr("hv", 1), HYPERVISOR_CS, 0x2, SL0,
                                HYPERVISOR_SS | SS_NMI | (2 << 32) | (2 << 48)),
                cs=HYPERVISOR_CS, ss=HYPERVISOR_SS)
    assert not res.cpu.nmi_blocked
    res_u = eretu(cpu, ON, _words(0x401000, GUEST_CS64, 0x202, 0x7FF0, GUEST_SS | SS_NMI))
    assert not res_u.cpu.nmi_blocked
    res_keep = eretu(cpu, ON, _words(0x401000, GUEST_CS64, 0x202, 0x7FF0, GUEST_SS))
    assert res_keep.cpu.nmi_blocked


def test_erets_restores_sti_blocking_when_if_set():
    """§6.1 (Bochs): the SS word's bit 16 re-establishes STI blocking if the restored IF
    is 1."""
    p = platform()
    ok = erets(make_cpu(p), ON, _words(CodeAddr("hv", 1), HYPERVISOR_CS, 0x202, SL0,
                                       HYPERVISOR_SS | SS_STI),
               cs=HYPERVISOR_CS, ss=HYPERVISOR_SS)
    assert ok.cpu.shadow is Shadow.STI
    off = erets(make_cpu(p), ON, _words(CodeAddr("hv", 1), HYPERVISOR_CS, 0x2, SL0,
                                        HYPERVISOR_SS | SS_STI),
                cs=HYPERVISOR_CS, ss=HYPERVISOR_SS)
    assert off.cpu.shadow is Shadow.NONE


@pytest.mark.parametrize(("words", "why"), [
    (_words(0x8000_0000_0000_0000, HYPERVISOR_CS, 0x2, SL0, HYPERVISOR_SS), "rip"),
    (_words(0x1000, GUEST_CS64, 0x2, SL0, HYPERVISOR_SS), "cs"),
    (_words(0x1000, HYPERVISOR_CS | (1 << 20), 0x2, SL0, HYPERVISOR_SS), "cs high"),
    (_words(0x1000, HYPERVISOR_CS, 0x0, SL0, HYPERVISOR_SS), "rflags bit 1"),
    (_words(0x1000, HYPERVISOR_CS, 0x2 | (1 << 17), SL0, HYPERVISOR_SS), "rflags VM"),
    (_words(0x1000, HYPERVISOR_CS, 0x2, SL0, GUEST_SS), "ss"),
    (_words(CodeAddr("x", 0), CodeAddr("x", 0), 0x2, SL0, HYPERVISOR_SS), "code cs"),
])
def test_erets_gp_on_a_bad_frame(words, why):
    """§6.1 ERETS #GP(0) (Bochs): non-canonical RIP; CS word other than the current CS
    outside bits 18:16; RFLAGS bit 1 clear or a reserved/VM bit set; SS word's bits 31:0
    other than the current SS outside bits 18:16."""
    p = platform()
    with pytest.raises(ArchFault) as info:
        erets(make_cpu(p), ON, words, cs=HYPERVISOR_CS, ss=HYPERVISOR_SS)
    assert info.value.vector == GP


def test_eretu_returns_to_ring3_and_swaps_gs():
    """§6.2 ERETU: CPL 3, RIP/RFLAGS/RSP from the frame, GS bases swapped back, the
    stack level unchanged (0)."""
    p = platform()
    cpu = make_cpu(p, gs_base=None, kernel_gs_base=0x5000, gs_swapped=True)
    res = eretu(cpu, ON, _words(0x401000, GUEST_CS64, 0x202, 0x7FF0, GUEST_SS),
                code_at=lambda a: CodeAddr("guest", 3) if a == 0x401000 else None)
    c = res.cpu
    assert (c.cpl, c.pc, c.rflags, c.rsp) == (3, CodeAddr("guest", 3), 0x202, 0x7FF0)
    assert (c.gs_base, c.kernel_gs_base, c.gs_swapped) == (0x5000, None, False)
    assert res.state == ON


@pytest.mark.parametrize(("state", "words"), [
    (FredState(True, 1), _words(0x401000, GUEST_CS64, 0x202, 0x7FF0, GUEST_SS)),
    (ON, _words(0x401000, HYPERVISOR_CS, 0x202, 0x7FF0, GUEST_SS)),
    (ON, _words(0x401000, GUEST_CS64 | (1 << 16), 0x202, 0x7FF0, GUEST_SS)),
    (ON, _words(0x401000, GUEST_CS64, 0x3202, 0x7FF0, GUEST_SS)),
    (ON, _words(0x401000, GUEST_CS64, 0x202, 0x7FF0, HYPERVISOR_SS)),
    (ON, _words(0x8000_0000_0000_0000, GUEST_CS64, 0x202, 0x7FF0, GUEST_SS)),
])
def test_eretu_gp_conditions(state, words):
    """§6.2 ERETU #GP(0) (Bochs): CSL > 0; CS word not an RPL-3 selector with bits 63:16
    zero; RFLAGS bit 1 clear or a reserved, VM or IOPL bit set; SS word bits 31:19 not
    zero or RPL not 3; non-canonical RIP."""
    p = platform()
    with pytest.raises(ArchFault) as info:
        eretu(make_cpu(p), state, words)
    assert info.value.vector == GP


def test_eret_pending_single_step_from_bit_17_and_tf():
    """§6 (Bochs): on return, bit 17 of the SS word with the restored TF set makes a
    single-step #DB due after the instruction."""
    p = platform()
    res = eretu(make_cpu(p), ON, _words(0x401000, GUEST_CS64, 0x2 | TF, 0x7FF0,
                                        GUEST_SS | SS_SWEVENT))
    assert res.pending_db
    res2 = eretu(make_cpu(p), ON, _words(0x401000, GUEST_CS64, 0x2, 0x7FF0,
                                         GUEST_SS | SS_SWEVENT))
    assert not res2.pending_db


def test_eretu_with_symbolic_guest_rflags_splits():
    """§6.2 with a guest-chosen RFLAGS: the reserved-bit check is decided both ways."""
    p = platform()
    f = var("f")
    words = _words(0x401000, GUEST_CS64, f, 0x7FF0, GUEST_SS)

    def go():
        return eretu(make_cpu(p), ON, words).cpu.cpl

    ok, _ = run_with([True], go)
    assert ok == 3
    with pytest.raises(ArchFault):
        run_with([False], go)


# --- GS ---------------------------------------------------------------------------------


def test_lkgs_loads_the_kernel_gs_shadow_only():
    """§7 LKGS: the selector's descriptor base goes to IA32_KERNEL_GS_BASE; the live GS
    base is unchanged. #GP(0) at CPL > 0 (not confirmed against the text)."""
    p = platform()
    cpu = make_cpu(p, gs_base=None, kernel_gs_base=0)
    out = lkgs(cpu, 0x7000)
    assert (out.gs_base, out.kernel_gs_base) == (None, 0x7000)
    with pytest.raises(ArchFault):
        lkgs(make_cpu(p, cpl=3), 0x7000)


def test_swapgs_is_ud_under_fred():
    """Xen fred.rst: with FRED active SWAPGS (and SYSRET, SYSEXIT) "unconditionally #UD"."""
    assert swapgs_faults(ON) == UD
    assert swapgs_faults(FredState(False)) is None


# --- composed: delivery then return ---------------------------------------------------------


def _push(words):
    return {address: value for address, value in words}


def _read6(memory, rsp):
    return tuple(memory[rsp + 8 * k] for k in range(6))


def test_nmi_frame_round_trip_and_nested_fault_keeps_nmis_blocked():
    """§5.2 + §6.1 composed, hand-checked: an NMI in ring 0 is delivered (NMIs blocked),
    a #PF inside the NMI handler is delivered on the same level and its ERETS leaves NMIs
    blocked (its frame has no NMI bit: the IDT's nested-NMI hazard is gone); the NMI's
    own ERETS then restores the interrupted context and unblocks NMIs."""
    p = platform()
    cpu = make_cpu(p, pc=CodeAddr("hv", 5), rsp=SL0 - 0x100, rflags=0x202)
    state = ON
    nmi = fred_event(Event(Source.NMI, NMI))
    choice = select_stack(XEN, state, 0, cpu.rsp, nmi)
    assert choice == StackChoice(0, SL0 - 0x100, False)
    mem = _push(frame_words(choice.rsp, nmi, cpl=0, csl=state.csl, cs=HYPERVISOR_CS,
                            ss=HYPERVISOR_SS, old_rsp=cpu.rsp, rflags=cpu.rflags,
                            rip=cpu.pc, sti_blocking=False))
    in_nmi, state = enter(accept(cpu, nmi), state, choice, CodeAddr("entry_FRED_R0", 0),
                          RFLAGS_FIXED)
    assert in_nmi.nmi_blocked and in_nmi.rsp == SL0 - 0x100 - 64
    # A #PF in the NMI handler: same level, below the NMI frame.
    in_nmi = in_nmi._replace(pc=CodeAddr("nmi_handler", 3))
    pf = fred_event(Event(Source.EXCEPTION, PF, 0), event_data=0x10)
    c2 = select_stack(XEN, state, 0, in_nmi.rsp, pf)
    assert c2 == StackChoice(0, SL0 - 0x100 - 64, False)
    mem.update(_push(frame_words(c2.rsp, pf, cpl=0, csl=state.csl, cs=HYPERVISOR_CS,
                                 ss=HYPERVISOR_SS, old_rsp=in_nmi.rsp,
                                 rflags=in_nmi.rflags, rip=in_nmi.pc, sti_blocking=False)))
    in_pf, state = enter(in_nmi, state, c2, CodeAddr("entry_FRED_R0", 0), RFLAGS_FIXED)
    back = erets(in_pf, state, _read6(mem, in_pf.rsp), cs=HYPERVISOR_CS, ss=HYPERVISOR_SS)
    assert back.cpu.nmi_blocked
    assert (back.cpu.pc, back.cpu.rsp) == (CodeAddr("nmi_handler", 3), in_nmi.rsp)
    done = erets(back.cpu, back.state, _read6(mem, back.cpu.rsp), cs=HYPERVISOR_CS,
                 ss=HYPERVISOR_SS)
    assert not done.cpu.nmi_blocked
    assert (done.cpu.pc, done.cpu.rsp, done.cpu.rflags) == (CodeAddr("hv", 5), SL0 - 0x100,
                                                             0x202)


# --- fred_deliver: one whole delivery ------------------------------------------------------


def _entry(ep):
    return CodeAddr("entry_FRED_R3" if ep.offset == 0 else "entry_FRED_R0", 0)


def _fred_platform_config():
    p = platform()
    cfg = XEN._replace(rsp=(p.region("primary").top, p.region("db_ist").top,
                            p.region("mce_ist").top, p.region("df_ist").top))
    return p, cfg


def test_fred_deliver_from_ring3_pushes_the_frame_and_enters_at_the_base():
    """§5 composed: a #GP in ring 3 goes to level 0 at IA32_FRED_RSP0, pushes the 64-byte
    frame (tracked as a frame whose RIP slot is 8 above the new RSP), enters at the ring-3
    entry point with the GS bases swapped; both RFLAGS outcomes are offered."""
    p, cfg = _fred_platform_config()
    m = make_machine(p, make_cpu(p, cpl=3, pc=CodeAddr("guest", 2), rflags=0x203,
                                 gs_base=0x1234, kernel_gs_base=None))
    outs = fred_deliver(p, m, 0, hw(GP, 0), CodeAddr("guest", 2), cfg, ON, _entry)
    top = p.region("primary").top
    # RFLAGS 2, or the old RFLAGS (IF, CF) less Xen's FMASK (IF): CF survives.
    assert {o.machine.cpus[0].rflags for o in outs} == {0x2, 0x3}
    for out in outs:
        cpu = out.machine.cpus[0]
        assert (cpu.cpl, cpu.pc, cpu.rsp, out.state.csl) == (0, _entry(EntryPoint(0, 0)),
                                                              top - 64, 0)
        (frame,) = out.machine.frames
        assert (frame.lo, frame.vector, frame.from_cpl, frame.stack) == (top - 56, GP, 3,
                                                                        "primary")
        assert read(out.machine, top - 56) == CodeAddr("guest", 2)
        assert read(out.machine, top - 48) == GUEST_CS64
        assert (read(out.machine, top - 64), read(out.machine, top - 40)) == (0, 0x203)
        assert (cpu.gs_base, cpu.kernel_gs_base) == (None, 0x1234)


def test_fred_deliver_bad_rsp0_from_ring3_escalates_to_double_fault_on_level_3():
    """§5.1.1 + nested exceptions: RSP0 = 0 makes the pushes of an interrupt from ring 3
    #PF; the nested #PF uses RSP0 again (level 0) and faults again: #DF, delivered on
    level 3 (IA32_FRED_RSP3), still entering at the ring-3 entry point (the interrupted
    context is ring 3). The issue's "#DF from a bad RSP0 at ring 3"."""
    p, cfg = _fred_platform_config()
    cfg = cfg._replace(rsp=(0,) + cfg.rsp[1:])
    m = make_machine(p, make_cpu(p, cpl=3))
    outs = fred_deliver(p, m, 0, fred_event(Event(Source.EXTERNAL, 0x30)),
                        CodeAddr("guest", 0), cfg, ON, _entry)
    for out in outs:
        (frame,) = out.machine.frames
        assert (frame.vector, frame.stack, out.state.csl) == (DF, "df_ist", 3)
        assert out.machine.cpus[0].pc == CodeAddr("entry_FRED_R3", 0)


def test_fred_deliver_fault_on_the_double_fault_stack_shuts_down():
    """§5 nested exceptions: a fault while delivering #DF shuts the CPU down."""
    p, cfg = _fred_platform_config()
    cfg = cfg._replace(rsp=(0, 0, 0, 0))
    m = make_machine(p, make_cpu(p, cpl=3))
    (out,) = fred_deliver(p, m, 0, hw(GP, 0), CodeAddr("guest", 0), cfg, ON, _entry)
    assert out.machine.cpus[0].run is Run.SHUTDOWN


def test_fred_deliver_second_machine_check_shuts_down():
    """SDM Vol. 3B §15.3.1.2 under FRED: a #MC with MCIP set shuts down."""
    p, cfg = _fred_platform_config()
    m = make_machine(p, make_cpu(p, mcip=True))
    (out,) = fred_deliver(p, m, 0, fred_event(Event(Source.MACHINE_CHECK, MC)),
                          CodeAddr("hv", 0), cfg, ON, _entry)
    assert out.machine.cpus[0].run is Run.SHUTDOWN
