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
    assert p.selectors == Selectors(0x08, 0x10, 0x19, 0x33, 0x2B, 0x39)
    assert [p.selectors.cs(cpl) & 3 for cpl in (0, 1, 3)] == [0, 1, 3]


XEN_GDT = {  # boot_gdt (xen/arch/x86, asm/desc.h): selector -> (kind, DPL, L)
    0xE008: ("code", 0, True), 0xE010: ("data", 0, False), 0xE023: ("code", 3, False),
    0xE02B: ("data", 3, False), 0xE033: ("code", 3, True), 0xE038: ("code", 0, False),
}


def test_the_xen_designs_declare_xens_values() -> None:
    for design in ("xen_boot", "xen_ist", "xen_kexec", "xen_pv_traps", "xen_syscall",
                   "xen_entry"):
        system = PROVIDER.load(design, {}, {})
        sel = system.platform.selectors
        assert (sel.ring0_cs, sel.ring0_ss, sel.ring3_cs, sel.ring3_ss) == (
            XEN_SELECTORS.ring0_cs, XEN_SELECTORS.ring0_ss, XEN_SELECTORS.ring3_cs,
            XEN_SELECTORS.ring3_ss), design
        gdt = system.platform.gdt(None)
        assert gdt is not None and gdt.name == "xen_gdt", design
        for selector, (kind, dpl, long) in XEN_GDT.items():
            d = gdt.entry(selector >> 3)
            assert d is not None and (d.kind, d.dpl, d.long, d.present) == (
                kind, dpl, long, True), (design, hex(selector))
    compat = PROVIDER.load("xen_pv_traps", {}, {}).platform.gdt("xen_compat_gdt")
    assert compat is not None  # boot_compat_gdt: a PV32 kernel's ring 1
    ring1_cs, ring1_ss = compat.entry(0xE019 >> 3), compat.entry(0xE021 >> 3)
    assert ring1_cs is not None and (ring1_cs.kind, ring1_cs.dpl) == ("code", 1)
    assert ring1_ss is not None and (ring1_ss.kind, ring1_ss.dpl) == ("data", 1)
    for design in ("xen_pv_traps", "xen_syscall"):  # the ones that SYSCALL
        assert PROVIDER.load(design, {}, {}).platform.fmask == XEN_FMASK
    conformance = PROVIDER.load("x86_conformance", {}, {})
    assert conformance.platform.selectors == Selectors()
    assert conformance.platform.gdt(None) is not None
    assert conformance.platform.fmask == 0


def test_a_frame_saves_the_designs_selectors() -> None:
    """An NMI in guest context (xen_ist, context=guest) saves FLAT_RING3_SS64/CS64."""
    system = PROVIDER.load("xen_ist", {"context": "guest"}, {})
    [s] = system.init_states()
    m = nmi_arrives(system.platform, s.machine, 0)
    [f] = [f for f in m.frames if f.vector == NMI]
    assert read(m, f.lo + 8) == 0xE033 and read(m, f.lo + 32) == 0xE02B
    assert m.cpus[0].rflags & IF == 0
