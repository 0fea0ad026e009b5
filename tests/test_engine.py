"""The BFS engine on small models whose answers are known."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from toy_models import Counters, Faulty, Graph, Locks, Mutex

from checker.explore import Bounds, Check, explore
from checker.expr import compile_expr
from checker.interface import ModelInterfaceError
from checker.trace import rebuild
from checker.verdict import Kind, Verdict


def check(kind: Kind, expr: str | None = None) -> Check:
    return Check(kind, compile_expr(expr).evaluate if expr is not None else None)


MUTEX = "in_critical <= 1"


def test_mutual_exclusion_holds_with_the_lock() -> None:
    result = explore(Mutex(lock=True), [check(Kind.ALWAYS, MUTEX)])
    assert result.outcomes[0].verdict is Verdict.HOLDS
    assert result.outcomes[0].trace is None
    assert result.complete


def test_mutual_exclusion_violated_without_the_lock() -> None:
    system = Mutex(lock=False)
    result = explore(system, [check(Kind.ALWAYS, MUTEX)])
    outcome = result.outcomes[0]
    assert outcome.verdict is Verdict.VIOLATED
    assert outcome.trace is not None
    # shortest: both processes enter, two steps
    assert outcome.trace.length == 2
    assert [a[0] for a in outcome.trace.actions] == ["enter", "enter"]
    last = outcome.trace.states[-1]
    assert system.vocabulary(last)["in_critical"] == 2
    assert not result.complete  # stopped early: the only property was decided
    assert result.stop_reason == "every property decided"


def test_never_is_the_negation_of_always() -> None:
    held = explore(Mutex(lock=True), [check(Kind.NEVER, "in_critical == 2")])
    broken = explore(Mutex(lock=False), [check(Kind.NEVER, "in_critical == 2")])
    assert held.outcomes[0].verdict is Verdict.HOLDS
    assert broken.outcomes[0].verdict is Verdict.VIOLATED
    assert broken.outcomes[0].trace is not None and broken.outcomes[0].trace.length == 2


@pytest.mark.parametrize(("k", "n"), [(1, 0), (1, 5), (2, 3), (3, 4), (4, 2), (5, 1)])
def test_counter_lattice_has_closed_form_state_count(k: int, n: int) -> None:
    result = explore(Counters(k, n), [check(Kind.ALWAYS, "total <= n * len(c)")])
    assert result.outcomes[0].verdict is Verdict.HOLDS
    assert result.stats.states == (n + 1) ** k
    assert result.stats.depth == k * n
    # every non-maximal counter can be incremented: k * n * (n+1)**(k-1) transitions
    assert result.stats.transitions == k * n * (n + 1) ** (k - 1)
    assert result.complete and result.stop_reason is None


def test_reachable_gives_a_shortest_witness() -> None:
    result = explore(Counters(3, 4), [check(Kind.REACHABLE, "c[2] == 3 and c[0] == 1")])
    outcome = result.outcomes[0]
    assert outcome.verdict is Verdict.HOLDS
    assert outcome.trace is not None
    assert outcome.trace.length == 4
    assert outcome.trace.states[-1] == (1, 0, 3)


def test_reachable_without_witness_is_violated_after_exhausting() -> None:
    result = explore(Counters(2, 2), [check(Kind.REACHABLE, "total > 4")])
    assert result.outcomes[0].verdict is Verdict.VIOLATED
    assert result.outcomes[0].trace is None
    assert result.stats.states == 9
    assert result.complete


def test_final_checks_only_states_without_actions() -> None:
    good = explore(Counters(2, 3), [check(Kind.FINAL, "total == 6")])
    bad = explore(Counters(2, 3), [check(Kind.FINAL, "total == 5")])
    assert good.outcomes[0].verdict is Verdict.HOLDS
    assert bad.outcomes[0].verdict is Verdict.VIOLATED
    assert bad.outcomes[0].trace is not None
    assert bad.outcomes[0].trace.states[-1] == (3, 3)


def test_deadlock_freedom() -> None:
    opposite = explore(Locks(opposite=True), [Check(Kind.DEADLOCK_FREE)])
    same = explore(Locks(opposite=False), [Check(Kind.DEADLOCK_FREE)])
    assert same.outcomes[0].verdict is Verdict.HOLDS
    outcome = opposite.outcomes[0]
    assert outcome.verdict is Verdict.VIOLATED
    assert outcome.trace is not None
    final = outcome.trace.states[-1]
    assert Locks(opposite=True).actions(final) == []
    assert not Locks(opposite=True).is_terminal(final)
    assert outcome.trace.length == 2  # each takes its first lock


def test_terminal_states_are_not_deadlocks() -> None:
    result = explore(Counters(2, 2), [Check(Kind.DEADLOCK_FREE)])
    assert result.outcomes[0].verdict is Verdict.HOLDS


def test_initial_states_are_checked() -> None:
    graph = Graph({0: [1], 1: []}, inits=[5, 0])
    result = explore(
        graph,
        [check(Kind.ALWAYS, "node != 5"), check(Kind.REACHABLE, "node == 0"),
         Check(Kind.DEADLOCK_FREE)],
    )
    always, reach, dead = result.outcomes
    assert always.verdict is Verdict.VIOLATED
    assert always.trace is not None and always.trace.choices == (0,)
    assert always.trace.length == 0
    assert reach.verdict is Verdict.HOLDS
    assert reach.trace is not None and reach.trace.choices == (1,)
    assert dead.verdict is Verdict.VIOLATED  # 5 has no action and is not terminal
    assert dead.trace is not None and dead.trace.states == (5,)


def test_all_properties_of_a_group_in_one_exploration_stop_when_decided() -> None:
    checks = [
        check(Kind.ALWAYS, "total < 3"),
        check(Kind.REACHABLE, "total == 2"),
        check(Kind.NEVER, "c[0] == 1 and c[1] == 1"),
    ]
    result = explore(Counters(4, 9), checks)
    verdicts = [o.verdict for o in result.outcomes]
    assert verdicts == [Verdict.VIOLATED, Verdict.HOLDS, Verdict.VIOLATED]
    assert [o.trace.length for o in result.outcomes if o.trace] == [3, 2, 2]
    # stopped at depth 3, far before the 10**4 states of the lattice
    assert result.stats.states < 10**4
    assert result.stats.depth == 3
    assert not result.complete


def test_holds_needs_the_exhaustive_end() -> None:
    result = explore(Counters(3, 3), [check(Kind.ALWAYS, "total <= 9"),
                                      check(Kind.REACHABLE, "total == 1")])
    assert [o.verdict for o in result.outcomes] == [Verdict.HOLDS, Verdict.HOLDS]
    assert result.stats.states == 64


@pytest.mark.parametrize(
    ("bounds", "reason"),
    [
        (Bounds(max_states=10), "max_states=10"),
        (Bounds(max_depth=3), "max_depth=3"),
        (Bounds(timeout=1e-9), "timeout"),
    ],
)
def test_bounds_give_incomplete_never_holds(bounds: Bounds, reason: str) -> None:
    checks = [check(Kind.ALWAYS, "total >= 0"), check(Kind.REACHABLE, "total == 9999"),
              check(Kind.FINAL, "total == 4 * 8"), Check(Kind.DEADLOCK_FREE)]
    result = explore(Counters(4, 8), checks, bounds)
    assert [o.verdict for o in result.outcomes] == [Verdict.INCOMPLETE] * 4
    assert all(reason in o.message for o in result.outcomes)
    assert result.stop_reason is not None and reason in result.stop_reason
    assert not result.complete


def test_max_states_is_respected_exactly() -> None:
    result = explore(Counters(3, 5), [check(Kind.ALWAYS, "total >= 0")], Bounds(max_states=50))
    assert result.stats.states == 50


def test_a_bound_does_not_hide_a_violation_found_before_it() -> None:
    result = explore(Counters(4, 8), [check(Kind.ALWAYS, "total < 2"),
                                      check(Kind.ALWAYS, "total >= 0")], Bounds(max_depth=3))
    assert result.outcomes[0].verdict is Verdict.VIOLATED
    assert result.outcomes[1].verdict is Verdict.INCOMPLETE


def test_depth_bound_that_cuts_nothing_is_complete() -> None:
    result = explore(Counters(2, 2), [check(Kind.ALWAYS, "total >= 0")], Bounds(max_depth=4))
    assert result.outcomes[0].verdict is Verdict.HOLDS
    assert result.complete
    result = explore(Counters(2, 2), [check(Kind.ALWAYS, "total >= 0")], Bounds(max_depth=3))
    assert result.outcomes[0].verdict is Verdict.INCOMPLETE
    assert result.stats.depth == 3


def test_depth_bound_still_checks_deadlocks_at_the_last_level() -> None:
    result = explore(Locks(opposite=True), [Check(Kind.DEADLOCK_FREE)], Bounds(max_depth=2))
    assert result.outcomes[0].verdict is Verdict.VIOLATED


def test_determinism_two_runs_same_counts_and_traces() -> None:
    def run() -> Any:
        result = explore(Mutex(lock=False, rounds=3),
                         [check(Kind.ALWAYS, MUTEX), check(Kind.REACHABLE, "done"),
                          check(Kind.FINAL, "lock == 0")])
        return (result.stats.states, result.stats.transitions, result.stats.depth,
                [(o.verdict, o.trace) for o in result.outcomes])

    assert run() == run()


def test_a_plugged_fingerprint_gives_the_same_result() -> None:
    def fp64(state: Any) -> int:
        digest = hashlib.blake2b(repr(state).encode(), digest_size=8).digest()
        return int.from_bytes(digest, "little")

    checks = [check(Kind.ALWAYS, "total < 7"), check(Kind.FINAL, "total == 8")]
    plain = explore(Counters(2, 4), checks)
    hashed = explore(Counters(2, 4), checks, fingerprint=fp64)
    def counts(r: Any) -> tuple[int, int, int]:
        return (r.stats.states, r.stats.transitions, r.stats.depth)

    assert counts(plain) == counts(hashed)
    assert [(o.verdict, o.trace) for o in plain.outcomes] == [
        (o.verdict, o.trace) for o in hashed.outcomes
    ]
    full = explore(Counters(3, 3), [check(Kind.ALWAYS, "total >= 0")], fingerprint=fp64)
    assert full.stats.states == 64


def test_counterexample_replays_from_its_choices() -> None:
    system = Mutex(lock=False, rounds=2)
    outcome = explore(system, [check(Kind.REACHABLE, "done and lock == 0")]).outcomes[0]
    assert outcome.trace is not None
    again = rebuild(system, outcome.trace.choices)
    assert again == outcome.trace


def test_an_expression_error_is_an_error_verdict_and_others_go_on() -> None:
    result = explore(Counters(2, 2), [check(Kind.ALWAYS, "c[total] >= 0"),
                                      check(Kind.ALWAYS, "total <= 4")])
    bad, good = result.outcomes
    assert bad.verdict is Verdict.ERROR
    assert "c[total]" in bad.message and "no element" in bad.message
    assert bad.message.startswith("the expression failed") and "at depth 2" in bad.message
    assert bad.trace is not None and sum(bad.trace.states[-1]) == 2  # where it failed
    assert good.verdict is Verdict.HOLDS


def test_a_model_exception_is_an_error_verdict() -> None:
    result = explore(Faulty(2, 4), [check(Kind.ALWAYS, "total >= 0"),
                                    check(Kind.REACHABLE, "total == 1")])
    assert result.outcomes[1].verdict is Verdict.HOLDS
    assert result.outcomes[0].verdict is Verdict.ERROR
    assert "RuntimeError: model bug" in result.outcomes[0].message
    assert not result.complete
    assert result.stop_reason == "the model raised RuntimeError: model bug"


def test_progress_is_reported_during_long_explorations() -> None:
    calls: list[tuple[int, int, float]] = []
    explore(Counters(3, 12), [check(Kind.ALWAYS, "total >= 0")],
            progress=lambda s, d, t: calls.append((s, d, t)))
    assert calls
    assert [c[0] for c in calls] == sorted(c[0] for c in calls)


def test_a_model_without_is_terminal_is_rejected_by_name() -> None:
    # is_terminal is part of the required core (checker/interface.py): a model without it
    # is refused up front, not explored with a guessed default.
    class Bare:
        def init_states(self) -> list[int]:
            return [0]

        def actions(self, state: int) -> list[int]:
            return [1] if state == 0 else []

        def next_state(self, state: int, action: int) -> int:
            return action

        def vocabulary(self, state: int) -> dict[str, int]:
            return {"x": state}

        def vocabulary_names(self) -> dict[str, str]:
            return {"x": "the state"}

    with pytest.raises(ModelInterfaceError, match="is_terminal"):
        explore(Bare(), [Check(Kind.DEADLOCK_FREE)])  # type: ignore[arg-type]


def test_no_checks_explores_everything() -> None:
    result = explore(Counters(2, 3), [])
    assert result.stats.states == 16
    assert result.complete


def test_timeout_is_honoured_promptly_even_for_slow_models() -> None:
    import time

    class Slow(Counters):
        def actions(self, state: tuple[int, ...]) -> list[int]:
            time.sleep(0.002)
            return list(super().actions(state))

    started = time.perf_counter()
    result = explore(Slow(3, 9), [check(Kind.ALWAYS, "total >= 0")], Bounds(timeout=0.2))
    elapsed = time.perf_counter() - started
    assert result.outcomes[0].verdict is Verdict.INCOMPLETE
    assert "timeout=0.2s" in result.outcomes[0].message
    assert elapsed < 0.6


def test_the_collector_does_not_walk_the_visited_set_after_a_search() -> None:
    """The collector is off while searching (states are acyclic); what it allocated must
    not then sit in the collector's youngest generation, whose first pass would walk every
    visited state (18 of the gate's 84 s before the search froze it)."""
    import gc

    assert gc.isenabled()
    result = explore(Counters(k=6, n=4), [])
    assert result.stats.states == 5 ** 6
    assert gc.isenabled()
    # the states are out of the collector's generations (frozen), not waiting in them
    assert gc.get_freeze_count() >= 5 ** 6
