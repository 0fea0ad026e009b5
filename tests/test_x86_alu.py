"""model/x86/alu.py and model/x86/msr.py: the architectural rules for arithmetic, flags,
condition codes, immediates and MSRs, each test naming its SDM section."""

from __future__ import annotations

import itertools

import pytest

from checker import symbolic as sym
from checker.symbolic import run_with
from model.x86 import alu, msr
from model.x86.alu import SF, ZF
from model.x86.arch import CF, GP, OF_FLAG
from model.x86.memory import ArchFault
from model.x86.state import Machine
from tests.x86_helpers import setup


def machine() -> Machine:
    return setup()[1]

ALL = ZF | SF | CF | OF_FLAG


def flags_of(op: str, x: int, y: int, width: int, before: int = 0) -> tuple[int, set[str]]:
    r, f = alu.arith(op, x, y, width, before)
    return r, {n for n, b in (("ZF", ZF), ("SF", SF), ("CF", CF), ("OF", OF_FLAG)) if f & b}


# -- SDM Vol. 1 §3.4.3.1 status flags, Vol. 2 ADD/SUB/CMP ----------------------------------
@pytest.mark.parametrize(
    ("op", "x", "y", "width", "result", "flags"),
    [
        ("add", 2**64 - 1, 1, 64, 0, {"ZF", "CF"}),
        ("add", 2**63 - 1, 1, 64, 2**63, {"SF", "OF"}),
        ("add", 0xFF, 1, 8, 0, {"ZF", "CF"}),
        ("add", 0x7F, 1, 8, 0x80, {"SF", "OF"}),
        ("add", 0xFFFF_FFFF, 1, 32, 0, {"ZF", "CF"}),
        ("sub", 0, 1, 64, 2**64 - 1, {"SF", "CF"}),
        ("sub", 2**63, 1, 64, 2**63 - 1, {"OF"}),
        ("cmp", 5, 5, 16, 0, {"ZF"}),
        ("sub", 0x80, 1, 8, 0x7F, {"OF"}),
    ],
)
def test_vol1_3_4_3_1_add_sub_status_flags(
    op: str, x: int, y: int, width: int, result: int, flags: set[str]
) -> None:
    assert flags_of(op, x, y, width) == (result, flags)


def test_vol2_and_or_xor_test_clear_cf_and_of() -> None:
    """SDM Vol. 2 AND/OR/XOR/TEST: "The OF and CF flags are cleared"."""
    for op in ("and", "or", "xor", "test"):
        _, f = alu.arith(op, 0x80, 0x80 if op != "xor" else 0, 8, CF | OF_FLAG)
        assert f & (CF | OF_FLAG) == 0
        assert f & SF  # bit 7 of the 8-bit result


def test_vol2_inc_dec_leave_cf() -> None:
    """SDM Vol. 2 INC/DEC: "The CF flag is not affected"."""
    assert alu.arith("inc", 2**64 - 1, 0, 64, CF)[1] & CF
    assert not alu.arith("inc", 2**64 - 1, 0, 64, 0)[1] & CF
    assert flags_of("inc", 0x7FFF_FFFF, 0, 32) == (0x8000_0000, {"SF", "OF"})
    assert flags_of("dec", 0, 0, 32) == (0xFFFF_FFFF, {"SF"})


def test_vol2_neg_and_not() -> None:
    """SDM Vol. 2 NEG: CF = (source != 0); NOT: no flags."""
    assert flags_of("neg", 0, 0, 64) == (0, {"ZF"})
    assert flags_of("neg", 1, 0, 64) == (2**64 - 1, {"SF", "CF"})
    assert flags_of("neg", 0x80, 0, 8) == (0x80, {"SF", "CF", "OF"})
    assert alu.arith("not", 0xF0, 0, 8, ALL) == (0x0F, ALL)


def test_vol2_shifts() -> None:
    """SDM Vol. 2 SAL/SAR/SHL/SHR: CF the last bit out; OF for 1-bit shifts; the count
    masked to 5 bits (6 for 64-bit operands); a zero count changes no flag."""
    assert flags_of("shl", 1, 63, 64) == (2**63, {"SF"})
    assert flags_of("shl", 0xC000_0000, 1, 32) == (0x8000_0000, {"CF", "SF"})
    assert flags_of("shl", 0x4000_0000, 1, 32) == (0x8000_0000, {"SF", "OF"})
    assert flags_of("shr", 3, 1, 64) == (1, {"CF"})
    assert flags_of("shr", 0x8000_0000, 1, 32) == (0x4000_0000, {"OF"})
    assert flags_of("sar", 0x80, 1, 8) == (0xC0, {"SF"})
    assert flags_of("sar", 2**63, 63, 64) == (2**64 - 1, {"SF"})
    assert alu.arith("shl", 5, 32, 32, ALL) == (5, ALL)  # count 32 & 31 = 0: nothing changes
    assert alu.arith("shl", 5, 64, 64, 0) == (5, 0)


def test_vol2_imul_cf_of_when_the_product_does_not_fit() -> None:
    """SDM Vol. 2 IMUL: CF and OF set when the signed result is truncated."""
    assert flags_of("imul", 3, 2**64 - 2, 64)[0] == 2**64 - 6
    assert "CF" not in flags_of("imul", 3, 2**64 - 2, 64)[1]
    assert {"CF", "OF"} <= flags_of("imul", 2**62, 4, 64)[1]
    assert {"CF", "OF"} <= flags_of("imul", 0x100, 0x100, 16)[1]


def test_vol2_bt_selects_the_bit_modulo_the_width() -> None:
    """SDM Vol. 2 BT: CF := Bit(BitBase, BitOffset); a register offset is taken modulo the
    operand size."""
    assert alu.bit_test(0b100, 2, 64, 0) == CF
    assert alu.bit_test(0b100, 66, 64, 0) == CF
    assert alu.bit_test(0b100, 3, 32, CF | ZF) == ZF


# -- SDM Vol. 1 Appendix B condition codes ------------------------------------------------------
def test_appendix_b_every_spelling() -> None:
    """Table B-1: every mnemonic spelling and the flags it tests."""
    same = [("b", "c", "nae"), ("ae", "nb", "nc"), ("e", "z"), ("ne", "nz"), ("be", "na"),
            ("a", "nbe"), ("l", "nge"), ("ge", "nl"), ("le", "ng"), ("g", "nle")]
    for group in same:
        assert len({alu.CONDITION_ALIASES[c] for c in group}) == 1
    for bits in range(16):
        flags = sum(b for k, b in enumerate((ZF, SF, CF, OF_FLAG)) if bits >> k & 1)
        zf, sf, cf, of = (bool(flags & b) for b in (ZF, SF, CF, OF_FLAG))
        expect = {"o": of, "b": cf, "e": zf, "be": cf or zf, "s": sf, "l": sf != of,
                  "le": zf or sf != of}
        for cc, want in expect.items():
            assert alu.condition(cc, flags) is want
            negated = {"o": "no", "b": "ae", "e": "ne", "be": "a", "s": "ns", "l": "ge",
                       "le": "g"}[cc]
            assert alu.condition(negated, flags) is (not want)
    assert alu.PARITY_CONDITIONS.isdisjoint(alu.CONDITION_ALIASES)


def test_appendix_b_lazy_conditions_agree_with_the_bits() -> None:
    """The symbolic flag records give the same answer as concrete bits (Appendix B), for
    CMP, ADD, logic results, INC/DEC and shifts by a constant, at every width."""
    values = {8: (0, 1, 0x7F, 0x80, 0xFF), 32: (0, 1, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF)}
    ops = ("cmp", "add", "and", "inc", "dec", "neg", "shl", "shr", "sar")
    for width, vals in values.items():
        for op, x, y in itertools.product(ops, vals, (0, 1, 3, 0x80)):
            if op in ("shl", "shr", "sar") and y == 0:
                continue
            _, flags = alu.arith(op, x, y, width, 0)
            r = alu.symbolic_result(op if op != "cmp" else "sub", x, y, width)
            record = alu.symbolic_flags(op, x, y, r, width, False)
            if record is alu.KEEP:
                assert alu.arith(op, x, y, width, ALL)[1] == ALL  # a zero count: no flags
                continue
            for cc in ("o", "no", "b", "ae", "e", "ne", "be", "a", "s", "ns", "l", "ge",
                       "le", "g"):
                got = alu.lazy_condition(cc, record)
                assert bool(got) is alu.condition(cc, flags), (op, x, y, width, cc)


def test_lazy_condition_on_symbols_splits() -> None:
    """A Jcc on a symbolic compare has two feasible outcomes."""
    x = sym.var("x")
    record = ("cmp", x, 5, 64)
    outcomes = set()
    for choice in (True, False):
        value, _ = run_with([choice], lambda: sym.decide(alu.lazy_condition("b", record)))
        outcomes.add(value)
    assert outcomes == {True, False}
    with pytest.raises(alu.UnknownFlag):
        alu.lazy_condition("b", ("partial", x, 64))


# -- SDM Vol. 1 §3.4.1.1, Vol. 2 MOVZX/MOVSX, §2.2.1.5 immediates ----------------------------------
def test_vol1_3_4_1_1_register_writes() -> None:
    """32-bit results are zero-extended to 64 bits; 8- and 16-bit ones keep the rest."""
    old = 0x1122_3344_5566_7788
    assert alu.merge_register(old, 0xFFFF_FFFF_0000_0001, 32) == 1
    assert alu.merge_register(old, 0xAB, 8) == 0x1122_3344_5566_77AB
    assert alu.merge_register(old, 0xABCD, 16) == 0x1122_3344_5566_ABCD


def test_vol2_movzx_movsx() -> None:
    assert alu.extend(0x80, 8, 32, signed=False) == 0x80
    assert alu.extend(0x80, 8, 64, signed=True) == 2**64 - 0x80
    assert alu.extend(0x8000_0000, 32, 64, signed=True) == 0xFFFF_FFFF_8000_0000
    assert alu.extend(0xFFFF, 16, 32, signed=True) == 0xFFFF_FFFF


def test_vol2_2_2_1_5_immediates_are_sign_extended() -> None:
    assert alu.fits_immediate(0x7FFF_FFFF, 32)
    assert alu.fits_immediate(-1, 32)
    assert alu.fits_immediate(0xFFFF_FFFF_FFFF_FFF0, 32)  # -16, written unsigned
    assert not alu.fits_immediate(0x8000_0000, 32)
    assert not alu.fits_immediate(0x8000_0000_0000, 32)
    assert not alu.fits_immediate(0xFFFF_8000_0000_0000, 32)
    assert alu.fits_unsigned_or_signed(0xFFFF_FFFF, 32)
    assert not alu.fits_unsigned_or_signed(0x1_0000, 16)


# -- SDM Vol. 2 RDMSR/WRMSR/SWAPGS, Vol. 4 Table 2-2 ---------------------------------------------
def test_vol2_rdmsr_wrmsr_gp_rules() -> None:
    m = machine()
    cpu = m.cpus[0]
    with pytest.raises(ArchFault) as e:
        msr.rdmsr(cpu, 0x1234, {}, 0)
    assert (e.value.vector, e.value.error_code) == (GP, 0)
    with pytest.raises(ArchFault) as e:
        msr.rdmsr(cpu._replace(cpl=3), msr.IA32_LSTAR, {}, 0)
    assert e.value.vector == GP
    with pytest.raises(ArchFault):
        msr.wrmsr(m, 0, msr.IA32_LSTAR, 0x8000_0000_0000, 0)  # non-canonical
    m2 = msr.wrmsr(m, 0, msr.IA32_STAR, 0x23_0008_0000_0000, 0)
    assert msr.rdmsr(m2.cpus[0], msr.IA32_STAR, {}, 0) == 0x23_0008_0000_0000
    assert msr.rdmsr(m.cpus[0], msr.IA32_EFER, {msr.IA32_EFER: 0xD01}, 0) == 0xD01


def test_vol2_swapgs_exchanges_the_gs_bases() -> None:
    m = machine()
    area = 0xFFFF_8340_0000_0000
    cpu = m.cpus[0]
    assert msr.rdmsr(cpu, msr.IA32_GS_BASE, {}, area) == area  # own per-CPU area
    swapped = msr.swapgs(cpu)
    assert msr.rdmsr(swapped, msr.IA32_GS_BASE, {}, area) == cpu.kernel_gs_base
    assert msr.rdmsr(swapped, msr.IA32_KERNEL_GS_BASE, {}, area) == area
    assert msr.swapgs(swapped) == cpu


def test_sdm_15_3_1_2_mcg_status_mcip() -> None:
    m = machine()
    m = m.with_cpu(0, m.cpus[0]._replace(mcip=True))
    assert msr.rdmsr(m.cpus[0], msr.IA32_MCG_STATUS, {}, 0) == msr.MCG_STATUS_MCIP
    assert not msr.wrmsr(m, 0, msr.IA32_MCG_STATUS, 0, 0).cpus[0].mcip


def test_edx_eax() -> None:
    assert msr.join_edx_eax(0xFFFF_FFFF_0000_0001, 0x1_0000_0002) == 0x1_0000_0002
    assert msr.split_edx_eax(0x1234_5678_9ABC_DEF0) == (0x1234_5678, 0x9ABC_DEF0)


# -- SDM Vol. 2 SYSENTER, CLD/STD, STAC/CLAC (model/x86/instructions.py) -------------------------
def test_vol2_sysenter() -> None:
    """SYSENTER: #GP(0) with IA32_SYSENTER_CS null; else CPL 0 at SYSENTER_EIP on
    SYSENTER_ESP with IF and RF cleared; #UD on AMD in long mode."""
    from model.x86 import instructions as insn
    from model.x86.arch import IF, RF, UD
    from model.x86.state import CodeAddr

    p, m = setup(cpl=3)
    m = m.with_cpu(0, m.cpus[0]._replace(rflags=IF | RF | 2))
    with pytest.raises(ArchFault) as e:
        insn.sysenter(p, m, 0, None, 0)
    assert (e.value.vector, e.value.error_code) == (GP, 0)
    out = insn.sysenter(p, m, 0, CodeAddr("entry", 0), 0x1000).cpus[0]
    assert (out.cpl, out.pc, out.rsp, out.rflags) == (0, CodeAddr("entry", 0), 0x1000, 2)
    from dataclasses import replace

    with pytest.raises(ArchFault) as e:
        insn.sysenter(replace(p, vendor="amd"), m, 0, CodeAddr("entry", 0), 0x1000)
    assert e.value.vector == UD


def test_vol2_cld_std_stac_clac() -> None:
    from model.x86 import instructions as insn
    from model.x86.arch import AC_FLAG, DF_FLAG, UD

    _, m = setup()
    m = insn.set_direction(m, 0, True)
    assert m.cpus[0].rflags & DF_FLAG
    assert not insn.set_direction(m, 0, False).cpus[0].rflags & DF_FLAG
    assert insn.set_ac(m, 0, True).cpus[0].rflags & AC_FLAG
    _, user = setup(cpl=3)
    with pytest.raises(ArchFault) as e:
        insn.set_ac(user, 0, False)
    assert e.value.vector == UD
