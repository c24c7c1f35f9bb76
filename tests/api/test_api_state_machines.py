"""/fleet/v1/state, /fleet/v1/machines (list + metadata PATCH), discovery, / and /fleet/v1."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient
from api_support import KEYS, add_machine, publish_state

from flotte.registry import Registry

Client = TestClient[web.Request, web.Application]


async def _error(resp: Any, status: int) -> str:
    assert resp.status == status, await resp.text()
    body = await resp.json()
    assert body["error"]["code"] == status
    message: str = body["error"]["message"]
    return message


async def test_state_list_and_filters(client: Client, registry: Registry) -> None:
    assert await (await client.get("/fleet/v1/state?alt=json")).read() == b"{}"
    await publish_state(registry, "a.service", "m1")
    await publish_state(registry, "b.service", "m2", active="inactive", sub="dead")
    resp = await client.get("/fleet/v1/state")
    assert await resp.read() == (
        b'{"states":[{"hash":"abc","machineID":"m1","name":"a.service",'
        b'"systemdActiveState":"active","systemdLoadState":"loaded","systemdSubState":"running"},'
        b'{"hash":"abc","machineID":"m2","name":"b.service","systemdActiveState":"inactive",'
        b'"systemdLoadState":"loaded","systemdSubState":"dead"}]}')
    names = [s["name"] for s in (await (await client.get(
        "/fleet/v1/state", params={"machineID": "m2"})).json())["states"]]
    assert names == ["b.service"]
    names = [s["name"] for s in (await (await client.get(
        "/fleet/v1/state?unitName=a.service&unitName=b.service")).json())["states"]]
    assert names == ["a.service"]  # the first value is used
    resp = await client.get("/fleet/v1/state", params={"unitName": "a.service",
                                                       "machineID": "m2"})
    assert await resp.read() == b"{}"


async def test_state_item(client: Client, registry: Registry) -> None:
    await publish_state(registry, "web@1.service", "m1")
    resp = await client.get("/fleet/v1/state/web%401.service")
    assert (await resp.json())["machineID"] == "m1"
    assert await _error(await client.get("/fleet/v1/state/nope.service"), 404) == \
        "unit state does not exist"
    assert await _error(await client.put("/fleet/v1/state/x.service"), 405) == \
        "only GET supported against this resource"
    assert await _error(await client.post("/fleet/v1/state"), 405) == \
        "only GET supported against this resource"


async def test_machines_list(client: Client, registry: Registry) -> None:
    assert await (await client.get("/fleet/v1/machines")).read() == b"{}"
    await add_machine(registry, "m1", "10.0.0.1", {"region": "us", "disk": "ssd"})
    await add_machine(registry, "m2", "")
    resp = await client.get("/fleet/v1/machines?alt=json")
    assert await resp.read() == (
        b'{"machines":[{"id":"m1","metadata":{"disk":"ssd","region":"us"},'
        b'"primaryIP":"10.0.0.1"},{"id":"m2"}]}')


async def test_metadata_patch_nested_shape(client: Client, registry: Registry) -> None:
    await add_machine(registry, "m1", metadata={"region": "us", "disk": "ssd"})
    ops = [{"op": "add", "path": "/m1/metadata/role", "value": {"value": "web"}},
           {"op": "replace", "path": "/m1/metadata/region", "value": {"value": "eu"}},
           {"op": "remove", "path": "/m1/metadata/disk"}]
    resp = await client.patch("/fleet/v1/machines", json=ops)
    assert resp.status == 204 and await resp.read() == b""
    machines = (await (await client.get("/fleet/v1/machines")).json())["machines"]
    assert machines[0]["metadata"] == {"region": "eu", "role": "web"}
    kv = await registry.get(KEYS.machine_metadata("m1", "disk"))
    assert kv is not None and kv.value == b""  # remove masks config metadata


async def test_metadata_patch_documented_shape_and_absent_machine(client: Client,
                                                                  registry: Registry) -> None:
    ops = [{"op": "add", "path": "/m9/metadata/role", "value": "db"}]
    resp = await client.patch("/fleet/v1/machines", data=json.dumps(ops))
    assert resp.status == 204
    kv = await registry.get(KEYS.machine_metadata("m9", "role"))
    assert kv is not None and kv.value == b"db"  # machines need not exist (yet)
    await add_machine(registry, "m9")
    machines = (await (await client.get("/fleet/v1/machines")).json())["machines"]
    assert machines == [{"id": "m9", "metadata": {"role": "db"}, "primaryIP": "10.0.0.1"}]


async def test_metadata_patch_errors(client: Client, registry: Registry) -> None:
    ops = [{"op": "add", "path": "/m1/metadata/ok", "value": "x"},
           {"op": "add", "path": "/m1/nope/k", "value": "x"}]
    msg = await _error(await client.patch("/fleet/v1/machines", json=ops), 400)
    assert msg.startswith("machine metadata path invalid")
    assert await registry.get(KEYS.machine_metadata("m1", "ok")) is None  # nothing applied
    msg = await _error(await client.patch("/fleet/v1/machines", json=[
        {"op": "add", "path": "/m1/metadata/a"}]), 400)
    assert msg == "invalid value: add and replace require a value"
    msg = await _error(await client.patch("/fleet/v1/machines", json=[
        {"op": "test", "path": "/m1/metadata/a", "value": "x"}]), 400)
    assert msg == "invalid op: expect add, remove, or replace"
    await _error(await client.patch("/fleet/v1/machines", data=b"nope"), 400)


async def test_machines_wrong_method_405(client: Client) -> None:
    assert await _error(await client.post("/fleet/v1/machines"), 405) == \
        "only GET and PATCH supported against this resource"


async def test_discovery(client: Client) -> None:
    resp = await client.get("/fleet/v1/discovery")
    assert resp.status == 200 and resp.headers["Content-Type"] == "application/json"
    doc = await resp.json()
    assert doc["rootUrl"] == "$ENDPOINT/" and doc["servicePath"] == "fleet/v1/"
    methods = {m["id"]: (m["httpMethod"], m["path"])
               for res in doc["resources"].values() for m in res["methods"].values()}
    assert methods == {
        "fleet.Machine.List": ("GET", "machines"), "fleet.Machine.Patch": ("PATCH", "machines"),
        "fleet.Unit.List": ("GET", "units"), "fleet.Unit.Get": ("GET", "units/{unitName}"),
        "fleet.Unit.Delete": ("DELETE", "units/{unitName}"),
        "fleet.Unit.Set": ("PUT", "units/{unitName}"),
        "fleet.UnitState.Get": ("GET", "state/{unitName}"),
        "fleet.UnitState.List": ("GET", "state")}
    assert set(doc["schemas"]["Unit"]["properties"]) == \
        {"name", "options", "desiredState", "currentState", "machineID"}
    assert await _error(await client.post("/fleet/v1/discovery"), 400) == \
        "only HTTP GET supported against this resource"


async def test_roots_and_unknown_paths(client: Client) -> None:
    assert await _error(await client.get("/"), 405) == ""
    assert await _error(await client.get("/fleet/v1"), 405) == ""
    assert await _error(await client.get("/fleet/v1/"), 404) == ""
    assert await _error(await client.get("/fleet/v1/nothing"), 404) == ""
    assert await _error(await client.get("/fleet/v1/machines/"), 404) == ""
    resp = await client.get("/elsewhere")
    assert resp.headers["Server"].startswith("fleetd/")
    await _error(resp, 404)
