"""`--compact` fingerprints (issue 13): stable across processes and free of the
constructed collisions of Python's hash()."""

from __future__ import annotations

import enum
import subprocess
import sys
from typing import NamedTuple

from hypothesis import given
from hypothesis import strategies as st

from checker.fingerprint import encode_state, fingerprint64


class Addr(NamedTuple):
    routine: str
    index: int


class Term(NamedTuple):
    op: str
    args: tuple[object, ...]


class Run(enum.IntEnum):
    RUNNING = 0
    HALTED = 1


def test_integers_that_python_hash_equates_get_different_fingerprints() -> None:
    # hash() reduces integers modulo 2**61 - 1: these pairs collide there by construction.
    m = (1 << 61) - 1
    assert hash(0) == hash(m) and hash(1) == hash(m + 1)
    assert fingerprint64((0,)) != fingerprint64((m,))
    assert fingerprint64(("x", 1)) != fingerprint64(("x", m + 1))
    assert hash(-1) == hash(-2)
    assert fingerprint64(-1) != fingerprint64(-2)


def test_the_same_value_in_another_process_has_the_same_fingerprint() -> None:
    state = (("cpu0", Addr("nmi_entry", 3)), frozenset({"a", "b", "c"}), Run.HALTED)
    here = fingerprint64(state)
    code = (
        "import enum, sys\n"
        "from typing import NamedTuple\n"
        "from checker.fingerprint import fingerprint64\n"
        "class Addr(NamedTuple):\n    routine: str\n    index: int\n"
        "class Run(enum.IntEnum):\n    RUNNING = 0\n    HALTED = 1\n"
        "print(fingerprint64((('cpu0', Addr('nmi_entry', 3)), frozenset({'a', 'b', 'c'}),"
        " Run.HALTED)))\n"
    )
    for seed in ("1", "2", "12345"):
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True,
            env={"PYTHONHASHSEED": seed, "PATH": "", **_pythonpath()},
        )
        assert int(out.stdout) == here


def _pythonpath() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k in ("PYTHONPATH", "VIRTUAL_ENV")}


def test_types_are_part_of_the_value() -> None:
    # A code address and a symbolic term with the same fields compare equal as tuples,
    # but they are different machine values.
    assert encode_state(Addr("x", 1)) != encode_state(Term("x", (1,)))
    assert encode_state(("ab", "c")) != encode_state(("a", "bc"))
    assert encode_state(True) != encode_state(1)


values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(1 << 70), max_value=1 << 70)
    | st.text(max_size=5),
    lambda inner: st.tuples(inner, inner) | st.lists(inner, max_size=3).map(tuple),
    max_leaves=12,
)


@given(values, values)
def test_different_values_have_different_encodings(a: object, b: object) -> None:
    if encode_state(a) == encode_state(b):
        assert a == b and type(a) is type(b)
