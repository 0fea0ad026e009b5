"""Liveness end to end (issue 16): the `eventually` and `leads_to` kinds in property files,
the state graph the explorer records, fairness per actor, lasso counterexamples in every
format, `replay` of a lasso, and the shipped liveness properties of every design."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import networkx as nx
import pytest

from checker import cli
from checker.errors import InputError
from checker.explore import Bounds, Check, Options, explore
from checker.liveness import Fairness
from checker.spec import parse_property_file
from checker.trace import read_graphml
from checker.verdict import Kind, Verdict

ROOT = Path(__file__).resolve().parent.parent


# -- a toy with actors -------------------------------------------------------------------


class Toy:
    """States are (position, done). Actor 0 spins between positions 0 and 1; actor 1 can
    set `done`, in every state (`gate = "always"`) or only at position 0 (`"sometimes"`);
    actor 2 (named `env`) is an event that may also set done."""

    def __init__(self, gate: str = "always", event: bool = False):
        self.gate = gate
        self.event = event

    def init_states(self) -> Sequence[tuple[int, bool]]:
        return [(0, False)]

    def actions(self, s: tuple[int, bool]) -> Sequence[str]:
        pos, done = s
        if done:
            return []
        out = ["spin"]
        if self.gate == "always" or pos == 0:
            out.append("finish")
        if self.event:
            out.append("event")
        return out

    def next_state(self, s: tuple[int, bool], a: str) -> tuple[int, bool]:
        pos, _ = s
        return (1 - pos, False) if a == "spin" else (pos, True)

    def is_terminal(self, s: tuple[int, bool]) -> bool:
        return s[1]

    def vocabulary(self, s: tuple[int, bool]) -> Mapping[str, Any]:
        return {"pos": s[0], "done": s[1]}

    def vocabulary_names(self) -> Mapping[str, str]:
        return {"pos": "position", "done": "finished"}

    # checker.interface.Fair
    def actor(self, s: tuple[int, bool], a: str) -> int:
        return {"spin": 0, "finish": 1, "event": -1}[a]

    def actor_names(self) -> list[str]:
        return ["p0", "p1"]

    def fair_actors(self) -> int:
        return 2


def judge(system: Any, kind: Kind, expr: str, fairness: Fairness, to: str | None = None,
          bounds: Bounds | None = None, options: Options | None = None) -> Any:
    check = Check(kind, lambda v: eval(expr, {}, dict(v)), "p",
                  conclusion=(lambda v: eval(to, {}, dict(v))) if to else None,
                  fairness=fairness)
    return explore(system, [check], bounds, options=options).outcomes[0]


def test_weak_fairness_makes_the_finishing_process_finish() -> None:
    """Actor 1 is enabled in every state: weak fairness forces its step."""
    assert judge(Toy(), Kind.EVENTUALLY, "done", Fairness()).verdict is Verdict.HOLDS
    out = judge(Toy(), Kind.EVENTUALLY, "done", Fairness(weak=False))
    assert out.verdict is Verdict.VIOLATED
    assert out.trace is not None and out.trace.loop_start == 0
    assert out.trace.states[-1] == out.trace.states[0] and out.trace.length == 2


def test_an_intermittently_enabled_process_needs_strong_fairness() -> None:
    """Actor 1 is enabled only at position 0: the spin 0 -> 1 -> 0 is weakly fair to it,
    not strongly."""
    weak = judge(Toy("sometimes"), Kind.EVENTUALLY, "done", Fairness())
    assert weak.verdict is Verdict.VIOLATED
    strong = judge(Toy("sometimes"), Kind.EVENTUALLY, "done",
                   Fairness(strong=frozenset({1})))
    assert strong.verdict is Verdict.HOLDS


def test_environment_events_get_no_fairness() -> None:
    toy = Toy("never", event=True)  # only the event can finish
    out = judge(toy, Kind.EVENTUALLY, "done", Fairness())
    assert out.verdict is Verdict.VIOLATED
    assert judge(toy, Kind.EVENTUALLY, "done",
                 Fairness(strong=frozenset({-1}))).verdict is Verdict.HOLDS


def test_leads_to_and_a_terminal_state_that_stutters() -> None:
    # pos == 1 leads to done: weakly fair actor 1 finishes.
    assert judge(Toy(), Kind.LEADS_TO, "pos == 1", Fairness(), to="done").verdict \
        is Verdict.HOLDS
    # done leads to pos == 1: a state `done` at position 0 stutters forever there.
    out = judge(Toy(), Kind.LEADS_TO, "done", Fairness(), to="pos == 1")
    assert out.verdict is Verdict.VIOLATED
    assert out.trace is not None and out.trace.loop_start == out.trace.length
    assert out.trace.states[-1] == (0, True)


def test_a_bound_gives_incomplete_never_holds() -> None:
    out = judge(Toy(), Kind.EVENTUALLY, "done", Fairness(), bounds=Bounds(max_states=2))
    assert out.verdict is Verdict.INCOMPLETE
    out = judge(Toy(), Kind.EVENTUALLY, "done", Fairness(), bounds=Bounds(max_depth=0))
    assert out.verdict is Verdict.INCOMPLETE


def test_reductions_and_workers_are_off_for_liveness() -> None:
    out = judge(Toy(), Kind.EVENTUALLY, "done", Fairness(),
                options=Options(por=True, symmetry=True, workers=2))
    assert out.verdict is Verdict.HOLDS


# -- property files ------------------------------------------------------------------------


def parse(body: str) -> Any:
    return parse_property_file('design = "d"\n' + textwrap.dedent(body), "p.toml")


@pytest.mark.parametrize("body, line, words", [
    ('[[property]]\nname = "a"\nkind = "leads_to"\nexpr = "x"\nexpect = "holds"\n', 2,
     "needs a 'to'"),
    ('[[property]]\nname = "a"\nkind = "always"\nexpr = "x"\nto = "y"\nexpect = "holds"\n', 6,
     "takes no 'to'"),
    ('[[property]]\nname = "a"\nkind = "eventually"\nexpr = "x"\nto = "y"\nexpect = "holds"\n',
     6, "takes no 'to'"),
    ('[[property]]\nname = "a"\nkind = "eventually"\nexpr = "x"\nfairness = "fair"\n'
     'expect = "holds"\n', 6, "'fairness' must be one of"),
    ('[[property]]\nname = "a"\nkind = "never"\nexpr = "x"\nfairness = "weak"\n'
     'expect = "holds"\n', 6, "takes no 'fairness'"),
    ('[[property]]\nname = "a"\nkind = "leads_to"\nexpr = "x"\nto = "y +"\n'
     'expect = "holds"\n', 6, "bad expression"),
    ('[[property]]\nname = "a"\nkind = "eventually"\nexpr = "x"\nstrong_fairness = "cpu0"\n'
     'expect = "holds"\n', 6, "must be an array"),
])
def test_liveness_keys_are_checked_at_load(body: str, line: int, words: str) -> None:
    with pytest.raises(InputError) as err:
        parse(body)
    assert err.value.line == line and words in str(err.value)


def test_an_unknown_actor_is_a_load_error(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    toml = tmp_path / "p.toml"
    toml.write_text(textwrap.dedent("""\
        design = "xen_ist"
        [[property]]
        name = "a"
        kind = "eventually"
        expr = "nmi_frames == 0"
        strong_fairness = ["cpu9"]
        expect = "holds"
        """))
    code = cli.main([str(toml), "--report-dir", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and f"{toml}:6:" in err and "matches no actor" in err


# -- shipped properties, lassos in every format, replay -------------------------------------

SHIPPED = {
    "kexec_crash.toml": {
        "crashing-cpu-eventually-starts-crash-kernel": "holds",
        "shot-down-cpus-eventually-halt": "holds",
        "cpumask-shot-down-cpus-eventually-halt": "holds",
        "stuck-cpu-spins-without-its-watchdog-nmi": "violated",
    },
    "ist_reentrancy.toml": {
        "delivered-nmi-reaches-do-nmi": "holds",
        "latched-nmi-eventually-delivered": "holds",
        "nmi-handler-returns-to-interrupted-code": "holds",
        "iret-inside-nmi-handler-never-returns": "violated",
        "nmis-need-never-come": "violated",
    },
    "boot.toml": {
        "proposed-aps-eventually-idle": "holds",
        "old-order-ap-never-idles": "violated",
    },
    "pv_traps.toml": {
        "int-0x80-reaches-guest-handler": "holds",
        "hypercall-resumes-the-guest": "violated",
    },
    "syscall_window.toml": {
        "nmi-in-syscall-window-reaches-handler": "holds",
    },
}
# The violations whose loop is a spin of the design's code (not a state that stutters).
SPINS = {"stuck-cpu-spins-without-its-watchdog-nmi", "nmis-need-never-come",
         "hypercall-resumes-the-guest"}


# Explorations that take 2-3 s here.
SLOW_FILES = {"boot.toml", "kexec_crash.toml", "syscall_window.toml"}


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    code = cli.main([*args, "--format", "json"])
    return code, json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("file", [
    pytest.param(f, marks=pytest.mark.slow) if f in SLOW_FILES else f for f in sorted(SHIPPED)
])
def test_shipped_liveness_properties(
    file: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: Any
) -> None:
    monkeypatch.chdir(ROOT)
    expected = SHIPPED[file]
    names = [a for n in expected for a in ("--property", n)]
    code, data = run(capsys, f"properties/{file}", *names, "--workers", "1",
                     "--report-dir", str(tmp_path / "r"))
    got = {r["name"]: r for r in data["results"]}
    assert {n: got[n]["verdict"] for n in expected} == expected
    assert code == 0
    for name, verdict in expected.items():
        result = got[name]
        assert result["kind"] in ("eventually", "leads_to")
        assert (result["to"] is not None) == (result["kind"] == "leads_to")
        assert "assuming" in result["message"]
        if verdict == "violated":
            loop = result["loop_start"]
            assert isinstance(loop, int) and 0 <= loop <= result["trace_length"]
            looping = loop < result["trace_length"]
            assert looping == (name in SPINS), name
        else:
            assert result["loop_start"] is None


def test_a_spin_lasso_in_every_format_and_replay(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: Any
) -> None:
    """The watchdog spin of xen_stuck (the shipped stuck-cpu-spins-without-its-watchdog-nmi,
    expected to hold here): text, JSON, GraphML/node-link/DOT, ITF, SARIF and HTML show
    the loop; replay reproduces it and notices a loop that no longer closes, a property
    no longer owed and a loop that the recorded fairness makes unfair."""
    monkeypatch.chdir(tmp_path)
    reports = tmp_path / "r"
    sarif = tmp_path / "out.sarif"
    name = "crash-kernel-starts"
    # expected to hold, so that SARIF has a result for it
    (tmp_path / "p.toml").write_text(textwrap.dedent(f"""\
        design = "xen_kexec"
        variant = {{ patch = "patch-v1-fixed", crash_from = "any" }}
        environment = {{ cpus = 2, nmi = [0, 1] }}
        [[property]]
        name = "{name}"
        kind = "eventually"
        expr = "kexec_started == 1"
        expect = "holds"
        """))
    code = cli.main(["p.toml", "--workers", "1", "--report-dir", str(reports),
                     "--sarif", str(sarif), "--html"])
    text = capsys.readouterr().out
    assert code == 1
    assert "---- loop: the steps below return to state 1" in text
    assert "---- back to state 1 (the loop repeats forever)" in text
    base = reports / "p.toml" / name
    data = json.loads(Path(f"{base}.json").read_text())
    graph = nx.node_link_graph({k: v for k, v in data.items()
                                if k not in ("choices", "choice_labels", "replay")},
                               directed=True, multigraph=False, edges="edges")
    last = f"s{len(data['choices']) - 1}"
    assert graph.graph["loop_start"] == 1
    assert graph.edges[last, "s1"]["back_edge"] and graph.edges[last, "s1"]["loop"]
    assert graph.nodes[last]["cpu0.pc"] == graph.nodes["s1"]["cpu0.pc"]
    assert "for (;;)" in graph.edges["s1", "s2"]["label"] or graph.edges["s1", "s2"]["loop"]
    assert read_graphml(f"{base}.graphml").edges[last, "s1"]["loop"] is True
    assert f'"{last}" -> "s1"' in Path(f"{base}.dot").read_text()
    itf = json.loads(Path(f"{base}.itf.json").read_text())
    assert itf["loop"] == 1 and len(itf["states"]) == len(data["choices"]) - 1
    flow = json.loads(sarif.read_text())["runs"][0]["results"][0]["codeFlows"][0]
    locations = flow["threadFlows"][0]["locations"]
    assert locations[-1]["location"]["physicalLocation"] == \
        locations[1]["location"]["physicalLocation"]
    assert "repeat forever" in locations[-1]["location"]["message"]["text"]
    page = (reports / "index.html").read_text()
    assert "step loop" in page and "repeat forever" in page and 'data-loop="1"' in page

    assert cli.main(["replay", f"{base}.json"]) == 0
    assert "reproduces: the loop from step 1 closes" in capsys.readouterr().out
    assert cli.main(["replay", f"{base}.itf.json"]) == 0
    capsys.readouterr()
    # A loop that does not close, and a property that is no longer owed, no longer
    # reproduce.
    record = data["replay"]
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"replay": {**record, "loop_start": 0}}))
    assert cli.main(["replay", str(broken)]) == 1
    assert "no longer closes" in capsys.readouterr().out
    broken.write_text(json.dumps({"replay": {**record, "expr": "kexec_started == 0"}}))
    assert cli.main(["replay", str(broken)]) == 1
    assert "holds at step 0" in capsys.readouterr().out
    # Without the fairness the violation assumed, the same loop is unfair to cpu0.ipi.
    broken.write_text(json.dumps({"replay": {**record, "strong_fairness": ["cpu0.ipi"]}}))
    assert cli.main(["replay", str(broken)]) == 1
    assert "not fair to cpu0.ipi" in capsys.readouterr().out


def test_a_budget_that_ends_the_scc_pass_gives_incomplete() -> None:
    """Every state explored, but the run's budget ran out before the SCC pass: the
    liveness property is incomplete, the invariant explored with it still holds."""
    from checker.explore import Budget

    calls = {"n": 0}

    def over() -> str | None:  # the budget runs out once exploration is done
        calls["n"] += 1
        return "SIGTERM received" if calls["n"] > 1 else None

    checks = [
        Check(Kind.EVENTUALLY, lambda v: v["done"], "live", fairness=Fairness()),
        Check(Kind.ALWAYS, lambda v: v["pos"] in (0, 1), "safe"),
    ]
    done = explore(Toy(), checks, budget=Budget(interrupted=over))
    live, safe = done.outcomes
    assert live.verdict is Verdict.INCOMPLETE and "SIGTERM" in live.message
    assert safe.verdict is Verdict.HOLDS


KEXEC_LIVE_AND_SAFE = """\
design = "xen_kexec"
environment = { cpus = 2, nmi = [0, 1] }

[[property]]
name = "shot-down-cpus-eventually-halt"
kind = "eventually"
expr = "all(c.halted and crash_save_done[c.id] for c in cpus if c.id != 0)"
strong_fairness = ["cpu*.ipi"]
expect = "holds"

[[property]]
name = "crash-kernel-started-once"
kind = "always"
expr = "kexec_started <= 1"
expect = "holds"
"""


@pytest.mark.parametrize("workers", ["1", "2"])
def test_reductions_asked_for_are_not_used_and_the_verdict_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], workers: str
) -> None:
    """Under --por (and --workers) a group's liveness properties are explored apart,
    unreduced and in one process; its invariants keep the reduction. With 2 workers the
    two explorations run side by side, each in one process: none was refused workers."""
    path = tmp_path / "live.toml"
    path.write_text(KEXEC_LIVE_AND_SAFE)
    code, data = run(capsys, str(path), "--por", "--workers", workers,
                     "--report-dir", str(tmp_path / "r"))
    assert code == 0
    got = {r["name"]: r for r in data["results"]}
    live = got["shot-down-cpus-eventually-halt"]
    assert live["verdict"] == "holds"
    assert "explored without partial-order reduction: liveness needs" in live["message"]
    safe = got["crash-kernel-started-once"]
    assert data["explorations"][safe["exploration"]]["reductions"] == ["por"]
    assert data["explorations"][live["exploration"]]["reductions"] == []


def test_invariants_explored_with_liveness_are_still_judged() -> None:
    """The liveness level loop judges the other properties as the plain one does."""
    checks = [
        Check(Kind.EVENTUALLY, lambda v: v["done"], "live", fairness=Fairness()),
        Check(Kind.NEVER, lambda v: v["done"] and v["pos"] == 1, "never"),
        Check(Kind.ALWAYS, lambda v: v["pos"] in (0, 1), "always"),
        Check(Kind.REACHABLE, lambda v: v["done"], "reach"),
    ]
    done = explore(Toy(), checks)
    assert [o.verdict for o in done.outcomes] == [
        Verdict.HOLDS, Verdict.VIOLATED, Verdict.HOLDS, Verdict.HOLDS]
    assert done.outcomes[1].trace is not None and done.outcomes[1].trace.length == 2
    assert done.complete and done.stats.graph_bytes > 0


def test_a_leads_to_whose_premise_is_never_true_is_vacuous(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    toml = tmp_path / "p.toml"
    toml.write_text(textwrap.dedent("""\
        design = "xen_ist"
        variant = { context = "xen" }
        environment = { nmi = 0, mce = 0 }
        [[property]]
        name = "never-starts"
        kind = "leads_to"
        expr = "running(0, 'do_nmi')"
        to = "running(0, 'xen_idle')"
        fairness = "strong"
        expect = "holds"
        """))
    code, data = run(capsys, str(toml), "--report-dir", str(tmp_path / "r"))
    [result] = data["results"]
    assert code == 0 and result["verdict"] == "holds"
    assert "strong fairness for cpu0" in result["message"]
    assert result["vacuity"] == [
        "vacuous: the antecedent `running(0, 'do_nmi')` is true in no reachable state "
        f"({result['states']} states)"
    ]


def test_liveness_with_fingerprints() -> None:
    """--compact keeps 64-bit fingerprints: the graph and the lasso are the same."""
    plain = judge(Toy("sometimes"), Kind.EVENTUALLY, "done", Fairness())
    compact = judge(Toy("sometimes"), Kind.EVENTUALLY, "done", Fairness(),
                    options=Options(compact=True))
    assert compact.verdict is plain.verdict is Verdict.VIOLATED
    assert compact.trace is not None and plain.trace is not None
    assert compact.trace.choices == plain.trace.choices
    assert compact.trace.loop_start == plain.trace.loop_start
