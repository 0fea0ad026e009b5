"""64-bit IDT delivery: the checks in SDM order, stack selection, the frame, RFLAGS.

Every test names the rule it checks: Intel SDM Vol. 3A §6.12.1 (exception- and
interrupt-handler procedures), §6.13 (error code, EXT/IDT bits), §6.14 (64-bit mode: IST,
16-byte alignment, frame layout), Table 6-1 (which vectors push an error code), and the
Vol. 2 "INT n/INTO/INT3/INT1" pseudocode (order of checks, EXT rules).
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from model.x86.arch import (
    AC_FLAG,
    BP,
    CF,
    DB,
    DF,
    DF_FLAG,
    GP,
    IF,
    MC,
    NMI,
    NP,
    NT,
    OF,
    PF,
    RF,
    RFLAGS_FIXED,
    SS,
    TF,
    UD,
    idt_error_code,
)
from model.x86.delivery import IST_WITHOUT_TSS, Source
from model.x86.instructions import set_ist, set_rsp0
from model.x86.memory import GUEST_MEMORY, read
from model.x86.state import (
    WORD,
    CodeAddr,
    Gate,
    Run,
    Shadow,
)
from tests.x86_helpers import (
    GUEST_CS64,
    GUEST_MEMORY_RSP,
    GUEST_SS,
    GUEST_STACK,
    HYPERVISOR_CS,
    HYPERVISOR_SS,
    IST_DB,
    deliver_event,
    frame_words,
    handler,
    last_frame,
    make_cpu,
    make_machine,
    platform,
    setup,
    xen_idt,
)

EXT_VECTOR = 0x30  # an ordinary device vector with a DPL 0 interrupt gate


def error_code_of(m, f):
    """The error code sits in the word just below the saved RIP (SDM §6.14.2, Figure 6-9)."""
    return read(m, f.lo - WORD)


# --- 1. INTO in 64-bit mode -----------------------------------------------------------------


def test_into_in_64bit_mode_raises_ud():
    """SDM Vol. 2 INTO (IA-32e-MODE: "IF INTO and CS.L = 1 THEN #UD"), before any IDT access."""
    p, m = setup(cpl=3)
    m2 = deliver_event(p, m, Source.INTO, OF)
    f = last_frame(m2)
    assert (f.vector, f.source) == (UD, "exception")
    assert m2.cpus[0].pc == CodeAddr(handler(UD), 0)
    assert m2.cpus[0].rsp == f.lo  # #UD pushes no error code (SDM Table 6-1)


def test_into_outside_64bit_mode_goes_through_vector_4_with_dpl_check():
    """SDM Vol. 2 INTO: in compatibility mode INTO is a software interrupt to vector 4 and
    the gate DPL is checked (PROTECTED-MODE "IF software interrupt ... gate DPL < CPL")."""
    p = platform(mode64=False)
    m = make_machine(p, make_cpu(p, cpl=3))
    f = last_frame(deliver_event(p, m, Source.INTO, OF))
    assert (f.vector, f.source) == (OF, "into")
    m = make_machine(p, make_cpu(p, cpl=3), idts=(xen_idt(v4=Gate(handler(OF), dpl=0)),))
    m2 = deliver_event(p, m, Source.INTO, OF)
    f = last_frame(m2)
    assert f.vector == GP
    assert error_code_of(m2, f) == (OF << 3) | 2  # EXT = 0 for INTO


# --- 2. IDT limit / missing gate -> #GP(v<<3 | IDT | EXT) -------------------------------------


@pytest.mark.parametrize(
    "source,vector,ext",
    [
        (Source.EXTERNAL, 0x50, 1),
        (Source.INT_N, 0x50, 0),
        (Source.NMI, 0x50, 1),  # (vector only matters for the index)
    ],
)
def test_vector_beyond_idt_limit_raises_gp_with_idt_error_code(source, vector, ext):
    """SDM Vol. 2 INT n (IA-32e-MODE): "(vector << 4) + 15 not in IDT limits ... #GP(
    error_code(vector,1,EXT))"; §6.13: EXT is 0 only for INT n / INT3 / INTO."""
    p = platform()
    m = make_machine(p, make_cpu(p), idts=(xen_idt(limit=0x40),))
    m2 = deliver_event(p, m, source, vector)
    f = last_frame(m2)
    assert f.vector == GP and f.source == "exception"
    assert error_code_of(m2, f) == (vector << 3) | 2 | ext
    assert m2.cpus[0].rsp == f.lo - WORD


def test_idt_limit_counts_vectors():
    """SDM §6.10/§6.14.1: the last vector the limit covers is deliverable, the next is not."""
    p = platform()
    m = make_machine(p, make_cpu(p), idts=(xen_idt(limit=0x40),))
    assert last_frame(deliver_event(p, m, Source.EXTERNAL, 0x3F)).vector == 0x3F
    assert last_frame(deliver_event(p, m, Source.EXTERNAL, 0x40)).vector == GP


@pytest.mark.parametrize(
    "source,vector,ext",
    [
        (Source.EXTERNAL, EXT_VECTOR, 1),
        (Source.INT_N, EXT_VECTOR, 0),
        (Source.INT1, DB, 1),  # INT1 is not a "software interrupt": EXT = 1
        (Source.EXCEPTION, UD, 1),
        (Source.NMI, NMI, 1),
    ],
)
def test_missing_gate_raises_gp_with_ext_per_source(source, vector, ext):
    """SDM §6.12.1.1 / Vol. 2 INT n: a descriptor that is not an interrupt or trap gate ->
    #GP(v<<3 | IDT | EXT); "if that event is a software interrupt (INT n, INT3, or INTO),
    EXT is 0; otherwise (including INT1), EXT is 1"."""
    p = platform()
    m = make_machine(p, make_cpu(p), idts=(xen_idt(**{f"v{vector}": None}),))
    m2 = deliver_event(p, m, source, vector)
    f = last_frame(m2)
    assert f.vector == GP
    assert error_code_of(m2, f) == idt_error_code(vector, bool(ext)) == (vector << 3) | 2 | ext


# --- 3. The DPL check: INT n / INT3 / INTO only ---------------------------------------------


@pytest.mark.parametrize(
    "source,vector,checked",
    [
        (Source.INT_N, EXT_VECTOR, True),
        (Source.INT3, BP, True),
        (Source.INT1, DB, False),
        (Source.EXCEPTION, PF, False),
        (Source.EXCEPTION, GP, False),
        (Source.EXTERNAL, EXT_VECTOR, False),
        (Source.NMI, NMI, False),
        (Source.MACHINE_CHECK, MC, False),
    ],
)
def test_dpl_check_applies_only_to_software_interrupts(source, vector, checked):
    """SDM Vol. 2 INT n: "IF software interrupt (* Generated by INT n, INT3, or INTO; does
    not apply to INT1 *) ... IF gate DPL < CPL THEN #GP(error_code(vector,1,0))"; §6.12.1.1:
    the processor does not check the gate DPL for exceptions and hardware interrupts."""
    p = platform()
    idt = xen_idt(**{f"v{vector}": Gate(handler(vector), dpl=0, ist=IST_DB if vector == DB else 0)})
    m = make_machine(p, make_cpu(p, cpl=3), idts=(idt,))
    m2 = deliver_event(p, m, source, vector, error_code=0 if source is Source.EXCEPTION else None)
    f = last_frame(m2)
    if checked:
        assert f.vector == GP
        assert error_code_of(m2, f) == (vector << 3) | 2  # EXT = 0
    else:
        assert f.vector == vector
        assert m2.cpus[0].pc == CodeAddr(handler(vector), 0)


@pytest.mark.parametrize("source,vector", [(Source.INT_N, 0x80), (Source.INT3, BP)])
def test_software_interrupt_through_dpl3_gate_is_delivered(source, vector):
    """SDM Vol. 2 INT n: gate DPL >= CPL passes the check (Xen's #BP and 0x80 gates)."""
    p, m = setup(cpl=3)
    f = last_frame(deliver_event(p, m, source, vector))
    assert (f.vector, f.source, f.from_cpl) == (vector, source.value, 3)


def test_int_n_at_cpl0_through_dpl0_gate_is_delivered():
    """SDM Vol. 2 INT n: DPL 0 >= CPL 0, so ring 0 may INT through any gate."""
    p, m = setup(cpl=0)
    assert last_frame(deliver_event(p, m, Source.INT_N, EXT_VECTOR)).vector == EXT_VECTOR


def test_not_present_gate_with_dpl_violation_gives_gp_not_np():
    """SDM Vol. 2 INT n: the DPL check precedes "IF gate not present THEN #NP"."""
    p = platform()
    idt = xen_idt(v0x30=Gate(handler(EXT_VECTOR), dpl=0, present=False))
    m = make_machine(p, make_cpu(p, cpl=3), idts=(idt,))
    m2 = deliver_event(p, m, Source.INT_N, EXT_VECTOR)
    f = last_frame(m2)
    assert f.vector == GP
    assert error_code_of(m2, f) == (EXT_VECTOR << 3) | 2


@pytest.mark.parametrize(
    "source,vector,cpl,ext",
    [
        (Source.INT_N, EXT_VECTOR, 3, 0),
        (Source.EXTERNAL, EXT_VECTOR, 0, 1),
        (Source.EXCEPTION, UD, 0, 1),
    ],
)
def test_not_present_gate_raises_np(source, vector, cpl, ext):
    """SDM Vol. 2 INT n: "IF gate not present THEN #NP(error_code(vector,1,EXT))"."""
    p = platform()
    idt = xen_idt(**{f"v{vector}": Gate(handler(vector), dpl=3, present=False)})
    m = make_machine(p, make_cpu(p, cpl=cpl), idts=(idt,))
    m2 = deliver_event(p, m, source, vector)
    f = last_frame(m2)
    assert f.vector == NP
    assert error_code_of(m2, f) == (vector << 3) | 2 | ext


# --- 5. Stack selection ---------------------------------------------------------------------


def test_ist_switches_even_without_privilege_change():
    """SDM §6.14.5: the IST mechanism "unconditionally switches stacks when it is enabled";
    Vol. 2 INT n INTRA-PRIVILEGE-LEVEL-INTERRUPT: IST != 0 -> NewRSP := TSS.IST[n]."""
    p, m = setup(cpl=0)
    old_rsp = m.cpus[0].rsp
    m2 = deliver_event(p, m, Source.NMI, NMI)
    f = last_frame(m2)
    top = p.region("nmi_ist").top
    assert (f.stack, f.lo, f.from_cpl) == ("nmi_ist", top - 5 * WORD, 0)
    assert m2.cpus[0].rsp == f.lo
    assert frame_words(m2, f)["rsp"] == old_rsp
    assert frame_words(m2, f)["ss"] == HYPERVISOR_SS
    assert frame_words(m2, f)["cs"] == HYPERVISOR_CS


def test_ist_beats_rsp0_on_privilege_change():
    """SDM Vol. 2 INT n INTER-PRIVILEGE-LEVEL-INTERRUPT (IA-32e): IST != 0 selects
    TSS.IST[n] instead of RSP0."""
    p, m = setup(cpl=3)
    f = last_frame(deliver_event(p, m, Source.NMI, NMI))
    assert (f.stack, f.from_cpl) == ("nmi_ist", 3)


def test_rsp0_on_privilege_change_without_ist():
    """SDM §6.14.4 / Vol. 2 INT n: a CPL change with IST = 0 loads RSP from TSS.RSP0."""
    p, m = setup(cpl=3)
    m2 = deliver_event(p, m, Source.EXTERNAL, EXT_VECTOR)
    f = last_frame(m2)
    assert (f.stack, f.lo, f.from_cpl) == ("primary", p.region("primary").top - 40, 3)
    assert m2.cpus[0].cpl == 0


def test_current_stack_without_ist_or_privilege_change():
    """SDM Vol. 2 INT n INTRA-PRIVILEGE-LEVEL-INTERRUPT: IST = 0 -> NewRSP := RSP."""
    p, m = setup(cpl=0)
    rsp = m.cpus[0].rsp
    f = last_frame(deliver_event(p, m, Source.EXTERNAL, EXT_VECTOR))
    assert (f.stack, f.lo) == ("primary", rsp - 5 * WORD)


def test_ist_delivery_without_tr_reads_the_reset_tss_and_records_incident():
    """SDM Vol. 2 INT n: the IST slot is read from the current TSS; with no LTR the TR has
    its reset value (SDM Vol. 3A Table 9-1: base 0, limit 0FFFFH), so IST2 is the 8 bytes at
    linear 0x2C. Page 0 never written, assumed to read 0 (`unwritten_unknown = false`; by
    default it is unknown, tests/test_x86_segments.py): the first push goes to
    0xFFFFFFFFFFFFFFF8, unmapped -> #PF, delivered serially after the benign NMI (Table
    6-5). The model records "ist-without-tss"."""
    from dataclasses import replace

    p, m = setup(cpl=0, tr=None)
    p = replace(p, unwritten_unknown=False)
    m2 = deliver_event(p, m, Source.NMI, NMI)
    f = last_frame(m2)
    assert f.vector == PF
    assert f.stack == "primary"  # #PF's gate has no IST and CPL stays 0
    assert IST_WITHOUT_TSS in m2.incidents
    assert m2.cpus[0].nmi_blocked


def test_non_ist_delivery_at_cpl0_without_tr_needs_no_tss():
    """SDM Vol. 2 INT n: the TSS is only read for IST != 0 or a CPL change."""
    p, m = setup(cpl=0, tr=None)
    m2 = deliver_event(p, m, Source.EXTERNAL, EXT_VECTOR)
    assert last_frame(m2).vector == EXT_VECTOR
    assert IST_WITHOUT_TSS not in m2.incidents


def test_privilege_change_without_tr_triple_faults():
    """SDM Vol. 2 INT n + Table 6-5, with the reset TR (SDM Vol. 3A Table 9-1) and its
    never-written RSP0/IST words assumed to read 0 (`unwritten_unknown = false`): the
    pushes below RSP0 = 0 fault (#PF), #PF while delivering #PF -> #DF, and #PF again
    while delivering #DF (IST, also 0) -> shutdown."""
    from dataclasses import replace

    p, m = setup(cpl=3, tr=None)
    p = replace(p, unwritten_unknown=False)
    m2 = deliver_event(p, m, Source.EXTERNAL, EXT_VECTOR)
    assert m2.cpus[0].run is Run.SHUTDOWN
    assert IST_WITHOUT_TSS in m2.incidents  # the #DF gate has an IST


def test_unset_ist_slot_faults_at_the_first_push():
    """SDM Vol. 2 INT n: NewRSP := the 8 bytes of TSS.IST[n]; an unset slot is 0, so the
    first push goes to 0xFFFFFFFFFFFFFFF8, an unmapped (canonical) page -> #PF."""
    p, m = setup(cpl=0)
    m = set_ist(m, "tss0", 2, None)
    m2 = deliver_event(p, m, Source.NMI, NMI)
    f = last_frame(m2)
    assert f.vector == PF  # benign NMI, then #PF: serial (Table 6-5)
    assert f.stack == "primary"
    assert all(addr >= 0 for addr, _ in m2.memory)
    assert len(m2.frames) == 1


def test_unset_rsp0_double_faults_onto_the_df_ist():
    """SDM Vol. 2 INT n + Table 6-5: RSP0 = 0 from CPL 3 -> #PF at the push; the #PF (also
    via RSP0) faults again -> #DF, delivered on its IST stack with error code 0."""
    p, m = setup(cpl=3)
    m = set_rsp0(m, "tss0", None)
    m2 = deliver_event(p, m, Source.EXTERNAL, EXT_VECTOR)
    f = last_frame(m2)
    assert (f.vector, f.stack, f.from_cpl) == (DF, "df_ist", 3)
    assert error_code_of(m2, f) == 0
    assert m2.cpus[0].run is Run.RUNNING


NON_CANONICAL = 0x0000_8000_0000_1000


def test_non_canonical_rsp_raises_ss_with_ext():
    """SDM Vol. 2 INT n (IA-32e, 64-bit gate): "IF NewRSP contains a non-canonical address
    THEN #SS(EXT)". Here #SS's gate uses an IST so it is delivered serially after the
    (benign) external interrupt."""
    p = platform()
    idt = xen_idt(v12=Gate(handler(SS), ist=IST_DB))
    m = make_machine(p, make_cpu(p, cpl=0, rsp=NON_CANONICAL), idts=(idt,))
    m2 = deliver_event(p, m, Source.EXTERNAL, EXT_VECTOR)
    f = last_frame(m2)
    assert (f.vector, f.stack) == (SS, "db_ist")
    assert error_code_of(m2, f) == 1
    assert frame_words(m2, f)["rsp"] == NON_CANONICAL


def test_non_canonical_rsp_with_int_n_has_ext_clear():
    """SDM Vol. 2 INT n: #SS(EXT) with EXT = 0 for a software interrupt."""
    p = platform()
    idt = xen_idt(v12=Gate(handler(SS), ist=IST_DB))
    m = make_machine(p, make_cpu(p, cpl=0, rsp=NON_CANONICAL), idts=(idt,))
    m2 = deliver_event(p, m, Source.INT_N, EXT_VECTOR)
    assert error_code_of(m2, last_frame(m2)) == 0


def test_non_canonical_rsp_in_xen_idt_double_faults():
    """SDM Table 6-5: #SS (non-IST in Xen) faults again on the same RSP -> #DF on its IST
    (the SYSRET/XSA-7 shape)."""
    p = platform()
    m = make_machine(p, make_cpu(p, cpl=0, rsp=NON_CANONICAL))
    f = last_frame(m2 := deliver_event(p, m, Source.EXTERNAL, EXT_VECTOR))
    assert (f.vector, f.stack) == (DF, "df_ist")
    assert m2.cpus[0].run is Run.RUNNING


# --- 6. Alignment and frame layout ------------------------------------------------------------


def test_rsp_aligned_to_16_before_the_frame():
    """SDM §6.14.2: "the RSP is aligned to a 16-byte boundary before pushing the stack
    frame"; the saved RSP is the unaligned original."""
    p = platform()
    rsp = p.region("primary").top - 0x108
    m = make_machine(p, make_cpu(p, rsp=rsp))
    m2 = deliver_event(p, m, Source.EXTERNAL, EXT_VECTOR)
    f = last_frame(m2)
    assert f.lo == (rsp & ~0xF) - 5 * WORD
    assert frame_words(m2, f)["rsp"] == rsp


@given(offset=st.integers(min_value=0x80, max_value=0xFF8))
def test_alignment_property_for_any_rsp_in_the_stack(offset):
    """SDM §6.14.2: for any starting RSP the frame starts at (RSP & ~0xF) - 40, so the
    saved RIP sits at 8 mod 16 and, after an error code, the handler's RSP is 16-aligned."""
    p = platform()
    rsp = p.region("primary").lo + offset
    m = make_machine(p, make_cpu(p, rsp=rsp))
    m2 = deliver_event(p, m, Source.EXCEPTION, GP, error_code=0)
    f = last_frame(m2)
    assert f.lo == (rsp & ~0xF) - 40
    assert f.lo % 16 == 8
    assert m2.cpus[0].rsp % 16 == 0
    assert frame_words(m2, f)["rsp"] == rsp


def test_frame_words_in_order_at_their_addresses():
    """SDM §6.14.2 Figure 6-9 / Vol. 2 INT n: push SS, RSP, RFLAGS, CS, RIP (8 bytes each)."""
    p, m = setup(cpl=3)
    cpu = m.cpus[0]
    ret = CodeAddr("guest", 7)
    m2 = deliver_event(p, m, Source.EXTERNAL, EXT_VECTOR, return_pc=ret)
    top = p.region("primary").top
    assert read(m2, top - 8) == GUEST_SS
    assert read(m2, top - 16) == cpu.rsp
    assert read(m2, top - 24) == cpu.rflags
    assert read(m2, top - 32) == GUEST_CS64
    assert read(m2, top - 40) == ret
    assert m2.cpus[0].rsp == top - 40
    assert m2.cpus[0].pc == CodeAddr(handler(EXT_VECTOR), 0)


ERROR_CODE_VECTORS = {8, 10, 11, 12, 13, 14, 17, 21}  # SDM Table 6-1, written out here
EXCEPTIONS = [v for v in range(22) if v not in (NMI, 15)]


@pytest.mark.parametrize("vector", EXCEPTIONS)
def test_error_code_exactly_for_the_error_code_exceptions(vector):
    """SDM Table 6-1 / §6.13: #DF(0), #TS, #NP, #SS, #GP, #PF, #AC(0), #CP push an error
    code; no other exception does."""
    p, m = setup(cpl=0)
    code = 0x18 if vector in ERROR_CODE_VECTORS and vector not in (DF, 17) else None
    m2 = deliver_event(p, m, Source.EXCEPTION, vector, error_code=code)
    f = last_frame(m2)
    assert f.vector == vector
    if vector in ERROR_CODE_VECTORS:
        assert m2.cpus[0].rsp == f.lo - WORD
        assert read(m2, f.lo - WORD) == (code or 0)
    else:
        assert m2.cpus[0].rsp == f.lo


@pytest.mark.parametrize("source", [Source.INT_N, Source.EXTERNAL])
@pytest.mark.parametrize("vector", sorted(ERROR_CODE_VECTORS))
def test_no_error_code_for_int_n_or_external_to_error_code_vectors(source, vector):
    """SDM §6.13: "Error codes are not pushed on the stack for exceptions that are generated
    externally (with the INTR or LINT[1:0] pins) or the INT n instruction, even if an error
    code is normally produced for those exceptions"."""
    p, m = setup(cpl=0)
    m2 = deliver_event(p, m, source, vector)
    f = last_frame(m2)
    assert (f.vector, f.source) == (vector, source.value)
    assert m2.cpus[0].rsp == f.lo


ALL_FLAGS = IF | TF | NT | RF | CF | AC_FLAG | DF_FLAG | RFLAGS_FIXED


@pytest.mark.parametrize("kind,if_after", [("interrupt", 0), ("trap", IF)])
def test_gate_kind_decides_if_and_tf_nt_rf_are_always_cleared(kind, if_after):
    """SDM §6.12.1.3 / Vol. 2 INT n: an interrupt gate clears IF, a trap gate leaves it;
    both clear TF, NT and RF. The saved RFLAGS is the value before delivery."""
    p = platform()
    idt = xen_idt(v0x30=Gate(handler(EXT_VECTOR), kind=kind))
    m = make_machine(p, make_cpu(p, rflags=ALL_FLAGS), idts=(idt,))
    m2 = deliver_event(p, m, Source.INT_N, EXT_VECTOR)
    assert m2.cpus[0].rflags == (CF | AC_FLAG | DF_FLAG | RFLAGS_FIXED | if_after)
    assert frame_words(m2, last_frame(m2))["rflags"] == ALL_FLAGS


def test_frame_recorded_with_lo_stack_from_cpl():
    """Model rule (issue 3): every delivery frame is recorded live in Machine.frames with
    the address of its saved RIP, its stack and the interrupted CPL (SDM §6.14.2 layout)."""
    p, m = setup(cpl=3)
    m2 = deliver_event(p, m, Source.EXCEPTION, PF, error_code=0b110)
    (f,) = m2.frames
    assert (f.cpu, f.vector, f.source) == (0, PF, "exception")
    assert (f.lo, f.hi) == (p.region("primary").top - 40, p.region("primary").top)
    assert (f.stack, f.from_cpl, f.clobbered, f.on_guest_stack) == ("primary", 3, False, False)


def test_delivery_resets_run_shadow_and_delivering():
    """SDM §6.8.3 / Vol. 2 HLT: the handler starts running; shadows end at the boundary the
    event was taken on."""
    p, m = setup(cpl=0, run=Run.HALTED, shadow=Shadow.STI)
    cpu = deliver_event(p, m, Source.NMI, NMI).cpus[0]
    assert (cpu.run, cpu.shadow, cpu.delivering) == (Run.RUNNING, Shadow.NONE, None)


@pytest.mark.parametrize(
    "rsp,stack",
    [(GUEST_STACK.top - 0x80, "guest_stack"), (GUEST_MEMORY_RSP, GUEST_MEMORY)],
)
def test_frame_pushed_at_ring0_onto_guest_stack_is_marked(rsp, stack):
    """Model rule (issue 3): "a frame pushed at ring 0 onto a guest-controlled stack is marked
    as such" - e.g. after SYSCALL, which does not switch stacks (SDM Vol. 2 SYSCALL)."""
    p = platform()
    m = make_machine(p, make_cpu(p, cpl=0, rsp=rsp))
    f = last_frame(deliver_event(p, m, Source.EXCEPTION, UD))
    assert (f.stack, f.on_guest_stack, f.from_cpl) == (stack, True, 0)


def test_fault_of_int_n_delivery_saves_the_int_instruction():
    """SDM Vol. 2 INT n / §6.5: the #GP of a failed DPL check is a fault of the INT
    instruction itself, so its frame saves the INT's address, not the next one."""
    from model.x86.delivery import Event, deliver
    from model.x86.memory import read
    from model.x86.state import CodeAddr

    p, m = setup(cpl=3)
    here, after = CodeAddr("guest", 4), CodeAddr("guest", 5)
    m2 = deliver(p, m, 0, Event(Source.INT_N, EXT_VECTOR), after, instruction_pc=here)
    f = last_frame(m2)
    assert f.vector == GP
    assert read(m2, f.lo) == here


def test_int_n_delivered_saves_the_next_instruction():
    """SDM Vol. 2 INT n: a delivered software interrupt is trap-like: RIP after the INT."""
    from model.x86.delivery import Event, deliver
    from model.x86.memory import read
    from model.x86.state import CodeAddr

    p, m = setup(cpl=0)
    here, after = CodeAddr("kernel", 4), CodeAddr("kernel", 5)
    m2 = deliver(p, m, 0, Event(Source.INT_N, EXT_VECTOR), after, instruction_pc=here)
    f = last_frame(m2)
    assert f.vector == EXT_VECTOR
    assert read(m2, f.lo) == after
