"""The C preprocessor subset entry.S is written in (docs/design-language.md#the-c-preprocessor):
object-like and function-like `#define`s applied token-wise (inside operands too), `##`
and `#`, the recursion guard, `;`-separated statements, `#undef`, `#ifdef`; labels with
dots; `.subsection`; and the `path:line` errors (exit 2, no traceback)."""

from __future__ import annotations

import pytest

from model.lang.ir import Imm, Mem, Target
from tests.test_lang_errors import design_error
from tests.test_lang_gas import BASE_LINES, parse, texts


def test_function_like_macro_inside_an_operand_and_as_a_line(tmp_path) -> None:
    d = parse(tmp_path, """\
        #define SIZE 0x40
        #define FIELD(f) (1 - SIZE + f)
        #define GET_END(reg) \\
                movq $SIZE-1, %r##reg; \\
                orq %rsp, %r##reg
        ENTRY(main)
                GET_END(14)
                movq FIELD(8)(%r14), %rax
                movq FIELD( 16 ) (%r14), %rbx
                ret
        """)
    assert texts(d, "main") == [
        "movq $0x40-1, %r14", "orq %rsp, %r14", "movq (1 - 0x40 + 8)(%r14), %rax",
        "movq (1 - 0x40 + 16) (%r14), %rbx", "ret",
    ]
    ins = d.routines["main"].instrs
    assert isinstance(ins[2].args[0], Mem)
    # every statement of an expansion is at the invocation's line
    assert [i.loc.line - BASE_LINES for i in ins[:2]] == [7, 7]


def test_pasting_stringify_and_redefinition(tmp_path) -> None:
    d = parse(tmp_path, """\
        #define JUMP(cond, tag) j##cond .L##tag
        #define DISPATCH(vec, handler) cmp $vec, %al; jne 1f; call handler; jmp done; 1:
        ENTRY(main)
                JUMP(nz, out)
                DISPATCH(3, h1)
        #undef DISPATCH
        #define DISPATCH(vec, handler) cmp $vec, %al; jne 1f; call handler; jmp other; 1:
                DISPATCH(4, h2)
        .Lout:
        done:
        other:
                ret
        h1:
                ret
        h2:
                ret
        """)
    assert texts(d, "main") == [
        "jnz .Lout", "cmp $3, %al", "jne 1f", "call h1", "jmp done",
        "cmp $4, %al", "jne 1f", "call h2", "jmp other",
    ]


def test_recursion_guard_and_argument_prescan(tmp_path) -> None:
    d = parse(tmp_path, """\
        #define rax rax
        #define TWICE(x) x + x
        #define ONE 1
        const cnt = 5
        #define cnt cnt + ONE
        ENTRY(main)
                movq $TWICE(ONE), %rax
                movq $cnt, %rbx
                ret
        """)
    # `rax` and `cnt` are not re-expanded inside their own expansions (C11 6.10.3.4)
    assert texts(d, "main") == ["movq $1 + 1, %rax", "movq $cnt + 1, %rbx", "ret"]
    assert d.routines["main"].instrs[0].args[0] == Imm(("const", 2))
    assert d.routines["main"].instrs[1].args[0] == Imm(("const", 6))


def test_ifdef_and_names_with_a_hash(tmp_path) -> None:
    d = parse(tmp_path, """\
        #define CONFIG_PV 1
        ENTRY(main)
        #ifdef CONFIG_PV
                nop
        #else
                ud2
        #endif
        #ifndef CONFIG_PV32
                pause
        #endif
        #ifdef CONFIG_PV32
                ud2
        #endif
                ret
        """)
    assert texts(d, "main") == ["nop", "pause", "ret"]


def test_dotted_labels_and_subsection(tmp_path) -> None:
    d = parse(tmp_path, """\
        #define UNLIKELY_START(cond, tag) \\
                j##cond .Lunlikely.tag;   \\
                .subsection 1;            \\
                .Lunlikely.tag:
        #define UNLIKELY_END(tag)         \\
                jmp .Llikely.tag;         \\
                .subsection 0;            \\
                .Llikely.tag:
        ENTRY(main)
                testq %rax, %rax
                UNLIKELY_START(z, zero)
                ud2
                UNLIKELY_END(zero)
                nop
        main.tail:
                ret
        after:
                ret
        """)
    assert texts(d, "main") == [
        "testq %rax, %rax", "jz .Lunlikely.zero", "nop", "(falls through to main.tail)"
    ]
    assert d.routines["main"].instrs[1].args == (Target(".Lunlikely.zero", 0),)
    assert texts(d, ".Lunlikely.zero") == ["ud2", "jmp .Llikely.zero"]
    assert d.routines[".Lunlikely.zero"].instrs[1].args == (Target("main", 2),)
    # subsection 1 is laid out after the section's subsection-0 code, as GNU as places it
    assert list(d.routines) == ["main", "main.tail", "after", ".Lunlikely.zero"]


@pytest.mark.parametrize(
    ("tail", "line", "words"),
    [
        ("#include <asm/asm_defns.h>\n", 1, ("#include", "not supported")),
        ("#if CONFIG_PV\n#endif\n", 1, ("#if", "not supported")),
        ("#define F(a, b) a\nENTRY(r)\n        F(1)\n", 3, ("F", "2 argument", "got 1")),
        ("#define F(a) a\nENTRY(r)\n        movq F(1, %rax\n", 3, ("F", "closing")),
        ("#define F(a, a) a\n", 1, ("two parameters",)),
        ("#define F(1) a\n", 1, ("bad parameter",)),
        ("#define F(a) ## a\n", 1, ("##",)),
        ("#ifdef X\n", 1, ("without #endif",)),
        ("#endif\n", 1, ("#endif without",)),
        ("#ifdef X\n#else\n#else\n#endif\n", 3, ("#else after #else",)),
        ("#undef\n", 1, ("#undef NAME",)),
        (".subsection x\n", 1, ("not a number",)),
        (".subsection 9000\n", 1, ("subsection N",)),
    ],
)
def test_cpp_errors(tmp_path, capsys, tail: str, line: int, words: tuple[str, ...]) -> None:
    design_error(tmp_path, capsys, tail, line, *words)
