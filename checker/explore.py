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

import gc
import sys
import time
from collections.abc import Callable, Collection, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from checker.expr import EvalError
from checker.interface import TransitionSystem
from checker.parallel import Pool as _Pool
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
class Options:
    """How to explore (none of these changes a verdict).

    compact:  keep 64-bit fingerprints of visited states instead of the states (parents
              are fingerprints too; full states live only in the frontier); the run
              reports the probability that two distinct states shared a fingerprint.
    symmetry: explore one representative per orbit of the model's symmetry (the model's
              `representative(state)`); counterexamples are mapped back to real paths.
    workers:  expand each BFS level in this many processes (fork); the level is merged
              in the sequential order, so counts, verdicts and traces are the same.
    por:      partial-order reduction: expand a persistent set the model names (its
              `persistent_sets`) when its steps are invisible to every property and none
              leads to a state already expanded (the BFS cycle proviso); counterexamples
              stay real paths but need not be shortest.
    """

    compact: bool = False
    symmetry: bool = False
    workers: int = 1
    por: bool = False


@dataclass(frozen=True)
class Check:
    """A property as the engine sees it: a kind and, except for deadlock_free, a
    predicate over the state's vocabulary (an `Expr.evaluate`)."""

    kind: Kind
    predicate: Predicate | None = None
    name: str = ""
    # The vocabulary names the predicate reads (partial-order reduction keeps the steps
    # that change them); None: unknown, every step counts as visible.
    reads: frozenset[str] | None = None


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
    # With 64-bit fingerprints: the chance that two of the distinct states shared one and
    # a state was wrongly skipped (TLC's optimistic estimate n^2 / 2^65); else 0.
    collision_probability: float = 0.0
    workers: int = 1
    reduced: bool = False  # symmetry reduction was on (traces need not be shortest)
    # Partial-order reduction was on: how many expansions took a persistent set.
    por: bool = False
    persistent_expansions: int = 0

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


def fingerprint64(state: Hashable) -> int:
    """A 64-bit fingerprint: the state's own hash (tuples of ints and strings)."""
    return hash(state) & 0xFFFF_FFFF_FFFF_FFFF


def explore(
    system: TransitionSystem[Any, Any],
    checks: Sequence[Check],
    bounds: Bounds | None = None,
    fingerprint: Callable[[Any], Hashable] | None = None,
    progress: Progress | None = None,
    options: Options | None = None,
) -> Exploration:
    """Explore `system` breadth-first and decide every check in one pass."""
    options = options or Options()
    bounds = bounds or Bounds()
    if options.compact and fingerprint is None:
        fingerprint = fingerprint64
    represent: Callable[[Any], Any] | None = None
    if options.symmetry:
        represent = getattr(system, "representative", None)
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
    raw_next = system.next_state
    next_state = raw_next if represent is None else (
        lambda state, action: represent(raw_next(state, action))
    )
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

    # Partial-order reduction: the model names persistent sets whose steps change nothing
    # the undecided properties read (invisible); one is taken when no step in it leads to
    # a state already expanded (the BFS cycle proviso, below). With symmetry reduction
    # too, the sets are taken at representatives and the proviso looks at their
    # successors' representatives.
    persistent: Callable[[Any, Sequence[Any], frozenset[str]], Any] | None = None
    if options.por:
        persistent = getattr(system, "persistent_sets", None)
    reductions = 0
    # The states whose expansion has begun. A cycle of the reduced graph closes, at the
    # last of its states to be expanded, on one already expanded: so a persistent set
    # with a step into `closed` is not taken (Bosnacki & Holzmann's BFS proviso; a step
    # into a visited state still waiting in the queue closes no cycle yet).
    closed: set[Any] = set()

    def observed() -> frozenset[str] | None:
        """What the undecided discovery checks read (None: something unknown)."""
        names: set[str] = set()
        for index, _, _, _ in on_new:
            reads = checks[index].reads
            if reads is None:
                return None
            names |= reads
        return frozenset(names)

    def reduce(state: Any, enabled: Sequence[Any]) -> list[tuple[int, Any]] | None:
        assert persistent is not None
        seen = observed()
        if seen is None:
            return None
        for indexes in persistent(state, enabled, seen):
            succs = []
            for i in indexes:
                succ = raw_next(state, enabled[i])
                if represent is not None:
                    succ = represent(succ)
                if (succ if identity else fp(succ)) in closed:
                    break  # the cycle proviso
                succs.append((i, succ))
            else:
                return succs
        return None

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
    pool = _Pool(system, next_state, [c.predicate for c in checks], options.workers)
    # States are acyclic tuples that reference counting frees; the cyclic collector would
    # only rescan the ever-growing visited set (a third of the time on kexec).
    collecting = gc.isenabled()
    gc.disable()
    try:
        for index, state in enumerate(system.init_states()):
            if represent is not None:
                state = represent(state)
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
            # With workers, the level's successors are computed in parallel, then merged
            # here in exactly the sequential order.
            expanded = (
                pool.expand(frontier) if pool.active(frontier) and persistent is None else None
            )
            for position, state in enumerate(frontier):
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
                if expanded is not None:
                    count, computed = expanded[position]
                else:
                    enabled = actions_of(state)
                    count = len(enabled)
                    computed = None
                    if persistent is not None:
                        closed.add(key)
                    if persistent is not None and count > 1:
                        computed = reduce(state, enabled)
                        if computed is not None:
                            count = len(computed)
                            reductions += 1
                transitions += count
                if not count:
                    if on_dead:
                        on_dead = check_dead(state, key)
                        if not undecided:
                            raise _Stop
                    continue
                pairs = computed if computed is not None else (
                    (choice, raw_next(state, action)) for choice, action in enumerate(enabled)
                )
                for choice, succ in pairs:
                    succ_key = succ if identity else fp(succ)
                    if succ_key in parents:
                        continue
                    if represent is not None and computed is None:
                        # Only representatives are stored, so a successor found as it is
                        # needs no representative; the others are mapped now.
                        succ = represent(succ)
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

    finally:
        pool.close()
        if collecting:
            gc.enable()
    if successors:
        depth += 1  # stopped while discovering the next level
    stats = Stats(
        states, transitions, depth, time.perf_counter() - started,
        collision_probability=(states * states / 2.0**65) if options.compact else 0.0,
        workers=pool.workers, reduced=represent is not None,
        por=persistent is not None, persistent_expansions=reductions,
    )
    outcomes = tuple(
        _outcome(system, parents, checks[i], decided.get(i), stop_reason, stats, represent)
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
    represent: Callable[[Any], Any] | None = None,
) -> Outcome:
    if decision is not None:
        verdict, message, key = decision
        trace = None
        if key is not None:
            choices = choices_to(parents, key)
            target: Any = system
            if represent is not None:
                real = _real_choices(system, represent, choices)
                if real is not None:
                    choices = real
                    message += " (symmetry reduction: a real path, shortest up to CPU renaming)"
                else:
                    target = _Represented(system, represent)
                    message += " (symmetry reduction: a path through orbit representatives)"
            trace = replay(target, choices)
            message = f"{message} at depth {trace.length}"
            if stats.por:
                message += " (partial-order reduction: a real path, not necessarily the shortest)"
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


def _real_choices(
    system: TransitionSystem[Any, Any], represent: Callable[[Any], Any], choices: Sequence[int]
) -> tuple[int, ...] | None:
    """Map a path through orbit representatives to a path of the real system: from the
    real initial state, each step takes the action whose successor lies in the next
    representative's orbit (the model is symmetric, so one exists)."""
    inits = system.init_states()
    reps = [represent(s) for s in inits]
    target = represent(reps[choices[0]])
    index = next(i for i, s in enumerate(inits) if represent(s) == target)
    state = inits[index]
    out = [index]
    rep_state = reps[choices[0]]
    for choice in choices[1:]:
        rep_state = represent(system.next_state(rep_state, system.actions(rep_state)[choice]))
        for k, action in enumerate(system.actions(state)):
            succ = system.next_state(state, action)
            if represent(succ) == rep_state:
                out.append(k)
                state = succ
                break
        else:
            # The model's representative is not canonical here (a tie it could not break):
            # the caller shows the path through representatives instead.
            return None
    return tuple(out)


class _Represented:
    """A system whose states are orbit representatives (to replay a reduced path)."""

    def __init__(self, system: Any, represent: Callable[[Any], Any]):
        self._system = system
        self._represent = represent

    def init_states(self) -> list[Any]:
        return [self._represent(s) for s in self._system.init_states()]

    def next_state(self, state: Any, action: Any) -> Any:
        return self._represent(self._system.next_state(state, action))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._system, name)


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
