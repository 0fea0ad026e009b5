"""The reductions side by side (issue 18 item 3): kexec-N under none / por / symmetry /
symmetry+por, each run in its own process, in one table.

    python benchmarks/reductions.py                       # kexec-2..8, every reduction
    python benchmarks/reductions.py --cpus 2,4 --timeout 30 --markdown

The workload is benchmarks/workloads.py's kexec-N (properties/kexec_crash.toml's
v1-fixed-all-cpus-acknowledge on N CPUs). A run that hits --timeout or --max-states is
shown with the states it reached (its rate still says what a state costs). Columns:
states, wall and CPU seconds of the exploration (the machine is shared: compare CPU), and
CPU microseconds per state.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import workloads  # noqa: E402  (benchmarks/workloads.py, beside this file)

REDUCTIONS: dict[str, dict[str, bool]] = {
    "none": {},
    "por": {"por": True},
    "symmetry": {"symmetry": True},
    "symmetry+por": {"symmetry": True, "por": True},
}


def _one(name: str, options: dict[str, Any]) -> dict[str, Any]:
    n = int(name.split("-")[1])
    workloads.WORKLOADS.setdefault(name, workloads._kexec(n))
    import checker.explore

    explore = checker.explore.explore  # measure() imports it when called: wrap it
    cpu = [0.0]

    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.process_time()
        try:
            return explore(*args, **kwargs)
        finally:
            cpu[0] += time.process_time() - started

    checker.explore.explore = timed
    cap = options.pop("max_states", None)
    if cap:
        bounds = checker.explore.Bounds

        def capped(**kwargs: Any) -> Any:
            return bounds(max_states=cap, **kwargs)

        checker.explore.Bounds = capped  # type: ignore[assignment,misc]
    row = workloads.measure(name, options)
    row["cpu_seconds"] = round(cpu[0], 3)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpus", default="2,3,4,5,6,7,8", help="comma-separated CPU counts")
    parser.add_argument("--reductions", default=",".join(REDUCTIONS), help="comma-separated")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="give up a run after this many seconds (default 60)")
    parser.add_argument("--max-states", type=int, default=None,
                        help="stop a run after this many states (a CPU-time bound that does "
                        "not depend on the machine's load)")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--options", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(_one(args.one, json.loads(args.options))))
        return 0
    rows = []
    for n in (int(c) for c in args.cpus.split(",")):
        for reduction in args.reductions.split(","):
            options = {**REDUCTIONS[reduction], "timeout": args.timeout,
                       "max_states": args.max_states}
            proc = subprocess.run(
                [sys.executable, __file__, "--one", f"kexec-{n}", "--options",
                 json.dumps(options)],
                capture_output=True, text=True, cwd=ROOT,
                env={**os.environ, "PYTHONHASHSEED": "0"},
            )
            if proc.returncode != 0:
                print(f"kexec-{n} {reduction}: failed\n{proc.stderr}", file=sys.stderr)
                return 1
            row = json.loads(proc.stdout)
            row["reduction"] = reduction
            row["us_per_state"] = round(row["cpu_seconds"] * 1e6 / max(row["states"], 1), 1)
            rows.append(row)
            if not args.markdown:
                done = "" if row["complete"] else "  (stopped)"
                print(
                    f"kexec-{n:<2} {reduction:13} {row['verdict']:10} {row['states']:>10,} states "
                    f"{row['seconds']:>8.2f}s {row['cpu_seconds']:>8.2f}s CPU "
                    f"{row['us_per_state']:>7.1f} us/state{done}",
                    flush=True,
                )
    if args.markdown:
        print("| workload | reduction | verdict | states | wall s | CPU s | CPU µs/state |")
        print("|---|---|---|---:|---:|---:|---:|")
        for r in rows:
            seconds = f"{r['seconds']:.2f}" + ("" if r["complete"] else " (stopped)")
            print(
                f"| {r['workload']} | {r['reduction']} | {r['verdict']} | {r['states']:,} | "
                f"{seconds} | {r['cpu_seconds']:.2f} | {r['us_per_state']} |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
