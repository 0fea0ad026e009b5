"""Review fixes of issue 12 (item 5): per-CPU IDT/TSS instances that start different or
empty (`cpus LIST`), and witness names that count steps as the text trace does."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from checker import cli
from checker.errors import InputError
from model.lang.parser import parse_design
from model.system.layout import build_layout, initial_machines
from model.system.provider import DesignProvider
from model.system.transition import DesignSystem, Environment
from model.x86.arch import MC, NMI
from model.x86.state import Run

PER_CPU = """\
cpus 3
stack primary size 0x1000 per-cpu
stack nmi_stack size 0x1000 per-cpu
stack other size 0x1000 per-cpu
cpu * start main rsp top(primary) idt idt_tables tss tss_page

idt idt_tables per-cpu
    gate #MC mc_handler
    gate NMI nmi_handler ist 2 cpus 0
    gate #DE de_handler cpus 1-2
    gate #DE de_handler2                # every CPU: overrides the line above
    gate #BP bp_handler cpus 0,2
end

tss tss_page per-cpu
    rsp0 primary
    ist 2 nmi_stack cpus 0
    ist 3 other
    ist 3 none cpus 2
end

ENTRY(main)
1:      hlt
        jmp 1b
ENTRY(nmi_handler)
        hlt
ENTRY(mc_handler)
        hlt
ENTRY(de_handler)
        hlt
ENTRY(de_handler2)
        hlt
ENTRY(bp_handler)
        hlt
"""


def load(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "t.design"
    path.write_text(textwrap.dedent(text))
    return path


def test_per_cpu_tables_start_with_their_own_gates_and_slots(tmp_path: Path) -> None:
    d = parse_design(load(tmp_path, PER_CPU))
    [machine], _ = initial_machines(build_layout(d, 3))
    gates = {t.name: {v: g.routine for v, g in t.gates} for t in machine.idts}
    assert gates == {
        "idt_tables[0]": {0: "de_handler2", 2: "nmi_handler", 3: "bp_handler", 18: "mc_handler"},
        "idt_tables[1]": {0: "de_handler2", 18: "mc_handler"},
        "idt_tables[2]": {0: "de_handler2", 3: "bp_handler", 18: "mc_handler"},
    }
    slots = {t.name: (t.rsp0, t.ist[1], t.ist[2]) for t in machine.tsss}
    assert slots == {
        "tss_page[0]": ("primary[0]", "nmi_stack[0]", "other[0]"),
        "tss_page[1]": ("primary[1]", None, "other[1]"),
        "tss_page[2]": ("primary[2]", None, None),
    }


def test_an_ap_without_an_nmi_gate_cannot_take_an_nmi(tmp_path: Path) -> None:
    # CPU 0's table has the NMI gate, CPU 1's not yet: an NMI on CPU 1 is a fault
    # delivering through a missing gate (#GP, then #DF, then a triple fault)
    d = parse_design(load(tmp_path, PER_CPU))
    system = DesignSystem(d, Environment(nmi=1, cpus=2))
    [s] = system.init_states()
    nmi = [a for a in system.actions(s) if a.kind == "nmi"]
    by_cpu = {a.cpu: system.next_state(s, a) for a in nmi}
    assert by_cpu[0].machine.cpus[0].pc.routine == "nmi_handler"
    after = by_cpu[1]
    for _ in range(10):
        if after.machine.cpus[1].run is Run.SHUTDOWN:
            break
        steps = [a for a in system.actions(after) if a.cpu == 1 and a.kind == "step"]
        if not steps:
            break
        after = system.next_state(after, steps[0])
    assert after.machine.cpus[1].pc.routine != "nmi_handler"
    assert NMI not in dict(next(t for t in after.machine.idts if t.name == "idt_tables[1]").gates)
    assert MC in dict(next(t for t in after.machine.idts if t.name == "idt_tables[1]").gates)


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ("idt t\n    gate NMI nmi_handler cpus 0\nend\n", "needs a per-cpu idt"),
        ("tss s\n    rsp0 primary cpus 0\nend\n", "needs a per-cpu tss"),
        ("idt t per-cpu\n    gate NMI nmi_handler cpus 0-x\nend\n", "bad CPU list"),
        ("idt t per-cpu\n    gate NMI nmi_handler cpus 3-1\nend\n", "bad CPU list"),
        ("idt t per-cpu\n    gate NMI nmi_handler cpus 16\nend\n", "bad CPU list"),
        ("tss s per-cpu\n    ist 1 nowhere cpus 1\nend\n", "missing stack 'nowhere'"),
    ],
)
def test_per_cpu_initial_content_errors(tmp_path: Path, block: str, message: str) -> None:
    text = PER_CPU + block
    with pytest.raises(InputError, match=message) as e:
        parse_design(load(tmp_path, text))
    assert e.value.line == PER_CPU.count("\n") + 2


# -- witness names and trace steps ----------------------------------------------------------

SYMBOLIC = """\
stack primary size 0x1000
var x = 0
var hit = 0
input v = 0..255
cpu 0 start main rsp top(primary)

function main {
    nop();
    input(x, v);
    if (x == 200) {
        hit = 1;
    }
    stop();
}
"""

PROPERTY = """\
design = "t"
environment = { symbolic = ["v"] }

[[property]]
name = "never-hit"
kind = "never"
expr = "hit == 1"
expect = "holds"
"""


def test_witness_names_count_steps_as_the_trace_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    designs = tmp_path / "designs"
    designs.mkdir()
    (designs / "t.design").write_text(SYMBOLIC)
    (tmp_path / "p.toml").write_text(PROPERTY)
    capsys.readouterr()
    code = cli.main([str(tmp_path / "p.toml"), "--report-dir", str(tmp_path / "r")],
                    provider=DesignProvider(directory=designs))
    out = capsys.readouterr().out
    assert code == 1, out
    m = re.search(r"with witness v@(\d+)=0xc8", out)
    assert m is not None, out
    step = int(m.group(1))
    # the text trace's step with that number is the one that took the input
    assert re.search(rf"^\s+{step}\. \[cpu0\] cpu0: input\(x, v\)", out, re.M), out
