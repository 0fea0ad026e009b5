"""Isolation (issue 15): an error in one property, found while loading or in some later
state, gives that property the `error` verdict, is reported as `path:line: property NAME:
message`, and every other property still runs and is reported in every format."""

from __future__ import annotations

import json
import textwrap
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from gate_helpers import write
from toy_models import Mutex, ToyProvider

from checker import cli
from checker.errors import InputError
from checker.expr import ExprError, compile_expr
from checker.fields import ListShape, RecordShape, check_fields
from checker.interface import capabilities
from checker.run import plan, read_files

ROOT = Path(__file__).resolve().parent.parent

# `[1][total]` fails once total reaches 1, i.e. only after the initial state.
LATE = """\
design = "counters"
environment = { k = 2, n = 2 }

[[property]]
name = "late-failure"
kind = "always"
expr = "[1][total] == 1"
expect = "holds"

[[property]]
name = "bounded"
kind = "always"
expr = "total <= 4"
expect = "holds"
"""

XEN_ENTRY = """\
design = "xen_entry"
[variant]
ist = "xen"
entry = "syscall"
sysret_check = "checked"
ist_copy = "copy"
[environment]
quiet_without_idt = true

"""

OTHER = """\
design = "mutex"

[[property]]
name = "exclusion"
kind = "always"
expr = "in_critical <= 1"
expect = "holds"

[[property]]
name = "typo"
kind = "always"
expr = "lockk == 0"
expect = "holds"
"""


def test_errors_cost_only_their_own_property_in_every_format(tmp_path: Path,
                                                              capsys: Any) -> None:
    late = write(tmp_path, "p/late.toml", LATE)
    other = write(tmp_path, "p/other.toml", OTHER)
    reports = tmp_path / "reports"
    code = cli.main([str(tmp_path / "p"), "--report-dir", str(reports), "--format", "json",
                     "--html", "--junit", str(tmp_path / "j.xml"),
                     "--sarif", str(tmp_path / "s.sarif")], ToyProvider())
    out, err = capsys.readouterr()
    assert code == 2
    # stderr: `path:line: property NAME: message`, at run time and at load time
    assert (f"{late}:4: property 'late-failure': the expression failed: [1][total]: no "
            "element 1") in err
    assert f"{other}:12: property 'typo': bad expression: unknown name 'lockk'" in err
    assert "Traceback" not in err
    verdicts = {r["name"]: r["verdict"] for r in json.loads(out)["results"]}
    assert verdicts == {"late-failure": "error", "bounded": "holds", "exclusion": "holds",
                        "typo": "error"}
    cases = {c.get("name"): c for c in ET.parse(tmp_path / "j.xml").getroot().iter("testcase")}
    assert set(cases) == set(verdicts)
    assert cases["late-failure"].find("error") is not None
    assert cases["typo"].find("error") is not None
    assert cases["bounded"].find("error") is None and cases["bounded"].find("failure") is None
    sarif = json.loads((tmp_path / "s.sarif").read_text())
    flagged = {r["message"]["text"].split("'")[1] for r in sarif["runs"][0]["results"]}
    assert {"late-failure", "typo"} <= flagged
    page = (reports / "index.html").read_text()
    assert all(name in page for name in verdicts)
    # the text report too
    code = cli.main([str(tmp_path / "p"), "--report-dir", str(reports)], ToyProvider())
    text = capsys.readouterr().out
    assert "4 properties: 2 as expected, 2 errors" in text


def test_a_model_error_in_one_group_leaves_the_others(tmp_path: Path, capsys: Any) -> None:
    write(tmp_path, "p/a.toml", 'design = "faulty"\n[[property]]\nname="a"\n'
          'kind="always"\nexpr="total >= 0"\nexpect="holds"\n')
    write(tmp_path, "p/b.toml", OTHER.replace("lockk == 0", "lock >= 0"))
    code = cli.main([str(tmp_path / "p"), "--report-dir", str(tmp_path / "r")], ToyProvider())
    out, err = capsys.readouterr()
    assert code == 2
    assert "the model raised RuntimeError: model bug" in err
    assert "3 properties: 2 as expected, 1 error" in out


def test_a_load_error_is_printed_once_with_the_properties_it_costs(tmp_path: Path,
                                                                   capsys: Any) -> None:
    # two groups (different environments) load the broken design
    text = ('design = "broken"\n[[property]]\nname="a"\nkind="deadlock_free"\nexpect="holds"\n'
            '[[property]]\nname="b"\nkind="deadlock_free"\nexpect="holds"\n'
            'environment = { x = 1 }\n')
    write(tmp_path, "p/a.toml", text)
    write(tmp_path, "p/b.toml", OTHER.replace("lockk == 0", "lock >= 0"))
    code = cli.main([str(tmp_path / "p"), "--report-dir", str(tmp_path / "r")], ToyProvider())
    out, err = capsys.readouterr()
    assert code == 2
    assert err.count("unknown instruction 'movq2'") == 1
    assert "designs/broken.S:7: unknown instruction 'movq2' (properties 'a', 'b')" in err
    assert "4 properties: 2 as expected, 2 errors" in out


class Described(Mutex):
    """The mutex toy, saying which fields its `procs` records have (`Typed`)."""

    def vocabulary_shapes(self) -> Mapping[str, Any]:
        proc = RecordShape("proc", (("id", None), ("critical", None), ("left", None)))
        return {"procs": ListShape(proc)}


class DescribedProvider(ToyProvider):
    def load(self, design: str, variant: Mapping[str, str], environment: Mapping[str, Any]) -> Any:
        system = super().load(design, variant, environment)
        return Described(**vars(system)) if isinstance(system, Mutex) else system


@pytest.mark.parametrize(("expr", "column"), [
    ("all(p.crit for p in procs)", 7),  # the column of the missing field
    ("procs[1].lft == 0", 10),
    ("any(p.id == 1 and not p.critcal for p in procs[1:] if p.left)", 25),
    ("count(q.critical for p in procs for q in [p]) <= 1", 0),  # two fors: refused anyway
])
def test_a_missing_record_field_is_a_load_time_error(
    expr: str, column: int, tmp_path: Path
) -> None:
    path = write(tmp_path, "f.toml", f'design = "mutex"\n[[property]]\nname="a"\n'
                 f'kind="always"\nexpr="{expr}"\nexpect="holds"\n')
    files, errors = read_files([path])
    if column == 0:
        assert errors and "only one 'for'" in str(errors[0])
        return
    assert not errors
    prepared, errors = plan(files, DescribedProvider())
    assert len(errors) == 1 and not prepared.groups
    error = errors[0]
    assert (error.path, error.line) == (str(path), 5)
    assert "a proc record has no field" in error.message
    assert f"(column {column})" in error.message
    assert "did you mean" in error.message


def test_fields_that_exist_or_cannot_be_known_pass() -> None:
    proc = RecordShape("proc", (("id", None), ("critical", None), ("left", None)))
    shapes: dict[str, Any] = {"procs": ListShape(proc)}
    for text in ("all(p.critical for p in procs)", "procs[0].left >= 0",
                 "all(x.anything for x in other)", "sum(p.left for p in procs) >= 0"):
        check_fields(compile_expr(text), shapes)
    # a name bound again by an inner generator is not the outer record
    check_fields(compile_expr("all(any(p.whatever for p in stuff) for p in procs)"), shapes)
    with pytest.raises(ExprError):
        check_fields(compile_expr("all(any(p.x for q in stuff) for p in procs)"), shapes)


def test_the_model_declares_the_fields_its_records_have() -> None:
    """The fields the checker accepts are exactly those the vocabulary hands out."""
    from model import provider

    system = provider().load("xen_entry", {"ist": "xen", "entry": "syscall",
                                           "sysret_check": "checked", "ist_copy": "copy"},
                             {"quiet_without_idt": True})
    typed = capabilities(system).typed
    assert typed is not None
    shapes = typed.vocabulary_shapes()
    declared = {
        name: {f for f, _ in shapes[name].item.fields} for name in ("cpus", "cpu", "frames")
    }
    # walk until a state with a frame, and compare every record's keys
    state = system.init_states()[0]
    seen_frame = False
    for _ in range(2000):
        vocab = system.vocabulary(state)
        for name in declared:
            for record in vocab[name]:
                assert set(record) == set(declared[name]), name
                seen_frame |= name == "frames"
        if seen_frame:
            break
        actions = system.actions(state)
        if not actions:
            break
        state = system.next_state(state, actions[-1])
    assert seen_frame


def test_the_reported_c_halt_typo_is_refused_before_exploring(tmp_path: Path) -> None:
    """The issue's example: `all(c.halt for c in cpus)` failed only in a later state."""
    from model import provider

    path = write(tmp_path, "typo.toml", XEN_ENTRY + textwrap.dedent("""\
        [[property]]
        name = "typo"
        kind = "always"
        expr = "all(c.halt for c in cpus) or True"
        expect = "holds"
        """))
    files, errors = read_files([path])
    assert not errors
    prepared, errors = plan(files, provider())
    assert len(errors) == 1 and isinstance(errors[0], InputError)
    assert "a CPU record has no field 'halt' (did you mean 'halted'?)" in str(
        errors[0])
    assert [f.group.properties[0].name for f in prepared.failed] == ["typo"]


def test_a_run_time_error_with_a_trace_keeps_the_others(tmp_path: Path, capsys: Any) -> None:
    """A failure found in a later state of the real model (which draws witnesses): the
    property's error and its path, the other property's verdict, no escape."""
    path = write(tmp_path, "late.toml", XEN_ENTRY + textwrap.dedent("""\
        [[property]]
        name = "late-failure"
        kind = "always"
        expr = "[1][len(frames)] == 1"
        expect = "holds"

        [[property]]
        name = "clobber"
        kind = "reachable"
        expr = "len(frames) > 0"
        expect = "holds"
        """))
    code = cli.main([str(path), "--report-dir", str(tmp_path / "r"), "--format", "json"])
    out, err = capsys.readouterr()
    assert code == 2, err
    results = {r["name"]: r for r in json.loads(out)["results"]}
    assert results["late-failure"]["verdict"] == "error"
    assert results["late-failure"]["trace_length"] > 0
    assert results["clobber"]["verdict"] == "holds"
    assert f"{path}:" in err and "property 'late-failure': the expression failed" in err
