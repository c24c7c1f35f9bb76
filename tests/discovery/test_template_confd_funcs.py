"""confd's 39 functions (spec §5.3) over the flat key/value store (§5.1)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from discovery.tmpl_support import exec_error, render
from flotte.discovery.template import SRV, Hooks, compile, store_view
from flotte.discovery.template.confd import CONFD_FUNCS, go_base64_decode
from flotte.discovery.template.values import GoError
from flotte.unit.gopath import BadPatternError, clean, compile_glob, match

STORE = {
    "/s/a": "1",
    "/s/bb": "22",
    "/s/c": "0",
    "/s/d/x": "dx",
    "/s/d/y": "dy",
    "/top": "t",
    "/e": "",
}


def test_the_function_list_is_complete() -> None:
    names = """exists ls lsdir get gets getv getvs base split json jsonArray dir map getenv
        join datetime toUpper toLower contains replace trimSuffix lookupIP lookupIPV4
        lookupIPV6 lookupSRV fileExists base64Encode base64Decode parseBool reverse
        sortByLength sortKVByLength add sub div mod mul seq atoi"""
    assert sorted(CONFD_FUNCS) == sorted(names.split())
    assert len(CONFD_FUNCS) == 39


# -- the store --------------------------------------------------------------------


def test_get_and_exists() -> None:
    assert render('{{with get "/s/a"}}{{.Key}}={{.Value}} {{base .Key}}{{end}}', STORE) == "/s/a=1 a"
    assert exec_error('{{get "/nope"}}', STORE).reason == "error calling get: key does not exist: /nope"
    out = render('{{exists "/s/a"}} {{exists "/s"}} {{exists "/s/d"}} {{exists "/e"}}', STORE)
    assert out == "true false false true"  # directories are not keys


def test_getv_defaults() -> None:
    assert render('{{getv "/s/a"}} {{getv "/nope" "dflt"}} {{getv "/nope" ""}}|', STORE) == "1 dflt |"
    # an existing empty value is not replaced by the default
    assert render('[{{getv "/e" "dflt"}}]', STORE) == "[]"
    assert render('{{getv "/nope" "a" "b"}}', STORE) == "a"
    e = exec_error('{{getv "/nope"}}', STORE)
    assert e.reason == "error calling getv: key does not exist: /nope"


def test_gets_sorts_by_key_and_getvs_by_value() -> None:
    assert render('{{range gets "/s/*"}}{{.Key}}={{.Value}} {{end}}', STORE) == "/s/a=1 /s/bb=22 /s/c=0 "
    assert render('{{getvs "/s/*"}}', STORE) == "[0 1 22]"
    assert render('{{gets "/s/*"}}', STORE) == "[{/s/a 1} {/s/bb 22} {/s/c 0}]"


@pytest.mark.parametrize(
    ("pattern", "keys"),
    [
        ("/s/*", "/s/a /s/bb /s/c"),  # * never crosses /
        ("/s/*/*", "/s/d/x /s/d/y"),
        ("/s/?", "/s/a /s/c"),
        ("/s/[ab]*", "/s/a /s/bb"),
        ("/s/[^ab]", "/s/c"),
        ("/s/[a-c]", "/s/a /s/c"),
        ("/s/a", "/s/a"),  # no metacharacter: an exact key
        ("/s/\\a", "/s/a"),
        ("/*", "/e /top"),
        ("/nothing/*", ""),
    ],
)
def test_glob_patterns(pattern: str, keys: str) -> None:
    out = render(f"{{{{range gets `{pattern}`}}}}{{{{.Key}}}} {{{{end}}}}", STORE)
    assert out.split() == keys.split()


def test_bad_pattern_is_an_error_only_with_keys() -> None:
    e = exec_error('{{gets "/s/["}}', STORE)
    assert e.reason == "error calling gets: syntax error in pattern"
    assert exec_error('{{getvs "/s/["}}', STORE).reason == "error calling getvs: syntax error in pattern"
    assert render('{{gets "/s/["}}') == "[]"  # memkv only matches while iterating keys


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{{ls "/s"}}', "[a bb c d]"),  # leaves and directories alike
        ('{{ls "/s/"}}', "[a bb c d]"),
        ('{{lsdir "/s"}}', "[d]"),
        ('{{ls "/s/a"}}', "[a]"),  # a key equal to the path adds its base name
        ('{{ls "/nope"}}', "[]"),
        ('{{ls "/"}}', "[e top]"),  # quirk: only top-level leaves
        ('{{lsdir "/"}}', "[]"),  # quirk: nothing
        ('{{lsdir "/s/d"}}', "[]"),
    ],
)
def test_ls_and_lsdir(text: str, expected: str) -> None:
    assert render(text, STORE) == expected


def test_store_view_strips_the_prefix() -> None:
    backend = {"/production/nginx/domain": "example.com", "/production/app/x": "1"}
    assert store_view(backend, "/production") == {"/nginx/domain": "example.com", "/app/x": "1"}
    assert store_view(backend.items(), "production/") == {"/nginx/domain": "example.com", "/app/x": "1"}
    assert store_view({"/a//b/": "v"}, "/") == {"/a/b": "v"}


# -- strings and paths ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{{base "/a/b"}} {{base "/a/b/"}} {{base "/"}} {{base ""}}', "b b / ."),
        ('{{dir "/a/b"}} {{dir "/a"}} {{dir ""}} {{dir "a/b/"}}', "/a / . a/b"),
        ('{{split "a:b:c" ":"}} {{len (split "" ":")}} {{split "abc" ""}}', "[a b c] 1 [a b c]"),
        ('{{join (split "a:b" ":") "-"}} {{join (getvs "/s/*") ","}}', "a-b 0,1,22"),
        ('{{toUpper "abcß"}} {{toLower "ÀBC"}}', "ABCß àbc"),
        ('{{contains "abc" "b"}} {{contains "abc" "d"}}', "true false"),
        ('{{replace "a-b-c" "-" "_" -1}} {{replace "a-b-c" "-" "_" 1}} {{replace "aaa" "a" "b" 0}}', "a_b_c a_b-c aaa"),
        ('{{replace "abc" "" "-" -1}}', "-a-b-c-"),
        ('{{trimSuffix "db.local" ".local"}} {{trimSuffix "db" ".local"}}', "db db"),
        ('{{base64Encode "Value"}} {{base64Decode "VmFsdWU="}}', "VmFsdWU= Value"),
        ('{{base64Decode "VmFs\\ndWU="}}', "Value"),  # newlines are skipped
        ('{{parseBool "1"}} {{parseBool "T"}} {{parseBool "False"}}', "true true false"),
        ('{{atoi "42"}} {{atoi "-7"}} {{atoi "+3"}} {{atoi "007"}}', "42 -7 3 7"),
    ],
)
def test_string_functions(text: str, expected: str) -> None:
    assert render(text, STORE) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('{{atoi "x"}}', 'error calling atoi: strconv.Atoi: parsing "x": invalid syntax'),
        ('{{atoi ""}}', 'error calling atoi: strconv.Atoi: parsing "": invalid syntax'),
        ('{{atoi " 1"}}', 'error calling atoi: strconv.Atoi: parsing " 1": invalid syntax'),
        (
            '{{atoi "99999999999999999999"}}',
            'error calling atoi: strconv.Atoi: parsing "99999999999999999999": value out of range',
        ),
        ('{{parseBool "yes"}}', 'error calling parseBool: strconv.ParseBool: parsing "yes": invalid syntax'),
        ('{{base64Decode "QQ"}}', "error calling base64Decode: illegal base64 data at input byte 0"),
        ('{{base64Decode "Q!=="}}', "error calling base64Decode: illegal base64 data at input byte 1"),
        ('{{base64Decode "QQ==QQ=="}}', "error calling base64Decode: illegal base64 data at input byte 4"),
        ('{{join (jsonArray "[1]") ","}}', "wrong type for value; expected []string; got []interface {}"),
        ('{{replace "a" "a" "b" "1"}}', 'expected integer; found "1"'),
    ],
)
def test_string_function_errors(text: str, reason: str) -> None:
    assert exec_error(text, STORE).reason == reason


def test_go_base64_decoder_edge_cases() -> None:
    assert go_base64_decode(b"") == b""
    assert go_base64_decode(b"QUJD\n") == b"ABC"
    assert go_base64_decode(b"QUI=") == b"AB"
    assert go_base64_decode(b"QQ==") == b"A"
    for bad, pos in [(b"Q===", 1), (b"QQ=", 3), (b"QQ=x", 2), (b"QUJD=", 4)]:
        with pytest.raises(GoError) as info:
            go_base64_decode(bad)
        assert str(info.value) == f"illegal base64 data at input byte {pos}"


# -- json ----------------------------------------------------------------------------


def test_json_objects_arrays_and_numbers() -> None:
    store = {"/j": '{"a":80,"b":1.5,"c":1000000,"e":true,"f":null,"l":[1,"x"],"o":{"k":"v"}}'}
    text = '{{$d := json (getv "/j")}}{{$d.a}} {{$d.b}} {{$d.c}} {{$d.e}} {{$d.f}} {{$d.l}} {{$d.o.k}}'
    assert render(text, store) == "80 1.5 1e+06 true <no value> [1 x] v"
    assert render('{{range jsonArray "[\\"1\\", \\"2\\"]"}}{{.}},{{end}}') == "1,2,"
    assert render('{{json "null"}} {{jsonArray "null"}}') == "map[] []"
    # json numbers are float64 (spec §5.4)
    assert render('{{$d := json "{\\"p\\":80}"}}{{eq $d.p 80.0}} {{printf "%d" $d.p}}') == "true %!d(float64=80)"
    assert exec_error('{{$d := json "{\\"p\\":80}"}}{{eq $d.p 80}}').reason == (
        "error calling eq: incompatible types for comparison"
    )


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ("not json", "invalid character 'o' in literal null (expecting 'u')"),
        ('{"a":1', "unexpected end of JSON input"),
        ('["a"]', "json: cannot unmarshal array into Go value of type map[string]interface {}"),
        ('"s"', "json: cannot unmarshal string into Go value of type map[string]interface {}"),
        ("tru", "invalid character ' ' in literal true (expecting 'e')"),
        ('{"a" 1}', "invalid character '1' after object key"),
        ('{"a":1 "b"}', "invalid character '\"' after object key:value pair"),
        ('{"a":1,}', "invalid character '}' looking for beginning of object key string"),
        ("[1,]", "invalid character ']' looking for beginning of value"),
        ("[1 2]", "invalid character '2' after array element"),
        ("{} x", "invalid character 'x' after top-level value"),
        ('"\x01"', "invalid character '\\x01' in string literal"),
        ('{"a":"\\q"}', "invalid character 'q' in string escape code"),
        ('"\\u12x4"', "invalid character 'x' in \\u hexadecimal character escape"),
        ("-x", "invalid character 'x' in numeric literal"),
        ("1.e", "invalid character 'e' after decimal point in numeric literal"),
        ("1e+", "invalid character ' ' in exponent of numeric literal"),
        ("é", "invalid character 'Ã' looking for beginning of value"),
        ("", "unexpected end of JSON input"),
        ('{"a":1e999}', "json: cannot unmarshal number 1e999 into Go value of type float64"),
    ],
)
def test_json_errors(doc: str, message: str) -> None:
    e = exec_error("{{json .}}", data=doc)
    assert e.reason == f"error calling json: {message}"


def test_json_array_errors() -> None:
    e = exec_error('{{jsonArray "{}"}}')
    assert e.reason == (
        "error calling jsonArray: json: cannot unmarshal object into Go value of type []interface {}"
    )


def test_json_strings_replace_invalid_surrogates() -> None:
    assert render('{{$d := json "{\\"a\\":\\"\\\\ud800x\\"}"}}{{$d.a}}') == "\ufffdx"


# -- map, lists, arithmetic --------------------------------------------------------------


def test_map() -> None:
    text = '{{$e := map "name" "es" "port" 9200}}{{.}}{{$e.name}}:{{index $e "port"}} {{$e}}'
    assert render(text) == "<no value>es:9200 map[name:es port:9200]"
    assert render('{{define "ep"}}{{.name}}:{{.port}}{{end}}{{template "ep" (map "name" "es" "port" 1)}}') == "es:1"
    assert exec_error('{{map "a"}}').reason == "error calling map: invalid map call"
    assert exec_error("{{map 1 2}}").reason == "error calling map: map keys must be strings"


def test_reverse_quirk_and_sorting() -> None:
    store = {"/s/a": "1", "/s/b": "22", "/s/c": "333"}
    assert render('{{reverse (getvs "/s/*")}}', store) == "[333 22 1]"
    # gets returns the named type KVPairs: reverse leaves it alone
    assert render('{{range reverse (gets "/s/*")}}{{.Key}} {{end}}', store) == "/s/a /s/b /s/c "
    assert render("{{reverse (seq 1 3)}} {{reverse 5}}") == "[1 2 3] 5"
    # ...but sortKVByLength returns a []KVPair, which reverse does reverse
    out = render('{{range reverse (sortKVByLength (gets "/s/*"))}}{{.Key}} {{end}}', store)
    assert out == "/s/c /s/b /s/a "
    assert render('{{sortByLength (split "ccc,a,bb" ",")}}') == "[a bb ccc]"
    store2 = {"/long/key": "1", "/k": "2"}
    assert render('{{range sortKVByLength (gets "/*")}}{{.Key}} {{end}}', store2) == "/k "
    # reverse works in place, like Go's slices sharing their array
    assert render('{{$v := split "a,b" ","}}{{$_ := reverse $v}}{{$v}}') == "[b a]"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{{add 1 2}} {{sub 5 7}} {{mul 3 4}} {{div 7 2}} {{mod 7 3}}", "3 -2 12 3 1"),
        ("{{div -7 2}} {{mod -7 3}} {{div 7 -2}} {{mod 7 -3}}", "-3 -1 -3 1"),  # truncation
        ("{{add 9223372036854775807 1}}", "-9223372036854775808"),  # int64 wraps
        ("{{mul 4611686018427387904 4}}", "0"),
        ('{{seq 1 3}} {{seq 3 1}} {{len (seq 3 1)}} {{seq 2 2}}', "[1 2 3] [] 0 [2]"),
        ('{{seq 1 (atoi (getv "/n"))}} {{add (atoi (getv "/n")) 1}}', "[1 2 3] 4"),
    ],
)
def test_arithmetic(text: str, expected: str) -> None:
    assert render(text, {"/n": "3"}) == expected


def test_arithmetic_errors() -> None:
    assert exec_error("{{div 1 0}}").reason == "error calling div: runtime error: integer divide by zero"
    assert exec_error("{{mod 1 0}}").reason == "error calling mod: runtime error: integer divide by zero"
    assert exec_error('{{add (getv "/n") 1}}', {"/n": "1"}).reason == (
        "wrong type for value; expected int; got string"
    )
    assert exec_error("{{seq 1 100000000}}").reason.startswith("error calling seq:")


# -- the world, through hooks ------------------------------------------------------------


def test_getenv() -> None:
    env = {"SET": "v", "EMPTY": ""}
    out = compile('{{getenv "SET"}}|{{getenv "UNSET"}}|{{getenv "UNSET" "d"}}|{{getenv "EMPTY" "d"}}', "t").render(env=env)
    assert out == "v||d|d"  # unset or empty gives the default


def test_datetime() -> None:
    tz = timezone(timedelta(hours=2), "CEST")
    now = datetime(2015, 3, 7, 9, 4, 5, 123456, tzinfo=tz)
    hooks = Hooks(now=lambda: now)
    t = compile(
        '{{datetime.Format "2006-01-02 15:04:05.000 -0700 MST Mon Jan _2 3PM .999999"}}|'
        "{{with datetime}}{{.Year}} {{.Month}} {{printf \"%d\" .Month}} {{.Weekday}} {{.YearDay}} "
        "{{.Unix}} {{.Hour}} {{.Nanosecond}}{{end}}|{{datetime}}|"
        '{{datetime.UTC.Format "Z07:00 15h"}}|{{(datetime.AddDate 0 1 -7).Format "Jan 2"}}',
        "t",
    )
    out = t.render(hooks=hooks)
    assert out == (
        "2015-03-07 09:04:05.123 +0200 CEST Sat Mar  7 9AM .123456|"
        "2015 March 3 Saturday 66 1425711845 9 123456000|"
        "2015-03-07 09:04:05.123456 +0200 CEST|Z 07h|Mar 31"
    )


def test_datetime_layouts() -> None:
    now = datetime(2009, 11, 10, 23, 0, 0, tzinfo=UTC)
    hooks = Hooks(now=lambda: now)

    def fmt(layout: str) -> str:
        return compile(f'{{{{datetime.Format "{layout}"}}}}', "t").render(hooks=hooks)

    assert fmt("Monday, 02-Jan-06 15:04:05 MST") == "Tuesday, 10-Nov-09 23:00:00 UTC"
    assert fmt("2006-01-02T15:04:05Z07:00") == "2009-11-10T23:00:00Z"
    assert fmt("January 2, 2006 03:04pm -07:00") == "November 10, 2009 11:00pm +00:00"
    assert fmt("002 __2 .000 .999 ,000") == "314 314 .000  ,000"
    assert fmt("Jan Janx Mon Monx") == "Nov Janx Tue Monx"


def test_lookup_ip_is_sorted_and_filtered() -> None:
    hooks = Hooks(lookup_ip=lambda host: ["10.0.0.2", "::1", "10.0.0.10", "fe80::1"])
    t = compile('{{lookupIP "h"}} {{lookupIPV4 "h"}} {{lookupIPV6 "h"}}', "t")
    # sorted as strings, which avoids reloads caused by DNS shuffling
    assert t.render(hooks=hooks) == "[10.0.0.10 10.0.0.2 ::1 fe80::1] [10.0.0.10 10.0.0.2] [::1 fe80::1]"

    def fail(host: str) -> list[str]:
        raise OSError("no such host")

    assert t.render(hooks=Hooks(lookup_ip=fail)) == "[] [] []"


def test_lookup_srv() -> None:
    records = [SRV("b.example", 80, 10, 5), SRV("a.example", 8080, 20, 1)]
    hooks = Hooks(lookup_srv=lambda s, p, n: records if (s, p, n) == ("http", "tcp", "ex") else [])
    t = compile('{{range lookupSRV "http" "tcp" "ex"}}{{.Target}}:{{.Port}} {{.Priority}} {{.Weight}};{{end}}', "t")
    assert t.render(hooks=hooks) == "a.example:8080 20 1;b.example:80 10 5;"
    assert compile('{{lookupSRV "x" "y" "z"}}', "t").render(hooks=Hooks()) == "[]"


def test_file_exists() -> None:
    t = compile('{{fileExists "/"}} {{fileExists "/definitely/not/here"}}', "t")
    assert t.render() == "true false"  # the default hook stats the real file system
    assert t.render(hooks=Hooks(file_exists=lambda p: p == "/definitely/not/here")) == "false true"


# -- path.Match -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "name", "matched"),
    [
        ("abc", "abc", True),
        ("*", "abc", True),
        ("*c", "abc", True),
        ("a*", "a", True),
        ("a*/b", "abc/b", True),
        ("a*/b", "a/c/b", False),
        ("a*b*c*d*e*/f", "axbxcxdxe/f", True),
        ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", False),
        ("a*b?c*x", "abxbbxdbxebxczzx", True),
        ("ab[c]", "abc", True),
        ("ab[b-d]", "abc", True),
        ("ab[e-g]", "abc", False),
        ("ab[^c]", "abc", False),
        ("ab[^e-g]", "abc", True),
        ("a\\*b", "a*b", True),
        ("a\\*b", "ab", False),
        ("a?b", "a☺b", True),
        ("a[^a]b", "a☺b", True),
        ("[a-ζ]*", "α", True),
        ("*[a-ζ]", "A", False),
        ("a?b", "a/b", False),
        ("a*b", "a/b", False),
        ("[\\]a]", "]", True),
        ("[\\-]", "-", True),
        ("[x\\-]", "z", False),
        ("[/]", "/", True),  # a class may match the separator
        ("[z-a]", "m", False),  # an empty range matches nothing
    ],
)
def test_path_match(pattern: str, name: str, matched: bool) -> None:
    assert match(pattern, name) is matched


@pytest.mark.parametrize("pattern", ["[", "[^", "[^bc", "a[", "[]a]", "[-]", "[x-]", "[-x]", "\\", "[a-b-c]", "*x\\"])
def test_path_match_bad_patterns(pattern: str) -> None:
    with pytest.raises(BadPatternError):
        compile_glob(pattern)


def test_path_clean() -> None:
    cases = {
        "": ".",
        "/": "/",
        "a/b/": "a/b",
        "//a//b": "/a/b",
        "a/./b": "a/b",
        "a/../b": "b",
        "../a": "../a",
        "/../a": "/a",
        "a/../..": "..",
        "a/b/../../..": "..",
    }
    for given, want in cases.items():
        assert clean(given) == want, given
