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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from checker.errors import InputError, UsageError
from checker.explore import Bounds, Check, Exploration, Options, Progress, explore
from checker.interface import (
    ModelProvider,
    SymmetricVocabulary,
    TransitionSystem,
    capabilities,
)
from checker.results import ExplorationResult, PropertyResult, RunResult
from checker.rules import bad_case, reproduces
from checker.spec import (
    Group,
    LoadedGroup,
    Property,
    PropertyFile,
    group_properties,
    load_group,
    read_property_file,
)
from checker.symbolic import Term
from checker.symmetry import asymmetry
from checker.trace import Trace, trace_graph
from checker.vacuity import observations, warnings
from checker.verdict import Verdict


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
            # A design-file error shows in every group that loads the design: once is enough.
            if all(str(exc) != str(seen) for seen in errors):
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
    options: Options | None = None,
) -> RunResult:
    """One exploration per group (two when symmetry splits it, see `split`); results in
    the order of `properties`.

    `options` says how to explore; `options.symmetry` means "reduce where the model
    declares a symmetry and the property allows it". With `coverage`, the model's
    `coverage` (when it has one) is computed from each exploration's visited states right
    after it, before they are dropped.
    """
    options = options or Options()
    by_prop: dict[tuple[str, str], PropertyResult] = {}
    explorations: list[ExplorationResult] = []
    for number, loaded in enumerate(groups):
        report = progress(number, len(groups), loaded) if progress is not None else None
        for part in split(loaded, options):
            index = len(explorations)
            exploration, found = _explore_part(loaded.system, part, bounds, report, coverage)
            explorations.append(exploration)
            for result in found:
                by_prop[(result.prop.file, result.prop.name)] = replace(
                    result, exploration=index
                )
    results = tuple(by_prop[(p.file, p.name)] for p in properties)
    return RunResult(results, tuple(explorations))


@dataclass(frozen=True)
class Part:
    """Some properties of a group and how to explore them together."""

    group: Group  # the group, with only these properties
    options: Options
    unreduced: tuple[tuple[str, str], ...] = ()  # (property name, why it is not reduced)


def split(loaded: LoadedGroup, options: Options) -> list[Part]:
    """The explorations of a group: with `options.symmetry` and a model that declares a
    symmetry, the properties no renumbering can change are explored on orbit
    representatives and the others in full, apart."""
    system = loaded.system
    group = loaded.group
    full = replace(options, symmetry=False)
    vocab = symmetry_of(system) if options.symmetry else None
    if vocab is None:
        return [Part(group, full)]
    reasons = {p.name: property_asymmetry(p, vocab) for p in group.properties}
    reduced = tuple(p for p in group.properties if reasons[p.name] is None)
    rest = tuple(p for p in group.properties if reasons[p.name] is not None)
    unreduced = tuple((p.name, str(reasons[p.name])) for p in rest)
    parts = []
    if reduced:
        parts.append(Part(replace(group, properties=reduced), replace(full, symmetry=True)))
    if rest:
        parts.append(Part(replace(group, properties=rest), full, unreduced))
    return parts


def symmetry_of(system: TransitionSystem[Any, Any]) -> SymmetricVocabulary | None:
    """The model's declared symmetry, when it has one and can pick representatives."""
    model = capabilities(system).symmetric
    if model is None:
        return None
    vocab = model.symmetry_vocabulary()
    return vocab if isinstance(vocab, SymmetricVocabulary) else None


def property_asymmetry(prop: Property, vocab: SymmetricVocabulary) -> str | None:
    """Why a renumbering might change the property's verdict (None: it cannot);
    deadlock freedom has no expression and depends on no numbering."""
    if prop.expr is None:
        return None
    return asymmetry(prop.expr.source, vocab)


def _explore_part(
    system: TransitionSystem[Any, Any], part: Part, bounds: Bounds | None,
    report: Progress | None, coverage: bool,
) -> tuple[ExplorationResult, list[PropertyResult]]:
    props = part.group.properties
    checks = [
        Check(
            p.kind, p.expr.evaluate if p.expr is not None else None, p.name,
            p.expr.names if p.expr is not None else frozenset(),
        )
        for p in props
    ]
    seen = observations(system, props)  # the vacuity check's passive checks
    done: Exploration = explore(
        system, [*checks, *seen.checks], bounds, progress=report, options=part.options
    )
    observed = done.outcomes[len(checks):]
    cov, cov_seconds, cov_error = _coverage(system, done) if coverage else (None, 0.0, None)
    exploration = ExplorationResult(
        part.group, done.stats, done.complete, done.stop_reason, cov, cov_seconds, cov_error,
        model_statistics(system), part.options, part.unreduced, effective_environment(system),
    )
    results = []
    for prop, outcome in zip(props, done.outcomes[: len(checks)], strict=True):
        graph: Any = None
        message = outcome.message
        inspected: tuple[Mapping[str, Any], ...] | None = None
        review_error: str | None = None
        if outcome.trace is not None:
            try:
                graph = trace_graph(system, outcome.trace, graph_meta(prop, outcome.verdict))
            except Exception as exc:  # the model's describe_* failed: keep the verdict
                message += f" (the trace could not be drawn: {type(exc).__name__}: {exc})"
            inspected, review_error = inspect_trace(system, outcome.trace)
            if graph is not None:
                message += attach_witness(system, prop, outcome.trace, graph)
        results.append(PropertyResult(
            prop, outcome.verdict, message, 0, done.stats, outcome.trace, graph, inspected,
            review_error, warnings(prop, outcome.verdict, seen, observed, done.stats.states),
        ))
    del done  # the visited set goes with it
    return exploration, results


def effective_environment(system: TransitionSystem[Any, Any]) -> Mapping[str, Any] | None:
    """The environment in force, defaults included (the model's, when it can say)."""
    model = capabilities(system).configured
    if model is None:
        return None
    try:
        return dict(model.effective_environment())
    except Exception:  # informative only
        return None


def model_statistics(system: TransitionSystem[Any, Any]) -> Mapping[str, float | int]:
    """The model's optional `statistics()` (z3 queries, cache hits, seconds in z3)."""
    model = capabilities(system).measured
    if model is None:
        return {}
    try:
        return dict(model.statistics())
    except Exception:  # statistics are informative only
        return {}


def attach_witness(
    system: TransitionSystem[Any, Any], prop: Property, trace: Trace, graph: Any
) -> str:
    """Concrete values for the symbolic inputs of a trace (the model's `witness`), stored
    on the graph and its nodes; the trace is then replayed with them, without z3, to
    check it reproduces. Returns a note for the message ("" when nothing symbolic)."""
    model = capabilities(system)
    witnessing, rerun = model.witnessing, model.concrete_replay
    if witnessing is None or not trace.actions:
        return ""
    bad: list[Any] = []
    kind = prop.kind
    if prop.expr is not None:
        value = prop.expr.evaluate(system.vocabulary(trace.states[-1]))
        if isinstance(value, Term):
            bad.append(bad_case(kind, value))
    try:
        values = witnessing.witness(trace.states[0], list(trace.actions), bad)
    except Exception as exc:  # a model bug must not cost the verdict
        return f" (no witness: {type(exc).__name__}: {exc})"
    if not values:
        return ""
    text = json.dumps({k: f"{v:#x}" for k, v in sorted(values.items())})
    graph.graph["witness"] = text
    for node in graph.nodes:
        graph.nodes[node]["witness"] = text
    note = " with witness " + ", ".join(f"{k}={v:#x}" for k, v in sorted(values.items()))
    if rerun is not None and prop.expr is not None:
        try:
            final = rerun.replay_concrete(trace.states[0], list(trace.actions), values)
            concrete = prop.expr.evaluate(system.vocabulary(final))
        except Exception as exc:
            return note + f" (the concrete replay failed: {type(exc).__name__}: {exc})"
        reproduced = reproduces(kind, concrete)
        note += (
            " (replayed concretely without z3: reproduces)" if reproduced
            else " (WARNING: the concrete replay does not reproduce it)"
        )
    return note


def inspect_trace(
    system: TransitionSystem[Any, Any], trace: Trace
) -> tuple[tuple[Mapping[str, Any], ...] | None, str | None]:
    """The model's `inspect_state` along a trace, or (None, why not)."""
    model = capabilities(system).inspectable
    if model is None:
        return None, None
    out: list[Mapping[str, Any]] = []
    try:
        for state in trace.states:
            out.append(model.inspect_state(state))
    except Exception as exc:  # a model bug must not cost the verdict
        return None, f"the model's inspect_state failed: {type(exc).__name__}: {exc}"
    return tuple(out), None


def _coverage(
    system: TransitionSystem[Any, Any], done: Exploration
) -> tuple[Mapping[str, Any] | None, float, str | None]:
    model = capabilities(system).covering
    if model is None:
        return None, 0.0, None
    if done.visited is None:
        return None, 0.0, "the visited states were not kept (only their 64-bit fingerprints)"
    started = time.perf_counter()
    try:
        cov = model.coverage(done.visited)
    except Exception as exc:
        return None, 0.0, f"the model's coverage failed: {type(exc).__name__}: {exc}"
    return cov, time.perf_counter() - started, None
