"""Pure helpers: Go-compatible JSON, entities, currentState derivation, Content-Type."""

from __future__ import annotations

import pytest

from flotte.api.wire import (
    HttpError,
    check_content_type,
    derive_current_state,
    error_body,
    go_json,
    go_quote,
    machine_entity,
    omit_empty,
    page_entity,
    unit_entity,
    unit_state_entity,
)
from flotte.engine.keyspace import StateRecord, UnitRecord


def test_go_json_sorts_keys_and_escapes_like_go() -> None:
    assert go_json({"b": 1, "a": "<x>&", "c": "é\u2028"}) == \
        '{"a":"\\u003cx\\u003e\\u0026","b":1,"c":"é\\u2028"}'.encode()


def test_error_body_shape() -> None:
    assert error_body(404, "unit does not exist") == \
        b'{"error":{"code":404,"message":"unit does not exist"}}'
    assert error_body(500, "") == b'{"error":{"code":500,"message":""}}'


def test_go_quote() -> None:
    assert go_quote('a"b') == '"a\\"b"'


def test_omit_empty() -> None:
    assert omit_empty({"a": "", "b": None, "c": [], "d": {}, "e": 0, "f": "x"}) == \
        {"e": 0, "f": "x"}


def test_unit_entity_key_order_and_omission() -> None:
    rec = UnitRecord.make("a.service", [("Service", "ExecStart", "/bin/true"),
                                        ("Service", "ExecStop", "")])
    body = go_json(unit_entity(rec, desired="launched", current="loaded", machine_id="m1"))
    assert body == (b'{"currentState":"loaded","desiredState":"launched","machineID":"m1",'
                    b'"name":"a.service","options":[{"name":"ExecStart","section":"Service",'
                    b'"value":"/bin/true"},{"name":"ExecStop","section":"Service"}]}')
    body = go_json(unit_entity(rec, desired="inactive", current=None, machine_id=None))
    assert b"currentState" not in body and b"machineID" not in body


def test_unit_state_entity() -> None:
    st = StateRecord("a.service", "m1", "h", "loaded", "active", "running")
    assert go_json(unit_state_entity(st)) == (
        b'{"hash":"h","machineID":"m1","name":"a.service","systemdActiveState":"active",'
        b'"systemdLoadState":"loaded","systemdSubState":"running"}')
    assert unit_state_entity(StateRecord("a.service", "m1")) == \
        {"machineID": "m1", "name": "a.service"}


def test_machine_entity() -> None:
    assert go_json(machine_entity("m1", "10.0.0.1", {"z": "1", "a": "2"})) == \
        b'{"id":"m1","metadata":{"a":"2","z":"1"},"primaryIP":"10.0.0.1"}'
    assert machine_entity("m1", "", {}) == {"id": "m1"}


def test_empty_page_is_empty_object() -> None:
    assert go_json(page_entity("units", [], None)) == b"{}"
    assert go_json(page_entity("units", [{"name": "a"}], "tok")) == \
        b'{"nextPageToken":"tok","units":[{"name":"a"}]}'


@pytest.mark.parametrize(("scheduled", "state", "want"), [
    (None, None, "inactive"),
    ("m1", None, "inactive"),
    (None, StateRecord("a", "m1", launched=True), "inactive"),
    ("m1", StateRecord("a", "m2", launched=True), "inactive"),
    ("m1", StateRecord("a", "m1"), "loaded"),
    ("m1", StateRecord("a", "m1", launched=True), "launched"),
])
def test_derive_current_state(scheduled: str | None, state: StateRecord | None,
                              want: str) -> None:
    assert derive_current_state(scheduled, state) == want


def test_content_type() -> None:
    check_content_type(["application/json"])
    check_content_type(["application/json; charset=utf-8"])
    with pytest.raises(HttpError) as e:
        check_content_type([])
    assert (e.value.status, e.value.message) == (415, "expected 1 Content-Type, got 0")
    with pytest.raises(HttpError) as e:
        check_content_type(["text/plain"])
    assert (e.value.status, e.value.message) == \
        (415, "only acceptable Content-Type is application/json")
    with pytest.raises(HttpError):
        check_content_type(["application/json", "application/json"])
