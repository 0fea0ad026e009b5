"""Partial-order reduction (issue 8 item 4; model/system/por.py, checker/explore.py).

The model names persistent sets (one CPU's enabled actions, when they touch only what
that CPU owns and no other CPU can still reach into it); the explorer takes one when its
steps are invisible to the properties and lead to new states. Checked here: the known
reduction on independent CPUs, that a CPU another can still send an NMI is never
reduced, that counterexamples are real paths, and that every shipped property of the
multi-CPU designs gets the same verdict with and without reduction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from toy_models import Counters

from checker.explore import Check, Options, explore
from checker.expr import compile_expr
from checker.spec import read_property_file
from checker.trace import rebuild
from checker.verdict import Kind, Verdict
from model.system.provider import DesignProvider
from model.system.transition import DesignSystem
from tests.counting_design import counting

ROOT = Path(__file__).resolve().parent.parent
PROVIDER = DesignProvider()


def toy(tmp_path: Path, cpus: int) -> DesignSystem:
    return counting(tmp_path, cpus, symmetric=False)


@pytest.mark.parametrize("cpus", [2, 3, 4, 5])
def test_independent_cpus_run_one_after_another(tmp_path: Path, cpus: int) -> None:
    """With no property to see the interleavings, the CPUs' local steps are not
    interleaved at all: 1 + 3(n-1) states instead of 4^(n-1)."""
    system = toy(tmp_path, cpus)
    full = explore(system, [])
    reduced = explore(system, [], options=Options(por=True))
    assert full.stats.states == 4 ** (cpus - 1)
    assert reduced.stats.states == (1 + 3 * (cpus - 1) if cpus > 2 else 4)
    assert reduced.stats.por


def test_a_visible_step_is_not_reduced_and_the_trace_is_real(tmp_path: Path) -> None:
    system = toy(tmp_path, 4)
    expr = compile_expr("done[1] == 2 and done[2] == 1 and done[3] == 0")
    check = Check(Kind.NEVER, expr.evaluate, "p", expr.names)
    full = explore(system, [check])
    reduced = explore(system, [check], options=Options(por=True))
    assert full.outcomes[0].verdict is reduced.outcomes[0].verdict is Verdict.VIOLATED
    trace = reduced.outcomes[0].trace
    assert trace is not None
    assert "partial-order reduction" in reduced.outcomes[0].message
    # the trace replays on the unreduced system and ends in the bad state
    again = rebuild(system, trace.choices)
    assert expr.evaluate(system.vocabulary(again.states[-1]))


def test_one_cpu_is_explored_without_the_reduction_and_its_cost() -> None:
    """With one CPU every action is that CPU's, so no state has a persistent set: the
    model says so (`reduces`), the explorer runs without POR (no persistent-set test per
    state, helpers allowed) and the statistics say POR was not used."""
    one = PROVIDER.load("xen_ist", {"context": "xen"}, {"cpus": 1})
    two = PROVIDER.load("xen_kexec", {"crash_from": "panic"}, {"cpus": 2})
    assert not one.reduces() and two.reduces()
    done = explore(one, [], options=Options(por=True))
    assert not done.stats.por
    assert done.stats.states == explore(one, []).stats.states
    assert explore(two, [], options=Options(por=True)).stats.por


def test_no_reduction_while_another_cpu_can_still_send_an_nmi() -> None:
    """Before the shootdown's NMI IPI, CPU 0 can still reach into every other CPU."""
    system = PROVIDER.load("xen_kexec", {"crash_from": "panic"}, {"cpus": 3})
    [init] = system.init_states()
    assert system.persistent_sets(init, system.actions(init), frozenset()) == []


def _properties() -> list[Any]:
    out = []
    for name in ("kexec_crash", "boot"):
        out += read_property_file(ROOT / "properties" / f"{name}.toml").properties
    return out


@pytest.mark.parametrize("prop", _properties(), ids=lambda p: p.name)
@pytest.mark.slow  # minutes: every property explored twice
def test_every_multi_cpu_property_has_the_same_verdict_reduced(prop: Any) -> None:
    system = PROVIDER.load(prop.design, prop.variant, prop.environment)
    predicate = prop.expr.evaluate if prop.expr is not None else None
    reads = prop.expr.names if prop.expr is not None else frozenset()
    check = Check(Kind(prop.kind), predicate, prop.name, reads)
    full = explore(system, [check])
    reduced = explore(system, [check], options=Options(por=True))
    assert reduced.outcomes[0].verdict == full.outcomes[0].verdict
    if full.complete:
        assert reduced.stats.states <= full.stats.states
    if reduced.outcomes[0].trace is not None:
        rebuild(system, reduced.outcomes[0].trace.choices)  # a real path


@dataclass(frozen=True)
class _NeverReduced(Counters):
    """A model that is asked for persistent sets and never has one."""

    asked: list[int] = field(default_factory=list, compare=False)

    def reduces(self) -> bool:
        return True

    def persistent_sets(
        self, state: Any, actions: Any, observed: frozenset[str] = frozenset()
    ) -> list[list[int]]:
        self.asked.append(1)
        return []


def test_where_sets_are_never_found_the_model_is_asked_less() -> None:
    """After a trial of PartialOrder.TRIAL states without a set, the explorer expands
    states in full without asking for ever longer pauses (always sound): the counts are
    the unreduced ones, and most states are not asked about."""
    model = _NeverReduced(k=6, n=4)  # 15,625 states
    check = Check(Kind.ALWAYS, compile_expr("total >= 0").evaluate, "p")
    plain = explore(model, [check])
    model.asked.clear()
    reduced = explore(model, [check], options=Options(por=True))
    assert reduced.outcomes[0].verdict is plain.outcomes[0].verdict is Verdict.HOLDS
    assert reduced.stats.states == plain.stats.states == 5 ** 6
    assert reduced.stats.persistent_expansions == 0
    skipped = reduced.stats.persistent_skipped
    assert skipped > 5 ** 6 // 2
    assert len(model.asked) + skipped < 5 ** 6  # terminal-ish states with one action aside


def test_where_sets_are_found_the_model_is_always_asked(tmp_path: Path) -> None:
    system = toy(tmp_path, 5)
    reduced = explore(system, [], options=Options(por=True))
    assert reduced.stats.persistent_expansions > 0
    assert reduced.stats.persistent_skipped == 0
