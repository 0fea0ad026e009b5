"""ADC and SBB (CF read and written) and the high-byte registers %ah %bh %ch %dh, as
Xen's create_bounce_frame uses them: semantics per SDM rule, and the `path:line` errors
(exit 2, no traceback) for what GNU as refuses."""

from __future__ import annotations

from pathlib import Path

import pytest

from model.x86 import alu
from model.x86.alu import SF, ZF
from model.x86.arch import CF, OF_FLAG
from tests.test_isa_instructions import asm, load, regs, run
from tests.test_lang_errors import design_error


# -- model/x86/alu: the SDM rules -----------------------------------------------------------
def test_adc_adds_the_carry_sdm_vol2_adc() -> None:
    """SDM Vol. 2 ADC: DEST := DEST + SRC + CF; CF/OF of the whole sum."""
    assert alu.arith("adc", 1, 2, 32, CF) == (4, 0)
    r, f = alu.arith("adc", 0xFFFF_FFFF, 0, 32, CF)  # the carry alone carries out
    assert r == 0 and f & CF and f & ZF
    r, f = alu.arith("adc", 0x7F, 0, 8, CF)  # 0x7f + 0 + 1 overflows a signed byte
    assert r == 0x80 and f & OF_FLAG and f & SF and not f & CF
    assert alu.arith("adc", 5, 6, 64, 0)[0] == 11


def test_sbb_subtracts_the_borrow_sdm_vol2_sbb() -> None:
    """SDM Vol. 2 SBB: DEST := DEST - (SRC + CF); `sbb %r, %r` is -CF."""
    r, f = alu.arith("sbb", 7, 7, 32, CF)
    assert r == 0xFFFF_FFFF and f & CF and f & SF
    r, f = alu.arith("sbb", 7, 7, 32, 0)
    assert r == 0 and f & ZF and not f & CF
    r, f = alu.arith("sbb", 0, 0xFFFF_FFFF, 32, CF)  # SRC + CF wraps: still a borrow
    assert r == 0 and f & CF
    r, f = alu.arith("sbb", 0x80, 0, 8, CF)  # -128 - 1 overflows a signed byte
    assert r == 0x7F and f & OF_FLAG and f & CF == 0


def test_high_byte_merge_sdm_vol1_3_4_1() -> None:
    """SDM Vol. 1 §3.4.1 (Figure 3-5): AH is bits 15:8 of RAX; a write leaves the rest."""
    assert alu.merge_high_byte(0x1122_3344_5566_7788, 0x1AB) == 0x1122_3344_5566_AB88


# -- through the interpreter ---------------------------------------------------------------------
def test_xen_range_check_with_sbb_and_adc(tmp_path: Path) -> None:
    # create_bounce_frame: %ecx := -(addr < limit), then limit2 + carry into %ecx
    s = run(load(tmp_path, asm("""\
        movq $5, %rax
        cmpq $9, %rax
        sbb  %ecx, %ecx
        movq $3, %rdx
        cmpq $2, %rdx
        sbb  %esi, %esi
        movq $0, %rbx
        cmpq $1, %rbx
        movl $10, %edi
        adc  %edi, %edi
        movq $-1, %r8
        addq $1, %r8
        adcq $0, %r8
        """)))
    assert regs(s, "rcx", "rsi", "rdi", "r8") == (0xFFFF_FFFF, 0, 21, 1)


def test_high_byte_registers_read_and_write_bits_15_8(tmp_path: Path) -> None:
    s = run(load(tmp_path, asm("""\
        movq $0x1034, %rax
        movq $-1, %rcx
        movq $1, %rdx
        testq %rdx, %rdx
        setnz %ch
        addb %ch, %ch
        orb  %ch, %ah
        movb %ah, %bl
        movzbl %ah, %esi
        movq $0, %rdi
        movb $0x7f, %dh
        """)))
    assert regs(s, "rax", "rcx") == (0x1234, 0xFFFF_FFFF_FFFF_02FF)
    assert s.machine.cpus[0].reg("rbx") & 0xFF == 0x12
    assert regs(s, "rsi", "rdx") == (0x12, 0x7F01)


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("orb %ch, %r8b", ("%ch", "REX", "%r8")),
        ("movb %ah, %sil", ("%ah", "REX", "%sil")),
        ("orb %ch, 1(%r9)", ("%ch", "REX", "%r9")),
        ("movzbq %ah, %rax", ("%ah", "64-bit")),
        ("shlq %ch, %rax", ("shl",)),
        ("movw %ah, %ax", ("mismatch",)),
    ],
)
def test_high_byte_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str], line: str,
                          words: tuple[str, ...]) -> None:
    design_error(tmp_path, capsys, f"ENTRY(r)\n        {line}\n", 2, *words)


# -- MOV to/from CR3 ---------------------------------------------------------------------------
def test_cr3_is_written_in_ring_0_and_read_back(tmp_path: Path) -> None:
    """SDM Vol. 2 MOV to/from control registers: a CR3 write at CPL 0 (a TLB flush: no
    modelled memory changes) is read back as written."""
    s = run(load(tmp_path, asm("""\
        movq $0x1000, %rcx
        mov  %rcx, %cr3
        movq %cr3, %rdx
        movq $7, %rcx
        """)))
    assert regs(s, "rdx") == (0x1000,)


def test_cr3_at_cpl3_is_gp_sdm_vol2_mov_cr() -> None:
    import pytest as _pytest

    from model.x86 import msr
    from model.x86.memory import ArchFault
    from model.x86.state import Cpu

    fields = Cpu._fields
    assert "cpl" in fields
    cpu3 = Cpu._make(getattr(Cpu, "_field_defaults", {}).get(f, 0) for f in fields)
    cpu3 = cpu3._replace(cpl=3, msrs=())
    with _pytest.raises(ArchFault) as e:
        msr.mov_from_cr3(cpu3)
    assert e.value.vector == 13
    assert msr.mov_from_cr3(cpu3._replace(cpl=0)) is None


def test_cr3_read_before_any_write_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.test_lang_errors import run_cli

    code, err, _, _ = run_cli(
        tmp_path, capsys, "stack primary size 0x1000\ncpu 0 start f rsp top(primary)\n"
        + asm("mov %cr3, %rax"),
    )
    assert code != 0 and "%cr3" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("mov %cr0, %rax", ("%cr0", "only %cr3 and %cr4")),
        ("movl %eax, %cr3", ("mov %reg64, %crN",)),
        ("mov $1, %cr3", ("mov %reg64, %crN",)),
        ("mov %cr3, 8(%rsp)", ("mov %reg64, %crN",)),
        ("add %rax, %cr3", ("mov %reg64, %crN",)),
        ("movl %eax, %cr4", ("mov %reg64, %crN",)),
    ],
)
def test_cr3_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str], line: str,
                    words: tuple[str, ...]) -> None:
    design_error(tmp_path, capsys, f"ENTRY(r)\n        {line}\n", 2, *words)


# -- reads across two words ----------------------------------------------------------------------
def test_a_read_across_two_words_combines_their_bytes(tmp_path: Path) -> None:
    """Little-endian bytes (SDM Vol. 1 §1.3.1) of two words: `pushq 1(%rsp)` as Xen's
    create_bounce_frame pushes vcpu_info's upcall mask."""
    s = run(load(tmp_path, asm("""\
        movabsq $0x1122334455667788, %rax
        movabsq $0x99aabbccddeeff00, %rbx
        pushq %rbx
        pushq %rax
        pushq 1(%rsp)
        popq %rcx
        movl 6(%rsp), %edx
        movw 7(%rsp), %si
        """)))
    assert regs(s, "rcx") == (0x0011_2233_4455_6677,)
    assert regs(s, "rdx") == (0xFF00_1122,)
    assert s.machine.cpus[0].reg("rsi") & 0xFFFF == 0x0011


def test_a_read_across_a_symbolic_word_is_an_error(tmp_path: Path) -> None:
    from tests.test_isa_instructions import HEADER

    system = load(tmp_path, asm("""\
        input %rax, x
        pushq %rax
        pushq %rax
        movq 4(%rsp), %rbx
        """), HEADER + "input x = 0 | 1\n", symbolic=("x",))
    with pytest.raises(Exception, match="across two words holding a symbolic value"):
        run(system)


@pytest.mark.parametrize("carry", ["movq $1, %rbx", "movq $0, %rbx"])
def test_adc_sbb_with_a_symbolic_operand(tmp_path: Path, carry: str) -> None:
    """A symbolic ADC/SBB: the carry in is settled first; with CF clear they are ADD/SUB
    (flags exact), with CF set only ZF/SF are computed and a later read of CF is an error,
    never a guess."""
    from model.x86.state import Run
    from tests.test_isa_instructions import HEADER

    system = load(tmp_path, asm(f"""\
        input %rax, x
        {carry}
        cmpq $1, %rbx
        movq $-1, %rcx
        adcq %rax, %rcx
        sbbq $0, %rax
        jz 1f
        movq $1, %rdx
    1:  nop
        """), HEADER + "input x = 0 | 1\n", symbolic=("x",))
    if carry.endswith("$0, %rbx"):  # CF set: the SBB after the ADC reads an unknown CF
        with pytest.raises(Exception, match="sbb reads CF after"):
            run(system)
        return
    [s] = system.init_states()
    seen: set[int] = set()
    todo = [s]
    while todo:
        s = todo.pop()
        acts = [a for a in system.actions(s) if a.cpu == 0 and a.kind == "step"]
        if s.machine.cpus[0].run is not Run.RUNNING or not acts:
            value = s.machine.cpus[0].reg("rdx")
            assert isinstance(value, int)
            seen.add(value)
            continue
        todo.extend(system.next_state(s, a) for a in acts)
    assert seen == {0, 1}
