"""Breadth-first exploration of any `TransitionSystem`, checking a group of properties.

The visited dict maps a state's fingerprint to its BFS parent link (parent fingerprint,
choice index), so the shortest path to any state is a choice sequence that `replay`
turns back into states. By default a state is its own fingerprint; a caller may plug in
e.g. a 64-bit hash to save memory (at the usual risk of a collision).

Order comes only from `init_states()` and `actions()`: the exploration, the counters and
every counterexample are the same on every run.

Properties are checked as states are first discovered (always/never/reachable), so the
first hit is at the smallest depth, or as states are expanded (final/deadlock_free, which
need the enabled actions); the rules are `checker.rules`. Exploration stops as soon as
every property is decided; a `holds` for an invariant needs the exhaustive end, and when
a bound (states, depth, time) ends exploration first, the undecided properties are
`incomplete`, never `holds`.

The search (`_Search`) is a loop over BFS levels and a few strategies: `Clock` (time
bound, progress), `PropertyTracker` (which checks are undecided, judging states),
`Visited` (states or fingerprints, with parent links), `PartialOrder` (persistent sets
and the cycle proviso), `Symmetry` (orbit representatives, and real paths for their
traces) and the worker `Pool`. A level without any of them runs in `_Search._level`, the
tight loop; otherwise in `_Search._level_reduced`.
"""

from __future__ import annotations

import gc
import os
import sys
import time
from collections.abc import Callable, Collection, Hashable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from checker.fingerprint import fingerprint64
from checker.fpset import FingerprintTable, SpillingFrontier
from checker.interface import (
    Capabilities,
    Reducible,
    Symbolic,
    Symmetric,
    TransitionSystem,
    capabilities,
    describe_action,
    require_core,
)
from checker.limits import ResourceLimit, deadline
from checker.liveness import Fairness, LiveCheck, LivenessGraph, actor_of
from checker.parallel import Pool as _Pool
from checker.rules import DECIDING_VALUE, decides, decision, exhausted, final_violated
from checker.symbolic import Term
from checker.trace import Trace, choices_to, rebuild
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

    def limits(self) -> tuple[int, int]:
        """(max_states, max_depth) as numbers the search compares with (unbounded: the
        largest)."""
        return (
            self.max_states if self.max_states is not None else sys.maxsize,
            self.max_depth if self.max_depth is not None else sys.maxsize,
        )


@dataclass(frozen=True)
class Budget:
    """Limits on the whole run, which every exploration's clock also watches.

    deadline:    a `time.monotonic()` instant at which the run stops (`--timeout`);
    max_memory:  bytes of this process's resident memory beyond which it stops, before the
                 machine runs out (`--max-memory`);
    interrupted: why the run was asked to stop (SIGINT, SIGTERM), or None.
    An exploration a budget stops leaves its undecided properties `incomplete`.
    """

    deadline: float | None = None
    timeout: float | None = None  # the run's timeout, for the message
    max_memory: int | None = None
    interrupted: Callable[[], str | None] | None = None

    def exceeded(self) -> str | None:
        """Why the run must stop now, or None."""
        if self.interrupted is not None:
            why = self.interrupted()
            if why is not None:
                return why
        if self.deadline is not None and time.monotonic() >= self.deadline:
            return f"the run's timeout={self.timeout}s reached"
        if self.max_memory is not None:
            used = resident_memory()
            if used is not None and used >= self.max_memory:
                return (
                    f"max_memory={memory_text(self.max_memory)} reached "
                    f"({memory_text(used)} resident)"
                )
        return None


def resident_memory() -> int | None:
    """This process's resident memory in bytes (Linux /proc; else the peak from
    getrusage, which only grows, so it bounds the same), or None when unknown."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE_SIZE
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    except (ImportError, OSError):
        return None
    return int(peak) * (1 if sys.platform == "darwin" else 1024)  # macOS: bytes; else KiB


def memory_text(size: int) -> str:
    """A byte count for messages: 1.5GiB, 512MiB."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.3g}{unit}"
    return f"{size}B"


try:
    _PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
except (AttributeError, ValueError, OSError):
    _PAGE_SIZE = 4096


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
    backend:  explore on a cluster instead (`checker.distributed.RayBackend`, which
              `checker.run` calls): None, in this process.
    spill:    with `compact`, the states of one BFS level kept in memory; the level's
              further states are pickled to a temporary file and read back in order
              (`checker.fpset.SpillingFrontier`); None: every level in memory.
    """

    compact: bool = False
    symmetry: bool = False
    workers: int = 1
    por: bool = False
    backend: Any = None
    spill: int | None = 200_000


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
    # An observation, not a property (the vacuity check's `reachable` of an antecedent or
    # of an event delivery): judged like the others while exploration goes on, but never
    # a reason to go on; undecided when the others are, it is `incomplete`.
    passive: bool = False
    # Liveness kinds (eventually, leads_to): `leads_to`'s conclusion, the fairness
    # assumed, and how to name it in the verdict (checker.liveness).
    conclusion: Predicate | None = None
    fairness: Fairness | None = None
    fairness_text: str = ""


@dataclass(frozen=True)
class CheckOutcome:
    """What one exploration found for one check."""

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
    # States expanded in full without asking the model, where sets were too rare to pay.
    persistent_skipped: int = 0
    # Liveness: seconds of the SCC passes (after exploration, included in `seconds`), and
    # bytes of the state graph they ran on (0: no liveness property).
    liveness_seconds: float = 0.0
    graph_bytes: int = 0
    # With --compact: bytes of the fingerprint table (fingerprints, parent links, index).
    table_bytes: int = 0

    @property
    def states_per_second(self) -> float:
        return self.states / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class Exploration:
    outcomes: tuple[CheckOutcome, ...]  # one per check, in the order given
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
    """Internal: exploration ends early (a bound, with its reason; or all decided)."""

    def __init__(self, reason: str | None = None):
        super().__init__(reason)
        self.reason = reason


# -- strategies ------------------------------------------------------------------------------


class Clock:
    """The time bound, the run's budget and the progress callback. Looks at the clock aim
    at one every _CLOCK_PERIOD seconds, at most _CLOCK_MAX_STRIDE expansions apart; the
    explorer calls `look` when its expansion count reaches `at`."""

    def __init__(
        self, timeout: float | None, progress: Progress | None, started: float,
        budget: Budget | None = None,
    ):
        self.timeout = timeout
        self.deadline = started + timeout if timeout is not None else None
        self.progress = progress
        self.started = started
        self.budget = budget
        # Look before expansion `at`; a look measures the `stride` expansions since the
        # previous one.
        self.at = 2
        self.stride = 1
        self.last_look = started

    def start(self) -> None:
        self.last_look = time.perf_counter()

    def check(self) -> None:
        """Stop when the time bound or the run's budget (time, memory, a signal) says so."""
        if self.deadline is not None and time.perf_counter() >= self.deadline:
            raise _Stop(f"timeout={self.timeout}s reached")
        if self.budget is not None:
            why = self.budget.exceeded()
            if why is not None:
                raise _Stop(why)

    def look(self, expansions: int, states: int, depth: int) -> int:
        """Check the deadline, report progress; return the expansion to look at next."""
        self.check()
        now = time.perf_counter()
        if self.progress is not None:
            self.progress(states, depth, now - self.started)
        # Adapt the stride so that looks come every ~_CLOCK_PERIOD seconds whether a state
        # takes a microsecond or a second to expand.
        spent = now - self.last_look
        stride = self.stride
        self.stride = (
            min(_CLOCK_MAX_STRIDE, stride * 2) if spent <= 0
            else max(1, min(_CLOCK_MAX_STRIDE, int(stride * _CLOCK_PERIOD / spent)))
        )
        self.last_look = now
        self.at = expansions + self.stride
        return self.at


# A discovery check: (check index, predicate, kind); a check on states without actions:
# (check index, predicate or None, kind).
_OnNew = tuple[int, Predicate, Kind]
_OnDead = tuple[int, Predicate | None, Kind]


class PropertyTracker:
    """Which checks are decided, where, and how; the rules themselves are in
    `checker.rules`.

    `on_new` (discovery checks: always, never, reachable) and `on_dead` (final,
    deadlock_free) hold the undecided checks; `fast` is `on_new` as (predicate, deciding
    value) pairs for the explorer's look at each new state, which calls `check_new` only
    when a value may decide (or is symbolic, or raised).
    """

    def __init__(
        self, system: TransitionSystem[Any, Any], checks: Sequence[Check],
        symbolic: Symbolic | None,
    ):
        self.checks = checks
        self.vocabulary = system.vocabulary
        self.is_terminal = system.is_terminal
        self.symbolic = symbolic
        self.decided: dict[int, tuple[Verdict, str, Hashable | None]] = {}
        self.undecided = sum(1 for c in checks if not c.passive)  # passive ones never count
        self.on_new: list[_OnNew] = []
        self.on_dead: list[_OnDead] = []
        for index, check in enumerate(checks):
            if check.kind.needs_expr and check.predicate is None:
                raise ValueError(f"check {index} ({check.kind}) needs a predicate")
            if check.kind.liveness:
                continue  # judged on the state graph after exploration (checker.liveness)
            if check.kind.checked_on_discovery:
                assert check.predicate is not None
                self.on_new.append((index, check.predicate, check.kind))
            else:
                self.on_dead.append((index, check.predicate, check.kind))
        self.fast: list[tuple[Predicate, bool]] = []
        self._refresh()

    def _refresh(self) -> None:
        self.fast = [(p, DECIDING_VALUE[kind]) for _, p, kind in self.on_new]

    def decide(self, index: int, verdict: Verdict, message: str, key: Hashable | None) -> None:
        self.decided[index] = (verdict, message, key)
        if not self.checks[index].passive:
            self.undecided -= 1

    def error_all(self, message: str) -> None:
        """The model failed: every undecided check is an error, with the reason."""
        for index in range(len(self.checks)):
            if index not in self.decided:
                self.decide(index, Verdict.ERROR, message, None)

    def observed(self) -> frozenset[str] | None:
        """What the undecided discovery checks read (None: something unknown)."""
        names: set[str] = set()
        for index, _, _ in self.on_new:
            reads = self.checks[index].reads
            if reads is None:
                return None
            names |= reads
        return frozenset(names)

    def check_new(
        self, state: Any, key: Hashable, vocab: Mapping[str, Any] | None = None
    ) -> None:
        """Judge the discovery checks on a new state."""
        if vocab is None:
            vocab = self.vocabulary(state)
        remaining = self.on_new
        for index, predicate, kind in self.on_new:
            try:
                hit = decides(kind, state, predicate(vocab), self.symbolic)
            except ResourceLimit:
                raise  # no answer: the exploration stops, incomplete
            except Exception as exc:  # a property error must not stop the others
                self.decide(index, Verdict.ERROR, "the expression failed: " + _describe(exc), key)
            else:
                if not hit:
                    continue
                self.decide(index, *decision(kind), key)
            remaining = [e for e in remaining if e[0] != index]
        if remaining is not self.on_new:
            self.on_new = remaining
            self._refresh()

    def check_dead(self, state: Any, key: Hashable) -> None:
        """Judge the checks on a state with no enabled action."""
        remaining = self.on_dead
        for index, predicate, kind in self.on_dead:
            try:
                if kind is Kind.FINAL:
                    assert predicate is not None
                    bad = final_violated(state, predicate(self.vocabulary(state)), self.symbolic)
                else:
                    bad = not self.is_terminal(state)
            except ResourceLimit:
                raise
            except Exception as exc:
                what = "expression" if kind is Kind.FINAL else "model's is_terminal"
                self.decide(index, Verdict.ERROR, f"the {what} failed: {_describe(exc)}", key)
            else:
                if not bad:
                    continue
                self.decide(index, *decision(kind), key)
            remaining = [e for e in remaining if e[0] != index]
        self.on_dead = remaining


class Visited:
    """The visited states, each with its BFS parent link (parent key, choice index); a
    state's key is the state itself, or its fingerprint (`--compact`: 64-bit fingerprints
    kept in a `FingerprintTable`, under 16 bytes a state with its parent link)."""

    def __init__(self, fingerprint: Callable[[Any], Hashable] | None, table: bool = False):
        # key -> (parent key, choice), or (parent key, choice, state number) when the
        # exploration records the state graph (liveness)
        self.parents: dict[Hashable, tuple[Any, ...]] | FingerprintTable = (
            FingerprintTable() if table else {}
        )
        self.fingerprint = fingerprint

    def key(self, state: Any) -> Hashable:
        return state if self.fingerprint is None else self.fingerprint(state)

    @property
    def states(self) -> Collection[Any] | None:
        """The visited states themselves (None when only fingerprints are kept)."""
        return self.parents.keys() if self.fingerprint is None else None


class PartialOrder:
    """Partial-order reduction: the model names persistent sets whose steps change nothing
    the undecided properties read (invisible); one is taken when no step in it leads to a
    state already expanded (the BFS cycle proviso). With symmetry reduction too, the sets
    are taken at representatives and the proviso looks at their successors'
    representatives."""

    TRIAL = 2048

    def __init__(
        self, model: Reducible, next_state: Callable[[Any, Any], Any],
        visited: Visited, tracker: PropertyTracker,
    ):
        self.persistent = model.persistent_sets
        self.next_state = next_state  # the representative's, with symmetry
        self.key = visited.key
        self.tracker = tracker
        self.reductions = 0
        # Where the sets are (almost) never found, asking for them costs the whole gain:
        # the model is asked on trials of TRIAL states, and not asked for `pause` states
        # after a trial that found too few (`_judge`). A state not asked is expanded in
        # full, which is always a persistent set, so pausing never changes a verdict.
        self.asked = 0
        self.skipped = 0  # states expanded in full unasked
        self.resume_at = 0  # ask again after this many states asked
        self.judge_at = self.TRIAL
        self.trial_reductions = 0
        self.pause = self.TRIAL * 4
        # The states whose expansion has begun. A cycle of the reduced graph closes, at
        # the last of its states to be expanded, on one already expanded: so a persistent
        # set with a step into `closed` is not taken (Bosnacki & Holzmann's BFS proviso; a
        # step into a visited state still waiting in the queue closes no cycle yet).
        parents = visited.parents
        self.closed: set[Any] | _Expanded = (
            _Expanded(parents) if isinstance(parents, FingerprintTable) else set()
        )

    def reduce(self, state: Any, enabled: Sequence[Any]) -> list[tuple[int, Any]] | None:
        """The (choice, successor) pairs of a persistent set to expand, or None: all."""
        self.asked += 1
        if self.asked <= self.resume_at:
            self.skipped += 1
            return None  # paused: expanding in full is always sound
        if self.asked >= self.judge_at:
            self._judge()
        seen = self.tracker.observed()
        if seen is None:
            return None
        for indexes in self.persistent(state, enabled, seen):
            succs = []
            for i in indexes:
                succ = self.next_state(state, enabled[i])
                if self.key(succ) in self.closed:
                    break  # the cycle proviso
                succs.append((i, succ))
            else:
                self.reductions += 1
                return succs
        return None

    def _judge(self) -> None:
        """At the end of a trial of TRIAL states: pause where sets were found for less
        than one state in a hundred (the model's test then costs more than it saves:
        kexec-4 took 38 % longer with POR, which reduced 5 of 129,426 states), each pause
        twice as long as the last; a trial that pays ends the pauses."""
        found = self.reductions - self.trial_reductions
        if found * 100 < self.TRIAL:
            self.resume_at = self.asked + self.pause
            self.pause *= 2
        else:
            self.pause = self.TRIAL * 4
        self.judge_at = self.resume_at + self.TRIAL
        self.trial_reductions = self.reductions


class _Expanded:
    """The fingerprints whose expansion has begun, with a `FingerprintTable`: states are
    expanded in the order they were discovered, so these are the first `count` ordinals
    (no set of its own)."""

    def __init__(self, table: FingerprintTable):
        self.table = table
        self.count = 0

    def add(self, key: Any) -> None:
        self.count += 1

    def __contains__(self, key: Any) -> bool:
        return 0 <= self.table.ordinal(key) < self.count


class Symmetry:
    """Symmetry reduction: the search sees the quotient system, whose states are the
    model's orbit representatives (its `representative`), and stores only those; a trace
    found there is mapped back to a path of the real system."""

    def __init__(self, model: Symmetric, system: TransitionSystem[Any, Any]):
        self.represent = model.representative
        self.system = system
        self._raw_next = system.next_state

    def init_states(self) -> list[Any]:
        return [self.represent(s) for s in self.system.init_states()]

    def actions(self, state: Any) -> Sequence[Any]:
        return self.system.actions(state)

    def next_state(self, state: Any, action: Any) -> Any:
        return self.represent(self._raw_next(state, action))

    def is_terminal(self, state: Any) -> bool:
        return self.system.is_terminal(state)

    def vocabulary(self, state: Any) -> Mapping[str, Any]:
        return self.system.vocabulary(state)

    def vocabulary_names(self) -> Mapping[str, str]:
        return self.system.vocabulary_names()

    def describe_action(self, state: Any, action: Any) -> Mapping[str, Any]:
        return describe_action(self.system, state, action)

    def trace(self, choices: Sequence[int]) -> tuple[Trace, str]:
        """The trace of a choice sequence through representatives, and how it was found:
        a real path when one maps onto it, else the path through representatives."""
        real = self._real_choices(choices)
        if real is not None:
            return (rebuild(self.system, real),
                    " (symmetry reduction: a real path, shortest up to CPU renaming)")
        return (rebuild(self, choices),
                " (symmetry reduction: a path through orbit representatives)")

    def _real_choices(self, choices: Sequence[int]) -> tuple[int, ...] | None:
        """Map a path through orbit representatives to a path of the real system: from
        the real initial state, each step takes the action whose successor lies in the
        next representative's orbit (the model is symmetric, so one exists)."""
        system, represent = self.system, self.represent
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
                # The model's representative is not canonical here (a tie it could not
                # break): the caller shows the path through representatives instead.
                return None
        return tuple(out)


def explore(
    system: TransitionSystem[Any, Any],
    checks: Sequence[Check],
    bounds: Bounds | None = None,
    fingerprint: Callable[[Any], Hashable] | None = None,
    progress: Progress | None = None,
    options: Options | None = None,
    budget: Budget | None = None,
) -> Exploration:
    """Explore `system` breadth-first and decide every check in one pass; `budget`
    bounds the whole run this exploration is part of."""
    require_core(system)
    options = options or Options()
    bounds = bounds or Bounds()
    table = options.compact and fingerprint is None
    if table:
        fingerprint = fingerprint64
    model = capabilities(system)
    search = _Search(system, checks, bounds, fingerprint, progress, options, model, budget,
                     table)
    return search.run()


class SearchSetup:
    """What a breadth-first search starts with, in this process or driving Ray shards
    (checker.distributed): its bounds' clock and limits, the property tracker, and the
    space it walks (the model's, or its quotient under symmetry: `reduce_by_symmetry`)."""

    def __init__(
        self, system: TransitionSystem[Any, Any], checks: Sequence[Check], bounds: Bounds,
        progress: Progress | None, options: Options, model: Capabilities,
        budget: Budget | None,
    ):
        self.system = system
        self.checks = checks
        self.bounds = bounds
        self.options = options
        self.started = time.perf_counter()
        self.clock = Clock(bounds.timeout, progress, self.started, budget)
        self.max_states, self.max_depth = bounds.limits()
        self.tracker = PropertyTracker(system, checks, model.symbolic)
        self.symmetry: Symmetry | None = None
        self.space: TransitionSystem[Any, Any] = system

    def reduce_by_symmetry(self, model: Capabilities) -> None:
        """Walk the quotient under the model's symmetry, when the options ask for it."""
        if self.options.symmetry and model.symmetric is not None:
            self.symmetry = Symmetry(model.symmetric, self.system)
            self.space = self.symmetry


class _Search(SearchSetup):
    """One breadth-first search: the loop over levels and its strategies."""

    def __init__(
        self, system: TransitionSystem[Any, Any], checks: Sequence[Check], bounds: Bounds,
        fingerprint: Callable[[Any], Hashable] | None, progress: Progress | None,
        options: Options, model: Capabilities, budget: Budget | None = None,
        table: bool = False,
    ):
        super().__init__(system, checks, bounds, progress, options, model, budget)
        self.visited = Visited(fingerprint, table)
        # with the table, big levels spill to disk (the frontiers still open are closed
        # at the end, whatever happens)
        self.spill = options.spill if table else None
        self.spilling: list[SpillingFrontier] = []
        # Liveness properties need the state graph (checker.liveness); it is recorded on
        # the unreduced system in one process (symmetry, partial-order reduction and
        # helper processes are off for such an exploration: see checker.run.split).
        self.live: LivenessGraph | None = None
        self.actor: Callable[[Any, Any], int] = actor_of(system)
        live = [
            LiveCheck(i, c.kind is Kind.LEADS_TO, c.predicate, c.conclusion,
                      c.fairness or Fairness())
            for i, c in enumerate(checks) if c.kind.liveness and c.predicate is not None
        ]
        if live:
            self.live = LivenessGraph(live)
            options = replace(options, symmetry=False, por=False, workers=1)
            self.options = options
        self.live_outcomes: dict[int, CheckOutcome] = {}
        self.live_seconds = 0.0
        self.reduce_by_symmetry(model)
        self.next_state = self.space.next_state
        self.por: PartialOrder | None = None
        if options.por and model.reduces_by_por:
            assert model.reducible is not None
            self.por = PartialOrder(model.reducible, self.next_state, self.visited, self.tracker)
        self.pool = _Pool(system, self.next_state, [c.predicate for c in checks], options.workers)
        self.states = 0
        self.transitions = 0
        self.depth = 0
        self.expansions = 0
        self.cut = False  # the depth bound left some successor unexplored
        self.successors: list[Any] = []

    def run(self) -> Exploration:
        stop_reason: str | None = None
        exhausted = False
        model_error: str | None = None
        # States are acyclic tuples that reference counting frees; the cyclic collector
        # would only rescan the ever-growing visited set (a third of the time on kexec).
        collecting = gc.isenabled()
        gc.disable()
        # what the last search froze (below) may have died since: back in the collector's
        # view, so that a cycle among it is still found once
        gc.unfreeze()
        try:
            at, timeout = self.clock.deadline, self.bounds.timeout
            budget = self.clock.budget
            if budget is not None and budget.deadline is not None:
                # the run's deadline (monotonic), on the steps' clock (perf_counter)
                run_at = budget.deadline - time.monotonic() + time.perf_counter()
                if at is None or run_at < at:
                    at, timeout = run_at, budget.timeout
            with deadline(at, timeout, budget.exceeded if budget is not None else None):
                self._levels()
                exhausted = True
                if self.live is not None:
                    try:
                        self._judge_live()
                    except (_Stop, ResourceLimit) as stop:
                        # every state was explored, but a bound ended the SCC passes: the
                        # liveness properties not judged yet are incomplete
                        why = stop.reason if isinstance(stop, _Stop) else str(stop)
                        self._live_stopped(why or "stopped")
        except _Stop as stop:
            stop_reason = stop.reason
        except ResourceLimit as limit:  # a bound inside a step: incomplete, with the reason
            stop_reason = str(limit)
        except Exception as exc:
            # The model itself failed: every undecided property is an error, with the reason.
            model_error = "the model raised " + _describe(exc)
            self.tracker.error_all(model_error)
        finally:
            self.pool.close()
            for spilled in self.spilling:
                spilled.close()
            if collecting:
                # Everything allocated while the collector was off sits in its youngest
                # generation: its first pass would walk the whole visited set, and the
                # passes after it again (18 of the gate's 84 s). Frozen, the collector
                # skips what exists now; reference counting still frees it.
                gc.freeze()
                gc.enable()
        if self.successors:
            self.depth += 1  # stopped while discovering the next level
        por = self.por
        stats = Stats(
            self.states, self.transitions, self.depth, time.perf_counter() - self.started,
            collision_probability=(
                (self.states * self.states / 2.0**65) if self.options.compact else 0.0
            ),
            workers=self.pool.workers, reduced=self.symmetry is not None,
            por=por is not None, persistent_expansions=por.reductions if por else 0,
            persistent_skipped=por.skipped if por else 0,
            liveness_seconds=self.live_seconds,
            graph_bytes=self.live.nbytes() if self.live is not None else 0,
            table_bytes=(
                self.visited.parents.nbytes()
                if isinstance(self.visited.parents, FingerprintTable) else 0
            ),
        )
        decided = self.tracker.decided
        parents = self.visited.parents
        outcomes = tuple(
            self.live_outcomes[i] if i in self.live_outcomes else
            _outcome(self.system, parents, self.checks[i], decided.get(i), stop_reason, stats,
                     self.symmetry)
            for i in range(len(self.checks))
        )
        if not exhausted and stop_reason is None:
            stop_reason = model_error or "every property decided"
        return Exploration(outcomes, stats, exhausted, stop_reason, self.visited.states)

    def _levels(self) -> None:
        frontier = self._initial()
        plain = self.visited.fingerprint is None and self.symmetry is None and self.por is None
        self.clock.start()
        while frontier:
            last_level = self.depth >= self.max_depth
            # With workers, the level's successors are computed in parallel, then merged
            # here in exactly the sequential order.
            expanded = (
                self.pool.expand(frontier)
                if self.pool.active(frontier) and self.por is None
                and type(frontier) is list else None
            )
            if self.live is not None:
                self._level_graph(frontier, last_level, self.live)
            elif plain and expanded is None:
                self._level(frontier, last_level)
            else:
                self._level_reduced(frontier, last_level, expanded)
            if last_level:
                if self.cut:
                    raise _Stop(f"max_depth={self.bounds.max_depth} reached")
                break
            if isinstance(frontier, SpillingFrontier):
                frontier.close()
                self.spilling.remove(frontier)
            frontier = self.successors
            self.successors = []
            if frontier:
                self.depth += 1

    def _next_level(self) -> list[Any]:
        """A new level for the successors: a list, or one that spills to disk."""
        if self.spill is None:
            return []
        level = SpillingFrontier(self.spill)
        self.spilling.append(level)
        return level  # type: ignore[return-value]  # appended to and read like a list

    def _initial(self) -> list[Any]:
        frontier: list[Any] = []
        parents = self.visited.parents
        live = self.live
        for index, state in enumerate(self.space.init_states()):
            key = self.visited.key(state)
            if key in parents:
                if live is not None:
                    live.initial.append(parents[key][2])
                continue
            if self.states >= self.max_states:
                raise _Stop(f"max_states={self.bounds.max_states} reached")
            if live is not None:
                parents[key] = (None, index, self.states)
                live.initial.append(self.states)
                self._discover_live(key, self.system.vocabulary(state))
            else:
                parents[key] = (None, index)
            self.states += 1
            frontier.append(state)
            if self.tracker.on_new:
                self.tracker.check_new(state, key)
                if not self.tracker.undecided:
                    raise _Stop
        return frontier

    def _level(self, frontier: list[Any], last_level: bool) -> None:
        """Expand one level: the tight loop, for states that are their own keys and no
        reduction or helper process."""
        parents = self.visited.parents
        actions_of = self.system.actions
        next_state = self.system.next_state
        vocabulary = self.system.vocabulary
        tracker = self.tracker
        clock = self.clock
        successors = self.successors = []
        append = successors.append
        fast = tracker.fast
        max_states = self.max_states
        states, transitions, expansions = self.states, self.transitions, self.expansions
        clock_at = clock.at
        try:
            for state in frontier:
                expansions += 1
                if expansions >= clock_at:
                    clock_at = clock.look(expansions, states, self.depth)
                enabled = actions_of(state)
                count = len(enabled)
                transitions += count
                if not count:
                    if tracker.on_dead:
                        tracker.check_dead(state, state)
                        if not tracker.undecided:
                            raise _Stop
                    continue
                for choice, action in enumerate(enabled):
                    succ = next_state(state, action)
                    if succ in parents:
                        continue
                    if last_level:
                        self.cut = True
                        continue
                    if states >= max_states:
                        raise _Stop(f"max_states={self.bounds.max_states} reached")
                    parents[succ] = (state, choice)
                    states += 1
                    append(succ)
                    if fast:
                        # Look for a deciding check; judge it in check_new.
                        vocab = vocabulary(succ)
                        for predicate, deciding in fast:
                            try:
                                value = predicate(vocab)
                                if isinstance(value, Term) or (not value) is not deciding:
                                    break
                            except Exception:
                                break
                        else:
                            continue
                        tracker.check_new(succ, succ, vocab)
                        fast = tracker.fast
                        if not tracker.undecided:
                            raise _Stop
        finally:
            self.states, self.transitions, self.expansions = states, transitions, expansions

    def _discover_live(self, key: Hashable, vocab: Mapping[str, Any]) -> None:
        assert self.live is not None
        for index, why in self.live.discover(vocab):
            if index not in self.tracker.decided:
                self.tracker.decide(index, Verdict.ERROR, why, key)
        if not self.tracker.undecided:
            raise _Stop

    def _level_graph(self, frontier: list[Any], last_level: bool, live: LivenessGraph) -> None:
        """Expand one level recording the state graph for the liveness properties: each
        expanded state's edges (successor's number, choice, actor) and, for each new
        state, its properties' expressions."""
        parents = self.visited.parents
        key_of = self.visited.key
        fps = parents.fps if isinstance(parents, FingerprintTable) else None
        graph = live.graph
        # the graph's arrays, appended to here (StateGraph.add_state, inlined)
        add_target, add_choice = graph.targets.append, graph.choices.append
        add_actor, end_state = graph.actors.append, graph.offsets.append
        edge_count = graph.targets.__len__
        actions_of = self.system.actions
        next_state = self.system.next_state
        vocabulary = self.system.vocabulary
        actor = self.actor
        tracker = self.tracker
        clock = self.clock
        successors = self.successors = self._next_level()
        append = successors.append
        max_states = self.max_states
        states, transitions, expansions = self.states, self.transitions, self.expansions
        clock_at = clock.at
        try:
            for state in frontier:
                expansions += 1
                if expansions >= clock_at:
                    clock_at = clock.look(expansions, states, self.depth)
                # with the table, states are expanded in the order of their ordinals
                key = key_of(state) if fps is None else fps[expansions - 1]
                enabled = actions_of(state)
                count = len(enabled)
                transitions += count
                if not count and tracker.on_dead:
                    tracker.check_dead(state, key)
                    if not tracker.undecided:
                        raise _Stop
                for choice, action in enumerate(enabled):
                    succ = next_state(state, action)
                    succ_key = key_of(succ)
                    if fps is not None:  # (a link's parent is not needed: its number is)
                        number = parents.ordinal(succ_key)  # type: ignore[union-attr,arg-type]
                    else:
                        link = parents.get(succ_key)
                        number = link[2] if link is not None else -1
                    if number < 0:
                        if last_level:
                            self.cut = True
                            continue
                        if states >= max_states:
                            raise _Stop(f"max_states={self.bounds.max_states} reached")
                        number = states
                        parents[succ_key] = (key, choice, number)
                        states += 1
                        append(succ)
                        vocab = vocabulary(succ)
                        self._discover_live(succ_key, vocab)
                        if tracker.fast and _may_decide(tracker.fast, vocab):
                            tracker.check_new(succ, succ_key, vocab)
                            if not tracker.undecided:
                                raise _Stop
                    add_target(number)
                    add_choice(choice)
                    add_actor(actor(state, action))
                end_state(edge_count())
        finally:
            self.states, self.transitions, self.expansions = states, transitions, expansions

    def _judge_live(self) -> None:
        """The SCC pass of each undecided liveness property, after an exhaustive
        exploration."""
        live = self.live
        assert live is not None
        started = time.perf_counter()
        for j, check in enumerate(live.checks):
            if check.index in self.tracker.decided:
                continue
            self.clock.check()  # the bounds hold between the SCC passes too
            lasso = live.judge(j)
            what = self.checks[check.index]
            fair = f" (assuming {what.fairness_text})" if what.fairness_text else ""
            if lasso is None:
                message = (
                    f"holds on every fair behaviour through the {self.states} reachable "
                    f"states{fair}"
                )
                self.live_outcomes[check.index] = CheckOutcome(Verdict.HOLDS, message)
                continue
            trace = replace(rebuild(self.system, lasso.choices), loop_start=lasso.loop_start)
            if lasso.loop:
                size = len(lasso.loop)
                shape = (f"a loop of {size} step{'' if size == 1 else 's'} from state "
                         f"{lasso.loop_start} repeats forever")
            else:
                shape = f"state {lasso.loop_start} has no enabled action and stutters forever"
            owes = "the `to` expression" if check.leads_to else "the expression"
            stem = lasso.loop_start
            message = (
                f"a fair behaviour where {owes} never holds: a stem of {stem} "
                f"step{'' if stem == 1 else 's'}, then {shape}{fair}"
            )
            self.live_outcomes[check.index] = CheckOutcome(Verdict.VIOLATED, message, trace)
        self.live_seconds = time.perf_counter() - started

    def _live_stopped(self, why: str) -> None:
        assert self.live is not None
        for check in self.live.checks:
            if check.index not in self.tracker.decided and check.index not in self.live_outcomes:
                self.live_outcomes[check.index] = CheckOutcome(
                    Verdict.INCOMPLETE,
                    f"the liveness pass stopped ({why}) after exploring all {self.states} "
                    "states, before the property was decided",
                )

    def _level_reduced(
        self, frontier: list[Any], last_level: bool, expanded: Sequence[Any] | None
    ) -> None:
        """Expand one level with fingerprints, symmetry, partial-order reduction or
        successors computed by helper processes (`expanded`)."""
        parents = self.visited.parents
        key_of = self.visited.key
        fps = parents.fps if isinstance(parents, FingerprintTable) else None
        actions_of = self.system.actions
        raw_next = self.system.next_state
        vocabulary = self.system.vocabulary
        represent = self.symmetry.represent if self.symmetry is not None else None
        por = self.por
        tracker = self.tracker
        clock = self.clock
        successors = self.successors = self._next_level()
        append = successors.append
        max_states = self.max_states
        states, transitions, expansions = self.states, self.transitions, self.expansions
        clock_at = clock.at
        try:
            for position, state in enumerate(frontier):
                expansions += 1
                if expansions >= clock_at:
                    clock_at = clock.look(expansions, states, self.depth)
                # with the table, states are expanded in the order of their ordinals
                key = key_of(state) if fps is None else fps[expansions - 1]
                computed: Any = None
                if expanded is not None:
                    count, computed = expanded[position]
                else:
                    enabled = actions_of(state)
                    count = len(enabled)
                    if por is not None:
                        por.closed.add(key)
                        if count > 1:
                            computed = por.reduce(state, enabled)
                            if computed is not None:
                                count = len(computed)
                transitions += count
                if not count:
                    if tracker.on_dead:
                        tracker.check_dead(state, key)
                        if not tracker.undecided:
                            raise _Stop
                    continue
                reduced = computed is not None  # successors already representatives
                pairs = computed if reduced else (
                    (choice, raw_next(state, action)) for choice, action in enumerate(enabled)
                )
                for choice, succ in pairs:
                    succ_key = key_of(succ)
                    if succ_key in parents:
                        continue
                    if represent is not None and not reduced:
                        # Only representatives are stored, so a successor found as it is
                        # needs no representative; the others are mapped now.
                        succ = represent(succ)
                        succ_key = key_of(succ)
                        if succ_key in parents:
                            continue
                    if last_level:
                        self.cut = True
                        continue
                    if states >= max_states:
                        raise _Stop(f"max_states={self.bounds.max_states} reached")
                    parents[succ_key] = (key, choice)
                    states += 1
                    append(succ)
                    if tracker.fast:
                        vocab = vocabulary(succ)
                        for predicate, deciding in tracker.fast:
                            try:
                                value = predicate(vocab)
                                if isinstance(value, Term) or (not value) is not deciding:
                                    break
                            except Exception:
                                break
                        else:
                            continue
                        tracker.check_new(succ, succ_key, vocab)
                        if not tracker.undecided:
                            raise _Stop
        finally:
            self.states, self.transitions, self.expansions = states, transitions, expansions


def _outcome(
    system: TransitionSystem[Any, Any],
    parents: Mapping[Hashable, tuple[Any, ...]],
    check: Check,
    decision: tuple[Verdict, str, Hashable | None] | None,
    stop_reason: str | None,
    stats: Stats,
    symmetry: Symmetry | None = None,
) -> CheckOutcome:
    if decision is not None:
        verdict, message, key = decision
        trace = None
        if key is not None:
            choices = choices_to(parents, key)
            if symmetry is None:
                trace = rebuild(system, choices)
            else:
                trace, how = symmetry.trace(choices)
                message += how
            message = f"{message} at depth {trace.length}"
            if stats.por:
                message += " (partial-order reduction: a real path, not necessarily the shortest)"
        return CheckOutcome(verdict, message, trace)
    if stop_reason is not None:
        return CheckOutcome(
            Verdict.INCOMPLETE,
            f"exploration stopped ({stop_reason}) after {stats.states} states, depth "
            f"{stats.depth}, before the property was decided",
        )
    return CheckOutcome(*exhausted(check.kind, stats.states))


def _may_decide(fast: Sequence[tuple[Predicate, bool]], vocab: Mapping[str, Any]) -> bool:
    """Whether some discovery check may be decided in a state (a deciding value, a
    symbolic one, or a failure): then `PropertyTracker.check_new` judges it."""
    for predicate, deciding in fast:
        try:
            value = predicate(vocab)
        except Exception:
            return True
        if isinstance(value, Term) or (not value) is not deciding:
            return True
    return False


def _describe(exc: BaseException) -> str:
    text = str(exc)
    name = type(exc).__name__
    if type(exc).__module__.startswith("checker"):
        return text or name
    return f"{name}: {text}" if text else name
