"""The HTML review report (`--html`), checked as text; tests/test_browser.py runs it in a
real browser."""

from __future__ import annotations

import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import networkx as nx
import pytest
from review_toys import SOURCE, ReviewProvider
from toy_models import ToyProvider

from checker import cli
from checker.html import graph_dot_source, svg_builtin, svg_with_dot, trace_svg

MUTEX = """\
design = "{design}"

[[property]]
name = "exclusion"
description = "At most one process in the critical section."
kind = "always"
expr = "in_critical <= 1"
expect = "violated"
variant = {{ lock = "no" }}

[[property]]
name = "locked-exclusion"
kind = "always"
expr = "in_critical <= 1"
expect = "holds"

[[property]]
name = "finish"
kind = "reachable"
expr = "done"
expect = "holds"
"""


class Collect(HTMLParser):
    """Tags with their attributes, and the text inside elements of interest."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def report(tmp_path: Path, capsys: Any, design: str = "rmutex", provider: Any = None,
           *extra: str) -> str:
    (tmp_path / "m.S").write_text(SOURCE)
    (tmp_path / "props").mkdir(exist_ok=True)
    (tmp_path / "props" / "mutex.toml").write_text(MUTEX.format(design=design))
    code = cli.main(["props", "--html", "--report-dir", "reports", *extra],
                    provider if provider is not None else ReviewProvider("m.S"))
    out, _ = capsys.readouterr()
    assert code == 0, out
    assert "report: reports/index.html" in out
    return (tmp_path / "reports" / "index.html").read_text()


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def data_of(page: str) -> dict[str, Any]:
    match = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page,
                      re.S)
    assert match is not None
    loaded: dict[str, Any] = json.loads(match.group(1))
    return loaded


def test_self_contained_and_offline(tmp_path: Path, capsys: Any) -> None:
    page = report(tmp_path, capsys)
    parser = Collect()
    parser.feed(page)
    for tag, attrs in parser.tags:
        assert tag not in ("link", "iframe", "img", "object", "embed"), tag
        if tag == "script":
            assert "src" not in attrs
        for name in ("src", "href", "action", "data"):
            value = attrs.get(name) or ""
            assert not re.match(r"(https?:)?//", value), (tag, name, value)
    assert "@import" not in page and "url(http" not in page
    # a CSP that forbids every fetch
    assert "default-src 'none'" in page
    assert page.count("<script>") == 1 and page.count("<style>") == 1


def test_summary_table_and_trace_links(tmp_path: Path, capsys: Any) -> None:
    page = report(tmp_path, capsys)
    rows = re.findall(r'<tr class="row-(\w+)" data-property="([^"]+)">', page)
    assert rows == [("ok", "exclusion"), ("ok", "locked-exclusion"), ("ok", "finish")]
    assert '<a href="#trace-props-mutex--exclusion">exclusion</a>' in page
    for suffix in ("json", "itf.json", "graphml", "dot"):
        assert f'href="./props/mutex.toml/exclusion.{suffix}"' in page
        assert (tmp_path / "reports" / "props" / "mutex.toml" / f"exclusion.{suffix}").is_file()
    assert "3 properties: 3 as expected" in page


def test_timeline_lanes_steps_damage_and_locations(tmp_path: Path, capsys: Any) -> None:
    page = report(tmp_path, capsys)
    section = page[page.index('id="trace-props-mutex--exclusion"'):]
    section = section[: section.index("</section>")]
    assert re.findall(r'<div class="lane-head">([^<]+)</div>', section) == ["cpu0", "cpu1"]
    steps = re.findall(r'<div class="(step[^"]*)" data-step="(\d+)"', section)
    assert steps == [("step init", "0"), ("step", "1"), ("step damage", "2")]
    assert 'data-steps="2"' in section
    # cpu1's step is in the second lane: one empty lane before it
    step2 = section[section.index('data-step="2"'):]
    assert step2.index('<div class="lane-empty"></div>') < step2.index('class="cell damage"')
    assert '<span class="label">enter</span> <span class="loc">m.S:3</span>' in section
    assert '<div class="damage-note">both processes in the critical section</div>' in section
    assert "At most one process in the critical section." in section
    assert "python -m checker replay reports/props/mutex.toml/exclusion.json" in section


def test_step_data_and_sources_are_embedded(tmp_path: Path, capsys: Any) -> None:
    page = report(tmp_path, capsys)
    data = data_of(page)
    trace = data["traces"]["trace-props-mutex--exclusion"]
    assert trace["lanes"] == ["cpu0", "cpu1"] and trace["what"] == "counterexample"
    assert len(trace["steps"]) == 3
    last = trace["steps"][2]
    assert last["edge"]["damage"] == "both processes in the critical section"
    assert last["inspect"]["stacks"][0]["frames"][0]["clobbered"] is True
    assert last["at"] == {"file": "m.S", "line": 3}
    assert data["sources"]["m.S"] == SOURCE.splitlines()
    assert trace["witness"] is None
    assert data["traces"]["trace-props-mutex--finish"]["what"] == "witness"


def test_witness_section(tmp_path: Path, capsys: Any) -> None:
    page = report(tmp_path, capsys, "rmutex", ReviewProvider("m.S", witness=True))
    assert page.count("<h3>Witness values</h3>") == 2
    assert "<tr><th>rdi</th><td><code>0xdead0000</code></td></tr>" in page
    assert data_of(page)["traces"]["trace-props-mutex--exclusion"]["witness"] == {
        "rdi": "0xdead0000", "guest_rsp": "0x7fff0000"}


def test_models_without_the_optional_methods(tmp_path: Path, capsys: Any) -> None:
    page = report(tmp_path, capsys, "mutex", ToyProvider())
    data = data_of(page)
    steps = data["traces"]["trace-props-mutex--exclusion"]["steps"]
    assert all(s["inspect"] is None for s in steps)
    assert steps[2]["state"] == {"pc0": "crit", "pc1": "crit", "lock": 0, "left0": 2,
                                 "left1": 2}
    assert "No coverage (the model reports none)." in page


def test_coverage_listing_marks_unreached_lines(tmp_path: Path, capsys: Any) -> None:
    page = report(tmp_path, capsys)
    cov = page[page.index('<section id="coverage">'):]
    assert "5/5 source lines reached" not in cov
    assert "2/5 source lines reached" in cov
    assert '<span class="chip miss">spare</span>' in cov
    assert '<span class="chip hit">enter</span>' in cov
    listing = re.findall(r'<span class="ln (\w+)" id="cov-0-L(\d+)">', cov)
    assert listing == [("plain", "1"), ("plain", "2"), ("hit", "3"), ("miss", "4"),
                       ("plain", "5"), ("hit", "6"), ("miss", "7"), ("plain", "8"),
                       ("miss", "9")]
    assert ('3 unreached: <a href="#cov-0-L4">4</a>, <a href="#cov-0-L7">7</a>, '
            '<a href="#cov-0-L9">9</a>') in cov
    assert "<details class=\"cov-file\" open>" in cov


def _graph() -> nx.DiGraph:
    graph = nx.DiGraph()
    for i in range(3):
        graph.add_node(f"s{i}", step=i)
    graph.add_edge("s0", "s1", label='cpu0: "quoted" <b>', file="a/x.design", line=3, step=1)
    graph.add_edge("s1", "s2", label="cpu0: NMI arrives", damage="clobbers it", step=2)
    return graph


def test_builtin_svg_layout_is_a_vertical_path() -> None:
    svg = svg_builtin(_graph())
    assert svg.startswith('<svg class="trace-graph" data-layout="builtin"')
    nodes = re.findall(r'<g class="node"><title>(s\d)</title><circle cx="(\d+)" cy="(\d+)"', svg)
    assert [n[0] for n in nodes] == ["s0", "s1", "s2"]
    assert len({n[1] for n in nodes}) == 1  # one column
    ys = [int(n[2]) for n in nodes]
    assert ys == sorted(ys) and len(set(ys)) == 3
    assert "&lt;b&gt;" in svg and "<b>" not in svg  # labels are escaped
    assert "x.design:3" in svg and 'stroke="#cf222e"' in svg  # the damage edge is red


def test_svg_without_graphviz(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    assert svg_with_dot(_graph()) is None
    assert 'data-layout="builtin"' in trace_svg(_graph())


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz dot is not installed")
def test_svg_with_graphviz() -> None:
    svg = trace_svg(_graph())
    assert svg.startswith('<svg class="trace-graph" data-layout="graphviz"')
    assert "<title>s0</title>" in svg and "<title>s2</title>" in svg
    assert "<?xml" not in svg and "<!DOCTYPE" not in svg


def test_broken_dot_falls_back(tmp_path: Path) -> None:
    fake = tmp_path / "dot"
    fake.write_text("#!/bin/sh\necho nonsense; exit 3\n")
    fake.chmod(0o755)
    assert svg_with_dot(_graph(), str(fake)) is None


def test_graph_dot_source_quotes_labels() -> None:
    text = graph_dot_source(_graph())
    assert 's0 -> s1 [label="cpu0: \\"quoted\\" <b>\\nx.design:3"' in text


def test_real_model_report(tmp_path: Path, capsys: Any) -> None:
    from model import provider

    (tmp_path / "ist.toml").write_text("""\
design = "xen_ist"
variant = { ist = "shared", context = "both" }

[[property]]
name = "shared-nmi-mce-stack-clobbers"
environment = { nmi = 1, mce = 1 }
kind = "never"
expr = "frame_clobbered"
expect = "violated"
""")
    code = cli.main(["ist.toml", "--html", "--report-dir", "reports", "-q"], provider())
    capsys.readouterr()
    assert code == 0
    page = (tmp_path / "reports" / "index.html").read_text()
    data = data_of(page)
    (trace,) = data["traces"].values()
    last = trace["steps"][-1]
    assert "clobbers" in last["edge"]["damage"]
    frames = [f for s in last["inspect"]["stacks"] for f in s["frames"]]
    assert any(f["clobbered"] for f in frames)
    (source,) = data["sources"]  # absolute here: the design is not below the working dir
    assert source.endswith("model/designs/xen_ist.design")
    assert 'id="coverage"' in page and "source lines reached" in page
