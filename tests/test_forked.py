"""Explorations side by side in forked processes (checker/forked.py, checker.run.check
with --workers): results in order, a failure costs only its own job, the children are
stopped and reaped, and the run's report is the one-process run's."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from gate_helpers import WRONG, write
from toy_models import ToyProvider

from checker import cli
from checker.forked import Forked, JobFailed, Notice


def _results(forked: Forked, count: int) -> list[Any]:
    out: list[Any] = []
    for n in range(count):
        try:
            out.append(forked.result(n))
        except JobFailed as exc:
            out.append(f"failed: {exc}")
    forked.close()
    return out


def test_results_come_in_order_whatever_finishes_first() -> None:
    def job(n: int) -> int:
        time.sleep(0.05 * (4 - n))  # the first job ends last
        return n * n

    assert _results(Forked(job, 5, 2), 5) == [0, 1, 4, 9, 16]


def test_a_job_that_raises_or_does_not_pickle_fails_alone() -> None:
    def job(n: int) -> Any:
        if n == 1:
            raise ValueError("bad state")
        if n == 2:
            return lambda: n  # a closure does not pickle
        return n

    out = _results(Forked(job, 4, 2), 4)
    assert out[0] == 0 and out[3] == 3
    assert out[1] == "failed: ValueError: bad state"
    assert out[2].startswith("failed: its result could not be sent")


@pytest.mark.parametrize("workers", [1, 2])
def test_a_child_that_dies_costs_its_job(workers: int) -> None:
    def job(n: int) -> int:
        if n == 1:
            os._exit(3)  # killed for memory, say
        return n

    out = _results(Forked(job, 4, workers), 4)
    assert out[0] == 0
    assert out[1] == "failed: its process died (exit code 3)"
    # with another child the rest is done; with none left, it is said so
    assert out[2:] == ([2, 3] if workers == 2 else
                       ["failed: no process was left to run it"] * 2)


def test_close_kills_a_job_still_running() -> None:
    def job(n: int) -> int:
        if n == 0:
            time.sleep(60)
        return n

    forked = Forked(job, 3, 2)
    assert forked.result(1) == 1
    started = time.monotonic()
    forked.close()
    assert time.monotonic() - started < 10
    assert not forked.children


def test_a_notice_posted_by_the_parent_reaches_running_children() -> None:
    notice = Notice()
    seen: list[str] = []

    def job(n: int) -> str:
        deadline = time.monotonic() + 20
        while notice.read() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        return notice.read() or "never told"

    def poll() -> None:
        if not seen:
            seen.append("posted")
            notice.post("interrupted by SIGTERM")

    assert _results(Forked(job, 2, 2, poll), 2) == ["interrupted by SIGTERM"] * 2


def _files(tmp_path: Path) -> Path:
    for k in range(2, 5):
        write(tmp_path, f"p/c{k}.toml", f"""\
design = "counters"
environment = {{ k = {k}, n = 3 }}

[[property]]
name = "bounded{k}"
kind = "always"
expr = "total <= {3 * k}"
expect = "holds"

[[property]]
name = "reach{k}"
kind = "reachable"
expr = "total == {3 * k - 1}"
expect = "holds"
""")
    write(tmp_path, "p/b_wrong.toml", WRONG)
    return tmp_path / "p"


def _run(tmp_path: Path, capsys: Any, *args: str) -> tuple[int, dict[str, Any], str]:
    code = cli.main([str(_files(tmp_path)), "--format", "json",
                     "--report-dir", str(tmp_path / "reports"), *args], ToyProvider())
    out, err = capsys.readouterr()
    return code, json.loads(out), err


def _same(doc: dict[str, Any]) -> Any:
    """What must not depend on how the explorations ran (timings apart)."""
    def strip(x: Any) -> Any:
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items()
                    if k not in ("seconds", "states_per_second", "workers", "elapsed")}
        if isinstance(x, list):
            return [strip(v) for v in x]
        return x
    return strip([doc["results"], doc["explorations"], doc["summary"], doc["exit_code"]])


@pytest.mark.parametrize("exitfirst", [[], ["-x"]])
def test_side_by_side_reports_what_one_process_reports(
    tmp_path: Path, capsys: Any, exitfirst: list[str]
) -> None:
    code1, one, _ = _run(tmp_path, capsys, "--workers", "1", *exitfirst)
    code2, two, err = _run(tmp_path, capsys, "--workers", "2", *exitfirst)
    assert code1 == code2 == 1
    assert _same(one) == _same(two)
    verdicts = {r["name"]: r["verdict"] for r in two["results"]}
    assert verdicts["wrong"] == "violated"
    if exitfirst:  # b_wrong's exploration (c2's too) is first: the rest is not explored
        assert {v for n, v in verdicts.items() if n[-1] in "34"} == {"incomplete"}
    else:
        assert {v for n, v in verdicts.items() if n != "wrong"} == {"holds"}
    assert "Traceback" not in err
