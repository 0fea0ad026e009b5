"""The README's "IDT vs FRED" table, generated from properties/fred.toml (issue 17).

    python benchmarks/fred_table.py            # print the table
    python benchmarks/fred_table.py --write    # replace it in README.md (between markers)

Each FRED property of properties/fred.toml has a `# twin: FILE NAME -- question` line
above it naming its IDT twin (a property of FILE, relative to properties/). A row is the
question, the twin and its verdict, the FRED property and its verdict. The verdicts are
the properties' `expect` values: the gate fails whenever a verdict differs from its
`expect`, so a table matching them matches the verdicts (tests/test_fred_table.py checks
the README is current).
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROPERTIES = ROOT / "properties"
FRED = PROPERTIES / "fred.toml"
README = ROOT / "README.md"
BEGIN = "<!-- fred-table:begin -->\n"
END = "\n<!-- fred-table:end -->"

_TWIN = re.compile(r"#\s*twin:\s*(\S+)\s+(\S+)\s+--\s+(.+?)\s*$")
_NAME = re.compile(r'^name\s*=\s*"([^"]+)"')


def twins(path: Path = FRED) -> list[tuple[str, str, str, str]]:
    """(question, FRED property, twin file, twin property) in file order: each `# twin:`
    line pairs with the next `name = "..."` line."""
    out: list[tuple[str, str, str, str]] = []
    pending: tuple[str, str, str] | None = None
    for line in path.read_text().splitlines():
        m = _TWIN.match(line.strip())
        if m:
            pending = (m.group(3), m.group(1), m.group(2))
            continue
        n = _NAME.match(line.strip())
        if n and pending is not None:
            question, twin_file, twin_name = pending
            out.append((question, n.group(1), twin_file, twin_name))
            pending = None
    return out


def expectations(path: Path) -> dict[str, tuple[str, str]]:
    """Property name -> (kind, expected verdict) of one property file."""
    data = tomllib.loads(path.read_text())
    return {p["name"]: (p["kind"], p["expect"]) for p in data.get("property", [])}


def table(path: Path = FRED) -> str:
    """The markdown table (no trailing newline). A twin or property that does not exist
    is a ValueError: the table never shows a verdict nothing checks."""
    fred = expectations(path)
    rows = [
        "| question | kind | IDT twin | IDT | FRED property | FRED |",
        "|---|---|---|---|---|---|",
    ]
    for question, name, twin_file, twin_name in twins(path):
        twin_path = path.parent / twin_file
        idt = expectations(twin_path) if twin_path.exists() else {}
        if twin_name not in idt:
            raise ValueError(f"{path.name}: {name}'s twin {twin_file} {twin_name} does not exist")
        if name not in fred:
            raise ValueError(f"{path.name}: no property {name}")
        kind, verdict = fred[name]
        twin_kind, twin_verdict = idt[twin_name]
        if twin_kind != kind:
            twin_verdict += f" ({twin_kind})"
        rows.append(
            f"| {question} | {kind} | `{twin_file.removesuffix('.toml')}:{twin_name}` "
            f"| {twin_verdict} | `{name}` | {verdict} |"
        )
    return "\n".join(rows)


def with_table(readme: str, text: str) -> str:
    """README text with the section between the markers replaced by `text`."""
    start = readme.index(BEGIN) + len(BEGIN)
    stop = readme.index(END)
    return readme[:start] + text + readme[stop:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="update README.md in place")
    args = parser.parse_args(argv)
    text = table()
    if args.write:
        README.write_text(with_table(README.read_text(), text))
    else:
        sys.stdout.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
