"""The C preprocessor subset that assembly sources such as Xen's entry.S rely on.

entry.S is run through cpp before GNU as sees it, so its cpp macros are spelled as C
macros: `GET_STACK_END(14)` as an instruction line, `STACK_CPUINFO_FIELD(xen_cr3)(%r14)`
inside an operand, `UNLIKELY_START(nz, tag)` expanding to several `;`-separated
statements. This stage gives the design language the same spelling:

- `#define NAME replacement` (object-like) and `#define NAME(a, b) replacement`
  (function-like), with `#param` (stringify) and `a ## b` (token pasting) in the
  replacement; `#undef NAME`;
- `#ifdef NAME` / `#ifndef NAME` / `#else` / `#endif` on defined names;
- expansion is token-wise on identifiers, as cpp: arguments are macro-expanded before
  substitution (except next to `#`/`##`), and a macro is not expanded again inside its
  own expansion (the recursion guard of C11 6.10.3.4);
- a `;` in a replacement separates statements (as GNU as reads a `;`): each becomes a
  line of its own, all at the invocation's line;
- `#include`, `#if`, `#elif` and the other directives are refused with a `path:line`
  error (a design shares lines with `include "path"`; `.if knob == value` selects
  variants).

Lines keep their numbers: a directive line becomes empty; an expanded line may hold
several statements separated by newlines, which the parser reads at the same line.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from checker.errors import InputError

_DIRECTIVE = re.compile(r"\s*#\s*([A-Za-z_]\w*)\b(.*)$")
_KNOWN = {"define", "undef", "ifdef", "ifndef", "else", "endif"}
_REFUSED = {"include", "if", "elif", "error", "warning", "pragma", "line", "include_next"}
_TOKEN = re.compile(
    r'"(?:[^"\\]|\\.)*"'  # a string literal: never expanded into
    r"|\d[\w.]*"  # a number (0x1f, 8b): not an identifier
    r"|[A-Za-z_]\w*"  # an identifier
    r"|##|#"
    r"|\s+"
    r"|.",
    re.S,
)
_IDENT = re.compile(r"[A-Za-z_]\w*")
_MAX_DEPTH = 64
# Characters the expansions of one design may produce, nested ones counted at every level
# (a measure of the work): `#define B A A`, `#define C B B`, ... doubles at each level.
MAX_CPP_WORK = 4_000_000


@dataclass(frozen=True)
class CppMacro:
    name: str
    params: tuple[str, ...] | None  # None: an object-like macro
    body: str
    line: int


class _Cpp:
    def __init__(self, path: str, origin: Sequence[tuple[str, int]] | None = None):
        self.path = path
        self.origin = origin  # (file, line) of each line, when includes joined files
        self.macros: dict[str, CppMacro] = {}
        self.work = 0  # characters produced by expansions so far (MAX_CPP_WORK)

    def err(self, msg: str, line: int) -> InputError:
        if self.origin is not None and 0 < line <= len(self.origin):
            return InputError(msg, *self.origin[line - 1])
        return InputError(msg, self.path, line)

    def run(self, lines: list[str]) -> list[str]:
        out: list[str] = []
        # (active, taken, line of the #if..., after #else)
        stack: list[tuple[bool, bool, int, bool]] = []
        for n, text in enumerate(lines, 1):
            active = all(e[0] for e in stack)
            m = _DIRECTIVE.match(text)
            if m and (m.group(1) in _KNOWN or m.group(1) in _REFUSED):
                word, rest = m.group(1), m.group(2).strip()
                out.append("")
                if word in ("ifdef", "ifndef"):
                    if not _IDENT.fullmatch(rest):
                        raise self.err(f"write `#{word} NAME`", n)
                    hit = (rest in self.macros) == (word == "ifdef")
                    stack.append((hit and active, hit, n, False))
                elif word == "else":
                    if not stack:
                        raise self.err("#else without #ifdef", n)
                    _, taken, where, in_else = stack.pop()
                    if in_else:
                        raise self.err("#else after #else", n)
                    outer = all(e[0] for e in stack)
                    stack.append((not taken and outer, True, where, True))
                elif word == "endif":
                    if not stack:
                        raise self.err("#endif without #ifdef", n)
                    stack.pop()
                elif not active:
                    continue
                elif word == "define":
                    self.define(rest, n)
                elif word == "undef":
                    if not _IDENT.fullmatch(rest):
                        raise self.err("write `#undef NAME`", n)
                    self.macros.pop(rest, None)
                elif word == "include":
                    raise self.err(
                        "#include is not supported: share design lines with `include \"path\"` "
                        "(a path relative to this file)", n,
                    )
                else:
                    raise self.err(
                        f"#{word} is not supported: only #define, "
                        "#undef, #ifdef, #ifndef, #else and #endif are read (select variants "
                        "with `.if knob == value`)", n,
                    )
                continue
            if not active:
                out.append("")
                continue
            expanded = self.expand(text, n, frozenset(), 0) if self.macros else text
            out.append(expanded)
        if stack:
            raise self.err(f"#{'ifdef'} without #endif", stack[-1][2])
        return out

    def define(self, rest: str, n: int) -> None:
        m = re.match(r"([A-Za-z_]\w*)(\(([^)]*)\))?\s*(.*)$", rest, re.S)
        if not m:
            raise self.err("write `#define NAME replacement` or `#define NAME(a, b) replacement`",
                           n)
        params: tuple[str, ...] | None = None
        if m.group(2) is not None:
            inner = m.group(3).strip()
            params = tuple(p.strip() for p in inner.split(",")) if inner else ()
            for p in params:
                if not _IDENT.fullmatch(p):
                    raise self.err(f"bad parameter {p!r} of macro {m.group(1)}: write "
                                   "`#define NAME(a, b) ...`", n)
            if len(set(params)) != len(params):
                raise self.err(f"macro {m.group(1)} has two parameters of the same name", n)
        body = m.group(4).strip()
        if body.startswith("##") or body.endswith("##"):
            raise self.err(f"'##' cannot be at either end of macro {m.group(1)}'s replacement", n)
        self.macros[m.group(1)] = CppMacro(m.group(1), params, body, n)

    def expand(self, text: str, n: int, disabled: frozenset[str], depth: int) -> str:
        if depth > _MAX_DEPTH:
            raise self.err("cpp macros nest too deeply", n)
        out: list[str] = []
        i = 0
        while i < len(text):
            t = _TOKEN.match(text, i)
            assert t is not None
            word = t.group(0)
            i = t.end()
            mac = self.macros.get(word)
            if mac is None or word in disabled or not _IDENT.fullmatch(word):
                out.append(word)
                continue
            if mac.params is None:
                out.append(self.expand(self.split(mac.body), n, disabled | {word}, depth + 1))
                continue
            j = i
            while j < len(text) and text[j] in " \t":
                j += 1
            if j >= len(text) or text[j] != "(":
                out.append(word)  # a function-like macro's name without `(`: not a call
                continue
            args, i = self.arguments(text, j, mac, n)
            body = self.substitute(mac, args, n, disabled, depth)
            out.append(self.expand(body, n, disabled | {word}, depth + 1))
        result = "".join(out)
        self.work += len(result)
        if self.work > MAX_CPP_WORK:
            raise self.err(
                f"cpp macro expansion is over {MAX_CPP_WORK} characters (the design limit)", n
            )
        return result

    @staticmethod
    def split(body: str) -> str:
        """A `;` outside a string in a replacement ends a statement."""
        parts = [p.strip() for p in re.split(r';(?=(?:[^"]*"[^"]*")*[^"]*$)', body)]
        # the statements after the first are indented: an instruction, not a declaration
        return "\n        ".join(p for p in parts if p)

    def arguments(self, text: str, j: int, mac: CppMacro, n: int) -> tuple[list[str], int]:
        depth, cur, args = 0, "", []
        k = j + 1
        while k < len(text):
            t = _TOKEN.match(text, k)
            assert t is not None
            tok = t.group(0)
            k = t.end()
            if tok == "(":
                depth += 1
            elif tok == ")":
                if depth == 0:
                    args.append(cur.strip())
                    break
                depth -= 1
            elif tok == "," and depth == 0:
                args.append(cur.strip())
                cur = ""
                continue
            cur += tok
        else:
            raise self.err(f"unterminated call of macro {mac.name}: no closing ')'", n)
        assert mac.params is not None
        if args == [""] and not mac.params:
            args = []
        if len(args) != len(mac.params):
            raise self.err(
                f"macro {mac.name} takes {len(mac.params)} argument(s), got {len(args)} "
                f"(defined at line {mac.line})", n,
            )
        return args, k

    def substitute(
        self, mac: CppMacro, args: list[str], n: int, disabled: frozenset[str], depth: int
    ) -> str:
        assert mac.params is not None
        raw = dict(zip(mac.params, args, strict=True))
        toks = [t.group(0) for t in _TOKEN.finditer(mac.body)]
        out: list[str] = []

        def neighbour(k: int, step: int) -> str:
            k += step
            while 0 <= k < len(toks) and toks[k].isspace():
                k += step
            return toks[k] if 0 <= k < len(toks) else ""

        k = 0
        while k < len(toks):
            tok = toks[k]
            if tok == "#" and neighbour(k, 1) in raw:
                k += 1
                while toks[k].isspace():
                    k += 1
                out.append('"' + raw[toks[k]].replace("\\", "\\\\").replace('"', '\\"') + '"')
            elif tok == "##":
                while out and out[-1].isspace():
                    out.pop()
                k += 1
                while k < len(toks) and toks[k].isspace():
                    k += 1
                continue
            elif tok in raw:
                if neighbour(k, -1) == "##" or neighbour(k, 1) == "##":
                    out.append(raw[tok])
                else:
                    out.append(self.expand(raw[tok], n, disabled, depth + 1))
            else:
                out.append(tok)
            k += 1
        return self.split("".join(out))


def preprocess(
    path: str, lines: list[str], origin: Sequence[tuple[str, int]] | None = None
) -> list[str]:
    """`lines` (comments stripped, continuations joined) after the C preprocessor; the
    same number of lines, a line holding several statements separated by newlines.
    `origin` gives each line's (file, line) when `include` joined several files."""
    if not any(_DIRECTIVE.match(t) for t in lines):
        return lines
    return _Cpp(path, origin).run(lines)
