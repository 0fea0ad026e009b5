"""NMI handling: blocking until the next IRET, the one-deep latch, HLT wake-up.

SDM Vol. 3A §6.7.1 "Handling Multiple NMIs": "While an NMI interrupt handler is executing,
the processor blocks delivery of subsequent NMIs until the next execution of the IRET
instruction ... A hardware NMI that arrives while NMIs are blocked is held pending (one)";
"the IRET that unblocks can be that of any handler, and it unblocks even if it faults".
"""

from __future__ import annotations

from model.x86.arch import BP, GP, NMI
from model.x86.delivery import Source, deliver
from model.x86.events import (
    can_take_nmi,
    deliver_pending_nmi,
    nmi_arrives,
    pending_nmi_due,
)
from model.x86.instructions import hlt, iret, iret_faulting
from model.x86.state import CodeAddr, Run
from tests.x86_helpers import (
    deliver_event,
    frame_words,
    handler,
    last_frame,
    setup,
)


def _in_nmi_handler():
    p, m = setup(cpl=0, pc=CodeAddr("hv", 4))
    return p, nmi_arrives(p, m, 0)


def test_nmi_delivery_blocks_nmis():
    """SDM §6.7.1: NMIs are blocked from the NMI's delivery to the next IRET."""
    _p, m = _in_nmi_handler()
    cpu = m.cpus[0]
    assert cpu.nmi_blocked and not cpu.nmi_pending
    assert not can_take_nmi(cpu)
    assert cpu.pc == CodeAddr(handler(NMI), 0)
    f = last_frame(m)
    assert (f.vector, f.source, f.stack) == (NMI, "nmi", "nmi_ist")
    assert frame_words(m, f)["rip"] == CodeAddr("hv", 4)


def test_nmi_while_blocked_is_latched_not_delivered():
    """SDM §6.7.1: an NMI arriving while blocked is held pending."""
    p, m = _in_nmi_handler()
    m2 = nmi_arrives(p, m, 0)
    assert m2.cpus[0].nmi_pending
    assert m2.frames == m.frames and m2.memory == m.memory
    assert m2.cpus[0].pc == m.cpus[0].pc


def test_second_nmi_while_one_pending_is_lost():
    """SDM §6.7.1: the latch holds one NMI; further NMIs while one is pending are lost."""
    p, m = _in_nmi_handler()
    m1 = nmi_arrives(p, m, 0)
    m2 = nmi_arrives(p, m1, 0)
    assert m2 == m1
    assert m2.cpus[0].nmi_pending is True


def test_iret_unblocks_nmis_and_returns():
    """SDM §6.7.1 + Vol. 2 IRET: the handler's IRET unblocks NMIs and resumes the
    interrupted code on its own stack."""
    p, m = setup(cpl=0, pc=CodeAddr("hv", 4))
    before = m.cpus[0]
    m2 = iret(p, nmi_arrives(p, m, 0), 0)
    cpu = m2.cpus[0]
    assert not cpu.nmi_blocked
    assert (cpu.pc, cpu.rsp, cpu.cpl, cpu.rflags) == (before.pc, before.rsp, 0, before.rflags)
    assert m2.frames == ()


def test_faulting_iret_still_unblocks():
    """SDM §6.7.1: NMIs are unblocked by the IRET even if it faults (the #GP is delivered
    from the unblocked state)."""
    p, m = _in_nmi_handler()
    fault = iret_faulting(m, 0)
    assert fault.vector == GP and fault.machine is not None
    assert not fault.machine.cpus[0].nmi_blocked
    m2 = deliver(p, fault.machine, 0, fault_event(fault), m.cpus[0].pc)
    assert not m2.cpus[0].nmi_blocked
    assert last_frame(m2).vector == GP


def fault_event(fault):
    from model.x86.delivery import Event

    return Event(Source.EXCEPTION, fault.vector, fault.error_code)


def test_iret_of_bp_handler_nested_in_nmi_handler_unblocks():
    """SDM §6.7.1: "the next IRET" is any IRET - here that of an INT3 (#BP) handler running
    inside the NMI handler - so NMIs unblock while the NMI handler is still running."""
    p, m = _in_nmi_handler()
    nmi_frame = last_frame(m)
    m = deliver_event(p, m, Source.INT3, BP, return_pc=CodeAddr(handler(NMI), 5))
    bp_frame = last_frame(m)
    assert bp_frame.stack == "nmi_ist"  # no IST, no CPL change: the NMI handler's stack
    assert m.cpus[0].nmi_blocked
    m = iret(p, m, 0)
    cpu = m.cpus[0]
    assert not cpu.nmi_blocked
    assert cpu.pc == CodeAddr(handler(NMI), 5)  # still inside the NMI handler
    assert m.frames == (nmi_frame,)
    assert not m.frames[0].clobbered


def test_pending_nmi_due_after_unblock():
    """SDM §6.7.1: the latched NMI is delivered once the IRET unblocks NMIs."""
    p, m = _in_nmi_handler()
    m = nmi_arrives(p, m, 0)
    assert not pending_nmi_due(m.cpus[0])
    m = iret(p, m, 0)
    assert pending_nmi_due(m.cpus[0])
    m = deliver_pending_nmi(p, m, 0)
    cpu = m.cpus[0]
    assert (cpu.nmi_pending, cpu.nmi_blocked) == (False, True)
    assert last_frame(m).vector == NMI
    assert not pending_nmi_due(cpu)


def test_hlt_woken_by_nmi_saves_pc_after_hlt():
    """SDM Vol. 2 HLT: "An enabled interrupt (including NMI and SMI) ... will resume
    execution"; the saved RIP is the instruction after HLT (the caller advanced the pc)."""
    p, m = setup(cpl=0, pc=CodeAddr("idle", 3))
    m = hlt(m, 0)
    after_hlt = CodeAddr("idle", 4)
    m = m.with_cpu(0, m.cpus[0]._replace(pc=after_hlt))
    assert m.cpus[0].run is Run.HALTED
    m = nmi_arrives(p, m, 0)
    cpu = m.cpus[0]
    assert cpu.run is Run.RUNNING and cpu.pc == CodeAddr(handler(NMI), 0)
    assert frame_words(m, last_frame(m))["rip"] == after_hlt
    m = iret(p, m, 0)
    assert (m.cpus[0].pc, m.cpus[0].run) == (after_hlt, Run.RUNNING)


def test_blocked_nmi_does_not_wake_hlt():
    """SDM §6.7.1 + Vol. 2 HLT: a latched (blocked) NMI is not delivered, so HLT stays."""
    p, m = _in_nmi_handler()
    m = hlt(m, 0)
    m = nmi_arrives(p, m, 0)
    assert m.cpus[0].run is Run.HALTED and m.cpus[0].nmi_pending


def test_nmi_to_shutdown_cpu_is_ignored():
    """Model choice (state.Run.SHUTDOWN): only RESET/INIT restart a shut-down CPU. The SDM
    (§6.15 Interrupt 8) lets an NMI end shutdown unless it happened inside an NMI handler;
    the model takes the platform's usual reset-on-shutdown instead."""
    p, m = setup(cpl=0, run=Run.SHUTDOWN)
    assert nmi_arrives(p, m, 0) == m
    assert not can_take_nmi(m.cpus[0])
