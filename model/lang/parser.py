"""The design-language parser: text -> `Design` (see docs/design-language.md).

Stages, each keeping source lines so every error and every trace step names file:line:
1. comments are stripped and `.if knob == value` / `.elif` / `.else` / `.endif` select
   the variant's lines;
2. `.macro NAME` ... `.endm` bodies are recorded and expanded where invoked;
3. declarations, assembler routines and pseudo-C functions are parsed;
4. labels, routines and names are resolved and checked.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from checker.errors import InputError, ModelInputError
from model.lang.expr import parse_expr
from model.lang.ir import (
    Abs,
    CpuDecl,
    Design,
    Expr,
    GateDecl,
    IdtDecl,
    Imm,
    InputDecl,
    Instr,
    Loc,
    Mem,
    Name,
    Reg,
    RipRel,
    Routine,
    StackDecl,
    Target,
    TssDecl,
    VarDecl,
)
from model.x86.arch import VECTOR_NAMES

_VECTOR_BY_NAME = {name: v for v, name in VECTOR_NAMES.items()}

# 32-bit register names map to the 64-bit register they are part of.
_REG_ALIASES = {
    "eax": "rax", "ebx": "rbx", "ecx": "rcx", "edx": "rdx", "esi": "rsi", "edi": "rdi",
    "ebp": "rbp", "esp": "rsp", "ax": "rax", "al": "rax",
    **{f"r{n}d": f"r{n}" for n in range(8, 16)},
}
REGISTERS = frozenset({
    "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp",
    "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "ss",
})

# mnemonic -> (normalised op, operand count or None for "any"); size suffixes are folded.
_MNEMONICS: dict[str, tuple[str, int | None]] = {
    "push": ("push", 1), "pushq": ("push", 1),
    "pop": ("pop", 1), "popq": ("pop", 1),
    "mov": ("mov", 2), "movq": ("mov", 2), "movl": ("movl", 2), "movabsq": ("mov", 2),
    "movabs": ("mov", 2),
    "lea": ("lea", 2), "leaq": ("lea", 2),
    "add": ("add", 2), "addq": ("add", 2), "sub": ("sub", 2), "subq": ("sub", 2),
    "addl": ("add32", 2), "subl": ("sub32", 2),
    "and": ("and", 2), "andq": ("and", 2), "andl": ("and32", 2),
    "or": ("or", 2), "orq": ("or", 2), "orl": ("or32", 2),
    "xor": ("xor", 2), "xorq": ("xor", 2), "xorl": ("xor32", 2),
    "cmp": ("cmp", 2), "cmpq": ("cmp", 2), "cmpl": ("cmp32", 2), "cmpb": ("cmp8", 2),
    "cmpw": ("cmp16", 2),
    "test": ("test", 2), "testq": ("test", 2), "testl": ("test32", 2), "testb": ("test8", 2),
    "testw": ("test16", 2),
    "inc": ("inc", 1), "incq": ("inc", 1), "incl": ("inc32", 1),
    "dec": ("dec", 1), "decq": ("dec", 1), "decl": ("dec32", 1),
    "sar": ("sar", 2), "sarq": ("sar", 2), "shr": ("shr", 2), "shrq": ("shr", 2),
    "shl": ("shl", 2), "shlq": ("shl", 2),
    "jmp": ("jmp", 1), "je": ("je", 1), "jz": ("je", 1), "jne": ("jne", 1), "jnz": ("jne", 1),
    "jl": ("jl", 1), "jge": ("jge", 1), "jle": ("jle", 1), "jg": ("jg", 1),
    "jb": ("jb", 1), "jae": ("jae", 1), "ja": ("ja", 1), "jbe": ("jbe", 1),
    "js": ("js", 1), "jns": ("jns", 1),
    "call": ("call", 1), "callq": ("call", 1), "ret": ("ret", 0), "retq": ("ret", 0),
    "pushf": ("pushf", 0), "pushfq": ("pushf", 0), "popf": ("popf", 0), "popfq": ("popf", 0),
    "cli": ("cli", 0), "sti": ("sti", 0), "hlt": ("hlt", 0), "nop": ("nop", 0),
    "pause": ("nop", 0), "iret": ("iret", 0), "iretq": ("iret", 0),
    "sysret": ("sysret", 0), "sysretq": ("sysret", 0), "swapgs": ("swapgs", 0),
    "ud2": ("ud2", 0), "int": ("int", 1), "int3": ("int3", 0), "into": ("into", 0),
    "int1": ("int1", 0), "icebp": ("int1", 0), "syscall": ("syscall", 0),
    "sysenter": ("sysenter", 0),
    "lidt": ("lidt", 1), "ltr": ("ltr", 1), "movsq": ("movsq", 0),
    "choose": ("choose", None),
    "input": ("input", 2),
}
_MEMORY_OPS = {"mov", "movl", "push", "cmp", "cmp32", "test", "test8", "test32"}
_NO_FALL_THROUGH = {"jmp", "ret", "iret", "sysret", "ud2"}
_JUMPS = {"jmp", "je", "jne", "jl", "jge", "jle", "jg", "jb", "jae", "ja", "jbe", "js", "jns"}

# Pseudo-C statements that are architectural or environment actions.
BUILTINS: dict[str, tuple[int, int]] = {  # name -> (min args, max args)
    "set_gate": (3, 6), "set_gate_ist": (3, 3), "set_ist": (3, 3), "set_rsp0": (2, 2),
    "lidt": (1, 1), "ltr": (1, 1), "send_nmi": (1, 1), "halt": (0, 0), "cli": (0, 0),
    "sti": (0, 0), "clear_mcip": (0, 0), "write_cr4_mce": (1, 1), "free_init": (0, 0),
    "wait_until": (1, 1), "wait_timeout": (1, 1), "atomic_inc": (1, 1),
    "atomic_dec": (1, 1), "atomic_set": (2, 2), "assert": (1, 1), "nop": (0, 0),
    "choose": (2, 16), "choose_range": (3, 3), "input": (2, 2), "stop": (0, 0), "copy_idt": (2, 2),
}
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
    instrs: list[Instr] = field(default_factory=list)
    labels: dict[str, int] = field(default_factory=dict)
    numeric: list[tuple[str, int]] = field(default_factory=list)  # (label, index) in order
    pending: list[tuple[int, str, Loc]] = field(default_factory=list)  # unresolved targets


_MAX_EXPANDED = 100_000  # lines a design may expand to (`.rept` counts, nested macros)


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

    return re.sub(r"\\(\w+|@|\(\))", one, text)


def strip_comments(text: str) -> list[str]:
    """Remove `/* */`, `//` and `# ` comments, keeping the line count."""
    text = re.sub(r"/\*.*?\*/", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S)
    out = []
    for line in text.split("\n"):
        line = re.sub(r"//.*$", "", line)
        line = re.sub(r"(^|\s)#(\s.*)?$", "", line)
        out.append(line.rstrip())
    return out


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


def parse_design(path: str | Path, variant: Mapping[str, str] | None = None) -> Design:
    """Parse the design at `path` for the given knob values (unset knobs: defaults)."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise InputError(f"cannot read design: {e.strerror}", str(p)) from None
    return _Parser(str(p), text, dict(variant or {})).parse()


def design_knobs(path: str | Path) -> tuple[str, dict[str, tuple[str, ...]]]:
    """The design's name and knobs, without selecting a variant."""
    p = Path(path)
    parser = _Parser(str(p), p.read_text(), {})
    parser.scan_header()
    return parser.name, parser.knobs


class _Parser:
    def __init__(self, path: str, text: str, variant: dict[str, str]):
        self.path = path
        self.raw = _join_continuations(strip_comments(text))
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
        self.lstar: str | None = None
        self.lstar_loc = Loc(path, 1)
        self.sysenter: tuple[str, str] | None = None  # (routine, stack): SYSENTER_EIP/ESP
        self.sysenter_loc = Loc(path, 1)
        self.slot_locs: dict[tuple[str, str], Loc] = {}  # (tss, "rsp0" | "ist N") -> line
        self.stacks: list[StackDecl] = []
        self.idts: list[IdtDecl] = []
        self.tsss: list[TssDecl] = []
        self.variables: list[VarDecl] = []
        self.cpu_decls: list[CpuDecl] = []
        self.routines: dict[str, _Builder] = {}
        self.macros: dict[str, _Macro] = {}
        self.invocations = 0  # macro invocations so far (what `\@` counts)
        self.section = ".text"
        self.previous_section = ".text"  # what `.previous` returns to
        # .pushsection: (section, previous section, the routine it interrupted, where)
        self.section_stack: list[tuple[str, str, _Builder | None, Loc]] = []
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
                loc = Loc(self.path, n)
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
        for n, text in enumerate(self.raw, 1):
            loc = Loc(self.path, n)
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
        expanded = self._expand(out, depth=0)
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
            m = re.fullmatch(r"const\s+(\w+)\s*=\s*(.+)", line.text)
            if m:
                e = parse_expr(m.group(2), line.loc, self.consts)
                if e[0] == "const":
                    self.consts[m.group(1)] = e[1]

    def _expand(self, lines: list[_Line], depth: int) -> list[_Line]:
        out: list[_Line] = []
        i = 0
        while i < len(lines):
            line = lines[i]
            s = line.text.strip()
            rep = re.match(r"\.(rept|irpc|irp)(?:\s+(.*))?$", s)
            if rep:
                block, i = self._repeat_block(lines, i)
                for copy in self._repeat_copies(rep.group(1), rep.group(2) or "", block, line.loc):
                    out.extend(self._expand(copy, depth + 1))
                if len(out) > _MAX_EXPANDED:
                    raise _err(f"the expansion is over {_MAX_EXPANDED} lines", line.loc)
                continue
            if s == ".endr":
                raise _err(".endr without .rept, .irp or .irpc", line.loc)
            i += 1
            m = re.match(r"(\s*)((?:\d+|[A-Za-z_.$][\w.$]*):)?\s*([A-Za-z_.$][\w.$]*)(.*)$",
                         line.text)
            if not m or m.group(3) not in self.macros:
                out.append(line)
                continue
            macro = self.macros[m.group(3)]
            if depth > 16:
                raise _err(f"macro {macro.name} expands recursively", line.loc)
            if m.group(2):
                # `3: RESTORE_ALL`: the label stays where it was written, then the body
                out.append(_Line(m.group(1) + m.group(2), line.loc))
            values = self._macro_args(macro, m.group(4), line.loc)
            self.invocations += 1
            body = [
                _Line(_substitute(b.text, values, str(self.invocations)),
                      Loc(b.loc.file, b.loc.line, line.loc))
                for b in macro.body
            ]
            out.extend(self._expand(body, depth + 1))
            if len(out) > _MAX_EXPANDED:
                raise _err(f"the expansion is over {_MAX_EXPANDED} lines", line.loc)
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
            return [list(block) for _ in range(count)]
        m = re.fullmatch(r"([A-Za-z_]\w*)\s*(?:,\s*(.*))?", args.strip())
        if not m:
            raise _err(f"write `.{kind} SYMBOL, VALUE, ...`", loc)
        symbol, rest = m.group(1), (m.group(2) or "").strip()
        if kind == "irp":
            values = [_unquote(v) for v in _split_args(rest)] if rest else [""]
        else:
            values = list(_unquote(rest)) or [""]
        return [
            [_Line(_substitute(b.text, {symbol: v}, None), b.loc) for b in block]
            for v in values
        ]

    # -- stage 3: the body -------------------------------------------------------------
    def parse(self) -> Design:
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
                m = re.fullmatch(r"(?:ENTRY|GLOBAL)\((\w+)\):?|([A-Za-z_]\w*):", s)
                g = re.fullmatch(r"GUEST(32)?\((\w+)\):?", s)
                local = re.fullmatch(r"(\.L[\w.$]*):", s) if current is None else None
                if m or g or local:
                    name = (
                        local.group(1) if local
                        else g.group(2) if g
                        else (m.group(1) or m.group(2))  # type: ignore[union-attr]
                    )
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
        b = _Builder(name, loc, kind, self.section, guest)
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
            if e[0] != "const":
                raise _err(f"constant {m.group(1)} is not a number", loc)
            self.consts[m.group(1)] = e[1]
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

    def _int(self, text: str, loc: Loc) -> int:
        e = parse_expr(text, loc, self.consts)
        if e[0] != "const":
            raise _err(f"{text.strip()!r} is not a number", loc)
        return int(e[1])

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

    def _tss(self, rest: str, lines: list[_Line], i: int) -> int:
        loc = lines[i].loc
        words = rest.split()
        if not words:
            raise _err("write `tss NAME [per-cpu]`", loc)
        self._options(words[1:], loc, {"per-cpu"}, set())
        body, j = self._block(lines, i)
        rsp0: str | None = None
        ist: list[str | None] = [None] * 7
        for line in body:
            parts = line.text.split()
            if parts[0] == "rsp0" and len(parts) == 2:
                rsp0 = None if parts[1] == "none" else parts[1]
                self.slot_locs[(words[0], "rsp0")] = line.loc
            elif parts[0] == "ist" and len(parts) == 3:
                n = self._int(parts[1], line.loc)
                if not 1 <= n <= 7:
                    raise _err("IST slots are 1-7", line.loc)
                ist[n - 1] = None if parts[2] == "none" else parts[2]
                self.slot_locs[(words[0], f"ist {n}")] = line.loc
            else:
                raise _err("in a tss block write `rsp0 STACK` or `ist N STACK|none`", line.loc)
        self.tsss.append(TssDecl(words[0], rsp0, tuple(ist), "per-cpu" in words, loc))
        return j

    def _idt(self, rest: str, lines: list[_Line], i: int) -> int:
        loc = lines[i].loc
        words = rest.split()
        if not words:
            raise _err("write `idt NAME [per-cpu] [limit N]`", loc)
        opts = self._options(words[1:], loc, {"per-cpu"}, {"limit"})
        body, j = self._block(lines, i)
        gates: dict[int, GateDecl] = {}
        for line in body:
            parts = line.text.split()
            if parts[0] not in ("gate", "gates") or len(parts) < 3:
                raise _err("in an idt block write `gate VECTOR ROUTINE [interrupt|trap] "
                           "[dpl N] [ist N] [not-present]`", line.loc)
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
            o = self._options(extra, line.loc, {"not-present"}, {"dpl", "ist"})
            dpl = self._int(o.get("dpl", "0"), line.loc)
            ist = self._int(o.get("ist", "0"), line.loc)
            if dpl not in (0, 1, 2, 3) or not 0 <= ist <= 7:
                raise _err("dpl is 0-3 and ist 0-7", line.loc)
            for v in vectors:
                gates[v] = GateDecl(v, parts[2], kind, dpl, ist, "not-present" not in o, line.loc)
        limit = self._int(opts.get("limit", "256"), loc)
        self.idts.append(
            IdtDecl(words[0], limit, tuple(gates[v] for v in sorted(gates)), "per-cpu" in opts, loc)
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
            {"start", "cpl", "idt", "tss", "rsp", "if", "mce"},
        )
        if "start" not in o:
            raise _err("a cpu line needs `start ROUTINE`", loc)
        for flag in ("if", "mce"):
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
            )
        )

    def _reg(self, name: str, loc: Loc) -> str:
        name = _REG_ALIASES.get(name, name)
        if name not in REGISTERS:
            raise _err(f"unknown register %{name}", loc)
        return name

    # -- assembler -----------------------------------------------------------------------
    def _asm_line(self, b: _Builder, s: str, loc: Loc) -> None:
        m = re.match(r"^(\w+|\.\w+):\s*(.*)$", s)
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
        parts = s.split(None, 1)
        mnemonic = parts[0].lower()
        if mnemonic not in _MNEMONICS:
            raise _err(f"unknown instruction {parts[0]!r}", loc)
        if mnemonic == "movsq" and not rep:
            raise _err("only `rep movsq` is supported (it copies %rcx words)", loc)
        if rep:
            s = "rep " + s
        op, count = _MNEMONICS[mnemonic]
        texts = _split_operands(parts[1]) if len(parts) > 1 else []
        if count is not None and len(texts) != count:
            raise _err(f"{mnemonic} takes {count} operand(s), got {len(texts)}", loc)
        args = tuple(self._operand(t, loc, op, b) for t in texts)
        if op in _JUMPS or op == "call":
            if not isinstance(args[0], Name):
                raise _err(f"{mnemonic} needs a label or routine operand", loc)
            b.pending.append((len(b.instrs), args[0].name, loc))
        if op == "mov" and any(isinstance(a, Reg) and a.name == "ss" for a in args[1:]):
            op = "mov_ss"
        if op == "pop" and isinstance(args[0], Reg) and args[0].name == "ss":
            op = "mov_ss"
        if op == "movl":
            # A 32-bit store writes half a word; a 32-bit load into a register zero-extends.
            op = "mov32" if isinstance(args[1], Reg) else "mov"
            args = tuple(
                Mem(a.base, a.disp, 4) if isinstance(a, Mem)
                else Abs(a.expr, 4) if isinstance(a, Abs) else a
                for a in args
            )
        wm = re.fullmatch(r"[a-z]+?(32|16|8)", op)
        if wm and op != "mov32":
            # cmpl/testb/...: the memory operand is that many bytes at its address.
            size = int(wm.group(1)) // 8
            args = tuple(
                Mem(a.base, a.disp, size) if isinstance(a, Mem)
                else Abs(a.expr, size) if isinstance(a, Abs) else a
                for a in args
            )
        self._check_forms(op, args, mnemonic, loc)
        b.instrs.append(Instr(op, args, loc, s, fault))

    def _operand(self, text: str, loc: Loc, op: str, b: _Builder) -> object:
        t = text.strip()
        if t.startswith("$"):
            return Imm(parse_expr(t[1:], loc, self.consts))
        if t.startswith("%"):
            return Reg(self._reg(t[1:], loc))
        m = re.fullmatch(r"(.*)\(%rip\)", t)
        if m:
            return Name("@rip:" + m.group(1).strip())
        m = re.fullmatch(r"(.*)\(%(\w+)\)", t)
        if m:
            disp_text = m.group(1).strip() or "0"
            base = self._reg(m.group(2), loc)
            if base == "ss":
                raise _err(f"unknown operand form {t!r}", loc)
            return Mem(base, self._int(disp_text, loc))
        if re.fullmatch(r"\d+[fb]|" + _IDENT, t):
            return Name(t)
        if op in _MEMORY_OPS:
            # An absolute address (Xen's stubs store to `stack_bottom-8` directly).
            return Abs(parse_expr(t, loc, self.consts))
        raise _err(f"unknown operand form {t!r}", loc)

    def _check_forms(self, op: str, args: tuple[object, ...], mnemonic: str, loc: Loc) -> None:
        def bad() -> InputError:
            return _err(f"unsupported operand form for {mnemonic}: "
                        f"{', '.join(type(a).__name__.lower() for a in args)}", loc)

        if op != "mov_ss" and any(isinstance(a, Reg) and a.name == "ss" for a in args):
            raise bad()  # %ss is only written: `mov %ax, %ss`, `pop %ss`
        if op == "push" and not isinstance(args[0], (Imm, Reg, Mem)):
            raise bad()
        if op == "pop" and not isinstance(args[0], Reg):
            raise bad()
        if op == "mov":
            src, dst = args
            if isinstance(dst, Imm) or isinstance(src, Name) or isinstance(dst, Name):
                raise bad()
            if isinstance(src, Mem) and isinstance(dst, Mem):
                raise bad()
        if op == "lea" and (
            not isinstance(args[1], Reg)
            or not (
                isinstance(args[0], Mem)
                or (isinstance(args[0], Name) and args[0].name.startswith("@rip:"))
            )
        ):
            raise bad()
        if op.rstrip("0123456789") in ("cmp", "test"):
            if not all(isinstance(a, (Imm, Reg, Mem, Abs)) for a in args):
                raise bad()
            if not isinstance(args[1], (Reg, Mem, Abs)):
                raise bad()
        if op == "choose":
            if len(args) < 2:
                raise _err("write `choose DST, SRC1, SRC2, ...`", loc)
            if not isinstance(args[0], (Reg, Mem, Abs)):
                raise bad()
            if not all(isinstance(a, (Imm, Reg, Mem, Abs)) for a in args[1:]):
                raise bad()
        if op.rstrip("0123456789") in ("add", "sub", "and", "or", "xor", "sar", "shr", "shl") and (
            not isinstance(args[1], Reg)
        ):
            raise bad()
        if op.rstrip("0123456789") in ("inc", "dec") and not isinstance(args[0], Reg):
            raise bad()
        if op in ("lidt", "ltr") and not isinstance(args[0], Name):
            raise bad()
        if op == "int" and not isinstance(args[0], Imm):
            raise bad()
        if (
            op == "int" and isinstance(args[0], Imm) and args[0].expr[0] == "const"
            and not 0 <= args[0].expr[1] <= 255
        ):
            raise _err(f"int ${args[0].expr[1]}: the vector is 0-255", loc)

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
    def _finish(self, variant: dict[str, str]) -> Design:
        stack_names = {s.name for s in self.stacks}
        for t in self.tsss:
            keys = ["rsp0"] + [f"ist {n}" for n in range(1, 8)]
            for key, slot in zip(keys, (t.rsp0, *t.ist), strict=True):
                if slot is not None and slot not in stack_names:
                    where = self.slot_locs.get((t.name, key), t.loc)
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
            instrs = self._fall_through(b, instrs)
            for ins in instrs:
                self._check_names(ins, var_names, tables, tss_names, stack_names)
            routines[b.name] = Routine(
                b.name, tuple(instrs), b.loc, b.kind, b.section, b.guest, b.compat
            )
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
            symmetric=self.symmetric,
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
        return Instr(ins.op, args, ins.loc, ins.text, ins.fault)

    def _fall_through(self, b: _Builder, instrs: list[Instr]) -> list[Instr]:
        """Assembler falls through into the routine written next in the same section, as
        the CPU would."""
        if b.kind != "asm" or (instrs and instrs[-1].op in _NO_FALL_THROUGH):
            return instrs
        order = [r for r in self.routines.values() if r.kind == "asm" and r.section == b.section]
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
        args: list[object] = []
        for a in ins.args:
            if isinstance(a, Name) and a.name.startswith("@rip:"):
                t = self._target(a.name[5:], idx, ins.loc, b, global_labels)
                args.append(RipRel((t.routine, t.index)))
            else:
                args.append(a)
        return Instr(ins.op, tuple(args), ins.loc, ins.text, ins.fault)

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
            if a[0][0] != "var":  # type: ignore[index]
                raise _err(f"{op[2:]} needs a variable name first", ins.loc)
            assigned = str(a[0][1])  # type: ignore[index]
            if assigned not in var_names:
                raise _err(f"assignment to an undeclared variable {assigned!r}", ins.loc)
            check.scalar(assigned)
            a = a[1:]
        elif op in ("c.input", "input"):
            source = a[1]
            name = source.name if isinstance(source, Name) else (
                source[1] if isinstance(source, tuple) and source[0] == "var" else None
            )
            if name not in self.inputs:
                raise _err(f"{name!r} is not a declared input (write `input NAME = ...`)", ins.loc)
            if op == "c.input":
                target = a[0]
                if not (
                    isinstance(target, tuple) and target[0] == "var" and target[1] in var_names
                ):
                    raise _err("input() needs a declared variable first", ins.loc)
                check.scalar(str(target[1]))
            a = ()
        elif op in ("c.set_gate", "c.set_gate_ist"):
            check.named(a[0], "an idt", tables)  # type: ignore[arg-type]
            a = a[1:]
        elif op in ("c.set_ist", "c.set_rsp0"):
            check.named(a[0], "a tss", tss_names)  # type: ignore[arg-type]
            check.named(a[-1], "a stack", stack_names, "none" if op == "c.set_ist" else "")  # type: ignore[arg-type]
            a = a[1:-1]
        elif op == "c.lidt":
            check.named(a[0], "an idt", tables, "empty")  # type: ignore[arg-type]
            a = ()
        elif op == "c.copy_idt":
            check.named(a[0], "an idt", tables)  # type: ignore[arg-type]
            check.named(a[1], "an idt", tables)  # type: ignore[arg-type]
            a = ()
        elif op == "c.ltr":
            check.named(a[0], "a tss", tss_names)  # type: ignore[arg-type]
            a = ()
        elif op == "c.send_nmi" and a[0][0] == "var" and a[0][1] in DESTINATIONS:  # type: ignore[index]
            a = ()
        for arg in a:
            if isinstance(arg, (Imm, Abs)):
                check.value(arg.expr)
            elif isinstance(arg, tuple) and arg and isinstance(arg[0], str):
                check.value(arg)

    def _check_static(self, e: Expr, loc: Loc, stack_names: set[str]) -> None:
        """An initial value (`var`, `percpu`, a `cpu` line's rsp and registers): numbers,
        `cpu`, `ncpus`, `top(STACK)` and arithmetic."""
        kind = e[0]
        if kind in ("binop", "unop"):
            for part in e[2:]:
                self._check_static(part, loc, stack_names)
        elif kind == "top":
            if e[1].split("[")[0] not in stack_names:
                raise _err(f"top() names a missing stack {e[1]!r}", loc)
        elif kind not in ("const", "cpu", "ncpus"):
            what = f"{e[1]!r}" if kind == "var" else "this"
            raise _err(f"an initial value must be a constant expression; {what} is not", loc)


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
        kind = e[0]
        if kind == "var":
            if e[1] not in self.vars:
                raise self._undefined(e[1])
            self.scalar(e[1])
        elif kind == "index":
            if e[1] not in self.vars:
                raise self._undefined(e[1])
            if e[1] not in self.arrays | self.percpu:
                raise self.fail(f"{e[1]!r} is not an array or a per-CPU variable")
            self.value(e[2])
        elif kind == "top":
            name, _, index = e[1].partition("[")
            if name not in self.stacks:
                raise self.fail(f"top() names a missing stack {name!r}")
            if index and name not in self.per_cpu_objects:
                raise self.fail(f"stack {name!r} is not per-cpu: write top({name})")
        elif kind in ("binop", "unop"):
            for part in e[2:]:
                self.value(part)
        elif kind == "call":
            if e[1] == "per_cpu" and e[2][0][1] not in self.percpu:
                raise self.fail(f"per_cpu() needs a percpu variable, not {e[2][0][1]!r}")
            for part in e[2][1:] if e[1] == "per_cpu" else e[2]:
                self.value(part)

    def named(self, e: Expr, what: str, names: set[str], special: str = "") -> None:
        """A table, TSS or stack operand: `NAME` (this CPU's) or `NAME[i]` (CPU i's)."""
        if special and e == ("var", special):
            return
        if e[0] not in ("var", "index") or e[1] not in names:
            alternative = f" or {special}" if special else ""
            shown = e[1] if e[0] in ("var", "index") else "this"
            raise self.fail(f"{self.ins.op[2:]} needs {what}{alternative} here, "
                            f"and {shown!r} is not one")
        if e[0] == "index":
            if e[1] not in self.per_cpu_objects:
                raise self.fail(f"{e[1]!r} is not per-cpu: write {e[1]} without an index")
            self.value(e[2])


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

    def _emit(self, op: str, args: tuple[object, ...], loc: Loc, text: str) -> None:
        self.b.instrs.append(Instr(op, args, loc, text))

    def _place(self, label: str) -> None:
        self.b.labels[label] = len(self.b.instrs)

    def _jump(self, op: str, args: tuple[object, ...], label: str, loc: Loc, text: str) -> None:
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
                    self.b.instrs[before] = Instr(ins.op, ins.args, ins.loc, ins.text, fault)
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
                "c.assign", (m.group(1), ("binop", op, ("var", m.group(1)), ("const", 1))), loc, s
            )
            return False
        m = re.fullmatch(r"(\w+)\s*(?:\[(.+)\])?\s*(\+|-|\||&|\^)?=\s*(.+)", s)
        if m and not m.group(4).startswith("="):
            name, index, op, value = m.group(1), m.group(2), m.group(3), self._cond(m.group(4), loc)
            target: Expr = (
                ("var", name) if index is None else ("index", name, self._cond(index, loc))
            )
            if op:
                value = ("binop", op, target, value)
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
                    "c.assign", (var, ("binop", delta, ("var", var), ("const", 1))), loc, text
                )
                return
            if name == "atomic_set":
                self._emit("c.assign", (args[0].lstrip("&"), self._cond(args[1], loc)), loc, text)
                return
            if name in ("set_gate", "set_gate_ist") and args[1] in _VECTOR_BY_NAME:
                args[1] = str(_VECTOR_BY_NAME[args[1]])  # `#PF`, `NMI`, ... as in an idt block
            if name == "set_gate":
                parsed: list[object] = [
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
