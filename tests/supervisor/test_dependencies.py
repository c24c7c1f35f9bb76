"""Dependencies and jobs with real processes: every rule of issue #5, and the seed's pair.

Each test loads small units whose processes are ``/bin/sleep`` or short shell
commands, drives the supervisor through its public API and checks the
processes and states that result.  The pure rules behind them are tested
exhaustively in ``test_jobs.py``/``test_deps.py``; here the point is that
the supervisor runs them: ordering waits for real starts, crashes and exits
reach the propagation rules, and a failed transaction leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from flotte.supervisor.deps import DependencyGraph, HostUnits
from flotte.supervisor.supervisor import (
    InstallError,
    NoSuchUnit,
    Supervisor,
    TransactionError,
)
from flotte.unit import load_text

pytestmark = pytest.mark.timeout(120)
SEED = Path(__file__).resolve().parents[2] / "examples" / "seed"
PY = sys.executable
SLEEP = "ExecStart=/bin/sleep 60"


def cgroup_root() -> str:
    return f"flotte-test-{os.getpid()}-{time.monotonic_ns() % 10**9}"


@pytest.fixture
async def sup(tmp_path: Path) -> AsyncIterator[Supervisor]:
    async with Supervisor(tmp_path / "state", cgroup_root=cgroup_root()) as s:
        yield s


async def load(sup: Supervisor, name: str, text: str) -> str:
    await sup.load(load_text(textwrap.dedent(text), name, ctx=sup.ctx))
    return name


async def unit(sup: Supervisor, name: str, deps: str = "", service: str = SLEEP,
               install: str = "") -> str:
    text = f"[Unit]\nDescription=Unit {name}\n{deps}\n[Service]\n{service}\n"
    if install:
        text += f"[Install]\n{install}\n"
    return await load(sup, name, text)


async def wait_for(pred: Callable[[], object], timeout: float = 10.0,
                   interval: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(interval)


def state(sup: Supervisor, name: str) -> str:
    return str(sup.status(name)["active_state"])


def pid(sup: Supervisor, name: str) -> int:
    p = sup.status(name)["main_pid"]
    assert isinstance(p, int)
    return p


def journal_text(sup: Supervisor, name: str) -> str:
    return "\n".join(e.message for e in sup.journal(name))  # type: ignore[union-attr]


def alive(p: int | None) -> bool:
    if not p:
        return False
    try:
        with open(f"/proc/{p}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


async def stays(pred: Callable[[], object], seconds: float = 0.5) -> None:
    """``pred`` holds for ``seconds`` (a rule that must *not* fire)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert pred()
        await asyncio.sleep(0.02)


# --- Requires= ---------------------------------------------------------------------------


async def test_requires_starts_the_required_unit_first_when_ordered(sup: Supervisor,
                                                                    tmp_path: Path) -> None:
    out = tmp_path / "order"
    b = await unit(sup, "b.service", service=f"""
        ExecStartPre=/bin/sleep 0.3
        ExecStart=/bin/sleep 60
        ExecStartPost=/bin/sh -c 'echo b-started >> {out}'""")
    a = await unit(sup, "a.service", f"Requires={b}\nAfter={b}", f"""
        ExecStartPre=/bin/sh -c 'echo a-starting >> {out}'
        ExecStart=/bin/sleep 60""")
    assert await sup.start(a) == "done"
    assert state(sup, a) == state(sup, b) == "active"
    # After= waited for b's start job to finish (ExecStartPost= included)
    assert out.read_text().split() == ["b-started", "a-starting"]


async def test_requires_without_after_starts_both_at_once(sup: Supervisor,
                                                          tmp_path: Path) -> None:
    out = tmp_path / "order"
    b = await unit(sup, "b.service", service=f"""
        ExecStartPre=/bin/sleep 0.5
        ExecStart=/bin/sleep 60
        ExecStartPost=/bin/sh -c 'echo b-started >> {out}'""")
    a = await unit(sup, "a.service", f"Requires={b}", f"""
        ExecStartPre=/bin/sh -c 'echo a-starting >> {out}'
        ExecStart=/bin/sleep 60""")
    assert await sup.start(a) == "done"
    await wait_for(lambda: state(sup, b) == "active")
    assert out.read_text().split() == ["a-starting", "b-started"]


async def test_failed_required_start_fails_the_dependent_with_dependency(
        sup: Supervisor) -> None:
    b = await unit(sup, "b.service", service="Type=exec\nExecStart=/nonexistent/binary")
    a = await unit(sup, "a.service", f"Requires={b}\nAfter={b}\nDescription=App A")
    c = await unit(sup, "c.service", f"Requires={a}\nAfter={a}")
    assert await sup.start(c) == "dependency"
    assert state(sup, b) == "failed"
    # a and c never ran: their start jobs failed with b's, recursively
    assert state(sup, a) == state(sup, c) == "inactive"
    assert sup.status(a)["main_pid"] is None
    failure = sup.status(a)["job_failure"]
    assert failure == f"Dependency failed for App A. (a.service has Requires={b}, whose job failed)"
    assert "Dependency failed for Unit c.service." in sup.status(c)["job_failure"]
    assert "Dependency failed for App A." in journal_text(sup, a)
    # a later successful start clears the reason
    await unit(sup, "b.service")
    assert await sup.start(c) == "done"
    assert sup.status(a)["job_failure"] is None


async def test_requires_carries_stop_and_restart_but_not_a_crash(sup: Supervisor) -> None:
    b = await unit(sup, "b.service")
    a = await unit(sup, "a.service", f"Requires={b}\nAfter={b}")
    await sup.start(a)
    a_pid, b_pid = pid(sup, a), pid(sup, b)
    # restart of b restarts a (a try-restart job: a was running)
    assert await sup.restart(b) == "done"
    assert pid(sup, b) != b_pid and pid(sup, a) != a_pid
    assert not alive(a_pid) and state(sup, a) == "active"
    # stop of b stops a
    assert await sup.stop(b) == "done"
    assert state(sup, a) == "inactive"
    # a crash of b is not a job: a keeps running (only BindsTo= follows state)
    await sup.start(a)
    a_pid = pid(sup, a)
    os.kill(pid(sup, b), signal.SIGKILL)
    await wait_for(lambda: state(sup, b) == "failed")
    await stays(lambda: state(sup, a) == "active" and pid(sup, a) == a_pid)


# --- Wants= ------------------------------------------------------------------------------


async def test_wants_pulls_in_and_ignores_failures_and_unknown_units(sup: Supervisor) -> None:
    bad = await unit(sup, "bad.service", service="Type=exec\nExecStart=/nonexistent/binary")
    good = await unit(sup, "good.service")
    a = await unit(sup, "a.service", f"Wants={bad} {good} ghost.service\nAfter={bad} {good}")
    assert await sup.start(a) == "done"
    assert (state(sup, a), state(sup, good), state(sup, bad)) == ("active", "active", "failed")
    assert "Cannot add dependency job for ghost.service" in journal_text(sup, a)
    # nothing is carried back: stopping what a wants leaves a alone
    await sup.stop(good)
    await stays(lambda: state(sup, a) == "active", 0.3)


# --- Requisite= ----------------------------------------------------------------------------


async def test_requisite_checks_without_starting(sup: Supervisor) -> None:
    b = await unit(sup, "b.service")
    a = await unit(sup, "a.service", f"Requisite={b}\nAfter={b}")
    assert await sup.start(a) == "dependency"
    assert state(sup, a) == state(sup, b) == "inactive"
    assert f"has Requisite={b}" in sup.status(a)["job_failure"]
    await sup.start(b)
    assert await sup.start(a) == "done"
    # like Requires=, a stop of b stops a
    await sup.stop(b)
    assert state(sup, a) == "inactive"


async def test_requisite_waits_for_an_activating_unit(sup: Supervisor) -> None:
    b = await unit(sup, "b.service", service="ExecStartPre=/bin/sleep 0.4\nExecStart=/bin/sleep 60")
    a = await unit(sup, "a.service", f"Requisite={b}")
    start_b = asyncio.create_task(sup.start(b))
    await wait_for(lambda: state(sup, b) == "activating")
    assert await sup.start(a) == "done"
    assert state(sup, b) == "active"
    assert await start_b == "done"


# --- BindsTo= ------------------------------------------------------------------------------


async def test_bindsto_stops_when_the_other_crashes_exits_or_vanishes(sup: Supervisor) -> None:
    b = await unit(sup, "b.service")
    a = await unit(sup, "a.service", f"BindsTo={b}\nAfter={b}")
    assert await sup.start(a) == "done"
    assert state(sup, b) == "active"  # pulled in like Requires=
    # b crashes
    os.kill(pid(sup, b), signal.SIGKILL)
    await wait_for(lambda: state(sup, a) == "inactive")
    assert "Stopping" in journal_text(sup, a)
    # b exits cleanly on its own
    await unit(sup, "b.service", service="ExecStart=/bin/sleep 0.5")
    await sup.start(a)
    assert state(sup, a) == "active"
    await wait_for(lambda: state(sup, b) == "inactive")
    await wait_for(lambda: state(sup, a) == "inactive")
    # b is unloaded
    await unit(sup, "b.service")
    await sup.start(a)
    a_pid = pid(sup, a)
    await sup.unload(b)
    await wait_for(lambda: state(sup, a) == "inactive")
    assert not alive(a_pid)


async def test_bindsto_stops_a_unit_started_while_the_other_is_down(sup: Supervisor) -> None:
    # b is skipped by a condition: a, bound to it and ordered after it, must not stay up
    b = await unit(sup, "b.service", "ConditionPathExists=/nonexistent/path")
    a = await unit(sup, "a.service", f"BindsTo={b}\nAfter={b}")
    await sup.start(a)
    await wait_for(lambda: state(sup, a) == "inactive")
    assert "Unit is bound to inactive unit b.service" in journal_text(sup, a)


# --- PartOf= -------------------------------------------------------------------------------


async def test_partof_carries_stop_and_restart_one_way(sup: Supervisor) -> None:
    b = await unit(sup, "b.service")
    a = await unit(sup, "a.service", f"PartOf={b}")
    assert await sup.start(a) == "done"
    assert state(sup, b) == "inactive"  # PartOf= pulls nothing in
    await sup.start(b)
    a_pid = pid(sup, a)
    await sup.restart(b)
    assert state(sup, a) == "active" and pid(sup, a) != a_pid
    await sup.stop(a)  # one way: b stays
    assert state(sup, b) == "active"
    await sup.start(a)
    await sup.stop(b)
    assert state(sup, a) == "inactive"
    # a restart of b does not start a part that is not running
    await sup.start(b)
    await sup.restart(b)
    assert state(sup, a) == "inactive"


async def test_try_restart_restarts_only_what_runs(sup: Supervisor) -> None:
    lone = await unit(sup, "lone.service")
    b = await unit(sup, "b.service")
    a = await unit(sup, "a.service", f"Requires={b}\nAfter={b}")
    for u in (lone, b):
        assert await sup.try_restart(u) == "done"
        assert state(sup, u) == "inactive"
    await sup.start(lone)
    await sup.start(a)
    before = {u: pid(sup, u) for u in (lone, a, b)}
    assert await sup.try_restart(lone) == "done"
    assert await sup.try_restart(b) == "done"
    assert all(state(sup, u) == "active" and pid(sup, u) != before[u] for u in before)


# --- Conflicts= ----------------------------------------------------------------------------


async def test_conflicts_stops_the_other_unit_both_ways(sup: Supervisor) -> None:
    b = await unit(sup, "b.service")
    a = await unit(sup, "a.service", f"Conflicts={b}")
    await sup.start(b)
    assert await sup.start(a) == "done"
    assert (state(sup, a), state(sup, b)) == ("active", "inactive")
    assert await sup.start(b) == "done"
    assert (state(sup, a), state(sup, b)) == ("inactive", "active")


# --- ordering ------------------------------------------------------------------------------


async def test_stops_run_in_reverse_order(sup: Supervisor, tmp_path: Path) -> None:
    out = tmp_path / "stops"

    def svc(name: str, delay: str) -> str:
        return (f"ExecStart=/bin/sleep 60\nExecStop=/bin/sh -c 'sleep {delay}; "
                f"echo {name} >> {out}'")

    c = await unit(sup, "c.service", service=svc("c", "0"))
    b = await unit(sup, "b.service", f"Requires={c}\nAfter={c}", svc("b", "0.2"))
    a = await unit(sup, "a.service", f"Requires={b}\nAfter={b}", svc("a", "0.4"))
    await sup.start(a)
    assert await sup.stop(c) == "done"
    assert out.read_text().split() == ["a", "b", "c"]


# --- OnFailure= / OnSuccess= ----------------------------------------------------------------


async def test_on_failure_fires_on_every_failed_run_even_with_restart(sup: Supervisor,
                                                                      tmp_path: Path) -> None:
    out = tmp_path / "alerts"
    await unit(sup, "alert.service", service=f"Type=oneshot\nExecStart=/bin/sh -c "
               f"'echo alert >> {out}'")
    a = await unit(sup, "a.service", "OnFailure=alert.service\nStartLimitIntervalSec=0",
                   "ExecStart=/bin/sh -c 'exit 3'\nRestart=on-failure\nRestartSec=0.4")
    await sup.start(a)
    # v254+ timing: every run that fails triggers it, although Restart= follows
    await wait_for(lambda: out.exists() and len(out.read_text().split()) >= 2)
    assert sup.status(a)["restarts"] >= 1
    await sup.stop(a)


async def test_on_success_fires_when_a_run_ends_cleanly(sup: Supervisor, tmp_path: Path) -> None:
    out = tmp_path / "next"
    await unit(sup, "next.service", service=f"Type=oneshot\nExecStart=/bin/touch {out}")
    await unit(sup, "alert.service", service=f"Type=oneshot\nExecStart=/bin/touch {out}.alert")
    a = await unit(sup, "a.service", "OnSuccess=next.service\nOnFailure=alert.service",
                   "Type=oneshot\nExecStart=/bin/true")
    assert await sup.start(a) == "done"
    await wait_for(out.exists)
    await asyncio.sleep(0.2)
    assert not Path(f"{out}.alert").exists()


async def test_dependency_failure_triggers_on_failure(sup: Supervisor, tmp_path: Path) -> None:
    out = tmp_path / "alert"
    await unit(sup, "alert.service", service=f"Type=oneshot\nExecStart=/bin/touch {out}")
    b = await unit(sup, "b.service", service="Type=exec\nExecStart=/nonexistent/binary")
    a = await unit(sup, "a.service", f"Requires={b}\nAfter={b}\nOnFailure=alert.service")
    assert await sup.start(a) == "dependency"
    await wait_for(out.exists)


# --- automatic restarts ----------------------------------------------------------------------


async def test_automatic_restart_restarts_the_units_depending_on_it(sup: Supervisor) -> None:
    b = await unit(sup, "b.service", "StartLimitIntervalSec=0",
                   "ExecStart=/bin/sleep 60\nRestart=always\nRestartSec=0.2")
    req = await unit(sup, "req.service", f"Requires={b}\nAfter={b}")
    bound = await unit(sup, "bound.service", f"BindsTo={b}\nAfter={b}")
    part = await unit(sup, "part.service", f"PartOf={b}\nAfter={b}")
    wants = await unit(sup, "wants.service", f"Wants={b}\nAfter={b}")
    for u in (req, bound, part, wants):
        assert await sup.start(u) == "done"
    before = {u: pid(sup, u) for u in (b, req, bound, part, wants)}
    os.kill(before[b], signal.SIGKILL)
    await wait_for(lambda: all(state(sup, u) == "active" and pid(sup, u) != before[u]
                               for u in (b, req, bound, part)))
    assert sup.status(b)["restarts"] == 1
    # Wants= is not carried: that unit kept running the whole time
    assert pid(sup, wants) == before[wants]
    # the bound unit was restarted with b, not stopped for good
    await stays(lambda: state(sup, bound) == "active", 0.3)


# --- StopWhenUnneeded= ----------------------------------------------------------------------


async def test_stop_when_unneeded(sup: Supervisor) -> None:
    helper = await unit(sup, "helper.service", "StopWhenUnneeded=yes")
    a = await unit(sup, "a.service", f"Requires={helper}")
    b = await unit(sup, "b.service", f"Wants={helper}")
    await sup.start(a)
    await sup.start(b)
    assert state(sup, helper) == "active"
    await sup.stop(a)
    await stays(lambda: state(sup, helper) == "active", 0.3)  # b still wants it
    await sup.stop(b)
    await wait_for(lambda: state(sup, helper) == "inactive")
    assert "Unit not needed anymore. Stopping." in journal_text(sup, helper)
    # started by hand with nobody needing it: stopped again at once
    await sup.start(helper)
    await wait_for(lambda: state(sup, helper) == "inactive")


# --- Upholds= -------------------------------------------------------------------------------


async def test_upholds_starts_the_unit_again(sup: Supervisor) -> None:
    worker = await unit(sup, "worker.service")
    keeper = await unit(sup, "keeper.service", f"Upholds={worker}")
    await sup.start(keeper)
    first = pid(sup, worker)
    os.kill(first, signal.SIGKILL)
    await wait_for(lambda: state(sup, worker) == "active" and pid(sup, worker) != first)


# --- [Install] ----------------------------------------------------------------------------


async def test_enable_wantedby_makes_a_sidekick_follow_its_unit(sup: Supervisor,
                                                                 tmp_path: Path) -> None:
    hello = await unit(sup, "hello.service")
    sk = await unit(sup, "hello-sk.service", f"BindsTo={hello}\nAfter={hello}",
                    install=f"WantedBy={hello}")
    assert sup.status(sk)["install_state"] == "disabled"
    await sup.start(hello)
    assert state(sup, sk) == "inactive"
    await sup.stop(hello)
    changes = await sup.enable(sk)
    assert [str(c) for c in changes] == [f"Added {hello} Wants={sk}"]
    assert sup.status(sk)["install_state"] == "enabled"
    assert sup.status(hello)["dependencies"]["Wants"] == [sk]
    assert await sup.start(hello) == "done"
    assert state(sup, sk) == "active"
    await sup.stop(hello)
    assert state(sup, sk) == "inactive"
    # kept in the state directory: a new supervisor knows it is enabled
    assert (tmp_path / "state" / "enabled").read_text() == f"{sk}\n"
    async with Supervisor(tmp_path / "state", cgroup_root=cgroup_root()) as again:
        assert again.graph.is_enabled(sk)
    await sup.disable(sk)
    assert (tmp_path / "state" / "enabled").read_text() == ""
    await sup.start(hello)
    assert state(sup, sk) == "inactive"
    with pytest.raises(InstallError):
        await sup.enable("nope.service")


async def test_requiredby_and_also(sup: Supervisor) -> None:
    app = await unit(sup, "app.service")
    await unit(sup, "log.service", install=f"WantedBy={app}")
    db = await unit(sup, "db.service", f"Description=DB\nBefore={app}",
                    "Type=exec\nExecStart=/nonexistent/binary",
                    install=f"RequiredBy={app}\nAlso=log.service")
    await sup.enable(db)
    assert sup.status("log.service")["install_state"] == "enabled"
    # RequiredBy=: the app's start now needs db, which cannot start
    assert await sup.start(app) == "dependency"
    assert state(sup, app) == "inactive"
    assert "db.service" in sup.status(app)["job_failure"]


async def test_boot_starts_what_multi_user_target_wants(sup: Supervisor) -> None:
    web = await unit(sup, "web.service", install="WantedBy=multi-user.target")
    other = await unit(sup, "other.service", install="WantedBy=multi-user.target")
    await sup.enable(web)
    assert await sup.boot() == {web: "done"}
    assert state(sup, web) == "active" and state(sup, other) == "inactive"


# --- host units --------------------------------------------------------------------------------


async def test_required_unknown_unit_fails_naming_it(sup: Supervisor) -> None:
    b = await unit(sup, "b.service")
    a = await unit(sup, "a.service", f"Requires={b} ghost.service")
    with pytest.raises(TransactionError) as info:
        await sup.start(a)
    assert "Unit ghost.service not found." in str(info.value)
    assert "host units" in str(info.value)  # what to do about it
    assert state(sup, a) == state(sup, b) == "inactive"  # nothing half-started
    assert "ghost.service not found" in sup.status(a)["job_failure"]
    with pytest.raises(NoSuchUnit):
        await sup.start("ghost.service")


async def test_host_units_default_to_up_and_can_be_checked(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    marker = tmp_path / "docker-up"
    (state_dir / "host-units").write_text(
        f"# this machine\ndocker.service  test -e {marker}\nmy-vpn.service\n-sshd.service\n")
    async with Supervisor(state_dir, cgroup_root=cgroup_root()) as sup:
        # etcd.service and network-online.target are defaults without a check: assumed up
        a = await unit(sup, "a.service", "Requires=etcd.service network-online.target\n"
                       "After=etcd.service network-online.target")
        assert await sup.start(a) == "done"
        b = await unit(sup, "b.service", "Description=App B\nRequires=docker.service "
                       "my-vpn.service\nAfter=docker.service")
        assert await sup.start(b) == "dependency"
        assert state(sup, b) == "inactive"
        assert sup.status(b)["job_failure"] == (
            "Dependency failed for App B. (b.service has Requires=docker.service, whose job "
            "failed)")
        assert f"test -e {marker}" in journal_text(sup, "docker.service")
        assert sup.host_units()["docker.service"] == "failed"
        marker.touch()
        assert await sup.start(b) == "done"
        assert sup.host_units()["docker.service"] == "active"
        # a removed default is unknown now; a host unit cannot be stopped by flotte
        c = await unit(sup, "c.service", "Requires=sshd.service")
        with pytest.raises(TransactionError, match=r"sshd\.service not found"):
            await sup.start(c)
        with pytest.raises(TransactionError, match="the machine provides it"):
            await sup.stop("docker.service")
        # a start of a host unit checks it
        assert await sup.start("docker.service") == "done"


async def test_host_units_from_the_constructor_and_a_bad_file(tmp_path: Path) -> None:
    hosts = HostUnits(["my-db.service"], defaults=False)
    async with Supervisor(tmp_path / "s1", cgroup_root=cgroup_root(), host_units=hosts) as sup:
        a = await unit(sup, "a.service", "Requires=my-db.service")
        assert await sup.start(a) == "done"
        d = await unit(sup, "d.service", "Requires=docker.service")
        with pytest.raises(TransactionError, match=r"docker\.service not found"):
            await sup.start(d)
    bad = tmp_path / "s2"
    bad.mkdir()
    (bad / "host-units").write_text("docker.service\nnot a unit\n")
    with pytest.raises(ValueError, match=r"host-units: host units line 2: 'not'"):
        Supervisor(bad, cgroup_root=cgroup_root())


def test_host_units_file_is_applied_whole_or_not_at_all() -> None:
    hosts = HostUnits(["my-db.service"], defaults=False)
    with pytest.raises(ValueError, match="line 2"):
        hosts.update("docker.service docker info\nnot a unit\n")
    assert "docker.service" not in hosts
    hosts.update("docker.service docker info\n-my-db.service\n")
    assert hosts.check("docker.service") == "docker info" and "my-db.service" not in hosts


def test_plain_units_are_those_without_edges_or_job_settings() -> None:
    g = DependencyGraph([
        load_text("[Service]\nExecStart=/bin/true\n", "lone.service"),
        load_text("[Unit]\nStopWhenUnneeded=yes\n[Service]\nExecStart=/bin/true\n",
                  "helper.service"),
        load_text("[Unit]\nAfter=docker.service\n[Service]\nExecStart=/bin/true\n",
                  "ordered.service")])
    assert g.plain("lone.service")
    assert not g.plain("helper.service") and not g.plain("ordered.service")
    g.add(load_text("[Unit]\nWants=lone.service\n[Service]\nExecStart=/bin/true\n",
                    "w.service"))
    assert not g.plain("lone.service")  # WantedBy= now
    g.remove("w.service")
    assert g.plain("lone.service")


# --- status ------------------------------------------------------------------------------------


async def test_status_lists_dependencies_both_ways(sup: Supervisor) -> None:
    b = await unit(sup, "b.service")
    a = await unit(sup, "a.service", f"Requires={b}\nAfter={b} docker.service\n"
                   "OnFailure=alert.service")
    st_a, st_b = sup.status(a), sup.status(b)
    assert st_a["dependencies"] == {"Requires": [b], "After": [b, "docker.service"],
                                    "OnFailure": ["alert.service"]}
    assert st_b["dependencies"] == {"Before": [a], "RequiredBy": [a]}
    assert st_a["install_state"] == "static"
    assert st_a["job"] is None and st_a["job_failure"] is None


async def test_status_shows_the_queued_job(sup: Supervisor) -> None:
    b = await unit(sup, "b.service", service="ExecStartPre=/bin/sleep 0.5\nExecStart=/bin/sleep 60")
    a = await unit(sup, "a.service", f"Requires={b}\nAfter={b}")
    task = asyncio.create_task(sup.start(a))
    await wait_for(lambda: state(sup, b) == "activating")
    assert sup.status(a)["job"] == "start" and sup.status(b)["job"] == "start"
    assert state(sup, a) == "inactive"  # waiting for b
    assert await task == "done"
    assert sup.status(a)["job"] is None


# --- cycles ------------------------------------------------------------------------------------


async def test_ordering_cycle_is_named_and_nothing_starts(sup: Supervisor) -> None:
    a = await unit(sup, "a.service", "Requires=b.service\nAfter=c.service")
    await unit(sup, "b.service", "Requires=c.service\nAfter=a.service")
    await unit(sup, "c.service", "After=b.service")
    with pytest.raises(TransactionError) as info:
        await sup.start(a)
    e = info.value
    assert e.cycle == ("a.service", "c.service", "b.service")
    assert "Ordering cycle found: a.service → c.service → b.service → a.service" in str(e)
    assert "remove one of the After=/Before= settings" in str(e)
    for u in ("a.service", "b.service", "c.service"):
        assert state(sup, u) == "inactive" and sup.status(u)["main_pid"] is None
        assert sup.unit_pids(u) == []
    assert "Ordering cycle found" in sup.status(a)["job_failure"]


async def test_wanted_cycle_is_broken_and_the_rest_starts(sup: Supervisor) -> None:
    a = await unit(sup, "a.service", "Wants=b.service\nAfter=b.service")
    await unit(sup, "b.service", "After=a.service")
    assert await sup.start(a) == "done"
    assert state(sup, "b.service") == "inactive"
    assert "job b.service/start deleted to break ordering cycle" in journal_text(sup, a)


# --- refusals, replacing jobs --------------------------------------------------------------------


async def test_refuse_manual_start(sup: Supervisor) -> None:
    lib = await unit(sup, "lib.service", "RefuseManualStart=yes")
    app = await unit(sup, "app.service", f"Requires={lib}")
    with pytest.raises(TransactionError, match="may be requested by dependency only"):
        await sup.start(lib)
    assert await sup.start(app) == "done"
    assert state(sup, lib) == "active"


async def test_stop_replaces_a_pending_start(sup: Supervisor) -> None:
    b = await unit(sup, "b.service", service="ExecStartPre=/bin/sleep 30\nExecStart=/bin/sleep 60")
    a = await unit(sup, "a.service", f"Requires={b}\nAfter={b}")
    task = asyncio.create_task(sup.start(a))
    await wait_for(lambda: sup.status(b)["sub_state"] == "start-pre")
    assert await sup.stop(b) == "done"
    # a's start job was replaced by the stop (Requires= propagates b's stop to a)
    assert await asyncio.wait_for(task, 10) == "canceled"
    assert state(sup, a) == state(sup, b) == "inactive"
    assert sup.unit_pids(b) == []


# --- the seed's pair ---------------------------------------------------------------------------


def seed_pair(tmp: Path, app: str, stop: str, check: str) -> tuple[Path, Path]:
    """ch10's apache@.service and apache-secretary@.service, the container replaced.

    This machine has no Docker daemon and no etcd: ``docker run`` becomes
    ``app``, ``docker stop`` becomes ``stop``, ``docker pull`` (which would
    fail) goes; the ``-``-prefixed ``docker kill``/``docker rm`` stay (they
    fail harmlessly, as they did on a fresh CoreOS host).  The secretary's
    etcdctl loop becomes a shell loop that writes/removes a file per
    instance; everything else (Requires=, Before=/After=, BindsTo=,
    Restart=on-failure, EnvironmentFile=, KillMode=none …) is the seed's.
    """
    apache = (SEED / "ch10" / "apache@.service").read_text()
    for old, new in (
            ("ExecStartPre=/usr/bin/docker pull eboraas/apache\n", ""),
            ("ExecStart=/usr/bin/docker run --name apache.%i -p ${COREOS_PUBLIC_IPV4}:%i:80 "
             "eboraas/apache", f"ExecStart={app}"),
            ("ExecStop=/usr/bin/docker stop apache.%i", f"ExecStop={stop}")):
        assert old in apache
        apache = apache.replace(old, new)
    secretary = (SEED / "ch10" / "apache-secretary@.service").read_text()
    keys = tmp / "services-apache"
    keys.mkdir()
    loop = (f"ExecStart=/bin/bash -c 'while true; do if {check}; then "
            f"echo %H:%i > {keys}/%i; else rm -f {keys}/%i; fi; sleep 0.1; done'\n")
    secretary, n = re.subn(r"ExecStart=/bin/bash -c '\\\n.*?done'\n", lambda _: loop, secretary,
                           flags=re.S)
    assert n == 1
    old = "ExecStop=/usr/bin/etcdctl rm /services/apache/${COREOS_PUBLIC_IPV4}"
    assert old in secretary
    secretary = secretary.replace(old, f"ExecStop=/bin/rm -f {keys}/%i")
    (tmp / "apache@.service").write_text(apache)
    (tmp / "apache-secretary@.service").write_text(secretary)
    return tmp / "apache@.service", tmp / "apache-secretary@.service"


async def check_seed_pair(sup: Supervisor, tmp: Path, port: str, app: str, stop: str,
                          check: str) -> None:
    apache_t, secretary_t = seed_pair(tmp, app, stop, check)
    apache, secretary = f"apache@{port}.service", f"apache-secretary@{port}.service"
    await sup.load(apache_t, name=apache)
    await sup.load(secretary_t, name=secretary)
    key = tmp / "services-apache" / port

    # start the app: the secretary is started after it and announces it
    assert await sup.start(apache) == "done"
    assert state(sup, apache) == state(sup, secretary) == "active"
    assert sup.status(secretary)["timestamps"]["active_enter"] >= \
        sup.status(apache)["timestamps"]["active_enter"]
    await wait_for(key.exists)
    assert key.read_text().strip() == f"{sup.ctx.hostname}:{port}"

    # restart of the app restarts the secretary
    app_pid, sec_pid = pid(sup, apache), pid(sup, secretary)
    assert await sup.restart(apache) == "done"
    assert state(sup, apache) == state(sup, secretary) == "active"
    assert pid(sup, apache) != app_pid and pid(sup, secretary) != sec_pid
    assert not alive(sec_pid)
    await wait_for(key.exists)

    # stop of the app stops the secretary (which removes the key)
    sec_pid = pid(sup, secretary)
    assert await sup.stop(apache) == "done"
    assert state(sup, apache) == state(sup, secretary) == "inactive"
    assert not alive(sec_pid) and not key.exists()

    # SIGKILL of the app's main process stops the secretary (BindsTo=)
    assert await sup.start(apache) == "done"
    await wait_for(key.exists)
    sec_pid = pid(sup, secretary)
    os.kill(pid(sup, apache), signal.SIGKILL)
    await wait_for(lambda: state(sup, secretary) == "inactive")
    assert state(sup, apache) == "failed" and sup.status(apache)["result"] == "signal"
    assert not alive(sec_pid) and not key.exists()
    assert f"Unit is bound to inactive unit {apache}" in journal_text(sup, secretary) or \
        f"{apache} stopped and {secretary} has BindsTo={apache}" in journal_text(sup, secretary)

    # starting the secretary alone pulls the app in first
    assert await sup.start(secretary) == "done"
    assert state(sup, apache) == "active"
    await sup.stop(apache)


async def test_seed_pair_apache_8080(sup: Supervisor, tmp_path: Path) -> None:
    await check_seed_pair(sup, tmp_path, "8080", "/bin/sleep 3600", "/bin/kill $MAINPID",
                          "true")


async def test_seed_pair_with_a_real_http_server(sup: Supervisor, tmp_path: Path,
                                                 require_binary: Callable[[str, str], str]
                                                 ) -> None:
    """The same with an HTTP server on a free port and the secretary's own curl check."""
    require_binary("curl", "curl")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    app = f"{PY} -m http.server %i --bind 127.0.0.1 --directory {tmp_path}"
    # docker stop waits for the container to be gone; so does this
    stop = ("/bin/sh -c 'kill $MAINPID; while kill -0 $MAINPID 2>/dev/null; do sleep 0.05; "
            "done'")
    await check_seed_pair(sup, tmp_path, port, app, stop,
                          "curl -sf -o /dev/null 127.0.0.1:%i")
