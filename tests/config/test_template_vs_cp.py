# ruff: noqa: E501  (the corpus holds templates verbatim, one per line)
"""Differential: a corpus of templates rendered by pypilot and by the real ContainerPilot 3.8 binary
(``containerpilot -config FILE -template``) must agree byte for byte, output and error message (#14).

The binary is ``$PYPILOT_CONTAINERPILOT`` or ``../shared/bin/containerpilot`` from the repository; without
it these tests are skipped. The environment holds no value with ``=``: there pypilot differs on purpose
(CP cut ``{{ .VAR }}`` at the first ``=``)."""

from __future__ import annotations

import itertools
import os
import subprocess
from pathlib import Path

import pytest

from pypilot.config.template import TemplateError, render

ROOT = Path(__file__).resolve().parents[2]
CP = Path(os.environ.get("PYPILOT_CONTAINERPILOT") or ROOT.parent / "shared" / "bin" / "containerpilot")
ENV = {"PATH": "/usr/bin:/bin", "NAME": "Template", "PARTS": "a:b:c", "COUNT": "3", "TAGS": "web,lb",
       "EMPTY": "", "U": "héllo ☃", "Q": 'x", "y', "B": "a\\nb", "N": "l1\nl2", "SP": "  a b  "}
PREFIX = "could not apply template to config: "

pytestmark = pytest.mark.skipif(not os.access(CP, os.X_OK), reason=f"no ContainerPilot 3.8 binary at {CP}")


def containerpilot(text: str, tmp_path: Path) -> tuple[bool, str]:
    path = tmp_path / "t.json5"
    path.write_text(text)
    r = subprocess.run([str(CP), "-config", str(path), "-template"], capture_output=True, env=ENV, timeout=30)
    out = r.stdout.decode("utf-8", "surrogateescape")
    if r.returncode:
        assert PREFIX in out, (r.returncode, out, r.stderr)
        message = out.split(PREFIX, 1)[1]
        return False, message[:-1] if message.endswith("\n") else message  # the log line's own newline
    return True, out


def pypilot(text: str) -> tuple[bool, str]:
    try:
        return True, render(text, ENV)
    except TemplateError as e:
        return False, str(e)


CORPUS = [
    # #14's cases: the raw paste
    '{tags: ["{{ .TAGS | split "," | join "\\", \\"" }}"]}',
    '"{{ "\\t" }}" "{{ println "a" }}" "{{ "say \\"hi\\"" }}" \'{{ .Q }}\' "{{ .B }}" "{{ .N }}"',
    # printf
    '{{ printf "%x|%X|% x|%#x|% #x" "hi" "hi" "hi" "hi" "hi" }}',
    '{{ printf "%s|%d|%v|%t|%f|%c" 5 "a" nil 3 "x" 1.5 }}',
    '{{ printf "%q|%v|%x|%d|%s" (split "," .TAGS) (split "," .TAGS) (split "," .TAGS) (loop 3) (loop 2) }}',
    '{{ printf "%[2]d %[1]d|%*d|%-*d|%.*f|%[3]*.[2]*[1]f" 1 2 5 }}',
    '{{ printf "%U|%#U|%c|%q|%+q|%#q" 0x1F600 \'a\' 0x263A \'é\' \'é\' \'x\' }}',
    '{{ printf "%T %T %T %T %T %T %T %T" 1 1.5 "s" true (split "," "a") (loop 2) . nil }}',
    '{{ printf "%v|%#v|%s|%d" . . (split "," "a,b") (split "," "a,b") }}',
    '{{ len "héllo" }}|{{ len .U }}|{{ len (split ":" .PARTS) }}|{{ len . | printf "%T" }}',
    '{{ nil | printf "%v" }}',
    '{{ printf "%d %d" 1 }}|{{ printf "%d" 1 2 "x" nil }}|{{ printf "%" }}|{{ printf "%!" }}|{{ printf "%z" 1 }}',
    '{{ printf "%[3]d %d" 1 2 }}|{{ printf "%[0]d" 1 }}|{{ printf "%[x]d" 1 }}|{{ printf "%.*d|%*d" 3 5 "w" 5 }}',
    '{{ printf "%f|%.2f|%e|%E|%g|%G|%8.3f|%-8.2f|%+.1e|%v|%08.3f|%+08d|%x" 3.14159 3.14159 1234.5678 1234.5678 '
    '0.000012 1e21 3.14159 2.5 12345.678 1e6 -3.5 42 1.5 }}',
    '{{ printf "%5s|%-5s|%.2s|%05s|%q|%x|%5.1q|%-6x|" "ab" "ab" "héllo" "ab" "a\\"b\\n\\x00\\u00a0" "é" "abc" "hi" }}',
    "{{ 1.0 }} {{ 1e100 }} {{ 0.1 }} {{ 123456789.0 }} {{ 1e-7 }} {{ 100000.0 }} {{ 1000000.0 }} {{ -0.0 }}",
    "{{ 'a' }} {{ '\\n' }} {{ 0x1F }} {{ 0o17 }} {{ 0b101 }} {{ 1_000 }} {{ 017 }} {{ 1e3 }} {{ +5 }} {{ .5 }}",
    '{{ "\\x41\\u00e9\\U0001F600\\101\\a" | printf "%q" }}|{{ print 1 2 "a" 3 nil nil }}|{{ println 1 "a" }}',
    # regexp: RE2 syntax, Go's empty-match rule and $ expansion
    '{{ regexReplaceAll "x*" "-" "axb" }}|{{ regexReplaceAll "a|" "-" "baaac" }}|{{ regexReplaceAll "" "-" "hé" }}',
    '{{ regexReplaceAll "(\\\\w+)@(\\\\w+)" "$2 at $1x ${1}x $$ $ ${x" "bob@host é@ü" }}',
    '{{ regexReplaceAll "(?P<u>\\\\w+)@" "[$u][${u}][$1x][$01][$10][${1}]" "bob@x" }}',
    '{{ regexReplaceAll "\\\\pL+" "L" "héllo 123" }}|{{ regexReplaceAll "\\\\w+" "W" "héllo" }}|'
    '{{ regexReplaceAll "\\\\bl" "B" "la la" }}|{{ regexReplaceAll "\\\\s+" "_" "a\\u00a0b c" }}',
    '{{ regexReplaceAll "a$" "Z" "a\\na" }}|{{ regexReplaceAll "(?m)a$" "Z" "a\\na" }}|'
    '{{ regexReplaceAll "a\\\\z" "Z" "aa" }}|{{ regexReplaceAll "\\\\Q.*\\\\E" "!" "a.*b" }}|'
    '{{ regexReplaceAll "[[:digit:]]+" "#" "a12b3" }}|{{ regexReplaceAll "(?U)a+" "-" "aaa" }}',
    '{{ .NAME | regexReplaceAll "[epa]+" "_" }}',
    '{{ regexReplaceAll "(" "" "x" }}',
    '{{ regexReplaceAll "a**" "" "x" }}',
    '{{ regexReplaceAll "(?<n>a)" "" "x" }}',
    '{{ regexReplaceAll "\\\\Z" "" "x" }}',
    '{{ regexReplaceAll "\\\\C" "" "x" }}',
    # actions, variables, functions
    '{{ range $i, $v := split ":" .PARTS }}{{ if eq $i 1 }}{{ continue }}{{ end }}{{ if eq $v "c" }}{{ break }}'
    "{{ end }}[{{$i}}{{$v}}]{{ end }}",
    '{{ define "x" }}<{{ . }}>{{ end }}{{ template "x" }}{{ template "x" .NAME }}{{ block "b" 5 }}({{.}}){{ end }}',
    "{{ $x := 1 }}{{ if true }}{{ $x = 2 }}{{ $y := 3 }}{{ end }}{{ $x }}",
    "{{ with $x := .NAME }}{{ $x }}{{ . }}{{ end }}{{ with .EMPTY }}no{{ else }}empty{{ end }}",
    '{{ range .NONE }}x{{ else }}none{{ end }}|{{ range $k, $v := . }}{{ if eq $k "COUNT" }}{{ $k }}={{ $v }}'
    "{{ end }}{{ end }}",
    '{{ index "abc" 1 }}|{{ index . "NAME" }}|{{ slice "héllo" 1 3 }}|{{ slice (split ":" .PARTS) 1 }}',
    '{{ and 1 0 }} {{ or 0 "" }}|{{ and 0 (index "x" 5) }}|{{ or 1 (index "x" 5) }}|{{ 0 | and 1 }}',
    '{{ eq "a" "b" "a" }} {{ lt "a" "b" }} {{ ge 1.5 1.5 }} {{ ne .NAME "x" }} {{ not .EMPTY }}',
    '{{ html "<a&b>\\"\'" }}|{{ js "a\\\\b\'c\\"d<e>f&g=h\\n\\u2028" }}|{{ urlquery "a b&c=d/é" }}|{{ html 1 "a" 2 }}',
    "{{ `a\\nb` }}|{{- \" x \" -}}|  {{- .NAME }}  {{- /* c */ -}}  end\na {{/* c */}} b {{- /* d */}} c",
    '{{ default "d" .EMPTY }}|{{ default "d" .NAME }}|{{ .EMPTY | default 1.5 }}|{{ default "x" 5 }}|'
    '{{ default (split "," "a,b") "" }}',
    '{{ loop 3 }}|{{ loop -2 2 }}|{{ loop "2" "-1" }}|{{ range $i := loop 2 5 -}} i={{$i}},{{ end }}',
    '{{ env "NAME" }}{{ env "NOPE" }}|{{ replaceAll "a" "" "banana" }}|{{ split "" "abc" }}|{{ split "," .SP }}',
    "{{ . }}|{{ .NOPE }}|{{ .NAME }}",
    '{consul: "{{ .CONSUL | default "localhost" }}:8500", jobs: [{{ range $i := loop .COUNT }}'
    '{name: "job{{ $i }}", exec: "sleep {{ $i }}"},{{ end }}]}',
    # errors, as Go words them
    "{{ .NAME.X }}", "a\n{{ call .X }}", "{{ range 5 }}{{ end }}", "{{ loop 1 2 3 }}", '{{ loop "x" }}',
    "{{ $nope }}", "{{ eq 1 }}", '{{ join "," (loop 3) }}', '{{ 5 | split "," }}', "{{ if }}{{ end }}",
    "{{ end }}", "{{ if 1 }}", "{{ .X", "{{ foo }}", "{{ 1 | 2 }}", '{{ template "nope" }}', "{{ break }}",
    '{{ "abc }}', "{{ 0x }}", "{{ env 5 }}", "{{ env nil }}", "{{ len 5 }}", '{{ index (split "," "a") 5 }}',
    "{{ printf 5 }}", '{{ (split "," "a").X }}', "{{ $x := 1 }}{{ $x.Y }}", "{{ not }}", "{{ loop 1.5 }}",
    "{{ .NAME 1 }}", "{{ lt true false }}", "{{ eq 1 1.0 }}",
    '{{ define "x" }}{{ template "x" }}{{ end }}{{ template "x" }}', '{{ define "x" }}{{ .A.B }}{{ end }}{{ template "x" . }}',
    "{{ 99999999999999999999 }}", "{{ print 0x8000000000000000 }}", '{{ eq (split "," "a") (split "," "a") }}',
    "{{ call nil }}", "{{ if 1 }}{{ else }}{{ else }}{{ end }}", "{{ end 1 }}", '{{ | printf "%d" }}',
    '{{ printf "%d" 1) }}', "{{ $x = 1 }}", "{{ @ }}", "{{ range $i := loop 3 }}{{ $i = 5 }}{{ end }}x",
    '{{ join "," "abc" }}', "{{ range $x := 1 }}{{ end }}", "{{ range . }}{{ break 1 }}{{ end }}",
    # more that renders
    '{{ printf "%d" | }}', '{{ eq .NAME nil }}{{ eq nil nil }}{{ eq nil 1 }}', '{{ urlquery "a" 1 true nil }}|{{ js 1 }}|{{ html nil }}',
    '{{ (printf "%d" 5) }}{{ ( 1 ) }}{{(.NAME)}}{{ (.) }}{{ $ }}{{ $.NAME }}', "{{ .A.B.C }}{{ . | len }}",
    '{{ range $i, $e := loop 3 }}{{ $i }}{{ $e }}{{ $.NAME }}{{ end }}{{ range loop 3 }}{{ . }}{{ end }}',
    '{{ if eq .COUNT "3" }}three{{ else if eq .COUNT "4" }}four{{ else }}other{{ end }}',
    '{{ $a := "x" }}{{ with $a }}{{ $a = "y" }}{{ end }}{{ $a }}', "{{ 9223372036854775807 }} {{ 5e-324 }} {{ 1.5e300 }}",
    "{{ '\\'' }} {{ '\\\\' }} {{ '\\x41' }} {{ '\\u263a' }}", '{{ "a\nb" }}',
    '{{ true | not }}{{ not 0 }}{{ not "" }}{{ not (loop 0) }}|{{ index . "NAME" "x" }}',
    '{{ println (split "," "a,b") (loop 2) 1.5 true nil }}{{ print . }}',
    '{{ eq (loop 2) (split "," .TAGS) }}', '{{ eq . (split "," .TAGS) }}', '{{ slice "abc" nil }}', '{{ index (loop 2) nil }}',
    '{{ slice "abc" 4 }}', '{{ slice "abc" 3 }}|{{ slice "abc" 0 3 }}|{{ slice (loop 3) 1 2 3 }}', '{{ slice "abc" 1 2 3 }}',
]


@pytest.mark.parametrize("text", CORPUS)
def test_renders_as_containerpilot(text: str, tmp_path: Path) -> None:
    assert pypilot(text) == containerpilot(text, tmp_path)


VALUES = ["1+2i", "0", "-7", "42", "255", "3.5", "-0.25", "1e21", "1e-7", '""', '"héllo"', '"a\\"b"', "true", "nil",
          "'x'", '(split "," "a,b")', "(loop 2)"]
VERBS = "vdsqxXobeEfgGcUtT"
FLAGS = ["", "-", "+", "#", " ", "0", "5", "-8", "08", ".2", "+.3", "# 6", "-#10.4", ".0"]


@pytest.mark.timeout(120)
def test_printf_matrix_renders_as_containerpilot(tmp_path: Path) -> None:
    """Every verb × flag set × kind of value in one template: Go's fmt, bad verbs included."""
    text = "".join(f'{{{{ printf "|%{f}{v}|" {x} }}}}\n'
                   for v, f, x in itertools.product(VERBS, FLAGS, VALUES))
    ok, want = containerpilot(text, tmp_path)
    assert ok, want
    got = pypilot(text)[1]
    diff = [(t, g, w) for t, g, w in zip(text.splitlines(), got.splitlines(), want.splitlines(), strict=False) if g != w]
    assert not diff, diff[:20]
    assert got == want


def _random_templates(seed: int, count: int) -> list[str]:
    """Random compositions of Go's built-ins and CP's functions over every kind of value."""
    import random

    vals = [".NAME", ".TAGS", ".EMPTY", ".", "1", "-2", "1.5", '"s"', '"%d"', '"%v|%s"', '"%q %x"', "true", "nil",
            "(loop 2)", '(split "," .TAGS)', "'c'", "$", "0x10", "1e6"]
    fns = ["printf", "print", "println", "len", "index", "slice", "and", "or", "not", "eq", "ne", "lt", "le", "html",
           "js", "urlquery", "split", "join", "default", "env", "loop", "replaceAll", "regexReplaceAll"]
    rnd = random.Random(seed)

    def expr(depth: int = 0) -> str:
        r = rnd.random()
        if r < 0.4 or depth > 2:
            return rnd.choice(vals)
        args = " ".join(expr(depth + 1) for _ in range(rnd.randint(0, 3)))
        if r < 0.9:
            return f"({rnd.choice(fns)} {args})"
        return f"{expr(depth + 1)} | {rnd.choice(fns)} {args}"

    def action() -> str:
        r, e = rnd.random(), expr()
        if r < 0.6:
            return "{{ " + e + " }}"
        if r < 0.75:
            return "{{ if " + e + " }}T{{ else }}F{{ end }}"
        if r < 0.9:
            return "{{ range $i, $v := " + e + " }}[{{ $i }}={{ $v }}]{{ else }}E{{ end }}"
        return "{{ with " + e + " }}W{{ . }}{{ end }}"

    return ["".join(action() for _ in range(rnd.randint(1, 3))) for _ in range(count)]


@pytest.mark.timeout(300)
def test_random_compositions_render_as_containerpilot(tmp_path: Path) -> None:
    """200 seeded random templates (found the error positions, eq/index/len of nil and %s in eq's error)."""
    diffs = [(t, pypilot(t), containerpilot(t, tmp_path)) for t in _random_templates(14, 200)]
    diffs = [d for d in diffs if d[1] != d[2]]
    assert not diffs, diffs[:5]


@pytest.mark.parametrize("out", ["-", "file"])
def test_template_subcommand_writes_the_bytes_containerpilot_writes(tmp_path: Path, out: str) -> None:
    """`-template` (stdout or `-out F`) over a value that is not UTF-8: Go strings are bytes, so CP wrote the
    byte back as it came; pypilot keeps it (surrogateescape) instead of failing to encode it."""
    import sys

    path = tmp_path / "c.json5"
    path.write_text('{tags: ["{{ .TAGS | split "," | join "\\", \\"" }}"], x: "{{ .X }}", n: {{ len .X }}}\n')
    env = {**ENV, "TAGS": "web,lb"}
    got = {}
    for name, cmd in (("cp", [str(CP)]), ("pypilot", [sys.executable, "-m", "pypilot"])):
        target = tmp_path / f"{name}.out"
        args = [*cmd, "-config", str(path), "-template"] + (["-out", str(target)] if out == "file" else [])
        r = subprocess.run(args, capture_output=True, timeout=30, cwd=ROOT,
                           env={**{k: v.encode() for k, v in env.items()}, b"X": b"v\xfe"})  # type: ignore[dict-item]
        assert r.returncode == 0, r.stderr
        got[name] = target.read_bytes() if out == "file" else r.stdout
    assert got["pypilot"] == got["cp"] == b'{tags: ["web", "lb"], x: "v\xfe", n: 2}\n'


def _token_soup(seed: int, count: int, glue: tuple[str, ...] = (" ",)) -> list[str]:
    """Actions of random tokens: mostly parse errors, each of which must read as Go's parser words it."""
    import random

    atoms = [*(LEXEMES if glue != (" ",) else []), ".", ".NAME", "$", "$x", ":=", "=", "|", "(", ")", ",", '"s"', "`r`", "'c'", "1", "-1", "1.5", "nil",
             "true", "if", "else", "end", "range", "with", "define", "template", "block", "break", "continue",
             "printf", '"%d"', "len", "index", "and", "not", "eq", "split", "join", "loop", "default", "env", "print"]
    rnd = random.Random(seed)
    return ["".join("{{ " + rnd.choice(glue).join(rnd.choice(atoms) for _ in range(rnd.randint(1, 5))) + " }}"
                    + rnd.choice(["", "x", " "]) for _ in range(rnd.randint(1, 4))) for _ in range(count)]


LEXEMES = ["-", "+", ".5", "0x", "1e", "1_", "\\", "é", '"a\\q"', "''", "'ab'", "@", "#", "%", "{", "}", "-}", "{{",
           "/*", "*/", "\n", "\t", "1.2.3", "$1", "$é", ".é", "0b2", "089", "1i", "..", ".A.", "1+2i"]


@pytest.mark.timeout(300)
@pytest.mark.parametrize(("seed", "glue"), [(18, (" ",)), (19, (" ", ""))])
def test_random_token_soup_parses_as_containerpilot(tmp_path: Path, seed: int, glue: tuple[str, ...]) -> None:
    """200 seeded actions of random tokens, spaced or touching (found Go's token quoting and contexts,
    {{define}} only at the top, lexing as the parser reads, scanNumber, complex constants)."""
    diffs = [(t, pypilot(t), containerpilot(t, tmp_path)) for t in _token_soup(seed, 200, glue)]
    diffs = [d for d in diffs if d[1] != d[2]]
    assert not diffs, diffs[:5]
