"""Wild returns are facts, not errors (issue 16, must-have 5): a CPU whose pc reaches an
address where the design has no code stops (run state `wild`, incident `wild-jump`), the
vocabulary says so (`cpu[i].wild`, `any_wild`), the trace leads to it and every property
is judged as usual."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from checker import cli
from model.lang.parser import parse_design
from model.system.interp import WILD_JUMP, SysState
from model.system.provider import DesignProvider
from model.system.transition import DesignSystem, Environment
from model.system.vocabulary import BUILTIN, CPU_FIELDS, Part
from model.x86.state import Run

# CPU 0 idles; its NMI handler counts the NMI and returns. `ret = wild` overwrites the
# saved RIP with 0 first, so the IRET goes where the design has no code. CPU 1 counts to 2
# and halts, so the system has something else to do while CPU 0 is lost.
DESIGN = """\
knob ret = good | wild
cpus 2
stack kstack size 0x1000 per-cpu
var handled = 0
var work = 0

idt idt
    gate NMI nmi_handler
end

cpu 0 start idle rsp top(kstack) idt idt
cpu 1 start worker rsp top(kstack) idt idt

ENTRY(idle)
1:      hlt
        jmp 1b

function worker {
        work++;
        work++;
        stop();
}

ENTRY(nmi_handler)
        incq handled
.if ret == wild
        movq $0, (%rsp)
.endif
        iretq
"""

PROPERTIES = """\
design = "wild.design"
environment = {{ nmi = [1, 0] }}
variant = {{ ret = "{ret}" }}

[[property]]
name = "no-wild"
kind = "never"
expr = "any_wild"
expect = "{never}"

[[property]]
name = "cpu0-not-wild"
kind = "always"
expr = "not cpu[0].wild and 'wild-jump' not in incidents"
expect = "{never}"

[[property]]
name = "nmi-handled"
kind = "reachable"
expr = "handled == 1"
expect = "holds"

[[property]]
name = "no-deadlock"
kind = "deadlock_free"
expect = "{never}"

[[property]]
name = "ends-halted"
kind = "final"
expr = "all_halted"
expect = "{never}"
"""


def system(ret: str, tmp_path: Path) -> DesignSystem:
    path = tmp_path / "wild.design"
    path.write_text(DESIGN)
    design = parse_design(path, {"ret": ret})
    return DesignSystem(design, Environment(nmi=(1, 0)))


def explore(sys_: DesignSystem) -> tuple[set[SysState], list[SysState]]:
    """Every reachable state, and those without an action."""
    seen = set(sys_.init_states())
    todo = list(seen)
    dead = []
    while todo:
        s = todo.pop()
        actions = sys_.actions(s)
        if not actions:
            dead.append(s)
        for a in actions:
            t = sys_.next_state(s, a)
            if t not in seen:
                seen.add(t)
                todo.append(t)
    return seen, dead


def test_a_wild_return_is_a_transition_to_a_lost_cpu(tmp_path: Path) -> None:
    sys_ = system("wild", tmp_path)
    seen, dead = explore(sys_)
    wild = [s for s in seen if s.machine.cpus[0].run is Run.WILD]
    assert wild, "the wild return is explored, not an error"
    for s in wild:
        assert WILD_JUMP in s.machine.incidents
        # A lost CPU takes nothing: no step, no event (CPU 1 may still move).
        assert all(a.cpu != 0 for a in sys_.actions(s))
        v = sys_.vocabulary(s)
        assert v["any_wild"] and v["cpu"][0]["wild"]
        assert not v["cpu"][0]["running"] and not v["cpu"][0]["halted"]
        assert not v["cpu"][0]["shutdown"] and not v["all_halted"]
    # Where CPU 0 is lost and CPU 1 has halted, nothing moves: a deadlock, not the end.
    stuck = [s for s in dead if s.machine.cpus[0].run is Run.WILD]
    assert stuck and not any(sys_.is_terminal(s) for s in stuck)
    # The incident is sticky and only a wild CPU sets it.
    assert all((WILD_JUMP in s.machine.incidents) == (s.machine.cpus[0].run is Run.WILD)
               for s in seen)


def test_a_correct_return_never_goes_wild(tmp_path: Path) -> None:
    sys_ = system("good", tmp_path)
    seen, dead = explore(sys_)
    assert not any(sys_.vocabulary(s)["any_wild"] for s in seen)
    assert all(sys_.is_terminal(s) for s in dead)


def test_the_step_reads_as_a_lost_cpu(tmp_path: Path) -> None:
    sys_ = system("wild", tmp_path)
    seen, _ = explore(sys_)
    before = next(s for s in seen if s.machine.cpus[0].run is Run.RUNNING
                  and sys_.interp.instr_at(s.machine.cpus[0].pc) is None)
    step = next(a for a in sys_.actions(before) if a.cpu == 0 and a.kind == "step")
    d = sys_.describe_action(before, step)
    assert d["label"] == ("cpu0: jumps to <guest code>+0, where the design has no code: "
                          "it is lost")
    assert WILD_JUMP in str(d["damage"])
    assert sys_.describe_state(sys_.next_state(before, step))["cpu0.run"] == "wild"


def test_vocabulary_entries_say_what_they_read() -> None:
    names = {e.name: e for e in BUILTIN}
    # POR must see the wild step: both names read the CPUs (the step also adds an
    # incident, so it is never a persistent-set candidate).
    assert names["any_wild"].reads == (Part.CPU,)
    assert "wild" in {f.name for f in CPU_FIELDS}


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    capsys.readouterr()
    code = cli.main([*argv, "--format", "json"], DesignProvider())
    return code, json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("flags", [[], ["--por"]])
@pytest.mark.parametrize(("ret", "never"), [("wild", "violated"), ("good", "holds")])
def test_properties_are_judged_as_usual(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        ret: str, never: str, flags: list[str]) -> None:
    (tmp_path / "wild.design").write_text(DESIGN)
    toml = tmp_path / "wild.toml"
    toml.write_text(textwrap.dedent(PROPERTIES.format(ret=ret, never=never)))
    code, out = run([str(toml), "--report-dir", str(tmp_path / "r"), *flags], capsys)
    verdicts = {r["name"]: r["verdict"] for r in out["results"]}
    assert verdicts == {
        "no-wild": never, "cpu0-not-wild": never, "nmi-handled": "holds",
        "no-deadlock": never, "ends-halted": never,
    }, out
    assert code == 0
    if ret == "wild":
        result = next(r for r in out["results"] if r["name"] == "no-wild")
        trace = json.loads(Path(result["traces"]["json"]).read_text())
        edges = sorted(trace["edges"], key=lambda e: e["step"])
        assert edges[-1]["label"] == ("cpu0: jumps to <guest code>+0, where the design has "
                                      "no code: it is lost")
        assert edges[-1]["damage"] == "wild-jump"
        assert any("iretq" in e["label"] for e in edges)
        last = max(trace["nodes"], key=lambda n: n["step"])
        assert last["cpu0.run"] == "wild" and last["incidents"] == "wild-jump"
        capsys.readouterr()
        assert cli.main(["replay", result["traces"]["json"]], DesignProvider()) == 0
        assert "reproduces: the property fails at step 5" in capsys.readouterr().out
