"""The etcd v3 backend: ``etcd://host:port[,host:port…]`` and ``etcds://…`` (TLS).

Built on aetcd's generated etcd v3 protobuf messages and gRPC stubs
(``aetcd.rpc``), over a gRPC channel this module builds itself.  aetcd's
``Client`` is deliberately not used (``spec/etcd-perf.md`` §5):

* its ``connect()`` can only make an insecure channel to one ``host:port``
  (pitfall 4), so there is no TLS and no failover;
* its convenience methods drop what the registry interface must return — a
  txn's header revision, range ``limit``/``revision`` (so no paging, pitfall
  5), ``lease`` compares, a watch's cancel reason and response headers.

Calling the stubs directly costs a few lines per RPC and keeps the coupling to
aetcd down to the generated code, so swapping the client (spec §5, pitfall 8)
means replacing ``aetcd.rpc`` only.

Behaviour that matters to callers:

* **Failover.** Every endpoint of the URL goes into one channel
  (``ipv4:h1:p1,h2:p2`` target, ``round_robin``): gRPC keeps a connection
  to each member, skips the ones that are down and reconnects them in the
  background.  An unreachable cluster gives :class:`Unavailable` naming every
  endpoint, at once for refused connections and after ``timeout`` at worst.
* **No retries of writes.**  A put / delete / txn / grant / revoke is sent
  once.  The only re-send is after etcd answered "invalid auth token", which
  etcd checks before proposing the request, so it was certainly not applied.
  Reads (range pages) are not retried either; callers decide.
* **Watches** (pitfalls 1 and 6): one gRPC stream per watch with ``prev_kv``;
  a broken stream raises :class:`Unavailable` and :class:`~flotte.registry.base.Watch`
  resumes from the last *event's* revision + 1.  Watch streams wait for a
  connection (``wait_for_ready``) for up to ``timeout`` instead of failing
  at once, so a watch on a cluster that is down retries every ``timeout``
  rather than spinning.  They carry etcd's ``hasleader`` metadata: a member
  cut off from its cluster ends the stream instead of going silent.
* **Large ranges** (pitfall 5): the receive limit is raised to 1 GiB and
  :meth:`EtcdRegistry._range` reads at most 1000 keys (and about 4 MiB) per
  request, all pages at the revision of the first, so the result is one
  consistent snapshot.
* **revision** is the highest header revision seen in any response,
  watch responses included.
* **etcd's own limits** surface as :class:`InvalidRequest`: a request
  (key + value + framing, or a whole txn) over 1.5 MiB, more than 128 ops in
  a txn branch, or a txn branch writing one key twice (also a put inside a
  range the same branch deletes).  ``compact(N)`` keeps revision N itself:
  a watch from N still works, from N - 1 raises :class:`CompactedError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import math
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import grpc
import grpc.aio
from aetcd import rpc

from flotte.registry.base import Registry
from flotte.registry.types import (
    CompactedError,
    Compare,
    Delete,
    Event,
    EventType,
    Get,
    InvalidRequest,
    KeyValue,
    LeaseNotFound,
    Op,
    Put,
    Range,
    RegistryError,
    Txn,
    TxnResult,
    Unavailable,
    UnknownURL,
)

log = logging.getLogger("flotte.registry.etcd")

DEFAULT_PORT = 2379
DEFAULT_TIMEOUT = 5.0
#: Keys per range request; etcd's own clients page by 1000 too.
PAGE_KEYS = 1000
#: Aim for range replies of about this size (values can be up to 1.5 MiB each).
PAGE_BYTES = 4 << 20
#: gRPC's default is 4 MiB, which a big range or a catch-up watch batch exceeds.
MAX_RECEIVE_BYTES = 1 << 30

_KNOWN_OPTIONS = ("ca", "cert", "key", "user", "password", "timeout")

_COMPARE_RESULT = {"==": rpc.Compare.EQUAL, "!=": rpc.Compare.NOT_EQUAL,
                   "<": rpc.Compare.LESS, ">": rpc.Compare.GREATER}
_COMPARE_TARGET = {"value": rpc.Compare.VALUE, "version": rpc.Compare.VERSION,
                   "create_revision": rpc.Compare.CREATE, "mod_revision": rpc.Compare.MOD,
                   "lease": rpc.Compare.LEASE}
_EVENT_PUT = 0  # mvccpb.Event.PUT; DELETE is 1


# ---------------------------------------------------------------------------
# URL


@dataclass(frozen=True, slots=True)
class EtcdConfig:
    """What an ``etcd://`` / ``etcds://`` URL says; :func:`parse_url` makes one."""

    endpoints: tuple[tuple[str, int], ...]
    tls: bool = False
    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    user: str | None = None
    password: str | None = None
    timeout: float = DEFAULT_TIMEOUT

    @property
    def endpoint_names(self) -> list[str]:
        return [_hostport(h, p) for h, p in self.endpoints]

    @property
    def display_url(self) -> str:
        """The URL without the password (safe for logs and error messages)."""
        url = f"{'etcds' if self.tls else 'etcd'}://{','.join(self.endpoint_names)}"
        opts = [(k, getattr(self, k)) for k in ("ca", "cert", "key", "user")]
        query = [f"{k}={quote(str(v), safe='/')}" for k, v in opts if v is not None]
        if self.password is not None:
            query.append("password=***")
        if self.timeout != DEFAULT_TIMEOUT:
            query.append(f"timeout={self.timeout:g}")
        return url + ("?" + "&".join(query) if query else "")


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _ip_version(host: str) -> int | None:
    try:
        return ipaddress.ip_address(host).version
    except ValueError:
        return None


def parse_url(url: str) -> EtcdConfig:
    """Parse ``etcd[s]://host[:port][,host[:port]…][?ca=…&cert=…&key=…&user=…&password=…&timeout=…]``.

    The port defaults to 2379; IPv6 literals go in brackets.  Raises
    :class:`UnknownURL` (an :class:`InvalidRequest`) saying what is wrong.
    Files are only named here; :meth:`EtcdRegistry.from_url` reads them.
    """
    if not isinstance(url, str):
        raise UnknownURL(f"etcd URL must be a str, not {type(url).__name__}")
    try:
        parts = urlsplit(url.strip())
    except ValueError as exc:  # urlsplit checks bracketed hosts itself
        raise UnknownURL(f"{url!r}: bad IPv6 endpoint ({exc}); write [::1]:2379") from None
    scheme = parts.scheme.lower()
    if scheme not in ("etcd", "etcds"):
        raise UnknownURL(f"not an etcd URL: {url!r} (write etcd://host:port or etcds://host:port)")
    netloc = parts.netloc
    if "@" in netloc:
        raise UnknownURL(f"{url!r}: put credentials in the query, "
                         "e.g. etcd://host:2379?user=NAME&password=SECRET")
    if parts.path not in ("", "/"):
        raise UnknownURL(f"{url!r}: an etcd URL has no path ({parts.path!r}); "
                         "write etcd://host:port[,host:port…]")
    if parts.fragment:
        raise UnknownURL(f"{url!r}: an etcd URL has no #fragment")
    if not netloc:
        raise UnknownURL(f"{url!r} names no endpoint: write etcd://host:port[,host:port…]")

    endpoints: list[tuple[str, int]] = []
    for item in netloc.split(","):
        host, port = _parse_endpoint(item, url)
        if (host, port) not in endpoints:
            endpoints.append((host, port))

    try:
        query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        raise UnknownURL(f"{url!r}: malformed query {parts.query!r}") from None
    opts: dict[str, str] = {}
    for name, values in query.items():
        if name not in _KNOWN_OPTIONS:
            raise UnknownURL(f"{url!r}: unknown option {name!r} "
                             f"(known: {', '.join(_KNOWN_OPTIONS)})")
        if len(values) != 1:
            raise UnknownURL(f"{url!r}: option {name!r} given {len(values)} times")
        if not values[0]:
            raise UnknownURL(f"{url!r}: option {name!r} is empty")
        opts[name] = values[0]

    tls = scheme == "etcds"
    files = [k for k in ("ca", "cert", "key") if k in opts]
    if files and not tls:
        raise UnknownURL(f"{url!r}: {', '.join(files)} only make sense with TLS: "
                         "write etcds://")
    if ("cert" in opts) != ("key" in opts):
        raise UnknownURL(f"{url!r}: a client certificate needs both cert= and key=")
    if ("user" in opts) != ("password" in opts):
        raise UnknownURL(f"{url!r}: authentication needs both user= and password=")
    timeout = DEFAULT_TIMEOUT
    if "timeout" in opts:
        try:
            timeout = float(opts["timeout"])
        except ValueError:
            timeout = math.nan
        if not math.isfinite(timeout) or timeout <= 0:
            raise UnknownURL(f"{url!r}: timeout must be a positive number of seconds, "
                             f"not {opts['timeout']!r}")
    return EtcdConfig(tuple(endpoints), tls, opts.get("ca"), opts.get("cert"), opts.get("key"),
                      opts.get("user"), opts.get("password"), timeout)


def _parse_endpoint(item: str, url: str) -> tuple[str, int]:
    item = item.strip()
    if not item:
        raise UnknownURL(f"{url!r}: empty endpoint in the host list")
    if item.startswith("["):
        host, sep, rest = item[1:].partition("]")
        if not sep or _ip_version(host) != 6:
            raise UnknownURL(f"{url!r}: bad IPv6 endpoint {item!r} (write [::1]:2379)")
        if rest and not rest.startswith(":"):
            raise UnknownURL(f"{url!r}: bad endpoint {item!r}")
        port_text = rest[1:] if rest else ""
    else:
        if item.count(":") > 1:
            raise UnknownURL(f"{url!r}: IPv6 endpoint {item!r} must be in brackets: [::1]:2379")
        host, _, port_text = item.partition(":")
        if not host or not all(c.isalnum() or c in "-._" for c in host):
            raise UnknownURL(f"{url!r}: bad host {host!r} in endpoint {item!r}")
    if port_text == "" and item.endswith(":"):
        raise UnknownURL(f"{url!r}: endpoint {item!r} has an empty port")
    port = DEFAULT_PORT
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise UnknownURL(f"{url!r}: bad port {port_text!r} in endpoint {item!r}")
        port = int(port_text)
    return host.lower(), port


# ---------------------------------------------------------------------------
# Conversions


def _encode_key(key: str) -> bytes:
    return key.encode("utf-8", "surrogateescape")


def _prefix_end(prefix: bytes) -> bytes:
    """etcd's range end for "every key starting with prefix" (``b"\\0"``: to the end)."""
    s = bytearray(prefix)
    while s:
        if s[-1] < 0xFF:
            s[-1] += 1
            return bytes(s)
        s.pop()
    return b"\0"


def _span(key: str, prefix: bool) -> tuple[bytes, bytes]:
    """``(key, range_end)`` for one key, a prefix, or (``""`` prefix) the whole keyspace."""
    if not prefix:
        return _encode_key(key), b""
    if not key:
        return b"\0", b"\0"
    k = _encode_key(key)
    return k, _prefix_end(k)


def _kv(kv: Any) -> KeyValue:
    # Keys are UTF-8 text in flotte; surrogateescape keeps a foreign binary key
    # intact (and addressable) instead of failing the whole read.
    return KeyValue(kv.key.decode("utf-8", "surrogateescape"), kv.value, kv.create_revision,
                    kv.mod_revision, kv.version, kv.lease)


def _event(ev: Any) -> Event:
    prev = _kv(ev.prev_kv) if ev.HasField("prev_kv") else None
    kind = EventType.PUT if ev.type == _EVENT_PUT else EventType.DELETE
    return Event(kind, _kv(ev.kv), prev)


def _compare(c: Compare) -> Any:
    msg = rpc.Compare(key=_encode_key(c.key), result=_COMPARE_RESULT[c.op],
                      target=_COMPARE_TARGET[c.target])
    setattr(msg, c.target, c.operand)  # the oneof field has the target's name
    return msg


def _request_op(op: Op) -> Any:
    if isinstance(op, Put):
        return rpc.RequestOp(request_put=rpc.PutRequest(
            key=_encode_key(op.key), value=op.value, lease=op.lease or 0))
    if isinstance(op, Delete):
        key, end = _span(op.key, op.prefix)
        return rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=key, range_end=end))
    if isinstance(op, Get):
        return rpc.RequestOp(request_range=rpc.RangeRequest(key=_encode_key(op.key)))
    if isinstance(op, Range):
        key, end = _span(op.prefix, True)
        return rpc.RequestOp(request_range=rpc.RangeRequest(key=key, range_end=end,
                                                            limit=op.limit or 0))
    if isinstance(op, Txn):
        return rpc.RequestOp(request_txn=_txn_request(op.compare, op.success, op.failure))
    raise InvalidRequest(f"unknown txn op {op!r}")


def _txn_request(compare: Sequence[Compare], success: Sequence[Op],
                 failure: Sequence[Op]) -> Any:
    return rpc.TxnRequest(compare=[_compare(c) for c in compare],
                          success=[_request_op(op) for op in success],
                          failure=[_request_op(op) for op in failure])


def _txn_result(success: Sequence[Op], failure: Sequence[Op], succeeded: bool,
                responses: Sequence[Any], revision: int) -> TxnResult:
    """A (possibly nested) txn's responses, one per op of the branch that ran.

    A nested txn's response carries no header of its own; everything in one
    etcd txn shares the outer txn's revision.
    """
    ops = success if succeeded else failure
    return TxnResult(bool(succeeded), revision,
                     [_response(op, r, revision) for op, r in zip(ops, responses, strict=True)])


def _first_lease(ops: Sequence[Op]) -> int | None:
    for op in ops:
        if isinstance(op, Put) and op.lease:
            return op.lease
        if isinstance(op, Txn):
            found = _first_lease((*op.success, *op.failure))
            if found:
                return found
    return None


def _response(op: Op, resp: Any, revision: int) -> Any:
    if isinstance(op, Put):
        return revision  # every write of a txn shares the txn's revision
    if isinstance(op, Delete):
        return resp.response_delete_range.deleted
    if isinstance(op, Txn):
        inner = resp.response_txn
        return _txn_result(op.success, op.failure, inner.succeeded, inner.responses, revision)
    kvs = [_kv(kv) for kv in resp.response_range.kvs]
    if isinstance(op, Get):
        return kvs[0] if kvs else None
    return kvs


def _short_reason(details: str, tls: bool) -> str:
    """gRPC's connection error boiled down, with a hint where the cause is clear.

    gRPC says e.g. "failed to connect to all addresses; last error: UNKNOWN:
    ipv4:127.0.0.1:2379: Failed to connect to remote host: Connection refused";
    the endpoints are already in our message, so keep only the cause.
    """
    low = details.lower()
    if "connection refused" in low:
        return "connection refused"
    reason = details
    if "last error:" in low:
        reason = details[low.rindex("last error:") + len("last error:"):].strip()
        code, sep, rest = reason.partition(": ")
        if sep and code.isupper():
            reason = rest
        addr, sep, rest = reason.partition(": ")
        if sep and addr.startswith(("ipv4:", "ipv6:", "dns:", "unix:")):
            reason = rest
    low = reason.lower()
    if "certificate_verify_failed" in low:
        return f"TLS: the server's certificate is not trusted ({reason.rsplit(':', 2)[-2].strip()}); check ca="
    if "hostname verification" in low:
        return "TLS: the server's certificate does not name this host"
    if "tsi_data_corrupted" in low or "bad_certificate" in low:
        return f"TLS: the server refused the connection ({reason}); check cert= and key="
    if "security handshaker" in low:
        return f"TLS setup failed ({reason}); does key= belong to cert=?"
    if "handshake" in low and "socket closed" in low and tls:
        return f"TLS handshake failed ({reason}); a plain endpoint? use etcd://"
    if "socket closed" in low and not tls:
        return f"{reason} (a TLS endpoint? use etcds://)"
    return reason


# ---------------------------------------------------------------------------
# The registry


class EtcdRegistry(Registry):
    """A :class:`~flotte.registry.base.Registry` on an etcd v3 cluster.

    Make one with ``await EtcdRegistry.from_url("etcd://127.0.0.1:2379")``
    (or :func:`flotte.registry.connect`); ``EtcdRegistry(config)`` plus
    ``await reg.connect()`` is the same in two steps.
    """

    def __init__(self, config: EtcdConfig) -> None:
        super().__init__()
        self.config = config
        self.url = config.display_url
        self._timeout = config.timeout
        self._endpoints = ", ".join(config.endpoint_names)
        self._revision = 0
        self._channel: grpc.aio.Channel | None = None
        self._kv_stub: Any = None
        self._lease_stub: Any = None
        self._watch_stub: Any = None
        self._auth_stub: Any = None
        self._maint_stub: Any = None
        self._token: str | None = None
        self._token_generation = 0
        self._auth_lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"<EtcdRegistry {self.url} rev={self._revision}>"

    @classmethod
    async def from_url(cls, url: str) -> EtcdRegistry:
        """Parse ``url``, connect and check that the cluster answers.

        Raises :class:`UnknownURL` for a bad URL or unreadable certificate
        files, :class:`Unavailable` when no endpoint answers (the message names
        them all), :class:`RegistryError` when authentication fails.
        """
        reg = cls(parse_url(url))
        await reg.connect()
        return reg

    # -- connection ----------------------------------------------------------
    async def connect(self) -> None:
        """Build the channel, authenticate if asked, and probe the cluster once.

        The probe (etcd's Status RPC) makes an unreachable cluster fail here,
        fast and with every endpoint named, and gives :attr:`revision` a value
        so that a watch created before any other request starts at "now".
        """
        if self._channel is not None:
            return
        cfg = self.config
        target, name_override = await self._target()
        options: list[tuple[str, Any]] = [
            ("grpc.max_receive_message_length", MAX_RECEIVE_BYTES),
            ("grpc.lb_policy_name", "round_robin"),
            # Reconnect soon after a member comes back: gRPC's default backoff
            # grows to 120 s, far longer than an etcd restart.
            # (Not grpc.min_reconnect_backoff_ms: that is the connect+handshake
            # deadline, 20 s by default, and must stay long for slow links.)
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 1000),
            # Notice a dead peer under an open watch (no RST, e.g. host gone).
            # etcd refuses pings more often than every 5 s (--grpc-keepalive-min-time).
            ("grpc.keepalive_time_ms", 10_000),
            ("grpc.keepalive_timeout_ms", 5_000),
            ("grpc.http2.max_pings_without_data", 0),
        ]
        if cfg.tls:
            creds = grpc.ssl_channel_credentials(
                root_certificates=self._read_file(cfg.ca, "ca"),
                private_key=self._read_file(cfg.key, "key"),
                certificate_chain=self._read_file(cfg.cert, "cert"))
            if name_override:
                options.append(("grpc.ssl_target_name_override", name_override))
            channel = grpc.aio.secure_channel(target, creds, options=options)
        else:
            channel = grpc.aio.insecure_channel(target, options=options)
        self._channel = channel
        self._kv_stub = rpc.KVStub(channel)
        self._lease_stub = rpc.LeaseStub(channel)
        self._watch_stub = rpc.WatchStub(channel)
        self._auth_stub = rpc.AuthStub(channel)
        self._maint_stub = rpc.MaintenanceStub(channel)
        try:
            if cfg.user is not None:
                await self._authenticate()
            try:
                await self._call(self._maint_stub.Status, rpc.StatusRequest(), "connect")
            except RegistryError as exc:
                if isinstance(exc, Unavailable):
                    raise
                # A user without rights to Status still has a working connection.
                log.debug("etcd Status probe refused (%s); carrying on", exc)
        except BaseException:
            self._channel = None
            await channel.close()
            raise

    async def _target(self) -> tuple[str, str | None]:
        """The gRPC target for all endpoints, and the TLS name to verify.

        IP literals become a static ``ipv4:``/``ipv6:`` list.  One host name
        becomes ``dns:///host:port`` (gRPC re-resolves it, TLS checks the
        name).  Several host names are resolved here, once, into an address
        list — gRPC has no resolver for a list of names — and TLS then checks
        every member's certificate against the first name.
        """
        eps = self.config.endpoints
        versions = {_ip_version(h) for h, _ in eps}
        first = eps[0][0]
        if versions == {4}:
            return "ipv4:" + ",".join(f"{h}:{p}" for h, p in eps), first
        if versions == {6}:
            return "ipv6:" + ",".join(f"[{h}]:{p}" for h, p in eps), first
        if len(eps) == 1:
            return f"dns:///{_hostport(*eps[0])}", None
        loop = asyncio.get_running_loop()
        v4: list[str] = []
        v6: list[str] = []
        for host, port in eps:
            try:
                infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except OSError as exc:
                log.warning("etcd endpoint %s: cannot resolve (%s); skipping it",
                            _hostport(host, port), exc)
                continue
            for family, _, _, _, sockaddr in infos:
                addr = str(sockaddr[0])
                if family == socket.AF_INET and f"{addr}:{port}" not in v4:
                    v4.append(f"{addr}:{port}")
                elif family == socket.AF_INET6 and f"[{addr}]:{port}" not in v6:
                    v6.append(f"[{addr}]:{port}")
        name = first if _ip_version(first) is None else None
        if v4:  # gRPC's static resolvers take one address family per target
            return "ipv4:" + ",".join(v4), name
        if v6:
            return "ipv6:" + ",".join(v6), name
        raise Unavailable(f"etcd unreachable at {self._endpoints}: no endpoint resolves")

    @staticmethod
    def _read_file(path: str | None, what: str) -> bytes | None:
        if path is None:
            return None
        try:
            data = Path(path).expanduser().read_bytes()
        except OSError as exc:
            raise UnknownURL(f"etcd {what}= file {path}: {exc.strerror or exc}") from None
        # gRPC only says "Failed to create security handshaker" for a bad file.
        marker = b"PRIVATE KEY-----" if what == "key" else b"-----BEGIN CERTIFICATE-----"
        if marker not in data:
            kind = "private key" if what == "key" else "certificate"
            raise UnknownURL(f"etcd {what}= file {path} holds no PEM {kind}")
        return data

    async def _authenticate(self) -> None:
        """Get a token with etcd's Authenticate RPC; every later call carries it."""
        cfg = self.config
        try:
            resp = await self._auth_stub.Authenticate(
                rpc.AuthenticateRequest(name=cfg.user, password=cfg.password),
                timeout=self._timeout)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.FAILED_PRECONDITION \
                    and "not enabled" in (exc.details() or ""):
                log.warning("etcd at %s has authentication disabled; ignoring user=%s",
                            self._endpoints, cfg.user)
                self._token = None
                return
            if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
                raise RegistryError(f"etcd at {self._endpoints}: authentication as "
                                    f"{cfg.user!r} failed: {exc.details()}") from exc
            raise self._error(exc, "connect") from exc
        self._seen(resp.header)
        self._token = resp.token
        self._token_generation += 1

    async def _reauthenticate(self, generation: int) -> None:
        """Renew an expired token once, however many calls noticed it at the same time."""
        async with self._auth_lock:
            if self._token_generation == generation:
                await self._authenticate()

    @property
    def _metadata(self) -> tuple[tuple[str, str], ...] | None:
        return (("token", self._token),) if self._token else None

    @staticmethod
    def _token_rejected(exc: grpc.aio.AioRpcError) -> bool:
        return exc.code() == grpc.StatusCode.UNAUTHENTICATED \
            and "invalid auth token" in (exc.details() or "")

    def _check_open(self) -> None:
        if self.closed:
            raise Unavailable(f"etcd registry {self.url} is closed")
        if self._channel is None:
            raise Unavailable(f"etcd registry {self.url} is not connected: use "
                              "EtcdRegistry.from_url() or await connect()")

    def _closed_under_us(self) -> bool:
        """True if a CancelledError came from :meth:`close`, not from our task being cancelled.

        Closing a grpc.aio channel cancels its calls, and grpc.aio reports that
        to the caller as ``asyncio.CancelledError``.  Passing that on would look
        like a cancellation of the caller's task; it is really "closed".
        """
        task = asyncio.current_task()
        return self.closed and (task is None or task.cancelling() == 0)

    def _seen(self, header: Any) -> None:
        rev = header.revision
        if rev > self._revision:
            self._revision = rev

    async def _call(self, method: Callable[..., Awaitable[Any]], request: Any, op: str, *,
                    write: bool = False, lease_id: int | None = None) -> Any:
        """One unary RPC with the deadline and token; errors mapped; header revision noted.

        Sent once.  The only second attempt follows etcd's "invalid auth
        token", which etcd raises before it proposes anything.
        """
        self._check_open()
        for attempt in (1, 2):
            generation = self._token_generation
            try:
                resp = await method(request, timeout=self._timeout, metadata=self._metadata)
            except grpc.aio.AioRpcError as exc:
                if attempt == 1 and self._token_rejected(exc) and self.config.user:
                    await self._reauthenticate(generation)
                    continue
                raise self._error(exc, op, write=write, lease_id=lease_id) from exc
            except grpc.aio.UsageError as exc:  # the channel was closed under us
                raise Unavailable(f"etcd registry {self.url} is closed") from exc
            except asyncio.CancelledError:
                if self._closed_under_us():
                    raise Unavailable(f"etcd registry {self.url} is closed") from None
                raise
            self._seen(resp.header)
            return resp
        raise AssertionError("unreachable")  # pragma: no cover

    def _error(self, exc: grpc.aio.AioRpcError, op: str, *, write: bool = False,
               lease_id: int | None = None) -> RegistryError:
        """Translate a gRPC error into the registry's errors (callers never see grpc)."""
        code = exc.code()
        details = exc.details() or str(code)
        maybe = " (the write may or may not have been applied)" if write else ""
        if self.closed:
            return Unavailable(f"etcd registry {self.url} is closed")
        if code == grpc.StatusCode.UNAVAILABLE:
            low = details.lower()
            if "failed to connect" in low or "connection refused" in low or "handshake" in low \
                    or "connections to all backends failing" in low or "dns resolution" in low:
                return Unavailable(f"etcd unreachable at {self._endpoints}: "
                                   f"{_short_reason(details, self.config.tls)}")
            return Unavailable(f"etcd at {self._endpoints}: {op} failed: {details}{maybe}")
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            if op == "connect":
                return Unavailable(f"etcd unreachable at {self._endpoints}: no answer within "
                                   f"{self._timeout:g}s")
            return Unavailable(f"etcd at {self._endpoints}: no answer to {op} within "
                               f"{self._timeout:g}s{maybe}")
        if code == grpc.StatusCode.UNIMPLEMENTED:
            return Unavailable(f"etcd unreachable at {self._endpoints}: something answers but "
                               f"does not speak etcd's v3 gRPC API ({details})")
        if code == grpc.StatusCode.CANCELLED:
            return Unavailable(f"etcd at {self._endpoints}: {op} cancelled: {details}{maybe}")
        if code == grpc.StatusCode.NOT_FOUND and "lease not found" in details:
            return LeaseNotFound(lease_id or 0)
        if code == grpc.StatusCode.OUT_OF_RANGE and "compacted" in details:
            return CompactedError(0, 0)
        if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.OUT_OF_RANGE):
            hint = ""
            if "request is too large" in details:
                hint = (" (etcd's --max-request-bytes, 1.5 MiB by default, bounds the whole "
                        "request: keys, values and framing together)")
            elif "too many operations" in details:
                hint = " (etcd's --max-txn-ops, 128 by default, bounds each txn branch)"
            elif "duplicate key" in details:
                hint = (" (etcd refuses a txn branch that writes a key twice, including a "
                        "put inside a deleted range)")
            return InvalidRequest(f"etcd refused {op}: {details}{hint}")
        return RegistryError(f"etcd at {self._endpoints}: {op} failed "
                             f"({code.name.lower()}): {details}")

    # -- the primitives --------------------------------------------------------
    @property
    def revision(self) -> int:
        return self._revision

    async def _get(self, key: str) -> KeyValue | None:
        resp = await self._call(self._kv_stub.Range,
                                rpc.RangeRequest(key=_encode_key(key)), "get")
        return _kv(resp.kvs[0]) if resp.kvs else None

    async def _range(self, prefix: str, limit: int | None) -> list[KeyValue]:
        """All of ``prefix`` in pages, every page read at the first page's revision.

        Pinning the revision makes the pages one snapshot even while others
        write.  If that revision is compacted between two pages (rare: a
        compaction during a long read), the read starts over (three tries).
        """
        start, end = _span(prefix, True)
        for _ in range(3):
            out: list[KeyValue] = []
            key, revision, page = start, 0, PAGE_KEYS
            try:
                while True:
                    want = page if limit is None else min(page, limit - len(out))
                    resp = await self._call(
                        self._kv_stub.Range,
                        rpc.RangeRequest(key=key, range_end=end, limit=want, revision=revision),
                        "range")
                    if not revision:
                        revision = resp.header.revision
                    out.extend(_kv(kv) for kv in resp.kvs)
                    if not resp.more or not resp.kvs or \
                            (limit is not None and len(out) >= limit):
                        return out
                    key = resp.kvs[-1].key + b"\0"
                    size = resp.ByteSize()
                    if size > PAGE_BYTES:
                        page = max(1, page * PAGE_BYTES // size)
                    elif page < PAGE_KEYS and size < PAGE_BYTES // 2:
                        page = min(PAGE_KEYS, page * 2)
            except CompactedError:
                if not revision:
                    raise
                log.info("range %r: revision %d compacted between pages; reading again",
                         prefix, revision)
        raise Unavailable(f"etcd at {self._endpoints}: range {prefix!r} kept being compacted "
                          "under the read")

    async def _put(self, key: str, value: bytes, lease: int | None) -> int:
        resp = await self._call(
            self._kv_stub.Put,
            rpc.PutRequest(key=_encode_key(key), value=value, lease=lease or 0),
            "put", write=True, lease_id=lease)
        return int(resp.header.revision)

    async def _delete(self, key: str, prefix: bool) -> int:
        k, end = _span(key, prefix)
        resp = await self._call(self._kv_stub.DeleteRange,
                                rpc.DeleteRangeRequest(key=k, range_end=end), "delete",
                                write=True)
        return int(resp.deleted)

    async def _txn(self, compare: list[Compare], success: list[Op],
                   failure: list[Op]) -> TxnResult:
        request = _txn_request(compare, success, failure)
        leased = _first_lease((*success, *failure))
        resp = await self._call(self._kv_stub.Txn, request, "txn", write=True, lease_id=leased)
        return _txn_result(success, failure, resp.succeeded, resp.responses,
                           int(resp.header.revision))

    async def _grant(self, ttl: int) -> tuple[int, int]:
        resp = await self._call(self._lease_stub.LeaseGrant, rpc.LeaseGrantRequest(TTL=ttl),
                                "lease grant", write=True)
        if resp.error:
            raise RegistryError(f"etcd at {self._endpoints}: lease grant failed: {resp.error}")
        return int(resp.ID), int(resp.TTL)

    async def _keepalive(self, lease_id: int) -> int:
        """One refresh on a short-lived LeaseKeepAlive stream (as etcdctl's keep-alive-once).

        A TTL ≤ 0 in the reply is etcd's way of saying the lease is gone.
        """
        self._check_open()
        request = rpc.LeaseKeepAliveRequest(ID=lease_id)
        for attempt in (1, 2):
            generation = self._token_generation
            call = self._lease_stub.LeaseKeepAlive(iter((request,)), timeout=self._timeout,
                                                   metadata=self._metadata)
            try:
                reply = await call.read()
            except grpc.aio.AioRpcError as exc:
                if attempt == 1 and self._token_rejected(exc) and self.config.user:
                    await self._reauthenticate(generation)
                    continue
                raise self._error(exc, "lease keep-alive", lease_id=lease_id) from exc
            except grpc.aio.UsageError as exc:
                raise Unavailable(f"etcd registry {self.url} is closed") from exc
            except asyncio.CancelledError:
                if self._closed_under_us():
                    raise Unavailable(f"etcd registry {self.url} is closed") from None
                raise
            finally:
                call.cancel()
            if reply is grpc.aio.EOF:
                raise Unavailable(f"etcd at {self._endpoints}: lease keep-alive stream ended "
                                  "without a reply")
            self._seen(reply.header)
            if reply.TTL <= 0:
                raise LeaseNotFound(lease_id)
            return int(reply.TTL)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _revoke(self, lease_id: int) -> None:
        await self._call(self._lease_stub.LeaseRevoke, rpc.LeaseRevokeRequest(ID=lease_id),
                         "lease revoke", write=True, lease_id=lease_id)

    async def _watch(self, key: str, prefix: bool, start_revision: int | None
                     ) -> AsyncIterator[Event]:
        """One watch on its own gRPC stream; see the module docs for the failure model."""
        self._check_open()
        k, end = _span(key, prefix)
        create = rpc.WatchRequest(create_request=rpc.WatchCreateRequest(
            key=k, range_end=end, start_revision=start_revision or 0, prev_kv=True,
            fragment=True))
        requested = start_revision or 0
        call: Any = None
        try:
            for attempt in (1, 2):
                generation = self._token_generation
                metadata = (*(self._metadata or ()), ("hasleader", "true"))
                call = self._watch_stub.Watch(metadata=metadata, wait_for_ready=True)
                try:
                    async with asyncio.timeout(self._timeout):
                        await call.write(create)
                        created = await call.read()
                except TimeoutError:
                    raise Unavailable(f"etcd unreachable at {self._endpoints}: no answer to "
                                      f"watch within {self._timeout:g}s") from None
                if created is grpc.aio.EOF:
                    raise Unavailable(f"etcd at {self._endpoints}: watch stream ended")
                self._seen(created.header)
                if not created.canceled:
                    break
                reason = created.cancel_reason or "no reason given"
                call.cancel()
                if attempt == 1 and self.config.user and ("invalid auth token" in reason
                                                          or "permission denied" in reason):
                    # A watch learns of an expired token from the cancel reason
                    # (3.4.23: "invalid auth token"; older: "permission denied").
                    await self._reauthenticate(generation)
                    continue
                if created.compact_revision:
                    raise CompactedError(requested, created.compact_revision)
                raise RegistryError(f"etcd at {self._endpoints} refused the watch on "
                                    f"{key!r}: {reason}")
            pending: list[Any] = []
            while True:
                resp = await call.read()
                if resp is grpc.aio.EOF:
                    raise Unavailable(f"etcd at {self._endpoints}: watch stream ended")
                self._seen(resp.header)
                if resp.compact_revision:
                    raise CompactedError(requested, resp.compact_revision)
                # A revision too big for one message comes in fragments.  Hand
                # it out only when complete: the resume point is "last event's
                # revision + 1", so a stream lost mid-revision must not have
                # delivered part of that revision.
                pending.extend(resp.events)
                if resp.fragment:
                    continue
                events, pending = pending, []
                for ev in events:
                    event = _event(ev)
                    if event.kv.mod_revision > self._revision:
                        self._revision = event.kv.mod_revision
                    yield event
                if resp.canceled:
                    raise Unavailable(f"etcd at {self._endpoints} cancelled the watch on "
                                      f"{key!r}: {resp.cancel_reason or 'no reason given'}")
        except grpc.aio.AioRpcError as exc:
            raise self._error(exc, "watch") from exc
        except grpc.aio.UsageError as exc:
            raise Unavailable(f"etcd registry {self.url} is closed") from exc
        except asyncio.CancelledError:
            if self._closed_under_us():
                raise Unavailable(f"etcd registry {self.url} is closed") from None
            raise
        finally:
            if call is not None:
                call.cancel()

    async def _compact(self, revision: int) -> None:
        """Compact history up to ``revision``; already compacted is fine (as the local store)."""
        try:
            await self._call(self._kv_stub.Compact, rpc.CompactionRequest(revision=revision),
                             "compact", write=True)
        except CompactedError:
            return
        except InvalidRequest as exc:
            if "future revision" in str(exc):
                raise InvalidRequest(f"cannot compact revision {revision}: the store is at "
                                     f"revision {self._revision}") from None
            raise

    async def _close(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None:
            with contextlib.suppress(Exception):
                await channel.close()


__all__ = ["DEFAULT_TIMEOUT", "EtcdConfig", "EtcdRegistry", "parse_url"]
