"""model/designs/xen_pv_traps.design (seed 004, "PV Traps and Entrypoints"): the scenarios
behind properties/pv_traps.toml, one at a time, so that every `holds` there is known not to
be vacuous: every vector 0-255 really reaches Xen, the guest's handlers really are
reached, the emulation really happens. Then the two language features the design needed
(GUEST32 code, SYSENTER).

Each scenario runs the design along one path: where the environment chooses, the test
names the value it wants (`vec=0x40, entry_choice=4`), otherwise the first choice.
`entry_choice` is how trap_ctxt[vec] was set up: 0 unregistered, 1-4 registered with
vDPL 0-3.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from checker.errors import InputError
from model.lang.parser import parse_design
from model.system.interp import SysState
from model.system.provider import DesignProvider
from model.system.transition import DesignSystem, Environment
from model.x86.memory import read
from model.x86.state import CodeAddr

PROVIDER = DesignProvider()

INSN_START = 0x400000  # the design's INSN_START
NO_EC = 0xFFFFFFFF  # X86_EVENT_NO_EC
HW_EXC, SW_INT = 3, 4  # X86_ET_HW_EXC, X86_ET_SW_INT
CALLBACK_SYSCALL, CALLBACK_SYSENTER = 0x102, 0x105
IDT_ERROR = 2  # X86_XEC_IDT


def load(**variant: str) -> DesignSystem:
    return PROVIDER.load("xen_pv_traps", variant, {})


def run(variant: Mapping[str, str], **picks: int) -> Mapping[str, Any]:
    """Run the design along one path; return the vocabulary of the state it ends in (the
    guest spinning in a handler or after its instruction, or the CPU stopped)."""
    system = load(**variant)
    [s] = system.init_states()
    for _ in range(500):
        actions = system.actions(s)
        if not actions:
            break
        action = actions[0]
        if len(actions) > 1:
            ins = system.interp.instr_at(s.machine.cpus[0].pc)
            assert ins is not None
            name = ins.args[0][1]  # type: ignore[index]
            if name in picks:
                hits = [
                    a for a in actions
                    if system.vocabulary(system.next_state(s, a))[name] == picks[name]
                ]
                assert hits, f"the environment cannot choose {name} = {picks[name]}"
                action = hits[0]
        nxt = system.next_state(s, action)
        if nxt == s:
            break
        s = nxt
    else:
        pytest.fail("the path did not settle")
    return system.vocabulary(s)


def explore(system: DesignSystem, visit: Callable[[SysState], None]) -> int:
    """Every reachable state, breadth-first; `visit` sees each once."""
    init = system.init_states()
    seen = set(init)
    queue = deque(init)
    while queue:
        s = queue.popleft()
        visit(s)
        for a in system.actions(s):
            t = system.next_state(s, a)
            if t not in seen:
                seen.add(t)
                queue.append(t)
    return len(seen)


def where(v: Mapping[str, Any]) -> tuple[str, int]:
    cpu = v["cpus"][0]
    return cpu["routine"], cpu["cpl"]


USER64 = {"guest": "pv64", "mode": "user"}
KERNEL64 = {"guest": "pv64", "mode": "kernel"}
USER32 = {"guest": "pv32", "mode": "user"}
KERNEL32 = {"guest": "pv32", "mode": "kernel"}


# -- every vector -------------------------------------------------------------------------


def test_every_vector_0_to_255_reaches_xen_and_comes_back_to_the_guest() -> None:
    """choose_range(vec, 0, 255) then `int $vec`: each of the 256 vectors is executed by
    the guest, enters Xen through some gate, and ends in a guest handler (all entries are
    registered in the `vdpl0` table)."""
    system = load(**USER64, table="vdpl0")
    entered: set[int] = set()
    bounced: set[int] = set()

    def visit(s: SysState) -> None:
        v = system.vocabulary(s)
        if any(f["from_cpl"] == 3 for f in v["frames"]):
            entered.add(v["vec"])
        if v["bounced"]:
            bounced.add(v["vec"])

    explore(system, visit)
    assert entered == set(range(256))
    assert bounced == set(range(256))


# -- INT $N against the guest's vDPL (do_general_protection, permit_softint) -----------------


def test_int_n_with_vdpl3_from_user_is_emulated() -> None:
    """#GP((0x40 << 3) | 2) from the DPL0 gate; vDPL 3 permits it, so Xen steps over the
    instruction and bounces a software interrupt to handler 0x40: no error code, %rip
    after the instruction, the guest's kernel code segment."""
    v = run(USER64, vec=0x40, entry_choice=4)
    assert v["guest_entered"] == 0x40 and v["guest_event_type"] == SW_INT
    assert v["guest_error_code"] == NO_EC and v["guest_rip"] == INSN_START + 2
    assert where(v) == ("guest_handler", 3)
    assert any(f["vector"] == 13 and f["source"] == "exception" for f in v["frames"]) is False


@pytest.mark.parametrize("entry_choice", [0, 1, 2, 3])
def test_int_n_below_vdpl3_from_user_gets_the_gp(entry_choice: int) -> None:
    """Unregistered, or vDPL 0-2: the #GP is passed on as is, error code and all, with %rip
    at the INT instruction (a fault)."""
    v = run(USER64, vec=0x40, entry_choice=entry_choice)
    assert v["guest_entered"] == 13 and v["guest_event_type"] == HW_EXC
    assert v["guest_error_code"] == (0x40 << 3) | IDT_ERROR
    assert v["guest_rip"] == INSN_START
    assert v["domain_crashed"] == 0


@pytest.mark.parametrize(
    ("variant", "entry_choice", "emulated"),
    [
        (KERNEL64, 2, True), (KERNEL64, 1, False),  # TF_kernel_mode: vDPL >= 1
        (KERNEL32, 2, True), (KERNEL32, 1, False),  # ring 1: vDPL >= 1
        (USER32, 3, False), (USER32, 4, True),  # ring 3: vDPL 3
    ],
)
def test_guest_kernel_mode_needs_vdpl_1(
    variant: Mapping[str, str], entry_choice: int, emulated: bool
) -> None:
    v = run(variant, vec=0x41, entry_choice=entry_choice)
    assert (v["guest_entered"] == 0x41) is emulated
    assert (v["guest_entered"] == 13) is not emulated


def test_a_pv32_kernel_is_bounced_back_to_ring_1() -> None:
    v = run(KERNEL32, vec=0x41, entry_choice=4)
    assert where(v) == ("guest_handler", 1)


@pytest.mark.parametrize("vector", [3, 4])
def test_vectors_3_and_4_ignore_the_vdpl(vector: int) -> None:
    """Seed 004's Notes: Xen's gates for 3 and 4 are DPL3, so INT $3 / INT $4 reach Xen as
    #BP / #OF and are bounced even when the guest set vDPL 0 for them."""
    v = run(USER64, vec=vector, entry_choice=1)
    assert v["guest_entered"] == vector and v["guest_event_type"] == HW_EXC
    assert v["guest_rip"] == INSN_START + 2


def test_int_0x80_fast_path_ignores_the_vdpl() -> None:
    """Why 0x80 is left out of int-n-respects-guest-vdpl: entry_int80 bounces to any
    registered trap_ctxt[0x80] without looking at its DPL, so user mode reaches a 0x80
    handler the guest registered with vDPL 0 (on x86_32 Xen the guest's DPL went into the
    real gate)."""
    v = run(USER64, vec=0x80, entry_choice=1)
    assert v["guest_entered"] == 0x80 and v["guest_rip"] == INSN_START + 2


def test_int_0x80_without_a_handler_becomes_the_gp() -> None:
    v = run(USER64, vec=0x80, entry_choice=0)
    assert v["guest_entered"] == 13 and v["guest_error_code"] == (0x80 << 3) | IDT_ERROR
    assert v["guest_rip"] == INSN_START


def test_int_0x82_is_a_hypercall_only_for_a_pv32_kernel() -> None:
    """The DPL1 gate: ring 1 gets in and the hypercall returns to the next instruction."""
    v = run(KERNEL32, vec=0x82, entry_choice=1)
    assert v["hypercalls"] == 1 and v["bounced"] == 0
    assert where(v) == ("guest32_code", 1)


@pytest.mark.parametrize("variant", [USER32, USER64, KERNEL64])
def test_int_0x82_from_cpl3_is_like_any_other_vector(variant: Mapping[str, str]) -> None:
    v = run(variant, vec=0x82, entry_choice=1)
    assert v["hypercalls"] == 0
    assert v["guest_entered"] == 13 and v["guest_error_code"] == (0x82 << 3) | IDT_ERROR


def test_a_missing_exception_handler_is_terminal() -> None:
    """INT $13 with trap_ctxt[13] unregistered: the #GP has nowhere to go, and
    create_bounce_frame crashes the domain (seed 004: "failure to do so is terminal")."""
    v = run(USER64, vec=13, entry_choice=0)
    assert v["domain_crashed"] == 1 and v["bounced"] == 0


# -- INT1, INT3, INTO ----------------------------------------------------------------------


@pytest.mark.parametrize("variant", [USER64, KERNEL32])
def test_int1_reaches_the_db_handler(variant: Mapping[str, str]) -> None:
    v = run({**variant, "insn": "int1"})
    assert v["guest_entered"] == 1 and v["guest_rip"] == INSN_START + 1
    assert v["trap_dpl"][1] == 0 and v["guest_event_type"] == HW_EXC


def test_int3_reaches_the_bp_handler_whatever_its_vdpl() -> None:
    v = run({**USER64, "insn": "int3"})
    assert v["guest_entered"] == 3 and v["trap_dpl"][3] == 0
    assert v["guest_rip"] == INSN_START + 1


def test_into_is_ud_in_64_bit_code_and_of_in_compatibility_mode() -> None:
    """Seed 004: INTO "is only usable in compatibility mode, and will #UD in 64bit mode"."""
    v64 = run({**USER64, "insn": "into"})
    assert v64["guest_entered"] == 6 and v64["guest_rip"] == INSN_START
    v32 = run({**USER32, "insn": "into"})
    assert v32["guest_entered"] == 4 and v32["guest_rip"] == INSN_START + 1


# -- SYSCALL and SYSENTER callbacks --------------------------------------------------------


def test_syscall_reaches_its_callback_or_is_a_hypercall() -> None:
    v = run({**USER64, "insn": "syscall"}, syscall_address=0x402000)
    assert v["guest_entered"] == CALLBACK_SYSCALL and v["guest_rip"] == INSN_START + 2
    k = run({**KERNEL64, "insn": "syscall"})
    assert k["hypercalls"] == 1 and k["bounced"] == 0 and where(k) == ("guest_code", 3)


@pytest.mark.parametrize("xen", ["xen-4.22", "xen-4.15"])
def test_syscall_without_callback_gets_ud(xen: str) -> None:
    v = run({**USER64, "insn": "syscall", "xen": xen}, syscall_address=0)
    assert v["guest_entered"] == 6 and v["guest_rip"] == INSN_START
    assert v["domain_crashed"] == 0


def test_syscall_without_callback_crashes_xen_4_14_guests() -> None:
    v = run({**USER64, "insn": "syscall", "xen": "xen-4.14"}, syscall_address=0)
    assert v["domain_crashed"] == 1 and v["bounced"] == 0


def test_sysenter_reaches_its_callback_or_gets_gp0_with_a_null_rip() -> None:
    """sysenter_entry: SYSENTER saves no return address, so Xen's frame has a null %rip;
    with no callback the guest's #GP handler gets error code 0 and %rip 0. Either bounce
    frame carries the user context Xen pushed by hand: %ss FLAT_USER_SS, a null %rsp."""
    v = run({**USER64, "insn": "sysenter"}, sysenter_address=0x403000)
    assert v["guest_entered"] == CALLBACK_SYSENTER and v["guest_rip"] == 0
    g = run({**USER64, "insn": "sysenter"}, sysenter_address=0)
    assert g["guest_entered"] == 13 and g["guest_error_code"] == 0 and g["guest_rip"] == 0
    for frame in (v, g):
        assert (frame["guest_saved_ss"], frame["guest_saved_rsp"]) == (0xE02B, 0)


# -- prefixes and %rip -----------------------------------------------------------------------


def test_prefixed_int_0x80_slow_path_rewinds_into_the_instruction() -> None:
    """The prefixed-int-n-rip-rewind counterexample: one prefix, INT $0x80 unregistered;
    the trap's %rip (end of instruction) minus 2 is one byte past its start."""
    v = run({**USER64, "prefix": "optional"}, insn_prefixes=1, vec=0x80, entry_choice=0)
    assert v["insn_len"] == 3 and v["guest_entered"] == 13
    assert v["guest_rip"] == INSN_START + 1


@pytest.mark.parametrize(
    ("xen", "rip"), [("xen-4.22", INSN_START + 3), ("xen-4.15", INSN_START + 2)]
)
def test_prefixed_int_n_emulation_steps_over_the_instruction_since_4_22(
    xen: str, rip: int
) -> None:
    """c/s a934a600c4 (4.22): pv_emulate_sw_interrupt() decodes the length; before, `+= 2`
    left %rip in the middle of a prefixed INT $N."""
    v = run({**USER64, "prefix": "optional", "xen": xen}, insn_prefixes=1, vec=0x40,
            entry_choice=4)
    assert v["guest_entered"] == 0x40 and v["guest_rip"] == rip


def test_without_prefixes_every_rip_is_right() -> None:
    """The converse of prefixed-int-n-rip-rewind: unprefixed, every bounce has %rip at the
    instruction's start (a fault) or end (a trap): every vector with the start-up table,
    and INT $0x80 with every choice of its entry (the slow path included)."""
    wrong: list[tuple[int, int]] = []
    for system in (load(**USER64, table="vdpl0"), load(**USER64, vector="0x80")):

        def visit(s: SysState, system: DesignSystem = system) -> None:
            v = system.vocabulary(s)
            if not v["bounced"]:
                return
            fault = v["guest_event_type"] == HW_EXC and v["guest_entered"] in (6, 13)
            if v["guest_rip"] != INSN_START + (0 if fault else v["insn_len"]):
                wrong.append((v["vec"], v["guest_rip"]))

        explore(system, visit)
    assert wrong == []


# -- the language features the design needed ---------------------------------------------------

FEATURES = """\
cpus 1
{vendor}
{sysenter}
stack kstack size 0x1000 per-cpu
stack sstack size 0x1000 per-cpu
stack ustack size 0x1000 owner guest per-cpu
tss tss per-cpu
    rsp0 kstack
end
idt idt per-cpu
    gate #OF handler dpl 3
    gate #UD handler
    gate #GP handler
end
cpu * start {start} cpl 3 idt idt tss tss rsp top(ustack) if 1
GUEST(code64)
        pushq $0xa02
        popfq
        into
        sysenter
1:      jmp   1b
GUEST32(code32)
        pushq $0xa02
        popfq
        into
1:      jmp   1b
GUEST32(code32_of_clear)
        into
1:      jmp   1b
GUEST(sysenter64)
        sysenter
1:      jmp   1b
ENTRY(entry)
1:      jmp   1b
ENTRY(handler)
1:      jmp   1b
"""


def feature_system(
    tmp_path: Path, start: str, sysenter: str = "", vendor: str = ""
) -> DesignSystem:
    path = tmp_path / "f.design"
    path.write_text(FEATURES.format(start=start, sysenter=sysenter, vendor=vendor))
    return DesignSystem(parse_design(path), Environment())


def steps(system: DesignSystem, n: int) -> SysState:
    [s] = system.init_states()
    for _ in range(n):
        [a] = system.actions(s)
        s = system.next_state(s, a)
    return s


def test_guest32_code_runs_into_in_compatibility_mode(tmp_path: Path) -> None:
    """SDM Vol. 2 INTO: #OF when OF is set outside 64-bit mode (GUEST32), #UD in 64-bit
    mode (GUEST), whatever the flags."""
    path = tmp_path / "g.design"
    path.write_text(FEATURES.format(start="code32", sysenter="", vendor=""))
    d = parse_design(path)
    assert d.routines["code32"].compat and d.routines["code32"].guest
    assert not d.routines["code64"].compat
    s = steps(feature_system(tmp_path, "code32"), 3)
    assert s.machine.frames[-1].vector == 4 and s.machine.frames[-1].source == "into"
    s = steps(feature_system(tmp_path, "code64"), 3)
    assert s.machine.frames[-1].vector == 6 and s.machine.frames[-1].source == "exception"


def test_guest32_into_without_of_does_nothing(tmp_path: Path) -> None:
    s = steps(feature_system(tmp_path, "code32_of_clear"), 1)
    assert s.machine.frames == () and s.machine.cpus[0].pc == CodeAddr("code32_of_clear", 1)


def test_sysenter_enters_its_routine_on_its_stack(tmp_path: Path) -> None:
    """SDM Vol. 2 SYSENTER: CPL 0, RSP := IA32_SYSENTER_ESP, RIP := IA32_SYSENTER_EIP, IF
    and RF cleared, nothing pushed."""
    system = feature_system(tmp_path, "sysenter64", sysenter="sysenter entry sstack")
    s = steps(system, 1)
    cpu = s.machine.cpus[0]
    assert cpu.pc == CodeAddr("entry", 0) and cpu.cpl == 0
    assert cpu.rsp == system.platform.region("sstack[0]").top
    assert isinstance(cpu.rflags, int) and not cpu.rflags & 0x200 and s.machine.memory == ()


@pytest.mark.parametrize(("decl", "vector"), [("", 13), ("vendor amd", 6)])
def test_sysenter_faults_without_an_entry_or_on_amd(tmp_path: Path, decl: str, vector: int) -> None:
    """No IA32_SYSENTER_CS: #GP(0) at the SYSENTER; AMD in long mode: #UD."""
    sysenter = "sysenter entry sstack" if decl else ""
    system = feature_system(tmp_path, "sysenter64", sysenter=sysenter, vendor=decl)
    s = steps(system, 1)
    frame = s.machine.frames[-1]
    assert frame.vector == vector
    assert read(s.machine, frame.lo) == CodeAddr("sysenter64", 0)  # a fault: the SYSENTER


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("sysenter entry", "write `sysenter ROUTINE STACK`"),
        ("sysenter nowhere sstack", "sysenter names a missing routine 'nowhere'"),
        ("sysenter entry nostack", "sysenter names a missing stack 'nostack'"),
    ],
)
def test_sysenter_declaration_errors(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "e.design"
    path.write_text(FEATURES.format(start="code64", sysenter=line, vendor=""))
    with pytest.raises(InputError, match=message.replace("(", r"\(")) as e:
        parse_design(path)
    assert e.value.line == 3


# -- a fault raised by INT n's own delivery saves the INT instruction ---------------------


def test_the_gp_of_a_failed_int_n_dpl_check_saves_the_int_instruction() -> None:
    """SDM Vol. 2 INT n / §6.5: the #GP of a failed DPL check is a fault of the INT
    instruction, so its frame saves the INT's own address (found by this design's tests,
    fixed in model/x86/delivery.py)."""
    system = load(**USER64)
    [s] = system.init_states()
    while not s.machine.frames:
        actions = system.actions(s)
        s = system.next_state(s, actions[-1] if len(actions) > 1 else actions[0])
    frame = s.machine.frames[-1]
    assert frame.vector == 13
    assert read(s.machine, frame.lo) == CodeAddr("guest_code", 0)
