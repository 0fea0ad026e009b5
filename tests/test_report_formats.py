"""Report formats for CI: JUnit XML, SARIF 2.1.0 (schema-validated), ITF traces, GitHub
Actions annotations and step summary, and the trace files' replay record."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import jsonschema
import pytest
from gate_helpers import write
from review_toys import SOURCE, ReviewProvider
from toy_models import ToyProvider

from checker import cli
from checker.ci import classname, github_annotations
from checker.itf import decode, encode

DATA = Path(__file__).resolve().parent / "data"

MIXED = """\
design = "rmutex"
description = "Two processes and a lock"

[variant]
lock = "yes"

[[property]]
name = "mutual-exclusion"
kind = "always"
expr = "in_critical <= 1"
expect = "holds"

[[property]]
name = "no-lock-breaks-it"
description = "Without the lock both enter."
kind = "always"
expr = "in_critical <= 1"
expect = "holds"
variant = { lock = "no" }

[[property]]
name = "known-bad"
kind = "never"
expr = "in_critical == 2"
expect = "violated"
variant = { lock = "no" }

[[property]]
name = "both-finish"
kind = "reachable"
expr = "done"
expect = "holds"
"""

INCOMPLETE = """\
design = "counters"
environment = { k = 4, n = 9 }

[[property]]
name = "bounded"
kind = "always"
expr = "total <= 36"
expect = "holds"
"""


def run(tmp_path: Path, capsys: Any, *args: str, provider: Any = None) -> tuple[int, str, str]:
    code = cli.main([*args, "--report-dir", str(tmp_path / "reports")],
                    provider if provider is not None else ReviewProvider("m.S"))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def mixed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.S").write_text(SOURCE)
    return write(tmp_path, "props/mutex.toml", MIXED)


# -- JUnit ---------------------------------------------------------------------------------


def test_junit_one_testcase_per_property_with_the_trace_in_the_failure(
    tmp_path: Path, capsys: Any, mixed: Path
) -> None:
    write(tmp_path, "props/big.toml", INCOMPLETE)
    code, _, _ = run(tmp_path, capsys, "props", "--junit", "out/junit.xml",
                     "--max-states", "50")
    assert code == 1
    root = ET.parse(tmp_path / "out" / "junit.xml").getroot()
    assert root.tag == "testsuites"
    assert (root.get("tests"), root.get("failures"), root.get("errors"), root.get("skipped")) == (
        "5", "1", "0", "1")
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == ["props/big.toml", "props/mutex.toml"]
    big, mutex = suites
    assert (big.get("tests"), big.get("skipped"), big.get("failures")) == ("1", "1", "0")
    assert (mutex.get("tests"), mutex.get("failures")) == ("4", "1")
    for suite in suites:
        float(suite.get("time", "x"))
        assert suite.get("timestamp")
    cases = mutex.findall("testcase")
    assert [c.get("name") for c in cases] == [
        "mutual-exclusion", "no-lock-breaks-it", "known-bad", "both-finish"]
    assert {c.get("classname") for c in cases} == {"props.mutex"}
    failure = cases[1].find("failure")
    assert failure is not None
    assert failure.get("message") == (
        "property 'no-lock-breaks-it' is violated, expected holds: counterexample found at "
        "depth 2")
    text = failure.text or ""
    assert text.startswith("props/mutex.toml:13: ")
    assert "counterexample: 2 steps" in text
    assert "1. [cpu0] cpu0: enter  (" in text and "2. [cpu1] cpu1: enter" in text
    assert "both processes in the critical section" in text
    # an expected violation passes; its trace goes to system-out
    assert cases[2].find("failure") is None
    assert "counterexample: 2 steps" in (cases[2].findtext("system-out") or "")
    skipped = big.find("testcase/skipped")
    assert skipped is not None and "max_states=50" in (skipped.get("message") or "")


def test_junit_error_verdict(tmp_path: Path, capsys: Any) -> None:
    path = write(tmp_path, "bad.toml", """\
        design = "counters"

        [[property]]
        name = "oops"
        kind = "always"
        expr = "c[7] == 0"
        expect = "holds"
        """)
    code, _, _ = run(tmp_path, capsys, str(path), "--junit", str(tmp_path / "j.xml"),
                     provider=ToyProvider())
    assert code == 2
    root = ET.parse(tmp_path / "j.xml").getroot()
    assert root.get("errors") == "1"
    error = root.find("testsuite/testcase/error")
    assert error is not None and "no element 7" in (error.get("message") or "")


def test_classname_from_the_property_file() -> None:
    assert classname("properties/ist_reentrancy.toml") == "properties.ist_reentrancy"
    assert classname("x.toml") == "x"


# -- SARIF ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sarif_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((DATA / "sarif-schema-2.1.0.json").read_text())
    return schema


def test_sarif_validates_and_locates_the_trace(
    tmp_path: Path, capsys: Any, mixed: Path, sarif_schema: dict[str, Any]
) -> None:
    code, _, _ = run(tmp_path, capsys, "props", "--sarif", "out.sarif")
    assert code == 1
    log = json.loads((tmp_path / "out.sarif").read_text())
    jsonschema.validate(log, sarif_schema, cls=jsonschema.Draft4Validator)
    assert log["version"] == "2.1.0"
    (run_,) = log["runs"]
    rules = run_["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules] == [
        "props/mutex/mutual-exclusion", "props/mutex/no-lock-breaks-it", "props/mutex/known-bad",
        "props/mutex/both-finish"]
    assert rules[1]["fullDescription"]["text"] == "Without the lock both enter."
    (result,) = run_["results"]  # only the unexpected verdict
    assert result["ruleId"] == "props/mutex/no-lock-breaks-it" and result["ruleIndex"] == 1
    assert result["level"] == "error"
    # at the design line of the step that violated, the property's line related
    location = result["locations"][0]["physicalLocation"]
    assert location["artifactLocation"] == {"uri": "m.S", "uriBaseId": "SRCROOT"}
    assert location["region"] == {"startLine": 3}
    (related,) = result["relatedLocations"]
    assert related["physicalLocation"]["artifactLocation"] == {
        "uri": "props/mutex.toml", "uriBaseId": "SRCROOT"}
    assert related["physicalLocation"]["region"] == {"startLine": 13}
    flow = result["codeFlows"][0]["threadFlows"][0]["locations"]
    assert len(flow) == 2
    assert [f["location"]["physicalLocation"]["region"]["startLine"] for f in flow] == [3, 3]
    assert flow[0]["location"]["physicalLocation"]["artifactLocation"]["uri"] == "m.S"
    assert flow[1]["kinds"] == ["danger"] and flow[1]["importance"] == "essential"
    assert "both processes in the critical section" in flow[1]["location"]["message"]["text"]
    assert flow[1]["state"]["pc1"] == {"text": "crit"}
    assert flow[1]["state"]["lock"] == {"text": "0"}
    assert run_["originalUriBaseIds"]["SRCROOT"]["uri"].endswith("/")
    fingerprint = result["partialFingerprints"]
    # stable: the same run gives the same fingerprints
    run(tmp_path, capsys, "props", "--sarif", "again.sarif")
    again = json.loads((tmp_path / "again.sarif").read_text())
    assert again["runs"][0]["results"][0]["partialFingerprints"] == fingerprint


def test_sarif_with_the_real_model_points_at_design_lines(
    tmp_path: Path, capsys: Any, sarif_schema: dict[str, Any]
) -> None:
    from model import provider

    path = write(tmp_path, "ist.toml", """\
        design = "xen_ist"
        variant = { ist = "xen", context = "both" }

        [[property]]
        name = "fake-nmi"
        environment = { nmi = 1, external = 1, external_vectors = [2], pic = true }
        kind = "never"
        expr = "frame_clobbered"
        expect = "holds"
        """)
    code, _, _ = run(tmp_path, capsys, str(path), "--sarif", str(tmp_path / "x.sarif"),
                     provider=provider())
    assert code == 1
    log = json.loads((tmp_path / "x.sarif").read_text())
    jsonschema.validate(log, sarif_schema, cls=jsonschema.Draft4Validator)
    flow = log["runs"][0]["results"][0]["codeFlows"][0]["threadFlows"][0]["locations"]
    uris = {f["location"]["physicalLocation"]["artifactLocation"]["uri"] for f in flow}
    assert uris == {"model/designs/xen_ist.design"}
    # events arrive at the line the CPU was about to run
    assert all("region" in f["location"]["physicalLocation"] for f in flow)
    assert "clobbers" in flow[-1]["location"]["message"]["text"]


# -- ITF -----------------------------------------------------------------------------------


def test_itf_encoding() -> None:
    assert encode(3) == 3 and encode(-(2**53) + 1) == -(2**53) + 1
    assert encode(2**53) == {"#bigint": str(2**53)}
    assert encode(-(2**64)) == {"#bigint": str(-(2**64))}
    assert encode((1, "a")) == {"#tup": [1, "a"]}
    assert encode({3, 1}) == {"#set": [1, 3]}
    assert encode({1: "x"}) == {"#map": [[1, "x"]]}
    assert encode({"a": [True, None]}) == {"a": [True, {"tag": "None", "value": {}}]}
    assert encode({"#a": 1}) == {"#map": [["#a", 1]]}
    value = {"a": [1, 2**70, (3, "b")], "s": frozenset({1}), "n": None}
    assert decode(encode(value)) == {
        "a": [1, 2**70, (3, "b")], "s": frozenset({1}), "n": None}


def test_itf_trace_files(tmp_path: Path, capsys: Any, mixed: Path) -> None:
    code, out, _ = run(tmp_path, capsys, "props", provider=ReviewProvider(
        str(tmp_path / "m.S"), big=True))
    assert code == 1
    assert "written to" in out and "itf.json}" in out
    itf = json.loads((tmp_path / "reports/props/mutex.toml/no-lock-breaks-it.itf.json").read_text())
    assert itf["#meta"]["format"] == "ITF"
    assert itf["#meta"]["source"] == "props/mutex.toml"
    assert itf["#meta"]["replay"]["design"] == "rmutex"
    assert itf["vars"] == ["summary", "action", "cpus", "stacks", "variables", "incidents",
                           "budgets", "huge"]
    states = itf["states"]
    assert [s["#meta"]["index"] for s in states] == [0, 1, 2]
    assert states[0]["action"] == {"label": "initial state", "step": 0}
    assert states[2]["action"]["label"] == "cpu1: enter"
    assert states[2]["action"]["key"] == "enter:1:0"
    assert states[2]["summary"]["pc1"] == "crit"
    assert states[2]["huge"] == {"#bigint": str(2**60)}
    assert states[2]["stacks"][0]["frames"][0]["clobbered"] is True
    assert states[2]["incidents"] == ["both-critical"]
    for state in states:
        assert set(state) == {"#meta", *itf["vars"]}


def test_itf_without_inspect_state(tmp_path: Path, capsys: Any,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path, "m.toml", MIXED.replace('"rmutex"', '"mutex"'))
    run(tmp_path, capsys, str(path), provider=ToyProvider())
    itf = json.loads((tmp_path / "reports/m.toml/no-lock-breaks-it.itf.json").read_text())
    assert itf["vars"] == ["summary", "action"]
    assert itf["states"][1]["action"]["label"] == "enter"


def test_json_trace_file_has_the_replay_record(tmp_path: Path, capsys: Any, mixed: Path) -> None:
    run(tmp_path, capsys, "props")
    data = json.loads((tmp_path / "reports/props/mutex.toml/no-lock-breaks-it.json").read_text())
    record = data["replay"]
    assert record["format"] == 1
    assert (record["design"], record["variant"], record["environment"]) == (
        "rmutex", {"lock": "no"}, {})
    assert (record["kind"], record["expr"], record["verdict"]) == (
        "always", "in_critical <= 1", "violated")
    assert record["init"] == 0
    assert record["steps"] == [
        {"key": "enter:0:0", "label": "cpu0: enter", "cpu": 0, "choice": 0},
        {"key": "enter:1:0", "label": "cpu1: enter", "cpu": 1, "choice": 1},
    ]
    assert [e["key"] for e in data["edges"]] == ["enter:0:0", "enter:1:0"]


# -- GitHub Actions ------------------------------------------------------------------------


def test_github_annotations_and_step_summary(
    tmp_path: Path, capsys: Any, mixed: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    code, out, err = run(tmp_path, capsys, "props", "--format", "json")
    assert code == 1
    json.loads(out)  # stdout stays pure JSON; workflow commands go to stderr
    annotations = [line for line in err.splitlines() if line.startswith("::")]
    assert annotations == [
        "::error file=m.S,line=3,title=irq-checker%3A no-lock-breaks-it::"
        "property 'no-lock-breaks-it' is violated, expected holds: counterexample found at "
        "depth 2 (step 2 of the trace; property at props/mutex.toml:13)"
    ]
    text = summary.read_text()
    assert text.startswith("earlier step\n## irq-checker\n")
    assert "| :x: | `no-lock-breaks-it` | props/mutex.toml:13 | violated | holds |" in text
    assert "| :white_check_mark: | `known-bad` |" in text
    assert "<details><summary><b>no-lock-breaks-it</b>" in text
    assert "python -m checker replay " in text


def test_no_github_output_outside_actions(
    tmp_path: Path, capsys: Any, mixed: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    _, _, err = run(tmp_path, capsys, "props")
    assert "::error" not in err


def test_github_annotation_escaping(tmp_path: Path, capsys: Any, mixed: Path) -> None:
    from checker.run import check, plan, read_files

    files, _ = read_files([mixed])
    prepared, _ = plan(files, ReviewProvider(str(tmp_path / "m.S")))
    assert prepared is not None
    result = check(prepared.groups, prepared.properties)
    lines = github_annotations(result)
    assert len(lines) == 1 and "\n" not in lines[0]
    assert "title=irq-checker%3A no-lock-breaks-it" in lines[0]


# -- JSON output ---------------------------------------------------------------------------


def test_json_output_carries_coverage_and_itf_paths(
    tmp_path: Path, capsys: Any, mixed: Path
) -> None:
    _, out, _ = run(tmp_path, capsys, "props", "--format", "json")
    data = json.loads(out)
    result = data["results"][1]
    assert set(result["traces"]) == {"graphml", "json", "dot", "itf"}
    assert result["traces"]["itf"].endswith("no-lock-breaks-it.itf.json")
    coverage = data["coverage"]
    assert coverage["files"] == {"m.S": {"reached": [3, 6], "unreached": [4, 7, 9]}}
    assert coverage["routines"] == {"enter": True, "leave": True, "spare": False}
    assert coverage["unreached_lines"] == 3
    for exploration in data["explorations"]:
        assert exploration["coverage"]["files"]["m.S"]["unreached"]


def test_json_output_coverage_is_null_for_models_without_it(tmp_path: Path, capsys: Any) -> None:
    path = write(tmp_path, "m.toml", MIXED.replace('"rmutex"', '"mutex"'))
    _, out, _ = run(tmp_path, capsys, str(path), "--format", "json", provider=ToyProvider())
    data = json.loads(out)
    assert data["coverage"] is None
    assert all(e["coverage"] is None for e in data["explorations"])


# -- the example CI files ------------------------------------------------------------------


def test_example_ci_files() -> None:
    import yaml

    root = Path(__file__).resolve().parent.parent / "docs" / "ci"
    github = yaml.safe_load((root / "github-actions.yml").read_text())
    steps = github["jobs"]["gate"]["steps"]
    run_step = next(s for s in steps if "python -m checker" in s.get("run", ""))
    for flag in ("properties/", "--html", "--junit reports/junit.xml",
                 "--sarif reports/irq-checker.sarif"):
        assert flag in run_step["run"]
    uses = [s.get("uses", "") for s in steps]
    assert any(u.startswith("actions/upload-artifact@") for u in uses)
    assert any(u.startswith("github/codeql-action/upload-sarif@") for u in uses)
    assert all(s.get("if", "").startswith("always()") for s in steps
               if s.get("uses", "").startswith(("actions/upload", "github/codeql")))
    assert github["permissions"]["security-events"] == "write"
    gitlab = yaml.safe_load((root / "gitlab-ci.yml").read_text())
    job = gitlab["irq-checker"]
    assert "python -m checker properties/" in job["script"][0]
    assert job["artifacts"]["when"] == "always"
    assert job["artifacts"]["reports"]["junit"] == "reports/junit.xml"
    assert "reports/" in job["artifacts"]["paths"]
    # the flags the examples use exist
    parser = cli.build_parser()
    parser.parse_args(["properties/", "--html", "--junit", "j.xml", "--sarif", "s.sarif",
                       "--timeout", "3000"])
    assert "--timeout" in job["script"][0]


def test_itf_text_is_json_with_a_state_per_line() -> None:
    from checker.itf import itf_text

    document = {"#meta": {"format": "ITF"}, "vars": ["x"],
                "states": [{"#meta": {"index": i}, "x": i} for i in range(3)]}
    text = itf_text(document)
    assert json.loads(text) == document
    assert len(text.splitlines()) == 5
    empty = {"#meta": {}, "vars": [], "states": []}
    assert json.loads(itf_text(empty)) == empty


def test_github_annotates_input_errors(
    tmp_path: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    path = write(tmp_path, "bad.toml", """\
        design = "mutex"

        [[property]]
        name = "x"
        kind = "sometimes"
        expr = "lock"
        expect = "holds"
        """)
    code, _, err = run(tmp_path, capsys, str(path))
    assert code == 2
    (annotation,) = [line for line in err.splitlines() if line.startswith("::")]
    assert annotation.startswith(
        f"::error file={path},line=5,title=irq-checker%3A bad input::")
