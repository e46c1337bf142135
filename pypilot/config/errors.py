"""The config error type and the collector that gives both first-error and every-error validation.

ContainerPilot stops at the first error (``load``); ``pypilot -validate`` wants them all (``validate_all``).
The decoders report through a ``Collector``: in first-error mode ``add`` raises at once, so both modes run
the same code in the same order and the first message of ``validate_all`` is always what ``load`` raises.
Warnings (accepted, but probably not what was meant: a key in the wrong case) are only collected.
"""

from __future__ import annotations

__all__ = ["Collector", "ConfigError"]


class ConfigError(Exception):
    """A config that cannot be used; the message names the field or position (CP's wording)."""

    def __init__(self, message: str, errors: list[str] | None = None) -> None:
        super().__init__(message)
        self.errors = errors if errors is not None else [message]


class _Stop(Exception):
    """Internal: the first error in first-error mode."""


class Collector:
    def __init__(self, first: bool) -> None:
        self.first = first
        self.errors: list[str] = []
        self.warnings: list[str] = []

    def add(self, message: str) -> None:
        self.errors.append(message)
        if self.first:
            raise _Stop

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    def __len__(self) -> int:
        return len(self.errors)
