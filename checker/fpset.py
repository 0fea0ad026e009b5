"""Compact storage for `--compact` exploration: a fingerprint table and a spilling frontier.

`FingerprintTable` keeps the visited states' 64-bit fingerprints with their BFS parent
links in flat `array`s instead of a dict of Python objects. States are numbered in the
order they are discovered (their *ordinal*); per state it stores

    the fingerprint        8 bytes   (array 'Q', by ordinal)
    the parent's ordinal   1 byte    (array 'B', by ordinal: the step from the previous
                                      state's parent, see below)
    the choice             1 byte    (array 'B', by ordinal; a choice of 255 or more is
                                      kept in a small dict beside it)

10 bytes a state, and an open-addressing index (double hashing over a prime number of
slots, array 'I' of ordinal + 1, 0 = empty) of 4 bytes a slot, grown by 4/3 (rehash) when
it is 90 % full, so 1/0.9 to 1/0.675 slots a state: 14.4-15.9 bytes a state in all, where
the dict it replaces took about 100+ (a dict entry, a boxed int key and a tuple of two
boxed values), and the table before this one 18-24 (a 4-byte parent ordinal, linear
probing grown by doubling at 3/4 full).

A breadth-first search expands states in the order it discovers them, so the parent of a
new state is the ordinal of the state being expanded, and the parents of states in
ordinal order never decrease: a state's parent is kept as the step from the previous
state's parent (0 for the siblings of one expansion; 255 or more in a dict beside it),
with every 256th state's parent remembered in full (`_marks`), so a parent is a sum of
at most 255 bytes away: only traces and links ask for it. A state's number in the
liveness graph is its ordinal. The table is a mapping from fingerprint to the link
`(parent fingerprint or None, choice, ordinal)`, the shape `checker.trace.choices_to`
walks, and accepts the links the explorer writes (`(parent fingerprint, choice[,
number])`).

`SpillingFrontier` is a BFS level (a queue appended to, then read once in order) that
keeps its first `limit` states in memory and pickles the rest, `chunk` states at a time,
to an anonymous temporary file in the system's temp directory (unlinked at once, so it is
gone when closed or when the process ends, even on error); they are read back in the order
they were appended, so counts and traces are those of an in-memory list.
"""

from __future__ import annotations

import pickle
import tempfile
from array import array
from collections.abc import Hashable, Iterator, Mapping
from typing import IO, Any

_ESCAPE = 255  # in the choices or parent-steps array: look the value up in a dict beside it
_MAX_LOAD = 0.9  # grow the index when it is this full ...
_GROWTH = 4 / 3  # ... by this factor, so it is at least 0.675 full after a growth
_MASK64 = (1 << 64) - 1
_MARK_EVERY = 256  # ordinals between two remembered parents (`_marks`)


def _prime_at_least(n: int) -> int:
    """The smallest prime >= n (n < 2^32: trial division by odd numbers is quick enough
    for the few dozen growths of a run)."""
    n = max(n, 3) | 1
    while True:
        if all(n % d for d in range(3, int(n**0.5) + 1, 2)):
            return n
        n += 2


class FingerprintTable(Mapping[Hashable, tuple[Any, ...]]):
    """Visited 64-bit fingerprints with BFS parent links, in flat arrays (see the module
    docstring). Fingerprints must be ints in [0, 2^64); states must be added in BFS order
    (each one's parent ordinal no smaller than the last one's)."""

    def __init__(self, capacity: int = 1024):
        size = _prime_at_least(max(capacity, 8))
        self.fps = array("Q")
        # parent(ordinal) - parent(ordinal - 1), parent(-1) = -1; an initial state's parent
        # is -1 (so initial states come first)
        self.parent_steps = array("B")
        self.big_steps: dict[int, int] = {}
        self._marks = array("q")  # parent(k * _MARK_EVERY)
        self._last_parent = -1
        self.choices = array("B")
        self.big_choices: dict[int, int] = {}
        self._index = array("I", bytes(4 * size))
        self._size = size
        self._grow_at = int(size * _MAX_LOAD)
        # the slot where the last absent fingerprint would go (a `in` then a store)
        self._miss_fp = -1
        self._miss_slot = 0
        # the last parent looked up (successors of one state come together)
        self._parent_fp: Hashable | None = None
        self._parent_ordinal = 0

    # -- the index -----------------------------------------------------------------------

    def ordinal(self, fp: int) -> int:
        """The ordinal of a stored fingerprint, or -1. Double hashing over a prime number
        of slots: the home slot fp mod size, then steps of 1 + (fp >> 32) mod (size - 1)."""
        index, fps, size = self._index, self.fps, self._size
        slot = fp % size
        entry = index[slot]
        if entry:
            if fps[entry - 1] == fp:
                return entry - 1
            step = 1 + (fp >> 32) % (size - 1)
            while True:
                slot += step
                if slot >= size:
                    slot -= size
                entry = index[slot]
                if not entry:
                    break
                if fps[entry - 1] == fp:
                    return entry - 1
        self._miss_fp, self._miss_slot = fp, slot
        return -1

    def __contains__(self, fp: object) -> bool:
        return self.ordinal(fp) >= 0  # type: ignore[arg-type]

    def __len__(self) -> int:
        return len(self.fps)

    def __iter__(self) -> Iterator[Hashable]:
        return iter(self.fps)

    @property
    def capacity(self) -> int:
        """Slots in the index."""
        return self._size

    def nbytes(self) -> int:
        """Bytes the arrays take (their items; the dicts of big values not counted)."""
        return sum(a.itemsize * len(a) for a in (
            self.fps, self.parent_steps, self._marks, self.choices, self._index))

    def add(self, fp: int, parent: int, choice: int) -> int:
        """Store a fingerprint that is not stored yet, with its parent's ordinal (-1 for
        an initial state) and its choice; return its ordinal."""
        if not 0 <= fp <= _MASK64:
            raise ValueError(f"a fingerprint must be a 64-bit unsigned int, not {fp!r}")
        step = parent - self._last_parent
        if step < 0:
            raise ValueError(
                f"parent ordinal {parent} after {self._last_parent}: states must be added in "
                "breadth-first order")
        ordinal = len(self.fps)
        if ordinal + 1 > self._grow_at:
            self._grow()
        if self._miss_fp == fp:
            slot = self._miss_slot
        else:
            if self.ordinal(fp) >= 0:
                raise KeyError(f"fingerprint {fp!r} is stored already")
            slot = self._miss_slot
        self._miss_fp = -1
        self._index[slot] = ordinal + 1
        self.fps.append(fp)
        if ordinal % _MARK_EVERY == 0:
            self._marks.append(parent)
        if step >= _ESCAPE:
            self.big_steps[ordinal] = step
            step = _ESCAPE
        self.parent_steps.append(step)
        self._last_parent = parent
        if choice >= _ESCAPE:
            self.big_choices[ordinal] = choice
            choice = _ESCAPE
        self.choices.append(choice)
        return ordinal

    def _grow(self) -> None:
        """Grow the index by _GROWTH (to a prime number of slots) and re-insert every
        ordinal."""
        size = _prime_at_least(int(self._size * _GROWTH) + 1)
        index = array("I", bytes(4 * size))
        for ordinal, fp in enumerate(self.fps, 1):
            slot = fp % size
            if index[slot]:
                step = 1 + (fp >> 32) % (size - 1)
                while index[slot]:
                    slot += step
                    if slot >= size:
                        slot -= size
            index[slot] = ordinal
        self._index, self._size = index, size
        self._grow_at = int(size * _MAX_LOAD)
        self._miss_fp = -1

    # -- links by ordinal ----------------------------------------------------------------

    def parent_of(self, ordinal: int) -> int:
        """The parent's ordinal, or -1 for an initial state: the last remembered parent
        before it, plus the steps since."""
        if not 0 <= ordinal < len(self.fps):
            raise IndexError(ordinal)
        start = ordinal - ordinal % _MARK_EVERY
        steps = self.parent_steps[start + 1:ordinal + 1]
        parent = self._marks[ordinal // _MARK_EVERY] + sum(steps)
        if _ESCAPE in steps:
            parent += sum(
                self.big_steps[k] - _ESCAPE for k in range(start + 1, ordinal + 1)
                if k in self.big_steps
            )
        return parent

    def choice_of(self, ordinal: int) -> int:
        choice = self.choices[ordinal]
        return self.big_choices[ordinal] if choice == _ESCAPE else choice

    def path(self, ordinal: int) -> tuple[int, ...]:
        """The choice sequence from an initial state to the state `ordinal`."""
        out: list[int] = []
        while ordinal >= 0:
            out.append(self.choice_of(ordinal))
            ordinal = self.parent_of(ordinal)
        out.reverse()
        return tuple(out)

    # -- the mapping the explorer and checker.trace use -----------------------------------

    def __getitem__(self, fp: Hashable) -> tuple[int | None, int, int]:
        ordinal = self.ordinal(fp)  # type: ignore[arg-type]
        if ordinal < 0:
            raise KeyError(fp)
        return self._link(ordinal)

    def get(self, fp: Hashable, default: Any = None) -> Any:
        ordinal = self.ordinal(fp)  # type: ignore[arg-type]
        return self._link(ordinal) if ordinal >= 0 else default

    def _link(self, ordinal: int) -> tuple[int | None, int, int]:
        parent = self.parent_of(ordinal)
        return (self.fps[parent] if parent >= 0 else None, self.choice_of(ordinal), ordinal)

    def __setitem__(self, fp: Hashable, link: tuple[Any, ...]) -> None:
        """Store `fp` with the link (parent fingerprint or None, choice[, number]); a
        number must be the ordinal the state gets."""
        parent_fp = link[0]
        if parent_fp is None:
            parent = -1
        elif parent_fp == self._parent_fp:
            parent = self._parent_ordinal
        else:
            parent = self.ordinal(parent_fp)
            if parent < 0:
                raise KeyError(parent_fp)
            self._parent_fp, self._parent_ordinal = parent_fp, parent
        if len(link) > 2 and link[2] != len(self.fps):
            raise ValueError(f"state number {link[2]} is not the next ordinal {len(self.fps)}")
        # (after a `fp in table` that missed, the slot is known and no insert came since)
        self.add(fp, parent, link[1])  # type: ignore[arg-type]


class SpillingFrontier:
    """A BFS level: appended to, then read once in order; beyond `limit` states in
    memory, the states go to a temporary file, pickled `chunk` at a time."""

    def __init__(self, limit: int, chunk: int | None = None):
        if limit < 0:
            raise ValueError("limit must be >= 0")
        self.limit = limit
        self.chunk = max(1, chunk if chunk is not None else min(max(limit, 1), 10_000))
        self.head: list[Any] = []  # the first `limit` states
        self.tail: list[Any] = []  # states after them, not written yet
        self.spilled = 0  # states written to the file
        self.chunks = 0
        self.file: IO[bytes] | None = None
        self.read = False

    def append(self, state: Any) -> None:
        if len(self.head) < self.limit:
            self.head.append(state)
            return
        self.tail.append(state)
        if len(self.tail) >= self.chunk:
            self._write()

    def _write(self) -> None:
        if self.file is None:
            self.file = tempfile.TemporaryFile(prefix="checker-frontier-")  # noqa: SIM115 (closed by close())
        pickle.dump(self.tail, self.file, protocol=pickle.HIGHEST_PROTOCOL)
        self.spilled += len(self.tail)
        self.chunks += 1
        self.tail = []

    def __len__(self) -> int:
        return len(self.head) + self.spilled + len(self.tail)

    def __bool__(self) -> bool:
        return len(self) > 0

    def __iter__(self) -> Iterator[Any]:
        """The states in the order they were appended (once: spilled ones are read back
        from the file, which is then closed)."""
        if self.read:
            raise RuntimeError("a spilling frontier is read only once")
        self.read = True
        head, self.head = self.head, []
        yield from head
        del head
        if self.file is not None:
            self.file.flush()
            self.file.seek(0)
            for _ in range(self.chunks):
                states = pickle.load(self.file)
                yield from states
                del states
            self.close()
        tail, self.tail = self.tail, []
        yield from tail

    def close(self) -> None:
        """Drop the temporary file (idempotent)."""
        if self.file is not None:
            self.file.close()
            self.file = None
