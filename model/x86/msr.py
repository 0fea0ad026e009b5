"""Model-specific registers entry code touches: RDMSR, WRMSR and the GS bases SWAPGS swaps.

SDM Vol. 2 RDMSR/WRMSR: both are #GP(0) at CPL > 0 and for an MSR index the processor
does not implement (here: one the model does not know); WRMSR of a non-canonical
address to a base or entry-point MSR is #GP(0). SDM Vol. 4 Table 2-2 gives the indices.

A CPU's GS bases (`Cpu.gs_base`, `Cpu.kernel_gs_base`) hold `OWN_AREA` for "this CPU's
own per-CPU area" (whatever address the layout gives it), so that CPUs stay
interchangeable for symmetry reduction; other MSRs hold what WRMSR wrote in `Cpu.msrs`,
and otherwise the platform's value (`defaults`).
"""

from __future__ import annotations

from collections.abc import Mapping

from checker.symbolic import MASK, band, bor, decide, lshr, shl
from model.x86.arch import GP, canonical_cond
from model.x86.memory import ArchFault
from model.x86.state import CodeAddr, Cpu, Machine, Value

IA32_SYSENTER_CS = 0x174
IA32_SYSENTER_ESP = 0x175
IA32_SYSENTER_EIP = 0x176
IA32_MCG_STATUS = 0x17A
IA32_EFER = 0xC000_0080
IA32_STAR = 0xC000_0081
IA32_LSTAR = 0xC000_0082
IA32_CSTAR = 0xC000_0083
IA32_FMASK = 0xC000_0084
IA32_FS_BASE = 0xC000_0100
IA32_GS_BASE = 0xC000_0101
IA32_KERNEL_GS_BASE = 0xC000_0102
IA32_TSC_AUX = 0xC000_0103
# The FRED MSRs (FRED specification §4; the indices Linux and Bochs use). Their WRMSR
# checks are model.x86.fred.wrmsr_faults; IA32_FRED_SSP1-3 (shadow stacks) are out of scope.
IA32_FRED_RSP0 = 0x1CC
IA32_FRED_RSP1 = 0x1CD
IA32_FRED_RSP2 = 0x1CE
IA32_FRED_RSP3 = 0x1CF
IA32_FRED_STKLVLS = 0x1D0
IA32_FRED_SSP1 = 0x1D1
IA32_FRED_SSP2 = 0x1D2
IA32_FRED_SSP3 = 0x1D3
IA32_FRED_CONFIG = 0x1D4
FRED_MSR_NAMES: dict[int, str] = {
    IA32_FRED_RSP0: "IA32_FRED_RSP0", IA32_FRED_RSP1: "IA32_FRED_RSP1",
    IA32_FRED_RSP2: "IA32_FRED_RSP2", IA32_FRED_RSP3: "IA32_FRED_RSP3",
    IA32_FRED_STKLVLS: "IA32_FRED_STKLVLS", IA32_FRED_SSP1: "IA32_FRED_SSP1",
    IA32_FRED_SSP2: "IA32_FRED_SSP2", IA32_FRED_SSP3: "IA32_FRED_SSP3",
    IA32_FRED_CONFIG: "IA32_FRED_CONFIG",
}

MSR_NAMES: dict[int, str] = {
    IA32_SYSENTER_CS: "IA32_SYSENTER_CS", IA32_SYSENTER_ESP: "IA32_SYSENTER_ESP",
    IA32_SYSENTER_EIP: "IA32_SYSENTER_EIP", IA32_MCG_STATUS: "IA32_MCG_STATUS",
    IA32_EFER: "IA32_EFER", IA32_STAR: "IA32_STAR", IA32_LSTAR: "IA32_LSTAR",
    IA32_CSTAR: "IA32_CSTAR", IA32_FMASK: "IA32_FMASK", IA32_FS_BASE: "IA32_FS_BASE",
    IA32_GS_BASE: "IA32_GS_BASE", IA32_KERNEL_GS_BASE: "IA32_KERNEL_GS_BASE",
    IA32_TSC_AUX: "IA32_TSC_AUX", **FRED_MSR_NAMES,
}
# WRMSR #GP(0)s a non-canonical value for these (SDM Vol. 2 WRMSR).
CANONICAL_MSRS = frozenset({
    IA32_FS_BASE, IA32_GS_BASE, IA32_KERNEL_GS_BASE, IA32_LSTAR, IA32_CSTAR,
    IA32_SYSENTER_EIP, IA32_SYSENTER_ESP,
})
MCG_STATUS_MCIP = 1 << 2  # SDM §15.3.1.2
EFER_SCE = 1 << 0  # IA32_EFER.SCE: SYSCALL/SYSRET enabled (SDM Vol. 4 Table 2-2)
OWN_AREA = None  # a GS base that is this CPU's own per-CPU area


def _check(cpu: Cpu, index: int | None, what: str) -> int:
    if cpu.cpl != 0:
        raise ArchFault(GP, 0, f"{what} at CPL {cpu.cpl}")
    if index is None or index not in MSR_NAMES:
        shown = f"{index:#x}" if isinstance(index, int) else "a symbolic index"
        raise ArchFault(GP, 0, f"{what} of MSR {shown}, which the model does not know")
    return index


def rdmsr(cpu: Cpu, index: int | None, defaults: Mapping[int, Value],
          own_area: int) -> Value:
    """RDMSR: the MSR's value (its 64 bits; the caller splits it into EDX:EAX)."""
    index = _check(cpu, index, "RDMSR")
    if index in (IA32_GS_BASE, IA32_KERNEL_GS_BASE):
        base = cpu.gs_base if index == IA32_GS_BASE else cpu.kernel_gs_base
        return own_area if base is OWN_AREA else base
    if index == IA32_MCG_STATUS:
        return MCG_STATUS_MCIP if cpu.mcip else 0
    written = dict(cpu.msrs)
    if index in written:
        return written[index]
    return defaults.get(index, 0)


def wrmsr(m: Machine, cpu_i: int, index: int | None, value: Value, own_area: int) -> Machine:
    """WRMSR: the CPU with MSR `index` set to `value` (EDX:EAX already joined)."""
    cpu = m.cpus[cpu_i]
    index = _check(cpu, index, "WRMSR")
    if (
        index in CANONICAL_MSRS and not isinstance(value, CodeAddr)
        and not decide(canonical_cond(value))
    ):
        raise ArchFault(GP, 0, f"WRMSR of a non-canonical address to {MSR_NAMES[index]}")
    if index in (IA32_GS_BASE, IA32_KERNEL_GS_BASE):
        base = OWN_AREA if value == own_area else value
        cpu = (cpu._replace(gs_base=base) if index == IA32_GS_BASE
               else cpu._replace(kernel_gs_base=base))
        return m.with_cpu(cpu_i, cpu)
    if index == IA32_MCG_STATUS:
        if not isinstance(value, int):
            raise ArchFault(GP, 0, "WRMSR of a symbolic MCG_STATUS is not modelled")
        return m.with_cpu(cpu_i, cpu._replace(mcip=bool(value & MCG_STATUS_MCIP)))
    msrs = tuple(sorted({**dict(cpu.msrs), index: value}.items()))
    return m.with_cpu(cpu_i, cpu._replace(msrs=msrs))


# Control registers MOV writes, kept beside the MSRs in `Cpu.msrs` under keys no MSR has
# (RDMSR/WRMSR refuse them: they are not in MSR_NAMES).
CR3 = -3


def mov_to_cr3(m: Machine, cpu_i: int, value: Value) -> Machine:
    """MOV to CR3 (SDM Vol. 2 "MOV-Move to/from Control Registers"): #GP(0) at CPL > 0.
    In ring 0 it switches page tables and flushes the TLB (SDM Vol. 3 §4.10.4.1), which
    the model, having no paging, does not see: only the value is kept, for MOV from CR3."""
    cpu = m.cpus[cpu_i]
    if cpu.cpl != 0:
        raise ArchFault(GP, 0, f"MOV to CR3 at CPL {cpu.cpl}")
    msrs = tuple(sorted({**dict(cpu.msrs), CR3: value}.items()))
    return m.with_cpu(cpu_i, cpu._replace(msrs=msrs))


def mov_from_cr3(cpu: Cpu) -> Value | None:
    """MOV from CR3: #GP(0) at CPL > 0; the value last written (None: never written, which
    the model cannot answer: it has no initial CR3)."""
    if cpu.cpl != 0:
        raise ArchFault(GP, 0, f"MOV from CR3 at CPL {cpu.cpl}")
    return dict(cpu.msrs).get(CR3)


def join_edx_eax(edx: Value, eax: Value) -> Value:
    """EDX:EAX as one 64-bit value (the low halves of RDX and RAX)."""
    if isinstance(edx, CodeAddr) or isinstance(eax, CodeAddr):
        raise ArchFault(GP, 0, "WRMSR of a code address split over EDX:EAX is not modelled")
    return bor(shl(band(edx, 0xFFFF_FFFF), 32), band(eax, 0xFFFF_FFFF))


def split_edx_eax(value: Value) -> tuple[Value, Value]:
    """RDMSR's result: (RDX, RAX), each the zero-extended 32-bit half (SDM Vol. 2 RDMSR)."""
    if isinstance(value, CodeAddr):
        raise ArchFault(GP, 0, "RDMSR of a code address is not modelled")
    return band(lshr(value, 32), 0xFFFF_FFFF), band(value, 0xFFFF_FFFF & MASK)


def swapgs(cpu: Cpu) -> Cpu:
    """SWAPGS (SDM Vol. 2): exchange IA32_GS_BASE and IA32_KERNEL_GS_BASE."""
    return cpu._replace(
        gs_base=cpu.kernel_gs_base, kernel_gs_base=cpu.gs_base, gs_swapped=not cpu.gs_swapped
    )
