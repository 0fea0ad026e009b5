"""The property vocabulary is one table (model/system/vocabulary.py): every name says what
it reads, and the evaluator, the load-time names, POR's visibility, the symmetry of the
vocabulary and the reference in docs/design-language.md all come from it."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from checker.errors import InputError
from model.lang.parser import parse_design
from model.system import por
from model.system.interp import SysState
from model.system.provider import DesignProvider
from model.system.transition import DesignSystem, Environment
from model.system.vocabulary import (
    BUILTIN,
    Name,
    Part,
    Read,
    Variable,
    VocabularyError,
    VocabularyTable,
    check_entries,
    markdown,
)

ROOT = Path(__file__).resolve().parent.parent
PROVIDER = DesignProvider()


def test_every_name_says_what_it_reads() -> None:
    for e in BUILTIN:
        assert e.reads, e.name
    system = PROVIDER.load("xen_kexec", {}, {"cpus": 3})
    table = system.vocabulary_table
    assert set(table.reads()) == set(system.vocabulary_names())
    assert all(table.reads().values())
    for v in system.design.variables:
        assert table.reads()[v.name] == (Variable(v.name),)


def test_a_name_added_without_a_read_set_is_refused() -> None:
    careless = Name("new_name", "bool", "a name someone forgot to describe", (), lambda v: True)
    with pytest.raises(VocabularyError, match=r"new_name.*does not say what it reads"):
        check_entries([*BUILTIN, careless])
    with pytest.raises(VocabularyError, match="listed twice"):
        check_entries([*BUILTIN, BUILTIN[0]])
    # and the table a design system builds runs the same check
    system = PROVIDER.load("x86_conformance", {}, {})
    with pytest.raises(VocabularyError):
        VocabularyTable(system.design, system.layout, system.platform, [*BUILTIN, careless])


def test_a_design_variable_may_not_shadow_a_vocabulary_name(tmp_path: Path) -> None:
    path = tmp_path / "v.design"
    path.write_text("stack s size 0x100\nvar frames = 0\ncpu 0 start r rsp top(s)\n"
                    "ENTRY(r)\n        hlt\n")
    with pytest.raises(InputError, match="frames"):
        DesignSystem(parse_design(path), Environment())


def test_por_keeps_no_list_of_its_own() -> None:
    """POR's visibility is the table's read sets, not categories kept by hand."""
    source = inspect.getsource(por)
    for stale in ("_CPU_NAMES", "_FRAME_NAMES", "_GLOBAL_NAMES"):
        assert stale not in source
    system = PROVIDER.load("xen_kexec", {}, {"cpus": 3})
    assert system.reductions.persistence.reads == system.vocabulary_table.reads()


def test_the_reference_is_generated_from_the_table() -> None:
    doc = (ROOT / "docs" / "design-language.md").read_text()
    section = doc[doc.index("## Vocabulary for properties") :].split("\n## ")[0]
    assert markdown() in section


# -- the read sets are true -------------------------------------------------------------------


def _changed(part: Read, system: DesignSystem, s: SysState, t: SysState) -> bool:
    a, b = s.machine, t.machine
    if isinstance(part, Variable):
        layout = system.layout
        lo = layout.var_index[part.name]
        n = layout.ncpus if part.name in layout.percpu_vars else layout.lengths[part.name]
        return s.vars[lo : lo + n] != t.vars[lo : lo + n]
    return {
        Part.CPU: a.cpus != b.cpus,
        Part.FRAMES: a.frames != b.frames,
        Part.FRAME_MEMORY: a.memory != b.memory,
        Part.INCIDENTS: a.incidents != b.incidents,
        Part.TABLES: a.idts != b.idts or a.tsss != b.tsss,
        Part.CONSTANT: False,
    }[part]


def _value(system: DesignSystem, s: SysState, name: str) -> Any:
    """A name's value, with functions tabulated over every argument they can take."""
    value = system.vocabulary(s)[name]
    if name == "running":
        return [value(c, r) for c in range(system.ncpus) for r in sorted(system.design.routines)]
    if name == "frames_on":
        return [value(r.name) for r in system.platform.regions]
    if name in ("idt_of", "tss_of"):
        return [repr(value(c)) for c in range(system.ncpus)]
    assert not callable(value), f"tabulate the arguments of {name}() here"
    return repr(value)


def _transitions(system: DesignSystem, limit: int) -> Iterator[tuple[SysState, SysState]]:
    seen: set[SysState] = set()
    todo = list(system.init_states())
    while todo and len(seen) < limit:
        s = todo.pop()
        if s in seen:
            continue
        seen.add(s)
        for a in system.actions(s):
            t = system.next_state(s, a)
            yield s, t
            todo.append(t)


def liars(system: DesignSystem, reads: Callable[[str], tuple[Read, ...]],
          limit: int = 400) -> set[str]:
    """The names whose value changed along a step that changed nothing they claim to read."""
    out: set[str] = set()
    names = list(system.vocabulary_names())
    for s, t in _transitions(system, limit):
        for name in names:
            if name in out or any(_changed(p, system, s, t) for p in reads(name)):
                continue
            if _value(system, s, name) != _value(system, t, name):
                out.add(name)
    return out


CASES = [
    ("xen_kexec", {}, {"cpus": 2}),
    ("xen_ist", {}, {"nmi": 1, "mce": 1}),
    ("xen_boot", {}, {"nmi": 1}),
    ("x86_conformance", {"guest": "int3"}, {"nmi": 2}),
]


@pytest.mark.parametrize(("design", "variant", "env"), CASES, ids=[c[0] for c in CASES])
def test_each_name_reads_only_what_it_says(design: str, variant: dict[str, str],
                                           env: dict[str, Any]) -> None:
    system = PROVIDER.load(design, variant, env)
    table = system.vocabulary_table.reads()
    assert liars(system, lambda n: table[n]) == set()


def test_a_wrong_read_set_is_caught() -> None:
    """The check above can fail: claim that `nmi_frames` reads the incidents, `cpus` the
    frames and `waiting_for_crash_ipi` nothing that changes: steps that change them are
    found."""
    system = PROVIDER.load("xen_kexec", {}, {"cpus": 2})
    table = system.vocabulary_table.reads()
    wrong = {
        "nmi_frames": (Part.INCIDENTS,),
        "cpus": (Part.FRAMES,),
        "waiting_for_crash_ipi": (Part.CONSTANT,),
    }
    assert liars(system, lambda n: wrong.get(n, table[n])) == set(wrong)
