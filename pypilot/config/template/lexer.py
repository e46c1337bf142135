"""The template lexer: splits the source into text and actions (``{{ ... }}``, trim markers and comments
applied) and tokenises each action. Positions are character offsets; lines are counted incrementally."""

from __future__ import annotations

from pypilot import gofmt

from .errors import TemplateError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

_SPACE = " \t\r\n"
_ESC = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'", "a": "\a", "b": "\b", "f": "\f",
        "v": "\v"}
KEYWORDS = frozenset(("block", "break", "continue", "define", "else", "end", "if", "range", "template",
                      "with"))


class LexError(Exception):
    """A lexing error: it becomes an ``error`` token where it happened, and lexing stops there, so the
    parser reports it only if nothing before it is wrong (Go lexes as the parser reads)."""

    def __init__(self, msg: str, line: int) -> None:
        super().__init__(msg)
        self.msg, self.line = msg, line


class Tok:
    """One token of an action: ``kind`` is pipe, (, ), comma, declare, assign, string, number, char, bool,
    nil, field, var, ident or keyword; ``end`` tells whether the next token touches it (``(x).F``)."""

    __slots__ = ("end", "kind", "line", "pos", "text", "val")

    def __init__(self, kind: str, val: Any, text: str, pos: int, end: int, line: int) -> None:
        self.kind, self.val, self.text, self.pos, self.end, self.line = kind, val, text, pos, end, line


class Text:
    __slots__ = ("line", "pos", "text")

    def __init__(self, text: str, pos: int, line: int) -> None:
        self.text, self.pos, self.line = text, pos, line


class Action:
    """One ``{{ ... }}``: its tokens, and the lines of its start and of its closing delimiter."""

    __slots__ = ("end_line", "line", "pos", "toks")

    def __init__(self, toks: list[Tok], pos: int, line: int, end_line: int) -> None:
        self.toks, self.pos, self.line, self.end_line = toks, pos, line, end_line


class Lexer:
    def __init__(self, src: str) -> None:
        self.src = src
        self._line, self._line_pos = 1, 0  # the line of offset _line_pos: lines only move forward

    def line_of(self, pos: int) -> int:
        if pos < self._line_pos:  # never on the forward path; kept correct for any caller
            return self.src.count("\n", 0, pos) + 1
        self._line += self.src.count("\n", self._line_pos, pos)
        self._line_pos = pos
        return self._line

    def run(self) -> list[Text | Action]:
        src, pos, n = self.src, 0, len(self.src)
        items: list[Text | Action] = []
        trim_next = False
        while pos < n:
            start = src.find("{{", pos)
            text = src[pos:] if start < 0 else src[pos:start]
            text_pos = pos
            if trim_next:
                stripped = text.lstrip(_SPACE)
                text_pos += len(text) - len(stripped)
                text = stripped
            if start < 0:
                if text:
                    items.append(Text(text, text_pos, self.line_of(text_pos)))
                break
            inner = start + 2
            if src.startswith("-", inner) and inner + 1 < n and src[inner + 1] in _SPACE:
                text = text.rstrip(_SPACE)
                inner += 2
            if text:
                items.append(Text(text, text_pos, self.line_of(text_pos)))
            line = self.line_of(start)
            toks: list[Tok] = []
            try:
                if src.startswith("/*", inner):  # a comment: right after the delimiter and its trim marker
                    pos, trim_next = self._comment(inner, line)
                    continue
                pos, trim_next = self._action(inner, line, toks)
            except LexError as e:
                toks.append(Tok("error", e.msg, "", start, start, e.line))
                items.append(Action(toks, start, line, e.line))
                break
            items.append(Action(toks, start, line, self.line_of(pos)))
        return items

    def _comment(self, inner: int, line: int) -> tuple[int, bool]:
        src = self.src
        end = src.find("*/", inner + 2)
        if end < 0:
            raise LexError("unclosed comment", line)
        k = end + 2
        if src[k : k + 1] in (" ", "\t", "\r", "\n") and src.startswith("-}}", k + 1):
            return k + 4, True
        if src.startswith("}}", k):
            return k + 2, False
        raise LexError("comment ends before closing delimiter", line)

    def _action(self, pos: int, line: int, toks: list[Tok]) -> tuple[int, bool]:
        """Tokenise one action into ``toks``: where it ends and whether it trims the text after it."""
        src, n = self.src, len(self.src)
        while True:
            if pos >= n:
                raise LexError("unclosed action", self.line_of(pos))
            c = src[pos]
            if c in _SPACE:
                k = pos
                while k < n and src[k] in _SPACE:
                    k += 1
                if src.startswith("-}}", k):
                    return k + 3, True
                if src.startswith("}}", k):
                    return k + 2, False
                pos = k
                continue
            if src.startswith("}}", pos):
                return pos + 2, False
            ln = self.line_of(pos)
            tok = self._token(pos, ln)
            toks.append(tok)
            pos = tok.end

    def _closing(self, pos: int, quote: str, ln: int, what: str) -> int:
        """The offset of the quote that closes the one at ``pos`` (escapes skipped, on one line)."""
        src, k = self.src, pos + 1
        while k < len(src) and src[k] != quote and src[k] != "\n":
            k += 2 if src[k] == "\\" and src[k + 1 : k + 2] != "\n" else 1
        if k >= len(src) or src[k] != quote:
            raise LexError(what, ln)
        return k

    def _token(self, pos: int, ln: int) -> Tok:
        """The token at ``pos``, as Go's lexInsideAction cuts it."""
        src = self.src
        c = src[pos]
        if c == ":":
            if not src.startswith(":=", pos):
                raise LexError("expected :=", ln)
            return Tok("declare", ":=", ":=", pos, pos + 2, ln)
        if c in _SIMPLE:
            return Tok(_SIMPLE[c], c, c, pos, pos + 1, ln)
        if c in "\"`'":
            return self._quoted(pos, ln)
        if c == "." and not src[pos + 1 : pos + 2].isdecimal():
            return self._word(pos, ln)
        if c in "+-." or "0" <= c <= "9":
            return self._number(pos, ln)
        if c == "$" or _alnum(c):
            return self._word(pos, ln)
        if c < "\x7f" and c.isprintable():
            return Tok("char", c, c, pos, pos + 1, ln)
        raise LexError(f"unrecognized character in action: {gofmt.sprintf('%#U', ord(c))}", ln)

    def _quoted(self, pos: int, ln: int) -> Tok:
        src, c = self.src, self.src[pos]
        if c == '"':
            k = self._closing(pos, '"', ln, "unterminated quoted string")
            return Tok("string", _later(unescape, src[pos + 1 : k], ln), src[pos : k + 1], pos, k + 1, ln)
        if c == "`":
            end = src.find("`", pos + 1)
            if end < 0:
                raise LexError("unterminated raw quoted string", ln)
            return Tok("string", src[pos + 1 : end], src[pos : end + 1], pos, end + 1, ln)
        k = self._closing(pos, "'", ln, "unterminated character constant")
        return Tok("number", _later(_char, src[pos + 1 : k], ln), src[pos : k + 1], pos, k + 1, ln)

    def _number(self, pos: int, ln: int) -> Tok:
        """Go's lexNumber: a number, and a complex one if a sign follows (``1+2i``)."""
        k = self._scan_number(pos, pos, ln)
        if self.src[k : k + 1] in ("+", "-"):
            k = self._scan_number(pos, k, ln)
            if self.src[k - 1] != "i":
                raise LexError(gofmt.sprintf("bad number syntax: %q", self.src[pos:k]), ln)
        word = self.src[pos:k]
        return Tok("number", _later(number, word, ln), word, pos, k, ln)

    def _scan_number(self, start: int, pos: int, ln: int) -> int:
        """Go's scanNumber from ``pos``: sign, base prefix, digits, fraction, exponent, ``i``; a letter or
        digit right after is a bad number (quoted from ``start``)."""
        src, n = self.src, len(self.src)
        k = pos + (src[pos] in "+-")
        digits = "0123456789_"
        if src.startswith("0", k):
            k += 1
            base = src[k : k + 1].lower()
            if base in ("x", "o", "b"):
                digits = {"x": "0123456789abcdefABCDEF_", "o": "01234567_", "b": "01_"}[base]
                k += 1
        while k < n and src[k] in digits:
            k += 1
        if src.startswith(".", k):
            k += 1
            while k < n and src[k] in digits:
                k += 1
        for marks, base_digits in (("eE", 11), ("pP", 23)):
            if len(digits) == base_digits and src[k : k + 1] and src[k] in marks:
                k += 1 + (src[k + 1 : k + 2] in ("+", "-"))
                while k < n and src[k] in "0123456789_":
                    k += 1
        k += src.startswith("i", k)
        if k < n and _alnum(src[k]):
            raise LexError(gofmt.sprintf("bad number syntax: %q", src[start : k + 1]), ln)
        return k

    def _word(self, pos: int, ln: int) -> Tok:
        """An identifier, keyword, ``.field.chain`` or ``$var.chain``; what follows must end it."""
        src, n = self.src, len(self.src)
        c = src[pos]
        k = pos + (c in ".$")
        while k < n and _alnum(src[k]):  # one link: the parser joins ".A" ".B" that touch into a chain
            k += 1
        if k < n and not self._terminator(k):
            raise LexError(f"bad character {gofmt.sprintf('%#U', ord(src[k]))}", ln)
        word = src[pos:k]
        if c in ".$":
            head, *chain = word.split(".")
            if c == "$":
                return Tok("var", (head, chain), word, pos, k, ln)
            return Tok("field", [] if word == "." else chain, word, pos, k, ln)
        kind = ("bool" if word in ("true", "false") else "nil" if word == "nil"
                else "keyword" if word in KEYWORDS else "ident")
        val: Any = word == "true" if kind == "bool" else None if kind == "nil" else word
        return Tok(kind, val, word, pos, k, ln)

    def _terminator(self, k: int) -> bool:
        src = self.src
        return (src[k] in " \t\r\n.,|:()" or src.startswith("}}", k)
                or (src[k] in _SPACE and src.startswith("-}}", k + 1)))


_SIMPLE = {"|": "pipe", "(": "(", ")": ")", ",": "comma", "=": "assign"}


def _later(convert: Callable[[str, int], Any], text: str, ln: int) -> Any:
    """A constant's value, or the error converting it: Go's parser (not its lexer) converts, so the
    error is raised only if the parser gets that far (``value``)."""
    try:
        return convert(text, ln)
    except LexError as e:
        return e


def value(t: Tok) -> Any:
    """The value of a constant token; raises the conversion error it holds, on its line."""
    if isinstance(t.val, LexError):
        raise TemplateError(f"template: :{t.line}: {t.val.msg}")
    return t.val


def _char(body: str, ln: int) -> int:
    if not body:
        raise LexError("invalid syntax", ln)
    ch = unescape(body, ln) if body.startswith("\\") else body
    if len(ch) != 1:
        raise LexError(f"malformed character constant: '{body}'", ln)
    return ord(ch)


def _alnum(c: str) -> bool:
    """Go's isAlphaNumeric: ``_``, a Unicode letter or a decimal digit."""
    return c == "_" or c.isalpha() or c.isdecimal()


def unescape(s: str, ln: int) -> str:
    """A Go quoted string's body (strconv.Unquote)."""
    if "\\" not in s:
        return s
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
                code = int(s[i + 2 : i + 2 + width], 16)
                # \xNN is a byte: Go strings hold bytes; a lone high byte stays one (surrogateescape)
                out.append(chr(code) if e != "x" or code < 0x80 else chr(0xDC00 + code))
            except ValueError:
                raise LexError("invalid syntax", ln) from None
            i += 2 + width
        elif e in "01234567" and e:
            out.append(chr(0xDC00 + int(s[i + 1 : i + 4], 8)) if int(s[i + 1 : i + 4], 8) >= 0x80
                       else chr(int(s[i + 1 : i + 4], 8)))
            i += 4
        else:
            raise LexError("invalid syntax", ln)
    return _bytes_to_text("".join(out))


def _bytes_to_text(s: str) -> str:
    """Escaped bytes that together spell UTF-8 become their characters (``"\\xc3\\xa9"`` is é)."""
    if not any("\udc80" <= c <= "\udcff" for c in s):
        return s
    return s.encode("utf-8", "surrogateescape").decode("utf-8", "surrogateescape")


def number(word: str, ln: int) -> int | float | complex:
    """A number constant's value, as Go's parser reads one (an int if it is one, else a float64; with an
    ``i``, a complex128)."""
    w = word.replace("_", "")
    for i, c in enumerate(word):  # Go: an underscore only between digits (or after a base prefix)
        if c == "_" and not (0 < i < len(word) - 1 and word[i - 1].isalnum() and word[i + 1].isalnum()):
            raise LexError(f"illegal number syntax: \"{word}\"", ln)
    if w.endswith("i"):
        try:
            return complex(w[:-1] + "j")
        except ValueError:
            raise LexError(f"illegal number syntax: \"{word}\"", ln) from None
    body = w.lstrip("+-")
    try:
        if body.lower().startswith(("0x", "0o", "0b")) and not any(c in body for c in ".pP"):
            v = int(w, 0)
        elif body.lower().startswith("0x"):
            return float.fromhex(w)
        elif len(body) > 1 and body.startswith("0") and body.isdigit():
            if not set(body) <= set("01234567"):  # Go: not octal, but it reads as a float: too big an int
                raise LexError(f"integer overflow: \"{word}\"", ln)
            v = int(w, 8)  # Go: a leading 0 means octal
        elif any(c in w for c in ".eE"):
            return float(w)
        else:
            v = int(w, 10)
    except ValueError:
        raise LexError(f"illegal number syntax: \"{word}\"", ln) from None
    if not -(1 << 63) <= v < 1 << 64:  # neither int64 nor uint64 (between: "overflows int" when used)
        raise LexError(f"integer overflow: \"{word}\"", ln)
    return v
