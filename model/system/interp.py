"""Executing one instruction of a design on one CPU.

The x86 rules live in model/x86 (alu.py for arithmetic, flags and condition codes,
msr.py, instructions.py, memory.py); this module only maps the design language's
operations onto them and onto the design's variables. Which handler runs an instruction
comes from the instruction table (model/lang/isa.py): entry `semantics` X is the method
`_i_X`, bound once per interpreter. A fault an instruction raises is delivered here
through model.x86.delivery, so every exception follows the same SDM path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any, NamedTuple, cast

from checker import limits
from checker import symbolic as sym
from checker.errors import InputError
from checker.symbolic import Term, decide, oracle
from model.lang import isa
from model.lang.expr import binop, unop
from model.lang.ir import (
    Abs,
    Binary,
    Call,
    CodeRef,
    Const,
    Expr,
    Imm,
    Index,
    Indirect,
    Instr,
    Mem,
    Name,
    NCpus,
    Reg,
    RegValue,
    RipRel,
    Routine,
    StackTop,
    Target,
    ThisCpu,
    Unary,
    Var,
    is_expr,
)
from model.system.compiled import Unusual, compile_site
from model.system.layout import Layout
from model.x86 import alu, debug, fred, msr, segments, smap
from model.x86 import instructions as insn
from model.x86.arch import (
    BP,
    CF,
    DB,
    ERROR_CODE_VECTORS,
    FLAG_NAMES,
    GP,
    OF_FLAG,
    PF,
    TF,
    UD,
    is_canonical,
)
from model.x86.arch import SS as SS_FAULT
from model.x86.delivery import Event, Source
from model.x86.dispatch import deliver
from model.x86.events import (
    after_instruction,
    ipi_destinations,
    nmi_ipi_outcomes,
    send_nmi_ipi,
)
from model.x86.memory import (
    ArchFault,
    check_access,
    copy_words,
    forget,
    hand_off,
    move_rsp,
    pop,
    push,
    read,
    write,
)
from model.x86.state import (
    REGISTER_INDEX,
    WORD,
    CodeAddr,
    Gate,
    Machine,
    Platform,
    Run,
    Shadow,
    Value,
    fast_replace,
)

ZF = alu.ZF
SF = alu.SF
MASK64 = (1 << 64) - 1

# Sticky incidents the interpreter records (the x86 layer records its own).
# Limits on the work of one step (docs/design-language.md#limits): beyond MAX_CHOICES the
# step is refused with the design's path:line (the verdict is `error`), never cut short; a
# `rep movsq` of more than MAX_REP_WORDS words is copied by chunks, looking at --timeout and
# --max-memory between them (the exploration ends `incomplete` when they run out).
MAX_CHOICES = 1 << 16  # transitions one `choose_range` / enumerated `input` step may offer
MAX_REP_WORDS = 1 << 16  # words one `rep movsq` reads before it writes; more go by chunks

FREED_CODE = "freed-init-code-executed"
FELL_OFF = "ran-off-routine-end"
ASSERT_FAILED = "assertion-failed"
TIMED_OUT = "timeout-fired"
# A %gs: access while the active GS base is not this CPU's own per-CPU area (a missing or
# extra SWAPGS): it reads another CPU's data or guest-controlled memory.
FOREIGN_GS = "percpu-access-through-foreign-gs-base"
# An indirect jump or call to an address where the design has no code.
WILD_BRANCH = "indirect-branch-to-non-code"
# A CPU reached an address where the design has no code (a wild return): it is lost.
WILD_JUMP = "wild-jump"

# `send_nmi(X)`'s destination shorthands, as model.x86.events names them.
_SHORTHANDS = {"SELF": "self", "ALL_BUT_SELF": "all-but-self", "ALL": "all"}

# The length FRED records for a software event (FRED spec §5.2, the SS word's bits 63:60):
# the unprefixed encodings INT ib (CD ib), INT3 (CC), INTO (CE), INT1 (F1), SYSCALL (0F 05)
# and SYSENTER (0F 34); the design language writes no prefixes.
INSTRUCTION_LENGTH = {"int": 2, "int3": 1, "into": 1, "int1": 1, "syscall": 2, "sysenter": 2}

# Exceptions that are traps: the saved RIP is the next instruction (SDM Table 6-1).
TRAPS = frozenset({BP, DB})


@fast_replace
class SysState(NamedTuple):
    machine: Machine
    vars: tuple[Value, ...]
    budgets: tuple[int, ...]  # per CPU: NMIs, #MCs, external interrupts; then faults
    init_freed: bool = False
    # Symbolic execution (checker.symbolic): the path condition (sorted conditions), whether
    # any value is symbolic, and per CPU the last symbolic compare the flags stand for.
    path: tuple[Any, ...] = ()
    symbolic: bool = False
    lazy: tuple[Any, ...] = ()

    def with_machine(self, m: Machine) -> SysState:
        fields = list(self)
        fields[0] = m
        return _new(SysState, fields)

    def with_machine_vars(self, m: Machine, values: tuple[Value, ...]) -> SysState:
        fields = list(self)
        fields[0] = m
        fields[1] = values
        return _new(SysState, fields)


_new = tuple.__new__  # see model.x86.state._new


Handler = Callable[["SysState", int, "_Site", int], "SysState"]
Evaluator = Callable[["SysState", int], Value]  # a compiled expression (Interpreter.eval)

_M64 = (1 << 64) - 1
_NO_SHADOW = Shadow.NONE  # (an enum member read on its class costs ~10x a global's)
# The binary operators on two integers, as model.lang.expr.binop computes them (the others
# call binop): Interpreter._compile's fast path.
_INT_BINARY: dict[str, Callable[[int, int], int]] = {
    "+": lambda a, b: (a + b) & _M64,
    "-": lambda a, b: (a - b) & _M64,
    "*": lambda a, b: (a * b) & _M64,
    "&": lambda a, b: (a & b) & _M64,
    "|": lambda a, b: (a | b) & _M64,
    "^": lambda a, b: (a ^ b) & _M64,
    "==": lambda a, b: int(a == b),
    "!=": lambda a, b: int(a != b),
    "<": lambda a, b: int(a < b),
    "<=": lambda a, b: int(a <= b),
    ">": lambda a, b: int(a > b),
    ">=": lambda a, b: int(a >= b),
    "&&": lambda a, b: int(bool(a) and bool(b)),
    "||": lambda a, b: int(bool(a) or bool(b)),
}


class _Site(NamedTuple):
    """What running the instruction at one pc needs, worked out once per pc."""

    ins: Instr | None
    next_pc: CodeAddr  # the fall-through pc: CALL's return address, a trap's saved RIP
    goto: CodeAddr | None  # a jump's, call's or branch's target
    init: bool  # the routine is in an .init section (freed by `free_init`)
    handler: Handler | None  # the table entry's semantics, bound to this interpreter
    # The step `step` runs on a concrete state: the site compiled (model.system.compiled),
    # which raises Unusual for what it leaves to `handler`; else `handler` itself.
    fast: Handler | None = None


class Blocked(Exception):
    """The instruction cannot run now (a wait whose condition is false)."""


def handlers_of(obj: object) -> dict[str, Handler]:
    """Each table entry's handler on `obj`; a missing one is a bug caught at start-up."""
    out: dict[str, Handler] = {}
    for op, semantics in [(e.op, e.semantics) for e in isa.ASM + isa.DERIVED] + [
        (b.op, b.semantics) for b in isa.BUILTIN_TABLE
    ]:
        fn = getattr(obj, f"_i_{semantics}", None)
        if fn is None:
            raise NotImplementedError(f"instruction table entry {op!r}: no handler _i_{semantics}")
        out[op] = fn
    return out


class Interpreter:
    def __init__(
        self, layout: Layout, platform: Platform, symbolic_inputs: frozenset[str] = frozenset()
    ):
        self.layout = layout
        self.platform = platform
        self.symbolic_inputs = symbolic_inputs
        # Witness support: name symbols by the step that made them, or replay concretely.
        self.unique_names = False
        self.witness_values: dict[str, int] | None = None
        self.step_index = 0
        self.routines: dict[str, Routine] = layout.design.routines
        # GUEST32 code runs in compatibility mode: INTO there follows the non-64-bit rules.
        self.compat_platform = replace(platform, mode64=False)
        self._sites: dict[CodeAddr, _Site] = {}
        # Compile sites into step closures (model.system.compiled); off, every step runs
        # the general handlers (tests/test_step_closures.py compares the two).
        self.compile_sites = True
        # Each expression evaluated, compiled once (Interpreter.eval): by the node's id, with
        # its instruction (for error messages) and the node itself (so the id stays its own).
        self._compiled: dict[int, tuple[Instr, Evaluator, Expr]] = {}
        # Each variable's first slot and whether it is per-CPU (Layout.var_slot, one lookup).
        self._var_slots: dict[str, tuple[int, bool]] = {
            name: (base, name in layout.percpu_vars) for name, base in layout.var_index.items()
        }
        self._handlers = handlers_of(self)
        # Debug state (model.x86.debug): the data accesses of the running instruction are
        # collected while data breakpoints are armed.
        self._breakpoints = platform.breakpoints
        self._data_breakpoints = any(b.kind != debug.EXECUTE for b in platform.breakpoints)
        self._accesses: list[debug.Access] | None = None
        for decl in layout.design.inputs.values():
            if decl.name in symbolic_inputs or decl.low is None or decl.high is None:
                continue
            if decl.high - decl.low + 1 > MAX_CHOICES:
                raise InputError(
                    f"input {decl.name} = {decl.low:#x}..{decl.high:#x} has "
                    f"{decl.high - decl.low + 1:#x} values, more than the {MAX_CHOICES} the "
                    "checker enumerates: narrow the range, or make it symbolic (a property "
                    f"file's environment.symbolic = [\"{decl.name}\"])",
                    decl.loc.file, decl.loc.line,
                )

    # -- values ------------------------------------------------------------------------------
    def routine_of(self, pc: CodeAddr) -> Routine:
        r = self.routines.get(pc.routine)
        if r is None and pc.routine == insn.GUEST_CODE and self.layout.design.guest_code:
            # Guest code at an address the design does not name runs the design's
            # `guest_code` routine (a guest that returned wherever it chose).
            r = self.routines[self.layout.design.guest_code]
        if r is None:
            raise InputError(f"no routine {pc.routine!r} to run", self.layout.design.path, 1)
        return r

    def instr_at(self, pc: CodeAddr) -> Instr | None:
        site = self._sites.get(pc)
        return (site if site is not None else self._site(pc)).ins

    def _site(self, pc: CodeAddr) -> _Site:
        """The pc's _Site, decoded on first use (routines never change after parsing)."""
        site = self._sites.get(pc)
        if site is not None:
            return site
        try:
            r: Routine | None = self.routine_of(pc)
        except InputError:
            r = None
        ins = r.instrs[pc.index] if r is not None and pc.index < len(r.instrs) else None
        goto = None
        handler = None
        if ins is not None:
            arg = ins.args[1] if ins.op == "c.branch_false" else ins.args[0] if ins.args else None
            if isinstance(arg, Target):
                goto = CodeAddr(arg.routine, arg.index)
            handler = self._handlers.get(ins.op)
        init = r is not None and r.section.startswith(".init")
        site = _Site(ins, CodeAddr(pc.routine, pc.index + 1), goto, init, handler, handler)
        fast = compile_site(self, site) if self.compile_sites else None
        if fast is not None:
            site = site._replace(fast=fast)
        self._sites[pc] = site
        return site

    def eval(self, s: SysState, cpu_i: int, e: Expr, ins: Instr) -> Value:
        return self.evaluator(e, ins)(s, cpu_i)

    def evaluator(self, e: Expr, ins: Instr) -> Evaluator:
        """`e` compiled (what `eval` runs), for a compiled step to call directly."""
        known = self._compiled.get(id(e))
        if known is None or known[0] is not ins:
            known = self._compiled[id(e)] = (ins, self._compile(e, ins), e)
        return known[1]

    def _compile(self, e: Expr, ins: Instr) -> Evaluator:
        """`e` as a closure of (state, CPU), the tree walked and its operands resolved
        once: the common nodes have closures of their own (integers take a fast path, any
        other value the general rule of `_walk`), the rest walk the tree (`_walk`)."""
        if type(e) is Const:
            value = e.value
            return lambda s, c: value
        if type(e) is Var:
            slot = self._var_slots.get(e.name)
            if slot is not None:
                base, per_cpu = slot
                if per_cpu:
                    return lambda s, c: s.vars[base + c]
                return lambda s, c: s.vars[base]
        elif type(e) is ThisCpu:
            return lambda s, c: c
        elif type(e) is RegValue:
            if e.name == "rsp":
                return lambda s, c: s.machine.cpus[c].rsp
            if e.name in REGISTER_INDEX:
                k = REGISTER_INDEX[e.name]
                return lambda s, c: s.machine.cpus[c].regs[k]
        elif type(e) is Binary:
            op = e.op
            left, right = self._compile(e.left, ins), self._compile(e.right, ins)
            general = self._binary
            fast = _INT_BINARY.get(op)
            if fast is None:
                def fast(a: int, b: int) -> int:
                    return binop(op, a, b)

            def binary(s: SysState, c: int) -> Value:
                a = left(s, c)
                b = right(s, c)
                if type(a) is int and type(b) is int:
                    return fast(a, b)
                return general(op, a, b, ins)
            return binary
        elif type(e) is Unary:
            op = e.op
            operand = self._compile(e.operand, ins)
            unary_general = self._unary

            def unary(s: SysState, c: int) -> Value:
                v = operand(s, c)
                if type(v) is int:
                    return unop(op, v)
                return unary_general(op, v, ins)
            return unary
        walk = self._walk
        return lambda s, c: walk(s, c, e, ins)

    def _binary(self, op: str, a: Value, b: Value, ins: Instr) -> Value:
        """A binary operator on any two values (`_walk`'s rule)."""
        if isinstance(a, Term) or isinstance(b, Term):
            return sym.binary(op, self._bv(a, ins), self._bv(b, ins))
        if op in ("==", "!="):
            return int((a == b) == (op == "=="))
        return binop(op, self._int(a, ins), self._int(b, ins))

    def _unary(self, op: str, value: Value, ins: Instr) -> Value:
        """A unary operator on any value (`_walk`'s rule)."""
        v = self._bv(value, ins)
        if isinstance(v, Term):
            if op == "-":
                return sym.neg(v)
            if op == "~":
                return sym.bnot(v)
            return sym.ite(sym.lnot(sym.truth(v)), 1, 0)
        return unop(op, v)

    def _walk(self, s: SysState, cpu_i: int, e: Expr, ins: Instr) -> Value:
        """`eval` by walking the tree (the rule for every node)."""
        match e:
            case Const(value):
                return value
            case Var(name):
                slot = self._var_slots.get(name)
                if slot is not None:
                    base, per_cpu = slot
                    return s.vars[base + cpu_i if per_cpu else base]
                return self._named(name, cpu_i, ins)
            case ThisCpu():
                return cpu_i
            case NCpus():
                return self.layout.ncpus
            case RegValue(name):
                cpu = s.machine.cpus[cpu_i]
                return cpu.rsp if name == "rsp" else cpu.reg(name)
            case StackTop(stack):
                return self.platform.region(self.layout.resolve(stack, cpu_i)).top
            case CodeRef(routine, instr):
                return CodeAddr(routine, instr)
            case Index(name, subscript):
                return s.vars[self._element(s, cpu_i, name, subscript, ins)]
            case Binary(op, left, right):
                a = self.eval(s, cpu_i, left, ins)
                b = self.eval(s, cpu_i, right, ins)
                return self._binary(op, a, b, ins)
            case Unary(op, operand):
                return self._unary(op, self.eval(s, cpu_i, operand, ins), ins)
            case Call("per_cpu", (Var(name), index)):
                idx = self._int(self.eval(s, cpu_i, index, ins), ins)
                return s.vars[self.layout.var_index[name] + idx]
            case Call("nmi_blocked", ()):
                return int(s.machine.cpus[cpu_i].nmi_blocked)
            case Call("mem", (address,)):
                # A word of stack memory, e.g. the error code of the frame a handler got.
                addr = self._int(self.eval(s, cpu_i, address, ins), ins) & MASK64
                return read(s.machine, addr - addr % WORD)
        raise self._error(f"cannot evaluate {e!r}", ins)

    def _element(self, s: SysState, cpu_i: int, name: str, index: Expr, ins: Instr) -> int:
        """The variable slot of `name[index]`: a per-CPU variable's copy, or an array element."""
        if name not in self.layout.var_index:
            raise self._error(f"{name}[...] is not a variable", ins)
        size = self.layout.ncpus if name in self.layout.percpu_vars else self.layout.lengths[name]
        raw = self._bv(self.eval(s, cpu_i, index, ins), ins)
        if isinstance(raw, Term):
            # A symbolic index is split over the elements (each a separate successor).
            if not decide(sym.ult(raw, size)):
                raise self._error(f"the index of {name} may be {size} or more", ins)
            # Binary search over the elements: log2(size) decisions per branch, then the
            # equality that pins the index (and lets the state become concrete again).
            lo, hi = 0, size - 1
            while lo < hi:
                mid = (lo + hi) // 2
                if decide(sym.ule(raw, mid)):
                    hi = mid
                else:
                    lo = mid + 1
            sym.require(sym.eq(raw, lo))
            idx = lo
        else:
            idx = raw
        if not 0 <= idx < size:
            raise self._error(f"index {idx} is outside {name}[0..{size - 1}]", ins)
        return self.layout.var_index[name] + idx

    def _named(self, name: str, cpu_i: int, ins: Instr) -> Value:
        raise self._error(f"{name!r} is not a value here", ins)

    def _int(self, v: Value, ins: Instr) -> int:
        """A value as a concrete number: a code address becomes its linear address."""
        if isinstance(v, CodeAddr):
            return self.layout.code_address(v)
        if isinstance(v, Term):
            raise self._error(f"this needs a concrete value, not the symbolic {v!r}", ins)
        return v

    def _bv(self, v: Value, ins: Instr) -> int | Term:
        """A value as a bit-vector, symbolic or not."""
        if isinstance(v, CodeAddr):
            return self.layout.code_address(v)
        return v

    def _error(self, msg: str, ins: Instr) -> InputError:
        return InputError(msg, ins.loc.file, ins.loc.line)

    def _name_of(self, s: SysState, cpu_i: int, e: object, ins: Instr) -> str:
        """A table/TSS/stack operand: `idt_table` (this CPU's) or `idt_table[i]`."""
        if isinstance(e, Var):
            return self.layout.resolve(e.name, cpu_i)
        if isinstance(e, Index):
            idx = self._int(self.eval(s, cpu_i, e.subscript, ins), ins)
            return f"{e.name}[{idx}]" if e.name in self.layout.per_cpu else e.name
        raise self._error("expected a table, TSS or stack name", ins)

    def _expr(self, s: SysState, cpu_i: int, e: object, ins: Instr) -> Value:
        """A pseudo-C argument (an expression) evaluated."""
        assert is_expr(e)
        return self.eval(s, cpu_i, e, ins)

    # -- operands ------------------------------------------------------------------------------
    def _address(self, s: SysState, cpu_i: int, op: Mem | Abs, ins: Instr) -> int | Term:
        """The linear address of a memory operand (with %gs:, the active GS base added)."""
        if isinstance(op, Abs):
            return sym.band(self._bv(self.eval(s, cpu_i, op.expr, ins), ins), MASK64)
        cpu = s.machine.cpus[cpu_i]
        total: int | Term = op.disp
        if op.base is not None:
            base = cpu.rsp if op.base == "rsp" else cpu.reg(op.base)
            total = sym.add(self._bv(base, ins), total)
        if op.index is not None:
            index = self._bv(cpu.reg(op.index), ins)
            total = sym.add(total, sym.mul(index, op.scale) if op.scale != 1 else index)
        if op.sym is not None:
            name = op.sym.name
            if op.seg == "gs":
                if name not in self.layout.percpu_offset:
                    raise self._error(f"%gs:{name}: {name!r} is not a percpu variable", ins)
                total = sym.add(total, self.layout.percpu_offset[name])
            else:
                total = sym.add(total, self.layout.var_address(name, cpu_i))
        if op.seg == "gs":
            gs = cpu.gs_base
            total = sym.add(total, self.layout.percpu_area(cpu_i) if gs is None
                            else self._bv(gs, ins))
        return sym.band(total, MASK64)

    def _foreign_gs(self, s: SysState, cpu_i: int, op: object) -> SysState:
        """Record a %gs: access made while the active GS base is not this CPU's own area."""
        if isinstance(op, Mem) and op.seg == "gs" and s.machine.cpus[cpu_i].gs_base is not None:
            return s.with_machine(s.machine.incident(FOREIGN_GS))
        return s

    def load(self, s: SysState, cpu_i: int, addr: int | Term, size: int, ins: Instr) -> Value:
        """`size` bytes at a linear address: a design variable's, or stack/guest memory."""
        m = s.machine
        if self._accesses is not None:
            self._accesses.append((addr, size, False))
        if isinstance(addr, int):
            slot = self.layout.slot_at(addr)
            if slot is not None:
                value = s.vars[slot[0]]
                return self._bytes_of(value, slot[1], size, ins)
        check_access(self.platform, addr, m.cpus[cpu_i].cpl)
        if self.platform.smap:
            cpu = m.cpus[cpu_i]
            smap.check(self.platform, addr, cpu.cpl, cpu.rflags, False)
        if isinstance(addr, Term):
            if size < WORD:
                raise self._error("narrow reads at symbolic addresses are not modelled", ins)
            return read(m, addr)
        offset = addr % WORD
        word = read(m, addr - offset)
        if offset + size > WORD:
            return self._across_words(m, cpu_i, addr, size, word, ins)
        return self._bytes_of(word, offset, size, ins)

    def _across_words(
        self, m: Machine, cpu_i: int, addr: int, size: int, low: Value, ins: Instr
    ) -> Value:
        """A read that spans two words (Xen's `pushq VCPUINFO_upcall_mask(%rax)` at an
        address that is not 8-aligned): the bytes of both, little-endian (SDM Vol. 1
        §1.3.1), each word's access checked. Only concrete words are combined."""
        offset = addr % WORD
        second = addr - offset + WORD
        check_access(self.platform, second, m.cpus[cpu_i].cpl)
        high = read(m, second)
        lo, hi = self._bv(low, ins), self._bv(high, ins)
        if not isinstance(lo, int) or not isinstance(hi, int):
            raise self._error("a read across two words holding a symbolic value is not "
                              "modelled", ins)
        return ((lo >> (8 * offset)) | (hi << (8 * (WORD - offset)))) & ((1 << (8 * size)) - 1)

    def _bytes_of(self, word: Value, offset: int, size: int, ins: Instr) -> Value:
        """movl/cmpl/testb...: `size` bytes at byte `offset` of a word, little-endian."""
        if size == WORD and offset == 0:
            return word
        if offset + size > WORD:
            raise self._error("an access across two words is not modelled", ins)
        bits = self._bv(word, ins)
        return sym.band(sym.lshr(bits, 8 * offset), (1 << (8 * size)) - 1)

    def store(
        self, s: SysState, cpu_i: int, addr: int | Term, size: int, value: Value, ins: Instr
    ) -> SysState:
        """Store `size` bytes at a linear address (a design variable, or memory)."""
        m = s.machine
        cpu = m.cpus[cpu_i]
        if self._accesses is not None:
            self._accesses.append((addr, size, True))
        if isinstance(addr, int):
            slot = self.layout.slot_at(addr)
            if slot is not None:
                merged = self._merge(s.vars[slot[0]], slot[1], size, value, ins)
                return _assigned(s, slot[0], merged, m)
        if self.platform.smap:
            smap.check(self.platform, addr, cpu.cpl, cpu.rflags, True)
        if isinstance(addr, Term):
            if size != WORD:
                raise self._error("narrow writes at symbolic addresses are not modelled", ins)
            return s.with_machine(write(self.platform, m, addr, value, cpu.cpl, by=cpu_i))
        aligned = addr - addr % WORD
        if size < WORD:
            check_access(self.platform, addr, cpu.cpl)
            value = self._merge(read(m, aligned), addr % WORD, size, value, ins)
        return s.with_machine(write(self.platform, m, aligned, value, cpu.cpl, by=cpu_i))

    def _merge(self, old: Value, offset: int, size: int, value: Value, ins: Instr) -> Value:
        if size == WORD and offset == 0:
            return value
        if offset + size > WORD:
            raise self._error("an access across two words is not modelled", ins)
        keep_mask = MASK64 & ~(((1 << (8 * size)) - 1) << (8 * offset))
        keep = sym.band(self._bv(old, ins) if not isinstance(old, CodeAddr) else 0, keep_mask)
        part = sym.shl(sym.band(self._bv(value, ins), (1 << (8 * size)) - 1), 8 * offset)
        return sym.bor(keep, part)

    def read(self, s: SysState, cpu_i: int, op: object, ins: Instr) -> Value:
        """An operand's value (a register of `Reg.size` bytes is its low bytes)."""
        if isinstance(op, Imm):
            return self.eval(s, cpu_i, op.expr, ins)
        if isinstance(op, Reg):
            cpu = s.machine.cpus[cpu_i]
            value = cpu.rsp if op.name == "rsp" else cpu.reg(op.name)
            if op.high:  # %ah..%dh: bits 15:8 (SDM Vol. 1 §3.4.1)
                return sym.band(sym.lshr(self._bv(value, ins), 8), 0xFF)
            if op.size < WORD:
                return sym.band(self._bv(value, ins), (1 << (8 * op.size)) - 1)
            return value
        if isinstance(op, (Mem, Abs)):
            return self.load(s, cpu_i, self._address(s, cpu_i, op, ins), op.size, ins)
        if isinstance(op, RipRel):
            return CodeAddr(*op.target)
        if isinstance(op, Indirect):
            return self.read(s, cpu_i, op.target, ins)
        raise self._error(f"unsupported operand {op!r}", ins)

    def write(
        self, s: SysState, cpu_i: int, dst: object, value: Value, ins: Instr, width: int = 64
    ) -> SysState:
        """Write an operand: a register of `width` bits (32-bit results zero-extend, 8- and
        16-bit ones merge: alu.merge_register), or memory (`Mem.size` bytes)."""
        m = s.machine
        cpu = m.cpus[cpu_i]
        if isinstance(dst, Reg):
            if dst.high:  # %ah..%dh: only bits 15:8 change (SDM Vol. 1 §3.4.1)
                old = cpu.reg(dst.name)
                v = self._bv(value, ins)
                if isinstance(v, int) and isinstance(old, int):
                    value = alu.merge_high_byte(old, v)
                else:
                    keep = sym.band(self._bv(old, ins), MASK64 & ~0xFF00)
                    value = sym.bor(keep, sym.shl(sym.band(v, 0xFF), 8))
                return s.with_machine(m.with_cpu(cpu_i, cpu.with_reg(dst.name, value)))
            if width < 64:
                old = cpu.rsp if dst.name == "rsp" else cpu.reg(dst.name)
                v = self._bv(value, ins)
                if isinstance(v, int) and isinstance(old, int):
                    value = alu.merge_register(old, v, width)
                elif width == 32:
                    value = sym.band(v, 0xFFFF_FFFF)
                else:
                    keep = sym.band(self._bv(old, ins), MASK64 & ~alu.mask(width))
                    value = sym.bor(keep, sym.band(v, alu.mask(width)))
            if dst.name == "rsp":
                return s.with_machine(move_rsp(self.platform, m, cpu_i, value))
            return s.with_machine(m.with_cpu(cpu_i, cpu.with_reg(dst.name, value)))
        if isinstance(dst, (Mem, Abs)):
            return self.store(s, cpu_i, self._address(s, cpu_i, dst, ins), dst.size, value, ins)
        raise self._error("cannot store there", ins)

    # -- steps -------------------------------------------------------------------------------
    def step(self, s: SysState, cpu_i: int, choice: int = 0) -> SysState:
        """Execute the instruction at CPU `cpu_i`'s pc (one action)."""
        cpu = s.machine.cpus[cpu_i]
        site = self._sites.get(cpu.pc) or self._site(cpu.pc)
        ins = site.ins
        if ins is None:
            return self.wild(s, cpu_i)
        shadow_before = cpu.shadow
        if ins.op == "c.atomic_begin":
            return self._atomic(s, cpu_i)
        flags = cpu.rflags
        if self._breakpoints or cpu.held_db or not isinstance(flags, int) or flags & TF:
            return self._debug_step(s, cpu_i, site, choice, shadow_before)
        try:
            if (site.init and s.init_freed) or site.handler is None:
                s = self._execute(s, cpu_i, site, choice)  # it raises what these raise
            elif s.symbolic:
                # (a compiled step never decides: it leaves symbolic states to the handler)
                s = site.handler(s, cpu_i, site, choice)  # _execute, inlined
            else:
                try:
                    s = site.fast(s, cpu_i, site, choice)  # type: ignore[misc]
                except Unusual:
                    s = site.handler(s, cpu_i, site, choice)
        except ArchFault as fault:
            return self.raise_fault(s, cpu_i, fault, ins)
        if shadow_before is _NO_SHADOW:
            return s  # no shadow to end at this boundary (the common case)
        m = s.machine
        cpu = m.cpus[cpu_i]
        after = after_instruction(cpu, shadow_before)
        return s if after is cpu else s.with_machine(m.with_cpu(cpu_i, after))

    def wild(self, s: SysState, cpu_i: int) -> SysState:
        """CPU cpu_i's pc is where the design has no code (a return to an address it
        does not name, and no `guest_code` catch-all): what runs there is unknown, so the
        CPU is lost (Run.WILD, final) and the machine records WILD_JUMP."""
        m = s.machine.incident(WILD_JUMP)
        return s.with_machine(m.with_cpu(cpu_i, m.cpus[cpu_i]._replace(run=Run.WILD)))

    def _debug_step(
        self, s: SysState, cpu_i: int, site: _Site, choice: int, shadow_before: Shadow,
        forced: bool = False,
    ) -> SysState:
        """`step` when debug exceptions may arise (model.x86.debug): an instruction
        breakpoint faults before the instruction; a data breakpoint it hits, the
        single-step trap, or the environment's `@fault(#DB)` (`forced`) leaves a #DB trap
        pending once it completes; a fault drops a #DB that MOV SS held back."""
        ins = site.ins
        assert ins is not None
        before = s.machine.cpus[cpu_i]
        bps = self._breakpoints
        if bps and debug.instruction_breakpoint_hit(
            bps, before.pc, self.layout.code_address(before.pc), before, shadow_before
        ):
            s = self.settle_flags(s, cpu_i)
            event = Event(Source.EXCEPTION, DB)
            bits = debug.instruction_breakpoint_bits(
                bps, before.pc, self.layout.code_address(before.pc)
            )
            return s.with_machine(
                deliver(self.platform, s.machine, cpu_i, event, before.pc, debug=bits)
            )
        self._accesses = [] if self._data_breakpoints else None
        try:
            s = self._execute(s, cpu_i, site, choice)
        except ArchFault as fault:
            if before.held_db:
                m = fault.machine if fault.machine is not None else s.machine
                held = debug.next_instruction_faulted(m.cpus[cpu_i], shadow_before)
                fault.machine = m.with_cpu(cpu_i, held)
            return self.raise_fault(s, cpu_i, fault, ins)
        finally:
            accesses, self._accesses = self._accesses, None
        m = s.machine
        cpu = m.cpus[cpu_i]
        if shadow_before is not Shadow.NONE:
            cpu = after_instruction(cpu, shadow_before)
        if ins.op == "int1":
            cpu = debug.icebp_in_shadow(cpu, shadow_before)
        kind = _STEP_KINDS.get(ins.op, debug.StepKind.ORDINARY)
        if ins.op == "sysenter" and before.fred:
            # FRED spec §5.2/§6: SYSENTER is an event whose single-step trap waits for the
            # ERET* of its frame (the SS word's bit 17), as SYSCALL's and INT n's do.
            kind = debug.StepKind.EVENT
        stepped = debug.single_step_trap(kind, before, cpu)
        hit = forced or stepped
        if accesses is not None and (not hit or cpu.fred):
            accesses.extend(_stack_accesses(ins, before.rsp, cpu.rsp))
            hit = hit or debug.data_breakpoint_hit(bps, accesses)
        if ins.op != "iret":  # IRET loads RF from the frame (SDM §17.3.1.1)
            cpu = debug.clear_resume_flag(cpu)
        if hit:
            # FRED's #DB event data: BS for the single step, B0-B3 for the data breakpoints
            # matched (the model keeps no DR6 for IDT delivery: debug.trap drops them). An
            # environment's `@fault(#DB)` (forced) names no breakpoint: no Bn bit.
            cause = debug.DR6_BS if stepped else 0
            if cpu.fred and accesses:
                cause |= debug.data_breakpoint_bits(bps, accesses)
            cpu = debug.trap(cpu, cause)
        return s if cpu is m.cpus[cpu_i] else s.with_machine(m.with_cpu(cpu_i, cpu))

    def _atomic(self, s: SysState, cpu_i: int) -> SysState:
        """`atomic { ... }`: the statements up to the closing brace as one step."""
        s = s.with_machine(self._advance(s.machine, cpu_i))
        while True:
            cpu = s.machine.cpus[cpu_i]
            site = self._site(cpu.pc)
            ins = site.ins
            if ins is None or ins.op == "c.atomic_end":
                return s.with_machine(s.machine.with_cpu(cpu_i, cpu.with_pc(site.next_pc)))
            try:
                s = self._execute(s, cpu_i, site, 0)
            except ArchFault as fault:
                return self.raise_fault(s, cpu_i, fault, ins)

    def settle_flags(self, s: SysState, cpu_i: int) -> SysState:
        """Before an event interrupts CPU cpu_i, give its arithmetic flags real bits: a
        symbolic compare's flags are kept as a record (for the Jcc that reads them) and
        an interrupt frame must save, and IRET restore, what they actually are. Each flag
        is decided (the state splits where the compare could go either way)."""
        lazy = s.lazy[cpu_i] if s.lazy else None
        if lazy is None:
            return s
        m = s.machine
        cpu = m.cpus[cpu_i]
        flags = cpu.rflags if isinstance(cpu.rflags, int) else 0
        flags &= ~alu.STATUS
        try:
            for cc, bit in (("e", ZF), ("s", SF), ("b", CF), ("o", OF_FLAG)):
                if decide(alu.lazy_condition(cc, lazy)):
                    flags |= bit
        except alu.UnknownFlag:
            raise InputError(
                "the flags of a symbolic IMUL, ADC/SBB with CF set or shift by a symbolic "
                "count are saved by an event here; CF and OF are not modelled for them",
                self.layout.design.path, 1,
            ) from None
        s = _set_lazy(s, cpu_i, None)
        return s.with_machine(m.with_cpu(cpu_i, cpu._replace(rflags=flags)))

    def raise_fault(self, s: SysState, cpu_i: int, fault: ArchFault, ins: Instr) -> SysState:
        """Deliver an exception raised by `ins` (faults save its address, traps the next)."""
        s = self.settle_flags(s, cpu_i)
        m = fault.machine if fault.machine is not None else s.machine
        pc: Value = m.cpus[cpu_i].pc
        if fault.rip is not None:
            pc = fault.rip  # the fault is on another RIP (AMD's SYSRET #GP at CPL 3)
        elif fault.vector in TRAPS:
            pc = self._site(m.cpus[cpu_i].pc).next_pc
        event = Event(Source.EXCEPTION, fault.vector, fault.error_code)
        cr2 = fred.fault_address(fault)
        return s.with_machine(deliver(self.platform, m, cpu_i, event, pc, cr2=cr2))

    def environment_fault(self, s: SysState, cpu_i: int) -> SysState:
        """The environment makes a step marked `@fault(#X)` raise #X instead of running."""
        cpu = s.machine.cpus[cpu_i]
        ins = self.instr_at(cpu.pc)
        assert ins is not None and ins.fault is not None
        error = 0 if ins.fault in ERROR_CODE_VECTORS else None
        if ins.fault == DB and ins.op != "c.atomic_begin":
            # A data breakpoint the step hits: a trap once the step completes, held past
            # the next instruction when the step is MOV SS (SDM §17.3.1.2, §6.8.3).
            site = self._site(cpu.pc)
            return self._debug_step(s, cpu_i, site, 0, cpu.shadow, forced=True)
        if ins.op == "iret":
            # every IRET unblocks NMIs, even one that faults (`iretq @fault(#GP)`, #SS, ...)
            unblocked = insn.iret_faulting(s.machine, cpu_i).machine
            fault = ArchFault(ins.fault, error, "IRET faults", machine=unblocked)
            return self.raise_fault(s, cpu_i, fault, ins)
        return self.raise_fault(s, cpu_i, ArchFault(ins.fault, error), ins)

    def _advance(self, m: Machine, cpu_i: int) -> Machine:
        cpu = m.cpus[cpu_i]
        site = self._sites.get(cpu.pc) or self._site(cpu.pc)
        return m.with_cpu(cpu_i, cpu.with_pc(site.next_pc))

    def _next(self, s: SysState, cpu_i: int) -> SysState:
        return s.with_machine(self._advance(s.machine, cpu_i))

    def _goto(self, m: Machine, cpu_i: int, site: _Site) -> Machine:
        assert site.goto is not None
        return m.with_cpu(cpu_i, m.cpus[cpu_i].with_pc(site.goto))

    def _execute(self, s: SysState, cpu_i: int, site: _Site, choice: int) -> SysState:
        ins = site.ins
        assert ins is not None
        if site.init and s.init_freed:
            # The bytes there now belong to something else: model them as undefined.
            m = s.machine.incident(FREED_CODE)
            raise ArchFault(UD, None, "executing freed init code", machine=m)
        if site.handler is None:
            raise self._error(f"no semantics for {ins.op}", ins)
        return site.handler(s, cpu_i, site, choice)

    # -- flags -----------------------------------------------------------------------------------
    def _concrete_flags(self, s: SysState, cpu_i: int) -> tuple[SysState, int]:
        """RFLAGS as bits: a lazy record settled, a symbolic RFLAGS (a guest's R11 after
        SYSRET) decided flag by flag."""
        if s.lazy and s.lazy[cpu_i] is not None:
            s = self.settle_flags(s, cpu_i)
        flags = s.machine.cpus[cpu_i].rflags
        if isinstance(flags, int):
            return s, flags
        bits = 0
        for bit in (ZF, SF, *(b for _, b in FLAG_NAMES)):
            if decide(sym.ne(sym.band(flags, bit), 0)):
                bits |= bit
        return s, bits | 2

    def _condition(self, s: SysState, cpu_i: int, cc: str, ins: Instr) -> tuple[SysState, bool]:
        lazy = s.lazy[cpu_i] if s.lazy else None
        if lazy is not None:
            try:
                return s, decide(alu.lazy_condition(cc, lazy))
            except alu.UnknownFlag:
                raise self._error(
                    "this condition reads CF or OF after a symbolic IMUL, ADC/SBB with CF set "
                    "or a shift by a "
                    "symbolic count, which the model does not compute", ins) from None
        s, flags = self._concrete_flags(s, cpu_i)
        return s, alu.condition(cc, flags)

    def _with_flags(self, s: SysState, cpu_i: int, flags: int) -> SysState:
        m = s.machine
        cpu = m.cpus[cpu_i]
        return s.with_machine(m.with_cpu(cpu_i, cpu._replace(rflags=flags)))

    # -- instruction handlers (isa.Insn.semantics X is _i_X) -----------------------------------
    def _i_push(self, s: SysState, cpu_i: int, site: _Site, choice: int) -> SysState:
        ins = site.ins
        assert ins is not None
        value = self.read(s, cpu_i, ins.args[0], ins)
        s = self._foreign_gs(s, cpu_i, ins.args[0])
        return s.with_machine(self._advance(push(self.platform, s.machine, cpu_i, value), cpu_i))

    def _i_pop(self, s: SysState, cpu_i: int, site: _Site, choice: int) -> SysState:
        ins = site.ins
        assert ins is not None
        m, value = pop(self.platform, s.machine, cpu_i)
        s = self.write(s.with_machine(m), cpu_i, ins.args[0], value, ins)
        return self._next(s, cpu_i)

    def _i_mov(self, s: SysState, cpu_i: int, site: _Site, choice: int) -> SysState:
        ins = site.ins
        assert ins is not None
        src, dst = ins.args
        value = self.read(s, cpu_i, src, ins)
        if ins.width < 64 and isinstance(src, Imm):
            value = sym.band(self._bv(value, ins), alu.mask(ins.width))
        s = self._foreign_gs(self._foreign_gs(s, cpu_i, src), cpu_i, dst)
        return self._next(self.write(s, cpu_i, dst, value, ins, ins.width), cpu_i)

    def _i_extend(self, s: SysState, cpu_i: int, site: _Site, choice: int) -> SysState:
        """MOVZX / MOVSX / MOVSXD: alu.extend of the source's src_width bits."""
        ins = site.ins
        assert ins is not None
        src, dst = ins.args
        v = self._bv(self.read(s, cpu_i, src, ins), ins)
        signed = ins.op == "movsx"
        if isinstance(v, int):
            value: Value = alu.extend(v, ins.src_width, ins.width, signed)
        else:
            low = sym.band(v, alu.mask(ins.src_width))
            value = sym.band(sym.sign_extend(low, ins.src_width) if signed else low,
                             alu.mask(ins.width))
        s = self._foreign_gs(s, cpu_i, src)
        return self._next(self.write(s, cpu_i, dst, value, ins, ins.width), cpu_i)

    def _i_lea(self, s: SysState, cpu_i: int, site: _Site, choice: int) -> SysState:
        ins = site.ins
        assert ins is not None
        src, dst = ins.args
        if isinstance(src, Mem):
            # LEA computes the offset only: a segment base is not added.
            value: Value = self._address(s, cpu_i, replace(src, seg="") if src.seg else src, ins)
        else:
            value = self.read(s, cpu_i, src, ins)
        if ins.width == 32:
            value = sym.band(self._bv(value, ins), 0xFFFF_FFFF)
        return self._next(self.write(s, cpu_i, dst, value, ins), cpu_i)

    def _i_xchg(self, s: SysState, cpu_i: int, site: _Site, choice: int) -> SysState:
        ins = site.ins
        assert ins is not None
        a, b = ins.args
        va, vb = self.read(s, cpu_i, a, ins), self.read(s, cpu_i, b, ins)
        s = self.write(s, cpu_i, a, vb, ins, ins.width)
        return self._next(self.write(s, cpu_i, b, va, ins, ins.width), cpu_i)

    def _i_alu(self, s: SysState, cpu_i: int, site: _Site, choice: int) -> SysState:
        """ADD SUB AND OR XOR CMP TEST INC DEC NEG NOT SHL SHR SAR IMUL: model.x86.alu
        computes the result and the flags; a symbolic operand leaves a Lazy record."""
        ins = site.ins
        assert ins is not None
        op, a, w = ins.op, ins.args, ins.width
        if len(a) == 3:  # imul $imm, src, dst
            src, x_op, dst = a[0], a[1], a[2]
        elif len(a) == 2:
            src, x_op, dst = a[0], a[1], a[1]
        else:  # inc dec neg not, and a shift by one
            src, x_op, dst = None, a[0], a[0]
        xv = self._bv(self.read(s, cpu_i, x_op, ins), ins)
        yv: int | Term = 1 if src is None else self._bv(self.read(s, cpu_i, src, ins), ins)
        for o in a:
            s = self._foreign_gs(s, cpu_i, o)
        stores = op not in ("cmp", "test")
        carry = 0
        if op in alu.CARRY_IN:  # ADC/SBB read CF: settle the flags into bits first
            lazy = s.lazy[cpu_i] if s.lazy else None
            if lazy is not None:
                try:
                    alu.lazy_condition("b", lazy)
                except alu.UnknownFlag:
                    raise self._error(
                        f"{op} reads CF after a symbolic IMUL, ADC/SBB with CF set or shift by "
                        "a symbolic count, which the model does not compute", ins) from None
            s, bits = self._concrete_flags(s, cpu_i)
            s = _set_lazy(self._with_flags(s, cpu_i, bits), cpu_i, None)
            carry = 1 if bits & CF else 0
        if isinstance(xv, Term) or isinstance(yv, Term):
            r_sym = alu.symbolic_result(op if op != "cmp" else "sub", xv, yv, w, carry)
            old = s.machine.cpus[cpu_i].rflags
            old_cf = sym.ne(sym.band(old, CF), 0) if isinstance(old, Term) else bool(old & CF)
            if s.lazy and s.lazy[cpu_i] is not None and op in ("inc", "dec"):
                old_cf = alu.lazy_condition("b", s.lazy[cpu_i])
            record = alu.symbolic_flags(op, xv, yv, r_sym, w, old_cf)
            if stores:
                s = self.write(s, cpu_i, dst, r_sym, ins, w)
            if record is not alu.KEEP:
                s = _set_lazy(s, cpu_i, record)
            return self._next(s, cpu_i)
        if op == "not":
            r, _ = alu.arith(op, xv, yv, w, 0)
            return self._next(self.write(s, cpu_i, dst, r, ins, w), cpu_i)
        # The flags before matter only to INC/DEC (CF), ADC/SBB (CF, settled above) and a
        # shift by zero (all): only then is a symbolic record decided into bits; otherwise
        # it is overwritten.
        keeps = op in ("inc", "dec", *alu.CARRY_IN) or (
            op in alu.SHIFTS and yv & (63 if w == 64 else 31) == 0
        )
        if not keeps:
            s = _set_lazy(s, cpu_i, None)
        s, flags = self._concrete_flags(s, cpu_i)
        s = _set_lazy(s, cpu_i, None)
        r, flags = alu.arith(op, xv, yv, w, flags)
        if stores:
            s = self.write(s, cpu_i, dst, r, ins, w)
        return self._next(self._with_flags(s, cpu_i, flags), cpu_i)

    def _i_bt(self, s: SysState, cpu_i: int, site: _Site, choice: int) -> SysState:
        ins = site.ins
        assert ins is not None
        offset = self._int(self.read(s, cpu_i, ins.args[0], ins), ins)
        base = self._bv(self.read(s, cpu_i, ins.args[1], ins), ins)
        s, flags = self._concrete_flags(s, cpu_i)
        s = _set_lazy(s, cpu_i, None)
        if isinstance(base, Term):
            bit = decide(sym.ne(sym.band(sym.lshr(base, offset % ins.width), 1), 0))
            flags = (flags & ~CF) | (CF if bit else 0)
        else:
            flags = alu.bit_test(base, offset, ins.width, flags)
        return self._next(self._with_flags(s, cpu_i, flags), cpu_i)

    def _i_jcc(self, s: SysState, cpu_i: int, site: _Site, choice: int) -> SysState:
        ins = site.ins
        assert ins is not None
        s, taken = self._condition(s, cpu_i, ins.cc, ins)
        return s.with_machine(
            self._goto(s.machine, cpu_i, site) if taken else self._advance(s.machine, cpu_i)
        )

    def _i_setcc(self, s: SysState, cpu_i: int, site: _Site, choice: int) -> SysState:
        ins = site.ins
        assert ins is not None
        s, holds = self._condition(s, cpu_i, ins.cc, ins)
        return self._next(self.write(s, cpu_i, ins.args[0], int(holds), ins, 8), cpu_i)

    def _i_cmovcc(self, s: SysState, cpu_i: int, site: _Site, choice: int) -> SysState:
        ins = site.ins
        assert ins is not None
        src, dst = ins.args
        value = self.read(s, cpu_i, src, ins)  # the source is read (and may fault) either way
        s, holds = self._condition(s, cpu_i, ins.cc, ins)
        if not holds:
            if ins.width != 32:
                return self._next(s, cpu_i)
            value = self.read(s, cpu_i, dst, ins)  # a 32-bit CMOVcc zero-extends anyway
        return self._next(self.write(s, cpu_i, dst, value, ins, ins.width), cpu_i)

    def _branch_target(self, s: SysState, cpu_i: int, value: Value, ins: Instr) -> CodeAddr:
        """Where an indirect jump or call goes: a code address, or the code at a linear
        address; anything else is a branch into memory the design has no code for."""
        if isinstance(value, CodeAddr):
            return value
        if isinstance(value, int):
            if not is_canonical(value):
                raise ArchFault(GP, 0, f"indirect branch to non-canonical {value:#x}")
            found = self.layout.code_at(value)
            if found is not None:
                return found
        shown = f"{value:#x}" if isinstance(value, int) else repr(value)
        m = s.machine.incident(WILD_BRANCH)
        # An instruction fetch from a page with no code of the design's: #PF (I/D set).
        raise ArchFault(
            PF, 0x10, f"indirect branch to {shown}", machine=m, address=value
        )

    def _i_jmp(self, s: SysState, cpu_i: int, site: _Site, choice: int) -> SysState:
        ins = site.ins
        assert ins is not None
        target = ins.args[0]
        if isinstance(target, Indirect):
            pc = self._branch_target(s, cpu_i, self.read(s, cpu_i, target, ins), ins)
            m = s.machine
            return s.with_machine(m.with_cpu(cpu_i, m.cpus[cpu_i].with_pc(pc)))
        return s.with_machine(self._goto(s.machine, cpu_i, site))

    def _i_call(self, s: SysState, cpu_i: int, site: _Site, choice: int) -> SysState:
        ins = site.ins
        assert ins is not None
        target = ins.args[0]
        if isinstance(target, Indirect):
            pc = self._branch_target(s, cpu_i, self.read(s, cpu_i, target, ins), ins)
            m = push(self.platform, s.machine, cpu_i, site.next_pc)
            return s.with_machine(m.with_cpu(cpu_i, m.cpus[cpu_i].with_pc(pc)))
        m = push(self.platform, s.machine, cpu_i, site.next_pc)
        return s.with_machine(self._goto(m, cpu_i, site))

    def _i_ret(self, s: SysState, cpu_i: int, site: _Site, choice: int) -> SysState:
        m, value = pop(self.platform, s.machine, cpu_i)
        if isinstance(value, int):
            value = self.layout.code_at(value) or value
        if not isinstance(value, CodeAddr):
            raise ArchFault(GP, 0, f"RET to {value!r}", machine=None)
        return s.with_machine(m.with_cpu(cpu_i, m.cpus[cpu_i].with_pc(value)))

    def _i_nop(self, s: SysState, cpu_i: int, site: _Site, choice: int) -> SysState:
        return self._next(s, cpu_i)

    def _i_pushf(self, s: SysState, cpu_i: int, site: _Site, choice: int) -> SysState:
        if s.lazy and s.lazy[cpu_i] is not None:
            s = self.settle_flags(s, cpu_i)
        flags = s.machine.cpus[cpu_i].rflags
        return s.with_machine(self._advance(push(self.platform, s.machine, cpu_i, flags), cpu_i))

    def _i_popf(self, s: SysState, cpu_i: int, site: _Site, choice: int) -> SysState:
        ins = site.ins
        assert ins is not None
        m, value = pop(self.platform, s.machine, cpu_i)
        c = m.cpus[cpu_i]
        s = _set_lazy(s, cpu_i, None)
        # IF only when CPL <= IOPL, IOPL only at CPL 0 (SDM Vol. 2 POPF).
        flags = insn.popped_flags(c, self._int(value, ins) | 2)
        return self._next(s.with_machine(m.with_cpu(cpu_i, c._replace(rflags=flags))), cpu_i)

    def _i_cli(self, s: SysState, cpu_i: int, site: _Site, choice: int) -> SysState:
        return s.with_machine(self._advance(insn.cli(s.machine, cpu_i), cpu_i))

    def _i_sti(self, s: SysState, cpu_i: int, site: _Site, choice: int) -> SysState:
        return s.with_machine(self._advance(insn.sti(s.machine, cpu_i), cpu_i))

    def _i_cld(self, s: SysState, cpu_i: int, site: _Site, choice: int) -> SysState:
        return s.with_machine(self._advance(insn.set_direction(s.machine, cpu_i, False), cpu_i))

    def _i_std(self, s: SysState, cpu_i: int, site: _Site, choice: int) -> SysState:
        return s.with_machine(self._advance(insn.set_direction(s.machine, cpu_i, True), cpu_i))

    def _i_clac(self, s: SysState, cpu_i: int, site: _Site, choice: int) -> SysState:
        return s.with_machine(self._advance(insn.set_ac(s.machine, cpu_i, False), cpu_i))

    def _i_stac(self, s: SysState, cpu_i: int, site: _Site, choice: int) -> SysState:
        return s.with_machine(self._advance(insn.set_ac(s.machine, cpu_i, True), cpu_i))

    def _i_hlt(self, s: SysState, cpu_i: int, site: _Site, choice: int) -> SysState:
        return s.with_machine(insn.hlt(self._advance(s.machine, cpu_i), cpu_i))

    def _i_iret(self, s: SysState, cpu_i: int, site: _Site, choice: int) -> SysState:
        ins = site.ins
        assert ins is not None
        size = 4 if ins.width == 32 else 8
        return s.with_machine(
            insn.iret(self.platform, s.machine, cpu_i, size, self.layout.code_at)
        )

    def _i_eret(self, s: SysState, cpu_i: int, site: _Site, choice: int) -> SysState:
        """ERETS / ERETU (model.x86.fred.erets / eretu, FRED spec §6): the six words from
        RSP (error code, RIP, CS, RFLAGS, RSP, SS) are read, checked and popped, the frame
        there is consumed, and the 64 bytes up to the event data's end forgotten."""
        ins = site.ins
        assert ins is not None
        m = s.machine
        cpu = m.cpus[cpu_i]
        state = fred.FredState(cpu.fred, cpu.csl)
        refused = fred.eret_precondition_faults(cpu, state)
        if refused:
            vector = refused[0] if len(refused) == 1 or oracle("eret-cpl") else refused[1]
            raise ArchFault(vector, 0 if vector == GP else None, f"{ins.op} refused")
        rsp = cpu.rsp
        if isinstance(rsp, CodeAddr):
            raise ArchFault(SS_FAULT, 0, f"{ins.op} with RSP holding a code address")
        for k in range(6):
            check_access(self.platform, sym.add(rsp, k * WORD), 0)
        words = [read(m, sym.add(rsp, k * WORD)) for k in range(6)]
        code_at = self.layout.code_at
        if ins.op == "erets":
            result = fred.erets(
                cpu, state, words, cs=segments.cs_of(self.platform, cpu),
                ss=segments.ss_of(self.platform, cpu), code_at=code_at,
            )
        else:
            result = fred.eretu(cpu, state, words, code_at=code_at)
        rip_slot = sym.add(rsp, fred.OFF_RIP)
        frames = tuple(f for f in m.frames if not (f.cpu == cpu_i and f.lo == rip_slot))
        m = m._replace(frames=frames)
        if isinstance(rsp, int):
            m = forget(m, rsp, rsp + fred.FRAME_BYTES)
        new = result.cpu._replace(csl=result.state.csl, run=Run.RUNNING)
        if ins.op == "eretu":
            cs3 = words[2]
            ss3 = words[5]
            new = new._replace(
                cs=cs3 & 0xFFFF if isinstance(cs3, int) else None,
                ss=ss3 & 0xFFFF if isinstance(ss3, int) else None,
            )
        if result.pending_db:  # the single-step trap of the event's instruction (§6)
            new = new._replace(held_db=True, db_cause=new.db_cause | debug.DR6_BS)
        m = m.with_cpu(cpu_i, new)
        if new.cpl == 3:
            m = insn.returned_to_guest(m, cpu_i)
        return s.with_machine(m)

    def _i_lkgs(self, s: SysState, cpu_i: int, site: _Site, choice: int) -> SysState:
        """LKGS (FRED spec §7): IA32_KERNEL_GS_BASE := the base of the descriptor the
        16-bit selector operand names (a null selector: 0); #GP(selector) when the
        selector is beyond the design's table or names no data or code descriptor."""
        ins = site.ins
        assert ins is not None
        cpu = s.machine.cpus[cpu_i]
        selector = self._int(self.read(s, cpu_i, ins.args[0], ins), ins) & 0xFFFF
        if selector & ~3 == 0:
            base = 0
        else:
            gdt, ldt = segments.tables(self.platform, cpu)
            table = ldt if selector & 4 else gdt
            d = table.entry(selector >> 3) if table is not None else None
            if d is None or d.kind == "system":
                raise ArchFault(GP, selector & ~3, "LKGS of a selector with no descriptor")
            base = d.base
        cpu = fred.lkgs(cpu, base)
        return self._next(s.with_machine(s.machine.with_cpu(cpu_i, cpu)), cpu_i)

    def _i_sysret(self, s: SysState, cpu_i: int, site: _Site, choice: int) -> SysState:
        ins = site.ins
        assert ins is not None
        size = 4 if ins.width == 32 else 8
        if s.machine.cpus[cpu_i].fred:
            raise ArchFault(UD, None, "SYSRET with CR4.FRED set")
        return s.with_machine(
            insn.sysret(self.platform, s.machine, cpu_i, size, self.layout.code_at)
        )

    def _i_swapgs(self, s: SysState, cpu_i: int, site: _Site, choice: int) -> SysState:
        if s.machine.cpus[cpu_i].fred:
            raise ArchFault(UD, None, "SWAPGS with CR4.FRED set")
        return s.with_machine(self._advance(insn.swapgs(s.machine, cpu_i), cpu_i))

    def _fred_event(
        self, s: SysState, cpu_i: int, site: _Site, make: Callable[[int], fred.FredEvent],
    ) -> SysState:
        """SYSCALL or SYSENTER under FRED: an event on a FRED stack (`make` builds it from
        the instruction's length, as the frame records it), returning after the
        instruction."""
        ins = site.ins
        assert ins is not None
        event = make(INSTRUCTION_LENGTH[ins.op] + ins.prefixes)
        cpu = s.machine.cpus[cpu_i]
        return s.with_machine(fred.deliver_event(
            self.platform, s.machine, cpu_i, event, site.next_pc, cpu.pc
        ))

    def _i_syscall(self, s: SysState, cpu_i: int, site: _Site, choice: int) -> SysState:
        m = s.machine
        cpu = m.cpus[cpu_i]
        if cpu.fred:
            # FRED spec §5: SYSCALL is an event (type OTHER, vector 1) on a FRED stack;
            # EFER.SCE still enables it (SDM Vol. 2 SYSCALL's #UD).
            if not insn.sce_enabled(self.platform, cpu):
                raise ArchFault(UD, None, "SYSCALL with EFER.SCE = 0")
            return self._fred_event(s, cpu_i, site, fred.syscall_event)
        return s.with_machine(insn.syscall(self.platform, s.machine, cpu_i, site.next_pc))

    def _sysenter_msrs(self, cpu_i: int) -> tuple[CodeAddr | None, Value]:
        """IA32_SYSENTER_EIP and _ESP as the design's `sysenter` line sets them."""
        target = self.layout.design.sysenter
        if target is None:
            return None, 0
        routine, stack = target
        return CodeAddr(routine, 0), self.platform.region(self.layout.resolve(stack, cpu_i)).top

    def _i_sysenter(self, s: SysState, cpu_i: int, site: _Site, choice: int) -> SysState:
        m = s.machine
        cpu = m.cpus[cpu_i]
        if cpu.fred:
            # FRED spec §5: SYSENTER is an event (type OTHER, vector 2), whatever the
            # IA32_SYSENTER_* MSRs hold.
            return self._fred_event(s, cpu_i, site, fred.sysenter_event)
        eip, esp = self._sysenter_msrs(cpu_i)
        written = dict(m.cpus[cpu_i].msrs)
        if msr.IA32_SYSENTER_EIP in written:
            value = written[msr.IA32_SYSENTER_EIP]
            eip = value if isinstance(value, CodeAddr) else None
            if eip is None:
                raise ArchFault(UD, None, "SYSENTER to an address with no code of the design's")
        esp = written.get(msr.IA32_SYSENTER_ESP, esp)
        if written.get(msr.IA32_SYSENTER_CS, 1) == 0:
            eip = None
        return s.with_machine(insn.sysenter(self.platform, m, cpu_i, eip, esp))

    def _msr_defaults(self, cpu_i: int) -> dict[int, Value]:
        d = self.layout.design
        eip, esp = self._sysenter_msrs(cpu_i)
        efer = 0xD00 | (1 if d.lstar else 0)  # LME, LMA, NXE; SCE when SYSCALL is enabled
        return {
            msr.IA32_LSTAR: CodeAddr(d.lstar, 0) if d.lstar else 0,
            msr.IA32_FMASK: self.platform.fmask,
            msr.IA32_EFER: efer,
            msr.IA32_STAR: insn.platform_star(self.platform),
            msr.IA32_SYSENTER_CS: 0xE008 if eip is not None else 0,
            msr.IA32_SYSENTER_EIP: eip if eip is not None else 0,
            msr.IA32_SYSENTER_ESP: esp,
            **(dict(self.platform.fred_msrs[cpu_i]) if self.platform.fred_msrs else {}),
        }

    def _i_rdmsr(self, s: SysState, cpu_i: int, site: _Site, choice: int) -> SysState:
        ins = site.ins
        assert ins is not None
        m = s.machine
        cpu = m.cpus[cpu_i]
        index = self._bv(cpu.reg("rcx"), ins)
        ecx = index & 0xFFFF_FFFF if isinstance(index, int) else None
        value = msr.rdmsr(cpu, ecx, self._msr_defaults(cpu_i), self.layout.percpu_area(cpu_i))
        edx, eax = msr.split_edx_eax(self._bv(value, ins))
        cpu = cpu.with_reg("rdx", edx).with_reg("rax", eax)
        return self._next(s.with_machine(m.with_cpu(cpu_i, cpu)), cpu_i)

    def _i_wrmsr(self, s: SysState, cpu_i: int, site: _Site, choice: int) -> SysState:
        ins = site.ins
        assert ins is not None
        m = s.machine
        cpu = m.cpus[cpu_i]
        index = self._bv(cpu.reg("rcx"), ins)
        ecx = index & 0xFFFF_FFFF if isinstance(index, int) else None
        entry_points = (msr.IA32_LSTAR, msr.IA32_SYSENTER_EIP, msr.IA32_FRED_CONFIG)
        value: Value
        rax = cpu.reg("rax")
        if ecx in entry_points and isinstance(rax, CodeAddr):
            # A label's address (`leaq entry(%rip), %rax`): the model's code addresses have
            # no bits to split, so EDX is taken to hold the same address's high half.
            value = rax
        else:
            value = msr.join_edx_eax(self._bv(cpu.reg("rdx"), ins), self._bv(rax, ins))
        if ecx in entry_points and isinstance(value, int):
            value = self.layout.code_at(value) or value  # an entry point: code if it is
        if ecx in msr.FRED_MSR_NAMES and m.cpus[cpu_i].cpl == 0 and fred.wrmsr_faults(
            ecx, value
        ):
            raise ArchFault(GP, 0, f"WRMSR of {msr.MSR_NAMES[ecx]} with a bad value")
        m = msr.wrmsr(m, cpu_i, ecx, value, self.layout.percpu_area(cpu_i))
        return self._next(s.with_machine(m), cpu_i)

    def _i_verw(self, s: SysState, cpu_i: int, site: _Site, choice: int) -> SysState:
        """VERW: ZF := the selector verifies as writable (model.x86.segments.verw_ok). A
        symbolic selector is split over the declared entries (segments.concrete_selector);
        the undeclared rest, like a code address, does not verify."""
        ins = site.ins
        assert ins is not None
        value = self.read(s, cpu_i, ins.args[0], ins)  # the operand is read (and may fault)
        cpu = s.machine.cpus[cpu_i]
        gdt, ldt = segments.tables(self.platform, cpu)
        selector = (
            segments.concrete_selector(value, gdt, ldt) if not isinstance(value, CodeAddr)
            else None
        )
        ok = isinstance(selector, int) and segments.verw_ok(gdt, ldt, cpu.cpl, selector)
        s, flags = self._concrete_flags(s, cpu_i)
        s = _set_lazy(s, cpu_i, None)
        flags = (flags | ZF) if ok else (flags & ~ZF)
        return self._next(self._with_flags(s, cpu_i, flags), cpu_i)

    def _i_lss(self, s: SysState, cpu_i: int, site: _Site, choice: int) -> SysState:
        """LSS m16:64 (SDM Vol. 2 LDS/LES/LFS/LGS/LSS): RSP := the offset, SS := the
        selector after it, checked as MOV SS checks it (segments.mov_to_ss: the same
        64-BIT_MODE "IF SS is loaded" pseudocode), before either register changes. Unlike
        MOV SS and POP SS it opens no interrupt shadow."""
        ins = site.ins
        assert ins is not None
        src = ins.args[0]
        assert isinstance(src, (Mem, Abs))
        address = self._address(s, cpu_i, src, ins)
        value = self.load(s, cpu_i, address, WORD, ins)
        after = sym.band(sym.add(address, WORD), MASK64)
        # A symbolic address is read a word at a time (narrow symbolic reads are not
        # modelled): the selector is its low 2 bytes.
        selector = (self.load(s, cpu_i, after, 2, ins) if isinstance(after, int)
                    else sym.band(self._bv(self.load(s, cpu_i, after, WORD, ins), ins), 0xFFFF))
        m = segments.mov_to_ss(self.platform, s.machine, cpu_i, selector,
                               self.platform.mode64)
        return self._next(s.with_machine(move_rsp(self.platform, m, cpu_i, value)), cpu_i)

    def _i_ud2(self, s: SysState, cpu_i: int, site: _Site, choice: int) -> SysState:
        raise ArchFault(UD, None, "UD2")

    def _i_softint(self, s: SysState, cpu_i: int, site: _Site, choice: int) -> SysState:
        """INT n / INT3 / INTO / INT1: trap-like, the frame saves the next instruction."""
        m = s.machine
        cpu = m.cpus[cpu_i]
        platform = self.platform
        ins = site.ins
        assert ins is not None
        nxt = site.next_pc
        if ins.op == "int":
            vector = sym.band(self._bv(self.read(s, cpu_i, ins.args[0], ins), ins), 0xFF)
            # A symbolic vector (a guest's INT $N): delivery decides the gate lookup.
            event = Event(Source.INT_N, cast(int, vector))
        elif ins.op == "int3":
            event = Event(Source.INT3, BP)
        elif ins.op == "into":
            if self.routines[cpu.pc.routine].compat:
                platform = self.compat_platform
            if not platform.mode64:
                s, flags = self._concrete_flags(s, cpu_i)
                if not flags & OF_FLAG:
                    return self._next(s, cpu_i)
                m = s.machine
            event = Event(Source.INTO, 4)
        else:
            event = Event(Source.INT1, DB)
        return s.with_machine(deliver(
            platform, m, cpu_i, event, nxt, instruction_pc=cpu.pc,
            instruction_length=INSTRUCTION_LENGTH[ins.op] + ins.prefixes,
        ))

    def _i_lidt(self, s: SysState, cpu_i: int, site: _Site, choice: int) -> SysState:
        ins = site.ins
        assert ins is not None
        a = ins.args[0]
        name = a.name if isinstance(a, Name) else ""
        table = None if name == "empty" else self.layout.resolve(name, cpu_i)
        return s.with_machine(self._advance(insn.lidt(s.machine, cpu_i, table), cpu_i))

    def _i_lgdt(self, s: SysState, cpu_i: int, site: _Site, choice: int) -> SysState:
        ins = site.ins
        assert ins is not None and isinstance(ins.args[0], Name)
        return s.with_machine(self._advance(insn.lgdt(s.machine, cpu_i, ins.args[0].name), cpu_i))

    def _i_ltr(self, s: SysState, cpu_i: int, site: _Site, choice: int) -> SysState:
        ins = site.ins
        assert ins is not None and isinstance(ins.args[0], Name)
        tss = self.layout.resolve(ins.args[0].name, cpu_i)
        return s.with_machine(self._advance(insn.ltr(s.machine, cpu_i, tss), cpu_i))

    def _i_mov_cr(self, s: SysState, cpu_i: int, site: _Site, choice: int) -> SysState:
        """MOV to/from CR3 (model.x86.msr.mov_to_cr3 / mov_from_cr3) and CR4
        (model.x86.fred.write_cr4 / cr4_value)."""
        ins = site.ins
        assert ins is not None
        src, dst = ins.args
        m = s.machine
        if isinstance(dst, Reg) and dst.name == "cr4":
            try:
                cpu = fred.write_cr4(
                    m.cpus[cpu_i], self._bv(self.read(s, cpu_i, src, ins), ins),
                    self.platform.smap,
                )
            except ValueError as e:
                raise self._error(str(e), ins) from None
            return self._next(s.with_machine(m.with_cpu(cpu_i, cpu)), cpu_i)
        if isinstance(src, Reg) and src.name == "cr4":
            value4 = fred.cr4_value(m.cpus[cpu_i], self.platform.smap)
            return self._next(self.write(s, cpu_i, dst, value4, ins), cpu_i)
        if isinstance(dst, Reg) and dst.name == "cr3":
            m = msr.mov_to_cr3(m, cpu_i, self.read(s, cpu_i, src, ins))
            return self._next(s.with_machine(m), cpu_i)
        value = msr.mov_from_cr3(m.cpus[cpu_i])
        if value is None:
            raise self._error("a read of %cr3 before the design writes it: the model has no "
                              "initial CR3", ins)
        return self._next(self.write(s, cpu_i, dst, value, ins), cpu_i)

    def _i_mov_ss(self, s: SysState, cpu_i: int, site: _Site, choice: int) -> SysState:
        """MOV SS / POP SS (SDM §6.8.3): the shadow. POP SS is #UD in 64-bit mode (SDM Vol.
        2 POP), so only compatibility-mode (GUEST32) code pops SS."""
        ins = site.ins
        assert ins is not None
        m = s.machine
        compat = self.routines[m.cpus[cpu_i].pc.routine].compat
        if len(ins.args) == 1:  # pop %ss
            if not compat:
                raise ArchFault(UD, None, "POP SS in 64-bit mode")
            m, value = pop(self.platform, m, cpu_i)
        else:
            value = self.read(s, cpu_i, ins.args[0], ins)
        # The selector is checked against its descriptor and loaded (SDM Vol. 2 MOV, POP).
        m = segments.mov_to_ss(self.platform, m, cpu_i, self._bv(value, ins), not compat)
        return s.with_machine(insn.mov_ss(self._advance(m, cpu_i), cpu_i))

    def _i_movsq(self, s: SysState, cpu_i: int, site: _Site, choice: int) -> SysState:
        ins = site.ins
        assert ins is not None
        m = s.machine
        cpu = m.cpus[cpu_i]
        count = self._int(cpu.reg("rcx"), ins)
        where = f"in `rep movsq` with RCX={count:#x} at {ins.loc.file}:{ins.loc.line}"

        def tick(done: int) -> None:
            # A long copy honours --timeout and --max-memory inside the step: the
            # exploration stops `incomplete` with this reason, never hangs.
            limits.check_budget(f"{where} after {done} words")

        src = self._int(cpu.reg("rsi"), ins)
        dst = self._int(cpu.reg("rdi"), ins)
        m = copy_words(self.platform, m, cpu_i, src, dst, count, tick, MAX_REP_WORDS)
        c = m.cpus[cpu_i].with_reg("rcx", 0).with_reg("rsi", src + count * WORD)
        c = c.with_reg("rdi", dst + count * WORD)
        return s.with_machine(self._advance(m.with_cpu(cpu_i, c), cpu_i))

    def _i_choose(self, s: SysState, cpu_i: int, site: _Site, choice: int) -> SysState:
        ins = site.ins
        assert ins is not None
        value = self.read(s, cpu_i, ins.args[1 + choice], ins)
        return self._next(self.write(s, cpu_i, ins.args[0], value, ins), cpu_i)

    def _i_input(self, s: SysState, cpu_i: int, site: _Site, choice: int) -> SysState:
        ins = site.ins
        assert ins is not None
        source = ins.args[1]
        assert isinstance(source, Name)
        s, value = self.input_value(s, cpu_i, source.name, choice, ins)
        return self._next(self.write(s, cpu_i, ins.args[0], value, ins), cpu_i)

    # -- pseudo-C ------------------------------------------------------------------------------
    def input_value(
        self, s: SysState, cpu_i: int, name: str, choice: int, ins: Instr
    ) -> tuple[SysState, Value]:
        """The value a guest-controlled input takes: one of its samples (the `choice`-th),
        or, when the property file makes it symbolic, a fresh symbol within its range."""
        decl = self.layout.design.inputs[name]
        if name not in self.symbolic_inputs:
            if decl.low is not None:
                return s, decl.low + choice
            return s, self.eval(s, cpu_i, decl.samples[choice], ins)
        if self.witness_values is not None:
            return s, self.witness_values[f"{name}@{self.step_index}"]
        if self.unique_names:
            fresh = f"{name}@{self.step_index}"
        else:
            live = sym.symbols((s.machine, s.vars, s.path, s.lazy))
            fresh = name
            k = 1
            while fresh in live:
                fresh = f"{name}#{k}"
                k += 1
        value = sym.var(fresh)
        path = s.path
        if decl.low is not None and decl.high is not None:
            bounds = [sym.ule(decl.low, value), sym.ule(value, decl.high)]
            for c in bounds:
                sym.assume(c)  # a symbolic state's step replaces the path: keep them
            path = tuple(sorted(set(path) | {c for c in bounds if isinstance(c, Term)}, key=repr))
        return s._replace(path=path, symbolic=True), value

    def choices(self, s: SysState, cpu_i: int, ins: Instr) -> int:
        """How many ways a `choose` / `choose_range` / `input` / `verw` step can go."""
        if ins.op in ("input", "c.input"):
            source = ins.args[1]
            assert isinstance(source, (Name, Var))
            name = source.name
            if name in self.symbolic_inputs:
                return 1
            decl = self.layout.design.inputs[name]
            if decl.low is not None and decl.high is not None:
                return min(decl.high - decl.low + 1, MAX_CHOICES)  # (refused when larger)
            return len(decl.samples)
        if ins.op == "c.choose_range":
            low = self._int(self._expr(s, cpu_i, ins.args[1], ins), ins)
            high = self._int(self._expr(s, cpu_i, ins.args[2], ins), ins)
            count = max(0, high - low + 1)
            if count > MAX_CHOICES:
                raise self._error(
                    f"choose_range over {low:#x}..{high:#x} gives {count:#x} values, more than "
                    f"the {MAX_CHOICES} the checker enumerates in one step", ins,
                )
            return count
        if ins.op == "c.send_nmi":
            e = ins.args[0]
            if isinstance(e, Var) and e.name in _SHORTHANDS:
                return len(nmi_ipi_outcomes(s.machine, cpu_i, _SHORTHANDS[e.name]))
            return 1
        return len(ins.args) - 1

    def wait_ready(self, s: SysState, cpu_i: int, ins: Instr) -> bool:
        """Can the wait proceed? A symbolic condition may: the step decides it."""
        v = self._expr(s, cpu_i, ins.args[0], ins)
        return isinstance(v, Term) or bool(v)

    def _var(self, e: object) -> str:
        assert isinstance(e, Var)
        return e.name

    def _i_c_halt(self, s: SysState, cpu_i: int, site: _Site, choice: int) -> SysState:
        return s.with_machine(insn.hlt(self._advance(s.machine, cpu_i), cpu_i))

    def _i_c_assign(self, s: SysState, cpu_i: int, site: _Site, choice: int) -> SysState:
        ins = site.ins
        assert ins is not None
        name = ins.args[0]
        assert isinstance(name, str)
        value = self._expr(s, cpu_i, ins.args[1], ins)
        slot = self.layout.var_slot(name, cpu_i)
        return _assigned(s, slot, value, self._advance(s.machine, cpu_i))

    def _i_c_assign_index(self, s: SysState, cpu_i: int, site: _Site, choice: int) -> SysState:
        ins = site.ins
        assert ins is not None
        name, index = ins.args[0], ins.args[1]
        assert isinstance(name, str) and is_expr(index)
        slot = self._element(s, cpu_i, name, index, ins)
        value = self._expr(s, cpu_i, ins.args[2], ins)
        return _assigned(s, slot, value, self._advance(s.machine, cpu_i))

    def _i_c_store(self, s: SysState, cpu_i: int, site: _Site, choice: int) -> SysState:
        """`%reg = e;`, `mem(ADDR) = e;`: pseudo-C writing a register or a memory word."""
        ins = site.ins
        assert ins is not None
        value = self._expr(s, cpu_i, ins.args[1], ins)
        return self._next(self.write(s, cpu_i, ins.args[0], value, ins), cpu_i)

    def _i_c_choose_range(self, s: SysState, cpu_i: int, site: _Site, choice: int) -> SysState:
        ins = site.ins
        assert ins is not None
        low = self._int(self._expr(s, cpu_i, ins.args[1], ins), ins)
        slot = self.layout.var_slot(self._var(ins.args[0]), cpu_i)
        return _assigned(s, slot, low + choice, self._advance(s.machine, cpu_i))

    def _i_c_branch_false(self, s: SysState, cpu_i: int, site: _Site, choice: int) -> SysState:
        ins = site.ins
        assert ins is not None
        if decide(sym.truth(self._bv(self._expr(s, cpu_i, ins.args[0], ins), ins))):
            return self._next(s, cpu_i)
        return s.with_machine(self._goto(s.machine, cpu_i, site))

    def _i_c_wait_until(self, s: SysState, cpu_i: int, site: _Site, choice: int) -> SysState:
        ins = site.ins
        assert ins is not None
        v = self._expr(s, cpu_i, ins.args[0], ins)
        if isinstance(v, Term):
            sym.require(sym.truth(v))
        elif not v:
            raise Blocked()
        return self._next(s, cpu_i)

    _i_c_wait_timeout = _i_c_wait_until

    def _i_c_input(self, s: SysState, cpu_i: int, site: _Site, choice: int) -> SysState:
        ins = site.ins
        assert ins is not None
        source = ins.args[1]
        s, value = self.input_value(s, cpu_i, self._var(source), choice, ins)
        slot = self.layout.var_slot(self._var(ins.args[0]), cpu_i)
        return _assigned(s, slot, value, self._advance(s.machine, cpu_i))

    def _i_c_choose(self, s: SysState, cpu_i: int, site: _Site, choice: int) -> SysState:
        ins = site.ins
        assert ins is not None
        value = self._expr(s, cpu_i, ins.args[1 + choice], ins)
        slot = self.layout.var_slot(self._var(ins.args[0]), cpu_i)
        return _assigned(s, slot, value, self._advance(s.machine, cpu_i))

    def _i_c_assert(self, s: SysState, cpu_i: int, site: _Site, choice: int) -> SysState:
        ins = site.ins
        assert ins is not None
        m = s.machine
        if not decide(sym.truth(self._bv(self._expr(s, cpu_i, ins.args[0], ins), ins))):
            m = m.incident(f"{ASSERT_FAILED} at line {ins.loc.line}")
        return s.with_machine(self._advance(m, cpu_i))

    def _i_c_send_nmi(self, s: SysState, cpu_i: int, site: _Site, choice: int) -> SysState:
        ins = site.ins
        assert ins is not None
        m = s.machine
        e = ins.args[0]
        if isinstance(e, Var) and e.name in _SHORTHANDS:
            # An invalid shorthand has several outcomes (nmi_ipi_outcomes): the choice.
            targets = nmi_ipi_outcomes(m, cpu_i, _SHORTHANDS[e.name])[choice]
        else:
            dest = self._int(self._expr(s, cpu_i, e, ins), ins)
            if not 0 <= dest < len(m.cpus):
                last = len(m.cpus) - 1
                raise self._error(f"send_nmi to CPU {dest}, but CPUs are 0-{last}", ins)
            targets = ipi_destinations(m, cpu_i, "cpu", dest)
        return s.with_machine(self._advance(send_nmi_ipi(m, cpu_i, targets), cpu_i))

    def _i_c_set_gate(self, s: SysState, cpu_i: int, site: _Site, choice: int) -> SysState:
        ins = site.ins
        assert ins is not None
        a = ins.args
        table = self._name_of(s, cpu_i, a[0], ins)
        vector = self._int(self._expr(s, cpu_i, a[1], ins), ins)
        target = a[2]
        assert isinstance(target, Target)
        kind = str(a[3]) if len(a) > 3 else "interrupt"
        dpl = int(str(a[4]), 0) if len(a) > 4 else 0
        ist = int(str(a[5]), 0) if len(a) > 5 else 0
        m = insn.set_gate(s.machine, table, vector, Gate(target.routine, kind, dpl, ist))
        return s.with_machine(self._advance(m, cpu_i))

    def _i_c_set_gate_ist(self, s: SysState, cpu_i: int, site: _Site, choice: int) -> SysState:
        ins = site.ins
        assert ins is not None
        a = ins.args
        table = self._name_of(s, cpu_i, a[0], ins)
        vector = self._int(self._expr(s, cpu_i, a[1], ins), ins)
        ist = self._int(self._expr(s, cpu_i, a[2], ins), ins)
        m = insn.set_gate_ist(s.machine, table, vector, ist)
        return s.with_machine(self._advance(m, cpu_i))

    def _i_c_set_ist(self, s: SysState, cpu_i: int, site: _Site, choice: int) -> SysState:
        ins = site.ins
        assert ins is not None
        a = ins.args
        tss = self._name_of(s, cpu_i, a[0], ins)
        n = self._int(self._expr(s, cpu_i, a[1], ins), ins)
        name = None if a[2] == Var("none") else self._name_of(s, cpu_i, a[2], ins)
        return s.with_machine(self._advance(insn.set_ist(s.machine, tss, n, name), cpu_i))

    def _i_c_set_rsp0(self, s: SysState, cpu_i: int, site: _Site, choice: int) -> SysState:
        ins = site.ins
        assert ins is not None
        tss = self._name_of(s, cpu_i, ins.args[0], ins)
        m = insn.set_rsp0(s.machine, tss, self._name_of(s, cpu_i, ins.args[1], ins))
        return s.with_machine(self._advance(m, cpu_i))

    def _i_c_lidt(self, s: SysState, cpu_i: int, site: _Site, choice: int) -> SysState:
        ins = site.ins
        assert ins is not None
        e = ins.args[0]
        table = None if e == Var("empty") else self._name_of(s, cpu_i, e, ins)
        return s.with_machine(self._advance(insn.lidt(s.machine, cpu_i, table), cpu_i))

    def _i_c_ltr(self, s: SysState, cpu_i: int, site: _Site, choice: int) -> SysState:
        ins = site.ins
        assert ins is not None
        m = insn.ltr(s.machine, cpu_i, self._name_of(s, cpu_i, ins.args[0], ins))
        return s.with_machine(self._advance(m, cpu_i))

    def _i_c_copy_idt(self, s: SysState, cpu_i: int, site: _Site, choice: int) -> SysState:
        # memcpy() of one IDT's gates over another's; the limit lives in IDTR, not here.
        ins = site.ins
        assert ins is not None
        m = s.machine
        dst = m.idt(self._name_of(s, cpu_i, ins.args[0], ins))
        src = m.idt(self._name_of(s, cpu_i, ins.args[1], ins))
        assert dst is not None and src is not None
        m = m.with_idt(dst._replace(gates=src.gates))
        return s.with_machine(self._advance(m, cpu_i))

    def _i_c_frame_moved(self, s: SysState, cpu_i: int, site: _Site, choice: int) -> SysState:
        ins = site.ins
        assert ins is not None
        src = self._int(self._expr(s, cpu_i, ins.args[0], ins), ins)
        dst = self._int(self._expr(s, cpu_i, ins.args[1], ins), ins)
        try:
            m = hand_off(self.platform, s.machine, cpu_i, src, dst)
        except ValueError as exc:
            raise self._error(f"frame_moved: {exc}", ins) from None
        return s.with_machine(self._advance(m, cpu_i))

    def _i_c_cli(self, s: SysState, cpu_i: int, site: _Site, choice: int) -> SysState:
        return s.with_machine(self._advance(insn.cli(s.machine, cpu_i), cpu_i))

    def _i_c_sti(self, s: SysState, cpu_i: int, site: _Site, choice: int) -> SysState:
        return s.with_machine(self._advance(insn.sti(s.machine, cpu_i), cpu_i))

    def _i_c_clear_mcip(self, s: SysState, cpu_i: int, site: _Site, choice: int) -> SysState:
        return s.with_machine(self._advance(insn.clear_mcip(s.machine, cpu_i), cpu_i))

    def _i_c_write_cr4_mce(self, s: SysState, cpu_i: int, site: _Site, choice: int) -> SysState:
        ins = site.ins
        assert ins is not None
        on = bool(self._expr(s, cpu_i, ins.args[0], ins))
        return s.with_machine(self._advance(insn.set_cr4_mce(s.machine, cpu_i, on), cpu_i))

    def _i_c_free_init(self, s: SysState, cpu_i: int, site: _Site, choice: int) -> SysState:
        return self._next(s._replace(init_freed=True), cpu_i)

    def _i_c_nop(self, s: SysState, cpu_i: int, site: _Site, choice: int) -> SysState:
        return self._next(s, cpu_i)

    _i_c_atomic_end = _i_c_nop

    def _i_c_atomic_begin(self, s: SysState, cpu_i: int, site: _Site, choice: int) -> SysState:
        return self._atomic(s, cpu_i)

    def _i_c_stop(self, s: SysState, cpu_i: int, site: _Site, choice: int) -> SysState:
        # The CPU stops for good (a model of `for (;;) halt();` with everything masked).
        m = s.machine
        return s.with_machine(m.with_cpu(cpu_i, m.cpus[cpu_i]._replace(run=Run.HALTED)))

    def _i_c_fell_off(self, s: SysState, cpu_i: int, site: _Site, choice: int) -> SysState:
        m = s.machine.incident(FELL_OFF)
        raise ArchFault(UD, None, "ran off the end of a routine", machine=m)

    def timeout(self, s: SysState, cpu_i: int) -> SysState:
        """A `wait_timeout` gives up: only when nothing else can happen (Promela's timeout)."""
        m = s.machine.incident(TIMED_OUT)
        return s.with_machine(self._advance(m, cpu_i))


# How each instruction's single-step trap is decided (model.x86.debug.StepKind).
_STEP_KINDS = {
    "syscall": debug.StepKind.SYSCALL,
    "int": debug.StepKind.EVENT,
    "int3": debug.StepKind.EVENT,
    "into": debug.StepKind.EVENT,
    "int1": debug.StepKind.EVENT,
    "mov_ss": debug.StepKind.MOV_SS,
}
# Instructions that push or pop a word at RSP, or IRET's frame read (their data accesses
# for data breakpoints; operands are recorded as they are read and written).
_PUSHES = frozenset({"push", "call", "pushf"})
_POPS = frozenset({"pop", "ret", "popf"})


def _stack_accesses(ins: Instr, rsp_before: Value, rsp_after: Value) -> list[debug.Access]:
    """The stack words an instruction accessed through RSP."""
    if isinstance(rsp_before, CodeAddr) or isinstance(rsp_after, CodeAddr):
        return []
    if ins.op in _PUSHES:
        return [(sym.band(sym.add(rsp_before, -WORD), MASK64), WORD, True)]
    if ins.op in _POPS or (ins.op == "mov_ss" and len(ins.args) == 1):
        return [(rsp_before, WORD, False)]
    if ins.op == "iret":
        return [(rsp_before, 5 * WORD, False)]
    return []


def _assigned(s: SysState, slot: int, value: Value, m: Machine) -> SysState:
    """The state with variable slot `slot` set to `value` and machine `m`."""
    values = list(s.vars)
    values[slot] = value
    return s.with_machine_vars(m, tuple(values))


def _set_lazy(s: SysState, cpu_i: int, record: alu.Lazy | None) -> SysState:
    """Remember (or forget) that CPU cpu_i's arithmetic flags stand for a symbolic result."""
    if not s.lazy and record is None:
        return s
    lazy = list(s.lazy) if s.lazy else [None] * len(s.machine.cpus)
    lazy[cpu_i] = record
    return s._replace(lazy=tuple(lazy) if any(x is not None for x in lazy) else ())


__all__ = ["Blocked", "Interpreter", "Shadow", "SysState", "handlers_of"]
