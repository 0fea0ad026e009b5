"""Property files: reading, validating, grouping, and loading their transition systems.

A property file is TOML (read with the standard `tomllib`); see docs/properties.md for
the schema. Every error names the file and the line of the offending key or table.
`tomllib` reports no positions for valid documents, so `Locator` scans the raw text for
table headers and `key =` lines and maps a key path to its line.
"""

from __future__ import annotations

import difflib
import fnmatch
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any

from checker.errors import InputError, ModelInputError, UsageError
from checker.expr import Expr, ExprError, compile_expr
from checker.fields import check_fields
from checker.interface import (
    ModelInterfaceError,
    ModelProvider,
    TransitionSystem,
    capabilities,
    require_core,
)
from checker.verdict import Kind, Verdict

KeyPath = tuple[str | int, ...]

FILE_KEYS = ("design", "variant", "environment", "description", "property")
PROPERTY_KEYS = (
    "name", "kind", "expr", "to", "fairness", "strong_fairness", "expect", "description",
    "design", "variant", "environment",
)
FAIRNESS = ("weak", "strong", "none")  # what the CPUs' own steps get (liveness kinds)
NAME_RE = re.compile(r"[a-z0-9-]+\Z")


# -- locating keys in the raw text -------------------------------------------------------


class Locator:
    """Maps key paths of a (valid) TOML document to the line that writes them.

    Paths use ints for array-of-tables elements: ("property", 2, "expr") is the `expr` key
    of the third `[[property]]`. A path that is not written as such (a key inside an inline
    table, a default) maps to the line of its longest written prefix.
    """

    def __init__(self, text: str):
        self.lines: dict[KeyPath, int] = {(): 1}
        self._scan(text)

    def line(self, path: Sequence[str | int]) -> int:
        key = tuple(path)
        while key not in self.lines:
            key = key[:-1]
        return self.lines[key]

    def _record(self, path: KeyPath, line: int) -> None:
        self.lines.setdefault(path, line)

    def _scan(self, text: str) -> None:
        arrays: dict[KeyPath, int] = {}  # array-of-tables path -> elements seen
        table: KeyPath = ()
        open_value: _ValueScan | None = None  # a multi-line value still open

        def resolve(parts: Sequence[str]) -> KeyPath:
            out: list[str | int] = []
            for part in parts:
                out.append(part)
                count = arrays.get(tuple(out))
                if count is not None:
                    out.append(count - 1)
            return tuple(out)

        for number, raw in enumerate(text.splitlines(), start=1):
            if open_value is not None:
                open_value.feed(raw, 0)
                if open_value.closed:
                    open_value = None
                continue
            stripped = raw.lstrip()
            if not stripped or stripped.startswith("#"):
                continue
            start = len(raw) - len(stripped)
            if stripped.startswith("[["):
                parts, _ = _parse_key(raw, start + 2)
                prefix = (*resolve(parts[:-1]), parts[-1])
                count = arrays.get(prefix, 0)
                arrays[prefix] = count + 1
                self._record(prefix, number)
                table = (*prefix, count)
                self._record(table, number)
            elif stripped.startswith("["):
                parts, _ = _parse_key(raw, start + 1)
                table = resolve(parts)
                self._record(table, number)
            else:
                parts, pos = _parse_key(raw, start)
                for end in range(1, len(parts) + 1):
                    self._record(table + tuple(parts[:end]), number)
                eq = raw.find("=", pos)
                if eq >= 0:
                    scan = _ValueScan()
                    scan.feed(raw, eq + 1)
                    if not scan.closed:
                        open_value = scan


class _ValueScan:
    """Tracks whether a TOML value that started on one line continues on the next
    (multi-line strings, arrays spanning lines)."""

    def __init__(self) -> None:
        self.depth = 0
        self.string: str | None = None  # '"""' or "'''" while inside one

    @property
    def closed(self) -> bool:
        return self.depth == 0 and self.string is None

    def feed(self, line: str, pos: int) -> None:
        n = len(line)
        while pos < n:
            if self.string is not None:
                end = line.find(self.string, pos)
                if self.string == '"""':
                    # skip escaped quotes
                    while end > 0 and _escaped(line, end):
                        end = line.find(self.string, end + 1)
                if end < 0:
                    return
                pos = end + 3
                while pos < n and line[pos] == self.string[0]:
                    pos += 1  # up to two extra quotes may close the string
                self.string = None
                continue
            ch = line[pos]
            if ch == "#":
                return
            if line.startswith('"""', pos) or line.startswith("'''", pos):
                self.string = line[pos : pos + 3]
                pos += 3
                continue
            if ch == '"':
                pos += 1
                while pos < n and line[pos] != '"':
                    pos += 2 if line[pos] == "\\" else 1
                pos += 1
                continue
            if ch == "'":
                end = line.find("'", pos + 1)
                pos = n if end < 0 else end + 1
                continue
            if ch in "[{":
                self.depth += 1
            elif ch in "]}":
                self.depth -= 1
            pos += 1


def _escaped(line: str, index: int) -> bool:
    backslashes = 0
    while index - 1 - backslashes >= 0 and line[index - 1 - backslashes] == "\\":
        backslashes += 1
    return backslashes % 2 == 1


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _parse_key(line: str, pos: int) -> tuple[list[str], int]:
    """Parse a (dotted, possibly quoted) TOML key starting at `pos`."""
    parts: list[str] = []
    n = len(line)
    while True:
        while pos < n and line[pos] in " \t":
            pos += 1
        if pos >= n:
            break
        ch = line[pos]
        if ch == '"':
            end = pos + 1
            while end < n and line[end] != '"':
                end += 2 if line[end] == "\\" else 1
            parts.append(_unescape_basic(line[pos + 1 : end]))
            pos = end + 1
        elif ch == "'":
            end = line.find("'", pos + 1)
            end = n if end < 0 else end
            parts.append(line[pos + 1 : end])
            pos = end + 1
        else:
            match = _BARE_KEY.match(line, pos)
            if match is None:
                break
            parts.append(match.group())
            pos = match.end()
        while pos < n and line[pos] in " \t":
            pos += 1
        if pos < n and line[pos] == ".":
            pos += 1
            continue
        break
    return parts, pos


def _unescape_basic(body: str) -> str:
    try:
        value = tomllib.loads(f'k = "{body}"')["k"]
    except tomllib.TOMLDecodeError:
        return body
    return str(value)


# -- the parsed file ---------------------------------------------------------------------


@dataclass(frozen=True)
class Property:
    """One `[[property]]`, with the file-level design/variant/environment merged in."""

    name: str
    kind: Kind
    expr: Expr | None
    expect: Verdict
    description: str
    design: str
    variant: Mapping[str, str]
    environment: Mapping[str, Any]
    file: str
    line: int  # the line of its [[property]] header
    # Lines of the merged settings: "design", "variant", "variant.<knob>", "environment",
    # "environment.<key>", "expr" -> where each was written.
    lines: Mapping[str, int] = field(default_factory=dict, compare=False)
    # Liveness kinds: `leads_to`'s conclusion, the fairness of the CPUs' own steps, and
    # the actors (glob patterns over the model's actor names) that are strongly fair too.
    to: Expr | None = None
    fairness: str = "weak"
    strong_fairness: tuple[str, ...] = ()

    @property
    def variant_text(self) -> str:
        return ",".join(f"{k}={v}" for k, v in self.variant.items())

    def line_of(self, key: str) -> int:
        """Line of a model key (`design`, `variant.ist`, `environment.nmi.cpu0`): that
        key's line, else its nearest written parent's, else the property's header."""
        while key:
            if key in self.lines:
                return self.lines[key]
            key = key.rpartition(".")[0]
        return self.line


@dataclass(frozen=True)
class PropertyFile:
    path: str
    description: str
    properties: tuple[Property, ...]

    @property
    def stem(self) -> str:
        return Path(self.path).stem


def read_property_file(path: str | Path) -> PropertyFile:
    """Read and validate a property file (not yet against a model)."""
    name = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read property file: {exc.strerror or exc}", name) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InputError("property file is not valid UTF-8", name, line) from None
    return parse_property_file(text, name)


_TOML_POS = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")
_TOML_END = re.compile(r"\s*\(at end of document\)\s*$")


# Limits on what a property file may hold (docs/properties.md#limits).
MAX_NAME = 100  # characters in a property name (it names trace files)
MAX_DESIGN = 1024  # characters in a design name or path
MAX_DIGITS = 4300  # decimal digits of an integer (Python's int/str conversion limit)
MAX_DEPTH = 32  # arrays and tables nested in one another
_LONG_NUMBER = re.compile(f"[0-9][0-9_]{{{MAX_DIGITS},}}")


def parse_property_file(text: str, path: str) -> PropertyFile:
    return _Reader(path, text, load_toml(text, path)).read()


def load_toml(text: str, path: str) -> dict[str, Any]:
    """`text` parsed as TOML; every way tomllib can refuse it becomes a `path:line` error
    (the configuration file shares this with the property files)."""
    try:
        return tomllib.loads(text)
    except RecursionError:
        raise InputError(
            "TOML nests arrays or tables too deeply", path, deepest_line(text)
        ) from None
    except ValueError as exc:
        if isinstance(exc, tomllib.TOMLDecodeError):
            raise _toml_error(exc, text, path) from None
        # tomllib lets int() raise for a decimal integer beyond Python's digit limit.
        raise InputError(
            f"an integer with more than {MAX_DIGITS} digits", path,
            first_line(text, _LONG_NUMBER),
        ) from None


def first_line(text: str, pattern: re.Pattern[str]) -> int | None:
    """The number of the first line of `text` where `pattern` is found, or None."""
    return next((n for n, raw in enumerate(text.splitlines(), 1) if pattern.search(raw)), None)


def deepest_line(text: str) -> int:
    """The line where brackets (outside strings, roughly) first nest deepest."""
    depth = best = 0
    where = 1
    for number, raw in enumerate(text.splitlines(), 1):
        for ch in raw:
            if ch in "[{":
                depth += 1
                if depth > best:
                    best, where = depth, number
            elif ch in "]}":
                depth -= 1
    return where


def _toml_error(exc: tomllib.TOMLDecodeError, text: str, path: str) -> InputError:
    message = str(exc)
    line: int | None = None
    match = _TOML_POS.search(message)
    if match:
        line = int(match.group(1))
        message = _TOML_POS.sub("", message) + f" (column {match.group(2)})"
    elif _TOML_END.search(message):
        line = max(text.count("\n") + (0 if text.endswith("\n") else 1), 1)
        message = _TOML_END.sub("", message) + " (at end of file)"
    return InputError(f"TOML syntax error: {message}", path, line)


_TOML_TYPES: Sequence[tuple[type, str]] = (
    (bool, "boolean"),
    (int, "integer"),
    (float, "float"),
    (str, "string"),
    (list, "array"),
    (dict, "table"),
)


def _type_name(value: Any) -> str:
    for cls, name in _TOML_TYPES:
        if isinstance(value, cls):
            return name
    return "date/time"


def _a(noun: str) -> str:
    return ("an " if noun[0] in "aeiou" else "a ") + noun


def _suggest(key: str, allowed: Sequence[str]) -> str:
    close = difflib.get_close_matches(key, allowed, n=1)
    if close:
        return f" (did you mean '{close[0]}'?)"
    return "; allowed keys: " + ", ".join(allowed)


class _Reader:
    def __init__(self, path: str, text: str, data: dict[str, Any]):
        self.path = path
        self.data = data
        self.locator = Locator(text)

    def error(self, message: str, *key: str | int) -> InputError:
        return InputError(message, self.path, self.locator.line(key))

    def expect_type(self, value: Any, cls: type, what: str, *key: str | int) -> None:
        if (cls is int and isinstance(value, bool)) or not isinstance(value, cls):
            expected = _a(dict(_TOML_TYPES)[cls])
            raise self.error(f"{what} must be {expected}, not {_a(_type_name(value))}", *key)

    def read(self) -> PropertyFile:
        data = self.data
        self.check_depth()
        for key in data:
            if key not in FILE_KEYS:
                raise self.error(f"unknown top-level key '{key}'{_suggest(key, FILE_KEYS)}", key)
        description = data.get("description", "")
        self.expect_type(description, str, "'description'", "description")
        design = data.get("design")
        if design is not None:
            self.expect_type(design, str, "'design'", "design")
        variant = self.variant(data.get("variant", {}), ("variant",))
        environment = data.get("environment", {})
        self.expect_type(environment, dict, "'environment'", "environment")
        if "property" not in data:
            raise self.error("no properties: add at least one [[property]] table")
        table = data["property"]
        if not isinstance(table, list) or not all(isinstance(p, dict) for p in table):
            raise self.error(
                "'property' must be an array of tables, written [[property]]", "property"
            )
        if not table:
            raise self.error("no properties: add at least one [[property]] table", "property")
        base_lines: dict[str, int] = {}
        if design is not None:
            base_lines["design"] = self.locator.line(("design",))
        for name, value in (("variant", variant), ("environment", environment)):
            if name in data:
                base_lines[name] = self.locator.line((name,))
                for key in value:
                    base_lines[f"{name}.{key}"] = self.locator.line((name, key))
        properties: list[Property] = []
        seen: dict[str, int] = {}
        for index, item in enumerate(table):
            prop = self.property(index, item, design, variant, environment, base_lines)
            if prop.name in seen:
                raise self.error(
                    f"duplicate property name '{prop.name}' (first defined at line "
                    f"{seen[prop.name]})",
                    "property", index, "name",
                )
            seen[prop.name] = prop.line
            properties.append(prop)
        return PropertyFile(self.path, description, tuple(properties))

    def check_depth(self) -> None:
        """No value nests deeper than MAX_DEPTH (later steps walk values recursively)."""
        pending: list[tuple[Any, KeyPath]] = [(self.data, ())]
        while pending:
            value, key = pending.pop()
            if len(key) > MAX_DEPTH:
                raise self.error(
                    f"arrays and tables nest more than {MAX_DEPTH} deep", *key
                )
            if isinstance(value, dict):
                pending.extend((v, (*key, str(k))) for k, v in value.items())
            elif isinstance(value, list):
                pending.extend((v, (*key, i)) for i, v in enumerate(value))

    def variant(self, value: Any, key: KeyPath) -> dict[str, str]:
        self.expect_type(value, dict, "'variant'", *key)
        for knob, setting in value.items():
            if not isinstance(setting, str):
                raise self.error(
                    f"variant knob '{knob}' must be a string, not {_a(_type_name(setting))}",
                    *key, knob,
                )
        return dict(value)

    def property(
        self,
        index: int,
        item: dict[str, Any],
        design: str | None,
        variant: Mapping[str, str],
        environment: Mapping[str, Any],
        base_lines: Mapping[str, int],
    ) -> Property:
        at: KeyPath = ("property", index)
        line = self.locator.line(at)
        for key in item:
            if key not in PROPERTY_KEYS:
                raise self.error(
                    f"unknown key '{key}' in [[property]]{_suggest(key, PROPERTY_KEYS)}",
                    *at, key,
                )
        for key in ("name", "kind", "expect"):
            if key not in item:
                raise self.error(f"[[property]] is missing the required key '{key}'", *at)
        name = item["name"]
        self.expect_type(name, str, "'name'", *at, "name")
        if len(name) > MAX_NAME:
            raise self.error(
                f"property name '{name[:40]}...' is longer than {MAX_NAME} characters",
                *at, "name",
            )
        if not NAME_RE.match(name):
            raise self.error(
                f"property name '{name}' may use only a-z, 0-9 and '-'", *at, "name"
            )
        kind_text = item["kind"]
        self.expect_type(kind_text, str, "'kind'", *at, "kind")
        try:
            kind = Kind(kind_text)
        except ValueError:
            allowed = ", ".join(k.value for k in Kind)
            raise self.error(
                f"unknown kind '{kind_text}'; expected one of: {allowed}", *at, "kind"
            ) from None
        expect_text = item["expect"]
        self.expect_type(expect_text, str, "'expect'", *at, "expect")
        if expect_text not in ("holds", "violated"):
            raise self.error(
                f"'expect' must be \"holds\" or \"violated\", not {expect_text!r}",
                *at, "expect",
            )
        expect = Verdict(expect_text)
        description = item.get("description", "")
        self.expect_type(description, str, "'description'", *at, "description")

        expr: Expr | None = None
        if kind.needs_expr:
            if "expr" not in item:
                raise self.error(f"a '{kind}' property needs an 'expr'", *at)
            expr = self.expression(item, "expr", at)
        elif "expr" in item:
            raise self.error(f"a '{kind}' property takes no 'expr'", *at, "expr")
        to, fairness, strong = self.liveness(kind, item, at)

        lines = dict(base_lines)
        lines["expr"] = self.locator.line((*at, "expr"))
        for key in ("to", "fairness", "strong_fairness"):
            if key in item:
                lines[key] = self.locator.line((*at, key))
        prop_design = item.get("design", design)
        if "design" in item:
            self.expect_type(prop_design, str, "'design'", *at, "design")
            lines["design"] = self.locator.line((*at, "design"))
        if prop_design is None:
            raise self.error(
                "no design: set 'design' at the top of the file or in the property", *at
            )
        design_at = (*at, "design") if "design" in item else ("design",)
        if not prop_design.strip():
            raise self.error("'design' is empty", *design_at)
        if len(prop_design) > MAX_DESIGN:
            raise self.error(
                f"'design' {prop_design[:40]!r}... is longer than {MAX_DESIGN} characters",
                *design_at,
            )
        if "\0" in prop_design:
            raise self.error("'design' contains a NUL character", *design_at)
        prop_design = design_reference(prop_design, self.path)
        merged_variant = dict(variant)
        if "variant" in item:
            own = self.variant(item["variant"], (*at, "variant"))
            merged_variant.update(own)
            lines["variant"] = self.locator.line((*at, "variant"))
            for knob in own:
                lines[f"variant.{knob}"] = self.locator.line((*at, "variant", knob))
        merged_env = dict(environment)
        if "environment" in item:
            own_env = item["environment"]
            self.expect_type(own_env, dict, "'environment'", *at, "environment")
            merged_env.update(own_env)
            lines["environment"] = self.locator.line((*at, "environment"))
            for key in own_env:
                lines[f"environment.{key}"] = self.locator.line((*at, "environment", key))
        return Property(
            name=name,
            kind=kind,
            expr=expr,
            expect=expect,
            description=description,
            design=prop_design,
            variant=merged_variant,
            environment=merged_env,
            file=self.path,
            line=line,
            lines=lines,
            to=to,
            fairness=fairness,
            strong_fairness=strong,
        )

    def expression(self, item: Mapping[str, Any], key: str, at: KeyPath) -> Expr:
        """The property's expression under `key` ('expr' or 'to'), compiled."""
        source = item[key]
        self.expect_type(source, str, f"'{key}'", *at, key)
        try:
            return compile_expr(source)
        except ExprError as exc:
            raise self.error(
                f"bad expression: {exc.message} ({exc.where(source)})", *at, key
            ) from None

    def liveness(
        self, kind: Kind, item: Mapping[str, Any], at: KeyPath
    ) -> tuple[Expr | None, str, tuple[str, ...]]:
        """A liveness property's `to` (leads_to only, required there), `fairness` and
        `strong_fairness`; other kinds take none of them."""
        if not kind.liveness:
            for key in ("to", "fairness", "strong_fairness"):
                if key in item:
                    raise self.error(
                        f"a '{kind}' property takes no '{key}' (only eventually and "
                        "leads_to do)", *at, key,
                    )
            return None, "weak", ()
        to: Expr | None = None
        if kind is Kind.LEADS_TO:
            if "to" not in item:
                raise self.error(
                    "a 'leads_to' property needs a 'to' (the expression that must follow "
                    "'expr')", *at,
                )
            to = self.expression(item, "to", at)
        elif "to" in item:
            raise self.error(
                "an 'eventually' property takes no 'to' (use kind = \"leads_to\")", *at, "to"
            )
        fairness = item.get("fairness", "weak")
        self.expect_type(fairness, str, "'fairness'", *at, "fairness")
        if fairness not in FAIRNESS:
            raise self.error(
                "'fairness' must be one of " + ", ".join(f'"{f}"' for f in FAIRNESS)
                + f", not {fairness!r}", *at, "fairness",
            )
        strong = item.get("strong_fairness", [])
        self.expect_type(strong, list, "'strong_fairness'", *at, "strong_fairness")
        for pattern in strong:
            if not isinstance(pattern, str) or not pattern:
                raise self.error(
                    "'strong_fairness' must list actor names (strings, globs allowed)",
                    *at, "strong_fairness",
                )
        return to, fairness, tuple(strong)


def is_path(design: str) -> bool:
    """A `design` value that is a path to a design file rather than a design name: it has
    a `/` or a file extension (names are words, `xen_ist`)."""
    return "/" in design or "\\" in design or "." in PurePath(design).name


def design_reference(design: str, property_file: str) -> str:
    """A design name as written; a path resolved against the property file's folder and
    written relative to the working directory when below it (else absolute), as reports
    show paths."""
    if not is_path(design):
        return design
    path = Path(design)
    if not path.is_absolute():
        path = Path(property_file).parent / path
    absolute = Path(os.path.abspath(path))
    try:
        return absolute.relative_to(Path.cwd()).as_posix()
    except ValueError:
        return absolute.as_posix()


# -- groups and loading ------------------------------------------------------------------


def freeze(value: Any) -> Any:
    """A hashable, order-independent form of a TOML value (for grouping)."""
    if isinstance(value, dict):
        return ("table", tuple(sorted((str(k), freeze(v)) for k, v in value.items())))
    if isinstance(value, list):
        return ("array", tuple(freeze(v) for v in value))
    return (type(value).__name__, value)


@dataclass(frozen=True)
class Group:
    """Properties sharing (design, variant, environment): one exploration decides them."""

    design: str
    variant: Mapping[str, str]
    environment: Mapping[str, Any]
    properties: tuple[Property, ...]

    @property
    def variant_text(self) -> str:
        return ",".join(f"{k}={v}" for k, v in self.variant.items())


def group_key(prop: Property) -> Any:
    return (prop.design, freeze(prop.variant), freeze(prop.environment))


def group_properties(properties: Sequence[Property]) -> list[Group]:
    """Groups in order of first appearance; properties keep their order within a group."""
    members: dict[Any, list[Property]] = {}
    for prop in properties:
        members.setdefault(group_key(prop), []).append(prop)
    return [
        Group(props[0].design, props[0].variant, props[0].environment, tuple(props))
        for props in members.values()
    ]


@dataclass(frozen=True)
class LoadedGroup:
    group: Group
    system: TransitionSystem[Any, Any]


def load_group(group: Group, provider: ModelProvider) -> LoadedGroup:
    """Load the group's transition system and check every expression's names against its
    vocabulary. Model complaints become InputErrors at the line that set the key."""
    system = load_system(group, provider)
    for prop in group.properties:
        check_expression(prop, system)
    return LoadedGroup(group, system)


def load_system(group: Group, provider: ModelProvider) -> TransitionSystem[Any, Any]:
    """The group's transition system (an InputError shared by the whole group)."""
    first = group.properties[0]
    try:
        system = provider.load(group.design, dict(group.variant), dict(group.environment))
    except ModelInputError as exc:
        line = first.line_of(exc.key)
        raise InputError(exc.message, first.file, line) from None
    except InputError:
        raise  # a design-file error already names its own file and line
    except Exception as exc:
        # A model bug, not bad input; still reported where the design is named, without a
        # traceback, so a CI log says which design failed.
        raise InputError(
            f"the model failed to load design '{group.design}': {type(exc).__name__}: {exc}",
            first.file,
            first.line_of("design"),
        ) from exc
    try:
        require_core(system)
    except ModelInterfaceError as exc:
        raise InputError(str(exc), first.file, first.line_of("design")) from None
    return system


def check_expression(prop: Property, system: TransitionSystem[Any, Any]) -> None:
    """Refuse an expression that reads a name the vocabulary lacks, or a record field the
    model's shapes say cannot exist (when it gives them: `Typed`), at the `expr` line."""
    if prop.kind.liveness:
        check_fairness(prop, system)
    if prop.to is not None:
        _check_one(prop, prop.to, "to", system)
    if prop.expr is None:
        return
    _check_one(prop, prop.expr, "expr", system)


def check_fairness(prop: Property, system: TransitionSystem[Any, Any]) -> None:
    """Every `strong_fairness` pattern names some actor of the model."""
    if not prop.strong_fairness:
        return
    fair = capabilities(system).fair
    names = list(fair.actor_names()) if fair is not None else []
    for pattern in prop.strong_fairness:
        if not any(fnmatch.fnmatchcase(n, pattern) for n in names):
            known = ", ".join(names) if names else "none: the model names no actors"
            raise InputError(
                f"'strong_fairness' pattern {pattern!r} matches no actor (actors: {known})",
                prop.file, prop.lines.get("strong_fairness", prop.line),
            )


def _check_one(
    prop: Property, expr: Expr, key: str, system: TransitionSystem[Any, Any]
) -> None:
    try:
        expr.check_names(system.vocabulary_names())
        typed = capabilities(system).typed
        if typed is not None:
            check_fields(expr, typed.vocabulary_shapes())
        if expr.calls:
            vocabulary = _some_vocabulary(system)
            if vocabulary is not None:
                expr.check_calls(vocabulary)
    except ExprError as exc:
        raise InputError(
            f"bad expression: {exc.message} ({exc.where(expr.source)})",
            prop.file,
            prop.lines.get(key, prop.line),
        ) from None


def _some_vocabulary(system: TransitionSystem[Any, Any]) -> Any:
    """The vocabulary of an initial state, to check calls of its functions against their
    signatures before exploring; None when there is no state (the exploration reports
    why)."""
    try:
        states = system.init_states()
        return system.vocabulary(states[0]) if states else None
    except Exception:
        return None


def find_property_files(paths: Sequence[str]) -> list[Path]:
    """Files named, and every *.toml under folders named (recursively, sorted)."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*.toml") if p.is_file()))
        elif path.is_file():
            found.append(path)
        else:
            raise UsageError(f"{raw}: no such file or directory")
    unique: list[Path] = []
    seen: set[Path] = set()
    for path in found:
        resolved = path.resolve()
        if resolved not in seen:
            seen.add(resolved)
            unique.append(path)
    return unique
