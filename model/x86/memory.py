"""Stack memory and the frame tracking that feeds `frame_clobbered` / `frame_on_guest_stack`.

Only stack words are modelled. An address is in a hypervisor stack region (declared by the
design), in guest-controlled memory (the rest of the lower canonical half: a PV guest's
memory is mapped while the hypervisor runs), unmapped (the rest of the upper half: #PF),
or non-canonical (#SS for stack accesses, SDM §6.14.4 / Vol. 1 §3.3.7.1).

A word written over a live frame marks that frame clobbered, unless it is its own
handler's deliberate store: a store instruction (`by`, not a push, a delivery or a copy)
of the frame's CPU at CPL 0 while no newer frame of that CPU is live. That one marks it
`modified` instead (a fixup setting the saved RIP, an exit path editing the saved RFLAGS).
A frame the handler moves (`copy_words`, `hand_off`) is tracked where it went.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Collection

from checker.symbolic import MASK, Term, add, decide, eq, in_range, land, ule, ult
from model.x86.arch import (
    ADDRESS_MASK,
    LOWER_HALF_END,
    PF,
    SS,
    UPPER_HALF_START,
    canonical_cond,
    is_canonical,
)
from model.x86.state import WORD, CodeAddr, Frame, Machine, Platform, StackRegion, Value

GUEST_MEMORY = "guest memory"
FRAME_BYTES = 5 * WORD  # SS, RSP, RFLAGS, CS, RIP


class ArchFault(Exception):
    """An exception raised by an instruction or by a delivery step (not yet delivered).

    `machine`, when set, is the state to deliver it from: the side effects that survive a
    fault (an IRET that faults has still unblocked NMIs, SDM §6.7.1). `rip`, when set, is
    the RIP the frame saves instead of the instruction's (AMD's SYSRET #GP at CPL 3).
    The error code is symbolic when it names a guest-chosen selector. `address`, for a
    #PF, is the faulting linear address: what CR2 receives (SDM Vol. 3A §4.7), and what
    FRED saves as the frame's event data (FRED spec §5.2); None when it is not known.
    """

    def __init__(
        self,
        vector: int,
        error_code: int | Term | None = None,
        detail: str = "",
        machine: Machine | None = None,
        rip: Value | None = None,
        address: Value | None = None,
    ):
        super().__init__(detail or f"fault {vector}")
        self.vector = vector
        self.error_code = error_code
        self.detail = detail
        self.machine = machine
        self.rip = rip
        self.address = address


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


def classify(platform: Platform, address: Value) -> tuple[str, StackRegion | None]:
    """Where an address lies: ("region", r), ("guest", None), ("unmapped", None) or
    ("noncanonical", None). A symbolic address is split by decide(): each outcome is a
    separate successor carrying the matching condition."""
    if isinstance(address, CodeAddr):
        return "noncanonical", None
    if isinstance(address, int):
        if not is_canonical(address):
            return "noncanonical", None
        address &= ADDRESS_MASK
        region = platform.region_at(address)
        if region is not None:
            return "region", region
        return ("guest" if address < LOWER_HALF_END else "unmapped"), None
    if not decide(canonical_cond(address)):
        return "noncanonical", None
    for region in platform.regions:
        # The whole word must fit: the model's words never straddle regions.
        if decide(in_range(address, region.lo, region.hi - WORD + 1)):
            return "region", region
    if decide(ult(address, LOWER_HALF_END)):
        return "guest", None
    return "unmapped", None


def location_name(kind: str, region: StackRegion | None) -> str:
    if region is not None:
        return region.name
    return GUEST_MEMORY if kind == "guest" else kind


Where = tuple[str, "StackRegion | None"]


def classify_range(platform: Platform, lo: int | Term, size: int) -> Where | None:
    """Where a whole symbolic range [lo, lo + size) lies, when it lies in one place: one
    decision per candidate instead of one per word (a frame's pushes). None: it straddles
    or leaves the canonical space, and each word must be classified on its own."""
    last = add(lo, size - WORD)
    for region in platform.regions:
        if decide(
            land(
                in_range(lo, region.lo, region.hi),
                in_range(last, region.lo, region.hi - WORD + 1),
            )
        ):
            return "region", region
    if decide(land(ult(lo, LOWER_HALF_END), ult(last, LOWER_HALF_END), ule(lo, last))):
        return "guest", None
    return None


def check_access(
    platform: Platform, address: Value, cpl: int, where: Where | None = None
) -> StackRegion | None:
    """Raise the fault a stack access to `address` takes; return its region if any.
    `where` is the already-decided location of a symbolic address."""
    if isinstance(address, Term):
        kind, region = where if where is not None else classify(platform, address)
        if kind == "noncanonical":
            raise ArchFault(SS, 0, f"non-canonical stack address {address!r}")
        if kind == "unmapped":
            raise ArchFault(PF, 0b010, f"unmapped stack address {address!r}", address=address)
        if region is not None and cpl == 3 and region.owner == "hypervisor":
            raise ArchFault(
                PF, 0b111, f"user access to {region.name}", address=address
            )
        return region
    if type(address) is int:  # is_canonical, inlined for the common case
        linear = address & ADDRESS_MASK
        if LOWER_HALF_END <= linear < UPPER_HALF_START:
            raise ArchFault(SS, 0, f"non-canonical stack address {_fmt(address)}")
        address = linear
    else:
        if isinstance(address, CodeAddr) or not is_canonical(address):
            raise ArchFault(SS, 0, f"non-canonical stack address {_fmt(address)}")
        address &= ADDRESS_MASK  # linear addresses are 64-bit: -8 is 0xFFFFFFFFFFFFFFF8
    region = platform.region_at(address)
    if region is None:
        if address >= LOWER_HALF_END:
            raise ArchFault(
                PF, 0b010, f"unmapped stack address {address:#x}", address=address
            )
        return None
    if cpl == 3 and region.owner == "hypervisor":
        # A user-mode access to a supervisor page (SDM §4.6): the error code says U/S=1, W.
        raise ArchFault(PF, 0b111, f"user access to {region.name}", address=address)
    return region


def read(m: Machine, address: Value, unwritten: Value = 0) -> Value:
    """The word at `address`; never-written words read as `unwritten` (0: stack memory
    below the stack pointer, whose value no rule depends on)."""
    if m.sym_memory or isinstance(address, Term):
        return _read_symbolic(m, address, unwritten)
    mem = m.memory
    i = bisect_left(mem, (address,))
    if i < len(mem) and mem[i][0] == address:
        return mem[i][1]
    return unwritten


def write(
    platform: Platform, m: Machine, address: Value, value: Value, cpl: int,
    where: Where | None = None, by: int | None = None,
) -> Machine:
    """Store one word, marking every live frame it lands on as clobbered, or as modified
    when `by` (the CPU of a store instruction) is the frame's own handler."""
    region = check_access(platform, address, cpl, where)
    owner = owner_of(m, by, cpl)
    if not isinstance(address, Term) and not m.sym_memory:
        assert isinstance(address, int)
        done = stored_word(m, address, value, owner)
        if done is not None:
            return m.with_memory(*done)
    if isinstance(address, Term) and where is None:
        where = ("region", region) if region is not None else ("guest", None)
    return _write_symbolic(platform, m, address, value, where, owner)


def stored_word(
    m: Machine, address: int, value: Value, owner: int
) -> tuple[tuple[tuple[int, Value], ...], tuple[Frame, ...]] | None:
    """The memory and frames after a store of one word at a concrete, already checked
    `address` (`write`'s path when nothing is symbolic; `owner` as `owner_of` gives it),
    without building the machine: None when a frame is at a symbolic address."""
    at = address & ADDRESS_MASK  # store at the 64-bit address the access checked
    frames = _landed_on(m.frames, (at,), owner)
    if frames is None:
        return None
    mem = m.memory
    i = bisect_left(mem, (at,))
    j = i + 1 if i < len(mem) and mem[i][0] == at else i
    return mem[:i] + ((at, value),) + mem[j:], frames


def owner_of(m: Machine, by: int | None, cpl: int) -> int:
    """The index in m.frames of the one frame a store by CPU `by` at `cpl` may modify
    without clobbering it: that CPU's newest live frame, when the store is its handler's
    (CPL 0; guest code writing over a frame clobbers it). -1 for none."""
    if by is None or cpl != 0:
        return -1
    frames = m.frames
    for k in range(len(frames) - 1, -1, -1):
        if frames[k].cpu == by:
            return k
    return -1


def _hit(f: Frame, own: bool) -> Frame:
    """`f` after a word landed on it: modified by its own handler, else clobbered."""
    if own:
        return f if f.modified else f._replace(modified=True)
    return f._replace(clobbered=True)


def write_words(
    platform: Platform, m: Machine, stores: list[tuple[Value, Value]], cpl: int,
    where: Where | None = None,
) -> tuple[Machine, ArchFault | None]:
    """`write` of each (address, value) in order (a frame's pushes): the machine holding
    every store before the first that faults, and that fault (None when none does)."""
    done = _write_concrete(platform, m, stores, cpl)
    if done is not None:
        return done
    for address, value in stores:
        try:
            m = write(platform, m, address, value, cpl, where)
        except ArchFault as fault:
            return m, fault
    return m, None


def _write_concrete(
    platform: Platform, m: Machine, stores: list[tuple[Value, Value]], cpl: int
) -> tuple[Machine, ArchFault | None] | None:
    """write_words when every address and frame is concrete: one memory rebuild for all
    the stores instead of one per word. None when something is symbolic."""
    if m.sym_memory:
        return None
    words: dict[int, Value] = {}
    failed: ArchFault | None = None
    for address, value in stores:
        if not isinstance(address, int):
            return None
        try:
            check_access(platform, address, cpl)  # no effect: all can be checked first
        except ArchFault as fault:
            failed = fault
            break
        words[address & ADDRESS_MASK] = value  # a later store to one address wins
    if not words:
        return m, failed
    frames = _landed_on(m.frames, words, -1)
    if frames is None:
        return None
    mem = m.memory
    i = bisect_left(mem, (min(words),))
    j = bisect_left(mem, (max(words) + 1,))
    # The addresses are distinct, so sorting never compares two values.
    if i == j:  # no word written there yet (a frame pushed below the stack pointer)
        mem = mem[:i] + tuple(sorted(words.items())) + mem[i:]
    else:
        merged = dict(mem[i:j])
        merged.update(words)
        mem = mem[:i] + tuple(sorted(merged.items())) + mem[j:]
    return m.with_memory(mem, frames), failed


def _landed_on(
    frames: tuple[Frame, ...], addresses: Collection[int], owner: int
) -> tuple[Frame, ...] | None:
    """The frames after concrete stores at `addresses`: every live frame a word lands on
    is clobbered, but frames[owner] (see owner_of) only modified. None when a frame is at a
    symbolic address (aliasing must be decided)."""
    if not frames:
        return frames
    low, high = min(addresses), max(addresses)
    out: list[Frame] | None = None
    for k, f in enumerate(frames):
        lo = f.lo
        if not isinstance(lo, int):
            return None
        own = k == owner
        if f.modified if own else f.clobbered:
            continue
        hi = (lo + FRAME_BYTES) & MASK  # Frame.hi, inlined
        if high < lo or low >= hi:
            continue  # every store misses it (most frames are on other stacks)
        if low == high or any(lo <= a < hi for a in addresses):
            if out is None:
                out = list(frames)
            out[k] = _hit(f, own)
    return frames if out is None else tuple(out)


def forget(m: Machine, lo: int, hi: int) -> Machine:
    """Drop the words in [lo, hi): memory below the stack pointer is garbage."""
    mem = m.memory
    i = bisect_left(mem, (lo,))
    j = bisect_left(mem, (hi,))
    if i == j:
        return m
    return m.with_memory(mem[:i] + mem[j:], m.frames)


def push(platform: Platform, m: Machine, cpu_i: int, value: Value) -> Machine:
    """PUSH: RSP -= 8, then store (SDM Vol. 2 PUSH)."""
    cpu = m.cpus[cpu_i]
    if isinstance(cpu.rsp, CodeAddr):
        raise ArchFault(SS, 0, "RSP holds a code address")
    new_rsp = add(cpu.rsp, -WORD)  # RSP wraps modulo 2^64 (SDM Vol. 1 §3.3.7)
    if platform.smap:
        _smap_check(platform, new_rsp, cpu.cpl, cpu.rflags, True)
    m = write(platform, m, new_rsp, value, cpu.cpl)
    return m.with_cpu(cpu_i, m.cpus[cpu_i].with_rsp(new_rsp))


def _smap_check(
    platform: Platform, address: Value, cpl: int, rflags: int | Term, write: bool
) -> None:
    """model.x86.smap.check (imported here, not at the top: smap builds on this module)."""
    from model.x86 import smap

    smap.check(platform, address, cpl, rflags, write)


def pop(platform: Platform, m: Machine, cpu_i: int) -> tuple[Machine, Value]:
    """POP: load from RSP, then RSP += 8. The word is forgotten and frames passed die."""
    cpu = m.cpus[cpu_i]
    check_access(platform, cpu.rsp, cpu.cpl)
    if platform.smap:
        _smap_check(platform, cpu.rsp, cpu.cpl, cpu.rflags, False)
    value = read(m, cpu.rsp)
    if isinstance(cpu.rsp, Term):
        m = m._replace(sym_memory=tuple(e for e in m.sym_memory if e[0] != cpu.rsp))
        return move_rsp(platform, m, cpu_i, add(cpu.rsp, WORD)), value
    assert isinstance(cpu.rsp, int)
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
    m = m.with_cpu(cpu_i, cpu.with_rsp(new_rsp))
    frames = frames_after_rsp_move(platform, m.frames, cpu_i, old, new_rsp)
    return m if frames is m.frames else m._replace(frames=frames)


def frames_after_rsp_move(
    platform: Platform, frames: tuple[Frame, ...], cpu_i: int, old: Value, new_rsp: Value
) -> tuple[Frame, ...]:
    """The live frames after CPU cpu_i's RSP moved from `old` to `new_rsp` (move_rsp's
    rule): `frames` itself when none is abandoned."""
    # Only concrete moves abandon frames: a symbolic stack pointer is a guest's, and the
    # frames the model tracks there are consumed by IRET/SYSRET, not by stack arithmetic.
    if not frames or not (
        isinstance(old, int) and isinstance(new_rsp, int) and new_rsp > old
    ):
        return frames
    region = platform.region_at(old)
    if region is None or not (region.lo <= new_rsp <= region.hi):
        return frames
    dead = [
        f for f in frames
        if f.cpu == cpu_i and isinstance(f.lo, int) and old <= f.lo < new_rsp
    ]
    if not dead:
        return frames
    return tuple(f for f in frames if f not in dead)


# A long rep movsq is copied this many words at a time, its `tick` called between.
COPY_CHUNK = 1 << 12


def copy_words(
    platform: Platform, m: Machine, cpu_i: int, src: int, dst: int, count: int,
    tick: Callable[[int], None] | None = None, whole: int = 1 << 16,
) -> Machine:
    """REP MOVSQ of `count` words from `src` to `dst`: frames inside the source move.

    Up to `whole` words are all read before any is written (a frame's copy may overlap
    it). A longer copy goes forward COPY_CHUNK words at a time, as the CPU's iterations
    do, each chunk read before it is written; `tick(words copied so far)` is called
    before each chunk and may raise to stop a copy that outruns the run's budgets.

    Xen's handle_ist_exception copies an IST frame to the primary stack this way; the copy
    becomes the live frame and the IST copy is consumed. A frame that moves is not
    clobbered by its own copy (Xen's exception_with_ints_disabled moves its frame down a
    word, the copy overlapping the original); any other live frame the copy lands on is.
    """
    cpu = m.cpus[cpu_i]
    cpl = cpu.cpl

    def smap(first: int, n: int) -> None:
        # Explicit supervisor-mode reads and writes (model.x86.smap): a user page is #PF.
        if platform.smap:
            for k in range(first, first + n):
                _smap_check(platform, src + k * WORD, cpl, cpu.rflags, False)
                _smap_check(platform, dst + k * WORD, cpl, cpu.rflags, True)

    end = src + count * WORD

    def moves(f: Frame) -> bool:
        return isinstance(f.lo, int) and src <= f.lo and f.lo + FRAME_BYTES <= end

    travelling = tuple(f for f in m.frames if moves(f))
    if travelling:
        m = m._replace(frames=tuple(f for f in m.frames if not moves(f)))
    if count <= whole:
        smap(0, count)
        words = [read(m, src + k * WORD) for k in range(count)]
        for k, w in enumerate(words):
            m = write(platform, m, dst + k * WORD, w, cpl)
    else:
        for done in range(0, count, COPY_CHUNK):
            if tick is not None:
                tick(done)
            n = min(COPY_CHUNK, count - done)
            smap(done, n)
            stores: list[tuple[Value, Value]] = [
                (dst + (done + k) * WORD, read(m, src + (done + k) * WORD)) for k in range(n)
            ]
            m, fault = write_words(platform, m, stores, cpl)
            if fault is not None:
                raise fault
    moved: list[Frame] = []
    kept: list[Frame] = list(m.frames)
    for f in travelling:
        # A frame at a symbolic address was pushed on a guest's stack pointer: not one
        # the hypervisor's copy of its own stack moves.
        assert isinstance(f.lo, int)
        moved.append(_moved(platform, f, f.lo - src + dst))
    if not moved:
        return m
    # The copies are their CPU's newest frames; a stable sort keeps the order by CPU.
    return m._replace(frames=tuple(sorted(kept + moved, key=lambda f: f.cpu)))


def _moved(platform: Platform, f: Frame, lo: int) -> Frame:
    return f._replace(
        lo=lo,
        stack=region_name(platform, lo),
        on_guest_stack=f.on_guest_stack or is_guest_controlled(platform, lo),
    )


def hand_off(platform: Platform, m: Machine, cpu_i: int, src: int, dst: int) -> Machine:
    """A design's declaration that CPU `cpu_i`'s live frame at `src` (its saved-RIP word)
    was copied to `dst` and the interrupted context will return through the copy: the
    frame is tracked at `dst` from now on, and what happens to the words at `src` no
    longer concerns it (Linux's NMI entry copies its hardware frame this way; nested NMIs
    then overwrite the original on purpose). Checked, not trusted: the five words at `dst`
    must equal those at `src` (ValueError otherwise, or when there is no such frame)."""
    src &= ADDRESS_MASK
    dst &= ADDRESS_MASK
    frame = next((f for f in m.frames if f.cpu == cpu_i and f.lo == src), None)
    if frame is None:
        raise ValueError(f"no live frame of cpu{cpu_i} at {src:#x}")
    for k in range(5):
        a, b = read(m, src + k * WORD), read(m, dst + k * WORD)
        if a is not b and a != b:
            raise ValueError(
                f"the word at {dst + k * WORD:#x} is not a copy of the frame's word at "
                f"{src + k * WORD:#x}"
            )
    moved = _moved(platform, frame, dst)
    return m._replace(frames=tuple(moved if f is frame else f for f in m.frames))


def _symbolic_frames(m: Machine) -> bool:
    return any(isinstance(f.lo, Term) for f in m.frames)


def overlaps(frame: Frame, address: Value) -> bool:
    """Does the word at `address` land on `frame`'s five words? (decided when symbolic)"""
    if isinstance(address, CodeAddr):
        raise TypeError("a code address is not a stack address (check_access refuses it)")
    lo = frame.lo
    if isinstance(lo, int) and isinstance(address, int):
        return lo <= address < lo + 5 * WORD
    return decide(land(ule(lo, address), ult(address, add(lo, 5 * WORD))))


def _read_symbolic(m: Machine, address: Value, unwritten: Value = 0) -> Value:
    """A read where symbolic addresses are involved: the newest aliasing word wins."""
    if isinstance(address, CodeAddr):
        raise TypeError("a code address is not a stack address (check_access refuses it)")
    for a, v in reversed(m.sym_memory):
        if decide(eq(a, address)):
            newest: Value = v
            return newest
    if isinstance(address, int):
        i = bisect_left(m.memory, (address,))
        if i < len(m.memory) and m.memory[i][0] == address:
            return m.memory[i][1]
        return unwritten
    for addr, v in m.memory:
        if decide(eq(addr, address)):
            return v
    return unwritten


def _same_place(platform: Platform, a: int, where: Where | None) -> bool:
    """Could concrete address `a` be where a symbolic address was decided to lie?"""
    if where is None:
        return True
    kind, region = where
    if region is not None:
        return region.lo <= a < region.hi
    return kind == "guest" and a < LOWER_HALF_END and platform.region_at(a) is None


def _write_symbolic(
    platform: Platform, m: Machine, address: Value, value: Value, where: Where | None = None,
    owner: int = -1,
) -> Machine:
    """A write where symbolic addresses or frames are involved: aliasing is decided (only
    against words that can be in the same place)."""
    frames = tuple(
        _hit(f, k == owner)
        if not (f.modified if k == owner else f.clobbered)
        and (not isinstance(f.lo, int) or _same_place(platform, f.lo, where))
        and overlaps(f, address)
        else f
        for k, f in enumerate(m.frames)
    )
    if isinstance(address, Term):
        kept = tuple(e for e in m.sym_memory if not decide(eq(e[0], address)))
        concrete = tuple(
            e for e in m.memory
            if not (_same_place(platform, e[0], where) and decide(eq(e[0], address)))
        )
        return m._replace(
            memory=concrete, sym_memory=kept + ((address, value),), frames=frames
        )
    assert isinstance(address, int)
    address &= ADDRESS_MASK
    kept = tuple(e for e in m.sym_memory if not decide(eq(e[0], address)))
    mem = list(m.memory)
    i = bisect_left(mem, (address,))
    if i < len(mem) and mem[i][0] == address:
        mem[i] = (address, value)
    else:
        mem.insert(i, (address, value))
    return m._replace(memory=tuple(mem), sym_memory=kept, frames=frames)


def _fmt(value: Value) -> str:
    return str(value) if isinstance(value, CodeAddr) else f"{value:#x}"
