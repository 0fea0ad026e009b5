"""Counterexamples and witnesses: replayable choice sequences and their graphs.

A trace is kept as a choice sequence, as Hypothesis keeps its examples: the index of the
initial state, then at each step the index of the action taken among `actions(state)`.
`rebuild` turns it back into states, so a trace survives without storing any state.

As a graph a trace is a networkx DiGraph: nodes "s0", "s1", ... carry `describe_state`
attributes and `step`; edges carry `describe_action` attributes (with `label`), `step`,
`choice`, and `key` (the model's `action_key`, when it has one). This module also
writes and reads back the DOT text of such a graph (no pydot/pygraphviz needed); file I/O
lives in `checker.report`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import escape, quoteattr

from checker.errors import CheckerError
from checker.interface import (
    Scalar,
    TransitionSystem,
    action_key,
    describe_action,
    describe_state,
)

if TYPE_CHECKING:
    import networkx as nx


class ReplayError(CheckerError):
    """A choice sequence that does not fit the system (index out of range, unknown label)."""


@dataclass(frozen=True)
class Trace:
    """A path from an initial state: `states[i+1] = next_state(states[i], actions[i])`."""

    choices: tuple[int, ...]  # initial-state index, then one action index per step
    states: tuple[Any, ...]
    actions: tuple[Any, ...]
    # A lasso (a liveness counterexample): the index of the state where the loop starts;
    # the last state is that state again, and the steps after it repeat forever. The
    # last index itself: the last state stutters forever (it has no enabled action).
    loop_start: int | None = None

    @property
    def length(self) -> int:
        """Number of steps (transitions)."""
        return len(self.actions)


def choices_to(parents: Mapping[Hashable, tuple[Any, ...]], key: Hashable) -> tuple[
    int, ...
]:
    """The choice sequence leading to `key`, following BFS parent links back to an init
    (each link starts with the parent's key and the choice; a liveness exploration adds
    the state's number)."""
    path: list[int] = []
    current: Hashable | None = key
    while current is not None:
        link = parents[current]
        parent, index = link[0], link[1]
        path.append(index)
        current = parent
    path.reverse()
    return tuple(path)


def rebuild(system: TransitionSystem[Any, Any], choices: Sequence[int | str]) -> Trace:
    """Rebuild the trace a choice sequence describes.

    The first choice is the index of the initial state; each later one is an action index
    into `actions(state)`, or an action label (the first action whose `describe_action`
    label equals it), which survives a model that reorders its actions.
    """
    if not choices:
        raise ReplayError("empty choice sequence")
    inits = system.init_states()
    first = choices[0]
    if not isinstance(first, int) or not 0 <= first < len(inits):
        raise ReplayError(f"initial-state choice {first!r} is not in 0..{len(inits) - 1}")
    state = inits[first]
    states = [state]
    actions: list[Any] = []
    indices = [first]
    for step, choice in enumerate(choices[1:], start=1):
        enabled = system.actions(state)
        if isinstance(choice, str):
            labels = [describe_action(system, state, a).get("label") for a in enabled]
            if choice not in labels:
                raise ReplayError(f"step {step}: no enabled action is labelled {choice!r}")
            index = labels.index(choice)
        else:
            index = choice
            if not 0 <= index < len(enabled):
                raise ReplayError(
                    f"step {step}: action choice {index} is not in 0..{len(enabled) - 1}"
                )
        action = enabled[index]
        state = system.next_state(state, action)
        actions.append(action)
        states.append(state)
        indices.append(index)
    return Trace(tuple(indices), tuple(states), tuple(actions))


# -- graphs ------------------------------------------------------------------------------


def node_id(step: int) -> str:
    return f"s{step}"


def _scalar_attrs(attrs: Mapping[str, Any], what: str) -> dict[str, Scalar]:
    out: dict[str, Scalar] = {}
    for key, value in attrs.items():
        if not isinstance(value, str | int | float | bool):
            raise CheckerError(
                f"{what} attribute {key!r} has a value of type {type(value).__name__}; "
                "trace attributes must be str, int, float or bool"
            )
        out[str(key)] = value
    return out


def trace_graph(
    system: TransitionSystem[Any, Any], trace: Trace, meta: Mapping[str, Scalar]
) -> nx.DiGraph:
    """The trace as a DiGraph; `meta` becomes the graph attributes (plus `choices`)."""
    import networkx as nx

    graph = nx.DiGraph()
    graph.graph.update(meta)
    graph.graph["choices"] = " ".join(str(c) for c in trace.choices)
    for step, state in enumerate(trace.states):
        attrs = _scalar_attrs(describe_state(system, state), "state")
        attrs["step"] = step
        graph.add_node(node_id(step), **attrs)
    for step, action in enumerate(trace.actions):
        attrs = _scalar_attrs(describe_action(system, trace.states[step], action), "action")
        attrs.setdefault("label", str(action))
        key = action_key(system, trace.states[step], action)
        if key is not None:
            attrs["key"] = key
        attrs["step"] = step + 1
        attrs["choice"] = trace.choices[step + 1]
        graph.add_edge(node_id(step), node_id(step + 1), **attrs)
    if trace.loop_start is not None:
        mark_loop(graph, trace.loop_start, len(trace.states) - 1)
    return graph


def mark_loop(graph: nx.DiGraph, start: int, last: int) -> None:
    """A lasso's loop on its graph: the graph attribute `loop_start`, `loop` on the steps
    of the loop, and the back edge from the last node (the loop's first state again) to
    node `start`, with `loop` and `back_edge` (a self-loop when the last state stutters
    forever)."""
    graph.graph["loop_start"] = start
    for step in range(start + 1, last + 1):
        graph.edges[node_id(step - 1), node_id(step)]["loop"] = True
    label = (f"back to step {start}: the loop repeats forever" if last > start
             else "no enabled action: the state stutters forever")
    graph.add_edge(node_id(last), node_id(start), label=label, loop=True, back_edge=True)


def loop_start(graph: nx.DiGraph) -> int | None:
    """The step where a lasso's loop starts (its graph's `loop_start`), or None."""
    value = graph.graph.get("loop_start")
    return int(value) if isinstance(value, int | str) and str(value).isdigit() else None


def graph_choices(graph: nx.DiGraph) -> list[int]:
    """The choice sequence stored in a trace graph."""
    text = str(graph.graph.get("choices", "")).strip()
    return [int(part) for part in text.split()] if text else []


def graph_steps(graph: nx.DiGraph) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
    """(node attributes, attributes of the edge leading to it or None) in trace order."""
    steps: list[tuple[dict[str, Any], dict[str, Any] | None]] = []
    step = 0
    while graph.has_node(node_id(step)):
        edge = graph.edges[node_id(step - 1), node_id(step)] if step else None
        steps.append((dict(graph.nodes[node_id(step)]), None if edge is None else dict(edge)))
        step += 1
    return steps


@dataclass(frozen=True)
class StepLocation:
    """The design source line of one step of a trace."""

    step: int  # 1-based
    file: str
    line: int | None
    own: bool  # the step's own line; False: an event, at the line its CPU was about to run
    label: str
    damage: str


def step_location(
    step: int, edge: Mapping[str, Any], inspected: Sequence[Mapping[str, Any]] | None = None
) -> StepLocation | None:
    """Where step `step` (1-based) is in the design: the edge's own `file`/`line` (an
    instruction), else, for an event, the line the acting CPU was at before the step (the
    model's `inspect_state` of the state before it: `cpus[i].file/line`). None when
    neither is known."""
    label = str(edge.get("label", "?"))
    damage = str(edge.get("damage") or "")
    if edge.get("file"):
        line = edge.get("line")
        return StepLocation(step, str(edge["file"]), _line(line), True, label, damage)
    cpu = edge.get("cpu")
    if inspected and isinstance(cpu, int) and not isinstance(cpu, bool) and (
        0 <= step - 1 < len(inspected)
    ):
        for record in inspected[step - 1].get("cpus", []) or []:
            if isinstance(record, Mapping) and record.get("id") == cpu and record.get("file"):
                return StepLocation(step, str(record["file"]), _line(record.get("line")), False,
                                    label, damage)
    return None


def _line(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def violating_step(
    graph: nx.DiGraph, inspected: Sequence[Mapping[str, Any]] | None = None
) -> StepLocation | None:
    """Where a trace's property was decided: the design line of its last step (the step
    into the state that violates, the clobbering write, the shutdown, the timeout...).
    None for a trace of no steps or a last step with no known line."""
    steps = graph_steps(graph)
    if len(steps) < 2:
        return None
    node, edge = steps[-1]
    assert edge is not None
    return step_location(int(node["step"]), edge, inspected)


def damaging_steps(
    graph: nx.DiGraph, inspected: Sequence[Mapping[str, Any]] | None = None
) -> list[StepLocation]:
    """The located steps of a trace that did damage (the model's `damage` note)."""
    out: list[StepLocation] = []
    for node, edge in graph_steps(graph)[1:]:
        assert edge is not None
        if edge.get("damage"):
            where = step_location(int(node["step"]), edge, inspected)
            if where is not None:
                out.append(where)
    return out


def to_node_link(graph: nx.DiGraph) -> dict[str, Any]:
    """Node-link JSON data (edges under "edges"), plus the choice sequence as a list."""
    import networkx as nx

    data: dict[str, Any] = nx.node_link_data(graph, edges="edges")
    data["choices"] = graph_choices(graph)
    order = _order(graph)
    data["choice_labels"] = [
        graph.edges[u, v].get("label") for u, v in pairwise(order)
    ]
    return data


def from_node_link(data: Mapping[str, Any]) -> nx.DiGraph:
    import networkx as nx

    graph: nx.DiGraph = nx.node_link_graph(
        {k: v for k, v in data.items() if k not in ("choices", "choice_labels")},
        directed=True,
        multigraph=False,
        edges="edges",
    )
    return graph


# GraphML's attr.type of each Python scalar a trace graph holds (bool before int: a bool
# is an int); networkx's writer uses the same names, so its reader gives the same types.
_GRAPHML_TYPES: tuple[tuple[type, str], ...] = (
    (bool, "boolean"), (int, "long"), (float, "double"), (str, "string"),
)


def _graphml_type(value: Any) -> str:
    for kind, name in _GRAPHML_TYPES:
        if isinstance(value, kind):
            return name
    raise TypeError(f"GraphML has no type for {type(value).__name__} values ({value!r})")


def to_graphml(graph: nx.DiGraph) -> str:
    """The trace graph as GraphML (what `networkx.write_graphml` writes, read back by
    `read_graphml` as the same graph), built as text: networkx's writer took 26 ms a
    trace, two thirds of writing the gate's reports."""
    keys: dict[tuple[str, str, str], str] = {}  # (scope, name, type) -> key id

    def data(scope: str, attrs: Mapping[str, Any], indent: str) -> list[str]:
        out = []
        for name, value in attrs.items():
            kind = _graphml_type(value)
            key = keys.setdefault((scope, str(name), kind), f"d{len(keys)}")
            out.append(f"{indent}<data key={quoteattr(key)}>{escape(str(value))}</data>")
        return out

    body = ['  <graph edgedefault="directed">']
    body += data("graph", {k: v for k, v in graph.graph.items()
                           if k not in ("node_default", "edge_default")}, "    ")
    for node, attrs in graph.nodes(data=True):
        lines = data("node", attrs, "      ")
        if lines:
            body += [f"    <node id={quoteattr(str(node))}>", *lines, "    </node>"]
        else:
            body.append(f"    <node id={quoteattr(str(node))} />")
    for u, v, attrs in graph.edges(data=True):
        ends = f"source={quoteattr(str(u))} target={quoteattr(str(v))}"
        lines = data("edge", attrs, "      ")
        if lines:
            body += [f"    <edge {ends}>", *lines, "    </edge>"]
        else:
            body.append(f"    <edge {ends} />")
    body.append("  </graph>")
    head = [
        "<?xml version='1.0' encoding='utf-8'?>",
        '<graphml xmlns="http://graphml.graphdrawing.org/xmlns" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        'xsi:schemaLocation="http://graphml.graphdrawing.org/xmlns '
        'http://graphml.graphdrawing.org/xmlns/1.0/graphml.xsd">',
    ]
    head += [
        f"  <key id={quoteattr(key)} for={quoteattr(scope)} attr.name={quoteattr(name)} "
        f"attr.type={quoteattr(kind)} />"
        for (scope, name, kind), key in keys.items()
    ]
    return "\n".join([*head, *body, "</graphml>"]) + "\n"


def read_graphml(path: str | Path) -> nx.DiGraph:
    """`networkx.read_graphml`, less the empty `node_default`/`edge_default` graph
    attributes networkx adds on reading (we write no defaults)."""
    import networkx as nx

    graph: nx.DiGraph = nx.read_graphml(path)
    for key in ("node_default", "edge_default"):
        if graph.graph.get(key) == {}:
            del graph.graph[key]
    return graph


def _order(graph: nx.DiGraph) -> list[str]:
    return [node_id(i) for i in range(graph.number_of_nodes()) if graph.has_node(node_id(i))]


# -- DOT ---------------------------------------------------------------------------------
#
# Values keep their types through DOT: strings are always quoted; ints, floats and bools
# are written bare (`7`, `0.5`, `true`), which is valid DOT and which `parse_dot` reads
# back as the same type.

_BARE_ID = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def _quote(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    escaped = escaped.replace("\r", "\\r")
    return f'"{escaped}"'


def _dot_key(key: str) -> str:
    if _BARE_ID.match(key) and key.lower() not in ("graph", "node", "edge", "digraph",
                                                    "subgraph", "strict"):
        return key
    return _quote(key)


def _dot_value(value: Scalar) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return _quote(repr(value))  # DOT has no numeral for these; read back as str
        text = format(Decimal(repr(value)), "f")
        return text if "." in text else text + ".0"
    return _quote(str(value))


def _dot_attrs(attrs: Mapping[str, Any]) -> str:
    return ", ".join(f"{_dot_key(str(k))}={_dot_value(v)}" for k, v in attrs.items())


def to_dot(graph: nx.DiGraph, name: str = "trace") -> str:
    lines = [f"digraph {_quote(name)} {{"]
    if graph.graph:
        lines.append(f"  graph [{_dot_attrs(graph.graph)}];")
    for node, attrs in graph.nodes(data=True):
        suffix = f" [{_dot_attrs(attrs)}]" if attrs else ""
        lines.append(f"  {_quote(str(node))}{suffix};")
    for u, v, attrs in graph.edges(data=True):
        suffix = f" [{_dot_attrs(attrs)}]" if attrs else ""
        lines.append(f"  {_quote(str(u))} -> {_quote(str(v))}{suffix};")
    lines.append("}")
    return "\n".join(lines) + "\n"


class DotSyntaxError(CheckerError):
    pass


_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>"(?:[^"\\]|\\.)*")
      | (?P<arrow>->)
      | (?P<punct>[{}\[\]=;,])
      | (?P<number>-?(?:\d+\.\d*|\.\d+|\d+))(?![A-Za-z_])
      | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
    )""",
    re.VERBOSE | re.DOTALL,
)

_UNESCAPE = {"n": "\n", "r": "\r", '"': '"', "\\": "\\"}


def _unquote(token: str) -> str:
    body = token[1:-1]
    return re.sub(r"\\(.)", lambda m: _UNESCAPE.get(m.group(1), "\\" + m.group(1)), body,
                  flags=re.DOTALL)


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            raise DotSyntaxError(f"DOT: unexpected text at offset {pos}: {text[pos:pos + 20]!r}")
        kind = match.lastgroup
        assert kind is not None
        out.append((kind, match.group(kind)))
        pos = match.end()
    return out


def parse_dot(text: str) -> nx.DiGraph:
    """Read back the DOT text `to_dot` writes (a digraph of quoted ids and typed attrs)."""
    tokens = _tokens(text)
    pos = 0

    def take(kind: str | None = None, value: str | None = None) -> tuple[str, str]:
        nonlocal pos
        if pos >= len(tokens):
            raise DotSyntaxError("DOT: unexpected end of text")
        token = tokens[pos]
        if (kind is not None and token[0] != kind) or (value is not None and token[1] != value):
            raise DotSyntaxError(f"DOT: expected {value or kind}, got {token[1]!r}")
        pos += 1
        return token

    def peek() -> tuple[str, str] | None:
        return tokens[pos] if pos < len(tokens) else None

    def atom(token: tuple[str, str]) -> Any:
        kind, raw = token
        if kind == "string":
            return _unquote(raw)
        if kind == "number":
            return float(raw) if "." in raw else int(raw)
        if kind == "ident":
            if raw == "true":
                return True
            if raw == "false":
                return False
            return raw
        raise DotSyntaxError(f"DOT: unexpected {raw!r}")

    def attr_list() -> dict[str, Any]:
        attrs: dict[str, Any] = {}
        take("punct", "[")
        while peek() != ("punct", "]"):
            kind, raw = take()
            key = _unquote(raw) if kind == "string" else raw  # keys are never typed values
            take("punct", "=")
            attrs[key] = atom(take())
            if peek() == ("punct", ","):
                take()
        take("punct", "]")
        return attrs

    import networkx as nx

    graph = nx.DiGraph()
    take("ident", "digraph")
    if peek() != ("punct", "{"):
        take()  # graph name
    take("punct", "{")
    while peek() != ("punct", "}"):
        first = take()
        if first == ("ident", "graph"):
            graph.graph.update(attr_list())
        else:
            source = str(atom(first))
            if peek() == ("arrow", "->"):
                take()
                target = str(atom(take()))
                attrs = attr_list() if peek() == ("punct", "[") else {}
                graph.add_edge(source, target, **attrs)
            else:
                attrs = attr_list() if peek() == ("punct", "[") else {}
                graph.add_node(source, **attrs)
        if peek() == ("punct", ";"):
            take()
    take("punct", "}")
    return graph


def graph_json_text(graph: nx.DiGraph) -> str:
    return json.dumps(to_node_link(graph), indent=2, sort_keys=False) + "\n"
