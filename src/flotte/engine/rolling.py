"""Rolling restarts: which copies of an updated unit may restart now.

fleet had no rolling update: replacing a global unit's file restarted it
everywhere at once (issue #960), and instances of a template had to be
cycled by hand (issue #760, the most +1'd request).  The agent uses
:func:`rolling_step` to restart copies a few at a time: for a global unit
the members are the machines running it, for a template the members are
its instances (``apache@8080.service`` ...).

The rule is Kubernetes' ``maxUnavailable``: at most ``max_unavailable``
members may be down at once, counting those already down for any reason.
Members already down are restarted first and for free (restarting a
stopped copy cannot make availability worse), so a broken rollout that
leaves copies failing does not block fixing them with another update.
Choice among healthy outdated members is by key, so every agent computing
the step from the same registry snapshot reaches the same answer and only
the chosen machines act.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from flotte.engine.keyspace import StateRecord

__all__ = [
    "Member",
    "RolloutStep",
    "max_unavailable_count",
    "members_from_states",
    "rolling_step",
]


@dataclass(frozen=True, slots=True)
class Member:
    """One running copy: a machine for a global unit, an instance for a template."""

    key: str          # machine id (global unit) or instance unit name (template)
    hash: str         # the unit hash it runs ("" if it is not running)
    healthy: bool     # active and running (a copy restarting or failed is not)


@dataclass(frozen=True, slots=True)
class RolloutStep:
    """What to do now; re-evaluate whenever a member's state changes."""

    restart: tuple[str, ...]   # restart these now
    waiting: tuple[str, ...]   # outdated, waiting for budget
    updated: tuple[str, ...]   # already run the target hash and are healthy
    unavailable: int           # members down right now
    budget: int                # how many more may go down now

    @property
    def done(self) -> bool:
        return not self.restart and not self.waiting


def max_unavailable_count(setting: int | str, total: int) -> int:
    """Resolve ``max_unavailable`` (``2`` or ``"25%"``) against ``total`` members.

    A percentage rounds down, but never below 1 while there are members:
    a rollout that may never take anything down would never progress.
    """
    if isinstance(setting, str):
        text = setting.strip()
        if text.endswith("%"):
            try:
                pct = float(text[:-1])
            except ValueError:
                raise ValueError(f"max-unavailable {setting!r} is not a number or a "
                                 "percentage (for example 1 or 25%)") from None
            if not 0 <= pct <= 100:
                raise ValueError(f"max-unavailable {setting!r} must be between 0% and 100%")
            n = math.floor(total * pct / 100)
        else:
            try:
                n = int(text)
            except ValueError:
                raise ValueError(f"max-unavailable {setting!r} is not a number or a "
                                 "percentage (for example 1 or 25%)") from None
    else:
        n = setting
    if n < 0:
        raise ValueError(f"max-unavailable {setting!r} must not be negative")
    return max(n, 1) if total else 0


def members_from_states(states: Iterable[StateRecord], *, per_machine: bool) -> list[Member]:
    """The copies of a rollout as the machines publish them.

    ``per_machine``: the copies of one global unit, keyed by machine; else the
    instances of one template, keyed by unit name.  A copy is healthy when it
    is active and running (or exited, for a oneshot that remains).
    """
    members: dict[str, Member] = {}
    for st in states:
        key = st.machine_id if per_machine else st.name
        healthy = st.active_state == "active" and st.sub_state in ("running", "exited")
        members[key] = Member(key, st.hash, healthy)
    return list(members.values())


def rolling_step(members: Iterable[Member], target_hash: str,
                 max_unavailable: int | str = 1) -> RolloutStep:
    """Which members may restart into ``target_hash`` now."""
    ms = sorted(members, key=lambda m: m.key)
    limit = max_unavailable_count(max_unavailable, len(ms))
    down = [m for m in ms if not m.healthy]
    unavailable = len(down)
    budget = max(0, limit - unavailable)
    restart = [m.key for m in down if m.hash != target_hash]
    healthy_outdated = [m.key for m in ms if m.healthy and m.hash != target_hash]
    restart += healthy_outdated[:budget]
    waiting = healthy_outdated[budget:]
    updated = [m.key for m in ms if m.healthy and m.hash == target_hash]
    return RolloutStep(tuple(sorted(restart)), tuple(waiting), tuple(updated), unavailable,
                       budget)
