"""The public face of one machine's service manager.

::

    async with Supervisor(state_dir="/var/lib/flotte", machine=ctx) as sup:
        await sup.load("/etc/flotte/units/web.service")
        await sup.start("web.service")
        sup.status("web.service")          # load/active/sub state, result, main PID …
        async for change in sup.events():  # state changes of every unit
            ...
        for entry in sup.journal("web.service", lines=20):
            print(entry.format())

It knows nothing about the cluster: the agent (``flotte.agent``) drives it.

Dependencies
------------
Every start/stop/restart/reload request becomes a transaction of jobs
(:mod:`flotte.supervisor.jobs`, built on the graph of
:mod:`flotte.supervisor.deps`), which this module executes: each
:class:`~flotte.supervisor.jobs.Step` runs as a task as soon as the steps it
is ordered after have finished, and each finished step is reported back to
the pure :class:`~flotte.supervisor.jobs.TransactionRun`, which says which
jobs failed with it ("Dependency failed for …") and what else to enqueue
(``OnFailure=``).  State changes of units feed the runtime rules
(``BindsTo=``, restarts propagated to dependents, ``StopWhenUnneeded=`` …),
whose requests become transactions of their own.

A unit without any dependency edge (most of a fleet machine's units) takes
a fast path straight to its :class:`~flotte.supervisor.service.Service`: a
transaction of one job needs no plan, and 1,000 such starts at once must
not pay for one.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import os
import resource
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from flotte.supervisor.cgroups import CgroupManager, UnitCgroup
from flotte.supervisor.conditions import Host
from flotte.supervisor.deps import (
    ACTIVE_OR_ACTIVATING,
    INACTIVE_OR_FAILED,
    DependencyGraph,
    HostUnits,
    InstallChange,
    InstallError,
    UnitKind,
)
from flotte.supervisor.execenv import (
    EnvironmentFileError,
    build_environment,
    cgroup_limits,
    exec_spec_for,
)
from flotte.supervisor.jobs import (
    NOT_APPLICABLE,
    JobMode,
    JobResult,
    JobType,
    Request,
    Step,
    TransactionError,
    TransactionRun,
    build_transaction,
    is_conflicting,
    on_unit_active,
    on_unit_removed,
    on_unit_restarted,
    on_unit_stopped,
    verify_result,
)
from flotte.supervisor.journal import Entry, Follower, Journal, JournalPipe
from flotte.supervisor.launcher import Child, SpawnFailure, spawn, watch_pid
from flotte.supervisor.model import ExitInfo, Result, active_state
from flotte.supervisor.notify import NotifyServer
from flotte.supervisor.service import JobNotApplicable, Service
from flotte.unit.execline import ExecCommand
from flotte.unit.loader import Unit, load_text, load_unit
from flotte.unit.specifiers import SpecifierContext

__all__ = ["HOST_UNITS_FILE", "InstallChange", "InstallError", "JobNotApplicable", "NoSuchUnit",
           "ProcessHandle", "StateChange", "Supervisor", "TransactionError", "UnitLoadError"]

log = logging.getLogger("flotte.supervisor")

J = JobType

#: The per-machine host units file, in the state directory (format: HostUnits.parse).
HOST_UNITS_FILE = "host-units"
#: The enabled units ([Install] applied), one name per line, in the state directory.
ENABLED_FILE = "enabled"
#: How long a host unit's check command may run before it counts as failed.
HOST_CHECK_TIMEOUT = 30.0
#: How long a host check's answer is trusted when planning a transaction.  Short:
#: flotte has no feed of the host's real state, so a later start checks again
#: rather than trusting that docker.service is still up an hour later.
HOST_CHECK_FRESH = 5.0


class NoSuchUnit(KeyError):
    def __str__(self) -> str:
        return f"Unit {self.args[0]} not loaded."


class UnitLoadError(ValueError):
    """The unit file does not load (bad-setting, error, masked …); see ``unit.diagnostics``."""

    def __init__(self, unit: Unit) -> None:
        lines = "; ".join(d.render() for d in unit.diagnostics if d.severity.value == "error")
        super().__init__(f"unit {unit.name} is {unit.load_state}: {lines or 'see diagnostics'}")
        self.unit = unit


class SpawnProblem(Exception):
    """A command could not be started; how systemd would report it."""

    def __init__(self, exit_code: int, status_name: str, message: str, reason: str,
                 result: Result = Result.EXIT_CODE) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.status_name = status_name
        self.message = message
        self.reason = reason
        self.result = result


@dataclass(frozen=True, slots=True)
class StateChange:
    unit: str
    load_state: str
    active_state: str
    sub_state: str
    result: str
    main_pid: int | None
    time: float = field(default_factory=time.time)


class ProcessHandle:
    """A process of a unit, spawned by us or adopted by PID (a forking daemon's main)."""

    __slots__ = ("_callbacks", "child", "done", "pid")

    def __init__(self, child: Child) -> None:
        self.child = child
        self.pid = child.pid
        self.done: asyncio.Future[ExitInfo] = asyncio.get_running_loop().create_future()
        self._callbacks: list[Callable[[ProcessHandle], None]] = []
        child.add_exit_callback(self._exited)

    def _exited(self, child: Child) -> None:
        if not self.done.done() and child.exit is not None:
            self.done.set_result(child.exit)
        for cb in self._callbacks:
            cb(self)

    @property
    def exited(self) -> bool:
        return self.done.done()

    def exit_info(self) -> ExitInfo:
        return self.done.result()

    def on_exit(self, cb: Callable[[ProcessHandle], None]) -> None:
        self._callbacks.append(cb)
        if self.done.done():
            cb(self)

    def signal(self, sig: int) -> None:
        """Through the pidfd: never hits a recycled PID."""
        self.child.signal(sig)


class _States(Mapping[str, str]):
    """Every unit's active state, read when asked.

    The transaction builder and the propagation rules look up a handful of
    units per request; building a dict of 1,000 states for each of 1,000
    concurrent requests would be quadratic.  ``plan`` hides host check
    results older than :data:`HOST_CHECK_FRESH`, so that planning runs the
    check again (a verify-active job) instead of trusting an old answer,
    while the runtime rules (``BindsTo=docker.service``) keep the last one.
    """

    __slots__ = ("_host", "_plan", "_units")

    def __init__(self, units: dict[str, Service], host: dict[str, tuple[str, float]],
                 plan: bool) -> None:
        self._units = units
        self._host = host
        self._plan = plan

    def __getitem__(self, name: str) -> str:
        svc = self._units.get(name)
        if svc is not None:
            return svc.active_state
        state, when = self._host[name]
        if self._plan and time.monotonic() - when > HOST_CHECK_FRESH:
            raise KeyError(name)
        return state

    def __iter__(self) -> Iterator[str]:
        yield from self._units
        for name in self._host:
            if name not in self._units and name in self:
                yield name

    def __len__(self) -> int:
        return sum(1 for _ in self)


class _Without(Mapping[str, JobType]):
    """The pending jobs minus one unit's (its job is completed by the event at hand)."""

    __slots__ = ("_jobs", "_name")

    def __init__(self, jobs: Mapping[str, JobType], name: str) -> None:
        self._jobs = jobs
        self._name = name

    def __getitem__(self, name: str) -> JobType:
        if name == self._name:
            raise KeyError(name)
        return self._jobs[name]

    def __contains__(self, name: object) -> bool:
        return name != self._name and name in self._jobs

    def __iter__(self) -> Iterator[str]:
        return (n for n in self._jobs if n != self._name)

    def __len__(self) -> int:
        return len(self._jobs) - (self._name in self._jobs)


class _Exec:
    """One transaction being executed: its bookkeeping and who waits for it."""

    __slots__ = ("anchor_raw", "done", "run")

    def __init__(self, run: TransactionRun, done: asyncio.Future[None]) -> None:
        self.run = run
        self.done = done
        #: what the anchor's start step answered ("skipped" when a condition failed)
        self.anchor_raw = ""


class Supervisor:
    """Runs services from unit files with systemd's [Service] and [Unit] dependency semantics.

    ``host_units``: the units this machine provides outside flotte (see
    :class:`~flotte.supervisor.deps.HostUnits`; defaults when omitted).  A
    file ``<state_dir>/host-units`` is applied on top of them.
    """

    def __init__(self, state_dir: str | Path, machine: SpecifierContext | None = None, *,
                 journal_max_bytes: int = 8 * 1024 * 1024, cgroup_root: str = "flotte",
                 host: Host | None = None, host_units: HostUnits | None = None) -> None:
        self.state_dir = Path(state_dir)
        self.ctx = machine or SpecifierContext.from_host()
        self.host = host or Host(hostname=self.ctx.hostname or os.uname().nodename,
                                 machine_id=self.ctx.machine_id)
        self._journal_max = journal_max_bytes
        self._cgroup_root = cgroup_root
        self.units: dict[str, Service] = {}
        self._cgroups: dict[str, UnitCgroup] = {}
        self._subscribers: set[asyncio.Queue[StateChange]] = set()
        self.journal_store: Journal | None = None
        self.notify: NotifyServer | None = None
        self.cgroups: CgroupManager | None = None
        # -- dependencies and jobs
        # a copy: the machine's file must not change the caller's list
        hosts = HostUnits(host_units.entries(), defaults=False) if host_units is not None \
            else HostUnits()
        hosts_file = self.state_dir / HOST_UNITS_FILE
        if hosts_file.exists():
            try:
                hosts.update(hosts_file.read_text())
            except ValueError as exc:
                raise ValueError(f"{hosts_file}: {exc}") from None
        enabled_file = self.state_dir / ENABLED_FILE
        enabled = enabled_file.read_text().split() if enabled_file.exists() else []
        self.graph = DependencyGraph(host=hosts, enabled=enabled, ctx=self.ctx)
        #: last check of each host unit: (active state, time.monotonic())
        self._host_state: dict[str, tuple[str, float]] = {}
        self._states = _States(self.units, self._host_state, plan=False)
        self._plan_states = _States(self.units, self._host_state, plan=True)
        #: unfinished jobs of live transactions, per unit (newest last), and the
        #: newest one's type: what build_transaction calls "pending"
        self._jobs: dict[str, list[tuple[_Exec, JobType]]] = {}
        self._pending: dict[str, JobType] = {}
        self._runs: set[_Exec] = set()
        #: units with a stop step of ours running (their stop is "expected")
        self._stopping: dict[str, int] = {}
        #: last sub-state seen per unit, to notice transitions
        self._seen: dict[str, str] = {}
        #: why the last job of a unit failed because of another unit (for status)
        self._last_failure: dict[str, str] = {}
        #: verify-active jobs waiting for a unit's next state change
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        #: propagated requests waiting for a unit's job to be finished
        self._job_waiters: dict[str, list[asyncio.Future[None]]] = {}
        #: tasks of steps and of propagated requests (kept referenced until done)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing = False

    # -- life cycle ----------------------------------------------------------
    async def __aenter__(self) -> Self:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        _raise_nofile()
        # one open log file per unit: reopening a closed one costs a mkdir, an open
        # and a read, which showed up in the 1,000-unit benchmark
        self.journal_store = Journal(self.state_dir / "journal",
                                     max_bytes_per_unit=self._journal_max,
                                     max_open_files=4096)
        run = Path(os.environ.get("FLOTTE_RUNTIME_DIR", "/run/flotte"))
        sock_dir = run if _usable_dir(run) else self.state_dir
        sock = sock_dir / f"notify-{os.getpid()}-{id(self):x}"
        if len(str(sock)) > 100:
            sock = Path(f"/tmp/flotte-notify-{os.getpid()}-{id(self):x}")
        self.notify = NotifyServer(str(sock))
        self.notify.start()
        self.cgroups = CgroupManager.detect(self._cgroup_root)
        leftovers = self.cgroups.cleanup()
        for name in leftovers:
            self.log(name, f"{name}: processes of a previous run are still around", 4)
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        # No transaction may start anything once we are shutting down: answer
        # whoever waits for one, drop the running steps, then stop every unit
        # (without propagation: everything goes anyway).
        self._closing = True
        for ex in list(self._runs):
            if not ex.done.done():
                ex.done.set_result(None)
        for waiters in (*self._waiters.values(), *self._job_waiters.values()):
            for fut in waiters:
                if not fut.done():
                    fut.set_result(None)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*(svc.stop() for svc in self.units.values()),
                             return_exceptions=True)
        for cg in self._cgroups.values():
            with contextlib.suppress(Exception):
                # processes left by KillMode=none/process are not ours to kill;
                # give ones that are exiting a moment to be reaped
                await cg.wait_empty(0.5)
                cg.remove()
        if self.cgroups is not None:
            with contextlib.suppress(Exception):
                self.cgroups.remove_root()
        if self.notify is not None:
            self.notify.close()
        if self.journal_store is not None:
            self.journal_store.close()

    # -- units -----------------------------------------------------------------
    async def load(self, unit: str | Path | Unit, *, name: str | None = None) -> Unit:
        """Load (or reload the configuration of) a unit from a file or a parsed Unit.

        A path to a template file with ``name="foo@bar.service"`` loads the
        instance.  Raises :class:`UnitLoadError` when the unit does not load.
        Its dependency settings take effect for the next job (a reload
        replaces the unit's edges, as ``systemctl daemon-reload`` does).
        """
        if isinstance(unit, Unit):
            parsed = unit
        else:
            path = Path(unit)
            unit_name = name or path.name
            if name is not None and name != path.name:
                data = path.read_bytes()
                parsed = load_text(data, unit_name, ctx=self.ctx, path=str(path))
            else:
                parsed = load_unit(unit_name, [str(path.parent)], ctx=self.ctx)
        if parsed.load_state != "loaded":
            raise UnitLoadError(parsed)
        if parsed.unit_type != "service":
            raise UnitLoadError(parsed)
        # The supervisor needs the typed settings, not the raw lexed lines
        # (kept by verify and the API): dropping them saves memory per unit.
        parsed = dataclasses.replace(parsed, options=[], diagnostics=[])
        self.graph.add(parsed)
        svc = self.units.get(parsed.name)
        if svc is None:
            svc = Service(parsed, self)
            self.units[parsed.name] = svc
            assert self.notify is not None
            self.notify.subscribe(parsed.name, svc.on_notify_message, svc.accepts_notify)
        else:
            svc.reconfigure(parsed)
        self._emit(svc)
        return parsed

    async def unload(self, name: str) -> None:
        """Stop the unit (a stop job: what Requires= it stops too) and forget it.

        Units bound to it (``BindsTo=``) are stopped as well, even if they
        came up again meanwhile: they follow its existence, not only its state.
        """
        svc = self._svc(name)
        try:
            await self._request(name, J.STOP, manual=False)
        except TransactionError:
            await svc.stop()
        requests = on_unit_removed(self.graph, name, self._states, pending=self._pending)
        self.graph.remove(name)
        del self.units[name]
        self._seen.pop(name, None)
        self._last_failure.pop(name, None)
        for fut in self._waiters.pop(name, ()):
            if not fut.done():
                fut.set_result(None)
        if self.notify is not None:
            self.notify.unsubscribe(name)
        cg = self._cgroups.pop(name, None)
        if cg is not None:
            with contextlib.suppress(Exception):
                cg.remove()
        for r in requests:
            self._request_soon(r)

    def _svc(self, name: str) -> Service:
        try:
            return self.units[name]
        except KeyError:
            raise NoSuchUnit(name) from None

    async def start(self, name: str) -> str:
        """Start the unit and what it pulls in; the job result.

        ``done``, ``failed``, ``skipped`` (a condition failed), ``dependency``
        (a unit it requires failed: see ``status()["job_failure"]``) or
        ``canceled`` (a later request replaced the job).  Raises
        :class:`TransactionError` when the request cannot be planned (a
        required unit nobody knows, an ordering cycle …): then nothing ran.
        """
        return await self._request(name, J.START)

    async def stop(self, name: str) -> str:
        """Stop the unit and the units that Require=/BindsTo=/are PartOf= it."""
        return await self._request(name, J.STOP)

    async def restart(self, name: str) -> str:
        """Restart the unit; running units that Require=/BindsTo=/are PartOf= it restart too."""
        return await self._request(name, J.RESTART)

    async def try_restart(self, name: str) -> str:
        """Restart the unit if it is active or activating; otherwise nothing (``done``)."""
        return await self._request(name, J.TRY_RESTART)

    async def reload(self, name: str) -> str:
        """ExecReload= of an active unit (and of units it PropagatesReloadTo=)."""
        svc = self.units.get(name)
        if svc is not None and svc.active_state != "active":
            raise JobNotApplicable(f"Unit {name} is not active; cannot reload")
        try:
            return await self._request(name, J.RELOAD)
        except TransactionError as exc:
            if exc.code == NOT_APPLICABLE and exc.units == (name,):
                raise JobNotApplicable(str(exc)) from None
            raise

    def kill(self, name: str, sig: int, who: str = "all") -> int:
        return self._svc(name).kill(sig, who)

    def reset_failed(self, name: str) -> None:
        self._svc(name).reset_failed()
        self._last_failure.pop(name, None)

    def list_units(self) -> list[str]:
        return sorted(self.units)

    # -- [Install] ---------------------------------------------------------------
    async def enable(self, name: str) -> list[InstallChange]:
        """``systemctl enable``: apply the unit's [Install] section (and its Also= units').

        ``WantedBy=hello.service`` makes starting hello.service start this unit,
        fleet's sidekick idiom; ``RequiredBy=`` makes it required.  Kept in
        ``<state_dir>/enabled`` so that it survives a restart of the supervisor.
        Raises :class:`InstallError` for a unit that is not loaded.
        """
        changes = self.graph.enable(name)
        await self._save_enabled()
        for c in changes:
            self.log(name, f"{name}: {c}", 4 if c.action == "warning" else 6)
        return changes

    async def disable(self, name: str) -> list[InstallChange]:
        """``systemctl disable``: drop what :meth:`enable` added."""
        changes = self.graph.disable(name)
        await self._save_enabled()
        for c in changes:
            self.log(name, f"{name}: {c}")
        return changes

    async def boot(self) -> dict[str, str]:
        """Start what this machine's boot targets pull in (``WantedBy=multi-user.target``).

        The host has long reached multi-user.target when flotte starts, so
        nobody else would start those units.  Returns unit → job result, or
        the error message when the start could not be planned.
        """
        names = self.graph.boot_units()
        results = await asyncio.gather(*(self.start(n) for n in names), return_exceptions=True)
        return {n: r if isinstance(r, str) else str(r) for n, r in zip(names, results,
                                                                       strict=True)}

    async def _save_enabled(self) -> None:
        text = "".join(f"{n}\n" for n in sorted(self.graph.enabled))
        await asyncio.to_thread(_atomic_write, self.state_dir / ENABLED_FILE, text)

    # -- status and events ---------------------------------------------------------
    def status(self, name: str) -> dict[str, Any]:
        svc = self._svc(name)
        cg = self._cgroups.get(name)
        memory = tasks = None
        if cg is not None:
            with contextlib.suppress(Exception):
                memory = cg.memory_current()
            with contextlib.suppress(Exception):
                tasks = len(cg.pids())
        exit = svc.main_exit
        job = self._pending.get(name)
        return {
            "name": name,
            "description": svc.description,
            "load_state": svc.unit.load_state,
            "active_state": svc.active_state,
            "sub_state": svc.sub_state,
            "result": svc.result.value,
            "main_pid": svc.main_pid,
            "control_pid": svc.control_pid,
            "exit_code": exit.code if exit else None,
            "exit_status": exit.status if exit else None,
            "exit_status_text": exit.status_text() if exit else None,
            "status_text": svc.status_text,
            "restarts": svc.restarts,
            "invocation_id": svc.invocation_id,
            "timestamps": dict(svc.timestamps),
            "memory": memory,
            "tasks": tasks,
            "type": svc.type,
            "dependencies": {rel: list(units)
                             for rel, units in self.graph.dependencies(name).items()},
            "install_state": self.graph.install_state(name),
            "job": job.value if job is not None else None,
            "job_failure": self._last_failure.get(name),
        }

    def host_units(self) -> dict[str, str | None]:
        """Host units checked so far → their last known active state (None: never checked)."""
        return {h.name: self._host_state[h.name][0] if h.name in self._host_state else None
                for h in self.graph.host.entries()}

    async def events(self) -> AsyncIterator[StateChange]:
        """Every state change of every unit from now on."""
        q: asyncio.Queue[StateChange] = asyncio.Queue(maxsize=10_000)
        self._subscribers.add(q)
        try:
            while True:
                yield await q.get()
        finally:
            self._subscribers.discard(q)

    def _emit(self, svc: Service) -> None:
        """Every state change of a unit passes here (Service.set_state).

        Transitions that matter to other units are handed to
        :meth:`_propagate` on the next loop iteration, not now: Service
        decides whether to restart right after it enters failed/dead, and
        the rules need to know (``auto-restart`` then).
        """
        name = svc.name
        sub = svc.sub_state
        active = active_state(sub)
        prev = self._seen.get(name)
        self._seen[name] = sub
        if prev is not None and not self._closing and not self.graph.plain(name):
            prev_active = active_state(prev)
            if prev_active != active or prev == "auto-restart":
                asyncio.get_running_loop().call_soon(self._propagate, name, prev_active,
                                                     active, prev, sub)
        if self._waiters:
            for fut in self._waiters.pop(name, ()):
                if not fut.done():
                    fut.set_result(None)
        if not self._subscribers:
            return
        change = StateChange(name, svc.unit.load_state, active, sub, svc.result.value,
                             svc.main_pid)
        for q in list(self._subscribers):
            with contextlib.suppress(asyncio.QueueFull):
                q.put_nowait(change)

    # -- jobs ------------------------------------------------------------------------
    async def _request(self, name: str, t: JobType, *, manual: bool = True) -> str:
        svc = self.units.get(name)
        if svc is None and self.graph.kind(name) is not UnitKind.HOST:
            raise NoSuchUnit(name)
        if svc is not None and self.graph.plain(name) and name not in self._pending:
            return await self._direct(svc, t)
        return await self._enqueue(name, t, JobMode.REPLACE, manual=manual)

    async def _direct(self, svc: Service, t: JobType) -> str:
        """The fast path: a unit without dependencies is its own whole transaction."""
        if t is J.TRY_RESTART:
            if svc.active_state not in ACTIVE_OR_ACTIVATING:
                return JobResult.DONE.value
            t = J.RESTART
        if t is J.START:
            result = await svc.start()
        elif t is J.STOP:
            result = await svc.stop()
        elif t is J.RESTART:
            result = await svc.restart()
        else:
            result = await svc.reload()
        if result == "done" and self._last_failure:
            self._last_failure.pop(svc.name, None)
        return result

    async def _enqueue(self, name: str, t: JobType, mode: JobMode, *,
                       manual: bool = False) -> str:
        """Plan a request as a transaction, replace what it contradicts, run it.

        Returns the anchor job's result.  The transaction runs to its end
        even if the caller stops waiting (a cancelled ``start()`` does not
        leave half of a transaction behind).
        """
        if self._closing:
            return JobResult.CANCELED.value
        try:
            tx = build_transaction(self.graph, name, t, mode, self._plan_states,
                                   pending=self._pending, manual=manual)
        except TransactionError as exc:
            if name in self.units:
                self._last_failure[name] = str(exc)
            self.log(name, f"Failed to enqueue {t} job for {name}: {exc}", 3)
            raise
        run = TransactionRun(tx, self.graph)
        ex = _Exec(run, asyncio.get_running_loop().create_future())
        for note in tx.notes:
            self.log(name, f"{name}: {note}", 5)
        for unit in tx.replaces:
            self._cancel_jobs(unit, tx.jobs[unit].type)
        for unit, job in tx.jobs.items():
            if job.type is not J.NOP and unit not in run.results:
                self._job_add(ex, unit, job.type)
        self._runs.add(ex)
        self._advance(ex)
        await asyncio.shield(ex.done)
        result = run.result
        if result is None:
            return JobResult.CANCELED.value
        if result is JobResult.DONE and ex.anchor_raw == "skipped":
            return "skipped"
        return result.value

    def _job_add(self, ex: _Exec, unit: str, t: JobType) -> None:
        self._jobs.setdefault(unit, []).append((ex, t))
        self._pending[unit] = t

    def _job_done(self, ex: _Exec, unit: str) -> None:
        lst = self._jobs.get(unit)
        if not lst:
            return
        for i, (e, _) in enumerate(lst):
            if e is ex:
                del lst[i]
                break
        else:
            return
        if self._job_waiters:
            for fut in self._job_waiters.pop(unit, ()):
                if not fut.done():
                    fut.set_result(None)
        if lst:
            self._pending[unit] = lst[-1][1]
        else:
            del self._jobs[unit]
            del self._pending[unit]

    def _cancel_jobs(self, unit: str, new: JobType) -> None:
        """Mode replace: queued jobs the new transaction contradicts end ``canceled``."""
        for ex, t in list(self._jobs.get(unit, ())):
            if not is_conflicting(t, new):
                continue
            self.log(unit, f"{unit}: {t} job canceled, replaced by a {new} job.", 5)
            ex.run.cancel(unit)
            self._job_done(ex, unit)
            self._advance(ex)

    def _advance(self, ex: _Exec) -> None:
        """Begin every step whose prerequisites finished; answer the caller when all did."""
        run = ex.run
        if not self._closing:
            loop = asyncio.get_running_loop()
            for step in run.runnable():
                run.begin(step)
                task = loop.create_task(self._do(step), name=f"job {step.id}")
                self._tasks.add(task)
                task.add_done_callback(functools.partial(self._step_done, ex, step))
        if run.finished:
            self._runs.discard(ex)
            if not ex.done.done():
                ex.done.set_result(None)

    def _step_done(self, ex: _Exec, step: Step, task: asyncio.Task[str]) -> None:
        self._tasks.discard(task)
        if self._closing:
            return
        if task.cancelled():
            result = JobResult.CANCELED.value
        elif task.exception() is not None:
            log.error("job %s: internal error", step.id, exc_info=task.exception())
            result = JobResult.FAILED.value
        else:
            result = task.result()
        run = ex.run
        if step.op is J.START and step.unit == run.tx.anchor.unit:
            ex.anchor_raw = result
        outcome = run.finish(step, result, self._state_of(step.unit))
        unit_result = run.results.get(step.unit)
        if unit_result is not None:
            self._job_done(ex, step.unit)
            if unit_result is JobResult.DONE and step.op is J.START:
                self._last_failure.pop(step.unit, None)
        for f in outcome.failures:
            self._job_done(ex, f.unit)
            self._last_failure[f.unit] = f.explain()
            self.log(f.unit, f"{f.message} ({f.unit} has {f.relation}={f.cause})", 3)
        for r in outcome.requests:
            self._request_soon(r)
        self._advance(ex)

    def _state_of(self, unit: str) -> str:
        svc = self.units.get(unit)
        if svc is not None:
            return svc.active_state
        return self.graph.state(unit, self._states)

    async def _do(self, step: Step) -> str:
        """Execute one step; the answer is a job result (``skipped``: condition failed)."""
        unit, op = step.unit, step.op
        if op is J.VERIFY_ACTIVE:
            return await self._verify(unit)
        svc = self.units.get(unit)
        if svc is None:  # unloaded meanwhile
            return JobResult.DONE.value if op is J.STOP else JobResult.FAILED.value
        if op is J.START:
            return await svc.start()
        if op is J.STOP:
            self._stopping[unit] = self._stopping.get(unit, 0) + 1
            try:
                return await svc.stop()
            finally:
                left = self._stopping[unit] - 1
                if left:
                    self._stopping[unit] = left
                else:
                    del self._stopping[unit]
        if op is J.RELOAD:
            try:
                return await svc.reload()
            except JobNotApplicable:
                return JobResult.INVALID.value
        return JobResult.DONE.value

    async def _verify(self, unit: str) -> str:
        """A verify-active job: Requisite= on a unit of ours, or any job on a host unit."""
        if self.graph.kind(unit) is not UnitKind.FLOTTE:
            return await self._check_host(unit)
        while True:
            svc = self.units.get(unit)
            if svc is None or self._closing:
                return JobResult.SKIPPED.value
            r = verify_result(svc.active_state)
            if r is not None:
                if r is JobResult.SKIPPED:
                    self.log(unit, f"{unit} is {svc.active_state}.", 5)
                return r.value
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.setdefault(unit, []).append(fut)
            await fut

    async def _check_host(self, unit: str) -> str:
        """Run the host unit's check command (none: the machine is trusted to provide it)."""
        cmd = self.graph.host.check(unit)
        state = "active"
        if cmd is not None:
            state = "failed"
            try:
                proc = await asyncio.create_subprocess_shell(
                    cmd, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.STDOUT, start_new_session=True)
            except OSError as exc:
                self.log(unit, f"{unit}: cannot run its check `{cmd}`: {exc}", 3)
            else:
                try:
                    out, _ = await asyncio.wait_for(proc.communicate(), HOST_CHECK_TIMEOUT)
                except TimeoutError:
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
                    await proc.wait()
                    self.log(unit, f"{unit}: its check `{cmd}` timed out after "
                             f"{HOST_CHECK_TIMEOUT:g}s.", 3)
                else:
                    if proc.returncode == 0:
                        state = "active"
                    else:
                        last = out.decode(errors="replace").strip().splitlines()[-1:]
                        self.log(unit, f"{unit}: its check `{cmd}` exited with status "
                                 f"{proc.returncode}" + (f": {last[0]}" if last else "")
                                 + "; the host unit counts as failed.", 3)
        self._host_state[unit] = (state, time.monotonic())
        r = verify_result(state)
        return (r or JobResult.SKIPPED).value

    # -- propagation ---------------------------------------------------------------
    def _propagate(self, name: str, old: str, new: str, old_sub: str, new_sub: str) -> None:
        """A unit changed state: enqueue what systemd's ``unit_notify`` would.

        The unit's own job that this change completes (its stop when it went
        down, its start when it came up) no longer counts as pending: systemd
        finishes that job before it looks at the dependents.
        """
        svc = self.units.get(name)
        if svc is None or self._closing:
            return
        own = self._pending.get(name)
        completed = False  # the change completes the unit's own job
        try:
            if new in INACTIVE_OR_FAILED and old not in INACTIVE_OR_FAILED:
                pending: Mapping[str, JobType] = self._pending
                if own is J.STOP:
                    pending, completed = _Without(self._pending, name), True
                # Restart= decided right after the state change (see _emit); a unit
                # already activating again without a job of ours is that restart too
                will_restart = svc.sub_state == "auto-restart" or (
                    svc.active_state == "activating" and own is None)
                requests = on_unit_stopped(
                    self.graph, name, svc.result.value, self._states, state=new, previous=old,
                    expected=name in self._stopping, will_restart=will_restart,
                    pending=pending)
            elif new == "active" and old not in ("active", "reloading"):
                pending = self._pending
                if own in (J.START, J.RESTART, J.VERIFY_ACTIVE):
                    pending, completed = _Without(self._pending, name), True
                requests = on_unit_active(self.graph, name, self._states, pending=pending)
            elif old_sub == "auto-restart" and new == "activating" and \
                    new_sub != "auto-restart" and own is None:
                requests = on_unit_restarted(self.graph, name, self._states,
                                             pending=self._pending)
            else:
                return
        except Exception:  # a bug in a rule must not take the supervisor down
            log.exception("propagating the state change of %s", name)
            return
        after = self._jobs[name][-1][0] if completed and requests else None
        for r in requests:
            self._request_soon(r, after=(after, name) if after is not None else None)

    def _request_soon(self, r: Request, *, after: tuple[_Exec, str] | None = None) -> None:
        """A job the rules asked for, as its own transaction in the background.

        ``after``: a job the triggering state change completed, whose step
        has not reported back yet (it will within a few loop iterations).
        The request is planned once it has: a ``fail``-mode request would
        otherwise find that job still queued and refuse to contradict it
        (systemd finishes the job before it looks at the dependents).
        """
        if self._closing:
            return
        self.log(r.unit, f"{r.unit}: {r.reason}")
        task = asyncio.get_running_loop().create_task(self._enqueue_quietly(r, after),
                                                      name=f"request {r.unit}/{r.type}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _enqueue_quietly(self, r: Request, after: tuple[_Exec, str] | None) -> None:
        if after is not None:
            ex, unit = after
            while any(e is ex for e, _ in self._jobs.get(unit, ())):
                fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                self._job_waiters.setdefault(unit, []).append(fut)
                await fut
        with contextlib.suppress(TransactionError):  # logged by _enqueue
            await self._enqueue(r.unit, r.type, r.mode)

    # -- journal ------------------------------------------------------------------
    def journal(self, name: str, lines: int | None = None, follow: bool = False
                ) -> list[Entry] | Follower:
        assert self.journal_store is not None
        if follow:
            return self.journal_store.follow(name, lines=lines if lines is not None else 10)
        return self.journal_store.read(name, lines=lines)

    def log(self, unit: str, message: str, priority: int = 6) -> None:
        if self.journal_store is not None:
            self.journal_store.log(unit, message, priority, identifier="flotte")

    # -- process plumbing used by Service ---------------------------------------------
    def _cgroup(self, name: str) -> UnitCgroup | None:
        cg = self._cgroups.get(name)
        if cg is None and self.cgroups is not None:
            cg = self.cgroups.unit(name)
            self._cgroups[name] = cg
        return cg

    def prepare_run(self, svc: Service) -> None:
        """Before each activation: the unit's cgroup with its current limits."""
        cg = self._cgroup(svc.name)
        if cg is None:
            return
        memory, tasks, cpu, problems = cgroup_limits(svc.unit)
        for p in problems:
            self.log(svc.name, f"{svc.name}: {p}", 4)
        if memory is not None or tasks is not None or cpu is not None:
            for p in cg.set_limits(memory, tasks, cpu):
                self.log(svc.name, f"{svc.name}: cannot apply {p} on this machine", 4)

    def finish_run(self, svc: Service) -> None:
        """After the unit stopped: drop its (empty) cgroup."""
        cg = self._cgroups.get(svc.name)
        if cg is not None and not cg.populated():
            with contextlib.suppress(Exception):
                cg.remove()
            self._cgroups.pop(svc.name, None)
            if self.cgroups is not None:
                self.cgroups.forget(svc.name)

    def unit_pids(self, name: str) -> list[int]:
        cg = self._cgroups.get(name)
        if cg is None:
            return []
        try:
            return cg.pids()
        except OSError:
            return []

    async def wait_unit_empty(self, name: str, timeout: float) -> bool:
        cg = self._cgroups.get(name)
        if cg is None:
            await asyncio.sleep(min(timeout, 0.05))
            return True
        return await cg.wait_empty(timeout)

    def adopt(self, pid: int) -> ProcessHandle:
        return ProcessHandle(watch_pid(pid))

    async def spawn(self, svc: Service, cmd: ExecCommand, *, main: bool,
                    extra_env: dict[str, str] | None = None) -> ProcessHandle:
        unit = svc.unit
        extra = dict(extra_env or {})
        assert self.notify is not None
        if svc.type == "notify" or unit.value("Service", "NotifyAccess") != "none":
            extra.update(self.notify.env_for(svc.name))
        watchdog = unit.value("Service", "WatchdogSec")
        if main and watchdog:
            extra["WATCHDOG_USEC"] = str(watchdog)
        try:
            env = build_environment(unit, invocation_id=svc.invocation_id,
                                    main_pid=svc.main_pid, extra=extra)
        except EnvironmentFileError as exc:
            raise SpawnProblem(0, "RESOURCES", f"Failed to load environment files: {exc}",
                               str(exc), Result.RESOURCES) from None
        cgroup = self._cgroup(svc.name)
        assert self.journal_store is not None
        ident = unit.value("Service", "SyslogIdentifier") or os.path.basename(
            cmd.argv[0] if cmd.argv else cmd.path)
        pipe: JournalPipe | None = None
        if "journal" in (unit.value("Service", "StandardOutput"),
                         unit.value("Service", "StandardError")):
            pipe = self.journal_store.writer(svc.name, ident)
        spec = exec_spec_for(unit, cmd, env, cgroup=cgroup,
                             journal_fd=pipe.write_fd if pipe else None)
        if main and svc.type == "idle":
            await asyncio.sleep(0)
        try:
            child = await spawn(spec)
        except SpawnFailure as exc:
            if pipe is not None:
                pipe.close()
            raise SpawnProblem(exc.exit_code, exc.status_name, exc.message,
                               getattr(exc, "reason", exc.message)) from None
        if pipe is not None:
            pipe.set_pid(child.pid)
            pipe.close_write()
        for warning in child.warnings:
            self.log(svc.name, f"{svc.name}: {warning}", 4)
        return ProcessHandle(child)


def _atomic_write(path: Path, text: str) -> None:
    """Write-then-rename, fsynced: a crash leaves the old file or the new one, never half."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _usable_dir(path: Path) -> bool:
    try:
        path.mkdir(parents=True, exist_ok=True)
        return os.access(path, os.W_OK)
    except OSError:
        return False


def _raise_nofile() -> None:
    """1,000 units hold a journal pipe each: raise the soft fd limit to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY
                                                        else 1 << 20, hard))

