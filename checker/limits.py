"""Resource bounds that hold inside one step (docs/properties.md#limits).

`--timeout` is looked at by the explorer between state expansions; work that could run
long within one expansion (a z3 query, an expression's generators, a model's loop) looks
at the same deadline here, through `check_time()` and `remaining()`, and raises
`ResourceLimit` when it has passed. A `ResourceLimit` is never an answer: the explorer
stops and every undecided property is `incomplete`, with the limit as the reason.

The deadline is process-wide (one exploration at a time; worker processes inherit it by
fork), set by the explorer for the duration of a search.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from checker.errors import CheckerError

# A z3 query gets at most this long, with or without --timeout: an `unknown` answer (the
# solver gave up) stops the exploration as incomplete, never as holds.
Z3_QUERY_SECONDS = 60.0


class ResourceLimit(CheckerError):
    """A bound was reached inside a step, or a question could not be answered (z3
    `unknown`): the exploration ends and the undecided properties are `incomplete`."""


_deadline: float | None = None  # time.perf_counter() value; None: no --timeout
_timeout: float | None = None  # the --timeout the deadline came from (for messages)
# The run's other budgets (`--max-memory`, an interrupt): why to stop now, or None.
_budget: Callable[[], str | None] | None = None


@contextmanager
def deadline(
    at: float | None, timeout: float | None = None,
    budget: Callable[[], str | None] | None = None,
) -> Iterator[None]:
    """Within the block, `check_time()` raises once `time.perf_counter()` passes `at`, and
    `check_budget()` also once `budget()` gives a reason (the memory bound, an interrupt)."""
    global _deadline, _timeout, _budget
    saved = _deadline, _timeout, _budget
    _deadline, _timeout, _budget = at, timeout, budget
    try:
        yield
    finally:
        _deadline, _timeout, _budget = saved


def remaining() -> float | None:
    """Seconds left before the deadline (at least 0), or None without one."""
    if _deadline is None:
        return None
    return max(0.0, _deadline - time.perf_counter())


def check_time(where: str = "inside a step") -> None:
    """Raise `ResourceLimit` when the deadline has passed."""
    if _deadline is not None and time.perf_counter() >= _deadline:
        raise timed_out(where)


def check_budget(where: str) -> None:
    """`check_time`, and the run's other budgets (`--max-memory`, an interrupt): for a
    model's long loop inside one step, looked at every few thousand iterations (reading
    the resident memory costs a system call)."""
    check_time(where)
    if _budget is not None:
        why = _budget()
        if why is not None:
            raise ResourceLimit(f"{why} {where}")


def timed_out(where: str) -> ResourceLimit:
    """The limit the --timeout deadline sets, reached `where`."""
    return ResourceLimit(f"timeout={_timeout}s reached {where}")


def query_seconds() -> float:
    """How long one solver query may take: Z3_QUERY_SECONDS, or less when the deadline
    is nearer (never below a millisecond, so that z3 gets a chance to answer)."""
    left = remaining()
    if left is None:
        return Z3_QUERY_SECONDS
    return max(0.001, min(Z3_QUERY_SECONDS, left))
