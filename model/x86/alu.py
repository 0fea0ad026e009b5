"""Integer arithmetic, the status flags it writes and the condition codes that read them.

Pure functions of operand values, an operand width (8, 16, 32 or 64 bits) and the flags
before the instruction, so each rule lives here once and the design language's
interpreter only moves operands. Sources: Intel SDM Vol. 1 §3.4.3.1 (status flags) and
Appendix B (condition codes), and each instruction's page in Vol. 2 (its "Flags Affected").

Symbolic operands (checker.symbolic terms) cannot produce flag bits; the interpreter keeps
a `Lazy` record of what the flags stand for instead, and `lazy_condition` turns a
condition code into a symbolic condition over that record.

PF and AF are not modelled: a condition code that reads PF (`p`, `np`, `pe`, `po`) is
rejected by the design language rather than guessed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from checker import symbolic as sym
from model.x86.arch import AC_FLAG, CF, DF_FLAG, IF, OF_FLAG

ZF = 1 << 6
SF = 1 << 7
IF_FLAG, DF, AC = IF, DF_FLAG, AC_FLAG  # the other RFLAGS bits code can read
STATUS = ZF | SF | CF | OF_FLAG  # the status flags the model computes

# Condition codes (SDM Vol. 1 Appendix B, Table B-1): every spelling the assembler accepts
# and the canonical code it means.
CONDITION_ALIASES: dict[str, str] = {
    "o": "o", "no": "no",
    "b": "b", "c": "b", "nae": "b",
    "ae": "ae", "nb": "ae", "nc": "ae",
    "e": "e", "z": "e", "ne": "ne", "nz": "ne",
    "be": "be", "na": "be", "a": "a", "nbe": "a",
    "s": "s", "ns": "ns",
    "l": "l", "nge": "l", "ge": "ge", "nl": "ge",
    "le": "le", "ng": "le", "g": "g", "nle": "g",
}
# Spellings that test PF, which the model does not compute.
PARITY_CONDITIONS = frozenset({"p", "np", "pe", "po"})

# The flags each condition reads (for the instruction table's "flags read").
CONDITION_FLAGS: dict[str, int] = {
    "o": OF_FLAG, "no": OF_FLAG, "b": CF, "ae": CF, "e": ZF, "ne": ZF,
    "be": CF | ZF, "a": CF | ZF, "s": SF, "ns": SF,
    "l": SF | OF_FLAG, "ge": SF | OF_FLAG, "le": ZF | SF | OF_FLAG, "g": ZF | SF | OF_FLAG,
}


# Each canonical condition code (see CONDITION_ALIASES) as a test of RFLAGS (SDM Vol. 1
# Appendix B, "EFLAGS Condition Codes"); compiled steps look their test up once.
CONDITIONS: dict[str, Callable[[int], bool]] = {
    "o": lambda f: bool(f & OF_FLAG),
    "no": lambda f: not f & OF_FLAG,
    "b": lambda f: bool(f & CF),
    "ae": lambda f: not f & CF,
    "e": lambda f: bool(f & ZF),
    "ne": lambda f: not f & ZF,
    "be": lambda f: bool(f & CF) or bool(f & ZF),
    "a": lambda f: not f & CF and not f & ZF,
    "s": lambda f: bool(f & SF),
    "ns": lambda f: not f & SF,
    "l": lambda f: bool(f & SF) != bool(f & OF_FLAG),
    "ge": lambda f: bool(f & SF) == bool(f & OF_FLAG),
    "le": lambda f: bool(f & ZF) or bool(f & SF) != bool(f & OF_FLAG),
    "g": lambda f: not f & ZF and bool(f & SF) == bool(f & OF_FLAG),
}


def condition(cc: str, flags: int) -> bool:
    """Does condition code `cc` (canonical, see CONDITION_ALIASES) hold for RFLAGS `flags`
    (SDM Vol. 1 Appendix B)?"""
    return CONDITIONS[cc](flags)


def mask(width: int) -> int:
    return (1 << width) - 1


def sign_extend(value: int, width: int) -> int:
    """A `width`-bit value as a signed integer."""
    value &= mask(width)
    return value - (1 << width) if value >> (width - 1) else value


def status_flags(
    flags: int, result: int, width: int, carry: bool, overflow: bool
) -> int:
    """RFLAGS with ZF, SF, CF and OF set from a `width`-bit result (SDM Vol. 1 §3.4.3.1:
    ZF "result is zero", SF "most-significant bit of the result")."""
    out = flags & ~STATUS
    r = result & mask(width)
    if r == 0:
        out |= ZF
    if r >> (width - 1):
        out |= SF
    if carry:
        out |= CF
    if overflow:
        out |= OF_FLAG
    return out


# Binary and unary operations: (result before masking, CF, OF) from width-bit operands.
def _add(x: int, y: int, w: int) -> tuple[int, bool, bool]:
    raw = x + y
    r = raw & mask(w)
    return raw, raw > mask(w), bool(((~(x ^ y) & (x ^ r)) >> (w - 1)) & 1)


def _sub(x: int, y: int, w: int) -> tuple[int, bool, bool]:
    raw = x - y
    r = raw & mask(w)
    return raw, y > x, bool((((x ^ y) & (x ^ r)) >> (w - 1)) & 1)


def _logic(f: Callable[[int, int], int]) -> Callable[[int, int, int], tuple[int, bool, bool]]:
    # AND, OR, XOR, TEST: "The OF and CF flags are cleared" (SDM Vol. 2 AND/OR/XOR/TEST).
    return lambda x, y, w: (f(x, y), False, False)


def _shl(x: int, y: int, w: int) -> tuple[int, bool, bool]:
    # SAL/SHL (SDM Vol. 2): the count is masked to 5 bits (6 for 64-bit operands); CF is
    # the last bit shifted out; OF is defined for 1-bit shifts as MSB(result) XOR CF.
    n = y & (63 if w == 64 else 31)
    if n == 0:
        return x, False, False
    raw = x << n
    cf = bool((x >> (w - n)) & 1) if n <= w else False
    of = n == 1 and bool(((raw & mask(w)) >> (w - 1)) & 1) != cf
    return raw, cf, of


def _shr(x: int, y: int, w: int) -> tuple[int, bool, bool]:
    # SHR: OF for a 1-bit shift is the operand's original MSB.
    n = y & (63 if w == 64 else 31)
    if n == 0:
        return x, False, False
    return x >> n, bool((x >> (n - 1)) & 1), n == 1 and bool(x >> (w - 1))


def _sar(x: int, y: int, w: int) -> tuple[int, bool, bool]:
    # SAR: OF is cleared for 1-bit shifts.
    n = y & (63 if w == 64 else 31)
    if n == 0:
        return x, False, False
    sx = sign_extend(x, w)
    return sx >> n, bool((sx >> (n - 1)) & 1), False


def _imul(x: int, y: int, w: int) -> tuple[int, bool, bool]:
    # IMUL (SDM Vol. 2): CF = OF = 1 when the signed product does not fit the destination.
    full = sign_extend(x, w) * sign_extend(y, w)
    spill = sign_extend(full, w) != full
    return full, spill, spill


def _neg(x: int, y: int, w: int) -> tuple[int, bool, bool]:
    # NEG: CF = (source != 0); OF as for 0 - x.
    raw, _cf, of = _sub(0, x, w)
    return raw, x != 0, of


BINARY: dict[str, Callable[[int, int, int], tuple[int, bool, bool]]] = {
    "add": _add, "sub": _sub, "cmp": _sub,
    "and": _logic(lambda x, y: x & y), "test": _logic(lambda x, y: x & y),
    "or": _logic(lambda x, y: x | y), "xor": _logic(lambda x, y: x ^ y),
    "shl": _shl, "sal": _shl, "shr": _shr, "sar": _sar, "imul": _imul,
    "inc": lambda x, y, w: _add(x, 1, w), "dec": lambda x, y, w: _sub(x, 1, w),
    "neg": _neg,
}
SHIFTS = frozenset({"shl", "sal", "shr", "sar"})
CARRY_IN = frozenset({"adc", "sbb"})  # read CF as well as writing it


def _adc(x: int, y: int, w: int, carry: int) -> tuple[int, bool, bool]:
    # ADC (SDM Vol. 2): DEST := DEST + SRC + CF; CF and OF as for the addition of all three.
    raw = x + y + carry
    r = raw & mask(w)
    return raw, raw > mask(w), bool(((~(x ^ y) & (x ^ r)) >> (w - 1)) & 1)


def _sbb(x: int, y: int, w: int, carry: int) -> tuple[int, bool, bool]:
    # SBB (SDM Vol. 2): DEST := DEST - (SRC + CF); CF is the borrow of the whole
    # subtraction (SRC + CF > DEST, unsigned), OF the signed overflow of DEST - SRC - CF.
    raw = x - y - carry
    r = raw & mask(w)
    return raw, y + carry > x, bool((((x ^ y) & (x ^ r)) >> (w - 1)) & 1)


def arith(op: str, x: int, y: int, width: int, flags: int) -> tuple[int, int]:
    """`x op y` on `width`-bit operands: the width-bit result and the new RFLAGS.

    INC and DEC leave CF alone (SDM Vol. 2 INC/DEC); a shift by a masked count of zero
    changes no flag; NOT changes no flag (SDM Vol. 2 NOT)."""
    m = mask(width)
    x &= m
    y &= m
    if op == "not":
        return ~x & m, flags
    if op in CARRY_IN:
        carry = 1 if flags & CF else 0
        raw, cf, of = (_adc if op == "adc" else _sbb)(x, y, width, carry)
    else:
        raw, cf, of = BINARY[op](x, y, width)
    r = raw & m
    if op in SHIFTS and y & (63 if width == 64 else 31) == 0:
        return r, flags
    if op in ("inc", "dec"):
        cf = bool(flags & CF)
    return r, status_flags(flags, r, width, cf, of)


def bit_test(base: int, offset: int, width: int, flags: int) -> int:
    """BT (SDM Vol. 2): CF := the selected bit of a register operand (offset modulo the
    width); the other status flags are undefined and the model leaves them."""
    bit = (base >> (offset % width)) & 1
    return (flags & ~CF) | (CF if bit else 0)


def extend(value: int, from_bits: int, to_bits: int, signed: bool) -> int:
    """MOVZX / MOVSX / MOVSXD (SDM Vol. 2): zero- or sign-extend a from_bits-bit value."""
    value &= mask(from_bits)
    if signed:
        value = sign_extend(value, from_bits)
    return value & mask(to_bits)


def merge_register(old: int, value: int, width: int) -> int:
    """A register write of `width` bits (SDM Vol. 1 §3.4.1.1): 32-bit results zero-extend
    to 64 bits; 8- and 16-bit results leave the upper bits alone."""
    if width >= 32:
        return value & mask(width)
    return (old & ~mask(width)) | (value & mask(width))


def merge_high_byte(old: int, value: int) -> int:
    """A write to %ah, %bh, %ch or %dh (SDM Vol. 1 §3.4.1, Figure 3-5): bits 15:8 of the
    register take the byte; every other bit stays."""
    return (old & ~0xFF00) | ((value & 0xFF) << 8)


def fits_immediate(value: int, bits: int) -> bool:
    """Can an immediate of `bits` bits, sign-extended to 64 bits, encode `value` (SDM Vol. 2
    §2.2.1.5: imm8/imm32 are sign-extended to the 64-bit operand size)? A value is taken
    as written: a negative number, or its 64-bit two's complement."""
    v = value & mask(64)
    signed = v - (1 << 64) if v >> 63 else v
    return -(1 << (bits - 1)) <= signed < (1 << (bits - 1))


def fits_unsigned_or_signed(value: int, bits: int) -> bool:
    """An immediate of an operation narrower than 64 bits: any `bits`-bit pattern, written
    signed or unsigned (GNU as accepts `$0xffffffff` for `andl`, and `$-1`)."""
    return -(1 << (bits - 1)) <= value < (1 << bits) or fits_immediate(value, bits)


# -- symbolic flags -------------------------------------------------------------------------------
# A record of what the status flags stand for after an operation on a symbolic value:
#   ("cmp", x, y, width): CMP x - y (and SUB, whose flags are the same);
#   ("add", x, y, width): ADD x + y;
#   ("result", r, width): a logic result (CF = OF = 0): AND, OR, XOR, TEST;
#   ("flags", r, width, cf, of): ZF and SF from r, CF and OF the given conditions;
#   ("partial", r, width): ZF and SF from r, CF and OF unknown (IMUL, a shift by a
#   symbolic count): a condition reading CF or OF raises UnknownFlag rather than guess.
Lazy = tuple[Any, ...]
KEEP: Lazy = ("keep",)  # the operation leaves the flags as they were


class UnknownFlag(Exception):
    """A condition reads CF or OF where the model knows only ZF and SF."""


def _xor(a: Any, b: Any) -> Any:
    return sym.lor(sym.land(a, sym.lnot(b)), sym.land(sym.lnot(a), b))


def lazy_condition(cc: str, lazy: Lazy) -> Any:
    """The condition `cc` tests, over a symbolic record (SDM Vol. 1 Appendix B)."""
    kind = lazy[0]
    if kind == "cmp":
        _, x, y, width = lazy
        xs, ys = sym.sign_extend(x, width), sym.sign_extend(y, width)
        sf = sym.ne(sym.band(sym.sub(x, y), 1 << (width - 1)), 0)
        table = {
            "e": sym.eq(x, y), "ne": sym.ne(x, y),
            "b": sym.ult(x, y), "ae": sym.ule(y, x),
            "a": sym.ult(y, x), "be": sym.ule(x, y),
            "l": sym.slt(xs, ys), "ge": sym.sle(ys, xs),
            "le": sym.sle(xs, ys), "g": sym.slt(ys, xs),
            "s": sf, "ns": sym.lnot(sf),
        }
        if cc in ("o", "no"):
            # x <s y exactly when SF != OF, so OF = SF xor (x <s y).
            of = _xor(sf, table["l"])
            return of if cc == "o" else sym.lnot(of)
        return table[cc]
    if kind == "add":
        _, x, y, width = lazy
        sign = 1 << (width - 1)
        r = sym.band(sym.add(x, y), mask(width))
        cf = sym.ult(r, x)  # the sum wrapped
        of = sym.ne(sym.band(sym.band(sym.bxor(x, r), sym.bxor(y, r)), sign), 0)
        return _from_bits(cc, sym.eq(r, 0), sym.ne(sym.band(r, sign), 0), cf, of)
    r, width = lazy[1], lazy[2]
    sign_bit = sym.ne(sym.band(r, 1 << (width - 1)), 0)
    zero = sym.eq(r, 0)
    if kind == "flags":
        return _from_bits(cc, zero, sign_bit, lazy[3], lazy[4])
    if kind == "partial" and cc not in ("e", "ne", "s", "ns"):
        raise UnknownFlag(cc)
    return _from_bits(cc, zero, sign_bit, False, False)


def _from_bits(cc: str, zf: Any, sf: Any, cf: Any, of: Any) -> Any:
    table = {
        "o": of, "no": sym.lnot(of), "b": cf, "ae": sym.lnot(cf),
        "e": zf, "ne": sym.lnot(zf), "be": sym.lor(cf, zf),
        "a": sym.land(sym.lnot(cf), sym.lnot(zf)), "s": sf, "ns": sym.lnot(sf),
        "l": _xor(sf, of), "ge": sym.lnot(_xor(sf, of)),
        "le": sym.lor(zf, _xor(sf, of)), "g": sym.land(sym.lnot(zf), sym.lnot(_xor(sf, of))),
    }
    return table[cc]


def symbolic_result(op: str, x: Any, y: Any, width: int, carry: int = 0) -> Any:
    """The width-bit result of `x op y` when an operand is symbolic (flags: see Lazy);
    `carry` is CF (0 or 1) for ADC and SBB."""
    m = mask(width)
    x, y = sym.band(x, m), sym.band(y, m)
    count = sym.band(y, 63 if width == 64 else 31)
    table: dict[str, Callable[[], Any]] = {
        "add": lambda: sym.add(x, y), "sub": lambda: sym.sub(x, y),
        "and": lambda: sym.band(x, y), "or": lambda: sym.bor(x, y),
        "xor": lambda: sym.bxor(x, y), "inc": lambda: sym.add(x, 1),
        "dec": lambda: sym.sub(x, 1), "shl": lambda: sym.shl(x, count),
        "sal": lambda: sym.shl(x, count), "shr": lambda: sym.lshr(x, count),
        "sar": lambda: sym.ashr(sym.sign_extend(x, width), count),
        "neg": lambda: sym.neg(x), "not": lambda: sym.bnot(x), "imul": lambda: sym.mul(x, y),
        "adc": lambda: sym.add(sym.add(x, y), carry),
        "sbb": lambda: sym.sub(sym.sub(x, y), carry),
    }
    return sym.band(table[op](), m)


def symbolic_flags(op: str, x: Any, y: Any, r: Any, width: int, old_cf: Any) -> Lazy:
    """The Lazy record of the flags after `x op y` = r with a symbolic operand, following
    the same Vol. 2 "Flags Affected" rules as `arith` (KEEP: no flag changes)."""
    m = mask(width)
    sign = 1 << (width - 1)
    x, y = sym.band(x, m), sym.band(y, m)
    if op == "not":
        return KEEP
    if op in CARRY_IN:
        # with CF clear ADC/SBB are ADD/SUB; with CF set only ZF and SF are computed here
        # (reading CF or OF then is an error, never a guess)
        if not old_cf:
            return ("add" if op == "adc" else "cmp", x, y, width)
        return ("partial", r, width)
    if op in ("sub", "cmp"):
        return ("cmp", x, y, width)
    if op == "add":
        return ("add", x, y, width)
    if op in ("and", "or", "xor", "test"):
        return ("result", r, width)
    if op == "inc":
        return ("flags", r, width, old_cf, sym.eq(r, sign))
    if op == "dec":
        return ("flags", r, width, old_cf, sym.eq(r, sign - 1))
    if op == "neg":
        return ("flags", r, width, sym.ne(x, 0), sym.eq(x, sign))
    if op in SHIFTS and isinstance(y, int):
        n = y & (63 if width == 64 else 31)
        if n == 0:
            return KEEP
        if op in ("shl", "sal"):
            cf = sym.ne(sym.band(sym.lshr(x, width - n), 1), 0) if n <= width else False
            of = _xor(sym.ne(sym.band(r, sign), 0), cf) if n == 1 else False
        elif op == "shr":
            cf = sym.ne(sym.band(sym.lshr(x, n - 1), 1), 0)
            of = sym.ne(sym.band(x, sign), 0) if n == 1 else False
        else:
            cf = sym.ne(sym.band(sym.ashr(sym.sign_extend(x, width), n - 1), 1), 0)
            of = False
        return ("flags", r, width, cf, of)
    return ("partial", r, width)
