"""The dependency graph of one machine's units: edges, [Install] enablement, host units.

Pure data, no I/O: built from loaded :class:`~flotte.unit.loader.Unit` objects
and read by the transaction builder (:mod:`flotte.supervisor.jobs`).

Edges (systemd.md §3.1)
-----------------------
Every dependency setting is stored twice, as in systemd's
``unit_add_dependency``: ``a Requires=b`` is the edge ``a —Requires→ b`` and
its inverse ``b —RequiredBy→ a``.  The behaviour of each relation is then a
question of which *set* of relations to follow — systemd's "atoms"
(``unit-dependency-atom.c``), copied below as module constants
(:data:`PULL_IN_START`, :data:`PROPAGATE_STOP` …).  Ordering is stored the
same way: ``a Before=b`` and ``b After=a`` are one fact, whichever unit file
states it.

Edges are reference counted by where they come from (a unit file, or an
enablement), so that reloading or removing one unit never drops a fact that
another unit file also states.

Specifiers and templates
------------------------
The loader already expands specifiers in ``[Unit]`` dependency lists and
turns a template name (``foo@.service``) into this unit's instance, so the
values read here are final unit names.  ``[Install]`` values are *not*
expanded by the loader (systemd expands them only when enabling, with a
smaller specifier set), so :meth:`DependencyGraph.enable` does it.

Three kinds of unit names
-------------------------
``flotte``   a unit loaded into the graph (its file may still be broken:
             masked / bad-setting units are flotte units that cannot start);
``host``     a unit the machine provides outside flotte (``docker.service``,
             ``network-online.target`` …), from a per-machine list
             (:class:`HostUnits`).  flotte never starts or stops one: a start
             job becomes a *verify-active* job (optionally running the unit's
             check command), a stop job is not applicable;
``unknown``  neither.  As in systemd, ``Requires=`` on it fails the start
             ("Unit x.service not found."), ``Wants=`` on it is ignored and
             ordering against it is a no-op.

A flotte unit shadows a host unit of the same name.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from flotte.unit import names as N
from flotte.unit.errors import ValueParseError
from flotte.unit.loader import BAD_SETTING, ERROR, LOADED, MASKED, Unit
from flotte.unit.specifiers import INSTALL_ALLOWED, SpecifierContext, expand

__all__ = [
    "ACTIVE_OR_ACTIVATING",
    "ACTIVE_OR_RELOADING",
    "CANNOT_BE_ACTIVE_WITHOUT",
    "DEFAULT_HOST_UNITS",
    "INACTIVE_OR_DEACTIVATING",
    "INACTIVE_OR_FAILED",
    "INVERSE",
    "PINS_STOP_WHEN_UNNEEDED",
    "PROPAGATE_INACTIVE_START_AS_FAILURE",
    "PROPAGATE_RESTART",
    "PROPAGATE_START_FAILURE",
    "PROPAGATE_STOP",
    "PROPAGATE_STOP_FAILURE",
    "PULL_IN_START",
    "PULL_IN_START_IGNORED",
    "PULL_IN_STOP",
    "PULL_IN_STOP_IGNORED",
    "PULL_IN_VERIFY",
    "RETROACTIVE_STOP_ON_STOP",
    "STOP_WHEN_UNNEEDED_QUEUE",
    "UNIT_FILE_RELATIONS",
    "DependencyGraph",
    "HostUnit",
    "HostUnits",
    "InstallChange",
    "InstallError",
    "Relation",
    "UnitKind",
]


class Relation(StrEnum):
    """A dependency type, named as in unit files and ``systemctl show``."""

    REQUIRES = "Requires"
    REQUISITE = "Requisite"
    WANTS = "Wants"
    BINDS_TO = "BindsTo"
    PART_OF = "PartOf"
    UPHOLDS = "Upholds"
    CONFLICTS = "Conflicts"
    BEFORE = "Before"
    AFTER = "After"
    ON_FAILURE = "OnFailure"
    ON_SUCCESS = "OnSuccess"
    PROPAGATES_RELOAD_TO = "PropagatesReloadTo"
    RELOAD_PROPAGATED_FROM = "ReloadPropagatedFrom"
    PROPAGATES_STOP_TO = "PropagatesStopTo"
    STOP_PROPAGATED_FROM = "StopPropagatedFrom"
    # reverse-only names (never written in a [Unit] section)
    REQUIRED_BY = "RequiredBy"
    REQUISITE_OF = "RequisiteOf"
    WANTED_BY = "WantedBy"
    BOUND_BY = "BoundBy"
    CONSISTS_OF = "ConsistsOf"
    UPHELD_BY = "UpheldBy"
    CONFLICTED_BY = "ConflictedBy"
    ON_FAILURE_OF = "OnFailureOf"
    ON_SUCCESS_OF = "OnSuccessOf"


R = Relation

#: systemd's ``inverse_table``: storing one side stores the other.
INVERSE: dict[Relation, Relation] = {
    R.REQUIRES: R.REQUIRED_BY,
    R.REQUISITE: R.REQUISITE_OF,
    R.WANTS: R.WANTED_BY,
    R.BINDS_TO: R.BOUND_BY,
    R.PART_OF: R.CONSISTS_OF,
    R.UPHOLDS: R.UPHELD_BY,
    R.CONFLICTS: R.CONFLICTED_BY,
    R.BEFORE: R.AFTER,
    R.ON_FAILURE: R.ON_FAILURE_OF,
    R.ON_SUCCESS: R.ON_SUCCESS_OF,
    R.PROPAGATES_RELOAD_TO: R.RELOAD_PROPAGATED_FROM,
    R.PROPAGATES_STOP_TO: R.STOP_PROPAGATED_FROM,
}
INVERSE.update({v: k for k, v in list(INVERSE.items())})

#: The ``[Unit]`` keys read from unit files, in the order ``status`` lists them.
UNIT_FILE_RELATIONS: tuple[Relation, ...] = (
    R.REQUIRES, R.REQUISITE, R.WANTS, R.BINDS_TO, R.PART_OF, R.UPHOLDS, R.CONFLICTS,
    R.BEFORE, R.AFTER, R.ON_FAILURE, R.ON_SUCCESS, R.PROPAGATES_RELOAD_TO,
    R.RELOAD_PROPAGATED_FROM, R.PROPAGATES_STOP_TO, R.STOP_PROPAGATED_FROM,
)
#: Every relation, forward names first (for :meth:`DependencyGraph.dependencies`).
ALL_RELATIONS: tuple[Relation, ...] = UNIT_FILE_RELATIONS + tuple(
    r for r in Relation if r not in UNIT_FILE_RELATIONS)

# -- systemd's dependency atoms (unit-dependency-atom.c), as relation sets --------
#: A start/restart job pulls a start job of these in; failing to add it fails the
#: transaction (UNIT_ATOM_PULL_IN_START).
PULL_IN_START = (R.REQUIRES, R.BINDS_TO)
#: … pulls a start job in, failures ignored (UNIT_ATOM_PULL_IN_START_IGNORED).
PULL_IN_START_IGNORED = (R.WANTS, R.UPHOLDS)
#: … pulls a verify-active job in (UNIT_ATOM_PULL_IN_VERIFY).
PULL_IN_VERIFY = (R.REQUISITE,)
#: … pulls a stop job in that matters (UNIT_ATOM_PULL_IN_STOP).
PULL_IN_STOP = (R.CONFLICTS,)
#: … pulls a stop job in that does not matter (UNIT_ATOM_PULL_IN_STOP_IGNORED).
PULL_IN_STOP_IGNORED = (R.CONFLICTED_BY,)
#: A stop (or the stop half of a restart) job propagates as stop to these.
PROPAGATE_STOP = (R.REQUIRED_BY, R.REQUISITE_OF, R.BOUND_BY, R.CONSISTS_OF,
                  R.PROPAGATES_STOP_TO)
#: A restart job propagates as try-restart to these.
PROPAGATE_RESTART = (R.REQUIRED_BY, R.REQUISITE_OF, R.BOUND_BY, R.CONSISTS_OF)
#: A failed start/verify job fails these units' pending start jobs ("dependency").
PROPAGATE_START_FAILURE = (R.REQUIRED_BY, R.REQUISITE_OF, R.BOUND_BY)
#: A start job that ended with the unit not active fails these (Requisite=).
PROPAGATE_INACTIVE_START_AS_FAILURE = (R.REQUISITE_OF,)
#: A failed stop job fails the start jobs of units that conflict with the unit.
PROPAGATE_STOP_FAILURE = (R.CONFLICTED_BY,)
#: An unexpected deactivation stops these (BindsTo=, PropagatesStopTo=).
RETROACTIVE_STOP_ON_STOP = (R.BOUND_BY, R.PROPAGATES_STOP_TO)
#: This unit may not stay active while one of these is inactive.
CANNOT_BE_ACTIVE_WITHOUT = (R.BINDS_TO,)
#: Units that keep a ``StopWhenUnneeded=yes`` unit up while they are up.
PINS_STOP_WHEN_UNNEEDED = (R.REQUIRED_BY, R.REQUISITE_OF, R.WANTED_BY, R.BOUND_BY,
                           R.UPHELD_BY)
#: When a unit goes down, these of its dependencies may have become unneeded.
STOP_WHEN_UNNEEDED_QUEUE = (R.REQUIRES, R.REQUISITE, R.WANTS, R.BINDS_TO, R.UPHOLDS)

# -- active-state classes (systemd's UNIT_IS_* macros) -----------------------------
ACTIVE_OR_RELOADING = frozenset({"active", "reloading", "refreshing"})
ACTIVE_OR_ACTIVATING = frozenset({"active", "reloading", "activating", "refreshing"})
INACTIVE_OR_FAILED = frozenset({"inactive", "failed"})
INACTIVE_OR_DEACTIVATING = frozenset({"inactive", "failed", "deactivating"})


class UnitKind(StrEnum):
    FLOTTE = "flotte"
    HOST = "host"
    UNKNOWN = "unknown"


# ---------------------------------------------------------------------------------
# host units


@dataclass(frozen=True, slots=True)
class HostUnit:
    """A unit the machine provides outside flotte.

    ``name`` may be a glob (``systemd-*.service``).  ``check`` is a command
    line (run by the supervisor with ``sh -c``; exit 0 = active) that tells
    whether the unit is really up; without one the unit is assumed active.
    """

    name: str
    check: str | None = None

    @property
    def is_pattern(self) -> bool:
        return any(c in self.name for c in "*?[")


#: Units a CoreOS-style machine provides; fleet-era unit files order and
#: depend on them (``After=docker.service``, ``Requires=etcd2.service``,
#: ``WantedBy=multi-user.target``).  None has a check: they are assumed to be
#: there, like systemd assumes a loaded unit exists.  Add checks per machine.
DEFAULT_HOST_UNITS: tuple[HostUnit, ...] = tuple(HostUnit(n) for n in (
    # targets
    "basic.target", "default.target", "multi-user.target", "graphical.target",
    "sysinit.target", "local-fs.target", "local-fs-pre.target", "remote-fs.target",
    "remote-fs-pre.target", "network.target", "network-online.target",
    "network-pre.target", "nss-lookup.target", "nss-user-lookup.target",
    "time-sync.target", "time-set.target", "paths.target", "sockets.target",
    "timers.target", "slices.target", "swap.target", "getty.target",
    "cryptsetup.target", "early-docker.target",
    # daemons fleet units lean on
    "docker.service", "docker.socket", "containerd.service", "etcd.service",
    "etcd2.service", "etcd-member.service", "fleet.service", "fleet.socket",
    "flanneld.service", "sshd.service", "ssh.service", "dbus.service", "dbus.socket",
    # systemd's own
    "systemd-*.service", "systemd-*.socket",
))


class HostUnits:
    """The per-machine list of host units (see the module docstring).

    Exact names win over patterns; patterns are tried in the order added.
    """

    __slots__ = ("_exact", "_patterns")

    def __init__(self, units: Iterable[HostUnit | str] | None = None, *,
                 defaults: bool = True) -> None:
        self._exact: dict[str, HostUnit] = {}
        self._patterns: dict[str, HostUnit] = {}
        if defaults:
            for h in DEFAULT_HOST_UNITS:
                self.add(h)
        for u in units or ():
            self.add(u)

    def add(self, unit: HostUnit | str, check: str | None = None) -> None:
        h = unit if isinstance(unit, HostUnit) else HostUnit(unit, check)
        (self._patterns if h.is_pattern else self._exact)[h.name] = h

    def remove(self, name: str) -> None:
        self._exact.pop(name, None)
        self._patterns.pop(name, None)

    def get(self, name: str) -> HostUnit | None:
        """The entry for ``name``; a pattern match comes back with the real name."""
        h = self._exact.get(name)
        if h is not None:
            return h
        for p in self._patterns.values():
            if fnmatch.fnmatchcase(name, p.name):
                return HostUnit(name, p.check)
        return None

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def check(self, name: str) -> str | None:
        h = self.get(name)
        return h.check if h else None

    def entries(self) -> list[HostUnit]:
        return [*self._exact.values(), *self._patterns.values()]

    @classmethod
    def parse(cls, text: str, *, defaults: bool = True) -> HostUnits:
        """Read the per-machine list (the caller reads the file).

        One unit per line, optionally followed by its check command; ``#``
        starts a comment line; ``-name`` removes an entry (e.g. a default)::

            docker.service   docker info
            my-vpn.service   ip link show tun0
            -sshd.service

        Unparsable lines raise :class:`ValueError` naming the line, because a
        silently ignored host unit shows up much later as "Unit … not found".
        """
        hosts = cls(defaults=defaults)
        hosts.update(text)
        return hosts

    def update(self, text: str) -> None:
        """Apply a host units file (the format :meth:`parse` describes) to this list.

        The supervisor starts from the list it was given (defaults, or what
        the agent configured) and lets the machine's own file add checks and
        remove entries on top.  Nothing changes when a line is invalid.
        """
        staged: list[tuple[bool, HostUnit]] = []
        for lineno, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith(("#", ";")):
                continue
            name, _, check = line.replace("\t", " ").partition(" ")
            check = check.strip()
            remove = name.startswith("-")
            name = name[1:] if remove else name
            probe = name.replace("*", "x").replace("?", "x")
            if not N.is_valid(probe.replace("[", "x").replace("]", "x"),
                              N.NameFlags.PLAIN | N.NameFlags.INSTANCE):
                raise ValueError(f"host units line {lineno}: {name!r} is not a unit name "
                                 "(write e.g. 'docker.service' or 'systemd-*.service')")
            staged.append((remove, HostUnit(name, check or None)))
        for remove, h in staged:
            if remove:
                self.remove(h.name)
            else:
                self.add(h)


# ---------------------------------------------------------------------------------
# install


class InstallError(ValueError):
    """enable/disable of a unit the graph does not have."""


@dataclass(frozen=True, slots=True)
class InstallChange:
    """One effect of enable/disable, as systemctl reports its symlinks.

    ``action`` is ``add``/``remove`` (an edge ``target relation= unit``) or
    ``warning`` (then ``message`` says what was skipped).
    """

    action: str
    target: str = ""
    relation: str = ""
    unit: str = ""
    message: str = ""

    def __str__(self) -> str:
        if self.action == "warning":
            return self.message
        verb = "Added" if self.action == "add" else "Removed"
        return f"{verb} {self.target} {self.relation}={self.unit}"


# ---------------------------------------------------------------------------------
# the graph

_Source = str  # "unit:<name>" or "install:<name>"
_JOB_SETTINGS = ("StopWhenUnneeded", "RefuseManualStart", "RefuseManualStop")


class DependencyGraph:
    """Units and the dependency edges between them (see the module docstring).

    Mutable on purpose: the supervisor loads and unloads units one at a time,
    and rebuilding every edge of 1,000 units per load would be quadratic.
    """

    def __init__(self, units: Iterable[Unit] = (), *, host: HostUnits | None = None,
                 enabled: Iterable[str] = (), ctx: SpecifierContext | None = None) -> None:
        self.host = host if host is not None else HostUnits()
        self.ctx = ctx
        self._units: dict[str, Unit] = {}
        # _edges[a][rel][b] = reference count of "a rel b"
        self._edges: dict[str, dict[Relation, dict[str, int]]] = {}
        self._declared: dict[_Source, list[tuple[str, Relation, str]]] = {}
        self._enabled: set[str] = set(enabled)
        # units whose own [Unit] settings change how their jobs run (see plain())
        self._special: set[str] = set()
        for u in units:
            self.add(u)

    # -- units ----------------------------------------------------------------
    def add(self, unit: Unit) -> None:
        """Add a unit or replace the one of that name (a reloaded file).

        Its edges are recomputed from the new file; if it is enabled its
        ``[Install]`` edges are recomputed too (enablement is kept by name,
        so a reload acts like ``systemctl reenable``).
        """
        name = unit.name
        self._undeclare(f"unit:{name}")
        self._undeclare(f"install:{name}")
        self._units[name] = unit
        if any(unit.settings.get(("Unit", k)) for k in _JOB_SETTINGS):
            self._special.add(name)
        else:
            self._special.discard(name)
        decl: list[tuple[str, Relation, str]] = []
        if unit.load_state != MASKED:
            for rel in UNIT_FILE_RELATIONS:
                for other in unit.settings.get(("Unit", rel.value), ()):
                    if other != name:
                        decl.append((name, rel, other))
        self._declare(f"unit:{name}", decl)
        if name in self._enabled:
            self._install(name, set(), [])

    def remove(self, name: str) -> None:
        """Forget a unit.  Edges other unit files state about it stay."""
        self._units.pop(name, None)
        self._special.discard(name)
        self._undeclare(f"unit:{name}")
        self._undeclare(f"install:{name}")

    def __contains__(self, name: object) -> bool:
        return name in self._units

    def __len__(self) -> int:
        return len(self._units)

    def unit(self, name: str) -> Unit | None:
        return self._units.get(name)

    def names(self) -> list[str]:
        return sorted(self._units)

    def plain(self, name: str) -> bool:
        """No edge at all and no job-related [Unit] setting (``StopWhenUnneeded=``,
        ``RefuseManualStart=``/``RefuseManualStop=``).

        A job on a plain unit is a transaction of one job and no state change
        of it concerns another unit, so the supervisor skips the transaction
        builder and the propagation rules for it: most units of a fleet-style
        machine are plain, and a thousand of them start at once.
        """
        return name not in self._edges and name not in self._special

    def kind(self, name: str) -> UnitKind:
        if name in self._units:
            return UnitKind.FLOTTE
        if name in self.host:
            return UnitKind.HOST
        return UnitKind.UNKNOWN

    # -- edges ----------------------------------------------------------------
    def _declare(self, source: _Source, decl: list[tuple[str, Relation, str]]) -> None:
        if not decl:
            return
        self._declared.setdefault(source, []).extend(decl)
        for a, rel, b in decl:
            for x, r, y in ((a, rel, b), (b, INVERSE[rel], a)):
                bucket = self._edges.setdefault(x, {}).setdefault(r, {})
                bucket[y] = bucket.get(y, 0) + 1

    def _undeclare(self, source: _Source) -> None:
        for a, rel, b in self._declared.pop(source, ()):
            for x, r, y in ((a, rel, b), (b, INVERSE[rel], a)):
                bucket = self._edges[x][r]
                bucket[y] -= 1
                if not bucket[y]:
                    del bucket[y]
                    if not bucket:
                        del self._edges[x][r]
                        if not self._edges[x]:
                            del self._edges[x]

    def deps(self, name: str, *relations: Relation) -> tuple[str, ...]:
        """Units ``name`` has any of ``relations`` to, sorted (deterministic plans)."""
        per = self._edges.get(name)
        if not per:
            return ()
        if len(relations) == 1:
            return tuple(sorted(per.get(relations[0], ())))
        out: set[str] = set()
        for r in relations:
            out.update(per.get(r, ()))
        return tuple(sorted(out))

    def has(self, a: str, relation: Relation, b: str) -> bool:
        return b in self._edges.get(a, {}).get(relation, {})

    def dependencies(self, name: str) -> dict[str, tuple[str, ...]]:
        """Every non-empty relation of ``name`` (for ``status``), forward names first."""
        per = self._edges.get(name, {})
        return {r.value: tuple(sorted(per[r])) for r in ALL_RELATIONS if per.get(r)}

    def missing(self) -> dict[str, list[str]]:
        """Units required (Requires=/BindsTo=/Requisite=) but neither flotte nor host.

        ``{missing unit: [units that need it]}``: what ``verify``/status
        should report before a start fails with "Unit … not found.".
        """
        out: dict[str, list[str]] = {}
        for name in sorted(self._units):
            for dep in self.deps(name, R.REQUIRES, R.BINDS_TO, R.REQUISITE):
                if self.kind(dep) is UnitKind.UNKNOWN:
                    out.setdefault(dep, []).append(name)
        return out

    # -- facts the transaction builder asks ---------------------------------------
    def state(self, name: str, active: Mapping[str, str] | None = None) -> str:
        """The active state to plan with.

        What the caller knows wins.  Otherwise a host unit without a check is
        assumed active (the machine provides it) and everything else inactive
        — including a host unit with a check that has not run yet, so that a
        verify-active job (which runs the check) stays in the plan.
        """
        if active is not None:
            s = active.get(name)
            if s is not None:
                return s
        if name not in self._units:
            h = self.host.get(name)
            if h is not None and h.check is None:
                return "active"
        return "inactive"

    def load_problem(self, name: str) -> str | None:
        """Why a start-type job for ``name`` cannot be added (systemd's wording)."""
        u = self._units.get(name)
        if u is None:
            if name in self.host:
                return None
            return f"Unit {name} not found."
        if u.load_state == LOADED:
            return None
        if u.load_state == MASKED:
            return f"Unit {name} is masked."
        if u.load_state == BAD_SETTING:
            return f"Unit {name} has a bad unit file setting."
        if u.load_state == ERROR:
            first = next((d.message for d in u.errors), "Invalid argument")
            return (f"Unit {name} failed to load properly, please adjust/correct and "
                    f"reload service manager: {first}")
        if u.load_state == "not-found":
            return f"Unit {name} not found."
        return f"Unit {name} is not loaded properly."

    def can_reload(self, name: str) -> bool:
        """``unit_can_reload``: ExecReload= (services) or PropagatesReloadTo=."""
        if self.deps(name, R.PROPAGATES_RELOAD_TO):
            return True
        u = self._units.get(name)
        if u is None or u.unit_type != "service":
            return False
        return bool(u.settings.get(("Service", "ExecReload")))

    def setting(self, name: str, key: str, default: object = None) -> object:
        """A ``[Unit]`` setting of a flotte unit (its default otherwise)."""
        u = self._units.get(name)
        if u is None:
            return default
        return u.value("Unit", key)

    def description(self, name: str) -> str:
        """What systemd prints in "Dependency failed for …": the Description=."""
        u = self._units.get(name)
        if u is None or not u.ok:
            return name
        return str(u.value("Unit", "Description"))

    # -- [Install] ------------------------------------------------------------------
    @property
    def enabled(self) -> frozenset[str]:
        return frozenset(self._enabled)

    def is_enabled(self, name: str) -> bool:
        return name in self._enabled

    def install_state(self, name: str) -> str:
        """``systemctl is-enabled``: enabled, disabled, static or not-found."""
        if name in self._enabled:
            return "enabled"
        u = self._units.get(name)
        if u is None:
            return "not-found"
        return "static" if _is_static(u) else "disabled"

    def enable(self, name: str) -> list[InstallChange]:
        """``systemctl enable``: add the ``[Install]`` edges of ``name`` (and its Also=).

        ``WantedBy=T`` adds ``T Wants=name``, ``RequiredBy=T`` adds ``T
        Requires=name`` — fleet's sidekick idiom ``WantedBy=hello.service``
        therefore makes starting hello.service start the sidekick.  The
        target need not be loaded (the edge waits for it, as a symlink in
        ``T.wants/`` would).  Values expand the [Install] specifiers
        (``%i %n %p`` …); a template target (``foo@.service``) named by an
        instance takes that instance, as systemd's install logic does.  A
        unit without any [Install] setting is "static": nothing to enable.
        """
        if name not in self._units:
            raise InstallError(f"Unit file {name} does not exist.")
        changes: list[InstallChange] = []
        self._install(name, set(), changes)
        return changes

    def disable(self, name: str) -> list[InstallChange]:
        """``systemctl disable``: drop the edges ``enable`` added (and Also= units')."""
        changes: list[InstallChange] = []
        todo, seen = [name], set()
        while todo:
            n = todo.pop()
            if n in seen:
                continue
            seen.add(n)
            for a, rel, b in self._declared.get(f"install:{n}", ()):
                changes.append(InstallChange("remove", a, rel.value, b))
            self._undeclare(f"install:{n}")
            self._enabled.discard(n)
            u = self._units.get(n)
            if u is not None:
                for word in u.settings.get(("Install", "Also"), ()):
                    also = self._install_name(u, word, changes)
                    if also:
                        todo.append(also)
        return changes

    def _install_name(self, unit: Unit, word: str, changes: list[InstallChange]) -> str | None:
        try:
            target = expand(word, unit.name, self.ctx, allowed=INSTALL_ALLOWED)
        except ValueParseError as exc:
            changes.append(InstallChange("warning", message=f"{unit.name}: {exc.message}"))
            return None
        if N.is_valid(target, N.NameFlags.TEMPLATE):
            own = N.split(unit.name)
            if own.is_instance and own.instance:
                target = N.replace_instance(target, own.instance)
        if not N.is_valid(target, N.NameFlags.PLAIN | N.NameFlags.INSTANCE):
            changes.append(InstallChange(
                "warning", message=f"{unit.name}: [Install] names an invalid unit "
                f"'{target}', ignoring"))
            return None
        return target

    def _install(self, name: str, seen: set[str], changes: list[InstallChange]) -> None:
        if name in seen:
            return
        seen.add(name)
        u = self._units.get(name)
        if u is None:
            # Also= naming a unit that is not loaded yet: remember it by name.
            self._enabled.add(name)
            changes.append(InstallChange(
                "warning", message=f"{name} is not loaded; it will be enabled when it is"))
            return
        if _is_static(u):
            changes.append(InstallChange(
                "warning", message=f"{name} has no [Install] section (WantedBy=, RequiredBy=, "
                "Also=): it is static and is only started as a dependency"))
            return
        self._undeclare(f"install:{name}")
        decl: list[tuple[str, Relation, str]] = []
        for key, rel in (("WantedBy", R.WANTS), ("RequiredBy", R.REQUIRES)):
            for word in u.settings.get(("Install", key), ()):
                target = self._install_name(u, word, changes)
                if target is None or target == name:
                    continue
                decl.append((target, rel, name))
                changes.append(InstallChange("add", target, rel.value, name))
        self._declare(f"install:{name}", decl)
        self._enabled.add(name)
        for word in u.settings.get(("Install", "Also"), ()):
            also = self._install_name(u, word, changes)
            if also is not None:
                self._install(also, seen, changes)

    def boot_units(self, targets: Iterable[str] = ("multi-user.target", "default.target")
                   ) -> list[str]:
        """Flotte units the boot targets pull in (Wants=/Requires=/Upholds=).

        Followed through targets only: starting a listed service pulls in
        its own dependencies anyway.

        A host has already reached ``multi-user.target`` when flotte starts,
        so the units enabled into it (``WantedBy=multi-user.target``) are
        what the agent should start at boot: there is no one else to do it.
        """
        out: set[str] = set()
        todo = list(targets)
        seen: set[str] = set()
        while todo:
            t = todo.pop()
            if t in seen:
                continue
            seen.add(t)
            for d in self.deps(t, R.WANTS, R.REQUIRES, R.UPHOLDS):
                if d in self._units:
                    out.add(d)
                if self.kind(d) is not UnitKind.FLOTTE or d.endswith(".target"):
                    todo.append(d)
        return sorted(out)


def _is_static(unit: Unit) -> bool:
    """No [Install] setting: systemctl calls such a unit "static"."""
    return not any(unit.settings.get(("Install", k))
                   for k in ("WantedBy", "RequiredBy", "Also", "Alias"))
