"""What a design file becomes: declarations and routines of flat, located instructions.

Assembler routines map one source line to one `Instr`; pseudo-C functions are lowered to
the same form (a branch per `if`/`while`, one step per statement), so the interpreter in
model/system runs a single instruction set and every step points at a design-file line.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Literal, NamedTuple, TypeGuard


@dataclass(frozen=True)
class Loc:
    """A design-file line. A line that a macro (or `.rept`/`.irp`) expansion produced
    keeps its own line and records, in `via`, where it was expanded: the invocation's
    line (itself possibly inside another macro)."""

    file: str
    line: int
    via: Loc | None = None

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"

    @property
    def site(self) -> Loc:
        """The outermost invocation: the line the routine's reader sees (self when the
        line is not from a macro)."""
        loc = self
        while loc.via is not None:
            loc = loc.via
        return loc

    def chain(self) -> tuple[Loc, ...]:
        """Every line involved, outermost invocation first, this line last."""
        out: list[Loc] = []
        loc: Loc | None = self
        while loc is not None:
            out.append(Loc(loc.file, loc.line))
            loc = loc.via
        return tuple(reversed(out))

    def macro_lines(self) -> str:
        """The lines between the invocation and this line, innermost last (`line 20 >
        line 12`); "" when the line is not from a macro."""
        site = self.site
        return " > ".join(
            str(loc) if loc.file != site.file else f"line {loc.line}"
            for loc in self.chain()[1:]
        )

    def describe(self) -> str:
        """`file:line` for a plain line; for a macro line the call site first and the
        macro's own line after it: `x.design:40 (in macro: line 12)`."""
        if self.via is None:
            return str(self)
        return f"{self.site} (in macro: {self.macro_lines()})"


# -- expression trees ---------------------------------------------------------------------------
# Pseudo-C conditions and values, immediates, initial values. One small immutable node per
# kind; each is a tuple whose first item is its kind tag, (kind, *fields):
#   Const ("const", value)        Var ("var", name)           RegValue ("reg", name)
#   ThisCpu ("cpu",)              NCpus ("ncpus",)            StackTop ("top", stack)
#   CodeRef ("code", routine, instr)                          Index ("index", name, subscript)
#   Unary ("unop", op, operand)   Binary ("binop", op, left, right)
#   Call ("call", name, (args...))
# A node equals (and hashes as) that plain tuple, so the tag also names it in `walk`; read
# the fields by name or with `match`.


class _Node:
    """What every expression node shares: built without its tag, pickled without it, and
    shown as `Var('x')`."""

    __slots__ = ()

    def __getnewargs__(self) -> tuple[object, ...]:
        assert isinstance(self, tuple)
        return tuple(self)[1:]

    def __repr__(self) -> str:
        assert isinstance(self, tuple)
        return f"{type(self).__name__}({', '.join(repr(f) for f in self[1:])})"


class _Const(NamedTuple):
    kind: Literal["const"]
    value: int


class Const(_Node, _Const):
    """A number (constant arithmetic is folded into one)."""

    __slots__ = ()
    __match_args__ = ("value",)

    def __new__(cls, value: int) -> Const:
        return tuple.__new__(cls, ("const", value))


class _Var(NamedTuple):
    kind: Literal["var"]
    name: str


class Var(_Node, _Var):
    """A name: a design variable's value (this CPU's copy of a per-CPU one), or, where a
    built-in takes one, a table, TSS or stack (`idt_table`, `none`, `SELF`)."""

    __slots__ = ()
    __match_args__ = ("name",)

    def __new__(cls, name: str) -> Var:
        return tuple.__new__(cls, ("var", name))


class _RegValue(NamedTuple):
    kind: Literal["reg"]
    name: str


class RegValue(_Node, _RegValue):
    """A 64-bit register's value (`%rax`, `%rsp`), by its 64-bit name."""

    __slots__ = ()
    __match_args__ = ("name",)

    def __new__(cls, name: str) -> RegValue:
        return tuple.__new__(cls, ("reg", name))


class _ThisCpu(NamedTuple):
    kind: Literal["cpu"]


class ThisCpu(_Node, _ThisCpu):
    """`cpu` / `smp_processor_id()`: the number of the CPU running the step."""

    __slots__ = ()
    __match_args__ = ()

    def __new__(cls) -> ThisCpu:
        return tuple.__new__(cls, ("cpu",))


class _NCpus(NamedTuple):
    kind: Literal["ncpus"]


class NCpus(_Node, _NCpus):
    """`ncpus`: how many CPUs the design has."""

    __slots__ = ()
    __match_args__ = ()

    def __new__(cls) -> NCpus:
        return tuple.__new__(cls, ("ncpus",))


class _StackTop(NamedTuple):
    kind: Literal["top"]
    stack: str


class StackTop(_Node, _StackTop):
    """`top(STACK)`: the address above a stack (this CPU's instance of a per-CPU stack;
    `top(kstack[1])` names CPU 1's, written `kstack[1]`)."""

    __slots__ = ()
    __match_args__ = ("stack",)

    def __new__(cls, stack: str) -> StackTop:
        return tuple.__new__(cls, ("top", stack))


class _CodeRef(NamedTuple):
    kind: Literal["code"]
    routine: str
    instr: int  # the instruction's index in the routine


class CodeRef(_Node, _CodeRef):
    """A code address as a value (`$label`): a routine and an instruction index."""

    __slots__ = ()
    __match_args__ = ("routine", "instr")

    def __new__(cls, routine: str, instr: int) -> CodeRef:
        return tuple.__new__(cls, ("code", routine, instr))


class _Index(NamedTuple):
    kind: Literal["index"]
    name: str
    subscript: Expr


class Index(_Node, _Index):
    """`name[i]`: an array element, or CPU i's copy of a per-CPU variable (or, where a
    built-in takes one, CPU i's instance of a per-CPU table)."""

    __slots__ = ()
    __match_args__ = ("name", "subscript")

    def __new__(cls, name: str, subscript: Expr) -> Index:
        return tuple.__new__(cls, ("index", name, subscript))


class _Unary(NamedTuple):
    kind: Literal["unop"]
    op: str
    operand: Expr


class Unary(_Node, _Unary):
    """`-e`, `~e`, `!e`."""

    __slots__ = ()
    __match_args__ = ("op", "operand")

    def __new__(cls, op: str, operand: Expr) -> Unary:
        return tuple.__new__(cls, ("unop", op, operand))


class _Binary(NamedTuple):
    kind: Literal["binop"]
    op: str
    left: Expr
    right: Expr


class Binary(_Node, _Binary):
    """`left op right`: arithmetic, comparisons, `&&` and `||` (model.lang.expr.binop)."""

    __slots__ = ()
    __match_args__ = ("op", "left", "right")

    def __new__(cls, op: str, left: Expr, right: Expr) -> Binary:
        return tuple.__new__(cls, ("binop", op, left, right))


class _Call(NamedTuple):
    kind: Literal["call"]
    name: str
    args: tuple[Expr, ...]


class Call(_Node, _Call):
    """A function of the expression language (model.lang.expr.FUNCTIONS): `mem(ADDR)`,
    `per_cpu(x, i)`, `nmi_blocked()`."""

    __slots__ = ()
    __match_args__ = ("name", "args")

    def __new__(cls, name: str, args: tuple[Expr, ...]) -> Call:
        return tuple.__new__(cls, ("call", name, args))


Expr = Const | Var | RegValue | ThisCpu | NCpus | StackTop | CodeRef | Index | Unary | Binary | Call
EXPR_NODES = (Const, Var, RegValue, ThisCpu, NCpus, StackTop, CodeRef, Index, Unary, Binary, Call)


def is_expr(value: object) -> TypeGuard[Expr]:
    """Is `value` an expression node (not an operand record, a name or a plain tuple)?"""
    return isinstance(value, EXPR_NODES)


@dataclass(frozen=True)
class Imm:
    expr: Expr


@dataclass(frozen=True)
class Reg:
    """A general register, by its 64-bit name; `size` is the bytes the operand names
    (`%eax` is Reg("rax", 4), `%al` Reg("rax", 1))."""

    name: str
    size: int = 8
    high: bool = False  # %ah %bh %ch %dh: bits 15:8 of rax rbx rcx rdx (size 1)


@dataclass(frozen=True)
class Mem:
    """A memory operand `seg:disp(base, index, scale)`: `disp(%rsp)`, `(%r10,%rax,8)`,
    `table(,%rax,8)`, `%gs:OFFSET`. `sym` is a symbolic displacement: a variable named
    as an address (its address; through %gs, its per-CPU offset)."""

    base: str | None
    disp: int
    size: int = 8
    index: str | None = None
    scale: int = 1
    seg: str = ""  # "gs": relative to the CPU's active GS base
    sym: Var | None = None


@dataclass(frozen=True)
class Indirect:
    """`*%rax`, `*8(%rsp)`, `*table(,%rax,8)`: a jump or call target read from a register
    or memory."""

    target: Reg | Mem | Abs


@dataclass(frozen=True)
class Abs:
    """An absolute memory operand: `stack_bottom-8` written as `top(primary)-8`."""

    expr: Expr
    size: int = 8


@dataclass(frozen=True)
class RipRel:
    """label(%rip): the address of a code label (what LEA computes)."""

    target: tuple[str, int]


@dataclass(frozen=True)
class Target:
    """A resolved jump/call target: routine and instruction index."""

    routine: str
    index: int


@dataclass(frozen=True)
class Name:
    """A table, TSS, stack or variable named by an operand."""

    name: str


Operand = Imm | Reg | Mem | Abs | RipRel | Target | Name | Indirect
# What an instruction's arguments are: operands (assembler), expressions and names
# (pseudo-C and built-ins: `c.assign`'s variable, `set_gate`'s gate type).
Arg = Operand | Expr | str


@dataclass(frozen=True)
class Instr:
    """One atomic step. `op` is the normalised mnemonic or a pseudo-C operation.

    `fault` is a vector the environment may raise at this step instead of executing it
    (the design marks such steps with `@fault(#PF)`).
    """

    op: str
    args: tuple[Arg, ...]
    loc: Loc
    text: str
    fault: int | None = None
    width: int = 64  # the operand size in bits (a suffix or the registers say)
    cc: str = ""  # the canonical condition code of a jcc / setcc / cmovcc
    src_width: int = 0  # MOVZX/MOVSX: the source size in bits
    prefixes: int = 0  # legacy/REX prefixes written before it (its length, for FRED)


@dataclass(frozen=True)
class Routine:
    name: str
    instrs: tuple[Instr, ...]
    loc: Loc
    kind: str = "asm"  # "asm" or "c"
    section: str = ".text"
    guest: bool = False  # guest code (runs at CPL 3; its frames hold guest context)
    compat: bool = False  # GUEST32: guest code in compatibility mode (INTO raises #OF)


@dataclass(frozen=True)
class StackDecl:
    name: str
    size: int
    owner: str
    per_cpu: bool
    base: int | None
    loc: Loc


@dataclass(frozen=True)
class DescriptorDecl:
    """`gdt TABLE SELECTOR code|data|system dpl N [long] [16bit] [readonly] [conforming]
    [notpresent] [base V]` (or `ldt ...`): one segment descriptor of a named table."""

    table_kind: str  # "gdt" or "ldt"
    table: str
    selector: int
    kind: str
    dpl: int
    present: bool
    long: bool
    db: bool
    writable: bool
    conforming: bool
    base: int
    loc: Loc


@dataclass(frozen=True)
class GateDecl:
    vector: int
    routine: str
    kind: str
    dpl: int
    ist: int
    present: bool
    loc: Loc
    cpus: tuple[int, ...] | None = None  # `cpus LIST`: only these CPUs' instances start with it


@dataclass(frozen=True)
class IdtDecl:
    """`gates`: the lines for every CPU (one per vector, by vector), then the lines with
    `cpus LIST` in source order; CPU c's table applies them in that order."""

    name: str
    limit: int
    gates: tuple[GateDecl, ...]
    per_cpu: bool
    loc: Loc

    def gates_of(self, cpu: int) -> tuple[GateDecl, ...]:
        """CPU `cpu`'s gates at start, by vector (an instance of a per-cpu table)."""
        table = {g.vector: g for g in self.gates if g.cpus is None or cpu in g.cpus}
        return tuple(table[v] for v in sorted(table))


@dataclass(frozen=True)
class FredDecl:
    """The design's `fred` block: the FRED MSRs before code writes them (FRED spec §4).
    `entry` is (ring-3 entry routine, the routine at +256 for ring 0); `rsp` the stack
    whose top each IA32_FRED_RSPn holds (None: 0); `levels` IA32_FRED_STKLVLS as
    (vector, level). IA32_FRED_CONFIG's other fields are 0."""

    entry: tuple[str, str] | None
    rsp: tuple[str | None, ...]
    levels: tuple[tuple[int, int], ...]
    loc: Loc
    preload: bool = True  # `entry` (IA32_FRED_CONFIG holds it) rather than `ring0`


@dataclass(frozen=True)
class TssDecl:
    """`cpu_slots`: lines with `cpus LIST`, (CPUs, "rsp0" or "ist N", stack or None) in
    source order, applied over `rsp0`/`ist` to those CPUs' instances."""

    name: str
    rsp0: str | None
    ist: tuple[str | None, ...]
    per_cpu: bool
    loc: Loc
    cpu_slots: tuple[tuple[tuple[int, ...], str, str | None], ...] = ()

    def slots_of(self, cpu: int) -> tuple[str | None, tuple[str | None, ...]]:
        """CPU `cpu`'s (rsp0, ist 1-7) at start."""
        rsp0, ist = self.rsp0, list(self.ist)
        for cpus, key, stack in self.cpu_slots:
            if cpu in cpus:
                if key == "rsp0":
                    rsp0 = stack
                else:
                    ist[int(key.split()[1]) - 1] = stack
        return rsp0, tuple(ist)


@dataclass(frozen=True)
class VarDecl:
    """`var NAME = init`, `var NAME[N] = init` (an array), `percpu NAME = init`."""

    name: str
    init: Expr
    per_cpu: bool
    loc: Loc
    length: int = 1  # elements of a global array (1: a scalar)


@dataclass(frozen=True)
class BreakpointDecl:
    """`breakpoint exec|write|rw ADDRESS [len N]`: a debug-address register armed with its
    DR7 R/W and LEN fields. `address` is an expression (a number, `top(STACK)-8`, a
    variable's name for its address) or, for `exec`, a routine (`ROUTINE` or
    `ROUTINE+N`, the N-th step)."""

    kind: str
    address: Expr
    length: int
    loc: Loc


@dataclass(frozen=True)
class CpuDecl:
    """How CPU(s) start: `which` is a CPU number or None for every CPU not named."""

    which: int | None
    start: str
    cpl: int
    idt: str | None
    tss: str | None
    rsp: Expr | None
    interrupts: bool
    nmi_blocked: bool
    mce: bool
    regs: tuple[tuple[str, Expr], ...]
    halted: bool
    loc: Loc
    single_step: bool = False  # `tf 1`: RFLAGS.TF set at start (the single-step trap)


@dataclass(frozen=True)
class InputDecl:
    """`input NAME = v1 | v2 | ...` or `input NAME = LOW..HIGH`: a guest-controlled value.

    Enumerated, the environment picks one of the samples (or every value of the range);
    declared symbolic by a property file, it is a 64-bit symbol (within the range)."""

    name: str
    samples: tuple[Expr, ...]
    low: int | None
    high: int | None
    loc: Loc


@dataclass(frozen=True)
class Design:
    name: str
    path: str
    title: str
    knobs: dict[str, tuple[str, ...]]  # knob -> values, the first is the default
    variant: dict[str, str]
    cpus: int
    stacks: tuple[StackDecl, ...]
    idts: tuple[IdtDecl, ...]
    tsss: tuple[TssDecl, ...]
    variables: tuple[VarDecl, ...]
    cpu_decls: tuple[CpuDecl, ...]
    routines: dict[str, Routine]
    lstar: str | None = None
    sysenter: tuple[str, str] | None = None  # SYSENTER's entry routine and stack (EIP/ESP MSRs)
    vendor: str = "intel"
    df_rule: str = "sdm"
    fmask: int = 0  # IA32_FMASK as the design's software writes it (`fmask`)
    selectors: tuple[tuple[str, int], ...] = ()  # `selector NAME = VALUE` lines, in order
    descriptors: tuple[DescriptorDecl, ...] = ()  # `gdt` / `ldt` lines, in order
    symmetric: bool = False  # the CPUs other than CPU 0 are interchangeable
    symmetry_loc: Loc | None = None  # where `symmetric` is declared
    # variables holding CPU numbers, CPU bitmasks, and loop positions over CPUs
    symmetry_vars: tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]] = ((), (), ())
    inputs: dict[str, InputDecl] = field(default_factory=dict)
    guest_code: str | None = None  # where guest code at an address the design names none runs
    observations: dict[str, Loc] = field(default_factory=dict)
    breakpoints: tuple[BreakpointDecl, ...] = ()  # `breakpoint` lines (model.x86.debug)
    smap: bool = False  # `smap`: CR4.SMAP set (model.x86.smap)
    delivery: str = "idt"  # `delivery fred`: CR4.FRED set at start (model.x86.fred)
    fred: FredDecl | None = None  # the `fred` block
    fred_possible: bool = False  # FRED may deliver: `delivery fred`, a `fred` block, MOV CR4


def walk(value: object) -> Iterator[object]:
    """Every node of an instruction's operands: expression nodes (their kind tags and
    fields too) and operand records, depth first (what POR, the instruction table and the
    symmetry check look through)."""
    yield value
    if isinstance(value, tuple):
        for v in value:
            yield from walk(v)
    elif is_dataclass(value) and not isinstance(value, type):
        for f in fields(value):
            yield from walk(getattr(value, f.name))
