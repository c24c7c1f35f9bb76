"""Listening: unix sockets and TCP, and the API token.

``serve(app, ["unix:///run/flotte/api.sock", "http://0.0.0.0:49153"])``.

The sockets are created here rather than by aiohttp so that

* a unix socket gets mode 0600 *before* ``listen()`` (no window in which
  another user could connect), a stale socket left by a crashed daemon is
  removed, and a live one is never stolen;
* ``http://host:0`` reports the port the kernel picked (tests, and several
  agents on one host).

The token for TCP clients is created once per machine by
:func:`load_or_create_token` and kept in ``<state_dir>/api-token`` (0600):
fleet's API had no authentication and "anyone who can reach the API socket
can run code as root on every machine" (fleet.md §7.3).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
import socket
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import web

from flotte.api.context import CONTEXT
from flotte.paths import TOKEN_FILE

log = logging.getLogger("flotte.api")


@dataclass(frozen=True, slots=True)
class ListenAddress:
    """A parsed listen URL: ``unix`` with ``path``, or ``tcp`` with ``host``/``port``."""

    kind: str
    path: str = ""
    host: str = ""
    port: int = 0


def parse_listen(url: str) -> ListenAddress:
    """``unix:///path.sock`` or ``http://host:port`` (``[v6]:port``; port 0 = any)."""
    if url.startswith("unix://"):
        path = url[len("unix://"):]
        if not path:
            raise ValueError(f"listen address {url!r} names no socket file; write "
                             "unix:///run/flotte/api.sock")
        return ListenAddress("unix", path=path)
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname or parts.path not in ("", "/"):
        raise ValueError(f"listen address {url!r} is not unix:///path.sock or "
                         "http://host:port (https: put a TLS proxy in front)")
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"listen address {url!r}: {exc}") from None
    if port is None:
        raise ValueError(f"listen address {url!r} needs a port, e.g. http://127.0.0.1:49153 "
                         "(0 picks a free one)")
    return ListenAddress("tcp", host=parts.hostname, port=port)


def _remove_stale_socket(path: str) -> None:
    """Remove a socket file nobody listens on; refuse anything else."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise FileExistsError(errno.EEXIST, f"{path} exists and is not a socket; remove it or "
                                            "listen elsewhere", path)
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        log.info("removing stale API socket %s", path)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return
    except OSError as exc:
        raise OSError(errno.EADDRINUSE, f"cannot tell whether {path} is in use ({exc}); "
                                        "remove it if no flotte daemon is running") from None
    finally:
        probe.close()
    raise OSError(errno.EADDRINUSE, f"{path}: another server is listening on this socket; "
                                    "stop it or choose another path")


def unix_socket(path: str) -> socket.socket:
    """A bound (not yet listening) unix socket at ``path`` with mode 0600."""
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, mode=0o755, exist_ok=True)
    _remove_stale_socket(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        os.chmod(path, 0o600)  # before listen(): nobody can connect yet
    except BaseException:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def tcp_socket(host: str, port: int) -> socket.socket:
    """A bound TCP socket; the first address ``host`` resolves to is used."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, addr = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(addr)
    except BaseException:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def _tcp_url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


@dataclass(slots=True)
class Listener:
    """One listening socket: ``url`` is the real address (the bound port for ``:0``)."""

    url: str
    site: web.SockSite
    path: str | None = None  # the unix socket file, removed on close


@dataclass(slots=True)
class Served:
    """Running listeners of one app; ``await served.close()`` stops them all."""

    runner: web.AppRunner
    listeners: list[Listener] = field(default_factory=list)

    @property
    def urls(self) -> list[str]:
        return [lst.url for lst in self.listeners]

    def __iter__(self) -> Iterator[Listener]:
        return iter(self.listeners)

    def __len__(self) -> int:
        return len(self.listeners)

    def __getitem__(self, index: int) -> Listener:
        return self.listeners[index]

    async def close(self) -> None:
        await self.runner.cleanup()
        for lst in self.listeners:
            if lst.path is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(lst.path)


async def serve(app: web.Application, listen: list[str], *,
                shutdown_timeout: float = 5.0) -> Served:
    """Start serving ``app`` on every address in ``listen``.

    Raises ``ValueError`` for a TCP address when the app has neither a token
    nor ``no_auth`` (it would refuse every request there), and ``OSError``
    when an address is taken; nothing is left listening on failure.
    """
    if not listen:
        raise ValueError("serve() needs at least one listen address")
    addresses = [parse_listen(url) for url in listen]
    ctx = app[CONTEXT]
    if any(a.kind == "tcp" for a in addresses) and ctx.token is None and not ctx.no_auth:
        raise ValueError("TCP listeners need an API token (see load_or_create_token) or "
                         "no_auth=True")
    sockets: list[tuple[ListenAddress, socket.socket]] = []
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=shutdown_timeout)
    served = Served(runner)
    try:
        for addr in addresses:
            sock = unix_socket(addr.path) if addr.kind == "unix" else tcp_socket(addr.host,
                                                                                   addr.port)
            sockets.append((addr, sock))
        await runner.setup()
        for addr, sock in sockets:
            site = web.SockSite(runner, sock)
            await site.start()
            if addr.kind == "unix":
                served.listeners.append(Listener(f"unix://{addr.path}", site, addr.path))
            else:
                served.listeners.append(Listener(_tcp_url(sock), site))
    except BaseException:
        await runner.cleanup()
        for addr, sock in sockets:
            sock.close()
            if addr.kind == "unix":
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(addr.path)
        raise
    for url in served.urls:
        log.info("API listening on %s", url)
    return served


def load_or_create_token(state_dir: str | os.PathLike[str]) -> str:
    """The machine's API token from ``<state_dir>/api-token``, created (0600) if missing.

    Creation is atomic and race-free (write a temporary file, then
    ``link()`` it into place, which fails if another process won), so two
    daemons starting at once agree on one token.  A token file readable by
    others is tightened to 0600 with a warning.
    """
    directory = Path(state_dir)
    path = directory / TOKEN_FILE
    for _ in range(3):
        try:
            return _read_token(path)
        except FileNotFoundError:
            pass
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = directory / f".{TOKEN_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_urlsafe(32) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
    return _read_token(path)


def store_token(state_dir: str | os.PathLike[str], token: str) -> Path:
    """Write ``token`` as ``<state_dir>/api-token`` (0600, atomically replacing it).

    The daemon keeps the cluster's token there, so local tools find the token
    every member's TCP listener accepts.
    """
    directory = Path(state_dir)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = directory / TOKEN_FILE
    tmp = directory / f".{TOKEN_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    os.replace(tmp, path)
    return path


def _read_token(path: Path) -> str:
    st = path.stat()
    if st.st_mode & 0o077:
        log.warning("%s was readable by other users; setting its mode to 0600 (consider "
                    "deleting it so a new token is generated)", path)
        os.chmod(path, 0o600)
    token = path.read_text(encoding="utf-8").strip()
    if not token:
        raise ValueError(f"{path} is empty; delete it and a new token will be created")
    return token
