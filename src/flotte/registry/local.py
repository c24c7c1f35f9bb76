"""The in-process store: etcd v3 semantics for ``memory://`` and ``sqlite://``.

One :class:`LocalStore` per store, shared by every :class:`LocalRegistry`
handle that a process opens on it (the agent, the engine and the API of
``flotte up`` all talk to the same store).  State lives in memory — a sorted
key index, the lease table, a bounded history for watch replay — and, for
``sqlite://``, every change is made durable *before* it is acknowledged or
shown to any reader or watcher.

Writes go through one committer task (group commit): requests that arrive
while a commit is being fsynced are evaluated in order against a staging
overlay and committed together in the next SQLite transaction.  Each request
still gets its own revision, exactly as if they had run one by one, and
nobody observes a change before it is durable.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import functools
import heapq
import itertools
import logging
import secrets
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from sortedcontainers import SortedDict

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
    WatchLagged,
)

log = logging.getLogger("flotte.registry")

#: Revisions kept for watch replay before automatic compaction.
DEFAULT_HISTORY = 100_000
#: Events a watcher may have pending before it is cut off (it then resumes).
WATCHER_MAX_PENDING = 50_000


# ---------------------------------------------------------------------------
# Persistence hook (implemented by flotte.registry.sqlite)


@dataclass(slots=True)
class CommitBatch:
    """Everything one group commit changes, for the persistence layer."""

    revision: int
    events: list[Event] = field(default_factory=list)
    lease_grants: list[tuple[int, int]] = field(default_factory=list)  # (id, ttl)
    lease_revokes: list[int] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.events or self.lease_grants or self.lease_revokes)


@dataclass(slots=True)
class LoadedState:
    revision: int = 0
    compact_revision: int = 0
    kvs: list[KeyValue] = field(default_factory=list)
    history: list[Event] = field(default_factory=list)
    leases: list[tuple[int, int]] = field(default_factory=list)  # (id, ttl)


class Persistence(Protocol):
    """Durable storage under a :class:`LocalStore`.  Methods run in one worker thread."""

    def load(self) -> LoadedState: ...

    def commit(self, batch: CommitBatch) -> None: ...

    def compact(self, revision: int) -> None: ...

    def close(self) -> None: ...


# ---------------------------------------------------------------------------


@dataclass(slots=True)
class _Lease:
    id: int
    ttl: int
    deadline: float
    keys: set[str] = field(default_factory=set)


class _Watcher:
    __slots__ = ("closed", "key", "lagged_at", "pending", "prefix", "wake")

    def __init__(self, key: str, prefix: bool) -> None:
        self.key = key
        self.prefix = prefix
        self.pending: deque[Event] = deque()
        self.wake = asyncio.Event()
        self.lagged_at: int | None = None
        self.closed = False

    def matches(self, key: str) -> bool:
        return key.startswith(self.key) if self.prefix else key == self.key

    def push(self, events: list[Event]) -> None:
        if self.lagged_at is not None:
            return
        added = False
        for e in events:
            if self.matches(e.kv.key):
                if len(self.pending) >= WATCHER_MAX_PENDING:
                    self.lagged_at = self.pending[0].revision if self.pending else e.revision
                    self.pending.clear()
                    self.wake.set()
                    return
                self.pending.append(e)
                added = True
        if added:
            self.wake.set()


class _Staging:
    """A write's view of the store: committed state plus this batch's changes."""

    def __init__(self, store: LocalStore) -> None:
        self.store = store
        self.revision = store.revision
        self.overlay: dict[str, KeyValue | None] = {}
        self.batch = CommitBatch(store.revision)
        self.granted: dict[int, int] = {}
        self.revoked: set[int] = set()

    # reads
    def get(self, key: str) -> KeyValue | None:
        if key in self.overlay:
            return self.overlay[key]
        return self.store.get(key)

    def range(self, prefix: str, limit: int | None = None) -> list[KeyValue]:
        keys = set(self.store._keys_with_prefix(prefix))
        keys.update(k for k in self.overlay if k.startswith(prefix))
        out: list[KeyValue] = []
        for k in sorted(keys):
            kv = self.get(k)
            if kv is not None:
                out.append(kv)
                if limit and len(out) >= limit:
                    break
        return out

    def lease_exists(self, lease_id: int) -> bool:
        if lease_id in self.revoked:
            return False
        return lease_id in self.granted or lease_id in self.store._leases

    # writes: each request runs between begin() and either nothing (kept)
    # or rollback() (a request is all-or-nothing), using an undo log rather
    # than copying the overlay, so a batch of n requests costs O(n).
    def begin(self) -> None:
        self._changed = False
        self._undo: list[tuple[str, bool, KeyValue | None]] = []
        self._mark = (self.revision, len(self.batch.events), len(self.batch.lease_grants),
                      len(self.batch.lease_revokes), dict(self.granted), set(self.revoked))

    def rollback(self) -> None:
        for key, had, old in reversed(self._undo):
            if had:
                self.overlay[key] = old
            else:
                self.overlay.pop(key, None)
        rev, ne, ng, nr, granted, revoked = self._mark
        self.revision = rev
        del self.batch.events[ne:]
        del self.batch.lease_grants[ng:]
        del self.batch.lease_revokes[nr:]
        self.granted, self.revoked = granted, revoked

    def _set(self, key: str, kv: KeyValue | None) -> None:
        self._undo.append((key, key in self.overlay, self.overlay.get(key)))
        self.overlay[key] = kv

    def _next(self) -> int:
        if not self._changed:
            self._changed = True
            self.revision += 1
        return self.revision

    def put(self, key: str, value: bytes, lease: int | None) -> int:
        if lease and not self.lease_exists(lease):
            raise LeaseNotFound(lease)
        rev = self._next()
        prev = self.get(key)
        if prev is None:
            kv = KeyValue(key, value, rev, rev, 1, lease or 0)
        else:
            kv = KeyValue(key, value, prev.create_revision, rev, prev.version + 1, lease or 0)
        self._set(key, kv)
        self.batch.events.append(Event(EventType.PUT, kv, prev))
        return rev

    def delete(self, key: str, prefix: bool) -> int:
        victims = self.range(key) if prefix else [kv for kv in [self.get(key)] if kv]
        if not victims:
            return 0
        rev = self._next()
        for prev in victims:
            self._set(prev.key, None)
            self.batch.events.append(
                Event(EventType.DELETE, KeyValue(prev.key, b"", 0, rev, 0, 0), prev))
        return len(victims)

    def grant(self, ttl: int) -> int:
        while True:
            lease_id = secrets.randbits(62) + 1
            if not self.lease_exists(lease_id) and lease_id not in self.revoked:
                break
        self.granted[lease_id] = ttl
        self.batch.lease_grants.append((lease_id, ttl))
        return lease_id

    def revoke(self, lease_id: int) -> None:
        if not self.lease_exists(lease_id):
            raise LeaseNotFound(lease_id)
        keys = set()
        if lease_id in self.store._leases:
            keys |= self.store._leases[lease_id].keys
        # keys attached within this batch
        keys |= {k for k, kv in self.overlay.items() if kv is not None and kv.lease == lease_id}
        for key in sorted(keys):
            kv = self.get(key)
            if kv is not None and kv.lease == lease_id:
                self.delete(key, False)
        self.revoked.add(lease_id)
        self.granted.pop(lease_id, None)
        self.batch.lease_revokes.append(lease_id)


class LocalStore:
    """The shared state behind ``memory://`` and ``sqlite://`` registries."""

    def __init__(self, name: str, persistence: Persistence | None = None, *,
                 history_limit: int = DEFAULT_HISTORY) -> None:
        self.name = name
        self.persistence = persistence
        self.history_limit = history_limit
        self.revision = 0
        self.compact_revision = 0
        self._kv: SortedDict = SortedDict()
        self._history: list[Event] = []
        self._history_revs: list[int] = []
        self._leases: dict[int, _Lease] = {}
        self._expiry_heap: list[tuple[float, int]] = []
        self._watchers: set[_Watcher] = set()
        self._queue: deque[tuple[Callable[[_Staging], Any], asyncio.Future[Any]]] = deque()
        self._wake: asyncio.Event | None = None
        self._committer: asyncio.Task[None] | None = None
        self._expirer: asyncio.Task[None] | None = None
        self._executor: Any = None
        self._closed = False
        self.refs = 0

    # -- life cycle --------------------------------------------------------
    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        if self.persistence is not None:
            from concurrent.futures import ThreadPoolExecutor

            self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"registry-{self.name}")
            state = await loop.run_in_executor(self._executor, self.persistence.load)
            self.revision = state.revision
            self.compact_revision = state.compact_revision
            for kv in state.kvs:
                self._kv[kv.key] = kv
            self._history = list(state.history)
            self._history_revs = [e.revision for e in self._history]
            now = loop.time()
            # As etcd does after a restart: every lease gets a full TTL again.
            for lease_id, ttl in state.leases:
                self._leases[lease_id] = _Lease(lease_id, ttl, now + ttl)
                heapq.heappush(self._expiry_heap, (now + ttl, lease_id))
            for kv in state.kvs:
                if kv.lease and kv.lease in self._leases:
                    self._leases[kv.lease].keys.add(kv.key)
        self._wake = asyncio.Event()
        self._committer = asyncio.create_task(self._commit_loop(), name=f"commit-{self.name}")
        self._expirer = asyncio.create_task(self._expiry_loop(), name=f"expire-{self.name}")

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for w in list(self._watchers):
            w.closed = True
            w.wake.set()
        for task in (self._committer, self._expirer):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        while self._queue:
            _, fut = self._queue.popleft()
            if not fut.done():
                fut.set_exception(Unavailable(f"registry {self.name} is closed"))
        if self.persistence is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor,
                                                             self.persistence.close)
            self._executor.shutdown(wait=True)

    # -- reads --------------------------------------------------------------
    def _keys_with_prefix(self, prefix: str) -> Any:
        if not prefix:
            return iter(self._kv.keys())
        return itertools.takewhile(lambda k: k.startswith(prefix),
                                   self._kv.irange(minimum=prefix))

    def get(self, key: str) -> KeyValue | None:
        kv: KeyValue | None = self._kv.get(key)
        return kv

    def range(self, prefix: str, limit: int | None) -> list[KeyValue]:
        keys = self._keys_with_prefix(prefix)
        if limit:
            keys = itertools.islice(keys, limit)
        kv = self._kv
        return [kv[k] for k in keys]

    # -- writes -------------------------------------------------------------
    async def submit(self, fn: Callable[[_Staging], Any]) -> Any:
        """Run ``fn`` against the store as one atomic step; durable before it returns."""
        if self._closed:
            raise Unavailable(f"registry {self.name} is closed")
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((fn, fut))
        assert self._wake is not None
        self._wake.set()
        return await fut

    async def _commit_loop(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch = [self._queue.popleft() for _ in range(min(len(self._queue), 512))]
                await self._commit(batch)

    async def _commit(self, batch: list[tuple[Callable[[_Staging], Any],
                                              asyncio.Future[Any]]]) -> None:
        stage = _Staging(self)
        results: list[tuple[asyncio.Future[Any], bool, Any]] = []
        for fn, fut in batch:
            if fut.cancelled():
                continue
            stage.begin()
            try:
                results.append((fut, True, fn(stage)))
            except Exception as exc:
                stage.rollback()
                results.append((fut, False, exc))
        stage.batch.revision = stage.revision
        if not stage.batch.empty and self.persistence is not None:
            try:
                await asyncio.get_running_loop().run_in_executor(
                    self._executor, self.persistence.commit, stage.batch)
            except Exception as exc:  # disk full, I/O error: nothing was applied
                log.error("registry %s: commit failed: %s", self.name, exc)
                err = Unavailable(f"registry {self.name}: cannot write: {exc}")
                for fut, _, _ in results:
                    if not fut.done():
                        fut.set_exception(err)
                return
        self._apply(stage)
        for fut, ok, res in results:
            if fut.done():
                continue
            if ok:
                fut.set_result(res)
            else:
                fut.set_exception(res)

    def _apply(self, stage: _Staging) -> None:
        now = asyncio.get_running_loop().time()
        for lease_id, ttl in stage.batch.lease_grants:
            if lease_id not in stage.revoked:
                self._leases[lease_id] = _Lease(lease_id, ttl, now + ttl)
                heapq.heappush(self._expiry_heap, (now + ttl, lease_id))
        events = stage.batch.events
        for e in events:
            key = e.kv.key
            if e.prev_kv is not None and e.prev_kv.lease in self._leases:
                self._leases[e.prev_kv.lease].keys.discard(key)
            if e.type is EventType.PUT:
                self._kv[key] = e.kv
                if e.kv.lease and e.kv.lease in self._leases:
                    self._leases[e.kv.lease].keys.add(key)
            else:
                self._kv.pop(key, None)
        for lease_id in stage.batch.lease_revokes:
            self._leases.pop(lease_id, None)
        self.revision = stage.revision
        if events:
            self._history.extend(events)
            self._history_revs.extend(e.revision for e in events)
            for w in list(self._watchers):
                w.push(events)
            if self.history_limit and self.revision - self.compact_revision > \
                    self.history_limit * 1.25:
                self._drop_history(self.revision - self.history_limit + 1)

    def _drop_history(self, revision: int) -> None:
        """Forget events before ``revision`` (etcd's compact keeps ``revision`` itself)."""
        cut = bisect.bisect_left(self._history_revs, revision)
        del self._history[:cut]
        del self._history_revs[:cut]
        self.compact_revision = max(self.compact_revision, revision)
        if self.persistence is not None and self._executor is not None:
            self._executor.submit(self.persistence.compact, revision)

    async def compact(self, revision: int) -> None:
        if revision > self.revision:
            raise InvalidRequest(f"cannot compact revision {revision}: the store is at "
                                 f"revision {self.revision}")
        if revision <= self.compact_revision:
            return
        self._drop_history(revision)

    # -- leases -------------------------------------------------------------
    def keepalive(self, lease_id: int) -> int:
        lease = self._leases.get(lease_id)
        if lease is None:
            raise LeaseNotFound(lease_id)
        lease.deadline = asyncio.get_running_loop().time() + lease.ttl
        heapq.heappush(self._expiry_heap, (lease.deadline, lease_id))
        return lease.ttl

    async def _expiry_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            while self._expiry_heap and self._expiry_heap[0][0] <= now:
                deadline, lease_id = heapq.heappop(self._expiry_heap)
                lease = self._leases.get(lease_id)
                if lease is None or lease.deadline > deadline:
                    continue  # revoked, or refreshed since (a newer heap entry exists)
                with contextlib.suppress(LeaseNotFound, Unavailable):
                    await self.submit(functools.partial(_Staging.revoke, lease_id=lease_id))
            delay = self._expiry_heap[0][0] - loop.time() if self._expiry_heap else 0.5
            await asyncio.sleep(min(max(delay, 0.001), 0.5))

    # -- watches ------------------------------------------------------------
    async def watch(self, key: str, prefix: bool, start_revision: int | None
                    ) -> AsyncIterator[Event]:
        w = _Watcher(key, prefix)
        backlog: list[Event] = []
        if start_revision is not None:
            if start_revision < self.compact_revision:
                raise CompactedError(start_revision, self.compact_revision)
            i = bisect.bisect_left(self._history_revs, start_revision)
            backlog = [e for e in self._history[i:] if w.matches(e.kv.key)]
        self._watchers.add(w)  # no await since the backlog snapshot: no gap, no overlap
        try:
            for e in backlog:
                yield e
            while True:
                while w.pending:
                    yield w.pending.popleft()
                if w.lagged_at is not None:
                    raise WatchLagged(w.lagged_at)
                if w.closed or self._closed:
                    raise Unavailable(f"registry {self.name} is closed")
                w.wake.clear()
                await w.wake.wait()
        finally:
            self._watchers.discard(w)


# ---------------------------------------------------------------------------


def _run_op(st: _Staging, op: Op) -> Any:
    if isinstance(op, Put):
        return st.put(op.key, op.value, op.lease)
    if isinstance(op, Delete):
        return st.delete(op.key, op.prefix)
    if isinstance(op, Get):
        return st.get(op.key)
    if isinstance(op, Range):
        return st.range(op.prefix, op.limit)
    if isinstance(op, Txn):
        ok = all(c.evaluate(st.get(c.key)) for c in op.compare)
        responses = [_run_op(st, o) for o in (op.success if ok else op.failure)]
        return TxnResult(ok, st.revision, responses)
    raise InvalidRequest(f"unknown op {op!r}")


class LocalRegistry(Registry):
    """A handle on a :class:`LocalStore`.  Closing it does not revoke its leases."""

    def __init__(self, store: LocalStore, url: str,
                 release: Callable[[LocalStore], Any] | None = None) -> None:
        super().__init__()
        self.store = store
        self.url = url
        self._release = release

    @property
    def revision(self) -> int:
        return self.store.revision

    def _check_open(self) -> None:
        if self.closed:
            raise Unavailable(f"registry handle for {self.url} is closed")

    async def _get(self, key: str) -> KeyValue | None:
        self._check_open()
        return self.store.get(key)

    async def _range(self, prefix: str, limit: int | None) -> list[KeyValue]:
        self._check_open()
        return self.store.range(prefix, limit)

    async def _put(self, key: str, value: bytes, lease: int | None) -> int:
        self._check_open()
        rev: int = await self.store.submit(lambda st: st.put(key, value, lease))
        return rev

    async def _delete(self, key: str, prefix: bool) -> int:
        self._check_open()
        n: int = await self.store.submit(lambda st: st.delete(key, prefix))
        return n

    async def _txn(self, compare: list[Compare], success: list[Op],
                   failure: list[Op]) -> TxnResult:
        self._check_open()

        def run(st: _Staging) -> TxnResult:
            ok = all(c.evaluate(st.get(c.key)) for c in compare)
            responses = [_run_op(st, op) for op in (success if ok else failure)]
            return TxnResult(ok, st.revision, responses)

        result: TxnResult = await self.store.submit(run)
        return result

    async def _grant(self, ttl: int) -> tuple[int, int]:
        self._check_open()
        lease_id: int = await self.store.submit(lambda st: st.grant(ttl))
        return lease_id, ttl

    async def _keepalive(self, lease_id: int) -> int:
        self._check_open()
        return self.store.keepalive(lease_id)

    async def _revoke(self, lease_id: int) -> None:
        self._check_open()
        await self.store.submit(lambda st: st.revoke(lease_id))

    def _watch(self, key: str, prefix: bool, start_revision: int | None
               ) -> AsyncIterator[Event]:
        if self.closed:
            raise Unavailable(f"registry handle for {self.url} is closed")
        return self.store.watch(key, prefix, start_revision)

    async def _compact(self, revision: int) -> None:
        self._check_open()
        await self.store.compact(revision)

    async def _close(self) -> None:
        if self._release is not None:
            release, self._release = self._release, None
            await release(self.store)


__all__ = ["CommitBatch", "LoadedState", "LocalRegistry", "LocalStore", "Persistence",
           "RegistryError"]
