"""`include "path"`: shared design lines, each keeping its own file and line (issue 15)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from checker.errors import InputError
from model.lang.parser import MAX_INCLUDE_DEPTH, parse_design


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


MAIN = """\
    design inc "include test"
    cpus 1
    include "shared/defs.inc"
    stack kstack size 0x1000
    cpu 0 start main cpl 0 rsp top(kstack)
    main:
            movq $VALUE, %rax
            NOPS
            hlt
    """


def test_included_lines_take_part_and_keep_their_locations(tmp_path: Path) -> None:
    write(tmp_path / "shared/defs.inc", """\
        // shared definitions
        #define VALUE 7
        .macro NOPS
                nop
                nop
        .endm
        """)
    d = parse_design(write(tmp_path / "main.design", MAIN))
    instrs = d.routines["main"].instrs
    assert [i.text for i in instrs][:4] == ["movq $7, %rax", "nop", "nop", "hlt"]
    # the macro body's lines are the included file's lines; the invocation is main's
    nop = instrs[1].loc
    assert Path(nop.file).name == "defs.inc" and nop.line == 4
    assert nop.via is not None and Path(nop.via.file).name == "main.design"
    assert nop.via.line == 8
    assert instrs[0].loc.line == 7 and Path(instrs[0].loc.file).name == "main.design"


def test_error_in_included_file_names_that_file(tmp_path: Path) -> None:
    write(tmp_path / "shared/defs.inc", "#define VALUE 7\nbogus_declaration 3\n")
    with pytest.raises(InputError) as e:
        parse_design(write(tmp_path / "main.design", MAIN))
    assert e.value.path is not None and e.value.path.endswith("shared/defs.inc")
    assert e.value.line == 2


def test_cpp_error_in_included_file_names_that_file(tmp_path: Path) -> None:
    write(tmp_path / "shared/defs.inc", "#define VALUE 7\n\n#ifdef X\n")
    with pytest.raises(InputError) as e:
        parse_design(write(tmp_path / "main.design", MAIN))
    assert e.value.path is not None and e.value.path.endswith("shared/defs.inc")
    assert e.value.line == 3 and "without #endif" in e.value.message


def test_knobs_and_conditionals_in_included_file(tmp_path: Path) -> None:
    write(tmp_path / "shared/defs.inc", """\
        knob flavour = a | b
        #define VALUE 1
        .if flavour == a
        .macro NOPS
                nop
        .endm
        .else
        .macro NOPS
                pause
        .endm
        .endif
        """)
    path = write(tmp_path / "main.design", MAIN)
    assert parse_design(path).routines["main"].instrs[1].text == "nop"
    assert parse_design(path, {"flavour": "b"}).routines["main"].instrs[1].text == "pause"


@pytest.mark.parametrize(
    ("files", "words"),
    [
        ({}, ("cannot include", "shared/defs.inc")),
        ({"shared/defs.inc": 'include "../main.design"\n'}, ("includes itself",)),
        ({"shared/defs.inc": 'include "defs.inc"\n'}, ("includes itself",)),
    ],
)
def test_include_errors_point_at_the_include_line(
    tmp_path: Path, files: dict[str, str], words: tuple[str, ...]
) -> None:
    for name, text in files.items():
        write(tmp_path / name, text)
    with pytest.raises(InputError) as e:
        parse_design(write(tmp_path / "main.design", MAIN))
    msg = str(e.value)
    assert all(w in msg for w in words), msg
    assert e.value.line is not None


def test_include_of_non_utf8_file(tmp_path: Path) -> None:
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared/defs.inc").write_bytes(b"#define VALUE 7\n\xff\xfe\n")
    with pytest.raises(InputError) as e:
        parse_design(write(tmp_path / "main.design", MAIN))
    assert "not UTF-8" in e.value.message
    assert e.value.path is not None and e.value.path.endswith("main.design")
    assert e.value.line == 3


def test_include_depth_is_bounded(tmp_path: Path) -> None:
    for k in range(MAX_INCLUDE_DEPTH + 2):
        write(tmp_path / f"f{k}.inc", f'include "f{k + 1}.inc"\n')
    main = write(tmp_path / "main.design", 'design deep\ninclude "f0.inc"\n')
    with pytest.raises(InputError) as e:
        parse_design(main)
    assert "nest more than" in e.value.message


def test_include_through_cli_reports_path_line(tmp_path: Path, capsys) -> None:
    from checker.cli import main

    write(tmp_path / "shared/defs.inc", "#define VALUE 7\n.macro NOPS\n.endm\nbogus 1\n")
    design = write(tmp_path / "main.design", MAIN)
    props = write(tmp_path / "p.toml", f"""\
        design = "{design}"
        [[property]]
        name = "p"
        kind = "always"
        expr = "true"
        expect = "holds"
        """)
    assert main([str(props)]) == 2
    err = capsys.readouterr().err
    assert "shared/defs.inc:4:" in err and "Traceback" not in err
