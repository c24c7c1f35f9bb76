"""Service discovery end to end (issue #8): stop-to-upstream latency, 1,000-backend render,
``flotte proxy`` next to nginx.

Real processes around a real etcd, as the seed's chapter 10 runs them (no
agents: the agent's share of a ``fleetctl stop`` is ``bench/cluster.py``'s):
three HTTP backends (one aiohttp process, three ports on 127.0.0.1), one
``flotte announce`` per backend writing ``/services/apache/b<N>`` =
``127.0.0.1:<port>``, ``flotte confd -watch -backend etcdv3`` rendering
``examples/discovery``'s nginx.conf (``check_cmd`` = ``nginx -t`` on the stage
file, ``reload_cmd`` = ``nginx -s reload``) for a foreground nginx, and
``flotte proxy --backends /services/apache/ --registry etcd://…``.

* **stop → upstream changed**, ``TRIALS`` times (a backend in turn): the
  backend's secretary gets SIGTERM — what stopping ``apache@N`` does first,
  since the secretary is ordered ``After=`` it — and the clock runs until
  (a) the announcer has deleted the key (its log line), (b) nginx runs the
  new upstream list: nginx.conf rewritten, reloaded, and every worker of the
  old configuration exited, (c) ``flotte proxy`` has logged the removal.
  The secretary is then started again and everything settles before the
  next trial.  Target: p99 ≤ 1 s.
* **render, 1,000 backends**: the template alone, and whole confd passes
  on etcd (read 1,000 keys + render + compare; and, when the keys changed,
  + stage + ``nginx -t`` + rename + reload_cmd).  Target: a changed pass
  fits the same 1 s budget.
* **requests/s** on the same three backends, ``DURATION`` s each (in
  ``ROUNDS`` turns, the rows alternating, so a burst of load from elsewhere
  hits them all alike), an aiohttp client with ``CONNECTIONS`` concurrent
  keep-alive connections: straight to
  the backends (the ceiling of this client and these backends), nginx with
  the confd-rendered example config (a new upstream connection per request,
  as the seed's template), nginx with upstream keep-alive (a hand-tuned
  static config: the fair peer), and ``flotte proxy`` (keep-alive pool).  On
  a shared 2-core machine everything (client included) competes for CPU, so
  the rows compare, they do not measure a ceiling.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from flotte.discovery.confd.resource import load_resource
from flotte.discovery.template import compile
from flotte.registry import Registry, connect

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from confd import measure_passes  # bench/ is on sys.path (bench/run.py)
from etcd_server import EtcdServer, free_port  # the tests' throwaway etcd

_ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = _ROOT / "examples" / "discovery" / "confd" / "templates" / "nginx.conf.tmpl"
BIN = Path(sys.executable).parent
TRIALS = int(os.environ.get("BENCH_DISCOVERY_TRIALS", "50"))
N_BACKENDS = 3
N_RENDER = 1000
RENDER_ROUNDS = 20
DURATION = float(os.environ.get("BENCH_DISCOVERY_DURATION", "6"))
ROUNDS = 3
CONNECTIONS = 16
TARGET = 1.0

#: The backends: one process, one aiohttp server per port, answering its port.
BACKENDS = """
import asyncio, sys
from aiohttp import web

async def main():
    for port in sys.argv[1:]:
        body = f"backend {port}".encode()
        async def hello(request, body=body):
            return web.Response(body=body)
        app = web.Application()
        app.router.add_get("/", hello)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", int(port)).start()
    print("ready", flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""

#: nginx tuned for throughput: the same three backends, upstream keep-alive.
NGINX_KEEPALIVE = """\
worker_processes 1;
pid nginx.pid;
error_log stderr notice;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path tmp/body;
    proxy_temp_path tmp/proxy;
    fastcgi_temp_path tmp/fcgi;
    uwsgi_temp_path tmp/uwsgi;
    scgi_temp_path tmp/scgi;
    upstream apache_pool {{
{servers}
        keepalive 32;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://apache_pool;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


def _pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def _ms(x: float) -> str:
    return f"{x * 1000:,.1f} ms"


def _wait(predicate: Callable[[], object], timeout: float, what: str,
          step: float = 0.001) -> float:
    """Poll until true; the ``time.time()`` it became true."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(step)
    return time.time()


# -- processes ------------------------------------------------------------------------------


@dataclass
class Proc:
    """A child process whose output lines are kept with the time each was read."""

    argv: list[str]
    env: dict[str, str] | None = None
    lines: list[tuple[float, str]] = field(default_factory=list)
    proc: subprocess.Popen[str] | None = None

    def start(self) -> Proc:
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     text=True, env={**os.environ, "PYTHONUNBUFFERED": "1",
                                                     **(self.env or {})})
        threading.Thread(target=self._read, args=(self.proc,), daemon=True).start()
        return self

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.lines.append((time.time(), line.rstrip("\n")))

    def first(self, text: str, after: float) -> float | None:
        return next((t for t, line in list(self.lines) if t >= after and text in line), None)

    def send(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


class Nginx:
    """nginx in the foreground with its own prefix, stopped by PID (SIGQUIT)."""

    def __init__(self, binary: str, prefix: Path) -> None:
        self.binary = binary
        self.prefix = prefix
        for d in ("logs", "tmp"):
            (prefix / d).mkdir(parents=True, exist_ok=True)
        self.proc = Proc([binary, "-p", str(prefix), "-c", "nginx.conf", "-e", "stderr",
                          "-g", "daemon off;"])

    def start(self) -> None:
        self.proc.start()
        _wait(lambda: self.workers(), 10, "nginx workers")

    def conf(self) -> str:
        with contextlib.suppress(FileNotFoundError):
            return (self.prefix / "nginx.conf").read_text()
        return ""

    def workers(self) -> set[int]:
        assert self.proc.proc is not None
        pid = self.proc.proc.pid
        with contextlib.suppress(OSError):
            return {int(p) for p in
                    Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}
        return set()

    def stop(self) -> None:
        self.proc.stop(signal.SIGQUIT)


def _confd(*args: str) -> list[str]:
    return [str(BIN / "flotte"), "confd", *args]


# -- render, 1,000 backends ---------------------------------------------------------------------


async def _render_rows(reg: Registry, nginx_bin: str, root: Path
                       ) -> list[tuple[str, list[float]]]:
    values = {f"/services/apache/10.0.{i // 256}.{i % 256}": f"10.0.{i // 256}.{i % 256}:80"
              for i in range(N_RENDER)}
    template = compile(TEMPLATE.read_text(encoding="utf-8"), "nginx.conf.tmpl")
    rows: list[tuple[str, list[float]]] = []
    xs = []
    for _ in range(RENDER_ROUNDS):
        t0 = time.perf_counter()
        template.render(values)
        xs.append(time.perf_counter() - t0)
    rows.append((f"template only: examples/discovery nginx.conf, {N_RENDER:,} upstreams", xs))

    prefix = root / "render-nginx"
    (prefix / "logs").mkdir(parents=True)
    (prefix / "tmp").mkdir()
    confdir = root / "render-confd"
    (confdir / "conf.d").mkdir(parents=True)
    (confdir / "templates").mkdir()
    shutil.copy(TEMPLATE, confdir / "templates" / "nginx.conf.tmpl")
    (confdir / "conf.d" / "nginx.toml").write_text(
        '[template]\nsrc = "nginx.conf.tmpl"\n'
        f'dest = "{prefix / "nginx.conf"}"\n'
        'keys = ["/services/apache"]\nmode = "0644"\n'
        f"check_cmd = '{nginx_bin} -t -q -p {prefix} -c {{{{.src}}}} -e stderr'\n"
        "reload_cmd = 'true'\n", encoding="utf-8")
    for k, v in values.items():
        await reg.put(k, v.encode())
    try:
        res = load_resource(confdir / "conf.d" / "nginx.toml", confdir)
        in_sync, changed = await measure_passes(confdir, res, reg, RENDER_ROUNDS)
    finally:
        await reg.delete("/services/apache/", prefix=True)
    rows.append((f"confd pass on etcd, {N_RENDER:,} keys: read + render + compare (in sync)",
                 in_sync))
    rows.append(("  same, keys changed: + stage + nginx -t + rename + reload_cmd", changed))
    return rows


# -- stop -> upstream changed -------------------------------------------------------------------


@dataclass
class Pipeline:
    etcd: EtcdServer
    nginx: Nginx
    ports: list[int]
    announcers: list[Proc]
    confd: Proc
    proxy: Proc
    proxy_port: int
    nginx_port: int

    def announcer(self, k: int) -> Proc:
        port = self.ports[k]
        return Proc([str(BIN / "flotte"), "announce", "--registry", self.etcd.url,
                     "--key", f"/services/apache/b{k}", "--value", "{ip}:{port}",
                     "--ip", "127.0.0.1", "--ttl", "10", "--interval", "3",
                     "--check-interval", "1", "--check", f"http://127.0.0.1:{port}/"]).start()

    def settled(self) -> bool:
        """Every backend in nginx (one worker: no reload under way) and in the proxy."""
        conf = self.nginx.conf()
        if not all(f"127.0.0.1:{p}" in conf for p in self.ports):
            return False
        if len(self.nginx.workers()) != 1:
            return False
        added = [line for _, line in self.proxy.lines if "backend added" in line]
        removed = [line for _, line in self.proxy.lines if "backend removed" in line]
        return len(added) - len(removed) == len(self.ports)


def _trial(p: Pipeline, k: int) -> tuple[float, float, float]:
    """SIGTERM backend ``k``'s secretary: seconds until the key, nginx, the proxy."""
    addr = f"127.0.0.1:{p.ports[k]}"
    removed = f"backend removed: http://{addr}"
    _wait(p.settled, 30, "the pipeline to settle", step=0.01)
    time.sleep(0.05)
    old = p.nginx.workers()
    t0 = time.time()
    p.announcers[k].send(signal.SIGTERM)
    t_nginx = _wait(lambda: addr not in p.nginx.conf() and old.isdisjoint(p.nginx.workers()),
                    30, "nginx without the stopped backend")
    _wait(lambda: p.proxy.first(removed, t0), 30, "the proxy to drop it", step=0.005)
    _wait(lambda: p.announcers[k].first("stopped; deleted", t0), 30, "the key deleted",
          step=0.005)
    t_proxy = p.proxy.first(removed, t0)
    t_key = p.announcers[k].first("stopped; deleted", t0)
    assert t_proxy is not None and t_key is not None
    p.announcers[k].stop()
    p.announcers[k] = p.announcer(k)
    return t_key - t0, t_nginx - t0, t_proxy - t0


def _trials(p: Pipeline) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"key deleted (announce's log)": [],
                                   "nginx: new upstream list live, old workers gone": [],
                                   "flotte proxy: backend removed": []}
    for i in range(TRIALS):
        for label, x in zip(out, _trial(p, i % len(p.ports)), strict=True):
            out[label].append(x)
    return out


# -- requests/s -----------------------------------------------------------------------------------


async def _load(urls: list[str], duration: float, connections: int
                ) -> tuple[int, int, list[float]]:
    """(answered, failed, latencies) of ``connections`` keep-alive loops for ``duration``."""
    answered = failed = 0
    lat: list[float] = []
    deadline = time.monotonic() + duration
    connector = aiohttp.TCPConnector(limit=connections, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def worker(n: int) -> None:
            nonlocal answered, failed
            i = n
            while time.monotonic() < deadline:
                url = urls[i % len(urls)]
                i += 1
                t0 = time.perf_counter()
                try:
                    async with session.get(url) as resp:
                        await resp.read()
                        ok = resp.status == 200
                except (aiohttp.ClientError, OSError):
                    ok = False
                if ok:
                    answered += 1
                    lat.append(time.perf_counter() - t0)
                else:
                    failed += 1

        await asyncio.gather(*(worker(n) for n in range(connections)))
    return answered, failed, lat


def _throughput(p: Pipeline, nginx_bin: str, root: Path
                ) -> list[tuple[str, list[float], int, list[float]]]:
    """Per row: (label, req/s of each round, failed requests, latencies).  The rows take
    turns, ``ROUNDS`` times, so a burst of load from elsewhere hits them all alike."""
    tuned = Nginx(nginx_bin, root / "nginx-keepalive")
    tuned_port = free_port()
    (tuned.prefix / "nginx.conf").write_text(NGINX_KEEPALIVE.format(
        servers="\n".join(f"        server 127.0.0.1:{port};" for port in p.ports),
        port=tuned_port))
    tuned.start()
    targets = {
        "straight to the 3 backends (client round robin)":
            [f"http://127.0.0.1:{port}/" for port in p.ports],
        "nginx, examples/discovery config (no upstream keep-alive)":
            [f"http://127.0.0.1:{p.nginx_port}/"],
        "nginx, upstream keepalive 32 (tuned static config)":
            [f"http://127.0.0.1:{tuned_port}/"],
        "flotte proxy (keep-alive pool)": [f"http://127.0.0.1:{p.proxy_port}/"],
    }
    rates: dict[str, list[float]] = {label: [] for label in targets}
    failed: dict[str, int] = dict.fromkeys(targets, 0)
    lat: dict[str, list[float]] = {label: [] for label in targets}
    try:
        for urls in targets.values():
            asyncio.run(_load(urls, 0.5, CONNECTIONS))  # warm up
        for _ in range(ROUNDS):
            for label, urls in targets.items():
                n, bad, xs = asyncio.run(_load(urls, DURATION / ROUNDS, CONNECTIONS))
                rates[label].append(n / (DURATION / ROUNDS))
                failed[label] += bad
                lat[label].extend(xs)
    finally:
        tuned.stop()
    return [(label, rates[label], failed[label], lat[label]) for label in targets]


# -- main -------------------------------------------------------------------------------------------


def main() -> int:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    nginx_bin = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx")
                                          else None)
    if shutil.which("etcd") is None or nginx_bin is None:
        print("skipped: needs etcd (etcd-server) and nginx (nginx-light); run make deps")
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="bench-discovery-"))
    etcd = EtcdServer(tmp / "etcd")
    etcd.start(timeout=20)
    procs: list[Proc] = []
    nginx: Nginx | None = None
    p: Pipeline | None = None
    try:
        async def render() -> list[tuple[str, list[float]]]:
            reg = await connect(etcd.url)
            try:
                return await _render_rows(reg, nginx_bin, tmp)
            finally:
                await reg.close()

        render_out = asyncio.run(render())

        ports: list[int] = []
        while len(ports) < N_BACKENDS:
            port = free_port()
            if port not in ports:
                ports.append(port)
        backends = Proc([sys.executable, "-c", BACKENDS, *map(str, ports)]).start()
        procs.append(backends)
        _wait(lambda: backends.first("ready", 0), 30, "the backends")

        prefix = tmp / "nginx"
        confdir = tmp / "confd"
        (confdir / "conf.d").mkdir(parents=True)
        (confdir / "templates").mkdir()
        shutil.copy(TEMPLATE, confdir / "templates" / "nginx.conf.tmpl")
        (confdir / "conf.d" / "nginx.toml").write_text(
            '[template]\nsrc = "nginx.conf.tmpl"\n'
            f'dest = "{prefix / "nginx.conf"}"\n'
            'keys = ["/services/apache"]\nmode = "0644"\n'
            f"check_cmd = '{nginx_bin} -t -q -p {prefix} -c {{{{.src}}}} -e stderr'\n"
            f"reload_cmd = '{nginx_bin} -s reload -p {prefix} -c nginx.conf -e stderr'\n",
            encoding="utf-8")
        nginx_port = free_port()
        env = {"NGINX_LISTEN": f"127.0.0.1:{nginx_port}"}
        node = ["-backend", "etcdv3", "-node", f"http://{etcd.endpoint}", "-confdir",
                str(confdir)]
        nginx = Nginx(nginx_bin, prefix)
        subprocess.run(_confd(*node, "-onetime", "-sync-only"), env={**os.environ, **env},
                       check=True, capture_output=True, timeout=60)
        nginx.start()
        confd = Proc(_confd(*node, "-watch"), env=env).start()
        procs.append(confd)
        proxy_port = free_port()
        proxy = Proc([str(BIN / "flotte"), "proxy", "--listen", f"127.0.0.1:{proxy_port}",
                      "--backends", "/services/apache/", "--registry", etcd.url]).start()
        procs.append(proxy)
        p = Pipeline(etcd, nginx, ports, [], confd, proxy, proxy_port, nginx_port)
        p.announcers.extend(p.announcer(k) for k in range(N_BACKENDS))
        _wait(p.settled, 60, "nginx and the proxy to see the three backends", step=0.01)
        latency = _trials(p)
        _wait(p.settled, 30, "the pipeline to settle", step=0.01)
        load = _throughput(p, nginx_bin, tmp)
    finally:
        for proc in [*(p.announcers if p is not None else []), *reversed(procs)]:
            proc.stop()
        if nginx is not None:
            nginx.stop()
        etcd.close()
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"backend stopped (its secretary SIGTERMed) -> ... ({TRIALS} trials; confd "
          f"debounce 0.1 s, nginx -t, nginx -s reload)")
    print(f"  {'':56} {'p50':>10} {'p99':>10} {'max':>10}")
    for what, xs in latency.items():
        print(f"  {what:<56} {_ms(_pct(xs, 0.5)):>10} {_ms(_pct(xs, 0.99)):>10} "
              f"{_ms(max(xs)):>10}")

    print(f"\nrender, {N_RENDER:,} backends ({RENDER_ROUNDS} rounds)")
    print(f"  {'':76} {'median':>10} {'p99':>10}")
    for what, xs in render_out:
        print(f"  {what:<76} {_ms(statistics.median(xs)):>10} {_ms(_pct(xs, 0.99)):>10}")

    print(f"\nrequests/s, {CONNECTIONS} keep-alive connections, {DURATION:g} s each in "
          f"{ROUNDS} turns (median turn), aiohttp client, the same {N_BACKENDS} backends")
    print(f"  {'':60} {'req/s':>10} {'failed':>7} {'p50':>9} {'p99':>9}")
    rates: dict[str, float] = {}
    for label, turns, failed, lat in load:
        rates[label] = statistics.median(turns)
        print(f"  {label:<60} {rates[label]:>10,.0f} {failed:>7} {_ms(_pct(lat, 0.5)):>9} "
              f"{_ms(_pct(lat, 0.99)):>9}")

    nginx_p99 = _pct(latency["nginx: new upstream list live, old workers gone"], 0.99)
    proxy_p99 = _pct(latency["flotte proxy: backend removed"], 0.99)
    changed = _pct(render_out[-1][1], 0.99)
    failed_total = sum(f for _, _, f, _ in load)
    print()
    for ok, what, value in (
        (nginx_p99 <= TARGET, f"stop -> nginx upstream changed, p99 <= {TARGET:g} s",
         _ms(nginx_p99)),
        (proxy_p99 <= TARGET, f"stop -> flotte proxy set changed, p99 <= {TARGET:g} s",
         _ms(proxy_p99)),
        (changed <= TARGET, f"confd pass, {N_RENDER:,} backends changed, p99 <= {TARGET:g} s",
         _ms(changed)),
        (failed_total == 0, "no failed request under load", f"{failed_total} failed"),
    ):
        print(f"  {'PASS' if ok else 'MISS':12s} {what:<52} {value:>12}")
    ratio = rates["flotte proxy (keep-alive pool)"] / \
        rates["nginx, upstream keepalive 32 (tuned static config)"]
    print(f"  {'':12s} {'flotte proxy req/s / tuned nginx req/s':<52} {ratio:>12.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
