"""The API's reads and writes of the cluster keyspace (engine/keyspace.py).

Handlers call these and shape the results; nothing here knows about HTTP
except :class:`~flotte.api.wire.HttpError` for "not found" and "changed
under you".  Two properties fleet lacked:

* listings read every directory they need in **one** read-only transaction,
  so a unit's desired state, schedule and current state come from the same
  revision (fleet's list could mix revisions);
* every multi-key write is one transaction guarded by a comparison on the
  unit key's ``create_revision``, so a concurrent destroy or re-create can
  never leave half a unit behind (e.g. a ``desired/`` key without a unit).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from flotte.api.validation import MetadataOp, is_global
from flotte.api.wire import HttpError, derive_current_state
from flotte.engine.keyspace import (
    DesiredState,
    Keys,
    MachineRecord,
    RecordError,
    StateRecord,
    UnitRecord,
    decode_desired,
    decode_reasons,
)
from flotte.registry import (
    Delete,
    Get,
    KeyValue,
    Put,
    Range,
    Registry,
    create_revision,
    mod_revision,
)

log = logging.getLogger("flotte.api")

UNIT_NOT_FOUND = "unit does not exist"


def _text(kv: KeyValue | None) -> str | None:
    return None if kv is None else kv.value.decode("utf-8", "replace").strip()


@dataclass(frozen=True, slots=True)
class UnitView:
    """A unit with everything the API shows about it, read at one revision."""

    record: UnitRecord
    desired: DesiredState | None
    scheduled: str | None  # machine id from schedule/, None if unscheduled
    state: StateRecord | None
    create_revision: int  # identifies this incarnation of the unit (destroy + create changes it)
    mod_revision: int  # changes with every replace
    global_: bool = False

    @property
    def current(self) -> DesiredState | None:
        """fleet's derived ``currentState``; ``None`` (omitted) for global units."""
        if self.global_:
            return None
        return derive_current_state(self.scheduled, self.state)

    @property
    def machine_id(self) -> str | None:
        return None if self.global_ else (self.scheduled or None)


@dataclass(frozen=True, slots=True)
class MachineView:
    id: str
    record: MachineRecord
    metadata: Mapping[str, str] = field(default_factory=dict)  # config + dynamic, merged


def _decode_desired(kv: KeyValue | None) -> DesiredState | None:
    if kv is None:
        return None
    try:
        return decode_desired(kv.value, kv.key)
    except RecordError as exc:
        log.warning("ignoring bad desired state: %s", exc)
        return None


def _decode_state(kv: KeyValue | None) -> StateRecord | None:
    if kv is None:
        return None
    try:
        return StateRecord.decode(kv.value, kv.key)
    except RecordError as exc:
        log.warning("ignoring bad unit state: %s", exc)
        return None


def _pick(by_machine: Mapping[str, KeyValue], scheduled: str | None) -> KeyValue | None:
    """The state that describes a unit: its scheduled machine's (fleet.md §1.4).

    For an unscheduled unit (a global unit, or one being stopped after a move
    or destroy) the machines' reports are shown in machine order, first one.
    """
    if scheduled:
        return by_machine.get(scheduled)
    return by_machine[min(by_machine)] if by_machine else None


class Store:
    """Registry access for the API, under one :class:`Keys` prefix."""

    def __init__(self, registry: Registry, keys: Keys) -> None:
        self.registry = registry
        self.keys = keys

    # -- units ---------------------------------------------------------------
    def _view(self, kv: KeyValue, desired: KeyValue | None, sched: KeyValue | None,
              state: KeyValue | None) -> UnitView:
        record = UnitRecord.decode(kv.value, kv.key)
        return UnitView(record, _decode_desired(desired), _text(sched) or None,
                        _decode_state(state), kv.create_revision, kv.mod_revision,
                        is_global(record))

    async def units(self) -> list[UnitView]:
        """Every unit, sorted by name.  A unit whose record does not decode is
        skipped with a warning naming its key (one bad key must not hide the rest)."""
        k = self.keys
        res = await self.registry.txn([], [Range(k.units), Range(k.desired), Range(k.schedule),
                                           Range(k.states)])
        units, desired, sched, states = res.responses
        by_name = [{Keys.leaf(kv.key, d): kv for kv in kvs}
                   for kvs, d in ((desired, k.desired), (sched, k.schedule))]
        reported = self._states_by_unit(states)
        out: list[UnitView] = []
        for kv in units:
            name = Keys.leaf(kv.key, k.units)
            sched_kv = by_name[1].get(name)
            try:
                out.append(self._view(kv, by_name[0].get(name), sched_kv,
                                      _pick(reported.get(name, {}), _text(sched_kv))))
            except RecordError as exc:
                log.warning("skipping unit that does not decode: %s", exc)
        return out

    def _states_by_unit(self, kvs: list[KeyValue]) -> dict[str, dict[str, KeyValue]]:
        """``state/<unit>/<machine>`` keys grouped: unit → machine → key-value."""
        out: dict[str, dict[str, KeyValue]] = {}
        for kv in kvs:
            name, _, machine = Keys.leaf(kv.key, self.keys.states).rpartition("/")
            if name:
                out.setdefault(name, {})[machine] = kv
        return out

    async def unit(self, name: str) -> UnitView | None:
        k = self.keys
        res = await self.registry.txn([], [Get(k.unit(name)), Get(k.desired_state(name)),
                                           Get(k.scheduled(name)), Range(k.unit_states(name))])
        kv, desired, sched, states = res.responses
        if kv is None:
            return None
        try:
            return self._view(kv, desired, sched,
                              _pick(self._states_by_unit(states).get(name, {}), _text(sched)))
        except RecordError as exc:
            raise HttpError(500, f"{exc}") from None

    async def create_unit(self, record: UnitRecord, desired: DesiredState,
                          replacing: UnitView | None = None) -> None:
        """Store a new unit (or replace ``replacing``) with its desired state, atomically."""
        k = self.keys
        # A new unit must still be missing; a replaced one must be exactly the
        # version this request read (two racing replaces: one gets 409).
        guard = create_revision(k.unit(record.name)) == 0 if replacing is None \
            else mod_revision(k.unit(record.name)) == replacing.mod_revision
        res = await self.registry.txn(
            [guard],
            [Put(k.unit(record.name), record.encode()),
             Put(k.desired_state(record.name), desired.encode())])
        if not res.succeeded:
            raise HttpError(409, f"unit {record.name} was created, replaced or destroyed by "
                                 "another request at the same time; read it and retry")

    async def set_desired(self, view: UnitView, desired: DesiredState) -> None:
        k = self.keys
        name = view.record.name
        res = await self.registry.txn([create_revision(k.unit(name)) == view.create_revision],
                                      [Put(k.desired_state(name), desired.encode())])
        if not res.succeeded:
            raise HttpError(404, f"{UNIT_NOT_FOUND} (it was destroyed or replaced while "
                                 "this request ran; read it and retry)")

    async def destroy_unit(self, view: UnitView) -> None:
        """Delete the unit's body, desired state, schedule and reasons in one transaction.

        The current state (``state/``) stays: it belongs to the agent, which
        deletes it once the unit has stopped, so ``list-units`` shows it
        stopping (fleet.md §2.2).
        """
        k = self.keys
        name = view.record.name
        res = await self.registry.txn(
            [create_revision(k.unit(name)) == view.create_revision],
            [Delete(k.unit(name)), Delete(k.desired_state(name)), Delete(k.scheduled(name)),
             Delete(k.reason(name))])
        if not res.succeeded:
            raise HttpError(404, f"{UNIT_NOT_FOUND} (it was destroyed or replaced while "
                                 "this request ran)")

    # -- states --------------------------------------------------------------
    async def states(self) -> list[StateRecord]:
        out: list[StateRecord] = []
        kvs = await self.registry.range(self.keys.states)
        for state in StateRecord.decode_many([(kv.key, kv.value) for kv in kvs]):
            if isinstance(state, RecordError):
                log.warning("ignoring bad unit state: %s", state)
            else:
                out.append(state)
        return out

    async def state(self, name: str) -> StateRecord | None:
        """The state of ``name`` from the machine it is scheduled on, else any machine's."""
        k = self.keys
        res = await self.registry.txn([], [Get(k.scheduled(name)), Range(k.unit_states(name))])
        sched, states = res.responses
        return _decode_state(_pick(self._states_by_unit(states).get(name, {}), _text(sched)))

    # -- machines ------------------------------------------------------------
    async def machines(self) -> list[MachineView]:
        """Present machines, with dynamic metadata (PATCH) laid over their configured
        metadata; an empty dynamic value removes the key (fleet.md §1.3)."""
        k = self.keys
        res = await self.registry.txn([], [Range(k.machines), Range(k.metadata)])
        machines, metadata = res.responses
        dynamic: dict[str, dict[str, str]] = {}
        for kv in metadata:
            mid, _, key = Keys.leaf(kv.key, k.metadata).partition("/")
            if mid and key:
                dynamic.setdefault(mid, {})[key] = kv.value.decode("utf-8", "replace")
        out: list[MachineView] = []
        for kv in machines:
            mid = Keys.leaf(kv.key, k.machines)
            try:
                record = MachineRecord.decode(kv.value, kv.key)
            except RecordError as exc:
                log.warning("skipping machine that does not decode: %s", exc)
                continue
            out.append(MachineView(mid, record, merge_metadata(record.metadata,
                                                               dynamic.get(mid, {}))))
        return out

    async def machine(self, machine_id: str) -> MachineRecord | None:
        kv = await self.registry.get(self.keys.machine(machine_id))
        if kv is None:
            return None
        try:
            return MachineRecord.decode(kv.value, kv.key)
        except RecordError as exc:
            log.warning("machine record does not decode: %s", exc)
            return None

    async def patch_metadata(self, ops: Iterable[MetadataOp]) -> None:
        puts = [Put(self.keys.machine_metadata(op.machine_id, op.key), op.value.encode())
                for op in ops]
        if puts:
            await self.registry.txn([], puts)

    # -- reasons ---------------------------------------------------------------
    async def reasons(self, name: str) -> dict[str, str]:
        kv = await self.registry.get(self.keys.reason(name))
        if kv is None:
            return {}
        try:
            return decode_reasons(kv.value, kv.key)
        except RecordError as exc:
            raise HttpError(500, str(exc)) from None


def merge_metadata(configured: Mapping[str, str], dynamic: Mapping[str, str]) -> dict[str, str]:
    """Dynamic metadata over configured metadata; ``""`` deletes (fleet's ``remove``)."""
    out = dict(configured)
    for key, value in dynamic.items():
        if value:
            out[key] = value
        else:
            out.pop(key, None)
    return out
