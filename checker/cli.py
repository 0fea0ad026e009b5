"""`python -m checker [PATHS...]`: check property files and gate on their verdicts.

Exit codes: 0 every verdict meets its expectation; 1 some verdict differs (or, with
`--require-full-coverage`, some source line was never reached); 2 bad input or usage
(including a property that could not be evaluated); 3 some verdict is incomplete (a bound
stopped exploration) and none differs.

`python -m checker replay TRACE` re-runs a stored trace (see `checker.replay`);
`python -m checker lint DESIGN...` checks design files without exploring;
`python -m checker completion bash|zsh` prints a shell completion script. The installed
command `irq-checker` is the same program.

Defaults for the paths and options come from a `[tool.irq-checker]` table in
pyproject.toml, or from checker.toml (`checker.config`); the command line wins.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import shlex
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from checker import config as config_file
from checker import replay as replay_command
from checker.ci import github_input_errors, github_report
from checker.coverage import run_coverage, unreached_report
from checker.errors import CheckerError, InputError, UsageError
from checker.explore import Bounds, Budget, Options, Progress, resident_memory
from checker.interface import DesignFolders, DesignLinter, ModelProvider
from checker.report import dumps, errors_json, mark
from checker.results import OutputContext, PropertyResult, RunResult
from checker.run import LoadFailure, Stopping, check, plan, read_files, select
from checker.spec import LoadedGroup, PropertyFile, find_property_files
from checker.verdict import EXIT_INCOMPLETE, EXIT_INPUT, EXIT_OK, EXIT_UNEXPECTED, Verdict
from checker.writers import Target, stdout_writer, write_reports, writers

DEFAULT_PATH = "properties/"
# One process per core (issue 8): explorations side by side took the gate from 63 s to
# 35 s on a 2-core machine (docs/properties.md#workers).
WORKERS_HELP = (
    "run the explorations side by side in N processes (fork), or with a single "
    "exploration, expand its big BFS levels in N processes; counts, verdicts and traces do "
    "not depend on N. Default: the number of cores"
)
DEFAULT_REPORT_DIR = "reports/"
DEFAULT_MODEL = "model:provider"
EXIT_INTERRUPTED = 130
# The default --max-memory: this share of the machine's memory, or of what was available
# when the run began if that is less (other processes need theirs).
MEMORY_SHARE = 0.75
# A log that is not a terminal (CI) gets a progress line at most this often.
HEARTBEAT = 30.0
PROGRAM = "irq-checker"


def program_name() -> str:
    """How the user ran us: `irq-checker` (the console script) or `python -m checker`."""
    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    return PROGRAM if name == PROGRAM else "python -m checker"


def version() -> str:
    try:
        from importlib.metadata import PackageNotFoundError
        from importlib.metadata import version as installed
    except ImportError:  # pragma: no cover - Python >= 3.8 has it
        return "unknown"
    try:
        return installed(PROGRAM)
    except PackageNotFoundError:
        return "unknown (not installed: run `pip install -e .`)"


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


def _memory_size(text: str) -> int:
    """`--max-memory`: a size (8G, 512M, 1.5GiB, 100000 bytes), or none/off for no bound."""
    value = text.strip().lower()
    if value in ("none", "off", "0"):
        return 0  # no bound (None, the default, means the machine's share)
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?", value)
    if match is None:
        raise argparse.ArgumentTypeError(
            f"not a size: {text!r} (e.g. 8G, 512M, 100000; none for no bound)"
        )
    scale = 1 << (10 * " kmgt".index(match.group(2) or " "))
    size = int(float(match.group(1)) * scale)
    if size < 1 << 20:
        raise argparse.ArgumentTypeError(f"too small to run in: {text!r} (at least 1M)")
    return size


def default_max_memory() -> int | None:
    """MEMORY_SHARE of the machine's memory (/proc/meminfo, else sysconf), or less when
    less was available at the start (then what was available plus what we already use);
    None when the machine does not say."""
    total = available = None
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                key, _, rest = line.partition(":")
                if key in ("MemTotal", "MemAvailable"):
                    kib = int(rest.split()[0]) * 1024
                    total, available = (kib, available) if key == "MemTotal" else (total, kib)
    except (OSError, ValueError, IndexError):
        pass
    if total is None:
        try:
            total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, ValueError, OSError):
            return None
    bound = int(total * MEMORY_SHARE)
    if available is not None:
        bound = min(bound, available + (resident_memory() or 0))
    return bound


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0: {text!r}")
    return value


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    prog = prog or program_name()
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Exhaustively check property files against the interrupt-delivery model.",
        epilog="Exit codes: 0 all verdicts as expected, 1 a verdict differs (or "
        "--require-full-coverage found unreached lines), 2 bad input or usage, 3 a verdict "
        f"is incomplete (a bound was hit), 130 interrupted. `{prog} replay TRACE` re-runs a "
        f"stored trace (see `{prog} replay --help`); `{prog} lint DESIGN...` checks design "
        f"files without exploring; `{prog} completion bash` prints a completion script. "
        "Defaults for paths and options: a [tool.irq-checker] table in pyproject.toml, or "
        "checker.toml, in the working directory or above it.",
    )
    parser.add_argument("--version", action="version", version=f"{PROGRAM} {version()}")
    parser.add_argument(
        "paths", nargs="*", metavar="PATH",
        help=f"property files or folders (every *.toml, recursively; default {DEFAULT_PATH}, "
        "or `paths` in the configuration)",
    )
    parser.add_argument(
        "--property", action="append", default=[], metavar="NAME",
        help="check only properties whose name matches this glob (repeatable)",
    )
    parser.add_argument(
        "--list", action="store_true",
        help="list the properties (file:line, name, design, kind, expect, variant; JSON "
        "with --format json) without checking them",
    )
    parser.add_argument(
        "--design-path", action="append", default=[], metavar="DIR",
        help="also look for designs named in property files in DIR (repeatable; searched "
        "in order, before the model's own designs)",
    )
    parser.add_argument("--config", metavar="FILE",
                        help="read defaults from FILE (checker.toml, or a pyproject.toml with "
                        "a [tool.irq-checker] table) instead of looking for one")
    parser.add_argument("--max-states", type=_non_negative_int, metavar="N",
                        help="stop an exploration after N distinct states")
    parser.add_argument("--max-depth", type=_non_negative_int, metavar="N",
                        help="do not explore beyond N steps from an initial state")
    parser.add_argument("--timeout", type=_positive_float, metavar="SECONDS",
                        help="stop the whole run after SECONDS: what is unfinished is "
                        "incomplete")
    parser.add_argument("--timeout-per-exploration", type=_positive_float, metavar="SECONDS",
                        help="stop each exploration after SECONDS")
    parser.add_argument("--max-memory", type=_memory_size, metavar="SIZE",
                        help="stop an exploration when this process holds SIZE of memory "
                        "(8G, 512M; none: no bound), its undecided properties incomplete, "
                        f"rather than be killed; default {MEMORY_SHARE * 100:.0f}%% of the "
                        "machine's memory, or what was available at the start if less")
    parser.add_argument("-x", "--exitfirst", action="store_true",
                        help="stop after the first exploration with an unexpected verdict "
                        "(or an error); the rest is reported incomplete")
    parser.add_argument("--color", choices=("auto", "always", "never"), default="auto",
                        help="colour the verdicts: auto (default) only on a terminal, and "
                        "not when NO_COLOR is set")
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
    parser.add_argument("--por", action=argparse.BooleanOptionalAction, default=None,
                        help="partial-order reduction (default on; --no-por: off): expand "
                        "one CPU's steps alone while no other CPU can touch what they touch "
                        "(same verdicts; counterexamples are real paths but may not be the "
                        "shortest; one process per level)")
    parser.add_argument("--shortest", action="store_true",
                        help="explore without symmetry and partial-order reduction (plain "
                        "breadth-first search), so each counterexample is a shortest one "
                        "(slower; --workers still applies)")
    parser.add_argument("--backend", choices=("local", "ray"), default="local",
                        help="local (default): explore in this machine's processes; ray: on "
                        "a Ray cluster, the visited set sharded by fingerprint over --workers "
                        "actors (default one per CPU of the cluster); same verdicts, counts "
                        "and traces (needs the [distributed] extra; explores without partial-order "
                        "reduction, so not with an explicit --por)")
    parser.add_argument("--ray-address", metavar="ADDR",
                        help="with --backend ray: the cluster to join (host:port, or auto); "
                        "default: start one on this machine, on the loopback address")
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument("-q", "--quiet", action="store_true",
                           help="print only failures and the summary")
    verbosity.add_argument("-v", "--verbose", action="store_true",
                           help="print every message and exploration statistics")
    return parser


def default_workers() -> int:
    return os.cpu_count() or 1


def exploration_options(
    args: argparse.Namespace, provider: ModelProvider | None = None
) -> Options:
    """How to explore, from the command line."""
    if args.backend == "ray":
        from checker.distributed import RayBackend, ray_module

        ray_module()  # installed, or a usage error
        assert provider is not None
        return Options(compact=True, symmetry=args.symmetry == "auto",
                       workers=args.workers or 1, por=False,
                       backend=RayBackend(provider, args.ray_address, args.workers))
    return Options(
        compact=args.compact,
        symmetry=args.symmetry == "auto" and not args.shortest,
        workers=args.workers if args.workers is not None else default_workers(),
        # on unless turned off (None: not said, so the default)
        por=args.por is not False and not args.shortest,
    )


class ProgressLine:
    """What the run says on stderr while it runs.

    On a terminal: a live progress line, shown after ~2 s and refreshed every ~0.5 s.
    Elsewhere (a CI log): a plain heartbeat line at most every HEARTBEAT seconds (file,
    exploration i/n, states, depth, rate, elapsed), and one line per property as soon as
    its exploration ends."""

    DELAY = 2.0
    EVERY = 0.5

    def __init__(
        self, stream: TextIO, color: bool = False, heartbeat: float = HEARTBEAT,
        quiet: bool = False,
    ):
        self.stream = stream
        self.enabled = _isatty(stream)
        self.color = color
        self.quiet = quiet  # -q: result lines only for what does not meet its expectation
        self.heartbeat = heartbeat
        self.shown = False
        self.last = 0.0
        self.started = time.monotonic()
        self.beat = self.started  # the last heartbeat (or the start)

    def for_group(self, number: int, total: int, loaded: LoadedGroup) -> Progress | None:
        group = loaded.group
        label = f"[{number + 1}/{total}] {group.design}"
        if group.variant:
            label += f" [{group.variant_text}]"
        if not self.enabled:
            where = f"{group.properties[0].file}: exploration {number + 1}/{total}"
            return self._heartbeat(where)

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

    def _heartbeat(self, where: str) -> Progress:
        def report(states: int, depth: int, seconds: float) -> None:
            now = time.monotonic()
            if now - self.beat < self.heartbeat:
                return
            self.beat = now
            rate = states / seconds if seconds > 0 else 0.0
            self.stream.write(
                f"{where}: {states:,} states, depth {depth}, {rate:,.0f} states/s, "
                f"{seconds:.0f}s (run {now - self.started:.0f}s)\n"
            )
            self.stream.flush()

        return report

    def results(self, found: Sequence[PropertyResult]) -> None:
        """One line per property of an exploration that just ended (not on a terminal,
        where the report follows at once)."""
        if self.enabled:
            return
        for result in found:
            if not (self.quiet and result.ok):
                self.stream.write(result_line(result, self.color) + "\n")
        self.stream.flush()

    def clear(self) -> None:
        # explorations run side by side draw the line from their own processes
        if self.shown or self.enabled:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self.shown = False


MARKS = {"ok": "32", "FAIL": "31;1", "ERROR": "31;1", "INCOMPLETE": "33"}


def paint(text: str, code: str, color: bool) -> str:
    return f"\033[{code}m{text}\033[0m" if color else text


def result_line(result: PropertyResult, color: bool = False) -> str:
    """A property's result on one line, for a log: `ok file:line name: verdict ...`."""
    prop = result.prop
    what = mark(result)
    stats = result.stats
    if result.verdict is Verdict.ERROR:
        detail = result.message
    else:
        detail = (
            f"{result.verdict}, expected {prop.expect} ({stats.states:,} states, depth "
            f"{stats.depth}, {stats.seconds:.2f}s)"
        )
        if result.verdict is Verdict.INCOMPLETE:
            detail += f": {result.message}"
    shown = paint(f"{what:<10}", MARKS[what], color)
    return f"{shown} {prop.file}:{prop.line} {prop.name}: {detail}"


def colour_text(text: str) -> str:
    """The text report with its verdict marks coloured."""
    def line(match: re.Match[str]) -> str:
        return match.group(1) + paint(match.group(2), MARKS[match.group(2)], True)

    return re.sub(r"(?m)^(  )(ok|FAIL|ERROR|INCOMPLETE)(?= )", line, text)


def use_color(choice: str, stream: TextIO) -> bool:
    """--color: always, never, or auto (a terminal, unless NO_COLOR; FORCE_COLOR forces)."""
    if choice != "auto":
        return choice == "always"
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    return _isatty(stream) and os.environ.get("TERM") != "dumb"


class Interrupts:
    """SIGINT and SIGTERM while checking: the first asks the run to stop (the explorer
    looks at `reason` with its clock; what is unfinished is reported incomplete); a
    second SIGINT stops at once (KeyboardInterrupt)."""

    SIGNALS: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, stream: TextIO):
        self.stream = stream
        self.reason: str | None = None
        self.pid = os.getpid()

    def __call__(self) -> str | None:
        return self.reason

    def handle(self, signum: int, frame: FrameType | None) -> None:
        if os.getpid() != self.pid:
            return  # a forked helper: the parent stops it
        if self.reason is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        name = signal.Signals(signum).name
        self.reason = f"interrupted by {name}"
        self.stream.write(f"\n{name}: stopping; the results so far follow\n")
        self.stream.flush()

    @contextmanager
    def installed(self) -> Iterator[None]:
        previous: dict[int, Any] = {}
        try:
            for sig in self.SIGNALS:
                previous[sig] = signal.signal(sig, self.handle)
        except ValueError:  # not the main thread: signals stay as they are
            pass
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


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
    "completion": lambda argv, provider, load: completion_main(argv),
}


def completion_main(argv: Sequence[str]) -> int:
    """`completion bash|zsh`: a completion script for `irq-checker`, generated from the
    parsers (so it knows every option and its choices)."""
    parser = argparse.ArgumentParser(
        prog=f"{program_name()} completion",
        description="Print a shell completion script for the irq-checker command. Bash: "
        "`eval \"$(irq-checker completion bash)\"` (in ~/.bashrc); zsh: the same with zsh.",
    )
    parser.add_argument("shell", choices=("bash", "zsh"))
    args = parser.parse_args(list(argv))
    sys.stdout.write(completion_script(args.shell))
    return EXIT_OK


def completion_script(shell: str) -> str:
    main_parser = build_parser(PROGRAM)
    options: list[str] = []
    choices: dict[str, list[str]] = {}
    files: list[str] = []
    folders: list[str] = []
    for action in main_parser._actions:  # argparse has no public list of its options
        options.extend(o for o in action.option_strings if o.startswith("--"))
        if not action.option_strings or action.nargs == 0:
            continue
        long = [o for o in action.option_strings if o.startswith("--")]
        if action.choices:
            choices.update({o: [str(c) for c in action.choices] for o in long})
        elif action.metavar == "DIR":
            folders.extend(long)
        elif action.metavar == "FILE":
            files.extend(long)
    cases = "".join(
        f"        {option}) COMPREPLY=($(compgen -W '{' '.join(values)}' -- \"$cur\")); "
        "return;;\n"
        for option, values in sorted(choices.items())
    )
    script = f"""# {PROGRAM} completion for {shell} (generated by `{PROGRAM} completion {shell}`)
_irq_checker() {{
    local cur prev
    cur="${{COMP_WORDS[COMP_CWORD]}}"
    prev="${{COMP_WORDS[COMP_CWORD-1]}}"
    if [ "$COMP_CWORD" -eq 1 ] && [[ "$cur" != -* ]]; then
        COMPREPLY=($(compgen -W '{" ".join(SUBCOMMANDS)}' -- "$cur") $(compgen -f -- "$cur"))
        return
    fi
    case "${{COMP_WORDS[1]}}" in
        lint) COMPREPLY=($(compgen -f -X '!*.design' -- "$cur") $(compgen -d -- "$cur")); return;;
        replay) COMPREPLY=($(compgen -f -X '!*.json' -- "$cur") $(compgen -d -- "$cur")); return;;
        completion) COMPREPLY=($(compgen -W 'bash zsh' -- "$cur")); return;;
    esac
    case "$prev" in
{cases}        {"|".join(folders) or "--none"}) COMPREPLY=($(compgen -d -- "$cur")); return;;
        {"|".join(files) or "--none"}) COMPREPLY=($(compgen -f -- "$cur")); return;;
    esac
    if [[ "$cur" == -* ]]; then
        COMPREPLY=($(compgen -W '{" ".join(sorted(set(options)))}' -- "$cur"))
    else
        COMPREPLY=($(compgen -f -X '!*.toml' -- "$cur") $(compgen -d -- "$cur"))
    fi
}}
complete -o filenames -F _irq_checker {PROGRAM}
"""
    if shell == "zsh":
        script = "autoload -U +X bashcompinit && bashcompinit\n" + script
    return script


def main(argv: list[str] | None = None, provider: ModelProvider | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SUBCOMMANDS:
        try:
            return SUBCOMMANDS[argv[0]](argv[1:], provider, load_provider)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
    started = time.monotonic()
    prog = program_name()
    parser = build_parser(prog)
    try:
        settings = config_file.find(argv)
        lists = config_file.apply(parser, settings) if settings is not None else {}
    except CheckerError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_INPUT
    args = parser.parse_args(argv)  # exits 2 on a usage error, as argparse does
    for dest, value in lists.items():  # repeatable options: the command line replaces
        if not getattr(args, dest):
            setattr(args, dest, value)
    args.command = f"{prog} " + shlex.join(argv) if argv else prog
    args.started = started
    try:
        return _run(args, provider)
    except BrokenPipeError:  # `| head`: the reader has seen enough
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
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
    if args.backend == "ray":
        refused = [what for what, on in (
            ("--por (its cycle proviso needs the order states are expanded in, in one "
             "process)", args.por is True),
            ("--require-full-coverage (the Ray shards keep only fingerprints)",
             args.require_full_coverage),
        ) if on]
        if refused:
            raise UsageError("--backend ray: not with " + "; nor ".join(refused))
    elif args.ray_address is not None:
        raise UsageError("--ray-address: only with --backend ray")
    wanted = args.paths or [DEFAULT_PATH]
    paths = find_property_files(wanted)
    if not paths:
        raise UsageError(f"no property files (*.toml) found in {', '.join(wanted)}")
    files, errors = read_files(paths)  # syntax and schema first: no model needed
    if errors:
        _print_errors(errors, args.format)
        return EXIT_INPUT
    if args.list:
        return list_properties(files, args.property, args.format)
    if provider is None:
        provider = load_provider(args.model)
    add_design_paths(provider, args.design_path)
    prepared, load_errors = plan(files, provider, args.property)
    _print_load_errors(prepared.failed, load_errors)  # at once, each once
    bounds = Bounds(args.max_states, args.max_depth, args.timeout_per_exploration)
    options = exploration_options(args, provider)
    color_err = use_color(args.color, sys.stderr)
    progress = ProgressLine(sys.stderr, color_err, quiet=args.quiet)
    interrupts = Interrupts(sys.stderr)
    max_memory = default_max_memory() if args.max_memory is None else args.max_memory or None
    budget = Budget(
        deadline=args.started + args.timeout if args.timeout is not None else None,
        timeout=args.timeout, max_memory=max_memory, interrupted=interrupts,
    )
    want_coverage = args.html or args.format == "json" or args.require_full_coverage
    with interrupts.installed():
        try:
            run = check(prepared.groups, prepared.properties, bounds, progress.for_group,
                        coverage=want_coverage, options=options, failed=prepared.failed,
                        on_results=progress.results,
                        stopping=Stopping(budget, args.exitfirst))
        finally:
            progress.clear()
        code = run.strict_exit_code(args.strict_vacuity)
        if interrupts.reason is not None:
            code = EXIT_INTERRUPTED
        return _report(args, run, code, prepared.failed, color_err)


def _report(
    args: argparse.Namespace, run: RunResult, code: int, failed: Sequence[LoadFailure],
    color_err: bool,
) -> int:
    """Write every report the options ask for, print the run, and close with what went
    wrong; the exit code."""
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
    text = printer(replace(out, exit_code=code,
                           written=out.written if args.format == "text" else ()))
    if args.format == "text" and use_color(args.color, sys.stdout):
        text = colour_text(text)
    sys.stdout.write(text)
    sys.stdout.flush()
    for problem in report_problems:
        print(problem, file=sys.stderr)
    not_loaded = {(p.file, p.name) for f in failed for p in f.group.properties}
    for result in run.results:
        if result.verdict is Verdict.ERROR and (result.prop.file, result.prop.name) not in (
            not_loaded
        ):
            print(f"{result.prop.file}:{result.prop.line}: property '{result.prop.name}': "
                  f"{result.message}", file=sys.stderr)
    if coverage_lines:
        total = sum(len(f["unreached"]) for f in (run_coverage(run.explorations) or {})
                    .get("files", {}).values())
        print(f"--require-full-coverage: {total} source line{'s' if total != 1 else ''} "
              "never reached:", file=sys.stderr)
        for line in coverage_lines:
            print(f"  {line}", file=sys.stderr)
    _print_closing(run, color_err)
    github_input_errors(run.input_errors, os.environ)
    github_report(run, traces, os.environ)
    return code


def _print_load_errors(failed: Sequence[LoadFailure], errors: Sequence[InputError]) -> None:
    """Each load error once, with the properties it cost (a design error shared by several
    groups is one error)."""
    for error in errors:
        props = [
            p for f in failed if str(f.error) == str(error) for p in f.group.properties
        ]
        if len(props) == 1 and props[0].file == error.path:
            prop = props[0]
            print(f"{error.path}:{error.line}: property '{prop.name}': {error.message}",
                  file=sys.stderr)
            continue
        names = ", ".join(f"'{p.name}'" for p in props[:5])
        more = f" and {len(props) - 5} more" if len(props) > 5 else ""
        print(f"{error} (propert{'y' if len(props) == 1 else 'ies'} {names}{more})",
              file=sys.stderr)


def _print_closing(run: RunResult, color: bool) -> None:
    """The closing summary: every unexpected or error property by `file:line name`, and
    why a run stopped early (as pytest's short summary)."""
    bad = [r for r in run.results if not r.ok and r.verdict is not Verdict.INCOMPLETE]
    # (the explorations a stopped run never began: run._stopped's reason)
    not_begun: dict[str, int] = {}
    for e in run.explorations:
        if e.stop_reason and e.stop_reason.startswith("not explored: "):
            reason = e.stop_reason.removeprefix("not explored: ")
            not_begun[reason] = not_begun.get(reason, 0) + len(e.group.properties)
    stopped = sorted(not_begun)
    if not bad and not stopped:
        return
    lines = []
    for reason in stopped:
        count = not_begun[reason]
        lines.append(f"stopped early ({reason}): {count} propert"
                     f"{'y' if count == 1 else 'ies'} not explored (incomplete)")
    for result in bad:
        what = mark(result)
        prop = result.prop
        how = (
            "error" if result.verdict is Verdict.ERROR
            else f"{result.verdict}, expected {prop.expect}"
        )
        lines.append(f"{paint(what, MARKS[what], color)} {prop.file}:{prop.line} {prop.name} "
                     f"({how})")
    if bad:
        lines.insert(len(stopped), f"== {len(bad)} unexpected or error")
    for line in lines:
        print(line, file=sys.stderr)


def list_properties(files: Sequence[PropertyFile], patterns: Sequence[str], fmt: str) -> int:
    """`--list`: the properties, without a model or an exploration."""
    props = select([p for f in files for p in f.properties], patterns)
    if fmt == "json":
        sys.stdout.write(dumps({"version": 1, "properties": [
            {
                "file": p.file, "line": p.line, "name": p.name, "design": p.design,
                "variant": dict(p.variant), "environment": p.environment,
                "kind": str(p.kind), "expr": p.expr.source if p.expr is not None else None,
                "expect": str(p.expect), "description": p.description,
            }
            for p in props
        ]}))
        return EXIT_OK
    rows = [
        (f"{p.file}:{p.line}", p.name, p.design, str(p.kind), f"expect {p.expect}",
         p.variant_text or "-")
        for p in props
    ]
    widths = [max((len(row[i]) for row in rows), default=0) for i in range(5)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False))
              + "  " + row[5])
    print(f"{len(rows)} propert{'y' if len(rows) == 1 else 'ies'} in {len(files)} "
          f"file{'s' if len(files) != 1 else ''}")
    return EXIT_OK


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
