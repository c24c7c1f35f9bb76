"""Pure decisions of the service manager: states, results, clean exits, restarts, limits.

Everything here is a function of its arguments (time is passed in), so the
rules users depend on — systemd's restart table, which exits count as
clean, the start rate limit, the restart back-off — are tested exhaustively
without processes.  Spec: ``systemd.md`` §3.3, §4.2, §4.8–§4.10.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from flotte.unit.values import ExitStatusSet, exit_status_name, signal_name


class Result(StrEnum):
    """``Result=`` / ``$SERVICE_RESULT``: why the last run ended."""

    SUCCESS = "success"
    EXIT_CODE = "exit-code"
    SIGNAL = "signal"
    CORE_DUMP = "core-dump"
    TIMEOUT = "timeout"
    WATCHDOG = "watchdog"
    PROTOCOL = "protocol"
    RESOURCES = "resources"
    OOM_KILL = "oom-kill"
    START_LIMIT_HIT = "start-limit-hit"
    EXEC_CONDITION = "exec-condition"


#: Service sub-states (systemd 252 names) → the unit's active state.
ACTIVE_STATE: dict[str, str] = {
    "dead": "inactive",
    "condition": "activating",
    "start-pre": "activating",
    "start": "activating",
    "start-post": "activating",
    "running": "active",
    "exited": "active",
    "reload": "reloading",
    "stop": "deactivating",
    "stop-watchdog": "deactivating",
    "stop-sigterm": "deactivating",
    "stop-sigkill": "deactivating",
    "stop-post": "deactivating",
    "final-watchdog": "deactivating",
    "final-sigterm": "deactivating",
    "final-sigkill": "deactivating",
    "failed": "failed",
    "auto-restart": "activating",
    "cleaning": "maintenance",
}

ExitCode = Literal["exited", "killed", "dumped"]


@dataclass(frozen=True, slots=True)
class ExitInfo:
    """How a process ended: ``code`` as systemd's ``$EXIT_CODE``, ``status`` number."""

    code: ExitCode
    status: int

    def describe(self) -> str:
        """``code=exited, status=1/FAILURE`` exactly as systemd logs it."""
        return f"code={self.code}, status={self.status_text()}"

    def status_text(self) -> str:
        if self.code == "exited":
            name = exit_status_name(self.status)
            return f"{self.status}/{name}" if name else str(self.status)
        return f"{self.status}/{signal_name(self.status).removeprefix('SIG')}"

    @property
    def exit_status_env(self) -> str:
        """``$EXIT_STATUS``: the number, or the signal name without ``SIG``."""
        if self.code == "exited":
            return str(self.status)
        return signal_name(self.status).removeprefix("SIG")


#: Signals whose death counts as a clean exit of a non-oneshot main process.
CLEAN_SIGNALS = frozenset({signal.SIGHUP, signal.SIGINT, signal.SIGTERM, signal.SIGPIPE})


def is_clean_exit(exit: ExitInfo, *, main: bool, oneshot: bool,
                  success: ExitStatusSet | None = None) -> bool:
    """Did this process end successfully, by systemd's rules (§4.2)?

    Exit 0 always; for the main process of a non-oneshot service also death
    by SIGHUP/SIGINT/SIGTERM/SIGPIPE; plus whatever ``SuccessExitStatus=``
    lists (codes and signals) — which applies to the main process only.
    """
    if exit.code == "exited" and exit.status == 0:
        return True
    if exit.code == "killed" and main and not oneshot and exit.status in CLEAN_SIGNALS:
        return True
    if success is not None and main:
        if exit.code == "exited" and exit.status in success.codes:
            return True
        if exit.code in ("killed", "dumped") and exit.status in success.signals:
            return True
    return False


def result_of_exit(exit: ExitInfo, clean: bool) -> Result:
    """The result a failed process gives the unit."""
    if clean:
        return Result.SUCCESS
    if exit.code == "exited":
        return Result.EXIT_CODE
    if exit.code == "dumped":
        return Result.CORE_DUMP
    return Result.SIGNAL


RESTART_VALUES = ("no", "on-success", "on-failure", "on-abnormal", "on-watchdog", "on-abort",
                  "always")


def should_restart(restart: str, result: Result, *, main_exit: ExitInfo | None = None,
                   prevent: ExitStatusSet | None = None, force: ExitStatusSet | None = None,
                   stopped_by_request: bool = False) -> bool:
    """systemd's decision (§4.8), in its order.

    1. a stop by request never restarts;  2. ``RestartPreventExitStatus=``
    matching the main process's exit prevents;  3. ``RestartForceExitStatus=``
    forces;  4. otherwise the table, by result.  ``exec-condition`` and
    ``start-limit-hit`` never restart.
    """
    if stopped_by_request or result in (Result.START_LIMIT_HIT,):
        return False
    if main_exit is not None and prevent is not None and _matches(main_exit, prevent):
        return False
    if main_exit is not None and force is not None and _matches(main_exit, force):
        return True
    if result is Result.EXEC_CONDITION:
        return False
    if restart == "always":
        return True
    if restart == "on-success":
        return result is Result.SUCCESS
    if restart == "on-failure":
        return result is not Result.SUCCESS
    if restart == "on-abnormal":
        return result not in (Result.SUCCESS, Result.EXIT_CODE)
    if restart == "on-watchdog":
        return result is Result.WATCHDOG
    if restart == "on-abort":
        return result in (Result.SIGNAL, Result.CORE_DUMP)
    return False


def _matches(exit: ExitInfo, statuses: ExitStatusSet) -> bool:
    if exit.code == "exited":
        return exit.status in statuses.codes
    return exit.status in statuses.signals


def restart_delay(n: int, restart_sec: float, steps: int = 0, max_delay: float = 0.0) -> float:
    """Delay before the n-th consecutive automatic restart (n = 1, 2, …), §4.9.

    Without ``RestartSteps=``/``RestartMaxDelaySec=`` (systemd ≥ 254) it is
    ``RestartSec=``; with both it grows geometrically to the maximum.
    """
    if steps <= 0 or max_delay <= 0 or restart_sec <= 0 or max_delay <= restart_sec:
        return restart_sec
    if n <= 1:
        return restart_sec
    if n > steps:
        return max_delay
    result: float = restart_sec * (max_delay / restart_sec) ** ((n - 1) / steps)
    return result


class StartLimiter:
    """``StartLimitIntervalSec=`` / ``StartLimitBurst=``: more than *burst* starts
    within *interval* seconds is refused (result ``start-limit-hit``).

    Counts every start attempt that passed its conditions (manual, dependency
    or automatic restart).  An interval or burst of 0 disables the limit.
    """

    __slots__ = ("_times", "burst", "interval")

    def __init__(self, interval: float, burst: int) -> None:
        self.interval = interval
        self.burst = burst
        # a plain list: at most `burst` entries, and a deque costs ~600 bytes per
        # unit even when empty (1,000 units on one supervisor is normal)
        self._times: list[float] = []

    def allow(self, now: float) -> bool:
        """Record a start at ``now``; False when it exceeds the limit."""
        if self.interval <= 0 or self.burst <= 0:
            return True
        while self._times and now - self._times[0] >= self.interval:
            del self._times[0]
        if len(self._times) >= self.burst:
            return False
        self._times.append(now)
        return True

    def reset(self) -> None:
        """``systemctl reset-failed``."""
        self._times.clear()


def active_state(sub_state: str) -> str:
    return ACTIVE_STATE.get(sub_state, "inactive")
