"""Property expressions: a small, safe language.

An expression is parsed with Python's `ast` (mode "eval") and checked against a strict
whitelist, then compiled once into a tree of closures that evaluate it against the
vocabulary of a state. Nothing a property file contains is ever executed as Python: there
is no eval/exec/compile of user text, `a.b` is an item lookup `a["b"]` (never getattr),
and only a fixed set of functions plus callables the model's vocabulary provides can be
called.

Closures take `(loc, env)`: `loc` maps the names bound by generator expressions, `env` is
the vocabulary of the state. Which of the two a name reads is decided at compile time.
"""

from __future__ import annotations

import ast
import difflib
import functools
import inspect
import io
import operator
import tokenize
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from checker import limits
from checker import symbolic as sym
from checker.errors import CheckerError
from checker.symbolic import Term

Env = Mapping[str, Any]
Locals = Mapping[str, Any]  # the comprehension variables bound around a sub-expression
Fn = Callable[[Locals, Env], Any]

# Evaluation budget (docs/properties.md#limits): an expression is refused (the verdict is
# `error`) rather than left to exhaust time or memory.
MAX_SHIFT = 4096  # shift counts beyond this would build enormous integers
MAX_SEQUENCE = 1 << 16  # characters or elements a string/tuple/list built by * or + may have
MAX_INT_BITS = 1 << 16  # bits of an integer a product may have
MAX_ITEMS = 1 << 18  # items the generators of one evaluation may produce, nested ones too
_TIME_EVERY = 1 << 12  # items between looks at the --timeout deadline


class ExprError(CheckerError):
    """An expression that is malformed, uses a construct outside the language, or a name
    the vocabulary does not provide. `line`/`col` are 1-based, within the expression."""

    def __init__(self, message: str, line: int = 1, col: int = 1):
        super().__init__(message)
        self.message = message
        self.line = line
        self.col = col

    def where(self, source: str) -> str:
        if "\n" in source:
            return f"expression line {self.line}, column {self.col}"
        return f"column {self.col}"


class EvalError(CheckerError):
    """An expression failed on a particular state (missing field, bad operand types...)."""


# -- symbolic values ------------------------------------------------------------------------
# A vocabulary value may be a symbolic term (checker.symbolic.Term) when the model explores
# guest-controlled inputs symbolically. Operators on terms build terms; a property whose
# value is a term is decided by the explorer with z3 against the state's path condition.


def _truth(value: Any) -> Any:
    """A value as a condition: a Python bool, or a boolean term."""
    if isinstance(value, Term):
        return sym.truth(value)
    return bool(value)


def _as_bv(value: Any) -> Any:
    if isinstance(value, Term) and value.op in sym.BOOL_OPS:
        return sym.ite(value, 1, 0)
    if isinstance(value, bool):
        return int(value)
    return value


def _symbolic(name: str, fn: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """`fn` on concrete operands; the symbolic constructor when either is a term."""
    builders: Mapping[str, Callable[[Any, Any], Any]] = {
        "add": sym.add, "sub": sym.sub, "mul": sym.mul, "and": sym.band, "or": sym.bor,
        "xor": sym.bxor, "lshift": sym.shl, "rshift": sym.lshr,
        "eq": sym.eq, "ne": sym.ne, "lt": sym.ult, "le": sym.ule,
        "gt": lambda a, b: sym.ult(b, a), "ge": lambda a, b: sym.ule(b, a),
    }
    build = builders.get(name)

    def apply(a: Any, b: Any) -> Any:
        if isinstance(a, Term) or isinstance(b, Term):
            if build is None:
                raise EvalError(f"'{name}' is not supported on symbolic values")
            if not all(isinstance(x, int | Term) for x in (a, b)):
                raise EvalError(f"'{name}' of a symbolic value and a {type(b).__name__}")
            return build(_as_bv(a), _as_bv(b))
        return fn(a, b)

    return apply


def _any(items: Iterable[Any]) -> Any:
    terms = []
    for item in items:
        if isinstance(item, Term):
            terms.append(sym.truth(item))
        elif item:
            return True
    return sym.lor(*terms) if terms else False


def _all(items: Iterable[Any]) -> Any:
    terms = []
    for item in items:
        if isinstance(item, Term):
            terms.append(sym.truth(item))
        elif not item:
            return False
    return sym.land(*terms) if terms else True


def _count(items: Iterable[Any]) -> Any:
    """Number of truthy items: `count(c.halted for c in cpus)`."""
    total: Any = 0
    for item in items:
        if isinstance(item, Term):
            total = sym.add(total, sym.ite(sym.truth(item), 1, 0))
        elif item:
            total = total + 1 if isinstance(total, int) else sym.add(total, 1)
    return total


def _sum(items: Iterable[Any]) -> Any:
    total: Any = 0
    for item in items:
        total = sym.add(total, _as_bv(item)) if isinstance(item, Term) or isinstance(
            total, Term) else total + item
    return total


BUILTINS: Mapping[str, Callable[..., Any]] = {
    "any": _any,
    "all": _all,
    "len": len,
    "min": min,
    "max": max,
    "sum": _sum,
    "count": _count,
}


def _lshift(a: Any, b: Any) -> Any:
    if isinstance(b, int) and b > MAX_SHIFT:
        raise EvalError(f"shift count {b} is larger than {MAX_SHIFT}")
    return a << b


_SEQUENCES = (str, list, tuple)


def _mul(a: Any, b: Any) -> Any:
    # `"x" * 10**12` would exhaust memory: what a product builds is capped.
    if isinstance(b, _SEQUENCES) and isinstance(a, int):
        a, b = b, a
    if isinstance(a, _SEQUENCES) and isinstance(b, int) and len(a) * max(b, 0) > MAX_SEQUENCE:
        raise EvalError(
            f"repeating a sequence of {len(a)} {b} times builds more than "
            f"{MAX_SEQUENCE} items (the expression limit)"
        )
    if isinstance(a, int) and isinstance(b, int) and (
        a.bit_length() + b.bit_length() > MAX_INT_BITS
    ):
        raise EvalError(f"a product of more than {MAX_INT_BITS} bits (the expression limit)")
    return a * b


def _add(a: Any, b: Any) -> Any:
    if isinstance(a, _SEQUENCES) and isinstance(b, _SEQUENCES) and len(a) + len(b) > (
        MAX_SEQUENCE
    ):
        raise EvalError(
            f"joining two sequences builds more than {MAX_SEQUENCE} items (the expression limit)"
        )
    return a + b


def _not_in(a: Any, b: Any) -> Any:
    result = _in(a, b)
    return sym.lnot(result) if isinstance(result, Term) else not result


def _in(a: Any, b: Any) -> Any:
    if isinstance(a, Term) and isinstance(b, tuple | list):
        return sym.lor(*(sym.eq(a, _as_bv(x)) for x in b))
    return a in b


_BINOPS: Mapping[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: _symbolic("add", _add),
    ast.Sub: _symbolic("sub", operator.sub),
    ast.Mult: _symbolic("mul", _mul),
    ast.FloorDiv: _symbolic("floordiv", operator.floordiv),
    ast.Mod: _symbolic("mod", operator.mod),
    ast.BitAnd: _symbolic("and", operator.and_),
    ast.BitOr: _symbolic("or", operator.or_),
    ast.BitXor: _symbolic("xor", operator.xor),
    ast.LShift: _symbolic("lshift", _lshift),
    ast.RShift: _symbolic("rshift", operator.rshift),
}

_CMPOPS: Mapping[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Eq: _symbolic("eq", operator.eq),
    ast.NotEq: _symbolic("ne", operator.ne),
    ast.Lt: _symbolic("lt", operator.lt),
    ast.LtE: _symbolic("le", operator.le),
    ast.Gt: _symbolic("gt", operator.gt),
    ast.GtE: _symbolic("ge", operator.ge),
    ast.In: _in,
    ast.NotIn: _not_in,
}


def _not(a: Any) -> Any:
    return sym.lnot(sym.truth(a)) if isinstance(a, Term) else not a


def _neg(a: Any) -> Any:
    return sym.neg(_as_bv(a)) if isinstance(a, Term) else -a


def _invert(a: Any) -> Any:
    return sym.bnot(_as_bv(a)) if isinstance(a, Term) else ~a


_UNARY: Mapping[type[ast.unaryop], Callable[[Any], Any]] = {
    ast.Not: _not,
    ast.USub: _neg,
    ast.UAdd: operator.pos,
    ast.Invert: _invert,
}

# Readable names for rejected constructs, so the message says what was written.
_CONSTRUCT_NAMES: Mapping[type[ast.AST], str] = {
    ast.Lambda: "lambda",
    ast.ListComp: "list comprehension",
    ast.SetComp: "set comprehension",
    ast.DictComp: "dict comprehension",
    ast.Starred: "starred expression (*x)",
    ast.NamedExpr: "assignment expression (:=)",
    ast.JoinedStr: "f-string",
    ast.FormattedValue: "f-string",
    ast.Await: "await",
    ast.Yield: "yield",
    ast.YieldFrom: "yield from",
    ast.Dict: "dict display",
    ast.Set: "set display",
    ast.Div: "true division '/' (use '//')",
    ast.Pow: "power operator '**'",
    ast.MatMult: "matrix multiplication '@'",
    ast.Is: "'is' (use '==')",
    ast.IsNot: "'is not' (use '!=')",
}


def _construct(node: ast.AST) -> str:
    return _CONSTRUCT_NAMES.get(type(node), type(node).__name__)


@dataclass(frozen=True)
class NameRef:
    """One use of a vocabulary name in an expression (1-based line and column)."""

    name: str
    line: int
    col: int


@dataclass(frozen=True)
class CallRef:
    """One call of a vocabulary function, with its number of arguments."""

    name: str
    args: int
    line: int
    col: int


@dataclass(frozen=True)
class Expr:
    """A compiled expression. `evaluate(vocabulary)` gives its value in a state."""

    source: str
    refs: tuple[NameRef, ...]
    _fn: Fn = field(repr=False, compare=False)
    evaluate: Callable[[Env], Any] = field(repr=False, compare=False)
    # `A -> B` (or `A implies B`) at the top level: A, whose truth in some explored state
    # keeps the property from holding vacuously (checker.run's vacuity check).
    antecedent: Expr | None = field(default=None, compare=False)
    calls: tuple[CallRef, ...] = ()
    # The generator-item counters of this expression (and of the parts of an
    # implication), reset by `evaluate` at each state (MAX_ITEMS).
    budgets: tuple[_Budget, ...] = field(default=(), repr=False, compare=False)

    @property
    def names(self) -> frozenset[str]:
        """The vocabulary names the expression reads."""
        return frozenset(ref.name for ref in self.refs)

    def check_names(self, known: Mapping[str, str] | Iterable[str]) -> None:
        """Raise ExprError at the first name the vocabulary does not provide."""
        known_set = set(known)
        for ref in self.refs:
            if ref.name not in known_set:
                raise ExprError(_unknown_name_message(ref.name, known_set), ref.line, ref.col)


    def check_calls(self, vocabulary: Mapping[str, Any]) -> None:
        """Raise ExprError at the first call of a vocabulary function that its signature
        refuses (`frames_on()` without its stack), or of a name that is not a function:
        `vocabulary` is the model's vocabulary in some state."""
        for call in self.calls:
            if call.name not in vocabulary:
                continue
            target = vocabulary[call.name]
            if not callable(target):
                raise ExprError(f"'{call.name}' is not a function", call.line, call.col)
            try:
                signature = inspect.signature(target)
            except (TypeError, ValueError):
                continue  # no signature to check against: the call is judged per state
            try:
                signature.bind(*range(call.args))
            except TypeError as exc:
                raise ExprError(
                    f"{call.name}{signature}: {exc} (called with {call.args} argument"
                    f"{'' if call.args == 1 else 's'})", call.line, call.col,
                ) from None


def _unknown_name_message(name: str, known: set[str]) -> str:
    message = f"unknown name '{name}'"
    close = difflib.get_close_matches(name, sorted(known), n=3)
    if close:
        message += " (did you mean " + ", ".join(f"'{c}'" for c in close) + "?)"
    elif known:
        listed = sorted(known)
        more = f", ... ({len(listed) - 20} more)" if len(listed) > 20 else ""
        message += "; known names: " + ", ".join(listed[:20]) + more
    else:
        message += "; the model provides no names"
    return message


_NO_LOCALS: Mapping[str, Any] = {}


def compile_expr(source: str) -> Expr:
    """Parse and compile `source`; raise ExprError if it is not in the language.

    `A -> B` and `A implies B` at the top level (outside brackets) mean `not A or B`,
    and the result remembers A as its `antecedent`; `->` binds loosest and groups to the
    right (`A -> B -> C` is `A -> (B -> C)`)."""
    if not isinstance(source, str):
        raise ExprError("expression must be a string")
    text = source.strip()
    if not text:
        raise ExprError("empty expression")
    return _compile_implication(text, "")


def _compile_implication(text: str, part: str) -> Expr:
    """`A -> B` (columns kept: B is compiled with A blanked out), B may be one too; or,
    without a top-level arrow, one expression (`part` names it in errors)."""
    arrow = top_level_implication(text)
    if arrow is None:
        return _compile_text(text, part)
    start, end = arrow
    blank = "".join(c if c == "\n" else " " for c in text[:end])
    premise = _compile_text(text[:start].rstrip(), "the left of an implication")
    conclusion = _compile_implication(blank + text[end:], "the right of an implication")
    a, b = premise._fn, conclusion._fn

    def implies(loc: Locals, env: Env) -> Any:
        first = a(loc, env)
        if isinstance(first, Term):
            return sym.lor(sym.lnot(sym.truth(first)), _truth(b(loc, env)))
        return True if not first else b(loc, env)

    budgets = premise.budgets + conclusion.budgets

    def evaluate(env: Env) -> Any:
        for budget in budgets:
            budget.items = 0
        return implies(_NO_LOCALS, env)

    return Expr(
        text.strip(), premise.refs + conclusion.refs, implies, evaluate, premise,
        premise.calls + conclusion.calls, budgets,
    )


def top_level_implication(text: str) -> tuple[int, int] | None:
    """The offsets of the first top-level `->` or `implies` in `text` (outside brackets
    and strings), or None."""
    lines = text.split("\n")
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line) + 1)
    depth = 0
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type == tokenize.OP and tok.string in "([{":
                depth += 1
            elif tok.type == tokenize.OP and tok.string in ")]}":
                depth -= 1
            elif depth == 0 and (
                (tok.type == tokenize.OP and tok.string == "->")
                or (tok.type == tokenize.NAME and tok.string == "implies")
            ):
                (row, col), (erow, ecol) = tok.start, tok.end
                return offsets[row - 1] + col, offsets[erow - 1] + ecol
    except Exception:  # tokenize.TokenError, SyntaxError: the parser reports it
        return None
    return None


def _compile_text(text: str, part: str) -> Expr:
    """Compile one expression (no top-level implication); `part` names it in errors."""
    if not text.strip():
        raise ExprError(f"empty expression on {part}" if part else "empty expression")
    # A part of an implication is parsed in brackets, so that the blanked prefix keeps
    # every column in place.
    wrapped = bool(part)
    try:
        tree = ast.parse("(" + text + "\n)" if wrapped else text, mode="eval")
    except SyntaxError as first:
        if wrapped:
            raise _syntax_error(first, shift=True) from None
        if "\n" not in text:
            raise _syntax_error(first) from None
        # A multi-line expression (TOML multi-line string) parses like a parenthesised one.
        try:
            tree = ast.parse("(" + text + "\n)", mode="eval")
            wrapped = True
        except SyntaxError:
            raise _syntax_error(first) from None
        except (RecursionError, MemoryError):
            raise ExprError("expression is too deeply nested") from None
    except (RecursionError, MemoryError):
        raise ExprError("expression is too deeply nested") from None
    compiler = _Compiler(text, wrapped)
    try:
        fn = compiler.compile(tree.body, frozenset())
    except RecursionError:
        raise ExprError("expression is too deeply nested") from None
    return _expression(text.strip() if part else text, compiler, fn)


def _expression(text: str, compiler: _Compiler, fn: Fn) -> Expr:
    evaluate: Callable[[Env], Any] = functools.partial(fn, _NO_LOCALS)
    budgets: tuple[_Budget, ...] = ()
    if compiler.generators:
        # Generators are the only loops: their items are counted per evaluation.
        budget = compiler.budget
        budgets = (budget,)

        def evaluate(env: Env) -> Any:
            budget.items = 0
            return fn(_NO_LOCALS, env)

    return Expr(text, tuple(compiler.refs), fn, evaluate, calls=tuple(compiler.calls),
                budgets=budgets)


class _Budget:
    """The generator items one evaluation has produced so far (MAX_ITEMS)."""

    __slots__ = ("items",)

    def __init__(self) -> None:
        self.items = 0

    def spend(self) -> None:
        """Count an item; every _TIME_EVERY items, look at the limits."""
        self.items += 1
        if not self.items % _TIME_EVERY:
            if self.items > MAX_ITEMS:
                raise EvalError(
                    f"the expression's generators produced more than {MAX_ITEMS} items in one "
                    "state (the expression limit)"
                )
            limits.check_time("evaluating a property expression")


def _syntax_error(err: SyntaxError, shift: bool = False) -> ExprError:
    msg = err.msg or "invalid syntax"
    line, col = err.lineno or 1, err.offset or 1
    if shift and line == 1:
        col = max(1, col - 1)  # the "(" it was parsed in
    return ExprError(f"syntax error: {msg}", line, col)


def position(lines: list[str], wrapped: bool, line: int, byte_col: int) -> tuple[int, int]:
    """1-based (line, column in characters) in the expression's `lines` of a parser
    position (1-based line, 0-based UTF-8 byte offset); `wrapped`: parsed in the "(" that
    `_compile_text` adds around it."""
    if wrapped and line == 1:
        byte_col -= 1  # the "(" we added
    text = lines[line - 1] if 0 < line <= len(lines) else ""
    col = len(text.encode("utf-8")[: max(byte_col, 0)].decode("utf-8", "ignore"))
    return line, col + 1


class _Compiler:
    def __init__(self, source: str, wrapped: bool):
        self.source = source
        self.lines = source.split("\n")
        self.wrapped = wrapped
        self.refs: list[NameRef] = []
        self.calls: list[CallRef] = []
        self.budget = _Budget()
        self.generators = False  # the expression has a generator (to count its items)

    # -- positions ---------------------------------------------------------------------

    def pos(self, node: ast.AST) -> tuple[int, int]:
        """1-based (line, column in characters) of `node` within the expression."""
        return position(
            self.lines, self.wrapped, getattr(node, "lineno", 1), getattr(node, "col_offset", 0)
        )

    def error(self, node: ast.AST, message: str) -> ExprError:
        line, col = self.pos(node)
        return ExprError(message, line, col)

    def reject(self, node: ast.AST) -> ExprError:
        return self.error(node, f"{_construct(node)} is not allowed in a property expression")

    def segment(self, node: ast.AST) -> str:
        line, col = self.pos(node)
        end_line = getattr(node, "end_lineno", line)
        if end_line != line:
            return self.lines[line - 1][col - 1 :] + " ..."
        length = getattr(node, "end_col_offset", 0) - getattr(node, "col_offset", 0)
        text = self.lines[line - 1].encode("utf-8")
        start = len(self.lines[line - 1][: col - 1].encode("utf-8"))
        return text[start : start + max(length, 0)].decode("utf-8", "ignore")

    # -- dispatch ----------------------------------------------------------------------

    def compile(self, node: ast.expr, scope: frozenset[str]) -> Fn:
        method = _COMPILE_RULES.get(type(node).__name__)
        if method is None:
            raise self.reject(node)
        fn: Fn = method(self, node, scope)
        return fn

    def c_Constant(self, node: ast.Constant, scope: frozenset[str]) -> Fn:
        value = node.value
        if value is not None and not isinstance(value, bool | int | str):
            raise self.error(
                node, f"constant of type {type(value).__name__} is not allowed (int, str, bool)"
            )
        return lambda loc, env: value

    def c_Name(self, node: ast.Name, scope: frozenset[str]) -> Fn:
        name = node.id
        if name.startswith("_"):
            raise self.error(node, f"name '{name}' is not allowed (names may not start with '_')")
        if name in scope:
            return lambda loc, env: loc[name]
        if name in BUILTINS:
            raise self.error(node, f"'{name}' is a function: call it, as in {name}(...)")
        line, col = self.pos(node)
        self.refs.append(NameRef(name, line, col))
        return lambda loc, env: env[name]

    def c_Attribute(self, node: ast.Attribute, scope: frozenset[str]) -> Fn:
        attr = node.attr
        obj = self.compile(node.value, scope)  # first, so errors come in source order
        if attr.startswith("_"):
            # point at the field name itself, not at the start of `a.b`
            at = ast.Name(
                id=attr,
                lineno=getattr(node, "end_lineno", node.lineno),
                col_offset=(node.end_col_offset or 0) - len(attr.encode("utf-8")),
            )
            raise self.error(
                at, f"attribute '{attr}' is not allowed (fields may not start with '_')"
            )
        text = self.segment(node)

        def attribute(loc: Locals, env: Env) -> Any:
            record = obj(loc, env)
            try:
                return record[attr]
            except (KeyError, IndexError):
                raise EvalError(f"{text}: no field '{attr}'") from None
            except TypeError:
                raise EvalError(
                    f"{text}: a value of type {type(record).__name__} has no fields"
                ) from None

        return attribute

    def c_Subscript(self, node: ast.Subscript, scope: frozenset[str]) -> Fn:
        obj = self.compile(node.value, scope)
        text = self.segment(node)
        if isinstance(node.slice, ast.Constant):
            # `cpu[1]`: a constant index needs no closure of its own.
            const = self.c_Constant(node.slice, scope)(_NO_LOCALS, _NO_LOCALS)

            def subscript_const(loc: Locals, env: Env) -> Any:
                container = obj(loc, env)
                try:
                    return container[const]
                except (KeyError, IndexError):
                    raise EvalError(f"{text}: no element {const!r}") from None
                except TypeError as exc:
                    raise EvalError(f"{text}: {exc}") from None

            return subscript_const
        index = self.compile(node.slice, scope)

        def subscript(loc: Locals, env: Env) -> Any:
            container = obj(loc, env)
            key = index(loc, env)
            if isinstance(key, Term) and isinstance(container, list | tuple):
                # An element chosen by a symbolic index: if-then-else over the elements.
                result: Any = 0
                for k in range(len(container) - 1, -1, -1):
                    result = sym.ite(sym.eq(key, k), _as_bv(container[k]), result)
                return result
            try:
                return container[key]
            except (KeyError, IndexError):
                raise EvalError(f"{text}: no element {key!r}") from None
            except TypeError as exc:
                raise EvalError(f"{text}: {exc}") from None

        return subscript

    def c_Slice(self, node: ast.Slice, scope: frozenset[str]) -> Fn:
        parts = [
            None if part is None else self.compile(part, scope)
            for part in (node.lower, node.upper, node.step)
        ]

        def make_slice(loc: Locals, env: Env) -> slice:
            lo, hi, st = (None if p is None else p(loc, env) for p in parts)
            return slice(lo, hi, st)

        return make_slice

    def c_Tuple(self, node: ast.Tuple, scope: frozenset[str]) -> Fn:
        items = [self.compile(elt, scope) for elt in node.elts]
        return lambda loc, env: tuple(item(loc, env) for item in items)

    def c_List(self, node: ast.List, scope: frozenset[str]) -> Fn:
        items = [self.compile(elt, scope) for elt in node.elts]
        return lambda loc, env: [item(loc, env) for item in items]

    def c_BinOp(self, node: ast.BinOp, scope: frozenset[str]) -> Fn:
        op = _BINOPS.get(type(node.op))
        if op is None:
            raise self.error(node, f"{_construct(node.op)} is not allowed in a property expression")
        left = self.compile(node.left, scope)
        right = self.compile(node.right, scope)
        text = self.segment(node)

        def binop(loc: Locals, env: Env) -> Any:
            try:
                return op(left(loc, env), right(loc, env))
            except (TypeError, ZeroDivisionError, ValueError) as exc:
                raise EvalError(f"{text}: {exc}") from None

        return binop

    def c_UnaryOp(self, node: ast.UnaryOp, scope: frozenset[str]) -> Fn:
        op = _UNARY[type(node.op)]
        operand = self.compile(node.operand, scope)
        text = self.segment(node)

        def unary(loc: Locals, env: Env) -> Any:
            try:
                return op(operand(loc, env))
            except TypeError as exc:
                raise EvalError(f"{text}: {exc}") from None

        return unary

    def c_BoolOp(self, node: ast.BoolOp, scope: frozenset[str]) -> Fn:
        values = [self.compile(v, scope) for v in node.values]
        if isinstance(node.op, ast.And):
            if len(values) == 2:
                a, b = values

                def both(loc: Locals, env: Env) -> Any:
                    first = a(loc, env)
                    if isinstance(first, Term):
                        return sym.land(sym.truth(first), _truth(b(loc, env)))
                    return first and b(loc, env)

                return both

            def all_of(loc: Locals, env: Env) -> Any:
                result: Any = True
                terms = []
                for value in values:
                    result = value(loc, env)
                    if isinstance(result, Term):
                        terms.append(sym.truth(result))
                    elif not result:
                        return result
                return sym.land(*terms) if terms else result

            return all_of
        if len(values) == 2:
            a, b = values

            def either(loc: Locals, env: Env) -> Any:
                first = a(loc, env)
                if isinstance(first, Term):
                    return sym.lor(sym.truth(first), _truth(b(loc, env)))
                return first or b(loc, env)

            return either

        def any_of(loc: Locals, env: Env) -> Any:
            result: Any = False
            terms = []
            for value in values:
                result = value(loc, env)
                if isinstance(result, Term):
                    terms.append(sym.truth(result))
                elif result:
                    return result
            return sym.lor(*terms) if terms else result

        return any_of

    def c_Compare(self, node: ast.Compare, scope: frozenset[str]) -> Fn:
        ops: list[Callable[[Any, Any], Any]] = []
        for op_node in node.ops:
            op = _CMPOPS.get(type(op_node))
            if op is None:
                raise self.error(node, f"{_construct(op_node)} is not allowed in a comparison")
            ops.append(op)
        operands = [self.compile(node.left, scope)] + [
            self.compile(c, scope) for c in node.comparators
        ]
        text = self.segment(node)
        if len(ops) == 1:
            op = ops[0]
            left = operands[0]
            right_node = node.comparators[0]
            if isinstance(right_node, ast.Constant):
                # The common `x == 3` shape: skip one closure call per evaluation.
                const = right_node.value

                def compare_const(loc: Locals, env: Env) -> Any:
                    try:
                        return op(left(loc, env), const)
                    except TypeError as exc:
                        raise EvalError(f"{text}: {exc}") from None

                return compare_const
            right = operands[1]

            def compare(loc: Locals, env: Env) -> Any:
                try:
                    return op(left(loc, env), right(loc, env))
                except TypeError as exc:
                    raise EvalError(f"{text}: {exc}") from None

            return compare

        def chain(loc: Locals, env: Env) -> Any:
            try:
                left_value = operands[0](loc, env)
                for op, operand in zip(ops, operands[1:], strict=True):
                    right_value = operand(loc, env)
                    if not op(left_value, right_value):
                        return False
                    left_value = right_value
                return True
            except TypeError as exc:
                raise EvalError(f"{text}: {exc}") from None

        return chain

    def c_IfExp(self, node: ast.IfExp, scope: frozenset[str]) -> Fn:
        test = self.compile(node.test, scope)
        body = self.compile(node.body, scope)
        orelse = self.compile(node.orelse, scope)
        def if_exp(loc: Locals, env: Env) -> Any:
            cond = test(loc, env)
            if isinstance(cond, Term):
                c = sym.truth(cond)
                yes, no = body(loc, env), orelse(loc, env)
                if isinstance(yes, bool | Term) and isinstance(no, bool | Term) and not (
                    isinstance(yes, Term) and yes.op not in sym.BOOL_OPS
                ):
                    return sym.lor(sym.land(c, _truth(yes)), sym.land(sym.lnot(c), _truth(no)))
                return sym.ite(c, _as_bv(yes), _as_bv(no))
            return body(loc, env) if cond else orelse(loc, env)

        return if_exp

    def c_Call(self, node: ast.Call, scope: frozenset[str]) -> Fn:
        if node.keywords:
            raise self.error(node.keywords[0], "keyword argument is not allowed in a call")
        func = node.func
        if not isinstance(func, ast.Name):
            self.compile(func, scope)  # report what is wrong inside first, if anything
            raise self.error(
                node, "only named functions can be called (any, all, len, min, max, sum, count, "
                "or a function of the model's vocabulary)"
            )
        name = func.id
        if name.startswith("_"):
            raise self.error(func, f"name '{name}' is not allowed (names may not start with '_')")
        if name in scope:
            raise self.error(func, f"'{name}' is a generator variable, not a function")
        args = [
            self.c_generator(arg, scope) if isinstance(arg, ast.GeneratorExp)
            else self.compile(arg, scope)
            for arg in node.args
        ]
        text = self.segment(node)
        builtin = BUILTINS.get(name)
        if builtin is not None:
            call_builtin = builtin
            if len(args) == 1:
                (arg,) = args

                def call1(loc: Locals, env: Env) -> Any:
                    try:
                        return call_builtin(arg(loc, env))
                    except (TypeError, ValueError) as exc:
                        raise EvalError(f"{text}: {exc}") from None

                return call1

            def call_n(loc: Locals, env: Env) -> Any:
                try:
                    return call_builtin(*[a(loc, env) for a in args])
                except (TypeError, ValueError) as exc:
                    raise EvalError(f"{text}: {exc}") from None

            return call_n
        line, col = self.pos(func)
        self.refs.append(NameRef(name, line, col))
        self.calls.append(CallRef(name, len(args), line, col))

        def call_vocabulary(loc: Locals, env: Env) -> Any:
            target = env[name]
            if not callable(target):
                raise EvalError(f"{text}: '{name}' is not a function")
            values = [a(loc, env) for a in args]
            try:
                return target(*values)
            except TypeError as exc:
                raise EvalError(f"{text}: {exc}") from None

        return call_vocabulary

    def c_GeneratorExp(self, node: ast.GeneratorExp, scope: frozenset[str]) -> Fn:
        raise self.error(
            node, "a generator expression is only allowed as the argument of a function call"
        )

    def c_generator(self, node: ast.GeneratorExp, scope: frozenset[str]) -> Fn:
        if len(node.generators) != 1:
            raise self.error(node, "a generator expression may have only one 'for'")
        gen = node.generators[0]
        if gen.is_async:
            raise self.error(node, "async generator is not allowed")
        if not isinstance(gen.target, ast.Name):
            raise self.error(gen.target, "the target of 'for' must be a single name")
        var = gen.target.id
        if var.startswith("_"):
            raise self.error(gen.target, f"name '{var}' is not allowed")
        if var in BUILTINS:
            raise self.error(gen.target, f"'{var}' is a function name; pick another name")
        iterable = self.compile(gen.iter, scope)
        inner = scope | {var}
        conds = [self.compile(cond, inner) for cond in gen.ifs]
        elt = self.compile(node.elt, inner)
        text = self.segment(gen.iter)
        self.generators = True
        budget = self.budget

        def generate(loc: Locals, env: Env) -> Iterator[Any]:
            source = iterable(loc, env)
            try:
                items = iter(source)
            except TypeError:
                raise EvalError(
                    f"{text}: a value of type {type(source).__name__} is not iterable"
                ) from None
            bound = dict(loc)
            return _generate(items, bound, var, conds, elt, env, budget)

        return generate


# The compiler's rule for each AST node type it allows (c_NAME compiles an ast.NAME).
_COMPILE_RULES: dict[str, Callable[..., Fn]] = {
    name[2:]: rule for name, rule in vars(_Compiler).items() if name.startswith("c_")
}


def _generate(
    items: Iterator[Any], bound: dict[str, Any], var: str, conds: list[Fn], elt: Fn, env: Env,
    budget: _Budget,
) -> Iterator[Any]:
    spend = budget.spend
    for item in items:
        spend()
        bound[var] = item
        verdicts = [cond(bound, env) for cond in conds]
        terms = [sym.truth(v) for v in verdicts if isinstance(v, Term)]
        if not all(v for v in verdicts if not isinstance(v, Term)):
            continue
        value = elt(bound, env)
        if terms:
            # A symbolic filter: the element counts only where the filter holds.
            guard = sym.land(*terms)
            yield sym.land(guard, _truth(value)) if isinstance(value, bool | Term) else value
        else:
            yield value
