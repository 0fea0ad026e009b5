"""benchmarks/matrix.py, the side-by-side benchmark matrix (issue 18 item 6): one tiny cell
really run in its own process, the JSON it saves and the Markdown tables it prints, with
an earlier run beside it (`--compare`)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load() -> Any:
    if "matrix" in sys.modules:
        return sys.modules["matrix"]
    spec = importlib.util.spec_from_file_location("matrix", ROOT / "benchmarks" / "matrix.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["matrix"] = module
    spec.loader.exec_module(module)
    return module


# benchmarks/matrix.py is loaded when a test runs (`_load()`), not at collection:
# importing it while the tests are collected changed which designs
# test_fuzz_hypothesis.py's derandomized strategy draws (seen at 808fbea, not understood).

FIGURES = ("states", "wall_seconds", "cpu_seconds", "search_cpu_seconds",
           "states_per_cpu_second", "peak_mib", "bytes_per_state")


def test_the_default_matrix_has_every_size_reduction_spin_and_the_gate() -> None:
    ids = [c.id for c in _load().cells()]
    for n in range(2, 9):
        for r in ("none", "por", "symmetry", "symmetry+por", "SPIN"):
            assert f"kexec-{n} {r}" in ids
    for name in ("ist-1", "ist-2", "ist-3", "syscall-concrete", "syscall-symbolic"):
        assert f"{name} none" in ids and f"{name} SPIN" in ids
    assert ids[-1] == "gate"
    quick = [c.id for c in _load().cells(quick=True)]
    assert "kexec-5 none" not in quick and "gate" not in quick and "kexec-4 por" in quick
    assert [c.id for c in _load().select(_load().cells(), ["kexec-3 s*"])] == [
        "kexec-3 symmetry", "kexec-3 symmetry+por"]
    assert {c.kind for c in _load().select(_load().cells(), ["SPIN"])} == {"spin"}


def test_a_cell_spin_cannot_ask_is_recorded_without_figures_and_tables_keep_the_old_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    result = _load().run(_load().select(_load().cells(), ["syscall-concrete SPIN"]), 5.0, 5.0,
                        1.0, ["-O0"], log=None)
    (spin,) = result["cells"]
    assert spin["verdict"] == "unavailable" and "xen_syscall" in spin["note"]
    assert all(spin[key] is None for key in FIGURES)
    assert result["commit"] and result["timeout"] == 5.0
    # a made-up earlier run: the tables show its figures beside this run's and the ratio
    row = dict(spin, id="kexec-2 none", workload="kexec-2", reduction="none",
               verdict="holds", states=2870, cpu_seconds=0.5, states_per_cpu_second=9000)
    result["cells"] = [row]
    before = dict(result, commit="0ld", cells=[dict(row, cpu_seconds=1.5)])
    text = _load().markdown(result, before)
    assert f"### Benchmark matrix at {result['commit']}" in text
    line = next(li for li in text.splitlines() if li.startswith("| kexec-2 none |"))
    assert line.count("|") == 15 and line.rstrip(" |").endswith("3.0x")
    assert "| at 0ld: verdict |" in text and "| 0ld: verdict" not in text
    side = next(li for li in text.splitlines() if li.startswith("| 2 |"))
    assert side.split(" | ")[1] == "0.50 s (2,870) / 1.50 s (2,870)"

    # a saved run's tables, without running anything
    saved = tmp_path / "old.json"
    saved.write_text(json.dumps(before))
    assert _load().main(["--show", str(saved)]) == 0
    assert "### Benchmark matrix at 0ld" in capsys.readouterr().out


@pytest.mark.slow
def test_one_cell_runs_and_its_json_and_tables_have_the_matrix_shape(tmp_path: Path) -> None:
    out = tmp_path / "run.json"
    code = _load().main(["--only", "kexec-2 none", "--only", "syscall-concrete SPIN",
                        "--timeout", "30", "--json", str(out)])
    assert code == 0
    result = json.loads(out.read_text())
    assert result["commit"] and result["timeout"] == 30
    kexec, spin = result["cells"]
    assert kexec["id"] == "kexec-2 none" and kexec["verdict"] == "holds"
    assert kexec["states"] == 2870  # the unreduced 2-CPU question (compare_spin.py: SPIN's - 1)
    for key in FIGURES:
        assert kexec[key] is not None and kexec[key] >= 0, key
    # memory above the loaded design's peak: 0 when a small search never passes that peak
    assert all(kexec[key] > 0 for key in FIGURES if key != "bytes_per_state")
    assert kexec["search_cpu_seconds"] <= kexec["cpu_seconds"]
    # SPIN has no translation of xen_syscall: the cell says so, with no invented figures
    assert spin["verdict"] == "unavailable" and "xen_syscall" in spin["note"]
    assert all(spin[key] is None for key in FIGURES)

    # The earlier run beside this one: its verdicts, states and CPU seconds, and the ratio.
    before = json.loads(out.read_text())
    before["commit"] = "0ld"
    before["cells"][0]["cpu_seconds"] = kexec["cpu_seconds"] * 2
    text = _load().markdown(result, before)
    assert f"### Benchmark matrix at {result['commit']}" in text
    row = next(line for line in text.splitlines() if line.startswith("| kexec-2 none |"))
    assert row.count("|") == 15 and row.rstrip(" |").endswith("2.0x")
    assert "| at 0ld: verdict |" in text
    side = next(line for line in text.splitlines() if line.startswith("| 2 |"))
    assert "(2,870) / " in side


@pytest.mark.slow
def test_a_cell_without_verdict_records_its_states_and_skips_its_larger_neighbours(
    tmp_path: Path,
) -> None:
    out = tmp_path / "run.json"
    _load().main(["--only", "kexec-5 none", "--only", "kexec-6 none", "--timeout", "1",
                 "--json", str(out)])
    five, six = json.loads(out.read_text())["cells"]
    assert five["verdict"] == "incomplete" and five["states"] > 0
    assert _load().verdict_text(five) == "no verdict in 1 CPU-s"
    assert six["verdict"] == "skipped" and "kexec-5 none" in six["note"]
