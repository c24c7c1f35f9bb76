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
Dependencies between units (Requires=, After= …) are the job engine's work
(issue #5); here each unit is started and stopped on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import resource
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from flotte.supervisor.cgroups import CgroupManager, UnitCgroup
from flotte.supervisor.conditions import Host
from flotte.supervisor.execenv import (
    EnvironmentFileError,
    build_environment,
    cgroup_limits,
    exec_spec_for,
)
from flotte.supervisor.journal import Entry, Follower, Journal, JournalPipe
from flotte.supervisor.launcher import Child, SpawnFailure, spawn, watch_pid
from flotte.supervisor.model import ExitInfo, Result
from flotte.supervisor.notify import NotifyServer
from flotte.supervisor.service import JobNotApplicable, Service
from flotte.unit.execline import ExecCommand
from flotte.unit.loader import Unit, load_text, load_unit
from flotte.unit.specifiers import SpecifierContext

__all__ = ["JobNotApplicable", "NoSuchUnit", "ProcessHandle", "StateChange", "Supervisor",
           "UnitLoadError"]


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


class Supervisor:
    """Runs services from unit files with systemd's [Service] semantics."""

    def __init__(self, state_dir: str | Path, machine: SpecifierContext | None = None, *,
                 journal_max_bytes: int = 8 * 1024 * 1024, cgroup_root: str = "flotte",
                 host: Host | None = None) -> None:
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
        svc = self._svc(name)
        await svc.stop()
        del self.units[name]
        if self.notify is not None:
            self.notify.unsubscribe(name)
        cg = self._cgroups.pop(name, None)
        if cg is not None:
            with contextlib.suppress(Exception):
                cg.remove()

    def _svc(self, name: str) -> Service:
        try:
            return self.units[name]
        except KeyError:
            raise NoSuchUnit(name) from None

    async def start(self, name: str) -> str:
        return await self._svc(name).start()

    async def stop(self, name: str) -> str:
        return await self._svc(name).stop()

    async def restart(self, name: str) -> str:
        return await self._svc(name).restart()

    async def reload(self, name: str) -> str:
        return await self._svc(name).reload()

    def kill(self, name: str, sig: int, who: str = "all") -> int:
        return self._svc(name).kill(sig, who)

    def reset_failed(self, name: str) -> None:
        self._svc(name).reset_failed()

    def list_units(self) -> list[str]:
        return sorted(self.units)

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
        }

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
        if not self._subscribers:
            return
        change = StateChange(svc.name, svc.unit.load_state, svc.active_state, svc.sub_state,
                             svc.result.value, svc.main_pid)
        for q in list(self._subscribers):
            with contextlib.suppress(asyncio.QueueFull):
                q.put_nowait(change)

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

