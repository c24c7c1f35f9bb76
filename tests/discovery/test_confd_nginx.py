"""End to end: ``flotte confd -watch`` keeps a real nginx's upstreams in step with the keys.

The seed's chapter 10 on one machine: three small HTTP servers on 127.0.0.2-4
stand in for the Apache containers, their keys ``/services/apache/<ip>`` live
in a flotte API (in-process, memory registry), and ``flotte confd`` (a child
process, API backend) renders ``examples/discovery``'s nginx template into a
whole ``nginx.conf``, checks it with ``nginx -t`` and reloads nginx.  nginx
(Debian's nginx-light) runs as a non-daemon with its own prefix in a temp dir
(``spec/containers.md`` §4) and is stopped by its PID.

Timings are printed, never asserted (``bench/confd.py`` measures).
"""

from __future__ import annotations

import contextlib
import http.client
import http.server
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from discovery.confd_support import (
    ApiThread,
    ConfdProcess,
    read,
    run_confd,
    stage_files,
    wait_for,
    write_resource,
)
from etcd_server import free_port
from support import require

EXAMPLE_TEMPLATE = (Path(__file__).parents[2] / "examples" / "discovery" / "confd" / "templates"
                    / "nginx.conf.tmpl")
HOSTS = ("127.0.0.2", "127.0.0.3", "127.0.0.4")


class Backend:
    """A tiny HTTP server answering its own name, the stand-in for ``apache@%i``."""

    def __init__(self, host: str) -> None:
        name = host.encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Length", str(len(name)))
                self.end_headers()
                self.wfile.write(name)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.host = host
        self.server = http.server.ThreadingHTTPServer((host, 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Nginx:
    """nginx -p PREFIX -c nginx.conf -g 'daemon off;', stopped by PID."""

    def __init__(self, binary: str, prefix: Path, port: int) -> None:
        self.binary = binary
        self.prefix = prefix
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = open(self.prefix / "nginx.log", "ab")  # noqa: SIM115 - nginx keeps it
        self.proc = subprocess.Popen(
            [self.binary, "-p", str(self.prefix), "-c", "nginx.conf", "-e", "stderr", "-g",
             "daemon off;"], stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        log.close()

    @property
    def workers(self) -> set[int]:
        assert self.proc is not None
        path = f"/proc/{self.proc.pid}/task/{self.proc.pid}/children"
        with contextlib.suppress(OSError):
            return {int(p) for p in Path(path).read_text().split()}
        return set()

    def get(self) -> str | None:
        """One request on a fresh connection: the backend's name, or None."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            conn.request("GET", "/")
            resp = conn.getresponse()
            body = resp.read().decode()
            return body if resp.status == 200 else None
        except OSError:
            return None
        finally:
            conn.close()

    def stop(self) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGQUIT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def answers(nginx: Nginx, n: int) -> list[str | None]:
    return [nginx.get() for _ in range(n)]


def serving(nginx: Nginx, want: set[str], consecutive: int = 12) -> bool:
    """``consecutive`` fresh requests in a row answered by ``want`` only, every one seen."""
    got = answers(nginx, consecutive)
    return all(a in want for a in got) and set(got) == want


@pytest.fixture
def backends() -> Iterator[list[Backend]]:
    for host in HOSTS:
        try:
            with socket.socket() as s:
                s.bind((host, 0))
        except OSError:
            pytest.skip(f"cannot bind {host} (no 127.0.0.0/8 on lo)")
    servers = [Backend(h) for h in HOSTS]
    try:
        yield servers
    finally:
        for s in servers:
            s.close()


def test_nginx_follows_the_keys(tmp_path: Path, backends: list[Backend]) -> None:
    nginx_bin = require("nginx", "nginx-light")
    prefix = tmp_path / "ngx"
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
    port = free_port()
    env = {"NGINX_LISTEN": f"127.0.0.1:{port}"}
    nginx = Nginx(nginx_bin, prefix, port)
    names = {b.host for b in backends}
    with ApiThread() as api, contextlib.ExitStack() as stack:
        stack.callback(nginx.stop)
        for b in backends:
            api.put(f"/services/apache/{b.host}", b.address)
        common = ["--endpoint", api.url, "-confdir", str(confdir)]

        # nginx needs a config before it starts: render once, without the reload
        done = run_confd([*common, "-onetime", "-sync-only"], env=env)
        assert done.returncode == 0, done.stderr
        nginx.start()
        wait_for(lambda: serving(nginx, names), what="nginx proxying to all three backends")

        confd = stack.enter_context(ConfdProcess(
            [*common, "-watch", "--poll", "0.05", "-log-level", "debug"],
            tmp_path / "confd.log", env=env))
        wait_for(lambda: "processed 1 resource" in confd.log, what="confd's first pass")
        assert "has been updated" not in confd.log  # in sync: no rewrite, no reload

        # a key removal takes the backend out
        old_workers = nginx.workers
        t0 = time.monotonic()
        api.delete(f"/services/apache/{HOSTS[2]}")
        wait_for(lambda: HOSTS[2] not in read(prefix / "nginx.conf"), what="render")
        t_render = time.monotonic() - t0
        wait_for(lambda: not (nginx.workers & old_workers), what="old nginx workers gone")
        t_workers = time.monotonic() - t0
        wait_for(lambda: serving(nginx, set(HOSTS[:2])), what="only two backends answer")
        t_serving = time.monotonic() - t0
        print(f"\nkey delete -> nginx.conf rewritten: {t_render * 1000:.0f} ms; old workers "
              f"gone: {t_workers * 1000:.0f} ms; 12 answers in a row from the new set: "
              f"{t_serving * 1000:.0f} ms")

        # a config nginx rejects is never installed: the old one keeps serving
        good_conf = read(prefix / "nginx.conf")
        template = confdir / "templates" / "nginx.conf.tmpl"
        template.write_text(read(template).replace("access_log off;",
                                                   "access_log off;\n    no_such_directive;"))
        api.put(f"/services/apache/{HOSTS[2]}", backends[2].address)
        wait_for(lambda: "Config check failed" in confd.log, what="check_cmd failure")
        assert 'unknown directive "no_such_directive"' in confd.log
        assert read(prefix / "nginx.conf") == good_conf
        assert stage_files(prefix) == []
        assert serving(nginx, set(HOSTS[:2]))

        # a template error names the resource file and the template line
        template.write_text("worker_processes 1;\n{{ nosuchfunc }}\n")
        api.put("/services/apache/127.0.0.9", "127.0.0.9:9")
        wait_for(lambda: ('ERROR conf.d/nginx.toml: templates/nginx.conf.tmpl:2:4: function '
                          '"nosuchfunc" not defined') in confd.log,
                 what="template error in the log")
        assert read(prefix / "nginx.conf") == good_conf

        # fixed: the next change renders, checks and reloads
        shutil.copy(EXAMPLE_TEMPLATE, template)
        api.delete("/services/apache/127.0.0.9")
        wait_for(lambda: HOSTS[2] in read(prefix / "nginx.conf"), what="fixed template")
        wait_for(lambda: serving(nginx, names), what="all three backends again")
        assert confd.stop() == 0
    assert nginx.proc is not None and nginx.proc.returncode == 0
    assert os.path.exists(prefix / "nginx.conf")
