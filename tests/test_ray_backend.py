"""`--backend ray` (checker.distributed): exploring with the visited set sharded over Ray
actors gives the in-process explorer's verdicts, messages, state and transition counts
and traces, on toy models and on the kexec and IST designs.

The tests start a Ray cluster of their own on the loopback address (2 CPUs, no dashboard)
and stop it at the end; they are skipped when Ray is not installed (the [distributed]
extra, which .ci/run installs)."""

from __future__ import annotations

import os
import pickle
import sys
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from toy_models import Counters, Faulty, Graph, Mutex, ToyProvider

from checker import distributed
from checker.cli import main
from checker.distributed import RayBackend, Recipe, Shard, explore_ray
from checker.explore import Bounds, Check, Exploration, Options, explore
from checker.expr import compile_expr
from checker.run import check, plan, read_files
from checker.verdict import Kind

ROOT = Path(__file__).resolve().parent.parent
LIVENESS_NOTE = (" (explored without Ray: liveness needs the whole state graph, recorded in "
                 "one process)")
SHARDS = 2


@pytest.fixture(scope="module")
def backend() -> Iterator[RayBackend]:
    """A local cluster on 127.0.0.1 for this module, and 2 shard actors (reused by every
    test: each exploration starts afresh on them)."""
    ray = pytest.importorskip(
        "ray", reason="Ray is not installed (pip install -e '.[distributed]')"
    )
    path = os.pathsep.join([str(ROOT), str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")])
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"  # nothing leaves this machine
    ray.init(num_cpus=SHARDS, include_dashboard=False, _node_ip_address="127.0.0.1",
             log_to_driver=False, configure_logging=False,
             runtime_env={"env_vars": {"PYTHONPATH": path}})
    try:
        yield RayBackend(ToyProvider(), shards=SHARDS)
    finally:
        ray.shutdown()


def check_of(kind: Kind, expr: str | None = None) -> Check:
    return Check(kind, compile_expr(expr).evaluate if expr is not None else None)


def summary(result: Exploration) -> tuple[Any, ...]:
    return (
        result.stats.states, result.stats.transitions, result.stats.depth, result.complete,
        result.stop_reason,
        [(o.verdict, o.message, o.trace.choices if o.trace else None) for o in result.outcomes],
    )


def same(backend: RayBackend, design: str, environment: dict[str, Any],
         checks: Sequence[Check], bounds: Bounds | None = None) -> Exploration:
    provider = ToyProvider()
    system = provider.load(design, {}, environment)
    one = explore(system, checks, bounds, options=Options(workers=1))
    recipe = Recipe(provider, design, (), tuple(sorted(environment.items())))
    many = explore_ray(backend, recipe, system, checks, bounds, options=Options(compact=True))
    assert summary(many) == summary(one)
    assert many.stats.workers == SHARDS
    return one


COUNTER_CHECKS = [
    check_of(Kind.ALWAYS, "total <= n * len(c)"),
    check_of(Kind.REACHABLE, "c[0] == n and c[2] == 1"),
    check_of(Kind.FINAL, "total == n * len(c)"),
    check_of(Kind.DEADLOCK_FREE),
]


@pytest.mark.slow
def test_every_kind_of_check(backend: RayBackend) -> None:
    result = same(backend, "counters", {"k": 3, "n": 4}, COUNTER_CHECKS)
    assert result.stats.states == 5**3 and result.complete


@pytest.mark.slow
def test_violations_and_their_shortest_traces(backend: RayBackend) -> None:
    same(backend, "mutex", {"rounds": 3}, [check_of(Kind.ALWAYS, "in_critical <= 1")])
    same(backend, "counters", {"k": 3, "n": 4}, [check_of(Kind.NEVER, "c[1] == 3 and c[2] == 2")])
    same(backend, "counters", {"k": 3, "n": 4}, [check_of(Kind.FINAL, "total == 1")])
    same(backend, "counters", {"k": 3, "n": 3}, [check_of(Kind.DEADLOCK_FREE)])


@pytest.mark.slow
def test_bounds_stop_where_one_process_stops(backend: RayBackend) -> None:
    for states in (1, 7, 60, 100):
        same(backend, "counters", {"k": 3, "n": 6}, COUNTER_CHECKS, Bounds(max_states=states))
    same(backend, "counters", {"k": 3, "n": 6}, COUNTER_CHECKS, Bounds(max_depth=4))
    same(backend, "counters", {"k": 3, "n": 6}, [check_of(Kind.ALWAYS, "total < 20")],
         Bounds(max_depth=4))


@pytest.mark.slow
def test_a_model_error_is_the_sequential_error(backend: RayBackend) -> None:
    result = same(backend, "faulty", {"k": 3, "n": 3}, [check_of(Kind.ALWAYS, "total < 100")])
    assert result.outcomes[0].message.startswith("the model raised RuntimeError: model bug")
    # decided in the same level, before the failing state
    same(backend, "faulty", {"k": 3, "n": 3}, [check_of(Kind.REACHABLE, "total == 2")])


def both(backend: RayBackend, files: Sequence[str], names: Sequence[str]) -> None:
    """The same results from a run in this process and one on Ray (symmetry on, as the
    command line's default)."""
    from model import provider as model_provider

    provider = model_provider()
    read, errors = read_files([ROOT / "properties" / f for f in files])
    assert not errors
    prepared, errors = plan(read, provider, names)
    assert not errors
    local = check(prepared.groups, prepared.properties, options=Options(symmetry=True))
    on_ray = replace(backend, provider=provider, _pool=backend._pool)
    remote = check(prepared.groups, prepared.properties,
                   options=Options(symmetry=True, compact=True, backend=on_ray))
    assert len(remote.results) == len(local.results) == len(names)
    for a, b in zip(local.results, remote.results, strict=True):
        message = a.message
        if a.prop.kind.liveness:  # explored here, saying so
            assert "explored without Ray" in b.message
            message = b.message.replace(LIVENESS_NOTE, "")
        assert (a.prop.name, a.verdict, a.message, a.trace and a.trace.choices) == (
            b.prop.name, b.verdict, message, b.trace and b.trace.choices)
    for a, b in zip(local.explorations, remote.explorations, strict=True):
        assert (a.stats.states, a.stats.transitions, a.stats.depth, a.complete,
                a.stop_reason) == (b.stats.states, b.stats.transitions, b.stats.depth,
                                   b.complete, b.stop_reason)


@pytest.mark.slow
def test_kexec_design(backend: RayBackend) -> None:
    # 3 CPUs (2 interchangeable: symmetry on); a complete exploration and a violation
    both(backend, ["kexec_crash.toml"], [
        "crash-kernel-starts-with-nmis-unblocked-without-enable-nmis",
        "callback-all-cpus-acknowledge", "callback-crash-kernel-starts",
        "ist-enabled-crash-path-clobbers",
    ])


@pytest.mark.slow
def test_ist_design(backend: RayBackend) -> None:
    both(backend, ["ist_reentrancy.toml"], [
        "real-nmi-nesting-is-latched", "second-nmi-latched-in-handler",
        "nested-nmis-raise-no-exception", "fake-nmi-then-real-nmi-clobbers",
        "latched-nmi-eventually-delivered",
    ])


def test_options_that_do_not_apply(capsys: pytest.CaptureFixture[str]) -> None:
    path = str(ROOT / "properties" / "kexec_crash.toml")
    assert main([path, "--backend", "ray", "--por"]) == 2
    assert "--backend ray: not with --por" in capsys.readouterr().err
    assert main([path, "--ray-address", "127.0.0.1:6379"]) == 2
    assert "--ray-address: only with --backend ray" in capsys.readouterr().err


@pytest.mark.slow
def test_the_command_line(
    backend: RayBackend, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # joins the cluster the fixture started; 2 shards of its own
    path = str(ROOT / "properties" / "ist_reentrancy.toml")
    args = [path, "--property", "fake-nmi-then-real-nmi-clobbers", "--report-dir",
            str(tmp_path), "-v"]
    assert main([*args, "--backend", "ray", "--workers", "2"]) == 0
    out = capsys.readouterr().out
    assert "1 property: 1 as expected" in out and "64-bit fingerprints" in out
    assert main(args) == 0
    local = capsys.readouterr().out
    steps = [line for line in local.splitlines() if line.strip().startswith("choices:")]
    assert steps and all(line in out for line in steps)


def test_without_ray(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails
    path = str(ROOT / "properties" / "kexec_crash.toml")
    assert main([path, "--backend", "ray", "--property", "v1-shootdown-waits-full-timeout"]) == 2
    assert "pip install 'irq-checker[distributed]'" in capsys.readouterr().err


# -- the algorithm without Ray: shards as plain objects in this process ---------------------


class _Call:
    def __init__(self, method: Any, returns: int = 1):
        self.method = method
        self.returns = returns

    def options(self, num_returns: int) -> _Call:
        return _Call(self.method, num_returns)

    def remote(self, *args: Any) -> Any:
        out = self.method(*args)
        if self.returns > 1:  # each batch of states crosses a process boundary on Ray
            return [out[0], *[pickle.loads(pickle.dumps(b)) for b in out[1:]]]
        return out


class _Handle:
    def __init__(self) -> None:
        self.shard = Shard()

    def __getattr__(self, name: str) -> _Call:
        return _Call(getattr(self.shard, name))


class _InProcessRay:
    """What checker.distributed uses of `ray`, with every call run here at once."""

    class exceptions:
        RayError = type("RayError", (Exception,), {})

    @staticmethod
    def get(value: Any) -> Any:
        return value


class _Given:
    """A provider that gives one system (it pickles with it)."""

    def __init__(self, system: Any):
        self.system = system

    def load(self, design: str, variant: Any, environment: Any) -> Any:
        return self.system


def same_sharded(monkeypatch: pytest.MonkeyPatch, system: Any, checks: Sequence[Check],
                 bounds: Bounds | None = None, shards: Sequence[int] = (1, 2, 3, 5),
                 symmetry: bool = False) -> Exploration:
    monkeypatch.setattr(distributed, "ray_module", _InProcessRay)
    one = explore(system, checks, bounds, options=Options(symmetry=symmetry))
    recipe = Recipe(_Given(system), "given", (), ())  # type: ignore[arg-type]
    for count in shards:
        backend = RayBackend(_Given(system), shards=count)  # type: ignore[arg-type]
        backend._pool.extend(_Handle() for _ in range(count))
        many = explore_ray(backend, recipe, system, checks, bounds,
                           options=Options(compact=True, symmetry=symmetry))
        assert summary(many) == summary(one), count
    return one


def test_sharded_in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sharded search on 1, 2, 3 and 5 shards: every kind of check, violations,
    bounds, model errors (Ray itself is not needed)."""
    same_sharded(monkeypatch, Counters(3, 4), COUNTER_CHECKS)
    same_sharded(monkeypatch, Mutex(lock=False, rounds=3), [check_of(Kind.ALWAYS,
                                                                     "in_critical <= 1")])
    same_sharded(monkeypatch, Counters(3, 4), [check_of(Kind.FINAL, "total == 1")])
    for states in (1, 2, 9, 50):
        same_sharded(monkeypatch, Counters(3, 5), COUNTER_CHECKS, Bounds(max_states=states))
    for depth in (0, 1, 4):
        same_sharded(monkeypatch, Counters(3, 5), COUNTER_CHECKS, Bounds(max_depth=depth))
    same_sharded(monkeypatch, Faulty(3, 3), [check_of(Kind.ALWAYS, "total < 100")])
    same_sharded(monkeypatch, Faulty(3, 3), [check_of(Kind.REACHABLE, "total == 2")])


def test_sharded_with_symmetry(monkeypatch: pytest.MonkeyPatch) -> None:
    from test_reductions import SymCounters

    same_sharded(monkeypatch, SymCounters(4, 3),
                 [check_of(Kind.REACHABLE, "c[0] == 3 and total == 9")], symmetry=True)


@settings(max_examples=30, deadline=None)
@given(
    st.dictionaries(
        st.integers(0, 30), st.lists(st.integers(0, 30), max_size=4), max_size=31
    ),
    st.lists(st.integers(0, 30), min_size=1, max_size=3),
    st.integers(0, 30),
    st.integers(1, 40),
)
# An initial state decides every property (or meets max_states) before the shards were
# seeded: the trace to it was looked up in a shard that never got it (a KeyError).
@example(edges={}, inits=[0, 1], target=0, states=1)
@example(edges={}, inits=[0, 1], target=0, states=40)
def test_sharded_random_graphs(edges: dict[int, list[int]], inits: list[int], target: int,
                               states: int) -> None:
    graph = Graph(edges, inits, frozenset({0}))
    checks = [check_of(Kind.NEVER, f"node == {target}"), check_of(Kind.DEADLOCK_FREE)]
    with pytest.MonkeyPatch.context() as monkeypatch:
        same_sharded(monkeypatch, graph, checks)
        same_sharded(monkeypatch, graph, checks, Bounds(max_states=states), shards=(3,))
