"""Options(workers=N): levels expanded in forked helpers are merged exactly as one process
would, so counts, verdicts, messages and traces do not depend on N."""

from __future__ import annotations

import os
from collections import namedtuple
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from toy_models import Counters, Faulty, Graph, Mutex

from checker import parallel
from checker.explore import Bounds, Check, Exploration, Options, explore
from checker.expr import compile_expr
from checker.parallel import Pool, _apply, _Cost, _diff, expand_chunk
from checker.verdict import Kind


@pytest.fixture(autouse=True)
def _small_levels(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fork for every level, in small chunks, so that toy models exercise the pool."""
    monkeypatch.setattr(Pool, "MIN_LEVEL", 1)
    monkeypatch.setattr(Pool, "MIN_CHUNK", 2)
    monkeypatch.setattr(Pool, "CHUNKS_PER_WORKER", 3)
    monkeypatch.setattr(Pool, "STRIKES", 10**9)  # keep helpers even where they cannot pay


def check(kind: Kind, expr: str | None = None) -> Check:
    return Check(kind, compile_expr(expr).evaluate if expr is not None else None)


def summary(result: Exploration) -> tuple[Any, ...]:
    return (
        result.stats.states, result.stats.transitions, result.stats.depth, result.complete,
        result.stop_reason,
        [(o.verdict, o.message, o.trace.choices if o.trace else None) for o in result.outcomes],
    )


def same(system: Any, checks: Sequence[Check], bounds: Bounds | None = None,
         **options: Any) -> Exploration:
    one = explore(system, checks, bounds, options=Options(workers=1, **options))
    for workers in (2, 3):
        many = explore(system, checks, bounds, options=Options(workers=workers, **options))
        assert summary(many) == summary(one)
        assert many.stats.workers == workers
    return one


COUNTER_CHECKS = [
    check(Kind.ALWAYS, "total <= n * len(c)"),
    check(Kind.REACHABLE, "c[0] == n and c[2] == 1"),
    check(Kind.FINAL, "total == n * len(c)"),
    check(Kind.DEADLOCK_FREE),
]


def test_counters_all_kinds() -> None:
    result = same(Counters(3, 5), COUNTER_CHECKS)
    assert result.stats.states == 6**3 and result.complete


def test_violations_and_their_traces() -> None:
    same(Mutex(lock=False, rounds=3), [check(Kind.ALWAYS, "in_critical <= 1")])
    same(Counters(3, 4), [check(Kind.NEVER, "c[1] == 3 and c[2] == 2")])
    same(Counters(3, 4), [check(Kind.FINAL, "total == 1")])


def test_bounds() -> None:
    same(Counters(3, 6), COUNTER_CHECKS, Bounds(max_states=100))
    same(Counters(3, 6), COUNTER_CHECKS, Bounds(max_depth=4))
    same(Counters(3, 6), [check(Kind.ALWAYS, "total < 20")], Bounds(max_depth=4))


def test_with_compact_fingerprints() -> None:
    result = same(Counters(3, 5), COUNTER_CHECKS, compact=True)
    assert result.stats.collision_probability > 0


def test_a_model_error_in_a_helper_is_the_sequential_error() -> None:
    # Faulty raises once the total reaches 3: in a helper, the chunk is expanded again
    # here, and fails at the same state with the same message.
    result = same(Faulty(3, 3), [check(Kind.ALWAYS, "total < 100")])
    assert result.outcomes[0].message.startswith("the model raised RuntimeError: model bug")


@dataclass(frozen=True)
class FailingActions(Counters):
    def actions(self, state: tuple[int, ...]) -> Sequence[int]:
        if sum(state) == 4 and state[0] == 2:
            raise ValueError("no actions here")
        return super().actions(state)


def test_a_failing_actions_call() -> None:
    result = same(FailingActions(3, 3), [check(Kind.ALWAYS, "total < 100")])
    assert "ValueError: no actions here" in result.outcomes[0].message


def test_a_decided_check_before_a_failing_state() -> None:
    # The reachable property is decided in the same level, before the failing state.
    same(Faulty(3, 3), [check(Kind.REACHABLE, "total == 2")])


Unpicklable = namedtuple("Unpicklable", "value hook")


@dataclass(frozen=True)
class Local:
    """States that carry a local function: they do not pickle; helpers give their chunks
    back and this process expands them."""

    n: int = 40

    def init_states(self) -> Sequence[Any]:
        return [Unpicklable(0, lambda: None)]

    def actions(self, state: Any) -> Sequence[int]:
        return [1, 2] if state.value < self.n else []

    def next_state(self, state: Any, action: int) -> Any:
        return Unpicklable(state.value + action, state.hook)

    def is_terminal(self, state: Any) -> bool:
        return True

    def vocabulary(self, state: Any) -> Mapping[str, Any]:
        return {"value": state.value}

    def vocabulary_names(self) -> Mapping[str, str]:
        return {"value": "the value"}

    def describe_state(self, state: Any) -> Mapping[str, Any]:
        return {"value": state.value}

    def describe_action(self, state: Any, action: int) -> Mapping[str, Any]:
        return {"label": f"+{action}"}


def test_states_that_do_not_pickle() -> None:
    same(Local(), [check(Kind.NEVER, "value == 37")])


def test_symmetry_with_workers() -> None:
    from test_reductions import SymCounters

    same(SymCounters(4, 3), [check(Kind.REACHABLE, "c[0] == 3 and total == 9")], symmetry=True)


@settings(max_examples=25, deadline=None)
@given(
    st.dictionaries(
        st.integers(0, 30), st.lists(st.integers(0, 30), max_size=4), max_size=31
    ),
    st.lists(st.integers(0, 30), min_size=1, max_size=3),
    st.integers(0, 30),
)
def test_random_graphs(edges: dict[int, list[int]], inits: list[int], target: int) -> None:
    graph = Graph(edges, inits, frozenset({0}))
    same(graph, [check(Kind.NEVER, f"node == {target}"), check(Kind.DEADLOCK_FREE)])


def test_helpers_that_die_without_sending(monkeypatch: pytest.MonkeyPatch) -> None:
    def dying(*args: Any) -> None:
        os.read(args[4], 4)  # takes a chunk and never sends it
        os._exit(1)

    monkeypatch.setattr(parallel, "_helper", dying)
    same(Counters(3, 5), COUNTER_CHECKS)


def test_no_more_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    def refused() -> int:
        raise BlockingIOError("fork: Resource temporarily unavailable")

    monkeypatch.setattr(parallel.os, "fork", refused)
    same(Counters(3, 4), COUNTER_CHECKS)


def no_fork() -> int:
    raise AssertionError("forked")


def test_small_levels_are_expanded_in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Pool, "MIN_LEVEL", 10**9)
    monkeypatch.setattr(parallel.os, "fork", no_fork)
    result = explore(Counters(3, 3), COUNTER_CHECKS, options=Options(workers=2))
    assert result.stats.workers == 2 and result.complete


def test_one_worker_never_forks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parallel.os, "fork", no_fork)
    result = explore(Counters(3, 3), COUNTER_CHECKS, options=Options(workers=1))
    assert result.stats.workers == 1 and result.complete


def times(user: float, system: float) -> os.times_result:
    return os.times_result((user, system, 0.0, 0.0, 0.0))


def test_helpers_pay_when_taking_their_states_is_cheap() -> None:
    cost = _Cost(times(0, 0), 0.0, merge=3.0, local=2.0, local_states=100, remote_states=100,
                 waited=0.1)
    # expanding the 100 remote states here: 2 s; taking them: 1 s + 0.1 s waiting + 0.2 s sys
    assert cost.paid(times(3.0, 0.2), 3.4)
    assert not cost.paid(times(3.0, 0.9), 4.0)  # copies on write ate the gain
    # this process had a core less than 80% of the time it was not waiting: no idle core
    assert not cost.paid(times(3.0, 0.2), 6.0)
    slow = _Cost(times(0, 0), 0.0, merge=3.9, local=2.0, local_states=100, remote_states=100)
    assert not slow.paid(times(3.9, 0.0), 3.9)  # unpickling costs as much as expanding


def test_helpers_are_given_up_after_levels_that_did_not_pay(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(Pool, "STRIKES", 2)
    monkeypatch.setattr(parallel.Level, "paid", lambda self: False)
    levels: list[int] = []
    original = parallel.Level.__init__

    def counting(self: Any, *args: Any) -> None:
        levels.append(1)
        original(self, *args)

    monkeypatch.setattr(parallel.Level, "__init__", counting)
    result = same(Counters(3, 5), COUNTER_CHECKS)
    assert result.complete
    # A level is judged when the next one starts: three levels with helpers, for each of
    # workers=2 and workers=3.
    assert len(levels) == 3 * 2


# -- successors as differences -------------------------------------------------------------


class Inner(NamedTuple):
    a: int
    b: tuple[int, ...]
    c: str


class Outer(NamedTuple):
    inner: Inner
    items: tuple[Any, ...]
    flag: bool


class WithDict(tuple):  # type: ignore[type-arg]
    """A tuple subclass whose instances carry more than their items."""


def roundtrip(old: Any, new: Any) -> Any:
    import pickle

    rebuilt = _apply(old, pickle.loads(pickle.dumps(_diff(old, new))))
    assert rebuilt == new and type(rebuilt) is type(new)
    return rebuilt


def test_diff_rebuilds_equal_states_sharing_parts() -> None:
    old = Outer(Inner(1, (1, 2, 3, 4), "x"), (("a", 1), ("b", 2), ("c", 3)), False)
    assert roundtrip(old, old) is old
    new = old._replace(inner=old.inner._replace(a=2))
    rebuilt = roundtrip(old, new)
    assert rebuilt.items is old.items and rebuilt.inner.b is old.inner.b
    new = old._replace(items=(*old.items[:2], ("c", 4)))
    assert roundtrip(old, new).items[0] is old.items[0]
    roundtrip(old, old._replace(items=(("z", 0), *old.items)))  # shifted: sent whole
    roundtrip(old, old._replace(inner=None))  # another type
    roundtrip(old, old._replace(items=old.items[:1]))  # another length
    roundtrip(old, Outer(*old))  # equal but a different object
    roundtrip(old, old._replace(inner=old.inner._replace(a=10**30)))
    roundtrip(1, 2)
    roundtrip("x", "x" * 2)
    odd = WithDict((1, 2))
    odd.note = "kept"  # type: ignore[attr-defined]
    assert roundtrip(WithDict((1, 3)), odd).note == "kept"


def test_expand_chunk_dedup_keeps_first_occurrences() -> None:
    system = Counters(2, 2)
    states = [(0, 1), (1, 0)]
    entries, error = expand_chunk(system, system.next_state, states, dedup=True)
    assert error is None
    assert [(count, list(pairs)) for count, pairs in entries] == [
        (2, [(0, (1, 1)), (1, (0, 2))]), (2, [(0, (2, 0))]),
    ]
    plain, _ = expand_chunk(system, system.next_state, states, dedup=False)
    assert [len(list(pairs)) for _, pairs in plain] == [2, 2]


def test_expand_chunk_failures() -> None:
    system = Faulty(2, 3)
    entries, error = expand_chunk(system, system.next_state, [(1, 1), (2, 1)], dedup=False)
    assert error is None and len(entries) == 2
    count, pairs = entries[1]
    assert count == 2
    with pytest.raises(RuntimeError, match="model bug"):
        list(pairs)
    failing = FailingActions(3, 3)
    entries, error = expand_chunk(failing, failing.next_state, [(0, 0, 0), (2, 2, 0)], False)
    assert len(entries) == 1 and isinstance(error, ValueError)
