"""GNU as syntax as real entry.S uses it (docs/design-language.md#macros and
#sections-and-symbols): macros with arguments, `.rept`/`.irp`/`.irpc`, a macro after a
label, section and symbol directives, Xen's FUNC/LABEL/END linkage macros, line
continuations; their meaning in the lowered design and their errors (`path:line`,
exit 2 through the CLI)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from checker.errors import InputError
from model.lang.ir import Design, Imm, Loc, Reg, Target
from model.lang.parser import parse_design
from model.system.transition import DesignSystem, Environment
from tests.test_lang_errors import HEAD_LINES, design_error

BASE = """\
stack primary size 0x1000
cpu 0 start main rsp top(primary)
"""
BASE_LINES = BASE.count("\n")


def parse(tmp_path: Path, text: str) -> Design:
    path = tmp_path / "t.design"
    path.write_text(BASE + textwrap.dedent(text))
    return parse_design(path)


def texts(d: Design, routine: str) -> list[str]:
    return [i.text for i in d.routines[routine].instrs]


# -- macros with arguments ---------------------------------------------------------------------


def test_macro_arguments_defaults_and_keywords(tmp_path: Path) -> None:
    d = parse(tmp_path, """\
        .macro LOAD reg, value=7
                movq $\\value, %\\reg
        .endm
        ENTRY(main)
                LOAD rax, 1
                LOAD rcx
                LOAD value=3, reg=rdx
                LOAD rbx 5
                ret
        """)
    assert texts(d, "main") == [
        "movq $1, %rax", "movq $7, %rcx", "movq $3, %rdx", "movq $5, %rbx", "ret"
    ]
    first = d.routines["main"].instrs[0]
    assert first.args == (Imm(("const", 1)), Reg("rax"))


def test_macro_separator_counter_and_vararg(tmp_path: Path) -> None:
    d = parse(tmp_path, """\
        .macro SKIP tag
                jmp .L\\tag\\()_\\@
        .L\\tag\\()_\\@:
        .endm
        .macro PUSHES first, rest:vararg
                pushq %\\first
        .irp r, \\rest
                pushq %\\r
        .endr
        .endm
        ENTRY(main)
                SKIP a
                SKIP a
                PUSHES rax, rbx, rcx
                ret
        """)
    assert texts(d, "main") == [
        "jmp .La_1", "jmp .La_2", "pushq %rax", "pushq %rbx", "pushq %rcx", "ret"
    ]
    instrs = d.routines["main"].instrs
    assert instrs[0].args == (Target("main", 1),)
    assert instrs[1].args == (Target("main", 2),)


def test_an_empty_argument_leaves_no_line(tmp_path: Path) -> None:
    # Xen's ALTERNATIVE "", "jmp x", FEATURE: the original instruction may be empty
    d = parse(tmp_path, """\
        .macro ALTERNATIVE oldinstr, newinstr, feature
                \\oldinstr
        .endm
        ENTRY(main)
                ALTERNATIVE "", "jmp main", X86_FEATURE_XEN_SMEP
                ALTERNATIVE "pushq $1", clac, X86_FEATURE_XEN_SMAP
                ret
        """)
    assert texts(d, "main") == ["pushq $1", "ret"]


def test_a_macro_after_a_label_on_the_same_line(tmp_path: Path) -> None:
    d = parse(tmp_path, """\
        .macro RESTORE_ALL
                popq %rcx
                popq %rax
        .endm
        ENTRY(main)
                pushq $1
                pushq $2
        3:      RESTORE_ALL
                jmp 3b
        other:  RESTORE_ALL
                ret
        """)
    assert texts(d, "main")[2:5] == ["popq %rcx", "popq %rax", "jmp 3b"]
    assert d.routines["main"].instrs[4].args == (Target("main", 2),)
    # `name: MACRO` in column 0 starts a routine, as `name:` alone would
    assert texts(d, "other") == ["popq %rcx", "popq %rax", "ret"]


def test_a_label_named_like_a_macro_is_a_label(tmp_path: Path) -> None:
    d = parse(tmp_path, """\
        .macro loop
                ud2
        .endm
        ENTRY(main)
        .Lx:    nop
        loop:
                jmp loop
        """)
    assert texts(d, "main") == ["nop", "(falls through to loop)"]
    assert texts(d, "loop") == ["jmp loop"]


def test_macro_lines_record_their_invocation(tmp_path: Path) -> None:
    d = parse(tmp_path, """\
        .macro INNER
                pushq %rax
        .endm
        .macro OUTER
                INNER
        .endm
        ENTRY(main)
                OUTER
                ret
        """)
    loc = d.routines["main"].instrs[0].loc
    path = str(tmp_path / "t.design")
    # the line is the macro body's; the invocation chain leads to the call site
    assert (loc.file, loc.line) == (path, BASE_LINES + 2)
    assert loc.site == Loc(path, BASE_LINES + 8)
    assert [x.line for x in loc.chain()] == [BASE_LINES + 8, BASE_LINES + 5, BASE_LINES + 2]
    assert str(loc) == f"{path}:{BASE_LINES + 2}"
    assert loc.describe() == (
        f"{path}:{BASE_LINES + 8} (in macro: line {BASE_LINES + 5} > line {BASE_LINES + 2})"
    )
    plain = d.routines["main"].instrs[1].loc
    assert plain.via is None and plain.describe() == str(plain)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (".macro M a:req\n        pushq %\\a\n.endm\nENTRY(main)\n        M\n",
         "needs its argument"),
        (".macro M a\n        pushq %\\a\n.endm\nENTRY(main)\n        M rax, rbx\n",
         "takes 1 argument"),
        (".macro M a\n        pushq %\\b\n.endm\nENTRY(main)\n        M rax\n",
         "unknown macro parameter"),
        (".macro M a, a\n.endm\n", "two parameters"),
        (".macro M a:vararg, b\n.endm\n", ":vararg"),
        (".macro M a!\n.endm\n", "bad macro parameter"),
        (".macro M\n.endm\n.macro M\n.endm\n", "defined twice"),
        (".macro\n.endm\n", "write `.macro NAME"),
    ],
)
def test_macro_argument_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        parse(tmp_path, text)


# -- repetitions -------------------------------------------------------------------------------


def test_rept_irp_and_irpc(tmp_path: Path) -> None:
    d = parse(tmp_path, """\
        const N = 2
                .equ M, 1
        ENTRY(main)
        .rept N + M
                pushq $0
        .endr
        .rept 2
        .rept 2
                nop
        .endr
        .endr
        .irp reg, rax, rbx
                popq %\\reg
        .endr
        .irpc n, 12
                pushq $\\n
        .endr
        .rept 0
                ud2
        .endr
                ret
        """)
    assert texts(d, "main") == (
        ["pushq $0"] * 3 + ["nop"] * 4 + ["popq %rax", "popq %rbx", "pushq $1", "pushq $2", "ret"]
    )


def test_rept_inside_a_macro_uses_the_argument(tmp_path: Path) -> None:
    d = parse(tmp_path, """\
        .macro ZEROES n
        .rept \\n
                pushq $0
        .endr
        .endm
        ENTRY(main)
                ZEROES 3
                ret
        """)
    assert texts(d, "main") == ["pushq $0"] * 3 + ["ret"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ENTRY(main)\n.rept 2\n        nop\n", "without .endr"),
        ("ENTRY(main)\n        nop\n.endr\n", ".endr without"),
        ("ENTRY(main)\n.rept x\n.endr\n", "not a number|undefined|name"),
        ("ENTRY(main)\n.rept 1000000\n.endr\n", "count"),
        ("ENTRY(main)\n.irp 1, a\n.endr\n", "write `.irp"),
    ],
)
def test_repetition_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        parse(tmp_path, text)


# -- sections, symbols, alignment --------------------------------------------------------------


def test_directives_that_change_nothing_are_accepted(tmp_path: Path) -> None:
    d = parse(tmp_path, """\
                .file "x86_64/entry.S"
                .text
                .code64
                .globl main, other
                .hidden main
                .type main, @function
                ALIGN
                .align 16, 0x90
                .p2align 4
                .balign 8
        ENTRY(main)
                .p2align 4, , 7
                nop
                ret
        .Lend:
                .size main, . - main
                .equ TWO, 2
                .set THREE, TWO + 1
        other:
                pushq $THREE
                ret
        """)
    assert texts(d, "main") == ["nop", "ret"]
    assert d.routines["other"].instrs[0].args == (Imm(("const", 3)),)


def test_section_directives_mean_what_section_means(tmp_path: Path) -> None:
    d = parse(tmp_path, """\
                .section .init.text, "ax", @progbits
        ENTRY(main)
                call boot
                call late
                hlt
        boot:
                ret
                .text
        late:
                .pushsection .fixup, "ax", @progbits
        .Lfix:
                ud2
                .popsection
                ret
                .section .init.data
                .previous
        tail:
                ret
        """)
    sections = {name: r.section for name, r in d.routines.items()}
    assert sections == {
        "main": ".init.text", "boot": ".init.text", "late": ".text", ".Lfix": ".fixup",
        "tail": ".text",
    }
    # the code after .popsection continues the routine the push interrupted
    assert texts(d, "late") == ["ret"]
    assert texts(d, ".Lfix") == ["ud2"]


def test_section_directive_init_text_is_freed(tmp_path: Path) -> None:
    # `.section .init.text` is the `section .init.text` declaration: free_init() frees it
    path = tmp_path / "t.design"
    path.write_text(BASE + textwrap.dedent("""\
        function main {
            free_init();
            boot();
        }
                .section .init.text, "ax", @progbits
        boot:
                ret
        """))
    system = DesignSystem(parse_design(path), Environment())
    [s] = system.init_states()
    for _ in range(10):
        actions = system.actions(s)
        if not actions:
            break
        s = system.next_state(s, actions[0])
    assert "freed-init-code-executed" in " ".join(s.machine.incidents)


def test_falling_through_stays_in_its_section(tmp_path: Path) -> None:
    d = parse(tmp_path, """\
        ENTRY(main)
                nop
                .pushsection .text.unlikely
        .Lslow:
                ud2
                .popsection
                nop
        next:
                ret
        """)
    # main falls through into `next` (same section), not into the pushed-away code
    assert d.routines["main"].instrs[-1].args == (Target("next", 0),)
    assert texts(d, "main") == ["nop", "nop", "(falls through to next)"]


def test_xen_linkage_macros(tmp_path: Path) -> None:
    d = parse(tmp_path, """\
        FUNC(main)
                nop
        LABEL(test_all_events, 0)
                nop
        LABEL_LOCAL(.Lprocess)
                jmp test_all_events
        END(main)

        FUNC_LOCAL(other, 16)
                jmp .Lprocess
        END(other)
        """)
    # LABEL is a label inside the routine, not a new routine: no fall-through step
    assert set(d.routines) == {"main", "other"}
    assert texts(d, "main") == ["nop", "nop", "jmp test_all_events"]
    assert d.routines["main"].instrs[2].args == (Target("main", 1),)
    assert d.routines["other"].instrs[0].args == (Target("main", 2),)


def test_line_continuations_join_lines(tmp_path: Path) -> None:
    d = parse(tmp_path, """\
        ENTRY(main)
                movq $(1 + \\
                       2), %rax
                ret
        """)
    assert d.routines["main"].instrs[0].args == (Imm(("const", 3)), Reg("rax"))
    assert d.routines["main"].instrs[0].loc.line == BASE_LINES + 2
    assert d.routines["main"].instrs[1].loc.line == BASE_LINES + 4


# -- errors through the CLI: path:line, exit 2, no traceback -----------------------------------


@pytest.mark.parametrize(
    ("tail", "line", "words"),
    [
        ("        .frobnicate 3\n", 1, ("unknown directive", ".frobnicate")),
        ("ENTRY(r)\n        .word 4\n        ret\n", 2, ("unknown directive", ".word")),
        ("ENTRY(r)\n        .align 3\n        ret\n", 2, ("power of 2",)),
        ("ENTRY(r)\n        .p2align 40\n        ret\n", 2, (".p2align",)),
        ("ENTRY(r)\n        .type r, frob\n        ret\n", 2, (".type",)),
        ("ENTRY(r)\n        .section\n        ret\n", 2, (".section NAME",)),
        ("        .section .text, ax\n", 1, ("flags",)),
        ("ENTRY(r)\n        .popsection\n        ret\n", 2, (".popsection without",)),
        ("ENTRY(r)\n        ret\nEND(nothing)\n", 3, ("END(nothing)",)),
        ("FUNC(r, 3)\n        ret\n", 1, ("power of 2",)),
        ("ENTRY(r)\n        ret\nEND(r)\n        nop\n", 4, ("needs a routine",)),
        ("ENTRY(r)\n        ret\n        .section .x\n        nop\n", 4, ("needs a routine",)),
        ("ENTRY(r)\n        ret\nLABEL(r)\n", 3, ("defined twice",)),
        ("ENTRY(r)\n.rept 2\n        ret\n", 2, ("without .endr",)),
        # an error in a macro body names the body line and the invocation
        (".macro M a\n        pushq \\a\n.endm\nENTRY(r)\n        M %xmm0\n        ret\n", 2,
         ("unknown register", "expanded at", f":{HEAD_LINES + 5}")),
    ],
)
def test_directive_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], tail: str, line: int,
    words: tuple[str, ...],
) -> None:
    design_error(tmp_path, capsys, tail, line, *words)


def test_the_last_routine_of_a_section_runs_off_its_end(tmp_path: Path) -> None:
    # code of another section written after it is not where the CPU goes next
    path = tmp_path / "t.design"
    path.write_text(BASE + textwrap.dedent("""\
        ENTRY(main)
                nop
                .section .other
        elsewhere:
                ret
        """))
    d = parse_design(path)
    assert d.routines["main"].instrs[-1].op == "c.fell_off"
    system = DesignSystem(d, Environment())
    [s] = system.init_states()
    while system.actions(s):
        s = system.next_state(s, system.actions(s)[0])
    assert "ran-off-routine-end" in s.machine.incidents
