"""Side by side with SPIN: the same questions, the same verdicts, states and times.

    .venv/bin/python benchmarks/compare_spin.py [--only PATTERN ...] [--cflags "-O2"]
                                               [--json FILE] [--results FILE] [--keep DIR]

For each question (a property of properties/*.toml, optionally on another number of CPUs)
the script

1. runs this checker on it (a subprocess running the Python API: `checker.spec` loads the
   property, `checker.run.check` explores), and
2. translates the property's variant and environment into `-D` flags for the Promela
   translation of its design (benchmarks/spin/kexec.pml or ist.pml), runs `spin -a`, then
   compiles pan.c with gcc twice, once with -DBFS (breadth-first, shortest counterexample)
   and once without (SPIN's default depth-first search), and runs both with the claim of
   the property (`pan -N never_...`),

and prints one table: verdicts, states (checker distinct states; pan's "states, stored"),
shortest counterexample length (checker trace vs the CPU steps of pan -DBFS's trail),
times (checker: process total and exploration only; SPIN: spin + gcc + pan, and pan
only) and the time ratios. It exits 1 when any verdict differs (checker, SPIN BFS, SPIN
DFS, or the property's `expect`), 2 when spin or gcc is missing or a question cannot be
translated. Generated files live in a temporary directory (kept with --keep DIR).

pan's "states, stored" with -DBFS also counts the states inside `init`'s atomic set-up
(pan prints them as "atomic steps"); "nominal states" excludes them, and the Promela
translations add exactly one state to the checker's (the state before `init` picked the
initial states), so when a property holds, nominal - 1 equals the checker's count: the
`same space` column says so (unless the design is `symmetric`: the checker then counts
one state per orbit of CPU renumberings, SPIN every state). A violated search stops at
the first counterexample, and how many states it stored by then depends on each tool's
order.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SPIN_DIR = Path(__file__).resolve().parent / "spin"

# Which Promela file translates which design, and its claims by property expression.
MODELS = {"xen_kexec": "kexec.pml", "xen_ist": "ist.pml"}
CLAIMS = {
    ("never", "timed_out"): "never_timed_out",
    ("never", "frame_clobbered"): "never_frame_clobbered",
}


@dataclasses.dataclass(frozen=True)
class Question:
    file: str  # property file, relative to the repository
    prop: str  # property name
    cpus: int | None = None  # override environment.cpus (per-CPU lists are resized)

    @property
    def label(self) -> str:
        stem = Path(self.file).stem
        return f"{stem}:{self.prop}" + (f" ({self.cpus} CPUs)" if self.cpus else "")


QUESTIONS = (
    Question("properties/kexec_crash.toml", "v1-shootdown-waits-full-timeout"),
    Question("properties/kexec_crash.toml", "v1-fixed-all-cpus-acknowledge", cpus=2),
    Question("properties/kexec_crash.toml", "v1-fixed-all-cpus-acknowledge", cpus=3),
    Question("properties/kexec_crash.toml", "v1-fixed-all-cpus-acknowledge", cpus=4),
    Question("properties/ist_reentrancy.toml", "fake-nmi-then-real-nmi-clobbers"),
    Question("properties/ist_reentrancy.toml", "real-nmi-nesting-is-latched"),
    Question("properties/ist_reentrancy.toml", "iret-inside-nmi-unblocks-nesting"),
    Question("properties/ist_reentrancy.toml", "mce-during-nmi-separate-stacks"),
)


class Unsupported(Exception):
    """The question uses something the Promela translation does not model."""


class Missing(Exception):
    """spin or gcc is not installed."""


# -- the question as both tools see it --------------------------------------------------------


def resize(values: Sequence[int], n: int) -> list[int]:
    """A per-CPU budget list for n CPUs: CPUs past the list's end get its last entry (the
    CPUs other than 0 and 1 are interchangeable in kexec_crash.toml's lists)."""
    values = list(values)
    return values[:n] if len(values) >= n else values + [values[-1]] * (n - len(values))


def load_property(q: Question) -> Any:
    """The checker's Property (design, variant, environment merged), with the CPU override."""
    sys.path.insert(0, str(REPO))
    from checker.spec import read_property_file

    pf = read_property_file(REPO / q.file)
    matches = [p for p in pf.properties if p.name == q.prop]
    if not matches:
        raise Unsupported(f"{q.file} has no property {q.prop!r}")
    prop = matches[0]
    if q.cpus is not None:
        env = dict(prop.environment)
        env["cpus"] = q.cpus
        for key in ("nmi", "mce", "external", "double_faults"):
            if isinstance(env.get(key), list):
                env[key] = resize(env[key], q.cpus)
        prop = dataclasses.replace(prop, environment=env)
    return prop


def promela_flags(design: str, variant: Mapping[str, str], env: Mapping[str, Any]) -> list[str]:
    """The -D flags that make the Promela translation ask the property's question."""
    flags: list[str] = []
    if design == "xen_kexec":
        patch = variant.get("patch", "patch-v1-fixed")
        if patch not in ("patch-v1", "patch-v1-fixed"):
            raise Unsupported(f"kexec.pml translates patch-v1 and patch-v1-fixed, not {patch}")
        flags.append("-DPATCH_V1" if patch == "patch-v1" else "-DPATCH_V1_FIXED")
        crash_from = variant.get("crash_from", "any")
        if crash_from == "panic":
            flags.append("-DCRASH_FROM_PANIC")
        elif crash_from == "watchdog":
            flags.append("-DCRASH_FROM_WATCHDOG")
        ncpu = int(env.get("cpus", 3))
        flags.append(f"-DNCPU={ncpu}")
        for key in env:
            if key not in ("cpus", "nmi", "mce"):
                raise Unsupported(f"kexec.pml has no environment.{key}")
        for key, macro in (("nmi", "NMI"), ("mce", "MCE")):
            value = env.get(key, 0)
            budgets = resize(value, ncpu) if isinstance(value, list) else [value] * ncpu
            others = budgets[2:]
            if len(set(others)) > 1:
                raise Unsupported(f"kexec.pml gives CPUs 2.. one {key} budget, not {others}")
            flags += [
                f"-D{macro}_CPU0={budgets[0]}",
                f"-D{macro}_CPU1={budgets[1] if ncpu > 1 else 0}",
                f"-D{macro}_OTHERS={others[0] if others else 0}",
            ]
        return flags
    if design == "xen_ist":
        ist = variant.get("ist", "xen")
        flags.append({"xen": "-DIST_XEN", "shared": "-DIST_SHARED", "none": "-DIST_NONE"}[ist])
        context = variant.get("context", "both")
        flags.append(
            {"both": "-DCONTEXT_BOTH", "xen": "-DCONTEXT_XEN", "guest": "-DCONTEXT_GUEST"}[context]
        )
        for key, value in env.items():
            if key in ("nmi", "mce", "external", "faults"):
                if not isinstance(value, int):
                    raise Unsupported(f"ist.pml takes one environment.{key} budget")
                flags.append(f"-D{key.upper()}={value}")
            elif key == "external_vectors":
                if len(value) > 1 or (value and value[0] not in (2, 18)):
                    raise Unsupported("ist.pml takes one external vector, 2 or 18")
                if value:
                    flags.append(f"-DEXT_VECTOR={value[0]}")
            elif key == "pic":
                if value:
                    flags.append("-DPIC")
            elif key == "cpus" and value == 1:
                pass
            else:
                raise Unsupported(f"ist.pml has no environment.{key} = {value!r}")
        return flags
    raise Unsupported(f"no Promela translation of design {design}")


def claim_of(prop: Any) -> str:
    key = (str(prop.kind), prop.expr.source.strip() if prop.expr is not None else "")
    if key not in CLAIMS:
        raise Unsupported(f"no Promela claim for {key[0]} {key[1]!r}")
    return CLAIMS[key]


# -- the checker ----------------------------------------------------------------------------


def checker_python() -> str:
    venv = REPO / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


REDUCTIONS = {"none": {}, "symmetry": {"symmetry": True}, "por": {"por": True},
              "symmetry+por": {"symmetry": True, "por": True}}


def checker_one(
    file: str, prop_name: str, cpus: int | None, reduction: str = "none"
) -> dict[str, Any]:
    """Run inside the child process: load and check one question, return the numbers."""
    os.chdir(REPO)
    sys.path.insert(0, str(REPO))
    from checker.explore import Options
    from checker.run import check
    from checker.spec import group_properties, load_group
    from model.system.provider import DesignProvider

    started = time.perf_counter()
    prop = load_property(Question(file, prop_name, cpus))
    loaded = load_group(group_properties([prop])[0], DesignProvider())
    run = check([loaded], [prop], options=Options(workers=1, **REDUCTIONS[reduction]))
    result = run.results[0]
    return {
        "verdict": str(result.verdict),
        "expected": str(prop.expect),
        "states": result.stats.states,
        "transitions": result.stats.transitions,
        "depth": result.stats.depth,
        "explore_seconds": result.stats.seconds,
        "load_and_check_seconds": time.perf_counter() - started,
        "trace_length": result.trace.length if result.trace is not None else None,
        # a reduced exploration counts fewer states than SPIN stores
        "symmetric": bool(result.stats.reduced or result.stats.por),
    }


def run_checker(q: Question, reduction: str = "none") -> dict[str, Any]:
    args = [
        checker_python(), str(Path(__file__).resolve()), "--checker-one", q.file, q.prop,
        "--reduction", reduction,
    ]
    if q.cpus is not None:
        args += ["--cpus", str(q.cpus)]
    started = time.perf_counter()
    done = subprocess.run(args, cwd=REPO, capture_output=True, text=True)
    total = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"checker failed on {q.label}:\n{done.stderr}")
    out: dict[str, Any] = json.loads(done.stdout)
    out["total_seconds"] = total
    return out


# -- SPIN -------------------------------------------------------------------------------------


def tools() -> dict[str, str]:
    found = {name: shutil.which(name) for name in ("spin", "gcc")}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        raise Missing(
            "missing " + " and ".join(missing) + ": install with "
            "`apt-get update && apt-get install -y spin gcc` (Debian packages)"
        )
    return {k: v for k, v in found.items() if v is not None}


def spin_version() -> str:
    done = subprocess.run(["spin", "-V"], capture_output=True, text=True)
    return done.stdout.strip()


def _timed(args: Sequence[str], cwd: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.perf_counter()
    done = subprocess.run(list(args), cwd=cwd, capture_output=True, text=True)
    return done, time.perf_counter() - started


# pan prints counts of a million and more with %g ("1.23457e+06 states, stored"): six
# significant digits
_NUM = r"(\d+(?:\.\d+)?(?:e[+-]?\d+)?)"


def _number(pattern: str, text: str) -> int | None:
    m = re.search(pattern.replace(r"(\d+)", _NUM), text)
    return round(float(m.group(1))) if m else None


def trail_steps(trail: Path) -> int | None:
    """CPU steps in a pan trail: each line is step:pid:transition; `init`'s atomic set-up
    comes first (the pid of the first step) and is not counted."""
    if not trail.exists():
        return None
    init_pid: str | None = None
    steps = 0
    for line in trail.read_text().splitlines():
        parts = line.split(":")
        if len(parts) != 3 or parts[0].startswith("-"):
            continue
        if init_pid is None:
            init_pid = parts[1]
        if parts[1] != init_pid:
            steps += 1
    return steps


def parse_pan(out: str, claim: str) -> dict[str, Any]:
    """Verdict and numbers from pan's output."""
    errors = _number(r"errors: (\d+)", out) or 0
    stored = _number(r"(\d+) states, stored", out)
    nominal = _number(r"(\d+) nominal states", out)
    atomic = _number(r"(\d+) atomic steps", out)
    transitions = _number(r"(\d+) transitions", out)
    depth = _number(r"depth reached (\d+)", out)
    m = re.search(r"elapsed time ([\d.e+-]+) seconds", out)
    pan_seconds = float(m.group(1)) if m else None
    message = ""
    m = re.search(r"^pan:1: (.*)$", out, re.M)
    if m:
        message = m.group(1)
    if errors:
        if "model_ok" in message:
            verdict = "error"  # a situation the translation does not model (x86.pml CHECK)
        elif "claim violated" in message or "assertion violated  !( !(" in message:
            verdict = "violated"
        else:
            verdict = "error"
    elif "max search depth too small" in out or "out of memory" in out:
        verdict = "incomplete"
    else:
        verdict = "holds"
    return {
        "verdict": verdict,
        "message": message,
        "stored": stored,
        "nominal": nominal if nominal is not None else (
            stored - atomic if stored is not None and atomic else stored),
        "transitions": transitions,
        "depth": depth,
        "pan_seconds": pan_seconds,
        "claim": claim,
    }


def run_spin(
    model: str, flags: Sequence[str], claim: str, work: Path, cflags: Sequence[str],
    depth_limit: int = 1_000_000,
) -> dict[str, Any]:
    """spin -a once, then gcc + pan in BFS and in DFS mode."""
    for pml in SPIN_DIR.glob("*.pml"):
        shutil.copy(pml, work / pml.name)
    done, spin_seconds = _timed(["spin", "-a", *flags, model], work)
    if done.returncode != 0 or not (work / "pan.c").exists():
        raise RuntimeError(f"spin -a {' '.join(flags)} {model} failed:\n{done.stdout}{done.stderr}")
    out: dict[str, Any] = {"spin_seconds": spin_seconds, "flags": list(flags)}
    for mode, extra in (("bfs", ["-DBFS"]), ("dfs", [])):
        exe = f"pan_{mode}"
        done, gcc_seconds = _timed(["gcc", *cflags, "-w", *extra, "-o", exe, "pan.c"], work)
        if done.returncode != 0:
            raise RuntimeError(f"gcc failed:\n{done.stderr[-2000:]}")
        trail = work / f"{model}.trail"
        trail.unlink(missing_ok=True)
        args = [f"./{exe}", "-N", claim]
        if mode == "dfs":
            args.append(f"-m{depth_limit}")
        done, run_seconds = _timed(args, work)
        text = done.stdout + done.stderr
        result = parse_pan(text, claim)
        result.update(
            gcc_seconds=gcc_seconds,
            run_seconds=run_seconds,
            total_seconds=spin_seconds + gcc_seconds + run_seconds,
            trail_steps=trail_steps(trail) if result["verdict"] == "violated" else None,
            output=text,
        )
        out[mode] = result
    return out


# -- measured processes (benchmarks/matrix.py) ------------------------------------------------


@dataclasses.dataclass
class Measured:
    """One finished child process: its output and what the kernel counted for it."""

    returncode: int
    stdout: str
    stderr: str
    wall_seconds: float
    cpu_seconds: float  # user + system, the child's own (os.wait4)
    peak_kib: int  # the child's peak resident set (ru_maxrss)
    timed_out: bool  # it was still running at the timeout and was stopped


def run_measured(
    args: Sequence[str], cwd: Path, timeout: float | None = None, stop_signal: int = 2,
    grace: float = 15.0, env: Mapping[str, str] | None = None,
    cpu_timeout: float | None = None,
) -> Measured:
    """Run `args` and measure it with os.wait4. At `timeout` seconds of wall clock, or
    `cpu_timeout` seconds of the child's own CPU time (Linux /proc), the child gets
    `stop_signal` (SIGINT by default: pan and the checker's CLI print what they reached
    and stop); `grace` seconds later it is killed."""
    import signal

    tick = os.sysconf("SC_CLK_TCK")

    def cpu_of(pid: int) -> float:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return 0.0
        return (int(fields[11]) + int(fields[12])) / tick  # utime + stime

    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(list(args), cwd=cwd, stdout=out, stderr=err,
                                env=dict(env) if env is not None else None)
        deadline = None if timeout is None else started + timeout
        timed_out = False
        status = 0
        usage = None
        while usage is None:
            pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                usage = ru
                break
            now = time.perf_counter()
            if cpu_timeout is not None and not timed_out and cpu_of(proc.pid) >= cpu_timeout:
                deadline = now
            if deadline is not None and now >= deadline:
                if not timed_out:
                    timed_out = True
                    # os.kill, not send_signal, which polls: reaping here would lose
                    # the rusage (an unreaped child keeps its pid)
                    os.kill(proc.pid, stop_signal)
                    deadline = now + grace
                else:
                    os.kill(proc.pid, signal.SIGKILL)
                    deadline = None
            time.sleep(0.02)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Measured(
            proc.returncode, out.read(), err.read(), wall, usage.ru_utime + usage.ru_stime,
            usage.ru_maxrss, timed_out,
        )


def spin_cell(
    design: str, variant: Mapping[str, str], env: Mapping[str, Any], kind: str, expr: str,
    cflags: Sequence[str] = ("-O0",), timeout: float | None = None, memlim_mib: int = 4096,
    cpu_timeout: float | None = None,
) -> dict[str, Any]:
    """SPIN on one question as benchmarks/matrix.py measures it: spin -a, gcc -DBFS, pan
    (breadth-first, as the checker searches), each a measured process; pan is stopped with
    SIGINT at `timeout` (it prints the states it stored) and bounded by -DMEMLIM. Raises
    Unsupported when the Promela translation cannot ask the question, Missing without
    spin or gcc."""
    model = MODELS.get(design)
    if model is None:
        raise Unsupported(f"no Promela translation of design {design}")
    flags = promela_flags(design, variant, env)
    claim = CLAIMS.get((kind, expr.strip()))
    if claim is None:
        raise Unsupported(f"no Promela claim for {kind} {expr!r}")
    tools()
    with tempfile.TemporaryDirectory(prefix="spin_cell_") as tmp:
        work = Path(tmp)
        for pml in SPIN_DIR.glob("*.pml"):
            shutil.copy(pml, work / pml.name)
        spin = run_measured(["spin", "-a", *flags, model], work)
        if spin.returncode != 0 or not (work / "pan.c").exists():
            raise RuntimeError(f"spin -a {' '.join(flags)} {model} failed:\n{spin.stdout}")
        gcc = run_measured(
            ["gcc", *cflags, "-w", "-DBFS", f"-DMEMLIM={memlim_mib}", "-o", "pan", "pan.c"], work
        )
        if gcc.returncode != 0:
            raise RuntimeError(f"gcc failed:\n{gcc.stderr[-2000:]}")
        pan = run_measured(["./pan", "-N", claim], work, timeout=timeout,
                           cpu_timeout=cpu_timeout)
    text = pan.stdout + pan.stderr
    parsed = parse_pan(text, claim)
    if pan.timed_out:
        parsed["verdict"] = "incomplete"
    elif "MEMLIM" in text or "out of memory" in text:
        parsed["verdict"] = "incomplete"
        parsed["message"] = f"pan reached -DMEMLIM={memlim_mib} (MiB)"
    return {
        "verdict": parsed["verdict"],
        "message": parsed["message"],
        "states": parsed["stored"],
        "nominal_states": parsed["nominal"],
        "transitions": parsed["transitions"],
        "depth": parsed["depth"],
        "timed_out": pan.timed_out,
        "wall_seconds": spin.wall_seconds + gcc.wall_seconds + pan.wall_seconds,
        "cpu_seconds": spin.cpu_seconds + gcc.cpu_seconds + pan.cpu_seconds,
        "search_cpu_seconds": pan.cpu_seconds,
        "compile_cpu_seconds": spin.cpu_seconds + gcc.cpu_seconds,
        "peak_kib": pan.peak_kib,
        "flags": [*flags, *cflags, "-DBFS"],
        "claim": claim,
    }


# -- one comparison -------------------------------------------------------------------------


@dataclasses.dataclass
class Row:
    question: Question
    expected: str
    checker: dict[str, Any]
    spin: dict[str, Any]

    @property
    def verdicts(self) -> tuple[str, str, str]:
        return self.checker["verdict"], self.spin["bfs"]["verdict"], self.spin["dfs"]["verdict"]

    @property
    def agree(self) -> bool:
        c, b, d = self.verdicts
        return c == b == d == self.expected

    @property
    def same_space(self) -> bool | None:
        """When the property holds, both explored everything: do the counts match?"""
        if self.verdicts != ("holds", "holds", "holds") or self.checker.get("symmetric"):
            return None
        nominal = self.spin["bfs"]["nominal"]
        return nominal is not None and nominal - 1 == self.checker["states"]


def compare(
    q: Question, cflags: Sequence[str] = ("-O2",), keep: Path | None = None,
    reduction: str = "none",
) -> Row:
    prop = load_property(q)
    model = MODELS.get(prop.design)
    if model is None:
        raise Unsupported(f"no Promela translation of design {prop.design}")
    flags = promela_flags(prop.design, prop.variant, prop.environment)
    claim = claim_of(prop)
    checker = run_checker(q, reduction)
    if keep is not None:
        work = keep / re.sub(r"[^A-Za-z0-9_.-]+", "_", q.label)
        work.mkdir(parents=True, exist_ok=True)
        spin = run_spin(model, flags, claim, work, cflags)
    else:
        with tempfile.TemporaryDirectory(prefix="compare_spin_") as tmp:
            spin = run_spin(model, flags, claim, Path(tmp), cflags)
    return Row(q, str(prop.expect), checker, spin)


# -- the table --------------------------------------------------------------------------------


def _n(v: int | None) -> str:
    return "-" if v is None else f"{v:,}"


def _s(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.2f}" if v < 10 else f"{v:.1f}"


def _ratio(a: float | None, b: float | None) -> str:
    """checker time / SPIN time: above 1, SPIN was faster."""
    if not a or not b:
        return "-"
    r = a / b
    return f"{r:.0f}x" if r >= 10 else f"{r:.1f}x" if r >= 1 else f"{r:.2f}x"


HEADER = (
    "| question | verdict: checker / SPIN BFS / SPIN DFS | states: checker / BFS stored "
    "(nominal) / DFS stored | same space | shortest cex: checker / BFS | checker s: total "
    "(explore) | SPIN BFS s: spin+gcc+pan (pan) | SPIN DFS s: spin+gcc+pan (pan) | "
    "ratio checker/SPIN BFS: total (run) |"
)


def table(rows: Sequence[Row]) -> str:
    lines = [HEADER, "|" + "---|" * HEADER.count(" |")]
    for r in rows:
        c, b, d = r.checker, r.spin["bfs"], r.spin["dfs"]
        mark = "" if r.agree else " **DISAGREE**"
        same = {None: "-", True: "yes", False: "**no**"}[r.same_space]
        if r.checker.get("symmetric") and r.same_space is None and "violated" not in r.verdicts:
            same = "(reduced)"
        lines.append(
            f"| {r.question.label} | {c['verdict']} / {b['verdict']} / {d['verdict']}{mark} "
            f"| {_n(c['states'])} / {_n(b['stored'])} ({_n(b['nominal'])}) / {_n(d['stored'])} "
            f"| {same} "
            f"| {_n(c['trace_length'])} / {_n(b['trail_steps'])} "
            f"| {_s(c['total_seconds'])} ({_s(c['explore_seconds'])}) "
            f"| {_s(b['total_seconds'])} ({_s(b['run_seconds'])}) "
            f"| {_s(d['total_seconds'])} ({_s(d['run_seconds'])}) "
            f"| {_ratio(c['total_seconds'], b['total_seconds'])} "
            f"({_ratio(c['explore_seconds'], b['run_seconds'])}) |"
        )
    return "\n".join(lines)


def machine_note(load_before: tuple[float, ...], load_after: tuple[float, ...],
                 cflags: Sequence[str]) -> str:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip() or "unknown"
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", "model", "properties", "benchmarks/spin"],
        cwd=REPO, capture_output=True, text=True,
    ).stdout.strip()
    changes = " (with uncommitted changes to model/, properties/ or benchmarks/spin/)"
    return (
        f"Commit {commit}{changes if dirty else ''}, "
        f"{datetime.date.today().isoformat()}; {spin_version()}; "
        f"gcc {' '.join(cflags)}; {os.cpu_count()} cores; load average "
        f"{load_before[0]:.2f} before, {load_after[0]:.2f} after (other jobs were running)."
    )


def write_results(path: Path, body: str, tag: str) -> None:
    """Replace the table between this tag's markers in the `## Checker vs SPIN` section of
    RESULTS.md (adding the section, or the block at the section's end, when missing);
    nothing else in the file changes. `tag` is the gcc flags: one block per flag set."""
    heading = "## Checker vs SPIN"
    begin = f"<!-- compare_spin.py {tag}: begin -->"
    end = f"<!-- compare_spin.py {tag}: end -->"
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    block = f"{begin}\n{body.rstrip()}\n{end}"
    start = text.find(heading + "\n")
    if start < 0:
        text = text.rstrip() + f"\n\n{heading}\n\n{block}\n"
    else:
        nxt = text.find("\n## ", start + len(heading))
        end_of_section = nxt if nxt >= 0 else len(text)
        section = text[start:end_of_section]
        if begin in section and end in section:
            a = section.index(begin)
            b = section.index(end) + len(end)
            section = section[:a] + block + section[b:]
        else:
            section = section.rstrip() + f"\n\n{block}\n"
        text = text[:start] + section + text[end_of_section:]
    path.write_text(text)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", nargs="*", default=[], help="glob patterns over question labels")
    ap.add_argument("--cflags", default="-O2", help="gcc flags for pan.c (default -O2)")
    ap.add_argument("--json", type=Path, help="write every number (and pan's output) here")
    ap.add_argument("--results", type=Path,
                    help="rewrite the table in the '## Checker vs SPIN' section of this file")
    ap.add_argument("--keep", type=Path, help="keep the generated pan.c and binaries here")
    ap.add_argument("--checker-one", nargs=2, metavar=("FILE", "PROPERTY"), help=argparse.SUPPRESS)
    ap.add_argument("--cpus", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--reduction", choices=sorted(REDUCTIONS), default="none",
                    help="the checker's reduction (default none: the same state space as SPIN)")
    args = ap.parse_args(argv)

    if args.checker_one:
        print(json.dumps(
            checker_one(args.checker_one[0], args.checker_one[1], args.cpus, args.reduction)
        ))
        return 0

    try:
        tools()
    except Missing as exc:
        print(f"compare_spin: {exc}", file=sys.stderr)
        return 2
    questions = [
        q for q in QUESTIONS
        if not args.only or any(fnmatch.fnmatchcase(q.label, p) for p in args.only)
    ]
    cflags = args.cflags.split()
    load_before = os.getloadavg()
    rows: list[Row] = []
    for q in questions:
        print(f"... {q.label}", file=sys.stderr, flush=True)
        try:
            rows.append(compare(q, cflags, args.keep, args.reduction))
        except Unsupported as exc:
            print(f"compare_spin: {q.label}: {exc}", file=sys.stderr)
            return 2
    load_after = os.getloadavg()
    note = machine_note(load_before, load_after, cflags)
    print(table(rows))
    print()
    print(note)
    bad = [r for r in rows if not r.agree]
    for r in bad:
        c, b, d = r.verdicts
        print(f"DISAGREE: {r.question.label}: expected {r.expected}, checker {c}, "
              f"SPIN BFS {b} ({r.spin['bfs']['message']}), SPIN DFS {d} "
              f"({r.spin['dfs']['message']})", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps(
            {"note": note, "rows": [
                {"question": dataclasses.asdict(r.question), "label": r.question.label,
                 "expected": r.expected, "checker": r.checker, "spin": r.spin,
                 "agree": r.agree, "same_space": r.same_space} for r in rows]},
            indent=2))
    if args.results:
        tag = " ".join(cflags) + ("" if args.reduction == "none" else f" {args.reduction}")
        note += "" if args.reduction == "none" else f" Checker reduction: {args.reduction}."
        write_results(args.results, table(rows) + "\n\n" + note + "\n", tag)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
