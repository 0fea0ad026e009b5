"""`python -m checker [PATHS...]`: check property files and gate on their verdicts.

Exit codes: 0 every verdict meets its expectation; 1 some verdict differs (or, with
`--require-full-coverage`, some source line was never reached); 2 bad input or usage
(including a property that could not be evaluated); 3 some verdict is incomplete (a bound
stopped exploration) and none differs.

`python -m checker replay TRACE` re-runs a stored trace (see `checker.replay`);
`python -m checker lint DESIGN...` checks design files without exploring.
"""

from __future__ import annotations

import argparse
import importlib
import os
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TextIO

from checker import replay as replay_command
from checker.ci import github_input_errors, github_report
from checker.coverage import run_coverage, unreached_report
from checker.errors import CheckerError, UsageError
from checker.explore import Bounds, Options, Progress
from checker.interface import DesignFolders, DesignLinter, ModelProvider
from checker.report import dumps, errors_json
from checker.results import OutputContext
from checker.run import check, plan, read_files
from checker.spec import LoadedGroup, find_property_files
from checker.verdict import EXIT_INCOMPLETE, EXIT_INPUT, EXIT_OK, EXIT_UNEXPECTED, Verdict
from checker.writers import Target, stdout_writer, write_reports, writers

DEFAULT_PATH = "properties/"
# One process per core (issue 8). On the 2-core machine it was measured on, two made the
# gate no faster (179 s against 172 s, a loaded machine); the explorer falls back to one
# process after levels where helpers did not pay (docs/properties.md#workers).
WORKERS_HELP = (
    "expand big BFS levels in N processes (fork); counts, verdicts and traces do not "
    "depend on N. Default: the number of cores (the explorer goes back to one process "
    "when helpers do not pay)"
)
DEFAULT_REPORT_DIR = "reports/"
DEFAULT_MODEL = "model:provider"
EXIT_INTERRUPTED = 130


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0: {text!r}")
    return value


def _positive_int(text: str) -> int:
    value = _non_negative_int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1: {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0: {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m checker",
        description="Exhaustively check property files against the interrupt-delivery model.",
        epilog="Exit codes: 0 all verdicts as expected, 1 a verdict differs (or "
        "--require-full-coverage found unreached lines), 2 bad input or usage, 3 a verdict "
        "is incomplete (a bound was hit). `python -m checker replay TRACE` re-runs a "
        "stored trace (see `python -m checker replay --help`); `python -m checker lint "
        "DESIGN...` checks design files without exploring.",
    )
    parser.add_argument(
        "paths", nargs="*", metavar="PATH",
        help=f"property files or folders (every *.toml, recursively; default {DEFAULT_PATH})",
    )
    parser.add_argument(
        "--property", action="append", default=[], metavar="NAME",
        help="check only properties whose name matches this glob (repeatable)",
    )
    parser.add_argument(
        "--design-path", action="append", default=[], metavar="DIR",
        help="also look for designs named in property files in DIR (repeatable; searched "
        "in order, before the model's own designs)",
    )
    parser.add_argument("--max-states", type=_non_negative_int, metavar="N",
                        help="stop an exploration after N distinct states")
    parser.add_argument("--max-depth", type=_non_negative_int, metavar="N",
                        help="do not explore beyond N steps from an initial state")
    parser.add_argument("--timeout", type=_positive_float, metavar="SECONDS",
                        help="stop an exploration after SECONDS")
    parser.add_argument("--format", choices=[w.name for w in writers(Target.STDOUT)],
                        default="text", help="output format on stdout (default text)")
    parser.add_argument("--report-dir", default=DEFAULT_REPORT_DIR, metavar="DIR",
                        help=f"where traces are written (default {DEFAULT_REPORT_DIR})")
    for writer in writers(Target.REPORT):
        parser.add_argument(f"--{writer.name}", action="store_true", help=writer.help)
    for writer in writers(Target.FILE):
        parser.add_argument(f"--{writer.name}", metavar="FILE", help=writer.help)
    parser.add_argument("--model", default=DEFAULT_MODEL, metavar="PACKAGE:FACTORY",
                        help="the model to check against: a Python package and a function "
                        "in it returning a ModelProvider (checker/interface.py); default "
                        f"{DEFAULT_MODEL}, the interrupt-delivery model")
    parser.add_argument("--require-full-coverage", action="store_true",
                        help="exit 1 when some source line of a design was never reached")
    parser.add_argument("--strict-vacuity", action="store_true",
                        help="exit 1 when a property holds vacuously (no asynchronous event "
                        "delivered, or an implication's antecedent never true)")
    parser.add_argument("--workers", type=_positive_int, metavar="N",
                        help=WORKERS_HELP)
    parser.add_argument("--compact", action="store_true",
                        help="keep 64-bit fingerprints of visited states instead of the states "
                        "(less memory; reports the probability of a fingerprint collision, "
                        "as TLC does; no coverage)")
    parser.add_argument("--symmetry", choices=("auto", "off"), default="auto",
                        help="auto (default): explore one state per orbit when the design "
                        "declares interchangeable CPUs, for the properties no renumbering "
                        "can change (the others are explored in full); off: never")
    parser.add_argument("--por", action="store_true",
                        help="partial-order reduction: expand one CPU's steps alone while no "
                        "other CPU can touch what they touch (same verdicts; counterexamples "
                        "are real paths but may not be the shortest; one process per level)")
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument("-q", "--quiet", action="store_true",
                           help="print only failures and the summary")
    verbosity.add_argument("-v", "--verbose", action="store_true",
                           help="print every message and exploration statistics")
    return parser


def default_workers() -> int:
    return os.cpu_count() or 1


def exploration_options(args: argparse.Namespace) -> Options:
    """How to explore, from the command line."""
    return Options(
        compact=args.compact,
        symmetry=args.symmetry == "auto",
        workers=args.workers if args.workers is not None else default_workers(),
        por=args.por,
    )


class ProgressLine:
    """A live progress line on a terminal: shown after ~2 s, refreshed every ~0.5 s."""

    DELAY = 2.0
    EVERY = 0.5

    def __init__(self, stream: TextIO):
        self.stream = stream
        self.enabled = _isatty(stream)
        self.shown = False
        self.last = 0.0

    def for_group(self, number: int, total: int, loaded: LoadedGroup) -> Progress | None:
        if not self.enabled:
            return None
        group = loaded.group
        label = f"[{number + 1}/{total}] {group.design}"
        if group.variant:
            label += f" [{group.variant_text}]"

        def report(states: int, depth: int, seconds: float) -> None:
            now = time.monotonic()
            if seconds < self.DELAY or now - self.last < self.EVERY:
                return
            self.last = now
            rate = states / seconds if seconds > 0 else 0.0
            self.stream.write(
                f"\r\033[K{label}: {states:,} states, depth {depth}, {rate:,.0f} states/s"
            )
            self.stream.flush()
            self.shown = True

        return report

    def clear(self) -> None:
        if self.shown:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self.shown = False


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def load_provider(spec: str = DEFAULT_MODEL) -> ModelProvider:
    """The provider `PACKAGE:FACTORY` names: FACTORY() from the importable PACKAGE."""
    package, sep, factory = spec.partition(":")
    if not sep or not package or not factory.isidentifier():
        raise UsageError(f"--model {spec}: expected PACKAGE:FACTORY (e.g. {DEFAULT_MODEL})")
    try:
        module = importlib.import_module(package)
    except ImportError as exc:
        raise UsageError(f"--model {spec}: cannot load the model package: {exc}") from None
    make = vars(module).get(factory)
    if not callable(make):
        raise UsageError(
            f"--model {spec}: cannot load the model package: {package} has no function {factory}"
        )
    provider: ModelProvider = make()
    return provider


def _print_errors(errors: Sequence[CheckerError], fmt: str) -> None:
    for error in errors:
        print(str(error), file=sys.stderr)
    github_input_errors(errors, os.environ)
    if fmt == "json":
        sys.stdout.write(dumps(errors_json(list(errors))))


# Subcommands: `python -m checker NAME ARGS...` runs SUBCOMMANDS[NAME](ARGS, provider,
# load_provider); a path argument never matches (`./replay` names a folder called replay).
Subcommand = Callable[[Sequence[str], ModelProvider | None, Callable[[str], ModelProvider]], int]
SUBCOMMANDS: dict[str, Subcommand] = {
    "replay": replay_command.main,
    "lint": lambda argv, provider, load: lint_main(argv, provider),
}


def main(argv: list[str] | None = None, provider: ModelProvider | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SUBCOMMANDS:
        try:
            return SUBCOMMANDS[argv[0]](argv[1:], provider, load_provider)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
    parser = build_parser()
    args = parser.parse_args(argv)  # exits 2 on a usage error, as argparse does
    args.command = "python -m checker " + shlex.join(argv) if argv else "python -m checker"
    try:
        return _run(args, provider)
    except CheckerError as exc:  # InputError, UsageError, ...: a message, no traceback
        _print_errors([exc], args.format)
        return EXIT_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _run(args: argparse.Namespace, provider: ModelProvider | None) -> int:
    if args.compact and args.require_full_coverage:
        raise UsageError(
            "--require-full-coverage needs the visited states: --compact keeps only their "
            "fingerprints"
        )
    paths = find_property_files(args.paths or [DEFAULT_PATH])
    if not paths:
        where = ", ".join(args.paths or [DEFAULT_PATH])
        raise UsageError(f"no property files (*.toml) found in {where}")
    files, errors = read_files(paths)  # syntax and schema first: no model needed
    if errors:
        _print_errors(errors, args.format)
        return EXIT_INPUT
    if provider is None:
        provider = load_provider(args.model)
    add_design_paths(provider, args.design_path)
    prepared, errors = plan(files, provider, args.property)
    if prepared is None:
        _print_errors(errors, args.format)
        return EXIT_INPUT
    bounds = Bounds(args.max_states, args.max_depth, args.timeout)
    options = exploration_options(args)
    progress = ProgressLine(sys.stderr)
    want_coverage = args.html or args.format == "json" or args.require_full_coverage
    try:
        run = check(prepared.groups, prepared.properties, bounds, progress.for_group,
                    coverage=want_coverage, options=options)
    finally:
        progress.clear()
    code = run.strict_exit_code(args.strict_vacuity)
    coverage_lines: list[str] = []
    if args.require_full_coverage:
        merged = run_coverage(run.explorations)
        if merged is None:
            raise UsageError("--require-full-coverage: the model reports no coverage")
        coverage_lines = unreached_report(merged)
        if coverage_lines and code in (EXIT_OK, EXIT_INCOMPLETE):
            code = EXIT_UNEXPECTED
    options_of = vars(args)
    # Every verdict is printed even when a report cannot be written (then exit 2).
    out, report_problems = write_reports(
        OutputContext(run, {}, Path(args.report_dir), code, args.command, args.quiet,
                      args.verbose),
        pages=[w for w in writers(Target.REPORT) if options_of[w.name]],
        files={w.name: options_of[w.name] for w in writers(Target.FILE)},
    )
    traces = out.traces
    if report_problems:
        code = EXIT_INPUT
    printer = stdout_writer(args.format).run
    assert printer is not None
    sys.stdout.write(printer(replace(out, exit_code=code,
                                     written=out.written if args.format == "text" else ())))
    for problem in report_problems:
        print(problem, file=sys.stderr)
    for result in run.results:
        if result.verdict is Verdict.ERROR:
            print(f"{result.prop.file}:{result.prop.line}: property '{result.prop.name}': "
                  f"{result.message}", file=sys.stderr)
    if coverage_lines:
        total = sum(len(f["unreached"]) for f in (run_coverage(run.explorations) or {})
                    .get("files", {}).values())
        print(f"--require-full-coverage: {total} source line{'s' if total != 1 else ''} "
              "never reached:", file=sys.stderr)
        for line in coverage_lines:
            print(f"  {line}", file=sys.stderr)
    github_report(run, traces, os.environ)
    return code


def add_design_paths(provider: ModelProvider, folders: Sequence[str]) -> None:
    """`--design-path DIR...`: folders the model looks for designs in (its optional
    `add_design_path`)."""
    if not folders:
        return
    if not isinstance(provider, DesignFolders):
        raise UsageError("--design-path: this model does not look for designs in folders")
    for folder in folders:
        if not Path(folder).is_dir():
            raise UsageError(f"--design-path {folder}: no such folder")
        provider.add_design_path(Path(folder))


def lint_main(argv: Sequence[str], provider: ModelProvider | None) -> int:
    """`python -m checker lint FILE.design...`: parse and lay out designs without
    exploring; every error as `path:line: message`, exit 0 when there is none, else 2."""
    parser = argparse.ArgumentParser(
        prog="python -m checker lint",
        description="Parse and lay out design files (every variant, or each knob value "
        "once when there are many) and report every error, without exploring.",
        epilog="Exit codes: 0 no error, 2 some error (or bad usage).",
    )
    parser.add_argument("designs", nargs="+", metavar="DESIGN",
                        help="design files, or folders (every *.design in them, recursively)")
    args = parser.parse_args(list(argv))
    try:
        if provider is None:
            provider = load_provider()
        if not isinstance(provider, DesignLinter):
            raise UsageError("lint: this model cannot lint design files")
        files: list[Path] = []
        for raw in args.designs:
            path = Path(raw)
            if path.is_dir():
                files.extend(sorted(p for p in path.rglob("*.design") if p.is_file()))
            elif path.is_file():
                files.append(path)
            else:
                raise UsageError(f"{raw}: no such file or directory")
        if not files:
            raise UsageError("lint: no *.design files found in " + ", ".join(args.designs))
    except CheckerError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_INPUT
    errors: list[CheckerError] = []
    for path in files:
        found = list(provider.lint(str(path)))
        errors.extend(found)
        if not found:
            print(f"{path}: ok")
    for error in errors:
        print(str(error), file=sys.stderr)
    github_input_errors(errors, os.environ)
    return EXIT_INPUT if errors else EXIT_OK


def entry_point() -> None:
    sys.exit(main())
