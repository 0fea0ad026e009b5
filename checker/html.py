"""The HTML review report: one self-contained, offline `index.html` (`--html`).

It holds a summary table of every property; for each counterexample or witness a
swimlane timeline (one lane per CPU or actor; each step labelled with its instruction or
event and its source file:line, the steps that broke something highlighted), the state
at the selected step (CPUs and registers, stacks with their live frames, damaged frames
highlighted, variables, incidents: from the model's optional `inspect_state`, else the
`describe_state` attributes), a witness section when the trace carries witness values,
and the trace graph as SVG (Graphviz `dot` when it is on PATH, else a built-in vertical
layout); then the coverage of the run (a listing of each source file with its unreached
lines marked) when coverage was computed.

Steps are chosen with the mouse or the keyboard: Left/Right or k/j step back and forth
in the active trace (the one last clicked), Home/End jump to its first and last step.
Everything (CSS, JS, data, SVG) is inline: the page fetches nothing.
"""

from __future__ import annotations

import datetime
import html
import json
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from checker.ci import property_seconds
from checker.coverage import line_ranges, read_source, run_coverage
from checker.report import summary_line
from checker.reportdir import relative_file
from checker.results import OutputContext, PropertyResult, RunResult, TraceFiles, witness_of
from checker.trace import graph_steps, loop_start, step_location
from checker.verdict import Verdict

if TYPE_CHECKING:
    import networkx as nx

DOT_TIMEOUT = 20.0
ASSETS = Path(__file__).resolve().parent / "assets"


def _asset(name: str) -> str:
    return (ASSETS / name).read_text(encoding="utf-8")


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _mark(result: PropertyResult) -> tuple[str, str]:
    if result.verdict is Verdict.ERROR:
        return "ERROR", "error"
    if result.verdict is Verdict.INCOMPLETE:
        return "INCOMPLETE", "incomplete"
    return ("ok", "ok") if result.ok else ("FAIL", "fail")


def trace_anchor(result: PropertyResult) -> str:
    """A fragment id for a property's trace, from its file's path relative to the working
    directory (so two files of one name in different folders differ) and its name: only
    letters, digits, `_` and `-` (the page makes a rare clash unique, `trace_anchors`)."""
    where = relative_file(result.prop.file).removesuffix(".toml")
    return "trace-" + re.sub(r"[^A-Za-z0-9_-]+", "-", f"{where}--{result.prop.name}")


def trace_anchors(results: Sequence[PropertyResult]) -> dict[int, str]:
    """Each result's anchor (by `id(result)`), a clash numbered `-2`, `-3`... in order."""
    out: dict[int, str] = {}
    used: set[str] = set()
    for result in results:
        anchor = base = trace_anchor(result)
        number = 1
        while anchor in used:
            number += 1
            anchor = f"{base}-{number}"
        used.add(anchor)
        out[id(result)] = anchor
    return out


def _short_path(path: str) -> str:
    return Path(path).name


def _lane_of(edge: Mapping[str, Any]) -> str:
    cpu = edge.get("cpu")
    if isinstance(cpu, int) and not isinstance(cpu, bool):
        return f"cpu{cpu}"
    actor = edge.get("actor")
    return str(actor) if actor is not None else "system"


def _lanes(steps: Sequence[tuple[dict[str, Any], dict[str, Any] | None]],
           inspected: Sequence[Mapping[str, Any]] | None) -> list[str]:
    cpus: set[int] = set()
    others: list[str] = []
    for _, edge in steps[1:]:
        assert edge is not None
        cpu = edge.get("cpu")
        if isinstance(cpu, int) and not isinstance(cpu, bool):
            cpus.add(cpu)
        else:
            lane = _lane_of(edge)
            if lane not in others:
                others.append(lane)
    if inspected:
        for record in inspected[0].get("cpus", []) or []:
            if isinstance(record, Mapping) and isinstance(record.get("id"), int):
                cpus.add(record["id"])
    return [f"cpu{c}" for c in sorted(cpus)] + others


def _label_in_lane(label: str, lane: str) -> str:
    prefix = f"{lane}: "
    return label[len(prefix):] if label.startswith(prefix) else label


# -- SVG -----------------------------------------------------------------------------------


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def graph_dot_source(graph: nx.DiGraph) -> str:
    """A compact DOT of the trace for drawing (not the typed trace DOT of the reports)."""

    def q(text: str) -> str:
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'

    lines = [
        "digraph trace {",
        '  graph [rankdir=TB, nodesep=0.3, ranksep=0.35, fontname="Helvetica", '
        'bgcolor="transparent"];',
        '  node [shape=circle, fixedsize=true, width=0.42, fontsize=10, fontname="Helvetica", '
        'style=filled, fillcolor="#ffffff", color="#57606a"];',
        '  edge [fontsize=9, fontname="Helvetica", color="#57606a", arrowsize=0.6];',
    ]
    steps = graph_steps(graph)
    for node, edge in steps:
        step = int(node["step"])
        bad = edge is not None and bool(edge.get("damage"))
        fill = "#ffebe9" if bad else ("#ddf4ff" if step == 0 else "#ffffff")
        color = "#cf222e" if bad else "#57606a"
        lines.append(f"  s{step} [label={q('s' + str(step))}, fillcolor={q(fill)}, "
                     f"color={q(color)}];")
    for node, edge in steps[1:]:
        assert edge is not None
        step = int(node["step"])
        label = _truncate(str(edge.get("label", "")), 48)
        if "file" in edge:
            label += f"\\n{_short_path(str(edge['file']))}:{edge.get('line', '')}"
        color = "#cf222e" if edge.get("damage") else "#57606a"
        text = label.replace('"', '\\"')
        lines.append(f'  s{step - 1} -> s{step} [label="{text}", color={q(color)}, '
                     f'fontcolor={q(color)}];')
    loop = loop_start(graph)
    if loop is not None:  # a lasso: the back edge closes its loop
        lines.append(f'  s{len(steps) - 1} -> s{loop} [label="loop", style=dashed, '
                     'color="#8250df", fontcolor="#8250df", constraint=false];')
    lines.append("}")
    return "\n".join(lines) + "\n"


def svg_with_dot(graph: nx.DiGraph, dot: str | None = None) -> str | None:
    """The trace drawn by Graphviz, or None when `dot` is missing or fails."""
    exe = dot or shutil.which("dot")
    if exe is None:
        return None
    try:
        done = subprocess.run(
            [exe, "-Tsvg"], input=graph_dot_source(graph), capture_output=True, text=True,
            timeout=DOT_TIMEOUT, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0 or "<svg" not in done.stdout:
        return None
    svg = done.stdout[done.stdout.index("<svg"):]
    return svg.replace("<svg", '<svg class="trace-graph" data-layout="graphviz"', 1)


def svg_builtin(graph: nx.DiGraph) -> str:
    """The trace as a vertical path: a node per state, an edge per step, labelled."""
    steps = graph_steps(graph)
    gap, radius, x = 64, 14, 30
    height = 24 + gap * max(len(steps) - 1, 0) + 2 * radius + 8
    width = 560
    parts = [
        f'<svg class="trace-graph" data-layout="builtin" xmlns="http://www.w3.org/2000/svg" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" '
        'fill="context-stroke"/></marker></defs>',
    ]

    def y_of(step: int) -> int:
        return 12 + radius + gap * step

    for node, edge in steps[1:]:
        assert edge is not None
        step = int(node["step"])
        bad = bool(edge.get("damage"))
        color = "#cf222e" if bad else "#57606a"
        y0, y1 = y_of(step - 1) + radius, y_of(step) - radius - 2
        label = esc(_truncate(str(edge.get("label", "")), 64))
        where = ""
        if "file" in edge:
            where = esc(f"{_short_path(str(edge['file']))}:{edge.get('line', '')}")
        mid = (y0 + y1) // 2
        parts.append(
            f'<g class="edge"><title>s{step - 1}-&gt;s{step}</title>'
            f'<line x1="{x}" y1="{y0}" x2="{x}" y2="{y1}" stroke="{color}" stroke-width="1.5" '
            f'marker-end="url(#arrow)"/>'
            f'<text x="{x + 24}" y="{mid - 2}" font-size="11" fill="{color}">{label}</text>'
            + (f'<text x="{x + 24}" y="{mid + 11}" font-size="10" fill="#6e7781">{where}</text>'
               if where else "")
            + "</g>"
        )
    loop = loop_start(graph)
    if loop is not None:  # a lasso: the back edge, drawn left of the path
        last = len(steps) - 1
        y0, y1 = y_of(last), y_of(loop)
        parts.append(
            f'<g class="edge loop"><title>s{last}-&gt;s{loop} (loop)</title>'
            f'<path d="M {x - radius} {y0} C {x - 28} {y0}, {x - 28} {y1 + radius}, '
            f'{x - radius + 2} {y1 + 6}" fill="none" stroke="#8250df" stroke-width="1.5" '
            f'stroke-dasharray="4 3" marker-end="url(#arrow)"/></g>'
        )
    for node, edge in steps:
        step = int(node["step"])
        bad = edge is not None and bool(edge.get("damage"))
        fill = "#ffebe9" if bad else ("#ddf4ff" if step == 0 else "#ffffff")
        stroke = "#cf222e" if bad else "#57606a"
        parts.append(
            f'<g class="node"><title>s{step}</title><circle cx="{x}" cy="{y_of(step)}" '
            f'r="{radius}" fill="{fill}" stroke="{stroke}" stroke-width="1.5"/>'
            f'<text x="{x}" y="{y_of(step) + 4}" font-size="10" text-anchor="middle">'
            f's{step}</text></g>'
        )
    parts.append("</svg>")
    return "".join(parts)


def trace_svg(graph: nx.DiGraph, use_dot: bool = True) -> str:
    svg = svg_with_dot(graph) if use_dot else None
    return svg if svg is not None else svg_builtin(graph)


# -- page ----------------------------------------------------------------------------------


def _json_script(data: Any) -> str:
    text = json.dumps(data, separators=(",", ":"), default=str)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def href(path: str, base: Path) -> str | None:
    """A link from the page in `base` to `path`: relative, each segment percent-encoded
    (a `:` is `%3A`, so no segment reads as a scheme), starting with `./`; None for a
    path outside `base` (never an absolute or `file:` URL)."""
    full = os.path.normpath(os.path.abspath(path))
    root = os.path.normpath(os.path.abspath(base))
    if os.path.commonpath([root, full]) != root or full == root:
        return None
    segments = Path(os.path.relpath(full, root)).parts
    if any(s in ("", ".", "..") for s in segments):
        return None
    return "./" + "/".join(quote(s, safe="") for s in segments)


def _vacuity(result: PropertyResult) -> str:
    """A warning badge when the property holds vacuously (checker.vacuity)."""
    if not result.vacuity:
        return ""
    text = "; ".join(result.vacuity)
    return f' <span class="vacuous" title="{esc(text)}">⚠ {esc(text)}</span>'


def _fmt_env(value: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={json.dumps(v)}" for k, v in value.items()) or "—"


class _Page:
    def __init__(self, run: RunResult, traces: Mapping[tuple[str, str], TraceFiles],
                 report_dir: Path, use_dot: bool, command: str | None,
                 exit_code: int | None = None):
        self.run = run
        self.exit_code = run.exit_code if exit_code is None else exit_code
        self.traces = traces
        self.report_dir = report_dir
        self.use_dot = use_dot
        self.command = command
        self.sources: dict[str, list[str] | None] = {}
        self.data: dict[str, Any] = {"traces": {}, "sources": {}}
        self.anchors = trace_anchors(run.results)
        # a property's share of its exploration's time (the shares add up to the run's)
        self.seconds = property_seconds(run)

    def anchor(self, result: PropertyResult) -> str:
        return self.anchors[id(result)]

    def source(self, path: str) -> list[str] | None:
        if path not in self.sources:
            self.sources[path] = read_source(path)
            if self.sources[path] is not None:
                self.data["sources"][path] = self.sources[path]
        return self.sources[path]

    # -- summary ------------------------------------------------------------------------
    def summary(self) -> str:
        rows = []
        for result in self.run.results:
            mark, cls = _mark(result)
            prop = result.prop
            stats = result.stats
            name = esc(prop.name)
            if result.graph is not None:
                name = f'<a href="#{self.anchor(result)}">{name}</a>'
            files = self.traces.get((prop.file, prop.name))
            links = "—"
            if files is not None:
                links = " ".join(
                    f'<a href="{esc(link)}">{esc(label)}</a>'
                    for label, path in files.as_dict().items()
                    if (link := href(path, self.report_dir)) is not None
                ) or "—"
            expr = prop.expr.source if prop.expr is not None else ""
            rows.append(
                f'<tr class="row-{cls}" data-property="{esc(prop.name)}">'
                f'<td><span class="mark mark-{cls}">{mark}</span></td>'
                f'<td class="name">{name}</td>'
                f'<td class="file">{esc(prop.file)}:{prop.line}</td>'
                f'<td class="kind"><code>{esc(prop.kind)}</code> <code class="expr" '
                f'title="{esc(expr)}">{esc(_truncate(expr, 40))}</code></td>'
                f'<td><span class="verdict v-{esc(result.verdict)}">{esc(result.verdict)}'
                f'</span>{_vacuity(result)}</td>'
                f'<td>{esc(prop.expect)}</td>'
                f'<td class="num">{stats.states:,}</td>'
                f'<td class="num">{stats.depth}</td>'
                f'<td class="num">{self.seconds[id(result)]:.2f}s</td>'
                f'<td class="links">{links}</td></tr>'
            )
        return (
            '<section id="summary"><h2>Properties</h2>'
            '<table class="summary" id="summary-table"><thead><tr><th></th><th>property</th>'
            '<th>file</th><th>kind</th><th>verdict</th><th>expected</th>'
            '<th class="num">states</th><th class="num">depth</th><th class="num">time</th>'
            '<th>trace files</th></tr></thead><tbody>' + "".join(rows) + "</tbody></table>"
            "</section>"
        )

    # -- traces -------------------------------------------------------------------------
    def trace(self, result: PropertyResult) -> str:
        graph = result.graph
        assert graph is not None
        prop = result.prop
        steps = graph_steps(graph)
        inspected = result.inspected
        lanes = _lanes(steps, inspected)
        anchor = self.anchor(result)
        what = "witness" if result.verdict is Verdict.HOLDS else "counterexample"
        if result.verdict is Verdict.ERROR:
            what = "path to the failing state"
        mark, cls = _mark(result)
        loop = loop_start(graph)
        step_data: list[dict[str, Any]] = []
        rows: list[str] = []
        columns = f"3.2em repeat({len(lanes)}, minmax(0, 1fr))"
        head = "".join(f'<div class="lane-head">{esc(lane)}</div>' for lane in lanes)
        rows.append(f'<div class="lanes" style="grid-template-columns:{columns}">'
                    f'<div class="stepno">#</div>{head}</div>')
        for node, edge in steps:
            step = int(node["step"])
            state = {k: v for k, v in node.items() if k != "step"}
            entry: dict[str, Any] = {"state": state, "inspect": None}
            if inspected is not None and step < len(inspected):
                entry["inspect"] = inspected[step]
            if edge is None:
                entry["edge"] = None
                cells = (f'<div class="cell init" style="grid-column:2 / span {len(lanes)}">'
                         f'<span class="label">initial state</span></div>')
                classes = "step init"
            else:
                lane = _lane_of(edge)
                col = lanes.index(lane) + 2 if lane in lanes else 2
                label = _label_in_lane(str(edge.get("label", "?")), lane)
                loc = ""
                event = "file" not in edge
                if not event:
                    path = str(edge["file"])
                    self.source(path)
                    loc = f"{_short_path(path)}:{edge.get('line', '')}"
                    if edge.get("macro"):  # the invocation, then the macro's own line
                        loc += f" (in macro: {edge['macro']})"
                    entry["at"] = {"file": path, "line": edge.get("line")}
                else:
                    at = step_location(step, edge, inspected)
                    if at is not None:
                        self.source(at.file)
                        line = at.line or 0
                        loc = f"at {_short_path(at.file)}:{line}"
                        entry["at"] = {"file": at.file, "line": line, "event": True}
                entry["edge"] = edge
                damage = edge.get("damage")
                body = f'<span class="label">{esc(label)}</span>'
                if loc:
                    body += f' <span class="loc">{esc(loc)}</span>'
                if damage:
                    body += f'<div class="damage-note">{esc(damage)}</div>'
                before = '<div class="lane-empty"></div>' * (col - 2)
                after = '<div class="lane-empty"></div>' * (len(lanes) - (col - 1))
                cells = (
                    f'{before}<div class="cell{" event" if event else ""}'
                    f'{" damage" if damage else ""}">{body}</div>{after}'
                )
                classes = "step" + (" event" if event else "") + (" damage" if damage else "")
            if loop is not None and step >= loop:
                classes += " loop"
                entry["loop"] = True
            rows.append(
                f'<div class="{classes}" data-step="{step}" role="option" '
                f'aria-selected="false" style="grid-template-columns:{columns}">'
                f'<div class="stepno">{step}</div>{cells}</div>'
            )
            step_data.append(entry)
        witness = witness_of(result)
        self.data["traces"][anchor] = {
            "name": prop.name, "what": what, "lanes": lanes, "steps": step_data,
            "witness": witness, "loop_start": loop,
        }
        facts = [
            ("property file", f"{esc(prop.file)}:{prop.line}"),
            ("property", f"<code>{esc(prop.kind)}</code> <code>"
                         f"{esc(prop.expr.source if prop.expr is not None else '')}</code>"
                         + (f" to <code>{esc(prop.to.source)}</code>" if prop.to is not None
                            else "")),
            ("design", f"{esc(prop.design)}" + (f" [{esc(prop.variant_text)}]"
                                                  if prop.variant else "")),
            ("environment", esc(_fmt_env(prop.environment))),
            ("result", f"{esc(result.verdict)} (expected {esc(prop.expect)}): "
                       f"{esc(result.message)}"),
        ]
        if loop is not None:
            facts.append(("loop", (
                f"steps {loop + 1}..{len(steps) - 1} return to state {loop} and repeat "
                "forever" if loop < len(steps) - 1
                else f"state {loop} has no enabled action and stutters forever"
            ) + " (the steps marked loop)"))
        files = self.traces.get((prop.file, prop.name))
        if files is not None:
            facts.append(
                ("replay", f"<code>python -m checker replay {esc(shlex.quote(files.replay_file))}"
                           "</code>")
            )
        if result.review_error:
            facts.append(("note", esc(result.review_error)))
        dl = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in facts)
        witness_html = ""
        if witness:
            rows_w = "".join(
                f"<tr><th>{esc(k)}</th><td><code>{esc(v)}</code></td></tr>"
                for k, v in witness.items()
            )
            witness_html = (f'<div class="witness"><h3>Witness values</h3>'
                            f'<table class="kv">{rows_w}</table></div>')
        description = (f'<p class="description">{esc(" ".join(prop.description.split()))}</p>'
                       if prop.description else "")
        svg = trace_svg(graph, self.use_dot)
        count = len(steps) - 1
        return (
            f'<section class="trace" id="{anchor}" data-trace="{anchor}" data-selected="0" '
            f'data-steps="{count}"' + (f' data-loop="{loop}"' if loop is not None else "")
            + ' tabindex="-1">'
            f'<header class="trace-head"><h2><span class="mark mark-{cls}">{mark}</span> '
            f'{esc(prop.name)} <span class="what">{what}, {count} step'
            f'{"s" if count != 1 else ""}</span></h2>{description}'
            f'<dl class="facts">{dl}</dl>{witness_html}</header>'
            f'<div class="trace-body"><div class="timeline-wrap">'
            f'<div class="keys">step <b class="pos">0</b> of {count} · '
            f'<kbd>←</kbd><kbd>→</kbd> or <kbd>k</kbd><kbd>j</kbd> step, '
            f'<kbd>Home</kbd><kbd>End</kbd> first/last</div>'
            f'<div class="timeline" role="listbox" aria-label="steps of {esc(prop.name)}">'
            + "".join(rows) +
            '</div></div><div class="detail" aria-live="polite"></div></div>'
            f'<details class="graph"><summary>Trace graph</summary>'
            f'<div class="graph-box">{svg}</div></details></section>'
        )

    # -- coverage -----------------------------------------------------------------------
    def coverage(self) -> str:
        merged = run_coverage(self.run.explorations)
        if merged is None:
            missing = [e.coverage_error for e in self.run.explorations if e.coverage_error]
            note = f" ({esc(missing[0])})" if missing else " (the model reports none)"
            return (f'<section id="coverage"><h2>Coverage</h2><p class="muted">No coverage'
                    f'{note}.</p></section>')
        files = merged["files"]
        reached_total = sum(len(f["reached"]) for f in files.values())
        total = reached_total + sum(len(f["unreached"]) for f in files.values())
        chips = [f'<span class="chip">{reached_total}/{total} source lines reached</span>']
        routines = merged.get("routines", {})
        if routines:
            hit = sum(1 for v in routines.values() if v)
            chips.append(f'<span class="chip">{hit}/{len(routines)} routines</span>')
        vectors = merged.get("vectors", {})
        if vectors:
            hit = sum(1 for v in vectors.values() if v)
            chips.append(f'<span class="chip">{hit}/{len(vectors)} vectors</span>')
        parts = [f'<section id="coverage"><h2>Coverage</h2><p>{"".join(chips)}</p>']
        if merged.get("partial"):
            parts.append(
                f'<p class="muted">{len(merged["partial"])} of {merged["explorations"]} '
                "explorations stopped as soon as their properties were decided (or at a bound): "
                "their coverage is partial. A line counts as reached when any exploration "
                "reached it.</p>"
            )
        if routines:
            parts.append('<h3>Routines</h3><p class="chips" id="cov-routines">' + "".join(
                f'<span class="chip {"hit" if v else "miss"}">{esc(k)}</span>'
                for k, v in routines.items()) + "</p>")
        if vectors:
            parts.append('<h3>Vectors</h3><p class="chips" id="cov-vectors">' + "".join(
                f'<span class="chip {"hit" if v else "miss"}">{esc(k)}</span>'
                for k, v in vectors.items()) + "</p>")
        if merged.get("events"):
            parts.append('<h3>Events</h3><p class="chips">' + "".join(
                f'<span class="chip hit">{esc(e)}</span>' for e in merged["events"]) + "</p>")
        parts.append("<h3>Source files</h3>")
        for number, (path, lines) in enumerate(files.items()):
            reached = set(lines["reached"])
            unreached = set(lines["unreached"])
            text = self.source(path)
            head = (f"{esc(path)} — {len(reached)}/{len(reached) + len(unreached)} lines "
                    f"reached")
            if unreached:
                links = ", ".join(
                    f'<a href="#cov-{number}-L{part.split("-")[0]}">{part}</a>'
                    for part in line_ranges(sorted(unreached)).split(", ")
                )
                head += (f', <span class="miss-text">{len(unreached)} unreached: '
                         f"{links}</span>")
            body: list[str] = []
            if text is None:
                body.append(f'<p class="muted">cannot read {esc(path)}</p>')
            else:
                listing = []
                for n, line in enumerate(text, start=1):
                    cls = "hit" if n in reached else "miss" if n in unreached else "plain"
                    listing.append(
                        f'<span class="ln {cls}" id="cov-{number}-L{n}"><span class="no">{n}'
                        f'</span>{esc(line) or " "}</span>'
                    )
                body.append(f'<pre class="listing" data-file="{esc(path)}">'
                            + "".join(listing) + "</pre>")
            parts.append(
                f'<details class="cov-file"{" open" if unreached else ""}>'
                f"<summary>{head}</summary>{''.join(body)}</details>"
            )
        rows = []
        for number, exp in enumerate(self.run.explorations):
            cov = exp.coverage
            if cov is None:
                continue
            variant = f" [{exp.group.variant_text}]" if exp.group.variant else ""
            names = ", ".join(p.name for p in exp.group.properties)
            unreached_count = cov.get("unreached_lines", "?")
            rows.append(
                f"<tr><td>#{number}</td><td>{esc(exp.group.design)}{esc(variant)}</td>"
                f"<td>{esc(_fmt_env(exp.group.environment))}</td>"
                f'<td class="num">{exp.stats.states:,}</td>'
                f"<td>{'complete' if exp.complete else esc(exp.stop_reason or '')}</td>"
                f'<td class="num">{esc(unreached_count)}</td><td>{esc(names)}</td></tr>'
            )
        if rows:
            parts.append(
                '<details class="cov-explorations"><summary>Per exploration</summary>'
                '<table class="summary"><thead><tr><th></th><th>design</th><th>environment'
                '</th><th class="num">states</th><th>end</th><th class="num">unreached lines'
                "</th><th>properties</th></tr></thead><tbody>" + "".join(rows)
                + "</tbody></table></details>"
            )
        parts.append("</section>")
        return "".join(parts)

    # -- whole page ---------------------------------------------------------------------
    def render(self) -> str:
        with_traces = [(i, r) for i, r in enumerate(self.run.results) if r.graph is not None]
        traces_html = "".join(self.trace(r) for _, r in with_traces)
        coverage_html = self.coverage()
        summary_html = self.summary()
        code = self.exit_code
        generated = datetime.datetime.now().replace(microsecond=0).isoformat(sep=" ")
        nav = ['<a href="#summary">Properties</a>']
        if with_traces:
            nav.append('<span class="nav-sep">Traces:</span>' + " ".join(
                f'<a href="#{self.anchor(r)}" class="nav-{_mark(r)[1]}">{esc(r.prop.name)}</a>'
                for _, r in with_traces))
        nav.append('<a href="#coverage">Coverage</a>')
        status = "ok" if code == 0 else "fail"
        command = f" · <code>{esc(self.command)}</code>" if self.command else ""
        return (
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
            "style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">"
            "<title>irq-checker report</title><style>" + _asset("report.css")
            + "</style></head><body>"
            f'<header class="top"><h1>irq-checker report</h1>'
            f'<p class="run-summary status-{status}">{esc(summary_line(self.run))} · exit code '
            f"{code}</p><p class=\"muted\">generated {esc(generated)}{command}</p>"
            f'<nav>{" ".join(nav)}</nav></header><main>'
            + summary_html + traces_html + coverage_html +
            '</main><script type="application/json" id="report-data">'
            + _json_script(self.data) + "</script><script>" + _asset("report.js")
            + "</script></body></html>\n"
        )


def render_html(
    run: RunResult,
    traces: Mapping[tuple[str, str], TraceFiles],
    report_dir: Path,
    use_dot: bool = True,
    command: str | None = None,
    exit_code: int | None = None,
) -> str:
    return _Page(run, traces, report_dir, use_dot, command, exit_code).render()


def html_output(out: OutputContext) -> str:
    return render_html(
        out.run, out.traces, out.report_dir, command=out.command, exit_code=out.exit_code
    )

