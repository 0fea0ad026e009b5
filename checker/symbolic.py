"""Symbolic 64-bit values, path conditions and the z3 service.

A value is either a Python int (a concrete 64-bit bit-vector) or a `Term`: a small,
hashable expression tree over named symbols. The constructors fold constants and normalise
offsets (`(x + 8) + 8` is `x + 16`), so equal values usually have equal terms and states
that differ only in how a value was computed fingerprint the same.

Conditions (bool-valued terms) meet the model through `decide(cond)`: concrete conditions
answer at once; a symbolic one is answered from the decisions the explorer fixed for this
transition, recording the condition with the polarity taken so the successor state carries
it in its path condition. A transition whose values are all concrete never reaches z3.
"""

from __future__ import annotations

import contextvars
import importlib
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import TYPE_CHECKING, Any
from weakref import KeyedRef

from checker import limits


class _LazyModule:
    """A module imported on first use: z3 takes a third of the start-up CPU, and a run
    whose states are all concrete never asks it anything (issue 18, lazy imports)."""

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        module = importlib.import_module(self._name)
        globals()[self._name] = module  # later look-ups find the module itself
        return getattr(module, attr)


if TYPE_CHECKING:
    import z3
else:
    z3 = _LazyModule("z3")

MASK = (1 << 64) - 1
SIGN = 1 << 63


class Term:
    """A symbolic expression. Bit-vector ops: var, add, and, or, xor, shl, lshr, ashr, not,
    mul, ite. Boolean ops: eq, ult, ule, slt, sle, bnot, band, bor.

    Terms are hash-consed: at most one term is alive for each operator, arguments and
    argument types (building an equal term returns the one that exists; unpickling goes
    through the same table), so equality and hashing are by identity, at C speed. A term
    carries, computed once when it is made, the names of the symbols it mentions in order
    of first appearance (`names`), and once asked for, its text. `True` and `1` are
    different arguments (a Bool and a bit-vector to z3)."""

    __slots__ = ("__weakref__", "_text", "args", "names", "op")

    op: str
    args: tuple[Any, ...]
    names: tuple[str, ...]  # symbols in order of first appearance, depth first
    _text: str | None  # repr, once asked for

    def __new__(cls, op: str, args: tuple[Any, ...]) -> Term:
        key = (op, args, tuple(map(type, args)))
        ref = _TERMS.get(key)
        if ref is not None:
            alive: Term | None = ref()
            if alive is not None:
                return alive
        t = object.__new__(cls)
        if op == "var":
            names: tuple[str, ...] = (args[0],)
        else:
            names = ()
            for a in args:
                if type(a) is Term and a.names:
                    names = a.names if not names else _union(names, a.names)
        _set(t, "op", op)
        _set(t, "args", args)
        _set(t, "names", names)
        _set(t, "_text", None)
        _TERMS[key] = KeyedRef(t, _forget, key)
        _RECENT.append(t)
        return t

    def __reduce__(self) -> tuple[Any, ...]:
        return (Term, (self.op, self.args))  # unpickled through the table

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"a Term is immutable (cannot set {name!r})")

    def __repr__(self) -> str:
        text = self._text
        if text is None:
            if self.op == "var":
                text = str(self.args[0])
            else:
                text = f"{self.op}({', '.join(_show(a) for a in self.args)})"
            _set(self, "_text", text)
        return text


_set = object.__setattr__  # how Term fills in its (otherwise immutable) slots

# The hash-consing table: (op, args, argument types) -> a weak reference to the one live
# term. An entry goes when its term does (no term outlives every state and step that holds
# it), so the table holds only what is alive.
_TERMS: dict[tuple[Any, ...], KeyedRef[tuple[Any, ...], Term]] = {}


# The terms made last are kept alive a while: a step builds the same conditions for every
# state it runs in (a gate lookup compares the vector with each vector in turn), and would
# otherwise make and drop them each time.
_RECENT: deque[Term] = deque(maxlen=1 << 14)


def _forget(ref: KeyedRef[tuple[Any, ...], Term]) -> None:
    table = _TERMS
    if table is not None and table.get(ref.key) is ref:
        del table[ref.key]


def _union(first: tuple[str, ...], more: tuple[str, ...]) -> tuple[str, ...]:
    """`first` followed by the names of `more` it does not have (order kept)."""
    if more is first or more == first:
        return first
    return first + tuple(n for n in more if n not in first)


# A 64-bit value: concrete or symbolic. Conditions are bool or a boolean Term.
BV = int | Term
Cond = bool | Term

BOOL_OPS = frozenset({"eq", "ult", "ule", "slt", "sle", "bnot", "band", "bor"})


def _show(a: Any) -> str:
    return f"{a:#x}" if isinstance(a, int) and not isinstance(a, bool) else repr(a)


def is_symbolic(value: object) -> bool:
    return isinstance(value, Term)


def var(name: str) -> Term:
    global VARS_MADE
    VARS_MADE += 1
    return Term("var", (name,))


# How many times var() was called: a step during which it did not change mentions no symbol
# its state did not (every other term is built from the state's own values).
VARS_MADE = 0


# -- bit-vector constructors (fold constants, normalise x + c) -----------------------------


def add(a: BV, b: BV) -> BV:
    if isinstance(a, int) and isinstance(b, int):
        return (a + b) & MASK
    if isinstance(a, int):
        a, b = b, a
    assert isinstance(a, Term)
    if isinstance(b, int):
        if b & MASK == 0:
            return a
        if a.op == "add" and isinstance(a.args[1], int):
            return add(a.args[0], (a.args[1] + b) & MASK)
        return Term("add", (a, b & MASK))
    return Term("add", tuple(sorted((a, b), key=repr)))


def sub(a: BV, b: BV) -> BV:
    if isinstance(b, int):
        return add(a, (-b) & MASK)
    return add(a, mul(b, MASK))  # a + (-1 * b)


def mul(a: BV, b: BV) -> BV:
    if isinstance(a, int) and isinstance(b, int):
        return (a * b) & MASK
    if isinstance(a, int):
        a, b = b, a
    if isinstance(b, int) and b == 1:
        return a
    return Term("mul", (a, b))


def _bitwise(op: str, a: BV, b: BV) -> BV:
    if isinstance(a, int) and isinstance(b, int):
        if op == "and":
            return a & b
        if op == "or":
            return a | b
        return a ^ b
    if isinstance(a, int):
        a, b = b, a
    if isinstance(b, int):
        if op == "and" and b == MASK:
            return a
        if op == "and" and b == 0:
            return 0
        if op in ("or", "xor") and b == 0:
            return a
    return Term(op, (a, b))


def band(a: BV, b: BV) -> BV:
    return _bitwise("and", a, b)


def bor(a: BV, b: BV) -> BV:
    return _bitwise("or", a, b)


def bxor(a: BV, b: BV) -> BV:
    return _bitwise("xor", a, b)


def bnot(a: BV) -> BV:
    return (~a) & MASK if isinstance(a, int) else Term("not", (a,))


def neg(a: BV) -> BV:
    return sub(0, a)


def shl(a: BV, n: BV) -> BV:
    if isinstance(a, int) and isinstance(n, int):
        return (a << n) & MASK if n < 64 else 0
    if isinstance(n, int) and n == 0:
        return a
    return Term("shl", (a, n))


def lshr(a: BV, n: BV) -> BV:
    if isinstance(a, int) and isinstance(n, int):
        return a >> n if n < 64 else 0
    if isinstance(n, int) and n == 0:
        return a
    return Term("lshr", (a, n))


def ashr(a: BV, n: BV) -> BV:
    if isinstance(a, int) and isinstance(n, int):
        signed = a - (1 << 64) if a & SIGN else a
        return (signed >> min(n, 63)) & MASK
    if isinstance(n, int) and n == 0:
        return a
    return Term("ashr", (a, n))


def truncate(a: BV, width: int) -> BV:
    """The low `width` bits, zero-extended (a 32-bit register write)."""
    return band(a, (1 << width) - 1) if width < 64 else a


def sign_extend(a: BV, width: int) -> BV:
    """Sign-extend the low `width` bits to 64 (for signed comparisons of narrow values)."""
    if width >= 64:
        return a
    shift = 64 - width
    return ashr(shl(a, shift), shift)


# -- conditions ---------------------------------------------------------------------------------


def _base_offset(a: BV) -> tuple[BV, int]:
    """`x + c` as (x, c); anything else as (a, 0)."""
    if isinstance(a, Term) and a.op == "add" and isinstance(a.args[1], int):
        return a.args[0], a.args[1]
    return a, 0


def eq(a: BV, b: BV) -> Cond:
    if isinstance(a, int) and isinstance(b, int):
        return a == b
    if a == b:
        return True
    (x, c), (y, d) = _base_offset(a), _base_offset(b)
    if x == y:
        return c == d  # x + c == x + d exactly when c == d (mod 2^64)
    return Term("eq", tuple(sorted((a, b), key=repr)))


def ne(a: BV, b: BV) -> Cond:
    return lnot(eq(a, b))


def ult(a: BV, b: BV) -> Cond:
    if isinstance(a, int) and isinstance(b, int):
        return a < b
    if a in (b, MASK) or b == 0:
        return False
    return Term("ult", (a, b))


def ule(a: BV, b: BV) -> Cond:
    if isinstance(a, int) and isinstance(b, int):
        return a <= b
    if a == b or a == 0 or b == MASK:
        return True
    return Term("ule", (a, b))


def slt(a: BV, b: BV) -> Cond:
    if isinstance(a, int) and isinstance(b, int):
        return _signed(a) < _signed(b)
    return Term("slt", (a, b))


def sle(a: BV, b: BV) -> Cond:
    if isinstance(a, int) and isinstance(b, int):
        return _signed(a) <= _signed(b)
    return Term("sle", (a, b))


def _signed(a: int) -> int:
    return a - (1 << 64) if a & SIGN else a


def lnot(c: Cond) -> Cond:
    if isinstance(c, bool):
        return not c
    if c.op == "bnot":
        return c.args[0]  # type: ignore[no-any-return]
    return Term("bnot", (c,))


def land(*cs: Cond) -> Cond:
    out: list[Term] = []
    for c in cs:
        if c is False:
            return False
        if c is True:
            continue
        assert isinstance(c, Term)
        out.append(c)
    if not out:
        return True
    return out[0] if len(out) == 1 else Term("band", tuple(out))


def lor(*cs: Cond) -> Cond:
    out: list[Term] = []
    for c in cs:
        if c is True:
            return True
        if c is False:
            continue
        assert isinstance(c, Term)
        out.append(c)
    if not out:
        return False
    return out[0] if len(out) == 1 else Term("bor", tuple(out))


def ite(c: Cond, a: BV, b: BV) -> BV:
    """If-then-else on values: how a condition becomes a number (C's `x = a < b`)."""
    if isinstance(c, bool):
        return a if c else b
    if a == b:
        return a
    return Term("ite", (c, a, b))


def truth(value: BV | Cond) -> Cond:
    """A value used as a condition: non-zero. `ite(c, 1, 0)` is just `c`."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value != 0
    if value.op in BOOL_OPS:
        return value
    if value.op == "ite" and value.args[1] == 1 and value.args[2] == 0:
        return value.args[0]  # type: ignore[no-any-return]
    return lnot(eq(value, 0))


def in_range(a: BV, lo: int, hi: int) -> Cond:
    """lo <= a < hi, unsigned."""
    return land(ule(lo, a), ult(a, hi))


# -- structure ------------------------------------------------------------------------------------


def symbols(value: object) -> set[str]:
    """Names of the symbols a value (or nested tuples of values) mentions."""
    return set(names_in_order(value))


# Successive states share most of their components (a step rebuilds only the path from the
# changed leaf to the root), so the names under each tuple are remembered per object: a
# state's symbols cost a few dictionary look-ups instead of a walk over every register,
# memory word and frame. A term knows its own names (Term.names). Each entry keeps its
# tuple alive, so an id is never reused while its entry exists. When the table is full its
# oldest quarter is dropped (first in, first out): a breadth-first explorer expands a state
# about one level after it made it, so the parts a successor shares with the state it came
# from are still there, where emptying the whole table made every part of the next states
# walked again.
_NAMES: dict[int, tuple[object, tuple[str, ...]]] = {}
_NAMES_LIMIT = 1 << 18


def names_in_order(value: object) -> tuple[str, ...]:
    """Symbol names in order of first appearance, depth first and left to right (the
    order canonical renaming numbers them in)."""
    if type(value) is Term:
        return value.names
    if not isinstance(value, tuple):
        return ()
    hit = _NAMES.get(id(value))
    if hit is not None and hit[0] is value:
        return hit[1]
    return _walk(value)


def names_of(*values: object) -> tuple[str, ...]:
    """names_in_order of the tuple of `values`, without remembering that tuple (a state's
    parts, assembled only to be asked)."""
    return _merge(values)


def _walk(value: tuple[Any, ...]) -> tuple[str, ...]:
    names = _merge(value)
    if len(_NAMES) >= _NAMES_LIMIT:
        for key in list(islice(_NAMES, _NAMES_LIMIT // 4)):
            del _NAMES[key]
    _NAMES[id(value)] = (value, names)
    return names


def _merge(items: tuple[Any, ...]) -> tuple[str, ...]:
    out: tuple[str, ...] = ()
    get = _NAMES.get
    for a in items:
        if type(a) is Term:
            sub = a.names
        elif isinstance(a, tuple):
            hit = get(id(a))  # inlined: most children are shared with the parent state
            sub = hit[1] if hit is not None and hit[0] is a else _walk(a)
        else:
            continue
        if sub:
            out = sub if not out else _union(out, sub)
    return out


def rename(value: Any, mapping: Mapping[str, str]) -> Any:
    """Rename symbols inside a value or nested tuples (NamedTuples keep their type); a
    part that mentions no renamed symbol is returned as it is (shared, not copied)."""
    if type(value) is Term:
        if not any(n in mapping and mapping[n] != n for n in value.names):
            return value
        if value.op == "var":
            return var(mapping[value.args[0]])
        return Term(value.op, tuple(rename(a, mapping) for a in value.args))
    if not isinstance(value, tuple):
        return value
    names = names_in_order(value)
    if not names or all(mapping.get(n, n) == n for n in names):
        return value
    items = [rename(a, mapping) for a in value]
    if type(value) is not tuple:  # a NamedTuple keeps its type
        return type(value)(*items)
    return tuple(items)


def substitute_all(value: Any, values: Mapping[str, int]) -> Any:
    """`substitute` through nested tuples (NamedTuples keep their type): a whole state.
    A part that mentions none of the substituted symbols is returned as it is."""
    if type(value) is Term:
        return substitute(value, values) if any(n in values for n in value.names) else value
    if not isinstance(value, tuple):
        return value
    names = names_in_order(value)
    if not names or not any(n in values for n in names):
        return value
    items = [substitute_all(a, values) for a in value]
    if type(value) is not tuple:  # a NamedTuple keeps its type
        return type(value)(*items)
    return tuple(items)


def pinned(conds: Iterable[Any]) -> dict[str, int]:
    """Symbols a path condition fixes to one value outright (`x == 7`)."""
    out: dict[str, int] = {}
    for c in conds:
        if isinstance(c, Term) and c.op == "eq":
            a, b = c.args
            if isinstance(a, int):
                a, b = b, a
            if isinstance(a, Term) and a.op == "var" and isinstance(b, int):
                out[a.args[0]] = b
    return out


def substitute(value: Any, values: Mapping[str, int]) -> Any:
    """Replace symbols by concrete values and fold: the concrete replay of a witness."""
    if isinstance(value, Term):
        if value.op == "var":
            name = value.args[0]
            return values.get(name, value)
        args = [substitute(a, values) for a in value.args]
        return _rebuild(value.op, args)
    return value


_REBUILD = {
    "add": lambda a: add(a[0], a[1]), "mul": lambda a: mul(a[0], a[1]),
    "and": lambda a: band(a[0], a[1]), "or": lambda a: bor(a[0], a[1]),
    "xor": lambda a: bxor(a[0], a[1]), "not": lambda a: bnot(a[0]),
    "shl": lambda a: shl(a[0], a[1]), "lshr": lambda a: lshr(a[0], a[1]),
    "ashr": lambda a: ashr(a[0], a[1]), "eq": lambda a: eq(a[0], a[1]),
    "ult": lambda a: ult(a[0], a[1]), "ule": lambda a: ule(a[0], a[1]),
    "slt": lambda a: slt(a[0], a[1]), "sle": lambda a: sle(a[0], a[1]),
    "bnot": lambda a: lnot(a[0]), "band": lambda a: land(*a), "bor": lambda a: lor(*a),
    "ite": lambda a: ite(a[0], a[1], a[2]),
}


def _rebuild(op: str, args: list[Any]) -> Any:
    return _REBUILD[op](args)


# -- z3 ------------------------------------------------------------------------------------------


def to_z3(value: Any, cache: dict[Any, Any] | None = None) -> Any:
    """The z3 expression of a term (BitVec 64 or Bool)."""
    if cache is not None and value in cache:
        return cache[value]
    if isinstance(value, bool):
        result: Any = z3.BoolVal(value)
    elif isinstance(value, int):
        result = z3.BitVecVal(value & MASK, 64)
    else:
        op, args = value.op, value.args
        if op == "var":
            result = z3.BitVec(args[0], 64)
        else:
            zs = [to_z3(a, cache) for a in args]
            result = _Z3_OPS[op](zs)
    if cache is not None:
        cache[value] = result
    return result


_Z3_OPS = {
    "add": lambda z: z[0] + z[1], "mul": lambda z: z[0] * z[1],
    "and": lambda z: z[0] & z[1], "or": lambda z: z[0] | z[1], "xor": lambda z: z[0] ^ z[1],
    "not": lambda z: ~z[0], "shl": lambda z: z[0] << z[1],
    "lshr": lambda z: z3.LShR(z[0], z[1]), "ashr": lambda z: z[0] >> z[1],
    "eq": lambda z: z[0] == z[1], "ult": lambda z: z3.ULT(z[0], z[1]),
    "ule": lambda z: z3.ULE(z[0], z[1]), "slt": lambda z: z[0] < z[1],
    "sle": lambda z: z[0] <= z[1], "bnot": lambda z: z3.Not(z[0]),
    "band": lambda z: z3.And(*z), "bor": lambda z: z3.Or(*z),
    "ite": lambda z: z3.If(z[0], z[1], z[2]),
}


@dataclass
class SolverStats:
    queries: int = 0  # satisfiability questions asked of the service
    cache_hits: int = 0  # answered from the cache, without z3
    z3_calls: int = 0  # questions z3 answered
    seconds: float = 0.0  # time inside z3

    def as_dict(self) -> dict[str, float | int]:
        return {
            "z3_queries": self.queries,
            "z3_cache_hits": self.cache_hits,
            "z3_calls": self.z3_calls,
            "z3_seconds": round(self.seconds, 4),
        }


@dataclass
class Solver:
    """Satisfiability of conjunctions of conditions, cached by condition set. The path
    condition is kept incrementally: each distinct condition is translated and asserted
    once, guarded by a literal of its own (`lit -> cond`), and a question assumes the
    literals of its conditions (z3's check under assumptions) instead of asserting them
    all again. Every question has a time budget; an `unknown` answer raises
    `checker.limits.ResourceLimit` (never a guess). `model` (witnesses) asks a solver of
    its own with the conditions asserted, as before."""

    stats: SolverStats = field(default_factory=SolverStats)
    _cache: dict[frozenset[Any], bool] = field(default_factory=dict)
    _z3: dict[Any, Any] = field(default_factory=dict)
    _model_solver: Any = None  # for model(): push, assert, pop (made on first use)
    _timeout_ms: int = 0  # the solver's timeout as last set
    # The incremental solver: one guard literal per condition, asserted once.
    _guarded_solver: Any = None
    _lits: dict[Any, Any] = field(default_factory=dict)
    _guarded_timeout_ms: int = 0
    _pins: dict[tuple[frozenset[Any], str], int | None] = field(default_factory=dict)

    @property
    def _solver(self) -> Any:
        if self._model_solver is None:
            self._model_solver = z3.SimpleSolver()
        return self._model_solver

    @property
    def _guarded(self) -> Any:
        if self._guarded_solver is None:
            self._guarded_solver = z3.SimpleSolver()
        return self._guarded_solver

    def _lit(self, cond: Term) -> Any:
        lit = self._lits.get(cond)
        if lit is None:
            lit = z3.Bool(f"!path{len(self._lits)}")  # (no input can be named so)
            self._guarded.add(z3.Implies(lit, to_z3(cond, self._z3)))
            self._lits[cond] = lit
        return lit

    def satisfiable(self, conds: Iterable[Cond]) -> bool:
        terms = []
        for c in conds:
            if c is False:
                return False
            if c is not True:
                terms.append(c)
        if not terms:
            return True
        self.stats.queries += 1
        key = frozenset(terms)
        hit = self._cache.get(key)
        if hit is not None:
            self.stats.cache_hits += 1
            return hit
        started = time.perf_counter()
        try:
            lits = [self._lit(t) for t in key]
            result = bool(self._check_assuming(lits) == z3.sat)
        finally:
            self.stats.z3_calls += 1
            self.stats.seconds += time.perf_counter() - started
        self._cache[key] = result
        return result

    def pinned_value(self, conds: Iterable[Term], name: str) -> int | None:
        """The one value the conditions leave symbol `name`, or None when they leave it
        more than one (or none)."""
        key = (frozenset(conds), name)
        if key in self._pins:
            return self._pins[key]
        started = time.perf_counter()
        try:
            self.stats.z3_calls += 1
            lits = [self._lit(t) for t in key[0]]
            if self._check_assuming(lits) != z3.sat:
                value = None
            else:
                x = z3.BitVec(name, 64)
                value = self._guarded.model().eval(x, model_completion=True).as_long()
        finally:
            self.stats.seconds += time.perf_counter() - started
        if value is not None and self.satisfiable((*key[0], ne(var(name), value))):
            value = None
        self._pins[key] = value
        return value

    def _check_assuming(self, lits: list[Any]) -> Any:
        """`check(*lits)` on the incremental solver within the query budget (as _check)."""
        self._guarded_timeout_ms, answer = _check_within_budget(
            self._guarded, self._guarded_timeout_ms, lits,
        )
        return answer

    def _check(self) -> Any:
        """`check()` within the query budget (`checker.limits.query_seconds`): sat or
        unsat; `unknown` (a timeout, or z3 gave up) raises `limits.ResourceLimit`, so that
        the property is incomplete rather than decided on a guess."""
        self._timeout_ms, answer = _check_within_budget(self._solver, self._timeout_ms, [])
        return answer

    def model(self, conds: Iterable[Cond], names: Iterable[str]) -> dict[str, int] | None:
        """Concrete values for `names` satisfying every condition, or None."""
        started = time.perf_counter()
        s = self._solver
        s.push()
        try:
            for c in conds:
                s.add(to_z3(c, self._z3))
            self.stats.z3_calls += 1
            if self._check() != z3.sat:
                return None
            m = s.model()
            return {
                n: m.eval(z3.BitVec(n, 64), model_completion=True).as_long() for n in sorted(names)
            }
        finally:
            s.pop()
            self.stats.seconds += time.perf_counter() - started


# -- decisions during one transition ------------------------------------------------------------


class Infeasible(Exception):
    """This transition cannot happen on the outcomes decided so far (e.g. an interrupt
    offered while RFLAGS.IF is symbolic, on the branch where IF turned out clear)."""


def require(cond: Cond) -> None:
    if not decide(cond):
        raise Infeasible()


def binary(op: str, a: BV, b: BV) -> BV:
    """The design language's binary operators on possibly symbolic values (unsigned)."""
    if op == "+":
        return add(a, b)
    if op == "-":
        return sub(a, b)
    if op == "*":
        return mul(a, b)
    if op == "&":
        return band(a, b)
    if op == "|":
        return bor(a, b)
    if op == "^":
        return bxor(a, b)
    if op == "<<":
        return shl(a, b)
    if op == ">>":
        return lshr(a, b)
    cond: Cond
    if op == "==":
        cond = eq(a, b)
    elif op == "!=":
        cond = ne(a, b)
    elif op == "<":
        cond = ult(a, b)
    elif op == "<=":
        cond = ule(a, b)
    elif op == ">":
        cond = ult(b, a)
    elif op == ">=":
        cond = ule(b, a)
    elif op == "&&":
        cond = land(truth(a), truth(b))
    elif op == "||":
        cond = lor(truth(a), truth(b))
    else:
        raise ValueError(f"operator {op} is not supported on symbolic values")
    return ite(cond, 1, 0)


class NeedDecision(Exception):
    """A symbolic condition came up for which the transition fixed no outcome yet."""

    def __init__(self, cond: Term, taken: Sequence[Cond] | None = None):
        super().__init__(repr(cond))
        self.cond = cond
        # The conditions the transition took before it (Decisions.taken), when known.
        self.taken = taken


class Decisions:
    """The outcomes of the symbolic conditions met during one transition, in order, and
    apart from them the outcomes of its oracles (`oracle`): a replay with concrete
    values, which meets no symbolic condition, still meets the same oracles."""

    def __init__(self, choices: Sequence[bool], oracles: Sequence[bool] = ()):
        self.choices = choices
        self.index = 0
        self.taken: list[Cond] = []  # each condition with the polarity taken
        self.oracles = oracles
        self.oracle_index = 0

    def next_oracle(self, cond: Term) -> bool:
        if self.oracle_index >= len(self.oracles):
            raise NeedDecision(cond)
        outcome = self.oracles[self.oracle_index]
        self.oracle_index += 1
        return outcome

    def next(self, cond: Term) -> bool:
        if self.index >= len(self.choices):
            raise NeedDecision(cond, self.taken)
        outcome = self.choices[self.index]
        self.index += 1
        self.taken.append(cond if outcome else lnot(cond))
        return outcome


_current: contextvars.ContextVar[Decisions | None] = contextvars.ContextVar(
    "decisions", default=None
)


class SymbolicDecisionError(Exception):
    """A symbolic condition was decided outside a transition that can record it."""


def decide(cond: Cond) -> bool:
    """The outcome of a condition on possibly symbolic values in this transition."""
    if isinstance(cond, bool):
        return cond
    d = _current.get()
    if d is None:
        raise SymbolicDecisionError(f"undecided symbolic condition {cond!r}")
    return d.next(cond)


ORACLE = "oracle"


def is_oracle(cond: object) -> bool:
    """The condition a `NeedDecision` carries for an oracle."""
    return isinstance(cond, Term) and cond.op == ORACLE


def oracle(label: str) -> bool:
    """An outcome the model leaves open that depends on no value (a rule the sources do
    not settle): always feasible both ways and never part of the path condition; the
    explorer offers one action per outcome (its `oracles`, apart from its decisions)."""
    d = _current.get()
    cond = Term(ORACLE, (label,))
    if d is None:
        raise SymbolicDecisionError(f"undecided {cond!r}")
    return d.next_oracle(cond)


def assume(cond: Cond) -> None:
    """A condition a step adds to the path condition without a choice (an input's
    declared range): recorded with the transition's decisions, when it has any, so that
    the successor's path condition and the feasibility of later decisions in the same
    step both include it."""
    d = _current.get()
    if d is not None and isinstance(cond, Term):
        d.taken.append(cond)


def run_with(
    choices: Sequence[bool], fn: Any, *args: Any, oracles: Sequence[bool] = ()
) -> tuple[Any, Decisions]:
    """Run `fn(*args)` with these decision (and oracle) outcomes; returns its result and
    the record."""
    d = Decisions(choices, oracles)
    token = _current.set(d)
    try:
        return fn(*args), d
    finally:
        _current.reset(token)


def _check_within_budget(solver: Any, timeout_ms: int, lits: list[Any]) -> tuple[int, Any]:
    """`solver.check(*lits)` within the query budget (`checker.limits.query_seconds`);
    `timeout_ms` is the solver's timeout as last set, returned with the answer as it is
    now. An `unknown` (a timeout, or z3 gave up) raises, so that the property is
    incomplete rather than decided on a guess."""
    limits.check_time("before a z3 query")
    budget = limits.query_seconds()
    # Whole seconds while more than two are left: the setting (14 us) changes once a
    # second rather than at every query.
    millis = int(budget) * 1000 if budget >= 2 else max(1, int(budget * 1000))
    if millis != timeout_ms:
        solver.set("timeout", millis)
    answer = solver.check(*lits)
    if answer == z3.unknown:
        reason = solver.reason_unknown()
        if budget < limits.Z3_QUERY_SECONDS:  # the deadline set the budget
            raise limits.timed_out(f"in a z3 query ({reason})")
        raise limits.ResourceLimit(
            f"z3 could not decide a path condition within {millis / 1000:g}s ({reason})"
        )
    return millis, answer
