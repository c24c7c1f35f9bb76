"""The engine loop: elected leader, it turns cluster changes into schedule writes.

Thin by design (the decisions are :class:`~flotte.engine.scheduler.Scheduler`'s):

1. campaign for ``/flotte/engine/leader`` (every daemon runs an engine; one leads);
2. as leader, load the :class:`~flotte.engine.mirror.ClusterMirror`'s view
   into a Scheduler once, then feed it only what changed — no timer, no
   re-reading the cluster (fleet re-read everything every 2 s);
3. write each plan: schedule entries created only if absent, unscheduled
   only if they still name the machine — each step in its own nested
   transaction, all fenced by the leader key, so a deposed leader's late
   writes fail instead of undoing its successor's;
4. store why a unit could not be placed (``/flotte/reasons/<unit>``) and
   delete the reason once it is placed or no longer wants a machine.

A lost lease (registry unreachable past the TTL) ends the leadership; the
engine campaigns again and starts from a fresh view.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

from flotte.engine.keyspace import Keys, decode_reasons, encode_reasons
from flotte.engine.mirror import Changes, ClusterMirror
from flotte.engine.model import ClusterView, Plan, Schedule
from flotte.engine.scheduler import Scheduler
from flotte.registry import (
    Delete,
    Put,
    Registry,
    RegistryError,
    Txn,
    TxnResult,
    create_revision,
    value,
)
from flotte.registry.election import Election, Leadership, NotLeader

log = logging.getLogger("flotte.engine")

_CHUNK = 40  # steps per transaction (etcd allows 128 ops; reasons ride along)


@dataclass
class EngineStats:
    passes: int = 0
    placements: int = 0
    cpu_seconds: float = 0.0


class Engine:
    """One machine's engine candidate; :meth:`run` until cancelled."""

    def __init__(self, registry: Registry, mirror: ClusterMirror, machine_id: str, *,
                 keys: Keys | None = None, ttl: float = 10.0, explain_limit: int = 20,
                 settle: float = 0.02) -> None:
        self.registry = registry
        self.mirror = mirror
        self.machine_id = machine_id
        self.keys = keys or Keys()
        self.election = Election(registry, self.keys.leader, ttl)
        self.explain_limit = explain_limit
        self.settle = settle
        self.leading = asyncio.Event()
        self.stats = EngineStats()
        self._reasons: dict[str, dict[str, str]] = {}

    async def run(self) -> None:
        while True:
            try:
                lead = await self.election.campaign(self.machine_id.encode())
            except (RegistryError, OSError) as exc:
                log.debug("campaign: %s", exc)
                await asyncio.sleep(1.0)
                continue
            self.leading.set()
            try:
                await self._lead(lead)
            except NotLeader as exc:
                log.warning("%s", exc)
            except (RegistryError, OSError) as exc:
                log.warning("engine: registry error while leading (%s)", exc)
                await asyncio.sleep(1.0)  # let the cause pass before campaigning again
            finally:
                self.leading.clear()
                with contextlib.suppress(Exception):
                    await asyncio.shield(lead.resign())

    async def _lead(self, lead: Leadership) -> None:
        await self.mirror.loaded.wait()
        feed = self.mirror.feed()
        feed.take()
        sched = Scheduler(self.mirror.view())
        self._reasons = await self._load_reasons()
        full = True
        lost = asyncio.ensure_future(lead.lost.wait())
        try:
            while True:
                t0 = time.process_time()
                plan = sched.reconcile(full=full, explain_limit=self.explain_limit)
                full = False
                self.stats.passes += 1
                self.stats.cpu_seconds += time.process_time() - t0
                await self._write(lead, plan, sched)
                # wait for the next change (or the end of our lease)
                nxt = asyncio.ensure_future(feed.next_ready())
                try:
                    await asyncio.wait({nxt, lost}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    nxt.cancel()
                if lost.done():
                    raise NotLeader("engine lease lost")
                await asyncio.sleep(self.settle)  # take a burst of changes as one pass
                ch = feed.take()
                if ch.resync:
                    # the mirror reloaded everything (history compacted): start afresh,
                    # as a new leader does, rather than diffing two whole clusters
                    sched = Scheduler(self.mirror.view())
                    full = True
                else:
                    self._feed(sched, ch)
        finally:
            lost.cancel()

    def _feed(self, sched: Scheduler, ch: Changes) -> None:
        """Hand the scheduler what changed (an incremental pass follows)."""
        view = self.mirror.view()
        for mid in ch.machines:
            m = view.machines.get(mid)
            if m is None:
                sched.remove_machine(mid)
            else:
                sched.set_machine(m)
        for name in ch.units:
            self._feed_unit(sched, view, name)

    @staticmethod
    def _feed_unit(sched: Scheduler, view: ClusterView, name: str) -> None:
        unit = view.units.get(name)
        if unit is None:
            sched.remove_unit(name)
        else:
            sched.set_unit(unit)
        sched.set_target(name, view.schedule.get(name))

    async def _load_reasons(self) -> dict[str, dict[str, str]]:
        out: dict[str, dict[str, str]] = {}
        for kv in await self.registry.range(self.keys.reasons):
            with contextlib.suppress(ValueError):
                out[Keys.leaf(kv.key, self.keys.reasons)] = decode_reasons(kv.value, kv.key)
        return out

    async def _write(self, lead: Leadership, plan: Plan, sched: Scheduler) -> None:
        k = self.keys
        ops: list[Txn | Put | Delete] = []
        for step in plan.steps:
            key = k.scheduled(step.unit)
            if isinstance(step, Schedule):
                ops.append(Txn((create_revision(key) == 0,), (Put(key, step.machine.encode()),)))
            else:
                ops.append(Txn((value(key) == step.machine.encode(),), (Delete(key),)))
        for name, reasons in plan.unplaced.items():
            if self._reasons.get(name) != reasons and name in self.mirror.records:
                ops.append(Put(k.reason(name), encode_reasons(reasons)))
                self._reasons[name] = reasons
        for name in plan.evaluated - plan.unplaced.keys():
            if self._reasons.pop(name, None) is not None:
                ops.append(Delete(k.reason(name)))
        for chunk in _chunks(ops):
            res = await lead.txn([], chunk)
            for op, r in zip(chunk, res.responses, strict=True):
                if isinstance(op, Txn) and isinstance(r, TxnResult) and not r.succeeded:
                    # someone else's write won: learn the real value on the next event
                    first = op.success[0]
                    assert isinstance(first, Put | Delete)
                    name = Keys.leaf(first.key, k.schedule)
                    sched.set_target(name, self.mirror.schedule.get(name))
        placed = len(plan.schedules)
        self.stats.placements += placed
        if plan.steps:
            log.info("engine: %d scheduled, %d unscheduled, %d unplaced", placed,
                     len(plan.unschedules), len(plan.unplaced))


def _key(op: Txn | Put | Delete) -> str:
    if isinstance(op, Txn):
        first = op.success[0]
        assert isinstance(first, Put | Delete)
        return first.key
    return op.key


def _chunks(ops: list[Txn | Put | Delete]) -> list[list[Txn | Put | Delete]]:
    """Split into transactions of at most ``_CHUNK`` ops that touch each key once.

    etcd refuses a transaction that writes one key twice, even in different
    nested branches — which a plan does when a unit moves (unschedule from the
    old machine, schedule on the new one).  Order is kept.
    """
    out: list[list[Txn | Put | Delete]] = []
    cur: list[Txn | Put | Delete] = []
    seen: set[str] = set()
    for op in ops:
        key = _key(op)
        if len(cur) >= _CHUNK or key in seen:
            out.append(cur)
            cur, seen = [], set()
        cur.append(op)
        seen.add(key)
    if cur:
        out.append(cur)
    return out
