"""``flotte proxy``: an HTTP load balancer whose backends are registry keys.

The seed's chapter 10 builds this out of confd + nginx: confd renders the
``/services/apache/*`` values into an ``upstream`` block and reloads nginx,
and closes by noting that Vulcand, which reads its backends straight from
etcd, "does it in a few lines".  This is that: keys under ``--backends
PREFIX`` hold ``host:port`` (or ``http://host:port``, or the seed's JSON
``{"ipv4_addr": …, "port": …}``), and the proxy follows them as they change,
with no file, no reload and no dropped connection.

Behaviour, and why:

* **round robin** over the live set, in key order (:class:`RoundRobin`);
* **keep-alive** to backends: one aiohttp connection pool, so a request
  costs no TCP handshake to the backend;
* **retries** (:class:`RetryPolicy`): a request whose connection could not
  be made goes to the next backend (the backend never saw it, so this is
  safe for any method whose body has not been read yet); a failure after
  the request was sent is retried only for idempotent methods (GET, HEAD,
  OPTIONS, PUT, DELETE, TRACE), as nginx's ``proxy_next_upstream`` does;
* **draining**: a removed backend gets no new request at once, and the ones
  in flight finish (:class:`Backends`);
* a **502 that says why** (no backend under the prefix, or which backends
  failed how) instead of nginx's bare page;
* **streaming** both ways: neither body is buffered, so uploads, downloads
  and long polls pass through at their own pace;
* **headers**: hop-by-hop headers are dropped both ways (RFC 9110 §7.6.1);
  ``Host`` is passed through (the seed's ``proxy_set_header Host $host``);
  ``X-Forwarded-For`` gets the client appended; ``X-Forwarded-Proto`` and
  ``X-Forwarded-Host`` are set (this proxy is the edge: a client's own
  claims about the scheme are not trusted).

The set logic (:func:`parse_backend`, :func:`backend_map`, :func:`diff`,
:class:`RoundRobin`, :class:`RetryPolicy`, :func:`forward_headers`) is pure
and unit-tested; :class:`Proxy` is the server around it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import time
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from flotte.discovery.kv import KVBackend, dir_prefix, normalize_key

# -- backends from key values (pure) -------------------------------------------------------------

_JSON_HOST_FIELDS = ("ipv4_addr", "ip", "address", "host", "hostname")


def _origin(scheme: str, host: str, port: int | None) -> str | None:
    if not host or port is None or not 0 < port < 65536:
        return None
    with contextlib.suppress(ValueError):
        if ipaddress.ip_address(host).version == 6:
            host = f"[{host}]"
    return f"{scheme}://{host}:{port}"


def parse_backend(value: str) -> str | None:
    """The backend origin (``http://host:port``) a key's value names, or ``None``.

    Accepted: ``host:port``, ``[v6]:port``, ``http://host:port[/…]``,
    ``https://…``, and a JSON object with ``url``, or one of
    ``ipv4_addr``/``ip``/``address``/``host`` plus ``port`` (the seed's
    secretary writes ``{"host": "core-01", "ipv4_addr": "10.0.0.1", "port": 8080}``;
    ``ipv4_addr`` wins over ``host`` because ``host`` there is a hostname
    other machines may not resolve).  A path in a URL is ignored: the
    request's path is forwarded as is.
    """
    text = value.strip()
    if text.startswith("{"):
        try:
            obj = json.loads(text)
        except ValueError:
            return None
        if not isinstance(obj, dict):
            return None
        if isinstance(obj.get("url"), str):
            return parse_backend(obj["url"])
        host = next((obj[f] for f in _JSON_HOST_FIELDS if isinstance(obj.get(f), str)
                     and obj[f]), None)
        port = obj.get("port")
        if isinstance(port, str) and port.isdigit():
            port = int(port)
        if host is None or isinstance(port, bool) or not isinstance(port, int):
            return None
        return _origin("http", host, port)
    if "://" not in text:
        text = "http://" + text
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    if port is None:
        port = 443 if parts.scheme == "https" else 80 if "://" in value else None
    return _origin(parts.scheme, parts.hostname, port)


def backend_map(values: Mapping[str, str]) -> tuple[dict[str, list[str]], list[str]]:
    """``{key: value}`` → ``({origin: [keys naming it]}, [keys with unusable values])``.

    Two keys naming one backend give it one turn, not two: a backend
    announced twice (an old key not yet expired) must not get double load.
    """
    out: dict[str, list[str]] = {}
    bad: list[str] = []
    for key in sorted(values):
        origin = parse_backend(values[key])
        if origin is None:
            bad.append(key)
        else:
            out.setdefault(origin, []).append(key)
    return out, bad


def diff(old: Iterable[str], new: Iterable[str]) -> tuple[list[str], list[str]]:
    """``(added, removed)``, each sorted."""
    a, b = set(old), set(new)
    return sorted(b - a), sorted(a - b)


class RoundRobin:
    """Picks backends in turn; survives set changes without restarting the cycle.

    After an update the turn goes on from the backend that was due next if it
    is still there, so adding or removing one backend does not send the next
    requests to the first backend again (which would skew load at every change).
    """

    def __init__(self, backends: Iterable[str] = ()) -> None:
        self._backends: list[str] = sorted(set(backends))
        self._next = 0

    @property
    def backends(self) -> list[str]:
        return list(self._backends)

    def __len__(self) -> int:
        return len(self._backends)

    def update(self, backends: Iterable[str]) -> None:
        new = sorted(set(backends))
        due = self._backends[self._next % len(self._backends)] if self._backends else None
        if due is not None and due in new:
            self._next = new.index(due)
        elif due is not None:
            # the due one left: continue with its successor in sort order
            later = [i for i, b in enumerate(new) if b > due]
            self._next = later[0] if later else 0
        else:
            self._next = 0
        self._backends = new

    def pick(self, exclude: Collection[str] = ()) -> str | None:
        n = len(self._backends)
        for step in range(n):
            i = (self._next + step) % n
            backend = self._backends[i]
            if backend not in exclude:
                self._next = (i + 1) % n
                return backend
        return None


IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When a failed attempt may go to the next backend.

    ``sent`` is whether the request may have reached the backend (a connect
    failure or connect timeout means it did not); ``body_started`` whether
    the client's body was already read into the failed attempt (it is
    streamed, so it cannot be sent twice).
    """

    max_tries: int = 3

    def should_retry(self, method: str, tries: int, *, sent: bool, body_started: bool) -> bool:
        if tries >= self.max_tries or body_started:
            return False
        return not sent or method.upper() in IDEMPOTENT


# -- headers (pure) ------------------------------------------------------------------------------

HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
                        "proxy-connection", "te", "trailer", "trailers", "transfer-encoding",
                        "upgrade"})


def _hop_by_hop(headers: CIMultiDictProxy[str] | CIMultiDict[str]) -> set[str]:
    named = {t.strip().lower() for v in headers.getall("Connection", []) for t in v.split(",")}
    return set(HOP_BY_HOP) | (named - {""})


def forward_headers(incoming: CIMultiDictProxy[str] | CIMultiDict[str], peer: str | None,
                    scheme: str = "http", *, preserve_host: bool = True) -> CIMultiDict[str]:
    """The headers to send upstream for a client request with ``incoming`` headers."""
    drop = _hop_by_hop(incoming) | {"expect"}
    if not preserve_host:
        drop.add("host")
    out: CIMultiDict[str] = CIMultiDict(
        (k, v) for k, v in incoming.items() if k.lower() not in drop)
    chain = [v.strip() for v in incoming.getall("X-Forwarded-For", []) if v.strip()]
    if peer:
        chain.append(peer)
    out.popall("X-Forwarded-For", None)
    if chain:
        out["X-Forwarded-For"] = ", ".join(chain)
    out["X-Forwarded-Proto"] = scheme
    host = incoming.get("Host")
    out.popall("X-Forwarded-Host", None)
    if host:
        out["X-Forwarded-Host"] = host
    return out


def backward_headers(upstream: CIMultiDictProxy[str] | CIMultiDict[str]) -> CIMultiDict[str]:
    """The upstream response headers to pass to the client (hop-by-hop ones dropped)."""
    drop = _hop_by_hop(upstream)
    return CIMultiDict((k, v) for k, v in upstream.items() if k.lower() not in drop)


def bad_gateway_text(prefix: str, tried: Sequence[tuple[str, str]], known: int) -> str:
    """The 502 body: what the proxy looked for and what went wrong, for whoever reads it."""
    if not tried:
        if known:
            return (f"502 Bad Gateway: all {known} backends under {prefix} are busy being "
                    "drained or were already tried\n")
        return (f"502 Bad Gateway: no backend is registered under {prefix}\n"
                f"(flotte proxy sends requests to the host:port values of the keys under "
                f"{prefix}; start a service that announces itself there, e.g. "
                f"flotte announce --key {prefix}{{ip}} --check http://127.0.0.1:PORT/)\n")
    lines = "".join(f"  {b}: {why}\n" for b, why in tried)
    return f"502 Bad Gateway: every backend tried under {prefix} failed:\n{lines}"


# -- the live backend set -------------------------------------------------------------------------

Log = Callable[[str], None]


class Backends:
    """The active set (round robin), in-flight counts, and removed backends draining."""

    def __init__(self, log: Log) -> None:
        self.log = log
        self.rr = RoundRobin()
        self.keys: dict[str, list[str]] = {}
        self.inflight: dict[str, int] = {}
        self.draining: set[str] = set()
        self.bad: set[str] = set()
        #: monotonic time each backend was last removed from the active set
        self.removed_at: dict[str, float] = {}
        self.applied = asyncio.Event()

    @property
    def active(self) -> list[str]:
        return self.rr.backends

    def apply(self, values: Mapping[str, str]) -> None:
        now = time.monotonic()
        mapping, bad = backend_map(values)
        for key in sorted(set(bad) - self.bad):
            self.log(f"ignoring {key}: {values[key]!r} is not host:port, http://host:port "
                     "or JSON with ipv4_addr/ip/host and port")
        self.bad = set(bad)
        added, removed = diff(self.rr.backends, mapping)
        self.rr.update(mapping)
        self.keys = mapping
        for b in added:
            self.draining.discard(b)
            self.log(f"backend added: {b} ({', '.join(mapping[b])})")
        for b in removed:
            self.removed_at[b] = now
            n = self.inflight.get(b, 0)
            if n:
                self.draining.add(b)
                self.log(f"backend removed: {b}; draining {n} request(s) in flight")
            else:
                self.log(f"backend removed: {b}")
        self.applied.set()

    def pick(self, exclude: Collection[str] = ()) -> str | None:
        return self.rr.pick(exclude)

    def acquire(self, backend: str) -> None:
        self.inflight[backend] = self.inflight.get(backend, 0) + 1

    def release(self, backend: str) -> None:
        n = self.inflight.get(backend, 1) - 1
        if n > 0:
            self.inflight[backend] = n
            return
        self.inflight.pop(backend, None)
        if backend in self.draining:
            self.draining.discard(backend)
            self.log(f"backend drained: {backend}")


# -- the server -------------------------------------------------------------------------------------


@dataclass(slots=True)
class ProxySettings:
    prefix: str
    connect_timeout: float = 3.0
    read_timeout: float | None = 60.0
    max_tries: int = 3
    preserve_host: bool = True
    access_log: bool = False
    shutdown_timeout: float = 10.0
    first_snapshot_wait: float = 5.0


class _Body:
    """The client's body as an async iterator that remembers whether it was started.

    A client that sent ``Expect: 100-continue`` (curl does for bodies over
    1 KiB) gets its ``100 Continue`` only here, once a backend has accepted
    the connection: it then sends the body straight into it, and never
    waits out curl's 1 s fallback.
    """

    def __init__(self, request: web.BaseRequest) -> None:
        self.request = request
        self.started = False
        self.expect_continue = request.version >= (1, 1) and \
            request.headers.get("Expect", "").lower() == "100-continue"

    async def chunks(self) -> AsyncIterator[bytes]:
        self.started = True
        if self.expect_continue and self.request.writer is not None:
            self.expect_continue = False
            await self.request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        async for chunk in self.request.content.iter_any():
            yield chunk


class Proxy:
    """The load balancer: ``await proxy.start(host, port)``, ``await proxy.close()``."""

    def __init__(self, kv: KVBackend, settings: ProxySettings, log: Log) -> None:
        self.kv = kv
        self.s = settings
        self.prefix = dir_prefix(normalize_key(settings.prefix))
        self.log = log
        self.backends = Backends(log)
        self.policy = RetryPolicy(settings.max_tries)
        self._session: aiohttp.ClientSession | None = None
        self._runner: web.ServerRunner | None = None
        self._follower: asyncio.Task[None] | None = None
        self.host = ""
        self.port = 0

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self, host: str, port: int) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=30, ttl_dns_cache=10),
            auto_decompress=False,
            # Never keep one client's cookies for another: the jar would mix them.
            cookie_jar=aiohttp.DummyCookieJar(),
            timeout=aiohttp.ClientTimeout(total=None, connect=self.s.connect_timeout,
                                          sock_read=self.s.read_timeout))
        self._follower = asyncio.create_task(self._follow(), name="proxy-follow")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.backends.applied.wait(), self.s.first_snapshot_wait)
        server = web.Server(self.handle, access_log=None)
        self._runner = web.ServerRunner(server, shutdown_timeout=self.s.shutdown_timeout,
                                        handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, reuse_address=True)
        await site.start()
        bound = self._runner.addresses[0]
        self.host, self.port = str(bound[0]), int(bound[1])
        self.log(f"proxying {self.url} to the backends under {self.prefix} on "
                 f"{self.kv.description} ({len(self.backends.active)} now)")

    async def close(self) -> None:
        """Stop accepting, let requests in flight finish (up to ``shutdown_timeout``)."""
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
        if self._follower is not None:
            task, self._follower = self._follower, None
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    async def _follow(self) -> None:
        """Keep :attr:`backends` equal to the keys under the prefix; on a registry
        failure keep the last known set (better than dropping every backend) and retry."""
        delay = 0.2
        broken = False
        while True:
            try:
                async for values in self.kv.follow(self.prefix):
                    if broken:
                        self.log(f"following {self.prefix} again")
                        broken = False
                    delay = 0.2
                    self.backends.apply(values)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # KVFailure, or anything: the proxy must keep serving
                if not broken:
                    self.log(f"cannot follow {self.prefix} on {self.kv.description} ({exc}); "
                             f"keeping the {len(self.backends.active)} known backends, "
                             "retrying")
                    broken = True
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    def _target(self, request: web.BaseRequest) -> str:
        raw = request.raw_path
        if raw.startswith("/"):
            return raw
        return URL(raw).raw_path_qs or "/"  # absolute-form request target

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        assert self._session is not None
        start = time.monotonic()
        target = self._target(request)
        headers = forward_headers(request.headers, request.remote, request.scheme,
                                  preserve_host=self.s.preserve_host)
        body = _Body(request) if request.body_exists else None
        tried: list[tuple[str, str]] = []
        while True:
            backend = self.backends.pick(exclude={b for b, _ in tried})
            if backend is None:
                return self._error(502, bad_gateway_text(self.prefix, tried,
                                                         len(self.backends.active)))
            self.backends.acquire(backend)
            try:
                try:
                    upstream = await self._session.request(
                        request.method, URL(backend + target, encoded=True), headers=headers,
                        data=body.chunks() if body is not None else None,
                        allow_redirects=False,
                        skip_auto_headers=("Accept", "Accept-Encoding", "User-Agent",
                                           "Content-Type"))
                except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
                    tried.append((backend, _why(exc)))
                    if self.policy.should_retry(request.method, len(tried), sent=False,
                                                body_started=bool(body and body.started)):
                        continue
                    return self._error(502, bad_gateway_text(self.prefix, tried, 0))
                except aiohttp.SocketTimeoutError:
                    return self._error(504, f"504 Gateway Timeout: {backend} sent no response "
                                            f"within {self.s.read_timeout:g}s\n")
                except aiohttp.ClientError as exc:
                    tried.append((backend, _why(exc)))
                    if self.policy.should_retry(request.method, len(tried), sent=True,
                                                body_started=bool(body and body.started)):
                        continue
                    return self._error(502, bad_gateway_text(self.prefix, tried, 0))
                async with upstream:
                    resp = await self._relay(request, upstream, backend)
                if self.s.access_log:
                    self.log(f"{request.remote} {request.method} {target} -> {backend} "
                             f"{upstream.status} {(time.monotonic() - start) * 1000:.1f}ms")
                return resp
            finally:
                self.backends.release(backend)

    async def _relay(self, request: web.BaseRequest, upstream: aiohttp.ClientResponse,
                     backend: str) -> web.StreamResponse:
        resp = web.StreamResponse(status=upstream.status, reason=upstream.reason,
                                  headers=backward_headers(upstream.headers))
        try:
            await resp.prepare(request)
            if request.method != "HEAD":
                async for chunk in upstream.content.iter_any():
                    await resp.write(chunk)
            await resp.write_eof()
        except (ConnectionError, aiohttp.ClientConnectionResetError):
            upstream.close()  # the client left: do not reuse a half-read connection
        except (aiohttp.ClientError, TimeoutError) as exc:
            # Headers are gone already: the only honest signal left is to cut the
            # connection, so the client sees a truncated body, not a complete one.
            self.log(f"{backend} failed mid-response to {request.method} "
                     f"{request.raw_path}: {_why(exc)}")
            upstream.close()
            if request.transport is not None:
                request.transport.close()
        return resp

    @staticmethod
    def _error(status: int, text: str) -> web.Response:
        return web.Response(status=status, text=text, headers={"Cache-Control": "no-store"})


def _why(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return "connect timed out"
    if isinstance(exc, aiohttp.ClientConnectorError):
        errno = exc.os_error.errno
        return os.strerror(errno) if errno else str(exc.os_error) or "cannot connect"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "closed the connection without answering"
    return str(exc) or type(exc).__name__


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``:PORT`` (all interfaces) or ``[v6]:PORT`` → ``(host, port)``."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"--listen {text!r} is not HOST:PORT (e.g. 0.0.0.0:8181, :8181, "
                         "[::]:8181)")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


__all__ = [
    "HOP_BY_HOP", "IDEMPOTENT", "Backends", "Proxy", "ProxySettings", "RetryPolicy",
    "RoundRobin", "backend_map", "backward_headers", "bad_gateway_text", "diff",
    "forward_headers", "parse_backend", "parse_listen",
]
