"""Mutation testing of the shipped property suite (issue 13, must-have 6).

Each mutant is a one-line change of a shipped design (model/designs/*.design), the kind of
slip a real patch makes:

  drop     drop one instruction (an assembler line, or one pseudo-C statement)
  swap     swap two adjacent instructions (or two adjacent pseudo-C statements)
  iret     `iretq` becomes `ud2`
  no-ist   remove an IST: the `ist N` of a gate, or a TSS's `ist N stack` line
  flip     flip a condition: a jcc/setcc/cmovcc to its negation, a pseudo-C comparison
           (`==`/`!=`, `<`/`>=`, `>`/`<=`) or `if (x)`/`if (!x)`
  const    change a constant: `const X = N`, an immediate `$N`, or a pseudo-C literal, to N+1

and is checked against the shipped properties on that design only (the property files in
properties/ whose design it is), through the command line, with the mutated design found
first by `--design-path`. Outcomes:

  killed      some property's verdict differs from its expectation (exit 1), or is `error`
  survived    every property still meets its expectation (exit 0)
  equivalent  survived, and the mutant provably changes nothing the properties explore: the
              mutated lines were never reached by an exploration of the unmutated design
              that visited every reachable state; or listed in EQUIVALENT with the argument
  timeout     the per-mutant timeout (or an `incomplete` verdict) ended the check
  stillborn   the mutant is not a valid design (exit 2 before exploring): not a mutant

Mutants are sampled with a fixed seed (`--seed`, `--per-design`); the same arguments give
the same mutants. Every check runs under `nice` and a per-mutant wall-clock timeout; with
`--por` (the default where the unmutated design gives the same verdicts with it, which the
baseline checks) the explorations are partial-order reduced. A mutant's check also gets
`-x` (the first unexpected verdict ends it: the mutant is killed) and a per-exploration
timeout of a few times the unmutated exploration's time, so that one exploration a mutant
makes explode (a `ud2` loop) leaves its properties `incomplete` instead of hiding a
violation another exploration finds.

    python benchmarks/mutants.py [--per-design N] [--seed S] [--timeout SECONDS]
                                 [--design NAME]... [--markdown] [--jobs N]

The survivors and the score are in benchmarks/RESULTS.md ("Mutation testing").
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DESIGNS = ROOT / "model" / "designs"
PROPERTIES = ROOT / "properties"
sys.path.insert(0, str(ROOT))

from model.lang.isa import CONDITION_ALIASES, MNEMONICS  # noqa: E402

OPERATORS = ("drop", "swap", "iret", "no-ist", "flip", "const")

# Mutants argued equivalent by hand: (design, operator, line) -> (the text of the mutated
# line, the argument). An argument applies only while the line still reads so (a design
# edited since loses it); a survivor is listed here only with a reason a reviewer can
# check against the design.
EQUIVALENT: dict[tuple[str, str, int], tuple[str, str]] = {
    ("x86_conformance", "const", 20): (
        "const VEC_TIMER = 0x20",
        "the gate and the `int $VEC_TIMER` that uses it move together to 0x21; no property "
        "names the vector's number"),
    ("x86_conformance", "drop", 78): (
        "nop",
        "guest=none's idle loop: without its `nop` the loop is `1: jmp 1b`, which idles the "
        "same; nothing counts its instructions"),
    ("x86_conformance", "drop", 91): (
        "iretq",
        "bp_handler then falls through into db_handler, whose first instruction is the same "
        "`iretq`"),
    ("x86_conformance", "iret", 105): (
        "iretq",
        "np_handler: nothing in the design raises #NP (the segment variants raise #GP and "
        "#SS, SDM Vol. 2 IRET)"),
    ("x86_conformance", "const", 147): (
        "pushq $0",
        "the frame's SS becomes 0x0001, a NULL selector too (index 0, TI 0): IRET to CPL 3 "
        "raises the same #GP(0) (SDM Vol. 2 IRET)"),
    ("x86_conformance", "swap", 155): (
        "pushq $0x33",
        "`pushq $0x33` and `leaq seg_guest(%rip), %rax` touch different state (the stack, "
        "RAX): their order changes nothing"),
    ("x86_conformance", "const", 183): (
        "pushq $0x2",
        "0x3 differs from 0x2 only in CF, which nothing after the POPF reads; IF is clear "
        "either way, which is what popf-cpl3 asks about"),
    ("x86_conformance", "swap", 170): (
        "leaq  seg_guest(%rip), %rcx",
        "two independent register loads (RCX, R11) before SYSRET: their order changes "
        "nothing"),
    ("xen_boot", "swap", 201): (
        "set_gate(idt_tables, 9, entry_reserved);",
        "two independent gate writes, both before anything can raise vector 9 or 15"),
    ("xen_boot", "swap", 244): (
        "cpu_init();",
        "swaps a statement with a `//` comment line"),
    ("xen_boot", "swap", 274): (
        "set_rsp0(init_tss, cpu_stack);",
        "RSP0 is read only on a switch from CPL 3; boot runs at CPL 0, so loading TR before "
        "writing RSP0 changes nothing an event can see"),
    ("xen_boot", "swap", 286): (
        "set_rsp0(init_tss, cpu_stack);",
        "RSP0 is read only on a switch from CPL 3; the IST write only moves earlier"),
    ("xen_ist", "flip", 129): (
        "jz    restore_all_xen",
        "restore_all_xen and restore_all_guest have the same body (RESTORE_ALL; addq $8; "
        "iretq), so which one the branch picks changes nothing"),
    ("xen_ist", "const", 98): (
        "pushq $0",
        "the word is the error-code slot: `movl` overwrites its upper half (the vector), "
        "nothing reads the lower half, and `addq $8, %rsp` drops it before IRET"),
    ("xen_ist", "swap", 157): (
        "callq do_trap",
        "do_trap is one `nop()`: it changes no flag and returns with %rsp as before, so the "
        "`testb` of the saved CS reads the same before the call as after it"),
    ("xen_boot", "drop", 336): (
        "jmp   handle_exception",
        "an entry stub without its `jmp handle_exception` falls through into the next stub, "
        "whose only instruction is the same jump"),
    ("xen_boot", "drop", 344): (
        "jmp   handle_exception",
        "an entry stub without its `jmp handle_exception` falls through into the next stub, "
        "whose only instruction is the same jump"),
    ("xen_pv_traps", "const", 350): (
        "pushq $0",
        "entry_DB's error-code slot: do_trap reads only the vector (the word's upper half) and "
        "bounces #DB with X86_EVENT_NO_EC, so nothing reads the pushed value"),
    ("xen_kexec", "const", 62): (
        "const CRASH_NMI_CALLBACK = 1",
        "CRASH_NMI_CALLBACK is only stored into nmi_callback and compared with itself; "
        "nmi_callback starts at DUMMY_NMI_CALLBACK (0), which 2 differs from as 1 does"),
    ("xen_kexec", "drop", 181): (
        "movq %rsp,%rdi",
        "nmi_crash's `movq %rsp,%rdi` passes regs to do_nmi_crash, whose model (pseudo-C) reads "
        "no register: the crash notes it saves are the flag crash_notes_saved"),
    ("xen_entry", "const", 183): (
        "const X86_EXC_TS = 10",
        "X86_EXC_TS is stored only by entry_TS; nothing in the model raises #TS (no task "
        "switches) and xen_entry has no @fault(#TS), so the stub never runs"),
    ("xen_entry", "const", 719): (
        "pushq $0",
        "cstar_enter (SYSCALL from compatibility mode) is unreachable: the design declares no "
        "CSTAR and has no 32-bit guest code"),
    ("xen_entry", "iret", 1280): (
        "iretq",
        "trap_nop is referenced by no gate, call or jump in xen_entry (only kexec's crash path "
        "installs it)"),
    ("x86_debug", "const", 24): (
        "const X86_EFLAGS_TF = 0x100",
        "X86_EFLAGS_TF is used only in `pushq $X86_EFLAGS_TF|0x202`: 0x101|0x202 adds CF to the "
        "RFLAGS POPF loads, which nothing after it reads; TF is set either way"),
    ("x86_debug", "swap", 113): (
        "popfq",
        "with `nop` before `popfq`, the instruction after POPF is the `jmp 1b` at guest_code+3, "
        "which jumps to itself: the single-step #DB saves guest_code+3 as after the nop, and "
        "every later step is the same"),
    ("x86_debug", "drop", 168): (
        "cli",
        "entry_DF's `cli`: #DF is delivered through an interrupt gate, which has already "
        "cleared IF (SDM §6.12.1.3)"),
    ("x86_frames", "const", 16): (
        "const FRAME = 40",
        "FRAME is used only by poke_copy: the store lands at the copy's byte 15 instead of 16, "
        "inside the copy's five words either way, so it is the clobber "
        "nested-handler-store-into-outer-frame-clobbers asks about"),
    ("xen_xsa260", "drop", 131): (
        "cli",
        "entry_DF's `cli`: #DF is delivered through an interrupt gate, which has already "
        "cleared IF (SDM §6.12.1.3)"),
    ("xen_syscall", "drop", 162): (
        "jmp   handle_ist_exception",
        "entry_MC's jump goes to the very next instruction: handle_ist_exception follows it "
        "in the text, so without the jump the stub falls through to the same place"),
    ("xen_syscall", "swap", 145): (
        "movq  EFRAME_rip-16(%rsp), %rcx",
        "the two loads before SYSRET go into different registers from different words (RCX from "
        "the saved RIP, R11 from the saved RFLAGS): their order changes nothing"),
    ("xen_entry", "drop", 1466): (
        "ud2",
        "the HYPERVISOR_iret `syscall` never returns to the next instruction: do_iret resumes "
        "the guest at the iret_context's RIP, so the `ud2` after it never runs"),
}

_NEGATE = {
    "o": "no", "no": "o", "b": "ae", "ae": "b", "e": "ne", "ne": "e", "be": "a", "a": "be",
    "s": "ns", "ns": "s", "l": "ge", "ge": "l", "le": "g", "g": "le",
}
_C_FLIP = (("==", "!="), ("!=", "=="), (">=", "<"), ("<=", ">"), ("<", ">="), (">", "<="))
_LABEL = re.compile(r"^(\s*(?:[0-9]+|[A-Za-z_.][\w.]*):)(\s*)(.*)$")
_COMMENT = re.compile(r"\s*(#|/\*).*$")


@dataclass(frozen=True)
class Mutant:
    design: str
    op: str
    line: int  # 1-based, the first line changed
    span: int  # how many lines are replaced
    new: tuple[str, ...]  # the replacement lines
    old: tuple[str, ...]

    @property
    def key(self) -> str:
        return f"{self.design}:{self.line}:{self.op}"

    def apply(self, lines: Sequence[str]) -> str:
        i = self.line - 1
        return "\n".join([*lines[:i], *self.new, *lines[i + self.span :]]) + "\n"

    def describe(self) -> str:
        if not self.old:  # read back from a log: `new` holds the whole description
            return self.new[0] if self.new else ""
        old = " / ".join(s.strip() for s in self.old)
        new = " / ".join(s.strip() for s in self.new) or "(dropped)"
        return f"`{old}` -> `{new}`"


# -- finding mutation points -----------------------------------------------------------------


def _split_label(text: str) -> tuple[str, str]:
    """(label prefix with its spacing, the rest) of an assembler line."""
    m = _LABEL.match(text)
    if m and not text.lstrip().startswith(("ENTRY(", "GUEST(")):
        return m.group(1) + m.group(2), m.group(3)
    return "", text


def _code(text: str) -> str:
    return _COMMENT.sub("", text).strip()


def _asm(text: str) -> tuple[str, str, str] | None:
    """(label prefix, mnemonic, operands) of an assembler instruction line."""
    if not text.startswith((" ", "\t")) and not _LABEL.match(text):
        return None
    label, rest = _split_label(text)
    body = _code(rest)
    if not body:
        return None
    word, _, operands = body.partition(" ")
    if word not in MNEMONICS:
        return None
    return label, word, operands.strip()


def _statement(text: str, in_function: bool) -> bool:
    """A one-line pseudo-C statement (`x = 1;`, `f(a);`, `return;`)."""
    body = _code(text)
    return (
        in_function and body.endswith(";") and "{" not in body and "}" not in body
        and not body.startswith(("for", "if", "else", "while"))
    )


def _indent(text: str) -> str:
    return text[: len(text) - len(text.lstrip())]


def _cc_flip(mnemonic: str) -> str | None:
    for prefix in ("cmov", "set", "j"):
        if mnemonic.startswith(prefix) and mnemonic != "jmp" and mnemonic != "jmpq":
            cc = mnemonic[len(prefix):]
            for suffix in ("", "q", "l", "w"):
                base = cc[: len(cc) - len(suffix)] if suffix else cc
                if suffix and not cc.endswith(suffix):
                    continue
                if base in CONDITION_ALIASES:
                    flipped = _NEGATE[CONDITION_ALIASES[base]]
                    return prefix + flipped + suffix
    return None


def _bump(match: re.Match[str]) -> str:
    text = match.group(2)
    value = int(text, 0) + 1
    new = hex(value) if text.lower().startswith("0x") else str(value)
    return match.group(1) + new


def candidates(design: str, text: str) -> list[Mutant]:
    """Every mutant of a design's text, in line order."""
    lines = text.split("\n")
    out: list[Mutant] = []
    in_function = False
    previous: tuple[int, str] | None = None  # the last instruction line: (index, kind)
    for i, raw in enumerate(lines):
        body = _code(raw)
        if re.match(r"^function\s+\w+", raw):
            in_function = True
        elif raw.startswith("}") and in_function:
            in_function = False
        asm = None if in_function else _asm(raw)

        def add(op: str, new: Iterable[str], span: int = 1, start: int = i) -> None:
            out.append(Mutant(design, op, start + 1, span, tuple(new),
                              tuple(lines[start : start + span])))

        kind = ""
        if asm is not None:
            label, word, operands = asm
            kind = "asm"
            add("drop", [label.rstrip()] if label else [])
            if word.startswith("iret"):
                add("iret", [f"{label or _indent(raw)}ud2"])
            flipped = _cc_flip(word)
            if flipped is not None:
                add("flip", [raw.replace(word, flipped, 1)])
            if re.search(r"\$(-?)(0x[0-9a-fA-F]+|[0-9]+)\b", operands):
                add("const", [re.sub(r"(\$)(0x[0-9a-fA-F]+|[0-9]+)\b", _bump, raw, count=1)])
        elif _statement(raw, in_function):
            kind = "c"
            add("drop", [])
            for a, b in _C_FLIP:
                if f" {a} " in body:
                    add("flip", [raw.replace(f" {a} ", f" {b} ", 1)])
                    break
            literal = r"(=\s*)(0x[0-9a-fA-F]+|[0-9]+)(?=\s*;)"
            if re.search(literal, raw):
                add("const", [re.sub(literal, _bump, raw, count=1)])
        elif in_function and re.match(r"^\s*(if|while)\s*\(", raw):
            for a, b in _C_FLIP:
                if f" {a} " in body:
                    add("flip", [raw.replace(f" {a} ", f" {b} ", 1)])
                    break
            else:
                m = re.match(r"^(\s*(?:if|while)\s*\()(!?)(.*)$", raw)
                if m:
                    add("flip", [m.group(1) + ("" if m.group(2) else "!") + m.group(3)])
        elif re.match(r"^\s+gate\s", raw) and re.search(r"\sist\s+\d+", body):
            add("no-ist", [re.sub(r"\s+ist\s+\d+", "", raw, count=1)])
        elif re.match(r"^\s+ist\s+\d+\s+\w", raw):
            add("no-ist", [])
        elif re.match(r"^const\s+\w+\s*=\s*(0x[0-9a-fA-F]+|[0-9]+)\s*$", body):
            add("const", [re.sub(r"(=\s*)(0x[0-9a-fA-F]+|[0-9]+)", _bump, raw, count=1)])
        if kind and previous is not None and previous[0] == i - 1 and previous[1] == kind:
            a, b = lines[i - 1], raw
            if kind == "asm":
                la = _split_label(a)[0]
                lb = _split_label(b)[0]
                if not la and not lb:  # labels stay where they are
                    add("swap", [b, a], span=2, start=i - 1)
            elif _code(a) != _code(b):
                add("swap", [b, a], span=2, start=i - 1)
        previous = (i, kind) if kind else None
    return out


def sample(mutants: Sequence[Mutant], count: int, rng: random.Random) -> list[Mutant]:
    """`count` mutants, round-robin over the operators (each operator's mutants shuffled),
    in line order."""
    by_op: dict[str, list[Mutant]] = {}
    for m in mutants:
        by_op.setdefault(m.op, []).append(m)
    for group in by_op.values():
        rng.shuffle(group)
    chosen: list[Mutant] = []
    while len(chosen) < count and any(by_op.values()):
        for op in OPERATORS:
            if by_op.get(op) and len(chosen) < count:
                chosen.append(by_op[op].pop())
    return sorted(chosen, key=lambda m: (m.line, m.op))


# -- which properties check which design ---------------------------------------------------


def property_files(design: str) -> list[tuple[Path, list[str]]]:
    """The shipped property files with properties on `design`, and those properties."""
    out = []
    for path in sorted(PROPERTIES.glob("*.toml")):
        data = tomllib.loads(path.read_text())
        names = [
            p["name"] for p in data.get("property", [])
            if p.get("design", data.get("design")) == design
        ]
        if names:
            out.append((path, names))
    return out


# -- running ---------------------------------------------------------------------------------


@dataclass
class Outcome:
    mutant: Mutant | None
    status: str
    seconds: float
    detail: str = ""
    failed: list[str] = field(default_factory=list)


def run_checker(
    design: str, design_dir: Path, por: bool, timeout: float, work: Path,
    per_exploration: float | None = None,
) -> tuple[str, dict[str, Any] | None, float]:
    """(exit code or "timeout", the JSON output, seconds) of the design's properties.
    `per_exploration`: the checker's --timeout-per-exploration, so that one exploration a
    mutant makes explode leaves its properties `incomplete` while the others still decide
    theirs (a violation elsewhere still kills the mutant)."""
    files = property_files(design)
    args = [sys.executable, "-m", "checker", *(str(p) for p, _ in files)]
    for _, names in files:
        for name in names:
            args += ["--property", name]
    args += ["--design-path", str(design_dir), "--format", "json", "--workers", "1",
             "--report-dir", str(work / "reports")]
    args.append("--por" if por else "--no-por")  # POR is on by default
    if per_exploration is not None:
        # -x: one unexpected verdict kills the mutant, the rest need not be explored.
        args += ["--timeout-per-exploration", f"{per_exploration:g}",
                 "--timeout", f"{max(1.0, timeout * 0.85):g}", "-x"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("GITHUB_ACTIONS", None)
    started = time.monotonic()
    proc = subprocess.Popen(
        ["nice", "-n", "10", *args], cwd=str(work), env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the checker and any helper it forked
        proc.communicate()
        return "timeout", None, time.monotonic() - started
    seconds = time.monotonic() - started
    try:
        data = json.loads(out)
    except json.JSONDecodeError:
        data = None
    return str(proc.returncode), data, seconds


def reached_lines(data: dict[str, Any], design: str) -> tuple[set[int], bool]:
    """The design's lines any exploration reached, and whether every exploration visited
    every reachable state (so an unreached line is unreachable)."""
    reached: set[int] = set()
    for path, cov in ((data.get("coverage") or {}).get("files") or {}).items():
        if Path(path).name == f"{design}.design":
            reached |= set(cov.get("reached", ()))
    complete = all(e.get("complete") for e in data.get("explorations", ()))
    return reached, complete


def _argued(design: str, op: str, line: int, text: str) -> str | None:
    """The equivalence argument for this mutant, if its line still reads as argued."""
    entry = EQUIVALENT.get((design, op, line))
    return entry[1] if entry is not None and entry[0] in text else None


def classify(
    mutant: Mutant, code: str, data: dict[str, Any] | None, seconds: float,
    reached: set[int], complete: bool,
) -> Outcome:
    if code == "timeout":
        return Outcome(mutant, "timeout", seconds)
    if data is None:
        return Outcome(mutant, "crash", seconds, f"exit {code}, no JSON")
    if data.get("errors"):
        return Outcome(mutant, "stillborn", seconds, data["errors"][0].get("message", "")[:120])
    results = data.get("results", [])
    failed = [f"{r['name']} ({r['verdict']})" for r in results if not r.get("ok")
              and r["verdict"] != "incomplete"]
    if failed:
        return Outcome(mutant, "killed", seconds, failed=failed)
    if any(r["verdict"] == "incomplete" for r in results):
        return Outcome(mutant, "timeout", seconds, "incomplete")
    argued = _argued(mutant.design, mutant.op, mutant.line,
                     mutant.old[0] if mutant.old else mutant.describe())
    if argued:
        return Outcome(mutant, "equivalent", seconds, argued)
    touched = set(range(mutant.line, mutant.line + mutant.span))
    if complete and not touched & reached and mutant.op in ("drop", "swap", "iret", "flip"):
        return Outcome(mutant, "equivalent", seconds,
                       "the mutated lines are unreachable (exhaustive exploration)")
    unreached = "" if touched & reached else " (the mutated lines were not reached)"
    return Outcome(mutant, "survived", seconds, unreached.strip(" ()"))


def check_design(
    design: str, count: int, seed: int, timeout: float, jobs: int, log: Any,
    only: Sequence[str] = (),
) -> list[Outcome]:
    text = (DESIGNS / f"{design}.design").read_text()
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines = lines[:-1]
    every = candidates(design, "\n".join(lines))
    if only:
        mutants = [m for m in every if m.key in only]
    else:
        mutants = sample(every, count, random.Random(f"{seed}:{design}"))
    if not mutants:
        return []
    with tempfile.TemporaryDirectory(prefix=f"mutants-{design}-") as tmp:
        base = Path(tmp) / "base"
        shutil.copytree(DESIGNS, base / "designs")
        code, plain, secs = run_checker(design, base / "designs", False, timeout * 4, base)
        code_por, por_data, secs_por = run_checker(design, base / "designs", True,
                                                   timeout * 4, base)
        if code != "0" or plain is None:
            print(f"{design}: the unmutated design does not pass (exit {code}); skipped",
                  file=log)
            return []
        verdicts = [r["verdict"] for r in plain["results"]]
        # --por where it gives the same verdicts on the unmutated design, and pays.
        por = code_por == "0" and por_data is not None and verdicts == [
            r["verdict"] for r in por_data["results"]
        ] and secs_por <= secs * 1.1
        reached, complete = reached_lines(plain, design)
        # Each exploration may take a few times its unmutated time, and at most a sixth
        # of the mutant's budget.
        base_run = por_data if por and por_data is not None else plain
        slowest = max((e.get("seconds", 0.0) for e in base_run.get("explorations", ())),
                      default=0.0)
        per_exploration = max(10.0, min(timeout / 6, 3 * slowest + 10))
        print(f"{design}: {len(mutants)} mutants, baseline {secs:.1f}s"
              f" (--por {secs_por:.1f}s, {'used' if por else 'not used'})", file=log)

        def one(index: int, m: Mutant) -> Outcome:
            work = Path(tmp) / f"m{index}"
            shutil.copytree(DESIGNS, work / "designs")
            (work / "designs" / f"{design}.design").write_text(m.apply(lines))
            code, data, seconds = run_checker(design, work / "designs", por, timeout, work,
                                              per_exploration)
            shutil.rmtree(work, ignore_errors=True)
            out = classify(m, code, data, seconds, reached, complete)
            if out.status == "survived" and _dead_constant(m, lines):
                out = Outcome(m, "equivalent", seconds, "the constant is used nowhere")
            print(f"  {out.status:10} {m.key:28} {m.describe()[:160]}"
                  + (f"  [{', '.join(out.failed)[:80]}]" if out.failed else "")
                  + (f"  ({out.detail[:100]})" if out.detail else ""), file=log, flush=True)
            return out

        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            return list(pool.map(one, range(len(mutants)), mutants))


def _dead_constant(m: Mutant, lines: Sequence[str]) -> bool:
    """A `const NAME = N` mutant where NAME appears on no other line (comments aside)."""
    found = re.match(r"^const\s+(\w+)", m.old[0]) if m.op == "const" and m.old else None
    if found is None:
        return False
    word = re.compile(rf"\b{re.escape(found.group(1))}\b")
    comment = re.compile(r"(^\s*#|\s#\s|//|/\*).*$")  # not `#PF`, a vector's name
    return not any(
        word.search(comment.sub("", line)) for i, line in enumerate(lines) if i != m.line - 1
    )


def summary(outcomes: Sequence[Outcome]) -> dict[str, int]:
    counts = Counter(o.status for o in outcomes)
    return {s: counts.get(s, 0) for s in
            ("killed", "survived", "equivalent", "timeout", "stillborn", "crash")}


def score(counts: dict[str, int]) -> float:
    """Killed among the mutants that are valid and not equivalent (timeouts count as not
    killed)."""
    relevant = counts["killed"] + counts["survived"] + counts["timeout"] + counts["crash"]
    return counts["killed"] / relevant if relevant else 1.0


def markdown(per_design: dict[str, list[Outcome]], args: argparse.Namespace) -> str:
    rows = ["| design | mutants | killed | survived | equivalent | timeout | stillborn | score |",
            "|---|---:|---:|---:|---:|---:|---:|---:|"]
    every: list[Outcome] = []
    for design, outs in per_design.items():
        c = summary(outs)
        every += outs
        rows.append(f"| {design} | {len(outs)} | {c['killed']} | {c['survived']} | "
                    f"{c['equivalent']} | {c['timeout']} | {c['stillborn']} | "
                    f"{score(c):.0%} |")
    c = summary(every)
    rows.append(f"| **all** | {len(every)} | {c['killed']} | {c['survived']} | "
                f"{c['equivalent']} | {c['timeout']} | {c['stillborn']} | "
                f"**{score(c):.0%}** |")
    rest = [o for o in every if o.status in ("survived", "equivalent", "timeout", "crash")]
    if rest:
        rows += ["", "| mutant | change | outcome | why |", "|---|---|---|---|"]
        for o in rest:
            assert o.mutant is not None
            rows.append(f"| `{o.mutant.key}` | {o.mutant.describe()} | {o.status} | "
                        f"{o.detail} |")
    head = (f"`python benchmarks/mutants.py --per-design {args.per_design} --seed {args.seed} "
            f"--timeout {args.timeout:g}`")
    return head + "\n\n" + "\n".join(rows) + "\n"


_LOG_LINE = re.compile(r"^  (\w+)\s+(\S+):(\d+):(\S+)\s+(.*?)(?:  \[(.*)\])?(?:  \((.*)\))?$")


def from_logs(paths: Sequence[Path]) -> dict[str, list[Outcome]]:
    """Outcomes from the per-mutant lines of run logs (`check_design` prints them)."""
    found: dict[str, dict[str, Outcome]] = {}
    for path in paths:
        for line in path.read_text().splitlines():
            m = _LOG_LINE.match(line)
            if not m:
                continue
            status, design, number, op, change, failed, detail = m.groups()
            mutant = Mutant(design, op, int(number), 1, (change,), ())
            argued = _argued(design, op, int(number), change)
            # an argument proves equivalence whether the check survived or ran out of time
            if status in ("survived", "timeout") and argued:
                status, detail = "equivalent", argued
            out = Outcome(mutant, status, 0.0, detail or "", [failed] if failed else [])
            found.setdefault(design, {})[mutant.key] = out
    return {d: list(by_key.values()) for d, by_key in found.items()}


def main(argv: Sequence[str] | None = None) -> int:
    global PROPERTIES
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-design", type=int, default=12, help="mutants sampled per design")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per mutant")
    parser.add_argument("--design", action="append", default=[], help="only these designs")
    parser.add_argument("--jobs", type=int, default=1, help="mutants checked at once")
    parser.add_argument("--markdown", action="store_true", help="print a RESULTS.md section")
    parser.add_argument("--list", action="store_true", help="list the sampled mutants only")
    parser.add_argument("--mutant", action="append", default=[],
                        help="check only this mutant (DESIGN:LINE:OP, as listed); repeatable")
    parser.add_argument("--properties", type=Path, default=PROPERTIES,
                        help="the property files (default properties/)")
    parser.add_argument("--summarize", nargs="+", type=Path, metavar="LOG",
                        help="print the RESULTS.md section from the stderr logs of earlier runs "
                        "(a later line for the same mutant wins: re-checks after a fix)")
    args = parser.parse_args(argv)
    PROPERTIES = args.properties.resolve()
    if args.summarize:
        print(markdown(from_logs(args.summarize), args))
        return 0
    designs = args.design or sorted(
        p.stem for p in DESIGNS.glob("*.design") if property_files(p.stem)
    )
    if args.mutant:
        designs = [d for d in designs if any(k.split(":")[0] == d for k in args.mutant)]
    if args.list:
        for d in designs:
            text = (DESIGNS / f"{d}.design").read_text().rstrip("\n")
            every = candidates(d, text)
            chosen = sample(every, args.per_design, random.Random(f"{args.seed}:{d}"))
            print(f"{d}: {len(every)} candidates; " + ", ".join(
                f"{op}={sum(m.op == op for m in every)}" for op in OPERATORS))
            for m in chosen:
                print(f"  {m.key:28} {m.describe()}")
        return 0
    per_design: dict[str, list[Outcome]] = {}
    for d in designs:
        per_design[d] = check_design(d, args.per_design, args.seed, args.timeout, args.jobs,
                                     sys.stderr, args.mutant)
    if args.markdown:
        print(markdown(per_design, args))
    outcomes = [o for outs in per_design.values() for o in outs]
    c = summary(outcomes)
    print(f"mutants: {len(outcomes)}; " + ", ".join(f"{k} {v}" for k, v in c.items())
          + f"; score {score(c):.1%}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
