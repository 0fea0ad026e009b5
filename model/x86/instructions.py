"""System instructions whose semantics the SDM (Vol. 2) fixes: IRET, SYSCALL, SYSRET,
SYSENTER, SWAPGS, HLT, CLI, STI, CLD, STD, CLAC, STAC, MOV/POP SS, LIDT, LTR, and the
IDT/TSS writes code performs.

Each is a pure function from a machine to a machine; an instruction that faults raises
`ArchFault` (carrying the state to deliver from when some effect survives the fault).
The caller has already advanced the CPU's pc past the instruction where the SDM says the
saved RIP is the next instruction (traps, HLT); for faults it delivers with the
instruction's own address.
"""

from __future__ import annotations

from collections.abc import Callable

from checker.symbolic import MASK, Term, add, band, bor, decide, lshr, ule
from model.x86 import msr, segments, smap
from model.x86.arch import (
    AC_FLAG,
    DF_FLAG,
    GP,
    IF,
    IOPL,
    NT,
    RF,
    RFLAGS_FIXED,
    SS,
    UD,
    canonical_cond,
)
from model.x86.memory import ArchFault, check_access, forget, read
from model.x86.state import (
    WORD,
    CodeAddr,
    Cpu,
    Gate,
    Machine,
    Platform,
    Run,
    Shadow,
    Value,
    flag_set,
)

# Code that runs somewhere the design does not describe (a guest address SYSRET or IRET
# returns to that no guest routine names).
GUEST_CODE = "<guest code>"


# Maps a numeric return address to the code there (None: code the design does not name).
CodeAt = Callable[[int], "CodeAddr | None"]


def _code_target(value: Value, code_at: CodeAt | None = None) -> CodeAddr:
    if isinstance(value, CodeAddr):
        return value
    if code_at is not None and isinstance(value, int):
        found = code_at(value)
        if found is not None:
            return found
    return CodeAddr(GUEST_CODE, 0)


def _read_dwords(m: Machine, rsp: Value, count: int) -> list[Value]:
    """IRETL's 32-bit frame fields: `count` dwords from RSP, zero-extended."""
    if not isinstance(rsp, int):
        raise ArchFault(GP, 0, "IRETL from a symbolic RSP is not modelled", machine=m)
    out: list[Value] = []
    for k in range(count):
        address = rsp + 4 * k
        word = read(m, address - address % WORD)
        if not isinstance(word, int):
            raise ArchFault(GP, 0, "IRETL of a frame holding code addresses", machine=m)
        out.append((word >> (8 * (address % WORD))) & 0xFFFF_FFFF)
    return out


def iret(
    platform: Platform, m: Machine, cpu_i: int, operand_size: int = 8,
    code_at: CodeAt | None = None,
) -> Machine:
    """IRETQ (SDM Vol. 2 IRET, 64-bit mode): pop RIP, CS, RFLAGS, RSP, SS from where RSP
    points, whatever wrote them, and check CS and SS against the descriptor tables
    (model.x86.segments.iret_checks: #GP(selector), #NP, #SS). Every IRET unblocks NMIs,
    even one that faults (SDM §6.7.1: "unblocks NMIs even if the instruction causes a
    fault ... NMIs are unmasked before the exception handler is invoked"), so the
    unblocked state travels with any fault raised here; a fault leaves RSP
    and the frame as they were (the pops are not committed). IRETL (operand_size 4) pops
    five 32-bit fields instead (RIP, RSP zero-extended).

    RFLAGS: IF is restored only when CPL <= IOPL and IOPL only at CPL 0 (SDM Vol. 2 IRET,
    RETURN-TO-SAME/OUTER-PRIVILEGE-LEVEL), judged at the CPL IRET runs at."""
    cpu = m.cpus[cpu_i]
    m = m.with_cpu(cpu_i, cpu._replace(nmi_blocked=False))
    try:
        return _iret(platform, m, cpu_i, operand_size, code_at)
    except ArchFault as fault:
        if fault.machine is None:
            fault.machine = m
        raise


def _iret(
    platform: Platform, m: Machine, cpu_i: int, operand_size: int, code_at: CodeAt | None,
) -> Machine:
    cpu = m.cpus[cpu_i]
    rsp = cpu.rsp
    if flag_set(cpu.rflags, NT):
        # SDM Vol. 2 IRET: in IA-32e mode a task return (NT = 1) is #GP(0).
        raise ArchFault(GP, 0, "IRET with RFLAGS.NT set in IA-32e mode")
    if isinstance(rsp, CodeAddr):
        raise ArchFault(SS, 0, "IRET with RSP holding a code address")
    for k in range((5 * operand_size + WORD - 1) // WORD):
        check_access(platform, add(rsp, k * WORD), cpu.cpl)
        if platform.smap:
            # IRET's reads of the frame at CPL 0 are explicit supervisor-mode data
            # accesses: under SMAP with AC = 0 a frame on a user page is #PF (smap.check).
            smap.check(platform, add(rsp, k * WORD), cpu.cpl, cpu.rflags, False)
    if operand_size == 4:
        rip, cs, rflags, new_rsp, ss = _read_dwords(m, rsp, 5)
    else:
        rip, cs, rflags, new_rsp, ss = (read(m, add(rsp, k * WORD)) for k in range(5))
    gdt, ldt = segments.tables(platform, cpu)
    if isinstance(rflags, CodeAddr):
        raise ArchFault(GP, 0, "IRET of an RFLAGS holding a code address")
    cs = segments.concrete_selector(cs, gdt, ldt)
    ss = segments.concrete_selector(ss, gdt, ldt)
    target = segments.iret_checks(gdt, ldt, cpu.cpl, cs, ss)
    assert isinstance(cs, int) and isinstance(ss, int)  # iret_checks faults a symbolic one
    if not isinstance(rip, CodeAddr) and not decide(canonical_cond(rip)):
        raise ArchFault(GP, 0, "IRET to a non-canonical RIP")
    # The frame at RSP is consumed (whoever pushed it) and its words are now garbage.
    frames = tuple(f for f in m.frames if not (f.cpu == cpu_i and f.lo == rsp))
    m = m._replace(frames=frames)
    if isinstance(rsp, int):
        m = forget(m, rsp, rsp + 5 * operand_size)
    else:
        popped = {add(rsp, k * WORD) for k in range(5)}
        m = m._replace(sym_memory=tuple(e for e in m.sym_memory if e[0] not in popped))
    new_cpl = target.cpl
    cpu = m.cpus[cpu_i]._replace(
        cpl=new_cpl,
        cs=cs,
        ss=ss,
        pc=_code_target(rip, code_at),
        rflags=bor(popped_flags(cpu, rflags), RFLAGS_FIXED),
        rsp=segments.iret_rsp(gdt, ldt, target, ss, new_rsp, add(rsp, 5 * operand_size)),
        run=Run.RUNNING,
    )
    m = m.with_cpu(cpu_i, cpu)
    if new_cpl == 3:
        m = returned_to_guest(m, cpu_i)
    return m


def iopl_allows(cpu: Cpu) -> bool:
    """CPL <= RFLAGS.IOPL (decided when RFLAGS is symbolic)."""
    if cpu.cpl == 0:
        return True
    flags = cpu.rflags
    if isinstance(flags, int):
        return cpu.cpl <= (flags & IOPL) >> 12
    return decide(ule(cpu.cpl, lshr(band(flags, IOPL), 12)))


def popped_flags(cpu: Cpu, image: Value) -> int | Term:
    """The RFLAGS an IRET or POPF at `cpu`'s CPL makes of the popped `image`: IF only when
    CPL <= IOPL, IOPL only at CPL 0; the other bits as popped (SDM Vol. 2 IRET, POPF:
    "IF CPL <= IOPL THEN EFLAGS(IF) <- tempEFLAGS", "IF CPL = 0 THEN EFLAGS(IOPL) <- ...").
    A PV kernel running at CPL 3 cannot clear or set IF this way."""
    assert not isinstance(image, CodeAddr)
    keep = (0 if iopl_allows(cpu) else IF) | (0 if cpu.cpl == 0 else IOPL)
    if not keep:
        return image
    current = cpu.rflags
    return bor(band(image, ~keep & MASK), band(current, keep))


def iret_faulting(m: Machine, cpu_i: int, error_code: int = 0) -> ArchFault:
    """An IRET the environment makes fault (#GP, e.g. a bad frame): NMIs are unblocked."""
    cpu = m.cpus[cpu_i]
    return ArchFault(
        GP, error_code, "IRET faults", machine=m.with_cpu(cpu_i, cpu._replace(nmi_blocked=False))
    )


def returned_to_guest(m: Machine, cpu_i: int) -> Machine:
    """Returning to guest context consumes the frame that recorded the guest's context:
    nothing will IRET through it any more (SYSRET leaves without popping it)."""
    frames = tuple(f for f in m.frames if not (f.cpu == cpu_i and f.from_cpl == 3))
    return m if frames == m.frames else m._replace(frames=frames)


def sce_enabled(platform: Platform, cpu: Cpu) -> bool:
    """IA32_EFER.SCE: as WRMSR last wrote it, else set when the design has a `lstar`."""
    efer = dict(cpu.msrs).get(msr.IA32_EFER)
    if isinstance(efer, int):
        return bool(efer & msr.EFER_SCE)
    return platform.lstar is not None


def star(platform: Platform, cpu: Cpu) -> int:
    """IA32_STAR: as WRMSR last wrote it, else what a kernel with the design's selectors
    writes (segments.default_star)."""
    value = dict(cpu.msrs).get(msr.IA32_STAR)
    if isinstance(value, int):
        return value
    return platform_star(platform)


def platform_star(platform: Platform) -> int:
    """IA32_STAR before any WRMSR: the design's, else made from its selectors."""
    if platform.star is not None:
        return platform.star
    sel = platform.selectors
    return segments.default_star(sel.ring0_cs, sel.ring3_ss)


def syscall(platform: Platform, m: Machine, cpu_i: int, next_pc: CodeAddr) -> Machine:
    """SYSCALL (SDM Vol. 2): #UD unless EFER.SCE; RCX := RIP, R11 := RFLAGS,
    RFLAGS &= ~FMASK, CPL := 0, CS and SS from IA32_STAR[47:32] (fixed flat descriptors,
    no table read), RIP := LSTAR. It does not switch stacks: ring 0 runs on the guest's
    RSP."""
    cpu = m.cpus[cpu_i]
    written = dict(cpu.msrs)
    lstar = written.get(msr.IA32_LSTAR)
    target = lstar if isinstance(lstar, CodeAddr) else (
        CodeAddr(platform.lstar, 0) if platform.lstar is not None else None
    )
    if not sce_enabled(platform, cpu):
        raise ArchFault(UD, None, "SYSCALL with EFER.SCE = 0")
    if target is None or (lstar is not None and not isinstance(lstar, CodeAddr)):
        # No `lstar`; a WRMSR of LSTAR to a non-code address is a jump to code the design
        # does not have.
        raise ArchFault(UD, None, "SYSCALL disabled (EFER.SCE=0) or LSTAR not code")
    fmask = written.get(msr.IA32_FMASK, platform.fmask)
    cs, ss = segments.syscall_selectors(star(platform, cpu))
    cpu = cpu.with_reg("rcx", next_pc).with_reg("r11", cpu.rflags)
    cpu = cpu._replace(
        rflags=band(cpu.rflags, band(~fmask if isinstance(fmask, int) else 0, MASK)),
        cpl=0,
        cs=cs,
        ss=ss,
        pc=target,
    )
    return m.with_cpu(cpu_i, cpu)


def sysret(
    platform: Platform, m: Machine, cpu_i: int, operand_size: int = 8,
    code_at: CodeAt | None = None,
) -> Machine:
    """SYSRETQ (SDM Vol. 2): #UD unless EFER.SCE, then #GP(0) unless CPL 0; RIP := RCX,
    RFLAGS := R11, CPL := 3, CS and SS from IA32_STAR[63:48] (segments.sysret_selectors).
    SYSRETL (operand_size 4) returns to compatibility mode with RIP := ECX, which is always
    canonical.

    A non-canonical RCX: Intel raises #GP(0) while still at CPL 0, on whatever RSP software
    loaded, which is the guest's (CVE-2012-0217, XSA-7); AMD (APM Vol. 3 SYSRET) switches
    to CPL 3 first and the #GP is taken from CPL 3 onto RSP0, its frame saving the user's
    CS and SS and the non-canonical RIP (`ArchFault.rip`).
    """
    cpu = m.cpus[cpu_i]
    if not sce_enabled(platform, cpu):
        raise ArchFault(UD, None, "SYSRET with EFER.SCE = 0")
    if cpu.cpl != 0:
        raise ArchFault(GP, 0, "SYSRET at CPL > 0")
    rcx = cpu.reg("rcx")
    if operand_size == 4 and not isinstance(rcx, CodeAddr):
        rcx = band(rcx, 0xFFFF_FFFF)
    r11 = cpu.reg("r11")
    # RFLAGS := R11 AND 3C7FD7H OR 2 (SDM Vol. 2 SYSRET): RF, VM and reserved bits clear.
    flags = bor(band(r11 if not isinstance(r11, CodeAddr) else 0, 0x3C7FD7), RFLAGS_FIXED)
    cs, ss = segments.sysret_selectors(star(platform, cpu), operand_size)
    if not isinstance(rcx, CodeAddr) and not decide(canonical_cond(rcx)):
        shown = f"{rcx:#x}" if isinstance(rcx, int) else repr(rcx)
        if platform.vendor == "intel":
            raise ArchFault(GP, 0, f"SYSRET with non-canonical RCX {shown} at CPL 0")
        amd = m.with_cpu(cpu_i, cpu._replace(cpl=3, cs=cs, ss=ss, rflags=flags))
        raise ArchFault(
            GP,
            0,
            f"SYSRET to non-canonical RIP {shown} at CPL 3",
            machine=returned_to_guest(amd, cpu_i),
            rip=rcx,
        )
    cpu = cpu._replace(cpl=3, cs=cs, ss=ss, pc=_code_target(rcx, code_at), rflags=flags)
    return returned_to_guest(m.with_cpu(cpu_i, cpu), cpu_i)


def swapgs(m: Machine, cpu_i: int) -> Machine:
    """SWAPGS (SDM Vol. 2): #GP(0) unless CPL 0; exchanges GS base and KERNEL_GS_BASE."""
    cpu = m.cpus[cpu_i]
    if cpu.cpl != 0:
        raise ArchFault(GP, 0, "SWAPGS at CPL > 0")
    return m.with_cpu(cpu_i, msr.swapgs(cpu))


def sysenter(
    platform: Platform, m: Machine, cpu_i: int, eip: CodeAddr | None, esp: Value
) -> Machine:
    """SYSENTER (SDM Vol. 2) from IA-32e mode: #GP(0) when IA32_SYSENTER_CS is null (`eip`
    None); else CPL 0, RSP := IA32_SYSENTER_ESP, RIP := IA32_SYSENTER_EIP, IF and RF
    cleared, nothing saved. AMD CPUs raise #UD outside legacy mode (AMD APM Vol. 3)."""
    if platform.vendor == "amd":
        raise ArchFault(UD, None, "SYSENTER in long mode on AMD")
    if eip is None:
        raise ArchFault(GP, 0, "SYSENTER with IA32_SYSENTER_CS = 0")
    cpu = m.cpus[cpu_i]
    # CS := IA32_SYSENTER_CS AND FFFCH, SS := CS + 8 (the hypervisor's, as Xen writes it).
    cs, ss = segments.sysenter_selectors(platform.selectors.ring0_cs)
    cpu = cpu._replace(
        cpl=0, cs=cs, ss=ss, pc=eip, rsp=esp, rflags=band(cpu.rflags, ~(IF | RF) & MASK)
    )
    return m.with_cpu(cpu_i, cpu)


def set_direction(m: Machine, cpu_i: int, down: bool) -> Machine:
    """CLD / STD (SDM Vol. 2): DF := 0 / 1; no other flag changes."""
    cpu = m.cpus[cpu_i]
    flags = bor(cpu.rflags, DF_FLAG) if down else band(cpu.rflags, ~DF_FLAG & MASK)
    return m.with_cpu(cpu_i, cpu._replace(rflags=flags))


def set_ac(m: Machine, cpu_i: int, on: bool) -> Machine:
    """STAC / CLAC (SDM Vol. 2): AC := 1 / 0, which lifts / restores SMAP for supervisor
    accesses to user pages; #UD at CPL > 0."""
    cpu = m.cpus[cpu_i]
    if cpu.cpl != 0:
        raise ArchFault(UD, None, f"{'STAC' if on else 'CLAC'} at CPL {cpu.cpl}")
    flags = bor(cpu.rflags, AC_FLAG) if on else band(cpu.rflags, ~AC_FLAG & MASK)
    return m.with_cpu(cpu_i, cpu._replace(rflags=flags))


def _privileged(m: Machine, cpu_i: int, what: str) -> None:
    if m.cpus[cpu_i].cpl != 0:
        raise ArchFault(GP, 0, f"{what} at CPL > 0")


def hlt(m: Machine, cpu_i: int) -> Machine:
    """HLT (SDM Vol. 2): #GP(0) unless CPL 0; waits for an NMI, #MC, INIT or an enabled
    interrupt, whose frame saves the instruction after HLT."""
    _privileged(m, cpu_i, "HLT")
    return m.with_cpu(cpu_i, m.cpus[cpu_i]._replace(run=Run.HALTED))


def _iopl_check(m: Machine, cpu_i: int, what: str) -> None:
    """CLI / STI in protected mode without PVI: #GP(0) when CPL > IOPL (SDM Vol. 2 CLI,
    STI)."""
    if not iopl_allows(m.cpus[cpu_i]):
        raise ArchFault(GP, 0, f"{what} at CPL {m.cpus[cpu_i].cpl} > IOPL")


def cli(m: Machine, cpu_i: int) -> Machine:
    """CLI: #GP(0) when CPL > IOPL."""
    _iopl_check(m, cpu_i, "CLI")
    cpu = m.cpus[cpu_i]
    return m.with_cpu(cpu_i, cpu._replace(rflags=band(cpu.rflags, ~IF & MASK)))


def sti(m: Machine, cpu_i: int) -> Machine:
    """STI: sets IF; when IF was 0, interrupts stay inhibited for one more boundary
    (SDM Vol. 2 STI). The model does not let the STI shadow block NMIs: the SDM leaves
    that implementation-specific, so the weaker guarantee is the one to check against.
    #GP(0) when CPL > IOPL."""
    _iopl_check(m, cpu_i, "STI")
    cpu = m.cpus[cpu_i]
    shadow = Shadow.STI if not flag_set(cpu.rflags, IF) else cpu.shadow
    return m.with_cpu(cpu_i, cpu._replace(rflags=bor(cpu.rflags, IF), shadow=shadow))


def mov_ss(m: Machine, cpu_i: int, debug_trap: bool = False) -> Machine:
    """MOV SS / POP SS (SDM §6.8.3): interrupts are inhibited until the boundary after the
    next instruction, and a #DB this instruction triggers (`debug_trap`) is held back
    until then."""
    cpu = m.cpus[cpu_i]
    return m.with_cpu(
        cpu_i, cpu._replace(
            shadow=Shadow.MOV_SS, held_db=cpu.held_db or debug_trap,
            db_unsure=cpu.db_unsure and not debug_trap,  # its own trap is certain
        )
    )


def lidt(m: Machine, cpu_i: int, table: str | None) -> Machine:
    """LIDT: later deliveries use `table` (None: an empty IDT, limit 0)."""
    _privileged(m, cpu_i, "LIDT")
    return m.with_cpu(cpu_i, m.cpus[cpu_i]._replace(idtr=table))


def lgdt(m: Machine, cpu_i: int, table: str) -> Machine:
    """LGDT: later selector loads and checks read `table` (SDM Vol. 2 LGDT: #GP(0) at
    CPL > 0). Segment registers keep their cached descriptors until reloaded."""
    _privileged(m, cpu_i, "LGDT")
    return m.with_cpu(cpu_i, m.cpus[cpu_i]._replace(gdtr=table))


def ltr(m: Machine, cpu_i: int, tss: str) -> Machine:
    """LTR: later stack switches read RSP0/IST from `tss`."""
    _privileged(m, cpu_i, "LTR")
    return m.with_cpu(cpu_i, m.cpus[cpu_i]._replace(tr=tss))


def set_gate(m: Machine, table: str, vector: int, gate: Gate | None) -> Machine:
    """A store to an IDT entry: the next delivery through it sees the new gate."""
    idt = m.idt(table)
    if idt is None:
        raise KeyError(table)
    return m.with_idt(idt.with_gate(vector, gate))


def set_gate_ist(m: Machine, table: str, vector: int, ist: int) -> Machine:
    """Rewrite only the IST field of a gate (Xen: `idt[v].a &= ~(7UL << 32)`)."""
    idt = m.idt(table)
    if idt is None:
        raise KeyError(table)
    gate = idt.gate(vector)
    if gate is None:
        return m
    return m.with_idt(idt.with_gate(vector, gate._replace(ist=ist)))


def set_ist(m: Machine, tss_name: str, index: int, stack: str | None) -> Machine:
    """A store to TSS.IST[index] (1-7)."""
    tss = m.tss(tss_name)
    if tss is None:
        raise KeyError(tss_name)
    slots = tss.ist[: index - 1] + (stack,) + tss.ist[index:]
    return m.with_tss(tss._replace(ist=slots))


def set_rsp0(m: Machine, tss_name: str, stack: str | None) -> Machine:
    """A store to TSS.RSP0."""
    tss = m.tss(tss_name)
    if tss is None:
        raise KeyError(tss_name)
    return m.with_tss(tss._replace(rsp0=stack))


def clear_mcip(m: Machine, cpu_i: int) -> Machine:
    """WRMSR IA32_MCG_STATUS with MCIP clear: software ends the #MC (SDM §15.3.1.2)."""
    _privileged(m, cpu_i, "WRMSR")
    return m.with_cpu(cpu_i, m.cpus[cpu_i]._replace(mcip=False))


def set_cr4_mce(m: Machine, cpu_i: int, enabled: bool) -> Machine:
    """MOV to CR4 changing CR4.MCE (SDM §2.5)."""
    _privileged(m, cpu_i, "MOV CR4")
    return m.with_cpu(cpu_i, m.cpus[cpu_i]._replace(cr4_mce=enabled))
