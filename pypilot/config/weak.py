"""mapstructure-style decoding: ContainerPilot's weak typing and unknown-key errors, with its messages.

ContainerPilot decoded each block with mapstructure (``WeaklyTypedInput``, ``ErrorUnused``). Users rely on
the coercions (``"8080"`` for a port, ``5`` for a duration string, ``"true"`` for a bool), and the error text
is part of what they see, so this module reproduces both:

- string fields: bools become ``"1"``/``"0"``, numbers are formatted without exponent (``5`` → ``"5"``);
- int fields: floats are truncated, bools are 1/0, strings are parsed with Go's ``ParseInt(s, 0, 64)`` (base
  prefixes count: ``"0x10"`` = 16, ``"010"`` = 8);
- bool fields: numbers are ``!= 0``, strings use Go's ``ParseBool`` (``""`` is false);
- array fields reject a bare value (``source data must be an array or slice``); ``{}`` is an empty array;
- int fields from a float take Go's ``int64(f)`` (NaN and the infinities give the smallest int64);
- keys match exactly first, then case-insensitively (a warning for ``-validate``); leftover keys are
  ``'<path>' has invalid keys: a, b``;
- every problem inside one decode call is gathered into ``N error(s) decoding:\\n\\n* ...``, each with
  `` (in <place in the file>)`` after mapstructure's own text when the caller says where the object is.

A field spec is a list of ``(key, kind)``; kind is ``"str" "int" "bool" "float" "any" "strs" "list"`` or a
nested spec (a list) for a sub-object. The result maps each present, non-null key to its decoded value.
"""

from __future__ import annotations

__all__ = [
    "Spec",
    "decode_list",
    "decode_struct",
    "format_errors",
    "go_int",
    "go_kind",
    "go_quote",
    "go_type",
    "go_v",
    "weak_str",
]

TYPE_CHECKING = False  # typing is ~2-5 ms of PID 1's start-up; mypy reads this name as True
if TYPE_CHECKING:
    from typing import Any

    Spec = list[tuple[str, Any]]
    Errs = list[str]


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


def go_v(x: Any) -> str:
    """Go ``%v`` of a decoded JSON value."""
    from .template import go_value  # only where a value is printed

    if isinstance(x, int) and not isinstance(x, bool):
        x = float(x)  # JSON numbers are float64 in Go
    if isinstance(x, list):
        return "[" + " ".join(go_v(e) for e in x) + "]"
    if isinstance(x, dict):
        return "map[" + " ".join(f"{k}:{go_v(x[k])}" for k in sorted(x)) + "]"
    if x is None:
        return "<nil>"
    return go_value(x)


def go_kind(v: Any) -> str:
    if isinstance(v, list):
        return "slice"
    if isinstance(v, dict):
        return "map"
    return go_type(v)


def go_quote(s: str) -> str:
    """Go ``%q`` of a string, as strconv's and mapstructure's messages print it (pypilot.gofmt loads
    only for a string that needs escaping)."""
    if s.isascii() and s.isprintable() and '"' not in s and "\\" not in s:
        return f'"{s}"'  # what strconv.Quote gives such a string; most names are, at every start
    from pypilot.gofmt import quote

    return quote(s)


_INF = float("inf")


def format_float_f(v: float) -> str:
    """Go ``strconv.FormatFloat(v, 'f', -1, 64)``: shortest digits, never an exponent."""
    # float comparisons, not math (an extension module to load, for these two tests)
    if v != v:  # NaN
        return "NaN"
    if v in (_INF, -_INF):
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


_MIN_INT64 = -(1 << 63)


def go_int(v: float) -> int:
    """Go's ``int64(f)`` on amd64, which mapstructure uses for a float in an int field: truncation, and
    the "integer indefinite" value (the smallest int64) for NaN, the infinities and anything out of range
    (so ``interval: NaN`` fails ``must be > 0`` and ``port: Infinity`` is a non-zero port, as in CP)."""
    if -(2.0**63) <= v < 2.0**63:  # False for NaN and the infinities too (no math.isfinite needed)
        return int(v)
    return _MIN_INT64


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


def _scalar(kind: str, v: Any, name: str, errs: Errs, loc: str = "") -> Any:
    n = len(errs)
    out = _scalar_value(kind, v, name, errs, loc)
    if loc:
        errs[n:] = [e + _where(loc) for e in errs[n:]]
    return out


def _where(loc: str) -> str:
    return f" (in {loc})" if loc else ""


def _scalar_value(kind: str, v: Any, name: str, errs: Errs, loc: str) -> Any:
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
            return v if _MIN_INT64 <= v < -_MIN_INT64 else _MIN_INT64  # a float64 in Go, then int64()
        if isinstance(v, float):
            return go_int(v)
        if isinstance(v, str):
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
            s = _scalar_value("str", item, f"{name}[{i}]", errs, loc)
            out.append(s if s is not None else "")
        return out
    raise AssertionError(kind)


def _value(kind: Any, v: Any, name: str, errs: Errs, ctx: _Ctx) -> Any:
    if isinstance(kind, list):
        return _struct(v, name, kind, errs, ctx)
    return _scalar(kind, v, name, errs, ctx.where())


# keys whose mapstructure name (Go's field name) is not the documented key
_DOC_KEY = {"Level": "level", "Format": "format", "Output": "output"}


class _Ctx:
    """Where a struct sits in the user's file, for locations (``jobs[0].health``) and warnings."""

    __slots__ = ("label", "loc", "warnings")

    def __init__(self, loc: str, label: str, warnings: list[str] | None) -> None:
        self.loc, self.label, self.warnings = loc, label, warnings

    def child(self, key: str) -> _Ctx:
        return _Ctx(_join(self.loc, key) if self.loc else "", self.label, self.warnings)

    def where(self) -> str:
        return f"{self.loc}{self.label}" if self.loc else ""


def _struct(data: Any, name: str, spec: Spec, errs: Errs, ctx: _Ctx) -> dict[str, Any] | None:
    if data is None:
        return None
    if not isinstance(data, dict):
        errs.append(f"'{name}' expected a map, got '{go_kind(data)}'" + _where(ctx.where()))
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
            doc = _DOC_KEY.get(key, key)
            if found != doc and ctx.warnings is not None:
                ctx.warnings.append(
                    f"{_join(ctx.loc, found) if ctx.loc else found}{ctx.label}: the key is '{doc}'; "
                    f"'{found}' is accepted because ContainerPilot matched keys case-insensitively")
        unused.pop(found, None)
        raw = data[found]
        if raw is None:
            continue  # mapstructure leaves a null field at its zero value
        assert found is not None
        val = _value(kind, raw, _join(name, key), errs, ctx.child(found))
        if val is not None:
            out[key] = val
    if unused:
        errs.append(f"'{name}' has invalid keys: {', '.join(sorted(str(k) for k in unused))}"
                    + _where(ctx.where()))
    return out


def format_errors(errs: list[str]) -> str:
    return f"{len(errs)} error(s) decoding:\n\n" + "\n".join(f"* {e}" for e in errs)


def decode_struct(data: Any, spec: Spec, name: str = "", *, where: str = "",
                  warnings: list[str] | None = None) -> tuple[dict[str, Any] | None, str | None]:
    """Decode one object; returns (fields, None) or (partial fields, mapstructure's error message).

    ``where`` is the object's place in the file (``"logging"``): each error gets `` (in logging.key)``
    after mapstructure's text, which names only the path inside the object. A key that matched only
    case-insensitively adds a line to ``warnings``.
    """
    errs: list[str] = []
    out = _struct(data, name, spec, errs, _Ctx(where, "", warnings))
    return out, format_errors(errs) if errs else None


def decode_list(
    items: list[Any], spec: Spec, *, where: str = "", noun: str = "", warnings: list[str] | None = None
) -> tuple[list[dict[str, Any] | None], list[bool], str | None]:
    """Decode a list of objects as mapstructure decodes ``[]*T``: element paths are ``[i]``.

    Returns (the decoded items, whether each had an error, the message). An item with an error is still
    returned, partly decoded, so that ``-validate`` can go on checking it; ``None`` for a non-object.
    Locations are ``where[i]`` and, when the item has a name, ``, <noun> "name"``.
    """
    errs: list[str] = []
    out: list[dict[str, Any] | None] = []
    bad: list[bool] = []
    for i, item in enumerate(items):
        before = len(errs)
        label = ""
        if noun and isinstance(item, dict):
            raw_name = next((v for k, v in item.items() if isinstance(k, str) and k.lower() == "name"), None)
            item_name = weak_str(raw_name)
            if item_name:
                label = f", {noun} {go_quote(item_name)}"
        d = _struct(item, f"[{i}]", spec, errs, _Ctx(f"{where}[{i}]" if where else "", label, warnings))
        out.append(d)
        bad.append(len(errs) != before)
    return out, bad, format_errors(errs) if errs else None


def decode_scalar(kind: str, data: Any, name: str = "", *, where: str = "") -> tuple[Any, str | None]:
    errs: list[str] = []
    if data is None:
        return None, None
    val = _scalar(kind, data, name, errs, where)
    return val, errs[0] if errs else None
