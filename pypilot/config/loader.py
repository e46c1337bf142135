"""Locate, read, render and parse a config file; the JSON5 error format of §2.3.

JSON5 parser: pyjson5 (Cython). Measured on a 200-job config it parses in ~0.25 ms against ~450 ms for the
pure-Python ``json5`` package, imports in ~4 ms, and reports the 1-based character position of a syntax error,
which is what CP's ``parse error at line:col [L:C]`` form needs.
"""

from __future__ import annotations

import os

from .errors import Collector, ConfigError, _Stop
from .model import Config

TYPE_CHECKING = False  # typing is ~2-5 ms of PID 1's start-up; mypy reads this name as True
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from typing import Any


__all__ = ["check", "load", "parse_json5", "read_and_render", "read_control", "render", "validate_all"]


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


def parse_json5(text: str, warnings: list[str] | None = None) -> dict[str, Any] | None:
    """Parse JSON5; the top level must be an object (``null`` counts as an empty one, as in Go).

    As in ContainerPilot (its JSON5 scanner stops at the end of the input once the top-level value is
    complete), an unclosed ``/* ...`` or a lone ``/`` after the final ``}`` is ignored; a warning for
    ``-validate`` goes to ``warnings``.

    A config that is plain JSON (the usual output of a template or a generator) is read by the stdlib's
    JSON scanner (``_json``, without ``json`` and the ``re`` it imports): it is JSON5's subset, read the
    same way, and importing it costs ~0.3 ms before the first spawn
    where pyjson5 (pprint, dataclasses, decimal, …) or orjson (uuid, dataclasses, …) cost ~20 ms, and
    pyjson5 3.6 MiB of PID 1 for as long as it runs (measured: benchmarks, profile). Anything else, and
    every error message, is pyjson5's.
    """
    raw: Any
    for attempt in (text, None):
        try:  # anything else is pyjson5's to read, or to name the error of
            raw = _plain_json(text if attempt is not None else _as_json(text))
        except Exception:
            continue
        if raw is None or isinstance(raw, dict):
            return raw
        break
    import pyjson5

    try:
        raw = pyjson5.decode(text)
    except pyjson5.Json5Exception as e:
        raw = _without_open_trailing_comment(text, pyjson5)
        if raw is not None:
            if warnings is not None:
                warnings.append("the unclosed comment after the config's closing brace is ignored "
                                "(as ContainerPilot did): close it with */")
            return raw if isinstance(raw, dict) else None
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


_JSON_SPACE = " \t\n\r"


class _ScanContext:
    """What the C scanner reads off ``json.JSONDecoder``, without ``json`` (whose decoder imports
    ``re``: ~3 ms before the first spawn, of a budget of a few)."""

    strict = True
    object_hook = object_pairs_hook = None
    parse_float, parse_int = float, int
    parse_constant = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}.__getitem__
    memo: dict[str, str] = {}


def _plain_json(text: str) -> Any:
    """``json.loads(text)`` for a text that is plain JSON; raises (anything) for one that is not."""
    import _json

    start = len(text) - len(text.lstrip(_JSON_SPACE))
    value, end = _json.make_scanner(_ScanContext())(text, start)  # type: ignore[arg-type]
    if text[end:].strip(_JSON_SPACE):
        raise ValueError("extra data")
    return value


_IDENT_START = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_$")
_IDENT = _IDENT_START | frozenset("0123456789")


def _as_json(text: str) -> str:
    """The JSON a config in everyday JSON5 means: comments dropped, unquoted (ASCII) keys and plain
    single-quoted strings quoted, trailing commas dropped. Raises ValueError on anything else (other
    escapes, hex or signed numbers, odd whitespace, an unclosed comment), which pyjson5 then reads.

    It only rewrites; the C scanner still reads the result, so what it lets through is JSON5's own
    meaning (pyjson5 would cost ~20 ms of start-up and 3.6 MiB of PID 1, measured: benchmarks)."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in _JSON_SPACE:
            j = i + 1
            while j < n and text[j] in _JSON_SPACE:
                j += 1
            out.append(" ")
            i = j
        elif c == '"':
            j = text.find('"', i + 1)
            while j > 0 and text[j - 1] == "\\":  # escaped, if an odd run of backslashes precedes it
                k = j - 1
                while text[k - 1] == "\\":
                    k -= 1
                if (j - k) % 2 == 0:
                    break
                j = text.find('"', j + 1)
            if j < 0:
                raise ValueError("unclosed string")
            out.append(text[i : j + 1])
            i = j + 1
        elif c == "'":
            j = text.find("'", i + 1)
            body = text[i + 1 : j]
            if j < 0 or "\\" in body or '"' in body or "\n" in body or "\r" in body:
                raise ValueError("single-quoted string beyond the plain kind")
            out.append(f'"{body}"')
            i = j + 1
        elif c == "/" and text.startswith("//", i):
            j = i
            while j < n and text[j] not in "\n\r\u2028\u2029":
                j += 1
            out.append(" ")
            i = j
        elif c == "/" and text.startswith("/*", i):
            j = text.find("*/", i + 2)
            if j < 0:
                raise ValueError("unclosed comment")
            out.append(" ")
            i = j + 2
        elif c in _IDENT_START:
            j = i + 1
            while j < n and text[j] in _IDENT:
                j += 1
            word = text[i:j]
            k = j
            while k < n and text[k] in _JSON_SPACE:
                k += 1
            out.append(f'"{word}"' if k < n and text[k] == ":" else word)
            i = j
        elif c in "}]":
            while out and out[-1] == " ":
                out.pop()
            if out and out[-1] == ",":
                out.pop()
                while out and out[-1] == " ":
                    out.pop()
                if not out or out[-1] in "{[,:":
                    raise ValueError("a comma with nothing before it")  # JSON5 refuses {,} and [,]
            out.append(c)
            i += 1
        elif c in "{[:,-.0123456789":
            out.append(c)
            i += 1
        else:
            raise ValueError(f"not everyday JSON5: {c!r}")
    return "".join(out)


def _without_open_trailing_comment(text: str, pyjson5: Any) -> Any:
    """The value of ``text`` if all that spoils it is an unclosed comment (or a lone ``/``) after the
    top-level value; None otherwise. Only on the error path."""
    cuts = []
    if text.endswith("/") and not text.endswith("*/"):
        cuts.append(len(text) - 1)
    k = text.find("/*")
    while k >= 0 and len(cuts) < 20:
        if "*/" not in text[k + 2:]:  # this comment is still open at the end of the file
            cuts.append(k)
        k = text.find("/*", k + 2)
    for cut in cuts:
        try:
            value = pyjson5.decode(text[:cut])
        except (pyjson5.Json5Exception, ValueError, OverflowError, RecursionError):
            continue
        if value is None or isinstance(value, dict):
            return value if value is not None else {}
    return None


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
) -> tuple[Config | None, Collector]:
    from .. import __version__
    from . import decode

    env = _env(environ)
    path, text = read_and_render(path, env)
    errs = Collector(first)
    raw = parse_json5(text, errs.warnings)
    try:
        cfg = decode.decode_config(raw, env, errs, _resolver(addresses), version=__version__)
    except _Stop:
        return None, errs
    if errs.errors:
        return None, errs

    return cfg._replace(path=path), errs


def load(
    path: str | None,
    environ: Mapping[str, str] | None = None,
    *,
    addresses: Iterable[tuple[str, str]] | None = None,
) -> Config:
    """Locate, render, parse and validate; raise ConfigError with CP's message for the first problem.

    ``addresses`` replaces the host's interface addresses (pairs of interface name and IP) for tests.
    """
    cfg, errs = _decode(path, environ, True, addresses)
    if cfg is None:
        raise ConfigError(errs.errors[0], errs.errors)
    return cfg


def check(
    path: str | None,
    environ: Mapping[str, str] | None = None,
    *,
    addresses: Iterable[tuple[str, str]] | None = None,
) -> tuple[list[str], list[str]]:
    """(every error, every warning) for ``-validate``; the first error is what ``load`` would raise.

    Warnings are what loads but is probably not what was meant (a key in the wrong case, an exec that
    splits into empty arguments); each names its place.
    """
    try:
        _cfg, errs = _decode(path, environ, False, addresses)
    except ConfigError as e:
        return [str(e)], []
    return errs.errors, errs.warnings


def validate_all(
    path: str | None,
    environ: Mapping[str, str] | None = None,
    *,
    addresses: Iterable[tuple[str, str]] | None = None,
) -> list[str]:
    """Every problem in the config (``[]`` when it loads); the first is what ``load`` would raise."""
    return check(path, environ, addresses=addresses)[0]


def read_control(path: str | None, environ: Mapping[str, str] | None = None) -> tuple[dict[str, Any], str]:
    """The ``control`` block of a config that may not validate, for the client commands.

    Returns (its keys as written, a note that is empty unless the file could not be parsed). The file
    is rendered (or taken raw if its template fails) and parsed; if even that fails (a file half-way
    through an edit) ``socket`` is looked for as text. Only an unreadable file (or no path at all)
    raises ConfigError, with ``load``'s message.
    """
    env = _env(environ)
    path, text = _read(path, env)
    note = ""
    if "{{" in text:
        try:
            text = read_and_render(path, env)[1]
        except ConfigError as e:
            note = str(e)
    try:
        raw = parse_json5(text)
    except ConfigError as e:
        control = _control_as_text(text)
        note = note or str(e).split("\n", 1)[0]
    else:
        block = raw.get("control") if isinstance(raw, dict) else None
        control = block if isinstance(block, dict) else {}
    if note:  # an unrendered template value is no path
        control = {k: v for k, v in control.items() if not (isinstance(v, str) and "{{" in v)}
    return control, note


def _control_as_text(text: str) -> dict[str, Any]:
    import re

    block = re.search(r"""["']?control["']?\s*:\s*\{""", text)
    if block is None:
        return {}
    end = text.find("}", block.end())  # the control block holds no nested object
    found = re.compile(r"""["']?socket["']?\s*:\s*(?:"((?:[^"\\\n]|\\.)*)"|'((?:[^'\\\n]|\\.)*)')""",
                       re.IGNORECASE).search(text, block.end(), end if end >= 0 else len(text))
    if found is None:
        return {}
    return {"socket": found.group(1) if found.group(1) is not None else found.group(2)}
