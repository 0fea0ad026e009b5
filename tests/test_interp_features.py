"""Running designs: the interpreter's semantics of the language's features, driven through
`DesignSystem` (init_states, actions, next_state) as the checker drives it."""

from __future__ import annotations

import textwrap
from collections import deque
from pathlib import Path

import pytest

from checker.errors import InputError
from model.lang.parser import parse_design
from model.system.interp import FELL_OFF, TIMED_OUT, SysState
from model.system.transition import Action, DesignSystem, Environment
from model.x86.arch import CF, OF_FLAG, PF, UD
from model.x86.state import CodeAddr, Run

ZF = 1 << 6
SF = 1 << 7


def load(
    tmp_path: Path, text: str, variant: dict[str, str] | None = None, **env: object
) -> DesignSystem:
    path = tmp_path / "t.design"
    path.write_text(textwrap.dedent(text))
    return DesignSystem(parse_design(path, variant), Environment(**env))  # type: ignore[arg-type]


def run(system: DesignSystem, s: SysState | None = None, limit: int = 1000) -> SysState:
    """Take the one enabled action until none is left; returns the last state."""
    if s is None:
        [s] = system.init_states()
    for _ in range(limit):
        actions = system.actions(s)
        if not actions:
            return s
        assert len(actions) == 1, actions
        s = system.next_state(s, actions[0])
    raise AssertionError("did not stop")


def steps(system: DesignSystem, s: SysState, n: int, cpu: int = 0) -> SysState:
    for _ in range(n):
        s = system.next_state(s, Action("step", cpu))
    return s


def reachable(system: DesignSystem) -> tuple[set[SysState], set[SysState]]:
    seen: set[SysState] = set(system.init_states())
    finals: set[SysState] = set()
    queue = deque(seen)
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


def var(system: DesignSystem, s: SysState, name: str) -> object:
    return system.vocabulary(s)[name]


# Heads the tests' designs: indented like the tests' blocks, as load() dedents the whole.
ONE_CPU = """\
        stack primary size 0x1000
        cpu 0 start f rsp top(primary)
"""


# -- pseudo-C -------------------------------------------------------------------------------------


def test_pseudo_c_control_flow_and_assignments(tmp_path: Path) -> None:
    system = load(tmp_path, ONE_CPU + """\
        var a[4] = 0
        var i = 0
        var n = 0
        var w = 0
        function f {
            for (i = 0; i < 4; i++) {
                a[i] = i * 2 + 1;
            }
            while (n < 3) {
                n++;
            }
            if (n == 1) {
                w = 1;
            } else if (n == 3) {
                w = 3;
            } else if (n == 4) {
                w = 4;
            } else {
                w = 9;
            }
            n--;
            n += 10; n -= 1; n |= 0x100; n &= 0x1ff; n ^= 1;
            a[1] += a[3];
            stop();
        }
        """)
    s = run(system)
    assert var(system, s, "a") == [1, 10, 5, 7]
    assert var(system, s, "i") == 4
    assert var(system, s, "w") == 3
    assert var(system, s, "n") == ((((3 - 1 + 10 - 1) | 0x100) & 0x1FF) ^ 1)
    assert s.machine.cpus[0].run is Run.HALTED
    assert system.is_terminal(s)


@pytest.mark.parametrize(("x", "y"), [(0, 4), (1, 1), (2, 2), (3, 3), (7, 4)])
def test_else_if_chain_takes_exactly_one_branch(tmp_path: Path, x: int, y: int) -> None:
    system = load(tmp_path, ONE_CPU + f"""\
        var x = {x}
        var y = 0
        var taken = 0
        function f {{
            if (x == 1) {{
                y = 1; taken++;
            }} else if (x == 2) {{
                y = 2; taken++;
            }} else if (x == 3) {{
                y = 3; taken++;
            }} else {{
                y = 4; taken++;
            }}
            stop();
        }}
        """)
    s = run(system)
    assert (var(system, s, "y"), var(system, s, "taken")) == (y, 1)


def test_per_cpu_variables(tmp_path: Path) -> None:
    system = load(tmp_path, """\
        stack primary size 0x1000 per-cpu
        percpu p = cpu + 10
        percpu q = 0
        var seen = 0
        cpu 0 start f rsp top(primary)
        cpu 1 start g rsp top(primary)
        function f {
            p[1] = 5;
            q = per_cpu(p, 0) + p;
            stop();
        }
        function g {
            wait_until(p == 5);
            q = cpu;
            seen = p[0];
            stop();
        }
        """, cpus=2)
    _, finals = reachable(system)
    [s] = finals
    assert var(system, s, "p") == [10, 5]
    assert var(system, s, "q") == [20, 1]
    assert var(system, s, "seen") == 10


def test_one_statement_is_one_step_and_atomic_blocks_are_one(tmp_path: Path) -> None:
    system = load(tmp_path, ONE_CPU + """\
        var x = 0
        function f {
            x = 1;
            atomic {
                x = x + 1;
                if (x == 2) {
                    x = 10;
                }
                x++;
            }
            x = x * 2;
            stop();
        }
        """)
    [s] = system.init_states()
    s = steps(system, s, 1)
    assert var(system, s, "x") == 1
    s = steps(system, s, 1)  # the whole atomic block
    assert var(system, s, "x") == 11
    assert system.interp.instr_at(s.machine.cpus[0].pc).text == "x = x * 2"  # type: ignore[union-attr]
    s = steps(system, s, 1)
    assert var(system, s, "x") == 22


def test_two_cpus_interleave_statements_but_not_atomic_blocks(tmp_path: Path) -> None:
    racy = """\
        stack primary size 0x1000 per-cpu
        var x = 0
        var t = 0
        cpu * start f rsp top(primary)
        function f {
        .if mode == racy
            t = x;
            x = t + 1;
        .else
            atomic {
                t = x;
                x = t + 1;
            }
        .endif
            stop();
        }
        knob mode = racy | atomic
        """
    racy_sys = load(tmp_path, racy, {"mode": "racy"}, cpus=2)
    _, finals = reachable(racy_sys)
    assert {var(racy_sys, s, "x") for s in finals} == {1, 2}  # a lost update
    atomic_sys = load(tmp_path, racy, {"mode": "atomic"}, cpus=2)
    _, finals = reachable(atomic_sys)
    assert {var(atomic_sys, s, "x") for s in finals} == {2}


def test_calls_between_functions_and_routines(tmp_path: Path) -> None:
    system = load(tmp_path, ONE_CPU + """\
        var x = 0
        function f {
            g();
            helper();
            x = x * 10;
            stop();
        }
        function g {
            x = 1;
            return;
            x = 99;
        }
        ENTRY(helper)
                pushq %rax
                popq %rax
                ret
        """)
    s = run(system)
    assert var(system, s, "x") == 10
    assert s.machine.cpus[0].rsp == system.platform.region("primary").top


def test_assert_records_an_incident_with_the_line(tmp_path: Path) -> None:
    system = load(tmp_path, ONE_CPU + """\
        var x = 1
        function f {
            assert(x == 1);
            assert(x == 2);
            stop();
        }
        """)
    s = run(system)
    assert system.vocabulary(s)["assertion_failed"]
    assert system.vocabulary(s)["incidents"] == ["assertion-failed at line 6"]


# -- choose, wait ----------------------------------------------------------------------------------


def test_choose_is_one_transition_per_value(tmp_path: Path) -> None:
    system = load(tmp_path, ONE_CPU + """\
        var v = 0
        var w = 0
        function f {
            choose(v, 3, 1 + 1, w);
            choose_range(w, v, v + 2);
            stop();
        }
        """)
    [s] = system.init_states()
    actions = system.actions(s)
    assert actions == [Action("step", 0, k) for k in range(3)]
    after = [system.next_state(s, a) for a in actions]
    assert [var(system, t, "v") for t in after] == [3, 2, 0]
    # choose_range's bounds are expressions evaluated when it runs: v .. v+2
    for t, v in zip(after, [3, 2, 0], strict=True):
        ranged = [system.next_state(t, a) for a in system.actions(t)]
        assert [var(system, r, "w") for r in ranged] == [v, v + 1, v + 2]
    labels = [system.describe_action(s, a)["label"] for a in actions]
    assert labels[1].endswith("[choice 2]")
    _, finals = reachable(system)
    assert len(finals) == 9


def test_choose_range_of_an_empty_range_blocks(tmp_path: Path) -> None:
    system = load(tmp_path, ONE_CPU + textwrap.indent(
        "var v = 0\nfunction f {\n    choose_range(v, 5, 4);\n}\n", " " * 8
    ))
    [s] = system.init_states()
    assert system.actions(s) == []
    assert not system.is_terminal(s)  # a deadlock the checker can report


def test_asm_choose(tmp_path: Path) -> None:
    system = load(tmp_path, ONE_CPU.replace("start f", "start f %rcx=0x42") + """\
        const NONCANONICAL = 0x800000000000
        ENTRY(f)
                pushq $9
                choose %rcx, %rcx, $NONCANONICAL, (%rsp), 8(%rsp)
                hlt
        """)
    [s] = system.init_states()
    s = steps(system, s, 1)
    after = [system.next_state(s, a) for a in system.actions(s)]
    assert [t.machine.cpus[0].reg("rcx") for t in after[:3]] == [0x42, 0x800000000000, 9]
    # a source operand that faults makes that choice fault: 8(%rsp) is above the stack
    assert after[3].machine.cpus[0].run is Run.SHUTDOWN


def test_wait_until_blocks_until_its_condition_holds(tmp_path: Path) -> None:
    system = load(tmp_path, """\
        stack primary size 0x1000 per-cpu
        var flag = 0
        var order = 0
        cpu 0 start waiter rsp top(primary)
        cpu 1 start setter rsp top(primary)
        function waiter {
            wait_until(flag);
            order = order * 10 + 1;
            stop();
        }
        function setter {
            order = 2;
            flag = 1;
            stop();
        }
        """, cpus=2)
    [s] = system.init_states()
    assert system.actions(s) == [Action("step", 1)]
    _, finals = reachable(system)
    assert [var(system, f, "order") for f in finals] == [21]


def test_wait_timeout_fires_only_when_nothing_else_can_move(tmp_path: Path) -> None:
    system = load(tmp_path, """\
        stack primary size 0x1000 per-cpu
        var flag = 0
        var y = 0
        var after = 0
        cpu 0 start waiter rsp top(primary)
        cpu 1 start setter rsp top(primary)
        function waiter {
            wait_timeout(flag == 1);
            after = 1;
            stop();
        }
        function setter {
            choose(y, 0, 1);
            if (y) {
                flag = 1;
            }
            stop();
        }
        """, cpus=2)
    states, finals = reachable(system)
    timeouts = 0
    for s in states:
        actions = system.actions(s)
        if any(a.kind == "timeout" for a in actions):
            timeouts += 1
            assert actions == [Action("timeout", 0)]  # never beside another action
            assert s.machine.cpus[1].run is Run.HALTED
    assert timeouts == 1
    outcomes = {(var(system, s, "y"), var(system, s, "timed_out")) for s in finals}
    assert outcomes == {(1, False), (0, True)}
    assert all(var(system, s, "after") == 1 for s in finals)
    timed_out = next(s for s in finals if var(system, s, "timed_out"))
    assert TIMED_OUT in var(system, timed_out, "incidents")  # type: ignore[operator]


def test_an_environment_event_also_keeps_the_timeout_back(tmp_path: Path) -> None:
    system = load(tmp_path, """\
        stack primary size 0x1000
        var flag = 0
        idt t
            gate NMI on_nmi
        end
        cpu 0 start waiter rsp top(primary) idt t
        function waiter {
            wait_timeout(flag);
            stop();
        }
        function on_nmi {
            flag = 1;
            stop();
        }
        """, nmi=1)
    [s] = system.init_states()
    assert system.actions(s) == [Action("nmi", 0)]  # the NMI budget is something else
    _, finals = reachable(system)
    assert {var(system, f, "timed_out") for f in finals} == {False}


# -- memory operands -------------------------------------------------------------------------------


def test_mem_reads_a_stack_word(tmp_path: Path) -> None:
    system = load(tmp_path, ONE_CPU + """\
        var a = 0
        var b = 0
        var c = 0
        ENTRY(f)
                pushq $0x11
                pushq $0x22
                call g
                hlt
        function g {
            a = mem(%rsp + 8);
            b = mem(top(primary) - 8);
            c = mem(top(primary) - 4);
            return;
        }
        """)
    s = run(system)
    assert (var(system, s, "a"), var(system, s, "b"), var(system, s, "c")) == (0x22, 0x11, 0x11)


def test_absolute_memory_operands(tmp_path: Path) -> None:
    system = load(tmp_path, ONE_CPU.replace("start f", "start f %rax=0xabc") + """\
        ENTRY(f)
                movabsq %rax, top(primary)-8
                movq top(primary)-8, %rbx
                movl $7, top(primary)-12
                movq top(primary)-16, %rcx
                cmpq $0xabc, top(primary)-8
                hlt
        """)
    s = run(system)
    cpu = s.machine.cpus[0]
    assert cpu.reg("rbx") == 0xABC
    assert cpu.reg("rcx") == 7 << 32  # the upper half of the word below
    assert cpu.rflags & ZF


def test_movl_to_a_register_zero_extends(tmp_path: Path) -> None:
    system = load(tmp_path, ONE_CPU.replace("start f", "start f %rax=-1 %rdi=-1") + """\
        ENTRY(f)
                movl $5, %eax
                pushq $-1
                movl $2, 4(%rsp)
                movl 4(%rsp), %edi
                movq (%rsp), %rsi
                hlt
        """)
    s = run(system)
    cpu = s.machine.cpus[0]
    assert cpu.reg("rax") == 5
    assert cpu.reg("rdi") == 2
    assert cpu.reg("rsi") == 0x2_FFFF_FFFF  # movl wrote the upper half only


def test_cmpl_reads_the_half_word_at_its_address(tmp_path: Path) -> None:
    """Xen stores the vector in the upper half of the error-code word (`movl $TRAP_nmi,
    4(%rsp)`) and compares it the same way: 4(%rsp) is the upper half."""
    system = load(tmp_path, ONE_CPU + """\
        var hit = 0
        ENTRY(f)
                pushq $0x55
                movl $2, 4(%rsp)
                cmpl $2, 4(%rsp)
                jne 1f
                testb $0x55, (%rsp)
                je 1f
                testb $0xff, 1(%rsp)
                jne 1f
                cmpw $0x55, (%rsp)
                jne 1f
                movq $1, %rbx
        1:      hlt
        """)
    s = run(system)
    assert s.machine.cpus[0].reg("rbx") == 1


def test_32_bit_arithmetic_and_flags(tmp_path: Path) -> None:
    head = ONE_CPU.replace("start f", "start f %rbx=0x7fffffff %rcx=0x1ffffffff")
    system = load(tmp_path, head + """\
        ENTRY(f)
                incl %ebx
                hlt
        """)
    [s] = system.init_states()
    s = steps(system, s, 1)
    cpu = s.machine.cpus[0]
    assert cpu.reg("rbx") == 0x8000_0000
    assert cpu.rflags & SF and cpu.rflags & OF_FLAG and not cpu.rflags & ZF


@pytest.mark.parametrize(
    ("code", "rax", "flags", "clear"),
    [
        ("movq $-16, %rax\n        sarq $2, %rax", -4 % 2**64, SF, ZF | CF),
        ("movq $-16, %rax\n        shrq $60, %rax", 0xF, CF, ZF | SF),
        ("movq $3, %rax\n        sarq $1, %rax", 1, CF, ZF | SF),
        ("movq $1, %rax\n        shlq $63, %rax", 1 << 63, SF, ZF | CF),
        ("movq $-1, %rax\n        addq $1, %rax", 0, ZF | CF, SF | OF_FLAG),
        ("movq $0x7fffffffffffffff, %rax\n        addq $1, %rax", 1 << 63, SF | OF_FLAG, CF),
        ("movq $0, %rax\n        subq $1, %rax", 2**64 - 1, SF | CF, ZF | OF_FLAG),
        ("movq $-1, %rax\n        addl $1, %eax", 0, ZF | CF, SF),
        ("movq $0xffffffff, %rax\n        incl %eax", 0, ZF, SF | OF_FLAG),
        ("movq $0, %rax\n        decl %eax", 0xFFFF_FFFF, SF, ZF | OF_FLAG),
        ("movq $5, %rax\n        xorq %rax, %rax", 0, ZF, SF | CF | OF_FLAG),
        ("movq $6, %rax\n        andl $3, %eax", 2, 0, ZF | SF | CF),
    ],
)
def test_arithmetic_flags(
    tmp_path: Path, code: str, rax: int, flags: int, clear: int
) -> None:
    tail = textwrap.indent(f"ENTRY(f)\n        {code}\n        hlt\n", " " * 8)
    system = load(tmp_path, ONE_CPU + tail)
    s = run(system)
    cpu = s.machine.cpus[0]
    assert cpu.reg("rax") == rax
    assert cpu.rflags & flags == flags
    assert cpu.rflags & clear == 0


def test_inc_and_dec_leave_the_carry_flag_alone(tmp_path: Path) -> None:
    system = load(tmp_path, ONE_CPU + """\
        ENTRY(f)
                movq $0, %rax
                subq $1, %rax
                incq %rax
                jb 1f
                movq $7, %rbx
        1:      hlt
        """)
    s = run(system)
    assert s.machine.cpus[0].reg("rax") == 0
    assert s.machine.cpus[0].reg("rbx") == 0  # CF from the sub survived the inc


@pytest.mark.parametrize(
    ("a", "b", "taken"),
    [
        # cmpq $b, %rax compares rax (a) with b
        (-1, 1, {"jl", "jle", "jne", "ja", "jae", "js"}),
        (1, -1, {"jg", "jge", "jne", "jb", "jbe", "jns"}),
        (2, 2, {"je", "jge", "jle", "jae", "jbe", "jns"}),
        # a signed overflow: the most negative number is less than 1 (OF != SF)
        (-(2**63), 1, {"jl", "jle", "jne", "ja", "jae", "jns"}),
        (2**63 - 1, -1, {"jg", "jge", "jne", "jb", "jbe", "js"}),
    ],
)
def test_conditional_jumps_after_cmp(tmp_path: Path, a: int, b: int, taken: set[str]) -> None:
    jumps = ["je", "jne", "jl", "jge", "jle", "jg", "jb", "jae", "ja", "jbe", "js", "jns"]
    for j in jumps:
        system = load(tmp_path, ONE_CPU + f"""\
            ENTRY(f)
                    movq ${a % 2**64}, %rax
                    cmpq ${b % 2**64}, %rax
                    {j} 1f
                    movq $1, %rbx
            1:      hlt
            """)
        s = run(system)
        assert (s.machine.cpus[0].reg("rbx") == 0) == (j in taken), (j, a, b)


# -- frames, IDTs, stacks ----------------------------------------------------------------------

IST = """\
        stack primary size 0x1000 per-cpu
        stack nmi_ist size 0x1000 per-cpu
        tss tss per-cpu
            rsp0 primary
            ist 1 nmi_ist
        end
        idt idt_table per-cpu
            gate NMI nmi ist 1
        end
        cpu * start idle rsp top(primary) idt idt_table tss tss if 1
        ENTRY(idle)
                hlt
                jmp idle
"""


def test_rep_movsq_moves_a_live_frame(tmp_path: Path) -> None:
    system = load(tmp_path, IST + """\
        ENTRY(nmi)
                movq  %rsp, %rsi
                movabsq $top(primary)-64, %rdi
                movq  $5, %rcx
                rep movsq
                movabsq $top(primary)-64, %rsp
                iretq
        """, cpus=2, nmi=1)
    [s] = system.init_states()
    s = system.next_state(s, Action("step", 1))
    s = system.next_state(s, Action("nmi", 1))
    frames_on = system.vocabulary(s)["frames_on"]
    assert frames_on("nmi_ist[1]") == 1 and frames_on("primary[1]") == 0
    [frame] = s.machine.frames
    assert frame.stack == "nmi_ist[1]" and frame.cpu == 1
    s = steps(system, s, 4, cpu=1)  # through rep movsq
    [frame] = s.machine.frames
    assert frame.stack == "primary[1]"
    assert frame.lo == system.platform.region("primary[1]").top - 64
    cpu = s.machine.cpus[1]
    assert cpu.reg("rcx") == 0
    assert cpu.reg("rsi") == system.platform.region("nmi_ist[1]").top
    assert cpu.reg("rdi") == system.platform.region("primary[1]").top - 24
    frames_on = system.vocabulary(s)["frames_on"]
    assert frames_on("nmi_ist[1]") == 0 and frames_on("primary[1]") == 1
    assert "primary[1]" in system.describe_state(s)["frames"]  # type: ignore[operator]
    s = steps(system, s, 2, cpu=1)  # switch stacks, IRET from the copy
    cpu = s.machine.cpus[1]
    assert s.machine.frames == () and not cpu.nmi_blocked
    assert cpu.pc == CodeAddr("idle", 1)
    assert cpu.rsp == system.platform.region("primary[1]").top


def test_per_cpu_stack_instances_in_code(tmp_path: Path) -> None:
    system = load(tmp_path, IST.replace("start idle", "start f", 1) + """\
        var mine = 0
        var other = 0
        function f {
            mine = top(nmi_ist);
            other = top(nmi_ist[1]);
            set_ist(tss[1], 1, none);
            lidt(idt_table[1]);
            stop();
        }
        ENTRY(nmi)
                iretq
        """, cpus=2)
    _, finals = reachable(system)
    top0 = system.platform.region("nmi_ist[0]").top
    top1 = system.platform.region("nmi_ist[1]").top
    for s in finals:
        assert var(system, s, "mine") == top0 or var(system, s, "mine") == top1
        assert var(system, s, "other") == top1
        assert s.machine.tss("tss[1]").ist[0] is None  # type: ignore[union-attr]
        assert s.machine.tss("tss[0]").ist[0] == "nmi_ist[0]"  # type: ignore[union-attr]
        assert [c.idtr for c in s.machine.cpus] == ["idt_table[1]", "idt_table[1]"]


def test_lidt_empty_makes_the_next_nmi_a_triple_fault(tmp_path: Path) -> None:
    for code in ("ENTRY(f)\n        lidt empty\n        hlt\n",
                 "function f {\n    lidt(empty);\n    halt();\n}\n"):
        tail = textwrap.indent(code + "ENTRY(nmi)\n        iretq\n", " " * 8)
        system = load(tmp_path, IST.replace("start idle", "start f", 1) + tail, nmi=1)
        [s] = system.init_states()
        s = steps(system, s, 1)
        assert s.machine.cpus[0].idtr is None
        assert system.describe_state(s)["cpu0.idtr"] == "empty"
        s = system.next_state(s, Action("nmi", 0))
        assert s.machine.cpus[0].run is Run.SHUTDOWN
        assert system.vocabulary(s)["any_shutdown"]


def test_alternative_cpu_lines_give_several_initial_states(tmp_path: Path) -> None:
    system = load(tmp_path, """\
        stack primary size 0x1000 per-cpu
        stack guest size 0x1000 owner guest per-cpu
        cpu * start xen rsp top(primary)
        cpu * start user rsp top(guest) cpl 3 if 1
        ENTRY(xen)
                hlt
        GUEST(user)
                pushq $1
                ud2
        """, cpus=2)
    inits = system.init_states()
    assert len(inits) == 4
    assert {tuple(c.pc.routine for c in s.machine.cpus) for s in inits} == {
        ("xen", "xen"), ("xen", "user"), ("user", "xen"), ("user", "user"),
    }
    for s in inits:
        for c in s.machine.cpus:
            assert c.cpl == (3 if c.pc.routine == "user" else 0)
    assert [system.vocabulary(s)["cpus"][1]["in_guest"] for s in inits].count(True) == 2


# -- @fault ----------------------------------------------------------------------------------------


def test_fault_marked_steps_may_raise_within_the_budget(tmp_path: Path) -> None:
    design = ONE_CPU + """\
        var seen = 0
        var code = 7
        idt t
            gate #PF pf_handler
            gate #GP gp_handler
        end
        ENTRY(f)
                movq $5, %rax
                pushq %rax @fault(#PF)
                call g
                hlt
        function g {
            seen = 1 @fault(#GP);
            return;
        }
        ENTRY(pf_handler)
                hlt
        function gp_handler {
            code = mem(%rsp);
            stop();
        }
        """
    design = design.replace("rsp top(primary)", "rsp top(primary) idt t")
    without = load(tmp_path, design)
    s = run(without)
    assert var(without, s, "seen") == 1
    system = load(tmp_path, design, faults=1)
    [s] = system.init_states()
    s = steps(system, s, 1)
    assert system.actions(s) == [Action("step", 0), Action("fault", 0)]
    label = system.describe_action(s, Action("fault", 0))["label"]
    assert label == "cpu0: pushq %rax  -> raises #PF"
    faulted = system.next_state(s, Action("fault", 0))
    cpu = faulted.machine.cpus[0]
    assert cpu.pc == CodeAddr("pf_handler", 0)
    [frame] = faulted.machine.frames
    assert frame.vector == PF
    # a fault saves the faulting instruction: the push did not happen
    assert faulted.machine.cpus[0].rsp == system.platform.region("primary").top - 8 * 6
    assert faulted.budgets[-1] == 0
    _, finals = reachable(system)
    outcomes = {(var(system, s, "seen"), var(system, s, "code"), s.machine.cpus[0].pc.routine)
                for s in finals}
    assert outcomes == {(1, 7, "f"), (0, 7, "pf_handler"), (0, 0, "gp_handler")}


@pytest.mark.parametrize(("name", "vector"), [("#GP", 13), ("#SS", 12), ("#NP", 11)])
def test_an_iret_marked_to_fault_still_unblocks_nmis(
    tmp_path: Path, name: str, vector: int
) -> None:
    gates = "gate NMI nmi ist 1\n            gate #GP bad\n            gate #SS bad\n" \
        "            gate #NP bad"
    system = load(tmp_path, IST.replace("gate NMI nmi ist 1", gates) + f"""\
        ENTRY(nmi)
                iretq @fault({name})
        ENTRY(bad)
                hlt
        """, nmi=1, faults=1)
    [s] = system.init_states()
    s = steps(system, s, 1)
    s = system.next_state(s, Action("nmi", 0))
    assert s.machine.cpus[0].nmi_blocked
    s = system.next_state(s, Action("fault", 0))
    assert s.machine.cpus[0].pc.routine == "bad" and not s.machine.cpus[0].nmi_blocked
    # the fault's frame sits below the NMI frame the IRET did not pop
    assert [f.vector for f in s.machine.frames] == [2, vector]


# -- fall-through ----------------------------------------------------------------------------------


def test_falling_through_into_the_next_routine(tmp_path: Path) -> None:
    system = load(tmp_path, ONE_CPU + """\
        ENTRY(f)
                movq $1, %rax
        ENTRY(second)
                movq $2, %rbx
        ENTRY(last)
                movq $3, %rcx
        """)
    s = run(system)
    cpu = s.machine.cpus[0]
    assert (cpu.reg("rax"), cpu.reg("rbx"), cpu.reg("rcx")) == (1, 2, 3)
    # running off the end of the last routine: an incident and #UD (no IDT: shutdown)
    assert FELL_OFF in system.vocabulary(s)["incidents"]  # type: ignore[operator]
    assert cpu.run is Run.SHUTDOWN


def test_running_off_the_end_raises_ud(tmp_path: Path) -> None:
    system = load(tmp_path, ONE_CPU.replace("rsp top(primary)", "rsp top(primary) idt t") + """\
        idt t
            gate #UD on_ud
        end
        ENTRY(on_ud)
                hlt
                jmp on_ud
        ENTRY(f)
                nop
        """)
    s = run(system)
    [frame] = s.machine.frames
    assert frame.vector == UD
    assert s.machine.cpus[0].pc.routine == "on_ud"


# -- run-time errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("statement", "message"),
    [
        ("send_nmi(v + 5);", "send_nmi to CPU 5, but CPUs are 0-0"),
        ("a[v + 4] = 1;", "index 4 is outside a[0..3]"),
        ("v = a[v - 1];", "outside a[0..3]"),
    ],
)
def test_run_time_errors_name_the_design_line(tmp_path: Path, statement: str, message: str) -> None:
    tail = f"var v = 0\nvar a[4] = 0\nfunction f {{\n    {statement}\n}}\n"
    system = load(tmp_path, ONE_CPU + textwrap.indent(tail, " " * 8))
    [s] = system.init_states()
    with pytest.raises(InputError) as e:
        system.next_state(s, Action("step", 0))
    assert e.value.line == 6 and e.value.path == str(tmp_path / "t.design")
    assert message in e.value.message
