"""Designs outside the package (issue 12, item 4): a property file's `design` may be a path
relative to the property file, `--design-path DIR` adds folders for design names, and every
output (text, trace files, HTML, JUnit, SARIF, GitHub annotations, coverage, replay) works
for such a design, with paths relative to the working directory; `python -m checker lint`
checks design files without exploring."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest

from checker import cli
from model.system.provider import DesignProvider

# A design whose NMI handler loads an empty IDT and raises #UD (a triple fault) from a
# macro: `never any_shutdown` is violated, through a macro's lines.
DESIGN = """\
stack primary size 0x1000
cpu 0 start main rsp top(primary) idt table

idt table
    gate NMI nmi_handler
end

.macro CRASH how
        lidt empty
        \\how
.endm

ENTRY(main)
1:      hlt
        jmp 1b

ENTRY(nmi_handler)
        pushq %rax
        CRASH ud2
2:      hlt
        jmp 2b
"""
MACRO_BODY_LINE = DESIGN.splitlines().index("        lidt empty") + 1
CALL_SITE_LINE = DESIGN.splitlines().index("        CRASH ud2") + 1

PROPERTIES = """\
design = "{design}"
environment = {{ nmi = 1 }}

[[property]]
name = "no-clobber"
kind = "never"
expr = "frame_clobbered"
expect = "holds"

[[property]]
name = "no-shutdown"
kind = "never"
expr = "any_shutdown"
expect = "holds"
"""


def write_project(root: Path, design_value: str = "entry/entry.design") -> Path:
    """A user's repository: properties/checks.toml naming entry/entry.design by path."""
    (root / "entry").mkdir(parents=True, exist_ok=True)
    (root / "entry" / "entry.design").write_text(DESIGN)
    (root / "properties").mkdir(exist_ok=True)
    toml = root / "properties" / "checks.toml"
    toml.write_text(PROPERTIES.format(design="../" + design_value
                                      if "/" in design_value else design_value))
    return toml


def run(argv: list[str], capsys: pytest.CaptureFixture[str],
        provider: Any = None) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli.main(argv, provider if provider is not None else DesignProvider())
    out = capsys.readouterr()
    return code, out.out, out.err


def test_a_design_beside_the_property_file_end_to_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    toml = write_project(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    code, out, err = run(
        ["properties/checks.toml", "--html", "--report-dir", "reports",
         "--sarif", "out.sarif", "--junit", "out.xml"],
        capsys,
    )
    assert code == 1, err  # no-shutdown is violated against its expectation
    assert "Traceback" not in err
    design = "entry/entry.design"
    # the text trace names the design relative to the working directory, with the macro
    # line's call site and the macro body line
    assert f"({design}:{CALL_SITE_LINE}, in macro: line {MACRO_BODY_LINE})" in out, out
    # trace files, replayable
    trace = Path("reports/properties/checks.toml/no-shutdown.json")
    assert trace.is_file()
    record = json.loads(trace.read_text())["replay"]
    assert record["design"] == design
    assert record["design_file"] == str((tmp_path / design).resolve())
    # HTML: the design's listing is there
    html = Path("reports/index.html").read_text()
    assert "entry.design" in html and "CRASH ud2" in html
    assert f"in macro: line {MACRO_BODY_LINE}" in html
    # SARIF: locations relative to the working directory (SRCROOT)
    sarif = json.loads(Path("out.sarif").read_text())
    uris = {
        loc["physicalLocation"]["artifactLocation"].get("uri")
        for res in sarif["runs"][0]["results"]
        for flow in res.get("codeFlows", [])
        for tf in flow["threadFlows"]
        for loc in (x["location"] for x in tf["locations"])
        if "physicalLocation" in loc
    }
    assert design in uris, uris
    assert f"in macro: line {MACRO_BODY_LINE}" in Path("out.sarif").read_text()
    # JUnit: the failure is there
    junit = Path("out.xml").read_text()
    assert 'name="no-shutdown"' in junit and "<failure" in junit
    # GitHub annotations at the design line of the step that violated, naming the property
    assert "::error file=entry/entry.design,line=" in err
    assert "property at properties/checks.toml:" in err
    # coverage in the JSON output names the design's lines
    code, out, _ = run(["properties/checks.toml", "--format", "json", "--report-dir", "r2"],
                       capsys)
    data = json.loads(out)
    files = data["coverage"]["files"]
    # both the invocation and the macro's line are reached
    assert design in files
    assert {CALL_SITE_LINE, MACRO_BODY_LINE} <= set(files[design]["reached"])
    # replay, from here and from another folder
    code, out, err = run(["replay", str(trace)], capsys)
    assert code == 0, out + err
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    code, out, err = run(["replay", str(tmp_path / trace)], capsys)
    assert code == 0, out + err
    assert toml.is_file()


def test_a_design_outside_the_working_directory_has_absolute_paths(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the working directory is the repository; the project lives in a tmp folder
    toml = write_project(tmp_path)
    code, out, err = run(
        [str(toml), "--report-dir", str(tmp_path / "reports"),
         "--sarif", str(tmp_path / "out.sarif")], capsys,
    )
    assert code == 1, err
    design = (tmp_path / "entry" / "entry.design").resolve()
    assert f"{design}:{CALL_SITE_LINE}" in out
    sarif = (tmp_path / "out.sarif").read_text()
    assert design.as_uri() in sarif


def test_design_path_folders_find_designs_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write_project(tmp_path, design_value="entry")
    monkeypatch.chdir(tmp_path)
    argv = ["properties/checks.toml", "--report-dir", "reports"]
    code, _, err = run(argv, capsys)
    assert code == 2
    assert re.search(r"properties/checks\.toml:1: unknown design 'entry'", err), err
    code, out, err = run(argv + ["--design-path", "entry"], capsys)
    assert code == 1, err
    assert f"entry/entry.design:{CALL_SITE_LINE}" in out
    # replay of a trace whose design is a name needs the folder again
    trace = "reports/properties/checks.toml/no-shutdown.json"
    code, _, err = run(["replay", trace], capsys)
    assert code == 2 and "unknown design" in err
    code, out, err = run(["replay", trace, "--design-path", "entry"], capsys)
    assert code == 0, out + err
    code, _, err = run(argv + ["--design-path", "nowhere"], capsys)
    assert code == 2 and "--design-path nowhere: no such folder" in err


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("missing.design", ("no design file",)),
        ("../entry/entry.txt", ("must end in .design",)),
    ],
)
def test_a_bad_design_path_is_an_error_at_the_property_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    value: str, words: tuple[str, ...],
) -> None:
    write_project(tmp_path)
    (tmp_path / "entry" / "entry.txt").write_text(DESIGN)
    (tmp_path / "properties" / "checks.toml").write_text(PROPERTIES.format(design=value))
    monkeypatch.chdir(tmp_path)
    code, _, err = run(["properties/checks.toml", "--report-dir", "reports"], capsys)
    assert code == 2
    assert err.startswith("properties/checks.toml:1: "), err
    for w in words:
        assert w in err


def test_a_design_error_is_printed_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write_project(tmp_path)
    design = tmp_path / "entry" / "entry.design"
    design.write_text(DESIGN.replace("2:      hlt", "2:      frobq"))
    # three groups (different environments) use the broken design
    text = PROPERTIES.format(design="../entry/entry.design") + textwrap.dedent("""\
        [[property]]
        name = "third"
        kind = "never"
        expr = "any_shutdown"
        expect = "holds"
        environment = { nmi = 0 }
        """)
    (tmp_path / "properties" / "checks.toml").write_text(text)
    monkeypatch.chdir(tmp_path)
    code, _, err = run(["properties/checks.toml", "--report-dir", "reports"], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "frobq" in lines[0], err
    assert lines[0].startswith("entry/entry.design:")


# -- lint ---------------------------------------------------------------------------------------


def test_lint_a_clean_design(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "ok.design"
    path.write_text(DESIGN)
    code, out, err = run(["lint", str(path)], capsys)
    assert code == 0, err
    assert "ok" in out and err == ""


def test_lint_reports_every_error_of_every_file_and_variant(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "good.design"
    good.write_text(DESIGN)
    bad = tmp_path / "bad.design"
    # an error only the `fast` value of a knob shows, and one in another file
    bad.write_text("knob mode = slow | fast\n" + DESIGN.replace(
        "2:      hlt", ".if mode == fast\n        frobq\n.endif\n2:      hlt"))
    worse = tmp_path / "worse.design"
    worse.write_text(DESIGN.replace("gate NMI nmi_handler", "gate NMI missing"))
    code, out, err = run(["lint", str(good), str(bad), str(worse)], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 2, err
    bad_line = DESIGN.splitlines().index("2:      hlt") + 3
    assert lines[0] == f"{bad}:{bad_line}: unknown instruction 'frobq' (variant mode=fast)"
    assert lines[1].startswith(f"{worse}:5: ") and "missing" in lines[1]
    assert f"{good}: ok" in out
    # a folder lints every design in it
    code, _, err = run(["lint", str(tmp_path)], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 2


def test_lint_lays_designs_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # a mistake only the layout finds: a stack larger than its slot
    path = tmp_path / "big.design"
    path.write_text(DESIGN.replace("stack primary size 0x1000", "stack primary size 0x100000"))
    code, _, err = run(["lint", str(path)], capsys)
    assert code == 2
    assert err.startswith(f"{path}:1: ") and "larger" in err


def test_lint_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["lint", str(tmp_path / "nope.design")], capsys)
    assert code == 2 and "no such file" in err
    code, _, err = run(["lint", str(tmp_path)], capsys)
    assert code == 2 and "no *.design files" in err


def test_the_shipped_designs_lint_clean(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["lint", "model/designs"], capsys)
    assert out.count(": ok") == len(list(Path("model/designs").glob("*.design")))
    assert code == 0, err
