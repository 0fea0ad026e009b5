"""Every resource is bounded inside a step (issue 13, must-have 3; docs/properties.md#limits).

Each reproducer from the issue runs through the command line (`checker.cli.main` on a
one-property file naming a small design by path) and must end quickly with an honest
verdict: `incomplete` with the reason when a time bound or a solver `unknown` stops it,
`error` with the design's `path:line` when a documented limit refuses a step — never
`holds`, never a hang.
"""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import pytest

from checker import cli, limits
from checker import symbolic as sym
from checker.explore import Bounds, Check, explore, resident_memory
from checker.expr import MAX_ITEMS, EvalError, compile_expr
from checker.verdict import Kind, Verdict
from model.system.interp import MAX_CHOICES, MAX_REP_WORDS
from model.system.provider import DesignProvider

HEAD = """\
cpus 1
stack kstack size 0x1000 per-cpu
var x = 0
cpu 0 start main cpl 0 rsp top(kstack)
"""


def run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], design: str, expr: str,
    expect: str = "holds", environment: str = "", args: tuple[str, ...] = (),
) -> tuple[int, str, str, float]:
    """Check `never EXPR` (unless EXPR starts with a kind) on `design`; returns the exit
    code, stdout, stderr and the CPU seconds it took (CPU: a loaded machine does not
    make a bounded step look unbounded)."""
    (tmp_path / "t.design").write_text(textwrap.dedent(design))
    kind = "never"
    if ":" in expr:
        kind, expr = expr.split(":", 1)
    (tmp_path / "t.toml").write_text(
        f'design = "./t.design"\n{environment}\n[[property]]\nname = "p"\n'
        f'kind = "{kind}"\nexpr = "{expr}"\nexpect = "{expect}"\n'
    )
    capsys.readouterr()
    started = time.process_time()
    code = cli.main([str(tmp_path / "t.toml"), "--report-dir", str(tmp_path / "r"),
                     "--workers", "1", *args])
    seconds = time.process_time() - started
    out = capsys.readouterr()
    return code, out.out, out.err, seconds


def refused(err: str, code: int, path: Path, line: int, *words: str) -> None:
    """The verdict is `error` (exit 2), the message names the design's path:line."""
    assert code == 2, err
    assert "Traceback" not in err
    assert f"{path}:{line}:" in err, err
    for w in words:
        assert w in err, err


# -- repeat counts and enumerations ----------------------------------------------------------


REP = HEAD + """\
ENTRY(main)
        movq $-1, %rcx
        leaq top(kstack)-8, %rsi
        leaq top(kstack)-16, %rdi
        rep movsq
        jmp fin
function fin {
    x = 1;
    stop();
}
"""


# A copy that never faults: from the stack into guest memory (the lower half, no region).
LONG_COPY = REP.replace("leaq top(kstack)-16, %rdi", "movq $0x40000000, %rdi")


def test_rep_movsq_with_a_huge_rcx_stops_at_the_timeout_inside_the_step(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """RCX = 2^64-1: the copy iterates (by chunks) and looks at --timeout between them, so
    the one step ends `incomplete` with the reason, naming the instruction, not a hang and
    not a refusal (issue 13, must-have 3)."""
    code, out, err, seconds = run(tmp_path, capsys, LONG_COPY, "x == 1", "violated",
                                  args=("--timeout", "2"))
    assert code == 3, out + err
    assert "incomplete" in out and "holds" not in out
    assert "rep movsq" in out + err and f"{tmp_path / 't.design'}:9" in out + err, out + err
    assert "Traceback" not in err
    assert seconds < 30


def test_rep_movsq_with_a_huge_rcx_stops_at_the_memory_bound_inside_the_step(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without a --timeout, the copy's growing memory meets --max-memory inside the step:
    `incomplete` with the memory bound as the reason."""
    used = resident_memory() or 0
    bound = f"{(used + (48 << 20)) >> 20}M"
    code, out, err, seconds = run(tmp_path, capsys, LONG_COPY, "x == 1", "violated",
                                  args=("--max-memory", bound))
    assert code == 3, out + err
    assert "max_memory" in out + err and "rep movsq" in out + err, out + err
    assert seconds < 60


def test_rep_movsq_above_the_whole_copy_limit_copies_by_chunks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A copy longer than MAX_REP_WORDS completes (by chunks) with the CPU's result: the
    last word lands and RCX, RSI and RDI advance by the count."""
    count = MAX_REP_WORDS + 5
    design = HEAD + f"""\
ENTRY(main)
        movq $0x12345, 0x10000000
        movq ${count}, %rcx
        movq $0x10000000 - {(count - 1) * 8}, %rsi
        movq $0x30000000, %rdi
        rep movsq
        cmpq $0, %rcx
        jne  halt
        cmpq $0x30000000 + {count * 8}, %rdi
        jne  halt
        movq 0x30000000 + {(count - 1) * 8}, %rax
        cmpq $0x12345, %rax
        jne  halt
        jmp  fin
function fin {{
    x = 1;
    stop();
}}
function halt {{
    stop();
}}
"""
    code, out, err, _ = run(tmp_path, capsys, design, "x == 1", "violated")
    assert code == 0, out + err


def test_rep_movsq_below_the_limit_still_copies(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    small = REP.replace("movq $-1, %rcx", "movq $1, %rcx")
    code, out, err, _ = run(tmp_path, capsys, small, "x == 1", "violated")
    assert code == 0, out + err


@pytest.mark.parametrize(
    ("declaration", "statement"),
    [
        ("", "choose_range(x, 0, 0xffffffffffffffff);"),
        ("input big = 0..0xffffffffffffffff\n", "input(x, big);"),
    ],
)
def test_huge_enumerations_are_refused_at_their_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], declaration: str, statement: str
) -> None:
    design = HEAD + declaration + f"function main {{\n    {statement}\n    stop();\n}}\n"
    code, _out, err, seconds = run(tmp_path, capsys, design, "x == 5", "violated",
                                  args=("--timeout", "5"))
    line = 5 if declaration else 6  # the input declaration, or the choose_range
    refused(err, code, tmp_path / "t.design", line, str(MAX_CHOICES))
    assert seconds < 30


def test_a_huge_input_range_is_fine_when_symbolic(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    design = HEAD + "input big = 0..0xffffffffffffffff\n" + (
        "function main {\n    input(x, big);\n    stop();\n}\n"
    )
    code, out, err, _ = run(tmp_path, capsys, design, "x == 5", "violated",
                            environment='environment = { symbolic = ["big"] }')
    assert code == 0, out + err


def test_an_enumeration_at_the_limit_is_accepted(tmp_path: Path) -> None:
    file = tmp_path / "t.design"
    file.write_text(HEAD + f"input big = 1..{MAX_CHOICES}\n" + (
        "function main {\n    input(x, big);\n    stop();\n}\n"
    ))
    system = DesignProvider().load(str(file), {}, {})
    assert len(system.actions(system.init_states()[0])) == MAX_CHOICES


# -- z3 ----------------------------------------------------------------------------------------

# a * b == a prime, with 2 <= a, b < 2**32: the product cannot wrap, so it is unsatisfiable,
# and proving it is factoring (z3 takes far longer than any test).
NONLINEAR = HEAD + """\
var a = 0
var b = 0
input ina = 2..0xffffffff
input inb = 2..0xffffffff
function main {
    input(a, ina);
    input(b, inb);
    if (a * b == 0x7fffffffffffffe7) {
        x = 1;
    }
    stop();
}
"""
SYMBOLIC = 'environment = { symbolic = ["ina", "inb"] }'


def test_a_z3_query_honours_the_timeout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err, seconds = run(tmp_path, capsys, NONLINEAR, "x == 1", "holds", SYMBOLIC,
                                  ("--timeout", "2"))
    assert code == 3, out + err  # incomplete, not holds
    assert "INCOMPLETE" in out and "timeout=2.0s reached" in out and "z3" in out, out
    assert seconds < 20


def test_a_z3_unknown_makes_the_verdict_incomplete(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits, "Z3_QUERY_SECONDS", 0.5)
    code, out, err, seconds = run(tmp_path, capsys, NONLINEAR, "x == 1", "holds", SYMBOLIC)
    assert code == 3, out + err
    assert "z3 could not decide a path condition within 0.5s" in out, out
    assert seconds < 20


def test_the_input_ranges_of_a_symbolic_state_stay_in_its_path_condition(
    tmp_path: Path,
) -> None:
    """Regression: a symbolic state's step replaced the path condition and dropped the
    range of an input read in that step, so z3 found a 'witness' outside the range."""
    file = tmp_path / "t.design"
    file.write_text(NONLINEAR)
    system = DesignProvider().load(str(file), {}, {"symbolic": ["ina", "inb"]})
    state = system.init_states()[0]
    for _ in range(2):
        state = system.next_state(state, system.actions(state)[0])
    conds = set(map(repr, state.path))
    assert {"ule(0x2, ina)", "ule(ina, 0xffffffff)", "ule(0x2, inb)",
            "ule(inb, 0xffffffff)"} <= conds, conds


def test_solver_check_refuses_an_unknown_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever z3 leaves open raises ResourceLimit; it is never read as sat or unsat."""
    solver = sym.Solver()
    monkeypatch.setattr(limits, "Z3_QUERY_SECONDS", 0.001)
    a, b = sym.var("a"), sym.var("b")
    hard = [sym.ule(2, a), sym.ule(a, 0xFFFFFFFF), sym.ule(2, b), sym.ule(b, 0xFFFFFFFF),
            sym.eq(sym.mul(a, b), 0x7FFFFFFFFFFFFFE7)]
    with pytest.raises(limits.ResourceLimit, match="z3 could not decide"):
        solver.satisfiable(hard)
    # nothing was cached: asking again asks z3 again
    with pytest.raises(limits.ResourceLimit):
        solver.satisfiable(hard)


# -- the explorer ------------------------------------------------------------------------------


class _SlowStep:
    """A one-state-per-step chain whose second step checks the deadline in a loop, as a
    long step does."""

    def init_states(self) -> list[int]:
        return [0]

    def actions(self, state: int) -> list[str]:
        return ["step"] if state < 3 else []

    def next_state(self, state: int, action: str) -> int:
        if state == 1:
            while True:
                limits.check_time()
                time.sleep(0.01)
        return state + 1

    def is_terminal(self, state: int) -> bool:
        return True

    def vocabulary(self, state: int) -> dict[str, int]:
        return {"n": state}

    def vocabulary_names(self) -> dict[str, str]:
        return {"n": "the state"}


def test_a_deadline_inside_a_step_makes_undecided_checks_incomplete() -> None:
    started = time.process_time()
    result = explore(
        _SlowStep(),
        [Check(Kind.NEVER, compile_expr("n == 3").evaluate, "p"),
         Check(Kind.REACHABLE, compile_expr("n == 1").evaluate, "q")],
        Bounds(timeout=0.5),
    )
    assert time.process_time() - started < 10
    never, reach = result.outcomes
    assert never.verdict is Verdict.INCOMPLETE
    assert "timeout=0.5s reached inside a step" in never.message
    assert reach.verdict is Verdict.HOLDS  # decided before the bound: kept
    assert not result.complete


def test_no_deadline_outside_an_exploration() -> None:
    assert limits.remaining() is None
    limits.check_time()  # no --timeout: never raises
    assert limits.query_seconds() == limits.Z3_QUERY_SECONDS


# -- property expressions ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "words"),
    [
        ('len(("x"*1000000)*3000)', "more than"),
        ('len("x"*60000 + "y"*60000)', "joining"),
        ('count(count(1 for b in "y"*60000) for a in "x"*60000)', f"{MAX_ITEMS} items"),
        ("(1 << 4096) * (1 << 4096) * (1 << 4096) * (1 << 4096) * (1 << 4096) * "
         "(1 << 4096) * (1 << 4096) * (1 << 4096) * (1 << 4096) * (1 << 4096) * "
         "(1 << 4096) * (1 << 4096) * (1 << 4096) * (1 << 4096) * (1 << 4096) * "
         "(1 << 4096) * (1 << 4096)", "bits"),
    ],
)
def test_expression_evaluation_is_bounded(source: str, words: str) -> None:
    expr = compile_expr(source)
    started = time.process_time()
    with pytest.raises(EvalError, match=words):
        expr.evaluate({})
    assert time.process_time() - started < 15


def test_the_item_budget_is_per_evaluation() -> None:
    expr = compile_expr('count(1 for a in s)')
    text = "x" * (MAX_ITEMS * 3 // 4)
    for _ in range(2):  # more than MAX_ITEMS in all
        assert expr.evaluate({"s": text}) == len(text)


def test_expression_generators_honour_the_timeout() -> None:
    expr = compile_expr('count(count(1 for b in s) for a in s)')
    with limits.deadline(time.perf_counter() - 1, 1.0), pytest.raises(
        limits.ResourceLimit, match="evaluating a property expression"
    ):
        expr.evaluate({"s": "x" * 5000})


def test_a_huge_expression_in_a_property_file_is_an_error_not_a_hang(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    design = HEAD + "function main {\n    x = 1;\n    stop();\n}\n"
    code, out, err, seconds = run(
        tmp_path, capsys, design, "len((\\\"x\\\"*1000000)*3000) == 1", "holds"
    )
    assert code == 2, out + err
    assert "ERROR" in out and "more than" in out, out
    assert seconds < 30


# -- macro expansion ------------------------------------------------------------------------------


def _nested_macros(levels: int, calls: int) -> str:
    lines = []
    for k in range(levels):
        inner = f"        M{k + 1}" if k < levels - 1 else "        nop"
        lines += [f".macro M{k}", *([inner] * calls), ".endm"]
    return HEAD + "\n".join(lines) + "\nENTRY(main)\n        M0\n        hlt\n"


def test_ten_nested_macros_are_not_recursive(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err, _ = run(tmp_path, capsys, _nested_macros(20, 1), "x == 1")
    assert code == 0, out + err
    assert "recursive" not in err


def test_a_recursive_macro_names_its_cycle(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    design = HEAD + ".macro A\n        B\n.endm\n.macro B\n        A\n.endm\n" + (
        "ENTRY(main)\n        A\n"
    )
    code, _out, err, _ = run(tmp_path, capsys, design, "x == 1")
    refused(err, code, tmp_path / "t.design", 9, "macro A expands recursively (A -> B -> A)")


def test_a_macro_blow_up_stops_quickly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Six levels of ten calls each: a million lines, refused as they are made."""
    code, out, err, seconds = run(tmp_path, capsys, _nested_macros(6, 10), "x == 1")
    assert code == 2, out + err
    assert "the expansion is over" in err and "Traceback" not in err, err
    assert seconds < 20


def test_macros_nested_too_deep_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _out, err, _ = run(tmp_path, capsys, _nested_macros(80, 1), "x == 1")
    assert code == 2 and "nest more than 64 deep" in err, err


def test_a_cpp_blow_up_stops_quickly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    defines = "#define A0 nop\n" + "".join(
        f"#define A{k} A{k - 1};A{k - 1}\n" for k in range(1, 41)
    )
    design = HEAD + defines + "ENTRY(main)\n        A40\n"
    code, _out, err, seconds = run(tmp_path, capsys, design, "x == 1")
    refused(err, code, tmp_path / "t.design", 47, "cpp macro expansion is over")
    assert seconds < 20
