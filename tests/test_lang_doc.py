"""docs/design-language.md against the implementation: every instruction, built-in,
declaration, vector name and vocabulary name the reference lists exists, and the
implementation has nothing the reference leaves out."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

from model.lang import parser
from model.lang.expr import FUNCTIONS
from model.lang.parser import BUILTINS, parse_design
from model.system.transition import DesignSystem, Environment
from model.x86.arch import VECTOR_NAMES

ROOT = Path(__file__).resolve().parent.parent
DOC = (ROOT / "docs" / "design-language.md").read_text()

# Being added to the language by their authors; the reference catches up with them.
NOT_YET_DOCUMENTED: set[str] = set()


def table(header: str) -> list[str]:
    """The first cells of the markdown table whose header row starts with `header`."""
    start = DOC.index(f"| {header} |")
    rows = []
    for line in DOC[start:].splitlines()[2:]:
        if not line.startswith("|"):
            break
        rows.append(re.split(r"(?<!\\)\|", line)[1])
    return rows


def documented_mnemonics() -> set[str]:
    out: set[str] = set()
    for cell in table("instructions"):
        for chunk, suffixes in re.findall(r"`([^`]+)`(?:\s*\(((?:`\w`/?)+)\))?", cell):
            words = [w for part in chunk.split() for w in part.split("/")]
            words = [w for w in words if re.fullmatch(r"[a-z][a-z0-9]*", w)]
            words = [w for w in words if w not in ("rep", "empty")]
            out.update(words)
            for suffix in re.findall(r"`(\w)`", suffixes or ""):
                out.update(w + suffix for w in words)
    return out


def test_every_documented_instruction_exists() -> None:
    documented = documented_mnemonics()
    assert {"pushq", "cmpw", "testw", "incl", "sarq", "icebp", "movabsq", "choose"} <= documented
    missing = {m for m in documented if m not in parser._MNEMONICS}
    assert missing == set()


def test_every_instruction_is_documented() -> None:
    documented = documented_mnemonics()
    undocumented = set(parser._MNEMONICS) - documented - NOT_YET_DOCUMENTED
    # short forms of documented instructions, and `movsq` (documented as `rep movsq`)
    assert undocumented <= {"pushf", "popf", "iret", "sysret", "movabs", "movsq"}, undocumented


def test_builtins_match_the_reference() -> None:
    documented = set()
    for cell in table("built-in"):
        documented.update(re.findall(r"`(\w+)\(", cell))
    assert documented - set(BUILTINS) == set()
    assert set(BUILTINS) - documented - NOT_YET_DOCUMENTED == set()


def test_expression_functions_match_the_reference() -> None:
    section = DOC[DOC.index("Expressions read variables") :].split("\n\n")[0]
    documented = set(re.findall(r"`(\w+)\(", section))
    assert documented == set(FUNCTIONS) | {"top"}


def test_vector_names_match_the_reference() -> None:
    section = DOC[DOC.index("Vectors may be written") :].split(".")[0]
    assert set(re.findall(r"(#[A-Z]{2}|NMI)", section)) == set(VECTOR_NAMES.values())


def test_declarations_in_the_table_parse(tmp_path: Path) -> None:
    words = {re.match(r"`(\w+)", cell.strip()).group(1) for cell in table("form")}  # type: ignore[union-attr]
    # the design below writes each of these
    assert words >= {"design", "knob", "const", "cpus", "symmetric", "vendor", "df_rule",
                     "lstar", "fmask", "selector", "section", "stack", "tss", "idt", "var",
                     "percpu", "cpu"}
    path = tmp_path / "all.design"
    path.write_text(textwrap.dedent("""\
        design all "every declaration"
        knob k = a | b
        const C = 2
        cpus 2
        symmetric
        vendor amd
        df_rule strict
        lstar entry
        fmask 0x200 | 0x100
        selector hypervisor_cs = 0xe008
        selector guest_ss = C + 0xe029
        stack primary size 0x1000 per-cpu
        stack fixed size 0x100 base 0x10000 owner guest
        tss t per-cpu
            rsp0 primary
            ist 1 primary
        end
        idt i per-cpu limit 256
            gate NMI entry interrupt dpl 0 ist 1
            gates 32-47 entry trap not-present
        end
        var v = C
        var a[C] = 0
        breakpoint rw v len 8
        breakpoint exec entry
        smap
        percpu p = cpu
        cpu 0 start entry cpl 0 idt i tss t rsp top(primary) if 0 mce 1 nmi-blocked %rax=1
        cpu * start entry halted
        section .init.text
        ENTRY(entry)
                ret
        """))
    d = parse_design(path)
    assert d.name == "all" and d.lstar == "entry" and len(d.cpu_decls) == 2
    assert d.fmask == 0x300 and d.selectors == (("hypervisor_cs", 0xE008), ("guest_ss", 0xE02B))
    assert d.smap and [b.kind for b in d.breakpoints] == ["rw", "exec"]


def test_the_vocabulary_matches_the_reference(tmp_path: Path) -> None:
    path = tmp_path / "v.design"
    path.write_text(
        "stack s size 0x100\nvar x = 0\ncpu 0 start r rsp top(s)\nENTRY(r)\n        hlt\n"
    )
    system = DesignSystem(parse_design(path), Environment())
    section = DOC[DOC.index("## Vocabulary for properties") :].split("\n## ")[0]
    tables = section.split("\n\n")

    def first_cells(header: str) -> set[str]:
        rows = next(x for x in tables if x.startswith(f"| {header} |")).splitlines()[2:]
        # every name in the first cell: the vector constants share one row
        return {name for r in rows for name in re.findall(r"`(\w+)`", r.split("|")[1])}

    top_level = first_cells("name")
    [s] = system.init_states()
    vocabulary = system.vocabulary(s)
    assert top_level == set(system.vocabulary_names()) - {"x"}
    computed = {name: vocabulary[name] for name in top_level}  # each computes
    assert computed["ncpus"] == 1 and computed["any_shutdown"] is False
    assert set(vocabulary["cpus"][0]) == first_cells("CPU record field")
    assert vocabulary["x"] == 0
