"""Writers: trace files (GraphML, node-link JSON, DOT, ITF), terminal text, and JSON output.

HTML, JUnit XML, SARIF and the CI annotations live in `checker.html` and `checker.ci`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from checker.coverage import run_coverage
from checker.coverage import summary_line as coverage_summary
from checker.errors import InputError
from checker.reportdir import inside, report_parts
from checker.results import (
    ExplorationResult,
    OutputContext,
    PropertyResult,
    RunResult,
    TraceFiles,
    witness_of,
)
from checker.spec import Property
from checker.trace import graph_steps, loop_start, to_dot, to_graphml, to_node_link
from checker.verdict import Verdict

if TYPE_CHECKING:
    import networkx as nx

JSON_VERSION = 1


# -- trace files (registered in checker.writers) --------------------------------------------


def trace_base(report_dir: Path, prop: Property) -> Path:
    """Where a property's trace files go, without their suffixes: the property file's
    path relative to the working directory, then the property's name, each component
    sanitised and the whole checked to stay inside `report_dir` (`checker.reportdir`)."""
    return inside(report_dir, report_parts(prop.file, prop.name))


def write_graphml(result: PropertyResult, record: Mapping[str, Any], path: Path) -> None:
    assert result.graph is not None
    path.write_text(to_graphml(result.graph), encoding="utf-8")


def write_node_link(result: PropertyResult, record: Mapping[str, Any], path: Path) -> None:
    """Node-link JSON, with the replay record (`python -m checker replay` reads it)."""
    assert result.graph is not None
    data = to_node_link(result.graph)
    data["replay"] = dict(record)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def write_dot(result: PropertyResult, record: Mapping[str, Any], path: Path) -> None:
    assert result.graph is not None
    path.write_text(to_dot(result.graph, result.prop.name), encoding="utf-8")


# -- text ----------------------------------------------------------------------------------


def mark(result: PropertyResult) -> str:
    """ok, FAIL, ERROR or INCOMPLETE: a result's first word in text output and logs."""
    if result.verdict is Verdict.ERROR:
        return "ERROR"
    if result.verdict is Verdict.INCOMPLETE:
        return "INCOMPLETE"
    return "ok" if result.ok else "FAIL"


def _seconds(value: float) -> str:
    return f"{value:.2f}s"


def result_line(result: PropertyResult, width: int) -> str:
    stats = result.stats
    return (
        f"  {mark(result):<10} {result.prop.name:<{width}}  {result.verdict!s:<10} "
        f"expected {result.prop.expect!s:<8}  {stats.states:>9,} states  depth {stats.depth:<4}"
        f" {_seconds(stats.seconds)}"
    )


def _fmt(value: Any) -> str:
    return repr(value) if isinstance(value, str) and (value == "" or " " in value) else str(value)


def trace_lines(graph: nx.DiGraph, verbose: bool = False) -> list[str]:
    """The trace step by step: actor, action, source location and what changed."""
    lines: list[str] = []
    previous: dict[str, Any] = {}
    loop = loop_start(graph)
    steps = graph_steps(graph)
    for node, edge in steps:
        attrs = {k: v for k, v in node.items() if k != "step"}
        if edge is None:
            shown = ", ".join(f"{k}={_fmt(v)}" for k, v in attrs.items())
            lines.append(f"      0. initial state: {shown}" if shown else "      0. initial state")
        else:
            actor = edge.get("cpu", edge.get("actor"))
            who = f"[{'cpu' + str(actor) if isinstance(actor, int) else actor}] " if (
                actor is not None
            ) else ""
            where = ""
            if "file" in edge:
                where = f"  ({edge['file']}" + (f":{edge['line']}" if "line" in edge else "")
                # a step from a macro: its invocation, then the macro's own line
                where += f", in macro: {edge['macro']})" if edge.get("macro") else ")"
            detail = f" - {edge['detail']}" if edge.get("detail") else ""
            lines.append(f"      {node['step']}. {who}{edge.get('label', '?')}{where}{detail}")
            if edge.get("damage"):
                lines.append(f"           !! {edge['damage']}")
            changes = [
                f"{k}: {_fmt(previous.get(k, '-'))} -> {_fmt(v)}"
                for k, v in attrs.items()
                if previous.get(k) != v or k not in previous
            ]
            changes += [f"{k}: {_fmt(v)} -> -" for k, v in previous.items() if k not in attrs]
            for change in changes:
                lines.append(f"           {change}")
        previous = attrs
        if loop is not None and node.get("step") == loop:
            lines.append(
                f"      ---- loop: the steps below return to state {loop} and repeat forever"
                if loop < len(steps) - 1 else
                f"      ---- loop: state {loop} has no enabled action and stutters forever"
            )
    if loop is not None and loop < len(steps) - 1:
        lines.append(f"      ---- back to state {loop} (the loop repeats forever)")
    if verbose:
        lines.append(f"      choices: {graph.graph.get('choices', '')}")
    return lines


def render_text(
    run: RunResult,
    traces: Mapping[tuple[str, str], TraceFiles],
    quiet: bool = False,
    verbose: bool = False,
) -> str:
    out: list[str] = []
    width = max((len(r.prop.name) for r in run.results), default=10)
    current_file: str | None = None
    for result in run.results:
        interesting = not result.ok
        if quiet and not interesting:
            continue
        if result.prop.file != current_file:
            current_file = result.prop.file
            out.append(current_file)
        out.append(result_line(result, width))
        if verbose or interesting:
            out.append(f"      {result.message}")
        out.extend(f"      warning: {w}" for w in result.vacuity)
        files = traces.get((result.prop.file, result.prop.name))
        if result.graph is not None and (not quiet or interesting):
            what = {Verdict.HOLDS: "witness", Verdict.ERROR: "path to the failing state"}.get(
                result.verdict, "counterexample"
            )
            steps = result.graph.number_of_nodes() - 1
            counted = f"      {what}: {steps} step{'s' if steps != 1 else ''}"
            if not (verbose or interesting):
                # An expected result: its trace is in the report files (-v prints it).
                out.append(counted + (f": {files.replay_file}" if files is not None else ""))
                continue
            out.append(counted)
            out.extend(trace_lines(result.graph, verbose))
            if files is not None:
                suffixes = ",".join(suffix for _, suffix in files.suffixes)
                out.append(f"      written to {files.base}.{{{suffixes}}}")
    if verbose:
        covered = run_coverage(run.explorations)
        if covered is not None:
            out.append(coverage_summary(covered))
        out.append("explorations:")
        for number, exp in enumerate(run.explorations):
            s = exp.stats
            end = "complete" if exp.complete else f"stopped: {exp.stop_reason}"
            names = ", ".join(p.name for p in exp.group.properties)
            variant = f" [{exp.group.variant_text}]" if exp.group.variant else ""
            out.append(
                f"  #{number} {exp.group.design}{variant}: {s.states:,} states, "
                f"{s.transitions:,} transitions, depth {s.depth}, {_seconds(s.seconds)}, "
                f"{s.states_per_second:,.0f} states/s, {end} ({names})"
            )
            out.append(f"      {how_explored(exp)}")
            if exp.environment is not None:
                out.append("      environment: " + ", ".join(
                    f"{k}={json.dumps(v, default=str)}" for k, v in exp.environment.items()))
            for name, why in exp.unreduced:
                out.append(f"      not reduced by symmetry: {name}: {why}")
    out.append(summary_line(run))
    return "\n".join(out) + "\n"


def summary_line(run: RunResult) -> str:
    total = len(run.results)
    ok = sum(1 for r in run.results if r.ok)
    errors = sum(1 for r in run.results if r.verdict is Verdict.ERROR)
    incomplete = sum(1 for r in run.results if r.verdict is Verdict.INCOMPLETE)
    unexpected = total - ok - errors - incomplete
    states = sum(e.stats.states for e in run.explorations)
    seconds = sum(e.stats.seconds for e in run.explorations)
    queries = sum(int(e.model_stats.get("z3_queries", 0)) for e in run.explorations)
    hits = sum(int(e.model_stats.get("z3_cache_hits", 0)) for e in run.explorations)
    z3_seconds = sum(float(e.model_stats.get("z3_seconds", 0.0)) for e in run.explorations)
    z3 = (
        f", z3: {queries:,} queries, {hits:,} cache hits, {_seconds(z3_seconds)}"
        if queries else ""
    )
    workers = max((e.stats.workers for e in run.explorations), default=1)
    how = (
        f", {run.processes} explorations at a time" if run.processes > 1
        else f", {workers} worker{'s' if workers != 1 else ''}"
    )
    for name in ("symmetry", "por"):
        reduced = sum(1 for e in run.explorations if name in e.reductions)
        if reduced:
            how += f", {name} on {reduced} of {len(run.explorations)}"
    if any(e.options.compact for e in run.explorations):
        how += ", " + collision_text(sum(e.stats.collision_probability for e in run.explorations))
    parts = [f"{ok} as expected"]
    if unexpected:
        parts.append(f"{unexpected} unexpected")
    if incomplete:
        parts.append(f"{incomplete} incomplete")
    if errors:
        parts.append(f"{errors} error{'s' if errors != 1 else ''}")
    if run.vacuous:
        parts.append(f"{len(run.vacuous)} vacuous (warning)")
    return (
        f"{total} propert{'ies' if total != 1 else 'y'}: " + ", ".join(parts)
        + f" ({len(run.explorations)} exploration{'s' if len(run.explorations) != 1 else ''},"
        f" {states:,} states, {_seconds(seconds)}{how}{z3})"
    )


def collision_text(probability: float) -> str:
    """TLC's wording for the chance that two distinct states shared a fingerprint."""
    return f"64-bit fingerprints: calculated (optimistic) collision probability {probability:.1e}"


def how_explored(exp: ExplorationResult) -> str:
    """Reductions, fingerprints and processes of one exploration, for -v."""
    skipped = exp.stats.persistent_skipped
    names = [
        f"por ({exp.stats.persistent_expansions:,} persistent-set expansions"
        + (f"; {skipped:,} states expanded in full unasked, where sets were too rare to pay"
           if skipped else "") + ")"
        if name == "por" else name
        for name in exp.reductions
    ]
    text = f"reductions: {', '.join(names) or 'none'}; workers: {exp.stats.workers}"
    if exp.options.compact:
        text += "; " + collision_text(exp.stats.collision_probability)
    return text


def text_output(out: OutputContext) -> str:
    text = render_text(out.run, out.traces, quiet=out.quiet, verbose=out.verbose)
    return text + "".join(f"report: {path}\n" for path in out.written)


# -- JSON ----------------------------------------------------------------------------------


def result_json(result: PropertyResult, files: TraceFiles | None) -> dict[str, Any]:
    prop = result.prop
    stats = result.stats
    return {
        "name": prop.name,
        "file": prop.file,
        "line": prop.line,
        "design": prop.design,
        "variant": dict(prop.variant),
        "environment": prop.environment,
        "kind": str(prop.kind),
        "expr": prop.expr.source if prop.expr is not None else None,
        "to": prop.to.source if prop.to is not None else None,  # leads_to's conclusion
        "verdict": str(result.verdict),
        "expected": str(prop.expect),
        "ok": result.ok,
        "states": stats.states,
        "transitions": stats.transitions,
        "depth": stats.depth,
        "seconds": round(stats.seconds, 6),
        "exploration": result.exploration,
        "trace_length": result.trace.length if result.trace is not None else None,
        "choices": list(result.trace.choices) if result.trace is not None else None,
        # a lasso (liveness): the step where its loop starts (the last state is that one)
        "loop_start": result.trace.loop_start if result.trace is not None else None,
        "traces": files.as_dict() if files is not None else None,
        "witness": witness_of(result),
        "message": result.message,
        "vacuity": list(result.vacuity),
    }


def run_json(
    run: RunResult,
    traces: Mapping[tuple[str, str], TraceFiles],
    exit_code: int | None = None,
) -> dict[str, Any]:
    return {
        "version": JSON_VERSION,
        "exit_code": run.exit_code if exit_code is None else exit_code,
        "results": [result_json(r, traces.get((r.prop.file, r.prop.name))) for r in run.results],
        "explorations": [
            {
                "design": e.group.design,
                "variant": dict(e.group.variant),
                "environment": e.group.environment,
                "effective_environment": (
                    dict(e.environment) if e.environment is not None else None
                ),
                "properties": [{"file": p.file, "name": p.name} for p in e.group.properties],
                "states": e.stats.states,
                "transitions": e.stats.transitions,
                "depth": e.stats.depth,
                "seconds": round(e.stats.seconds, 6),
                "states_per_second": round(e.stats.states_per_second, 1),
                "complete": e.complete,
                "stop_reason": e.stop_reason,
                "model_statistics": dict(e.model_stats),
                "workers": e.stats.workers,
                "reductions": list(e.reductions),
                "por": {
                    "persistent_set_expansions": e.stats.persistent_expansions,
                    "expanded_in_full_unasked": e.stats.persistent_skipped,
                } if "por" in e.reductions else None,
                "compact": e.options.compact,
                "collision_probability": (
                    e.stats.collision_probability if e.options.compact else None
                ),
                "not_reduced": [{"name": name, "reason": why} for name, why in e.unreduced],
                "coverage": _coverage_json(e.coverage, e.coverage_error),
            }
            for e in run.explorations
        ],
        "coverage": run_coverage(run.explorations),
        "summary": {
            "total": len(run.results),
            "ok": sum(1 for r in run.results if r.ok),
            "unexpected": sum(
                1 for r in run.results
                if not r.ok and r.verdict in (Verdict.HOLDS, Verdict.VIOLATED)
            ),
            "incomplete": sum(1 for r in run.results if r.verdict is Verdict.INCOMPLETE),
            "errors": sum(1 for r in run.results if r.verdict is Verdict.ERROR),
            "vacuous": len(run.vacuous),
        },
    }


def json_output(out: OutputContext) -> str:
    data = run_json(out.run, out.traces, out.exit_code)
    if out.run.input_errors:  # what kept properties from loading, as without a run
        data["errors"] = errors_json(list(out.run.input_errors))["errors"]
    return dumps(data)


def _coverage_json(
    coverage: Mapping[str, Any] | None, error: str | None
) -> dict[str, Any] | None:
    if coverage is None:
        return {"error": error} if error else None
    return dict(coverage)


def errors_json(errors: list[InputError] | list[Any]) -> dict[str, Any]:
    return {
        "version": JSON_VERSION,
        "exit_code": 2,
        "results": [],
        "explorations": [],
        "errors": [
            {"message": e.message, "path": e.path, "line": e.line} if isinstance(e, InputError)
            else {"message": str(e), "path": None, "line": None}
            for e in errors
        ],
    }


def dumps(data: Mapping[str, Any]) -> str:
    return json.dumps(data, indent=2, default=str) + "\n"
