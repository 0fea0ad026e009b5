"""Live-frame tracking (issue 3): "every frame pushed by delivery is recorded as live on its
stack until the IRET that consumes it or until code copies it elsewhere; any write
overlapping a live frame marks it clobbered; a frame pushed at ring 0 onto a
guest-controlled stack is marked as such".

The architectural facts underneath: an IST gate reloads RSP from the TSS on every delivery
(SDM §6.14.5), so a nested delivery through the same IST slot overwrites the first frame
(seed 001, Xen's handle_ist_exception); memory below RSP is free for the next push.
"""

from __future__ import annotations

from model.x86.arch import MC, NMI
from model.x86.delivery import Source
from model.x86.events import external_arrives, machine_check_arrives, nmi_arrives
from model.x86.instructions import iret
from model.x86.memory import copy_words, move_rsp, pop, push, read, write
from model.x86.state import WORD, CodeAddr, StackRegion
from tests.x86_helpers import (
    GUEST_STACK,
    deliver_event,
    frame_words,
    handler,
    last_frame,
    make_cpu,
    make_machine,
    platform,
    setup,
)


def test_second_ist_delivery_on_the_same_stack_clobbers_the_first():
    """SDM §6.14.5 + seed 001: a fake NMI (vector 2 from a PIC) runs on the NMI IST stack;
    a real NMI before the handler moved off reloads the same RSP and overwrites the frame."""
    p, m = setup(cpl=0, pc=CodeAddr("hv", 1))
    m = external_arrives(p, m, 0, NMI, pic=True)
    fake = last_frame(m)
    m = nmi_arrives(p, m, 0)  # IF is clear in the handler; NMIs are not IF-gated
    first, second = m.frames
    assert first.lo == second.lo == fake.lo
    assert first.clobbered and not second.clobbered
    assert first.source == "external" and second.source == "nmi"
    # The original return address is gone: the saved RIP is now inside the NMI handler.
    assert frame_words(m, second)["rip"] == CodeAddr(handler(NMI), 0)


def test_distinct_ist_stacks_do_not_clobber():
    """SDM §6.14.5: NMI and #MC use different IST slots (Xen: IST_NMI 2, IST_MCE 1)."""
    p, m = setup(cpl=0)
    m = machine_check_arrives(p, nmi_arrives(p, m, 0), 0)
    assert [(f.vector, f.clobbered) for f in m.frames] == [(NMI, False), (MC, False)]


def test_code_push_over_a_live_frame_clobbers_it():
    """Model rule: any write overlapping a live frame marks it clobbered - here the #MC
    handler, interrupting the NMI handler, moves to the NMI IST stack's top and pushes."""
    p, m = setup(cpl=0)
    m = nmi_arrives(p, m, 0)
    m = machine_check_arrives(p, m, 0)
    m = move_rsp(p, m, 0, p.region("nmi_ist").top)
    nmi_frame = m.frames[0]
    assert not nmi_frame.clobbered  # switching stacks leaves it live
    m = push(p, m, 0, 0xDEAD)
    assert m.frames[0].clobbered and not m.frames[1].clobbered


def test_store_into_a_frame_clobbers_but_the_error_code_slot_does_not():
    """Model rule (state.Frame): the five words [lo, lo+40) are tracked; the error code below
    lo is not (Xen rewrites it with the vector)."""
    p, m = setup(cpl=0)
    m = deliver_event(p, m, Source.EXCEPTION, 13, error_code=0)
    f = last_frame(m)
    m1 = write(p, m, f.lo - WORD, 0x0D_0000_0000, 0)
    assert not last_frame(m1).clobbered
    m2 = write(p, m, f.lo + 2 * WORD, 0, 0)
    assert last_frame(m2).clobbered


def test_copy_words_moves_a_frame():
    """Xen handle_ist_exception (xen/arch/x86/x86_64/entry.S): a from-guest IST frame is
    copied to the primary stack; the copy is the live frame, the IST copy is consumed."""
    p, m = setup(cpl=3)
    m = nmi_arrives(p, m, 0)
    f = last_frame(m)
    assert (f.stack, f.from_cpl) == ("nmi_ist", 3)
    words = frame_words(m, f)
    dst = p.region("primary").top - 5 * WORD
    m = copy_words(p, m, 0, f.lo, dst, 5)
    (moved,) = m.frames
    assert (moved.lo, moved.stack, moved.vector, moved.from_cpl) == (dst, "primary", NMI, 3)
    assert not moved.clobbered and not moved.on_guest_stack
    assert frame_words(m, moved) == words
    # Another delivery through the NMI IST slot overwrites only the stale IST copy.
    m2 = deliver_event(p, m, Source.EXTERNAL, NMI)
    assert not m2.frames[0].clobbered
    # The handler continues on the primary stack and IRETs through the copy to the guest.
    m = iret(p, move_rsp(p, m, 0, dst), 0)
    assert m.cpus[0].cpl == 3 and m.frames == ()


def test_copy_words_into_guest_memory_marks_on_guest_stack():
    """Model rule: a frame that ends up in guest-controlled memory is marked as such."""
    p, m = setup(cpl=0)
    m = nmi_arrives(p, m, 0)
    f = last_frame(m)
    m = copy_words(p, m, 0, f.lo, GUEST_STACK.top - 5 * WORD, 5)
    (moved,) = m.frames
    assert (moved.stack, moved.on_guest_stack) == ("guest_stack", True)


def test_partial_copy_leaves_the_frame_in_place():
    """Model rule: only a copy of the whole frame moves it."""
    p, m = setup(cpl=0)
    m = nmi_arrives(p, m, 0)
    f = last_frame(m)
    m = copy_words(p, m, 0, f.lo, p.region("primary").top - 5 * WORD, 4)
    assert m.frames == (f,)


def test_move_rsp_upward_within_a_region_abandons_passed_frames():
    """SDM Vol. 1 §6.2 (the stack grows down; memory below RSP is free): raising RSP past a
    frame's saved-RIP word on its own stack means nothing will IRET through it."""
    p, m = setup(cpl=0)
    m = deliver_event(p, m, Source.EXTERNAL, 0x30)
    f = last_frame(m)
    assert move_rsp(p, m, 0, f.lo).frames == (f,)  # not moved
    assert move_rsp(p, m, 0, f.lo - 0x40).frames == (f,)  # downward
    assert move_rsp(p, m, 0, f.lo + 5 * WORD).frames == ()  # past it


def test_move_rsp_back_down_to_the_frame_keeps_it():
    """Model rule: pushes below a frame and popping back to it do not pass it."""
    p, m = setup(cpl=0)
    m = deliver_event(p, m, Source.EXTERNAL, 0x30)
    f = last_frame(m)
    m = push(p, push(p, m, 0, 1), 0, 2)
    m, _ = pop(p, m, 0)
    m, _ = pop(p, m, 0)
    assert m.frames == (f,) and m.cpus[0].rsp == f.lo


def test_pop_of_the_saved_rip_abandons_the_frame():
    """Model rule: POP raises RSP past the saved RIP; the frame is no longer returnable."""
    p, m = setup(cpl=0)
    m = deliver_event(p, m, Source.EXTERNAL, 0x30)
    m, value = pop(p, m, 0)
    assert value == CodeAddr("hv", 0)
    assert m.frames == ()


def test_switching_stacks_does_not_abandon():
    """Model rule: moving RSP to another region (even a higher address) leaves the frames of
    the old stack live - an interrupted handler's frame stays on its IST stack."""
    p, m = setup(cpl=0)
    m = deliver_event(p, m, Source.EXTERNAL, 0x30)
    f = last_frame(m)
    assert p.region("nmi_ist").top > f.lo
    assert move_rsp(p, m, 0, p.region("nmi_ist").top).frames == (f,)


def test_frames_of_other_cpus_are_not_abandoned():
    """Model rule: RSP belongs to one CPU; another CPU's frames on a shared region stay."""
    shared = StackRegion("shared", 0xFFFF_8300_0080_0000, 0x1000)
    p = platform(ncpus=2)
    p = type(p)(regions=(*p.regions, shared), lstar=p.lstar)
    rsp = shared.top - 0x100
    m = make_machine(p, make_cpu(p, 0, rsp=rsp - 0x400), make_cpu(p, 1, rsp=rsp))
    m = deliver_event(p, m, Source.EXTERNAL, 0x30, cpu=1)
    f = last_frame(m)
    assert f.cpu == 1 and m.cpus[0].rsp < f.lo < shared.top
    assert move_rsp(p, m, 0, shared.top).frames == (f,)
    assert read(m, f.lo) == CodeAddr("hv", 0)
