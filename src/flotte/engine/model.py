"""What the scheduler decides from, and what it decides.

The engine's decision code is pure (Nomad's split: a loop that reads the
registry and writes results, around functions that only compute).  Its
input is a :class:`ClusterView`, a snapshot the engine loop builds from
the registry (``keyspace.py`` records), and its outputs are a
:class:`Decision` per (machine, unit) and a :class:`Plan` per reconcile.
Nothing here does I/O, so every scheduling scenario of fleet's functional
suite can run in-process in milliseconds (``tests/engine``).

Vocabulary, following fleet:

* a *resident* of a machine is a unit that counts as being there: a
  non-global unit the schedule places there whose desired state is not
  ``inactive``, plus every global unit that runs there (metadata matches,
  no conflict).  Conflicts, ``MachineOf`` and Replaces are checked against
  residents, and a machine's load is its number of residents;
* a unit is *pending* when it should be placed (not global, not a
  template, desired state not ``inactive``) and is not.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from flotte.engine.keyspace import DesiredState, MachineRecord, UnitRecord
from flotte.unit.parser import Option
from flotte.unit.xfleet import XFleet, parse_x_fleet

__all__ = [
    "Action",
    "ClusterView",
    "Decision",
    "Machine",
    "Plan",
    "Schedule",
    "Step",
    "Unit",
    "Unschedule",
    "is_template_name",
    "short_id",
]


def short_id(machine_id: str) -> str:
    """The 8-character form fleetctl prints and fleet's ``MachineID=`` accepts."""
    return machine_id[:8]


def is_template_name(name: str) -> bool:
    """``foo@.service`` is a template (its first ``@`` ends the name's stem).

    Templates are stored but never placed: fleet refused to load or start
    them after issue #1236, where starting one hung fleetctl forever.
    """
    stem = name.rsplit(".", 1)[0]
    at = stem.find("@")
    return at >= 0 and at == len(stem) - 1


@dataclass(frozen=True, slots=True)
class Machine:
    """A live machine as the scheduler sees it.

    ``metadata`` is already merged: the agent's configured metadata
    overridden by the dynamic metadata set through the API (fleet: dynamic
    wins; an empty dynamic value deletes the key).
    """

    id: str
    metadata: Mapping[str, str] = field(default_factory=dict)
    public_ip: str = ""

    @property
    def short_id(self) -> str:
        return short_id(self.id)

    @classmethod
    def from_record(cls, record: MachineRecord,
                    dynamic: Mapping[str, str] | None = None) -> Machine:
        """Merge a presence record with the machine's dynamic metadata keys."""
        meta = dict(record.metadata)
        for k, v in (dynamic or {}).items():
            if v:
                meta[k] = v
            else:
                meta.pop(k, None)
        return cls(record.id, meta, record.public_ip)


@dataclass(frozen=True, slots=True)
class Unit:
    """A submitted unit: its name, parsed ``[X-Fleet]`` and desired state.

    ``xfleet`` is treated as read-only (it is the unit parser's mutable
    dataclass; copying it for every unit would double the engine's memory).
    """

    name: str
    xfleet: XFleet = field(default_factory=XFleet)
    desired: DesiredState = "launched"
    hash: str = ""

    @property
    def is_global(self) -> bool:
        return self.xfleet.global_

    @property
    def is_template(self) -> bool:
        return is_template_name(self.name)

    @property
    def wants_placement(self) -> bool:
        """Should the engine give this unit a machine?  (fleet: scheduled jobs.)"""
        return not self.is_global and not self.is_template and self.desired != "inactive"

    @property
    def required_machine(self) -> str | None:
        """fleet's ``RequiredTarget``: MachineID, else the legacy boot-ID condition."""
        return self.xfleet.machine_id or self.xfleet.machine_boot_id or None

    @classmethod
    def make(cls, name: str, *, desired: DesiredState = "launched",
             machine_id: str | None = None, machine_of: Iterable[str] = (),
             metadata: Mapping[str, Iterable[str]] | None = None,
             conflicts: Iterable[str] = (), replaces: Iterable[str] = (),
             global_: bool = False) -> Unit:
        """A unit from keyword constraints, for callers that have no unit file."""
        xf = XFleet(machine_id=machine_id, machine_of=list(machine_of),
                    metadata={k: list(v) for k, v in (metadata or {}).items()},
                    conflicts=list(conflicts), replaces=list(replaces), global_=global_)
        return cls(name, xf, desired)

    @classmethod
    def from_options(cls, name: str, options: Iterable[tuple[str, str, str]],
                     desired: DesiredState = "launched", hash: str = "") -> Unit:
        """Parse ``[X-Fleet]`` from ``(section, key, value)`` triples (the API's form).

        Diagnostics are dropped: the API validated the unit when it was
        submitted, and the engine must schedule what is stored.
        """
        opts = [Option(s, k, v, 0) for s, k, v in options]
        xf, _ = parse_x_fleet(opts, name)
        return cls(name, xf, desired, hash)

    @classmethod
    def from_record(cls, record: UnitRecord, desired: DesiredState) -> Unit:
        return cls.from_options(record.name, record.options, desired, record.hash)


class Action(enum.Enum):
    """What fleet's ``AbleToRun`` answers for one unit on one machine."""

    RUN = "run"                 # fleet: JobActionSchedule
    REFUSE = "refuse"           # fleet: JobActionUnschedule
    RESCHEDULE = "reschedule"   # fleet: JobActionReschedule (a Replaces= relation here)


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer of :func:`flotte.engine.rules.able_to_run`.

    ``reason`` is a sentence for humans naming the machine and the other
    unit (``"conflicts with apache@8081.service on 1b2c3d4e"``); it is what
    ``flotte status`` shows for a unit that stays unplaced, the fix for
    fleet's silent "blocks forever" (issues #559, #1334, #1364).

    For ``RESCHEDULE`` exactly one of ``replaced_by`` (a resident replaces
    this unit, so this unit must move) and ``displaces`` (this unit replaces
    residents, which must move) is set.
    """

    action: Action
    reason: str = ""
    rule: str = ""  # the [X-Fleet] option that decided: MachineID, MachineMetadata, ...
    other: str = ""  # the other unit named in the reason, if any
    displaces: tuple[str, ...] = ()
    replaced_by: str = ""

    @property
    def runnable(self) -> bool:
        """May the unit be placed here?  Replacing a resident is allowed; being replaced is not."""
        return self.action is Action.RUN or (self.action is Action.RESCHEDULE
                                             and not self.replaced_by)


RUN = Decision(Action.RUN)


@dataclass(frozen=True, slots=True)
class Unschedule:
    """Delete ``/schedule/<unit>`` (compare-and-delete on ``machine``)."""

    unit: str
    machine: str
    reason: str
    kind: Literal["unschedule"] = "unschedule"


@dataclass(frozen=True, slots=True)
class Schedule:
    """Create ``/schedule/<unit>`` = ``machine`` (create-only, as fleet's prev-exist=false)."""

    unit: str
    machine: str
    reason: str = ""
    kind: Literal["schedule"] = "schedule"


Step = Schedule | Unschedule


@dataclass(slots=True)
class Plan:
    """The outcome of one reconcile, in the order the engine must write it.

    ``unplaced`` maps each evaluated unit that could not be placed to
    ``{machine_id: reason}``; the ``""`` key holds a cluster-wide reason
    (``"no machines in the cluster"``, a circular ``Replaces=``, how many
    machines were left out...).  ``evaluated`` names every unit whose
    placement the pass considered: a full pass evaluates every unit that
    wants a machine, an incremental pass only those a change may affect, and
    the previously stored reasons of the others still hold.  So the caller
    writes the reasons in ``unplaced`` (skipping unchanged ones), deletes
    those of ``evaluated`` units missing from it (placed), and deletes a
    unit's reasons when it is destroyed, made global or ``inactive``.
    """

    steps: list[Step] = field(default_factory=list)
    unplaced: dict[str, dict[str, str]] = field(default_factory=dict)
    evaluated: set[str] = field(default_factory=set)

    @property
    def schedules(self) -> list[Schedule]:
        return [s for s in self.steps if isinstance(s, Schedule)]

    @property
    def unschedules(self) -> list[Unschedule]:
        return [s for s in self.steps if isinstance(s, Unschedule)]

    @property
    def moved(self) -> set[str]:
        """Units taken off one machine and put on another in this plan."""
        return {s.unit for s in self.unschedules} & {s.unit for s in self.schedules}

    def apply(self, schedule: Mapping[str, str]) -> dict[str, str]:
        """The schedule after this plan's steps (what the registry will hold)."""
        out = dict(schedule)
        for step in self.steps:
            if isinstance(step, Schedule):
                out[step.unit] = step.machine
            elif out.get(step.unit) == step.machine:
                del out[step.unit]
        return out


@dataclass(frozen=True, eq=False)
class ClusterView:
    """A snapshot of the cluster: live machines, units, and the current schedule.

    ``schedule`` is what ``/schedule/`` holds (unit → machine id), stale
    entries included (a destroyed unit, a machine that went away); the
    scheduler's first job is to clean those up.  Derived facts (residents,
    global units per machine) are computed on first use and cached, which is
    safe because the view is never mutated.
    """

    machines: Mapping[str, Machine] = field(default_factory=dict)
    units: Mapping[str, Unit] = field(default_factory=dict)
    schedule: Mapping[str, str] = field(default_factory=dict)
    _cache: dict[str, object] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def of(cls, machines: Iterable[Machine] = (), units: Iterable[Unit] = (),
           schedule: Mapping[str, str] | None = None) -> ClusterView:
        return cls({m.id: m for m in machines}, {u.name: u for u in units},
                   dict(schedule or {}))

    @classmethod
    def from_records(cls, machines: Iterable[MachineRecord],
                     units: Iterable[tuple[UnitRecord, DesiredState]],
                     schedule: Mapping[str, str],
                     dynamic_metadata: Mapping[str, Mapping[str, str]] | None = None
                     ) -> ClusterView:
        """Build a view from the registry's decoded records (``keyspace.py``)."""
        dyn = dynamic_metadata or {}
        return cls.of((Machine.from_record(r, dyn.get(r.id)) for r in machines),
                      (Unit.from_record(r, d) for r, d in units), schedule)

    def replace(self, *, machines: Iterable[Machine] | None = None,
                units: Iterable[Unit] | None = None,
                schedule: Mapping[str, str] | None = None) -> ClusterView:
        """A new view with some parts swapped (views are immutable)."""
        return ClusterView(
            self.machines if machines is None else {m.id: m for m in machines},
            self.units if units is None else {u.name: u for u in units},
            self.schedule if schedule is None else dict(schedule))

    def placed_target(self, name: str) -> str | None:
        """The machine a non-global unit is resident on, or None if its entry is stale."""
        mid = self.schedule.get(name)
        unit = self.units.get(name)
        if mid is None or unit is None or mid not in self.machines or not unit.wants_placement:
            return None
        return mid

    def _placed(self) -> dict[str, frozenset[str]]:
        cached = self._cache.get("placed")
        if cached is None:
            acc: dict[str, set[str]] = {mid: set() for mid in self.machines}
            for name in self.schedule:
                mid = self.placed_target(name)
                if mid is not None:
                    acc[mid].add(name)
            cached = {mid: frozenset(s) for mid, s in acc.items()}
            self._cache["placed"] = cached
        assert isinstance(cached, dict)
        return cached

    def placed_on(self, machine_id: str) -> frozenset[str]:
        """Non-global residents of a machine (scheduled there, desired not inactive)."""
        return self._placed().get(machine_id, frozenset())

    def global_units(self) -> list[Unit]:
        """Global units that run somewhere (desired not inactive), by name."""
        return [self.units[n] for n in sorted(self.units)
                if self.units[n].is_global and not self.units[n].is_template
                and self.units[n].desired != "inactive"]
