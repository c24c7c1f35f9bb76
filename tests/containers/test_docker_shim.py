"""The ``docker`` of a simulated machine: podman behind the shim, as the seed's units use it.

No flotte here: these check the ground the unit tests stand on (the verbs and
exit codes the units rely on, ``--link``, offline pulls), each on a fresh
machine.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import pytest

from containers.support import Lab, timed

pytestmark = [pytest.mark.containers, pytest.mark.timeout(120)]

T = TypeVar("T")


def test_seed_docker_verbs_run_on_podman(lab: Lab) -> None:
    m = lab.machine(1)
    # docker pull of a Docker Hub name fails at once (no registry), as the
    # seed's `ExecStartPre=docker pull` does offline
    with timed() as t:
        pull = m.docker("pull", "eboraas/apache")
    assert pull.returncode == 125 and t[0] < 5, pull.stderr
    # … and of the archive the units name instead, it works
    pull = m.docker("pull", "oci-archive:/opt/images/apache.tar")
    assert pull.returncode == 0, pull.stderr

    # run -d with the seed's -p ${COREOS_PUBLIC_IPV4}:PORT:80
    run = m.docker("run", "-d", "--name", "apache.8080", "-p", f"{m.ip}:8080:80",
                   "localhost/apache")
    assert run.returncode == 0, run.stderr
    assert _until(lambda: m.http(8080)) == "It works! (flotte's busybox stand-in for eboraas/apache)\n"
    assert [(c.name, c.running) for c in m.containers()] == [("apache.8080", True)]
    inspect = m.docker("inspect", "--format", "{{.State.Running}} {{.Name}}", "apache.8080")
    assert inspect.stdout.split() == ["true", "apache.8080"]
    # the name is taken while the container exists
    again = m.docker("run", "-d", "--name", "apache.8080", "localhost/apache")
    assert again.returncode == 125 and "already in use" in again.stderr

    with timed() as t:
        assert m.docker("stop", "apache.8080").returncode == 0
    assert t[0] < 5  # the image's init exits on SIGTERM: no 10 s wait for SIGKILL
    stopped = m.container("apache.8080")
    assert stopped is not None and stopped.status.startswith("Exited (0)")
    assert m.docker("start", "apache.8080").returncode == 0
    assert (c := m.container("apache.8080")) is not None and c.running
    assert m.docker("kill", "apache.8080").returncode == 0
    assert m.docker("kill", "apache.8080").returncode == 125  # not running any more
    assert m.docker("rm", "apache.8080").returncode == 0
    assert m.docker("rm", "apache.8080").returncode == 1  # no such container
    assert m.docker("stop", "apache.8080").returncode == 125
    assert m.containers() == []


def test_link_gives_the_docker_link_variables(lab: Lab) -> None:
    m = lab.machine(1)
    m.load("mongo", "node-app")
    # linking to a container that does not run fails, as with Docker
    early = m.docker("run", "--rm", "--link", "mongo-ins:mongo", "node-app", "true")
    assert early.returncode == 125
    assert m.docker("run", "-d", "--name", "mongo-ins", "mongo").returncode == 0
    env = m.docker("run", "--rm", "--link", "mongo-ins:mongo", "node-app", "sh", "-c",
                   "echo $MONGO_PORT_27017_TCP_ADDR $MONGO_PORT_27017_TCP_PORT $MONGO_PORT; "
                   "grep -w mongo /etc/hosts")
    assert env.returncode == 0, env.stderr
    variables, hosts = env.stdout.splitlines()[:2]
    addr, port, url = variables.split()
    assert port == "27017" and url == f"tcp://{addr}:27017"
    assert hosts.split()[0] == addr
    # and the app reaches the database through it
    app = m.docker("run", "-d", "-p", "3000:3000", "--link", "mongo-ins:mongo", "--name",
                   "node-app", "node-app", "node", "/NodeJS-Sample-App/EmployeeDB/app.js")
    assert app.returncode == 0, app.stderr
    page = _until(lambda: m.http(3000, "/cgi-bin/employees"))
    assert "Grace Hopper" in str(page)


def _until(check: Callable[[], T | None], timeout: float = 10) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {check}")

