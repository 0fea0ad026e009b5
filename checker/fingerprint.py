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

`fingerprint64` does not hash a whole state's encoding (a kexec state has about 365
nodes, and walking them in Python cost ~60 us a successor, five times the step that made
it). It hashes the *digest encoding* (`digest_encoding`): the state's root, in which each
tuple within `_DIGEST_DEPTH` levels of it (the machine, its CPU records, memory, frames,
descriptor tables) stands as the 16-byte BLAKE2b digest of its own encoding. That is
still a function of the value, the same in every process, and injective but for a
128-bit digest collision. The digests are remembered by value (a run's states share a
few thousand distinct CPU records and tables) and, for the state fingerprinted last, by
identity (its successors share most of its parts as objects). Remembering by value
makes parts equal under `==` (True and 1, a NamedTuple and a plain tuple of the same
fields) share the digest found first, which is how a plain run's visited dict keys
states; a model whose equal states are meant to differ must make them unequal.
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
    """A stable, well-mixed 64-bit fingerprint: BLAKE2b of the state's digest encoding
    (`digest_encoding`), computed with the digests of its parts remembered (by value, and
    for the state fingerprinted last, by identity)."""
    digest = blake2b(_remembered(state, 0, _last), digest_size=FINGERPRINT_BITS // 8)
    return int.from_bytes(digest.digest(), "little")


def digest_encoding(state: Hashable) -> bytes:
    """The bytes `fingerprint64` hashes, computed without remembering anything: the
    encoding of the state's root, in which each tuple within `_DIGEST_DEPTH` levels of the
    root stands as `h` and the 16-byte BLAKE2b digest of its own encoding (built by the
    same rule one level down; at the last level `encode_state`'s bytes). Different values
    get different bytes but for a digest collision (2^-128 a pair)."""
    return _at_depth(state, 0)


# Tuples at depths 1.._DIGEST_DEPTH below a state's root stand for their digests.
_DIGEST_DEPTH = 3
# Per depth, how many digests are remembered by value before that memory is emptied
# (each keeps its tuple alive: a few MiB in all).
_CACHE_LIMIT = 1 << 14
_caches: list[dict[Any, bytes]] = [{} for _ in range(_DIGEST_DEPTH + 1)]

# The last state's parts, by identity: [object, its encoding, its parts' memos or None].
# Successors share most parts with their parent and with each other (the CPUs that did
# not step, memory, descriptor tables), so most parts are found here without hashing.
_UNSET = object()
_Memo = list  # [object, bytes, list[_Memo] | None]
_last: _Memo = [_UNSET, b"", None]


def _header(value: Any) -> bytes | None:
    """The opening of a tuple's encoding (None: not a tuple)."""
    t = type(value)
    if t is tuple:
        return b"t%d(" % len(value)
    if isinstance(value, tuple) and not isinstance(value, enum.Enum):
        name = t.__qualname__.encode()
        return b"n%d:%s%d(" % (len(name), name, len(value))
    return None


def _at_depth(value: Any, depth: int) -> bytes:
    """The encoding of `value` at `depth` below a state's root, from scratch."""
    header = _header(value)
    if header is None:
        return encode_state(value)
    if depth < _DIGEST_DEPTH:
        encoded = header + b"".join(_at_depth(v, depth + 1) for v in value)
    else:
        encoded = encode_state(value)
    return encoded if not depth else b"h" + blake2b(encoded, digest_size=16).digest()


def _remembered(value: Any, depth: int, memo: _Memo) -> bytes:
    """`_at_depth(value, depth)`, from what is remembered where it can be; `memo` is this
    position's memo in the last state fingerprinted (updated to `value`)."""
    if not isinstance(value, tuple) or isinstance(value, enum.Enum):
        encoded = encode_state(value)
    else:
        cache = _caches[depth]
        hit = cache.get(value) if depth else None
        if hit is not None:
            encoded = hit
        else:
            header = _header(value)
            assert header is not None
            if depth < _DIGEST_DEPTH:
                kids = memo[2]
                if kids is None or len(kids) != len(value):
                    kids = memo[2] = [[_UNSET, b"", None] for _ in value]
                parts = [header]
                below = depth + 1
                for v, kid in zip(value, kids, strict=True):
                    parts.append(kid[1] if kid[0] is v else _remembered(v, below, kid))
                encoded = b"".join(parts)
            else:
                encoded = encode_state(value)
            if depth:
                encoded = b"h" + blake2b(encoded, digest_size=16).digest()
                if len(cache) >= _CACHE_LIMIT:
                    cache.clear()
                cache[value] = encoded
    memo[0] = value
    memo[1] = encoded
    return encoded
