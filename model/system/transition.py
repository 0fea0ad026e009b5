"""The design, the machine and the environment as one transition system.

`DesignSystem` is what the checker explores (checker.interface): a facade over the parts
of a design's model, each in its own module with one reason to change:

- model.system.relation     the transition relation: initial states, actions, successors
- model.system.vocabulary   the names properties read (one table: types, read sets)
- model.system.describe     trace nodes and edges, damage notes, the review report's view
- model.system.coverage     what an exploration reached of the design
- model.system.reductions   partial-order reduction and CPU symmetry
- model.system.witness      symbolic witnesses and their concrete re-runs
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from checker.interface import SymmetricVocabulary
from model.lang.ir import Design
from model.system.coverage import Coverage
from model.system.describe import TraceDescription
from model.system.interp import SysState
from model.system.reductions import Reductions
from model.system.relation import (
    BUDGETS_PER_CPU,
    PER_CPU_BUDGETS,
    Action,
    ActionKind,
    Environment,
    TransitionRelation,
    canonical,
)
from model.system.vocabulary import Vocabulary, VocabularyTable
from model.system.witness import Witnesses

# Actors (checker.interface.Fair): offset (in units of ncpus) of each kind's actor.
_ACTOR_OFFSET = {
    ActionKind.STEP: 0, ActionKind.FAULT: 0, ActionKind.PENDING_NMI: 0, ActionKind.HELD_DB: 0,
    ActionKind.TIMEOUT: 0, ActionKind.IPI: 1,
}

__all__ = [
    "BUDGETS_PER_CPU", "PER_CPU_BUDGETS", "Action", "ActionKind", "DesignSystem", "Environment",
    "canonical",
]


class DesignSystem:
    """A `checker.interface.TransitionSystem` over a parsed design."""

    def __init__(self, design: Design, env: Environment):
        self.relation = relation = TransitionRelation(design, env)
        self.design = design
        self.env = env
        self.layout = relation.layout
        self.platform = relation.platform
        self.interp = relation.interp
        self.solver = relation.solver
        self.ncpus = relation.ncpus
        self.vocabulary_table = VocabularyTable(design, self.layout, self.platform)
        self.descriptions = TraceDescription(
            self.layout, self.platform, self.interp, relation.next_state
        )
        self.covering = Coverage(design, self.interp, relation.base_actions)
        self.reductions = Reductions(relation, self.vocabulary_table)
        self.symmetry = self.reductions.symmetry
        self.witnesses = Witnesses(relation)
        # The explorer's two calls per state and per transition go straight to the
        # relation (the methods below say the same, for readers and type checkers).
        self.actions = relation.actions  # type: ignore[method-assign]
        self.next_state = relation.next_state  # type: ignore[method-assign]

    # -- the transition relation (checker.interface.TransitionSystem) -------------------------
    def init_states(self) -> Sequence[SysState]:
        return self.relation.init_states()

    def actions(self, s: SysState) -> Sequence[Action]:
        return self.relation.actions(s)

    def next_state(self, s: SysState, a: Action) -> SysState:
        return self.relation.next_state(s, a)

    def is_terminal(self, s: SysState) -> bool:
        """Every CPU halted or shut down: nothing is left to run (not a deadlock)."""
        return self.relation.is_terminal(s)

    # -- the vocabulary -------------------------------------------------------------------------
    def vocabulary_names(self) -> Mapping[str, str]:
        return self.vocabulary_table.descriptions()

    def vocabulary(self, s: SysState) -> Vocabulary:
        return Vocabulary(self.vocabulary_table, s)

    def vocabulary_shapes(self) -> Mapping[str, Any]:
        """The records' fields (checker.interface.Typed): a misspelled one is a load error."""
        return self.vocabulary_table.shapes()

    # -- fairness (checker.interface.Fair) ------------------------------------------------------
    def actor(self, s: SysState, a: Action) -> int:
        """CPU i's own steps (its instruction, a fault of it, a latched NMI or held-back #DB
        it must take before its next instruction, a wait that times out) are actor i; the
        delivery of an NMI IPI already sent to CPU i is actor ncpus + i (`cpuI.ipi`);
        asynchronous events (NMI, #MC, #DF, interrupts) are the environment (-1)."""
        offset = _ACTOR_OFFSET.get(a.kind)
        return -1 if offset is None else offset * self.ncpus + a.cpu

    def actor_names(self) -> list[str]:
        return [f"cpu{i}" for i in range(self.ncpus)] + [
            f"cpu{i}.ipi" for i in range(self.ncpus)
        ]

    def fair_actors(self) -> int:
        return self.ncpus

    # -- vacuity and assumptions (checker.interface.Eventful, Configured, Assuming) -------
    def event_fact(self) -> str | None:
        """`event_frames`: an asynchronous event's delivery pushes a frame; None when the
        property file set every event budget to 0 on purpose."""
        return None if self.env.events_off else "event_frames"

    def effective_environment(self) -> dict[str, Any]:
        """Every environment key with its value in force (the defaults included)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self.env):
            if f.name == "events_off":
                continue
            value = getattr(self.env, f.name)
            if f.name == "cpus":
                value = self.ncpus
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    def assumptions(self) -> list[str]:
        """The property file's opt-outs of outcomes the SDM leaves open (checker.interface.
        Assuming): a "holds" is claimed only under them."""
        out = []
        if not self.env.unwritten_unknown:
            out.append("unwritten reset-TSS words read 0: environment.unwritten_unknown = false")
        return out

    # -- traces and reports -----------------------------------------------------------------------
    def describe_state(self, s: SysState) -> Mapping[str, str | int | bool]:
        return self.descriptions.describe_state(s)

    def describe_action(self, s: SysState, a: Action) -> Mapping[str, str | int | bool]:
        return self.descriptions.describe_action(s, a)

    def damage(self, before: SysState, after: SysState) -> str:
        return self.descriptions.damage(before, after)

    def action_key(self, s: SysState, a: Action) -> str:
        return self.descriptions.action_key(s, a)

    def inspect_state(self, s: SysState) -> dict[str, Any]:
        return self.descriptions.inspect_state(s)

    def coverage(self, states: Iterable[SysState]) -> dict[str, Any]:
        return self.covering.coverage(states)

    # -- reductions (checker.interface.Reducible, Symmetric) -----------------------------------
    def reduces(self) -> bool:
        return self.reductions.reduces()

    def persistent_sets(
        self, s: SysState, actions: Sequence[Action], observed: frozenset[str] = frozenset()
    ) -> list[list[int]]:
        return self.reductions.persistent_sets(s, actions, observed)

    def symmetry_vocabulary(self) -> SymmetricVocabulary | None:
        return self.reductions.symmetry_vocabulary()

    def representative(self, s: SysState) -> SysState:
        return self.reductions.representative(s)

    # -- symbolic witnesses ---------------------------------------------------------------------
    def statistics(self) -> dict[str, float | int]:
        return self.witnesses.statistics()

    def possible(self, s: SysState, cond: Any) -> bool:
        return self.witnesses.possible(s, cond)

    def witness(
        self, init: SysState, actions: Sequence[Action], bad: Sequence[Any] = ()
    ) -> dict[str, int] | None:
        return self.witnesses.witness(init, actions, bad)

    def replay_concrete(
        self, init: SysState, actions: Sequence[Action], values: Mapping[str, int]
    ) -> SysState:
        """The checker's name for `Witnesses.rerun_with_values`."""
        return self.witnesses.rerun_with_values(init, actions, values)
