"""/v1/kv: etcd-v2-style user keys, directories as prefixes, TTLs, compare-and-swap."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient
from api_support import KEYS, add_unit

from flotte.api.kv import dir_node, normalize_key
from flotte.registry import KeyValue, Registry

Client = TestClient[web.Request, web.Application]


async def _error(resp: Any, status: int) -> str:
    assert resp.status == status, await resp.text()
    message: str = (await resp.json())["error"]["message"]
    return message


def test_normalize_key() -> None:
    assert normalize_key("") == "/"
    assert normalize_key("services//web/") == "/services/web"
    assert normalize_key("/a") == "/a"


def test_dir_node_levels() -> None:
    kvs = [KeyValue(k, b"v", 1, 1, 1) for k in ("/s/a", "/s/b/c", "/s/b/d/e")]
    assert dir_node("/s", kvs, False) == {"key": "/s", "dir": True, "nodes": [
        {"key": "/s/a", "value": "v", "createdIndex": 1, "modifiedIndex": 1},
        {"key": "/s/b", "dir": True}]}
    deep = dir_node("/s", kvs, True)
    assert deep["nodes"][1]["nodes"][1] == {"key": "/s/b/d", "dir": True, "nodes": [
        {"key": "/s/b/d/e", "value": "v", "createdIndex": 1, "modifiedIndex": 1}]}


async def test_set_get_update_delete(client: Client, registry: Registry) -> None:
    resp = await client.put("/v1/kv/services/apache/10.0.0.1", json={"value": "10.0.0.1:8080"})
    assert resp.status == 201
    created = await resp.json()
    assert created["action"] == "create" and "prevNode" not in created
    node = created["node"]
    assert node["key"] == "/services/apache/10.0.0.1" and node["value"] == "10.0.0.1:8080"
    kv = await registry.get("/services/apache/10.0.0.1")
    assert kv is not None and kv.value == b"10.0.0.1:8080"
    assert node["createdIndex"] == node["modifiedIndex"] == kv.mod_revision

    resp = await client.put("/v1/kv/services/apache/10.0.0.1", json={"value": "x"})
    assert resp.status == 200
    body = await resp.json()
    assert body["action"] == "set" and body["prevNode"]["value"] == "10.0.0.1:8080"
    assert body["node"]["createdIndex"] == node["createdIndex"]

    got = await (await client.get("/v1/kv/services/apache/10.0.0.1")).json()
    assert got == {"action": "get", "node": {"key": "/services/apache/10.0.0.1", "value": "x",
                                             "createdIndex": node["createdIndex"],
                                             "modifiedIndex": body["node"]["modifiedIndex"]}}
    resp = await client.delete("/v1/kv/services/apache/10.0.0.1")
    assert resp.status == 200
    assert (await resp.json())["prevNode"]["value"] == "x"
    assert await _error(await client.get("/v1/kv/services/apache/10.0.0.1"), 404) == \
        "key not found: /services/apache/10.0.0.1"
    await _error(await client.delete("/v1/kv/services/apache/10.0.0.1"), 404)


async def test_directories(client: Client, registry: Registry) -> None:
    await registry.put("/services/apache/a", b"1")
    await registry.put("/services/apache/b", b"2")
    await registry.put("/services/nginx/conf/x", b"3")
    body = await (await client.get("/v1/kv/services")).json()
    assert body["node"]["dir"] is True
    assert [n["key"] for n in body["node"]["nodes"]] == ["/services/apache", "/services/nginx"]
    assert "nodes" not in body["node"]["nodes"][0]
    body = await (await client.get("/v1/kv/services?recursive=true")).json()
    assert [n["value"] for n in body["node"]["nodes"][0]["nodes"]] == ["1", "2"]
    root = await (await client.get("/v1/kv/")).json()
    assert [n["key"] for n in root["node"]["nodes"]] == ["/services"]
    assert await (await client.get("/v1/kv")).json() == root


async def test_delete_directory_needs_recursive(client: Client, registry: Registry) -> None:
    await registry.put("/services/apache/a", b"1")
    await registry.put("/services/apache/b/c", b"2")
    assert "recursive" in await _error(await client.delete("/v1/kv/services/apache"), 403)
    resp = await client.delete("/v1/kv/services/apache?recursive=true")
    assert resp.status == 200 and (await resp.json())["node"]["dir"] is True
    assert await registry.range("/services/") == []


async def test_ttl(client: Client, registry: Registry) -> None:
    resp = await client.put("/v1/kv/services/web/1?ttl=1", json={"value": "up"})
    assert resp.status == 201 and (await resp.json())["node"]["ttl"] == 1
    kv = await registry.get("/services/web/1")
    assert kv is not None and kv.lease != 0
    for _ in range(60):
        if await registry.get("/services/web/1") is None:
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("key with ttl=1 did not expire")
    resp = await client.put("/v1/kv/services/web/2", json={"value": "up", "ttl": 30})
    assert (await resp.json())["node"]["ttl"] == 30
    assert "ttl" in await _error(await client.put("/v1/kv/a?ttl=0", json={"value": "x"}), 400)
    assert "ttl" in await _error(await client.put("/v1/kv/a", json={"value": "x",
                                                                   "ttl": "x"}), 400)


async def test_compare_and_swap(client: Client, registry: Registry) -> None:
    resp = await client.put("/v1/kv/lock?prevExist=false", json={"value": "me"})
    assert resp.status == 201
    msg = await _error(await client.put("/v1/kv/lock?prevExist=false", json={"value": "you"}),
                       412)
    assert "already exists" in msg
    await _error(await client.put("/v1/kv/lock?prevValue=you", json={"value": "x"}), 412)
    resp = await client.put("/v1/kv/lock?prevValue=me", json={"value": "me2"})
    assert resp.status == 200 and (await resp.json())["action"] == "compareAndSwap"
    kv = await registry.get("/lock")
    assert kv is not None and kv.value == b"me2"
    await _error(await client.put(f"/v1/kv/lock?prevIndex={kv.mod_revision - 1}",
                                  json={"value": "x"}), 412)
    assert (await client.put(f"/v1/kv/lock?prevIndex={kv.mod_revision}",
                             json={"value": "y"})).status == 200
    assert "does not exist" in await _error(
        await client.put("/v1/kv/other?prevExist=true", json={"value": "x"}), 412)
    await _error(await client.delete("/v1/kv/lock?prevValue=nope"), 412)
    assert (await client.delete("/v1/kv/lock?prevValue=y")).status == 200


async def test_put_errors(client: Client) -> None:
    await _error(await client.put("/v1/kv/a", data=b'{"value":"x"}',
                                  headers={"Content-Type": "text/plain"}), 415)
    await _error(await client.put("/v1/kv/a", json={"value": 3}), 400)
    await _error(await client.put("/v1/kv/a", json=["x"]), 400)
    await _error(await client.put("/v1/kv/a", data=b"{", headers={
        "Content-Type": "application/json"}), 400)
    await _error(await client.put("/v1/kv/", json={"value": "x"}), 400)


async def test_cluster_prefix_read_only(client: Client, registry: Registry) -> None:
    await add_unit(registry, "a.service")
    body = await (await client.get(f"/v1/kv{KEYS.desired_state('a.service')}")).json()
    assert body["node"]["value"] == "launched"
    msg = await _error(await client.put(f"/v1/kv{KEYS.desired_state('a.service')}",
                                        json={"value": "inactive"}), 403)
    assert "managed by flotte" in msg
    await _error(await client.delete(f"/v1/kv{KEYS.prefix}?recursive=true"), 403)
    await _error(await client.delete("/v1/kv/?recursive=true"), 403)
    await _error(await client.delete(f"/v1/kv{KEYS.unit('a.service')}"), 403)
