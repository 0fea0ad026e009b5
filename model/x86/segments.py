"""Segment selectors and descriptors: what delivery, IRET, MOV SS, SYSCALL and SYSRET read.

SDM Vol. 3A §3.4.2 (selectors: index, TI, RPL), §3.4.5 (descriptor fields: P, DPL, S, type,
L, D/B, base), §5.2-5.8 (privilege checks), §6.14.2-6.14.3 (64-bit delivery loads a NULL SS
on a CPL change; IRET in IA-32e mode), Vol. 2 IRET (IA-32e-MODE-RETURN,
RETURN-TO-OUTER-PRIVILEGE-LEVEL), MOV (loading SS), SYSCALL/SYSRET/SYSENTER (selectors from
IA32_STAR / IA32_SYSENTER_CS with fixed descriptor attributes).

A table (`DescriptorTable`) holds only the entries a design declares; every other entry
reads as a zero descriptor (not present, system type 0), which fails each check below
exactly as an entry beyond the table limit does: #GP(selector).
"""

from __future__ import annotations

from typing import NamedTuple

from checker.symbolic import MASK, Term, band, bor, decide, eq
from model.x86.arch import GP, NP, SS
from model.x86.memory import ArchFault
from model.x86.state import (
    CodeAddr,
    Cpu,
    Descriptor,
    DescriptorTable,
    Machine,
    Platform,
    Value,
)

__all__ = ["Descriptor", "DescriptorTable"]

TI = 4  # selector bit 2: the LDT, not the GDT (SDM §3.4.2)
RPL_MASK = 3


def is_null(selector: int) -> bool:
    """Index 0 of the GDT, whatever the RPL (SDM §3.4.2: a TI=1 index 0 is not null)."""
    return selector & ~RPL_MASK & 0xFFFF == 0


def error_code(selector: int) -> int:
    """A selector error code (SDM §6.13): index and TI, EXT = IDT = 0 for an instruction."""
    return selector & 0xFFFC


def cs_of(platform: Platform, cpu: Cpu) -> int:
    """The CPU's CS selector (a CPU that has loaded none has its CPL's `selector`)."""
    return cpu.cs if cpu.cs is not None else platform.selectors.cs(cpu.cpl)


def ss_of(platform: Platform, cpu: Cpu) -> int:
    """The CPU's SS selector (a CPU that has loaded none has its CPL's `selector`)."""
    return cpu.ss if cpu.ss is not None else platform.selectors.ss(cpu.cpl)


def tables(platform: Platform, cpu: Cpu) -> tuple[DescriptorTable | None, DescriptorTable | None]:
    """The GDT and LDT the CPU's GDTR and LDTR name."""
    return platform.gdt(cpu.gdtr), platform.ldt(cpu.ldtr)


def descriptor(gdt: DescriptorTable | None, ldt: DescriptorTable | None,
               selector: int) -> Descriptor | None:
    """The descriptor `selector` names; None for an undeclared entry or no table."""
    table = ldt if selector & TI else gdt
    return None if table is None else table.entry((selector & 0xFFFF) >> 3)


# ---- SYSCALL / SYSRET / SYSENTER: selectors computed from MSRs, never read from a table ---

def syscall_selectors(star: int) -> tuple[int, int]:
    """SYSCALL (SDM Vol. 2): CS := IA32_STAR[47:32] AND FFFCH, SS := IA32_STAR[47:32] + 8."""
    base = (star >> 32) & 0xFFFF
    return base & 0xFFFC, (base + 8) & 0xFFFF


def sysret_selectors(star: int, operand_size: int) -> tuple[int, int]:
    """SYSRET (SDM Vol. 2): SS := IA32_STAR[63:48] + 8 OR 3; CS := IA32_STAR[63:48] + 16
    OR 3 for SYSRETQ (64-bit), IA32_STAR[63:48] OR 3 for SYSRETL (compatibility mode)."""
    base = (star >> 48) & 0xFFFF
    cs = (base + 16) | 3 if operand_size == 8 else base | 3
    return cs & 0xFFFF, ((base + 8) | 3) & 0xFFFF


def sysenter_selectors(sysenter_cs: int) -> tuple[int, int]:
    """SYSENTER (SDM Vol. 2): CS := IA32_SYSENTER_CS AND FFFCH, SS := IA32_SYSENTER_CS + 8."""
    return sysenter_cs & 0xFFFC, (sysenter_cs + 8) & 0xFFFC


def default_star(ring0_cs: int, ring3_ss: int) -> int:
    """The IA32_STAR a kernel with these selectors writes: SYSCALL's CS base at [47:32],
    SYSRET's base at [63:48] (= the user SS - 8, SDM Vol. 2 SYSRET)."""
    return ((ring0_cs & 0xFFFC) << 32) | (((ring3_ss - 8) & 0xFFFF) << 48)


# ---- IRET (SDM Vol. 2 IRET, IA-32e-MODE-RETURN) --------------------------------------------

class IretTarget(NamedTuple):
    """What the checks let IRET load: the new CPL and whether the target is 64-bit code."""

    cpl: int
    mode64: bool


def iret_checks(
    gdt: DescriptorTable | None, ldt: DescriptorTable | None, cpl: int, cs: int | Term,
    ss: int | Term,
) -> IretTarget:
    """The segment checks of a 64-bit-mode IRET, in the SDM's order; raise the fault.

    SDM Vol. 2 IRET, IA-32e-MODE-RETURN: #GP(0) for a NULL CS, for a NULL SS going back to
    compatibility mode or to CPL 3, and for a NULL SS whose RPL is not the new CPL; then
    #GP(CS) for a CS beyond the table, not code, with RPL < CPL, conforming with
    DPL > RPL, non-conforming with DPL != RPL; #NP(CS) not present. Then SS:
    RETURN-TO-OUTER-PRIVILEGE-LEVEL: #GP(SS) beyond the table, RPL != CS.RPL, not a
    writable data segment, DPL != CS.RPL; #SS(SS) not present.

    In 64-bit mode IRET pops SS:RSP whatever the CPL (SDM §6.14.3); the Intel pseudocode
    checks a non-NULL SS only on the way to an outer level, the AMD APM (IRET, long mode)
    on every 64-bit IRET. The model applies the checks on both ways: a kernel that relies
    on a same-level IRET loading a bad SS is wrong on AMD at least.
    (The non-canonical RIP check, #GP(0), is the caller's: it comes after these.)
    A symbolic selector is one `concrete_selector` left: non-NULL and undeclared."""
    if isinstance(cs, Term):
        raise ArchFault(GP, band(cs, 0xFFFC), "IRET: CS is no declared code segment")
    if is_null(cs):
        raise ArchFault(GP, 0, "IRET to a NULL CS")
    new_cpl = cs & RPL_MASK
    code = descriptor(gdt, ldt, cs)
    mode64 = code is not None and code.kind == "code" and code.long
    if not isinstance(ss, Term) and is_null(ss):
        if new_cpl == 3 or (code is not None and code.kind == "code" and not code.long):
            raise ArchFault(GP, 0, f"IRET with a NULL SS to CPL {new_cpl} "
                            f"{'64-bit' if mode64 else 'compatibility'} mode")
        if ss & RPL_MASK != new_cpl:
            raise ArchFault(GP, 0, "IRET with a NULL SS whose RPL is not the new CPL")
    if code is None or code.kind != "code":
        raise ArchFault(GP, error_code(cs), f"IRET: CS {cs:#x} is not a code segment")
    if new_cpl < cpl:
        raise ArchFault(GP, error_code(cs), f"IRET: CS {cs:#x} RPL < CPL {cpl}")
    if code.conforming and code.dpl > new_cpl:
        raise ArchFault(GP, error_code(cs), f"IRET: conforming CS {cs:#x} DPL > RPL")
    if not code.conforming and code.dpl != new_cpl:
        raise ArchFault(GP, error_code(cs), f"IRET: CS {cs:#x} DPL {code.dpl} != RPL")
    if not code.present:
        raise ArchFault(NP, error_code(cs), f"IRET: CS {cs:#x} not present")
    if isinstance(ss, Term):
        raise ArchFault(GP, band(ss, 0xFFFC), "IRET: SS is no declared data segment")
    if not is_null(ss):
        stack = descriptor(gdt, ldt, ss)
        if (
            stack is None or ss & RPL_MASK != new_cpl or stack.kind != "data"
            or not stack.writable or stack.dpl != new_cpl
        ):
            raise ArchFault(GP, error_code(ss), f"IRET: SS {ss:#x} invalid for CPL {new_cpl}")
        if not stack.present:
            raise ArchFault(SS, error_code(ss), f"IRET: SS {ss:#x} not present")
    return IretTarget(new_cpl, mode64)


# ---- MOV SS (SDM Vol. 2 MOV, "IF SS is loaded") --------------------------------------------

def load_ss_checks(
    gdt: DescriptorTable | None, ldt: DescriptorTable | None, cpl: int, ss: int,
    mode64: bool = True,
) -> None:
    """MOV SS / POP SS: #GP(0) for a NULL selector (allowed in 64-bit mode at CPL < 3 when
    RPL = CPL); #GP(selector) beyond the table, RPL != CPL, not a writable data segment,
    DPL != CPL; #SS(selector) not present."""
    if is_null(ss):
        if not mode64 or cpl == 3 or ss & RPL_MASK != cpl:
            raise ArchFault(GP, 0, "MOV SS of a NULL selector")
        return
    d = descriptor(gdt, ldt, ss)
    if d is None or ss & RPL_MASK != cpl or d.kind != "data" or not d.writable or d.dpl != cpl:
        raise ArchFault(GP, error_code(ss), f"MOV SS: {ss:#x} is not a writable data segment "
                        f"at CPL {cpl}")
    if not d.present:
        raise ArchFault(SS, error_code(ss), f"MOV SS: {ss:#x} not present")


def concrete_selector(
    value: object, gdt: DescriptorTable | None, ldt: DescriptorTable | None,
) -> int | Term:
    """A popped selector as a number. A symbolic one (a guest-written frame) is split over
    the NULL selectors and every declared entry with each RPL, each branch continuing with
    that number; the last branch keeps the symbol: some other, undeclared selector, for
    which `iret_checks` raises #GP(selector). A code address is no selector: #GP(0)."""
    if isinstance(value, int):
        return value & 0xFFFF
    if not isinstance(value, Term):
        raise ArchFault(GP, 0, "a selector holding a code address")
    candidates = [0, 1, 2, 3]
    for table, ti in ((gdt, 0), (ldt, TI)):
        if table is not None:
            candidates += [(i << 3) | ti | rpl for i, _ in table.entries for rpl in range(4)]
    low = band(value, 0xFFFF)
    for c in candidates:
        if decide(eq(low, c)):
            return c
    return low


def mov_to_ss(platform: Platform, m: Machine, cpu_i: int, value: object,
              mode64: bool = True) -> Machine:
    """MOV SS / POP SS loading `value`: the checks of `load_ss_checks`, then SS := value.
    (The interrupt shadow is model.x86.instructions.mov_ss.) A symbolic value is split as
    `concrete_selector` splits it; a code address is #GP(0)."""
    cpu = m.cpus[cpu_i]
    gdt, ldt = tables(platform, cpu)
    selector = concrete_selector(value, gdt, ldt)
    if isinstance(selector, Term):
        raise ArchFault(GP, band(selector, 0xFFFC), "MOV SS: no declared data segment")
    load_ss_checks(gdt, ldt, cpu.cpl, selector, mode64)
    return m.with_cpu(cpu_i, cpu._replace(ss=selector))


# ---- VERR / VERW (SDM Vol. 2 VERR/VERW) ----------------------------------------------------

def verw_ok(
    gdt: DescriptorTable | None, ldt: DescriptorTable | None, cpl: int, selector: int,
) -> bool:
    """VERW: ZF := 1 only for a non-NULL selector within its table naming a writable data
    segment whose DPL >= CPL and DPL >= RPL (code segments are never writable, system
    segments never verify). It never faults on the selector. The SDM lists no presence
    check (the check is the one a DS load makes, whose not-present case is a fault, not a
    ZF answer): a not-present writable data segment verifies."""
    if is_null(selector):
        return False
    d = descriptor(gdt, ldt, selector)
    if d is None or d.kind != "data" or not d.writable:
        return False
    return d.dpl >= cpl and d.dpl >= selector & RPL_MASK


# ---- IRET to a 16-bit stack segment (the "espfix" problem) ----------------------------------

def iret_rsp(
    gdt: DescriptorTable | None, ldt: DescriptorTable | None, target: IretTarget, ss: int,
    popped: Value, rsp_after_pops: int | Term,
) -> Value:
    """The RSP an IRET leaves. SDM Vol. 3A §6.14.3: "The SS/ESP/RSP size adjustment is
    determined by the stack size", and a stack segment with B = 0 is a 16-bit stack whose
    pointer is SP (Vol. 3A §3.4.5, Vol. 1 §6.2.3): an IRET that returns to compatibility
    mode with such an SS loads only SP (bits 15:0) from the frame; the upper bits keep what
    RSP held, the kernel's stack pointer (the pops have advanced it). That is the leak
    Linux's espfix works around (*inferred* from the SDM's stack-size rule and Linux's
    espfix_64.c, which records it as hardware behaviour). In 64-bit mode (CS.L = 1) the
    B flag is ignored and the whole RSP loads."""
    if target.mode64 or is_null(ss) or isinstance(popped, CodeAddr):
        return popped
    d = descriptor(gdt, ldt, ss)
    if d is None or d.db:
        return popped
    return bor(band(rsp_after_pops, ~0xFFFF & MASK), band(popped, 0xFFFF))
