"""The cluster's registry keyspace and the JSON records stored in it.

One place names every key the engine, the agents and the API read or write
(DESIGN.md, "Registry keyspace"), and one place encodes and decodes their
values, so the three never disagree about a field.  Everything here is pure:
builders return strings and bytes; callers do the I/O.

::

    /flotte/units/<name>      UnitRecord        until destroyed
    /flotte/desired/<name>    inactive|loaded|launched   until destroyed
    /flotte/schedule/<name>   machine id (engine-owned)
    /flotte/machines/<id>     MachineRecord     on the machine's lease
    /flotte/metadata/<id>/<k> dynamic metadata (API PATCH), survives the machine
    /flotte/state/<name>/<id> StateRecord       on the reporting machine's lease
    /flotte/reasons/<name>    why the unit could not be placed (engine-owned)
    /flotte/engine/leader     leader machine id, on the leader's lease

Why JSON and not a binary codec: operators read these keys with
``flotte kv get`` and ``etcdctl`` when debugging a cluster, as fleet's users did.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from flotte.unit.serialize import serialize, unit_hash

DesiredState = Literal["inactive", "loaded", "launched"]
DESIRED_STATES: tuple[DesiredState, ...] = ("inactive", "loaded", "launched")
DEFAULT_PREFIX = "/flotte"


class RecordError(ValueError):
    """A stored value does not decode; names the key so an operator can fix it."""


@dataclass(frozen=True, slots=True)
class Keys:
    """Key builders under one prefix (default ``/flotte``)."""

    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        if not self.prefix.startswith("/") or self.prefix.endswith("/"):
            raise ValueError(f"registry prefix {self.prefix!r} must start with '/' and not "
                             "end with '/' (for example /flotte)")

    # directories (prefix scans and watches) -------------------------------
    @property
    def units(self) -> str:
        return f"{self.prefix}/units/"

    @property
    def desired(self) -> str:
        return f"{self.prefix}/desired/"

    @property
    def schedule(self) -> str:
        return f"{self.prefix}/schedule/"

    @property
    def machines(self) -> str:
        return f"{self.prefix}/machines/"

    @property
    def metadata(self) -> str:
        return f"{self.prefix}/metadata/"

    @property
    def states(self) -> str:
        return f"{self.prefix}/state/"

    @property
    def reasons(self) -> str:
        return f"{self.prefix}/reasons/"

    @property
    def leader(self) -> str:
        return f"{self.prefix}/engine/leader"

    # single keys ------------------------------------------------------------
    def unit(self, name: str) -> str:
        return self.units + name

    def desired_state(self, name: str) -> str:
        return self.desired + name

    def scheduled(self, name: str) -> str:
        return self.schedule + name

    def machine(self, machine_id: str) -> str:
        return self.machines + machine_id

    def machine_metadata(self, machine_id: str, key: str = "") -> str:
        return f"{self.metadata}{machine_id}/{key}"

    def state(self, name: str, machine_id: str) -> str:
        """A unit's state as one machine reports it.

        Per machine, as fleet's ``states/<unit>/<machine>``: a global unit runs
        on many machines, and during a move two machines may briefly report the
        same unit; each writes (and deletes) only its own key.
        """
        return f"{self.states}{name}/{machine_id}"

    def unit_states(self, name: str) -> str:
        """The prefix of every machine's state of ``name``."""
        return f"{self.states}{name}/"

    def reason(self, name: str) -> str:
        return self.reasons + name

    @staticmethod
    def leaf(key: str, directory: str) -> str:
        """The name under ``directory`` (``/flotte/units/a.service`` → ``a.service``)."""
        if not key.startswith(directory):
            raise ValueError(f"{key!r} is not under {directory!r}")
        return key[len(directory):]


def _loads(raw: bytes, key: str) -> dict[str, Any]:
    try:
        obj = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RecordError(f"{key}: not valid JSON ({e}); rewrite or delete the key") from e
    if not isinstance(obj, dict):
        raise RecordError(f"{key}: expected a JSON object; rewrite or delete the key")
    return obj


def _dumps(obj: Mapping[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


@dataclass(frozen=True, slots=True)
class UnitRecord:
    """A submitted unit: its name and options as fleet's API carries them.

    ``hash`` is fleet's unit hash (SHA-1 of the go-systemd serialization), so
    a re-submission with identical options is recognised as unchanged.
    """

    name: str
    options: tuple[tuple[str, str, str], ...]  # (section, name, value)
    hash: str = ""

    @classmethod
    def make(cls, name: str, options: Iterable[tuple[str, str, str]]) -> UnitRecord:
        opts = tuple(options)
        return cls(name, opts, unit_hash(opts))

    def text(self) -> str:
        """The unit file (systemd dialect) an agent hands to its supervisor."""
        return serialize(self.options, "go-systemd")

    def encode(self) -> bytes:
        return _dumps({"name": self.name, "hash": self.hash,
                       "options": [{"section": s, "name": n, "value": v}
                                   for s, n, v in self.options]})

    @classmethod
    def decode(cls, raw: bytes, key: str = "unit") -> UnitRecord:
        obj = _loads(raw, key)
        try:
            opts = tuple((o["section"], o["name"], o["value"]) for o in obj["options"])
            return cls(str(obj["name"]), opts, str(obj.get("hash") or unit_hash(opts)))
        except (KeyError, TypeError) as e:
            raise RecordError(f"{key}: missing field {e}; rewrite or delete the key") from e


def decode_desired(raw: bytes, key: str = "desired") -> DesiredState:
    value = raw.decode("utf-8", "replace")
    for s in DESIRED_STATES:
        if value == s:
            return s
    raise RecordError(f"{key}: {value!r} is not one of inactive, loaded, launched")


@dataclass(frozen=True, slots=True)
class MachineRecord:
    """A machine's presence: written by its agent on its lease."""

    id: str
    hostname: str = ""
    public_ip: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)
    version: str = ""
    api: str = ""  # an address other machines can reach this agent's API at (journal, status)

    def encode(self) -> bytes:
        return _dumps({"id": self.id, "hostname": self.hostname, "publicIP": self.public_ip,
                       "metadata": dict(self.metadata), "version": self.version,
                       "api": self.api})

    @classmethod
    def decode(cls, raw: bytes, key: str = "machine") -> MachineRecord:
        obj = _loads(raw, key)
        meta = obj.get("metadata") or {}
        if not isinstance(meta, dict):
            raise RecordError(f"{key}: metadata must be an object")
        return cls(str(obj.get("id", "")), str(obj.get("hostname", "")),
                   str(obj.get("publicIP", "")), {str(k): str(v) for k, v in meta.items()},
                   str(obj.get("version", "")), str(obj.get("api", "")))


@dataclass(frozen=True, slots=True)
class StateRecord:
    """A unit's current state, published by the machine running it (on its lease)."""

    name: str
    machine_id: str
    hash: str = ""
    load_state: str = ""
    active_state: str = ""
    sub_state: str = ""
    result: str = ""
    main_pid: int = 0
    since: float = 0.0  # wall-clock time of the last active-state change
    launched: bool = False  # the agent started it (fleet's job-state heartbeat)
    tasks: int = 0  # processes/threads in the unit's cgroup when published (0: unknown)
    memory: int = 0  # bytes charged to the unit's cgroup when published (0: unknown)
    error: str = ""  # why the agent could not load or start it ("" when it could)

    def encode(self) -> bytes:
        return _dumps({"name": self.name, "machineID": self.machine_id, "hash": self.hash,
                       "loadState": self.load_state, "activeState": self.active_state,
                       "subState": self.sub_state, "result": self.result,
                       "mainPID": self.main_pid, "since": self.since,
                       "launched": self.launched, "tasks": self.tasks,
                       "memory": self.memory, "error": self.error})

    @classmethod
    def decode(cls, raw: bytes, key: str = "state") -> StateRecord:
        return cls.from_json(_loads(raw, key), key)

    @classmethod
    def decode_many(cls, raws: Sequence[tuple[str, bytes]]) -> list[StateRecord | RecordError]:
        """Decode many ``(key, value)`` pairs with one JSON parse (a cluster's listing).

        ``json.loads`` per record was most of the API's time for a 10,000-unit
        ``list-units``.  A value that does not decode falls back to the
        per-record path, so its error still names its key.
        """
        try:
            objs = json.loads(b"[" + b",".join(raw for _, raw in raws) + b"]")
        except (UnicodeDecodeError, json.JSONDecodeError):
            objs = None
        out: list[StateRecord | RecordError] = []
        for i, (key, raw) in enumerate(raws):
            try:
                if objs is not None and isinstance(objs[i], dict):
                    out.append(cls.from_json(objs[i], key))
                else:
                    out.append(cls.decode(raw, key))
            except RecordError as exc:
                out.append(exc)
        return out

    @classmethod
    def from_json(cls, o: dict[str, Any], key: str = "state") -> StateRecord:
        try:
            return cls(str(o["name"]), str(o["machineID"]), str(o.get("hash", "")),
                       str(o.get("loadState", "")), str(o.get("activeState", "")),
                       str(o.get("subState", "")), str(o.get("result", "")),
                       int(o.get("mainPID", 0)), float(o.get("since", 0.0)),
                       bool(o.get("launched", False)), int(o.get("tasks", 0) or 0),
                       int(o.get("memory", 0) or 0), str(o.get("error", "") or ""))
        except (KeyError, TypeError, ValueError) as e:
            raise RecordError(f"{key}: bad field {e}; rewrite or delete the key") from e


def encode_reasons(reasons: Mapping[str, str]) -> bytes:
    """Why a unit is unplaced: machine id → human sentence ("" key: cluster-wide reason)."""
    return _dumps(dict(reasons))


def decode_reasons(raw: bytes, key: str = "reasons") -> dict[str, str]:
    return {str(k): str(v) for k, v in _loads(raw, key).items()}
