"""The load-time check of record fields: `cpu[0].rps` is a `path:line` error before any
state is explored, not an `error` verdict found at the first state that reads it.

A model may say what its vocabulary's records look like (the optional `Typed`
capability, checker/interface.py): a shape per name, built from the four kinds below.
`check_fields` follows an expression's syntax with those shapes: a field read (`a.b`,
`a['b']`) of a value known to be a record must be one of its fields; a subscript of a
list or map, a call of a model function and a generator variable bound over a list carry
the shape of what they give. Anything the shapes do not describe (a design variable, an
arithmetic result, a name without a shape) is not checked: the check only refuses what
would certainly fail.
"""

from __future__ import annotations

import ast
import difflib
from collections.abc import Mapping
from dataclasses import dataclass

from checker.expr import BUILTINS, Expr, ExprError, position, top_level_implication


@dataclass(frozen=True)
class RecordShape:
    """A record: its kind (for messages) and its fields, each with its own shape."""

    kind: str
    fields: tuple[tuple[str, Shape], ...]

    def field(self, name: str) -> tuple[bool, Shape]:
        for n, shape in self.fields:
            if n == name:
                return True, shape
        return False, None


@dataclass(frozen=True)
class ListShape:
    """A list (or any sequence) whose items have one shape; iterating gives the items."""

    item: Shape


@dataclass(frozen=True)
class MapShape:
    """A mapping from names to items of one shape; iterating gives the names."""

    item: Shape


@dataclass(frozen=True)
class FunctionShape:
    """A model function; calling it gives a value of `result`'s shape."""

    result: Shape


Shape = RecordShape | ListShape | MapShape | FunctionShape | None  # None: not described


def check_fields(expr: Expr, shapes: Mapping[str, Shape]) -> None:
    """Raise ExprError at the first field the model's shapes say cannot exist."""
    text = _without_implications(expr.source)
    wrapped = False
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        tree = ast.parse("(" + text + "\n)", mode="eval")  # compile_expr accepted it so
        wrapped = True
    _Check(text, wrapped, shapes).shape(tree.body, {})


def _without_implications(text: str) -> str:
    """`A -> B` / `A implies B` spelt as `A or B` with every column kept, so that Python's
    parser reads it (the fields are the same whichever way the operands combine)."""
    while (arrow := top_level_implication(text)) is not None:
        start, end = arrow
        text = text[:start] + "or".ljust(end - start) + text[end:]
    return text


class _Check:
    def __init__(self, source: str, wrapped: bool, shapes: Mapping[str, Shape]):
        self.lines = source.split("\n")
        self.wrapped = wrapped
        self.shapes = shapes

    def error(self, line: int, byte_col: int, message: str) -> ExprError:
        return ExprError(message, *position(self.lines, self.wrapped, line, byte_col))

    def field(self, record: Shape, name: str, at: tuple[int, int]) -> Shape:
        if not isinstance(record, RecordShape):
            return None
        known, shape = record.field(name)
        if known:
            return shape
        names = [n for n, _ in record.fields]
        close = difflib.get_close_matches(name, names, n=3)
        hint = (" (did you mean " + ", ".join(f"'{c}'" for c in close) + "?)") if close else (
            "; its fields: " + ", ".join(names)
        )
        article = "an" if record.kind[:1] in "aeiouAEIOU" else "a"
        raise self.error(*at, f"{article} {record.kind} record has no field '{name}'{hint}")

    def shape(self, node: ast.expr, scope: Mapping[str, Shape]) -> Shape:
        if isinstance(node, ast.Name):
            if node.id in scope:
                return scope[node.id]
            return self.shapes.get(node.id)
        if isinstance(node, ast.Attribute):
            record = self.shape(node.value, scope)
            line = node.end_lineno or node.lineno
            col = (node.end_col_offset or 0) - len(node.attr.encode("utf-8"))
            return self.field(record, node.attr, (line, col))
        if isinstance(node, ast.Subscript):
            container = self.shape(node.value, scope)
            key = node.slice
            self.shape(key, scope)
            if isinstance(container, RecordShape):
                if isinstance(key, ast.Constant) and isinstance(key.value, str):
                    return self.field(container, key.value, (key.lineno, key.col_offset))
                return None
            if isinstance(container, ListShape):
                return container if isinstance(key, ast.Slice) else container.item
            if isinstance(container, MapShape):
                return container.item
            return None
        if isinstance(node, ast.Call):
            func = node.func
            for arg in node.args:
                if isinstance(arg, ast.GeneratorExp):
                    self.generator(arg, scope)
                else:
                    self.shape(arg, scope)
            if isinstance(func, ast.Name) and func.id not in scope:
                if func.id in ("min", "max") and len(node.args) == 1:
                    source = self.shape_of_items(node.args[0], scope)
                    return source
                if func.id in BUILTINS:
                    return None
                target = self.shapes.get(func.id)
                return target.result if isinstance(target, FunctionShape) else None
            return None
        if isinstance(node, ast.IfExp):
            self.shape(node.test, scope)
            body, orelse = self.shape(node.body, scope), self.shape(node.orelse, scope)
            return body if body == orelse else None
        if isinstance(node, ast.GeneratorExp):
            self.generator(node, scope)
            return None
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.expr):
                self.shape(child, scope)
        return None

    def shape_of_items(self, node: ast.expr, scope: Mapping[str, Shape]) -> Shape:
        """The shape of one item `min`/`max` can pick from its argument."""
        if isinstance(node, ast.GeneratorExp):
            inner = self.bind(node, scope)
            return self.shape(node.elt, inner)
        source = self.shape(node, scope)
        return source.item if isinstance(source, ListShape) else None

    def bind(self, node: ast.GeneratorExp, scope: Mapping[str, Shape]) -> dict[str, Shape]:
        inner = dict(scope)
        for comp in node.generators:
            source = self.shape(comp.iter, inner)
            if isinstance(comp.target, ast.Name):
                inner[comp.target.id] = source.item if isinstance(source, ListShape) else None
            for cond in comp.ifs:
                self.shape(cond, inner)
        return inner

    def generator(self, node: ast.GeneratorExp, scope: Mapping[str, Shape]) -> None:
        self.shape(node.elt, self.bind(node, scope))
