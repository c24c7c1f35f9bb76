"""Chapter 9 on three machines: ``apache@.service`` and its secretaries, podman for Docker.

Three simulated machines (own network, UTS and mount namespaces, own podman
store) each run ``flotte agent`` against one etcd on the hub.  The units are
the seed's ``ch09`` files with only these changes:

* ``apache@.service``: the image name ``eboraas/apache`` → an archive the
  machines have (``oci-archive:/opt/images/apache.tar``), so that
  ``ExecStartPre=/usr/bin/docker pull`` works without a registry;
* ``apache-secretary@.service``: ``ConditionMachineOf=`` → ``MachineOf=``.  The
  guide's key is not a fleet option (fleet ignored it, examples/seed/README.md),
  and without it the secretary lands on any machine, where its
  ``Requires=apache@%i.service`` names a unit that machine does not have.

The secretary's ``etcdctl set … --ttl 30`` / ``etcdctl rm`` run unchanged:
the machine's ``/usr/bin/etcdctl`` is ``flotte kv`` on the machine's flotte
API (whose verbs and flags are etcdctl v2's; ``etcdctl_stub.py`` stands in on a
tree without it), so the keys land in the cluster's registry.  The secretary polls every 20 s and its first curl
usually comes before the container answers, so the keys appear after about
20 s, exactly as with the guide's units.

The secretaries are launched once their apaches run, not all six units at
once as the guide's ``fleetctl start instances/*``: flotte's agent does not
retry a start that failed because a ``Requires=`` unit was not loaded on the
machine yet (it keeps the unit in its "launched" set), and a secretary
scheduled in the same pass as its apache can get there first.  Reported to
the agent's owner; this test is not the place to work around it silently.
"""

from __future__ import annotations

import pytest

from containers.support import (
    LOCAL_IMAGES,
    SEED,
    Lab,
    Machine,
    options,
    reaches,
    timed,
    unit_text,
    until,
)
from flotte.api.client import Client

pytestmark = [pytest.mark.containers, pytest.mark.etcd, pytest.mark.timeout(180)]

PORTS = (8080, 8081, 8082)


def apache_unit() -> str:
    return unit_text(SEED / "ch09" / "apache@.service", LOCAL_IMAGES)


def secretary_unit() -> str:
    return unit_text(SEED / "ch09" / "apache-secretary@.service",
                     {"\nConditionMachineOf=": "\nMachineOf="})


async def running_on(c: Client) -> dict[str, str]:
    return {s.name: s.machine_id for s in await c.list_unit_states()
            if s.active_state == "active"}


async def test_three_apaches_with_secretaries_on_three_machines(lab: Lab) -> None:
    registry = lab.etcd()
    machines = [lab.machine(n) for n in (1, 2, 3)]
    for m in machines:
        m.daemon("agent", registry=registry)
    by_id = {m.machine_id: m for m in machines}
    apache, secretary = options(apache_unit()), options(secretary_unit())
    async with Client(machines[0].endpoint) as c:
        await until(lambda: _machines(c, 3), 20, "three machines")
        with timed() as t:
            # fleetctl start apache@{8080,8081,8082}.service, then the secretaries (started
            # together, a secretary can reach its machine before its apache is loaded there;
            # see the module docstring)
            for port in PORTS:
                await c.create_unit(f"apache@{port}.service", apache, "launched")
            for port in PORTS:
                await reaches(c, f"apache@{port}.service", "active", "running", timeout=60,
                              machines=machines)
            for port in PORTS:
                await c.create_unit(f"apache-secretary@{port}.service", secretary, "launched")
            for port in PORTS:
                await reaches(c, f"apache-secretary@{port}.service", "active", "running",
                              timeout=60, machines=machines)
        placed = await running_on(c)
        hosts = {port: by_id[placed[f"apache@{port}.service"]] for port in PORTS}
        # Conflicts=apache@*.service: one per machine; each secretary next to its apache
        assert len({m.n for m in hosts.values()}) == 3
        for port in PORTS:
            assert placed[f"apache-secretary@{port}.service"] == hosts[port].machine_id
        # every machine runs exactly its own container, answering on its own address
        for port, m in hosts.items():
            page = await until(lambda m=m, port=port: m.http(port), 10, f"apache.{port}")
            assert "stand-in for eboraas/apache" in str(page)
            assert [(x.name, x.running) for x in m.containers()] == [(f"apache.{port}", True)]
        print(f"3 apaches + 3 secretaries active in {t[0]:.2f}s")

        # a fourth instance has no machine left (Conflicts=)
        await c.create_unit("apache@8083.service", apache, "launched")
        reasons = await until(lambda: _reasons(c, "apache@8083.service"), 15, "reasons")
        assert any("apache@" in r for r in reasons.values()), reasons  # type: ignore[union-attr]
        await c.destroy_unit("apache@8083.service")

        # the secretaries announce their apache (20 s loop, 30 s TTL) …
        with timed() as t:
            keys = await until(lambda: _keys(c, 3), 45, "three /services/apache keys")
        print(f"keys announced after {t[0]:.2f}s more")
        for port, m in hosts.items():
            assert keys[f"/services/apache/{m.ip}"] == \
                f'{{"host": "{m.hostname}", "ipv4_addr": {m.ip}, "port": {port}}}'

        # … fleetctl stop apache@8080: its secretary goes with it (BindsTo=) and removes the
        # key at once (ExecStop=etcdctl rm), the container stops; the others are untouched
        victim = hosts[8080]
        with timed() as t:
            await c.set_desired_state("apache@8080.service", "loaded")
            await reaches(c, "apache@8080.service", "inactive", "dead")
            await reaches(c, "apache-secretary@8080.service", "inactive")
        left = await until(lambda: _keys(c, 2), 10, "the key of 8080 removed")
        assert f"/services/apache/{victim.ip}" not in left
        print(f"stop of apache@8080 with its secretary: {t[0]:.2f}s")
        assert [(x.name, x.running) for x in victim.containers()] == [("apache.8080", False)]
        for port in (8081, 8082):
            assert [x.running for x in hosts[port].containers()] == [True]

        # start it again: ExecStartPre= kill/rm replace the stopped container
        await c.set_desired_state("apache@8080.service", "launched")
        await c.set_desired_state("apache-secretary@8080.service", "launched")
        await reaches(c, "apache@8080.service", "active", "running", timeout=30)
        await until(lambda: victim.http(8080), 10, "apache.8080 again")
        assert [(x.name, x.running) for x in victim.containers()] == [("apache.8080", True)]

        # destroy everything: no container runs anywhere any more
        for port in PORTS:
            await c.destroy_unit(f"apache-secretary@{port}.service")
            await c.destroy_unit(f"apache@{port}.service")
        await until(lambda: _none_running(machines), 30, "all containers stopped")


def _none_running(machines: list[Machine]) -> bool:
    return not any(x.running for m in machines for x in m.containers())


async def _machines(c: Client, n: int) -> bool:
    return len(await c.list_machines()) == n


async def _reasons(c: Client, name: str) -> dict[str, str] | None:
    r = await c.reasons(name)
    return r.reasons or None


async def _keys(c: Client, n: int) -> dict[str, str] | None:
    node = await c.kv_get("/services/apache", recursive=True)
    if node is None:
        return None
    keys = {child.key: child.value or "" for child in node.nodes}
    return keys if len(keys) == n else None
