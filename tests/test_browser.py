"""The HTML report in a real browser: headless Chromium driven over the DevTools protocol.

Generates a report from real property files (the xen_ist design), opens it, checks that
the summary table and the counterexample timelines render with the expected rows and
steps, steps through a trace with the keyboard (and the mouse, on the trace graph), that
the page loads nothing from the network and throws no error, and saves screenshots under
the report directory: reports/browser-test/ in the repository (git ignores reports/), so
a reviewer can look at them after a test run.

Skipped, with the reason, only when no Chromium can be found at all (.ci/run installs
Debian's `chromium`).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser import Browser, find_chromium

from checker import cli

ROOT = Path(__file__).resolve().parent.parent
REPORT = ROOT / "reports" / "browser-test"
CHROMIUM = find_chromium()

pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no Chromium found (looked for chromium, chromium-browser, google-chrome on PATH "
    "and /usr/bin/chromium); install it with `apt-get install -y chromium`",
)

PROPERTIES = """\
design = "xen_ist"
description = "Xen's IST stacks for NMI and #MC"

[variant]
ist = "xen"
context = "both"

[[property]]
name = "real-nmi-nesting-is-latched"
description = "Only real NMIs: the latch holds the second until the first IRET."
environment = { nmi = 3 }
kind = "never"
expr = "frame_clobbered"
expect = "holds"

[[property]]
name = "fake-nmi-then-real-nmi-clobbers"
description = "A fake NMI (vector 2 from a PIC) then a real one on the same IST stack."
environment = { nmi = 1, external = 1, external_vectors = [2], pic = true }
kind = "never"
expr = "frame_clobbered"
expect = "violated"

[[property]]
name = "iret-inside-nmi-unblocks-nesting"
description = \"\"\"do_nmi takes a #PF; that handler's IRET unblocks NMIs while the NMI frame is
still live, and the next NMI lands on the top of the NMI IST stack.\"\"\"
environment = { nmi = 2, faults = 1 }
kind = "never"
expr = "frame_clobbered"
expect = "violated"

[[property]]
name = "shared-nmi-mce-stack-clobbers"
variant = { ist = "shared" }
environment = { nmi = 1, mce = 1 }
kind = "never"
expr = "frame_clobbered"
expect = "violated"
"""

# the anchors name the property file as run from the repository
ANCHOR = "trace-reports-browser-test-properties-ist_reentrancy--"
IRET = ANCHOR + "iret-inside-nmi-unblocks-nesting"


@pytest.fixture(scope="module")
def report() -> Path:
    """The report, generated in the repository's reports/browser-test/."""
    from model import provider

    if REPORT.exists():
        shutil.rmtree(REPORT)
    REPORT.mkdir(parents=True)
    props = REPORT / "properties"
    props.mkdir()
    (props / "ist_reentrancy.toml").write_text(PROPERTIES)
    here = os.getcwd()
    os.chdir(ROOT)  # paths in the report as a user running the gate would see them
    try:
        code = cli.main(["reports/browser-test/properties", "--html", "--report-dir",
                         "reports/browser-test", "-q"], provider())
    finally:
        os.chdir(here)
    assert code == 0
    return REPORT / "index.html"


@pytest.fixture(scope="module")
def browser(report: Path) -> Iterator[Browser]:
    assert CHROMIUM is not None
    with Browser(CHROMIUM, width=1600, height=1000) as b:
        b.call("Network.enable")
        b.open(report.as_uri())
        yield b


def selected(b: Browser, section: str) -> dict[str, Any]:
    result: dict[str, Any] = b.js(f"""(function () {{
        var s = document.getElementById({json.dumps(section)});
        var rows = s.querySelectorAll('.step.selected');
        return {{dataset: Number(s.dataset.selected),
                rows: Array.prototype.map.call(rows,
                                               function (r) {{ return Number(r.dataset.step); }}),
                aria: s.querySelector('.step[aria-selected="true"]').dataset.step,
                pos: s.querySelector('.keys .pos').textContent,
                title: s.querySelector('.detail .step-title').textContent,
                damage: (s.querySelector('.detail .damage-box') || {{}}).textContent || null,
                active: irqReport.active()}};
    }})()""")
    return result


def test_summary_table(browser: Browser) -> None:
    rows = browser.js("""Array.prototype.map.call(
        document.querySelectorAll('#summary-table tbody tr'),
        function (r) { return [r.dataset.property, r.querySelector('.mark').textContent,
                               r.cells[4].textContent, r.cells[5].textContent]; })""")
    assert rows == [
        ["real-nmi-nesting-is-latched", "ok", "holds", "holds"],
        ["fake-nmi-then-real-nmi-clobbers", "ok", "violated", "violated"],
        ["iret-inside-nmi-unblocks-nesting", "ok", "violated", "violated"],
        ["shared-nmi-mce-stack-clobbers", "ok", "violated", "violated"],
    ]
    assert browser.js("document.querySelector('.run-summary').textContent").startswith(
        "4 properties: 4 as expected")
    # the table is laid out, not hidden
    assert browser.js("document.getElementById('summary-table').getBoundingClientRect().height"
                      ) > 100


def test_timelines_render_with_their_steps(browser: Browser) -> None:
    traces = browser.js("""Array.prototype.map.call(document.querySelectorAll('section.trace'),
        function (s) { return [s.id, s.querySelectorAll('.timeline .step').length,
            Array.prototype.map.call(s.querySelectorAll('.lane-head'),
                                     function (h) { return h.textContent; })]; })""")
    assert traces == [
        [ANCHOR + "fake-nmi-then-real-nmi-clobbers", 3, ["cpu0"]],
        [IRET, 35, ["cpu0"]],
        [ANCHOR + "shared-nmi-mce-stack-clobbers", 3, ["cpu0"]],
    ]
    # the steps carry their instruction or event and design file:line
    labels = browser.js(f"""Array.prototype.map.call(
        document.querySelectorAll('#{IRET} .timeline .step'),
        function (r) {{ return r.querySelector('.cell').textContent; }})""")
    assert labels[1].startswith("NMI arrives at xen_ist.design:")
    assert labels[2] == "pushq $0 xen_ist.design:98"
    assert "clobbers NMI frame" in labels[34]
    # the last step is selected, its damage highlighted in the timeline and the detail
    state = selected(browser, IRET)
    assert state["dataset"] == 34 and state["rows"] == [34] and state["aria"] == "34"
    assert "clobbers NMI frame" in (state["damage"] or "")
    clobbered = browser.js(f"""Array.prototype.map.call(
        document.querySelectorAll('#{IRET} .detail .frame.clobbered'),
        function (f) {{ return f.textContent; }})""")
    assert len(clobbered) == 1 and "CLOBBERED" in clobbered[0]
    assert browser.js(f"document.querySelectorAll('#{IRET} .detail table.cpus').length") == 1
    assert browser.js(
        f"getComputedStyle(document.querySelector('#{IRET} .step.damage .cell')).backgroundColor"
    ) == "rgb(255, 235, 233)"


def test_keyboard_steps_through_the_trace(browser: Browser) -> None:
    browser.js(f"document.getElementById('{IRET}').scrollIntoView()")
    browser.click(f"#{IRET} .trace-head h2")
    assert selected(browser, IRET)["active"] == IRET
    seen = []
    for key, expected in (("Home", 0), ("ArrowRight", 1), ("j", 2), ("ArrowRight", 3),
                          ("k", 2), ("ArrowLeft", 1), ("ArrowLeft", 0), ("ArrowLeft", 0),
                          ("End", 34), ("ArrowRight", 34), ("ArrowLeft", 33)):
        browser.key(key)
        state = selected(browser, IRET)
        assert (key, state["dataset"], state["rows"], state["pos"]) == (
            key, expected, [expected], str(expected))
        seen.append(state["title"])
    assert "initial state" in seen[0]
    assert "NMI arrives" in seen[1]
    assert "pushq $0" in seen[2]
    assert selected(browser, IRET)["damage"] is None  # step 33 broke nothing
    # the other traces did not move
    assert selected(browser, ANCHOR + "fake-nmi-then-real-nmi-clobbers")[
        "dataset"] == 2


def test_clicks_on_steps_and_graph_nodes(browser: Browser) -> None:
    browser.js(f"document.querySelector('#{IRET} .timeline .step[data-step=\"16\"]')"
               ".scrollIntoView({block: 'center'})")
    browser.click(f"#{IRET} .timeline .step[data-step=\"16\"]")
    state = selected(browser, IRET)
    assert state["dataset"] == 16 and "raises #PF" in state["title"]
    browser.js(f"document.querySelector('#{IRET} details.graph').open = true")
    nodes = browser.js(f"document.querySelectorAll('#{IRET} .graph-box g.node').length")
    assert nodes == 35
    browser.js(f"""(function () {{
        var g = Array.prototype.find.call(document.querySelectorAll('#{IRET} .graph-box g.node'),
            function (n) {{ return n.querySelector('title').textContent.trim() === 's5'; }});
        g.scrollIntoView({{block: 'center'}});
        g.setAttribute('id', 'node-s5');
    }})()""")
    browser.click("#node-s5")
    assert selected(browser, IRET)["dataset"] == 5
    assert browser.js(f"document.querySelector('#{IRET} .graph-box g.node.selected title')"
                      ".textContent.trim()") == "s5"
    browser.js(f"document.querySelector('#{IRET} details.graph').open = false")


def test_coverage_listing(browser: Browser) -> None:
    counts = browser.js("""(function () {
        var l = document.querySelector('#coverage pre.listing');
        return [l.querySelectorAll('.ln.hit').length, l.querySelectorAll('.ln.miss').length];
    })()""")
    assert counts[0] > 20 and counts[1] > 0


def test_offline_and_no_errors(browser: Browser) -> None:
    assert browser.errors() == []
    for url in browser.requests():
        assert url.startswith(("file:", "data:", "about:")), url


def test_screenshots(browser: Browser, report: Path) -> None:
    browser.resize(1600, 1000)
    browser.js("window.scrollTo(0, 0)")
    summary = report.parent / "summary.png"
    browser.screenshot(summary)
    browser.resize(1600, 1250)
    browser.call("Input.dispatchMouseEvent", type="mouseMoved", x=1, y=1)  # no hover
    browser.js(f"irqReport.select('{IRET}', 34); "
               f"document.getElementById('{IRET}').scrollIntoView()")
    trace = report.parent / "screenshot.png"
    browser.screenshot(trace)
    for path in (summary, trace):
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
