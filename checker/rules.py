"""The property rules, in one place: which state decides a property, and how.

The explorer (`checker.explore`), the replay of a stored trace (`checker.replay`) and the
concrete re-run of a symbolic witness (`checker.run`) all judge states through these.

- `always EXPR`: a state where EXPR is false violates it; exhaustive exploration holds.
- `never EXPR`: a state where EXPR is true violates it; exhaustive exploration holds.
- `reachable EXPR`: a state where EXPR is true is a witness (holds); exhaustive
  exploration without one violates it.
- `final EXPR`: a state without an enabled action where EXPR is false violates it.
- `deadlock_free`: a state without an enabled action that the model does not call
  terminal violates it.

A symbolic value (a `checker.symbolic.Term`) is decided by the model's solver against the
state's path condition (`Symbolic.possible`): `always`/`final` fail when EXPR can be
false, `never` fails and `reachable` is witnessed when EXPR can be true. Never `bool(Term)`.
"""

from __future__ import annotations

from typing import Any

from checker.expr import EvalError
from checker.interface import Symbolic
from checker.symbolic import Term, lnot, truth
from checker.verdict import Kind, Verdict

# Discovery kinds: decided by the state alone, when EXPR has this truth value.
DECIDING_VALUE: dict[Kind, bool] = {Kind.ALWAYS: False, Kind.NEVER: True, Kind.REACHABLE: True}

DEADLOCK_MESSAGE = "deadlock: no enabled action in a non-terminal state"
FINAL_MESSAGE = "final state violates the expression"


def expects_true(kind: Kind) -> bool:
    """Whether the property wants EXPR true (always, final) rather than true to decide
    it (never, reachable)."""
    return kind in (Kind.ALWAYS, Kind.FINAL)


def truth_in(state: Any, value: Any, kind: Kind, symbolic: Symbolic | None) -> bool:
    """The truth of EXPR's `value` in `state`, as the property judges it: a symbolic value
    is true when it can be (never, reachable) or must be (always, final)."""
    if not isinstance(value, Term):
        return bool(value)
    if symbolic is None:
        raise EvalError("the expression is symbolic but the model cannot decide it")
    if expects_true(kind):
        return not symbolic.possible(state, lnot(truth(value)))
    return bool(symbolic.possible(state, truth(value)))


def decides(kind: Kind, state: Any, value: Any, symbolic: Symbolic | None) -> bool:
    """Whether a state where EXPR has `value` decides a discovery property (always,
    never, reachable): a counterexample or a witness."""
    return truth_in(state, value, kind, symbolic) is DECIDING_VALUE[kind]


def final_violated(state: Any, value: Any, symbolic: Symbolic | None) -> bool:
    """Whether a state without an enabled action, where EXPR has `value`, violates
    `final EXPR`."""
    return not truth_in(state, value, Kind.FINAL, symbolic)


def decision(kind: Kind) -> tuple[Verdict, str]:
    """The verdict and message when a state decides a property of `kind`."""
    if kind is Kind.REACHABLE:
        return Verdict.HOLDS, "witness found"
    if kind is Kind.FINAL:
        return Verdict.VIOLATED, FINAL_MESSAGE
    if kind is Kind.DEADLOCK_FREE:
        return Verdict.VIOLATED, DEADLOCK_MESSAGE
    return Verdict.VIOLATED, "counterexample found"


def exhausted(kind: Kind, states: int) -> tuple[Verdict, str]:
    """The verdict when every reachable state was explored and none decided it."""
    if kind is Kind.REACHABLE:
        return Verdict.VIOLATED, f"no reachable state satisfies the expression ({states} states)"
    return Verdict.HOLDS, f"holds in all {states} reachable states"


def bad_case(kind: Kind, value: Term) -> Any:
    """The condition under which a symbolic `value` of EXPR decides the property (for a
    witness: concrete inputs that make the trace's last state decide it)."""
    condition = truth(value)
    return lnot(condition) if expects_true(kind) else condition


def reproduces(kind: Kind, concrete: Any) -> bool:
    """Whether EXPR's concrete value in a trace's last state still decides the property."""
    return (not concrete) if expects_true(kind) else bool(concrete)
