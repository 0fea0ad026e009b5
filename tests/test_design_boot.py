"""model/designs/xen_boot.design (seed 002, "Boot time trap handling"): the scenarios behind
properties/boot.toml, so that every `holds` there is known not to be vacuous (NMIs, machine
checks and reserved vectors really are delivered to real handlers after boot in
`proposed`, both CPUs really reach their idle loop), the environment choices the file
makes are fair to both orders, and the language feature the design needed (copy_idt)
works.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from checker.errors import InputError
from checker.explore import Check, explore
from checker.verdict import Kind, Verdict
from model.lang.parser import parse_design
from model.system.interp import SysState
from model.system.provider import DesignProvider
from model.system.transition import DesignSystem, Environment
from model.x86.state import Gate, Run

PROVIDER = DesignProvider()
QUIET = {"cpus": 2, "quiet_without_idt": True}
RESERVED = 0x1F  # the reserved vector properties/boot.toml raises through the LAPIC


def load(boot: str, **env: Any) -> DesignSystem:
    return PROVIDER.load("xen_boot", {"boot": boot}, {**QUIET, **env})


def verdict(
    system: DesignSystem, kind: str, predicate: Callable[[Mapping[str, Any]], Any]
) -> Verdict:
    done = explore(system, [Check(Kind(kind), predicate)])
    return done.outcomes[0].verdict


def find_state(system: DesignSystem, wanted: Callable[[SysState], bool]) -> SysState | None:
    """The first reachable state (breadth-first) that satisfies `wanted`, if any."""
    init = system.init_states()
    seen = set(init)
    queue = deque(init)
    while queue:
        s = queue.popleft()
        if wanted(s):
            return s
        for a in system.actions(s):
            t = system.next_state(s, a)
            if t not in seen:
                seen.add(t)
                queue.append(t)
    return None


def booted(system: DesignSystem) -> SysState:
    """The state after both CPUs have booted with no event: the BSP has freed the init
    sections and both CPUs idle."""
    [s] = system.init_states()
    for _ in range(1000):
        actions = system.actions(s)
        if not actions:
            return s
        s = system.next_state(s, actions[0])
    pytest.fail("the boot did not settle")


# -- both orders boot ---------------------------------------------------------------------


@pytest.mark.parametrize("boot", ["old", "proposed"])
def test_both_cpus_boot_to_their_idle_loop_on_their_own_idt_and_tss(boot: str) -> None:
    system = load(boot)
    s = booted(system)
    v = system.vocabulary(s)
    assert s.init_freed
    assert v["cpu_online"] == [0, 1]
    for c in v["cpu"]:
        assert c["halted"] and c["routine"] == "startup_cpu_idle_loop" and c["interrupts_enabled"]
        assert c["idt"] == f"idt_tables[{c['id']}]" and c["tss"] == f"init_tss[{c['id']}]"
    assert not v["incidents"]
    # The AP's IDT is the BSP's memcpy() of the master, gates and ISTs alike.
    assert s.machine.idt("idt_tables[1]").gates == s.machine.idt("idt_tables[0]").gates  # type: ignore[union-attr]


def _init_routines(system: DesignSystem) -> set[str]:
    return {n for n, r in system.design.routines.items() if r.section.startswith(".init")}


def test_old_leaves_ignore_int_in_the_reserved_vectors_of_every_idt() -> None:
    system = load("old")
    s = booted(system)
    init = _init_routines(system)
    assert {"ignore_int", "start_bsp", "__start_xen", "early_page_fault"} <= init
    for name in ("idt_tables[0]", "idt_tables[1]"):
        idt = s.machine.idt(name)
        assert idt is not None
        stale = {v for v, g in idt.gates if g.routine in init}
        assert stale == set(range(20, 32)), name


def test_proposed_boots_with_no_gate_into_the_init_sections() -> None:
    system = load("proposed")
    s = booted(system)
    init = _init_routines(system)
    for name in ("idt_tables[0]", "idt_tables[1]"):
        idt = s.machine.idt(name)
        assert idt is not None
        assert {v for v, _ in idt.gates} == set(range(32)), name
        assert not [v for v, g in idt.gates if g.routine in init], name
        assert all(idt.gate(v).routine == "entry_reserved" for v in [9, 15, *range(20, 32)])  # type: ignore[union-attr]
        assert {v: idt.gate(v).ist for v in (2, 8, 18)} == {2: 2, 8: 1, 18: 3}  # type: ignore[union-attr]


# -- the holds-properties are not vacuous -------------------------------------------------


@pytest.mark.parametrize("cpu", [0, 1])
def test_proposed_delivers_nmis_on_the_nmi_ist_after_boot(cpu: int) -> None:
    system = load("proposed", nmi=1)
    assert verdict(
        system, "reachable",
        lambda v: v["cpu_online"][1] and v["running"](cpu, "nmi")
        and v["frames_on"](f"nmi_ist[{cpu}]") == 1 and v["cpu"][cpu]["idt"] == f"idt_tables[{cpu}]",
    ) is Verdict.HOLDS


@pytest.mark.parametrize("cpu", [0, 1])
def test_proposed_delivers_machine_checks_to_do_machine_check(cpu: int) -> None:
    system = load("proposed", mce=1)
    assert verdict(
        system, "reachable",
        lambda v: v["running"](cpu, "do_machine_check") and v["cpu"][cpu]["mcip"]
        and v["frames_on"](f"mce_ist[{cpu}]") == 1,
    ) is Verdict.HOLDS


def test_proposed_nmi_can_interrupt_the_machine_check_handler() -> None:
    system = load("proposed", nmi=1, mce=1)
    assert verdict(
        system, "reachable",
        lambda v: v["running"](1, "nmi") and v["frames_on"]("mce_ist[1]") == 1
        and v["frames_on"]("nmi_ist[1]") == 1,
    ) is Verdict.HOLDS


@pytest.mark.parametrize("cpu", [0, 1])
def test_proposed_reserved_vector_reaches_do_reserved_trap_after_init_is_freed(cpu: int) -> None:
    system = load("proposed", external=1, external_vectors=[RESERVED])
    s = find_state(
        system,
        lambda s: s.init_freed and s.machine.cpus[cpu].pc.routine == "do_reserved_trap",
    )
    assert s is not None
    assert [f.vector for f in s.machine.frames if f.cpu == cpu] == [RESERVED]


def test_old_reserved_vector_before_the_free_locks_the_cpu_up_in_ignore_int() -> None:
    # "the previous behaviour wasn't much more useful in this regard, by locking up a pcpu"
    system = load("old", external=1, external_vectors=[RESERVED])
    s = find_state(system, lambda s: s.machine.cpus[0].pc.routine == "ignore_int")
    assert s is not None and not s.init_freed


# -- the environment choices are fair to both orders --------------------------------------


def test_proposed_machine_checks_without_quiet_never_shut_down() -> None:
    """old-ap-order-triple-faults turns quiet_without_idt off (it would hide the #MC in the
    AP's empty-IDTR window); with the same environment the proposed order never shuts down,
    i.e. it never sets CR4.MCE while IDTR is empty."""
    system = PROVIDER.load("xen_boot", {"boot": "proposed"}, {"cpus": 2, "mce": 1})
    assert verdict(system, "never", lambda v: v["any_shutdown"]) is Verdict.HOLDS
    assert find_state(
        system, lambda s: any(c.cr4_mce and c.idtr is None for c in s.machine.cpus)
    ) is None


def test_old_ap_sets_cr4_mce_while_its_idtr_is_empty() -> None:
    system = PROVIDER.load("xen_boot", {"boot": "old"}, {"cpus": 2})
    s = find_state(system, lambda s: s.machine.cpus[1].cr4_mce and s.machine.cpus[1].idtr is None)
    assert s is not None


def test_old_bsp_nmi_in_the_all_zero_idt_triple_faults_despite_quiet() -> None:
    """The old BSP loads idt_table before start_bsp fills it: a loaded, all-zero table is
    not an empty IDTR, so quiet_without_idt lets the NMI in: #GP, #GP, #DF, shutdown."""
    system = load("old", nmi=1)
    s = find_state(system, lambda s: s.machine.cpus[0].run is Run.SHUTDOWN)
    assert s is not None
    assert s.machine.cpus[0].idtr == "idt_tables[0]"
    assert s.vars[system.layout.var_index["vec"]] in (0, 1, 2)  # ignore_int not yet in NMI's gate


# -- copy_idt --------------------------------------------------------------------------------

COPY = """\
cpus 1
idt master limit 64
    gate NMI nmi_handler interrupt ist 2
    gate #MC mc_handler
end
idt copy limit 32
    gate 0x30 other
end
cpu 0 start main
function main {
    copy_idt(copy, master);
    stop();
}
nmi_handler:
        iretq
mc_handler:
        iretq
other:
        iretq
"""


def test_copy_idt_copies_every_gate_in_one_step_and_keeps_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "t.design"
    path.write_text(COPY)
    system = DesignSystem(parse_design(path, {}), Environment())
    [s] = system.init_states()
    [a] = system.actions(s)
    s = system.next_state(s, a)
    copy = s.machine.idt("copy")
    assert copy is not None and copy.limit == 32
    assert copy.gates == ((2, Gate("nmi_handler", "interrupt", 0, 2)), (18, Gate("mc_handler")))
    assert s.machine.idt("master") == system.init_states()[0].machine.idt("master")


@pytest.mark.parametrize(
    "call, message",
    [
        ("copy_idt(copy, nowhere)", "copy_idt needs an idt here, and 'nowhere' is not one"),
        ("copy_idt(copy)", "copy_idt takes 2-2 arguments, got 1"),
    ],
)
def test_copy_idt_errors_name_the_line(tmp_path: Path, call: str, message: str) -> None:
    path = tmp_path / "t.design"
    path.write_text(COPY.replace("copy_idt(copy, master)", call))
    with pytest.raises(InputError) as err:
        parse_design(path, {})
    assert message in str(err.value)
    assert err.value.line == 11


def test_copy_idt_is_documented() -> None:
    doc = (Path(__file__).resolve().parent.parent / "docs" / "design-language.md").read_text()
    assert "`copy_idt(DST, SRC)`" in doc
