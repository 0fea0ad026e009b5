"""What a CPU may take at an instruction boundary, and what pre-empts what.

SDM Vol. 3A §6.9 "Priority Among Concurrent Exceptions and Interrupts", Table 6-2: when
several events are pending at one instruction boundary the processor services the one of
highest priority first: (1) machine check, ... (4) traps on the previous instruction
(a #DB held back by MOV SS, §6.8.3), (5) NMI, (6) maskable hardware interrupts, ...
(7-10) faults of the next instruction. §6.7.1: one NMI latch. §6.8.1/§6.8.3: IF and the
interrupt shadows gate maskable interrupts. model/x86/events.py `at_boundary`.
"""

from __future__ import annotations

from typing import Any

from model.x86.events import BoundaryEvent as E
from model.x86.events import at_boundary
from model.x86.state import Cpu, Run, Shadow
from tests.x86_helpers import FLAGS_IF, make_cpu, platform

ALL = {"machine_check": True, "double_fault": True, "nmi": True, "external": True}


def cpu(**kw: Any) -> Cpu:
    return make_cpu(platform(), **kw)


def test_nothing_pending_offers_the_instruction_and_every_arrival() -> None:
    assert at_boundary(cpu(), **ALL) == (
        E.MACHINE_CHECK, E.INSTRUCTION, E.DOUBLE_FAULT, E.NMI, E.EXTERNAL,
    )
    none = dict.fromkeys(ALL, False)
    assert at_boundary(cpu(), **none) == (E.INSTRUCTION,)


def test_a_held_db_preempts_nmi_interrupts_and_the_instruction_but_not_mc() -> None:
    """Table 6-2: a trap on the previous instruction (priority 4) is serviced before a
    pending NMI (5), maskable interrupts (6) and the next instruction (7-10); a machine
    check (1) still may come."""
    c = cpu(held_db=True, nmi_pending=True, ipi_nmi=True)
    assert at_boundary(c, **ALL) == (E.MACHINE_CHECK, E.HELD_DB)
    assert at_boundary(c, **dict(ALL, machine_check=False)) == (E.HELD_DB,)


def test_a_held_db_waits_for_the_mov_ss_shadow_to_pass() -> None:
    """§6.8.3: the #DB is held until the instruction after MOV SS has completed."""
    c = cpu(held_db=True, shadow=Shadow.MOV_SS)
    assert E.HELD_DB not in at_boundary(c, **ALL)
    assert E.INSTRUCTION in at_boundary(c, **ALL)


def test_a_latched_nmi_preempts_interrupts_and_the_instruction() -> None:
    """Table 6-2: NMI (priority 5) before maskable interrupts (6) and the instruction;
    it is taken as soon as NMIs unblock (§6.7.1)."""
    c = cpu(nmi_pending=True)
    assert at_boundary(c, **ALL) == (E.MACHINE_CHECK, E.PENDING_NMI)
    blocked = cpu(nmi_pending=True, nmi_blocked=True)
    assert E.PENDING_NMI not in at_boundary(blocked, **ALL)


def test_an_nmi_arriving_while_one_is_latched_is_lost() -> None:
    """§6.7.1: one latch; a further NMI while one is pending is not offered at all."""
    c = cpu(nmi_pending=True, nmi_blocked=True)
    assert E.NMI not in at_boundary(c, **ALL)
    assert E.NMI in at_boundary(cpu(nmi_blocked=True), **ALL)  # latched, not lost


def test_maskable_interrupts_need_if_and_no_shadow() -> None:
    """§6.8.1 (IF), §6.8.3 (STI and MOV SS shadows)."""
    assert E.EXTERNAL not in at_boundary(cpu(rflags=FLAGS_IF & ~0x200), **ALL)
    assert E.EXTERNAL not in at_boundary(cpu(shadow=Shadow.STI), **ALL)
    assert E.EXTERNAL not in at_boundary(cpu(shadow=Shadow.MOV_SS), **ALL)
    assert E.NMI in at_boundary(cpu(shadow=Shadow.STI), **ALL)


def test_a_halted_cpu_takes_events_but_runs_nothing() -> None:
    c = cpu(run=Run.HALTED)
    assert at_boundary(c, **ALL) == (E.MACHINE_CHECK, E.DOUBLE_FAULT, E.NMI, E.EXTERNAL)


def test_a_cpu_in_shutdown_takes_nothing() -> None:
    """§6.15 Interrupt 8: shutdown; the model keeps it final."""
    c = cpu(run=Run.SHUTDOWN, nmi_pending=True, held_db=True, ipi_nmi=True)
    assert at_boundary(c, **ALL) == ()


def test_an_nmi_ipi_in_flight_arrives_beside_the_instruction() -> None:
    c = cpu(ipi_nmi=True)
    assert at_boundary(c, **dict.fromkeys(ALL, False)) == (E.INSTRUCTION, E.NMI_IPI)
