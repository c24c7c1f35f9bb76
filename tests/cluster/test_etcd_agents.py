"""Three ``flotte agent`` processes on 127.0.0.2–4 around a real etcd (issue #6).

Each agent is its own process with its own machine id, state dir, API
listener and supervisor, as on three machines.  Units run ``/bin/sleep`` with
a per-unit argument, so ``/proc`` tells exactly how many copies of a unit run
and on which agent (the sleep's parent).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from cluster_support import TTL, AgentProc, sleeps

from etcd_server import EtcdServer
from flotte.api.client import Client
from support import require

pytestmark = [pytest.mark.etcd, pytest.mark.timeout(240),
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root (cgroups)")]



@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdServer]:
    require("etcd", "etcd-server")
    server = EtcdServer(tmp_path_factory.mktemp("etcd-agents"))
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def agents(etcd: EtcdServer, tmp_path: Path) -> Iterator[list[AgentProc]]:
    prefix_registry = etcd.url
    procs = [AgentProc(n, prefix_registry, tmp_path) for n in (1, 2, 3)]
    try:
        for a in procs:
            a.start()
        yield procs
    finally:
        for a in procs:
            a.stop()


@pytest.fixture
async def client(agents: list[AgentProc]) -> AsyncIterator[Client]:
    async with Client(agents[0].endpoint) as c:
        yield c
    # leave nothing behind in the shared etcd for the next test
    live = next(a for a in agents if a.proc is not None and a.proc.poll() is None)
    async with Client(live.endpoint) as c:
        for u in await c.list_units():
            await c.destroy_unit(u.name)


def unit(marker: str, *extra: tuple[str, str, str]) -> list[tuple[str, str, str]]:
    return [("Service", "ExecStart", f"/bin/sleep {marker}"), *extra]


async def wait_for(check: object, timeout: float = 30.0) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if check():  # type: ignore[operator]
            return time.monotonic() - t0
        await asyncio.sleep(0.05)
    raise AssertionError("timed out")


def by_agent(agents: list[AgentProc], marker: str) -> list[int]:
    parents = sleeps(marker).values()
    return [a.n for a in agents if a.proc is not None and a.proc.pid in parents]


async def test_conflicting_instances_land_on_three_machines(agents: list[AgentProc],
                                                            client: Client) -> None:
    markers = {p: f"{7000 + p}.{uuid.uuid4().int % 1000}" for p in (1, 2, 3)}
    tmpl = [("X-Fleet", "Conflicts", "apache@*.service")]
    for p, marker in markers.items():
        await client.create_unit(f"apache@{p}.service", unit(marker, *tmpl), "launched")
    await wait_for(lambda: all(len(by_agent(agents, m)) == 1 for m in markers.values()))
    hosts = [by_agent(agents, m)[0] for m in markers.values()]
    assert sorted(hosts) == [1, 2, 3]
    states = await client.list_unit_states()
    assert {s.machine_id for s in states} == {a.machine_id for a in agents}


async def test_sigkill_of_an_agent_moves_its_unit_within_ttl(agents: list[AgentProc],
                                                             client: Client) -> None:
    marker = f"{8000}.{uuid.uuid4().int % 1000}"
    await client.create_unit("hello.service", unit(marker), "launched")
    await wait_for(lambda: len(by_agent(agents, marker)) == 1)
    victim = next(a for a in agents if a.n == by_agent(agents, marker)[0])
    victim.signal(signal.SIGKILL)
    t0 = time.monotonic()
    # the machine died with its agent: its processes go too
    for pid in sleeps(marker):
        os.kill(pid, signal.SIGKILL)
    survivors = [a for a in agents if a is not victim]
    try:
        await wait_for(lambda: len(by_agent(survivors, marker)) == 1, timeout=TTL + 10)
    except AssertionError:
        raise AssertionError("\n\n".join(a.log_tail() for a in agents)) from None
    took = time.monotonic() - t0
    assert took <= TTL + 1.0, f"moved after {took:.2f}s (TTL {TTL}s)"


async def test_sigstopped_agent_does_not_keep_running_a_moved_unit(
        agents: list[AgentProc], client: Client) -> None:
    marker = f"{8100}.{uuid.uuid4().int % 1000}"
    await client.create_unit("paused.service", unit(marker), "launched")
    await wait_for(lambda: len(by_agent(agents, marker)) == 1)
    victim = next(a for a in agents if a.n == by_agent(agents, marker)[0])
    victim.signal(signal.SIGSTOP)
    others = [a for a in agents if a is not victim]
    await wait_for(lambda: len(by_agent(others, marker)) == 1, timeout=TTL + 10)
    victim.signal(signal.SIGCONT)
    # the woken agent learns the unit moved and stops its copy
    await wait_for(lambda: len(sleeps(marker)) == 1, timeout=15)
    assert by_agent(others, marker) and not by_agent([victim], marker)


async def test_registry_outage_restarts_nothing(etcd: EtcdServer, agents: list[AgentProc],
                                                client: Client) -> None:
    markers = [f"{8200 + i}.{uuid.uuid4().int % 1000}" for i in range(3)]
    for i, m in enumerate(markers):
        await client.create_unit(f"steady{i}.service", unit(m), "launched")
    await wait_for(lambda: all(len(sleeps(m)) == 1 for m in markers))
    before = {m: set(sleeps(m)) for m in markers}
    etcd.stop()
    try:
        await asyncio.sleep(30)
        assert {m: set(sleeps(m)) for m in markers} == before  # nothing stopped meanwhile
    finally:
        etcd.start()
    await asyncio.sleep(2 * TTL + 2)  # leases, elections and watches settle
    assert {m: set(sleeps(m)) for m in markers} == before  # and nothing restarted after
    states = {s.name: s.sub_state for s in await client.list_unit_states()}
    assert all(states.get(f"steady{i}.service") == "running" for i in range(3)), states
