"""Format as Go does: ``strconv.FormatFloat``, ``strconv.Quote`` and ``fmt``'s ``Sprint``/``Sprintln``/
``Sprintf``, over Go values as pypilot holds them.

The mapping of Go types to Python: ``string`` str, ``bool`` bool, ``int`` int, ``uint8`` :class:`Uint8`,
``float64`` float, ``[]string`` :class:`Strings`, ``[]int`` :class:`Ints`, ``[]interface {}`` any other list,
``map[string]string`` a Mapping, untyped ``nil`` None. ContainerPilot's messages and templates print
through Go's fmt; whoever reproduces one imports it from here. Only stdlib modules PID 1 already holds.
"""

from __future__ import annotations

from collections.abc import Mapping

TYPE_CHECKING = False  # typing costs PID 1's start-up; mypy reads this name as True
if TYPE_CHECKING:
    from typing import Any

__all__ = ["Ints", "Strings", "Uint8", "go_float", "go_type", "quote", "sprint", "sprintf", "sprintln"]


class Strings(list):
    """A Go ``[]string`` (what ``split`` returns)."""

    __slots__ = ()


class Ints(list):
    """A Go ``[]int`` (what ``loop`` returns)."""

    __slots__ = ()


class Uint8(int):
    """A Go ``byte`` (what ``index`` of a string returns)."""

    __slots__ = ()


def go_type(v: Any) -> str:
    """Go's ``%T``: the type's name as reflect prints it (a class may name its Go type in ``go_name``)."""
    name = getattr(type(v), "go_name", None)
    if name:
        return str(name)
    if v is None:
        return "<nil>"
    if isinstance(v, str):
        return "string"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, Uint8):
        return "uint8"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float64"
    if isinstance(v, complex):
        return "complex128"
    if isinstance(v, Strings):
        return "[]string"
    if isinstance(v, Ints):
        return "[]int"
    if isinstance(v, (list, tuple)):
        return "[]interface {}"
    if isinstance(v, Mapping):
        return "map[string]string"
    return type(v).__name__


# --------------------------------------------------------------------------------------------------
# strconv


def _digits(v: float) -> tuple[str, int]:
    """The shortest decimal digits of ``abs(v)`` (non-zero, finite) and the decimal point's position."""
    mant, _, e = repr(abs(v)).partition("e")
    ip, _, fp = mant.partition(".")
    if fp == "0":
        fp = ""
    raw = ip + fp
    stripped = raw.lstrip("0")
    dp = len(ip) - (len(raw) - len(stripped)) + (int(e) if e else 0)
    return stripped.rstrip("0") or "0", dp


def go_float(v: float) -> str:
    """``strconv.FormatFloat(v, 'g', -1, 64)``, which ``%v`` prints: 1 → ``1``, 1e6 → ``1e+06``."""
    if v != v:
        return "NaN"
    if v in (float("inf"), float("-inf")):
        return "+Inf" if v > 0 else "-Inf"
    if v == 0:
        return "-0" if str(v).startswith("-") else "0"
    sign = "-" if v < 0 else ""
    digits, dp = _digits(v)
    x = dp - 1
    if x < -4 or x >= 6:  # the shortest form decides with precision 6 (strconv)
        m = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{m}e{'-' if x < 0 else '+'}{abs(x):02d}"
    if dp <= 0:
        return f"{sign}0.{'0' * -dp}{digits}"
    if dp >= len(digits):
        return sign + digits + "0" * (dp - len(digits))
    return f"{sign}{digits[:dp]}.{digits[dp:]}"


def _float(v: float, verb: str, prec: int) -> str:
    """``strconv.FormatFloat(v, verb, prec, 64)``; the result keeps its sign only when negative."""
    if v != v:
        return "NaN"
    if v in (float("inf"), float("-inf")):
        return "+Inf" if v > 0 else "-Inf"
    if verb in "gG" and prec < 0:
        s = go_float(v)
        return s.upper() if verb == "G" else s
    if verb in "eEfgG":
        if verb in "gG" and prec == 0:
            prec = 1
        return ("%." + str(prec) + verb) % v
    if verb in "xX":
        s = _hex_float(v, prec)
        return s.upper() if verb == "X" else s
    if verb == "b":
        import math

        if v == 0:
            return ("-" if str(v).startswith("-") else "") + "0p-1074"
        m, e = math.frexp(abs(v))
        return f"{'-' if v < 0 else ''}{int(m * (1 << 53))}p{e - 53:+d}"
    return "%" + verb


def _hex_float(v: float, prec: int) -> str:
    """``%x`` of a float: ``[-]0x1.hhhp±dd``, shortest or rounded (half to even) to ``prec`` hex digits."""
    import math

    sign = "-" if math.copysign(1.0, v) < 0 else ""
    if v == 0:
        return sign + "0x0" + ("." + "0" * prec if prec > 0 else "") + "p+00"
    m, e = math.frexp(abs(v))  # abs(v) = m * 2**e, 0.5 <= m < 1
    mant, exp = int(m * (1 << 53)), e - 1  # 1.fraction × 2**exp with 52 fraction bits
    frac_bits = 52
    if 0 <= prec < 13:
        shift = frac_bits - 4 * prec
        q, r = divmod(mant, 1 << shift)
        half = 1 << (shift - 1)
        if r > half or (r == half and q & 1):
            q += 1
        mant, frac_bits = q, 4 * prec
        if mant >> frac_bits >= 2:
            mant >>= 1
            exp += 1
            if frac_bits:
                mant <<= 1  # keep the digit count: 1.000 stays four digits
    frac = mant & ((1 << frac_bits) - 1)
    hexd = format(frac, "x").rjust(frac_bits // 4, "0") if frac_bits else ""
    if prec < 0:
        hexd = hexd.rstrip("0")
    elif prec > len(hexd):
        hexd += "0" * (prec - len(hexd))
    return f"{sign}0x1{'.' + hexd if hexd else ''}p{'-' if exp < 0 else '+'}{abs(exp):02d}"


def _printable(c: str) -> bool:
    """Go's ``unicode.IsPrint``: letters, marks, numbers, punctuation, symbols and the ASCII space."""
    if c == " ":
        return True
    import unicodedata

    return unicodedata.category(c)[0] in "LMNPS"


def _quote_rune(c: str, ascii_only: bool, quote: str) -> str:
    o = ord(c)
    if c == quote or c == "\\":
        return "\\" + c
    if o < 0x80 and " " <= c <= "~":
        return c
    if not ascii_only and o >= 0x80 and _printable(c):
        return c
    esc = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}.get(c)
    if esc:
        return esc
    if 0xD800 <= o <= 0xDFFF:  # a byte that was not UTF-8 (surrogateescape) or a lone surrogate
        return f"\\x{o & 0xFF:02x}" if 0xDC80 <= o <= 0xDCFF else "\\ufffd"
    if o < 0x80:
        return f"\\x{o:02x}"
    if o < 0x10000:
        return f"\\u{o:04x}"
    return f"\\U{o:08x}"


def quote(s: str, ascii_only: bool = False) -> str:
    """``strconv.Quote`` (``QuoteToASCII`` when ``ascii_only``)."""
    return '"' + "".join(_quote_rune(c, ascii_only, '"') for c in s) + '"'


def _quote_char(o: int, ascii_only: bool) -> str:
    """``strconv.QuoteRune``: an invalid code point is U+FFFD."""
    c = chr(o) if 0 <= o <= 0x10FFFF and not 0xD800 <= o <= 0xDFFF else "\ufffd"
    return "'" + _quote_rune(c, ascii_only, "'") + "'"


def _backquotable(s: str) -> bool:
    return all(c == "\t" or not (c < " " or c in "`\x7f\ufeff") for c in s)


# --------------------------------------------------------------------------------------------------
# fmt


class _Flags:
    __slots__ = ("minus", "plus", "prec", "sharp", "space", "wid", "zero")

    def __init__(self) -> None:
        self.minus = self.plus = self.sharp = self.space = self.zero = False
        self.wid: int | None = None
        self.prec: int | None = None


_PLAIN = _Flags()


def _pad(s: str, f: _Flags) -> str:
    if f.wid is None or len(s) >= f.wid:
        return s
    fill = f.wid - len(s)
    if f.minus:
        return s + " " * fill
    return ("0" if f.zero else " ") * fill + s


def _bad(verb: str, v: Any, f: _Flags) -> str:
    if v is None:
        return f"%!{verb}(<nil>)"
    return f"%!{verb}({go_type(v)}={_arg(v, 'v', f)})"


def _int(v: int, verb: str, f: _Flags) -> str:
    if verb == "c":
        return _pad(chr(v) if 0 <= v <= 0x10FFFF and not 0xD800 <= v <= 0xDFFF else "\ufffd", f)
    if verb == "q":
        return _pad(_quote_char(v, f.plus), f)
    if verb == "U":
        s = f"U+{v & 0xFFFFFFFFFFFFFFFF:0{max(4, f.prec or 0)}X}"  # as uint64, like Go
        if f.sharp and 0 <= v <= 0x10FFFF and _printable(chr(v)):
            s += f" '{chr(v)}'"
        return _pad(s, _nozero(f))
    base = {"v": 10, "d": 10, "b": 2, "o": 8, "O": 8, "x": 16, "X": 16}.get(verb)
    if base is None:
        return _bad(verb, v, f)
    neg, u = v < 0, abs(v)
    if f.prec is not None and f.prec == 0 and u == 0:
        return " " * (f.wid or 0)
    digits = format(u, {10: "d", 2: "b", 8: "o", 16: "X" if verb == "X" else "x"}[base])
    prec = f.prec or 0
    if f.prec is None and f.zero and f.wid is not None:
        prec = f.wid - (1 if neg or f.plus or f.space else 0)
    digits = digits.rjust(prec, "0")
    if f.sharp:
        if base == 2:
            digits = "0b" + digits
        elif base == 8 and not digits.startswith("0"):
            digits = "0" + digits
        elif base == 16:
            digits = ("0X" if verb == "X" else "0x") + digits
    if verb == "O":
        digits = "0o" + digits
    sign = "-" if neg else "+" if f.plus else " " if f.space else ""
    return _pad(sign + digits, _nozero(f))


def _nozero(f: _Flags) -> _Flags:
    """The flags with ``zero`` off: Go pads these verbs with spaces whatever the flag says."""
    if not f.zero:
        return f
    g = _Flags()
    g.minus, g.plus, g.sharp, g.space, g.wid, g.prec = f.minus, f.plus, f.sharp, f.space, f.wid, f.prec
    return g


def _float_verb(v: float, verb: str, f: _Flags) -> str:
    if verb == "v":
        verb, prec = "g", -1
    elif verb in "bgGxX":
        prec = -1
    elif verb in "feEF":
        verb, prec = ("f" if verb == "F" else verb), 6
    else:
        return _bad(verb, v, f)
    if f.prec is not None:
        prec = f.prec
    num = _float(v, verb, prec)
    if num[0] not in "+-":
        num = "+" + num
    if f.space and num[0] == "+" and not f.plus:
        num = " " + num[1:]
    if num[1] in "IN":  # Inf and NaN are not padded with zeros
        if num[1] == "N" and not f.space and not f.plus:
            num = num[1:]
        return _pad(num, _nozero(f))
    if f.sharp and verb != "b":
        num = _sharp_float(num, verb, prec)
    if f.plus or num[0] != "+":
        if f.zero and f.wid is not None and f.wid > len(num):
            return num[0] + "0" * (f.wid - len(num)) + num[1:]
        return _pad(num, f)
    return _pad(num[1:], f)


def _sharp_float(num: str, verb: str, prec: int) -> str:
    """The ``#`` flag: always a decimal point, and %g keeps its trailing zeros (Go's fmtFloat)."""
    digits = (6 if prec == -1 else prec) if verb in "gGx" else 0
    tail, has_point, nonzero = "", False, False
    i = 1
    while i < len(num):
        c = num[i]
        if c == ".":
            has_point = True
        elif c in "pP" or (c in "eE" and verb not in "xX"):
            tail, num = num[i:], num[:i]
            break
        else:
            nonzero = nonzero or c != "0"
            if nonzero:
                digits -= 1
        i += 1
    if not has_point:
        if num[1:] == "0":
            digits -= 1
        num += "."
    return num + "0" * max(digits, 0) + tail


def _str(s: str, verb: str, f: _Flags, sharp_v: bool) -> str:
    if verb == "v" and sharp_v:
        verb = "q"
    if verb in "vs":
        return _pad(s if f.prec is None else s[: f.prec], f)
    if verb == "q":
        if f.prec is not None:
            s = s[: f.prec]
        if f.sharp and _backquotable(s):
            return _pad("`" + s + "`", f)
        return _pad(quote(s, f.plus), f)
    if verb in "xX":
        data = s.encode("utf-8", "surrogateescape")
        if f.prec is not None:
            data = data[: f.prec]
        parts = []
        for i, b in enumerate(data):
            if f.space and i:
                parts.append(" ")
            if f.sharp and (f.space or i == 0):
                parts.append("0X" if verb == "X" else "0x")
            parts.append(f"{b:02X}" if verb == "X" else f"{b:02x}")
        return _pad("".join(parts), f)
    return _bad(verb, s, f)


def _arg(v: Any, verb: str, f: _Flags, sharp_v: bool = False) -> str:
    """Go's ``printArg`` of one operand."""
    if v is None:
        return _pad("<nil>", f) if verb in "Tv" else _bad(verb, v, f)
    if verb == "T":
        t = go_type(v)
        return _pad(t if f.prec is None else t[: f.prec], f)
    if verb == "p":
        return _bad(verb, v, f)
    if isinstance(v, bool):
        return _pad("true" if v else "false", f) if verb in "tv" else _bad(verb, v, f)
    if isinstance(v, int):
        return _int(v, verb, f)
    if isinstance(v, float):
        return _float_verb(v, verb, f)
    if isinstance(v, complex):
        if verb not in "bgGxXfFeEv":
            return _bad(verb, v, f)
        imag = _nozero(f) if f.zero else _Flags()
        if not f.zero:
            imag.minus, imag.sharp, imag.space, imag.wid, imag.prec = f.minus, f.sharp, f.space, f.wid, f.prec
        imag.zero, imag.plus = f.zero, True  # Go prints the imaginary part with its sign always
        return f"({_float_verb(v.real, verb, f)}{_float_verb(v.imag, verb, imag)}i)"
    if isinstance(v, str):
        return _str(v, verb, f, sharp_v)
    if isinstance(v, (list, tuple)):
        if sharp_v:
            elem = go_type(v)
            return elem + "{" + ", ".join(_arg(e, verb, f, True) for e in v) + "}"
        return "[" + " ".join(_arg(e, verb, f) for e in v) + "]"
    if isinstance(v, Mapping):
        keys = sorted(v)
        if sharp_v:
            return go_type(v) + "{" + ", ".join(f"{_arg(k, verb, f, True)}:{_arg(v[k], verb, f, True)}"
                                               for k in keys) + "}"
        return "map[" + " ".join(f"{_arg(k, verb, f)}:{_arg(v[k], verb, f)}" for k in keys) + "]"
    return _pad(str(v), f)


def sprint(*args: Any) -> str:
    """``fmt.Sprint``: a space between two operands when neither is a string."""
    out = []
    prev_str = False
    for i, a in enumerate(args):
        is_str = isinstance(a, str)
        if i and not is_str and not prev_str:
            out.append(" ")
        out.append(_arg(a, "v", _PLAIN))
        prev_str = is_str
    return "".join(out)


def sprintln(*args: Any) -> str:
    """``fmt.Sprintln``: spaces between all operands, then a newline."""
    return " ".join(_arg(a, "v", _PLAIN) for a in args) + "\n"


def _parsenum(s: str, i: int) -> tuple[int | None, int]:
    n, start = 0, i
    while i < len(s) and "0" <= s[i] <= "9":
        if n > 1_000_000:
            return None, len(s)
        n = n * 10 + ord(s[i]) - 48
        i += 1
    return (n if i > start else None), i


class _Printf:
    """One ``fmt.Sprintf`` call: Go's doPrintf, state and all (argument cursor, ``[n]`` reordering)."""

    def __init__(self, fmt: str, args: tuple[Any, ...]) -> None:
        self.fmt, self.args = fmt, args
        self.argn, self.reordered = 0, False
        self.out: list[str] = []

    def arg_index(self, i: int) -> tuple[int, bool, bool]:
        """Parse ``[n]`` at ``i``: the new position, whether one was there, whether it was good."""
        fmt = self.fmt
        if i >= len(fmt) or fmt[i] != "[":
            return i, False, True
        self.reordered = True
        close = fmt.find("]", i + 1)
        if close < 0 or len(fmt) - i < 3:
            return i + 1, True, False
        num, j = _parsenum(fmt, i + 1)
        if num is None or j != close:
            return close + 1, True, False
        if 0 <= num - 1 < len(self.args):
            self.argn = num - 1
            return close + 1, True, True
        return close + 1, True, False

    def int_arg(self) -> int | None:
        """A ``*`` width or precision: the next operand if it is a small int."""
        if self.argn >= len(self.args):
            return None
        a = self.args[self.argn]
        self.argn += 1
        if isinstance(a, int) and not isinstance(a, bool) and -1_000_000 <= a <= 1_000_000:
            return a
        return None

    def flags(self, i: int) -> tuple[_Flags, int]:
        f, fmt = _Flags(), self.fmt
        while i < len(fmt) and fmt[i] in "#0+- ":
            c = fmt[i]
            if c == "#":
                f.sharp = True
            elif c == "0":
                f.zero = not f.minus  # zero padding only to the left
            elif c == "+":
                f.plus = True
            elif c == "-":
                f.minus, f.zero = True, False
            else:
                f.space = True
            i += 1
        return f, i

    def width_and_precision(self, f: _Flags, i: int) -> tuple[int, bool, bool]:
        """Parse ``[n]``, width, ``.precision`` (each maybe ``*``): position, after-index, good index."""
        fmt, n = self.fmt, len(self.fmt)
        i, after_index, good = self.arg_index(i)
        if i < n and fmt[i] == "*":
            i += 1
            f.wid = self.int_arg()
            if f.wid is None:
                self.out.append("%!(BADWIDTH)")
            elif f.wid < 0:
                f.wid, f.minus, f.zero = -f.wid, True, False
            after_index = False
        else:
            f.wid, i = _parsenum(fmt, i)
            if after_index and f.wid is not None:  # "%[3]2d"
                good = False
        if i + 1 < n and fmt[i] == ".":
            i += 1
            if after_index:  # "%[3].2d"
                good = False
            i, after_index, ok = self.arg_index(i)
            good = good and ok
            if i < n and fmt[i] == "*":
                i += 1
                f.prec = self.int_arg()
                if f.prec is not None and f.prec < 0:
                    f.prec = None
                if f.prec is None:
                    self.out.append("%!(BADPREC)")
                after_index = False
            else:
                f.prec, i = _parsenum(fmt, i)
                if f.prec is None:
                    f.prec = 0
        return i, after_index, good

    def run(self) -> str:
        fmt, n, out, i = self.fmt, len(self.fmt), self.out, 0
        while i < n:
            j = fmt.find("%", i)
            if j < 0:
                out.append(fmt[i:])
                break
            out.append(fmt[i:j])
            f, i = self.flags(j + 1)
            i, after_index, good = self.width_and_precision(f, i)
            if not after_index:
                i, after_index, ok = self.arg_index(i)
                good = good and ok
            if i >= n:
                out.append("%!(NOVERB)")
                break
            verb = fmt[i]
            i += 1
            self.verb(verb, f, good)
        if not self.reordered and self.argn < len(self.args):
            rest = self.args[self.argn :]
            extra = ("<nil>" if a is None else f"{go_type(a)}={_arg(a, 'v', _PLAIN)}" for a in rest)
            out.append("%!(EXTRA " + ", ".join(extra) + ")")
        return "".join(out)

    def verb(self, verb: str, f: _Flags, good: bool) -> None:
        if verb == "%":  # takes no operand and ignores width and precision
            self.out.append("%")
        elif not good:
            self.out.append(f"%!{verb}(BADINDEX)")
        elif self.argn >= len(self.args):
            self.out.append(f"%!{verb}(MISSING)")
        else:
            sharp_v = False
            if verb == "v":  # %#v is Go syntax; %+v's plus is for struct fields
                sharp_v, f.sharp, f.plus = f.sharp, False, False
            self.out.append(_arg(self.args[self.argn], verb, f, sharp_v))
            self.argn += 1


def sprintf(fmt: str, *args: Any) -> str:
    """``fmt.Sprintf`` with Go's verbs, flags, ``*`` widths, ``[n]`` argument indexes and error forms."""
    return _Printf(fmt, args).run()
