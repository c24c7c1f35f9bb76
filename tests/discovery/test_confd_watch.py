"""Watch and interval modes in process: coalescing, scoping, retries, SIGHUP; the
registry (memory://) and the flotte API (in-process, memory://) as backends."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from discovery.confd_support import (
    SEED_TEMPLATE,
    DictBackend,
    await_for,
    read,
    write_resource,
)
from flotte.api import Client, make_app
from flotte.discovery.confd.backends import ApiBackend, RegistryBackend
from flotte.discovery.confd.runner import Confd
from flotte.discovery.confd.settings import Settings
from flotte.discovery.confd.sync import Result
from flotte.registry import Registry, connect

KEYS = {"/services/apache/10.0.0.1": "10.0.0.1:80"}


@contextlib.asynccontextmanager
async def running(confd: Confd) -> AsyncIterator[asyncio.Task[int]]:
    task = asyncio.create_task(confd.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def two_resources(tmp_path: Path, **extra: object) -> Path:
    confdir = tmp_path / "confd"
    write_resource(confdir, "nginx", SEED_TEMPLATE, dest=str(tmp_path / "nginx.conf"),
                   keys=["/services/apache"], **extra)
    write_resource(confdir, "other", 'db {{getv "/db/host" "none"}}\n',
                   dest=str(tmp_path / "db.conf"), keys=["/db"])
    return confdir


def watch_settings(confdir: Path, **kw: object) -> Settings:
    return Settings(confdir=str(confdir), watch=True, debounce=0.05, debounce_max=0.5,
                    **kw)  # type: ignore[arg-type]


async def test_watch_renders_at_start_then_coalesces_a_burst(tmp_path: Path) -> None:
    log = tmp_path / "reloads"
    confdir = two_resources(tmp_path, reload_cmd=f"echo reload >> {log}")
    backend = DictBackend(KEYS)
    batches: list[list[Result]] = []
    settings = Settings(confdir=str(confdir), watch=True, debounce=0.3, debounce_max=30)
    confd = Confd(settings, backend, on_batch=batches.append)
    async with running(confd):
        await await_for(lambda: batches, what="first render")
        assert "10.0.0.1:80" in read(tmp_path / "nginx.conf")
        assert read(tmp_path / "db.conf") == "db none\n"
        assert len(batches) == 1 and read(log) == "reload\n"
        for i in range(2, 52):  # fifty announcers starting together
            backend.set(f"/services/apache/10.0.0.{i}", f"10.0.0.{i}:80")
            if i % 5 == 0:
                await asyncio.sleep(0.01)  # spread over time, well inside the quiet period
        await await_for(lambda: len(batches) == 2, what="burst rendered")
        assert "10.0.0.51:80" in read(tmp_path / "nginx.conf")
        assert [r.resource.name for r in batches[1]] == ["conf.d/nginx.toml"]  # not other.toml
        assert read(log) == "reload\nreload\n"
        await asyncio.sleep(0.4)
        assert len(batches) == 2


async def test_unchanged_values_render_nothing(tmp_path: Path) -> None:
    confdir = two_resources(tmp_path)
    backend = DictBackend(KEYS)
    confd = Confd(watch_settings(confdir), backend)
    async with running(confd):
        await await_for(lambda: confd.batches == 1, what="first render")
        backend.set("/services/apache/10.0.0.1", "10.0.0.1:80")  # a TTL refresh
        backend.delete("/services/apache/never-existed")
        backend.set("/services/apache2/x", "y")  # shares a string prefix only
        await asyncio.sleep(0.3)
        assert confd.batches == 1
        backend.set("/db/host", "db1")
        await await_for(lambda: read(tmp_path / "db.conf") == "db db1\n", what="db render")
        assert confd.renders == 3  # 2 at start + other.toml


async def test_key_removal_takes_the_backend_out(tmp_path: Path) -> None:
    confdir = two_resources(tmp_path)
    backend = DictBackend({**KEYS, "/services/apache/10.0.0.2": "10.0.0.2:80"})
    confd = Confd(watch_settings(confdir), backend)
    async with running(confd):
        await await_for(lambda: "10.0.0.2:80" in read(tmp_path / "nginx.conf"))
        backend.delete("/services/apache/10.0.0.2")
        await await_for(lambda: "10.0.0.2:80" not in read(tmp_path / "nginx.conf"),
                        what="removal rendered")
        assert "10.0.0.1:80" in read(tmp_path / "nginx.conf")


async def test_failures_are_retried_without_a_key_change(tmp_path: Path) -> None:
    confdir = two_resources(tmp_path)
    backend = DictBackend(KEYS)
    backend.fail = "etcd is down"
    confd = Confd(watch_settings(confdir), backend, retry_delays=(0.05,))
    async with running(confd):
        await await_for(lambda: backend.fetches >= 3, what="retries")
        assert not read(tmp_path / "nginx.conf")
        backend.fail = None
        await await_for(lambda: read(tmp_path / "nginx.conf"), what="recovery")
    # a broken template is retried too, so fixing it needs no key change
    (tmp_path / "nginx.conf").unlink()
    (confdir / "templates" / "nginx.tmpl").write_text("{{ broken\n")
    confd = Confd(watch_settings(confdir), DictBackend(KEYS), retry_delays=(0.05,))
    async with running(confd):
        await await_for(lambda: confd.renders >= 4, what="retries of the broken template")
        (confdir / "templates" / "nginx.tmpl").write_text("fixed\n")
        await await_for(lambda: read(tmp_path / "nginx.conf") == "fixed\n", what="fix")


async def test_hup_reloads_conf_d(tmp_path: Path) -> None:
    confdir = two_resources(tmp_path)
    backend = DictBackend(KEYS)
    confd = Confd(watch_settings(confdir), backend)
    async with running(confd):
        await await_for(lambda: confd.batches == 1)
        write_resource(confdir, "late", 'late {{getv "/late" "-"}}\n',
                       dest=str(tmp_path / "late.conf"), keys=["/late"])
        confd.hup()
        await await_for(lambda: read(tmp_path / "late.conf") == "late -\n", what="new TOML")
        backend.set("/late", "x")
        await await_for(lambda: read(tmp_path / "late.conf") == "late x\n", what="its keys")


async def test_interval_mode_rereads_conf_d(tmp_path: Path) -> None:
    confdir = two_resources(tmp_path)
    backend = DictBackend(KEYS)
    confd = Confd(Settings(confdir=str(confdir), interval=0.05), backend)
    async with running(confd):
        await await_for(lambda: read(tmp_path / "db.conf") == "db none\n")
        backend.values["/db/host"] = "db2"  # no event: interval mode polls
        write_resource(confdir, "late", "late\n", dest=str(tmp_path / "late.conf"))
        await await_for(lambda: read(tmp_path / "db.conf") == "db db2\n")
        await await_for(lambda: read(tmp_path / "late.conf") == "late\n")


async def test_watch_with_interval_also_resyncs(tmp_path: Path) -> None:
    confdir = two_resources(tmp_path)
    confd = Confd(watch_settings(confdir, interval=0.1, interval_explicit=True),
                  DictBackend(KEYS))
    async with running(confd):
        await await_for(lambda: read(tmp_path / "db.conf"))
        (tmp_path / "db.conf").write_text("edited by hand\n")
        await await_for(lambda: read(tmp_path / "db.conf") == "db none\n", what="resync")


# -- the registry and the API as backends -----------------------------------------------


@pytest.fixture
async def registry() -> AsyncIterator[Registry]:
    reg = await connect("memory://")
    try:
        yield reg
    finally:
        await reg.close()


async def test_registry_backend_fetch_is_segment_wise(registry: Registry) -> None:
    for key in ("/app", "/app/a", "/app/b/c", "/app2/x", "/other"):
        await registry.put(key, key.encode())
    snap = await RegistryBackend(registry).fetch(["/app", "/other"])
    assert snap.values == {"/app": "/app", "/app/a": "/app/a", "/app/b/c": "/app/b/c",
                           "/other": "/other"}
    assert snap.revision == registry.revision
    everything = await RegistryBackend(registry).fetch(["/"])
    assert set(everything.values) == {"/app", "/app/a", "/app/b/c", "/app2/x", "/other"}
    many = [f"/k{i}" for i in range(200)]  # more keys than one transaction may hold
    assert (await RegistryBackend(registry).fetch(many)).values == {}


async def test_watch_on_the_registry(tmp_path: Path, registry: Registry) -> None:
    await registry.put("/services/apache/10.0.0.1", b"10.0.0.1:80")
    confdir = two_resources(tmp_path)
    confd = Confd(watch_settings(confdir), RegistryBackend(registry))
    async with running(confd):
        await await_for(lambda: "10.0.0.1:80" in read(tmp_path / "nginx.conf"))
        await registry.put("/services/apache/10.0.0.2", b"10.0.0.2:80")
        await await_for(lambda: "10.0.0.2:80" in read(tmp_path / "nginx.conf"))
        await registry.delete("/services/apache/10.0.0.1")
        await await_for(lambda: "10.0.0.1:80" not in read(tmp_path / "nginx.conf"))
        batches = confd.batches
        lease = await registry.grant(30)
        await registry.put("/services/apache/10.0.0.2", b"10.0.0.2:80", lease)
        await registry.put("/services/apache2/x", b"y")
        await asyncio.sleep(0.3)
        assert confd.batches == batches  # same value on a lease, a sibling prefix: nothing
        await registry.put("/db/host", b"db9")
        await await_for(lambda: read(tmp_path / "db.conf") == "db db9\n")


async def test_onetime_and_watch_through_the_api(tmp_path: Path, registry: Registry) -> None:
    await registry.put("/services/apache/10.0.0.1", b"10.0.0.1:80")
    await registry.put("/db/host", b"db1")
    confdir = two_resources(tmp_path)
    async with TestServer(make_app(registry, no_auth=True)) as server:
        endpoint = str(server.make_url("")).rstrip("/")
        async with Client(endpoint) as client:
            backend = ApiBackend(client, poll=0.05)
            snap = await backend.fetch(["/services/apache", "/nope", "/db/host"])
            assert snap.values == {"/services/apache/10.0.0.1": "10.0.0.1:80",
                                   "/db/host": "db1"}
            settings = Settings(confdir=str(confdir), onetime=True)
            assert await Confd(settings, backend).run() == 0
            assert read(tmp_path / "db.conf") == "db db1\n"
            confd = Confd(watch_settings(confdir), backend)
            async with running(confd):
                await await_for(lambda: confd.batches == 1)
                await registry.put("/services/apache/10.0.0.2", b"10.0.0.2:80")
                await await_for(lambda: "10.0.0.2:80" in read(tmp_path / "nginx.conf"))
                await registry.delete("/db/host")
                await await_for(lambda: read(tmp_path / "db.conf") == "db none\n")
                batches = confd.batches
                await registry.put("/services/apache/10.0.0.2", b"10.0.0.2:80")
                await asyncio.sleep(0.3)
                assert confd.batches == batches


async def test_values_that_are_not_utf8_pass_through(tmp_path: Path, registry: Registry) -> None:
    await registry.put("/blob", b"\xff\xfeok")
    confdir = tmp_path / "confd"
    write_resource(confdir, "blob", '{{getv "/blob"}}\n', dest=str(tmp_path / "blob"),
                   keys=["/blob"])
    assert await Confd(Settings(confdir=str(confdir), onetime=True),
                       RegistryBackend(registry)).run() == 0
    assert (tmp_path / "blob").read_bytes() == b"\xff\xfeok\n"
