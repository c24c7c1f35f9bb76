"""/fleet/v1/units: list, get, PUT (create / replace / desired state), DELETE (fleet.md §2.3, §5)."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from api_support import (
    KEYS,
    SLEEP,
    add_unit,
    publish_state,
    schedule,
    set_reasons,
    unit_body,
)

from flotte.api import make_app
from flotte.api.store import Store
from flotte.api.wire import HttpError
from flotte.engine.keyspace import UnitRecord
from flotte.registry import Registry

Client = TestClient[web.Request, web.Application]


async def _error(resp: Any, status: int) -> str:
    assert resp.status == status, await resp.text()
    assert resp.headers["Content-Type"] == "application/json"
    body = await resp.json()
    assert set(body) == {"error"} and body["error"]["code"] == status
    message: str = body["error"]["message"]
    return message


async def test_empty_list_is_empty_object(client: Client) -> None:
    resp = await client.get("/fleet/v1/units")
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "application/json"
    assert resp.headers["Server"].startswith("fleetd/")
    assert await resp.read() == b"{}"


async def test_alt_json_is_tolerated(client: Client, registry: Registry) -> None:
    await add_unit(registry, "a.service")
    resp = await client.get("/fleet/v1/units?alt=json")
    assert resp.status == 200
    assert [u["name"] for u in (await resp.json())["units"]] == ["a.service"]
    resp = await client.get("/fleet/v1/units/a.service?alt=json")
    assert resp.status == 200


async def test_create_then_get_exact_bytes(client: Client, registry: Registry) -> None:
    resp = await client.put("/fleet/v1/units/hello.service", json=unit_body("launched"))
    assert resp.status == 201
    assert await resp.read() == b""
    resp = await client.get("/fleet/v1/units/hello.service")
    assert await resp.read() == (
        b'{"currentState":"inactive","desiredState":"launched","name":"hello.service",'
        b'"options":[{"name":"ExecStart","section":"Service","value":"/bin/sleep 3000"}]}')
    kv = await registry.get(KEYS.unit("hello.service"))
    assert kv is not None
    assert UnitRecord.decode(kv.value) == UnitRecord.make("hello.service", SLEEP)
    desired = await registry.get(KEYS.desired_state("hello.service"))
    assert desired is not None and desired.value == b"launched"
    assert desired.mod_revision == kv.mod_revision  # one transaction


async def test_create_without_desired_state_is_inactive(client: Client) -> None:
    resp = await client.put("/fleet/v1/units/a.service", json=unit_body(None, name="a.service"))
    assert resp.status == 201
    assert (await (await client.get("/fleet/v1/units/a.service")).json())["desiredState"] == \
        "inactive"


async def test_at_sign_percent_encoded(client: Client, registry: Registry) -> None:
    resp = await client.put("/fleet/v1/units/web%401.service", json=unit_body("loaded"))
    assert resp.status == 201
    assert await registry.get(KEYS.unit("web@1.service")) is not None
    resp = await client.get("/fleet/v1/units/web%401.service?alt=json")
    assert (await resp.json())["name"] == "web@1.service"
    resp = await client.get("/fleet/v1/units/web@1.service")
    assert resp.status == 200
    assert (await client.delete("/fleet/v1/units/web%401.service")).status == 204


async def test_content_type_415(client: Client) -> None:
    resp = await client.put("/fleet/v1/units/a.service", data=b'{"desiredState":"launched"}',
                            headers={"Content-Type": "text/plain"})
    assert await _error(resp, 415) == "only acceptable Content-Type is application/json"
    resp = await client.put("/fleet/v1/units/a.service", data=b"{}",
                            skip_auto_headers=["Content-Type"])
    assert await _error(resp, 415) == "expected 1 Content-Type, got 0"


async def test_create_needs_options_409(client: Client) -> None:
    resp = await client.put("/fleet/v1/units/a.service", json={"desiredState": "launched"})
    assert await _error(resp, 409) == "unit does not exist and options field empty"


async def test_create_invalid_options_400(client: Client, registry: Registry) -> None:
    body = unit_body("launched", [("Service", "ExecStart", "/bin/true"),
                                  ("X-Fleet", "Global", "true"),
                                  ("X-Fleet", "MachineOf", "b.service")])
    msg = await _error(await client.put("/fleet/v1/units/a.service", json=body), 400)
    assert "[X-Fleet] MachineOf=b.service: Global cannot be used with Peers" in msg
    assert "fix:" in msg
    assert await registry.get(KEYS.unit("a.service")) is None


async def test_bad_body_400(client: Client) -> None:
    resp = await client.put("/fleet/v1/units/a.service", data=b"{nope",
                            headers={"Content-Type": "application/json"})
    assert (await _error(resp, 400)).startswith("unable to decode body")


async def test_invalid_name_400(client: Client) -> None:
    msg = await _error(await client.put("/fleet/v1/units/foo.txt", json=unit_body()), 400)
    assert 'invalid unit type: "txt"' in msg
    msg = await _error(await client.put("/fleet/v1/units/%40x.service", json=unit_body()), 400)
    assert 'unit name cannot start in "@"' in msg


async def test_name_mismatch_400(client: Client) -> None:
    resp = await client.put("/fleet/v1/units/a.service", json=unit_body(name="b.service"))
    assert await _error(resp, 400) == \
        'name in URL "a.service" differs from unit name in request body "b.service"'


async def test_invalid_desired_state_400_on_create_and_update(client: Client,
                                                              registry: Registry) -> None:
    msg = await _error(await client.put("/fleet/v1/units/a.service",
                                        json=unit_body("started")), 400)
    assert '"started"' in msg
    await add_unit(registry, "b.service", "loaded")
    resp = await client.put("/fleet/v1/units/b.service", json={"desiredState": "bogus"})
    await _error(resp, 400)
    kv = await registry.get(KEYS.desired_state("b.service"))
    assert kv is not None and kv.value == b"loaded"


async def test_update_needs_desired_state_409(client: Client, registry: Registry) -> None:
    await add_unit(registry, "a.service")
    resp = await client.put("/fleet/v1/units/a.service", json={"name": "a.service"})
    assert await _error(resp, 409) == "must provide DesiredState to update existing unit"


async def test_update_desired_state_204(client: Client, registry: Registry) -> None:
    await add_unit(registry, "a.service", "launched")
    resp = await client.put("/fleet/v1/units/a.service",
                            json={"desiredState": "loaded", "name": "a.service"})
    assert resp.status == 204 and await resp.read() == b""
    kv = await registry.get(KEYS.desired_state("a.service"))
    assert kv is not None and kv.value == b"loaded"


async def test_same_options_update_state_204(client: Client, registry: Registry) -> None:
    await add_unit(registry, "a.service", "inactive")
    resp = await client.put("/fleet/v1/units/a.service", json=unit_body("launched"))
    assert resp.status == 204


async def test_different_options_replace_201(client: Client, registry: Registry) -> None:
    await add_unit(registry, "a.service", "launched")
    await schedule(registry, "a.service", "m1")
    new = [("Service", "ExecStart", "/bin/sleep 1")]
    resp = await client.put("/fleet/v1/units/a.service", json=unit_body(None, new))
    assert resp.status == 201
    unit = await (await client.get("/fleet/v1/units/a.service")).json()
    assert unit["desiredState"] == "inactive"  # reset, as fleet did
    assert unit["options"] == [{"name": "ExecStart", "section": "Service",
                                "value": "/bin/sleep 1"}]
    assert unit["machineID"] == "m1"  # the schedule stays; the agent sees the new hash
    resp = await client.put("/fleet/v1/units/a.service", json=unit_body("launched", SLEEP))
    assert resp.status == 201
    assert (await (await client.get("/fleet/v1/units/a.service")).json())["desiredState"] == \
        "launched"


async def test_replace_with_invalid_options_400(client: Client, registry: Registry) -> None:
    await add_unit(registry, "a.service")
    resp = await client.put("/fleet/v1/units/a.service",
                            json=unit_body("launched", [("Unit", "Description", "x")]))
    assert "Service has no ExecStart=" in await _error(resp, 400)


async def test_templates_cannot_be_activated(client: Client, registry: Registry) -> None:
    msg = await _error(await client.put("/fleet/v1/units/web%40.service",
                                        json=unit_body("launched")), 400)
    assert msg.startswith('cannot activate template "web@.service"')
    resp = await client.put("/fleet/v1/units/web%40.service", json=unit_body("inactive"))
    assert resp.status == 201
    resp = await client.put("/fleet/v1/units/web%40.service", json={"desiredState": "loaded"})
    await _error(resp, 400)
    resp = await client.put("/fleet/v1/units/web%40.service", json={"desiredState": "inactive"})
    assert resp.status == 204


async def test_get_unknown_404(client: Client) -> None:
    assert await _error(await client.get("/fleet/v1/units/nope.service"), 404) == \
        "unit does not exist"


async def test_delete(client: Client, registry: Registry) -> None:
    await add_unit(registry, "a.service")
    await schedule(registry, "a.service", "m1")
    await set_reasons(registry, "a.service", {"m2": "conflicts with b.service"})
    await publish_state(registry, "a.service", "m1")
    watch = registry.watch(KEYS.prefix + "/")
    resp = await client.delete("/fleet/v1/units/a.service")
    assert resp.status == 204 and await resp.read() == b""
    for key in (KEYS.unit("a.service"), KEYS.desired_state("a.service"),
                KEYS.scheduled("a.service"), KEYS.reason("a.service")):
        assert await registry.get(key) is None
    assert await registry.get(KEYS.state("a.service", "m1")) is not None  # the agent's to remove
    events = [await watch.__anext__() for _ in range(4)]
    await watch.close()
    assert len({e.revision for e in events}) == 1  # one transaction
    assert await _error(await client.delete("/fleet/v1/units/a.service"), 404) == \
        "unit does not exist"


async def test_current_state_and_machine_id(client: Client, registry: Registry) -> None:
    await add_unit(registry, "a.service")
    await add_unit(registry, "b.service")
    await add_unit(registry, "c.service")
    await add_unit(registry, "d.service")
    await schedule(registry, "b.service", "m1")
    await schedule(registry, "c.service", "m1")
    await publish_state(registry, "c.service", "m1", launched=False)
    await schedule(registry, "d.service", "m2")
    await publish_state(registry, "d.service", "m2", launched=True)
    units = (await (await client.get("/fleet/v1/units")).json())["units"]
    got = {u["name"]: (u.get("currentState"), u.get("machineID")) for u in units}
    assert got == {"a.service": ("inactive", None), "b.service": ("inactive", "m1"),
                   "c.service": ("loaded", "m1"), "d.service": ("launched", "m2")}


async def test_global_unit_has_no_current_state(client: Client, registry: Registry) -> None:
    await add_unit(registry, "g.service", options=[*SLEEP, ("X-Fleet", "Global", "true")])
    unit = await (await client.get("/fleet/v1/units/g.service")).json()
    assert "currentState" not in unit and "machineID" not in unit
    assert unit["desiredState"] == "launched"


async def test_wrong_methods_405(client: Client) -> None:
    msg = await _error(await client.post("/fleet/v1/units/a.service"), 405)
    assert msg == "only GET, PUT and DELETE supported against this resource"
    msg = await _error(await client.delete("/fleet/v1/units"), 405)
    assert msg == "only GET supported against this resource"


async def test_trailing_slash_and_deeper_paths_404(client: Client, registry: Registry) -> None:
    await add_unit(registry, "a.service")
    assert await _error(await client.get("/fleet/v1/units/a.service/"), 404) == ""
    assert await _error(await client.get("/fleet/v1/units/a.service/x"), 404) == ""
    assert await _error(await client.get("/fleet/v1/units/"), 404) == ""


async def test_legacy_v1_alpha_prefix(client: Client, registry: Registry) -> None:
    await add_unit(registry, "a.service")
    resp = await client.get("/v1-alpha/units/a.service")
    assert resp.status == 200 and (await resp.json())["name"] == "a.service"


async def test_bad_record_skipped_in_list_500_on_get(client: Client,
                                                     registry: Registry) -> None:
    await add_unit(registry, "a.service")
    await registry.put(KEYS.unit("b.service"), b"not json")
    units = (await (await client.get("/fleet/v1/units")).json())["units"]
    assert [u["name"] for u in units] == ["a.service"]
    msg = await _error(await client.get("/fleet/v1/units/b.service"), 500)
    assert KEYS.unit("b.service") in msg


@pytest.fixture
async def small_pages(registry: Registry) -> Any:
    app = make_app(registry, no_auth=True, token_limit=2)
    async with TestClient(TestServer(app)) as c:
        yield c


async def test_pagination(small_pages: Client, registry: Registry) -> None:
    for n in "abcde":
        await add_unit(registry, f"{n}.service")
    page1 = await (await small_pages.get("/fleet/v1/units")).json()
    assert [u["name"] for u in page1["units"]] == ["a.service", "b.service"]
    assert page1["nextPageToken"] == "AgACAA=="
    page3 = await (await small_pages.get("/fleet/v1/units",
                                         params={"nextPageToken": "AgADAA=="})).json()
    assert [u["name"] for u in page3["units"]] == ["e.service"]
    assert "nextPageToken" not in page3
    page4 = await small_pages.get("/fleet/v1/units", params={"nextPageToken": "AgAEAA=="})
    assert await page4.read() == b"{}"
    resp = await small_pages.get("/fleet/v1/units?nextPageToken=ZAACAA==")
    assert await _error(resp, 400) == "token limit must be 2"


@pytest.mark.parametrize(("query", "message"), [
    ("nextPageToken=EwBMLg==", "token limit must be 100"),
    ("nextPageToken=ZAAAAA==", "token page must be greater than zero"),
    ("nextPageToken=ZAACAA==&nextPageToken=ZAACAA==", "too many values for page token"),
    ("nextPageToken=!!!", "invalid nextPageToken"),
])
@pytest.mark.parametrize("path", ["/fleet/v1/units", "/fleet/v1/state", "/fleet/v1/machines"])
async def test_token_errors_400(client: Client, path: str, query: str, message: str) -> None:
    assert (await _error(await client.get(f"{path}?{query}"), 400)).startswith(message)


async def test_concurrent_create_is_409(registry: Registry) -> None:
    store = Store(registry, KEYS)
    record = UnitRecord.make("a.service", SLEEP)
    await store.create_unit(record, "launched")
    with pytest.raises(HttpError) as e:
        await store.create_unit(record, "launched")  # as if another request won the race
    assert e.value.status == 409


async def test_destroyed_while_updating_is_404(registry: Registry) -> None:
    store = Store(registry, KEYS)
    await add_unit(registry, "a.service")
    view = await store.unit("a.service")
    assert view is not None
    await registry.delete(KEYS.unit("a.service"))
    with pytest.raises(HttpError) as e:
        await store.set_desired(view, "loaded")
    assert e.value.status == 404
    assert await registry.get(KEYS.desired_state("a.service")) is not None  # untouched
    with pytest.raises(HttpError):
        await store.destroy_unit(view)


async def test_racing_replaces_one_wins(registry: Registry) -> None:
    store = Store(registry, KEYS)
    await add_unit(registry, "a.service")
    view = await store.unit("a.service")
    assert view is not None
    await store.create_unit(UnitRecord.make("a.service", [("Service", "ExecStart", "/x")]),
                            "launched", replacing=view)
    with pytest.raises(HttpError) as e:
        await store.create_unit(UnitRecord.make("a.service", [("Service", "ExecStart", "/y")]),
                                "launched", replacing=view)
    assert e.value.status == 409
