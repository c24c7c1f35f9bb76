"""PUT bodies, option validation through the unit loader, metadata PATCH parsing."""

from __future__ import annotations

import json

import pytest

from flotte.api.validation import (
    MetadataOp,
    check_activatable,
    check_desired_state,
    is_global,
    is_template,
    options_hash,
    parse_metadata_patch,
    parse_unit_body,
    validate_unit,
)
from flotte.api.wire import HttpError
from flotte.engine.keyspace import UnitRecord


def _err(fn: object, *args: object) -> tuple[int, str]:
    with pytest.raises(HttpError) as e:
        fn(*args)  # type: ignore[operator]
    return e.value.status, e.value.message


def _body(obj: object) -> bytes:
    return json.dumps(obj).encode()


def test_body_name_from_url() -> None:
    b = parse_unit_body(_body({"desiredState": "launched",
                               "options": [{"section": "Service", "name": "ExecStart",
                                            "value": "/bin/true"}]}), "a.service")
    assert b.name == "a.service" and b.desired_state == "launched"
    assert b.options == (("Service", "ExecStart", "/bin/true"),)


def test_body_fields_case_insensitive_like_go() -> None:
    b = parse_unit_body(_body({"DesiredState": "loaded", "Name": "a.service"}), "a.service")
    assert b.desired_state == "loaded" and b.options == ()


def test_body_errors() -> None:
    assert _err(parse_unit_body, _body({"name": "b.service"}), "a.service") == (
        400, 'name in URL "a.service" differs from unit name in request body "b.service"')
    assert _err(parse_unit_body, b"", "a.service")[1].startswith("unable to decode body")
    assert _err(parse_unit_body, b"[1]", "a.service")[0] == 400
    assert _err(parse_unit_body, _body({"name": 3}), "a.service")[0] == 400
    assert _err(parse_unit_body, _body({"options": {}}), "a.service")[0] == 400
    assert _err(parse_unit_body, _body({"options": [1]}), "a.service")[0] == 400
    assert _err(parse_unit_body, _body({"options": [{"name": "X"}]}), "a.service")[0] == 400
    status, msg = _err(parse_unit_body, _body({}), "a")
    assert status == 400 and 'unit name must contain "."' in msg
    status, msg = _err(parse_unit_body, _body({"desiredState": "running"}), "a.service")
    assert status == 400 and '"running"' in msg and "inactive, loaded, launched" in msg


def test_desired_state() -> None:
    assert check_desired_state("launched") == "launched"
    assert _err(check_desired_state, "Launched")[0] == 400


def test_templates() -> None:
    assert is_template("foo@.service") and is_template("foo@.busname")
    assert not is_template("foo@1.service") and not is_template("foo.service")
    check_activatable("foo@.service", "inactive")
    check_activatable("foo@1.service", "launched")
    status, msg = _err(check_activatable, "foo@.service", "launched")
    assert status == 400 and msg.startswith('cannot activate template "foo@.service"')


def test_validate_unit_ok_and_hash() -> None:
    opts = (("Service", "ExecStart", "/bin/true"),)
    rec = validate_unit("a.service", opts)
    assert rec == UnitRecord.make("a.service", opts)
    assert options_hash(opts) == rec.hash
    assert options_hash((("Service", "ExecStart", " lead"),)) is None


def test_validate_unit_xfleet_error_has_line_and_fix() -> None:
    opts = (("Service", "ExecStart", "/bin/true"), ("X-Fleet", "MachineID", "abc"),
            ("X-Fleet", "MachineOf", "b.service"))
    status, msg = _err(validate_unit, "a.service", opts)
    assert status == 400
    assert "a.service:6: [X-Fleet] MachineOf=b.service: MachineID cannot be used with Peers" in msg
    assert "fix: remove one of MachineID= and MachineOf=" in msg


def test_validate_unit_unstartable_service() -> None:
    status, msg = _err(validate_unit, "a.service", (("Unit", "Description", "x"),))
    assert status == 400 and "Service has no ExecStart=" in msg


def test_validate_unit_unserializable() -> None:
    status, msg = _err(validate_unit, "a.service", (("Service", "ExecStart", "/bin/true "),))
    assert status == 400 and msg.startswith("a.service: cannot write [Service] ExecStart")


def test_unknown_xfleet_key_is_only_a_warning() -> None:
    validate_unit("a.service", (("Service", "ExecStart", "/bin/true"),
                                ("X-Fleet", "ConditionMachineOf", "b.service")))


def test_is_global() -> None:
    assert is_global(UnitRecord.make("a.service", [("X-Fleet", "Global", "true")]))
    assert not is_global(UnitRecord.make("a.service", [("X-Fleet", "Global", "false")]))
    assert not is_global(UnitRecord.make("a.service", [("Service", "ExecStart", "/x")]))


def test_metadata_patch_both_shapes() -> None:
    ops = parse_metadata_patch(_body([
        {"op": "add", "path": "/m1/metadata/role", "value": {"value": "web"}},
        {"op": "replace", "path": "/m1/metadata/disk", "value": "ssd"},
        {"op": "remove", "path": "/m2/metadata/foo"},
    ]))
    assert ops == [MetadataOp("m1", "role", "web"), MetadataOp("m1", "disk", "ssd"),
                   MetadataOp("m2", "foo", "")]


def test_metadata_patch_last_op_wins() -> None:
    ops = parse_metadata_patch(_body([
        {"op": "add", "path": "/m1/metadata/role", "value": "web"},
        {"op": "remove", "path": "/m1/metadata/role"},
    ]))
    assert ops == [MetadataOp("m1", "role", "")]


@pytest.mark.parametrize(("body", "message"), [
    ([{"op": "move", "path": "/m1/metadata/a", "value": "x"}],
     "invalid op: expect add, remove, or replace"),
    ([{"op": "add", "path": "/m1/meta/a", "value": "x"}], "machine metadata path invalid"),
    ([{"op": "add", "path": "/m1/metadata/a b", "value": "x"}], "machine metadata path invalid"),
    ([{"op": "add", "path": "/m1/metadata/a"}], "invalid value: add and replace require a value"),
    ([{"op": "add", "path": "/m1/metadata/a", "value": {"value": ""}}],
     "invalid value: add and replace require a value"),
    ({"op": "add"}, "unable to decode body"),
    ([3], "unable to decode body"),
    ([{"op": "add", "path": "/m1/metadata/a", "value": 3}], "unable to decode body"),
])
def test_metadata_patch_errors(body: object, message: str) -> None:
    status, msg = _err(parse_metadata_patch, _body(body))
    assert status == 400 and msg.startswith(message)


def test_metadata_patch_validates_all_before_applying() -> None:
    # one bad op anywhere rejects the whole list (nothing is returned to apply)
    with pytest.raises(HttpError):
        parse_metadata_patch(_body([{"op": "add", "path": "/m1/metadata/a", "value": "x"},
                                    {"op": "bogus", "path": "/m1/metadata/b"}]))


def test_metadata_patch_too_many() -> None:
    body = [{"op": "add", "path": f"/m1/metadata/k{i}", "value": "v"} for i in range(129)]
    assert _err(parse_metadata_patch, _body(body))[0] == 400
