"""Checking property files end to end, without I/O beyond reading them.

`collect` reads and validates files and loads their systems (gathering every input
error), `check` runs one exploration per group and turns outcomes into results, each
violated property or reachable witness carrying its trace and trace graph.
"""

from __future__ import annotations

import fnmatch
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import networkx as nx

from checker.errors import InputError, UsageError
from checker.explore import Bounds, Check, Exploration, Progress, Stats, explore
from checker.interface import ModelProvider, TransitionSystem, has_coverage, inspect_state
from checker.interface import coverage as model_coverage
from checker.spec import (
    Group,
    LoadedGroup,
    Property,
    PropertyFile,
    group_properties,
    load_group,
    read_property_file,
)
from checker.symbolic import Term, lnot, truth
from checker.trace import Trace, trace_graph
from checker.verdict import Kind, Verdict, exit_code, is_ok


@dataclass(frozen=True)
class PropertyResult:
    prop: Property
    verdict: Verdict
    message: str
    exploration: int  # index into RunResult.explorations
    stats: Stats
    trace: Trace | None = None
    graph: nx.DiGraph | None = None
    # The model's `inspect_state` of every state along the trace (None when the model has
    # no such method, or it failed; `review_error` says why).
    inspected: tuple[Mapping[str, Any], ...] | None = field(default=None, compare=False)
    review_error: str | None = None

    @property
    def ok(self) -> bool:
        return is_ok(self.verdict, self.prop.expect)


@dataclass(frozen=True)
class ExplorationResult:
    group: Group
    stats: Stats
    complete: bool
    stop_reason: str | None
    # The model's `coverage` of the visited states, when asked for and available;
    # `coverage_error` says why it is missing when it was asked for.
    coverage: Mapping[str, Any] | None = field(default=None, compare=False)
    coverage_seconds: float = 0.0
    coverage_error: str | None = None
    # The model's own statistics (`statistics()`), e.g. z3 queries, cache hits, z3 time.
    model_stats: Mapping[str, float | int] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class RunResult:
    results: tuple[PropertyResult, ...]  # in file order, then property order
    explorations: tuple[ExplorationResult, ...]

    @property
    def exit_code(self) -> int:
        return exit_code((r.verdict, r.prop.expect) for r in self.results)


@dataclass(frozen=True)
class Plan:
    files: tuple[PropertyFile, ...]
    properties: tuple[Property, ...]  # the selected ones, in file order
    groups: tuple[LoadedGroup, ...]


def read_files(paths: Sequence[Path]) -> tuple[list[PropertyFile], list[InputError]]:
    files: list[PropertyFile] = []
    errors: list[InputError] = []
    for path in paths:
        try:
            files.append(read_property_file(path))
        except InputError as exc:
            errors.append(exc)
    return files, errors


def select(properties: Sequence[Property], patterns: Sequence[str]) -> list[Property]:
    """The properties whose name matches any glob pattern (all when there is none)."""
    if not patterns:
        return list(properties)
    chosen = [p for p in properties if any(fnmatch.fnmatchcase(p.name, pat) for pat in patterns)]
    if not chosen:
        raise UsageError("no property matches --property " + " ".join(patterns))
    return chosen


def plan(
    files: Sequence[PropertyFile], provider: ModelProvider, patterns: Sequence[str] = ()
) -> tuple[Plan | None, list[InputError]]:
    """Select and load everything; return the plan or every input error found."""
    errors: list[InputError] = []
    properties = select([p for f in files for p in f.properties], patterns)
    groups: list[LoadedGroup] = []
    for group in group_properties(properties):
        try:
            groups.append(load_group(group, provider))
        except InputError as exc:
            errors.append(exc)
    if errors:
        return None, errors
    return Plan(tuple(files), tuple(properties), tuple(groups)), []


def graph_meta(prop: Property, verdict: Verdict) -> dict[str, str | int | float | bool]:
    return {
        "property": prop.name,
        "file": prop.file,
        "design": prop.design,
        "variant": prop.variant_text,
        "environment": json.dumps(prop.environment, sort_keys=True, default=str),
        "kind": str(prop.kind),
        "expr": prop.expr.source if prop.expr is not None else "",
        "verdict": str(verdict),
        "expected": str(prop.expect),
    }


GroupProgress = Callable[[int, int, LoadedGroup], Progress | None]


def check(
    groups: Sequence[LoadedGroup],
    properties: Sequence[Property],
    bounds: Bounds | None = None,
    progress: GroupProgress | None = None,
    coverage: bool = False,
) -> RunResult:
    """One exploration per group; results in the order of `properties`.

    With `coverage`, the model's `coverage` (when it has one) is computed from each
    exploration's visited states right after it, before they are dropped.
    """
    by_prop: dict[tuple[str, str], PropertyResult] = {}
    explorations: list[ExplorationResult] = []
    for number, loaded in enumerate(groups):
        props = loaded.group.properties
        checks = [
            Check(p.kind, p.expr.evaluate if p.expr is not None else None, p.name) for p in props
        ]
        report = progress(number, len(groups), loaded) if progress is not None else None
        done: Exploration = explore(loaded.system, checks, bounds, progress=report)
        cov, cov_seconds, cov_error = (
            _coverage(loaded.system, done) if coverage else (None, 0.0, None)
        )
        explorations.append(
            ExplorationResult(
                loaded.group, done.stats, done.complete, done.stop_reason, cov, cov_seconds,
                cov_error, model_statistics(loaded.system),
            )
        )
        for prop, outcome in zip(props, done.outcomes, strict=True):
            graph: Any = None
            message = outcome.message
            inspected: tuple[Mapping[str, Any], ...] | None = None
            review_error: str | None = None
            if outcome.trace is not None:
                try:
                    graph = trace_graph(
                        loaded.system, outcome.trace, graph_meta(prop, outcome.verdict)
                    )
                except Exception as exc:  # the model's describe_* failed: keep the verdict
                    message += f" (the trace could not be drawn: {type(exc).__name__}: {exc})"
                inspected, review_error = inspect_trace(loaded.system, outcome.trace)
                if graph is not None:
                    message += attach_witness(loaded.system, prop, outcome.trace, graph)
            by_prop[(prop.file, prop.name)] = PropertyResult(
                prop, outcome.verdict, message, number, done.stats, outcome.trace, graph,
                inspected, review_error,
            )
        del done  # the visited set goes with it
    results = tuple(by_prop[(p.file, p.name)] for p in properties)
    return RunResult(results, tuple(explorations))


def model_statistics(system: TransitionSystem[Any, Any]) -> Mapping[str, float | int]:
    """The model's optional `statistics()` (z3 queries, cache hits, seconds in z3)."""
    stats = getattr(system, "statistics", None)
    if not callable(stats):
        return {}
    try:
        return dict(stats())
    except Exception:  # statistics are informative only
        return {}


def attach_witness(
    system: TransitionSystem[Any, Any], prop: Property, trace: Trace, graph: Any
) -> str:
    """Concrete values for the symbolic inputs of a trace (the model's `witness`), stored
    on the graph and its nodes; the trace is then replayed with them, without z3, to
    check it reproduces. Returns a note for the message ("" when nothing symbolic)."""
    witness_fn = getattr(system, "witness", None)
    replay_fn = getattr(system, "replay_concrete", None)
    if not callable(witness_fn) or not trace.actions:
        return ""
    if not callable(replay_fn):
        replay_fn = None
    bad: list[Any] = []
    kind = prop.kind
    if prop.expr is not None:
        value = prop.expr.evaluate(system.vocabulary(trace.states[-1]))
        if isinstance(value, Term):
            cond = truth(value)
            bad.append(lnot(cond) if kind in (Kind.ALWAYS, Kind.FINAL) else cond)
    try:
        values = witness_fn(trace.states[0], list(trace.actions), bad)
    except Exception as exc:  # a model bug must not cost the verdict
        return f" (no witness: {type(exc).__name__}: {exc})"
    if not values:
        return ""
    text = json.dumps({k: f"{v:#x}" for k, v in sorted(values.items())})
    graph.graph["witness"] = text
    for node in graph.nodes:
        graph.nodes[node]["witness"] = text
    note = " with witness " + ", ".join(f"{k}={v:#x}" for k, v in sorted(values.items()))
    if replay_fn is not None and prop.expr is not None:
        try:
            final = replay_fn(trace.states[0], list(trace.actions), values)
            concrete = prop.expr.evaluate(system.vocabulary(final))
        except Exception as exc:
            return note + f" (the concrete replay failed: {type(exc).__name__}: {exc})"
        reproduced = (not concrete) if kind in (Kind.ALWAYS, Kind.FINAL) else bool(concrete)
        note += (
            " (replayed concretely without z3: reproduces)" if reproduced
            else " (WARNING: the concrete replay does not reproduce it)"
        )
    return note


def inspect_trace(
    system: TransitionSystem[Any, Any], trace: Trace
) -> tuple[tuple[Mapping[str, Any], ...] | None, str | None]:
    """The model's `inspect_state` along a trace, or (None, why not)."""
    if getattr(system, "inspect_state", None) is None:
        return None, None
    out: list[Mapping[str, Any]] = []
    try:
        for state in trace.states:
            view = inspect_state(system, state)
            out.append(view if view is not None else {})
    except Exception as exc:  # a model bug must not cost the verdict
        return None, f"the model's inspect_state failed: {type(exc).__name__}: {exc}"
    return tuple(out), None


def _coverage(
    system: TransitionSystem[Any, Any], done: Exploration
) -> tuple[Mapping[str, Any] | None, float, str | None]:
    if not has_coverage(system):
        return None, 0.0, None
    if done.visited is None:
        return None, 0.0, "the visited states were not kept (custom fingerprint)"
    started = time.perf_counter()
    try:
        cov = model_coverage(system, done.visited)
    except Exception as exc:
        return None, 0.0, f"the model's coverage failed: {type(exc).__name__}: {exc}"
    return cov, time.perf_counter() - started, None
