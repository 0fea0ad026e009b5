"""The step caches of issue 18 item 2 give what they replace: expressions compiled once
(`Interpreter.eval`) evaluate as the tree walk does, and the actions reused for a CPU
record (`TransitionRelation.base_actions`) are those worked out afresh, in the same order."""

from __future__ import annotations

from collections import deque
from typing import Any

import pytest

from model import provider
from model.lang.ir import is_expr
from model.system.transition import DesignSystem


def _kexec(cpus: int) -> DesignSystem:
    system = provider().load(
        "xen_kexec", {"patch": "patch-v1-fixed"}, {"cpus": cpus, "nmi": [0, 1] + [0] * (cpus - 2)}
    )
    assert isinstance(system, DesignSystem)
    return system


def _reachable(system: DesignSystem, limit: int) -> list[Any]:
    seen: dict[Any, None] = {}
    queue: deque[Any] = deque(system.init_states())
    order = []
    while queue and len(order) < limit:
        s = queue.popleft()
        if s in seen:
            continue
        seen[s] = None
        order.append(s)
        queue.extend(system.next_state(s, a) for a in system.actions(s))
    return order


def _outcome(f: Any, *args: Any) -> tuple[str, Any]:
    try:
        return "value", f(*args)
    except Exception as exc:  # the same error either way (an InputError's message)
        return type(exc).__name__, str(exc)


def _ist_with_faults() -> DesignSystem:
    # two CPUs and one environment fault between them: a fault on one CPU spends the
    # budget the other's `@fault` steps read, while the other's record stays the same
    system = provider().load("xen_ist", {"ist": "xen"}, {"cpus": 2, "nmi": 1, "faults": 1})
    assert isinstance(system, DesignSystem)
    return system


@pytest.mark.parametrize("make", [lambda: _kexec(3), _ist_with_faults], ids=["kexec", "ist"])
def test_reused_actions_are_the_fresh_ones_in_order(make: Any) -> None:
    system = make()
    relation = system.relation
    fresh = make().relation
    states = _reachable(system, 3000)
    reused = 0
    for s in states:
        before = sum(len(c) for c in relation._cpu_actions)
        got = relation.base_actions(s)
        reused += sum(len(c) for c in relation._cpu_actions) < before + len(s.machine.cpus)
        fresh._cpu_actions = [{} for _ in fresh._cpu_actions]  # nothing to reuse
        assert got == fresh.base_actions(s), s
    assert reused  # the cache was used, so the comparison means something


def test_compiled_expressions_evaluate_as_the_tree_walk() -> None:
    system = _kexec(2)
    interp = system.interp
    exprs = [
        (arg, ins) for routine in system.design.routines.values() for ins in routine.instrs
        for arg in ins.args if is_expr(arg)
    ]
    assert len(exprs) > 20
    compared = 0
    for s in _reachable(system, 3000)[::50]:
        for cpu in range(system.ncpus):
            for e, ins in exprs:
                compiled = _outcome(interp.eval, s, cpu, e, ins)
                assert compiled == _outcome(interp._walk, s, cpu, e, ins), (e, ins.loc)
                compared += compiled[0] == "value"
    assert compared > 100


@pytest.mark.parametrize("make", [lambda: _kexec(3), _ist_with_faults], ids=["kexec", "ist"])
def test_actions_are_not_reused_across_budgets(make: Any) -> None:
    # the same CPU records with every budget spent: no event is offered any more
    system = make()
    relation = system.relation
    fresh = make().relation
    for s in _reachable(system, 3000):
        relation.base_actions(s)
        spent = s._replace(budgets=(0,) * len(s.budgets))
        fresh._cpu_actions = [{} for _ in fresh._cpu_actions]
        assert relation.base_actions(spent) == fresh.base_actions(spent), s
