"""Report paths cannot escape the report directory (issue 13, "No escapes").

Each test reproduces an attack or a failure found by hand: a property file named
`...toml` (stem `..`), one named `javascript:alert(document.domain).toml`, symlinks planted
in the report directory, a 300-character property name, an unwritable report directory.
Paths mirror the property file's path relative to the working directory (issue 15).
"""

from __future__ import annotations

import os
import textwrap
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
from gate_helpers import run_json as run
from toy_models import ToyProvider

from checker import cli
from checker.reportdir import MAX_COMPONENT, report_parts, safe_component

PROPS = """\
design = "mutex"

[[property]]
name = "{bad}"
kind = "always"
expr = "in_critical <= 1"
expect = "violated"
variant = {{ lock = "no" }}

[[property]]
name = "{good}"
kind = "always"
expr = "in_critical <= 1"
expect = "holds"
"""


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory inside tmp_path (so that its parent can be watched)."""
    folder = tmp_path / "work"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


def write(path: Path, bad: str = "escaped", good: str = "package") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(PROPS.format(bad=bad, good=good)))
    return path


def tree(root: Path, skip: Path | None = None) -> dict[str, str]:
    """Every file and link under root (not under skip): relative path -> content."""
    found: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        if skip is not None and (path == skip or skip in path.parents):
            continue
        if path.is_symlink():
            found[str(path.relative_to(root))] = "-> " + os.readlink(path)
        elif path.is_file():
            found[str(path.relative_to(root))] = path.read_text(errors="replace")
    return found


def trace_paths(data: dict[str, Any]) -> list[Path]:
    return [Path(p) for r in data["results"] if r["traces"] for p in r["traces"].values()]


def inside(path: Path, folder: Path) -> bool:
    return Path(os.path.realpath(path)).is_relative_to(os.path.realpath(folder))


# -- the stem `..` ----------------------------------------------------------------------------


def test_a_file_named_dot_dot_toml_stays_inside(work: Path, capsys: Any) -> None:
    # With the stem as the folder, reports/../package.json was the working directory's
    # package.json: deleted because the property `package` had no trace this run.
    (work / "package.json").write_text("precious")
    (work / "package.dot").write_text("precious")
    write(work / "...toml")
    before = tree(work.parent, skip=work / "reports")
    code, data, err = run(capsys, "...toml")
    assert code == 0, err
    assert tree(work.parent, skip=work / "reports") == before
    paths = trace_paths(data)
    assert paths and all(inside(p, work / "reports") and p.is_file() for p in paths)
    assert {p.parent for p in paths} == {Path("reports") / "%2E..toml"}


@pytest.mark.parametrize("name", [".", "..", "", "a/b", "a\\b", "con\0x", ".hidden", "x" * 400])
def test_components_are_single_safe_names(name: str) -> None:
    part = safe_component(name)
    assert part not in ("", ".", "..") and not part.startswith(".")
    assert "/" not in part and "\\" not in part and "\0" not in part
    assert len(part.encode()) <= MAX_COMPONENT


def test_components_are_one_to_one_and_deterministic() -> None:
    names = ["a:b", "a%3Ab", "a_b", "..", "%2E%2E", "x" * 300, "x" * 299 + "y", "é"]
    parts = [safe_component(n) for n in names]
    assert len(set(parts)) == len(parts)
    assert parts == [safe_component(n) for n in names]


def test_report_parts_mirror_the_path_relative_to_the_working_directory(work: Path) -> None:
    assert report_parts("props/a/kexec_crash.toml", "p") == (
        "props", "a", "kexec_crash.toml", "p")
    assert report_parts(str(work / "b" / "x.toml"), "p") == ("b", "x.toml", "p")
    assert report_parts("./c/../d/x.toml", "p") == ("d", "x.toml", "p")
    assert report_parts("...toml", "p") == ("%2E..toml", "p")
    # outside the working directory: the absolute path, under a folder no relative path
    # can produce (a `%` in a name is encoded as %25)
    outside = report_parts(str(work.parent / "o.toml"), "p")
    assert outside[0] == "%2F" and outside[-2:] == ("o.toml", "p")
    assert report_parts("../o.toml", "p") == outside


# -- hrefs ------------------------------------------------------------------------------------


class Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for key, value in attrs:
            if key in ("href", "src", "action", "formaction") and value is not None:
                self.hrefs.append(value)


def test_a_file_named_like_a_url_is_never_a_scheme_href(work: Path, capsys: Any) -> None:
    write(work / "javascript:alert(document.domain).toml")
    code, _, err = run(capsys, ".", "--html")
    assert code == 0, err
    page = (work / "reports" / "index.html").read_text()
    links = Links()
    links.feed(page)
    files = [h for h in links.hrefs if not h.startswith("#")]
    assert len(files) == 4  # the four trace files of the violated property
    for href in links.hrefs:
        split = urlsplit(href)
        assert split.scheme == "" and split.netloc == "" and not href.startswith("/"), href
        assert ":" not in href  # a colon in a path segment is %3A
    for href in files:
        target = work / "reports" / unquote(href)
        assert inside(target, work / "reports") and target.is_file(), href
    assert 'href="javascript' not in page


# -- symlinks ---------------------------------------------------------------------------------


def test_symlinks_in_the_report_directory_are_replaced_not_followed(
    work: Path, capsys: Any
) -> None:
    write(work / "p" / "m.toml")
    _, data, _ = run(capsys, "p")
    graphml, as_json = (Path(data["results"][0]["traces"][k]) for k in ("graphml", "json"))
    victim = work.parent / "victim.txt"
    victim.write_text("precious")
    outside = work.parent / "outside"
    outside.mkdir()
    # a trace file that is a link to a file outside, a folder that is a link outside
    graphml.unlink()
    graphml.symlink_to(victim)
    folder = graphml.parent.parent  # reports/p (graphml is reports/p/m.toml/NAME.graphml)
    for child in sorted(folder.rglob("*"), reverse=True):
        child.unlink() if not child.is_dir() or child.is_symlink() else child.rmdir()
    folder.rmdir()
    folder.symlink_to(outside, target_is_directory=True)
    code, again, err = run(capsys, "p")
    assert code == 0, err
    assert victim.read_text() == "precious"
    assert list(outside.iterdir()) == []
    assert not folder.is_symlink() and folder.is_dir()
    for path in trace_paths(again):
        assert path.is_file() and not path.is_symlink() and inside(path, work / "reports")
    # a link to a file, planted where a trace goes, is replaced by the trace
    as_json.unlink()
    as_json.symlink_to(victim)
    run(capsys, "p")
    assert victim.read_text() == "precious" and not as_json.is_symlink()


# -- long names -------------------------------------------------------------------------------


def test_long_file_names_are_shortened_deterministically(work: Path, capsys: Any) -> None:
    """Property names are short by rule (at most 100 of a-z, 0-9, '-': checker.spec), but a
    property file's name may be up to the file system's 255 bytes, and percent-encoding
    makes 100 'é' (200 bytes) 600: such a folder name is shortened, the same every run,
    and two names that differ only at the end still get two folders."""
    long = "é" * 100 + ".toml"
    other = "é" * 99 + "b.toml"
    write(work / long, bad="escaped", good="short")
    write(work / other, bad="escaped", good="short")
    code, data, err = run(capsys, long, other)
    assert code == 0, err
    assert [r["verdict"] for r in data["results"]] == ["violated", "holds"] * 2
    paths = trace_paths(data)
    assert len(set(paths)) == len(paths) == 8
    assert all(p.is_file() and all(len(c.encode()) < 255 for c in p.parts) for p in paths)
    _, again, _ = run(capsys, long, other)
    assert trace_paths(again) == paths


# -- a report that cannot be written ----------------------------------------------------------


def test_an_unwritable_report_dir_still_prints_every_verdict(work: Path, capsys: Any) -> None:
    write(work / "m.toml")
    (work / "blocker").write_text("a file where the report folder should be")
    code = cli.main(["m.toml", "--report-dir", "blocker/reports", "--html"], ToyProvider())
    out, err = capsys.readouterr()
    assert code == 2
    assert "escaped" in out and "package" in out and "2 properties: 2 as expected" in out
    assert "cannot write reports to blocker/reports" in err
    code, data, err = run(capsys, "m.toml", "--report-dir", "blocker/reports")
    assert code == 2 and data["exit_code"] == 2
    assert [r["verdict"] for r in data["results"]] == ["violated", "holds"]
    assert "cannot write reports" in err


def test_an_unwritable_junit_file_still_writes_the_rest(work: Path, capsys: Any) -> None:
    write(work / "m.toml")
    (work / "blocker").write_text("")
    code, data, err = run(capsys, "m.toml", "--junit", "blocker/junit.xml",
                          "--sarif", "out.sarif")
    assert code == 2 and data["exit_code"] == 2
    assert "cannot write blocker/junit.xml" in err
    assert (work / "out.sarif").is_file()
    assert all(p.is_file() for p in trace_paths(data))


def test_a_writer_that_fails_loses_its_file_not_the_run(
    work: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from checker import writers
    from checker.writers import WRITERS, Target, Writer

    def broken_trace(result: Any, record: Any, path: Path) -> None:
        raise TypeError("cannot encode a frame")

    def broken_page(out: Any) -> str:
        raise ValueError("no page today")

    monkeypatch.setattr(writers, "WRITERS", (
        *WRITERS,
        Writer("broken", Target.TRACE, "a trace writer that fails", trace=broken_trace,
               suffix="broken"),
        Writer("page", Target.FILE, "a report writer that fails", run=broken_page),
    ))
    write(work / "m.toml")
    code, data, err = run(capsys, "m.toml", "--page", "page.txt")
    assert code == 2 and data["exit_code"] == 2
    assert [r["verdict"] for r in data["results"]] == ["violated", "holds"]
    assert "TypeError: cannot encode a frame" in err
    assert "cannot write page.txt: ValueError: no page today" in err
    assert (work / "reports" / "m.toml" / "escaped.json").is_file()
    assert not list(work.rglob("*.part"))  # no temporary file left behind


def test_a_file_in_the_way_of_a_folder_is_never_deleted(work: Path, capsys: Any) -> None:
    # With the working directory as the report directory, the trace folder of m.toml is
    # ./m.toml/: the property file itself is in the way. It is an error, not a deletion.
    path = write(work / "m.toml")
    text = path.read_text()
    code, data, err = run(capsys, "m.toml", "--report-dir", ".")
    assert code == 2 and [r["verdict"] for r in data["results"]] == ["violated", "holds"]
    assert "a file where a folder should be" in err
    assert path.read_text() == text
