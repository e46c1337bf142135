"""pypilot.gofmt: Go's fmt and strconv as ContainerPilot printed through them (#14, #18.5). Each expected
string was checked against the ContainerPilot 3.8 binary (tests/config/test_template_vs_cp.py does so
live when the binary is there); these pin them without it."""

from __future__ import annotations

import pytest

from pypilot.gofmt import Ints, Strings, go_float, sprint, sprintf, sprintln


@pytest.mark.parametrize(("v", "s"), [
    (0.5, "0.5"), (100.0, "100"), (1e21, "1e+21"), (1e-5, "1e-05"), (123456.0, "123456"),
    (1234567.0, "1.234567e+06"), (-2.5, "-2.5"), (123456789.0, "1.23456789e+08"), (0.0001, "0.0001"),
    (-0.0, "-0"), (float("inf"), "+Inf"), (float("nan"), "NaN"), (1e100, "1e+100"),
])
def test_go_float_is_strconv_g_shortest(v: float, s: str) -> None:
    assert go_float(v) == s


@pytest.mark.parametrize(("fmt", "args", "want"), [
    ("%x|%X|% x|%#x", ("hi", "hi", "hi", "hi"), "6869|6869|68 69|0x6869"),
    ("%s|%d|%v|%t", (5, "a", None, 3), "%!s(int=5)|%!d(string=a)|<nil>|%!t(int=3)"),
    ("%q", (Strings(["web", "lb"]),), '["web" "lb"]'),
    ("%v %d %s", (Strings(["a", "b"]), Ints([1, 2]), Ints([1])), "[a b] [1 2] [%!s(int=1)]"),
    ("%[2]d %[1]d", (1, 2), "2 1"),
    ("%*d|%-*d|", (5, 1, 5, 2), "    1|2    |"),
    ("%U|%#U", (0x1F600, 97), "U+1F600|U+0061 'a'"),
    ("%T %T %T %T %T %T", (1, 1.5, "s", True, Strings(), None), "int float64 string bool []string <nil>"),
    ("%d %d", (1,), "1 %!d(MISSING)"),
    ("%d", (1, 2, "x", None), "1%!(EXTRA int=2, string=x, <nil>)"),
    ("%", (), "%!(NOVERB)"),
    ("%[3]d|%[x]d", (1, 2), "%!d(BADINDEX)|%!d(BADINDEX)"),
    ("%05d|%+d|% d|%#o|%#08x|%O|%b", (42, 42, 42, 8, 255, 8, 5), "00042|+42| 42|010|0x000000ff|0o10|101"),
    ("%f|%.2f|%e|%g|%G|%08.3f|%x|%#g", (3.14159, 3.14159, 1234.5678, 0.000012, 1e21, -3.5, 1.5, 3.5),
     "3.141590|3.14|1.234568e+03|1.2e-05|1E+21|-003.500|0x1.8p+00|3.50000"),
    ("%5s|%-5s|%.2s|%05s|%q|%+q|%#q", ("ab", "ab", "héllo", "ab", 'a"b\n', "é", "a`b"),
     '   ab|ab   |hé|000ab|"a\\"b\\n"|"\\u00e9"|"a`b"'),
    ("%c|%q", (65, 0x263A), "A|'☺'"),
    ("%v|%#v", ({"B": "2", "A": "1"}, Strings(["a"])), 'map[A:1 B:2]|[]string{"a"}'),
])
def test_sprintf_as_go(fmt: str, args: tuple[object, ...], want: str) -> None:
    assert sprintf(fmt, *args) == want


def test_sprint_spaces_only_between_non_strings_and_sprintln_always() -> None:
    assert sprint(1, 2, "a", 3, None, None) == "1 2a3 <nil> <nil>"
    assert sprintln(1, "a", 2.5) == "1 a 2.5\n"
