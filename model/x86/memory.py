"""Stack memory and the frame tracking that feeds `frame_clobbered` / `frame_on_guest_stack`.

Only stack words are modelled. An address is in a hypervisor stack region (declared by the
design), in guest-controlled memory (the rest of the lower canonical half: a PV guest's
memory is mapped while the hypervisor runs), unmapped (the rest of the upper half: #PF),
or non-canonical (#SS for stack accesses, SDM §6.14.4 / Vol. 1 §3.3.7.1).

Every word written over a live frame marks that frame clobbered, whoever wrote it.
"""

from __future__ import annotations

from bisect import bisect_left

from model.x86.arch import ADDRESS_MASK, LOWER_HALF_END, PF, SS, is_canonical
from model.x86.state import WORD, CodeAddr, Frame, Machine, Platform, StackRegion, Value

GUEST_MEMORY = "guest memory"


class ArchFault(Exception):
    """An exception raised by an instruction or by a delivery step (not yet delivered).

    `machine`, when set, is the state to deliver it from: the side effects that survive a
    fault (an IRET that faults has still unblocked NMIs, SDM §6.7.1).
    """

    def __init__(
        self,
        vector: int,
        error_code: int | None = None,
        detail: str = "",
        machine: Machine | None = None,
    ):
        super().__init__(detail or f"fault {vector}")
        self.vector = vector
        self.error_code = error_code
        self.detail = detail
        self.machine = machine


def region_name(platform: Platform, address: int) -> str:
    """The stack region an address lies in, GUEST_MEMORY, or "unmapped"."""
    region = platform.region_at(address)
    if region is not None:
        return region.name
    if address < LOWER_HALF_END:
        return GUEST_MEMORY
    return "unmapped"


def is_guest_controlled(platform: Platform, address: int) -> bool:
    """True for memory the guest can write: guest memory or a guest-owned region."""
    region = platform.region_at(address)
    if region is not None:
        return region.owner == "guest"
    return address < LOWER_HALF_END


def check_access(platform: Platform, address: Value, cpl: int) -> StackRegion | None:
    """Raise the fault a stack access to `address` takes; return its region if any."""
    if isinstance(address, CodeAddr) or not is_canonical(address):
        raise ArchFault(SS, 0, f"non-canonical stack address {_fmt(address)}")
    address &= ADDRESS_MASK  # linear addresses are 64-bit: -8 is 0xFFFFFFFFFFFFFFF8
    region = platform.region_at(address)
    if region is None:
        if address >= LOWER_HALF_END:
            raise ArchFault(PF, 0b010, f"unmapped stack address {address:#x}")
        return None
    if cpl == 3 and region.owner == "hypervisor":
        # A user-mode access to a supervisor page (SDM §4.6): the error code says U/S=1, W.
        raise ArchFault(PF, 0b111, f"user access to {region.name}")
    return region


def read(m: Machine, address: int) -> Value:
    """The word at `address`; never-written words read as 0."""
    mem = m.memory
    i = bisect_left(mem, (address,))
    if i < len(mem) and mem[i][0] == address:
        return mem[i][1]
    return 0


def write(platform: Platform, m: Machine, address: Value, value: Value, cpl: int) -> Machine:
    """Store one word, marking every live frame it lands on as clobbered."""
    check_access(platform, address, cpl)
    assert isinstance(address, int)
    address &= ADDRESS_MASK  # store at the 64-bit address the access checked
    mem = list(m.memory)
    i = bisect_left(mem, (address,))
    if i < len(mem) and mem[i][0] == address:
        mem[i] = (address, value)
    else:
        mem.insert(i, (address, value))
    frames = m.frames
    if any(f.lo <= address < f.hi and not f.clobbered for f in frames):
        frames = tuple(
            f._replace(clobbered=True) if f.lo <= address < f.hi else f for f in frames
        )
    return m._replace(memory=tuple(mem), frames=frames)


def forget(m: Machine, lo: int, hi: int) -> Machine:
    """Drop the words in [lo, hi): memory below the stack pointer is garbage."""
    mem = m.memory
    i = bisect_left(mem, (lo,))
    j = bisect_left(mem, (hi,))
    if i == j:
        return m
    return m._replace(memory=mem[:i] + mem[j:])


def push(platform: Platform, m: Machine, cpu_i: int, value: Value) -> Machine:
    """PUSH: RSP -= 8, then store (SDM Vol. 2 PUSH)."""
    cpu = m.cpus[cpu_i]
    if isinstance(cpu.rsp, CodeAddr):
        raise ArchFault(SS, 0, "RSP holds a code address")
    new_rsp = (cpu.rsp - WORD) & ADDRESS_MASK  # RSP wraps modulo 2^64 (SDM Vol. 1 §3.3.7)
    m = write(platform, m, new_rsp, value, cpu.cpl)
    return m.with_cpu(cpu_i, m.cpus[cpu_i]._replace(rsp=new_rsp))


def pop(platform: Platform, m: Machine, cpu_i: int) -> tuple[Machine, Value]:
    """POP: load from RSP, then RSP += 8. The word is forgotten and frames passed die."""
    cpu = m.cpus[cpu_i]
    check_access(platform, cpu.rsp, cpu.cpl)
    assert isinstance(cpu.rsp, int)
    value = read(m, cpu.rsp)
    m = forget(m, cpu.rsp, cpu.rsp + WORD)
    return move_rsp(platform, m, cpu_i, cpu.rsp + WORD), value


def move_rsp(platform: Platform, m: Machine, cpu_i: int, new_rsp: Value) -> Machine:
    """Code sets RSP. Raising it within one region abandons the frames it passes over.

    A frame whose saved-RIP word ends up below the stack pointer of its own stack can no
    longer be returned through; switching to another stack leaves frames alone (an
    interrupted handler's frame stays live on its IST stack).
    """
    cpu = m.cpus[cpu_i]
    old = cpu.rsp
    m = m.with_cpu(cpu_i, cpu._replace(rsp=new_rsp))
    if not (isinstance(old, int) and isinstance(new_rsp, int) and new_rsp > old):
        return m
    region = platform.region_at(old)
    if region is None or not (region.lo <= new_rsp <= region.hi):
        return m
    dead = [f for f in m.frames if f.cpu == cpu_i and old <= f.lo < new_rsp]
    if not dead:
        return m
    return m._replace(frames=tuple(f for f in m.frames if f not in dead))


def copy_words(
    platform: Platform, m: Machine, cpu_i: int, src: int, dst: int, count: int
) -> Machine:
    """REP MOVSQ of `count` words from `src` to `dst`: frames inside the source move.

    Xen's handle_ist_exception copies an IST frame to the primary stack this way; the copy
    becomes the live frame and the IST copy is consumed.
    """
    cpl = m.cpus[cpu_i].cpl
    words = [read(m, src + k * WORD) for k in range(count)]
    for k, w in enumerate(words):
        m = write(platform, m, dst + k * WORD, w, cpl)
    end = src + count * WORD
    moved: list[Frame] = []
    kept: list[Frame] = []
    for f in m.frames:
        if src <= f.lo and f.hi <= end:
            moved.append(
                f._replace(
                    lo=f.lo - src + dst,
                    stack=region_name(platform, f.lo - src + dst),
                    on_guest_stack=f.on_guest_stack
                    or is_guest_controlled(platform, f.lo - src + dst),
                )
            )
        else:
            kept.append(f)
    if not moved:
        return m
    return m._replace(frames=tuple(kept + moved))


def _fmt(value: Value) -> str:
    return str(value) if isinstance(value, CodeAddr) else f"{value:#x}"
