"""Unit states are reported per machine (``state/<unit>/<machine>``), as fleet's were."""

from __future__ import annotations

from aiohttp.test_utils import TestClient
from api_support import add_unit, publish_state, schedule

from flotte.registry import Registry


async def test_global_unit_lists_one_state_per_machine(client: TestClient, registry: Registry
                                                       ) -> None:
    await add_unit(registry, "g.service", options=[("X-Fleet", "Global", "true"),
                                                   ("Service", "ExecStart", "/bin/true")])
    for m in ("m1", "m2", "m3"):
        await publish_state(registry, "g.service", m)
    body = await (await client.get("/fleet/v1/state")).json()
    assert sorted(s["machineID"] for s in body["states"]) == ["m1", "m2", "m3"]
    filtered = await (await client.get("/fleet/v1/state?machineID=m2")).json()
    assert [s["machineID"] for s in filtered["states"]] == ["m2"]


async def test_a_moved_unit_shows_its_scheduled_machines_state(client: TestClient,
                                                               registry: Registry) -> None:
    await add_unit(registry, "a.service")
    await schedule(registry, "a.service", "m2")
    await publish_state(registry, "a.service", "m1", active="deactivating", sub="stop-sigterm")
    await publish_state(registry, "a.service", "m2")
    unit = await (await client.get("/fleet/v1/units/a.service")).json()
    assert unit["machineID"] == "m2" and unit["currentState"] == "launched"
    state = await (await client.get("/fleet/v1/state/a.service")).json()
    assert state["machineID"] == "m2" and state["systemdSubState"] == "running"
