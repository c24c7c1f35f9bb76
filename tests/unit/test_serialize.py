"""Serializer round trip: parse(serialize(options)) == options (hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flotte.unit import parse, serialize
from flotte.unit.errors import UnitFileError
from flotte.unit.parser import Option
from flotte.unit.serialize import unit_hash

_name_chars = st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="=[]#;\\\"'")
section = st.text(st.characters(blacklist_categories=("Cs", "Cc"),
                                blacklist_characters="]\\\"'\ufeff"), min_size=1, max_size=12)
key = st.text(_name_chars, min_size=1, max_size=20).filter(lambda k: k == k.strip(" \t\n\r"))
value = st.text(st.characters(blacklist_categories=("Cs",),
                              blacklist_characters="\n\r\x00"), max_size=60)


def _triples(result) -> list[tuple[str, str, str]]:  # type: ignore[no-untyped-def]
    return [(o.section, o.key, o.value) for o in result.options]


@settings(max_examples=400)
@given(st.lists(st.tuples(section, key, value), max_size=12))
def test_round_trip_or_refusal_systemd(opts: list[tuple[str, str, str]]) -> None:
    try:
        text = serialize(opts)
    except UnitFileError as exc:
        assert "cannot write" in exc.message
        return
    result = parse(text)
    assert result.ok, result.fatal
    assert _triples(result) == opts


representable = value.map(lambda v: v.strip(" \t\n\r")).filter(
    lambda v: not (v.endswith("\\") and (len(v) - len(v.rstrip("\\"))) % 2))


@settings(max_examples=300)
@given(st.lists(st.tuples(section.filter(lambda s: s.strip() == s and s[:1] not in "#;"),
                          key, representable), min_size=1, max_size=12))
def test_representable_options_always_round_trip(opts: list[tuple[str, str, str]]) -> None:
    result = parse(serialize(opts))
    assert _triples(result) == opts


@settings(max_examples=300)
@given(st.lists(st.tuples(st.sampled_from(["Unit", "Service", "X-Fleet"]),
                          st.sampled_from(["Description", "ExecStart", "Conflicts"]),
                          st.text(st.characters(min_codepoint=33, max_codepoint=126,
                                                blacklist_characters="\\"), max_size=40)),
                max_size=10))
def test_round_trip_go_systemd(opts: list[tuple[str, str, str]]) -> None:
    text = serialize(opts, "go-systemd")
    assert _triples(parse(text, "go-systemd")) == opts


def test_unrepresentable_values_are_refused() -> None:
    for bad in [("Unit", "Description", " lead"), ("Unit", "Description", "odd\\"),
                ("Unit", "Description", "two\nlines"), ("Unit", "A=B", "x"),
                ("Un]it", "Description", "x")]:
        with pytest.raises(UnitFileError):
            serialize([bad])


def test_hash_is_over_reserialized_options() -> None:
    a = parse("[Unit]\nDescription=x\n\n\n[Service]\nExecStart=/bin/true\n").options
    b = parse("# comment\n[Unit]\nDescription =  x\n[Service]\nExecStart=/bin/true").options
    assert unit_hash(a) == unit_hash(b)
    assert len(unit_hash(a)) == 40
    assert serialize([Option("Unit", "Description", "x", 1)]) == "[Unit]\nDescription=x\n"
