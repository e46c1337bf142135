"""The channel's JSON in PID 1 is the stdlib's C codec, and what it sends is what orjson would (#15)."""

from __future__ import annotations

import subprocess
import sys

import orjson
import pytest

from pypilot.channel import Decoder, encode

SAME = [
    {"op": "log", "data": 'x\u00e9\n"\\ \u2028'},
    {"a": [1, 2.5, None, True, False], "b": {"c": -3, "d": ""}, "e": 1e16},
    {"t": (1, 2)},
    {"f": float("nan"), "g": float("inf")},  # not JSON: orjson writes null, and so do we
]


@pytest.mark.parametrize("msg", SAME)
def test_a_message_is_the_bytes_orjson_writes_and_reads_back(msg: dict[str, object]) -> None:
    frame = encode(msg)
    assert frame[4:] == orjson.dumps(msg)
    assert Decoder().feed(frame) == [orjson.loads(orjson.dumps(msg))]


def test_what_orjson_refuses_is_refused() -> None:
    with pytest.raises(TypeError):
        encode({"s": "\ud800"})
    for body in (b"NaN", b'{"a": NaN}', b'{"a"', b"[]"):
        with pytest.raises(ValueError):
            Decoder().feed(len(body).to_bytes(4, "big") + body)


def test_pid1_side_of_the_channel_imports_neither_orjson_nor_typing() -> None:
    code = (
        "import sys; before = set(sys.modules); from pypilot.channel import Decoder, encode; "
        "Decoder().feed(encode({'op': 'check', 'id': 1, 'exec': ['true']})); "
        "print(sorted(m for m in ('orjson', 'typing', 'json', 're') if m in set(sys.modules) - before))"
    )
    out = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["[]"]
