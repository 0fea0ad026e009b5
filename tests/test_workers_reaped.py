"""Forked `--workers` helpers are reaped (issue 13, "Workers are reaped"): after any number
of explorations, finished or cut short, no helper is left as a child of this process,
running or zombie."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import pytest
from toy_models import Counters

from checker import parallel
from checker.explore import Bounds, Check, Options, explore
from checker.expr import compile_expr
from checker.parallel import Pool
from checker.verdict import Kind

PROC = Path("/proc")
pytestmark = pytest.mark.skipif(
    not (PROC / "self" / "stat").exists()
    or "fork" not in multiprocessing.get_all_start_methods(),
    reason="needs /proc and fork",
)


@pytest.fixture(autouse=True)
def _small_levels(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fork helpers for every level, so that a toy model forks many of them."""
    monkeypatch.setattr(Pool, "MIN_LEVEL", 1)
    monkeypatch.setattr(Pool, "MIN_CHUNK", 2)
    monkeypatch.setattr(Pool, "CHUNKS_PER_WORKER", 3)
    monkeypatch.setattr(Pool, "STRIKES", 10**9)


def children() -> dict[int, str]:
    """This process's children: pid -> state letter ('Z' for a zombie)."""
    me = os.getpid()
    found: dict[int, str] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        state, ppid = stat[stat.rindex(")") + 2 :].split()[:2]
        if int(ppid) == me:
            found[int(entry.name)] = state
    return found


def _forks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the helpers forked (so that a test which forks none cannot pass)."""
    forked: list[int] = []
    real_fork = os.fork

    def counting() -> int:
        pid = real_fork()
        if pid:
            forked.append(pid)
        return pid

    monkeypatch.setattr(parallel.os, "fork", counting)
    return forked


def test_no_helper_survives_several_explorations(monkeypatch: pytest.MonkeyPatch) -> None:
    before = children()
    forked = _forks(monkeypatch)
    checks = [Check(Kind.DEADLOCK_FREE, None)]
    for _ in range(3):
        result = explore(Counters(3, 3), checks, options=Options(workers=4))
        assert result.complete and result.stats.workers == 4
        left = {pid: s for pid, s in children().items() if pid not in before}
        assert left == {}, f"helpers left behind: {left}"
    assert len(forked) >= 3 * 3  # three helpers per level, several levels each


def test_helpers_of_a_level_cut_short_are_reaped(monkeypatch: pytest.MonkeyPatch) -> None:
    # The property is decided in the middle of a level: the running helpers are killed.
    before = children()
    forked = _forks(monkeypatch)
    never = Check(Kind.NEVER, compile_expr("total == 4").evaluate)
    for _ in range(3):
        result = explore(Counters(4, 4), [never], options=Options(workers=3))
        assert result.stop_reason == "every property decided"
    explore(Counters(4, 4), [Check(Kind.DEADLOCK_FREE, None)], Bounds(max_states=40),
            options=Options(workers=3))
    assert forked
    left = {pid: s for pid, s in children().items() if pid not in before}
    assert left == {}, f"helpers left behind: {left}"
