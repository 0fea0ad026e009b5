"""What an exploration reached of a design: lines, routines, IDT vectors, events."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from model.lang.ir import Design
from model.system.interp import Interpreter, SysState
from model.system.relation import Action


class Coverage:
    """Coverage of one design against the states an exploration visited."""

    def __init__(
        self, design: Design, interp: Interpreter,
        offered: Callable[[SysState], Sequence[Action]],
    ):
        self.design = design
        self.interp = interp
        self.offered = offered  # the actions offered in a state, without z3

    def coverage(self, states: Iterable[SysState]) -> dict[str, Any]:
        """What an exploration reached: design lines (an instruction some CPU was about to
        execute), routines, IDT vectors (frames seen) and environment events (enabled
        actions), against everything the design contains."""
        lines: set[tuple[str, int]] = set()
        routines: set[str] = set()
        vectors: set[int] = set()
        events: set[str] = set()
        for s in states:
            for c in s.machine.cpus:
                routines.add(c.pc.routine)
                ins = self.interp.instr_at(c.pc)
                if ins is not None:  # a macro's line and its invocation are both reached
                    lines.update((loc.file, loc.line) for loc in ins.loc.chain())
            for f in s.machine.frames:
                vectors.add(f.vector)
            for a in self.offered(s):  # no z3: which events were offered is enough
                events.add(a.kind if a.kind != "ext" else f"ext:{a.arg:#x}")
        all_lines: dict[str, set[int]] = {}
        for r in self.design.routines.values():
            for ins in r.instrs:
                for loc in ins.loc.chain():
                    all_lines.setdefault(loc.file, set()).add(loc.line)
        files = {
            f: {
                "reached": sorted(n for (ff, n) in lines if ff == f),
                "unreached": sorted(n for n in ls if (f, n) not in lines),
            }
            for f, ls in all_lines.items()
        }
        gated = sorted({g.vector for t in self.design.idts for g in t.gates})
        return {
            "files": files,
            "routines": {name: name in routines for name in sorted(self.design.routines)},
            "vectors": {str(v): v in vectors for v in sorted(set(gated) | vectors)},
            "events": sorted(events),
            "unreached_lines": sum(len(v["unreached"]) for v in files.values()),
        }

