"""Observable state (issue 14, must-have 5): what the vocabulary's records say about the
machine, and the load-time check of their field names (checker/fields.py).

Each CPU record field, gate field and TSS slot reads one architectural fact: RFLAGS bits
(SDM Vol. 1 §3.4.3: IF bit 9, DF bit 10, TF bit 8, NT bit 14, AC bit 18, IOPL bits
13:12), CS/SS with the RPL that is the CPL (SDM Vol. 3A §5.5), the IDT gate fields
(§6.14.1, Figure 6-8: offset, type, DPL, IST, P) and the 64-bit TSS slots (§8.7, Figure
8-11: RSP0, IST1-IST7).
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from checker.errors import InputError
from checker.expr import compile_expr
from checker.fields import FunctionShape, ListShape, MapShape, RecordShape, check_fields
from checker.interface import capabilities
from checker.spec import group_properties, load_group, read_property_file
from model.system.provider import DesignProvider
from model.system.vocabulary import BUILTIN, CPU_FIELDS
from model.x86.arch import AC_FLAG, DF_FLAG, IF, NT, TF
from model.x86.state import Shadow

PROVIDER = DesignProvider()


def _value(system: Any, state: Any, expr: str) -> Any:
    return compile_expr(expr).evaluate(system.vocabulary(state))


def test_rflags_bits_and_iopl_read_the_register() -> None:
    """SDM Vol. 1 §3.4.3: the bits' positions; IOPL is bits 13:12."""
    system = PROVIDER.load("x86_conformance", {"guest": "int3"}, {})
    s = system.init_states()[0]
    flags = IF | DF_FLAG | TF | NT | AC_FLAG | (2 << 12) | 2
    s = s.with_machine(s.machine.with_cpu(0, s.machine.cpus[0]._replace(rflags=flags)))
    r = _value(system, s, "cpu[0].rflags")
    assert (r["IF"], r["DF"], r["TF"], r["NT"], r["AC"], r["RF"], r["IOPL"]) == (
        True, True, True, True, True, False, 2)
    assert r["value"] == flags
    assert _value(system, s, "cpu[0].interrupts_enabled") is True


def test_selectors_cpl_rsp_gs_shadow_and_held_db() -> None:
    """SDM Vol. 3A §5.5: CPL is the RPL of CS (and of SS); the x86_conformance machine's
    guest starts at CPL 3 on its own stack with the user GS base."""
    system = PROVIDER.load("x86_conformance", {"guest": "int3"}, {})
    s = system.init_states()[0]
    c = _value(system, s, "cpu[0]")
    assert (c["cpl"], c["cs"] & 3, c["ss"] & 3) == (3, 3, 3)
    assert (c["rsp_stack"], c["gs"], c["shadow"], c["held_db"]) == (
        "guest_stack[0]", "user", "none", False)
    assert c["running_guest"] and c["cr4"]["MCE"]
    cpu = s.machine.cpus[0]._replace(shadow=Shadow.MOV_SS, held_db=True, gs_base=None, cpl=0,
                                     cs=0x08, ss=0)
    s = s.with_machine(s.machine.with_cpu(0, cpu))
    c = _value(system, s, "cpu[0]")
    assert (c["shadow"], c["held_db"], c["gs"], c["cs"], c["ss"]) == (
        "mov_ss", True, "kernel", 0x08, 0)  # the selectors the CPU holds, not CPL's defaults


def test_gates_and_tss_slots_per_instance() -> None:
    """SDM §6.14.1 and §8.7: a gate's IST field selects a TSS slot; the design's #DF gate
    uses IST 4, which names df_ist; NMI has no IST and vector 5 has no gate (P=0)."""
    system = PROVIDER.load("x86_conformance", {}, {})
    s = system.init_states()[0]
    df = _value(system, s, "idt_of(0).gate[DF]")
    assert (df["routine"], df["type"], df["dpl"], df["ist"], df["present"]) == (
        "df_handler", "interrupt", 0, 4, True)
    assert _value(system, s, "idt_of(0).gate['NMI'].ist == 0 and idt_of(0).gate[2].present")
    assert not _value(system, s, "idt_of(0).gate[5].present")
    assert _value(system, s, "idt_of(0).gate[BP].dpl") == 3
    assert _value(system, s, "tss_of(0).ist[idt_of(0).gate[DF].ist]") == "df_ist[0]"
    assert _value(system, s, "tss_of(0).rsp0") == "kstack[0]"
    assert _value(system, s, "tsss['tss[0]'].ist[1]") == "none"
    assert _value(system, s, "idts['idt[0]'].limit") == 256
    assert _value(system, s, "count(g.present for g in idt_of(0).gate)") == 8


def test_an_empty_idtr_and_no_tr_read_as_absent() -> None:
    """Before LIDT/LTR nothing is present: every gate reads P=0, the TSS is not loaded."""
    system = PROVIDER.load("x86_conformance", {}, {})
    s = system.init_states()[0]
    cpu = s.machine.cpus[0]._replace(idtr=None, tr=None)
    s = s.with_machine(s.machine.with_cpu(0, cpu))
    assert _value(system, s, "not idt_of(0).gate[NMI].present and idt_of(0).limit == 0")
    assert _value(system, s, "not tss_of(0).loaded and tss_of(0).ist[2] == 'none'")


def test_frame_records_say_who_wrote_them() -> None:
    system = PROVIDER.load("x86_frames", {}, {"faults": 1})
    seen = set()
    todo = list(system.init_states())
    found = False
    while todo and not found:
        s = todo.pop()
        if s in seen:
            continue
        seen.add(s)
        found = _value(system, s, "any(f.modified_by_handler for f in frames)")
        todo.extend(system.next_state(s, a) for a in system.actions(s))
    assert found
    assert _value(system, s, "frame_modified_by_handler and not frame_clobbered")


def test_every_record_field_has_a_shape_entry() -> None:
    """The shapes the checker checks against come from the same table as the values."""
    system = PROVIDER.load("x86_conformance", {}, {})
    typed = capabilities(system).typed
    assert typed is not None
    shapes = typed.vocabulary_shapes()
    cpu = shapes["cpus"]
    assert isinstance(cpu, ListShape) and isinstance(cpu.item, RecordShape)
    assert [n for n, _ in cpu.item.fields] == [f.name for f in CPU_FIELDS]
    assert isinstance(shapes["idt_of"], FunctionShape) and isinstance(shapes["idts"], MapShape)
    value = system.vocabulary(system.init_states()[0])["cpus"][0]
    assert list(value) == [f.name for f in CPU_FIELDS]
    assert {e.name for e in BUILTIN if e.shape is not None} == set(shapes)


@pytest.mark.parametrize(
    ("expr", "col", "fragment"),
    [
        ("cpu[0].rps == 0", 8, "a CPU record has no field 'rps' (did you mean 'rsp'"),
        ("any(c.rflags.iff for c in cpus)", 14, "a rflags record has no field 'iff'"),
        ("all(f.clobered for f in frames)", 7, "a frame record has no field 'clobered'"),
        ("idt_of(0).gate[NMI].ists == 0", 21, "a gate record has no field 'ists'"),
        ("tss_of(0).rsp1 == 'x'", 11, "a TSS record has no field 'rsp1'"),
        ("idts['idt[0]'].gates", 16, "an IDT record has no field 'gates'"),
        ("cpu[0]['halt']", 8, "a CPU record has no field 'halt'"),
        ("min(cpus).cpll", 11, "a CPU record has no field 'cpll'"),
    ],
)
def test_a_misspelled_field_is_a_load_error(expr: str, col: int, fragment: str,
                                            tmp_path: Path) -> None:
    """Issue 14: a misspelled field is a `path:line` error when the file is loaded, not an
    `error` verdict found in the first state that reads it."""
    path = tmp_path / "p.toml"
    path.write_text(textwrap.dedent(f'''\
        design = "x86_conformance"

        [[property]]
        name = "a"
        kind = "always"
        expr = "{expr}"
        expect = "holds"
    '''))
    spec = read_property_file(path)
    with pytest.raises(InputError) as err:
        for group in group_properties(spec.properties):
            load_group(group, PROVIDER)
    assert (err.value.path, err.value.line) == (str(path), 6)
    assert fragment in err.value.message, err.value.message
    assert f"(column {col})" in err.value.message, err.value.message


@pytest.mark.parametrize("expr", [
    "all(not c.running_guest or idt_of(c.id).gate[NMI].ist != 0 for c in cpus)",
    "cpu[0].rflags.IOPL == 0 and cpu[0]['cr4'].MCE",
    "all(f.modified_by_handler or not f.clobbered for f in frames)",
    "tss_of(0).ist[1] != 'none' or idts['idt[0]'].gate[2].routine == 'x'",
    "any(x.whatever for x in incidents)",
])
def test_correct_fields_and_unshaped_values_pass(expr: str) -> None:
    system = PROVIDER.load("x86_conformance", {}, {})
    check_fields(compile_expr(expr), system.vocabulary_shapes())


TRACE_PROPS = '''\
design = "x86_conformance"

[[property]]
name = "nmi-ist"
variant = { guest = "int3" }
environment = { nmi = 1 }
kind = "reachable"
expr = "any(f.vector == NMI for f in frames)"
expect = "holds"
'''


def test_every_trace_format_carries_the_new_state(tmp_path: Path, capsys: Any) -> None:
    """Text, JSON, GraphML node attributes and the HTML review (inspect_state) show the
    selectors, IOPL, GS, the shadow and held #DB, CR4, and the IDTs and TSSs."""
    import json

    import networkx as nx

    from checker import cli

    props = tmp_path / "p.toml"
    props.write_text(TRACE_PROPS)
    reports = tmp_path / "reports"
    code = cli.main([str(props), "--report-dir", str(reports), "--html", "-v"], PROVIDER)
    out, _ = capsys.readouterr()
    assert code == 0
    keys = ("cpu0.cs", "cpu0.ss", "cpu0.iopl", "cpu0.gs", "cpu0.shadow", "cpu0.held_db",
            "cpu0.cr4", "idt.idt[0]", "tss.tss[0]")
    for key in keys:
        assert f"{key}=" in out, key  # the text trace's initial state
    from checker.reportdir import report_parts

    trace = reports.joinpath(*report_parts(str(props), "nmi-ist"))
    data = json.loads(trace.with_suffix(".json").read_text())
    first = data["nodes"][0]
    assert {k: first[k] for k in ("cpu0.cs", "cpu0.gs", "cpu0.shadow", "cpu0.cr4")} == {
        "cpu0.cs": "0x33", "cpu0.gs": "user", "cpu0.shadow": "none", "cpu0.cr4": "MCE"}
    assert "NMI->nmi_handler interrupt dpl0" in first["idt.idt[0]"]
    assert first["tss.tss[0]"] == "rsp0=kstack[0] ist4=df_ist[0]"
    graph = nx.read_graphml(trace.with_suffix(".graphml"))
    assert all(set(keys) <= set(attrs) for _, attrs in graph.nodes(data=True))
    last = data["nodes"][-1]
    assert "NMI frame (nmi) of cpu0" in last["frames"]
    html = (reports / "index.html").read_text()
    assert '"idts"' in html and '"held_db"' in html and '"modified_by_handler"' in html


def test_symmetry_of_the_new_names() -> None:
    """idt_of(i) holds no CPU number (its gates name shared routines), so a property over
    it can be explored on orbit representatives; tss_of names per-CPU stacks and a CPU's
    rsp_stack is a per-CPU instance name, so they are read as renumbering-dependent."""
    from checker.symmetry import asymmetry

    system = PROVIDER.load("xen_kexec", {}, {"cpus": 3})
    vocab = system.symmetry_vocabulary()
    assert vocab is not None
    assert asymmetry("all(idt_of(c.id).gate[NMI].ist != 0 for c in cpus)", vocab) is None
    assert asymmetry("all(c.rflags.IF or c.cs == 0 for c in cpus)", vocab) is None
    assert asymmetry("all(tss_of(c.id).ist[2] != 'none' for c in cpus)", vocab) is not None
    assert asymmetry("any(c.rsp_stack == 'nmi_stack[1]' for c in cpus)", vocab) is not None


def test_two_idts_compare_by_their_gates() -> None:
    """`idt_of(0).gate == idt_of(1).gate`: the same gate in every vector, whatever the
    instances are called."""
    system = PROVIDER.load("xen_kexec", {}, {"cpus": 2})
    s = system.init_states()[0]
    same = _value(system, s, "idt_of(0).gate == idt_of(1).gate")
    m = s.machine
    assert same == (m.idt(m.cpus[0].idtr) is not None and m.idt(m.cpus[1].idtr) is not None
                    and m.idt(m.cpus[0].idtr).gates == m.idt(m.cpus[1].idtr).gates)
    assert _value(system, s, "idt_of(0).gate == idt_of(0).gate")
