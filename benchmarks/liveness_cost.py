"""The cost of liveness checking: kexec with 4 CPUs, its safety pass against the same
exploration with liveness properties (the state graph recorded, then one SCC pass each).

    python benchmarks/liveness_cost.py [--cpus 4] [--repeat 3]

Both runs explore the same design, variant and environment unreduced in one process
(liveness explorations are never reduced; the safety run is told the same): the safety
run checks `never timed_out`; the liveness run checks the same plus the shipped kexec
liveness properties (`eventually kexec_started == 1` with and without fairness for NMI
IPIs, and every shot-down CPU eventually halted in do_nmi_crash). The runs alternate in
`--repeat` pairs; each pair gives a ratio (liveness seconds / safety seconds), and the
median is the figure. Times are this process's CPU time (`time.process_time`): the
machines these run on are shared, and wall time there measures the neighbours too.
Target: at most 2x.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from checker.explore import Check, Exploration, Options, explore
from checker.expr import compile_expr
from checker.liveness import fairness_for
from checker.verdict import Kind
from model.system.provider import DesignProvider

VARIANT = {"patch": "patch-v1-fixed", "crash_from": "any"}
HALTED = ("all(c.halted and c.routine == 'do_nmi_crash' and crash_save_done[c.id] "
          "for c in cpus if c.id != 0)")


def checks(system: object, liveness: bool) -> list[Check]:
    safety = Check(Kind.NEVER, compile_expr("timed_out").evaluate, "never-timed-out",
                   frozenset({"timed_out"}))
    if not liveness:
        return [safety]
    ipi, ipi_text = fairness_for(system, "weak", ["cpu*.ipi"])
    plain, plain_text = fairness_for(system, "weak", [])
    started = compile_expr("kexec_started == 1").evaluate
    return [
        safety,
        Check(Kind.EVENTUALLY, started, "crash-kernel", None, fairness=ipi,
              fairness_text=ipi_text),
        Check(Kind.EVENTUALLY, started, "crash-kernel-unfair", None, fairness=plain,
              fairness_text=plain_text),
        Check(Kind.EVENTUALLY, compile_expr(HALTED).evaluate, "halted", None, fairness=ipi,
              fairness_text=ipi_text),
    ]


def once(cpus: int, liveness: bool) -> Exploration:
    nmi = [0] * cpus
    nmi[1] = 1
    system = DesignProvider().load("xen_kexec", VARIANT, {"cpus": cpus, "nmi": nmi})
    gc.collect()
    return explore(system, checks(system, liveness), options=Options(workers=1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpus", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    ratios: list[float] = []
    for pair in range(args.repeat):
        seconds: dict[bool, float] = {}
        for liveness in ((False, True) if pair % 2 == 0 else (True, False)):
            started = time.process_time()
            done = once(args.cpus, liveness)
            seconds[liveness] = time.process_time() - started
            stats = done.stats
            verdicts = ", ".join(f"{o.verdict}" for o in done.outcomes)
            what = "liveness" if liveness else "safety  "
            extra = (f", SCC passes {stats.liveness_seconds:.2f}s wall, graph "
                     f"{stats.graph_bytes / 2**20:.1f}MiB" if liveness else "")
            print(f"pair {pair + 1} {what}: {stats.states:,} states, {stats.transitions:,} "
                  f"transitions, {seconds[liveness]:.2f}s CPU{extra} [{verdicts}]")
        ratios.append(seconds[True] / seconds[False])
        print(f"pair {pair + 1} ratio: {ratios[-1]:.2f}")
    print(f"median ratio liveness/safety: {statistics.median(ratios):.2f} (target <= 2)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
