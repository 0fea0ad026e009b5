"""Instantiating a design on N CPUs: per-CPU stacks, IDTs, TSSs and variables get one
instance each (`nmi_ist[1]`), stacks get addresses, and the initial machine is built."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field

from checker.errors import InputError
from model.lang.expr import binop, unop
from model.lang.ir import (
    Binary,
    BreakpointDecl,
    CodeRef,
    Const,
    CpuDecl,
    Design,
    Expr,
    Loc,
    NCpus,
    StackTop,
    ThisCpu,
    Unary,
    Var,
)
from model.x86 import msr
from model.x86.arch import IF, RFLAGS_FIXED, TF
from model.x86.state import (
    REGISTERS,
    Breakpoint,
    CodeAddr,
    Cpu,
    Descriptor,
    DescriptorTable,
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
GUEST32_TEXT = 0x0804_8000
INSTR_BYTES = 4  # each step of a routine is 4 bytes of text
# Design variables live in memory too, so asm can address them (`movq $1, v`,
# `call *table(,%rax,8)`): globals at DATA_BASE, one word per element; per-CPU variables
# in each CPU's per-CPU area (PERCPU_BASE + cpu * PERCPU_SLOT), the k-th at offset 8k,
# which is what a `%gs:NAME` operand adds to the CPU's active GS base.
DATA_BASE = 0xFFFF_82D0_8000_0000
PERCPU_BASE = 0xFFFF_8340_0000_0000
PERCPU_SLOT = 0x1_0000


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
    # Each routine's first address, in source order (hypervisor and guest text apart).
    code_base: dict[str, int] = field(default_factory=dict)
    percpu_offset: dict[str, int] = field(default_factory=dict)  # per-CPU var -> offset

    def resolve(self, name: str, cpu: int) -> str:
        """A stack, IDT or TSS name as code on `cpu` means it."""
        return instance(name, cpu, name in self.per_cpu)

    def code_address(self, pc: CodeAddr) -> int:
        """A linear address for a code address, for code that does arithmetic on one
        (Xen's canonical check of a return RIP) or compares two (is a saved RIP inside
        [label_a, label_b)?). Routines are laid out in source order, as the assembler
        would, each step INSTR_BYTES long, so addresses grow with the file: guest code in
        the user half, the hypervisor's in its text region. Code the design does not
        have (a guest address it names no routine for) sits past the guest's text."""
        base = self.code_base.get(pc.routine)
        if base is None:
            base = GUEST_TEXT + self.code_base.get("", 0)
        return base + pc.index * INSTR_BYTES

    def code_at(self, address: int) -> CodeAddr | None:
        """The code address at a linear address (an indirect jump's target), if any."""
        for name, base in self.code_base.items():
            r = self.design.routines.get(name)
            if r is not None and base <= address < base + len(r.instrs) * INSTR_BYTES:
                offset = address - base
                return CodeAddr(name, offset // INSTR_BYTES) if offset % INSTR_BYTES == 0 else None
        return None

    def var_address(self, name: str, cpu: int) -> int:
        """Where variable `name` (CPU `cpu`'s copy of a per-CPU one) lives in memory."""
        if name in self.percpu_vars:
            return PERCPU_BASE + cpu * PERCPU_SLOT + self.percpu_offset[name]
        return DATA_BASE + 8 * self.var_index[name]

    def percpu_area(self, cpu: int) -> int:
        """CPU `cpu`'s per-CPU area: what its kernel GS base points at."""
        return PERCPU_BASE + cpu * PERCPU_SLOT

    def slot_at(self, address: int) -> tuple[int, int] | None:
        """The variable slot holding a data address, and the byte offset within its word."""
        if DATA_BASE <= address < DATA_BASE + 8 * self.nvars:
            k, byte = divmod(address - DATA_BASE, 8)
            for name, base in self.var_index.items():
                if name not in self.percpu_vars and base <= k < base + self.lengths[name]:
                    return k, byte
            return None
        if PERCPU_BASE <= address < PERCPU_BASE + self.ncpus * PERCPU_SLOT:
            cpu, offset = divmod(address - PERCPU_BASE, PERCPU_SLOT)
            for name, off in self.percpu_offset.items():
                if off <= offset < off + 8:
                    return self.var_index[name] + cpu, offset - off
        return None

    def var_slot(self, name: str, cpu: int) -> int:
        base = self.var_index[name]
        return base + cpu if name in self.percpu_vars else base


def build_layout(design: Design, ncpus: int) -> Layout:
    for decl in design.cpu_decls:
        # A line for a CPU that neither the design nor the run has is a mistake; the
        # CPUs a run leaves out (fewer environment.cpus) are ignored, as in tables.
        if decl.which is not None and decl.which >= max(ncpus, design.cpus):
            raise InputError(
                f"cpu {decl.which}: the design has {design.cpus} CPU"
                f"{'s' if design.cpus != 1 else ''} (cpus {design.cpus}), numbered from 0",
                decl.loc.file, decl.loc.line,
            )
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
    code_base: dict[str, int] = {}
    # GUEST32 code sits below 4 GiB, where a 32-bit EIP (SYSRETL, IRETL) can name it.
    next_text = {"hypervisor": HYPERVISOR_TEXT, "guest": GUEST_TEXT, "guest32": GUEST32_TEXT}
    for r in design.routines.values():  # in source order
        where = "hypervisor" if not r.guest else "guest32" if r.compat else "guest"
        code_base[r.name] = next_text[where]
        # one more slot than steps, so a routine's end is not the next one's start
        next_text[where] += (len(r.instrs) + 1) * INSTR_BYTES
    code_base[""] = next_text["guest"] - GUEST_TEXT  # where unnamed guest code goes
    percpu = [v.name for v in design.variables if v.per_cpu]
    return Layout(
        code_base=code_base,
        percpu_offset={name: 8 * k for k, name in enumerate(percpu)},
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
    "guest_cs64": "ring3_cs", "guest_ss": "ring3_ss", "guest_ss_ring1": "ring1_ss",
}


def descriptor_tables(d: Design, kind: str) -> tuple[DescriptorTable, ...]:
    """The design's `gdt` (or `ldt`) lines as tables, in order of first mention."""
    tables: dict[str, dict[int, Descriptor]] = {}
    for x in d.descriptors:
        if x.table_kind == kind:
            tables.setdefault(x.table, {})[x.selector >> 3] = Descriptor(
                x.kind, x.dpl, x.present, x.long, x.db, x.writable, x.conforming, x.base
            )
    return tuple(DescriptorTable(n, tuple(sorted(e.items()))) for n, e in tables.items())


def design_selectors(d: Design) -> Selectors:
    """The design's `selector` lines over the defaults."""
    return Selectors()._replace(**{_SELECTOR_FIELDS[n]: v for n, v in d.selectors})


def platform_of(layout: Layout, breakpoints: tuple[BreakpointDecl, ...] = ()) -> Platform:
    """The design's platform; `breakpoints` are armed besides the design's own (a property
    file's `environment.breakpoints`)."""
    d = layout.design
    selectors = design_selectors(d)
    return Platform(
        regions=layout.regions, vendor=d.vendor, df_rule=d.df_rule, lstar=d.lstar,
        fmask=d.fmask, selectors=selectors, gdts=descriptor_tables(d, "gdt"),
        ldts=descriptor_tables(d, "ldt"),
        breakpoints=tuple(_breakpoint(layout, b) for b in d.breakpoints + breakpoints),
        smap=d.smap,
        fred_msrs=tuple(_fred_msrs(layout, c) for c in range(layout.ncpus))
        if d.fred is not None else (),
        fred_ring0=(d.fred.entry,) if d.fred is not None and d.fred.entry else (),
    )


def _fred_msrs(layout: Layout, cpu: int) -> tuple[tuple[int, Value], ...]:
    """CPU `cpu`'s FRED MSRs as the design's `fred` block sets them (FRED spec §4):
    IA32_FRED_CONFIG the ring-3 entry routine (its other fields 0),
    IA32_FRED_RSPn the tops of the named stacks, IA32_FRED_STKLVLS two bits a vector."""
    f = layout.design.fred
    assert f is not None
    out: list[tuple[int, Value]] = []
    if f.entry is not None and f.preload:
        out.append((msr.IA32_FRED_CONFIG, CodeAddr(f.entry[0], 0)))
    for n, stack in enumerate(f.rsp):
        if stack is not None:
            name = layout.resolve(stack, cpu)
            top = next(r.top for r in layout.regions if r.name == name)
            out.append((msr.IA32_FRED_RSP0 + n, top))
    levels = 0
    for vector, level in f.levels:
        levels = (levels & ~(3 << (2 * vector))) | (level << (2 * vector))
    if levels:
        out.append((msr.IA32_FRED_STKLVLS, levels))
    return tuple(sorted(out))


def _breakpoint(layout: Layout, b: BreakpointDecl) -> Breakpoint:
    """A `breakpoint` line as the debug registers hold it: an exec breakpoint's routine
    step, or a data breakpoint's linear address (a variable's name is its address)."""
    e = b.address
    if isinstance(e, CodeRef):
        routine = layout.design.routines.get(e.routine)
        if routine is None or e.instr >= len(routine.instrs):
            raise InputError(
                f"breakpoint: no routine step {e.routine}+{e.instr}", b.loc.file, b.loc.line
            )
        return Breakpoint(b.kind, CodeAddr(e.routine, e.instr), 1)
    address = _address_value(layout, e, b.loc)
    if not isinstance(address, int) or not 0 <= address < 1 << 64:
        raise InputError("a breakpoint address must be a 64-bit number", b.loc.file, b.loc.line)
    return Breakpoint(b.kind, address, b.length)


def _address_value(layout: Layout, e: Expr, loc: Loc) -> Value:
    """static_value, where a variable's name stands for its address (CPU 0's copy)."""
    if isinstance(e, Var):
        if e.name not in layout.var_index:
            raise InputError(f"breakpoint: {e.name!r} is not a variable", loc.file, loc.line)
        return layout.var_address(e.name, 0)
    if isinstance(e, Binary):
        a, b = _address_value(layout, e.left, loc), _address_value(layout, e.right, loc)
        if isinstance(a, int) and isinstance(b, int):
            return binop(e.op, a, b) & ((1 << 64) - 1)
    return static_value(layout, e, 0, loc)


def static_value(layout: Layout, e: Expr, cpu: int, loc: Loc) -> Value:
    """Evaluate an initialiser: constants, `cpu`, `ncpus`, `top(stack)`, arithmetic."""
    match e:
        case Const(value):
            return value
        case ThisCpu():
            return cpu
        case NCpus():
            return layout.ncpus
        case StackTop(stack):
            name = layout.resolve(stack, cpu)
            for r in layout.regions:
                if r.name == name:
                    return r.top
            raise InputError(f"no stack {stack!r}", loc.file, loc.line)
        case Binary(op, left, right):
            a = static_value(layout, left, cpu, loc)
            b = static_value(layout, right, cpu, loc)
            if isinstance(a, int) and isinstance(b, int):
                return binop(op, a, b)
        case Unary(op, operand):
            a = static_value(layout, operand, cpu, loc)
            if isinstance(a, int):
                return unop(op, a)
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
        rflags=RFLAGS_FIXED | (IF if decl.interrupts else 0) | (TF if decl.single_step else 0),
        nmi_blocked=decl.nmi_blocked,
        run=Run.HALTED if decl.halted else Run.RUNNING,
        idtr=layout.resolve(decl.idt, c) if decl.idt else None,
        tr=layout.resolve(decl.tss, c) if decl.tss else None,
        cr4_mce=decl.mce,
        cs=design_selectors(layout.design).cs(decl.cpl),
        ss=design_selectors(layout.design).ss(decl.cpl),
        # The kernel's GS base is the CPU's own per-CPU area; code that starts in a guest
        # (CPL 3) has the guest's in GS_BASE and the kernel's parked in KERNEL_GS_BASE.
        gs_base=0 if decl.cpl == 3 else None,
        kernel_gs_base=None if decl.cpl == 3 else 0,
        fred=layout.design.delivery == "fred",
    )


def initial_machines(layout: Layout) -> tuple[list[Machine], tuple[Value, ...]]:
    """Every initial machine (one per combination of alternative `cpu` lines)."""
    d = layout.design
    idts: list[Idt] = []
    for t in d.idts:
        for c in range(layout.ncpus) if t.per_cpu else [0]:
            # per-cpu tables may start different (`cpus LIST` lines): CPU c's own gates
            gates = tuple(
                (g.vector, Gate(g.routine, g.kind, g.dpl, g.ist, g.present))
                for g in t.gates_of(c)
            )
            idts.append(Idt(instance(t.name, c, t.per_cpu), t.limit, gates))
    tsss: list[Tss] = []
    for tss in d.tsss:
        for c in range(layout.ncpus) if tss.per_cpu else [0]:
            rsp0_of, ist_of = tss.slots_of(c)
            rsp0 = layout.resolve(rsp0_of, c) if rsp0_of else None
            ist = tuple(layout.resolve(s, c) if s else None for s in ist_of)
            tsss.append(Tss(instance(tss.name, c, tss.per_cpu), rsp0, ist))
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
