"""`python -m checker replay TRACE`: a stored counterexample against today's design."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from review_toys import SOURCE, ReviewProvider
from toy_models import ToyProvider

from checker import cli
from checker.replay import read_replay_record, replay_trace

ROOT = Path(__file__).resolve().parent.parent
DESIGN = ROOT / "model" / "designs" / "xen_ist.design"

IST = """\
design = "xen_ist"
variant = { ist = "xen", context = "both" }

[[property]]
name = "fake-nmi-then-real-nmi-clobbers"
environment = { nmi = 1, external = 1, external_vectors = [2], pic = true }
kind = "never"
expr = "frame_clobbered"
expect = "violated"

[[property]]
name = "iret-inside-nmi-unblocks-nesting"
environment = { nmi = 2, faults = 1 }
kind = "never"
expr = "frame_clobbered"
expect = "violated"
"""

MUTEX = """\
design = "{design}"
variant = {{ lock = "no" }}

[[property]]
name = "exclusion"
kind = "always"
expr = "in_critical <= 1"
expect = "violated"

[[property]]
name = "finish"
kind = "reachable"
expr = "done"
expect = "holds"

[[property]]
name = "deadlock"
kind = "deadlock_free"
expect = "holds"
"""


def replay(args: list[str], provider: Any, capsys: Any) -> tuple[int, str, str]:
    code = cli.main(["replay", *args], provider)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def designs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private copy of the designs, and traces of two properties found with it."""
    from model.system.provider import DesignProvider

    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "designs"
    folder.mkdir()
    shutil.copy(DESIGN, folder / DESIGN.name)
    shutil.copytree(DESIGN.parent / "shared", folder / "shared")  # what it includes
    (tmp_path / "ist.toml").write_text(IST)
    code = cli.main(["ist.toml", "--report-dir", "reports", "-q"], DesignProvider(folder))
    assert code == 0
    return folder


def provider_for(folder: Path) -> Any:
    from model.system.provider import DesignProvider

    return DesignProvider(folder)


def edit(folder: Path, old: str, new: str) -> None:
    path = folder / DESIGN.name
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new))


FAKE = "reports/ist.toml/fake-nmi-then-real-nmi-clobbers.json"
IRET = "reports/ist.toml/iret-inside-nmi-unblocks-nesting.json"


def test_a_trace_reproduces_against_the_design_it_was_found_on(
    designs: Path, capsys: Any
) -> None:
    code, out, err = replay([FAKE], provider_for(designs), capsys)
    assert (code, err) == (0, "")
    assert out.splitlines()[-1] == "reproduces: the property fails at step 2"
    code, out, _ = replay([IRET.replace(".json", ".itf.json")], provider_for(designs), capsys)
    assert code == 0 and "the property fails at step 34" in out


def test_keys_survive_an_edit_that_moves_every_line(designs: Path, capsys: Any) -> None:
    edit(designs, "design xen_ist", "# a new comment\n# and another\ndesign xen_ist")
    code, out, _ = replay([IRET, "-v"], provider_for(designs), capsys)
    assert code == 0, out
    assert "  1. cpu0: NMI arrives  [by key]" in out
    assert out.splitlines()[-1] == "reproduces: the property fails at step 34"


def test_a_fix_stops_the_trace_reproducing_at_its_end(designs: Path, capsys: Any) -> None:
    # The fix: NMI no longer runs on an IST stack, so a fake NMI's frame is not overwritten.
    edit(designs, "gate NMI  entry_NMI interrupt ist 2", "gate NMI  entry_NMI interrupt")
    code, out, err = replay([FAKE], provider_for(designs), capsys)
    assert (code, err) == (1, "")
    assert out.splitlines()[-1] == (
        "no longer reproduces at step 2: the trace runs to its end but the property no "
        "longer fails")
    code, out, _ = replay([FAKE, "--format", "json"], provider_for(designs), capsys)
    data = json.loads(out)
    assert (data["reproduces"], data["at_step"], data["exit_code"]) == (False, 2, 1)
    assert [s["matched_by"] for s in data["steps"]] == ["key", "key"]


def test_an_action_that_no_longer_exists(designs: Path, capsys: Any) -> None:
    # do_nmi can no longer fault: the environment's #PF at step 16 is gone.
    edit(designs, "nop() @fault(#PF)", "nop()")
    edit(designs, "nop() @fault(#BP)", "nop()")
    code, out, _ = replay([IRET], provider_for(designs), capsys)
    assert code == 1
    assert out.splitlines()[-1].startswith(
        "no longer reproduces at step 16: the action 'cpu0: nop()  -> raises #PF' key "
        "fault:0:0 is not enabled")


def test_bad_input_exits_2(designs: Path, tmp_path: Path, capsys: Any) -> None:
    provider = provider_for(designs)
    code, _, err = replay(["nope.json"], provider, capsys)
    assert code == 2 and err.startswith("nope.json: cannot read")
    (tmp_path / "x.json").write_text("{not json")
    code, _, err = replay(["x.json"], provider, capsys)
    assert code == 2 and "not a JSON trace file" in err
    (tmp_path / "y.json").write_text('{"nodes": []}')
    code, _, err = replay(["y.json"], provider, capsys)
    assert code == 2 and "no replay record" in err
    code, _, err = replay(["reports/ist.toml/fake-nmi-then-real-nmi-clobbers.graphml"], provider,
                          capsys)
    assert code == 2
    # the design was renamed away
    (designs / DESIGN.name).rename(designs / "other.design")
    code, _, err = replay([FAKE], provider, capsys)
    assert code == 2 and "unknown design 'xen_ist'" in err
    # a design-file error names its file and line
    (designs / "other.design").rename(designs / DESIGN.name)
    edit(designs, "ENTRY(xen_idle)", "ENTRY(xen_idle)\n        frobnicate %rax")
    code, _, err = replay([FAKE], provider, capsys)
    assert code == 2 and "xen_ist.design:" in err


def test_variant_and_environment_come_from_the_trace(designs: Path, capsys: Any) -> None:
    record = read_replay_record(Path(FAKE))
    assert record["variant"] == {"ist": "xen", "context": "both"}
    assert record["environment"] == {
        "nmi": 1, "external": 1, "external_vectors": [2], "pic": True}
    record["environment"] = {**record["environment"], "bogus": 1}
    Path("edited.json").write_text(json.dumps({"replay": record}))
    code, _, err = replay(["edited.json"], provider_for(designs), capsys)
    assert code == 2 and "environment.bogus" in err and "bogus" in err


# -- toy models: label fallback, kinds ------------------------------------------------------


@pytest.fixture
def toy_traces(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.S").write_text(SOURCE)
    (tmp_path / "plain.toml").write_text(MUTEX.format(design="mutex"))
    (tmp_path / "keyed.toml").write_text(MUTEX.format(design="rmutex"))
    assert cli.main(["plain.toml", "keyed.toml", "--report-dir", "r"], ReviewProvider("m.S")) \
        == 0
    capsys.readouterr()
    return tmp_path / "r"


def test_label_and_actor_fallback_without_keys(toy_traces: Path, capsys: Any) -> None:
    trace = str(toy_traces / "plain.toml" / "exclusion.json")
    record = read_replay_record(trace)
    assert record["steps"] == [
        {"label": "enter", "cpu": 0, "choice": 0}, {"label": "enter", "cpu": 1, "choice": 1}]
    code, out, _ = replay([trace, "-v"], ToyProvider(), capsys)
    assert code == 0
    assert "  2. enter  [by label]" in out
    # with the lock (a "fix"), cpu1's enter is not enabled after cpu0's
    from toy_models import Mutex

    result = replay_trace(Mutex(lock=True), record)
    assert not result.reproduces and result.at_step == 2
    assert result.message.startswith("no longer reproduces at step 2: the action 'enter'")


def test_keyed_traces_and_every_kind(toy_traces: Path, capsys: Any) -> None:
    fixed = ReviewProvider("m.S", lock_always=True)
    for name, broken_code in (("exclusion", 1), ("finish", 0)):
        trace = str(toy_traces / "keyed.toml" / f"{name}.json")
        code, out, _ = replay([trace], ReviewProvider("m.S"), capsys)
        assert code == 0, out
        code, out, _ = replay([trace], fixed, capsys)
        assert code == broken_code, out
    record = read_replay_record(toy_traces / "keyed.toml" / "finish.json")
    assert record["kind"] == "reachable" and record["verdict"] == "holds"


def test_final_and_deadlock_kinds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  capsys: Any) -> None:
    monkeypatch.chdir(tmp_path)
    Path("locks.toml").write_text(textwrap.dedent("""\
        design = "locks"

        [[property]]
        name = "dead"
        kind = "deadlock_free"
        expect = "violated"

        [[property]]
        name = "end"
        kind = "final"
        expr = "finished"
        expect = "violated"
        """))
    assert cli.main(["locks.toml", "--report-dir", "r"], ToyProvider()) == 0
    capsys.readouterr()
    from toy_models import Locks

    for name in ("dead", "end"):
        record = read_replay_record(Path(f"r/locks.toml/{name}.json"))
        assert replay_trace(Locks(opposite=True), record).reproduces
        result = replay_trace(Locks(opposite=False), record)
        assert not result.reproduces, name


def test_python_dash_m_checker_replay(designs: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c",
         "import sys; from checker import cli; from model.system.provider import "
         "DesignProvider; from pathlib import Path; "
         f"sys.exit(cli.main(['replay', {FAKE!r}], DesignProvider(Path('designs'))))"],
        capture_output=True, text=True, cwd=designs.parent, timeout=120,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    assert "reproduces" in done.stdout
    done = subprocess.run([sys.executable, "-m", "checker", "replay", "--help"],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0 and "0 the trace still reproduces" in done.stdout


def test_a_key_shared_by_several_actions_falls_back_to_label_and_index(
    toy_traces: Path,
) -> None:
    from review_toys import ReviewMutex

    class SameKey(ReviewMutex):
        def action_key(self, state: Any, action: Any) -> str:
            return "step"

    record = read_replay_record(toy_traces / "keyed.toml" / "exclusion.json")
    for step in record["steps"]:
        step["key"] = "step"
    result = replay_trace(SameKey(lock=False, source="m.S"), record)
    assert result.reproduces
    assert [s.label for s in result.steps] == ["cpu0: enter", "cpu1: enter"]
