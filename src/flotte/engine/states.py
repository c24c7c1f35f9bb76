"""Unit states: fleet's command → desired-state table and its derived current state.

Two different things are called "state" in fleet (fleet.md §1.4, §2):

* the **desired state** (``DSTATE``), written by users: ``inactive``,
  ``loaded`` or ``launched``, changed by the fleetctl verbs in
  :data:`COMMANDS` (``Documentation/states.md``);
* the **current state** (``STATE``), never stored: the API derives it from
  the schedule and what the target machine reports
  (:func:`current_state`).

Both are pure functions here so the API, the CLI and the engine agree on
them, and so the table is tested once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from flotte.engine.keyspace import DESIRED_STATES, DesiredState, StateRecord

__all__ = [
    "COMMANDS",
    "Command",
    "CommandRule",
    "command_allowed",
    "current_state",
    "transition_allowed",
    "transition_path",
]

Command = Literal["submit", "load", "start", "stop", "unload", "destroy"]

#: ``None`` stands for "the unit does not exist" (before submit, after destroy).
State = DesiredState | None


@dataclass(frozen=True, slots=True)
class CommandRule:
    """One row of fleet's table: what a verb sets and from which states it is valid."""

    command: Command
    target: State
    valid_from: frozenset[State]
    alias_for: tuple[Command, ...] = ()


COMMANDS: Mapping[Command, CommandRule] = {
    "submit": CommandRule("submit", "inactive", frozenset({None})),
    "load": CommandRule("load", "loaded", frozenset({None, "inactive"}), ("submit", "load")),
    "start": CommandRule("start", "launched", frozenset({None, "inactive", "loaded"}),
                         ("submit", "load", "start")),
    "stop": CommandRule("stop", "loaded", frozenset({"launched"})),
    "unload": CommandRule("unload", "inactive", frozenset({"launched", "loaded"}),
                          ("stop", "unload")),
    "destroy": CommandRule("destroy", None, frozenset({None, *DESIRED_STATES}),
                           ("stop", "unload", "destroy")),
}

_RANK: dict[DesiredState, int] = {"inactive": 0, "loaded": 1, "launched": 2}


def command_allowed(command: Command, current: State) -> bool:
    """Is ``command`` valid when the unit's desired state is ``current``?  (states.md)

    fleetctl is more lenient than the table in practice, and on a different
    state: ``stop`` refuses a unit whose *current* state is ``inactive`` and
    skips one already ``loaded``; ``unload`` skips one already ``inactive``
    (fleet.md §2.2).  Callers wanting fleetctl's behaviour apply those on
    top; this function is the documented table.
    """
    return current in COMMANDS[command].valid_from


def transition_allowed(current: State, target: State) -> bool:
    """May the desired state go from ``current`` to ``target``?

    True when some verb of the table does it, or when nothing changes
    (setting the same state again is a no-op, which fleet's API accepted).
    Destroying a unit that does not exist is not a transition.
    """
    if current == target:
        return current is not None
    return any(rule.target == target and current in rule.valid_from
               for rule in COMMANDS.values())


def transition_path(current: State, target: State) -> tuple[State, ...]:
    """The states a unit passes through, neighbour to neighbour (excluding ``current``).

    fleet's units move only between neighbouring states: ``inactive`` →
    ``launched`` passes through ``loaded``, and a destroy of a launched unit
    is stop, unload, then removal (``None``).  The agent follows this order
    (stop before unload, load before start).
    """
    if not transition_allowed(current, target) or current == target:
        return ()
    path: list[State] = []
    here: DesiredState
    if current is None:
        path.append("inactive")
        here = "inactive"
    else:
        here = current
    goal: DesiredState = "inactive" if target is None else target
    step = 1 if _RANK[goal] > _RANK[here] else -1
    for rank in range(_RANK[here] + step, _RANK[goal] + step, step):
        path.append(DESIRED_STATES[rank])
    if target is None:
        path.append(None)
    return tuple(path)


def current_state(target_machine: str | None, state: StateRecord | None, *,
                  global_unit: bool = False) -> DesiredState | None:
    """fleet's derived ``currentState`` (fleet.md §1.4).

    * ``None`` for a global unit (fleet's API never gives one a
      ``currentState`` or a ``machineID``);
    * ``inactive`` when the unit has no target machine, or the target has
      not reported a state for it (a state from another machine, say the
      old one during a move, does not count);
    * ``loaded`` when the target machine reported it;
    * ``launched`` when, in addition, the target machine says it started the
      unit (fleet's ``job-state`` heartbeat; ``StateRecord.launched`` here).
    """
    if global_unit:
        return None
    if target_machine is None or state is None or state.machine_id != target_machine:
        return "inactive"
    return "launched" if state.launched else "loaded"
