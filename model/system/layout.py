"""Instantiating a design on N CPUs: per-CPU stacks, IDTs, TSSs and variables get one
instance each (`nmi_ist[1]`), stacks get addresses, and the initial machine is built."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

from checker.errors import InputError
from model.lang.expr import binop, unop
from model.lang.ir import CpuDecl, Design, Expr, Loc
from model.x86.arch import IF, RFLAGS_FIXED
from model.x86.state import (
    REGISTERS,
    CodeAddr,
    Cpu,
    Gate,
    Idt,
    Machine,
    Platform,
    Run,
    Selectors,
    StackRegion,
    Tss,
    Value,
)

# Where stacks live unless the design says: Xen's directmap-ish upper half for its own
# stacks, a user-half address for guest stacks. Each instance gets a 64 KiB slot.
HYPERVISOR_BASE = 0xFFFF_8300_0000_0000
GUEST_BASE = 0x0000_7FFF_0000_0000
SLOT = 0x1_0000
HYPERVISOR_TEXT = 0xFFFF_82D0_4000_0000
GUEST_TEXT = 0x0000_5555_0000_0000


def instance(name: str, cpu: int, per_cpu: bool) -> str:
    return f"{name}[{cpu}]" if per_cpu else name


_INSTANCE = re.compile(r"^(.*)\[(\d+)\]$")


def split_instance(name: str) -> tuple[str, int] | None:
    """The inverse of `instance`: (base name, CPU) of a per-CPU instance name, else None."""
    m = _INSTANCE.match(name)
    return (m.group(1), int(m.group(2))) if m else None


@dataclass(frozen=True)
class Layout:
    """The design's names mapped onto this many CPUs."""

    design: Design
    ncpus: int
    regions: tuple[StackRegion, ...]
    per_cpu: frozenset[str]  # names of per-CPU stacks, IDTs and TSSs
    var_index: dict[str, int]  # global var -> slot; per-cpu var -> first slot (+cpu)
    percpu_vars: frozenset[str]
    nvars: int
    lengths: dict[str, int]  # elements of each global array (1 for scalars)

    def resolve(self, name: str, cpu: int) -> str:
        """A stack, IDT or TSS name as code on `cpu` means it."""
        return instance(name, cpu, name in self.per_cpu)

    def code_address(self, pc: CodeAddr) -> int:
        """A linear address for a code address, for code that does arithmetic on one
        (Xen's canonical check of a return RIP). Guest code sits in the user half, the
        hypervisor's in its text region; each routine gets a page, each step 4 bytes."""
        names = sorted(self.design.routines)
        k = names.index(pc.routine) if pc.routine in names else len(names)
        routine = self.design.routines.get(pc.routine)
        base = GUEST_TEXT if routine is None or routine.guest else HYPERVISOR_TEXT
        return base + k * 0x1000 + pc.index * 4

    def var_slot(self, name: str, cpu: int) -> int:
        base = self.var_index[name]
        return base + cpu if name in self.percpu_vars else base


def build_layout(design: Design, ncpus: int) -> Layout:
    regions: list[StackRegion] = []
    hyp = guest = 0
    for s in design.stacks:
        for c in range(ncpus) if s.per_cpu else [0]:
            if s.base is not None:
                lo = s.base + (c * s.size if s.per_cpu else 0)
            elif s.owner == "guest":
                lo = GUEST_BASE + guest * SLOT
                guest += 1
            else:
                lo = HYPERVISOR_BASE + hyp * SLOT
                hyp += 1
            if s.size > SLOT and s.base is None:
                raise InputError(f"stack {s.name} is larger than {SLOT:#x}", s.loc.file, s.loc.line)
            regions.append(StackRegion(instance(s.name, c, s.per_cpu), lo, s.size, s.owner))
    per_cpu = {s.name for s in design.stacks if s.per_cpu}
    per_cpu |= {t.name for t in design.idts if t.per_cpu}
    per_cpu |= {t.name for t in design.tsss if t.per_cpu}
    var_index: dict[str, int] = {}
    n = 0
    for v in design.variables:
        var_index[v.name] = n
        n += ncpus if v.per_cpu else v.length
    return Layout(
        design=design,
        ncpus=ncpus,
        regions=tuple(regions),
        per_cpu=frozenset(per_cpu),
        var_index=var_index,
        percpu_vars=frozenset(v.name for v in design.variables if v.per_cpu),
        nvars=n,
        lengths={v.name: v.length for v in design.variables},
    )


# The design's `selector` names -> model.x86.state.Selectors fields.
_SELECTOR_FIELDS = {
    "hypervisor_cs": "ring0_cs", "hypervisor_ss": "ring0_ss", "guest_cs_ring1": "ring1_cs",
    "guest_cs64": "ring3_cs", "guest_ss": "ring3_ss",
}


def platform_of(layout: Layout) -> Platform:
    d = layout.design
    selectors = Selectors()._replace(**{_SELECTOR_FIELDS[n]: v for n, v in d.selectors})
    return Platform(
        regions=layout.regions, vendor=d.vendor, df_rule=d.df_rule, lstar=d.lstar,
        fmask=d.fmask, selectors=selectors,
    )


def static_value(layout: Layout, e: Expr, cpu: int, loc: Loc) -> Value:
    """Evaluate an initialiser: constants, `cpu`, `ncpus`, `top(stack)`, arithmetic."""
    kind = e[0]
    if kind == "const":
        return int(e[1])
    if kind == "cpu":
        return cpu
    if kind == "ncpus":
        return layout.ncpus
    if kind == "top":
        name = layout.resolve(e[1], cpu)
        for r in layout.regions:
            if r.name == name:
                return r.top
        raise InputError(f"no stack {e[1]!r}", loc.file, loc.line)
    if kind == "binop":
        a = static_value(layout, e[2], cpu, loc)
        b = static_value(layout, e[3], cpu, loc)
        if isinstance(a, int) and isinstance(b, int):
            return binop(e[1], a, b)
    if kind == "unop":
        a = static_value(layout, e[2], cpu, loc)
        if isinstance(a, int):
            return unop(e[1], a)
    raise InputError("initial values must be constants", loc.file, loc.line)


def _cpu_choices(layout: Layout, c: int) -> list[CpuDecl]:
    """The `cpu` lines that may describe CPU c at start: its own lines, else the `*` lines.
    Several lines are alternative initial states."""
    d = layout.design
    own = [x for x in d.cpu_decls if x.which == c]
    return own or [x for x in d.cpu_decls if x.which is None]


def _initial_cpu(layout: Layout, c: int, decl: CpuDecl) -> Cpu:
    regs: list[Value] = [0] * len(REGISTERS)
    for name, e in decl.regs:
        regs[REGISTERS.index(name)] = static_value(layout, e, c, decl.loc)
    rsp = static_value(layout, decl.rsp, c, decl.loc) if decl.rsp is not None else 0
    return Cpu(
        cpl=decl.cpl,
        pc=CodeAddr(decl.start, 0),
        rsp=rsp,
        regs=tuple(regs),
        rflags=RFLAGS_FIXED | (IF if decl.interrupts else 0),
        nmi_blocked=decl.nmi_blocked,
        run=Run.HALTED if decl.halted else Run.RUNNING,
        idtr=layout.resolve(decl.idt, c) if decl.idt else None,
        tr=layout.resolve(decl.tss, c) if decl.tss else None,
        cr4_mce=decl.mce,
    )


def initial_machines(layout: Layout) -> tuple[list[Machine], tuple[Value, ...]]:
    """Every initial machine (one per combination of alternative `cpu` lines)."""
    d = layout.design
    idts: list[Idt] = []
    for t in d.idts:
        gates = tuple(
            (g.vector, Gate(g.routine, g.kind, g.dpl, g.ist, g.present)) for g in t.gates
        )
        for c in range(layout.ncpus) if t.per_cpu else [0]:
            idts.append(Idt(instance(t.name, c, t.per_cpu), t.limit, gates))
    tsss: list[Tss] = []
    for t in d.tsss:
        for c in range(layout.ncpus) if t.per_cpu else [0]:
            rsp0 = layout.resolve(t.rsp0, c) if t.rsp0 else None
            ist = tuple(layout.resolve(s, c) if s else None for s in t.ist)
            tsss.append(Tss(instance(t.name, c, t.per_cpu), rsp0, ist))
    choices: list[list[Cpu]] = []
    for c in range(layout.ncpus):
        decls = _cpu_choices(layout, c)
        if not decls:
            raise InputError(f"no `cpu` line covers CPU {c}", d.path, 1)
        choices.append([_initial_cpu(layout, c, decl) for decl in decls])
    values: list[Value] = []
    for v in d.variables:
        for c in range(layout.ncpus) if v.per_cpu else range(v.length):
            values.append(static_value(layout, v.init, c if v.per_cpu else 0, v.loc))
    machines = [
        Machine(cpus=tuple(cpus), memory=(), frames=(), idts=tuple(idts), tsss=tuple(tsss))
        for cpus in itertools.product(*choices)
    ]
    return machines, tuple(values)
