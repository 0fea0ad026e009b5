"""`--compact`'s storage (checker/fpset.py): the fingerprint table (open addressing in
flat arrays, parent links by discovery ordinal) and the BFS level that spills to disk."""

from __future__ import annotations

import os
import tempfile
from typing import Any, NamedTuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from toy_models import Counters, Faulty

from checker.explore import Bounds, Check, Options, explore
from checker.expr import compile_expr
from checker.fingerprint import digest_encoding, fingerprint64
from checker.fpset import FingerprintTable, SpillingFrontier
from checker.trace import choices_to
from checker.verdict import Kind, Verdict


def test_fingerprints_with_one_home_slot_are_found_along_the_probe_sequence() -> None:
    table = FingerprintTable(capacity=16)
    assert table.capacity == 17  # a prime number of slots
    # all share the home slot 5 (fp mod 17); below 2^32 the step is 1, so each goes one
    # slot further; the one with high bits steps by 1 + (fp >> 32) mod 16
    same_home = [5, 5 + 17, 5 + 34, 5 + 17 * (1 << 40), 5 + 51]
    for i, fp in enumerate(same_home):
        assert fp not in table
        assert table.add(fp, i - 1, i) == i
    for i, fp in enumerate(same_home):
        assert table.ordinal(fp) == i
    # a fingerprint whose home slot is inside that run, and one past the run's end
    assert 6 not in table and 10 not in table
    table.add(6, 4, 7)
    assert table.ordinal(6) == 5 and table.ordinal(5 + 51) == 4
    assert 5 + 68 not in table
    with pytest.raises(KeyError):
        table.add(5 + 34, 4, 0)  # stored already


def test_the_index_grows_by_rehash_and_keeps_every_link() -> None:
    table = FingerprintTable(capacity=8)
    fps = [(i * 0x9E3779B97F4A7C15) & ((1 << 64) - 1) for i in range(1, 5001)]
    fps += [7 + (k << 32) for k in range(200)]  # one low half: steps of every size
    for i, fp in enumerate(fps):
        table.add(fp, i // 3 - 1, i % 300)
    assert table.capacity > len(fps) and len(table) == len(fps)
    assert len(table) <= table.capacity * 0.9
    assert table.nbytes() / len(table) <= 16  # the bound, parent links included
    for i, fp in enumerate(fps):
        assert table.ordinal(fp) == i
        parent, choice, ordinal = table[fp]
        assert ordinal == i and choice == i % 300  # choices of 255 and more are kept too
        assert parent == (fps[i // 3 - 1] if i >= 3 else None)
    assert 0 not in table and table.get(1) is None
    with pytest.raises(KeyError):
        table[1]


def test_parents_far_apart_and_across_marks_are_kept_exactly() -> None:
    table = FingerprintTable()
    inits = 700  # more than two marks of initial states (parent -1)
    parents = [-1] * inits
    # then parents that stay, step by one, and jump by 255 and more (kept beside)
    parents += [0, 0, 1, 256, 256, 511, 600, 699, 700, 705, 707]
    parents += [707] * 600  # many siblings: marks inside one expansion
    parents += [1000, 1000, 1300, 1301]  # steps of 293 and 300
    for i, p in enumerate(parents):
        table.add(i + 1, p, i % 7)
    assert all(p < i for i, p in enumerate(parents))
    for i, p in enumerate(parents):
        assert table.parent_of(i) == p
        assert table[i + 1][0] == (p + 1 if p >= 0 else None)
    with pytest.raises(ValueError):  # a parent before the last one: not breadth first
        table.add(10**6, parents[-1] - 1, 0)


def test_the_parent_walk_gives_the_choice_sequence() -> None:
    table = FingerprintTable()
    table[100] = (None, 0)  # two initial states
    table[200] = (None, 1)
    table[300] = (200, 4)
    table[400] = (300, 0)
    table[500] = (300, 300)
    assert choices_to(table, 500) == (1, 4, 300)
    assert choices_to(table, 400) == table.path(3) == (1, 4, 0)
    assert choices_to(table, 100) == (0,)
    # a liveness exploration numbers states in discovery order: its ordinals
    table[600] = (400, 2, 5)
    assert table[600] == (400, 2, 5)
    with pytest.raises(ValueError):
        table[700] = (400, 2, 9)
    with pytest.raises(KeyError):
        table[600] = (400, 3)  # stored already
    with pytest.raises(ValueError):
        table[800] = (100, 0)  # a parent expanded before the last one's
    with pytest.raises(ValueError):
        table.add(-1, 3, 0)
    with pytest.raises(ValueError):
        table.add(1 << 64, 3, 0)


@settings(max_examples=30, deadline=None)
@given(st.sets(st.integers(min_value=0, max_value=(1 << 16) - 1), max_size=300),
       st.sets(st.integers(min_value=0, max_value=(1 << 16) - 1), max_size=50),
       st.integers(min_value=1, max_value=64))
def test_the_table_holds_what_was_added_and_nothing_else(
    low: set[int], absent: set[int], capacity: int
) -> None:
    # fingerprints that differ only in high bits share home slots: long probe runs
    fps = [(v & 0xFF) | (v >> 8) << 56 for v in sorted(low)]
    table = FingerprintTable(capacity)
    for i, fp in enumerate(fps):
        assert table.add(fp, i - 1, 0) == i
    for i, fp in enumerate(fps):
        assert table.ordinal(fp) == i
    for v in absent:
        fp = (v & 0xFF) | (v >> 8) << 48
        assert (fp in table) == (fp in fps)


def test_a_spilling_frontier_reads_back_in_order_and_removes_its_file() -> None:
    before = set(os.listdir(tempfile.gettempdir()))
    level = SpillingFrontier(limit=3, chunk=2)
    items: list[Any] = [(i, ("shared", (i % 2,))) for i in range(11)]
    for item in items:
        level.append(item)
    assert len(level) == 11 and level and level.chunks == 4 and level.file is not None
    assert list(level) == items
    assert level.file is None  # read back, then closed
    with pytest.raises(RuntimeError):
        list(level)
    empty = SpillingFrontier(limit=0)
    assert not empty and list(empty) == []
    assert set(os.listdir(tempfile.gettempdir())) <= before  # anonymous, unlinked


def test_an_abandoned_spilling_frontier_is_closed() -> None:
    level = SpillingFrontier(limit=0, chunk=1)
    for i in range(5):
        level.append(i)
    reader = iter(level)
    assert next(reader) == 0
    file = level.file
    assert file is not None and not file.closed
    level.close()
    assert file.closed and level.file is None


def check(kind: Kind, expr: str) -> Check:
    return Check(kind, compile_expr(expr).evaluate)


class _Ring(NamedTuple):

    a: int
    b: int


def _checks() -> list[Check]:
    return [check(Kind.ALWAYS, "total < 9"), check(Kind.REACHABLE, "total == 7"),
            check(Kind.ALWAYS, "total >= 0")]


@pytest.mark.parametrize("spill", [None, 0, 1, 5, 200_000])
def test_compact_with_a_tiny_spill_threshold_gives_the_plain_counts_and_traces(
    spill: int | None, monkeypatch: pytest.MonkeyPatch,
) -> None:
    writes: list[int] = []
    write = SpillingFrontier._write

    def counted(self: SpillingFrontier) -> None:
        writes.append(len(self.tail))
        write(self)

    monkeypatch.setattr(SpillingFrontier, "_write", counted)
    plain = explore(Counters(3, 4), _checks())
    compact = explore(Counters(3, 4), _checks(), options=Options(compact=True, spill=spill))
    assert bool(writes) is (spill is not None and spill < 10)  # levels of up to 19 states
    assert compact.stats.states == plain.stats.states
    assert compact.stats.transitions == plain.stats.transitions
    assert compact.stats.depth == plain.stats.depth
    assert plain.stats.table_bytes == 0 < compact.stats.table_bytes
    for p, c in zip(plain.outcomes, compact.outcomes, strict=True):
        assert c.verdict is p.verdict
        assert (c.trace and c.trace.choices) == (p.trace and p.trace.choices)
    assert [o.verdict for o in compact.outcomes] == [
        Verdict.VIOLATED, Verdict.HOLDS, Verdict.HOLDS]


def test_a_compact_exploration_keeps_under_16_bytes_a_state_in_its_table() -> None:
    result = explore(Counters(4, 12), _checks(), options=Options(compact=True))
    assert result.stats.states == 13**4
    assert result.stats.table_bytes / result.stats.states <= 16


def test_compact_spilling_with_a_depth_bound_and_with_por_and_workers() -> None:
    checks = [check(Kind.ALWAYS, "total >= 0")]
    bounds = Bounds(max_depth=4)
    plain = explore(Counters(3, 5), checks, bounds)
    compact = explore(Counters(3, 5), checks, bounds, options=Options(compact=True, spill=2))
    assert (compact.stats.states, compact.stats.depth, compact.stop_reason) == (
        plain.stats.states, plain.stats.depth, plain.stop_reason)
    full = explore(Counters(3, 3), checks, options=Options(workers=2))
    spilled = explore(Counters(3, 3), checks, options=Options(compact=True, workers=2, spill=3))
    assert spilled.stats.states == full.stats.states
    assert spilled.stats.transitions == full.stats.transitions


def test_the_spilled_levels_are_closed_when_the_model_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made: list[SpillingFrontier] = []
    init = SpillingFrontier.__init__

    def recorded(self: SpillingFrontier, limit: int, chunk: int | None = None) -> None:
        init(self, limit, 1)
        made.append(self)

    monkeypatch.setattr(SpillingFrontier, "__init__", recorded)
    result = explore(Faulty(3, 3), [check(Kind.ALWAYS, "total >= 0")],
                     options=Options(compact=True, spill=0))
    assert result.outcomes[0].verdict is Verdict.ERROR
    assert any(level.chunks for level in made)  # something went to disk
    assert all(level.file is None for level in made)  # and every file was closed


def test_compact_fingerprints_are_the_blake2b_of_the_digest_encoding_remembered_or_not() -> None:
    from hashlib import blake2b

    state = ((1, 2, (3, ("x", True))), _Ring(4, 5), ((), (None,)), _Ring(4, 5))
    want = int.from_bytes(blake2b(digest_encoding(state), digest_size=8).digest(), "little")
    assert fingerprint64(state) == want
    assert fingerprint64(state) == want  # now from what is remembered
    # the encoding distinguishes types ...
    fresh = ((1,), _Ring(7, 8)), ((True,), (7, 8))
    assert digest_encoding(fresh[0]) != digest_encoding(fresh[1])
    # ... but a part's digest is remembered by value, as a plain run's visited dict keys
    # states: parts equal under == (True and 1, a NamedTuple and a tuple) share the digest
    # found first, so states equal under == get one fingerprint within a process.
    assert fingerprint64(fresh[0]) == fingerprint64(fresh[1])


def test_remembered_fingerprints_of_states_that_share_parts_are_their_encodings() -> None:
    """Successors share their parent's parts (the same objects), and parts recur across
    states: what fingerprint64 remembers (by identity and by value) must still give each
    state the fingerprint of its own digest encoding."""
    from hashlib import blake2b

    from model import provider as model_provider

    system = model_provider().load("xen_kexec", {"patch": "patch-v1-fixed"}, {"cpus": 3})
    frontier = list(system.init_states())
    seen = 0
    for _ in range(6):
        frontier = [system.next_state(s, a) for s in frontier for a in system.actions(s)]
        for state in frontier:
            encoded = digest_encoding(state)
            want = int.from_bytes(blake2b(encoded, digest_size=8).digest(), "little")
            assert fingerprint64(state) == want
            seen += 1
    assert seen > 20
