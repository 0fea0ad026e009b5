"""Budgets of a whole run (issue 15): --timeout for the run, --timeout-per-exploration,
--max-memory, SIGINT/SIGTERM, -x/--exitfirst. What a budget stops is `incomplete`, with
the reason; nothing is killed and no partial report file is left."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from gate_helpers import WRONG, write
from toy_models import Counters, ToyProvider

from checker import cli
from checker.explore import Budget, Check, explore
from checker.expr import compile_expr
from checker.verdict import Kind, Verdict

ROOT = Path(__file__).resolve().parent.parent

# 13^6 = 4.8 million states: far more than any of these tests lets it explore.
ENDLESS = """\
design = "counters"
environment = { k = 6, n = 12 }

[[property]]
name = "bounded"
kind = "always"
expr = "total >= 0"
expect = "holds"
"""

QUICK = """\
design = "counters"
environment = { k = 2, n = 3 }

[[property]]
name = "small"
kind = "always"
expr = "total <= 6"
expect = "holds"
"""

def run(args: list[str], tmp_path: Path, capsys: Any) -> tuple[int, str, str]:
    code = cli.main([*args, "--report-dir", str(tmp_path / "reports")], ToyProvider())
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("workers", ["1", "2"])
def test_timeout_bounds_the_whole_run(tmp_path: Path, capsys: Any, workers: str) -> None:
    write(tmp_path, "p/a_endless.toml", ENDLESS)
    write(tmp_path, "p/b_quick.toml", QUICK)
    started = time.monotonic()
    code, out, err = run([str(tmp_path / "p"), "--timeout", "1", "--format", "json",
                          "--workers", workers], tmp_path, capsys)
    assert time.monotonic() - started < 10
    assert code == 3
    data = json.loads(out)
    bounded, small = data["results"]
    assert bounded["verdict"] == "incomplete"
    assert "the run's timeout=1.0s reached" in bounded["message"]
    assert bounded["states"] > 0
    if workers == "2":  # side by side: the quick file was explored beside the endless one
        assert small["verdict"] == "holds"
        return
    # the second file was never explored: incomplete, not silently missing
    assert small["verdict"] == "incomplete" and small["states"] == 0
    assert "not explored: the run stopped (the run's timeout=1.0s reached)" in small["message"]
    assert "stopped early (the run's timeout=1.0s reached): 1 property not explored" in err


def test_timeout_per_exploration_keeps_the_old_meaning(tmp_path: Path, capsys: Any) -> None:
    write(tmp_path, "p/a.toml", ENDLESS)
    write(tmp_path, "p/b.toml", ENDLESS.replace('"bounded"', '"bounded-too"'))
    code, out, _ = run([str(tmp_path / "p"), "--timeout-per-exploration", "0.5",
                        "--format", "json"], tmp_path, capsys)
    assert code == 3
    results = json.loads(out)["results"]
    # each exploration ran, and each stopped after its own half second
    assert [r["verdict"] for r in results] == ["incomplete", "incomplete"]
    assert all("timeout=0.5s reached" in r["message"] and r["states"] > 0 for r in results)


def test_max_memory_gives_incomplete_instead_of_being_killed(tmp_path: Path,
                                                             capsys: Any) -> None:
    write(tmp_path, "p/a.toml", ENDLESS)
    code, out, _ = run([str(tmp_path / "p"), "--max-memory", "2M"], tmp_path, capsys)
    assert code == 3
    assert "INCOMPLETE" in out and "max_memory=2MiB reached" in out and "resident)" in out


@pytest.mark.parametrize("text", ["lots", "12Q", "1k"])
def test_a_bad_max_memory_is_a_usage_error(text: str, tmp_path: Path, capsys: Any) -> None:
    write(tmp_path, "p/a.toml", QUICK)
    with pytest.raises(SystemExit) as stop:
        cli.main([str(tmp_path / "p"), "--max-memory", text], ToyProvider())
    assert stop.value.code == 2
    assert "--max-memory" in capsys.readouterr().err


def test_memory_sizes_and_the_default() -> None:
    assert cli._memory_size("8G") == 8 << 30
    assert cli._memory_size("512MiB") == 512 << 20
    assert cli._memory_size("1.5g") == 3 << 29
    assert cli._memory_size("none") == 0  # no bound
    bound = cli.default_max_memory()
    if Path("/proc/meminfo").exists():
        assert bound is not None and bound > 64 << 20
        meminfo = Path("/proc/meminfo").read_text().splitlines()
        total = next(int(line.split()[1]) * 1024 for line in meminfo
                     if line.startswith("MemTotal:"))
        assert bound <= total * cli.MEMORY_SHARE


def test_the_budget_reasons() -> None:
    assert Budget().exceeded() is None
    assert Budget(deadline=time.monotonic() - 1, timeout=5.0).exceeded() == (
        "the run's timeout=5.0s reached")
    assert "max_memory=1MiB reached" in (Budget(max_memory=1 << 20).exceeded() or "")
    assert Budget(interrupted=lambda: "interrupted by SIGTERM").exceeded() == (
        "interrupted by SIGTERM")


def test_an_interrupt_stops_an_exploration_with_incomplete() -> None:
    asked: list[str] = []

    def interrupted() -> str | None:
        asked.append("?")
        return "interrupted by SIGINT" if len(asked) > 3 else None

    expr = compile_expr("total >= 0")
    done = explore(Counters(6, 12), [Check(Kind.ALWAYS, expr.evaluate, "p", expr.names)],
                   budget=Budget(interrupted=interrupted))
    assert done.outcomes[0].verdict is Verdict.INCOMPLETE
    assert "interrupted by SIGINT" in done.outcomes[0].message
    assert done.stop_reason == "interrupted by SIGINT"


def test_exitfirst_stops_after_the_first_unexpected_verdict(tmp_path: Path,
                                                            capsys: Any) -> None:
    write(tmp_path, "p/a_wrong.toml", WRONG)
    write(tmp_path, "p/b_quick.toml", QUICK.replace("k = 2", "k = 3").replace("<= 6", "<= 9"))
    code, out, err = run([str(tmp_path / "p"), "-x"], tmp_path, capsys)
    assert code == 1
    assert "FAIL" in out and "INCOMPLETE" in out
    assert "not explored: the run stopped (-x/--exitfirst: an unexpected verdict)" in out
    assert "FAIL " + str(tmp_path / "p" / "a_wrong.toml") + ":4 wrong" in err
    code, out, _ = run([str(tmp_path / "p")], tmp_path, capsys)  # without -x: both run
    assert code == 1 and "INCOMPLETE" not in out


@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_prints_the_results_so_far_and_leaves_no_partial_file(
    tmp_path: Path, sig: signal.Signals, workers: str
) -> None:
    """With 2 workers the explorations run side by side: the signal reaches the parent
    only, which tells the child exploring the endless file to stop."""
    write(tmp_path, "p/a_quick.toml", QUICK)
    write(tmp_path, "p/b_endless.toml", ENDLESS)
    write(tmp_path, "p/c_quick.toml",
          QUICK.replace('"small"', '"later"').replace("k = 2", "k = 3").replace("<= 6", "<= 9"))
    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{ROOT / 'tests'}")
    process = subprocess.Popen(
        [sys.executable, "-m", "checker", str(tmp_path / "p"), "--model",
         "toy_models:ToyProvider", "--junit", str(tmp_path / "out" / "junit.xml"),
         "--report-dir", str(tmp_path / "reports"), "--workers", workers],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=env,
    )
    assert process.stderr is not None
    # the first file's result line comes as soon as its exploration ends
    first = process.stderr.readline()
    assert first.startswith("ok ") and "small" in first, first
    time.sleep(0.5)  # well into the endless exploration
    process.send_signal(sig)
    out, err = process.communicate(timeout=60)
    assert process.returncode == cli.EXIT_INTERRUPTED, err
    assert "Traceback" not in err
    assert f"{sig.name}: stopping" in err
    assert "interrupted by " + sig.name in out
    lines = {line.split()[1]: line.split()[0] for line in out.splitlines()
             if line.startswith("  ") and not line.startswith("   ")}
    # side by side, the later file may have been explored before the signal came
    later = {"INCOMPLETE"} if workers == "1" else {"INCOMPLETE", "ok"}
    assert lines.pop("later") in later
    assert lines == {"small": "ok", "bounded": "INCOMPLETE"}
    # the JUnit file is whole, and nothing half-written lies around
    assert (tmp_path / "out" / "junit.xml").read_text().rstrip().endswith("</testsuites>")
    assert not [p for p in tmp_path.rglob("*")
                if p.name.startswith(".tmp-") or p.suffix in (".part", ".partial")]
