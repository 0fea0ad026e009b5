"""The interrupt/exception machine: x86 semantics, the design language, the designs."""

from __future__ import annotations

from checker.interface import ModelProvider


def provider() -> ModelProvider:
    """The provider the CLI loads designs through."""
    from model.system.provider import DesignProvider

    return DesignProvider()
