"""Compact storage for `--compact` exploration: a fingerprint table and a spilling frontier.

`FingerprintTable` keeps the visited states' 64-bit fingerprints with their BFS parent
links in flat `array`s instead of a dict of Python objects. States are numbered in the
order they are discovered (their *ordinal*); per state it stores

    the fingerprint        8 bytes   (array 'Q', by ordinal)
    the parent's ordinal   4 bytes   (array 'I', by ordinal; 0 = an initial state, else
                                      the parent's ordinal + 1)
    the choice             1 byte    (array 'B', by ordinal; a choice of 255 or more is
                                      kept in a small dict beside it)

13 bytes a state, and an open-addressing index (linear probing, array 'I' of ordinal + 1,
0 = empty) of 4 bytes a slot, grown by doubling (rehash) when it is 3/4 full, so 1/0.75
to 1/0.375 slots a state: 18-24 bytes a state in all, where the dict it replaces took
about 100+ (a dict entry, a boxed int key and a tuple of two boxed values).

A breadth-first search expands states in the order it discovers them, so the parent of a
new state is the ordinal of the state being expanded, and a state's number in the
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

_NO_PARENT = 0  # in the parents array: an initial state
_BIG_CHOICE = 255  # in the choices array: look the choice up in `big_choices`
_MAX_LOAD_NUM, _MAX_LOAD_DEN = 3, 4  # grow the index when it is 3/4 full
_MASK64 = (1 << 64) - 1


class FingerprintTable(Mapping[Hashable, tuple[Any, ...]]):
    """Visited 64-bit fingerprints with BFS parent links, in flat arrays (see the module
    docstring). Fingerprints must be ints in [0, 2^64)."""

    def __init__(self, capacity: int = 1024):
        size = 8
        while size < capacity:
            size *= 2
        self.fps = array("Q")
        self.parents = array("I")
        self.choices = array("B")
        self.big_choices: dict[int, int] = {}
        self._index = array("I", bytes(4 * size))
        self._mask = size - 1
        self._grow_at = size * _MAX_LOAD_NUM // _MAX_LOAD_DEN
        # the slot where the last absent fingerprint would go (a `in` then a store)
        self._miss_fp = -1
        self._miss_slot = 0
        # the last parent looked up (successors of one state come together)
        self._parent_fp: Hashable | None = None
        self._parent_ordinal = 0

    # -- the index -----------------------------------------------------------------------

    def ordinal(self, fp: int) -> int:
        """The ordinal of a stored fingerprint, or -1."""
        index, fps, mask = self._index, self.fps, self._mask
        slot = fp & mask
        while True:
            entry = index[slot]
            if not entry:
                self._miss_fp, self._miss_slot = fp, slot
                return -1
            if fps[entry - 1] == fp:
                return entry - 1
            slot = (slot + 1) & mask

    def __contains__(self, fp: object) -> bool:
        return self.ordinal(fp) >= 0  # type: ignore[arg-type]

    def __len__(self) -> int:
        return len(self.fps)

    def __iter__(self) -> Iterator[Hashable]:
        return iter(self.fps)

    @property
    def capacity(self) -> int:
        """Slots in the index."""
        return self._mask + 1

    def nbytes(self) -> int:
        """Bytes the arrays take (their items; the dict of big choices not counted)."""
        return sum(a.itemsize * len(a) for a in (self.fps, self.parents, self.choices,
                                                 self._index))

    def add(self, fp: int, parent: int, choice: int) -> int:
        """Store a fingerprint that is not stored yet, with its parent's ordinal (-1 for
        an initial state) and its choice; return its ordinal."""
        if not 0 <= fp <= _MASK64:
            raise ValueError(f"a fingerprint must be a 64-bit unsigned int, not {fp!r}")
        ordinal = len(self.fps)
        if ordinal + 1 > self._grow_at:
            self._grow()
        if self._miss_fp == fp:
            slot = self._miss_slot
        else:
            index, mask = self._index, self._mask
            slot = fp & mask
            while index[slot]:
                slot = (slot + 1) & mask
        self._miss_fp = -1
        self._index[slot] = ordinal + 1
        self.fps.append(fp)
        self.parents.append(parent + 1)
        if choice >= _BIG_CHOICE:
            self.big_choices[ordinal] = choice
            choice = _BIG_CHOICE
        self.choices.append(choice)
        return ordinal

    def _grow(self) -> None:
        """Double the index and re-insert every ordinal."""
        size = 2 * (self._mask + 1)
        mask = size - 1
        index = array("I", bytes(4 * size))
        for ordinal, fp in enumerate(self.fps, 1):
            slot = fp & mask
            while index[slot]:
                slot = (slot + 1) & mask
            index[slot] = ordinal
        self._index, self._mask = index, mask
        self._grow_at = size * _MAX_LOAD_NUM // _MAX_LOAD_DEN
        self._miss_fp = -1

    # -- links by ordinal ----------------------------------------------------------------

    def parent_of(self, ordinal: int) -> int:
        """The parent's ordinal, or -1 for an initial state."""
        return self.parents[ordinal] - 1

    def choice_of(self, ordinal: int) -> int:
        choice = self.choices[ordinal]
        return self.big_choices[ordinal] if choice == _BIG_CHOICE else choice

    def path(self, ordinal: int) -> tuple[int, ...]:
        """The choice sequence from an initial state to the state `ordinal`."""
        out: list[int] = []
        while ordinal >= 0:
            out.append(self.choice_of(ordinal))
            ordinal = self.parents[ordinal] - 1
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
        parent = self.parents[ordinal] - 1
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
        # (after a `fp in table` that missed, the slot is known and no insert came since)
        if self._miss_fp != fp and self.ordinal(fp) >= 0:  # type: ignore[arg-type]
            raise KeyError(f"fingerprint {fp!r} is stored already")
        if len(link) > 2 and link[2] != len(self.fps):
            raise ValueError(f"state number {link[2]} is not the next ordinal {len(self.fps)}")
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
