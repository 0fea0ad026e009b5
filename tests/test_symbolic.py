"""Symbolic values (checker/symbolic.py) and their use by the model (issue 6).

The symbolic constructors must agree with concrete 64-bit arithmetic on every value; z3
must agree with both; a witness must replay concretely; concrete runs never ask z3.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import z3
from hypothesis import given, settings
from hypothesis import strategies as st

from checker import symbolic as S
from model.system.provider import DesignProvider

U64 = st.integers(min_value=0, max_value=S.MASK)
SHIFT = st.integers(min_value=0, max_value=63)

BINARY = {
    "add": (S.add, lambda a, b: (a + b) & S.MASK),
    "sub": (S.sub, lambda a, b: (a - b) & S.MASK),
    "mul": (S.mul, lambda a, b: (a * b) & S.MASK),
    "and": (S.band, lambda a, b: a & b),
    "or": (S.bor, lambda a, b: a | b),
    "xor": (S.bxor, lambda a, b: a ^ b),
}
COMPARE = {
    "eq": (S.eq, lambda a, b: a == b),
    "ult": (S.ult, lambda a, b: a < b),
    "ule": (S.ule, lambda a, b: a <= b),
    "slt": (S.slt, lambda a, b: _signed(a) < _signed(b)),
    "sle": (S.sle, lambda a, b: _signed(a) <= _signed(b)),
}


def _signed(a: int) -> int:
    return a - (1 << 64) if a & S.SIGN else a


def _z3_value(term: Any, values: dict[str, int]) -> Any:
    """Evaluate a term with z3 under a concrete assignment (an independent oracle)."""
    expr = S.to_z3(term)
    subst = [(z3.BitVec(n, 64), z3.BitVecVal(v, 64)) for n, v in values.items()]
    result = z3.simplify(z3.substitute(expr, *subst)) if subst else z3.simplify(expr)
    if z3.is_bool(result):
        return z3.is_true(result)
    return result.as_long()


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(sorted(BINARY)), U64, U64, st.booleans(), st.booleans())
def test_binary_operations_agree_with_concrete(op: str, a: int, b: int, sa: bool, sb: bool) -> None:
    """Each bit-vector constructor, with either operand symbolic, evaluates (by
    substitution and by z3) to the concrete 64-bit result."""
    build, concrete = BINARY[op]
    x = S.var("x") if sa else a
    y = S.var("y") if sb else b
    term = build(x, y)
    values = {"x": a, "y": b}
    assert S.substitute(term, values) == concrete(a, b)
    assert _z3_value(term, values) == concrete(a, b)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(sorted(COMPARE)), U64, U64, st.booleans())
def test_comparisons_agree_with_concrete(op: str, a: int, b: int, sa: bool) -> None:
    build, concrete = COMPARE[op]
    x = S.var("x") if sa else a
    term = build(x, b)
    values = {"x": a}
    assert S.substitute(term, values) == concrete(a, b)
    assert _z3_value(term, values) == concrete(a, b)


@settings(max_examples=100, deadline=None)
@given(U64, SHIFT, st.sampled_from(["shl", "lshr", "ashr"]))
def test_shifts_agree_with_concrete(a: int, n: int, op: str) -> None:
    build = {"shl": S.shl, "lshr": S.lshr, "ashr": S.ashr}[op]
    concrete = build(a, n)
    term = build(S.var("x"), n)
    assert S.substitute(term, {"x": a}) == concrete
    assert _z3_value(term, {"x": a}) == concrete


@settings(max_examples=100, deadline=None)
@given(U64, st.integers(min_value=-4096, max_value=4096), st.integers(-4096, 4096))
def test_offsets_normalise(a: int, c: int, d: int) -> None:
    """(x + c) + d is x + (c + d), and x + c == x + d folds without z3."""
    x = S.var("x")
    assert S.add(S.add(x, c), d) == S.add(x, c + d)
    assert S.eq(S.add(x, c), S.add(x, d)) is ((c - d) % (1 << 64) == 0)
    assert S.substitute(S.add(S.add(x, c), d), {"x": a}) == (a + c + d) & S.MASK


def test_solver_caches_and_counts() -> None:
    solver = S.Solver()
    x = S.var("x")
    conds = (S.ult(x, 16), S.ule(8, x))
    assert solver.satisfiable(conds)
    assert solver.satisfiable(conds)
    assert solver.stats.queries == 2 and solver.stats.cache_hits == 1
    assert solver.stats.z3_calls == 1
    assert not solver.satisfiable((S.ult(x, 8), S.ule(8, x)))
    model = solver.model(conds, ["x"])
    assert model is not None and 8 <= model["x"] < 16


def test_decide_needs_a_transition() -> None:
    x = S.var("x")
    assert S.decide(True) is True
    try:
        S.decide(S.ult(x, 3))
    except S.SymbolicDecisionError:
        pass
    else:  # pragma: no cover
        raise AssertionError("a symbolic decision outside a transition must fail")
    result, record = S.run_with((False,), S.decide, S.ult(x, 3))
    assert result is False and record.taken == [S.lnot(S.ult(x, 3))]


def _explore(system: Any, bad: Any) -> tuple[list[Any], Any, dict[Any, Any]]:
    init = system.init_states()
    parents: dict[Any, Any] = {s: None for s in init}
    queue = deque(init)
    while queue:
        s = queue.popleft()
        if bad(system.vocabulary(s)):
            path = []
            cur = s
            while parents[cur] is not None:
                prev, a = parents[cur]
                path.append(a)
                cur = prev
            return list(reversed(path)), cur, parents
        for a in system.actions(s):
            n = system.next_state(s, a)
            if n not in parents:
                parents[n] = (s, a)
                queue.append(n)
    return [], None, parents


def test_witness_replays_concretely_without_z3() -> None:
    """Issue 6 item 4: the violation found on a symbolic path comes with concrete values
    for every symbolic input; re-running the same actions with them reproduces it."""
    system = DesignProvider().load(
        "xen_syscall", {"ist": "no-nmi-ist"}, {"nmi": 1, "symbolic": ["guest_rsp", "guest_rip"]}
    )

    def bad(v: Any) -> bool:
        return any(f["guest_chosen"] and f["stack"] == "primary[0]" for f in v["frames"])

    actions, init, _ = _explore(system, bad)
    assert actions, "the aliasing violation must be found"
    witness = system.witness(init, actions)
    assert witness is not None and any(k.startswith("guest_rsp@") for k in witness)
    rsp = witness[next(k for k in witness if k.startswith("guest_rsp@"))]
    primary = system.platform.region("primary[0]")
    assert primary.lo <= (rsp & ~0xF) - 40 < primary.hi, "the witness RSP points into the page"
    calls = system.solver.stats.z3_calls
    final = system.replay_concrete(init, actions, witness)
    assert system.solver.stats.z3_calls == calls, "concrete replay must not ask z3"
    assert not final.symbolic
    frames = system.vocabulary(final)["frames"]
    assert any(f["stack"] == "primary[0]" and f["vector"] == 2 for f in frames)


def test_concrete_runs_make_no_z3_query() -> None:
    """Issue 6 item 6: without symbolic inputs, no transition reaches the solver."""
    system = DesignProvider().load("xen_syscall", {"ist": "no-nmi-ist"}, {"nmi": 1})
    _explore(system, lambda v: False)
    assert system.solver.stats.queries == 0 and system.solver.stats.z3_calls == 0


def test_symbolic_states_are_canonical() -> None:
    """Issue 6 item 5: a guest that picks a fresh %rsp on every SYSCALL does not make the
    state space grow without bound: dead symbols and their conditions are dropped and the
    rest renamed, so the loop closes."""
    system = DesignProvider().load(
        "xen_syscall", {"sysret_check": "checked"}, {"symbolic": ["guest_rsp", "guest_rip"]}
    )
    _, _, parents = _explore(system, lambda v: False)
    assert len(parents) < 200
    names = set()
    for s in parents:
        names |= S.symbols((s.machine, s.vars))
    assert names <= {"guest_rsp", "guest_rip", "guest_rsp#1", "guest_rip#1"}


def test_interrupt_after_symbolic_compare_saves_real_flags() -> None:
    """SDM §6.12.1: an interrupt frame saves RFLAGS and IRET restores it. After a compare
    on symbolic values (Xen's canonical check of the guest's return RIP), an #MC before
    the `ja` must save flags with real ZF/CF bits: the model decides them at delivery
    (one successor per outcome) instead of keeping them as a record the handler's own
    arithmetic would overwrite."""
    system = DesignProvider().load(
        "xen_syscall", {"sysret_check": "checked"},
        {"mce": 1, "symbolic": ["guest_rsp", "guest_rip"]},
    )
    state = system.init_states()[0]
    while True:
        ins = system.interp.instr_at(state.machine.cpus[0].pc)
        if ins is not None and (ins.op, ins.cc) == ("jcc", "a"):
            break
        steps = [a for a in system.actions(state) if a.kind == "step"]
        state = system.next_state(state, steps[0])
    assert state.lazy and state.lazy[0] is not None, "the compare was symbolic"
    mces = [a for a in system.actions(state) if a.kind == "mce"]
    assert len(mces) >= 2, "the #MC splits on the flags' possible values"
    for a in mces:
        after = system.next_state(state, a)
        assert not after.lazy and isinstance(after.machine.cpus[0].rflags, int)
        frame = after.machine.frames[-1]
        assert frame.vector == 18
        from model.x86.memory import read

        saved_flags = read(after.machine, frame.lo + 16)  # RIP, CS, then RFLAGS
        assert isinstance(saved_flags, int), "the frame holds real flag bits"


def test_names_in_order_is_depth_first_first_appearance() -> None:
    """canonical() numbers symbols in order of first appearance, depth first and left to
    right; the memoised walk must give that order however often parts are shared."""
    a, b, c = S.var("a"), S.var("b"), S.var("c")
    shared = (1, S.add(b, 4), (a, 2))
    value = ((shared, c), shared, (a, (c, 5)))
    assert S.names_in_order(value) == ("b", "a", "c")
    assert S.names_in_order(shared) == ("b", "a")
    assert S.names_in_order((1, 2, (3, 4))) == ()
    assert S.symbols(value) == {"a", "b", "c"}


def test_rename_shares_parts_without_renamed_symbols() -> None:
    a, b = S.var("a"), S.var("b")
    concrete = (1, 2, (3, 4))
    mixed = (concrete, (a, b))
    out = S.rename(mixed, {"a": "z"})
    assert out == (concrete, (S.var("z"), b))
    assert out[0] is concrete  # untouched parts are not copied
    assert S.rename(mixed, {"a": "a"}) is mixed
    assert S.substitute_all(mixed, {"b": 7}) == (concrete, (a, 7))
    assert S.substitute_all(mixed, {"q": 7}) is mixed


def test_terms_are_hash_consed() -> None:
    """Issue 18 item 1: building an equal term gives the same object (so equality and
    hashing are by identity), which carries its symbols' names; unpickling goes through the
    same table; a term no longer used leaves the table; and True is not 1 (z3 gives them
    different sorts)."""
    import gc
    import pickle

    x, y = S.var("x"), S.var("y")
    t = S.add(S.band(x, 0xFF), y)
    assert S.add(S.band(S.var("x"), 0xFF), S.var("y")) is t
    assert t.names == ("x", "y") and S.names_in_order((1, (t, x))) == ("x", "y")
    assert pickle.loads(pickle.dumps(t)) is t
    assert {t: 1}[S.add(S.band(S.var("x"), 0xFF), S.var("y"))] == 1
    gc.collect()
    size = len(S._TERMS)
    recent = S._RECENT.maxlen or 0
    for k in range(recent + 1000):
        S.add(S.var(f"gone{k}"), 8)  # dropped (once out of the recent ones)
    assert len(S._TERMS) <= size + 2 * recent + 4
    c = S.eq(x, 1)
    assert S.ite(c, True, False) != S.ite(c, 1, 0)
    assert S.to_z3(S.ite(c, True, False)).sort() != S.to_z3(S.ite(c, 1, 0)).sort()
    assert t != ("add", t.args) and repr(t) == "add(and(x, 0xff), y)"


def test_fingerprint_of_a_term_is_its_structure() -> None:
    """--compact fingerprints encode a term by operator and arguments, as when a term was a
    NamedTuple: two different terms never share an encoding."""
    from checker.fingerprint import encode_state

    x = S.var("x")
    assert encode_state(S.add(x, 8)) == b"n4:Term2(s3:addt2(n4:Term2(s3:vart1(s1:xi8;"
    assert encode_state(S.add(x, 8)) != encode_state(S.add(x, 16))


def test_successor_without_new_symbols_is_its_own_canonical_form() -> None:
    """The fast paths of TransitionRelation.run (no symbol made; no condition taken, or
    conditions taken and every symbol still there) give exactly what canonical() gives,
    on every state of a symbolic exploration."""
    from model.system.relation import canonical

    system = DesignProvider().load(
        "xen_syscall", {"sysret_check": "checked"},
        {"mce": 1, "symbolic": ["guest_rsp", "guest_rip"]},
    )
    rel = system.relation
    fast = 0
    seen = set()
    todo = deque(system.init_states())
    while todo and len(seen) < 600:
        s = todo.popleft()
        if s in seen:
            continue
        seen.add(s)
        for a in system.actions(s):
            succ = system.next_state(s, a)
            if rel._hints.get(id(succ), (None,))[0] is succ and succ.symbolic:
                # what run() did before it had a fast path
                raw, d = S.run_with(a.decisions, rel.raw_next, s, a)
                taken = tuple(dict.fromkeys(
                    c for c in d.taken if isinstance(c, S.Term) and c not in s.path
                ))
                raw = raw._replace(path=s.path + taken)
                if taken:
                    raw = rel._pin(raw, taken)
                fast += 1
                assert canonical(raw) == succ
            todo.append(succ)
    assert fast > 50
