"""Go's printing rules (``{{.}}``, print, printf, println) and fmt verbs."""

from __future__ import annotations

import pytest

from discovery.tmpl_support import render
from flotte.discovery.template import KVPair, StrSlice
from flotte.discovery.template.gofmt import format_value, sprint, sprintf, sprintln
from flotte.discovery.template.gostrconv import format_float, quote
from flotte.discovery.template.values import SRV, IntSlice


@pytest.mark.parametrize(
    ("value", "printed"),
    [
        ("s", "s"),
        (80, "80"),
        (-3, "-3"),
        (True, "true"),
        (80.0, "80"),
        (1.5, "1.5"),
        (1e6, "1e+06"),  # json numbers are float64: 1000000 prints like this
        (123456.0, "123456"),
        (1234567.0, "1.234567e+06"),
        (0.0001, "0.0001"),
        (0.00001, "1e-05"),
        (-0.0, "-0"),
        (float("inf"), "+Inf"),
        (float("nan"), "NaN"),
        ([1, "a", True, None], "[1 a true <nil>]"),
        (StrSlice(["a", "b"]), "[a b]"),
        (IntSlice([]), "[]"),
        ({"b": 2, "a": "x"}, "map[a:x b:2]"),  # sorted keys
        ({"o": {"y": 1.0, "x": "s"}}, "map[o:map[x:s y:1]]"),
        ({}, "map[]"),
        (KVPair("/s/a", "1"), "{/s/a 1}"),
        ([KVPair("/a", "1"), KVPair("/b", "2")], "[{/a 1} {/b 2}]"),
        (SRV("db.local", 5432, 10, 5), "&{db.local 5432 10 5}"),
        (1 + 2j, "(1+2i)"),
    ],
)
def test_go_printing_of_values(value: object, printed: str) -> None:
    assert format_value(value) == printed
    assert render("{{.}}", data=value) == printed


def test_nil_prints_no_value_at_top_level() -> None:
    assert render("{{.}}") == "<no value>"
    assert render("{{print .}}") == "<nil>"


@pytest.mark.parametrize(
    ("fmt", "args", "out"),
    [
        ("%s:%d", ["h", 80], "h:80"),
        ("%q", ["x"], '"x"'),
        ("%v", [IntSlice([1, 2])], "[1 2]"),
        ("%05.1f", [3.14159], "003.1"),
        ("%d", [80.0], "%!d(float64=80)"),  # a json number is a float
        ("%s", [5], "%!s(int=5)"),
        ("%d %d", [1], "1 %!d(MISSING)"),
        ("%d", [1, 2], "1%!(EXTRA int=2)"),
        ("%d", [1, None], "1%!(EXTRA <nil>)"),
        ("%!", [], "%!!(MISSING)"),
        ("%", [], "%!(NOVERB)"),
        ("%%", [], "%"),
        ("100%% %s", ["done"], "100% done"),
        ("%[2]d %[1]d", [1, 2], "2 1"),
        ("%[3]d", [1], "%!d(BADINDEX)"),
        ("%*d|%-*d|", [4, 7, 4, 7], "   7|7   |"),
        ("%.*f", [2, 3.14159], "3.14"),
        ("%-5d|%5s|%-5s|%.2s|%05d|%+d|% d", [42, "ab", "ab", "abc", -42, 42, 42], "42   |   ab|ab   |ab|-0042|+42| 42"),
        ("%x %X %#x %o %#o %O %b", [255, 255, 255, 8, 8, 8, 5], "ff FF 0xff 10 010 0o10 101"),
        ("%c %U %#U %q", [65, 0x1F600, 0x41, 65], "A U+1F600 U+0041 'A' 'A'"),
        ("%x % x %#x %X", ["hi", "hi", "hi", "hi"], "6869 68 69 0x6869 6869"),
        ("%t %v", [True, False], "true false"),
        ("%d", [True], "%!d(bool=true)"),
        ("%8.3f|%-8.2e|%g|%G|%e", [3.14159, 1234.5, 1e21, 1e-7, 1.0], "   3.142|1.23e+03|1e+21|1E-07|1.000000e+00"),
        ("%.3g|%g|%g", [1234.5678, 100000.0, 123456789.0], "1.23e+03|100000|1.23456789e+08"),
        ("%6.2f|%+.1e|%08.3f|% .2f", [-1.5, 12345.0, -3.14159, 2.0], " -1.50|+1.2e+04|-003.142| 2.00"),
        ("%v|%+v|%#v", [KVPair("/a", "1"), KVPair("/a", "1"), "a"], '{/a 1}|{Key:/a Value:1}|"a"'),
        ("%#v", [[1, "b"]], '[]interface {}{1, "b"}'),
        ("%#v", [{"k": 1}], 'map[string]interface {}{"k":1}'),
        ("%T %T %T %T %T %T", [1, "a", 1.5, StrSlice(), {}, None], "int string float64 []string map[string]interface {} <nil>"),
        ("%s", [[1, "a"]], "[%!s(int=1) a]"),
        ("%d", [[1, None]], "[1 <nil>]"),  # a nil element prints <nil> whatever the verb
        ("%x", [3.0], "0x1.8p+01"),
        ("%5.1v|%-6v|", ["abc", 1.5], "    a|1.5   |"),
        ("%q", ["a\"b\\\n\x01\u00e9\u200b"], '"a\\"b\\\\\\n\\x01é\\u200b"'),
        ("%+q %#q", ["é", "a`"], '"\\u00e9" "a`"'),
        ("%#q", ["ab"], "`ab`"),
        ("%v", [float("inf")], "+Inf"),
        ("%5.1f|%-7.2f|%07.2f", [float("-inf"), float("nan"), float("inf")], " -Inf|NaN    |   +Inf"),
    ],
)
def test_printf_verbs(fmt: str, args: list[object], out: str) -> None:
    assert sprintf(fmt, args) == out


def test_print_spacing_rule() -> None:
    # a space between operands only when neither is a string
    assert sprint(["a", 1, 2, "b"]) == "a1 2b"
    assert sprint([1, 2]) == "1 2"
    assert sprint(["a", "b"]) == "ab"
    assert sprint([1, 2, "a", 3.5, None]) == "1 2a3.5 <nil>"
    assert sprintln(["z", 1]) == "z 1\n"
    assert render('{{print "a" 1 2 "b"}}|{{println "z"}}') == "a1 2b|z\n"


def test_format_float_shortest_and_explicit() -> None:
    assert format_float(3.14159, "f", 1) == "3.1"
    assert format_float(1.5, "g", 3) == "1.5"
    assert format_float(1e5, "g", 3) == "1e+05"
    assert format_float(1.0, "x", 2) == "0x1.00p+00"
    assert format_float(1.99999, "x", 1) == "0x1.0p+01"
    assert format_float(5e-324, "g", -1) == "5e-324"
    assert format_float(5e-324, "x", -1) == "0x1p-1074"
    assert format_float(1.0, "b", -1) == "4503599627370496p-52"
    assert format_float(0.0, "b", -1) == "0p-1074"
    assert format_float(1e21, "f", -1) == "1000000000000000000000"
    assert format_float(2.5e-05, "e", -1) == "2.5e-05"


def test_quote_like_strconv() -> None:
    assert quote("a\x7f\U0001f600") == '"a\\x7f😀"'
    assert quote("\udcff") == '"\\xff"'  # an invalid byte
    assert quote("é", ascii_only=True) == '"\\u00e9"'


def test_html_js_urlquery() -> None:
    assert render("{{html \"<a href='x'>&\\\"\"}}") == "&lt;a href=&#39;x&#39;&gt;&amp;&#34;"
    assert render('{{js "it\'s <b> & =\\n é"}}') == "it\\'s \\x3Cb\\x3E \\x26 \\x3D\\u000A é"
    assert render('{{urlquery "a b&c=d/é~"}}') == "a+b%26c%3Dd%2F%C3%A9~"
    assert render("{{html 1 .x 2}}") == "1&lt;no value&gt;2"  # nil prints <no value>, then escaped
    assert render("{{. | html}}", data="<") == "&lt;"
    # text/template never escapes by itself
    assert render("{{.}}", data="<a>&'") == "<a>&'"
