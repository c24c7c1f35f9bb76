"""One service's life: systemd's [Service] state machine, step by step.

A :class:`Service` runs one *lifecycle* task per activation::

    start phase   condition → start-pre → start → start-post
    active phase  running / exited, until the main process exits, a stop is
                  requested, RuntimeMaxSec= or the watchdog fires
    stop phase    stop (ExecStop=, only after a successful start) →
                  stop-sigterm → stop-sigkill → stop-post (ExecStopPost=,
                  always) → final-sigterm → final-sigkill
    end           dead or failed; then maybe auto-restart → start phase again

Every step has its own timeout (TimeoutStartSec= is re-armed per start
command, TimeoutStopSec= per stop step), exactly as systemd.md §4.6 says.
Which exits are clean, which result a failure gives and whether to restart
are decided by the pure functions in :mod:`flotte.supervisor.model`; this
module only sequences processes and timers.

Jobs (start / stop / restart / reload) are serialised per unit.  A stop
interrupts a start in progress (its processes are killed, ExecStopPost=
runs, the unit ends inactive) and cancels a pending automatic restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import signal
import time
from typing import TYPE_CHECKING, Any

from flotte.supervisor.conditions import evaluate
from flotte.supervisor.model import (
    ExitInfo,
    Result,
    StartLimiter,
    active_state,
    is_clean_exit,
    result_of_exit,
    should_restart,
)
from flotte.unit.execline import ExecCommand
from flotte.unit.loader import Unit
from flotte.unit.values import USEC_INFINITY, ExitStatusSet, parse_exit_status_set

if TYPE_CHECKING:
    from flotte.supervisor.notify import NotifyMessage
    from flotte.supervisor.supervisor import ProcessHandle, Supervisor

log = logging.getLogger("flotte.supervisor")

_INF = float("inf")


def _sec(usec: int | None) -> float:
    """Microseconds (USEC_INFINITY = never) → seconds (inf = never)."""
    if usec is None or usec >= USEC_INFINITY:
        return _INF
    return usec / 1_000_000


_NO_STATUSES = ExitStatusSet(frozenset(), frozenset())


def _statuses(words: list[str]) -> ExitStatusSet:
    return parse_exit_status_set(" ".join(words)) if words else _NO_STATUSES


class Flag:
    """``asyncio.Event`` for a thousand idle units: no deque until someone waits.

    An ``asyncio.Event`` allocates a ``collections.deque`` (~760 bytes) up
    front; a service holds three of them for its whole life and almost never
    has a waiter on two.  Same semantics as ``Event`` for set/clear/is_set/wait.
    """

    __slots__ = ("_value", "_waiters")

    def __init__(self) -> None:
        self._value = False
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        return self._value

    def set(self) -> None:
        if self._value:
            return
        self._value = True
        waiters, self._waiters = self._waiters, None
        for fut in waiters or ():
            if not fut.done():
                fut.set_result(None)

    def clear(self) -> None:
        self._value = False

    def waiter(self) -> asyncio.Future[None] | None:
        """A future resolved by :meth:`set` (None if already set): awaiting it directly
        costs no coroutine frame, unlike :meth:`wait`."""
        if self._value:
            return None
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(fut)
        return fut

    def discard(self, fut: asyncio.Future[None]) -> None:
        """Forget a waiter that gave up (timed out)."""
        if self._waiters is not None and fut in self._waiters:
            self._waiters.remove(fut)

    async def wait(self) -> bool:
        if self._value:
            return True
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(fut)
        try:
            await fut
        finally:
            if self._waiters is not None and fut in self._waiters:
                self._waiters.remove(fut)
        return True


class StartAborted(Exception):
    """A start phase step failed; ``result`` says why."""

    def __init__(self, result: Result) -> None:
        super().__init__(result.value)
        self.result = result


class _StopRequested(Exception):
    pass


class Service:
    """Runtime state of one loaded service unit."""

    # slots: a supervisor commonly holds 1,000+ of these
    __slots__ = ("_control", "_jobs", "_last_spawn_code", "_lifecycle", "_main", "_ready",
                 "_restart_now", "_started_waiters", "_stop", "_wakeup", "_watchdog_ping",
                 "control_pid", "force_status", "invocation_id", "limiter", "main_exit",
                 "main_pid", "name", "prevent_status", "restarts", "result", "status_text",
                 "sub_state", "success_status", "sup", "timestamps", "type", "unit")

    def __init__(self, unit: Unit, sup: Supervisor) -> None:
        self.unit = unit
        self.sup = sup
        self.name = unit.name
        self.sub_state = "dead"
        self.result = Result.SUCCESS
        self.main_pid: int | None = None
        self.control_pid: int | None = None
        self.main_exit: ExitInfo | None = None
        self.status_text = ""
        self.invocation_id = ""
        self.restarts = 0
        self.timestamps: dict[str, float] = {}
        self._main: ProcessHandle | None = None
        self._control: ProcessHandle | None = None
        self._lifecycle: asyncio.Task[None] | None = None
        self._jobs = asyncio.Lock()
        self._stop = Flag()  # a stop was requested
        self._wakeup = Flag()  # main exit / notify / stop: re-check
        self._ready = False
        self._watchdog_ping = 0.0
        self._started_waiters: list[asyncio.Future[str]] = []
        self._restart_now = Flag()
        self._last_spawn_code = 0
        self.reconfigure(unit)

    # -- configuration ------------------------------------------------------
    def reconfigure(self, unit: Unit) -> None:
        self.unit = unit
        v = unit.value
        self.type: str = v("Service", "Type")
        if self.type == "dbus":
            self.type = "simple"  # no D-Bus here: BusName= is not watched
        self.limiter = StartLimiter(_sec(v("Unit", "StartLimitIntervalSec")),
                                    int(v("Unit", "StartLimitBurst")))
        self.success_status = _statuses(v("Service", "SuccessExitStatus"))
        self.prevent_status = _statuses(v("Service", "RestartPreventExitStatus"))
        self.force_status = _statuses(v("Service", "RestartForceExitStatus"))

    @property
    def description(self) -> str:
        return str(self.unit.value("Unit", "Description"))

    @property
    def active_state(self) -> str:
        return active_state(self.sub_state)

    def _t(self, key: str) -> float:
        return _sec(self.unit.value("Service", key))

    # -- state --------------------------------------------------------------
    def set_state(self, sub: str) -> None:
        if sub == self.sub_state:
            return
        old_active = self.active_state
        self.sub_state = sub
        now = time.time()
        new_active = self.active_state
        self.timestamps["state_change"] = now
        if new_active != old_active:
            if old_active == "inactive" or old_active == "failed":
                self.timestamps["inactive_exit"] = now
            if new_active == "active":
                self.timestamps["active_enter"] = now
            if old_active in ("active", "reloading") and new_active not in ("active",
                                                                             "reloading"):
                self.timestamps["active_exit"] = now
            if new_active in ("inactive", "failed"):
                self.timestamps["inactive_enter"] = now
        self.sup._emit(self)

    def _fail(self, result: Result) -> None:
        """Results are sticky: the first failure of a run is kept."""
        if self.result is Result.SUCCESS:
            self.result = result

    def log(self, message: str, priority: int = 6) -> None:
        self.sup.log(self.name, f"{self.name}: {message}", priority)

    # -- jobs ---------------------------------------------------------------
    async def start(self) -> str:
        """Start the unit; returns the job result (``done``, ``failed``, ``skipped``)."""
        async with self._jobs:
            if self.active_state in ("active", "reloading"):
                return "done"
            fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
            self._started_waiters.append(fut)
            if self._lifecycle is not None and not self._lifecycle.done():
                if self.sub_state == "auto-restart":
                    self._restart_now.set()  # a start request cuts RestartSec= short
            else:
                self._stop.clear()
                self.restarts = 0
                self._lifecycle = asyncio.create_task(self._run(), name=f"unit {self.name}")
        return await asyncio.shield(fut)

    async def stop(self) -> str:
        async with self._jobs:
            task = self._lifecycle
            if task is None or task.done():
                return "done"
            self._stop.set()
            self._wakeup.set()
            self._restart_now.set()
            await asyncio.shield(task)
            return "done"

    async def restart(self) -> str:
        await self.stop()
        return await self.start()

    async def reload(self) -> str:
        async with self._jobs:
            if self.active_state != "active":
                raise JobNotApplicable(f"Unit {self.name} is not active; cannot reload")
            cmds = self.unit.exec_commands("ExecReload")
            if not cmds:
                raise JobNotApplicable(f"Job type reload is not applicable for unit {self.name}")
            previous = self.sub_state
            self.set_state("reload")
            ok = True
            try:
                for cmd in cmds:
                    exit = await self._run_control(cmd, self._t("TimeoutStartSec"))
                    if exit is None or not (cmd.ignore_failure or is_clean_exit(
                            exit, main=False, oneshot=False)):
                        ok = False
                        break
            finally:
                if self.sub_state == "reload":
                    self.set_state(previous)
            if not ok:
                self.log("Reload failed.", 4)
                return "failed"
            self.log(f"Reloaded {self.description}.")
            return "done"

    def kill(self, sig: int, who: str = "all") -> int:
        """Send ``sig`` to the unit's processes (``main``, ``control`` or ``all``)."""
        pids: set[int] = set()
        if who in ("main", "all") and self.main_pid:
            pids.add(self.main_pid)
        if who in ("control", "all") and self.control_pid:
            pids.add(self.control_pid)
        if who == "all":
            pids.update(self.sup.unit_pids(self.name))
        self._signal(sorted(pids), sig)
        return len(pids)

    def reset_failed(self) -> None:
        self.limiter.reset()
        if self.sub_state == "failed":
            self.result = Result.SUCCESS
            self.set_state("dead")

    # -- notify ---------------------------------------------------------------
    def on_notify_message(self, msg: NotifyMessage) -> None:
        fields = dict(msg.fields)
        if "MAINPID" in fields and msg.pid not in (self.main_pid, self.control_pid) \
                and msg.uid != 0:
            # systemd accepts MAINPID= only from the main or control process or root
            fields.pop("MAINPID")
        if msg.ready:
            fields["READY"] = "1"
        self.on_notify(fields, msg.pid)

    def on_notify(self, fields: dict[str, str], pid: int) -> None:
        if fields.get("READY") == "1":
            self._ready = True
        if "STATUS" in fields:
            self.status_text = fields["STATUS"]
        if "MAINPID" in fields and fields["MAINPID"].isdigit():
            new = int(fields["MAINPID"])
            if new != self.main_pid:
                self.main_pid = new
                self._main = self.sup.adopt(new)
        if fields.get("WATCHDOG") == "1":
            self._watchdog_ping = time.monotonic()
        if fields.get("WATCHDOG") == "trigger":
            self._watchdog_ping = -1.0
        if fields.get("STOPPING") == "1":
            self._stop.set()  # the service announced it is stopping on its own
        self._wakeup.set()

    def accepts_notify(self, pid: int) -> bool:
        access = self.unit.value("Service", "NotifyAccess")
        if access == "none":
            return False
        if access == "all":
            return pid in self.sup.unit_pids(self.name) or pid in (self.main_pid,
                                                                   self.control_pid)
        if access == "exec":
            return pid in (self.main_pid, self.control_pid)
        return pid == self.main_pid

    # -- the lifecycle --------------------------------------------------------
    def _resolve_waiters(self, outcome: str) -> None:
        waiters, self._started_waiters = self._started_waiters, []
        for f in waiters:
            if not f.done():
                f.set_result(outcome)

    async def _run(self) -> None:
        try:
            while True:
                outcome = await self._one_run()
                if outcome == "skipped":
                    self._resolve_waiters("skipped")
                    return
                if self._stop.is_set():
                    return
                if not should_restart(self.unit.value("Service", "Restart"), self.result,
                                      main_exit=self.main_exit, prevent=self.prevent_status,
                                      force=self.force_status):
                    return
                # auto-restart
                self.set_state("auto-restart")
                delay = self._t("RestartSec")
                self._restart_now.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._restart_now.wait(), delay)
                if self._stop.is_set():
                    self.set_state("dead" if self.result is Result.SUCCESS else "failed")
                    return
                self.restarts += 1
                self.log(f"Scheduled restart job, restart counter is at {self.restarts}.")
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug must not take the supervisor down
            log.exception("unit %s: internal error", self.name)
            self._fail(Result.RESOURCES)
            with contextlib.suppress(Exception):
                await self._kill_all(signal.SIGKILL)
            self.set_state("failed")
        finally:
            self._resolve_waiters("done" if self.active_state == "active" else "failed")

    def _check_conditions(self) -> str | None:
        """Condition*= (``"skipped"``) then Assert*= (``"assert"``); None if all hold."""
        conditions = self.unit.conditions
        if not conditions:
            return None
        verdict = evaluate([c for c in conditions if not c.is_assert], self.sup.host)
        if not verdict.ok:
            what = verdict.failed.key if verdict.failed else "a triggering condition"
            self.log(f"Condition check resulted in {self.description} being skipped "
                     f"({what}={verdict.failed.value if verdict.failed else '…'}).")
            return "skipped"
        if not evaluate([c for c in conditions if c.is_assert], self.sup.host).ok:
            return "assert"
        return None

    async def _one_run(self) -> str:
        """One activation: start, stay active, stop.  Returns the start job result."""
        self.result = Result.SUCCESS
        self.main_exit = None
        self.main_pid = self.control_pid = None
        self._main = self._control = None
        self._ready = False
        self.status_text = ""
        # Start rate limit, then conditions (failing ones do not count).
        # (checked in a helper: this frame lives as long as the unit runs, and should
        # not keep the verdicts alive)
        problem = self._check_conditions()
        if problem == "skipped":
            self.set_state("dead")
            return "skipped"
        if problem == "assert":
            self.log(f"Assertion failed for {self.description}.", 3)
            self.set_state("dead")
            return "failed"
        if not self.limiter.allow(time.monotonic()):
            self.log("Start request repeated too quickly.", 4)
            self.result = Result.START_LIMIT_HIT
            self.log(f"Failed with result '{self.result.value}'.", 4)
            self.sup.log(self.name, f"Failed to start {self.description}.", 3)
            self.set_state("failed")
            return "failed"
        # 128 random bits, like sd_id128_randomize(); an identifier, not a secret, so the
        # seeded PRNG (no getrandom() syscall per start) is enough
        self.invocation_id = f"{random.getrandbits(128):032x}"
        self.sup.prepare_run(self)
        self.sup.log(self.name, f"Starting {self.description}...")
        started = False
        try:
            started = await self._start_phase()
        except _StopRequested:
            started = False
        except StartAborted as exc:
            self._fail(exc.result)
        if started:
            self.sup.log(self.name, f"Started {self.description}." if self.type != "oneshot"
                         or self.unit.value("Service", "RemainAfterExit")
                         else f"Finished {self.description}.")
            self._resolve_waiters("done")
            if self.type != "oneshot" or self.unit.value("Service", "RemainAfterExit"):
                await self._active_phase()
        await self._stop_phase(started)
        if not started:
            # a failed start job completes once the unit has reached failed/dead
            self._resolve_waiters("failed")
        self.sup.finish_run(self)
        return "done" if started else "failed"

    # start phase -------------------------------------------------------------
    async def _start_phase(self) -> bool:
        timeout = self._t("TimeoutStartSec")
        cmds = self.unit.exec_commands
        conditions = cmds("ExecCondition")
        if conditions:
            self.set_state("condition")
            for cmd in conditions:
                exit = await self._control_step(cmd, timeout, "condition")
                if exit.code == "exited" and 1 <= exit.status <= 254 and not cmd.ignore_failure:
                    self.log("Skipped due to 'exec-condition'.")
                    raise StartAborted(Result.EXEC_CONDITION)
                if not cmd.ignore_failure and not is_clean_exit(exit, main=False,
                                                                oneshot=False):
                    raise StartAborted(result_of_exit(exit, False))
        pre = cmds("ExecStartPre")
        if pre:
            self.set_state("start-pre")
            for cmd in pre:
                await self._checked_control(cmd, timeout, "start-pre")
        self.set_state("start")
        await self._start_main(timeout)
        post = cmds("ExecStartPost")
        if post:
            self.set_state("start-post")
            for cmd in post:
                await self._checked_control(cmd, timeout, "start-post")
        remain = bool(self.unit.value("Service", "RemainAfterExit"))
        if self.type == "oneshot":
            if remain:
                self.set_state("exited")
            return True  # without RemainAfterExit a oneshot goes on to stop at once
        if self._main is None:
            if self.main_exit is not None and not self._main_clean(self.main_exit):
                self.set_state("running")  # Type=simple whose exec failed: exits at once
            else:
                self.set_state("exited")  # RemainAfterExit=yes without ExecStart=
            return True
        self.set_state("running")  # the active phase notices an early exit
        return True

    def _main_clean(self, exit: ExitInfo) -> bool:
        return is_clean_exit(exit, main=True, oneshot=self.type == "oneshot",
                             success=self.success_status)

    async def _start_main(self, timeout: float) -> None:
        starts = self.unit.exec_commands("ExecStart")
        if self.type == "oneshot":
            for cmd in starts:
                handle = await self._spawn(cmd, main=True)
                if handle is None:
                    raise StartAborted(Result.EXIT_CODE)
                exit = await self._wait_step(handle, timeout, "start")
                self.main_exit = exit
                if not cmd.ignore_failure and not self._main_clean(exit):
                    self.log(f"Main process exited, {exit.describe()}", 5)
                    raise StartAborted(result_of_exit(exit, False))
            self._main = None
            self.main_pid = None
            return
        if not starts:
            return  # RemainAfterExit=yes with only ExecStop=
        cmd = starts[0]
        handle = await self._spawn(cmd, main=True, exec_failure_is_exit=self.type in
                                   ("simple", "idle"))
        if handle is None:
            if self.type in ("simple", "idle"):
                return  # "started": the failed exec shows up as the main exit
            raise StartAborted(Result.EXIT_CODE)
        if self.type in ("simple", "idle", "exec"):
            return
        if self.type == "forking":
            exit = await self._wait_step(handle, timeout, "start")
            if not is_clean_exit(exit, main=False, oneshot=False):
                self.log(f"Control process exited, {exit.describe()}", 5)
                raise StartAborted(result_of_exit(exit, False))
            await self._find_forked_main(timeout)
            return
        if self.type == "notify":
            await self._wait_ready(handle, timeout)

    async def _wait_ready(self, handle: ProcessHandle, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self._ready:
            if self._stop.is_set():
                raise _StopRequested()
            if handle.exited and self._main is handle:
                exit = handle.exit_info()
                self.main_exit = exit
                if self._main_clean(exit):
                    self.log("Main process exited before signalling readiness (READY=1).", 4)
                    raise StartAborted(Result.PROTOCOL)
                self.log(f"Main process exited, {exit.describe()}", 5)
                raise StartAborted(result_of_exit(exit, False))
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.log("Start operation timed out. Terminating.", 3)
                raise StartAborted(Result.TIMEOUT)
            self._wakeup.clear()
            await self._wait_wakeup(remaining)

    async def _find_forked_main(self, timeout: float) -> None:
        pidfile = self.unit.value("Service", "PIDFile")
        if pidfile and not pidfile.startswith("/"):
            pidfile = "/run/" + pidfile
        deadline = time.monotonic() + (timeout if timeout != _INF else 90)
        while True:
            if pidfile:
                pid = _read_pidfile(pidfile)
                if pid:
                    self._adopt_main(pid)
                    return
            elif self.unit.value("Service", "GuessMainPID"):
                pids = [p for p in self.sup.unit_pids(self.name) if p != self.control_pid]
                if len(pids) == 1:
                    self._adopt_main(pids[0])
                    return
                if not pids:
                    self.log("New main PID could not be determined: no process left.", 4)
                    raise StartAborted(Result.PROTOCOL)
                if len(pids) > 1:
                    # several left: systemd gives up guessing; the unit runs without a main PID
                    return
            else:
                return
            if time.monotonic() >= deadline:
                self.log(f"Can't open PID file {pidfile} (yet?) after start: timed out.", 4)
                raise StartAborted(Result.TIMEOUT if pidfile else Result.PROTOCOL)
            if not self.sup.unit_pids(self.name):
                self.log("Failed to find the main process: no process left.", 4)
                raise StartAborted(Result.PROTOCOL)
            await asyncio.sleep(0.02)

    def _adopt_main(self, pid: int) -> None:
        self.main_pid = pid
        self._main = self.sup.adopt(pid)
        self._main.on_exit(self._on_exit)

    async def _wait_wakeup(self, limit: float) -> None:
        """Until ``_wakeup`` is set (a process of ours exited, a notify message, a stop
        request) or ``limit`` seconds pass.

        One future and at most one timer: a running unit waits here for hours, and a
        thousand of them must not each hold a helper task, an ``asyncio.wait`` set and
        a timer (that was ~2 KiB per unit)."""
        waiter = self._wakeup.waiter()
        if waiter is None:
            return
        if limit == _INF:
            await waiter
            return
        try:
            async with asyncio.timeout(max(limit, 0.001)):
                await waiter
        except TimeoutError:
            self._wakeup.discard(waiter)

    async def _checked_control(self, cmd: ExecCommand, timeout: float, step: str) -> None:
        exit = await self._control_step(cmd, timeout, step)
        if not cmd.ignore_failure and not is_clean_exit(exit, main=False, oneshot=False):
            self.log(f"Control process exited, {exit.describe()}", 5)
            raise StartAborted(result_of_exit(exit, False))

    async def _control_step(self, cmd: ExecCommand, timeout: float, step: str) -> ExitInfo:
        handle = await self._spawn(cmd, main=False)
        if handle is None:
            return ExitInfo("exited", self._last_spawn_code)
        try:
            return await self._wait_step(handle, timeout, step)
        finally:
            self.control_pid = None
            self._control = None

    async def _wait_step(self, handle: ProcessHandle, timeout: float, step: str) -> ExitInfo:
        """Wait for a start-phase process; stop requests and timeouts interrupt it."""
        stop: asyncio.Future[Any] = asyncio.ensure_future(self._stop.wait())
        pending: set[asyncio.Future[Any]] = {handle.done, stop}
        try:
            done, _ = await asyncio.wait(pending,
                                         timeout=None if timeout == _INF else timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if handle.done in done:
            return handle.exit_info()
        if self._stop.is_set():
            raise _StopRequested()
        self.log("Start operation timed out. Terminating.", 3)
        raise StartAborted(Result.TIMEOUT)

    async def _run_control(self, cmd: ExecCommand, timeout: float,
                           extra_env: dict[str, str] | None = None) -> ExitInfo | None:
        """A stop-side or reload control command: never interrupted by a stop request."""
        handle = await self._spawn(cmd, main=False, extra_env=extra_env)
        if handle is None:
            return ExitInfo("exited", self._last_spawn_code)
        try:
            done, _ = await asyncio.wait({handle.done},
                                         timeout=None if timeout == _INF else timeout)
            if handle.done in done:
                return handle.exit_info()
            self.log(f"Control process {handle.pid} timed out. Killing.", 4)
            handle.signal(signal.SIGKILL)
            await handle.done
            return None
        finally:
            self.control_pid = None
            self._control = None

    async def _spawn(self, cmd: ExecCommand, *, main: bool, exec_failure_is_exit: bool = False,
                     extra_env: dict[str, str] | None = None) -> ProcessHandle | None:
        from flotte.supervisor.supervisor import SpawnProblem

        try:
            handle = await self.sup.spawn(self, cmd, main=main, extra_env=extra_env)
        except SpawnProblem as exc:
            self.log(exc.message, 3)
            self.log(f"Failed at step {exc.status_name} spawning {cmd.path}: "
                     f"{exc.reason}", 3)
            self._last_spawn_code = exc.exit_code
            if exc.result is Result.RESOURCES:
                raise StartAborted(Result.RESOURCES) from None
            exit = ExitInfo("exited", exc.exit_code)
            if main:
                self.main_exit = exit
                if exec_failure_is_exit:
                    self.log(f"Main process exited, {exit.describe()}", 5)
                    self._fail(Result.EXIT_CODE)
            return None
        if main:
            self._main = handle
            self.main_pid = handle.pid
        else:
            self._control = handle
            self.control_pid = handle.pid
        handle.on_exit(self._on_exit)
        return handle

    def _on_exit(self, handle: ProcessHandle) -> None:
        self._wakeup.set()

    # active phase --------------------------------------------------------------
    async def _active_phase(self) -> None:
        runtime_max = self._t("RuntimeMaxSec")
        deadline = time.monotonic() + runtime_max if runtime_max != _INF else _INF
        watchdog = _sec(self.unit.value("Service", "WatchdogSec")) if self.type == "notify" \
            else _INF
        if watchdog == 0:
            watchdog = _INF
        self._watchdog_ping = time.monotonic()
        while True:
            if self._stop.is_set():
                return
            main = self._main
            if main is not None and main.exited and self.sub_state in ("running", "exited"):
                exit = main.exit_info()
                self.main_exit = exit
                clean = self._main_clean(exit)
                if clean:
                    self.log(f"Main process exited, {exit.describe()}", 7)
                else:
                    self.log(f"Main process exited, {exit.describe()}", 5)
                    self._fail(result_of_exit(exit, False))
                self.main_pid = None
                self._main = None
                if self.type == "forking" and clean:
                    # a forking daemon may have written a new PID file before exiting
                    pidfile = self.unit.value("Service", "PIDFile")
                    pid = _read_pidfile(pidfile) if pidfile else None
                    if pid and pid != main.pid:
                        self._adopt_main(pid)
                        continue
                if clean and self.unit.value("Service", "RemainAfterExit"):
                    self.set_state("exited")
                    continue
                return
            if self.sub_state == "running" and main is None and self.main_exit is not None \
                    and not self._main_clean(self.main_exit):
                return  # Type=simple whose exec failed
            now = time.monotonic()
            if now >= deadline:
                self.log("Service reached runtime time limit. Stopping.", 4)
                self._fail(Result.TIMEOUT)
                return
            if watchdog != _INF and (self._watchdog_ping < 0 or
                                     now - self._watchdog_ping >= watchdog):
                self.log("Watchdog timeout (limit "
                         f"{self.unit.value('Service', 'WatchdogSec') / 1e6:g}s)!", 2)
                self._fail(Result.WATCHDOG)
                sig = self.unit.value("Service", "WatchdogSignal")
                self.kill(sig, "main")
                return
            self._wakeup.clear()
            await self._wait_wakeup(min(deadline - now, (self._watchdog_ping + watchdog - now)
                                        if watchdog != _INF else _INF))

    # stop phase ------------------------------------------------------------------
    def _stop_env(self) -> dict[str, str]:
        env = {"SERVICE_RESULT": self.result.value}
        if self.main_exit is not None:
            env["EXIT_CODE"] = self.main_exit.code
            env["EXIT_STATUS"] = self.main_exit.exit_status_env
        return env

    async def _stop_commands(self, key: str, state: str, timeout: float, *,
                             stop_on_failure: bool) -> None:
        """ExecStop= (a failure ends the list) or ExecStopPost= (all of them run)."""
        cmds = self.unit.exec_commands(key)
        if not cmds:
            return
        self.set_state(state)
        for cmd in cmds:
            exit = await self._run_control(cmd, timeout, self._stop_env())
            if exit is None:
                self._fail(Result.TIMEOUT)
                break
            if not cmd.ignore_failure and not is_clean_exit(exit, main=False, oneshot=False):
                self.log(f"Control process exited, {exit.describe()}", 5)
                self._fail(result_of_exit(exit, False))
                if stop_on_failure:
                    break

    async def _stop_phase(self, started: bool) -> None:
        requested = self._stop.is_set()
        if requested and started:
            self.sup.log(self.name, f"Stopping {self.description}...")
        stop_timeout = self._t("TimeoutStopSec")
        if started:
            await self._stop_commands("ExecStop", "stop", stop_timeout, stop_on_failure=True)
        await self._kill_phase("stop-sigterm", "stop-sigkill", stop_timeout)
        main = self._main
        if main is not None and main.exited and started:
            exit = main.exit_info()
            self.main_exit = exit
            if not self._main_clean(exit) and self.type != "oneshot":
                self.log(f"Main process exited, {exit.describe()}", 5)
                self._fail(result_of_exit(exit, False))
        await self._stop_commands("ExecStopPost", "stop-post", stop_timeout,
                                  stop_on_failure=False)
        await self._kill_phase("final-sigterm", "final-sigkill", stop_timeout, final=True)
        self.main_pid = self.control_pid = None
        self._main = self._control = None
        if self.result is Result.SUCCESS:
            self.log("Deactivated successfully.")
            self.set_state("dead")
            if requested and started:
                self.sup.log(self.name, f"Stopped {self.description}.")
        else:
            self.log(f"Failed with result '{self.result.value}'.", 4)
            self.set_state("failed")
            if not started:
                self.sup.log(self.name, f"Failed to start {self.description}.", 3)
            elif requested:
                self.sup.log(self.name, f"Stopped {self.description}.")

    async def _kill_phase(self, term_state: str, kill_state: str, timeout: float, *,
                          final: bool = False) -> None:
        """Send KillSignal= per KillMode=, wait, then FinalKillSignal= (§4.7)."""
        mode = self.unit.value("Service", "KillMode")
        if mode == "none":
            return
        targets = self._kill_targets(mode, final_signal=False, final=final)
        if not targets:
            return
        self.set_state(term_state)
        kill_signal = self.unit.value("Service", "KillSignal")
        self._signal(targets, kill_signal)
        self._signal(targets, signal.SIGCONT)
        if self.unit.value("Service", "SendSIGHUP"):
            self._signal(targets, signal.SIGHUP)
        if await self._wait_gone(mode, timeout, final=final):
            return
        if not self.unit.value("Service", "SendSIGKILL"):
            self.log(f"State '{term_state}' timed out. Skipping SIGKILL.", 4)
            return
        self.log(f"State '{term_state}' timed out. Killing.", 4)
        self._fail(Result.TIMEOUT)
        self.set_state(kill_state)
        final_signal = self.unit.value("Service", "FinalKillSignal")
        targets = self._kill_targets(mode, final_signal=True, final=final)
        for pid in targets:
            self.log(f"Killing process {pid} ({_comm(pid)}) with signal "
                     f"{signal.Signals(final_signal).name}.", 4)
        self._signal(targets, final_signal)
        if not await self._wait_gone(mode, timeout, final=final):
            self.log(f"Processes still around after {signal.Signals(final_signal).name}. "
                     "Ignoring.", 4)

    def _kill_targets(self, mode: str, *, final_signal: bool, final: bool) -> list[int]:
        pids: set[int] = set()
        if mode in ("control-group",) or (mode == "mixed" and (final_signal or final)):
            pids.update(self.sup.unit_pids(self.name))
        if self.main_pid and not (self._main is not None and self._main.exited):
            pids.add(self.main_pid)
        if self.control_pid:
            pids.add(self.control_pid)
        return sorted(pids)

    def _signal(self, pids: list[int], sig: int) -> None:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)

    async def _wait_gone(self, mode: str, timeout: float, *, final: bool) -> bool:
        """Wait until the processes KillMode= targets are gone (and reaped)."""
        deadline = time.monotonic() + (timeout if timeout != _INF else 10 ** 9)
        while True:
            main_running = bool(self._main and not self._main.exited)
            if mode == "process" and not final:
                alive = main_running
            else:
                alive = main_running or bool(self.sup.unit_pids(self.name))
            if not alive:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if main_running and self._main is not None and (
                    (mode == "process" and not final) or not self.sup.unit_pids(self.name)):
                # the main process is gone from the cgroup but not reaped yet, or it
                # is the only thing we wait for: wait for its exit to be collected
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(asyncio.shield(self._main.done),
                                           min(remaining, 0.5))
                continue
            await self.sup.wait_unit_empty(self.name, min(remaining, 0.5))
            await asyncio.sleep(0)

    async def _kill_all(self, sig: int) -> None:
        self._signal(self.sup.unit_pids(self.name), sig)


class JobNotApplicable(Exception):
    """reload of an inactive unit, or of one without ExecReload=."""


def _read_pidfile(path: str) -> int | None:
    try:
        with open(path) as fh:
            text = fh.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() and int(text) > 1 else None


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as fh:
            return fh.read().strip()
    except OSError:
        return "?"
