"""Small builders for the model/x86 tests: a Xen-like platform, IDT, TSS and CPUs.

Layout (per CPU, as in xen/arch/x86/include/asm/current.h, one page each here):
  primary  - the stack TSS.RSP0 points at
  mce_ist  - TSS.IST1 (Xen's IST_MCE = 1)
  nmi_ist  - TSS.IST2 (IST_NMI = 2)
  db_ist   - TSS.IST3 (IST_DB = 3)
  df_ist   - TSS.IST4 (IST_DF = 4)
and one guest-owned region, `guest_stack`, in the lower canonical half.
"""

from __future__ import annotations

from model.x86.arch import AC_FLAG, DB, DF, DF_FLAG, IF, MC, NMI, NT, RF, RFLAGS_FIXED, TF
from model.x86.delivery import Event, Source, deliver
from model.x86.memory import read
from model.x86.state import (
    REGISTERS,
    WORD,
    CodeAddr,
    Cpu,
    Frame,
    Gate,
    Idt,
    Machine,
    Platform,
    Selectors,
    StackRegion,
    Tss,
    Value,
)

PAGE = 0x1000
HV_BASE = 0xFFFF_8300_0001_0000  # the brief's primary stack; each CPU gets 8 pages from here


def cpu_regions(i: int) -> tuple[StackRegion, ...]:
    """The hypervisor stacks of CPU `i`, each a page, 2 pages apart (unmapped guards)."""
    base = HV_BASE + i * 0x10_0000
    suffix = "" if i == 0 else str(i)
    names = ("primary", "mce_ist", "nmi_ist", "db_ist", "df_ist")
    return tuple(
        StackRegion(f"{n}{suffix}", base + k * 2 * PAGE, PAGE) for k, n in enumerate(names)
    )


GUEST_STACK = StackRegion("guest_stack", 0x0000_7000_0000_0000, PAGE, owner="guest")

# An address in the lower canonical half outside every region: plain guest memory.
GUEST_MEMORY_RSP = 0x0000_0000_4000_0800

IST_MCE, IST_NMI, IST_DB, IST_DF = 1, 2, 3, 4

FLAGS_IF = IF | RFLAGS_FIXED

# Xen's values, which the Xen designs declare (`selector`, `fmask`): __HYPERVISOR_CS and
# __HYPERVISOR_DS64, FLAT_RING3_CS64/SS64, FLAT_RING1_CS; MSR_SYSCALL_MASK.
HYPERVISOR_CS, HYPERVISOR_SS, GUEST_CS64, GUEST_SS = 0xE008, 0xE010, 0xE033, 0xE02B
XEN_SELECTORS = Selectors(
    ring0_cs=HYPERVISOR_CS, ring0_ss=HYPERVISOR_SS, ring1_cs=0xE019, ring3_cs=GUEST_CS64,
    ring3_ss=GUEST_SS,
)
XEN_FMASK = IF | TF | DF_FLAG | AC_FLAG | NT | RF


def platform(ncpus: int = 1, **kw: object) -> Platform:
    regions: list[StackRegion] = []
    for i in range(ncpus):
        regions.extend(cpu_regions(i))
    regions.append(GUEST_STACK)
    kw.setdefault("lstar", "lstar_enter")
    kw.setdefault("fmask", XEN_FMASK)
    kw.setdefault("selectors", XEN_SELECTORS)
    return Platform(regions=tuple(regions), **kw)  # type: ignore[arg-type]


def region(p: Platform, name: str) -> StackRegion:
    return p.region(name)


def handler(vector: int) -> str:
    return f"entry_{vector:#04x}"


def xen_idt(name: str = "idt", limit: int = 256, **overrides: Gate | None) -> Idt:
    """Xen's IDT shape: interrupt gates everywhere, #BP/#OF/0x80 at DPL 3, ISTs for #MC,
    NMI, #DB and #DF (xen/arch/x86/include/asm/idt.h). Vectors 0-31 and 0x20-0xff have
    gates; `overrides` maps "v<n>" to a replacement gate (None removes it)."""
    gates: dict[int, Gate | None] = {v: Gate(handler(v)) for v in range(256) if v != 15}
    gates[3] = Gate(handler(3), dpl=3)
    gates[4] = Gate(handler(4), dpl=3)
    gates[0x80] = Gate(handler(0x80), dpl=3)
    gates[MC] = Gate(handler(MC), ist=IST_MCE)
    gates[NMI] = Gate(handler(NMI), ist=IST_NMI)
    gates[DB] = Gate(handler(DB), ist=IST_DB)
    gates[DF] = Gate(handler(DF), ist=IST_DF)
    for key, gate in overrides.items():
        gates[int(key[1:], 0)] = gate
    return Idt(name, limit, tuple(sorted((v, g) for v, g in gates.items() if g is not None)))


def xen_tss(i: int = 0, name: str | None = None) -> Tss:
    suffix = "" if i == 0 else str(i)
    return Tss(
        name or f"tss{i}",
        rsp0=f"primary{suffix}",
        ist=(
            f"mce_ist{suffix}",
            f"nmi_ist{suffix}",
            f"db_ist{suffix}",
            f"df_ist{suffix}",
            None,
            None,
            None,
        ),
    )


def make_cpu(
    p: Platform,
    i: int = 0,
    *,
    cpl: int = 0,
    rsp: Value | None = None,
    pc: CodeAddr | None = None,
    rflags: int = FLAGS_IF,
    **kw: object,
) -> Cpu:
    """A running CPU: at CPL 0 on its primary stack (a little below the top), at CPL 3 on
    the guest stack."""
    if rsp is None:
        suffix = "" if i == 0 else str(i)
        rsp = (p.region(f"primary{suffix}").top - 0x100) if cpl == 0 else GUEST_STACK.top - 0x80
    kw.setdefault("idtr", "idt")
    kw.setdefault("tr", f"tss{i}")
    return Cpu(
        cpl=cpl,
        pc=pc or CodeAddr("guest" if cpl == 3 else "hv", 0),
        rsp=rsp,
        regs=(0,) * len(REGISTERS),
        rflags=rflags,
        **kw,  # type: ignore[arg-type]
    )


def make_machine(p: Platform, *cpus: Cpu, idts: tuple[Idt, ...] | None = None) -> Machine:
    if not cpus:
        cpus = (make_cpu(p),)
    return Machine(
        cpus=tuple(cpus),
        memory=(),
        frames=(),
        idts=idts if idts is not None else (xen_idt(),),
        tsss=tuple(xen_tss(i) for i in range(len(cpus))),
    )


def setup(**cpu_kw: object) -> tuple[Platform, Machine]:
    """One CPU, Xen's IDT and TSS."""
    p = platform()
    return p, make_machine(p, make_cpu(p, **cpu_kw))  # type: ignore[arg-type]


def deliver_event(
    p: Platform,
    m: Machine,
    source: Source,
    vector: int,
    error_code: int | None = None,
    cpu: int = 0,
    return_pc: Value | None = None,
) -> Machine:
    rp = return_pc if return_pc is not None else m.cpus[cpu].pc
    return deliver(p, m, cpu, Event(source, vector, error_code), rp)


def frame_words(m: Machine, f: Frame) -> dict[str, Value]:
    """The five words of a frame, read back from memory (SDM §6.14.2, Figure 6-9)."""
    names = ("rip", "cs", "rflags", "rsp", "ss")
    return {n: read(m, f.lo + k * WORD) for k, n in enumerate(names)}


def last_frame(m: Machine) -> Frame:
    assert m.frames, "no frame was pushed"
    return m.frames[-1]
