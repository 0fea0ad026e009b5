"""Which property expressions no renumbering of interchangeable processes can change.

Symmetry reduction explores one state per orbit (the model's `representative`), so a
property may be decided on the representatives only when its expression has the same
value (the same truth, for a verdict) on every state of an orbit. `asymmetry` decides
that from the expression's syntax and the model's `SymmetricVocabulary`, conservatively:
None means no renumbering of `vocab.permuted` can change the expression's truth; a
string is the reason it might, naming the first construct that could depend on the
numbering. The caller explores the properties it rejects without reduction.

What a renumbering π does to the value of a sub-expression (each loop variable bound to
the correspondingly renumbered item), as tracked by the analysis:

- INV   unchanged (constants, names in `vocab.invariant`, non-index fields of items); an
        invariant value holds no index of a renumbered process;
- IDX   a process index, or a value a renumbering rewrites by a bijection: v -> π(v)
        (`c.id`, `f.cpu`: the fields in `vocab.index_fields`). Only `==`/`!=` between
        two of them, `==`/`!=`/`in` against integer constants outside `permuted`, use as a
        sequence subscript or as an index argument of a model function keep a value;
- ELEM  an item of a sequence or collection: a record whose index fields are rewritten,
        its other fields unchanged, or a plain value (unchanged);
- SEQ   a per-process sequence (`vocab.sequences`): its items are permuted;
- COLL  a collection of records (`vocab.collections`): its items rewritten and reordered;
- TRUTH only the truth is unchanged (`a and b` of different kinds).

Aggregations (`all any count sum min max len`) do not depend on the order of their items,
so a generator over a sequence or collection is invariant when its conditions and
element are. One caveat: an expression that fails (a missing field) on some item may
fail on a different state of the orbit, or be cut short by `all`/`any` before reaching
it; the verdict is then `error` either way.
"""

from __future__ import annotations

import ast
import enum
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from checker.expr import Expr
from checker.interface import SymmetricVocabulary

_ORDER_FREE = frozenset({"all", "any", "count", "sum", "min", "max", "len"})
_TRUTH_AGGREGATES = frozenset({"all", "any", "count"})


class Shape(enum.Enum):
    """What a sub-expression's value is, as far as a renumbering of processes goes."""

    INV = "invariant"
    IDX = "process index"
    ELEM = "item"
    SEQ = "sequence"
    COLL = "collection"
    TRUTH = "truth"


def _a(kind: Shape) -> str:
    return ("an " if kind.value[0] in "aeiou" else "a ") + kind.value


class _Asymmetric(Exception):
    """Internal: the reason an expression may depend on the numbering."""


def asymmetry(expr: str | ast.AST | Any, vocab: SymmetricVocabulary) -> str | None:
    """None when no renumbering of `vocab.permuted` can change the truth of `expr` (a
    source string, a parsed `ast` node, or a compiled `checker.expr.Expr`); otherwise a
    short reason naming the construct."""
    try:
        tree = _parse(expr)
    except SyntaxError as exc:
        return f"the expression does not parse: {exc.msg}"
    try:
        _Analysis(vocab).truth(tree, {})
    except _Asymmetric as exc:
        return str(exc)
    except RecursionError:
        return "the expression is too deeply nested to analyse"
    return None


def _parse(expr: str | ast.AST | Any) -> ast.expr:
    if isinstance(expr, ast.Expression):
        return expr.body
    if isinstance(expr, ast.expr):
        return expr
    source = expr if isinstance(expr, str) else expr.source if isinstance(expr, Expr) else None
    if not isinstance(source, str):
        raise TypeError(f"not an expression: {type(expr).__name__}")
    text = source.strip()
    try:
        return ast.parse(text, mode="eval").body
    except SyntaxError:
        # A multi-line expression parses like a parenthesised one (as checker.expr does).
        return ast.parse("(" + text + "\n)", mode="eval").body


def _text(node: ast.AST) -> str:
    text = ast.unparse(node)
    return text if len(text) <= 60 else text[:57] + "..."


def _constants(node: ast.expr) -> tuple[Any, ...] | None:
    """The values of a constant, or of a tuple/list display of constants; else None."""
    if isinstance(node, ast.Constant):
        return (node.value,)
    if (
        isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd)
        and isinstance(node.operand, ast.Constant) and isinstance(node.operand.value, int)
    ):
        value = node.operand.value
        return (-value if isinstance(node.op, ast.USub) else value,)
    if isinstance(node, ast.Tuple | ast.List):
        values: list[Any] = []
        for elt in node.elts:
            if not isinstance(elt, ast.Constant):
                return None
            values.append(elt.value)
        return tuple(values)
    return None


Scope = Mapping[str, Shape]


class _Analysis:
    def __init__(self, vocab: SymmetricVocabulary):
        self.vocab = vocab
        self.permuted = vocab.permuted

    # -- contexts ----------------------------------------------------------------------

    def truth(self, node: ast.expr, scope: Scope) -> None:
        """`node` is only tested for truth: raise unless its truth is invariant."""
        self.truth_of(self.value(node, scope), node)

    def truth_of(self, kind: Shape, node: ast.expr) -> None:
        # A sequence's or collection's length never changes; an index is true when it is
        # not 0, which only a renumbering of 0 could change.
        if kind is Shape.IDX and 0 in self.permuted:
            raise _Asymmetric(f"{_text(node)}: the truth of a process index (0 is renumbered)")

    def fixed_index(self, value: Any, node: ast.expr) -> None:
        """A constant standing for a process index must be one no renumbering moves."""
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Asymmetric(
                f"{_text(node)}: a process index against the non-integer {value!r}"
            )
        if value < 0:
            raise _Asymmetric(f"{_text(node)}: negative index {value}")
        if value in self.permuted:
            raise _Asymmetric(f"{_text(node)}: process {value} is one of those renumbered")

    # -- values ------------------------------------------------------------------------

    def value(self, node: ast.expr, scope: Scope) -> Shape:
        method = _VALUE_RULES.get(type(node).__name__)
        if method is None:
            raise _Asymmetric(f"{_text(node)}: {type(node).__name__} is not analysed")
        kind: Shape = method(self, node, scope)
        return kind

    def v_Constant(self, node: ast.Constant, scope: Scope) -> Shape:
        return Shape.INV

    def v_Name(self, node: ast.Name, scope: Scope) -> Shape:
        name = node.id
        if name in scope:
            return scope[name]
        vocab = self.vocab
        if name in vocab.sequences:
            return Shape.SEQ
        if name in vocab.collections:
            return Shape.COLL
        if name in vocab.invariant:
            return Shape.INV
        raise _Asymmetric(f"'{name}' may change when processes are renumbered")

    def v_Attribute(self, node: ast.Attribute, scope: Scope) -> Shape:
        return self.field(self.value(node.value, scope), node.attr, node)

    def field(self, kind: Shape, name: str, node: ast.expr) -> Shape:
        if kind is Shape.INV:
            return Shape.INV
        if kind is Shape.ELEM:
            return Shape.IDX if name in self.vocab.index_fields else Shape.INV
        raise _Asymmetric(f"{_text(node)}: field '{name}' of {_a(kind)}")

    def v_Subscript(self, node: ast.Subscript, scope: Scope) -> Shape:
        container = self.value(node.value, scope)
        index = node.slice
        if container is Shape.SEQ:
            if isinstance(index, ast.Slice):
                raise _Asymmetric(f"{_text(node)}: a slice of a per-process sequence")
            values = _constants(index)
            if values is not None and not isinstance(index, ast.Tuple | ast.List):
                self.fixed_index(values[0], node)
                return Shape.ELEM
            if self.value(index, scope) is Shape.IDX:
                return Shape.ELEM
            raise _Asymmetric(
                f"{_text(node)}: a per-process sequence indexed by neither a constant nor "
                "a process index"
            )
        if (
            container is Shape.ELEM and isinstance(index, ast.Constant)
            and isinstance(index.value, str)
        ):
            return self.field(container, index.value, node)  # `c['id']` is `c.id`
        if container is Shape.INV:
            if isinstance(index, ast.Slice):
                for part in (index.lower, index.upper, index.step):
                    if part is not None and self.value(part, scope) is not Shape.INV:
                        raise _Asymmetric(f"{_text(node)}: a slice bound that may change")
                return Shape.INV
            kind = self.value(index, scope)
            if kind in (Shape.INV, Shape.ELEM):
                return Shape.INV
            raise _Asymmetric(f"{_text(node)}: indexed by {_a(kind)}")
        raise _Asymmetric(f"{_text(node)}: indexing {_a(container)}")

    def v_Tuple(self, node: ast.Tuple | ast.List, scope: Scope) -> Shape:
        for elt in node.elts:
            kind = self.value(elt, scope)
            if kind is not Shape.INV:
                raise _Asymmetric(f"{_text(elt)}: {_a(kind)} inside a tuple or list")
        return Shape.INV

    v_List = v_Tuple

    def v_BinOp(self, node: ast.BinOp, scope: Scope) -> Shape:
        left = self.value(node.left, scope)
        right = self.value(node.right, scope)
        for kind, side in ((left, node.left), (right, node.right)):
            if kind not in (Shape.INV, Shape.ELEM):
                raise _Asymmetric(f"{_text(node)}: arithmetic on {_a(kind)} ({_text(side)})")
        if isinstance(node.op, ast.Mod) and right is Shape.ELEM:
            # `text % record` would format the record's index fields.
            raise _Asymmetric(f"{_text(node)}: '%' with an item on the right")
        return Shape.INV

    def v_UnaryOp(self, node: ast.UnaryOp, scope: Scope) -> Shape:
        if isinstance(node.op, ast.Not):
            self.truth(node.operand, scope)
            return Shape.INV
        kind = self.value(node.operand, scope)
        if kind not in (Shape.INV, Shape.ELEM):
            raise _Asymmetric(f"{_text(node)}: arithmetic on {_a(kind)}")
        return Shape.INV

    def v_BoolOp(self, node: ast.BoolOp, scope: Scope) -> Shape:
        # The value is one of the operands, chosen by their truth.
        kinds = set()
        for operand in node.values:
            kind = self.value(operand, scope)
            self.truth_of(kind, operand)
            kinds.add(kind)
        return kinds.pop() if len(kinds) == 1 else Shape.TRUTH

    def v_IfExp(self, node: ast.IfExp, scope: Scope) -> Shape:
        self.truth(node.test, scope)
        body = self.value(node.body, scope)
        orelse = self.value(node.orelse, scope)
        if body is orelse and body not in (Shape.SEQ, Shape.COLL):
            return body
        self.truth_of(body, node.body)
        self.truth_of(orelse, node.orelse)
        return Shape.TRUTH

    def v_Compare(self, node: ast.Compare, scope: Scope) -> Shape:
        operands = [node.left, *node.comparators]
        kinds = [self.value(operand, scope) for operand in operands]
        for i, op in enumerate(node.ops):
            self.pair(op, operands[i], kinds[i], operands[i + 1], kinds[i + 1], node)
        return Shape.INV

    def pair(
        self, op: ast.cmpop, left: ast.expr, lkind: Shape, right: ast.expr, rkind: Shape,
        node: ast.Compare,
    ) -> None:
        """One comparison of a chain: raise unless its outcome is invariant."""
        if lkind is Shape.INV and rkind is Shape.INV:
            return
        for kind, side in ((lkind, left), (rkind, right)):
            if kind in (Shape.SEQ, Shape.COLL, Shape.TRUTH):
                raise _Asymmetric(f"{_text(node)}: compares {_a(kind)} ({_text(side)})")
        if isinstance(op, ast.In | ast.NotIn):
            if rkind is Shape.IDX:
                raise _Asymmetric(f"{_text(node)}: membership in a process index")
            if lkind is Shape.IDX:
                values = _constants(right)
                if values is None:
                    raise _Asymmetric(
                        f"{_text(node)}: membership of a process index in something other "
                        "than constants"
                    )
                for value in values:
                    self.fixed_index(value, node)
            return
        if Shape.IDX in (lkind, rkind) and lkind is not rkind:
            kind, other = (lkind, right) if lkind is Shape.IDX else (rkind, left)
            if not isinstance(op, ast.Eq | ast.NotEq):
                raise _Asymmetric(f"{_text(node)}: orders process indices")
            if not isinstance(other, ast.Constant):
                raise _Asymmetric(
                    f"{_text(node)}: a process index against something other than a "
                    "constant or another process index"
                )
            self.fixed_index(other.value, node)
            return
        if lkind is Shape.IDX and not isinstance(op, ast.Eq | ast.NotEq):
            raise _Asymmetric(f"{_text(node)}: orders process indices")
        # Two indices rewritten by the same bijection keep their equality. An item is a
        # plain value (unchanged) or a record, which equals another value only when their
        # index fields are equal: another item's, renamed alike, or an invariant's, which
        # holds no renumbered index; records are never ordered (a TypeError either way).

    # -- calls -------------------------------------------------------------------------

    def v_Call(self, node: ast.Call, scope: Scope) -> Shape:
        if not isinstance(node.func, ast.Name) or node.keywords:
            raise _Asymmetric(f"{_text(node)}: a call the analysis does not know")
        name = node.func.id
        if name in _ORDER_FREE and name not in scope:
            return self.aggregate(name, node, scope)
        return self.model_call(name, node, scope)

    def aggregate(self, name: str, node: ast.Call, scope: Scope) -> Shape:
        args = node.args
        if len(args) == 1 and isinstance(args[0], ast.GeneratorExp):
            return self.generator(name, args[0], scope)
        kinds = [self.value(arg, scope) for arg in args]
        for kind, arg in zip(kinds, args, strict=True):
            if kind in (Shape.IDX, Shape.TRUTH):
                raise _Asymmetric(f"{_text(node)}: {name}() of {_a(kind)} ({_text(arg)})")
        if name in ("min", "max"):
            if len(args) == 1:
                # The least item of a sequence or collection is an item.
                return Shape.ELEM if kinds[0] in (Shape.SEQ, Shape.COLL) else Shape.INV
            if Shape.SEQ in kinds or Shape.COLL in kinds:
                raise _Asymmetric(f"{_text(node)}: {name}() of sequences")
            return Shape.ELEM if Shape.ELEM in kinds else Shape.INV
        return Shape.INV

    def generator(self, name: str, node: ast.GeneratorExp, scope: Scope) -> Shape:
        inner = dict(scope)
        for comp in node.generators:
            if comp.is_async or not isinstance(comp.target, ast.Name):
                raise _Asymmetric(f"{_text(node)}: a generator the analysis does not know")
            source = self.value(comp.iter, inner)
            if source in (Shape.SEQ, Shape.COLL):
                bound = Shape.ELEM
            elif source is Shape.INV:
                bound = Shape.INV
            else:
                raise _Asymmetric(f"{_text(comp.iter)}: iterating over {_a(source)}")
            inner[comp.target.id] = bound
            for cond in comp.ifs:
                self.truth(cond, inner)
        kind = self.value(node.elt, inner)
        if name in _TRUTH_AGGREGATES:
            self.truth_of(kind, node.elt)
            return Shape.INV
        if kind not in (Shape.INV, Shape.ELEM):
            raise _Asymmetric(f"{_text(node.elt)}: {name}() over {_a(kind)}")
        return kind if name in ("min", "max") else Shape.INV

    def model_call(self, name: str, node: ast.Call, scope: Scope) -> Shape:
        vocab = self.vocab
        positions: Sequence[int] | None = vocab.index_arguments.get(name)
        if positions is None and name not in vocab.invariant:
            raise _Asymmetric(f"{_text(node)}: '{name}' may change when processes are renumbered")
        positions = positions or ()
        for position, arg in enumerate(node.args):
            if isinstance(arg, ast.GeneratorExp):
                raise _Asymmetric(f"{_text(node)}: a generator passed to '{name}'")
            if position in positions:
                if isinstance(arg, ast.Constant):
                    self.fixed_index(arg.value, node)
                elif self.value(arg, scope) is not Shape.IDX:
                    raise _Asymmetric(
                        f"{_text(node)}: argument {position + 1} of '{name}' must be a "
                        "constant or a process index"
                    )
            else:
                kind = self.value(arg, scope)
                if kind is not Shape.INV:
                    raise _Asymmetric(
                        f"{_text(node)}: argument {position + 1} of '{name}' is {_a(kind)}"
                    )
        return Shape.INV


# The analysis rule for each AST node type (v_NAME analyses an ast.NAME).
_VALUE_RULES: dict[str, Callable[..., Shape]] = {
    name[2:]: rule for name, rule in vars(_Analysis).items() if name.startswith("v_")
}
