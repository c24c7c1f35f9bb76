"""Execution: Go's typing rules and its error messages, with line and column."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from discovery.tmpl_support import exec_error, render
from flotte.discovery.template import (
    GoError,
    GoFunc,
    KVPair,
    TemplateExecError,
    compile,
)
from flotte.discovery.template.values import T_INT, T_STRING


def test_exec_error_format_line_and_column() -> None:
    e = exec_error('x\ny = {{getv "/missing"}}')
    assert str(e) == (
        'template: t.tmpl:2:6: executing "t.tmpl" at <getv "/missing">: '
        "error calling getv: key does not exist: /missing"
    )
    assert (e.name, e.executing, e.line, e.col) == ("t.tmpl", "t.tmpl", 2, 6)
    assert e.context == 'getv "/missing"'
    assert e.reason == "error calling getv: key does not exist: /missing"


def test_exec_error_column_counts_bytes_like_go() -> None:
    e = exec_error('é {{getv "/x"}}')
    assert (e.line, e.col) == (1, 5)  # "é " is 3 bytes, then "{{"


def test_exec_error_inside_a_defined_template() -> None:
    e = exec_error('{{define "srv"}}\n  {{getv .}}{{end}}{{template "srv" "/nope"}}')
    assert str(e) == (
        'template: t.tmpl:2:4: executing "srv" at <getv .>: '
        "error calling getv: key does not exist: /nope"
    )


def test_error_is_reported_at_the_last_node_touched() -> None:
    # Go's s.at(node) bookkeeping: the type error of join's argument is found
    # after evaluating the innermost literal.
    e = exec_error('{{join (jsonArray (getv "/j")) ","}}', {"/j": '["a"]'})
    assert e.context == '"/j"'
    assert e.reason == "wrong type for value; expected []string; got []interface {}"


@pytest.mark.parametrize(
    ("text", "context", "reason"),
    [
        ('{{"x-y" | replace "-" "+" -1}}', "-1", "expected string; found -1"),
        ('{{add "1" 2}}', '"1"', 'expected integer; found "1"'),
        ("{{add 1.5 2}}", "1.5", "expected integer; found 1.5"),
        ("{{toUpper 5}}", "5", "expected string; found 5"),
        ("{{toUpper .}}", ".", "invalid value; expected string"),
        ("{{toUpper nil}}", "nil", "cannot assign nil to string"),
        ('{{join "abc" ","}}', '"abc"', 'can\'t handle "abc" for arg of type []string'),
        ('{{add (getv "/n") 1}}', '"/n"', "wrong type for value; expected int; got string"),
        ("{{getv}}", "getv", "wrong number of args for getv: want at least 1 got 0"),
        ("{{add 1}}", "add", "wrong number of args for add: want 2 got 1"),
        ("{{and}}", "and", "wrong number of args for and: want at least 1 got 0"),
        ("{{1 2}}", "1", "can't give argument to non-function 1"),
        ("{{. 1}}", ".", "can't give argument to non-function ."),
        ('{{ "a" "b" }}', '"a"', 'can\'t give argument to non-function "a"'),
        ("{{nil}}", "nil", "nil is not a command"),
        ('{{template "nope"}}', '{{template "nope"}}', 'template "nope" not defined'),
        ("{{ .x.y | len }}", "len", "error calling len: len of untyped nil"),
        ("{{(1).x}}", "1", "can't evaluate field x in type int"),
        ('{{(gets "/s/*").x}}', '"/s/*"', "can't evaluate field x in type memkv.KVPairs"),
        ('{{$x := get "/n"}}{{$x.key}}', "$x.key", "can't evaluate field key in type memkv.KVPair"),
        ('{{$x := get "/n"}}{{$x.Key 1}}', "$x.Key", "Key has arguments but cannot be invoked as function"),
        ('{{$m := map "a" 1}}{{"v" | $m.a}}', "$m.a", "a is not a method but has arguments"),
        # the receiver was the last node evaluated
        ("{{datetime.Year 1}}", "datetime", "wrong number of args for Year: want 0 got 1"),
    ],
)
def test_argument_and_call_errors(text: str, context: str, reason: str) -> None:
    e = exec_error(text, {"/n": "3", "/s/a": "1"})
    assert (e.context, e.reason) == (context, reason)


def test_number_literals_adapt_to_the_parameter_type() -> None:
    assert render("{{add 1.0 2}}") == "3"  # 1.0 is also an integer constant
    assert render("{{add 'a' 1}}") == "98"
    assert render("{{printf \"%v %v\" 1.0 'a'}}") == "1 97"  # no type: the syntax decides


# -- comparisons ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{{eq 1 1}} {{eq 1 2}} {{eq 1 2 3 1}} {{eq \"a\" \"a\"}}", "true false true true"),
        ("{{ne 1 2}} {{lt 1 2}} {{le 2 2}} {{gt \"b\" \"a\"}} {{ge 1 2}}", "true true true true false"),
        ("{{lt 1.5 2.5}} {{eq true true}} {{eq nil nil}}", "true true true"),
        ('{{eq (index "a" 0) 97}} {{lt -1 (index "a" 0)}}', "true true"),  # int vs uint8
        ('{{eq (get "/n") (get "/n")}}', "true"),  # comparable structs
    ],
)
def test_comparisons(text: str, expected: str) -> None:
    assert render(text, {"/n": "3"}) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('{{eq (getv "/n") 3}}', "error calling eq: incompatible types for comparison"),
        ("{{eq 1 1.0}}", "error calling eq: incompatible types for comparison"),
        ('{{lt "a" 1}}', "error calling lt: incompatible types for comparison"),
        ("{{lt true false}}", "error calling lt: invalid type for comparison"),
        ("{{lt nil 1}}", "error calling lt: invalid type for comparison"),
        ("{{eq 1}}", "error calling eq: missing argument for comparison"),
        ('{{eq (split "a" ":") "a"}}', "error calling eq: uncomparable type []string: [a]"),
        ('{{eq "a" nil}}', "error calling eq: incompatible types for comparison"),
    ],
)
def test_comparison_errors(text: str, reason: str) -> None:
    assert exec_error(text, {"/n": "3"}).reason == reason


def test_and_or_return_an_argument_and_short_circuit() -> None:
    assert render("{{and 1 0}} {{and 1 2}} {{or 0 \"\" \"x\"}} {{or 0 \"\"}}") == "0 2 x "
    # the second argument is never evaluated (it would fail)
    assert render('{{and 0 (getv "/missing")}}|{{or 1 (getv "/missing")}}') == "0|1"
    assert render("{{not 0}} {{not \"x\"}} {{not nil}}") == "true false true"
    assert render("{{1 | and 2}} {{0 | or 0}}") == "1 0"


# -- fields, maps, nil --------------------------------------------------------------


def test_missing_values_print_no_value() -> None:
    assert render("{{.Foo}}|{{.Foo.Bar}}|{{$.x}}|{{.}}") == "<no value>|<no value>|<no value>|<no value>"
    assert render('{{$d := json "{\\"a\\":null}"}}{{$d.a}}|{{$d.b}}') == "<no value>|<no value>"
    # as an argument, nil is Go's nil interface
    assert render('{{printf "%v" .x}}') == "<nil>"


def test_json_null_inside_interfaces() -> None:
    # a present null and a missing key differ when walked through
    e = exec_error('{{$x := json "{\\"a\\":null}"}}{{$x.a.b}}')
    assert e.reason == "nil pointer evaluating interface {}.b"
    assert render('{{$x := json "{\\"a\\":{}}"}}{{$x.zz.b}}') == "<no value>"
    e = exec_error('{{$x := json "{\\"a\\":1}"}}{{$x.a.b}}')
    assert e.reason == "can't evaluate field b in type interface {}"
    e = exec_error('{{range jsonArray "[null]"}}{{.x}}{{end}}')
    assert e.reason == "nil pointer evaluating interface {}.x"
    assert render('{{range jsonArray "[1,null,\\"s\\"]"}}[{{.}}]{{end}}') == "[1][<no value>][s]"


def test_methods_on_values() -> None:
    assert render("{{with datetime}}{{.Year | printf \"%T\"}}{{end}}") == "int"
    assert render('{{datetime.Format "2006"}}').isdigit()


@dataclasses.dataclass
class Backend:
    Host: str
    Port: int


def test_dataclasses_are_structs() -> None:
    data = {"b": [Backend("h1", 80), Backend("h2", 81)]}
    assert render("{{range .b}}{{.Host}}:{{.Port}} {{end}}", data=data) == "h1:80 h2:81 "
    assert render("{{index .b 0}}", data=data) == "{h1 80}"
    # .b came out of a map[string]interface{}: its static type is interface {}
    assert exec_error("{{.b.x}}", data=data).reason == "can't evaluate field x in type interface {}"
    assert exec_error("{{$b := .b}}{{$b.x}}", data=data).reason == (
        "can't evaluate field x in type []interface {}"
    )


# -- functions supplied by the caller -------------------------------------------------


def test_custom_functions() -> None:
    def shout(s: str) -> str:
        return s.upper() + "!"

    def fail() -> str:
        raise GoError("nope")

    funcs: dict[str, GoFunc | Callable[..., Any]] = {
        "shout": GoFunc(shout, (T_STRING,)),
        "fail": fail,
        "anything": lambda *a: len(a),
    }
    t = compile('{{shout "hi"}} {{anything 1 "a" nil}}', "t", funcs=funcs)
    assert t.render() == "HI! 3"
    e = exec_error_with(funcs, "{{fail}}")
    assert e.reason == "error calling fail: nope"
    e = exec_error_with(funcs, "{{shout 1}}")
    assert e.reason == "expected string; found 1"


def exec_error_with(
    funcs: Mapping[str, GoFunc | Callable[..., Any]], text: str
) -> TemplateExecError:
    tmpl = compile(text, "t.tmpl", funcs=funcs)
    with pytest.raises(TemplateExecError) as info:
        tmpl.render()
    return info.value


def test_render_time_function_override() -> None:
    t = compile('{{getv "/a"}}', "t")
    assert t.render({"/a": "real"}) == "real"
    fake = GoFunc(lambda key: "fake:" + key, (T_STRING,))
    assert t.render({"/a": "real"}, funcs={"getv": fake}) == "fake:/a"
    assert t.render({"/a": "real"}) == "real"


def test_python_exceptions_in_functions_become_call_errors() -> None:
    t = compile("{{boom 1}}", "t.tmpl", funcs={"boom": GoFunc(lambda n: 1 // (n - 1), (T_INT,))})
    with pytest.raises(TemplateExecError) as info:
        t.render()
    assert info.value.reason == "error calling boom: integer division or modulo by zero"


def test_call_builtin() -> None:
    data = {"f": GoFunc(lambda a, b: a * b, (T_INT, T_INT)), "g": lambda *a: "-".join(a)}
    assert render("{{call .f 6 7}} {{call .g \"a\" \"b\"}}", data=data) == "42 a-b"
    e = exec_error("{{call .f 1}}", data=data)
    assert e.reason == "error calling call: wrong number of args: got 1 want 2"
    e = exec_error('{{call .f 1 "x"}}', data=data)
    assert e.reason == "error calling call: arg 1: value has type string; should be int"
    assert exec_error("{{call .x}}", data=data).reason == "error calling call: call of nil"
    assert exec_error("{{call 1}}").reason == "error calling call: non-function of type int"


def test_functions_cannot_be_printed() -> None:
    e = exec_error("{{.f}}", data={"f": len})
    assert e.reason.startswith("can't print {{.f}} of type func")


def test_render_unknown_entry_template() -> None:
    with pytest.raises(TemplateExecError) as info:
        compile("x", "t").render(template="nope")
    assert str(info.value) == 'template: no template "nope" associated with template "t"'


def test_kvpair_equality_and_repr() -> None:
    assert KVPair("/a", "1") == KVPair("/a", "1")
    assert KVPair("/a", "1") != KVPair("/a", "2")
    assert "KVPair" in repr(KVPair("/a", "1"))


def test_deeply_nested_templates_render() -> None:
    depth = 90
    text = "{{if 1}}" * depth + "x" + "{{end}}" * depth
    assert render(text) == "x"
    text = "{{" + "(" * depth + "1" + ")" * depth + "}}"
    assert render(text) == "1"
