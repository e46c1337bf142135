"""Fixtures: one pypilot with a control socket shared by a module's read-mostly tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.control.harness import KEEPER, ControlPilot

ENVDUMP = {
    "name": "envdump",
    "exec": ["sh", "-c", 'echo "envdump A=[$CTL_A] B=[$CTL_B] C=[$CTL_C]"'],
    "when": {"source": "never-fires", "once": "healthy"},
}


@pytest.fixture(scope="module")
def pilot() -> Iterator[ControlPilot]:
    with ControlPilot(jobs=[KEEPER, ENVDUMP]) as p:
        yield p
