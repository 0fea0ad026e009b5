"""The property expression language: what it evaluates and what it rejects."""

from __future__ import annotations

import ast
import builtins
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from checker.expr import EvalError, ExprError, compile_expr

CPUS = [
    {"id": 0, "halted": False, "rip": 0x1000, "flags": {"IF": True}},
    {"id": 1, "halted": True, "rip": 0x2000, "flags": {"IF": False}},
    {"id": 2, "halted": True, "rip": 0x3000, "flags": {"IF": True}},
]
VOCAB: dict[str, Any] = {
    "cpus": CPUS,
    "cpu": CPUS,
    "nmi_pending": 0b101,
    "ist": "shared",
    "any_shutdown": False,
    "depth": 3,
    "frames": (1, 2, 3, 4),
    "on_stack": lambda cpu, addr: cpu == 1 and addr > 0x10,
}


def ev(source: str, vocab: dict[str, Any] | None = None) -> Any:
    return compile_expr(source).evaluate(VOCAB if vocab is None else vocab)


@pytest.mark.parametrize(
    ("source", "value"),
    [
        ("depth", 3),
        ("depth == 3", True),
        ("depth != 3", False),
        ("0 < depth <= 3", True),
        ("0 < depth < 3", False),
        ("ist == 'shared'", True),
        ('ist in ("shared", "separate")', True),
        ("ist not in ['shared']", False),
        ("cpu[1].halted", True),
        ("cpu[0].flags.IF and not cpu[1].flags.IF", True),
        ("cpus[-1].id", 2),
        ("frames[1:3]", (2, 3)),
        ("frames[::2]", (1, 3)),
        ("len(frames)", 4),
        ("depth + 2 * 3 - 1", 8),
        ("depth // 2", 1),
        ("depth % 2", 1),
        ("-depth", -3),
        ("~0 & 0xff", 0xFF),
        ("nmi_pending & 1", 1),
        ("(nmi_pending >> 2) & 1", 1),
        ("nmi_pending | 0b10", 0b111),
        ("nmi_pending ^ 0b1", 0b100),
        ("1 << 4", 16),
        ("all(c.halted for c in cpus if c.id != 0)", True),
        ("any(c.halted for c in cpus)", True),
        ("all(c.halted for c in cpus)", False),
        ("count(c.halted for c in cpus)", 2),
        ("count(c.flags.IF for c in cpus if c.halted)", 1),
        ("sum(c.rip for c in cpus) // 0x1000", 6),
        ("max(c.rip for c in cpus)", 0x3000),
        ("min(depth, 7)", 3),
        ("max(frames)", 4),
        ("any(any(f == c.id for f in frames) for c in cpus)", True),
        ("depth if any_shutdown else -1", -1),
        ("any_shutdown or depth", 3),
        ("any_shutdown and depth", False),
        ("depth > 1 and depth < 5 and ist == 'shared'", True),
        ("any_shutdown or depth > 5 or ist == 'x'", False),
        ("on_stack(1, 0x20)", True),
        ("on_stack(0, 0x20)", False),
        ("any(on_stack(c.id, c.rip) for c in cpus)", True),
        ("None == None", True),
        ("True", True),
    ],
)
def test_evaluates(source: str, value: Any) -> None:
    assert ev(source) == value


def test_generator_names_are_local_and_shadow_nothing() -> None:
    expr = compile_expr("all(depth > 0 for depth in frames) and depth == 3")
    assert expr.names == {"frames", "depth"}
    assert expr.evaluate(VOCAB) is True


def test_names_are_the_vocabulary_names_used() -> None:
    source = "all(c.halted for c in cpus if c.id != depth) or on_stack(1, 2)"
    expr = compile_expr(source)
    assert expr.names == {"cpus", "depth", "on_stack"}
    assert [(r.name, r.col) for r in expr.refs] == [
        (name, source.index(name) + 1) for name in ("cpus", "depth", "on_stack")
    ]


def test_unknown_names_are_rejected_with_column_and_suggestion() -> None:
    expr = compile_expr("cpus and any_shutdwn")
    with pytest.raises(ExprError) as err:
        expr.check_names({"cpus": "", "any_shutdown": ""})
    assert err.value.col == 10
    assert "unknown name 'any_shutdwn'" in err.value.message
    assert "any_shutdown" in err.value.message


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("__import__('os')", "'__import__'"),
        ("().__class__", "attribute '__class__'"),
        ("cpus.__class__.__bases__", "attribute '__class__'"),
        ("cpus._private", "attribute '_private'"),
        ("_x", "name '_x'"),
        ("lambda: 1", "lambda"),
        ("(lambda x: x)(1)", "lambda"),
        ("[c for c in cpus]", "list comprehension"),
        ("{c for c in cpus}", "set comprehension"),
        ("{c: 1 for c in cpus}", "dict comprehension"),
        ("{1: 2}", "dict display"),
        ("{1, 2}", "set display"),
        ("len(*frames)", "starred"),
        ("max(frames, key=len)", "keyword argument"),
        ("(x := 1)", ":="),
        ("f'{depth}'", "f-string"),
        ("depth / 2", "true division"),
        ("depth ** 2", "power"),
        ("depth is None", "'is'"),
        ("depth is not None", "'is not'"),
        ("1.5", "float"),
        ("b'x'", "bytes"),
        ("open('x')", "unknown"),  # a plain name: rejected when names are checked
        ("cpus.copy()", "only named functions"),
        ("getattr(cpus, 'x')", "unknown"),
        ("eval('1')", "unknown"),
        ("any(c for c in cpus for d in cpus)", "only one 'for'"),
        ("any(c for c, d in cpus)", "single name"),
        ("(c for c in cpus)", "only allowed as the argument"),
        ("len", "is a function"),
        ("depth(1)" if False else "depth[", "syntax error"),
        ("", "empty expression"),
        ("x = 1", "syntax error"),
        ("import os", "syntax error"),
        ("...", "ellipsis"),
    ],
)
def test_rejects(source: str, fragment: str) -> None:
    with pytest.raises(ExprError) as err:
        expr = compile_expr(source)
        expr.check_names({k: "" for k in VOCAB})
    assert fragment.lower() in err.value.message.lower()


def test_rejection_names_the_column() -> None:
    with pytest.raises(ExprError) as err:
        compile_expr("depth == 1 and (lambda: 1)")
    assert err.value.col == 17
    assert err.value.message == "lambda is not allowed in a property expression"
    with pytest.raises(ExprError) as err:
        compile_expr("depth and cpus.__class__")
    assert err.value.col == 16


def test_syntax_error_has_a_column() -> None:
    with pytest.raises(ExprError) as err:
        compile_expr("depth == == 1")
    assert err.value.message.startswith("syntax error")
    assert err.value.col == 10


def test_multi_line_expression() -> None:
    expr = compile_expr("all(c.halted\n    for c in cpus\n    if c.id != 0)")
    assert expr.evaluate(VOCAB) is True
    expr = compile_expr("depth > 1\nand ist == 'shared'")
    assert expr.evaluate(VOCAB) is True
    with pytest.raises(ExprError) as err:
        compile_expr("depth > 1 and\n (lambda: 2)")
    assert err.value.line == 2
    assert err.value.col == 3


def test_attribute_access_is_item_lookup_never_getattr() -> None:
    class Sneaky(dict[str, Any]):
        secret = "attribute"

    vocab = {"r": Sneaky(field=1)}
    assert ev("r.field", vocab) == 1
    with pytest.raises(EvalError, match="no field 'secret'"):
        ev("r.secret", vocab)
    with pytest.raises(EvalError, match="has no fields"):
        ev("r.field.real", vocab)


def test_evaluation_errors_are_eval_errors_naming_the_subexpression() -> None:
    with pytest.raises(EvalError, match=r"cpu\[9\]: no element 9"):
        ev("cpu[9].halted")
    with pytest.raises(EvalError, match="ist - 1"):
        ev("ist - 1")
    with pytest.raises(EvalError, match="not a function"):
        ev("depth(1)")
    with pytest.raises(EvalError, match="not iterable"):
        ev("any(x for x in depth)")
    with pytest.raises(EvalError, match="shift count"):
        ev("1 << 100000")
    with pytest.raises(EvalError, match="repeating a sequence"):
        ev("ist * (1 << 40)")
    assert ev("ist * 2") == "sharedshared"
    with pytest.raises(EvalError, match="depth // 0"):
        ev("depth // 0")


def test_nothing_is_compiled_to_bytecode(monkeypatch: pytest.MonkeyPatch) -> None:
    real_compile = builtins.compile
    calls: list[str] = []

    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("user text must never reach eval/exec")

    def ast_only(source: Any, filename: Any, mode: str, flags: int = 0, *a: Any, **k: Any) -> Any:
        # ast.parse calls compile() with PyCF_ONLY_AST: that builds a tree, no bytecode.
        if not flags & ast.PyCF_ONLY_AST:
            raise AssertionError("user text must never be compiled to bytecode")
        calls.append(source)
        return real_compile(source, filename, mode, flags, *a, **k)

    monkeypatch.setattr(builtins, "eval", forbidden)
    monkeypatch.setattr(builtins, "exec", forbidden)
    monkeypatch.setattr(builtins, "compile", ast_only)
    expr = compile_expr("all(c.halted for c in cpus if c.id != 0) and depth == 3")
    monkeypatch.undo()
    assert calls  # the parser really went through the guarded path
    assert expr.evaluate(VOCAB) is True


@given(st.integers(-(2**64), 2**64), st.integers(-(2**64), 2**64))
def test_arithmetic_matches_python(a: int, b: int) -> None:
    vocab = {"a": a, "b": b}
    assert ev("a + b * 3 - (a & b) | (a ^ b)", vocab) == a + b * 3 - (a & b) | (a ^ b)
    assert ev("a < b or a == b", vocab) == (a < b or a == b)
    if b:
        assert ev("a // b + a % b", vocab) == a // b + a % b


@given(st.lists(st.booleans(), max_size=10))
def test_quantifiers_match_python(flags: list[bool]) -> None:
    vocab = {"xs": [{"on": f} for f in flags]}
    assert ev("all(x.on for x in xs)", vocab) == all(flags)
    assert ev("any(x.on for x in xs)", vocab) == any(flags)
    assert ev("count(x.on for x in xs)", vocab) == sum(flags)
    assert ev("len(xs)", vocab) == len(flags)
