"""Named workloads for measuring the checker (issue 8): state counts, speed and memory.

    python benchmarks/workloads.py --timeout 180   # every workload (kexec-2..8, ist-1..3,
                                                   # syscall-concrete, syscall-symbolic)
    python benchmarks/workloads.py kexec-4 ist-2   # some of them
    python benchmarks/workloads.py --markdown      # a table for benchmarks/RESULTS.md

Each workload explores one design/variant/environment exhaustively with one property
(the full state space is the measure, so the property is one that holds) and runs in its
own process, so that the peak memory it reports is its own. Columns: distinct states,
transitions, seconds, states/s, peak resident memory, and bytes per stored state (peak
memory above the interpreter's baseline, divided by states). Timings are wall-clock on
whatever else the machine is doing: run it on a quiet machine.

benchmarks/matrix.py runs these workloads under every reduction (REDUCTIONS below), SPIN
and the gate side by side, with CPU times and CPU-second timeouts (`measure`'s options
`reduction` and `cpu_timeout`).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


@dataclass(frozen=True)
class Workload:
    name: str
    design: str
    expr: str
    variant: dict[str, str] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    kind: str = "never"


def _kexec(n: int) -> Workload:
    # properties/kexec_crash.toml's v1-fixed-all-cpus-acknowledge on n CPUs (the question
    # benchmarks/compare_spin.py asks SPIN too): CPU 0 crashes from either context, CPU 1
    # may take one watchdog NMI, CPUs 2..n-1 only the shootdown's.
    # (The property's expression exactly, so that compare_spin.py's claim never_timed_out
    # is the same question; the property holds, so the whole space is explored.)
    return Workload(
        f"kexec-{n}",
        "xen_kexec",
        "timed_out",
        {"patch": "patch-v1-fixed"},
        {"cpus": n, "nmi": [0, 1] + [0] * (n - 2)},
    )


def _ist(k: int) -> Workload:
    # Xen's IST layout, one CPU in Xen or guest context, k real NMIs, k real #MCs and k
    # external interrupts (vector 0x30, an ordinary device interrupt). The property never
    # fails, so the whole space is explored (with 2 NMIs some CPU shuts down).
    return Workload(
        f"ist-{k}",
        "xen_ist",
        "ncpus == 0",
        {"ist": "xen"},
        {"nmi": k, "mce": k, "external": k, "external_vectors": [0x30]},
    )


WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in [
        *(_kexec(n) for n in range(2, 9)),
        _ist(1), _ist(2), _ist(3),
        Workload(
            "syscall-concrete", "xen_syscall", "frame_on_guest_stack", {},
            {"nmi": 1, "mce": 1, "double_faults": 1},
        ),
        Workload(
            "syscall-symbolic", "xen_syscall", "frame_on_guest_stack", {},
            {"nmi": 1, "mce": 1, "double_faults": 1, "symbolic": ["guest_rsp", "guest_rip"]},
        ),
    ]
}


# The checker's reductions by name (compare_spin.py and matrix.py use the same names); each
# sets both options, so a changed default cannot change what a name measures.
REDUCTIONS: dict[str, dict[str, bool]] = {
    "none": {"symmetry": False, "por": False},
    "por": {"symmetry": False, "por": True},
    "symmetry": {"symmetry": True, "por": False},
    "symmetry+por": {"symmetry": True, "por": True},
}


def _peak_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def measure(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """Run one workload in this process and return its figures."""
    from checker.explore import Bounds, Check, Options, explore
    from checker.expr import compile_expr
    from checker.verdict import Kind
    from model import provider

    w = WORKLOADS[name]
    baseline = _peak_kib()
    system = provider().load(w.design, w.variant, w.environment)
    expr = compile_expr(w.expr)
    check = Check(Kind(w.kind), expr.evaluate, w.name, expr.names)
    options = dict(options)
    reduction = options.pop("reduction", None)
    max_memory = options.pop("max_memory", None)
    cpu_timeout = options.pop("cpu_timeout", None)
    if reduction is not None:  # explicit, so that "none" stays none whatever the defaults
        options.update(REDUCTIONS[reduction])
    kwargs = {k: v for k, v in options.items() if v is not None and k != "timeout"}
    bounds = Bounds(timeout=options.get("timeout"))
    cpu_started = time.process_time()

    def out_of_cpu() -> str | None:  # the search's own CPU seconds, whatever the load
        if cpu_timeout and time.process_time() - cpu_started >= cpu_timeout:
            return f"{cpu_timeout} CPU seconds reached"
        return None

    budget = None
    if max_memory or cpu_timeout:
        from checker.explore import Budget

        budget = Budget(max_memory=int(max_memory) if max_memory else None,
                        interrupted=out_of_cpu)
    loaded = _peak_kib()  # the design and its initial states: not per-state memory
    cpu_started = time.process_time()
    started = time.perf_counter()
    result = explore(system, [check], bounds, options=Options(**kwargs), budget=budget)
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    peak = _peak_kib()
    stats = result.stats
    extra = getattr(system, "statistics", lambda: {})()
    return {
        "workload": name,
        "verdict": result.outcomes[0].verdict.value,
        "complete": result.complete,
        "states": stats.states,
        "transitions": stats.transitions,
        "depth": stats.depth,
        "seconds": round(seconds, 3),
        "states_per_second": round(stats.states / seconds) if seconds else 0,
        "peak_mib": round(peak / 1024, 1),
        "bytes_per_state": round((peak - baseline) * 1024 / stats.states) if stats.states else 0,
        "z3_queries": extra.get("z3_queries", 0),
        # the exploration's own CPU time, and memory above the loaded design's
        "reduction": reduction,
        "explore_cpu_seconds": round(cpu, 3),
        "states_per_cpu_second": round(stats.states / cpu) if cpu > 0 else 0,
        "stored_bytes_per_state": (
            round((peak - loaded) * 1024 / stats.states) if stats.states else 0
        ),
        # --compact: the fingerprint table alone (fingerprints, parent links, index)
        "table_bytes_per_state": (
            round(stats.table_bytes / stats.states, 2) if stats.states else 0
        ),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="workloads (default: all)")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # run one workload, print JSON
    parser.add_argument("--options", default="{}", help=argparse.SUPPRESS)
    parser.add_argument("--symmetry", action="store_true", help="symmetry reduction")
    parser.add_argument("--por", action="store_true", help="partial-order reduction")
    parser.add_argument("--workers", type=int, default=None, help="parallel workers")
    parser.add_argument("--fingerprints", action="store_true", help="64-bit fingerprints")
    parser.add_argument("--timeout", type=float, default=None,
                        help="give up a workload after this many seconds (incomplete)")
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(measure(args.one, json.loads(args.options))))
        return 0
    options = {}
    if args.symmetry:
        options["symmetry"] = True
    if args.por:
        options["por"] = True
    if args.workers:
        options["workers"] = args.workers
    if args.fingerprints:
        options["compact"] = True
    if args.timeout:
        options["timeout"] = args.timeout
    names = args.names or list(WORKLOADS)
    unknown = [n for n in names if n not in WORKLOADS]
    if unknown:
        print(f"unknown workload {unknown[0]!r}; known: {', '.join(WORKLOADS)}", file=sys.stderr)
        return 2
    rows = []
    for name in names:
        proc = subprocess.run(
            [sys.executable, __file__, "--one", name, "--options", json.dumps(options)],
            capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONHASHSEED": "0"},
        )
        if proc.returncode != 0:
            print(f"{name}: failed\n{proc.stderr}", file=sys.stderr)
            return 1
        row = json.loads(proc.stdout)
        rows.append(row)
        if not args.markdown:
            print(
                f"{name:18} {row['verdict']:9} {row['states']:>10,} states "
                f"{row['transitions']:>11,} transitions {row['seconds']:>8.2f}s "
                f"{row['states_per_second']:>8,}/s peak {row['peak_mib']:>7.1f} MiB "
                f"{row['bytes_per_state']:>6} B/state"
                + (f"  z3 {row['z3_queries']}" if row["z3_queries"] else "")
                + (f"  table {row['table_bytes_per_state']} B/state"
                   if row["table_bytes_per_state"] else ""),
                flush=True,
            )
    if args.markdown:
        print(
            "| workload | verdict | states | transitions | seconds | states/s | peak MiB"
            " | bytes/state |"
        )
        print("|---|---|---:|---:|---:|---:|---:|---:|")
        for r in rows:
            print(
                f"| {r['workload']} | {r['verdict']} | {r['states']:,} | {r['transitions']:,} | "
                f"{r['seconds']:.2f} | {r['states_per_second']:,} | {r['peak_mib']} | "
                f"{r['bytes_per_state']} |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
