"""`python -m checker`: exit codes, messages, output formats, report files."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import networkx as nx
import pytest
from gate_helpers import write
from toy_models import Mutex, ToyProvider

from checker import cli
from checker.trace import parse_dot, read_graphml, rebuild

ROOT = Path(__file__).resolve().parent.parent

MUTEX = """\
design = "mutex"
description = "Two processes and a lock"

[variant]
lock = "yes"

[[property]]
name = "mutual-exclusion"
kind = "always"
expr = "in_critical <= 1"
expect = "holds"

[[property]]
name = "mutual-exclusion-no-lock"
kind = "always"
expr = "in_critical <= 1"
expect = "violated"
variant = { lock = "no" }

[[property]]
name = "both-finish"
kind = "reachable"
expr = "done"
expect = "holds"

[[property]]
name = "no-deadlock"
kind = "deadlock_free"
expect = "holds"
"""

UNEXPECTED = """\
design = "locks"

[[property]]
name = "no-deadlock"
kind = "deadlock_free"
expect = "holds"

[[property]]
name = "finishes"
kind = "reachable"
expr = "finished"
expect = "holds"
"""

BIG = """\
design = "counters"
environment = { k = 4, n = 9 }

[[property]]
name = "bounded"
kind = "always"
expr = "total <= 36"
expect = "holds"
"""


def run(args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str],
        provider: Any = None) -> tuple[int, str, str]:
    code = cli.main([*args, "--report-dir", str(tmp_path / "reports")],
                    provider if provider is not None else ToyProvider())
    out, err = capsys.readouterr()
    return code, out, err


def test_exit_0_when_every_verdict_meets_its_expectation(tmp_path: Path, capsys: Any) -> None:
    path = write(tmp_path, "mutex.toml", MUTEX)
    code, out, err = run([str(path)], tmp_path, capsys)
    assert code == 0, out + err
    # not a terminal: one line per property on stderr as its exploration ends
    assert [line.split()[0] for line in err.splitlines()] == ["ok"] * 4
    lines = out.splitlines()
    assert lines[0] == str(path)
    row = next(line for line in lines if "mutual-exclusion-no-lock" in line)
    assert row.split()[:5] == ["ok", "mutual-exclusion-no-lock", "violated", "expected", "violated"]
    assert "states" in row and "depth 2" in row
    # an expected counterexample is one line naming its file; -v prints it
    one = [line for line in lines if line.startswith("      counterexample: 2 steps: ")]
    assert len(one) == 1 and one[0].endswith("mutual-exclusion-no-lock.json")
    assert Path(one[0].split("steps: ", 1)[1]).is_file()
    assert "      1. [cpu0] enter  (mutex.S:10)" not in out
    assert lines[-1].startswith("4 properties: 4 as expected")
    code, out, err = run([str(path), "-v"], tmp_path, capsys)
    # the counterexample, step by step, with actor, label, file:line and changes
    assert "      1. [cpu0] enter  (mutex.S:10)" in out
    assert "      2. [cpu1] enter  (mutex.S:10)" in out
    assert "pc1: idle -> crit" in out
    assert "witness: 8 steps" in out


def test_exit_1_when_a_verdict_differs(tmp_path: Path, capsys: Any) -> None:
    path = write(tmp_path, "locks.toml", UNEXPECTED)
    code, out, _ = run([str(path)], tmp_path, capsys)
    assert code == 1
    assert any(line.split()[:3] == ["FAIL", "no-deadlock", "violated"] for line in out.splitlines())
    assert "deadlock: no enabled action" in out
    assert "1 unexpected" in out


def test_exit_3_when_a_bound_stops_exploration(tmp_path: Path, capsys: Any) -> None:
    path = write(tmp_path, "big.toml", BIG)
    code, out, _ = run([str(path), "--max-states", "100"], tmp_path, capsys)
    assert code == 3
    assert "INCOMPLETE" in out and "max_states=100" in out
    code, out, _ = run([str(path), "--max-depth", "3"], tmp_path, capsys)
    assert code == 3 and "max_depth=3" in out
    code, _, _ = run([str(path)], tmp_path, capsys)
    assert code == 0


def test_unexpected_wins_over_incomplete(tmp_path: Path, capsys: Any) -> None:
    write(tmp_path, "props/big.toml", BIG)
    write(tmp_path, "props/locks.toml", UNEXPECTED)
    code, _, _ = run([str(tmp_path / "props"), "--max-states", "100"], tmp_path, capsys)
    assert code == 1


BAD_FILES = [
    ('design = "mutex"\nfoo = 1\n[[property]]\nname="a"\nkind="always"\nexpr="lock == 0"\n'
     'expect="holds"\n', 2, "unknown top-level key 'foo'"),
    ('design = "mutex"\n[[property]]\nname="a"\nkind="always"\nexpr="lock == 0"\n'
     'expect="holds"\nlimit = 3\n', 7, "unknown key 'limit' in [[property]]"),
    ('design = "mutex"\n[[property]]\nname=1\nkind="always"\nexpr="lock == 0"\nexpect="holds"\n',
     3, "'name' must be a string, not an integer"),
    ('design = "mutex"\n[[property]]\nname="a"\nkind="always"\nexpr="lock =="\nexpect="holds"\n',
     5, "bad expression: syntax error"),
    ('design = "mutex"\n[[property]]\nname="a"\nkind="always"\n'
     'expr="__import__(\'os\').system(\'true\')"\nexpect="holds"\n', 5, "'__import__'"),

    ('design = "mutex"\n[[property]]\nname="a"\nkind=\n', 4, "TOML syntax error"),
]


# Found when the property's group is loaded: that property gets the error verdict, the
# others still run.
LOAD_ERRORS = [
    ('design = "mutex"\n[[property]]\nname="a"\nkind="always"\nexpr="locked == 0"\n'
     'expect="holds"\n', 5, "unknown name 'locked'"),
    ('design = "mutax"\n[[property]]\nname="a"\nkind="always"\nexpr="lock == 0"\n'
     'expect="holds"\n', 1, "unknown design 'mutax'"),
    ('design = "mutex"\n\n[variant]\nlock = "perhaps"\n[[property]]\nname="a"\nkind="always"\n'
     'expr="lock == 0"\nexpect="holds"\n', 4, "variant knob 'lock' has no value 'perhaps'"),
    ('design = "mutex"\n[variant]\nspeed = "fast"\n[[property]]\nname="a"\nkind="always"\n'
     'expr="lock == 0"\nexpect="holds"\n', 3, "no knob 'speed'"),
    ('design = "mutex"\n[[property]]\nname="a"\nkind="always"\nexpr="lock == 0"\n'
     'expect="holds"\nenvironment = { rounds = -1 }\n', 7, "environment 'rounds' must be"),
    ('design = "mutex"\n[[property]]\nname="a"\nkind="always"\nexpr="lock == 0"\n'
     'expect="holds"\n[property.environment]\nnmi = 2\n', 8, "no environment 'nmi'"),
]


@pytest.mark.parametrize(("text", "line", "fragment"), LOAD_ERRORS)
def test_exit_2_on_load_errors_with_path_line_and_property(
    text: str, line: int, fragment: str, tmp_path: Path, capsys: Any
) -> None:
    path = write(tmp_path, "bad.toml", text)
    code, out, err = run([str(path)], tmp_path, capsys)
    assert code == 2
    assert "ERROR" in out and "1 error" in out  # reported, in every format
    assert err.startswith(f"{path}:{line}: property 'a': "), err
    assert fragment in err.splitlines()[0]
    assert re.search(rf"^ERROR {path}:\d+ a \(error\)$", err, re.M)  # the closing summary
    assert "Traceback" not in err


@pytest.mark.parametrize(("text", "line", "fragment"), BAD_FILES)
def test_exit_2_on_bad_property_files_with_path_and_line(
    text: str, line: int, fragment: str, tmp_path: Path, capsys: Any
) -> None:
    path = write(tmp_path, "bad.toml", text)
    code, out, err = run([str(path)], tmp_path, capsys)
    assert code == 2
    assert out == ""
    assert err.startswith(f"{path}:{line}: "), err
    assert fragment in err
    assert "Traceback" not in err


def test_every_bad_file_is_reported_not_just_the_first(tmp_path: Path, capsys: Any) -> None:
    write(tmp_path, "p/a.toml", BAD_FILES[0][0])
    write(tmp_path, "p/b.toml", BAD_FILES[1][0])
    write(tmp_path, "p/c.toml", MUTEX)
    code, _, err = run([str(tmp_path / "p")], tmp_path, capsys)
    assert code == 2
    assert [line.split(":")[0].rsplit("/", 1)[-1] for line in err.splitlines()] == [
        "a.toml", "b.toml"
    ]


def test_exit_2_on_a_design_file_error_passed_through(tmp_path: Path, capsys: Any) -> None:
    path = write(tmp_path, "b.toml", 'design = "broken"\n[[property]]\nname="a"\n'
                 'kind="deadlock_free"\nexpect="holds"\n')
    code, _, err = run([str(path)], tmp_path, capsys)
    assert code == 2
    assert err.splitlines()[0] == "designs/broken.S:7: unknown instruction 'movq2' (property 'a')"


def test_exit_2_without_traceback_when_the_model_crashes_loading(tmp_path: Path,
                                                                  capsys: Any) -> None:
    path = write(tmp_path, "c.toml", '\n[[property]]\nname="a"\ndesign = "crash"\n'
                 'kind="deadlock_free"\nexpect="holds"\n')
    code, _, err = run([str(path)], tmp_path, capsys)
    assert code == 2
    assert err.splitlines()[0] == (f"{path}:4: property 'a': the model failed to load design "
                                   "'crash': ValueError: model bug while loading")


def test_exit_2_on_an_error_verdict(tmp_path: Path, capsys: Any) -> None:
    path = write(tmp_path, "f.toml", 'design = "faulty"\n[[property]]\nname="a"\n'
                 'kind="always"\nexpr="total >= 0"\nexpect="holds"\n')
    code, out, err = run([str(path)], tmp_path, capsys)
    assert code == 2
    assert "ERROR" in out
    assert f"{path}:2: property 'a': the model raised RuntimeError: model bug" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "args",
    [["--max-states", "lots"], ["--format", "xml"], ["--timeout", "0"], ["--bogus"],
     ["-q", "-v"]],
)
def test_exit_2_on_bad_usage(args: list[str], tmp_path: Path, capsys: Any) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(args, ToyProvider())
    assert exit_info.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_exit_2_on_missing_path_or_no_files_or_no_match(tmp_path: Path, capsys: Any) -> None:
    code, _, err = run([str(tmp_path / "nowhere")], tmp_path, capsys)
    assert code == 2 and "no such file or directory" in err
    (tmp_path / "empty").mkdir()
    code, _, err = run([str(tmp_path / "empty")], tmp_path, capsys)
    assert code == 2 and "no property files" in err
    path = write(tmp_path, "mutex.toml", MUTEX)
    code, _, err = run([str(path), "--property", "zzz*"], tmp_path, capsys)
    assert code == 2 and "no property matches" in err


def test_exit_2_when_reports_cannot_be_written(tmp_path: Path, capsys: Any) -> None:
    path = write(tmp_path, "mutex.toml", MUTEX)
    blocker = write(tmp_path, "file-not-dir", "")
    code = cli.main([str(path), "--report-dir", str(blocker)], ToyProvider())
    assert code == 2
    assert f"cannot write reports to {blocker}" in capsys.readouterr().err


def test_property_filter_globs(tmp_path: Path, capsys: Any) -> None:
    path = write(tmp_path, "mutex.toml", MUTEX)
    code, out, _ = run([str(path), "--format", "json", "--property", "mutual-*",
                        "--property", "no-deadlock"], tmp_path, capsys)
    assert code == 0
    names = [r["name"] for r in json.loads(out)["results"]]
    assert names == ["mutual-exclusion", "mutual-exclusion-no-lock", "no-deadlock"]


def test_default_path_is_properties(tmp_path: Path, capsys: Any,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "properties/mutex.toml", MUTEX)
    monkeypatch.chdir(tmp_path)
    code = cli.main([], ToyProvider())
    out, _ = capsys.readouterr()
    assert code == 0
    assert "properties/mutex.toml" in out
    assert (tmp_path / "reports" / "properties" / "mutex.toml"
            / "mutual-exclusion-no-lock.graphml").is_file()


def test_json_output_schema(tmp_path: Path, capsys: Any) -> None:
    path = write(tmp_path, "mutex.toml", MUTEX)
    code, out, err = run([str(path), "--format", "json"], tmp_path, capsys)
    assert code == 0 and all(line.startswith("ok ") for line in err.splitlines())
    data = json.loads(out)
    assert data["version"] == 1 and data["exit_code"] == 0
    assert set(data) == {
        "version", "exit_code", "results", "explorations", "summary", "coverage"
    }
    assert data["coverage"] is None  # the toy models report no coverage
    first, no_lock, finish, deadlock = data["results"]
    expected_keys = {
        "name", "file", "line", "design", "variant", "environment", "kind", "expr", "to",
        "verdict",
        "expected", "ok", "states", "transitions", "depth", "seconds", "exploration",
        "trace_length", "choices", "loop_start", "traces", "witness", "message", "vacuity",
    }
    assert set(first) == expected_keys
    assert first["name"] == "mutual-exclusion" and first["line"] == 7
    assert first["file"] == str(path) and first["design"] == "mutex"
    assert first["variant"] == {"lock": "yes"} and first["kind"] == "always"
    assert first["verdict"] == "holds" and first["expected"] == "holds" and first["ok"] is True
    assert first["traces"] is None and first["choices"] is None
    assert isinstance(first["states"], int) and isinstance(first["seconds"], float)
    assert no_lock["verdict"] == "violated" and no_lock["trace_length"] == 2
    assert set(no_lock["traces"]) == {"graphml", "json", "dot", "itf"}
    assert all(Path(p).is_file() for p in no_lock["traces"].values())
    assert rebuild(Mutex(lock=False), no_lock["choices"]).length == 2
    assert finish["traces"] is not None  # a reachable witness is written too
    assert deadlock["kind"] == "deadlock_free" and deadlock["expr"] is None
    assert len(data["explorations"]) == 2
    exploration = data["explorations"][first["exploration"]]
    assert set(exploration) == {
        "design", "variant", "environment", "properties", "states", "transitions", "depth",
        "seconds", "states_per_second", "complete", "stop_reason", "model_statistics", "coverage",
        "workers", "reductions", "por", "compact", "collision_probability", "not_reduced",
        "effective_environment",
    }
    assert [p["name"] for p in exploration["properties"]] == [
        "mutual-exclusion", "both-finish", "no-deadlock"
    ]
    assert exploration["complete"] is True
    assert data["summary"] == {
        "total": 4, "ok": 4, "unexpected": 0, "incomplete": 0, "errors": 0, "vacuous": 0
    }


def test_json_output_on_input_errors(tmp_path: Path, capsys: Any) -> None:
    path = write(tmp_path, "bad.toml", BAD_FILES[0][0])
    code, out, err = run([str(path), "--format", "json"], tmp_path, capsys)
    assert code == 2
    assert err.startswith(f"{path}:2: ")
    data = json.loads(out)
    assert data["errors"] == [
        {"message": data["errors"][0]["message"], "path": str(path), "line": 2}
    ]
    assert data["results"] == []


def test_report_files_read_back_and_stale_ones_go(tmp_path: Path, capsys: Any,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # trace paths mirror the file's path from here
    path = write(tmp_path, "mutex.toml", MUTEX)
    run([str(path)], tmp_path, capsys)
    base = tmp_path / "reports" / "mutex.toml" / "mutual-exclusion-no-lock"
    graphs = [
        read_graphml(base.with_suffix(".graphml")),
        nx.node_link_graph(json.loads(base.with_suffix(".json").read_text()), edges="edges"),
        parse_dot(base.with_suffix(".dot").read_text()),
    ]
    for graph in graphs:
        assert graph.graph["property"] == "mutual-exclusion-no-lock"
        assert graph.graph["variant"] == "lock=no"
        assert graph.graph["verdict"] == "violated"
        assert graph.graph["kind"] == "always"
        assert graph.graph["design"] == "mutex"
        assert graph.graph["file"] == str(path)
        assert list(graph.nodes) == ["s0", "s1", "s2"]
        assert dict(graph.nodes(data=True)) == dict(graphs[0].nodes(data=True))
        assert graph.edges["s0", "s1"]["label"] == "enter"
    # once the property holds, its old trace is removed
    write(tmp_path, "mutex.toml", MUTEX.replace('lock = "no"', 'lock = "yes"').replace(
        'expect = "violated"', 'expect = "holds"'))
    code, _, _ = run([str(path)], tmp_path, capsys)
    assert code == 0
    assert not base.with_suffix(".graphml").exists()


def test_quiet_prints_only_failures_and_summary(tmp_path: Path, capsys: Any) -> None:
    write(tmp_path, "p/mutex.toml", MUTEX)
    write(tmp_path, "p/locks.toml", UNEXPECTED)
    code, out, _ = run([str(tmp_path / "p"), "-q"], tmp_path, capsys)
    assert code == 1
    assert "mutual-exclusion" not in out
    assert "FAIL" in out and "no-deadlock" in out and "counterexample" in out
    assert out.splitlines()[-1].startswith("6 properties")


def test_verbose_prints_explorations(tmp_path: Path, capsys: Any) -> None:
    path = write(tmp_path, "mutex.toml", MUTEX)
    code, out, _ = run([str(path), "-v"], tmp_path, capsys)
    assert code == 0
    assert "explorations:" in out and "states/s" in out and "choices: 0 0 1" in out


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_only_on_a_terminal(tmp_path: Path, capsys: Any,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "big.toml", BIG.replace("n = 9", "n = 12").replace("<= 36", ">= 0"))
    monkeypatch.setattr(cli.ProgressLine, "DELAY", 0.0)
    monkeypatch.setattr(cli.ProgressLine, "EVERY", 0.0)
    code, _, err = run([str(path)], tmp_path, capsys)  # captured stderr is not a tty
    assert code == 0 and "\r" not in err and err.startswith("ok ")  # a plain log
    tty = FakeTTY()
    monkeypatch.setattr(sys, "stderr", tty)
    code = cli.main([str(path), "--report-dir", str(tmp_path / "r")], ToyProvider())
    assert code == 0
    shown = tty.getvalue()
    assert "states, depth" in shown and "states/s" in shown and "\r" in shown
    assert shown.endswith("\r\033[K")  # the line is cleared at the end


def test_provider_is_loaded_lazily_from_model(tmp_path: Path, capsys: Any,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "mutex.toml", MUTEX)
    fake = types.ModuleType("model")
    fake.provider = ToyProvider  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "model", fake)
    assert cli.main([str(path), "--report-dir", str(tmp_path / "r")]) == 0
    broken = types.ModuleType("model")  # no provider
    monkeypatch.setitem(sys.modules, "model", broken)
    assert cli.main([str(path), "--report-dir", str(tmp_path / "r")]) == 2
    assert "cannot load the model package" in capsys.readouterr().err


def test_python_dash_m_checker(tmp_path: Path) -> None:
    def pm(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "checker", *args], capture_output=True,
                              text=True, cwd=ROOT, timeout=120)

    helped = pm("--help")
    assert helped.returncode == 0 and "--max-states" in helped.stdout
    bad = write(tmp_path, "bad.toml", 'design = "x"\n[[property]\n')
    result = pm(str(bad))
    assert result.returncode == 2
    assert result.stderr.startswith(f"{bad}:2: TOML syntax error")
    assert "Traceback" not in result.stderr
    assert pm("--nope").returncode == 2
