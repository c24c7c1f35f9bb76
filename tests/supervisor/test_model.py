"""The supervisor's pure rules: restart table, clean exits, start limit, back-off."""

from __future__ import annotations

import signal

import pytest

from flotte.supervisor.model import (
    ExitInfo,
    Result,
    StartLimiter,
    active_state,
    is_clean_exit,
    restart_delay,
    result_of_exit,
    should_restart,
)
from flotte.unit.values import parse_exit_status_set

# systemd.md §4.8, the exact table.  Rows: cause → the Restart= values that restart.
TABLE = {
    Result.SUCCESS: {"always", "on-success"},          # clean exit code or signal
    Result.EXIT_CODE: {"always", "on-failure"},        # unclean exit code
    Result.SIGNAL: {"always", "on-failure", "on-abnormal", "on-abort"},
    Result.CORE_DUMP: {"always", "on-failure", "on-abnormal", "on-abort"},
    Result.TIMEOUT: {"always", "on-failure", "on-abnormal"},
    Result.WATCHDOG: {"always", "on-failure", "on-abnormal", "on-watchdog"},
}
VALUES = ["no", "always", "on-success", "on-failure", "on-abnormal", "on-abort", "on-watchdog"]


@pytest.mark.parametrize("result", list(TABLE))
@pytest.mark.parametrize("restart", VALUES)
def test_restart_table(restart: str, result: Result) -> None:
    assert should_restart(restart, result) is (restart in TABLE[result])


@pytest.mark.parametrize("restart", VALUES)
def test_never_restart_on_request_condition_or_start_limit(restart: str) -> None:
    for result in Result:
        assert not should_restart(restart, result, stopped_by_request=True)
    assert not should_restart(restart, Result.EXEC_CONDITION)
    assert not should_restart(restart, Result.START_LIMIT_HIT)


def test_prevent_and_force_look_at_the_main_exit_first() -> None:
    prevent = parse_exit_status_set("3 SIGUSR1")
    force = parse_exit_status_set("4")
    assert not should_restart("always", Result.EXIT_CODE, main_exit=ExitInfo("exited", 3),
                              prevent=prevent)
    assert not should_restart("always", Result.SIGNAL,
                              main_exit=ExitInfo("killed", signal.SIGUSR1), prevent=prevent)
    assert should_restart("no", Result.EXIT_CODE, main_exit=ExitInfo("exited", 4), force=force)
    # prevent beats force; a request beats both
    both = parse_exit_status_set("5")
    assert not should_restart("always", Result.EXIT_CODE, main_exit=ExitInfo("exited", 5),
                              prevent=both, force=both)
    assert not should_restart("no", Result.EXIT_CODE, main_exit=ExitInfo("exited", 4),
                              force=force, stopped_by_request=True)


def test_clean_exits() -> None:
    term = ExitInfo("killed", signal.SIGTERM)
    assert is_clean_exit(ExitInfo("exited", 0), main=False, oneshot=True)
    assert is_clean_exit(term, main=True, oneshot=False)
    assert not is_clean_exit(term, main=True, oneshot=True)      # oneshot: only exit 0
    assert not is_clean_exit(term, main=False, oneshot=False)    # control processes too
    assert not is_clean_exit(ExitInfo("killed", signal.SIGKILL), main=True, oneshot=False)
    ok = parse_exit_status_set("TEMPFAIL 250 SIGKILL")
    assert is_clean_exit(ExitInfo("exited", 75), main=True, oneshot=False, success=ok)
    assert is_clean_exit(ExitInfo("killed", signal.SIGKILL), main=True, oneshot=False,
                         success=ok)
    assert not is_clean_exit(ExitInfo("exited", 75), main=False, oneshot=False, success=ok)
    assert result_of_exit(ExitInfo("exited", 1), False) is Result.EXIT_CODE
    assert result_of_exit(ExitInfo("killed", 9), False) is Result.SIGNAL
    assert result_of_exit(ExitInfo("dumped", 11), False) is Result.CORE_DUMP


def test_exit_descriptions_match_systemd() -> None:
    assert ExitInfo("exited", 1).describe() == "code=exited, status=1/FAILURE"
    assert ExitInfo("exited", 203).describe() == "code=exited, status=203/EXEC"
    assert ExitInfo("exited", 217).describe() == "code=exited, status=217/USER"
    assert ExitInfo("killed", 15).describe() == "code=killed, status=15/TERM"
    assert ExitInfo("dumped", 11).describe() == "code=dumped, status=11/SEGV"
    assert ExitInfo("exited", 42).describe() == "code=exited, status=42"
    assert ExitInfo("killed", 9).exit_status_env == "KILL"


def test_start_limit() -> None:
    lim = StartLimiter(10.0, 5)
    assert all(lim.allow(t) for t in (0, 1, 2, 3, 4))
    assert not lim.allow(5)
    assert lim.allow(10.5)  # the first start left the window
    lim.reset()
    assert all(lim.allow(11 + i * 0.01) for i in range(5))
    assert StartLimiter(0, 5).allow(0) and StartLimiter(10, 0).allow(0)


def test_restart_backoff_from_the_spec() -> None:
    got = [round(restart_delay(n, 10, 4, 160)) for n in range(1, 8)]
    assert got == [10, 20, 40, 80, 160, 160, 160]
    assert restart_delay(3, 0.1) == 0.1


def test_active_states() -> None:
    assert active_state("running") == "active" and active_state("exited") == "active"
    assert active_state("auto-restart") == "activating"
    assert active_state("stop-sigterm") == "deactivating"
    assert active_state("failed") == "failed" and active_state("dead") == "inactive"
