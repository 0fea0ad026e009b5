"""How long a contributor's loop takes (issue 15 item 8): the whole gate and the fast test
subset, each run as a user runs it, timed whole-process (wall and CPU of the children).

    python benchmarks/loop_times.py            # both, once each
    python benchmarks/loop_times.py --repeat 3 # alternately, three times each

Targets: each under 2 minutes on the 2-core development machine. Run it with nothing else
busy (the figures are wall time); put them in benchmarks/RESULTS.md with the commit.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

LOOPS: dict[str, list[str]] = {
    "gate": [sys.executable, "-m", "checker", "properties/", "-q"],
    "fast subset": [sys.executable, "-m", "pytest", "-m", "not slow", "-q",
                    "-p", "no:cacheprovider"],
}


def timed(argv: list[str], report_dir: str) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds of the child (and its own children), exit code."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    args = [*argv, "--report-dir", report_dir] if "checker" in argv else argv
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done.returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()
    print(f"commit {commit}, load average {os.getloadavg()[0]:.2f} at start")
    with tempfile.TemporaryDirectory() as reports:
        for round_ in range(1, args.repeat + 1):
            for name, argv in LOOPS.items():
                wall, cpu, code = timed(argv, reports)
                print(f"round {round_}: {name:12} {wall:7.1f} s wall {cpu:7.1f} s CPU "
                      f"exit {code}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
