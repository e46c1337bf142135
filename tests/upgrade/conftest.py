"""Fixtures of the upgrade suite: the two installs (made once per session), the Consul stand-in (one per
test), and a target that is no pypilot of each kind."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.consul_standin import ConsulStandin
from tests.upgrade.harness import Install, make_installs


@pytest.fixture(scope="session")
def installs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Install, Install]:
    return make_installs(tmp_path_factory.mktemp("installs"))


@pytest.fixture(scope="session")
def a(installs: tuple[Install, Install]) -> Install:
    return installs[0]


@pytest.fixture(scope="session")
def b(installs: tuple[Install, Install]) -> Install:
    return installs[1]


@pytest.fixture
def standin() -> Iterator[ConsulStandin]:
    with ConsulStandin() as fake:
        yield fake


@pytest.fixture(scope="session")
def targets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Paths that are no pypilot: a binary that is something else, a text file (executable and not),
    a missing path."""
    d = tmp_path_factory.mktemp("targets")
    text = d / "notes.txt"
    text.write_text("not a program\n")
    script = d / "no-shebang"
    script.write_text("this is text, marked executable\n")
    script.chmod(0o755)
    return {"true": Path("/bin/true"), "text": text, "text+x": script, "missing": d / "no-such-pypilot"}
