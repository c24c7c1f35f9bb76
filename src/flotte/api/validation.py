"""Checking what clients send: unit PUT bodies, unit options, metadata PATCHes.

Pure functions raising :class:`~flotte.api.wire.HttpError`, so handlers stay
thin and every rule is tested without a server.

Where fleet was lax we are not (fleet.md §2.3, §9): a ``desiredState``
outside ``inactive|loaded|launched`` is a 400 on create *and* update (fleet
stored it and then could not read the unit back), a template cannot be
created or set ``loaded``/``launched``, and options go through our unit
loader, so a unit systemd would refuse to start is refused at submit time
with file:line messages instead of failing later on some machine.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flotte.api.wire import HttpError, go_quote
from flotte.engine.keyspace import DESIRED_STATES, DesiredState, UnitRecord
from flotte.registry.types import MAX_TXN_OPS
from flotte.unit import names
from flotte.unit.errors import Severity, UnitFileError
from flotte.unit.loader import LOADED, load_text
from flotte.unit.parser import Option, parse
from flotte.unit.serialize import unit_hash
from flotte.unit.xfleet import SECTION as XFLEET
from flotte.unit.xfleet import parse_x_fleet

#: fleet's ``metadataPathRegex``: ``/<machine id>/metadata/<key>``.
METADATA_PATH = re.compile(r"^/([^/]+)/metadata/([A-Za-z0-9_.-]+)$")


def _json_value(raw: bytes, what: str) -> Any:
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        detail = "empty body" if not raw.strip() else str(exc)
        raise HttpError(400, f"unable to decode body: {detail}; send {what}") from None


def json_field(obj: Mapping[str, Any], name: str) -> Any:
    """Go's ``encoding/json`` field lookup: exact key first, then case-insensitively."""
    if name in obj:
        return obj[name]
    folded = name.casefold()
    for key, value in obj.items():
        if key.casefold() == folded:
            return value
    return None


def _string(value: Any, where: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise HttpError(400, f"unable to decode body: {where} must be a string, not "
                             f"{type(value).__name__.replace('NoneType', 'null')}")
    return value


@dataclass(frozen=True, slots=True)
class UnitBody:
    """A decoded ``PUT /units/<name>`` body; ``options`` is ``()`` when absent or empty."""

    name: str
    desired_state: DesiredState | None
    options: tuple[tuple[str, str, str], ...]


def check_desired_state(value: str) -> DesiredState:
    """``value`` as a desired state, or 400 (fleet accepted anything here)."""
    for state in DESIRED_STATES:
        if value == state:
            return state
    raise HttpError(400, f"invalid desiredState {go_quote(value)}: use one of "
                         f"{', '.join(DESIRED_STATES)}")


def parse_unit_body(raw: bytes, url_name: str) -> UnitBody:
    """fleet's PUT decoding: name from the URL if empty, must match it, must be valid.

    Also checks ``desiredState`` (400 if set and not a known state) and the
    shape of ``options``.
    """
    obj = _json_value(raw, 'a Unit object such as {"desiredState":"launched","options":[…]}')
    if not isinstance(obj, dict):
        raise HttpError(400, "unable to decode body: expected a JSON object (a Unit), not "
                             f"{_json_kind(obj)}")
    name = _string(json_field(obj, "name"), "name") or url_name
    if name != url_name:
        raise HttpError(400, f"name in URL {go_quote(url_name)} differs from unit name in "
                             f"request body {go_quote(name)}")
    check_unit_name(name)
    desired_raw = _string(json_field(obj, "desiredState"), "desiredState")
    desired = check_desired_state(desired_raw) if desired_raw else None
    return UnitBody(name, desired, _parse_options(json_field(obj, "options")))


def check_unit_name(name: str) -> None:
    """fleet's API name rules (fleet.md §2.5); 400 with fleet's words and a fix."""
    try:
        names.fleet_api_check(name)
    except names.InvalidUnitName as exc:
        raise HttpError(400, exc.message) from None


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}.get(
        type(value), "a number")


def _parse_options(value: Any) -> tuple[tuple[str, str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise HttpError(400, f"unable to decode body: options must be an array of "
                             f'{{"section","name","value"}} objects, not {_json_kind(value)}')
    out: list[tuple[str, str, str]] = []
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise HttpError(400, f"unable to decode body: options[{i}] must be an object "
                                 f'{{"section","name","value"}}, not {_json_kind(item)}')
        section = _string(json_field(item, "section"), f"options[{i}].section")
        key = _string(json_field(item, "name"), f"options[{i}].name")
        val = _string(json_field(item, "value"), f"options[{i}].value")
        if not section or not key:
            raise HttpError(400, f"options[{i}] ({section or '?'}/{key or '?'}={val}) needs "
                                 "both a section and a name, e.g. "
                                 '{"section":"Service","name":"ExecStart","value":"/bin/true"}')
        out.append((section, key, val))
    return tuple(out)


def is_template(name: str) -> bool:
    """``foo@.service``: an ``@`` with nothing between it and the type suffix.

    Decided on the text (not :func:`names.split`) because fleet's API accepts
    names systemd does not know, such as ``foo@.busname``.
    """
    stem = name.rsplit(".", 1)[0]
    return "@" in stem and stem.split("@", 1)[1] == ""


def check_activatable(name: str, desired: DesiredState) -> None:
    """A template can only be stored (``inactive``): there is nothing to run (fleet #1236)."""
    if desired != "inactive" and is_template(name):
        raise HttpError(400, f"cannot activate template {go_quote(name)}; start an instance "
                             f"such as {go_quote(name.replace('@.', '@1.', 1))} instead")


def options_hash(options: tuple[tuple[str, str, str], ...]) -> str | None:
    """fleet's unit hash of ``options``, or ``None`` if they cannot be serialized.

    Lets a PUT that re-sends a stored unit's options be recognised as
    unchanged without validating them again.
    """
    try:
        return unit_hash(options)
    except UnitFileError:
        return None


def validate_unit(name: str, options: tuple[tuple[str, str, str], ...]) -> UnitRecord:
    """The :class:`UnitRecord` for ``options``, or 400 listing every error.

    The options must serialize (fleet's round-trip check) and load with our
    unit loader without errors.  Warnings (unknown keys, an ignored
    ``[X-Fleet]`` requirement) do not block a submit, as in fleet; they are
    for ``flotte verify``.  Messages read ``NAME:LINE: [Section] Key=value:
    what — fix: how``, LINE being the line in the unit file as fleet stores it.
    """
    try:
        record = UnitRecord.make(name, options)
        text = record.text()
    except UnitFileError as exc:
        raise HttpError(400, f"{name}: {exc.message}") from None
    unit = load_text(text, name, dialect="go-systemd", path=name)
    if unit.load_state == LOADED:
        return record
    where = {opt.line: opt for opt in parse(text, "go-systemd").options}
    problems: list[str] = []
    for d in unit.diagnostics:
        if d.severity is not Severity.ERROR:
            continue
        loc = name if d.line is None else f"{name}:{d.line}"
        opt = where.get(d.line) if d.line is not None else None
        if opt is not None:
            loc += f": [{opt.section}] {opt.key}={_short(opt.value)}"
        problems.append(f"{loc}: {d.message}" + (f" — fix: {d.fix}" if d.fix else ""))
    if not problems:
        problems.append(f"{name}: unit cannot be loaded (load state {unit.load_state})")
    raise HttpError(400, "invalid unit: " + "; ".join(problems))


def _short(value: str, limit: int = 60) -> str:
    return value if len(value) <= limit else value[:limit] + "…"


@functools.lru_cache(maxsize=4096)
def _global(name: str, xfleet: tuple[tuple[str, str], ...]) -> bool:
    opts = [Option(XFLEET, k, v, 0) for k, v in xfleet]
    return parse_x_fleet(opts, name)[0].global_


def is_global(record: UnitRecord) -> bool:
    """``[X-Fleet] Global=true``: such units never get a machineID or currentState."""
    xfleet = tuple((n, v) for s, n, v in record.options if s == XFLEET)
    return bool(xfleet) and _global(record.name, xfleet)


@dataclass(frozen=True, slots=True)
class MetadataOp:
    """One metadata change: ``value`` ``""`` for ``remove`` (it masks config metadata)."""

    machine_id: str
    key: str
    value: str


def parse_metadata_patch(raw: bytes) -> list[MetadataOp]:
    """``PATCH /machines`` body → validated ops, all checked before any is applied.

    Both shapes are accepted (fleet.md §5.4): the documented
    ``"value":"bar"`` and the ``"value":{"value":"bar"}`` fleet's code
    required.  Later ops on the same key win, so the list can be applied as
    one transaction.
    """
    obj = _json_value(raw, '[{"op":"add","path":"/<machine id>/metadata/<key>",'
                           '"value":"<value>"}]')
    if not isinstance(obj, list):
        raise HttpError(400, "unable to decode body: expected a JSON array of "
                             f'{{"op","path","value"}} operations, not {_json_kind(obj)}')
    merged: dict[tuple[str, str], str] = {}
    for i, item in enumerate(obj):
        if not isinstance(item, dict):
            raise HttpError(400, f"unable to decode body: operation {i} must be an object "
                                 f'{{"op","path","value"}}, not {_json_kind(item)}')
        op = _string(json_field(item, "op"), f"operation {i}: op")
        path = _string(json_field(item, "path"), f"operation {i}: path")
        value = _patch_value(json_field(item, "value"), i)
        if op not in ("add", "remove", "replace"):
            raise HttpError(400, "invalid op: expect add, remove, or replace")
        m = METADATA_PATH.match(path)
        if m is None:
            raise HttpError(400, f"machine metadata path invalid: {go_quote(path)}; write "
                                 "/<machine id>/metadata/<key>, the key using A-Z a-z 0-9 _ . -")
        if op != "remove" and not value:
            raise HttpError(400, "invalid value: add and replace require a value")
        merged[(m.group(1), m.group(2))] = "" if op == "remove" else value
    if len(merged) > MAX_TXN_OPS:
        raise HttpError(400, f"too many metadata changes ({len(merged)}) in one PATCH; send at "
                             f"most {MAX_TXN_OPS}")
    return [MetadataOp(mid, key, value) for (mid, key), value in merged.items()]


def _patch_value(value: Any, index: int) -> str:
    if isinstance(value, dict):
        value = json_field(value, "value")
    return _string(value, f"operation {index}: value")
