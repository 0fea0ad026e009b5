"""Executing one instruction of a design on one CPU.

The x86 rules live in model/x86; this module only maps the design language's operations
onto them and onto the design's variables. A fault an instruction raises is delivered
here through model.x86.delivery, so every exception follows the same SDM path.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, NamedTuple

from checker import symbolic as sym
from checker.errors import InputError
from checker.symbolic import Term, decide
from model.lang.expr import binop, unop
from model.lang.ir import Abs, Expr, Imm, Instr, Mem, Name, Reg, RipRel, Routine, Target
from model.system.layout import Layout
from model.x86 import instructions as insn
from model.x86.arch import BP, CF, DB, GP, IF, OF_FLAG, RF, UD
from model.x86.delivery import Event, Source, deliver
from model.x86.events import after_instruction, ipi_destinations, send_nmi_ipi
from model.x86.memory import ArchFault, copy_words, move_rsp, pop, push, read, write
from model.x86.state import (
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

ZF = 1 << 6
SF = 1 << 7
MASK64 = (1 << 64) - 1

# Sticky incidents the interpreter records (the x86 layer records its own).
FREED_CODE = "freed-init-code-executed"
FELL_OFF = "ran-off-routine-end"
ASSERT_FAILED = "assertion-failed"
TIMED_OUT = "timeout-fired"

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


class _Site(NamedTuple):
    """What running the instruction at one pc needs, worked out once per pc."""

    ins: Instr | None
    next_pc: CodeAddr  # the fall-through pc: CALL's return address, a trap's saved RIP
    goto: CodeAddr | None  # a jump's, call's or branch's target
    init: bool  # the routine is in an .init section (freed by `free_init`)
    op: str  # a pseudo-C statement without its "c.", an instruction without its width
    width: int  # the operand width in bits (`cmp32` -> 32; 64 for plain ops)


class Blocked(Exception):
    """The instruction cannot run now (a wait whose condition is false)."""


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
        # Each variable's first slot and whether it is per-CPU (Layout.var_slot, one lookup).
        self._var_slots: dict[str, tuple[int, bool]] = {
            name: (base, name in layout.percpu_vars) for name, base in layout.var_index.items()
        }

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
        if ins is not None:
            arg = ins.args[1] if ins.op == "c.branch_false" else ins.args[0] if ins.args else None
            if isinstance(arg, Target):
                goto = CodeAddr(arg.routine, arg.index)
        init = r is not None and r.section.startswith(".init")
        op, width = ("", 64) if ins is None else (
            (ins.op[2:], 64) if ins.op.startswith("c.") else _split_width(ins.op)
        )
        site = _Site(ins, CodeAddr(pc.routine, pc.index + 1), goto, init, op, width)
        self._sites[pc] = site
        return site

    def eval(self, s: SysState, cpu_i: int, e: Expr, ins: Instr) -> Value:
        kind = e[0]
        if kind == "const":
            return int(e[1])
        if kind == "var":
            slot = self._var_slots.get(e[1])
            if slot is not None:
                base, per_cpu = slot
                return s.vars[base + cpu_i if per_cpu else base]
            return self._named(e[1], cpu_i, ins)
        if kind == "cpu":
            return cpu_i
        if kind == "ncpus":
            return self.layout.ncpus
        if kind == "reg":
            cpu = s.machine.cpus[cpu_i]
            return cpu.rsp if e[1] == "rsp" else cpu.reg(e[1])
        if kind == "top":
            return self.platform.region(self.layout.resolve(e[1], cpu_i)).top
        if kind == "index":
            return s.vars[self._element(s, cpu_i, e[1], e[2], ins)]
        if kind == "binop":
            a = self.eval(s, cpu_i, e[2], ins)
            b = self.eval(s, cpu_i, e[3], ins)
            if isinstance(a, Term) or isinstance(b, Term):
                return sym.binary(e[1], self._bv(a, ins), self._bv(b, ins))
            if e[1] in ("==", "!="):
                return int((a == b) == (e[1] == "=="))
            return binop(e[1], self._int(a, ins), self._int(b, ins))
        if kind == "unop":
            v = self._bv(self.eval(s, cpu_i, e[2], ins), ins)
            if isinstance(v, Term):
                if e[1] == "-":
                    return sym.neg(v)
                if e[1] == "~":
                    return sym.bnot(v)
                return sym.ite(sym.lnot(sym.truth(v)), 1, 0)
            return unop(e[1], v)
        if kind == "call" and e[1] == "per_cpu" and len(e[2]) == 2 and e[2][0][0] == "var":
            name = e[2][0][1]
            idx = self._int(self.eval(s, cpu_i, e[2][1], ins), ins)
            return s.vars[self.layout.var_index[name] + idx]
        if kind == "call" and e[1] == "nmi_blocked" and not e[2]:
            return int(s.machine.cpus[cpu_i].nmi_blocked)
        if kind == "call" and e[1] == "mem" and len(e[2]) == 1:
            # A word of stack memory, e.g. the error code of the frame a handler got.
            addr = self._int(self.eval(s, cpu_i, e[2][0], ins), ins) & MASK64
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

    def _name_of(self, s: SysState, cpu_i: int, e: Expr, ins: Instr) -> str:
        """A table/TSS/stack operand: `idt_table` (this CPU's) or `idt_table[i]`."""
        if e[0] == "var":
            return self.layout.resolve(e[1], cpu_i)
        if e[0] == "index":
            idx = self._int(self.eval(s, cpu_i, e[2], ins), ins)
            return f"{e[1]}[{idx}]" if e[1] in self.layout.per_cpu else e[1]
        raise self._error("expected a table, TSS or stack name", ins)

    def operand(self, s: SysState, m: Machine, cpu_i: int, op: object, ins: Instr) -> Value:
        cpu = m.cpus[cpu_i]
        if isinstance(op, Imm):
            return self.eval(s if s.machine is m else s.with_machine(m), cpu_i, op.expr, ins)
        if isinstance(op, Reg):
            return cpu.rsp if op.name == "rsp" else cpu.reg(op.name)
        if isinstance(op, (Mem, Abs)):
            addr = self._address(s, m, cpu_i, op, ins)
            from model.x86.memory import check_access

            check_access(self.platform, addr, cpu.cpl)
            if isinstance(addr, Term):
                if op.size < WORD:
                    raise self._error("narrow reads at symbolic addresses are not modelled", ins)
                return read(m, addr)
            word = read(m, addr - addr % WORD)
            if op.size < WORD and isinstance(word, int):
                # movl/cmpl/testb...: the bytes at the operand's address, little-endian
                return (word >> (8 * (addr % WORD))) & ((1 << (8 * op.size)) - 1)
            return word
        if isinstance(op, RipRel):
            return CodeAddr(*op.target)
        raise self._error(f"unsupported operand {op!r}", ins)

    def _address(
        self, s: SysState, m: Machine, cpu_i: int, op: Mem | Abs, ins: Instr
    ) -> int | Term:
        if isinstance(op, Abs):
            return sym.band(self._bv(self.eval(s, cpu_i, op.expr, ins), ins), MASK64)
        cpu = m.cpus[cpu_i]
        base = cpu.rsp if op.base == "rsp" else cpu.reg(op.base)
        return sym.add(self._bv(base, ins), op.disp)

    def _store(
        self, s: SysState, m: Machine, cpu_i: int, dst: object, value: Value, ins: Instr
    ) -> Machine:
        cpu = m.cpus[cpu_i]
        if isinstance(dst, Reg):
            if dst.name == "rsp":
                return move_rsp(self.platform, m, cpu_i, value)
            return m.with_cpu(cpu_i, cpu.with_reg(dst.name, value))
        if isinstance(dst, (Mem, Abs)):
            addr = self._address(s, m, cpu_i, dst, ins)
            if isinstance(addr, Term):
                if dst.size != WORD:
                    raise self._error("narrow writes at symbolic addresses are not modelled", ins)
                return write(self.platform, m, addr, value, cpu.cpl)
            aligned = addr - addr % WORD
            if dst.size == 4:
                old = read(m, aligned)
                shift = 8 * (addr % WORD)
                keep = (old if isinstance(old, int) else 0) & ~(0xFFFF_FFFF << shift)
                if isinstance(value, Term) or isinstance(keep, Term):
                    raise self._error("a 32-bit store of a symbolic value is not modelled", ins)
                value = keep | ((self._int(value, ins) & 0xFFFF_FFFF) << shift)
            return write(self.platform, m, aligned, value, cpu.cpl)
        raise self._error("cannot store there", ins)

    # -- steps -------------------------------------------------------------------------------
    def step(self, s: SysState, cpu_i: int, choice: int = 0) -> SysState:
        """Execute the instruction at CPU `cpu_i`'s pc (one action)."""
        cpu = s.machine.cpus[cpu_i]
        site = self._sites.get(cpu.pc) or self._site(cpu.pc)
        ins = site.ins
        if ins is None:
            raise InputError(
                f"CPU {cpu_i} has no instruction at {cpu.pc}", self.layout.design.path, 1
            )
        shadow_before = cpu.shadow
        if ins.op == "c.atomic_begin":
            return self._atomic(s, cpu_i)
        try:
            s = self._execute(s, cpu_i, site, choice)
        except ArchFault as fault:
            return self.raise_fault(s, cpu_i, fault, ins)
        if shadow_before is Shadow.NONE:
            return s  # no shadow to end at this boundary (the common case)
        m = s.machine
        cpu = m.cpus[cpu_i]
        after = after_instruction(cpu, shadow_before)
        return s if after is cpu else s.with_machine(m.with_cpu(cpu_i, after))

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
        flags &= ~(ZF | SF | CF | OF_FLAG)
        for jcc, bit in (("je", ZF), ("js", SF), ("jb", CF), ("jl", OF_FLAG)):
            if jcc == "jl":
                # OF: jl is SF != OF, and SF is already known.
                if decide(_lazy_condition("jl", lazy)) != bool(flags & SF):
                    flags |= bit
            elif decide(_lazy_condition(jcc, lazy)):
                flags |= bit
        s = _set_lazy(s, cpu_i, None)
        return s.with_machine(m.with_cpu(cpu_i, cpu._replace(rflags=flags)))

    def raise_fault(self, s: SysState, cpu_i: int, fault: ArchFault, ins: Instr) -> SysState:
        """Deliver an exception raised by `ins` (faults save its address, traps the next)."""
        s = self.settle_flags(s, cpu_i)
        m = fault.machine if fault.machine is not None else s.machine
        pc = m.cpus[cpu_i].pc
        if fault.vector in TRAPS:
            pc = self._site(pc).next_pc
        event = Event(Source.EXCEPTION, fault.vector, fault.error_code)
        return s.with_machine(deliver(self.platform, m, cpu_i, event, pc))

    def environment_fault(self, s: SysState, cpu_i: int) -> SysState:
        """The environment makes a step marked `@fault(#X)` raise #X instead of running."""
        cpu = s.machine.cpus[cpu_i]
        ins = self.instr_at(cpu.pc)
        assert ins is not None and ins.fault is not None
        error = 0 if ins.fault in (GP, 14, 10, 11, 12, 17, 21, 8) else None
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

    def _goto(self, m: Machine, cpu_i: int, site: _Site) -> Machine:
        assert site.goto is not None
        return m.with_cpu(cpu_i, m.cpus[cpu_i].with_pc(site.goto))

    def _execute(self, s: SysState, cpu_i: int, site: _Site, choice: int) -> SysState:
        m = s.machine
        cpu = m.cpus[cpu_i]
        ins = site.ins
        assert ins is not None
        if site.init and s.init_freed:
            # The bytes there now belong to something else: model them as undefined.
            m = m.incident(FREED_CODE)
            raise ArchFault(UD, None, "executing freed init code", machine=m)
        op = ins.op
        a = ins.args
        p = self.platform
        if op.startswith("c."):
            return self._pseudo_c(s, cpu_i, site, choice)
        # The most frequent instructions first.
        if op == "push":
            value = self.operand(s, m, cpu_i, a[0], ins)
            return s.with_machine(self._advance(push(p, m, cpu_i, value), cpu_i))
        if op == "jmp":
            return s.with_machine(self._goto(m, cpu_i, site))
        if op == "call":
            return s.with_machine(self._goto(push(p, m, cpu_i, site.next_pc), cpu_i, site))
        if op == "ret":
            m, value = pop(p, m, cpu_i)
            if not isinstance(value, CodeAddr):
                raise ArchFault(GP, 0, f"RET to {value:#x}", machine=None)
            return s.with_machine(m.with_cpu(cpu_i, m.cpus[cpu_i].with_pc(value)))
        if op == "nop":
            return s.with_machine(self._advance(m, cpu_i))
        if op == "pop":
            m, value = pop(p, m, cpu_i)
            m = self._store(s, m, cpu_i, a[0], value, ins)
            return s.with_machine(self._advance(m, cpu_i))
        if op == "mov":
            value = self.operand(s, m, cpu_i, a[0], ins)
            return s.with_machine(
                self._advance(self._store(s, m, cpu_i, a[1], value, ins), cpu_i)
            )
        if op == "lea":
            src = a[0]
            value = (
                self._address(s, m, cpu_i, src, ins) if isinstance(src, Mem)
                else self.operand(s, m, cpu_i, src, ins)
            )
            return s.with_machine(
                self._advance(self._store(s, m, cpu_i, a[1], value, ins), cpu_i)
            )
        base_op, width = site.op, site.width
        if op == "mov32":
            value = sym.band(self._bv(self.operand(s, m, cpu_i, a[0], ins), ins), 0xFFFF_FFFF)
            return s.with_machine(
                self._advance(self._store(s, m, cpu_i, a[1], value, ins), cpu_i)
            )
        if base_op in _ARITH:
            mask = (1 << width) - 1
            dst = a[-1]
            xv = self._bv(self.operand(s, m, cpu_i, dst, ins), ins)
            yv = self._bv(self.operand(s, m, cpu_i, a[0], ins), ins) if len(a) == 2 else 1
            if isinstance(xv, Term) or isinstance(yv, Term):
                # Symbolic: the result is a term and the flags a lazy record of it.
                r_sym = sym.band(
                    _SYM_ARITH[base_op](sym.band(xv, mask), sym.band(yv, mask), width), mask
                )
                m = self._store(s, m, cpu_i, dst, r_sym, ins)
                s = _set_lazy(s, cpu_i, ("result", r_sym, width))
                return s.with_machine(self._advance(m, cpu_i))
            s = _set_lazy(s, cpu_i, None)
            x = xv & mask
            y = yv & mask
            raw = _ARITH[base_op](x, y, width)
            r = raw & mask
            m = self._store(s, m, cpu_i, dst, r, ins)
            carry, overflow = _carry_overflow(base_op, x, y, raw, width)
            if base_op in ("inc", "dec"):
                carry = bool(cpu.rflags & CF)  # INC and DEC leave CF alone
            if base_op in ("shl", "shr", "sar") and (y & (width - 1)) == 0:
                return s.with_machine(self._advance(m, cpu_i))  # a zero count: no flags
            m = self._set_flags(m, cpu_i, r, carry=carry, width=width, overflow=overflow)
            return s.with_machine(self._advance(m, cpu_i))
        if base_op in ("cmp", "test"):
            mask = (1 << width) - 1
            x = self.operand(s, m, cpu_i, a[1], ins)
            y = self.operand(s, m, cpu_i, a[0], ins)
            if isinstance(x, Term) or isinstance(y, Term):
                xb, yb = sym.band(self._bv(x, ins), mask), sym.band(self._bv(y, ins), mask)
                record = ("cmp", xb, yb, width) if base_op == "cmp" else (
                    "result", sym.band(xb, yb), width)
                s = _set_lazy(s, cpu_i, record)
                return s.with_machine(self._advance(m, cpu_i))
            s = _set_lazy(s, cpu_i, None)
            if isinstance(x, CodeAddr) or isinstance(y, CodeAddr):
                m = self._set_flags(m, cpu_i, 0 if x == y else 1, carry=False, width=width)
            elif base_op == "test":
                m = self._set_flags(m, cpu_i, x & y & mask, carry=False, width=width)
            else:
                x, y = x & mask, y & mask
                _, overflow = _carry_overflow("sub", x, y, x - y, width)
                m = self._set_flags(
                    m, cpu_i, (x - y) & mask, carry=y > x, width=width, overflow=overflow
                )
            return s.with_machine(self._advance(m, cpu_i))
        if op in _CONDITIONS:
            lazy = s.lazy[cpu_i] if s.lazy else None
            if lazy is not None:
                taken = decide(_lazy_condition(op, lazy))
            else:
                taken = _CONDITIONS[op](cpu.rflags)
            return s.with_machine(
                self._goto(m, cpu_i, site) if taken else self._advance(m, cpu_i)
            )
        if op == "pushf" and s.lazy and s.lazy[cpu_i] is not None:
            s = self.settle_flags(s, cpu_i)
            m = s.machine
            cpu = m.cpus[cpu_i]
        if op == "pushf":
            return s.with_machine(self._advance(push(p, m, cpu_i, cpu.rflags), cpu_i))
        if op == "popf":
            m, value = pop(p, m, cpu_i)
            c = m.cpus[cpu_i]
            return s.with_machine(
                self._advance(
                    m.with_cpu(cpu_i, c._replace(rflags=self._int(value, ins) | 2)), cpu_i
                )
            )
        if op == "cli":
            return s.with_machine(self._advance(insn.cli(m, cpu_i), cpu_i))
        if op == "sti":
            return s.with_machine(self._advance(insn.sti(m, cpu_i), cpu_i))
        if op == "hlt":
            return s.with_machine(insn.hlt(self._advance(m, cpu_i), cpu_i))
        if op == "iret":
            return s.with_machine(insn.iret(p, m, cpu_i))
        if op == "sysret":
            return s.with_machine(insn.sysret(p, m, cpu_i))
        if op == "swapgs":
            return s.with_machine(self._advance(insn.swapgs(m, cpu_i), cpu_i))
        if op == "syscall":
            return s.with_machine(insn.syscall(p, m, cpu_i, site.next_pc))
        if op == "sysenter":
            return s.with_machine(self._sysenter(m, cpu_i))
        if op == "ud2":
            raise ArchFault(UD, None, "UD2")
        if op in ("int", "int3", "into", "int1"):
            return s.with_machine(self._software_interrupt(s, m, cpu_i, site))
        if op == "lidt":
            name = a[0].name if isinstance(a[0], Name) else ""
            table = None if name == "empty" else self.layout.resolve(name, cpu_i)
            return s.with_machine(self._advance(insn.lidt(m, cpu_i, table), cpu_i))
        if op == "ltr":
            assert isinstance(a[0], Name)
            return s.with_machine(
                self._advance(
                    insn.ltr(m, cpu_i, self.layout.resolve(a[0].name, cpu_i)), cpu_i
                )
            )
        if op == "mov_ss":
            m = self._advance(m, cpu_i)
            return s.with_machine(insn.mov_ss(m, cpu_i))
        if op == "movsq":
            count = self._int(cpu.reg("rcx"), ins)
            src = self._int(cpu.reg("rsi"), ins)
            dst = self._int(cpu.reg("rdi"), ins)
            m = copy_words(p, m, cpu_i, src, dst, count)
            c = m.cpus[cpu_i].with_reg("rcx", 0).with_reg("rsi", src + count * WORD)
            c = c.with_reg("rdi", dst + count * WORD)
            return s.with_machine(self._advance(m.with_cpu(cpu_i, c), cpu_i))
        if op == "choose":
            dst = a[0]
            value = self.operand(s, m, cpu_i, a[1 + choice], ins)
            return s.with_machine(
                self._advance(self._store(s, m, cpu_i, dst, value, ins), cpu_i)
            )
        if op == "input":
            source = a[1]
            assert isinstance(source, Name)
            s, value = self.input_value(s, cpu_i, source.name, choice, ins)
            m = s.machine
            return s.with_machine(
                self._advance(self._store(s, m, cpu_i, a[0], value, ins), cpu_i)
            )
        raise self._error(f"no semantics for {op}", ins)

    def _software_interrupt(self, s: SysState, m: Machine, cpu_i: int, site: _Site) -> Machine:
        """INT n / INT3 / INTO / INT1: trap-like, the frame saves the next instruction."""
        cpu = m.cpus[cpu_i]
        platform = self.platform
        ins = site.ins
        assert ins is not None
        nxt = site.next_pc
        if ins.op == "int":
            vector = sym.band(self._bv(self.operand(s, m, cpu_i, ins.args[0], ins), ins), 0xFF)
            event = Event(Source.INT_N, vector)
        elif ins.op == "int3":
            event = Event(Source.INT3, BP)
        elif ins.op == "into":
            if self.routines[cpu.pc.routine].compat:
                platform = self.compat_platform
            if not platform.mode64 and not cpu.rflags & OF_FLAG:
                return self._advance(m, cpu_i)
            event = Event(Source.INTO, 4)
        else:
            event = Event(Source.INT1, DB)
        return deliver(platform, m, cpu_i, event, nxt, instruction_pc=cpu.pc)

    def _sysenter(self, m: Machine, cpu_i: int) -> Machine:
        """SYSENTER (SDM Vol. 2) from IA-32e mode: #GP(0) when IA32_SYSENTER_CS is null (no
        `sysenter` declaration); else CPL 0, RSP := IA32_SYSENTER_ESP (the declared stack's
        top), RIP := IA32_SYSENTER_EIP, IF and RF cleared, nothing saved. AMD CPUs raise #UD
        outside legacy mode (AMD APM Vol. 3 SYSENTER)."""
        if self.platform.vendor == "amd":
            raise ArchFault(UD, None, "SYSENTER in long mode on AMD")
        target = self.layout.design.sysenter
        if target is None:
            raise ArchFault(GP, 0, "SYSENTER with IA32_SYSENTER_CS = 0")
        routine, stack = target
        cpu = m.cpus[cpu_i]
        rsp = self.platform.region(self.layout.resolve(stack, cpu_i)).top
        cpu = cpu._replace(cpl=0, pc=CodeAddr(routine, 0), rsp=rsp, rflags=cpu.rflags & ~(IF | RF))
        return m.with_cpu(cpu_i, cpu)

    def _set_flags(
        self, m: Machine, cpu_i: int, result: int, carry: bool, width: int = 64,
        overflow: bool = False,
    ) -> Machine:
        cpu = m.cpus[cpu_i]
        flags = cpu.rflags & ~(ZF | SF | CF | OF_FLAG)
        if overflow:
            flags |= OF_FLAG
        if result & ((1 << width) - 1) == 0:
            flags |= ZF
        if result & (1 << (width - 1)):
            flags |= SF
        if carry:
            flags |= CF
        return m.with_cpu(cpu_i, cpu._replace(rflags=flags))

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
        if decl.low is not None:
            bounds = [sym.ule(decl.low, value), sym.ule(value, decl.high)]
            path = tuple(sorted(set(path) | {c for c in bounds if isinstance(c, Term)}, key=repr))
        return s._replace(path=path, symbolic=True), value

    def choices(self, s: SysState, cpu_i: int, ins: Instr) -> int:
        """How many ways a `choose` / `choose_range` / `input` step can go."""
        if ins.op in ("input", "c.input"):
            source = ins.args[1]
            name = source.name if isinstance(source, Name) else str(source[1])  # type: ignore[index]
            if name in self.symbolic_inputs:
                return 1
            decl = self.layout.design.inputs[name]
            if decl.low is not None and decl.high is not None:
                return decl.high - decl.low + 1
            return len(decl.samples)
        if ins.op == "c.choose_range":
            low = self._int(self.eval(s, cpu_i, ins.args[1], ins), ins)  # type: ignore[arg-type]
            high = self._int(self.eval(s, cpu_i, ins.args[2], ins), ins)  # type: ignore[arg-type]
            return max(0, high - low + 1)
        return len(ins.args) - 1

    def wait_ready(self, s: SysState, cpu_i: int, ins: Instr) -> bool:
        """Can the wait proceed? A symbolic condition may: the step decides it."""
        v = self.eval(s, cpu_i, ins.args[0], ins)
        return isinstance(v, Term) or bool(v)

    def _pseudo_c(self, s: SysState, cpu_i: int, site: _Site, choice: int) -> SysState:
        m = s.machine
        ins = site.ins
        assert ins is not None
        op = site.op
        a = ins.args
        if op == "halt":  # the most frequent first
            return s.with_machine(insn.hlt(self._advance(m, cpu_i), cpu_i))
        if op == "assign":
            name = a[0]
            assert isinstance(name, str)
            value = self.eval(s, cpu_i, a[1], ins)  # type: ignore[arg-type]
            slot = self.layout.var_slot(name, cpu_i)
            return _assigned(s, slot, value, self._advance(m, cpu_i))
        if op == "assign_index":
            name = a[0]
            assert isinstance(name, str)
            slot = self._element(s, cpu_i, name, a[1], ins)  # type: ignore[arg-type]
            value = self.eval(s, cpu_i, a[2], ins)  # type: ignore[arg-type]
            return _assigned(s, slot, value, self._advance(m, cpu_i))
        if op == "choose_range":
            var = a[0]
            assert isinstance(var, tuple) and var[0] == "var"
            low = self._int(self.eval(s, cpu_i, a[1], ins), ins)  # type: ignore[arg-type]
            slot = self.layout.var_slot(var[1], cpu_i)
            return _assigned(s, slot, low + choice, self._advance(m, cpu_i))
        if op == "branch_false":
            if decide(sym.truth(self._bv(self.eval(s, cpu_i, a[0], ins), ins))):  # type: ignore[arg-type]
                return s.with_machine(self._advance(m, cpu_i))
            return s.with_machine(self._goto(m, cpu_i, site))
        if op in ("wait_until", "wait_timeout"):
            v = self.eval(s, cpu_i, a[0], ins)  # type: ignore[arg-type]
            if isinstance(v, Term):
                sym.require(sym.truth(v))
            elif not v:
                raise Blocked()
            return s.with_machine(self._advance(m, cpu_i))
        if op == "input":
            var, source = a[0], a[1]
            assert isinstance(var, tuple) and isinstance(source, tuple)
            s, value = self.input_value(s, cpu_i, str(source[1]), choice, ins)
            slot = self.layout.var_slot(var[1], cpu_i)
            return _assigned(s, slot, value, self._advance(s.machine, cpu_i))
        if op == "choose":
            var = a[0]
            assert isinstance(var, tuple) and var[0] == "var"
            value = self.eval(s, cpu_i, a[1 + choice], ins)  # type: ignore[arg-type]
            slot = self.layout.var_slot(var[1], cpu_i)
            return _assigned(s, slot, value, self._advance(m, cpu_i))
        if op == "assert":
            if not decide(sym.truth(self._bv(self.eval(s, cpu_i, a[0], ins), ins))):  # type: ignore[arg-type]
                m = m.incident(f"{ASSERT_FAILED} at line {ins.loc.line}")
            return s.with_machine(self._advance(m, cpu_i))
        if op == "send_nmi":
            e = a[0]
            if isinstance(e, tuple) and e[0] == "var" and e[1] in ("SELF", "ALL_BUT_SELF", "ALL"):
                shorthand = {"SELF": "self", "ALL_BUT_SELF": "all-but-self", "ALL": "all"}[e[1]]
                targets = ipi_destinations(m, cpu_i, shorthand)
            else:
                dest = self._int(self.eval(s, cpu_i, e, ins), ins)  # type: ignore[arg-type]
                if not 0 <= dest < len(m.cpus):
                    last = len(m.cpus) - 1
                    raise self._error(f"send_nmi to CPU {dest}, but CPUs are 0-{last}", ins)
                targets = ipi_destinations(m, cpu_i, "cpu", dest)
            m = send_nmi_ipi(m, cpu_i, targets)
        elif op == "set_gate":
            table = self._name_of(s, cpu_i, a[0], ins)  # type: ignore[arg-type]
            vector = self._int(self.eval(s, cpu_i, a[1], ins), ins)  # type: ignore[arg-type]
            target = a[2]
            assert isinstance(target, Target)
            kind = str(a[3]) if len(a) > 3 else "interrupt"
            dpl = int(str(a[4]), 0) if len(a) > 4 else 0
            ist = int(str(a[5]), 0) if len(a) > 5 else 0
            m = insn.set_gate(m, table, vector, Gate(target.routine, kind, dpl, ist))
        elif op == "set_gate_ist":
            table = self._name_of(s, cpu_i, a[0], ins)  # type: ignore[arg-type]
            vector = self._int(self.eval(s, cpu_i, a[1], ins), ins)  # type: ignore[arg-type]
            ist = self._int(self.eval(s, cpu_i, a[2], ins), ins)  # type: ignore[arg-type]
            m = insn.set_gate_ist(m, table, vector, ist)
        elif op == "set_ist":
            tss = self._name_of(s, cpu_i, a[0], ins)  # type: ignore[arg-type]
            n = self._int(self.eval(s, cpu_i, a[1], ins), ins)  # type: ignore[arg-type]
            stack = a[2]
            name = None if stack == ("var", "none") else self._name_of(s, cpu_i, stack, ins)  # type: ignore[arg-type]
            m = insn.set_ist(m, tss, n, name)
        elif op == "set_rsp0":
            tss = self._name_of(s, cpu_i, a[0], ins)  # type: ignore[arg-type]
            m = insn.set_rsp0(m, tss, self._name_of(s, cpu_i, a[1], ins))  # type: ignore[arg-type]
        elif op == "lidt":
            e = a[0]
            table = None if e == ("var", "empty") else self._name_of(s, cpu_i, e, ins)  # type: ignore[arg-type]
            m = insn.lidt(m, cpu_i, table)
        elif op == "ltr":
            m = insn.ltr(m, cpu_i, self._name_of(s, cpu_i, a[0], ins))  # type: ignore[arg-type]
        elif op == "copy_idt":
            # memcpy() of one IDT's gates over another's; the limit lives in IDTR, not here.
            dst = m.idt(self._name_of(s, cpu_i, a[0], ins))  # type: ignore[arg-type]
            src = m.idt(self._name_of(s, cpu_i, a[1], ins))  # type: ignore[arg-type]
            assert dst is not None and src is not None
            m = m.with_idt(dst._replace(gates=src.gates))
        elif op == "cli":
            m = insn.cli(m, cpu_i)
        elif op == "sti":
            m = insn.sti(m, cpu_i)
        elif op == "clear_mcip":
            m = insn.clear_mcip(m, cpu_i)
        elif op == "write_cr4_mce":
            m = insn.set_cr4_mce(m, cpu_i, bool(self.eval(s, cpu_i, a[0], ins)))  # type: ignore[arg-type]
        elif op == "free_init":
            s = s._replace(init_freed=True)
        elif op == "nop":
            pass
        elif op == "stop":
            # The CPU stops for good (a model of `for (;;) halt();` with everything masked).
            cpu = m.cpus[cpu_i]
            return s.with_machine(m.with_cpu(cpu_i, cpu._replace(run=Run.HALTED)))
        elif op == "fell_off":
            m = m.incident(FELL_OFF)
            raise ArchFault(UD, None, "ran off the end of a routine", machine=m)
        elif op == "atomic_end":
            pass
        else:
            raise self._error(f"no semantics for {op}", ins)
        return s.with_machine(self._advance(m, cpu_i))

    def timeout(self, s: SysState, cpu_i: int) -> SysState:
        """A `wait_timeout` gives up: only when nothing else can happen (Promela's timeout)."""
        m = s.machine.incident(TIMED_OUT)
        return s.with_machine(self._advance(m, cpu_i))


def _assigned(s: SysState, slot: int, value: Value, m: Machine) -> SysState:
    """The state with variable slot `slot` set to `value` and machine `m`."""
    values = list(s.vars)
    values[slot] = value
    return s.with_machine_vars(m, tuple(values))


def _set_lazy(s: SysState, cpu_i: int, record: Any) -> SysState:
    """Remember (or forget) that CPU cpu_i's arithmetic flags stand for a symbolic result."""
    if not s.lazy and record is None:
        return s
    lazy = list(s.lazy) if s.lazy else [None] * len(s.machine.cpus)
    lazy[cpu_i] = record
    return s._replace(lazy=tuple(lazy) if any(x is not None for x in lazy) else ())


def _lazy_condition(op: str, lazy: tuple[Any, ...]) -> Any:
    """The condition a Jcc tests, from a symbolic compare or result (SDM Vol. 1 App. B)."""
    kind = lazy[0]
    if kind == "cmp":
        _, x, y, width = lazy
        xs, ys = sym.sign_extend(x, width), sym.sign_extend(y, width)
        table = {
            "je": sym.eq(x, y), "jne": sym.ne(x, y),
            "jb": sym.ult(x, y), "jae": sym.ule(y, x),
            "ja": sym.ult(y, x), "jbe": sym.ule(x, y),
            "jl": sym.slt(xs, ys), "jge": sym.sle(ys, xs),
            "jle": sym.sle(xs, ys), "jg": sym.slt(ys, xs),
            "js": sym.ne(sym.band(sym.sub(x, y), 1 << (width - 1)), 0),
            "jns": sym.eq(sym.band(sym.sub(x, y), 1 << (width - 1)), 0),
        }
        return table[op]
    _, r, width = lazy
    sign = sym.ne(sym.band(r, 1 << (width - 1)), 0)
    zero = sym.eq(r, 0)
    table = {
        "je": zero, "jne": sym.lnot(zero), "js": sign, "jns": sym.lnot(sign),
        # After and/or/xor/test CF=OF=0; after add/sub the model keeps only ZF/SF exact.
        "jb": False, "jae": True, "ja": sym.lnot(zero), "jbe": zero,
        "jl": sign, "jge": sym.lnot(sign), "jle": sym.lor(zero, sign),
        "jg": sym.land(sym.lnot(zero), sym.lnot(sign)),
    }
    return table[op]


_SYM_ARITH = {
    "add": lambda x, y, w: sym.add(x, y),
    "sub": lambda x, y, w: sym.sub(x, y),
    "and": lambda x, y, w: sym.band(x, y),
    "or": lambda x, y, w: sym.bor(x, y),
    "xor": lambda x, y, w: sym.bxor(x, y),
    "inc": lambda x, y, w: sym.add(x, 1),
    "dec": lambda x, y, w: sym.sub(x, 1),
    "shl": lambda x, y, w: sym.shl(x, y),
    "shr": lambda x, y, w: sym.lshr(x, y),
    "sar": lambda x, y, w: sym.ashr(sym.sign_extend(x, w), y),
}


def _split_width(op: str) -> tuple[str, int]:
    """`cmp32` -> ("cmp", 32); plain ops are 64-bit."""
    for w in ("32", "16", "8"):
        if op.endswith(w) and op != "mov32":
            return op[: -len(w)], int(w)
    return op, 64


def _carry_overflow(op: str, x: int, y: int, raw: int, width: int) -> tuple[bool, bool]:
    """CF and OF of `x op y` (operands already `width` bits; `raw` unmasked)."""
    sign = 1 << (width - 1)
    mask = (1 << width) - 1
    r = raw & mask
    if op in ("add", "inc"):
        y = 1 if op == "inc" else y
        return raw > mask, bool(~(x ^ y) & (x ^ r) & sign)
    if op in ("sub", "dec"):
        y = 1 if op == "dec" else y
        return y > x, bool((x ^ y) & (x ^ r) & sign)
    count = y & (width - 1)
    if op == "shl" and count:
        return bool((x >> (width - count)) & 1), False
    if op in ("shr", "sar") and count:
        return bool((x >> (count - 1)) & 1), False
    return False, False  # and, or, xor: CF and OF cleared


def _sar(x: int, y: int, width: int) -> int:
    if x & (1 << (width - 1)):
        x -= 1 << width
    return x >> (y & (width - 1))


_ARITH = {
    "add": lambda x, y, w: x + y,
    "sub": lambda x, y, w: x - y,
    "and": lambda x, y, w: x & y,
    "or": lambda x, y, w: x | y,
    "xor": lambda x, y, w: x ^ y,
    "inc": lambda x, y, w: x + 1,
    "dec": lambda x, y, w: x - 1,
    "shl": lambda x, y, w: x << (y & (w - 1)),  # the CPU masks the count to 5 or 6 bits
    "shr": lambda x, y, w: x >> (y & (w - 1)),
    "sar": _sar,
}


def _cond(flag: int, want: bool = True):  # type: ignore[no-untyped-def]
    return lambda f: bool(f & flag) == want


_CONDITIONS = {
    "je": _cond(ZF), "jne": _cond(ZF, False),
    "jb": _cond(CF), "jae": _cond(CF, False),
    "js": _cond(SF), "jns": _cond(SF, False),
    "ja": lambda f: not f & CF and not f & ZF, "jbe": lambda f: bool(f & CF or f & ZF),
    "jl": lambda f: bool(f & SF) != bool(f & OF_FLAG),
    "jge": lambda f: bool(f & SF) == bool(f & OF_FLAG),
    "jle": lambda f: bool(f & ZF) or bool(f & SF) != bool(f & OF_FLAG),
    "jg": lambda f: not f & ZF and bool(f & SF) == bool(f & OF_FLAG),
}

__all__ = ["Blocked", "Interpreter", "Shadow", "SysState"]
