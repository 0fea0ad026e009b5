"""Breadth-first exploration on a Ray cluster (`--backend ray`), beyond one machine.

The search is level-synchronous. The visited set is sharded by 64-bit fingerprint
(`checker.fingerprint.fingerprint64`, stable across processes)
over `Shard` actors: shard `fp % n` owns a state, keeps its parent link (parent
fingerprint, choice index) and, while the state waits in the frontier, the state itself.
At each level every shard expands the frontier states it owns and routes each successor to
its owning shard, which drops those already visited and, of the candidates for one new
state, keeps the first in the sequential order. Nothing but the fingerprint links and the
level's frontier stays on the shards; the driver (this process) decides the properties.

Same counts, verdicts and traces as the in-process explorer (`checker.explore`): each
frontier state carries its sequential position as an order key (a level's keys are
`parent key * C + choice`, C the level's largest number of enabled actions, so comparing
keys is comparing (parent position, choice) as the in-process loop meets them); a shard
keeps, for each new state, the candidate with the smallest key, which is the sequential
loop's first discovery and hence its parent link; and the driver replays the level's
deciding events (a new state where some undecided property may be decided, a state
without enabled actions, a model error) in key order through the same `PropertyTracker`,
stopping where the sequential loop would stop, and counts the states and transitions
before that point from the shards. A trace is the chain of parent links, fetched from
the shards (`checker.trace.choices_to`), replayed by `checker.trace.rebuild` here.

The model reaches the shards as a `Recipe` (the model provider and the group's design,
variant and environment), from which each shard loads its own copy: a loaded system holds
z3 objects that do not pickle. The checks' predicates (parsed expressions) are sent as
they are.

Symmetry reduction works (the shards store orbit representatives). Not with Ray:
partial-order reduction (its cycle proviso depends on the order of expansion in one
process; `checker.cli` refuses it) and liveness properties, which need the whole state
graph in one process (`checker.run` explores them here, saying so). Bounds: `max_states`
and `max_depth` stop exactly where the in-process explorer stops; a timeout or the run's
budget is looked at between levels and, inside a step, through the deadline a shard is
given (`checker.limits`).
"""

from __future__ import annotations

import bisect
import gc
import os
import pickle
import sys
import time
from collections.abc import Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from checker.errors import UsageError
from checker.explore import (
    Bounds,
    Budget,
    Check,
    Exploration,
    Options,
    Progress,
    PropertyTracker,
    SearchSetup,
    Stats,
    Symmetry,
    _describe,
    _may_decide,
    _outcome,
    _Stop,
)
from checker.fingerprint import fingerprint64
from checker.interface import ModelProvider, TransitionSystem, capabilities
from checker.limits import ResourceLimit, deadline
from checker.rules import DECIDING_VALUE

INSTALL_HINT = "pip install 'irq-checker[distributed]'"
# A parent link packed in one int: (parent fingerprint + 1) << _CHOICE_BITS | choice.
_CHOICE_BITS = 24
_CHOICE_MASK = (1 << _CHOICE_BITS) - 1


def ray_module() -> Any:
    """The `ray` package, or a usage error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise UsageError(f"--backend ray needs Ray: {INSTALL_HINT}") from None
    return ray


@dataclass(frozen=True)
class Recipe:
    """What a shard needs to load the group's transition system itself."""

    provider: ModelProvider
    design: str
    variant: tuple[tuple[str, str], ...]
    environment: tuple[tuple[str, Any], ...]

    def load(self) -> TransitionSystem[Any, Any]:
        return self.provider.load(self.design, dict(self.variant), dict(self.environment))


@dataclass(frozen=True, eq=False)
class RayBackend:
    """`--backend ray`: the cluster to join (None: start one on this machine, on the
    loopback address, or join the one `ray.init()` already made), how many shards (None:
    one per CPU of the cluster), and the provider the shards load systems with."""

    provider: ModelProvider
    address: str | None = None
    shards: int | None = None
    _pool: list[Any] = field(default_factory=list, repr=False)

    def recipe(self, design: str, variant: Mapping[str, str],
               environment: Mapping[str, Any]) -> Recipe:
        return Recipe(self.provider, design, tuple(sorted(variant.items())),
                      tuple(sorted(environment.items())))

    def handles(self) -> list[Any]:
        """The shard actors (started once, reused by every exploration of the run)."""
        if self._pool:
            return self._pool
        ray = ray_module()
        if not ray.is_initialized():
            # Ray reports usage statistics to its vendor unless told not to: nothing leaves
            # the machine but what the user sends to their own cluster.
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
            if self.address is None:
                ray.init(include_dashboard=False, _node_ip_address="127.0.0.1",
                         log_to_driver=False, configure_logging=False)
            else:
                ray.init(address=self.address, log_to_driver=False, configure_logging=False)
        count = self.shards or max(1, int(ray.cluster_resources().get("CPU", 1)))
        actor = ray.remote(num_cpus=0, scheduling_strategy="SPREAD")(Shard)
        self._pool.extend(actor.remote() for _ in range(count))
        return self._pool


def explore_ray(
    backend: RayBackend, recipe: Recipe, system: TransitionSystem[Any, Any],
    checks: Sequence[Check], bounds: Bounds | None = None, progress: Progress | None = None,
    options: Options | None = None, budget: Budget | None = None,
) -> Exploration:
    """`checker.explore.explore` on Ray: the same outcomes, counts and traces."""
    if any(c.kind.liveness for c in checks):
        raise ValueError("liveness properties are explored in one process (checker.run)")
    options = options or Options()
    return _Driver(backend, recipe, system, checks, bounds or Bounds(), progress, options,
                   budget).run()


# -- the shards ------------------------------------------------------------------------------


# A candidate successor sent to its owner: (fingerprint, parent fingerprint, parent key,
# choice, state).
_Candidate = tuple[int, int, int, int, Any]
# A deciding event for the driver: (parent key, choice (-1: the state itself), state).
_Event = tuple[int, int, Any]


class Shard:
    """One part of the visited set, and the frontier states it owns (a Ray actor; a plain
    object in tests)."""

    def __init__(self) -> None:
        self.recipe_key: bytes = b""
        self.system: Any = None
        self.space: Any = None
        self.visited: dict[int, int] = {}
        self.frontier: list[tuple[int, int, Any]] = []  # (key, fingerprint, state)
        self.keys: list[int] = []  # the frontier's keys, expanded so far
        self.counts: list[int] = []  # their numbers of enabled actions
        self.new: list[tuple[int, int, Any]] = []  # this level's new states (next frontier)
        self.new_order: list[tuple[int, int]] = []  # their (parent key, choice)
        self.routed = [0, 0]  # candidates sent: to this shard, to the others
        self.cpu = 0.0
        self.fingerprint = fingerprint64

    def prepare(self, recipe: Recipe, checks: Sequence[Check], symmetry: bool, index: int,
                count: int) -> int:
        """Load the system (unless it is the one loaded last) and forget the last
        exploration; returns the process id (for tests)."""
        key = pickle.dumps((recipe, symmetry))
        if key != self.recipe_key:
            system = recipe.load()
            model = capabilities(system).symmetric
            self.system = system
            self.space = Symmetry(model, system) if symmetry and model is not None else system
            self.recipe_key = key
        self.checks = checks
        self.symbolic = capabilities(self.system).symbolic
        self.index, self.count = index, count
        self.visited = {}
        self.frontier, self.keys, self.counts, self.new, self.new_order = [], [], [], [], []
        self.routed = [0, 0]
        self.cpu = time.process_time()
        gc.disable()  # states are acyclic; the collector would rescan the visited set
        gc.unfreeze()  # the last exploration's, frozen by `release`
        return os.getpid()

    def release(self) -> None:
        """The exploration is over: free the frontier (the visited set stays until the
        next `prepare`, for `size`)."""
        self.frontier, self.new = [], []
        gc.freeze()  # as checker.explore does: the collector's next pass skips the visited set
        gc.enable()

    def seed(self, states: Sequence[tuple[int, int, Any]]) -> None:
        """The initial states it owns: (key = initial index, fingerprint, state)."""
        for key, fp, _ in states:
            self.visited[fp] = key
        self.new = list(states)

    def expand(self, dead: Sequence[int], seconds: float | None) -> tuple[Any, ...]:
        """Expand the frontier it owns (the new states of the last level): a summary and
        one batch of candidates per shard. The summary: (largest number of enabled
        actions, transitions, events of states without enabled actions that may decide a
        `dead` check, the first model error as (key, choice, message, is a limit))."""
        self.frontier, self.new, self.new_order = self.new, [], []
        self.keys, self.counts = [], []
        count, visited, index = self.count, self.visited, self.index
        batches: list[list[_Candidate]] = [[] for _ in range(count)]
        seen: set[Any] = set()  # this level's successors: each fingerprinted once
        actions_of, next_state = self.space.actions, self.space.next_state
        fingerprint = self.fingerprint
        judge = _DeadJudge(self, dead) if dead else None
        widest = transitions = 0
        events: list[_Event] = []
        error: tuple[int, int, str, bool] | None = None
        keys, counts = self.keys, self.counts
        at = time.perf_counter() + seconds if seconds is not None else None
        with deadline(at, seconds):
            for key, fp, state in self.frontier:
                choice = -1
                try:
                    enabled = actions_of(state)
                    width = len(enabled)
                    keys.append(key)
                    counts.append(width)
                    transitions += width
                    if width > widest:
                        widest = width
                    if not width:
                        if judge is not None and judge.decides(state):
                            events.append((key, -1, state))
                        continue
                    for choice, action in enumerate(enabled):
                        succ = next_state(state, action)
                        if succ in seen:
                            continue
                        seen.add(succ)
                        succ_fp = fingerprint(succ)
                        owner = succ_fp % count
                        if owner == index and succ_fp in visited:
                            continue
                        batches[owner].append((succ_fp, fp, key, choice, succ))
                except ResourceLimit as limit:
                    error = (key, choice, str(limit), True)
                    break
                except Exception as exc:
                    error = (key, choice, "the model raised " + _describe(exc), False)
                    break
        sent = sum(len(b) for b in batches)
        self.routed[0] += len(batches[index])
        self.routed[1] += sent - len(batches[index])
        return ((widest, transitions, events, error), *batches)

    def receive(self, width: int, new: Sequence[int], last_level: bool,
                *batches: Sequence[_Candidate]) -> tuple[int, bool, list[_Event]]:
        """Keep the candidates it owns that are new, each with its first discovery (the
        smallest key); the count of new states, whether the depth bound cut any (at the
        last level nothing is kept), and the events of new states that may decide one of
        the `new` (undecided discovery) checks."""
        visited = self.visited
        best: dict[int, _Candidate] = {}
        for batch in batches:
            for cand in batch:
                fp = cand[0]
                if fp in visited:
                    continue
                old = best.get(fp)
                if old is None or (cand[2], cand[3]) < (old[2], old[3]):
                    best[fp] = cand
        if last_level:
            return 0, bool(best), []
        winners = sorted(best.values(), key=lambda c: (c[2], c[3]))
        fast = [(self.checks[i].predicate, DECIDING_VALUE[self.checks[i].kind]) for i in new]
        vocabulary = self.space.vocabulary
        events: list[_Event] = []
        out, order = self.new, self.new_order
        for fp, parent, pkey, choice, succ in winners:
            visited[fp] = ((parent + 1) << _CHOICE_BITS) | choice
            out.append((pkey * width + choice, fp, succ))
            order.append((pkey, choice))
            if fast:
                try:
                    may = _may_decide(fast, vocabulary(succ))  # type: ignore[arg-type]
                except Exception:
                    may = True  # the driver's check meets the same failure
                if may:
                    events.append((pkey, choice, succ))
        return len(winners), False, events

    def before(self, pkey: int, choice: int, inclusive: bool) -> tuple[int, int]:
        """(new states discovered before (pkey, choice) (or at it, `inclusive`),
        transitions of the frontier states up to key `pkey`)."""
        point = (pkey, choice)
        found = (bisect.bisect_right if inclusive else bisect.bisect_left)(self.new_order, point)
        upto = bisect.bisect_right(self.keys, pkey)
        return found, sum(self.counts[:upto])

    def new_points(self) -> list[tuple[int, int]]:
        return self.new_order

    def link(self, fp: int) -> tuple[int | None, int]:
        packed = self.visited[fp]
        parent = (packed >> _CHOICE_BITS) - 1
        return (parent if parent >= 0 else None), packed & _CHOICE_MASK

    def size(self) -> tuple[int, int, int, int, float]:
        """(visited states, bytes of the visited dict and its ints, candidates routed to
        this shard itself and to the others, CPU seconds since `prepare`): for
        benchmarks/ray_overhead.py."""
        cpu = time.process_time() - self.cpu
        total = sys.getsizeof(self.visited)
        for fp, link in self.visited.items():
            total += sys.getsizeof(fp) + sys.getsizeof(link)
        return len(self.visited), total, self.routed[0], self.routed[1], cpu


class _DeadJudge:
    """Whether a state without enabled actions decides one of the undecided `final` or
    `deadlock_free` checks (a scratch `PropertyTracker`)."""

    def __init__(self, shard: Shard, dead: Sequence[int]):
        self.shard = shard
        self.dead = set(dead)
        self.tracker = self._tracker()

    def _tracker(self) -> PropertyTracker:
        shard = self.shard
        tracker = PropertyTracker(shard.space, shard.checks, shard.symbolic)
        tracker.on_dead = [e for e in tracker.on_dead if e[0] in self.dead]
        return tracker

    def decides(self, state: Any) -> bool:
        try:
            self.tracker.check_dead(state, None)
        except Exception:
            return True  # the driver meets the same failure
        if self.tracker.decided:
            self.tracker = self._tracker()
            return True
        return False


# -- the driver ------------------------------------------------------------------------------


class _RemoteParents(Mapping[Hashable, tuple[Any, ...]]):
    """The parent links, read from the shards one at a time (`choices_to`)."""

    def __init__(self, ray: Any, shards: Sequence[Any]):
        self.ray = ray
        self.shards = shards

    def __getitem__(self, key: Hashable) -> tuple[Any, ...]:
        assert isinstance(key, int)
        link: tuple[Any, ...] = self.ray.get(self.shards[key % len(self.shards)].link.remote(key))
        return link

    def __iter__(self) -> Iterator[Hashable]:
        raise TypeError("the shards' parent links are read one at a time")

    def __len__(self) -> int:
        raise TypeError("the shards' parent links are read one at a time")


class _Driver(SearchSetup):
    def __init__(
        self, backend: RayBackend, recipe: Recipe, system: TransitionSystem[Any, Any],
        checks: Sequence[Check], bounds: Bounds, progress: Progress | None, options: Options,
        budget: Budget | None,
    ):
        model = capabilities(system)
        super().__init__(system, checks, bounds, progress, options, model, budget)
        self.reduce_by_symmetry(model)
        self.ray = ray_module()
        self.shards = backend.handles()
        self.recipe = recipe
        self.states = self.transitions = self.depth = 0
        self.fingerprint = fingerprint64
        self.widths: list[int] = []  # each level's new states (benchmarks/ray_overhead.py)
        self.discovering = False  # stopped after some state of the next level was found

    def run(self) -> Exploration:
        ray = self.ray
        shards = self.shards
        ray.get([shard.prepare.remote(self.recipe, self.checks, self.symmetry is not None, i,
                                      len(shards)) for i, shard in enumerate(shards)])
        stop_reason: str | None = None
        exhausted = False
        model_error: str | None = None
        try:
            self._levels()
            exhausted = True
        except _Stop as stop:
            stop_reason = stop.reason
        except ResourceLimit as limit:
            stop_reason = str(limit)
        except _ModelError as error:
            model_error = error.message
            self.tracker.error_all(model_error)
        except ray.exceptions.RayError:
            raise  # the cluster failed, not the model: the exploration fails (checker.run)
        except Exception as exc:  # init_states, or a property on the driver
            model_error = "the model raised " + _describe(exc)
            self.tracker.error_all(model_error)
        if self.discovering:
            self.depth += 1
        stats = Stats(
            self.states, self.transitions, self.depth, time.perf_counter() - self.started,
            collision_probability=self.states * self.states / 2.0**65,
            workers=len(shards), reduced=self.symmetry is not None,
        )
        parents = _RemoteParents(ray, shards)
        decided = self.tracker.decided
        outcomes = tuple(
            _outcome(self.system, parents, self.checks[i], decided.get(i), stop_reason, stats,
                     self.symmetry)
            for i in range(len(self.checks))
        )
        ray.get([shard.release.remote() for shard in shards])
        if not exhausted and stop_reason is None:
            stop_reason = model_error or "every property decided"
        return Exploration(outcomes, stats, exhausted, stop_reason, None)

    def _levels(self) -> None:
        ray, shards = self.ray, self.shards
        count = len(shards)
        tracker = self.tracker
        seeds: list[list[tuple[int, int, Any]]] = [[] for _ in range(count)]
        seen: set[int] = set()
        # why the search ends among the initial states (None: it goes on); the shards
        # get the states seen so far first, so a trace to one is read back from them
        stop: str | None = None
        for index, state in enumerate(self.space.init_states()):
            fp = self.fingerprint(state)
            if fp in seen:
                continue
            if self.states >= self.max_states:
                stop = f"max_states={self.bounds.max_states} reached"
                break
            seen.add(fp)
            seeds[fp % count].append((index, fp, state))
            self.states += 1
            if tracker.on_new:
                tracker.check_new(state, fp)
                if not tracker.undecided:
                    stop = ""
                    break
        ray.get([shard.seed.remote(seeds[i]) for i, shard in enumerate(shards)])
        if stop is not None:
            raise _Stop(stop or None)
        fresh = self.states
        self.clock.start()
        while fresh:
            self.clock.check()
            if self.clock.progress is not None:
                self.clock.progress(self.states, self.depth,
                                    time.perf_counter() - self.started)
            last_level = self.depth >= self.max_depth
            fresh, cut = self._level(last_level)
            if last_level:
                if cut:
                    raise _Stop(f"max_depth={self.bounds.max_depth} reached")
                break
            if fresh:
                self.depth += 1

    def _level(self, last_level: bool) -> tuple[int, bool]:
        """Expand one level; the number of new states and whether the depth bound cut
        some. Raises `_Stop` or `_ModelError` where the sequential loop stops."""
        ray, shards, tracker = self.ray, self.shards, self.tracker
        count = len(shards)
        dead = [index for index, _, _ in tracker.on_dead]
        new = [index for index, _, _ in tracker.on_new]
        seconds = self._seconds_left()
        expanded = [
            shard.expand.options(num_returns=count + 1).remote(dead, seconds)
            for shard in shards
        ]
        summaries = ray.get([refs[0] for refs in expanded])
        width = max(1, max(s[0] for s in summaries))
        received = ray.get([
            shard.receive.remote(width, new, last_level, *[refs[1 + j] for refs in expanded])
            for j, shard in enumerate(shards)
        ])
        fresh = sum(r[0] for r in received)
        cut = any(r[1] for r in received)
        level_transitions = sum(s[1] for s in summaries)
        # The level's events in the sequential order: (parent key, choice, rank, ...):
        # a state without actions at (key, -1); a model error after the successors before
        # it; the max_states cut before the state it would not keep.
        events: list[tuple[int, int, int, Any]] = []
        for summary in summaries:
            events.extend((key, choice, 0, ("dead", state)) for key, choice, state in summary[2])
            if summary[3] is not None:
                key, choice, message, limit = summary[3]
                events.append((key, choice, 0, ("error", message, limit)))
        for r in received:
            events.extend((key, choice, 1, ("new", state)) for key, choice, state in r[2])
        room = self.max_states - self.states
        if fresh > room:
            points = sorted(p for r in ray.get([s.new_points.remote() for s in shards])
                            for p in r)
            key, choice = points[room]
            events.append((key, choice, -1, ("full",)))
        events.sort(key=lambda e: e[:3])
        for key, choice, _, what in events:
            if what[0] == "full":
                self._stop_at(key, choice, False)
                raise _Stop(f"max_states={self.bounds.max_states} reached")
            if what[0] == "error":
                self._stop_at(key, choice, False, error=True)
                if what[2]:
                    raise ResourceLimit(what[1])
                raise _ModelError(what[1])
            state = what[1]
            fp = self.fingerprint(state)
            if what[0] == "dead":
                tracker.check_dead(state, fp)
                if not tracker.undecided:
                    self._stop_at(key, choice, False)
                    raise _Stop
            else:
                tracker.check_new(state, fp)
                if not tracker.undecided:
                    self._stop_at(key, choice, True)
                    raise _Stop
        self.states += fresh
        self.transitions += level_transitions
        self.widths.append(fresh)
        return fresh, cut

    def _stop_at(self, key: int, choice: int, inclusive: bool, error: bool = False) -> None:
        """Count what the sequential loop had counted when it stopped at (key, choice)."""
        found = self.ray.get([s.before.remote(key, choice, inclusive) for s in self.shards])
        fresh = sum(f[0] for f in found)
        self.states += fresh
        self.transitions += sum(f[1] for f in found)
        self.discovering = fresh > 0

    def _seconds_left(self) -> float | None:
        """How long a level may run, for the deadline inside a step on the shards."""
        at = self.clock.deadline
        budget = self.clock.budget
        left = at - time.perf_counter() if at is not None else None
        if budget is not None and budget.deadline is not None:
            run_left = budget.deadline - time.monotonic()
            left = run_left if left is None else min(left, run_left)
        return max(0.0, left) if left is not None else None


class _ModelError(Exception):
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message
