"""Fixtures: a Consul stand-in on 127.0.0.1 for each test, no CONSUL_* variables from the caller."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.consul_standin import ConsulStandin


@pytest.fixture
def standin() -> Iterator[ConsulStandin]:
    with ConsulStandin() as fake:
        yield fake
