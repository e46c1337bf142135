"""The template's functions: Go's built-ins and ContainerPilot's extras (§2.2), each with the Go
signature the executor checks arguments against, as Go's reflection-based call does.

A signature is ``(params, variadic)``: parameter types among ``any``, ``string``, ``[]string``, and the
type of any further arguments (or None). ``and``/``or`` are evaluated lazily by the executor."""

from __future__ import annotations

from collections.abc import Mapping

from pypilot import gofmt

from .errors import FuncError, TemplateError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


def truth(v: Any) -> bool:
    """Go template truth: false, 0, nil and empty strings, lists and maps are false."""
    if v is None:
        return False
    if isinstance(v, (bool, int, float, str, list, tuple, Mapping)):
        return bool(v)
    return True


def _len(v: Any) -> int:
    if isinstance(v, str):
        return len(v.encode("utf-8", "surrogateescape"))  # Go's len counts bytes
    if isinstance(v, (list, tuple, Mapping)):
        return len(v)
    if v is None:  # Go 1.19 panics in reflect; text/template reports the panic
        raise FuncError("reflect: call of reflect.Value.Type on zero Value")
    raise FuncError(f"len of type {gofmt.go_type(v)}")


def _index_of(k: Any, size: int) -> int:
    if k is None:
        raise FuncError("cannot index slice/array with nil")
    if not isinstance(k, int) or isinstance(k, bool):
        raise FuncError(f"cannot index slice/array with type {gofmt.go_type(k)}")
    if not 0 <= k < size:
        raise FuncError(f"index out of range: {k}")
    return k


def _index(v: Any, *keys: Any) -> Any:
    if v is None:
        raise FuncError("index of untyped nil")
    for k in keys:
        if v is None:
            raise FuncError("index of untyped nil")
        if isinstance(v, str):
            data = v.encode("utf-8", "surrogateescape")
            v = gofmt.Uint8(data[_index_of(k, len(data))])
        elif isinstance(v, (list, tuple)):
            v = v[_index_of(k, len(v))]
        elif isinstance(v, Mapping):
            if not isinstance(k, str):
                raise FuncError(f"value has type {gofmt.go_type(k)}; should be string")
            v = v.get(k, "")
        else:
            raise FuncError(f"can't index item of type {gofmt.go_type(v)}")
    return v


def _slice(v: Any, *idx: Any) -> Any:
    if v is None:
        raise FuncError("slice of untyped nil")
    if len(idx) > 3:
        raise FuncError(f"too many slice indexes: {len(idx)}")
    if isinstance(v, str):
        if len(idx) == 3:
            raise FuncError("cannot 3-index slice a string")
        data = v.encode("utf-8", "surrogateescape")
        size = len(data)
    elif isinstance(v, (list, tuple)):
        size = len(v)
    else:
        raise FuncError(f"can't slice item of type {gofmt.go_type(v)}")
    bounds = [0, size]
    for i, k in enumerate(idx):
        _index_of(k, size + 1)  # a slice bound may equal the length
        if i < 2:
            bounds[i] = k
    if bounds[0] > bounds[1]:
        raise FuncError(f"invalid slice index: {bounds[0]} > {bounds[1]}")
    if isinstance(v, str):
        return data[bounds[0] : bounds[1]].decode("utf-8", "surrogateescape")
    return type(v)(v[bounds[0] : bounds[1]]) if isinstance(v, (gofmt.Strings, gofmt.Ints)) else v[
        bounds[0] : bounds[1]]


def _eval_args(args: tuple[Any, ...]) -> str:
    """What html, js and urlquery escape: one string as it is, else Sprint (no value as ``<no value>``)."""
    if len(args) == 1 and isinstance(args[0], str):
        return args[0]
    return gofmt.sprint(*("<no value>" if a is None else a for a in args))


def _html(*args: Any) -> str:
    s = _eval_args(args)
    return (s.replace("&", "&amp;").replace("'", "&#39;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&#34;").replace("\0", "\ufffd"))


def _js(*args: Any) -> str:
    out = []
    for c in _eval_args(args):
        if c in "\\'\"":
            out.append("\\" + c)
        elif c in "<>&=" or c < " " or not gofmt._printable(c):
            out.append(f"\\u{ord(c):04X}")
        else:
            out.append(c)
    return "".join(out)


def _urlquery(*args: Any) -> str:
    from urllib.parse import quote_plus

    return quote_plus(_eval_args(args).encode("utf-8", "surrogateescape"), safe="-_.~")


def _kind(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float"
    if isinstance(v, str):
        return "string"
    if v is None:
        return "nil"
    return "other"


def _eq(a: Any, *bs: Any) -> bool:
    """Go 1.18+'s eq: basic kinds compare by value; no value is unequal to anything but no value."""
    if not bs:
        raise FuncError("missing argument for comparison")
    ka = _kind(a)
    for b in bs:
        kb = _kind(b)
        if ka != kb:
            if ka != "nil" and kb != "nil":
                raise FuncError("incompatible types for comparison")
            continue
        if ka == "other":
            if isinstance(a, Mapping) != isinstance(b, Mapping):  # a slice and a map: kinds differ
                raise FuncError(gofmt.sprintf("non-comparable types %s: %v, %s: %v", a, gofmt.go_type(a),
                                              gofmt.go_type(b), b))
            # slices and maps are not comparable in Go
            raise FuncError(gofmt.sprintf("non-comparable type %s: %v", b, gofmt.go_type(b)))
        if a == b:
            return True
    return False


def _cmp(a: Any, b: Any) -> int:
    ka, kb = _kind(a), _kind(b)
    if "other" in (ka, kb) or "nil" in (ka, kb):
        raise FuncError("invalid type for comparison")
    if ka != kb:
        raise FuncError("incompatible types for comparison")
    if ka == "bool":
        raise FuncError("invalid type for comparison")
    return (a > b) - (a < b)


def _default(default: Any, value: Any) -> str:
    if isinstance(value, str) and value != "":
        return value
    return default if isinstance(default, str) else gofmt.sprintf("%v", default)


_GO_SPACE = " \t\n\v\f\r\x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a" \
            "\u2028\u2029\u202f\u205f\u3000"


def _split(sep: str, s: str) -> list[str]:
    s = s.strip(_GO_SPACE)  # strings.TrimSpace: Unicode White_Space
    if s == "":
        return gofmt.Strings()
    if sep == "":  # strings.Split with "" splits into UTF-8 sequences
        return gofmt.Strings(s)
    return gofmt.Strings(s.split(sep))


def _regex_replace_all(pattern: str, to: str, s: str) -> str:
    from .regex import replace_all

    return replace_all(pattern, to, s)


def _ensure_int(v: Any) -> int:
    if isinstance(v, str):
        body = v[1:] if v[:1] in "+-" else v
        if body and body.isascii() and body.isdigit():
            n = int(v)
            if -(1 << 63) <= n < 1 << 63:
                return n
            raise FuncError(f'strconv.Atoi: parsing "{v}": value out of range')
        raise FuncError(f"strconv.Atoi: parsing {gofmt.quote(v)}: invalid syntax")
    if isinstance(v, int) and not isinstance(v, bool) and not isinstance(v, gofmt.Uint8):
        return v
    # CP's intv.(int) panics; text/template turns the panic into this error
    got = "nil" if v is None else gofmt.go_type(v)
    raise FuncError(f"interface conversion: interface {{}} is {got}, not int")


LOOP_MAX = 1_000_000


def _loop(*params: Any) -> list[int]:
    if len(params) == 1:
        start, stop = 0, _ensure_int(params[0])
    elif len(params) == 2:
        start, stop = _ensure_int(params[0]), _ensure_int(params[1])
    else:
        raise FuncError(f"loop: wrong number of arguments, expected 1 or 2, but got {len(params)}")
    if abs(stop - start) > LOOP_MAX:  # CP would try to allocate it; PID 1 must not run out of memory
        raise FuncError(f"loop: {abs(stop - start)} elements is more than pypilot renders ({LOOP_MAX})")
    return gofmt.Ints(range(start, stop, -1) if stop < start else range(start, stop))


def _sprintf(fmt: str, *args: Any) -> str:
    return gofmt.sprintf(fmt, *args)


ANY, STR, STRS = "any", "string", "[]string"


def table(environ: Mapping[str, str]) -> dict[str, tuple[Callable[..., Any], tuple[str, ...], str | None]]:
    """Every function a template can call, with its Go signature."""

    def env(name: str) -> str:
        return environ.get(name, "")

    return {
        "and": (_and_or, (ANY,), ANY), "or": (_and_or, (ANY,), ANY),
        "not": (lambda v: not truth(v), (ANY,), None),
        "len": (_len, (ANY,), None), "index": (_index, (ANY,), ANY), "slice": (_slice, (ANY,), ANY),
        "print": (gofmt.sprint, (), ANY), "println": (gofmt.sprintln, (), ANY),
        "printf": (_sprintf, (STR,), ANY),
        "html": (_html, (), ANY), "js": (_js, (), ANY), "urlquery": (_urlquery, (), ANY),
        "eq": (_eq, (ANY,), ANY), "ne": (lambda a, b: not _eq(a, b), (ANY, ANY), None),
        "lt": (lambda a, b: _cmp(a, b) < 0, (ANY, ANY), None),
        "le": (lambda a, b: _cmp(a, b) <= 0, (ANY, ANY), None),
        "gt": (lambda a, b: _cmp(a, b) > 0, (ANY, ANY), None),
        "ge": (lambda a, b: _cmp(a, b) >= 0, (ANY, ANY), None),
        "call": (_call, (ANY,), ANY),
        "default": (_default, (ANY, ANY), None), "env": (env, (STR,), None),
        "split": (_split, (STR, STR), None), "join": (lambda sep, items: sep.join(items), (STR, STRS), None),
        "replaceAll": (lambda frm, to, s: s.replace(frm, to), (STR, STR, STR), None),
        "regexReplaceAll": (_regex_replace_all, (STR, STR, STR), None), "loop": (_loop, (), ANY),
    }


def _and_or(*args: Any) -> Any:  # the executor short-circuits these; never called
    raise TemplateError("and/or are evaluated by the executor")


def _call(fn: Any, *args: Any) -> Any:
    if fn is None:
        raise FuncError("call of nil")
    raise FuncError(f"non-function of type {gofmt.go_type(fn)}")
