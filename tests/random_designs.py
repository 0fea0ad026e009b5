"""Differential fuzzing of the options that make exploration cheaper (issue 13).

`generate(seed)` writes a small random design and a property file over its vocabulary
(text only, like any user's files): 2-3 CPUs, per-CPU and global variables, per-CPU and
shared stacks, an IDT with NMI/#MC gates with or without IST, short assembler routines
and pseudo-C functions, cross-CPU writes (into another CPU's stack, into another CPU's
per-CPU variable), NMI IPIs, `wait_until`, `choose`, `atomic` blocks, sometimes a
`symmetric` declaration (sometimes a wrong one: CPUs 1..n-1 run different code or use
literal CPU numbers) and NMI/#MC budgets.

`compare(case)` runs the case through the command line in a subprocess, once plain
(`--shortest --workers 1`, no reduction) and once per option in `VARIANTS`, and
returns every disagreement: a decided verdict (holds/violated) that differs, a reduced
counterexample that does not replay on the unreduced design (`python -m checker replay`),
different counts where the docs promise the same ones (`--workers`, `--compact`), a crash.
`shrink(case, finding)` drops design lines and properties while the disagreement persists.

The command line cannot yet load a design from an arbitrary folder (issue 12 item 4), so
the subprocess calls `checker.cli.main(argv, DesignProvider(folder))`: the documented
way to run the CLI with another model provider (docs/properties.md, "Command line").
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

# Every exploration is capped; a capped run's verdicts are `incomplete` for what it did
# not decide and are then not compared.
MAX_STATES = 4000

BASELINE: tuple[str, ...] = ("--shortest", "--workers", "1")
# name -> options replacing the baseline's. Symmetry and POR are on by default and
# `--workers` defaults to the number of cores, so every run names all three.
VARIANTS: dict[str, tuple[str, ...]] = {
    "por": ("--symmetry", "off", "--workers", "1", "--por"),
    "symmetry": ("--symmetry", "auto", "--workers", "1", "--no-por"),
    "compact": ("--symmetry", "off", "--workers", "1", "--no-por", "--compact"),
    "workers2": ("--symmetry", "off", "--workers", "2", "--no-por"),
    "por+symmetry": ("--symmetry", "auto", "--workers", "1", "--por"),
    "por+compact": ("--symmetry", "off", "--workers", "1", "--por", "--compact"),
    "symmetry+compact": ("--symmetry", "auto", "--workers", "1", "--no-por", "--compact"),
    "all": ("--symmetry", "auto", "--workers", "2", "--por", "--compact"),
}
# Options whose documented guarantee is the baseline's exact counts and traces
# (docs/properties.md, "Workers, fingerprints and reductions").
SAME_COUNTS = frozenset({"compact", "workers2"})

# Hash collisions of Python's int hash (mod 2**61 - 1): issue 13, wrong verdict 2.
MERSENNE61 = (1 << 61) - 1


@dataclass(frozen=True)
class Case:
    seed: int
    name: str
    design: str  # the design file's text
    properties: str  # the property file's text
    symmetry: str  # "none", "valid" or "wrong" (a declaration the code does not honour)
    features: frozenset[str] = frozenset()

    def write(self, directory: Path) -> Path:
        """Writes NAME.design and NAME.toml into `directory`; returns the property file."""
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"{self.name}.design").write_text(self.design)
        toml = directory / f"{self.name}.toml"
        toml.write_text(self.properties)
        return toml


# -- the generator ---------------------------------------------------------------------------

REGS = ("%rax", "%rbx", "%rcx", "%rdx")


@dataclass
class _Gen:
    rng: random.Random
    ncpus: int
    symmetry: str
    features: set[str] = field(default_factory=set)
    consts: list[int] = field(default_factory=lambda: [1, 2, 3])
    labels: int = 10
    helpers: list[str] = field(default_factory=list)  # extra functions (text blocks)
    shared_stack: bool = False
    nhelpers: int = 0
    # A planted pattern (see _plant): per CPU, assembler lines its routine starts with,
    # a helper function it calls first, the loop it ends in; properties that watch it.
    asm_start: dict[int, list[str]] = field(default_factory=dict)
    call_first: dict[int, str] = field(default_factory=dict)
    asm_loop: dict[int, list[str]] = field(default_factory=dict)
    watch: list[tuple[str, str]] = field(default_factory=list)
    nmi_record: str | None = None  # what the NMI handler records, when planted
    init_rbx: int | None = None  # CPU 2's initial %rbx in a wrong `init` symmetry
    # The x86 features of issue 14 (EXTRAS), drawn from their own generator so that the
    # designs of the earlier seeds stay what they were.
    xrng: random.Random = field(default_factory=random.Random)
    extras: frozenset[str] = frozenset()

    # values --------------------------------------------------------------------------------
    def k(self) -> int:
        return self.rng.choice(self.consts)

    def imm(self) -> int:
        """A constant for an assembler immediate: imm32, which a 64-bit value like
        2**61 - 1 is not (the parser refuses it), so those become small ones."""
        k = self.k()
        return k if k < 1 << 31 else k & 0xFFF

    def label(self) -> int:
        self.labels += 1
        return self.labels

    def other(self, me: int | None) -> str:
        """Another CPU's number as code writes it. In a valid symmetric design code may
        name CPU 0 (never renumbered) or the `ids` variable `tgt`, never CPU 1.."""
        if self.symmetry == "valid":
            return self.rng.choice(["0", "tgt"])
        choices = [c for c in range(self.ncpus) if c != me] or [0]
        return str(self.rng.choice(choices))

    def literal_other(self, me: int | None) -> int | None:
        """A CPU number usable where only literals are accepted (stack instances)."""
        if self.symmetry == "valid":
            return 0 if me != 0 else None
        choices = [c for c in range(self.ncpus) if c != me]
        return self.rng.choice(choices) if choices else None

    # helpers ---------------------------------------------------------------------------------
    def helper(self, body: list[str]) -> str:
        self.nhelpers += 1
        name = f"h{self.nhelpers}"
        self.helpers.append("\n".join([f"function {name} {{", *body, "}"]))
        return name

    # pseudo-C ----------------------------------------------------------------------------------
    def c_stmt(self, me: int | None, loop: bool = False) -> list[str]:
        r = self.rng
        k = self.k()
        o = self.other(me)
        pool: list[Callable[[], list[str]]] = [
            lambda: [f"g0 = {k};"],
            lambda: [f"g1 = {k};"],
            lambda: [f"p0 = {k};"],
            lambda: self._feat("cross-percpu-write", [f"p0[{o}] = {k};"]),
            lambda: [f"got = {r.choice(REGS)};"],
            lambda: self._feat("per-cpu-read", [f"got = per_cpu(p0, {o});"]),
            lambda: self._feat("cross-percpu-read", [f"g1 = p0[{o}];"]),
            lambda: ["g0 = (g0 + 1) & 3;"],
            lambda: ["atomic {", f"    g0 = {k};", f"    p0 = {self.k()};", "}"],
            lambda: [
                f"if (g0 == {k}) {{",
                f"    p0 = {self.k()};",
                "} else {",
                f"    g1 = {self.k()};",
                "}",
            ],
            lambda: [f"choose(g1, {k}, {self.k()});"],
            lambda: [f"assert(g0 != {k});"],
            lambda: self._feat(
                "nmi-ipi", [f"send_nmi({r.choice([o, o, 'ALL_BUT_SELF', 'SELF'])});"]
            ),
        ]
        if self.symmetry == "valid" and me == 0:
            others = ", ".join(str(c) for c in range(1, self.ncpus))
            pool.append(lambda: [f"choose(tgt, {others});"])
        if self.symmetry == "valid" and me != 0:
            pool.append(lambda: ["msk |= 1 << cpu;"])
        if not loop:
            pool += [
                lambda: self._feat("wait", [f"wait_until(g0 == {k});"]),
                lambda: ["atomic_inc(g0);"],
            ]
            if self.literal_other(me) is not None:
                s = self.literal_other(me)
                pool.append(
                    lambda: self._feat("cross-stack-read", [f"got = mem(top(kstack[{s}])-8);"])
                )
        return r.choice(pool)()

    def _feat(self, name: str, lines: list[str]) -> list[str]:
        self.features.add(name)
        return lines

    def c_function(self, name: str, me: int | None) -> str:
        r = self.rng
        body: list[str] = []
        if me in self.call_first:
            body.append(f"{self.call_first[me]}();")
        for _ in range(r.randint(1, 4)):
            body += self.c_stmt(me)
        end = r.choice(["stop", "halt", "spin", "wait"])
        if end == "stop":
            body.append("stop();")
        elif end == "halt":
            body += ["for (;;) {", "    halt();", "}"]
        elif end == "spin":
            body += ["for (;;) {", *("    " + x for x in self.c_stmt(me, loop=True)), "}"]
        else:
            body += [f"while (g1 != {self.k()}) {{", "}", "stop();"]
        return "\n".join([f"function {name} {{", *("    " + x for x in body), "}"])

    # assembler --------------------------------------------------------------------------------
    def asm_op(self, me: int | None, loop: bool = False) -> list[str]:
        if self.extras & {"mov-ss", "smap", "breakpoint"} and self.xrng.random() < 0.3:
            extra = self._extra_op()
            if extra:
                return extra
        r = self.rng
        k = self.imm()
        reg, reg2 = r.sample(REGS, 2)
        pool: list[Callable[[], list[str]]] = [
            lambda: [f"movq ${k}, {reg}"],
            lambda: [f"movq {reg}, {reg2}"],
            lambda: [f"andq $3, {reg}"],
            lambda: ["nop"],
            lambda: [f"call {self.helper([f'    got = {reg};'])}"],
            lambda: [f"call {self.helper([f'    g0 = {k};'])}"],
        ]
        if not loop:
            pool += [
                lambda: [f"addq ${k}, {reg}"],
                lambda: self._push_pop(me),
                lambda: self._cmp_branch(reg, reg2),
            ]
        s = self.literal_other(me)
        if s is not None:
            pool.append(lambda: self._feat("cross-stack-write", [f"movq ${k}, top(kstack[{s}])-8"]))
            pool.append(
                lambda: self._feat(
                    "cross-stack-write",
                    [f"movq $top(kstack[{s}])-8, {reg2}", f"movq ${k}, 0({reg2})"],
                )
            )
        if self.shared_stack:
            pool.append(lambda: self._feat("shared-stack", [f"movq ${k}, top(common)-8"]))
            pool.append(lambda: self._feat("shared-stack", [f"movq top(common)-8, {reg}"]))
        return r.choice(pool)()

    def _extra_op(self) -> list[str]:
        """An instruction of an enabled extra: MOV SS (its shadow holds events and a
        #DB past the next instruction), a store or load on the guest-owned stack (a #PF
        under SMAP unless AC is set), STAC/CLAC, a write the data breakpoint watches."""
        x = self.xrng
        pool: list[list[str]] = []
        if "mov-ss" in self.extras:
            pool.append(["movq $0x10, %rax", "mov %ax, %ss"])
        if "smap" in self.extras:
            k = self.imm()
            pool += [[f"movq ${k}, top(ustk)-8"], ["movq top(ustk)-8, %rdx"], ["stac"], ["clac"]]
        if "breakpoint" in self.extras:
            pool.append([f"movq ${self.imm()}, g1"])
        return x.choice(pool) if pool else []

    def _push_pop(self, me: int | None) -> list[str]:
        r = self.rng
        push = r.choice([f"pushq ${self.imm()}", f"pushq {r.choice(REGS)}"])
        reg = r.choice(REGS)
        middle: list[str] = []
        for _ in range(r.randint(0, 2)):
            middle += self.asm_op(me, loop=True)
        return [push, *middle, f"popq {reg}", f"call {self.helper([f'    got = {reg};'])}"]

    def _cmp_branch(self, reg: str, reg2: str) -> list[str]:
        n = self.label()
        jcc = self.rng.choice(["jne", "je", "jl", "jge", "jb", "jae"])
        return [f"cmpq ${self.imm()}, {reg}", f"{jcc} {n}f", f"movq ${self.imm()}, {reg2}", f"{n}:"]

    def asm_routine(self, name: str, me: int | None) -> str:
        r = self.rng
        body: list[str] = list(self.asm_start.get(me, [])) if me is not None else []
        if me in self.call_first:
            body.append(f"call {self.call_first[me]}")
        for _ in range(r.randint(1, 4)):
            body += self.asm_op(me)
        end = r.choice(["halt", "spin", "stop"])
        n = self.label()
        if me in self.asm_loop:
            body += [f"{n}:", *self.asm_loop[me], f"jmp {n}b"]
        elif end == "halt":
            body += [f"{n}:", "hlt", f"jmp {n}b"]
        elif end == "spin":
            body += [f"{n}:", *self.asm_op(me, loop=True), f"jmp {n}b"]
        else:
            body.append(f"jmp {self.helper(['    stop();'])}")
        lines = [f"ENTRY({name})"]
        for x in body:
            lines.append(x if x.endswith(":") else "        " + x)
        return "\n".join(lines)

    def routine(self, name: str, me: int | None) -> str:
        if me in self.asm_start or me in self.asm_loop or self.rng.random() < 0.5:
            return self.asm_routine(name, me)
        return self.c_function(name, me)

    def handler(self, name: str, vector: str) -> str:
        r = self.rng
        k = self.imm()
        if vector == "mc":
            kind = r.choice(["clear", "clear", "halt"])
            if kind == "clear":
                body = [f"call {self.helper(['    clear_mcip();', f'    g1 = {k};'])}", "iretq"]
            else:
                body = ["1:", "hlt", "jmp 1b"]
        elif vector == "db":
            body = [f"call {self.helper([f'    g0 = {k};'])}", "iretq"]
        else:
            kind = r.choice(["iret", "record", "record", "halt", "pushpop"])
            extra = ""
            if self.nmi_record is None and self.extras & {"wild-iret", "frame-moved"}:
                extra = self.xrng.choice(
                    sorted(self.extras & {"wild-iret", "frame-moved"}) + [""]
                )
            if extra == "wild-iret":
                # A handler that returns to an address where the design has no code.
                body = [f"call {self.helper([f'    g1 = {k};'])}", "movq $0, (%rsp)", "iretq"]
            elif extra == "frame-moved":
                # Linux's NMI entry: copy the frame 0x100 bytes down, declare the hand-off,
                # return through the copy (docs/design-language.md, frame_moved).
                body = ["pushq %rax"]
                for w in range(1, 6):
                    body += [f"movq {8 * w}(%rsp), %rax", f"movq %rax, {8 * w}-0x100(%rsp)"]
                hand = self.helper(["    frame_moved(%rsp + 16, %rsp + 16 - 0x100);",
                                    f"    g1 = {k};"])
                body += [f"call {hand}", "popq %rax", "subq $0x100, %rsp", "iretq"]
            elif self.nmi_record is not None:
                body = [f"call {self.helper(['    ' + self.nmi_record])}", "iretq"]
            elif kind == "iret":
                body = ["iretq"]
            elif kind == "record":
                what = r.choice(
                    [f"g1 = {k};", f"p0 = {k};", "got = p0;", f"got = {r.choice(REGS)};"]
                )
                if self.symmetry == "valid" and r.random() < 0.5:
                    what = "msk |= 1 << cpu;"
                body = [f"call {self.helper(['    ' + what])}", "iretq"]
            elif kind == "pushpop":
                body = [f"pushq ${k}", f"popq {r.choice(REGS)}", "iretq"]
            else:
                body = [f"call {self.helper([f'    g0 = {k};'])}", "1:", "hlt", "jmp 1b"]
        lines = [f"ENTRY({name})"]
        for x in body:
            lines.append(x if x.endswith(":") else "        " + x)
        return "\n".join(lines)


# The x86 features of issue 14 a design may draw on (each with probability 0.3): `mov
# %ax, %ss`, a data breakpoint on g1 (with a #DB gate), SMAP with a guest-owned stack that
# ring-0 code touches (with STAC/CLAC), an NMI handler that returns wild (its saved RIP
# zeroed), an NMI handler that copies its frame and declares the hand-off (`frame_moved`).
EXTRAS = ("mov-ss", "breakpoint", "smap", "wild-iret", "frame-moved")

PATTERNS = ("stack-write", "shared-stack-write", "per-cpu-read", "stack-read")


def _plant(g: _Gen, pattern: str) -> None:
    """One CPU reads what another CPU writes, in a form the generator's random code
    seldom assembles whole, with properties that tell the orders apart: a reader that
    pushes and pops while another CPU writes that stack word (issue 13's --por
    reproducer), the same on a shared stack, a `per_cpu(x, i)` read of a variable CPU i
    writes, a `mem()` read of a word CPU i pushes."""
    rng = g.rng
    reader, writer = rng.sample(range(g.ncpus), 2)
    k = rng.randint(0x100, 0xFFF)
    g.consts.append(k)
    g.features.add(f"pattern-{pattern}")
    if pattern in ("stack-write", "shared-stack-write"):
        where = f"kstack[{reader}]" if pattern == "stack-write" else "common"
        g.shared_stack |= pattern == "shared-stack-write"
        g.asm_start[reader] = ["pushq $1", "popq %rbx", f"call {g.helper(['    got = %rbx;'])}"]
        g.asm_loop[writer] = [f"movq ${k}, top({where})-8"]
        g.watch += [("never", f"got[{reader}] == {k}"), ("reachable", f"got[{reader}] == {k}")]
    elif pattern == "per-cpu-read":
        g.call_first[writer] = g.helper([f"    p0 = {k};"])
        g.call_first[reader] = g.helper([f"    got = per_cpu(p0, {writer}) + 1;"])
        g.watch += [("never", f"got[{reader}] == 1"), ("reachable", f"got[{reader}] == {k + 1}")]
    else:
        g.asm_start[writer] = [f"pushq ${k}"]
        g.call_first[reader] = g.helper([f"    got = mem(top(kstack[{writer}])-8) + 1;"])
        g.watch += [("never", f"got[{reader}] == 1"), ("reachable", f"got[{reader}] == {k + 1}")]


def _plant_stack_arith(g: _Gen, rng: random.Random) -> None:
    """A writer that computes an address in the reader's stack from its own (per-CPU
    stacks lie SLOT = 0x10000 apart: a wrong stack size or a missing mask) and writes
    there, by `top(s)+c`, through a register, or by moving %rsp there and pushing, while
    the reader pushes and pops (what --por must not drop)."""
    reader, writer = rng.sample(range(g.ncpus), 2)
    k = rng.randint(0x100, 0xFFF)
    delta = (reader - writer) * 0x10000
    d = f"+{delta:#x}" if delta > 0 else f"-{-delta:#x}"
    form = rng.choice(["abs", "reg", "rsp"])
    g.features.add(f"pattern-stack-arith-{form}")
    g.asm_start[reader] = ["pushq $1", "popq %rbx", f"call {g.helper(['    got = %rbx;'])}"]
    if form == "abs":
        g.asm_loop[writer] = [f"movq ${k}, top(kstack){d}-8"]
    else:
        op, imm = ("addq", delta) if delta > 0 else ("subq", -delta)
        loop = ["movq %rsp, %rcx", "movq $top(kstack), %rax", f"{op} ${imm:#x}, %rax"]
        if form == "reg":
            loop += [f"movq ${k}, -8(%rax)"]
        else:
            loop += ["movq %rax, %rsp", f"pushq ${k}", "movq %rcx, %rsp"]
        g.asm_loop[writer] = loop
    g.watch += [("never", f"got[{reader}] == {k}"), ("reachable", f"got[{reader}] == {k}")]


def _plant_asymmetry(g: _Gen, wrong_kind: str) -> None:
    """Issue 13's symmetry reproducer, planted: CPU 0 sends CPU 1 an NMI whose handler
    records what only CPU 2 has (a variable its own code sets, or its initial %rbx)."""
    k = g.rng.randint(0x100, 0xfff)
    g.consts.append(k)
    g.features.add("pattern-asymmetry")
    g.call_first[0] = g.helper(["    send_nmi(1);"])
    if wrong_kind == "code":
        g.call_first[2] = g.helper([f"    p0 = {k};"])
        g.nmi_record = "g1 = p0;"
        g.watch += [("never", f"g1 == {k}"), ("reachable", f"g1 == {k}")]
    else:
        g.init_rbx = k
        g.nmi_record = "got = %rbx;"
        g.watch += [("never", f"got[1] == {k}"), ("reachable", f"got[1] == {k}")]


def generate(
    seed: int, rng: random.Random | None = None, fred: bool | None = False,
    stack_arith: bool | None = False,
) -> Case:
    """A random design and property file; the same seed gives the same text. `rng`
    (e.g. hypothesis's `st.randoms()`) draws instead of `random.Random(seed)`; `seed` then
    only names the case. `fred`: deliver by FRED (`_fredify`) always (True), never (the
    default: the pinned seeds of tests/test_fuzz_reductions.py stay as they were), or
    (None) for one seed in four without an extra FRED cannot take, drawn from its own
    generator. `stack_arith`: plant `_plant_stack_arith` (in a design with no other
    pattern and no symmetry declaration) always, never (the default, as for `fred`) or
    (None) in one seed in four, drawn from its own generator."""
    xrng = random.Random(f"{seed}:extras") if rng is None else random.Random(rng.getrandbits(64))
    rng = rng if rng is not None else random.Random(seed)
    symmetry = rng.choices(["none", "valid", "wrong"], [5, 3, 2])[0]
    ncpus = 3 if symmetry != "none" else rng.choice([2, 2, 3])
    extras = frozenset(x for x in EXTRAS if xrng.random() < 0.3)
    g = _Gen(rng, ncpus, symmetry, xrng=xrng, extras=extras)
    g.features |= {f"x-{x}" for x in extras}
    if rng.random() < 0.15:
        # Values equal modulo 2**61 - 1 (Python's int hash): --compact's known collision.
        g.consts += [0, MERSENNE61, 1 + MERSENNE61]
        g.features.add("hash-collision")
    else:
        g.consts.append(rng.randint(4, 0xFFF))
    g.shared_stack = rng.random() < 0.3
    pattern = rng.choice(PATTERNS) if symmetry == "none" and rng.random() < 0.4 else None
    if pattern is not None:
        _plant(g, pattern)
    arng = random.Random(f"{seed}:stack-arith")
    if stack_arith is None:
        stack_arith = arng.random() < 0.25
    if stack_arith and pattern is None and symmetry == "none":
        _plant_stack_arith(g, arng)
    ist = rng.choice(["none", "per-cpu", "shared"])
    name = f"fuzz{seed}"
    out = [f'design {name} "random design, seed {seed}"', f"cpus {ncpus}"]
    wrong_kind = rng.choice(["code", "literal", "init"]) if symmetry == "wrong" else ""
    if symmetry == "valid":
        out.append("symmetric ids tgt masks msk")
    elif symmetry == "wrong":
        out.append("symmetric")
        g.features.add(f"wrong-symmetric-{wrong_kind}")
        if wrong_kind in ("code", "init") and rng.random() < 0.5:
            _plant_asymmetry(g, wrong_kind)
    out.append("stack kstack size 0x1000 per-cpu")
    if ist == "per-cpu":
        out.append("stack ist_stk size 0x1000 per-cpu")
    elif ist == "shared":
        out.append("stack ist_stk size 0x1000")
    if g.shared_stack:
        out.append("stack common size 0x1000")
    if "smap" in extras:
        out.append("stack ustk size 0x1000 owner guest per-cpu")
        if xrng.random() < 0.7:
            out.append("smap")
    if "breakpoint" in extras:
        out.append(f"breakpoint {xrng.choice(['write', 'rw'])} g1 len 8")
    out += ["tss tss per-cpu", "    rsp0 kstack"]
    if ist != "none":
        out.append("    ist 1 ist_stk")
    out += ["end", "idt idt per-cpu"]
    nmi_ist = " ist 1" if ist != "none" and rng.random() < 0.8 else ""
    mc_ist = " ist 1" if ist != "none" and rng.random() < 0.4 else ""
    out += [f"    gate NMI nmi_h interrupt{nmi_ist}", f"    gate #MC mc_h interrupt{mc_ist}"]
    if "breakpoint" in extras or "mov-ss" in extras:
        out.append("    gate #DB db_h interrupt")
    if "smap" in extras:
        out.append("    gate #PF pf_h interrupt")
    out.append("end")
    out += [f"var g0 = {rng.choice([0, 0, 1])}", "var g1 = 0"]
    if symmetry == "valid":
        out += ["var tgt = 0", "var msk = 0"]
    out += ["percpu p0 = 0", "percpu got = 0"]

    def cpu_line(c: str, start: str, extra: str = "") -> str:
        rsp = "top(common)" if g.shared_stack and rng.random() < 0.2 else "top(kstack)"
        if pattern == "shared-stack-write" and c.isdigit() and int(c) in g.asm_start:
            rsp = "top(common)"  # the reader pushes and pops on the shared stack
        iflag = rng.choice(["0", "1"])
        return f"cpu {c} start {start} cpl 0 idt idt tss tss rsp {rsp} if {iflag}{extra}"

    routines: list[str] = []
    if symmetry == "valid" or (symmetry == "wrong" and wrong_kind != "code"):
        out.append(cpu_line("0", "r0"))
        routines.append(g.routine("r0", 0))
        if wrong_kind == "literal":
            # Shared code that names CPU 1 (or 2) by number: not interchangeable.
            g.symmetry = "none"
            routines.append(g.routine("rw", None))
            g.symmetry = symmetry
            routines[-1] = routines[-1].replace("tgt", "1")
        else:
            routines.append(g.routine("rw", None))
        line = cpu_line("*", "rw")
        out.append(line)
        if wrong_kind == "init":
            # Same code, different initial state on CPU 2.
            rbx = g.init_rbx if g.init_rbx is not None else g.k()
            out.insert(len(out) - 1, line.replace("cpu *", "cpu 2") + f" %rbx={rbx}")
    else:
        for c in range(ncpus):
            out.append(cpu_line(str(c), f"r{c}"))
            routines.append(g.routine(f"r{c}", c))
    routines.append(g.handler("nmi_h", "nmi"))
    routines.append(g.handler("mc_h", "mc"))
    if "breakpoint" in extras or "mov-ss" in extras:
        routines.append(g.handler("db_h", "db"))
    if "smap" in extras:
        routines.append("ENTRY(pf_h)\n1:\n        hlt\n        jmp 1b")
    text = "\n".join(out) + "\n\n" + "\n\n".join(routines + g.helpers) + "\n"
    props = _properties(rng, g, name)
    frng = random.Random(f"{seed}:fred")
    if fred is None:
        fred = not extras & FRED_EXCLUDES and frng.random() < 0.25
    if fred and not extras & FRED_EXCLUDES:
        text = _fredify(text, frng, nmi_ist != "", mc_ist != "", "db_h" in text)
        g.features.add("fred")
    return Case(seed, name, text, props, symmetry, frozenset(g.features))


# Extras a FRED design cannot have: SMAP (refused with FRED), and handlers that rewrite
# or copy an IDT frame (a wild IRET, the frame_moved hand-off).
FRED_EXCLUDES = frozenset({"smap", "wild-iret", "frame-moved"})


def _fredify(text: str, rng: random.Random, nmi_level: bool, mc_level: bool, db: bool) -> str:
    """The design delivering by FRED (issue 17): `delivery fred`, IA32_FRED_RSP0 the
    kstack; an NMI or #MC gate with IST gets stack level 1 on the IST stack instead, its
    IA32_FRED_RSP1 set by the `fred` block or (half the time) by each CPU's WRMSR before
    it starts its code (a per-CPU MSR value symmetry must move with its CPU). A ring-0
    entry dispatches on the SS word's vector to the IDT handlers, which return with
    ERETS."""
    levels = [f"    level {v} 1" for v, on in (("NMI", nmi_level), ("#MC", mc_level)) if on]
    by_wrmsr = bool(levels) and rng.random() < 0.5
    block = ["delivery fred", "fred", "    entry fred_r3 fred_r0", "    rsp 0 kstack"]
    if levels and not by_wrmsr:
        block.append("    rsp 1 ist_stk")
    block += [*levels, "end"]
    lines = text.split("\n")
    at = next(i for i, line in enumerate(lines) if line.startswith("tss "))
    lines[at:at] = block
    starts: list[str] = []
    for i, line in enumerate(lines):
        if line.startswith("cpu ") and " start " in line:
            start = line.split(" start ")[1].split()[0]
            if by_wrmsr:
                lines[i] = line.replace(f" start {start} ", f" start {start}_fred ")
                if start not in starts:
                    starts.append(start)
    text = "\n".join(lines).replace("iretq", "erets")
    vectors = [(2, "nmi_h"), (18, "mc_h")] + ([(1, "db_h")] if db else [])
    entry = ["ENTRY(fred_r0)", "        pushq %rax", "        movq  48(%rsp), %rax",
             "        shrq  $32, %rax", "        andq  $0xff, %rax"]
    for k, (vector, _) in enumerate(vectors):
        entry += [f"        cmpq  ${vector}, %rax", f"        je    {k + 1}f"]
    entry += ["        popq  %rax", "9:      hlt", "        jmp   9b"]
    for k, (_, handler) in enumerate(vectors):
        entry += [f"{k + 1}:      popq  %rax", f"        jmp   {handler}"]
    routines = ["\n".join(entry), "ENTRY(fred_r3)\n9:      hlt\n        jmp   9b"]
    for start in starts:
        routines.append("\n".join([
            f"ENTRY({start}_fred)", "        movl  $0x1cd, %ecx",
            "        movabsq $top(ist_stk), %rax", "        movq  %rax, %rdx",
            "        shrq  $32, %rdx", "        wrmsr", "        xorl  %eax, %eax",
            "        xorl  %edx, %edx", f"        jmp   {start}",
        ]))
    return text + "\n" + "\n\n".join(routines) + "\n"


def _budget(rng: random.Random, ncpus: int, most: int) -> str:
    kind = rng.choice(["zero", "one", "list", "list"])
    if kind == "zero":
        return "0"
    if kind == "one" and ncpus == 2:
        return str(rng.randint(1, most))
    budget = [0] * ncpus
    budget[rng.randrange(ncpus)] = rng.randint(1, most)
    return "[" + ", ".join(map(str, budget)) + "]"


def _atom(rng: random.Random, g: _Gen, routines: Sequence[str]) -> str:
    if g.extras and g.xrng.random() < 0.3:
        j = g.xrng.randrange(g.ncpus)
        return g.xrng.choice([
            "any_wild", f"cpu[{j}].wild", "frame_modified_by_handler", f"cpus[{j}].held_db",
            f"cpus[{j}].shadow == 'mov_ss'", "frame_on_guest_stack", "frame_clobbered",
            "any(f.vector == 1 for f in frames)", "any(f.vector == 14 for f in frames)",
        ])
    n = g.ncpus
    i = rng.randrange(n)
    k = g.k()
    pool = [
        f"g0 == {k}",
        f"g1 == {k}",
        f"g0 != {k}",
        f"p0[{i}] == {k}",
        f"got[{i}] == {k}",
        f"got[{i}] != 0",
        f"any(x == {k} for x in got)",
        "all(x == 0 for x in p0)",
        # the variables again: they show the order of cross-CPU writes and reads
        f"g0 == {k}",
        f"g1 == {k}",
        f"p0[{i}] == {k}",
        f"got[{i}] == {k}",
        f"got[{i}] == {k}",
        f"cpus[{i}].halted",
        f"cpus[{i}].nmi_blocked",
        f"cpu[{i}].mcip",
        "all(c.halted for c in cpus if c.id != 0)",
        "any(c.nmi_blocked for c in cpus)",
        f"running({i}, '{rng.choice(routines)}')",
        f"cpus[{i}].routine == '{rng.choice(routines)}'",
        "nmi_frames >= 1",
        "nmi_frames >= 2",
        "frame_clobbered",
        "len(frames) >= 2",
        f"frames_on('kstack[{i}]') >= 1",
        f"any(f.cpu == {i} and f.vector == 2 for f in frames)",
        "count(f.vector == 18 for f in frames) >= 1",
        "assertion_failed",
        "any_shutdown",
        "all_halted",
        "timed_out",
    ]
    return rng.choice(pool)


def _properties(rng: random.Random, g: _Gen, design: str) -> str:
    routines = ["r0", "nmi_h", "mc_h", *(f"r{c}" for c in range(1, g.ncpus))]
    nmi = _budget(rng, g.ncpus, 2 if g.ncpus == 2 else 1)
    mce = _budget(rng, g.ncpus, 1)
    lines = [f'design = "{design}"', f"environment = {{ nmi = {nmi}, mce = {mce} }}", ""]
    kinds = ["always", "never", "never", "reachable", "reachable", "final"]
    count = rng.randint(3, 6)
    planted = list(g.watch)
    for j in range(count + len(planted)):
        if j >= count:
            # In an exploration of their own, without events: one whose properties read
            # only variables is where partial-order reduction applies.
            kind, expr = planted[j - count]
            lines += [
                "[[property]]",
                f'name = "watch-{j - count}"',
                f'kind = "{kind}"',
                f'expr = "{expr}"',
                'expect = "holds"',
                "environment = { nmi = 0, mce = 0 }",
                "",
            ]
            continue
        kind = rng.choice(kinds)
        expr = _atom(rng, g, routines)
        if rng.random() < 0.25:
            # another exploration, with other budgets
            env = f"environment = {{ nmi = {_budget(rng, g.ncpus, 1)}, mce = 0 }}"
            lines += [
                "[[property]]",
                f'name = "p{j}"',
                f'kind = "{kind}"',
                f'expr = "{expr}"',
                'expect = "holds"',
                env,
                "",
            ]
            continue
        r = rng.random()
        if r < 0.25:
            expr = f"{expr} and {_atom(rng, g, routines)}"
        elif r < 0.35:
            expr = f"{expr} or {_atom(rng, g, routines)}"
        elif r < 0.45:
            expr = f"not ({expr})"
        lines += [
            "[[property]]",
            f'name = "p{j}"',
            f'kind = "{kind}"',
            f'expr = "{expr}"',
            'expect = "holds"',
            "",
        ]
    if rng.random() < 0.5:
        lines += [
            "[[property]]",
            'name = "deadlock"',
            'kind = "deadlock_free"',
            'expect = "holds"',
            "",
        ]
    return "\n".join(lines)


# -- running through the command line --------------------------------------------------------

# Runs `checker.cli.main` for each argument list of a JSON spec, in this one process, and
# prints one JSON list of {"code", "stdout", "stderr"}. A Python exception is reported as
# code "crash" with its traceback.
_DRIVER = r"""
import contextlib, io, json, sys, traceback
from pathlib import Path
from checker import cli
from model.system.provider import DesignProvider
spec = json.loads(sys.stdin.read())
out = []
for args in spec["runs"]:
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            code = cli.main(args, DesignProvider(Path(spec["designs"])))
        except SystemExit as e:
            code = e.code
        except BaseException:
            traceback.print_exc()
            code = "crash"
    out.append({"code": code, "stdout": stdout.getvalue(), "stderr": stderr.getvalue()})
sys.stdout.write(json.dumps(out))
"""


def run_cli(
    designs: Path, runs: Sequence[Sequence[str]], timeout: float = 300
) -> list[dict[str, Any]]:
    """Each argument list through the checker's command line, in one fresh subprocess."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("GITHUB_ACTIONS", None)
    env.pop("GITHUB_STEP_SUMMARY", None)
    proc = subprocess.run(
        [sys.executable, "-c", _DRIVER],
        input=json.dumps({"designs": str(designs), "runs": [list(r) for r in runs]}),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=str(designs),
        env=env,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"driver failed ({proc.returncode}): {proc.stderr[-2000:]}")
    result: list[dict[str, Any]] = json.loads(proc.stdout)
    return result


@dataclass(frozen=True)
class Finding:
    """One disagreement between the plain explorer and a reduced run."""

    seed: int
    variant: str
    kind: str  # verdict | replay | counts | crash | rejected | error
    prop: str  # property name ("" for the whole run)
    detail: str

    def key(self) -> tuple[str, str]:
        return (self.variant, self.kind)


@dataclass
class Outcome:
    case: Case
    findings: list[Finding]
    baseline: dict[str, Any] | None  # the plain run's JSON (None when rejected)
    runs: int


def _parse(result: dict[str, Any]) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(result["stdout"])
    except (json.JSONDecodeError, TypeError):
        return None
    return data


def compare(
    case: Case,
    variants: Sequence[str] = tuple(VARIANTS),
    max_states: int = MAX_STATES,
    replay: bool = True,
    workdir: Path | None = None,
) -> Outcome:
    """Runs the case plain and with each variant's options and lists the disagreements."""
    with tempfile.TemporaryDirectory(prefix="fuzz-") as tmp:
        folder = Path(workdir or tmp)
        toml = case.write(folder)
        common = [str(toml), "--format", "json", "--max-states", str(max_states)]
        names = ["plain", *variants]
        opts = [BASELINE, *(VARIANTS[v] for v in variants)]
        runs = [
            [*common, *o, "--report-dir", str(folder / f"reports-{n}")]
            for n, o in zip(names, opts, strict=True)
        ]
        results = run_cli(folder, runs)
        findings: list[Finding] = []
        parsed = [_parse(r) for r in results]
        base = parsed[0]
        nruns = len(runs)
        if results[0]["code"] == "crash" or base is None:
            findings.append(Finding(case.seed, "plain", "crash", "", results[0]["stderr"][-1500:]))
            return Outcome(case, findings, None, nruns)
        if base.get("errors"):
            # The plain run rejects the input: every variant must reject it too.
            for n, p in zip(names[1:], parsed[1:], strict=True):
                if p is None or not p.get("errors"):
                    findings.append(
                        Finding(
                            case.seed,
                            n,
                            "rejected",
                            "",
                            "plain rejects the input, this variant does not",
                        )
                    )
            return Outcome(case, findings, None, nruns)
        replays: list[tuple[str, str, str]] = []  # (variant, property, trace json)
        for n, r, p in zip(names[1:], results[1:], parsed[1:], strict=True):
            if r["code"] == "crash" or p is None:
                findings.append(
                    Finding(case.seed, n, "crash", "", (r["stderr"] or r["stdout"])[-1500:])
                )
                continue
            if p.get("errors"):
                kind = "rejected"
                findings.append(Finding(case.seed, n, kind, "", json.dumps(p["errors"])[:500]))
                continue
            findings += _compare_results(case, n, base, p)
            for res in p["results"]:
                traces = res.get("traces") or {}
                if res["verdict"] in ("violated", "holds") and traces.get("json"):
                    replays.append((n, res["name"], traces["json"]))
        if replay and replays:
            again = run_cli(folder, [["replay", t, "--format", "json"] for _, _, t in replays])
            for (n, prop, _), r in zip(replays, again, strict=True):
                if r["code"] != 0:
                    findings.append(
                        Finding(
                            case.seed,
                            n,
                            "replay",
                            prop,
                            f"its trace does not replay on the unreduced design "
                            f"(exit {r['code']}): " + (r["stdout"] + r["stderr"])[-600:],
                        )
                    )
            nruns += len(replays)
        return Outcome(case, findings, base, nruns)


def run_plain(case: Case, max_states: int = MAX_STATES) -> dict[str, str] | str:
    """The plain run's verdict per property, or "rejected" (bad input, exit 2 before
    exploring) or "crash"."""
    with tempfile.TemporaryDirectory(prefix="fuzz-") as tmp:
        folder = Path(tmp)
        toml = case.write(folder)
        [result] = run_cli(
            folder,
            [
                [
                    str(toml),
                    "--format",
                    "json",
                    "--max-states",
                    str(max_states),
                    *BASELINE,
                    "--report-dir",
                    str(folder / "reports"),
                ]
            ],
        )
    data = _parse(result)
    if result["code"] == "crash" or data is None:
        return "crash"
    if data.get("errors"):
        return "rejected"
    return {r["name"]: r["verdict"] for r in data["results"]}


def _compare_results(
    case: Case, variant: str, base: dict[str, Any], other: dict[str, Any]
) -> list[Finding]:
    out: list[Finding] = []
    theirs = {r["name"]: r for r in other["results"]}
    for mine in base["results"]:
        name = mine["name"]
        r = theirs.get(name)
        if r is None:
            out.append(Finding(case.seed, variant, "crash", name, "no result for this property"))
            continue
        a, b = mine["verdict"], r["verdict"]
        decided = {"holds", "violated"}
        if a in decided and b in decided and a != b:
            out.append(
                Finding(
                    case.seed,
                    variant,
                    "verdict",
                    name,
                    f"plain {a} ({mine['states']} states), {variant} {b} ({r['states']} states)",
                )
            )
        elif (a == "error") != (b == "error") and "incomplete" not in (a, b):
            out.append(
                Finding(
                    case.seed,
                    variant,
                    "error",
                    name,
                    f"plain {a}, {variant} {b}: "
                    + (r["message"] if b == "error" else mine["message"])[:600],
                )
            )
        elif variant in SAME_COUNTS and a == b and a in decided:
            same = (mine["states"], mine["transitions"], mine["trace_length"])
            theirs_ = (r["states"], r["transitions"], r["trace_length"])
            if same != theirs_:
                out.append(
                    Finding(
                        case.seed,
                        variant,
                        "counts",
                        name,
                        f"plain (states, transitions, trace) {same}, {variant} {theirs_}",
                    )
                )
    return out


# The known bugs (issue 13 and tests/test_reduction_soundness.py), by the planted pattern
# or feature that shows them.
_PLANTED_POR = {
    "pattern-stack-write": "por-stack-write (issue 13 #1)",
    "pattern-per-cpu-read": "por-per-cpu-read",
    "pattern-stack-read": "por-mem-read",
}


def explain(case: Case, finding: Finding) -> str:
    """Which known bug a disagreement is an instance of, or "UNEXPLAINED"."""
    v, kind = finding.variant, finding.kind
    if "symmetry" in v or v == "all":
        if case.symmetry == "wrong":
            return "wrong-symmetry (issue 13 #3)"
        if kind == "error" and "CodeAddr" in finding.detail:
            return "symmetry-mixed-values"
    compact = "compact" in v or v == "all"
    if compact and "hash-collision" in case.features and kind in ("counts", "verdict", "replay"):
        return "compact-hash (issue 13 #2)"
    por = "por" in v or v == "all"
    if por and kind in ("verdict", "replay") and finding.prop.startswith("watch-"):
        for feature, bug in _PLANTED_POR.items():
            if feature in case.features:
                return bug
    return "UNEXPLAINED"


# -- shrinking -------------------------------------------------------------------------------


def _persists(case: Case, finding: Finding, max_states: int) -> bool:
    try:
        out = compare(
            case, [finding.variant], max_states=max_states, replay=finding.kind == "replay"
        )
    except (RuntimeError, subprocess.TimeoutExpired):
        return False
    return any(
        f.kind == finding.kind and (not finding.prop or f.prop == finding.prop)
        for f in out.findings
    )


def _only_property(text: str, name: str) -> str:
    blocks = text.split("[[property]]")
    keep = [b for b in blocks[1:] if f'name = "{name}"' in b]
    return "[[property]]".join([blocks[0], *keep]) if keep else text


def shrink(case: Case, finding: Finding, max_states: int = MAX_STATES, budget: int = 150) -> Case:
    """A smaller case showing the same kind of disagreement: keep only the property,
    then drop design lines (chunks, then single lines) while it persists. At most
    `budget` re-runs."""
    tries = 0
    if finding.prop:
        smaller = replace(case, properties=_only_property(case.properties, finding.prop))
        tries += 1
        if _persists(smaller, finding, max_states):
            case = smaller
    # Whole routines and tables first (the design's blank-line separated blocks).
    blocks = case.design.split("\n\n")
    i = 1
    while i < len(blocks) and tries < budget:
        tries += 1
        smaller = replace(case, design="\n\n".join(blocks[:i] + blocks[i + 1 :]))
        if _persists(smaller, finding, max_states):
            blocks = blocks[:i] + blocks[i + 1 :]
            case = smaller
        else:
            i += 1
    lines = case.design.split("\n")
    chunk = max(1, len(lines) // 4)
    while chunk >= 1 and tries < budget:
        i = 1  # never the `design` line
        changed = False
        while i < len(lines) and tries < budget:
            trial = lines[:i] + lines[i + chunk :]
            if not any(x.strip() for x in lines[i : i + chunk]):
                lines = trial
                changed = True
                continue
            tries += 1
            smaller = replace(case, design="\n".join(trial))
            if _persists(smaller, finding, max_states):
                lines = trial
                case = smaller
                changed = True
            else:
                i += chunk
        if not changed:
            chunk //= 2
    return case
