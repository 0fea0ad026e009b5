"""Property-based tests: the engine against independent reachability and distances."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from toy_models import Graph

from checker.explore import Bounds, Check, explore
from checker.expr import compile_expr
from checker.trace import Trace, rebuild
from checker.verdict import Kind, Verdict

INF = float("inf")


@st.composite
def graphs(draw: Any) -> Graph:
    size = draw(st.integers(min_value=1, max_value=12))
    nodes = st.integers(min_value=0, max_value=size - 1)
    edges = {
        node: draw(st.lists(nodes, max_size=4))
        for node in range(size)
    }
    inits = draw(st.lists(nodes, min_size=1, max_size=3))
    terminal = frozenset(draw(st.sets(nodes, max_size=size)))
    return Graph(edges, inits, terminal)


def dfs_reachable(graph: Graph) -> set[int]:
    seen: set[int] = set()
    stack = list(graph.inits)
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        stack.extend(graph.edges.get(node, ()))
    return seen


def distances(graph: Graph) -> dict[int, float]:
    """Shortest distances from any initial node by repeated relaxation (not BFS)."""
    size = len(graph.edges)
    dist: dict[int, float] = dict.fromkeys(range(size), INF)
    for node in graph.inits:
        dist[node] = 0
    for _ in range(size):
        for node, succs in graph.edges.items():
            for succ in succs:
                dist[succ] = min(dist[succ], dist[node] + 1)
    return dist


def assert_real_path(graph: Graph, trace: Trace) -> None:
    assert trace.states[0] in graph.inits
    assert trace.states[0] == graph.inits[trace.choices[0]]
    for i, action in enumerate(trace.actions):
        assert action in graph.actions(trace.states[i])
        assert graph.actions(trace.states[i])[trace.choices[i + 1]] == action
        assert trace.states[i + 1] == graph.next_state(trace.states[i], action)
    assert rebuild(graph, trace.choices) == trace


@settings(max_examples=200, deadline=None)
@given(graphs())
def test_bfs_reaches_exactly_what_dfs_reaches(graph: Graph) -> None:
    reachable = dfs_reachable(graph)
    nodes = sorted(graph.edges)
    checks = [Check(Kind.REACHABLE, compile_expr(f"node == {n}").evaluate) for n in nodes]
    result = explore(graph, checks)
    found = {n for n, o in zip(nodes, result.outcomes, strict=True) if o.verdict is Verdict.HOLDS}
    assert found == reachable
    assert explore(graph, []).stats.states == len(reachable)


@settings(max_examples=200, deadline=None)
@given(graphs(), st.data())
def test_counterexamples_are_real_shortest_paths(graph: Graph, data: Any) -> None:
    target = data.draw(st.integers(min_value=0, max_value=len(graph.edges) - 1))
    dist = distances(graph)
    result = explore(graph, [Check(Kind.NEVER, compile_expr(f"node == {target}").evaluate),
                             Check(Kind.REACHABLE, compile_expr(f"node == {target}").evaluate)])
    never, reach = result.outcomes
    if dist[target] == INF:
        assert never.verdict is Verdict.HOLDS
        assert reach.verdict is Verdict.VIOLATED
        return
    assert never.verdict is Verdict.VIOLATED and reach.verdict is Verdict.HOLDS
    for outcome in (never, reach):
        assert outcome.trace is not None
        assert_real_path(graph, outcome.trace)
        assert outcome.trace.states[-1] == target
        assert outcome.trace.length == dist[target]


@settings(max_examples=200, deadline=None)
@given(graphs())
def test_deadlock_counterexamples_are_real_shortest_paths(graph: Graph) -> None:
    dist = distances(graph)
    dead = [n for n in dfs_reachable(graph) if not graph.edges[n] and n not in graph.terminal]
    outcome = explore(graph, [Check(Kind.DEADLOCK_FREE)]).outcomes[0]
    if not dead:
        assert outcome.verdict is Verdict.HOLDS
        return
    assert outcome.verdict is Verdict.VIOLATED
    assert outcome.trace is not None
    assert_real_path(graph, outcome.trace)
    assert outcome.trace.states[-1] in dead
    assert outcome.trace.length == min(dist[n] for n in dead)


@settings(max_examples=100, deadline=None)
@given(graphs(), st.integers(min_value=0, max_value=5))
def test_depth_bound_explores_exactly_the_states_within_it(graph: Graph, bound: int) -> None:
    dist = distances(graph)
    within = [n for n, d in dist.items() if d <= bound]
    beyond = [n for n, d in dist.items() if bound < d < INF]
    result = explore(graph, [Check(Kind.ALWAYS, compile_expr("node >= 0").evaluate)],
                     Bounds(max_depth=bound))
    assert result.stats.states == len(within)
    expected = Verdict.INCOMPLETE if beyond else Verdict.HOLDS
    assert result.outcomes[0].verdict is expected


@settings(max_examples=100, deadline=None)
@given(graphs())
def test_exploration_is_deterministic(graph: Graph) -> None:
    def run() -> Any:
        checks = [Check(Kind.ALWAYS, compile_expr("node != 3").evaluate), Check(Kind.DEADLOCK_FREE)]
        r = explore(graph, checks)
        return r.stats.states, r.stats.transitions, r.stats.depth, [
            (o.verdict, o.trace) for o in r.outcomes
        ]

    assert run() == run()
