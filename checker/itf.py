"""Traces in Apalache's Informal Trace Format (ITF, `.itf.json`).

The format (Apalache ADR-015) is JSON: `{"#meta": {...}, "vars": [names], "states":
[{"#meta": {"index": i}, name: value, ...}, ...]}`, with values encoded as

- booleans and strings as themselves; integers as JSON numbers when they fit in
  -(2**53 - 1) .. 2**53 - 1 and as `{"#bigint": "digits"}` otherwise;
- lists as arrays, tuples as `{"#tup": [...]}`, sets as `{"#set": [...]}`;
- mappings with string keys (none starting with "#") as records (JSON objects), other
  mappings as `{"#map": [[key, value], ...]}`;
- None as the variant `{"tag": "None", "value": {}}` (Quint's `None`), anything else as
  `{"#unserializable": "text"}`.

Every state has the variables `summary` (the model's `describe_state`), `action` (the
`describe_action` of the step that led to it, with `step`, `choice` and `key`; state 0 has
`{"label": "initial state", "step": 0}`) and, when the model has `inspect_state`, one per
top-level key it returns (e.g. `cpus`, `stacks`, `variables`, `incidents`, `budgets`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from checker.results import PropertyResult, witness_of
from checker.trace import graph_steps, loop_start

if TYPE_CHECKING:
    import networkx as nx

FORMAT_DESCRIPTION = "https://apalache-mc.org/docs/adr/015adr-trace.html"
MAX_SAFE = 2**53 - 1


def encode(value: Any) -> Any:
    """A Python value in ITF's JSON encoding."""
    if isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value if -MAX_SAFE <= value <= MAX_SAFE else {"#bigint": str(value)}
    if value is None:
        return {"tag": "None", "value": {}}
    if isinstance(value, Mapping):
        if all(isinstance(k, str) and not k.startswith("#") for k in value):
            return {k: encode(v) for k, v in value.items()}
        return {"#map": [[encode(k), encode(v)] for k, v in value.items()]}
    if isinstance(value, list):
        return [encode(v) for v in value]
    if isinstance(value, tuple):
        return {"#tup": [encode(v) for v in value]}
    if isinstance(value, set | frozenset):
        items = [encode(v) for v in value]
        return {"#set": sorted(items, key=lambda v: json.dumps(v, sort_keys=True))}
    return {"#unserializable": str(value)}


def decode(value: Any) -> Any:
    """The inverse of `encode` (tuples, sets and maps come back as tuple, frozenset and
    a list of pairs; the None variant as None)."""
    if isinstance(value, list):
        return [decode(v) for v in value]
    if isinstance(value, dict):
        if "#bigint" in value:
            return int(value["#bigint"])
        if "#tup" in value:
            return tuple(decode(v) for v in value["#tup"])
        if "#set" in value:
            return frozenset(_hashable(decode(v)) for v in value["#set"])
        if "#map" in value:
            return [(decode(k), decode(v)) for k, v in value["#map"]]
        if "#unserializable" in value:
            return value["#unserializable"]
        if set(value) == {"tag", "value"} and value["tag"] == "None" and value["value"] == {}:
            return None
        return {k: decode(v) for k, v in value.items()}
    return value


def _hashable(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    return value


def itf_trace(
    graph: nx.DiGraph,
    inspected: Sequence[Mapping[str, Any]] | None,
    meta: Mapping[str, Any],
) -> dict[str, Any]:
    """The ITF document of a trace graph (and the model's `inspect_state` per step)."""
    steps = graph_steps(graph)
    loop = loop_start(graph)
    if loop is not None and loop < len(steps) - 1:
        # a lasso: ITF's `loop` says the last state is followed by state `loop`, so the
        # last state (the loop's first again) is not repeated
        steps = steps[:-1]
    names: list[str] = ["summary", "action"]
    if inspected:
        for view in inspected:
            for key in view:
                if key not in names:
                    names.append(key)
    states: list[dict[str, Any]] = []
    for index, (node, edge) in enumerate(steps):
        state: dict[str, Any] = {"#meta": {"index": index}}
        state["summary"] = encode({k: v for k, v in node.items() if k != "step"})
        state["action"] = encode(
            dict(edge) if edge is not None else {"label": "initial state", "step": 0}
        )
        if inspected and index < len(inspected):
            view = inspected[index]
            for key in names[2:]:
                if key in view:
                    state[key] = encode(view[key])
        states.append(state)
    head: dict[str, Any] = {
        "format": "ITF",
        "format-description": FORMAT_DESCRIPTION,
        "source": str(graph.graph.get("file", "")),
        "description": (
            f"{graph.graph.get('verdict', '')} property '{graph.graph.get('property', '')}' "
            f"({graph.graph.get('kind', '')} {graph.graph.get('expr', '')})".rstrip()
        ),
        "timestamp": int(time.time() * 1000),
        "generator": "irq-checker",
    }
    head.update(meta)
    document: dict[str, Any] = {"#meta": head, "vars": names, "states": states}
    if loop is not None:
        document["loop"] = loop
    return document


def itf_text(document: Mapping[str, Any]) -> str:
    """An ITF document as JSON text: compact, one state per line (diffs read well)."""
    compact = (",", ":")
    head = {k: v for k, v in document.items() if k != "states"}
    lines = [json.dumps(head, separators=compact)[:-1] + ',"states":[']
    states = document.get("states", [])
    for index, state in enumerate(states):
        comma = "," if index + 1 < len(states) else ""
        lines.append(json.dumps(state, separators=compact) + comma)
    lines.append("]}")
    return "\n".join(lines) + "\n"


def write_itf(result: PropertyResult, record: Mapping[str, Any], path: Path) -> None:
    """The trace as an ITF file, with the property, its verdict and the replay record."""
    assert result.graph is not None
    prop = result.prop
    meta: dict[str, Any] = {
        "property": prop.name,
        "design": prop.design,
        "variant": dict(prop.variant),
        "environment": dict(prop.environment),
        "verdict": str(result.verdict),
        "expected": str(prop.expect),
        "replay": dict(record),
    }
    witness = witness_of(result)
    if witness is not None:
        meta["witness"] = witness
    document = itf_trace(result.graph, result.inspected, meta)
    path.write_text(itf_text(document), encoding="utf-8")
