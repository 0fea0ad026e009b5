r"""The design-language parser: text -> `Design` (see docs/design-language.md).

Stages, each keeping source lines so every error and every trace step names file:line:
0. `include "path"` lines are replaced by the named file's lines (relative to the including
   file), each keeping its own file and line;
1. comments are stripped, `\`-continued lines joined, C preprocessor `#define`s applied
   (model/lang/cpp.py), and `.if knob == value` / `.elif` /
   `.else` / `.endif` select the variant's lines;
2. `.macro NAME [params]` ... `.endm` bodies are recorded and expanded where invoked
   (GNU as `\param`, `\()`, `\@`), and `.rept`/`.irp`/`.irpc` blocks unrolled; an
   expanded line's `Loc.via` records the invocation;
3. declarations, assembler directives (sections, symbols, alignment, Xen's FUNC/LABEL/END),
   assembler routines and pseudo-C functions are parsed;
4. labels, routines and names are resolved and checked.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from checker.errors import InputError, ModelInputError
from model.lang import cpp, isa
from model.lang.expr import parse_expr
from model.lang.ir import (
    Abs,
    Arg,
    Binary,
    BreakpointDecl,
    Call,
    CodeRef,
    Const,
    CpuDecl,
    DescriptorDecl,
    Design,
    Expr,
    FredDecl,
    GateDecl,
    IdtDecl,
    Imm,
    Index,
    Indirect,
    InputDecl,
    Instr,
    Loc,
    Mem,
    Name,
    NCpus,
    Operand,
    Reg,
    RegValue,
    RipRel,
    Routine,
    StackDecl,
    StackTop,
    Target,
    ThisCpu,
    TssDecl,
    Unary,
    Var,
    VarDecl,
    is_expr,
)
from model.x86 import alu
from model.x86.arch import VECTOR_NAMES

_VECTOR_BY_NAME = {name: v for v, name in VECTOR_NAMES.items()}

# Register names: each maps to the 64-bit register it is part of and its size in bytes.
_REG64 = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp")
_REG_SIZES: dict[str, tuple[str, int]] = {}
for _r in _REG64:
    _stem = _r[1:]  # ax, bx, cx, dx, si, di, bp, sp
    _REG_SIZES[_r] = (_r, 8)
    _REG_SIZES["e" + _stem] = (_r, 4)
    _REG_SIZES[_stem] = (_r, 2)
    _REG_SIZES[(_stem[0] + "l") if _stem[1] == "x" else _stem + "l"] = (_r, 1)
for _n in range(8, 16):
    _REG_SIZES[f"r{_n}"] = (f"r{_n}", 8)
    _REG_SIZES[f"r{_n}d"] = (f"r{_n}", 4)
    _REG_SIZES[f"r{_n}w"] = (f"r{_n}", 2)
    _REG_SIZES[f"r{_n}b"] = (f"r{_n}", 1)
_REG_SIZES["ss"] = ("ss", 2)
_HIGH_BYTE = frozenset({"ah", "bh", "ch", "dh"})
# Kept for callers that want every name of a register: 32-bit and narrower aliases.
_REG_ALIASES = {k: v for k, (v, size) in _REG_SIZES.items() if size < 8 and k != "ss"}
REGISTERS = frozenset({v for v, _ in _REG_SIZES.values()})

# Every mnemonic the assembler accepts, derived from the instruction table (model/lang/isa).
_MNEMONICS = isa.MNEMONICS
_NO_FALL_THROUGH = {e.op for e in isa.ASM if e.ends_flow}
# Legacy and REX prefixes a design may write before a software interrupt, SYSCALL or
# SYSENTER (`data16 int $0x80`): each makes the instruction one byte longer, the length
# FRED records in the saved SS word (FRED spec §5.2); they change nothing else here.
_PREFIXES = frozenset({"data16", "addr32", "rex", "rex64", "rex.w", "cs", "ds", "es", "ss",
                       "fs", "gs"})
_PREFIXABLE = frozenset({"int", "int3", "int1", "icebp", "into", "syscall", "sysenter"})
_JUMPS = {"jmp", "jcc"}
BUILTINS = isa.BUILTINS

# `selector NAME = VALUE`: the contexts whose CS/SS delivery pushes, and the RPL each
# must carry (None: an SS, whose RPL nothing reads).
SELECTOR_RPL: dict[str, int | None] = {
    "hypervisor_cs": 0, "hypervisor_ss": 0, "guest_cs_ring1": 1, "guest_cs64": 3,
    "guest_ss": None, "guest_ss_ring1": 1,
}
_DESCRIPTOR_FLAGS = {"long", "16bit", "readonly", "conforming", "notpresent"}
DESTINATIONS = ("SELF", "ALL_BUT_SELF", "ALL")

_IDENT = r"[A-Za-z_.$][A-Za-z0-9_.$]*"
# An assembler directive (`.section ...`), not a local label (`.Lname:`).
_DIRECTIVE = re.compile(r"\.[A-Za-z_]\w*(?=\s|$)")
# Xen's linkage macros (xen/include/xen/linkage.h): FUNC(name[, align]), END(name), ...
_SYMBOL = re.compile(
    r"(FUNC|FUNC_LOCAL|LABEL|LABEL_LOCAL|END)\(\s*(" + _IDENT + r")\s*(?:,\s*([^)]*))?\)"
)


@dataclass
class _Line:
    text: str
    loc: Loc


@dataclass
class _Builder:
    """Accumulates one routine's instructions and labels while parsing."""

    name: str
    loc: Loc
    kind: str
    section: str
    guest: bool
    compat: bool = False  # GUEST32: guest code in compatibility mode
    subsection: int = 0  # `.subsection N`: laid out after the section's lower subsections
    instrs: list[Instr] = field(default_factory=list)
    labels: dict[str, int] = field(default_factory=dict)
    numeric: list[tuple[str, int]] = field(default_factory=list)  # (label, index) in order
    pending: list[tuple[int, str, Loc]] = field(default_factory=list)  # unresolved targets


# Limits of macro expansion (docs/design-language.md#limits).
_MAX_EXPANDED = 20_000  # lines a design may expand to (`.rept` counts, nested macros)
_MAX_NESTING = 64  # macros and repetition blocks expanding inside one another


@dataclass(frozen=True)
class _Param:
    name: str
    default: str
    required: bool
    vararg: bool


@dataclass
class _Macro:
    name: str
    params: tuple[_Param, ...]
    body: list[_Line]
    loc: Loc


def _err(msg: str, loc: Loc) -> InputError:
    """An error at a design line; a line a macro produced also names the invocation."""
    if loc.via is not None:
        msg += " (in a macro expanded at " + " < ".join(str(x) for x in loc.chain()[-2::-1]) + ")"
    return InputError(msg, loc.file, loc.line)


def _split_args(text: str) -> list[str]:
    """Split at commas outside parentheses and double quotes."""
    out: list[str] = []
    depth, quoted, cur = 0, False, ""
    for ch in text:
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch == "(":
            depth += 1
        elif not quoted and ch == ")":
            depth -= 1
        if ch == "," and depth == 0 and not quoted:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    out.append(cur.strip())
    return out


def _has_top_level_comma(text: str) -> bool:
    return len(_split_args(text)) > 1


def _unquote(text: str) -> str:
    t = text.strip()
    return t[1:-1] if len(t) >= 2 and t[0] == t[-1] == '"' else t


_PARAMETER = re.compile(r"\\(\w+|@|\(\))")
_REPEAT = re.compile(r"\.(rept|irpc|irp)(?:\s+(.*))?$")
_INVOCATION = re.compile(
    r"(\s*)((?:\d+|[A-Za-z_.$][\w.$]*):)?\s*([A-Za-z_.$][\w.$]*)(?=\s|$)(.*)$"
)


def _substitute(text: str, values: Mapping[str, str], counter: str | None) -> str:
    r"""GNU as substitution in a macro or `.irp` body: `\name` is the argument, `\()`
    separates it from text that follows, `\@` counts macro invocations. Other `\x`
    stay (an enclosing `.irp` symbol); what is left at the end is an error."""

    def one(m: re.Match[str]) -> str:
        word = m.group(1)
        if word == "()":
            return ""
        if word == "@":
            return counter if counter is not None else m.group(0)
        return values[word] if word in values else m.group(0)

    return _PARAMETER.sub(one, text) if "\\" in text else text


def strip_comments(text: str) -> list[str]:
    """Remove `/* */`, `//` and `# ` comments, keeping the line count."""
    text = re.sub(r"/\*.*?\*/", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S)
    out = []
    for line in text.split("\n"):
        line = re.sub(r"//.*$", "", line)
        line = re.sub(r"(^|\s)#(\s.*)?$", "", line)
        out.append(line.rstrip())
    return out


_INCLUDE = re.compile(r'\s*\.?include\s+"([^"]*)"\s*$')
MAX_INCLUDE_DEPTH = 16  # deeper than any real sharing needs; stops runaway chains early


def source_lines(path: str, text: str) -> tuple[list[str], list[Loc]]:
    """The design's lines with comments stripped, continuations joined and every
    `include "path"` replaced by the included file's lines, and where each line comes
    from (its own file and line, so errors and traces name the included file)."""
    return _source_lines(path, text, ())


def _source_lines(
    path: str, text: str, chain: tuple[str, ...]
) -> tuple[list[str], list[Loc]]:
    lines = _join_continuations(strip_comments(text))
    out: list[str] = []
    origin: list[Loc] = []
    for n, line in enumerate(lines, 1):
        m = _INCLUDE.match(line)
        if not m:
            out.append(line)
            origin.append(Loc(path, n))
            continue
        loc = Loc(path, n)
        name = m.group(1)
        if not name:
            raise _err('include needs a file: write `include "path"`', loc)
        target = os.path.normpath(os.path.join(os.path.dirname(path), name))
        key = os.path.realpath(target)
        if key in (os.path.realpath(p) for p in (*chain, path)):
            raise _err(f"include {name!r} includes itself again "
                       f"({' -> '.join((*chain, path, target))})", loc)
        if len(chain) + 1 >= MAX_INCLUDE_DEPTH:
            raise _err(f"includes nest more than {MAX_INCLUDE_DEPTH} files deep", loc)
        try:
            sub = Path(target).read_bytes().decode("utf-8")
        except UnicodeDecodeError as e:
            raise _err(f"cannot include {name!r}: {target} is not UTF-8 text "
                       f"(byte {e.start})", loc) from None
        except OSError as e:
            raise _err(f"cannot include {name!r}: {target}: {e.strerror}", loc) from None
        sub_lines, sub_origin = _source_lines(target, sub, (*chain, path))
        out.append("")  # the include line itself (keeps this file's numbering)
        origin.append(loc)
        out.extend(sub_lines)
        origin.extend(sub_origin)
    return out, origin


def _join_continuations(lines: list[str]) -> list[str]:
    """A line ending in `\\` continues on the next (as entry.S's C preprocessor joins
    them); the joined line keeps the first line's number, the others become empty."""
    out = [""] * len(lines)
    pending: str | None = None
    start = 0
    for n, line in enumerate(lines):
        if pending is None:
            text, start = line, n
        else:
            text = pending + " " + line.strip()
        if text.endswith("\\"):
            pending = text[:-1].rstrip()
            continue
        pending = None
        out[start] = text
    if pending is not None:
        out[start] = pending
    return out


def read_design(path: str | Path) -> str:
    """The text of a design file: UTF-8, else an error at the first bad byte's line."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise InputError(f"cannot read design: {e.strerror or e}", str(p)) from None
    return _decode(raw, str(p))


def _decode(raw: bytes, path: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise InputError(
            f"design file is not valid UTF-8 (byte {raw[e.start]:#04x})", path, line
        ) from None


def parse_design(path: str | Path, variant: Mapping[str, str] | None = None) -> Design:
    """Parse the design at `path` for the given knob values (unset knobs: defaults)."""
    p = Path(path)
    return _Parser(str(p), read_design(p), dict(variant or {})).parse()


def design_knobs(path: str | Path) -> tuple[str, dict[str, tuple[str, ...]]]:
    """The design's name and knobs, without selecting a variant."""
    p = Path(path)
    parser = _Parser(str(p), read_design(p), {})
    parser.scan_header()
    return parser.name, parser.knobs


class _Parser:
    def __init__(self, path: str, text: str, variant: dict[str, str]):
        self.path = path
        self.raw, self.origin = source_lines(path, text)
        self.requested = variant
        self.name = Path(path).stem.split(".")[0]
        self.title = ""
        self.knobs: dict[str, tuple[str, ...]] = {}
        self.knob_locs: dict[str, Loc] = {}
        self.consts: dict[str, int] = {}
        self.cpus = 1
        self.symmetric = False
        self.vendor = "intel"
        self.df_rule = "sdm"
        self.fmask = 0
        self.breakpoints: list[BreakpointDecl] = []
        self.smap = False
        self.delivery = "idt"
        self.fred: FredDecl | None = None
        self.fred_possible = False
        self.selectors: dict[str, int] = {}
        self.descriptors: list[DescriptorDecl] = []
        self.lstar: str | None = None
        self.lstar_loc = Loc(path, 1)
        self.sysenter: tuple[str, str] | None = None  # (routine, stack): SYSENTER_EIP/ESP
        self.sysenter_loc = Loc(path, 1)
        # (tss, "rsp0" | "ist N", stack) -> the first line that puts the stack there
        self.slot_locs: dict[tuple[str, str, str | None], Loc] = {}
        self.stacks: list[StackDecl] = []
        self.idts: list[IdtDecl] = []
        self.tsss: list[TssDecl] = []
        self.variables: list[VarDecl] = []
        self.cpu_decls: list[CpuDecl] = []
        self.routines: dict[str, _Builder] = {}
        self.macros: dict[str, _Macro] = {}
        self.invocations = 0  # macro invocations so far (what `\@` counts)
        self._expanded = 0  # lines of the expansion made so far (_MAX_EXPANDED)
        self.section = ".text"
        self.previous_section = ".text"  # what `.previous` returns to
        # .pushsection: (section, previous section, the routine it interrupted, where)
        self.section_stack: list[tuple[str, str, _Builder | None, Loc]] = []
        self.subsection = 0
        # per section: the subsection-0 routine a `.subsection N` interrupted
        self.subsection_resume: dict[str, _Builder | None] = {}
        self.inputs: dict[str, InputDecl] = {}
        self.symmetry_vars: tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]] = ((), (), ())
        self.symmetry_loc = Loc(path, 1)
        self.guest_code: str | None = None

    # -- stage 0: knobs (needed before conditionals can be evaluated) -----------------
    def scan_header(self) -> None:
        for n, line in enumerate(self.raw, 1):
            s = line.strip()
            m = re.match(r"knob\s+(\w[\w-]*)\s*=\s*(.+)$", s)
            if m:
                loc = self.origin[n - 1]
                values = tuple(v.strip() for v in m.group(2).split("|"))
                if not all(re.fullmatch(r"[\w.-]+", v) for v in values):
                    raise _err(f"bad knob values {m.group(2)!r}: write `knob NAME = a | b`", loc)
                self.knobs[m.group(1)] = values
                self.knob_locs[m.group(1)] = loc
            m = re.match(r"design\s+(\w+)(?:\s+\"(.*)\")?\s*$", s)
            if m:
                self.name = m.group(1)
                self.title = m.group(2) or ""

    def _select_variant(self) -> dict[str, str]:
        chosen: dict[str, str] = {}
        for knob, value in self.requested.items():
            if knob not in self.knobs:
                known = ", ".join(sorted(self.knobs)) or "none"
                raise ModelInputError(
                    f"design {self.name!r} has no knob {knob!r} (knobs: {known})", f"variant.{knob}"
                )
            if value not in self.knobs[knob]:
                raise ModelInputError(
                    f"knob {knob!r} of design {self.name!r} has no value {value!r} "
                    f"(values: {', '.join(self.knobs[knob])})",
                    f"variant.{knob}",
                )
            chosen[knob] = value
        for knob, values in self.knobs.items():
            chosen.setdefault(knob, values[0])
        return chosen

    # -- stage 1: conditionals ---------------------------------------------------------
    def _conditional(self, cond: str, loc: Loc, variant: dict[str, str]) -> bool:
        m = re.fullmatch(r"(\w[\w-]*)\s*(==|!=)\s*([\w.|\s-]+)", cond.strip())
        if not m:
            raise _err(f"bad condition {cond.strip()!r}: write `.if knob == value`", loc)
        knob, op, values = m.group(1), m.group(2), [v.strip() for v in m.group(3).split("|")]
        if knob not in self.knobs:
            raise _err(f"unknown knob {knob!r} in .if", loc)
        for v in values:
            if v not in self.knobs[knob]:
                raise _err(
                    f"knob {knob!r} has no value {v!r} (values: {', '.join(self.knobs[knob])})", loc
                )
        hit = variant[knob] in values
        return hit if op == "==" else not hit

    def _preprocess(self, variant: dict[str, str]) -> list[_Line]:
        lines: list[_Line] = []
        # (active, taken, where, after .else). Every condition is checked, even in lines
        # this variant drops, so a misspelt knob value is an error in every variant.
        stack: list[tuple[bool, bool, Loc, bool]] = []
        pieces = [(n, t) for n, text in enumerate(self.raw, 1) for t in text.split("\n")]
        for n, text in pieces:  # a cpp expansion's `;`-separated statements: one line each
            loc = self.origin[n - 1]
            s = text.strip()
            active = all(e[0] for e in stack)
            if s.startswith(".if ") or s.startswith(".if\t"):
                hit = self._conditional(s[3:], loc, variant)
                stack.append((hit and active, hit, loc, False))
                continue
            if s.startswith(".elif ") or s.startswith(".elif\t"):
                if not stack:
                    raise _err(".elif without .if", loc)
                _, taken, where, in_else = stack.pop()
                if in_else:
                    raise _err(".elif after .else", loc)
                outer = all(e[0] for e in stack)
                hit = self._conditional(s[5:], loc, variant) and not taken
                stack.append((hit and outer, taken or hit, where, False))
                continue
            if s == ".else":
                if not stack:
                    raise _err(".else without .if", loc)
                _, taken, where, in_else = stack.pop()
                if in_else:
                    raise _err(".else after .else", loc)
                outer = all(e[0] for e in stack)
                stack.append((not taken and outer, True, where, True))
                continue
            if s == ".endif":
                if not stack:
                    raise _err(".endif without .if", loc)
                stack.pop()
                continue
            if active and s:
                lines.append(_Line(text, loc))
        if stack:
            raise _err(".if without .endif", stack[-1][2])
        return lines

    # -- stage 2: macros and repetitions ---------------------------------------------
    def _expand_macros(self, lines: list[_Line]) -> list[_Line]:
        """Record `.macro NAME [params]` ... `.endm` bodies, then expand invocations and
        `.rept`/`.irp`/`.irpc` blocks (GNU as semantics, docs/design-language.md#macros)."""
        body: list[_Line] = []
        out: list[_Line] = []
        current: _Macro | None = None
        for line in lines:
            s = line.text.strip()
            m = re.match(r"\.macro(?:\s+(.*))?$", s)
            if m:
                if current is not None:
                    raise _err("nested .macro", line.loc)
                current = self._macro_header(m.group(1) or "", line.loc)
                body = current.body
                continue
            if s == ".endm" or s.startswith(".endm "):
                if current is None:
                    raise _err(".endm without .macro", line.loc)
                if current.name in self.macros:
                    raise _err(
                        f"macro {current.name} is defined twice (first at "
                        f"{self.macros[current.name].loc})", current.loc,
                    )
                self.macros[current.name] = current
                current = None
                continue
            if current is not None:
                body.append(line)
            else:
                out.append(line)
        if current is not None:
            raise _err(f".macro {current.name} without .endm", current.loc)
        self._scan_consts(out)  # `.rept N` may name a constant
        self._expanded = 0
        expanded = self._expand(out, depth=0, active=())
        for line in expanded:
            left = re.search(r"\\(\w+|@|\(\))", line.text)
            if left:
                raise _err(f"unknown macro parameter or .irp symbol \\{left.group(1)}", line.loc)
        return expanded

    def _macro_header(self, text: str, loc: Loc) -> _Macro:
        m = re.fullmatch(r"([A-Za-z_.$][\w.$]*)\s*,?\s*(.*)", text.strip())
        if not m:
            raise _err("write `.macro NAME [param, param=default, ...]`", loc)
        name, rest = m.group(1), m.group(2).strip()
        params: list[_Param] = []
        words = _split_args(rest) if "," in rest else rest.split()
        for k, w in enumerate(words):
            p = re.fullmatch(r"([A-Za-z_]\w*)\s*(?::\s*(req|vararg))?\s*(?:=\s*(.*))?", w.strip())
            if not p:
                raise _err(f"bad macro parameter {w.strip()!r}: write `name`, `name=default`, "
                           "`name:req` or `name:vararg`", loc)
            if any(q.name == p.group(1) for q in params):
                raise _err(f"macro {name} has two parameters named {p.group(1)!r}", loc)
            if p.group(2) == "vararg" and k != len(words) - 1:
                raise _err(f"only the last parameter of macro {name} may be :vararg", loc)
            params.append(_Param(p.group(1), _unquote(p.group(3) or ""), p.group(2) == "req",
                                 p.group(2) == "vararg"))
        return _Macro(name, tuple(params), [], loc)

    def _scan_consts(self, lines: list[_Line]) -> None:
        for line in lines:
            m = re.fullmatch(r"const\s+(\w+)\s*=\s*(.+)", line.text) or re.fullmatch(
                r"\s*\.(?:equ|set)\s+([A-Za-z_]\w*)\s*,\s*(.+)", line.text
            )
            if m:
                e = parse_expr(m.group(2), line.loc, self.consts)
                if isinstance(e, Const):
                    self.consts[m.group(1)] = e.value

    def _emit(self, out: list[_Line], line: _Line) -> None:
        """Append a line of the final expansion, counting it against _MAX_EXPANDED as it
        is made (so that a blow-up stops before it is built)."""
        self._expanded += 1
        if self._expanded > _MAX_EXPANDED:
            raise _err(f"the expansion is over {_MAX_EXPANDED} lines (the design limit)",
                       line.loc)
        out.append(line)

    def _expand(self, lines: list[_Line], depth: int, active: tuple[str, ...]) -> list[_Line]:
        """Expand macro invocations and repetition blocks in `lines`; `active` are the
        macros being expanded around them (a macro in it again never terminates: a
        design's `.if` is decided before macros, so nothing can stop the recursion)."""
        if depth > _MAX_NESTING:
            where = lines[0].loc if lines else Loc(self.path, 1)
            raise _err(f"macros and .rept/.irp blocks nest more than {_MAX_NESTING} deep",
                       where)
        out: list[_Line] = []
        i = 0
        while i < len(lines):
            line = lines[i]
            s = line.text.strip()
            rep = _REPEAT.match(s)
            if rep:
                block, i = self._repeat_block(lines, i)
                for copy in self._repeat_copies(rep.group(1), rep.group(2) or "", block, line.loc):
                    out.extend(self._expand(copy, depth + 1, active))
                continue
            if s == ".endr":
                raise _err(".endr without .rept, .irp or .irpc", line.loc)
            i += 1
            m = _INVOCATION.match(line.text)
            if not m or m.group(3) not in self.macros:
                self._emit(out, line)
                continue
            macro = self.macros[m.group(3)]
            if macro.name in active:
                chain = " -> ".join((*active[active.index(macro.name):], macro.name))
                raise _err(f"macro {macro.name} expands recursively ({chain})", line.loc)
            if m.group(2):
                # `3: RESTORE_ALL`: the label stays where it was written, then the body
                self._emit(out, _Line(m.group(1) + m.group(2), line.loc))
            values = self._macro_args(macro, m.group(4), line.loc)
            self.invocations += 1
            body = [
                _Line(_substitute(b.text, values, str(self.invocations)),
                      Loc(b.loc.file, b.loc.line, line.loc))
                for b in macro.body
            ]
            body = [b for b in body if b.text.strip()]  # `\a` with an empty argument
            out.extend(self._expand(body, depth + 1, (*active, macro.name)))
        return out

    def _macro_args(self, macro: _Macro, text: str, loc: Loc) -> dict[str, str]:
        text = text.strip()
        if not text:
            args: list[str] = []
        elif len(macro.params) > 1 and not _has_top_level_comma(text):
            args = text.split()  # GNU as also separates arguments with spaces
        else:
            args = _split_args(text)
        values: dict[str, str] = {}
        position = 0
        names = [p.name for p in macro.params]
        for k, a in enumerate(args):
            kw = re.fullmatch(r"([A-Za-z_]\w*)\s*=(?!=)\s*(.*)", a)
            if kw and kw.group(1) in names:
                values[kw.group(1)] = _unquote(kw.group(2).strip())
                continue
            if position >= len(macro.params):
                raise _err(
                    f"macro {macro.name} takes {len(macro.params)} argument(s), got {len(args)}",
                    loc,
                )
            param = macro.params[position]
            if param.vararg:
                values[param.name] = ", ".join(args[k:])
                break
            values[param.name] = _unquote(a)
            position += 1
        for p in macro.params:
            if p.name not in values:
                if p.required:
                    raise _err(f"macro {macro.name} needs its argument {p.name!r}", loc)
                values[p.name] = p.default
        return values

    def _repeat_block(self, lines: list[_Line], i: int) -> tuple[list[_Line], int]:
        """The lines of a `.rept`/`.irp`/`.irpc` block (nested blocks included) and the
        index after its `.endr`."""
        depth = 0
        for j in range(i + 1, len(lines)):
            s = lines[j].text.strip()
            if re.match(r"\.(rept|irpc|irp)\b", s):
                depth += 1
            elif s == ".endr":
                if depth == 0:
                    return lines[i + 1 : j], j + 1
                depth -= 1
        raise _err(f"{lines[i].text.strip().split()[0]} without .endr", lines[i].loc)

    def _repeat_copies(
        self, kind: str, args: str, block: list[_Line], loc: Loc
    ) -> list[list[_Line]]:
        if kind == "rept":
            if not args.strip():
                raise _err("write `.rept COUNT`", loc)
            count = self._int(args, loc)
            if not 0 <= count <= _MAX_EXPANDED:
                raise _err(f".rept {count}: the count is 0-{_MAX_EXPANDED}", loc)
            if count * len(block) > _MAX_EXPANDED:
                raise _err(f".rept {count} of {len(block)} lines is over {_MAX_EXPANDED} "
                           "lines (the design limit)", loc)
            return [list(block) for _ in range(count)]
        m = re.fullmatch(r"([A-Za-z_]\w*)\s*(?:,\s*(.*))?", args.strip())
        if not m:
            raise _err(f"write `.{kind} SYMBOL, VALUE, ...`", loc)
        symbol, rest = m.group(1), (m.group(2) or "").strip()
        if kind == "irp":
            values = [_unquote(v) for v in _split_args(rest)] if rest else [""]
        else:
            values = list(_unquote(rest)) or [""]
        copies = [
            [_Line(_substitute(b.text, {symbol: v}, None), b.loc) for b in block]
            for v in values
        ]
        return [[b for b in copy if b.text.strip()] for copy in copies]

    # -- stage 3: the body -------------------------------------------------------------
    def parse(self) -> Design:
        self.raw = cpp.preprocess(self.path, self.raw, [(o.file, o.line) for o in self.origin])
        self.scan_header()
        variant = self._select_variant()
        lines = self._expand_macros(self._preprocess(variant))
        i = 0
        current: _Builder | None = None
        while i < len(lines):
            line = lines[i]
            s = line.text.strip()
            word = s.split(None, 1)[0]
            rest = s[len(word):].strip()
            indented = line.text[:1] in (" ", "\t")
            if _DIRECTIVE.match(s) or s == "ALIGN":
                current = self._directive(s, line.loc, current)
                i += 1
                continue
            sym = _SYMBOL.fullmatch(s)
            if sym:
                current = self._symbol(sym, line.loc, current)
                i += 1
                continue
            if not indented or current is None:
                handled, i = self._declaration(word, rest, s, lines, i)
                if handled:
                    current = None
                    continue
                m = re.fullmatch(r"(?:ENTRY|GLOBAL)\((\w+)\):?|([A-Za-z_][\w.$]*):", s)
                g = re.fullmatch(r"GUEST(32)?\((\w+)\):?", s)
                local = re.fullmatch(r"(\.L[\w.$]*):", s) if current is None else None
                if m or g or local:
                    if local:
                        name = local.group(1)
                    elif g:
                        name = g.group(2)
                    else:
                        assert m is not None
                        name = m.group(1) or m.group(2)
                    current = self._new_routine(name, line.loc, "asm", bool(g))
                    current.compat = bool(g and g.group(1))  # GUEST32: compatibility mode
                    i += 1
                    continue
                if current is None:
                    if indented:
                        raise _err(f"{word!r} is not a declaration, and an instruction needs a "
                                   "routine: start one with `name:`, FUNC(name) or ENTRY(name)",
                                   line.loc)
                    raise _err(f"unknown declaration {word!r}", line.loc)
            assert current is not None
            self._asm_line(current, s, line.loc)
            i += 1
        return self._finish(variant)

    # -- GNU as directives and Xen's linkage macros --------------------------------------
    def _directive(self, s: str, loc: Loc, current: _Builder | None) -> _Builder | None:
        """One assembler directive; returns the routine that following lines extend."""
        if s == "ALIGN":  # Xen's `.align 16, 0x90`
            return current
        m = re.match(r"(\.\w+)\s*(.*)$", s)
        assert m is not None
        name, rest = m.group(1), m.group(2).strip()
        if name in (".text", ".data", ".bss"):
            if rest:
                raise _err(f"{name} takes no operand here (write `.section {name}.NAME`)", loc)
            return self._switch_section(name, current, loc)
        if name in (".section", ".pushsection"):
            args = _split_args(rest) if rest else []
            if not args or not re.fullmatch(r"[\w.$-]+", args[0]):
                raise _err(f"write `{name} NAME[, \"flags\"[, @type]]`", loc)
            if len(args) > 1 and not re.fullmatch(r'"[a-zA-Z?]*"', args[1]):
                raise _err(f"{name}: section flags are a quoted string such as \"ax\"", loc)
            if len(args) > 2 and not re.fullmatch(r"[@%](progbits|nobits|note)", args[2]):
                raise _err(f"{name}: the section type is @progbits, @nobits or @note", loc)
            if name == ".pushsection":
                self.section_stack.append((self.section, self.previous_section, current, loc))
                self.previous_section = self.section
                self.section = args[0]
                return None
            return self._switch_section(args[0], current, loc)
        if name == ".popsection":
            if rest:
                raise _err(".popsection takes no operand", loc)
            if not self.section_stack:
                raise _err(".popsection without .pushsection", loc)
            self.section, self.previous_section, resumed, _ = self.section_stack.pop()
            return resumed  # code after it continues the routine the push interrupted
        if name == ".subsection":
            number = self._int(rest, loc) if rest else -1
            if not 0 <= number <= 8192:
                raise _err("write `.subsection N` (N from 0 to 8192)", loc)
            return self._switch_subsection(number, current)
        if name == ".previous":
            if rest:
                raise _err(".previous takes no operand", loc)
            target = self.previous_section
            return self._switch_section(target, current, loc)
        if name in (".align", ".balign", ".p2align"):
            args = _split_args(rest) if rest else []
            if not 1 <= len(args) <= 3 or not args[0]:
                raise _err(f"write `{name} ALIGNMENT[, FILL[, MAX]]`", loc)
            values = [self._int(a, loc) for a in args if a]
            if name != ".p2align" and (values[0] <= 0 or values[0] & (values[0] - 1)):
                raise _err(f"{name} {values[0]}: the alignment is a power of 2", loc)
            if name == ".p2align" and not 0 <= values[0] <= 16:
                raise _err(f".p2align {values[0]}: the alignment is 0-16 (a power of 2)", loc)
            return current  # code addresses are symbolic: alignment changes no step
        if name in (".globl", ".global", ".hidden", ".weak", ".local", ".protected"):
            names = _split_args(rest) if rest else []
            if not names or not all(re.fullmatch(_IDENT, n) for n in names):
                raise _err(f"write `{name} SYMBOL[, SYMBOL...]`", loc)
            return current
        if name == ".type":
            if not re.fullmatch(
                _IDENT + r"\s*,\s*(?:[@%](?:function|object|notype)|STT_(?:FUNC|OBJECT|NOTYPE))",
                rest,
            ):
                raise _err("write `.type SYMBOL, @function` (or @object, @notype)", loc)
            return current
        if name == ".size":
            if not re.fullmatch(_IDENT + r"\s*,\s*\S.*", rest):
                raise _err("write `.size SYMBOL, EXPRESSION`", loc)
            return current
        if name in (".equ", ".set"):
            m = re.fullmatch(r"([A-Za-z_]\w*)\s*,\s*(.+)", rest)
            if not m:
                raise _err(f"write `{name} NAME, VALUE`", loc)
            self.consts[m.group(1)] = self._int(m.group(2), loc)
            return current
        if name == ".file":
            return current
        if name == ".code64":
            if rest:
                raise _err(".code64 takes no operand", loc)
            return current
        raise _err(f"unknown directive {name}", loc)

    def _switch_section(self, name: str, current: _Builder | None, loc: Loc) -> _Builder | None:
        """Code after a section switch is not reached by falling through the code before
        it: a switch to another section ends the routine being written."""
        if name == self.section:
            return current
        self.previous_section, self.section = self.section, name
        self.subsection = 0
        return None

    def _switch_subsection(self, number: int, current: _Builder | None) -> _Builder | None:
        """GNU as `.subsection N` (Xen's UNLIKELY_START): code in subsection N > 0 starts a
        routine of its own (its first line is a label), laid out after the section's
        subsection-0 code as the assembler places it; `.subsection 0` continues the
        routine the switch interrupted, so the likely path still falls through."""
        if number == self.subsection:
            return current
        if self.subsection == 0:
            self.subsection_resume[self.section] = current
        self.subsection = number
        if number == 0:
            return self.subsection_resume.pop(self.section, None)
        return None

    def _symbol(self, m: re.Match[str], loc: Loc, current: _Builder | None) -> _Builder | None:
        """Xen's FUNC(name[, align]), FUNC_LOCAL, LABEL, LABEL_LOCAL and END(name)
        (xen/include/xen/linkage.h)."""
        what, name, align = m.group(1), m.group(2), m.group(3)
        if align is not None and align.strip():
            value = self._int(align, loc)
            if value < 0 or value & (value - 1):
                raise _err(f"{what}({name}, {align.strip()}): the alignment is 0 or a power of "
                           "2", loc)
        if what in ("FUNC", "FUNC_LOCAL"):
            return self._new_routine(name, loc, "asm", False)
        if what in ("LABEL", "LABEL_LOCAL"):
            if current is None:
                return self._new_routine(name, loc, "asm", False)
            if name in current.labels or name in self.routines:
                raise _err(f"label {name!r} defined twice", loc)
            current.labels[name] = len(current.instrs)
            return current
        if align is not None:
            raise _err("write `END(name)`", loc)
        if name not in self.routines and not any(name in b.labels for b in self.routines.values()):
            raise _err(f"END({name}) names no routine or label", loc)
        return None

    def _new_routine(self, name: str, loc: Loc, kind: str, guest: bool) -> _Builder:
        if name in self.routines:
            raise _err(f"routine {name!r} is defined twice", loc)
        b = _Builder(name, loc, kind, self.section, guest, subsection=self.subsection)
        self.routines[name] = b
        return b

    def _declaration(
        self, word: str, rest: str, s: str, lines: list[_Line], i: int
    ) -> tuple[bool, int]:
        loc = lines[i].loc
        if word in ("design", "knob"):
            return True, i + 1
        if word == "const":
            m = re.fullmatch(r"(\w+)\s*=\s*(.+)", rest)
            if not m:
                raise _err("write `const NAME = value`", loc)
            e = parse_expr(m.group(2), loc, self.consts)
            if not isinstance(e, Const):
                raise _err(f"constant {m.group(1)} is not a number", loc)
            self.consts[m.group(1)] = e.value
            return True, i + 1
        if word == "cpus":
            self.cpus = self._int(rest, loc)
            if not 1 <= self.cpus <= 16:
                raise _err("cpus must be between 1 and 16", loc)
            return True, i + 1
        if word == "symmetric":
            self.symmetric = True
            # symmetric [ids VAR...] [masks VAR...] [order VAR...]
            groups: dict[str, list[str]] = {"ids": [], "masks": [], "order": []}
            current_group: str | None = None
            for w in rest.split():
                if w in groups:
                    current_group = w
                elif current_group is None or not re.fullmatch(r"\w+", w):
                    raise _err("write `symmetric [ids VAR...] [masks VAR...] [order VAR...]`", loc)
                else:
                    groups[current_group].append(w)
            self.symmetry_vars = (
                tuple(groups["ids"]), tuple(groups["masks"]), tuple(groups["order"])
            )
            self.symmetry_loc = loc
            return True, i + 1
        if word == "vendor":
            if rest not in ("intel", "amd"):
                raise _err("vendor is intel or amd", loc)
            self.vendor = rest
            return True, i + 1
        if word == "df_rule":
            if rest not in ("sdm", "strict"):
                raise _err("df_rule is sdm or strict", loc)
            self.df_rule = rest
            return True, i + 1
        if word == "fmask":
            self.fmask = self._int(rest, loc)
            if not 0 <= self.fmask < 1 << 64:
                raise _err("fmask is a 64-bit value (the RFLAGS bits SYSCALL clears)", loc)
            return True, i + 1
        if word == "selector":
            self._selector(rest, loc)
            return True, i + 1
        if word == "breakpoint":
            self.breakpoints.append(parse_breakpoint(rest, loc, self.consts))
            return True, i + 1
        if word == "smap":
            if rest:
                raise _err("write `smap` alone (CR4.SMAP set)", loc)
            self.smap = True
            return True, i + 1
        if word in ("gdt", "ldt"):
            self._descriptor(word, rest, loc)
            return True, i + 1
        if word == "input":
            self._input(rest, loc)
            return True, i + 1
        if word == "guest_code":
            self.guest_code = rest
            return True, i + 1
        if word == "lstar":
            self.lstar, self.lstar_loc = rest, loc
            return True, i + 1
        if word == "sysenter":
            parts = rest.split()
            if len(parts) != 2:
                raise _err("write `sysenter ROUTINE STACK`", loc)
            self.sysenter, self.sysenter_loc = (parts[0], parts[1]), loc
            return True, i + 1
        if word == "section":
            self.section = rest
            return True, i + 1
        if word == "stack":
            self._stack(rest, loc)
            return True, i + 1
        if word in ("var", "percpu"):
            m = re.fullmatch(r"(\w+)\s*(?:\[([^\]]+)\])?\s*=\s*(.+)", rest)
            if not m:
                raise _err(f"write `{word} NAME = value` (or `var NAME[N] = value`)", loc)
            length = self._int(m.group(2), loc) if m.group(2) else 1
            if m.group(2) and word == "percpu":
                raise _err("per-CPU arrays are not supported; use a global array", loc)
            if not 1 <= length <= 4096:
                raise _err("an array has 1-4096 elements", loc)
            if any(v.name == m.group(1) for v in self.variables):
                raise _err(f"variable {m.group(1)!r} is declared twice", loc)
            self.variables.append(
                VarDecl(
                    m.group(1), parse_expr(m.group(3), loc, self.consts), word == "percpu", loc,
                    length,
                )
            )
            return True, i + 1
        if word == "cpu":
            self._cpu(rest, loc)
            return True, i + 1
        if word == "delivery":
            if rest not in ("idt", "fred"):
                raise _err("write `delivery idt` or `delivery fred` (CR4.FRED at start)", loc)
            self.delivery = rest
            self.fred_possible = self.fred_possible or rest == "fred"
            return True, i + 1
        if word == "fred":
            return True, self._fred(rest, lines, i)
        if word == "tss":
            return True, self._tss(rest, lines, i)
        if word == "idt":
            return True, self._idt(rest, lines, i)
        if word == "function":
            return True, self._function(rest, lines, i)
        return False, i

    def _input(self, rest: str, loc: Loc) -> None:
        m = re.fullmatch(r"(\w+)\s*=\s*(.+)", rest)
        if not m:
            raise _err("write `input NAME = v1 | v2 | ...` or `input NAME = LOW..HIGH`", loc)
        name, values = m.group(1), m.group(2).strip()
        if name in self.inputs:
            raise _err(f"input {name!r} is declared twice", loc)
        r = re.fullmatch(r"(.+?)\.\.(.+)", values)
        if r:
            low, high = self._int(r.group(1), loc), self._int(r.group(2), loc)
            if not 0 <= low <= high < 1 << 64:
                raise _err("an input range is LOW..HIGH with 0 <= LOW <= HIGH", loc)
            self.inputs[name] = InputDecl(name, (), low, high, loc)
        else:
            samples = tuple(parse_expr(v, loc, self.consts) for v in values.split("|"))
            self.inputs[name] = InputDecl(name, samples, None, None, loc)

    def _selector(self, rest: str, loc: Loc) -> None:
        """`selector NAME = VALUE`: a selector the design's GDT gives one context; its RPL
        must be that context's privilege level."""
        m = re.fullmatch(r"(\w+)\s*=\s*(.+)", rest)
        if not m or m.group(1) not in SELECTOR_RPL:
            names = " | ".join(SELECTOR_RPL)
            raise _err(f"write `selector {names} = VALUE`", loc)
        name, value = m.group(1), self._int(m.group(2), loc)
        rpl = SELECTOR_RPL[name]
        if not 0 <= value <= 0xFFFF or (rpl is not None and value & 3 != rpl):
            wanted = f" with RPL {rpl}" if rpl is not None else ""
            raise _err(f"selector {name} must be a 16-bit selector{wanted}", loc)
        self.selectors[name] = value

    def _descriptor(self, table_kind: str, rest: str, loc: Loc) -> None:
        """`gdt TABLE SELECTOR KIND dpl N [flags]`: one descriptor (model.x86.segments)."""
        words = rest.split()
        usage = (f"write `{table_kind} TABLE SELECTOR code|data|system dpl N [long] [16bit] "
                 "[readonly] [conforming] [notpresent] [base V]`")
        if len(words) < 3 or not re.fullmatch(r"\w+", words[0]):
            raise _err(usage, loc)
        selector = self._int(words[1], loc)
        if not 0 <= selector <= 0xFFFF or (table_kind == "gdt" and selector >> 3 == 0):
            raise _err(f"{words[1]} is not a non-NULL 16-bit selector", loc)
        if bool(selector & 4) != (table_kind == "ldt"):
            raise _err(f"selector {selector:#x} has TI={selector >> 2 & 1}, "
                       f"not that of an {table_kind.upper()} entry", loc)
        kind = words[2]
        if kind not in ("code", "data", "system"):
            raise _err(usage, loc)
        opts = self._options(words[3:], loc, _DESCRIPTOR_FLAGS, {"dpl", "base"})
        if "dpl" not in opts:
            raise _err(f"{table_kind} {words[0]} {words[1]}: needs `dpl N`", loc)
        dpl = self._int(opts["dpl"], loc)
        if not 0 <= dpl <= 3:
            raise _err("dpl is 0-3", loc)
        if "long" in opts and kind != "code":
            raise _err("only a code segment is `long` (L = 1)", loc)
        index = selector >> 3
        for d in self.descriptors:
            if d.table == words[0] and d.selector >> 3 == index:
                raise _err(f"{table_kind} {words[0]} declares entry {index} "
                           f"({selector & ~3:#x}) twice", loc)
            if d.table == words[0] and d.table_kind != table_kind:
                raise _err(f"{words[0]} is an {d.table_kind.upper()}, not an "
                           f"{table_kind.upper()}", loc)
        self.descriptors.append(DescriptorDecl(
            table_kind, words[0], selector, kind, dpl, "notpresent" not in opts,
            "long" in opts, "16bit" not in opts and "long" not in opts,
            "readonly" not in opts, "conforming" in opts,
            self._int(opts["base"], loc) if "base" in opts else 0, loc,
        ))

    def _int(self, text: str, loc: Loc) -> int:
        e = parse_expr(text, loc, self.consts)
        if not isinstance(e, Const):
            raise _err(f"{text.strip()!r} is not a number", loc)
        return e.value

    def _options(
        self, words: list[str], loc: Loc, flags: set[str], valued: set[str]
    ) -> dict[str, str]:
        out: dict[str, str] = {}
        k = 0
        while k < len(words):
            w = words[k]
            if w in flags:
                out[w] = "1"
                k += 1
            elif w in valued:
                if k + 1 >= len(words):
                    raise _err(f"{w} needs a value", loc)
                out[w] = words[k + 1]
                k += 2
            else:
                raise _err(f"unknown option {w!r}", loc)
        return out

    def _stack(self, rest: str, loc: Loc) -> None:
        words = rest.split()
        if not words:
            raise _err("write `stack NAME size N [base ADDR] [owner guest] [per-cpu]`", loc)
        opts = self._options(words[1:], loc, {"per-cpu"}, {"size", "base", "owner"})
        if "size" not in opts:
            raise _err(f"stack {words[0]} needs a size", loc)
        owner = opts.get("owner", "hypervisor")
        if owner not in ("hypervisor", "guest"):
            raise _err("owner is hypervisor or guest", loc)
        base = self._int(opts["base"], loc) if "base" in opts else None
        self.stacks.append(
            StackDecl(words[0], self._int(opts["size"], loc), owner, "per-cpu" in opts, base, loc)
        )

    def _block(self, lines: list[_Line], i: int) -> tuple[list[_Line], int]:
        body: list[_Line] = []
        j = i + 1
        while j < len(lines):
            if lines[j].text.strip() == "end":
                return body, j + 1
            body.append(lines[j])
            j += 1
        raise _err("block without `end`", lines[i].loc)

    def _cpus(self, text: str, loc: Loc) -> tuple[int, ...]:
        """`cpus LIST`: `0`, `1-3`, `0,2` (CPU numbers 0-15)."""
        out: list[int] = []
        for part in text.split(","):
            m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
            if not m:
                raise _err(f"bad CPU list {text!r}: write `cpus 0`, `cpus 1-3` or `cpus 0,2`",
                           loc)
            low = int(m.group(1))
            high = int(m.group(2)) if m.group(2) else low
            if not 0 <= low <= high <= 15:
                raise _err(f"bad CPU list {text!r}: CPUs are 0-15, low to high", loc)
            out.extend(range(low, high + 1))
        return tuple(sorted(set(out)))

    def _fred(self, rest: str, lines: list[_Line], i: int) -> int:
        """`fred` ... `end`: what the FRED MSRs hold before code writes them (FRED spec §4):
        `entry R3 R0` (IA32_FRED_CONFIG's entry point, and the routine at +256; `ring0 R3
        R0` says only where the ring-0 entry is, for code that writes IA32_FRED_CONFIG),
        `rsp N STACK|none` (IA32_FRED_RSPn, the top of a stack) and `level VECTOR N`
        (IA32_FRED_STKLVLS). IA32_FRED_CONFIG's other fields (the interrupt stack level,
        the red zone) stay 0, as Xen leaves them."""
        loc = lines[i].loc
        if rest:
            raise _err("write `fred` alone on its line, then the block", loc)
        if self.fred is not None:
            raise _err("the fred block is declared twice", loc)
        body, j = self._block(lines, i)
        entry: tuple[str, str] | None = None
        preload = False
        rsp: list[str | None] = [None] * 4
        levels: list[tuple[int, int]] = []
        for line in body:
            parts = line.text.split()
            if parts and parts[0] in ("entry", "ring0") and len(parts) == 3:
                entry = (parts[1], parts[2])
                preload = parts[0] == "entry"
            elif parts and parts[0] == "rsp" and len(parts) == 3:
                n = self._int(parts[1], line.loc)
                if not 0 <= n <= 3:
                    raise _err("FRED stack levels are 0-3", line.loc)
                rsp[n] = None if parts[2] == "none" else parts[2]
            elif parts and parts[0] == "level" and len(parts) == 3:
                vector = self._vector(parts[1], line.loc)
                n = self._int(parts[2], line.loc)
                if vector > 31 or not 0 <= n <= 3:
                    raise _err("write `level VECTOR N` with a vector 0-31 and a level 0-3",
                               line.loc)
                levels.append((vector, n))
            else:
                raise _err("in a fred block write `entry R3_ROUTINE R0_ROUTINE`, `ring0 "
                           "R3_ROUTINE R0_ROUTINE`, `rsp N STACK|none` or `level VECTOR N`",
                           line.loc)
        self.fred = FredDecl(entry, tuple(rsp), tuple(levels), loc, preload)
        self.fred_possible = True
        return j

    def _tss(self, rest: str, lines: list[_Line], i: int) -> int:
        loc = lines[i].loc
        words = rest.split()
        if not words:
            raise _err("write `tss NAME [per-cpu]`", loc)
        self._options(words[1:], loc, {"per-cpu"}, set())
        per_cpu = "per-cpu" in words
        body, j = self._block(lines, i)
        rsp0: str | None = None
        ist: list[str | None] = [None] * 7
        cpu_slots: list[tuple[tuple[int, ...], str, str | None]] = []
        for line in body:
            parts = line.text.split()
            cpus: tuple[int, ...] | None = None
            if len(parts) >= 2 and parts[-2] == "cpus":
                if not per_cpu:
                    raise _err(f"`cpus` needs a per-cpu tss: write `tss {words[0]} per-cpu`",
                               line.loc)
                cpus = self._cpus(parts[-1], line.loc)
                parts = parts[:-2]
            if parts and parts[0] == "rsp0" and len(parts) == 2:
                key, stack = "rsp0", (None if parts[1] == "none" else parts[1])
            elif parts and parts[0] == "ist" and len(parts) == 3:
                n = self._int(parts[1], line.loc)
                if not 1 <= n <= 7:
                    raise _err("IST slots are 1-7", line.loc)
                key, stack = f"ist {n}", (None if parts[2] == "none" else parts[2])
            else:
                raise _err("in a tss block write `rsp0 STACK` or `ist N STACK|none` "
                           "(optionally followed by `cpus LIST`)", line.loc)
            self.slot_locs.setdefault((words[0], key, stack), line.loc)
            if cpus is not None:
                cpu_slots.append((cpus, key, stack))
                continue
            # a line for every CPU overrides what earlier lines gave some CPUs
            cpu_slots = [x for x in cpu_slots if x[1] != key]
            if key == "rsp0":
                rsp0 = stack
            else:
                ist[int(key.split()[1]) - 1] = stack
        self.tsss.append(
            TssDecl(words[0], rsp0, tuple(ist), per_cpu, loc, tuple(cpu_slots))
        )
        return j

    def _idt(self, rest: str, lines: list[_Line], i: int) -> int:
        loc = lines[i].loc
        words = rest.split()
        if not words:
            raise _err("write `idt NAME [per-cpu] [limit N]`", loc)
        opts = self._options(words[1:], loc, {"per-cpu"}, {"limit"})
        body, j = self._block(lines, i)
        gates: dict[int, GateDecl] = {}
        some: list[GateDecl] = []  # lines with `cpus LIST`, in order
        for line in body:
            parts = line.text.split()
            if parts[0] not in ("gate", "gates") or len(parts) < 3:
                raise _err("in an idt block write `gate VECTOR ROUTINE [interrupt|trap] "
                           "[dpl N] [ist N] [not-present] [cpus LIST]`", line.loc)
            if parts[0] == "gates":
                m = re.fullmatch(r"(\S+)-(\S+)", parts[1])
                if not m:
                    raise _err("write `gates FIRST-LAST ROUTINE ...`", line.loc)
                vectors = range(
                    self._vector(m.group(1), line.loc), self._vector(m.group(2), line.loc) + 1
                )
            else:
                vectors = range(
                    self._vector(parts[1], line.loc), self._vector(parts[1], line.loc) + 1
                )
            kind = "interrupt"
            extra = parts[3:]
            if extra and extra[0] in ("interrupt", "trap"):
                kind = extra[0]
                extra = extra[1:]
            o = self._options(extra, line.loc, {"not-present"}, {"dpl", "ist", "cpus"})
            dpl = self._int(o.get("dpl", "0"), line.loc)
            ist = self._int(o.get("ist", "0"), line.loc)
            if dpl not in (0, 1, 2, 3) or not 0 <= ist <= 7:
                raise _err("dpl is 0-3 and ist 0-7", line.loc)
            cpus = self._cpus(o["cpus"], line.loc) if "cpus" in o else None
            if cpus is not None and "per-cpu" not in opts:
                raise _err(f"`cpus` needs a per-cpu idt: write `idt {words[0]} per-cpu`",
                           line.loc)
            for v in vectors:
                g = GateDecl(
                    v, parts[2], kind, dpl, ist, "not-present" not in o, line.loc, cpus
                )
                if cpus is not None:
                    some.append(g)
                else:
                    # a line for every CPU overrides what earlier lines gave some CPUs
                    some = [x for x in some if x.vector != v]
                    gates[v] = g
        limit = self._int(opts.get("limit", "256"), loc)
        if not 0 <= limit <= 256:
            # The limit counts vectors; 256 16-byte gates fill what IDTR's 16-bit byte
            # limit can reach (SDM §6.10).
            raise _err(f"idt {words[0]}: limit {limit:#x} is not 0-256 (it counts vectors)",
                       loc)
        self.idts.append(
            IdtDecl(
                words[0], limit, tuple(gates[v] for v in sorted(gates)) + tuple(some),
                "per-cpu" in opts, loc,
            )
        )
        return j

    def _vector(self, text: str, loc: Loc) -> int:
        if text in _VECTOR_BY_NAME:
            return _VECTOR_BY_NAME[text]
        v = self._int(text, loc)
        if not 0 <= v <= 255:
            raise _err(f"vector {text} is not 0-255", loc)
        return v

    def _cpu(self, rest: str, loc: Loc) -> None:
        words = rest.split()
        if not words:
            raise _err("write `cpu N|* start ROUTINE ...`", loc)
        which = None if words[0] == "*" else self._int(words[0], loc)
        regs: list[tuple[str, Expr]] = []
        plain: list[str] = []
        for w in words[1:]:
            m = re.fullmatch(r"%(\w+)=(.+)", w)
            if m:
                reg = self._reg(m.group(1), loc)
                if reg in ("rsp", "ss"):
                    raise _err(f"a cpu line sets %{reg} with `rsp EXPR`" if reg == "rsp"
                               else "a cpu line cannot set %ss", loc)
                regs.append((reg, parse_expr(m.group(2), loc, self.consts)))
            else:
                plain.append(w)
        o = self._options(
            plain, loc, {"nmi-blocked", "halted"},
            {"start", "cpl", "idt", "tss", "rsp", "if", "mce", "tf"},
        )
        if "start" not in o:
            raise _err("a cpu line needs `start ROUTINE`", loc)
        for flag in ("if", "mce", "tf"):
            if o.get(flag, "0") not in ("0", "1"):
                raise _err(f"write `{flag} 0` or `{flag} 1`, not {flag} {o[flag]!r}", loc)
        cpl = self._int(o.get("cpl", "0"), loc)
        if cpl not in (0, 1, 3):
            raise _err("cpl is 0, 1 or 3", loc)
        self.cpu_decls.append(
            CpuDecl(
                which=which,
                start=o["start"],
                cpl=cpl,
                idt=None if o.get("idt", "none") == "none" else o["idt"],
                tss=None if o.get("tss", "none") == "none" else o["tss"],
                rsp=parse_expr(o["rsp"], loc, self.consts) if "rsp" in o else None,
                interrupts=o.get("if", "0") == "1",
                nmi_blocked="nmi-blocked" in o,
                mce=o.get("mce", "1") == "1",
                regs=tuple(regs),
                halted="halted" in o,
                loc=loc,
                single_step=o.get("tf", "0") == "1",
            )
        )

    def _reg(self, name: str, loc: Loc) -> str:
        return self._register(name, loc).name

    def _register(self, name: str, loc: Loc) -> Reg:
        if name in _HIGH_BYTE:
            return Reg("r" + name[0] + "x", 1, high=True)
        if name in ("cr3", "cr4"):
            return Reg(name)
        if re.fullmatch(r"cr\d+", name):
            raise _err(f"%{name}: of the control registers only %cr3 and %cr4 are modelled",
                       loc)
        if name not in _REG_SIZES:
            raise _err(f"unknown register %{name}", loc)
        reg, size = _REG_SIZES[name]
        return Reg(reg, size)

    # -- assembler -----------------------------------------------------------------------
    def _asm_line(self, b: _Builder, s: str, loc: Loc) -> None:
        m = re.match(r"^(\d+|[A-Za-z_.$][\w.$]*):\s*(.*)$", s)
        if m:
            label = m.group(1)
            if label.isdigit():
                b.numeric.append((label, len(b.instrs)))
            else:
                if label in b.labels:
                    raise _err(f"label {label!r} defined twice", loc)
                b.labels[label] = len(b.instrs)
            s = m.group(2).strip()
            if not s:
                return
        fault: int | None = None
        fm = re.search(r"@fault\(\s*([#\w]+)\s*\)\s*$", s)
        if fm:
            name = fm.group(1)
            if name not in _VECTOR_BY_NAME:
                raise _err(f"unknown exception {name!r} in @fault (use #PF, #GP, #BP, ...)", loc)
            fault = _VECTOR_BY_NAME[name]
            s = s[: fm.start()].strip()
        rep = s.startswith("rep ")
        if rep:
            s = s[4:].strip()
            if s not in ("movsq",):
                raise _err(f"unsupported rep instruction {s!r}", loc)
        prefixes = 0
        written = s
        while True:
            parts = s.split(None, 1)
            if len(parts) == 2 and parts[0].lower() in _PREFIXES:
                prefixes += 1
                s = parts[1].strip()
                continue
            break
        mnemonic = parts[0].lower()
        if prefixes and mnemonic not in _PREFIXABLE:
            raise _err("instruction prefixes are modelled only on software interrupts, "
                       "SYSCALL and SYSENTER (their length is what FRED records)", loc)
        if mnemonic not in _MNEMONICS:
            if re.fullmatch(r"(j|set|cmov)(p|np|pe|po)[wlq]?", mnemonic):
                raise _err(f"{parts[0]}: PF is not modelled, so conditions on parity are "
                           "not supported", loc)
            raise _err(f"unknown instruction {parts[0]!r}", loc)
        if mnemonic == "movsq" and not rep:
            raise _err("only `rep movsq` is supported (it copies %rcx words)", loc)
        if rep:
            s = "rep " + s
        entry, width, src_width = _MNEMONICS[mnemonic]
        texts = _split_operands(parts[1]) if len(parts) > 1 else []
        counts = sorted({len(f) for f in entry.forms})
        if entry.variadic:
            if len(texts) < 2:
                raise _err(f"write `{mnemonic} DST, SRC1, SRC2, ...`", loc)
        elif len(texts) not in counts:
            want = " or ".join(str(c) for c in counts)
            raise _err(f"{mnemonic} takes {want} operand(s), got {len(texts)}", loc)
        args = [self._operand(t, loc, entry, k, len(texts)) for k, t in enumerate(texts)]
        op = entry.op
        cc = isa.condition_of(mnemonic, entry) if op in isa.CONDITION_OPS else ""
        if op == "mov" and any(isinstance(a, Reg) and a.name == "ss" for a in args[1:]):
            op = "mov_ss"
        if op == "pop" and args and isinstance(args[0], Reg) and args[0].name == "ss":
            op = "mov_ss"
        if any(isinstance(a, Reg) and a.name in ("cr3", "cr4") for a in args):
            self._check_mov_cr(op, tuple(args), mnemonic, loc)
            if isinstance(args[1], Reg) and args[1].name == "cr4":
                self.fred_possible = True  # code may set CR4.FRED
            b.instrs.append(Instr("mov_cr", tuple(args), loc, s, fault, 64))
            return
        width = 16 if op == "mov_ss" else self._width(entry, mnemonic, width, args, loc)
        size = (src_width or width) // 8
        args = [
            replace(a, size=size) if isinstance(a, (Mem, Abs)) and (k == 0 or not src_width)
            else replace(a, size=width // 8) if isinstance(a, (Mem, Abs)) else a
            for k, a in enumerate(args)
        ]
        if op in _JUMPS or op == "call":
            if isinstance(args[0], Name):
                b.pending.append((len(b.instrs), args[0].name, loc))
            elif not isinstance(args[0], Indirect):
                raise _err(f"{mnemonic} needs a label, a routine or `*` and a register or "
                           "memory operand", loc)
        final = tuple(args)
        self._check_high_byte(final, mnemonic, loc, width)
        if op != "mov_ss":
            self._check_forms(entry, final, mnemonic, loc, width)
        else:
            self._check_mov_ss(final, mnemonic, loc)
        if prefixes:
            s = written
        b.instrs.append(Instr(op, final, loc, s, fault, width, cc, src_width or 0, prefixes))

    @staticmethod
    def _check_high_byte(args: tuple[Arg, ...], mnemonic: str, loc: Loc, width: int) -> None:
        """%ah %bh %ch %dh have no encoding in an instruction with a REX prefix (SDM Vol. 2
        §2.2.1.2): GNU as refuses them beside %r8-%r15, %sil %dil %bpl %spl, a memory
        operand based or indexed on %r8-%r15, or a 64-bit operand size."""
        high = [a for a in args if isinstance(a, Reg) and a.high]
        if not high:
            return
        rex: list[str] = []
        for a in args:
            regs = [a] if isinstance(a, Reg) else [
                Reg(r) for r in (getattr(a, "base", None), getattr(a, "index", None))
                if isinstance(r, str)
            ] if isinstance(a, Mem) else []
            for r in regs:
                if r.name.startswith("r") and r.name[1:].isdigit():
                    rex.append(f"%{r.name}")
                elif r.size == 1 and not r.high and r.name in ("rsi", "rdi", "rbp", "rsp"):
                    rex.append(f"%{r.name[1:]}l")
        if width == 64:
            rex.append("a 64-bit operand size")
        if rex:
            name = high[0].name[1] + "h"
            raise _err(f"{mnemonic}: %{name} cannot be encoded in an instruction that needs a "
                       f"REX prefix ({rex[0]}); GNU as refuses it", loc)

    def _width(
        self, entry: isa.Insn, mnemonic: str, width: int | None, args: Sequence[Arg], loc: Loc
    ) -> int:
        """The operand size: the suffix's, else the registers', else the entry's default.
        Registers that disagree with each other or with the suffix are an error, as in GNU as
        ("operand size mismatch")."""
        if entry.spellings:
            assert width is not None
            sizes = [a.size * 8 if isinstance(a, Reg) else None for a in args]
            src = self._spelling_source(mnemonic)
            if sizes[0] not in (None, src) or sizes[-1] not in (None, width):
                raise _err(f"operand size mismatch for {mnemonic}", loc)
            return width
        regs = [
            a.size * 8 for k, a in enumerate(args)
            if isinstance(a, Reg) and a.name != "ss"
            # a shift's count register (%cl) and BT's offset are not the operand size
            and not (entry.semantics == "alu" and entry.imm_bits == 8 and k == 0 and len(args) == 2)
        ]
        if entry.op in ("lidt", "ltr", "lgdt", "input", "choose", "verw", "lss", "push", "pop",
                        "jmp", "call", "setcc"):
            if entry.op == "setcc" and regs and regs[0] != 8:
                raise _err(f"{mnemonic} writes a byte register (%al, %cl, ...)", loc)
            if entry.op in ("push", "pop") and regs and regs[0] != 64:
                raise _err(f"{mnemonic} of a {regs[0]}-bit register is not supported in "
                           "64-bit code", loc)
            return width or entry.width
        if regs and any(r != regs[0] for r in regs):
            raise _err(f"operand size mismatch for {mnemonic}", loc)
        if width is not None and regs and regs[0] != width:
            raise _err(f"operand size mismatch for {mnemonic}: the suffix says {width} bits, "
                       f"the register {regs[0]}", loc)
        if width is None and regs:
            width = regs[0]
        if width is not None and width not in (16, 32, 64) and entry.op in ("imul", "bt",
                                                                                 "cmovcc"):
            raise _err(f"{mnemonic} has no 8-bit form", loc)
        return width or entry.width

    @staticmethod
    def _spelling_source(mnemonic: str) -> int:
        return _MNEMONICS[mnemonic][2] or 0

    def _operand(self, text: str, loc: Loc, entry: isa.Insn, k: int, n: int) -> Operand:
        t = text.strip()
        kinds = {f[k] for f in entry.forms if len(f) == n and k < len(f)}
        if entry.variadic:
            kinds = {f[min(k, 1)] for f in entry.forms}
        if t.startswith("*"):
            inner = self._operand(t[1:], loc, isa.BY_OP["mov"], 0, 2)
            if not isinstance(inner, (Reg, Mem, Abs)) or "*" not in kinds:
                raise _err(f"unknown operand form {t!r}", loc)
            return Indirect(inner)
        if t.startswith("$"):
            return Imm(parse_expr(t[1:], loc, self.consts))
        m = re.fullmatch(r"%(\w+)\s*:\s*(.+)", t)
        if m:
            if m.group(1) != "gs":
                raise _err(f"segment override %{m.group(1)}: only %gs: is modelled", loc)
            gs = self._memory(m.group(2).strip(), loc, bare_name=True)
            if gs is None:
                raise _err(f"unknown operand form {t!r}", loc)
            return replace(gs, seg="gs")
        if t.startswith("%"):
            return self._register(t[1:], loc)
        m = re.fullmatch(r"(.*)\(%rip\)", t)
        if m:
            if "p" in kinds or "m" not in kinds:
                return Name("@rip:" + m.group(1).strip())
            # `movq foo(%rip), %rax`: RIP-relative data, a variable (plus a displacement)
            mem = self._memory(m.group(1).strip() or "0", loc, bare_name=True)
            if mem is None or mem.sym is None or mem.base is not None:
                raise _err(f"unknown operand form {t!r} (RIP-relative data names a "
                           "variable)", loc)
            return mem
        mem = self._memory(t, loc, bare_name=False)
        if mem is not None:
            return mem
        if re.fullmatch(r"\d+[fb]|" + _IDENT, t):
            if kinds & {"l", "n", "*"} or not kinds:
                return Name(t)
            # a variable as a memory operand (`movq $1, v`, `incl v`); checked at the end
            return Mem(None, 0, sym=Var(t))
        if "m" in kinds:
            e = parse_expr(t, loc, self.consts)
            if isinstance(e, Binary) and (plus := _var_plus_disp(e)) is not None:
                # `table+8`: the address of a variable plus a displacement, as in GNU as
                return Mem(None, plus[1] & ((1 << 64) - 1), sym=plus[0])
            # An absolute address (Xen's stubs store to `stack_bottom-8` directly).
            return Abs(e)
        raise _err(f"unknown operand form {t!r}", loc)

    def _memory(self, t: str, loc: Loc, bare_name: bool) -> Mem | None:
        """`disp(%base)`, `disp(%base,%index,scale)`, `table(,%index,8)`; with %gs: also a
        bare displacement (`%gs:NAME`, `%gs:0x10`)."""
        m = re.fullmatch(
            r"(.*?)\(\s*(%\w+)?\s*(?:,\s*(%\w+)\s*(?:,\s*(\w+))?\s*)?\)", t
        )
        if m is None:
            if not bare_name:
                return None
            disp_text, base, index, scale_text = t, None, None, None
        else:
            disp_text, base, index, scale_text = m.group(1), m.group(2), m.group(3), m.group(4)
        base_reg = self._register(base[1:], loc) if base else None
        index_reg = self._register(index[1:], loc) if index else None
        for r in (base_reg, index_reg):
            if r is not None and (r.name == "ss" or r.size != 8):
                raise _err(f"unknown operand form {t!r} (addresses use 64-bit registers)", loc)
        if index_reg is not None and index_reg.name == "rsp":
            raise _err(f"%rsp cannot be an index register in {t!r}", loc)
        scale = self._int(scale_text, loc) if scale_text else 1
        if scale not in (1, 2, 4, 8):
            raise _err(f"the scale in {t!r} is 1, 2, 4 or 8", loc)
        disp_text = disp_text.strip() or "0"
        e = parse_expr(disp_text, loc, self.consts)
        disp, sym = 0, None
        if isinstance(e, Const):
            disp = e.value
        elif isinstance(e, Var):
            sym = e
        elif isinstance(e, Binary) and (plus := _var_plus_disp(e)) is not None:
            sym, disp = plus
        else:
            raise _err(f"the displacement of {t!r} is a number or a variable name "
                       "(plus or minus a number)", loc)
        return Mem(base_reg.name if base_reg else None, disp, 8,
                   index_reg.name if index_reg else None, scale, "", sym)

    @staticmethod
    def _check_mov_cr(op: str, args: tuple[Arg, ...], mnemonic: str, loc: Loc) -> None:
        """MOV to/from CR3 takes a 64-bit general register in 64-bit mode (SDM Vol. 2 MOV
        to/from control registers), spelt `mov` or `movq`."""
        gprs = [a for a in args if isinstance(a, Reg) and a.name not in ("cr3", "cr4", "ss")]
        if (op != "mov" or mnemonic not in ("mov", "movq") or len(args) != 2
                or len(gprs) != 1 or gprs[0].size != 8):
            raise _err(f"unsupported operand form for {mnemonic}: write `mov %reg64, %crN` "
                       "or `mov %crN, %reg64` (N = 3 or 4)", loc)

    def _check_mov_ss(self, args: tuple[Arg, ...], mnemonic: str, loc: Loc) -> None:
        if mnemonic.startswith("pop"):
            return
        src, dst = args
        if not (isinstance(dst, Reg) and dst.name == "ss"
                and isinstance(src, (Reg, Mem, Abs)) and not (
                    isinstance(src, Reg) and src.name == "ss")):
            raise _err(f"unsupported operand form for {mnemonic}: write `mov %ax, %ss`", loc)

    def _check_forms(
        self, entry: isa.Insn, args: tuple[Arg, ...], mnemonic: str, loc: Loc, width: int
    ) -> None:
        def kind(a: object) -> str:
            if isinstance(a, Imm):
                return "i"
            if isinstance(a, Reg):
                return "r"
            if isinstance(a, (Mem, Abs)):
                return "m"
            if isinstance(a, Indirect):
                return "*"
            if isinstance(a, Name):
                return "p" if a.name.startswith("@rip:") else (
                    "l" if entry.op in _JUMPS or entry.op == "call" else "n")
            return "?"

        shown = ", ".join(
            {"i": "imm", "r": "reg", "m": "mem", "*": "*target", "l": "label",
             "p": "label(%rip)", "n": "name"}.get(kind(a), "?") for a in args
        )
        form = "".join(kind(a) for a in args)
        if entry.variadic:
            ok = form[:1] in ("r", "m") and all(c in "irm" for c in form[1:])
        else:
            ok = form in entry.forms or (form == "" and "" in entry.forms)
        if ok and any(isinstance(a, Reg) and a.name == "ss" for a in args):
            ok = False  # %ss is only written: `mov %ax, %ss`, `pop %ss`
        if ok and form in ("rr", "rm") and entry.imm_bits == 8 and entry.semantics == "alu":
            count = args[0]
            ok = (isinstance(count, Reg) and count.name == "rcx" and count.size == 1
                  and not count.high)
            if not ok:
                raise _err(f"{mnemonic}: a shift count register must be %cl", loc)
        if ok and entry.op == "imul" and form in ("irr", "imr"):
            ok = True
        if ok and entry.op == "xchg" and form == "mr":
            ok = True
        if not ok:
            raise _err(f"unsupported operand form for {mnemonic}: {shown}", loc)
        for k, a in enumerate(args):
            if isinstance(a, Imm) and isinstance(a.expr, Const):
                self._check_immediate(entry, mnemonic, a.expr.value, args, k, width, loc)

    def _check_immediate(
        self, entry: isa.Insn, mnemonic: str, value: int, args: tuple[Arg, ...], k: int,
        width: int, loc: Loc,
    ) -> None:
        """An immediate must fit the instruction's encoding (SDM Vol. 2 §2.2.1.5: imm8 and
        imm32 are sign-extended to 64 bits; only `mov $imm64, %reg` takes 64 bits)."""
        if entry.op == "int":
            if not 0 <= value <= 255:
                raise _err(f"int ${value}: the vector is 0-255", loc)
            return
        if entry.op in ("choose", "input"):
            return
        dst_reg = isinstance(args[-1], Reg)
        if entry.imm_bits == 8:
            if not -128 <= value <= 255:
                raise _err(f"{mnemonic} ${value:#x}: the count or bit offset is an imm8", loc)
            return
        if width < 64:
            if not alu.fits_unsigned_or_signed(value, width):
                raise _err(f"{mnemonic} ${value:#x}: a {width}-bit immediate cannot hold it", loc)
            return
        if entry.imm_bits == 64 and dst_reg:
            if not -(1 << 63) <= value < (1 << 64):
                raise _err(f"{mnemonic} ${value:#x}: more than 64 bits", loc)
            return
        if not alu.fits_immediate(value, 32) or not -(1 << 63) <= value < (1 << 64):
            form = ", ".join(
                "$imm32" if j == k else "%reg" if isinstance(a, Reg) else "mem"
                for j, a in enumerate(args)
            )
            raise _err(
                f"{mnemonic} ${value:#x}: `{mnemonic} {form}` encodes a 32-bit immediate "
                "sign-extended to 64 bits, which cannot hold it (load it with "
                "`movabs $imm64, %reg` first)", loc,
            )

    # -- pseudo-C ------------------------------------------------------------------------
    def _function(self, rest: str, lines: list[_Line], i: int) -> int:
        loc = lines[i].loc
        m = re.fullmatch(r"(\w+)\s*(?:\([^)]*\))?\s*\{", rest)
        if not m:
            raise _err("write `function NAME {` (or `function NAME(args) {`)", loc)
        b = _Builder(m.group(1), loc, "c", self.section, False)
        if b.name in self.routines:
            raise _err(f"routine {b.name!r} is defined twice", loc)
        self.routines[b.name] = b
        return _CCompiler(self, b).compile(lines, i + 1)

    # -- stage 4: resolve and check ----------------------------------------------------------
    def _subsection_order(self) -> None:
        """Lay a section's `.subsection N` routines out after its last subsection-0
        routine, in subsection order, as GNU as concatenates subsections: code addresses
        then compare as they would in the assembled object (a range check on a saved RIP
        spanning the likely path does not cover the unlikely blocks)."""
        if all(b.subsection == 0 for b in self.routines.values()):
            return
        order = [b for b in self.routines.values() if b.subsection == 0]
        later = [b for b in self.routines.values() if b.subsection > 0]
        for section in dict.fromkeys(b.section for b in later):
            moved = sorted((b for b in later if b.section == section), key=lambda b: b.subsection)
            last = max((k for k, b in enumerate(order) if b.section == section), default=-1)
            at = last + 1 if last >= 0 else len(order)
            order[at:at] = moved
        self.routines = {b.name: b for b in order}

    def _finish(self, variant: dict[str, str]) -> Design:
        self._subsection_order()
        stack_names = {s.name for s in self.stacks}
        for t in self.tsss:
            keys = ["rsp0"] + [f"ist {n}" for n in range(1, 8)]
            slots = [*zip(keys, (t.rsp0, *t.ist), strict=True)]
            slots += [(key, stack) for _, key, stack in t.cpu_slots]
            for key, slot in slots:
                if slot is not None and slot not in stack_names:
                    where = self.slot_locs.get((t.name, key, slot), t.loc)
                    raise _err(f"tss {t.name} names a missing stack {slot!r} ({key})", where)
        seen: dict[str, str] = {}
        for what, decls in (("stack", self.stacks), ("idt", self.idts), ("tss", self.tsss)):
            for d in decls:
                if d.name in seen:
                    raise _err(f"{what} {d.name!r}: the name is already a {seen[d.name]}", d.loc)
                seen[d.name] = what
        for idt in self.idts:
            for g in idt.gates:
                if g.routine not in self.routines:
                    raise _err(f"gate {g.vector} names a missing routine {g.routine!r}", g.loc)
        tables = {t.name for t in self.idts}
        tss_names = {t.name for t in self.tsss}
        for c in self.cpu_decls:
            if c.start not in self.routines:
                raise _err(f"cpu starts in a missing routine {c.start!r}", c.loc)
            for e in ([c.rsp] if c.rsp is not None else []) + [e for _, e in c.regs]:
                self._check_static(e, c.loc, stack_names)
            if c.idt is not None and c.idt not in tables:
                raise _err(f"cpu loads a missing idt {c.idt!r}", c.loc)
            if c.tss is not None and c.tss not in tss_names:
                raise _err(f"cpu loads a missing tss {c.tss!r}", c.loc)
        if not self.cpu_decls:
            raise InputError("the design declares no `cpu` line", self.path, 1)
        if self.guest_code is not None and self.guest_code not in self.routines:
            raise InputError(
                f"guest_code names a missing routine {self.guest_code!r}", self.path, 1
            )
        if self.lstar is not None and self.lstar not in self.routines:
            raise _err(f"lstar names a missing routine {self.lstar!r}", self.lstar_loc)
        if self.smap and self.fred_possible:
            loc = self.fred.loc if self.fred is not None else Loc(self.path, 1)
            raise _err("smap with FRED delivery is not modelled (FRED's pushes are not "
                       "checked against SMAP): drop one of them", loc)
        if self.fred is not None:
            for name in self.fred.entry or ():
                if name not in self.routines:
                    raise _err(f"fred entry names a missing routine {name!r}", self.fred.loc)
            for stack in self.fred.rsp:
                if stack is not None and stack not in stack_names:
                    raise _err(f"fred rsp names a missing stack {stack!r}", self.fred.loc)
        if self.sysenter is not None and self.sysenter[0] not in self.routines:
            raise _err(f"sysenter names a missing routine {self.sysenter[0]!r}", self.sysenter_loc)
        if self.sysenter is not None and self.sysenter[1] not in stack_names:
            raise _err(f"sysenter names a missing stack {self.sysenter[1]!r}", self.sysenter_loc)
        var_names = {v.name for v in self.variables}
        for group in self.symmetry_vars:
            for name in group:
                if name not in var_names:
                    raise _err(
                        f"symmetric names an undeclared variable {name!r}", self.symmetry_loc
                    )
        for v in self.variables:
            self._check_static(v.init, v.loc, stack_names)
        routines: dict[str, Routine] = {}
        global_labels: dict[str, tuple[str, int]] = {}
        for b in self.routines.values():
            for label, idx in b.labels.items():
                global_labels.setdefault(label, (b.name, idx))
        for b in self.routines.values():
            instrs = list(b.instrs)
            for idx, target, loc in b.pending:
                instrs[idx] = self._resolve(instrs[idx], idx, target, loc, b, global_labels)
            instrs = [self._resolve_rip(ins, k, b, global_labels) for k, ins in enumerate(instrs)]
            instrs = [
                self._resolve_code(ins, k, b, global_labels, var_names)
                for k, ins in enumerate(instrs)
            ]
            instrs = self._fall_through(b, instrs)
            for ins in instrs:
                self._check_names(ins, var_names, tables, tss_names, stack_names)
            routines[b.name] = Routine(
                b.name, tuple(instrs), b.loc, b.kind, b.section, b.guest, b.compat
            )
        for decl in self.cpu_decls:
            if decl.which is not None and not 0 <= decl.which < 16:
                raise _err(f"cpu {decl.which}: CPUs are numbered 0-15", decl.loc)
        return Design(
            name=self.name,
            path=self.path,
            title=self.title,
            knobs=self.knobs,
            variant=variant,
            cpus=self.cpus,
            stacks=tuple(self.stacks),
            idts=tuple(self.idts),
            tsss=tuple(self.tsss),
            variables=tuple(self.variables),
            cpu_decls=tuple(self.cpu_decls),
            routines=routines,
            lstar=self.lstar,
            sysenter=self.sysenter,
            vendor=self.vendor,
            df_rule=self.df_rule,
            fmask=self.fmask,
            breakpoints=tuple(self.breakpoints),
            smap=self.smap,
            delivery=self.delivery,
            fred=self.fred,
            fred_possible=self.fred_possible,
            selectors=tuple(self.selectors.items()),
            descriptors=tuple(self.descriptors),
            symmetric=self.symmetric,
            symmetry_loc=self.symmetry_loc if self.symmetric else None,
            symmetry_vars=self.symmetry_vars,
            inputs=self.inputs,
            guest_code=self.guest_code,
        )

    def _target(
        self,
        target: str,
        idx: int,
        loc: Loc,
        b: _Builder,
        global_labels: dict[str, tuple[str, int]],
    ) -> Target:
        m = re.fullmatch(r"(\d+)([fb])", target)
        if m:
            label, direction = m.group(1), m.group(2)
            if direction == "f":
                hits = [i for lab, i in b.numeric if lab == label and i > idx]
                if hits:
                    return Target(b.name, min(hits))
            else:
                hits = [i for lab, i in b.numeric if lab == label and i <= idx]
                if hits:
                    return Target(b.name, max(hits))
            raise _err(f"undefined label {target!r}", loc)
        if target in b.labels:
            return Target(b.name, b.labels[target])
        if target in self.routines:
            return Target(target, 0)
        if target in global_labels:
            r, i = global_labels[target]
            return Target(r, i)
        raise _err(f"undefined label or routine {target!r}", loc)

    def _resolve(
        self, ins: Instr, idx: int, target: str, loc: Loc, b: _Builder,
        global_labels: dict[str, tuple[str, int]],
    ) -> Instr:
        t = self._target(target, idx, loc, b, global_labels)
        args = tuple(t if isinstance(a, Name) and a.name == target else a for a in ins.args)
        return replace(ins, args=args)

    def _fall_through(self, b: _Builder, instrs: list[Instr]) -> list[Instr]:
        """Assembler falls through into the routine written next in the same section, as
        the CPU would."""
        if b.kind != "asm" or (instrs and instrs[-1].op in _NO_FALL_THROUGH):
            return instrs
        order = [
            r for r in self.routines.values()
            if r.kind == "asm" and (r.section, r.subsection) == (b.section, b.subsection)
        ]
        k = order.index(b)
        loc = instrs[-1].loc if instrs else b.loc
        if k + 1 < len(order) and order[k + 1].loc.line > b.loc.line:
            nxt = order[k + 1].name
            return instrs + [Instr("jmp", (Target(nxt, 0),), loc, f"(falls through to {nxt})")]
        return instrs + [Instr("c.fell_off", (), loc, "(runs off the end of the routine)")]

    def _resolve_rip(
        self, ins: Instr, idx: int, b: _Builder, global_labels: dict[str, tuple[str, int]]
    ) -> Instr:
        if not any(isinstance(a, Name) and a.name.startswith("@rip:") for a in ins.args):
            return ins
        args: list[Arg] = []
        for a in ins.args:
            if isinstance(a, Name) and a.name.startswith("@rip:"):
                if a.name[5:] in {v.name for v in self.variables}:
                    # `leaq table(%rip), %r10`: the address of a variable
                    args.append(Mem(None, 0, sym=Var(a.name[5:])))
                    continue
                t = self._target(a.name[5:], idx, ins.loc, b, global_labels)
                args.append(RipRel((t.routine, t.index)))
            else:
                args.append(a)
        return replace(ins, args=tuple(args))

    def _resolve_code(
        self, ins: Instr, idx: int, b: _Builder, global_labels: dict[str, tuple[str, int]],
        var_names: set[str],
    ) -> Instr:
        """`$label` is the label's code address; a variable named as a memory operand must
        exist (`movq $1, v`, `call *table(,%rax,8)`)."""
        if b.kind != "asm":
            return ins
        args: list[Arg] = []
        changed = False
        for a in ins.args:
            inner = a.target if isinstance(a, Indirect) else a
            if isinstance(inner, Mem) and inner.sym is not None:
                name = inner.sym.name
                if name not in var_names:
                    what = "a label, not a variable" if (
                        name in global_labels or name in self.routines) else "undefined"
                    mnemonic = ins.text.split()[0] if ins.text else ins.op
                    raise _err(f"unsupported operand form for {mnemonic}: {name!r} is {what} "
                               "(a memory operand names a `var` or `percpu` variable)", ins.loc)
            if (
                isinstance(a, Imm) and isinstance(a.expr, Var)
                and a.expr.name not in var_names and a.expr.name not in self.inputs
                and (a.expr.name in self.routines or a.expr.name in global_labels
                     or a.expr.name in b.labels)
            ):
                t = self._target(a.expr.name, idx, ins.loc, b, global_labels)
                args.append(Imm(CodeRef(t.routine, t.index)))
                changed = True
            else:
                args.append(a)
        return replace(ins, args=tuple(args)) if changed else ins

    def _check_names(
        self, ins: Instr, var_names: set[str], tables: set[str], tss_names: set[str],
        stack_names: set[str],
    ) -> None:
        if (
            ins.op == "lidt"
            and isinstance(ins.args[0], Name)
            and ins.args[0].name not in tables
            and ins.args[0].name != "empty"
        ):
            raise _err(f"lidt names a missing idt {ins.args[0].name!r}", ins.loc)
        if (
            ins.op == "ltr"
            and isinstance(ins.args[0], Name)
            and ins.args[0].name not in tss_names
        ):
            raise _err(f"ltr names a missing tss {ins.args[0].name!r}", ins.loc)
        if ins.op == "lgdt" and isinstance(ins.args[0], Name) and not any(
            d.table == ins.args[0].name and d.table_kind == "gdt" for d in self.descriptors
        ):
            raise _err(f"lgdt names a missing gdt {ins.args[0].name!r}", ins.loc)
        check = _NameCheck(self, ins, var_names, tables, tss_names, stack_names)
        op, a = ins.op, ins.args
        if op in ("c.assign", "c.assign_index"):
            assigned = str(a[0])
            if assigned not in var_names:
                raise _err(f"assignment to an undeclared variable {assigned!r}", ins.loc)
            if op == "c.assign":
                check.scalar(assigned)
            elif assigned not in check.arrays | check.percpu:
                raise _err(f"{assigned!r} is not an array or a per-CPU variable: "
                           f"write {assigned} = ...", ins.loc)
        elif op in ("c.choose", "c.choose_range"):
            first = a[0]
            if not isinstance(first, Var):
                raise _err(f"{op[2:]} needs a variable name first", ins.loc)
            assigned = first.name
            if assigned not in var_names:
                raise _err(f"assignment to an undeclared variable {assigned!r}", ins.loc)
            check.scalar(assigned)
            a = a[1:]
        elif op in ("c.input", "input"):
            source = a[1]
            name = source.name if isinstance(source, (Name, Var)) else None
            if name not in self.inputs:
                raise _err(f"{name!r} is not a declared input (write `input NAME = ...`)", ins.loc)
            if op == "c.input":
                target = a[0]
                if not (isinstance(target, Var) and target.name in var_names):
                    raise _err("input() needs a declared variable first", ins.loc)
                check.scalar(target.name)
            a = ()
        elif op in ("c.set_gate", "c.set_gate_ist"):
            check.named(a[0], "an idt", tables)
            a = a[1:]
        elif op in ("c.set_ist", "c.set_rsp0"):
            check.named(a[0], "a tss", tss_names)
            check.named(a[-1], "a stack", stack_names, "none" if op == "c.set_ist" else "")
            a = a[1:-1]
        elif op == "c.lidt":
            check.named(a[0], "an idt", tables, "empty")
            a = ()
        elif op == "c.copy_idt":
            check.named(a[0], "an idt", tables)
            check.named(a[1], "an idt", tables)
            a = ()
        elif op == "c.ltr":
            check.named(a[0], "a tss", tss_names)
            a = ()
        elif op == "c.send_nmi" and a[0] in [Var(d) for d in DESTINATIONS]:
            a = ()
        for arg in a:
            if isinstance(arg, Indirect):
                arg = arg.target
            if isinstance(arg, (Imm, Abs)):
                check.value(arg.expr)
            elif is_expr(arg):
                check.value(arg)

    def _check_static(self, e: Expr, loc: Loc, stack_names: set[str]) -> None:
        """An initial value (`var`, `percpu`, a `cpu` line's rsp and registers): numbers,
        `cpu`, `ncpus`, `top(STACK)` and arithmetic."""
        match e:
            case Binary(_, left, right):
                self._check_static(left, loc, stack_names)
                self._check_static(right, loc, stack_names)
            case Unary(_, operand):
                self._check_static(operand, loc, stack_names)
            case StackTop(stack):
                if stack.split("[")[0] not in stack_names:
                    raise _err(f"top() names a missing stack {stack!r}", loc)
            case Const() | ThisCpu() | NCpus():
                pass
            case _:
                what = f"{e.name!r}" if isinstance(e, Var) else "this"
                raise _err(f"an initial value must be a constant expression; {what} is not",
                           loc)


class _NameCheck:
    """What the names in one instruction's expressions must be: variables where a value is
    read, an idt / tss / stack where a builtin takes one."""

    def __init__(
        self, parser: _Parser, ins: Instr, var_names: set[str], tables: set[str],
        tss_names: set[str], stack_names: set[str],
    ):
        self.ins = ins
        self.vars = var_names
        self.arrays = {v.name for v in parser.variables if v.length > 1}
        self.percpu = {v.name for v in parser.variables if v.per_cpu}
        self.stacks = stack_names
        self.kinds = {"an idt": tables, "a tss": tss_names, "a stack": stack_names}
        self.per_cpu_objects = (
            {x.name for x in parser.stacks if x.per_cpu}
            | {x.name for x in parser.idts if x.per_cpu}
            | {x.name for x in parser.tsss if x.per_cpu}
        )

    def fail(self, msg: str) -> InputError:
        return _err(msg, self.ins.loc)

    def _undefined(self, name: str) -> InputError:
        for what, names in self.kinds.items():
            if name in names:
                return self.fail(f"{name!r} is {what}, not a value")
        return self.fail(f"undefined name {name!r}")

    def scalar(self, name: str) -> None:
        if name in self.arrays:
            raise self.fail(f"array {name!r} needs an index: {name}[i]")

    def value(self, e: Expr) -> None:
        match e:
            case Var(name):
                if name not in self.vars:
                    raise self._undefined(name)
                self.scalar(name)
            case Index(name, index):
                if name not in self.vars:
                    raise self._undefined(name)
                if name not in self.arrays | self.percpu:
                    raise self.fail(f"{name!r} is not an array or a per-CPU variable")
                self.value(index)
            case StackTop(stack):
                name, _, instance = stack.partition("[")
                if name not in self.stacks:
                    raise self.fail(f"top() names a missing stack {name!r}")
                if instance and name not in self.per_cpu_objects:
                    raise self.fail(f"stack {name!r} is not per-cpu: write top({name})")
            case Binary(_, left, right):
                self.value(left)
                self.value(right)
            case Unary(_, operand):
                self.value(operand)
            case Call("per_cpu", (first, *rest)):
                # expr.py admits per_cpu() of a variable name only
                if not isinstance(first, Var) or first.name not in self.percpu:
                    shown = repr(first.name) if isinstance(first, Var) else "this"
                    raise self.fail(f"per_cpu() needs a percpu variable, not {shown}")
                for part in rest:
                    self.value(part)
            case Call(_, args):
                for part in args:
                    self.value(part)

    def named(self, e: object, what: str, names: set[str], special: str = "") -> None:
        """A table, TSS or stack operand: `NAME` (this CPU's) or `NAME[i]` (CPU i's)."""
        if not is_expr(e):
            raise self.fail(f"{self.ins.op[2:]} needs {what} here")
        if special and e == Var(special):
            return
        if not isinstance(e, (Var, Index)) or e.name not in names:
            alternative = f" or {special}" if special else ""
            shown = e.name if isinstance(e, (Var, Index)) else "this"
            raise self.fail(f"{self.ins.op[2:]} needs {what}{alternative} here, "
                            f"and {shown!r} is not one")
        if isinstance(e, Index):
            if e.name not in self.per_cpu_objects:
                raise self.fail(f"{e.name!r} is not per-cpu: write {e.name} without an index")
            self.value(e.subscript)


def _var_plus_disp(e: Binary) -> tuple[Var, int] | None:
    """`table+8`, `table-8`: a variable's address and a displacement, or None."""
    match e:
        case Binary("+" | "-" as op, Var() as var, Const(disp)):
            return var, disp if op == "+" else -disp
    return None


def _split_operands(text: str) -> list[str]:
    out, depth, cur = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        out.append(cur.strip())
    return out


class _CCompiler:
    """Lowers a pseudo-C function body to flat instructions (one statement, one step)."""

    def __init__(self, parser: _Parser, b: _Builder):
        self.p = parser
        self.b = b
        self.counter = 0
        # open blocks: (kind, data, loc)
        self.blocks: list[tuple[str, dict[str, object], Loc]] = []

    def _label(self) -> str:
        self.counter += 1
        return f".c{self.counter}"

    def _emit(self, op: str, args: tuple[Arg, ...], loc: Loc, text: str) -> None:
        self.b.instrs.append(Instr(op, args, loc, text))

    def _place(self, label: str) -> None:
        self.b.labels[label] = len(self.b.instrs)

    def _jump(self, op: str, args: tuple[Arg, ...], label: str, loc: Loc, text: str) -> None:
        self.b.pending.append((len(self.b.instrs), label, loc))
        self._emit(op, args + (Name(label),), loc, text)

    def compile(self, lines: list[_Line], i: int) -> int:
        while i < len(lines):
            line = lines[i]
            s = line.text.strip()
            loc = line.loc
            i += 1
            if line.text[:1] not in (" ", "\t") and not s.startswith("}"):
                # a declaration or routine header: the function was never closed
                raise _err(f"function {self.b.name} has no closing `}}` before this line", loc)
            for stmt in _statements(s):
                fault: int | None = None
                fm = re.search(r"@fault\(\s*([#\w]+)\s*\)\s*;?\s*$", stmt)
                if fm:
                    if fm.group(1) not in _VECTOR_BY_NAME:
                        raise _err(f"unknown exception {fm.group(1)!r} in @fault", loc)
                    fault = _VECTOR_BY_NAME[fm.group(1)]
                    stmt = stmt[: fm.start()].strip()
                before = len(self.b.instrs)
                if self._statement(stmt, loc):
                    self._emit("ret", (), loc, "}")
                    return i
                if fault is not None:
                    if len(self.b.instrs) == before:
                        raise _err("@fault needs a statement that takes a step", loc)
                    ins = self.b.instrs[before]
                    self.b.instrs[before] = replace(ins, fault=fault)
        raise _err(f"function {self.b.name} has no closing `}}`", self.b.loc)

    def _cond(self, text: str, loc: Loc) -> Expr:
        return parse_expr(text, loc, self.p.consts)

    def _statement(self, s: str, loc: Loc) -> bool:
        """Compile one statement; True when it closes the function."""
        m = re.fullmatch(r"\}\s*else\s+if\s*\((.*)\)\s*\{", s)
        if m:
            self._else(loc, s)
            self._open_if(m.group(1), loc, s, chained=True)
            return False
        if re.fullmatch(r"\}\s*else\s*\{", s):
            self._else(loc, s)
            return False
        if s == "}":
            if not self.blocks:
                return True
            self._close(loc)
            return False
        m = re.fullmatch(r"if\s*\((.*)\)\s*\{", s)
        if m:
            self._open_if(m.group(1), loc, s, chained=False)
            return False
        m = re.fullmatch(r"for\s*\(([^;]+);([^;]+);([^;]+)\)\s*\{", s)
        if m:
            # for (init; cond; step) { body }  ==  init; while (cond) { body; step }
            self._statement(m.group(1).strip(), loc)
            top, end = self._label(), self._label()
            self._place(top)
            self._jump("c.branch_false", (self._cond(m.group(2), loc),), end, loc, s)
            self.blocks.append(("loop", {"top": top, "end": end, "step": m.group(3).strip()}, loc))
            return False
        m = re.fullmatch(r"while\s*\((.*)\)\s*\{", s)
        if m or re.fullmatch(r"for\s*\(\s*;\s*;\s*\)\s*\{", s):
            top, end = self._label(), self._label()
            self._place(top)
            if m and m.group(1).strip() not in ("1", "true"):
                self._jump("c.branch_false", (self._cond(m.group(1), loc),), end, loc, s)
            self.blocks.append(("loop", {"top": top, "end": end}, loc))
            return False
        if s == "atomic {":
            self._emit("c.atomic_begin", (), loc, s)
            self.blocks.append(("atomic", {}, loc))
            return False
        if s.endswith("{"):
            raise _err(f"unknown block statement {s!r}", loc)
        s = s.rstrip(";").strip()
        if not s:
            return False
        if s in ("return", "return 0"):
            self._emit("ret", (), loc, s)
            return False
        m = re.fullmatch(r"(\w+)\s*(\+\+|--)", s)
        if m:
            op = "+" if m.group(2) == "++" else "-"
            self._emit(
                "c.assign", (m.group(1), Binary(op, Var(m.group(1)), Const(1))), loc, s
            )
            return False
        if self._store(s, loc):
            return False
        m = re.fullmatch(r"(\w+)\s*(?:\[(.+)\])?\s*(\+|-|\||&|\^)?=\s*(.+)", s)
        if m and not m.group(4).startswith("="):
            name, index, op, value = m.group(1), m.group(2), m.group(3), self._cond(m.group(4), loc)
            target: Expr = Var(name) if index is None else Index(name, self._cond(index, loc))
            if op:
                value = Binary(op, target, value)
            if index is None:
                self._emit("c.assign", (name, value), loc, s)
            else:
                self._emit("c.assign_index", (name, self._cond(index, loc), value), loc, s)
            return False
        m = re.fullmatch(r"(\w+)\s*\((.*)\)", s)
        if m:
            self._call(m.group(1), m.group(2), loc, s)
            return False
        raise _err(f"unknown statement {s!r}", loc)

    def _store(self, s: str, loc: Loc) -> bool:
        """`%reg = e;`, `mem(ADDR) = e;` and `per_cpu(x, i) = e;` (also `op=`): pseudo-C
        writing a register, a memory word or another CPU's copy of a per-CPU variable."""
        m = re.fullmatch(r"%(\w+)\s*([-+|&^]?)=\s*(.+)", s)
        if m and not m.group(3).startswith("="):
            reg = self.p._register(m.group(1), loc)
            if reg.size != 8 or reg.name == "ss":
                raise _err(f"pseudo-C writes 64-bit registers, not %{m.group(1)}", loc)
            value = self._cond(m.group(3), loc)
            if m.group(2):
                value = Binary(m.group(2), RegValue(reg.name), value)
            self._emit("c.store", (reg, value), loc, s)
            return True
        m = re.fullmatch(r"mem\s*\((.+)\)\s*([-+|&^]?)=\s*(.+)", s)
        if m and not m.group(3).startswith("="):
            address = self._cond(m.group(1), loc)
            value = self._cond(m.group(3), loc)
            if m.group(2):
                value = Binary(m.group(2), Call("mem", (address,)), value)
            self._emit("c.store", (Abs(address), value), loc, s)
            return True
        m = re.fullmatch(r"per_cpu\s*\(\s*(\w+)\s*,(.+)\)\s*([-+|&^]?)=\s*(.+)", s)
        if m and not m.group(4).startswith("="):
            name, index = m.group(1), self._cond(m.group(2), loc)
            value = self._cond(m.group(4), loc)
            if m.group(3):
                value = Binary(m.group(3), Index(name, index), value)
            self._emit("c.assign_index", (name, index, value), loc, s)
            return True
        return False

    def _open_if(self, cond: str, loc: Loc, text: str, chained: bool) -> None:
        els = self._label()
        self._jump("c.branch_false", (self._cond(cond, loc),), els, loc, text)
        end = self.blocks[-1][1]["end"] if chained else self._label()
        self.blocks.append(("if", {"else": els, "end": end, "chained": chained}, loc))

    def _else(self, loc: Loc, text: str) -> None:
        if not self.blocks or self.blocks[-1][0] != "if":
            raise _err("`else` without `if`", loc)
        _kind, data, where = self.blocks.pop()
        self._jump("jmp", (), str(data["end"]), loc, text)
        self._place(str(data["else"]))
        # the else branch closes with the same `}` as a plain block
        self.blocks.append(("else", {"end": data["end"], "chained": data["chained"]}, where))

    def _close(self, loc: Loc) -> None:
        kind, data, _ = self.blocks.pop()
        if kind == "if":
            self._place(str(data["else"]))
        if kind in ("if", "else"):
            if data["chained"]:
                # `} else if (...) {` opened this `if` inside the outer else: one `}`
                # closes both.
                self._close(loc)
            else:
                self._place(str(data["end"]))
        elif kind == "loop":
            if data.get("step"):
                self._statement(str(data["step"]), loc)
            self._jump("jmp", (), str(data["top"]), loc, "}")
            self._place(str(data["end"]))
        elif kind == "atomic":
            self._emit("c.atomic_end", (), loc, "}")

    def _call(self, name: str, args_text: str, loc: Loc, text: str) -> None:
        args = [a for a in _split_operands(args_text)] if args_text.strip() else []
        if name in BUILTINS:
            lo, hi = BUILTINS[name]
            if not lo <= len(args) <= hi:
                raise _err(f"{name} takes {lo}-{hi} arguments, got {len(args)}", loc)
            if name in ("atomic_inc", "atomic_dec"):
                var = args[0].lstrip("&")
                delta = "+" if name == "atomic_inc" else "-"
                self._emit(
                    "c.assign", (var, Binary(delta, Var(var), Const(1))), loc, text
                )
                return
            if name == "atomic_set":
                self._emit("c.assign", (args[0].lstrip("&"), self._cond(args[1], loc)), loc, text)
                return
            if name in ("set_gate", "set_gate_ist") and args[1] in _VECTOR_BY_NAME:
                args[1] = str(_VECTOR_BY_NAME[args[1]])  # `#PF`, `NMI`, ... as in an idt block
            if name == "set_gate":
                parsed: list[Arg] = [
                    self._cond(args[0], loc), self._cond(args[1], loc), Name(args[2])
                ]
                parsed += [a.strip() for a in args[3:]]
                if len(args) > 3 and args[3] not in ("interrupt", "trap"):
                    raise _err(
                        f"set_gate: the gate type is interrupt or trap, not {args[3]!r}", loc
                    )
                for what, field, top in zip(("dpl", "ist"), args[4:], (3, 7), strict=False):
                    if not re.fullmatch(r"\d+", field) or int(field) > top:
                        raise _err(f"set_gate: {what} is a number 0-{top}, not {field!r}", loc)
                self._check_routine(args[2], loc)
                self._emit("c.set_gate", tuple(parsed), loc, text)
                return
            if (
                name == "send_nmi" and args[0].strip() in ("SELF", "ALL")
                and any(b[0] == "atomic" for b in self.blocks)
            ):
                # An invalid shorthand has several outcomes (SDM Vol. 3A Table 11-3), and a
                # step inside `atomic { }` has one: the outcomes would be lost.
                raise _err(f"send_nmi({args[0].strip()}) has several outcomes (the shorthand "
                           "is invalid with delivery mode NMI); it cannot be inside atomic",
                           loc)
            conv = tuple(self._cond(a, loc) for a in args)
            self._emit(f"c.{name}", conv, loc, text)
            return
        if args:
            raise _err(f"calls to {name} take no arguments in this language", loc)
        self.b.pending.append((len(self.b.instrs), name, loc))
        self._emit("call", (Name(name),), loc, text)

    def _check_routine(self, name: str, loc: Loc) -> None:
        # Checked at the end like every other name; recorded as a pending reference.
        self.b.pending.append((len(self.b.instrs), name, loc))


def _statements(s: str) -> list[str]:
    """Split a line into statements at `;` outside parentheses, keeping braces apart."""
    out: list[str] = []
    depth = 0
    cur = ""
    for ch in s:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == ";" and depth == 0:
            if cur.strip():
                out.append(cur.strip())
            cur = ""
            continue
        cur += ch
        if depth == 0 and ch == "{":
            out.append(cur.strip())
            cur = ""
    if cur.strip():
        out.append(cur.strip())
    return out


_BREAKPOINT_KINDS = ("exec", "write", "rw")


def parse_breakpoint(text: str, loc: Loc, consts: dict[str, int] | None = None) -> BreakpointDecl:
    """`exec|write|rw ADDRESS [len 1|2|4|8]` (a design's `breakpoint` line, or an entry of
    a property file's `environment.breakpoints`)."""
    m = re.fullmatch(r"\s*(\w+)\s+(.+?)(?:\s+len\s+(\w+))?\s*", text)
    if not m or m.group(1) not in _BREAKPOINT_KINDS:
        raise _err("write `breakpoint exec|write|rw ADDRESS [len 1|2|4|8]`", loc)
    kind, where = m.group(1), m.group(2)
    length = int(m.group(3), 0) if m.group(3) and m.group(3).isdigit() else (
        1 if m.group(3) is None else 0
    )
    if length not in (1, 2, 4, 8) or (kind == "exec" and m.group(3) and length != 1):
        raise _err("a breakpoint's len is 1, 2, 4 or 8 (an exec breakpoint's is 1)", loc)
    if kind == "exec":
        r = re.fullmatch(r"(\w+)(?:\s*\+\s*(\d+))?", where)
        if not r:
            raise _err("an exec breakpoint names a routine: `ROUTINE` or `ROUTINE+N`", loc)
        return BreakpointDecl(kind, CodeRef(r.group(1), int(r.group(2) or 0)), 1, loc)
    return BreakpointDecl(kind, parse_expr(where, loc, consts), length, loc)
