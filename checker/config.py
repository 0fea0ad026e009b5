"""Defaults for the command line from a configuration file.

The first of these, looking in the working directory and then in each folder above it,
as pytest looks for its own table:

- `checker.toml`: the options at its top level (or in a `[tool.irq-checker]` table);
- `pyproject.toml` with a `[tool.irq-checker]` table (one without it is passed over).

`--config FILE` names the file instead. Keys are the long options without their dashes
(`max-states = 100000`, `html = true`, `design-path = ["designs/"]`) plus `paths`, the
property files or folders to check when none is named. Relative paths are relative to
the file's folder. The command line wins: an option given there replaces the file's.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from checker.errors import InputError
from checker.spec import load_toml

TABLE = ("tool", "irq-checker")
# Options that make no sense as a default.
NOT_SETTINGS = frozenset({"help", "version", "list", "config"})
# Settings whose values are paths, relative to the file that sets them.
PATH_SETTINGS = frozenset({"paths", "report_dir", "design_path", "junit", "sarif"})


@dataclass(frozen=True)
class Settings:
    path: Path
    text: str
    values: Mapping[str, Any]
    header: str | None  # the table's header line as written, or None at top level


def find(argv: Sequence[str]) -> Settings | None:
    """The settings `--config FILE` in `argv` names, else the first found from the
    working directory up; None when there is none."""
    explicit = _explicit(argv)
    if explicit is not None:
        path = Path(explicit)
        if not path.is_file():
            raise InputError("--config: no such file", explicit)
        found = _read(path, required=True)
        assert found is not None
        return found
    here = Path.cwd()
    for folder in (here, *here.parents):
        for name in ("checker.toml", "pyproject.toml"):
            path = folder / name
            if path.is_file():
                found = _read(path, required=name == "checker.toml")
                if found is not None:
                    return found
    return None


def _explicit(argv: Sequence[str]) -> str | None:
    for i, arg in enumerate(argv):
        if arg == "--":
            break
        if arg == "--config" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--config="):
            return arg.partition("=")[2]
    return None


def _read(path: Path, required: bool) -> Settings | None:
    """The settings in `path`; None for a pyproject.toml without the table."""
    name = _shown(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read the configuration: {exc.strerror or exc}", name) from None
    except UnicodeDecodeError:
        raise InputError("the configuration is not valid UTF-8", name) from None
    data = load_toml(text, name)
    table: Any = data
    for key in TABLE:
        table = table.get(key) if isinstance(table, dict) else None
    if isinstance(table, dict):
        return Settings(path, text, table, "tool.irq-checker")
    if table is not None:
        raise InputError("[tool.irq-checker] must be a table", name, _line(text, "irq-checker"))
    if not required:
        return None
    return Settings(path, text, data, None)


def apply(parser: argparse.ArgumentParser, settings: Settings) -> dict[str, list[str]]:
    """Set the parser's defaults from `settings`; the repeatable options and `paths` are
    returned (dest -> values) for the caller to use when the command line gives none."""
    actions = {
        a.dest: a for a in parser._actions  # argparse has no public list of its options
        if a.dest not in NOT_SETTINGS and a.dest != argparse.SUPPRESS
    }
    name = _shown(settings.path)
    lists: dict[str, list[str]] = {}
    defaults: dict[str, Any] = {}
    for key, value in settings.values.items():
        dest = key.replace("-", "_")
        line = _line(settings.text, key, settings.header)
        action = actions.get(dest)
        if action is None:
            known = sorted(k.replace("_", "-") for k in actions)
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else f"; known: {', '.join(known)}"
            raise InputError(f"unknown setting '{key}'{hint}", name, line)
        if dest == "paths" or isinstance(action, argparse._AppendAction):
            items = [value] if isinstance(value, str) else value
            if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
                raise InputError(f"'{key}' must be a string or an array of strings", name, line)
            lists[dest] = [_path(settings.path, v) if dest in PATH_SETTINGS else v for v in items]
        elif action.nargs == 0:  # a flag
            if not isinstance(value, bool):
                raise InputError(f"'{key}' must be true or false", name, line)
            defaults[dest] = value
        else:
            if isinstance(value, bool) or not isinstance(value, str | int | float):
                raise InputError(f"'{key}' must be a string or a number", name, line)
            text = str(value)
            try:
                converted = action.type(text) if callable(action.type) else text
            except (argparse.ArgumentTypeError, ValueError) as exc:
                raise InputError(f"'{key}': {exc}", name, line) from None
            if action.choices is not None and converted not in action.choices:
                raise InputError(
                    f"'{key}' must be one of {', '.join(map(str, action.choices))}", name, line
                )
            defaults[dest] = (
                _path(settings.path, text) if dest in PATH_SETTINGS else converted
            )
    parser.set_defaults(**defaults)
    return lists


def _path(config: Path, value: str) -> str:
    """A path the configuration names, relative to its folder, as the working directory
    sees it."""
    folder = config.parent
    if Path(value).is_absolute() or folder.resolve() == Path.cwd().resolve():
        return value
    return os.path.relpath(folder / value)


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _line(text: str, key: str, header: str | None = None) -> int | None:
    """The line that sets `key` (after the table's header when there is one)."""
    lines = text.splitlines()
    start = 0
    if header is not None:
        for number, line in enumerate(lines):
            if line.strip().replace(" ", "").startswith(("[tool.irq-checker]",
                                                         '[tool."irq-checker"]')):
                start = number
                break
    pattern = re.compile(rf"""^\s*["']?{re.escape(key)}["']?\s*=""")
    for number in range(start, len(lines)):
        if pattern.match(lines[number]):
            return number + 1
    return start + 1 if header is not None else None
