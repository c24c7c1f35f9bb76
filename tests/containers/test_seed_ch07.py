"""Chapter 7: ``mongo.service`` and ``employees.service`` with ``docker-run.sh``, on one machine.

The units are the seed's files (``examples/seed/ch07``), run by ``flotte up``
inside a simulated machine whose ``/opt/bin/docker-run.sh`` is the guide's
script and whose ``mongo``/``node-app`` images are local stand-ins (the image
*names* stay: podman resolves the short names to ``localhost/mongo`` and
``localhost/node-app`` in the machine's store).

What the guide did not notice: ``docker-run.sh … -d`` returns as soon as the
container runs, so the unit's main process exits with status 0, and systemd
(service.c, ``service_enter_running``: main process gone, no
``RemainAfterExit=``) then *stops the service*, which runs ``ExecStop=docker stop
mongo-ins``.  flotte does the same, so the first test shows the units as
written starting their containers and stopping them again at once.  The
second runs them as the guide meant, with the one-line fix
(``RemainAfterExit=yes``, docs/containers.md) and the guide's slip in
``employees.service`` (``ExecStop=… stop mongo-ins`` instead of ``node-app``)
corrected: start, stop and restart work, the app reads the database
through ``--link``.
"""

from __future__ import annotations

import pytest

from containers.support import (
    SEED,
    Lab,
    journal,
    options,
    reaches,
    restart,
    timed,
    unit_text,
    until,
)
from flotte.api.client import Client

pytestmark = [pytest.mark.containers, pytest.mark.timeout(150)]

CH07 = SEED / "ch07"

FIX_REMAIN = {"[Service]\n": "[Service]\nRemainAfterExit=yes\n"}
FIX_STOP = {"ExecStop=/usr/bin/docker stop mongo-ins": "ExecStop=/usr/bin/docker stop node-app"}


async def test_units_as_written_stop_their_container_when_docker_run_returns(lab: Lab) -> None:
    m = lab.machine(1)
    m.load("mongo", "node-app")
    m.daemon("up")
    async with Client(m.endpoint) as c:
        await c.create_unit("mongo.service", options(unit_text(CH07 / "mongo.service")),
                            "launched")
        await reaches(c, "mongo.service", "inactive", "dead")
        first = m.container("mongo-ins")
        assert first is not None and first.status.startswith("Exited (0)")
        lines = await journal(c, "mongo.service")
        # docker-run.sh's `docker run -d` printed the new container's id and exited …
        ran = _index(lines, "docker-run.sh[", first.id)
        exited = _index(lines, "Main process exited, code=exited, status=0/SUCCESS")
        # … so the service stopped: ExecStop's `docker stop mongo-ins` printed the name
        stopped = _index(lines, "docker[", "]: mongo-ins")
        assert ran < exited < stopped
        assert lines[-1].endswith("Deactivated successfully.")

        # employees.service links to mongo-ins, which no longer runs: docker fails
        await c.create_unit("employees.service",
                            options(unit_text(CH07 / "employees.service")), "launched")
        state = await reaches(c, "employees.service", "failed")
        assert state[2] == "exit-code"
        assert "cannot link to a non running container: /mongo-ins AS /mongo" in \
            "\n".join(await journal(c, "employees.service"))
        assert m.container("node-app") is None

        # starting mongo.service again takes docker-run.sh's `docker start` branch: the same
        # container runs again (and is stopped again)
        await restart(c, "mongo.service")
        await until(lambda: _count(c, "mongo.service", "Deactivated successfully.", 2),
                    what="a second run of mongo.service")
        again = m.container("mongo-ins")
        assert again is not None and again.id == first.id
        assert [x.name for x in m.containers()] == ["mongo-ins"]
        lines = await journal(c, "mongo.service")
        _index(lines[exited + 1:], "docker-run.sh[", "]: mongo-ins")  # `docker start mongo-ins`


def _index(lines: list[str], *parts: str) -> int:
    """Index of the first journal line containing every one of ``parts``."""
    for i, line in enumerate(lines):
        if all(p in line for p in parts):
            return i
    raise AssertionError(f"no line with {parts} in:\n" + "\n".join(lines))


async def _count(c: Client, name: str, needle: str, n: int) -> bool:
    return sum(needle in line for line in await journal(c, name)) >= n


async def test_units_with_remain_after_exit_start_stop_and_restart(lab: Lab) -> None:
    m = lab.machine(1)
    m.load("mongo", "node-app")
    m.daemon("up")
    mongo = unit_text(CH07 / "mongo.service", FIX_REMAIN)
    employees = unit_text(CH07 / "employees.service", FIX_REMAIN | FIX_STOP)
    async with Client(m.endpoint) as c:
        with timed() as t_start:
            await c.create_unit("mongo.service", options(mongo), "launched")
            await reaches(c, "mongo.service", "active", "exited")
        mongo_ins = m.container("mongo-ins")
        assert mongo_ins is not None and mongo_ins.running
        await c.create_unit("employees.service", options(employees), "launched")
        await reaches(c, "employees.service", "active", "exited")
        page = await until(lambda: m.http(3000, "/cgi-bin/employees"), 10, "the app")
        assert "Grace Hopper" in str(page)  # node-app reads mongo-ins through --link

        # restart (fleetctl stop + start): docker stop, then docker-run.sh's docker start
        node_app = m.container("node-app")
        assert node_app is not None
        await c.set_desired_state("employees.service", "loaded")
        await reaches(c, "employees.service", "inactive", "dead")
        stopped = m.container("node-app")
        assert stopped is not None and not stopped.running
        assert m.http(3000, "/cgi-bin/employees", timeout=1) is None
        await c.set_desired_state("employees.service", "launched")
        await reaches(c, "employees.service", "active", "exited")
        restarted = m.container("node-app")
        assert restarted is not None and restarted.running and restarted.id == node_app.id
        page = await until(lambda: m.http(3000, "/cgi-bin/employees"), 10, "the app again")
        assert "Grace Hopper" in str(page)

        # stop both: nothing runs; the stopped containers stay for docker-run.sh to reuse
        with timed() as t_stop:
            await c.set_desired_state("employees.service", "loaded")
            await c.set_desired_state("mongo.service", "loaded")
            await reaches(c, "employees.service", "inactive", "dead")
            await reaches(c, "mongo.service", "inactive", "dead")
        assert {(x.name, x.running) for x in m.containers()} == \
            {("mongo-ins", False), ("node-app", False)}
    print(f"mongo.service start {t_start[0]:.2f}s; stop of both {t_stop[0]:.2f}s")
