"""Interrupt shadows: STI and MOV SS / POP SS.

SDM Vol. 2 STI ("If IF = 0, maskable hardware interrupts remain inhibited on the
instruction boundary following an execution of STI"; "In a sequence of STI instructions,
only the first instruction in the sequence is guaranteed to delay interrupts"), Vol. 3A
§6.8.3 (MOV SS / POP SS inhibit interrupts, debug exceptions and single-step traps until
the boundary after the next instruction).

`after_instruction(cpu, shadow_before)` is the boundary after an instruction that started
with `shadow_before`; a shadow set by that very instruction survives it.
"""

from __future__ import annotations

from model.x86.arch import DB, IF, RFLAGS_FIXED
from model.x86.events import (
    after_instruction,
    can_take_external,
    can_take_nmi,
    db_due,
    deliver_held_db,
)
from model.x86.instructions import cli, mov_ss, sti
from model.x86.state import CodeAddr, Shadow
from tests.x86_helpers import handler, last_frame, setup


def _step(m, op, *args):
    """Run one instruction on CPU 0 and pass the boundary after it."""
    before = m.cpus[0].shadow
    m = op(m, 0, *args)
    return m.with_cpu(0, after_instruction(m.cpus[0], before))


def _nop(m, _cpu_i):
    return m


def test_sti_with_if_clear_delays_interrupts_by_one_instruction():
    """SDM Vol. 2 STI: with IF=0, interrupts stay inhibited on the boundary after STI and
    are recognised after the next instruction."""
    _, m = setup(cpl=0, rflags=RFLAGS_FIXED)
    m = _step(m, sti)
    cpu = m.cpus[0]
    assert cpu.rflags & IF and cpu.shadow is Shadow.STI
    assert not can_take_external(cpu)
    m = _step(m, _nop)
    assert m.cpus[0].shadow is Shadow.NONE
    assert can_take_external(m.cpus[0])


def test_sti_with_if_set_has_no_shadow():
    """SDM Vol. 2 STI: "The STI instruction delays recognition of interrupts only if it is
    executed with EFLAGS.IF = 0"."""
    _, m = setup(cpl=0)
    m = _step(m, sti)
    assert m.cpus[0].shadow is Shadow.NONE
    assert can_take_external(m.cpus[0])


def test_sti_sti_does_not_extend_the_shadow():
    """SDM Vol. 2 STI: "In the following instruction sequence, interrupts may be recognized
    before RET executes: STI; STI; RET"."""
    _, m = setup(cpl=0, rflags=RFLAGS_FIXED)
    m = _step(m, sti)
    m = _step(m, sti)
    assert can_take_external(m.cpus[0])


def test_cli_sti_window():
    """SDM Vol. 2 CLI/STI: CLI clears IF, masking interrupts (§6.8.1)."""
    _, m = setup(cpl=0)
    m = _step(m, cli)
    assert not m.cpus[0].rflags & IF
    assert not can_take_external(m.cpus[0])


def test_sti_shadow_does_not_block_nmi_in_the_model():
    """SDM Vol. 2 STI leaves NMI blocking after STI implementation-specific ("NMIs may be
    blocked for one macroinstruction following an STI"); the model takes the weaker
    guarantee: an NMI can land in the STI shadow."""
    _, m = setup(cpl=0, rflags=RFLAGS_FIXED)
    m = _step(m, sti)
    assert can_take_nmi(m.cpus[0])


def test_mov_ss_holds_db_until_the_boundary_after_the_next_instruction():
    """SDM §6.8.3: a debug exception triggered by MOV SS / POP SS is held until the
    instruction boundary following the next instruction; interrupts are inhibited too."""
    p, m = setup(cpl=0)
    m = _step(m, mov_ss, True)
    cpu = m.cpus[0]
    assert cpu.held_db and cpu.shadow is Shadow.MOV_SS
    assert not db_due(cpu)
    assert not can_take_external(cpu)
    m = _step(m, _nop)
    cpu = m.cpus[0]
    assert cpu.shadow is Shadow.NONE
    assert db_due(cpu) and can_take_external(cpu)
    m = deliver_held_db(p, m.with_cpu(0, cpu._replace(pc=CodeAddr("hv", 2))), 0)
    cpu = m.cpus[0]
    assert not cpu.held_db
    f = last_frame(m)
    assert (f.vector, f.source, f.stack) == (DB, "exception", "db_ist")
    assert cpu.pc == CodeAddr(handler(DB), 0)


def test_mov_ss_without_debug_trap_holds_nothing():
    """SDM §6.8.3: the shadow alone inhibits interrupts; no #DB is pending."""
    _, m = setup(cpl=0)
    m = _step(m, mov_ss)
    assert not m.cpus[0].held_db
    assert not can_take_external(m.cpus[0])
    m = _step(m, _nop)
    assert not db_due(m.cpus[0])
    assert can_take_external(m.cpus[0])
