"""Logs for CI (issue 15): without a terminal, a plain heartbeat at most every 30 s and a
line per property as soon as its exploration ends; expected counterexamples are one line;
the run closes with each unexpected or error property as `file:line name`."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import gate_helpers
import pytest
from gate_helpers import write
from toy_models import ToyProvider

from checker import cli
from checker.results import PropertyResult
from checker.run import check, plan, read_files

BIG = """\
design = "counters"
environment = { k = 4, n = 12 }

[[property]]
name = "bounded"
kind = "always"
expr = "total >= 0"
expect = "holds"
"""

MUTEX = gate_helpers.MUTEX + """\

[[property]]
name = "wrong"
kind = "always"
expr = "in_critical <= 1"
expect = "holds"
variant = { lock = "no" }
"""


def test_a_heartbeat_without_a_terminal(tmp_path: Path) -> None:
    write(tmp_path, "p/big.toml", BIG)
    files, _ = read_files([tmp_path / "p" / "big.toml"])
    prepared, _ = plan(files, ToyProvider())
    log = io.StringIO()  # not a terminal
    lines = cli.ProgressLine(log, heartbeat=0.0)
    check(prepared.groups, prepared.properties, progress=lines.for_group,
          on_results=lines.results)
    text = log.getvalue()
    assert "\r" not in text and "\033" not in text
    beats = [line for line in text.splitlines() if "exploration 1/1" in line]
    assert beats, text
    first = beats[0]
    assert first.startswith(f"{tmp_path / 'p' / 'big.toml'}: exploration 1/1: ")
    for part in ("states, depth", "states/s", "s (run "):
        assert part in first
    assert text.splitlines()[-1].startswith("ok ")  # the result line comes last


def test_the_heartbeat_is_at_most_every_30_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(cli.time, "monotonic", lambda: now[0])
    log = io.StringIO()
    lines = cli.ProgressLine(log)
    assert cli.HEARTBEAT == 30.0
    report = lines._heartbeat("f.toml: exploration 1/2")
    for step in range(120):  # two minutes of looks, one a second
        now[0] += 1.0
        report(step * 100, step, float(step))
    assert len(log.getvalue().splitlines()) == 4


def test_result_lines_come_as_each_exploration_ends(tmp_path: Path) -> None:
    write(tmp_path, "p/a.toml", MUTEX)
    write(tmp_path, "p/b.toml", BIG.replace("n = 12", "n = 2"))
    files, _ = read_files(sorted((tmp_path / "p").glob("*.toml")))
    prepared, _ = plan(files, ToyProvider())
    batches: list[list[str]] = []

    def told(found: Any) -> None:
        results: list[PropertyResult] = list(found)
        batches.append([r.prop.name for r in results])

    check(prepared.groups, prepared.properties, on_results=told)
    # one batch per exploration, in the order they ran
    assert batches == [["exclusion"], ["no-lock", "wrong"], ["bounded"]]


def test_a_ci_log_end_to_end(tmp_path: Path, capsys: Any) -> None:
    path = write(tmp_path, "m.toml", MUTEX)
    code = cli.main([str(path), "--report-dir", str(tmp_path / "r")], ToyProvider())
    out, err = capsys.readouterr()
    assert code == 1
    # stdout: the expected counterexample is one line; the unexpected one is printed whole
    no_lock = out[out.index("no-lock"): out.index("  FAIL")]
    assert no_lock.count("\n") == 2 and "counterexample: 2 steps: " in no_lock
    assert "1. [cpu0] enter" in out[out.index("  FAIL"):]
    # stderr: a line per property as decided, then the closing summary
    lines = err.splitlines()
    assert [line.split()[0] for line in lines[:3]] == ["ok", "ok", "FAIL"]
    assert lines[3:] == ["== 1 unexpected or error",
                         f"FAIL {path}:16 wrong (violated, expected holds)"]
