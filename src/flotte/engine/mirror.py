"""An in-memory copy of the cluster's desired state, kept current by watches.

The engine (to schedule) and every agent (to know what to run) need the same
facts: units, desired states, the schedule, live machines and their dynamic
metadata.  fleet re-read all of them from etcd on every reconcile (every 2 s
and on every change), which is why its engine did not scale past ~1,000 units.
The mirror reads them once, in one read-only transaction (one revision), and
then applies watch events: a change costs work proportional to the change.

Readers call :meth:`ClusterMirror.view` for an immutable
:class:`~flotte.engine.model.ClusterView` (parsed units are kept between
views; only changed ones are parsed again), and each consumer (the engine,
the agent) takes a :meth:`ClusterMirror.feed` to wait for the names that
changed since it last looked.

Unit states (``/state/``) and placement reasons are deliberately *not*
mirrored: they change often and neither the engine nor the agents decide on
them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from flotte.engine.keyspace import (
    DesiredState,
    Keys,
    MachineRecord,
    RecordError,
    UnitRecord,
    decode_desired,
)
from flotte.engine.model import ClusterView, Machine, Unit
from flotte.registry import (
    CompactedError,
    Event,
    EventType,
    KeyValue,
    Range,
    Registry,
    RegistryError,
)

log = logging.getLogger("flotte.engine.mirror")


@dataclass
class Changes:
    """What changed since the last :meth:`ClusterMirror.changes` call."""

    units: set[str] = field(default_factory=set)
    machines: set[str] = field(default_factory=set)
    resync: bool = False  # everything may have changed (first load, lost history)

    def __bool__(self) -> bool:
        return bool(self.units or self.machines or self.resync)


class Feed:
    """Changes accumulated for one consumer until it takes them."""

    def __init__(self) -> None:
        self._pending = Changes(resync=True)
        self._wake = asyncio.Event()
        self._wake.set()

    def add(self, ch: Changes) -> None:
        self._pending.units |= ch.units
        self._pending.machines |= ch.machines
        self._pending.resync |= ch.resync
        self._wake.set()

    def pending(self) -> bool:
        return bool(self._pending)

    def take(self) -> Changes:
        out, self._pending = self._pending, Changes()
        self._wake.clear()
        return out

    async def next_ready(self) -> None:
        """Wait until something changed (without taking it)."""
        while not self._pending:
            self._wake.clear()
            await self._wake.wait()

    async def next(self) -> Changes:
        """Wait until something changed; return what (and forget it)."""
        while not self._pending:
            self._wake.clear()
            await self._wake.wait()
        return self.take()


class ClusterMirror:
    """Units, desired states, schedule, machines and metadata under one prefix."""

    def __init__(self, registry: Registry, keys: Keys | None = None) -> None:
        self.registry = registry
        self.keys = keys or Keys()
        self.records: dict[str, UnitRecord] = {}
        self.desired: dict[str, DesiredState] = {}
        self.schedule: dict[str, str] = {}
        self.machine_records: dict[str, MachineRecord] = {}
        self.dynamic: dict[str, dict[str, str]] = {}
        self.revision = 0
        self.loaded = asyncio.Event()
        self._units: dict[str, Unit] = {}  # parsed, keyed by name (hash + desired checked)
        self._tasks: list[asyncio.Task[None]] = []
        self._view: ClusterView | None = None
        self._feeds: list[Feed] = []

    # -- public -------------------------------------------------------------------------
    async def start(self) -> None:
        """Load everything, then follow changes in the background."""
        await self._load()
        for prefix in (self.keys.units, self.keys.desired, self.keys.schedule,
                       self.keys.machines, self.keys.metadata):
            self._tasks.append(asyncio.create_task(self._follow(prefix),
                                                   name=f"mirror {prefix}"))

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks.clear()

    def view(self) -> ClusterView:
        """The current snapshot (cached until the next change)."""
        if self._view is None:
            units: dict[str, Unit] = {}
            for name, rec in self.records.items():
                desired = self.desired.get(name, "inactive")
                u = self._units.get(name)
                if u is None or u.hash != rec.hash or u.desired != desired:
                    u = Unit.from_record(rec, desired)
                    self._units[name] = u
                units[name] = u
            for gone in self._units.keys() - units.keys():
                del self._units[gone]
            machines = {mid: Machine.from_record(r, self.dynamic.get(mid))
                        for mid, r in self.machine_records.items()}
            self._view = ClusterView(machines, units, dict(self.schedule))
        return self._view

    def feed(self) -> Feed:
        """A consumer's own view of what changed (starts with a resync)."""
        f = Feed()
        self._feeds.append(f)
        return f

    def unit(self, name: str) -> Unit | None:
        """The parsed unit as the current view has it."""
        return self.view().units.get(name)

    # -- loading and following ------------------------------------------------------------
    async def _load(self) -> None:
        k = self.keys
        res = await self.registry.txn([], [Range(k.units), Range(k.desired), Range(k.schedule),
                                            Range(k.machines), Range(k.metadata)])
        ranges = [r for r in res.responses if isinstance(r, list)]
        units, desired, schedule, machines, metadata = ranges
        self.records.clear()
        self.desired.clear()
        self.schedule.clear()
        self.machine_records.clear()
        self.dynamic.clear()
        for kv in units:
            self._put(k.units, kv)
        for kv in desired:
            self._put(k.desired, kv)
        for kv in schedule:
            self._put(k.schedule, kv)
        for kv in machines:
            self._put(k.machines, kv)
        for kv in metadata:
            self._put(k.metadata, kv)
        self.revision = res.revision
        self._changed(Changes(resync=True))
        self.loaded.set()

    async def _follow(self, prefix: str) -> None:
        while True:
            try:
                async with self.registry.watch(prefix, start_revision=self.revision + 1) as w:
                    async for ev in w:
                        self._apply(prefix, ev)
            except CompactedError:
                log.warning("mirror: history of %s compacted; reloading everything", prefix)
                await self._reload_all()
            except asyncio.CancelledError:
                raise
            except (RegistryError, OSError) as exc:
                log.debug("mirror: watch on %s failed (%s); retrying", prefix, exc)
                await asyncio.sleep(0.5)

    async def _reload_all(self) -> None:
        while True:
            try:
                await self._load()
                return
            except (RegistryError, OSError):
                await asyncio.sleep(0.5)

    def _apply(self, prefix: str, ev: Event) -> None:
        if ev.type is EventType.PUT:
            name = self._put(prefix, ev.kv)
        else:
            name = self._delete(prefix, ev.kv.key)
        self.revision = max(self.revision, ev.revision)
        if name is None:
            return
        if prefix in (self.keys.machines, self.keys.metadata):
            self._changed(Changes(machines={name}))
        else:
            self._changed(Changes(units={name}))

    def _changed(self, ch: Changes) -> None:
        self._view = None
        for f in self._feeds:
            f.add(ch)

    def _put(self, prefix: str, kv: KeyValue) -> str | None:
        k = self.keys
        rest = Keys.leaf(kv.key, prefix)
        try:
            if prefix == k.units:
                self.records[rest] = UnitRecord.decode(kv.value, kv.key)
            elif prefix == k.desired:
                self.desired[rest] = decode_desired(kv.value, kv.key)
            elif prefix == k.schedule:
                self.schedule[rest] = kv.value.decode()
            elif prefix == k.machines:
                rec = MachineRecord.decode(kv.value, kv.key)
                self.machine_records[rest] = rec
            elif prefix == k.metadata:
                mid, _, key = rest.partition("/")
                if not key:
                    return None
                self.dynamic.setdefault(mid, {})[key] = kv.value.decode()
                return mid
        except (RecordError, UnicodeDecodeError) as exc:
            log.error("ignoring %s: %s", kv.key, exc)
            return None
        return rest

    def _delete(self, prefix: str, key: str) -> str | None:
        k = self.keys
        rest = Keys.leaf(key, prefix)
        if prefix == k.units:
            self.records.pop(rest, None)
        elif prefix == k.desired:
            self.desired.pop(rest, None)
        elif prefix == k.schedule:
            self.schedule.pop(rest, None)
        elif prefix == k.machines:
            self.machine_records.pop(rest, None)
        elif prefix == k.metadata:
            mid, _, key2 = rest.partition("/")
            self.dynamic.get(mid, {}).pop(key2, None)
            return mid
        return rest
