"""``status UNIT``: a ``systemctl status``-style page from what the API knows (pure).

fleetctl ran ``systemctl status -l`` over SSH on the unit's machine.  flotte
needs no SSH: the API's ``/v1/units/<name>/status`` gives the state the
machine published (load/active/sub state, result, main PID, since when),
``/v1/units/<name>/reasons`` why an unplaced unit is not running, and
``/v1/units/<name>/journal`` its last lines.  The layout is systemctl's::

    ● hello.service - Hello World
         Loaded: loaded (hash e55c0ae; desired launched, current launched)
         Active: active (running) since Tue 2023-11-14 22:13:20 UTC; 3h 2min ago
       Main PID: 42
        Machine: 113f16a7.../10.0.0.5 (core-01)

    <journal lines>
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo

from flotte.api.client import Machine, Unit, UnitStatus
from flotte.cli.tables import machine_legend
from flotte.cli.unitargs import instance_example, is_template
from flotte.unit.errors import UnitFileError
from flotte.unit.loader import load_text
from flotte.unit.serialize import serialize
from flotte.unit.xfleet import SECTION as XFLEET

_LABEL = 11
_INDENT = " " * (_LABEL + 2)
#: Dependency settings shown, in systemctl show's order.
DEPENDENCIES = ("Requires", "Requisite", "Wants", "BindsTo", "PartOf", "Conflicts", "Before",
                "After")

# systemd's time units (time-util.h), in seconds.
_MINUTE = 60
_HOUR = 3600
_DAY = 86400
_WEEK = 7 * _DAY
_MONTH = 2629800
_YEAR = 31557600


@dataclass(frozen=True, slots=True)
class StatusView:
    """Everything ``status`` shows for one unit."""

    status: UnitStatus
    unit: Unit | None = None
    reasons: Mapping[str, str] = field(default_factory=dict)
    machines: Mapping[str, Machine] = field(default_factory=dict)
    journal: Sequence[str] = ()
    journal_error: str | None = None


def _plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def format_ago(seconds: float) -> str:
    """systemd's ``format_timestamp_relative``: ``3h 2min ago``, ``1 day 2h ago``…"""
    d = int(seconds * 1_000_000)
    if d <= 0:
        return "now"
    s = d // 1_000_000
    if s >= _YEAR:
        return f"{_plural(s // _YEAR, 'year', 'years')} " \
               f"{_plural(s % _YEAR // _MONTH, 'month', 'months')} ago"
    if s >= _MONTH:
        return f"{_plural(s // _MONTH, 'month', 'months')} " \
               f"{_plural(s % _MONTH // _DAY, 'day', 'days')} ago"
    if s >= _WEEK:
        return f"{_plural(s // _WEEK, 'week', 'weeks')} " \
               f"{_plural(s % _WEEK // _DAY, 'day', 'days')} ago"
    if s >= 2 * _DAY:
        return f"{s // _DAY} days ago"
    if s >= 25 * _HOUR:
        return f"1 day {(s - _DAY) // _HOUR}h ago"
    if s >= 6 * _HOUR:
        return f"{s // _HOUR}h ago"
    if s >= _HOUR:
        return f"{s // _HOUR}h {s % _HOUR // _MINUTE}min ago"
    if s >= 5 * _MINUTE:
        return f"{s // _MINUTE}min ago"
    if s >= _MINUTE:
        return f"{s // _MINUTE}min {s % _MINUTE}s ago"
    if s >= 1:
        return f"{s}s ago"
    if d >= 1000:
        return f"{d // 1000}ms ago"
    return f"{d}us ago"


def format_timestamp(ts: float, tz: tzinfo | None = None) -> str:
    """``Tue 2023-11-14 22:13:20 UTC`` (local time unless ``tz``)."""
    when = datetime.fromtimestamp(ts, tz) if tz is not None else \
        datetime.fromtimestamp(ts).astimezone()
    return when.strftime("%a %Y-%m-%d %H:%M:%S %Z")


def _bytes(n: int) -> str:
    """systemctl's memory format: 1023B, 4.0K, 12.5M, 1.2G (base 1024)."""
    size = float(n)
    for unit in ("B", "K", "M", "G", "T"):
        if size < 1024 or unit == "T":
            return f"{int(size)}{unit}" if unit == "B" else f"{size:.1f}{unit}"
        size /= 1024
    return f"{n}B"  # pragma: no cover


def _field(label: str, value: str) -> list[str]:
    first, *rest = value.split("\n")
    return [f"{label:>{_LABEL}}: {first}"] + [_INDENT + line for line in rest]


def _description_and_deps(unit: Unit) -> tuple[str, dict[str, list[str]]]:
    try:
        text = serialize(unit.options, "go-systemd")
    except UnitFileError:
        return "", {}
    loaded = load_text(text, unit.name, dialect="go-systemd")
    deps: dict[str, list[str]] = {}
    if not loaded.ok:
        return "", deps
    for key in DEPENDENCIES:
        try:
            value = loaded.value("Unit", key)
        except KeyError:
            continue
        if value:
            deps[key] = [str(v) for v in value]
    description = loaded.description
    return ("" if description == unit.name else description), deps


def _legend(machine_id: str, machines: Mapping[str, Machine]) -> str:
    m = machines.get(machine_id)
    return machine_legend(machine_id, m.primary_ip if m else "")


def render_status(view: StatusView, *, now: float, tz: tzinfo | None = None) -> str:
    """The status page (ends with a newline)."""
    st = view.status
    state = st.state
    name = st.name
    description, deps = _description_and_deps(view.unit) if view.unit else ("", {})
    active = state.active_state if state else "inactive"
    dot = "●" if active == "active" else "×" if active == "failed" else "○"
    lines = [f"{dot} {name}" + (f" - {description}" if description else "")]

    unit_hash = st.hash[:7] if st.hash else "-"
    if view.unit is None:
        lines += _field("Loaded", "destroyed (its machine is stopping it)")
    elif is_template(name):
        lines += _field("Loaded", f"template (hash {unit_hash}; start an instance such as "
                                  f"{instance_example(name)})")
    else:
        load = state.load_state if state and state.load_state else "not loaded"
        current = "" if st.global_ or not st.current_state else \
            f", current {st.current_state}"
        lines += _field("Loaded", f"{load} (hash {unit_hash}; desired "
                                  f"{st.desired_state or '-'}{current})")

    if state is not None:
        sub = f"(Result: {state.result})" if active == "failed" and state.result \
            and state.result != "success" else f"({state.sub_state or 'unknown'})"
        text = f"{active} {sub}"
        if state.since > 0:
            text += f" since {format_timestamp(state.since, tz)}; " \
                    f"{format_ago(now - state.since)}"
        lines += _field("Active", text)
        if state.main_pid > 0:
            lines += _field("Main PID", str(state.main_pid))
        if state.tasks > 0:
            lines += _field("Tasks", str(state.tasks))
        if state.memory > 0:
            lines += _field("Memory", _bytes(state.memory))
    elif view.reasons:
        lines += _field("Active", "inactive (not placed)")
    else:
        lines += _field("Active", "inactive (dead)")

    machine_id = st.machine_id or (state.machine_id if state else "")
    if st.global_:
        lines += _field("Machine", "global (every machine that may run it)")
    elif machine_id:
        legend = _legend(machine_id, view.machines)
        host = st.machine.hostname if st.machine and st.machine.hostname else ""
        lines += _field("Machine", legend + (f" ({host})" if host else ""))

    if view.reasons:
        why = ["cannot be placed:"]
        if "" in view.reasons:
            why.append(f"cluster: {view.reasons['']}")
        why += [f"{_legend(mid, view.machines)}: {view.reasons[mid]}"
                for mid in sorted(k for k in view.reasons if k)]
        lines += _field("Why", "\n".join(why))

    for key, values in deps.items():
        lines += _field(key, " ".join(values))
    if view.unit is not None:
        xfleet = [f"{o.name}={o.value}" for o in view.unit.options if o.section == XFLEET]
        if xfleet:
            lines += _field("X-Fleet", "\n".join(xfleet))
    if view.journal_error:
        lines += _field("Journal", view.journal_error)
    if view.journal:
        lines.append("")
        lines += list(view.journal)
    return "\n".join(lines) + "\n"


__all__ = ["DEPENDENCIES", "StatusView", "format_ago", "format_timestamp", "render_status"]
