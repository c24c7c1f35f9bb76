"""The lexer against every `unit_parse` vector, in its dialect."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from vectors import load_vectors

from flotte.unit import load_text, parse
from flotte.unit.parser import GO_LINE_MAX, LONG_LINE_MAX

VECTORS = load_vectors()["unit_parse"]


def _input(entry: dict) -> str:
    if "input_spec" in entry:
        return "".join(s * n for s, n in entry["input_spec"]["parts"])
    return entry["input"]


@pytest.mark.parametrize("entry", VECTORS, ids=[f"{e['dialect']}:{e['name']}" for e in VECTORS])
def test_unit_parse_vector(entry: dict) -> None:
    text = _input(entry)
    dialect = entry["dialect"]
    result = parse(text, dialect)
    got = [[o.section, o.key, o.value] for o in result.options]
    if entry.get("expected_error"):
        assert not result.ok, got
        kind = entry["error_kind"]
        assert result.error_kind == kind.split(" ")[0].replace("'", "") or (
            kind.startswith("load state") and result.error_kind == "syntax"), result.error_kind
        for w in entry.get("expected_warnings", []):
            line, _, msg = w.partition(": ")
            assert result.fatal is not None
            assert result.fatal.line == int(line.removeprefix("line "))
            assert result.fatal.message == msg
        return
    assert result.ok, result.fatal
    if entry.get("expected_load_state") == "masked":
        assert result.masked
        assert load_text(text, "x.service").load_state == "masked"
    if "expected_last_value" in entry:
        sec, key, value = entry["expected_last_value"]
        assert [o.value for o in result.options if (o.section, o.key) == (sec, key)][-1] == value
    elif entry["source"].startswith("oracle"):
        # Oracle entries observe the loaded unit, where specifiers are expanded
        # (the probe unit was syn09.target); each listed setting must hold.
        unit = load_text(text, "syn09.target")
        for sec, key, value in entry["expected_options"]:
            assert unit.value(sec, key) == value, (sec, key)
        seen = {(o.section, o.key) for o in result.options}
        assert {(s, k) for s, k, _ in entry["expected_options"]} <= seen
    else:
        assert got == entry["expected_options"]
    warnings = [f"line {d.line}: {d.message}" for d in result.diagnostics]
    for w in entry.get("expected_warnings", []):
        assert w in warnings


def test_line_numbers_of_continued_lines_are_the_last_physical_line() -> None:
    result = parse("[Unit]\nDescription=a\\\n b\\\n c\nAfter=x.service\n")
    assert [(o.key, o.line) for o in result.options] == [("Description", 4), ("After", 5)]


def test_crlf_and_lone_cr_and_nul_end_lines() -> None:
    result = parse("[Unit]\r\nDescription=x\rAfter=a.service\x00Wants=b.service\n")
    assert [(o.key, o.value, o.line) for o in result.options] == [
        ("Description", "x", 2), ("After", "a.service", 3), ("Wants", "b.service", 4)]


def test_bom_is_skipped() -> None:
    assert parse("\ufeff[Unit]\nDescription=x\n").options[0].value == "x"


def test_limits() -> None:
    ok = "[Unit]\nDescription=" + "x" * 4000 + "\n"
    assert parse(ok).ok
    assert parse("[Unit]\nDescription=" + "x" * LONG_LINE_MAX + "\n").error_kind == \
        "line_too_long"
    go = parse("[Unit]\nDescription=" + "x" * GO_LINE_MAX + "\n", "go-systemd")
    assert go.error_kind == "line_too_long"


@pytest.mark.parametrize("data", [
    b"\xff\xfe\x00\x01binary",
    b"[Unit]\nDescription=\xc3\x28\n",
    bytes(range(256)) * 8,
])
def test_garbage_never_raises(data: bytes) -> None:
    for dialect in ("systemd", "go-systemd"):
        result = parse(data, dialect)  # type: ignore[arg-type]
        assert not result.ok or result.options is not None
    unit = load_text(data, "garbage.service")
    assert unit.load_state == "error"
    assert unit.errors and unit.errors[0].line is not None


_unitish = st.lists(st.sampled_from([
    "[Unit]", "[Service]", "[X-Fleet]", "[Install]", "[Bogus", "Description=%i %z x",
    "ExecStart=/bin/echo 'a\\", "ExecStart=-@/bin/x y ; /bin/z", "Environment=\"A=1 B=2",
    "After=a.service b@.service %n", "TimeoutSec=", "Restart=always", "Type=oneshot",
    "MachineOf=%p.service", "Global=yes", "MachineID=x", "\\", "# c \\", "", "  ",
    "LimitNOFILE=1:2:3", "WorkingDirectory=%I/..", "\x00", "\r", "KillMode=none",
])).map("\n".join)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=300), _unitish, st.binary(max_size=300)))
def test_loading_never_raises(text: str | bytes) -> None:
    for dialect in ("systemd", "go-systemd"):
        unit = load_text(text, "fuzz@a-b.service", dialect=dialect)  # type: ignore[arg-type]
        assert unit.load_state in ("loaded", "error", "bad-setting", "masked")
        for d in unit.diagnostics:
            assert d.message
