"""A plain-JSON config is read without json, re or pyjson5 (start-up time, #15), and read as json reads it."""

from __future__ import annotations

import json
import subprocess
import sys

import pyjson5
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pypilot.config import ConfigError
from pypilot.config.loader import _as_json, _plain_json, parse_json5

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


EVERYDAY_JSON5 = [
    "// a comment\n{jobs: [{name: 'a', exec: 'true',},], /* block */ 'k': \"v\\\"q\", $x_1: -1.5e3,}",
    '{a: "x\\\\", b: "q\\\\\\"r", c: "/* not a comment */", d: "http://x//y"}',
    "{true: 1, null: [1, 2,\n], inf: -Infinity}",
]
BEYOND = ["{a: 0x10}", "{a: +1}", "{a: .5}", "{a: 'it\\'s'}", "{a: '\"'}", "{a: 1} /* open", "{a\u00a0: 1}"]


@pytest.mark.parametrize("text", EVERYDAY_JSON5)
def test_everyday_json5_is_read_as_pyjson5_reads_it(text: str) -> None:
    import pyjson5

    assert repr(_plain_json(_as_json(text))) == repr(pyjson5.decode(text))
    assert repr(parse_json5(text)) == repr(pyjson5.decode(text))


@pytest.mark.parametrize("text", BEYOND)
def test_json5_beyond_the_everyday_kind_is_left_to_pyjson5(text: str) -> None:
    import pyjson5

    with pytest.raises((ValueError, StopIteration)):
        _plain_json(_as_json(text))
    try:
        expected = repr(pyjson5.decode(text))
    except pyjson5.Json5Exception:
        return
    assert repr(parse_json5(text)) == expected


def test_a_json5_config_imports_no_pyjson5() -> None:
    code = (
        "import sys; from pypilot.config.loader import parse_json5; before = set(sys.modules); "
        "print(parse_json5(\"// c\\n{jobs: [{name: 'a', exec: 'true',},],}\")); "
        "print(sorted(m for m in ('json', 're', 'pyjson5', 'orjson') if m in set(sys.modules) - before))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["{'jobs': [{'name': 'a', 'exec': 'true'}]}", "[]"]


# --- differential: the fast path must mean what pyjson5 means, or step aside ------------------------

_TOKENS = ["{", "}", "[", "]", ",", ":", " ", "\n", "\t", "// c\n", "/* c */", "a", "b_1", "$k",
           '"s"', "'t'", "'q\"'", '"e\\n"', '"u\\u00e9"', "'\\x41'", "1", "-2", "3.5", ".5", "+1", "0x1F",
           "1e3",
           "true", "false", "null", "NaN", "Infinity", "-Infinity", "é", "\u00a0", "'//'", '"/*"']


@settings(max_examples=3000, deadline=None)
@given(st.lists(st.sampled_from(_TOKENS), max_size=14))
def test_random_json5_token_soup_reads_as_pyjson5_reads_it(tokens: list[str]) -> None:
    """What the fast path accepts, pyjson5 accepts with the same value; what pyjson5 refuses is refused
    (an unclosed comment after the last brace, which CP ignored, is pinned in test_validate)."""
    text = "{" + "".join(tokens) + "}"
    try:
        want = pyjson5.decode(text)
    except Exception:
        want = _REFUSED
    try:
        got = parse_json5(text)
    except ConfigError:
        got = _REFUSED
    if want is not _REFUSED and not (want is None or isinstance(want, dict)):
        return  # not a config either way
    assert _same(got, want), text


_REFUSED = object()


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float) and a != a and b != b:
        return True  # NaN
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b
