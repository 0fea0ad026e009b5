"""FRED wired into the design language and the interpreter (issue 17): `delivery fred`,
the `fred` block, MOV to/from CR4, ERETS/ERETU, LKGS, SYSCALL/SYSENTER as events, the
FRED MSRs through WRMSR, and the open rules explored both ways. The rules themselves are
model/x86/fred.py's (tests/test_x86_fred.py); these tests drive them through designs, as
the checker does. Section numbers are the FRED specification's (Intel document 346446)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from checker.errors import InputError
from model.lang.parser import parse_design
from model.system.interp import SysState
from model.system.relation import ActionKind
from model.system.transition import Action, DesignSystem, Environment
from model.x86 import fred
from model.x86.arch import GP, IF, RFLAGS_FIXED, UD
from model.x86.memory import read
from model.x86.state import CodeAddr, Run

HEAD = """\
design t "FRED test"
cpus 1
fmask 0x74700
stack primary size 0x1000
stack mce size 0x1000
stack df size 0x1000
stack guest_stack size 0x1000 owner guest
"""

FRED_BLOCK = """\
fred
    entry entry_r3 entry_r0
    rsp 0 primary
    rsp 2 mce
    rsp 3 df
    level #MC 2
    level #DF 3
end
"""

HANDLERS = """\
ENTRY(entry_r3)
        nop
        eretu

ENTRY(entry_r0)
        nop
        erets
"""


def load(tmp_path: Path, body: str, **env: object) -> DesignSystem:
    path = tmp_path / "t.design"
    path.write_text(HEAD + textwrap.dedent(body))
    return DesignSystem(parse_design(path), Environment(**env))  # type: ignore[arg-type]


def only(system: DesignSystem, s: SysState, kind: str, **match: object) -> SysState:
    """The successor by the one action of `kind` (decisions open: the first)."""
    actions = [a for a in system.actions(s) if a.kind == kind
               and all(getattr(a, k) == v for k, v in match.items())]
    assert actions, (kind, system.actions(s))
    return system.next_state(s, actions[0])


def step(system: DesignSystem, s: SysState, n: int = 1) -> SysState:
    for _ in range(n):
        s = system.next_state(s, Action(ActionKind.STEP, 0))
    return s


def top(system: DesignSystem, name: str) -> int:
    return system.platform.region(name).top


def ss_word(system: DesignSystem, s: SysState) -> int:
    """The SS word of the frame the CPU's RSP points at (FRED spec §5.2: RSP + 40)."""
    rsp = s.machine.cpus[0].rsp
    assert isinstance(rsp, int)
    word = read(s.machine, rsp + fred.OFF_SS)
    assert isinstance(word, int)
    return word


GUEST_LOOP = """\
GUEST(guest)
1:      nop
        jmp   1b

ENTRY(idle)
1:      nop
        jmp   1b
"""


def test_nmi_from_ring3_runs_on_rsp0_at_the_config_entry(tmp_path: Path) -> None:
    """FRED spec §5.1: an event in ring 3 goes to stack level 0, RSP := IA32_FRED_RSP0,
    RIP := IA32_FRED_CONFIG's entry point; §5.2: the 64-byte frame's SS word records the
    NMI bit (18), event type 2 and vector 2; §5.3: NMIs are blocked."""
    system = load(tmp_path, FRED_BLOCK + "delivery fred\n"
                  "cpu 0 start guest cpl 3 rsp top(guest_stack) if 1\n" + HANDLERS + GUEST_LOOP,
                  nmi=1)
    [s] = system.init_states()
    assert s.machine.cpus[0].fred
    s = only(system, s, "nmi")
    cpu = s.machine.cpus[0]
    assert cpu.pc == CodeAddr("entry_r3", 0) and cpu.cpl == 0 and cpu.nmi_blocked
    assert cpu.rsp == top(system, "primary") - fred.FRAME_BYTES
    word = ss_word(system, s)
    assert word & fred.SS_NMI and (word >> fred.SS_TYPE_SHIFT) & 0xF == fred.EventType.NMI
    assert (word >> fred.SS_VECTOR_SHIFT) & 0xFF == 2
    assert [f.stack for f in s.machine.frames] == ["primary"]


def test_ring0_events_enter_at_plus_256_and_mc_uses_its_stack_level(tmp_path: Path) -> None:
    """FRED spec §5.1: events in ring 0 enter at the configured entry + 256 (the design's
    `entry R3 R0` pair); an NMI stays on the current stack (level 0, aligned down to 64
    bytes), a #MC with IA32_FRED_STKLVLS giving it level 2 loads IA32_FRED_RSP2."""
    system = load(tmp_path, FRED_BLOCK + "delivery fred\n"
                  "cpu 0 start idle cpl 0 rsp top(primary)-8 if 1\n" + HANDLERS + GUEST_LOOP,
                  nmi=1, mce=1)
    [s] = system.init_states()
    nmi = only(system, s, "nmi")
    assert nmi.machine.cpus[0].pc == CodeAddr("entry_r0", 0)
    assert nmi.machine.cpus[0].rsp == top(system, "primary") - 64 - fred.FRAME_BYTES
    mc = only(system, nmi, "mce")
    assert mc.machine.cpus[0].csl == 2
    assert mc.machine.cpus[0].rsp == top(system, "mce") - fred.FRAME_BYTES
    assert [f.stack for f in mc.machine.frames] == ["primary", "mce"]
    assert not any(f.clobbered for f in mc.machine.frames)


def test_erets_unblocks_nmis_only_through_the_nmis_own_frame(tmp_path: Path) -> None:
    """FRED spec §6: ERETS unblocks NMIs only when the frame's SS word has bit 18 set. A
    #BP (INT3) taken inside the NMI handler returns with ERETS without unblocking NMIs;
    the NMI handler's own ERETS does, and restores the stack level and RSP."""
    body = FRED_BLOCK + "delivery fred\ncpu 0 start idle cpl 0 rsp top(primary) if 1\n" + """\
ENTRY(entry_r3)
        eretu

ENTRY(entry_r0)
        nop
        erets

ENTRY(idle)
1:      int3
        jmp   1b
"""
    system = load(tmp_path, body, nmi=1)
    [s] = system.init_states()
    s = only(system, s, "nmi")
    s = s._replace(machine=s.machine.with_cpu(
        0, s.machine.cpus[0].with_pc(CodeAddr("idle", 0))))  # the handler hits an INT3
    s = step(system, s)  # int3: a #BP frame on top of the NMI's
    assert [f.source for f in s.machine.frames] == ["nmi", "int3"]
    s = step(system, s, 2)  # nop, erets of the #BP frame
    assert s.machine.cpus[0].nmi_blocked
    assert [f.source for f in s.machine.frames] == ["nmi"]
    s = s._replace(machine=s.machine.with_cpu(
        0, s.machine.cpus[0].with_pc(CodeAddr("entry_r0", 1))))
    s = step(system, s)  # the NMI frame's erets
    cpu = s.machine.cpus[0]
    assert not cpu.nmi_blocked and not s.machine.frames
    assert cpu.rsp == top(system, "primary") and cpu.pc == CodeAddr("idle", 0)


def test_eretu_returns_to_ring3_and_consumes_the_frame(tmp_path: Path) -> None:
    """FRED spec §6 ERETU: back to ring 3 at the saved RIP and RSP, GS bases swapped back
    (§5.3 swapped them on the way in), the frame gone."""
    system = load(tmp_path, FRED_BLOCK + "delivery fred\n"
                  "cpu 0 start guest cpl 3 rsp top(guest_stack) if 1\n" + HANDLERS + GUEST_LOOP,
                  nmi=1)
    [s0] = system.init_states()
    s = only(system, s0, "nmi")
    assert s.machine.cpus[0].gs_swapped
    s = step(system, s, 2)
    cpu = s.machine.cpus[0]
    assert cpu.cpl == 3 and cpu.pc == s0.machine.cpus[0].pc and not cpu.gs_swapped
    assert cpu.rsp == top(system, "guest_stack") and not s.machine.frames
    assert not cpu.nmi_blocked


@pytest.mark.parametrize(("insn", "vector", "length"), [
    ("syscall", 1, 2), ("sysenter", 2, 2), ("data16 syscall", 1, 3),
])
def test_syscall_and_sysenter_are_events_on_rsp0(
    tmp_path: Path, insn: str, vector: int, length: int
) -> None:
    """FRED spec §5.2: SYSCALL and SYSENTER are events of type OTHER (vectors 1 and 2) on a
    FRED stack (RSP0 from ring 3, never the guest's RSP), with the instruction's length
    (prefixes included) in the SS word's bits 63:60 and the software-event bit 17."""
    system = load(tmp_path, FRED_BLOCK + "delivery fred\nlstar entry_r3\n"
                  "cpu 0 start guest cpl 3 rsp top(guest_stack) if 1\n" + HANDLERS
                  + f"GUEST(guest)\n        {insn}\n1:      nop\n        jmp 1b\n")
    [s] = system.init_states()
    s = step(system, s)
    cpu = s.machine.cpus[0]
    assert cpu.pc == CodeAddr("entry_r3", 0) and cpu.rsp == top(system, "primary") - 64
    word = ss_word(system, s)
    assert (word >> fred.SS_TYPE_SHIFT) & 0xF == fred.EventType.OTHER
    assert (word >> fred.SS_VECTOR_SHIFT) & 0xFF == vector
    assert word >> fred.SS_LENGTH_SHIFT == length and word & fred.SS_SWEVENT
    assert not any(f.on_guest_stack for f in s.machine.frames)


def test_int_n_records_its_length_with_prefixes(tmp_path: Path) -> None:
    """FRED spec §5.2: INT n is a software interrupt (type 4) whose frame records the
    instruction length, prefixes included (what Xen rewinds %rip by)."""
    system = load(tmp_path, FRED_BLOCK + "delivery fred\n"
                  "cpu 0 start guest cpl 3 rsp top(guest_stack) if 1\n" + HANDLERS
                  + "GUEST(guest)\n        data16 rex int $0x80\n1:      nop\n        jmp 1b\n")
    [s] = system.init_states()
    s = step(system, s)
    word = ss_word(system, s)
    assert (word >> fred.SS_TYPE_SHIFT) & 0xF == fred.EventType.SOFTWARE_INTERRUPT
    assert (word >> fred.SS_VECTOR_SHIFT) & 0xFF == 0x80 and word >> fred.SS_LENGTH_SHIFT == 4


def test_prefixes_only_where_fred_records_a_length(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"t.design:\d+: instruction prefixes"):
        load(tmp_path, "cpu 0 start idle cpl 0\nENTRY(idle)\n        data16 nop\n")


@pytest.mark.parametrize("insn", ["swapgs", "sysretq"])
def test_swapgs_and_sysret_are_ud_with_cr4_fred(tmp_path: Path, insn: str) -> None:
    """Xen's docs/hypervisor-guide/x86/fred.rst (from the FRED spec): with CR4.FRED set
    SWAPGS and SYSRET are #UD; the #UD is delivered by FRED (type 3, vector 6)."""
    system = load(tmp_path, FRED_BLOCK + "delivery fred\n"
                  "cpu 0 start idle cpl 0 rsp top(primary) if 1\n" + HANDLERS
                  + f"ENTRY(idle)\n        {insn}\n")
    [s] = system.init_states()
    s = step(system, s)
    assert s.machine.cpus[0].pc == CodeAddr("entry_r0", 0)
    assert (ss_word(system, s) >> fred.SS_VECTOR_SHIFT) & 0xFF == UD


def test_eret_without_cr4_fred_is_ud(tmp_path: Path) -> None:
    """FRED spec §6: ERETS/ERETU are #UD while CR4.FRED is clear (here through the IDT)."""
    system = load(tmp_path, "idt t\n    gate #UD on_ud interrupt\nend\n"
                  "cpu 0 start idle cpl 0 idt t rsp top(primary)\n"
                  "ENTRY(idle)\n        erets\nENTRY(on_ud)\n        hlt\n")
    [s] = system.init_states()
    s = step(system, s)
    assert s.machine.cpus[0].pc == CodeAddr("on_ud", 0)


def test_setting_cr4_fred_switches_delivery_at_run_time(tmp_path: Path) -> None:
    """FRED spec §4.2: CR4.FRED (bit 32) selects FRED event delivery from the next event on.
    Before the MOV to CR4 an NMI goes through the IDT; after it, to IA32_FRED_CONFIG's
    entry as code wrote it with WRMSR (a label's address), on IA32_FRED_RSP0's stack."""
    body = """\
fred
    ring0 entry_r3 entry_r0
end
idt t
    gate NMI on_nmi interrupt
end
cpu 0 start boot cpl 0 idt t rsp top(primary)
ENTRY(boot)
        movl  $0x1d4, %ecx
        leaq  entry_r3(%rip), %rax
        wrmsr
        movq  %cr4, %rax
        movabsq $0x100000000, %rdx
        orq   %rdx, %rax
        movq  %rax, %cr4
1:      nop
        jmp   1b
ENTRY(on_nmi)
        iretq
""" + HANDLERS
    system = load(tmp_path, body, nmi=1)
    [s] = system.init_states()
    early = only(system, s, "nmi")
    assert early.machine.cpus[0].pc == CodeAddr("on_nmi", 0)
    s = step(system, s, 7)
    cpu = s.machine.cpus[0]
    assert cpu.fred and cpu.cr4_mce
    late = only(system, s, "nmi")
    assert late.machine.cpus[0].pc == CodeAddr("entry_r0", 0)


def test_cr4_read_and_write_rules() -> None:
    """SDM Vol. 2 MOV to/from CR4: #GP(0) at CPL > 0; clearing PAE in IA-32e mode #GP(0)
    (SDM Vol. 3A §9.8.5.4); FRED spec §4.2: bit 32 is CR4.FRED."""
    from tests.x86_helpers import make_cpu, platform

    p = platform()
    cpu = make_cpu(p, cpl=0)
    value = fred.cr4_value(cpu, False)
    assert value & fred.CR4_MCE and not value & fred.CR4_FRED
    on = fred.write_cr4(cpu, value | fred.CR4_FRED, False)
    assert on.fred and fred.cr4_value(on, False) & fred.CR4_FRED
    with pytest.raises(Exception) as e:
        fred.write_cr4(cpu, value & ~fred.CR4_PAE, False)
    assert getattr(e.value, "vector", None) == GP
    with pytest.raises(Exception) as e:
        fred.cr4_value(cpu._replace(cpl=3), False)
    assert getattr(e.value, "vector", None) == GP


def test_wrmsr_of_a_misaligned_fred_rsp_is_gp(tmp_path: Path) -> None:
    """FRED spec §4: WRMSR to IA32_FRED_RSPn #GPs unless the value is 64-byte aligned."""
    body = """\
idt t
    gate #GP on_gp interrupt
end
cpu 0 start boot cpl 0 idt t rsp top(primary)
ENTRY(boot)
        movl  $0x1cc, %ecx
        movl  $0x1008, %eax
        xorl  %edx, %edx
        wrmsr
        hlt
ENTRY(on_gp)
        hlt
"""
    system = load(tmp_path, body)
    [s] = system.init_states()
    s = step(system, s, 4)
    assert s.machine.cpus[0].pc == CodeAddr("on_gp", 0)


def test_rflags_rule_left_open_is_explored_both_ways(tmp_path: Path) -> None:
    """FRED spec §5.3, as far as the sources here say: the new RFLAGS is 2 (Bochs), or the
    old value less IA32_FMASK, RF and TF (Xen's fred.rst). With an FMASK that leaves IF
    alone both are explored: one action per outcome (checker.symbolic.oracle)."""
    path = tmp_path / "t.design"
    path.write_text(HEAD.replace("fmask 0x74700\n", "") + FRED_BLOCK + "delivery fred\n"
                    "cpu 0 start idle cpl 0 rsp top(primary) if 1\n" + HANDLERS + GUEST_LOOP)
    system = DesignSystem(parse_design(path), Environment(nmi=1))
    [s] = system.init_states()
    nmis = [a for a in system.actions(s) if a.kind == "nmi"]
    assert len(nmis) == 2
    assert {a.oracles for a in nmis} == {(True,), (False,)}
    assert all(a.decisions == () for a in nmis)
    successors = [system.next_state(s, a) for a in nmis]
    assert {t.machine.cpus[0].rflags for t in successors} == {RFLAGS_FIXED, RFLAGS_FIXED | IF}
    # an open rule is no condition on values: the states stay concrete
    assert all(t.path == () and not t.symbolic for t in successors)


def test_an_oracle_outside_a_transition_is_an_error() -> None:
    """checker.symbolic.oracle: outside a transition that records it, never a silent
    choice."""
    from checker.symbolic import SymbolicDecisionError, oracle, run_with

    with pytest.raises(SymbolicDecisionError):
        oracle("x")
    assert run_with((), oracle, "x", oracles=(False,))[0] is False


def test_bad_rsp0_from_ring3_double_faults_on_its_level(tmp_path: Path) -> None:
    """FRED spec §5.1 with the SDM's Table 6-5 classes: an NMI from ring 3 with
    IA32_FRED_RSP0 = 0 pushes at the top of the address space (#PF), the #PF's own
    delivery faults the same way, and the #DF goes to its stack level 3."""
    system = load(tmp_path, FRED_BLOCK.replace("    rsp 0 primary\n", "") + "delivery fred\n"
                  "cpu 0 start guest cpl 3 rsp top(guest_stack) if 1\n" + HANDLERS + GUEST_LOOP,
                  nmi=1)
    [s] = system.init_states()
    s = only(system, s, "nmi")
    cpu = s.machine.cpus[0]
    assert cpu.run is Run.RUNNING and cpu.csl == 3
    assert [(f.vector, f.stack) for f in s.machine.frames] == [(8, "df")]


def test_smap_with_fred_is_refused(tmp_path: Path) -> None:
    """FRED delivery's pushes are not judged against SMAP here: a design with both is a
    path:line error, not a run that could miss a #PF."""
    with pytest.raises(InputError, match="smap"):
        load(tmp_path, "smap\n" + FRED_BLOCK + "delivery fred\ncpu 0 start idle cpl 0\n"
             + HANDLERS + "ENTRY(idle)\n        hlt\n")


def test_fred_block_errors_name_the_line(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"t.design:\d+: write `level VECTOR N`"):
        load(tmp_path, "fred\n    level #MC 5\nend\ncpu 0 start idle cpl 0\n"
             "ENTRY(idle)\n        hlt\n")
    with pytest.raises(InputError, match="fred entry names a missing routine 'nowhere'"):
        load(tmp_path, "fred\n    entry nowhere idle\nend\ncpu 0 start idle cpl 0\n"
             "ENTRY(idle)\n        hlt\n")
    with pytest.raises(InputError, match="write `delivery idt` or `delivery fred`"):
        load(tmp_path, "delivery ist\ncpu 0 start idle cpl 0\nENTRY(idle)\n        hlt\n")


def test_lkgs_loads_the_inactive_gs_base() -> None:
    """FRED spec §7: LKGS loads the descriptor base into IA32_KERNEL_GS_BASE, leaving
    the active GS base; #GP(0) outside ring 0."""
    from tests.x86_helpers import make_cpu, platform

    cpu = make_cpu(platform(), cpl=0)
    loaded = fred.lkgs(cpu, 0x1234)
    assert loaded.kernel_gs_base == 0x1234 and loaded.gs_base == cpu.gs_base
    with pytest.raises(Exception) as e:
        fred.lkgs(cpu._replace(cpl=3), 0)
    assert getattr(e.value, "vector", None) == GP


def test_symmetric_fred_designs_are_accepted(tmp_path: Path) -> None:
    """A FRED design may declare its CPUs interchangeable: the renumbering moves the stack
    addresses the FRED MSRs hold with their CPUs (tests/test_fred_smp.py)."""
    from model.system.provider import DesignProvider

    path = tmp_path / "t.design"
    path.write_text(HEAD.replace("cpus 1", "cpus 3\nsymmetric").replace("size 0x1000",
                    "size 0x1000 per-cpu") + FRED_BLOCK
                    + "delivery fred\ncpu * start idle cpl 0 rsp top(primary)\n" + HANDLERS
                    + "ENTRY(idle)\n        hlt\n")
    system = DesignProvider(tmp_path).load("t", {}, {"nmi": 0})
    assert system.symmetry is not None


@pytest.mark.parametrize("insn", ["syscall", "sysenter", "int $0x80"])
def test_single_step_over_a_software_event_waits_for_eretu(tmp_path: Path, insn: str) -> None:
    """FRED spec §6: a software event (SS word bit 17: SYSCALL, SYSENTER, INT n) taken
    with RFLAGS.TF set has its single-step #DB pending after the ERET* that returns
    through its frame, not at the entry point (delivery clears TF)."""
    system = load(tmp_path, FRED_BLOCK + "delivery fred\nlstar entry_r3\n"
                  "cpu 0 start guest cpl 3 rsp top(guest_stack) if 1 tf 1\n" + HANDLERS
                  + f"GUEST(guest)\n        {insn}\n1:      nop\n        jmp 1b\n")
    [s] = system.init_states()
    s = step(system, s)
    cpu = s.machine.cpus[0]
    assert cpu.pc == CodeAddr("entry_r3", 0) and not cpu.held_db
    s = step(system, s, 2)  # nop, eretu
    cpu = s.machine.cpus[0]
    assert cpu.cpl == 3 and cpu.held_db


def test_rdmsr_reads_the_fred_block(tmp_path: Path) -> None:
    """FRED spec §4: IA32_FRED_RSP0 reads as the `fred` block set it (the stack's top)."""
    system = load(tmp_path, FRED_BLOCK + "delivery fred\n"
                  "cpu 0 start idle cpl 0 rsp top(primary)\n" + HANDLERS
                  + "ENTRY(idle)\n        movl $0x1cc, %ecx\n        rdmsr\n        hlt\n")
    [s] = system.init_states()
    s = step(system, s, 2)
    cpu = s.machine.cpus[0]
    value = (cpu.reg("rdx") << 32) | cpu.reg("rax")  # type: ignore[operator]
    assert value == top(system, "primary")


def test_erets_at_cpl3_explores_ud_and_gp(tmp_path: Path) -> None:
    """FRED spec §6: ERETS/ERETU require CPL 0. Bochs raises #UD, other readings #GP(0):
    both are explored (one action each)."""
    system = load(tmp_path, FRED_BLOCK + "delivery fred\n"
                  "cpu 0 start guest cpl 3 rsp top(guest_stack)\n" + HANDLERS
                  + "GUEST(guest)\n        erets\n")
    [s] = system.init_states()
    vectors = set()
    for a in system.actions(s):
        t = system.next_state(s, a)
        vectors.add(ss_word(system, t) >> fred.SS_VECTOR_SHIFT & 0xFF)
    assert vectors == {UD, GP}


def test_erets_from_a_higher_level_restores_the_level(tmp_path: Path) -> None:
    """FRED spec §5.2 (the CS word's bits 17:16 keep the interrupted stack level) and §6
    (ERETS returns to the lower of the current and the saved level): a #MC on level 2
    returns to level 0 and the interrupted RSP."""
    system = load(tmp_path, FRED_BLOCK + "delivery fred\n"
                  "cpu 0 start idle cpl 0 rsp top(primary)-64 if 1\n" + HANDLERS
                  + "ENTRY(idle)\n1:      nop\n        jmp 1b\n", mce=1)
    [s] = system.init_states()
    s = only(system, s, "mce")
    assert s.machine.cpus[0].csl == 2
    s = step(system, s, 2)
    cpu = s.machine.cpus[0]
    assert cpu.csl == 0 and cpu.rsp == top(system, "primary") - 64
    assert cpu.pc == CodeAddr("idle", 0) and not s.machine.frames


def _count(system: DesignSystem) -> int:
    seen = set(system.init_states())
    todo = list(seen)
    while todo:
        s = todo.pop()
        for a in system.actions(s):
            t = system.next_state(s, a)
            if t not in seen:
                seen.add(t)
                todo.append(t)
    return len(seen)


@pytest.mark.parametrize(("fmask", "states"), [("fmask 0x74700\n", 4), ("", 5)])
def test_hand_counted_states_of_one_nmi(tmp_path: Path, fmask: str, states: int) -> None:
    """A CPU halted on a HLT at CPL 0 with IF set, one NMI, a handler that is one ERETS.
    By hand: the start; the NMI's entry (FRED spec §5.1, the NMI budget spent); back at
    the HLT, running (ERETS, §6, restores the frame's RFLAGS and RIP); halted after the
    HLT = 4 states. With an FMASK that leaves IF, the open RFLAGS rule (§5.3) gives two
    entries, RFLAGS 2 and 0x202, which ERETS merges again: 5."""
    path = tmp_path / "t.design"
    path.write_text(HEAD.replace("fmask 0x74700\n", fmask) + FRED_BLOCK + "delivery fred\n"
                    "cpu 0 start idle cpl 0 rsp top(primary) if 1 halted\n"
                    "ENTRY(entry_r3)\n        eretu\nENTRY(entry_r0)\n        erets\n"
                    "ENTRY(idle)\n1:      hlt\n        jmp 1b\n")
    assert _count(DesignSystem(parse_design(path), Environment(nmi=1))) == states


def test_a_fault_delivering_df_shuts_down(tmp_path: Path) -> None:
    """SDM Table 6-5 classes under FRED (model/x86/fred.py nested_outcome): with
    IA32_FRED_RSP0 and IA32_FRED_RSP3 both 0, an NMI from ring 3 faults (#PF), the #PF
    faults, the #DF on level 3 faults again: shutdown."""
    block = FRED_BLOCK.replace("    rsp 0 primary\n", "").replace("    rsp 3 df\n", "")
    system = load(tmp_path, block + "delivery fred\n"
                  "cpu 0 start guest cpl 3 rsp top(guest_stack) if 1\n" + HANDLERS + GUEST_LOOP,
                  nmi=1)
    [s] = system.init_states()
    s = only(system, s, "nmi")
    assert s.machine.cpus[0].run is Run.SHUTDOWN


def event_data(s: SysState) -> object:
    """The event-data word of the frame the CPU's RSP points at (FRED spec §5.2: RSP + 48)."""
    rsp = s.machine.cpus[0].rsp
    assert isinstance(rsp, int)
    return read(s.machine, rsp + fred.OFF_EVENT_DATA)


def test_page_fault_event_data_is_the_faulting_address(tmp_path: Path) -> None:
    """FRED spec §5.2 (the FRED stack frame, "event data"): for #PF the event data is the
    faulting linear address, the value the IDT delivery would have loaded into CR2. A
    ring-3 push to a hypervisor page (#PF, SDM §4.6) at top(mce) - 8 records that address
    at RSP + 48 of the frame on IA32_FRED_RSP0."""
    system = load(tmp_path, FRED_BLOCK + "delivery fred\n"
                  "cpu 0 start guest cpl 3 rsp top(mce) if 1\n" + HANDLERS
                  + "GUEST(guest)\n        pushq %rax\n1:      nop\n        jmp 1b\n")
    [s] = system.init_states()
    s = step(system, s)
    cpu = s.machine.cpus[0]
    assert cpu.pc == CodeAddr("entry_r3", 0)
    assert [f.vector for f in s.machine.frames] == [14]
    assert event_data(s) == top(system, "mce") - 8


def test_nmi_event_data_is_zero(tmp_path: Path) -> None:
    """FRED spec §5.2: event data is 0 for an NMI unless NMI-source reporting is enabled,
    which the model does not have (nor does it for any event but #PF and #DB)."""
    system = load(tmp_path, FRED_BLOCK + "delivery fred\n"
                  "cpu 0 start guest cpl 3 rsp top(guest_stack) if 1\n" + HANDLERS + GUEST_LOOP,
                  nmi=1)
    [s] = system.init_states()
    s = only(system, s, "nmi")
    assert event_data(s) == 0


def test_single_step_event_data_is_bs(tmp_path: Path) -> None:
    """FRED spec §5.2 (event data for #DB: DR6's cause bits as Linux's FRED #DB handler
    reads them, "in the format which debug_read_clear_dr6() returns"): a single-step trap
    reports BS, DR6 bit 14 (SDM Vol. 3B §17.2.3), and no B0-B3 bit."""
    system = load(tmp_path, FRED_BLOCK + "delivery fred\n"
                  "cpu 0 start guest cpl 3 rsp top(guest_stack) if 1 tf 1\n" + HANDLERS
                  + GUEST_LOOP)
    [s] = system.init_states()
    s = step(system, s)
    assert s.machine.cpus[0].held_db
    s = only(system, s, "held-db")
    assert s.machine.cpus[0].pc == CodeAddr("entry_r3", 0)
    assert event_data(s) == 1 << 14


def test_instruction_breakpoint_event_data_names_its_dr(tmp_path: Path) -> None:
    """FRED spec §5.2 (event data for #DB, DR6's format): an instruction breakpoint in
    DR1 (the design's second `breakpoint`) reports B1, DR6 bit 1 (SDM Vol. 3B §17.2.3);
    the one in DR0, elsewhere, is not reported."""
    system = load(tmp_path, "breakpoint exec idle\nbreakpoint exec guest+1\n" + FRED_BLOCK
                  + "delivery fred\ncpu 0 start guest cpl 3 rsp top(guest_stack) if 1\n"
                  + HANDLERS + GUEST_LOOP)
    [s] = system.init_states()
    s = step(system, s, 2)  # the nop, then the breakpoint on the jmp faults before it
    assert s.machine.cpus[0].pc == CodeAddr("entry_r3", 0)
    assert [f.vector for f in s.machine.frames] == [1]
    assert event_data(s) == 0b10


WATCHED = """\
var watched = 0
var other = 0
"""


def test_data_breakpoint_event_data_names_its_dr(tmp_path: Path) -> None:
    """FRED spec §5.2 (event data for #DB: DR6's cause bits, B0-B3 in bits 3:0) and SDM
    Vol. 3B §18.2.3 (DR6: "B0 through B3 (breakpoint condition detected) flags ... Indicates
    (when set) that its associated breakpoint condition was met when a debug exception
    was generated"; §17.2.3 in older editions): a write to a variable watched by DR1 (the
    design's second `breakpoint`) is a trap whose #DB reports B1; DR0, an instruction
    breakpoint elsewhere, and DR2, on another variable, are not reported."""
    system = load(tmp_path, WATCHED + "breakpoint exec entry_r3\nbreakpoint write watched len 8\n"
                  "breakpoint rw other len 8\n" + FRED_BLOCK
                  + "delivery fred\ncpu 0 start idle cpl 0 rsp top(primary) if 1\n" + HANDLERS
                  + "ENTRY(idle)\n        movq $1, watched\n1:      nop\n        jmp 1b\n")
    [s] = system.init_states()
    s = step(system, s)
    assert s.machine.cpus[0].held_db and s.machine.cpus[0].db_cause == 0b10
    s = only(system, s, "held-db")
    assert s.machine.cpus[0].pc == CodeAddr("entry_r0", 0)
    assert [f.vector for f in s.machine.frames] == [1]
    assert event_data(s) == 0b10


def test_every_data_breakpoint_matched_is_reported(tmp_path: Path) -> None:
    """SDM Vol. 3B §18.2.3 (DR6 B0-B3: each flag is set for its own breakpoint whose
    condition was met, so one #DB may report several) through FRED's #DB event data
    (FRED spec §5.2): DR0 and DR2 both watch the word written, DR1 is an instruction
    breakpoint elsewhere: B0 and B2; with TF set as well, BS (bit 14) with them."""
    body = (WATCHED + "breakpoint rw watched len 8\nbreakpoint exec entry_r3\n"
            "breakpoint write watched len 4\n" + FRED_BLOCK + "delivery fred\n"
            "cpu 0 start idle cpl 0 rsp top(primary) if 1{tf}\n" + HANDLERS
            + "ENTRY(idle)\n        movq $1, watched\n1:      nop\n        jmp 1b\n")
    for tf, want in (("", 0b101), (" tf 1", 0b101 | 1 << 14)):
        system = load(tmp_path, body.format(tf=tf))
        [s] = system.init_states()
        s = only(system, step(system, s), "held-db")
        assert event_data(s) == want


def test_a_read_does_not_match_a_write_breakpoint_bit(tmp_path: Path) -> None:
    """SDM Vol. 3B §18.2.4 (R/W 01: break on data writes only) with §18.2.3: a read of a
    word watched by a write breakpoint (DR0) and a read/write one (DR1) reports B1 only
    (FRED spec §5.2's #DB event data)."""
    system = load(tmp_path, WATCHED + "breakpoint write watched len 8\n"
                  "breakpoint rw watched len 8\n" + FRED_BLOCK
                  + "delivery fred\ncpu 0 start idle cpl 0 rsp top(primary) if 1\n" + HANDLERS
                  + "ENTRY(idle)\n        movq watched, %rax\n1:      nop\n        jmp 1b\n")
    [s] = system.init_states()
    s = only(system, step(system, s), "held-db")
    assert event_data(s) == 0b10


def test_idt_delivery_keeps_no_dr6(tmp_path: Path) -> None:
    """The IDT model keeps no DR6 (a handler cannot read it; no property names it): the
    same data breakpoint without CR4.FRED holds a #DB with no cause bits, so IDT states
    are as they were (model.x86.debug.trap)."""
    system = load(tmp_path, WATCHED + "breakpoint write watched len 8\n"
                  "idt idt\n    gate #DB entry_r0 interrupt\nend\n"
                  "cpu 0 start idle cpl 0 idt idt rsp top(primary) if 1\n"
                  + "ENTRY(entry_r0)\n        iretq\n"
                  + "ENTRY(idle)\n        movq $1, watched\n1:      nop\n        jmp 1b\n")
    [s] = system.init_states()
    s = step(system, s)
    assert s.machine.cpus[0].held_db and s.machine.cpus[0].db_cause == 0


def test_fred_delivery_pushes_on_a_watched_word_may_raise_db_with_its_bit(
    tmp_path: Path,
) -> None:
    """FRED spec §5.2 (#DB event data, DR6's format) and SDM Vol. 3B §18.2.3: FRED's own
    frame pushes on a word DR1 watches may raise a #DB as the IDT delivery's may (the SDM
    does not say whether a delivery's pushes are checked: both explored,
    model.x86.debug.delivery_pushes_hit); when taken it reports B1. An NMI from ring 3
    pushes its frame below IA32_FRED_RSP0 = top(primary): the event-data word is at
    top(primary) - 16."""
    system = load(tmp_path, "breakpoint exec idle\nbreakpoint write top(primary)-16 len 8\n"
                  + FRED_BLOCK + "delivery fred\n"
                  "cpu 0 start guest cpl 3 rsp top(guest_stack) if 1\n" + HANDLERS + GUEST_LOOP,
                  nmi=1)
    [s] = system.init_states()
    s = only(system, s, "nmi")
    cpu = s.machine.cpus[0]
    assert cpu.pc == CodeAddr("entry_r3", 0) and cpu.held_db and cpu.db_unsure
    assert cpu.db_cause == 0b10
    s = only(system, s, "held-db")
    assert [f.vector for f in s.machine.frames] == [2, 1]
    assert event_data(s) == 0b10
