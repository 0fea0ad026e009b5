"""--workers, --compact, --symmetry, --por: from the command line to `explore(options=...)`,
and what the reports say about them (toy models; the engine's side is in test_parallel)."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from toy_models import Counters, Mutex, ToyProvider

from checker import cli
from checker.explore import Check, Options, explore
from checker.expr import compile_expr
from checker.interface import SymmetricVocabulary
from checker.run import check, plan, read_files, split
from checker.spec import find_property_files
from checker.trace import rebuild
from checker.verdict import Kind, Verdict


@dataclass(frozen=True)
class SymCounters(Counters):
    """Counters whose 1..k-1 are interchangeable (counter 0 is not): the representative
    sorts them."""

    def symmetry_vocabulary(self) -> SymmetricVocabulary:
        return SymmetricVocabulary(
            permuted=frozenset(range(1, self.k)),
            invariant=frozenset({"total", "n"}),
            sequences=frozenset({"c", "counters"}),
            index_fields=frozenset({"id"}),
            index_arguments={"full": (0,)},
        )

    def representative(self, state: tuple[int, ...]) -> tuple[int, ...]:
        return state[:1] + tuple(sorted(state[1:]))

    def vocabulary(self, state: tuple[int, ...]) -> Mapping[str, Any]:
        return {
            **super().vocabulary(state),
            "counters": [{"id": i, "value": v} for i, v in enumerate(state)],
            "full": lambda i: state[i] == self.n,
        }

    def vocabulary_names(self) -> Mapping[str, str]:
        return {
            **super().vocabulary_names(),
            "counters": "records id, value", "full": "full(i): counter i is at n",
        }


@dataclass(frozen=True)
class NoSymmetry(SymCounters):
    def symmetry_vocabulary(self) -> None:  # type: ignore[override]
        return None


@dataclass(frozen=True)
class Reducible(Mutex):
    """A mutex whose model names persistent sets (none: the reduction changes nothing)."""

    def reduces(self) -> bool:
        return True

    def persistent_sets(
        self, state: Any, actions: Sequence[Any], observed: frozenset[str] = frozenset()
    ) -> list[list[int]]:
        return []


class Provider(ToyProvider):
    def designs(self) -> Sequence[str]:
        return [*super().designs(), "symcounters", "nosym", "reducible"]

    def load(self, design: str, variant: Mapping[str, str], environment: Mapping[str, Any]) -> Any:
        if design == "symcounters":
            return SymCounters(environment.get("k", 4), environment.get("n", 2))
        if design == "nosym":
            return NoSymmetry(environment.get("k", 4), environment.get("n", 2))
        if design == "reducible":
            return Reducible(lock=variant.get("lock", "no") == "yes")
        return super().load(design, variant, environment)


SYM = """\
design = "symcounters"
environment = { k = 4, n = 2 }

[[property]]
name = "bounded"
kind = "always"
expr = "total <= n * len(c)"
expect = "holds"

[[property]]
name = "first-fills"
kind = "reachable"
expr = "c[0] == n and full(0)"
expect = "holds"

[[property]]
name = "some-other-full"
kind = "reachable"
expr = "any(x.value == n for x in counters if x.id != 0)"
expect = "holds"

[[property]]
name = "others-never-all-full"
kind = "never"
expr = "all(x.value == n for x in counters if x.id != 0)"
expect = "violated"

[[property]]
name = "no-deadlock"
kind = "deadlock_free"
expect = "holds"

[[property]]
name = "second-never-above-third"
kind = "never"
expr = "c[1] > c[2]"
expect = "violated"

[[property]]
name = "second-full"
kind = "reachable"
expr = "full(1)"
expect = "holds"
"""

ASYMMETRIC = {"second-never-above-third", "second-full"}


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def run(args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = cli.main([*args, "--report-dir", str(tmp_path / "reports")], Provider())
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out


def run_json(args: list[str], tmp_path: Path, capsys: Any) -> dict[str, Any]:
    code, out = run([*args, "--format", "json"], tmp_path, capsys)
    assert code == 0, out
    data: dict[str, Any] = json.loads(out)
    return data


# -- the engine on the toy ------------------------------------------------------------------


def test_symmetry_explores_fewer_states_with_the_same_verdicts() -> None:
    system = SymCounters(4, 2)
    checks = [
        Check(Kind.ALWAYS, compile_expr("total <= n * len(c)").evaluate),
        Check(Kind.NEVER, compile_expr("c[0] == 2 and total == 5").evaluate),
        Check(Kind.REACHABLE, compile_expr("any(x == 2 for x in c)").evaluate),
        Check(Kind.DEADLOCK_FREE),
    ]
    full = explore(system, checks)
    reduced = explore(system, checks, options=Options(symmetry=True))
    assert full.stats.states == 3**4
    assert reduced.stats.states == 3 * 10  # counter 0, and a multiset of 3 out of {0, 1, 2}
    assert reduced.stats.reduced and not full.stats.reduced
    assert [o.verdict for o in reduced.outcomes] == [o.verdict for o in full.outcomes]
    violated = reduced.outcomes[1]
    assert violated.verdict is Verdict.VIOLATED and violated.trace is not None
    # a real path of the unreduced system, as long as the shortest one
    real = rebuild(system, violated.trace.choices)
    assert real.states[-1][0] == 2 and sum(real.states[-1]) == 5
    assert violated.trace.length == full.outcomes[1].trace.length  # type: ignore[union-attr]
    assert "symmetry" in violated.message


def test_an_asymmetric_property_would_be_wrong_on_representatives() -> None:
    # Why the split exists: on sorted representatives c[1] never exceeds c[2].
    system = SymCounters(3, 2)
    check_ = [Check(Kind.NEVER, compile_expr("c[1] > c[2]").evaluate)]
    assert explore(system, check_).outcomes[0].verdict is Verdict.VIOLATED
    wrong = explore(system, check_, options=Options(symmetry=True))
    assert wrong.outcomes[0].verdict is Verdict.HOLDS


# -- run.split ------------------------------------------------------------------------------


def loaded_groups(tmp_path: Path, text: str) -> Any:
    path = write(tmp_path, "sym.toml", text)
    files, errors = read_files(find_property_files([str(path)]))
    assert not errors
    prepared, errors = plan(files, Provider())
    assert prepared is not None and not errors
    return prepared


def test_split_puts_symmetric_properties_on_representatives(tmp_path: Path) -> None:
    prepared = loaded_groups(tmp_path, SYM)
    (loaded,) = prepared.groups
    reduced, rest = split(loaded, Options(symmetry=True))
    assert reduced.options.symmetry and not rest.options.symmetry
    assert {p.name for p in reduced.group.properties} == {
        "bounded", "first-fills", "some-other-full", "others-never-all-full", "no-deadlock"
    }
    assert {p.name for p in rest.group.properties} == ASYMMETRIC
    reasons = dict(rest.unreduced)
    assert set(reasons) == ASYMMETRIC and reduced.unreduced == ()
    assert "c[1]" in reasons["second-never-above-third"]
    assert "full(1)" in reasons["second-full"]
    (only,) = split(loaded, Options(symmetry=False))
    assert not only.options.symmetry and len(only.group.properties) == 7


def test_split_without_a_declared_symmetry(tmp_path: Path) -> None:
    prepared = loaded_groups(tmp_path, SYM.replace('"symcounters"', '"nosym"'))
    (part,) = split(prepared.groups[0], Options(symmetry=True))
    assert not part.options.symmetry and part.unreduced == ()
    plain = SYM.replace('"symcounters"', '"counters"').split("[[property]]\nname = \"first")[0]
    prepared = loaded_groups(tmp_path, plain)  # a model with no symmetry_vocabulary at all
    (part,) = split(prepared.groups[0], Options(symmetry=True))
    assert not part.options.symmetry and len(part.group.properties) == 1


def test_split_groups_of_only_one_kind(tmp_path: Path) -> None:
    only_symmetric = SYM.split("[[property]]\nname = \"second-never")[0]
    prepared = loaded_groups(tmp_path, only_symmetric)
    (part,) = split(prepared.groups[0], Options(symmetry=True))
    assert part.options.symmetry and len(part.group.properties) == 5


def test_check_results_keep_file_order_across_split_explorations(tmp_path: Path) -> None:
    prepared = loaded_groups(tmp_path, SYM)
    run_result = check(prepared.groups, prepared.properties, options=Options(symmetry=True))
    assert [r.prop.name for r in run_result.results] == [p.name for p in prepared.properties]
    assert len(run_result.explorations) == 2
    for result in run_result.results:
        exploration = run_result.explorations[result.exploration]
        assert result.prop in exploration.group.properties
        assert exploration.options.symmetry == (result.prop.name not in ASYMMETRIC)
        assert result.ok, (result.prop.name, result.message)


# -- the command line -----------------------------------------------------------------------


def test_symmetry_auto_and_off_agree(tmp_path: Path, capsys: Any) -> None:
    path = write(tmp_path, "sym.toml", SYM)
    auto = run_json([str(path)], tmp_path, capsys)
    off = run_json([str(path), "--symmetry", "off"], tmp_path, capsys)
    verdicts = {r["name"]: r["verdict"] for r in auto["results"]}
    assert verdicts == {r["name"]: r["verdict"] for r in off["results"]}
    assert all(r["ok"] for r in auto["results"])
    reduced = [e for e in auto["explorations"] if e["reductions"] == ["symmetry"]]
    assert len(reduced) == 1 and len(auto["explorations"]) == 2
    (full,) = off["explorations"]
    assert full["reductions"] == [] and full["not_reduced"] == []
    assert reduced[0]["states"] < full["states"] == 81
    rest = next(e for e in auto["explorations"] if not e["reductions"])
    assert {n["name"] for n in rest["not_reduced"]} == ASYMMETRIC
    assert all(n["reason"] for n in rest["not_reduced"])
    witness = next(r for r in auto["results"] if r["name"] == "others-never-all-full")
    assert "symmetry reduction" in witness["message"]


def test_verbose_says_what_was_reduced_and_why_not(tmp_path: Path, capsys: Any) -> None:
    path = write(tmp_path, "sym.toml", SYM)
    code, out = run([str(path), "-v", "--workers", "2"], tmp_path, capsys)
    assert code == 0
    # two explorations side by side, each in one process
    assert "reductions: symmetry; workers: 1" in out
    assert "reductions: none; workers: 1" in out
    assert (
        "not reduced by symmetry: second-never-above-third: c[1]: process 1 is one of those "
        "renumbered"
    ) in out
    summary = out.splitlines()[-1]
    assert summary.startswith("7 properties: 7 as expected (2 explorations")
    assert "2 explorations at a time" in summary and "symmetry on 1 of 2" in summary


def test_compact_reports_the_collision_probability(tmp_path: Path, capsys: Any) -> None:
    path = write(tmp_path, "sym.toml", SYM)
    plain = run_json([str(path)], tmp_path, capsys)
    compact = run_json([str(path), "--compact"], tmp_path, capsys)
    assert [e["states"] for e in compact["explorations"]] == [
        e["states"] for e in plain["explorations"]
    ]
    for e in compact["explorations"]:
        assert e["compact"] is True
        assert e["collision_probability"] == pytest.approx(e["states"] ** 2 / 2**65)
        assert e["coverage"] is None  # the toy has no coverage
    assert all(e["compact"] is False and e["collision_probability"] is None
               for e in plain["explorations"])
    code, out = run([str(path), "--compact", "-v"], tmp_path, capsys)
    assert code == 0
    assert "64-bit fingerprints: calculated (optimistic) collision probability" in out
    assert "collision probability" in out.splitlines()[-1]


def test_workers_option(tmp_path: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "sym.toml", SYM)
    one = run_json([str(path), "--workers", "1"], tmp_path, capsys)
    assert {e["workers"] for e in one["explorations"]} == {1}
    monkeypatch.setattr(cli, "default_workers", lambda: 3)
    default = run_json([str(path)], tmp_path, capsys)
    # the two explorations side by side (no more at a time than there are), each alone
    assert {e["workers"] for e in default["explorations"]} == {1}
    assert "2 explorations at a time" in run([str(path)], tmp_path, capsys)[1]
    one_big = run_json([str(path), "--property", "bounded"], tmp_path, capsys)
    assert {e["workers"] for e in one_big["explorations"]} == {3}  # one: its BFS levels
    for key in ("states", "transitions", "depth"):
        assert [e[key] for e in one["explorations"]] == [e[key] for e in default["explorations"]]
    assert [r["choices"] for r in one["results"]] == [r["choices"] for r in default["results"]]


@pytest.mark.parametrize("args", [
    ["--workers", "0"], ["--workers", "x"], ["--symmetry", "on"], ["--por", "yes"],
    ["--compact", "--require-full-coverage"],
])
def test_bad_reduction_options(args: list[str], tmp_path: Path, capsys: Any) -> None:
    path = write(tmp_path, "sym.toml", SYM)
    with pytest.raises(SystemExit) as exit_:  # argparse's own errors
        if args[0] == "--compact":
            raise SystemExit(cli.main([str(path), *args], Provider()))
        cli.main([str(path), *args], Provider())
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "--" in err


def test_por_notes_counterexamples(tmp_path: Path, capsys: Any) -> None:
    path = write(tmp_path, "mutex.toml", """\
        design = "reducible"

        [[property]]
        name = "exclusion"
        kind = "always"
        expr = "in_critical <= 1"
        expect = "violated"
        """)
    data = run_json([str(path), "--por"], tmp_path, capsys)
    (exploration,) = data["explorations"]
    assert exploration["reductions"] == ["por"]
    por = exploration["por"]
    assert set(por) == {"persistent_set_expansions", "expanded_in_full_unasked"}
    assert por["expanded_in_full_unasked"] == 0  # far fewer states than a trial
    (result,) = data["results"]
    assert "partial-order reduction" in result["message"]
    assert "not necessarily the shortest" in result["message"]
    # POR is on by default: a run without options is the --por run
    default = run_json([str(path)], tmp_path, capsys)
    assert default["explorations"][0]["reductions"] == ["por"]
    assert default["results"][0]["choices"] == result["choices"]
    for flags in (["--no-por"], ["--shortest"]):
        plain = run_json([str(path), *flags], tmp_path, capsys)
        assert plain["explorations"][0]["reductions"] == []
        assert plain["explorations"][0]["por"] is None
        assert "partial-order" not in plain["results"][0]["message"]
        # the plain breadth-first search's counterexample is a shortest one
        assert len(plain["results"][0]["choices"]) <= len(result["choices"])
    code, out = run([str(path), "--por", "-v"], tmp_path, capsys)
    assert code == 0
    assert "reductions: por (0 persistent-set expansions); workers:" in out
    assert "por on 1 of 1" in out.splitlines()[-1]


def test_shortest_turns_every_reduction_off(tmp_path: Path, capsys: Any) -> None:
    """A run without options reduces by symmetry where the model declares one (and POR
    where it names persistent sets); --shortest is the plain breadth-first search, with
    the same verdicts and shortest counterexamples, whatever the configuration asks."""
    path = write(tmp_path, "sym.toml", SYM)
    default = run_json([str(path)], tmp_path, capsys)
    assert any("symmetry" in e["reductions"] for e in default["explorations"])
    (tmp_path / "checker.toml").write_text('symmetry = "auto"\npor = true\n')
    config = ["--config", str(tmp_path / "checker.toml")]
    shortest = run_json([str(path), *config, "--shortest"], tmp_path, capsys)
    assert all(e["reductions"] == [] for e in shortest["explorations"])
    assert all("symmetry reduction" not in r["message"] for r in shortest["results"])
    off = run_json([str(path), "--symmetry", "off", "--no-por"], tmp_path, capsys)
    for key in ("states", "transitions", "depth"):
        assert [e[key] for e in shortest["explorations"]] == [e[key] for e in off["explorations"]]
    assert [r["verdict"] for r in shortest["results"]] == [r["verdict"] for r in default["results"]]
    assert [r["choices"] for r in shortest["results"]] == [r["choices"] for r in off["results"]]


def test_por_needs_the_models_persistent_sets(tmp_path: Path, capsys: Any) -> None:
    path = write(tmp_path, "sym.toml", SYM)
    data = run_json([str(path), "--por", "--symmetry", "off"], tmp_path, capsys)
    assert data["explorations"][0]["reductions"] == []
    assert all("partial-order" not in r["message"] for r in data["results"])
