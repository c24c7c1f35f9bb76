"""The supervisor with real processes: every Type=, Restart=, KillMode=, timeouts, limits."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from flotte.supervisor.supervisor import Supervisor, UnitLoadError
from flotte.unit import load_text

pytestmark = pytest.mark.timeout(120)
PY = sys.executable


@pytest.fixture
async def sup(tmp_path: Path) -> AsyncIterator[Supervisor]:
    async with Supervisor(tmp_path / "state", cgroup_root=f"flotte-test-{os.getpid()}-"
                          f"{time.monotonic_ns() % 10**9}") as s:
        yield s


async def load(sup: Supervisor, name: str, text: str) -> str:
    await sup.load(load_text(textwrap.dedent(text), name, ctx=sup.ctx))
    return name


async def wait_for(pred, timeout: float = 10.0, interval: float = 0.02) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(interval)


def journal_text(sup: Supervisor, name: str) -> str:
    return "\n".join(e.message for e in sup.journal(name))  # type: ignore[union-attr]


def alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


# --- Type= -------------------------------------------------------------------------------


async def test_simple_start_stop(sup: Supervisor) -> None:
    name = await load(sup, "simple.service", """
        [Unit]
        Description=Simple sleeper
        [Service]
        ExecStart=/bin/sleep 60
        """)
    assert await sup.start(name) == "done"
    st = sup.status(name)
    assert (st["active_state"], st["sub_state"]) == ("active", "running")
    assert alive(st["main_pid"])
    pid = st["main_pid"]
    assert await sup.stop(name) == "done"
    st = sup.status(name)
    assert (st["active_state"], st["sub_state"], st["result"]) == ("inactive", "dead", "success")
    assert not alive(pid)
    text = journal_text(sup, name)
    for line in ("Starting Simple sleeper...", "Started Simple sleeper.",
                 "Stopping Simple sleeper...", "Stopped Simple sleeper."):
        assert line in text


async def test_simple_missing_binary_starts_then_fails_203(sup: Supervisor) -> None:
    name = await load(sup, "nobin.service", "[Service]\nExecStart=/nonexistent/binary\n")
    assert await sup.start(name) == "done"  # Type=simple: "started" at fork
    await wait_for(lambda: sup.status(name)["active_state"] == "failed")
    st = sup.status(name)
    assert (st["result"], st["exit_code"], st["exit_status"]) == ("exit-code", "exited", 203)
    text = journal_text(sup, name)
    assert "status=203/EXEC" in text and "/nonexistent/binary" in text


async def test_exec_missing_binary_fails_the_start(sup: Supervisor) -> None:
    name = await load(sup, "execnobin.service",
                      "[Service]\nType=exec\nExecStart=/nonexistent/binary\n")
    assert await sup.start(name) == "failed"
    assert sup.status(name)["active_state"] == "failed"
    assert "Failed to start" in journal_text(sup, name)


async def test_oneshot_remain_after_exit_runs_every_execstart(sup: Supervisor,
                                                              tmp_path: Path) -> None:
    out = tmp_path / "order"
    name = await load(sup, "once.service", f"""
        [Service]
        Type=oneshot
        RemainAfterExit=yes
        ExecStartPre=/bin/sh -c 'echo pre >> {out}'
        ExecStart=/bin/sh -c 'echo one >> {out}'
        ExecStart=/bin/sh -c 'echo two >> {out}'
        ExecStartPost=/bin/sh -c 'echo post >> {out}'
        ExecStop=/bin/sh -c 'echo stop >> {out}'
        """)
    assert await sup.start(name) == "done"
    assert (sup.status(name)["active_state"], sup.status(name)["sub_state"]) == ("active",
                                                                                 "exited")
    await sup.stop(name)
    assert out.read_text().split() == ["pre", "one", "two", "post", "stop"]
    assert sup.status(name)["sub_state"] == "dead"


async def test_oneshot_without_remain_ends_inactive(sup: Supervisor) -> None:
    name = await load(sup, "once2.service", "[Service]\nType=oneshot\nExecStart=/bin/true\n")
    assert await sup.start(name) == "done"
    await wait_for(lambda: sup.status(name)["sub_state"] == "dead")
    assert sup.status(name)["result"] == "success"


async def test_oneshot_failure(sup: Supervisor) -> None:
    name = await load(sup, "once3.service", "[Service]\nType=oneshot\nExecStart=/bin/false\n")
    assert await sup.start(name) == "failed"
    st = sup.status(name)
    assert (st["active_state"], st["result"], st["exit_status"]) == ("failed", "exit-code", 1)


async def test_forking_with_pidfile(sup: Supervisor, tmp_path: Path) -> None:
    pidfile = tmp_path / "d.pid"
    name = await load(sup, "fork.service", f"""
        [Service]
        Type=forking
        PIDFile={pidfile}
        ExecStart=/bin/sh -c 'sleep 60 & echo $! > {pidfile}'
        """)
    assert await sup.start(name) == "done"
    st = sup.status(name)
    assert st["sub_state"] == "running"
    assert st["main_pid"] == int(pidfile.read_text())
    pid = st["main_pid"]
    await sup.stop(name)
    assert not alive(pid)


async def test_forking_guesses_main_pid(sup: Supervisor) -> None:
    name = await load(sup, "fork2.service", """
        [Service]
        Type=forking
        ExecStart=/bin/sh -c 'setsid sleep 60 < /dev/null > /dev/null 2>&1 &'
        """)
    assert await sup.start(name) == "done"
    pid = sup.status(name)["main_pid"]
    assert alive(pid)

    def comm() -> str:
        with open(f"/proc/{pid}/comm") as fh:
            return fh.read().strip()

    await wait_for(lambda: comm() == "sleep")  # the guessed main PID is the daemon
    await sup.stop(name)
    assert not alive(pid)


NOTIFY = (f"{PY} -c \"import os, socket, time; time.sleep(0.3); "
          "s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); "
          "s.sendto(b'READY=1\\\\nSTATUS=serving', os.environ['NOTIFY_SOCKET']); "
          "[s.sendto(b'WATCHDOG=1', os.environ['NOTIFY_SOCKET']) or time.sleep(0.1) "
          "for _ in range(int(os.environ.get('PINGS', '0')))]; time.sleep(60)\"")


async def test_notify_waits_for_ready(sup: Supervisor) -> None:
    name = await load(sup, "notify.service", f"[Service]\nType=notify\nExecStart={NOTIFY}\n")
    t0 = time.monotonic()
    assert await sup.start(name) == "done"
    assert time.monotonic() - t0 >= 0.25
    st = sup.status(name)
    assert (st["sub_state"], st["status_text"]) == ("running", "serving")
    await sup.stop(name)


async def test_notify_exit_before_ready_is_protocol(sup: Supervisor) -> None:
    name = await load(sup, "notify2.service", "[Service]\nType=notify\nExecStart=/bin/true\n")
    assert await sup.start(name) == "failed"
    assert sup.status(name)["result"] == "protocol"


async def test_idle_behaves_like_simple(sup: Supervisor) -> None:
    name = await load(sup, "idle.service", "[Service]\nType=idle\nExecStart=/bin/sleep 60\n")
    assert await sup.start(name) == "done"
    assert sup.status(name)["sub_state"] == "running"
    await sup.stop(name)


# --- Restart= ---------------------------------------------------------------------------

CAUSES = {
    "clean": ("/bin/sh -c 'exit 0'", "success"),
    "exit": ("/bin/sh -c 'exit 3'", "exit-code"),
    # $$ is systemd's escape for a literal $, so the shell sees $$ (its own PID)
    "signal": ("/bin/sh -c 'kill -KILL $$$$'", "signal"),
    # SIGABRT with LimitCORE=0 writes no core: "killed", result signal (on-abort restarts)
    "abort": ("/bin/sh -c 'kill -ABRT $$$$'", "signal"),
}
TABLE = {
    "success": {"always", "on-success"},
    "exit-code": {"always", "on-failure"},
    "signal": {"always", "on-failure", "on-abnormal", "on-abort"},
    "core-dump": {"always", "on-failure", "on-abnormal", "on-abort"},
}


@pytest.mark.parametrize("restart", ["no", "always", "on-success", "on-failure", "on-abnormal",
                                     "on-abort", "on-watchdog"])
@pytest.mark.parametrize("cause", list(CAUSES))
async def test_restart_table_with_real_processes(sup: Supervisor, restart: str,
                                                 cause: str) -> None:
    cmd, result = CAUSES[cause]
    name = await load(sup, f"r-{restart}-{cause}.service", f"""
        [Unit]
        StartLimitIntervalSec=0
        [Service]
        ExecStart={cmd}
        Restart={restart}
        RestartSec=50ms
        LimitCORE=0
        """)
    await sup.start(name)
    if restart in TABLE[result]:
        await wait_for(lambda: sup.status(name)["restarts"] >= 2)
        await sup.stop(name)
    else:
        await wait_for(lambda: sup.status(name)["active_state"] in ("inactive", "failed"))
        await asyncio.sleep(0.2)
        st = sup.status(name)
        assert st["restarts"] == 0
        assert st["result"] == result


async def test_restart_on_timeout_and_watchdog(sup: Supervisor) -> None:
    name = await load(sup, "rt.service", """
        [Unit]
        StartLimitIntervalSec=0
        [Service]
        ExecStart=/bin/sleep 60
        RuntimeMaxSec=0.2
        Restart=on-abnormal
        RestartSec=0
        """)
    await sup.start(name)
    await wait_for(lambda: sup.status(name)["restarts"] >= 1)
    await sup.stop(name)
    wd = await load(sup, "wd.service", f"""
        [Unit]
        StartLimitIntervalSec=0
        [Service]
        Type=notify
        ExecStart={NOTIFY}
        WatchdogSec=0.5
        Restart=on-watchdog
        RestartSec=0
        """)
    await sup.start(wd)
    await wait_for(lambda: sup.status(wd)["restarts"] >= 1)
    assert "Watchdog timeout" in journal_text(sup, wd)
    await sup.stop(wd)


async def test_prevent_and_force_exit_status(sup: Supervisor) -> None:
    name = await load(sup, "prev.service", """
        [Service]
        ExecStart=/bin/sh -c 'exit 3'
        Restart=always
        RestartSec=0
        RestartPreventExitStatus=3
        """)
    await sup.start(name)
    await wait_for(lambda: sup.status(name)["active_state"] == "failed")
    assert sup.status(name)["restarts"] == 0
    force = await load(sup, "force.service", """
        [Unit]
        StartLimitIntervalSec=0
        [Service]
        ExecStart=/bin/sh -c 'exit 4'
        Restart=no
        RestartSec=0
        RestartForceExitStatus=4
        """)
    await sup.start(force)
    await wait_for(lambda: sup.status(force)["restarts"] >= 1)
    await sup.stop(force)


async def test_start_limit_hit(sup: Supervisor) -> None:
    name = await load(sup, "loop.service", """
        [Service]
        ExecStart=/bin/false
        Restart=always
        RestartSec=0
        """)
    await sup.start(name)
    await wait_for(lambda: sup.status(name)["result"] == "start-limit-hit")
    st = sup.status(name)
    assert st["active_state"] == "failed" and st["restarts"] == 5
    assert "Start request repeated too quickly." in journal_text(sup, name)
    assert await sup.start(name) == "failed"  # still limited
    sup.reset_failed(name)
    await sup.start(name)
    await wait_for(lambda: sup.status(name)["result"] == "start-limit-hit")


async def test_success_exit_status_makes_exit_clean(sup: Supervisor) -> None:
    name = await load(sup, "ses.service", """
        [Service]
        ExecStart=/bin/sh -c 'exit 75'
        SuccessExitStatus=TEMPFAIL
        """)
    await sup.start(name)
    await wait_for(lambda: sup.status(name)["active_state"] == "inactive")
    assert sup.status(name)["result"] == "success"


# --- stopping and KillMode= ----------------------------------------------------------------

# a daemon that leaves the unit's session (setsid) and records its child's PID;
# \\$! reaches the outer shell as \$! so the inner shell expands it
DAEMON = ("/bin/sh -c 'setsid sh -c \"sleep 60 & echo \\\\$! > {f}; wait\" "
          "< /dev/null > /dev/null 2>&1 & exec sleep 60'")


@pytest.mark.parametrize("mode", ["control-group", "mixed", "process", "none"])
async def test_killmode(sup: Supervisor, tmp_path: Path, mode: str) -> None:
    f = tmp_path / "grandchild.pid"
    name = await load(sup, f"km-{mode}.service", f"""
        [Service]
        ExecStart={DAEMON.format(f=f)}
        KillMode={mode}
        TimeoutStopSec=2
        """)
    await sup.start(name)
    await wait_for(lambda: f.exists() and f.read_text().strip().isdigit())
    escaped = int(f.read_text())
    main = sup.status(name)["main_pid"]
    assert escaped in sup.unit_pids(name)  # tracked although it left the session
    await sup.stop(name)
    if mode in ("control-group", "mixed"):
        assert not alive(escaped) and not alive(main)
    elif mode == "process":
        assert not alive(main) and alive(escaped)
    else:
        assert alive(main) and alive(escaped)
    for pid in (main, escaped):
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


async def test_stop_timeout_sigkill_and_result(sup: Supervisor) -> None:
    name = await load(sup, "stubborn.service", """
        [Service]
        ExecStart=/bin/sh -c 'trap "" TERM; while :; do sleep 0.1; done'
        TimeoutStopSec=0.5
        """)
    await sup.start(name)
    await asyncio.sleep(0.3)  # let the shell install its trap
    t0 = time.monotonic()
    await sup.stop(name)
    assert 0.4 < time.monotonic() - t0 < 5
    st = sup.status(name)
    assert (st["active_state"], st["result"]) == ("failed", "timeout")
    assert "State 'stop-sigterm' timed out. Killing." in journal_text(sup, name)


async def test_start_timeout(sup: Supervisor) -> None:
    name = await load(sup, "slowpre.service", """
        [Service]
        ExecStartPre=/bin/sleep 30
        ExecStart=/bin/sleep 60
        TimeoutStartSec=0.4
        """)
    assert await sup.start(name) == "failed"
    st = sup.status(name)
    assert (st["active_state"], st["result"]) == ("failed", "timeout")
    assert "Start operation timed out. Terminating." in journal_text(sup, name)


async def test_exec_chain_environment(sup: Supervisor, tmp_path: Path) -> None:
    out = tmp_path / "env"
    name = await load(sup, "chain.service", f"""
        [Service]
        ExecStart=/bin/sleep 60
        ExecStop=/bin/sh -c 'echo stop $MAINPID >> {out}'
        ExecStopPost=/bin/sh -c 'echo post $SERVICE_RESULT $EXIT_CODE $EXIT_STATUS >> {out}'
        """)
    await sup.start(name)
    main = sup.status(name)["main_pid"]
    await sup.stop(name)
    lines = out.read_text().splitlines()
    assert lines[0] == f"stop {main}"
    assert lines[1] == "post success killed TERM"


async def test_stop_interrupts_start(sup: Supervisor) -> None:
    name = await load(sup, "slowstart.service", """
        [Service]
        ExecStartPre=/bin/sleep 30
        ExecStart=/bin/sleep 60
        """)
    task = asyncio.create_task(sup.start(name))
    await wait_for(lambda: sup.status(name)["sub_state"] == "start-pre")
    await sup.stop(name)
    assert sup.status(name)["active_state"] == "inactive"
    assert await task in ("failed", "done")
    assert sup.unit_pids(name) == []


# --- prefixes and the execution context --------------------------------------------------


@pytest.fixture
def shared_dir() -> AsyncIterator[Path]:  # type: ignore[misc]
    """A directory other users can reach (pytest's tmp_path is under a 0700 dir)."""
    import shutil
    import tempfile

    d = Path(tempfile.mkdtemp(prefix="flotte-shared-"))
    os.chmod(d, 0o777)
    yield d
    shutil.rmtree(d, ignore_errors=True)


async def test_exec_prefixes(sup: Supervisor, shared_dir: Path) -> None:
    out = shared_dir / "p"
    name = await load(sup, "prefix.service", f"""
        [Service]
        Type=oneshot
        User=nobody
        Environment=X=expanded
        ExecStart=-/bin/false
        ExecStart=@/bin/sh argv0-name -c 'echo "$0" >> {out}'
        ExecStart=:/bin/sh -c 'echo $X \\$X >> {out}'
        ExecStart=+/bin/sh -c 'id -u >> {out}'
        ExecStart=!/bin/sh -c 'id -u >> {out}'
        ExecStart=!!/bin/sh -c 'id -u >> {out}'
        ExecStart=/bin/sh -c 'id -u >> {out}'
        """)
    out.touch()
    os.chmod(out, 0o666)
    assert await sup.start(name) == "done"
    lines = out.read_text().splitlines()
    nobody = str(65534)
    # !! acts like ! because flotte has no AmbientCapabilities= (docs/supervisor.md)
    assert lines == ["argv0-name", "expanded $X", "0", "0", "0", nobody]


async def test_user_drops_privileges(sup: Supervisor) -> None:
    name = await load(sup, "nobody.service", "[Service]\nUser=nobody\nExecStart=/bin/sleep 60\n")
    await sup.start(name)
    pid = sup.status(name)["main_pid"]

    def uids() -> list[str]:
        with open(f"/proc/{pid}/status") as fh:
            return next(line for line in fh if line.startswith("Uid:")).split()[1:]

    # Type=simple is started at fork: the privileges are dropped just before exec
    await wait_for(lambda: uids() == ["65534"] * 4)
    await sup.stop(name)


async def test_unknown_user_and_env_file_fail_clearly(sup: Supervisor) -> None:
    bad = await load(sup, "baduser.service",
                     "[Service]\nType=exec\nUser=no-such-user-xyz\nExecStart=/bin/sleep 60\n")
    assert await sup.start(bad) == "failed"
    assert sup.status(bad)["exit_status"] == 217
    assert "217/USER" in journal_text(sup, bad) or "USER" in journal_text(sup, bad)
    envf = await load(sup, "badenv.service",
                      "[Service]\nEnvironmentFile=/nonexistent/env\nExecStart=/bin/sleep 60\n")
    assert await sup.start(envf) == "failed"
    assert sup.status(envf)["result"] == "resources"
    assert "/nonexistent/env" in journal_text(sup, envf)
    # the supervisor keeps working
    ok = await load(sup, "fine.service", "[Service]\nExecStart=/bin/sleep 60\n")
    assert await sup.start(ok) == "done"
    await sup.stop(ok)


async def test_stdout_goes_to_the_journal(sup: Supervisor) -> None:
    name = await load(sup, "talk.service", """
        [Service]
        Type=oneshot
        SyslogIdentifier=talker
        ExecStart=/bin/sh -c 'echo hello out; echo "<3>bad news" >&2'
        """)
    await sup.start(name)
    entries = sup.journal(name)
    await wait_for(lambda: any(e.message == "bad news" for e in sup.journal(name)))  # type: ignore[union-attr]
    entries = sup.journal(name)
    hello = next(e for e in entries if e.message == "hello out")  # type: ignore[union-attr]
    bad = next(e for e in entries if e.message == "bad news")  # type: ignore[union-attr]
    assert hello.identifier == "talker" and bad.priority == 3


async def test_reload_and_kill(sup: Supervisor, tmp_path: Path) -> None:
    out = tmp_path / "r"
    name = await load(sup, "rl.service", f"""
        [Service]
        ExecStart=/bin/sleep 60
        ExecReload=/bin/sh -c 'echo reload $MAINPID >> {out}'
        """)
    await sup.start(name)
    assert await sup.reload(name) == "done"
    assert out.read_text().strip() == f"reload {sup.status(name)['main_pid']}"
    sup.kill(name, signal.SIGKILL, "main")
    await wait_for(lambda: sup.status(name)["active_state"] == "failed")
    assert sup.status(name)["result"] == "signal"


async def test_events_stream(sup: Supervisor) -> None:
    name = await load(sup, "ev.service", "[Service]\nType=oneshot\nExecStart=/bin/true\n")
    seen: list[tuple[str, str]] = []

    async def watch() -> None:
        async for ch in sup.events():
            if ch.unit == name:
                seen.append((ch.active_state, ch.sub_state))
                if ch.sub_state == "dead" and len(seen) > 1:
                    return

    task = asyncio.create_task(watch())
    await asyncio.sleep(0)
    await sup.start(name)
    await asyncio.wait_for(task, 5)
    assert ("activating", "start") in seen and seen[-1] == ("inactive", "dead")


async def test_bad_units_are_refused_with_the_reason(sup: Supervisor) -> None:
    with pytest.raises(UnitLoadError) as exc:
        await sup.load(load_text("[Service]\nExecStart=/bin/echo 'x\n", "broken.service"))
    assert "bad-setting" in str(exc.value)


async def test_oracle_defaults_apply(sup: Supervisor) -> None:
    """systemd252_oracle: no Type= with ExecStart= is simple, 90 s timeouts, 100 ms RestartSec."""
    name = await load(sup, "defaults.service", "[Service]\nExecStart=/bin/sleep 1\n")
    unit = sup.units[name].unit
    assert sup.status(name)["type"] == "simple"
    assert unit.value("Service", "TimeoutStartSec") == 90_000_000
    assert unit.value("Service", "RestartSec") == 100_000
