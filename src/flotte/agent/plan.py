"""What the agent must do to one unit: a pure comparison of wanted and actual.

fleet's agent diffed the units the engine placed on its machine against
systemd and ran ordered tasks (unload, load, stop, start; a chain stops at
its first failure).  The same rules, per unit, as data::

    wanted  = (hash, "loaded" | "launched") or None (not for this machine)
    actual  = (hash, running?) or None (not loaded here)

Kept free of I/O so every transition is tested without processes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Step = Literal["unload", "load", "stop", "start"]
Target = Literal["loaded", "launched"]


@dataclass(frozen=True, slots=True)
class Wanted:
    hash: str
    target: Target


@dataclass(frozen=True, slots=True)
class Actual:
    hash: str
    active: bool  # active, activating, reloading or deactivating (systemd's "not dead")
    launched: bool  # the agent started it and has not stopped it since


def steps(wanted: Wanted | None, actual: Actual | None) -> list[Step]:
    """fleet's per-unit transitions (spec fleet.md §1.5):

    * not wanted but present: unload (the supervisor stops it first);
    * wanted, not present: load, then start if launched;
    * hash differs: unload, load, start if launched (a replaced unit);
    * loaded → launched: start; launched → loaded: stop.

    A launched unit that crashed and stayed failed is *not* started again
    here: Restart= is the unit's own policy, as with fleet + systemd.

    Only what the agent started is stopped for ``loaded``: a loaded unit that
    runs because another one ``Requires=`` it (the seed's secretary, loaded
    and then started by its Apache) is systemd's business, as in fleet, whose
    agent compared targets with the states it had itself set, not with
    systemd's.  Stopping it would take the sidekick down at the next
    reconcile of every unit (a machine joining or leaving the cluster).
    """
    if wanted is None:
        return ["unload"] if actual is not None else []
    if actual is None:
        return ["load", "start"] if wanted.target == "launched" else ["load"]
    if actual.hash != wanted.hash:
        return ["unload", "load", "start"] if wanted.target == "launched" else ["unload", "load"]
    if wanted.target == "launched" and not actual.launched:
        return ["start"]
    if wanted.target == "loaded" and actual.launched:
        return ["stop"]
    return []
