"""The compiled steps (model/system/compiled.py) give what the general handlers give.

For each benchmark workload, the first few thousand states are explored; every
transition is computed by a system whose sites are compiled and by one whose are not, and
the two successors must be equal with identical types all the way down (a bool is not an
int, an enum member not its value). Each compiled step is also run on its own against its
site's general handler: the same successor, or the same fault (vector, error code, saved
RIP, address, machine to deliver from). A deliberately wrong compiled step is caught.
"""

from __future__ import annotations

import sys
from collections import deque
from pathlib import Path
from typing import Any

import pytest

from model import provider
from model.system import compiled
from model.system.compiled import Unusual
from model.system.interp import Blocked
from model.system.relation import ActionKind
from model.system.transition import DesignSystem
from model.x86 import alu
from model.x86.memory import ArchFault

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import workloads

WORKLOADS = ["kexec-2", "kexec-3", "ist-1", "syscall-concrete", "syscall-symbolic"]
LIMIT = 3000


def _load(name: str, compile_sites: bool) -> DesignSystem:
    w = workloads.WORKLOADS[name]
    return _system(w.design, w.variant, w.environment, compile_sites)


def _system(
    design: str, variant: dict[str, Any], environment: dict[str, Any], compile_sites: bool
) -> DesignSystem:
    system = provider().load(design, dict(variant), dict(environment))
    assert isinstance(system, DesignSystem)
    system.interp.compile_sites = compile_sites
    system.interp._sites.clear()
    return system


def same(a: Any, b: Any) -> bool:
    """Equal, with the same type at every level."""
    if type(a) is not type(b):
        return False
    if isinstance(a, tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _outcome(f: Any, *args: Any) -> tuple[str, Any]:
    try:
        return "state", f(*args)
    except Unusual:
        return "unusual", None
    except ArchFault as fault:
        return "fault", (fault.vector, fault.error_code, fault.rip, fault.address,
                         fault.machine)
    except Blocked:
        return "blocked", None
    except Exception as exc:  # an InputError: the same message either way
        return type(exc).__name__, str(exc)


def compare(name: str, limit: int = LIMIT) -> dict[str, int]:
    """Explore `limit` states of workload `name`; assert the two systems agree. Returns
    how many transitions and compiled steps were compared."""
    return compare_systems(name, _load(name, True), _load(name, False), limit)


def compare_systems(
    name: str, fast: DesignSystem, plain: DesignSystem, limit: int
) -> dict[str, int]:
    interp = fast.interp
    seen: dict[Any, None] = {}
    queue: deque[Any] = deque()
    for s in fast.init_states():
        if s not in seen:
            seen[s] = None
            queue.append(s)
    counts = {"states": 0, "transitions": 0, "compiled": 0, "taken": 0}
    while queue and counts["states"] < limit:
        s = queue.popleft()
        counts["states"] += 1
        kind, actions = _outcome(fast.actions, s)
        assert (kind, actions) == _outcome(plain.actions, s)
        if kind != "state":
            continue  # an error of the design's (a property expecting `error`)
        for a in actions:
            kind, succ = _outcome(fast.next_state, s, a)
            other = _outcome(plain.next_state, s, a)
            assert kind == other[0] and same(succ, other[1]), (name, a, s, succ, other)
            counts["transitions"] += 1
            if kind != "state":
                continue  # an error of the design's (a property expecting `error`)
            if succ not in seen:
                seen[succ] = None
                queue.append(succ)
            if a.kind != ActionKind.STEP or s.symbolic:
                continue
            site = interp._site(s.machine.cpus[a.cpu].pc)
            if site.fast is site.handler or site.fast is None or site.handler is None:
                continue
            counts["compiled"] += 1
            got = _outcome(site.fast, s, a.cpu, site, a.arg)
            if got[0] == "unusual":
                continue
            counts["taken"] += 1
            want = _outcome(site.handler, s, a.cpu, site, a.arg)
            assert got[0] == want[0] and same(got[1], want[1]), (name, site.ins, s, got, want)
    return counts


@pytest.mark.parametrize("name", WORKLOADS)
def test_compiled_steps_are_the_general_ones(name: str) -> None:
    counts = compare(name)
    assert counts["transitions"] > counts["states"] // 2
    if name != "syscall-symbolic":  # (its early states are symbolic: the general path)
        assert counts["taken"] > counts["states"] // 4, counts


def _property_groups() -> list[Any]:
    from checker.spec import group_properties, read_property_file

    root = Path(__file__).resolve().parent.parent / "properties"
    groups = []
    for path in sorted(root.glob("*.toml")):
        groups.extend(group_properties(read_property_file(path).properties))
    return groups


@pytest.mark.slow
def test_compiled_steps_in_every_property_group() -> None:
    # Every shipped design in every configuration the property files check (SMAP,
    # breakpoints, FRED, guest code at CPL 3, %gs: operands...): the first states agree.
    taken = 0
    for group in _property_groups():
        fast = _system(group.design, group.variant, group.environment, True)
        plain = _system(group.design, group.variant, group.environment, False)
        taken += compare_systems(group.design, fast, plain, 400)["taken"]
    assert taken > 0


def test_a_wrong_compiled_step_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    # A Jcc whose `e` condition is inverted: the comparison must notice.
    wrong = dict(compiled._CONDITIONS)
    wrong["e"] = lambda f: not f & alu.ZF
    wrong["ne"] = lambda f: bool(f & alu.ZF)
    monkeypatch.setattr(compiled, "_CONDITIONS", wrong)
    with pytest.raises(AssertionError):
        compare("kexec-2", 3000)


def test_same_sees_types() -> None:
    assert same((1, (True,)), (1, (True,)))
    assert not same((1, (True,)), (1, (1,)))
    assert not same((0,), (False,))


@pytest.mark.slow
@pytest.mark.parametrize("start", [0, 20])
def test_compiled_steps_on_random_designs(tmp_path: Path, start: int) -> None:
    # Designs nobody wrote for this (tests/random_designs.py: stack arithmetic, FRED,
    # breakpoints, MOV SS, SMAP, wild IRETs, NMI IPIs, ...): the first states agree.
    from checker.spec import group_properties, read_property_file
    from tests.random_designs import generate

    taken = 0
    for seed in range(start, start + 20):
        case = generate(seed, fred=None, stack_arith=None)
        if case.symmetry == "wrong":
            continue  # (refused when loaded: a declaration the code does not honour)
        toml = case.write(tmp_path / str(seed))
        for group in group_properties(read_property_file(toml).properties):
            design = str(toml.parent / f"{group.design}.design")
            fast = _system(design, group.variant, group.environment, True)
            plain = _system(design, group.variant, group.environment, False)
            taken += compare_systems(case.name, fast, plain, 300)["taken"]
    assert taken > 0
