"""The narrow interface between the generic checker and any model it explores.

In the spirit of the Rust crate stateright: a model says what its initial states are,
which actions are enabled in a state, what state an action leads to, and which names a
property expression may use. The checker never looks inside a state beyond that.

A model package exposes a `ModelProvider`; the CLI asks it for a `TransitionSystem` per
(design, variant, environment) and explores it.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

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

        Must contain `label`; may contain `cpu`, `file`, `line`, `detail`.
        """
        ...


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
