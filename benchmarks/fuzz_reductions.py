"""A differential-fuzzing campaign of the reductions (issue 13): random designs through
the command line, plain and with every cheaper option, every disagreement listed by class
with its seed, and (with --shrink) a minimal reproducer for the first seed of each class.

    nice -n 10 python benchmarks/fuzz_reductions.py --seeds 300 [--start 0] [--shrink]
        [--variants por,symmetry] [--max-states 4000] [--out DIR] [--fred some|always]

Exit 0 when no run disagreed, 1 otherwise. --out writes each shrunk reproducer's design
and property file (and the command showing the disagreement) there.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.random_designs import (
    BASELINE,
    MAX_STATES,
    VARIANTS,
    Case,
    Finding,
    compare,
    explain,
    generate,
    shrink,
)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=100, help="how many seeds")
    ap.add_argument("--start", type=int, default=0, help="first seed")
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated")
    ap.add_argument("--max-states", type=int, default=MAX_STATES)
    ap.add_argument(
        "--shrink",
        action="store_true",
        help="shrink the first seed of each class no known bug explains",
    )
    ap.add_argument("--shrink-all", action="store_true", help="shrink every class")
    ap.add_argument("--out", type=Path, help="write shrunk reproducers here")
    ap.add_argument(
        "--declared", choices=("none", "valid", "wrong"), help="only designs whose symmetry is this"
    )
    ap.add_argument(
        "--fred", choices=("never", "some", "always"), default="never",
        help="designs delivering by FRED: none (the default), one seed in four, or all",
    )
    ap.add_argument(
        "--stack-arith", choices=("never", "some", "always"), default="never",
        help="plant a write through an address computed into another CPU's stack",
    )
    ap.add_argument("-q", "--quiet", action="store_true")
    args = ap.parse_args(argv)
    variants = [v for v in args.variants.split(",") if v]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        ap.error(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")

    tried = 0
    by_class: dict[tuple[str, str], list[tuple[Case, Finding]]] = defaultdict(list)
    features: dict[str, int] = defaultdict(int)
    symmetry: dict[str, int] = defaultdict(int)
    started = time.time()
    runs = 0
    for seed in range(args.start, args.start + args.seeds):
        choice = {"never": False, "some": None, "always": True}
        case = generate(seed, fred=choice[args.fred], stack_arith=choice[args.stack_arith])
        if args.declared and case.symmetry != args.declared:
            continue
        for f in case.features:
            features[f] += 1
        symmetry[case.symmetry] += 1
        tried += 1
        t0 = time.time()
        outcome = compare(case, variants, max_states=args.max_states)
        runs += outcome.runs
        seen: set[tuple[str, str]] = set()
        for finding in outcome.findings:
            if finding.key() not in seen:
                seen.add(finding.key())
                by_class[finding.key()].append((case, finding))
        if not args.quiet:
            mark = " ".join(f"{v}:{k}" for v, k in sorted(seen)) or "agree"
            print(
                f"seed {seed:5d} {case.symmetry:5s} {outcome.runs:3d} runs "
                f"{time.time() - t0:5.1f}s  {mark}",
                flush=True,
            )

    elapsed = time.time() - started
    print(f"\n{tried} designs, {runs} checker runs, {elapsed:.0f}s")
    print("symmetry declarations: " + ", ".join(f"{k} {v}" for k, v in sorted(symmetry.items())))
    print("features: " + ", ".join(f"{k} {v}" for k, v in sorted(features.items())))
    if not by_class:
        print("no disagreement")
        return 0
    print("\ndisagreements by (variant, kind):")
    explained: dict[str, set[int]] = defaultdict(set)
    for (variant, kind), items in sorted(by_class.items()):
        seeds = [c.seed for c, _ in items]
        print(f"  {variant:18s} {kind:9s} {len(items):4d} seeds: {seeds[:20]}")
        case, finding = items[0]
        print(f"      e.g. seed {case.seed} {finding.prop}: {finding.detail[:300]}")
        for c, item in items:
            explained[explain(c, item)].add(c.seed)
    print("\nby known bug:")
    for bug, seeds_ in sorted(explained.items()):
        print(f"  {bug:32s} {len(seeds_):4d} seeds: {sorted(seeds_)[:25]}")
    if args.shrink or args.shrink_all:
        for (variant, kind), items in sorted(by_class.items()):
            todo = [(c, f) for c, f in items if args.shrink_all or explain(c, f) == "UNEXPLAINED"]
            if not todo:
                continue
            case, finding = todo[0]
            small = shrink(case, finding, max_states=args.max_states)
            print(f"\n== {variant} / {kind}: seed {case.seed}, property {finding.prop or '-'}")
            print(
                f"   command: python -m checker {small.name}.toml --format json "
                f"--max-states {args.max_states} {' '.join(BASELINE)}  vs  "
                f"{' '.join(VARIANTS[variant])}"
            )
            print(small.design)
            print(small.properties)
            if args.out:
                folder = args.out / f"{variant}-{kind}"
                small.write(folder)
                (folder / "README").write_text(
                    f"seed {case.seed}: {finding.detail}\nplain: {' '.join(BASELINE)}\n"
                    f"{variant}: {' '.join(VARIANTS[variant])}\n"
                )
    return 1


if __name__ == "__main__":
    sys.exit(main())
