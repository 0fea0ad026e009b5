"""Set-up shared by the CI-gate tests (issue 15): property files written into a tmp folder
and the mutex property file most of them run."""

from __future__ import annotations

import textwrap
from pathlib import Path

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
