"""Command-line conventions (issue 15): --version, --list, shell completion, a
[tool.irq-checker] table (or checker.toml) for defaults, the program's own name in its
help, a clear error for a design passed as a property file, --color."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from gate_helpers import MUTEX, write
from toy_models import ToyProvider

from checker import cli

ROOT = Path(__file__).resolve().parent.parent

def test_version(capsys: Any) -> None:
    with pytest.raises(SystemExit) as stop:
        cli.main(["--version"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("irq-checker ") and len(out.split()) >= 2


def test_list_text_and_json(tmp_path: Path, capsys: Any) -> None:
    path = write(tmp_path, "m.toml", MUTEX)
    assert cli.main([str(path), "--list"], ToyProvider()) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == [f"{path}:3", "exclusion", "mutex", "always", "expect", "holds", "-"]
    assert out[1].split() == [f"{path}:9", "no-lock", "mutex", "always", "expect", "violated",
                              "lock=no"]
    assert out[2] == "2 properties in 1 file"
    assert cli.main([str(path), "--list", "--format", "json", "--property", "no-*"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["properties"] == [{
        "file": str(path), "line": 9, "name": "no-lock", "design": "mutex",
        "variant": {"lock": "no"}, "environment": {}, "kind": "always",
        "expr": "in_critical <= 1", "expect": "violated", "description": "",
    }]


def test_list_needs_no_model_and_explores_nothing(tmp_path: Path, capsys: Any) -> None:
    path = write(tmp_path, "m.toml", MUTEX)
    provider = ToyProvider()
    assert cli.main([str(path), "--list", "--model", "no_such_model:x"], provider) == 0
    assert provider.loads == []


def test_a_design_file_where_a_property_file_belongs(tmp_path: Path, capsys: Any) -> None:
    design = tmp_path / "entry.design"
    design.write_text("[[[ not toml\n")
    code = cli.main([str(design)], ToyProvider())
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(f"{design}: this is a design file, not a property file")
    assert "TOML" not in err and "lint" in err


def test_the_help_names_the_program_as_it_was_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["/usr/local/bin/irq-checker"])
    assert cli.build_parser().format_usage().startswith("usage: irq-checker ")
    assert "`irq-checker replay TRACE`" in cli.build_parser().format_help()
    monkeypatch.setattr(sys, "argv", ["/x/checker/__main__.py"])
    assert cli.build_parser().format_usage().startswith("usage: python -m checker ")


def test_the_console_script_is_declared_and_documented() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'irq-checker = "checker.cli:entry_point"' in pyproject
    readme = (ROOT / "README.md").read_text()
    assert "irq-checker properties/" in readme and "irq-checker completion bash" in readme


def test_bash_completion_script(tmp_path: Path, capsys: Any) -> None:
    assert cli.main(["completion", "bash"]) == 0
    script = capsys.readouterr().out
    assert "complete -o filenames -F _irq_checker irq-checker" in script
    for option in ("--max-memory", "--exitfirst", "--timeout-per-exploration", "--list"):
        assert option in script
    assert "--color) COMPREPLY=($(compgen -W 'auto always never'" in script
    assert "replay lint completion" in script
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash")
    path = tmp_path / "c.sh"
    path.write_text(script)
    # it parses, and completes an option and a choice
    probe = f"""source {path}
COMP_WORDS=(irq-checker --max-mem); COMP_CWORD=1; _irq_checker; echo "${{COMPREPLY[@]}}"
COMP_WORDS=(irq-checker --color al); COMP_CWORD=2; _irq_checker; echo "${{COMPREPLY[@]}}"
"""
    done = subprocess.run([bash, "-c", probe], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["--max-memory", "always"]
    assert cli.main(["completion", "zsh"]) == 0
    assert capsys.readouterr().out.startswith("autoload -U +X bashcompinit")


def test_defaults_from_a_pyproject_table(tmp_path: Path, capsys: Any,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "props/m.toml", MUTEX)
    write(tmp_path, "pyproject.toml", """\
        [project]
        name = "hypervisor"

        [tool.irq-checker]
        paths = ["props/"]
        max-states = 3
        report-dir = "out/"
        format = "json"
        """)
    (tmp_path / "deep" / "er").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "deep" / "er")  # found in a folder above
    code = cli.main([], ToyProvider())
    data = json.loads(capsys.readouterr().out)
    assert code == 3
    assert [r["file"] for r in data["results"]] == ["../../props/m.toml"] * 2
    assert all("max_states=3" in r["message"] for r in data["results"])
    # the command line wins
    code = cli.main(["--max-states", "1000", "--format", "text"], ToyProvider())
    assert code == 0 and "2 properties: 2 as expected" in capsys.readouterr().out
    assert list((tmp_path / "out").rglob("no-lock.json"))  # report-dir, relative to the file


def test_checker_toml_and_config_option(tmp_path: Path, capsys: Any,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "props/m.toml", MUTEX)
    write(tmp_path, "checker.toml", 'paths = "props/"\nproperty = ["no-*"]\nquiet = true\n')
    monkeypatch.chdir(tmp_path)
    assert cli.main([], ToyProvider()) == 0
    out = capsys.readouterr().out
    assert "1 property: 1 as expected" in out
    other = write(tmp_path, "elsewhere.toml", '[tool.irq-checker]\nproperty = "excl*"\n'
                  'paths = ["props/"]\n')
    assert cli.main(["--config", str(other)], ToyProvider()) == 0
    assert "exclusion" in capsys.readouterr().out


@pytest.mark.parametrize(("text", "line", "fragment"), [
    ("max-statez = 3\n", 1, "unknown setting 'max-statez' (did you mean 'max-states'?)"),
    ("\nhtml = 1\n", 2, "'html' must be true or false"),
    ("max-states = -1\n", 1, "'max-states': must be >= 0"),
    ("color = \"pink\"\n", 1, "'color' must be one of auto, always, never"),
    ("paths = [1]\n", 1, "'paths' must be a string or an array of strings"),
    ("version = true\n", 1, "unknown setting 'version'"),
    ("= broken\n", 1, "TOML syntax error"),
])
def test_a_bad_setting_is_an_error_at_its_line(
    text: str, line: int, fragment: str, tmp_path: Path, capsys: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    write(tmp_path, "checker.toml", text)
    monkeypatch.chdir(tmp_path)
    assert cli.main([], ToyProvider()) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"checker.toml:{line}: "), err
    assert fragment in err


def test_a_pyproject_without_the_table_is_passed_over(tmp_path: Path, capsys: Any,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "properties/m.toml", MUTEX)
    write(tmp_path, "pyproject.toml", '[project]\nname = "x"\n[tool.other]\nx = 1\n')
    monkeypatch.chdir(tmp_path)
    assert cli.main(["--report-dir", "r"], ToyProvider()) == 0


def test_color(tmp_path: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "m.toml", MUTEX.replace('expect = "violated"', 'expect = "holds"'))
    args = [str(path), "--report-dir", str(tmp_path / "r")]
    cli.main([*args, "--color", "always"], ToyProvider())
    out, err = capsys.readouterr()
    assert "  \033[32mok\033[0m " in out and "  \033[31;1mFAIL\033[0m " in out
    assert "\033[31;1mFAIL\033[0m " in err  # the closing summary
    cli.main([*args, "--color", "never"], ToyProvider())
    out, err = capsys.readouterr()
    assert "\033[" not in out + err
    cli.main(args, ToyProvider())  # auto: captured output is no terminal
    out, err = capsys.readouterr()
    assert "\033[" not in out + err
    monkeypatch.setenv("FORCE_COLOR", "1")
    cli.main(args, ToyProvider())
    assert "\033[32mok" in capsys.readouterr().out
    monkeypatch.setenv("NO_COLOR", "1")
    cli.main(args, ToyProvider())
    assert "\033[" not in capsys.readouterr().out
