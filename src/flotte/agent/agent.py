"""The agent: one machine's member of the cluster.

It joins the registry, learns from the :class:`~flotte.engine.mirror.ClusterMirror`
which units the engine placed on this machine (plus the global units that
match it), drives the local :class:`~flotte.supervisor.Supervisor`, and
publishes each unit's state on the machine's lease.

Failure handling, and why:

* **Presence** is a key on a lease (TTL default 10 s, refreshed every TTL/3).
  When the machine dies the key expires and the engine moves its units.
* **Registry outages never stop units.**  fleet's most-reported problem was
  units stopped or rescheduled on every etcd hiccup.  While the registry is
  unreachable the agent keeps everything running and retries; etcd restores
  leases with a full TTL when it comes back, so a short outage moves nothing.
* **A lost lease** (this agent was paused or partitioned longer than its TTL
  while the others could reach the registry) means the engine has moved its
  units.  On reconnecting the agent registers again, sees the new schedule
  and stops the units it no longer owns — immediately by default, or after
  ``takeover_grace`` seconds.  With ``fence_after`` set, an agent that cannot
  reach the registry for that long stops its units itself, for workloads
  where running twice is worse than not running (off by default).
* **Clean shutdown** stops every local unit, deletes their states and revokes
  the lease, so the engine reschedules at once (fleet's ``Purge``).
* **A duplicate machine id** (cloned VMs) is refused with an error naming the
  other registration and the fix.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from flotte import __version__
from flotte.agent.identity import Identity
from flotte.agent.plan import Actual, Wanted, steps
from flotte.engine.keyspace import Keys, MachineRecord, RecordError, StateRecord
from flotte.engine.mirror import ClusterMirror
from flotte.engine.rolling import members_from_states, rolling_step
from flotte.engine.rules import units_for
from flotte.registry import (
    Delete,
    Get,
    LeaseNotFound,
    Put,
    Registry,
    RegistryError,
    create_revision,
)
from flotte.registry import lease as lease_of
from flotte.registry.base import Lease
from flotte.supervisor.supervisor import (
    NoSuchUnit,
    Supervisor,
    TransactionError,
    UnitLoadError,
)
from flotte.unit.loader import load_text
from flotte.unit.names import InvalidUnitName, UnitName
from flotte.unit.names import split as split_name

log = logging.getLogger("flotte.agent")

_ACTIVE = frozenset({"active", "activating", "reloading", "deactivating"})
#: Seconds after a unit becomes active when its state is published again (tasks, memory).
SETTLE_REPORT = 1.0


class DuplicateMachine(RuntimeError):
    """Another live agent is registered with this machine id."""


@dataclass
class AgentOptions:
    ttl: float = 10.0
    #: seconds to keep running units the engine moved elsewhere after a lost lease
    takeover_grace: float = 0.0
    #: stop local units after this long without the registry (None: never)
    fence_after: float | None = None
    #: where other machines reach this agent's API (journal, status), if anywhere
    api_url: str = ""
    #: copies of a global unit (or instances of a template) down at once during an update
    max_unavailable: int | str = 1
    #: where the presence lease's id is kept, so a restarted agent recognises its own key
    lease_file: Path | None = None


class Agent:
    """Keeps the supervisor in line with what the cluster wants on this machine."""

    def __init__(self, registry: Registry, supervisor: Supervisor, identity: Identity, *,
                 keys: Keys | None = None, options: AgentOptions | None = None,
                 mirror: ClusterMirror | None = None) -> None:
        self.registry = registry
        self.sup = supervisor
        self.identity = identity
        self.keys = keys or Keys()
        self.options = options or AgentOptions()
        self.mirror = mirror or ClusterMirror(registry, self.keys)
        self._own_mirror = mirror is None
        self.lease: Lease | None = None
        self.loaded: dict[str, str] = {}  # unit → hash loaded into the supervisor
        self.launched: set[str] = set()  # units this agent started and did not stop
        self.failures: dict[str, str] = {}  # unit → last load/start error (for status)
        self._busy: dict[str, asyncio.Task[None]] = {}
        self._starting: set[str] = set()  # units whose start job is running
        self._again: set[str] = set()
        self._dirty_states: set[str] = set()
        self._publish_wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._last_contact = time.monotonic()
        self._lost_at: float | None = None
        self.on_ready: Callable[[], None] | None = None
        self.ready = asyncio.Event()

    # -- life cycle -----------------------------------------------------------------------
    async def start(self) -> None:
        """Register (raises :class:`DuplicateMachine`), load the mirror, begin working."""
        await self._register()
        if self._own_mirror:
            await self.mirror.start()
        self._tasks += [
            asyncio.create_task(self._reconcile_loop(), name="agent reconcile"),
            asyncio.create_task(self._publish_loop(), name="agent publish"),
            asyncio.create_task(self._state_feed(), name="agent states"),
            asyncio.create_task(self._presence_loop(), name="agent presence"),
        ]
        self.ready.set()

    async def stop(self, *, purge: bool = True) -> None:
        """Clean shutdown: stop local units, delete their states, leave the cluster."""
        self._stopping = True
        for name in list(self._starting):
            self._spawn_stop(name)  # a start that blocks must not block the shutdown
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks.clear()
        for t in list(self._busy.values()):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if purge:
            await asyncio.gather(*(self._unload(n) for n in list(self.loaded)),
                                 return_exceptions=True)
            if self.lease is not None:
                with contextlib.suppress(RegistryError, OSError):
                    await self.lease.revoke()  # machine key and unit states vanish at once
        elif self.lease is not None:
            await self.lease.stop_keepalive()
        if self._own_mirror:
            await self.mirror.close()

    # -- presence ---------------------------------------------------------------------------
    def _record(self) -> MachineRecord:
        i = self.identity
        return MachineRecord(i.machine_id, i.hostname, i.public_ip, dict(i.metadata),
                             __version__, self.options.api_url)

    async def _register(self) -> None:
        key = self.keys.machine(self.identity.machine_id)
        lease = await self.registry.grant(self.options.ttl)
        value = self._record().encode()
        res = await self.registry.txn([create_revision(key) == 0],
                                      [Put(key, value, lease.id)], [Get(key)])
        if not res.succeeded:
            existing = res.responses[0]
            mine = self._own_leases()
            if existing is not None and existing.lease in mine:
                # our own key: from before a lost lease that came back (etcd restart), or
                # from this machine's previous run (killed; its lease outlives it by up to
                # the TTL, and the embedded store restores leases at start-up). Move the
                # key onto the new lease, then end the old lease (its unit states go; we
                # publish ours again).
                moved = await self.registry.txn([lease_of(key) == existing.lease],
                                                [Put(key, value, lease.id)])
                if not moved.succeeded:
                    with contextlib.suppress(RegistryError):
                        await lease.revoke()
                    raise RegistryError(f"{key} changed while taking it over; retrying")
                if self.lease is None or existing.lease != self.lease.id:
                    with contextlib.suppress(RegistryError, OSError):
                        await Lease(self.registry, existing.lease, 1).revoke()
            else:
                with contextlib.suppress(RegistryError):
                    await lease.revoke()
                other = "another agent"
                if existing is not None:
                    with contextlib.suppress(RecordError):
                        rec = MachineRecord.decode(existing.value, key)
                        other = f"{rec.hostname or '?'} ({rec.public_ip or 'no IP'})"
                raise DuplicateMachine(
                    f"machine id {self.identity.machine_id} is already registered by {other}. "
                    "Each machine needs its own id: cloned machines share /etc/machine-id; "
                    "give this one --machine-id or its own --state-dir (its machine-id file), "
                    "or stop the other agent.")
        if self.lease is not None:
            with contextlib.suppress(RegistryError, OSError):
                await self.lease.stop_keepalive()
        self.lease = lease
        lease.start_keepalive()
        self._remember_lease(lease.id)
        self._last_contact = time.monotonic()
        self._dirty_states |= set(self.loaded)
        self._publish_wake.set()
        log.info("registered machine %s (%s, %s)", self.identity.short_id,
                 self.identity.hostname, self.identity.public_ip)

    def _own_leases(self) -> set[int]:
        """Leases this machine held: the current one and the last run's (lease file)."""
        out = {self.lease.id} if self.lease is not None else set()
        path = self.options.lease_file
        if path is not None:
            with contextlib.suppress(OSError, ValueError):
                out.add(int(path.read_text().strip(), 16))
        return out

    def _remember_lease(self, lease_id: int) -> None:
        path = self.options.lease_file
        if path is None:
            return
        with contextlib.suppress(OSError):
            tmp = path.with_suffix(".tmp")
            tmp.write_text(f"{lease_id:x}\n")
            os.replace(tmp, path)

    async def _presence_loop(self) -> None:
        """Re-register after a lost lease; fence when configured."""
        while True:
            assert self.lease is not None
            lost = asyncio.create_task(self.lease.lost.wait())
            try:
                await lost
            finally:
                lost.cancel()
            self._lost_at = time.monotonic()
            log.warning("lease lost; units keep running while the agent registers again")
            delay = 0.2
            while True:
                try:
                    await self._register()
                    self._lost_at = None
                    self._kick_all()
                    break
                except DuplicateMachine as exc:
                    # someone took our id while we were away: a real conflict
                    log.error("%s", exc)
                except (RegistryError, OSError) as exc:
                    log.debug("register: %s", exc)
                self._maybe_fence()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    def _maybe_fence(self) -> None:
        fence = self.options.fence_after
        if fence is None or self._lost_at is None:
            return
        if time.monotonic() - self._lost_at >= fence and self.loaded:
            log.warning("no registry for %.0fs: stopping local units (fence_after)", fence)
            for name in list(self.loaded):
                self._kick(name, force_unload=True)

    # -- deciding ----------------------------------------------------------------------------
    def wanted(self) -> dict[str, Wanted]:
        """Units the cluster wants here, with their hash and target state."""
        view = self.mirror.view()
        mid = self.identity.machine_id
        if mid not in view.machines:
            return {n: Wanted(h, "launched" if n in self.launched else "loaded")
                    for n, h in self.loaded.items()}  # not registered (yet): change nothing
        out: dict[str, Wanted] = {}
        for name in units_for(mid, view):
            u = view.units.get(name)
            if u is None or u.desired == "inactive":
                continue
            out[name] = Wanted(u.hash, "launched" if u.desired == "launched" else "loaded")
        return out

    def _actual(self, name: str) -> Actual | None:
        h = self.loaded.get(name)
        if h is None:
            return None
        try:
            st = self.sup.status(name)
        except NoSuchUnit:
            return None
        return Actual(h, st["active_state"] in _ACTIVE, name in self.launched)

    async def _reconcile_loop(self) -> None:
        feed = self.mirror.feed()
        while True:
            await feed.next_ready()
            await asyncio.sleep(0.02)  # a scheduling pass writes many keys: take them together
            changes = feed.take()
            if changes.resync or changes.machines:
                self._kick_all()
            else:
                for n in changes.units:
                    self._kick(n)

    def _kick_all(self) -> None:
        for name in set(self.wanted()) | set(self.loaded) | set(self.failures):
            self._kick(name)

    def _kick(self, name: str, *, force_unload: bool = False) -> None:
        """Converge one unit, one task per unit at a time (a slow start blocks nobody)."""
        if name in self._busy:
            self._again.add(name)
            if name in self._starting and (force_unload or self._stopping or (
                    (w := self.wanted().get(name)) is None or w.target != "launched")):
                # a start may block for ever (TimeoutStartSec=0 and a pull that hangs):
                # a stop job replaces it, as systemctl stop does
                self._spawn_stop(name)
            return
        self._busy[name] = asyncio.create_task(self._converge(name, force_unload),
                                               name=f"agent {name}")

    async def _converge(self, name: str, force_unload: bool) -> None:
        try:
            while True:
                if self._stopping:
                    return
                wanted = None if force_unload else self.wanted().get(name)
                if (wanted is None and self._lost_at is None and name in self.loaded
                        and self.options.takeover_grace > 0 and not force_unload):
                    await asyncio.sleep(self.options.takeover_grace)
                    wanted = self.wanted().get(name)
                actual = self._actual(name)
                todo = steps(wanted, actual)
                if (wanted is not None and actual is not None and actual.hash != wanted.hash
                        and wanted.target == "launched" and actual.active
                        and not await self._my_turn(name, wanted.hash)):
                    await asyncio.sleep(0.2)  # other copies are updating: look again soon
                    continue
                for step in todo:
                    if not await self._do(step, name, wanted):
                        break
                if name not in self._again:
                    return
                self._again.discard(name)
        finally:
            self._busy.pop(name, None)
            if name in self._again:
                self._again.discard(name)
                self._kick(name)

    async def _do(self, step: str, name: str, wanted: Wanted | None) -> bool:
        try:
            if step == "unload":
                await self._unload(name)
            elif step == "load":
                assert wanted is not None
                rec = self.mirror.records.get(name)
                if rec is None or rec.hash != wanted.hash:
                    return False
                unit = load_text(rec.text(), name, ctx=self.sup.ctx)
                install = bool(unit.value("Install", "WantedBy") or
                               unit.value("Install", "RequiredBy"))
                await self.sup.load(unit)
                if install:
                    # fleet's sidekick idiom: WantedBy=hello.service makes starting
                    # hello start this one (fleet.md §6, TestInstallUnit)
                    await self.sup.enable(name)
                self.loaded[name] = rec.hash
                self.failures.pop(name, None)
                self._mark(name)
                # units waiting for this one (Requires=) may start now
                for other in list(self.failures):
                    self._kick(other)
            elif step == "start":
                # let the other units placed in the same pass load first: a unit that
                # Requires= its sidekick must find it loaded (the seed's apache@ pair)
                await asyncio.sleep(0)
                self.launched.add(name)
                self._mark(name)
                self._starting.add(name)
                try:
                    await self.sup.start(name)
                finally:
                    self._starting.discard(name)
            elif step == "stop":
                self.launched.discard(name)
                await self.sup.stop(name)
                self._mark(name)
            return True
        except UnitLoadError as exc:
            self.failures[name] = str(exc)
            log.error("%s", exc)
        except NoSuchUnit:
            self.loaded.pop(name, None)
        except TransactionError as exc:
            # typically a dependency placed here but not loaded yet: retried when it loads;
            # nothing was started, so the unit is not "launched" yet
            self.launched.discard(name)
            self.failures[name] = str(exc)
            log.info("%s %s deferred: %s", step, name, exc)
        except Exception as exc:  # a failing job must not stop the agent
            self.failures[name] = str(exc)
            log.warning("%s %s: %s", step, name, exc)
        self._mark(name)
        return False

    async def _my_turn(self, name: str, target: str) -> bool:
        """May this running copy be replaced now (rolling update, max-unavailable)?

        Copies of a global unit (one per machine) and instances of one
        template roll; other units are replaced at once.  Every agent computes
        the same :func:`~flotte.engine.rolling.rolling_step` from the published
        states, so only the chosen copies go down.  Unreachable registry: go
        ahead (nothing else is coordinating either).
        """
        unit = self.mirror.unit(name)
        family = _template_of(name)
        if unit is None or (not unit.is_global and family is None):
            return True
        try:
            if unit.is_global:
                kvs = await self.registry.range(self.keys.unit_states(name))
            else:
                assert family is not None
                kvs = await self.registry.range(self.keys.states + family.prefix + "@")
        except (RegistryError, OSError):
            return True
        states = [st for st in StateRecord.decode_many([(kv.key, kv.value) for kv in kvs])
                  if isinstance(st, StateRecord)
                  and (unit.is_global or _same_template(st.name, family))]
        members = members_from_states(states, per_machine=unit.is_global)
        me = self.identity.machine_id if unit.is_global else name
        if all(m.key != me for m in members):
            return True
        step = rolling_step(members, target, self.options.max_unavailable)
        return me in step.restart

    def _spawn_stop(self, name: str) -> None:
        task = asyncio.create_task(self.sup.stop(name), name=f"agent stop {name}")
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def _unload(self, name: str) -> None:
        self.launched.discard(name)
        with contextlib.suppress(NoSuchUnit):
            await self.sup.unload(name)
        self.loaded.pop(name, None)
        self._mark(name)

    # -- publishing states ------------------------------------------------------------------
    def _mark(self, name: str) -> None:
        self._dirty_states.add(name)
        self._publish_wake.set()

    async def _state_feed(self) -> None:
        loop = asyncio.get_running_loop()
        async for change in self.sup.events():
            self._mark(change.unit)
            if change.active_state == "active":
                # tasks and memory are worth reporting once the service has settled
                loop.call_later(SETTLE_REPORT, self._mark, change.unit)

    def state_record(self, name: str) -> StateRecord | None:
        try:
            st = self.sup.status(name)
        except NoSuchUnit:
            return None
        since = st["timestamps"].get("state_change", 0.0)
        return StateRecord(name, self.identity.machine_id, self.loaded.get(name, ""),
                           st["load_state"], st["active_state"], st["sub_state"],
                           st["result"], st["main_pid"] or 0, float(since),
                           name in self.launched, st.get("tasks") or 0, st.get("memory") or 0,
                           self.failures.get(name, ""))

    async def _publish_loop(self) -> None:
        while True:
            await self._publish_wake.wait()
            self._publish_wake.clear()
            await asyncio.sleep(0.01)  # coalesce a burst of changes
            names, self._dirty_states = self._dirty_states, set()
            ops: list[Put | Delete] = []
            lease = self.lease
            if lease is None:
                continue
            for name in sorted(names):
                rec = self.state_record(name) if name in self.loaded else None
                if rec is None and name in self.failures and name in self.wanted():
                    rec = StateRecord(name, self.identity.machine_id, "", "error", "inactive",
                                      "dead", "resources", error=self.failures[name])
                key = self.keys.state(name, self.identity.machine_id)
                if rec is None:
                    ops.append(Delete(key))
                else:
                    ops.append(Put(key, rec.encode(), lease.id))
            try:
                for i in range(0, len(ops), 100):  # etcd's default max ops per txn is 128
                    await self._publish(ops[i:i + 100])
                self._last_contact = time.monotonic()
            except (RegistryError, OSError, LeaseNotFound) as exc:
                log.debug("publish failed (%s); retrying", exc)
                self._dirty_states |= names
                await asyncio.sleep(0.5)
                self._publish_wake.set()

    async def _publish(self, ops: list[Put | Delete]) -> None:
        await self.registry.txn([], ops)



def _template_of(name: str) -> UnitName | None:
    """The split name of a template instance (``apache@8080.service``); else None."""
    try:
        parts = split_name(name)
    except InvalidUnitName:
        return None
    return parts if parts.instance else None


def _same_template(name: str, family: UnitName | None) -> bool:
    other = _template_of(name)
    return (family is not None and other is not None and other.prefix == family.prefix
            and other.suffix == family.suffix)
