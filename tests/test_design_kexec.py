"""model/designs/xen_kexec.design (seed 003, "x86/kexec: Change NMI and MCE handling on kexec
path") and properties/kexec_crash.toml.

- Every property keeps its verdict on 2, 3 and 4 CPUs (4 CPUs without environment events:
  the interleavings of three shot-down CPUs with nested handlers are too many for CI).
- No `holds` is vacuous: in the very exploration that decides it, kexec is reached from
  both crash contexts, the other CPUs run do_nmi_crash and acknowledge, the counter and
  the cpumask really start non-zero, trap_nop and the #MC handler run on the crashing CPU,
  and the `final` properties have final states to judge.
- Every violated property's counterexample ends on the step that does the damage.
- The race the model finds in the fixed patch and in later Xen alike: a recoverable
  machine check inside nmi_crash returns with IRET, which unblocks NMIs; an NMI that then
  arrives between `crash_save_done = 1` and the acknowledgement re-enters do_nmi_crash,
  which skips the acknowledgement and halts for good, so the crashing CPU waits the full
  second and reports the CPU as not shot down although it saved its state.
- The features the design needed: per-CPU environment budgets, set_gate with an IST.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from checker.errors import CheckerError
from checker.explore import Check, Exploration, explore
from checker.spec import Property, read_property_file
from checker.verdict import Kind, Verdict
from model.lang.parser import parse_design
from model.system.provider import DesignProvider, environment_of
from model.system.transition import DesignSystem

ROOT = Path(__file__).resolve().parent.parent
# The file's liveness properties are tested in tests/test_liveness.py.
PROPERTIES = tuple(
    p for p in read_property_file(ROOT / "properties" / "kexec_crash.toml").properties
    if not p.kind.liveness
)
PROVIDER = DesignProvider()
DESIGN = ROOT / "model" / "designs" / "xen_kexec.design"

Vocabulary = Mapping[str, Any]
Predicate = Callable[[Vocabulary], Any]


def prop(name: str) -> Property:
    [p] = [p for p in PROPERTIES if p.name == name]
    return p


def load(variant: Mapping[str, str], environment: Mapping[str, Any]) -> DesignSystem:
    return PROVIDER.load("xen_kexec", variant, environment)


def crashed_from(v: Vocabulary, entry: str) -> bool:
    """CPU 0 crashed from the watchdog's NMI handler (the watchdog's NMI frame is live on
    its NMI IST stack) or from ordinary code."""
    in_nmi = any(
        f["cpu"] == 0 and f["source"] == "nmi" and f["stack"] == "nmi_ist[0]" for f in v["frames"]
    )
    return in_nmi if entry == "watchdog" else not in_nmi


# What must be reachable in the exploration that decides each property (on any CPU count).
WITNESSES: dict[str, list[Predicate]] = {
    "v1-fixed-all-cpus-acknowledge": [
        lambda v: v["waiting_for_crash_ipi"] == v["ncpus"] - 1,
        lambda v: v["running"](1, "do_nmi_crash"),
        lambda v: v["waiting_for_crash_ipi"] == 0 and v["kexec_started"]
        and all(v["crash_save_done"][c] for c in range(1, v["ncpus"])),
    ],
    "cpumask-all-cpus-acknowledge": [
        lambda v: v["waiting_to_crash"] == (1 << v["ncpus"]) - 2,
        lambda v: v["running"](1, "do_nmi_crash"),
        lambda v: v["waiting_to_crash"] == 0 and v["kexec_started"],
    ],
    "shot-down-cpus-end-halted": [
        lambda v: all(c["halted"] for c in v["cpus"]) and v["kexec_started"],
    ],
    "kexec-never-triple-faults": [
        lambda v: v["kexec_started"] and crashed_from(v, "panic"),
        lambda v: v["kexec_started"] and crashed_from(v, "watchdog"),
        # an NMI on the crashing CPU runs trap_nop, from either context
        lambda v: v["running"](0, "trap_nop") and crashed_from(v, "panic"),
        lambda v: v["running"](0, "trap_nop") and crashed_from(v, "watchdog"),
    ],
}
# With events on the shot-down CPU (the file's environments, not the 4-CPU runs).
WITNESSES_WITH_EVENTS: dict[str, list[Predicate]] = {
    "v1-fixed-all-cpus-acknowledge": [
        # CPU 1's NMI lands in its regular handler and the IPI is latched behind it ...
        lambda v: v["running"](1, "do_nmi") and v["cpus"][1]["nmi_pending"],
        # ... or it lands inside nmi_crash before the acknowledgement and is latched there
        lambda v: v["running"](1, "do_nmi_crash") and v["cpus"][1]["nmi_pending"]
        and not v["crash_save_done"][1],
    ],
    "kexec-never-triple-faults": [
        # a machine check on the crashing CPU during the shootdown, and one after
        # machine_kexec() gave #MC the nop handler
        lambda v: v["running"](0, "do_machine_check") and v["crash_notes_saved"][0],
        lambda v: v["running"](0, "trap_nop") and v["cpus"][0]["mcip"],
    ],
}


def groups() -> list[tuple[Mapping[str, str], Mapping[str, Any], list[Property]]]:
    """The file's properties grouped by (variant, environment), as the checker does."""
    out: list[tuple[Mapping[str, str], Mapping[str, Any], list[Property]]] = []
    for p in PROPERTIES:
        for variant, env, members in out:
            if variant == p.variant and env == p.environment:
                members.append(p)
                break
        else:
            out.append((p.variant, p.environment, [p]))
    return out


def scaled(
    variant: Mapping[str, str], environment: Mapping[str, Any], cpus: int
) -> tuple[dict[str, str], dict[str, Any]] | None:
    """The group's variant and environment on `cpus` CPUs (None: not run at that size).

    Per-CPU budget lists keep their entries for CPU 0 and CPU 1 (the CPUs other than
    CPU 0 are interchangeable) and give the others none. Beyond the file's own CPU count
    a machine check nested anywhere is dropped. On 4 CPUs only the counter's properties
    run (patch-v1 and patch-v1-fixed: the acknowledgements and the halted CPUs), with no
    environment event and from ordinary code, to keep CI fast: the crashing CPU's
    properties do not depend on how many CPUs it shoots down, and cpumask differs from
    patch-v1-fixed only in how the acknowledgement is counted.
    """
    env: dict[str, Any] = dict(environment)
    var = dict(variant)
    for key, value in environment.items():
        if isinstance(value, list):
            env[key] = (value + [0] * cpus)[:2] + [0] * (cpus - 2)
    if cpus > environment["cpus"]:
        env.pop("mce", None)
    if cpus == 4:
        about_shot_down_cpus = environment.get("nmi", [0])[0] == 0 and "mce" not in environment
        if not about_shot_down_cpus or var["patch"] not in ("patch-v1", "patch-v1-fixed"):
            return None  # cpumask and the crashing CPU's properties: 2 and 3 CPUs only
        env.pop("nmi", None)
        var["crash_from"] = "panic"
    env["cpus"] = cpus
    return var, env


def damage(system: DesignSystem, done: Exploration, index: int) -> str:
    trace = done.outcomes[index].trace
    assert trace is not None
    return str(system.describe_action(trace.states[-2], trace.actions[-1]).get("damage", ""))


# -- the file ---------------------------------------------------------------------------------


def test_the_file_ships_the_issue_s_properties_and_verdicts() -> None:
    assert {p.name: p.expect.value for p in PROPERTIES} == {
        "v1-shootdown-waits-full-timeout": "violated",
        "v1-fixed-all-cpus-acknowledge": "holds",
        "cpumask-all-cpus-acknowledge": "holds",
        "kexec-never-triple-faults": "holds",
        "crashing-cpu-not-stuck-in-nmi": "holds",
        "ist-enabled-crash-path-clobbers": "violated",
        "crash-kernel-starts-with-nmis-unblocked": "holds",
        "crash-kernel-starts-with-nmis-unblocked-without-enable-nmis": "violated",
        "shot-down-cpus-end-halted": "holds",
        # vacuity companions and the invariants mutation testing asked for (issue 13 item 6)
        "v1-fixed-crash-kernel-starts": "holds",
        "cpumask-crash-kernel-starts": "holds",
        "event-arrives-on-crashing-cpu": "holds",
        "crash-kernel-starts-under-nmi-and-mce": "holds",
        "shootdown-raises-no-exception": "holds",
        "crash-raises-no-exception": "holds",
        "crash-kernel-starts-with-mce-on-trap-nop": "holds",
        "watchdog-flag-consumed-before-crash": "holds",
        "machine-check-handled-clears-mcip": "holds",
        "callback-all-cpus-acknowledge": "holds",
        "callback-crash-kernel-starts": "holds",
    }
    assert all(p.description for p in PROPERTIES)


EXPECTED_DAMAGE = {
    "v1-shootdown-waits-full-timeout": "timeout-fired",
    "ist-enabled-crash-path-clobbers": "clobbers NMI frame",
    "crash-kernel-starts-with-nmis-unblocked-without-enable-nmis": "assertion-failed",
}


@pytest.mark.parametrize("cpus", [2, 3, 4])
def test_verdicts_witnesses_and_damage_on_2_3_and_4_cpus(cpus: int) -> None:
    ran = 0
    for variant, environment, members in groups():
        setting = scaled(variant, environment, cpus)
        if setting is None:
            continue
        var, env = setting
        system = load(var, env)
        finals = {p.name: 0 for p in members if p.kind is Kind.FINAL}
        checks: list[Check] = []
        for p in members:
            assert p.expr is not None
            evaluate = p.expr.evaluate
            if p.kind is Kind.FINAL:

                def counted(
                    v: Vocabulary, name: str = p.name, ev: Predicate = evaluate,
                    seen: dict[str, int] = finals,
                ) -> Any:
                    seen[name] += 1
                    return ev(v)

                evaluate = counted
            checks.append(Check(p.kind, evaluate, p.name))
        wanted = [w for p in members for w in WITNESSES.get(p.name, [])]
        if env == {**environment, "cpus": cpus}:  # the file's own events
            wanted += [w for p in members for w in WITNESSES_WITH_EVENTS.get(p.name, [])]
        checks += [Check(Kind.REACHABLE, w) for w in wanted]
        done = explore(system, checks)
        got = [o.verdict for o in done.outcomes]
        names = [p.name for p in members]
        assert got[: len(members)] == [p.expect for p in members], (cpus, names)
        assert got[len(members):] == [Verdict.HOLDS] * len(wanted), (cpus, names, got)
        for k, p in enumerate(members):
            if p.expect is Verdict.VIOLATED:
                assert EXPECTED_DAMAGE[p.name] in damage(system, done, k), (cpus, p.name)
        assert all(finals.values()), (cpus, finals)  # final states exist to be judged
        ran += len(members)
    # on 4 CPUs: the shot-down CPUs' properties of patch-v1 and patch-v1-fixed
    assert ran == (5 if cpus == 4 else len(PROPERTIES))


def test_the_watchdog_entry_crashes_inside_the_nmi_handler() -> None:
    """Before the patch, crashing from the watchdog's NMI handler reaches the crash kernel
    with that NMI's frame live and NMIs blocked; crashing from ordinary code does not."""
    p = prop("crash-kernel-starts-with-nmis-unblocked-without-enable-nmis")
    system = load(p.variant, p.environment)
    done = explore(system, [Check(Kind.REACHABLE, lambda v: v["kexec_started"] and crashed_from(
        v, "watchdog") and v["cpus"][0]["nmi_blocked"])])
    assert done.outcomes[0].verdict is Verdict.HOLDS
    system = load({**p.variant, "crash_from": "panic"}, p.environment)
    done = explore(system, [Check(Kind.NEVER, lambda v: v["kexec_nmis_blocked"])])
    assert done.outcomes[0].verdict is Verdict.HOLDS


def test_enable_nmis_lets_an_nmi_into_the_watchdog_handler_s_crash_path() -> None:
    """Without machine checks (whose IRET also unblocks NMIs) only enable_nmis() can let an
    NMI in while the watchdog's handler runs the crash path: it does, before the crash
    kernel starts, and the NMI runs trap_nop below the running code."""
    system = load({"patch": "patch-v1-fixed", "crash_from": "watchdog"}, {"cpus": 2, "nmi": [1, 0]})
    done = explore(system, [
        Check(Kind.REACHABLE, lambda v: v["running"](0, "trap_nop") and not v["kexec_started"]
              and crashed_from(v, "watchdog")),
        Check(Kind.NEVER, lambda v: v["frame_clobbered"]),
    ])
    assert [o.verdict for o in done.outcomes] == [Verdict.HOLDS, Verdict.HOLDS]


# -- the race the model finds -----------------------------------------------------------------


@pytest.mark.parametrize("patch", ["patch-v1-fixed", "cpumask"])
def test_nmi_after_a_machine_check_skips_the_acknowledgement(patch: str) -> None:
    system = load(
        {"patch": patch, "crash_from": "panic"}, {"cpus": 2, "nmi": [0, 1], "mce": [0, 1]}
    )
    done = explore(system, [Check(Kind.NEVER, lambda v: v["timed_out"])])
    [outcome] = done.outcomes
    assert outcome.verdict is Verdict.VIOLATED and outcome.trace is not None
    assert "timeout-fired" in damage(system, done, 0)
    kinds = [(a.kind, a.cpu) for a in outcome.trace.actions]
    assert ("mce", 1) in kinds
    # The re-entering NMI lands right after `crash_save_done = 1`.
    states = outcome.trace.states
    entry = next(k for k, a in enumerate(outcome.trace.actions) if a.cpu == 1 and a.kind in (
        "nmi", "ipi") and system.vocabulary(states[k])["crash_save_done"][1])
    before = system.vocabulary(states[entry])
    assert before["running"](1, "do_nmi_crash") and not before["cpus"][1]["nmi_blocked"]
    v = system.vocabulary(outcome.trace.states[-1])
    # CPU 1 saved its state and halts in do_nmi_crash, but never acknowledged.
    assert v["crash_save_done"][1] and v["cpus"][1]["halted"]
    assert v["running"](1, "do_nmi_crash")


# -- features the design needed ---------------------------------------------------------------


def test_per_cpu_budgets() -> None:
    env = environment_of({"cpus": 3, "nmi": [1, 0, 2], "mce": 1})
    assert env.nmi == (1, 0, 2)
    system = DesignSystem(parse_design(DESIGN, {}), env)
    [budgets] = {s.budgets for s in system.init_states()}
    # nmi, mce, external, double faults per CPU, then the shared fault budget
    assert budgets == (1, 1, 0, 0, 0, 1, 0, 0, 2, 1, 0, 0, 0)
    with pytest.raises(CheckerError, match="lists 2 budgets for 3 CPUs"):
        DesignSystem(parse_design(DESIGN, {}), environment_of({"cpus": 3, "nmi": [1, 0]}))
    for bad in ([], [1, -1], [True], ["1"]):
        with pytest.raises(CheckerError, match="one per CPU"):
            environment_of({"nmi": bad})


def test_per_cpu_budgets_let_only_their_cpu_take_the_event() -> None:
    system = load({"crash_from": "panic"}, {"cpus": 3, "nmi": [0, 1, 0], "mce": [0, 0, 1]})
    [s] = system.init_states()
    assert [(a.kind, a.cpu) for a in system.actions(s) if a.kind in ("nmi", "mce")] == [
        ("nmi", 1), ("mce", 2)
    ]


def test_per_cpu_budget_errors_name_the_property_file_line(tmp_path: Path) -> None:
    from checker.cli import main

    f = tmp_path / "bad.toml"
    f.write_text(
        'design = "xen_kexec"\n[environment]\ncpus = 3\nnmi = [1, 0]\n'
        '[[property]]\nname = "x"\nkind = "never"\nexpr = "timed_out"\nexpect = "holds"\n'
    )
    assert main([str(f), "-q"]) == 2


def test_set_gate_with_an_ist_keeps_its_statement_as_the_step_label() -> None:
    design = parse_design(DESIGN, {"patch": "ist-left-on"})
    texts = [i.text for i in design.routines["nmi_shootdown_cpus"].instrs if i.op == "c.set_gate"]
    assert texts == [
        "set_gate(idt_table[i], TRAP_nmi, trap_nop, interrupt, 0, 2)",
        "set_gate(idt_table[i], TRAP_nmi, nmi_crash, interrupt, 0, 2)",
    ]


def test_the_seed_s_routines_are_in_the_design_verbatim() -> None:
    """trap_nop, nmi_crash and enable_nmis as the patch adds them to entry.S, with only
    comments and symbolic constants adapted (TRAP_nmi, __HYPERVISOR_CS)."""
    text = DESIGN.read_text()
    for line in [
        "ENTRY(nmi_crash)", "movl $TRAP_nmi,4(%rsp)", "callq do_nmi_crash /* Does not return */",
        "ENTRY(trap_nop)", "ENTRY(enable_nmis)", "movq %rsp, %rax /* Grab RSP before pushing */",
        "pushq $__HYPERVISOR_CS /* CS */", "leaq  1f(%rip),%rax",
        "iretq /* Disable the hardware NMI latch */",
    ]:
        assert line in text
    design = parse_design(DESIGN, {})
    assert [i.op for i in design.routines["trap_nop"].instrs] == ["iret"]
    assert [i.op for i in design.routines["enable_nmis"].instrs] == [
        "push", "mov", "push", "push", "pushf", "push", "lea", "push", "iret", "pop", "ret"
    ]
