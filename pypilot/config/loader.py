"""Locate, read, render and parse a config file; the JSON5 error format of §2.3.

JSON5 parser: pyjson5 (Cython). Measured on a 200-job config it parses in ~0.25 ms against ~450 ms for the
pure-Python ``json5`` package, imports in ~4 ms, and reports the 1-based character position of a syntax error,
which is what CP's ``parse error at line:col [L:C]`` form needs.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

from .errors import Collector, ConfigError, _Stop
from .model import Config

TYPE_CHECKING = False  # typing is ~2-5 ms of PID 1's start-up; mypy reads this name as True
if TYPE_CHECKING:
    from typing import Any


__all__ = ["load", "parse_json5", "read_and_render", "render", "validate_all"]


def _env(environ: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if environ is None else environ


def _read(path: str | None, env: Mapping[str, str]) -> tuple[str, str]:
    path = path or env.get("CONTAINERPILOT", "")
    if not path:
        raise ConfigError("-config flag is required")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ConfigError(f"could not read config file: open {path}: {_os_reason(e)}") from None
    return path, data.decode("utf-8", errors="replace")


def _os_reason(e: OSError) -> str:
    """Go's lower-case errno text (``no such file or directory``)."""
    text = e.strerror or str(e)
    return text[:1].lower() + text[1:]


def read_and_render(path: str | None, environ: Mapping[str, str] | None = None) -> tuple[str, str]:
    """(path, rendered text): the file located as CP does and rendered as a Go template."""
    env = _env(environ)
    path, text = _read(path, env)
    if "{{" not in text:
        return path, text
    from .template import TemplateError
    from .template import render as render_template

    try:
        return path, render_template(text, env)
    except TemplateError as e:
        raise ConfigError(f"could not apply template to config: {e}") from None
    except RecursionError:
        raise ConfigError("could not apply template to config: template: nesting too deep") from None


def render(path: str | None, environ: Mapping[str, str] | None = None) -> str:
    """The rendered template only, for ``-template``."""
    return read_and_render(path, environ)[1]


def highlight_error(text: str, pos: int) -> tuple[int, int, str]:
    """CP's ``highlightError``: line, column and the two context lines with a ``---^`` marker."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # bufio.ScanLines yields no empty final line
    prev = this = highlight = ""
    line, col, offset = 1, pos, 0
    for raw in lines:
        raw = raw[:-1] if raw.endswith("\r") else raw
        prev, this = this, f"{line:5d}: {raw}\n"
        offset += len(raw)
        if offset >= pos - 1:
            count = 7 + col - 1
            if count > 0:
                highlight = "-" * count + "^"
            break
        col -= len(raw) + 1
        line += 1
    if col < 0:
        highlight = "Do you have an extra comma somewhere?"
    return line, col, prev + this + highlight


def _syntax_message(e: Exception) -> tuple[str, int]:
    msg = str(e.args[0]) if e.args else str(e)
    import re  # only on the error path: re and enum cost ~4 ms of start-up

    near = re.compile(r"\s*near (-?\d+)")
    mpos = near.search(msg)
    pos = int(mpos.group(1)) if mpos else 0
    msg = near.sub("", msg)
    msg = re.sub(r"b'([^']*)'", r"\1", msg)  # pyjson5 prints token names as bytes literals
    msg = re.sub(r"U\+([0-9A-Fa-f]{4,6})", lambda mm: repr(chr(int(mm.group(1), 16))), msg)
    return msg, pos


def parse_json5(text: str) -> dict[str, Any] | None:
    """Parse JSON5; the top level must be an object (``null`` counts as an empty one, as in Go).

    A config that is plain JSON (the usual output of a template or a generator) is read by the stdlib's
    json: it is JSON5's subset, read the same way, and importing it costs ~6 ms before the first spawn
    where pyjson5 (pprint, dataclasses, decimal, …) or orjson (uuid, dataclasses, …) cost ~20 ms, and
    pyjson5 3.6 MiB of PID 1 for as long as it runs (measured: benchmarks, profile). Anything else, and
    every error message, is pyjson5's.
    """
    raw: Any
    try:
        import json

        raw = json.loads(text)
    except (ValueError, RecursionError):
        pass
    else:
        if raw is None or isinstance(raw, dict):
            return raw
    import pyjson5

    try:
        raw = pyjson5.decode(text)
    except pyjson5.Json5Exception as e:
        msg, pos = _syntax_message(e)
        if isinstance(e, pyjson5.Json5EOF) or pos <= 0:
            pos = len(text) + 1 if isinstance(e, pyjson5.Json5EOF) else max(pos, 1)
        line, col, context = highlight_error(text, pos)
        raise ConfigError(f"parse error at line:col [{line}:{col}]: {msg}\n{context}") from None
    except (ValueError, OverflowError, RecursionError) as e:
        raise ConfigError(f"could not parse configuration: {e}") from None
    if raw is None or isinstance(raw, dict):
        return raw
    kind = {list: "array", str: "string", bool: "bool"}.get(type(raw), "number")
    raise ConfigError(
        f"could not parse configuration: json: cannot unmarshal {kind} into Go value of type "
        "map[string]interface {}"
    )


def _resolver(addresses: Iterable[tuple[str, str]] | None) -> Any:
    cache: dict[tuple[str, ...] | None, str] = {}
    table = list(addresses) if addresses is not None else None

    def resolve(specs: list[str] | None) -> str:
        from .interfaces import get_ip

        key = tuple(specs) if specs else None
        if key not in cache:
            cache[key] = get_ip(specs, table)
        return cache[key]

    return resolve


def _decode(
    path: str | None,
    environ: Mapping[str, str] | None,
    first: bool,
    addresses: Iterable[tuple[str, str]] | None,
) -> tuple[Config | None, list[str]]:
    from .. import __version__
    from . import decode

    env = _env(environ)
    path, text = read_and_render(path, env)
    raw = parse_json5(text)
    errs = Collector(first)
    try:
        cfg = decode.decode_config(raw, env, errs, _resolver(addresses), version=__version__)
    except _Stop:
        return None, errs.errors
    if errs.errors:
        return None, errs.errors

    return cfg._replace(path=path), []


def load(
    path: str | None,
    environ: Mapping[str, str] | None = None,
    *,
    addresses: Iterable[tuple[str, str]] | None = None,
) -> Config:
    """Locate, render, parse and validate; raise ConfigError with CP's message for the first problem.

    ``addresses`` replaces the host's interface addresses (pairs of interface name and IP) for tests.
    """
    cfg, errors = _decode(path, environ, True, addresses)
    if cfg is None:
        raise ConfigError(errors[0], errors)
    return cfg


def validate_all(
    path: str | None,
    environ: Mapping[str, str] | None = None,
    *,
    addresses: Iterable[tuple[str, str]] | None = None,
) -> list[str]:
    """Every problem in the config (``[]`` when it loads); the first is what ``load`` would raise."""
    try:
        _cfg, errors = _decode(path, environ, False, addresses)
    except ConfigError as e:
        return [str(e)]
    return errors
