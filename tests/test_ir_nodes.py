"""The typed expression tree of model/lang/ir.py: one node per kind, each a tuple tagged
with its kind, built without the tag, surviving pickling (helper processes) unchanged."""

from __future__ import annotations

import copy
import pickle

from model.lang.expr import names_in, parse_expr
from model.lang.ir import (
    EXPR_NODES,
    Binary,
    Call,
    CodeRef,
    Const,
    Index,
    Loc,
    NCpus,
    RegValue,
    StackTop,
    ThisCpu,
    Unary,
    Var,
    is_expr,
    walk,
)

LOC = Loc("t.design", 1)


def test_each_kind_has_one_node_class_with_its_tag_first() -> None:
    samples = [
        Const(5), Var("x"), RegValue("rax"), ThisCpu(), NCpus(), StackTop("kstack"),
        CodeRef("main", 3), Index("a", Const(1)), Unary("-", Var("x")),
        Binary("+", Var("x"), Const(1)), Call("mem", (Const(8),)),
    ]
    assert {type(n) for n in samples} == set(EXPR_NODES)
    tags = [n[0] for n in samples]
    assert tags == ["const", "var", "reg", "cpu", "ncpus", "top", "code", "index", "unop",
                    "binop", "call"]
    for node in samples:
        assert node.kind == node[0]
        assert is_expr(node)
        assert pickle.loads(pickle.dumps(node)) == node
        assert type(pickle.loads(pickle.dumps(node))) is type(node)
        assert copy.deepcopy(node) == node
    assert not is_expr(("var", "x"))  # a plain tuple is not a node
    assert not is_expr("x")


def test_fields_by_name_and_by_match() -> None:
    e = parse_expr("a[cpu] + 1 == top(kstack)", LOC)
    assert isinstance(e, Binary) and e.op == "=="
    match e:
        case Binary("==", Binary("+", Index("a", ThisCpu()), Const(1)), StackTop("kstack")):
            pass
        case _:
            raise AssertionError(e)
    assert names_in(e) == {"a"}
    assert repr(Binary("+", Var("x"), Const(1))) == "Binary('+', Var('x'), Const(1))"


def test_constant_folding_gives_a_const_node() -> None:
    e = parse_expr("(1 << 3) | 2", LOC)
    assert type(e) is Const and e.value == 10
    assert type(parse_expr("-4", LOC)) is Const


def test_walk_reaches_nested_nodes() -> None:
    e = parse_expr("per_cpu(x, 1) + mem(%rsp)", LOC)
    kinds = [type(n).__name__ for n in walk(e) if is_expr(n)]
    assert kinds == ["Binary", "Call", "Var", "Const", "Call", "RegValue"]
