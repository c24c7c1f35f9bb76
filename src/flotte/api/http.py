"""A small HTTP/1.1 client on asyncio streams, for :class:`flotte.api.client.Client`.

Why not aiohttp's client: importing it costs ~110 ms, which every
``fleetctl`` command paid before doing anything (``fleetctl list-units`` of
10,000 units took 360 ms, 230 of them start-up).  The API client needs very
little of HTTP: one request per connection (``Connection: close``; a unix
socket or loopback connect is ~0.1 ms), bodies with ``Content-Length`` or
chunked, and line-by-line reading of streamed answers (journal, events).
TLS (``https://``) uses the standard ``ssl`` module, imported only then.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

__all__ = ["HttpFailure", "Response", "Transport"]

_MAX_HEADER = 64 * 1024


class HttpFailure(Exception):
    """The server could not be reached or broke the protocol (not an HTTP error status)."""


@dataclass
class Response:
    status: int
    reason: str
    headers: dict[str, str] = field(default_factory=dict)
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None

    async def body(self) -> bytes:
        return b"".join([chunk async for chunk in self.chunks()])

    async def chunks(self) -> AsyncIterator[bytes]:
        reader = self.reader
        assert reader is not None
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size_line = await reader.readline()
                if not size_line:
                    raise HttpFailure("connection closed inside a chunked body")
                size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    await reader.readline()  # the empty trailer line
                    return
                yield await reader.readexactly(size)
                await reader.readexactly(2)  # CRLF after each chunk
        elif "content-length" in self.headers:
            left = int(self.headers["content-length"])
            while left > 0:
                data = await reader.read(min(left, 1 << 16))
                if not data:
                    raise HttpFailure("connection closed before the end of the body")
                left -= len(data)
                yield data
        else:
            while data := await reader.read(1 << 16):
                yield data

    async def lines(self) -> AsyncIterator[bytes]:
        """The body split after each ``\\n`` (the last piece may lack one)."""
        rest = b""
        async for chunk in self.chunks():
            rest += chunk
            *complete, rest = rest.split(b"\n")
            for line in complete:
                yield line + b"\n"
        if rest:
            yield rest

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()
            self.writer = None


class Transport:
    """Where requests go: a unix socket, or ``http(s)://host:port``."""

    def __init__(self, *, socket_path: str | None = None, base: str = "",
                 headers: Mapping[str, str] | None = None) -> None:
        self.socket_path = socket_path
        self.headers = dict(headers or {})
        if socket_path is None:
            parts = urlsplit(base)
            self.tls = parts.scheme == "https"
            self.host = parts.hostname or "localhost"
            self.port = parts.port or (443 if self.tls else 80)
            self.prefix = parts.path.rstrip("/")
            self.host_header = parts.netloc
        else:
            self.tls = False
            self.host, self.port, self.prefix, self.host_header = "localhost", 0, "", "localhost"

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        limit = _MAX_HEADER
        if self.socket_path is not None:
            return await asyncio.open_unix_connection(self.socket_path, limit=limit)
        if self.tls:
            # imported here on purpose: only https endpoints pay for ssl (~10 ms, 6 MiB)
            import ssl

            return await asyncio.open_connection(self.host, self.port, limit=limit,
                                                 ssl=ssl.create_default_context())
        return await asyncio.open_connection(self.host, self.port, limit=limit)

    async def send(self, method: str, target: str, *, body: bytes | None = None,
                   headers: Mapping[str, str] | None = None) -> Response:
        """Send one request and read the status line and headers (the body is left)."""
        try:
            reader, writer = await self._connect()
        except OSError as exc:
            raise HttpFailure(str(exc) or type(exc).__name__) from exc
        head = [f"{method} {self.prefix}{target} HTTP/1.1", f"Host: {self.host_header}",
                "Connection: close", "Accept-Encoding: identity"]
        for k, v in {**self.headers, **(headers or {})}.items():
            head.append(f"{k}: {v}")
        if body is not None:
            head.append(f"Content-Length: {len(body)}")
        data = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + (body or b"")
        try:
            writer.write(data)
            await writer.drain()
            status_line = await reader.readline()
            parts = status_line.decode("latin-1").rstrip("\r\n").split(" ", 2)
            if len(parts) < 2 or not parts[0].startswith("HTTP/"):
                raise HttpFailure(f"not an HTTP answer: {status_line[:80]!r}")
            resp = Response(int(parts[1]), parts[2] if len(parts) > 2 else "",
                            reader=reader, writer=writer)
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b"\n", b""):
                    break
                name, _, value = line.decode("latin-1").partition(":")
                resp.headers[name.strip().lower()] = value.strip()
            return resp
        except (OSError, ValueError, asyncio.IncompleteReadError) as exc:
            writer.close()
            raise HttpFailure(str(exc) or type(exc).__name__) from exc
        except BaseException:
            writer.close()
            raise
