"""NMI IPIs: ICR destination shorthands and arrival (SDM Vol. 3A §10.6.1 "Interrupt Command
Register": delivery mode NMI, shorthands Self / All Including Self / All Excluding Self;
§6.7.1 for what an arriving NMI does)."""

from __future__ import annotations

import pytest

from model.x86.arch import NMI
from model.x86.events import ipi_destinations, nmi_ipi_arrives, send_nmi_ipi
from model.x86.state import CodeAddr, Run
from tests.x86_helpers import handler, last_frame, make_cpu, make_machine, platform


def _three_cpus(**kw):
    p = platform(ncpus=3)
    cpus = [make_cpu(p, i, **kw) for i in range(3)]
    return p, make_machine(p, *cpus)


@pytest.mark.parametrize(
    "shorthand,dest,expected",
    [
        ("self", None, [1]),
        ("all-but-self", None, [0, 2]),
        ("all", None, [0, 1, 2]),
        ("cpu", 2, [2]),
    ],
)
def test_ipi_destinations(shorthand, dest, expected):
    """SDM §10.6.1: destination shorthand (sender = CPU 1) or a physical destination."""
    _p, m = _three_cpus()
    assert ipi_destinations(m, 1, shorthand, dest) == expected


@pytest.mark.parametrize("shorthand,dest", [("self", None), ("all-but-self", None), ("cpu", 2)])
def test_send_nmi_ipi_marks_only_the_destinations(shorthand, dest):
    """SDM §10.6.1: an ICR write with delivery mode NMI sends to the chosen CPUs only; the
    IPI is in flight until it arrives (nothing is delivered at send time)."""
    _p, m = _three_cpus()
    targets = ipi_destinations(m, 1, shorthand, dest)
    m2 = send_nmi_ipi(m, 1, targets)
    for i, cpu in enumerate(m2.cpus):
        assert cpu.ipi_nmi is (i in targets)
        assert cpu.pc == m.cpus[i].pc and not cpu.nmi_blocked


def test_nmi_ipi_arrival_delivers():
    """SDM §10.6.1 + §6.7.1: the arriving NMI IPI is an NMI: delivered and NMIs blocked."""
    p, m = _three_cpus()
    m = send_nmi_ipi(m, 0, [1])
    m2 = nmi_ipi_arrives(p, m, 1)
    cpu = m2.cpus[1]
    assert not cpu.ipi_nmi and cpu.nmi_blocked
    assert cpu.pc == CodeAddr(handler(NMI), 0)
    f = last_frame(m2)
    assert (f.cpu, f.vector, f.stack) == (1, NMI, "nmi_ist1")
    assert m2.cpus[0] == m.cpus[0]


def test_nmi_ipi_arrival_latches_when_blocked():
    """SDM §6.7.1: an NMI IPI reaching a CPU already handling an NMI is held pending."""
    p, m = _three_cpus(nmi_blocked=True)
    m = send_nmi_ipi(m, 0, [1])
    m2 = nmi_ipi_arrives(p, m, 1)
    cpu = m2.cpus[1]
    assert not cpu.ipi_nmi and cpu.nmi_pending
    assert m2.frames == ()


def test_nmi_ipi_to_shutdown_cpu_is_lost():
    """Model choice (see test_x86_nmi): an NMI does not restart a shut-down CPU."""
    p, m = _three_cpus(run=Run.SHUTDOWN)
    m = send_nmi_ipi(m, 0, [2])
    m2 = nmi_ipi_arrives(p, m, 2)
    assert not m2.cpus[2].ipi_nmi
    assert m2.cpus[2].run is Run.SHUTDOWN and m2.frames == ()
