"""The instruction table (model/lang/isa.py): every entry is complete, and the parser, the
interpreter's dispatch, POR and the reference in docs/design-language.md all come from it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from model.lang import isa, parser
from model.lang.ir import Call, Const, Instr, Loc, Mem, Reg, Var
from model.system import interp

ROOT = Path(__file__).resolve().parent.parent
DOC = (ROOT / "docs" / "design-language.md").read_text()


@pytest.mark.parametrize("entry", isa.ASM + isa.DERIVED, ids=lambda e: e.op)
def test_every_instruction_entry_is_complete(entry: isa.Insn) -> None:
    assert entry.op and entry.semantics and entry.doc.strip()
    assert entry.mnemonics or entry.spellings or entry in isa.DERIVED
    assert set(entry.sizes) <= set("bwlq")
    assert entry.forms and all(set(f) <= set(isa.KINDS) for f in entry.forms)
    assert entry.reads and entry.writes, "the read and write sets POR needs"
    assert entry.reads <= isa.EFFECTS and entry.writes <= isa.EFFECTS
    assert isinstance(entry.flags_read, int) and isinstance(entry.flags_written, int)
    assert hasattr(interp.Interpreter, f"_i_{entry.semantics}"), "its semantics"


@pytest.mark.parametrize("entry", isa.BUILTIN_TABLE, ids=lambda b: b.op)
def test_every_builtin_entry_is_complete(entry: isa.Builtin) -> None:
    assert entry.op.startswith("c.") and entry.doc.strip()
    assert entry.reads and entry.writes
    assert entry.reads <= isa.EFFECTS and entry.writes <= isa.EFFECTS
    assert hasattr(interp.Interpreter, f"_i_{entry.semantics}")


def test_an_entry_without_a_handler_stops_the_interpreter() -> None:
    class Incomplete:
        pass

    with pytest.raises(NotImplementedError, match="no handler"):
        interp.handlers_of(Incomplete())


def test_the_parser_recognises_exactly_the_table() -> None:
    assert parser._MNEMONICS is isa.MNEMONICS
    for entry in isa.ASM:
        for m in entry.mnemonics:
            assert m in parser._MNEMONICS
            for suffix in entry.sizes:
                assert m + suffix in parser._MNEMONICS
        for spelling in entry.spellings:
            assert parser._MNEMONICS[spelling][0] is entry
    assert parser.BUILTINS == isa.BUILTINS


def test_the_interpreter_has_no_if_chain_over_op_names() -> None:
    """Dispatch is the table's: `_execute` calls the site's handler and compares no op."""
    tree = ast.parse((ROOT / "model" / "system" / "interp.py").read_text())
    execute = next(
        n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "_execute"
    )
    compares = [ast.unparse(n) for n in ast.walk(execute) if isinstance(n, ast.Compare)]
    assert not any("op" in c for c in compares), compares
    assert "site.handler(" in ast.unparse(execute)


def test_the_reference_table_is_generated_from_the_table() -> None:
    begin, end = "<!-- isa-table:begin -->\n", "\n<!-- isa-table:end -->"
    section = DOC[DOC.index(begin) + len(begin) : DOC.index(end)]
    assert section == isa.reference_markdown(), (
        "docs/design-language.md is stale: paste `python -m model.lang.isa` between the markers"
    )


def test_every_spelling_is_in_the_reference() -> None:
    cells = [
        line.split("|")[1] for line in isa.reference_markdown().splitlines()[2:]
    ]
    words = {w for cell in cells for w in re.findall(r"[a-z][a-z0-9]*", cell.split("(")[0])}
    for entry in isa.ASM:
        assert set(entry.mnemonics) | set(entry.spellings) <= words


def _instr(op: str, *args: object, **kw: object) -> Instr:
    return Instr(op, tuple(args), Loc("t", 1), op, **kw)  # type: ignore[arg-type]


def test_effects_follow_the_operands() -> None:
    stack = Mem("rsp", 8)
    other = Mem("rdi", 8)
    assert isa.effects(_instr("mov", Reg("rax"), stack)) <= isa.LOCAL_EFFECTS
    assert isa.MEMORY in isa.effects(_instr("mov", Reg("rax"), other))
    assert isa.PERCPU in isa.effects(_instr("mov", Mem(None, 0, seg="gs", sym=Var("x")),
                                            Reg("rax")))
    assert isa.VARS in isa.effects(_instr("mov", Reg("rax"), Mem(None, 0, sym=Var("v"))))
    assert isa.MEMORY in isa.effects(_instr("c.branch_false", Call("mem", (Const(8),))))
    assert isa.GLOBAL in isa.effects(_instr("syscall"))
    assert isa.OTHER_CPU in isa.effects(_instr("c.send_nmi", Var("ALL")))
    assert isa.effects(_instr("no-such-op")) == isa.EFFECTS  # unknown: everything


def test_layering() -> None:
    """model/x86 imports neither model/lang nor model/system; model/lang not model/system."""
    for path in (ROOT / "model" / "x86").glob("*.py"):
        text = path.read_text()
        assert "model.lang" not in text and "model.system" not in text, path
    for path in (ROOT / "model" / "lang").glob("*.py"):
        assert "model.system" not in path.read_text(), path


def test_every_environment_step_says_how_traces_name_its_pick() -> None:
    # describe.py labels a trace edge from isa.CHOICE_LABELS; an input shows as the
    # variable it sets instead
    assert set(isa.CHOICE_LABELS) <= isa.CHOICE_OPS
    assert isa.CHOICE_OPS - set(isa.CHOICE_LABELS) == {"input", "c.input"}
    assert isa.CHOICE_LABELS["c.choose"].format(index=1, ordinal=2) == "choice 2"
