"""The benchmark matrix in one run (issue 18 item 6): every workload, every reduction, the
gate and SPIN, side by side, with the figures of an earlier run beside them.

    python benchmarks/matrix.py                        # the whole matrix (about 20 minutes)
    python benchmarks/matrix.py --quick                # the small cells (about 1 minute)
    python benchmarks/matrix.py --only kexec --only gate
    python benchmarks/matrix.py --exclude gate --exclude symbolic
    python benchmarks/matrix.py --json benchmarks/matrix-NEW.json \\
        --compare benchmarks/matrix-808fbea.json --markdown
    python benchmarks/matrix.py --results benchmarks/RESULTS.md   # append the tables
    python benchmarks/matrix.py --show RUN.json --compare OLD.json  # a saved run's tables

Cells (ids as `--only` sees them; a pattern selects the ids it matches as a glob or
contains as a substring):

- `kexec-N R` for N = 2..8 and R in none / por / symmetry / symmetry+por: the checker on
  `v1-fixed-all-cpus-acknowledge` (benchmarks/workloads.py) with exactly that reduction;
- `kexec-N SPIN`: the same question in SPIN (benchmarks/spin/kexec.pml: spin -a, gcc -O0
  -DBFS, pan; benchmarks/compare_spin.py's translation of the property);
- `ist-K none` (K = 1..3), `syscall-concrete none`, `syscall-symbolic none`, and their
  `SPIN` cells, which say why SPIN cannot ask that question (the translation's own error);
- `gate`: `python -m checker properties/` as shipped (its default options), wall and CPU
  time (CPU includes its worker processes), its exit code and summary line.

Each cell runs in its own process(es), measured by os.wait4: wall seconds, CPU seconds of
the whole process (start-up, loading, exploring; for SPIN spin + gcc + pan), the search's
own CPU seconds (the checker's explore(), pan's run), states per CPU-second of the
search, peak resident memory, and bytes per state (the checker: peak memory above the
loaded design's, divided by states; pan: its whole peak, including its preallocated hash
table, divided by its nominal states). SPIN's states are pan's nominal count (stored
minus `init`'s atomic set-up; the checker's unreduced count plus one). A cell gets
`--timeout` CPU seconds of search (default 60), counted in CPU time so that other jobs on
the machine do not turn a cell that finishes into one that does not: the checker stops
its own search then (a `Budget` that reads its CPU clock) and the cell reads "no verdict
in 60 CPU-s" with the states reached; pan gets SIGINT when /proc says it used that much
CPU, and prints what it stored. Behind that, a wall-clock limit of 5 x timeout + 60 s
stops either the same way (the note says so). The gate gets `--gate-timeout` seconds of
wall clock (default 300), then SIGINT.
Once a cell of a series (one reduction, or SPIN, over growing N) gives no verdict, the
larger cells of that series are not run (`--no-skip` runs them). Memory: the checker
stops at `--max-memory-gib` (default 6), pan is compiled with -DMEMLIM at the same bound.

Time: on a quiet 2-core machine a cell takes about its CPU seconds, so the default matrix
is bounded by its timeouts: each of the five kexec series (four reductions, SPIN) runs
its sizes until one gives no verdict in 60 CPU-s, and with state counts growing 4-10x per
CPU, at most that cell and one below it come near the limit (about 135 s per series, 11
minutes for kexec); ist-1..3 and the two syscall cells at most 4 more minutes; the gate
1.5-2.5 minutes (2 workers): under 20 minutes in all. At 808fbea the cells' CPU seconds
add up to about 12 minutes (kexec-5 and beyond give no verdict, so the series stop
early). `--quick` (kexec-2..4, ist-1, syscall-concrete, 20 CPU-s timeout, no gate) takes
about 1.5 minutes. Cells run one after another; other jobs on the machine stretch the
wall clock (the wall-clock limit behind each cell is 5 x timeout + 60 s), much less the
CPU figures.

`--json FILE` saves every figure (small: no output text), after every cell (so a run
stopped early keeps its cells; "partial" says so); `--compare OLD.json` puts an
earlier run's verdict, states, CPU seconds and states/CPU-s beside each cell, with the
ratio of CPU seconds (old / new: above 1 the new run was faster). `--markdown` prints the
tables; `--results FILE` appends them to FILE as a new section.
"""

from __future__ import annotations

import argparse
import datetime
import fnmatch
import importlib.util
import json
import os
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def _module(name: str) -> ModuleType:
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


workloads = _module("workloads")
compare_spin = _module("compare_spin")

REDUCTIONS = tuple(workloads.REDUCTIONS)  # none, por, symmetry, symmetry+por
SPIN = "SPIN"
CELL_TIMEOUT = 60.0
GATE_TIMEOUT = 300.0
QUICK_TIMEOUT = 20.0


@dataclass(frozen=True)
class Cell:
    id: str
    kind: str  # "checker", "spin" or "gate"
    workload: str = ""
    reduction: str = ""
    series: str = ""  # cells of one series grow; after one without verdict the rest skip


def cells(quick: bool = False) -> list[Cell]:
    """The matrix's cells in the order they run (each size's cells together, so that
    they see the same load)."""
    out: list[Cell] = []
    kexec = range(2, 5) if quick else range(2, 9)
    for n in kexec:
        name = f"kexec-{n}"
        for r in REDUCTIONS:
            out.append(Cell(f"{name} {r}", "checker", name, r, f"kexec {r}"))
        out.append(Cell(f"{name} {SPIN}", "spin", name, "", f"kexec {SPIN}"))
    others = ["ist-1", "syscall-concrete"] if quick else [
        "ist-1", "ist-2", "ist-3", "syscall-concrete", "syscall-symbolic"]
    for name in others:
        series = name.rsplit("-", 1)[0] if name.startswith("ist-") else name
        out.append(Cell(f"{name} none", "checker", name, "none", f"{series} none"))
        out.append(Cell(f"{name} {SPIN}", "spin", name, "", f"{series} {SPIN}"))
    if not quick:
        out.append(Cell("gate", "gate", series="gate"))
    return out


def _matches(cell: Cell, patterns: Sequence[str]) -> bool:
    return any(p in cell.id or fnmatch.fnmatchcase(cell.id, p) for p in patterns)


def select(all_cells: Sequence[Cell], patterns: Sequence[str],
           exclude: Sequence[str] = ()) -> list[Cell]:
    return [c for c in all_cells
            if (not patterns or _matches(c, patterns)) and not _matches(c, exclude)]


# -- running one cell ---------------------------------------------------------------------


def _row(cell: Cell, **figures: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": cell.id, "kind": cell.kind, "workload": cell.workload,
        "reduction": cell.reduction, "verdict": "error", "note": "", "states": None,
        "transitions": None, "wall_seconds": None, "cpu_seconds": None,
        "search_cpu_seconds": None, "states_per_cpu_second": None, "peak_mib": None,
        "bytes_per_state": None, "timeout": None, "unit": "CPU-s",
    }
    row.update(figures)
    return row


def wall_limit(timeout: float) -> float:
    """Wall-clock seconds behind a cell's CPU timeout (a loaded machine, a stuck child)."""
    return 5 * timeout + 60


def run_checker(cell: Cell, timeout: float, max_memory_gib: float) -> dict[str, Any]:
    options = {"reduction": cell.reduction, "cpu_timeout": timeout,
               "timeout": wall_limit(timeout), "max_memory": int(max_memory_gib * (1 << 30))}
    m = compare_spin.run_measured(
        [sys.executable, str(HERE / "workloads.py"), "--one", cell.workload,
         "--options", json.dumps(options)],
        ROOT, timeout=wall_limit(timeout) + 60, stop_signal=9, grace=0,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    base = {"wall_seconds": round(m.wall_seconds, 3), "cpu_seconds": round(m.cpu_seconds, 3),
            "peak_mib": round(m.peak_kib / 1024, 1), "timeout": timeout}
    if m.timed_out:
        return _row(cell, verdict="incomplete", note="killed; states unknown", **base)
    if m.returncode != 0:
        return _row(cell, note=(m.stderr.strip().splitlines() or ["?"])[-1][:200], **base)
    r = json.loads(m.stdout)
    note = ""
    if r["verdict"] == "incomplete" and r["explore_cpu_seconds"] < 0.98 * timeout:
        note = f"stopped by the wall-clock limit ({wall_limit(timeout):g} s) or memory"
    return _row(
        cell, verdict=r["verdict"], states=r["states"], transitions=r["transitions"],
        note=note,
        search_cpu_seconds=r["explore_cpu_seconds"],
        states_per_cpu_second=r["states_per_cpu_second"],
        bytes_per_state=r["stored_bytes_per_state"], **base,
    )


def run_spin(cell: Cell, timeout: float, max_memory_gib: float,
             cflags: Sequence[str]) -> dict[str, Any]:
    w = workloads.WORKLOADS[cell.workload]
    try:
        r = compare_spin.spin_cell(
            w.design, w.variant, w.environment, w.kind, w.expr, cflags=cflags,
            timeout=wall_limit(timeout), cpu_timeout=timeout,
            memlim_mib=int(max_memory_gib * 1024),
        )
    except compare_spin.Unsupported as exc:
        return _row(cell, verdict="unavailable", note=f"SPIN cannot ask it: {exc}")
    except compare_spin.Missing as exc:
        return _row(cell, verdict="unavailable", note=f"SPIN not run: {exc}")
    search = r["search_cpu_seconds"]
    # pan's nominal states: those stored minus init's atomic set-up steps (when the
    # property holds, the checker's unreduced count plus one)
    states = r["nominal_states"] if r["nominal_states"] is not None else r["states"]
    return _row(
        cell, verdict=r["verdict"], states=states, transitions=r["transitions"],
        wall_seconds=round(r["wall_seconds"], 3), cpu_seconds=round(r["cpu_seconds"], 3),
        search_cpu_seconds=round(search, 3),
        states_per_cpu_second=round(states / search) if states and search else None,
        peak_mib=round(r["peak_kib"] / 1024, 1),
        bytes_per_state=round(r["peak_kib"] * 1024 / states) if states else None,
        note=_spin_note(r, timeout), timeout=timeout,
    )


def _spin_note(r: dict[str, Any], timeout: float) -> str:
    if r["verdict"] in ("holds", "violated"):
        return ""
    if r["timed_out"] and r["search_cpu_seconds"] < 0.98 * timeout:
        return f"stopped by the wall-clock limit ({wall_limit(timeout):g} s)"
    return str(r["message"])


GATE_EXIT = {0: "as expected", 1: "a verdict differs", 2: "bad input", 3: "incomplete",
             130: "interrupted"}


def run_gate(cell: Cell, timeout: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="matrix_gate_") as reports:
        m = compare_spin.run_measured(
            [sys.executable, "-m", "checker", "properties/", "-q", "--report-dir", reports],
            ROOT, timeout=timeout, grace=30, env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
    lines = [line for line in m.stdout.splitlines() if line.strip()]
    verdict = "incomplete" if m.timed_out else GATE_EXIT.get(m.returncode, "error")
    return _row(
        cell, verdict=verdict, note=f"exit {m.returncode}: " + (lines[-1][:160] if lines else ""),
        wall_seconds=round(m.wall_seconds, 3), cpu_seconds=round(m.cpu_seconds, 3),
        peak_mib=round(m.peak_kib / 1024, 1), timeout=timeout, unit="s",
    )


def run_cell(cell: Cell, timeout: float, gate_timeout: float, max_memory_gib: float,
             cflags: Sequence[str]) -> dict[str, Any]:
    if cell.kind == "checker":
        return run_checker(cell, timeout, max_memory_gib)
    if cell.kind == "spin":
        return run_spin(cell, timeout, max_memory_gib, cflags)
    return run_gate(cell, gate_timeout)


# -- the run, its JSON and its tables ------------------------------------------------------


def _git(*args: str) -> str:
    done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
    return done.stdout.strip()


def run(selected: Sequence[Cell], timeout: float, gate_timeout: float, max_memory_gib: float,
        cflags: Sequence[str], skip: bool = True, note: str = "",
        log: Any = sys.stderr, save: Path | None = None) -> dict[str, Any]:
    """Run the cells one after another; with `save`, the JSON is rewritten after every
    cell (marked "partial" until the last), so a run stopped early keeps what it did."""
    load_before = os.getloadavg()[0]
    started = datetime.datetime.now(datetime.UTC)
    spin = None
    try:
        compare_spin.tools()
        spin = compare_spin.spin_version().splitlines()[0]
    except compare_spin.Missing:
        pass
    rows: list[dict[str, Any]] = []
    stuck: dict[str, str] = {}  # series -> the cell that gave no verdict

    def result(partial: bool) -> dict[str, Any]:
        return {
            "commit": _git("rev-parse", "--short", "HEAD") or "unknown",
            "dirty": bool(_git("status", "--porcelain", "--", "checker", "model",
                               "properties", "benchmarks")),
            "date": started.isoformat(timespec="seconds"),
            "cores": os.cpu_count(),
            "load_before": round(load_before, 2),
            "load_after": round(os.getloadavg()[0], 2),
            "timeout": timeout,
            "gate_timeout": gate_timeout,
            "spin": spin,
            "cflags": list(cflags),
            "note": note,
            "partial": partial,
            "cells": rows,
        }

    for cell in selected:
        if skip and cell.series in stuck:
            row = _row(cell, verdict="skipped",
                       note=f"not run: {stuck[cell.series]} gave no verdict")
        else:
            row = run_cell(cell, timeout, gate_timeout, max_memory_gib, cflags)
            if row["verdict"] == "incomplete":
                stuck[cell.series] = cell.id
        rows.append(row)
        print(f"{cell.id:28} {verdict_text(row):28} {_states(row):>12} states "
              f"{_num(row['cpu_seconds']):>8} CPU-s", file=log, flush=True)
        if save is not None:
            save.write_text(json.dumps(result(len(rows) < len(selected)), indent=1) + "\n")
    return result(False)


def _num(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.2f}" if v < 10 else f"{v:.1f}" if v < 100 else f"{v:,.0f}"


def _int(v: int | None) -> str:
    return "-" if v is None else f"{v:,}"


def _states(row: dict[str, Any]) -> str:
    return _int(row.get("states"))


def verdict_text(row: dict[str, Any]) -> str:
    v = row["verdict"]
    if v == "incomplete" and row.get("timeout"):
        text = f"no verdict in {row['timeout']:g} {row.get('unit', 's')}"
        return text + (f" ({row['note']})" if row.get("note") else "")
    if v in ("skipped", "unavailable", "error"):
        return str(row.get("note") or v)
    return str(v)


def _ratio(old: float | None, new: float | None) -> str:
    if not old or not new:
        return "-"
    r = old / new
    return f"{r:.1f}x" if r < 10 else f"{r:.0f}x"


def _speedup(old: dict[str, Any], new: dict[str, Any]) -> str:
    """Old CPU seconds / new ones when both reached the same verdict; when neither reached
    one, the ratio of their search rates (states per CPU-second), marked so."""
    decided = ("holds", "violated")
    if old["verdict"] == new["verdict"] and new["verdict"] in decided:
        return _ratio(old["cpu_seconds"], new["cpu_seconds"])
    if old["verdict"] == new["verdict"] == "incomplete":
        rate = _ratio(new["states_per_cpu_second"], old["states_per_cpu_second"])
        return "-" if rate == "-" else f"{rate} (rate)"
    return "-"


def table(result: dict[str, Any], before: dict[str, Any] | None = None) -> str:
    """One row per cell; with `before`, that run's figures beside them."""
    head = ["cell", "verdict", "states", "wall s", "CPU s", "search CPU s", "states/CPU-s",
            "peak MiB", "bytes/state"]
    old_cells: dict[str, dict[str, Any]] = {}
    if before is not None:
        old_cells = {c["id"]: c for c in before["cells"]}
        tag = before["commit"]
        head += [f"at {tag}: verdict", f"at {tag}: states", f"at {tag}: CPU s",
                 f"at {tag}: states/CPU-s", f"speed-up (CPU s {tag} / {result['commit']})"]
    lines = ["| " + " | ".join(head) + " |",
             "|---|---|" + "---:|" * (len(head) - 2)]
    skipped = [r["id"] for r in result["cells"] if r["verdict"] == "skipped"]
    for r in result["cells"]:
        if r["verdict"] == "skipped":
            continue
        cols = [r["id"], verdict_text(r), _states(r), _num(r["wall_seconds"]),
                _num(r["cpu_seconds"]), _num(r["search_cpu_seconds"]),
                _int(r["states_per_cpu_second"]), _num(r["peak_mib"]),
                _int(r["bytes_per_state"])]
        if before is not None:
            o = old_cells.get(r["id"])
            if o is None:
                cols += ["not measured", "", "", "", ""]
            else:
                cols += [verdict_text(o), _states(o), _num(o["cpu_seconds"]),
                         _int(o["states_per_cpu_second"]),
                         _speedup(o, r)]
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cols) + " |")
    if skipped:
        lines += ["", "Not run (a smaller cell of their series gave no verdict): "
                  + ", ".join(skipped) + "."]
    return "\n".join(lines)


def _brief(row: dict[str, Any] | None) -> str:
    if row is None:
        return "-"
    if row["verdict"] in ("holds", "violated"):
        return f"{_num(row['cpu_seconds'])} s ({_states(row)})"
    if row["verdict"] == "incomplete":
        return f">{row['timeout']:g} {row.get('unit', 's')} ({_states(row)}+)"
    return str(row["verdict"])


def kexec_table(result: dict[str, Any], before: dict[str, Any] | None = None) -> str:
    """kexec side by side: CPU seconds to a verdict (states) per reduction and SPIN; with
    `before`, the earlier figure after a slash."""
    by_id = {c["id"]: c for c in result["cells"]}
    old = {c["id"]: c for c in before["cells"]} if before is not None else {}
    kinds = [*REDUCTIONS, SPIN]
    sizes = sorted({int(c["workload"].split("-")[1]) for c in result["cells"]
                    if c["workload"].startswith("kexec-")})
    if not sizes:
        return ""
    head = ["CPUs", *(f"{k} (cflags {' '.join(result['cflags'])})" if k == SPIN else k
                      for k in kinds)]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for n in sizes:
        cols = [str(n)]
        for k in kinds:
            cell_id = f"kexec-{n} {k}"
            text = _brief(by_id.get(cell_id))
            if before is not None:
                text += f" / {_brief(old.get(cell_id))}"
            cols.append(text)
        lines.append("| " + " | ".join(cols) + " |")
    return "\n".join(lines)


def markdown(result: dict[str, Any], before: dict[str, Any] | None = None,
             command: str = "") -> str:
    when = result["date"][:10]
    gates = [c for c in result["cells"] if c["kind"] == "gate"]
    dirty = " (with uncommitted changes)" if result["dirty"] else ""
    parts = [
        f"### Benchmark matrix at {result['commit']}{dirty}, {when}",
        "",
        (f"`{command}`: " if command else "")
        + f"{result['cores']} cores, load average {result['load_before']:.2f} before and "
        f"{result['load_after']:.2f} after; cell timeout {result['timeout']:g} CPU-s"
        + (f", gate timeout {result['gate_timeout']:g} s" if gates else "")
        + f"; SPIN: {result['spin'] or 'not installed'}."
        + (f" {result['note']}" if result["note"] else ""),
    ]
    k = kexec_table(result, before)
    if k:
        parts += ["", "kexec, CPU seconds of the whole process to a verdict (states)"
                  + (f"; after the slash at {before['commit']}" if before else "") + ":",
                  "", k]
    parts += ["", "Every cell" + (f", beside {before['commit']}'s figures" if before else "")
              + ":", "", table(result, before)]
    for g in gates:
        parts += ["", f"The gate ({g['id']}): {g['note']}"]
    return "\n".join(parts) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--only", action="append", default=[], metavar="PATTERN",
                    help="run only cells whose id contains PATTERN or matches it as a glob "
                    "(repeatable): kexec, 'kexec-4 *', SPIN, gate, symbolic")
    ap.add_argument("--exclude", action="append", default=[], metavar="PATTERN",
                    help="leave out the cells --only would match with PATTERN (repeatable)")
    ap.add_argument("--quick", action="store_true",
                    help=f"kexec-2..4, ist-1 and syscall-concrete, no gate, timeout "
                    f"{QUICK_TIMEOUT:g} s")
    ap.add_argument("--list", action="store_true", help="list the selected cells and stop")
    ap.add_argument("--timeout", type=float, default=None,
                    help=f"CPU seconds of search per cell (default {CELL_TIMEOUT:g}; "
                    f"--quick {QUICK_TIMEOUT:g})")
    ap.add_argument("--gate-timeout", type=float, default=GATE_TIMEOUT,
                    help=f"wall-clock seconds for the gate (default {GATE_TIMEOUT:g})")
    ap.add_argument("--max-memory-gib", type=float, default=6.0,
                    help="stop a search holding this much memory (default 6)")
    ap.add_argument("--cflags", default="-O0", help="gcc flags for pan.c (default -O0)")
    ap.add_argument("--no-skip", action="store_true",
                    help="run every cell, also after a smaller one of its series timed out")
    ap.add_argument("--note", default="", help="a sentence for the table's heading")
    ap.add_argument("--json", type=Path, help="save every figure here")
    ap.add_argument("--compare", type=Path, metavar="OLD.json",
                    help="an earlier run's --json, shown beside this run")
    ap.add_argument("--show", type=Path, metavar="RUN.json",
                    help="run nothing: print (or append with --results) a saved run's tables")
    ap.add_argument("--markdown", action="store_true", help="print the tables")
    ap.add_argument("--results", type=Path, help="append the tables to this file")
    args = ap.parse_args(argv)

    before = json.loads(args.compare.read_text()) if args.compare else None
    if args.show:
        text = markdown(json.loads(args.show.read_text()), before)
        if args.results:
            with args.results.open("a") as f:
                f.write("\n" + text)
        else:
            print(text)
        return 0
    selected = select(cells(args.quick), args.only, args.exclude)
    if not selected:
        print("matrix: no cell matches " + ", ".join(args.only), file=sys.stderr)
        return 2
    if args.list:
        print("\n".join(c.id for c in selected))
        return 0
    timeout = args.timeout or (QUICK_TIMEOUT if args.quick else CELL_TIMEOUT)
    result = run(selected, timeout, args.gate_timeout, args.max_memory_gib,
                 args.cflags.split(), skip=not args.no_skip, note=args.note, save=args.json)
    command = shlex.join(["python", "benchmarks/matrix.py",
                          *(argv if argv is not None else sys.argv[1:])])
    text = markdown(result, before, command.strip())
    if args.markdown or not (args.json or args.results):
        print(text)
    if args.results:
        with args.results.open("a") as f:
            f.write("\n" + text)
    bad = [c for c in result["cells"] if c["verdict"] in ("error", "a verdict differs")]
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
