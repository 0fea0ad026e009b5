"""Supervisor-mode access prevention (CR4.SMAP).

SDM Vol. 3A §4.6.1 (Determination of Access Rights): accesses at CPL < 3 are supervisor-
mode accesses; with CR4.SMAP = 1, "If EFLAGS.AC = 0 or the access is implicit, data may
not be written to any user-mode address" (and likewise not read); an explicit access with
AC = 1 may. §4.7: the #PF error code has P = 1, W/R for a write, U/S = 0 for a
supervisor access. Table 6-5: a #PF raised while delivering a contributory exception
(#GP) is a double fault.

The pushes of an event delivery onto a CPL 0 stack are not among §4.6.1's implicit
accesses (GDT, LDT, IDT, TSS), so they follow AC (model/x86/smap.py says why that is the
choice that cannot hide a frame written to guest memory).
"""

from __future__ import annotations

import pytest

from model.x86 import smap
from model.x86.arch import AC_FLAG, DF, GP, NMI, PF
from model.x86.delivery import Source
from model.x86.memory import ArchFault, pop, push
from model.x86.state import Gate
from tests.x86_helpers import (
    FLAGS_IF,
    GUEST_MEMORY_RSP,
    GUEST_STACK,
    deliver_event,
    handler,
    last_frame,
    make_cpu,
    make_machine,
    platform,
    xen_idt,
)


def _ring0_on_guest_stack(smap_on: bool, rflags: int = FLAGS_IF):
    p = platform(smap=smap_on)
    cpu = make_cpu(p, cpl=0, rsp=GUEST_STACK.top - 0x40, rflags=rflags)
    return p, make_machine(p, cpu)


def test_supervisor_write_to_a_user_page_faults_with_smap():
    """SDM §4.6.1: with SMAP and AC = 0 a supervisor write to a user-mode page is refused:
    #PF with P=1, W=1, U/S=0 (§4.7)."""
    p = platform(smap=True)
    with pytest.raises(ArchFault) as err:
        smap.check(p, GUEST_MEMORY_RSP, 0, FLAGS_IF, write=True)
    assert err.value.vector == PF and err.value.error_code == 0b011
    with pytest.raises(ArchFault) as err:
        smap.check(p, GUEST_STACK.lo, 0, FLAGS_IF, write=False)
    assert err.value.error_code == 0b001


def test_smap_spares_ac_user_mode_supervisor_pages_and_smap_off():
    """SDM §4.6.1: an explicit access with AC = 1 is allowed; CPL 3 accesses are user-mode
    accesses (SMAP does not apply); supervisor pages are unaffected; CR4.SMAP = 0 allows
    everything."""
    on, off = platform(smap=True), platform()
    smap.check(on, GUEST_MEMORY_RSP, 0, FLAGS_IF | AC_FLAG, write=True)
    smap.check(on, GUEST_MEMORY_RSP, 3, FLAGS_IF, write=True)
    smap.check(on, on.region("primary").lo, 0, FLAGS_IF, write=True)
    smap.check(off, GUEST_MEMORY_RSP, 0, FLAGS_IF, write=True)


def test_ring0_push_and_pop_on_a_user_page_fault():
    """SDM §4.6.1: PUSH/POP at CPL 0 with RSP on a user page are explicit supervisor
    accesses: #PF under SMAP, and nothing is written."""
    p, m = _ring0_on_guest_stack(True)
    with pytest.raises(ArchFault) as err:
        push(p, m, 0, 1)
    assert err.value.vector == PF
    with pytest.raises(ArchFault):
        pop(p, m, 0)
    p, m = _ring0_on_guest_stack(False)
    assert push(p, m, 0, 1).memory


def test_delivery_onto_a_user_page_faults_instead_of_writing_a_frame():
    """SDM §4.6.1 and Table 6-5 (the XSA-7 case): a #GP delivered at CPL 0 with RSP on the
    guest's stack cannot push its frame there under SMAP: the #PF during the contributory
    #GP's delivery is a double fault, delivered on Xen's #DF IST stack; guest memory is
    never written."""
    p, m = _ring0_on_guest_stack(True)
    m = deliver_event(p, m, Source.EXCEPTION, GP, 0)
    frame = last_frame(m)
    assert frame.vector == DF and frame.stack == "df_ist"
    assert not any(GUEST_STACK.lo <= a < GUEST_STACK.hi for a, _ in m.memory)
    assert not any(f.on_guest_stack for f in m.frames)


def test_without_smap_the_frame_lands_on_the_guest_stack():
    """The converse (CR4.SMAP = 0): the #GP frame is written onto the guest's stack."""
    p, m = _ring0_on_guest_stack(False)
    m = deliver_event(p, m, Source.EXCEPTION, GP, 0)
    assert last_frame(m).vector == GP and last_frame(m).on_guest_stack


def test_delivery_with_ac_set_may_write_the_user_page():
    """SDM §4.6.1: delivery pushes at CPL 0 are explicit supervisor accesses (not GDT,
    LDT, IDT or TSS accesses), so with AC = 1 (inside a STAC region) they are allowed."""
    p, m = _ring0_on_guest_stack(True, FLAGS_IF | AC_FLAG)
    m = deliver_event(p, m, Source.EXCEPTION, GP, 0)
    assert last_frame(m).vector == GP and last_frame(m).on_guest_stack


def test_a_benign_event_becomes_a_page_fault_then_a_double_fault():
    """SDM Table 6-5: an NMI whose push faults (#PF) is followed serially by the #PF, whose
    own push onto the same user page faults again: #PF during #PF is a double fault."""
    p = platform(smap=True)
    cpu = make_cpu(p, cpl=0, rsp=GUEST_STACK.top - 0x40)
    m = make_machine(p, cpu, idts=(xen_idt(v2=Gate(handler(NMI))),))  # NMI without IST
    m = deliver_event(p, m, Source.NMI, NMI)
    assert [f.vector for f in m.frames] == [DF]
    assert m.cpus[0].nmi_blocked  # the NMI was accepted (SDM §6.7.1)


def test_iret_reading_its_frame_from_a_user_page_faults():
    """SDM §4.6.1: IRET at CPL 0 reads its frame with explicit supervisor-mode data
    accesses; under SMAP with AC = 0 a frame on a user page is #PF (P=1, W=0, U/S=0,
    §4.7) before anything is loaded, and NMIs are unblocked all the same (§6.7.1). With
    AC = 1, or SMAP off, the same frame returns to the guest."""
    from model.x86.instructions import iret
    from tests.x86_helpers import GUEST_CS64, GUEST_SS

    def frame_machine(smap_on: bool, rflags: int):  # type: ignore[no-untyped-def]
        p = platform(smap=smap_on)
        rsp = GUEST_STACK.top - 0x40
        cpu = make_cpu(p, cpl=0, rsp=rsp, rflags=rflags)._replace(nmi_blocked=True)
        m = make_machine(p, cpu)
        words = (0x1000, GUEST_CS64, FLAGS_IF, GUEST_STACK.top - 8, GUEST_SS)
        m = m._replace(memory=tuple((rsp + 8 * k, w) for k, w in enumerate(words)))
        return p, m

    p, m = frame_machine(True, FLAGS_IF)
    with pytest.raises(ArchFault) as err:
        iret(p, m, 0)
    assert err.value.vector == PF and err.value.error_code == 0b001
    assert err.value.machine is not None and not err.value.machine.cpus[0].nmi_blocked
    for smap_on, flags in ((True, FLAGS_IF | AC_FLAG), (False, FLAGS_IF)):
        p, m = frame_machine(smap_on, flags)
        assert iret(p, m, 0).cpus[0].cpl == 3


def test_rep_movsq_from_a_user_page_faults():
    """SDM §4.6.1: REP MOVSQ at CPL 0 makes explicit supervisor-mode accesses: reading a
    user page (or writing one) under SMAP with AC = 0 is #PF and copies nothing."""
    from model.x86.memory import copy_words

    p, m = _ring0_on_guest_stack(True)
    primary = p.region("primary")
    with pytest.raises(ArchFault) as err:
        copy_words(p, m, 0, GUEST_STACK.lo, primary.lo, 5)
    assert err.value.vector == PF and err.value.error_code == 0b001
    with pytest.raises(ArchFault) as err:
        copy_words(p, m, 0, primary.lo, GUEST_STACK.lo, 5)
    assert err.value.error_code == 0b011
    p, m = _ring0_on_guest_stack(False)
    copy_words(p, m, 0, GUEST_STACK.lo, primary.lo, 5)
