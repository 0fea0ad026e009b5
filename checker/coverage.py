"""Coverage: what the explorations of a run reached of the designs.

A model with a `coverage(states)` method (see `checker.interface.Covering`) says, for the
states one exploration visited, which source lines, routines, vectors and events they
reached. A run merges those per source file: a line counts as reached when any
exploration reached it, and as unreached when some exploration's design contains it and
none reached it (a line only one variant compiles is covered by that variant's runs).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from checker.results import ExplorationResult


def merge(coverages: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """One coverage record for several explorations (the format `Covering` documents)."""
    reached: dict[str, set[int]] = {}
    present: dict[str, set[int]] = {}
    routines: dict[str, bool] = {}
    vectors: dict[str, bool] = {}
    events: set[str] = set()
    for cov in coverages:
        for path, lines in (cov.get("files") or {}).items():
            got = {int(n) for n in lines.get("reached", ())}
            reached.setdefault(path, set()).update(got)
            present.setdefault(path, set()).update(got, (int(n) for n in lines.get(
                "unreached", ())))
        for name, hit in (cov.get("routines") or {}).items():
            routines[str(name)] = routines.get(str(name), False) or bool(hit)
        for name, hit in (cov.get("vectors") or {}).items():
            vectors[str(name)] = vectors.get(str(name), False) or bool(hit)
        events.update(str(e) for e in cov.get("events") or ())
    files = {
        path: {
            "reached": sorted(reached[path]),
            "unreached": sorted(present[path] - reached[path]),
        }
        for path in sorted(present)
    }
    return {
        "files": files,
        "routines": dict(sorted(routines.items())),
        "vectors": dict(sorted(vectors.items(), key=lambda kv: _vector_order(kv[0]))),
        "events": sorted(events),
        "unreached_lines": sum(len(f["unreached"]) for f in files.values()),
    }


def _vector_order(name: str) -> tuple[int, str]:
    try:
        return (int(name, 0), name)
    except ValueError:
        return (1 << 30, name)


def run_coverage(explorations: Sequence[ExplorationResult]) -> dict[str, Any] | None:
    """The merged coverage of a run, with `partial` (some exploration stopped before it
    had visited every reachable state: a property decided early, or a bound); None when
    no exploration has coverage."""
    covered = [e for e in explorations if e.coverage is not None]
    if not covered:
        return None
    merged = merge(e.coverage for e in covered if e.coverage is not None)
    merged["explorations"] = len(covered)
    merged["partial"] = [
        number for number, e in enumerate(explorations)
        if e.coverage is not None and not e.complete
    ]
    merged["seconds"] = round(sum(e.coverage_seconds for e in covered), 6)
    return merged


def line_ranges(lines: Sequence[int]) -> str:
    """`[3, 4, 5, 9]` -> "3-5, 9"."""
    parts: list[str] = []
    ordered = sorted(set(lines))
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        parts.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ", ".join(parts)


def unreached_report(merged: Mapping[str, Any]) -> list[str]:
    """One line per file with unreached lines: `path: lines 3-5, 9 (4 lines)`."""
    out: list[str] = []
    for path, lines in merged.get("files", {}).items():
        missing = lines.get("unreached", [])
        if missing:
            count = len(missing)
            out.append(
                f"{path}: line{'s' if count != 1 else ''} {line_ranges(missing)} "
                f"({count} line{'s' if count != 1 else ''} never reached)"
            )
    return out


def summary_line(merged: Mapping[str, Any]) -> str:
    files = merged.get("files", {})
    reached = sum(len(f.get("reached", [])) for f in files.values())
    total = reached + sum(len(f.get("unreached", [])) for f in files.values())
    routines = merged.get("routines", {})
    vectors = merged.get("vectors", {})
    parts = [f"{reached}/{total} source lines"]
    if routines:
        parts.append(f"{sum(1 for v in routines.values() if v)}/{len(routines)} routines")
    if vectors:
        parts.append(f"{sum(1 for v in vectors.values() if v)}/{len(vectors)} vectors")
    if merged.get("events"):
        parts.append(f"{len(merged['events'])} kinds of event")
    text = "coverage: " + ", ".join(parts) + " reached"
    if merged.get("partial"):
        text += f" ({len(merged['partial'])} exploration(s) stopped early: partial)"
    return text


def read_source(path: str) -> list[str] | None:
    """The lines of a source file a model named, or None when it cannot be read."""
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
