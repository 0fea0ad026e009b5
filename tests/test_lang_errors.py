"""Every mistake in a design file is `path:line: message` on stderr, exit code 2, no
traceback, through the CLI (`checker.cli.main` on a property file naming the design).

Each case writes a small design into a temporary design directory, points the property
file at it and checks that the one error line names the design file (or the property file,
for a bad `variant`) and the line of the mistake.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from checker import cli
from model.system.provider import DesignProvider

# A design that parses and runs; cases append lines to it (numbered from HEAD_LINES + 1).
HEAD = """\
knob ist = xen | shared | none
const TRAP_nmi = 2
stack primary size 0x1000
stack nmi_ist size 0x1000
var v = 0
var waiting = 0
cpu 0 start main rsp top(primary)
ENTRY(main)
        hlt
        jmp main
"""
HEAD_LINES = HEAD.count("\n")

PROPERTY = """\
design = "t"
{top}
[[property]]
name = "p"
kind = "never"
expr = "any_shutdown"
expect = "holds"
{extra}"""


def run_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], design: str, top: str = "", extra: str = ""
) -> tuple[int, str, Path, Path]:
    designs = tmp_path / "designs"
    designs.mkdir(exist_ok=True)
    design_path = designs / "t.design"
    design_path.write_text(design)
    prop_path = tmp_path / "p.toml"
    prop_path.write_text(PROPERTY.format(top=top, extra=extra))
    capsys.readouterr()
    code = cli.main(
        [str(prop_path), "--report-dir", str(tmp_path / "reports")],
        provider=DesignProvider(directory=designs),
    )
    err = capsys.readouterr().err
    return code, err, design_path, prop_path


def assert_error(err: str, code: int, path: Path, line: int, *words: str) -> str:
    """One `path:line: message` line naming `path` and `line`; returns the message."""
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    # After the error, the closing summary names the property it cost (`ERROR file:line p`).
    summary = lines.index("== 1 unexpected or error") if "== 1 unexpected or error" in lines \
        else len(lines)
    assert lines[summary + 1:] == [] or lines[summary + 1].startswith("ERROR "), err
    lines = lines[:summary]
    assert len(lines) == 1, err
    # The error names the property it cost: `(property 'p')`, or `property 'p': ` when it
    # lies in the property file itself.
    shown = re.sub(r" \(property '[a-z0-9-]+'\)$", "", lines[0])
    shown = re.sub(r"^(.+?:\d+: )property '[a-z0-9-]+': ", r"\1", shown)
    m = re.fullmatch(r"(.+?):(\d+): (.+)", shown)
    assert m is not None, err
    assert Path(m.group(1)).resolve() == path.resolve(), err
    assert int(m.group(2)) == line, err
    message = m.group(3)
    # a parse error, not a model crash caught on the way out
    assert "the model failed" not in message and "the model raised" not in message, err
    for w in words:
        assert w in message, err
    return message


def design_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], tail: str, line: int, *words: str
) -> str:
    """`tail` is appended to HEAD; `line` counts from the first line of `tail` (1)."""
    code, err, design, _ = run_cli(tmp_path, capsys, HEAD + textwrap.dedent(tail))
    return assert_error(err, code, design, HEAD_LINES + line, *words)


def test_the_head_design_is_fine(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err, _, _ = run_cli(tmp_path, capsys, HEAD)
    assert code == 0, err


# -- assembler -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tail", "line", "words"),
    [
        ("ENTRY(r)\n        pushq %rax\n        frobq %rax\n", 3, ("unknown instruction", "frobq")),
        # a line whose first word is an unknown mnemonic: an undefined macro, say
        ("ENTRY(r)\n        SAVE_ALL\n        iretq\n", 2, ("unknown instruction", "SAVE_ALL")),
        # a macro defined under another name does not help
        (".macro SAVE_SOME\n        pushq %rdi\n.endm\nENTRY(r)\n        SAVE_ALL\n", 5,
         ("SAVE_ALL",)),
        ("ENTRY(r)\n        rep stosq\n", 2, ("rep", "stosq")),
        ("ENTRY(r)\n        movsq\n", 2, ("rep movsq",)),
    ],
)
def test_unknown_instruction(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], tail: str, line: int,
    words: tuple[str, ...],
) -> None:
    design_error(tmp_path, capsys, tail, line, *words)


def test_error_inside_a_macro_body_names_the_body_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tail = (".macro SAVE_ALL\n        pushq %rdi\n        bogus %rsi\n.endm\n"
            "ENTRY(r)\n        SAVE_ALL\n")
    design_error(tmp_path, capsys, tail, 3, "unknown instruction", "bogus")


@pytest.mark.parametrize(
    ("instruction", "words"),
    [
        ("jmp *$1", ("unknown operand form", "*$1")),
        ("pushq %xmm0", ("unknown register",)),
        ("movq foo, %rax", ("operand form",)),
        ("lidt 8(%rsp)", ("operand form", "lidt")),
        ("pushq %ss", ("operand form",)),
        ("addq $1, %ss", ("operand form",)),
        ("movq 8(%ss), %rax", ("unknown operand form",)),
        ("leaq main, %rax", ("operand form", "lea")),
        ("addq %rax, $1", ("operand form",)),
        ("incq $1", ("operand form",)),
        ("cmpq %rax, main", ("operand form",)),
        ("choose %rax", ("choose DST",)),
        ("choose $1, $2, $3", ("operand form", "choose")),
        ("int %rax", ("operand form",)),
        ("int $256", ("0-255",)),
        ("pushq %rax, %rbx", ("takes 1 operand",)),
        ("ret $8", ("takes 0 operand",)),
        ("nop @fault(#XX)", ("unknown exception", "#XX")),
        ("movq %rax, @@", ("malformed expression",)),
    ],
)
def test_unknown_operand_form(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], instruction: str, words: tuple[str, ...]
) -> None:
    design_error(tmp_path, capsys, f"ENTRY(r)\n        nop\n        {instruction}\n", 3, *words)


@pytest.mark.parametrize(
    ("tail", "line", "target"),
    [
        ("ENTRY(r)\n        jne 1f\n        ret\n", 2, "1f"),
        ("ENTRY(r)\n        jmp 1b\n1:\n        ret\n", 2, "1b"),  # `1:` is after, not before
        ("ENTRY(r)\n        je .Lnowhere\n        ret\n", 2, ".Lnowhere"),
        ("ENTRY(r)\n        leaq 2f(%rip), %rax\n        ret\n", 2, "2f"),
        ("ENTRY(r)\n        jmp nowhere\n", 2, "nowhere"),
        ("ENTRY(r)\n        call nowhere\n        ret\n", 2, "nowhere"),
        ("ENTRY(r)\n        callq do_nothing\n        ret\n", 2, "do_nothing"),
        ("function f {\n    v = 1;\n    missing();\n}\n", 3, "missing"),
    ],
)
def test_undefined_label_or_routine(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], tail: str, line: int, target: str
) -> None:
    message = design_error(tmp_path, capsys, tail, line, "undefined label", repr(target))
    assert message.startswith("undefined label")


def test_numeric_labels_do_not_cross_routines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tail = "ENTRY(a)\n1:      nop\n        ret\nENTRY(b)\n        jmp 1b\n"
    design_error(tmp_path, capsys, tail, 5, "undefined label '1b'")


# -- knobs and variants ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tail", "line", "words"),
    [
        # a value the knob does not have, in the branch this variant takes ...
        (".if ist == sharde\nstack s size 8\n.endif\n", 1,
         ("no value 'sharde'", "xen, shared, none")),
        # ... or in one it drops: checked all the same
        (".if ist == xen\nstack s size 8\n.elif ist == nonee\nstack s size 8\n.endif\n", 3,
         ("no value 'nonee'",)),
        (".if ist == shared\n.if ist == bogus\nstack s size 8\n.endif\n.endif\n", 2,
         ("no value 'bogus'",)),
        (".if ist == xen | shraed\nstack s size 8\n.endif\n", 1, ("no value 'shraed'",)),
        (".if ist != xen\n.else\n.endif\n.if isst == xen\n.endif\n", 4, ("unknown knob 'isst'",)),
        (".if ist\n.endif\n", 1, ("bad condition",)),
        (".if ist == xen\n.else\n.else\n.endif\n", 3, (".else after .else",)),
        (".if ist == xen\n.else\n.elif ist == none\n.endif\n", 3, (".elif after .else",)),
        (".endif\n", 1, (".endif without .if",)),
        (".elif ist == xen\n", 1, (".elif without .if",)),
        ("\n\n.if ist == xen\nstack s size 8\n", 3, (".if without .endif",)),
        ("knob bad = a | b c\n", 1, ("bad knob values",)),
    ],
)
def test_knob_errors_in_the_design(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], tail: str, line: int,
    words: tuple[str, ...],
) -> None:
    design_error(tmp_path, capsys, tail, line, *words)


def test_variant_value_that_does_not_exist_names_the_property_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err, _, prop = run_cli(tmp_path, capsys, HEAD, top='\n[variant]\nist = "sharde"\n')
    message = assert_error(err, code, prop, 4, "ist", "sharde")
    assert "xen, shared, none" in message


def test_unknown_variant_knob_names_the_property_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err, _, prop = run_cli(tmp_path, capsys, HEAD, top='\n[variant]\nstack = "xen"\n')
    assert_error(err, code, prop, 4, "no knob 'stack'", "knobs: ist")


def test_property_level_variant_names_its_own_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err, _, prop = run_cli(tmp_path, capsys, HEAD, extra='variant = { ist = "nope" }\n')
    assert_error(err, code, prop, 8, "no value 'nope'")


def test_a_valid_variant_is_accepted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err, _, _ = run_cli(tmp_path, capsys, HEAD, top='\n[variant]\nist = "none"\n')
    assert code == 0, err


# -- tables --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tail", "line", "words"),
    [
        ("idt t\n    gate #PF main\n    gate NMI nmi_handler ist 2\nend\n", 3,
         ("gate 2", "missing routine 'nmi_handler'")),
        ("idt t\n    gates 32-47 spurious\nend\n", 2, ("missing routine 'spurious'",)),
        ("idt t\n    gate 300 main\nend\n", 2, ("0-255",)),
        ("idt t\n    gate NMI main ist 9\nend\n", 2, ("ist 0-7",)),
        ("idt t\n    gate NMI main bogus\nend\n", 2, ("unknown option 'bogus'",)),
        ("idt t\n    gate NMI main\n", 1, ("without `end`",)),
        ("tss t\n    rsp0 primary\n    ist 2 nmi_ist\n    ist 1 mce_ist\nend\n", 4,
         ("tss t", "missing stack 'mce_ist'")),
        ("tss t\n    rsp0 primay\nend\n", 2, ("missing stack 'primay'",)),
        ("tss t\n    ist 8 nmi_ist\nend\n", 2, ("IST slots are 1-7",)),
        ("cpu 1 start nowhere\n", 1, ("missing routine 'nowhere'",)),
        ("cpu 1 start main idt nope\n", 1, ("missing idt 'nope'",)),
        ("cpu 1 start main tss nope\n", 1, ("missing tss 'nope'",)),
        ("cpu 1 start main rsp top(nope)\n", 1, ("missing stack 'nope'",)),
        ("cpu 1 start main rsp v\n", 1, ("constant expression",)),
        ("cpu 1 start main %rsp=0\n", 1, ("rsp EXPR",)),
        ("cpu 1 start main %ss=0\n", 1, ("%ss",)),
        ("cpu 1 start main %foo=0\n", 1, ("unknown register %foo",)),
        ("cpu 1 start main if 2\n", 1, ("if 1",)),
        ("cpu 1 start main cpl 2\n", 1, ("cpl",)),
        ("cpu 1 start main fast\n", 1, ("unknown option 'fast'",)),
        ("cpu 1 idt none\n", 1, ("start ROUTINE",)),
        ("stack primary size 8\n", 1, ("already a stack",)),
        ("idt nmi_ist\nend\n", 1, ("already a stack",)),
        ("stack s\n", 1, ("needs a size",)),
        ("stack s size 8 owner nobody\n", 1, ("owner",)),
        ("var v = 1\n", 1, ("declared twice",)),
        ("var w = v + 1\n", 1, ("constant expression", "'v'")),
        ("var w = mem(0)\n", 1, ("constant expression",)),
        ("percpu p[2] = 0\n", 1, ("per-CPU arrays",)),
        ("var a[0] = 0\n", 1, ("1-4096",)),
        ("const C = v\n", 1, ("not a number",)),
        ("cpus 17\n", 1, ("1 and 16",)),
        ("vendor via\n", 1, ("intel or amd",)),
        ("lstar nowhere\n", 1, ("lstar", "'nowhere'")),
        ("fmask X86_EFLAGS_IF\n", 1, ("not a number",)),
        ("selector cs = 8\n", 1, ("write `selector hypervisor_cs |",)),
        ("selector guest_cs64 = 0xe008\n", 1, ("guest_cs64", "RPL 3")),
        ("selector hypervisor_ss = 0x10000\n", 1, ("16-bit",)),
        ("frobnicate 3\n", 1, ("unknown instruction 'frobnicate'",)),
        ("ENTRY(main)\n        ret\n", 1, ("defined twice",)),
    ],
)
def test_declaration_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], tail: str, line: int,
    words: tuple[str, ...],
) -> None:
    design_error(tmp_path, capsys, tail, line, *words)


def test_a_design_without_cpu_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err, design, _ = run_cli(tmp_path, capsys, "ENTRY(main)\n        hlt\n")
    assert_error(err, code, design, 1, "no `cpu` line")


# -- pseudo-C ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "line", "words"),
    [
        ("    w = 1;\n", 2, ("undeclared variable 'w'",)),
        ("    v = 0;\n    w += 1;\n", 3, ("undeclared variable 'w'",)),
        ("    w++;\n", 2, ("undeclared variable 'w'",)),
        ("    atomic_inc(w);\n", 2, ("undeclared variable 'w'",)),
        ("    atomic_set(&w, 1);\n", 2, ("undeclared variable 'w'",)),
        ("    choose(w, 1, 2);\n", 2, ("undeclared variable 'w'",)),
        ("    choose_range(w, 0, 3);\n", 2, ("undeclared variable 'w'",)),
        ("    w[1] = 0;\n", 2, ("undeclared variable 'w'",)),
        ("    v = w + 1;\n", 2, ("undefined name 'w'",)),
        ("    if (w) {\n    }\n", 2, ("undefined name 'w'",)),
        ("    v = primary;\n", 2, ("'primary' is a stack, not a value",)),
        ("    v[1] = 0;\n", 2, ("not an array",)),
        ("    v = v[1];\n", 2, ("not an array",)),
        ("    choose(1, 2, 3);\n", 2, ("variable name",)),
        ("    set_gate(t, NMI, nowhere);\n", 2, ("undefined label or routine 'nowhere'",)),
        ("    set_gate(t, NMI, main, fast);\n", 2, ("interrupt or trap",)),
        ("    set_gate(t, NMI, main, trap, x, 0);\n", 2, ("dpl",)),
        ("    set_gate(t, NMI, main, trap, 0, 9);\n", 2, ("ist",)),
        ("    set_gate(primary, NMI, main);\n", 2, ("needs an idt",)),
        ("    set_ist(t, 1, primary);\n", 2, ("needs a tss",)),
        ("    set_ist(tss0, 1, nostack);\n", 2, ("needs a stack or none", "'nostack'")),
        ("    lidt(nothere);\n", 2, ("needs an idt or empty",)),
        ("    lidt(t[1]);\n", 2, ("not per-cpu",)),
        ("    ltr(t);\n", 2, ("needs a tss",)),
        ("    send_nmi(EVERYONE);\n", 2, ("undefined name 'EVERYONE'",)),
        ("    halt(1);\n", 2, ("halt takes 0-0 arguments",)),
        ("    missing(1);\n", 2, ("take no arguments",)),
        ("    v == 1;\n", 2, ("unknown statement",)),
        ("    return 1;\n", 2, ("unknown statement",)),
        ("    do {\n", 2, ("unknown block statement",)),
        ("    } else {\n", 2, ("`else` without `if`",)),
        ("    nop() @fault(#XX);\n", 2, ("unknown exception",)),
        ("    @fault(#PF);\n", 2, ("needs a statement",)),
        ("    v = 1;\n", 3, ("no closing",)),  # the next declaration is in column 0
    ],
)
def test_pseudo_c_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], body: str, line: int,
    words: tuple[str, ...],
) -> None:
    tables = "idt t\nend\ntss tss0\nend\n"
    closing = "" if "no closing" in words else "}\n"
    tail = "function f {\n" + body + closing + tables
    design_error(tmp_path, capsys, tail, line, *words)


@pytest.mark.parametrize(
    ("expr", "words"),
    [
        ("(1 + ", ("malformed expression",)),
        ("v +* 2", ("malformed expression",)),
        ("1 < v < 3", ("chained",)),
        ("1 in v", ("membership",)),
        ("v if v else 1", ("not allowed",)),
        ("2 ** 3", ("not allowed",)),
        ("1.5", ("not allowed",)),
        ("'text'", ("not allowed",)),
        ("[1, 2][0]", ("not allowed",)),
        ("open(1)", ("unknown function 'open'",)),
        ("mem(1, 2)", ("mem() with 2 argument(s)",)),
        ("nmi_blocked(1)", ("nmi_blocked() with 1",)),
        ("per_cpu(1, 0)", ("per_cpu()",)),
        ("per_cpu(v, 0)", ("needs a percpu variable",)),
        ("top(1)", ("top()",)),
        ("top(nope)", ("missing stack 'nope'",)),
        ("top(primary[1])", ("not per-cpu",)),
        ("%xmm0", ("unknown register %xmm0",)),
        ("%eax", ("unknown register %eax",)),
        ("%ss", ("unknown register %ss",)),
        ("__reg__()", ("not allowed",)),
        ("-" * 5000 + "1", ("too deeply nested",)),
    ],
)
def test_malformed_expressions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], expr: str, words: tuple[str, ...]
) -> None:
    design_error(tmp_path, capsys, f"function f {{\n    v = 0;\n    v = {expr};\n}}\n", 3, *words)


# -- expressions trying Python: rejected, never executed ------------------------------------------

SENTINEL = "PWNED"


def _python_attempts(marker: Path) -> list[tuple[str, int]]:
    """(design tail, line of the attempt) pairs, each trying to create `marker`."""
    call = f"__import__('os').system('touch {marker}')"
    return [
        (f"function f {{\n    v = {call};\n}}\n", 2),
        (f"function f {{\n    if ({call}) {{\n    }}\n}}\n", 2),
        (f"function f {{\n    wait_until({call});\n}}\n", 2),
        (f"function f {{\n    assert({call});\n}}\n", 2),
        (f"function f {{\n    send_nmi({call});\n}}\n", 2),
        (f"function f {{\n    for (v = 0; {call}; v++) {{\n    }}\n}}\n", 2),
        (f"ENTRY(r)\n        pushq ${call}\n", 2),
        (f"ENTRY(r)\n        movq %rax, {call}\n", 2),
        (f"ENTRY(r)\n        movq {call}(%rsp), %rax\n", 2),
        (f"var w = {call}\n", 1),
        (f"const C = {call}\n", 1),
        (f"cpu 1 start main rsp {call.replace(' ', '')}\n", 1),
        (f"stack s size {call.replace(' ', '')}\n", 1),
        (f"idt t\n    gate {call.replace(' ', '')} main\nend\n", 2),
        (f".if ist == {call}\n.endif\n", 1),
        (f"function f {{\n    v = (lambda: {call})();\n}}\n", 2),
        (f"function f {{\n    v = eval(\"{call}\");\n}}\n", 2),
        (f"function f {{\n    v = exec(\"{call}\");\n}}\n", 2),
        ("function f {\n    v = compile('1', 'x', 'eval');\n}\n", 2),
    ]


@pytest.mark.parametrize("case", range(len(_python_attempts(Path("x")))))
def test_python_in_an_expression_is_rejected_not_executed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: int
) -> None:
    marker = tmp_path / SENTINEL
    tail, line = _python_attempts(marker)[case]
    design_error(tmp_path, capsys, tail, line)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("expr", "words"),
    [
        ("v.real", ("Attribute is not allowed",)),
        ("().__class__", ("Attribute is not allowed",)),
        ("v.__class__.__bases__", ("Attribute is not allowed",)),
        ("lambda: 1", ("Lambda is not allowed",)),
        ("(lambda: 1)()", ("not allowed",)),
        ("__builtins__", ("undefined name '__builtins__'",)),
        ("sum(x for x in (1, 2))", ("unknown function 'sum'",)),
        ("(x for x in (1, 2))", ("not allowed",)),
        ("(w := 1)", ("not allowed",)),
        ("mem(*v)", ("not allowed",)),
        ("mem(x=1)", ("not allowed",)),
        ("globals()", ("unknown function 'globals'",)),
    ],
)
def test_python_constructs_are_not_in_the_language(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], expr: str, words: tuple[str, ...]
) -> None:
    design_error(tmp_path, capsys, f"function f {{\n    v = {expr};\n}}\n", 2, *words)


def test_a_runtime_error_still_names_the_design_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An index only known at run time: the checker reports it against the property, with
    the design's file and line in the message, exit 2 and no traceback."""
    tail = "var a[4] = 0\nfunction f {\n    a[v + 4] = 1;\n}\n"
    design = HEAD.replace("start main", "start f") + tail
    code, err, _, _ = run_cli(tmp_path, capsys, design)
    assert code == 2
    assert "Traceback" not in err
    assert f"t.design:{HEAD_LINES + 3}: index 4 is outside a[0..3]" in err
