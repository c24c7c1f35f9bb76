"""systemd's job engine in small: transactions, ordering, propagation.  Pure.

A start, stop, restart or reload request never touches one unit alone.  As in
systemd (``transaction.c``, ``job.c``, ``unit.c``; digest in systemd.md §3.1),
it becomes a *transaction*:

1. **Pull in** (:func:`build_transaction`): the requested ("anchor") job
   recursively adds jobs along the graph's atoms (:mod:`.deps`).  A start or
   restart job adds start jobs for ``Requires=``/``BindsTo=`` (must succeed)
   and ``Wants=``/``Upholds=`` (may fail), a verify-active job for
   ``Requisite=``, and stop jobs for ``Conflicts=`` (must) and the units that
   conflict with it (may).  A stop job adds stop jobs for the units that
   ``Requires=``/``Requisite=``/``BindsTo=``/are ``PartOf=`` it (and
   ``PropagatesStopTo=``); a restart job adds *try-restart* jobs for the same
   set — they restart only what is running.  A reload adds try-reloads along
   ``PropagatesReloadTo=``.
2. **Which jobs matter**: those reachable from the anchor through "must"
   links.  Only jobs that do not matter may be dropped to fix a transaction.
3. **Minimise impact** (mode ``fail`` only): drop non-mattering jobs that would
   stop a running unit or contradict a job already queued.
4. **Drop redundant** jobs (start of an active unit, stop of an inactive one…;
   a restart is never redundant) and garbage-collect what nothing pulls in.
5. **Merge** the jobs of each unit (start+verify-active → start, start+restart
   → restart, reload+start → reload-or-start → start or reload by state).  A
   stop and a non-stop job on one unit cannot merge: the one that does not
   matter is dropped (with what pulled it in); if both matter the transaction
   fails ("Transaction contains conflicting jobs …").
6. **Order** (``After=``/``Before=``, only between jobs of this transaction —
   ordering never pulls a job in): with ``a Before=b``, a's start runs before
   b's, b's stop before a's (stops in reverse), and when one stops and the
   other starts the stop runs first whatever the direction (``job_compare``).
   Without ``After=``/``Before=`` jobs run in parallel — also for
   ``Requires=`` and ``Conflicts=``, which imply no ordering (systemd.unit(5)).
   A restart is a stop then a start, each half ordered on its own, which is
   exactly how systemd runs it (the restart job is patched into a start job
   once the stop is done).  So the output is a DAG of :class:`Step`\\ s, not
   of jobs.
7. **Cycles**: an ordering cycle is broken by deleting a job on it that does
   not matter (a ``Wants=``-pulled one, with everything it alone pulled in);
   if every job on it matters, the whole transaction fails — nothing is
   half-started.  The error names the units: "Ordering cycle found:
   a.service → b.service → a.service" (each unit's job waits for the next
   one's).  flotte checks the cycle on the step graph of the merged jobs
   (systemd checks before merging, on job types), which is stricter: it also
   catches start-after-restart cycles that would deadlock systemd's run queue.
8. **Destructive?**: in mode ``fail`` a job contradicting one already queued
   (``pending``) fails the transaction; in ``replace`` the queued job is to be
   cancelled (:attr:`Transaction.replaces`).

Running a transaction is the supervisor's job; :class:`TransactionRun` keeps
the pure bookkeeping: which steps may run now, and what a finished step means
— "Dependency failed for …" for the pending start jobs of units that
``Requires=``/``BindsTo=``/``Requisite=`` a unit whose start failed
(``job_fail_dependencies``), recursively.

Runtime events are the other half of dependencies (:func:`on_unit_stopped`,
:func:`on_unit_active`, :func:`on_unit_restarted`, :func:`on_unit_removed`):
they return the :class:`Request`\\ s systemd would enqueue, each to be turned
into its own transaction.

Choices where systemd versions differ (documented per function):

* ``OnFailure=``/``OnSuccess=`` use the **v254+ timing**: they fire on every
  run that ends failed/successfully, even when ``Restart=`` restarts the unit
  (v239–v253 waited until no restart followed).  flotte has no
  ``RestartMode=direct``.
* An automatic restart of B try-restarts everything that ``Requires=``,
  ``BindsTo=`` or is ``PartOf=`` B (v254's ``restart-dependencies`` job mode;
  systemd.md §3.1).  B passing through failed/inactive on its way to the
  restart does **not** stop its ``BindsTo=`` dependents: they are restarted
  with B instead (the fleet-era behaviour sidekicks were written for).  If B
  ends up staying down, they are stopped.  A dependent's restart does not
  restart B a second time (B ``Requires=`` its sidekick and the sidekick
  ``Requires=`` B, as in the seed, would otherwise do that).

* A ``Wants=``-pulled job that cannot be added (it ``Requires=`` a unit
  nobody knows) is dropped together with everything it pulled in; systemd
  logs the error and keeps the half already added.

Not reproduced: ``isolate``/``flush``/``ignore-*`` job modes (treated as
``replace``), job timeouts (``JobTimeoutSec=``), ordering against jobs of
*other* transactions, retroactive starts on unexpected activation.
"""

from __future__ import annotations

from collections import ChainMap
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

from flotte.supervisor.deps import (
    ACTIVE_OR_ACTIVATING,
    ACTIVE_OR_RELOADING,
    CANNOT_BE_ACTIVE_WITHOUT,
    INACTIVE_OR_DEACTIVATING,
    INACTIVE_OR_FAILED,
    INVERSE,
    PINS_STOP_WHEN_UNNEEDED,
    PROPAGATE_INACTIVE_START_AS_FAILURE,
    PROPAGATE_RESTART,
    PROPAGATE_START_FAILURE,
    PROPAGATE_STOP,
    PROPAGATE_STOP_FAILURE,
    PULL_IN_START,
    PULL_IN_START_IGNORED,
    PULL_IN_STOP,
    PULL_IN_STOP_IGNORED,
    PULL_IN_VERIFY,
    RETROACTIVE_STOP_ON_STOP,
    STOP_WHEN_UNNEEDED_QUEUE,
    DependencyGraph,
    Relation,
    UnitKind,
)

__all__ = [
    "Job",
    "JobFailure",
    "JobMode",
    "JobResult",
    "JobType",
    "Outcome",
    "Reason",
    "Request",
    "Step",
    "Transaction",
    "TransactionError",
    "TransactionRun",
    "build_transaction",
    "collapse",
    "is_conflicting",
    "is_redundant",
    "merge_types",
    "on_unit_active",
    "on_unit_removed",
    "on_unit_restarted",
    "on_unit_stopped",
    "unneeded",
    "verify_result",
]


class JobType(StrEnum):
    START = "start"
    VERIFY_ACTIVE = "verify-active"
    STOP = "stop"
    RELOAD = "reload"
    RESTART = "restart"
    TRY_RESTART = "try-restart"
    TRY_RELOAD = "try-reload"
    RELOAD_OR_START = "reload-or-start"
    NOP = "nop"


class JobMode(StrEnum):
    """How a new transaction treats jobs already queued (systemctl ``--job-mode``)."""

    REPLACE = "replace"
    FAIL = "fail"
    #: A start whose restart propagates like a restart's (v254 automatic restarts).
    RESTART_DEPENDENCIES = "restart-dependencies"


class JobResult(StrEnum):
    DONE = "done"
    CANCELED = "canceled"
    TIMEOUT = "timeout"
    FAILED = "failed"
    DEPENDENCY = "dependency"
    SKIPPED = "skipped"
    INVALID = "invalid"
    ASSERT = "assert"
    UNSUPPORTED = "unsupported"


J = JobType
_START, _STOP, _VERIFY = J.START, J.STOP, J.VERIFY_ACTIVE

# -- job type algebra (job.c) --------------------------------------------------------

_MERGE: dict[frozenset[JobType], JobType | None] = {
    frozenset({J.START, J.VERIFY_ACTIVE}): J.START,
    frozenset({J.START, J.STOP}): None,
    frozenset({J.VERIFY_ACTIVE, J.STOP}): None,
    frozenset({J.RELOAD, J.START}): J.RELOAD_OR_START,
    frozenset({J.RELOAD, J.VERIFY_ACTIVE}): J.RELOAD,
    frozenset({J.RELOAD, J.STOP}): None,
    frozenset({J.RESTART, J.START}): J.RESTART,
    frozenset({J.RESTART, J.VERIFY_ACTIVE}): J.RESTART,
    frozenset({J.RESTART, J.STOP}): None,
    frozenset({J.RESTART, J.RELOAD}): J.RESTART,
}


def merge_types(a: JobType, b: JobType) -> JobType | None:
    """``job_type_lookup_merge``: one job doing both, or ``None`` if they contradict.

    Only a stop contradicts: stop merges with nothing but stop.
    """
    if a is b:
        return a
    return _MERGE.get(frozenset({a, b}))


def collapse(t: JobType, state: str) -> JobType:
    """``job_type_collapse``: resolve the conditional types against the unit's state."""
    if t is J.TRY_RESTART:
        return J.RESTART if state in ACTIVE_OR_ACTIVATING else J.NOP
    if t is J.TRY_RELOAD:
        return J.RELOAD if state in ACTIVE_OR_RELOADING else J.NOP
    if t is J.RELOAD_OR_START:
        return J.RELOAD if state in ACTIVE_OR_RELOADING else J.START
    return t


def is_redundant(t: JobType, state: str) -> bool:
    """``job_type_is_redundant``: would the job change nothing?

    A restart is never redundant: an activating unit may hold stale
    information about the unit whose restart propagated to it.
    """
    if t in (J.START, J.VERIFY_ACTIVE):
        return state in ("active", "reloading")
    if t is J.STOP:
        return state in INACTIVE_OR_FAILED
    if t is J.RELOAD:
        return state == "reloading"
    return t is J.NOP


def is_conflicting(a: JobType | str, b: JobType | str) -> bool:
    """Two jobs on one unit that cannot coexist: exactly one of them stops."""
    a, b = J(a), J(b)
    if J.NOP in (a, b):
        return False
    return (a is J.STOP) != (b is J.STOP)


def verify_result(state: str) -> JobResult | None:
    """What a verify-active job (``Requisite=``, host units) finishes with.

    Active → done; activating → ``None``: not yet, run it again when the
    unit's state changes; anything else → ``skipped`` ("… is inactive."),
    which fails the jobs that needed it.
    """
    if state in ACTIVE_OR_RELOADING:
        return JobResult.DONE
    if state == "activating":
        return None
    return JobResult.SKIPPED


def _job_mode(value: object) -> JobMode:
    """``OnFailureJobMode=`` values flotte does not implement run as ``replace``."""
    return JobMode.FAIL if value == "fail" else JobMode.REPLACE


# -- results ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reason:
    """Why a job is in a transaction: ``by``'s ``by_job`` job pulled it through ``relation``.

    ``relation`` is named from ``by``'s side: ``Requires`` (by has
    Requires=this), ``RequiredBy`` (this has Requires=by, so by's stop
    propagates here), ``ConflictedBy`` (this has Conflicts=by) …
    """

    by: str
    by_job: JobType
    relation: str

    def describe(self, unit: str) -> str:
        rel = Relation(self.relation)
        if rel in (Relation.CONFLICTED_BY,):
            return f"{self.by_job} of {self.by}: {unit} has Conflicts={self.by}"
        if rel.value in _FORWARD_NAMES:
            return f"{self.by_job} of {self.by}: {self.by} has {rel.value}={unit}"
        return (f"{self.by_job} of {self.by} propagates: {unit} has "
                f"{INVERSE[rel].value}={self.by}")


_FORWARD_NAMES = frozenset({"Requires", "Requisite", "Wants", "BindsTo", "Upholds", "Conflicts",
                            "PropagatesReloadTo", "PropagatesStopTo", "PartOf"})


@dataclass(frozen=True, slots=True)
class Job:
    """One unit's (merged) job in a transaction."""

    unit: str
    type: JobType
    anchor: bool
    #: True if the request fails when this job cannot be done (reachable from the
    #: anchor through Requires=/BindsTo=/Requisite=/Conflicts=/propagation links).
    required: bool
    reasons: tuple[Reason, ...]
    #: Units whose jobs (some step of) this job waits for.
    after: frozenset[str]

    def describe(self) -> str:
        if self.anchor:
            return "requested"
        return "; ".join(r.describe(self.unit) for r in self.reasons) or "pulled in"


@dataclass(frozen=True, slots=True)
class Step:
    """One executable action: a restart job is two steps (stop, then start).

    ``op`` is ``start``, ``stop``, ``verify-active`` or ``reload``.  ``after``
    holds the ids of the steps that must have finished (whatever their
    result) before this one may begin; ``wave`` is its layer in
    :meth:`Transaction.waves`.
    """

    unit: str
    op: JobType
    job: JobType
    after: frozenset[str]
    wave: int = 0

    @property
    def id(self) -> str:
        return f"{self.unit}/{self.op}"


@dataclass(frozen=True)
class Transaction:
    """The plan for one request: merged jobs, and their steps in a valid order."""

    anchor: Job
    mode: JobMode
    jobs: Mapping[str, Job]
    #: Topologically sorted: every step comes after all of its prerequisites.
    steps: tuple[Step, ...]
    #: Queued jobs (unit → type) this transaction cancels (mode replace).
    replaces: Mapping[str, JobType] = field(default_factory=dict)
    #: What was dropped or fixed up on the way (ignored Wants=, broken cycles…).
    notes: tuple[str, ...] = ()

    def waves(self) -> list[list[Step]]:
        """The steps in layers: everything in a wave may run in parallel."""
        out: list[list[Step]] = []
        for s in self.steps:
            while len(out) <= s.wave:
                out.append([])
            out[s.wave].append(s)
        return out

    def step(self, step_id: str) -> Step:
        for s in self.steps:
            if s.id == step_id:
                return s
        raise KeyError(step_id)

    @property
    def order(self) -> list[str]:
        return [s.id for s in self.steps]

    def describe(self) -> list[str]:
        """One line per job, for logs and ``status``."""
        return [f"{j.unit}/{j.type}: {j.describe()}" for j in self.jobs.values()]


class TransactionError(Exception):
    """The request cannot be turned into a consistent transaction; nothing ran.

    ``message`` is systemd's wording; ``path`` how the unit at fault was
    reached from the anchor (``[(unit, relation), …]``); ``cycle`` the units
    of an unbreakable ordering cycle; ``fix`` what the user can do.
    ``str()`` gives all of it.
    """

    def __init__(self, message: str, *, code: str, units: tuple[str, ...] = (),
                 cycle: tuple[str, ...] = (), fix: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.units = units
        self.cycle = cycle
        self.fix = fix
        self.path: list[tuple[str, str]] = []

    def chain(self) -> str:
        """``a.service Requires= b.service BindsTo= c.service``."""
        if not self.path:
            return ""
        parts = [f"{u} {rel}=" for u, rel in self.path]
        return " ".join(parts) + (f" {self.units[0]}" if self.units else "")

    def __str__(self) -> str:
        text = self.message
        chain = self.chain()
        if chain:
            text += f" (pulled in by: {chain})"
        if self.fix:
            text += f" — {self.fix}"
        return text


NOT_FOUND = "not-found"
LOAD_FAILED = "load-failed"
NOT_APPLICABLE = "not-applicable"
REFUSED = "refused"
CONFLICTING = "conflicting-jobs"
CYCLE = "cycle"
DESTRUCTIVE = "destructive"


# -- the builder -------------------------------------------------------------------------


@dataclass(eq=False, slots=True)
class _Link:
    subject: _TJob
    object: _TJob
    matters: bool
    conflicts: bool
    relation: str


@dataclass(eq=False, slots=True)
class _TJob:
    unit: str
    type: JobType
    subjects: list[_Link] = field(default_factory=list)  # what this job pulled in
    objects: list[_Link] = field(default_factory=list)  # what pulled this job in
    matters: bool = False
    anchor: bool = False
    alive: bool = True


_OPS: dict[JobType, tuple[JobType, ...]] = {
    J.START: (J.START,),
    J.STOP: (J.STOP,),
    J.RESTART: (J.STOP, J.START),
    J.VERIFY_ACTIVE: (J.VERIFY_ACTIVE,),
    J.RELOAD: (J.RELOAD,),
    J.NOP: (),
}


class _Builder:
    """systemd's ``Transaction``: per unit a list of candidate jobs, linked by who pulled whom.

    Links are kept (not just the jobs) because every later fix-up needs them:
    "matters" is reachability over must-links, deleting a job deletes the
    jobs that needed it, and garbage collection drops jobs nobody links to.
    """

    def __init__(self, graph: DependencyGraph, active: Mapping[str, str],
                 pending: Mapping[str, JobType | str], mode: JobMode) -> None:
        self.g = graph
        self.active = active
        self.pending = pending
        self.mode = mode
        self.jobs: dict[str, list[_TJob]] = {}
        self.anchor: _TJob | None = None
        self.notes: list[str] = []
        self._log: list[_TJob | _Link] = []

    def state(self, unit: str) -> str:
        return self.g.state(unit, self.active)

    # -- 1. pull in (transaction_add_job_and_dependencies) -------------------------
    def add(self, t: JobType, unit: str, by: _TJob | None, matters: bool,
            conflicts: bool, relation: str) -> None:
        g = self.g
        if g.kind(unit) is UnitKind.HOST:
            if t in (J.START, J.VERIFY_ACTIVE):
                t = J.VERIFY_ACTIVE  # flotte cannot start it: check that it is up
            else:
                raise TransactionError(
                    f"Job type {t} is not applicable for unit {unit}: the machine provides "
                    "it, flotte does not manage it.", code=NOT_APPLICABLE, units=(unit,))
        if t is not J.STOP:
            problem = g.load_problem(unit)
            if problem is not None:
                found = g.kind(unit) is UnitKind.FLOTTE and problem != f"Unit {unit} not found."
                raise TransactionError(
                    problem, code=LOAD_FAILED if found else NOT_FOUND, units=(unit,),
                    fix=_load_fix(unit, found, problem))
        if t is J.RELOAD and not g.can_reload(unit):
            raise TransactionError(f"Job type reload is not applicable for unit {unit}.",
                                   code=NOT_APPLICABLE, units=(unit,),
                                   fix="give the unit an ExecReload= command")
        job, is_new = self._one(t, unit)
        if by is None:
            job.anchor = True
            self.anchor = job
        else:
            link = _Link(by, job, matters, conflicts, relation)
            by.subjects.append(link)
            job.objects.append(link)
            self._log.append(link)
        if not is_new or t is J.NOP:
            return
        if t in (J.START, J.RESTART):
            self._pull_group(J.START, unit, job, PULL_IN_START, True, False, True)
            self._pull_group(J.START, unit, job, PULL_IN_START_IGNORED, False, False, False)
            self._pull_group(J.VERIFY_ACTIVE, unit, job, PULL_IN_VERIFY, True, False, True)
            self._pull_group(J.STOP, unit, job, PULL_IN_STOP, True, True, True)
            self._pull_group(J.STOP, unit, job, PULL_IN_STOP_IGNORED, False, False, False)
        restart_like = t is J.RESTART or (
            t is J.START and job.anchor and self.mode is JobMode.RESTART_DEPENDENCIES)
        if t is J.STOP or restart_like:
            propagated: set[str] = set()
            if restart_like:
                # RESTART propagates only as TRY_RESTART: never start what is not around.
                for dep, rel in self._group(unit, PROPAGATE_RESTART):
                    propagated.add(dep)
                    if self.mode is JobMode.RESTART_DEPENDENCIES and self.anchor is not None \
                            and dep == self.anchor.unit:
                        # flotte: the unit restarting on its own is not restarted again
                        # by its dependents' restarts (mutual Requires=, as in the seed)
                        continue
                    nt = collapse(J.TRY_RESTART, self.state(dep))
                    if nt is not J.NOP:
                        self._pull(nt, dep, job, rel, True, False, True)
            if t in (J.STOP, J.RESTART):
                for dep, rel in self._group(unit, PROPAGATE_STOP):
                    if dep not in propagated:
                        self._pull(J.STOP, dep, job, rel, True, False, True)
        if t is J.RELOAD:
            for dep, rel in self._group(unit, (Relation.PROPAGATES_RELOAD_TO,)):
                nt = collapse(J.TRY_RELOAD, self.state(dep))
                if nt is not J.NOP:
                    self._pull(nt, dep, job, rel, False, False, False)

    def _group(self, unit: str, rels: tuple[Relation, ...]) -> list[tuple[str, str]]:
        """Each unit once per atom, with the first relation that brings it in."""
        seen: dict[str, str] = {}
        for rel in rels:
            for dep in self.g.deps(unit, rel):
                seen.setdefault(dep, rel.value)
        return sorted(seen.items())

    def _pull_group(self, t: JobType, unit: str, by: _TJob, rels: tuple[Relation, ...],
                    matters: bool, conflicts: bool, fatal: bool) -> None:
        for dep, rel in self._group(unit, rels):
            self._pull(t, dep, by, rel, matters, conflicts, fatal)

    def _pull(self, t: JobType, dep: str, by: _TJob, rel: str, matters: bool,
              conflicts: bool, fatal: bool) -> None:
        mark = len(self._log)
        try:
            self.add(t, dep, by, matters, conflicts, rel)
        except TransactionError as exc:
            if exc.code == NOT_APPLICABLE and exc.units == (dep,):
                # systemd ignores -EBADR ("job type not applicable") for every atom
                self._rollback(mark)
                self.notes.append(f"{by.unit} {rel}={dep}: {exc.message} Ignoring.")
                return
            if fatal:
                exc.path.insert(0, (by.unit, rel))
                raise
            # A Wants=-style job that cannot be resolved is dropped with everything
            # it pulled in (systemd keeps the half; flotte does not half-start).
            self._rollback(mark)
            self.notes.append(f"Cannot add dependency job for {dep} ({by.unit} {rel}={dep}), "
                              f"ignoring: {exc.message}")

    def _one(self, t: JobType, unit: str) -> tuple[_TJob, bool]:
        lst = self.jobs.setdefault(unit, [])
        for j in lst:
            if j.type is t:
                return j, False
        j = _TJob(unit, t)
        lst.append(j)
        self._log.append(j)
        return j, True

    def _rollback(self, mark: int) -> None:
        while len(self._log) > mark:
            item = self._log.pop()
            if isinstance(item, _Link):
                item.subject.subjects.remove(item)
                item.object.objects.remove(item)
            else:
                item.alive = False
                lst = self.jobs[item.unit]
                lst.remove(item)
                if not lst:
                    del self.jobs[item.unit]

    # -- deletion, as transaction_delete_job -------------------------------------------
    def _delete(self, job: _TJob, with_dependencies: bool) -> None:
        if not job.alive:
            return
        job.alive = False
        lst = self.jobs[job.unit]
        lst.remove(job)
        if not lst:
            del self.jobs[job.unit]
        for link in job.subjects:
            link.object.objects.remove(link)
        job.subjects = []
        incoming, job.objects = job.objects, []
        for link in incoming:
            link.subject.subjects.remove(link)
        if with_dependencies:
            # whatever needed this job (through a link that matters) cannot work without it
            for link in incoming:
                if link.matters:
                    self._delete(link.subject, True)

    def _delete_unit(self, unit: str) -> None:
        for j in list(self.jobs.get(unit, ())):
            self._delete(j, True)

    def _all(self) -> list[_TJob]:
        return [j for lst in self.jobs.values() for j in lst]

    # -- 2.–4. -------------------------------------------------------------------------
    def find_matters(self) -> None:
        assert self.anchor is not None
        todo = [self.anchor]
        self.anchor.matters = True
        while todo:
            j = todo.pop()
            for link in j.subjects:
                if link.matters and not link.object.matters:
                    link.object.matters = True
                    todo.append(link.object)

    def _conflicts_pending(self, j: _TJob) -> bool:
        p = self.pending.get(j.unit)
        return p is not None and is_conflicting(j.type, p)

    def minimize_impact(self) -> None:
        """Mode fail: never stop a running unit or reverse a queued job needlessly."""
        changed = True
        while changed:
            changed = False
            for j in self._all():
                if j.matters or not j.alive:
                    continue
                stops_running = j.type is J.STOP and self.state(j.unit) in ACTIVE_OR_ACTIVATING
                if stops_running or self._conflicts_pending(j):
                    self.notes.append(f"Deleting {j.unit}/{j.type} to minimize impact.")
                    self._delete(j, True)
                    changed = True

    def drop_redundant(self) -> None:
        """Drop a unit's jobs when all of them are no-ops (never the anchor's).

        Dependencies are kept (``delete_dependencies=false``): a start of an
        already active unit goes, what needs it stays.  Deleting one unit's
        jobs never makes another unit's redundant, so one pass is enough.
        """
        for unit, lst in list(self.jobs.items()):
            if any(k.anchor or not is_redundant(k.type, self.state(unit))
                   or self._conflicts_pending(k) for k in lst):
                continue
            for k in list(lst):
                self._delete(k, False)

    def gc(self) -> None:
        """Drop the jobs nothing pulls in any more (and what only they pulled in)."""
        changed = True
        while changed:
            changed = False
            for j in self._all():
                if j.alive and not j.anchor and not j.objects:
                    self._delete(j, True)
                    changed = True

    # -- 5. merge ------------------------------------------------------------------------
    def merge(self) -> None:
        while True:
            clash = self._first_clash()
            if clash is None:
                break
            unit, a, b = clash
            if not self._delete_one_unmergeable(self.jobs[unit]):
                raise TransactionError(
                    f"Transaction contains conflicting jobs '{a}' and '{b}' for {unit}. "
                    "Probably contradicting requirement dependencies configured.",
                    code=CONFLICTING, units=(unit,),
                    fix=f"the request needs {unit} both running and stopped: check the "
                    "Requires=/BindsTo= and Conflicts= settings that lead to it")
            self.gc()
        for unit, lst in list(self.jobs.items()):
            if len(lst) == 1:
                continue
            t = lst[0].type
            for k in lst[1:]:
                merged = merge_types(t, k.type)
                assert merged is not None
                t = collapse(merged, self.state(unit))
            keep = next((j for j in lst if j.anchor), lst[0])
            for other in lst:
                if other is keep:
                    continue
                keep.matters = keep.matters or other.matters
                for link in other.subjects:
                    link.subject = keep
                    keep.subjects.append(link)
                for link in other.objects:
                    link.object = keep
                    keep.objects.append(link)
                other.subjects, other.objects, other.alive = [], [], False
            keep.type = t
            self.jobs[unit] = [keep]

    def _first_clash(self) -> tuple[str, JobType, JobType] | None:
        for unit, lst in self.jobs.items():
            t = lst[0].type
            for k in lst[1:]:
                merged = merge_types(t, k.type)
                if merged is None:
                    return unit, t, k.type
                t = collapse(merged, self.state(unit))
        return None

    def _delete_one_unmergeable(self, lst: list[_TJob]) -> bool:
        """``delete_one_unmergeable_job``: drop the job of a clashing pair that matters less."""
        for i, j in enumerate(lst):
            for k in lst[i + 1:]:
                if merge_types(j.type, k.type) is not None:
                    continue
                if not j.matters and not k.matters:
                    # think positive: rather drop a stop than a start — unless the stop
                    # is there because another unit has Conflicts= on this one
                    if j.type is J.STOP:
                        d = k if _conflicted_by(j) else j
                    elif k.type is J.STOP:
                        d = j if _conflicted_by(k) else k
                    else:
                        d = j
                elif not j.matters:
                    d = j
                elif not k.matters:
                    d = k
                else:
                    return False
                self.notes.append(f"Fixing conflicting jobs {j.unit}/{j.type},{k.unit}/{k.type} "
                                  f"by deleting job {d.unit}/{d.type}")
                self._delete(d, True)
                return True
        return False

    # -- 6.–7. order and cycles ------------------------------------------------------------
    def _step_graph(self) -> tuple[dict[str, tuple[str, JobType, JobType]], dict[str, set[str]]]:
        steps: dict[str, tuple[str, JobType, JobType]] = {}
        waits: dict[str, set[str]] = {}
        per_unit: dict[str, list[str]] = {}
        for unit, (job,) in self.jobs.items():
            ids = []
            for op in _OPS[job.type]:
                sid = f"{unit}/{op}"
                steps[sid] = (unit, op, job.type)
                waits[sid] = set()
                ids.append(sid)
            if len(ids) == 2:  # restart: the start half waits for the stop half
                waits[ids[1]].add(ids[0])
            per_unit[unit] = ids
        for u, u_steps in per_unit.items():
            for v in self.g.deps(u, Relation.BEFORE):
                for y in per_unit.get(v, ()):
                    for x in u_steps:
                        # job_compare(x, y) with u Before v: a stop of v always goes
                        # first, otherwise u's step does.
                        if steps[y][1] is J.STOP:
                            waits[x].add(y)
                        else:
                            waits[y].add(x)
        return steps, waits

    def order(self) -> tuple[dict[str, tuple[str, JobType, JobType]], dict[str, set[str]]]:
        while True:
            steps, waits = self._step_graph()
            cycle = _find_cycle(waits)
            if cycle is None:
                return steps, waits
            units = [steps[s][0] for s in cycle]
            assert self.anchor is not None
            start = units.index(self.anchor.unit) if self.anchor.unit in units else \
                units.index(min(units))
            units = units[start:] + units[:start]
            ring = " → ".join([*units, units[0]])
            victim = next((u for u in units if not self.jobs[u][0].matters), None)
            if victim is None:
                raise TransactionError(
                    f"Ordering cycle found: {ring}.", code=CYCLE, units=tuple(units),
                    cycle=tuple(units),
                    fix="each unit's job waits for the next one's and every one is required "
                    "by the request, so nothing was started; remove one of the "
                    "After=/Before= settings between these units")
            vjob = self.jobs[victim][0]
            self.notes.append(f"Ordering cycle found: {ring}; job {victim}/{vjob.type} deleted "
                              f"to break ordering cycle starting with {units[0]}")
            self._delete_unit(victim)
            self.gc()

    # -- 8. -------------------------------------------------------------------------------
    def check_pending(self) -> dict[str, JobType]:
        replaces: dict[str, JobType] = {}
        assert self.anchor is not None
        for unit, (job,) in self.jobs.items():
            p = self.pending.get(unit)
            if p is None or not is_conflicting(job.type, p):
                continue
            if self.mode is JobMode.FAIL:
                raise TransactionError(
                    f"Transaction for {self.anchor.unit}/{self.anchor.type} is destructive "
                    f"({unit} has '{p}' job queued, but '{job.type}' is included in "
                    "transaction).", code=DESTRUCTIVE, units=(unit,),
                    fix="wait for the queued job to finish, or use job mode replace")
            replaces[unit] = J(p)
        return replaces


def _conflicted_by(j: _TJob) -> bool:
    return any(link.conflicts for link in j.objects)


def _find_cycle(waits: Mapping[str, set[str]]) -> list[str] | None:
    """A cycle in the waits-for graph (each step waits for the next), or ``None``."""
    white, grey, black = 0, 1, 2
    color = dict.fromkeys(waits, white)
    for root in sorted(waits):
        if color[root] != white:
            continue
        stack: list[tuple[str, list[str]]] = [(root, sorted(waits[root]))]
        path = [root]
        color[root] = grey
        while stack:
            node, todo = stack[-1]
            if not todo:
                stack.pop()
                path.pop()
                color[node] = black
                continue
            nxt = todo.pop(0)
            if color[nxt] == grey:
                return path[path.index(nxt):]
            if color[nxt] == white:
                color[nxt] = grey
                path.append(nxt)
                stack.append((nxt, sorted(waits[nxt])))
    return None


def _load_fix(unit: str, found: bool, problem: str) -> str:
    if not found:
        return (f"load {unit} into flotte, or add it to this machine's host units if the "
                "machine provides it")
    if "masked" in problem:
        return f"unmask {unit} (its unit file is empty or links to /dev/null)"
    return f"fix the unit file (`flotte verify {unit}` shows the problem), then load it again"


def build_transaction(
    graph: DependencyGraph,
    anchor: str,
    job_type: JobType | str,
    mode: JobMode | str = JobMode.REPLACE,
    active: Mapping[str, str] | None = None,
    *,
    pending: Mapping[str, JobType | str] | None = None,
    manual: bool = False,
) -> Transaction:
    """Turn a request into a transaction, as systemd's ``manager_add_job`` does.

    ``job_type``: start, stop, restart, reload, try-restart (also try-reload,
    reload-or-start).  ``active`` maps unit → active state (missing units:
    see :meth:`DependencyGraph.state`).  ``pending`` maps unit → type of a job
    already queued or running (for modes ``fail``/``replace``).  ``manual``
    applies ``RefuseManualStart=``/``RefuseManualStop=`` (a request by a user,
    not by a dependency).

    Raises :class:`TransactionError` when the transaction cannot be made
    consistent; then nothing is to be run at all.  See the module docstring
    for the steps and the systemd rules they follow.
    """
    active = active if active is not None else {}
    # not copied: the supervisor passes its live map, which may hold many jobs
    pend: Mapping[str, JobType | str] = pending if pending is not None else {}
    mode = JobMode(mode)
    t = J(job_type)
    if manual:
        _check_manual(graph, anchor, t)
    t = collapse(t, graph.state(anchor, active))
    b = _Builder(graph, active, pend, mode)
    if t is J.NOP:
        nop = Job(anchor, J.NOP, True, True, (), frozenset())
        return Transaction(nop, mode, MappingProxyType({anchor: nop}), (),
                           notes=(f"{anchor} is not active: nothing to do",))
    b.add(t, anchor, None, True, False, "request")
    b._log = []  # rollback is only for the pull-in phase
    b.find_matters()
    if mode is JobMode.FAIL:
        b.minimize_impact()
    b.drop_redundant()
    b.gc()
    b.merge()
    b.drop_redundant()
    b.gc()
    steps, waits = b.order()
    replaces = b.check_pending()
    return _result(b, steps, waits, mode, replaces)


def _check_manual(graph: DependencyGraph, unit: str, t: JobType) -> None:
    starts = t in (J.START, J.RESTART, J.TRY_RESTART, J.RELOAD_OR_START)
    stops = t in (J.STOP, J.RESTART, J.TRY_RESTART)
    if (starts and graph.setting(unit, "RefuseManualStart", False)) or \
            (stops and graph.setting(unit, "RefuseManualStop", False)):
        what = "start" if starts and graph.setting(unit, "RefuseManualStart", False) else "stop"
        raise TransactionError(
            f"Operation refused, unit {unit} may be requested by dependency only (it is "
            f"configured to refuse manual {what}).", code=REFUSED, units=(unit,),
            fix=f"start or stop a unit that depends on it, or drop RefuseManual"
            f"{what.capitalize()}=")


def _result(b: _Builder, steps: Mapping[str, tuple[str, JobType, JobType]],
            waits: Mapping[str, set[str]], mode: JobMode,
            replaces: dict[str, JobType]) -> Transaction:
    # Kahn's algorithm, layer by layer, ties broken by unit name: a stable plan.
    def key(sid: str) -> tuple[str, int]:
        unit, op, job = steps[sid]
        return unit, _OPS[job].index(op)

    missing = {sid: len(w) for sid, w in waits.items()}
    dependents: dict[str, list[str]] = {sid: [] for sid in waits}
    for sid, w in waits.items():
        for p in w:
            dependents[p].append(sid)
    ready = sorted((sid for sid, n in missing.items() if n == 0), key=key)
    wave_of: dict[str, int] = {}
    order: list[str] = []
    wave = 0
    while ready:
        nxt: list[str] = []
        for sid in ready:
            wave_of[sid] = wave
            order.append(sid)
            for d in dependents[sid]:
                missing[d] -= 1
                if not missing[d]:
                    nxt.append(d)
        ready = sorted(nxt, key=key)
        wave += 1
    assert len(order) == len(waits), "cycle left after order()"
    out_steps = tuple(Step(steps[sid][0], steps[sid][1], steps[sid][2], frozenset(waits[sid]),
                           wave_of[sid]) for sid in order)
    per_unit: dict[str, list[str]] = {}
    for sid in order:
        per_unit.setdefault(steps[sid][0], []).append(sid)
    position = {sid: i for i, sid in enumerate(order)}
    jobs: dict[str, Job] = {}
    anchor_job: Job | None = None
    for unit in sorted(b.jobs, key=lambda u: position[per_unit[u][0]] if u in per_unit else -1):
        (tj,) = b.jobs[unit]
        reasons = sorted({Reason(link.subject.unit, link.subject.type, link.relation)
                          for link in tj.objects}, key=lambda r: (r.by, r.relation))
        after = frozenset(steps[w][0] for sid in per_unit.get(unit, ()) for w in waits[sid]
                          if steps[w][0] != unit)
        job = Job(unit, tj.type, tj.anchor, tj.matters, tuple(reasons), after)
        jobs[unit] = job
        if tj.anchor:
            anchor_job = job
    assert anchor_job is not None
    return Transaction(anchor_job, mode, MappingProxyType(jobs), out_steps,
                       MappingProxyType(replaces), tuple(b.notes))


# -- running a transaction ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Request:
    """A job the supervisor should enqueue (as its own transaction)."""

    unit: str
    type: JobType
    mode: JobMode
    reason: str


@dataclass(frozen=True, slots=True)
class JobFailure:
    """A job failed because of another unit: what ``status`` shows as the cause."""

    unit: str
    result: JobResult
    #: The unit whose job failure caused this one, and this unit's relation to it.
    cause: str
    relation: str
    message: str

    def explain(self) -> str:
        return f"{self.message} ({self.unit} has {self.relation}={self.cause}, whose job failed)"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What finishing one step led to."""

    failures: tuple[JobFailure, ...] = ()
    requests: tuple[Request, ...] = ()


class TransactionRun:
    """Bookkeeping for executing one :class:`Transaction` (no I/O, no asyncio).

    The executor loops: run every step of :meth:`runnable` (in parallel),
    report each with :meth:`finish`, until :attr:`finished`.  A step is
    runnable when every step it waits for has finished — with any result:
    ordering is not requirement (systemd.md §3.1).  Failures travel through
    requirement dependencies instead (``job_fail_dependencies``):

    * a start or verify-active job that does not end ``done`` fails the
      not-yet-finished start/verify-active jobs of the units that
      ``Requires=``, ``Requisite=`` or ``BindsTo=`` it, with result
      ``dependency`` ("Dependency failed for …"), recursively;
    * a start that ends ``done`` with the unit not active (a condition
      skipped it) fails the jobs of units with ``Requisite=`` on it;
    * a failed stop fails the start jobs of units that ``Conflicts=`` it;
    * a job ending ``timeout`` or ``dependency`` triggers the unit's
      ``OnFailure=`` (a run that fails is the unit's business:
      :func:`on_unit_stopped`).

    A restart job counts as a start job once its stop half is done, as
    systemd patches it.  A job failed while its step is already running
    keeps running (the executor cannot take a start back); its later
    :meth:`finish` is ignored.
    """

    def __init__(self, tx: Transaction, graph: DependencyGraph) -> None:
        self.tx = tx
        self.graph = graph
        self._status: dict[str, str] = {s.id: "waiting" for s in tx.steps}
        self._steps = {s.id: s for s in tx.steps}
        self._type: dict[str, JobType] = {u: j.type for u, j in tx.jobs.items()}
        # incremental readiness: unsettled prerequisites per step
        self._missing = {s.id: len(s.after) for s in tx.steps}
        self._dependents: dict[str, list[str]] = {s.id: [] for s in tx.steps}
        self._unit_steps: dict[str, list[str]] = {}
        for s in tx.steps:
            self._unit_steps.setdefault(s.unit, []).append(s.id)
            for p in s.after:
                self._dependents[p].append(s.id)
        self._settled: set[str] = set()
        self._pos = {s.id: i for i, s in enumerate(tx.steps)}
        self._ready = {sid for sid, n in self._missing.items() if not n}
        self.results: dict[str, JobResult] = {}
        self.failures: list[JobFailure] = []
        if tx.anchor.type is J.NOP:
            self._set_result(tx.anchor.unit, JobResult.DONE)

    @property
    def finished(self) -> bool:
        return len(self.results) == len(self.tx.jobs)

    @property
    def result(self) -> JobResult | None:
        """The anchor job's result: the request's answer."""
        return self.results.get(self.tx.anchor.unit)

    def _settle(self, sid: str) -> None:
        if sid not in self._settled:
            self._settled.add(sid)
            for d in self._dependents[sid]:
                self._missing[d] -= 1
                if not self._missing[d] and self._status[d] == "waiting":
                    self._ready.add(d)

    def _set_result(self, unit: str, result: JobResult) -> None:
        """A finished job settles all its steps: whoever waited for them may go."""
        self.results[unit] = result
        for sid in self._unit_steps.get(unit, ()):
            self._settle(sid)

    def runnable(self) -> list[Step]:
        return [self._steps[sid] for sid in sorted(self._ready, key=self._pos.__getitem__)
                if self._steps[sid].unit not in self.results]

    def begin(self, step: Step | str) -> None:
        sid = step if isinstance(step, str) else step.id
        self._status[sid] = "running"
        self._ready.discard(sid)

    def cancel(self, unit: str) -> None:
        """A newer transaction replaced this job: it ends ``canceled``, nothing propagates."""
        if unit in self.tx.jobs and unit not in self.results:
            self._set_result(unit, JobResult.CANCELED)

    def finish(self, step: Step | str, result: JobResult | str,
               state: str | None = None) -> Outcome:
        """Report a step's result and the unit's active state afterwards.

        For a start step, ``skipped`` (what ``Service.start`` says when a
        condition failed) means ``done`` with the unit inactive, as in
        systemd.  For a verify-active step pass :func:`verify_result`'s answer.
        """
        sid = step if isinstance(step, str) else step.id
        s = self._steps[sid]
        self._status[sid] = "done"
        self._ready.discard(sid)
        self._settle(sid)
        unit = s.unit
        if unit in self.results:
            return Outcome()
        res = JobResult(result)
        if s.op is J.START and res is JobResult.SKIPPED:
            res, state = JobResult.DONE, state or "inactive"
        job = self.tx.jobs[unit]
        failures: list[JobFailure] = []
        requests: list[Request] = []
        if res is JobResult.DONE:
            if s.op is J.STOP and job.type is J.RESTART:
                self._type[unit] = J.START  # patched: from now on it is a start job
                return Outcome()
            self._set_result(unit, res)
            if s.op in (J.START, J.RELOAD) and state is not None and \
                    state not in ACTIVE_OR_RELOADING:
                self._fail_dependents(unit, PROPAGATE_INACTIVE_START_AS_FAILURE,
                                      failures, requests)
            return Outcome(tuple(failures), tuple(requests))
        self._set_result(unit, res)
        t = self._type[unit]
        if res in (JobResult.TIMEOUT, JobResult.DEPENDENCY):
            requests.extend(_on_failure_requests(self.graph, unit))
        if t in (J.START, J.VERIFY_ACTIVE):
            self._fail_dependents(unit, PROPAGATE_START_FAILURE, failures, requests)
        elif t is J.STOP:
            self._fail_dependents(unit, PROPAGATE_STOP_FAILURE, failures, requests)
        return Outcome(tuple(failures), tuple(requests))

    def _fail_dependents(self, unit: str, rels: tuple[Relation, ...],
                         failures: list[JobFailure], requests: list[Request]) -> None:
        for rel in rels:
            for other in self.graph.deps(unit, rel):
                if other not in self.tx.jobs or other in self.results:
                    continue
                if self._type[other] not in (J.START, J.VERIFY_ACTIVE):
                    continue
                self._set_result(other, JobResult.DEPENDENCY)
                f = JobFailure(other, JobResult.DEPENDENCY, unit, INVERSE[rel].value,
                               f"Dependency failed for {self.graph.description(other)}.")
                failures.append(f)
                self.failures.append(f)
                requests.extend(_on_failure_requests(self.graph, other))
                self._fail_dependents(other, PROPAGATE_START_FAILURE, failures, requests)


# -- runtime propagation ---------------------------------------------------------------


def _on_failure_requests(graph: DependencyGraph, unit: str) -> list[Request]:
    mode = _job_mode(graph.setting(unit, "OnFailureJobMode", "replace"))
    return [Request(dep, J.START, mode, f"Triggering OnFailure= dependencies of {unit}.")
            for dep in graph.deps(unit, Relation.ON_FAILURE)]


def unneeded(graph: DependencyGraph, unit: str, active: Mapping[str, str],
             pending: Mapping[str, JobType | str] | None = None) -> bool:
    """``unit_is_unneeded``: a ``StopWhenUnneeded=yes`` unit nobody pins any more.

    Pinned by any unit that ``Requires=``/``Requisite=``/``Wants=``/
    ``BindsTo=``/``Upholds=`` it and is not inactive/failed (an
    auto-restarting unit is activating, so it still pins) or has a job.
    Never while the unit itself is not active or has a job.
    """
    pending = pending or {}
    if not graph.setting(unit, "StopWhenUnneeded", False):
        return False
    if graph.state(unit, active) not in ACTIVE_OR_RELOADING or unit in pending:
        return False
    for other in graph.deps(unit, *PINS_STOP_WHEN_UNNEEDED):
        if other in pending or graph.state(other, active) not in INACTIVE_OR_FAILED:
            return False
    return True


def _overlay(active: Mapping[str, str]) -> ChainMap[str, str]:
    """``active`` with room for what the event changes, without copying it.

    The supervisor passes a live view of every unit's state; copying it for
    each state change of a unit would cost O(units) per event.
    """
    return ChainMap({}, active)  # type: ignore[arg-type]


def _dedupe(reqs: Iterable[Request]) -> list[Request]:
    seen: set[tuple[str, JobType]] = set()
    out: list[Request] = []
    for r in reqs:
        if (r.unit, r.type) not in seen:
            seen.add((r.unit, r.type))
            out.append(r)
    return out


def on_unit_stopped(
    graph: DependencyGraph,
    name: str,
    result: str,
    active: Mapping[str, str],
    *,
    state: str | None = None,
    previous: str = "active",
    expected: bool = False,
    will_restart: bool = False,
    pending: Mapping[str, JobType | str] | None = None,
) -> list[Request]:
    """``name`` went down (``inactive``/``failed``): the jobs systemd's ``unit_notify`` queues.

    ``result`` is the service's result (``success``, ``exit-code`` …);
    ``state`` the state it entered (default: ``inactive`` on success, else
    ``failed``); ``previous`` the state before; ``expected`` whether a stop
    job of ours caused it; ``will_restart`` whether ``Restart=`` will start it
    again (the unit is in ``auto-restart`` now).

    * ``BindsTo=``/``PropagatesStopTo=``: an unexpected stop (crash, exit,
      failure) stops the units bound to it (mode replace); after an expected
      one, bound units that are still active without a job are stopped
      ("Unit is bound to inactive unit …", mode fail).  Not while it will
      auto-restart: its dependents are restarted with it
      (:func:`on_unit_restarted`).  ``Requires=`` reacts to jobs only, never
      to a crash (systemd.md §8 rule 17).
    * ``OnFailure=`` when it entered ``failed``, ``OnSuccess=`` when it entered
      ``inactive`` from a running state — on every run, auto-restart or not
      (v254+ timing), with ``OnFailureJobMode=``/``OnSuccessJobMode=``.
    * ``StopWhenUnneeded=`` units it was pinning that nobody pins any more.
    * ``Upholds=``: an active unit upholding it starts it again (mode fail).
    """
    new = state or ("inactive" if result == "success" else "failed")
    act = _overlay(active)
    act[name] = "activating" if will_restart else new
    pend = pending or {}
    out: list[Request] = []
    if not will_restart:
        if not expected:
            for dep in graph.deps(name, *RETROACTIVE_STOP_ON_STOP):
                if graph.state(dep, act) not in INACTIVE_OR_DEACTIVATING:
                    rel = "BindsTo" if graph.has(dep, Relation.BINDS_TO, name) \
                        else "StopPropagatedFrom"
                    out.append(Request(dep, J.STOP, JobMode.REPLACE,
                                       f"{name} stopped and {dep} has {rel}={name}."))
        if name not in pend:
            for dep in graph.deps(name, Relation.BOUND_BY):
                if graph.state(dep, act) == "active" and dep not in pend:
                    out.append(Request(dep, J.STOP, JobMode.FAIL,
                                       f"Unit is bound to inactive unit {name}. Stopping, too."))
    if new == "failed" and previous != "failed":
        out.extend(_on_failure_requests(graph, name))
    elif new == "inactive" and previous not in ("inactive", "failed", "maintenance"):
        mode = _job_mode(graph.setting(name, "OnSuccessJobMode", "fail"))
        out.extend(Request(dep, J.START, mode, f"Triggering OnSuccess= dependencies of {name}.")
                   for dep in graph.deps(name, Relation.ON_SUCCESS))
    if not will_restart:
        for dep in graph.deps(name, *STOP_WHEN_UNNEEDED_QUEUE):
            if unneeded(graph, dep, act, pend):
                out.append(Request(dep, J.STOP, JobMode.FAIL,
                                   "Unit not needed anymore. Stopping."))
        if name not in pend:
            upholders = [u for u in graph.deps(name, Relation.UPHELD_BY)
                         if graph.state(u, act) in ACTIVE_OR_RELOADING]
            if upholders:
                out.append(Request(name, J.START, JobMode.FAIL,
                                   f"Unit is upheld by active unit {upholders[0]}, "
                                   "starting it again."))
    return _dedupe(out)


def on_unit_active(
    graph: DependencyGraph,
    name: str,
    active: Mapping[str, str],
    *,
    pending: Mapping[str, JobType | str] | None = None,
) -> list[Request]:
    """``name`` became active: stop it again if it may not stay up.

    * ``BindsTo=`` a unit that is inactive with no job (e.g. it was skipped by
      a condition, or is a oneshot that already finished): "Unit is bound to
      inactive unit …" — systemd starts the unit and then stops it, and so do
      we (``unit_check_binds_to``).
    * ``StopWhenUnneeded=yes`` and nothing pins it (started by hand).
    """
    pend = pending or {}
    act = _overlay(active)
    act[name] = "active"
    out: list[Request] = []
    if name not in pend:
        for dep in graph.deps(name, *CANNOT_BE_ACTIVE_WITHOUT):
            if dep not in pend and graph.state(dep, act) in INACTIVE_OR_FAILED:
                out.append(Request(name, J.STOP, JobMode.FAIL,
                                   f"Unit is bound to inactive unit {dep}. Stopping, too."))
                break
    if unneeded(graph, name, act, pend):
        out.append(Request(name, J.STOP, JobMode.FAIL, "Unit not needed anymore. Stopping."))
    return _dedupe(out)


def on_unit_restarted(
    graph: DependencyGraph,
    name: str,
    active: Mapping[str, str],
    *,
    pending: Mapping[str, JobType | str] | None = None,
) -> list[Request]:
    """``Restart=`` is starting ``name`` again: restart what depends on it.

    systemd ≥ 254 enqueues the automatic restart as a start job in mode
    ``restart-dependencies``, which try-restarts every running unit that
    ``Requires=``, ``Requisite=``, ``BindsTo=`` or is ``PartOf=`` it
    (systemd.md §3.1, §8 rule 18).  The returned request is that job:
    building it gives a transaction whose start step for ``name`` just
    waits for the restart already under way, with the dependents' stops
    ordered before and their starts after it.  Nothing is returned when no
    dependent is running.
    """
    act = _overlay(active)
    act.setdefault(name, "activating")
    deps = [d for d in graph.deps(name, *PROPAGATE_RESTART)
            if graph.state(d, act) in ACTIVE_OR_ACTIVATING]
    if not deps:
        return []
    return [Request(name, J.START, JobMode.RESTART_DEPENDENCIES,
                    f"Automatic restart of {name} restarts {', '.join(deps)}.")]


def on_unit_removed(
    graph: DependencyGraph,
    name: str,
    active: Mapping[str, str],
    *,
    pending: Mapping[str, JobType | str] | None = None,
) -> list[Request]:
    """``name`` vanished (unloaded/destroyed): units bound to it must go too.

    ``BindsTo=`` follows the other unit's existence as well as its state; a
    unit that ``Requires=`` it only notices at its next start ("Unit … not
    found.").  Call before or after :meth:`DependencyGraph.remove` — the
    ``BoundBy`` edges come from the dependents' own files.
    """
    pend = pending or {}
    return [Request(dep, J.STOP, JobMode.REPLACE,
                    f"{name} is gone and {dep} has BindsTo={name}.")
            for dep in graph.deps(name, Relation.BOUND_BY)
            if graph.state(dep, active) not in INACTIVE_OR_DEACTIVATING and dep not in pend]
