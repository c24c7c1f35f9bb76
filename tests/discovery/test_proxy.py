"""``flotte proxy``: the pure parts, then the proxy with real backends and a real registry.

Backends are aiohttp servers on loopback aliases (127.0.0.2, .3, .4 …), so
each has its own address as on separate machines; keys are added and removed
while requests flow.  The in-process tests follow a ``memory://`` registry
(the registry watch path), one follows the API (the polling path), and the
command itself runs as a process on etcd, where the numbers in the report
come from (removal latency, overhead per request).
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
import signal
import socket
import statistics
import subprocess
import threading
import time
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp
import pytest
from multidict import CIMultiDict

from discovery.discovery_support import (
    PYTHON,
    ApiThread,
    HttpBackend,
    LoopThread,
    flotte_cmd,
    popen,
    wait_for,
)
from etcd_server import EtcdServer, free_port
from flotte.discovery.kv import ApiKV, RegistryKV
from flotte.discovery.proxy import (
    Proxy,
    ProxySettings,
    RetryPolicy,
    RoundRobin,
    backend_map,
    backward_headers,
    bad_gateway_text,
    diff,
    forward_headers,
    parse_backend,
    parse_listen,
)
from flotte.registry import Registry, open_registry
from support import require

T = TypeVar("T")

# -- pure parts ---------------------------------------------------------------------------------------


def test_parse_backend_accepts_the_usual_shapes() -> None:
    assert parse_backend("10.0.0.1:8080") == "http://10.0.0.1:8080"
    assert parse_backend(" http://10.0.0.1:8080/ignored/path ") == "http://10.0.0.1:8080"
    assert parse_backend("https://web.example:8443") == "https://web.example:8443"
    assert parse_backend("http://web.example") == "http://web.example:80"
    assert parse_backend("[::1]:8080") == "http://[::1]:8080"
    assert parse_backend('{"host": "core-01", "ipv4_addr": "10.0.0.1", "port": "8081"}') \
        == "http://10.0.0.1:8081"
    assert parse_backend('{"ip": "10.0.0.2", "port": 80}') == "http://10.0.0.2:80"
    assert parse_backend('{"url": "http://10.0.0.3:81"}') == "http://10.0.0.3:81"
    assert parse_backend('{"host": "::1", "port": 80}') == "http://[::1]:80"
    for bad in ("", "10.0.0.1", "ftp://x:21", "x:notaport", "x:70000", "{not json",
                '{"host": "a"}', '{"port": 80}', '["a", 1]', '{"ip": "a", "port": true}'):
        assert parse_backend(bad) is None, bad


def test_backend_map_dedupes_and_reports_bad_values() -> None:
    mapping, bad = backend_map({"/s/b": "10.0.0.1:80", "/s/a": "http://10.0.0.1:80",
                                "/s/c": "junk", "/s/d": "10.0.0.2:80"})
    assert mapping == {"http://10.0.0.1:80": ["/s/a", "/s/b"], "http://10.0.0.2:80": ["/s/d"]}
    assert bad == ["/s/c"]
    assert diff(["a", "b"], ["b", "c"]) == (["c"], ["a"])
    assert diff([], []) == ([], [])


def test_round_robin_cycles_and_honours_exclusions() -> None:
    rr = RoundRobin(["c", "a", "b"])
    assert [rr.pick() for _ in range(6)] == ["a", "b", "c", "a", "b", "c"]
    assert rr.pick(exclude={"a"}) == "b"
    assert rr.pick(exclude={"a", "b", "c"}) is None
    assert RoundRobin().pick() is None


def test_round_robin_keeps_its_place_across_updates() -> None:
    rr = RoundRobin(["a", "b", "c"])
    assert rr.pick() == "a"  # b is due
    rr.update(["a", "b", "c", "d"])
    assert rr.pick() == "b"  # an addition does not restart the cycle
    rr.update(["a", "c", "d"])  # c was due and stays
    assert rr.pick() == "c"
    rr.update(["a", "c", "e"])  # d was due and left: its successor in order
    assert rr.pick() == "e"
    rr.update([])
    assert rr.pick() is None
    rr.update(["x"])
    assert rr.pick() == "x"


def test_round_robin_is_even_over_many_picks() -> None:
    rr = RoundRobin([f"b{i}" for i in range(7)])
    counts: dict[str, int] = {}
    for _ in range(700):
        b = rr.pick()
        assert b is not None
        counts[b] = counts.get(b, 0) + 1
    assert set(counts.values()) == {100}


@pytest.mark.parametrize(("method", "tries", "sent", "started", "retry"), [
    ("GET", 1, False, False, True),     # connect failed: never reached the backend
    ("POST", 1, False, False, True),    # … safe for any method
    ("GET", 1, True, False, True),      # sent, idempotent
    ("PUT", 1, True, False, True),
    ("DELETE", 2, True, False, True),
    ("OPTIONS", 1, True, False, True),
    ("HEAD", 1, True, False, True),
    ("POST", 1, True, False, False),    # sent, not idempotent
    ("PATCH", 1, True, False, False),
    ("PUT", 1, False, True, False),     # the streamed body is gone
    ("GET", 3, False, False, False),    # out of tries
])
def test_retry_policy(method: str, tries: int, sent: bool, started: bool, retry: bool) -> None:
    assert RetryPolicy(3).should_retry(method, tries, sent=sent, body_started=started) is retry


def test_forward_headers() -> None:
    incoming = CIMultiDict([
        ("Host", "www.example.com"), ("Connection", "keep-alive, X-Secret"),
        ("Keep-Alive", "timeout=5"), ("X-Secret", "hop"), ("TE", "trailers"),
        ("Transfer-Encoding", "chunked"), ("Upgrade", "h2c"), ("Expect", "100-continue"),
        ("X-Forwarded-For", "1.1.1.1"), ("X-Forwarded-For", "2.2.2.2"),
        ("X-Forwarded-Proto", "https"), ("Cookie", "a=1"), ("Cookie", "b=2"),
        ("Content-Length", "5")])
    out = forward_headers(incoming, "10.0.0.9", "http")
    assert out["Host"] == "www.example.com"
    assert out["X-Forwarded-For"] == "1.1.1.1, 2.2.2.2, 10.0.0.9"
    assert out["X-Forwarded-Proto"] == "http"  # the edge does not trust the client's claim
    assert out["X-Forwarded-Host"] == "www.example.com"
    assert out.getall("Cookie") == ["a=1", "b=2"]
    assert out["Content-Length"] == "5"
    for gone in ("Connection", "Keep-Alive", "X-Secret", "TE", "Transfer-Encoding", "Upgrade",
                 "Expect"):
        assert gone not in out, gone
    assert "Host" not in forward_headers(incoming, None, preserve_host=False)
    assert "X-Forwarded-For" in forward_headers(CIMultiDict(), "1.2.3.4")


def test_backward_headers_drop_hop_by_hop_only() -> None:
    up = CIMultiDict([("Set-Cookie", "a=1"), ("Set-Cookie", "b=2"), ("Connection", "close"),
                      ("Transfer-Encoding", "chunked"), ("Content-Length", "3"),
                      ("Content-Encoding", "gzip")])
    out = backward_headers(up)
    assert out.getall("Set-Cookie") == ["a=1", "b=2"]
    assert out["Content-Encoding"] == "gzip" and out["Content-Length"] == "3"
    assert "Connection" not in out and "Transfer-Encoding" not in out


def test_parse_listen_and_502_text() -> None:
    assert parse_listen("127.0.0.1:8181") == ("127.0.0.1", 8181)
    assert parse_listen(":80") == ("0.0.0.0", 80)
    assert parse_listen("[::1]:80") == ("::1", 80)
    for bad in ("8080", "h:x", "h:99999"):
        with pytest.raises(ValueError):
            parse_listen(bad)
    assert "no backend is registered under /services/apache/" in \
        bad_gateway_text("/services/apache/", [], 0)
    text = bad_gateway_text("/s/", [("http://a:1", "Connection refused")], 1)
    assert "http://a:1: Connection refused" in text


# -- the proxy, in process, on a memory registry ------------------------------------------------------


@dataclass
class Rig:
    lt: LoopThread
    reg: Registry
    prefix: str
    backends: list[HttpBackend]
    proxy: Proxy
    logs: list[str] = field(default_factory=list)

    async def acall(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run on the rig's loop without blocking the test's (requests keep flowing)."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.lt.loop))

    def key(self, b: HttpBackend) -> str:
        return f"{self.prefix}{b.host}"

    def origin(self, b: HttpBackend) -> str:
        return f"http://{b.addr}"

    async def register(self, *bs: HttpBackend) -> None:
        for b in bs:
            await self.acall(self.reg.put(self.key(b), b.addr.encode()))

    async def unregister(self, b: HttpBackend) -> None:
        await self.acall(self.reg.delete(self.key(b)))

    async def settle(self, n: int) -> None:
        """Wait until the proxy has ``n`` active backends."""
        deadline = time.monotonic() + 5
        while len(self.proxy.backends.active) != n:
            assert time.monotonic() < deadline, self.proxy.backends.active
            await asyncio.sleep(0.005)

    @property
    def url(self) -> str:
        return self.proxy.url


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    lt = LoopThread()
    backends = [HttpBackend(lt, f"b{i}", f"127.0.0.{i + 2}") for i in range(3)]
    reg = lt.call(open_registry(f"memory://proxy-{uuid.uuid4().hex}"))
    logs: list[str] = []
    proxy = Proxy(RegistryKV(reg), ProxySettings("/services/apache", connect_timeout=1.0,
                                                 first_snapshot_wait=1.0), logs.append)
    lt.call(proxy.start("127.0.0.1", 0))
    r = Rig(lt, reg, "/services/apache/", backends, proxy, logs)
    try:
        yield r
    finally:
        for b in backends:
            b.set_release()
        lt.call(proxy.close())
        for b in backends:
            b.stop()
        lt.call(reg.close())
        lt.stop()


async def get_texts(url: str, n: int) -> list[str]:
    async with aiohttp.ClientSession() as s:
        out = []
        for _ in range(n):
            async with s.get(url) as r:
                assert r.status == 200, await r.text()
                out.append(await r.text())
        return out


async def test_round_robin_over_registered_backends(rig: Rig) -> None:
    await rig.register(*rig.backends)
    await rig.settle(3)
    texts = await get_texts(rig.url + "/", 30)
    assert {t: texts.count(t) for t in set(texts)} == {"b0": 10, "b1": 10, "b2": 10}
    assert texts[:3] == ["b0", "b1", "b2"]


async def test_no_backend_is_a_502_that_says_why(rig: Rig) -> None:
    async with aiohttp.ClientSession() as s, s.get(rig.url + "/x") as r:
        assert r.status == 502
        body = await r.text()
    assert "no backend is registered under /services/apache/" in body
    assert "flotte announce" in body


async def test_keys_added_and_removed_while_requests_flow(rig: Rig) -> None:
    """The measurement of the report: key removal → no more requests to that backend."""
    b0, b1, b2 = rig.backends
    await rig.register(b0, b1)
    await rig.settle(2)
    statuses: list[int] = []
    stop = asyncio.Event()

    async def pump() -> None:
        async with aiohttp.ClientSession() as s:
            while not stop.is_set():
                async with s.get(rig.url + "/") as r:
                    await r.read()
                    statuses.append(r.status)

    pumps = [asyncio.create_task(pump()) for _ in range(4)]
    try:
        await asyncio.sleep(0.2)
        added_at = time.monotonic()
        await rig.register(b2)
        await rig.settle(3)
        await asyncio.sleep(0.2)
        first_b2 = min(b2.hit_times) - added_at
        removed_at = time.monotonic()
        await rig.unregister(b0)
        await asyncio.sleep(0.5)
    finally:
        stop.set()
        await asyncio.gather(*pumps)
    out_of_set = rig.proxy.backends.removed_at[rig.origin(b0)] - removed_at
    late = [t - removed_at for t in b0.hit_times if t > removed_at]
    last_hit = max(late, default=0.0)
    print(f"\nproxy (memory registry watch): new backend's first request {first_b2 * 1000:.1f} ms "
          f"after its key was put; removed backend out of the set {out_of_set * 1000:.1f} ms "
          f"after its key was deleted, last request it got started "
          f"{last_hit * 1000:.1f} ms after ({len(statuses)} requests, all 200: "
          f"{set(statuses) == {200}})")
    assert set(statuses) == {200}
    assert out_of_set < 0.5  # measured: ~1 ms
    assert last_hit < 0.5
    assert b1.hit_times[-1] > removed_at + 0.3 and b2.hit_times[-1] > removed_at + 0.3


async def test_removed_backend_drains_in_flight_requests(rig: Rig) -> None:
    a, b, _ = rig.backends
    await rig.register(a)
    await rig.settle(1)
    async with aiohttp.ClientSession() as s:
        slow = asyncio.create_task(s.get(rig.url + "/slow"))
        wait_until = time.monotonic() + 5
        while a.hits == 0:
            assert time.monotonic() < wait_until
            await asyncio.sleep(0.01)
        await rig.register(b)
        await rig.unregister(a)
        await rig.settle(1)
        assert rig.proxy.backends.active == [rig.origin(b)]
        assert rig.proxy.backends.draining == {rig.origin(a)}
        hits_before = a.hits
        assert await get_texts(rig.url + "/", 5) == ["b1"] * 5  # no new request for a
        assert a.hits == hits_before
        assert not slow.done()
        a.set_release()
        resp = await asyncio.wait_for(slow, 5)
        assert resp.status == 200 and await resp.text() == "b0 slow done"
        resp.release()
    assert f"backend removed: {rig.origin(a)}; draining 1 request(s) in flight" in rig.logs
    wait_for(lambda: f"backend drained: {rig.origin(a)}" in rig.logs, timeout=2)
    assert rig.proxy.backends.draining == set()


async def test_dead_backend_is_retried_on_the_next(rig: Rig) -> None:
    live, _, _ = rig.backends
    dead_port = free_port()
    await rig.acall(rig.reg.put(f"{rig.prefix}dead", f"127.0.0.5:{dead_port}".encode()))
    await rig.register(live)
    await rig.settle(2)
    assert await get_texts(rig.url + "/", 10) == ["b0"] * 10
    async with aiohttp.ClientSession() as s:
        # a POST whose connection failed never reached the backend: retried too
        for _ in range(2):
            async with s.post(rig.url + "/echo", data=b"hello") as r:
                assert r.status == 200 and await r.read() == b"hello"
    await rig.unregister(live)
    await rig.settle(1)
    async with aiohttp.ClientSession() as s, s.get(rig.url + "/") as r:
        assert r.status == 502
        text = await r.text()
    assert f"http://127.0.0.5:{dead_port}: " in text and "refused" in text.lower()


async def test_backend_that_drops_the_request_idempotent_only_retried(rig: Rig) -> None:
    """Accepts, reads, closes without answering: the request was sent, so only an
    idempotent method may go to the next backend."""
    good, _, _ = rig.backends

    async def drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.close()

    async def start() -> asyncio.Server:
        return await asyncio.start_server(drop, "127.0.0.6", 0)

    server = await rig.acall(start())
    port = server.sockets[0].getsockname()[1]
    try:
        await rig.acall(rig.reg.put(f"{rig.prefix}a-dropper", f"127.0.0.6:{port}".encode()))
        await rig.register(good)
        await rig.settle(2)
        async with aiohttp.ClientSession() as s:
            gets = []
            for _ in range(4):
                async with s.get(rig.url + "/") as r:
                    gets.append((r.status, await r.text()))
            assert gets == [(200, "b0")] * 4
            posts = []
            for _ in range(4):
                async with s.post(rig.url + "/", data=b"x") as r:
                    posts.append(r.status)
            assert sorted(posts) == [200, 200, 502, 502]
    finally:
        server.close()


async def test_forwarded_headers_host_and_path(rig: Rig) -> None:
    await rig.register(rig.backends[0])
    await rig.settle(1)
    async with aiohttp.ClientSession() as s, s.get(rig.url + "/headers?q=a%20b&x=1",
                     headers={"Host": "www.example.com", "X-Forwarded-For": "203.0.113.7",
                              "Connection": "keep-alive, X-Hop", "X-Hop": "1",
                              "Cookie": "id=1"},
                     skip_auto_headers=("Accept-Encoding", "User-Agent", "Accept")) as r:
        got = await r.json()
    h = got["headers"]
    assert got["path_qs"] == "/headers?q=a%20b&x=1"
    assert h["Host"] == "www.example.com"
    assert h["X-Forwarded-For"] == "203.0.113.7, 127.0.0.1"
    assert h["X-Forwarded-Proto"] == "http"
    assert h["X-Forwarded-Host"] == "www.example.com"
    assert h["Cookie"] == "id=1"
    assert "X-Hop" not in h
    # no headers the client did not send (aiohttp's client would add Accept-Encoding:
    # gzip, and the backend would then compress for a client that cannot decompress)
    for absent in ("Accept-Encoding", "User-Agent", "Accept"):
        assert absent not in h, absent


async def test_streaming_both_ways(rig: Rig) -> None:
    await rig.register(rig.backends[0])
    await rig.settle(1)
    async with aiohttp.ClientSession() as s:
        # download: the first chunk arrives long before the backend has finished
        start = time.monotonic()
        async with s.get(rig.url + "/stream?n=5&delay=0.2&size=4") as r:
            first = await r.content.readany()
            first_at = time.monotonic() - start
            rest = await r.read()
            total = time.monotonic() - start
        assert first.startswith(b"AAAA")
        assert first + rest == b"AAAABBBBCCCCDDDDEEEE"
        assert first_at < 0.15 and total >= 0.8, (first_at, total)

        # upload, chunked, 8 MiB: streamed back intact
        payload = bytes(range(256)) * 4096 * 8

        async def gen() -> AsyncIterator[bytes]:
            for i in range(0, len(payload), 65536):
                yield payload[i:i + 65536]

        async with s.post(rig.url + "/echo", data=gen()) as r:
            assert r.status == 200
            assert r.headers["X-Got-TE"] == "chunked"
            assert await r.read() == payload
        # a body with Content-Length keeps it upstream
        async with s.put(rig.url + "/echo", data=b"12345") as r:
            assert r.headers["X-Got-Length"] == "5" and r.headers["X-Got-TE"] == "-"
            assert r.headers["X-Method"] == "PUT"
            assert await r.read() == b"12345"
        async with s.head(rig.url + "/") as r:
            assert r.status == 200 and r.headers["Content-Length"] == "2"
            assert await r.read() == b""


async def test_expect_100_continue_is_answered_once_a_backend_is_connected(rig: Rig) -> None:
    """curl sends ``Expect: 100-continue`` for bodies over 1 KiB and waits up to 1 s for
    the interim answer; the proxy must give it, or every upload gains a second."""
    await rig.register(rig.backends[0])
    await rig.settle(1)
    reader, writer = await asyncio.open_connection("127.0.0.1", rig.proxy.port)
    try:
        start = time.monotonic()
        writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                     b"Expect: 100-continue\r\n\r\n")
        await writer.drain()
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 0.5)
        assert interim.startswith(b"HTTP/1.1 100 Continue")
        writer.write(b"hello")
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
        assert head.startswith(b"HTTP/1.1 200")
        assert b"X-Got-Length: 5" in head
        assert time.monotonic() - start < 0.5
    finally:
        writer.close()


@pytest.mark.parametrize("framing", [b"Content-Length: 100\r\n",
                                     b"Transfer-Encoding: chunked\r\n"])
async def test_backend_dying_mid_body_truncates_the_clients_body(rig: Rig,
                                                                  framing: bytes) -> None:
    """After the headers are sent the proxy cannot answer 502 any more; it must not
    make a cut-off body look complete (by ending the chunked stream cleanly)."""
    chunked = b"chunked" in framing

    async def half(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\n" + framing + b"\r\n")
        writer.write(b"a\r\n0123456789\r\n" if chunked else b"0123456789")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.transport.abort()

    async def start() -> asyncio.Server:
        return await asyncio.start_server(half, "127.0.0.7", 0)

    server = await rig.acall(start())
    port = server.sockets[0].getsockname()[1]
    try:
        await rig.acall(rig.reg.put(f"{rig.prefix}half", f"127.0.0.7:{port}".encode()))
        await rig.settle(1)
        async with aiohttp.ClientSession() as s, s.get(rig.url + "/") as r:
            assert r.status == 200
            with pytest.raises(aiohttp.ClientPayloadError):
                await r.read()
        assert any("failed mid-response" in line for line in rig.logs)
    finally:
        server.close()


async def test_seed_json_values_and_bad_values(rig: Rig) -> None:
    b = rig.backends[1]
    value = json.dumps({"host": "core-01", "ipv4_addr": b.host, "port": str(b.port)})
    await rig.acall(rig.reg.put(f"{rig.prefix}{b.host}", value.encode()))
    await rig.acall(rig.reg.put(f"{rig.prefix}junk", b"not a backend"))
    await rig.settle(1)
    assert await get_texts(rig.url + "/", 2) == ["b1", "b1"]
    assert any(line.startswith(f"ignoring {rig.prefix}junk") for line in rig.logs)


# -- over the API (polling), with the API going away ------------------------------------------------


async def test_proxy_over_the_api_follows_and_survives_an_api_outage() -> None:
    api = ApiThread()
    lt = LoopThread()
    backends = [HttpBackend(lt, f"b{i}", f"127.0.0.{i + 2}") for i in range(2)]
    logs: list[str] = []
    proxy = Proxy(ApiKV.open(api.endpoint, poll_interval=0.1),
                  ProxySettings("/services/web", first_snapshot_wait=2.0), logs.append)
    try:
        for b in backends:
            api.put(f"/services/web/{b.host}", b.addr)
        lt.call(proxy.start("127.0.0.1", 0))
        assert len(proxy.backends.active) == 2
        assert sorted(await get_texts(proxy.url + "/", 4)) == ["b0", "b0", "b1", "b1"]
        deleted = time.monotonic()
        api.delete(f"/services/web/{backends[0].host}")
        wait_for(lambda: len(proxy.backends.active) == 1, timeout=3, step=0.005)
        latency = proxy.backends.removed_at[f"http://{backends[0].addr}"] - deleted
        print(f"\nproxy over the API (poll 100 ms): backend out of the set {latency * 1000:.0f} "
              "ms after its key was deleted")
        assert latency < 0.5
        api.stop_api()
        wait_for(lambda: any("cannot follow" in line for line in logs), timeout=5)
        assert await get_texts(proxy.url + "/", 3) == ["b1"] * 3  # last known set kept
        api.start_api()
        api.put(f"/services/web/{backends[0].host}", backends[0].addr)
        wait_for(lambda: len(proxy.backends.active) == 2, timeout=5)
        assert "following /services/web/ again" in logs
    finally:
        lt.call(proxy.close())
        lt.call(proxy.kv.close())
        for b in backends:
            b.stop()
        lt.stop()
        api.close()


# -- the command, as a process, on etcd: the numbers ------------------------------------------------

BACKEND_SCRIPT = """
import sys
from aiohttp import web
async def ok(request):
    return web.Response(text=sys.argv[3])
app = web.Application()
app.router.add_get("/", ok)
web.run_app(app, host=sys.argv[1], port=int(sys.argv[2]), access_log=None, print=None)
"""


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdServer]:
    require("etcd", "etcd-server")
    server = EtcdServer(tmp_path_factory.mktemp("etcd-proxy"))
    server.start()
    try:
        yield server
    finally:
        server.close()


class Out:
    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self.thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self.thread.start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.lines.append(line.rstrip("\n"))


def _per_request(url: str, n: int) -> list[float]:
    async def go() -> list[float]:
        out = []
        async with aiohttp.ClientSession() as s:
            for _ in range(50):  # warm up: connections, caches
                async with s.get(url) as r:
                    await r.read()
            for _ in range(n):
                t = time.perf_counter()
                async with s.get(url) as r:
                    await r.read()
                out.append(time.perf_counter() - t)
        return out

    return asyncio.run(go())


def test_proxy_command_on_etcd_latency_and_overhead(etcd: EtcdServer) -> None:
    prefix = f"/services/p{uuid.uuid4().hex[:8]}"
    hosts = ["127.0.0.2", "127.0.0.3"]
    ports = [free_port() for _ in hosts]
    servers = [subprocess.Popen([PYTHON, "-c", BACKEND_SCRIPT, h, str(p), f"s{i}"])
               for i, (h, p) in enumerate(zip(hosts, ports, strict=True))]
    kvs = LoopThread()
    reg: Registry = kvs.call(open_registry(etcd.url))
    proc = popen(flotte_cmd("flotte.cli.proxy", "proxy", "--registry", etcd.url,
                            "--listen", "127.0.0.1:0", "--backends", prefix))
    out = Out(proc)
    try:
        for h, p in zip(hosts, ports, strict=True):
            wait_for(functools.partial(_connects, h, p), timeout=15)
            kvs.call(reg.put(f"{prefix}/{h}", f"{h}:{p}".encode()))
        wait_for(lambda: any(line.startswith("proxying ") for line in out.lines), timeout=15)
        line = next(line for line in out.lines if line.startswith("proxying "))
        match = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        assert match is not None
        url = f"http://127.0.0.1:{match.group(1)}/"
        wait_for(lambda: sum("backend added" in x for x in out.lines) == 2, timeout=5)

        n = 1000
        direct = _per_request(f"http://{hosts[0]}:{ports[0]}/", n)
        proxied = _per_request(url, n)
        d50, p50 = statistics.median(direct), statistics.median(proxied)
        d99 = sorted(direct)[int(n * 0.99)]
        p99 = sorted(proxied)[int(n * 0.99)]

        # removal latency: delete the key, then find when the proxy stops using it
        async def removal() -> float:
            async with aiohttp.ClientSession() as s:
                for _ in range(4):
                    async with s.get(url) as r:
                        await r.read()
                deleted = time.monotonic()
                await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(
                    reg.delete(f"{prefix}/{hosts[0]}"), kvs.loop))
                last_s0 = deleted
                while time.monotonic() - deleted < 1.0:
                    async with s.get(url) as r:
                        if await r.text() == "s0":
                            last_s0 = time.monotonic()
                return last_s0 - deleted

        removal_latency = asyncio.run(removal())
        print(f"\nproxy on etcd, {n} sequential keep-alive GETs: direct p50 {d50 * 1e3:.3f} ms "
              f"p99 {d99 * 1e3:.3f} ms; proxied p50 {p50 * 1e3:.3f} ms p99 {p99 * 1e3:.3f} ms; "
              f"overhead p50 {(p50 - d50) * 1e3:.3f} ms; key removal → last request to that "
              f"backend {removal_latency * 1e3:.1f} ms")
        assert removal_latency < 0.5
        wait_for(lambda: any("backend removed" in x for x in out.lines), timeout=2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        out.thread.join(5)
        assert out.lines[-1] == "stopped"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for s in servers:
            s.terminate()
            s.wait(5)
        kvs.call(reg.close())
        kvs.stop()


def _connects(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def test_proxy_command_bad_listen_and_missing_backends() -> None:
    proc = popen(flotte_cmd("flotte.cli.proxy", "proxy", "--listen", "nope",
                            "--backends", "/services/x"))
    text, _ = proc.communicate(timeout=20)
    assert proc.returncode == 2 and "is not HOST:PORT" in text
    proc = popen(flotte_cmd("flotte.cli.proxy", "proxy"))
    text, _ = proc.communicate(timeout=20)
    assert proc.returncode == 2 and "--backends" in text
