"""A throwaway single-member etcd for tests: loopback only, random ports, own data dir.

Tests call ``conftest.require("etcd", "etcd-server")`` first (skip on a
developer machine without etcd, fail under ``CI=true``), then::

    with EtcdServer(tmp_path) as etcd:
        reg = await EtcdRegistry.from_url(etcd.url)
        ...
        etcd.restart()        # same data dir and ports: a "reboot" of the member

The process is stopped by its PID only (SIGTERM, SIGKILL after 5 s), never
by name, so parallel test workers and unrelated etcds are left alone.

``extra_args`` are appended to etcd's command line (e.g.
``["--auth-token-ttl", "1"]``).  ``tls=True`` makes a throwaway CA, a server certificate (SAN 127.0.0.1 and
localhost) and a client certificate with ``openssl``, and starts etcd with
``--client-cert-auth``: a client must present the client certificate.  Then
:attr:`url` is an ``etcds://`` URL carrying ``ca``, ``cert`` and ``key``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Self

#: Faster than etcd's defaults (100 / 1000 ms) so a fresh member elects itself
#: quickly.  The minimum lease TTL becomes ceil(1.5 × 0.5 s) = 1 s.
_HEARTBEAT_MS = 50
_ELECTION_MS = 500


def free_port() -> int:
    """A port that was free a moment ago on 127.0.0.1 (the usual small race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EtcdServer:
    def __init__(self, workdir: Path, *, tls: bool = False, name: str = "flotte-test",
                 extra_args: Sequence[str] = ()) -> None:
        binary = shutil.which("etcd")
        if binary is None:
            raise RuntimeError("etcd not found on PATH: install Debian's etcd-server package")
        self.binary = binary
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.tls = tls
        self.extra_args = list(extra_args)
        self.data_dir = self.workdir / "etcd-data"
        self.log_path = self.workdir / "etcd.log"
        self.client_port = free_port()
        self.peer_port = free_port()
        while self.peer_port == self.client_port:
            self.peer_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._started_once = False
        self.ca_file = self.cert_file = self.key_file = None  # type: Path | None
        self.server_cert = self.server_key = None  # type: Path | None
        if tls:
            self._make_certs()

    # -- addresses -----------------------------------------------------------
    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    @property
    def url(self) -> str:
        """The registry URL for this member (``etcds://…?ca=…&cert=…&key=…`` with TLS)."""
        if not self.tls:
            return f"etcd://{self.endpoint}"
        return (f"etcds://{self.endpoint}?ca={self.ca_file}&cert={self.cert_file}"
                f"&key={self.key_file}")

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # -- lifecycle -------------------------------------------------------------
    def start(self, timeout: float = 10.0) -> None:
        """Start etcd (or start it again on the same data dir) and wait until it serves."""
        if self.running:
            return
        scheme = "https" if self.tls else "http"
        client_url = f"{scheme}://127.0.0.1:{self.client_port}"
        peer_url = f"http://127.0.0.1:{self.peer_port}"
        cmd = [
            self.binary,
            "--name", self.name,
            "--data-dir", str(self.data_dir),
            "--listen-client-urls", client_url,
            "--advertise-client-urls", client_url,
            "--listen-peer-urls", peer_url,
            "--initial-advertise-peer-urls", peer_url,
            "--initial-cluster", f"{self.name}={peer_url}",
            "--initial-cluster-token", f"{self.name}-{self.client_port}",
            "--initial-cluster-state", "new",
            "--heartbeat-interval", str(_HEARTBEAT_MS),
            "--election-timeout", str(_ELECTION_MS),
        ]
        if self.tls:
            cmd += ["--cert-file", str(self.server_cert), "--key-file", str(self.server_key),
                    "--trusted-ca-file", str(self.ca_file), "--client-cert-auth"]
        cmd += self.extra_args
        if self._log is None:
            self._log = open(self.log_path, "ab")  # noqa: SIM115 - kept open across restarts
        self._log.write(f"\n==== start: {' '.join(cmd)}\n".encode())
        self._log.flush()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, cwd=self.workdir)
        self._started_once = True
        self._wait_healthy(timeout)

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM by PID; SIGKILL if it has not exited after ``timeout`` seconds."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def kill(self) -> None:
        """SIGKILL by PID: a crash, no graceful shutdown."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(5)

    def restart(self, down_for: float = 0.0, timeout: float = 10.0) -> None:
        """Stop, stay down ``down_for`` seconds, start again (same data dir and ports)."""
        self.stop()
        if down_for > 0:
            time.sleep(down_for)
        self.start(timeout)

    def close(self) -> None:
        self.stop()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    # -- internals ---------------------------------------------------------------
    def _wait_healthy(self, timeout: float) -> None:
        """Poll ``/health`` until it says true: etcd then has a leader and answers reads.

        A listening port alone is not enough: etcd accepts connections before
        the member has elected itself, and a request then waits or fails.
        """
        scheme = "https" if self.tls else "http"
        url = f"{scheme}://{self.endpoint}/health"
        ctx: ssl.SSLContext | None = None
        if self.tls:
            ctx = ssl.create_default_context(cafile=str(self.ca_file))
            ctx.load_cert_chain(str(self.cert_file), str(self.key_file))
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"etcd exited with status {self.proc.returncode}; log "
                                   f"{self.log_path}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(url, timeout=1, context=ctx) as resp:
                    body = resp.read().decode()
                if '"health":"true"' in body.replace(" ", ""):
                    return
                last = body
            except (OSError, urllib.error.URLError) as exc:
                last = str(exc)
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"etcd did not become healthy within {timeout}s ({last}); log "
                           f"{self.log_path}:\n{self.log_tail()}")

    def _make_certs(self) -> None:
        """CA, server and client certificates (EC P-256, valid 2 days) via ``openssl``."""
        openssl = shutil.which("openssl")
        if openssl is None:
            raise RuntimeError("openssl not found: TLS tests need Debian's openssl package")
        d = self.workdir / "pki"
        d.mkdir(exist_ok=True)

        def run(*args: str) -> None:
            subprocess.run([openssl, *args], cwd=d, check=True, capture_output=True)

        def newkey(name: str) -> None:
            run("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                "-out", f"{name}.key")

        newkey("ca")
        run("req", "-x509", "-new", "-key", "ca.key", "-out", "ca.crt", "-days", "2",
            "-subj", "/CN=flotte test CA")
        for name, cn, ext in (
            ("server", "127.0.0.1", "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                                    "extendedKeyUsage=serverAuth,clientAuth\n"),
            ("client", "flotte-client", "extendedKeyUsage=clientAuth\n"),
        ):
            newkey(name)
            run("req", "-new", "-key", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}")
            (d / f"{name}.ext").write_text("basicConstraints=CA:FALSE\n" + ext)
            run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", f"{name}.crt", "-days", "2",
                "-extfile", f"{name}.ext")
        for f in d.glob("*.key"):
            os.chmod(f, 0o600)
        self.ca_file = d / "ca.crt"
        self.server_cert, self.server_key = d / "server.crt", d / "server.key"
        self.cert_file, self.key_file = d / "client.crt", d / "client.key"
