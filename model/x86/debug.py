"""Debug exceptions: breakpoints (DR0-DR3 and DR7), the single-step trap (RFLAGS.TF) and
how MOV SS / POP SS hold a #DB back.

SDM Vol. 3B §17.2.4-17.2.5 (DR7 R/W and LEN fields), §17.3.1.1 (instruction breakpoints
are faults, suppressed by RFLAGS.RF), §17.3.1.2 (data breakpoints are traps, taken after
the instruction that accessed the data), §17.3.1.4 (single-step: a trap after each
instruction executed with TF set); Vol. 3A §6.8.3 (MOV SS / POP SS: the single-step trap
of the SS load is suppressed, an instruction breakpoint on the next instruction is
suppressed, any other debug exception is held back until the boundary after the next
instruction), §6.9 Table 6-2 (a trap of the previous instruction ranks above NMIs and
interrupts).

A trap is not delivered inside the instruction: the instruction completes and the #DB is
left pending (`Cpu.held_db`) for the next boundary, where `events.at_boundary` takes it
before anything but a machine check; after MOV SS it stays pending until the shadow ends.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum

from checker.symbolic import Term, add, decide, land, ult
from model.x86.arch import RF, TF
from model.x86.state import Breakpoint, CodeAddr, Cpu, Shadow, flag_set

# DR7 R/Wn encodings (SDM §17.2.4): 00 instruction execution, 01 data writes, 11 data
# reads or writes (10, I/O, needs CR4.DE and port I/O, which the model does not have).
EXECUTE = "exec"
WRITE = "write"
READ_WRITE = "rw"
KINDS = (EXECUTE, WRITE, READ_WRITE)
LENGTHS = (1, 2, 4, 8)  # DR7 LENn (SDM §17.2.5)

# One data access an instruction made: linear address, bytes, is it a write.
Access = tuple[int | Term, int, bool]


class StepKind(Enum):
    """How an instruction's single-step trap is decided."""

    ORDINARY = "ordinary"  # TF as the instruction starts (SDM §17.3.1.4)
    # SYSCALL: the RFLAGS it leaves (after FMASK), not the one it starts with. The SDM
    # does not say; Xen's XSA-204 and its XTF test record it as observed hardware
    # behaviour ("SYSCALL evaluates its singlestep action based on the resulting TF").
    SYSCALL = "syscall"
    # INT n / INT3 / INTO / INT1: delivery clears TF (§6.12.1.2), and the handler is not
    # single-stepped (§17.3.1.4: "INT n and INTO ... clear this flag"); an INTO that
    # does not trap (OF clear) is an ordinary instruction and keeps TF.
    EVENT = "event"
    # MOV SS / POP SS: "any single-step trap that would be delivered following the MOV to
    # SS instruction or POP to SS instruction (because EFLAGS.TF is 1) is suppressed"
    # (§6.8.3); the next instruction starts with TF set and traps after itself.
    MOV_SS = "mov ss"


def data_breakpoint_hit(breakpoints: Iterable[Breakpoint], accesses: Iterable[Access]) -> bool:
    """Does an access match an enabled data breakpoint? A write matches R/W=01 and 11, a
    read only 11; the breakpoint covers LEN bytes from its address with the low bits
    ignored (SDM §17.2.5: the address must be aligned to LEN). A symbolic address is
    decided (the state splits on whether it lands in the range)."""
    data = [b for b in breakpoints if b.kind != EXECUTE and isinstance(b.address, int)]
    if not data:
        return False
    for address, size, write in accesses:
        for b in data:
            if b.kind == WRITE and not write:
                continue
            assert isinstance(b.address, int)
            lo = b.address & ~(b.length - 1)
            if _overlaps(address, size, lo, b.length):
                return True
    return False


def data_breakpoint_bits(breakpoints: Iterable[Breakpoint], accesses: Iterable[Access]) -> int:
    """DR6's B0-B3 for the data breakpoints the accesses match (§17.2.3: "B0 through B3
    ... indicates that its associated breakpoint condition was met when a debug
    exception was generated"), the n-th breakpoint armed being DRn as for
    `instruction_breakpoint_bits`: every DRn whose condition an access meets, not only
    the first (one #DB reports them all). Matching is `data_breakpoint_hit`'s."""
    accesses = list(accesses)
    bits = 0
    for n, b in enumerate(breakpoints):
        if n < 4 and b.kind != EXECUTE and data_breakpoint_hit((b,), accesses):
            bits |= 1 << n
    return bits


def _overlaps(address: int | Term, size: int, lo: int, length: int) -> bool:
    if isinstance(address, int):
        return address < lo + length and lo < address + size
    # [address, address + size) meets [lo, lo + length): lo - size < address < lo + length
    return decide(land(ult(add(lo, -size), address), ult(address, lo + length)))


def instruction_breakpoint_hit(
    breakpoints: Iterable[Breakpoint], pc: CodeAddr, linear: int, cpu: Cpu, shadow: Shadow
) -> bool:
    """Is the instruction at `pc` (at linear address `linear`) about to raise an
    instruction-breakpoint #DB? It is a fault taken before the instruction executes
    (§17.3.1.1), not when RFLAGS.RF is set (§6.8.2, §17.3.1.1) nor on the instruction after
    MOV SS / POP SS ("any instruction breakpoint on the next instruction is suppressed
    (as if EFLAGS.RF were 1)", §6.8.3)."""
    if shadow is Shadow.MOV_SS:
        return False
    hit = any(
        b.kind == EXECUTE and (b.address == pc or b.address == linear) for b in breakpoints
    )
    return hit and not flag_set(cpu.rflags, RF)


def instruction_breakpoint_bits(
    breakpoints: Iterable[Breakpoint], pc: CodeAddr, linear: int
) -> int:
    """DR6's B0-B3 (§17.2.3: "B0 through B3 ... indicates that its associated breakpoint
    condition was met") for the instruction breakpoints at `pc` / `linear`, the n-th
    breakpoint the design (then the property's environment) arms being DRn. A fifth or
    later one has no DRn and no bit."""
    bits = 0
    for n, b in enumerate(breakpoints):
        if n < 4 and b.kind == EXECUTE and (b.address == pc or b.address == linear):
            bits |= 1 << n
    return bits


# FRED's #DB event data (FRED spec §5.2): DR6's cause bits, "in positive polarity" (Linux
# traps.c: FRED stores DR6 "in the format which debug_read_clear_dr6() returns", that is
# DR6 XOR its reserved-1 bits 0xFFFF0FF0). For B0-B3 (bits 3:0) and BS (bit 14) the value
# is DR6's own (SDM Vol. 3B §17.2.3); the inverted bits (BLD 11, RTM 16) the model never
# sets.
DR6_BS = 1 << 14
DR6_B_MASK = 0xF


def single_step_trap(kind: StepKind, before: Cpu, after: Cpu) -> bool:
    """Does the instruction that took the CPU from `before` to `after` (and completed)
    raise the single-step trap? See StepKind."""
    if kind is StepKind.MOV_SS:
        return False
    if kind is StepKind.ORDINARY:
        return flag_set(before.rflags, TF)
    return flag_set(after.rflags, TF)


def trap(cpu: Cpu, cause: int = 0) -> Cpu:
    """A debug trap of the instruction that just completed: pending for the next boundary
    (and, after MOV SS, until the boundary after the next instruction: §6.8.3). A trap of
    the instruction in the shadow merges with the held one (one #DB reports both, its
    `cause` bits ORed in under CR4.FRED); a certain trap makes an unsure held one
    certain."""
    merged = cpu.db_cause | cause if cpu.fred else 0
    if cpu.held_db and not cpu.db_unsure:
        return cpu if merged == cpu.db_cause else cpu._replace(db_cause=merged)
    return cpu._replace(held_db=True, db_unsure=False, db_cause=merged)


def delivery_pushes_hit(
    breakpoints: Iterable[Breakpoint], stores: Iterable[tuple[object, object]]
) -> bool:
    """Do the pushes of an event delivery (its frame's words) land on an enabled data
    breakpoint? §17.3.1.2 speaks of "the instruction that accessed" the data and §6.12 of
    the frame pushes, but no section says whether the processor's own pushes of a
    delivery are checked against DR0-DR3; Linux refuses data breakpoints on its IST
    stacks because, it found, one "near the top of an IST stack will cause unrecoverable
    recursion" (x86/hw_breakpoint: Prevent data breakpoints on cpu_entry_area). The
    model explores both: see `delivery_trap`."""
    return data_breakpoint_hit(
        breakpoints, [(a, 8, True) for a, _ in stores if isinstance(a, (int, Term))]
    )


def delivery_trap(cpu: Cpu, cause: int = 0) -> Cpu:
    """After a delivery whose pushes hit a data breakpoint: a #DB trap pending at the
    handler's first boundary, marked unsure (the next boundary offers both taking it and
    dropping it: `drop_unsure_db`), with the breakpoints' B0-B3 as `cause` under CR4.FRED.
    A #DB already held stays as it is."""
    if cpu.held_db:
        return cpu
    return cpu._replace(held_db=True, db_unsure=True, db_cause=cause if cpu.fred else 0)


def drop_unsure_db(cpu: Cpu) -> Cpu:
    """The other outcome of `delivery_trap`: the pushes raised no #DB."""
    assert cpu.db_unsure
    return cpu._replace(held_db=False, db_unsure=False, db_cause=0)


def next_instruction_faulted(cpu: Cpu, shadow_before: Shadow) -> Cpu:
    """The instruction in the MOV SS shadow raised a fault: the #DB the SS load held back
    is dropped, and the fault is delivered. The SDM only says the inhibition "ends after
    delivery of an exception or the execution of the next instruction" (§6.8.3); the
    drop is what hardware does (observed in the XSA-260 analysis: a #DB is "discarded or
    deferred", and the XTF PoC's SYSCALL that #UDs reports no #DB)."""
    if shadow_before is Shadow.MOV_SS and cpu.held_db:
        return cpu._replace(held_db=False, db_unsure=False, db_cause=0)
    return cpu


def icebp_in_shadow(cpu: Cpu, shadow_before: Shadow) -> Cpu:
    """INT1 (ICEBP) in the MOV SS shadow: its own #DB is delivered and the held one is
    dropped (XSA-260 analysis; the SDM does not list ICEBP in §6.8.3)."""
    return next_instruction_faulted(cpu, shadow_before)


def clear_resume_flag(cpu: Cpu) -> Cpu:
    """RFLAGS.RF is cleared once an instruction completes (§17.3.1.1: it lets the
    instruction a #DB fault returned to run once without re-raising the breakpoint)."""
    flags = cpu.rflags
    if isinstance(flags, int) and flags & RF:
        return cpu._replace(rflags=flags & ~RF)
    return cpu
