"""Which events a CPU accepts at an instruction boundary, and what accepting them does:
the NMI latch, MCIP, IF and the shadows, the LAPIC's vector filter, and NMI IPIs.

SDM Vol. 3A §6.7.1 (NMI handling), §6.8 (enabling and disabling interrupts), §6.9 (priority
among simultaneous events: `at_boundary`), §10.5.3/§10.6 (LAPIC illegal vectors, ICR
delivery modes).
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum

from model.x86.arch import DB, IF, MC, NMI
from model.x86.delivery import Event, Source
from model.x86.dispatch import deliver
from model.x86.state import CodeAddr, Cpu, Machine, Platform, Run, Shadow, flag_set

# SDM §10.5.3: the LAPIC treats vectors 0-15 as illegal and does not deliver them; 16-31
# arrive as ordinary interrupts although the architecture reserves them for exceptions.
LAPIC_MIN_VECTOR = 16


# Enum members as plain names: looking one up on its class costs ~10x a global read in
# Python 3.11 (EnumType.__getattr__), and these are read for every CPU of every state.
_SHUTDOWN, _WILD, _RUNNING = Run.SHUTDOWN, Run.WILD, Run.RUNNING
_NO_SHADOW, _MOV_SS = Shadow.NONE, Shadow.MOV_SS


def lapic_accepts(vector: int) -> bool:
    return LAPIC_MIN_VECTOR <= vector <= 255


def alive(cpu: Cpu) -> bool:
    return cpu.run is not _SHUTDOWN and cpu.run is not _WILD


def can_take_external(cpu: Cpu) -> bool:
    """A maskable interrupt needs IF=1 and no STI/MOV SS shadow (SDM §6.8.1, §6.8.3)."""
    if cpu.run is _SHUTDOWN or cpu.shadow is not _NO_SHADOW:
        return False
    # A symbolic IF (a guest's RFLAGS) is decided when the interrupt is delivered.
    return not isinstance(cpu.rflags, int) or bool(cpu.rflags & IF)


def interrupts_enabled(cpu: Cpu) -> bool:
    """RFLAGS.IF, decided when symbolic (call it inside a transition)."""
    return flag_set(cpu.rflags, IF)


def can_take_nmi(cpu: Cpu) -> bool:
    """An NMI is taken unless one is being handled (blocked until the next IRET)."""
    return alive(cpu) and not cpu.nmi_blocked


def db_due(cpu: Cpu) -> bool:
    """A #DB held back by MOV SS is delivered once the shadow has passed (SDM §6.8.3)."""
    return cpu.held_db and cpu.shadow is not _MOV_SS and cpu.run is not _SHUTDOWN


def pending_nmi_due(cpu: Cpu) -> bool:
    """A latched NMI is taken as soon as NMIs unblock (SDM §6.7.1)."""
    return cpu.nmi_pending and not cpu.nmi_blocked and cpu.run is not _SHUTDOWN


class BoundaryEvent(Enum):
    """What can happen on a CPU at an instruction boundary (the values are the model's
    action kinds)."""

    MACHINE_CHECK = "mce"  # a real #MC arrives
    HELD_DB = "held-db"  # the #DB a MOV SS held back is taken
    DB_DROPPED = "db-dropped"  # an unsure held #DB (Cpu.db_unsure) is not raised after all
    PENDING_NMI = "pending-nmi"  # the latched NMI is taken
    INSTRUCTION = "step"  # the next instruction runs (or faults)
    DOUBLE_FAULT = "df"  # the environment raises #DF (a fault the model does not spell out)
    NMI = "nmi"  # a real NMI arrives
    NMI_IPI = "ipi"  # an NMI IPI in flight arrives
    EXTERNAL = "ext"  # a maskable interrupt arrives


_MACHINE_CHECK, _HELD_DB, _DB_DROPPED = (
    BoundaryEvent.MACHINE_CHECK, BoundaryEvent.HELD_DB, BoundaryEvent.DB_DROPPED
)
_PENDING_NMI, _INSTRUCTION, _DOUBLE_FAULT = (
    BoundaryEvent.PENDING_NMI, BoundaryEvent.INSTRUCTION, BoundaryEvent.DOUBLE_FAULT
)
_NMI, _NMI_IPI, _EXTERNAL = BoundaryEvent.NMI, BoundaryEvent.NMI_IPI, BoundaryEvent.EXTERNAL


def at_boundary(
    cpu: Cpu, *, machine_check: bool, double_fault: bool, nmi: bool, external: bool
) -> tuple[BoundaryEvent, ...]:
    """What may happen on `cpu` at its next instruction boundary, in a fixed order (the
    order the model offers them), given which events the environment may still raise
    there: `machine_check`, `double_fault`, `nmi`, `external`.

    SDM Vol. 3A §6.9 (Table 6-2, priority among concurrent exceptions and interrupts)
    ranks what is pending at one boundary; only the higher-ranked is taken first:
    1. machine check (with RESET): may come whatever else is pending;
    4. traps on the previous instruction: a #DB held back by MOV SS (§6.8.3) is taken
       before anything ranked below, and before the next instruction;
    5. NMI: a latched NMI, once NMIs unblock (§6.7.1), before maskable interrupts and
       the next instruction;
    6. maskable hardware interrupts: need IF=1 and no shadow (§6.8.1, §6.8.3);
    7-10. the next instruction, with its own faults.
    An event the environment raises may as well arrive after the instruction as before
    it, so arriving NMIs, interrupts and #DF are offered beside the instruction (when
    each arrives is the choice), not instead of it. An NMI arriving while one is already
    latched is lost (§6.7.1: one latch), so it is not offered. A CPU in shutdown takes
    nothing (§6.15 Interrupt 8; the model keeps shutdown final), nor does a CPU that
    went wild (Run.WILD: the model no longer knows what it executes).
    """
    if not alive(cpu):
        return ()
    out: list[BoundaryEvent] = []
    if machine_check:
        out.append(_MACHINE_CHECK)
    if db_due(cpu):
        out.append(_HELD_DB)
        if cpu.db_unsure:
            out.append(_DB_DROPPED)
        return tuple(out)
    if pending_nmi_due(cpu):
        out.append(_PENDING_NMI)
        return tuple(out)
    if cpu.run is _RUNNING:
        out.append(_INSTRUCTION)
    if double_fault:
        out.append(_DOUBLE_FAULT)
    if nmi and not (cpu.nmi_blocked and cpu.nmi_pending):
        out.append(_NMI)
    if cpu.ipi_nmi:
        out.append(_NMI_IPI)
    if external and can_take_external(cpu):
        out.append(_EXTERNAL)
    return tuple(out)


def after_instruction(cpu: Cpu, shadow_before: Shadow) -> Cpu:
    """The boundary after an instruction: a shadow set by the previous one ends here."""
    if cpu.shadow is not _NO_SHADOW and cpu.shadow == shadow_before:
        return cpu._replace(shadow=_NO_SHADOW)
    return cpu


def nmi_arrives(platform: Platform, m: Machine, cpu_i: int) -> Machine:
    """A real NMI reaches the CPU: delivered now, or latched while NMIs are blocked (one
    latch: a further NMI while one is pending is lost)."""
    cpu = m.cpus[cpu_i]
    if not alive(cpu):
        return m
    if cpu.nmi_blocked:
        return m.with_cpu(cpu_i, cpu._replace(nmi_pending=True))
    return deliver(platform, m, cpu_i, Event(Source.NMI, NMI), cpu.pc)


def deliver_pending_nmi(platform: Platform, m: Machine, cpu_i: int) -> Machine:
    cpu = m.cpus[cpu_i]
    m = m.with_cpu(cpu_i, cpu._replace(nmi_pending=False))
    return deliver(platform, m, cpu_i, Event(Source.NMI, NMI), cpu.pc)


def deliver_held_db(platform: Platform, m: Machine, cpu_i: int) -> Machine:
    cpu = m.cpus[cpu_i]
    m = m.with_cpu(cpu_i, cpu._replace(held_db=False, db_unsure=False, db_cause=0))
    return deliver(platform, m, cpu_i, Event(Source.EXCEPTION, DB), cpu.pc, debug=cpu.db_cause)


def machine_check_arrives(platform: Platform, m: Machine, cpu_i: int) -> Machine:
    """A real #MC: never masked by IF or the NMI latch; MCIP decides (see deliver)."""
    cpu = m.cpus[cpu_i]
    if not alive(cpu):
        # SDM §6.15 Interrupt 8: shutdown lasts until NMI, SMI, RESET or INIT; a #MC does
        # not restart the CPU (and the model keeps shutdown final, see Run.SHUTDOWN).
        return m
    return deliver(platform, m, cpu_i, Event(Source.MACHINE_CHECK, MC), cpu.pc)


def external_arrives(
    platform: Platform, m: Machine, cpu_i: int, vector: int, pic: bool = False
) -> Machine:
    """An interrupt through the LAPIC (IO-APIC, MSI, IOMMU): refused below 16, otherwise
    an ordinary IF-gated interrupt whatever the vector, so vector 18 runs the #MC handler
    without MCIP (fake MCE). `pic=True` is an interrupt from an 8259 PIC in PIC mode, whose
    vector the LAPIC does not filter, so vector 2 runs the NMI handler without blocking
    NMIs (fake NMI, seed 001). The caller checks `can_take_external` (IF, shadows)."""
    cpu = m.cpus[cpu_i]
    if not alive(cpu):
        # SDM §6.15 Interrupt 8: a maskable interrupt does not end shutdown.
        return m
    if not (pic or lapic_accepts(vector)):
        return m
    return deliver(platform, m, cpu_i, Event(Source.EXTERNAL, vector), cpu.pc)


def send_nmi_ipi(m: Machine, sender: int, targets: Sequence[int]) -> Machine:
    """An ICR write with delivery mode NMI: the IPIs are in flight until they arrive."""
    cpus = list(m.cpus)
    for t in targets:
        cpus[t] = cpus[t]._replace(ipi_nmi=True)
    return m._replace(cpus=tuple(cpus))


def ipi_destinations(m: Machine, sender: int, shorthand: str, dest: int | None = None) -> list[int]:
    """ICR destination shorthand (SDM §10.6.1): "self", "all-but-self", "all", or a CPU."""
    n = len(m.cpus)
    if shorthand == "self":
        return [sender]
    if shorthand == "all-but-self":
        return [i for i in range(n) if i != sender]
    if shorthand == "all":
        return list(range(n))
    assert dest is not None
    return [dest]


# SDM Vol. 3A Table 11-3 (Table 10-3 in older editions), "Valid Combinations for the
# Pentium 4 and Intel Xeon Processors' Local xAPIC Interrupt Command Register": NMI
# delivery mode is invalid with the Self and All Including Self shorthands.
INVALID_NMI_SHORTHANDS = frozenset({"self", "all"})


def nmi_ipi_outcomes(m: Machine, sender: int, shorthand: str,
                     dest: int | None = None) -> list[list[int]]:
    """The CPUs an ICR write with delivery mode NMI may reach, one list per outcome.

    A valid combination has one outcome, the destinations. For an invalid one the SDM
    says only that it is not valid, not what the LAPIC then does, so every outcome is
    explored: each subset of the destinations the shorthand names, from none at all
    (the IPI is dropped) to all of them (it is sent as if valid)."""
    targets = ipi_destinations(m, sender, shorthand, dest)
    if shorthand not in INVALID_NMI_SHORTHANDS:
        return [targets]
    return [
        [t for k, t in enumerate(targets) if mask >> k & 1]
        for mask in range(1 << len(targets))
    ]


def nmi_ipi_arrives(platform: Platform, m: Machine, cpu_i: int) -> Machine:
    """An in-flight NMI IPI reaches its CPU (lost on a CPU in shutdown)."""
    cpu = m.cpus[cpu_i]
    if alive(cpu) and cpu.nmi_blocked:
        # Latched: one CPU rebuild for both changes (nmi_arrives would make two).
        return m.with_cpu(cpu_i, cpu._replace(ipi_nmi=False, nmi_pending=True))
    m = m.with_cpu(cpu_i, cpu._replace(ipi_nmi=False))
    return nmi_arrives(platform, m, cpu_i)


def resume_pc(cpu: Cpu) -> CodeAddr:
    """The RIP an asynchronous event saves: the next instruction to execute."""
    return cpu.pc
