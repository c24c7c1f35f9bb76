"""Blocking verbs: wait until units reach a state, or say why they never will.

fleetctl polled ``GET /units/<name>`` until ``currentState`` matched and
hung forever when the engine could not place a unit (fleet.md §7.3: #559,
#1334, #1364, #1236).  Here one poll reads every unit at once, and a unit
that is not scheduled while the engine has published *reasons* for it
(``GET /v1/units/<name>/reasons``) stops the wait with those reasons, per
machine.  Reasons must be seen on two consecutive polls, so a reason the
engine is about to withdraw does not fail a start.

Decisions are pure functions (:func:`judge_state`, :func:`judge_active`,
:func:`judge_gone`) over what the API returned; :class:`Waiter` only polls
and prints.  ``attempts``: fleetctl's ``--block-attempts``: 0 waits
without a time limit, N gives up after N × 2 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from flotte.api.client import ApiError, Client, Machine, Unit, UnitState
from flotte.cli.console import Console
from flotte.cli.tables import machine_legend

#: Seconds between polls (fleetctl: 250 ms).
POLL_INTERVAL = 0.25
#: One ``--block-attempts`` attempt (fleetctl: 2 s of polling).
ATTEMPT_SECONDS = 2.0
#: Consecutive polls that must show placement reasons before the wait fails.
REASONS_SETTLE = 2
#: Every how many pending polls (of a placed unit) the agent's error is looked up.
ERROR_CHECK_EVERY = 4
#: At most this many reasons requests per poll (round-robin over unplaced units).
REASONS_PER_POLL = 16

GONE = "gone"  # target of destroy: the unit's published state has disappeared
_PLACED = ("loaded", "launched")
_BAD_LOAD = frozenset({"error", "not-found", "bad-setting", "masked"})


class Kind(enum.Enum):
    PENDING = "pending"
    REACHED = "reached"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Verdict:
    kind: Kind
    detail: str = ""
    reasons: Mapping[str, str] = field(default_factory=dict)


PENDING = Kind.PENDING
REACHED = Kind.REACHED
FAILED = Kind.FAILED


def judge_state(target: str, unit: Unit | None, reasons: Mapping[str, str] | None = None,
                streak: int = 0) -> Verdict:
    """Has ``unit`` reached the cluster state ``target`` (inactive/loaded/launched)?

    ``reasons`` are the engine's placement reasons last read, seen on
    ``streak`` consecutive polls.
    """
    if unit is None:
        return Verdict(FAILED, "it disappeared from the registry while waiting (destroyed "
                               "by another client?)")
    current = unit.current_state or "inactive"
    if current == target:
        return Verdict(REACHED)
    if unit.desired_state and unit.desired_state != target:
        return Verdict(FAILED, f"its desired state was changed to {unit.desired_state} by "
                               f"another client while waiting for {target}")
    if target in _PLACED and not unit.machine_id:
        if reasons and streak >= REASONS_SETTLE:
            return Verdict(FAILED, "it cannot be placed", dict(reasons))
        return Verdict(PENDING, "waiting to be scheduled")
    return Verdict(PENDING, f"{current}, waiting for {target}")


def judge_active(unit: Unit | None, states: Sequence[UnitState]) -> Verdict:
    """After ``launched``: has the service manager of the unit's machine made it ``active``?

    ``states`` are every machine's reports of the unit; during a move the
    old machine's report does not count.
    """
    if unit is None:
        return judge_state("launched", unit)
    state = next((s for s in states if s.machine_id == unit.machine_id), None)
    if state is None:
        return Verdict(PENDING, "waiting for its machine to report it")
    if state.load_state in _BAD_LOAD:
        return Verdict(FAILED, f"its machine could not load it (load state "
                               f"{state.load_state})")
    if state.active_state == "active":
        return Verdict(REACHED)
    if state.active_state == "failed":
        sub = f" ({state.sub_state})" if state.sub_state else ""
        return Verdict(FAILED, f"it failed to start{sub}")
    sub = f" ({state.sub_state})" if state.sub_state else ""
    return Verdict(PENDING, f"{state.active_state or 'unknown'}{sub}")


def judge_gone(states: Sequence[UnitState]) -> Verdict:
    """After destroy: have all machines stopped it and withdrawn their states?"""
    if not states:
        return Verdict(REACHED)
    state = states[0]
    more = f" (and {len(states) - 1} more machines)" if len(states) > 1 else ""
    return Verdict(PENDING, f"still {state.active_state or 'known'} on "
                            f"{state.machine_id[:8]}...{more}, stopping")


# -- messages ------------------------------------------------------------------------------


def legend_for(machine_id: str, machines: Mapping[str, Machine]) -> str:
    m = machines.get(machine_id)
    return machine_legend(machine_id, m.primary_ip if m else "")


def reached_message(name: str, state: str, machine_id: str,
                    machines: Mapping[str, Machine]) -> str:
    """``Unit hello.service launched on 113f16a7.../10.0.0.5`` (fleetctl's words)."""
    if machine_id and state != "inactive":
        return f"Unit {name} {state} on {legend_for(machine_id, machines)}"
    return f"Unit {name} {state}"


def reasons_lines(name: str, target: str, reasons: Mapping[str, str],
                  machines: Mapping[str, Machine]) -> list[str]:
    """Why ``name`` is not placed: cluster-wide reasons first, then one line per machine."""
    lines = [f"Unit {name} cannot be placed (desired state {target}):"]
    if "" in reasons:
        lines.append(f"  cluster: {reasons['']}")
    for mid in sorted(k for k in reasons if k):
        lines.append(f"  {legend_for(mid, machines)}: {reasons[mid]}")
    return lines


def timeout_message(name: str, target: str) -> str:
    what = "stop" if target == GONE else f"report state {target}"
    return f"Error waiting for units: timed out waiting for unit {name} to {what}"


# -- the waiter ------------------------------------------------------------------------------


@dataclass(slots=True)
class Tracker:
    """One unit being waited for."""

    name: str
    target: str  # inactive | loaded | launched | gone
    active: bool = False  # after launched, also wait for systemd's "active"
    phase: str = "state"  # "state", then "active"
    reasons: dict[str, str] = field(default_factory=dict)
    streak: int = 0
    reasons_checked: float = 0.0
    polls: int = 0  # pending polls since placed (errors are read now and then)
    detail: str = ""
    finished: bool = False
    #: Messages not printed yet, ``(on stderr, text)``: output follows argument order.
    lines: list[tuple[bool, str]] = field(default_factory=list)


def progress_text(trackers: Sequence[Tracker], elapsed: float) -> str:
    """The live line: ``[3s] waiting for web.service: waiting to be scheduled (+2 more)``."""
    if not trackers:
        return ""
    first = trackers[0]
    text = f"[{elapsed:.0f}s] waiting for {first.name}: {first.detail or 'checking'}"
    if len(trackers) > 1:
        text += f" (+{len(trackers) - 1} more)"
    return text


class Waiter:
    """Polls the API until every tracker is reached or failed; prints as fleetctl did."""

    def __init__(self, api: Client, console: Console, *, attempts: int = 0,
                 poll: float | None = None) -> None:
        self.api = api
        self.console = console
        self.attempts = attempts
        self.poll = POLL_INTERVAL if poll is None else poll
        self.machines: dict[str, Machine] = {}

    async def machine_map(self, needed: str = "") -> dict[str, Machine]:
        """Known machines, re-read when ``needed`` is not among them."""
        if not self.machines or (needed and needed not in self.machines):
            with contextlib.suppress(ApiError):
                self.machines = {m.id: m for m in await self.api.list_machines()}
        return self.machines

    async def wait(self, trackers: Sequence[Tracker]) -> bool:
        """True when all reached their targets; failures are printed on stderr.

        Messages come out in the order of ``trackers`` (the command line's), not
        in the order units happen to get there: a unit's lines are held back
        while a unit before it is still pending, so output is reproducible.
        """
        pending = list(trackers)
        ok = True
        start = time.monotonic()
        deadline = start + self.attempts * ATTEMPT_SECONDS if self.attempts > 0 else None
        while pending:
            units = {u.name: u for u in await self.api.list_units()}
            states: dict[str, list[UnitState]] = {}
            if any(t.phase == "active" or t.target == GONE or t.active for t in pending):
                for s in await self.api.list_unit_states():
                    states.setdefault(s.name, []).append(s)
            await self._read_reasons(pending, units)
            still: list[Tracker] = []
            for t in pending:
                done = await self._step(t, units.get(t.name), states.get(t.name, []))
                if done is None:
                    still.append(t)
                    continue
                t.finished = True
                ok &= done
            pending = still
            if pending and deadline is not None and time.monotonic() >= deadline:
                for t in pending:
                    t.lines.append((True, timeout_message(t.name, t.target)))
                    t.finished = True
                ok, pending = False, []
            self._flush(trackers)
            if not pending:
                break
            self.console.progress(progress_text(pending, time.monotonic() - start))
            await asyncio.sleep(self.poll)
        self.console.clear()
        return ok

    def _flush(self, trackers: Sequence[Tracker]) -> None:
        """Print held-back lines, in tracker order, up to the first unfinished tracker."""
        for t in trackers:
            for on_err, text in t.lines:
                if on_err:
                    self.console.err(text)
                else:
                    self.console.out(text)
            t.lines.clear()
            if not t.finished:
                return

    async def _step(self, t: Tracker, unit: Unit | None, states: Sequence[UnitState]
                    ) -> bool | None:
        """Advance one tracker: ``None`` still pending, True reached, False failed."""
        if t.target == GONE:
            verdict = judge_gone(states)
        elif t.phase == "active":
            verdict = judge_active(unit, states)
        else:
            verdict = judge_state(t.target, unit, t.reasons, t.streak)
            if verdict.kind is REACHED:
                assert unit is not None
                machines = await self.machine_map(unit.machine_id)
                t.lines.append((False, reached_message(t.name, unit.current_state or "inactive",
                                                       unit.machine_id, machines)))
                if not t.active:
                    return True
                t.phase = "active"
                verdict = judge_active(unit, states)
        if verdict.kind is PENDING and unit is not None and unit.machine_id \
                and t.target != GONE:
            t.polls += 1
            if t.polls % ERROR_CHECK_EVERY == 0:
                verdict = await self._machine_error(unit) or verdict
        t.detail = verdict.detail
        if verdict.kind is PENDING:
            return None
        if verdict.kind is REACHED:
            return True
        await self._report(t, unit, verdict)
        return False

    async def _machine_error(self, unit: Unit) -> Verdict | None:
        """The agent's reason for not loading or starting a placed unit, if it has one
        (a dependency it cannot find, a unit that does not load): waiting longer would
        be waiting forever."""
        try:
            st = await self.api.status(unit.name)
        except ApiError:
            return None
        state = st.state
        if state is None or not state.error or state.machine_id != unit.machine_id:
            return None
        return Verdict(FAILED, f"its machine cannot start it: {state.error}")

    async def _report(self, t: Tracker, unit: Unit | None, verdict: Verdict) -> None:
        if verdict.reasons:
            machines = await self.machine_map()
            t.lines += [(True, line) for line in
                        reasons_lines(t.name, t.target, verdict.reasons, machines)]
            return
        where = ""
        if unit is not None and unit.machine_id:
            machines = await self.machine_map(unit.machine_id)
            where = f" on {legend_for(unit.machine_id, machines)}"
        hint = f"; see `journal {t.name}`" if t.phase == "active" else ""
        t.lines.append((True, f"Error waiting for units: unit {t.name}{where}: "
                              f"{verdict.detail}{hint}"))

    async def _read_reasons(self, pending: Sequence[Tracker], units: Mapping[str, Unit]
                            ) -> None:
        """Refresh placement reasons of unscheduled units (a bounded number per poll)."""
        candidates = []
        for t in pending:
            unit = units.get(t.name)
            if (t.phase == "state" and t.target in _PLACED and unit is not None
                    and not unit.machine_id):
                candidates.append(t)
            else:
                t.reasons, t.streak = {}, 0
        candidates.sort(key=lambda t: t.reasons_checked)
        for t in candidates[:REASONS_PER_POLL]:
            t.reasons_checked = time.monotonic()
            try:
                found = (await self.api.reasons(t.name)).reasons
            except ApiError:
                found = {}
            t.streak = t.streak + 1 if found else 0
            t.reasons = found


__all__ = [
    "ATTEMPT_SECONDS", "FAILED", "GONE", "PENDING", "POLL_INTERVAL", "REACHED", "Kind",
    "Tracker", "Verdict", "Waiter", "judge_active", "judge_gone", "judge_state",
    "progress_text", "reached_message", "reasons_lines", "timeout_message",
]
