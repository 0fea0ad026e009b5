"""Frames as engineers think of them (issue 14, must-have 6): a frame is clobbered when
something other than its own handler's deliberate store overwrites it while the
interrupted context will still return through it; its handler's own store (a fixup
setting the saved RIP, an exit path editing the saved RFLAGS) only marks it
`modified`; a frame the handler moved is tracked where it went (`copy_words`, and the
design's `frame_moved` declaration, model.x86.memory.hand_off).

Architecture underneath: the frame's five words are plain stack memory (SDM Vol. 3A
§6.14.2, Figure 6-9) that IRET reads back from wherever RSP points (SDM Vol. 2 IRET);
an IST delivery reloads RSP from the TSS every time (SDM §6.14.5), so a nested event
through the same slot pushes over the first frame's words.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from checker.errors import InputError
from model.lang.parser import parse_design
from model.system.transition import DesignSystem, Environment
from model.x86.arch import BP, GP, NMI
from model.x86.delivery import Source
from model.x86.events import nmi_arrives
from model.x86.memory import copy_words, hand_off, move_rsp, push, write
from model.x86.state import WORD, CodeAddr
from tests.x86_helpers import (
    deliver_event,
    frame_words,
    last_frame,
    make_cpu,
    make_machine,
    platform,
    setup,
)


def test_own_handler_store_modifies_without_clobbering() -> None:
    """A #GP handler's exception-table fixup writes its own frame's saved RIP (the word
    IRET pops first, SDM Vol. 2 IRET): deliberate, so `modified`, not `clobbered`."""
    p, m = setup(cpl=0)
    m = deliver_event(p, m, Source.EXCEPTION, GP, error_code=0)
    f = last_frame(m)
    m = write(p, m, f.lo, CodeAddr("hv", 7), 0, by=0)
    after = last_frame(m)
    assert after.modified and not after.clobbered
    assert frame_words(m, after)["rip"] == CodeAddr("hv", 7)


def test_a_push_over_its_own_frame_still_clobbers() -> None:
    """Only a store instruction is deliberate: a PUSH (its handler moved RSP back above the
    frame on another stack and pushed) overwrites the frame as a nested delivery would."""
    p, m = setup(cpl=0)
    m = nmi_arrives(p, m, 0)
    f = last_frame(m)
    m = move_rsp(p, move_rsp(p, m, 0, p.region("primary").top), 0, f.lo + WORD)
    m = push(p, m, 0, 0xDEAD)
    assert last_frame(m).clobbered


def test_a_nested_handler_store_into_the_outer_frame_clobbers() -> None:
    """A #BP taken inside the NMI handler runs on the NMI IST stack (no IST for #BP, no
    privilege change: SDM §6.14.2 pushes on the current stack); while its frame is live
    it is not the NMI frame's handler, so its store into the NMI frame is a clobber."""
    p, m = setup(cpl=0)
    m = nmi_arrives(p, m, 0)
    nmi = last_frame(m)
    m = deliver_event(p, m, Source.EXCEPTION, BP)
    m = write(p, m, nmi.lo + 2 * WORD, 0x2, 0, by=0)
    outer, inner = m.frames
    assert outer.clobbered and not outer.modified and not inner.clobbered


def test_another_cpu_store_clobbers() -> None:
    """A frame belongs to the CPU whose delivery pushed it: another CPU's store is never
    its handler's."""
    p = platform(ncpus=2)
    m = make_machine(p, make_cpu(p, 0), make_cpu(p, 1))
    m = deliver_event(p, m, Source.EXCEPTION, GP, error_code=0)
    f = last_frame(m)
    m = write(p, m, f.lo, CodeAddr("hv", 7), 0, by=1)
    assert last_frame(m).clobbered and not last_frame(m).modified


def test_guest_code_store_over_a_ring0_frame_clobbers() -> None:
    """A frame pushed at ring 0 onto guest memory (SYSCALL leaves RSP the guest's, SDM
    Vol. 2 SYSCALL) is the guest's to overwrite: a store at CPL 3 is never a handler's."""
    p, m = setup(cpl=3)
    m = m.with_cpu(0, m.cpus[0]._replace(cpl=0))  # as after SYSCALL: ring 0, guest RSP
    m = deliver_event(p, m, Source.EXTERNAL, 0x30)
    f = last_frame(m)
    assert f.on_guest_stack
    m = write(p, m, f.lo, 0x1234, 3, by=0)
    assert last_frame(m).clobbered


def test_a_frame_moved_down_a_word_is_not_clobbered_by_its_own_copy() -> None:
    """Xen's exception_with_ints_disabled (entry.S) moves its frame down one word with
    `rep movsq`; the copy overlaps the original, and the frame that moves is not damaged."""
    p, m = setup(cpl=0)
    m = deliver_event(p, m, Source.EXCEPTION, GP, error_code=0)
    f = last_frame(m)
    words = frame_words(m, f)
    m = copy_words(p, m, 0, f.lo - WORD, f.lo - 2 * WORD, 6)  # error code + frame
    (moved,) = m.frames
    assert moved.lo == f.lo - WORD and not moved.clobbered
    assert frame_words(m, moved) == words


def test_hand_off_tracks_the_copy_and_frees_the_original() -> None:
    """Linux's NMI entry copies its hardware frame and returns through the copy; a nested
    NMI then pushes over the original (SDM §6.14.5) without damaging anything live."""
    p, m = setup(cpl=0)
    m = nmi_arrives(p, m, 0)
    f = last_frame(m)
    dst = f.lo - 0x100
    for k in range(5):
        m = write(p, m, dst + k * WORD, frame_words(m, f)[("rip", "cs", "rflags", "rsp",
                                                            "ss")[k]], 0, by=0)
    m = hand_off(p, m, 0, f.lo, dst)
    (moved,) = m.frames
    assert (moved.lo, moved.stack, moved.vector) == (dst, "nmi_ist", NMI)
    m = m.with_cpu(0, m.cpus[0]._replace(nmi_blocked=False))  # as after a nested IRET
    m = nmi_arrives(p, m, 0)
    outer, nested = m.frames
    assert outer.lo == dst and not outer.clobbered and nested.lo == f.lo


def test_hand_off_is_checked_not_trusted() -> None:
    """The declaration must name a live frame of its CPU, and the words at the
    destination must be a copy of it."""
    p, m = setup(cpl=0)
    m = nmi_arrives(p, m, 0)
    f = last_frame(m)
    with pytest.raises(ValueError, match="no live frame"):
        hand_off(p, m, 0, f.lo - WORD, f.lo - 0x100)
    with pytest.raises(ValueError, match="not a copy"):
        hand_off(p, m, 0, f.lo, f.lo - 0x100)


DESIGN = """
design handoff
stack kstack size 0x1000
stack nmi_ist size 0x1000
tss tss
    rsp0 kstack
    ist 2 nmi_ist
end
idt idt
    gate NMI nmi_handler interrupt ist 2
end
cpu 0 start idle cpl 0 idt idt tss tss rsp top(kstack) if 1

ENTRY(idle)
1:      nop
        jmp   1b

ENTRY(nmi_handler)
        callq moved
        iretq

function moved {
    frame_moved(%rsp + 8, %rsp + 8 - 0x100)
}
"""


def test_a_false_hand_off_is_a_design_error_at_its_line(tmp_path: Path) -> None:
    """A `frame_moved` whose destination holds no copy is the design's mistake, reported
    at its `path:line` rather than believed."""
    path = tmp_path / "handoff.design"
    path.write_text(DESIGN)
    system = DesignSystem(parse_design(path), Environment(nmi=1))
    s = system.init_states()[0]
    with pytest.raises(InputError) as err:
        for _ in range(10):
            s = system.next_state(s, system.actions(s)[-1])
    line = DESIGN.split("\n").index("    frame_moved(%rsp + 8, %rsp + 8 - 0x100)") + 1
    assert err.value.line == line
    assert "not a copy" in str(err.value)


def _steps(system: DesignSystem, limit: int = 2000) -> list[tuple[object, object, object]]:
    seen: set[object] = set()
    todo = list(system.init_states())
    out = []
    while todo and len(seen) < limit:
        s = todo.pop()
        if s in seen:
            continue
        seen.add(s)
        for a in system.actions(s):
            t = system.next_state(s, a)
            out.append((s, a, t))
            todo.append(t)
    return out


def test_a_handlers_own_edit_is_not_damage_but_a_nested_store_is() -> None:
    """The trace's `damage` note follows the same definition as `frame_clobbered`."""
    from model.system.provider import DesignProvider

    provider = DesignProvider()
    system = provider.load("x86_frames", {}, {"faults": 1})
    edits = [
        (s, a) for s, a, t in _steps(system)
        if any(f.modified for f in t.machine.frames)  # type: ignore[attr-defined]
        and not any(f.modified for f in s.machine.frames)  # type: ignore[attr-defined]
    ]
    assert edits
    for s, a in edits:
        assert "damage" not in system.describe_action(s, a)
    system = provider.load("x86_frames", {"bp_writes": "nmi-copy"}, {"nmi": 1, "faults": 1})
    notes = [system.describe_action(s, a).get("damage", "") for s, a, _ in _steps(system)]
    assert any(str(n).startswith("clobbers NMI frame") for n in notes)
