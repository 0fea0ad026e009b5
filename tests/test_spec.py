"""Property files: schema, merging, grouping, and errors that name the right line."""

from __future__ import annotations

import textwrap
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from toy_models import ToyProvider

from checker.errors import InputError
from checker.spec import (
    Locator,
    find_property_files,
    group_properties,
    load_group,
    parse_property_file,
    read_property_file,
)
from checker.verdict import Kind, Verdict

GOOD = """\
design = "mutex"
description = "Two processes and a lock"

[variant]
lock = "yes"

[environment]
rounds = 2

[[property]]
name = "mutual-exclusion"
kind = "always"
expr = "in_critical <= 1"
expect = "holds"

[[property]]
name = "no-lock"
description = "without the lock both may enter"
kind = "never"
expr = "in_critical == 2"
expect = "violated"
variant = { lock = "no" }

[[property]]
name = "three-rounds"
kind = "reachable"
expr = "done"
expect = "holds"
[property.environment]
rounds = 3

[[property]]
name = "no-deadlock"
kind = "deadlock_free"
expect = "holds"
"""


def parse(text: str, path: str = "p.toml"):  # type: ignore[no-untyped-def]
    return parse_property_file(textwrap.dedent(text), path)


def error_of(text: str) -> InputError:
    with pytest.raises(InputError) as err:
        parse(text)
    return err.value


def test_reads_the_schema_and_merges_file_level_settings() -> None:
    spec = parse(GOOD)
    assert spec.description == "Two processes and a lock"
    names = [p.name for p in spec.properties]
    assert names == ["mutual-exclusion", "no-lock", "three-rounds", "no-deadlock"]
    first, second, third, fourth = spec.properties
    assert first.kind is Kind.ALWAYS and first.expect is Verdict.HOLDS
    assert first.design == "mutex" and first.variant == {"lock": "yes"}
    assert first.environment == {"rounds": 2}
    assert first.line == 10
    assert second.variant == {"lock": "no"} and second.description.startswith("without")
    assert second.line == 16
    assert third.environment == {"rounds": 3} and third.variant == {"lock": "yes"}
    assert fourth.kind is Kind.DEADLOCK_FREE and fourth.expr is None
    assert second.line_of("variant.lock") == 22
    assert first.line_of("variant.lock") == 5
    assert third.line_of("environment.rounds") == 30
    assert first.line_of("environment.rounds") == 8
    assert first.line_of("design") == 1
    assert first.line_of("nonsense.key") == 10


def test_groups_by_merged_design_variant_environment() -> None:
    spec = parse(GOOD)
    groups = group_properties(spec.properties)
    assert [[p.name for p in g.properties] for g in groups] == [
        ["mutual-exclusion", "no-deadlock"], ["no-lock"], ["three-rounds"]
    ]
    assert groups[1].variant == {"lock": "no"}


def test_groups_ignore_key_order_and_span_files() -> None:
    a = parse('design = "counters"\nenvironment = { k = 2, n = 3 }\n'
              '[[property]]\nname = "a"\nkind = "always"\nexpr = "total >= 0"\nexpect = "holds"\n')
    b = parse('design = "counters"\nenvironment = { n = 3, k = 2 }\n'
              '[[property]]\nname = "b"\nkind = "always"\nexpr = "total >= 0"\nexpect = "holds"\n',
              "q.toml")
    groups = group_properties([*a.properties, *b.properties])
    assert len(groups) == 1 and len(groups[0].properties) == 2


def test_locator_handles_headers_dotted_inline_and_multiline_values() -> None:
    text = textwrap.dedent('''\
        design = "x"          # line 1
        variant.ist = "a"
        note = """
        [[property]]
        name = "not a key"
        """
        list = [
          ["not", "a"],
          [1]
        ]
        [[property]]
        name = "one"
        "quoted key" = 1
        [property.variant]
        lock = "no"
        [[ property ]]
        name = 'two'
        environment = { nmi = 1, mce = 2 }
        environment.extra = 5
        ''')
    loc = Locator(text)
    assert loc.line(("design",)) == 1
    assert loc.line(("variant",)) == 2
    assert loc.line(("variant", "ist")) == 2
    assert loc.line(("note",)) == 3
    assert loc.line(("list",)) == 7
    assert loc.line(("property",)) == 11
    assert loc.line(("property", 0)) == 11
    assert loc.line(("property", 0, "name")) == 12
    assert loc.line(("property", 0, "quoted key")) == 13
    assert loc.line(("property", 0, "variant")) == 14
    assert loc.line(("property", 0, "variant", "lock")) == 15
    assert loc.line(("property", 1)) == 16
    assert loc.line(("property", 1, "name")) == 17
    assert loc.line(("property", 1, "environment", "mce")) == 18
    assert loc.line(("property", 1, "environment", "extra")) == 19
    assert loc.line(("property", 5, "name")) == 11  # unknown index: nearest written prefix


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        # unknown keys
        ('design = "m"\ncolour = 1\n[[property]]\nname="a"\nkind="always"\nexpr="x"\n'
         'expect="holds"\n', 2, "unknown top-level key 'colour'"),
        ('design = "m"\n[[property]]\nname="a"\nkind="always"\nexprs="x"\nexpect="holds"\n',
         5, "unknown key 'exprs' in [[property]] (did you mean 'expr'?)"),
        # wrong types
        ('design = 3\n[[property]]\nname="a"\nkind="always"\nexpr="x"\nexpect="holds"\n',
         1, "'design' must be a string, not an integer"),
        ('design = "m"\n[[property]]\nname="a"\nkind="always"\nexpr=true\nexpect="holds"\n',
         5, "'expr' must be a string, not a boolean"),
        ('design = "m"\nvariant = { lock = 1 }\n[[property]]\nname="a"\nkind="always"\n'
         'expr="x"\nexpect="holds"\n', 2, "variant knob 'lock' must be a string"),
        ('design = "m"\n[[property]]\nname="a"\nkind="always"\nexpr="x"\nexpect="holds"\n'
         '[property.variant]\nlock = ["no"]\n', 8, "variant knob 'lock' must be a string"),
        ('design = "m"\nenvironment = 3\n[[property]]\nname="a"\nkind="always"\nexpr="x"\n'
         'expect="holds"\n', 2, "'environment' must be a table, not an integer"),
        ('design = "m"\nproperty = { name = "a" }\n', 2, "array of tables"),
        # missing keys
        ('design = "m"\n', 1, "no properties"),
        ('design = "m"\n\n[[property]]\nname="a"\nexpr="x"\nexpect="holds"\n',
         3, "missing the required key 'kind'"),
        ('design = "m"\n[[property]]\nname="a"\nkind="always"\nexpect="holds"\n',
         2, "needs an 'expr'"),
        ('[[property]]\nname="a"\nkind="always"\nexpr="x"\nexpect="holds"\n', 1, "no design"),
        # values
        ('design = "m"\n[[property]]\nname="A b"\nkind="always"\nexpr="x"\nexpect="holds"\n',
         3, "may use only a-z, 0-9 and '-'"),
        ('design = "m"\n[[property]]\nname="a"\nkind="sometimes"\nexpr="x"\nexpect="holds"\n',
         4, "unknown kind 'sometimes'"),
        ('design = "m"\n[[property]]\nname="a"\nkind="always"\nexpr="x"\nexpect="maybe"\n',
         6, "'expect' must be \"holds\" or \"violated\""),
        ('design = "m"\n[[property]]\nname="a"\nkind="deadlock_free"\nexpr="x"\n'
         'expect="holds"\n', 5, "takes no 'expr'"),
        ('design = "m"\n[[property]]\nname="a"\nkind="always"\nexpr="x"\nexpect="holds"\n'
         '[[property]]\nname="a"\nkind="always"\nexpr="y"\nexpect="holds"\n',
         8, "duplicate property name 'a' (first defined at line 2)"),
        # expressions
        ('design = "m"\n[[property]]\nname="a"\nkind="always"\n\nexpr="x ==== 1"\n'
         'expect="holds"\n', 6, "bad expression: syntax error"),
        ('design = "m"\n[[property]]\nname="a"\nkind="always"\nexpr="x and (lambda: 1)"\n'
         'expect="holds"\n', 5, "lambda is not allowed in a property expression (column 8)"),
        ('design = "m"\n[[property]]\nname="a"\nkind="always"\nexpr="().__class__"\n'
         'expect="holds"\n', 5, "attribute '__class__' is not allowed"),
        # TOML syntax
        ('design = "m"\n[[property]]\nname = "a\nkind="always"\n', 3, "TOML syntax error"),
        ('design = "m"\n\n\n[[property]\n', 4, "TOML syntax error"),
        ('design = "m"\ndesign = "n"\n', 2, "TOML syntax error"),
    ],
)
def test_errors_name_the_line(text: str, line: int, fragment: str) -> None:
    error = error_of(text)
    assert error.path == "p.toml"
    assert fragment in error.message
    assert error.line == line, (error.line, error.message)
    assert str(error).startswith(f"p.toml:{line}: ")


def test_toml_syntax_error_keeps_the_column_not_the_position_suffix() -> None:
    error = error_of('design = "m"\nx = = 1\n')
    assert error.line == 2
    assert "(at line" not in error.message
    assert "column" in error.message


def load_error(text: str, tmp_path: Path) -> InputError:
    path = tmp_path / "p.toml"
    path.write_text(textwrap.dedent(text))
    spec = read_property_file(path)
    with pytest.raises(InputError) as err:
        for group in group_properties(spec.properties):
            load_group(group, ToyProvider())
    return err.value


PROP = '[[property]]\nname = "a"\nkind = "always"\nexpr = "lock == 0"\nexpect = "holds"\n'


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ('design = "nope"\n' + PROP, 1, "unknown design 'nope'"),
        ('design = "mutex"\n' + PROP + 'design = "nope"\n', 7, "unknown design 'nope'"),
        ('design = "mutex"\n[variant]\nlock = "maybe"\n' + PROP, 3, "no value 'maybe'"),
        ('design = "mutex"\n[variant]\nlock = "yes"\nist = "x"\n' + PROP, 4, "no knob 'ist'"),
        ('design = "mutex"\n' + PROP + 'variant = { lock = "nah" }\n', 7, "no value 'nah'"),
        ('design = "mutex"\n[environment]\nrounds = 0\n' + PROP, 3, "'rounds' must be"),
        ('design = "mutex"\n' + PROP + '[property.environment]\nnmi = 2\n', 8,
         "no environment 'nmi'"),
        ('design = "mutex"\n' + PROP.replace("lock == 0", "lock == 0 and lcok"), 5,
         "unknown name 'lcok' (did you mean 'lock'?)"),
    ],
)
def test_model_errors_name_the_line(text: str, line: int, fragment: str, tmp_path: Path) -> None:
    error = load_error(text, tmp_path)
    assert fragment in error.message
    assert error.path == str(tmp_path / "p.toml")
    assert error.line == line, (error.line, error.message)


def test_design_file_errors_pass_through_unchanged(tmp_path: Path) -> None:
    error = load_error('design = "broken"\n' + PROP, tmp_path)
    assert (error.path, error.line) == ("designs/broken.S", 7)
    assert str(error) == "designs/broken.S:7: unknown instruction 'movq2'"


def test_unknown_name_column_is_reported(tmp_path: Path) -> None:
    error = load_error('design = "mutex"\n' + PROP.replace("lock == 0", "lock == 0 or bogus"),
                       tmp_path)
    assert "(column 14)" in error.message


def test_environment_is_passed_through_unvalidated(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text('design = "mutex"\n[environment]\nrounds = 3\n[environment.nested]\n'
                    'deep = [1, 2]\n' + PROP)
    spec = read_property_file(path)
    provider = ToyProvider()
    with pytest.raises(InputError) as err:
        load_group(group_properties(spec.properties)[0], provider)
    assert provider.loads == [("mutex", {}, {"rounds": 3, "nested": {"deep": [1, 2]}})]
    assert err.value.line == 4 and "no environment 'nested'" in err.value.message


def test_read_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read"):
        read_property_file(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b'design = "m"\nx = "\xff"\n')
    with pytest.raises(InputError) as err:
        read_property_file(bad)
    assert err.value.line == 2


def test_find_property_files_sorted_recursive(tmp_path: Path) -> None:
    for name in ("b.toml", "a.toml", "sub/c.toml", "sub/z/d.toml", "notes.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")
    found = find_property_files([str(tmp_path), str(tmp_path / "a.toml")])
    assert [p.relative_to(tmp_path).as_posix() for p in found] == [
        "a.toml", "b.toml", "sub/c.toml", "sub/z/d.toml"
    ]


# -- the locator against generated documents -------------------------------------------------

TRICKY_TEXT = st.sampled_from([
    "plain", '[[property]]', 'name = "x"', "a # not a comment", "[variant]", 'say "hi"',
    "x = [1,\n2]", "line one\n[[property]]\nname = 'y'",
])


@st.composite
def documents(draw: Any) -> tuple[str, dict[tuple[Any, ...], int]]:
    """A property file in varied TOML styles, with the line each key path is written on."""
    lines: list[str] = []
    where: dict[tuple[Any, ...], int] = {}

    def emit(text: str, *path: Any) -> None:
        if path:
            where[path] = len(lines) + 1
        lines.extend(text.split("\n"))

    def value(text: str) -> str:
        if "\n" in text or draw(st.booleans()):
            return '"""\n' + text.replace("\\", "\\\\").replace('"', '\\"') + '"""'
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'

    emit('design = "mutex"  # the design', "design")
    if draw(st.booleans()):
        emit("description = " + value(draw(TRICKY_TEXT)), "description")
    style = draw(st.sampled_from(["none", "table", "inline", "dotted"]))
    if style == "inline":
        emit('variant = { lock = "yes" }', "variant")
    elif style == "dotted":
        emit('variant.lock = "yes"', "variant", "lock")
    if draw(st.booleans()):
        emit("environment.notes = [\n  [\"[[property]]\"],\n  [1]\n]", "environment", "notes")
    if style == "table":
        emit("")
        emit("[variant]", "variant")
        emit('"lock" = "yes"', "variant", "lock")
    count = draw(st.integers(min_value=1, max_value=4))
    for index in range(count):
        emit("")
        emit("[[ property ]]" if draw(st.booleans()) else "[[property]]", "property", index)
        keys = draw(st.permutations(["name", "kind", "expr", "expect", "description"]))
        for key in keys:
            text = {"name": f"p{index}", "kind": "always", "expr": "lock == 0",
                    "expect": "holds"}.get(key) or draw(TRICKY_TEXT)
            emit(f"{key} = {value(text)}", "property", index, key)
        own = draw(st.sampled_from(["none", "inline", "table"]))
        if own == "inline":
            emit('variant = { lock = "no" }', "property", index, "variant")
        elif own == "table":
            emit("[property.variant]", "property", index, "variant")
            emit("lock = 'no'", "property", index, "variant", "lock")
    return "\n".join(lines) + "\n", where


@settings(max_examples=200, deadline=None)
@given(documents())
def test_locator_finds_every_written_key(doc: tuple[str, dict[tuple[Any, ...], int]]) -> None:
    text, where = doc
    tomllib.loads(text)  # the generator writes valid TOML
    locator = Locator(text)
    for path, line in where.items():
        assert locator.line(path) == line, (path, text)
    spec = parse_property_file(text, "g.toml")
    for index, prop in enumerate(spec.properties):
        assert prop.line == where[("property", index)]
