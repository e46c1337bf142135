"""mapstructure-style decoding: ContainerPilot's weak typing and unknown-key errors, with its messages.

ContainerPilot decoded each block with mapstructure (``WeaklyTypedInput``, ``ErrorUnused``). Users rely on
the coercions (``"8080"`` for a port, ``5`` for a duration string, ``"true"`` for a bool), and the error text
is part of what they see, so this module reproduces both:

- string fields: bools become ``"1"``/``"0"``, numbers are formatted without exponent (``5`` → ``"5"``);
- int fields: floats are truncated, bools are 1/0, strings are parsed with Go's ``ParseInt(s, 0, 64)`` (base
  prefixes count: ``"0x10"`` = 16, ``"010"`` = 8);
- bool fields: numbers are ``!= 0``, strings use Go's ``ParseBool`` (``""`` is false);
- array fields reject a bare value (``source data must be an array or slice``); ``{}`` is an empty array;
- keys match exactly first, then case-insensitively; leftover keys are ``'<path>' has invalid keys: a, b``;
- every problem inside one decode call is gathered into ``N error(s) decoding:\\n\\n* ...``.

A field spec is a list of ``(key, kind)``; kind is ``"str" "int" "bool" "float" "any" "strs" "list"`` or a
nested spec (a list) for a sub-object. The result maps each present, non-null key to its decoded value.
"""

from __future__ import annotations

import math

__all__ = [
    "Spec",
    "decode_list",
    "decode_struct",
    "format_errors",
    "go_kind",
    "go_quote",
    "go_type",
    "weak_str",
]

TYPE_CHECKING = False  # typing is ~2-5 ms of PID 1's start-up; mypy reads this name as True
if TYPE_CHECKING:
    from typing import Any

    Spec = list[tuple[str, Any]]


def go_type(v: Any) -> str:
    """The Go type JSON decoding gave a value (for mapstructure's messages)."""
    if v is None:
        return "<nil>"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "float64"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "[]interface {}"
    return "map[string]interface {}"


def go_kind(v: Any) -> str:
    if isinstance(v, list):
        return "slice"
    if isinstance(v, dict):
        return "map"
    return go_type(v)


def go_quote(s: str) -> str:
    """Go ``%q`` of a string (close enough: escapes quotes, backslashes and control characters)."""
    out = ['"']
    for c in s:
        if c in '"\\':
            out.append("\\" + c)
        elif c == "\n":
            out.append("\\n")
        elif c == "\t":
            out.append("\\t")
        elif c == "\r":
            out.append("\\r")
        elif not c.isprintable():
            out.append(f"\\x{ord(c):02x}" if ord(c) < 0x80 else f"\\u{ord(c):04x}")
        else:
            out.append(c)
    out.append('"')
    return "".join(out)


def format_float_f(v: float) -> str:
    """Go ``strconv.FormatFloat(v, 'f', -1, 64)``: shortest digits, never an exponent."""
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if v == int(v) and abs(v) < 1e16:
        return str(int(v))
    s = repr(v)
    if "e" not in s:
        return s
    from decimal import Decimal

    return format(Decimal(s), "f")


def weak_str(v: Any) -> str | None:
    """A scalar as mapstructure's weak string decode gives it; None for lists and maps."""
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return format_float_f(v)
    return None


def go_parse_int(s: str) -> int:
    """Go ``strconv.ParseInt(s, 0, 64)``; raises ValueError with Go's message."""
    body = s[1:] if s[:1] in ("+", "-") else s
    neg = s[:1] == "-"
    try:
        if not body or not body.isascii() or "_" in body:
            raise ValueError
        if body[:2] in ("0x", "0X"):
            n = int(body[2:], 16) if body[2:] else int("x")
        elif body[0] == "0" and len(body) > 1:
            n = int(body[1:], 8)
        else:
            if not body.isdigit():
                raise ValueError
            n = int(body, 10)
    except ValueError:
        raise ValueError(f"strconv.ParseInt: parsing {go_quote(s)}: invalid syntax") from None
    n = -n if neg else n
    if not -(1 << 63) <= n < (1 << 63):
        raise ValueError(f"strconv.ParseInt: parsing {go_quote(s)}: value out of range")
    return n


_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_FALSE = ("0", "f", "F", "FALSE", "false", "False")


def go_parse_bool(s: str) -> bool:
    if s in _TRUE:
        return True
    if s in _FALSE:
        return False
    raise ValueError(f"strconv.ParseBool: parsing {go_quote(s)}: invalid syntax")


def _join(name: str, key: str) -> str:
    return f"{name}.{key}" if name else key


def _scalar(kind: str, v: Any, name: str, errs: list[str]) -> Any:
    if kind == "any":
        return v
    if kind == "str":
        s = weak_str(v)
        if s is None:
            errs.append(f"'{name}' expected type 'string', got unconvertible type '{go_type(v)}'")
        return s
    if kind == "int":
        if isinstance(v, bool):
            return int(v)
        if isinstance(v, int):
            return v
        if isinstance(v, float):
            if math.isfinite(v):
                return int(v)  # mapstructure truncates
        elif isinstance(v, str):
            try:
                return go_parse_int(v)
            except ValueError as e:
                errs.append(f"cannot parse '{name}' as int: {e}")
                return None
        errs.append(f"'{name}' expected type 'int', got unconvertible type '{go_type(v)}'")
        return None
    if kind == "float":
        if isinstance(v, (int, float)):
            return float(v)
        if isinstance(v, str):
            try:
                return float(v)
            except ValueError:
                errs.append(f"cannot parse '{name}' as float: strconv.ParseFloat: parsing {go_quote(v)}: "
                            "invalid syntax")
                return None
        errs.append(f"'{name}' expected type 'float64', got unconvertible type '{go_type(v)}'")
        return None
    if kind == "bool":
        if isinstance(v, bool):
            return v
        if isinstance(v, (int, float)):
            return v != 0
        if isinstance(v, str):
            if v == "":
                return False
            try:
                return go_parse_bool(v)
            except ValueError as e:
                errs.append(f"cannot parse '{name}' as bool: {e}")
                return None
        errs.append(f"'{name}' expected type 'bool', got unconvertible type '{go_type(v)}'")
        return None
    if kind in ("strs", "list"):
        if isinstance(v, dict) and not v:
            return []
        if not isinstance(v, list):
            errs.append(f"'{name}': source data must be an array or slice, got {go_kind(v)}")
            return None
        if kind == "list":
            return list(v)
        out = []
        for i, item in enumerate(v):
            if item is None:
                out.append("")
                continue
            s = _scalar("str", item, f"{name}[{i}]", errs)
            out.append(s if s is not None else "")
        return out
    raise AssertionError(kind)


def _value(kind: Any, v: Any, name: str, errs: list[str]) -> Any:
    if isinstance(kind, list):
        return _struct(v, name, kind, errs)
    return _scalar(kind, v, name, errs)


def _struct(data: Any, name: str, spec: Spec, errs: list[str]) -> dict[str, Any] | None:
    if data is None:
        return None
    if not isinstance(data, dict):
        errs.append(f"'{name}' expected a map, got '{go_kind(data)}'")
        return None
    unused = dict.fromkeys(data)
    out: dict[str, Any] = {}
    for key, kind in spec:
        found: str | None = key
        if key not in data:  # mapstructure: an exact match first, then a case-insensitive one
            low = key.lower()
            found = next((k for k in data if isinstance(k, str) and k.lower() == low), None)
            if found is None:
                continue
        unused.pop(found, None)
        raw = data[found]
        if raw is None:
            continue  # mapstructure leaves a null field at its zero value
        val = _value(kind, raw, _join(name, key), errs)
        if val is not None:
            out[key] = val
    if unused:
        errs.append(f"'{name}' has invalid keys: {', '.join(sorted(str(k) for k in unused))}")
    return out


def format_errors(errs: list[str]) -> str:
    return f"{len(errs)} error(s) decoding:\n\n" + "\n".join(f"* {e}" for e in errs)


def decode_struct(data: Any, spec: Spec, name: str = "") -> tuple[dict[str, Any] | None, str | None]:
    """Decode one object; returns (fields, None) or (partial fields, mapstructure's error message)."""
    errs: list[str] = []
    out = _struct(data, name, spec, errs)
    return out, format_errors(errs) if errs else None


def decode_list(items: list[Any], spec: Spec) -> tuple[list[dict[str, Any] | None], str | None]:
    """Decode a list of objects as mapstructure decodes ``[]*T``: element paths are ``[i]``."""
    errs: list[str] = []
    out = []
    for i, item in enumerate(items):
        before = len(errs)
        d = _struct(item, f"[{i}]", spec, errs)
        out.append(d if len(errs) == before else None)
    return out, format_errors(errs) if errs else None


def decode_scalar(kind: str, data: Any, name: str = "") -> tuple[Any, str | None]:
    errs: list[str] = []
    if data is None:
        return None, None
    val = _scalar(kind, data, name, errs)
    return val, errs[0] if errs else None
