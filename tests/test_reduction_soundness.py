"""Known wrong verdicts of the reductions on main (issue 13), one minimal design each.

Each reproducer runs through the command line (tests/random_designs.py: a subprocess
calling `checker.cli.main`), plain (`--shortest --workers 1`) and with the option.
A plain-verdict test pins what the design shows without any reduction, so the
`xfail(strict=True)` test next to it cannot pass vacuously; when the fix lands the
xfail test XPASSes, which fails the run until the marker is removed.
"""

from __future__ import annotations

import textwrap

from tests.random_designs import Case, compare, run_plain

# 1. CPU 0 writes 0xbad into the word CPU 1 pushes to; CPU 1 pops it and records it.
POR_CROSS_STACK = Case(
    seed=-1,
    name="por_cross_stack",
    symmetry="none",
    design=textwrap.dedent("""\
        design por_cross_stack "CPU 0 writes into CPU 1's stack"
        cpus 2
        stack kstack size 0x1000 per-cpu
        percpu got = 0
        cpu 0 start writer cpl 0 rsp top(kstack)
        cpu 1 start reader cpl 0 rsp top(kstack)

        ENTRY(writer)
        1:      movq $0xbad, top(kstack[1])-8
                jmp 1b

        ENTRY(reader)
                pushq $1
                popq %rbx
                jmp rec

        function rec {
            got = %rbx;
            stop();
        }
        """),
    properties=textwrap.dedent("""\
        design = "por_cross_stack"
        [[property]]
        name = "never-bad"
        kind = "never"
        expr = "got[1] == 0xbad"
        expect = "violated"
        """),
)

# 2. Two values equal modulo 2**61 - 1 (Python's hash of an int): the second state
#    looks visited under --compact and its assertion is never evaluated.
COMPACT_COLLISION = Case(
    seed=-2,
    name="compact_collision",
    symmetry="none",
    design=textwrap.dedent("""\
        design compact_collision "x is 0 or 2**61 - 1"
        cpus 1
        stack kstack size 0x1000 per-cpu
        var x = 0
        cpu 0 start main cpl 0 rsp top(kstack)

        function main {
            choose(x, 0, 0x1fffffffffffffff);
            assert(x == 0);
            stop();
        }
        """),
    properties=textwrap.dedent("""\
        design = "compact_collision"
        [[property]]
        name = "no-assertion-fails"
        kind = "never"
        expr = "assertion_failed"
        expect = "violated"
        """),
)

# 3. Declared symmetric, but CPU 1 and CPU 2 run different code; CPU 0 sends CPU 1 an
#    NMI whose handler sets `bad` only on CPU 2's path. (The routine names make CPU 2's
#    state sort first, so the representative swaps the two.)
WRONG_SYMMETRY = Case(
    seed=-3,
    name="wrong_symmetry",
    symmetry="wrong",
    design=textwrap.dedent("""\
        design wrong_symmetry "declared symmetric, CPUs 1 and 2 differ"
        cpus 3
        symmetric
        stack kstack size 0x1000 per-cpu
        idt idt per-cpu
            gate NMI nmi_handler interrupt
        end
        var bad = 0
        percpu path = 0
        cpu 0 start sender cpl 0 idt idt rsp top(kstack)
        cpu 1 start zpath_a cpl 0 idt idt rsp top(kstack) if 1
        cpu 2 start apath_b cpl 0 idt idt rsp top(kstack) if 1

        function sender {
            send_nmi(1);
            stop();
        }

        function zpath_a {
            for (;;) {
                halt();
            }
        }

        function apath_b {
            path = 2;
            for (;;) {
                halt();
            }
        }

        function nmi_handler {
            if (path == 2) {
                bad = 1;
            }
            stop();
        }
        """),
    properties=textwrap.dedent("""\
        design = "wrong_symmetry"
        [[property]]
        name = "never-bad"
        kind = "never"
        expr = "bad == 1"
        expect = "holds"
        """),
)


def test_por_reproducer_is_violated_without_reduction() -> None:
    assert run_plain(POR_CROSS_STACK) == {"never-bad": "violated"}


def test_por_sees_a_write_into_another_cpus_stack() -> None:
    assert compare(POR_CROSS_STACK, ["por", "por+symmetry", "all"]).findings == []


def test_compact_reproducer_is_violated_without_reduction() -> None:
    assert run_plain(COMPACT_COLLISION) == {"no-assertion-fails": "violated"}


def test_compact_fingerprints_do_not_collide_on_equal_hashes() -> None:
    # Was wrong verdict 2 of issue 13 (hash()); fixed by main's BLAKE2b fingerprints.
    assert compare(COMPACT_COLLISION, ["compact", "por+compact", "all"]).findings == []


def test_wrong_symmetry_reproducer_holds_without_reduction() -> None:
    # (or refused outright, once a wrong declaration is a path:line error)
    assert run_plain(WRONG_SYMMETRY) in ({"never-bad": "holds"}, "rejected")


def test_a_wrong_symmetry_declaration_does_not_change_the_verdict() -> None:
    # Fixed means: the same verdict, or the declaration refused with a path:line error.
    findings = compare(WRONG_SYMMETRY, ["symmetry", "por+symmetry", "all"]).findings
    assert all(f.kind == "rejected" for f in findings), findings


# -- found by the differential fuzzer (tests/random_designs.py) -------------------------------

# 4. CPU 1 reads CPU 0's copy of a per-CPU variable with per_cpu(p0, 0), which no code
#    indexes as p0[i]: POR takes both steps as local, runs CPU 0's write first and never
#    sees the read that comes before it.
POR_PER_CPU_READ = Case(
    seed=-4,
    name="por_per_cpu_read",
    symmetry="none",
    design=textwrap.dedent("""\
        design por_per_cpu_read "per_cpu() reads a variable another CPU writes"
        cpus 2
        stack kstack size 0x1000 per-cpu
        percpu p0 = 0
        percpu got = 0
        cpu 0 start writer cpl 0 rsp top(kstack)
        cpu 1 start reader cpl 0 rsp top(kstack)

        function writer {
            p0 = 5;
            stop();
        }

        function reader {
            got = per_cpu(p0, 0) + 1;
            stop();
        }
        """),
    properties=textwrap.dedent("""\
        design = "por_per_cpu_read"
        [[property]]
        name = "read-before-write"
        kind = "never"
        expr = "got[1] == 1"
        expect = "violated"
        """),
)

# 5. CPU 1 reads the word CPU 0 pushes with mem(top(kstack[0])-8): the push is local to
#    CPU 0, the read is taken as local to CPU 1.
POR_MEM_READ = Case(
    seed=-5,
    name="por_mem_read",
    symmetry="none",
    design=textwrap.dedent("""\
        design por_mem_read "mem() reads a word of another CPU's stack"
        cpus 2
        stack kstack size 0x1000 per-cpu
        percpu got = 0
        cpu 0 start writer cpl 0 rsp top(kstack)
        cpu 1 start reader cpl 0 rsp top(kstack)

        ENTRY(writer)
                pushq $5
        1:      hlt
                jmp 1b

        function reader {
            got = mem(top(kstack[0])-8) + 1;
            stop();
        }
        """),
    properties=textwrap.dedent("""\
        design = "por_mem_read"
        [[property]]
        name = "read-before-push"
        kind = "never"
        expr = "got[1] == 1"
        expect = "violated"
        """),
)

# 6. A valid symmetric design whose per-CPU variable holds a return address (a code
#    address) on one CPU and a number on another: the representative's sort compares
#    them and raises TypeError, so every verdict under --symmetry auto is `error`.
SYMMETRY_MIXED_VALUES = Case(
    seed=-6,
    name="symmetry_mixed_values",
    symmetry="valid",
    design=textwrap.dedent("""\
        design symmetry_mixed_values "a per-CPU variable holds a code address or a number"
        cpus 3
        symmetric
        stack kstack size 0x1000 per-cpu
        percpu got = 0
        percpu p = 0
        cpu 0 start idle cpl 0 rsp top(kstack)
        cpu * start rw cpl 0 rsp top(kstack)

        function idle {
            stop();
        }

        function rw {
            choose(p, 0, 1);
            if (p) {
                rec();
            }
            stop();
        }

        function rec {
            got = mem(%rsp);
        }
        """),
    properties=textwrap.dedent("""\
        design = "symmetry_mixed_values"
        [[property]]
        name = "no-deadlock"
        kind = "deadlock_free"
        expect = "holds"
        """),
)


def test_per_cpu_read_reproducer_is_violated_without_reduction() -> None:
    assert run_plain(POR_PER_CPU_READ) == {"read-before-write": "violated"}


def test_por_sees_a_per_cpu_read_of_another_cpus_copy() -> None:
    assert compare(POR_PER_CPU_READ, ["por"]).findings == []


def test_mem_read_reproducer_is_violated_without_reduction() -> None:
    assert run_plain(POR_MEM_READ) == {"read-before-push": "violated"}


def test_por_sees_a_mem_read_of_another_cpus_stack() -> None:
    assert compare(POR_MEM_READ, ["por"]).findings == []


def test_mixed_values_reproducer_holds_without_reduction() -> None:
    assert run_plain(SYMMETRY_MIXED_VALUES) == {"no-deadlock": "holds"}


def test_symmetry_representative_orders_values_of_any_type() -> None:
    assert compare(SYMMETRY_MIXED_VALUES, ["symmetry", "por+symmetry"]).findings == []
