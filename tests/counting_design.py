"""A design whose CPUs 1..n-1 each count to two and halt, independently of each other:
each takes four local states (before `done = 1`, before `done = 2`, at `halt()`,
halted) while CPU 0 idles. Its state counts are known, for the reduction tests."""

from __future__ import annotations

from pathlib import Path

from model.lang.parser import parse_design
from model.system.transition import DesignSystem, Environment

COUNTING = """\
design counting "CPUs 1..n-1 each count to two and halt"
cpus 4
symmetric
stack primary size 0x1000 per-cpu
percpu done = 0
cpu 0 start idle cpl 0 rsp top(primary) halted
cpu * start work cpl 0 rsp top(primary)

ENTRY(idle)
1:      hlt
        jmp   1b

function work {
    done = 1;
    done = 2;
    for (;;) {
        halt();
    }
}
"""


def counting(tmp_path: Path, cpus: int, symmetric: bool = True) -> DesignSystem:
    """The counting design on `cpus` CPUs, declared symmetric or not."""
    path = tmp_path / "counting.design"
    path.write_text(COUNTING if symmetric else COUNTING.replace("symmetric\n", ""))
    return DesignSystem(parse_design(path, {}), Environment(cpus=cpus))
