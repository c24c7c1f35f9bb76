"""Go text/template syntax: text, actions, trimming, literals, control flow."""

from __future__ import annotations

import pytest

from discovery.tmpl_support import exec_error, parse_error, render
from flotte.discovery.template import compile

# -- text and actions -----------------------------------------------------------


def test_text_is_copied_verbatim_including_newlines_around_actions() -> None:
    # why {{range}} on its own line produces blank lines (spec §6)
    text = "upstream x {\n{{range getvs \"/s/*\"}}\n  server {{.}};\n{{end}}\n}\n"
    out = render(text, {"/s/a": "1", "/s/b": "2"})
    assert out == "upstream x {\n\n  server 1;\n\n  server 2;\n\n}\n"


def test_empty_template_and_plain_text() -> None:
    assert render("") == ""
    assert render("no actions at all }} { }") == "no actions at all }} { }"
    assert render("a { b } {c}") == "a { b } {c}"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("x  \n  {{- \"y\" -}}  \n  z", "xyz"),
        ("a\n{{- \"b\" }}\nc", "ab\nc"),
        ("{{ 1 -}}\n\n  x", "1x"),
        ("a {{- 1 }}", "a1"),
        ("{{-3}}", "-3"),  # a number, not a trim marker: the space is required
        ("{{3 -}} x", "3x"),
        ("{{- \n 'a' \n -}}", "97"),  # the marker's white space may be a newline
        ("a {{- /* c */ -}} b", "ab"),
        ("a{{/* comment */}}b", "ab"),
        ("a{{/* multi\nline */}}b", "ab"),
    ],
)
def test_trim_markers_and_comments(text: str, expected: str) -> None:
    assert render(text) == expected


def test_trim_marker_needs_space_before_dash() -> None:
    e = parse_error('{{"a"-}}')
    assert str(e) == 'template: t.tmpl:1: unexpected "-" in operand'


# -- literals -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{{"a\\tb\\n\\x41\\u00e9\\101"}}', "a\tb\nAéA"),
        ("{{`raw\\n`}}", "raw\\n"),
        ("{{`a\r\nb`}}", "a\nb"),  # Go drops carriage returns from raw strings
        ("{{'a'}} {{'\\n'}} {{'é'}}", "97 10 233"),
        ("{{0x1F}} {{0o17}} {{0b101}} {{017}} {{1_000}}", "31 15 5 15 1000"),
        ("{{1e3}} {{1.5}} {{-7}} {{+3}} {{.5}} {{1.0}}", "1000 1.5 -7 3 0.5 1"),
        ("{{true}} {{false}}", "true false"),
        ("{{1i}} {{1+2i}}", "(0+1i) (1+2i)"),
        ("{{0x1.8}}", "<no value>"),  # Go quirk: a hex float without 'p' is neither
        ("{{printf \"%T %T %T %T\" 1 1.0 'a' true}}", "int float64 int bool"),
    ],
)
def test_literals(text: str, expected: str) -> None:
    assert render(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{{ "\\q" }}', "invalid syntax"),
        ("{{ 'ab' }}", "malformed character constant: 'ab'"),
        ("{{ 1e999 }}", 'illegal number syntax: "1e999"'),
        ("{{ 99999999999999999999 }}", 'integer overflow: "99999999999999999999"'),
        ("{{ 089 }}", 'integer overflow: "089"'),
        ("{{ 3x }}", 'bad number syntax: "3x"'),
        ('{{ "x\n" }}', "unterminated quoted string"),
        ("{{ `x }}", "unterminated raw quoted string"),
        ("{{ 'x }}", "unterminated character constant"),
    ],
)
def test_bad_literals(text: str, message: str) -> None:
    assert parse_error(text).message == message


# -- variables ------------------------------------------------------------------


def test_variables_declare_assign_and_scope() -> None:
    assert render("{{$x := 5}}{{$x}}{{$x = 6}}{{$x}}") == "56"
    # a variable lives until the end of its block...
    assert render('{{$x := "out"}}{{if true}}{{$x := "in"}}{{$x}}{{end}}{{$x}}') == "inout"
    # ...and assignment changes the outer one
    assert render('{{$x := "out"}}{{if true}}{{$x = "in"}}{{end}}{{$x}}') == "in"


def test_dollar_is_the_data() -> None:
    assert render("{{$}} {{.}}") == "<no value> <no value>"  # confd passes nil
    assert render("{{$.a}} {{.a}}", data={"a": 1}) == "1 1"
    assert render("{{range .}}{{$.n}}{{.}}{{end}}", data={"n": "x", "l": 1}) == "x1xx"


def test_undefined_variables_are_parse_errors() -> None:
    assert str(parse_error("{{ $x }}")) == 'template: t.tmpl:1: undefined variable "$x"'
    e = parse_error("{{ if true }}{{ $y := 2 }}{{ end }}\n{{ $y }}")
    assert (e.line, e.message) == (2, 'undefined variable "$y"')


def test_declaration_errors() -> None:
    assert parse_error("{{$x, $y := 1}}").message == "too many declarations in command"
    assert (
        parse_error("{{range $i, $j, $k := .}}{{end}}").message
        == "too many declarations in range"
    )
    assert (
        parse_error("{{range $i, 3 := .}}{{end}}").message == "range can only initialize variables"
    )


# -- control structures ---------------------------------------------------------


def test_if_else_if_else() -> None:
    t = compile("{{if eq . 1}}one{{else if eq . 2}}two{{else}}many{{end}}", "t")
    assert [t.render(data=n) for n in (1, 2, 3)] == ["one", "two", "many"]


@pytest.mark.parametrize(
    ("value", "truth"),
    [
        (None, False),
        (False, False),
        (0, False),
        (0.0, False),
        ("", False),
        ([], False),
        ({}, False),
        ("0", True),  # unlike Python's int("0"), a non-empty string is true
        ("false", True),
        (1, True),
        (-1, True),
        ([0], True),
        ({"a": None}, True),
        (True, True),
    ],
)
def test_truthiness(value: object, truth: bool) -> None:
    assert render("{{if .}}T{{else}}F{{end}}", data=value) == ("T" if truth else "F")


def test_with_rebinds_dot_and_has_else() -> None:
    assert render('{{with "hi"}}{{.}}{{end}}') == "hi"
    assert render('{{with $x := "hi"}}{{$x}}{{.}}{{end}}') == "hihi"
    assert render('{{with ""}}x{{else}}empty:{{.}}{{end}}', data=5) == "empty:5"
    assert render("{{with 0}}x{{else with 3}}{{.}}{{end}}") == "3"


def test_range_over_slices_maps_and_nothing() -> None:
    assert render("{{range .}}<{{.}}>{{end}}", data=["a", "b"]) == "<a><b>"
    assert render("{{range $i, $v := .}}{{$i}}={{$v}} {{end}}", data=["a", "b"]) == "0=a 1=b "
    assert render("{{range $v := .}}{{$v}}{{end}}", data=["a", "b"]) == "ab"
    # maps iterate in sorted key order, like Go
    assert render("{{range $k, $v := .}}{{$k}}={{$v}} {{end}}", data={"b": 2, "a": 1}) == "a=1 b=2 "
    assert render("{{range .}}x{{else}}none{{end}}", data=[]) == "none"
    assert render("{{range .}}x{{else}}none{{end}}") == "none"  # nil
    assert render("{{range $x := .}}{{else}}{{$x}}{{end}}", data=[]) == "[]"


def test_range_variable_assignment() -> None:
    out = render('{{$v := ""}}{{range $v = .}}{{end}}{{$v}}', data=["a", "b"])
    assert out == "b"


def test_range_over_other_values_is_an_error() -> None:
    assert exec_error("{{range 5}}x{{end}}").reason == "range can't iterate over 5"
    assert exec_error('{{range "abc"}}x{{end}}').reason == "range can't iterate over abc"


def test_break_and_continue() -> None:
    text = "{{range .}}{{if eq . 2}}{{continue}}{{end}}{{if eq . 4}}{{break}}{{end}}{{.}}{{end}}"
    assert render(text, data=[1, 2, 3, 4, 5]) == "13"
    # break leaves only the innermost range
    text = "{{range .}}{{range .}}{{if eq . 2}}{{break}}{{end}}{{.}}{{end}};{{end}}"
    assert render(text, data=[[1, 2, 3], [4, 2]]) == "1;4;"
    assert str(parse_error("{{break}}")) == "template: t.tmpl:1: {{break}} outside {{range}}"
    assert parse_error("{{if 1}}{{continue}}{{end}}").message == "{{continue}} outside {{range}}"
    assert parse_error("{{range .}}{{break 1}}{{end}}").message == 'unexpected "1" in {{break}}'


def test_break_is_a_function_name_when_one_is_defined() -> None:
    t = compile("{{break}}", "t", funcs={"break": lambda: "fn"})
    assert t.render() == "fn"


def test_define_template_block() -> None:
    text = '{{define "x"}}[{{.}}]{{end}}{{template "x" 5}}{{template "x"}}{{block "y" "b"}}<{{.}}>{{end}}'
    assert render(text) == "[5][<no value>]<b>"
    t = compile(text, "t")
    assert t.defined == ("t", "x", "y")
    assert t.render(template="x", data=7) == "[7]"


def test_template_invocations_do_not_see_caller_variables() -> None:
    text = '{{define "x"}}{{$}}{{end}}{{$y := 1}}{{template "x" "dot"}}'
    assert render(text) == "dot"
    assert parse_error('{{define "x"}}{{$y}}{{end}}{{$y := 1}}').message == 'undefined variable "$y"'


def test_redefinition() -> None:
    # an empty definition can be replaced, a non-empty one cannot
    assert render('{{define "a"}}{{end}}{{define "a"}}y{{end}}{{template "a"}}') == "y"
    e = parse_error('{{define "a"}}x{{end}}{{define "a"}}y{{end}}')
    assert e.message == 'template: multiple definition of template "a"'


def test_recursive_template_has_a_depth_limit() -> None:
    e = exec_error('{{define "r"}}{{template "r" .}}{{end}}{{template "r"}}')
    assert e.reason.startswith("exceeded maximum template depth")
    assert e.executing == "r"


# -- pipelines ------------------------------------------------------------------


def test_pipelines_pass_the_value_as_last_argument() -> None:
    assert render('{{"x-y" | printf "%s!"}}') == "x-y!"
    assert render('{{"abc" | printf "%s-%s" "pre"}}') == "pre-abc"
    assert render('{{"x" | len | printf "%d"}}') == "1"


def test_parenthesized_pipelines_and_chains() -> None:
    assert render('{{(index . 1).name}}', data=[{}, {"name": "Misse"}]) == "Misse"
    assert render("{{(len .)}}", data=[1, 2]) == "2"
    assert render("{{.a.b.c}}", data={"a": {"b": {"c": "deep"}}}) == "deep"


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("a\n{{if}}", 2, "missing value for if"),
        ("a\n{{end}}", 2, "unexpected {{end}}"),
        ("x\n\n{{range .}}\n", 4, "unexpected EOF"),
        ("{{", 1, "unclosed action"),
        ("{{/* unclosed", 1, "unclosed comment"),
        ("{{/* c */ x}}", 1, "comment ends before closing delimiter"),
        ("{{ (1 }}", 1, "unclosed left paren"),
        ("{{ 1) }}", 1, 'unexpected ")" in command'),
        ('{{ "x" | 1 }}', 1, "non executable command in pipeline stage 2"),
        ("{{ | }}", 1, 'unexpected "|" in command'),
        ("{{ .a$ }}", 1, "bad character U+0024 '$'"),
        ("{{ @ }}", 1, 'unexpected "@" in command'),
        ("{{ else }}", 1, "unexpected {{else}}"),
        ("{{template x}}", 1, 'unexpected "x" in template clause'),
        ("{{with}}{{end}}", 1, "missing value for with"),
        ('{{block "x"}}{{end}}', 1, "missing value for block clause"),
        ('{{block "x" .}}', 1, "unexpected EOF"),
        ("{{ true.x }}", 1, 'unexpected . after term "true"'),
        ("{{ nosuch }}", 1, 'function "nosuch" not defined'),
        ("{{/* multi\nline */}}\n{{ bad\n}}", 3, 'function "bad" not defined'),
        ("{{if 1}}\n{{else if}}{{end}}", 2, "missing value for if"),
        ("{{if 1}}{{else}}{{else}}{{end}}", 1, "expected end; found {{else}}"),
        ("{{range .}}\n{{end", 2, "unclosed action"),
    ],
)
def test_parse_errors_name_the_line(text: str, line: int, message: str) -> None:
    e = parse_error(text)
    assert (e.line, e.message) == (line, message)
    assert str(e) == f"template: t.tmpl:{line}: {message}"
    assert e.name == "t.tmpl"


def test_unclosed_action_across_lines_names_where_it_started() -> None:
    e = parse_error('a\n{{ "x" |\n  ')
    assert str(e) == "template: t.tmpl:3: unclosed action started at t.tmpl:2"


def test_parse_error_column() -> None:
    e = parse_error('{{ getv "/a" }}\n   {{ nosuch }}')
    assert (e.line, e.col) == (2, 6)


def test_deep_nesting_is_a_template_error_not_a_crash() -> None:
    e = parse_error("{{if 1}}" * 2000)
    assert "depth" in e.message
    e = parse_error("{{" + "(" * 5000 + "1" + ")" * 5000 + "}}")
    assert "depth" in e.message
