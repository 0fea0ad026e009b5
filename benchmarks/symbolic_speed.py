"""Symbolic exploration against concrete, and one tree against another (issue 18 item 1).

    python benchmarks/symbolic_speed.py                          # this tree
    python benchmarks/symbolic_speed.py --old /tmp/base          # side by side with a tree
    python benchmarks/symbolic_speed.py --old /tmp/base --markdown --rounds 2

Each workload of benchmarks/workloads.py named below runs exhaustively, one worker, in its
own process, with the checker imported from the tree measured (this one, or the `--old`
worktree, e.g. `git worktree add /tmp/base <commit>`). Old and new runs alternate, so the
load of a shared machine falls on both alike. Columns: distinct states, transitions, CPU
seconds of the exploration (process time: what the machine's other jobs change least),
wall seconds, states per CPU-second, CPU microseconds per state, peak resident memory and
bytes per stored state (peak above the interpreter's, divided by states).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT = ["syscall-concrete", "syscall-symbolic", "pv-traps-symbolic"]


def measure(name: str, tree: str) -> dict[str, Any]:
    """Run one workload in this process with the checker and model of `tree`."""
    sys.path.insert(1, str(HERE))
    from workloads import WORKLOADS, Workload  # (benchmarks/ of this tree: definitions only)

    sys.path.insert(0, tree)  # (workloads put this tree's root first)

    extra = {
        "pv-traps-symbolic": Workload(
            "pv-traps-symbolic", "xen_pv_traps",
            "vec not in (3, 4, 0x80) and bounced and guest_entered == vec and "
            "guest_error_code == 0xffffffff and trap_dpl[vec] < (1 if guest_kernel else 3)",
            {"mode": "user"}, {"symbolic": ["guest_vector"]},
        ),
    }
    w = {**WORKLOADS, **extra}[name]
    import checker
    from checker.explore import Bounds, Check, Options, explore
    from checker.expr import compile_expr
    from checker.verdict import Kind
    from model import provider

    if not Path(checker.__file__).resolve().is_relative_to(Path(tree).resolve()):
        raise SystemExit(f"the checker came from {checker.__file__}, not {tree}")
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    system = provider().load(w.design, w.variant, w.environment)
    expr = compile_expr(w.expr)
    check = Check(Kind(w.kind), expr.evaluate, w.name, expr.names)
    wall, cpu = time.perf_counter(), time.process_time()
    result = explore(system, [check], Bounds(), options=Options(workers=1))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    states = result.stats.states
    return {
        "workload": name,
        "verdict": result.outcomes[0].verdict.value,
        "states": states,
        "transitions": result.stats.transitions,
        "cpu": round(cpu, 2),
        "wall": round(wall, 2),
        "states_per_cpu_second": round(states / cpu) if cpu else 0,
        "us_per_state": round(cpu * 1e6 / states, 1) if states else 0,
        "peak_mib": round(peak / 1024, 1),
        "bytes_per_state": round((peak - baseline) * 1024 / states) if states else 0,
    }


def run_one(tree: Path, name: str) -> dict[str, Any]:
    env = {**os.environ, "PYTHONHASHSEED": "0", "PYTHONPATH": str(tree)}
    code = (
        "import sys, json; sys.path.insert(0, sys.argv[1]); sys.path.insert(1, sys.argv[2]);"
        "import symbolic_speed as b; print(json.dumps(b.measure(sys.argv[3], sys.argv[1])))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(tree), str(HERE), name],
        capture_output=True, text=True, cwd=tree, env=env,
    )
    if proc.returncode != 0:
        raise SystemExit(f"{name} in {tree}: failed\n{proc.stderr}")
    row: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help=f"workloads (default: {' '.join(DEFAULT)})")
    parser.add_argument("--old", type=Path, help="a worktree of the commit to compare with")
    parser.add_argument("--rounds", type=int, default=1, help="runs of each (the best is kept)")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args(argv)
    trees = [("new", ROOT)] + ([("old", args.old.resolve())] if args.old else [])
    best: dict[tuple[str, str], dict[str, Any]] = {}
    for name in args.names or DEFAULT:
        for _ in range(args.rounds):
            for label, tree in reversed(trees):  # old first, then new, alternating
                row = run_one(tree, name)
                key = (label, name)
                if key not in best or row["cpu"] < best[key]["cpu"]:
                    best[key] = row
                if not args.markdown:
                    print(f"{label:4} {json.dumps(row)}", flush=True)
    if args.markdown:
        print("| tree | workload | verdict | states | transitions | CPU s | wall s | states/CPU-s"
              " | µs/state | peak MiB | bytes/state |")
        print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for (label, _name), r in sorted(best.items(), key=lambda kv: (kv[0][1], kv[0][0])):
            print(
                f"| {label} | {r['workload']} | {r['verdict']} | {r['states']:,} | "
                f"{r['transitions']:,} | {r['cpu']:.2f} | {r['wall']:.2f} | "
                f"{r['states_per_cpu_second']:,} | {r['us_per_state']} | {r['peak_mib']} | "
                f"{r['bytes_per_state']} |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
