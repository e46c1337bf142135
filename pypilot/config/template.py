"""A small Go ``text/template`` engine: the subset ContainerPilot 3 configs use.

ContainerPilot renders the raw config file with Go's ``text/template`` (option ``missingkey=zero``) before
parsing it. No maintained Python library speaks Go template syntax, so this module implements what configs
need: ``{{ .VAR }}``, pipelines, parenthesised commands, variables (``$x := ...``, ``$x = ...``),
``if/else if/else``, ``range`` (with ``$i, $v :=`` and ``else``), ``with``, ``define/template/block``,
comments, trim markers ``{{- -}}``, literals (strings, raw strings, chars, numbers, bools, ``nil``), the Go
built-ins ``and or not len index print printf println html js urlquery eq ne lt le gt ge``, and CP's extras
``default env split join replaceAll regexReplaceAll loop`` (§2.2 of the spec).

Not supported, with a clear ``TemplateError``: ``call`` (the data has no function values), ``break`` and
``continue`` (Go 1.18+), and field access on a parenthesised expression.

Difference from ContainerPilot, on purpose: CP built the ``{{ .VAR }}`` map by splitting each ``K=V`` on every
``=`` and keeping only the second part, so ``FOO=a=b`` rendered ``a``. Here ``{{ .FOO }}`` is the full value
``a=b``, the same as ``{{ env "FOO" }}``.

Errors read like Go's: ``template: :LINE: message`` for syntax, ``template: :LINE:COL: executing "" at <node>:
message`` for execution.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

TYPE_CHECKING = False  # typing is ~2-5 ms of PID 1's start-up; mypy reads this name as True
if TYPE_CHECKING:
    from typing import Any

__all__ = ["TemplateError", "go_value", "render"]


class TemplateError(Exception):
    """A template that cannot be parsed or executed; the message is Go-shaped and names the line."""


# --------------------------------------------------------------------------------------------------
# value formatting (Go fmt %v)


def go_float(v: float) -> str:
    """Go ``%v`` of a float64: shortest digits, exponent form when exp < -4 or >= 6 (strconv 'g', -1)."""
    if v != v:
        return "NaN"
    if v in (float("inf"), float("-inf")):
        return "+Inf" if v > 0 else "-Inf"
    if v == 0:
        return "-0" if str(v).startswith("-") else "0"
    sign = "-" if v < 0 else ""
    s = repr(abs(v))
    mant, _, e = s.partition("e")
    exp10 = int(e) if e else 0
    ip, _, fp = mant.partition(".")
    if fp == "0":
        fp = ""
    raw = ip + fp
    stripped = raw.lstrip("0")
    dp = len(ip) - (len(raw) - len(stripped)) + exp10  # decimal point position within `digits`
    digits = stripped.rstrip("0") or "0"
    x = dp - 1
    if x < -4 or x >= 6:
        m = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{m}e{'-' if x < 0 else '+'}{abs(x):02d}"
    if dp <= 0:
        return f"{sign}0.{'0' * -dp}{digits}"
    if dp >= len(digits):
        return sign + digits + "0" * (dp - len(digits))
    return f"{sign}{digits[:dp]}.{digits[dp:]}"


def go_value(v: Any) -> str:
    """Go ``fmt.Sprint`` of one value as the template engine prints it."""
    if v is None:
        return "<no value>"
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return go_float(v)
    if isinstance(v, (list, tuple)):
        return "[" + " ".join(_inner(e) for e in v) + "]"
    if isinstance(v, Mapping):
        return "map[" + " ".join(f"{_inner(k)}:{_inner(v[k])}" for k in sorted(v)) + "]"
    return str(v)


def _inner(v: Any) -> str:
    return "<nil>" if v is None else go_value(v)


def _truth(v: Any) -> bool:
    if v is None:
        return False
    if isinstance(v, (bool, int, float, str, list, tuple, dict)):
        return bool(v)
    return True


# --------------------------------------------------------------------------------------------------
# lexer: the text is split into text and action items; actions are tokenised here

_SPACE = " \t\r\n"


class _Tok:
    __slots__ = ("col", "kind", "line", "val")

    def __init__(self, kind: str, val: Any, line: int, col: int) -> None:
        self.kind, self.val, self.line, self.col = kind, val, line, col

    def __repr__(self) -> str:
        return f"{self.kind}:{self.val!r}"


class _Lexer:
    def __init__(self, src: str) -> None:
        self.src = src
        self.items: list[tuple[str, Any, int]] = []  # ("text", str, line) | ("action", [toks], line)

    def line_of(self, pos: int) -> int:
        return self.src.count("\n", 0, pos) + 1

    def run(self) -> list[tuple[str, Any, int]]:
        src, pos, n = self.src, 0, len(self.src)
        trim_next = False
        while pos < n:
            start = src.find("{{", pos)
            if start < 0:
                text = src[pos:]
                if trim_next:
                    text = text.lstrip(_SPACE)
                if text:
                    self.items.append(("text", text, self.line_of(pos)))
                break
            text = src[pos:start]
            if trim_next:
                text = text.lstrip(_SPACE)
            inner = start + 2
            if src.startswith("-", inner) and inner + 1 < n and src[inner + 1] in _SPACE:
                text = text.rstrip(_SPACE)
                inner += 2
            if text:
                self.items.append(("text", text, self.line_of(pos)))
            line = self.line_of(start)
            # a comment: {{/* ... */}} (Go wants it right after the delimiter and its trim marker)
            if src.startswith("/*", inner):
                end = src.find("*/", inner + 2)
                if end < 0:
                    raise TemplateError(f"template: :{line}: unclosed comment")
                k = end + 2
                trim_next = False
                if src.startswith(" -}}", k) or src.startswith("\t-}}", k) or src.startswith("\n-}}", k):
                    trim_next, k = True, k + 4
                elif src.startswith("}}", k):
                    k += 2
                else:
                    raise TemplateError(f"template: :{line}: comment ends before closing delimiter")
                pos = k
                continue
            toks, pos, trim_next = self._action(inner, line)
            self.items.append(("action", toks, line))
        return self.items

    def _action(self, pos: int, line: int) -> tuple[list[_Tok], int, bool]:
        src, n = self.src, len(self.src)
        toks: list[_Tok] = []
        while True:
            if pos >= n:
                raise TemplateError(f"template: :{line}: unclosed action")
            c = src[pos]
            if c in _SPACE:
                # right trim marker: " -}}"
                k = pos
                while k < n and src[k] in _SPACE:
                    k += 1
                if src.startswith("-}}", k) and k > pos:
                    return toks, k + 3, True
                if src.startswith("}}", k):
                    return toks, k + 2, False
                pos = k
                continue
            if src.startswith("}}", pos):
                return toks, pos + 2, False
            col = pos - src.rfind("\n", 0, pos)
            ln = self.line_of(pos)
            if c == "|":
                toks.append(_Tok("pipe", c, ln, col))
                pos += 1
            elif c in "()":
                toks.append(_Tok(c, c, ln, col))
                pos += 1
            elif c == ",":
                toks.append(_Tok("comma", c, ln, col))
                pos += 1
            elif src.startswith(":=", pos):
                toks.append(_Tok("declare", ":=", ln, col))
                pos += 2
            elif c == "=":
                toks.append(_Tok("assign", "=", ln, col))
                pos += 1
            elif c == '"':
                val, pos = self._quoted(pos, ln)
                toks.append(_Tok("string", val, ln, col))
            elif c == "`":
                end = src.find("`", pos + 1)
                if end < 0:
                    raise TemplateError(f"template: :{ln}: unterminated raw quoted string")
                toks.append(_Tok("string", src[pos + 1 : end], ln, col))
                pos = end + 1
            elif c == "'":
                end = src.find("'", pos + 1)
                if end < 0:
                    raise TemplateError(f"template: :{ln}: unterminated character constant")
                body = src[pos + 1 : end]
                ch = _unescape(body, ln) if body.startswith("\\") else body
                if len(ch) != 1:
                    raise TemplateError(f"template: :{ln}: malformed character constant: '{body}'")
                toks.append(_Tok("number", ord(ch), ln, col))
                pos = end + 1
            elif c.isdigit() or (c in "+-." and pos + 1 < n and src[pos + 1].isdigit()):
                k = pos + 1
                while k < n and (src[k].isalnum() or src[k] in "._+-"):
                    if src[k] in "+-" and src[k - 1] not in "eEpP":
                        break
                    k += 1
                toks.append(_Tok("number", _number(src[pos:k], ln), ln, col))
                pos = k
            elif c == "." or c == "$":
                k = pos + 1
                while k < n and (src[k].isalnum() or src[k] in "_."):
                    k += 1
                word = src[pos:k]
                if c == "$":
                    name, _, rest = word.partition(".")
                    chain = rest.split(".") if rest else []
                    toks.append(_Tok("var", (name, chain), ln, col))
                else:
                    chain = [p for p in word.split(".")[1:]]
                    if word == ".":
                        chain = []
                    elif any(not p for p in chain):
                        raise TemplateError(f"template: :{ln}: bad field name {word!r}")
                    toks.append(_Tok("field", chain, ln, col))
                pos = k
            elif c.isalpha() or c == "_":
                k = pos + 1
                while k < n and (src[k].isalnum() or src[k] == "_"):
                    k += 1
                word = src[pos:k]
                if k < n and src[k] == "." and k + 1 < n and src[k + 1].isalpha():
                    raise TemplateError(f"template: :{ln}: unsupported: field access on {word!r}")
                if word in ("true", "false"):
                    toks.append(_Tok("bool", word == "true", ln, col))
                elif word == "nil":
                    toks.append(_Tok("nil", None, ln, col))
                else:
                    toks.append(_Tok("ident", word, ln, col))
                pos = k
            else:
                raise TemplateError(f"template: :{ln}: unexpected {c!r} in command")

    def _quoted(self, pos: int, ln: int) -> tuple[str, int]:
        src, k = self.src, pos + 1
        while k < len(src):
            if src[k] == "\\":
                k += 2
                continue
            if src[k] == "\n":
                break
            if src[k] == '"':
                return _unescape(src[pos + 1 : k], ln), k + 1
            k += 1
        raise TemplateError(f"template: :{ln}: unterminated quoted string")


_ESC = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'", "a": "\a", "b": "\b", "f": "\f",
        "v": "\v"}


def _unescape(s: str, ln: int) -> str:
    out, i = [], 0
    while i < len(s):
        c = s[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        e = s[i + 1 : i + 2]
        if e in _ESC:
            out.append(_ESC[e])
            i += 2
        elif e in ("x", "u", "U"):
            width = {"x": 2, "u": 4, "U": 8}[e]
            try:
                out.append(chr(int(s[i + 2 : i + 2 + width], 16)))
            except ValueError:
                bad = s[i : i + 2 + width]
                raise TemplateError(f"template: :{ln}: invalid syntax in escape {bad!r}") from None
            i += 2 + width
        elif e.isdigit():
            out.append(chr(int(s[i + 1 : i + 4], 8)))
            i += 4
        else:
            raise TemplateError(f"template: :{ln}: invalid syntax: unknown escape \\{e}")
    return "".join(out)


def _number(word: str, ln: int) -> int | float:
    w = word.replace("_", "")
    try:
        if w.lower().lstrip("+-").startswith(("0x", "0o", "0b")):
            return int(w, 0)
        if len(w.lstrip("+-")) > 1 and w.lstrip("+-").startswith("0") and w.lstrip("+-").isdigit():
            return int(w, 8)  # Go: a leading 0 means octal
        if any(c in w for c in ".eE"):
            f = float(w)
            return f
        return int(w, 10)
    except ValueError:
        raise TemplateError(f"template: :{ln}: bad number syntax: {word!r}") from None


# --------------------------------------------------------------------------------------------------
# parser: items → tree. Nodes are tuples, the first element names the kind.


class _Parser:
    def __init__(self, items: list[tuple[str, Any, int]]) -> None:
        self.items, self.i = items, 0
        self.defines: dict[str, list[Any]] = {}

    def parse(self) -> list[Any]:
        body, end = self._list(())
        if end is not None:
            raise TemplateError(f"template: :{end[2]}: unexpected {{{{{end[0]}}}}}")
        return body

    def _list(self, stops: tuple[str, ...]) -> tuple[list[Any], tuple[str, list[_Tok], int] | None]:
        """Parse until one of the keywords in ``stops`` (returned with the rest of its tokens)."""
        out: list[Any] = []
        while self.i < len(self.items):
            kind, val, line = self.items[self.i]
            self.i += 1
            if kind == "text":
                out.append(("text", val))
                continue
            toks: list[_Tok] = val
            if not toks:
                raise TemplateError(f"template: :{line}: missing value for command")
            head = toks[0]
            kw = head.val if head.kind == "ident" else None
            if kw in ("end", "else"):
                if kw not in stops:
                    raise TemplateError(f"template: :{line}: unexpected {{{{{kw}}}}}")
                return out, (kw, toks[1:], line)
            if kw in ("if", "with", "range"):
                out.append(self._branch(kw, toks[1:], line))
            elif kw in ("define", "block"):
                if len(toks) < 2 or toks[1].kind != "string":
                    raise TemplateError(f"template: :{line}: {kw} requires a quoted name")
                name = toks[1].val
                pipe = self._pipeline(toks[2:], line, kw) if kw == "block" else None
                body, end = self._list(("end",))
                if end is None:
                    raise TemplateError(f"template: :{line}: unexpected EOF")
                self.defines[name] = body
                if kw == "block":
                    out.append(("template", name, pipe, line))
            elif kw == "template":
                if len(toks) < 2 or toks[1].kind != "string":
                    raise TemplateError(f"template: :{line}: template requires a quoted name")
                pipe = self._pipeline(toks[2:], line, "template") if len(toks) > 2 else None
                out.append(("template", toks[1].val, pipe, line))
            elif kw in ("break", "continue", "call"):
                raise TemplateError(f"template: :{line}: unsupported: {{{{{kw}}}}} is not supported "
                                    "by pypilot's template engine")
            else:
                out.append(("action", self._pipeline(toks, line, "command"), line))
        if stops:
            return out, None
        return out, None

    def _branch(self, kw: str, toks: list[_Tok], line: int) -> tuple[Any, ...]:
        pipe = self._pipeline(toks, line, kw)
        body, end = self._list(("end", "else"))
        if end is None:
            raise TemplateError(f"template: :{line}: unexpected EOF")
        else_body: list[Any] = []
        if end[0] == "else":
            rest = end[1]
            if rest and rest[0].kind == "ident" and rest[0].val == "if" and kw == "if":
                # {{else if x}} ... : a nested if that consumes the shared {{end}}
                else_body = [self._branch("if", rest[1:], end[2])]
            elif rest:
                raise TemplateError(f"template: :{end[2]}: unsupported: {{{{else {rest[0].val}}}}}")
            else:
                else_body, end2 = self._list(("end",))
                if end2 is None:
                    raise TemplateError(f"template: :{line}: unexpected EOF")
        return (kw, pipe, body, else_body, line)

    def _pipeline(self, toks: list[_Tok], line: int, ctx: str) -> tuple[Any, ...]:
        decl: list[str] = []
        assign = False
        # variable declarations: $x := ... | $i, $v := ...
        k = 0
        names = []
        while k < len(toks) and toks[k].kind == "var" and not toks[k].val[1]:
            names.append(toks[k].val[0])
            if k + 1 < len(toks) and toks[k + 1].kind == "comma":
                k += 2
                continue
            k += 1
            break
        if names and k < len(toks) and toks[k].kind in ("declare", "assign"):
            decl, assign = names, toks[k].kind == "assign"
            toks = toks[k + 1 :]
        if not toks:
            raise TemplateError(f"template: :{line}: missing value for {ctx}")
        cmds: list[list[Any]] = [[]]
        pos = 0
        while pos < len(toks):
            t = toks[pos]
            if t.kind == "pipe":
                if not cmds[-1]:
                    raise TemplateError(f"template: :{line}: missing command")
                cmds.append([])
                pos += 1
                continue
            node, pos = self._operand(toks, pos, line)
            cmds[-1].append(node)
        if not cmds[-1]:
            raise TemplateError(f"template: :{line}: missing command")
        return ("pipeline", decl, assign, cmds, line)

    def _operand(self, toks: list[_Tok], pos: int, line: int) -> tuple[Any, int]:
        t = toks[pos]
        if t.kind == "(":
            depth, k = 1, pos + 1
            while k < len(toks) and depth:
                depth += {"(": 1, ")": -1}.get(toks[k].kind, 0)
                k += 1
            if depth:
                raise TemplateError(f"template: :{line}: unclosed left paren")
            return ("paren", self._pipeline(toks[pos + 1 : k - 1], line, "parenthesized pipeline")), k
        if t.kind in ("string", "number", "bool", "nil"):
            return ("lit", t.val, t), pos + 1
        if t.kind in ("field", "var", "ident"):
            return (t.kind, t.val, t), pos + 1
        raise TemplateError(f"template: :{t.line}: unexpected {t.val!r} in operand")


# --------------------------------------------------------------------------------------------------
# execution


class _Exec:
    def __init__(self, data: Mapping[str, str], environ: Mapping[str, str],
                 defines: dict[str, list[Any]]) -> None:
        self.environ = environ
        self.defines = defines
        self.vars: list[tuple[str, Any]] = [("$", data)]
        self.out: list[str] = []
        self.funcs: dict[str, Callable[..., Any]] = {
            "and": _and, "or": _or, "not": lambda v: not _truth(v), "len": _len, "index": _index,
            "print": _sprint, "println": _sprintln, "printf": _sprintf, "html": _html, "js": _js,
            "urlquery": _urlquery, "eq": _eq, "ne": lambda a, b: not _eq(a, b),
            "lt": lambda a, b: _cmp(a, b, "lt") < 0, "le": lambda a, b: _cmp(a, b, "le") <= 0,
            "gt": lambda a, b: _cmp(a, b, "gt") > 0, "ge": lambda a, b: _cmp(a, b, "ge") >= 0,
            "default": _default, "env": lambda name: self.environ.get(_want_str(name, "env"), ""),
            "split": _split, "join": _join, "replaceAll": _replace_all,
            "regexReplaceAll": _regex_replace_all, "loop": _loop,
        }

    def walk(self, dot: Any, nodes: list[Any]) -> None:
        for node in nodes:
            kind = node[0]
            if kind == "text":
                self.out.append(node[1])
            elif kind == "action":
                val = self.pipeline(dot, node[1])
                if not node[1][1]:  # a declaration prints nothing; it stays in scope until {{end}}
                    self.out.append(go_value(val))  # raw, as Go: no escaping for the JSON5 around it
            elif kind in ("if", "with"):
                _, pipe, body, else_body, _line = node
                mark = len(self.vars)
                val = self.pipeline(dot, pipe)
                if _truth(val):
                    self.walk(val if kind == "with" else dot, body)
                else:
                    self.walk(dot, else_body)
                del self.vars[mark:]
            elif kind == "range":
                self._range(dot, node)
            elif kind == "template":
                _, name, pipe, line = node
                if name not in self.defines:
                    raise TemplateError(f'template: :{line}: executing "" at <{{{{template "{name}"}}}}>: '
                                        f'template "{name}" not defined')
                new_dot = self.pipeline(dot, pipe) if pipe else None
                saved = self.vars
                self.vars = [("$", new_dot)]
                self.walk(new_dot, self.defines[name])
                self.vars = saved

    def _range(self, dot: Any, node: tuple[Any, ...]) -> None:
        _, pipe, body, else_body, line = node
        mark = len(self.vars)
        decl = pipe[1]
        val = self.pipeline(dot, ("pipeline", [], False, pipe[3], pipe[4]))
        if val is None:
            items: list[tuple[Any, Any]] = []
        elif isinstance(val, (list, tuple)):
            items = list(enumerate(val))
        elif isinstance(val, Mapping):
            items = [(k, val[k]) for k in sorted(val)]
        elif isinstance(val, int) and not isinstance(val, bool):
            raise TemplateError(f"template: :{line}: unsupported: range over an integer")
        else:
            raise TemplateError(f'template: :{line}: executing "" at <range>: range can\'t iterate over '
                                f"{go_value(val)}")
        if not items:
            self.walk(dot, else_body)
        for key, elem in items:
            if len(decl) == 1:
                self.vars.append((decl[0], elem))
            elif len(decl) == 2:
                self.vars.append((decl[0], key))
                self.vars.append((decl[1], elem))
            self.walk(elem, body)
            del self.vars[mark:]

    def pipeline(self, dot: Any, pipe: tuple[Any, ...]) -> Any:
        _, decl, assign, cmds, line = pipe
        val: Any = None
        first = True
        for cmd in cmds:
            val = self.command(dot, cmd, val, first, line)
            first = False
        for name in decl:
            if assign:
                for i in range(len(self.vars) - 1, -1, -1):
                    if self.vars[i][0] == name:
                        self.vars[i] = (name, val)
                        break
                else:
                    raise TemplateError(f"template: :{line}: undefined variable: {name}")
            else:
                self.vars.append((name, val))
        return val

    def command(self, dot: Any, cmd: list[Any], final: Any, first: bool, line: int) -> Any:
        head = cmd[0]
        if head[0] == "ident":
            name = head[1]
            fn = self.funcs.get(name)
            if fn is None:
                raise TemplateError(f'template: :{line}: function "{name}" not defined')
            args = [self.arg(dot, a, line) for a in cmd[1:]]
            if not first:
                args.append(final)
            try:
                return fn(*args)
            except TemplateError as e:
                raise TemplateError(f'template: :{line}: executing "" at <{name}>: error calling {name}: '
                                    f"{e}") from None
            except TypeError:
                raise TemplateError(f'template: :{line}: executing "" at <{name}>: wrong number of args '
                                    f"for {name}: got {len(args)}") from None
        if len(cmd) > 1 or not first:
            raise TemplateError(f'template: :{line}: executing "" at <{_show(head)}>: can\'t give argument '
                                "to non-function " + _show(head))
        return self.arg(dot, head, line)

    def arg(self, dot: Any, node: tuple[Any, ...], line: int) -> Any:
        kind = node[0]
        if kind == "lit":
            return node[1]
        if kind == "paren":
            return self.pipeline(dot, node[1])
        if kind == "field":
            return self.fields(dot, node[1], node, line)
        if kind == "var":
            name, chain = node[1]
            for n, v in reversed(self.vars):
                if n == name:
                    return self.fields(v, chain, node, line)
            raise TemplateError(f"template: :{line}: undefined variable: {name}")
        if kind == "ident":
            fn = self.funcs.get(node[1])
            if fn is None:
                raise TemplateError(f'template: :{line}: function "{node[1]}" not defined')
            try:
                return fn()
            except TypeError:
                raise TemplateError(f'template: :{line}: executing "" at <{node[1]}>: wrong number of args '
                                    f"for {node[1]}: got 0") from None
        raise TemplateError(f"template: :{line}: unexpected node {kind}")

    def fields(self, val: Any, chain: list[str], node: tuple[Any, ...], line: int) -> Any:
        for name in chain:
            if isinstance(val, Mapping):
                # missingkey=zero over a map[string]string: an unset variable is ""
                val = val.get(name, "")
            elif val is None:
                raise TemplateError(f'template: :{line}: executing "" at <{_show(node)}>: nil pointer '
                                    f"evaluating interface {{}}.{name}")
            else:
                raise TemplateError(f'template: :{line}: executing "" at <{_show(node)}>: can\'t evaluate '
                                    f"field {name} in type {_go_type(val)}")
        return val


def _show(node: tuple[Any, ...]) -> str:
    if node[0] == "field":
        return "." + ".".join(node[1])
    if node[0] == "var":
        return node[1][0] + "".join("." + p for p in node[1][1])
    return str(node[1])


def _go_type(v: Any) -> str:
    if isinstance(v, str):
        return "string"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float64"
    if isinstance(v, (list, tuple)):
        return "[]int" if all(isinstance(e, int) for e in v) and v else "[]string"
    if v is None:
        return "nil"
    return "map[string]string"


# --------------------------------------------------------------------------------------------------
# functions


def _want_str(v: Any, fn: str) -> str:
    if not isinstance(v, str):
        raise TemplateError(f"wrong type for value; expected string; got {_go_type(v)}")
    return v


def _and(*args: Any) -> Any:
    if not args:
        raise TypeError
    for a in args:
        if not _truth(a):
            return a
    return args[-1]


def _or(*args: Any) -> Any:
    if not args:
        raise TypeError
    for a in args:
        if _truth(a):
            return a
    return args[-1]


def _len(v: Any) -> int:
    if isinstance(v, (str, list, tuple, Mapping)):
        return len(v)
    raise TemplateError(f"len of type {_go_type(v)}")


def _index(v: Any, *keys: Any) -> Any:
    for k in keys:
        if isinstance(v, (list, tuple, str)):
            if not isinstance(k, int) or isinstance(k, bool):
                raise TemplateError(f"cannot index slice/array with type {_go_type(k)}")
            if not 0 <= k < len(v):
                raise TemplateError(f"index out of range: {k}")
            v = v[k] if not isinstance(v, str) else ord(v[k])
        elif isinstance(v, Mapping):
            v = v.get(k, "")
        else:
            raise TemplateError(f"can't index item of type {_go_type(v)}")
    return v


def _sprint(*args: Any) -> str:
    # fmt.Sprint: a space between operands when neither side is a string
    out = []
    for i, a in enumerate(args):
        if i and not isinstance(a, str) and not isinstance(args[i - 1], str):
            out.append(" ")
        out.append(_inner(a))
    return "".join(out)


def _sprintln(*args: Any) -> str:
    return " ".join(_inner(a) for a in args) + "\n"


def _sprintf(fmt: Any, *args: Any) -> str:
    fmt = _want_str(fmt, "printf")
    out, i, argi = [], 0, 0
    while i < len(fmt):
        c = fmt[i]
        if c != "%":
            out.append(c)
            i += 1
            continue
        j = i + 1
        while j < len(fmt) and fmt[j] in "+-# 0123456789.":
            j += 1
        if j >= len(fmt):
            out.append("%!(NOVERB)")
            break
        flags, verb = fmt[i + 1 : j], fmt[j]
        i = j + 1
        if verb == "%":
            out.append("%")
            continue
        if argi >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        a = args[argi]
        argi += 1
        out.append(_fmt_one(flags, verb, a))
    if argi < len(args):
        out.append("%!(EXTRA " + ", ".join(f"{_go_type(a)}={_inner(a)}" for a in args[argi:]) + ")")
    return "".join(out)


def _fmt_one(flags: str, verb: str, a: Any) -> str:
    try:
        if verb in "vs":
            return ("%" + flags + "s") % _inner(a)
        if verb == "q":
            s = _inner(a)
            return ("%" + flags + "s") % ('"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"')
        if verb in "dxXob" and isinstance(a, int):
            return ("%" + flags + ("x" if verb == "x" else "X" if verb == "X" else "o" if verb == "o"
                                   else "d")) % a if verb != "b" else format(a, "b")
        if verb in "feEgG" and isinstance(a, (int, float)):
            return ("%" + flags + verb) % a
        if verb == "t" and isinstance(a, bool):
            return "true" if a else "false"
        if verb == "c" and isinstance(a, int):
            return chr(a)
    except (ValueError, TypeError):
        pass
    return f"%!{verb}({_go_type(a)}={_inner(a)})"


def _html(*args: Any) -> str:
    s = _sprint(*args)
    return (s.replace("&", "&amp;").replace("'", "&#39;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&#34;").replace("\0", "\ufffd"))


def _js(*args: Any) -> str:
    out = []
    for c in _sprint(*args):
        if c in "\\'\"":
            out.append("\\" + c)
        elif c == "<":
            out.append("\\x3C")
        elif c == ">":
            out.append("\\x3E")
        elif not c.isprintable():
            out.append(f"\\u{ord(c):04X}")
        else:
            out.append(c)
    return "".join(out)


def _urlquery(*args: Any) -> str:
    from urllib.parse import quote_plus

    return quote_plus(_sprint(*args), safe="-_.~")


def _basic(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float"
    if isinstance(v, str):
        return "string"
    raise TemplateError("invalid type for comparison")


def _eq(a: Any, *bs: Any) -> bool:
    if not bs:
        raise TemplateError("missing argument for comparison")
    ka = _basic(a)
    for b in bs:
        if _basic(b) != ka:
            raise TemplateError("incompatible types for comparison")
        if a == b:
            return True
    return False


def _cmp(a: Any, b: Any, _op: str) -> int:
    ka, kb = _basic(a), _basic(b)
    if ka != kb:
        raise TemplateError("incompatible types for comparison")
    if ka == "bool":
        raise TemplateError("invalid type for comparison")
    return (a > b) - (a < b)


def _default(default: Any, value: Any = None) -> str:
    if isinstance(value, str) and value != "":
        return value
    return default if isinstance(default, str) else go_value(default)


def _split(sep: Any, s: Any) -> list[str]:
    s = _want_str(s, "split").strip()
    sep = _want_str(sep, "split")
    if s == "":
        return []
    return s.split(sep) if sep else list(s)


def _join(sep: Any, items: Any) -> str:
    sep = _want_str(sep, "join")
    if not isinstance(items, (list, tuple)) or not all(isinstance(i, str) for i in items):
        raise TemplateError(f"wrong type for value; expected []string; got {_go_type(items)}")
    return sep.join(items)


def _replace_all(frm: Any, to: Any, s: Any) -> str:
    return _want_str(s, "replaceAll").replace(_want_str(frm, "replaceAll"), _want_str(to, "replaceAll"))


def _regex_replace_all(pattern: Any, to: Any, s: Any) -> str:
    import re

    try:
        rx = re.compile(_want_str(pattern, "regexReplaceAll"))
    except re.error as e:
        raise TemplateError(f"error parsing regexp: {e}: `{pattern}`") from None
    tmpl = _want_str(to, "regexReplaceAll")

    def expand(m: re.Match[str]) -> str:
        # Go's Expand: $1, ${1}, $name, ${name}; $$ is a literal $; an unknown group is ""
        out, i = [], 0
        while i < len(tmpl):
            c = tmpl[i]
            if c != "$" or i + 1 >= len(tmpl):
                out.append(c)
                i += 1
                continue
            if tmpl[i + 1] == "$":
                out.append("$")
                i += 2
                continue
            if tmpl[i + 1] == "{":
                end = tmpl.find("}", i + 2)
                if end < 0:
                    out.append(c)
                    i += 1
                    continue
                name, i = tmpl[i + 2 : end], end + 1
            else:
                j = i + 1
                while j < len(tmpl) and (tmpl[j].isalnum() or tmpl[j] == "_"):
                    j += 1
                if j == i + 1:
                    out.append(c)
                    i += 1
                    continue
                name, i = tmpl[i + 1 : j], j
            try:
                g = m.group(int(name) if name.isdigit() else name)
            except IndexError:
                g = None
            out.append(g or "")
        return "".join(out)

    return rx.sub(expand, _want_str(s, "regexReplaceAll"))


def _ensure_int(v: Any) -> int:
    if isinstance(v, str):
        try:
            return int(v, 10) if v.strip() == v else int("x")
        except ValueError:
            raise TemplateError(f'strconv.Atoi: parsing "{v}": invalid syntax') from None
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    raise TemplateError(f"interface conversion: interface {{}} is {_go_type(v)}, not int")


def _loop(*params: Any) -> list[int]:
    if len(params) == 1:
        start, stop = 0, _ensure_int(params[0])
    elif len(params) == 2:
        start, stop = _ensure_int(params[0]), _ensure_int(params[1])
    else:
        raise TemplateError(f"loop: wrong number of arguments, expected 1 or 2, but got {len(params)}")
    if stop < start:
        return list(range(start, stop, -1))
    return list(range(start, stop))


# --------------------------------------------------------------------------------------------------


def render(text: str, environ: Mapping[str, str]) -> str:
    """Render ``text`` as a Go template over ``environ`` (``{{ .VAR }}`` = the full value; see above)."""
    if "{{" not in text:
        return text  # the common case costs nothing
    parser = _Parser(_Lexer(text).run())
    tree = parser.parse()
    ex = _Exec(dict(environ), environ, parser.defines)
    ex.walk(ex.vars[0][1], tree)
    return "".join(ex.out)
