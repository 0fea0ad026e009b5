"""The model interface: a required core, optional capabilities found through typed
protocols (never `getattr` on a name), `--model PACKAGE:FACTORY` with a second model
package (tests/tiny_model), the property rules shared by the explorer and replay, and the
table of output writers."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from review_toys import ReviewMutex
from toy_models import Mutex

from checker import cli, writers
from checker.explore import Check, explore
from checker.expr import compile_expr
from checker.interface import Capabilities, ModelInterfaceError, capabilities, require_core
from checker.replay import replay_trace
from checker.symbolic import var
from checker.verdict import Kind, Verdict
from checker.writers import WRITERS, Target, Writer

ROOT = Path(__file__).resolve().parent.parent
RING = "tests/tiny_model/ring.toml"
TINY = "tests.tiny_model:provider"


def run_checker(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "checker", *args], cwd=cwd, capture_output=True, text=True,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, timeout=120,
    )


# -- a second model package, end to end ------------------------------------------------------


def test_the_tiny_model_package_is_checked_end_to_end(tmp_path: Path) -> None:
    done = run_checker("--model", TINY, RING, "--format", "json",
                       "--report-dir", str(tmp_path / "r"))
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    verdicts = {r["name"]: (r["verdict"], r["states"]) for r in data["results"]}
    assert verdicts == {
        "one-in-critical-section": ("holds", 13),
        "only-the-holder-enters": ("holds", 13),
        "last-process-enters": ("holds", 13),
        "never-three-laps": ("violated", 13),
        "ends-after-its-laps": ("holds", 13),
        "reliable-ring-never-stalls": ("holds", 13),
        "lossy-ring-stalls": ("violated", 6),
    }
    stalls = next(r for r in data["results"] if r["name"] == "lossy-ring-stalls")
    assert stalls["choices"] == [0, 0, 1]  # enter, then leave and lose the token
    # The trace replays through the same --model.
    again = run_checker("replay", "--model", TINY, stalls["traces"]["json"])
    assert again.returncode == 0, again.stderr
    assert "reproduces" in again.stdout


def test_a_wrong_expectation_on_the_tiny_model_fails_the_gate(tmp_path: Path) -> None:
    text = (ROOT / RING).read_text().replace(
        'name = "lossy-ring-stalls"\nvariant = { lossy = "yes" }\nkind = "deadlock_free"\n'
        'expect = "violated"',
        'name = "lossy-ring-stalls"\nvariant = { lossy = "yes" }\nkind = "deadlock_free"\n'
        'expect = "holds"',
    )
    assert 'expect = "holds"' in text.split("lossy-ring-stalls")[1]
    (tmp_path / "ring.toml").write_text(text)
    done = run_checker("--model", TINY, str(tmp_path / "ring.toml"),
                       "--report-dir", str(tmp_path / "r"))
    assert done.returncode == 1
    assert "FAIL" in done.stdout and "lossy-ring-stalls" in done.stdout


@pytest.mark.parametrize(("spec", "message"), [
    ("tests.tiny_model", "expected PACKAGE:FACTORY"),
    ("tests.no_such_model:provider", "cannot load the model package"),
    ("tests.tiny_model:nothing", "has no function nothing"),
])
def test_a_bad_model_option_is_a_usage_error(spec: str, message: str, tmp_path: Path) -> None:
    done = run_checker("--model", spec, RING, "--report-dir", str(tmp_path / "r"))
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_the_default_model_is_the_shipped_one() -> None:
    assert cli.build_parser().parse_args([]).model == "model:provider"


# -- required core and capabilities ----------------------------------------------------------


def test_the_tiny_model_has_only_the_core() -> None:
    from tests.tiny_model import provider

    ring = provider().load("ring", {}, {})
    require_core(ring)
    assert capabilities(ring) == Capabilities()
    assert capabilities(Mutex()).names == ("describable",)
    assert set(capabilities(ReviewMutex()).names) == {
        "describable", "inspectable", "action_keyed", "covering",
    }


def test_a_data_field_named_like_a_capability_is_not_one() -> None:
    # ReviewMutex has a bool field `witness`: it is not the Witnessing capability.
    assert capabilities(ReviewMutex(witness=True)).witnessing is None


def test_a_model_lacking_the_core_is_named() -> None:
    class Half:
        def init_states(self) -> list[int]:
            return [0]

    with pytest.raises(ModelInterfaceError, match="actions, next_state, is_terminal"):
        require_core(Half())


def test_no_capability_is_discovered_by_name() -> None:
    # Capabilities go through the protocols in checker/interface.py only.
    names = ("possible", "witness", "replay_concrete", "representative",
             "symmetry_vocabulary", "persistent_sets", "coverage", "statistics",
             "inspect_state", "action_key", "describe_state", "describe_action",
             "is_terminal", "vocabulary_names")
    pattern = re.compile(r"\b(getattr|hasattr)\([^)]*[\"'](" + "|".join(names) + r")[\"']")
    for path in (ROOT / "checker").glob("*.py"):
        assert not pattern.search(path.read_text()), path


# -- the property rules, shared by explore and replay ----------------------------------------


class Symbolic:
    """One state whose `x` is a symbolic input the path condition keeps below 3."""

    def __init__(self, feasible: bool):
        self.feasible = feasible

    def init_states(self) -> Sequence[int]:
        return [0]

    def actions(self, state: int) -> Sequence[int]:
        return []

    def next_state(self, state: int, action: int) -> int:
        raise AssertionError("no actions")

    def is_terminal(self, state: int) -> bool:
        return True

    def vocabulary(self, state: int) -> Mapping[str, Any]:
        return {"x": var("x")}

    def vocabulary_names(self) -> Mapping[str, str]:
        return {"x": "a symbolic input"}

    def possible(self, state: int, condition: Any) -> bool:
        return self.feasible


@pytest.mark.parametrize("feasible", [False, True])
def test_replay_judges_a_symbolic_value_as_the_explorer_does(feasible: bool) -> None:
    system = Symbolic(feasible)
    found = explore(system, [Check(Kind.NEVER, compile_expr("x == 5").evaluate)])
    expected = Verdict.VIOLATED if feasible else Verdict.HOLDS
    assert found.outcomes[0].verdict is expected
    record = {"kind": "never", "expr": "x == 5", "init": 0, "steps": []}
    # bool(Term) is always true: replay used to say "reproduces" either way.
    assert replay_trace(system, record).reproduces is feasible


# -- output writers --------------------------------------------------------------------------


def test_every_format_is_in_the_writer_table() -> None:
    names = {(w.target, w.name) for w in WRITERS}
    assert names == {
        (Target.TRACE, "graphml"), (Target.TRACE, "json"), (Target.TRACE, "dot"),
        (Target.TRACE, "itf"), (Target.STDOUT, "text"), (Target.STDOUT, "json"),
        (Target.REPORT, "html"), (Target.FILE, "junit"), (Target.FILE, "sarif"),
    }


def test_a_new_format_is_one_line_in_the_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from toy_models import ToyProvider

    def names(out: Any) -> str:
        return "\n".join(r.prop.name for r in out.run.results) + "\n"

    def lengths(result: Any, record: Mapping[str, Any], path: Path) -> None:
        path.write_text(str(len(record["steps"])))

    monkeypatch.setattr(writers, "WRITERS", (
        *WRITERS,
        Writer("names", Target.FILE, "property names, one a line", run=names),
        Writer("length", Target.TRACE, "the number of steps", trace=lengths, suffix="len"),
    ))
    monkeypatch.chdir(tmp_path)  # trace paths mirror the property file's path from here
    (tmp_path / "m.toml").write_text(
        'design = "mutex"\n[variant]\nlock = "no"\n[[property]]\nname = "exclusion"\n'
        'kind = "always"\nexpr = "in_critical <= 1"\nexpect = "violated"\n'
    )
    code = cli.main([str(tmp_path / "m.toml"), "--report-dir", str(tmp_path / "r"),
                     "--names", str(tmp_path / "names.txt"), "--html"], ToyProvider())
    assert code == 0, capsys.readouterr()
    assert (tmp_path / "names.txt").read_text() == "exclusion\n"
    assert (tmp_path / "r" / "m.toml" / "exclusion.len").read_text() == "2"
    page = (tmp_path / "r" / "index.html").read_text()
    assert 'href="./m.toml/exclusion.len"' in page  # the HTML links come from the table
    assert "exclusion.{graphml,json,dot,itf.json,len}" in capsys.readouterr().out
