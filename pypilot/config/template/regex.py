"""``regexReplaceAll`` as Go's ``regexp.ReplaceAllString``: RE2 syntax through the ``google-re2`` binding
(the same engine family Go's regexp reimplements: ASCII ``\\w \\d \\s \\b``, ``$`` only at the end, ``\\pL``,
``\\Q..\\E``, ``(?U)``), Go's replacement loop (no empty match right after a previous match) and Go's
``$1``/``${1}``/``$name`` expansion. Imported only when a template calls the function: re2 is a C++
extension PID 1 does not load otherwise."""

from __future__ import annotations

from .errors import FuncError

# RE2's error texts as Go's regexp/syntax words them
_GO_ERRORS = {
    "missing )": "missing closing )", "missing ]": "missing closing ]",
    "bad repetition operator": "invalid nested repetition operator",
    "invalid repetition size": "invalid repeat count",
    "no argument for repetition operator": "missing argument to repetition operator",
    "invalid perl operator": "invalid or unsupported Perl syntax",
    "invalid named capture group": "invalid named capture",
}


def _go_syntax_gaps(pattern: str) -> None:
    """What RE2 accepts and Go 1.19's regexp does not: ``\\C`` and ``(?<name>``."""
    i = 0
    while i < len(pattern):
        if pattern[i] == "\\":
            if pattern[i + 1 : i + 2] == "C":
                raise FuncError("error parsing regexp: invalid escape sequence: `\\C`")
            i += 2
            continue
        if pattern.startswith("(?<", i):
            raise FuncError("error parsing regexp: invalid or unsupported Perl syntax: `(?<`")
        i += 1


def _compile(pattern: str):  # type: ignore[no-untyped-def]
    import re2

    _go_syntax_gaps(pattern)
    opts = re2.Options()
    opts.log_errors = False  # the error is the template's; RE2 would also log it to PID 1's stderr
    try:
        return re2.compile(pattern.encode("utf-8", "surrogateescape"), opts)
    except re2.error as e:
        raw = e.args[0] if e.args else b""
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        code, _, arg = text.partition(": ")
        if code == "trailing \\":
            raise FuncError("error parsing regexp: trailing backslash at end of expression: ``") from None
        raise FuncError(f"error parsing regexp: {_GO_ERRORS.get(code, code)}: `{arg}`") from None


def replace_all(pattern: str, template: str, s: str) -> str:
    rx = _compile(pattern)
    src = s.encode("utf-8", "surrogateescape")
    tmpl = template.encode("utf-8", "surrogateescape")
    names = {k if isinstance(k, bytes) else k.encode(): i for k, i in rx.groupindex.items()}
    out: list[bytes] = []
    last_end = search = 0
    while search <= len(src):
        m = rx.search(src, search)
        if m is None:
            break
        start, end = m.span()
        out.append(src[last_end:start])
        if end > last_end or start == 0:  # Go: no replacement for an empty match right after a match
            out.append(_expand(tmpl, m, names))
        last_end = end
        width = _rune_width(src, search)
        if search + width > end:
            search += width
        elif search + 1 > end:
            search += 1
        else:
            search = end
    out.append(src[last_end:])
    return b"".join(out).decode("utf-8", "surrogateescape")


def _rune_width(b: bytes, i: int) -> int:
    if i >= len(b):
        return 0
    c = b[i]
    if c < 0x80:
        return 1
    want = 2 if c >> 5 == 0b110 else 3 if c >> 4 == 0b1110 else 4 if c >> 3 == 0b11110 else 1
    if want == 1 or i + want > len(b) or any(x >> 6 != 0b10 for x in b[i + 1 : i + want]):
        return 1
    return want


def _expand(tmpl: bytes, m, names: dict[bytes, int]) -> bytes:  # type: ignore[no-untyped-def]
    """Go's ``Regexp.Expand``: ``$$`` is ``$``; ``$name``/``${name}`` is the longest run of letters, digits
    and ``_`` (so ``$1x`` is the group named ``1x``); a number without leading zeros is a group index; an
    unknown group is empty; a malformed ``$`` is literal."""
    if b"$" not in tmpl:
        return tmpl
    out: list[bytes] = []
    rest = tmpl
    while True:
        before, dollar, after = rest.partition(b"$")
        out.append(before)
        if not dollar:
            break
        rest = after
        if rest[:1] == b"$":
            out.append(b"$")
            rest = rest[1:]
            continue
        name, rest2 = _extract(rest)
        if name is None:
            out.append(b"$")
            continue
        rest = rest2
        group = _group_number(name)
        if group < 0:
            group = names.get(name, -1)
        if 0 <= group <= m.re.groups:
            g = m.group(group)
            if g is not None:
                out.append(g)
    return b"".join(out)


def _extract(s: bytes) -> tuple[bytes | None, bytes]:
    brace = s[:1] == b"{"
    body = s[1:] if brace else s
    text = body.decode("utf-8", "surrogateescape")
    i = 0
    while i < len(text) and (text[i].isalpha() or text[i].isdecimal() or text[i] == "_"):
        i += 1
    if i == 0:
        return None, s
    name = text[:i].encode("utf-8", "surrogateescape")
    after = body[len(name) :]
    if brace:
        if after[:1] != b"}":
            return None, s
        after = after[1:]
    return name, after


def _group_number(name: bytes) -> int:
    if not name.isdigit() or (name[:1] == b"0" and len(name) > 1) or len(name) > 8:
        return -1
    return int(name)
