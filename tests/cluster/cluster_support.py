"""Agents as real processes around a real etcd, for the cluster tests."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from etcd_server import free_port
from flotte.supervisor.cgroups import CgroupManager

TTL = 3


class AgentProc:
    def __init__(self, n: int, registry: str, tmp: Path) -> None:
        self.n = n
        self.ip = f"127.0.0.{n + 1}"
        self.machine_id = f"{n:02d}" + uuid.uuid4().hex[2:]
        self.state = tmp / f"agent{n}"
        self.port = free_port()
        self.registry = registry
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"unix://{self.state / 'flotte.sock'}"

    def start(self) -> None:
        self.state.mkdir(parents=True, exist_ok=True)
        log = open(self.state / "agent.log", "ab")  # noqa: SIM115 - the child owns it
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "flotte", "agent",
             "--registry", self.registry, "--state-dir", str(self.state),
             "--machine-id", self.machine_id, "--hostname", f"m{self.n}",
             "--public-ip", self.ip, "--listen", self.endpoint,
             "--listen", f"http://{self.ip}:{self.port}", "--ttl", str(TTL)],
            stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL)
        log.close()
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline().decode()
            if line.startswith("listening on unix://"):
                return
            if not line and self.proc.poll() is not None:
                break
        raise AssertionError(f"agent {self.n} did not start:\n{self.log_tail()}")

    def log_tail(self) -> str:
        try:
            return "\n".join((self.state / "agent.log").read_text().splitlines()[-30:])
        except OSError:
            return ""

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        # an agent killed by a test leaves its unit cgroups (its processes were killed)
        mgr = CgroupManager.detect(f"flotte-{self.machine_id[:8]}")
        for name in mgr.cleanup():
            for pid in _procs(mgr, name):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
        mgr.cleanup()
        mgr.remove_root()


def sleeps(marker: str) -> dict[int, int]:
    """pid → parent pid of every ``sleep <marker>`` process."""
    out: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{name}/cmdline").read_bytes().split(b"\0")
            stat = Path(f"/proc/{name}/stat").read_text()
        except OSError:
            continue
        if len(cmd) >= 2 and cmd[0].endswith(b"sleep") and cmd[1].decode() == marker:
            fields = stat.rsplit(")", 1)[1].split()
            if fields[0] != "Z":
                out[int(name)] = int(fields[1])
    return out


def _procs(mgr: CgroupManager, escaped: str) -> list[int]:
    out: list[int] = []
    for base in (mgr.path, *mgr.v1.values()):
        if base is None:
            continue
        for root, _dirs, files in os.walk(os.path.join(base, escaped)):
            if "cgroup.procs" in files:
                with contextlib.suppress(OSError):
                    text = Path(root, "cgroup.procs").read_text()
                    out += [int(x) for x in text.split()]
    return out
