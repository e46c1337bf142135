"""Fixtures: a Consul stand-in on 127.0.0.1 for each test, and a real Consul agent per test module.

``agent`` is the real agent (``tests/real_consul.py`` finds the binary: ``$PYPILOT_CONSUL``,
``../shared/bin/consul``, or ``consul`` on PATH), started once per module on free ports and emptied
before each test; without a binary the test is skipped with the reason. No CONSUL_* variable of the
caller reaches pypilot (the harness drops them)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.consul_standin import ConsulStandin
from tests.real_consul import RealConsul, find_consul


@pytest.fixture
def standin() -> Iterator[ConsulStandin]:
    with ConsulStandin() as fake:
        yield fake


@pytest.fixture(scope="module")
def module_agent() -> Iterator[RealConsul]:
    binary, why = find_consul()
    if binary is None:
        pytest.skip(why)
    agent = RealConsul(binary)
    try:
        agent.start()
        yield agent
    finally:
        agent.close()


@pytest.fixture
def agent(module_agent: RealConsul) -> RealConsul:
    module_agent.clean()  # running (a test may have killed it), no services, requests counted from here
    return module_agent
