"""Helpers for the config tests: write a config, load it against a fixed address table."""

from __future__ import annotations

from pathlib import Path

import pytest

ADDRS = [("eth0", "10.2.0.1"), ("eth0", "192.168.1.100"), ("eth1", "10.0.0.100"), ("eth1", "10.0.0.200"),
         ("eth2", "10.1.0.200"), ("eth2", "fdc6:238c:c4bc::1"), ("lo", "::1"), ("lo", "127.0.0.1")]


@pytest.fixture
def write(tmp_path: Path):
    def _write(text: str, name: str = "cp.json5") -> str:
        p = tmp_path / name
        p.write_text(text)
        return str(p)

    return _write
