"""Instruction sites compiled once into step closures (issue 18 item 2).

`Interpreter.step` runs most instructions through the `_i_*` handlers, which decode the
operands on every step and rebuild the CPU record, the machine and the state once per
effect (a PUSH: the memory, RSP, then the pc). For the commonest shapes of the commonest
instructions, `compile_site` builds, when a site is first decoded, a closure with the
operand kinds, register indices, variable slots and expression trees resolved, that
builds the new CPU record, machine and state once.

A closure covers only the plain concrete case: integer registers and addresses, no
symbolic memory, no lazy flags record, no foreign GS base. Anything else raises `Unusual`
before any effect, and `step` runs the site's general handler instead (`Unusual` is never
raised once a fault may have been): the closures compute what the handlers compute, with
the same checks (`check_access` on every stack and memory access, CPL and IOPL checks) in
the same order, so a fault is the same fault. Sites never reach them under debug
breakpoints, single-stepping, a held #DB, freed init code or inside `atomic` blocks
(those go through `Interpreter._execute`), nor with SMAP on (not compiled).
tests/test_step_closures.py checks them against the handlers state by state.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from model.lang.ir import Imm, Indirect, Instr, Mem, Reg, ThisCpu, Var
from model.x86 import alu
from model.x86.arch import IF
from model.x86.memory import check_access, frames_after_rsp_move, owner_of, stored_word
from model.x86.state import REGISTER_INDEX, WORD, CodeAddr, Cpu, Machine, Run

if TYPE_CHECKING:
    from model.system.interp import Handler, Interpreter, SysState, _Site

MASK = (1 << 64) - 1
_new = tuple.__new__
_PC = Cpu._fields.index("pc")
_RSP = Cpu._fields.index("rsp")
_REGS = Cpu._fields.index("regs")
_RFLAGS = Cpu._fields.index("rflags")
_RUN = Cpu._fields.index("run")
_MCIP = Cpu._fields.index("mcip")
_SHADOW = Cpu._fields.index("shadow")
_IPI_NMI = Cpu._fields.index("ipi_nmi")
_HALTED = Run.HALTED
_NOT_IF = ~IF & MASK
_CONDITIONS = alu.CONDITIONS  # each Jcc's test, looked up once per site


class Unusual(Exception):
    """The compiled step does not cover this state: run the general handler."""


_UNUSUAL = Unusual()  # raised as is (no traceback is kept: it is caught one frame up)

Body = Callable[["SysState", int, "_Site", int], "SysState"]
# An operand read: (state, machine, CPU record, CPU index) -> value.
Reader = Callable[["SysState", Machine, Cpu, int], Any]
# An operand write: (state, machine, CPU record, its fields with pc/flags set, CPU index,
# value) -> the successor state.
Writer = Callable[["SysState", Machine, Cpu, list[Any], int, Any], "SysState"]

# The `_i_alu` operations compiled: ADC/SBB read CF and NOT sets no flag (general path).
_ALU_OPS = frozenset(alu.BINARY)


def compile_site(interp: Interpreter, site: _Site) -> Handler | None:
    """The site's compiled step, or None when its instruction has none."""
    ins = site.ins
    if ins is None or site.handler is None or interp.platform.smap:
        return None
    maker = _MAKERS.get(getattr(site.handler, "__name__", ""))
    return maker(_Compiler(interp, site, ins)) if maker is not None else None


class _Compiler:
    """What the closures of one site share: the interpreter's tables and the site."""

    def __init__(self, interp: Interpreter, site: _Site, ins: Instr):
        from model.system.interp import SysState

        self.interp = interp
        self.layout = interp.layout
        self.platform = interp.platform
        self.site = site
        self.ins = ins
        self.state_type = SysState

    # -- building the successor ------------------------------------------------------------
    def put(self) -> Callable[[SysState, Machine, int, list[Any]], SysState]:
        """(state, machine, CPU index, CPU fields) -> the state with that CPU record."""
        state_type = self.state_type

        def put(s: SysState, m: Machine, i: int, f: list[Any]) -> SysState:
            return _rebuilt(s, m, i, f, state_type)
        return put

    def to_pc(self) -> Callable[[SysState, int, CodeAddr], SysState]:
        """(state, CPU index, pc) -> the state with only that CPU's pc changed."""
        state_type = self.state_type

        def to_pc(s: SysState, i: int, pc: CodeAddr) -> SysState:
            m = s.machine
            f = list(m.cpus[i])
            f[_PC] = pc
            return _rebuilt(s, m, i, f, state_type)
        return to_pc

    def evaluator(self, e: Any) -> Callable[[SysState, int], Any]:
        return self.interp.evaluator(e, self.ins)

    # -- operands ---------------------------------------------------------------------------
    def reader(self, op: object) -> Reader | None:
        """An operand read as `Interpreter.read` reads it, concrete cases only."""
        if isinstance(op, Imm):
            ev = self.evaluator(op.expr)
            return lambda s, m, cpu, i: ev(s, i)
        if isinstance(op, Reg):
            if op.high or (op.name != "rsp" and op.name not in REGISTER_INDEX):
                return None
            if op.size == WORD:
                if op.name == "rsp":
                    return lambda s, m, cpu, i: cpu.rsp
                k = REGISTER_INDEX[op.name]
                return lambda s, m, cpu, i: cpu.regs[k]
            low = (1 << (8 * op.size)) - 1
            if op.name == "rsp":
                def low_rsp(s: SysState, m: Machine, cpu: Cpu, i: int) -> Any:
                    v = cpu.rsp
                    if type(v) is not int:
                        raise _UNUSUAL
                    return v & low
                return low_rsp
            k = REGISTER_INDEX[op.name]

            def low_reg(s: SysState, m: Machine, cpu: Cpu, i: int) -> Any:
                v = cpu.regs[k]
                if type(v) is not int:
                    raise _UNUSUAL
                return v & low
            return low_reg
        if isinstance(op, Mem):
            return self.mem_reader(op)
        return None

    def fixed_slots(self, op: Mem) -> tuple[tuple[int, int] | None, ...] | None:
        """Per CPU, the variable slot (`Layout.slot_at`) of a Mem operand whose address
        is fixed (no base or index register: a variable, or this CPU's %gs: copy of one),
        worked out once; None when the address depends on registers."""
        if op.base is not None or op.index is not None:
            return None
        address = self.address(op)
        if address is None:
            return None
        layout = self.layout
        out = []
        for c in range(layout.ncpus):
            # (the GS base is this CPU's own area whenever `address` does not refuse)
            fixed = self._fixed_address(op, c)
            out.append(layout.slot_at(fixed) if fixed is not None else None)
        return tuple(out)

    def _fixed_address(self, op: Mem, cpu: int) -> int | None:
        layout = self.layout
        total = op.disp
        if op.sym is not None:
            name = op.sym.name
            if op.seg == "gs":
                total += layout.percpu_offset[name]
            else:
                total += layout.var_address(name, cpu)
        if op.seg == "gs":
            total += layout.percpu_area(cpu)
        return total & MASK

    def address(self, op: Mem) -> Callable[[Cpu, int], int] | None:
        """`Interpreter._address` of a Mem operand with integer registers and this CPU's
        own GS base (the rest: Unusual); the sum is taken modulo 2^64 once, which is what
        adding modulo 2^64 at each step gives."""
        layout = self.layout
        ncpus = layout.ncpus
        fixed = [op.disp] * ncpus
        if op.sym is not None:
            name = op.sym.name
            if op.seg == "gs":
                if name not in layout.percpu_offset:
                    return None  # an error the general path reports
                fixed = [d + layout.percpu_offset[name] for d in fixed]
            else:
                if name not in layout.var_index:
                    return None
                fixed = [d + layout.var_address(name, c) for c, d in enumerate(fixed)]
        if op.seg == "gs":
            fixed = [d + layout.percpu_area(c) for c, d in enumerate(fixed)]
        elif op.seg:
            return None
        const = tuple(fixed)
        base = op.base
        index = op.index
        scale = op.scale
        if base is not None and base != "rsp" and base not in REGISTER_INDEX:
            return None
        if index is not None and index not in REGISTER_INDEX:
            return None
        bk = REGISTER_INDEX.get(base, -1) if base is not None else -1
        ik = REGISTER_INDEX[index] if index is not None else -1
        gs = op.seg == "gs"
        base_rsp = base == "rsp"
        has_base = base is not None

        def address(cpu: Cpu, i: int) -> int:
            if gs and cpu.gs_base is not None:
                raise _UNUSUAL  # a foreign GS base: an incident the general path records
            total = const[i]
            if has_base:
                b = cpu.rsp if base_rsp else cpu.regs[bk]
                if type(b) is not int:
                    raise _UNUSUAL
                total += b
            if ik >= 0:
                x = cpu.regs[ik]
                if type(x) is not int:
                    raise _UNUSUAL
                total += x * scale
            return total & MASK
        return address

    def mem_reader(self, op: Mem) -> Reader | None:
        """`Interpreter.load` of a Mem operand: a design variable's bytes, or a checked
        stack/guest word within one word."""
        address = self.address(op)
        if address is None:
            return None
        size = op.size
        low = (1 << (8 * size)) - 1
        slot_at = self.layout.slot_at
        platform = self.platform
        fixed = self.fixed_slots(op)
        if fixed is not None and all(x is not None for x in fixed):
            slots = cast(tuple[tuple[int, int], ...], fixed)
            gs = op.seg == "gs"

            def load_var(s: SysState, m: Machine, cpu: Cpu, i: int) -> Any:
                if gs and cpu.gs_base is not None:
                    raise _UNUSUAL
                k, offset = slots[i]
                return _bytes_of(s.vars[k], offset, size, low)
            return load_var

        def load(s: SysState, m: Machine, cpu: Cpu, i: int) -> Any:
            addr = address(cpu, i)
            slot = slot_at(addr)
            if slot is not None:
                value = s.vars[slot[0]]
                offset = slot[1]
            else:
                if m.sym_memory:
                    raise _UNUSUAL
                check_access(platform, addr, cpu.cpl)
                offset = addr % WORD
                mem = m.memory
                aligned = addr - offset
                k = bisect_left(mem, (aligned,))
                value = mem[k][1] if k < len(mem) and mem[k][0] == aligned else 0
            return _bytes_of(value, offset, size, low)
        return load

    def writer(self, op: object, width: int) -> Writer | None:
        """`Interpreter.write` of a register of `width` bits or a Mem operand."""
        platform = self.platform
        state_type = self.state_type
        if isinstance(op, Reg):
            if op.high or (op.name != "rsp" and op.name not in REGISTER_INDEX):
                return None
            low = (1 << width) - 1
            if op.name == "rsp":
                def to_rsp(
                    s: SysState, m: Machine, cpu: Cpu, f: list[Any], i: int, value: Any
                ) -> SysState:
                    old = cpu.rsp
                    if width < 64:
                        if type(value) is not int or type(old) is not int:
                            raise _UNUSUAL
                        value = _merged(old, value, width, low)
                    f[_RSP] = value
                    frames = frames_after_rsp_move(platform, m.frames, i, old, value)
                    return _rebuilt(s, m, i, f, state_type, frames=frames)
                return to_rsp
            k = REGISTER_INDEX[op.name]

            def to_reg(
                s: SysState, m: Machine, cpu: Cpu, f: list[Any], i: int, value: Any
            ) -> SysState:
                regs = list(cpu.regs)
                if width < 64:
                    old = regs[k]
                    if type(value) is not int or type(old) is not int:
                        raise _UNUSUAL
                    value = _merged(old, value, width, low)
                regs[k] = value
                f[_REGS] = tuple(regs)
                return _rebuilt(s, m, i, f, state_type)
            return to_reg
        if isinstance(op, Mem):
            return self.mem_writer(op)
        return None

    def mem_writer(self, op: Mem) -> Writer | None:
        """`Interpreter.store` at a Mem operand: a design variable's bytes merged, or a
        checked word of stack/guest memory (frames landed on marked as `write` marks
        them)."""
        address = self.address(op)
        if address is None:
            return None
        size = op.size
        slot_at = self.layout.slot_at
        platform = self.platform
        state_type = self.state_type
        low = (1 << (8 * size)) - 1
        fixed = self.fixed_slots(op)
        if fixed is not None and all(x is not None for x in fixed):
            slots = cast(tuple[tuple[int, int], ...], fixed)
            gs = op.seg == "gs"

            def store_var(
                s: SysState, m: Machine, cpu: Cpu, f: list[Any], i: int, value: Any
            ) -> SysState:
                if gs and cpu.gs_base is not None:
                    raise _UNUSUAL
                k, offset = slots[i]
                if size != WORD or offset != 0:
                    value = _merge(s.vars[k], offset, size, low, value)
                values = list(s.vars)
                values[k] = value
                return _rebuilt(s, m, i, f, state_type, values=tuple(values))
            return store_var

        def store(
            s: SysState, m: Machine, cpu: Cpu, f: list[Any], i: int, value: Any
        ) -> SysState:
            addr = address(cpu, i)
            slot = slot_at(addr)
            if slot is not None:
                k, offset = slot
                if size != WORD or offset != 0:
                    value = _merge(s.vars[k], offset, size, low, value)
                values = list(s.vars)
                values[k] = value
                return _rebuilt(s, m, i, f, state_type, values=tuple(values))
            else:
                if m.sym_memory:
                    raise _UNUSUAL
                cpl = cpu.cpl
                offset = addr % WORD
                aligned = addr - offset
                if size < WORD:
                    check_access(platform, addr, cpl)
                    mem = m.memory
                    j = bisect_left(mem, (aligned,))
                    old = mem[j][1] if j < len(mem) and mem[j][0] == aligned else 0
                    value = _merge(old, offset, size, low, value)
                check_access(platform, aligned, cpl)
                done = stored_word(m, aligned, value, owner_of(m, i, cpl))
                if done is None:
                    raise _UNUSUAL
                return _rebuilt(s, m, i, f, state_type, memory=done[0], frames=done[1])
        return store


def _bytes_of(word: Any, offset: int, size: int, low: int) -> Any:
    """`Interpreter._bytes_of` of an integer word: `size` bytes from byte `offset`
    (little-endian); a whole word as it is."""
    if size == WORD and offset == 0:
        return word
    if offset + size > WORD or type(word) is not int:
        raise _UNUSUAL
    return (word >> (8 * offset)) & low


def _merged(old: int, value: int, width: int, low: int) -> int:
    """alu.merge_register."""
    if width >= 32:
        return value & low
    return (old & ~low) | (value & low)


def _merge(old: Any, offset: int, size: int, low: int, value: Any) -> int:
    """`Interpreter._merge` of integers (a code address's old bytes are dropped)."""
    if offset + size > WORD or type(value) is not int:
        raise _UNUSUAL
    if type(old) is CodeAddr:
        old = 0
    elif type(old) is not int:
        raise _UNUSUAL
    keep_mask = MASK & ~(low << (8 * offset))
    merged: int = (old & keep_mask) | ((value & low) << (8 * offset))
    return merged


# -- the compiled instructions ---------------------------------------------------------------
def _goto(c: _Compiler, target: CodeAddr | None) -> Body | None:
    """An instruction whose only effect is the pc: NOP, a direct JMP, `atomic` ends."""
    if target is None:
        return None
    to_pc = c.to_pc()

    def body(s: SysState, i: int, site: _Site, choice: int) -> SysState:
        return to_pc(s, i, target)
    return body


def _nop(c: _Compiler) -> Body | None:
    return _goto(c, c.site.next_pc)


def _jmp(c: _Compiler) -> Body | None:
    if isinstance(c.ins.args[0], Indirect):
        return None
    return _goto(c, c.site.goto)


def _at_cpl0_set(c: _Compiler, field: int, value: Any) -> Body:
    """A CPL-0-only instruction that sets one field of the CPU record and goes on (at
    another CPL the general handler raises its #GP)."""
    put, nxt = c.put(), c.site.next_pc

    def body(s: SysState, i: int, site: _Site, choice: int) -> SysState:
        m = s.machine
        cpu = m.cpus[i]
        if cpu.cpl != 0:
            raise _UNUSUAL
        f = list(cpu)
        f[_PC] = nxt
        f[field] = value
        return put(s, m, i, f)
    return body


def _halt(c: _Compiler) -> Body | None:
    """HLT: #GP(0) unless CPL 0 (insn.hlt), then halted at the next instruction."""
    return _at_cpl0_set(c, _RUN, _HALTED)


def _clear_mcip(c: _Compiler) -> Body | None:
    return _at_cpl0_set(c, _MCIP, False)


def _cli(c: _Compiler) -> Body | None:
    """CLI at CPL 0 (no IOPL check to make) on integer RFLAGS."""
    put, nxt = c.put(), c.site.next_pc

    def body(s: SysState, i: int, site: _Site, choice: int) -> SysState:
        m = s.machine
        cpu = m.cpus[i]
        flags = cpu.rflags
        if cpu.cpl != 0 or type(flags) is not int:
            raise _UNUSUAL
        f = list(cpu)
        f[_RFLAGS] = flags & _NOT_IF
        f[_PC] = nxt
        return put(s, m, i, f)
    return body


def _assign(c: _Compiler) -> Body | None:
    """`name = expr;` of a design variable (this CPU's copy of a per-CPU one)."""
    name, expr = c.ins.args[0], c.ins.args[1]
    slots = c.interp._var_slots
    if not isinstance(name, str) or name not in slots:
        return None
    base, per_cpu = slots[name]
    ev = c.evaluator(expr)
    nxt = c.site.next_pc
    state_type = c.state_type

    def body(s: SysState, i: int, site: _Site, choice: int) -> SysState:
        value = ev(s, i)
        values = list(s.vars)
        values[base + i if per_cpu else base] = value
        m = s.machine
        f = list(m.cpus[i])
        f[_PC] = nxt
        return _rebuilt(s, m, i, f, state_type, values=tuple(values))
    return body


def _condition_goes_on(c: _Compiler, on_false: CodeAddr | None) -> Body | None:
    """`assert(e)` (when it holds) and `if (!e) goto` with an integer condition: the
    next instruction, or `on_false`; anything else is the general path's."""
    expr = c.ins.args[0]
    ev = c.evaluator(expr)
    to_pc, nxt = c.to_pc(), c.site.next_pc

    def body(s: SysState, i: int, site: _Site, choice: int) -> SysState:
        v = ev(s, i)
        if type(v) is not int:
            raise _UNUSUAL
        if v:
            pc = nxt
        elif on_false is None:
            raise _UNUSUAL  # a failed assertion: its incident is the general path's
        else:
            pc = on_false
        return to_pc(s, i, pc)
    return body


def _assert(c: _Compiler) -> Body | None:
    return _condition_goes_on(c, None)


def _branch_false(c: _Compiler) -> Body | None:
    if c.site.goto is None:
        return None
    return _condition_goes_on(c, c.site.goto)


def _wait(c: _Compiler) -> Body | None:
    """A ready wait (an integer condition that holds) goes on; the rest is general."""
    return _condition_goes_on(c, None)


def _send_nmi(c: _Compiler) -> Body | None:
    """`send_nmi(e)` to one CPU (not a shorthand): its NMI IPI in flight."""
    e = c.ins.args[0]
    if isinstance(e, Var) and e.name in ("SELF", "ALL_BUT_SELF", "ALL"):
        return None
    ev = c.evaluator(e)
    put, nxt = c.put(), c.site.next_pc
    self_only = isinstance(e, ThisCpu)

    def body(s: SysState, i: int, site: _Site, choice: int) -> SysState:
        m = s.machine
        if self_only:
            f = list(m.cpus[i])
            f[_IPI_NMI] = True
            f[_PC] = nxt
            return put(s, m, i, f)
        dest = ev(s, i)
        if type(dest) is not int or not 0 <= dest < len(m.cpus) or dest == i:
            raise _UNUSUAL
        cpus = list(m.cpus)
        t = list(cpus[dest])
        t[_IPI_NMI] = True
        cpus[dest] = _new(Cpu, t)
        f = list(cpus[i])
        f[_PC] = nxt
        return _rebuilt(s, m, i, f, type(s), cpus=cpus)
    return body


def _jcc(c: _Compiler) -> Body | None:
    """Jcc on integer RFLAGS with no lazy record of a symbolic compare."""
    holds = _CONDITIONS.get(c.ins.cc)
    goto = c.site.goto
    if holds is None or goto is None:
        return None
    put, nxt = c.put(), c.site.next_pc

    def body(s: SysState, i: int, site: _Site, choice: int) -> SysState:
        lazy = s.lazy
        if lazy and lazy[i] is not None:
            raise _UNUSUAL
        m = s.machine
        cpu = m.cpus[i]
        flags = cpu.rflags
        if type(flags) is not int:
            raise _UNUSUAL
        f = list(cpu)
        f[_PC] = goto if holds(flags) else nxt
        return put(s, m, i, f)
    return body


def _pusher(c: _Compiler) -> Callable[[SysState, Machine, Cpu, int, Any, CodeAddr], SysState]:
    """PUSH's effect (memory.push): RSP - 8 checked and written, RSP and the pc set."""
    platform = c.platform
    state_type = c.state_type

    def pushed(
        s: SysState, m: Machine, cpu: Cpu, i: int, value: Any, pc: CodeAddr
    ) -> SysState:
        rsp = cpu.rsp
        if type(rsp) is not int or m.sym_memory:
            raise _UNUSUAL
        new_rsp = (rsp - WORD) & MASK
        check_access(platform, new_rsp, cpu.cpl)
        done = stored_word(m, new_rsp, value, -1)  # a push never only modifies a frame
        if done is None:
            raise _UNUSUAL
        f = list(cpu)
        f[_RSP] = new_rsp
        f[_PC] = pc
        return _rebuilt(s, m, i, f, state_type, memory=done[0], frames=done[1])
    return pushed


def _push(c: _Compiler) -> Body | None:
    op = c.ins.args[0]
    if not isinstance(op, (Imm, Reg)):
        return None
    read = c.reader(op)
    if read is None:
        return None
    pushed, nxt = _pusher(c), c.site.next_pc

    def body(s: SysState, i: int, site: _Site, choice: int) -> SysState:
        m = s.machine
        cpu = m.cpus[i]
        return pushed(s, m, cpu, i, read(s, m, cpu, i), nxt)
    return body


def _call(c: _Compiler) -> Body | None:
    goto = c.site.goto
    if isinstance(c.ins.args[0], Indirect) or goto is None:
        return None
    pushed, ret = _pusher(c), c.site.next_pc

    def body(s: SysState, i: int, site: _Site, choice: int) -> SysState:
        m = s.machine
        return pushed(s, m, m.cpus[i], i, ret, goto)
    return body


def _pushf(c: _Compiler) -> Body | None:
    pushed, nxt = _pusher(c), c.site.next_pc

    def body(s: SysState, i: int, site: _Site, choice: int) -> SysState:
        lazy = s.lazy
        if lazy and lazy[i] is not None:
            raise _UNUSUAL
        m = s.machine
        cpu = m.cpus[i]
        return pushed(s, m, cpu, i, cpu.rflags, nxt)
    return body


def _popper(c: _Compiler) -> Callable[[Machine, Cpu, int], tuple[Any, list[Any], Any, Any]]:
    """POP's effect (memory.pop): the word at RSP checked and read, forgotten, RSP + 8
    (frames it passes over abandoned). Returns the value, the CPU's fields with the new
    RSP, and the machine's memory and frames."""
    platform = c.platform

    def popped(m: Machine, cpu: Cpu, i: int) -> tuple[Any, list[Any], Any, Any]:
        rsp = cpu.rsp
        if type(rsp) is not int or m.sym_memory:
            raise _UNUSUAL
        check_access(platform, rsp, cpu.cpl)
        mem = m.memory
        k = bisect_left(mem, (rsp,))
        value = mem[k][1] if k < len(mem) and mem[k][0] == rsp else 0
        new_rsp = rsp + WORD
        j = bisect_left(mem, (new_rsp,))
        if k != j:
            mem = mem[:k] + mem[j:]
        f = list(cpu)
        f[_RSP] = new_rsp
        return value, f, mem, frames_after_rsp_move(platform, m.frames, i, rsp, new_rsp)
    return popped


def _pop(c: _Compiler) -> Body | None:
    op = c.ins.args[0]
    if not isinstance(op, Reg) or op.high or op.name not in REGISTER_INDEX:
        return None
    k = REGISTER_INDEX[op.name]
    popped, nxt = _popper(c), c.site.next_pc
    state_type = c.state_type

    def body(s: SysState, i: int, site: _Site, choice: int) -> SysState:
        m = s.machine
        value, f, mem, frames = popped(m, m.cpus[i], i)
        regs = list(f[_REGS])
        regs[k] = value
        f[_REGS] = tuple(regs)
        f[_PC] = nxt
        return _rebuilt(s, m, i, f, state_type, memory=mem, frames=frames)
    return body


def _ret(c: _Compiler) -> Body | None:
    popped = _popper(c)
    code_at = c.layout.code_at
    state_type = c.state_type

    def body(s: SysState, i: int, site: _Site, choice: int) -> SysState:
        m = s.machine
        value, f, mem, frames = popped(m, m.cpus[i], i)
        if type(value) is int:
            value = code_at(value)
        if type(value) is not CodeAddr:
            raise _UNUSUAL  # RET to no code: the general path's #GP
        f[_PC] = value
        return _rebuilt(s, m, i, f, state_type, memory=mem, frames=frames)
    return body


def _rebuilt(
    s: SysState, m: Machine, i: int, f: list[Any], state_type: type, *,
    memory: Any = None, frames: Any = None, values: Any = None, cpus: list[Any] | None = None,
) -> SysState:
    """The successor with CPU i's record built from its fields `f` (in `cpus`, when other
    records change too) and, when given, the machine's new memory and frames and the
    design's new variable values: each level of the state built once."""
    if cpus is None:
        cpus = list(m.cpus)
    cpus[i] = _new(Cpu, f)
    mf = list(m)
    mf[0] = tuple(cpus)
    if memory is not None:
        mf[1] = memory
    if frames is not None:
        mf[2] = frames
    sf = list(s)
    sf[0] = _new(Machine, mf)
    if values is not None:
        sf[1] = values
    return _new(state_type, sf)


def _mov(c: _Compiler) -> Body | None:
    ins = c.ins
    src, dst = ins.args
    width = ins.width
    read = c.reader(src)
    write = c.writer(dst, width)
    if read is None or write is None or (isinstance(src, Mem) and isinstance(dst, Mem)):
        return None
    narrow_imm = (1 << width) - 1 if width < 64 and isinstance(src, Imm) else 0
    nxt = c.site.next_pc

    def body(s: SysState, i: int, site: _Site, choice: int) -> SysState:
        m = s.machine
        cpu = m.cpus[i]
        value = read(s, m, cpu, i)
        if narrow_imm:
            if type(value) is not int:
                raise _UNUSUAL
            value &= narrow_imm
        f = list(cpu)
        f[_PC] = nxt
        return write(s, m, cpu, f, i, value)
    return body


def _alu(c: _Compiler) -> Body | None:
    """ADD SUB AND OR XOR CMP TEST INC DEC NEG SHL SHR SAR IMUL on integers, with no
    lazy record: alu.arith's result and flags, written once."""
    ins = c.ins
    op, a, w = ins.op, ins.args, ins.width
    if op not in _ALU_OPS:
        return None
    if len(a) == 3:
        src, x_op, dst = a[0], a[1], a[2]
    elif len(a) == 2:
        src, x_op, dst = a[0], a[1], a[1]
    else:
        src, x_op, dst = None, a[0], a[0]
    if sum(isinstance(o, Mem) for o in a) > 1:
        return None
    read_x = c.reader(x_op)
    read_y = c.reader(src) if src is not None else None
    stores = op not in ("cmp", "test")
    write = c.writer(dst, w) if stores else None
    if read_x is None or (src is not None and read_y is None) or (stores and write is None):
        return None
    arith = alu.arith
    put, nxt = c.put(), c.site.next_pc

    def body(s: SysState, i: int, site: _Site, choice: int) -> SysState:
        m = s.machine
        cpu = m.cpus[i]
        xv = read_x(s, m, cpu, i)
        yv = 1 if read_y is None else read_y(s, m, cpu, i)
        lazy = s.lazy
        flags = cpu.rflags
        if (type(xv) is not int or type(yv) is not int or type(flags) is not int
                or (lazy and lazy[i] is not None)):
            raise _UNUSUAL
        r, flags = arith(op, xv, yv, w, flags)
        f = list(cpu)
        f[_RFLAGS] = flags
        f[_PC] = nxt
        if write is None:
            return put(s, m, i, f)
        return write(s, m, cpu, f, i, r)
    return body


# By the general handler's name (isa's `semantics`, with the aliases the class makes):
# a compiled step stands for exactly that handler.
_MAKERS: dict[str, Callable[[_Compiler], Body | None]] = {
    "_i_nop": _nop,
    "_i_c_nop": _nop,  # also c.atomic_end
    "_i_jmp": _jmp,
    "_i_hlt": _halt,
    "_i_c_halt": _halt,
    "_i_c_clear_mcip": _clear_mcip,
    "_i_cli": _cli,
    "_i_c_cli": _cli,
    "_i_c_assign": _assign,
    "_i_c_assert": _assert,
    "_i_c_branch_false": _branch_false,
    "_i_c_wait_until": _wait,  # also c.wait_timeout
    "_i_c_send_nmi": _send_nmi,
    "_i_jcc": _jcc,
    "_i_push": _push,
    "_i_call": _call,
    "_i_pushf": _pushf,
    "_i_pop": _pop,
    "_i_ret": _ret,
    "_i_mov": _mov,
    "_i_alu": _alu,
}

__all__ = ["Unusual", "compile_site"]
