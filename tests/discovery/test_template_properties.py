"""Property tests: robustness of the lexer/parser/evaluator and the Go ports."""

from __future__ import annotations

import contextlib
import json
import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from discovery.tmpl_support import QUIET_HOOKS
from flotte.discovery.template import TemplateError, TemplateExecError, compile
from flotte.discovery.template.gofmt import sprintf
from flotte.discovery.template.gojson import JSONError, unmarshal
from flotte.discovery.template.gostrconv import quote, unquote
from flotte.unit.gopath import BadPatternError, match

STORE = {"/a": "1", "/b/c": "x", "/b/d": '{"k":[1,null]}', "/n": "2"}

FRAGMENTS = [
    "{{", "}}", "{{- ", " -}}", " ", "\n", "x", "-", "$x", "$", ":=", "=", ".", ".a", ".Key",
    "|", "(", ")", '"', '"/a"', '"/b/*"', "`", "'a'", "1", "2", "-1", "1.5", "0x1",
    "/*", "*/", "range", "end", "if", "else", "with", "define", "template", "block",
    "break", "continue", "nil", "true", "getv", "gets", "getvs", "ls", "json", "printf",
    '"%d %s"', "index", "len", "eq", "and", "or", "not", "add", "split", "print", ",",
]


@given(st.text().filter(lambda s: "{{" not in s))
def test_text_without_actions_renders_to_itself(text: str) -> None:
    assert compile(text, "t").render({}, env={}) == text


@settings(max_examples=400)
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=30).map("".join))
def test_parser_and_evaluator_fail_only_with_template_errors(text: str) -> None:
    try:
        tmpl = compile(text, "t")
    except TemplateError as e:
        assert str(e).startswith("template: t:")
        return
    try:
        tmpl.render(STORE, env={}, hooks=QUIET_HOOKS)
    except TemplateExecError as e:
        assert str(e).startswith("template: t")


@given(st.text(max_size=60))
def test_parser_survives_arbitrary_text(text: str) -> None:
    with contextlib.suppress(TemplateError):
        compile("{{" + text, "t")
    with contextlib.suppress(TemplateError):
        compile(text + "}}", "t")


# -- path.Match: the compiled regex against a direct port of Go's algorithm ----


def _scan_chunk(pattern: str) -> tuple[bool, str, str]:
    star = False
    while pattern and pattern[0] == "*":
        pattern = pattern[1:]
        star = True
    inrange = False
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            if i + 1 < len(pattern):
                i += 1
        elif c == "[":
            inrange = True
        elif c == "]":
            inrange = False
        elif c == "*" and not inrange:
            break
        i += 1
    return star, pattern[:i], pattern[i:]


def _get_esc(chunk: str) -> tuple[str, str]:
    if not chunk or chunk[0] in "-]":
        raise BadPatternError
    if chunk[0] == "\\":
        chunk = chunk[1:]
        if not chunk:
            raise BadPatternError
    r, rest = chunk[0], chunk[1:]
    if not rest:
        raise BadPatternError
    return r, rest


def _match_chunk(chunk: str, s: str) -> tuple[str, bool]:
    failed = False
    while chunk:
        if not failed and not s:
            failed = True
        c = chunk[0]
        if c == "[":
            r = ""
            if not failed:
                r, s = s[0], s[1:]
            chunk = chunk[1:]
            negated = bool(chunk) and chunk[0] == "^"
            if negated:
                chunk = chunk[1:]
            matched = False
            nrange = 0
            while True:
                if chunk and chunk[0] == "]" and nrange > 0:
                    chunk = chunk[1:]
                    break
                lo, chunk = _get_esc(chunk)
                hi = lo
                if chunk[0] == "-":
                    hi, chunk = _get_esc(chunk[1:])
                if not failed and lo <= r <= hi:
                    matched = True
                nrange += 1
            if matched == negated:
                failed = True
        elif c == "?":
            if not failed:
                if s[0] == "/":
                    failed = True
                s = s[1:]
            chunk = chunk[1:]
        else:
            if c == "\\":
                chunk = chunk[1:]
                if not chunk:
                    raise BadPatternError
            if not failed:
                if chunk[0] != s[0]:
                    failed = True
                s = s[1:]
            chunk = chunk[1:]
    if failed:
        return "", False
    return s, True


def go_match(pattern: str, name: str) -> bool:
    """Go 1.19's path.Match, line by line."""
    while pattern:
        star, chunk, pattern = _scan_chunk(pattern)
        if star and chunk == "":
            return "/" not in name
        t, ok = _match_chunk(chunk, name)
        if ok and (len(t) == 0 or len(pattern) > 0):
            name = t
            continue
        if star:
            i = 0
            found = False
            while i < len(name) and name[i] != "/":
                t, ok = _match_chunk(chunk, name[i + 1 :])
                if ok:
                    if len(pattern) == 0 and len(t) > 0:
                        i += 1
                        continue
                    name = t
                    found = True
                    break
                i += 1
            if found:
                continue
        while pattern:
            _, chunk, pattern = _scan_chunk(pattern)
            _match_chunk(chunk, "")
        return False
    return len(name) == 0


PATTERN_CHARS = st.sampled_from(list("ab/*?[]^-\\c"))


@settings(max_examples=1000)
@given(st.lists(PATTERN_CHARS, max_size=8).map("".join), st.lists(st.sampled_from(list("abc/-]^")), max_size=8).map("".join))
def test_glob_regex_agrees_with_go_path_match(pattern: str, name: str) -> None:
    try:
        want: bool | None = go_match(pattern, name)
    except BadPatternError:
        want = None
    try:
        got: bool | None = match(pattern, name)
    except BadPatternError:
        got = None
    # a malformed pattern is an error whatever the name (Go 1.16+ checks the
    # rest of the pattern even after a mismatch)
    assert got == want, (pattern, name)


# -- fmt, strconv, json ---------------------------------------------------------

ARGS = st.lists(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=5), st.lists(st.integers(), max_size=3)),
    max_size=4,
)


@given(st.text(alphabet="%dsvqxXfegtTc%#+- 0123456789.*[]abc", max_size=12), ARGS)
def test_sprintf_never_raises(fmt: str, args: list[Any]) -> None:
    assert isinstance(sprintf(fmt, args), str)


@given(st.text())
def test_quote_unquote_round_trip(s: str) -> None:
    s = s.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    assert unquote(quote(s)) == s
    assert unquote(quote(s, ascii_only=True)) == s


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**15), 10**15) | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=12,
)


def _as_go(v: Any) -> Any:
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    if isinstance(v, int | float):
        return float(v)
    if isinstance(v, list):
        return [_as_go(x) for x in v]
    return {k: _as_go(x) for k, x in v.items()}


@given(st.dictionaries(st.text(max_size=5), JSON, max_size=4))
def test_json_objects_decode_like_go(doc: dict[str, Any]) -> None:
    got = unmarshal(json.dumps(doc), "object")
    assert got == _as_go(doc) or any(isinstance(v, float) and math.isnan(v) for v in got.values())


@given(st.text(max_size=20))
def test_json_scanner_never_crashes(text: str) -> None:
    with contextlib.suppress(JSONError):
        unmarshal(text, "object")
