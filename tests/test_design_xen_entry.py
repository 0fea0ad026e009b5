"""model/designs/xen_entry.design (Xen's current entry.S, issue 12 item 6) and
properties/xen_entry.toml.

- The design parses in every variant, keeps entry.S's labels, and its IDT sends NMI, #MC,
  #DB and #DF to Xen's IST slots.
- Every property gets its expected verdict from the checker, and every `holds` of a
  `never` property is backed by a reachable witness in the same variant (the file's own
  `reachable` guards and the ones below).
- A violated property's counterexample replays (`python -m checker replay`) and ends on
  the damage it claims: a frame written into guest memory, the guest kernel reading its
  user's per-CPU block.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from checker import cli
from checker.explore import Check, explore
from checker.spec import read_property_file
from checker.verdict import Kind, Verdict
from model.lang.parser import design_knobs, parse_design
from model.system.provider import DesignProvider

ROOT = Path(__file__).resolve().parent.parent
DESIGN = ROOT / "model" / "designs" / "xen_entry.design"
PROPERTY_FILE = ROOT / "properties" / "xen_entry.toml"
PROPERTIES = read_property_file(PROPERTY_FILE).properties

EXPECTED = {
    "ist-keeps-ring0-frames-off-guest-memory": "holds",
    "mce-keeps-ring0-frames-off-guest-memory": "holds",
    "mce-in-sysret-window-reachable": "holds",
    "nmi-in-syscall-window-reachable": "holds",
    "nmi-without-ist-writes-guest-stack": "violated",
    "sysenter-exit-still-needs-nmi-ist": "violated",
    "nmi-mce-frames-never-clobbered": "holds",
    "nmi-and-mce-nest-reachable": "holds",
    "shared-nmi-mce-stack-clobbers": "violated",
    "sysret-never-faults-in-ring0": "holds",
    "sysret-check-dropped-faults-on-guest-stack": "violated",
    "sysret-check-dropped-amd-safe": "holds",
    "noncanonical-return-faults-on-iret-to-guest": "holds",
    "ist-copy-leaves-no-guest-frame-on-ist": "holds",
    "ist-copy-dropped-handler-on-ist": "violated",
    "guest-kernel-reads-own-percpu": "holds",
    "guest-kernel-sees-user-registers": "holds",
    "guest-kernel-entry-reachable": "holds",
    "dropped-swapgs-reads-user-percpu": "violated",
    "int1-db-copied-off-ist": "holds",
    "int1-db-handler-reachable": "holds",
    # vacuity companions and the invariants mutation testing asked for (issue 13 item 6)
    "amd-dropped-check-gp-from-ring3": "holds",
    "syscall-nmi-raises-no-exception": "holds",
    "syscall-mce-raises-no-exception": "holds",
    "nmi-mce-nesting-raises-no-exception": "holds",
    "double-fault-on-its-ist-stack": "holds",
    "double-fault-taken-on-df-ist": "holds",
    "guest-user-resumes-with-user-gs-and-stack": "holds",
    "guest-user-resumes-after-hypercall": "holds",
    "no-cr3-switch-without-xpti": "holds",
}


def test_the_file_ships_its_properties_and_verdicts() -> None:
    assert {p.name: p.expect.value for p in PROPERTIES} == EXPECTED
    assert all(p.description for p in PROPERTIES)
    kinds = {p.kind for p in PROPERTIES}
    assert {Kind.NEVER, Kind.REACHABLE} <= kinds


def test_parses_in_every_variant_with_entry_s_labels() -> None:
    _, knobs = design_knobs(DESIGN)
    for knob, values in knobs.items():
        for value in values:
            design = parse_design(DESIGN, {knob: value})
            for routine in (
                "lstar_enter", "cstar_enter", "sysenter_entry", "restore_all_guest",
                "handle_exception", "handle_ist_exception", "restore_all_xen",
                "entry_NMI", "entry_MC", "entry_DB", "entry_DF", "create_bounce_frame",
                "switch_to_kernel", "nmi_exit_to_guest", "lstar_stub",
            ):
                assert routine in design.routines, (knob, value, routine)
    design = parse_design(DESIGN, {})
    [idt] = design.idts
    gates = {g.vector: g for g in idt.gates}
    assert (gates[18].ist, gates[2].ist, gates[1].ist, gates[8].ist) == (1, 2, 3, 4)


def _run(tmp_path: Path, *args: str) -> dict[str, Any]:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = cli.main([str(PROPERTY_FILE), "--format", "json", "--report-dir",
                         str(tmp_path / "reports"), "--workers", "1", *args])
    data: dict[str, Any] = json.loads(buf.getvalue())
    data["exit_code"] = code
    return data


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _run(tmp_path_factory.mktemp("xen_entry"))


@pytest.mark.slow  # runs the whole of xen_entry.toml (about 17 s), as the gate does
def test_every_verdict_is_the_expected_one(results: Mapping[str, Any]) -> None:
    got = {r["name"]: r["verdict"] for r in results["results"]}
    assert got == EXPECTED
    assert results["exit_code"] == 0


@pytest.mark.slow  # runs the whole of xen_entry.toml (about 17 s), as the gate does
def test_violations_end_on_their_damage(results: Mapping[str, Any]) -> None:
    by_name = {r["name"]: r for r in results["results"]}
    for name in ("nmi-without-ist-writes-guest-stack",
                 "sysret-check-dropped-faults-on-guest-stack"):
        graph = json.loads(Path(by_name[name]["traces"]["json"]).read_text())
        last = graph["edges"][-1]
        assert "guest" in str(last.get("damage", "")) or "guest" in str(last.get("label", "")), last
    graph = json.loads(
        Path(by_name["dropped-swapgs-reads-user-percpu"]["traces"]["json"]).read_text()
    )
    labels = [str(e.get("label", "")) for e in graph["edges"]]
    assert any("%gs:" in label for label in labels), labels


@pytest.mark.slow  # runs the whole of xen_entry.toml (about 17 s), as the gate does
def test_a_violation_replays(results: Mapping[str, Any]) -> None:
    by_name = {r["name"]: r for r in results["results"]}
    trace = by_name["sysret-check-dropped-faults-on-guest-stack"]["traces"]["json"]
    assert cli.main(["replay", trace]) == 0


def test_copy_off_the_ist_is_not_vacuous() -> None:
    """In the exploration that decides ist-copy-leaves-no-guest-frame-on-ist, a guest
    NMI and a guest #MC do reach their C handlers with their frames on the primary stack."""
    [p] = [p for p in PROPERTIES if p.name == "ist-copy-leaves-no-guest-frame-on-ist"]
    system = DesignProvider().load("xen_entry", p.variant, p.environment)

    def copied(handler: str, stack: str) -> Check:
        def pred(v: Mapping[str, Any]) -> bool:
            return bool(v["running"](0, handler)) and any(
                f["from_cpl"] == 3 and f["stack"] == stack for f in v["frames"]
            )
        return Check(Kind.REACHABLE, pred, handler)

    assert p.expr is not None
    done = explore(system, [
        Check(Kind.NEVER, p.expr.evaluate, p.name),
        copied("do_nmi", "primary[0]"),
        copied("do_machine_check", "primary[0]"),
    ])
    assert [o.verdict for o in done.outcomes] == [Verdict.HOLDS, Verdict.HOLDS, Verdict.HOLDS]
