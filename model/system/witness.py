"""Symbolic witnesses: the solver's verdict on a condition in a state, concrete values
for the symbolic inputs along a trace, and the trace re-run with those values."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from checker import symbolic as sym
from model.system.interp import SysState
from model.system.relation import Action, TransitionRelation
from model.x86.delivery import with_unwritten_values


class Witnesses:
    """Witness search over one design's transition relation."""

    def __init__(self, relation: TransitionRelation):
        self.relation = relation
        self.solver = relation.solver
        self.interp = relation.interp

    def statistics(self) -> dict[str, float | int]:
        """Solver statistics for the exploration's summary (z3 queries, cache hits, time)."""
        return self.solver.stats.as_dict()

    def possible(self, s: SysState, cond: Any) -> bool:
        """Is `cond` satisfiable together with the state's path condition?"""
        return self.solver.satisfiable((*s.path, cond))

    def witness(
        self, init: SysState, actions: Sequence[Action], bad: Sequence[Any] = ()
    ) -> dict[str, int] | None:
        """Concrete values for every symbolic input along a trace (named `input@step`),
        such that the same actions reach a state satisfying `bad` too: the trace is re-run
        with one symbol per input introduction and no pruning, and z3 solves the whole
        path condition at once. None when the trace introduced no symbol."""
        self.interp.unique_names = True
        try:
            state = init
            for k, a in enumerate(actions):
                self.interp.step_index = k + 1  # as the text trace numbers steps
                state = self.relation.run(state, a)[0]
        finally:
            self.interp.unique_names = False
        names = {n for n in sym.symbols(state.path)} | sym.symbols((state.machine, state.vars))
        introduced = {n for n in names if "@" in n}
        if not introduced:
            return None
        conds = [*state.path, *bad]
        return self.solver.model(conds, introduced)

    def rerun_with_values(
        self, init: SysState, actions: Sequence[Action], values: Mapping[str, int]
    ) -> SysState:
        """Re-run a trace with the witness's concrete values: no symbol, no z3."""
        self.interp.witness_values = dict(values)
        try:
            # the never-written words the witness gives values to hold them from the start
            state = init._replace(machine=with_unwritten_values(init.machine, values))
            for k, a in enumerate(actions):
                self.interp.step_index = k + 1  # as the text trace numbers steps
                # The symbolic decisions are settled by the values; the oracles are not.
                state = sym.run_with(
                    (), self.relation.raw_next, state, a._replace(decisions=()),
                    oracles=a.oracles,
                )[0]
        finally:
            self.interp.witness_values = None
        return state
