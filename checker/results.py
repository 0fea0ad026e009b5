"""What a run found: per property, per exploration, and for the whole run.

Every reporter (text, JSON, HTML, JUnit, SARIF, GitHub annotations, trace files) reads
these and nothing else of the run; `checker.run` builds them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from checker.errors import InputError
from checker.explore import Options, Stats
from checker.spec import Group, Property
from checker.trace import Trace
from checker.verdict import Verdict, exit_code, is_ok

if TYPE_CHECKING:
    import networkx as nx


@dataclass(frozen=True)
class PropertyResult:
    prop: Property
    verdict: Verdict
    message: str
    exploration: int  # index into RunResult.explorations
    stats: Stats
    trace: Trace | None = None
    graph: nx.DiGraph | None = None
    # The model's `inspect_state` of every state along the trace (None when the model has
    # no such method, or it failed; `review_error` says why).
    inspected: tuple[Mapping[str, Any], ...] | None = field(default=None, compare=False)
    review_error: str | None = None
    # Why a `holds` may mean nothing (checker.vacuity): no event delivered, an antecedent
    # never true. Empty unless it holds.
    vacuity: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return is_ok(self.verdict, self.prop.expect)


@dataclass(frozen=True)
class ExplorationResult:
    group: Group
    stats: Stats
    complete: bool
    stop_reason: str | None
    # The model's `coverage` of the visited states, when asked for and available;
    # `coverage_error` says why it is missing when it was asked for.
    coverage: Mapping[str, Any] | None = field(default=None, compare=False)
    coverage_seconds: float = 0.0
    coverage_error: str | None = None
    # The model's own statistics (`statistics()`), e.g. z3 queries, cache hits, z3 time.
    model_stats: Mapping[str, float | int] = field(default_factory=dict, compare=False)
    # How it was asked to explore (`options.compact`: visited states kept as 64-bit
    # fingerprints); `reductions` says which reductions the explorer applied.
    options: Options = field(default_factory=Options)
    # Its properties explored without the symmetry reduction the model offers, with the
    # reason: (name, why).
    unreduced: tuple[tuple[str, str], ...] = ()
    # The environment in force, defaults included (the model's `effective_environment`).
    environment: Mapping[str, Any] | None = field(default=None, compare=False)

    @property
    def reductions(self) -> tuple[str, ...]:
        """The reductions the explorer applied, by name ("symmetry", "por")."""
        on = (("symmetry", self.stats.reduced), ("por", self.stats.por))
        return tuple(name for name, applied in on if applied)


@dataclass(frozen=True)
class RunResult:
    results: tuple[PropertyResult, ...]  # in file order, then property order
    explorations: tuple[ExplorationResult, ...]
    # The errors that kept some properties from loading (each once; those properties have
    # the `error` verdict).
    input_errors: tuple[InputError, ...] = ()
    # How many processes ran the explorations side by side (1: one after another).
    processes: int = 1

    @property
    def exit_code(self) -> int:
        return exit_code((r.verdict, r.prop.expect) for r in self.results)

    @property
    def vacuous(self) -> tuple[PropertyResult, ...]:
        """The results with a vacuity warning."""
        return tuple(r for r in self.results if r.vacuity)

    def strict_exit_code(self, strict_vacuity: bool) -> int:
        """The exit code, where `--strict-vacuity` makes a vacuity warning a 1 (an input
        error, 2, still wins)."""
        code = self.exit_code
        if strict_vacuity and self.vacuous and code != 2:
            return 1
        return code


def witness_of(result: PropertyResult) -> dict[str, Any] | None:
    """Concrete values of the trace's symbolic inputs, when it carries any: the graph's
    `witness` attribute (JSON text of a mapping) or the last state's `inspect_state`
    `witness`."""
    found: dict[str, Any] = {}
    if result.graph is not None and "witness" in result.graph.graph:
        try:
            loaded = json.loads(str(result.graph.graph["witness"]))
        except json.JSONDecodeError:
            loaded = {"witness": result.graph.graph["witness"]}
        if isinstance(loaded, dict):
            found.update(loaded)
    if result.inspected:
        last = result.inspected[-1].get("witness")
        if isinstance(last, Mapping):
            found.update(last)
    return found or None


@dataclass(frozen=True)
class TraceFiles:
    """The files one trace was written to: `base` plus one suffix per trace format, in
    the order of the writer table (`checker.writers`)."""

    base: str
    suffixes: tuple[tuple[str, str], ...]  # (format name, file suffix)

    def path(self, name: str) -> str:
        return f"{self.base}.{dict(self.suffixes)[name]}"

    def as_dict(self) -> dict[str, str]:
        """Format name -> path."""
        return {name: f"{self.base}.{suffix}" for name, suffix in self.suffixes}

    @property
    def replay_file(self) -> str:
        """The file `python -m checker replay` takes (it carries the replay record)."""
        return self.path(REPLAY_FORMAT_NAME)


# The trace format whose file carries the replay record (node-link JSON).
REPLAY_FORMAT_NAME = "json"

Traces = Mapping[tuple[str, str], TraceFiles]  # by (property file, property name)


@dataclass(frozen=True)
class OutputContext:
    """Everything a run-level writer (text, JSON, HTML, JUnit, SARIF) may use."""

    run: RunResult
    traces: Traces
    report_dir: Path
    exit_code: int
    command: str | None = None
    quiet: bool = False
    verbose: bool = False
    written: Sequence[str] = ()  # files other writers wrote (e.g. the HTML report)
