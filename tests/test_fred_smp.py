"""FRED on more than one CPU (issue 17): each CPU has its own FRED MSRs, CPU symmetry
renumbers the stack addresses they hold with the CPUs, and partial-order reduction counts
an event FRED will push into another CPU's stack as reaching into that CPU.

FRED spec sections (Intel document 346446): §5.1 (the stack an event is pushed on: level 0
from ring 3, max(current level, IA32_FRED_STKLVLS's level for the vector) in ring 0, the
stack pointer from IA32_FRED_RSPn), §4 (the FRED MSRs are per logical processor, written
by WRMSR)."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from checker.explore import Check, Options, explore
from checker.spec import read_property_file
from checker.verdict import Kind
from model.lang import isa
from model.system.provider import DesignProvider
from model.x86 import msr
from tests.random_designs import Case, compare

ROOT = Path(__file__).resolve().parent.parent
PROVIDER = DesignProvider()

# CPUs 1 and 2 (interchangeable) each write their own IA32_FRED_RSP1 at run time; NMIs
# have stack level 1, so an NMI taken in ring 0 is pushed at the top of the CPU's own
# nmi_stack, which the handler checks (`wrong`). CPU 0 sends the NMI IPI.
SMP_SYMMETRIC = Case(
    seed=-17,
    name="fred_smp_sym",
    symmetry="valid",
    design=textwrap.dedent("""\
        design fred_smp_sym "FRED on 3 CPUs: each writes its own IA32_FRED_RSP1"
        cpus 3
        symmetric
        stack kstack size 0x1000 per-cpu
        stack nmi_stack size 0x1000 per-cpu
        delivery fred
        fred
            entry entry_r3 entry_r0
            rsp 0 kstack
            level NMI 1
        end
        var wrong = 0
        cpu 0 start sender cpl 0 rsp top(kstack)
        cpu * start setup cpl 0 rsp top(kstack)

        ENTRY(sender)
                movl  $0x1cd, %ecx
                movabsq $top(nmi_stack), %rax
                movq  %rax, %rdx
                shrq  $32, %rdx
                wrmsr
                jmp   ipi

        function ipi {
            send_nmi(ALL_BUT_SELF);
            stop();
        }

        ENTRY(setup)
                movl  $0x1cd, %ecx
                movabsq $top(nmi_stack), %rax
                movq  %rax, %rdx
                shrq  $32, %rdx
                wrmsr
        1:      hlt
                jmp   1b

        ENTRY(entry_r3)
                eretu

        # An NMI (ring 0, stack level 1) pushes its 64-byte frame at the top of this CPU's own
        # level-1 stack: anywhere else is `wrong`.
        ENTRY(entry_r0)
                pushq %rax
                movq  48(%rsp), %rax              # the SS word: an NMI (event type 2)?
                shrq  $48, %rax
                andq  $0xf, %rax
                cmpq  $2, %rax
                jne   1f
                movabsq $top(nmi_stack), %rax
                subq  $72, %rax
                cmpq  %rax, %rsp
                je    1f
                movq  $1, wrong
        1:      popq  %rax
                erets
        """),
    properties=textwrap.dedent("""\
        design = "fred_smp_sym"
        [[property]]
        name = "nmi-on-own-level-1-stack"
        kind = "never"
        expr = "wrong == 1"
        expect = "holds"
        [[property]]
        name = "nmi-handled-on-a-second-cpu"
        kind = "reachable"
        expr = "any(f.vector == 2 and f.cpu != 0 for f in frames)"
        expect = "holds"
        """),
)

# CPU 0 points its IA32_FRED_RSP1 into CPU 1's stack by arithmetic; once it has, no
# register of CPU 0 holds the address: only the MSR says CPU 0's NMI will push there.
POR_MSR = textwrap.dedent("""\
        design fred_por_msr "CPU 0's IA32_FRED_RSP1 points into CPU 1's stack"
        cpus 2
        stack kstack size 0x1000 per-cpu
        stack nmi_stack size 0x1000 per-cpu
        delivery fred
        fred
            entry entry_r3 entry_r0
            rsp 0 kstack
            level NMI 1
        end
        percpu got = 0
        var ready = 0
        cpu 0 start aim cpl 0 rsp top(kstack)
        cpu 1 start victim cpl 0 rsp top(nmi_stack)

        # IA32_FRED_RSP1 := the top of the next CPU's nmi_stack, computed (instances lie 0x10000
        # apart), then no register keeps the address:
        # only the MSR says CPU 0's NMI will push into CPU 1's stack.
        ENTRY(aim)
                movl  $0x1cd, %ecx
                movabsq $top(nmi_stack), %rax
                addq  $0x10000, %rax
                movq  %rax, %rdx
                shrq  $32, %rdx
                wrmsr
                xorl  %eax, %eax
                xorl  %edx, %edx
                movq  $1, ready
        1:      hlt
                jmp   1b

        # CPU 1 starts once CPU 0 has written the MSR.
        ENTRY(victim)
        1:      cmpq  $0, ready
                je    1b
                pushq $7
                pushq $7
                popq  %rax
                popq  %rbx
                addq  %rbx, %rax
                jmp   record

        function record {
            got = %rax;
            stop();
        }

        ENTRY(entry_r3)
                eretu

        ENTRY(entry_r0)
                erets
        """)


def _load_design(tmp_path: Path, name: str, text: str, env: dict[str, Any]) -> Any:
    (tmp_path / f"{name}.design").write_text(text)
    return DesignProvider(tmp_path).load(name, {}, env)


def test_symmetry_moves_the_fred_msrs_with_their_cpus(tmp_path: Path) -> None:
    """FRED spec §4: IA32_FRED_RSPn is per logical processor. Renumbering CPUs 1 and 2
    moves the stack address CPU 1 wrote into its IA32_FRED_RSP1 to CPU 2's instance of
    that stack, as it moves RSP and the registers (model/system/symmetry.py)."""
    system = _load_design(tmp_path, "fred_smp_sym", SMP_SYMMETRIC.design, {"nmi": 0})
    sym = system.symmetry
    assert sym is not None
    [s] = system.init_states()
    top1 = system.platform.region("nmi_stack[1]").top
    top2 = system.platform.region("nmi_stack[2]").top
    m = msr.wrmsr(s.machine, 1, msr.IA32_FRED_RSP0 + 1, top1, 0)
    s = s._replace(machine=m)
    t = sym.apply(s, (0, 2, 1))
    assert dict(t.machine.cpus[2].msrs)[msr.IA32_FRED_RSP0 + 1] == top2
    assert not t.machine.cpus[1].msrs
    # The signature writes the MSR as "this CPU's own stack": CPU 1 with its MSR written
    # and CPU 2 with its own written look alike.
    both = s._replace(machine=msr.wrmsr(m, 2, msr.IA32_FRED_RSP0 + 1, top2, 0))
    assert sym.signature(both, 1) == sym.signature(both, 2)


@pytest.mark.slow  # four command-line runs, the plain one 13,465 states (about 15 s)
def test_symmetric_fred_design_same_verdicts_under_every_reduction() -> None:
    """A symmetric FRED design whose CPUs write their FRED MSRs at run time: plain,
    --symmetry, --por and both agree (with the MSRs left unmoved, the symmetric run
    says `violated`: a renumbered CPU would push its NMI on another CPU's stack)."""
    outcome = compare(
        SMP_SYMMETRIC, ["symmetry", "por", "por+symmetry"], max_states=100_000, replay=False
    )
    assert outcome.findings == []
    assert outcome.baseline is not None
    verdicts = {r["name"]: r["verdict"] for r in outcome.baseline["results"]}
    assert verdicts == {"nmi-on-own-level-1-stack": "holds", "nmi-handled-on-a-second-cpu": "holds"}


def test_a_fred_stack_msr_in_another_cpus_stack_reaches_into_it(tmp_path: Path) -> None:
    """FRED spec §5.1: an event is pushed below IA32_FRED_RSPn with no instruction in
    between, so a CPU whose stack MSR points into another CPU's stack reaches into that
    CPU for partial-order reduction, as one whose RSP does (model/system/por.py). (The
    own value no longer makes the CPU independent: its FRED entry ends in ERETS, which
    loads RSP from a frame and so counts as reaching into another CPU.)"""
    system = _load_design(tmp_path, "fred_por_msr", POR_MSR, {"nmi": [1, 0]})
    pers = system.reductions.persistence
    [s] = system.init_states()
    own = system.platform.region("nmi_stack[0]").top
    other = system.platform.region("nmi_stack[1]").top
    at = s.machine.cpus[0]._replace(pc=s.machine.cpus[0].pc._replace(index=9))  # the hlt loop
    for value, foreign in ((own, False), (other, True)):
        cpu = at._replace(msrs=((msr.IA32_FRED_RSP0 + 1, value),))
        t = s._replace(machine=s.machine.with_cpu(0, cpu))
        assert pers._pushes_into(value) == (1 if foreign else 0)
        if foreign:
            assert pers.may_reach_foreign(t, 0)


def test_wrmsr_is_not_local() -> None:
    """WRMSR of IA32_FRED_RSPn decides where later events are pushed (FRED spec §5.1):
    the instruction table lists it as writing memory, so a CPU that can still reach a
    WRMSR interferes (the value may be computed to lie in another CPU's stack)."""
    assert isa.MEMORY in isa.BY_OP["wrmsr"].writes


@pytest.mark.slow  # two command-line runs and a replay in a subprocess (about 6 s)
def test_por_sees_an_nmi_pushed_through_a_computed_fred_msr() -> None:
    """End to end: CPU 0's NMI, pushed into CPU 1's stack through the MSR, can land
    between CPU 1's pushes and pops; --por explores that interleaving too."""
    case = Case(seed=-18, name="fred_por_msr", symmetry="none", design=POR_MSR,
                properties=textwrap.dedent("""\
                    design = "fred_por_msr"
                    [[property]]
                    name = "nmi-frame-overwrites-cpu1-words"
                    kind = "reachable"
                    expr = "got[1] != 0 and got[1] != 14"
                    expect = "holds"
                    environment = { nmi = [1, 0] }
                    """))
    assert compare(case, ["por"]).findings == []


FRED_PROPERTIES = read_property_file(ROOT / "properties" / "fred.toml").properties
TWO_CPUS = [p for p in FRED_PROPERTIES if p.environment.get("cpus", 1) > 1]


@pytest.mark.parametrize("prop", TWO_CPUS, ids=lambda p: p.name)
def test_two_cpu_fred_properties_same_verdict_with_por(prop: Any) -> None:
    """The 2-CPU NMI IPI questions of properties/fred.toml (FRED and their IDT twins)
    get the same verdict plain and with partial-order reduction."""
    system = PROVIDER.load(prop.design, prop.variant, dict(prop.environment))
    assert prop.expr is not None
    check = Check(Kind(prop.kind), prop.expr.evaluate, prop.name, prop.expr.names)
    full = explore(system, [check])
    por = explore(system, [check], options=Options(por=True))
    assert por.outcomes[0].verdict == full.outcomes[0].verdict
    assert full.outcomes[0].verdict.value == prop.expect


@pytest.mark.slow  # the IPI design on 3 CPUs, twice (about 10 s)
def test_xen_fred_on_three_cpus_one_state_per_orbit() -> None:
    """xen_fred with the NMI IPI on 3 CPUs (two interchangeable, in Xen): the reduced
    exploration visits exactly one state per orbit of the full one: the stack addresses
    in the FRED MSRs (here the `fred` block's, per CPU) tell no CPU apart wrongly."""
    system = PROVIDER.load("xen_fred", {"ipi": "nmi", "context": "xen"}, {"cpus": 3, "nmi": 0})
    full = explore(system, [])
    reduced = explore(system, [], options=Options(symmetry=True))
    orbits = {system.representative(s) for s in full.visited or ()}
    assert set(reduced.visited or ()) == orbits
    assert reduced.stats.states < full.stats.states
