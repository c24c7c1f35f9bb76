"""``flotte confd -backend etcdv3 -node http://…`` against a real etcd, as a child process."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from discovery.confd_support import (
    SEED_TEMPLATE,
    ConfdProcess,
    await_for,
    read,
    run_confd,
    write_resource,
)
from etcd_server import EtcdServer
from flotte.discovery.confd.backends import RegistryBackend
from flotte.registry import Registry, Unavailable, connect
from support import require

pytestmark = pytest.mark.etcd


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdServer]:
    require("etcd", "etcd-server")
    server = EtcdServer(tmp_path_factory.mktemp("etcd-confd"))
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
async def reg(etcd: EtcdServer) -> AsyncIterator[Registry]:
    r = await connect(etcd.url)
    await r.delete("/", prefix=True)
    try:
        yield r
    finally:
        await r.close()


async def put_retrying(reg: Registry, key: str, value: bytes) -> None:
    """A put right after a restart may meet gRPC's reconnect backoff: try until it lands."""
    deadline = time.monotonic() + 30
    while True:
        try:
            await reg.put(key, value)
            return
        except Unavailable:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


def node(etcd: EtcdServer) -> list[str]:
    return ["-backend", "etcdv3", "-node", f"http://{etcd.endpoint}"]


def nginx_confdir(tmp_path: Path, **extra: object) -> Path:
    confdir = tmp_path / "confd"
    write_resource(confdir, "nginx", SEED_TEMPLATE, dest=str(tmp_path / "app.conf"),
                   keys=["/services/apache"], mode="0644", **extra)
    return confdir


async def test_onetime(tmp_path: Path, etcd: EtcdServer, reg: Registry) -> None:
    await reg.put("/services/apache/10.0.0.1", b"10.0.0.1:80")
    await reg.put("/services/apache/10.0.0.2", b"10.0.0.2:80")
    confdir = nginx_confdir(tmp_path)
    done = run_confd([*node(etcd), "-onetime", "-confdir", str(confdir)])
    assert done.returncode == 0, done.stderr
    assert read(tmp_path / "app.conf") == (
        "upstream apache_pool {\n\n    server 10.0.0.1:80;\n\n    server 10.0.0.2:80;\n\n}\n")
    assert "INFO Target config" in done.stderr and "has been updated" in done.stderr
    # a template error: exit 1, and the log names the resource file and the line
    (confdir / "templates" / "nginx.tmpl").write_text('x\n{{ getv "/services/none" }}\n')
    done = run_confd([*node(etcd), "-onetime", "-confdir", str(confdir)])
    assert done.returncode == 1
    assert ("ERROR conf.d/nginx.toml: templates/nginx.tmpl:2:4: at <getv \"/services/none\">: "
            "error calling getv: key does not exist: /services/none") in done.stderr


async def test_onetime_with_prefix_and_unreachable_etcd(tmp_path: Path, etcd: EtcdServer,
                                                        reg: Registry) -> None:
    await reg.put("/production/services/apache/a", b"10.0.0.7:80")
    confdir = nginx_confdir(tmp_path)
    done = run_confd([*node(etcd), "-onetime", "-confdir", str(confdir),
                      "-prefix", "/production"])
    assert done.returncode == 0, done.stderr
    assert "10.0.0.7:80" in read(tmp_path / "app.conf")
    done = run_confd(["-node", "http://127.0.0.1:9", "-onetime", "-confdir", str(confdir)])
    assert done.returncode == 1
    assert "cannot connect to etcd" in done.stderr


async def test_watch_child_process(tmp_path: Path, etcd: EtcdServer, reg: Registry) -> None:
    reloads = tmp_path / "reloads"
    confdir = nginx_confdir(tmp_path, check_cmd="grep -q upstream {{.src}}",
                            reload_cmd=f"date +%s.%N >> {reloads}")
    await reg.put("/services/apache/10.0.0.1", b"10.0.0.1:80")
    with ConfdProcess([*node(etcd), "-watch", "-confdir", str(confdir), "-log-level", "debug"],
                      tmp_path / "confd.log") as confd:
        await await_for(lambda: read(reloads), what="first render", timeout=30)
        t0 = time.time()
        await reg.put("/services/apache/10.0.0.2", b"10.0.0.2:80")
        await await_for(lambda: len(read(reloads).split()) == 2, what="reload after a put")
        latency = float(read(reloads).split()[-1]) - t0
        assert "10.0.0.2:80" in read(tmp_path / "app.conf")
        print(f"\nput -> dest rewritten + reload_cmd run: {latency * 1000:.0f} ms")
        await reg.delete("/services/apache/10.0.0.1")
        await await_for(lambda: "10.0.0.1:80" not in read(tmp_path / "app.conf"))
        await await_for(lambda: len(read(reloads).split()) == 3, what="reload after delete")
        # a new resource file, picked up on SIGHUP
        write_resource(confdir, "db", 'db {{getv "/db/host" "none"}}\n',
                       dest=str(tmp_path / "db.conf"), keys=["/db"])
        confd.signal(signal.SIGHUP)
        await await_for(lambda: read(tmp_path / "db.conf") == "db none\n", what="SIGHUP")
        await reg.put("/db/host", b"db1")
        await await_for(lambda: read(tmp_path / "db.conf") == "db db1\n")
        assert confd.stop() == 0
    assert "Captured SIGTERM. Exiting..." in confd.log
    assert len(read(reloads).split()) == 3


async def test_watch_survives_an_etcd_restart(tmp_path: Path, etcd: EtcdServer,
                                              reg: Registry) -> None:
    confdir = nginx_confdir(tmp_path)
    with ConfdProcess([*node(etcd), "-watch", "-confdir", str(confdir)],
                      tmp_path / "confd.log") as confd:
        await await_for(lambda: read(tmp_path / "app.conf"), what="first render", timeout=30)
        etcd.restart(down_for=1.0)
        await put_retrying(reg, "/services/apache/10.0.0.5", b"10.0.0.5:80")
        await await_for(lambda: "10.0.0.5:80" in read(tmp_path / "app.conf"), timeout=60,
                        what=f"render after the restart; log:\n{confd.log}")
        assert confd.stop() == 0


async def test_registry_backend_on_etcd(reg: Registry) -> None:
    await reg.put("/app/a", b"1")
    await reg.put("/app2/b", b"2")
    backend = RegistryBackend(reg)
    snap = await backend.fetch(["/app"])
    assert snap.values == {"/app/a": "1"}
    stream = backend.watch(["/app"], snap)
    try:
        await reg.put("/app2/c", b"x")  # same string prefix, other subtree: not reported
        await reg.put("/app/a", b"3")
        changes = await stream.__anext__()
        assert [(c.key, c.value) for c in changes] == [("/app/a", "3")]
        assert changes[0].revision == reg.revision
    finally:
        await stream.close()
