"""The design language's features as the parser lowers them (docs/design-language.md):
lexical rules, variants, macros, labels, fall-through, `@fault`, pseudo-C lowering, the
declarations that become several instances or initial states.

Running the lowered code is tested in test_interp_features.py.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from checker.errors import InputError
from model.lang.expr import parse_expr
from model.lang.ir import Abs, Design, Imm, Loc, Mem, Reg, RipRel, Target
from model.lang.parser import design_knobs, parse_design
from model.system.layout import build_layout, initial_machines
from model.x86.arch import GP, PF

BASE = """\
stack primary size 0x1000
cpu 0 start main rsp top(primary)
"""
# BASE with the routine it starts, for tests about pseudo-C functions
FN_BASE = BASE + "ENTRY(main)\n        ret\n"


def parse(tmp_path: Path, text: str, variant: dict[str, str] | None = None) -> Design:
    path = tmp_path / "t.design"
    path.write_text(textwrap.dedent(text))
    return parse_design(path, variant)


def ops(design: Design, routine: str) -> list[str]:
    return [i.op for i in design.routines[routine].instrs]


def texts(design: Design, routine: str) -> list[str]:
    return [i.text for i in design.routines[routine].instrs]


def lines(design: Design, routine: str) -> list[int]:
    return [i.loc.line for i in design.routines[routine].instrs]


# -- lexical rules --------------------------------------------------------------------------------


def test_comments_keep_line_numbers(tmp_path: Path) -> None:
    d = parse(tmp_path, BASE + textwrap.dedent("""\
        # a comment line
        ENTRY(main)          // a C++ comment
                pushq $1     # a shell comment
                /* a block
                   comment over lines */ pushq $2
                pushq $3     /* inline */ // and more
        #
                ret
        """))
    assert texts(d, "main") == ["pushq $1", "pushq $2", "pushq $3", "ret"]
    assert lines(d, "main") == [5, 7, 8, 10]


def test_exception_names_are_not_comments(tmp_path: Path) -> None:
    tail = "idt t\n    gate #PF main\nend\nENTRY(main)\n        nop @fault(#GP)\n        ret\n"
    d = parse(tmp_path, BASE + tail)
    assert d.idts[0].gates[0].vector == PF
    assert d.routines["main"].instrs[0].fault == GP


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0x10 + 10", 26),
        ("1 << 4 | 3", 19),
        ("~0 & 0xff", 0xFF),
        ("-1", (1 << 64) - 1),
        ("7 / 2 + 7 % 4", 6),
        ("(2 + 3) * 4 ^ 1", 21),
        ("1 && 0 || !0", 1),
        ("3 > 2 && 2 >= 2 && 1 < 2 && 2 <= 2 && 1 != 2 && 2 == 2", 1),
        ("true + false", 1),
    ],
)
def test_constant_expressions_fold(text: str, value: int) -> None:
    assert parse_expr(text, Loc("f", 1)) == ("const", value)


def test_percent_is_modulo_after_an_operand_and_a_register_otherwise() -> None:
    loc = Loc("f", 1)
    assert parse_expr("i%4", loc) == ("binop", "%", ("var", "i"), ("const", 4))
    assert parse_expr("(i + 1)%n", loc)[1] == "%"
    assert parse_expr("a[1] % %rax", loc) == (
        "binop", "%", ("index", "a", ("const", 1)), ("reg", "rax"),
    )
    assert parse_expr("%rsp - 8", loc) == ("binop", "-", ("reg", "rsp"), ("const", 8))
    assert parse_expr("!x", loc) == ("unop", "!", ("var", "x"))
    assert parse_expr("!%rax && %rcx || %rdx", loc) == (
        "binop", "||",
        ("binop", "&&", ("unop", "!", ("reg", "rax")), ("reg", "rcx")),
        ("reg", "rdx"),
    )


def test_constants_fold_into_immediates_and_displacements(tmp_path: Path) -> None:
    d = parse(tmp_path, BASE + textwrap.dedent("""\
        const A = 4
        const B = A * 2 + 1
        ENTRY(main)
                pushq $B << 1
                movl $A, B-1(%rsp)
                ret
        """))
    push, movl, _ = d.routines["main"].instrs
    assert push.args == (Imm(("const", 18)),)
    assert movl.args == (Imm(("const", 4)), Mem("rsp", 8, 4))


# -- variants --------------------------------------------------------------------------------------

VARIANTS = BASE + """\
knob ist = xen | shared | none
knob ctx = both | xen | guest
var picked = 0
.if ist == xen
const WHICH = 1
.elif ist == shared | none
.if ctx != guest
const WHICH = 2
.else
const WHICH = 3
.endif
.else
const WHICH = 99
.endif
ENTRY(main)
.if ist == none
        pushq $10
.endif
        pushq $WHICH
        ret
"""


@pytest.mark.parametrize(
    ("variant", "pushed"),
    [
        ({}, [1]),  # the first value of every knob is its default
        ({"ist": "xen", "ctx": "guest"}, [1]),
        ({"ist": "shared"}, [2]),
        ({"ist": "shared", "ctx": "guest"}, [3]),
        ({"ist": "none", "ctx": "xen"}, [10, 2]),
        ({"ist": "none", "ctx": "guest"}, [10, 3]),
    ],
)
def test_if_elif_else_with_alternatives(
    tmp_path: Path, variant: dict[str, str], pushed: list[int]
) -> None:
    d = parse(tmp_path, VARIANTS, variant)
    values = [i.args[0].expr[1] for i in d.routines["main"].instrs if i.op == "push"]  # type: ignore[attr-defined]
    assert values == pushed
    assert d.variant == {"ist": "xen", "ctx": "both"} | variant


def test_variant_defaults_and_knobs(tmp_path: Path) -> None:
    d = parse(tmp_path, VARIANTS)
    assert d.knobs == {"ist": ("xen", "shared", "none"), "ctx": ("both", "xen", "guest")}
    assert d.variant == {"ist": "xen", "ctx": "both"}
    assert design_knobs(tmp_path / "t.design") == ("t", d.knobs)


def test_conditionals_select_lines_in_tables(tmp_path: Path) -> None:
    text = BASE + textwrap.dedent("""\
        knob ist = on | off
        stack nmi_ist size 0x1000
        tss t
            rsp0 primary
        .if ist == on
            ist 2 nmi_ist
        .endif
        end
        idt i
        .if ist == on
            gate NMI main ist 2
        .else
            gate NMI main
        .endif
        end
        ENTRY(main)
                ret
        """)
    on = parse(tmp_path, text, {"ist": "on"})
    off = parse(tmp_path, text, {"ist": "off"})
    assert on.tsss[0].ist[1] == "nmi_ist" and off.tsss[0].ist[1] is None
    assert on.idts[0].gates[0].ist == 2 and off.idts[0].gates[0].ist == 0


def test_bad_variant_values_are_model_input_errors(tmp_path: Path) -> None:
    from checker.errors import ModelInputError

    with pytest.raises(ModelInputError) as e:
        parse(tmp_path, VARIANTS, {"ist": "sharde"})
    assert e.value.key == "variant.ist"
    with pytest.raises(ModelInputError) as e:
        parse(tmp_path, VARIANTS, {"isst": "xen"})
    assert e.value.key == "variant.isst"


# -- macros ----------------------------------------------------------------------------------------


def test_nested_macros_expand_in_place(tmp_path: Path) -> None:
    d = parse(tmp_path, BASE + textwrap.dedent("""\
        .macro SAVE_ALL
                SAVE_SOME
                pushq %rcx
        .endm
        .macro SAVE_SOME
                pushq %rdi
                pushq %rsi
        .endm
        .macro RESTORE_ALL
                popq %rcx
                popq %rsi
                popq %rdi
        .endm
        ENTRY(main)
                SAVE_ALL
                RESTORE_ALL
                SAVE_SOME
                ret
        """))
    assert texts(d, "main") == [
        "pushq %rdi", "pushq %rsi", "pushq %rcx",
        "popq %rcx", "popq %rsi", "popq %rdi",
        "pushq %rdi", "pushq %rsi",
        "ret",
    ]
    # each expanded instruction keeps the line of the macro body it came from
    assert lines(d, "main")[:3] == [8, 9, 5]


def test_macro_bodies_follow_the_variant(tmp_path: Path) -> None:
    text = BASE + textwrap.dedent("""\
        knob save = all | some
        .macro SAVE
                pushq %rdi
        .if save == all
                pushq %rsi
        .endif
        .endm
        ENTRY(main)
                SAVE
                ret
        """)
    assert len(parse(tmp_path, text, {"save": "all"}).routines["main"].instrs) == 3
    assert len(parse(tmp_path, text, {"save": "some"}).routines["main"].instrs) == 2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (".macro A\n        B\n.endm\n.macro B\n        A\n.endm\nENTRY(main)\n        A\n",
         "recursively"),
        (".macro A\n.macro B\n.endm\n.endm\n", "nested .macro"),
        (".macro A\n        nop\n", "without .endm"),
        (".endm\n", ".endm without .macro"),
    ],
)
def test_macro_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        parse(tmp_path, BASE + text)


# -- routines, labels, fall-through ----------------------------------------------------------------


def test_routine_headers(tmp_path: Path) -> None:
    d = parse(tmp_path, BASE + textwrap.dedent("""\
        ENTRY(main)
                ret
        GLOBAL(other):
                ret
        plain:
                ret
        GUEST(user)
                ud2
        """))
    assert set(d.routines) == {"main", "other", "plain", "user"}
    assert d.routines["user"].guest and not d.routines["main"].guest


def test_numeric_labels_pick_the_nearest(tmp_path: Path) -> None:
    d = parse(tmp_path, BASE + textwrap.dedent("""\
        ENTRY(main)
        1:      nop
                jmp 1f
        1:      nop
                jne 1b
                je 2f
        1:
        2:      nop
                jmp 1b
                ret
        """))
    instrs = d.routines["main"].instrs
    assert instrs[1].args == (Target("main", 2),)  # the next `1:`
    assert instrs[3].args == (Target("main", 2),)  # the latest `1:`, not the first
    assert instrs[4].args == (Target("main", 5),)
    assert instrs[6].args == (Target("main", 5),)  # `1:` and `2:` on the same instruction


def test_named_labels_are_visible_from_every_routine(tmp_path: Path) -> None:
    d = parse(tmp_path, BASE + textwrap.dedent("""\
        ENTRY(main)
                jmp .Lhere
                ret
        ENTRY(other)
                nop
        .Lhere: nop
        restore_all:
                ret
        """))
    assert d.routines["main"].instrs[0].args == (Target("other", 1),)
    assert "restore_all" in d.routines  # `name:` in column 0 starts a routine


def test_routine_without_a_final_jump_falls_through(tmp_path: Path) -> None:
    d = parse(tmp_path, BASE + textwrap.dedent("""\
        ENTRY(main)
                pushq $1
        function between {
            return;
        }
        ENTRY(second)
                popq %rax
                hlt
        ENTRY(last)
                nop
        """))
    main = d.routines["main"].instrs
    assert main[-1].op == "jmp" and main[-1].args == (Target("second", 0),)
    assert "falls through to second" in main[-1].text
    assert main[-1].loc == main[-2].loc
    # hlt resumes at the next instruction: it falls through too
    assert d.routines["second"].instrs[-1].args == (Target("last", 0),)
    # nothing after the last routine: running off its end is an incident
    assert d.routines["last"].instrs[-1].op == "c.fell_off"


@pytest.mark.parametrize("last", ["jmp main", "ret", "iretq", "sysretq", "ud2"])
def test_routines_ending_in_a_jump_do_not_fall_through(tmp_path: Path, last: str) -> None:
    tail = f"ENTRY(main)\n        nop\n        {last}\nENTRY(next)\n        ret\n"
    d = parse(tmp_path, BASE + tail)
    assert len(d.routines["main"].instrs) == 2


def test_operand_forms(tmp_path: Path) -> None:
    d = parse(tmp_path, BASE + textwrap.dedent("""\
        const OFF = 8
        ENTRY(main)
                movq $top(primary)-8, %rax
                movq OFF(%rsp), %rbx
                movq (%rsp), %rbx
                movabsq %rax, top(primary)-16
                leaq 1f(%rip), %rcx
                leaq -8(%rsp), %rdx
        1:      movl %eax, 4(%rsp)
                cmpl $2, 4(%rsp)
                testb $3, 8(%rsp)
                cmpw $1, %ax
                mov %ax, %ss
                ret
        """))
    i = d.routines["main"].instrs
    assert i[0].args == (Imm(("binop", "-", ("top", "primary"), ("const", 8))), Reg("rax"))
    assert i[1].args == (Mem("rsp", 8), Reg("rbx"))
    assert i[2].args == (Mem("rsp", 0), Reg("rbx"))
    assert i[3].args == (Reg("rax"), Abs(("binop", "-", ("top", "primary"), ("const", 16))))
    assert i[4].args == (RipRel(("main", 6)), Reg("rcx"))
    assert i[5].args == (Mem("rsp", -8 % 2**64), Reg("rdx"))  # addresses wrap mod 2^64
    assert i[6].op == "mov" and i[6].args == (Reg("rax", 4), Mem("rsp", 4, 4))
    assert i[6].width == 32
    assert (i[7].op, i[7].width) == ("cmp", 32) and i[7].args[1] == Mem("rsp", 4, 4)
    assert (i[8].op, i[8].width) == ("test", 8) and i[8].args[1] == Mem("rsp", 8, 1)
    assert (i[9].op, i[9].width) == ("cmp", 16)
    assert i[10].op == "mov_ss"


def test_rep_movsq_and_lidt_empty(tmp_path: Path) -> None:
    tail = "idt t\nend\nENTRY(main)\n        rep movsq\n        lidt empty\n        lidt t\n"
    d = parse(tmp_path, BASE + tail + "        ret\n")
    i = d.routines["main"].instrs
    assert i[0].op == "movsq" and i[0].text == "rep movsq"
    assert i[1].op == "lidt" and i[1].args[0].name == "empty"  # type: ignore[attr-defined]
    assert i[2].args[0].name == "t"  # type: ignore[attr-defined]


# -- @fault ----------------------------------------------------------------------------------------


def test_fault_marks_asm_and_pseudo_c_steps(tmp_path: Path) -> None:
    d = parse(tmp_path, BASE + textwrap.dedent("""\
        var x = 0
        ENTRY(main)
                movq (%rsp), %rax @fault(#PF)
        1:      iretq @fault(#GP)
        function f {
            x = 1 @fault(#PF);
            nop() @fault(#BP);
            atomic_inc(x) @fault(#MC);
            if (x) {
                x = 2;
            }
        }
        """))
    asm = d.routines["main"].instrs
    assert [i.fault for i in asm] == [PF, GP]
    assert asm[0].text == "movq (%rsp), %rax"
    f = d.routines["f"].instrs
    assert [i.fault for i in f[:3]] == [PF, 3, 18]
    assert all(i.fault is None for i in f[3:])


# -- pseudo-C lowering -----------------------------------------------------------------------------


def test_if_else_if_else_chain(tmp_path: Path) -> None:
    d = parse(tmp_path, FN_BASE + textwrap.dedent("""\
        var x = 0
        var y = 0
        function f {
            if (x == 1) {
                y = 1;
            } else if (x == 2) {
                y = 2;
            } else if (x == 3) {
                y = 3;
            } else {
                y = 4;
            }
            y++;
        }
        """))
    i = d.routines["f"].instrs
    assert [x.op for x in i] == [
        "c.branch_false", "c.assign", "jmp",
        "c.branch_false", "c.assign", "jmp",
        "c.branch_false", "c.assign", "jmp",
        "c.assign", "c.assign", "ret",
    ]
    end = Target("f", 10)
    assert [x.args[-1] for x in i if x.op == "jmp"] == [end, end, end]
    # each failed test goes to the next test, the last one to the else
    assert [x.args[-1] for x in i if x.op == "c.branch_false"] == [
        Target("f", 3), Target("f", 6), Target("f", 9),
    ]


def test_nested_if_without_else(tmp_path: Path) -> None:
    d = parse(tmp_path, FN_BASE + textwrap.dedent("""\
        var x = 0
        function f {
            if (x) {
                if (x > 1) { x = 0; }
                x--;
            }
            return;
        }
        """))
    i = d.routines["f"].instrs
    assert [x.op for x in i] == ["c.branch_false", "c.branch_false", "c.assign", "c.assign",
                                 "ret", "ret"]
    assert i[0].args[-1] == Target("f", 4) and i[1].args[-1] == Target("f", 3)


def test_loops(tmp_path: Path) -> None:
    d = parse(tmp_path, FN_BASE + textwrap.dedent("""\
        var i = 0
        var n = 0
        function f {
            for (i = 0; i < 4; i++) {
                n += i;
            }
            while (n) {
                n--;
            }
            while (1) {
                halt();
            }
        }
        function g {
            for (;;) {
                stop();
            }
        }
        """))
    i = d.routines["f"].instrs
    assert [x.op for x in i] == [
        "c.assign",  # i = 0
        "c.branch_false", "c.assign", "c.assign", "jmp",  # i < 4; n += i; i++; back
        "c.branch_false", "c.assign", "jmp",  # while (n)
        "c.halt", "jmp",  # while (1): no test
        "ret",
    ]
    assert i[1].args[-1] == Target("f", 5) and i[4].args == (Target("f", 1),)
    assert i[5].args[-1] == Target("f", 8) and i[7].args == (Target("f", 5),)
    assert i[9].args == (Target("f", 8),)
    assert [x.op for x in d.routines["g"].instrs] == ["c.stop", "jmp", "ret"]


def test_increments_compound_assignments_and_arrays(tmp_path: Path) -> None:
    d = parse(tmp_path, FN_BASE + textwrap.dedent("""\
        var a[4] = 0
        var i = 0
        percpu p = cpu
        function f {
            i++; i--;
            i += 2; i -= 1; i |= 8; i &= 12; i ^= 1;
            a[i] = i + 1;
            a[1] += 3;
            p[1] = 7;
            p = p + 1;
            atomic_inc(i); atomic_dec(&i); atomic_set(i, 5);
        }
        """))
    i = d.routines["f"].instrs
    assert i[0].args == ("i", ("binop", "+", ("var", "i"), ("const", 1)))
    assert i[1].args == ("i", ("binop", "-", ("var", "i"), ("const", 1)))
    assert [x.args[1][1] for x in i[2:7]] == ["+", "-", "|", "&", "^"]  # type: ignore[index]
    assert i[7].op == "c.assign_index" and i[7].args[0] == "a"
    a1 = ("index", "a", ("const", 1))
    assert i[8].args == ("a", ("const", 1), ("binop", "+", a1, ("const", 3)))
    assert i[9].op == "c.assign_index" and i[9].args[0] == "p"
    assert [x.args[0] for x in i[11:14]] == ["i", "i", "i"]
    assert i[13].args[1] == ("const", 5)
    assert [v.length for v in d.variables] == [4, 1, 1]
    assert [v.per_cpu for v in d.variables] == [False, False, True]


def test_atomic_block_and_calls(tmp_path: Path) -> None:
    d = parse(tmp_path, BASE + textwrap.dedent("""\
        var x = 0
        function f {
            atomic {
                x = 1;
                x = x + 1;
            }
            g();
            main();
        }
        function g {
            return;
        }
        ENTRY(main)
                ret
        """))
    i = d.routines["f"].instrs
    assert [x.op for x in i] == ["c.atomic_begin", "c.assign", "c.assign", "c.atomic_end",
                                 "call", "call", "ret"]
    assert i[4].args == (Target("g", 0),) and i[5].args == (Target("main", 0),)


def test_one_line_blocks(tmp_path: Path) -> None:
    d = parse(tmp_path, FN_BASE + textwrap.dedent("""\
        var x = 0
        function f {
            if (x) { x = 1; } else { x = 2; }
            while (x < 5) { x++; }
        }
        """))
    assert [x.op for x in d.routines["f"].instrs] == [
        "c.branch_false", "c.assign", "jmp", "c.assign",
        "c.branch_false", "c.assign", "jmp", "ret",
    ]


def test_builtins_lower_to_their_operations(tmp_path: Path) -> None:
    d = parse(tmp_path, BASE + textwrap.dedent("""\
        stack nmi_ist size 0x1000 per-cpu
        var v = 0
        idt idt_table per-cpu
        end
        tss tss per-cpu
        end
        function f {
            set_gate(idt_table, NMI, main, trap, 3, 2);
            set_gate(idt_table[1], #MC, main);
            set_gate_ist(idt_table, 2, 0);
            set_ist(tss[1], 2, none);
            set_ist(tss, 2, nmi_ist);
            set_rsp0(tss, primary);
            lidt(empty); lidt(idt_table[0]); ltr(tss);
            send_nmi(ALL_BUT_SELF); send_nmi(1);
            wait_until(v == 1); wait_timeout(v == 2);
            assert(v != 3);
            choose(v, 1, 2, 3); choose_range(v, 0, 7);
            cli(); sti(); halt(); clear_mcip(); write_cr4_mce(0); free_init(); nop(); stop();
        }
        ENTRY(main)
                ret
        """))
    i = d.routines["f"].instrs
    assert i[0].op == "c.set_gate"
    assert i[0].args == (("var", "idt_table"), ("const", 2), Target("main", 0), "trap", "3", "2")
    assert i[1].args[:3] == (("index", "idt_table", ("const", 1)), ("const", 18), Target("main", 0))
    assert [x.op for x in i[2:]] == [
        "c.set_gate_ist", "c.set_ist", "c.set_ist", "c.set_rsp0", "c.lidt", "c.lidt", "c.ltr",
        "c.send_nmi", "c.send_nmi", "c.wait_until", "c.wait_timeout", "c.assert", "c.choose",
        "c.choose_range", "c.cli", "c.sti", "c.halt", "c.clear_mcip", "c.write_cr4_mce",
        "c.free_init", "c.nop", "c.stop", "ret",
    ]


def test_expressions_read_the_documented_names(tmp_path: Path) -> None:
    d = parse(tmp_path, FN_BASE + textwrap.dedent("""\
        var v = 0
        var a[2] = 0
        percpu p = 0
        stack s size 0x100 per-cpu
        function f {
            v = cpu + smp_processor_id() + smp_processor_id + ncpus + %rax + %rsp;
            v = top(primary) + top(s) + top(s[1]) + mem(%rsp + 8) + nmi_blocked();
            v = per_cpu(p, 1) + p[0] + p + a[1];
        }
        """))
    a, b, c, _ = d.routines["f"].instrs
    assert ("cpu",) in _leaves(a.args[1]) and ("ncpus",) in _leaves(a.args[1])
    assert ("reg", "rsp") in _leaves(a.args[1])
    assert ("top", "s[1]") in _leaves(b.args[1]) and ("top", "s") in _leaves(b.args[1])
    assert ("call", "nmi_blocked", ()) in _leaves(b.args[1])
    assert ("call", "per_cpu", (("var", "p"), ("const", 1))) in _leaves(c.args[1])


def _leaves(e: tuple) -> list[tuple]:  # type: ignore[type-arg]
    if e[0] == "binop":
        return _leaves(e[2]) + _leaves(e[3])
    return [e]


# -- instances and initial states ---------------------------------------------------------------


def test_per_cpu_declarations_get_one_instance_per_cpu(tmp_path: Path) -> None:
    d = parse(tmp_path, textwrap.dedent("""\
        cpus 2
        stack primary size 0x2000 per-cpu
        stack nmi_ist size 0x1000 per-cpu
        stack shared size 0x1000
        stack user size 0x1000 owner guest
        stack fixed size 0x100 base 0x100000 per-cpu
        tss tss per-cpu
            rsp0 primary
            ist 2 nmi_ist
        end
        idt idt_table per-cpu
            gate NMI main ist 2
        end
        idt boot_idt
        end
        percpu p = cpu * 10
        var a[3] = 5
        cpu * start main rsp top(primary) idt idt_table tss tss
        ENTRY(main)
                ret
        """))
    layout = build_layout(d, 3)  # the environment's cpus overrides the design's
    names = [r.name for r in layout.regions]
    assert names == [
        "primary[0]", "primary[1]", "primary[2]", "nmi_ist[0]", "nmi_ist[1]", "nmi_ist[2]",
        "shared", "user", "fixed[0]", "fixed[1]", "fixed[2]",
    ]
    by = {r.name: r for r in layout.regions}
    assert by["user"].owner == "guest" and by["user"].lo < 1 << 47
    assert by["primary[0]"].lo >= 1 << 63
    assert [by[f"fixed[{c}]"].lo for c in range(3)] == [0x100000, 0x100100, 0x100200]
    assert layout.resolve("nmi_ist", 1) == "nmi_ist[1]" and layout.resolve("shared", 1) == "shared"
    [m], values = initial_machines(layout)
    assert [c.idtr for c in m.cpus] == ["idt_table[0]", "idt_table[1]", "idt_table[2]"]
    assert [c.tr for c in m.cpus] == ["tss[0]", "tss[1]", "tss[2]"]
    assert [t.name for t in m.idts] == ["idt_table[0]", "idt_table[1]", "idt_table[2]", "boot_idt"]
    assert m.tsss[2].ist[1] == "nmi_ist[2]" and m.tsss[2].rsp0 == "primary[2]"
    assert [c.rsp for c in m.cpus] == [by[f"primary[{c}]"].top for c in range(3)]
    assert values == (0, 10, 20, 5, 5, 5)


def test_alternative_cpu_lines_are_alternative_initial_states(tmp_path: Path) -> None:
    d = parse(tmp_path, textwrap.dedent("""\
        cpus 2
        stack primary size 0x1000 per-cpu
        cpu 0 start a rsp top(primary)
        cpu 0 start b rsp top(primary) cpl 3
        cpu * start a halted
        cpu * start b if 1 nmi-blocked mce 0 %rax=cpu+1
        ENTRY(a)
                ret
        ENTRY(b)
                ret
        """))
    machines, _ = initial_machines(build_layout(d, 3))
    assert len(machines) == 2 * 2 * 2
    starts = {tuple(c.pc.routine for c in m.cpus) for m in machines}
    assert ("a", "a", "b") in starts and ("b", "b", "a") in starts
    cpu2_b = next(m.cpus[2] for m in machines if m.cpus[2].pc.routine == "b")
    assert cpu2_b.nmi_blocked and not cpu2_b.cr4_mce and cpu2_b.reg("rax") == 3
    assert cpu2_b.rflags & (1 << 9)
    cpu0_b = next(m.cpus[0] for m in machines if m.cpus[0].pc.routine == "b")
    assert cpu0_b.cpl == 3


def test_design_header(tmp_path: Path) -> None:
    d = parse(tmp_path, BASE + textwrap.dedent("""\
        design xen_demo "A demo"
        cpus 3
        symmetric
        vendor amd
        df_rule strict
        lstar main
        section .init.text
        ENTRY(main)
                ret
        """))
    assert (d.name, d.title, d.cpus, d.symmetric, d.vendor, d.df_rule, d.lstar) == (
        "xen_demo", "A demo", 3, True, "amd", "strict", "main",
    )
    assert d.routines["main"].section == ".init.text"
