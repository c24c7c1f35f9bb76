"""Several daemons in one process on a shared in-memory registry, with real processes.

The quick harness for cluster behaviour: each daemon has its own machine id,
state dir, supervisor (own cgroup root) and API socket, exactly as separate
``flotte agent`` processes would; only the registry is in-process.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from flotte.api.client import Client
from flotte.daemon import DaemonConfig, DaemonError, run

pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="needs root (cgroups)"),
              pytest.mark.timeout(120)]


@dataclass
class Member:
    cfg: DaemonConfig
    stop: asyncio.Event
    task: asyncio.Task[int]

    @property
    def machine_id(self) -> str:
        assert self.cfg.machine_id is not None
        return self.cfg.machine_id

    @property
    def endpoint(self) -> str:
        return f"unix://{self.cfg.state_dir / 'flotte.sock'}"


class Cluster:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.registry = f"memory://cluster-{uuid.uuid4().hex}"
        self.members: list[Member] = []

    async def add(self, n: int, *, ttl: float = 2.0, machine_id: str | None = None,
                  metadata: str = "") -> Member:
        mid = machine_id or f"{n:02d}" + uuid.uuid4().hex[2:]
        cfg = DaemonConfig(state_dir=self.tmp / f"m{n}-{uuid.uuid4().hex[:6]}",
                           registry=self.registry, machine_id=mid, hostname=f"m{n}",
                           public_ip=f"127.0.0.{n + 1}", ttl=ttl, metadata=metadata)
        stop = asyncio.Event()
        ready = asyncio.Event()
        task = asyncio.create_task(run(cfg, stop=stop, announce=lambda _: ready.set()))
        waiter = asyncio.ensure_future(ready.wait())
        await asyncio.wait({task, waiter}, timeout=20, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if task.done():
            task.result()  # raises the start-up error
        m = Member(cfg, stop, task)
        self.members.append(m)
        return m

    async def remove(self, m: Member) -> None:
        m.stop.set()
        await m.task
        self.members.remove(m)

    async def close(self) -> None:
        for m in list(self.members):
            with contextlib.suppress(Exception):
                await self.remove(m)


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        await c.close()


async def until(check: Callable[[], object], timeout: float = 15.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {check}")
        await asyncio.sleep(0.05)


WEB = [("Unit", "Description", "web %i"), ("Service", "ExecStart", "/bin/sleep 1000"),
       ("X-Fleet", "Conflicts", "web@*.service")]


async def running(client: Client) -> dict[str, str]:
    return {s.name: s.machine_id for s in await client.list_unit_states()
            if s.sub_state == "running"}


async def test_conflicting_instances_spread_and_move_on_clean_shutdown(cluster: Cluster) -> None:
    members = [await cluster.add(i) for i in range(1, 5)]
    async with Client(members[0].endpoint) as c:
        await c.create_unit("web@.service", WEB, "inactive")
        for port in (8080, 8081, 8082):
            await c.create_unit(f"web@{port}.service", WEB, "launched")
        await until(lambda: _count(c, 3))
        placed = await running(c)
        assert len(set(placed.values())) == 3  # Conflicts=: three machines
        # clean shutdown of one machine that runs an instance: exactly that one moves
        victim = next(m for m in members[1:] if m.machine_id in placed.values())
        moved_unit = next(u for u, mid in placed.items() if mid == victim.machine_id)
        await cluster.remove(victim)
        await until(lambda: _moved(c, moved_unit, victim.machine_id))
        after = await running(c)
        assert {u: mid for u, mid in after.items() if u != moved_unit} == \
            {u: mid for u, mid in placed.items() if u != moved_unit}


async def _count(c: Client, n: int) -> bool:
    return len(await running(c)) == n


async def _moved(c: Client, unit: str, old: str) -> bool:
    now = await running(c)
    return unit in now and now[unit] != old


async def test_unplaceable_unit_gets_reasons_then_places_when_possible(cluster: Cluster) -> None:
    m1 = await cluster.add(1)
    async with Client(m1.endpoint) as c:
        for port in (1, 2):
            await c.create_unit(f"web@{port}.service", WEB, "launched")
        await until(lambda: _count(c, 1))
        states = await running(c)
        pending = ({"web@1.service", "web@2.service"} - states.keys()).pop()
        reasons = await c.reasons(pending)
        assert any("conflicts with web@" in r for r in reasons.reasons.values()), reasons
        await cluster.add(2)  # a new machine: the pending unit lands there
        await until(lambda: _count(c, 2))
        assert not (await c.reasons(pending)).reasons


async def test_duplicate_machine_id_is_refused(cluster: Cluster) -> None:
    m1 = await cluster.add(1)
    with pytest.raises(DaemonError, match="already registered by m1"):
        await cluster.add(2, machine_id=m1.machine_id)


async def test_desired_state_transitions(cluster: Cluster) -> None:
    m1 = await cluster.add(1)
    async with Client(m1.endpoint) as c:
        await c.create_unit("hello.service", [("Service", "ExecStart", "/bin/sleep 1000")],
                            "loaded")
        await until(lambda: _state(c, "hello.service", "inactive"))
        await c.set_desired_state("hello.service", "launched")
        await until(lambda: _state(c, "hello.service", "active"))
        await c.set_desired_state("hello.service", "loaded")
        await until(lambda: _state(c, "hello.service", "inactive"))
        await c.destroy_unit("hello.service")
        await until(lambda: _gone(c, "hello.service"))


async def _state(c: Client, unit: str, active: str) -> bool:
    return any(s.name == unit and s.active_state == active
               for s in await c.list_unit_states())


async def _gone(c: Client, unit: str) -> bool:
    return all(s.name != unit for s in await c.list_unit_states())


async def test_global_unit_update_rolls_one_machine_at_a_time(cluster: Cluster) -> None:
    members = [await cluster.add(i) for i in range(1, 4)]

    def body(version: str) -> list[tuple[str, str, str]]:
        return [("Service", "ExecStartPre", "/bin/sleep 0.4"),
                ("Service", "ExecStart", f"/bin/sleep 100{version}"),
                ("X-Fleet", "Global", "true")]

    async with Client(members[0].endpoint) as c:
        await c.create_unit("g.service", body("1"), "launched")
        await until(lambda: _count_machines(c, "g.service", 3))
        old = {s.hash for s in await c.list_unit_states()}
        await c.create_unit("g.service", body("2"), "launched")  # a changed body: replace
        worst = 0
        while True:
            states = [s for s in await c.list_unit_states() if s.name == "g.service"]
            down = sum(1 for s in states if s.sub_state != "running")
            worst = max(worst, down + (3 - len(states)))
            if len(states) == 3 and down == 0 and not {s.hash for s in states} & old:
                break
            await asyncio.sleep(0.02)
        assert worst == 1  # never more than max-unavailable (1) down at once


async def _count_machines(c: Client, unit: str, n: int) -> bool:
    return sum(1 for s in await c.list_unit_states()
               if s.name == unit and s.sub_state == "running") == n


async def test_install_wantedby_sidekick_follows_its_unit(cluster: Cluster) -> None:
    """fleet's TestInstallUnit: a loaded discovery unit with WantedBy=hello.service starts
    when hello starts (and stops with it, through PartOf=)."""
    m1 = await cluster.add(1)
    await cluster.add(2)
    async with Client(m1.endpoint) as c:
        await c.create_unit("hello.service", [("Service", "ExecStart", "/bin/sleep 1001")],
                            "loaded")
        await c.create_unit("discovery.service", [
            ("Unit", "PartOf", "hello.service"),
            ("Service", "ExecStart", "/bin/sleep 1002"),
            ("Install", "WantedBy", "hello.service"),
            ("X-Fleet", "MachineOf", "hello.service")], "loaded")
        await until(lambda: _state(c, "discovery.service", "inactive"))
        await c.set_desired_state("hello.service", "launched")
        await until(lambda: _state(c, "discovery.service", "active"))
        await c.set_desired_state("hello.service", "loaded")
        await until(lambda: _state(c, "discovery.service", "inactive"))


def _sleep(n: int, *extra: tuple[str, str, str]) -> list[tuple[str, str, str]]:
    return [("Service", "ExecStart", f"/bin/sleep {n}"), *extra]


async def test_machineof_pairs_move_together(cluster: Cluster) -> None:
    """fleet's TestScheduleMachineOf: ping/pong pairs co-located; a machine leaving moves
    its pair together."""
    members = [await cluster.add(i) for i in range(1, 4)]
    async with Client(members[0].endpoint) as c:
        for i in range(3):
            await c.create_unit(f"ping{i}.service", _sleep(2000 + i), "launched")
            await c.create_unit(f"pong{i}.service",
                                _sleep(2100 + i, ("X-Fleet", "MachineOf", f"ping{i}.service")),
                                "launched")
        await until(lambda: _count(c, 6))
        where = await running(c)
        assert all(where[f"ping{i}.service"] == where[f"pong{i}.service"] for i in range(3))
        victim = next(m for m in members[1:] if m.machine_id in where.values())
        await cluster.remove(victim)
        await until(lambda: _all_off(c, victim.machine_id, 6))
        where = await running(c)
        assert all(where[f"ping{i}.service"] == where[f"pong{i}.service"] for i in range(3))


async def _all_off(c: Client, machine_id: str, n: int) -> bool:
    now = await running(c)
    return len(now) == n and machine_id not in now.values()


async def test_global_units_and_global_conflicts(cluster: Cluster) -> None:
    """TestScheduleGlobalUnits and TestScheduleGlobalConflicts: a global unit runs on every
    machine; of two conflicting global units only the first (by name) runs."""
    members = [await cluster.add(i) for i in range(1, 4)]
    async with Client(members[0].endpoint) as c:
        await c.create_unit("a-global.service", _sleep(3001, ("X-Fleet", "Global", "true"),
                                                      ("X-Fleet", "Conflicts", "b-global*")),
                            "launched")
        await c.create_unit("b-global.service", _sleep(3002, ("X-Fleet", "Global", "true")),
                            "launched")
        await c.create_unit("normal.service", _sleep(3003), "launched")
        await until(lambda: _global_count(c, "a-global.service", 3))
        states = await c.list_unit_states()
        assert not [s for s in states if s.name == "b-global.service" and
                    s.sub_state == "running"]
        units = {u.name: u for u in await c.list_units()}
        assert units["a-global.service"].machine_id == ""  # global: no machineID


async def _global_count(c: Client, unit: str, n: int) -> bool:
    return sum(1 for s in await c.list_unit_states()
               if s.name == unit and s.sub_state == "running") == n


async def test_metadata_with_specifiers(cluster: Cluster) -> None:
    """TestTemplatesWithSpecifiersInMetadata: MachineMetadata=hostname=%i lands each
    instance on its host; an unsatisfiable one stays unplaced with a reason."""
    members = [await cluster.add(i, metadata=f"hostname=host{i}") for i in range(1, 4)]
    body = _sleep(4000, ("X-Fleet", "MachineMetadata", "hostname=%i"))
    async with Client(members[0].endpoint) as c:
        await c.create_unit("metadata@.service", body, "inactive")
        for i in range(1, 5):
            await c.create_unit(f"metadata@host{i}.service", body, "launched")
        await until(lambda: _count(c, 3))
        where = await running(c)
        for i, m in enumerate(members, start=1):
            assert where[f"metadata@host{i}.service"] == m.machine_id
        reasons = (await c.reasons("metadata@host4.service")).reasons
        assert reasons and all("hostname=host4" in r for r in reasons.values()), reasons


async def test_replaces_moves_the_replaced_unit(cluster: Cluster) -> None:
    """TestScheduleReplace: replace-kick0 lands where replace.0 ran; replace.0 moves.
    TestScheduleCircularReplace: of two units replacing each other only one runs."""
    members = [await cluster.add(i) for i in range(1, 3)]
    async with Client(members[0].endpoint) as c:
        # both machines busy (one unit each): the kick ties, and goes to the lower id,
        # where replace.0 runs
        await c.create_unit("replace.0.service", _sleep(5000), "launched")
        await until(lambda: _count(c, 1))
        await c.create_unit("replace.1.service", _sleep(5004), "launched")
        await until(lambda: _count(c, 2))
        first = (await running(c))["replace.0.service"]
        assert first == min(m.machine_id for m in members)
        await c.create_unit("replace-kick0.service",
                            _sleep(5001, ("X-Fleet", "Replaces", "replace.0.service")),
                            "launched")
        await until(lambda: _moved_apart(c, first))
        await c.create_unit("circ-a.service", _sleep(5002, ("X-Fleet", "Replaces",
                                                            "circ-b.service")), "launched")
        await c.create_unit("circ-b.service", _sleep(5003, ("X-Fleet", "Replaces",
                                                            "circ-a.service")), "launched")
        await until(lambda: _count(c, 4))
        await asyncio.sleep(0.5)
        now = await running(c)
        assert len({"circ-a.service", "circ-b.service"} & now.keys()) == 1, now


async def _moved_apart(c: Client, first: str) -> bool:
    now = await running(c)
    return (now.get("replace-kick0.service") == first
            and now.get("replace.0.service") not in (None, first))
