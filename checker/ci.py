"""CI formats: JUnit XML, SARIF 2.1.0, and GitHub Actions annotations and step summary.

- JUnit (`--junit FILE`): one `<testsuite>` per property file, one `<testcase>` per
  property (classname: the file's path with `/` as `.` and no `.toml`); a verdict that
  differs from its expectation is a `<failure>` whose text is the trace, an `error`
  verdict an `<error>`, an `incomplete` one `<skipped>` (the run still exits 3). The
  xunit2 subset GitLab and Jenkins read: testsuites/testsuite/testcase with
  tests/failures/errors/skipped/time counts.
  A testcase's time is its share of the exploration it was decided in (the exploration's
  time divided among the properties that shared it), so the times add up to the run's.
- SARIF (`--sarif FILE`): one rule per property, one result per property that does not
  meet its expectation, located at the design line of the step that decided it (the
  trace's last step: the clobbering write, the shutdown, the timeout; for an event, the
  line its CPU was at), with the `[[property]]` line as a related location (and the
  located steps that did damage before it); a result without a located trace is at the
  property's line. A trace becomes a codeFlow/threadFlow whose locations are the source
  lines of its steps, each with the state after the step in its `state` map.
- GitHub Actions (when `GITHUB_ACTIONS=true`): an `::error` (`::warning` for incomplete)
  workflow command per such property on stderr, at the same location as its SARIF
  result (the message names the property's file:line), and a Markdown table appended to
  `$GITHUB_STEP_SUMMARY`.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import shlex
import socket
from collections.abc import Mapping, MutableMapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any, TextIO
from xml.etree import ElementTree as ET

from checker.errors import InputError
from checker.report import summary_line, trace_lines
from checker.reportdir import relative_file
from checker.results import OutputContext, PropertyResult, RunResult, TraceFiles
from checker.trace import (
    StepLocation,
    damaging_steps,
    graph_steps,
    loop_start,
    step_location,
    violating_step,
)
from checker.verdict import Verdict

TOOL_NAME = "irq-checker"
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
FINGERPRINT_KEY = "irqCheckerProperty/v1"


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("irq-checker")
    except Exception:
        return "0"


def _what(result: PropertyResult) -> str:
    """What went wrong, in one line."""
    if result.verdict is Verdict.ERROR:
        return f"property '{result.prop.name}' could not be decided: {result.message}"
    if result.verdict is Verdict.INCOMPLETE:
        return f"property '{result.prop.name}' is incomplete: {result.message}"
    return (
        f"property '{result.prop.name}' is {result.verdict}, expected {result.prop.expect}: "
        f"{result.message}"
    )


def trace_text(result: PropertyResult) -> str:
    if result.graph is None:
        return ""
    what = "witness" if result.verdict is Verdict.HOLDS else "counterexample"
    steps = result.graph.number_of_nodes() - 1
    lines = [f"{what}: {steps} step{'s' if steps != 1 else ''}"]
    lines += [line[4:] if line.startswith("    ") else line
              for line in trace_lines(result.graph, verbose=True)]
    return "\n".join(lines)


# -- JUnit ---------------------------------------------------------------------------------


def classname(path: str) -> str:
    posix = PurePosixPath(Path(path).as_posix())
    parts = [p for p in posix.with_suffix("").parts if p not in ("/", ".", "..")]
    return ".".join(parts) or posix.name


def property_seconds(run: RunResult) -> dict[int, float]:
    """Each result's share of its exploration's time (by `id(result)`): an exploration
    shared by n properties gives each a n-th, so the shares add up to the run's time."""
    sharing: dict[int, int] = {}
    for result in run.results:
        sharing[result.exploration] = sharing.get(result.exploration, 0) + 1
    out: dict[int, float] = {}
    for result in run.results:
        index = result.exploration
        seconds = (
            run.explorations[index].stats.seconds if 0 <= index < len(run.explorations)
            else result.stats.seconds
        )
        out[id(result)] = seconds / sharing[index]
    return out


def junit_xml(run: RunResult, traces: Mapping[tuple[str, str], TraceFiles]) -> str:
    now = datetime.datetime.now().replace(microsecond=0).isoformat()
    by_file: dict[str, list[PropertyResult]] = {}
    for result in run.results:
        by_file.setdefault(result.prop.file, []).append(result)
    root = ET.Element("testsuites", name=TOOL_NAME)
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    total_time = 0.0
    share = property_seconds(run)
    for path, results in by_file.items():
        counts = {"tests": len(results), "failures": 0, "errors": 0, "skipped": 0}
        suite_time = 0.0
        suite = ET.SubElement(root, "testsuite", name=path)
        for result in results:
            seconds = share[id(result)]
            suite_time += seconds
            case = ET.SubElement(
                suite, "testcase", name=result.prop.name, classname=classname(path),
                file=path, time=f"{seconds:.3f}",
            )
            where = f"{path}:{result.prop.line}"
            detail = f"{where}: {_what(result)}"
            text = trace_text(result)
            if result.verdict is Verdict.ERROR:
                counts["errors"] += 1
                ET.SubElement(case, "error", message=_what(result), type="error").text = detail
            elif result.verdict is Verdict.INCOMPLETE:
                counts["skipped"] += 1
                ET.SubElement(case, "skipped", message=_what(result))
            elif not result.ok:
                counts["failures"] += 1
                failure = ET.SubElement(
                    case, "failure", message=_what(result), type="unexpected-verdict"
                )
                failure.text = detail + ("\n\n" + text if text else "")
            out = [result.message]
            files = traces.get((result.prop.file, result.prop.name))
            if files is not None:
                out.append(f"trace files: {files.replay_file} (replay: python -m checker "
                           f"replay {shlex.quote(files.replay_file)})")
            if result.ok and text:
                out.append(text)
            out.extend(f"warning: {w}" for w in result.vacuity)
            ET.SubElement(case, "system-out").text = "\n".join(out)
        suite.set("tests", str(counts["tests"]))
        suite.set("failures", str(counts["failures"]))
        suite.set("errors", str(counts["errors"]))
        suite.set("skipped", str(counts["skipped"]))
        suite.set("time", f"{suite_time:.3f}")
        suite.set("timestamp", now)
        suite.set("hostname", socket.gethostname() or "localhost")
        for key in totals:
            totals[key] += counts[key]
        total_time += suite_time
    for key, value in totals.items():
        root.set(key, str(value))
    root.set("time", f"{total_time:.3f}")
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


# -- SARIF ---------------------------------------------------------------------------------


def rule_id(result: PropertyResult) -> str:
    """The property's file (relative, without `.toml`) and name: two files of one name in
    different folders give different rules."""
    return f"{relative_file(result.prop.file).removesuffix('.toml')}/{result.prop.name}"


def fingerprint(result: PropertyResult) -> str:
    text = "\0".join((Path(result.prop.file).as_posix(), result.prop.name, str(result.verdict)))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _artifact(path: str) -> dict[str, Any]:
    p = Path(path)
    if p.is_absolute():
        try:
            p = p.relative_to(Path.cwd())
        except ValueError:
            return {"uri": p.as_uri()}
    return {"uri": p.as_posix(), "uriBaseId": "SRCROOT"}


def _physical(path: str, line: int | None) -> dict[str, Any]:
    out: dict[str, Any] = {"artifactLocation": _artifact(path)}
    if isinstance(line, int) and line > 0:
        out["region"] = {"startLine": line}
    return out


def _text(value: Any) -> dict[str, str]:
    return {"text": value if isinstance(value, str) else json.dumps(value)}


def decided_at(result: PropertyResult) -> StepLocation | None:
    """The design line of the step that decided a result (its trace's last step), when
    the trace has one."""
    if result.graph is None:
        return None
    return violating_step(result.graph, result.inspected)


def code_flow(result: PropertyResult) -> dict[str, Any] | None:
    if result.graph is None:
        return None
    locations: list[dict[str, Any]] = []
    steps = graph_steps(result.graph)
    last = len(steps) - 1
    for node, edge in steps[1:]:
        assert edge is not None
        step = int(node["step"])
        label = str(edge.get("label", "?"))
        damage = edge.get("damage")
        where = step_location(step, edge, result.inspected)
        path, line = (where.file, where.line) if where is not None else (None, None)
        text = f"{step}. {label}" + ("" if where is None or where.own else " (at this line)")
        if edge.get("macro"):
            text += f" (in macro: {edge['macro']})"
        if damage:
            text += f" - {damage}"
        location: dict[str, Any] = {"message": {"text": text}}
        if path is not None:
            location["physicalLocation"] = _physical(path, line)
        entry: dict[str, Any] = {
            "location": location,
            "state": {str(k): _text(v) for k, v in node.items() if k != "step"},
            "executionOrder": step,
            "nestingLevel": 0,
            "importance": "essential" if damage or step == last else (
                "important" if "file" not in edge else "unimportant"
            ),
        }
        if damage:
            entry["kinds"] = ["danger"]
        locations.append(entry)
    if not locations:  # a zero-step trace: the initial state already fails
        node = steps[0][0]
        locations.append({
            "location": {"message": {"text": "the initial state"},
                         "physicalLocation": _physical(result.prop.file, result.prop.line)},
            "state": {str(k): _text(v) for k, v in node.items() if k != "step"},
            "executionOrder": 0,
            "nestingLevel": 0,
        })
    what = "witness" if result.verdict is Verdict.HOLDS else "counterexample"
    loop = loop_start(result.graph)
    if loop is not None:
        # a lasso: the flow ends by repeating the location the loop goes back to (the
        # loop's first step; the last step's, when the last state stutters forever)
        again = dict(locations[min(loop, len(locations) - 1)])
        text = (f"back to step {loop + 1}: steps {loop + 1}..{last} repeat forever"
                if loop < last else f"state {last} has no enabled action: it stutters forever")
        again["location"] = {**again["location"], "message": {"text": text}}
        again["executionOrder"] = last + 1
        again["importance"] = "essential"
        again["kinds"] = ["loop"]
        locations.append(again)
        what = f"lasso counterexample (loop from step {loop})"
    return {
        "message": {"text": f"{what}: {len(steps) - 1} steps"},
        "threadFlows": [{"id": "trace", "locations": locations}],
    }


def _step_text(where: StepLocation) -> str:
    text = f"step {where.step}: {where.label}" + ("" if where.own else " (at this line)")
    return text + (f" - {where.damage}" if where.damage else "")


def _result_locations(result: PropertyResult) -> dict[str, Any]:
    """`locations` (the design line of the deciding step, else the property's line) and
    `relatedLocations` (the property's line, then earlier steps that did damage)."""
    prop = result.prop
    at_property = _physical(prop.file, prop.line)
    where = decided_at(result)
    if where is None:
        return {"locations": [{"physicalLocation": at_property}]}
    related: list[dict[str, Any]] = [{
        "id": 1, "physicalLocation": at_property,
        "message": {"text": f"property '{prop.name}'"},
    }]
    assert result.graph is not None
    for earlier in damaging_steps(result.graph, result.inspected):
        if earlier.step != where.step:
            related.append({"id": len(related) + 1,
                            "physicalLocation": _physical(earlier.file, earlier.line),
                            "message": {"text": _step_text(earlier)}})
    return {
        "locations": [{"physicalLocation": _physical(where.file, where.line),
                       "message": {"text": _step_text(where)}}],
        "relatedLocations": related,
    }


def sarif_log(run: RunResult) -> dict[str, Any]:
    rules: list[dict[str, Any]] = []
    index: dict[tuple[str, str], int] = {}
    for result in run.results:
        prop = result.prop
        index[(prop.file, prop.name)] = len(rules)
        expr = prop.expr.source if prop.expr is not None else ""
        short = f"{prop.kind} {expr}".strip() + f" (expect {prop.expect})"
        rule: dict[str, Any] = {
            "id": rule_id(result),
            "name": prop.name,
            "shortDescription": {"text": short},
            "fullDescription": {"text": " ".join(prop.description.split()) or short},
            "defaultConfiguration": {"level": "error"},
            "properties": {
                "file": prop.file, "kind": str(prop.kind), "expr": expr or None,
                "expected": str(prop.expect), "design": prop.design,
                "variant": dict(prop.variant),
            },
        }
        rules.append(rule)
    results: list[dict[str, Any]] = []
    for result in run.results:
        if result.ok:
            continue
        prop = result.prop
        entry: dict[str, Any] = {
            "ruleId": rule_id(result),
            "ruleIndex": index[(prop.file, prop.name)],
            "kind": "fail",
            "level": "warning" if result.verdict is Verdict.INCOMPLETE else "error",
            "message": {"text": _what(result)},
            **_result_locations(result),
            "partialFingerprints": {FINGERPRINT_KEY: fingerprint(result)},
            "properties": {
                "verdict": str(result.verdict), "expected": str(prop.expect),
                "states": result.stats.states, "depth": result.stats.depth,
            },
        }
        flow = code_flow(result)
        if flow is not None:
            entry["codeFlows"] = [flow]
        results.append(entry)
    results.extend(vacuity_sarif(result, index) for result in run.vacuous)
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": TOOL_NAME, "version": _version(),
                "rules": rules,
            }},
            "originalUriBaseIds": {"SRCROOT": {"uri": Path.cwd().as_uri().rstrip("/") + "/"}},
            "invocations": [{
                "executionSuccessful": not any(r.verdict is Verdict.ERROR for r in run.results),
                "exitCode": run.exit_code,
            }],
            "columnKind": "unicodeCodePoints",
            "results": results,
        }],
    }


def vacuity_sarif(result: PropertyResult, index: Mapping[tuple[str, str], int]) -> dict[str, Any]:
    """A `warning` result: the property holds, maybe vacuously (checker.vacuity)."""
    prop = result.prop
    return {
        "ruleId": rule_id(result),
        "ruleIndex": index[(prop.file, prop.name)],
        "kind": "review",
        "level": "warning",
        "message": {"text": f"{prop.name}: " + "; ".join(result.vacuity)},
        "locations": [{"physicalLocation": _physical(prop.file, prop.line)}],
        "partialFingerprints": {FINGERPRINT_KEY: fingerprint(result) + ":vacuous"},
        "properties": {"verdict": str(result.verdict), "expected": str(prop.expect),
                       "vacuous": True},
    }


def sarif_text(run: RunResult) -> str:
    return json.dumps(sarif_log(run), indent=2) + "\n"


# -- GitHub Actions ------------------------------------------------------------------------


def junit_output(out: OutputContext) -> str:
    return junit_xml(out.run, out.traces)


def sarif_output(out: OutputContext) -> str:
    return sarif_text(out.run)


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def github_annotations(run: RunResult) -> list[str]:
    """`::error file=...,line=...,title=...::message` per property not as expected."""
    out: list[str] = []
    for result in run.results:
        if result.ok:
            continue
        level = "warning" if result.verdict is Verdict.INCOMPLETE else "error"
        title = f"{TOOL_NAME}: {result.prop.name}"
        where = decided_at(result)
        file, line = (result.prop.file, result.prop.line) if where is None else (
            where.file, where.line
        )
        params = ",".join((
            f"file={_escape_property(relative_file(file))}",
            *((f"line={line}",) if line is not None else ()),
            f"title={_escape_property(title)}",
        ))
        message = _what(result)
        if where is not None:
            message += (f" (step {where.step} of the trace; property at "
                        f"{result.prop.file}:{result.prop.line})")
        elif result.trace is not None:
            message += f" ({result.trace.length}-step trace in the report)"
        out.append(f"::{level} {params}::{_escape_data(message)}")
    for result in run.vacuous:
        params = ",".join((
            f"file={_escape_property(relative_file(result.prop.file))}",
            f"line={result.prop.line}",
            f"title={_escape_property(f'{TOOL_NAME}: {result.prop.name} (vacuous)')}",
        ))
        out.append(f"::warning {params}::{_escape_data('; '.join(result.vacuity))}")
    return out


def github_input_errors(
    errors: Sequence[Exception], env: Mapping[str, str] = os.environ, stream: TextIO | None = None
) -> None:
    """When running in GitHub Actions: an `::error` at the file and line of each input
    error (a bad property or design file), on `stream` (stderr)."""
    if env.get("GITHUB_ACTIONS") != "true":
        return
    import sys

    out = stream if stream is not None else sys.stderr
    for error in errors:
        params = [f"title={_escape_property(TOOL_NAME + ': bad input')}"]
        message: object = error
        if isinstance(error, InputError):
            message = error.message
            if error.path is not None:
                params.insert(0, f"file={_escape_property(str(error.path))}")
                if isinstance(error.line, int):
                    params.insert(1, f"line={error.line}")
        out.write(f"::error {','.join(params)}::{_escape_data(str(message))}\n")
    out.flush()


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def github_summary(run: RunResult, traces: Mapping[tuple[str, str], TraceFiles]) -> str:
    """The run as GitHub-flavoured Markdown for `$GITHUB_STEP_SUMMARY`."""
    icon = {True: ":white_check_mark:", False: ":x:"}
    lines = [f"## {TOOL_NAME}", "", summary_line(run), "",
             "| | property | file | verdict | expected | states | depth | time |",
             "|---|---|---|---|---|---:|---:|---:|"]
    share = property_seconds(run)  # an exploration shared by n properties: a n-th each
    for r in run.results:
        mark = icon[r.ok] if r.verdict is not Verdict.INCOMPLETE else ":warning:"
        lines.append(
            f"| {mark} | `{_md(r.prop.name)}` | {_md(r.prop.file)}:{r.prop.line} | "
            f"{r.verdict} | {r.prop.expect} | {r.stats.states:,} | {r.stats.depth} | "
            f"{share[id(r)]:.2f}s |"
        )
    for r in run.results:
        if r.ok or r.graph is None:
            continue
        lines += ["", f"<details><summary><b>{_md(r.prop.name)}</b>: {_md(_what(r))}</summary>",
                  "", "```text", trace_text(r), "```"]
        files = traces.get((r.prop.file, r.prop.name))
        if files is not None:
            lines += ["", f"Replay: `python -m checker replay {shlex.quote(files.replay_file)}`"]
        lines += ["", "</details>"]
    return "\n".join(lines) + "\n"


def github_report(
    run: RunResult,
    traces: Mapping[tuple[str, str], TraceFiles],
    env: MutableMapping[str, str] | Mapping[str, str] = os.environ,
    stream: TextIO | None = None,
) -> None:
    """When running in GitHub Actions: annotations on `stream` (stderr) and the summary
    appended to `$GITHUB_STEP_SUMMARY`."""
    if env.get("GITHUB_ACTIONS") != "true":
        return
    import sys

    out = stream if stream is not None else sys.stderr
    for line in github_annotations(run):
        out.write(line + "\n")
    out.flush()
    summary = env.get("GITHUB_STEP_SUMMARY")
    if summary:
        try:
            with open(summary, "a", encoding="utf-8") as handle:
                handle.write(github_summary(run, traces))
        except OSError as exc:
            out.write(f"::warning::{TOOL_NAME}: cannot write the step summary: "
                      f"{_escape_data(str(exc))}\n")
