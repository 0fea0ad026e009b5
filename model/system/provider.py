"""Finds designs by name under model/designs and builds their transition systems."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from checker.errors import ModelInputError
from model.lang.parser import parse_design
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
}


class DesignProvider:
    """The `checker.interface.ModelProvider` of this package."""

    def __init__(self, directory: Path = DESIGNS_DIR):
        self.directory = directory

    def designs(self) -> Sequence[str]:
        return sorted(
            p.name[: -len(DESIGN_SUFFIX)] for p in self.directory.glob("*" + DESIGN_SUFFIX)
        )

    def path_of(self, design: str) -> Path:
        path = self.directory / (design + DESIGN_SUFFIX)
        if not path.is_file():
            known = ", ".join(self.designs()) or "none"
            raise ModelInputError(f"unknown design {design!r} (designs: {known})", "design")
        return path

    def load(
        self, design: str, variant: Mapping[str, str], environment: Mapping[str, Any]
    ) -> DesignSystem:
        env = environment_of(environment)
        parsed = parse_design(_display_path(self.path_of(design)), variant)
        return DesignSystem(parsed, env)


def _display_path(path: Path) -> Path:
    """Relative to the working directory when below it, so messages and traces read
    `model/designs/xen_ist.design:42` as a user would write it."""
    try:
        return path.relative_to(Path.cwd())
    except ValueError:
        return path


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
        if key == "symbolic":
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ModelInputError(
                    "environment.symbolic must be a list of input names", "environment.symbolic"
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
    return Environment(**values)
