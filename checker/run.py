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
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from checker.errors import InputError, UsageError
from checker.explore import (
    Bounds,
    Budget,
    Check,
    CheckOutcome,
    Exploration,
    Options,
    Progress,
    Stats,
    explore,
)
from checker.forked import Forked, JobFailed, Notice, can_fork
from checker.interface import (
    ModelProvider,
    SymmetricVocabulary,
    TransitionSystem,
    capabilities,
)
from checker.liveness import Fairness, fairness_for
from checker.results import ExplorationResult, PropertyResult, RunResult
from checker.rules import bad_case, reproduces
from checker.spec import (
    Group,
    LoadedGroup,
    Property,
    PropertyFile,
    check_expression,
    group_properties,
    load_system,
    read_property_file,
)
from checker.symbolic import Term
from checker.symmetry import asymmetry
from checker.trace import Trace, trace_graph
from checker.vacuity import observations, warnings
from checker.verdict import Kind, Verdict


@dataclass(frozen=True)
class LoadFailure:
    """Properties that could not be loaded, and the one error that says why."""

    group: Group  # their group, with only these properties
    error: InputError
    # The design, variant or environment failed (every property of the group), rather
    # than the properties' own expressions.
    shared: bool


@dataclass(frozen=True)
class Plan:
    files: tuple[PropertyFile, ...]
    properties: tuple[Property, ...]  # the selected ones, in file order
    groups: tuple[LoadedGroup, ...]  # with only the properties that loaded
    # The properties that did not load (each gets the `error` verdict; the rest run).
    failed: tuple[LoadFailure, ...] = ()


def read_files(paths: Sequence[Path]) -> tuple[list[PropertyFile], list[InputError]]:
    files: list[PropertyFile] = []
    errors: list[InputError] = []
    for path in paths:
        if path.suffix == ".design":
            errors.append(InputError(
                "this is a design file, not a property file: name it in a property file "
                "(`design = \"" + path.name + "\"`), or check it alone with the `lint` subcommand",
                str(path),
            ))
            continue
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
) -> tuple[Plan, list[InputError]]:
    """Select and load everything: the plan, and every distinct load error (each once,
    however many groups share it). A group whose design, variant or environment does not
    load, and a property whose expression the vocabulary refuses, are in `Plan.failed`;
    the others are loaded and run."""
    properties = select([p for f in files for p in f.properties], patterns)
    groups: list[LoadedGroup] = []
    failed: list[LoadFailure] = []
    for group in group_properties(properties):
        try:
            system = load_system(group, provider)
        except InputError as exc:
            failed.append(LoadFailure(group, exc, shared=True))
            continue
        good: list[Property] = []
        for prop in group.properties:
            try:
                check_expression(prop, system)
            except InputError as exc:
                failed.append(LoadFailure(replace(group, properties=(prop,)), exc, shared=False))
            else:
                good.append(prop)
        if good:
            groups.append(LoadedGroup(replace(group, properties=tuple(good)), system))
    return (Plan(tuple(files), tuple(properties), tuple(groups), tuple(failed)),
            load_errors(failed))


def load_errors(failed: Sequence[LoadFailure]) -> list[InputError]:
    """The distinct errors of the failed loads, in order: a design-file error shows in
    every group that loads the design, once is enough."""
    errors: list[InputError] = []
    for failure in failed:
        if all(str(failure.error) != str(seen) for seen in errors):
            errors.append(failure.error)
    return errors


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
# Told each exploration's results as soon as it ends (the CI log's result lines).
ResultsHook = Callable[[Sequence[PropertyResult]], None]


@dataclass(frozen=True)
class Stopping:
    """When a run stops before its last exploration: the run's budget (time, memory, a
    signal) and `-x`. The properties it never explored are `incomplete`, with the reason."""

    budget: Budget | None = None
    exitfirst: bool = False  # stop after the exploration that gave an unexpected verdict


def check(
    groups: Sequence[LoadedGroup],
    properties: Sequence[Property],
    bounds: Bounds | None = None,
    progress: GroupProgress | None = None,
    coverage: bool = False,
    options: Options | None = None,
    failed: Sequence[LoadFailure] = (),
    on_results: ResultsHook | None = None,
    stopping: Stopping | None = None,
) -> RunResult:
    """One exploration per group (two when symmetry splits it, see `split`); results in
    the order of `properties`.

    `options` says how to explore; `options.symmetry` means "reduce where the model
    declares a symmetry and the property allows it". With `coverage`, the model's
    `coverage` (when it has one) is computed from each exploration's visited states right
    after it, before they are dropped. The properties in `failed` (not loaded) get the
    `error` verdict and an empty exploration; an error in one property never stops the
    others. `stopping` ends the run early; what was not explored is `incomplete`.
    """
    options = options or Options()
    stopping = stopping or Stopping()
    budget = stopping.budget
    by_prop: dict[tuple[str, str], PropertyResult] = {}
    explorations: list[ExplorationResult] = []

    def record(
        exploration: ExplorationResult, found: Sequence[PropertyResult], announce: bool = True
    ) -> None:
        index = len(explorations)
        explorations.append(exploration)
        found = [replace(result, exploration=index) for result in found]
        for result in found:
            by_prop[(result.prop.file, result.prop.name)] = result
        if on_results is not None and found and announce:
            on_results(found)

    for failure in failed:  # the caller has reported these errors already
        error = str(failure.error)
        record(*_not_explored(failure.group, Verdict.ERROR, error, f"not loaded: {error}"),
               announce=False)
    stop: str | None = None
    parts = [(loaded, part) for loaded in groups for part in split(loaded, options)]

    def one(number: int, part: Part, budget: Budget | None = budget) -> Explored:
        loaded = parts[number][0]
        if budget is not None and (why := budget.exceeded()) is not None:
            return _stopped(part.group, why)
        report = (
            progress(number, len(parts), replace(loaded, group=part.group))
            if progress is not None else None
        )
        try:
            return _explore_part(loaded.system, part, bounds, report, coverage, budget)
        except Exception as exc:  # a checker or model bug: this group's properties only
            why = f"the exploration failed: {_error_text(exc)}"
            return _not_explored(part.group, Verdict.ERROR, why, why)

    side_by_side = _side_by_side(parts, options, budget, one)
    try:
        for number, (_, part) in enumerate(parts):
            if stop is not None:
                record(*_stopped(part.group, stop))
                continue
            exploration, found = (
                one(number, part) if side_by_side is None else _received(side_by_side, number, part)
            )
            record(exploration, found)
            if stopping.exitfirst and any(
                not r.ok and r.verdict is not Verdict.INCOMPLETE for r in found
            ):
                stop = "-x/--exitfirst: an unexpected verdict"
    finally:
        if side_by_side is not None:
            side_by_side.close()
    results = tuple(by_prop[(p.file, p.name)] for p in properties)
    return RunResult(
        results, tuple(explorations), tuple(load_errors(failed)),
        side_by_side.workers if side_by_side is not None else 1,
    )


Explored = tuple[ExplorationResult, list[PropertyResult]]


def _side_by_side(
    parts: Sequence[tuple[LoadedGroup, Part]], options: Options, budget: Budget | None,
    one: Callable[..., Explored],
) -> Forked | None:
    """With `workers` > 1 and several explorations, the explorations run side by side in
    forked processes, each in one process (a whole exploration is the coarsest and
    cheapest unit of work: the gate took 63 s with helpers per BFS level, 30 s so). Each
    process watches its share of the memory budget. None: one after another, here."""
    workers = options.workers
    if workers < 2 or len(parts) < 2 or options.backend is not None or not can_fork():
        return None
    workers = min(workers, len(parts))
    poll = None
    if budget is not None:
        # A signal reaches this process only (the children ignore it): it posts the reason
        # for them.
        notice, interrupted = Notice(), budget.interrupted

        def poll() -> None:
            why = interrupted() if interrupted is not None else None
            if why is not None and notice.read() is None:
                notice.post(why)

        def stopped() -> str | None:
            return notice.read()

        budget = replace(
            budget, interrupted=stopped,
            max_memory=budget.max_memory // workers if budget.max_memory is not None else None,
        )

    def job(number: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        # every field but the group and the properties, which hold compiled expressions
        # (closures, which do not pickle) and which the parent has already
        part = parts[number][1]
        alone = replace(part, options=replace(part.options, workers=1))
        exploration, found = one(number, alone, budget)
        return (
            {f.name: getattr(exploration, f.name) for f in fields(exploration)
             if f.name != "group"},
            [{f.name: getattr(r, f.name) for f in fields(r) if f.name != "prop"}
             for r in found],
        )

    return Forked(job, len(parts), workers, poll)


def _received(side_by_side: Forked, number: int, part: Part) -> Explored:
    """Exploration `number`'s result from its process, with its group and properties."""
    try:
        shipped, found = side_by_side.result(number)
    except JobFailed as exc:
        why = f"the exploration failed: {exc}"
        return _not_explored(part.group, Verdict.ERROR, why, why)
    props = part.group.properties
    return (
        ExplorationResult(group=part.group, **shipped),
        [PropertyResult(prop=p, **r) for p, r in zip(props, found, strict=True)],
    )


def _stopped(group: Group, why: str) -> Explored:
    """An exploration the run stopped before (`why`): its properties incomplete."""
    return _not_explored(
        group, Verdict.INCOMPLETE, f"not explored: the run stopped ({why})",
        f"not explored: {why}",
    )


def _not_explored(
    group: Group, verdict: Verdict, message: str, reason: str
) -> tuple[ExplorationResult, list[PropertyResult]]:
    """An exploration that never ran (a load error, a run stopped early) and its
    properties' results."""
    stats = Stats(0, 0, 0, 0.0)
    exploration = ExplorationResult(group, stats, False, reason)
    return exploration, [PropertyResult(p, verdict, message, 0, stats) for p in group.properties]


@dataclass(frozen=True)
class Part:
    """Some properties of a group and how to explore them together."""

    group: Group  # the group, with only these properties
    options: Options
    unreduced: tuple[tuple[str, str], ...] = ()  # (property name, why it is not reduced)


def split(loaded: LoadedGroup, options: Options) -> list[Part]:
    """The explorations of a group: with `options.symmetry` and a model that declares a
    symmetry, the properties no renumbering can change are explored on orbit
    representatives and the others in full, apart. Liveness properties are explored
    unreduced and in one process; under a reduction (or workers) asked for, apart from
    the others, which keep it."""
    group = loaded.group
    live = tuple(p for p in group.properties if p.kind.liveness)
    if live and (options.symmetry or options.por or options.workers > 1 or options.backend):
        rest = tuple(p for p in group.properties if not p.kind.liveness)
        parts = _split(replace(loaded, group=replace(group, properties=rest)), options) \
            if rest else []
        unreduced = tuple((p.name, LIVENESS_UNREDUCED) for p in live) if options.symmetry \
            else ()
        return [*parts, Part(replace(group, properties=live), options, unreduced)]
    return _split(loaded, options)


def _split(loaded: LoadedGroup, options: Options) -> list[Part]:
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


LIVENESS_UNREDUCED = (
    "a liveness property: its state graph is recorded without symmetry reduction"
)


def fairness_of(prop: Property, system: TransitionSystem[Any, Any]) -> tuple[Fairness, str]:
    """The fairness a liveness property assumes, and its description for the verdict."""
    return fairness_for(system, prop.fairness, prop.strong_fairness)


def unreduced_note(options: Options, system: TransitionSystem[Any, Any]) -> str:
    """What a liveness exploration ran without, of what was asked for and the model
    offers."""
    model = capabilities(system)
    off = [what for what, on in (
        ("partial-order reduction",
         options.por and model.reduces_by_por),
        ("symmetry reduction", options.symmetry and symmetry_of(system) is not None),
        (f"{options.workers} workers", options.workers > 1 and options.backend is None),
        ("Ray", options.backend is not None),
    ) if on]
    if not off:
        return ""
    return (" (explored without " + " and ".join(off) + ": liveness needs the whole state "
            "graph, recorded in one process)")


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
    report: Progress | None, coverage: bool, budget: Budget | None = None,
) -> tuple[ExplorationResult, list[PropertyResult]]:
    props = part.group.properties
    checks = [_check(p, system) for p in props]
    seen = observations(system, props)  # the vacuity check's passive checks
    backend = part.options.backend
    if backend is not None and not any(p.kind.liveness for p in props):
        from checker.distributed import explore_ray

        group = part.group
        done: Exploration = explore_ray(
            backend, backend.recipe(group.design, dict(group.variant), dict(group.environment)),
            system, [*checks, *seen.checks], bounds, report, part.options, budget,
        )
    else:
        done = explore(
            system, [*checks, *seen.checks], bounds, progress=report, options=part.options,
            budget=budget,
        )
    observed = done.outcomes[len(checks):]
    cov, cov_seconds, cov_error = _coverage(system, done) if coverage else (None, 0.0, None)
    exploration = ExplorationResult(
        part.group, done.stats, done.complete, done.stop_reason, cov, cov_seconds, cov_error,
        model_statistics(system), part.options, part.unreduced, effective_environment(system),
    )
    note = unreduced_note(part.options, system) if any(p.kind.liveness for p in props) else ""
    assumed = assumptions_note(system)
    results = [
        _result(system, prop,
                replace(outcome, message=outcome.message
                        + (note if prop.kind.liveness else "")
                        + (assumed if universal(prop.kind, outcome.verdict) else "")),
                done.stats, warnings(prop, outcome.verdict, seen, observed, done.stats.states))
        for prop, outcome in zip(props, done.outcomes[: len(checks)], strict=True)
    ]
    del done  # the visited set goes with it
    return exploration, results


def _check(prop: Property, system: TransitionSystem[Any, Any]) -> Check:
    """A property as the explorer checks it."""
    if not prop.kind.liveness:
        return Check(
            prop.kind, prop.expr.evaluate if prop.expr is not None else None, prop.name,
            prop.expr.names if prop.expr is not None else frozenset(),
        )
    assert prop.expr is not None
    fairness, text = fairness_of(prop, system)
    return Check(
        prop.kind, prop.expr.evaluate, prop.name, None,
        conclusion=prop.to.evaluate if prop.to is not None else None,
        fairness=fairness, fairness_text=text,
    )


def _result(
    system: TransitionSystem[Any, Any], prop: Property, outcome: CheckOutcome, stats: Stats,
    vacuity: tuple[str, ...] = (),
) -> PropertyResult:
    """A property's result from its outcome: its trace drawn, inspected and, for a symbolic
    one, given a concrete witness. Whatever fails here costs this property its trace or
    witness (noted in the message), never the verdict of any other."""
    graph: Any = None
    message = outcome.message
    inspected: tuple[Mapping[str, Any], ...] | None = None
    review_error: str | None = None
    if outcome.trace is not None:
        try:
            graph = trace_graph(system, outcome.trace, graph_meta(prop, outcome.verdict))
        except Exception as exc:  # the model's describe_* failed: keep the verdict
            message += f" (the trace could not be drawn: {_error_text(exc)})"
        inspected, review_error = inspect_trace(system, outcome.trace)
        # An error's trace leads to a state where the expression fails: no witness.
        if graph is not None and outcome.verdict is not Verdict.ERROR:
            try:
                message += attach_witness(system, prop, outcome.trace, graph)
            except Exception as exc:
                message += f" (no witness: {_error_text(exc)})"
    return PropertyResult(
        prop, outcome.verdict, message, 0, stats, outcome.trace, graph, inspected, review_error,
        vacuity,
    )


def _error_text(exc: Exception) -> str:
    text = str(exc)
    if type(exc).__module__.startswith("checker"):
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def universal(kind: Kind, verdict: Verdict) -> bool:
    """Does the verdict claim something of every reachable state (so of the whole model,
    assumptions included): `holds` of all but `reachable`, or no witness of `reachable`?"""
    return verdict is (Verdict.VIOLATED if kind is Kind.REACHABLE else Verdict.HOLDS)


def assumptions_note(system: TransitionSystem[Any, Any]) -> str:
    """" (assuming ...)" for the settings in force that leave outcomes out (the model's
    `assumptions`), to stand beside a verdict that holds only under them; else ""."""
    model = capabilities(system).assuming
    if model is None:
        return ""
    said = list(model.assumptions())
    return f" (assuming {'; '.join(said)})" if said else ""


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
