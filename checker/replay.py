"""`python -m checker replay TRACE`: re-run a stored counterexample against today's design.

A trace file (`.json` or `.itf.json`, as `python -m checker` writes them) carries a
`replay` record: the design, variant and environment the trace was found with, the
property (kind and expression), and each step's action as the model's `action_key`
(stable across design edits), its label and actor, and its index among the enabled
actions. Replay loads the system afresh, takes the same actions step by step and says
whether the trace still reproduces:

- a step's action is looked up by its key when both the trace and the model have keys,
  else by its label and actor (CPU), else by its index; when none is enabled, the trace
  "no longer reproduces at step K";
- at the end (or earlier, for always/never/reachable) the property must still fail as
  it did: `never EXPR` needs EXPR true, `always EXPR` false, a `reachable` witness EXPR
  true, `final EXPR` a state without actions where EXPR is false, `deadlock_free` a
  non-terminal state without actions.
- a lasso (`eventually`, `leads_to`; its record has `loop_start`, `to` and the fairness)
  must still close its loop (or stutter in a state without actions), still owe the
  property all along it, and its loop must still be fair (`replay_lasso`).

Exit codes: 0 the trace still reproduces, 1 it no longer does, 2 bad input (an unreadable
or malformed trace file, a design or model that rejects the recorded settings).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from checker.errors import CheckerError, InputError, ModelInputError, UsageError
from checker.expr import ExprError, compile_expr
from checker.interface import (
    ModelProvider,
    TransitionSystem,
    capabilities,
    describe_action,
    require_core,
)
from checker.liveness import actor_of, fairness_for, unfair_actor
from checker.rules import decides, final_violated
from checker.spec import FAIRNESS, MAX_DIGITS, Property, deepest_line, first_line, is_path
from checker.trace import graph_steps, loop_start
from checker.verdict import EXIT_INPUT, Kind, Verdict

if TYPE_CHECKING:
    import networkx as nx

REPLAY_FORMAT = 1
EXIT_REPRODUCES = 0
EXIT_GONE = 1
STEP_FIELDS = ("key", "label", "cpu", "actor", "choice")


def replay_record(prop: Property, verdict: Verdict, graph: nx.DiGraph) -> dict[str, Any]:
    """What `replay` needs to re-run a trace, as stored in its trace files."""
    steps = []
    for _, edge in graph_steps(graph)[1:]:
        assert edge is not None
        steps.append({k: edge[k] for k in STEP_FIELDS if k in edge})
    choices = str(graph.graph.get("choices", "")).split()
    return {
        "format": REPLAY_FORMAT,
        "property": prop.name,
        "file": prop.file,
        "line": prop.line,
        "design": prop.design,
        # a design named by a path: where it was, for a replay from another folder
        **({"design_file": os.path.abspath(prop.design)} if is_path(prop.design) else {}),
        "variant": dict(prop.variant),
        "environment": dict(prop.environment),
        "kind": str(prop.kind),
        "expr": prop.expr.source if prop.expr is not None else None,
        "expected": str(prop.expect),
        "verdict": str(verdict),
        "init": int(choices[0]) if choices else 0,
        "steps": steps,
        **_liveness_record(prop, graph),
    }


def _liveness_record(prop: Property, graph: nx.DiGraph) -> dict[str, Any]:
    """A lasso's loop and the property's conclusion and fairness (liveness kinds)."""
    if not prop.kind.liveness:
        return {}
    return {
        "to": prop.to.source if prop.to is not None else None,
        "fairness": prop.fairness,
        "strong_fairness": list(prop.strong_fairness),
        "loop_start": loop_start(graph),
    }


class TraceFileError(CheckerError):
    """A trace file that cannot be replayed (unreadable, or without a replay record)."""


def read_replay_record(path: str | Path) -> dict[str, Any]:
    """The replay record of a `.json` or `.itf.json` trace file."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise TraceFileError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise TraceFileError(f"{path}:{line}: not a JSON trace file (not valid UTF-8)") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TraceFileError(f"{path}:{exc.lineno}: not a JSON trace file ({exc.msg})") from None
    except RecursionError:
        raise TraceFileError(
            f"{path}:{deepest_line(text)}: not a JSON trace file (nested too deeply)"
        ) from None
    except ValueError:  # an integer beyond Python's digit limit
        number = first_line(text, _LONG_NUMBER) or 1
        raise TraceFileError(f"{path}:{number}: not a JSON trace file (an integer with more than "
                             f"{MAX_DIGITS} digits)") from None
    record: Any = None
    if isinstance(data, dict):
        record = data.get("replay")
        if record is None and isinstance(data.get("#meta"), dict):
            record = data["#meta"].get("replay")
    if not isinstance(record, dict):
        raise TraceFileError(
            f"{path}:1: no replay record (give the .json or .itf.json trace file that "
            "`python -m checker` wrote)"
        )
    if record.get("format") != REPLAY_FORMAT:
        raise TraceFileError(
            f"{_at(path, text, 'format')}: unknown replay record format {record.get('format')!r}"
        )
    problems = [
        key for key, kind in (
            ("design", str), ("variant", dict), ("environment", dict), ("kind", str),
            ("steps", list), ("init", int),
        ) if not isinstance(record.get(key), kind)
    ]
    if problems:
        raise TraceFileError(
            f"{_at(path, text, problems[0])}: malformed replay record ({', '.join(problems)})"
        )
    if record["kind"] not in {k.value for k in Kind}:
        raise TraceFileError(f"{_at(path, text, 'kind')}: unknown property kind {record['kind']!r}")
    if Kind(record["kind"]).needs_expr and not isinstance(record.get("expr"), str):
        raise TraceFileError(f"{_at(path, text, 'expr')}: the replay record has no expression")
    if Kind(record["kind"]).liveness:
        loop = record.get("loop_start")
        bad = [
            key for key, ok in (
                ("loop_start", isinstance(loop, int) and not isinstance(loop, bool)
                 and 0 <= loop <= len(record["steps"])),
                ("to", record["kind"] != Kind.LEADS_TO or isinstance(record.get("to"), str)),
                ("fairness", record.get("fairness", "weak") in FAIRNESS),
                ("strong_fairness", isinstance(record.get("strong_fairness", []), list)
                 and all(isinstance(p, str) for p in record.get("strong_fairness", []))),
            ) if not ok
        ]
        if bad:
            raise TraceFileError(
                f"{_at(path, text, bad[0])}: malformed replay record of a lasso ({bad[0]})"
            )
    for number, step in enumerate(record["steps"], start=1):
        if not isinstance(step, dict) or not all(
            field not in step or isinstance(step[field], kind)
            for field, kind in (("key", str), ("label", str), ("choice", int))
        ):
            raise TraceFileError(
                f"{_at(path, text, 'steps')}: step {number} of the replay record is malformed"
            )
    if not _shallow(record):
        raise TraceFileError(
            f"{path}:{deepest_line(text)}: the replay record nests more than {MAX_DEPTH} "
            f"deep, or holds a string longer than {MAX_TEXT} characters"
        )
    return record


MAX_DEPTH = 32  # arrays and objects nested in a replay record
MAX_TEXT = 4096  # characters in one of its strings (a design name, a label, an expression)
_LONG_NUMBER = re.compile(f"[0-9]{{{MAX_DIGITS},}}")  # JSON: no `_` between digits


def _text_of(path: str | Path) -> str:
    """The trace file's text, to point at lines (it was read once already)."""
    try:
        return Path(path).read_bytes().decode("utf-8", "replace")
    except OSError:
        return ""


def _at(path: str | Path, text: str, key: str) -> str:
    """`path:line` of the first line that names `key` (a JSON member), else line 1."""
    needle = json.dumps(key) + ":"
    for number, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return f"{path}:{number}"
    return f"{path}:1"


def _shallow(value: Any) -> bool:
    """No container nested deeper than MAX_DEPTH, no string longer than MAX_TEXT."""
    pending: list[tuple[Any, int]] = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if depth > MAX_DEPTH or (isinstance(item, str) and len(item) > MAX_TEXT):
            return False
        if isinstance(item, dict):
            pending.extend((k, depth + 1) for k in item)
            pending.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            pending.extend((v, depth + 1) for v in item)
    return True


class MatchedBy(StrEnum):
    """How a recorded step found its action among the enabled ones."""

    KEY = "key"  # the model's action_key
    LABEL = "label"  # its label and actor
    INDEX = "index"  # its position among the enabled actions


@dataclass
class StepReport:
    step: int
    label: str  # the action's label now
    recorded: str | None  # its label in the trace
    matched_by: MatchedBy


@dataclass
class ReplayResult:
    reproduces: bool
    message: str
    at_step: int | None  # where it stopped reproducing, or where the property failed
    steps: list[StepReport] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return EXIT_REPRODUCES if self.reproduces else EXIT_GONE


def _find(
    system: TransitionSystem[Any, Any],
    state: Any,
    enabled: Sequence[Any],
    recorded: Mapping[str, Any],
) -> tuple[int | None, MatchedBy]:
    """Index of the enabled action the recorded step names, and how it was found."""
    key = recorded.get("key")
    label = recorded.get("label")
    choice = recorded.get("choice")
    keyed = capabilities(system).action_keyed
    if isinstance(key, str) and keyed is not None:
        matches = [i for i, a in enumerate(enabled) if keyed.action_key(state, a) == key]
        if len(matches) > 1:  # a key shared by several actions: the label, then the index
            same = [i for i in matches
                    if describe_action(system, state, enabled[i]).get("label") == label]
            matches = same or matches
        if not matches:
            return None, MatchedBy.KEY
        return (choice if choice in matches else matches[0]), MatchedBy.KEY
    if isinstance(label, str):
        matches = []
        for index, action in enumerate(enabled):
            attrs = describe_action(system, state, action)
            if attrs.get("label") != label:
                continue
            if any(f in recorded and attrs.get(f) != recorded[f] for f in ("cpu", "actor")):
                continue
            matches.append(index)
        if not matches:
            return None, MatchedBy.LABEL
        return (choice if choice in matches else matches[0]), MatchedBy.LABEL
    if isinstance(choice, int) and 0 <= choice < len(enabled):
        return choice, MatchedBy.INDEX
    return None, MatchedBy.INDEX


def _describe(recorded: Mapping[str, Any]) -> str:
    parts = []
    if "label" in recorded:
        parts.append(repr(recorded["label"]))
    if "key" in recorded:
        parts.append(f"key {recorded['key']}")
    if not parts and "choice" in recorded:
        parts.append(f"choice {recorded['choice']}")
    return " ".join(parts) or "?"


def _initial(
    system: TransitionSystem[Any, Any], record: Mapping[str, Any]
) -> Any | ReplayResult:
    """The recorded trace's initial state, or why it no longer reproduces."""
    inits = system.init_states()
    first = record["init"]
    if not 0 <= first < len(inits):
        return ReplayResult(
            False, f"no longer reproduces at step 0: the system has {len(inits)} initial "
            f"state(s), the trace starts from #{first}", 0,
        )
    return inits[first]


def _take(
    system: TransitionSystem[Any, Any], state: Any, enabled: Sequence[Any],
    recorded: Mapping[str, Any], number: int, reports: list[StepReport],
) -> Any | ReplayResult:
    """The enabled action recorded step `number` names (its report appended to
    `reports`), or why it no longer reproduces."""
    index, how = _find(system, state, enabled, recorded)
    if index is None:
        return ReplayResult(
            False,
            f"no longer reproduces at step {number}: the action {_describe(recorded)} "
            f"is not enabled ({len(enabled)} action(s) are)",
            number, reports,
        )
    action = enabled[index]
    label = str(describe_action(system, state, action).get("label", action))
    reports.append(StepReport(number, label, recorded.get("label"), how))
    return action


def replay_trace(system: TransitionSystem[Any, Any], record: Mapping[str, Any]) -> ReplayResult:
    """Re-run a replay record against `system` (see the module docstring)."""
    require_core(system)
    kind = Kind(record["kind"])
    if kind.liveness:
        return replay_lasso(system, record)
    predicate = None
    if kind.needs_expr:
        try:
            predicate = compile_expr(record["expr"])
        except ExprError as exc:
            raise TraceFileError(f"the recorded expression is not valid: {exc}") from None
        try:
            predicate.check_names(system.vocabulary_names())
        except ExprError as exc:
            return ReplayResult(
                False, f"the design no longer provides what the property reads: {exc}", 0
            )
    symbolic = capabilities(system).symbolic

    def fails(state: Any) -> bool:
        """The property fails in `state` as it did in the trace (on discovery kinds):
        judged by the explorer's rules, a symbolic value by the model's solver."""
        assert predicate is not None
        return decides(kind, state, predicate.evaluate(system.vocabulary(state)), symbolic)

    state = _initial(system, record)
    if isinstance(state, ReplayResult):
        return state
    reports: list[StepReport] = []
    steps: Sequence[Mapping[str, Any]] = record["steps"]
    if kind.checked_on_discovery and fails(state):
        return _reproduced(kind, 0, len(steps), reports)
    for number, recorded in enumerate(steps, start=1):
        enabled = system.actions(state)
        action = _take(system, state, enabled, recorded, number, reports)
        if isinstance(action, ReplayResult):
            return action
        state = system.next_state(state, action)
        if kind.checked_on_discovery and fails(state):
            return _reproduced(kind, number, len(steps), reports)
    end = len(steps)
    if kind.checked_on_discovery:
        return ReplayResult(
            False, f"no longer reproduces at step {end}: the trace runs to its end but the "
            f"property no longer {'finds its witness' if kind is Kind.REACHABLE else 'fails'}",
            end, reports,
        )
    if system.actions(state):
        return ReplayResult(
            False, f"no longer reproduces at step {end}: the last state has enabled actions "
            "now", end, reports,
        )
    if kind is Kind.FINAL:
        assert predicate is not None
        bad = final_violated(state, predicate.evaluate(system.vocabulary(state)), symbolic)
    else:
        bad = not system.is_terminal(state)
    if bad:
        return _reproduced(kind, end, end, reports)
    what = "satisfies the expression" if kind is Kind.FINAL else "is terminal"
    return ReplayResult(
        False, f"no longer reproduces at step {end}: the final state now {what}", end, reports
    )


def replay_lasso(system: TransitionSystem[Any, Any], record: Mapping[str, Any]) -> ReplayResult:
    """Re-run a lasso (a liveness counterexample): its steps must still be enabled, the
    loop must still close (its last state is the loop's first again, or a state without
    actions when it stutters), the obligation must stay owed along it (`eventually P`: P
    false everywhere; `P leads_to Q`: P true and Q false at some state up to the loop,
    and Q false from there on) and the loop must still be fair (checker.liveness)."""
    kind = Kind(record["kind"])
    try:
        premise = compile_expr(record["expr"])
        conclusion = compile_expr(record["to"]) if kind is Kind.LEADS_TO else None
    except ExprError as exc:
        raise TraceFileError(f"the recorded expression is not valid: {exc}") from None
    for expr in (premise, conclusion):
        if expr is None:
            continue
        try:
            expr.check_names(system.vocabulary_names())
        except ExprError as exc:
            return ReplayResult(
                False, f"the design no longer provides what the property reads: {exc}", 0
            )
    state = _initial(system, record)
    if isinstance(state, ReplayResult):
        return state
    actor = actor_of(system)
    fairness, text = fairness_for(
        system, record.get("fairness", "weak"), record.get("strong_fairness", [])
    )
    states = [state]
    enabled_actors: list[set[int]] = []
    taken: list[int] = []
    reports: list[StepReport] = []
    steps: Sequence[Mapping[str, Any]] = record["steps"]
    for number, recorded in enumerate(steps, start=1):
        enabled = system.actions(state)
        action = _take(system, state, enabled, recorded, number, reports)
        if isinstance(action, ReplayResult):
            return action
        enabled_actors.append({actor(state, a) for a in enabled})
        taken.append(actor(state, action))
        state = system.next_state(state, action)
        states.append(state)
    end = len(steps)
    loop = int(record["loop_start"])
    if loop < end and states[loop] != states[-1]:
        return ReplayResult(
            False, f"no longer reproduces at step {end}: the loop no longer closes (the last "
            f"state is not state {loop} again)", end, reports,
        )
    if loop == end and system.actions(state):
        return ReplayResult(
            False, f"no longer reproduces at step {end}: the last state has enabled actions "
            "now (it no longer stutters forever)", end, reports,
        )
    vocab = [system.vocabulary(s) for s in states]
    p = [bool(premise.evaluate(v)) for v in vocab]
    if conclusion is None:
        owed_from = 0 if not any(p) else None
        broken = p.index(True) if any(p) else None
    else:
        q = [bool(conclusion.evaluate(v)) for v in vocab]
        last_q = max((i for i, x in enumerate(q) if x), default=-1)
        # the obligation must start at or after the last state where Q holds
        owed_from = next((i for i in range(last_q + 1, loop + 1) if p[i]), None)
        broken = last_q if last_q >= loop else None
    if owed_from is None:
        what = ("the expression holds at step " + str(broken) if conclusion is None
                else "the `to` expression holds in the loop" if broken is not None
                else "no state up to the loop owes the `to` expression")
        return ReplayResult(
            False, f"no longer reproduces: {what}", broken if broken is not None else end,
            reports,
        )
    unfair = unfair_actor(fairness, enabled_actors[loop:], set(taken[loop:]))
    if unfair is not None:
        names = capabilities(system).fair
        name = list(names.actor_names())[unfair] if names is not None else str(unfair)
        return ReplayResult(
            False, f"no longer reproduces: the loop is not fair to {name} (assuming {text})",
            end, reports,
        )
    shape = (f"the loop from step {loop} closes" if loop < end
             else f"state {loop} stutters forever")
    return ReplayResult(
        True, f"reproduces: {shape} and the property is never discharged (assuming {text})",
        end, reports,
    )


def _reproduced(kind: Kind, at: int, length: int, reports: list[StepReport]) -> ReplayResult:
    what = "the witness is reached" if kind is Kind.REACHABLE else "the property fails"
    where = f"at step {at}" + (f" (of {length}: earlier than recorded)" if at < length else "")
    return ReplayResult(True, f"reproduces: {what} {where}", at, reports)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m checker replay",
        description="Re-run a stored counterexample or witness against the current design.",
        epilog="Exit codes: 0 the trace still reproduces, 1 it no longer does, 2 bad input.",
    )
    parser.add_argument("trace", metavar="TRACE",
                        help="a trace file written by `python -m checker` (.json or .itf.json)")
    parser.add_argument("--format", choices=("text", "json"), default="text",
                        help="output format on stdout (default text)")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="print every step and how its action was found")
    parser.add_argument("--design-path", action="append", default=[], metavar="DIR",
                        help="also look for the recorded design (a name) in DIR (repeatable)")
    parser.add_argument("--model", default="model:provider", metavar="PACKAGE:FACTORY",
                        help="the model the trace was found with (default model:provider)")
    return parser


def recorded_design(record: Mapping[str, Any]) -> str:
    """The design to load: a recorded path that no longer resolves from the working
    directory is taken from where it was when the trace was written."""
    design = str(record["design"])
    stored = record.get("design_file")
    if is_path(design) and not _is_file(design) and isinstance(stored, str):
        return stored
    return design


def _is_file(path: str) -> bool:
    try:
        return Path(path).is_file()
    except (OSError, ValueError):  # a name the system refuses (too long, a NUL)
        return False


def main(argv: Sequence[str], provider: ModelProvider | None,
         load_provider: Any = None) -> int:
    args = build_parser().parse_args(list(argv))
    try:
        record = read_replay_record(args.trace)
        if provider is None:
            provider = load_provider(args.model) if load_provider is not None else None
        if provider is None:
            raise UsageError("no model provider")
        if args.design_path:
            from checker.cli import add_design_paths  # the CLI imports this module

            add_design_paths(provider, args.design_path)
        text = _text_of(args.trace)
        try:
            system = provider.load(
                recorded_design(record), record["variant"], record["environment"]
            )
        except ModelInputError as exc:
            where = _at(args.trace, text, exc.key.rpartition(".")[2])
            raise TraceFileError(
                f"{where}: the model rejects the recorded {exc.key}: {exc.message}"
            ) from None
        except CheckerError:
            raise  # a design-file error names its own file and line
        except Exception as exc:  # a model bug: still one line, no traceback
            raise TraceFileError(
                f"{_at(args.trace, text, 'design')}: the model failed to load the recorded "
                f"design: {type(exc).__name__}: {exc}"
            ) from None
        try:
            result = replay_trace(system, record)
        except TraceFileError as exc:
            raise TraceFileError(f"{_at(args.trace, text, 'expr')}: {exc}") from None
        except CheckerError:
            raise
        except Exception as exc:  # the model failed on a replayed step
            raise CheckerError(
                f"{_at(args.trace, text, 'steps')}: the model raised {type(exc).__name__}: {exc}"
            ) from None
    except InputError as exc:  # a design-file error names its own file and line
        print(str(exc), file=sys.stderr)
        return EXIT_INPUT
    except CheckerError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_INPUT
    name = f"{record.get('file', '?')}: {record.get('property', '?')}"
    if args.format == "json":
        out = {
            "trace": args.trace,
            "property": record.get("property"),
            "file": record.get("file"),
            "reproduces": result.reproduces,
            "at_step": result.at_step,
            "message": result.message,
            "exit_code": result.exit_code,
            "steps": [
                {"step": s.step, "label": s.label, "recorded": s.recorded,
                 "matched_by": str(s.matched_by)}
                for s in result.steps
            ],
        }
        sys.stdout.write(json.dumps(out, indent=2) + "\n")
        return result.exit_code
    lines = [f"{name} ({record['kind']} {record.get('expr') or ''}".rstrip() + ")"]
    if args.verbose:
        for s in result.steps:
            note = (
                f"   (recorded: {s.recorded})" if s.recorded is not None and s.recorded != s.label
                else ""
            )
            lines.append(f"  {s.step}. {s.label}  [by {s.matched_by}]{note}")
    else:
        changed = [s for s in result.steps if s.recorded is not None and s.recorded != s.label]
        if changed:
            lines.append(f"  {len(changed)} step(s) now run different code (-v shows them)")
    lines.append(result.message)
    sys.stdout.write("\n".join(lines) + "\n")
    return result.exit_code
