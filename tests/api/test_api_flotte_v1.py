"""flotte's own /v1 routes: reasons, status, events stream, journal hook."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient
from api_support import KEYS, add_machine, add_unit, publish_state, schedule, set_reasons

from flotte.api import JournalSource, api_context
from flotte.registry import Registry

Client = TestClient[web.Request, web.Application]


async def _error(resp: Any, status: int) -> str:
    assert resp.status == status, await resp.text()
    message: str = (await resp.json())["error"]["message"]
    return message


# -- reasons ---------------------------------------------------------------------------


async def test_reasons(client: Client, registry: Registry) -> None:
    await add_unit(registry, "web@1.service")
    await set_reasons(registry, "web@1.service",
                      {"m1": "conflicts with web@2.service", "": "no machine has role=web"})
    resp = await client.get("/v1/units/web%401.service/reasons")
    assert await resp.json() == {
        "name": "web@1.service", "desiredState": "launched", "currentState": "inactive",
        "reasons": {"": "no machine has role=web", "m1": "conflicts with web@2.service"}}


async def test_reasons_none_and_unknown(client: Client, registry: Registry) -> None:
    await add_unit(registry, "a.service")
    await schedule(registry, "a.service", "m1")
    body = await (await client.get("/v1/units/a.service/reasons")).json()
    assert body["reasons"] == {} and body["machineID"] == "m1"
    assert await _error(await client.get("/v1/units/b.service/reasons"), 404) == \
        "unit does not exist"


# -- status ------------------------------------------------------------------------------


async def test_status(client: Client, registry: Registry) -> None:
    record = await add_unit(registry, "a.service")
    await schedule(registry, "a.service", "m1")
    state = await publish_state(registry, "a.service", "m1", launched=True)
    machine = await add_machine(registry, "m1", "10.0.0.7")
    body = await (await client.get("/v1/units/a.service/status")).json()
    assert body == {"name": "a.service", "hash": record.hash, "desiredState": "launched",
                    "currentState": "launched", "machineID": "m1", "global": False,
                    "state": json.loads(state.encode()),
                    "machine": json.loads(machine.encode())}


async def test_status_of_destroyed_unit_still_stopping(client: Client,
                                                       registry: Registry) -> None:
    await publish_state(registry, "a.service", "m1", active="deactivating", sub="stop")
    body = await (await client.get("/v1/units/a.service/status")).json()
    assert body["state"]["activeState"] == "deactivating"
    assert "desiredState" not in body and body["machine"] is None


async def test_status_unknown_404(client: Client) -> None:
    assert await _error(await client.get("/v1/units/x.service/status"), 404) == \
        "unit does not exist"


# -- events ------------------------------------------------------------------------------


async def _line(resp: Any) -> dict[str, Any]:
    raw = await asyncio.wait_for(resp.content.readline(), 5)
    assert raw.endswith(b"\n")
    obj: dict[str, Any] = json.loads(raw)
    return obj


async def _next_event(resp: Any) -> dict[str, Any]:
    while True:
        obj = await _line(resp)
        if obj["type"] != "heartbeat":
            return obj


async def test_events_stream_live_changes(client: Client, registry: Registry) -> None:
    resp = await client.get("/v1/events")
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "application/x-ndjson"
    start = int(resp.headers["X-Flotte-Revision"])
    put = await client.put("/fleet/v1/units/a.service", json={
        "desiredState": "launched",
        "options": [{"section": "Service", "name": "ExecStart", "value": "/bin/true"}]})
    assert put.status == 201
    first, second = await _next_event(resp), await _next_event(resp)
    assert first["revision"] == second["revision"] > start
    assert {(first["kind"], first["name"]), (second["kind"], second["name"])} == \
        {("units", "a.service"), ("desired", "a.service")}
    desired = first if first["kind"] == "desired" else second
    assert desired == {"revision": desired["revision"], "type": "put",
                       "key": KEYS.desired_state("a.service"), "kind": "desired",
                       "name": "a.service", "value": "launched"}
    await registry.put("/services/web/x", b"outside the prefix: not streamed")
    await registry.delete(KEYS.desired_state("a.service"))
    deleted = await _next_event(resp)
    assert deleted["type"] == "delete" and "value" not in deleted
    resp.close()


async def test_events_since_replays_history(client: Client, registry: Registry) -> None:
    rev = await registry.put(KEYS.desired_state("a.service"), b"loaded")
    await registry.put(KEYS.desired_state("b.service"), b"launched")
    resp = await client.get("/v1/events", params={"since": str(rev)})
    names = [(await _next_event(resp))["name"] for _ in range(2)]
    assert names == ["a.service", "b.service"]
    resp.close()


async def test_events_heartbeat(client: Client) -> None:
    resp = await client.get("/v1/events")
    beat = await _line(resp)
    assert beat["type"] == "heartbeat" and isinstance(beat["revision"], int)
    resp.close()


async def test_events_compacted_410(client: Client, registry: Registry) -> None:
    await registry.put(KEYS.desired_state("a.service"), b"loaded")
    rev = await registry.put(KEYS.desired_state("a.service"), b"launched")
    await registry.compact(rev)
    msg = await _error(await client.get("/v1/events?since=1"), 410)
    assert "compacted" in msg


async def test_events_bad_since_400(client: Client) -> None:
    assert "since" in await _error(await client.get("/v1/events?since=abc"), 400)
    assert "since" in await _error(await client.get("/v1/events?since=0"), 400)


async def test_own_routes_wrong_method_405(client: Client) -> None:
    msg = await _error(await client.post("/v1/events"), 405)
    assert msg.startswith("only GET")


# -- journal -------------------------------------------------------------------------------


class FakeJournal:
    def __init__(self, unit: str, lines: list[str]) -> None:
        self.unit = unit
        self.lines = lines
        self.live: asyncio.Queue[str] = asyncio.Queue()
        self.closed = asyncio.Event()
        self.calls: list[tuple[str, int | None, bool]] = []

    async def open_journal(self, unit: str, *, lines: int | None, follow: bool
                           ) -> AsyncIterator[str] | None:
        self.calls.append((unit, lines, follow))
        if unit != self.unit:
            return None
        return self._gen(lines, follow)

    async def _gen(self, lines: int | None, follow: bool) -> AsyncIterator[str]:
        try:
            tail = self.lines if lines is None else self.lines[len(self.lines) - lines:]
            for line in tail:
                yield line
            while follow:
                yield await self.live.get()
        finally:
            self.closed.set()


def test_fake_journal_satisfies_protocol() -> None:
    assert isinstance(FakeJournal("a", []), JournalSource)


async def test_journal_without_source_404(client: Client) -> None:
    msg = await _error(await client.get("/v1/units/a.service/journal"), 404)
    assert "no journal source" in msg


async def test_journal_lines(client: Client, app: web.Application) -> None:
    source = FakeJournal("web@1.service", ["one", "two", "three"])
    api_context(app).journal = source  # plugged in after the app was built
    resp = await client.get("/v1/units/web%401.service/journal?lines=2")
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert await resp.text() == "two\nthree\n"
    assert await (await client.get("/v1/units/web%401.service/journal")).text() == \
        "one\ntwo\nthree\n"
    assert await (await client.get("/v1/units/web%401.service/journal?lines=0")).text() == ""
    assert source.calls[0] == ("web@1.service", 2, False)
    assert await _error(await client.get("/v1/units/other.service/journal"), 404) != ""
    assert "lines" in await _error(
        await client.get("/v1/units/web%401.service/journal?lines=-1"), 400)
    assert "follow" in await _error(
        await client.get("/v1/units/web%401.service/journal?follow=maybe"), 400)
    assert 'must contain "."' in await _error(await client.get("/v1/units/bad/journal"), 400)


async def test_journal_follow(client: Client, app: web.Application) -> None:
    source = FakeJournal("a.service", ["old"])
    api_context(app).journal = source
    resp = await client.get("/v1/units/a.service/journal?lines=1&follow=1")
    assert await asyncio.wait_for(resp.content.readline(), 5) == b"old\n"
    await source.live.put("new")
    assert await asyncio.wait_for(resp.content.readline(), 5) == b"new\n"
    assert source.calls[-1] == ("a.service", 1, True)
    resp.close()
    # the server notices the disconnect on its next write and closes the source
    await source.live.put("after")
    await source.live.put("after 2")
    await asyncio.wait_for(source.closed.wait(), 5)
