"""EnvironmentFile= parsing (flotte.unit.envfile).

Every ``environment_file`` vector is a test case.  The ``oracle`` test feeds
random files to systemd 252's own ``load_env_file`` (Debian's
``libsystemd-shared-252.so`` through ctypes) and is skipped without it.
"""

from __future__ import annotations

import ctypes
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from vectors import load_vectors

from flotte.unit import envfile
from flotte.unit.envfile import apply_env_file, parse_env_file
from flotte.unit.errors import ValueParseError
from support import require_file

ENV_FILE: list[dict[str, Any]] = load_vectors()["environment_file"]


def _assignments(data: str | bytes) -> list[str]:
    return [f"{k}={v}" for k, v in parse_env_file(data)]


@pytest.mark.parametrize("entry", ENV_FILE, ids=[e["name"] for e in ENV_FILE])
def test_environment_file_vector(entry: dict[str, Any]) -> None:
    if entry.get("expected_error"):
        for text in entry["inputs"]:
            for data in (text, text.encode("utf-8")):
                with pytest.raises(ValueParseError) as exc:
                    parse_env_file(data, path="/etc/x.env")
                assert exc.value.message.startswith("/etc/x.env:1: invalid UTF-8")
                assert exc.value.fix
        return
    assert _assignments(entry["input"]) == entry["expected"]
    assert _assignments(entry["input"].encode("utf-8")) == entry["expected"]


def test_apply_env_file_drops_invalid_names() -> None:
    mixed = next(e for e in ENV_FILE if e["name"] == "mixed file")
    env = {"ten": "old", "PATH": "/bin"}
    dropped = apply_env_file(env, parse_env_file(mixed["input"]))
    assert dropped == ["export nine"]
    assert env["ten"] == ""
    assert env["five"] == '55"55FIVEcinco'
    assert list(env)[:2] == ["ten", "PATH"]  # existing keys keep their place
    assert "export nine" not in env


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", []),
        ("\n\n   \n", []),
        ("A=1\r\nB=2\r\n", ["A=1", "B=2"]),  # CR ends a line too
        ("#c\rFOO=bar\n", ["FOO=bar"]),  # ... even inside a comment
        ("A = x y  \n", ["A=x y"]),
        ("  A\t=\t1\n", ["A=1"]),
        ("=x\n", []),  # the first character always belongs to the key: key "=x", no '='
        ("==x\n", ["==x"]),  # key "=", value "x"
        ("A\n", []),
        ("A=\n", ["A="]),
        ('A=a"b c"\n', ['A=a"b c"']),  # quotes only open at the start of the value
        ("A='x'   'y'\n", ["A=xy"]),
        ('A="a\\nb\\$c\\`d"\n', ["A=a\\nb$c`d"]),
        ("A='multi\nline'\n", ["A=multi\nline"]),
        ('A="unterminated\n', ["A=unterminated\n"]),
        ("A=$HOME/x\n", ["A=$HOME/x"]),  # no expansion
        ("A=1\nB=2\nA=3\n", ["A=3", "B=2"]),  # replaced in place
        ("#comment \\\nB=2\n", ["B=2"]),  # systemd >= 254 (252 would drop B, see module doc)
        ("; x\nB=2", ["B=2"]),
        ("A=x # not a comment\n", ["A=x # not a comment"]),
        ("A=\\\n", ["A="]),
        ("A=trailing\\", ["A=trailing"]),
        ("# \udcff invalid UTF-8 in a comment is fine\nA=1\n", ["A=1"]),
    ],
)
def test_parse_env_file_more(text: str, expected: list[str]) -> None:
    assert _assignments(text) == expected


def test_invalid_utf8_message_names_path_and_line() -> None:
    data = b"# \xff in a comment is ignored\nx=1\ny=a\xffb\n"
    with pytest.raises(ValueParseError) as exc:
        parse_env_file(data, path="/etc/foo")
    assert exc.value.message == "/etc/foo:3: invalid UTF-8 value for key y: 'a\ufffdb', ignoring."
    with pytest.raises(ValueParseError) as exc:
        parse_env_file("\n\nk\ufffe=1")
    assert exc.value.message == "n/a:3: invalid UTF-8 in key 'k\ufffd', ignoring."


@pytest.mark.parametrize(
    "data", [b"a=\xed\xa0\x80", b"a=\xc0\x80", b"a=\xf4\x90\x80\x80", "a=\ufdd0", "a=\U0010ffff"]
)
def test_invalid_code_points(data: str | bytes) -> None:
    """Surrogates, overlong forms, > U+10FFFF and noncharacters fail like in systemd."""
    with pytest.raises(ValueParseError):
        parse_env_file(data)


def test_valid_astral_and_bmp_text() -> None:
    assert parse_env_file("a=\U0001f600 \ufffd ąę".encode()) == [("a", "\U0001f600 \ufffd ąę")]


def test_nul_byte_fails_the_file() -> None:
    with pytest.raises(ValueParseError) as exc:
        parse_env_file(b"a=1\nb=\x002", path="/x")
    assert exc.value.message.startswith("/x:2: ")


def test_reads_like_the_real_file(tmp_path: Path) -> None:
    path = tmp_path / "app.env"
    path.write_bytes(b"export PORT=8080\nHOST=0.0.0.0\n")
    pairs = parse_env_file(path.read_bytes(), path=str(path))
    env: dict[str, str] = {}
    assert apply_env_file(env, pairs) == ["export PORT"]
    assert env == {"HOST": "0.0.0.0"}


@given(st.text(max_size=200))
def test_never_raises_anything_but_value_parse_error(text: str) -> None:
    try:
        pairs = parse_env_file(text)
    except ValueParseError:
        return
    for key, value in pairs:
        assert key and isinstance(value, str)


@given(st.binary(max_size=200))
def test_never_raises_on_bytes(data: bytes) -> None:
    try:
        pairs = parse_env_file(data)
    except ValueParseError:
        return
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in pairs)


_PIECES = [
    "a", "B", "key", "=", " ", "\t", "\n", "\r", "'", '"', "\\", "\\\n", "#", ";", "x y",
    "export ", "ą", "$", "`", "\ufffe",
]  # fmt: skip


@given(st.lists(st.sampled_from(_PIECES), max_size=30).map("".join))
def test_line_fast_path_agrees_with_state_machine(text: str) -> None:
    """The per-line shortcut must give exactly what the character machine gives."""
    try:
        fast: Any = parse_env_file(text)
    except ValueParseError:
        fast = "error"
    slow = envfile._Collector(text, None)
    pos = 0
    try:
        while pos < len(text):
            pos = envfile._state_machine(text, pos, slow)
        result: Any = slow.items
    except ValueParseError:
        result = "error"
    assert fast == result


# ---------------------------------------------------------------------------
# Differential test against systemd 252's load_env_file
# ---------------------------------------------------------------------------

_LIBSHARED = "/usr/lib/x86_64-linux-gnu/systemd/libsystemd-shared-252.so"
_BYTE_PIECES = [
    b"a", b"B", b"key", b"=", b"=", b" ", b"\t", b"\n", b"\n", b"\r", b"'", b'"', b"\\",
    b"\\\n", b"#", b";", b"x y", b"export ", b"\xc4\x85", b"\xff", b"\xef\xbf\xbe",
    b"\xef\xb7\x90", b"$", b"`", b"\x00", b"\xed\xa0\x80", b"\xc0\x80", b"\xf0\x9f\x98\x80",
]  # fmt: skip
# systemd 252 lets a comment that ends in a backslash swallow the next line; 254 and the
# upstream tests (our vectors) do not.  Inputs with such a comment are not compared.
_COMMENT_CONTINUES = re.compile(rb"(^|[\n\r])[ \t\n\r]*[#;][^\n\r]*\\[\n\r]")


def _systemd_load_env_file(data: bytes, tmp: Path) -> list[bytes] | None:
    require_file(_LIBSHARED, "systemd")
    lib = ctypes.CDLL(_LIBSHARED)
    lib.load_env_file.argtypes = [
        ctypes.c_void_p,
        ctypes.c_char_p,
        ctypes.POINTER(ctypes.POINTER(ctypes.c_char_p)),
    ]
    tmp.write_bytes(data)
    strv = ctypes.POINTER(ctypes.c_char_p)()
    if lib.load_env_file(None, str(tmp).encode(), ctypes.byref(strv)) < 0:
        return None
    out: list[bytes] = []
    while strv and strv[len(out)] is not None:
        out.append(strv[len(out)])
    return out


@pytest.mark.oracle
@settings(
    max_examples=500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.sampled_from(_BYTE_PIECES), min_size=1, max_size=25).map(b"".join))
def test_oracle_load_env_file(tmp_path: Path, data: bytes) -> None:
    if _COMMENT_CONTINUES.search(data.split(b"\0")[0]):
        return
    theirs = _systemd_load_env_file(data, tmp_path / "env")
    try:
        ours: list[bytes] | None = [
            f"{k}={v}".encode("utf-8", "surrogateescape") for k, v in parse_env_file(data)
        ]
    except ValueParseError:
        ours = None
    assert ours == theirs
