"""Every output format, registered in one table (`WRITERS`).

A format is a writer function in its own module plus one line here; the CLI derives its
options from the table (`--format NAME` for the formats printed on stdout, `--NAME FILE`
for a file, `--NAME` for a page in the report directory), the trace files of every
counterexample or witness are the `TRACE` formats in table order, and the HTML report
links each trace's files in that order too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from checker.ci import junit_output, sarif_output
from checker.html import html_output
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
from checker.reportdir import INDEX, ReportDir, report_parts, write_file
from checker.results import OutputContext, PropertyResult, TraceFiles
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


# -- trace files and reports -----------------------------------------------------------------


def trace_files(report_dir: Path, prop: Property) -> TraceFiles:
    """Where a property's trace goes, one file per TRACE format."""
    return TraceFiles(
        str(trace_base(report_dir, prop)),
        tuple((w.name, w.suffix) for w in writers(Target.TRACE)),
    )


def write_trace_files(result: PropertyResult, reports: ReportDir) -> TraceFiles | None:
    """Every TRACE file of a result with a trace; None when one could not be written
    (`reports.problems` says why)."""
    assert result.graph is not None
    prop = result.prop
    *folders, base = report_parts(prop.file, prop.name)
    try:
        files = trace_files(reports.root, prop)
    except ValueError as exc:  # not inside the report directory: never written
        reports.problems.append(f"cannot write reports to {reports.root}: {exc}")
        return None
    record = replay_record(prop, result.verdict, result.graph)
    complete = True
    for writer in writers(Target.TRACE):
        trace = writer.trace
        assert trace is not None

        def fill(path: Path, trace: TraceWriter = trace) -> None:
            trace(result, record, path)

        if reports.write((*folders, f"{base}.{writer.suffix}"), fill) is None:
            complete = False
    return files if complete else None


def write_reports(
    out: OutputContext, pages: Sequence[Writer] = (), files: Mapping[str, str] | None = None
) -> tuple[OutputContext, list[str]]:
    """Write a run's files: every trace, the REPORT `pages` asked for, the FILE formats
    in `files` (format name -> path); then remove what an earlier run left in the report
    directory and record what this one wrote (`checker.reportdir`). A write that fails
    does not stop the others. Returns the context with the traces and pages written, and
    one line per failure (the run then exits 2)."""
    reports = ReportDir(out.report_dir)
    traces: dict[tuple[str, str], TraceFiles] = {}
    for result in out.run.results:
        if result.graph is not None:
            written = write_trace_files(result, reports)
            if written is not None:
                traces[(result.prop.file, result.prop.name)] = written
    out = replace(out, traces=traces)
    pages_written: list[str] = []
    problems: list[str] = []

    def render(writer: Writer, where: str) -> str | None:
        assert writer.run is not None
        try:
            return writer.run(out)
        except Exception as exc:  # a writer that failed: its file is lost, not the run
            problems.append(f"cannot write {where}: {type(exc).__name__}: {exc}")
            return None

    for writer in pages:
        text = render(writer, str(reports.root / writer.suffix))
        page = reports.write_text((writer.suffix,), text) if text is not None else None
        if page is not None:
            pages_written.append(str(page))
    for writer in writers(Target.FILE):
        path = (files or {}).get(writer.name)
        if not path:
            continue
        text = render(writer, path)
        if text is None:
            continue
        below = reports.relative(path)
        if below is not None:  # inside the report directory: the run owns it too
            reports.write_text(below, text)
            continue
        try:
            write_file(Path(path), text)
        except OSError as exc:
            problems.append(f"cannot write {path}: {exc.strerror or exc}")
    reports.finish()
    return replace(out, written=pages_written), reports.problems + problems
