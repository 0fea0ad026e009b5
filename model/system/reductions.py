"""The design's reductions, as the checker asks for them: persistent sets for
partial-order reduction (model.system.por) and one state per orbit of renumbered CPUs
(model.system.symmetry), with the vocabulary's behaviour under that renumbering."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property

from checker.interface import SymmetricVocabulary
from model.system.interp import SysState
from model.system.por import Persistence
from model.system.relation import BUDGETS_PER_CPU, WAIT_OPS, Action, TransitionRelation
from model.system.symmetry import CpuSymmetry, check_declaration
from model.system.vocabulary import VocabularyTable


class Reductions:
    """Partial-order reduction and CPU symmetry of one laid-out design."""

    def __init__(self, relation: TransitionRelation, vocabulary: VocabularyTable):
        self.relation = relation
        self.vocabulary = vocabulary
        layout, platform = relation.layout, relation.platform
        # The design's `symmetric` declaration: CPUs 1..n-1 are interchangeable.
        self.symmetry = (
            CpuSymmetry(layout, platform, BUDGETS_PER_CPU)
            if relation.design.symmetric and relation.ncpus > 2 else None
        )
        if self.symmetry is not None:
            check_declaration(layout, self.symmetry, relation.init_states())

    # -- partial-order reduction (checker.interface.Reducible) --------------------------------
    @cached_property
    def persistence(self) -> Persistence:
        """The static facts POR needs: built on first use, as most designs run on one CPU,
        where there is nothing to reduce (a thirtieth of the gate's time went to them)."""
        relation = self.relation
        return Persistence(
            relation.design, relation.layout, relation.platform, BUDGETS_PER_CPU,
            self.vocabulary.reads(),
        )

    def reduces(self) -> bool:
        """Whether any state may have a persistent set (model.system.por)."""
        return self.relation.ncpus > 1 and self.persistence.reduces()

    def persistent_sets(
        self, s: SysState, actions: Sequence[Action], observed: frozenset[str] = frozenset()
    ) -> list[list[int]]:
        """One candidate per CPU whose enabled actions are all local to it, change none of
        the `observed` vocabulary names, and no other CPU can still reach into it
        (model.system.por)."""
        relation = self.relation

        def step(a: Action) -> SysState:
            return relation.successor(s, a)

        return self.persistence.candidates(
            s, actions, step, WAIT_OPS, relation.interp.instr_at, observed
        )

    # -- symmetry (checker.interface.Symmetric) -------------------------------------------------
    def symmetry_vocabulary(self) -> SymmetricVocabulary | None:
        """How the vocabulary behaves when CPUs 1..n-1 are renumbered (each name's
        `renumbering` in the vocabulary table), or None without symmetry."""
        if self.symmetry is None:
            return None
        return self.vocabulary.symmetric(self.symmetry.permuted)

    def representative(self, s: SysState) -> SysState:
        """The orbit's representative under renumbering CPUs 1..n-1 (model.system.symmetry)."""
        return s if self.symmetry is None else self.symmetry.representative(s)
