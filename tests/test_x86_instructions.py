"""SYSCALL, SYSRET, SWAPGS, HLT, CLI, STI and the IDT/TSS loads (SDM Vol. 2 pseudocode)."""

from __future__ import annotations

import pytest

from model.x86.arch import AC_FLAG, CF, DF_FLAG, GP, IF, NT, RF, RFLAGS_FIXED, TF, UD
from model.x86.delivery import Event, Source, deliver
from model.x86.instructions import (
    GUEST_CODE,
    cli,
    hlt,
    lidt,
    ltr,
    set_gate,
    set_gate_ist,
    set_ist,
    set_rsp0,
    sti,
    swapgs,
    syscall,
    sysret,
)
from model.x86.memory import ArchFault
from model.x86.state import CodeAddr, Gate, Run
from tests.x86_helpers import (
    GUEST_STACK,
    XEN_FMASK,
    deliver_event,
    last_frame,
    make_cpu,
    make_machine,
    platform,
    setup,
)

GUEST_FLAGS = IF | TF | DF_FLAG | AC_FLAG | NT | CF | RFLAGS_FIXED
GUEST_RSP = GUEST_STACK.top - 0x80


def test_syscall_saves_rcx_r11_masks_flags_and_keeps_the_stack():
    """SDM Vol. 2 SYSCALL: RCX := RIP; R11 := RFLAGS; RFLAGS &= ~IA32_FMASK; CPL := 0;
    RIP := IA32_LSTAR. SYSCALL does not touch RSP."""
    p, m = setup(cpl=3, rflags=GUEST_FLAGS)
    nxt = CodeAddr("guest", 9)
    m2 = syscall(p, m, 0, nxt)
    cpu = m2.cpus[0]
    assert cpu.reg("rcx") == nxt
    assert cpu.reg("r11") == GUEST_FLAGS
    assert cpu.rflags == GUEST_FLAGS & ~XEN_FMASK == CF | RFLAGS_FIXED
    assert (cpu.cpl, cpu.pc, cpu.rsp) == (0, CodeAddr("lstar_enter", 0), GUEST_RSP)
    assert m2.frames == () and m2.memory == ()


def test_syscall_without_lstar_is_ud():
    """SDM Vol. 2 SYSCALL: #UD if IA32_EFER.SCE = 0 (modelled as no LSTAR routine)."""
    p = platform(lstar=None)
    m = make_machine(p, make_cpu(p, cpl=3))
    with pytest.raises(ArchFault) as e:
        syscall(p, m, 0, CodeAddr("guest", 1))
    assert e.value.vector == UD


def _at_sysret(rcx, vendor="intel"):
    """Xen's SYSRET exit: CPL 0, guest RSP already loaded (`mov EFRAME_rsp(%rsp),%rsp`)."""
    p = platform(vendor=vendor)
    cpu = make_cpu(p, cpl=0, rsp=GUEST_RSP, pc=CodeAddr("restore_all_guest", 7))
    cpu = cpu.with_reg("rcx", rcx).with_reg("r11", IF | RF | RFLAGS_FIXED)
    return p, make_machine(p, cpu)


def test_sysret_canonical_returns_to_cpl3():
    """SDM Vol. 2 SYSRET: RIP := RCX; RFLAGS := (R11 & 3C7FD7H) | 2 (RF cleared); CPL := 3."""
    p, m = _at_sysret(0x40_1000)
    cpu = sysret(p, m, 0).cpus[0]
    assert (cpu.cpl, cpu.pc, cpu.rsp) == (3, CodeAddr(GUEST_CODE, 0), GUEST_RSP)
    assert cpu.rflags == IF | RFLAGS_FIXED
    p, m = _at_sysret(CodeAddr("guest", 9))
    assert sysret(p, m, 0).cpus[0].pc == CodeAddr("guest", 9)


def test_sysret_at_cpl3_is_gp():
    """SDM Vol. 2 SYSRET: #GP(0) if CPL != 0."""
    p, m = setup(cpl=3)
    with pytest.raises(ArchFault) as e:
        sysret(p, m, 0)
    assert (e.value.vector, e.value.error_code) == (GP, 0)


NON_CANONICAL_RCX = 0x0000_8000_0000_0000


def test_sysret_non_canonical_rcx_intel_faults_at_cpl0_onto_guest_stack():
    """SDM Vol. 2 SYSRET: "IF (operand size is 64-bit and RCX is not canonical) THEN #GP(0)"
    - raised at CPL 0 with the guest's RSP loaded, so the #GP frame is pushed onto guest
    memory (CVE-2012-0217 / XSA-7)."""
    p, m = _at_sysret(NON_CANONICAL_RCX)
    with pytest.raises(ArchFault) as e:
        sysret(p, m, 0)
    fault = e.value
    assert (fault.vector, fault.error_code) == (GP, 0)
    src = fault.machine or m
    assert src.cpus[0].cpl == 0
    m2 = deliver(p, src, 0, Event(Source.EXCEPTION, GP, 0), src.cpus[0].pc)
    f = last_frame(m2)
    assert (f.stack, f.on_guest_stack, f.from_cpl) == ("guest_stack", True, 0)


def test_sysret_non_canonical_rcx_amd_faults_at_cpl3_onto_rsp0():
    """AMD APM SYSRET (REFERENCE.md): AMD loads CPL 3 before the non-canonical RIP faults,
    so the #GP comes from CPL 3 and is delivered on TSS.RSP0."""
    p, m = _at_sysret(NON_CANONICAL_RCX, vendor="amd")
    with pytest.raises(ArchFault) as e:
        sysret(p, m, 0)
    fault = e.value
    assert fault.vector == GP and fault.machine is not None
    assert fault.machine.cpus[0].cpl == 3
    m2 = deliver(p, fault.machine, 0, Event(Source.EXCEPTION, GP, 0), m.cpus[0].pc)
    f = last_frame(m2)
    assert (f.stack, f.on_guest_stack, f.from_cpl) == ("primary", False, 3)


def test_swapgs_toggles_at_cpl0_and_faults_at_cpl3():
    """SDM Vol. 2 SWAPGS: "IF CPL != 0 THEN #GP(0)"; otherwise exchanges GS.base and
    IA32_KERNEL_GS_BASE."""
    _, m = setup(cpl=0)
    m1 = swapgs(m, 0)
    assert m1.cpus[0].gs_swapped
    assert not swapgs(m1, 0).cpus[0].gs_swapped
    _, m = setup(cpl=3)
    with pytest.raises(ArchFault) as e:
        swapgs(m, 0)
    assert (e.value.vector, e.value.error_code) == (GP, 0)


@pytest.mark.parametrize("op", [hlt, cli, sti], ids=["hlt", "cli", "sti"])
def test_privileged_at_cpl3_is_gp(op):
    """SDM Vol. 2 HLT ("#GP(0) if the current privilege level is not 0"), CLI/STI (#GP(0)
    if CPL > IOPL; IOPL is 0 here)."""
    _, m = setup(cpl=3)
    with pytest.raises(ArchFault) as e:
        op(m, 0)
    assert (e.value.vector, e.value.error_code) == (GP, 0)


@pytest.mark.parametrize("op,args", [(lidt, ("idt",)), (ltr, ("tss0",))], ids=["lidt", "ltr"])
def test_descriptor_table_loads_are_privileged(op, args):
    """SDM Vol. 2 LIDT / LTR: #GP(0) if CPL != 0."""
    _, m = setup(cpl=3)
    with pytest.raises(ArchFault):
        op(m, 0, *args)


def test_hlt_and_cli_at_cpl0():
    """SDM Vol. 2 HLT: the CPU halts until an event; CLI clears IF."""
    _, m = setup(cpl=0)
    assert hlt(m, 0).cpus[0].run is Run.HALTED
    assert not cli(m, 0).cpus[0].rflags & IF


def test_lidt_and_ltr_take_effect_on_the_next_delivery():
    """SDM §6.10 / §7.2.4: IDTR and TR are read at each delivery."""
    p, m = setup(cpl=3, idtr=None, tr=None)
    m = ltr(lidt(m.with_cpu(0, m.cpus[0]._replace(cpl=0)), 0, "idt"), 0, "tss0")
    m = m.with_cpu(0, m.cpus[0]._replace(cpl=3))
    assert last_frame(deliver_event(p, m, Source.EXTERNAL, 0x30)).stack == "primary"


def test_idt_and_tss_stores_are_seen_by_the_next_delivery():
    """SDM §6.14.1/§6.14.5/§7.7: the gate and the TSS slots are read at delivery time
    (Xen rewrites gate IST fields and TSS slots at run time)."""
    p, m = setup(cpl=0)
    m = set_gate_ist(m, "idt", 0x30, 2)
    assert last_frame(deliver_event(p, m, Source.EXTERNAL, 0x30)).stack == "nmi_ist"
    m = set_ist(m, "tss0", 2, "db_ist")
    assert last_frame(deliver_event(p, m, Source.EXTERNAL, 0x30)).stack == "db_ist"
    m = set_gate(m, "idt", 0x30, Gate("other"))
    assert deliver_event(p, m, Source.EXTERNAL, 0x30).cpus[0].pc == CodeAddr("other", 0)
    p, m = setup(cpl=3)
    m = set_rsp0(m, "tss0", "df_ist")
    assert last_frame(deliver_event(p, m, Source.EXTERNAL, 0x30)).stack == "df_ist"
