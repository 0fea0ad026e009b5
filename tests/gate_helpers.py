"""Set-up shared by the CI-gate and report tests (issue 15): property files written into
a tmp folder, the mutex property file most of them run, a run read back as JSON."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

from toy_models import ToyProvider

from checker import cli

# A counters property expected to hold that does not (a FAIL with a trace).
WRONG = """\
design = "counters"
environment = { k = 2, n = 3 }

[[property]]
name = "wrong"
kind = "always"
expr = "total <= 2"
expect = "holds"
"""


MUTEX = """\
design = "mutex"

[[property]]
name = "exclusion"
kind = "always"
expr = "in_critical <= 1"
expect = "holds"

[[property]]
name = "no-lock"
kind = "always"
expr = "in_critical <= 1"
expect = "violated"
variant = { lock = "no" }
"""


def write(folder: Path, name: str, text: str) -> Path:
    """Write `text` (dedented) to folder/name, creating the folders on the way."""
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def run_json(capsys: Any, *args: str, provider: Any = None) -> tuple[int, dict[str, Any], str]:
    """Run the checker with --format json (the toy models by default): exit code, the
    JSON it printed, its stderr."""
    code = cli.main([*args, "--format", "json"],
                    provider if provider is not None else ToyProvider())
    out, err = capsys.readouterr()
    return code, json.loads(out), err
