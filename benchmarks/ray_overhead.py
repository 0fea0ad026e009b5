"""What `--backend ray` costs on one machine, side by side with the in-process explorer.

    python benchmarks/ray_overhead.py                   # kexec-3, ist-1, kexec-4
    python benchmarks/ray_overhead.py kexec-2 --shards 2

Starts a Ray cluster on 127.0.0.1 (--shards CPUs, no dashboard), then, for each workload
of benchmarks/workloads.py (unreduced, its one property holds: the whole space), runs in
turn: the in-process explorer (states as keys), the in-process explorer with 64-bit
fingerprints (`--compact`, the Ray shards' keys), and the Ray backend. It checks that the
three agree (verdict, states, transitions, depth) and prints wall seconds, the Ray run's
levels and its seconds per level, what a shard keeps per visited state, and how many
successors were routed to another shard. The Ray figure includes loading the system in
each shard (once per workload) but not starting the cluster or the actors, which is
timed apart. `--markdown` prints a table for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import pickle
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", default=["kexec-3", "ist-1", "kexec-4"])
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)

    import ray
    from workloads import WORKLOADS

    from checker.distributed import RayBackend, _Driver
    from checker.explore import Bounds, Check, Options, explore
    from checker.expr import compile_expr
    from checker.verdict import Kind
    from model import provider as model_provider

    started = time.perf_counter()
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"  # nothing leaves this machine
    ray.init(num_cpus=args.shards, include_dashboard=False, _node_ip_address="127.0.0.1",
             log_to_driver=False, configure_logging=False,
             runtime_env={"env_vars": {"PYTHONPATH": path}})
    provider = model_provider()
    backend = RayBackend(provider, shards=args.shards)
    ray.get([s.size.remote() for s in backend.handles()])  # the actors are up
    startup = time.perf_counter() - started
    print(f"cluster and {args.shards} shard actors started in {startup:.1f}s", flush=True)
    rows: list[dict[str, Any]] = []
    for name in args.names:
        w = WORKLOADS[name]
        system = provider.load(w.design, w.variant, w.environment)
        expr = compile_expr(w.expr)
        checks = [Check(Kind(w.kind), expr.evaluate, w.name, expr.names)]
        row: dict[str, Any] = {"workload": name}
        results = []
        for label, options in (("local", Options()), ("compact", Options(compact=True))):
            t, c = time.perf_counter(), time.process_time()
            done = explore(system, checks, Bounds(), options=options)
            row[label] = time.perf_counter() - t
            row[label + "_cpu"] = time.process_time() - c
            results.append(done)
        recipe = backend.recipe(w.design, w.variant, w.environment)
        t, c = time.perf_counter(), time.process_time()
        driver = _Driver(backend, recipe, system, checks, Bounds(), None, Options(compact=True),
                         None)
        done = driver.run()
        row["ray"] = time.perf_counter() - t
        row["driver_cpu"] = time.process_time() - c
        results.append(done)
        summaries = {(r.outcomes[0].verdict, r.stats.states, r.stats.transitions, r.stats.depth)
                     for r in results}
        assert len(summaries) == 1, summaries
        sizes = ray.get([s.size.remote() for s in backend.handles()])
        kept = sum(s[0] for s in sizes)
        sample = system.init_states()[0]
        row.update(
            verdict=done.outcomes[0].verdict.value, states=done.stats.states,
            transitions=done.stats.transitions, levels=len(driver.widths) + 1,
            widest=max(driver.widths, default=0),
            bytes_per_state=round(sum(s[1] for s in sizes) / kept),
            shard_states=[s[0] for s in sizes],
            remote_share=sum(s[3] for s in sizes) / max(1, sum(s[2] + s[3] for s in sizes)),
            routed=sum(s[2] + s[3] for s in sizes),
            state_bytes=len(pickle.dumps(sample, pickle.HIGHEST_PROTOCOL)),
            shard_cpu=sum(s[4] for s in sizes),
        )
        row["per_level_ms"] = 1000 * row["ray"] / row["levels"]
        rows.append(row)
        print(
            f"{name:10} {row['verdict']:6} {row['states']:>9,} states, {row['levels']} levels "
            f"(widest {row['widest']:,}): in-process {row['local']:.2f}s, fingerprints "
            f"{row['compact']:.2f}s, Ray {row['ray']:.2f}s ({row['ray'] / row['local']:.1f}x; "
            f"{row['per_level_ms']:.0f} ms/level); shard {row['bytes_per_state']} B/state "
            f"{row['shard_states']}; {row['routed']:,} successors routed, "
            f"{100 * row['remote_share']:.0f}% to another shard; a state pickles to "
            f"{row['state_bytes']} B; CPU: in-process {row['local_cpu']:.2f}s, fingerprints "
            f"{row['compact_cpu']:.2f}s, Ray shards {row['shard_cpu']:.2f}s + driver "
            f"{row['driver_cpu']:.2f}s", flush=True,
        )
    ray.shutdown()
    if args.markdown:
        print("| workload | states | levels | wall s: in-process / fingerprints / Ray "
              "| CPU s: in-process / fingerprints / Ray shards + driver | ms/level "
              "| shard B/state | routed | to another shard |")
        print("|---|---:|---:|---|---|---:|---:|---:|---:|")
        for r in rows:
            print(f"| {r['workload']} | {r['states']:,} | {r['levels']} | {r['local']:.2f} / "
                  f"{r['compact']:.2f} / {r['ray']:.2f} | {r['local_cpu']:.2f} / "
                  f"{r['compact_cpu']:.2f} / {r['shard_cpu']:.2f} + {r['driver_cpu']:.2f} | "
                  f"{r['per_level_ms']:.0f} | {r['bytes_per_state']} | {r['routed']:,} | "
                  f"{100 * r['remote_share']:.0f}% |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
