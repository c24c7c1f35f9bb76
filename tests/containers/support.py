"""Simulated machines that run the seed's container units, with podman standing in for Docker.

A :class:`Machine` is what spec/containers.md §1.9 and §3 describe, made and
unmade by a test:

* its own **network namespace**, with ``eth0`` on a bridge in the root
  namespace (the :class:`Lab`'s hub, ``10.231.X.1/24``) and the address
  ``10.231.X.1n``: ``-p ${COREOS_PUBLIC_IPV4}:8080:80`` binds there, podman's
  CNI bridge and iptables rules live there and vanish with it, and the test
  (in the root namespace) reaches every machine through the hub;
* its own **UTS and mount namespaces** (persistent: bind-mounted namespace
  files, entered with ``nsenter``, so an agent can be SIGKILLed and started
  again on the same "machine"), where the hostname is ``core-0n`` and these
  paths differ from the host's, without touching the host:

  ======================  =====================================================
  ``/usr/bin/docker``      the shim (``scripts/docker-on-podman.sh``) with the
  ``/usr/local/bin/docker`` machine's podman configuration (read-only overlays
                          over the host's directories; ``/usr/local/bin/docker``
                          is the real Docker CLI on this machine kind)
  ``/usr/bin/sudo``        ``exec "$@"`` (``docker-run.sh`` says ``sudo docker``;
                          the units run as root and the image has no sudo)
  ``/usr/bin/etcdctl``     ``flotte kv`` on this machine's flotte API
  ``/opt/bin/docker-run.sh`` the seed's chapter 7 script
  ``/opt/images/*.tar``   the test images (``oci-archive:/opt/images/…``)
  ``/etc/environment``     ``COREOS_PUBLIC_IPV4=10.231.X.1n`` (and PRIVATE)
  ``/var/lib``             a writable overlay: podman's CNI state (IP
                          allocations) and blob cache stay in the machine
  ======================  =====================================================

* its own **podman configuration and store** (``CONTAINERS_CONF``,
  ``CONTAINERS_STORAGE_CONF``, ``CONTAINERS_REGISTRIES_CONF`` exported by the
  ``docker`` wrapper): runc instead of crun, rlimits within this machine's
  hard limits (spec/containers.md §1.2), the file events logger, graph root,
  run root, tmp dir and network configuration under the machine's directory.
  The user's global configuration, /var/lib/containers, /run/libpod and
  /etc/cni are never written.

Everything a machine creates is removed by :meth:`Machine.destroy`: its
containers, processes (by PID, found through the mount namespace), namespaces,
veth, flotte cgroups and directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from etcd_server import EtcdServer
from flotte.api.client import ApiError, Client
from flotte.unit.parser import parse
from support import in_ci, require, require_file

REPO = Path(__file__).resolve().parents[2]
SEED = REPO / "examples" / "seed"
SHIM = REPO / "scripts" / "docker-on-podman.sh"
EXAMPLES = REPO / "examples" / "containers"
DOCKER_RUN_SH = EXAMPLES / "docker-run.sh"
ETCDCTL_STUB = Path(__file__).with_name("etcdctl_stub.py")
SUPERVISOR_SCRIPT = Path(__file__).with_name("supervisor_script.py")

#: the seed's Docker Hub image names → what the units say instead on a machine without a
#: registry: an archive the machine has, which ``docker pull`` and ``docker run`` read
LOCAL_IMAGES = {
    "eboraas/apache": "oci-archive:/opt/images/apache.tar",
}


def etcdctl_command(endpoint: str) -> list[str]:
    """What stands in for ``etcdctl`` on a machine: ``flotte kv`` (same verbs and flags as
    etcdctl v2), or ``etcdctl_stub.py`` on a tree that does not have ``flotte kv`` yet."""
    flotte = Path(sys.executable).with_name("flotte")
    if importlib.util.find_spec("flotte.cli.kv") is not None and flotte.exists():
        return [str(flotte), "--endpoint", endpoint, "kv"]
    return [sys.executable, str(ETCDCTL_STUB), "--endpoint", endpoint]


def need_podman() -> None:
    """Skip without podman & co., but fail under ``CI=true`` (CI must run these tests)."""
    if os.geteuid() != 0:
        msg = "container tests need root (namespaces, cgroups, podman as root)"
        if in_ci():
            pytest.fail(msg)
        pytest.skip(msg)
    require("podman", "podman")
    require("runc", "runc")
    require_file("/bin/busybox", "busybox-static")
    require("nsenter", "util-linux")
    require("ip", "iproute2")
    require("curl", "curl")


def sh(*argv: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                          check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): "
                           f"{proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def _pick_prefix() -> str:
    """``10.231.X`` with no address of this host in it (parallel test workers, other labs)."""
    used = sh("ip", "-4", "-o", "addr", "show").stdout
    for _ in range(50):
        prefix = f"10.231.{random.randint(128, 250)}"
        if f" {prefix}." not in used:
            return prefix
    raise RuntimeError("no free 10.231.X.0/24 for the simulated machines")


class Lab:
    """The hub the simulated machines hang off: a bridge, a directory, namespace files.

    ``root`` is short (under /tmp) on purpose: unix socket paths inside it
    must stay below 108 bytes.
    """

    def __init__(self, images: dict[str, Path]) -> None:
        self.images = images
        self.root = Path(f"/tmp/flotte-ctr-{uuid.uuid4().hex[:8]}")
        self.tag = f"fc{uuid.uuid4().hex[:4]}"
        self.bridge = f"{self.tag}br"
        self.prefix = _pick_prefix()
        self.hub_ip = f"{self.prefix}.1"
        self.ns_dir = self.root / "ns"
        self.machines: list[Machine] = []
        self._mounted = False
        self._bridge_up = False
        self._etcd: EtcdServer | None = None

    def create(self) -> None:
        self.ns_dir.mkdir(parents=True)
        # a mount namespace can only be pinned by a bind mount in a private mount
        # (spec/containers.md §3c)
        sh("mount", "--bind", str(self.ns_dir), str(self.ns_dir))
        self._mounted = True
        sh("mount", "--make-private", str(self.ns_dir))
        sh("ip", "link", "add", self.bridge, "type", "bridge")
        self._bridge_up = True
        sh("ip", "addr", "add", f"{self.hub_ip}/24", "dev", self.bridge)
        sh("ip", "link", "set", self.bridge, "up")

    def machine(self, n: int) -> Machine:
        m = Machine(self, n, self.images)
        self.machines.append(m)
        m.create()
        return m

    def etcd(self) -> str:
        """Start an etcd on the hub (reachable from every machine); returns its registry URL."""
        require("etcd", "etcd-server")
        etcd = EtcdServer(self.root / "etcd")
        urls = f"http://127.0.0.1:{etcd.client_port},http://{self.hub_ip}:{etcd.client_port}"
        etcd.extra_args = ["--listen-client-urls", urls, "--advertise-client-urls", urls]
        self._etcd = etcd
        etcd.start()
        return f"etcd://{self.hub_ip}:{etcd.client_port}"

    def close(self) -> None:
        for m in self.machines:  # agents first: they stop their units through the registry
            for d in m.daemons:
                d.stop()
        for m in reversed(self.machines):
            m.destroy()
        self.machines.clear()
        if self._etcd is not None:
            self._etcd.close()
            self._etcd = None
        if self._bridge_up:
            sh("ip", "link", "del", self.bridge, check=False)
        if self._mounted:
            sh("umount", str(self.ns_dir), check=False)
        shutil.rmtree(self.root, ignore_errors=True)


def _rlimit(kind: int, cap: int) -> int:
    """The hard limit this process has (podman may not ask its containers for more)."""
    hard = resource.getrlimit(kind)[1]
    return cap if hard == resource.RLIM_INFINITY else min(hard, cap)


@dataclass
class Container:
    name: str
    status: str
    id: str

    @property
    def running(self) -> bool:
        return self.status.startswith("Up")


class Machine:
    """One simulated machine (see the module docstring)."""

    def __init__(self, lab: Lab, n: int, images: dict[str, Path]) -> None:
        self.lab = lab
        self.n = n
        self.images = images
        self.ip = f"{lab.prefix}.{10 + n}"
        self.hostname = f"core-{n:02d}"
        self.machine_id = f"{n:02d}{uuid.uuid4().hex[2:]}"
        self.netns = f"{lab.tag}-m{n}"
        self.veth = f"{lab.tag}v{n}"
        self.dir = lab.root / f"m{n}"
        self.state = self.dir / "state"
        self.uts = lab.ns_dir / f"m{n}.uts"
        self.mnt = lab.ns_dir / f"m{n}.mnt"
        self.daemons: list[Daemon] = []
        self._made: list[str] = []

    @property
    def endpoint(self) -> str:
        return f"unix://{self.state / 'flotte.sock'}"

    def endpoint_ready(self) -> bool:
        """The API answers (it says 503 while the daemon is still starting)."""
        proc = subprocess.run(["curl", "-sf", "-m", "2", "--unix-socket",
                               str(self.state / "flotte.sock"), "http://flotte/fleet/v1/machines"],
                              capture_output=True, check=False, timeout=10)
        return proc.returncode == 0

    # -- making and unmaking ----------------------------------------------------------------
    def _write(self, rel: str, text: str, mode: int = 0o644) -> Path:
        path = self.dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(mode)
        return path

    def _files(self) -> None:
        d = self.dir
        nofile = _rlimit(resource.RLIMIT_NOFILE, 1 << 20)
        nproc = _rlimit(resource.RLIMIT_NPROC, 32768)  # conmon's own limit (spec §0)
        self._write("containers.conf", f"""\
[containers]
default_ulimits = ["nofile={nofile}:{nofile}", "nproc={nproc}:{nproc}"]

[engine]
runtime = "runc"
events_logger = "file"
events_logfile_path = "{d}/run/events.log"
tmp_dir = "{d}/run/libpod"

[network]
network_config_dir = "{d}/cni-conf"
""")
        # podman's default network (CNI here; it writes cni.lock next to it)
        (d / "cni-conf").mkdir(parents=True, exist_ok=True)
        for conf in Path("/etc/cni/net.d").glob("*.conflist"):
            shutil.copy2(conf, d / "cni-conf" / conf.name)
        self._write("storage.conf", f"""\
[storage]
driver = "overlay"
graphroot = "{d}/storage"
runroot = "{d}/run/storage"
""")
        # no registry: a short name that is not in the store fails at once
        self._write("registries.conf", 'unqualified-search-registries = []\n')
        self._write("bin/docker", f"""\
#!/bin/sh
# docker on machine {self.hostname}: podman with this machine's configuration
export CONTAINERS_CONF={d}/containers.conf
export CONTAINERS_STORAGE_CONF={d}/storage.conf
export CONTAINERS_REGISTRIES_CONF={d}/registries.conf
exec {SHIM} "$@"
""", 0o755)
        self._write("bin/sudo", "#!/bin/sh\n# root already: run the command\nexec \"$@\"\n",
                    0o755)
        self._write("bin/etcdctl", f"#!/bin/sh\n# etcdctl v2 on this machine's flotte API\n"
                    f"exec {' '.join(etcdctl_command(self.endpoint))} \"$@\"\n", 0o755)
        self._write("etc/environment", f"COREOS_PUBLIC_IPV4={self.ip}\n"
                    f"COREOS_PRIVATE_IPV4={self.ip}\n")
        (d / "opt" / "bin").mkdir(parents=True, exist_ok=True)
        shutil.copy2(DOCKER_RUN_SH, d / "opt" / "bin" / "docker-run.sh")
        images = d / "opt" / "images"
        images.mkdir(parents=True, exist_ok=True)
        for key, archive in self.images.items():
            os.symlink(archive, images / f"{key}.tar")
        # an "image" whose pull never ends (no writer): a registry that does not answer
        os.mkfifo(images / "hang.tar")
        for sub in ("varlib/upper", "varlib/work", "state", "storage", "run"):
            (d / sub).mkdir(parents=True, exist_ok=True)

    def create(self) -> None:
        self._files()
        sh("ip", "netns", "add", self.netns)
        self._made.append("netns")
        sh("ip", "link", "add", self.veth, "type", "veth", "peer", "name", "eth0", "netns",
           self.netns)
        self._made.append("veth")
        sh("ip", "link", "set", self.veth, "master", self.lab.bridge, "up")
        sh("ip", "-n", self.netns, "addr", "add", f"{self.ip}/24", "dev", "eth0")
        sh("ip", "-n", self.netns, "link", "set", "eth0", "up")
        sh("ip", "-n", self.netns, "link", "set", "lo", "up")
        if not os.path.exists("/etc/environment"):
            Path("/etc/environment").touch()  # pam's file; Debian always has it
        self.uts.touch()
        self.mnt.touch()
        d = self.dir
        setup = "; ".join([
            "set -e",
            f"hostname {self.hostname}",
            f"mount -t overlay overlay -o lowerdir={d}/bin:/usr/bin /usr/bin",
            f"mount -t overlay overlay -o lowerdir={d}/bin:/usr/local/bin /usr/local/bin",
            f"mount -t overlay overlay -o lowerdir={d}/opt:/opt /opt",
            f"mount --bind {d}/etc/environment /etc/environment",
            # podman's CNI state and blob cache (/var/lib/cni, /var/lib/containers/cache)
            "mount -t overlay overlay -o "
            f"lowerdir=/var/lib,upperdir={d}/varlib/upper,workdir={d}/varlib/work /var/lib",
        ])
        sh("unshare", f"--uts={self.uts}", f"--mount={self.mnt}", "--propagation", "private",
           "sh", "-c", setup)
        self._made.append("ns")

    def _mnt_ino(self) -> int | None:
        try:
            return os.stat(self.mnt).st_ino
        except OSError:
            return None

    def commands(self) -> list[str]:
        """Command lines of the processes inside this machine."""
        out = []
        for pid in self.processes():
            with contextlib.suppress(OSError):
                out.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
                           .decode(errors="replace").strip())
        return out

    def processes(self) -> list[int]:
        """PIDs of every process inside this machine (its mount namespace)."""
        ino = self._mnt_ino()
        if ino is None or "ns" not in self._made:
            return []
        pids = []
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                if os.stat(f"/proc/{name}/ns/mnt").st_ino == ino:
                    pids.append(int(name))
            except OSError:
                continue
        return pids

    def destroy(self) -> None:
        for daemon in list(self.daemons):
            daemon.stop()
        if "ns" in self._made:
            with contextlib.suppress(Exception):
                self.docker("rm", "--all", "--force", "--time", "0", timeout=60)
            for _ in range(50):
                pids = self.processes()
                if not pids:
                    break
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                time.sleep(0.1)
            for f in (self.uts, self.mnt):
                sh("umount", str(f), check=False)
        if "veth" in self._made:
            sh("ip", "link", "del", self.veth, check=False)
        if "netns" in self._made:
            sh("ip", "netns", "del", self.netns, check=False)
        self._made.clear()
        remove_cgroups(f"flotte-{self.machine_id[:8]}")
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- inside the machine -----------------------------------------------------------------
    def enter(self, argv: list[str]) -> list[str]:
        return ["nsenter", f"--net=/run/netns/{self.netns}", f"--uts={self.uts}",
                f"--mount={self.mnt}", f"--wd={self.dir}", "--", *argv]

    def run(self, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.enter(list(argv)), capture_output=True, text=True,
                              timeout=timeout, check=False)

    def docker(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return self.run("/usr/bin/docker", *args, timeout=timeout)

    def load(self, *keys: str) -> None:
        """``docker load`` the given test images into this machine's store."""
        for key in keys:
            proc = self.docker("load", "-q", "-i", f"/opt/images/{key}.tar")
            assert proc.returncode == 0, proc.stderr

    def containers(self) -> list[Container]:
        """``docker ps -a``: every container of this machine."""
        proc = self.docker("ps", "-a", "--format", "{{.Names}}\t{{.Status}}\t{{.ID}}")
        assert proc.returncode == 0, proc.stderr
        out = []
        for line in proc.stdout.splitlines():
            name, status, cid = line.split("\t")
            out.append(Container(name, status, cid))
        return out

    def container(self, name: str) -> Container | None:
        return next((c for c in self.containers() if c.name == name), None)

    def http(self, port: int, path: str = "/", timeout: float = 3) -> str | None:
        """GET http://<machine ip>:port/path from the root namespace (through the hub)."""
        proc = subprocess.run(["curl", "-sf", "-m", str(timeout), f"http://{self.ip}:{port}{path}"],
                              capture_output=True, text=True, check=False, timeout=timeout + 5)
        return proc.stdout if proc.returncode == 0 else None

    def daemon(self, verb: str = "up", *, registry: str | None = None, ttl: float = 3.0
               ) -> Daemon:
        d = Daemon(self, verb, registry, ttl)
        self.daemons.append(d)
        d.start()
        return d


class Daemon:
    """``flotte up`` (or ``flotte agent``) running inside a machine, as its own process."""

    def __init__(self, machine: Machine, verb: str, registry: str | None, ttl: float) -> None:
        self.m = machine
        self.verb = verb
        self.registry = registry
        self.ttl = ttl
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = machine.dir / f"{verb}.log"
        self.restarts = 0  # start-ups refused because the old lease was still alive

    def start(self, timeout: float = 30) -> None:
        """Start and wait until the API listens.

        Started again within its TTL after a SIGKILL, the daemon finds its own
        machine still registered and exits ("already registered"); as a
        process manager would, this tries again until the old lease expired.
        """
        m = self.m
        argv = [sys.executable, "-c", f"from flotte.cli.daemon import {self.verb}; {self.verb}()",
                "--state-dir", str(m.state), "--machine-id", m.machine_id,
                "--hostname", m.hostname, "--public-ip", m.ip, "--listen", m.endpoint,
                "--ttl", str(self.ttl)]
        if self.registry:
            argv += ["--registry", self.registry]
        deadline = time.monotonic() + timeout
        while True:
            offset = self.log.stat().st_size if self.log.exists() else 0
            # the supervisor's notify socket: in the machine's directory, not /run/flotte
            # (a SIGKILLed daemon cannot remove it)
            env = {**os.environ, "FLOTTE_RUNTIME_DIR": str(m.dir / "run")}
            with open(self.log, "ab") as log:
                self.proc = subprocess.Popen(m.enter(argv), stdin=subprocess.DEVNULL,
                                             stdout=log, stderr=subprocess.STDOUT, env=env)
            while time.monotonic() < deadline:
                text = self.log.read_bytes()[offset:].decode(errors="replace")
                if self.proc.poll() is not None:
                    break
                if f"listening on {m.endpoint}" in text and m.endpoint_ready():
                    return
                time.sleep(0.05)
            if self.proc.poll() is not None and "already registered" in text \
                    and time.monotonic() < deadline:
                self.restarts += 1
                time.sleep(0.5)
                continue
            raise AssertionError(f"flotte {self.verb} on {m.hostname} did not start:\n"
                                 f"{self.tail()}")

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def kill(self) -> None:
        """SIGKILL: the agent dies, the machine (and what runs on it) does not."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()
        # its state dir still has the socket file; a restart replaces it

    def stop(self, timeout: float = 60) -> None:
        """SIGTERM (the agent stops its units first), SIGKILL if it takes too long."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def remove_cgroups(name: str) -> None:
    """rmdir every ``<name>`` cgroup tree this machine's flotte (and podman) made, where empty.

    flotte puts its units under its own cgroup in each hierarchy; podman's
    ``--cgroups=split`` applies the unified path at the *root* of the v1
    hierarchies as well, so both places are looked at.
    """
    own: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            for ctrl in (controllers.split(",") if controllers else ["unified"]):
                own[ctrl.removeprefix("name=")] = path
    for base in Path("/sys/fs/cgroup").iterdir():
        if not (base / "cgroup.procs").exists():
            continue
        mine = own.get(base.name, "/").strip("/")
        for top in {base / name, base / mine / name}:
            if not top.is_dir():
                continue
            for sub, _dirs, _files in sorted(os.walk(top), key=lambda t: -len(t[0])):
                with contextlib.suppress(OSError):
                    os.rmdir(sub)


def remove_libpod_parent() -> None:
    """rmdir podman's ``/libpod_parent`` (and its ``conmon``) in every hierarchy, if empty."""
    for base in Path("/sys/fs/cgroup").iterdir():
        top = base / "libpod_parent"
        if not top.is_dir():
            continue
        for sub in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            with contextlib.suppress(OSError):
                sub.rmdir()
        with contextlib.suppress(OSError):
            top.rmdir()


# -- unit files -------------------------------------------------------------------------


def unit_text(path: Path, replace: dict[str, str] | None = None) -> str:
    """A seed unit file with some strings replaced (each must occur)."""
    text = path.read_text()
    for old, new in (replace or {}).items():
        assert old in text, f"{old!r} not in {path}"
        text = text.replace(old, new)
    return text


def options(text: str) -> list[tuple[str, str, str]]:
    """``(section, name, value)`` triples, as ``fleetctl submit`` sends them."""
    result = parse(text, "go-systemd")
    assert result.fatal is None, result.fatal
    return [(o.section, o.key, o.value) for o in result.options]


# -- waiting ----------------------------------------------------------------------------


async def until(check: Callable[[], object], timeout: float = 30, what: str = "",
                interval: float = 0.1) -> object:
    """Poll ``check`` (sync or async) until it returns something truthy."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or check}")
        await asyncio.sleep(interval)


@contextlib.contextmanager
def timed() -> Iterator[list[float]]:
    """``with timed() as t: …`` then ``t[0]`` is the elapsed seconds."""
    out: list[float] = []
    start = time.monotonic()
    try:
        yield out
    finally:
        out.append(time.monotonic() - start)


# -- the API ----------------------------------------------------------------------------


async def unit_state(c: Client, name: str) -> tuple[str, str, str]:
    """(active state, sub state, result) the machine running ``name`` published."""
    status = await c.status(name)
    if status.state is None:
        return ("", "", "")
    return (status.state.active_state, status.state.sub_state, status.state.result)


async def reaches(c: Client, name: str, active: str, sub: str | None = None,
                  timeout: float = 30, machines: list[Machine] | None = None
                  ) -> tuple[str, str, str]:
    """Wait until ``name`` is ``active``/``sub``; returns its state (with result).

    On a timeout the error shows the unit's journal, read from the machine
    running it (one of ``machines``; the API of another member would need TCP).
    """
    async def check() -> tuple[str, str, str] | None:
        st = await unit_state(c, name)
        return st if st[0] == active and (sub is None or st[1] == sub) else None

    try:
        return await until(check, timeout, f"{name} {active}/{sub}")  # type: ignore[return-value]
    except AssertionError:
        raise AssertionError(f"{name} never reached {active}/{sub}: now "
                             f"{await unit_state(c, name)}; journal:\n"
                             + "\n".join(await journal(c, name, machines=machines))) from None


async def journal(c: Client, name: str, lines: int = 200,
                  machines: list[Machine] | None = None) -> list[str]:
    """The unit's journal, from the machine running it when that is one of ``machines``."""
    status = await c.status(name)
    for m in machines or []:
        if m.machine_id == status.machine_id:
            async with Client(m.endpoint) as mc:
                return [line async for line in mc.journal(name, lines=lines)]
    try:
        return [line async for line in c.journal(name, lines=lines)]
    except ApiError as exc:
        return [f"(no journal: {exc})"]


async def restart(c: Client, name: str, timeout: float = 30) -> None:
    """``fleetctl stop`` then ``start``: waits until the agent has stopped the unit first."""
    await c.set_desired_state(name, "loaded")

    async def stopped() -> bool:
        status = await c.status(name)
        return status.state is not None and not status.state.launched \
            and status.state.active_state in ("inactive", "failed")

    await until(stopped, timeout, f"{name} stopped by its agent")
    await c.set_desired_state(name, "launched")
