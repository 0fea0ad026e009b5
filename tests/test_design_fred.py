"""model/designs/xen_fred.design (issue 17): every variant loads, its frame offsets are
FRED's (FRED spec §5.2, model/x86/fred.py), its `fred` block is what Xen's init_fred()
writes (xen/arch/x86/traps-setup.c), and the boot variants really start without FRED."""

from __future__ import annotations

from pathlib import Path

import pytest

from model.lang.parser import design_knobs, parse_design
from model.system.transition import DesignSystem, Environment
from model.x86 import fred, msr
from model.x86.state import CodeAddr

DESIGN = Path(__file__).resolve().parent.parent / "model" / "designs" / "xen_fred.design"


def test_every_knob_value_loads() -> None:
    """Each knob's every value (the others at their defaults) parses and starts."""
    _, knobs = design_knobs(DESIGN)
    for knob, values in knobs.items():
        for value in values:
            system = DesignSystem(parse_design(DESIGN, {knob: value}), Environment())
            assert system.init_states(), (knob, value)


def test_frame_offsets_are_freds() -> None:
    """FRED spec §5.2: error code, RIP, CS, RFLAGS, RSP, SS word, event data from RSP."""
    text = DESIGN.read_text()
    for name, offset in (("error_code", fred.OFF_ERROR_CODE), ("rip", fred.OFF_RIP),
                         ("cs", fred.OFF_CS), ("rflags", fred.OFF_RFLAGS),
                         ("rsp", fred.OFF_RSP), ("ss", fred.OFF_SS),
                         ("edata", fred.OFF_EVENT_DATA)):
        line = f"const FRED_{name}"
        found = [ln for ln in text.splitlines() if ln.startswith(line + " ")]
        assert found and int(found[0].split("=")[1]) == offset, name


def test_the_fred_block_is_init_freds() -> None:
    """init_fred(): IA32_FRED_CONFIG = entry_FRED_R3, RSP0 the primary stack's top, RSP1
    poison (0 here), RSP2/RSP3 the #MC and #DF pages, STK_LVLS #MC 2 and #DF 3; CR4.FRED
    set; the ring-0 entry is entry_FRED_R0."""
    system = DesignSystem(parse_design(DESIGN), Environment())
    p = system.platform
    msrs = dict(p.fred_msrs[0])
    assert msrs[msr.IA32_FRED_CONFIG] == CodeAddr("entry_FRED_R3", 0)
    assert msrs[msr.IA32_FRED_RSP0] == p.region("primary[0]").top
    assert msr.IA32_FRED_RSP1 not in msrs
    assert msrs[msr.IA32_FRED_RSP2] == p.region("mce_stack[0]").top
    assert msrs[msr.IA32_FRED_RSP3] == p.region("df_stack[0]").top
    config = fred.config_from_msrs(msrs)
    assert config.vector_level(18) == 2 and config.vector_level(8) == 3
    assert config.vector_level(2) == 0 and config.vector_level(1) == 0
    assert dict(p.fred_ring0) == {"entry_FRED_R3": "entry_FRED_R0"}
    assert all(s.machine.cpus[0].fred for s in system.init_states())


@pytest.mark.parametrize("boot", ["xen", "cr4-first"])
def test_boot_variants_start_on_the_idt_and_write_the_msrs(boot: str) -> None:
    """The boot variants start with CR4.FRED clear and no FRED MSR set; Xen's order
    writes them all before setting CR4.FRED, and then they equal the `running` block's."""
    system = DesignSystem(parse_design(DESIGN, {"boot": boot}), Environment())
    [s] = system.init_states()
    assert not s.machine.cpus[0].fred and s.machine.cpus[0].idtr == "boot_idt[0]"
    assert not dict(system.platform.fred_msrs[0])
    for _ in range(40):
        [a] = system.actions(s)
        s = system.next_state(s, a)
        if s.machine.cpus[0].pc.routine == "xen_idle":
            break
    cpu = s.machine.cpus[0]
    assert cpu.fred
    running = DesignSystem(parse_design(DESIGN), Environment()).platform
    assert dict(cpu.msrs) == dict(running.fred_msrs[0])
