"""Machine check: MCIP and shutdown, and how #MC and NMI nest.

SDM Vol. 3B §15.3.1.2 (IA32_MCG_STATUS.MCIP: "set by the processor when a machine-check
exception is generated ... If this bit is set when a machine-check exception is generated,
the processor enters a shutdown state"; software clears it), Vol. 3A §6.15 Interrupt 18
(CR4.MCE clear: a machine check shuts down), §6.7.1 (NMI blocking does not block #MC).
"""

from __future__ import annotations

import pytest

from model.x86.arch import GP, MC, NMI
from model.x86.events import machine_check_arrives, nmi_arrives
from model.x86.instructions import clear_mcip, iret, set_cr4_mce
from model.x86.memory import ArchFault
from model.x86.state import CodeAddr, Run
from tests.x86_helpers import handler, last_frame, setup


def test_mc_sets_mcip_and_runs_handler_on_its_ist():
    """SDM §15.3.1.2: MCIP is set when the #MC is generated."""
    p, m = setup(cpl=3)
    m2 = machine_check_arrives(p, m, 0)
    cpu = m2.cpus[0]
    assert cpu.mcip and cpu.run is Run.RUNNING
    assert cpu.pc == CodeAddr(handler(MC), 0)
    f = last_frame(m2)
    assert (f.vector, f.source, f.stack, f.from_cpl) == (MC, "machine-check", "mce_ist", 3)
    assert cpu.rsp == f.lo  # #MC pushes no error code (SDM Table 6-1)


def test_second_mc_while_mcip_shuts_down():
    """SDM §15.3.1.2: a #MC while MCIP=1 puts the processor in shutdown."""
    p, m = setup(cpl=0)
    m = machine_check_arrives(p, m, 0)
    m2 = machine_check_arrives(p, m, 0)
    assert m2.cpus[0].run is Run.SHUTDOWN


def test_clear_mcip_allows_the_next_mc():
    """SDM §15.3.1.2: software clears MCIP (WRMSR IA32_MCG_STATUS) before the next #MC."""
    p, m = setup(cpl=0)
    m = machine_check_arrives(p, m, 0)
    m = clear_mcip(m, 0)
    assert not m.cpus[0].mcip
    m2 = machine_check_arrives(p, m, 0)
    assert m2.cpus[0].run is Run.RUNNING and m2.cpus[0].mcip


def test_iret_does_not_clear_mcip():
    """SDM §15.3.1.2: only software clears MCIP; returning from the handler does not."""
    p, m = setup(cpl=0)
    m = iret(p, machine_check_arrives(p, m, 0), 0)
    assert m.cpus[0].mcip
    assert machine_check_arrives(p, m, 0).cpus[0].run is Run.SHUTDOWN


def test_clear_mcip_is_privileged():
    """SDM Vol. 2 WRMSR: #GP(0) at CPL > 0."""
    _, m = setup(cpl=3, mcip=True)
    with pytest.raises(ArchFault) as e:
        clear_mcip(m, 0)
    assert e.value.vector == GP


def test_mc_inside_nmi_handler_is_delivered():
    """SDM §6.7.1: NMI blocking blocks NMIs only; a #MC is taken inside the NMI handler."""
    p, m = setup(cpl=0)
    m = nmi_arrives(p, m, 0)
    m2 = machine_check_arrives(p, m, 0)
    cpu = m2.cpus[0]
    assert cpu.pc == CodeAddr(handler(MC), 0)
    assert cpu.mcip and cpu.nmi_blocked
    assert [f.vector for f in m2.frames] == [NMI, MC]


def test_nmi_inside_mc_handler_is_delivered():
    """SDM §15.3.1.2 / §6.7.1: MCIP does not block NMIs; an NMI interrupts the #MC handler."""
    p, m = setup(cpl=0)
    m = machine_check_arrives(p, m, 0)
    m2 = nmi_arrives(p, m, 0)
    cpu = m2.cpus[0]
    assert cpu.pc == CodeAddr(handler(NMI), 0)
    assert cpu.nmi_blocked and not cpu.nmi_pending and cpu.mcip
    assert [f.vector for f in m2.frames] == [MC, NMI]


def test_mc_with_cr4_mce_clear_shuts_down():
    """SDM §6.15 Interrupt 18: "If the MCE flag is clear, a machine-check exception causes
    the processor to enter the shutdown state"."""
    p, m = setup(cpl=0)
    m = set_cr4_mce(m, 0, False)
    m2 = machine_check_arrives(p, m, 0)
    assert m2.cpus[0].run is Run.SHUTDOWN
    assert m2.frames == ()


def test_mc_does_not_restart_a_shutdown_cpu():
    """SDM §6.15 Interrupt 8: shutdown ends only on NMI, SMI, RESET or INIT - not on #MC (the
    model restarts on none of them but RESET/INIT)."""
    p, m = setup(cpl=0, run=Run.SHUTDOWN)
    assert machine_check_arrives(p, m, 0) == m
