"""Regression tests for wrong verdicts fixed in earlier rounds (issues 13 and 14).

Each test is a small design and a property file checked through the command line, and
asserts the verdict the model must give; its docstring names the bug it guards against.
The three reproducers of issue 13 (POR and a cross-CPU stack write, the --compact hash
collision, an unchecked `symmetric` declaration) are in tests/test_reduction_soundness.py,
a wild return giving the `wild-jump` incident in tests/test_wild_jump.py.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from checker import cli
from model.system.provider import DesignProvider


def verdicts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], design: str, properties: str,
    *flags: str,
) -> dict[str, str]:
    """{property: verdict} of `properties` (TOML, [[property]] tables only) on `design`."""
    (tmp_path / "t.design").write_text(textwrap.dedent(design))
    (tmp_path / "t.toml").write_text('design = "./t.design"\n' + textwrap.dedent(properties))
    capsys.readouterr()
    code = cli.main([str(tmp_path / "t.toml"), "--report-dir", str(tmp_path / "r"),
                     "--format", "json", "--workers", "1", *flags], DesignProvider())
    out = capsys.readouterr()
    assert code in (0, 1), out.out + out.err
    return {r["name"]: r["verdict"] for r in json.loads(out.out)["results"]}


def prop(name: str, kind: str, expr: str, expect: str, extra: str = "") -> str:
    return (f'[[property]]\nname = "{name}"\nkind = "{kind}"\nexpr = "{expr}"\n'
            f'expect = "{expect}"\n{extra}\n')


# -- a symbolic input keeps its declared range ---------------------------------------------------

SYMBOLIC_RANGE = """\
    cpus 1
    stack kstack size 0x1000 per-cpu
    var x = 0
    var v = 0
    input small = 5..10
    cpu 0 start main cpl 0 rsp top(kstack)
    function main {
        input(v, small);
        x = 1;
        x = 2;
        if (v < 5) {
            x = 7;
        }
        if (v > 10) {
            x = 7;
        }
        if (v == 10) {
            x = 3;
        }
        stop();
    }
"""


@pytest.mark.parametrize("flags", [(), ("--por",)])
def test_a_symbolic_input_keeps_its_range_in_the_path_condition(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: tuple[str, ...]
) -> None:
    """Bug: the range `LOW..HIGH` of a symbolic input was dropped from the path condition
    at the next step, so branches on values outside it looked feasible (a false alarm,
    and any property relying on the range was judged on other inputs)."""
    props = ('environment = { symbolic = ["small"] }\n'
             + prop("outside-range", "never", "x == 7", "holds")
             + prop("top-of-range", "reachable", "x == 3", "holds"))
    assert verdicts(tmp_path, capsys, SYMBOLIC_RANGE, props, *flags) == {
        "outside-range": "holds", "top-of-range": "holds",
    }


# -- send_nmi(SELF): every outcome of an invalid shorthand ---------------------------------------

SELF_NMI = """\
    cpus 1
    stack kstack size 0x1000 per-cpu
    var handled = 0
    var done = 0
    idt idt
        gate NMI nmi_handler
    end
    cpu 0 start main cpl 0 rsp top(kstack) idt idt
    function main {
        send_nmi(SELF);
        done = 1;
        for (;;) {
            halt();
        }
    }
    ENTRY(nmi_handler)
            incq handled
            iretq
"""


def test_send_nmi_self_explores_every_outcome(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bug: `send_nmi(SELF)` (an invalid NMI shorthand, SDM Vol. 3A Table 11-3: every
    outcome is explored) inside `atomic { }` took its first outcome only (the IPI
    dropped), so `never handled == 1` held. Outside `atomic` both outcomes are explored;
    inside it the statement is refused, at its line."""
    props = (prop("nmi-never-handled", "never", "handled == 1", "violated")
             + prop("ipi-dropped", "reachable",
                    "done == 1 and handled == 0 and cpu[0].halted", "holds"))
    assert verdicts(tmp_path, capsys, SELF_NMI, props) == {
        "nmi-never-handled": "violated", "ipi-dropped": "holds",
    }
    atomic = SELF_NMI.replace("        send_nmi(SELF);\n        done = 1;\n",
                              "        atomic {\n            send_nmi(SELF);\n"
                              "            done = 1;\n        }\n")
    (tmp_path / "t.design").write_text(textwrap.dedent(atomic))
    capsys.readouterr()
    code = cli.main([str(tmp_path / "t.toml"), "--report-dir", str(tmp_path / "r")],
                    DesignProvider())
    err = capsys.readouterr().err
    assert code == 2 and f"{tmp_path / 't.design'}:11:" in err and "several outcomes" in err


# -- XSA-260: MOV SS holds the #DB past SYSCALL ---------------------------------------------------

XSA260 = """\
    knob db_gate = no-ist | ist
    knob trigger = breakpoint | fault
    cpus 1
    lstar lstar_stub
    var user_ss = 0x2b
    stack primary     size 0x1000 per-cpu
    stack db_ist      size 0x1000 per-cpu
    stack guest_stack size 0x1000 owner guest per-cpu
    tss tss per-cpu
        rsp0 primary
        ist 3 db_ist
    end
    idt idt per-cpu
    .if db_gate == ist
        gate #DB  entry_DB  interrupt ist 3
    .else
        gate #DB  entry_DB  interrupt
    .endif
        gate #BP  entry_BP  interrupt dpl 3
    end
    .if trigger == breakpoint
    breakpoint rw user_ss len 2
    .endif
    cpu * start guest cpl 3 idt idt tss tss rsp top(guest_stack) if 1
    ENTRY(lstar_stub)
            nop
            cli
            hlt
    ENTRY(entry_DB)
            cli
            hlt
    ENTRY(entry_BP)
            nop
            cli
            hlt
    GUEST(guest)
    .if trigger == breakpoint
            mov   user_ss, %ss
    .else
            movl  $0x2b, %eax
            mov   %ax, %ss  @fault(#DB)
    .endif
            syscall
    9:      jmp   9b
"""


@pytest.mark.parametrize("trigger", ["breakpoint", "fault"])
def test_xsa260_mov_ss_syscall_db_without_ist_writes_a_frame_to_guest_memory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], trigger: str
) -> None:
    """Bug (XSA-260, SDM §6.8.3): the #DB a MOV SS raises was not held past the next
    instruction, so `mov ..., %ss; syscall` into a #DB gate without IST gave a false
    `holds` for "no ring-0 frame is written to guest memory". With an IST it holds."""
    faults = 'environment = { faults = 1 }\n' if trigger == "fault" else ""
    props = (prop("no-ist", "never", "frame_on_guest_stack", "violated",
                  f'variant = {{ db_gate = "no-ist", trigger = "{trigger}" }}\n{faults}')
             + prop("ist", "never", "frame_on_guest_stack", "holds",
                    f'variant = {{ db_gate = "ist", trigger = "{trigger}" }}\n{faults}')
             + prop("ist-db-at-ring0", "reachable",
                    "any(f.vector == DB and f.from_cpl == 0 for f in frames)", "holds",
                    f'variant = {{ db_gate = "ist", trigger = "{trigger}" }}\n{faults}'))
    assert verdicts(tmp_path, capsys, XSA260, props) == {
        "no-ist": "violated", "ist": "holds", "ist-db-at-ring0": "holds",
    }


def test_xsa260_mov_ss_int3_db_lands_at_ring0_on_the_bp_handler(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bug (CVE-2018-8897, SDM §6.8.3): after `mov ..., %ss; int3` the held #DB is
    delivered at CPL 0 on the #BP handler's first instruction; the model had let INT3's
    delivery drop it, so a #DB taken at ring 0 with the guest's state looked unreachable."""
    design = XSA260.replace("        syscall\n", "        int3\n")
    props = prop("db-in-bp-handler", "never",
                 "any(f.vector == DB and f.from_cpl == 0 for f in frames)", "violated",
                 'variant = { db_gate = "no-ist", trigger = "breakpoint" }\n')
    assert verdicts(tmp_path, capsys, design, props) == {"db-in-bp-handler": "violated"}


# -- @fault(#DB) is a trap after the instruction -------------------------------------------------

FAULT_DB = """\
    cpus 1
    var seen = 0
    stack kstack size 0x1000 per-cpu
    idt idt
        gate #DB db_handler
    end
    cpu 0 start main cpl 0 rsp top(kstack) idt idt
    ENTRY(main)
            movq  $5, %rbx  @fault(#DB)
    1:      hlt
            jmp   1b
    ENTRY(db_handler)
            movq  %rbx, seen
            iretq
"""


def test_fault_db_is_a_trap_taken_after_the_instruction(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bug: `@fault(#DB)` was raised as a fault before the instruction (its effect lost,
    the frame saving the instruction itself); a data breakpoint's #DB is a trap (SDM
    §17.3.1.2): the handler sees the instruction's result."""
    props = ('environment = { faults = 1 }\n'
             + prop("handler-sees-old-rbx", "never", "seen != 0 and seen != 5", "holds")
             + prop("handler-runs", "reachable", "seen == 5", "holds"))
    assert verdicts(tmp_path, capsys, FAULT_DB, props) == {
        "handler-sees-old-rbx": "holds", "handler-runs": "holds",
    }


# -- IRET checks its segments --------------------------------------------------------------------

IRET_FRAME = """\
    knob frame = good | null_ss | null_cs | zero
    cpus 1
    var in_guest = 0
    stack kstack size 0x1000 per-cpu
    stack guest_stack size 0x1000 owner guest per-cpu
    idt idt
        gate #GP gp_handler
    end
    cpu 0 start main cpl 0 rsp top(kstack) idt idt
    ENTRY(main)
    .if frame == zero
            subq  $40, %rsp
    .else
    .if frame == null_ss
            pushq $0
    .else
            pushq $0x2b
    .endif
            pushq $top(guest_stack)
            pushq $0x202
    .if frame == null_cs
            pushq $0
    .else
            pushq $0x33
    .endif
            leaq  g(%rip), %rax
            pushq %rax
    .endif
            iretq
    ENTRY(gp_handler)
    1:      hlt
            jmp   1b
    GUEST(g)
            movq  $1, in_guest
    2:      jmp   2b
"""


@pytest.mark.parametrize("frame", ["null_ss", "null_cs", "zero"])
def test_iret_with_a_bad_frame_faults_instead_of_returning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], frame: str
) -> None:
    """Bug (SDM Vol. 2 IRET, IA-32e-MODE-RETURN): IRET did no segment checks, so a frame
    with SS = 0 or CS = 0 going to CPL 3, or a frame of zero words, returned (the zero
    frame ran guest code at CPL 0 with RSP 0) where the CPU raises #GP."""
    props = (prop("never-returns", "never", "in_guest == 1", "holds",
                  f'variant = {{ frame = "{frame}" }}\n')
             + prop("gp-taken", "reachable", "running(0, 'gp_handler')", "holds",
                    f'variant = {{ frame = "{frame}" }}\n')
             + prop("good-frame-returns", "reachable", "in_guest == 1", "holds",
                    'variant = { frame = "good" }\n'))
    assert verdicts(tmp_path, capsys, IRET_FRAME, props) == {
        "never-returns": "holds", "gp-taken": "holds", "good-frame-returns": "holds",
    }


# -- no TR loaded: the reset TR's RSP0/IST words are unknown -----------------------------------

NO_TR_NMI = """\
    cpus 1
    stack kstack size 0x1000 per-cpu
    stack nmi_stack size 0x1000 per-cpu
    idt idt per-cpu
        gate NMI nmi_handler interrupt ist 1
        gate #PF fatal interrupt
        gate #SS fatal interrupt
    end
    cpu 0 start main cpl 0 idt idt rsp top(kstack)
    ENTRY(main)
    1:      nop
            jmp   1b
    ENTRY(nmi_handler)
            iretq
    ENTRY(fatal)
            hlt
"""


def test_no_tr_nmi_may_reach_its_handler_on_an_unknown_stack(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bug (SDM Vol. 3A §9.1.1, Table 9-1): before LTR the TR has base 0, so an IST1
    delivery reads its stack pointer from linear 0x24, a word the design never wrote. The
    model read it as 0 (the pushes wrap and fault, #PF), so "an NMI before LTR never
    reaches its handler" held; the word is unknown, and a value on a mapped stack delivers
    the NMI. `unwritten_unknown = false` keeps the old answer as a stated assumption."""
    expr = "any(f.vector == 2 for f in frames)"
    props = (prop("nmi-never-handled", "never", expr, "violated",
                  "environment = { nmi = 1 }\n")
             + prop("nmi-never-handled-if-zero", "never", expr, "holds",
                    "environment = { nmi = 1, unwritten_unknown = false }\n"))
    assert verdicts(tmp_path, capsys, NO_TR_NMI, props) == {
        "nmi-never-handled": "violated", "nmi-never-handled-if-zero": "holds",
    }


def test_a_holds_under_the_no_tr_opt_out_says_what_it_assumes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """A "holds" that only the opt-out `unwritten_unknown = false` makes true names that
    assumption in its message; the default run (every value explored) names none, and a
    witness (`reachable` holds) claims nothing of every state, so it names none, where no
    witness in any state (`reachable` violated) does. The witness's value for the unknown
    word replays concretely (model.x86.delivery.with_unwritten_values)."""
    expr = "any(f.vector == 2 for f in frames)"
    props = (prop("nmi-never-handled-if-zero", "never", expr, "holds",
                  "environment = { nmi = 1, unwritten_unknown = false }\n")
             + prop("nmi-handled", "reachable", expr, "holds", "environment = { nmi = 1 }\n")
             + prop("nmi-handled-if-zero", "reachable", expr, "violated",
                    "environment = { nmi = 1, unwritten_unknown = false }\n"))
    (tmp_path / "t.design").write_text(textwrap.dedent(NO_TR_NMI))
    (tmp_path / "t.toml").write_text('design = "./t.design"\n' + props)
    capsys.readouterr()
    code = cli.main([str(tmp_path / "t.toml"), "--report-dir", str(tmp_path / "r"),
                     "--format", "json", "--workers", "1"], DesignProvider())
    out = capsys.readouterr()
    assert code == 0, out.out + out.err
    messages = {r["name"]: r["message"] for r in json.loads(out.out)["results"]}
    said = "assuming unwritten reset-TSS words read 0"
    assert said in messages["nmi-never-handled-if-zero"]
    assert said not in messages["nmi-handled"]
    assert said in messages["nmi-handled-if-zero"]
    # the witness's value of the unknown word is read back by the concrete re-run
    assert "unwritten@0x24=" in messages["nmi-handled"]
    assert "replayed concretely without z3: reproduces" in messages["nmi-handled"]


# -- frame_clobbered: a handler's own edit is not damage -----------------------------------------

OWN_EDIT = """\
    knob writer = handler | other_cpu
    cpus 2
    var resumed = 0
    stack kstack size 0x1000 per-cpu
    idt idt
        gate NMI nmi_handler
    end
    cpu 0 start idle cpl 0 rsp top(kstack) idt idt
    cpu 1 start other cpl 0 rsp top(kstack) idt idt
    ENTRY(idle)
    1:      hlt
            jmp   1b
    ENTRY(fixup)
            movq  $1, resumed
    2:      hlt
            jmp   2b
    ENTRY(nmi_handler)
    .if writer == handler
            leaq  fixup(%rip), %rax
            movq  %rax, (%rsp)
    .endif
            iretq
    ENTRY(other)
    .if writer == other_cpu
            movq  $0, top(kstack[0])-40
    .endif
    3:      hlt
            jmp   3b
"""


def test_a_handlers_own_edit_of_its_frame_is_not_a_clobber(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bug: frame_clobbered counted a handler's deliberate edit of its own frame (a fixup
    storing the resume address into the saved RIP) as a clobber, a false alarm on a
    correct kernel; a store into the frame by another CPU still is one."""
    env = 'environment = { nmi = [1, 0] }\n'
    props = (prop("own-edit", "never", "frame_clobbered", "holds",
                  f'variant = {{ writer = "handler" }}\n{env}')
             + prop("own-edit-seen", "reachable", "frame_modified_by_handler", "holds",
                    f'variant = {{ writer = "handler" }}\n{env}')
             + prop("resumes-at-fixup", "reachable", "resumed == 1", "holds",
                    f'variant = {{ writer = "handler" }}\n{env}')
             + prop("other-cpu", "never", "frame_clobbered", "violated",
                    f'variant = {{ writer = "other_cpu" }}\n{env}'))
    assert verdicts(tmp_path, capsys, OWN_EDIT, props) == {
        "own-edit": "holds", "own-edit-seen": "holds", "resumes-at-fixup": "holds",
        "other-cpu": "violated",
    }


# -- this round's x86 rules (issue 14): each was a wrong "holds" before its rule ------------------

ROOT = Path(__file__).resolve().parent.parent

# The shipped property that would have given a wrong verdict without the rule, and the
# verdict it must give: LSS loaded a not-present SS without #SS (and cpu[i].ss showed the
# design's default selector, so the LSS properties could not tell); VERW set ZF for a
# code segment; IRET read its frame from a user page under SMAP; IRET to a 16-bit SS
# restored the whole RSP; a delivery's pushes on a watched address never raised #DB.
THIS_ROUND = {
    "x86_conformance.toml": {
        "lss-of-a-not-present-ss-never-loads-it": "holds",
        "lss-of-a-not-present-ss-raises-ss": "holds",
        "verw-of-a-code-segment-clears-zf": "holds",
        "iret-frame-on-user-page-never-returns-under-smap": "holds",
        "iret-to-16bit-ss-leaks-kernel-rsp-bits": "violated",
    },
    "x86_debug.toml": {
        "delivery-pushes-on-a-watched-address-may-raise-db": "holds",
        "tf-syscall-either-fmask-db-on-guest-stack": "violated",
    },
}


@pytest.mark.parametrize("file", sorted(THIS_ROUND))
def test_this_rounds_x86_rules_give_their_verdicts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], file: str,
) -> None:
    """SDM Vol. 2 LSS, VERR/VERW and IRET (IA-32e-MODE-RETURN), Vol. 3A §4.6 (SMAP) and
    §6.14.3 (a 16-bit SS on return), Vol. 3B §17.3.1.2 (data breakpoints): each shipped
    property keeps the verdict its rule gives, in the property file as shipped."""
    wanted = THIS_ROUND[file]
    selected = [flag for name in wanted for flag in ("--property", name)]
    capsys.readouterr()
    code = cli.main([str(ROOT / "properties" / file), *selected, "--report-dir",
                     str(tmp_path / "r"), "--format", "json", "--workers", "1"],
                    DesignProvider())
    out = capsys.readouterr()
    assert code == 0, out.out + out.err
    got = {r["name"]: r["verdict"] for r in json.loads(out.out)["results"]}
    assert got == wanted


# -- POR: an address computed into another CPU's stack -------------------------------------------

CROSS_STACK = """\
    cpus 2
    stack kstack size 0x1000 {base}per-cpu
    percpu got = 0
    cpu {writer} start writer cpl 0 rsp top(kstack){start}
    cpu {reader} start reader cpl 0 rsp top(kstack)
    ENTRY(writer)
    {code}
            jmp done
    ENTRY(reader)
            pushq $1
            popq %rbx
            jmp rec
    function rec {{
        got = %rbx;
        stop();
    }}
    function done {{
        stop();
    }}
"""
# Per-CPU stacks without a base lie 0x10000 apart (model/system/layout.py SLOT): each
# writer reaches the word the reader pushes to and pops back.
COMPUTED_ADDRESSES = {
    "displacement": dict(code="movq $0xbad, 0x10000-8(%rsp)", reader=1),
    "top-plus-offset": dict(code="movq $0xbad, top(kstack)+0x10000-8", reader=1),
    "computed-rsp": dict(code="mov %rsp, %rax\n        subq $0x10000, %rax\n"
                         "        mov %rax, %rsp\n        pushq $0xbad", reader=0),
    "iret-frame": dict(code="pushq $0\n        pushq $0\n        pushq $2\n"
                       "        pushq $8\n        leaq 1f(%rip), %rcx\n        pushq %rcx\n"
                       "        movq $top(kstack), %rax\n        subq $0x10000, %rax\n"
                       "        movq %rax, 24(%rsp)\n        iretq\n    1:\n"
                       "        pushq $0xbad", reader=0),
    "adjacent-overflow": dict(code="pushq $0\n        pushq $0xbad", reader=0,
                              base="base 0xffff830000100000 ", start="-0xff8"),
}


@pytest.mark.parametrize("flags", [(), ("--por",), ("--symmetry", "off", "--por")])
@pytest.mark.parametrize("case", sorted(COMPUTED_ADDRESSES))
def test_por_sees_an_address_computed_into_another_cpus_stack(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, flags: tuple[str, ...]
) -> None:
    """Bug: --por judged a CPU's steps persistent when no other CPU held an address in its
    stack, but another CPU can compute one (a displacement off %rsp, `top(s)+c`, `sub`
    then `mov %rax, %rsp` or an IRET frame's RSP, or a push over the edge of a stack that
    borders the next CPU's): the write between the reader's push and pop was never explored and
    `never got == 0xbad` held (a false "holds"); the plain run finds it."""
    spec: dict[str, object] = {"base": "", "start": "", **COMPUTED_ADDRESSES[case]}
    reader = int(str(spec["reader"]))
    design = CROSS_STACK.format(
        base=spec["base"], start=spec["start"], code=spec["code"], reader=reader,
        writer=1 - reader,
    )
    props = prop("never-bad", "never", f"got[{reader}] == 0xbad", "violated")
    assert verdicts(tmp_path, capsys, design, props, *flags) == {"never-bad": "violated"}
