"""Go duration syntax (``time.ParseDuration``) and ContainerPilot's duration rules.

Go accepts ``[-+]?(\\d*\\.?\\d+ unit)+`` with units ``ns us µs μs ms s m h`` (``"0"`` alone needs no
unit); errors read ``time: invalid duration X``, ``time: missing unit in duration X``,
``time: unknown unit U in duration X``
(Go 1.9 wording, without quotes, as ContainerPilot printed them). ContainerPilot's own rule on top
(``timing.ParseDuration``): a value that parses as a base-10 integer means seconds.
"""

from __future__ import annotations

__all__ = ["NS_PER_MS", "NS_PER_S", "DurationError", "parse_cp_duration", "parse_go_duration"]

NS_PER_S = 1_000_000_000
NS_PER_MS = 1_000_000
_MAX = (1 << 63) - 1
_UNITS = {"ns": 1, "us": 1000, "\u00b5s": 1000, "\u03bcs": 1000, "ms": NS_PER_MS, "s": NS_PER_S,
          "m": 60 * NS_PER_S, "h": 3600 * NS_PER_S}


class DurationError(ValueError):
    """A duration that Go would reject; the message is Go's."""


def parse_go_duration(orig: str) -> int:
    """Parse a Go duration string into integer nanoseconds."""
    s = orig
    neg = False
    if s and s[0] in "+-":
        neg = s[0] == "-"
        s = s[1:]
    if s == "0":
        return 0
    if s == "":
        raise DurationError(f"time: invalid duration {orig}")
    total = 0
    while s:
        if not (s[0] == "." or s[0].isdigit()):
            raise DurationError(f"time: invalid duration {orig}")
        i = 0
        while i < len(s) and "0" <= s[i] <= "9":
            i += 1
        whole, s = s[:i], s[i:]
        frac = ""
        if s.startswith("."):
            s = s[1:]
            i = 0
            while i < len(s) and "0" <= s[i] <= "9":
                i += 1
            frac, s = s[:i], s[i:]
        if not whole and not frac:
            raise DurationError(f"time: invalid duration {orig}")
        i = 0
        while i < len(s) and s[i] != "." and not ("0" <= s[i] <= "9"):
            i += 1
        unit, s = s[:i], s[i:]
        if not unit:
            raise DurationError(f"time: missing unit in duration {orig}")
        scale = _UNITS.get(unit)
        if scale is None:
            raise DurationError(f"time: unknown unit {unit} in duration {orig}")
        v = int(whole or "0") * scale
        if frac:
            v += int(frac) * scale // 10 ** len(frac)
        total += v
        if total > _MAX:
            raise DurationError(f"time: invalid duration {orig}")
    return -total if neg else total


def _atoi(s: str) -> int | None:
    """Go ``strconv.Atoi``: optional sign, ASCII decimal digits only."""
    body = s[1:] if s[:1] in ("+", "-") else s
    if not body or not body.isascii() or not body.isdigit():
        return None
    return int(s)


def parse_cp_duration(value: str) -> int:
    """ContainerPilot's duration: an integer string means seconds, anything else is Go syntax. Nanoseconds."""
    i = _atoi(value)
    if i is not None:
        return parse_go_duration(f"{i}s")
    return parse_go_duration(value)
