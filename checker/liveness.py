"""Liveness over the explored state graph: `eventually P` and `P leads_to Q` under fairness.

The meaning is TLA+'s over infinite behaviours; a state with no enabled action repeats
forever (stutters). `eventually P` is violated by a fair behaviour from an initial state on
which P never holds; `P leads_to Q` by a fair behaviour that reaches a state where P holds
and Q does not, and never reaches Q from there (Q at the P state itself discharges it).

Both reduce to one question on the graph the explorer built: from the *sources* (initial
states without P; states with P and not Q), through states where the obligation is still
owed (not P; not Q), is there a terminal state or a *fair* strongly connected component?
The SCCs are found once with an iterative Tarjan, so a liveness property costs one more
pass over the graph (as TLC's liveness checking does over its behaviour graph).

Fairness is per *actor*, a small integer the model gives each step (a CPU's code steps;
`ENVIRONMENT` for events, which get no fairness unless asked):
- weak: an actor enabled in every state of a cycle must take a step in it;
- strong: an actor enabled in some state of a cycle must take a step in it. A component
  that fails strong fairness for an actor may still contain a fair cycle that avoids the
  states where the actor is enabled: those states are removed and the rest decomposed
  again (the Emerson-Lei refinement). Weak fairness needs no refinement: a component in
  which an actor is enabled everywhere and never steps has no sub-cycle where it steps.
An actor is enabled in a state when the state has a step of that actor.

The graph is kept compactly: states are numbered in the order the explorer expanded them,
and the edges of all states live in flat integer arrays (targets, choice index, actor).
"""

from __future__ import annotations

import fnmatch
from array import array
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from checker.interface import capabilities
from checker.limits import ResourceLimit
from checker.symbolic import Term

ENVIRONMENT = -1  # the actor of steps no fairness applies to (asynchronous events)


@dataclass(frozen=True)
class Fairness:
    """Which actors must eventually step. `weak`: every actor but ENVIRONMENT (below
    `weak_below`, when given) is weakly fair; `strong`: these actors (any, including
    events named by the model) are strongly fair."""

    weak: bool = True
    strong: frozenset[int] = frozenset()
    weak_below: int | None = None

    def weakly_fair(self, actor: int) -> bool:
        return self.weak and actor != ENVIRONMENT and (
            self.weak_below is None or actor < self.weak_below
        )

    def describe(self, names: Sequence[str]) -> str:
        def name(a: int) -> str:
            return names[a] if 0 <= a < len(names) else str(a)

        parts = []
        if self.weak:
            count = self.weak_below if self.weak_below is not None else len(names)
            parts.append("weak fairness for each CPU's own steps ("
                         + ", ".join(name(a) for a in range(count)) + ")")
        if self.strong:
            parts.append("strong fairness for " + ", ".join(name(a) for a in sorted(self.strong)))
        if not parts:
            return "no fairness"
        return "; ".join(parts) + "; none for environment events"


class StateGraph:
    """The explored state graph: states numbered 0..n-1 in expansion order, each state's
    outgoing edges (target number, choice index among its actions, actor) in flat arrays."""

    def __init__(self) -> None:
        self.offsets = array("q", [0])  # edges of state s: offsets[s] .. offsets[s+1]
        self.targets = array("l")
        self.choices = array("i")  # an index among a state's actions
        self.actors = array("i")

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def add_state(self, edges: Iterable[tuple[int, int, int]]) -> int:
        """Record the next state's outgoing edges as (target, choice, actor); returns the
        state's number. States must be added in numbering order."""
        for target, choice, actor in edges:
            self.targets.append(target)
            self.choices.append(choice)
            self.actors.append(actor)
        self.offsets.append(len(self.targets))
        return len(self.offsets) - 2

    def edges(self, s: int) -> range:
        return range(self.offsets[s], self.offsets[s + 1])

    def successors(self, s: int) -> array[int]:
        return self.targets[self.offsets[s]:self.offsets[s + 1]]

    def terminal(self, s: int) -> bool:
        return self.offsets[s] == self.offsets[s + 1]

    def enabled(self, s: int) -> set[int]:
        a = self.actors
        return {a[e] for e in range(self.offsets[s], self.offsets[s + 1])}

    def nbytes(self) -> int:
        return sum(x.itemsize * len(x) for x in (self.offsets, self.targets, self.choices,
                                                  self.actors))


@dataclass(frozen=True)
class Lasso:
    """A counterexample to a liveness property: from initial state `init`, the steps
    `stem` (choice indices) reach the loop's first state; `loop` (choice indices) returns
    to it. An empty loop is a state that stutters forever (no action is enabled).
    `states` are the state numbers along stem and loop (len(stem) + len(loop) + 1)."""

    init: int
    stem: tuple[int, ...]
    loop: tuple[int, ...]
    states: tuple[int, ...]

    @property
    def loop_start(self) -> int:
        """Index in `states` of the loop's first state."""
        return len(self.stem)

    @property
    def choices(self) -> tuple[int, ...]:
        return (self.init, *self.stem, *self.loop)


def find_lasso(
    graph: StateGraph,
    initial: Sequence[int],
    owed: Sequence[bool] | bytes | bytearray,
    sources: Sequence[bool] | bytes | bytearray,
    fairness: Fairness,
) -> Lasso | None:
    """A fair behaviour that reaches a source and stays forever in `owed` states from it,
    or None. `initial` are the numbers of the initial states in init_states() order;
    `owed[s]`/`sources[s]` say whether state s still owes the conclusion / starts an
    obligation (a source must be owed)."""
    n = len(graph)
    offsets, targets = graph.offsets, graph.targets
    # 1. The region: states reachable from a source through owed states; BFS parents give
    #    the shortest way from a source to each (-1: a source; -2: not in the region).
    region_parent = array("l", [-2]) * n
    depth = array("l", [0]) * n
    inside = bytearray(n)
    queue: deque[int] = deque()
    for s in range(n):
        if sources[s] and owed[s]:
            region_parent[s] = -1
            inside[s] = 1
            queue.append(s)
    if not queue:
        return None
    members: list[int] = []
    while queue:
        u = queue.popleft()
        members.append(u)
        d = depth[u] + 1
        for v in targets[offsets[u]:offsets[u + 1]]:
            if not inside[v] and owed[v]:
                inside[v] = 1
                region_parent[v] = u
                depth[v] = d
                queue.append(v)
    # 2. An accepting place, nearest a source: a terminal state (it stutters forever), or
    #    a fair component (entered at its state nearest a source).
    best: tuple[int, int, set[int] | None] | None = None  # (depth, entry, component)
    for s in members:  # in BFS order: the first terminal one is nearest
        if offsets[s] == offsets[s + 1]:
            best = (depth[s], s, None)
            break
    for scc in _region_sccs(graph, members, inside):
        fair = _fair_part(graph, scc, fairness)
        if fair is None:
            continue
        entry = min(fair, key=lambda s: (depth[s], s))
        if best is None or (depth[entry], entry) < best[:2]:
            best = (depth[entry], entry, fair)
    if best is None:
        return None
    _, entry, component = best
    loop = () if component is None else _fair_loop(graph, component, entry, fairness)
    return _lasso(graph, initial, region_parent, entry, loop)


def _region_sccs(graph: StateGraph, members: list[int], inside: bytearray) -> list[set[int]]:
    """`_sccs` of the subgraph on `members` (`inside[s]` says whether s is one), with
    arrays over every state number rather than dictionaries: the whole-region pass."""
    n = len(graph)
    offsets, targets = graph.offsets, graph.targets
    index = array("l", [-1]) * n
    low = array("l", [0]) * n
    on_stack = bytearray(n)
    stack: list[int] = []
    out: list[set[int]] = []
    counter = 0
    for root in sorted(members):
        if index[root] >= 0:
            continue
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack[root] = 1
        work_v = [root]
        work_e = [offsets[root]]
        while work_v:
            v = work_v[-1]
            e = work_e[-1]
            end = offsets[v + 1]
            descended = False
            while e < end:
                w = targets[e]
                e += 1
                if not inside[w]:
                    continue
                if index[w] < 0:
                    work_e[-1] = e
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack[w] = 1
                    work_v.append(w)
                    work_e.append(offsets[w])
                    descended = True
                    break
                if on_stack[w] and index[w] < low[v]:
                    low[v] = index[w]
            if descended:
                continue
            work_v.pop()
            work_e.pop()
            if work_v:
                parent = work_v[-1]
                if low[v] < low[parent]:
                    low[parent] = low[v]
            if low[v] == index[v]:
                comp: set[int] = set()
                while True:
                    w = stack.pop()
                    on_stack[w] = 0
                    comp.add(w)
                    if w == v:
                        break
                if len(comp) > 1 or v in targets[offsets[v]:offsets[v + 1]]:
                    out.append(comp)
    return out


def _sccs(graph: StateGraph, members: set[int]) -> list[set[int]]:
    """The nontrivial strongly connected components (at least one internal edge) of the
    subgraph on `members`: iterative Tarjan."""
    index: dict[int, int] = {}
    low: dict[int, int] = {}
    on_stack: set[int] = set()
    stack: list[int] = []
    out: list[set[int]] = []
    counter = 0
    for root in sorted(members):
        if root in index:
            continue
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        work = [(root, iter(graph.successors(root)))]
        while work:
            v, successors = work[-1]
            for w in successors:
                if w not in members:
                    continue
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(graph.successors(w))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[v])
                if low[v] == index[v]:
                    comp: set[int] = set()
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.add(w)
                        if w == v:
                            break
                    if len(comp) > 1 or v in graph.successors(v):
                        out.append(comp)
    return out


def _fair_part(graph: StateGraph, scc: set[int], fairness: Fairness) -> set[int] | None:
    """A fair component inside `scc` (itself, or one found by removing the states where a
    strongly fair actor is enabled but never steps), or None."""
    taken: set[int] = set()
    enabled_somewhere: set[int] = set()
    enabled_everywhere: set[int] | None = None
    offsets, targets, actors = graph.offsets, graph.targets, graph.actors
    for s in scc:
        lo, hi = offsets[s], offsets[s + 1]
        here = set(actors[lo:hi])
        enabled_somewhere |= here
        enabled_everywhere = here if enabled_everywhere is None else enabled_everywhere & here
        if not here <= taken:
            for e in range(lo, hi):
                if actors[e] not in taken and targets[e] in scc:
                    taken.add(actors[e])
    for a in sorted(fairness.strong):
        if a in enabled_somewhere and a not in taken:
            rest = {s for s in scc if a not in graph.enabled(s)}
            for sub in _sccs(graph, rest):
                fair = _fair_part(graph, sub, fairness)
                if fair is not None:
                    return fair
            return None
    for a in enabled_everywhere or ():
        if fairness.weakly_fair(a) and a not in taken:
            return None
    return scc


def _fair_loop(
    graph: StateGraph, scc: set[int], entry: int, fairness: Fairness
) -> tuple[tuple[int, int], ...]:
    """A cycle through `entry` inside the fair component `scc`, as (state, edge) steps:
    it takes a step of every fairly treated actor that steps somewhere in the component
    and visits a state where each other one is disabled, so the cycle repeated is fair."""
    stepping: dict[int, int] = {}  # actor -> an internal edge of it
    enabled: set[int] = set()
    for s in sorted(scc):
        enabled |= graph.enabled(s)
        for e in graph.edges(s):
            if graph.targets[e] in scc:
                stepping.setdefault(graph.actors[e], e)
    waypoints: list[tuple[str, int]] = []
    for a in sorted(enabled):
        if not (fairness.weakly_fair(a) or a in fairness.strong):
            continue  # no fairness owed to this actor
        if a in stepping:
            waypoints.append(("edge", stepping[a]))
        else:  # a fair component has a state where the actor is disabled
            waypoints.append(("state", min(s for s in scc if a not in graph.enabled(s))))
    if not waypoints:  # any cycle will do: take one internal edge
        e = next(e for s in sorted(scc) for e in graph.edges(s) if graph.targets[e] in scc)
        waypoints.append(("edge", e))
    steps: list[tuple[int, int]] = []
    here = entry
    for kind, x in waypoints:
        if kind == "edge":
            source = _edge_source(graph, x)
            steps.extend(_path(graph, scc, here, source))
            steps.append((source, x))
            here = graph.targets[x]
        else:
            steps.extend(_path(graph, scc, here, x))
            here = x
    steps.extend(_path(graph, scc, here, entry))
    if not steps:  # entry == every waypoint and no edge taken: use a self-contained cycle
        e = next(e for e in graph.edges(entry) if graph.targets[e] in scc)
        steps.append((entry, e))
        steps.extend(_path(graph, scc, graph.targets[e], entry))
    return tuple(steps)


def _edge_source(graph: StateGraph, e: int) -> int:
    offsets = graph.offsets
    lo, hi = 0, len(offsets) - 2
    while lo < hi:  # the state whose edge range holds e
        mid = (lo + hi + 1) // 2
        if offsets[mid] <= e:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _path(graph: StateGraph, within: set[int], start: int, goal: int) -> list[tuple[int, int]]:
    """A shortest path start -> goal inside `within`, as (state, edge) steps."""
    if start == goal:
        return []
    return _shortest(graph, [start], goal, within)


def _shortest(
    graph: StateGraph, starts: Sequence[int], goal: int, within: set[int] | None
) -> list[tuple[int, int]]:
    """A shortest path from one of `starts` to `goal` (through `within` only, when given),
    as (state, edge) steps; the first step's state is the start used."""
    back: dict[int, tuple[int, int]] = {s: (-1, -1) for s in starts}
    queue = deque(starts)
    while queue:
        u = queue.popleft()
        for e in graph.edges(u):
            v = graph.targets[e]
            if (within is None or v in within) and v not in back:
                back[v] = (u, e)
                if v == goal:
                    out: list[tuple[int, int]] = []
                    while back[v][0] != -1:
                        u2, e2 = back[v]
                        out.append((u2, e2))
                        v = u2
                    out.reverse()
                    return out
                queue.append(v)
    raise AssertionError("no path to a state the search found reachable")


def _lasso(
    graph: StateGraph,
    initial: Sequence[int],
    region_parent: Sequence[int],
    entry: int,
    loop: tuple[tuple[int, int], ...],
) -> Lasso:
    # inside the region: source -> entry
    inner: list[int] = []
    s = entry
    while region_parent[s] != -1:
        inner.append(s)
        s = region_parent[s]
    source = s
    inner.reverse()
    # from an initial state to the source: a shortest path in the whole graph
    head = _from_initial(graph, initial, source)
    init_state = head[0][0] if head else source
    stem_states = [init_state] + [graph.targets[e] for _, e in head]
    stem_edges = [e for _, e in head]
    here = source
    for nxt in inner:
        e = next(e for e in graph.edges(here) if graph.targets[e] == nxt)
        stem_edges.append(e)
        stem_states.append(nxt)
        here = nxt
    loop_states = [graph.targets[e] for _, e in loop]
    return Lasso(
        init=list(initial).index(init_state),
        stem=tuple(graph.choices[e] for e in stem_edges),
        loop=tuple(graph.choices[e] for _, e in loop),
        states=tuple(stem_states + loop_states),
    )


def _from_initial(graph: StateGraph, initial: Sequence[int], goal: int) -> list[tuple[int, int]]:
    """A shortest path from some initial state to `goal` as (state, edge) steps; [] when
    `goal` is initial. The first step's state is the initial state used."""
    if goal in initial:
        return []
    return _shortest(graph, initial, goal, None)


# -- recording the graph while exploring ---------------------------------------------------


@dataclass(frozen=True)
class LiveCheck:
    """One liveness property as the recorder sees it: `premise` is P (`eventually P`,
    `P leads_to Q`), `conclusion` Q (None for eventually)."""

    index: int  # the check's index in the exploration
    leads_to: bool
    premise: Callable[[Mapping[str, Any]], Any]
    conclusion: Callable[[Mapping[str, Any]], Any] | None
    fairness: Fairness


class LivenessGraph:
    """What the explorer records for its liveness properties: the state graph (states
    numbered in discovery order, which is BFS expansion order; the explorer keeps each
    state's number in its parent link), each state's outgoing edges with their actors,
    and the truth of each property's P and Q in it (one byte per state and property)."""

    def __init__(self, checks: Sequence[LiveCheck]):
        self.checks = list(checks)
        self.graph = StateGraph()
        self.initial: list[int] = []  # the number of each init_states() entry, in order
        self.premise = [bytearray() for _ in checks]
        self.conclusion = [bytearray() for _ in checks]
        self.failed: dict[int, str] = {}  # check index -> why its expression failed

    def discover(self, vocab: Mapping[str, Any]) -> list[tuple[int, str]]:
        """Evaluate the properties' expressions in the next new state; returns the (check
        index, message) of expressions that failed there for the first time."""
        failures: list[tuple[int, str]] = []
        for j, check in enumerate(self.checks):
            p = q = False
            if check.index not in self.failed:
                try:
                    p = _concrete(check.premise(vocab))
                    if check.conclusion is not None:
                        q = _concrete(check.conclusion(vocab))
                except ResourceLimit:
                    raise
                except Exception as exc:
                    why = ("the expression failed: " + (str(exc) or type(exc).__name__)
                           if not isinstance(exc, _Symbolic) else str(exc))
                    self.failed[check.index] = why
                    failures.append((check.index, why))
            self.premise[j].append(p)
            self.conclusion[j].append(q)
        return failures

    def nbytes(self) -> int:
        return self.graph.nbytes() + sum(len(b) for b in self.premise + self.conclusion)

    def judge(self, j: int) -> Lasso | None:
        """A fair counterexample to the j-th property, or None when it holds."""
        check = self.checks[j]
        p, q = self.premise[j], self.conclusion[j]
        n = len(self.graph)
        if check.leads_to:
            owed = q.translate(_FLIP)
            sources = (int.from_bytes(p) & int.from_bytes(owed)).to_bytes(n)
        else:
            owed = p.translate(_FLIP)
            start = bytearray(n)
            for s in self.initial:
                start[s] = owed[s]
            sources = bytes(start)
        return find_lasso(self.graph, self.initial, owed, sources, check.fairness)


_FLIP = bytes.maketrans(b"\x00\x01", b"\x01\x00")


class _Symbolic(Exception):
    pass


def _concrete(value: Any) -> bool:
    if isinstance(value, Term):
        raise _Symbolic(
            "the expression has a symbolic value here; liveness needs concrete values "
            "(drop `symbolic` from the environment)"
        )
    return bool(value)


def fairness_for(
    system: object, level: str, strong_patterns: Sequence[str]
) -> tuple[Fairness, str]:
    """The fairness a liveness property asks for, and its description: `level` ("weak",
    "strong", "none") for the CPUs' own steps (the model's first `fair_actors()`
    actors; every step is one actor when the model names none) and strong fairness for
    the actors `strong_patterns` (globs) name."""
    fair = capabilities(system).fair
    names = list(fair.actor_names()) if fair is not None else ["the system"]
    count = fair.fair_actors() if fair is not None else 1
    named = frozenset(
        a for a, n in enumerate(names)
        if any(fnmatch.fnmatchcase(n, pattern) for pattern in strong_patterns)
    )
    if level == "strong":
        fairness = Fairness(weak=False, strong=named | frozenset(range(count)))
    elif level == "none":
        fairness = Fairness(weak=False, strong=named)
    else:
        fairness = Fairness(weak=True, strong=named, weak_below=count)
    return fairness, fairness.describe(names)


def actor_of(system: object) -> Callable[[Any, Any], int]:
    """The model's `actor` (checker.interface.Fair), or one actor for every step."""
    fair = capabilities(system).fair
    return fair.actor if fair is not None else _one_actor


def _one_actor(state: Any, action: Any) -> int:
    return 0


def unfair_actor(
    fairness: Fairness, enabled: Sequence[set[int]], taken: set[int]
) -> int | None:
    """An actor a loop treats unfairly (it repeats forever through states where
    `enabled[i]` are enabled, taking steps of the actors `taken`), or None when it is
    fair; an empty `enabled` is a state that stutters forever, fair to everyone."""
    if not enabled:
        return None
    everywhere = set.intersection(*enabled)
    somewhere = set.union(*enabled)
    for a in sorted(everywhere):
        if fairness.weakly_fair(a) and a not in taken:
            return a
    for a in sorted(fairness.strong & somewhere):
        if a not in taken:
            return a
    return None
