"""Segments and descriptors (model/x86/segments.py) and the rules the audit of issue 14
found wrong: each test names the SDM (or APM) section it checks."""

from __future__ import annotations

import pytest

from model.x86 import msr
from model.x86.arch import DF, GP, IF, IOPL, NMI, NP, PF, RFLAGS_FIXED, SS, UD
from model.x86.delivery import IST_WITHOUT_TSS, Source
from model.x86.events import nmi_ipi_outcomes
from model.x86.instructions import cli, iret, popped_flags, sti, syscall, sysret
from model.x86.memory import ArchFault, push
from model.x86.segments import (
    default_star,
    iret_checks,
    load_ss_checks,
    mov_to_ss,
    syscall_selectors,
    sysret_selectors,
)
from model.x86.state import WORD, CodeAddr, Descriptor, DescriptorTable
from tests.x86_helpers import (
    GUEST_CS64,
    GUEST_SS,
    GUEST_STACK,
    HYPERVISOR_CS,
    HYPERVISOR_SS,
    deliver_event,
    frame_words,
    last_frame,
    make_cpu,
    make_machine,
    platform,
    setup,
)

GDT = DescriptorTable("gdt", (
    (0xE008 >> 3, Descriptor("code", 0, long=True, db=False)),
    (0xE010 >> 3, Descriptor("data", 0)),
    (0xE018 >> 3, Descriptor("data", 3, present=False)),  # a not-present stack segment
    (0xE020 >> 3, Descriptor("code", 3, present=False)),  # a not-present code segment
    (0xE02B >> 3, Descriptor("data", 3)),
    (0xE033 >> 3, Descriptor("code", 3, long=True, db=False)),
    (0xE040 >> 3, Descriptor("system", 0)),
))
LDT = DescriptorTable("ldt", ((0, Descriptor("data", 3, db=False)),))  # a 16-bit stack


def _fault(fn, *args) -> ArchFault:  # type: ignore[no-untyped-def]
    with pytest.raises(ArchFault) as info:
        fn(*args)
    return info.value


def _push_frame(p, m, rip, cs, rflags, rsp, ss):  # type: ignore[no-untyped-def]
    for w in (ss, rsp, rflags, cs, rip):
        m = push(p, m, 0, w)
    return m


# ---- IRET (SDM Vol. 2 IRET, IA-32e-MODE-RETURN / RETURN-TO-OUTER-PRIVILEGE-LEVEL) ----------

def test_iret_null_cs_and_null_ss_to_cpl3_are_gp0():
    """SDM Vol. 2 IRET, IA-32e-MODE-RETURN: "IF (return code segment selector is NULL) ...
    or (SS selector is NULL going back to CPL3 64-bit mode) ... THEN GP(0)"."""
    assert (_fault(iret_checks, GDT, None, 0, 0, 0xE02B).vector,) == (GP,)
    f = _fault(iret_checks, GDT, None, 0, 0xE033, 0)
    assert (f.vector, f.error_code) == (GP, 0)


def test_iret_null_ss_to_ring0_is_allowed_only_with_rpl_equal_to_the_new_cpl():
    """SDM Vol. 2 IRET, IA-32e-MODE-RETURN: a NULL SS is #GP(0) when its "RPL <> CPL going
    back to non-CPL3 64-bit mode"; SDM §6.14.3: IRET may load a NULL SS at CPL < 3."""
    assert iret_checks(GDT, None, 0, 0xE008, 0).cpl == 0
    f = _fault(iret_checks, GDT, None, 0, 0xE008, 1)
    assert (f.vector, f.error_code) == (GP, 0)


def test_iret_cs_checks_report_the_cs_selector():
    """SDM Vol. 2 IRET: #GP(selector) for a CS that is not code (a data or system segment,
    an undeclared entry), whose RPL < CPL, or whose non-conforming DPL != RPL; #NP(selector)
    for a not-present one. The error code is the selector without its RPL (SDM §6.13)."""
    cases = [
        (0xE013, GP, 0xE010),  # a data segment
        (0xE043, GP, 0xE040),  # a system segment (the TSS)
        (0xE07B, GP, 0xE078),  # an undeclared entry
        (0xE00B, GP, 0xE008),  # ring 0 code named with RPL 3: DPL != RPL
        (0xE023, NP, 0xE020),  # not present
    ]
    for cs, vector, code in cases:
        f = _fault(iret_checks, GDT, None, 0, cs, 0xE02B)
        assert (f.vector, f.error_code) == (vector, code), hex(cs)
    f = _fault(iret_checks, GDT, None, 3, 0xE008, 0xE010)  # RPL 0 < CPL 3
    assert (f.vector, f.error_code) == (GP, 0xE008)


def test_iret_ss_checks_report_the_ss_selector():
    """SDM Vol. 2 IRET, RETURN-TO-OUTER-PRIVILEGE-LEVEL: #GP(SS selector) when the SS RPL
    or DPL differs from the return CS's RPL or SS is not a writable data segment;
    #SS(SS selector) when it is not present."""
    for ss, vector, code in [
        (0xE010, GP, 0xE010),  # RPL 0 != CS RPL 3
        (0xE013, GP, 0xE010),  # RPL 3 but DPL 0
        (0xE033, GP, 0xE030),  # a code segment
        (0xE01B, SS, 0xE018),  # not present
    ]:
        f = _fault(iret_checks, GDT, None, 0, 0xE033, ss)
        assert (f.vector, f.error_code) == (vector, code), hex(ss)
    assert iret_checks(GDT, None, 0, 0xE033, 0xE02B).cpl == 3


def test_iret_reads_ldt_selectors_from_the_ldt():
    """SDM §3.4.2: TI = 1 selects the LDT. A 16-bit stack segment (D/B = 0) in the LDT is a
    valid SS for IRET; with no LDT the same selector is #GP(selector)."""
    assert iret_checks(GDT, LDT, 0, 0xE033, 0x7).cpl == 3
    f = _fault(iret_checks, GDT, None, 0, 0xE033, 0x7)
    assert (f.vector, f.error_code) == (GP, 0x4)


def test_iret_of_a_zero_frame_faults_on_the_old_stack_with_nmis_unblocked():
    """SDM Vol. 2 IRET: a frame of never-written words has CS = 0: #GP(0). The fault is
    taken before anything is loaded (RSP still points at the frame, CPL unchanged), and
    NMIs are unblocked even so (SDM §6.7.1: IRET "unblocks NMIs even if the instruction
    causes a fault ... before the exception handler is invoked")."""
    p, m = setup(cpl=0, nmi_blocked=True)
    rsp = m.cpus[0].rsp
    f = _fault(iret, p, m, 0)
    assert (f.vector, f.error_code) == (GP, 0)
    assert f.machine is not None
    cpu = f.machine.cpus[0]
    assert (cpu.rsp, cpu.cpl, cpu.nmi_blocked) == (rsp, 0, False)


def test_iret_loads_cs_and_ss_and_delivery_pushes_them_back():
    """SDM Vol. 2 IRET loads CS and SS from the frame; SDM §6.14.2: a later delivery saves
    the interrupted context's own SS and CS."""
    p, m = setup(cpl=0)
    m = _push_frame(p, m, 0x401000, GUEST_CS64, RFLAGS_FIXED | IF, GUEST_STACK.top - 8, 0x0)
    with pytest.raises(ArchFault):  # NULL SS to CPL 3
        iret(p, m, 0)
    p, m = setup(cpl=0)
    m = _push_frame(p, m, 0x401000, GUEST_CS64, RFLAGS_FIXED | IF, GUEST_STACK.top - 8,
                    GUEST_SS)
    m = iret(p, m, 0)
    cpu = m.cpus[0]
    assert (cpu.cpl, cpu.cs, cpu.ss) == (3, GUEST_CS64, GUEST_SS)
    m = deliver_event(p, m, Source.EXTERNAL, 0x30)
    words = frame_words(m, last_frame(m))
    assert (words["cs"], words["ss"]) == (GUEST_CS64, GUEST_SS)


def test_iret_to_a_16bit_stack_segment_keeps_the_kernel_rsp_upper_bits():
    """SDM Vol. 3A §6.14.3: "The SS/ESP/RSP size adjustment is determined by the stack
    size"; a stack segment with B = 0 is a 16-bit stack addressed through SP (§3.4.5,
    Vol. 1 §6.2.3). IRET to compatibility mode (CS.L = 0) with such an SS loads only
    SP: bits 63:16 of RSP keep the kernel's stack pointer (the espfix leak). To 64-bit
    mode (CS.L = 1) B is ignored, and a 32-bit SS (B = 1) loads all of RSP."""
    compat = 0xE053  # a present ring 3 compatibility-mode (L = 0) code segment
    gdt = GDT._replace(entries=GDT.entries + ((compat >> 3, Descriptor("code", 3)),))
    p = platform(gdts=(gdt,), ldts=(LDT,))
    for cs, ss, leaks in ((compat, 0x7, True), (0xE033, 0x7, False), (compat, 0xE02B, False)):
        m = make_machine(p, make_cpu(p, cpl=0))
        m = _push_frame(p, m, 0x401000, cs, RFLAGS_FIXED | IF, 0x1FF0, ss)
        frame_rsp = m.cpus[0].rsp
        assert isinstance(frame_rsp, int)
        rsp = iret(p, m, 0).cpus[0].rsp
        if leaks:
            assert rsp == ((frame_rsp + 40) & ~0xFFFF) | 0x1FF0
            assert rsp >> 16  # kernel bits in the guest's RSP
        else:
            assert rsp == 0x1FF0


def test_delivery_from_cpl3_loads_a_null_ss_which_a_nested_frame_saves():
    """SDM §6.14.2: in IA-32e mode a delivery that changes CPL loads SS with a NULL
    selector whose RPL is the new CPL; a nested delivery at CPL 0 keeps SS and pushes it."""
    p, m = setup(cpl=3)
    m = deliver_event(p, m, Source.EXTERNAL, 0x30)
    cpu = m.cpus[0]
    assert (cpu.cs, cpu.ss) == (HYPERVISOR_CS, 0)
    m = deliver_event(p, m, Source.NMI, NMI)
    words = frame_words(m, last_frame(m))
    assert (words["cs"], words["ss"]) == (HYPERVISOR_CS, 0)
    # ... and IRET through that frame back to CPL 0 accepts the NULL SS (RPL 0 = CPL 0)
    m = iret(p, m, 0)
    assert (m.cpus[0].cpl, m.cpus[0].ss) == (0, 0)


# ---- IOPL (SDM Vol. 2 IRET, POPF, CLI, STI) ------------------------------------------------

def test_iret_and_popf_change_if_only_when_cpl_le_iopl():
    """SDM Vol. 2 IRET and POPF: "IF CPL <= IOPL THEN EFLAGS(IF) <- tempEFLAGS"; IOPL only
    changes at CPL 0. A PV kernel at CPL 3 (IOPL 0) cannot set or clear IF this way."""
    p = platform()
    user = make_cpu(p, cpl=3, rflags=RFLAGS_FIXED | IF)
    assert popped_flags(user, RFLAGS_FIXED) == RFLAGS_FIXED | IF  # IF stays set
    assert popped_flags(user, RFLAGS_FIXED | IOPL) == RFLAGS_FIXED | IF  # IOPL stays 0
    io = make_cpu(p, cpl=3, rflags=RFLAGS_FIXED | IF | IOPL)
    assert popped_flags(io, RFLAGS_FIXED) == RFLAGS_FIXED | IOPL  # CPL 3 <= IOPL 3
    kernel = make_cpu(p, cpl=0, rflags=RFLAGS_FIXED | IF)
    assert popped_flags(kernel, RFLAGS_FIXED | IOPL) == RFLAGS_FIXED | IOPL


def test_iret_at_cpl3_keeps_if():
    """SDM Vol. 2 IRET (RETURN-TO-SAME-PRIVILEGE-LEVEL): at CPL 3 with IOPL 0 the popped IF
    is ignored."""
    p, m = setup(cpl=3, rflags=RFLAGS_FIXED | IF)
    m = _push_frame(p, m, 0x401000, GUEST_CS64, RFLAGS_FIXED, GUEST_STACK.top - 8, GUEST_SS)
    assert iret(p, m, 0).cpus[0].rflags & IF


def test_cli_sti_fault_when_cpl_exceeds_iopl():
    """SDM Vol. 2 CLI/STI (protected mode, no PVI): #GP(0) when CPL > IOPL."""
    _p, m = setup(cpl=3, rflags=RFLAGS_FIXED | IF)
    assert _fault(cli, m, 0).vector == GP
    assert _fault(sti, m, 0).vector == GP
    _p, m = setup(cpl=3, rflags=RFLAGS_FIXED | IF | IOPL)
    assert not cli(m, 0).cpus[0].rflags & IF


# ---- SYSCALL / SYSRET (SDM Vol. 2; AMD APM Vol. 3) ------------------------------------------

def test_syscall_and_sysret_take_their_selectors_from_star():
    """SDM Vol. 2 SYSCALL: CS := STAR[47:32] AND FFFCH, SS := STAR[47:32] + 8; SYSRET:
    CS := STAR[63:48] + 16 OR 3 (64-bit) or STAR[63:48] OR 3 (SYSRETL), SS := STAR[63:48]
    + 8 OR 3. Xen's STAR (0xe023 << 48 | 0xe008 << 32) gives its selectors."""
    star = default_star(HYPERVISOR_CS, GUEST_SS)
    assert star == 0xE023_E008 << 32
    assert syscall_selectors(star) == (HYPERVISOR_CS, HYPERVISOR_SS)
    assert sysret_selectors(star, 8) == (GUEST_CS64, GUEST_SS)
    assert sysret_selectors(star, 4) == (0xE023, GUEST_SS)
    p, m = setup(cpl=3)
    m = syscall(p, m, 0, CodeAddr("guest", 1))
    assert (m.cpus[0].cs, m.cpus[0].ss) == (HYPERVISOR_CS, HYPERVISOR_SS)
    cpu = m.cpus[0].with_reg("rcx", 0x401000).with_reg("r11", RFLAGS_FIXED)
    m = sysret(p, m.with_cpu(0, cpu), 0)
    assert (m.cpus[0].cpl, m.cpus[0].cs, m.cpus[0].ss) == (3, GUEST_CS64, GUEST_SS)


def test_sysret_with_efer_sce_clear_is_ud():
    """SDM Vol. 2 SYSRET: "IF ... (IA32_EFER.SCE != 1) THEN #UD", checked before CPL."""
    p, m = setup(cpl=0)
    cpu = m.cpus[0]._replace(msrs=((msr.IA32_EFER, 0xD00),))
    f = _fault(sysret, p, m.with_cpu(0, cpu), 0)
    assert f.vector == UD
    f = _fault(syscall, p, m.with_cpu(0, cpu), 0, CodeAddr("hv", 1))
    assert f.vector == UD


def test_amd_sysret_gp_saves_the_non_canonical_rip_at_cpl3():
    """AMD APM Vol. 3 SYSRET: RIP is loaded from RCX and the #GP for a non-canonical RIP is
    taken at CPL 3, so its frame saves the user CS/SS and the non-canonical RIP (SDM Vol. 2
    SYSRET: Intel raises #GP(0) at CPL 0 instead)."""
    bad = 0x0000_8000_0000_0000
    p = platform(vendor="amd")
    m = make_machine(p, make_cpu(p, cpl=0).with_reg("rcx", bad))
    f = _fault(sysret, p, m, 0)
    assert f.machine is not None and f.rip == bad
    cpu = f.machine.cpus[0]
    assert (cpu.cpl, cpu.cs, cpu.ss) == (3, GUEST_CS64, GUEST_SS)
    p = platform(vendor="intel")
    m = make_machine(p, make_cpu(p, cpl=0).with_reg("rcx", bad))
    f = _fault(sysret, p, m, 0)
    assert f.rip is None and f.machine is None


# ---- MOV SS (SDM Vol. 2 MOV: "IF SS is loaded") -------------------------------------------

def test_mov_ss_checks_the_descriptor():
    """SDM Vol. 2 MOV: #GP(0) for a NULL selector except in 64-bit mode at CPL < 3 with
    RPL = CPL; #GP(selector) for RPL != CPL, not a writable data segment, DPL != CPL;
    #SS(selector) for a not-present segment."""
    load_ss_checks(GDT, None, 0, 0xE010)
    load_ss_checks(GDT, None, 0, 0)  # NULL SS at CPL 0 in 64-bit mode
    assert _fault(load_ss_checks, GDT, None, 0, 0, False).error_code == 0  # compat mode
    assert _fault(load_ss_checks, GDT, None, 3, 3).error_code == 0
    for cpl, ss, vector, code in [
        (0, 0xE008, GP, 0xE008),  # code
        (0, 0xE02B, GP, 0xE028),  # RPL 3 != CPL 0
        (3, 0xE013, GP, 0xE010),  # DPL 0 != CPL 3
        (3, 0xE01B, SS, 0xE018),  # not present
    ]:
        f = _fault(load_ss_checks, GDT, None, cpl, ss)
        assert (f.vector, f.error_code) == (vector, code)


def test_mov_to_ss_loads_the_selector():
    """SDM Vol. 2 MOV: SS := the selector once the checks pass."""
    p, m = setup(cpl=0)
    assert mov_to_ss(p, m, 0, HYPERVISOR_SS).cpus[0].ss == HYPERVISOR_SS
    assert _fault(mov_to_ss, p, m, 0, HYPERVISOR_CS).vector == GP


# ---- NMI IPIs (SDM Vol. 3A Table 11-3) ------------------------------------------------------

def test_nmi_ipi_with_self_or_all_including_self_explores_every_outcome():
    """SDM Vol. 3A Table 11-3 (Table 10-3 in older editions): delivery mode NMI is invalid
    with the Self and All Including Self shorthands. The SDM does not say what the LAPIC
    does then, so every subset of the named CPUs is an outcome; All Excluding Self and a
    destination field are valid (one outcome)."""
    p = platform(ncpus=2)
    m = make_machine(p, make_cpu(p, 0), make_cpu(p, 1))
    assert nmi_ipi_outcomes(m, 0, "self") == [[], [0]]
    assert nmi_ipi_outcomes(m, 0, "all") == [[], [0], [1], [0, 1]]
    assert nmi_ipi_outcomes(m, 0, "all-but-self") == [[1]]
    assert nmi_ipi_outcomes(m, 0, "cpu", 0) == [[0]]


# ---- No TR loaded (SDM Vol. 3A Table 9-1) ---------------------------------------------------

def test_no_tr_reads_rsp0_from_linear_address_4():
    """SDM Vol. 3A Table 9-1: after reset the TR has base 0 and limit 0FFFFH, so a stack
    switch before LTR reads RSP0 from linear 0x04 (64-bit TSS layout, SDM Figure 8-11):
    here a value software left there, the top of the primary stack."""
    p, m = setup(cpl=3, tr=None)
    top = p.region("primary").top
    # bytes 4..11: the high half of the word at 0 and the low half of the word at 8
    m = m._replace(memory=((0, (top & 0xFFFF_FFFF) << 32), (WORD, top >> 32)))
    m = deliver_event(p, m, Source.EXTERNAL, 0x30)
    f = last_frame(m)
    assert (f.vector, f.stack, f.lo) == (0x30, "primary", top - 5 * WORD)
    assert IST_WITHOUT_TSS not in m.incidents


def test_no_tr_ist_reads_page_zero_and_keeps_the_incident():
    """SDM Vol. 3A Table 9-1 and §6.14.5: IST2 of the reset TR is at linear 0x2C; never
    written, it reads 0 under the assumption `unwritten_unknown = false` (the SDM does not
    say what it holds) and the pushes fault (#PF); the model records ist-without-tss."""
    from dataclasses import replace

    p, m = setup(cpl=0, tr=None)
    p = replace(p, unwritten_unknown=False)
    m = deliver_event(p, m, Source.NMI, NMI)
    assert last_frame(m).vector == PF
    assert IST_WITHOUT_TSS in m.incidents


def test_no_tr_slot_never_written_is_an_unknown_value():
    """SDM Vol. 3A Table 9-1 (TR after reset: base 0, limit 0xFFFF) and Figure 8-11 (64-bit
    TSS: RSP0 at 0x04, IST1 at 0x24): the slot is read from linear memory the design may
    never have written, whose content neither the SDM nor the design gives. With
    `unwritten_unknown` such a slot is one unknown 64-bit value (every stack pointer is
    explored); a slot one of whose words was written combines it with an unknown half;
    without, it reads as 0."""
    from checker.symbolic import Term
    from model.x86.delivery import reset_tss_slot, unwritten_word

    _p, m = setup(cpl=0, tr=None)
    assert reset_tss_slot(m, 2) == unwritten_word(0x2C)
    assert reset_tss_slot(m, 2, unknown=False) == 0
    m = m._replace(memory=((0x28, 0x1234),))
    mixed = reset_tss_slot(m, 2)
    assert isinstance(mixed, Term) and "unwritten@0x30" in repr(mixed)


def _no_tr_double_fault_outcomes(**env: object) -> list[tuple[str, tuple[int, ...]]]:
    """Each successor of x86_conformance's no-TR CPU taking a #DF at its first boundary:
    (how the CPU runs, the vectors of the frames written)."""
    from model.system.provider import DesignProvider
    from model.system.relation import ActionKind

    system = DesignProvider().load("x86_conformance", {"seg": "no-tr"},
                                   {"double_faults": 1, **env})
    s = system.init_states()[0]
    out = []
    for a in system.actions(s):
        if a.kind == ActionKind.DF:
            m = system.next_state(s, a).machine
            assert IST_WITHOUT_TSS in m.incidents
            out.append((m.cpus[0].run.name, tuple(f.vector for f in m.frames)))
    return out


def test_no_tr_unknown_stack_pointer_is_the_default():
    """SDM Vol. 3A §9.1.1 (Table 9-1: after reset TR has base 0 and limit 0FFFFH): a
    delivery through IST4 before LTR reads its stack pointer from linear 0x3C, memory the
    design never wrote, whose content the SDM does not give. By default every value is
    explored: the #DF frame is written (on a hypervisor stack, the guest's, guest memory)
    in some outcomes, and its pushes fault (non-canonical, unmapped: shutdown during #DF)
    in others. `unwritten_unknown = false` assumes the words read 0: one outcome only, the
    pushes below 0 fault and the CPU shuts down."""
    default = _no_tr_double_fault_outcomes()
    assert len(default) > 2
    assert ("RUNNING", (DF,)) in default
    assert any(run == "SHUTDOWN" and not frames for run, frames in default)
    assert _no_tr_double_fault_outcomes(unwritten_unknown=False) == [("SHUTDOWN", ())]


# ---- the design language: `gdt`, `ldt`, `lgdt`, `mov %ax, %ss` ------------------------------

DESIGN_HEAD = """\
stack primary size 0x1000
stack guest_stack size 0x1000 owner guest
gdt main_gdt 0x08 code dpl 0 long
gdt main_gdt 0x10 data dpl 0
gdt main_gdt 0x2b data dpl 3
gdt main_gdt 0x33 code dpl 3 long
gdt other_gdt 0x08 code dpl 0 long
gdt other_gdt 0x10 data dpl 0 notpresent
ldt main_ldt 0x0f data dpl 3 16bit
cpu 0 start f rsp top(primary)
"""


def _run(tmp_path, body: str, tail: str = ""):  # type: ignore[no-untyped-def]
    import textwrap

    from model.lang.parser import parse_design
    from model.system.transition import Action, DesignSystem, Environment

    path = tmp_path / "t.design"
    code = textwrap.indent(textwrap.dedent(body), " " * 8)
    path.write_text(DESIGN_HEAD + "ENTRY(f)\n" + code + tail)
    system = DesignSystem(parse_design(path), Environment())
    [s] = system.init_states()
    for _ in range(50):
        if s.machine.cpus[0].run.value != 0:
            break
        s = system.next_state(s, Action("step", 0))
    return system, s


def test_declared_tables_reach_the_platform(tmp_path):  # type: ignore[no-untyped-def]
    """SDM §3.4.5: each `gdt`/`ldt` line is one descriptor of its table; a CPU starts on the
    first GDT and LDT declared."""
    system, _ = _run(tmp_path, "hlt\n")
    gdt = system.platform.gdt(None)
    ldt = system.platform.ldt(None)
    assert gdt is not None and gdt.name == "main_gdt"
    assert gdt.entry(0x33 >> 3) == Descriptor("code", 3, long=True, db=False)
    assert ldt is not None and ldt.entry(1) == Descriptor("data", 3, db=False)


def test_mov_ss_in_a_design_loads_and_checks(tmp_path):  # type: ignore[no-untyped-def]
    """SDM Vol. 2 MOV: `mov %ax, %ss` loads a valid selector (and opens the MOV SS shadow,
    SDM §6.8.3); after `lgdt` to a table where it is not present, the same selector is
    #SS(selector) (no IDT here: the CPU shuts down)."""
    _, s = _run(tmp_path, "movq $0x10, %rax\nmov %ax, %ss\nhlt\n")
    assert (s.machine.cpus[0].ss, s.machine.cpus[0].run.name) == (0x10, "HALTED")
    _, s = _run(tmp_path, "lgdt other_gdt\nmovq $0x10, %rax\nmov %ax, %ss\nhlt\n")
    assert s.machine.cpus[0].run.name == "SHUTDOWN"


def test_iret_in_a_design_checks_the_frame(tmp_path):  # type: ignore[no-untyped-def]
    """SDM Vol. 2 IRET: the same hand-built frame enters CPL 3 with SS 0x2b and faults
    (here: shutdown, no IDT) with SS = 0, a NULL SS going back to CPL 3."""
    frame = ("pushq ${ss}\npushq $top(guest_stack)\npushq $0x202\npushq $0x33\n"
             "leaq g(%rip), %rax\npushq %rax\niretq\n")
    guest = "GUEST(g)\n1:      jmp 1b\n"
    _, s = _run(tmp_path, frame.format(ss="0x2b"), guest)
    assert (s.machine.cpus[0].cpl, s.machine.cpus[0].cs, s.machine.cpus[0].ss) == (3, 0x33, 0x2B)
    _, s = _run(tmp_path, frame.format(ss="0"), guest)
    assert s.machine.cpus[0].run.name == "SHUTDOWN" and s.machine.cpus[0].cpl == 0


@pytest.mark.parametrize(
    ("tail", "words"),
    [
        ("gdt g 0x0 code dpl 0\n", ("non-NULL",)),
        ("gdt g 0x0c data dpl 0\n", ("TI=1",)),
        ("ldt l 0x08 data dpl 0\n", ("TI=0",)),
        ("gdt g 0x08 code\n", ("dpl",)),
        ("gdt g 0x08 code dpl 4\n", ("dpl is 0-3",)),
        ("gdt g 0x10 data dpl 0 long\n", ("long",)),
        ("gdt g 0x08 tss dpl 0\n", ("code|data|system",)),
        ("gdt g 0x08 code dpl 0\ngdt g 0x0b code dpl 3\n", ("twice",)),
        ("ENTRY(r)\n        lgdt nosuch\n", ("missing gdt",)),
        ("function g {\n    atomic {\n        send_nmi(SELF)\n", ("several outcomes",)),
    ],
)
def test_bad_descriptor_lines_are_path_line_errors(
    tmp_path, capsys, tail: str, words: tuple[str, ...],
):  # type: ignore[no-untyped-def]
    """A mistake in a `gdt`/`ldt` line or an `lgdt` is `path:line: message`, exit 2."""
    from tests.test_lang_errors import design_error

    design_error(tmp_path, capsys, tail, tail.count("\n"), *words)
