"""Toy models with the optional review methods (inspect_state, action_key, coverage) for
the report tests; the plain toys in toy_models.py have none of them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from toy_models import CRIT, Mutex, ToyProvider

SOURCE = """\
# mutex.S: a toy source file
enter:
    lock
    inc  in_critical
leave:
    dec  in_critical
    unlock
spare:
    nop
"""
LINES = {"enter": 3, "leave": 6}
ALL_LINES = (3, 4, 6, 7, 9)


@dataclass(frozen=True)
class ReviewMutex(Mutex):
    """Mutex whose actions run lines of `source` (a file path) and that can be inspected."""

    source: str = "mutex.S"
    big: bool = False  # put a 2**60 value into inspect_state (ITF #bigint)
    witness: bool = False  # carry witness values in inspect_state

    def describe_action(self, state: tuple[int, ...], action: tuple[str, int]) -> Mapping[str, Any]:
        what, cpu = action
        out: dict[str, Any] = {"label": f"cpu{cpu}: {what}", "cpu": cpu, "kind": what,
                               "file": self.source, "line": LINES[what]}
        if what == "enter" and state[1 - cpu] == CRIT:
            out["damage"] = "both processes in the critical section"
        return out

    def action_key(self, state: tuple[int, ...], action: tuple[str, int]) -> str:
        return f"{action[0]}:{action[1]}:0"

    def inspect_state(self, state: tuple[int, ...]) -> dict[str, Any]:
        cpus = []
        for cpu in (0, 1):
            line = LINES["leave"] if state[cpu] == CRIT else LINES["enter"]
            cpus.append({
                "id": cpu, "pc": "crit" if state[cpu] == CRIT else "idle",
                "file": self.source, "line": line, "instruction": "lock",
                "left": state[3 + cpu], "registers": {"r0": f"{state[3 + cpu]:#x}"},
            })
        frames = [
            {"cpu": cpu, "vector": 2, "name": "CS", "source": "enter", "lo": "0x10",
             "hi": "0x20", "stack": "lockstack", "from_cpl": 0,
             "clobbered": state[0] == CRIT and state[1] == CRIT and cpu == 0,
             "on_guest_stack": False}
            for cpu in (0, 1) if state[cpu] == CRIT
        ]
        out: dict[str, Any] = {
            "cpus": cpus,
            "stacks": [{"name": "lockstack", "owner": "toy", "lo": "0x0", "size": 32,
                        "words": [{"address": "0x18", "offset": 24, "value": str(state[2])}],
                        "frames": frames, "rsp_of": []}],
            "variables": {"lock": str(state[2])},
            "incidents": ["both-critical"] if state[0] == state[1] == CRIT else [],
            "budgets": [state[3], state[4]],
        }
        if self.big:
            out["huge"] = 2**60
        if self.witness:
            out["witness"] = {"rdi": "0xdead0000", "guest_rsp": "0x7fff0000"}
        return out

    def coverage(self, states: Iterable[tuple[int, ...]]) -> dict[str, Any]:
        reached: set[int] = set()
        for state in states:
            for action in self.actions(state):
                reached.add(LINES[action[0]])
        return {
            "files": {self.source: {
                "reached": sorted(reached),
                "unreached": sorted(set(ALL_LINES) - reached),
            }},
            "routines": {"enter": LINES["enter"] in reached, "leave": LINES["leave"] in reached,
                         "spare": False},
            "vectors": {"2": True},
            "events": ["enter", "leave"],
            "unreached_lines": len(set(ALL_LINES) - reached),
        }


class ReviewProvider(ToyProvider):
    """ToyProvider plus design "rmutex" (variant lock=yes|no, environment rounds)."""

    KNOBS: Mapping[str, Sequence[str]] = {**ToyProvider.KNOBS, "rmutex": ("lock",)}
    ENV: Mapping[str, Sequence[str]] = {**ToyProvider.ENV, "rmutex": ("rounds",)}

    def __init__(self, source: str = "mutex.S", big: bool = False, witness: bool = False,
                 lock_always: bool = False):
        super().__init__()
        self.source = source
        self.big = big
        self.witness = witness
        self.lock_always = lock_always  # a "fixed design": the lock is taken whatever

    def designs(self) -> Sequence[str]:
        return [*super().designs(), "rmutex"]

    def load(self, design: str, variant: Mapping[str, str], environment: Mapping[str, Any]) -> Any:
        if design != "rmutex":
            return super().load(design, variant, environment)
        plain = super().load("mutex", variant, environment)
        return ReviewMutex(lock=plain.lock or self.lock_always, rounds=plain.rounds,
                           source=self.source, big=self.big, witness=self.witness)
