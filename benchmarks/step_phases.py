"""Where a state's time goes (issue 18 item 2): actions, successors, the visited set.

    python benchmarks/step_phases.py kexec-4 [--states 30000]
    python benchmarks/step_phases.py kexec-4 --against /path/to/other/tree

A workload of benchmarks/workloads.py is explored breadth first up to `--states` expanded
states; then, with the cyclic collector off (as the explorer runs), each phase is timed
alone on a freshly loaded system, in CPU seconds (best of `--repeat`): `actions` over
every expanded state in BFS order, `next` for every transition, `visited` inserting every
successor into a dict. Figures are microseconds per expanded state. With `--against DIR`
the same is run with DIR's checker (another commit's tree) right after, so both
share the machine's load, and the counts of the two are checked to be the same.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def phases(tree: Path, name: str, limit: int, repeat: int) -> dict[str, Any]:
    """The figures of one workload with the checker of `tree`."""
    sys.path.insert(0, str(tree / "benchmarks"))  # (its workloads.py puts `tree` first)
    import workloads

    from model import provider

    w = workloads.WORKLOADS[name]

    def load() -> Any:
        return provider().load(w.design, w.variant, w.environment)

    system = load()
    seen: dict[Any, None] = {}
    queue: deque[Any] = deque()
    order: list[Any] = []
    pairs: list[tuple[Any, Any]] = []
    for s in system.init_states():
        if s not in seen:
            seen[s] = None
            queue.append(s)
    while queue and len(order) < limit:
        s = queue.popleft()
        order.append(s)
        for a in system.actions(s):
            succ = system.next_state(s, a)
            pairs.append((s, a))
            if succ not in seen:
                seen[succ] = None
                queue.append(succ)
    gc.disable()
    best: dict[str, float] = {}
    for _ in range(repeat):
        fresh = load()
        actions, next_state = fresh.actions, fresh.next_state
        t0 = time.process_time()
        for s in order:
            actions(s)
        t1 = time.process_time()
        successors = [next_state(s, a) for s, a in pairs]
        t2 = time.process_time()
        visited: dict[Any, None] = {}
        for succ in successors:
            if succ not in visited:
                visited[succ] = None
        t3 = time.process_time()
        for key, seconds in (("actions", t1 - t0), ("next", t2 - t1), ("visited", t3 - t2)):
            best[key] = min(best.get(key, seconds), seconds)
    return {
        "workload": name, "states": len(order), "transitions": len(pairs), "seen": len(seen),
        **{k: v / len(order) * 1e6 for k, v in best.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name", help="a workload of benchmarks/workloads.py")
    parser.add_argument("--states", type=int, default=30000, help="states to expand")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--against", help="another tree of the checker, measured in turn")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # measure this tree, print JSON
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(phases(Path(args.one), args.name, args.states, args.repeat)))
        return 0
    trees = [ROOT] + ([Path(args.against).resolve()] if args.against else [])
    rows = []
    for tree in trees:
        proc = subprocess.run(
            [sys.executable, __file__, args.name, "--states", str(args.states),
             "--repeat", str(args.repeat), "--one", str(tree)],
            capture_output=True, text=True, cwd=tree,
            env={**os.environ, "PYTHONPATH": str(tree), "PYTHONHASHSEED": "0"},
        )
        if proc.returncode != 0:
            print(proc.stderr, file=sys.stderr)
            return 1
        rows.append((tree, json.loads(proc.stdout)))
    counts = {(r["states"], r["transitions"], r["seen"]) for _, r in rows}
    if len(counts) != 1:
        print(f"the trees disagree on the counts: {counts}", file=sys.stderr)
        return 1
    for tree, r in rows:
        total = r["actions"] + r["next"] + r["visited"]
        print(
            f"{tree}: {r['workload']} {r['states']:,} states {r['transitions']:,} transitions"
            f" | us per state: actions {r['actions']:.2f} next {r['next']:.2f}"
            f" visited {r['visited']:.2f} total {total:.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
