"""Breadth-first exploration of any `TransitionSystem`, checking a group of properties.

The visited dict maps a state's fingerprint to its BFS parent link (parent fingerprint,
choice index), so the shortest path to any state is a choice sequence that `replay`
turns back into states. By default a state is its own fingerprint; a caller may plug in
e.g. a 64-bit hash to save memory (at the usual risk of a collision).

Order comes only from `init_states()` and `actions()`: the exploration, the counters and
every counterexample are the same on every run.

Properties are checked as states are first discovered (always/never/reachable), so the
first hit is at the smallest depth, or as states are expanded (final/deadlock_free, which
need the enabled actions). Exploration stops as soon as every property is decided; a
`holds` for an invariant needs the exhaustive end, and when a bound (states, depth, time)
ends exploration first, the undecided properties are `incomplete`, never `holds`.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Collection, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from checker.expr import EvalError
from checker.interface import TransitionSystem
from checker.symbolic import Term, lnot, truth
from checker.trace import Trace, choices_to, replay
from checker.verdict import Kind, Verdict

Predicate = Callable[[Mapping[str, Any]], Any]
Progress = Callable[[int, int, float], None]

# Looks at the clock (timeout, progress) aim at one every _CLOCK_PERIOD seconds, and at
# most _CLOCK_MAX_STRIDE expansions apart.
_CLOCK_PERIOD = 0.05
_CLOCK_MAX_STRIDE = 4096


@dataclass(frozen=True)
class Bounds:
    """Limits on one exploration; None means unbounded."""

    max_states: int | None = None
    max_depth: int | None = None
    timeout: float | None = None


@dataclass(frozen=True)
class Check:
    """A property as the engine sees it: a kind and, except for deadlock_free, a
    predicate over the state's vocabulary (an `Expr.evaluate`)."""

    kind: Kind
    predicate: Predicate | None = None
    name: str = ""


@dataclass(frozen=True)
class Outcome:
    verdict: Verdict
    message: str
    trace: Trace | None = None


@dataclass(frozen=True)
class Stats:
    states: int  # distinct states discovered
    transitions: int  # (state, action) pairs followed
    depth: int  # deepest BFS level reached
    seconds: float

    @property
    def states_per_second(self) -> float:
        return self.states / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class Exploration:
    outcomes: tuple[Outcome, ...]  # one per check, in the order given
    stats: Stats
    complete: bool  # every reachable state was explored
    # Why exploration ended before exhausting the states: a bound ("max_states=10
    # reached"), "every property decided", or "the model raised ..."; None if complete.
    stop_reason: str | None
    # Every state discovered (for coverage), when states are their own fingerprints; None
    # with a custom fingerprint. A view of the engine's visited set: drop the Exploration
    # to free it.
    visited: Collection[Any] | None = field(default=None, repr=False, compare=False)


class _Stop(Exception):
    """Internal: a bound was hit."""


def explore(
    system: TransitionSystem[Any, Any],
    checks: Sequence[Check],
    bounds: Bounds | None = None,
    fingerprint: Callable[[Any], Hashable] | None = None,
    progress: Progress | None = None,
) -> Exploration:
    """Explore `system` breadth-first and decide every check in one pass."""
    bounds = bounds or Bounds()
    started = time.perf_counter()
    deadline = started + bounds.timeout if bounds.timeout is not None else None
    max_states = bounds.max_states if bounds.max_states is not None else sys.maxsize
    max_depth = bounds.max_depth if bounds.max_depth is not None else sys.maxsize

    decided: dict[int, tuple[Verdict, str, Hashable | None]] = {}
    # Discovery checks: (check index, predicate, kind, decide-when-false).
    on_new: list[tuple[int, Predicate, Kind, bool]] = []
    on_dead: list[tuple[int, Predicate | None, Kind]] = []
    for index, check in enumerate(checks):
        if check.kind.needs_expr and check.predicate is None:
            raise ValueError(f"check {index} ({check.kind}) needs a predicate")
        if check.kind.checked_on_discovery:
            assert check.predicate is not None
            on_new.append((index, check.predicate, check.kind, check.kind is Kind.ALWAYS))
        else:
            on_dead.append((index, check.predicate, check.kind))
    undecided = len(checks)

    actions_of = system.actions
    next_state = system.next_state
    vocabulary = system.vocabulary
    is_terminal: Callable[[Any], bool] = getattr(system, "is_terminal", None) or _never
    identity = fingerprint is None
    fp: Callable[[Any], Hashable] = fingerprint or _identity

    parents: dict[Hashable, tuple[Hashable | None, int]] = {}
    states = 0
    transitions = 0
    depth = 0
    stop_reason: str | None = None
    cut = False  # the depth bound left some successor unexplored

    possible = getattr(system, "possible", None)

    def settle(state: Any, value: Term, kind: Kind) -> bool:
        """A property whose value is a symbolic condition: decided by the model's solver
        against the state's path condition (issue 6: violated when the path condition and
        the bad case are satisfiable together)."""
        if possible is None:
            raise EvalError("the expression is symbolic but the model cannot decide it")
        if kind is Kind.ALWAYS:
            return not possible(state, lnot(truth(value)))
        return bool(possible(state, truth(value)))

    def decide(index: int, verdict: Verdict, message: str, key: Hashable | None) -> None:
        nonlocal undecided
        decided[index] = (verdict, message, key)
        undecided -= 1

    def check_state(
        state: Any, key: Hashable, vocab: Mapping[str, Any] | None = None
    ) -> list[tuple[int, Predicate, Kind, bool]]:
        """Evaluate discovery checks on a new state; return the still-undecided ones."""
        if vocab is None:
            vocab = vocabulary(state)
        remaining = on_new
        for entry in on_new:
            index, predicate, kind, when_false = entry
            try:
                value = predicate(vocab)
                if isinstance(value, Term):
                    value = settle(state, value, kind)
            except Exception as exc:  # a property error must not stop the others
                decide(index, Verdict.ERROR, "the expression failed: " + _describe(exc), key)
            else:
                if (not value) is when_false:
                    if kind is Kind.REACHABLE:
                        decide(index, Verdict.HOLDS, "witness found", key)
                    else:
                        decide(index, Verdict.VIOLATED, "counterexample found", key)
                else:
                    continue
            remaining = [e for e in remaining if e[0] != index]
        return remaining

    def check_dead(state: Any, key: Hashable) -> list[tuple[int, Predicate | None, Kind]]:
        """Checks on a state with no enabled action; return the still-undecided ones."""
        remaining = on_dead
        for entry in on_dead:
            index, predicate, kind = entry
            try:
                if kind is Kind.FINAL:
                    assert predicate is not None
                    value = predicate(vocabulary(state))
                    if isinstance(value, Term):
                        value = settle(state, value, Kind.ALWAYS)
                    bad = not value
                    message = "final state violates the expression"
                else:
                    bad = not is_terminal(state)
                    message = "deadlock: no enabled action in a non-terminal state"
            except Exception as exc:
                what = "expression" if kind is Kind.FINAL else "model's is_terminal"
                decide(index, Verdict.ERROR, f"the {what} failed: {_describe(exc)}", key)
            else:
                if not bad:
                    continue
                decide(index, Verdict.VIOLATED, message, key)
            remaining = [e for e in remaining if e[0] != index]
        return remaining

    frontier: list[Any] = []
    successors: list[Any] = []
    exhausted = False
    model_error: str | None = None
    try:
        for index, state in enumerate(system.init_states()):
            key = state if identity else fp(state)
            if key in parents:
                continue
            if states >= max_states:
                stop_reason = f"max_states={bounds.max_states} reached"
                raise _Stop
            parents[key] = (None, index)
            states += 1
            frontier.append(state)
            if on_new:
                on_new = check_state(state, key)
                if not undecided:
                    raise _Stop

        expansions = 0
        # Look at the clock before expansion `clock_at`; a look measures the `stride`
        # expansions since the previous one.
        clock_at, stride = 2, 1
        last_look = time.perf_counter()
        while frontier:
            last_level = depth >= max_depth
            successors = []
            append = successors.append
            for state in frontier:
                expansions += 1
                if expansions >= clock_at:
                    now = time.perf_counter()
                    if deadline is not None and now >= deadline:
                        stop_reason = f"timeout={bounds.timeout}s reached"
                        raise _Stop
                    if progress is not None:
                        progress(states, depth, now - started)
                    # Adapt the stride so that looks come every ~_CLOCK_PERIOD seconds
                    # whether a state takes a microsecond or a second to expand.
                    spent = now - last_look
                    stride = (
                        min(_CLOCK_MAX_STRIDE, stride * 2) if spent <= 0
                        else max(1, min(_CLOCK_MAX_STRIDE, int(stride * _CLOCK_PERIOD / spent)))
                    )
                    last_look = now
                    clock_at = expansions + stride
                key = state if identity else fp(state)
                enabled = actions_of(state)
                count = len(enabled)
                transitions += count
                if not count:
                    if on_dead:
                        on_dead = check_dead(state, key)
                        if not undecided:
                            raise _Stop
                    continue
                for choice, action in enumerate(enabled):
                    succ = next_state(state, action)
                    succ_key = succ if identity else fp(succ)
                    if succ_key in parents:
                        continue
                    if last_level:
                        cut = True
                        continue
                    if states >= max_states:
                        stop_reason = f"max_states={bounds.max_states} reached"
                        raise _Stop
                    parents[succ_key] = (key, choice)
                    states += 1
                    append(succ)
                    if on_new:
                        # Fast path: look for a deciding check; settle it in check_state.
                        vocab = vocabulary(succ)
                        for _, predicate, _, when_false in on_new:
                            try:
                                fast = predicate(vocab)
                                if isinstance(fast, Term) or (not fast) is when_false:
                                    break
                            except Exception:
                                break
                        else:
                            continue
                        on_new = check_state(succ, succ_key, vocab)
                        if not undecided:
                            raise _Stop
            if last_level:
                if cut:
                    stop_reason = f"max_depth={bounds.max_depth} reached"
                    raise _Stop
                break
            frontier = successors
            successors = []
            if frontier:
                depth += 1
        exhausted = True
    except _Stop:
        pass
    except Exception as exc:
        # The model itself failed: every undecided property is an error, with the reason.
        model_error = "the model raised " + _describe(exc)
        for index in range(len(checks)):
            if index not in decided:
                decide(index, Verdict.ERROR, model_error, None)

    if successors:
        depth += 1  # stopped while discovering the next level
    stats = Stats(states, transitions, depth, time.perf_counter() - started)
    outcomes = tuple(
        _outcome(system, parents, checks[i], decided.get(i), stop_reason, stats)
        for i in range(len(checks))
    )
    if not exhausted and stop_reason is None:
        stop_reason = model_error or "every property decided"
    return Exploration(
        outcomes, stats, exhausted, stop_reason, parents.keys() if identity else None
    )


def _outcome(
    system: TransitionSystem[Any, Any],
    parents: Mapping[Hashable, tuple[Hashable | None, int]],
    check: Check,
    decision: tuple[Verdict, str, Hashable | None] | None,
    stop_reason: str | None,
    stats: Stats,
) -> Outcome:
    if decision is not None:
        verdict, message, key = decision
        trace = None
        if key is not None:
            trace = replay(system, choices_to(parents, key))
            message = f"{message} at depth {trace.length}"
        return Outcome(verdict, message, trace)
    if stop_reason is not None:
        return Outcome(
            Verdict.INCOMPLETE,
            f"exploration stopped ({stop_reason}) after {stats.states} states, depth "
            f"{stats.depth}, before the property was decided",
        )
    if check.kind is Kind.REACHABLE:
        return Outcome(
            Verdict.VIOLATED, f"no reachable state satisfies the expression ({stats.states} states)"
        )
    return Outcome(Verdict.HOLDS, f"holds in all {stats.states} reachable states")


def _describe(exc: BaseException) -> str:
    text = str(exc)
    name = type(exc).__name__
    if type(exc).__module__.startswith("checker"):
        return text or name
    return f"{name}: {text}" if text else name


def _identity(state: Any) -> Hashable:
    return state  # type: ignore[no-any-return]


def _never(state: Any) -> bool:
    return False
