"""Architectural constants: vectors, exception classes, RFLAGS bits, selectors.

Sources: Intel SDM Vol. 3A Table 6-1 (vectors), Table 6-4/6-5 (classes and the double-fault
rules), §2.3 (RFLAGS), §6.13 (error codes).
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from checker.symbolic import bor, lor, shl, ule, ult

# SDM Vol. 3A Table 6-1.
DE, DB, NMI, BP, OF, BR, UD, NM, DF = 0, 1, 2, 3, 4, 5, 6, 7, 8
TS, NP, SS, GP, PF, MF, AC, MC, XM, VE, CP = 10, 11, 12, 13, 14, 16, 17, 18, 19, 20, 21

VECTOR_NAMES: dict[int, str] = {
    DE: "#DE", DB: "#DB", NMI: "NMI", BP: "#BP", OF: "#OF", BR: "#BR", UD: "#UD",
    NM: "#NM", DF: "#DF", TS: "#TS", NP: "#NP", SS: "#SS", GP: "#GP", PF: "#PF",
    MF: "#MF", AC: "#AC", MC: "#MC", XM: "#XM", VE: "#VE", CP: "#CP",
}

# SDM §6.13 and Table 6-1: the exceptions that push an error code. Only when raised as
# exceptions: INT n or an external interrupt to these vectors pushes none.
ERROR_CODE_VECTORS = frozenset({DF, TS, NP, SS, GP, PF, AC, CP})


class EventClass(Enum):
    """SDM Vol. 3A Table 6-4: the classes that decide Table 6-5."""

    BENIGN = "benign"
    CONTRIBUTORY = "contributory"
    PAGE_FAULT = "page fault"
    DOUBLE_FAULT = "double fault"


CONTRIBUTORY_VECTORS = frozenset({DE, TS, NP, SS, GP, CP})
PAGE_FAULT_VECTORS = frozenset({PF, VE})


def vector_name(vector: int) -> str:
    """#GP, NMI, or the vector in hex for anything else."""
    return VECTOR_NAMES.get(vector, f"vector {vector:#x}")


# RFLAGS bits the model tracks (SDM Vol. 1 §3.4.3, Vol. 3A §2.3).
CF = 1 << 0
TF = 1 << 8
IF = 1 << 9
DF_FLAG = 1 << 10
OF_FLAG = 1 << 11
IOPL = 3 << 12  # RFLAGS.IOPL, bits 13:12
NT = 1 << 14
RF = 1 << 16
AC_FLAG = 1 << 18
RFLAGS_FIXED = 1 << 1  # bit 1 always reads as 1

FLAG_NAMES: tuple[tuple[str, int], ...] = (
    ("CF", CF), ("TF", TF), ("IF", IF), ("DF", DF_FLAG), ("OF", OF_FLAG),
    ("NT", NT), ("RF", RF), ("AC", AC_FLAG),
)

# Canonical 48-bit addresses (SDM Vol. 1 §3.3.7.1).
ADDRESS_MASK = (1 << 64) - 1
LOWER_HALF_END = 0x0000_8000_0000_0000
UPPER_HALF_START = 0xFFFF_8000_0000_0000


def canonical_cond(address: Any) -> Any:
    """Bits 63:47 all equal, as a condition that may be symbolic (decide() it)."""
    if isinstance(address, int):
        return is_canonical(address)
    return lor(ult(address, LOWER_HALF_END), ule(UPPER_HALF_START, address))


def is_canonical(address: int) -> bool:
    """Bits 63:47 all equal (SDM Vol. 1 §3.3.7.1)."""
    address &= ADDRESS_MASK
    return address < LOWER_HALF_END or address >= UPPER_HALF_START


# Error-code bits for IDT-referencing faults (SDM §6.13): EXT, IDT, then the index.
ERR_EXT = 1
ERR_IDT = 2


def idt_error_code(vector: Any, external: bool) -> Any:
    """The selector error code naming IDT entry `vector` (SDM §6.13); symbolic when the
    vector is (a guest's INT $N with N symbolic)."""
    if isinstance(vector, int):
        return (vector << 3) | ERR_IDT | (ERR_EXT if external else 0)
    return bor(shl(vector, 3), ERR_IDT | (ERR_EXT if external else 0))
