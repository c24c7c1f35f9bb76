"""Where ``flotte confd`` reads keys: the flotte registry directly, or the flotte API.

Both backends answer the same two questions:

* :meth:`Backend.fetch`: the values under some keys now.  A listed key
  means that key *and everything below it*, by path segments (``/app`` is
  not a prefix of ``/app2``); a key that does not exist is simply absent
  (etcd v2's "100: Key not found" failing a whole resource was confd's most
  reported problem, spec §8.1).
* :meth:`Backend.watch`: a stream of changes under those keys, starting
  right after a given :class:`Snapshot`, so that nothing between the first
  render and the first event is missed (confd's watch restarted "from now"
  after each render and lost changes, issues #629/#709).

:class:`RegistryBackend` (etcd via ``flotte.registry``, also ``memory://``
in tests) reads every key of a batch in one transaction, so all resources
of a batch see one revision, and watches with etcd's revision-ordered
watch.  :class:`ApiBackend` goes through the flotte API's ``/v1/kv``
routes; its stream re-reads the keys when ``/v1/events?prefix=`` reports a
change under them (every ``poll`` seconds against a server without that
parameter) and reports only values that really changed.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from flotte.api.client import ApiError, Client, KVNode
from flotte.discovery.confd.resource import covers
from flotte.registry import (
    CompactedError,
    Event,
    EventType,
    Get,
    KeyValue,
    Range,
    Registry,
    RegistryError,
    Watch,
)
from flotte.registry.types import MAX_TXN_OPS

log = logging.getLogger("flotte.confd")

#: Longest pause between polls of an unreachable API.
_MAX_POLL_BACKOFF: Final = 5.0


class BackendError(Exception):
    """Keys could not be read; the message names the backend and what failed."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Values of full backend keys at one moment; ``revision`` when the backend has one."""

    values: dict[str, str]
    revision: int | None = None

    def under(self, keys: Iterable[str]) -> dict[str, str]:
        """The values covered by any of ``keys`` (segment-wise)."""
        keys = list(keys)
        return {k: v for k, v in self.values.items() if any(covers(full, k) for full in keys)}


@dataclass(frozen=True, slots=True)
class Change:
    """One key's new value (``None``: deleted); ``revision`` when the backend has one."""

    key: str
    value: str | None
    revision: int | None = None


class ChangeStream(abc.ABC):
    """Batches of changes, as they arrive: ``async for changes in stream``."""

    def __aiter__(self) -> ChangeStream:
        return self

    @abc.abstractmethod
    async def __anext__(self) -> list[Change]: ...

    @abc.abstractmethod
    async def close(self) -> None: ...


class Backend(abc.ABC):
    """A source of keys (see the module docs)."""

    #: For logs: ``etcd://127.0.0.1:2379``, ``flotte API at unix:///…``.
    description: str = ""

    @abc.abstractmethod
    async def fetch(self, keys: Sequence[str]) -> Snapshot:
        """Every key at or below ``keys``.  Raises :class:`BackendError`."""

    @abc.abstractmethod
    def watch(self, keys: Sequence[str], after: Snapshot) -> ChangeStream:
        """Changes at or below ``keys`` made after ``after`` was read."""

    async def close(self) -> None:
        return None


def _text(value: bytes) -> str:
    """A value as the template engine holds Go strings: bytes that are not UTF-8 kept."""
    return value.decode("utf-8", "surrogateescape")


# -- registry ---------------------------------------------------------------------------


def _ops(keys: Sequence[str]) -> list[Get | Range]:
    ops: list[Get | Range] = []
    for key in keys:
        if key == "/":
            ops.append(Range("/"))
        else:
            ops += [Get(key), Range(key + "/")]
    return ops


class RegistryBackend(Backend):
    """Keys straight from a :class:`~flotte.registry.Registry` (etcd, or memory:// in tests)."""

    def __init__(self, registry: Registry, *, own: bool = False) -> None:
        self.registry = registry
        self.own = own
        self.description = registry.url or type(registry).__name__

    async def fetch(self, keys: Sequence[str]) -> Snapshot:
        ops = _ops(keys)
        values: dict[str, str] = {}
        revision = 0
        try:
            for start in range(0, max(len(ops), 1), MAX_TXN_OPS):
                chunk = ops[start:start + MAX_TXN_OPS]
                if not chunk:
                    break
                res = await self.registry.txn([], chunk)
                revision = max(revision, res.revision)
                for response in res.responses:
                    items: list[KeyValue] = response if isinstance(response, list) \
                        else [response] if response is not None else []
                    for kv in items:
                        values[kv.key] = _text(kv.value)
        except (RegistryError, OSError) as exc:
            raise BackendError(f"cannot read keys from {self.description}: {exc}") from None
        return Snapshot(values, revision or self.registry.revision)

    def watch(self, keys: Sequence[str], after: Snapshot) -> ChangeStream:
        start = (after.revision or self.registry.revision) + 1
        return _RegistryStream(self.registry, list(keys), start)

    async def close(self) -> None:
        if self.own:
            await self.registry.close()


class _RegistryStream(ChangeStream):
    """One registry watch per key subtree, merged into one queue."""

    def __init__(self, registry: Registry, keys: list[str], start_revision: int) -> None:
        self._queue: asyncio.Queue[Change | BaseException] = asyncio.Queue()
        self._watches: list[Watch] = []
        self._tasks: list[asyncio.Task[None]] = []
        for key in keys:
            # a string-prefix watch; _pump drops keys that only share a prefix string
            watch = registry.watch(key, start_revision=start_revision)
            self._watches.append(watch)
            self._tasks.append(asyncio.create_task(self._pump(watch, key),
                                                   name=f"confd-watch {key}"))

    async def _pump(self, watch: Watch, key: str) -> None:
        try:
            async for event in watch:
                if covers(key, event.kv.key):
                    await self._queue.put(_change(event))
        except asyncio.CancelledError:
            raise
        except (RegistryError, OSError) as exc:
            await self._queue.put(exc)

    async def __anext__(self) -> list[Change]:
        item = await self._queue.get()
        batch: list[Change] = []
        while True:
            if isinstance(item, CompactedError):
                raise item
            if isinstance(item, BaseException):
                raise BackendError(f"watch failed: {item}") from item
            batch.append(item)
            try:
                item = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                return batch

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for watch in self._watches:
            await watch.close()


def _change(event: Event) -> Change:
    value = _text(event.kv.value) if event.type is EventType.PUT else None
    return Change(event.kv.key, value, event.revision)


# -- API --------------------------------------------------------------------------------


def _leaves(node: KVNode, out: dict[str, str]) -> None:
    if node.dir:
        for child in node.nodes:
            _leaves(child, out)
    elif node.value is not None:
        out[node.key] = node.value


class ApiBackend(Backend):
    """Keys through the flotte API (``GET /v1/kv/<key>?recursive=true``)."""

    def __init__(self, client: Client, *, poll: float = 0.25, own: bool = False) -> None:
        self.client = client
        self.poll = poll
        self.own = own
        self.description = f"the flotte API at {client.endpoint}"

    async def fetch(self, keys: Sequence[str]) -> Snapshot:
        try:
            nodes = await asyncio.gather(*(self.client.kv_get(k, recursive=True)
                                           for k in keys))
        except ApiError as exc:
            raise BackendError(f"cannot read keys from {self.description}: {exc.message}"
                               ) from None
        values: dict[str, str] = {}
        for key, node in zip(keys, nodes, strict=True):
            if node is None:
                continue
            found: dict[str, str] = {}
            _leaves(node, found)
            values.update((k, v) for k, v in found.items() if covers(key, k))
        return Snapshot(values)

    def watch(self, keys: Sequence[str], after: Snapshot) -> ChangeStream:
        return _PollStream(self, list(keys), after.under(keys))

    async def close(self) -> None:
        if self.own:
            await self.client.close()


def _common_prefix(keys: Sequence[str]) -> str:
    """The longest path shared by ``keys`` (``/`` at worst), used as an event prefix:
    ``/services/apache`` also matches ``/services/apache2`` — a harmless extra wake."""
    parts = [k.strip("/").split("/") for k in keys] or [[]]
    common: list[str] = []
    for segs in zip(*parts, strict=False):
        if len(set(segs)) != 1:
            break
        common.append(segs[0])
    return "/" + "/".join(p for p in common if p)


class _PollStream(ChangeStream):
    """Re-read the keys when the API reports a change under them (or every ``poll``
    seconds without that stream); report the values that differ."""

    def __init__(self, backend: ApiBackend, keys: list[str], known: dict[str, str]) -> None:
        self._backend = backend
        self._keys = keys
        self._known = known
        self._signal = backend.client.change_signal(_common_prefix(keys))
        self._gen = self._poll()

    async def _poll(self) -> AsyncGenerator[list[Change], None]:
        delay = self._backend.poll
        failing = False
        while True:
            await self._signal.wait(delay)
            self._signal.clear()
            try:
                snap = await self._backend.fetch(self._keys)
            except BackendError as exc:
                if not failing:
                    log.warning("%s; retrying", exc)
                failing = True
                delay = min(max(delay * 2, self._backend.poll), _MAX_POLL_BACKOFF)
                continue
            if failing:
                log.info("%s answers again", self._backend.description)
            failing = False
            delay = self._backend.poll
            changes = [Change(k, v) for k, v in snap.values.items() if self._known.get(k) != v]
            changes += [Change(k, None) for k in self._known if k not in snap.values]
            self._known = snap.values
            if changes:
                yield changes

    async def __anext__(self) -> list[Change]:
        return await self._gen.__anext__()

    async def close(self) -> None:
        await self._gen.aclose()
        await self._signal.close()


__all__ = ["ApiBackend", "Backend", "BackendError", "Change", "ChangeStream",
           "RegistryBackend", "Snapshot"]
