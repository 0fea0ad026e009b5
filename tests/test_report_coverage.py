"""Coverage: the visited states, merged per source file, and --require-full-coverage."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from review_toys import SOURCE, ReviewMutex, ReviewProvider
from toy_models import Counters, ToyProvider

from checker import cli
from checker.coverage import line_ranges, merge, unreached_report
from checker.explore import explore

PROPS = """\
design = "rmutex"

[[property]]
name = "exclusion"
kind = "always"
expr = "in_critical <= 1"
expect = "holds"
"""


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.S").write_text(SOURCE)
    (tmp_path / "p.toml").write_text(PROPS)


def run(capsys: Any, *args: str, provider: Any = None) -> tuple[int, str, str]:
    code = cli.main(["p.toml", "--report-dir", "r", *args],
                    provider if provider is not None else ReviewProvider("m.S"))
    out, err = capsys.readouterr()
    return code, out, err


def test_explore_keeps_the_visited_states_only_with_identity_fingerprints() -> None:
    done = explore(Counters(2, 2), [])
    assert done.visited is not None and len(done.visited) == 9
    assert (2, 2) in done.visited
    assert explore(Counters(2, 2), [], fingerprint=hash).visited is None


def test_merge_unions_reached_lines_over_explorations() -> None:
    a = {"files": {"f": {"reached": [1, 2], "unreached": [3, 4]}},
         "routines": {"r": False, "s": True}, "vectors": {"2": False, "18": True},
         "events": ["nmi"]}
    b = {"files": {"f": {"reached": [3], "unreached": [1, 2, 4, 5]},
                   "g": {"reached": [], "unreached": [7]}},
         "routines": {"r": True}, "vectors": {"2": True, "14": False}, "events": ["mce"]}
    merged = merge([a, b])
    assert merged["files"] == {"f": {"reached": [1, 2, 3], "unreached": [4, 5]},
                               "g": {"reached": [], "unreached": [7]}}
    assert merged["routines"] == {"r": True, "s": True}
    assert merged["vectors"] == {"2": True, "14": False, "18": True}
    assert merged["events"] == ["mce", "nmi"]
    assert merged["unreached_lines"] == 3
    assert unreached_report(merged) == [
        "f: lines 4-5 (2 lines never reached)", "g: line 7 (1 line never reached)"]
    assert line_ranges([9, 1, 2, 3, 5, 6]) == "1-3, 5-6, 9"


def test_require_full_coverage_fails_and_names_the_lines(capsys: Any) -> None:
    code, out, err = run(capsys)
    assert code == 0
    code, out, err = run(capsys, "--require-full-coverage")
    assert code == 1
    assert "1 property: 1 as expected" in out  # the verdicts themselves are fine
    assert err.splitlines()[1:] == [  # after the CI log's line for the property
        "--require-full-coverage: 3 source lines never reached:",
        "  m.S: lines 4, 7, 9 (3 lines never reached)",
    ]


def test_require_full_coverage_passes_when_everything_is_reached(capsys: Any) -> None:
    class Full(ReviewMutex):
        def coverage(self, states: Any) -> dict[str, Any]:
            out = super().coverage(states)
            for lines in out["files"].values():
                lines["reached"] += lines["unreached"]
                lines["unreached"] = []
            return out

    class Provider(ReviewProvider):
        def load(self, design: str, variant: Any, environment: Any) -> Any:
            return Full(source="m.S")

    code, _, err = run(capsys, "--require-full-coverage", provider=Provider("m.S"))
    assert code == 0 and err.startswith("ok ") and len(err.splitlines()) == 1


def test_require_full_coverage_keeps_worse_exit_codes(capsys: Any, tmp_path: Path) -> None:
    (tmp_path / "p.toml").write_text(PROPS.replace('expect = "holds"', 'expect = "violated"'))
    code, _, _ = run(capsys, "--require-full-coverage")
    assert code == 1
    (tmp_path / "p.toml").write_text(PROPS.replace("in_critical <= 1", "c[9]"))
    code, _, _ = run(capsys, "--require-full-coverage")
    assert code == 2


def test_require_full_coverage_needs_a_model_with_coverage(capsys: Any, tmp_path: Path) -> None:
    (tmp_path / "p.toml").write_text(PROPS.replace("rmutex", "mutex"))
    code, _, err = run(capsys, "--require-full-coverage", provider=ToyProvider())
    assert code == 2
    assert "--require-full-coverage: the model reports no coverage" in err


def test_coverage_only_when_asked(capsys: Any) -> None:
    calls: list[int] = []

    class Counting(ReviewMutex):
        def coverage(self, states: Any) -> dict[str, Any]:
            calls.append(1)
            return super().coverage(states)

    class Provider(ReviewProvider):
        def load(self, design: str, variant: Any, environment: Any) -> Any:
            return Counting(source="m.S")

    run(capsys, provider=Provider())
    assert calls == []  # the plain gate does not pay for coverage
    run(capsys, "--format", "json", provider=Provider())
    assert calls == [1]
    run(capsys, "--html", provider=Provider())
    assert calls == [1, 1]


def test_a_failing_coverage_method_costs_no_verdict(capsys: Any) -> None:
    class Broken(ReviewMutex):
        def coverage(self, states: Any) -> dict[str, Any]:
            raise RuntimeError("no")

    class Provider(ReviewProvider):
        def load(self, design: str, variant: Any, environment: Any) -> Any:
            return Broken(source="m.S")

    code, out, _ = run(capsys, "--format", "json", provider=Provider())
    data = json.loads(out)
    assert code == 0 and data["results"][0]["verdict"] == "holds"
    assert data["explorations"][0]["coverage"] == {
        "error": "the model's coverage failed: RuntimeError: no"}
    assert data["coverage"] is None


def test_verbose_text_shows_the_coverage_summary(capsys: Any) -> None:
    _, out, _ = run(capsys, "--html", "-v")
    assert "coverage: 2/5 source lines, 2/3 routines, 1/1 vectors, 2 kinds of event reached" \
        in out


def test_real_design_coverage(capsys: Any, tmp_path: Path) -> None:
    from model import provider

    (tmp_path / "p.toml").write_text("""\
design = "xen_ist"
variant = { ist = "xen", context = "xen" }

[[property]]
name = "nesting"
environment = { nmi = 1 }
kind = "never"
expr = "frame_clobbered"
expect = "holds"
""")
    code, out, _ = run(capsys, "--format", "json", provider=provider())
    assert code == 0
    coverage = json.loads(out)["coverage"]
    (path,) = coverage["files"]
    assert path.endswith("xen_ist.design")
    lines = coverage["files"][path]
    assert lines["reached"] and lines["unreached"]  # no #MC: entry_MC is never run
    assert coverage["routines"]["entry_NMI"] is True
    assert coverage["routines"]["entry_MC"] is False
    assert coverage["vectors"]["2"] is True
    assert coverage["unreached_lines"] == len(lines["unreached"])
    assert coverage["partial"] == []
