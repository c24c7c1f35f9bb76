"""etcd-specific tests of :mod:`flotte.registry.etcd` against Debian's etcd.

The generic registry behaviour is checked by the conformance suite over every
backend; this file covers what only the etcd backend has: URL parsing,
failover between endpoints, TLS, authentication, paging of large ranges,
and surviving an etcd restart (watch resume without loss, lease keep-alive).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path

import grpc
import grpc.aio
import pytest
from aetcd import rpc

from etcd_server import EtcdServer, free_port
from flotte.registry.etcd import DEFAULT_TIMEOUT, EtcdRegistry, parse_url
from flotte.registry.types import (
    CompactedError,
    Event,
    EventType,
    InvalidRequest,
    LeaseNotFound,
    Put,
    RegistryError,
    Unavailable,
    UnknownURL,
    value,
)

# ---------------------------------------------------------------------------
# fixtures


Require = Callable[[str, str], str]


@pytest.fixture(scope="module")
def _shared_holder() -> Iterator[dict[str, EtcdServer]]:
    holder: dict[str, EtcdServer] = {}
    yield holder
    if "etcd" in holder:
        holder["etcd"].close()


@pytest.fixture
def shared_etcd(require_binary: Require, _shared_holder: dict[str, EtcdServer],
                tmp_path_factory: pytest.TempPathFactory) -> EtcdServer:
    """One etcd per module for the tests that neither restart it nor change its settings.

    Started on first use, after ``require_binary`` (tests/conftest.py) had its
    say: skipped without etcd on a developer machine, failed under CI=true.
    """
    require_binary("etcd", "etcd-server")
    if "etcd" not in _shared_holder:
        etcd = EtcdServer(tmp_path_factory.mktemp("etcd-shared"))
        etcd.start()
        _shared_holder["etcd"] = etcd
    return _shared_holder["etcd"]


@pytest.fixture
async def reg(shared_etcd: EtcdServer) -> AsyncIterator[EtcdRegistry]:
    r = await EtcdRegistry.from_url(shared_etcd.url)
    yield r
    await r.close()


@pytest.fixture
def own_etcd(require_binary: Require, tmp_path: Path) -> Callable[..., EtcdServer]:
    """A factory of etcds of the test's own, for tests that restart them or change settings."""
    require_binary("etcd", "etcd-server")

    def make(*, tls: bool = False, extra_args: Sequence[str] = ()) -> EtcdServer:
        if tls:
            require_binary("openssl", "openssl")
        return EtcdServer(tmp_path / "own", tls=tls, extra_args=extra_args)

    return make


# ---------------------------------------------------------------------------
# URLs (no etcd needed)


def test_parse_url_defaults() -> None:
    cfg = parse_url("etcd://127.0.0.1:2379")
    assert cfg.endpoints == (("127.0.0.1", 2379),)
    assert not cfg.tls and cfg.user is None and cfg.timeout == DEFAULT_TIMEOUT


def test_parse_url_many_endpoints_default_port_ipv6() -> None:
    cfg = parse_url("etcd://Node-1.example:1234,node2,[::1]:23790,node2:2379/")
    assert cfg.endpoints == (("node-1.example", 1234), ("node2", 2379), ("::1", 23790))
    assert cfg.endpoint_names == ["node-1.example:1234", "node2:2379", "[::1]:23790"]


def test_parse_url_all_options_and_password_hidden() -> None:
    cfg = parse_url("etcds://10.0.0.1:2379?ca=/etc/ca.pem&cert=/c.pem&key=/k.pem"
                    "&user=flotte&password=s%3Acret&timeout=1.5")
    assert cfg.tls and (cfg.ca, cfg.cert, cfg.key) == ("/etc/ca.pem", "/c.pem", "/k.pem")
    assert (cfg.user, cfg.password, cfg.timeout) == ("flotte", "s:cret", 1.5)
    assert "s:cret" not in cfg.display_url and "s%3Acret" not in cfg.display_url
    assert "password=***" in cfg.display_url


@pytest.mark.parametrize(("url", "words"), [
    ("http://127.0.0.1:2379", "not an etcd URL"),
    ("etcd://", "names no endpoint"),
    ("etcd://h:0", "bad port"),
    ("etcd://h:65536", "bad port"),
    ("etcd://h:abc", "bad port"),
    ("etcd://h:", "empty port"),
    ("etcd://h:1,,h:2", "empty endpoint"),
    ("etcd://h:1/v3/kv", "has no path"),
    ("etcd://user:pw@h:1", "credentials in the query"),
    ("etcd://::1:2379", "in brackets"),
    ("etcd://[nonsense]:2379", "bad IPv6"),
    ("etcd://h_1$:2379", "bad host"),
    ("etcd://h?ca=/ca.pem", "etcds://"),
    ("etcds://h?cert=/c.pem", "both cert= and key="),
    ("etcd://h?user=u", "both user= and password="),
    ("etcd://h?timeout=0", "positive number"),
    ("etcd://h?timeout=nan", "positive number"),
    ("etcd://h?timeout=soon", "positive number"),
    ("etcd://h?bogus=1", "unknown option 'bogus'"),
    ("etcd://h?user=a&user=b&password=p", "given 2 times"),
    ("etcd://h?user=&password=p", "is empty"),
])
def test_parse_url_rejects(url: str, words: str) -> None:
    with pytest.raises(UnknownURL) as exc:
        parse_url(url)
    assert words in str(exc.value)
    assert isinstance(exc.value, InvalidRequest)


async def test_missing_certificate_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "ca.pem"
    with pytest.raises(UnknownURL, match=r"ca= file .*nope/ca.pem"):
        await EtcdRegistry.from_url(f"etcds://127.0.0.1:{free_port()}?ca={missing}")


# ---------------------------------------------------------------------------
# unreachable clusters and failover


async def test_unreachable_cluster_names_every_endpoint_quickly() -> None:
    a, b = free_port(), free_port()
    t0 = time.monotonic()
    with pytest.raises(Unavailable) as exc:
        await EtcdRegistry.from_url(f"etcd://127.0.0.1:{a},127.0.0.1:{b}")
    assert time.monotonic() - t0 < 3
    assert str(exc.value) == f"etcd unreachable at 127.0.0.1:{a}, 127.0.0.1:{b}: connection refused"


async def test_silent_endpoint_times_out() -> None:
    """An endpoint that accepts TCP but never answers (a hung host) costs ``timeout``."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        port = sock.getsockname()[1]
        t0 = time.monotonic()
        with pytest.raises(Unavailable, match=rf"unreachable at 127.0.0.1:{port}: no answer "
                                              r"within 0.5s"):
            await EtcdRegistry.from_url(f"etcd://127.0.0.1:{port}?timeout=0.5")
        assert time.monotonic() - t0 < 2.5


@pytest.mark.etcd
async def test_failover_skips_a_dead_first_endpoint(shared_etcd: EtcdServer) -> None:
    dead = free_port()
    async with await EtcdRegistry.from_url(
            f"etcd://127.0.0.1:{dead},{shared_etcd.endpoint}") as r:
        watch = r.watch("/failover/")
        for i in range(20):  # round robin must never pick the dead member
            await r.put(f"/failover/{i}", b"x")
            assert (await r.get(f"/failover/{i}")) is not None
        got = [await asyncio.wait_for(watch.__anext__(), 5) for _ in range(20)]
        assert [e.kv.key for e in got] == [f"/failover/{i}" for i in range(20)]
        await watch.close()


@pytest.mark.etcd
async def test_failover_with_host_names(shared_etcd: EtcdServer) -> None:
    """Names are resolved into one address list (gRPC has no resolver for several names)."""
    url = f"etcd://localhost:{free_port()},localhost:{shared_etcd.client_port}"
    async with await EtcdRegistry.from_url(url) as r:
        rev = await r.put("/names/k", b"v")
        assert r.revision == rev


# ---------------------------------------------------------------------------
# TLS and authentication


@pytest.mark.etcd
async def test_tls_with_ca_and_client_certificate(
        tmp_path: Path, own_etcd: Callable[..., EtcdServer]) -> None:
    with own_etcd(tls=True) as etcd:
        assert etcd.url.startswith("etcds://")
        async with await EtcdRegistry.from_url(etcd.url) as r:
            watch = r.watch("/tls/")
            rev = await r.put("/tls/k", b"secret")
            kv = await r.get("/tls/k")
            assert kv is not None and kv.value == b"secret"
            event = await asyncio.wait_for(watch.__anext__(), 5)
            assert event.kv.mod_revision == rev
            await watch.close()

        # etcd runs with --client-cert-auth: no client certificate, no service.
        with pytest.raises(Unavailable, match="check cert= and key="):
            await EtcdRegistry.from_url(f"etcds://{etcd.endpoint}?ca={etcd.ca_file}")
        # CAs that did not sign the server certificate (Debian's public bundle).
        other_ca = Path("/etc/ssl/certs/ca-certificates.crt")
        if other_ca.exists():
            with pytest.raises(Unavailable, match="not trusted"):
                await EtcdRegistry.from_url(
                    f"etcds://{etcd.endpoint}?ca={other_ca}&cert={etcd.cert_file}"
                    f"&key={etcd.key_file}")
        # A key that does not belong to the certificate; a file that is no certificate.
        with pytest.raises(Unavailable, match="does key= belong to cert="):
            await EtcdRegistry.from_url(f"etcds://{etcd.endpoint}?ca={etcd.ca_file}"
                                        f"&cert={etcd.cert_file}&key={etcd.server_key}")
        junk = tmp_path / "junk.pem"
        junk.write_text("not a certificate\n")
        with pytest.raises(UnknownURL, match="holds no PEM certificate"):
            await EtcdRegistry.from_url(f"etcds://{etcd.endpoint}?ca={junk}")
        # Plain gRPC against a TLS port.
        with pytest.raises(Unavailable, match="use etcds://"):
            await EtcdRegistry.from_url(f"etcd://{etcd.endpoint}")


async def _enable_auth(endpoint: str, password: str) -> None:
    """root user + auth enable, straight over gRPC (etcdctl is not packaged here)."""
    async with grpc.aio.insecure_channel(endpoint) as channel:
        auth = rpc.AuthStub(channel)
        await auth.UserAdd(rpc.AuthUserAddRequest(name="root", password=password), timeout=5)
        await auth.UserGrantRole(rpc.AuthUserGrantRoleRequest(user="root", role="root"),
                                 timeout=5)
        await auth.AuthEnable(rpc.AuthEnableRequest(), timeout=5)


@pytest.mark.etcd
async def test_user_password_and_token_renewal(own_etcd: Callable[..., EtcdServer]) -> None:
    # Tokens live 1 s here, so the test also sees one expire and get renewed.
    with own_etcd(extra_args=["--auth-token-ttl", "1"]) as etcd:
        await _enable_auth(etcd.endpoint, "pw")
        async with await EtcdRegistry.from_url(f"{etcd.url}?user=root&password=pw") as r:
            assert "password=***" in r.url and "=pw" not in r.url
            await r.put("/auth/k", b"v")
            await asyncio.sleep(2.5)  # token expired (TTL 1 s, checked every 1 s)
            assert (await r.get("/auth/k")) is not None  # re-authenticated, sent again
            # The other two call paths, with a token etcd does not know:
            r._token = "not-a-token"
            watch = r.watch("/auth/")  # etcd reports it on a watch as "permission denied"
            first = asyncio.ensure_future(watch.__anext__())
            for _ in range(50):
                if r._token != "not-a-token":
                    break
                await asyncio.sleep(0.02)
            assert r._token != "not-a-token", "the watch did not renew the token"
            rev = await r.put("/auth/k2", b"v")
            assert (await asyncio.wait_for(first, 5)).kv.mod_revision == rev
            await watch.close()
            lease = await r.grant(5)
            r._token = "not-a-token"
            assert await lease.keepalive() == 5

        with pytest.raises(RegistryError, match="authentication as 'root' failed") as exc:
            await EtcdRegistry.from_url(f"{etcd.url}?user=root&password=wrong")
        assert not isinstance(exc.value, Unavailable)
        async with await EtcdRegistry.from_url(etcd.url) as anonymous:
            with pytest.raises(RegistryError) as exc:
                await anonymous.put("/auth/k", b"x")
            assert not isinstance(exc.value, Unavailable)


# ---------------------------------------------------------------------------
# large data


@pytest.mark.etcd
async def test_large_range_is_paged_and_complete(reg: EtcdRegistry) -> None:
    """30 000 keys × 300 B ≈ 9 MB: more than gRPC's 4 MiB default in one reply."""
    n, val = 30_000, b"v" * 300
    keys = [f"/big/{i:06d}" for i in range(n)]
    sem = asyncio.Semaphore(8)

    async def load(chunk: list[str]) -> None:
        async with sem:
            await reg.txn([], [Put(k, val) for k in chunk])

    await asyncio.gather(*(load(keys[i:i + 128]) for i in range(0, n, 128)))  # etcd: ≤128 ops
    t0 = time.monotonic()
    got = await reg.range("/big/")
    elapsed = time.monotonic() - t0
    assert [kv.key for kv in got] == keys
    assert all(kv.value == val for kv in got)
    assert sum(len(kv.key) + len(kv.value) for kv in got) > 4 << 20
    assert elapsed < 10
    some = await reg.range("/big/", limit=2500)  # a limit that spans pages
    assert [kv.key for kv in some] == keys[:2500]
    assert await reg.delete("/big/", prefix=True) == n


@pytest.mark.etcd
async def test_revision_larger_than_a_message_arrives_whole(reg: EtcdRegistry) -> None:
    """Deleting 12 × 1 MiB keys is one revision whose watch reply (with prev_kv) exceeds
    etcd's 1.5 MiB message size, so etcd sends it in fragments; the watch hands the
    revision out only once it is complete (a resume is from the last revision + 1)."""
    for i in range(12):
        await reg.put(f"/frag/{i:02d}", bytes([65 + i]) * (1 << 20))
    watch = reg.watch("/frag/")
    assert await reg.delete("/frag/", prefix=True) == 12
    events = [await asyncio.wait_for(watch.__anext__(), 5) for _ in range(12)]
    await watch.close()
    assert [e.kv.key for e in events] == [f"/frag/{i:02d}" for i in range(12)]
    assert len({e.kv.mod_revision for e in events}) == 1
    assert all(e.prev_kv is not None and len(e.prev_kv.value) == 1 << 20 for e in events)


# ---------------------------------------------------------------------------
# etcd specifics of the primitives


@pytest.mark.etcd
async def test_revision_comes_from_headers(reg: EtcdRegistry) -> None:
    assert reg.revision > 0  # the connect probe already saw one
    rev = await reg.put("/rev/k", b"1")
    assert reg.revision == rev
    res = await reg.txn([value("/rev/missing") == b""], [], [Put("/rev/k", b"2")])
    assert not res.succeeded  # etcd: a value compare on a missing key is false
    assert res.responses == [res.revision] and reg.revision == res.revision == rev + 1


@pytest.mark.etcd
async def test_delete_event_shape_and_prev_kv(reg: EtcdRegistry) -> None:
    watch = reg.watch("/shape/")
    put_rev = await reg.put("/shape/k", b"v")
    del_rev = reg.revision + 1
    assert await reg.delete("/shape/k") == 1
    put, delete = [await asyncio.wait_for(watch.__anext__(), 5) for _ in range(2)]
    await watch.close()
    assert put.type is EventType.PUT and put.prev_kv is None
    assert delete.type is EventType.DELETE
    assert (delete.kv.key, delete.kv.value, delete.kv.version) == ("/shape/k", b"", 0)
    assert delete.kv.mod_revision == del_rev
    assert delete.prev_kv is not None and delete.prev_kv.mod_revision == put_rev


@pytest.mark.etcd
async def test_watch_from_compacted_revision(reg: EtcdRegistry) -> None:
    first = await reg.put("/compact/k", b"1")
    last = await reg.put("/compact/k", b"2")
    await reg.compact(last)
    await reg.compact(first)  # already compacted: nothing to do
    with pytest.raises(InvalidRequest, match="cannot compact"):
        await reg.compact(last + 1000)
    watch = reg.watch("/compact/", start_revision=first)
    with pytest.raises(CompactedError) as exc:
        await asyncio.wait_for(watch.__anext__(), 5)
    assert exc.value.requested == first and exc.value.compact_revision >= last
    await watch.close()


@pytest.mark.etcd
async def test_missing_lease(reg: EtcdRegistry) -> None:
    with pytest.raises(LeaseNotFound):
        await reg.put("/lease/k", b"v", lease=0x1234)
    with pytest.raises(LeaseNotFound):
        await reg._keepalive(0x1234)
    with pytest.raises(LeaseNotFound):
        await reg._revoke(0x1234)


@pytest.mark.etcd
async def test_closed_registry(shared_etcd: EtcdServer) -> None:
    r = await EtcdRegistry.from_url(shared_etcd.url)
    watch = r.watch("/closed/")
    pending = asyncio.ensure_future(watch.__anext__())
    await asyncio.sleep(0.2)
    await r.close()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(pending, 5)
    with pytest.raises(Unavailable, match="closed"):
        await r.get("/closed/k")


# ---------------------------------------------------------------------------
# etcd restarts


@pytest.mark.etcd
async def test_watch_loses_nothing_across_an_etcd_restart(
        own_etcd: Callable[..., EtcdServer], caplog: pytest.LogCaptureFixture) -> None:
    """Acceptance: a writer keeps writing while etcd stops and starts again.

    Writes that fail during the outage are retried until acknowledged (a
    failed attempt may still have been applied; its event is allowed).  The
    open watch must deliver every acknowledged write exactly once, in
    revision order.
    """
    caplog.set_level(logging.INFO, logger="flotte.registry")
    with own_etcd() as etcd:
        async with await EtcdRegistry.from_url(f"{etcd.url}?timeout=2") as r:
            watch = r.watch("/acc/")
            events: list[Event] = []
            acked: list[tuple[str, int]] = []
            failed_attempts = 0
            restarted = asyncio.Event()

            async def reader() -> None:
                async for event in watch:
                    events.append(event)

            async def writer() -> None:
                nonlocal failed_attempts
                after_restart = 0
                i = 0
                while after_restart < 100:
                    key = f"/acc/{i:06d}"
                    while True:
                        try:
                            rev = await r.put(key, str(i).encode())
                            break
                        except Unavailable:
                            failed_attempts += 1
                            await asyncio.sleep(0.02)
                    acked.append((key, rev))
                    i += 1
                    if restarted.is_set():
                        after_restart += 1
                    await asyncio.sleep(0.003)

            async def restarter() -> None:
                await asyncio.sleep(0.4)
                await asyncio.to_thread(etcd.restart, 0.5)
                restarted.set()

            read_task = asyncio.create_task(reader())
            await asyncio.gather(writer(), restarter())
            last = acked[-1][1]
            deadline = time.monotonic() + 10
            while (not events or events[-1].kv.mod_revision < last) \
                    and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            await watch.close()
            read_task.cancel()

    assert failed_attempts > 0, "the writer never saw the outage"
    assert any("interrupted" in rec.getMessage() for rec in caplog.records), \
        "the watch was never interrupted"
    revisions = [e.kv.mod_revision for e in events]
    assert revisions == sorted(set(revisions)), "events out of order or repeated"
    seen = Counter((e.kv.key, e.kv.mod_revision) for e in events if e.type is EventType.PUT)
    missing = [w for w in acked if seen[w] != 1]
    assert not missing, f"{len(missing)} acknowledged writes not delivered once: {missing[:5]}"
    assert len(acked) > 150


@pytest.mark.etcd
async def test_lease_keepalive_survives_an_etcd_restart(
        own_etcd: Callable[..., EtcdServer]) -> None:
    with own_etcd() as etcd:
        async with await EtcdRegistry.from_url(f"{etcd.url}?timeout=1") as r:
            lease = await r.grant(5)
            await r.put("/lease/machine", b"up", lease=lease)
            async with lease:
                await asyncio.sleep(0.5)
                await asyncio.to_thread(etcd.restart, 1.0)
                # etcd restarts each lease's clock on recovery; only keep-alives
                # sent after the restart can keep it past TTL from here.
                await asyncio.sleep(6.5)
                assert not lease.lost.is_set()
                kv = await r.get("/lease/machine")
                assert kv is not None and kv.lease == lease.id
                assert await lease.keepalive() == 5
            assert await r.get("/lease/machine") is None  # leaving revokes it
