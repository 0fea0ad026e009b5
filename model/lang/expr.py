"""Expressions inside design files: immediates (`$TRAP_nmi`, `$top(primary)-8`) and
pseudo-C conditions (`!crash_save_done && waiting > 0`).

Parsed with Python's `ast` under a whitelist into plain tuples (see ir.Expr); nothing in
a design file is ever executed as Python.
"""

from __future__ import annotations

import ast
import re

from checker.errors import InputError
from model.lang.ir import Expr, Loc

_BINOPS: dict[type, str] = {
    ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.FloorDiv: "/", ast.Div: "/", ast.Mod: "%",
    ast.LShift: "<<", ast.RShift: ">>", ast.BitAnd: "&", ast.BitOr: "|", ast.BitXor: "^",
}
_CMPOPS: dict[type, str] = {
    ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=",
}
_UNOPS: dict[type, str] = {ast.USub: "-", ast.Invert: "~", ast.Not: "!"}

_C_TO_PY = [
    (re.compile(r"&&"), " and "),
    (re.compile(r"\|\|"), " or "),
    (re.compile(r"!(?!=)"), " not "),
    (re.compile(r"\btrue\b"), "1"),
    (re.compile(r"\bfalse\b"), "0"),
]


def _c_to_python(text: str) -> str:
    for pattern, repl in _C_TO_PY:
        text = pattern.sub(repl, text)
    # C's `%rax` register syntax: turn into a call the whitelist understands.
    return re.sub(r"%([a-z0-9]+)", r"__reg__('\1')", text)


def parse_expr(text: str, loc: Loc, consts: dict[str, int] | None = None) -> Expr:
    """Parse a C-like expression into an Expr tuple; constants fold in `consts`."""
    source = _c_to_python(text.strip())
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError as e:
        raise InputError(f"malformed expression {text.strip()!r}: {e.msg}", loc.file, loc.line)
    return _convert(tree.body, text, loc, consts or {})


def _convert(node: ast.AST, text: str, loc: Loc, consts: dict[str, int]) -> Expr:
    def bad(what: str) -> InputError:
        return InputError(f"{what} is not allowed in expression {text.strip()!r}", loc.file, loc.line)

    def conv(n: ast.AST) -> Expr:
        return _convert(n, text, loc, consts)

    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool):
            return ("const", int(node.value))
        if isinstance(node.value, int):
            return ("const", node.value)
        if isinstance(node.value, str):
            return ("str", node.value)
        raise bad(f"the constant {node.value!r}")
    if isinstance(node, ast.Name):
        if node.id in consts:
            return ("const", consts[node.id])
        if node.id in ("cpu", "smp_processor_id"):
            return ("cpu",)
        if node.id == "ncpus":
            return ("ncpus",)
        return ("var", node.id)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        return _fold(("binop", _BINOPS[type(node.op)], conv(node.left), conv(node.right)))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNOPS:
        return _fold(("unop", _UNOPS[type(node.op)], conv(node.operand)))
    if isinstance(node, ast.BoolOp):
        op = "&&" if isinstance(node.op, ast.And) else "||"
        result = conv(node.values[0])
        for v in node.values[1:]:
            result = ("binop", op, result, conv(v))
        return result
    if isinstance(node, ast.Compare):
        if len(node.ops) != 1 or type(node.ops[0]) not in _CMPOPS:
            raise bad("a chained or membership comparison")
        return ("binop", _CMPOPS[type(node.ops[0])], conv(node.left), conv(node.comparators[0]))
    if isinstance(node, ast.Subscript):
        if not isinstance(node.value, ast.Name):
            raise bad("indexing anything but a name")
        return ("index", node.value.id, conv(node.slice))
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name) or node.keywords:
            raise bad("this call")
        name = node.func.id
        if name == "__reg__":
            arg = node.args[0]
            assert isinstance(arg, ast.Constant)
            return ("reg", str(arg.value))
        if name == "top" and len(node.args) == 1 and isinstance(node.args[0], ast.Name):
            return ("top", node.args[0].id)
        if name == "smp_processor_id" and not node.args:
            return ("cpu",)
        return ("call", name, tuple(conv(a) for a in node.args))
    raise bad(type(node).__name__)


def _fold(e: Expr) -> Expr:
    """Fold constant arithmetic so immediates such as `$TRAP_nmi << 3` are plain ints."""
    if e[0] == "binop" and e[2][0] == "const" and e[3][0] == "const":
        value = binop(e[1], e[2][1], e[3][1])
        if isinstance(value, int):
            return ("const", value)
    if e[0] == "unop" and e[2][0] == "const":
        return ("const", unop(e[1], e[2][1]))
    return e


def binop(op: str, a: int, b: int) -> int:
    """Integer semantics of the design language's binary operators (64-bit wrap)."""
    if op == "+":
        r = a + b
    elif op == "-":
        r = a - b
    elif op == "*":
        r = a * b
    elif op == "/":
        r = a // b if b else 0
    elif op == "%":
        r = a % b if b else 0
    elif op == "<<":
        r = a << b
    elif op == ">>":
        r = a >> b
    elif op == "&":
        r = a & b
    elif op == "|":
        r = a | b
    elif op == "^":
        r = a ^ b
    elif op == "==":
        return int(a == b)
    elif op == "!=":
        return int(a != b)
    elif op == "<":
        return int(a < b)
    elif op == "<=":
        return int(a <= b)
    elif op == ">":
        return int(a > b)
    elif op == ">=":
        return int(a >= b)
    elif op == "&&":
        return int(bool(a) and bool(b))
    elif op == "||":
        return int(bool(a) or bool(b))
    else:
        raise ValueError(op)
    return r & 0xFFFF_FFFF_FFFF_FFFF if r >= 0 else r & 0xFFFF_FFFF_FFFF_FFFF


def unop(op: str, a: int) -> int:
    if op == "-":
        return (-a) & 0xFFFF_FFFF_FFFF_FFFF
    if op == "~":
        return (~a) & 0xFFFF_FFFF_FFFF_FFFF
    if op == "!":
        return int(not a)
    raise ValueError(op)


def names_in(e: Expr) -> set[str]:
    """Variable names an expression reads."""
    kind = e[0]
    if kind == "var":
        return {e[1]}
    if kind == "index":
        return {e[1]} | names_in(e[2])
    if kind == "binop":
        return names_in(e[2]) | names_in(e[3])
    if kind == "unop":
        return names_in(e[2])
    if kind == "call":
        out: set[str] = set()
        for a in e[2]:
            out |= names_in(a)
        return out
    return set()
