"""A second, tiny model package: a token ring (proves `--model PACKAGE:FACTORY`).

N processes sit in a ring and pass one token; a process may enter its critical section
only while it holds the token, and passes the token on when it leaves. With the variant
`lossy = "yes"` a pass may lose the token, and the ring then stops in a state that is not
terminal (a deadlock). Every lap ends at process 0; after `laps` laps the ring is done
(terminal). Only the required core of `checker.interface.TransitionSystem` is
implemented: no descriptions, no symmetry, nothing optional.

    python -m checker --model tests.tiny_model:provider tests/tiny_model/ring.toml
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from checker.errors import ModelInputError
from checker.interface import ModelProvider

# A state: (holder, in critical section, laps done); holder -1: the token is lost.
State = tuple[int, bool, int]


@dataclass(frozen=True)
class Ring:
    processes: int
    laps: int
    lossy: bool

    def init_states(self) -> Sequence[State]:
        return [(0, False, 0)]

    def actions(self, state: State) -> Sequence[str]:
        holder, critical, laps = state
        if holder < 0 or laps >= self.laps:
            return []
        if critical:
            return ["leave", "leave-and-lose"] if self.lossy else ["leave"]
        return ["enter", "pass"]

    def next_state(self, state: State, action: str) -> State:
        holder, _, laps = state
        if action == "enter":
            return (holder, True, laps)
        if action == "leave-and-lose":
            return (-1, False, laps)
        after = (holder + 1) % self.processes  # leave or pass: the token moves on
        return (after, False, laps + (after == 0))

    def is_terminal(self, state: State) -> bool:
        return state[2] >= self.laps

    def vocabulary(self, state: State) -> Mapping[str, Any]:
        holder, critical, laps = state
        return {
            "holder": holder,
            "critical": [critical and p == holder for p in range(self.processes)],
            "laps": laps,
        }

    def vocabulary_names(self) -> Mapping[str, str]:
        return {
            "holder": "the process holding the token (-1: lost)",
            "critical": "per process: in its critical section",
            "laps": "laps of the token completed",
        }


class RingProvider:
    def designs(self) -> Sequence[str]:
        return ["ring"]

    def load(
        self, design: str, variant: Mapping[str, str], environment: Mapping[str, Any]
    ) -> Ring:
        if design != "ring":
            raise ModelInputError(f"unknown design '{design}' (one of: ring)", "design")
        for knob in variant:
            if knob != "lossy":
                raise ModelInputError(f"design 'ring' has no knob '{knob}'", f"variant.{knob}")
        lossy = variant.get("lossy", "no")
        if lossy not in ("yes", "no"):
            raise ModelInputError("knob 'lossy' is yes or no", "variant.lossy")
        values = {"processes": 3, "laps": 2}
        for key, value in environment.items():
            if key not in values:
                raise ModelInputError(
                    f"design 'ring' has no environment '{key}'", f"environment.{key}"
                )
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ModelInputError(f"'{key}' must be a positive integer", f"environment.{key}")
            values[key] = value
        return Ring(values["processes"], values["laps"], lossy == "yes")


def provider() -> ModelProvider:
    """The factory `--model tests.tiny_model:provider` names."""
    return RingProvider()
