"""Small transition systems and a toy model provider for the checker's tests."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from checker.errors import InputError, ModelInputError

IDLE, CRIT = 0, 1


@dataclass(frozen=True)
class Mutex:
    """Two processes entering a critical section `rounds` times each, with or without a
    lock. State: (pc0, pc1, lock, left0, left1)."""

    lock: bool = True
    rounds: int = 2

    def init_states(self) -> Sequence[tuple[int, ...]]:
        return [(IDLE, IDLE, 0, self.rounds, self.rounds)]

    def actions(self, state: tuple[int, ...]) -> Sequence[tuple[str, int]]:
        pcs, lock, left = state[0:2], state[2], state[3:5]
        out: list[tuple[str, int]] = []
        for cpu in (0, 1):
            if pcs[cpu] == IDLE and left[cpu] > 0 and (not self.lock or lock == 0):
                out.append(("enter", cpu))
            elif pcs[cpu] == CRIT:
                out.append(("leave", cpu))
        return out

    def next_state(self, state: tuple[int, ...], action: tuple[str, int]) -> tuple[int, ...]:
        what, cpu = action
        s = list(state)
        if what == "enter":
            s[cpu] = CRIT
            s[2] = 1 if self.lock else 0
        else:
            s[cpu] = IDLE
            s[2] = 0
            s[3 + cpu] -= 1
        return tuple(s)

    def is_terminal(self, state: tuple[int, ...]) -> bool:
        return state[3] == 0 and state[4] == 0

    def vocabulary(self, state: tuple[int, ...]) -> Mapping[str, Any]:
        procs = [
            {"id": cpu, "critical": state[cpu] == CRIT, "left": state[3 + cpu]} for cpu in (0, 1)
        ]
        return {
            "procs": procs,
            "in_critical": sum(1 for p in procs if p["critical"]),
            "lock": state[2],
            "done": state[3] == 0 and state[4] == 0,
            "is_critical": lambda cpu: state[cpu] == CRIT,
        }

    def vocabulary_names(self) -> Mapping[str, str]:
        return {
            "procs": "per-process records: id, critical, left",
            "in_critical": "number of processes in the critical section",
            "lock": "the lock word",
            "done": "both processes finished their rounds",
            "is_critical": "is_critical(cpu): process cpu is in its critical section",
        }

    def describe_state(self, state: tuple[int, ...]) -> Mapping[str, Any]:
        return {
            "pc0": "crit" if state[0] else "idle",
            "pc1": "crit" if state[1] else "idle",
            "lock": state[2],
            "left0": state[3],
            "left1": state[4],
        }

    def describe_action(self, state: tuple[int, ...], action: tuple[str, int]) -> Mapping[str, Any]:
        what, cpu = action
        return {"label": what, "cpu": cpu, "file": "mutex.S", "line": 10 if what == "enter" else 20}


@dataclass(frozen=True)
class Counters:
    """k counters, each 0..n, any of which may be incremented: (n+1)**k states, the
    all-n state is the only one without an action (terminal)."""

    k: int = 3
    n: int = 2

    def init_states(self) -> Sequence[tuple[int, ...]]:
        return [(0,) * self.k]

    def actions(self, state: tuple[int, ...]) -> Sequence[int]:
        n = self.n
        return [i for i, v in enumerate(state) if v < n]

    def next_state(self, state: tuple[int, ...], action: int) -> tuple[int, ...]:
        return state[:action] + (state[action] + 1,) + state[action + 1 :]

    def is_terminal(self, state: tuple[int, ...]) -> bool:
        return all(v == self.n for v in state)

    def vocabulary(self, state: tuple[int, ...]) -> Mapping[str, Any]:
        return {"c": state, "total": sum(state), "n": self.n}

    def vocabulary_names(self) -> Mapping[str, str]:
        return {"c": "the counters", "total": "their sum", "n": "the bound"}

    def describe_state(self, state: tuple[int, ...]) -> Mapping[str, Any]:
        return {f"c{i}": v for i, v in enumerate(state)}

    def describe_action(self, state: tuple[int, ...], action: int) -> Mapping[str, Any]:
        return {"label": f"inc c{action}", "actor": f"counter{action}"}


@dataclass(frozen=True)
class Locks:
    """Two processes taking two locks: in the same order (deadlock free) or in opposite
    orders (deadlock). State: (pc0, pc1, owner_a, owner_b); owners are -1 when free."""

    opposite: bool = True

    def order(self, cpu: int) -> tuple[int, int]:
        return (1, 0) if self.opposite and cpu == 1 else (0, 1)

    def init_states(self) -> Sequence[tuple[int, ...]]:
        return [(0, 0, -1, -1)]

    def actions(self, state: tuple[int, ...]) -> Sequence[int]:
        out = []
        for cpu in (0, 1):
            pc = state[cpu]
            if pc < 2:
                lock = self.order(cpu)[pc]
                if state[2 + lock] == -1:
                    out.append(cpu)
            elif pc == 2:
                out.append(cpu)  # release both
        return out

    def next_state(self, state: tuple[int, ...], cpu: int) -> tuple[int, ...]:
        s = list(state)
        pc = s[cpu]
        if pc < 2:
            s[2 + self.order(cpu)[pc]] = cpu
        else:
            s[2] = s[3] = -1
        s[cpu] = pc + 1
        return tuple(s)

    def is_terminal(self, state: tuple[int, ...]) -> bool:
        return state[0] == 3 and state[1] == 3

    def vocabulary(self, state: tuple[int, ...]) -> Mapping[str, Any]:
        return {"finished": state[0] == 3 and state[1] == 3, "pc": state[:2]}

    def vocabulary_names(self) -> Mapping[str, str]:
        return {"finished": "both done", "pc": "program counters"}

    def describe_state(self, state: tuple[int, ...]) -> Mapping[str, Any]:
        return {"pc0": state[0], "pc1": state[1], "a": state[2], "b": state[3]}

    def describe_action(self, state: tuple[int, ...], cpu: int) -> Mapping[str, Any]:
        return {"label": "release" if state[cpu] == 2 else "take", "cpu": cpu}


@dataclass(frozen=True)
class Graph:
    """An explicit graph: states are ints, actions are successor ints."""

    edges: Mapping[int, Sequence[int]]
    inits: Sequence[int]
    terminal: frozenset[int] = field(default_factory=frozenset)

    def init_states(self) -> Sequence[int]:
        return list(self.inits)

    def actions(self, state: int) -> Sequence[int]:
        return list(self.edges.get(state, ()))

    def next_state(self, state: int, action: int) -> int:
        return action

    def is_terminal(self, state: int) -> bool:
        return state in self.terminal

    def vocabulary(self, state: int) -> Mapping[str, Any]:
        return {"node": state}

    def vocabulary_names(self) -> Mapping[str, str]:
        return {"node": "the node"}

    def describe_state(self, state: int) -> Mapping[str, Any]:
        return {"node": state}

    def describe_action(self, state: int, action: int) -> Mapping[str, Any]:
        return {"label": f"{state}->{action}"}


@dataclass(frozen=True)
class Faulty(Counters):
    """Counters whose model code fails once the total reaches 3."""

    def next_state(self, state: tuple[int, ...], action: int) -> tuple[int, ...]:
        if sum(state) >= 3:
            raise RuntimeError("model bug")
        return super().next_state(state, action)


def _int_env(environment: Mapping[str, Any], key: str, default: int, low: int = 0) -> int:
    value = environment.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ModelInputError(
            f"environment '{key}' must be an integer >= {low}", f"environment.{key}"
        )
    return value


def _knob(variant: Mapping[str, str], knob: str, values: Sequence[str], default: str) -> str:
    value = variant.get(knob, default)
    if value not in values:
        raise ModelInputError(
            f"variant knob '{knob}' has no value '{value}' (one of: {', '.join(values)})",
            f"variant.{knob}",
        )
    return value


class ToyProvider:
    """Designs: mutex (variant lock=yes|no; environment rounds), counters (environment k,
    n), locks (variant order=same|opposite), faulty, broken (a design-file error) and crash
    (a model bug while loading)."""

    KNOBS: Mapping[str, Sequence[str]] = {"mutex": ("lock",), "locks": ("order",)}
    ENV: Mapping[str, Sequence[str]] = {
        "mutex": ("rounds",), "counters": ("k", "n"), "faulty": ("k", "n"),
    }

    def __init__(self) -> None:
        self.loads: list[tuple[str, dict[str, str], dict[str, Any]]] = []

    def designs(self) -> Sequence[str]:
        return ["mutex", "counters", "locks", "faulty", "broken", "crash"]

    def load(self, design: str, variant: Mapping[str, str], environment: Mapping[str, Any]) -> Any:
        self.loads.append((design, dict(variant), dict(environment)))
        if design not in self.designs():
            raise ModelInputError(f"unknown design '{design}'", "design")
        if design == "broken":
            raise InputError("unknown instruction 'movq2'", "designs/broken.S", 7)
        if design == "crash":
            raise ValueError("model bug while loading")
        for knob in variant:
            if knob not in self.KNOBS.get(design, ()):
                raise ModelInputError(f"design '{design}' has no knob '{knob}'", f"variant.{knob}")
        for key in environment:
            if key not in self.ENV.get(design, ()):
                raise ModelInputError(
                    f"design '{design}' has no environment '{key}'", f"environment.{key}"
                )
        if design == "mutex":
            lock = _knob(variant, "lock", ("yes", "no"), "yes") == "yes"
            return Mutex(lock=lock, rounds=_int_env(environment, "rounds", 2, 1))
        if design == "locks":
            return Locks(opposite=_knob(variant, "order", ("same", "opposite"), "opposite")
                         == "opposite")
        k, n = _int_env(environment, "k", 3, 1), _int_env(environment, "n", 2)
        return Faulty(k, n) if design == "faulty" else Counters(k, n)
