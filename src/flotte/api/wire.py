"""fleet's wire format: JSON encoding, entities, errors (spec: fleet.md §5.2).

Pure functions only, so the exact bytes fleet clients see can be unit-tested
without a server.  fleet's server marshalled its generated ``schema`` structs
with Go's ``encoding/json``; three of its habits are part of the contract:

* every field is ``omitempty``, so an empty page is ``{}`` and an
  unscheduled unit has no ``machineID`` key at all;
* fields come out in struct order, which for the generated structs is
  alphabetical (``currentState, desiredState, machineID, name, options``),
  and map keys are sorted;
* ``<``, ``>``, ``&``, U+2028 and U+2029 are escaped as ``\\u003c``… and
  other non-ASCII text is written as UTF-8.

:func:`go_json` reproduces all three; the entity builders drop empty fields.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from flotte.engine.keyspace import DesiredState, StateRecord, UnitRecord

JSON_TYPE = "application/json"

#: What fleet answered (and what fleetctl users grep for) when it could not
#: reach etcd; we keep the words and add the cause after them.
UNAVAILABLE_MESSAGE = "fleet server unable to communicate with etcd"

_GO_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026",
               "\u2028": "\\u2028", "\u2029": "\\u2029"}


class HttpError(Exception):
    """An error answer: raised by helpers and handlers, rendered by the app's middleware.

    Keeping the status with the message lets pure validation code decide
    between 400, 404 and 409 exactly where fleet did, without knowing about
    aiohttp.
    """

    def __init__(self, status: int, message: str = "",
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


def go_json(obj: Any) -> bytes:
    """Encode like Go's ``json.Marshal`` of fleet's schema structs (see module docs)."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    if any(c in text for c in _GO_ESCAPES):
        for raw, esc in _GO_ESCAPES.items():
            text = text.replace(raw, esc)
    return text.encode("utf-8")


def go_quote(s: str) -> str:
    """Go's ``%q`` for the strings fleet quoted in messages (close enough for names)."""
    return json.dumps(s, ensure_ascii=False)


def error_body(status: int, message: str) -> bytes:
    """``{"error":{"code":…,"message":…}}`` (fleet's ``errorResponse``; message kept if empty)."""
    return go_json({"error": {"code": status, "message": message}})


def omit_empty(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Drop ``""``, ``None``, empty lists and maps: Go's ``omitempty``."""
    return {k: v for k, v in fields.items() if v not in ("", None) and v != [] and v != {}}


def derive_current_state(scheduled: str | None, state: StateRecord | None) -> DesiredState:
    """A unit's ``currentState`` from the schedule and the published state (fleet.md §1.4).

    ``inactive`` unless the unit is scheduled and the machine it is
    scheduled to has published a state for it; then ``loaded``, or
    ``launched`` if that machine also says it started the unit (fleet's
    job-state heartbeat, our ``StateRecord.launched``).  A state published by
    another machine (the unit is moving) does not count.
    """
    if not scheduled or state is None or state.machine_id != scheduled:
        return "inactive"
    return "launched" if state.launched else "loaded"


def option_entities(options: Iterable[tuple[str, str, str]]) -> list[dict[str, str]]:
    """UnitOption objects: ``{"name","section","value"}``, each omitted when empty."""
    return [omit_empty({"name": n, "section": s, "value": v}) for s, n, v in options]


def unit_entity(record: UnitRecord, *, desired: str | None, current: str | None,
                machine_id: str | None) -> dict[str, Any]:
    """fleet's ``Unit``.  ``current``/``machine_id`` are ``None`` for global units."""
    return omit_empty({
        "currentState": current,
        "desiredState": desired,
        "machineID": machine_id,
        "name": record.name,
        "options": option_entities(record.options),
    })


def unit_state_entity(state: StateRecord) -> dict[str, Any]:
    """fleet's ``UnitState`` (systemd's three states, the unit hash, the machine)."""
    return omit_empty({
        "hash": state.hash,
        "machineID": state.machine_id,
        "name": state.name,
        "systemdActiveState": state.active_state,
        "systemdLoadState": state.load_state,
        "systemdSubState": state.sub_state,
    })


def machine_entity(machine_id: str, primary_ip: str, metadata: Mapping[str, str]
                   ) -> dict[str, Any]:
    """fleet's ``Machine``: ``id``, ``primaryIP``, ``metadata`` (string → string)."""
    return omit_empty({"id": machine_id, "metadata": dict(metadata), "primaryIP": primary_ip})


def page_entity(field: str, items: Sequence[Mapping[str, Any]], next_token: str | None
                ) -> dict[str, Any]:
    """A ``UnitPage``/``UnitStatePage``/``MachinePage``; ``{}`` when empty and last."""
    return omit_empty({field: list(items), "nextPageToken": next_token})


def check_content_type(values: Sequence[str]) -> None:
    """fleet's ``validateContentType``: exactly one header, media type ``application/json``.

    Raises :class:`HttpError` 415 with fleet's words.
    """
    if len(values) != 1:
        raise HttpError(415, f"expected 1 Content-Type, got {len(values)}")
    if values[0].split(";", 1)[0].strip().lower() != JSON_TYPE:
        raise HttpError(415, "only acceptable Content-Type is application/json")
