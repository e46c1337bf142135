"""Fixtures: one pypilot with a control socket shared by a module's read-mostly tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.control.harness import KEEPER, ControlPilot

ENVDUMP = {  # started (restarted) by the tests: prints what a job spawned now sees, then waits
    "name": "envdump",
    "exec": ["sh", "-c", 'echo "envdump A=[$CTL_A] B=[$CTL_B] C=[$CTL_C] BIG=${#CTL_BIG}"; exec sleep 1000'],
    "when": {"source": "never-fires", "once": "healthy"},
}


@pytest.fixture(scope="module")
def pilot() -> Iterator[ControlPilot]:
    with ControlPilot(jobs=[KEEPER, ENVDUMP]) as p:
        yield p
