"""Debug exceptions: breakpoints, the single-step trap and the MOV SS / POP SS hold-back.

SDM Vol. 3B §17.2.4-17.2.5 (DR7: R/W 00 instruction, 01 data writes, 11 data reads or
writes; LEN 1, 2, 4, 8 bytes, the address aligned to LEN), §17.3.1.1 (instruction
breakpoints are faults, suppressed by RF), §17.3.1.2 (data breakpoints are traps),
§17.3.1.4 (single-step: a trap after an instruction executed with TF set; INT n clears
TF); Vol. 3A §6.8.3 (MOV SS / POP SS: "Any single-step trap that would be delivered
following the MOV to SS ... is suppressed", "Any instruction breakpoint on the next
instruction is suppressed", other debug exceptions are held until the boundary after the
next instruction, and if that instruction is SYSCALL, SYSENTER, INT n or INT3 the #DB is
delivered after the transfer, at CPL 0, on whatever stack is then current); Vol. 2
SYSENTER (it clears IF, RF and VM, not TF).

Facts the SDM does not state and the model takes from Xen's analysis of XSA-204/XSA-260
(REFERENCE.md): SYSCALL decides its single-step trap on the RFLAGS it leaves (after
FMASK); a fault of the instruction in the MOV SS shadow, or ICEBP there, drops the held
#DB.
"""

from __future__ import annotations

import textwrap
from collections import deque
from pathlib import Path

import pytest

from checker.errors import InputError
from model.lang.parser import parse_design
from model.system.interp import SysState
from model.system.transition import Action, DesignSystem, Environment
from model.x86 import debug
from model.x86.arch import DB, RF, RFLAGS_FIXED, TF
from model.x86.state import Breakpoint, CodeAddr, Cpu, Frame, Shadow

# -- the rules (model.x86.debug) --------------------------------------------------------------


def test_write_breakpoint_matches_writes_only_and_rw_matches_both():
    """SDM §17.2.4: R/W=01 breaks on data writes only, R/W=11 on reads or writes."""
    write = (Breakpoint("write", 0x1000, 8),)
    rw = (Breakpoint("rw", 0x1000, 8),)
    assert debug.data_breakpoint_hit(write, [(0x1000, 8, True)])
    assert not debug.data_breakpoint_hit(write, [(0x1000, 8, False)])
    assert debug.data_breakpoint_hit(rw, [(0x1000, 8, False)])
    assert not debug.data_breakpoint_hit((Breakpoint("exec", 0x1000),), [(0x1000, 8, True)])


def test_breakpoint_length_covers_an_aligned_range():
    """SDM §17.2.5: LEN 2/4/8 with the address's low bits ignored: a 2-byte breakpoint at
    0x1001 watches 0x1000-0x1001; an access overlapping the range matches."""
    bp = (Breakpoint("rw", 0x1001, 2),)
    assert debug.data_breakpoint_hit(bp, [(0x1000, 1, False)])
    assert debug.data_breakpoint_hit(bp, [(0xFF8, 16, False)])  # overlaps from below
    assert not debug.data_breakpoint_hit(bp, [(0x1002, 2, False)])
    assert not debug.data_breakpoint_hit(bp, [(0xFF8, 8, False)])


def test_data_breakpoint_bits_name_every_dr_matched():
    """SDM Vol. 3B §18.2.3 (DR6 B0-B3: "Indicates (when set) that its associated
    breakpoint condition was met when a debug exception was generated"; §17.2.3 in
    older editions): the n-th breakpoint armed is DRn; each data breakpoint an access
    matches sets its own bit, an instruction breakpoint or a write breakpoint on a read
    sets none, and a fifth breakpoint has no DRn (FRED's #DB event data, FRED spec §5.2,
    carries these bits)."""
    bps = (
        Breakpoint("exec", 0x1000), Breakpoint("rw", 0x1000, 8), Breakpoint("write", 0x1004, 4),
        Breakpoint("rw", 0x2000, 8), Breakpoint("rw", 0x1000, 8),
    )
    assert debug.data_breakpoint_bits(bps, [(0x1000, 8, True)]) == 0b0110
    assert debug.data_breakpoint_bits(bps, [(0x1000, 8, False)]) == 0b0010
    assert debug.data_breakpoint_bits(bps, [(0x1000, 1, True), (0x2000, 8, False)]) == 0b1010
    assert debug.data_breakpoint_bits(bps, [(0x3000, 8, True)]) == 0


def _cpu(rflags: int = RFLAGS_FIXED) -> Cpu:
    return Cpu(cpl=3, pc=CodeAddr("g", 0), rsp=0x1000, regs=(0,) * 15, rflags=rflags)


def test_instruction_breakpoint_is_suppressed_by_rf_and_in_the_mov_ss_shadow():
    """SDM §17.3.1.1: RF=1 suppresses an instruction breakpoint; §6.8.3: "Any instruction
    breakpoint on the next instruction is suppressed (as if EFLAGS.RF were 1)"."""
    bp = (Breakpoint("exec", CodeAddr("g", 0)),)
    pc = CodeAddr("g", 0)
    assert debug.instruction_breakpoint_hit(bp, pc, 0x5000, _cpu(), Shadow.NONE)
    assert not debug.instruction_breakpoint_hit(bp, pc, 0x5000, _cpu(RFLAGS_FIXED | RF),
                                                Shadow.NONE)
    assert not debug.instruction_breakpoint_hit(bp, pc, 0x5000, _cpu(), Shadow.MOV_SS)
    assert debug.instruction_breakpoint_hit((Breakpoint("exec", 0x5000),), pc, 0x5000, _cpu(),
                                            Shadow.NONE)


def test_single_step_is_decided_by_the_starting_tf_except_for_syscall_and_events():
    """SDM §17.3.1.4: a trap after an instruction that started with TF=1 (POPF setting TF
    traps after the next instruction); §6.8.3: MOV SS's own single-step trap is suppressed;
    INT n/INT3 clear TF on delivery and trap on the TF they leave; SYSCALL too (XSA-204:
    the resulting TF, after FMASK)."""
    on, off = _cpu(RFLAGS_FIXED | TF), _cpu()
    assert debug.single_step_trap(debug.StepKind.ORDINARY, on, off)  # POPF clearing TF
    assert not debug.single_step_trap(debug.StepKind.ORDINARY, off, on)  # POPF setting TF
    assert not debug.single_step_trap(debug.StepKind.MOV_SS, on, on)
    assert not debug.single_step_trap(debug.StepKind.SYSCALL, on, off)  # FMASK cleared TF
    assert debug.single_step_trap(debug.StepKind.SYSCALL, on, on)  # FMASK kept TF
    assert not debug.single_step_trap(debug.StepKind.EVENT, on, off)


# -- designs ----------------------------------------------------------------------------------

HEAD = """\
    design t "t"
    cpus 1
    lstar lstar_stub
    selector guest_ss = 0xe02b
    selector guest_cs64 = 0xe033
    var user_ss = 0xe02b
    stack primary     size 0x1000 per-cpu
    stack db_ist      size 0x1000 per-cpu
    stack nmi_ist     size 0x1000 per-cpu
    stack sysenter_stack size 0x1000 per-cpu
    stack guest_stack size 0x1000 owner guest per-cpu
    tss tss per-cpu
        rsp0 primary
        ist 2 nmi_ist
        ist 3 db_ist
    end
    idt idt per-cpu
        gate #DB  entry_DB  interrupt {db_ist}
        gate NMI  entry_NMI interrupt ist 2
        gate #BP  entry_BP  interrupt dpl 3
        gate #UD  entry_UD  interrupt
        gate 0x80 entry_INT interrupt dpl 3
    end
    sysenter entry_SYSENTER sysenter_stack
    {extra}
    cpu * start guest cpl 3 idt idt tss tss rsp top(guest_stack) if 1 {cpu}
    ENTRY(lstar_stub)
            nop
            nop
            cli
            hlt
    ENTRY(entry_SYSENTER)
            nop
            cli
            hlt
    ENTRY(entry_DB)
            iretq
    ENTRY(entry_NMI)
            iretq
    ENTRY(entry_BP)
            nop
            cli
            hlt
    ENTRY(entry_INT)
            nop
            cli
            hlt
    ENTRY(entry_UD)
            cli
            hlt
    GUEST(guest)
"""


def load(tmp_path: Path, guest: str, *, db_ist: bool = False, extra: str = "", cpu: str = "",
         **env: object) -> DesignSystem:
    text = textwrap.dedent(HEAD).format(
        db_ist="ist 3" if db_ist else "", extra=extra, cpu=cpu
    ) + textwrap.indent(textwrap.dedent(guest).replace("stop", "9: jmp 9b"), "        ")
    path = tmp_path / "t.design"
    path.write_text(text)
    return DesignSystem(parse_design(path, {}), Environment(**env))  # type: ignore[arg-type]


def explore(system: DesignSystem) -> set[SysState]:
    seen = set(system.init_states())
    queue = deque(seen)
    while queue:
        s = queue.popleft()
        for a in system.actions(s):
            t = system.next_state(s, a)
            if t not in seen:
                seen.add(t)
                queue.append(t)
    return seen


def db_frames(states: set[SysState]) -> set[tuple[str, int, str]]:
    """Every #DB frame reachable: (saved RIP, CPL it interrupted, stack it is on)."""
    out = set()
    for s in states:
        for f in s.machine.frames:
            if f.vector == DB:
                out.add((_saved_rip(s, f), f.from_cpl, f.stack))
    return out


def _saved_rip(s: SysState, f: Frame) -> str:
    for a, v in s.machine.memory:
        if a == f.lo:
            return str(v)
    return "?"


def frames_of(states: set[SysState], vector: int) -> int:
    return max((sum(f.vector == vector for f in s.machine.frames) for s in states), default=0)


def test_data_breakpoint_on_mov_ss_is_delivered_after_syscall_on_the_guest_stack(tmp_path):
    """SDM §6.8.3 (XSA-260 / CVE-2018-8897): the data breakpoint on the SS load is held
    past SYSCALL and delivered at CPL 0 on the LSTAR entry's first instruction; SYSCALL
    has not switched stacks, so without an IST the frame lands on the guest's stack."""
    system = load(tmp_path, """\
        mov   user_ss, %ss
        syscall
        stop
    """, extra="breakpoint rw user_ss len 2")
    assert db_frames(explore(system)) == {("lstar_stub+0", 0, "guest_stack[0]")}


def test_the_held_db_waits_for_the_boundary_after_the_next_instruction(tmp_path):
    """SDM §6.8.3: nothing is delivered at the boundary right after MOV SS; the next
    instruction runs first, then the #DB (Table 6-2 rank 4) is the only thing offered
    besides a machine check."""
    system = load(tmp_path, """\
        mov   user_ss, %ss
        syscall
        stop
    """, extra="breakpoint rw user_ss len 2")
    [s0] = system.init_states()
    s1 = system.next_state(s0, Action("step", 0))
    cpu = s1.machine.cpus[0]
    assert cpu.held_db and cpu.shadow is Shadow.MOV_SS and not s1.machine.frames
    assert [a.kind for a in system.actions(s1)] == ["step"]
    s2 = system.next_state(s1, Action("step", 0))
    assert s2.machine.cpus[0].cpl == 0 and not s2.machine.frames
    assert [a.kind for a in system.actions(s2)] == ["held-db"]


def test_with_an_ist_the_held_db_lands_on_the_ist_stack(tmp_path):
    """SDM §6.14.5: an IST gate always switches stacks, so Xen's fix for XSA-260 (IST_DB)
    keeps the #DB frame off the guest's stack."""
    system = load(tmp_path, """\
        mov   user_ss, %ss
        syscall
        stop
    """, extra="breakpoint rw user_ss len 2", db_ist=True)
    assert db_frames(explore(system)) == {("lstar_stub+0", 0, "db_ist[0]")}


def test_fault_db_spelling_is_a_trap_held_by_mov_ss(tmp_path):
    """`mov %ax, %ss @fault(#DB)`: the environment's #DB is a trap of the MOV SS (as a
    data breakpoint on its source is, §17.3.1.2), held past the next instruction
    (§6.8.3), not a fault raised before it."""
    system = load(tmp_path, """\
        movl  $0xe02b, %eax
        mov   %ax, %ss  @fault(#DB)
        syscall
        stop
    """, faults=1)
    assert db_frames(explore(system)) == {("lstar_stub+0", 0, "guest_stack[0]")}


def test_fault_db_on_an_ordinary_instruction_is_a_trap_after_it(tmp_path):
    """SDM §17.3.1.2: a data breakpoint is reported after the instruction completes: its
    effect is kept and the frame saves the next instruction."""
    system = load(tmp_path, """\
        movq  $5, %rbx  @fault(#DB)
        stop
    """, faults=1)
    states = explore(system)
    assert db_frames(states) == {("guest+1", 3, "primary[0]")}
    for s in states:
        if s.machine.frames:
            assert s.machine.cpus[0].reg("rbx") == 5


def test_held_db_after_int3_lands_on_the_bp_handlers_first_instruction(tmp_path):
    """SDM §6.8.3 (CVE-2018-8897): after MOV SS; INT3 the #DB is delivered at CPL 0 on the
    #BP handler's first instruction, on the stack INT3's delivery switched to."""
    system = load(tmp_path, """\
        mov   user_ss, %ss
        int3
        stop
    """, extra="breakpoint rw user_ss len 2")
    assert db_frames(explore(system)) == {("entry_BP+0", 0, "primary[0]")}


def test_held_db_after_int_n_lands_on_the_handlers_first_instruction(tmp_path):
    """SDM §6.8.3: the same after INT n."""
    system = load(tmp_path, """\
        mov   user_ss, %ss
        int   $0x80
        stop
    """, extra="breakpoint rw user_ss len 2")
    assert db_frames(explore(system)) == {("entry_INT+0", 0, "primary[0]")}


def test_held_db_after_sysenter_lands_on_the_sysenter_stack(tmp_path):
    """SDM §6.8.3: after MOV SS; SYSENTER the #DB is delivered at CPL 0 on the entry's
    first instruction, on IA32_SYSENTER_ESP's stack."""
    system = load(tmp_path, """\
        mov   user_ss, %ss
        sysenter
        stop
    """, extra="breakpoint rw user_ss len 2")
    assert db_frames(explore(system)) == {("entry_SYSENTER+0", 0, "sysenter_stack[0]")}


def test_icebp_in_the_shadow_drops_the_held_db(tmp_path):
    """XSA-260 analysis (REFERENCE.md): INT1 after MOV SS delivers its own #DB (from CPL 3,
    saving the next instruction) and the held one is dropped: one #DB frame, never two."""
    system = load(tmp_path, """\
        mov   user_ss, %ss
        int1
        stop
    """, extra="breakpoint rw user_ss len 2")
    states = explore(system)
    assert db_frames(states) == {("guest+2", 3, "primary[0]")}
    assert frames_of(states, DB) == 1


def test_a_fault_in_the_shadow_drops_the_held_db(tmp_path):
    """REFERENCE.md ("observed on hardware"): if the instruction after MOV SS faults, the
    fault is delivered and the held #DB is dropped."""
    system = load(tmp_path, """\
        mov   user_ss, %ss
        ud2
        stop
    """, extra="breakpoint rw user_ss len 2")
    states = explore(system)
    assert not db_frames(states)
    assert any(f.vector == 6 for s in states for f in s.machine.frames)


def test_data_breakpoint_on_an_ordinary_access_traps_after_it(tmp_path):
    """SDM §17.3.1.2: a write breakpoint on a variable: the store completes, then #DB."""
    system = load(tmp_path, """\
        movq  $7, user_ss
        movq  user_ss, %rax
        stop
    """, extra="breakpoint write user_ss")
    assert db_frames(explore(system)) == {("guest+1", 3, "primary[0]")}


def test_data_breakpoint_on_a_push(tmp_path):
    """SDM §17.3.1.2: the implicit stack write of PUSH matches a write breakpoint."""
    system = load(tmp_path, """\
        pushq $1
        stop
    """, extra="breakpoint write top(guest_stack)-8 len 8")
    assert db_frames(explore(system)) == {("guest+1", 3, "primary[0]")}


def test_single_step_traps_after_each_instruction(tmp_path):
    """SDM §17.3.1.4: with TF set, a #DB after the instruction (saving the next one); the
    delivery clears TF, and the handler's IRET restores it, so the next one traps too."""
    system = load(tmp_path, """\
        nop
        nop
        stop
    """, cpu="tf 1")
    assert db_frames(explore(system)) >= {("guest+1", 3, "primary[0]"),
                                          ("guest+2", 3, "primary[0]")}


def test_mov_ss_suppresses_its_own_single_step(tmp_path):
    """SDM §6.8.3: the single-step trap after MOV SS is suppressed; the next instruction
    (here SYSCALL, whose FMASK clears TF) decides: no #DB at all (with FMASK keeping TF
    the #DB would come after SYSCALL)."""
    system = load(tmp_path, """\
        mov   %ax, %ss
        syscall
        stop
    """, cpu="tf 1", extra="fmask 0x100")
    assert not db_frames(explore(system))


def test_syscall_single_step_uses_the_flags_it_leaves(tmp_path):
    """XSA-204 (observed; the SDM does not say): SYSCALL raises its single-step trap on
    the TF that FMASK leaves: cleared, no #DB; kept, a #DB at CPL 0 on LSTAR's first
    instruction, on the guest's stack."""
    kept = load(tmp_path, "syscall\nstop\n", cpu="tf 1")
    assert ("lstar_stub+0", 0, "guest_stack[0]") in db_frames(explore(kept))
    masked = load(tmp_path, "syscall\nstop\n", cpu="tf 1", extra="fmask 0x100")
    assert not db_frames(explore(masked))


def test_a_certain_trap_makes_an_unsure_held_db_certain():
    """SDM §17.3.1.2 / §17.3.1.4: a data breakpoint an instruction hits, or its single-step
    trap, is a #DB once the instruction completes; merged with a #DB that a delivery's
    pushes may have raised (unsure: the SDM does not say), it is certain: no boundary may
    drop it. An unsure one alone may be dropped; a held one is kept by another delivery."""
    unsure = debug.delivery_trap(_cpu())
    assert unsure.held_db and unsure.db_unsure
    certain = debug.trap(unsure)
    assert certain.held_db and not certain.db_unsure
    assert debug.delivery_trap(certain) == certain
    dropped = debug.drop_unsure_db(unsure)
    assert not dropped.held_db and not dropped.db_unsure


def test_fmask_tf_either_explores_both_fmask_settings(tmp_path):
    """SDM Vol. 2 SYSCALL: RFLAGS := RFLAGS AND NOT(IA32_FMASK); what FMASK holds is
    software's. `environment.fmask_tf_either` starts one state per setting of its TF bit:
    with the design's FMASK clearing TF, the environment's other start keeps TF, and the
    single-step #DB after SYSCALL lands at CPL 0 on the guest's stack (XSA-204)."""
    system = load(tmp_path, "syscall\nstop\n", cpu="tf 1", extra="fmask 0x100",
                  fmask_tf_either=True)
    starts = system.init_states()
    assert len(starts) == 2
    assert {dict(s.machine.cpus[0].msrs)[0xC0000084] & TF for s in starts} == {0, TF}
    assert ("lstar_stub+0", 0, "guest_stack[0]") in db_frames(explore(system))


def test_delivery_pushes_on_a_watched_address_may_or_may_not_raise_db(tmp_path):
    """SDM Vol. 3B §17.3.1.2 ties a data breakpoint to "the instruction that accessed"
    the data; no section says whether the frame pushes of an event delivery (§6.12) are
    checked against DR0-DR3 (Linux found a data breakpoint near the top of an IST stack
    recurses). Both are explored: with a write breakpoint on the SS slot of the frame INT3
    pushes on RSP0's stack, the #DB is taken at the #BP handler's first boundary, at CPL 0
    on that stack, or it is dropped and the handler runs on; with no breakpoint, no #DB."""
    system = load(tmp_path, "int3\nstop\n", extra="breakpoint write top(primary)-8 len 8")
    states = explore(system)
    assert ("entry_BP+0", 0, "primary[0]") in db_frames(states)
    ran_on = [s for s in states
              if s.machine.cpus[0].pc == CodeAddr("entry_BP", 1) and not db_frames({s})]
    assert ran_on  # the other outcome: no #DB, the handler's NOP has run
    assert not db_frames(explore(load(tmp_path, "int3\nstop\n")))


def test_tf_survives_sysenter(tmp_path):
    """SDM Vol. 2 SYSENTER: RFLAGS.IF, VM and RF are cleared, TF is not; so a single-step
    #DB is taken at CPL 0 on the entry's first instruction (Xen's sysenter_entry copes
    with exactly this), on IA32_SYSENTER_ESP's stack."""
    system = load(tmp_path, "sysenter\nstop\n", cpu="tf 1")
    assert ("entry_SYSENTER+0", 0, "sysenter_stack[0]") in db_frames(explore(system))


def test_popf_setting_tf_traps_after_the_next_instruction(tmp_path):
    """SDM Vol. 1 §3.4.3.3 / Vol. 3B §17.3.1.4: POPF that sets TF: the trap comes after
    the instruction that follows POPF."""
    system = load(tmp_path, """\
        pushq $0x302
        popfq
        nop
        stop
    """)
    assert db_frames(explore(system)) >= {("guest+3", 3, "primary[0]")}
    assert ("guest+2", 3, "primary[0]") not in db_frames(explore(system))


def test_instruction_breakpoint_is_a_fault_before_the_instruction(tmp_path):
    """SDM §17.3.1.1: an instruction breakpoint is a fault: the frame saves the
    instruction itself, which has not run."""
    system = load(tmp_path, """\
        movq  $5, %rbx
        movq  $6, %rbx
        stop
    """, extra="breakpoint exec guest+1")
    [s0] = system.init_states()
    s1 = system.next_state(s0, Action("step", 0))
    s2 = system.next_state(s1, Action("step", 0))
    assert s2.machine.cpus[0].pc == CodeAddr("entry_DB", 0)
    assert _saved_rip(s2, s2.machine.frames[-1]) == "guest+1"
    assert s2.machine.cpus[0].reg("rbx") == 5


def test_environment_arms_breakpoints_and_single_step(tmp_path):
    """A property file's environment arms the same debug state: `breakpoints` (each a
    design's `breakpoint` line) and `single_step` (RFLAGS.TF at start)."""
    guest = """\
        mov   user_ss, %ss
        syscall
        stop
    """
    system = load(tmp_path, guest, breakpoints=("rw user_ss len 2",))
    assert db_frames(explore(system)) == {("lstar_stub+0", 0, "guest_stack[0]")}
    stepped = load(tmp_path, "nop\nstop\n", single_step=True)
    assert ("guest+1", 3, "primary[0]") in db_frames(explore(stepped))


def test_nmi_in_the_mov_ss_shadow_is_explored_both_ways(tmp_path):
    """SDM Vol. 2 POP (older editions: "inhibits all interrupts, including the NMI"), the
    current §6.8.3 and MOV/POP text say only "interrupts": whether an NMI is held in the
    MOV SS shadow is not settled, so both are explored. An NMI that is held is delivered
    at the boundary after the next instruction, which is also where an NMI arriving one
    step later is delivered: the model lets the NMI arrive at either boundary."""
    system = load(tmp_path, """\
        movl  $0xe02b, %eax
        mov   %ax, %ss
        nop
        stop
    """, nmi=1)
    saved = set()
    for s in explore(system):
        for f in s.machine.frames:
            if f.vector == 2:
                saved.add(_saved_rip(s, f))
    assert {"guest+2", "guest+3"} <= saved


def test_a_bad_breakpoint_line_is_a_located_error(tmp_path):
    """A malformed `breakpoint` line is a `path:line` error, not a traceback."""
    with pytest.raises(InputError) as err:
        load(tmp_path, "nop\n", extra="breakpoint io 0x60")
    assert err.value.line == 25  # the `breakpoint` line
    with pytest.raises(InputError):
        load(tmp_path, "nop\n", extra="breakpoint rw user_ss len 3")
    with pytest.raises(InputError):
        load(tmp_path, "nop\n", extra="breakpoint exec no_such_routine").init_states()


def test_pop_ss_with_a_breakpoint_on_the_stack_word_is_held_past_syscall(tmp_path):
    """SDM §6.8.3 applies to POP SS as to MOV SS (compatibility-mode code: POP SS is #UD
    in 64-bit mode, SDM Vol. 2 POP): a read breakpoint on the stack word it pops is held
    past SYSCALL and taken at CPL 0 on LSTAR's first instruction, on the guest's stack."""
    path = tmp_path / "t.design"
    text = textwrap.dedent(HEAD).format(
        db_ist="", extra="breakpoint rw top(guest_stack)-8 len 8", cpu=""
    ).replace("GUEST(guest)", "GUEST32(guest)")
    path.write_text(text + textwrap.indent(textwrap.dedent("""\
        pushq $0xe02b
        pop   %ss
        syscall
        9: jmp 9b
    """), "        "))
    system = DesignSystem(parse_design(path, {}), Environment())
    frames = db_frames(explore(system))
    assert ("lstar_stub+0", 0, "guest_stack[0]") in frames
    # the PUSH's write also hits the breakpoint: its #DB comes right after the PUSH
    assert ("guest+1", 3, "primary[0]") in frames
