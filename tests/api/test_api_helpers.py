"""Small pure helpers: query parameters, metadata merge, event lines, kv compares."""

from __future__ import annotations

import pytest

from flotte.api.flotte_v1 import event_entity
from flotte.api.kv import compare_failed, compares_for
from flotte.api.params import bool_param, int_param
from flotte.api.store import merge_metadata
from flotte.api.wire import HttpError
from flotte.engine.keyspace import Keys
from flotte.registry import Event, EventType, KeyValue, mod_revision, value, version


def test_int_param() -> None:
    assert int_param({}, "n") is None
    assert int_param({"n": ""}, "n") is None
    assert int_param({"n": "7"}, "n") == 7
    for bad in ("x", "-1", "1.5"):
        with pytest.raises(HttpError) as e:
            int_param({"n": bad}, "n")
        assert e.value.status == 400 and "n=" in e.value.message
    with pytest.raises(HttpError):
        int_param({"since": "0"}, "since", minimum=1)


def test_bool_param() -> None:
    assert bool_param({}, "f") is False
    for true in ("", "1", "true", "YES", "on"):
        assert bool_param({"f": true}, "f") is True
    for false in ("0", "false", "No", "off"):
        assert bool_param({"f": false}, "f") is False
    with pytest.raises(HttpError):
        bool_param({"f": "maybe"}, "f")


def test_merge_metadata() -> None:
    assert merge_metadata({"a": "1", "b": "2"}, {"b": "", "c": "3", "a": "9"}) == \
        {"a": "9", "c": "3"}


def test_event_entity() -> None:
    keys = Keys("/p")
    put = Event(EventType.PUT, KeyValue("/p/metadata/m1/role", b"web", 3, 5, 2))
    assert event_entity(put, keys) == {"revision": 5, "type": "put",
                                       "key": "/p/metadata/m1/role", "kind": "metadata",
                                       "name": "m1/role", "value": "web"}
    gone = Event(EventType.DELETE, KeyValue("/p/engine/leader", b"", 0, 9, 0))
    assert event_entity(gone, keys) == {"revision": 9, "type": "delete",
                                        "key": "/p/engine/leader", "kind": "engine",
                                        "name": "leader"}


def test_kv_compares() -> None:
    assert compares_for({}, "/k") == []
    assert compares_for({"prevExist": "false", "prevValue": "v", "prevIndex": "4"}, "/k") == \
        [version("/k") == 0, value("/k") == b"v", mod_revision("/k") == 4]
    assert compares_for({"prevExist": "true"}, "/k") == [version("/k") > 0]
    assert "does not exist" in compare_failed("/k", {}, None).message
    kv = KeyValue("/k", b"x", 1, 2, 1)
    assert "already exists" in compare_failed("/k", {"prevExist": "false"}, kv).message
    assert compare_failed("/k", {"prevValue": "y"}, kv).status == 412
