"""A `symmetric` declaration is checked, not trusted (issue 13, wrong verdict 3)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from checker.errors import InputError
from model.system.provider import DesignProvider

BASE = """\
    design sym "three CPUs"
    cpus 3
    symmetric
    stack kstack size 0x1000 per-cpu
    idt idt per-cpu
        gate NMI handler interrupt
    end
    percpu x = 0
    cpu 0 start boss cpl 0 idt idt rsp top(kstack)
    cpu * start worker cpl 0 idt idt rsp top(kstack)

    function boss {
        BOSS
        stop();
    }

    function worker {
        WORKER
        stop();
    }

    function handler {
        stop();
    }
"""


def _load(tmp_path: Path, boss: str = "nop();", worker: str = "nop();", extra: str = "") -> None:
    text = textwrap.dedent(BASE).replace("BOSS", boss).replace("WORKER", worker) + extra
    path = tmp_path / "sym.design"
    path.write_text(text)
    provider = DesignProvider(tmp_path)
    provider.load("sym", {}, {"nmi": 0})


def test_code_without_cpu_numbers_keeps_the_declaration(tmp_path: Path) -> None:
    _load(tmp_path, boss="send_nmi(ALL_BUT_SELF);", worker="x = cpu;")


@pytest.mark.parametrize("boss, worker, why", [
    ("send_nmi(1);", "nop();", "send_nmi(1)"),
    ("x[2] = 1;", "nop();", "x[2]"),
    ("nop();", "if (cpu == 1) { x = 1; }", "a comparison of a CPU number with 1"),
    ("nop();", "x = per_cpu(x, 2);", "per_cpu(..., 2)"),
])
def test_code_that_names_one_cpu_refuses_the_declaration(
    tmp_path: Path, boss: str, worker: str, why: str
) -> None:
    with pytest.raises(InputError) as err:
        _load(tmp_path, boss=boss, worker=worker)
    assert err.value.line == 3  # the `symmetric` line
    assert why in str(err.value)


def test_cpus_that_start_differently_refuse_the_declaration(tmp_path: Path) -> None:
    extra = "cpu 2 start handler cpl 0 idt idt rsp top(kstack)\n"
    with pytest.raises(InputError, match="CPU 1 and CPU 2 start differently"):
        _load(tmp_path, extra=extra)
