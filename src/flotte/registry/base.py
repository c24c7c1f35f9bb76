"""The registry interface every backend implements, plus what is built on it once.

Backends implement the ``_``-prefixed primitives; this class adds input
checks (so every backend refuses bad input with the same words), the lease
objects with a keep-alive that survives transient failures, and a watch that
resumes after a connection loss from the last event's revision + 1 — never
from a response header's revision, which etcd 3.4 may have advanced past
events it has not sent yet (``etcd-perf.md`` pitfall 1).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from types import TracebackType
from typing import Self

from flotte.registry.types import (
    CompactedError,
    Compare,
    Delete,
    Event,
    InvalidRequest,
    KeyValue,
    LeaseNotFound,
    Op,
    Put,
    RegistryError,
    TxnResult,
    Unavailable,
    WatchLagged,
    check_key,
    check_ops,
    check_prefix,
    check_ttl,
    check_value,
)

log = logging.getLogger("flotte.registry")


class Lease:
    """A granted lease.  Keys put with ``lease=lease.id`` vanish when it ends.

    ``keepalive()`` refreshes once; ``async with lease:`` (or
    :meth:`start_keepalive`) refreshes every ``ttl/3`` in the background,
    riding out transient errors, and sets :attr:`lost` when the lease is
    gone or could not be refreshed for longer than its TTL — the holder must
    then stop acting on what the lease protected.
    """

    def __init__(self, registry: Registry, lease_id: int, ttl: int) -> None:
        self.registry = registry
        self.id = lease_id
        self.ttl = ttl
        self.lost = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"<Lease {self.id:x} ttl={self.ttl}s{' lost' if self.lost.is_set() else ''}>"

    async def keepalive(self) -> int:
        """Refresh once; returns the TTL granted.  Raises :class:`LeaseNotFound`."""
        return await self.registry._keepalive(self.id)

    async def revoke(self) -> None:
        """End the lease now: its keys are deleted (one revision)."""
        await self.stop_keepalive()
        await self.registry._revoke(self.id)

    def start_keepalive(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._keepalive_loop(), name=f"lease-{self.id:x}")

    async def stop_keepalive(self) -> None:
        task, self._task = self._task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _keepalive_loop(self) -> None:
        loop = asyncio.get_running_loop()
        last_ok = loop.time()
        interval = max(self.ttl / 3, 0.2)
        while True:
            await asyncio.sleep(interval)
            try:
                granted = await self.keepalive()
                if granted <= 0:
                    raise LeaseNotFound(self.id)
                last_ok = loop.time()
                interval = max(self.ttl / 3, 0.2)
            except LeaseNotFound:
                log.warning("lease %x lost", self.id)
                self.lost.set()
                return
            except (Unavailable, OSError, RegistryError) as exc:
                if loop.time() - last_ok >= self.ttl:
                    log.warning("lease %x: no refresh for %ss (%s); treating it as lost",
                                self.id, self.ttl, exc)
                    self.lost.set()
                    return
                interval = min(0.5, self.ttl / 10)  # retry quickly while there is time

    async def __aenter__(self) -> Self:
        self.start_keepalive()
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop_keepalive()
        with contextlib.suppress(RegistryError):
            await self.registry._revoke(self.id)


class Watch:
    """An async iterator of :class:`Event`, resuming across connection losses.

    Events arrive in revision order, each revision at most once.  ``close()``
    (or leaving ``async with``) stops it.  A watch from a compacted revision
    raises :class:`CompactedError` from the first ``__anext__``.
    """

    def __init__(self, registry: Registry, key: str, prefix: bool,
                 start_revision: int | None) -> None:
        self.registry = registry
        self.key = key
        self.prefix = prefix
        self.start_revision = start_revision
        # Resume point.  Without a start revision the watch begins after the
        # newest revision this client knows, fixed now: a write made after
        # creating the watch (even before iterating it) is always seen.
        self.next_revision: int = start_revision if start_revision is not None \
            else registry.revision + 1
        self._gen: AsyncIterator[Event] | None = None
        self._closed = False

    def __aiter__(self) -> Watch:
        return self

    async def __anext__(self) -> Event:
        while True:
            if self._closed:
                raise StopAsyncIteration
            if self._gen is None:
                self._gen = self.registry._watch(self.key, self.prefix, self.next_revision)
            try:
                event = await self._gen.__anext__()
            except (Unavailable, WatchLagged) as exc:
                if self._closed or self.registry.closed:
                    raise StopAsyncIteration from None
                if isinstance(exc, WatchLagged):
                    self.next_revision = exc.next_revision
                log.info("watch on %s interrupted (%s); resuming from revision %s",
                         self.key, exc, self.next_revision)
                await self._close_gen()
                await asyncio.sleep(0.05)
                continue
            except StopAsyncIteration:
                await self._close_gen()
                if self._closed or self.registry.closed:
                    raise
                await asyncio.sleep(0.05)
                continue
            self.next_revision = event.kv.mod_revision + 1
            return event

    async def _close_gen(self) -> None:
        gen, self._gen = self._gen, None
        if gen is not None:
            aclose = getattr(gen, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()

    async def close(self) -> None:
        self._closed = True
        await self._close_gen()

    async def __aenter__(self) -> Watch:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class Registry(abc.ABC):
    """A key-value store with etcd v3 semantics.  Use :func:`flotte.registry.connect`."""

    url: str = ""

    def __init__(self) -> None:
        self.closed = False

    # -- public API --------------------------------------------------------
    @property
    @abc.abstractmethod
    def revision(self) -> int:
        """The newest store revision this client knows of."""

    async def get(self, key: str) -> KeyValue | None:
        return await self._get(check_key(key))

    async def range(self, prefix: str, limit: int | None = None) -> list[KeyValue]:
        """Keys starting with ``prefix`` (``""``: all), sorted, at most ``limit``."""
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)
                                  or limit < 0):
            raise InvalidRequest(f"limit must be a non-negative int or None, not {limit!r}")
        return await self._range(check_prefix(prefix), limit or None)

    async def put(self, key: str, value: bytes, lease: int | Lease | None = None) -> int:
        """Write ``value`` at ``key``; returns the new revision."""
        key = check_key(key)
        lease_id = lease.id if isinstance(lease, Lease) else lease
        return await self._put(key, check_value(value, key), lease_id or None)

    async def delete(self, key: str, prefix: bool = False) -> int:
        """Delete ``key`` (or every key under it with ``prefix=True``); returns the count."""
        return await self._delete(check_prefix(key) if prefix else check_key(key), prefix)

    async def txn(self, compare: Sequence[Compare], success: Sequence[Op],
                  failure: Sequence[Op] = ()) -> TxnResult:
        """If every comparison holds run ``success``, else ``failure``; atomically."""
        for c in compare:
            if not isinstance(c, Compare):
                raise InvalidRequest(f"txn compare: {c!r} is not a Compare")
            check_key(c.key)
        return await self._txn(list(compare), check_ops(success, "txn success"),
                               check_ops(failure, "txn failure"))

    async def grant(self, ttl: float) -> Lease:
        """A new lease of ``ttl`` seconds (rounded up to whole seconds)."""
        t = check_ttl(ttl)
        lease_id, granted = await self._grant(t)
        return Lease(self, lease_id, granted)

    def watch(self, key: str, start_revision: int | None = None, *,
              prefix: bool = True) -> Watch:
        """Events for keys under ``key`` (or the one key, ``prefix=False``).

        Without ``start_revision`` events start after the newest revision this
        client knows when ``watch()`` is called (so "watch, then write" never
        misses the write); with it, history from that revision is replayed
        first, in order.
        """
        if start_revision is not None and (isinstance(start_revision, bool)
                                           or not isinstance(start_revision, int)
                                           or start_revision < 1):
            raise InvalidRequest(f"start_revision must be a positive int, not {start_revision!r}")
        key = check_prefix(key) if prefix else check_key(key)
        return Watch(self, key, prefix, start_revision)

    async def compact(self, revision: int) -> None:
        """Forget history up to and including ``revision``."""
        await self._compact(revision)

    async def close(self) -> None:
        self.closed = True
        await self._close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    # -- what a backend provides -------------------------------------------
    @abc.abstractmethod
    async def _get(self, key: str) -> KeyValue | None: ...

    @abc.abstractmethod
    async def _range(self, prefix: str, limit: int | None) -> list[KeyValue]: ...

    @abc.abstractmethod
    async def _put(self, key: str, value: bytes, lease: int | None) -> int: ...

    @abc.abstractmethod
    async def _delete(self, key: str, prefix: bool) -> int: ...

    @abc.abstractmethod
    async def _txn(self, compare: list[Compare], success: list[Op],
                   failure: list[Op]) -> TxnResult: ...

    @abc.abstractmethod
    async def _grant(self, ttl: int) -> tuple[int, int]:
        """Returns ``(lease id, granted ttl)``."""

    @abc.abstractmethod
    async def _keepalive(self, lease_id: int) -> int:
        """Refresh; returns the TTL.  Raises :class:`LeaseNotFound`."""

    @abc.abstractmethod
    async def _revoke(self, lease_id: int) -> None: ...

    @abc.abstractmethod
    def _watch(self, key: str, prefix: bool, start_revision: int | None
               ) -> AsyncIterator[Event]:
        """Raw event stream.  May raise :class:`Unavailable` (the wrapper resumes),
        :class:`WatchLagged` (resume from its revision) or :class:`CompactedError`."""

    @abc.abstractmethod
    async def _compact(self, revision: int) -> None: ...

    @abc.abstractmethod
    async def _close(self) -> None: ...


__all__ = ["CompactedError", "Delete", "Lease", "Put", "Registry", "Watch"]
