"""The typed client against a really served app (unix socket and TCP with a token)."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator

import pytest
from aiohttp import web
from api_support import SLEEP, add_machine, add_unit, publish_state, schedule, set_reasons

from flotte.api import ApiError, Client, Served, api_context, make_app, serve
from flotte.api.client import UnitOption
from flotte.registry import Registry

TOKEN = "tok-123"


class ListJournal:
    def __init__(self) -> None:
        self.live: asyncio.Queue[str] = asyncio.Queue()

    async def open_journal(self, unit: str, *, lines: int | None, follow: bool
                           ) -> AsyncIterator[str] | None:
        if unit != "a.service":
            return None
        return self._gen(lines, follow)

    async def _gen(self, lines: int | None, follow: bool) -> AsyncIterator[str]:
        data = ["l1", "l2", "l3"]
        for line in data if lines is None else data[len(data) - lines:]:
            yield line
        while follow:
            yield await self.live.get()


@pytest.fixture
def sock_dir() -> Iterator[str]:
    d = tempfile.mkdtemp(prefix="flotte-cli-", dir="/tmp")
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
async def served(registry: Registry, sock_dir: str) -> AsyncIterator[Served]:
    app: web.Application = make_app(registry, token=TOKEN, token_limit=2, heartbeat=0.2)
    api_context(app).journal = ListJournal()
    s = await serve(app, [f"unix://{sock_dir}/api.sock", "http://127.0.0.1:0"])
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
async def api(served: Served) -> AsyncIterator[Client]:
    async with Client(served.urls[0]) as c:
        yield c


async def test_units_lifecycle(api: Client, registry: Registry) -> None:
    assert await api.list_units() == []
    assert await api.get_unit("web@1.service") is None
    await api.create_unit("web@1.service", SLEEP, "loaded")
    unit = await api.get_unit("web@1.service")
    assert unit is not None
    assert unit.options == [UnitOption("Service", "ExecStart", "/bin/sleep 3000")]
    assert (unit.desired_state, unit.current_state, unit.machine_id) == \
        ("loaded", "inactive", "")
    await schedule(registry, "web@1.service", "m1")
    await publish_state(registry, "web@1.service", "m1", launched=True)
    await api.set_desired_state("web@1.service", "launched")
    unit = await api.get_unit("web@1.service")
    assert unit is not None
    assert (unit.desired_state, unit.current_state, unit.machine_id) == \
        ("launched", "launched", "m1")
    await api.destroy_unit("web@1.service")
    with pytest.raises(ApiError) as e:
        await api.destroy_unit("web@1.service")
    assert (e.value.status, e.value.message) == (404, "unit does not exist")


async def test_errors_carry_server_message(api: Client) -> None:
    with pytest.raises(ApiError) as e:
        await api.set_desired_state("nope.service", "launched")
    assert e.value.status == 409
    with pytest.raises(ApiError) as e:
        await api.create_unit("a.service", [("X-Fleet", "MachineID", "x"),
                                            ("X-Fleet", "Global", "true"), *SLEEP], "launched")
    assert e.value.status == 400 and "MachineID cannot be used with Global" in e.value.message
    assert str(e.value).startswith("400: ")


async def test_listings_follow_pages(api: Client, registry: Registry) -> None:
    for n in "abcde":
        await add_unit(registry, f"{n}.service")
        await publish_state(registry, f"{n}.service", "m1" if n < "c" else "m2")
        await add_machine(registry, f"m{n}", metadata={"n": n})
    assert [u.name for u in await api.list_units()] == [f"{n}.service" for n in "abcde"]
    states = await api.list_unit_states()
    assert len(states) == 5 and states[0].active_state == "active"
    assert [s.name for s in await api.list_unit_states(machine_id="m1")] == \
        ["a.service", "b.service"]
    assert [s.name for s in await api.list_unit_states(unit_name="e.service")] == ["e.service"]
    state = await api.get_unit_state("e.service")
    assert state is not None and state.machine_id == "m2"
    assert await api.get_unit_state("z.service") is None
    machines = await api.list_machines()
    assert [m.id for m in machines] == [f"m{n}" for n in "abcde"]
    assert machines[0].primary_ip == "10.0.0.1" and machines[0].metadata == {"n": "a"}


async def test_metadata_patch(api: Client, registry: Registry) -> None:
    await add_machine(registry, "m1", metadata={"role": "db", "disk": "ssd"})
    await api.patch_machine_metadata("m1", {"role": "web", "zone": "b"}, remove=["disk"])
    (machine,) = await api.list_machines()
    assert machine.metadata == {"role": "web", "zone": "b"}


async def test_reasons_and_status(api: Client, registry: Registry) -> None:
    record = await add_unit(registry, "a.service")
    await set_reasons(registry, "a.service", {"m1": "MachineOf=b.service is not placed"})
    reasons = await api.reasons("a.service")
    assert reasons.reasons == {"m1": "MachineOf=b.service is not placed"}
    assert reasons.desired_state == "launched"
    await schedule(registry, "a.service", "m1")
    state = await publish_state(registry, "a.service", "m1")
    machine = await add_machine(registry, "m1")
    status = await api.status("a.service")
    assert (status.hash, status.machine_id, status.current_state) == \
        (record.hash, "m1", "launched")
    assert status.state == state and status.machine == machine
    with pytest.raises(ApiError):
        await api.status("zzz.service")


async def test_journal(api: Client, served: Served) -> None:
    assert [x async for x in api.journal("a.service", lines=2)] == ["l2", "l3"]
    assert [x async for x in api.journal("a.service", lines=None)] == ["l1", "l2", "l3"]
    with pytest.raises(ApiError) as e:
        _ = [x async for x in api.journal("b.service")]
    assert e.value.status == 404
    source = api_context(served.runner.app).journal
    assert isinstance(source, ListJournal)
    stream = api.journal("a.service", lines=0, follow=True)
    await source.live.put("live!")
    assert await asyncio.wait_for(stream.__anext__(), 5) == "live!"
    await stream.aclose()  # type: ignore[attr-defined]


async def test_events(api: Client, registry: Registry) -> None:
    rev = registry.revision + 1
    await api.create_unit("a.service", SLEEP, "launched")
    events = api.events(since=rev)
    got = [await asyncio.wait_for(events.__anext__(), 5) for _ in range(2)]
    assert {(e.kind, e.name, e.type) for e in got} == \
        {("units", "a.service", "put"), ("desired", "a.service", "put")}
    assert all(e.revision == rev for e in got)
    await api.destroy_unit("a.service")
    deleted = await asyncio.wait_for(events.__anext__(), 5)
    assert deleted.type == "delete" and deleted.value is None
    await events.aclose()  # type: ignore[attr-defined]


async def test_events_of_user_keys(api: Client, registry: Registry) -> None:
    rev = registry.revision + 1
    events = api.events(since=rev, prefix="/services/")
    await api.create_unit("a.service", SLEEP, "launched")  # not under /services/
    await api.kv_set("/services/web/m1", "10.0.0.1:80")
    got = await asyncio.wait_for(events.__anext__(), 5)
    assert (got.key, got.type, got.value) == ("/services/web/m1", "put", "10.0.0.1:80")
    await events.aclose()  # type: ignore[attr-defined]
    with pytest.raises(ApiError, match="must start with '/'"):
        async for _ in api.events(prefix="services"):
            pass


async def test_kv(api: Client) -> None:
    node = await api.kv_set("/services/apache/10.0.0.1", "up", ttl=30)
    assert (node.key, node.value, node.ttl) == ("/services/apache/10.0.0.1", "up", 30)
    got = await api.kv_get("/services/apache/10.0.0.1")
    assert got is not None and got.value == "up" and got.modified_index == node.modified_index
    tree = await api.kv_get("/services", recursive=True)
    assert tree is not None and tree.dir and tree.nodes[0].nodes[0].value == "up"
    with pytest.raises(ApiError) as e:
        await api.kv_set("/services/apache/10.0.0.1", "x", prev_exist=False)
    assert e.value.status == 412
    await api.kv_set("/services/apache/10.0.0.1", "down", prev_value="up",
                     prev_index=node.modified_index)
    await api.kv_delete("/services", recursive=True)
    assert await api.kv_get("/services") is None
    await api.kv_set("/a b/c@d", "odd key")
    odd = await api.kv_get("/a b/c@d")
    assert odd is not None and odd.key == "/a b/c@d"
    with pytest.raises(ApiError):
        await api.kv_delete("/nothing", prev_value="x")


async def test_tcp_needs_token(served: Served, registry: Registry) -> None:
    tcp = served.urls[1]
    async with Client(tcp) as anonymous:
        with pytest.raises(ApiError) as e:
            await anonymous.list_units()
        assert e.value.status == 401
    async with Client(tcp, token=TOKEN) as api:
        await add_unit(registry, "a.service")
        assert [u.name for u in await api.list_units()] == ["a.service"]


async def test_unreachable_and_bad_endpoints(sock_dir: str) -> None:
    async with Client(f"unix://{sock_dir}/missing.sock") as api:
        with pytest.raises(ApiError) as e:
            await api.list_units()
        assert e.value.status == 0 and "cannot reach" in e.value.message
    for bad in ("ftp://x", "unix://", "localhost:1"):
        with pytest.raises(ValueError):
            Client(bad)
    assert os.path.isdir(sock_dir)


async def test_create_unit_without_desired_state(api: Client) -> None:
    await api.create_unit("a.service", SLEEP)
    unit = await api.get_unit("a.service")
    assert unit is not None and unit.desired_state == "inactive"
    with pytest.raises(ApiError) as e:
        await api.create_unit("a.service", SLEEP)  # unchanged and no state: fleet's 409
    assert e.value.status == 409
    await api.create_unit("a.service", [("Service", "ExecStart", "/bin/sleep 5")], "launched")
    unit = await api.get_unit("a.service")
    assert unit is not None and unit.desired_state == "launched"
    assert unit.options == [UnitOption("Service", "ExecStart", "/bin/sleep 5")]


async def test_change_signal_wakes_on_a_change_under_its_prefix(api: Client) -> None:
    signal = api.change_signal("/services/web")
    try:
        waiter = asyncio.create_task(signal.wait(60))  # would sleep a minute without events
        await asyncio.sleep(0.3)  # the event stream is up
        await api.kv_set("/other/x", "1")  # not under the prefix: no wake
        await asyncio.sleep(0.2)
        assert not waiter.done()
        await api.kv_set("/services/web/m1", "10.0.0.1:80")
        await asyncio.wait_for(waiter, 5)
    finally:
        await signal.close()
