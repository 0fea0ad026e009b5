"""Differential fuzzing of the reductions with hypothesis (issue 13, must-have 2).

The same generator as tests/test_fuzz_reductions.py (`tests/random_designs.generate`),
driven by hypothesis's `st.randoms()` instead of a seed: every draw the generator makes
(CPU count, symmetric declaration, stacks, routines, instructions, cross-CPU writes,
IPIs, budgets, properties over the vocabulary) comes from hypothesis, so a disagreement
is shrunk to a smaller design and property file. Each drawn case runs through the
command line plain (no reduction, one worker) and with every option and combination of
`tests.random_designs.VARIANTS` (`--por`, `--symmetry auto`, `--compact`, `--workers 2`,
...): decided verdicts must agree, counterexamples found under a reduction must replay on
the unreduced design, and `--compact`/`--workers` keep the counts (`compare`). A wrong
`symmetric` declaration must be refused by every variant alike.

Budgets: FAST_EXAMPLES cases (derandomized, so every CI run tries the same ones) in the
fast subset; SLOW_EXAMPLES fresh cases with every variant in the full suite. Each test
prints how many designs it tried (`pytest -s` or `-rP` shows it).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st

from tests.random_designs import VARIANTS, Case, Finding, compare, generate

FAST_EXAMPLES = 2
FAST_VARIANTS = ("por", "symmetry", "compact", "workers2", "all")
FAST_MAX_STATES = 1500
SLOW_EXAMPLES = 10  # every CI run (the full suite); more: benchmarks/fuzz_reductions.py

_TRIED: dict[str, list[str]] = {}


@st.composite
def cases(draw: Any) -> Case:
    """A random design and property file; hypothesis makes every random choice."""
    label = draw(st.integers(min_value=0, max_value=99_999))
    rng = draw(st.randoms(use_true_random=False, note_method_calls=False))
    return generate(label, rng)


def _disagreements(
    case: Case, variants: tuple[str, ...], max_states: int, budget: str
) -> list[Finding]:
    _TRIED.setdefault(budget, []).append(case.name)
    event(f"symmetry={case.symmetry}")
    note(case.design)
    note(case.properties)
    outcome = compare(case, variants, max_states=max_states)
    if outcome.baseline is None and case.symmetry == "wrong" and not outcome.findings:
        return []  # a wrong `symmetric` declaration, refused by every variant alike
    assert outcome.baseline is not None, "the plain run rejected a generated design"
    return outcome.findings


def _report(budget: str) -> None:
    tried = _TRIED.get(budget, [])
    print(f"\nhypothesis fuzz ({budget}): {len(tried)} designs tried")


_COMMON: dict[str, Any] = {
    "deadline": None,
    "database": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
}


@settings(max_examples=FAST_EXAMPLES, derandomize=True, **_COMMON)
@given(cases())
def _fast(case: Case) -> None:
    assert _disagreements(case, FAST_VARIANTS, FAST_MAX_STATES, "fast") == []


@settings(max_examples=SLOW_EXAMPLES, print_blob=True, **_COMMON)
@given(cases())
def _slow(case: Case) -> None:
    assert _disagreements(case, tuple(VARIANTS), 4000, "slow") == []


def test_reductions_agree_on_hypothesis_designs() -> None:
    _fast()
    _report("fast")
    assert len(_TRIED["fast"]) >= 1


@pytest.mark.slow
def test_reductions_agree_on_more_hypothesis_designs() -> None:
    _slow()
    _report("slow")
    assert len(_TRIED["slow"]) >= SLOW_EXAMPLES // 2


def test_the_strategy_draws_every_class_of_design() -> None:
    """The strategy reaches what the seeded generator does (no exploration: cheap)."""
    seen: set[str] = set()
    features: set[str] = set()

    @settings(max_examples=60, derandomize=True, **_COMMON)
    @given(cases())
    def draw(case: Case) -> None:
        seen.add(case.symmetry)
        features.update(case.features)
        assert case.design.startswith("design ")
        assert "[[property]]" in case.properties

    draw()
    assert seen == {"none", "valid", "wrong"}
    assert {"cross-stack-write", "nmi-ipi", "cross-percpu-write"} <= features
