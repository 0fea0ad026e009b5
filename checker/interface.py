"""The narrow interface between the generic checker and any model it explores.

In the spirit of the Rust crate stateright: a model says what its initial states are,
which actions are enabled in a state, what state an action leads to, and which names a
property expression may use. The checker never looks inside a state beyond that.

A model package exposes a `ModelProvider`; the CLI asks it for a `TransitionSystem` per
(design, variant, environment) and explores it.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, runtime_checkable

S = TypeVar("S", bound=Hashable)
A = TypeVar("A", bound=Hashable)

# Attribute values a trace node or edge may carry (GraphML can store exactly these).
Scalar = str | int | float | bool


class TransitionSystem(Protocol[S, A]):
    """A finite transition system. States and actions are immutable, hashable values.

    Every method is a pure function of its arguments: the same state gives the same
    actions in the same order, which is what makes exploration deterministic.
    """

    def init_states(self) -> Sequence[S]:
        """The initial states, in a fixed order."""
        ...

    def actions(self, state: S) -> Sequence[A]:
        """The actions enabled in `state`, in a fixed order (empty: no successor)."""
        ...

    def next_state(self, state: S, action: A) -> S:
        """The state `action` leads to from `state` (deterministic)."""
        ...

    def is_terminal(self, state: S) -> bool:
        """True when `state` may legitimately have no enabled action (not a deadlock)."""
        ...

    def vocabulary(self, state: S) -> Mapping[str, Any]:
        """The names a property expression sees in `state`.

        Values are bools, ints, strs, sequences, or mappings (records whose fields an
        expression reads as attributes, `cpu[1].halted`). Callables are model-provided
        functions an expression may call; nothing else is callable.
        """
        ...

    def vocabulary_names(self) -> Mapping[str, str]:
        """Every top-level name `vocabulary` provides, with a one-line description.

        The checker rejects an expression using any other name before exploring.
        """
        ...

    def describe_state(self, state: S) -> Mapping[str, Scalar]:
        """Readable attributes of a state, for trace nodes."""
        ...

    def describe_action(self, state: S, action: A) -> Mapping[str, Scalar]:
        """Readable attributes of `action` taken in `state`, for trace edges.

        Must contain `label`; may contain `cpu` (an int: the CPU or process that acts;
        or `actor`, a str), `file` and `line` (the source line the step executes; steps
        without them are drawn as events), `kind`, `routine`, `detail`, and `damage`
        (what the step broke, highlighted in reports).
        """
        ...


# -- optional methods ------------------------------------------------------------------------
#
# A model may also implement any of the methods below; the checker looks for each with
# `getattr` (through the helpers at the end of this module) and works without them, with
# less detail in its reports. Whatever they return must be JSON-able (dicts with str keys,
# lists, str, int, float, bool, None).


@runtime_checkable
class Inspectable(Protocol):
    def inspect_state(self, state: Any) -> Mapping[str, Any]:
        """A structured view of `state` for the review report (HTML, ITF).

        Keys the report draws specially, all optional (any other key is shown as a table):
        - `cpus`: records with `id`; `file`/`line`/`instruction` (the next step's source),
          `registers` (a mapping name -> text), and any other scalar or list fields.
        - `stacks`: records with `name`, `owner`, `size`, `words` (records with `address`,
          `offset`, `value`), `frames` (records; `name`, `lo`, `hi`, and booleans
          `clobbered` / `on_guest_stack` that mark a damaged frame, highlighted) and
          `rsp_of` (ids of CPUs whose stack pointer lies in it).
        - `variables` (name -> text), `incidents` (list of text), `budgets` (list).
        - `witness`: a mapping name -> value, the concrete values of symbolic inputs along
          the path to this state (shown in a "witness" section; read from the last state).
        """
        ...


@runtime_checkable
class ActionKeyed(Protocol):
    def action_key(self, state: Any, action: Any) -> str:
        """A name for `action` in `state` that stays the same across edits to the design
        (e.g. "kind:cpu:arg"); replay finds a trace's actions by it."""
        ...


@runtime_checkable
class Covering(Protocol):
    def coverage(self, states: Iterable[Any]) -> Mapping[str, Any]:
        """What the given (visited) states reach of the design:

        `{"files": {path: {"reached": [line, ...], "unreached": [line, ...]}},
          "routines": {name: bool}, "vectors": {name: bool}, "events": [text, ...],
          "unreached_lines": int}`. Paths are as the model prints them (relative to the
        working directory when below it); any part may be missing.
        """
        ...


@dataclass(frozen=True)
class SymmetricVocabulary:
    """How a model's vocabulary behaves when its interchangeable processes are renumbered
    (a permutation of `permuted`, e.g. CPUs 1..n-1; every other index stays put).

    The checker reduces only properties whose expression no such renumbering can change
    (`checker.symmetry.asymmetry`); the rest are explored in full.
    """

    permuted: frozenset[int]
    # Names whose value no renumbering changes (counters, flags, "some frame clobbered").
    invariant: frozenset[str]
    # Names that are sequences with one element per process, in process order (cpus, a
    # per-CPU variable): a renumbering permutes their elements.
    sequences: frozenset[str]
    # Names that are collections of records in which some fields hold a process index
    # (frames, with `cpu`): a renumbering rewrites those fields and may reorder them.
    collections: frozenset[str] = frozenset()
    # Record fields that hold a process index (`id` of a CPU record, `cpu` of a frame).
    index_fields: frozenset[str] = frozenset()
    # Model functions and the positions of their arguments that are process indices
    # (`running(cpu, routine)`: {"running": (0,)}); other arguments must not depend on one.
    index_arguments: Mapping[str, tuple[int, ...]] = field(default_factory=dict)


@runtime_checkable
class Symmetric(Protocol):
    """A model with interchangeable processes (declared by its design)."""

    def symmetry_vocabulary(self) -> SymmetricVocabulary | None:
        """The symmetry of the vocabulary, or None when the model has no symmetry."""
        ...

    def representative(self, state: Any) -> Any:
        """One state per orbit: equal for any two states that differ by a renumbering of
        the permuted processes, and itself such a renumbering of `state`."""
        ...


@runtime_checkable
class Reducible(Protocol):
    """A model that can name persistent sets of actions (partial-order reduction)."""

    def persistent_sets(
        self, state: Any, actions: Sequence[Any], observed: frozenset[str]
    ) -> Iterable[Sequence[int]]:
        """Candidate persistent sets of `state`: index lists into `actions` (the enabled
        actions, as `actions(state)` returned them), each a proper subset such that no
        sequence of actions outside it, from `state`, can include an action dependent on
        one inside it, and whose actions change none of the `observed` vocabulary names
        in any state (invisible). The checker adds the cycle proviso."""
        ...


def inspect_state(system: object, state: Any) -> Mapping[str, Any] | None:
    """The model's `inspect_state(state)`, or None when it has none."""
    method = getattr(system, "inspect_state", None)
    if method is None:
        return None
    result: Mapping[str, Any] = method(state)
    return result


def action_key(system: object, state: Any, action: Any) -> str | None:
    """The model's `action_key(state, action)`, or None when it has none."""
    method = getattr(system, "action_key", None)
    if method is None:
        return None
    return str(method(state, action))


def has_coverage(system: object) -> bool:
    return callable(getattr(system, "coverage", None))


def coverage(system: object, states: Iterable[Any]) -> Mapping[str, Any] | None:
    """The model's `coverage(states)`, or None when it has none."""
    method = getattr(system, "coverage", None)
    if method is None:
        return None
    result: Mapping[str, Any] = method(states)
    return result


class ModelProvider(Protocol):
    """Builds transition systems from the names a property file uses."""

    def designs(self) -> Sequence[str]:
        """The design names that can be loaded."""
        ...

    def load(
        self,
        design: str,
        variant: Mapping[str, str],
        environment: Mapping[str, Any],
    ) -> TransitionSystem[Any, Any]:
        """The transition system of `design` with `variant` knobs and `environment` budgets.

        Raises `checker.errors.ModelInputError` for an unknown design, knob, knob value or
        environment key, naming the offending key; `checker.errors.InputError` for an
        error inside a design file (it names that file and line).
        """
        ...
