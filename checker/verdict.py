"""Property kinds, verdicts, and how a run's verdicts become an exit code."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class Kind(StrEnum):
    """What a property asks of the reachable states."""

    ALWAYS = "always"  # EXPR true in every reachable state
    NEVER = "never"  # EXPR false in every reachable state
    REACHABLE = "reachable"  # some reachable state satisfies EXPR (a witness)
    FINAL = "final"  # every reachable state without an enabled action satisfies EXPR
    DEADLOCK_FREE = "deadlock_free"  # no reachable state without an action unless terminal
    EVENTUALLY = "eventually"  # on every fair behaviour EXPR holds in some state
    LEADS_TO = "leads_to"  # on every fair behaviour, whenever EXPR holds TO holds then or later

    @property
    def needs_expr(self) -> bool:
        return self is not Kind.DEADLOCK_FREE

    @property
    def liveness(self) -> bool:
        """Judged over infinite behaviours (checker.liveness), not state by state."""
        return self in (Kind.EVENTUALLY, Kind.LEADS_TO)

    @property
    def checked_on_discovery(self) -> bool:
        """Decided by looking at a state alone (vs. at its enabled actions)."""
        return self in (Kind.ALWAYS, Kind.NEVER, Kind.REACHABLE)


class Verdict(StrEnum):
    HOLDS = "holds"  # exhaustive exploration (or a witness, for reachable)
    VIOLATED = "violated"  # a counterexample (or exhaustive with no witness, for reachable)
    INCOMPLETE = "incomplete"  # a bound stopped exploration before the property was decided
    ERROR = "error"  # the property could not be evaluated


EXPECTABLE = (Verdict.HOLDS, Verdict.VIOLATED)

# Exit codes of `python -m checker`.
EXIT_OK = 0
EXIT_UNEXPECTED = 1
EXIT_INPUT = 2
EXIT_INCOMPLETE = 3


def is_ok(verdict: Verdict, expected: Verdict) -> bool:
    return verdict == expected


def exit_code(pairs: Iterable[tuple[Verdict, Verdict]]) -> int:
    """Exit code for (verdict, expected) pairs: an error is bad input (2), then any verdict
    that differs from its expectation (1), then any incomplete one (3), else 0."""
    verdicts = list(pairs)
    if any(v == Verdict.ERROR for v, _ in verdicts):
        return EXIT_INPUT
    if any(v in EXPECTABLE and v != e for v, e in verdicts):
        return EXIT_UNEXPECTED
    if any(v == Verdict.INCOMPLETE for v, _ in verdicts):
        return EXIT_INCOMPLETE
    return EXIT_OK
