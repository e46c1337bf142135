"""Fixtures shared by the unit tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pypilot import logs


@pytest.fixture
def logged() -> Iterator[list[bytes]]:
    """pypilot's log lines, captured in memory instead of written out."""
    lines: list[bytes] = []
    logs.set_sink(lines.append)
    yield lines
    logs.set_sink(None)
