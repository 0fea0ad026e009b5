"""Engine throughput against a bare dict + deque BFS on the same synthetic model.

    python benchmarks/engine_vs_bare.py [--k 4] [--n 22] [--repeat 3]

The model is a k-counter lattice ((n+1)**k states). The engine run checks a trivial
invariant written in the expression language (`c[0] >= 0`, which holds, so the
exploration is exhaustive); the bare BFS checks nothing. The two run in `--repeat` pairs,
back to back (the order alternating), and each pair gives a ratio: on a machine other
processes load, a pair shares its load, so the median of the pair ratios is the figure
(the ratio of the best rates is printed too). Target: median ratio >= 0.65.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from checker.explore import Check, explore
from checker.expr import compile_expr
from checker.verdict import Kind, Verdict


class Lattice:
    """k counters 0..n; any counter below n may be incremented."""

    def __init__(self, k: int, n: int):
        self.k = k
        self.n = n

    def init_states(self) -> Sequence[tuple[int, ...]]:
        return [(0,) * self.k]

    def actions(self, state: tuple[int, ...]) -> Sequence[int]:
        n = self.n
        return [i for i, v in enumerate(state) if v < n]

    def next_state(self, state: tuple[int, ...], action: int) -> tuple[int, ...]:
        return state[:action] + (state[action] + 1,) + state[action + 1 :]

    def is_terminal(self, state: tuple[int, ...]) -> bool:
        return True

    def vocabulary(self, state: tuple[int, ...]) -> Mapping[str, Any]:
        return {"c": state}

    def vocabulary_names(self) -> Mapping[str, str]:
        return {"c": "the counters"}

    def describe_state(self, state: tuple[int, ...]) -> Mapping[str, Any]:
        return {f"c{i}": v for i, v in enumerate(state)}

    def describe_action(self, state: tuple[int, ...], action: int) -> Mapping[str, Any]:
        return {"label": f"inc c{action}"}


def bare_bfs(model: Lattice) -> tuple[int, float]:
    """The baseline: a dict of parents and a deque, nothing else."""
    start = time.perf_counter()
    actions, next_state = model.actions, model.next_state
    seen: dict[Any, Any] = {}
    queue: deque[Any] = deque()
    for s in model.init_states():
        if s not in seen:
            seen[s] = None
            queue.append(s)
    while queue:
        s = queue.popleft()
        for a in actions(s):
            t = next_state(s, a)
            if t not in seen:
                seen[t] = s
                queue.append(t)
    return len(seen), time.perf_counter() - start


def engine_bfs(model: Lattice) -> tuple[int, float]:
    invariant = compile_expr("c[0] >= 0")
    result = explore(model, [Check(Kind.ALWAYS, invariant.evaluate, "trivial")])
    assert result.outcomes[0].verdict is Verdict.HOLDS, result.outcomes[0]
    assert result.complete
    return result.stats.states, result.stats.seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--n", type=int, default=22)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args(argv)
    model = Lattice(args.k, args.n)
    expected = (args.n + 1) ** args.k
    bare_rates: list[float] = []
    engine_rates: list[float] = []
    ratios: list[float] = []
    for number in range(args.repeat):
        pair = ((bare_bfs, bare_rates), (engine_bfs, engine_rates))
        rate = {}
        for runner, rates in pair if number % 2 == 0 else pair[::-1]:
            gc.collect()
            states, seconds = runner(model)
            assert states == expected, (runner.__name__, states, expected)
            rates.append(states / seconds)
            rate[runner] = states / seconds
        ratios.append(rate[engine_bfs] / rate[bare_bfs])
    bare, engine = max(bare_rates), max(engine_rates)
    print(f"model: {args.k}-counter lattice 0..{args.n}, {expected:,} states")
    print(f"bare dict+deque BFS : {bare:>12,.0f} states/s (best of {args.repeat})")
    print(f"engine + invariant  : {engine:>12,.0f} states/s (best of {args.repeat})")
    print("pair ratios         : " + " ".join(f"{r:.2f}" for r in ratios))
    print(f"ratio of best rates : {engine / bare:.2f}")
    print(f"median pair ratio   : {statistics.median(ratios):.2f} (target >= 0.65)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
