"""Xen's selectors and FMASK come from the designs (`selector`, `fmask`), not from
model/x86, whose defaults are a flat GDT and an IA32_FMASK that clears nothing."""

from __future__ import annotations

from model.system.provider import DesignProvider
from model.x86.arch import IF, NMI
from model.x86.events import nmi_arrives
from model.x86.memory import read
from model.x86.state import Platform, Selectors
from tests.x86_helpers import XEN_FMASK, XEN_SELECTORS

PROVIDER = DesignProvider()


def test_the_x86_defaults_are_not_xens() -> None:
    p = Platform()
    assert p.fmask == 0
    assert p.selectors == Selectors(0x08, 0x10, 0x19, 0x33, 0x2B)
    assert [p.selectors.cs(cpl) & 3 for cpl in (0, 1, 3)] == [0, 1, 3]


def test_the_xen_designs_declare_xens_values() -> None:
    for design in ("xen_boot", "xen_ist", "xen_kexec", "xen_pv_traps", "xen_syscall"):
        system = PROVIDER.load(design, {}, {})
        assert system.platform.selectors == XEN_SELECTORS, design
    for design in ("xen_pv_traps", "xen_syscall"):  # the ones that SYSCALL
        assert PROVIDER.load(design, {}, {}).platform.fmask == XEN_FMASK
    conformance = PROVIDER.load("x86_conformance", {}, {})
    assert conformance.platform.selectors == Selectors()
    assert conformance.platform.fmask == 0


def test_a_frame_saves_the_designs_selectors() -> None:
    """An NMI in guest context (xen_ist, context=guest) saves FLAT_RING3_SS64/CS64."""
    system = PROVIDER.load("xen_ist", {"context": "guest"}, {})
    [s] = system.init_states()
    m = nmi_arrives(system.platform, s.machine, 0)
    [f] = [f for f in m.frames if f.vector == NMI]
    assert read(m, f.lo + 8) == 0xE033 and read(m, f.lo + 32) == 0xE02B
    assert m.cpus[0].rflags & IF == 0
