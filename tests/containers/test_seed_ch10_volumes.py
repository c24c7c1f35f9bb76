"""Chapter 10's data-volume container and nginx: ``confdata.service`` + ``nginx.service``.

``confdata.service`` (``Type=oneshot``, ``RemainAfterExit=yes``) creates the
container ``conf-data`` whose anonymous volume ``/etc/nginx`` holds the nginx
image's configuration; ``nginx.service`` runs nginx with
``--volumes-from=conf-data``.  The image is Debian's nginx-light packed into a
local image (``images.py``).  Changes to the seed's files: ``nginx.service``'s
image name (``docker pull nginx`` needs a registry) → the machine's archive;
``confdata.service`` is unchanged (``nginx`` is the local image).
``confd.service`` is left out: its image is the author's confd build.

Unlike apache@.service, ``nginx.service`` keeps ``KillMode=control-group`` and
has ``Restart=on-failure``.  The test checks what that means with podman:
the stop (``docker stop -t 3``, then SIGTERM to what is left of the unit:
the ``docker run`` client and, on this cgroup-v1 hybrid machine, conmon)
leaves no container running, and a container killed behind flotte's back
makes the unit restart with a new container.
"""

from __future__ import annotations

import pytest

from containers.support import (
    SEED,
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

CH10 = SEED / "ch10"
NGINX_IMAGE = {
    "docker pull nginx\n": "docker pull oci-archive:/opt/images/nginx.tar\n",
    "--volumes-from=conf-data nginx\n": "--volumes-from=conf-data oci-archive:/opt/images/nginx.tar\n",
}

APP_CONF = r"""server {
    listen 8088;
    location / { return 200 "written into the conf-data volume\n"; }
}
"""


def site(m: Machine) -> str | None:
    """GET :8088 of the nginx container, from inside the machine (the port is not published)."""
    ip = m.docker("inspect", "--format", "{{.NetworkSettings.IPAddress}}", "nginx.service")
    if ip.returncode != 0 or not ip.stdout.strip():
        return None
    got = m.run("curl", "-sf", "-m", "2", f"http://{ip.stdout.strip()}:8088/")
    return got.stdout if got.returncode == 0 else None


def nginx_id(m: Machine) -> str | None:
    c = m.container("nginx.service")
    return c.id if c is not None and c.running else None


async def test_data_volume_container_and_nginx(lab: Lab) -> None:
    m = lab.machine(1)
    m.load("nginx")
    m.daemon("up")
    async with Client(m.endpoint) as c:
        await c.create_unit("confdata.service", options(unit_text(CH10 / "confdata.service")),
                            "launched")
        await reaches(c, "confdata.service", "active", "exited")
        data = m.container("conf-data")
        assert data is not None and data.status.startswith("Exited (0)")
        assert any(line.endswith("created new data container")
                   for line in await journal(c, "confdata.service"))

        with timed() as t_start:
            await c.create_unit("nginx.service",
                                options(unit_text(CH10 / "nginx.service", NGINX_IMAGE)), "launched")
            await reaches(c, "nginx.service", "active", "running")
            page = await until(lambda: m.http(80), 20, "nginx on port 80")
        assert "Welcome to nginx!" in str(page)

        # what confd would do: write a site into the shared volume, make nginx reload
        write = m.docker("run", "--rm", "--volumes-from", "conf-data", "nginx", "sh", "-c",
                         f"cat > /etc/nginx/sites-enabled/app.conf <<'EOF'\n{APP_CONF}EOF")
        assert write.returncode == 0, write.stderr
        assert m.docker("kill", "-s", "HUP", "nginx.service").returncode == 0
        page = await until(lambda: site(m), 10, "the site from the volume")
        assert page == "written into the conf-data volume\n"

        # a container killed behind flotte's back: docker run exits 137, Restart=on-failure
        first = nginx_id(m)
        assert first is not None
        assert m.docker("kill", "nginx.service").returncode == 0
        with timed() as t_restart:
            await until(lambda: (cid := nginx_id(m)) is not None and cid != first, 20,
                        "nginx restarted in a new container")
            await reaches(c, "nginx.service", "active", "running")
            await until(lambda: site(m), 10, "nginx after the restart")
        assert "Main process exited, code=exited, status=137" in \
            "\n".join(await journal(c, "nginx.service"))

        with timed() as t_stop:
            await c.set_desired_state("nginx.service", "loaded")
            state = await reaches(c, "nginx.service", "inactive")
        assert state[1] == "dead", state
        assert not any(x.running for x in m.containers())
        # the data container stays: it is the volume
        assert {x.name for x in m.containers()} == {"conf-data", "nginx.service"}
    print(f"nginx start {t_start[0]:.2f}s, restart after kill {t_restart[0]:.2f}s, "
          f"stop {t_stop[0]:.2f}s")
