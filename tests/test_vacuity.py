"""The built-in non-vacuity check (issue 15 must-have 5, issue 13 must-have 6): a property
that holds where no asynchronous event was delivered, or whose implication's antecedent
is never true, is warned about in every format, and `--strict-vacuity` makes it exit 1.
Also: the environment reference in docs/properties.md is the model's table, `-v` prints
the environment in force, and every example of docs/properties.md runs."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from checker import cli
from checker.expr import ExprError, compile_expr
from model.system.provider import ENVIRONMENT_KEYS, environment_markdown, environment_of

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "properties.md"

# x86_conformance: one CPU idling in a loop, an NMI handler that returns with IRET.
VACUITY = """\
design = "x86_conformance"

[[property]]
name = "no-events-at-all"
kind = "never"
expr = "any_shutdown"
expect = "holds"

[[property]]
name = "no-events-on-purpose"
kind = "never"
expr = "any_shutdown"
expect = "holds"
environment = { nmi = 0 }

[[property]]
name = "with-an-nmi"
kind = "never"
expr = "any_shutdown"
expect = "holds"
environment = { nmi = 1 }

[[property]]
name = "antecedent-never-true"
kind = "always"
expr = "nmi_frames >= 3 -> any_shutdown"
expect = "holds"
environment = { nmi = 1 }

[[property]]
name = "antecedent-true"
kind = "always"
expr = "nmi_frames >= 1 implies not any_shutdown"
expect = "holds"
environment = { nmi = 1 }

[[property]]
name = "deadlock-free-without-events"
kind = "deadlock_free"
expect = "holds"

[[property]]
name = "reachable-is-never-vacuous"
kind = "reachable"
expr = "not any_shutdown"
expect = "holds"
"""

VACUOUS = {"no-events-at-all", "antecedent-never-true", "deadlock-free-without-events"}


def _run(tmp_path: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    toml = tmp_path / "vacuity.toml"
    toml.write_text(VACUITY)
    code = cli.main([str(toml), "--report-dir", str(tmp_path / "reports"), *extra])
    return code, capsys.readouterr().out


def _json(tmp_path: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> dict[str, Any]:
    code, out = _run(tmp_path, capsys, "--format", "json", *extra)
    data: dict[str, Any] = json.loads(out)
    assert data["exit_code"] == code
    return data


# -- implication -----------------------------------------------------------------------------


@pytest.mark.parametrize(("source", "env", "value"), [
    ("a -> b", {"a": 0, "b": 0}, True),
    ("a -> b", {"a": 1, "b": 0}, False),
    ("a -> b", {"a": 1, "b": 7}, 7),
    ("a implies b", {"a": 1, "b": 0}, False),
    ("a -> b -> c", {"a": 1, "b": 1, "c": 0}, False),  # a -> (b -> c)
    ("a -> b -> c", {"a": 1, "b": 0, "c": 0}, True),
    ("f('->') -> b", {"f": lambda s: s == "->", "b": 0}, False),  # not inside a string
    ("a or b -> c", {"a": 0, "b": 1, "c": 0}, False),
])
def test_implication_means_not_a_or_b(source: str, env: dict[str, Any], value: Any) -> None:
    assert compile_expr(source).evaluate(env) == value


def test_implication_keeps_its_antecedent_and_columns() -> None:
    expr = compile_expr("nmi_frames >= 1 -> cpu[0].halted")
    assert expr.antecedent is not None
    assert expr.antecedent.source == "nmi_frames >= 1"
    assert expr.names == {"nmi_frames", "cpu"}
    assert [(r.name, r.col) for r in expr.refs] == [("nmi_frames", 1), ("cpu", 20)]
    assert compile_expr("a or b").antecedent is None
    assert compile_expr("any(x for x in y) and z").antecedent is None


@pytest.mark.parametrize(("source", "message", "col"), [
    ("-> b", "empty expression on the left of an implication", 1),
    ("a ->", "empty expression on the right of an implication", 1),
    ("a -> b.__class__", "attribute '__class__' is not allowed", 8),  # as in b.__class__
    ("a -> lambda: 1", "lambda is not allowed", 6),
])
def test_bad_implications_are_errors_with_columns(source: str, message: str, col: int) -> None:
    with pytest.raises(ExprError) as info:
        compile_expr(source)
    assert message in info.value.message
    assert info.value.col == col


# -- the warning in every format --------------------------------------------------------------


def test_text_warns_and_exit_code_is_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = _run(tmp_path, capsys)
    assert code == 0
    assert out.count("warning: vacuous:") == 3
    assert "no asynchronous event was delivered" in out
    assert "the antecedent `nmi_frames >= 3` is true in no reachable state" in out
    assert "3 vacuous (warning)" in out.splitlines()[-1]


def test_strict_vacuity_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _ = _run(tmp_path, capsys, "--strict-vacuity")
    assert code == 1
    toml = tmp_path / "fine.toml"
    toml.write_text(VACUITY.split("[[property]]")[0] + "[[property]]" + VACUITY.split(
        "[[property]]")[3])  # with-an-nmi only
    assert cli.main([str(toml), "--strict-vacuity", "--report-dir", str(tmp_path / "r")]) == 0


def test_json_lists_the_warnings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _json(tmp_path, capsys)
    vacuous = {r["name"] for r in data["results"] if r["vacuity"]}
    assert vacuous == VACUOUS
    assert data["summary"]["vacuous"] == 3
    assert all(r["verdict"] == "holds" for r in data["results"])  # a warning, not a verdict


@pytest.mark.parametrize("options", [
    ("--por",), ("--compact",), ("--workers", "2"), ("--symmetry", "off"),
    ("--por", "--compact", "--workers", "2"),
])
def test_every_option_gives_the_same_warnings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], options: tuple[str, ...]
) -> None:
    data = _json(tmp_path, capsys, *options)
    assert {r["name"] for r in data["results"] if r["vacuity"]} == VACUOUS


def test_junit_sarif_html_and_annotations(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    junit, sarif = tmp_path / "junit.xml", tmp_path / "out.sarif"
    toml = tmp_path / "vacuity.toml"
    toml.write_text(VACUITY)
    code = cli.main([str(toml), "--report-dir", str(tmp_path / "reports"), "--junit",
                     str(junit), "--sarif", str(sarif), "--html"])
    assert code == 0
    cases = {c.get("name"): c for c in ET.parse(junit).getroot().iter("testcase")}
    for name, case in cases.items():
        out = case.findtext("system-out") or ""
        assert ("warning: vacuous:" in out) == (name in VACUOUS), name
        assert case.find("failure") is None
    log = json.loads(sarif.read_text())
    results = log["runs"][0]["results"]
    assert {r["level"] for r in results} == {"warning"}
    assert {r["message"]["text"].split(":")[0] for r in results} == VACUOUS
    html = (tmp_path / "reports" / "index.html").read_text()
    assert html.count("vacuous:") >= 3
    err = capsys.readouterr().err
    assert err.count("::warning ") == 3


def test_no_warning_for_violated_or_unexpected(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    toml = tmp_path / "v.toml"
    toml.write_text('design = "x86_conformance"\n\n[[property]]\nname = "p"\nkind = "always"\n'
                    'expr = "any_shutdown"\nexpect = "violated"\n')
    code = cli.main([str(toml), "--format", "json", "--strict-vacuity",
                     "--report-dir", str(tmp_path / "r")])
    data = json.loads(capsys.readouterr().out)
    assert code == 0
    assert data["results"][0]["vacuity"] == []


# -- the environment ---------------------------------------------------------------------------


def test_docs_list_every_environment_key_from_the_model() -> None:
    table = environment_markdown()
    assert table in DOCS.read_text(), (
        "docs/properties.md's environment table is stale: paste "
        "model.system.provider.environment_markdown()"
    )
    for key in ENVIRONMENT_KEYS:
        assert f"| `{key}` |" in table


def test_environment_defaults_show_bugs() -> None:
    """Knobs that hide behaviour are off unless a property file asks for them."""
    env = environment_of({})
    assert env.quiet_without_idt is False
    assert env.pic is False
    assert env.events_off is False
    assert environment_of({"nmi": 0}).events_off is True
    assert environment_of({"nmi": [0, 1]}).events_off is False


def test_verbose_prints_the_environment_in_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, out = _run(tmp_path, capsys, "-v", "--property", "with-an-nmi")
    line = next(x for x in out.splitlines() if x.strip().startswith("environment:"))
    assert "nmi=1" in line and "mce=0" in line and "quiet_without_idt=false" in line
    assert "cpus=1" in line


# -- the docs' examples run ------------------------------------------------------------------


def _examples(kind: str) -> list[str]:
    return re.findall(rf"```{kind}\n(.*?)```", DOCS.read_text(), flags=re.S)


@pytest.mark.parametrize("index", range(len(_examples("toml"))))
def test_every_toml_example_in_the_docs_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], index: int
) -> None:
    toml = tmp_path / "example.toml"
    toml.write_text(_examples("toml")[index])
    code = cli.main([str(toml), "--format", "json", "--report-dir", str(tmp_path / "r")])
    data = json.loads(capsys.readouterr().out)
    assert not data.get("errors"), data.get("errors")
    assert code == 0, [(r["name"], r["verdict"], r["expected"]) for r in data["results"]]


def test_the_json_example_has_the_real_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    [example] = [e for e in _examples("json") if '"results"' in e]
    documented = json.loads(example)
    toml = tmp_path / "example.toml"
    toml.write_text(_examples("toml")[0])
    cli.main([str(toml), "--format", "json", "--report-dir", str(tmp_path / "r")])
    real = json.loads(capsys.readouterr().out)
    assert set(documented) <= set(real)
    assert set(documented["results"][0]) == set(real["results"][0])
    assert set(documented["explorations"][0]) == set(real["explorations"][0])
    assert set(documented["summary"]) == set(real["summary"])


# -- the shipped suite: every always/never property that should hold has a companion --------


def _marked(path: Path) -> list[tuple[str, dict[str, Any], str | None]]:
    """(name, property, the `# vacuity:` marker above its [[property]]) per property."""
    import tomllib

    text = path.read_text()
    props = tomllib.loads(text)["property"]
    lines = text.split("\n")
    markers: list[str | None] = []
    for i, line in enumerate(lines):
        if line.strip() == "[[property]]":
            above = lines[i - 1] if i else ""
            markers.append(above[len("# vacuity:"):].strip() if above.startswith(
                "# vacuity:") else None)
    return [(p["name"], p, m) for p, m in zip(props, markers, strict=True)]


@pytest.mark.parametrize("path", sorted((ROOT / "properties").glob("*.toml")),
                         ids=lambda p: p.name)
def test_every_invariant_that_holds_names_its_companion(path: Path) -> None:
    """issue 13 must-have 6: an always/never property expected to hold names, in a
    `# vacuity: companion NAME` comment above it, a `reachable` property of the same file
    expected to hold that shows the situation it guards occurs (the gate checks that
    companion's verdict like any other)."""
    entries = _marked(path)
    by_name = {name: prop for name, prop, _ in entries}
    for name, prop, marker in entries:
        if prop["kind"] not in ("always", "never") or prop["expect"] != "holds":
            assert marker is None, f"{name}: a marker on a property that needs none"
            continue
        assert marker is not None and marker.startswith("companion "), (
            f"{path.name}: {name} has no `# vacuity: companion NAME` above it"
        )
        companion = by_name.get(marker.split()[1])
        assert companion is not None, f"{name}: no property {marker.split()[1]}"
        assert companion["kind"] == "reachable" and companion["expect"] == "holds", name


def test_vacuity_annotation_names_the_file_as_failures_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A GitHub `::warning` for a vacuous property names its file relative to the working
    directory, as the `::error` lines of failures do (GitHub only places relative paths)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    (tmp_path / "vacuity.toml").write_text(VACUITY)
    cli.main([str(tmp_path / "vacuity.toml"), "--report-dir", str(tmp_path / "reports")])
    err = capsys.readouterr().err
    warnings = [x for x in err.splitlines() if x.startswith("::warning ")]
    assert len(warnings) == 3
    assert all("file=vacuity.toml," in x for x in warnings), warnings
