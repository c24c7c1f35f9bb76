"""The scheduler: fleet's reconcile (unschedule pass, then schedule pass), indexed.

fleet's engine re-read every unit, the whole schedule and every machine on
each reconcile (every 2 s and on every watch event) and, for each pending
unit, walked the machines least-loaded first calling ``AbleToRun``, which
itself walked every unit on the machine matching globs.  That is
O(units × machines × units-per-machine × globs) per pass and is why fleet
said "not more than 1000 services" (fleet.md §7.1).

:class:`Scheduler` keeps the same decisions but holds the cluster in
indexes that are updated as facts change (a unit submitted, a machine
gone, a schedule key written), so a pass only looks at what changed:

* machines ordered by ``(load, machine id)`` in a sorted list, so
  "least-loaded first" is a walk from the front, not a sort per unit (the
  load counts residents, global units included, as fleet did);
* every distinct ``Conflicts=``/``Replaces=`` glob in the cluster compiled
  once (Go ``path.Match`` semantics, :mod:`flotte.engine.glob`), indexed by
  literal prefix, and for each glob the machines hosting a resident that
  matches it / holds it: a conflict check is a few dict lookups, and "every
  machine already has a conflicting unit" is one ``len()``;
* metadata ``key=value`` → machines, short ID → machines, peer → followers,
  so ``MachineID``/``MachineMetadata``/``MachineOf`` units only walk the
  machines that can take them.

What a pass re-evaluates (``reconcile()``; ``full=True`` or the first call
re-evaluates everything, which is fleet's behaviour):

* schedule entries of changed units, and of units on machines that went
  away, are cleaned up (destroyed, ``inactive``, gone machine, global);
* residents of changed machines and of machines where a changed unit
  lives are re-checked with ``AbleToRun``;
* pending units that changed or were just unscheduled are placed; when
  anything freed room (a unit left a machine, a machine appeared or its
  metadata changed, a global unit changed) every pending unit is retried,
  because any of them may now fit (and when a machine went away, so that
  their reasons stop naming it).

Ordering is deterministic: units are taken by name (fleet used Go map
order, which is random, so which of two conflicting units won could
differ from run to run), ties between equally loaded machines go to the
lower machine ID (as fleet).  Within the schedule pass a unit waits for its
``MachineOf`` peers to be placed first, so followers land with their
target in the same pass whatever their names; a ``MachineOf`` cycle
deadlocks as in fleet, and says so.

Deliberate departures from fleet, each fixing a churn or a silent hang:

* a unit displaced by ``Replaces=`` goes to the least-loaded machine where
  its own constraints hold (fleet's ``DecideReschedule`` ignored them, so
  the unit could land somewhere it was unscheduled from on the next pass),
  it never goes where a unit replaces it, and it moves at most once per
  pass;
* of two units that replace each other (circular), fleet ignored the
  relation; here only one runs: a pending one is not placed while its
  partner runs, and if both run the later by name is unscheduled
  (``TestScheduleCircularReplace``: "only one becomes active");
* the moment a unit is placed on the machine of a unit it replaces, the
  replaced unit moves in the same pass (fleet needed a second pass);
* every unit that cannot be placed gets ``{machine: reason}``, computed
  against the state at the end of the pass (fleet logged "no agents able to
  run job" at debug level and ``fleetctl start`` hung forever);
* a unit is placed at most once per pass: configurations fleet's API
  rejects (a global unit with ``MachineOf=``) could otherwise chase a unit
  round in circles; the next pass retries it.

Cost, measured by ``tests/engine/bench_scheduler.py`` (10,000 units on 1,000
machines, one core of a busy 2-core machine): a full pass from scratch
places 30,000-90,000 units per second, index build included; an
incremental pass after a machine is lost or a unit is started takes about
a millisecond or less.  The expensive part is explaining units that fit
nowhere: a ``_check`` per listed machine.  Units with the same constraints
(the waiting instances of one template) share those per pass,
``explain_limit`` (default 100 machines) bounds the list, and an
incremental pass re-explains only on machines where room appeared.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from sortedcontainers import SortedList

from flotte.engine.glob import compile_glob, glob_match, literal_prefix
from flotte.engine.model import (
    Action,
    ClusterView,
    Decision,
    Machine,
    Plan,
    Schedule,
    Unit,
    Unschedule,
    short_id,
)
from flotte.engine.rules import (
    why_conflict,
    why_displaces,
    why_machine_id,
    why_metadata,
    why_peer,
    why_replaced,
)

__all__ = ["EXPLAIN_LIMIT", "NO_MACHINES", "Scheduler", "reconcile"]

NO_MACHINES = "no machines in the cluster"

#: Machines listed per unplaced unit by default: complete in any cluster fleet
#: supported (it recommended at most 100 machines), bounded beyond.
EXPLAIN_LIMIT = 100


def _valid_globs(globs: Iterable[str]) -> tuple[str, ...]:
    """Distinct globs that Go would accept (a malformed one never matches anything)."""
    return tuple(dict.fromkeys(g for g in globs if compile_glob(g) is not None))


@dataclass(slots=True, eq=False)
class _U:
    """A unit compiled for the indexes: everything ``_check`` needs, precomputed."""

    unit: Unit
    name: str
    want_id: str | None
    meta: tuple[tuple[str, frozenset[str], tuple[str, ...]], ...]
    peers: tuple[str, ...]
    conflicts: tuple[str, ...]
    replaces: tuple[str, ...]
    is_global: bool
    template: bool
    wants: bool
    runs_global: bool

    @classmethod
    def of(cls, unit: Unit) -> _U:
        xf = unit.xfleet
        meta = tuple((k, frozenset(v), tuple(v)) for k, v in xf.metadata.items())
        glob = unit.is_global
        return cls(unit, unit.name, unit.required_machine, meta, tuple(xf.machine_of),
                   _valid_globs(xf.conflicts), () if glob else _valid_globs(xf.replaces),
                   glob, unit.is_template, unit.wants_placement,
                   glob and not unit.is_template and unit.desired != "inactive")


class _Globs:
    """Every distinct glob in the cluster, and which of them match a given name.

    Patterns are bucketed by their literal prefix, so matching a name costs
    one dict lookup per distinct prefix length plus a regex per plausible
    pattern, rather than a regex per pattern in the cluster.  Answers are
    cached per name and patched when a pattern appears or disappears.
    """

    def __init__(self) -> None:
        self._ref: dict[str, int] = {}
        self._by_prefix: dict[str, set[str]] = {}
        self._lengths: Counter[int] = Counter()
        self._cache: dict[str, frozenset[str]] = {}

    def add(self, pattern: str) -> bool:
        """Count one more user of ``pattern``; True if it is new to the cluster."""
        n = self._ref.get(pattern, 0)
        self._ref[pattern] = n + 1
        if n:
            return False
        prefix = literal_prefix(pattern)
        self._by_prefix.setdefault(prefix, set()).add(pattern)
        self._lengths[len(prefix)] += 1
        rx = compile_glob(pattern)
        assert rx is not None
        for name, pats in self._cache.items():
            if rx.fullmatch(name):
                self._cache[name] = pats | {pattern}
        return True

    def discard(self, pattern: str) -> bool:
        """Count one user less; True if nobody in the cluster uses it any more."""
        n = self._ref.get(pattern, 0)
        if n > 1:
            self._ref[pattern] = n - 1
            return False
        if n == 0:
            return False
        del self._ref[pattern]
        prefix = literal_prefix(pattern)
        bucket = self._by_prefix[prefix]
        bucket.discard(pattern)
        if not bucket:
            del self._by_prefix[prefix]
        self._lengths[len(prefix)] -= 1
        if not self._lengths[len(prefix)]:
            del self._lengths[len(prefix)]
        for name, pats in self._cache.items():
            if pattern in pats:
                self._cache[name] = pats - {pattern}
        return True

    def matching(self, name: str) -> frozenset[str]:
        """The cluster's globs that match ``name``."""
        hit = self._cache.get(name)
        if hit is not None:
            return hit
        found: list[str] = []
        for length in self._lengths:
            if length <= len(name):
                for p in self._by_prefix.get(name[:length], ()):
                    rx = compile_glob(p)
                    if rx is not None and rx.fullmatch(name):
                        found.append(p)
        hit = frozenset(found)
        self._cache[name] = hit
        return hit

    def forget(self, name: str) -> None:
        self._cache.pop(name, None)


# pattern → machine → names of residents there
_Hosts = dict[str, dict[str, set[str]]]


def _host_add(index: _Hosts, pattern: str, mid: str, name: str) -> None:
    index.setdefault(pattern, {}).setdefault(mid, set()).add(name)


def _host_del(index: _Hosts, pattern: str, mid: str, name: str) -> None:
    by_machine = index.get(pattern)
    if by_machine is None:
        return
    names = by_machine.get(mid)
    if names is None:
        return
    names.discard(name)
    if not names:
        del by_machine[mid]


@dataclass(slots=True)
class _Pass:
    """Bookkeeping for one reconcile pass."""

    plan: Plan
    explain_limit: int | None
    scheduling: bool = False
    heap: list[str] = field(default_factory=list)
    queued: set[str] = field(default_factory=set)
    evicted: set[str] = field(default_factory=set)
    displaced: set[str] = field(default_factory=set)
    failed: set[str] = field(default_factory=set)  # evaluated in this pass and unplaced
    fresh: set[str] = field(default_factory=set)   # need a full explanation if unplaced
    placed: set[str] = field(default_factory=set)  # placed in this pass (at most once each)
    # (MachineID, metadata, Conflicts, globs matching the name) → machine → reason
    shared_reasons: dict[tuple[object, ...], dict[str, str | None]] = field(
        default_factory=dict)
    cluster_reasons: dict[str, str] = field(default_factory=dict)

    def push(self, name: str, *, fresh: bool = True) -> None:
        """Queue a unit for placement.  ``fresh=False``: only retried because room was
        freed somewhere, so its previous reasons hold except on the vacated machines."""
        if fresh:
            self.fresh.add(name)
        if name not in self.queued:
            self.queued.add(name)
            heapq.heappush(self.heap, name)


class Scheduler:
    """The engine's in-memory cluster model and its reconcile.

    Feed it facts as the registry reports them (:meth:`set_unit`,
    :meth:`remove_unit`, :meth:`set_machine`, :meth:`remove_machine`,
    :meth:`set_target`), then call :meth:`reconcile`, which returns the
    :class:`Plan` to write and already counts it as done.  If a write
    fails (another leader, a compare-and-swap lost), report the real value
    with :meth:`set_target` and the next pass repairs the difference.
    """

    def __init__(self, view: ClusterView | None = None) -> None:
        self._u: dict[str, _U] = {}
        self._m: dict[str, Machine] = {}
        self._target: dict[str, str] = {}          # the registry's schedule, stale entries too
        self._targeted: dict[str, set[str]] = {}   # machine id → units whose entry names it
        self._where: dict[str, str] = {}           # resident non-global unit → machine
        self._res: dict[str, set[str]] = {}        # machine → residents (placed + global)
        self._load: dict[str, int] = {}
        self._order: SortedList = SortedList()      # (load, machine id)
        self._g_hosts: dict[str, set[str]] = {}    # global unit → machines running it
        self._g_on: dict[str, set[str]] = {}       # machine → global units running there
        self._globals: list[str] = []              # global units that run somewhere, by name
        self._globs = _Globs()
        self._match: _Hosts = {}                   # glob → machine → residents it matches
        self._hold_c: _Hosts = {}                  # glob → machine → residents with Conflicts=glob
        self._hold_r: _Hosts = {}                  # glob → machine → residents with Replaces=glob
        self._meta_ix: dict[tuple[str, str], set[str]] = {}
        self._short_ix: dict[str, set[str]] = {}
        self._followers: dict[str, set[str]] = {}  # peer → units with MachineOf=peer
        self._pending: set[str] = set()
        self._reasons: dict[str, dict[str, str]] = {}  # last explanation of each pending unit
        self._vacated_ms: set[str] = set()              # machines where room may have appeared
        self._ids: list[str] | None = None
        self._dirty_units: set[str] = set()
        self._check_machines: set[str] = set()
        self._globals_stale: set[str] = set()
        self._globals_stale_all = False
        self._freed = False
        self._full = True
        if view is not None:
            self.load(view)

    # ------------------------------------------------------------ facts in

    def load(self, view: ClusterView) -> None:
        """Add everything in ``view`` (machines, units, schedule entries)."""
        for m in view.machines.values():
            self.set_machine(m)
        for u in view.units.values():
            self.set_unit(u)
        for name, mid in view.schedule.items():
            self.set_target(name, mid)

    def set_machine(self, machine: Machine) -> None:
        """A machine appeared, or its metadata changed."""
        mid = machine.id
        old = self._m.get(mid)
        if old == machine:
            return
        self._m[mid] = machine
        if old is None:
            self._res[mid] = set()
            self._g_on[mid] = set()
            self._load[mid] = 0
            self._order.add((0, mid))
            self._short_ix.setdefault(short_id(mid), set()).add(mid)
            self._ids = None
            for name in sorted(self._targeted.get(mid, ())):
                self._try_reside(name)
        else:
            self._unindex_metadata(old)
        for k, v in machine.metadata.items():
            self._meta_ix.setdefault((k, v), set()).add(mid)
        self._check_machines.add(mid)
        self._globals_stale.add(mid)
        self._vacated_ms.add(mid)
        self._freed = True

    def remove_machine(self, machine_id: str) -> None:
        """A machine went away (its presence key expired or it shut down)."""
        machine = self._m.get(machine_id)
        if machine is None:
            return
        for name in sorted(self._res[machine_id]):
            self._del_res(name, machine_id)
        del self._res[machine_id]
        del self._g_on[machine_id]
        self._order.remove((self._load.pop(machine_id), machine_id))
        sid = short_id(machine_id)
        self._short_ix[sid].discard(machine_id)
        if not self._short_ix[sid]:
            del self._short_ix[sid]
        self._unindex_metadata(machine)
        del self._m[machine_id]
        self._ids = None
        self._dirty_units |= self._targeted.get(machine_id, set())
        self._check_machines.discard(machine_id)
        self._globals_stale.discard(machine_id)
        self._freed = True  # not room, but every pending unit's reasons name this machine

    def set_unit(self, unit: Unit) -> None:
        """A unit was submitted, replaced (new options) or its desired state changed."""
        name = unit.name
        old = self._u.get(name)
        if old is not None and old.unit == unit:
            return
        was_at = self._where.get(name)
        if old is not None:
            self._drop_unit(old)
        u = _U.of(unit)
        self._u[name] = u
        for p in (*u.conflicts, *u.replaces):
            if self._globs.add(p):
                self._index_new_glob(p)
        for peer in u.peers:
            self._followers.setdefault(peer, set()).add(name)
        if u.runs_global:
            self._globals.append(name)
            self._globals.sort()
        if u.is_global or (old is not None and old.is_global):
            self._globals_stale_all = True
            self._freed = True
        self._try_reside(name)
        if u.wants and name not in self._where:
            self._pending.add(name)
        self._dirty_units |= self._followers.get(name, set())
        if was_at is not None and (name not in self._where or old is None
                                   or old.unit.xfleet != unit.xfleet):
            # It left its machine, or its constraints changed: neighbours must be
            # re-checked, and pending units refused because of it may now fit.
            self._vacated(was_at)
        self._dirty_units.add(name)

    def remove_unit(self, name: str) -> None:
        """A unit was destroyed."""
        old = self._u.get(name)
        if old is None:
            return
        was_at = self._where.get(name)
        self._drop_unit(old)
        del self._u[name]
        self._globs.forget(name)
        if old.is_global:
            self._globals_stale_all = True
            self._freed = True
        if was_at is not None:
            self._vacated(was_at)
        self._dirty_units.add(name)
        self._dirty_units |= self._followers.get(name, set())

    def set_target(self, name: str, machine_id: str | None) -> None:
        """The registry's schedule entry for ``name`` is now ``machine_id`` (None: deleted)."""
        cur = self._target.get(name)
        if cur == machine_id:
            return
        if cur is not None:
            self._untarget(name)
        at = self._where.get(name)
        if at is not None:
            self._del_res(name, at)
            self._vacated(at)
        if machine_id is not None:
            self._target[name] = machine_id
            self._targeted.setdefault(machine_id, set()).add(name)
            self._try_reside(name)
            if machine_id in self._m:
                self._check_machines.add(machine_id)
        u = self._u.get(name)
        if u is not None and u.wants and name not in self._where:
            self._pending.add(name)
        self._dirty_units.add(name)

    def _vacated(self, mid: str) -> None:
        """A resident left ``mid`` (or changed): re-check its neighbours, re-admit
        global units it kept out, and retry pending units it kept out."""
        self._freed = True
        self._check_machines.add(mid)
        self._globals_stale.add(mid)
        self._vacated_ms.add(mid)

    # ------------------------------------------------------------ facts out

    @property
    def schedule(self) -> dict[str, str]:
        """The schedule as this scheduler believes the registry holds it."""
        return dict(self._target)

    @property
    def pending(self) -> frozenset[str]:
        return frozenset(self._pending)

    def view(self) -> ClusterView:
        """A snapshot of the current model (for the agent rules and for tests)."""
        return ClusterView({k: self._m[k] for k in sorted(self._m)},
                           {k: self._u[k].unit for k in sorted(self._u)}, dict(self._target))

    def residents(self, machine_id: str) -> frozenset[str]:
        return frozenset(self._res.get(machine_id, ()))

    def load_of(self, machine_id: str) -> int:
        return self._load[machine_id]

    def able_to_run(self, machine_id: str, name: str) -> Decision:
        """fleet's ``AbleToRun`` for a known unit, via the indexes (its own entry skipped)."""
        u = self._u[name]
        if u.is_global:
            return self._check_global(machine_id, u)
        return self._check(machine_id, u)

    # ------------------------------------------------------------ reconcile

    def reconcile(self, *, full: bool = False, explain_limit: int | None = EXPLAIN_LIMIT
                  ) -> Plan:
        """One pass: clean stale entries, unschedule, then schedule.  Returns the plan.

        ``full`` re-evaluates every unit as fleet did (the first call is
        always full); otherwise only what changed since the last call.
        ``explain_limit`` caps how many machines' reasons are listed per
        unplaced unit (the ``""`` entry then says how many were left out):
        in a 1,000-machine cluster a reason per machine is more than an
        operator reads and more than the registry should store.
        """
        full = full or self._full
        ctx = _Pass(Plan(), explain_limit)
        self._refresh_globals(ctx, full)
        self._clean_stale(ctx, full)
        self._unschedule_pass(ctx, full)
        self._schedule_pass(ctx, full)
        for name in [n for n in self._reasons if n not in self._pending]:
            del self._reasons[name]
        self._dirty_units.clear()
        self._check_machines.clear()
        self._vacated_ms.clear()
        self._freed = False
        self._full = False
        return ctx.plan

    def _refresh_globals(self, ctx: _Pass, full: bool) -> None:
        stale = self._m.keys() if (full or self._globals_stale_all) else self._globals_stale
        for mid in sorted(m for m in stale if m in self._m):
            self._regather_globals(mid, ctx)
        self._globals_stale.clear()
        self._globals_stale_all = False

    def _clean_stale(self, ctx: _Pass, full: bool) -> None:
        names = list(self._target) if full else [n for n in self._dirty_units
                                                  if n in self._target]
        for name in sorted(names):
            if name in self._where or name not in self._target:
                continue
            mid = self._target[name]
            ctx.plan.steps.append(Unschedule(name, mid, self._stale_reason(name, mid)))
            self._untarget(name)
            u = self._u.get(name)
            if u is not None and u.wants:
                self._pending.add(name)
                ctx.evicted.add(name)

    def _stale_reason(self, name: str, mid: str) -> str:
        u = self._u.get(name)
        if u is None:
            return "unit was destroyed"
        if u.is_global:
            return "global units are not scheduled by the engine (they run on every " \
                   "matching machine)"
        if u.template:
            return "templates are never placed; start an instance instead"
        if u.unit.desired == "inactive":
            return "target state inactive"
        return f"machine {short_id(mid)} went away"

    def _unschedule_pass(self, ctx: _Pass, full: bool) -> None:
        if full:
            check = set(self._where)
        else:
            check = {n for n in self._dirty_units if n in self._where}
            for mid in self._check_machines:
                check |= {n for n in self._res.get(mid, ()) if n in self._where}
        for name in sorted(check):
            at = self._where.get(name)
            if at is not None:
                self._revalidate(name, at, ctx)

    def _revalidate(self, name: str, mid: str, ctx: _Pass) -> None:
        """May a resident stay where it is?  Unschedule it if not."""
        u = self._u[name]
        d = self._check(mid, u)
        if d.action is Action.REFUSE or d.replaced_by:
            self._evict(name, mid, d.reason, ctx)
            return
        partner = self._circular_partner(u)
        if partner is not None and partner[0] < name:
            self._evict(name, mid, self._why_circular(u, partner), ctx)

    def _schedule_pass(self, ctx: _Pass, full: bool) -> None:
        ctx.scheduling = True
        plan = ctx.plan
        specific = ({n for n in self._dirty_units if n in self._pending}
                    | (ctx.evicted & self._pending))
        for name in (self._pending if full else specific):
            ctx.push(name)
        if self._freed:
            for name in self._pending:
                ctx.push(name, fresh=False)
        templates = self._u.keys() if full else self._dirty_units
        for name in sorted(templates):
            u = self._u.get(name)
            if u is not None and u.template and not u.is_global and u.unit.desired != "inactive":
                plan.unplaced[name] = {"": f"{name} is a template and is never placed; start "
                                           "an instance of it instead"}
                plan.evaluated.add(name)
        waiting: dict[str, list[str]] = {}   # peer → units waiting for it to be placed
        blocked_on: dict[str, str] = {}      # unit → the queued peer it waits for
        while ctx.heap or blocked_on:
            forced = False
            if ctx.heap:
                name = heapq.heappop(ctx.heap)
                if name not in ctx.queued or name in blocked_on:
                    continue
            else:
                # Only MachineOf cycles (and units waiting on them) are left.
                name = min(blocked_on)
                peer = blocked_on.pop(name)
                waiting[peer].remove(name)
                self._note_cycle(name, peer, blocked_on, ctx)
                forced = True
            u = self._u.get(name)
            if u is None or name not in self._pending:
                ctx.queued.discard(name)
                continue
            if not forced:
                first = next((p for p in u.peers if p != name and p in ctx.queued), None)
                if first is not None:
                    blocked_on[name] = first
                    waiting.setdefault(first, []).append(name)
                    continue
            ctx.queued.discard(name)
            self._place_or_explain(u, ctx)
            for w in waiting.pop(name, ()):
                if blocked_on.pop(w, None) is not None:
                    heapq.heappush(ctx.heap, w)
        for name in sorted(ctx.failed):
            before = self._reasons.get(name)
            reasons = self._explain(self._u[name], ctx,
                                    None if name in ctx.fresh else before)
            self._reasons[name] = reasons
            plan.unplaced[name] = reasons

    @staticmethod
    def _note_cycle(name: str, peer: str, blocked_on: dict[str, str], ctx: _Pass) -> None:
        """Say so in the reasons of units whose ``MachineOf`` peers form a cycle."""
        chain = [name]
        cur = peer
        while cur not in chain and cur in blocked_on:
            chain.append(cur)
            cur = blocked_on[cur]
        if cur in chain:
            cycle = chain[chain.index(cur):]
            text = " → ".join([*cycle, cycle[0]])
            for n in cycle:
                ctx.cluster_reasons[n] = (f"MachineOf cycle ({text}): none of these units can "
                                          "be placed first")

    def _place_or_explain(self, u: _U, ctx: _Pass) -> None:
        name = u.name
        ctx.plan.evaluated.add(name)
        ctx.failed.discard(name)
        if name in ctx.placed:
            # Placed earlier in this pass and pushed off again: only configurations
            # fleet's API rejects (a global unit with MachineOf=) can chase a unit
            # around; never place it twice in one pass, so a pass always ends.
            ctx.cluster_reasons[name] = "moved twice in one pass; retried on the next pass"
            ctx.failed.add(name)
            return
        choice = self._decide(u, ctx)
        if choice is None:
            ctx.failed.add(name)  # explained at the end of the pass, against the final state
            return
        mid, victims = choice
        self._place(u, mid, victims, ctx)

    # ------------------------------------------------------------ deciding

    def _decide(self, u: _U, ctx: _Pass) -> tuple[str, tuple[str, ...]] | None:
        """fleet's ``leastLoadedScheduler.Decide``: first runnable machine by (load, id)."""
        n = len(self._m)
        if not n or self._circular_partner(u) is not None:
            return None
        fw = [self._match[p] for p in u.conflicts if p in self._match]
        rv = [self._hold_c[p] for p in self._globs.matching(u.name) if p in self._hold_c]
        if any(len(d) >= n for d in fw) or any(len(d) >= n for d in rv):
            return None  # every machine already has a conflicting resident
        blocked = fw + rv
        for mid in self._candidates(u):
            if blocked and any(mid in d for d in blocked):
                continue
            d = self._check(mid, u)
            if d.action is Action.RUN:
                return mid, ()
            if d.action is Action.RESCHEDULE and not d.replaced_by \
                    and not ctx.displaced.intersection(d.displaces) \
                    and not set(u.peers).intersection(d.displaces):
                return mid, d.displaces
        return None

    def _candidates(self, u: _U) -> Iterator[str]:
        """Machines that may take ``u``, least-loaded first; index-narrowed when possible."""
        cand: set[str] | None = None
        if u.want_id is not None:
            cand = set(self._short_ix.get(u.want_id, ()))
            if u.want_id in self._m:
                cand.add(u.want_id)
        for key, values, _ in u.meta:
            found: set[str] = set()
            for v in values:
                found |= self._meta_ix.get((key, v), set())
            cand = found if cand is None else cand & found
        for peer in u.peers:
            if peer == u.name:
                return iter(())
            where = self._where.get(peer)
            found = {where} if where is not None else set(self._g_hosts.get(peer, ()))
            cand = found if cand is None else cand & found
        if cand is None:
            return (mid for _, mid in self._order)
        if len(cand) * 8 < len(self._m):
            load = self._load
            return iter(sorted(cand, key=lambda m: (load[m], m)))
        narrowed = cand
        return (mid for _, mid in self._order if mid in narrowed)

    def _check(self, mid: str, u: _U) -> Decision:
        """``AbleToRun`` for a non-global unit on ``mid``, via the indexes.  Mirrors rules.py."""
        machine = self._m[mid]
        name = u.name
        if u.want_id is not None and u.want_id != mid and u.want_id != short_id(mid):
            return Decision(Action.REFUSE, why_machine_id(u.want_id, mid), "MachineID")
        meta = machine.metadata
        for key, values, ordered in u.meta:
            if meta.get(key) not in values:
                return Decision(Action.REFUSE, why_metadata(key, ordered, machine),
                                "MachineMetadata")
        res = self._res[mid]
        for peer in u.peers:
            if peer == name or peer not in res:
                pu = self._u.get(peer)
                reason = why_peer(peer, mid, unit_name=name, exists=pu is not None,
                                  where=self._where.get(peer),
                                  is_global=pu is not None and pu.is_global)
                return Decision(Action.REFUSE, reason, "MachineOf", peer)
        clash = self._clashes(mid, u)
        if clash:
            other = min(clash)
            return Decision(Action.REFUSE, why_conflict(other, mid), "Conflicts", other)
        if u.is_global:
            return Decision(Action.RUN)
        victims: set[str] = set()
        for p in u.replaces:
            hit = self._match.get(p, {}).get(mid)
            if hit:
                victims |= hit
        replacers: set[str] = set()
        for p in self._globs.matching(name):
            hit = self._hold_r.get(p, {}).get(mid)
            if hit:
                replacers |= hit
        victims.discard(name)
        replacers.discard(name)
        if victims or replacers:
            circular = victims & replacers
            victims = {v for v in victims - circular if not self._u[v].is_global}
            replacers -= circular
            if replacers:
                first = min(replacers)
                return Decision(Action.RESCHEDULE, why_replaced(first, mid), "Replaces", first,
                                replaced_by=first)
            if victims:
                moved = tuple(sorted(victims))
                return Decision(Action.RESCHEDULE, why_displaces(moved, mid), "Replaces",
                                moved[0], displaces=moved)
        return Decision(Action.RUN)

    def _check_global(self, mid: str, u: _U) -> Decision:
        """A global unit is checked against placed units and the globals before it by name."""
        later = {g for g in self._g_on.get(mid, ()) if g > u.name}
        if not later:
            return self._check(mid, u)
        for g in later:
            self._del_res(g, mid)
        try:
            return self._check(mid, u)
        finally:
            for g in sorted(later):
                self._add_res(g, mid)

    def _clashes(self, mid: str, u: _U) -> set[str]:
        """Residents of ``mid`` that conflict with ``u`` either way (``u`` itself skipped)."""
        found: set[str] = set()
        for p in u.conflicts:
            hit = self._match.get(p, {}).get(mid)
            if hit:
                found |= hit
        for p in self._globs.matching(u.name):
            hit = self._hold_c.get(p, {}).get(mid)
            if hit:
                found |= hit
        found.discard(u.name)
        return found

    def _circular_partner(self, u: _U) -> tuple[str, str] | None:
        """A resident that ``u`` replaces and that replaces ``u``: (name, machine), first by name."""
        if not u.replaces:
            return None
        best: tuple[str, str] | None = None
        for p in u.replaces:
            for mid, names in self._match.get(p, {}).items():
                for v in names:
                    if v == u.name or v not in self._where:
                        continue
                    if any(glob_match(q, u.name) for q in self._u[v].replaces) and (
                            best is None or (v, mid) < best):
                        best = (v, mid)
        return best

    @staticmethod
    def _why_circular(u: _U, partner: tuple[str, str]) -> str:
        return (f"{u.name} and {partner[0]} replace each other (circular Replaces=); only one "
                f"of them runs, and {partner[0]} runs on {short_id(partner[1])}")

    def _explain(self, u: _U, ctx: _Pass, previous: dict[str, str] | None = None
                 ) -> dict[str, str]:
        """``{machine: reason}`` for a unit no machine takes.

        With ``previous`` (the unit was only retried because room appeared
        somewhere), reasons are recomputed only on machines where something
        left or changed: elsewhere units only arrived, so the old refusal and
        the resident it names still hold.  That keeps a pass that frees one
        machine cheap even with thousands of unplaceable units waiting.
        """
        if not self._m:
            return {"": NO_MACHINES}
        out: dict[str, str] = {}
        notes: list[str] = []
        partner = self._circular_partner(u)
        if partner is not None:
            notes.append(self._why_circular(u, partner))
        if u.name in ctx.cluster_reasons:
            notes.append(ctx.cluster_reasons[u.name])
        if self._ids is None:
            self._ids = sorted(self._m)
        ids = self._ids
        limit = len(ids) if ctx.explain_limit is None else max(0, ctx.explain_limit)
        vacated = self._vacated_ms
        # Units with the same constraints get the same refusal on a machine (the
        # thousands of waiting instances of one template): compute it once per pass.
        shared: dict[str, str | None] | None = None
        if not u.peers and not u.replaces:
            key = (u.want_id, u.meta, u.conflicts, self._globs.matching(u.name))
            shared = ctx.shared_reasons.setdefault(key, {})
        for mid in ids[:limit]:
            if previous is not None and mid in previous and mid not in vacated:
                out[mid] = previous[mid]
                continue
            if shared is None:
                reason = self._reason_on(mid, u, ctx)
            elif mid in shared:
                reason = shared[mid]
            else:
                reason = shared[mid] = self._reason_on(mid, u, ctx)
            if reason is not None:
                out[mid] = reason
        if limit < len(ids):
            notes.append(f"no machine of {len(ids)} can take it; reasons for "
                         f"{len(ids) - limit} more machines are not listed")
        if notes:
            out[""] = "; ".join(notes)
        return out

    def _reason_on(self, mid: str, u: _U, ctx: _Pass) -> str | None:
        """Why ``u`` is not on ``mid`` (None: nothing on the machine itself refuses it)."""
        d = self._check(mid, u)
        if d.action is Action.REFUSE or d.replaced_by:
            return d.reason
        if set(u.peers).intersection(d.displaces):
            return f"{why_displaces(d.displaces, mid)}, its own MachineOf peer"
        if d.displaces and ctx.displaced.intersection(d.displaces):
            moved = sorted(ctx.displaced.intersection(d.displaces))
            return (f"{why_displaces(d.displaces, mid)}, but {', '.join(moved)} already moved "
                    "once in this pass; retried on the next pass")
        return None

    # ------------------------------------------------------------ acting

    def _place(self, u: _U, mid: str, victims: tuple[str, ...], ctx: _Pass) -> None:
        name = u.name
        # Add the newcomer before the replaced units leave: a global unit
        # re-admitted when they go must see it (and stay away if they conflict).
        self._target[name] = mid
        self._targeted.setdefault(mid, set()).add(name)
        self._add_res(name, mid)
        self._pending.discard(name)
        ctx.placed.add(name)
        # Steps are written in order; the newcomer's goes first so that a cascade
        # triggered by the replaced units leaving (rare) is recorded after it.
        ctx.plan.steps.append(Schedule(
            name, mid, f"target state {u.unit.desired} and unit not scheduled"))
        for v in victims:
            ctx.displaced.add(v)
            self._evict(v, mid, why_replaced(name, mid), ctx)
        if any(self._u[f].runs_global for f in self._followers.get(name, ())):
            self._regather_globals(mid, ctx)  # a global unit with MachineOf= on it may come
        for f in sorted(self._followers.get(name, ())):
            if f in self._pending:
                ctx.push(f)
        if victims:
            self._vacated_ms.add(mid)
            for f in sorted(ctx.failed):
                ctx.push(f, fresh=False)

    def _evict(self, name: str, mid: str, reason: str, ctx: _Pass) -> None:
        """Unschedule a resident; its followers on the machine go with it."""
        ctx.plan.steps.append(Unschedule(name, mid, reason))
        self._del_res(name, mid)
        self._untarget(name)
        self._freed = True
        self._vacated_ms.add(mid)
        u = self._u[name]
        if u.wants:
            self._pending.add(name)
            ctx.evicted.add(name)
            if ctx.scheduling:
                ctx.push(name)
        here = self._g_on[mid]
        if len(here) < len(self._globals) or not here.isdisjoint(self._followers.get(name, ())):
            # a global unit it kept out may come, or one that follows it must go
            self._regather_globals(mid, ctx)
        self._recheck_followers(name, mid, ctx)

    def _regather_globals(self, mid: str, ctx: _Pass) -> None:
        for g in sorted(self._recompute_globals(mid)):
            self._recheck_followers(g, mid, ctx)

    def _recheck_followers(self, peer: str, mid: str, ctx: _Pass) -> None:
        for f in sorted(self._followers.get(peer, ())):
            if self._where.get(f) == mid:
                self._revalidate(f, mid, ctx)

    def _recompute_globals(self, mid: str) -> set[str]:
        """Re-admit global units on ``mid`` in name order; return those that left."""
        before = set(self._g_on[mid])
        for g in sorted(before, reverse=True):
            self._del_res(g, mid)
        for g in self._globals:
            if self._check(mid, self._u[g]).action is not Action.REFUSE:
                self._add_res(g, mid)
        return before - self._g_on[mid]

    # ------------------------------------------------------------ index upkeep

    def _try_reside(self, name: str) -> None:
        """Count a schedule entry as a resident if it is valid (no checks: the pass does them)."""
        if name in self._where:
            return
        mid = self._target.get(name)
        u = self._u.get(name)
        if mid is not None and u is not None and u.wants and mid in self._m:
            self._add_res(name, mid)
            self._pending.discard(name)
            # Scheduled units come before global ones: a global unit it conflicts
            # with must leave that machine, one that follows it may now come.
            self._globals_stale.add(mid)

    def _untarget(self, name: str) -> None:
        mid = self._target.pop(name, None)
        if mid is not None:
            names = self._targeted.get(mid)
            if names is not None:
                names.discard(name)
                if not names:
                    del self._targeted[mid]

    def _bump(self, mid: str, delta: int) -> None:
        old = self._load[mid]
        self._order.remove((old, mid))
        self._load[mid] = old + delta
        self._order.add((old + delta, mid))

    def _add_res(self, name: str, mid: str) -> None:
        u = self._u[name]
        self._res[mid].add(name)
        self._bump(mid, 1)
        if u.is_global:
            self._g_on[mid].add(name)
            self._g_hosts.setdefault(name, set()).add(mid)
        else:
            self._where[name] = mid
        for p in self._globs.matching(name):
            _host_add(self._match, p, mid, name)
        for p in u.conflicts:
            _host_add(self._hold_c, p, mid, name)
        for p in u.replaces:
            _host_add(self._hold_r, p, mid, name)

    def _del_res(self, name: str, mid: str) -> None:
        u = self._u[name]
        res = self._res[mid]
        if name not in res:
            return
        res.discard(name)
        self._bump(mid, -1)
        if u.is_global:
            self._g_on[mid].discard(name)
            hosts = self._g_hosts.get(name)
            if hosts is not None:
                hosts.discard(mid)
                if not hosts:
                    del self._g_hosts[name]
        else:
            self._where.pop(name, None)
        for p in self._globs.matching(name):
            _host_del(self._match, p, mid, name)
        for p in u.conflicts:
            _host_del(self._hold_c, p, mid, name)
        for p in u.replaces:
            _host_del(self._hold_r, p, mid, name)

    def _drop_unit(self, u: _U) -> None:
        """Remove a unit from every index (before replacing or destroying it)."""
        name = u.name
        at = self._where.get(name)
        if at is not None:
            self._del_res(name, at)
        for mid in sorted(self._g_hosts.get(name, ())):
            self._del_res(name, mid)
            self._vacated(mid)
        for p in (*u.conflicts, *u.replaces):
            if self._globs.discard(p):
                self._match.pop(p, None)
                self._hold_c.pop(p, None)
                self._hold_r.pop(p, None)
        for peer in u.peers:
            f = self._followers.get(peer)
            if f is not None:
                f.discard(name)
                if not f:
                    del self._followers[peer]
        if u.runs_global:
            self._globals.remove(name)
        self._pending.discard(name)

    def _index_new_glob(self, pattern: str) -> None:
        """A glob new to the cluster: find the residents it matches."""
        rx = compile_glob(pattern)
        assert rx is not None
        hosts: dict[str, set[str]] = {}
        for mid, names in self._res.items():
            hit = {n for n in names if rx.fullmatch(n)}
            if hit:
                hosts[mid] = hit
        self._match[pattern] = hosts

    def _unindex_metadata(self, machine: Machine) -> None:
        for k, v in machine.metadata.items():
            s = self._meta_ix.get((k, v))
            if s is not None:
                s.discard(machine.id)
                if not s:
                    del self._meta_ix[(k, v)]


def reconcile(view: ClusterView, *, explain_limit: int | None = EXPLAIN_LIMIT) -> Plan:
    """One full fleet reconcile of ``view``: the plan that brings the schedule in order.

    Pure: builds a fresh :class:`Scheduler` from the view and runs one full
    pass.  A long-lived engine keeps a :class:`Scheduler` instead and calls
    its :meth:`Scheduler.reconcile` after feeding it changes, so a pass costs
    what changed, not the cluster's size.
    """
    return Scheduler(view).reconcile(full=True, explain_limit=explain_limit)
