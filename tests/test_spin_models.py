"""The Promela translations in benchmarks/spin/ ask SPIN the checker's questions and get
the checker's answers (benchmarks/compare_spin.py).

The end-to-end tests need `spin` and `gcc` (Debian: `apt-get install -y spin gcc`) and are
skipped without them; they run the smallest questions with gcc -O0 (the verdicts do not
depend on optimisation). Besides the verdicts they check that the translation still mirrors
the design step for step: SPIN's breadth-first counterexample is as long as the checker's
trace, and when a property holds both explore the same number of states (SPIN's nominal
count is the checker's plus the state before `init`). If a design changes, those two
checks fail until benchmarks/spin/*.pml follow it.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location(
    "compare_spin", ROOT / "benchmarks" / "compare_spin.py"
)
assert _spec is not None and _spec.loader is not None
compare_spin = importlib.util.module_from_spec(_spec)
sys.modules["compare_spin"] = compare_spin
_spec.loader.exec_module(compare_spin)

Question = compare_spin.Question

needs_spin = pytest.mark.skipif(
    shutil.which("spin") is None or shutil.which("gcc") is None,
    reason="SPIN comparison needs `spin` and `gcc` on PATH (apt-get install -y spin gcc)",
)

SMALL = [
    Question("properties/ist_reentrancy.toml", "fake-nmi-then-real-nmi-clobbers"),
    Question("properties/ist_reentrancy.toml", "real-nmi-nesting-is-latched"),
    Question("properties/ist_reentrancy.toml", "iret-inside-nmi-unblocks-nesting"),
    Question("properties/kexec_crash.toml", "v1-shootdown-waits-full-timeout", cpus=2),
    Question("properties/kexec_crash.toml", "v1-fixed-all-cpus-acknowledge", cpus=2),
]


@needs_spin
@pytest.mark.parametrize("question", SMALL, ids=lambda q: q.label)
def test_spin_agrees_with_the_checker(question: Question) -> None:
    row = compare_spin.compare(question, cflags=("-O0",))
    checker, bfs, dfs = row.verdicts
    assert (checker, bfs, dfs) == (row.expected,) * 3, (
        f"{question.label}: expected {row.expected}, checker {checker}, SPIN BFS {bfs} "
        f"({row.spin['bfs']['message']}), SPIN DFS {dfs} ({row.spin['dfs']['message']})"
    )
    if checker == "violated":
        assert row.spin["bfs"]["trail_steps"] == row.checker["trace_length"], (
            "SPIN's shortest counterexample has another length than the checker's: "
            "benchmarks/spin/*.pml no longer mirror the design step for step"
        )
    elif not row.checker.get("symmetric"):
        assert row.same_space, (
            f"SPIN explored {row.spin['bfs']['nominal']} - 1 states, the checker "
            f"{row.checker['states']}: benchmarks/spin/*.pml no longer mirror the design"
        )


def test_the_questions_translate_to_promela_flags() -> None:
    flags = {
        q.label: compare_spin.promela_flags(p.design, p.variant, p.environment)
        for q in compare_spin.QUESTIONS
        for p in [compare_spin.load_property(q)]
    }
    assert flags["kexec_crash:v1-shootdown-waits-full-timeout"] == [
        "-DPATCH_V1", "-DNCPU=3", "-DNMI_CPU0=0", "-DNMI_CPU1=1", "-DNMI_OTHERS=0",
        "-DMCE_CPU0=0", "-DMCE_CPU1=0", "-DMCE_OTHERS=0",
    ]
    assert "-DNCPU=4" in flags["kexec_crash:v1-fixed-all-cpus-acknowledge (4 CPUs)"]
    assert flags["ist_reentrancy:fake-nmi-then-real-nmi-clobbers"] == [
        "-DIST_XEN", "-DCONTEXT_BOTH", "-DNMI=1", "-DEXTERNAL=1", "-DEXT_VECTOR=2", "-DPIC",
    ]
    assert flags["ist_reentrancy:iret-inside-nmi-unblocks-nesting"] == [
        "-DIST_XEN", "-DCONTEXT_BOTH", "-DNMI=2", "-DFAULTS=1",
    ]


def test_untranslated_variants_are_refused() -> None:
    with pytest.raises(compare_spin.Unsupported):
        compare_spin.promela_flags("xen_kexec", {"patch": "cpumask"}, {"nmi": [0, 1, 0]})
    with pytest.raises(compare_spin.Unsupported):
        compare_spin.promela_flags("xen_ist", {}, {"double_faults": 1})
    with pytest.raises(compare_spin.Unsupported):
        compare_spin.promela_flags("xen_boot", {}, {})


def test_per_cpu_budgets_resize_like_the_property_file() -> None:
    assert compare_spin.resize([0, 1, 0], 2) == [0, 1]
    assert compare_spin.resize([0, 1, 0], 4) == [0, 1, 0, 0]


def test_pan_output_verdicts() -> None:
    violated = "pan:1: assertion violated  !( !( !(timed_out))) (at depth 81)\n" \
        "State-vector 312 byte, depth reached 81, errors: 1\n     7256 states, stored\n" \
        "\t    7223 nominal states (stored-atomic)\n"
    r = compare_spin.parse_pan(violated, "never_timed_out")
    assert (r["verdict"], r["stored"], r["nominal"]) == ("violated", 7256, 7223)
    claim = "pan:1: claim violated! (at depth 12)\nState-vector 40 byte, errors: 1\n"
    assert compare_spin.parse_pan(claim, "c")["verdict"] == "violated"
    model = "pan:1: assertion violated ((t_v==1)&&model_ok) (at depth 32)\nerrors: 1\n"
    assert compare_spin.parse_pan(model, "c")["verdict"] == "error"
    holds = "State-vector 168 byte, depth reached 104, errors: 0\n      614 states, stored\n" \
        "\t     611 nominal states (stored-atomic)\n"
    assert compare_spin.parse_pan(holds, "c")["verdict"] == "holds"
    deep = holds + "error: max search depth too small\n"
    assert compare_spin.parse_pan(deep, "c")["verdict"] == "incomplete"


def test_trail_steps_skip_init(tmp_path: Path) -> None:
    trail = tmp_path / "m.pml.trail"
    trail.write_text("-2:2:-2\n-4:-4:-4\n1:1:10\n2:1:11\n3:2:5\n4:3:7\n5:2:9\n")
    assert compare_spin.trail_steps(trail) == 3
    assert compare_spin.trail_steps(tmp_path / "none.trail") is None


# `/* :LINE text */` in a #define's comment: the design line the Promela step stands for.
_REF = re.compile(r"(?<![\w.]):(\d+)(?:-\d+)? ([^:*]*?)\s*(?:\*/| = | \(|$)")


@pytest.mark.parametrize(
    ("pml", "design"),
    [("kexec.pml", "xen_kexec.design"), ("ist.pml", "xen_ist.design")],
)
def test_promela_steps_cite_their_design_lines(pml: str, design: str) -> None:
    """Every step's comment names the design line it translates; if the design moves,
    the citations must follow (the first characters of the cited text are on that line)."""
    lines = (ROOT / "model" / "designs" / design).read_text().splitlines()
    cited = 0
    wrong = []
    for line in (ROOT / "benchmarks" / "spin" / pml).read_text().splitlines():
        if not line.startswith("#define") or "/*" not in line:
            continue
        for m in _REF.finditer(line.split("/*", 1)[1]):
            number, text = int(m.group(1)), " ".join(m.group(2).split())[:8]
            if not text:
                continue
            cited += 1
            source = " ".join(lines[number - 1].split()) if number <= len(lines) else ""
            if text not in source:
                wrong.append(f"{pml}: {line.strip()!r} cites {design}:{number}: {source!r}")
    assert cited > 50
    assert not wrong, "\n".join(wrong)
