"""The README's "IDT vs FRED" table (issue 17) is generated from properties/fred.toml's
twin pairs and verdicts (benchmarks/fred_table.py), and is current."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("fred_table", ROOT / "benchmarks" / "fred_table.py")
assert _spec is not None and _spec.loader is not None
fred_table = importlib.util.module_from_spec(_spec)
sys.modules["fred_table"] = fred_table
_spec.loader.exec_module(fred_table)


def test_readme_table_matches_the_verdicts() -> None:
    readme = (ROOT / "README.md").read_text()
    assert fred_table.with_table(readme, fred_table.table()) == readme, (
        "README.md's IDT vs FRED table is stale: run python benchmarks/fred_table.py --write"
    )


def test_every_fred_property_has_a_twin_or_is_a_companion() -> None:
    """At least 12 FRED questions, each with an IDT twin that exists; every other
    property of the file is a vacuity companion (reachable) or an IDT twin itself."""
    pairs = fred_table.twins()
    assert len(pairs) >= 12
    paired = {name for _, name, _, _ in pairs}
    twins_here = {t for _, _, f, t in pairs if f == "fred.toml"}
    for name, (kind, _) in fred_table.expectations(fred_table.FRED).items():
        assert name in paired or name in twins_here or kind == "reachable", name


def test_a_missing_twin_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "fred.toml"
    path.write_text('design = "x"\n# twin: fred.toml nowhere -- q\n[[property]]\n'
                    'name = "p"\nkind = "never"\nexpr = "x"\nexpect = "holds"\n')
    with pytest.raises(ValueError, match=r"twin fred\.toml nowhere does not exist"):
        fred_table.table(path)
