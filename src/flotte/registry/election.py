"""Leader election on any registry, with writes fenced by the leader key's revision.

The recipe is etcd's, on one key (DESIGN.md: ``/flotte/engine/leader``):

* **campaign**: grant a lease, keep it alive, and
  ``txn(create_revision(key) == 0, put(key, me, lease))``.  If someone else
  holds the key, watch it from the revision we saw + 1 (so a delete that
  happens meanwhile is not missed) and try again after its delete event.
* **fencing**: the winner's ``create_revision`` of the key identifies its
  term.  Every write the leader makes goes through :meth:`Leadership.txn`,
  which adds ``create_revision(key) == term`` to the comparisons.  A leader
  that was paused or partitioned past its lease TTL has lost the key; its
  writes then fail instead of overwriting the new leader's decisions.
* **resign**: delete the key if it is still ours (fenced), revoke the lease.

No fairness is attempted (all waiters retry on the delete): elections have a
handful of candidates, one per machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

from flotte.registry.base import Lease, Registry
from flotte.registry.types import (
    Compare,
    Delete,
    Event,
    EventType,
    Get,
    KeyValue,
    Op,
    Put,
    RegistryError,
    Txn,
    TxnResult,
    create_revision,
)

log = logging.getLogger("flotte.registry.election")

DEFAULT_KEY = "/flotte/engine/leader"


class NotLeader(RegistryError):
    """A fenced write was refused: this candidate is no longer the leader."""


class Leadership:
    """Held by the winner of :meth:`Election.campaign` until it resigns or loses its lease."""

    def __init__(self, election: Election, lease: Lease, term: int, value: bytes) -> None:
        self.election = election
        self.lease = lease
        self.term = term  # the leader key's create_revision
        self.value = value

    @property
    def lost(self) -> asyncio.Event:
        """Set when the lease could not be kept alive: stop acting as leader."""
        return self.lease.lost

    def fence(self) -> Compare:
        return create_revision(self.election.key) == self.term

    async def txn(self, compare: Sequence[Compare], success: Sequence[Op],
                  failure: Sequence[Op] = ()) -> TxnResult:
        """A transaction that only applies while we are still the leader.

        Raises :class:`NotLeader` when the fence fails (whatever the other
        comparisons say); otherwise returns the txn result as usual.
        """
        reg = self.election.registry
        key = self.election.key
        fenced = await reg.txn([self.fence()],
                               [Txn(tuple(compare), tuple(success), tuple(failure))], [Get(key)])
        if not fenced.succeeded:
            holder = fenced.responses[0] if fenced.responses else None
            raise NotLeader(f"leadership of {key} (term {self.term}) was lost"
                            + (f"; now held by {holder.value!r}" if holder else ""))
        inner: TxnResult = fenced.responses[0]
        return inner

    async def put(self, key: str, value: bytes) -> int:
        result = await self.txn([], [Put(key, value)])
        rev: int = result.responses[0]
        return rev

    async def resign(self) -> None:
        reg = self.election.registry
        with contextlib.suppress(RegistryError):
            await reg.txn([self.fence()], [Delete(self.election.key)])
        with contextlib.suppress(RegistryError):
            await self.lease.revoke()


class Election:
    """Campaign for, observe and resign the leadership stored at ``key``."""

    def __init__(self, registry: Registry, key: str = DEFAULT_KEY, ttl: float = 10) -> None:
        self.registry = registry
        self.key = key
        self.ttl = ttl

    async def leader(self) -> KeyValue | None:
        return await self.registry.get(self.key)

    async def campaign(self, value: bytes) -> Leadership:
        """Block until this candidate is the leader; returns the :class:`Leadership`."""
        reg = self.registry
        lease = await reg.grant(self.ttl)
        lease.start_keepalive()
        try:
            while True:
                if lease.lost.is_set():
                    lease = await reg.grant(self.ttl)
                    lease.start_keepalive()
                r = await reg.txn([create_revision(self.key) == 0],
                                  [Put(self.key, value, lease.id)], [Get(self.key)])
                if r.succeeded:
                    log.info("elected leader of %s (term %d)", self.key, r.revision)
                    return Leadership(self, lease, r.revision, value)
                holder: KeyValue | None = r.responses[0]
                if holder is None:
                    continue
                if holder.lease == lease.id:
                    return Leadership(self, lease, holder.create_revision, holder.value)
                await self._wait_for_delete(holder.mod_revision + 1, lease)
        except BaseException:
            await lease.stop_keepalive()
            with contextlib.suppress(RegistryError, asyncio.CancelledError):
                await asyncio.shield(reg._revoke(lease.id))
            raise

    async def _wait_for_delete(self, start: int, lease: Lease) -> None:
        async with self.registry.watch(self.key, start_revision=start, prefix=False) as w:
            lost: asyncio.Future[object] = asyncio.ensure_future(lease.lost.wait())
            try:
                async for event in _until(w, lost):
                    if event is None or event.type is EventType.DELETE:
                        return
            finally:
                lost.cancel()

    async def observe(self) -> AsyncIterator[KeyValue | None]:
        """The current leader now, then every change (``None`` while vacant).

        The watch position is fixed before the first yield, from what the
        read saw, so changes made while the caller holds the first value are
        still delivered.
        """
        before = self.registry.revision
        current = await self.registry.get(self.key)
        start = (current.mod_revision if current else before) + 1
        watch = self.registry.watch(self.key, start_revision=start, prefix=False)
        try:
            yield current
            async for event in watch:
                yield event.kv if event.type is EventType.PUT else None
        finally:
            await watch.close()


async def _until(watch: AsyncIterator[Event], stop: asyncio.Future[object]
                 ) -> AsyncIterator[Event | None]:
    """Events of ``watch`` until ``stop`` completes (then yields ``None`` once)."""
    it = watch.__aiter__()
    while True:
        nxt: asyncio.Future[Event] = asyncio.ensure_future(it.__anext__())
        waiting: set[asyncio.Future[Any]] = {nxt, stop}
        done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        if nxt in done:
            try:
                yield nxt.result()
            except StopAsyncIteration:
                return
        else:
            nxt.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                await nxt
            yield None
            return
