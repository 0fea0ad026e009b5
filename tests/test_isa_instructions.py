"""The instructions and syntax real entry code uses: semantics per width (zero- and sign-
extension, flags) run through DesignSystem, and errors (`path:line`, exit 2, no
traceback) through the CLI."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from model.lang.parser import parse_design
from model.system.interp import FOREIGN_GS, WILD_BRANCH, SysState
from model.system.layout import PERCPU_BASE, PERCPU_SLOT
from model.system.transition import Action, DesignSystem, Environment
from model.x86.alu import SF, ZF
from model.x86.arch import AC_FLAG, CF, DF_FLAG, OF_FLAG
from model.x86.state import CodeAddr, Run
from tests.test_lang_errors import HEAD, HEAD_LINES, assert_error, run_cli

HEADER = """\
stack primary size 0x1000
var v = 0
var w = 5
var table[3] = 0
percpu pcv = 7
percpu other = 9
cpus 2
cpu 0 start f rsp top(primary)
cpu 1 start idle
ENTRY(idle)
        hlt
"""


def load(tmp_path: Path, body: str, header: str = HEADER, **env: object) -> DesignSystem:
    path = tmp_path / "t.design"
    path.write_text(header + textwrap.dedent(body))
    return DesignSystem(parse_design(path), Environment(**env))  # type: ignore[arg-type]


def run(system: DesignSystem, limit: int = 500) -> SysState:
    """Run CPU 0 alone until it stops (halts, or has no instruction to run)."""
    [s] = system.init_states()
    for _ in range(limit):
        cpu = s.machine.cpus[0]
        if cpu.run is not Run.RUNNING:
            return s
        actions = [a for a in system.actions(s) if a.cpu == 0 and a.kind == "step"]
        assert len(actions) == 1, actions
        s = system.next_state(s, actions[0])
    raise AssertionError("did not stop")


def regs(s: SysState, *names: str) -> tuple[object, ...]:
    return tuple(s.machine.cpus[0].reg(n) for n in names)


def var(system: DesignSystem, s: SysState, name: str) -> object:
    return system.vocabulary(s)[name]


def asm(code: str) -> str:
    body = textwrap.dedent(code).rstrip("\n") + "\n"
    return "ENTRY(f)\n" + textwrap.indent(body, " " * 8) + "        hlt\n"


# -- widths: zero- and sign-extension -------------------------------------------------------------
def test_sized_moves_extend_as_the_sdm_says(tmp_path: Path) -> None:
    """SDM Vol. 1 §3.4.1.1: 32-bit results zero-extend; 8/16-bit writes merge; MOVZX and
    MOVSX extend their source (SDM Vol. 2)."""
    s = run(load(tmp_path, asm("""\
        movq $-1, %rax
        movl $1, %eax
        movq $-1, %rbx
        movw $0x1234, %bx
        movq $-1, %rcx
        movb $0x56, %cl
        movq $0x80, %rdx
        movzbl %dl, %esi
        movsbq %dl, %rdi
        movl $0x80000000, %r8d
        movslq %r8d, %r9
        movzwq %bx, %r10
        movsbl %dl, %r11d
        movabsq $0x123456789abcdef0, %r12
        """)))
    assert regs(s, "rax", "rbx", "rcx") == (1, 0xFFFF_FFFF_FFFF_1234, 0xFFFF_FFFF_FFFF_FF56)
    assert regs(s, "rsi", "rdi") == (0x80, 0xFFFF_FFFF_FFFF_FF80)
    assert regs(s, "r9", "r10", "r11") == (0xFFFF_FFFF_8000_0000, 0x1234, 0xFFFF_FF80)
    assert regs(s, "r12") == (0x1234_5678_9ABC_DEF0,)


@pytest.mark.parametrize(
    ("code", "rax", "flags", "clear"),
    [
        ("movq $0x7fffffff, %rax\n addl $1, %eax", 0x8000_0000, SF | OF_FLAG, CF | ZF),
        ("movq $-1, %rax\n addb $1, %al", 0xFFFF_FFFF_FFFF_FF00, ZF | CF, SF),
        ("movq $0x8000, %rax\n subw $1, %ax", 0x7FFF, OF_FLAG, CF | ZF | SF),
        ("movq $-1, %rax\n shrl $1, %eax", 0x7FFF_FFFF, CF | OF_FLAG, SF | ZF),
        ("movq $-2, %rax\n sarl $1, %eax", 0xFFFF_FFFF, SF, CF | OF_FLAG),
        ("movq $1, %rax\n shll $31, %eax", 0x8000_0000, SF, CF),
        ("movq $5, %rax\n negq %rax", 2**64 - 5, SF | CF, ZF),
        ("movq $5, %rax\n notq %rax", 2**64 - 6, 0, 0),
        ("movq $0xff, %rax\n notl %eax", 0xFFFF_FF00, 0, 0),
        ("movq $-3, %rax\n imulq $5, %rax, %rax", 2**64 - 15, SF, CF | OF_FLAG),
        ("movq $0x40000000, %rax\n imull %eax, %eax", 0, CF | OF_FLAG, 0),
        ("movq $0x10, %rax\n andq $-16, %rax", 0x10, 0, ZF | SF | CF | OF_FLAG),
        ("movq $-1, %rax\n orl $0, %eax", 0xFFFF_FFFF, SF, ZF | CF),
        ("movq $7, %rax\n movq $2, %rcx\n shlq %cl, %rax", 28, 0, ZF | SF | CF),
        ("movq $3, %rax\n shrq %rax", 1, CF, ZF),
    ],
)
def test_sized_alu_results_and_flags(
    tmp_path: Path, code: str, rax: int, flags: int, clear: int
) -> None:
    body = "\n".join(line.strip() for line in code.splitlines())
    s = run(load(tmp_path, asm(body)))
    cpu = s.machine.cpus[0]
    assert cpu.reg("rax") == rax
    assert isinstance(cpu.rflags, int)
    assert cpu.rflags & flags == flags and cpu.rflags & clear == 0


def test_memory_destination_alu_ops(tmp_path: Path) -> None:
    """`orq $x, (%rsp)`, `andl $..., 4(%rsp)`: read-modify-write of the operand's bytes."""
    system = load(tmp_path, asm("""\
        pushq $-1
        orq $0x10, (%rsp)
        andl $0xff, 4(%rsp)
        addb $1, (%rsp)
        incl v
        addq $2, v
        cmpq $3, v
        sete %al
        decq w
        """))
    s = run(system)
    top = s.machine.cpus[0].rsp
    assert dict(s.machine.memory)[top] == 0x0000_00FF_FFFF_FF00
    assert var(system, s, "v") == 3 and var(system, s, "w") == 4
    assert regs(s, "rax") == (1,)


def test_conditions_every_spelling(tmp_path: Path) -> None:
    """Every Jcc/SETcc/CMOVcc spelling tests what SDM Vol. 1 Appendix B says."""
    body = """\
        movq $1, %rax
        cmpq $2, %rax
        jc 1f
        ud2
    1:  jnae 1f
        ud2
    1:  jna 1f
        ud2
    1:  jnz 1f
        ud2
    1:  jnge 1f
        ud2
    1:  jng 1f
        ud2
    1:  jno 1f
        ud2
    1:  cmpq $1, %rax
        jz 1f
        ud2
    1:  jnc 1f
        ud2
    1:  jnb 1f
        ud2
    1:  jnl 1f
        ud2
    1:  movq $0x7fffffffffffffff, %rbx
        addq $1, %rbx
        jo 1f
        ud2
    1:  jnle 1f
        ud2
    1:  jnbe 1f
        ud2
    1:  setnbe %cl
        seto %dl
        movq $9, %rsi
        cmovoq %rax, %rsi
        movq $9, %rdi
        cmovnol %eax, %edi
    """
    s = run(load(tmp_path, asm(body)))
    assert s.machine.cpus[0].pc.index > 0 and s.machine.cpus[0].run is Run.HALTED
    assert regs(s, "rcx", "rdx", "rsi", "rdi") == (1, 1, 1, 9)


def test_cmov_32_bit_zero_extends_even_when_not_taken(tmp_path: Path) -> None:
    s = run(load(tmp_path, asm("""\
        movq $-1, %rax
        movq $-1, %rbx
        xorq %rcx, %rcx
        cmovnzl %ebx, %eax
        """)))
    assert regs(s, "rax") == (0xFFFF_FFFF,)


def test_xchg_bt_and_flag_instructions(tmp_path: Path) -> None:
    s = run(load(tmp_path, asm("""\
        movq $1, %rax
        movq $2, %rbx
        xchg %rax, %rbx
        pushq $4
        xchgq %rax, (%rsp)
        bt $2, %rax
        setc %cl
        btq $0, (%rsp)
        setc %dl
        std
        stac
        """)))
    cpu = s.machine.cpus[0]
    assert regs(s, "rax", "rbx", "rcx", "rdx") == (4, 1, 1, 0)
    assert isinstance(cpu.rflags, int) and cpu.rflags & (DF_FLAG | AC_FLAG) == DF_FLAG | AC_FLAG
    s = run(load(tmp_path, asm("std\ncld\nstac\nclac\nlfence\nmfence\nsfence\npause\n")))
    assert s.machine.cpus[0].rflags & (DF_FLAG | AC_FLAG) == 0  # type: ignore[operator]


def test_stac_at_cpl3_is_ud(tmp_path: Path) -> None:
    header = HEADER.replace("cpu 0 start f rsp top(primary)", "cpu 0 start f cpl 3")
    system = load(tmp_path, "GUEST(f)\n        stac\n        hlt\n", header)
    [s] = system.init_states()
    s = system.next_state(s, Action("step", 0))
    assert s.machine.cpus[0].run is Run.SHUTDOWN or s.machine.cpus[0].pc.index == 0


# -- code addresses in source order -----------------------------------------------------------
RANGE_CHECK = """\
ENTRY(f)
        leaq inside(%rip), %rax
        call in_window
        movq %rcx, %r8
        leaq after(%rip), %rax
        call in_window
        movq %rcx, %r9
        leaq before(%rip), %rax
        call in_window
        movq %rcx, %r10
        leaq window_end(%rip), %rax
        call in_window
        movq %rcx, %r11
        hlt
/* Is the RIP in %rax inside [window_start, window_end)? %rcx := 1 if so. */
ENTRY(in_window)
        xorq %rcx, %rcx
        leaq window_start(%rip), %rdx
        cmpq %rdx, %rax
        jb 1f
        leaq window_end(%rip), %rdx
        cmpq %rdx, %rax
        jae 1f
        movq $1, %rcx
1:      ret
ENTRY(before)
        nop
ENTRY(window_start)
        nop
inside: nop
        nop
ENTRY(window_end)
        nop
ENTRY(after)
        ret
"""


def test_a_range_check_on_code_addresses_takes_the_right_branch(tmp_path: Path) -> None:
    """Routines are laid out in source order (not alphabetically: `after` < `before` <
    `inside` < `window_*` by name), so an ordered compare on two code addresses is the
    hardware's: only `inside` is inside [window_start, window_end)."""
    s = run(load(tmp_path, RANGE_CHECK))
    assert regs(s, "r8", "r9", "r10", "r11") == (1, 0, 0, 0)
    system = load(tmp_path, RANGE_CHECK)
    layout = system.layout
    names = list(system.design.routines)
    addresses = [layout.code_address(CodeAddr(n, 0)) for n in names if n != "idle"]
    assert addresses == sorted(addresses)


def test_sub_of_code_addresses_and_indirect_branches(tmp_path: Path) -> None:
    s = run(load(tmp_path, asm("""\
        leaq 2f(%rip), %rax
        leaq 1f(%rip), %rbx
        subq %rbx, %rax
        movq $g, %rcx
        movq %rcx, table+8
        movq $1, %rdx
        call *table(,%rdx,8)
        leaq h(%rip), %rsi
        jmp *%rsi
    1:  nop
    2:  nop
        """) + "g:      movq $42, %r8\n        ret\nh:      movq $43, %r9\n        hlt\n"))
    assert regs(s, "rax", "r8", "r9") == (4, 42, 43)


def test_indirect_branch_to_non_code(tmp_path: Path) -> None:
    system = load(tmp_path, asm("movabsq $0xffff82d040123457, %rax\njmp *%rax\n"))
    [s] = system.init_states()
    s = system.next_state(s, Action("step", 0))
    s = system.next_state(s, Action("step", 0))
    assert WILD_BRANCH in s.machine.incidents


# -- variables and per-CPU data ------------------------------------------------------------------
def test_asm_writes_variables_and_percpu_data_through_gs(tmp_path: Path) -> None:
    system = load(tmp_path, asm("""\
        movq $1, v
        movq %gs:pcv, %rax
        movq $11, %gs:pcv
        movq %gs:8, %rbx
        movl $0xc0000101, %ecx
        rdmsr
        shlq $32, %rdx
        orq %rax, %rdx
        """))
    s = run(system)
    assert var(system, s, "v") == 1
    assert var(system, s, "pcv") == [11, 7]
    assert regs(s, "rbx", "rdx") == (9, PERCPU_BASE)
    assert FOREIGN_GS not in s.machine.incidents


def test_a_missing_swapgs_reads_through_the_guests_gs_base(tmp_path: Path) -> None:
    """After SWAPGS the kernel's per-CPU area is parked in KERNEL_GS_BASE: a `%gs:` access
    then goes through the guest's base (guest memory) and is recorded."""
    system = load(tmp_path, asm("swapgs\nmovq %gs:pcv, %rax\nswapgs\nmovq %gs:pcv, %rbx\n"))
    s = run(system)
    assert FOREIGN_GS in s.machine.incidents
    assert regs(s, "rax", "rbx") == (0, 7)


def test_wrmsr_gs_base_points_at_another_cpus_area(tmp_path: Path) -> None:
    system = load(tmp_path, asm("""\
        movl $0xc0000101, %ecx
        movq $PERCPU_HI, %rdx
        movl $PERCPU_SLOT_LO, %eax
        wrmsr
        movq %gs:pcv, %rbx
        """).replace("PERCPU_HI", str(PERCPU_BASE >> 32)).replace(
        "PERCPU_SLOT_LO", str(PERCPU_SLOT)))
    s = run(system)
    assert regs(s, "rbx") == (7,)  # CPU 1's copy
    assert FOREIGN_GS in s.machine.incidents


def test_msrs(tmp_path: Path) -> None:
    system = load(tmp_path, asm("""\
        movl $0xc0000081, %ecx
        movl $0x00230008, %edx
        xorl %eax, %eax
        wrmsr
        xorl %edx, %edx
        rdmsr
        movq %rdx, %r8
        movl $0x17a, %ecx
        rdmsr
        movq %rax, %r9
        """))
    s = run(system)
    assert regs(s, "r8", "r9") == (0x0023_0008, 0)
    bad = load(tmp_path, asm("movl $0x1234, %ecx\nrdmsr\n"))
    [s] = bad.init_states()
    s = bad.next_state(bad.next_state(s, Action("step", 0)), Action("step", 0))
    assert s.machine.cpus[0].run is Run.SHUTDOWN  # #GP(0) with no IDT: triple fault


def test_pseudo_c_writes_registers_memory_and_percpu(tmp_path: Path) -> None:
    system = load(tmp_path, """\
        function f {
            %rax = 5;
            %rax += 2;
            %rsp = %rsp - 8;
            mem(%rsp) = 0x99;
            per_cpu(pcv, 1) = 3;
            v = mem(%rsp) + %rax;
            halt();
        }
        """)
    s = run(system)
    assert regs(s, "rax") == (7,)
    assert var(system, s, "pcv") == [7, 3]
    assert var(system, s, "v") == 0x99 + 7


# -- verw, lss, pop %ss, mov %ss, sysretl, iretl ---------------------------------------------------
GDT_LINES = """\
gdt gdt 0x08 code dpl 0 long
gdt gdt 0x10 data dpl 0
gdt gdt 0x18 data dpl 0 readonly
gdt gdt 0x28 data dpl 3
gdt gdt 0x30 code dpl 3 long
gdt gdt 0x40 data dpl 0 notpresent
gdt gdt 0x48 system dpl 3
"""


@pytest.mark.parametrize(("selector", "zf"), [
    (0x10, True), (0x2B, True), (0x28, True), (0x40, True),
    (0x00, False), (0x13, False), (0x18, False), (0x30, False), (0x48, False), (0x50, False),
])
def test_verw_reads_the_gdt(tmp_path: Path, selector: int, zf: bool) -> None:
    """SDM Vol. 2 VERR/VERW: ZF is set only for a non-NULL selector within the table
    naming a writable data segment whose DPL >= CPL and >= RPL ("Code segments are never
    verified as writable"; system segments never verify; no presence check); one outcome,
    never a fault. At CPL 0: 0x13 has RPL 3 > DPL 0, 0x18 is read-only, 0x30 code, 0x48
    system, 0x50 beyond every declared entry."""
    system = load(tmp_path, asm(f"pushq ${selector:#x}\nverw (%rsp)\nsetz %al\n"),
                  header=HEADER + GDT_LINES)
    [s] = system.init_states()
    s = system.next_state(s, Action("step", 0))
    [step] = [a for a in system.actions(s) if a.cpu == 0 and a.kind == "step"]
    t = system.next_state(s, step)
    assert bool(t.machine.cpus[0].rflags & ZF) is zf
    assert t.machine.cpus[0].pc.index == 2  # no fault: the next instruction


def test_lss_loads_rsp_without_a_shadow(tmp_path: Path) -> None:
    system = load(tmp_path, asm("pushq $0x10\nmovq $top(primary)-64, %rax\npushq %rax\n"
                                "lss (%rsp), %rsp\n"))
    [s] = system.init_states()
    for _ in range(4):
        s = system.next_state(s, Action("step", 0))
    cpu = s.machine.cpus[0]
    assert cpu.rsp == system.platform.region("primary").top - 64
    assert cpu.ss == 0x10
    assert cpu.shadow == 0


@pytest.mark.parametrize(("selector", "vector", "code"), [
    (0x08, 13, 0x08),   # a code segment: #GP(selector)
    (0x18, 13, 0x18),   # read-only data: #GP(selector)
    (0x2B, 13, 0x28),   # RPL 3 != CPL 0: #GP(selector)
    (0x50, 13, 0x50),   # an undeclared entry: #GP(selector)
    (0x03, 13, 0),      # NULL with RPL 3: #GP(0)
    (0x40, 12, 0x40),   # not present: #SS(selector)
])
def test_lss_checks_ss_as_mov_ss_does(
    tmp_path: Path, selector: int, vector: int, code: int
) -> None:
    """SDM Vol. 2 LDS/LES/LFS/LGS/LSS, 64-BIT_MODE "IF SS is loaded": #GP(0) for a NULL
    selector with RPL 3 or RPL != CPL; #GP(selector) beyond the table, RPL != CPL, not a
    writable data segment, DPL != CPL; #SS(selector) not present. Neither RSP nor SS
    changes: the #GP/#SS handler's frame is pushed below the old RSP."""
    body = f"""\
ENTRY(f)
        pushq ${selector:#x}
        movq  $0x1234, %rax
        pushq %rax
        lss   (%rsp), %rsp
        hlt
ENTRY(gp)
        hlt
ENTRY(ss)
        hlt
idt idt
    gate #GP gp interrupt
    gate #SS ss interrupt
end
"""
    header = HEADER.replace("cpu 0 start f rsp top(primary)",
                            "cpu 0 start f rsp top(primary) idt idt") + GDT_LINES
    s = run(load(tmp_path, body, header=header))
    cpu = s.machine.cpus[0]
    assert cpu.pc.routine == ("gp" if vector == 13 else "ss")
    assert cpu.ss == 0x10  # unchanged (the delivery at CPL 0 keeps SS)
    top = load(tmp_path, body, header=header).platform.region("primary").top
    # the frame sits under the two pushed words: old RSP = top - 16 is saved
    [f] = s.machine.frames
    assert f.vector == vector
    words = dict(s.machine.memory)
    assert words[top - 16 - 2 * 8] == top - 16  # the saved RSP
    assert words[top - 16 - 6 * 8] == code      # the error code


def test_pop_ss_is_ud_in_64_bit_code_and_mov_ss_keeps_the_shadow(tmp_path: Path) -> None:
    system = load(tmp_path, asm("pushq $0x2b\npop %ss\n"))
    [s] = system.init_states()
    s = system.next_state(s, Action("step", 0))
    t = system.next_state(s, Action("step", 0))
    assert t.machine.cpus[0].run is Run.SHUTDOWN  # #UD with no IDT
    system = load(tmp_path, asm("movq $0x10, %rax\nmov %ax, %ss\nnop\n"))
    [s] = system.init_states()
    s = system.next_state(system.next_state(s, Action("step", 0)), Action("step", 0))
    assert s.machine.cpus[0].shadow != 0


def test_sysretl_and_iretl(tmp_path: Path) -> None:
    header = HEADER + "lstar idle\n"  # EFER.SCE set: SYSRET is #UD without it
    system = load(tmp_path, """\
        ENTRY(f)
                leaq g32(%rip), %rcx
                movq $0x202, %r11
                sysretl
        GUEST32(g32)
                hlt
        """, header)
    [s] = system.init_states()
    for _ in range(3):
        s = system.next_state(s, Action("step", 0))
    cpu = s.machine.cpus[0]
    assert (cpu.cpl, cpu.pc) == (3, CodeAddr("g32", 0))
    assert system.layout.code_address(CodeAddr("g32", 0)) < 1 << 32  # an EIP can name it
    system = load(tmp_path, """\
        ENTRY(f)
                pushq $0x2b
                movabsq $0x0000200000000202, %rax
                pushq %rax
                movabsq $0x0000002300001000, %rax
                pushq %rax
                iretl
        """, header)
    [s] = system.init_states()
    for _ in range(6):
        s = system.next_state(s, Action("step", 0))
    cpu = s.machine.cpus[0]
    assert cpu.rsp == 0x2000
    assert cpu.cpl == 3 and cpu.rflags == 0x202


def test_symbolic_values_keep_their_flags(tmp_path: Path) -> None:
    """A symbolic operand's flags are a record the Jcc decides (both outcomes feasible)."""
    header = HEADER + "input x = 0 | 1\n"
    system = load(tmp_path, asm("""\
        input %rax, x
        subl $5, %eax
        jb 1f
        movq $1, %rbx
    1:  nop
        """), header, symbolic=("x",))
    [s] = system.init_states()
    finals = set()
    todo = [s]
    while todo:
        s = todo.pop()
        acts = [a for a in system.actions(s) if a.cpu == 0 and a.kind == "step"]
        if s.machine.cpus[0].run is not Run.RUNNING or not acts:
            finals.add(s.machine.cpus[0].reg("rbx"))
            continue
        for a in acts:
            todo.append(system.next_state(s, a))
    assert finals == {0, 1}


# -- errors: path:line, exit 2, no traceback -------------------------------------------------------
@pytest.mark.parametrize(
    ("instruction", "words"),
    [
        ("cmpq $0x800000000000, %rcx", ("cmpq", "$imm32", "sign-extended")),
        ("andq $0xffff800000000000, %rcx", ("andq", "$imm32")),
        ("pushq $0x100000000", ("pushq", "$imm32")),
        ("movq $0x100000000, 8(%rsp)", ("movq", "$imm32, mem")),
        ("addl $0x100000000, %eax", ("32-bit immediate",)),
        ("shlq $256, %rax", ("imm8",)),
        ("movq %eax, %rbx", ("operand size mismatch",)),
        ("movl %eax, %rbx", ("operand size mismatch",)),
        ("jp 1f", ("PF is not modelled",)),
        ("setpe %al", ("PF is not modelled",)),
        ("shlq %rcx, %rax", ("%cl",)),
        ("setc %eax", ("byte register",)),
        ("movq %ah, %rax", ("operand size mismatch",)),  # %ah is a byte register
        ("movq %fs:8, %rax", ("only %gs:",)),
        ("movq 8(%rax,%rsp,8), %rbx", ("index register",)),
        ("movq 8(%rax,%rbx,3), %rcx", ("scale",)),
        ("movq nosuchvar, %rax", ("operand form", "undefined")),
        ("jmp *$1", ("unknown operand form",)),
        ("imulb %al, %bl", ("unknown instruction",)),
        ("imul %al, %bl", ("no 8-bit form",)),
        ("movzbl %eax, %ebx", ("operand size mismatch",)),
        ("movzbl %al, %rbx", ("operand size mismatch",)),
        ("lss %rax, %rsp", ("operand form",)),
        ("xchg $1, %rax", ("operand form",)),
        ("pushl %eax", ("unknown instruction",)),
        ("pushq %eax", ("not supported in 64-bit code",)),
    ],
)
def test_instruction_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], instruction: str,
    words: tuple[str, ...],
) -> None:
    tail = f"ENTRY(r)\n1:      {instruction}\n        hlt\n"
    code, err, design, _ = run_cli(tmp_path, capsys, HEAD + tail)
    assert_error(err, code, design, HEAD_LINES + 2, *words)


def test_pseudo_c_store_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tail = "function r {\n    %eax = 1;\n}\n"
    code, err, design, _ = run_cli(tmp_path, capsys, HEAD + tail)
    assert_error(err, code, design, HEAD_LINES + 2, "64-bit registers")


def test_wrmsr_lstar_moves_the_syscall_entry(tmp_path: Path) -> None:
    """WRMSR IA32_LSTAR with a label's address: the next SYSCALL enters there."""
    header = HEADER.replace("percpu other = 9\n", "percpu other = 9\nlstar old_entry\n")
    system = load(tmp_path, """\
        ENTRY(f)
                leaq new_entry(%rip), %rax
                movq %rax, %rdx
                shrq $32, %rdx
                movl $0xc0000082, %ecx
                wrmsr
                syscall
        ENTRY(old_entry)
                ud2
        ENTRY(new_entry)
                hlt
        """, header)
    s = run(system)
    assert s.machine.cpus[0].pc == CodeAddr("new_entry", 1)


def test_rip_relative_variables(tmp_path: Path) -> None:
    """`leaq table(%rip), %r10` is a variable's address, `movq w(%rip), %rax` its value,
    and `call *(%r10,%rax,8)` calls through a table of code addresses."""
    system = load(tmp_path, asm("""\
        leaq g(%rip), %rcx
        movq %rcx, table+16(%rip)
        movq w(%rip), %rax
        leaq table(%rip), %r10
        movq $2, %rdx
        call *(%r10,%rdx,8)
        """) + "g:      movq $42, %r8\n        ret\n")
    s = run(system)
    assert regs(s, "rax", "r8") == (5, 42)
    assert var(system, s, "table")[2] == CodeAddr("f", 7)  # type: ignore[index]
