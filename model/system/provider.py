"""Finds designs (by path, or by name in the design folders) and builds their transition
systems; lints design files."""

from __future__ import annotations

import dataclasses
import itertools
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from checker.errors import InputError, ModelInputError
from model.lang.parser import design_knobs, parse_design
from model.system.transition import PER_CPU_BUDGETS, DesignSystem, Environment

DESIGNS_DIR = Path(__file__).resolve().parent.parent / "designs"
DESIGN_SUFFIX = ".design"

# environment key -> (type, description)
ENVIRONMENT_KEYS: dict[str, tuple[type, str]] = {
    "nmi": (int, "NMIs the platform may raise, per CPU (or a list: one budget per CPU)"),
    "mce": (int, "machine checks the platform may raise, per CPU (or a list: one budget per CPU)"),
    "external": (int, "external interrupts the LAPIC may deliver, per CPU"),
    "external_vectors": (list, "the vectors those interrupts may carry"),
    "double_faults": (int, "double faults the environment may raise at a boundary, per CPU"),
    "faults": (int, "how many steps marked @fault(#X) may fault, in all"),
    "cpus": (int, "the number of CPUs (default: the design's `cpus`)"),
    "quiet_without_idt": (
        bool,
        "no NMI or #MC while a CPU's IDTR is empty (the boot critical region)",
    ),
    "symbolic": (list, "inputs (declared with `input` in the design) that are symbolic values"),
    "pic": (bool, "external interrupts come from a legacy 8259 PIC (any vector, even 0-15)"),
    "breakpoints": (list, "debug registers armed on every CPU, each as a design's `breakpoint` "
                    "line: \"rw user_ss\", \"exec lstar_stub\""),
    "single_step": (bool, "every CPU starts with RFLAGS.TF set (the single-step trap)"),
    "unwritten_unknown": (bool, "a CPU with no TR loaded reads RSP0/IST from the reset TR's "
                          "TSS at linear 0: words the design never wrote there are unknown "
                          "values, every one explored; false assumes they read 0 (one "
                          "answer, cheaper)"),
    "fmask_tf_either": (bool, "IA32_FMASK.TF is unknown: each CPU starts with it set in one "
                        "initial state and clear in another (both explored), the rest of "
                        "FMASK as the design's `fmask` says"),
}


class DesignProvider:
    """The `checker.interface.ModelProvider` of this package.

    A design is named either by a path to its `.design` file (the property-file reader
    has already resolved it against the property file's folder) or by a name, looked up
    as NAME.design in the folders added with `add_design_path` (`--design-path`), in
    order, and then in the package's model/designs."""

    def __init__(self, directory: Path = DESIGNS_DIR, search: Sequence[Path] = ()):
        self.directory = directory
        self.search: list[Path] = list(search)

    def add_design_path(self, folder: Path) -> None:
        """Look for designs by name in `folder` too (before the package's own)."""
        self.search.append(folder)

    def folders(self) -> list[Path]:
        return [*self.search, self.directory]

    def designs(self) -> Sequence[str]:
        return sorted({
            p.name[: -len(DESIGN_SUFFIX)]
            for folder in self.folders() for p in folder.glob("*" + DESIGN_SUFFIX)
        })

    def path_of(self, design: str) -> Path:
        if is_design_path(design):
            path = Path(design)
            if path.suffix != DESIGN_SUFFIX:
                raise ModelInputError(
                    f"design file {design!r} must end in {DESIGN_SUFFIX}", "design"
                )
            if not _is_file(path):
                raise ModelInputError(f"no design file {design!r}", "design")
            return path
        for folder in self.folders():
            path = folder / (design + DESIGN_SUFFIX)
            if _is_file(path):
                return path
        known = ", ".join(self.designs()) or "none"
        where = ", ".join(_display_path(f).as_posix() for f in self.folders())
        raise ModelInputError(
            f"unknown design {design!r} (designs: {known}; searched {where})", "design"
        )

    def load(
        self, design: str, variant: Mapping[str, str], environment: Mapping[str, Any]
    ) -> DesignSystem:
        env = environment_of(environment)
        parsed = parse_design(_display_path(self.path_of(design)), variant)
        return DesignSystem(parsed, env)

    def lint(self, path: str) -> list[InputError]:
        """Every error `path` shows, without exploring: the design is parsed and laid out
        (its initial states built) in every variant when there are at most
        `LINT_VARIANTS` of them, else in the default variant and with each knob value
        once. The parser stops at a variant's first error; each error is listed once,
        naming the variants it shows in unless the default variant shows it too."""
        shown = _display_path(Path(path))
        try:
            _, knobs = design_knobs(shown)
        except OSError as exc:
            return [InputError(f"cannot read design: {exc.strerror or exc}", str(shown))]
        except InputError as exc:
            return [exc]
        errors: dict[tuple[str | None, int | None, str], tuple[InputError, list[str]]] = {}
        for number, variant in enumerate(lint_variants(knobs)):
            try:
                system = DesignSystem(parse_design(shown, variant), Environment())
                system.init_states()
            except InputError as exc:
                found = exc
            except ModelInputError as exc:
                found = InputError(exc.message, str(shown))
            except Exception as exc:  # a model bug: still one line, no traceback
                found = InputError(
                    f"the model failed to lay out the design: {type(exc).__name__}: {exc}",
                    str(shown),
                )
            else:
                continue
            key = (found.path, found.line, found.message)
            text = ",".join(f"{k}={v}" for k, v in variant.items())
            if key not in errors:
                errors[key] = (found, [])
            if number > 0:  # the default variant's errors need no note
                errors[key][1].append(text)
            else:
                errors[key] = (found, ["default"])
        out = []
        for found, variants in errors.values():
            if variants and "default" not in variants:
                note = "; ".join(variants[:4]) + ("; ..." if len(variants) > 4 else "")
                found = InputError(f"{found.message} (variant {note})", found.path, found.line)
            out.append(found)
        return out


LINT_VARIANTS = 64  # lint every knob combination up to this many, else each value once


def lint_variants(knobs: Mapping[str, tuple[str, ...]]) -> list[dict[str, str]]:
    """The variants `lint` lays out: the default first."""
    default = {k: values[0] for k, values in knobs.items()}
    combos = 1
    for values in knobs.values():
        combos *= len(values)
    if combos <= LINT_VARIANTS:
        return [dict(zip(knobs, vs, strict=True)) for vs in itertools.product(*knobs.values())]
    out = [default]
    for knob, values in knobs.items():
        out.extend({**default, knob: v} for v in values[1:])
    return out


def _is_file(path: Path) -> bool:
    """`path.is_file()`, false too for a name the system refuses (too long, ...)."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def is_design_path(design: str) -> bool:
    """A design named by a path rather than a name: it has a `/` or a file extension
    (names are words: `xen_ist`)."""
    return "/" in design or "\\" in design or "." in Path(design).name


def _display_path(path: Path) -> Path:
    """Relative to the working directory when below it, so messages and traces read
    `model/designs/xen_ist.design:42` as a user would write it; else absolute."""
    absolute = Path(os.path.abspath(path))
    try:
        return absolute.relative_to(Path.cwd())
    except ValueError:
        return absolute


def environment_of(environment: Mapping[str, Any]) -> Environment:
    values: dict[str, Any] = {}
    for key, value in environment.items():
        if key not in ENVIRONMENT_KEYS:
            known = ", ".join(sorted(ENVIRONMENT_KEYS))
            raise ModelInputError(
                f"unknown environment key {key!r} (keys: {known})", f"environment.{key}"
            )
        kind, _ = ENVIRONMENT_KEYS[key]
        if key in PER_CPU_BUDGETS and isinstance(value, list):
            # One budget per CPU: `nmi = [1, 0, 0]` lets only CPU 0 take an NMI.
            if not value or not all(
                isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value
            ):
                raise ModelInputError(
                    f"environment.{key} must be a non-negative integer or a list of them, "
                    "one per CPU",
                    f"environment.{key}",
                )
            values[key] = tuple(value)
            continue
        if kind is bool and not isinstance(value, bool):
            raise ModelInputError(f"environment.{key} must be true or false", f"environment.{key}")
        if kind is int and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
            raise ModelInputError(
                f"environment.{key} must be a non-negative integer", f"environment.{key}"
            )
        if key in ("symbolic", "breakpoints"):
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                what = "input names" if key == "symbolic" else "breakpoint lines"
                raise ModelInputError(
                    f"environment.{key} must be a list of {what}", f"environment.{key}"
                )
            values[key] = tuple(value)
            continue
        if kind is list:
            if not isinstance(value, list) or not all(
                isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in value
            ):
                raise ModelInputError(
                    f"environment.{key} must be a list of vectors 0-255", f"environment.{key}"
                )
            value = tuple(value)
        if key == "cpus" and not 1 <= value <= 16:
            raise ModelInputError("environment.cpus must be between 1 and 16", "environment.cpus")
        values[key] = value
    # Written, and every event budget 0: a property meant to hold without events.
    values["events_off"] = any(k in environment for k in EVENT_BUDGETS) and all(
        v == 0 for k in EVENT_BUDGETS for v in _budgets(values.get(k, 0))
    )
    return Environment(**values)


# The budgets of asynchronous events (the vacuity check: `nmi = 0` written turns it off).
EVENT_BUDGETS = ("nmi", "mce", "external")


def _budgets(value: int | tuple[int, ...]) -> tuple[int, ...]:
    return value if isinstance(value, tuple) else (value,)


def environment_markdown() -> str:
    """The environment table of docs/properties.md, from ENVIRONMENT_KEYS and the defaults
    of `Environment` (tests/test_vacuity.py checks the docs say exactly this)."""
    defaults = {f.name: f.default for f in dataclasses.fields(Environment)}
    lines = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for key, (kind, doc) in ENVIRONMENT_KEYS.items():
        default = defaults[key]
        if key == "cpus":
            shown = "the design's `cpus`"
        elif isinstance(default, bool):
            shown = "`" + str(default).lower() + "`"
        elif default == ():
            shown = "`[]`"
        else:
            shown = f"`{default}`"
        type_name = {int: "integer", bool: "boolean", list: "list"}[kind]
        if key in PER_CPU_BUDGETS:
            type_name = "integer, or a list of integers (one per CPU)"
        lines.append(f"| `{key}` | {type_name} | {shown} | {doc} |")
    return "\n".join(lines) + "\n"
