"""A run owns its report directory (issue 15, "Outputs that can be trusted"): paths that
do not collide, a manifest of what the run wrote, stale files of earlier runs removed,
`index.html` rewritten or removed on every run; SARIF results and GitHub annotations at
the design line of the step that violated; JUnit times per property."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import pytest
from gate_helpers import run_json as run
from review_toys import SOURCE, ReviewProvider

from checker.reportdir import MANIFEST

PROPS = """\
design = "{design}"
description = "two processes"

[[property]]
name = "exclusion"
kind = "always"
expr = "in_critical <= 1"
expect = "{expect}"
variant = {{ lock = "no" }}

[[property]]
name = "locked"
kind = "always"
expr = "in_critical <= 1"
expect = "holds"
"""


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.S").write_text(SOURCE)
    return tmp_path


def write(path: Path, design: str = "mutex", expect: str = "violated") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(PROPS.format(design=design, expect=expect)))
    return path


def manifest(work: Path) -> list[str]:
    data = json.loads((work / "reports" / MANIFEST).read_text())
    assert data["tool"] == "irq-checker"
    files: list[str] = data["files"]
    return files


# -- paths ------------------------------------------------------------------------------------


def test_same_file_name_in_two_folders_does_not_collide(work: Path, capsys: Any) -> None:
    write(work / "a" / "kexec_crash.toml")
    write(work / "b" / "kexec_crash.toml")
    code, data, err = run(capsys, "a", "b")
    assert code == 0, err
    a, b = (r["traces"] for r in data["results"] if r["traces"])
    assert a["json"] == "reports/a/kexec_crash.toml/exclusion.json"
    assert b["json"] == "reports/b/kexec_crash.toml/exclusion.json"
    for traces, file in ((a, "a/kexec_crash.toml"), (b, "b/kexec_crash.toml")):
        record = json.loads(Path(traces["json"]).read_text())["replay"]
        assert record["file"] == file


# -- ownership --------------------------------------------------------------------------------


def test_a_manifest_lists_what_the_run_wrote(work: Path, capsys: Any) -> None:
    write(work / "p" / "m.toml")
    _, data, _ = run(capsys, "p", "--html", "--junit", "reports/junit.xml")
    traces = sorted(p.removeprefix("reports/") for r in data["results"] if r["traces"]
                    for p in r["traces"].values())
    assert sorted(manifest(work)) == sorted([*traces, "index.html", "junit.xml"])
    for entry in manifest(work):
        assert (work / "reports" / entry).is_file()


def test_stale_files_of_earlier_runs_are_removed(work: Path, capsys: Any) -> None:
    write(work / "p" / "old.toml")
    run(capsys, "p", "--html", "--junit", "reports/junit.xml")
    reports = work / "reports"
    (reports / "notes.txt").write_text("mine")  # not the checker's: kept
    (reports / "p" / "old.toml" / "mine.txt").write_text("mine")
    assert (reports / "p" / "old.toml" / "exclusion.graphml").is_file()
    (work / "p" / "old.toml").unlink()
    write(work / "p" / "new.toml")
    code, _, err = run(capsys, "p")
    assert code == 0, err
    assert not (reports / "p" / "old.toml" / "exclusion.graphml").exists()
    assert (reports / "p" / "old.toml" / "mine.txt").read_text() == "mine"
    assert not (reports / "junit.xml").exists()
    # an old index.html with an old FAIL does not survive a run without --html
    assert not (reports / "index.html").exists()
    assert (reports / "notes.txt").read_text() == "mine"
    assert all(entry.startswith("p/new.toml/") for entry in manifest(work))
    # folders the checker emptied go too
    (reports / "p" / "old.toml" / "mine.txt").unlink()
    write(work / "p" / "new.toml", expect="violated")
    (work / "p" / "new.toml").rename(work / "p" / "newer.toml")
    run(capsys, "p")
    assert not (reports / "p" / "new.toml").exists()
    assert (reports / "p" / "newer.toml" / "exclusion.json").is_file()


def test_a_trace_goes_once_its_property_has_none(work: Path, capsys: Any) -> None:
    path = write(work / "m.toml")
    run(capsys, "m.toml")
    trace = work / "reports" / "m.toml" / "exclusion.graphml"
    assert trace.is_file()
    path.write_text(path.read_text().replace('lock = "no"', 'lock = "yes"')
                    .replace('expect = "violated"', 'expect = "holds"', 1))
    code, _, err = run(capsys, "m.toml")
    assert code == 0, err
    assert not trace.exists() and manifest(work) == []


def test_index_html_is_rewritten_on_every_html_run(work: Path, capsys: Any) -> None:
    write(work / "m.toml", expect="holds")  # wrong expectation: a FAIL
    code, _, _ = run(capsys, "m.toml", "--html")
    assert code == 1
    index = work / "reports" / "index.html"
    assert ">FAIL<" in index.read_text()
    write(work / "m.toml")
    code, _, _ = run(capsys, "m.toml", "--html")
    assert code == 0 and ">FAIL<" not in index.read_text()


def test_an_index_html_from_before_manifests_is_removed(work: Path, capsys: Any) -> None:
    write(work / "m.toml", expect="holds")
    run(capsys, "m.toml", "--html")
    reports = work / "reports"
    (reports / MANIFEST).unlink()  # as a version without manifests left it
    (reports / "README.md").write_text("# reports/\n")
    write(work / "m.toml")
    run(capsys, "m.toml")
    assert not (reports / "index.html").exists()
    assert (reports / "README.md").is_file()


def test_a_crafted_manifest_cannot_delete_outside(work: Path, capsys: Any) -> None:
    (work / "victim.txt").write_text("precious")
    (work / "reports").mkdir()
    entries = ["../victim.txt", str(work / "victim.txt"), "a/../../victim.txt", "", "."]
    (work / "reports" / MANIFEST).write_text(json.dumps({"tool": "irq-checker",
                                                         "files": entries}))
    write(work / "m.toml")
    code, _, err = run(capsys, "m.toml")
    assert code == 0, err
    assert (work / "victim.txt").read_text() == "precious"


def test_a_broken_manifest_is_ignored(work: Path, capsys: Any) -> None:
    (work / "reports").mkdir()
    (work / "reports" / MANIFEST).write_text("{not json")
    write(work / "m.toml")
    code, _, err = run(capsys, "m.toml")
    assert code == 0, err
    assert manifest(work)


# -- where SARIF and annotations point ----------------------------------------------------


def test_sarif_points_at_the_design_line_of_the_violating_step(
    work: Path, capsys: Any
) -> None:
    write(work / "props" / "m.toml", design="rmutex", expect="holds")
    code, _, _ = run(capsys, "props", "--sarif", "out.sarif", provider=ReviewProvider("m.S"))
    assert code == 1
    (result,) = json.loads((work / "out.sarif").read_text())["runs"][0]["results"]
    location = result["locations"][0]["physicalLocation"]
    # the second `enter` (mutex.S line 3) put both processes in the critical section
    assert location["artifactLocation"]["uri"] == "m.S"
    assert location["region"] == {"startLine": 3}
    assert "step 2" in result["locations"][0]["message"]["text"]
    related = result["relatedLocations"]
    assert related[0]["physicalLocation"]["artifactLocation"]["uri"] == "props/m.toml"
    assert related[0]["physicalLocation"]["region"] == {"startLine": 4}
    assert related[0]["message"]["text"] == "property 'exclusion'"


def test_github_annotation_at_the_design_line(
    work: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    write(work / "props" / "m.toml", design="rmutex", expect="holds")
    _, _, err = run(capsys, "props", provider=ReviewProvider("m.S"))
    (line,) = [x for x in err.splitlines() if x.startswith("::error")]
    assert line.startswith("::error file=m.S,line=3,title=irq-checker%3A exclusion::")
    assert "props/m.toml:4" in line


def test_without_a_design_line_the_property_line(work: Path, capsys: Any) -> None:
    # the toy counters' steps have no file:line
    (work / "props").mkdir()
    (work / "props" / "c.toml").write_text(
        'design = "counters"\n\n[[property]]\nname = "small"\nkind = "never"\n'
        'expr = "total == 2"\nexpect = "holds"\n')
    code, _, _ = run(capsys, "props", "--sarif", "out.sarif")
    assert code == 1
    (result,) = json.loads((work / "out.sarif").read_text())["runs"][0]["results"]
    location = result["locations"][0]["physicalLocation"]
    assert location["artifactLocation"]["uri"] == "props/c.toml"
    assert location["region"] == {"startLine": 3}
    assert "relatedLocations" not in result


# -- JUnit times --------------------------------------------------------------------------


COUNTERS = """\
design = "counters"
environment = {{ k = 4, n = {n} }}

[[property]]
name = "bounded"
kind = "always"
expr = "total <= 100"
expect = "holds"

[[property]]
name = "{name}"
kind = "reachable"
expr = "total == 4 * {n}"
expect = "holds"
"""


def test_junit_times_are_not_double_counted(work: Path, capsys: Any) -> None:
    # Two files whose four properties share one exploration of 28,561 states: the
    # testcases' times add up to the exploration's, as do the suites'. (The exploration
    # must outlast the tolerances below several times over for a double count to show.)
    (work / "a.toml").write_text(COUNTERS.format(n=12, name="full"))
    (work / "b.toml").write_text(COUNTERS.format(n=12, name="full-again"))
    _, data, _ = run(capsys, "a.toml", "b.toml", "--junit", "junit.xml", "--workers", "1")
    (exploration,) = data["explorations"]
    explored = exploration["seconds"]
    assert len(data["results"]) == 4 and explored > 0.03
    root = ET.parse(work / "junit.xml").getroot()
    cases = [float(c.get("time", "x")) for c in root.iter("testcase")]
    suites = [float(s.get("time", "x")) for s in root.iter("testsuite")]
    assert sum(cases) == pytest.approx(explored, abs=0.002 * len(cases))
    assert sum(suites) == pytest.approx(explored, abs=0.002 * len(suites))
    assert float(root.get("time", "x")) == pytest.approx(explored, abs=0.002)
