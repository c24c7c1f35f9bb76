"""fleet's placement rules for one unit on one machine (``AbleToRun``).

This module is the readable statement of the rules, straight over a
:class:`~flotte.engine.model.ClusterView`: the agent calls it (which global
units run here?), ``flotte status`` calls it (why is this unit not here?),
and the tests use it as the oracle for the indexed scheduler in
``scheduler.py``, which must reach the same :class:`Decision` on every
(machine, unit) pair.  Both share the reason sentences below so their
wording cannot drift.

fleet's order (``agent/state.go`` ``AbleToRun``), first failure wins:

1. ``MachineID=``: the machine's ID or its 8-character short ID (fleet's
   ``MatchID``; the docs claim only the full ID works);
2. ``MachineMetadata=``: OR within a key, AND across keys, exact string
   equality against the merged metadata;
3. ``MachineOf=``: every peer must be a resident of the machine;
4. ``Conflicts=``: no resident matches one of the unit's globs and no
   resident's globs match the unit, the unit's own name skipped;
5. ``Replaces=``: a one-way relation with a resident gives ``RESCHEDULE``
   (a two-way one, "circular", is ignored, as fleet did).

Deliberate differences, all about determinism or clearer answers: when
several residents conflict, the reason names the first by name (fleet
named whichever its map iteration met first); a global unit is never
moved by ``Replaces=`` and a global's own ``Replaces=`` is ignored
(fleet's API rejects ``Global`` with ``Replaces`` anyway).
"""

from __future__ import annotations

from collections.abc import Iterable

from flotte.engine.glob import glob_match
from flotte.engine.model import Action, ClusterView, Decision, Machine, Unit, short_id

__all__ = [
    "able_to_run",
    "global_units_for",
    "replaces",
    "residents",
    "units_for",
    "why_conflict",
    "why_displaces",
    "why_machine_id",
    "why_metadata",
    "why_peer",
    "why_replaced",
]


# ---------------------------------------------------------------- reason sentences

def why_machine_id(want: str, machine_id: str) -> str:
    return f"MachineID={want} is not this machine ({short_id(machine_id)})"


def why_metadata(key: str, values: Iterable[str], machine: Machine) -> str:
    want = " or ".join(f"{key}={v}" for v in values)
    have = machine.metadata.get(key)
    tail = f"it has {key}={have}" if have is not None else f"it has no {key}"
    return f"metadata {want} not on {machine.short_id} ({tail})"


def why_peer(peer: str, machine_id: str, *, unit_name: str, exists: bool, where: str | None,
             is_global: bool) -> str:
    """``MachineOf`` refusal, saying where the peer is so the operator knows what to fix."""
    if peer == unit_name:
        tail = "a unit cannot be its own MachineOf peer"
    elif not exists:
        tail = "no such unit"
    elif is_global:
        tail = "it is a global unit that does not run there"
    elif where is not None:
        tail = f"it is on {short_id(where)}"
    else:
        tail = "it is not scheduled anywhere"
    return f"MachineOf peer {peer} is not scheduled on {short_id(machine_id)} ({tail})"


def why_conflict(other: str, machine_id: str) -> str:
    return f"conflicts with {other} on {short_id(machine_id)}"


def why_replaced(other: str, machine_id: str) -> str:
    return f"replaced by {other} on {short_id(machine_id)}"


def why_displaces(others: Iterable[str], machine_id: str) -> str:
    return f"replaces {', '.join(others)} on {short_id(machine_id)}"


# ---------------------------------------------------------------- the rules

def replaces(unit: Unit, name: str) -> bool:
    """Does ``unit``'s ``Replaces=`` match ``name``?  (Never for global units.)"""
    return not unit.is_global and any(glob_match(p, name) for p in unit.xfleet.replaces)


def _conflicts(a: Unit, b_name: str) -> bool:
    return any(glob_match(p, b_name) for p in a.xfleet.conflicts)


def _evaluate(machine: Machine, unit: Unit, view: ClusterView, others: frozenset[str]
              ) -> Decision:
    """fleet's ``AbleToRun`` against the residents ``others`` (the unit itself excluded)."""
    mid = machine.id
    want = unit.required_machine
    if want is not None and want != mid and want != machine.short_id:
        return Decision(Action.REFUSE, why_machine_id(want, mid), "MachineID")
    for key, values in unit.xfleet.metadata.items():
        if machine.metadata.get(key) not in values:
            return Decision(Action.REFUSE, why_metadata(key, values, machine), "MachineMetadata")
    for peer in unit.xfleet.machine_of:
        if peer not in others or peer == unit.name:
            pu = view.units.get(peer)
            reason = why_peer(peer, mid, unit_name=unit.name, exists=pu is not None,
                              where=view.placed_target(peer),
                              is_global=pu is not None and pu.is_global)
            return Decision(Action.REFUSE, reason, "MachineOf", peer)
    clash = sorted(e for e in others
                   if _conflicts(unit, e) or _conflicts(view.units[e], unit.name))
    if clash:
        return Decision(Action.REFUSE, why_conflict(clash[0], mid), "Conflicts", clash[0])
    if unit.is_global:
        return Decision(Action.RUN)
    replaced_by: list[str] = []
    victims: list[str] = []
    for e in sorted(others):
        other = view.units[e]
        forward = replaces(unit, e) and not other.is_global
        backward = replaces(other, unit.name)
        if forward and backward:
            continue  # circular: fleet ignores the pair here
        if backward:
            replaced_by.append(e)
        elif forward:
            victims.append(e)
    if replaced_by:
        return Decision(Action.RESCHEDULE, why_replaced(replaced_by[0], mid), "Replaces",
                        replaced_by[0], replaced_by=replaced_by[0])
    if victims:
        return Decision(Action.RESCHEDULE, why_displaces(victims, mid), "Replaces", victims[0],
                        displaces=tuple(victims))
    return Decision(Action.RUN)


def _machine(machine: Machine | str, view: ClusterView) -> Machine:
    if isinstance(machine, Machine):
        return machine
    try:
        return view.machines[machine]
    except KeyError:
        raise KeyError(f"machine {machine} is not in the cluster view") from None


def global_units_for(machine: Machine | str, view: ClusterView) -> list[str]:
    """The global units that run on ``machine``, by name.

    fleet's agent ran every global unit whose ``MachineMetadata`` matches
    and that does not conflict with what is already there, taking units in
    name order, so among mutually conflicting global units the first by
    name wins (``TestScheduleGlobalConflicts``).  Scheduled units are taken
    first: a global unit does not land where a conflicting unit already
    runs, and the scheduler keeps conflicting units off machines that run
    the global unit, so neither ever evicts the other.  Global units whose
    desired state is ``inactive`` run nowhere.
    """
    m = _machine(machine, view)
    key = "globals:" + m.id
    cached = view._cache.get(key)
    if isinstance(cached, list):
        return list(cached)
    present = set(view.placed_on(m.id))
    accepted: list[str] = []
    for g in view.global_units():
        if _evaluate(m, g, view, frozenset(present)).action is not Action.REFUSE:
            accepted.append(g.name)
            present.add(g.name)
    view._cache[key] = accepted
    return list(accepted)


def residents(machine: Machine | str, view: ClusterView) -> frozenset[str]:
    """Every unit that counts as being on ``machine``: scheduled there, or global there."""
    m = _machine(machine, view)
    return view.placed_on(m.id) | frozenset(global_units_for(m, view))


def units_for(machine: Machine | str, view: ClusterView) -> list[str]:
    """What the agent on ``machine`` should have loaded: its residents, by name."""
    return sorted(residents(machine, view))


def able_to_run(machine: Machine | str, unit: Unit, view: ClusterView) -> Decision:
    """May ``unit`` run on ``machine``, given everything else in ``view``?

    The unit's own entry (if it is scheduled or global there) is ignored,
    so the same question answers "may it stay?" for a scheduled unit and
    "may it go there?" for a pending one.  A global unit is checked
    against the scheduled units and the global units before it by name,
    which is exactly how :func:`global_units_for` admits it.
    """
    m = _machine(machine, view)
    if unit.is_global:
        others = view.placed_on(m.id) | frozenset(
            g for g in global_units_for(m, view) if g < unit.name)
    else:
        others = residents(m, view)
    return _evaluate(m, unit, view, others - {unit.name})
