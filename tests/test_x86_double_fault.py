"""SDM Vol. 3A §6.15 "Interrupt 8—Double Fault Exception", Tables 6-4 and 6-5: every pair
(first event being delivered, second exception raised meanwhile), checked against an
independent copy of the tables, then end to end through `deliver`."""

from __future__ import annotations

import pytest

from model.x86.arch import DF, GP, MC, NMI, PF, UD
from model.x86.delivery import Escalation, Event, Source, double_fault_outcome, event_class
from model.x86.instructions import set_ist, set_rsp0
from model.x86.state import Gate, Idt, Run
from tests.x86_helpers import (
    deliver_event,
    handler,
    last_frame,
    make_cpu,
    make_machine,
    platform,
    setup,
    xen_idt,
)

# SDM Table 6-4, written out independently of model/x86/arch.py.
BENIGN_EXCEPTIONS = {1, 3, 4, 5, 6, 7, 9, 16, 17, 18, 19}
CONTRIBUTORY = {0, 10, 11, 12, 13, 21}
PAGE_FAULT = {14, 20}
EXCEPTION_VECTORS = sorted(BENIGN_EXCEPTIONS | CONTRIBUTORY | PAGE_FAULT | {DF})
# A second exception raised during delivery: any exception but #DF itself (which is only
# ever the combination of two others) and vector 2 (NMI is an interrupt, not an exception).
SECOND_VECTORS = sorted(BENIGN_EXCEPTIONS | CONTRIBUTORY | PAGE_FAULT)

# SDM Table 6-5, rows = first, columns = second.
TABLE_6_5 = {
    ("benign", "benign"): Escalation.SERIAL,
    ("benign", "contributory"): Escalation.SERIAL,
    ("benign", "page fault"): Escalation.SERIAL,
    ("contributory", "benign"): Escalation.SERIAL,
    ("contributory", "contributory"): Escalation.DOUBLE_FAULT,
    ("contributory", "page fault"): Escalation.SERIAL,
    ("page fault", "benign"): Escalation.SERIAL,
    ("page fault", "contributory"): Escalation.DOUBLE_FAULT,
    ("page fault", "page fault"): Escalation.DOUBLE_FAULT,
    ("double fault", "benign"): Escalation.SERIAL,
    ("double fault", "contributory"): Escalation.SHUTDOWN,
    ("double fault", "page fault"): Escalation.SHUTDOWN,
}


def exception_class(vector: int) -> str:
    if vector == DF:
        return "double fault"
    if vector in CONTRIBUTORY:
        return "contributory"
    if vector in PAGE_FAULT:
        return "page fault"
    assert vector in BENIGN_EXCEPTIONS
    return "benign"


def first_class(event: Event) -> str:
    """Table 6-4: NMI, #MC, INT n and INTR are benign whatever the vector."""
    if event.source is Source.EXCEPTION:
        return exception_class(event.vector)
    return "benign"


FIRSTS = (
    [Event(Source.EXCEPTION, v) for v in EXCEPTION_VECTORS]
    + [
        Event(Source.NMI, NMI),
        Event(Source.MACHINE_CHECK, MC),
        Event(Source.INT1, 1),
        Event(Source.INT3, 3),
        Event(Source.INTO, 4),
    ]
    # External interrupts and INT n to vectors that are contributory/#PF/#DF as exceptions
    # are still benign (Table 6-4: "All INT n", "All INTR").
    + [Event(Source.EXTERNAL, v) for v in (DF, 13, 14, 0x20, 0xFF)]
    + [Event(Source.INT_N, v) for v in (0, DF, 13, 14, 0x80)]
)


def _id(e: Event) -> str:
    return f"{e.source.value}-{e.vector}"


@pytest.mark.parametrize("second", SECOND_VECTORS)
@pytest.mark.parametrize("first", FIRSTS, ids=_id)
def test_table_6_5_every_pair(first, second):
    """SDM §6.15 Interrupt 8, Table 6-5 (conditions for generating a double fault) over
    Table 6-4's classes."""
    expected = TABLE_6_5[(first_class(first), exception_class(second))]
    got = double_fault_outcome(first, Event(Source.EXCEPTION, second))
    assert got is expected


@pytest.mark.parametrize("second", SECOND_VECTORS)
@pytest.mark.parametrize("first", FIRSTS, ids=_id)
def test_table_6_5_strict_knob(first, second):
    """REFERENCE.md (KVM, older SDMs: "if another exception occurs while attempting to call
    the double-fault handler, the processor enters shutdown mode"): with df_rule="strict"
    any exception during #DF delivery shuts down; other rows are unchanged."""
    got = double_fault_outcome(first, Event(Source.EXCEPTION, second), df_rule="strict")
    if first_class(first) == "double fault":
        assert got is Escalation.SHUTDOWN
    else:
        assert got is TABLE_6_5[(first_class(first), exception_class(second))]


@pytest.mark.parametrize("vector", range(32))
def test_event_class_of_exceptions(vector):
    """SDM Table 6-4 (vectors 15 and 22-31 are reserved: the model calls them benign)."""
    c = event_class(Event(Source.EXCEPTION, vector)).value
    if vector in BENIGN_EXCEPTIONS | CONTRIBUTORY | PAGE_FAULT | {DF}:
        assert c == exception_class(vector)
    else:
        assert c == "benign"


# --- End to end --------------------------------------------------------------------------------


@pytest.mark.parametrize("first", [GP, 0])
def test_contributory_during_contributory_delivers_df(first):
    """SDM Table 6-5: a #GP (missing gate: §6.12.1.1) raised while delivering a contributory
    exception (#GP, #DE) -> #DF, delivered through its IST gate with error code 0."""
    p = platform()
    idt = xen_idt(**{f"v{first}": None})
    m = make_machine(p, make_cpu(p, cpl=3), idts=(idt,))
    m2 = deliver_event(p, m, Source.EXCEPTION, first, error_code=0)
    f = last_frame(m2)
    assert (f.vector, f.stack, f.from_cpl) == (DF, "df_ist", 3)
    assert len(m2.frames) == 1
    cpu = m2.cpus[0]
    assert cpu.pc.routine == handler(DF)
    assert cpu.run is Run.RUNNING and cpu.delivering is None


def test_np_while_delivering_pf_delivers_df():
    """SDM Table 6-5: page fault first, contributory (#NP, not-present gate) second -> #DF."""
    p = platform()
    idt = xen_idt(v14=Gate(handler(PF), present=False))
    m = make_machine(p, make_cpu(p, cpl=0), idts=(idt,))
    f = last_frame(deliver_event(p, m, Source.EXCEPTION, PF, error_code=2))
    assert f.vector == DF


def test_pf_while_delivering_pf_delivers_df():
    """SDM Table 6-5: page fault then page fault -> #DF (RSP0 unset: the push faults)."""
    p, m = setup(cpl=3)
    m = set_rsp0(m, "tss0", None)
    f = last_frame(deliver_event(p, m, Source.EXCEPTION, PF, error_code=6))
    assert (f.vector, f.stack) == (DF, "df_ist")


def test_pf_while_delivering_gp_is_serial():
    """SDM Table 6-5: contributory then page fault -> handled serially (the #PF is delivered);
    here the #GP's IST stack is unset so its first push faults."""
    p = platform()
    idt = xen_idt(v13=Gate(handler(GP), ist=5))  # TSS.IST5 is unset in xen_tss()
    m = make_machine(p, make_cpu(p, cpl=0), idts=(idt,))
    f = last_frame(deliver_event(p, m, Source.EXCEPTION, GP, error_code=0))
    assert f.vector == PF


def test_pf_while_delivering_df_shuts_down():
    """SDM Table 6-5 / §6.15 Interrupt 8: "If another exception occurs while attempting to
    call the double-fault handler, the processor enters shutdown mode" (#PF: the #DF IST
    slot is unset)."""
    p = platform()
    m = make_machine(p, make_cpu(p, cpl=0), idts=(xen_idt(v13=None),))
    m = set_ist(m, "tss0", 4, None)
    m2 = deliver_event(p, m, Source.EXCEPTION, GP, error_code=0)
    cpu = m2.cpus[0]
    assert cpu.run is Run.SHUTDOWN
    assert cpu.delivering is None
    assert m2.frames == ()


EVENTS = [
    (Source.EXTERNAL, 0x30, 0),
    (Source.NMI, NMI, 0),
    (Source.MACHINE_CHECK, MC, 0),
    (Source.EXCEPTION, PF, 0),
    (Source.EXCEPTION, GP, 0),
    (Source.EXCEPTION, 0, 0),
    (Source.EXCEPTION, UD, 0),
    (Source.INT_N, 0x80, 3),
    (Source.INT3, 3, 3),
    (Source.INT1, 1, 3),
]


@pytest.mark.parametrize("source,vector,cpl", EVENTS)
@pytest.mark.parametrize("idtr", ["empty", None])
def test_empty_idt_triple_faults(source, vector, cpl, idtr):
    """SDM §6.15 Interrupt 8 + Table 6-5: with an empty IDT (limit 0, or none loaded) every
    event raises #GP, the #GP's own delivery raises #GP (-> #DF), and #DF's raises #GP
    (-> shutdown): a triple fault."""
    p = platform()
    cpu = make_cpu(p, cpl=cpl, idtr=idtr)
    m = make_machine(p, cpu, idts=(xen_idt(), Idt("empty", 0, ())))
    m2 = deliver_event(p, m, source, vector)
    assert m2.cpus[0].run is Run.SHUTDOWN
    assert m2.frames == ()
