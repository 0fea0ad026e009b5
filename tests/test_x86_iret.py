"""IRETQ in 64-bit mode (SDM Vol. 2 IRET/IRETD/IRETQ, IA-32e-MODE and RETURN-TO-SAME/OUTER-
PRIVILEGE-LEVEL): it pops RIP, CS, RFLAGS, RSP, SS from wherever RSP points, whoever wrote
them, and unblocks NMIs (SDM §6.7.1)."""

from __future__ import annotations

import pytest

from model.x86.arch import GP, IF, PF, RFLAGS_FIXED, TF
from model.x86.delivery import Source
from model.x86.instructions import GUEST_CODE, iret, sysret
from model.x86.memory import ArchFault, move_rsp, push
from model.x86.state import WORD, CodeAddr
from tests.x86_helpers import (
    GUEST_CS64,
    GUEST_SS,
    GUEST_STACK,
    HYPERVISOR_CS,
    HYPERVISOR_SS,
    deliver_event,
    last_frame,
    make_cpu,
    make_machine,
    platform,
    setup,
)


def _push_frame(p, m, rip, cs, rflags, rsp, ss):
    for w in (ss, rsp, rflags, cs, rip):
        m = push(p, m, 0, w)
    return m


def test_iret_to_self_pops_a_code_built_frame():
    """SDM Vol. 2 IRET: the frame is whatever is at RSP. Xen's enable_nmis() pushes SS, RSP,
    RFLAGS, CS and a label, then IRETs to itself to unblock NMIs (SDM §6.7.1)."""
    p, m = setup(cpl=0, nmi_blocked=True, rflags=RFLAGS_FIXED)
    rsp = m.cpus[0].rsp
    label = CodeAddr("enable_nmis", 6)
    m = _push_frame(p, m, label, HYPERVISOR_CS, RFLAGS_FIXED, rsp, HYPERVISOR_SS)
    assert m.frames == ()  # code pushes are not delivery frames
    m2 = iret(p, m, 0)
    cpu = m2.cpus[0]
    assert not cpu.nmi_blocked
    assert (cpu.pc, cpu.rsp, cpu.cpl, cpu.rflags) == (label, rsp, 0, RFLAGS_FIXED)
    assert m2.memory == ()  # the popped words are garbage now


def test_iret_consumes_the_live_frame_at_rsp_and_restores_the_context():
    """SDM Vol. 2 IRET (RETURN-TO-SAME-PRIVILEGE-LEVEL, 64-bit: SS:RSP always popped):
    returning through a delivery frame restores RIP, RFLAGS (IF back on) and RSP."""
    p, m = setup(cpl=0, pc=CodeAddr("hv", 3))
    before = m.cpus[0]
    m = deliver_event(p, m, Source.EXTERNAL, 0x30)
    assert not m.cpus[0].rflags & IF
    m2 = iret(p, m, 0)
    cpu = m2.cpus[0]
    assert (cpu.pc, cpu.rsp, cpu.rflags, cpu.cpl) == (before.pc, before.rsp, before.rflags, 0)
    assert m2.frames == ()


def test_iret_after_popping_the_error_code():
    """SDM §6.13: "the error code is not popped when the IRET instruction is executed", so
    the handler moves RSP past it first; the frame above is then consumed."""
    p, m = setup(cpl=3)
    m = deliver_event(p, m, Source.EXCEPTION, GP, error_code=0)
    f = last_frame(m)
    m = move_rsp(p, m, 0, m.cpus[0].rsp + WORD)
    assert m.frames == (f,)
    m2 = iret(p, m, 0)
    assert m2.frames == ()
    assert (m2.cpus[0].cpl, m2.cpus[0].rsp) == (3, GUEST_STACK.top - 0x80)


def test_return_to_cpl3_consumes_every_from_guest_frame():
    """Model rule (issue 3): returning to guest context consumes the frame that recorded the
    guest's context even when the IRET goes through another frame (SDM Vol. 2 IRET
    RETURN-TO-OUTER-PRIVILEGE-LEVEL ends the ring-0 episode)."""
    p, m = setup(cpl=3)
    m = deliver_event(p, m, Source.EXTERNAL, 0x30)
    guest_frame = last_frame(m)
    assert guest_frame.from_cpl == 3
    # The handler builds a fresh return frame lower on the primary stack and IRETs.
    m = move_rsp(p, m, 0, m.cpus[0].rsp - 0x100)
    ret = CodeAddr("guest", 2)
    m = _push_frame(p, m, ret, GUEST_CS64, IF | RFLAGS_FIXED, GUEST_STACK.top - 8, GUEST_SS)
    m2 = iret(p, m, 0)
    assert m2.cpus[0].cpl == 3 and m2.cpus[0].pc == ret
    assert m2.frames == ()


def test_return_to_cpl0_keeps_from_guest_frames():
    """SDM Vol. 2 IRET RETURN-TO-SAME-PRIVILEGE-LEVEL + model rule (issue 3): a nested ring-0
    IRET leaves the outer from-guest frame live."""
    p, m = setup(cpl=3)
    m = deliver_event(p, m, Source.EXTERNAL, 0x30)
    outer = last_frame(m)
    m = deliver_event(p, m, Source.NMI, 2)
    m2 = iret(p, m, 0)
    assert m2.frames == (outer,)


def test_sysret_consumes_from_guest_frames():
    """Model rule (issue 3): SYSRET returns to the guest without popping; frames that
    recorded guest context are consumed (SDM Vol. 2 SYSRET: CPL := 3)."""
    p, m = setup(cpl=3)
    m = deliver_event(p, m, Source.EXTERNAL, 0x30)
    m = m.with_cpu(0, m.cpus[0].with_reg("rcx", 0x40_0000))
    m2 = sysret(p, m, 0)
    assert m2.frames == () and m2.cpus[0].pc == CodeAddr(GUEST_CODE, 0)


def test_iret_to_more_privileged_cs_is_gp_but_unblocks_nmis():
    """SDM Vol. 2 IRET: "IF return code segment selector RPL < CPL THEN #GP(selector)";
    SDM §6.7.1: NMIs are unblocked even so."""
    p, m = setup(cpl=3, nmi_blocked=True, rsp=GUEST_STACK.top - 0x80)
    m = _push_frame(p, m, CodeAddr("x", 0), HYPERVISOR_CS, RFLAGS_FIXED, 0, HYPERVISOR_SS)
    with pytest.raises(ArchFault) as e:
        iret(p, m, 0)
    assert e.value.vector == GP
    assert not e.value.machine.cpus[0].nmi_blocked


def test_iret_to_non_canonical_rip_is_gp():
    """SDM Vol. 2 IRET (IA-32e): "IF tempRIP is non-canonical THEN #GP(0)"."""
    p, m = setup(cpl=0, nmi_blocked=True)
    m = _push_frame(p, m, 0x0000_8000_0000_0000, GUEST_CS64, RFLAGS_FIXED, 0, GUEST_SS)
    with pytest.raises(ArchFault) as e:
        iret(p, m, 0)
    assert (e.value.vector, e.value.error_code) == (GP, 0)
    assert not e.value.machine.cpus[0].nmi_blocked


def test_iret_from_unmapped_stack_faults_with_nmis_unblocked():
    """SDM Vol. 2 IRET: a stack access that faults raises it (#PF here); §6.7.1: NMIs are
    unblocked by the faulting IRET."""
    p = platform()
    m = make_machine(p, make_cpu(p, cpl=0, rsp=p.region("primary").top, nmi_blocked=True))
    with pytest.raises(ArchFault) as e:
        iret(p, m, 0)
    assert e.value.vector == PF
    assert not e.value.machine.cpus[0].nmi_blocked


def test_iret_restores_tf():
    """SDM Vol. 2 IRET: RFLAGS is restored from the frame (delivery had cleared TF)."""
    p, m = setup(cpl=0, rflags=IF | TF | RFLAGS_FIXED)
    m = deliver_event(p, m, Source.EXTERNAL, 0x30)
    assert not m.cpus[0].rflags & TF
    assert iret(p, m, 0).cpus[0].rflags & TF
