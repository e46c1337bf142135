"""Template golden cases (§2.2) and the engine's edges."""

from __future__ import annotations

from pathlib import Path

import pytest

from pypilot.config import render
from pypilot.config.template import TemplateError, go_float
from pypilot.config.template import render as render_text

ENV = {"NAME": "Template", "PARTS": "a:b:c", "COUNT": "3", "NAME_1": "Template", "EQ": "a=b=c"}

GOLDEN = [
    ("Hello, {{.NAME}}!", "Hello, Template!"),
    ("Hello, {{.NONAME}}!", "Hello, !"),
    ("{{.NONAME}}", ""),
    ("{{ loop 2 5 }}", "[2 3 4]"),
    ("{{ loop 10 1 }}", "[10 9 8 7 6 5 4 3 2]"),
    ("{{ loop 5 1 }}", "[5 4 3 2]"),
    ("{{ loop 5 }}", "[0 1 2 3 4]"),
    ("{{ loop .COUNT }}", "[0 1 2]"),
    ("{{ loop 1 .COUNT }}", "[1 2]"),
    ("{{ range $i := loop 2 5 -}}i={{$i}},{{ end }}", "i=2,i=3,i=4,"),
    ('Hello, {{ env (printf "NA%s" "ME_1") }}!', "Hello, Template!"),
    ('Hello, {{.NONAME | default "World" }}!', "Hello, World!"),
    ("Hello, {{.NONAME | default 100 }}!", "Hello, 100!"),
    ("Hello, {{.NONAME | default 10.1 }}!", "Hello, 10.1!"),
    ('Hello, {{.PARTS | split ":" | join "." }}!', "Hello, a.b.c!"),
    ('Hello, {{.NAME | replaceAll "e" "_" }}!', "Hello, T_mplat_!"),
    ('Hello, {{.NAME | regexReplaceAll "[epa]+" "_" }}!', "Hello, T_m_l_t_!"),
    ('{{ split ":" "" }}', "[]"),
    ('{{ regexReplaceAll "(a)(b)?" "<$1${2}>" "xaab" }}', "x<a><ab>"),
    # the `=` truncation bug of CP is fixed: the full value, like env
    ("{{ .EQ }}|{{ env \"EQ\" }}", "a=b=c|a=b=c"),
    # Go built-ins and actions
    ("a {{- /* comment */ -}} b", "ab"),
    ("a  {{- .NAME }}", "aTemplate"),
    ("{{ .NAME -}}  \n b", "Templateb"),
    ("{{if .NAME}}y{{else}}n{{end}}", "y"),
    ("{{if .X}}y{{else if .NAME}}z{{else}}n{{end}}", "z"),
    ("{{with .NAME}}{{.}}{{end}}{{with .X}}x{{else}}e{{end}}", "Templatee"),
    ('{{define "x"}}[{{.}}]{{end}}{{template "x" .NAME}}', "[Template]"),
    ('{{block "b" .COUNT}}<{{.}}>{{end}}', "<3>"),
    ("{{ $x := 5 }}{{ $x = 6 }}{{ $x }}", "6"),
    ('{{ range $i, $v := split ":" .PARTS }}{{$i}}{{$v}}{{end}}', "0a1b2c"),
    ('{{ range split ":" "" }}x{{else}}empty{{end}}', "empty"),
    ('{{ index (split ":" .PARTS) 1 }}', "b"),
    ('{{ printf "%d-%s-%v" 3 "a" true }}', "3-a-true"),
    ("{{ len .NAME }}", "8"),
    ('{{ eq .NAME "Template" }} {{ ne 1 2 }} {{ lt 1 2 }} {{ ge 2 2 }}', "true true true true"),
    ('{{ and 1 0 }} {{ or 0 "x" }} {{ not "" }}', "0 x true"),
    ('{{ print 1 2 "a" 3 }}|{{ println "a" 1 }}', "1 2a3|a 1\n"),
    ('{{ html "<a href=\'x\'>" }}', "&lt;a href=&#39;x&#39;&gt;"),
    ('{{ js "it\'s <b>" }}', "it\\'s \\u003Cb\\u003E"),
    ('{{ urlquery "a b&c" }}', "a+b%26c"),
    ("{{ 1e6 }} {{ 3.5 }} {{ 0x10 }} {{ 'a' }} {{ true }} {{ -3 }}", "1e+06 3.5 16 97 true -3"),
    ('{{ `raw {{ }}` }}', "raw {{ }}"),
    ("no actions at all", "no actions at all"),
]


@pytest.mark.parametrize(("tpl", "want"), GOLDEN)
def test_golden(tpl: str, want: str) -> None:
    assert render_text(tpl, ENV) == want


ERRORS = [  # each as ContainerPilot 3.8 prints it (checked against the binary)
    ("{{ .NAME.X }}", 'template: :1:8: executing "" at <.NAME.X>: can\'t evaluate field X in type string'),
    ("{{ foo }}", 'template: :1: function "foo" not defined'),
    ("{{ if }}", "template: :1: missing value for if"),
    ("{{ end }}", "template: :1: unexpected {{end}}"),
    ("{{ if 1 }}", "template: :1: unexpected EOF"),
    ("{{ .X", "template: :1: unclosed action"),
    ("a\n{{ call .X }}", 'template: :2:3: executing "" at <call .X>: error calling call: non-function of '
                        "type string"),
    ("{{ range 5 }}{{ end }}", 'template: :1:9: executing "" at <5>: range can\'t iterate over 5'),  # Go 1.19
    ("{{ loop 1 2 3 }}", 'template: :1:3: executing "" at <loop 1 2 3>: error calling loop: loop: wrong '
                         "number of arguments, expected 1 or 2, but got 3"),
    ('{{ loop "x" }}', 'template: :1:3: executing "" at <loop "x">: error calling loop: strconv.Atoi: '
                       'parsing "x": invalid syntax'),
    ('{{ regexReplaceAll "(" "" "x" }}', None),
    ("{{ $nope }}", 'template: :1: undefined variable "$nope"'),
]


@pytest.mark.parametrize(("tpl", "message"), ERRORS)
def test_errors(tpl: str, message: str | None) -> None:
    with pytest.raises(TemplateError) as e:
        render_text(tpl, ENV)
    if message is not None:
        assert str(e.value) == message
    assert str(e.value).startswith("template: :")


def test_render_file_uses_environ(write) -> None:
    assert render(write('{consul: "{{ .HOST }}:8500"}'), {"HOST": "c1"}) == '{consul: "c1:8500"}'


def test_template_generates_jobs(write) -> None:
    from pypilot.config import load

    text = ('{consul: "c:1", jobs: [{{ range $i := loop .N }}'
            '{name: "job{{ $i }}", exec: "sleep {{ $i }}"},{{ end }}]}')
    cfg = load(write(text), {"N": "3"})
    assert [j.name for j in cfg.jobs] == ["job0", "job1", "job2"]
    assert cfg.jobs[2].exec == ("sleep", "2")


@pytest.mark.parametrize(("v", "s"), [(0.5, "0.5"), (100.0, "100"), (1e21, "1e+21"), (1e-5, "1e-05"),
                                      (123456.0, "123456"), (1234567.0, "1.234567e+06"), (-2.5, "-2.5")])
def test_go_float(v: float, s: str) -> None:
    assert go_float(v) == s


def test_output_is_pasted_raw_as_go_does_consul_lb_tags_issue_14() -> None:
    """caseywebdev/consul-lb builds a JSON5 list by joining with a quote: CP gives two tags, so must we."""
    import pyjson5

    text = '{tags: ["{{ .TAGS | split "," | join "\\", \\"" }}"]}'
    assert render_text(text, {"TAGS": "web,lb"}) == '{tags: ["web", "lb"]}'
    assert pyjson5.decode(render_text(text, {"TAGS": "web,lb"})) == {"tags": ["web", "lb"]}


@pytest.mark.parametrize(("tpl", "want"), [
    ('"{{ "\\t" }}"', '"\t"'),  # a real tab inside the JSON5 string, not `\t`
    ('"{{ println "a" }}"', '"a\n"'),
    ('"{{ "say \\"hi\\"" }}"', '"say "hi""'),
    ("'{{ .Q }}'", "'it's'"),
    ('"{{ .B }}"', '"a\\nb"'),
])
def test_no_escaping_inside_json5_strings(tpl: str, want: str) -> None:
    assert render_text(tpl, {"Q": "it's", "B": "a\\nb"}) == want


@pytest.mark.timeout(60)
def test_large_template_lexes_in_linear_time_issue_18() -> None:
    """#18: line_of counted newlines from the start of the file for every token (quadratic): 40 000 lines of
    actions took minutes. Lines are counted forward now; the error still names the right line."""
    import time

    text = "".join(f'{{{{ printf "%d" {i} }}}} {{{{ .NAME }}}}\n' for i in range(40_000))
    t0 = time.perf_counter()
    out = render_text(text, ENV)
    assert out.count("\n") == 40_000 and out.endswith("39999 Template\n")
    assert time.perf_counter() - t0 < 20
    with pytest.raises(TemplateError, match=r"^template: :40001:8: executing"):
        render_text(text + "{{ .NAME.X }}", ENV)


@pytest.mark.parametrize(("tpl", "want"), [
    ('{{ printf "%x" "hi" }}', "6869"),
    ('{{ printf "%s" 5 }}', "%!s(int=5)"),
    ('{{ printf "%q" (split "," .TAGS) }}', '["web" "lb"]'),
    ('{{ printf "%[2]d-%[1]d|%*d" 1 2 3 4 }}', "2-1| 3"),
    ('{{ printf "%U %T %T" 0x1F600 (split "," "a") (loop 1) }}', "U+1F600 []string []int"),
    ('{{ len "héllo" }}', "6"),
    ('{{ regexReplaceAll "x*" "-" "axb" }}', "-a-b-"),
    ('{{ regexReplaceAll "(\\\\w+)@" "[$1x][${1}x]" "bob@" }}', "[][bobx]"),
    ('{{ regexReplaceAll "\\\\w+" "W" "héllo" }}', "WéW"),  # ASCII \\w, as RE2
    ('{{ regexReplaceAll "a$" "Z" "a\\na" }}', "a\nZ"),
])
def test_go_fidelity_issue_14(tpl: str, want: str) -> None:
    assert render_text(tpl, {**ENV, "TAGS": "web,lb"}) == want


def test_nil_as_a_command_is_an_error_as_in_go() -> None:
    with pytest.raises(TemplateError, match=r'^template: :1:3: executing "" at <nil>: nil is not a command$'):
        render_text('{{ nil | printf "%v" }}', ENV)


def test_deep_recursion_is_an_error_never_a_crash() -> None:
    """Go stops a template calling itself at depth 100000; Python's stack is smaller, so pypilot stops
    sooner, with Go's words: PID 1 must get an error it can report, not a RecursionError."""
    with pytest.raises(TemplateError, match="exceeded maximum template depth"):
        render_text('{{ define "x" }}{{ template "x" }}{{ end }}{{ template "x" }}', ENV)
    with pytest.raises(TemplateError):
        render_text("{{ if 1 }}" * 3000 + "{{ end }}" * 3000, ENV)


def test_a_loop_too_large_to_hold_is_an_error_not_an_out_of_memory_pid_1() -> None:
    """CP 3.8 tries to build the list and dies; pypilot refuses past a million elements."""
    with pytest.raises(TemplateError, match=r"loop: 99999999999 elements is more than pypilot renders"):
        render_text("{{ loop 99999999999 }}", ENV)
    assert render_text("{{ len (loop 1000000) }}", ENV) == "1000000"


def test_re2_and_heavy_stdlib_load_only_when_a_template_needs_them() -> None:
    """PID 1 renders a `{{` config at start-up: the engine must not pull in re2, re, typing or dataclasses
    (re2 loads when a template calls regexReplaceAll)."""
    import importlib.util
    import subprocess
    import sys

    spec = importlib.util.find_spec("re2")
    assert spec is not None and spec.origin is not None
    site = Path(spec.origin).parents[1]  # without site.py (an editable install's finder imports re)
    code = ("import sys; from pypilot.config.template import render; "
            "render('{{ .A | default \"x\" }}{{ range loop 2 }}{{ printf \"%d %q\" . \"x\" }}{{ end }}', {});"
            "print(sorted(m for m in ('re2', 're', 'typing', 'dataclasses') if m in sys.modules)); "
            "render('{{ regexReplaceAll \"a\" \"b\" \"a\" }}', {}); print('re2' in sys.modules)")
    path = f"{Path(__file__).resolve().parents[2]}:{site}"
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": path}).stdout.split("\n")
    assert out[:2] == ["[]", "True"], out


def test_parser_builds_a_typed_tree_issue_18() -> None:
    """#18.6: the tree is made of node classes with named fields, not tuples read by position."""
    from pypilot.config.template import nodes
    from pypilot.config.template.funcs import table
    from pypilot.config.template.parser import Parser

    parser = Parser('a{{ if $x := .A.B }}{{ .C | printf "%s" 1 }}{{ else }}{{ template "t" . }}{{ end }}'
                    '{{ define "t" }}{{ (loop 2).X }}{{ end }}', table({}))
    text, branch = parser.parse()
    assert isinstance(text, nodes.TextNode) and text.text == "a"
    assert isinstance(branch, nodes.Branch) and branch.kind == "if" and branch.pipe.decl == ["$x"]
    (cond,) = branch.pipe.cmds[0].args
    assert isinstance(cond, nodes.Field) and cond.chain == ["A", "B"] and str(cond) == ".A.B"
    (action,) = branch.body
    assert isinstance(action, nodes.ActionNode)
    assert [str(c) for c in action.pipe.cmds] == [".C", 'printf "%s" 1']
    fn, fmt, one = action.pipe.cmds[1].args
    assert isinstance(fn, nodes.Ident) and isinstance(fmt, nodes.Literal) and isinstance(one, nodes.Literal)
    assert (fn.name, fmt.value, one.value) == ("printf", "%s", 1)
    (call,) = branch.else_body
    assert isinstance(call, nodes.TemplateCall) and call.name == "t" and call.pipe is not None
    assert isinstance(call.pipe.cmds[0].args[0], nodes.Dot)
    (inner,) = parser.defines["t"]
    assert isinstance(inner, nodes.ActionNode)
    paren = inner.pipe.cmds[0].args[0]
    assert isinstance(paren, nodes.Paren) and paren.chain == ["X"] and str(paren) == "(loop 2).X"
