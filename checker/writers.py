"""Every output format, registered in one table (`WRITERS`).

A format is a writer function in its own module plus one line here; the CLI derives its
options from the table (`--format NAME` for the formats printed on stdout, `--NAME FILE`
for a file, `--NAME` for a page in the report directory), the trace files of every
counterexample or witness are the `TRACE` formats in table order, and the HTML report
links each trace's files in that order too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from checker.ci import junit_output, sarif_output
from checker.html import INDEX, html_output
from checker.itf import write_itf
from checker.replay import replay_record
from checker.report import (
    json_output,
    text_output,
    trace_base,
    write_dot,
    write_graphml,
    write_node_link,
)
from checker.results import OutputContext, PropertyResult, RunResult, TraceFiles
from checker.spec import Property


class Target(StrEnum):
    """Where a writer's output goes."""

    TRACE = "trace"  # one file per counterexample or witness, under the report directory
    STDOUT = "stdout"  # printed, chosen with --format NAME
    FILE = "file"  # a file the user names: --NAME FILE
    REPORT = "report"  # a page in the report directory: --NAME


RunWriter = Callable[[OutputContext], str]
TraceWriter = Callable[[PropertyResult, Mapping[str, Any], Path], None]


@dataclass(frozen=True)
class Writer:
    name: str
    target: Target
    help: str
    run: RunWriter | None = None  # STDOUT, FILE, REPORT: the run as text
    trace: TraceWriter | None = None  # TRACE: writes one trace's file
    suffix: str = ""  # TRACE: file suffix; REPORT: file name in the report directory


WRITERS: tuple[Writer, ...] = (
    Writer("graphml", Target.TRACE, "GraphML trace", trace=write_graphml, suffix="graphml"),
    Writer("json", Target.TRACE, "node-link JSON trace, with the replay record",
           trace=write_node_link, suffix="json"),
    Writer("dot", Target.TRACE, "Graphviz DOT trace", trace=write_dot, suffix="dot"),
    Writer("itf", Target.TRACE, "Informal Trace Format (Apalache)", trace=write_itf,
           suffix="itf.json"),
    Writer("text", Target.STDOUT, "verdicts and traces as text", run=text_output),
    Writer("json", Target.STDOUT, "the run as JSON", run=json_output),
    Writer("html", Target.REPORT, "also write DIR/index.html, a self-contained review "
           "report (timelines, stacks, trace graphs, coverage)", run=html_output,
           suffix=INDEX),
    Writer("junit", Target.FILE, "write a JUnit XML report (one testcase per property)",
           run=junit_output),
    Writer("sarif", Target.FILE, "write a SARIF 2.1.0 log (one result per unexpected "
           "verdict)", run=sarif_output),
)


def writers(target: Target) -> tuple[Writer, ...]:
    return tuple(w for w in WRITERS if w.target is target)


def stdout_writer(name: str) -> Writer:
    return next(w for w in writers(Target.STDOUT) if w.name == name)


# -- trace files -----------------------------------------------------------------------------


def trace_files(report_dir: Path, prop: Property) -> TraceFiles:
    """Where a property's trace goes, one file per TRACE format."""
    return TraceFiles(
        str(trace_base(report_dir, prop)),
        tuple((w.name, w.suffix) for w in writers(Target.TRACE)),
    )


def write_trace_files(result: PropertyResult, report_dir: Path) -> TraceFiles:
    assert result.graph is not None
    files = trace_files(report_dir, result.prop)
    Path(files.base).parent.mkdir(parents=True, exist_ok=True)
    record = replay_record(result.prop, result.verdict, result.graph)
    for writer in writers(Target.TRACE):
        assert writer.trace is not None
        writer.trace(result, record, Path(files.path(writer.name)))
    return files


def clear_trace_files(report_dir: Path, prop: Property) -> None:
    """Remove a stale trace of a property that has none this run."""
    for path in trace_files(report_dir, prop).as_dict().values():
        Path(path).unlink(missing_ok=True)


def write_all_traces(run: RunResult, report_dir: Path) -> dict[tuple[str, str], TraceFiles]:
    written: dict[tuple[str, str], TraceFiles] = {}
    for result in run.results:
        if result.graph is not None:
            written[(result.prop.file, result.prop.name)] = write_trace_files(result, report_dir)
        elif report_dir.is_dir():
            clear_trace_files(report_dir, result.prop)
    return written
