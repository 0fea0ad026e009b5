"""Stable 64-bit fingerprints of states, for `--compact` exploration.

A fingerprint must be a well-mixed function of the state's *value*: the same in every
process and on every run (so a collision, if one ever happens, reproduces), and spread
over all 2^64 values (so the collision probability the report prints is honest). Python's
`hash()` is neither: it is salted per process for strings, and it reduces integers modulo
2^61 - 1, so 0 and 2^61 - 1 collide by construction (issue 13).

States are encoded as bytes by structure, with a type tag before each value and a length
before each sequence, so two different values never share an encoding, and the bytes are
hashed with BLAKE2b. NamedTuples are tagged with their class name: a code address and a
symbolic term that happen to hold the same fields are different values.

`fingerprint64` hashes exactly `encode_state`'s bytes, but keeps the encodings of the
tuples near a state's root (its components, their components, ...) keyed by the tuple
object itself: a successor shares most of its components with its parent (the CPUs that
did not step, memory, IDTs, TSSs), so those are encoded once, not once per successor
(a kexec state has about 365 nodes): the successors of one state after the first find
them there. The cache holds the tuple (so its identity cannot be reused by another
object) and is emptied when it grows past `_CACHE_LIMIT` entries (a few MiB); the
fingerprint does not depend on what it holds.
"""

from __future__ import annotations

import enum
from collections.abc import Hashable
from hashlib import blake2b
from typing import Any

from checker.symbolic import Term

FINGERPRINT_BITS = 64


def _encode(value: Any, out: list[bytes]) -> None:
    t = type(value)
    if t is int:
        out.append(b"i%x;" % value if value >= 0 else b"j%x;" % -value)
    elif t is str:
        data = value.encode("utf-8", "surrogatepass")
        out.append(b"s%d:" % len(data))
        out.append(data)
    elif t is tuple:
        out.append(b"t%d(" % len(value))
        for v in value:
            _encode(v, out)
    elif value is None:
        out.append(b"N")
    elif t is bool:
        out.append(b"T" if value else b"F")
    elif isinstance(value, enum.Enum):
        name = t.__qualname__.encode()
        out.append(b"e%d:" % len(name))
        out.append(name)
        _encode(value.value, out)
    elif t is Term:  # encoded as it was when a term was a NamedTuple (op, args)
        out.append(b"n4:Term2(")
        _encode(value.op, out)
        _encode(value.args, out)
    elif isinstance(value, tuple):  # a NamedTuple or another tuple subclass
        name = t.__qualname__.encode()
        out.append(b"n%d:" % len(name))
        out.append(name)
        out.append(b"%d(" % len(value))
        for v in value:
            _encode(v, out)
    elif isinstance(value, int):  # an int subclass that is no enum
        _encode(int(value), out)
    elif t is float:
        out.append(b"f" + float.hex(value).encode() + b";")
    elif t is bytes:
        out.append(b"b%d:" % len(value))
        out.append(value)
    elif isinstance(value, frozenset):
        parts = []
        for v in value:
            sub: list[bytes] = []
            _encode(v, sub)
            parts.append(b"".join(sub))
        out.append(b"z%d(" % len(parts))
        out.extend(sorted(parts))
    else:
        # Anything else must at least say what it is: its class and its repr. A model
        # whose states hold such values should make the repr show the whole value.
        name = t.__qualname__.encode()
        text = repr(value).encode("utf-8", "surrogatepass")
        out.append(b"r%d:%d:" % (len(name), len(text)))
        out.append(name)
        out.append(text)


def encode_state(state: Hashable) -> bytes:
    """The canonical byte encoding of a state: equal encodings only for equal values."""
    out: list[bytes] = []
    _encode(state, out)
    return b"".join(out)


def fingerprint64(state: Hashable) -> int:
    """A stable, well-mixed 64-bit fingerprint (BLAKE2b of the canonical encoding)."""
    out: list[bytes] = []
    _encode_near_root(state, out, _CACHE_DEPTH, keep=False)  # a state is fingerprinted once
    digest = blake2b(b"".join(out), digest_size=FINGERPRINT_BITS // 8).digest()
    return int.from_bytes(digest, "little")


# The tuples within this many levels of a state's root have their encodings cached.
_CACHE_DEPTH = 4
_CACHE_LIMIT = 8192
# id(tuple) -> (the tuple, its encoding)
_cache: dict[int, tuple[tuple[Any, ...], bytes]] = {}


def _encode_near_root(value: Any, out: list[bytes], depth: int, keep: bool = True) -> None:
    """`_encode`, with the encodings of tuples (plain or NamedTuple) cached by identity
    (`keep`: this one's too)."""
    t = type(value)
    if t is tuple:
        header = b"t%d(" % len(value)
    elif isinstance(value, tuple) and not isinstance(value, enum.Enum) and t is not Term:
        name = t.__qualname__.encode()
        header = b"n%d:%s%d(" % (len(name), name, len(value))
    else:
        _encode(value, out)
        return
    key = id(value)
    hit = _cache.get(key)
    if hit is not None and hit[0] is value:
        out.append(hit[1])
        return
    parts = [header]
    if depth > 1:
        for v in value:
            _encode_near_root(v, parts, depth - 1)
    else:
        for v in value:
            _encode(v, parts)
    encoded = b"".join(parts)
    if not keep:
        out.append(encoded)
        return
    if len(_cache) >= _CACHE_LIMIT:
        _cache.clear()
    _cache[key] = (value, encoded)
    out.append(encoded)
