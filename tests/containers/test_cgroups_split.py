"""``docker run --cgroups=split``: the container inside the unit's cgroup (podman only).

``examples/containers/web-split@.service`` keeps ``KillMode=control-group``
(the default) and runs ``podman run --cgroups=split``, which creates conmon
and the container in sub-cgroups of the caller's cgroup: the unit's.  So the
container's processes are the unit's processes for flotte, a container killed
behind flotte's back is a main process exit (``Restart=on-failure`` starts a
new one), and a stop leaves no container and no cgroup behind.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from containers.support import (
    EXAMPLES,
    Lab,
    Machine,
    journal,
    options,
    reaches,
    timed,
    unit_text,
    until,
)
from flotte.api.client import Client

pytestmark = [pytest.mark.containers, pytest.mark.timeout(120)]

UNIT = "web-split@8090.service"


def container(m: Machine) -> tuple[str, str] | None:
    """(id, unified cgroup path of the container's PID 1) of the running ``web.8090``."""
    got = m.docker("inspect", "--format", "{{.State.Running}} {{.State.Pid}} {{.Id}}", "web.8090")
    if got.returncode != 0 or not got.stdout.startswith("true"):
        return None
    _, pid, cid = got.stdout.split()
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        if line.startswith("0::"):
            return cid, line[3:]
    return None


async def test_container_in_the_units_cgroup(lab: Lab) -> None:
    m = lab.machine(1)
    m.daemon("up")
    text = unit_text(EXAMPLES / "web-split@.service",
                     {"docker.io/library/httpd:2.4": "oci-archive:/opt/images/apache.tar"})
    async with Client(m.endpoint) as c:
        with timed() as t_start:
            await c.create_unit(UNIT, options(text), "launched")
            await reaches(c, UNIT, "active", "running")
            await until(lambda: m.http(8090), 20, "web.8090")
        found = container(m)
        assert found is not None
        first, cgroup = found
        assert f"/flotte-{m.machine_id[:8]}/{UNIT}/libpod-payload-" in cgroup

        # the container dies behind flotte's back: that is the unit's main process exiting
        assert m.docker("kill", "web.8090").returncode == 0
        with timed() as t_restart:
            await until(lambda: (x := container(m)) is not None and x[0] != first, 20,
                        "a new container")
            await until(lambda: m.http(8090), 10, "web.8090 again")
        assert "Scheduled restart job" in "\n".join(await journal(c, UNIT))

        with timed() as t_stop:
            await c.set_desired_state(UNIT, "loaded")
            await reaches(c, UNIT, "inactive", "dead")
        assert m.containers() == []
        unit_cgroup = Path(f"/sys/fs/cgroup/unified/flotte-{m.machine_id[:8]}/{UNIT}")
        await until(lambda: not unit_cgroup.exists()
                    or not (unit_cgroup / "cgroup.events").read_text().count("populated 1"),
                    10, "the unit's cgroup empty")
    print(f"--cgroups=split: start {t_start[0]:.2f}s, restart after docker kill "
          f"{t_restart[0]:.2f}s, stop {t_stop[0]:.2f}s")
