"""The seed's chapter 9 fleetctl session, unchanged, against three real agents (issue #7).

Three ``flotte agent`` processes (machines m1–m3) around a real etcd; the
commands are the guide's, run with the real ``fleetctl``.  The units are the
guide's with only what this machine forces replaced: the Apache container is a
Python HTTP server on port %i, and the secretary's curl + etcdctl loop is
``flotte announce`` writing the same ``/services/apache/<host>`` key to etcd.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cluster_support import AgentProc

from etcd_server import EtcdServer
from support import require

pytestmark = [pytest.mark.etcd, pytest.mark.timeout(300),
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root (cgroups)")]

BIN = Path(sys.executable).parent

APACHE = """\
[Unit]
Description=Apache web server service listening on port %i
Requires=apache-secretary@%i.service
Before=apache-secretary@%i.service

[Service]
ExecStartPre=/bin/mkdir -p /tmp/flotte-seed-%H-%i
ExecStartPre=/bin/sh -c 'echo "apache@%i on %H" > /tmp/flotte-seed-%H-%i/index.html'
ExecStart=/usr/bin/python3 -m http.server %i --bind 127.0.0.1 --directory /tmp/flotte-seed-%H-%i

[X-Fleet]
Conflicts=apache@*.service
"""

SECRETARY = """\
[Unit]
Description=Monitoring the Apache web server running on port %i
BindsTo=apache@%i.service
After=apache@%i.service

[Service]
ExecStart={flotte} announce --registry {registry} --key /services/apache/%H \
--value '{{"host": "%H", "port": "%i"}}' --ttl 30 --interval 10 --check-interval 1 \
--check http://127.0.0.1:%i/

[X-Fleet]
MachineOf=apache@%i.service
"""


@pytest.fixture
def session(tmp_path: Path) -> Iterator[tuple[Path, list[AgentProc], str]]:
    require("etcd", "etcd-server")
    etcd = EtcdServer(tmp_path / "etcd")
    etcd.start()
    agents = [AgentProc(n, etcd.url, tmp_path) for n in (1, 2, 3)]
    work = tmp_path / "work"
    (work / "instances").mkdir(parents=True)
    (work / "apache@.service").write_text(APACHE)
    (work / "apache-secretary@.service").write_text(
        SECRETARY.format(flotte=BIN / "flotte", registry=etcd.url))
    for port in (8082, 8083, 8084):  # the guide's symlinked instances
        for t in ("apache", "apache-secretary"):
            (work / "instances" / f"{t}@{port}.service").symlink_to(f"../{t}@.service")
    try:
        for a in agents:
            a.start()
        yield work, agents, etcd.url
    finally:
        for a in agents:
            a.stop()
        etcd.close()


def fleetctl(work: Path, endpoint: str, command: str) -> subprocess.CompletedProcess[str]:
    """One line of the guide, through a shell (globs and pipes as typed)."""
    env = {**os.environ, "FLEETCTL_ENDPOINT": endpoint, "PATH": f"{BIN}:{os.environ['PATH']}"}
    return subprocess.run(command, shell=True, cwd=work, env=env, capture_output=True,
                          text=True, timeout=60)


def test_chapter_9_session(session: tuple[Path, list[AgentProc], str]) -> None:
    work, agents, registry = session
    ep = agents[0].endpoint
    names = {a.machine_id[:8]: a.n for a in agents}

    def ok(command: str) -> str:
        out = fleetctl(work, ep, command)
        assert out.returncode == 0, f"{command}\n{out.stdout}\n{out.stderr}"
        return out.stdout

    ok("fleetctl submit apache@.service apache-secretary@.service")
    ok("fleetctl load apache@8080.service apache-secretary@8080.service")
    assert "launched on" in ok("fleetctl start apache@8080.service")
    ok("fleetctl load apache@8081.service apache-secretary@8081.service")
    ok("fleetctl start apache@8081.service")
    rows = [line.split() for line in
            ok("fleetctl list-units | grep apache").splitlines()]
    assert sorted(r[0] for r in rows) == ["apache-secretary@8080.service",
                                          "apache-secretary@8081.service",
                                          "apache@8080.service", "apache@8081.service"]
    assert all(r[2:] == ["active", "running"] for r in rows), rows
    where = {r[0]: r[1].split("...")[0] for r in rows}
    # Conflicts= put the two Apaches on different machines; MachineOf= their secretaries
    assert where["apache@8080.service"] != where["apache@8081.service"]
    assert where["apache-secretary@8080.service"] == where["apache@8080.service"]
    assert where["apache-secretary@8081.service"] == where["apache@8081.service"]

    # fleetctl start instances/*: one more Apache fits (the third machine); the guide's
    # fourth and fifth cannot, and flotte says why instead of hanging as fleet did
    out = fleetctl(work, ep, "fleetctl start instances/*")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "Unit apache@8082.service launched on" in out.stdout
    assert "Unit apache-secretary@8082.service launched on" in out.stdout
    both = out.stdout + out.stderr
    assert "apache@8083.service cannot be placed" in both
    assert "conflicts with apache@80" in both

    want = sorted(f"/services/apache/m{n}" for n in names.values())
    deadline = time.monotonic() + 20  # each secretary announces after its first check
    while (keys := sorted(ok(f"flotte kv --registry {registry} ls /services/apache/").split())
           ) != want and time.monotonic() < deadline:
        time.sleep(0.2)
    assert keys == want

    # the guide's failure drill: stop one Apache; its secretary stops with it and the
    # key goes (at once: flotte announce deletes it on SIGTERM, not after the 30 s TTL)
    ok("fleetctl stop apache@8080.service")
    rows = [line.split() for line in ok("fleetctl list-units").splitlines()[1:]]
    state = {r[0]: r[2:] for r in rows}
    assert state["apache@8080.service"] == ["inactive", "dead"]
    assert state["apache-secretary@8080.service"] == ["inactive", "dead"]
    assert state["apache@8081.service"] == ["active", "running"]
    host = f"m{names[where['apache@8080.service']]}"
    keys = ok(f"flotte kv --registry {registry} ls /services/apache/").split()
    assert f"/services/apache/{host}" not in keys and len(keys) == 2
    ok("fleetctl destroy apache@8080.service apache-secretary@8080.service")
    assert "apache@8080.service" not in ok("fleetctl list-unit-files")


def test_status_and_journal_of_a_unit_on_another_machine(
        session: tuple[Path, list[AgentProc], str]) -> None:
    """Asked on m1 about a unit that runs elsewhere: no SSH, the API fetches it."""
    work, agents, _ = session
    ep = agents[0].endpoint
    started = fleetctl(work, ep, "fleetctl start apache@8080.service apache@8081.service")
    # the guide starts the secretaries with them: without, flotte says so at once
    assert started.returncode == 1
    assert "apache-secretary@8080.service not found" in started.stderr, started.stderr
    started = fleetctl(work, ep, "fleetctl start apache@8080.service apache@8081.service "
                                 "apache-secretary@8080.service apache-secretary@8081.service")
    assert started.returncode == 0, started.stdout + started.stderr
    rows = [line.split() for line in fleetctl(work, ep, "fleetctl list-units --full "
                                              "--no-legend").stdout.splitlines()]
    remote, remote_machine = next((r[0], r[1]) for r in rows if r[0].startswith("apache@")
                                  and not r[1].startswith(agents[0].machine_id))
    time.sleep(1.5)  # agents report tasks and memory once a service has settled
    status = fleetctl(work, ep, f"fleetctl status {remote}")
    assert status.returncode == 0, status.stderr
    for needle in ("Active: active (running)", "Main PID:", "Tasks: 1",
                   f"Machine: {remote_machine.split('/')[0][:8]}..."):
        assert needle in status.stdout, status.stdout
    journal = fleetctl(work, ep, f"fleetctl journal --lines 20 {remote}")
    assert journal.returncode == 0 and "Started Apache web server service listening on port" \
        in journal.stdout, journal.stdout + journal.stderr
    env = {**os.environ, "FLEETCTL_ENDPOINT": ep}
    follow = subprocess.Popen([str(BIN / "fleetctl"), "journal", "-f", "-n", "1", remote],
                              stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert follow.stdout is not None
        follow.stdout.readline()  # the last existing line
        port = remote.split("@")[1].split(".")[0]
        subprocess.run(["curl", "-s", f"http://127.0.0.1:{port}/"], capture_output=True,
                       timeout=10, check=False)
        line = follow.stdout.readline()  # the server logs the request: followed live
        assert '"GET / HTTP/1.1" 200' in line, line
    finally:
        follow.kill()
        follow.wait()
