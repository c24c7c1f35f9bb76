"""Listeners, auth, the token file, and 503 when the registry is unreachable."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from flotte.api import api_context, load_or_create_token, make_app, serve
from flotte.api.app import check_bearer
from flotte.api.server import parse_listen, store_token
from flotte.registry import Event, KeyValue, Registry, TxnResult, Unavailable
from flotte.registry.types import Compare, Op


@pytest.fixture
def short_dir() -> Iterator[str]:
    """Unix socket paths are limited to ~107 bytes; pytest's tmp_path can be longer."""
    d = tempfile.mkdtemp(prefix="flotte-api-", dir="/tmp")
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


async def _get(session: aiohttp.ClientSession, url: str, **kw: Any) -> tuple[int, Any]:
    async with session.get(url, **kw) as resp:
        return resp.status, (await resp.json(), resp.headers)


def test_parse_listen() -> None:
    assert parse_listen("unix:///run/flotte/api.sock").path == "/run/flotte/api.sock"
    tcp = parse_listen("http://127.0.0.1:0")
    assert (tcp.kind, tcp.host, tcp.port) == ("tcp", "127.0.0.1", 0)
    assert parse_listen("http://[::1]:4001").host == "::1"
    for bad in ("unix://", "http://127.0.0.1", "https://h:1", "tcp://h:1", "http://h:1/x",
                "http://h:99999"):
        with pytest.raises(ValueError):
            parse_listen(bad)


async def test_unix_and_tcp_listeners_with_auth(registry: Registry, short_dir: str) -> None:
    path = os.path.join(short_dir, "api.sock")
    app = make_app(registry, token="s3cret")
    served = await serve(app, [f"unix://{path}", "http://127.0.0.1:0"])
    try:
        unix_url, tcp_url = served.urls
        assert unix_url == f"unix://{path}"
        assert tcp_url.startswith("http://127.0.0.1:") and not tcp_url.endswith(":0")
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=path)) as s:
            status, (body, headers) = await _get(s, "http://localhost/fleet/v1/units")
            assert status == 200 and body == {}  # no token needed on the socket
            assert headers["Server"].startswith("fleetd/")
        async with aiohttp.ClientSession() as s:
            status, (body, headers) = await _get(s, f"{tcp_url}/fleet/v1/units")
            assert status == 401 and body["error"]["code"] == 401
            assert "missing API token" in body["error"]["message"]
            assert headers["WWW-Authenticate"].startswith("Bearer")
            status, (body, _) = await _get(s, f"{tcp_url}/fleet/v1/units",
                                           headers={"Authorization": "Bearer wrong"})
            assert status == 401 and "invalid API token" in body["error"]["message"]
            status, (body, _) = await _get(s, f"{tcp_url}/nowhere",
                                           headers={"Authorization": "Basic czNjcmV0"})
            assert status == 401  # auth before routing: no probing of paths
            status, (body, _) = await _get(s, f"{tcp_url}/fleet/v1/units",
                                           headers={"Authorization": "Bearer s3cret"})
            assert status == 200 and body == {}
    finally:
        await served.close()
    assert not os.path.exists(path)


async def test_no_auth_tcp(registry: Registry) -> None:
    served = await serve(make_app(registry, no_auth=True), ["http://127.0.0.1:0"])
    try:
        async with aiohttp.ClientSession() as s:
            status, _ = await _get(s, f"{served.urls[0]}/fleet/v1/machines")
            assert status == 200
    finally:
        await served.close()


async def test_tcp_without_token_refused_at_start(registry: Registry) -> None:
    with pytest.raises(ValueError, match="token"):
        await serve(make_app(registry), ["http://127.0.0.1:0"])
    with pytest.raises(ValueError):
        await serve(make_app(registry), [])


async def test_stale_socket_removed_live_one_kept(registry: Registry, short_dir: str) -> None:
    path = os.path.join(short_dir, "api.sock")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)
    stale.close()  # the file stays, nobody listens: a crashed daemon's leftover
    served = await serve(make_app(registry), [f"unix://{path}"])
    try:
        with pytest.raises(OSError, match="another server is listening"):
            await serve(make_app(registry), [f"unix://{path}"])
        assert os.path.exists(path)  # the live socket was not stolen
    finally:
        await served.close()


async def test_refuses_to_replace_a_regular_file(registry: Registry, short_dir: str) -> None:
    path = os.path.join(short_dir, "api.sock")
    Path(path).write_text("precious")
    with pytest.raises(FileExistsError):
        await serve(make_app(registry), [f"unix://{path}"])
    assert Path(path).read_text() == "precious"


async def test_failed_start_leaves_nothing_listening(registry: Registry, short_dir: str) -> None:
    path = os.path.join(short_dir, "sub", "api.sock")
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        with pytest.raises(OSError):
            await serve(make_app(registry, no_auth=True),
                        [f"unix://{path}", f"http://127.0.0.1:{port}"])
    finally:
        taken.close()
    assert not os.path.exists(path)


def test_token_file(tmp_path: Path) -> None:
    state = tmp_path / "state"
    token = load_or_create_token(state)
    assert len(token) >= 32
    path = state / "api-token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_token(str(state)) == token
    assert [p.name for p in state.iterdir()] == ["api-token"]  # no temp files left
    path.chmod(0o644)
    assert load_or_create_token(state) == token
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.write_text("\n")
    with pytest.raises(ValueError, match="empty"):
        load_or_create_token(state)


def test_check_bearer() -> None:
    assert check_bearer("Bearer abc", "abc") is None
    assert check_bearer("bearer  abc ", "abc") is None
    assert "missing" in (check_bearer(None, "abc") or "")
    assert "malformed" in (check_bearer("abc", "abc") or "")
    assert "invalid" in (check_bearer("Bearer abd", "abc") or "")
    assert "no API token" in (check_bearer("Bearer abc", None) or "")


async def test_auth_with_test_server(registry: Registry) -> None:
    async with TestClient(TestServer(make_app(registry, token="t"))) as c:
        resp = await c.get("/fleet/v1/units")
        assert resp.status == 401
        resp = await c.get("/fleet/v1/units", headers={"Authorization": "Bearer t"})
        assert resp.status == 200


# -- 503 -----------------------------------------------------------------------------------


class BrokenRegistry(Registry):
    """Every call fails as an unreachable etcd cluster would."""

    url = "etcd://10.9.9.9:2379"

    @property
    def revision(self) -> int:
        return 0

    def _down(self) -> Unavailable:
        return Unavailable("all etcd endpoints failed: 10.9.9.9:2379: connection refused")

    async def _get(self, key: str) -> KeyValue | None:
        raise self._down()

    async def _range(self, prefix: str, limit: int | None) -> list[KeyValue]:
        raise self._down()

    async def _put(self, key: str, value: bytes, lease: int | None) -> int:
        raise self._down()

    async def _delete(self, key: str, prefix: bool) -> int:
        raise self._down()

    async def _txn(self, compare: list[Compare], success: list[Op],
                   failure: list[Op]) -> TxnResult:
        raise self._down()

    async def _grant(self, ttl: int) -> tuple[int, int]:
        raise self._down()

    async def _keepalive(self, lease_id: int) -> int:
        raise self._down()

    async def _revoke(self, lease_id: int) -> None:
        raise self._down()

    def _watch(self, key: str, prefix: bool, start_revision: int | None
               ) -> AsyncIterator[Event]:
        raise self._down()

    async def _compact(self, revision: int) -> None:
        raise self._down()

    async def _close(self) -> None:
        return None


@pytest.mark.parametrize(("method", "path", "body"), [
    ("GET", "/fleet/v1/units", None),
    ("GET", "/fleet/v1/units/a.service", None),
    ("PUT", "/fleet/v1/units/a.service", {"desiredState": "launched"}),
    ("DELETE", "/fleet/v1/units/a.service", None),
    ("GET", "/fleet/v1/state", None),
    ("GET", "/fleet/v1/machines", None),
    ("PATCH", "/fleet/v1/machines", [{"op": "add", "path": "/m/metadata/a", "value": "b"}]),
    ("GET", "/v1/units/a.service/status", None),
    ("GET", "/v1/kv/services", None),
    ("PUT", "/v1/kv/services/a", {"value": "x"}),
])
async def test_unreachable_registry_503(method: str, path: str, body: Any) -> None:
    async with TestClient(TestServer(make_app(BrokenRegistry(), no_auth=True))) as c:
        resp = await c.request(method, path, json=body)
        assert resp.status == 503
        err = (await resp.json())["error"]
        assert err["code"] == 503
        assert err["message"].startswith("fleet server unable to communicate with etcd: ")
        assert "connection refused" in err["message"]


async def test_closed_registry_503(client: TestClient[Any, Any], registry: Registry) -> None:
    await registry.close()
    resp = await client.get("/fleet/v1/units")
    assert resp.status == 503
    assert "closed" in (await resp.json())["error"]["message"]


async def test_not_ready_503(client: TestClient[Any, Any], app: Any) -> None:
    api_context(app).ready = False
    api_context(app).not_ready_reason = "re-registering with the registry"
    resp = await client.get("/fleet/v1/discovery")
    assert resp.status == 503
    assert (await resp.json())["error"]["message"] == \
        "fleet server unable to communicate with etcd: re-registering with the registry"
    api_context(app).ready = True
    assert (await client.get("/fleet/v1/discovery")).status == 200


def test_store_token_is_read_back_and_private(tmp_path: Path) -> None:
    path = store_token(tmp_path / "state", "cluster-token")
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_or_create_token(tmp_path / "state") == "cluster-token"
    store_token(tmp_path / "state", "rotated")
    assert load_or_create_token(tmp_path / "state") == "rotated"
