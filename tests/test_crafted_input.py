"""Crafted input never gives a traceback (issue 13, must-have 5): deep nesting, huge
integers, non-UTF-8 bytes and oversized names in property files, designs and `replay`
trace files are `path:line: message` on stderr with exit code 2, and the message says
what went wrong, at the right file. Also the misleading messages the issue lists, and
`replay` judging a symbolic property by the explorer's rules (never `bool(Term)`).
"""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest

from checker import cli

GOOD_PROPERTY = """\
[[property]]
name = "p"
kind = "never"
expr = "any_shutdown"
expect = "holds"
"""

DESIGN = """\
design t "a small design"
cpus 1
stack kstack size 0x1000 per-cpu
var x = 0
cpu 0 start main cpl 0 rsp top(kstack)
function main {
    x = 1;
    stop();
}
"""


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli.main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def check(tmp_path: Path, capsys: pytest.CaptureFixture[str], prop: Path) -> tuple[int, str]:
    code, _, err = run(capsys, str(prop), "--report-dir", str(tmp_path / "r"), "--workers", "1")
    return code, err


def one_error(err: str, code: int, path: Path, line: int | None, *words: str) -> str:
    """Exactly one `path:line: message` line about `path`, exit 2, no traceback."""
    assert code == 2, err
    assert "Traceback" not in err
    # the closing summary (`== N unexpected or error`, then `ERROR file:line name`) names
    # the property again; the message itself is one line
    lines = [
        x for x in err.strip().splitlines()
        if x.strip() and not x.startswith("== ") and not re.match(r"[A-Z]+ \S+:\d+ ", x)
    ]
    assert len(lines) == 1, err
    m = re.fullmatch(r"(.+?):(\d+): (.+)", lines[0])
    assert m is not None, err
    assert Path(m.group(1)).resolve() == path.resolve(), err
    if line is not None:
        assert int(m.group(2)) == line, err
    for w in words:
        assert w in m.group(3), err
    return m.group(3)


# -- property files ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ('design = "xen_ist"\nx = ' + "[" * 5000 + "]" * 5000 + "\n", 2, ("too deeply",)),
        ('design = "xen_ist"\n' + GOOD_PROPERTY + "environment = { x = " + "[" * 100
         + "]" * 100 + " }\n", 7, ("nest more than",)),
        ('design = "xen_ist"\n[environment]\nnmi = ' + "9" * 4301 + "\n" + GOOD_PROPERTY, 3,
         ("4300 digits",)),
        ('design = "xen_ist"\n' + GOOD_PROPERTY.replace('"p"', '"' + "p" * 300 + '"'), 3,
         ("longer than 100 characters",)),
        ('design = "' + "a" * 2000 + '"\n' + GOOD_PROPERTY, 1, ("longer than",)),
        ('design = "./' + "a" * 300 + '.design"\n' + GOOD_PROPERTY, 1, ("no design file",)),
        ('design = "' + "a" * 300 + '"\n' + GOOD_PROPERTY, 1, ("unknown design",)),
        ('design = "xen_ist"\n' + GOOD_PROPERTY.replace("any_shutdown", "x == " + "9" * 5000),
         5, ("bad expression",)),
    ],
    ids=["deep-toml", "deep-value", "huge-int", "long-name", "very-long-design",
         "long-design-path", "long-design-name", "huge-literal"],
)
def test_crafted_property_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, line: int,
    words: tuple[str, ...],
) -> None:
    prop = tmp_path / "p.toml"
    prop.write_text(text)
    code, err = check(tmp_path, capsys, prop)
    one_error(err, code, prop, line, *words)


def test_a_non_utf8_property_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prop = tmp_path / "p.toml"
    prop.write_bytes(b'design = "xen_ist"\n# caf\xe9\n' + GOOD_PROPERTY.encode())
    code, err = check(tmp_path, capsys, prop)
    one_error(err, code, prop, 2, "not valid UTF-8")


# -- designs ---------------------------------------------------------------------------------------


def design_case(tmp_path: Path, design: bytes | str) -> tuple[Path, Path]:
    path = tmp_path / "t.design"
    if isinstance(design, str):
        path.write_text(design)
    else:
        path.write_bytes(design)
    prop = tmp_path / "p.toml"
    prop.write_text('design = "./t.design"\n' + GOOD_PROPERTY)
    return path, prop


def test_a_non_utf8_design_is_blamed_on_the_design(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    design, prop = design_case(tmp_path, DESIGN.encode().replace(b"a small", b"a sm\xffall"))
    code, err = check(tmp_path, capsys, prop)
    one_error(err, code, design, 1, "design file is not valid UTF-8")


@pytest.mark.parametrize(
    ("line_text", "words"),
    [
        ("const X = 1 << 0xffffffffffffffff", ("shift count", "64 or more")),
        ("var big = 0x1ffffffffffffffff", ("does not fit in 64 bits",)),
        ("idt t limit 0xffffffffffffffff\nend", ("limit", "0-256")),
        ("cpu 5 start main", ("cpu 5", "1 CPU")),
        ("const Y = " + "9" * 5000, ("Exceeds the limit",)),
    ],
    ids=["huge-shift", "65-bit-var", "idt-limit", "cpu-5-of-1", "huge-literal"],
)
def test_design_values_out_of_range_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], line_text: str, words: tuple[str, ...]
) -> None:
    lines = DESIGN.splitlines()
    text = "\n".join([*lines[:4], line_text, *lines[4:]]) + "\n"
    design, prop = design_case(tmp_path, text)
    code, err = check(tmp_path, capsys, prop)
    message = one_error(err, code, design, 5, *words)
    assert "nested" not in message and len(message) < 400


def test_cpu_lines_for_cpus_the_run_adds_are_fine(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`cpu 1` in a `cpus 1` design names a CPU a property file may add."""
    text = DESIGN.replace("cpu 0 start main", "cpu 1 start main cpl 0 rsp top(kstack)\n"
                          "cpu 0 start main")
    _, prop = design_case(tmp_path, text)
    prop.write_text('design = "./t.design"\nenvironment = { cpus = 2 }\n' + GOOD_PROPERTY)
    code, err = check(tmp_path, capsys, prop)
    assert code == 0, err


def test_frames_on_without_its_argument_is_a_load_time_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prop = tmp_path / "p.toml"
    prop.write_text('design = "xen_ist"\n' + GOOD_PROPERTY.replace("any_shutdown",
                                                                 "frames_on() > 1"))
    code, err = check(tmp_path, capsys, prop)
    one_error(err, code, prop, 5, "frames_on(stack)", "missing a required argument")


def test_calling_a_value_that_is_not_a_function_is_a_load_time_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prop = tmp_path / "p.toml"
    prop.write_text('design = "xen_ist"\n' + GOOD_PROPERTY.replace("any_shutdown",
                                                                 "any_shutdown(1)"))
    code, err = check(tmp_path, capsys, prop)
    one_error(err, code, prop, 5, "'any_shutdown' is not a function")


# -- replay files ------------------------------------------------------------------------------

RECORD = {
    "format": 1, "property": "p", "file": "p.toml", "line": 1, "design": "xen_ist",
    "variant": {}, "environment": {}, "kind": "never", "expr": "any_shutdown",
    "expected": "holds", "verdict": "violated", "init": 0, "steps": [],
}


def replay_file(tmp_path: Path, content: bytes | str | dict[str, object]) -> Path:
    path = tmp_path / "trace.json"
    if isinstance(content, dict):
        path.write_text(json.dumps({"replay": content}, indent=2))
    elif isinstance(content, str):
        path.write_text(content)
    else:
        path.write_bytes(content)
    return path


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ('{"replay": ' + "[" * 100000 + "]" * 100000 + "}", ("nested too deeply",)),
        (json.dumps({"replay": RECORD}).replace('"init": 0', '"init": ' + "9" * 5000),
         ("4300 digits",)),
        ({**RECORD, "design": "a" * 300}, ("unknown design",)),
        ({**RECORD, "design": "./" + "a" * 300 + ".design"}, ("no design file",)),
        ({**RECORD, "design": "a" * 10000}, ("longer than",)),
        ({**RECORD, "steps": [{"choice": "x"}]}, ("step 1", "malformed")),
        ({**RECORD, "environment": {"nmi": [[[[]]]]}}, ("environment.nmi",)),
        ({**RECORD, "init": True, "kind": "sometimes"}, ("unknown property kind",)),
        (b'{"replay": "\xff"}', ("not valid UTF-8",)),
        ('{"replay": ', ("not a JSON trace file",)),
    ],
    ids=["deep", "huge-int", "long-name", "long-path", "very-long-name", "bad-step",
         "bad-environment", "bad-kind", "non-utf8", "truncated"],
)
def test_crafted_replay_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes | str | dict[str, object],
    words: tuple[str, ...],
) -> None:
    trace = replay_file(tmp_path, content)
    code, _, err = run(capsys, "replay", str(trace))
    one_error(err, code, trace, None, *words)


def test_a_replayed_non_utf8_design_is_blamed_on_the_design(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    design = tmp_path / "t.design"
    design.write_bytes(DESIGN.encode().replace(b"a small", b"a sm\xffall"))
    trace = replay_file(tmp_path, {**RECORD, "design": str(design)})
    code, _, err = run(capsys, "replay", str(trace))
    one_error(err, code, design, 1, "not valid UTF-8")


# -- replay judges symbolic values by the explorer's rules ------------------------------------

SYMBOLIC = """\
design s "a symbolic input"
cpus 1
stack kstack size 0x1000 per-cpu
var x = 0
input v = 0..10
cpu 0 start main cpl 0 rsp top(kstack)
function main {
    input(x, v);
    stop();
}
"""


def test_replay_decides_a_symbolic_property_with_the_solver(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "s.design").write_text(SYMBOLIC)
    prop = tmp_path / "p.toml"
    prop.write_text(textwrap.dedent("""\
        design = "./s.design"
        environment = { symbolic = ["v"] }
        [[property]]
        name = "p"
        kind = "never"
        expr = "x == 5"
        expect = "violated"
        """))
    code, err = check(tmp_path, capsys, prop)
    assert code == 0, err
    [trace] = (tmp_path / "r").rglob("p.json")
    record = json.loads(trace.read_text())
    code, out, err = run(capsys, "replay", str(trace))
    assert code == 0, out + err  # x == 5 is possible: the trace reproduces
    # x can never be 20 (its range is 0..10): bool(Term) would call the term true
    for expr, kind in (("x == 20", "never"), ("x <= 10", "always"), ("x == 20", "reachable")):
        record["replay"]["expr"], record["replay"]["kind"] = expr, kind
        trace.write_text(json.dumps(record))
        code, out, err = run(capsys, "replay", str(trace))
        assert code == 1, (expr, kind, out + err)
        assert "no longer reproduces" in out
