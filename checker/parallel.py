"""Parallel expansion of BFS levels (`checker.explore.Options.workers`), by fork.

The explore loop asks `Pool.active(frontier)` at each level and, when it is, merges the
level from `Pool.expand(frontier)` (a sequence it reads in order) exactly as it would
expand it itself; nothing here decides anything, so counts, verdicts and traces do not
depend on the number of workers.
"""

from __future__ import annotations

import contextlib
import gc
import multiprocessing
import os
import pickle
import signal
import struct
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

Predicate = Callable[[Mapping[str, Any]], Any]

# An expanded state: its number of enabled actions and its successors (choice, state) in
# action order. An iterable that raises after its pairs stands for a failing next_state.
_Entry = tuple[int, Iterable[tuple[int, Any]]]
# What a helper sends for a state: the successors as differences from it (`_diff`).
_Encoded = tuple[int, list[tuple[int, tuple[Any, ...]]]]


class Pool:
    """Expands big BFS levels in `workers` processes: this one and `workers - 1` helpers
    forked for the level.

    Helpers see the frontier through fork (nothing is sent to them); they take chunks of
    it from a shared queue and send back each state's successors, leaving out a successor
    equal to an earlier one of the same chunk (the merge would skip it: most duplicates
    are siblings). The merge asks for the states in frontier order; when the chunk it
    needs has not arrived it expands the next unclaimed chunk itself (no pickling), so the
    exploration (counts, order, verdicts, traces) is exactly the sequential one. A chunk a
    helper could not expand or send (a model error, a state that does not pickle) is
    expanded again here, where it fails or succeeds as it would sequentially.

    Helpers pay only when merging a state they expanded costs this process much less than
    expanding it, by more than the fork, the pages copied on write and the waiting cost;
    after STRIKES levels in a row where they did not (e.g. a model that expands states
    faster than they unpickle, or no idle core), the rest of the exploration runs here.
    """

    # Levels below this many states are expanded in-process: a fork costs milliseconds.
    MIN_LEVEL = 1024
    # Chunks: enough per process to balance the load, big enough to find duplicates and
    # to amortise a message; at most MAX_CHUNKS (4-byte tokens in one pipe buffer).
    CHUNKS_PER_WORKER = 16
    MIN_CHUNK = 64
    MAX_CHUNKS = 4096
    STRIKES = 3

    def __init__(
        self, system: Any, next_state: Callable[[Any, Any], Any],
        predicates: Sequence[Predicate | None], workers: int,
    ):
        # Properties are evaluated in the merge, never in helpers: `predicates` is unused.
        self.system = system
        self.next_state = next_state
        can_fork = "fork" in multiprocessing.get_all_start_methods()
        self.workers = workers if workers > 1 and can_fork else 1
        self.level: Level | None = None
        self.zombies: list[int] = []
        self.strikes = 0  # levels in a row where the helpers did not pay

    def active(self, frontier: Sequence[Any]) -> bool:
        return (
            self.workers > 1 and self.strikes < self.STRIKES and len(frontier) >= self.MIN_LEVEL
        )

    def expand(self, frontier: Sequence[Any]) -> Sequence[_Entry]:
        self._end_level()
        per_chunk = -(-len(frontier) // (self.workers * self.CHUNKS_PER_WORKER))
        size = max(self.MIN_CHUNK, per_chunk, -(-len(frontier) // self.MAX_CHUNKS))
        self.level = Level(self.system, self.next_state, frontier, size, self.workers - 1)
        return self.level

    def close(self) -> None:
        """End the exploration's last level and reap every helper it forked (a helper
        that has not exited yet is waited for: it has nothing left to do)."""
        self._end_level()
        for pid in self.zombies:
            with contextlib.suppress(ChildProcessError):  # reaped by someone else
                os.waitpid(pid, 0)
        self.zombies = []

    def _end_level(self) -> None:
        if self.level is not None:
            paid = self.level.paid() if self.level.done else None
            if paid is not None:
                self.strikes = 0 if paid else self.strikes + 1
            self.zombies.extend(self.level.close())
            self.level = None
        # Reap helpers that have exited without waiting for the others (an exit unmaps
        # a copy of this process's address space: it takes a while).
        waiting = []
        for pid in self.zombies:
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:  # reaped by someone else (a SIGCHLD handler)
                continue
            if not done:
                waiting.append(pid)
        self.zombies = waiting


class Level(Sequence[_Entry]):
    """One level being expanded: `level[i]` is frontier[i]'s entry (in order only)."""

    def __init__(
        self, system: Any, next_state: Callable[[Any, Any], Any], frontier: Sequence[Any],
        size: int, helpers: int,
    ):
        self.system = system
        self.next_state = next_state
        self.frontier = frontier
        self.size = size
        self.chunks = count = -(-len(frontier) // size)
        # The queue of chunks: their numbers in a pipe, written before the helpers start
        # and closed, so a read takes the next one atomically and b"" means none is left.
        self.tokens, write = os.pipe()
        os.write(write, struct.pack(f"<{count}I", *range(count)))
        os.close(write)
        self.ready: dict[int, list[_Encoded] | None] = {}
        self.mine: dict[int, list[_Entry]] = {}  # expanded here, ahead of the merge
        self.failed: dict[int, BaseException] = {}  # actions() raised after the entries
        self.current = -1
        self.entries: list[_Entry] = []
        self.helpers: dict[Connection, int] = {}  # helpers still sending
        # Every helper forked, to be reaped: one whose pipe closed leaves `helpers`.
        self.pids: list[int] = []
        self.done = False
        self.cost = _Cost(os.times(), time.perf_counter())
        for _ in range(helpers):
            read, write = os.pipe()
            try:
                pid = os.fork()
            except OSError:  # no more processes: fewer helpers (this process does the rest)
                os.close(read)
                os.close(write)
                break
            if pid == 0:  # pragma: no cover - a helper (coverage does not follow forks)
                _helper(system, next_state, frontier, size, self.tokens, write)
            os.close(write)
            self.pids.append(pid)
            self.helpers[Connection(read, writable=False)] = pid

    def __len__(self) -> int:
        return len(self.frontier)

    def __getitem__(self, position: int) -> _Entry:  # type: ignore[override]
        chunk, offset = divmod(position, self.size)
        if chunk != self.current:
            self.entries = self._chunk(chunk)
            self.current = chunk
        if offset < len(self.entries):
            return self.entries[offset]
        raise self.failed.pop(chunk)

    def _chunk(self, chunk: int) -> list[_Entry]:
        started = time.process_time()
        entries = self._entries(chunk)
        self.cost.merge += time.process_time() - started
        return entries

    def _entries(self, chunk: int) -> list[_Entry]:
        """Chunk `chunk`'s entries: expanded here, or a helper's."""
        while chunk not in self.mine and chunk not in self.ready:
            self._receive(block=False)
            if chunk in self.ready:
                break
            claimed = self._claim()
            if claimed is not None:
                self.mine[claimed] = self._expand(claimed)
            elif not self._receive(block=True):
                # Every helper has exited and the one that took this chunk never sent it
                # (killed, out of memory): expand it here.
                self.mine[chunk] = self._expand(chunk)
        if chunk == self.chunks - 1:
            self.done = True
        if chunk in self.mine:
            return self.mine.pop(chunk)
        encoded = self.ready.pop(chunk)
        if encoded is None:  # the helper could not expand or send it
            return self._expand(chunk)
        start = chunk * self.size
        self.cost.remote_states += len(encoded)
        return [
            (count, [(choice, _apply(parent, diff)) for choice, diff in pairs])
            for parent, (count, pairs) in zip(
                self.frontier[start : start + len(encoded)], encoded, strict=True
            )
        ]

    def _expand(self, chunk: int) -> list[_Entry]:
        start = chunk * self.size
        states = self.frontier[start : start + self.size]
        started = time.process_time()
        entries, error = expand_chunk(self.system, self.next_state, states, dedup=False)
        self.cost.local += time.process_time() - started
        self.cost.local_states += len(states)
        if error is not None:
            self.failed[chunk] = error
        return entries

    def paid(self) -> bool | None:
        """Whether the helpers made this level faster (None: nothing to compare)."""
        cost = self.cost
        if not (cost.local_states and cost.remote_states):
            return None
        return cost.paid(os.times(), time.perf_counter())

    def _claim(self) -> int | None:
        token = os.read(self.tokens, 4)
        return struct.unpack("<I", token)[0] if len(token) == 4 else None

    def _receive(self, block: bool) -> bool:
        """Take every message that has arrived (with `block`, wait for one); False when
        no helper is left to wait for."""
        if not self.helpers:
            return False
        started = time.perf_counter()
        ready = wait(list(self.helpers), timeout=None if block else 0)
        if block:
            self.cost.waited += time.perf_counter() - started
        for conn in ready:
            assert isinstance(conn, Connection)  # wait() returns what it was given
            try:
                payload = conn.recv_bytes()
            except (EOFError, OSError):
                conn.close()
                del self.helpers[conn]
                continue
            chunk, entries = pickle.loads(payload)
            self.ready[chunk] = entries
        return True

    def close(self) -> list[int]:
        """Stop the helpers (killing those still running when the level was cut short);
        the pids of every helper forked, each to be reaped once."""
        for conn, pid in self.helpers.items():
            if not self.done:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            conn.close()
        self.helpers = {}
        os.close(self.tokens)
        self.ready = {}
        pids, self.pids = self.pids, []
        return pids


@dataclass
class _Cost:
    """This process's time on a level, to tell whether its helpers paid."""

    times_start: os.times_result  # when the level began
    wall_start: float
    merge: float = 0.0  # CPU seconds getting chunks: expanding here, unpickling, rebuilding
    local: float = 0.0  # of which expanding here
    local_states: int = 0
    remote_states: int = 0  # states whose successors came from a helper
    waited: float = 0.0  # seconds blocked waiting for a helper

    # Helpers must save this share of what expanding their states here would have cost.
    MARGIN = 0.1
    # Below this share of a core (blocked time aside), this process was waiting for one:
    # there is no idle core for helpers.
    MIN_SHARE = 0.8

    def paid(self, times_now: os.times_result, wall_now: float) -> bool:
        """Helpers pay when expanding their states here would have cost clearly more than
        taking them (unpickling, rebuilding, waiting, forking and copying pages on write)
        and this process had a core to itself."""
        start = self.times_start
        cpu = times_now.user + times_now.system - start.user - start.system
        wall = wall_now - self.wall_start
        if wall > 0 and (cpu + self.waited) < self.MIN_SHARE * wall:
            return False
        saved = self.remote_states * self.local / self.local_states
        taking = self.merge - self.local + self.waited + (times_now.system - start.system)
        return saved - taking > self.MARGIN * saved


def _helper(
    system: Any, next_state: Callable[[Any, Any], Any], frontier: Sequence[Any], size: int,
    tokens: int, write: int,
) -> None:  # pragma: no cover - runs in a forked helper
    """A helper's life: expand the chunks it claims, send each, exit (never return)."""
    # The collector would touch every object and copy the parent's pages: not for a
    # process that lives one level.
    gc.disable()
    code = 0
    try:
        out = Connection(write, readable=False)
        while True:
            token = os.read(tokens, 4)
            if len(token) < 4:
                break
            (chunk,) = struct.unpack("<I", token)
            states = frontier[chunk * size : (chunk + 1) * size]
            entries, error = expand_chunk(system, next_state, states, dedup=True)
            payload = None
            if error is None and not (entries and isinstance(entries[-1][1], _Failing)):
                encoded = [
                    (count, [(choice, _diff(parent, succ)) for choice, succ in pairs])
                    for parent, (count, pairs) in zip(states, entries, strict=True)
                ]
                # A state that does not pickle: the parent expands the chunk.
                with contextlib.suppress(Exception):
                    payload = pickle.dumps((chunk, encoded), pickle.HIGHEST_PROTOCOL)
            out.send_bytes(payload or pickle.dumps((chunk, None)))
    except BaseException:
        code = 1
    finally:
        os._exit(code)


def expand_chunk(
    system: Any, next_state: Callable[[Any, Any], Any], states: Sequence[Any], dedup: bool
) -> tuple[list[_Entry], BaseException | None]:
    """Every successor of every state, in action order. A failing next_state ends the
    entries with a `_Failing`; a failing actions() ends them before its state and is
    returned. With `dedup`, a successor equal to an earlier one of the chunk is left out
    (the merge would skip it)."""
    out: list[_Entry] = []
    seen: set[Any] = set()
    for state in states:
        try:
            enabled = system.actions(state)
        except Exception as exc:
            return out, exc
        pairs: list[tuple[int, Any]] = []
        for choice, action in enumerate(enabled):
            try:
                succ = next_state(state, action)
            except Exception as exc:
                out.append((len(enabled), _Failing(pairs, exc)))
                return out, None
            if dedup:
                if succ in seen:
                    continue
                seen.add(succ)
            pairs.append((choice, succ))
        out.append((len(enabled), pairs))
    return out, None


class _Failing:
    """The successors computed before next_state raised, then the exception."""

    def __init__(self, pairs: list[tuple[int, Any]], error: BaseException):
        self.pairs = pairs
        self.error = error

    def __iter__(self) -> Iterator[tuple[int, Any]]:
        yield from self.pairs
        raise self.error


# -- successors as differences from their parent ---------------------------------------------
#
# A successor shares most of its parts with the state it came from, which this process
# has too (the helper's frontier is a fork of ours). A helper sends only the parts that
# changed, and the merge rebuilds the successor around its own copy of the parent: much
# less to pickle and unpickle, and the parts are shared in memory as they are when the
# successor is computed here.

_SAME = (0,)  # the part is the parent's
_NEW = 1  # (1, value): a new value
_CHANGED = 2  # (2, ((index, diff), ...)): the parent's tuple with some items changed
# (3, (item, ...)): a tuple of the parent's items, moved (an int: the parent's index) or
# new (a 1-tuple holding the value), e.g. a sorted tuple with one item inserted.
_MOVED = 3
_PLAIN: dict[type, bool] = {}


def _plain_tuple(cls: type) -> bool:
    """A tuple type whose instances are nothing but their items (tuple, named tuples):
    one can be rebuilt with tuple.__new__ without calling its class."""
    plain = _PLAIN.get(cls)
    if plain is None:
        plain = issubclass(cls, tuple) and cls.__dictoffset__ == 0 and (
            cls.__basicsize__ == tuple.__basicsize__
        )
        _PLAIN[cls] = plain
    return plain


def _diff(old: Any, new: Any) -> tuple[Any, ...]:
    """How `new` differs from `old`: `_SAME` also when they are equal but not the same
    object (a model that rebuilds a part gets its parent's copy back, shared)."""
    if new is old:
        return _SAME
    cls = type(new)
    if type(old) is not cls:
        return (_NEW, new)
    if not _plain_tuple(cls):
        return _SAME if (cls is int or cls is str) and new == old else (_NEW, new)
    if len(new) == len(old):
        changed = []
        for i, (a, b) in enumerate(zip(old, new, strict=True)):
            if a is not b:
                part = _diff(a, b)
                if part is not _SAME:
                    changed.append((i, part))
        if not changed:
            return _SAME
        if len(changed) <= 2 or 2 * len(changed) <= len(new):
            return (_CHANGED, tuple(changed))
    # Items inserted, removed or shifted: refer to the parent's by position.
    where = {id(item): i for i, item in enumerate(old)}
    items = tuple(where.get(id(item), (item,)) for item in new)
    if 2 * sum(1 for item in items if type(item) is tuple) > len(items):
        return (_NEW, new)
    return (_MOVED, items)


def _apply(old: Any, diff: tuple[Any, ...]) -> Any:
    tag = diff[0]
    if tag == _NEW:
        return diff[1]
    if tag == _CHANGED:
        items = list(old)
        for i, part in diff[1]:
            items[i] = _apply(old[i], part)
        return tuple.__new__(type(old), items)
    if tag == _MOVED:
        return tuple.__new__(
            type(old), [old[item] if type(item) is int else item[0] for item in diff[1]]
        )
    return old
