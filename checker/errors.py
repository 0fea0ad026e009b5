"""The checker's exception hierarchy.

Every error a user can cause by what they wrote is an `InputError` carrying the file and
line; the CLI prints it as `path:line: message` and exits 2, never with a traceback.
"""

from __future__ import annotations


class CheckerError(Exception):
    """Base of every error the checker raises on purpose."""


class InputError(CheckerError):
    """Bad input in a file the user wrote (property file, design file)."""

    def __init__(self, message: str, path: str | None = None, line: int | None = None):
        super().__init__(message)
        self.message = message
        self.path = path
        self.line = line

    def __str__(self) -> str:
        where = ""
        if self.path is not None:
            where = f"{self.path}:{self.line}: " if self.line is not None else f"{self.path}: "
        return f"{where}{self.message}"


class ModelInputError(CheckerError):
    """A model rejected a design, variant or environment setting.

    `key` names what was wrong (`design`, `variant.ist`, `environment.nmi`) so that the
    property-file reader can point at the line that set it.
    """

    def __init__(self, message: str, key: str):
        super().__init__(message)
        self.message = message
        self.key = key


class UsageError(CheckerError):
    """Bad command-line usage (exit 2)."""
