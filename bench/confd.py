"""``flotte confd``: render cost for 1,000 upstreams, and key-change-to-reload latency.

The seed's confd polled etcd every 60 s (``confd -interval=60``), so a new or
vanished Apache reached nginx after 30 s on average and 60 s at worst (plus
the secretary's 30 s TTL when an Apache died without deleting its key).
``flotte confd -watch`` reacts to the change itself.  Measured here:

* **render**: compile and render the seed's template and the runnable
  ``examples/discovery`` nginx.conf over 1,000 ``/services/apache/*`` keys;
  one whole pass (read 1,000 keys from a memory registry, render, compare
  with dest) when nothing changed, and when the file must be rewritten;
* **latency**: from the write of a key to the moment ``reload_cmd`` has run
  (dest already renamed into place), ``ROUNDS`` times each:

  - in process on a ``memory://`` registry, with the default 100 ms
    debounce and with ``--debounce 0`` (the pipeline's own cost);
  - ``flotte confd`` as a child process on a real etcd (skipped without the
    ``etcd`` binary), reload_cmd writing ``date +%s.%N``;
  - ``flotte confd`` as a child process on the flotte API, which has no
    watch for user keys, so confd polls it (``--poll``, default 0.25 s).

The seed's rows are computed from its interval, not measured (no confd binary).
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
import time
from collections.abc import Callable
from pathlib import Path

from flotte.api import make_app, serve
from flotte.discovery.confd.backends import RegistryBackend
from flotte.discovery.confd.resource import TemplateResource, load_resource
from flotte.discovery.confd.runner import Confd
from flotte.discovery.confd.settings import Settings
from flotte.discovery.confd.sync import Processor, Result
from flotte.discovery.template import compile
from flotte.registry import Registry, connect

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from etcd_server import EtcdServer  # the tests' throwaway etcd

_ROOT = Path(__file__).resolve().parents[1]
N_UPSTREAMS = 1000
ROUNDS = 20
RENDER_ROUNDS = 30
SEED_TEMPLATE = (_ROOT / "examples" / "seed" / "ch10" / "confd" / "templates"
                 / "nginx.conf.tmpl").read_text(encoding="utf-8")
EXAMPLE_TEMPLATE = (_ROOT / "examples" / "discovery" / "confd" / "templates"
                    / "nginx.conf.tmpl").read_text(encoding="utf-8")
CONFD_CLI = [sys.executable, "-c",
             "from flotte.cli.confd import confd; confd(prog_name='flotte confd')"]
SEED_INTERVAL = 60.0
SEED_TTL = 30.0
SEED_REFRESH = 20.0


def _upstreams(n: int) -> dict[str, str]:
    return {f"/services/apache/10.0.{i // 256}.{i % 256}": f"10.0.{i // 256}.{i % 256}:8080"
            for i in range(n)}


def _timed(fn: Callable[[], object], rounds: int) -> list[float]:
    out: list[float] = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def _write_confdir(root: Path, template: str, reload_cmd: str) -> Path:
    confdir = root / "confd"
    (confdir / "conf.d").mkdir(parents=True)
    (confdir / "templates").mkdir()
    (confdir / "templates" / "nginx.conf.tmpl").write_text(template, encoding="utf-8")
    (confdir / "conf.d" / "nginx.toml").write_text(
        '[template]\nsrc = "nginx.conf.tmpl"\n'
        f'dest = "{root / "nginx.conf"}"\n'
        'keys = ["/services/apache"]\nmode = "0644"\n'
        f"reload_cmd = '{reload_cmd}'\n", encoding="utf-8")
    return confdir


# -- render ---------------------------------------------------------------------------



async def measure_passes(confdir: Path, res: TemplateResource, reg: Registry, rounds: int
                         ) -> tuple[list[float], list[float]]:
    """Time confd passes over ``res``: with keys in sync, and after one key changed."""
    confd = Confd(Settings(confdir=str(confdir), onetime=True), RegistryBackend(reg))
    await confd.process([res])
    in_sync: list[float] = []
    changed: list[float] = []
    for i in range(rounds):
        t0 = time.perf_counter()
        await confd.process([res])
        in_sync.append(time.perf_counter() - t0)
        await reg.put("/services/apache/changing", f"10.9.9.{i}:80".encode())
        t0 = time.perf_counter()
        await confd.process([res])
        changed.append(time.perf_counter() - t0)
    return in_sync, changed

async def _render_rows() -> list[tuple[str, list[float]]]:
    values = _upstreams(N_UPSTREAMS)
    store = dict(values)
    rows: list[tuple[str, list[float]]] = []
    rows.append(("compile the seed template", _timed(lambda: compile(SEED_TEMPLATE, "t"),
                                                     RENDER_ROUNDS)))
    seed = compile(SEED_TEMPLATE, "nginx.conf.tmpl")
    rows.append((f"render the seed template, {N_UPSTREAMS:,} upstreams",
                 _timed(lambda: seed.render(store), RENDER_ROUNDS)))
    example = compile(EXAMPLE_TEMPLATE, "nginx.conf.tmpl")
    rows.append((f"render examples/discovery nginx.conf, {N_UPSTREAMS:,} upstreams",
                 _timed(lambda: example.render(store), RENDER_ROUNDS)))
    with tempfile.TemporaryDirectory(prefix="bench-confd-") as tmp:
        root = Path(tmp)
        confdir = _write_confdir(root, EXAMPLE_TEMPLATE, "true")
        res = load_resource(confdir / "conf.d" / "nginx.toml", confdir)
        reg = await connect("memory://")
        try:
            for k, v in values.items():
                await reg.put(k, v.encode())
            in_sync, changed = await measure_passes(confdir, res, reg, RENDER_ROUNDS)
        finally:
            await reg.close()
    rows.append((f"one pass, {N_UPSTREAMS:,} keys read + render + compare (in sync)", in_sync))
    rows.append(("one pass, same + stage + rename + reload_cmd 'true' (changed)", changed))
    return rows


# -- latency ----------------------------------------------------------------------------


async def _in_process(debounce: float) -> list[float]:
    with tempfile.TemporaryDirectory(prefix="bench-confd-") as tmp:
        confdir = _write_confdir(Path(tmp), SEED_TEMPLATE, "true")
        reg = await connect("memory://")
        done: asyncio.Queue[float] = asyncio.Queue()

        def on_batch(results: list[Result]) -> None:
            done.put_nowait(max(r.finished_at for r in results))

        settings = Settings(confdir=str(confdir), watch=True, debounce=debounce,
                            debounce_max=max(1.0, debounce * 10))
        confd = Confd(settings, RegistryBackend(reg), processor=Processor(),
                      on_batch=on_batch)
        task = asyncio.create_task(confd.run())
        try:
            await asyncio.wait_for(done.get(), 30)  # the start-up render
            out: list[float] = []
            for i in range(ROUNDS):
                await asyncio.sleep(0.05)
                t0 = time.monotonic()
                await reg.put(f"/services/apache/10.1.0.{i}", f"10.1.0.{i}:80".encode())
                out.append(await asyncio.wait_for(done.get(), 30) - t0)
            return out
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await reg.close()


async def _child_process(args: list[str], reg: Registry, root: Path) -> list[float]:
    """Latency through a ``flotte confd`` child; its reload_cmd logs wall-clock times."""
    reloads = root / "reloads"
    confdir = _write_confdir(root, SEED_TEMPLATE, f"date +%s.%N >> {reloads}")
    log = open(root / "confd.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([*CONFD_CLI, *args, "-watch", "-confdir", str(confdir)],
                            stdout=log, stderr=log, stdin=subprocess.DEVNULL)

    def count() -> int:
        with contextlib.suppress(FileNotFoundError):
            return len(reloads.read_text().split())
        return 0

    async def wait_count(n: int) -> float:
        deadline = time.monotonic() + 30
        while count() < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no reload; see {root / 'confd.log'}")
            await asyncio.sleep(0.001)
        return float(reloads.read_text().split()[n - 1])

    try:
        await wait_count(1)
        out: list[float] = []
        for i in range(ROUNDS):
            await asyncio.sleep(0.05)
            t0 = time.time()
            await reg.put(f"/services/apache/10.2.0.{i}", f"10.2.0.{i}:80".encode())
            out.append(await wait_count(i + 2) - t0)
        return out
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


async def _etcd() -> list[float] | str:
    if shutil.which("etcd") is None:
        return "skipped: no etcd binary (install etcd-server)"
    with tempfile.TemporaryDirectory(prefix="bench-confd-etcd-") as tmp:
        etcd = EtcdServer(Path(tmp) / "etcd")
        etcd.start(timeout=20)
        try:
            reg = await connect(etcd.url)
            try:
                await reg.put("/services/apache/10.0.0.1", b"10.0.0.1:80")
                return await _child_process(
                    ["-backend", "etcdv3", "-node", f"http://{etcd.endpoint}"], reg, Path(tmp))
            finally:
                await reg.close()
        finally:
            etcd.close()


async def _api() -> list[float]:
    with tempfile.TemporaryDirectory(prefix="bench-confd-api-") as tmp:
        reg = await connect("memory://")
        served = await serve(make_app(reg, no_auth=True), ["http://127.0.0.1:0"])
        try:
            await reg.put("/services/apache/10.0.0.1", b"10.0.0.1:80")
            return await _child_process(["--endpoint", served.urls[0]], reg, Path(tmp))
        finally:
            await served.close()
            await reg.close()


def _ms(x: float) -> str:
    return f"{x * 1000:,.1f} ms" if x < 10 else f"{x:,.0f} s"


def main() -> int:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    print(f"render ({RENDER_ROUNDS} rounds)")
    print(f"  {'what':<68} {'median':>10} {'best':>10}")
    for what, xs in asyncio.run(_render_rows()):
        print(f"  {what:<68} {_ms(statistics.median(xs)):>10} {_ms(min(xs)):>10}")

    print(f"\nkey written -> dest rewritten + reload_cmd run ({ROUNDS} changes each)")
    print(f"  {'setup':<68} {'min':>10} {'median':>10} {'max':>10}")
    rows: list[tuple[str, list[float] | str]] = [
        ("flotte confd -watch, memory registry, in process (debounce 0.1 s)",
         asyncio.run(_in_process(0.1))),
        ("flotte confd -watch, memory registry, in process, --debounce 0",
         asyncio.run(_in_process(0.0))),
        ("flotte confd -watch -backend etcdv3 (child process, real etcd)",
         asyncio.run(_etcd())),
        ("flotte confd -watch via the flotte API (child, events)",
         asyncio.run(_api())),
    ]
    for what, xs in rows:
        if isinstance(xs, str):
            print(f"  {what:<68} {xs}")
        else:
            print(f"  {what:<68} {_ms(min(xs)):>10} {_ms(statistics.median(xs)):>10} "
                  f"{_ms(max(xs)):>10}")
    print(f"  {'seed: confd -interval=60 polling etcd (computed: uniform 0-60 s)':<68} "
          f"{_ms(0):>10} {_ms(SEED_INTERVAL / 2):>10} {_ms(SEED_INTERVAL):>10}")
    print(f"  {'seed: an Apache dies, key expires (TTL 30 s) then the poll (computed)':<68} "
          f"{_ms(SEED_TTL - SEED_REFRESH):>10} "
          f"{_ms(SEED_TTL - SEED_REFRESH / 2 + SEED_INTERVAL / 2):>10} "
          f"{_ms(SEED_TTL + SEED_INTERVAL):>10}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
