"""Expressions inside design files: immediates (`$TRAP_nmi`, `$top(primary)-8`) and
pseudo-C conditions (`!crash_save_done && waiting > 0`).

Parsed with Python's `ast` under a whitelist into expression nodes (see ir.Expr); nothing in
a design file is ever executed as Python.
"""

from __future__ import annotations

import ast
import re

from checker.errors import InputError
from model.lang.ir import (
    Binary,
    Call,
    Const,
    Expr,
    Index,
    Loc,
    NCpus,
    RegValue,
    StackTop,
    ThisCpu,
    Unary,
    Var,
)
from model.x86.state import REGISTERS

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


# The registers an expression may read (`%rsp` included); 32-bit names are not values here.
EXPR_REGISTERS = frozenset(REGISTERS) | {"rsp"}

# Functions an expression may call: name -> number of arguments (`top` is handled apart).
FUNCTIONS = {"per_cpu": 2, "nmi_blocked": 0, "mem": 1, "smp_processor_id": 0}


def _register(m: re.Match[str]) -> str:
    # `%` after an operand (`i % 4`, `x%n`, `(a)%b`) is C's modulo, not a register.
    before = m.string[: m.start()].rstrip()
    operand = before and (before[-1].isalnum() or before[-1] in "_)]")
    if operand and not re.search(r"\b(not|and|or)$", before):  # `!`, `&&`, `||` became these
        return m.group(0)
    return f"__reg__('{m.group(1)}')"


def _c_to_python(text: str) -> str:
    for pattern, repl in _C_TO_PY:
        text = pattern.sub(repl, text)
    # C's `%rax` register syntax: turn into a call the whitelist understands.
    return re.sub(r"%([a-z][a-z0-9]*)", _register, text)


def parse_expr(text: str, loc: Loc, consts: dict[str, int] | None = None) -> Expr:
    """Parse a C-like expression into an expression tree; constants fold in `consts`."""
    # `!x` becomes ` not x`: strip again, or Python reads the space as an indent.
    source = _c_to_python(text.strip()).strip()
    try:
        tree = ast.parse(source, mode="eval")
        return _convert(tree.body, text, loc, consts or {})
    except SyntaxError as e:
        raise InputError(
            f"malformed expression {_short(text)}: {e.msg}", loc.file, loc.line
        ) from None
    except RecursionError:
        raise InputError("expression too deeply nested", loc.file, loc.line) from None
    except MemoryError:
        raise InputError(f"expression {_short(text)} is too large", loc.file, loc.line) from None


def _short(text: str) -> str:
    """An expression as a message quotes it: at most 60 characters."""
    t = text.strip()
    return repr(t) if len(t) <= 60 else repr(t[:57]) + "..."


def _convert(node: ast.AST, text: str, loc: Loc, consts: dict[str, int]) -> Expr:
    def bad(what: str) -> InputError:
        return InputError(
            f"{what} is not allowed in expression {text.strip()!r}", loc.file, loc.line
        )

    def conv(n: ast.AST) -> Expr:
        return _convert(n, text, loc, consts)

    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool):
            return Const(int(node.value))
        if isinstance(node.value, int):
            if node.value >> 64:
                raise InputError(
                    f"the number {_short(hex(node.value))[1:-1]} does not fit in 64 bits",
                    loc.file, loc.line,
                )
            return Const(node.value)
        raise bad(f"the constant {node.value!r}")
    if isinstance(node, ast.Name):
        if node.id in consts:
            return Const(consts[node.id])
        if node.id in ("cpu", "smp_processor_id"):
            return ThisCpu()
        if node.id == "ncpus":
            return NCpus()
        return Var(node.id)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        op, left, right = _BINOPS[type(node.op)], conv(node.left), conv(node.right)
        if op in ("<<", ">>") and isinstance(right, Const) and right.value >= 64:
            # C leaves it undefined and x86 masks the count to 6 bits: say so, rather
            # than pick a value.
            raise InputError(
                f"shift count {right.value:#x} in {_short(text)} is 64 or more (values are 64 "
                "bits; C leaves such a shift undefined, x86 masks the count)",
                loc.file, loc.line,
            )
        return _fold(Binary(op, left, right))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNOPS:
        return _fold(Unary(_UNOPS[type(node.op)], conv(node.operand)))
    if isinstance(node, ast.BoolOp):
        op = "&&" if isinstance(node.op, ast.And) else "||"
        result = conv(node.values[0])
        for v in node.values[1:]:
            result = _fold(Binary(op, result, conv(v)))
        return result
    if isinstance(node, ast.Compare):
        if len(node.ops) != 1 or type(node.ops[0]) not in _CMPOPS:
            raise bad("a chained or membership comparison")
        return _fold(
            Binary(_CMPOPS[type(node.ops[0])], conv(node.left), conv(node.comparators[0]))
        )
    if isinstance(node, ast.Subscript):
        if not isinstance(node.value, ast.Name):
            raise bad("indexing anything but a name")
        return Index(node.value.id, conv(node.slice))
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name) or node.keywords:
            raise bad("this call")
        name = node.func.id
        args = node.args
        if name == "__reg__":
            if len(args) != 1 or not isinstance(args[0], ast.Constant) or not isinstance(
                args[0].value, str
            ):
                raise bad("this call")
            reg = args[0].value
            if reg not in EXPR_REGISTERS:
                raise InputError(
                    f"unknown register %{reg} in expression {text.strip()!r} "
                    "(expressions read 64-bit registers: %rax, %rsp, ...)",
                    loc.file,
                    loc.line,
                )
            return RegValue(reg)
        if name == "top":
            # top(STACK), or top(STACK[i]) for CPU i's instance of a per-CPU stack
            if len(args) == 1 and isinstance(args[0], ast.Name):
                return StackTop(args[0].id)
            if (
                len(args) == 1
                and isinstance(args[0], ast.Subscript)
                and isinstance(args[0].value, ast.Name)
                and isinstance(args[0].slice, ast.Constant)
                and type(args[0].slice.value) is int
            ):
                return StackTop(f"{args[0].value.id}[{args[0].slice.value}]")
            raise bad("top() of anything but a stack name")
        if name not in FUNCTIONS:
            known = ", ".join(sorted(FUNCTIONS) + ["top"])
            raise InputError(
                f"unknown function {name!r} in expression {text.strip()!r} (functions: {known})",
                loc.file,
                loc.line,
            )
        if len(args) != FUNCTIONS[name]:
            raise bad(f"{name}() with {len(args)} argument(s) (it takes {FUNCTIONS[name]})")
        if name == "smp_processor_id":
            return ThisCpu()
        if name == "per_cpu" and not isinstance(args[0], ast.Name):
            raise bad("per_cpu() of anything but a variable name")
        return Call(name, tuple(conv(a) for a in args))
    raise bad(type(node).__name__)


def _fold(e: Expr) -> Expr:
    """Fold constant arithmetic so immediates such as `$TRAP_nmi << 3` are plain ints."""
    match e:
        case Binary(op, Const(a), Const(b)):
            return Const(binop(op, a, b))
        case Unary(op, Const(a)):
            return Const(unop(op, a))
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
        r = a << b if b < 64 else 0  # the same 64 bits, without building a huge integer
    elif op == ">>":
        r = a >> b if b < 64 else 0
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
    return r & 0xFFFF_FFFF_FFFF_FFFF


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
    match e:
        case Var(name):
            return {name}
        case Index(name, index):
            return {name} | names_in(index)
        case Binary(_, left, right):
            return names_in(left) | names_in(right)
        case Unary(_, operand):
            return names_in(operand)
        case Call(_, args):
            out: set[str] = set()
            for a in args:
                out |= names_in(a)
            return out
    return set()
