"""The built-in non-vacuity check (issue 15, must-have 5; issue 13, must-have 6).

A property that holds can still mean nothing. Two cases are caught, per exploration:

- **no event**: the exploration delivered no asynchronous event at all (the model names
  a vocabulary fact that is true in the state an event's delivery leads to:
  `checker.interface.Eventful`); every kind that can hold without a witness (always,
  never, final, deadlock_free) is then warned about. A model whose environment was told
  to deliver none on purpose (`nmi = 0` written in the property file) names no fact.
- **antecedent never true**: an always/never property `A -> B` (or `A implies B`) whose A
  is true in no reachable state.

Both are `reachable` observations explored alongside the group's properties as passive
checks (`checker.explore.Check.passive`): judged on every new state, never a reason to
explore further, and read by partial-order reduction like any check while undecided, so
every option gives the same warnings. A warning never changes a verdict;
`--strict-vacuity` makes it exit code 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from checker.explore import Check, CheckOutcome
from checker.interface import TransitionSystem, capabilities
from checker.spec import Property
from checker.verdict import Kind, Verdict

# Kinds that hold without a witness, so can hold vacuously.
NO_WITNESS = (Kind.ALWAYS, Kind.NEVER, Kind.FINAL, Kind.DEADLOCK_FREE)
ANTECEDENT_KINDS = (Kind.ALWAYS, Kind.NEVER)


@dataclass(frozen=True)
class Observations:
    """The passive checks one exploration adds, and which property each concerns."""

    checks: tuple[Check, ...]
    event: int | None  # index into `checks` of the event check
    antecedents: dict[str, int]  # property name -> index into `checks`


def observations(
    system: TransitionSystem[Any, Any], props: Sequence[Property]
) -> Observations:
    checks: list[Check] = []
    event: int | None = None
    model = capabilities(system).eventful
    fact = model.event_fact() if model is not None else None
    # (a fact the vocabulary lacks is a model bug: no check rather than a crash)
    if (fact is not None and fact in system.vocabulary_names()
            and any(p.kind in NO_WITNESS for p in props)):
        event = len(checks)
        checks.append(Check(
            Kind.REACHABLE, lambda vocab: vocab[fact], "(an asynchronous event)",
            frozenset({fact}), passive=True,
        ))
    antecedents: dict[str, int] = {}
    for prop in props:
        premise = prop.expr.antecedent if prop.expr is not None else None
        if prop.kind is Kind.LEADS_TO:
            premise = prop.expr  # `P leads_to Q` holds vacuously when P is never true
        if premise is not None and (prop.kind in ANTECEDENT_KINDS or prop.kind is Kind.LEADS_TO):
            antecedents[prop.name] = len(checks)
            checks.append(Check(
                Kind.REACHABLE, premise.evaluate, f"(antecedent of {prop.name})",
                premise.names, passive=True,
            ))
    return Observations(tuple(checks), event, antecedents)


def warnings(
    prop: Property, verdict: Verdict, seen: Observations, outcomes: Sequence[CheckOutcome],
    states: int,
) -> tuple[str, ...]:
    """The vacuity warnings of a property, given the passive checks' outcomes (in the
    order of `seen.checks`); none unless it holds."""
    if verdict is not Verdict.HOLDS:
        return ()
    out: list[str] = []
    if seen.event is not None and prop.kind in NO_WITNESS and (
        outcomes[seen.event].verdict is Verdict.VIOLATED
    ):
        out.append(
            f"vacuous: no asynchronous event was delivered in this exploration ({states} "
            "states); give the environment an event budget (nmi, mce, external), or write "
            "them as 0 if the property is meant to hold without events"
        )
    index = seen.antecedents.get(prop.name)
    if index is not None and outcomes[index].verdict is Verdict.VIOLATED:
        assert prop.expr is not None
        premise = prop.expr if prop.kind is Kind.LEADS_TO else prop.expr.antecedent
        assert premise is not None
        out.append(
            f"vacuous: the antecedent `{premise.source}` is true in no "
            f"reachable state ({states} states)"
        )
    return tuple(out)
