"""The narrow interface between the generic checker and any model it explores.

In the spirit of the Rust crate stateright: a model says what its initial states are,
which actions are enabled in a state, what state an action leads to, and which names a
property expression may use. The checker never looks inside a state beyond that.

A model package exposes a `ModelProvider` factory (`--model PACKAGE:FACTORY`); the CLI
asks the provider for a `TransitionSystem` per (design, variant, environment) and
explores it. `TransitionSystem` is the required core; everything else (symbolic values,
witnesses, symmetry, partial-order reduction, coverage, statistics, descriptions for
traces) is an optional capability, a protocol of its own, found by `capabilities`.
"""

from __future__ import annotations

import inspect
import weakref
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

from checker.errors import CheckerError

S = TypeVar("S", bound=Hashable)
A = TypeVar("A", bound=Hashable)

# Attribute values a trace node or edge may carry (GraphML can store exactly these).
Scalar = str | int | float | bool


@runtime_checkable
class TransitionSystem(Protocol[S, A]):
    """The required core: a finite transition system. States and actions are immutable,
    hashable values.

    Every method is a pure function of its arguments: the same state gives the same
    actions in the same order, which is what makes exploration deterministic. Anything
    else a model offers is an optional capability (below), found by `capabilities`.
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
        functions an expression may call; nothing else is callable. A value may also be a
        `checker.symbolic.Term` when the model has the `Symbolic` capability.
        """
        ...

    def vocabulary_names(self) -> Mapping[str, str]:
        """Every top-level name `vocabulary` provides, with a one-line description.

        The checker rejects an expression using any other name before exploring.
        """
        ...


REQUIRED = ("init_states", "actions", "next_state", "is_terminal", "vocabulary",
            "vocabulary_names")


class ModelInterfaceError(CheckerError):
    """A model that lacks part of the required core."""


def require_core(system: object) -> None:
    """Raise ModelInterfaceError naming what `system` lacks of the required core."""
    if isinstance(system, TransitionSystem) and methods(system, TransitionSystem):
        return
    missing = [
        name for name in REQUIRED if not callable(inspect.getattr_static(system, name, None))
    ]
    raise ModelInterfaceError(
        f"the model {type(system).__name__} lacks the required method(s) "
        + ", ".join(missing) + " (see checker/interface.py)"
    )


# -- optional capabilities -------------------------------------------------------------------
#
# A model may also implement any of the protocols below; the checker finds them once per
# system with `capabilities(system)` (isinstance against these runtime-checkable
# protocols) and works without them, with less detail in its reports or no reduction.
# Whatever they return must be JSON-able (dicts with str keys, lists, str, int, float,
# bool, None).


@runtime_checkable
class Describable(Protocol):
    """Readable attributes of states and actions, for trace nodes and edges."""

    def describe_state(self, state: Any) -> Mapping[str, Scalar]:
        """Readable attributes of a state, for trace nodes."""
        ...

    def describe_action(self, state: Any, action: Any) -> Mapping[str, Scalar]:
        """Readable attributes of `action` taken in `state`, for trace edges.

        Must contain `label`; may contain `cpu` (an int: the CPU or process that acts;
        or `actor`, a str), `file` and `line` (the source line the step executes; steps
        without them are drawn as events), `kind`, `routine`, `detail`, and `damage`
        (what the step broke, highlighted in reports).
        """
        ...


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


@runtime_checkable
class Symbolic(Protocol):
    """A model whose vocabulary may hold symbolic terms (`checker.symbolic.Term`): it
    decides a condition against a state's path condition."""

    def possible(self, state: Any, condition: Any) -> bool:
        """Whether `condition` (a boolean term) can hold together with the path condition
        of `state` (satisfiable)."""
        ...


@runtime_checkable
class Witnessing(Protocol):
    """A symbolic model that names concrete inputs for a symbolic path."""

    def witness(
        self, init: Any, actions: Sequence[Any], extra: Sequence[Any]
    ) -> Mapping[str, int] | None:
        """Values of the symbolic inputs under which the path from `init` through
        `actions` is taken and every condition of `extra` holds (None/empty: none)."""
        ...


@runtime_checkable
class ConcreteReplay(Protocol):
    """A symbolic model that re-runs a path with concrete inputs, without a solver."""

    def replay_concrete(
        self, init: Any, actions: Sequence[Any], values: Mapping[str, int]
    ) -> Any:
        """The last state of the path from `init` through `actions` with the symbolic
        inputs fixed to `values`."""
        ...


@runtime_checkable
class Measured(Protocol):
    """A model that counts its own work (z3 queries, cache hits, seconds in z3)."""

    def statistics(self) -> Mapping[str, float | int]:
        ...


@runtime_checkable
class Typed(Protocol):
    """A model that says what its vocabulary's records look like, so that a misspelled
    field is refused when the property file is loaded (checker.fields)."""

    def vocabulary_shapes(self) -> Mapping[str, Any]:
        """For some vocabulary names, a `checker.fields` shape: RecordShape, ListShape,
        MapShape or FunctionShape (names left out are not checked)."""
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

    def reduces(self) -> bool:
        """Whether some state may have a persistent set at all (False, for example, with
        one actor): when it may not, the checker explores without the reduction, and its
        cost, and says so."""
        ...

    def persistent_sets(
        self, state: Any, actions: Sequence[Any], observed: frozenset[str]
    ) -> Iterable[Sequence[int]]:
        """Candidate persistent sets of `state`: index lists into `actions` (the enabled
        actions, as `actions(state)` returned them), each a proper subset such that no
        sequence of actions outside it, from `state`, can include an action dependent on
        one inside it, and whose actions change none of the `observed` vocabulary names
        in any state (invisible). The checker adds the cycle proviso."""
        ...


@runtime_checkable
class Eventful(Protocol):
    """A model whose environment delivers asynchronous events (interrupts, signals, ...):
    the checker warns when a property holds in an exploration where none was delivered
    (the vacuity check, `--strict-vacuity`)."""

    def event_fact(self) -> str | None:
        """A vocabulary name whose value is true in the state an asynchronous event's
        delivery leads to (so: some explored state has it true iff some event was
        delivered), or None when this environment deliberately delivers none."""
        ...


@runtime_checkable
class Fair(Protocol):
    """A model that says who takes each step, so liveness can assume fairness: actors are
    small integers, named by `actor_names()`; -1 is the environment (asynchronous events,
    to which no fairness applies unless a property asks for it by name)."""

    def actor(self, state: Any, action: Any) -> int:
        """The actor of `action` in `state`: an index into `actor_names()`, or -1."""
        ...

    def actor_names(self) -> Sequence[str]:
        """The actors' names; the first `fair_actors()` are the CPUs (weakly fair by
        default), the others are treated fairly only when a property names them."""
        ...

    def fair_actors(self) -> int:
        """How many of the first actors are fair by default (the CPUs' own steps)."""
        ...


@runtime_checkable
class Configured(Protocol):
    """A model that can say which environment it runs in, defaults included (`-v`)."""

    def effective_environment(self) -> Mapping[str, Any]:
        """Every environment key with the value in force (written or default)."""
        ...


@runtime_checkable
class Assuming(Protocol):
    """A model run under settings that leave out outcomes the real system has (an opt-out
    of a nondeterministic choice): a verdict that claims "no reachable state" holds only
    under them, so the checker says so beside it."""

    def assumptions(self) -> Sequence[str]:
        """Each narrowing setting in force, as a short phrase; empty when none is."""
        ...


@dataclass(frozen=True)
class Capabilities:
    """The optional capabilities one system has (each the system itself, or None)."""

    describable: Describable | None = None
    inspectable: Inspectable | None = None
    action_keyed: ActionKeyed | None = None
    covering: Covering | None = None
    symbolic: Symbolic | None = None
    witnessing: Witnessing | None = None
    concrete_replay: ConcreteReplay | None = None
    measured: Measured | None = None
    symmetric: Symmetric | None = None
    reducible: Reducible | None = None
    typed: Typed | None = None
    eventful: Eventful | None = None
    configured: Configured | None = None
    fair: Fair | None = None
    assuming: Assuming | None = None

    @property
    def reduces_by_por(self) -> bool:
        """Whether partial-order reduction can reduce anything here (the model has
        persistent sets and says they can exist)."""
        return self.reducible is not None and self.reducible.reduces()

    @property
    def names(self) -> tuple[str, ...]:
        """The capabilities present, by field name (for messages and tests)."""
        return tuple(
            name for name, value in vars(self).items() if value is not None
        )


def methods(system: object, protocol: type) -> bool:
    """Whether the members of `protocol` (a runtime-checkable protocol above) are methods
    of `system`: `isinstance` against a protocol only sees that the names exist, and a
    model may have a data field of the same name."""
    return all(
        callable(inspect.getattr_static(system, name, None))
        for name, member in vars(protocol).items()
        if inspect.isfunction(member) and not name.startswith("_")
    )


# The capabilities found of each live system, by name: a runtime protocol check walks
# the protocol's members every time, and reports ask for every node of every trace (a
# tenth of the gate's time outside exploring). Names, not the Capabilities, so that the
# cache holds no reference to the system.
_FOUND: dict[int, tuple[weakref.ref[Any], tuple[str, ...]]] = {}


def capabilities(system: object) -> Capabilities:
    """The optional capabilities of `system`, found through their protocols (once per
    system object: its capabilities are those of its methods when first asked)."""
    key = id(system)
    known = _FOUND.get(key)
    if known is not None and known[0]() is system:
        return Capabilities(**dict.fromkeys(known[1], system))
    found = _capabilities(system)
    try:
        ref = weakref.ref(system, lambda _: _forget(key))
    except TypeError:  # not weakly referable: found again next time
        return found
    _FOUND[key] = (ref, found.names)
    return found


def _forget(key: int) -> None:
    _FOUND.pop(key, None)


def _capabilities(system: object) -> Capabilities:
    s = system
    return Capabilities(
        describable=s if isinstance(s, Describable) and methods(s, Describable) else None,
        inspectable=s if isinstance(s, Inspectable) and methods(s, Inspectable) else None,
        action_keyed=s if isinstance(s, ActionKeyed) and methods(s, ActionKeyed) else None,
        covering=s if isinstance(s, Covering) and methods(s, Covering) else None,
        symbolic=s if isinstance(s, Symbolic) and methods(s, Symbolic) else None,
        witnessing=s if isinstance(s, Witnessing) and methods(s, Witnessing) else None,
        concrete_replay=s if isinstance(s, ConcreteReplay) and methods(s, ConcreteReplay) else None,
        measured=s if isinstance(s, Measured) and methods(s, Measured) else None,
        symmetric=s if isinstance(s, Symmetric) and methods(s, Symmetric) else None,
        reducible=s if isinstance(s, Reducible) and methods(s, Reducible) else None,
        typed=s if isinstance(s, Typed) and methods(s, Typed) else None,
        eventful=s if isinstance(s, Eventful) and methods(s, Eventful) else None,
        configured=s if isinstance(s, Configured) and methods(s, Configured) else None,
        fair=s if isinstance(s, Fair) and methods(s, Fair) else None,
        assuming=s if isinstance(s, Assuming) and methods(s, Assuming) else None,
    )


# -- what reports use, with the fallback for a model that lacks the capability -------------


def describe_state(system: object, state: Any) -> Mapping[str, Scalar]:
    """The model's `describe_state`, or no attributes."""
    model = capabilities(system).describable
    return model.describe_state(state) if model is not None else {}


def describe_action(system: object, state: Any, action: Any) -> Mapping[str, Scalar]:
    """The model's `describe_action`, or the action's text as its label."""
    model = capabilities(system).describable
    return model.describe_action(state, action) if model is not None else {"label": str(action)}


def action_key(system: object, state: Any, action: Any) -> str | None:
    """The model's `action_key(state, action)`, or None when it has none."""
    model = capabilities(system).action_keyed
    return str(model.action_key(state, action)) if model is not None else None


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


@runtime_checkable
class DesignFolders(Protocol):
    """A provider that also looks for designs, by name, in folders the user names
    (`--design-path DIR`)."""

    def add_design_path(self, folder: Path) -> None: ...


@runtime_checkable
class DesignLinter(Protocol):
    """A provider that can check a design file without exploring it
    (`python -m checker lint`): every error it finds, none when the file is clean."""

    def lint(self, path: str) -> Sequence[CheckerError]: ...
