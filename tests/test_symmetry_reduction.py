"""Symmetry reduction over interchangeable CPUs (issue 8 item 3; model/system/symmetry.py).

Three checks: the state count drops by the known factor on a design where it is known;
on the kexec design the reduced exploration visits exactly one state per orbit of the
full state space (no more: canonical; no other: sound); and every shipped kexec property
gets the same verdict with and without reduction.
"""

from __future__ import annotations

import itertools
from math import comb
from pathlib import Path
from typing import Any

import pytest

from checker.explore import Check, Options, explore
from checker.spec import read_property_file
from checker.verdict import Kind
from model.system.provider import DesignProvider
from model.system.transition import DesignSystem
from tests.counting_design import counting

ROOT = Path(__file__).resolve().parent.parent
PROVIDER = DesignProvider()


# Full: 4^(n-1) states; one per orbit: the multisets of n-1 local states of the counting
# design, C(4 + n - 2, n - 1).


def toy(tmp_path: Path, cpus: int, symmetric: bool = True) -> DesignSystem:
    return counting(tmp_path, cpus, symmetric)


@pytest.mark.parametrize("cpus", [3, 4, 5, 6])
def test_known_factor_on_independent_cpus(tmp_path: Path, cpus: int) -> None:
    system = toy(tmp_path, cpus)
    full = explore(system, [])
    reduced = explore(system, [], options=Options(symmetry=True))
    workers = cpus - 1
    assert full.stats.states == 4**workers
    assert reduced.stats.states == comb(4 + workers - 1, workers)
    assert reduced.stats.reduced and not full.stats.reduced


def test_without_the_declaration_nothing_is_reduced(tmp_path: Path) -> None:
    system = toy(tmp_path, 4, symmetric=False)
    assert system.symmetry_vocabulary() is None
    assert explore(system, [], options=Options(symmetry=True)).stats.states == 64


def test_representative_is_a_renumbering_and_idempotent(tmp_path: Path) -> None:
    system = toy(tmp_path, 4)
    states = list(explore(system, []).visited or ())
    sym = system.symmetry
    assert sym is not None
    for s in states:
        r = system.representative(s)
        assert system.representative(r) == r
        # a renumbering of CPUs 1..3 of the state itself
        assert any(
            sym.apply(s, (0, *perm)) == r for perm in itertools.permutations((1, 2, 3))
        )


KEXEC_VARIANTS = [
    {"patch": p, "crash_from": c}
    for p in ("patch-v1-fixed", "callback", "ist-left-on", "patch-v1", "cpumask")
    for c in ("panic", "watchdog")
]


@pytest.mark.parametrize(
    "variant", KEXEC_VARIANTS, ids=lambda v: f"{v['patch']},{v['crash_from']}"
)
def test_kexec_reduced_states_are_exactly_the_orbits(variant: dict[str, str]) -> None:
    """One representative per orbit of the full reachable set, and nothing else: the
    design's loop over the CPUs (`order i`) keeps the CPUs it has not visited in place."""
    system = PROVIDER.load("xen_kexec", variant, {"cpus": 3, "nmi": [0, 1, 0]})
    full = explore(system, [])
    reduced = explore(system, [], options=Options(symmetry=True))
    orbits = {system.representative(s) for s in full.visited or ()}
    assert set(reduced.visited or ()) == orbits
    # Only the CPUs the shootdown loop has passed are exchanged: without that loop
    # (callback) `i` stays 0 and nothing is.
    if variant["patch"] == "callback":
        assert reduced.stats.states == full.stats.states
    else:
        assert reduced.stats.states < full.stats.states


def test_groups_follow_the_loop_over_cpus() -> None:
    system = PROVIDER.load("xen_kexec", {}, {"cpus": 5})
    sym = system.symmetry
    assert sym is not None
    [s] = [s for s in system.init_states() if s.machine.cpus[0].pc.routine == "xen_panic"]
    slot = system.layout.var_index["i"]

    def at(i: int) -> list[list[int]]:
        return sorted(sym.groups(s._replace(vars=s.vars[:slot] + (i,) + s.vars[slot + 1 :])))

    assert at(0) == [[1], [2], [3], [4]]  # not started (or at CPU 0): nothing is exchanged
    assert at(3) == [[1, 2], [3], [4]]  # passed CPUs 1 and 2
    assert at(5) == [[1, 2, 3, 4]]  # done


KEXEC = read_property_file(ROOT / "properties" / "kexec_crash.toml").properties


@pytest.mark.parametrize("prop", KEXEC, ids=lambda p: p.name)
@pytest.mark.slow  # minutes: every property explored twice
def test_every_kexec_property_has_the_same_verdict_reduced(prop: Any) -> None:
    """Each shipped kexec property, on 3 CPUs (two interchangeable) whatever its file says."""
    env = dict(prop.environment)
    cpus = 3
    for key in ("nmi", "mce"):
        if isinstance(env.get(key), list):
            env[key] = (list(env[key]) + [0] * cpus)[:cpus]
    env["cpus"] = cpus
    system = PROVIDER.load(prop.design, prop.variant, env)
    predicate = prop.expr.evaluate if prop.expr is not None else None
    reads = prop.expr.names if prop.expr is not None else frozenset()
    check = Check(Kind(prop.kind), predicate, prop.name, reads)
    full = explore(system, [check])
    reduced = explore(system, [check], options=Options(symmetry=True))
    assert reduced.outcomes[0].verdict == full.outcomes[0].verdict
    # and with partial-order reduction on top (persistent sets taken at representatives)
    both = explore(system, [check], options=Options(symmetry=True, por=True))
    assert both.outcomes[0].verdict == full.outcomes[0].verdict
    if full.complete:
        assert reduced.stats.states <= full.stats.states
