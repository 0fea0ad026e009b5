"""Traces as graphs: building, replaying, and GraphML / JSON / DOT round trips."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from toy_models import Counters, Mutex

from checker.explore import Check, explore
from checker.expr import compile_expr
from checker.trace import (
    ReplayError,
    from_node_link,
    graph_choices,
    parse_dot,
    read_graphml,
    rebuild,
    to_dot,
    to_graphml,
    to_node_link,
    trace_graph,
)
from checker.verdict import Kind

META = {
    "property": "mutual-exclusion",
    "file": "properties/mutex.toml",
    "design": "mutex",
    "variant": "lock=no",
    "verdict": "violated",
    "kind": "always",
}


def mutex_graph() -> tuple[Mutex, Any, nx.DiGraph]:
    system = Mutex(lock=False)
    outcome = explore(system, [Check(Kind.ALWAYS, compile_expr("in_critical <= 1").evaluate)])
    trace = outcome.outcomes[0].trace
    assert trace is not None
    return system, trace, trace_graph(system, trace, META)


def assert_same_graph(a: nx.DiGraph, b: nx.DiGraph) -> None:
    """Same nodes, edges, attributes, and attribute types."""
    assert dict(a.graph) == dict(b.graph)
    assert list(a.nodes) == list(b.nodes) or set(a.nodes) == set(b.nodes)
    assert set(a.edges) == set(b.edges)
    for node in a.nodes:
        assert a.nodes[node] == b.nodes[node]
        assert {k: type(v) for k, v in a.nodes[node].items()} == {
            k: type(v) for k, v in b.nodes[node].items()
        }
    for edge in a.edges:
        assert a.edges[edge] == b.edges[edge]
        assert {k: type(v) for k, v in a.edges[edge].items()} == {
            k: type(v) for k, v in b.edges[edge].items()
        }
    assert {k: type(v) for k, v in a.graph.items()} == {k: type(v) for k, v in b.graph.items()}


def test_graph_shape() -> None:
    system, trace, graph = mutex_graph()
    assert list(graph.nodes) == ["s0", "s1", "s2"]
    assert list(graph.edges) == [("s0", "s1"), ("s1", "s2")]
    assert graph.nodes["s0"] == {**system.describe_state(trace.states[0]), "step": 0}
    edge = graph.edges["s1", "s2"]
    assert edge["label"] == "enter" and edge["cpu"] == 1 and edge["step"] == 2
    assert edge["choice"] == trace.choices[2]
    assert graph.graph["property"] == "mutual-exclusion"
    assert graph.graph["variant"] == "lock=no"
    assert graph_choices(graph) == list(trace.choices)


def test_graphml_round_trip(tmp_path: Path) -> None:
    _, _, graph = mutex_graph()
    path = tmp_path / "t.graphml"
    path.write_text(to_graphml(graph), encoding="utf-8")
    assert_same_graph(graph, read_graphml(path))
    # plain networkx too, less the empty defaults it adds on reading
    plain = nx.read_graphml(path)
    assert plain.graph.pop("node_default") == {} and plain.graph.pop("edge_default") == {}
    assert_same_graph(graph, plain)


def test_json_round_trip(tmp_path: Path) -> None:
    _, trace, graph = mutex_graph()
    text = json.dumps(to_node_link(graph))
    data = json.loads(text)
    assert data["choices"] == list(trace.choices)
    assert data["choice_labels"] == ["enter", "enter"]
    assert_same_graph(graph, from_node_link(data))
    # plain networkx reads it too
    plain = nx.node_link_graph(data, edges="edges")
    assert_same_graph(graph, plain)


def test_dot_round_trip() -> None:
    _, _, graph = mutex_graph()
    assert_same_graph(graph, parse_dot(to_dot(graph)))


def test_the_choices_in_every_format_replay_the_trace(tmp_path: Path) -> None:
    system, trace, graph = mutex_graph()
    (tmp_path / "t.graphml").write_text(to_graphml(graph), encoding="utf-8")
    for loaded in (
        read_graphml(tmp_path / "t.graphml"),
        from_node_link(json.loads(json.dumps(to_node_link(graph)))),
        parse_dot(to_dot(graph)),
    ):
        assert rebuild(system, graph_choices(loaded)) == trace


def test_replay_by_labels() -> None:
    system, trace, graph = mutex_graph()
    data = to_node_link(graph)
    by_label = [data["choices"][0], *data["choice_labels"]]
    assert rebuild(system, by_label) == trace


def test_replay_rejects_choices_that_do_not_fit() -> None:
    system = Counters(2, 1)
    with pytest.raises(ReplayError, match="initial-state choice"):
        rebuild(system, [3])
    with pytest.raises(ReplayError, match="step 3"):
        rebuild(system, [0, 0, 0, 0])
    with pytest.raises(ReplayError, match="labelled"):
        rebuild(system, [0, "dec c0"])
    with pytest.raises(ReplayError, match="empty"):
        rebuild(system, [])


scalars = st.one_of(
    st.text(max_size=12),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.booleans(),
    st.floats(allow_nan=False, allow_infinity=False, width=64),
)
keys = st.text(
    alphabet=st.characters(min_codepoint=32, max_codepoint=0x2FF, blacklist_characters="\x7f"),
    min_size=1, max_size=8,
).filter(lambda k: k not in ("id", "source", "target", "key", "self", "node_for_adding",
                               "u_of_edge", "v_of_edge"))


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.dictionaries(keys, scalars, max_size=4), min_size=1, max_size=5),
    st.dictionaries(keys, scalars, max_size=4),
    st.dictionaries(keys, st.text(max_size=10), max_size=3),
)
def test_round_trips_keep_arbitrary_attributes(
    tmp_path_factory: pytest.TempPathFactory,
    node_attrs: list[dict[str, Any]],
    edge_attrs: dict[str, Any],
    graph_attrs: dict[str, Any],
) -> None:
    graph = nx.DiGraph()
    graph.graph.update(graph_attrs)
    for i, attrs in enumerate(node_attrs):
        graph.add_node(f"s{i}", **attrs)
        if i:
            graph.add_edge(f"s{i - 1}", f"s{i}", **edge_attrs)
    assert_same_graph(graph, parse_dot(to_dot(graph, 'we"ird\\name')))
    assert_same_graph(graph, from_node_link(json.loads(json.dumps(to_node_link(graph)))))
    path = tmp_path_factory.mktemp("g") / "g.graphml"
    if all(not isinstance(v, str) or _xml_safe(v) for v in _all_values(graph)):
        path.write_text(to_graphml(graph), encoding="utf-8")
        assert_same_graph(graph, read_graphml(path))
        # what networkx's own writer wrote, read back, is the same graph
        theirs = path.with_suffix(".nx.graphml")
        nx.write_graphml(graph, theirs)
        assert_same_graph(read_graphml(theirs), read_graphml(path))


def _all_values(graph: nx.DiGraph) -> list[Any]:
    values = list(graph.graph.values())
    for _, attrs in graph.nodes(data=True):
        values.extend(attrs.values())
    for _, _, attrs in graph.edges(data=True):
        values.extend(attrs.values())
    return values


def _xml_safe(text: str) -> bool:
    return all(ch in "\t\n" or (ord(ch) >= 32 and ch != "\r") for ch in text)


def test_graphml_keeps_typed_attributes(tmp_path: Path) -> None:
    graph = nx.DiGraph(property="p", count=3)
    graph.add_node("s0", flag=True, big=2**62, ratio=0.25, name="x", step=0)
    graph.add_node("s1", flag=False, big=-1, ratio=1.0, name="", step=1)
    graph.add_edge("s0", "s1", label="go", cpu=1, step=1, choice=0)
    path = tmp_path / "g.graphml"
    path.write_text(to_graphml(graph), encoding="utf-8")
    assert_same_graph(graph, read_graphml(path))
    assert_same_graph(graph, parse_dot(to_dot(graph)))


def test_dot_quotes_and_escapes() -> None:
    graph = nx.DiGraph(note='say "hi"\\now\nnext line')
    graph.add_node("s0", **{"cpu0.rip": "0x1000", "graph": 1, "weird key": True, "x": 1e-20})
    text = to_dot(graph)
    assert '"cpu0.rip"="0x1000"' in text
    assert "\n" not in text.split("graph [", 1)[1].split("];", 1)[0]
    back = parse_dot(text)
    assert_same_graph(graph, back)
    assert back.nodes["s0"]["x"] == 1e-20


def test_non_scalar_attributes_are_refused_and_the_run_keeps_its_verdict() -> None:
    from checker.errors import CheckerError
    from checker.run import check
    from checker.spec import group_properties, load_group, parse_property_file

    class Listy(Counters):
        def describe_state(self, state: tuple[int, ...]) -> dict[str, Any]:
            return {"counters": list(state)}

    system = Listy(2, 2)
    trace = rebuild(system, [0, 0])
    with pytest.raises(CheckerError, match="'counters' has a value of type list"):
        trace_graph(system, trace, {})

    class Provider:
        def designs(self) -> list[str]:
            return ["listy"]

        def load(self, design: str, variant: Any, environment: Any) -> Any:
            return system

    spec = parse_property_file(
        'design = "listy"\n[[property]]\nname = "a"\nkind = "always"\nexpr = "total < 2"\n'
        'expect = "violated"\n', "p.toml")
    loaded = [load_group(g, Provider()) for g in group_properties(spec.properties)]
    result = check(loaded, spec.properties).results[0]
    assert result.ok and result.graph is None and result.trace is not None
    assert "the trace could not be drawn" in result.message
