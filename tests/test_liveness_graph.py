"""checker.liveness on hand-made and random graphs, against a brute-force oracle.

The oracle: a fair behaviour that stays forever in a set of states S (with all the edges
among them) exists iff S is strongly connected with at least one edge and every actor is
treated fairly there (weak: it steps in S or is disabled somewhere in S; strong: it steps
in S or is disabled everywhere in S), or S is one terminal state (stuttering).
"""

from __future__ import annotations

import itertools
import random

import pytest

from checker.liveness import ENVIRONMENT, Fairness, Lasso, StateGraph, find_lasso


def build(edges: dict[int, list[tuple[int, int]]], n: int) -> StateGraph:
    """edges[s] = [(target, actor), ...]; the choice index is the position."""
    g = StateGraph()
    for s in range(n):
        g.add_state((t, i, a) for i, (t, a) in enumerate(edges.get(s, [])))
    return g


def check_lasso(g: StateGraph, initial: list[int], owed: list[bool], sources: list[bool],
                fairness: Fairness, lasso: Lasso) -> None:
    """The lasso is a real path, passes a source and stays owed from it, closes its loop
    and is fair."""
    states = [initial[lasso.init]]
    for c in (*lasso.stem, *lasso.loop):
        s = states[-1]
        e = list(g.edges(s))[c]
        states.append(g.targets[e])
    assert tuple(states) == lasso.states
    assert any(sources[states[k]] and all(owed[s] for s in states[k:])
               for k in range(lasso.loop_start + 1))
    start = states[lasso.loop_start]
    if not lasso.loop:
        assert g.terminal(start)
        return
    assert states[-1] == start
    loop_states = states[lasso.loop_start:-1]
    taken = set()
    for k, c in enumerate(lasso.loop):
        e = list(g.edges(loop_states[k]))[c]
        taken.add(g.actors[e])
    enabled = [g.enabled(s) for s in loop_states]
    everywhere = set.intersection(*enabled)
    somewhere = set.union(*enabled)
    if fairness.weak:
        assert all(a in taken for a in everywhere if a != ENVIRONMENT)
    assert all(a in taken for a in fairness.strong & somewhere)


def oracle(g: StateGraph, owed: list[bool], sources: list[bool], fairness: Fairness) -> bool:
    n = len(g)
    region = set()
    stack = [s for s in range(n) if sources[s] and owed[s]]
    region.update(stack)
    while stack:
        u = stack.pop()
        for v in g.successors(u):
            if owed[v] and v not in region:
                region.add(v)
                stack.append(v)
    if any(g.terminal(s) for s in region):
        return True
    members = sorted(region)
    for r in range(1, len(members) + 1):
        for subset in itertools.combinations(members, r):
            S = set(subset)
            internal = [(s, e) for s in S for e in g.edges(s) if g.targets[e] in S]
            if not internal:
                continue
            # strongly connected: everything reaches everything inside S
            def reach(x: int, S: set[int] = S) -> set[int]:
                seen, todo = {x}, [x]
                while todo:
                    u = todo.pop()
                    for v in g.successors(u):
                        if v in S and v not in seen:
                            seen.add(v)
                            todo.append(v)
                return seen
            if any(reach(x) != S for x in S):
                continue
            taken = {g.actors[e] for _, e in internal}
            enabled = [g.enabled(s) for s in S]
            everywhere, somewhere = set.intersection(*enabled), set.union(*enabled)
            if fairness.weak and any(a not in taken for a in everywhere if a != ENVIRONMENT):
                continue
            if any(a not in taken for a in fairness.strong & somewhere):
                continue
            return True
    return False


def test_spin_loop_violates_eventually() -> None:
    """0 -> 1 -> 1 (CPU 0 spins): `eventually done` (done only in state 2, unreachable)."""
    g = build({0: [(1, 0)], 1: [(1, 0)]}, 3)
    lasso = find_lasso(g, [0], [True, True, False], [True, False, False], Fairness())
    assert lasso is not None and lasso.stem == (0,) and lasso.loop == (0,)
    assert lasso.states == (0, 1, 1) and lasso.loop_start == 1


def test_terminal_state_stutters() -> None:
    g = build({0: [(1, 0)]}, 2)
    lasso = find_lasso(g, [0], [True, True], [True, False], Fairness())
    assert lasso is not None and lasso.loop == () and lasso.states == (0, 1)


def test_weak_fairness_rules_out_starving_a_cpu() -> None:
    """CPU 1 could finish (state 2 discharges) but CPU 0 spins forever in state 1; CPU 1
    is enabled throughout, so the spin is unfair under weak fairness, fair without it."""
    g = build({0: [(1, 0)], 1: [(1, 0), (2, 1)], 2: [(2, 0)]}, 3)
    owed, sources = [True, True, False], [True, False, False]
    assert find_lasso(g, [0], owed, sources, Fairness()) is None
    lasso = find_lasso(g, [0], owed, sources, Fairness(weak=False))
    assert lasso is not None and lasso.loop == (0,)


def test_environment_gets_no_fairness() -> None:
    """Only an event (ENVIRONMENT) could discharge: waiting for it forever is fair."""
    g = build({0: [(0, 0), (1, ENVIRONMENT)], 1: [(1, 0)]}, 2)
    lasso = find_lasso(g, [0], [True, False], [True, False], Fairness())
    assert lasso is not None and lasso.loop == (0,)
    # strong fairness of the event: it must come
    assert find_lasso(g, [0], [True, False], [True, False],
                      Fairness(strong=frozenset({ENVIRONMENT}))) is None


def test_strong_fairness_refines_components() -> None:
    """CPU 1 is enabled only in state 1 of the cycle 0 <-> 1, and its step discharges.
    Weakly fair: 0 <-> 1 forever is fair (CPU 1 is not enabled everywhere). Strongly fair:
    not, and the refinement finds no smaller cycle (0 alone has no self-loop)."""
    g = build({0: [(1, 0)], 1: [(0, 0), (2, 1)], 2: []}, 3)
    owed, sources = [True, True, False], [True, False, False]
    assert find_lasso(g, [0], owed, sources, Fairness()) is not None
    assert find_lasso(g, [0], owed, sources, Fairness(strong=frozenset({1}))) is None
    # with a self-loop at 0 the refinement keeps the cycle {0}
    g2 = build({0: [(1, 0), (0, 0)], 1: [(0, 0), (2, 1)], 2: []}, 3)
    lasso = find_lasso(g2, [0], owed, sources, Fairness(strong=frozenset({1})))
    assert lasso is not None and lasso.states[lasso.loop_start:] == (0, 0)


def test_leads_to_stem_passes_the_source() -> None:
    """P at state 2 only, Q never after: the stem goes 0 -> 1 -> 2 then loops."""
    g = build({0: [(1, 0)], 1: [(2, 0)], 2: [(3, 0)], 3: [(2, 0)]}, 4)
    owed = [True, True, True, True]
    sources = [False, False, True, False]
    lasso = find_lasso(g, [0], owed, sources, Fairness())
    assert lasso is not None
    assert lasso.states[:3] == (0, 1, 2)
    assert lasso.states[lasso.loop_start] in (2, 3)


@pytest.mark.parametrize("seed", range(300))
def test_random_graphs_against_oracle(seed: int) -> None:
    rng = random.Random(seed)
    n = rng.randint(1, 7)
    actors = [ENVIRONMENT, 0, 1, 2]
    edges = {s: [(rng.randrange(n), rng.choice(actors))
                 for _ in range(rng.choice([0, 1, 1, 2, 2, 3]))] for s in range(n)}
    g = build(edges, n)
    initial = sorted(rng.sample(range(n), rng.randint(1, min(2, n))))
    owed = [rng.random() < 0.75 for _ in range(n)]
    sources = [rng.random() < 0.4 for _ in range(n)]
    for fairness in (Fairness(), Fairness(weak=False),
                     Fairness(strong=frozenset({0, ENVIRONMENT})), Fairness(weak=False,
                     strong=frozenset({1}))):
        # only sources reachable from an initial state count
        reach = set(initial)
        todo = list(initial)
        while todo:
            u = todo.pop()
            for v in g.successors(u):
                if v not in reach:
                    reach.add(v)
                    todo.append(v)
        live_sources = [sources[s] and s in reach for s in range(n)]
        lasso = find_lasso(g, initial, owed, live_sources, fairness)
        assert (lasso is not None) == oracle(g, owed, live_sources, fairness), (seed, fairness)
        if lasso is not None:
            check_lasso(g, initial, owed, live_sources, fairness, lasso)
