"""Seed 003 (Andrew Cooper, "x86/kexec: Change NMI and MCE handling on kexec path"): the
three routines the patch adds to entry.S parse as posted, and enable_nmis does what its
comment says when the model runs it.

Only comments and symbolic constants are adapted: `TRAP_nmi` and `__HYPERVISOR_CS` become
`const` lines and `SAVE_ALL` a macro; the instruction lines are the patch's, byte for byte.
"""

from __future__ import annotations

import re
from collections import deque
from pathlib import Path

import pytest

from model.lang.ir import Design, RipRel, Target
from model.lang.parser import parse_design, strip_comments
from model.system.interp import SysState
from model.system.transition import Action, DesignSystem, Environment
from model.x86.state import CodeAddr, Run

ROOT = Path(__file__).resolve().parent.parent

# The entry.S hunk of the patch, as quoted in the xen-devel reply (the `> +` lines).
PATCH_HUNK = """\
> +ENTRY(nmi_crash)
> +        cli
> +        pushq $0
> +        movl $TRAP_nmi,4(%rsp)
> +        SAVE_ALL
> +        movq %rsp,%rdi
> +        callq do_nmi_crash /* Does not return */
> +        ud2
> +
>  ENTRY(machine_check)
>          pushq $0
>          movl  $TRAP_machine_check,4(%rsp)
>          jmp   handle_ist_exception
>
> +/* No op trap handler.  Required for kexec path. */
> +ENTRY(trap_nop)
> +        iretq
> +
> +/* Enable NMIs.  No special register assumptions, and all preserved. */
> +ENTRY(enable_nmis)
> +        push %rax
> +        movq %rsp, %rax /* Grab RSP before pushing */
> +
> +        /* Set up stack frame */
> +        pushq $0               /* SS */
> +        pushq %rax             /* RSP */
> +        pushfq                 /* RFLAGS */
> +        pushq $__HYPERVISOR_CS /* CS */
> +        leaq  1f(%rip),%rax
> +        pushq %rax             /* RIP */
> +
> +        iretq /* Disable the hardware NMI latch */
> +1:
> +        popq %rax
> +        retq
"""

ADDED = "\n".join(
    line[3:] for line in PATCH_HUNK.splitlines() if line.startswith("> +")
) + "\n"

# What the patch's routines need around them: the constants and macro they use, the C
# function nmi_crash calls (crash.c's do_nmi_crash, abridged) and a caller, machine_kexec.
PRELUDE = """\
const TRAP_nmi = 2
const __HYPERVISOR_CS = 0xe008
# Xen's ring-0 code segment, which the hand-made IRET frame names (the GDT has it).
selector hypervisor_cs = 0xe008

stack primary size 0x1000
percpu crash_save_done = 0
var waiting_for_crash_ipi = 1
var crashing_cpu = 7

.macro SAVE_ALL
        pushq %rdi
        pushq %rsi
        pushq %rax
        pushq %rcx
.endm

idt idt_table
    gate NMI {nmi_handler}
end

{cpu_lines}

GLOBAL(machine_kexec)
        cli
        call enable_nmis
        hlt
        jmp machine_kexec

function do_nmi_crash {{
    assert(crashing_cpu != cpu);
    if (!this_cpu_crash_save_done()) {{
        crash_save_done = 1;
        atomic_dec(waiting_for_crash_ipi);
    }}
    send_nmi(cpu);
    for (;;) {{
        halt();
    }}
}}

"""

KEXEC_CPU = (
    "cpu 0 start machine_kexec idt idt_table rsp top(primary) nmi-blocked "
    "%rax=0x1234 %rdi=0x77"
)


def write_design(tmp_path: Path, nmi_handler: str = "trap_nop", cpu_lines: str = KEXEC_CPU) -> Path:
    prelude = PRELUDE.format(nmi_handler=nmi_handler, cpu_lines=cpu_lines)
    # `this_cpu(crash_save_done)` is a plain read of the per-CPU variable in the language
    prelude = prelude.replace("this_cpu_crash_save_done()", "crash_save_done")
    path = tmp_path / "kexec.design"
    path.write_text(prelude + ADDED)
    return path


def routine_lines(text: str, name: str) -> list[str]:
    """The instruction lines of routine `name` in `text`, comments stripped, as written."""
    lines = strip_comments(text)
    start = lines.index(f"ENTRY({name})")
    out = []
    for line in lines[start + 1 :]:
        if line.startswith("ENTRY(") or line.startswith(".endif"):
            break
        if line.strip() and not re.fullmatch(r"\s*\d+:", line):
            out.append(line.strip())
    return out


# -- parsing ------------------------------------------------------------------------------------


def test_the_added_lines_are_the_three_routines() -> None:
    assert [line for line in ADDED.splitlines() if line.startswith("ENTRY(")] == [
        "ENTRY(nmi_crash)", "ENTRY(trap_nop)", "ENTRY(enable_nmis)",
    ]


@pytest.fixture
def design(tmp_path: Path) -> Design:
    return parse_design(write_design(tmp_path))


@pytest.mark.parametrize("name", ["nmi_crash", "trap_nop", "enable_nmis"])
def test_each_routine_parses_line_for_line(design: Design, name: str) -> None:
    routine = design.routines[name]
    assert routine.kind == "asm" and not routine.guest
    expected = routine_lines(ADDED, name)
    # SAVE_ALL expands to the macro body; every other line is one instruction, verbatim
    texts = [i.text for i in routine.instrs]
    if name == "nmi_crash":
        k = expected.index("SAVE_ALL")
        expected[k : k + 1] = ["pushq %rdi", "pushq %rsi", "pushq %rax", "pushq %rcx"]
    assert texts == expected


def test_instruction_lines_point_at_the_source(design: Design, tmp_path: Path) -> None:
    source = (tmp_path / "kexec.design").read_text().splitlines()
    for name in ("trap_nop", "enable_nmis"):
        for ins in design.routines[name].instrs:
            assert ins.text in source[ins.loc.line - 1]


def test_no_routine_falls_through(design: Design) -> None:
    """ud2, iretq and retq end the three routines: nothing is appended after them."""
    assert design.routines["nmi_crash"].instrs[-1].op == "ud2"
    assert [i.op for i in design.routines["trap_nop"].instrs] == ["iret"]
    assert design.routines["enable_nmis"].instrs[-1].op == "ret"


def test_the_rip_relative_label_is_the_popq(design: Design) -> None:
    instrs = design.routines["enable_nmis"].instrs
    lea = next(i for i in instrs if i.op == "lea")
    assert isinstance(lea.args[0], RipRel)
    routine, index = lea.args[0].target
    assert routine == "enable_nmis"
    assert instrs[index].text == "popq %rax"
    assert instrs[index - 1].op == "iret"


def test_nmi_crash_calls_the_c_function(design: Design) -> None:
    call = next(i for i in design.routines["nmi_crash"].instrs if i.op == "call")
    assert call.args[0] == Target("do_nmi_crash", 0)
    assert call.text == "callq do_nmi_crash"


def test_symbolic_constants_are_folded(design: Design) -> None:
    instrs = design.routines["enable_nmis"].instrs
    cs = next(i for i in instrs if "__HYPERVISOR_CS" in i.text)
    assert cs.args[0].expr == ("const", 0xE008)  # type: ignore[attr-defined]
    movl = next(i for i in design.routines["nmi_crash"].instrs if i.text.startswith("movl"))
    assert movl.args[0].expr == ("const", 2)  # type: ignore[attr-defined]
    assert movl.args[1].disp == 4 and movl.args[1].size == 4  # type: ignore[attr-defined]


def test_the_documented_worked_example_is_the_patch() -> None:
    doc = (ROOT / "docs" / "design-language.md").read_text()
    section = doc[doc.index("## Worked example") :]
    block = section.split("```")[1]
    assert block.strip("\n") == ADDED.strip("\n").replace("\n\n\n", "\n\n")


def test_the_kexec_design_carries_the_routines_verbatim() -> None:
    path = ROOT / "model" / "designs" / "xen_kexec.design"
    if not path.exists():
        pytest.skip("xen_kexec.design is not written yet")
    text = path.read_text()
    for name in ("nmi_crash", "trap_nop", "enable_nmis"):
        assert routine_lines(text, name) == routine_lines(ADDED, name), name


# -- running enable_nmis -----------------------------------------------------------------------


def only_step(system: DesignSystem, s: SysState) -> SysState:
    actions = system.actions(s)
    assert actions == [Action("step", 0)], actions
    return system.next_state(s, actions[0])


def test_enable_nmis_unblocks_nmis_and_returns_balanced(tmp_path: Path) -> None:
    system = DesignSystem(parse_design(write_design(tmp_path)), Environment())
    [s] = system.init_states()
    top = system.platform.region("primary").top
    cpu = s.machine.cpus[0]
    assert cpu.nmi_blocked and cpu.rsp == top
    s = only_step(system, s)  # cli
    flags_before = s.machine.cpus[0].rflags
    s = only_step(system, s)  # call enable_nmis
    assert s.machine.cpus[0].pc == CodeAddr("enable_nmis", 0)
    seen_blocked = []
    while s.machine.cpus[0].pc.routine == "enable_nmis":
        seen_blocked.append(s.machine.cpus[0].nmi_blocked)
        s = only_step(system, s)
    cpu = s.machine.cpus[0]
    # back in the caller, just after the call
    assert cpu.pc == CodeAddr("machine_kexec", 2)
    assert system.interp.instr_at(cpu.pc).text == "hlt"  # type: ignore[union-attr]
    # NMIs were blocked up to the IRET and open after it
    iret_at = [i.op for i in system.design.routines["enable_nmis"].instrs].index("iret")
    assert seen_blocked[: iret_at + 1] == [True] * (iret_at + 1)
    assert seen_blocked[iret_at + 1 :] == [False, False]
    assert not cpu.nmi_blocked
    # the stack is balanced and every register preserved ("all preserved")
    assert cpu.rsp == top
    assert cpu.reg("rax") == 0x1234 and cpu.reg("rdi") == 0x77
    assert cpu.rflags == flags_before
    assert cpu.cpl == 0
    # the hand-made frame was consumed by the IRET: nothing is left live
    assert s.machine.frames == ()
    s = only_step(system, s)  # hlt
    assert s.machine.cpus[0].run is Run.HALTED
    assert system.is_terminal(s)


def test_enable_nmis_trace_shows_nmi_going_from_blocked_to_open(tmp_path: Path) -> None:
    system = DesignSystem(parse_design(write_design(tmp_path)), Environment())
    [s] = system.init_states()
    states = [s]
    while system.actions(s):
        s = system.next_state(s, system.actions(s)[0])
        states.append(s)
    shown = [system.describe_state(x)["cpu0.nmi"] for x in states]
    first_open = shown.index("open")
    assert set(shown[:first_open]) == {"blocked"} and set(shown[first_open:]) == {"open"}
    before_open = system.describe_state(states[first_open - 1])["cpu0.pc"]
    assert "iretq" in str(before_open)


def reachable(system: DesignSystem) -> tuple[set[SysState], set[SysState]]:
    """Every reachable state, and those without an enabled action."""
    seen: set[SysState] = set()
    finals: set[SysState] = set()
    queue = deque(system.init_states())
    seen.update(queue)
    while queue:
        s = queue.popleft()
        actions = system.actions(s)
        if not actions:
            finals.add(s)
        for a in actions:
            t = system.next_state(s, a)
            if t not in seen:
                seen.add(t)
                queue.append(t)
    return seen, finals


def test_enable_nmis_with_nmis_arriving_anywhere(tmp_path: Path) -> None:
    """Two NMIs at any boundary, trap_nop as the NMI handler (the crashing CPU's set-up):
    the first is latched until enable_nmis' IRET, and however they interleave the CPU ends
    halted in machine_kexec with its stack balanced, NMIs open and no frame left."""
    system = DesignSystem(parse_design(write_design(tmp_path)), Environment(nmi=2))
    top = system.platform.region("primary").top
    states, finals = reachable(system)
    assert len(states) > 30
    assert finals
    for s in finals:
        cpu = s.machine.cpus[0]
        assert cpu.run is Run.HALTED
        assert cpu.pc == CodeAddr("machine_kexec", 3)
        assert cpu.rsp == top
        assert cpu.reg("rax") == 0x1234
        assert not cpu.nmi_blocked
        assert s.machine.frames == ()
        assert not any(f.clobbered for x in states for f in x.machine.frames)
    # an NMI that arrived while blocked is latched, then delivered to trap_nop after the IRET
    assert any(x.machine.cpus[0].nmi_pending for x in states)
    assert any(x.machine.cpus[0].pc.routine == "trap_nop" for x in states)


def test_trap_nop_returns_from_an_nmi(tmp_path: Path) -> None:
    cpu_line = "cpu 0 start idle idt idt_table rsp top(primary)\nGLOBAL(idle)\n        hlt\n"
    system = DesignSystem(
        parse_design(write_design(tmp_path, cpu_lines=cpu_line)), Environment(nmi=1)
    )
    [s] = system.init_states()
    s = system.next_state(s, Action("step", 0))  # hlt
    [nmi] = [a for a in system.actions(s) if a.kind == "nmi"]
    s = system.next_state(s, nmi)
    cpu = s.machine.cpus[0]
    assert cpu.pc == CodeAddr("trap_nop", 0) and cpu.nmi_blocked
    assert len(s.machine.frames) == 1
    s = only_step(system, s)  # iretq
    cpu = s.machine.cpus[0]
    assert not cpu.nmi_blocked and s.machine.frames == ()
    assert cpu.rsp == system.platform.region("primary").top
    assert cpu.pc.routine == "idle"


def test_nmi_crash_saves_once_and_parks_the_cpu(tmp_path: Path) -> None:
    cpu_line = "cpu 0 start idle idt idt_table rsp top(primary) if 1\nGLOBAL(idle)\n        hlt\n"
    system = DesignSystem(
        parse_design(write_design(tmp_path, "nmi_crash", cpu_line)), Environment(nmi=1)
    )
    _, finals = reachable(system)
    assert finals
    for s in finals:
        voc = system.vocabulary(s)
        cpu = s.machine.cpus[0]
        assert cpu.run is Run.HALTED and cpu.pc.routine == "do_nmi_crash"
        assert voc["crash_save_done"] == [1]
        assert voc["waiting_for_crash_ipi"] == 0
        assert not voc["assertion_failed"]
        # the self-NMI is latched behind the NMI the CPU never returns from
        assert cpu.nmi_blocked and cpu.nmi_pending
        # interrupts were disabled by `cli` before the frame was built
        assert not voc["cpus"][0]["interrupts_enabled"]
