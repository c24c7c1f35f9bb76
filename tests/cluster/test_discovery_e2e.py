"""Issue #8, item 2: the seed's chapter 10 end to end on simulated machines, real etcd, real nginx.

Three ``flotte agent`` processes (machines m1–m3 on 127.0.0.2–4, a fourth,
m4 on 127.0.0.5, joins later) around a real etcd.  Everything the guide runs
is a fleet unit here, started with the real ``fleetctl``:

* ``apache@<port>`` — a Python HTTP server bound to its machine's address on
  port ``<port>``, answering ``apache@<port> on <host>``.  As in the seed, the
  address comes from ``EnvironmentFile=`` (``COREOS_PUBLIC_IPV4``; each
  simulated machine has its own file, named by ``%H``), and
  ``Conflicts=apache@*.service`` keeps one Apache per machine;
* ``apache-secretary@<port>`` — ``flotte announce`` writing
  ``/services/apache/<host>`` = ``<ip>:<port>`` while ``GET /`` answers, bound
  to its Apache (``BindsTo=``, ``After=``: on a stop it is stopped *first*,
  and deletes the key on SIGTERM before the server goes away);
* ``nginx`` + ``confd`` — ``flotte confd -watch -backend etcdv3`` renders
  ``examples/discovery``'s nginx.conf template (its ``check_cmd`` runs
  ``nginx -t`` on the stage file, its ``reload_cmd`` is ``nginx -s reload``,
  graceful) for an nginx in the foreground on 127.0.0.1;
* ``lb`` — ``flotte proxy --backends /services/apache/ --registry etcd://…``
  on 127.0.0.1, the same scenario without nginx, side by side.

Two client threads per balancer request ``GET /`` in a loop (a fresh
connection each time, so nothing hides behind a kept-alive connection)
through the whole scenario: every answer is recorded, and a failed request
(refused, reset, non-200, or the balancer's own 502) is recorded as one.

The scenario: three backends discovered and balanced round robin; ``fleetctl
stop`` of one takes it out with no failed request (journals show the
secretary deleted the key before the Apache began to stop); SIGKILL of
another's server process takes it out within the check interval + 1 s (the
only timing asserted, the acceptance bound of issue #8); a fourth machine
joins and a fourth instance, placed there by ``Conflicts=``, gets traffic.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cluster_support import AgentProc

from discovery.confd_support import write_resource
from etcd_server import EtcdServer, free_port
from support import require

pytestmark = [pytest.mark.etcd, pytest.mark.timeout(240),
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root (cgroups)")]

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[2]
EXAMPLE_TEMPLATE = REPO / "examples" / "discovery" / "confd" / "templates" / "nginx.conf.tmpl"

#: The secretaries' health-check interval.  A server that dies without its
#: unit being stopped leaves within this (the next check fails) — sooner when
#: its unit's failure stops the secretary through BindsTo=.
CHECK_INTERVAL = 1.0

APACHE = """\
[Unit]
Description=Apache web server service listening on port %i
Requires=apache-secretary@%i.service
Before=apache-secretary@%i.service

[Service]
# each simulated machine's /etc/environment: COREOS_PUBLIC_IPV4=127.0.0.N
EnvironmentFile={machines}/%H/environment
ExecStartPre=/bin/mkdir -p {www}/%H-%i
ExecStartPre=/bin/sh -c 'echo "apache@%i on %H" > {www}/%H-%i/index.html'
ExecStart={python} -m http.server %i --bind ${{COREOS_PUBLIC_IPV4}} --directory {www}/%H-%i
# not one access log line per request into the journal
StandardError=null

[X-Fleet]
Conflicts=apache@*.service
"""

SECRETARY = """\
[Unit]
Description=Monitoring the Apache web server running on port %i
Requires=apache@%i.service
BindsTo=apache@%i.service
After=apache@%i.service

[Service]
EnvironmentFile={machines}/%H/environment
ExecStart={flotte} announce --registry {registry} --key /services/apache/%H \
--value '{{ip}}:{{port}}' --ttl 10 --interval 3 --check-interval {check} \
--check http://{{ip}}:%i/

[X-Fleet]
MachineOf=apache@%i.service
"""

NGINX = """\
[Unit]
Description=Nginx Service

[Service]
Environment=NGINX_LISTEN={listen}
ExecStartPre={flotte} confd -onetime -sync-only -backend etcdv3 -node {node} -confdir {confdir}
ExecStart={nginx} -p {prefix} -c nginx.conf -e stderr -g 'daemon off;'
ExecReload={nginx} -s reload -p {prefix} -c nginx.conf -e stderr
KillSignal=SIGQUIT
"""

CONFD = """\
[Unit]
Description=Configuration Service
After=nginx.service

[Service]
Environment=NGINX_LISTEN={listen}
ExecStart={flotte} confd -watch -backend etcdv3 -node {node} -confdir {confdir}

[X-Fleet]
MachineOf=nginx.service
"""

LB = """\
[Unit]
Description=flotte proxy over /services/apache/

[Service]
ExecStart={flotte} proxy --listen {listen} --backends /services/apache/ --registry {registry}
"""


# -- clients -------------------------------------------------------------------------------------


@dataclass
class Answer:
    sent: float  # time.time() when the request was sent
    at: float  # time.time() when the answer (or the failure) came
    body: str | None  # the backend's name, None on failure
    error: str = ""


@dataclass
class ClientLoop:
    """Threads requesting ``GET /`` from one balancer until stopped; every answer kept."""

    name: str
    port: int
    threads: int = 2
    answers: list[Answer] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        for i in range(self.threads):
            t = threading.Thread(target=self._run, name=f"{self.name}-{i}", daemon=True)
            t.start()
            self._workers.append(t)

    def _run(self) -> None:
        while not self._stop.is_set():
            answer = get(self.port)
            with self._lock:
                self.answers.append(answer)
            time.sleep(0.003)

    def stop(self) -> None:
        self._stop.set()
        for t in self._workers:
            t.join(10)

    def sent_after(self, t: float) -> list[Answer]:
        with self._lock:
            return [a for a in self.answers if a.sent >= t]

    def failures(self, t: float = 0.0) -> list[Answer]:
        """Requests that failed, among those answered from ``t`` on."""
        with self._lock:
            return [a for a in self.answers if a.at >= t and a.body is None]


def get(port: int) -> Answer:
    """One request on a fresh connection."""
    sent = time.time()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/")
        resp = conn.getresponse()
        body = resp.read().decode().strip()
        if resp.status != 200:
            return Answer(sent, time.time(), None, f"HTTP {resp.status}: {body[:200]}")
        return Answer(sent, time.time(), body)
    except (OSError, http.client.HTTPException) as exc:
        return Answer(sent, time.time(), None, f"{type(exc).__name__}: {exc}")
    finally:
        conn.close()


def wait_for(predicate: Callable[[], object], timeout: float = 30.0, what: str = "",
             step: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(step)


# -- the cluster ----------------------------------------------------------------------------------


@dataclass
class Cluster:
    tmp: Path
    work: Path
    etcd: EtcdServer
    agents: list[AgentProc]
    ports: list[int]  # the four Apache instances' ports
    nginx_port: int
    lb_port: int
    prefix: Path  # nginx's -p

    def fleetctl(self, command: str) -> str:
        """One command line, through a shell, against the first agent; must succeed."""
        env = {**os.environ, "FLEETCTL_ENDPOINT": self.agents[0].endpoint,
               "PATH": f"{BIN}:{os.environ['PATH']}"}
        out = subprocess.run(command, shell=True, cwd=self.work, env=env, capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 0, f"{command}\n{out.stdout}\n{out.stderr}"
        return out.stdout

    def add_agent(self, n: int) -> AgentProc:
        write_environment(self.tmp, n)
        agent = AgentProc(n, self.etcd.url, self.tmp)
        self.agents.append(agent)
        agent.start()
        return agent

    def units(self) -> dict[str, tuple[str, str, str]]:
        """unit → (host, active, sub), from ``fleetctl list-units``."""
        by_id = {a.machine_id[:8]: f"m{a.n}" for a in self.agents}
        out = {}
        for line in self.fleetctl("fleetctl list-units").splitlines()[1:]:
            r = line.split()
            out[r[0]] = (by_id.get(r[1].split("...")[0], r[1]), r[2], r[3])
        return out

    def agent_of(self, host: str) -> AgentProc:
        return next(a for a in self.agents if f"m{a.n}" == host)

    def journal(self, unit: str, host: str) -> list[tuple[float, str]]:
        """(realtime, message) of every entry of ``unit``'s journal on machine ``host``."""
        path = self.agent_of(host).state / "supervisor" / "journal" / unit / "journal.log"
        out: list[tuple[float, str]] = []
        with contextlib.suppress(FileNotFoundError):
            for line in path.read_text(errors="replace").splitlines():
                parts = line.split(" ", 4)
                if len(parts) == 5 and parts[0].isdigit():
                    out.append((int(parts[0]) / 1e6, parts[4]))
        return out

    def diagnostics(self) -> str:
        """The balancers' and secretaries' journals (without nginx's request lines)."""
        out = []
        for unit, host in self.placed().items():
            if unit.startswith(("apache-secretary@", "lb.", "confd.", "nginx.")):
                lines = [f"{t:.3f} {m}" for t, m in self.journal(unit, host)
                         if "] *" not in m and "no live upstreams" not in m]
                out.append(f"-- {unit} on {host}\n" + "\n".join(lines[-40:]))
        return "\n".join(out)

    def placed(self) -> dict[str, str]:
        """unit → host, from the agents' journal directories."""
        out = {}
        for a in self.agents:
            with contextlib.suppress(FileNotFoundError):
                for d in (a.state / "supervisor" / "journal").iterdir():
                    out[d.name] = f"m{a.n}"
        return out

    def applied(self, rendered: Callable[[], bool], proxy_log: str, lb_host: str
                ) -> dict[str, float]:
        """When each balancer began to use a change: nginx once ``rendered()`` holds for
        its nginx.conf and it runs that file; flotte proxy when it logged ``backend
        <proxy_log>`` (the time the agent read the line)."""
        wait_for(lambda: rendered() and self.nginx_current(), 30, "nginx to apply the change")
        t_nginx = time.time()
        line = f"backend {proxy_log}"

        def logged() -> float | None:
            return next((t for t, m in self.journal("lb.service", lb_host)
                         if m.startswith(line)), None)

        wait_for(logged, 30, f"flotte proxy: {line}")
        t_lb = logged()
        assert t_lb is not None
        return {"nginx": t_nginx, "flotte proxy": t_lb}

    @property
    def nginx_conf(self) -> str:
        with contextlib.suppress(FileNotFoundError):
            return (self.prefix / "nginx.conf").read_text()
        return ""

    def nginx_current(self) -> bool:
        """nginx runs the last rendered nginx.conf: one worker, started after the file was
        written.  (Right after a reload the old worker keeps accepting for about 100 ms next
        to the new one, and a reload may still be on its way: neither is "current".)"""
        workers = self.nginx_workers()
        if len(workers) != 1:
            return False
        with contextlib.suppress(OSError, ValueError):
            written = (self.prefix / "nginx.conf").stat().st_mtime
            # the clock ticks of process start times are 10 ms: allow one
            return started_at(workers.pop()) >= written - 0.01
        return False

    def nginx_workers(self) -> set[int]:
        """PIDs of the nginx master's children (its workers)."""
        with contextlib.suppress(OSError, ValueError):
            master = int((self.prefix / "nginx.pid").read_text())
            text = Path(f"/proc/{master}/task/{master}/children").read_text()
            return {int(p) for p in text.split()}
        return set()


def started_at(pid: int) -> float:
    """When process ``pid`` started (``time.time()`` clock, to a clock tick)."""
    ticks = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    boot = time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)
    return boot + ticks / os.sysconf("SC_CLK_TCK")


def serving(loop: ClientLoop, since: float, backends: set[str]) -> None:
    """The requests ``loop`` sent from ``since`` on went to ``backends``, every one of them
    answering (30 requests or more)."""
    wait_for(lambda: len(loop.sent_after(since)) > 30, 30, f"{loop.name}'s requests")
    seen = Counter(a.body for a in loop.sent_after(since))
    assert set(seen) == backends, (loop.name, seen)


def write_environment(tmp: Path, n: int) -> None:
    d = tmp / "machines" / f"m{n}"
    d.mkdir(parents=True, exist_ok=True)
    (d / "environment").write_text(f"COREOS_PUBLIC_IPV4=127.0.0.{n + 1}\n")


def our_processes(*markers: str) -> list[str]:
    """Live processes whose command line mentions one of ``markers``."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            cmd = Path(f"/proc/{name}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = Path(f"/proc/{name}/stat").read_text().rsplit(")", 1)[1].split()[0]
            if any(m in cmd for m in markers) and state != "Z":
                out.append(f"{name}: {cmd}")
    return out


def server_pid(port: int, marker: str) -> int:
    """The PID of ``apache@<port>``'s HTTP server."""
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        with contextlib.suppress(OSError):
            argv = Path(f"/proc/{name}/cmdline").read_bytes().split(b"\0")
            if b"http.server" in argv and str(port).encode() in argv and \
                    any(marker.encode() in a for a in argv):
                return int(name)
    raise AssertionError(f"no HTTP server for port {port}")


def cgroup_dirs(agents: list[AgentProc]) -> list[str]:
    roots = [Path("/sys/fs/cgroup/unified"), Path("/sys/fs/cgroup")]
    own = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            if line.startswith("0::"):
                own = line[3:].lstrip("/")
    return [str(r / own / f"flotte-{a.machine_id[:8]}") for r in roots for a in agents
            if (r / own / f"flotte-{a.machine_id[:8]}").exists()]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    nginx_bin = require("nginx", "nginx-light")
    require("etcd", "etcd-server")
    for n in (1, 2, 3, 4):
        try:
            with socket.socket() as s:
                s.bind((f"127.0.0.{n + 1}", 0))
        except OSError:
            pytest.skip("cannot bind 127.0.0.2-5 (no 127.0.0.0/8 on lo)")
    etcd = EtcdServer(tmp_path / "etcd")
    etcd.start()
    ports: list[int] = []
    while len(ports) < 4:  # free on every address: nothing else listens on them
        p = free_port()
        if p not in ports:
            ports.append(p)
    prefix = tmp_path / "nginx"
    (prefix / "logs").mkdir(parents=True)
    (prefix / "tmp").mkdir()
    confdir = tmp_path / "confd"
    (confdir / "templates").mkdir(parents=True)
    shutil.copy(EXAMPLE_TEMPLATE, confdir / "templates" / "nginx.conf.tmpl")
    write_resource(
        confdir, "nginx", src="nginx.conf.tmpl", dest=str(prefix / "nginx.conf"),
        keys=["/services/apache"], mode="0644",
        check_cmd=f"{nginx_bin} -t -q -p {prefix} -c {{{{.src}}}} -e stderr",
        reload_cmd=f"{nginx_bin} -s reload -p {prefix} -c nginx.conf -e stderr")
    work = tmp_path / "work"
    work.mkdir()
    nginx_port, lb_port = free_port(), free_port()
    common = {"flotte": BIN / "flotte", "registry": etcd.url, "node": f"http://{etcd.endpoint}",
              "confdir": confdir, "machines": tmp_path / "machines", "www": tmp_path / "www",
              "python": sys.executable, "nginx": nginx_bin, "prefix": prefix,
              "check": f"{CHECK_INTERVAL:g}"}
    (work / "apache@.service").write_text(APACHE.format(**common))
    (work / "apache-secretary@.service").write_text(SECRETARY.format(**common))
    (work / "nginx.service").write_text(
        NGINX.format(**common, listen=f"127.0.0.1:{nginx_port}"))
    (work / "confd.service").write_text(
        CONFD.format(**common, listen=f"127.0.0.1:{nginx_port}"))
    (work / "lb.service").write_text(LB.format(**common, listen=f"127.0.0.1:{lb_port}"))
    for n in (1, 2, 3):
        write_environment(tmp_path, n)
    c = Cluster(tmp_path, work, etcd, [], ports, nginx_port, lb_port, prefix)
    try:
        starting = [AgentProc(n, etcd.url, tmp_path) for n in (1, 2, 3)]
        c.agents.extend(starting)
        threads = [threading.Thread(target=a.start) for a in starting]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for a in starting:
            assert a.proc is not None and a.proc.poll() is None, a.log_tail()
        yield c
    finally:
        # all at once: one by one, the last agents would take over the units of the first
        for a in c.agents:
            if a.proc is not None and a.proc.poll() is None:
                a.proc.send_signal(signal.SIGCONT)
                a.proc.terminate()
        for a in c.agents:  # an agent stops its units when it stops
            a.stop()
        etcd.close()
    # every unit's command line names the temp dir or the etcd
    leftovers = our_processes(str(tmp_path), etcd.endpoint)
    for line in leftovers:
        with contextlib.suppress(OSError, ValueError):
            os.kill(int(line.split(":")[0]), signal.SIGKILL)
    assert not leftovers, "processes left behind:\n" + "\n".join(leftovers)
    assert not cgroup_dirs(c.agents), cgroup_dirs(c.agents)


# -- the scenario ---------------------------------------------------------------------------------


def test_three_backends_stop_kill_and_a_fourth_through_nginx_and_flotte_proxy(
        cluster: Cluster) -> None:
    c = cluster
    marker = str(c.tmp)
    p1, p2, p3, p4 = c.ports
    c.fleetctl("fleetctl submit apache@.service apache-secretary@.service nginx.service "
               "confd.service lb.service")
    c.fleetctl("fleetctl start nginx.service confd.service lb.service")
    for p in (p1, p2, p3):
        c.fleetctl(f"fleetctl load apache@{p}.service apache-secretary@{p}.service")
    c.fleetctl(f"fleetctl start apache@{p1}.service apache@{p2}.service apache@{p3}.service")

    units = c.units()
    host = {p: units[f"apache@{p}.service"][0] for p in (p1, p2, p3)}
    assert sorted(host.values()) == ["m1", "m2", "m3"], units  # Conflicts= spread them
    for p in (p1, p2, p3):
        assert units[f"apache-secretary@{p}.service"][0] == host[p]
    name = {p: f"apache@{p} on {host[p]}" for p in (p1, p2, p3)}
    addr = {p: f"127.0.0.{int(host[p][1:]) + 1}:{p}" for p in (p1, p2, p3)}
    balancers = {"nginx": c.nginx_port, "flotte proxy": c.lb_port}
    lb_host = units["lb.service"][0]

    # -- 1. discovered and balanced ------------------------------------------------------------
    wait_for(lambda: all(addr[p] in c.nginx_conf for p in (p1, p2, p3)), 60,
             "the three backends in nginx.conf")
    wait_for(c.nginx_current, 30, "nginx running the last rendered nginx.conf")
    for label, port in balancers.items():
        def all_three(port: int = port) -> bool:
            return {get(port).body for _ in range(6)} == set(name.values())

        wait_for(all_three, 30, f"{label} answering from the three backends")
        # round robin: 30 requests in a row, 10 to each
        counts = Counter(get(port).body for _ in range(30))
        assert counts == dict.fromkeys(name.values(), 10), (label, counts, c.diagnostics())

    loops = {label: ClientLoop(label, port) for label, port in balancers.items()}
    for loop in loops.values():
        loop.start()
    try:
        wait_for(lambda: all(len(loop.answers) > 50 for loop in loops.values()), 30,
                 "the client loops")

        # -- 2. fleetctl stop: out, and not one request fails --------------------------------
        t_stop = time.time()
        c.fleetctl(f"fleetctl stop apache@{p1}.service")
        changed = c.applied(lambda: addr[p1] not in c.nginx_conf, f"removed: http://{addr[p1]}",
                            lb_host)
        stop_to_nginx = changed["nginx"] - t_stop  # fleetctl (a Python CLI starting) included
        for label, loop in loops.items():
            serving(loop, changed[label], {name[p2], name[p3]})
            assert loop.failures(t_stop) == [], (label, loop.failures(t_stop)[:5])
        units = c.units()
        assert units[f"apache@{p1}.service"][1:] == ("inactive", "dead")
        assert units[f"apache-secretary@{p1}.service"][1:] == ("inactive", "dead")
        # ordering: the secretary (After=apache@) stopped first, having deleted the key,
        # before the Apache began to stop
        secretary = c.journal(f"apache-secretary@{p1}.service", host[p1])
        apache = c.journal(f"apache@{p1}.service", host[p1])
        deleted = [t for t, m in secretary if m == f"stopped; deleted /services/apache/{host[p1]}"]
        stopping = [t for t, m in apache if m.startswith("Stopping ") and t >= t_stop]
        assert deleted and stopping, (secretary, apache)
        assert deleted[-1] < stopping[-1]
        key_to_stop = stopping[-1] - deleted[-1]

        # -- 3. SIGKILL of a server process: out within the check interval + 1 s -------------
        pid = server_pid(p2, marker)
        workers = c.nginx_workers()
        t_kill = time.time()
        os.kill(pid, signal.SIGKILL)
        # out of nginx: the rendered upstream lacks it and nginx has reloaded (every worker
        # that served the old config has exited)
        wait_for(lambda: addr[p2] not in c.nginx_conf and workers.isdisjoint(c.nginx_workers()),
                 30, "nginx without the killed backend", step=0.005)
        t_nginx = time.time()
        # out of flotte proxy: the time it logged the removal (journal entries are stamped
        # when the agent reads the line)
        removed = f"backend removed: http://{addr[p2]}"
        wait_for(lambda: any(m.startswith(removed) for _, m in c.journal("lb.service", lb_host)),
                 30, "flotte proxy without the killed backend")
        t_lb = next(t for t, m in c.journal("lb.service", lb_host) if m.startswith(removed))
        key_gone = [t for t, m in c.journal(f"apache-secretary@{p2}.service", host[p2])
                    if "deleted /services/apache/" in m and t >= t_kill]
        kill_to_key = key_gone[0] - t_kill if key_gone else float("nan")
        via = "its failed check" if any(
            m.startswith("unhealthy:") and t >= t_kill
            for t, m in c.journal(f"apache-secretary@{p2}.service", host[p2])) \
            else "BindsTo= (the Apache unit failed)"
        # The acceptance bound of issue #8 (the only timing asserted in the tests): a
        # backend whose server dies must leave the balancers within the secretary's check
        # interval + 1 s (one check to notice, a second for the key's deletion to reach
        # confd, be rendered, checked, and nginx to reload — or the proxy to drop it).
        bound = CHECK_INTERVAL + 1
        assert t_nginx - t_kill <= bound, f"nginx: {t_nginx - t_kill:.2f}s > {bound}s"
        assert t_lb - t_kill <= bound, f"flotte proxy: {t_lb - t_kill:.2f}s > {bound}s"
        kill_failures = {label: len(loop.failures(t_kill)) for label, loop in loops.items()}
        wait_for(lambda: c.units()[f"apache@{p2}.service"][1] == "failed", 30,
                 "the killed Apache to be failed")

        # -- 4. a fourth machine joins; a fourth instance lands there and gets traffic -------
        c.add_agent(4)
        c.fleetctl(f"fleetctl load apache@{p4}.service apache-secretary@{p4}.service")
        t_fourth = time.time()
        c.fleetctl(f"fleetctl start apache@{p4}.service")
        units = c.units()
        assert units[f"apache@{p4}.service"][0] == "m4", units  # the only machine left
        name[p4] = f"apache@{p4} on m4"
        addr[p4] = f"127.0.0.5:{p4}"
        changed = c.applied(lambda: addr[p4] in c.nginx_conf, f"added: http://{addr[p4]}",
                            lb_host)
        for label, loop in loops.items():
            serving(loop, changed[label], {name[p3], name[p4]})
            assert loop.failures(t_fourth) == [], (label, loop.failures(t_fourth)[:5])
    finally:
        for loop in loops.values():
            loop.stop()
    totals = {label: (len(loop.answers), len(loop.failures())) for label, loop in loops.items()}
    rows = [
        ("fleetctl stop -> out of nginx (reloaded; CLI start-up included)", stop_to_nginx),
        ("secretary's key deletion -> the Apache begins to stop", key_to_stop),
        (f"SIGKILL -> key deleted (by {via})", kill_to_key),
        ("SIGKILL -> out of nginx (reloaded)", t_nginx - t_kill),
        ("SIGKILL -> out of flotte proxy", t_lb - t_kill),
        ("bound: check interval + 1 s", bound),
    ]
    print("\n" + "\n".join(f"  {what:<68} {x * 1000:>7.0f} ms" for what, x in rows))
    print(f"  failed requests after the SIGKILL: {kill_failures}; "
          f"requests (answered, failed): {totals}")
