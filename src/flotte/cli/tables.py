"""The three listings (``list-units``, ``list-unit-files``, ``list-machines``): pure formatting.

Columns, legends and ordering are fleetctl's (fleet.md §4.3), so scripts
written against fleetctl keep working:

* headers are the upper-cased field names; ``--no-legend`` drops them;
* machine ids print as 8 characters + ``...`` (all 32 with ``--full``),
  followed by ``/<IP>`` where a column shows a machine and its IP is known;
* hashes print as 7 hex characters (all 40 with ``--full``);
* a missing value prints ``-``;
* metadata prints as ``k=v`` pairs sorted by key, joined with ``,``;
* ``list-units`` is sorted by unit name then machine id, ``list-unit-files``
  by unit name, ``list-machines`` by machine id.

``--output json`` prints every field at full length instead (a stable
interface documented in docs/cli.md), whatever ``--fields`` says.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from flotte.api.client import Machine, Unit, UnitState
from flotte.cli.tabwriter import format_table

MISSING = "-"
SHORT_ID = 8
SHORT_HASH = 7

T = TypeVar("T")


class FieldsError(ValueError):
    """A bad ``--fields`` value; the message is fleetctl's."""


# -- legends ----------------------------------------------------------------------------


def machine_id_legend(machine_id: str, full: bool = False) -> str:
    """``113f16a7...``, or the whole id with ``--full`` (fleetctl's ``machineIDLegend``)."""
    if full or not machine_id:
        return machine_id
    return f"{machine_id[:SHORT_ID]}..."


@functools.lru_cache(maxsize=4096)
def machine_legend(machine_id: str, ip: str = "", full: bool = False) -> str:
    """``113f16a7.../10.0.0.5`` (fleetctl's ``machineFullLegend``)."""
    legend = machine_id_legend(machine_id, full)
    return f"{legend}/{ip}" if ip else legend


def machine_column(machine_id: str, machines: Mapping[str, Machine], full: bool) -> str:
    """The MACHINE/TARGET cell: ``-`` when unscheduled, the id alone if the machine is gone."""
    if not machine_id:
        return MISSING
    m = machines.get(machine_id)
    return machine_legend(machine_id, m.primary_ip if m else "", full)


def short_hash(unit_hash: str, full: bool = False) -> str:
    if not unit_hash:
        return MISSING
    return unit_hash if full else unit_hash[:SHORT_HASH]


def format_metadata(metadata: Mapping[str, str]) -> str:
    if not metadata:
        return MISSING
    return ",".join(f"{k}={metadata[k]}" for k in sorted(metadata))


def _or_missing(value: str) -> str:
    return value if value else MISSING


# -- rows ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StateRow:
    """One line of ``list-units``: a published unit state and the machines known."""

    state: UnitState
    machines: Mapping[str, Machine]


@dataclass(frozen=True, slots=True)
class UnitFileRow:
    """One line of ``list-unit-files``: a unit with what the CLI derives from its options."""

    unit: Unit
    hash: str
    global_: bool
    description: str
    machines: Mapping[str, Machine]


@dataclass(frozen=True, slots=True)
class Listing(Generic[T]):
    """A listing's field table: name → cell function, plus the default columns."""

    fields: Mapping[str, Callable[[T, bool], str]]
    default: tuple[str, ...]

    def parse_fields(self, spec: str | None) -> list[str]:
        """``--fields`` → column names (fleetctl's errors for empty or unknown keys)."""
        if spec is None:
            return list(self.default)
        if not spec:
            raise FieldsError("Must define output format")
        cols = spec.split(",")
        for col in cols:
            if col not in self.fields:
                raise FieldsError(f'Invalid key in output format: "{col}" (valid keys: '
                                  f'{",".join(self.fields)})')
        return cols

    def render(self, rows: Iterable[T], columns: Sequence[str], *, full: bool = False,
               no_legend: bool = False) -> str:
        table: list[list[str]] = [] if no_legend else [[c.upper() for c in columns]]
        table += [[self.fields[c](row, full) for c in columns] for row in rows]
        return format_table(table) if table else ""


UNITS: Listing[StateRow] = Listing(
    fields={
        "unit": lambda r, full: _or_missing(r.state.name),
        "load": lambda r, full: _or_missing(r.state.load_state),
        "active": lambda r, full: _or_missing(r.state.active_state),
        "sub": lambda r, full: _or_missing(r.state.sub_state),
        "machine": lambda r, full: machine_column(r.state.machine_id, r.machines, full),
        "hash": lambda r, full: short_hash(r.state.hash, full),
    },
    default=("unit", "machine", "active", "sub"),
)


def _target(r: UnitFileRow, full: bool) -> str:
    if r.global_:
        return "global"
    return machine_column(r.unit.machine_id, r.machines, full)


UNIT_FILES: Listing[UnitFileRow] = Listing(
    fields={
        "unit": lambda r, full: _or_missing(r.unit.name),
        "hash": lambda r, full: short_hash(r.hash, full),
        "dstate": lambda r, full: _or_missing(r.unit.desired_state),
        "state": lambda r, full: _or_missing(r.unit.current_state),
        "target": _target,
        "tmachine": _target,
        "global": lambda r, full: "true" if r.global_ else "false",
        "desc": lambda r, full: _or_missing(r.description),
    },
    default=("unit", "hash", "dstate", "state", "target"),
)

MACHINES: Listing[Machine] = Listing(
    fields={
        "machine": lambda m, full: machine_id_legend(m.id, full),
        "ip": lambda m, full: _or_missing(m.primary_ip),
        "metadata": lambda m, full: format_metadata(m.metadata),
    },
    default=("machine", "ip", "metadata"),
)

#: fleetctl's warning for the pre-2014 column name.
TMACHINE_WARNING = "WARNING: The 'tmachine' field is deprecated. Use 'target' instead."


# -- ordering -----------------------------------------------------------------------------


def sort_states(states: Iterable[UnitState]) -> list[UnitState]:
    return sorted(states, key=lambda s: (s.name, s.machine_id))


def sort_units(units: Iterable[Unit]) -> list[Unit]:
    return sorted(units, key=lambda u: u.name)


def sort_machines(machines: Iterable[Machine]) -> list[Machine]:
    return sorted(machines, key=lambda m: m.id)


# -- JSON -----------------------------------------------------------------------------------


def _ip(machine_id: str, machines: Mapping[str, Machine]) -> str | None:
    m = machines.get(machine_id) if machine_id else None
    return m.primary_ip or None if m else None


def state_json(r: StateRow) -> dict[str, Any]:
    s = r.state
    return {"unit": s.name, "machine": s.machine_id or None,
            "ip": _ip(s.machine_id, r.machines), "load": s.load_state or None,
            "active": s.active_state or None, "sub": s.sub_state or None,
            "hash": s.hash or None}


def unit_file_json(r: UnitFileRow) -> dict[str, Any]:
    u = r.unit
    return {"unit": u.name, "hash": r.hash or None, "dstate": u.desired_state or None,
            "state": u.current_state or None, "machine": u.machine_id or None,
            "ip": _ip(u.machine_id, r.machines), "global": r.global_,
            "desc": r.description or None}


def machine_json(m: Machine) -> dict[str, Any]:
    return {"machine": m.id, "ip": m.primary_ip or None, "metadata": dict(sorted(
        m.metadata.items()))}


def dump_json(items: Iterable[Mapping[str, Any]]) -> str:
    """A JSON array, one object per row, with a trailing newline."""
    return json.dumps(list(items), indent=2, ensure_ascii=False) + "\n"


__all__ = [
    "MACHINES", "MISSING", "TMACHINE_WARNING", "UNITS", "UNIT_FILES", "FieldsError", "Listing",
    "StateRow", "UnitFileRow", "dump_json", "format_metadata", "machine_column",
    "machine_id_legend", "machine_json", "machine_legend", "short_hash", "sort_machines",
    "sort_states", "sort_units", "state_json", "unit_file_json",
]
