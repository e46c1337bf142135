"""A plain-JSON config is read without json, re or pyjson5 (start-up time, #15), and read as json reads it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pypilot.config.loader import _plain_json, parse_json5

TEXTS = [
    '{"a": [1, 2.5, -3e2, true, false, null, "x\\u00e9\\n"], "b": {}}',
    '  \n\t{"n": NaN, "i": -Infinity, "j": Infinity}\r\n',
    '{"a": 1, "a": 2}',
    '{"big": 123456789012345678901234567890}',
    '{"s": "\\ud800"}',
    "null",
]
NOT_PLAIN = ['{"a": 1} x', '{"a": 1,}', "\ufeff{}", "", "{a: 1}", "// c\n{}", "{'a': 1}"]


@pytest.mark.parametrize("text", TEXTS)
def test_plain_json_reads_as_stdlib_json(text: str) -> None:
    assert repr(_plain_json(text)) == repr(json.loads(text))


@pytest.mark.parametrize("text", NOT_PLAIN)
def test_what_stdlib_json_refuses_goes_to_pyjson5(text: str) -> None:
    with pytest.raises(ValueError):
        json.loads(text)
    with pytest.raises((ValueError, StopIteration)):
        _plain_json(text)


def test_plain_json_config_imports_neither_json_nor_re_nor_pyjson5() -> None:
    code = (
        "import sys; from pypilot.config.loader import parse_json5; before = set(sys.modules); "
        'print(parse_json5(\'{"jobs": [{"name": "a", "exec": "true"}]}\')); '
        "print(sorted(m for m in ('json', 're', 'pyjson5', 'orjson') if m in set(sys.modules) - before))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["{'jobs': [{'name': 'a', 'exec': 'true'}]}", "[]"]


def test_a_json5_config_still_parses() -> None:
    assert parse_json5("// comment\n{jobs: [{name: 'a', exec: 'true',},],}") == {
        "jobs": [{"name": "a", "exec": "true"}]
    }
