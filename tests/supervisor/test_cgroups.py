"""Per-unit process tracking with real processes, in both mechanisms."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from flotte.supervisor import cgroups, launcher
from flotte.supervisor.cgroups import MARKER_ENV, CgroupManager, cg_escape, read_stat
from flotte.supervisor.launcher import Child, ExecSpec, ExitInfo, spawn

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (cgroups)"),
    pytest.mark.timeout(60),
]

V2_USABLE = any(
    os.path.isdir(p) and os.path.exists(os.path.join(p, "cgroup.procs"))
    and os.access(p, os.W_OK)
    for p in cgroups.V2_MOUNTPOINTS
) and Path("/proc/self/cgroup").read_text().count("0::") == 1


def _root_name() -> str:
    return f"flotte-test-{uuid.uuid4().hex[:10]}"


async def _teardown(m: CgroupManager) -> None:
    for name in list(m._units):
        cg = m.unit(name)
        cg.signal_all(signal.SIGKILL)
        await cg.wait_empty(5)
        cg.remove()
    m.cleanup()
    m.remove_root()


@pytest.fixture(params=["cgroup2", "subreaper"])
async def manager(request: pytest.FixtureRequest) -> AsyncIterator[CgroupManager]:
    if request.param == "cgroup2" and not V2_USABLE:
        pytest.skip("no writable cgroup v2 hierarchy")
    m = CgroupManager.detect(_root_name(), prefer=request.param)
    assert m.mechanism == request.param
    yield m
    await _teardown(m)


def sh(script: str, cg: cgroups.UnitCgroup, **kw: object) -> ExecSpec:
    spec = ExecSpec("/bin/sh", ["/bin/sh", "-c", script], stdout="null", cgroup=cg)
    for k, v in kw.items():
        setattr(spec, k, v)
    return spec


def gone(pid: int) -> bool:
    st = read_stat(pid)
    return st is None or st.state in ("Z", "X")


async def until(cond: object, timeout: float = 5.0) -> None:
    assert callable(cond)
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


# -- detection and names ------------------------------------------------------


@pytest.mark.skipif(not V2_USABLE, reason="no writable cgroup v2 hierarchy")
def test_detect_picks_cgroup2_here() -> None:
    m = CgroupManager.detect(_root_name())
    try:
        assert m.mechanism == "cgroup2"
        assert m.path is not None and os.path.isdir(m.path)
        assert m.subreaper and cgroups.is_subreaper()
        own = Path("/proc/self/cgroup").read_text()
        if "memory:/" in own and "memory" in m.v1:
            mem_own = next(ln.split(":", 2)[2] for ln in own.splitlines()
                           if ":memory:" in ln)
            # under the supervisor's own memory cgroup, not the root
            assert m.v1["memory"].startswith(f"/sys/fs/cgroup/memory{mem_own}".rstrip("/"))
    finally:
        m.remove_root()


def test_cg_escape() -> None:
    assert cg_escape("foo.service") == "foo.service"
    assert cg_escape("apache@8080.service") == "apache@8080.service"
    assert cg_escape("_x.service") == "__x.service"
    assert cg_escape(".hidden") == "_.hidden"
    assert cg_escape("tasks") == "_tasks"
    assert cg_escape("cgroup.procs") == "_cgroup.procs"
    assert cg_escape("memory.max") == "_memory.max"
    assert cg_escape("cpu.service") == "_cpu.service"
    with pytest.raises(ValueError):
        cg_escape("a/b")


def test_prefer_cgroup2_without_v2_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cgroups, "V2_MOUNTPOINTS", ("/nonexistent",))
    with pytest.raises(RuntimeError):
        CgroupManager.detect(_root_name(), prefer="cgroup2")


# -- membership and killing ---------------------------------------------------


async def test_double_forked_daemon_is_found_and_killed(manager: CgroupManager,
                                                        tmp_path: Path) -> None:
    cg = manager.unit("daemon.service")
    pidfile = tmp_path / "pid"
    # the classic daemon: fork, setsid, fork again, parent exits
    c = await spawn(sh(f"setsid sh -c 'sleep 1000 & echo $! > {pidfile}' & wait", cg))
    assert await c.wait() == ExitInfo("exited", 0)
    await until(lambda: pidfile.exists() and pidfile.read_text().strip())
    daemon = int(pidfile.read_text())
    assert os.getsid(daemon) != os.getsid(0)
    assert cg.pids() == [daemon]
    assert cg.contains(daemon)
    assert cg.populated()
    assert cg.signal_all(signal.SIGKILL) == 1
    assert await cg.wait_empty(5)
    await until(lambda: gone(daemon))
    assert cg.pids() == []
    assert not cg.populated()
    assert cg.remove()


async def test_join_is_race_free(manager: CgroupManager) -> None:
    """Units that fork at once: every process lands in its own unit."""
    units = [manager.unit(f"race{i}.service") for i in range(30)]
    children = [await spawn(sh("sleep 1000 & (setsid sleep 1000 &) ; exec sleep 1000", cg))
                for cg in units]
    await until(lambda: all(len(cg.pids()) == 3 for cg in units))
    seen: set[int] = set()
    for cg, child in zip(units, children, strict=True):
        pids = set(cg.pids())
        assert child.pid in pids
        assert not pids & seen
        seen |= pids
    for cg in units:
        cg.signal_all(signal.SIGKILL)
    assert all(await asyncio.gather(*(cg.wait_empty(5) for cg in units)))
    exits = await asyncio.gather(*(c.wait() for c in children))
    assert all(e == ExitInfo("killed", signal.SIGKILL) for e in exits)


async def test_signal_all_other_signals(manager: CgroupManager) -> None:
    cg = manager.unit("term.service")
    c = await spawn(sh("sleep 1000 & sleep 1000 & wait", cg))
    await until(lambda: len(cg.pids()) == 3)
    assert cg.signal_all(signal.SIGTERM) == 3
    assert await cg.wait_empty(5)
    assert (await c.wait()).code == "killed"


async def test_wait_empty_wakes_after_last_process(manager: CgroupManager) -> None:
    cg = manager.unit("linger.service")
    c = await spawn(sh("(sleep 0.6 &) ; exit 0", cg))
    assert await c.wait() == ExitInfo("exited", 0)
    assert cg.populated()
    t0 = time.monotonic()
    assert not await cg.wait_empty(0.1)
    assert await cg.wait_empty(5)
    waited = time.monotonic() - t0
    assert 0.3 < waited < 1.8, waited
    assert await cg.wait_empty(0)  # already empty


async def test_wait_empty_of_a_fresh_unit_is_immediate(manager: CgroupManager) -> None:
    cg = manager.unit("never.service")
    assert await asyncio.wait_for(cg.wait_empty(None), 2)


async def test_subreaper_finds_processes_by_marker() -> None:
    m = CgroupManager.detect(_root_name(), prefer="subreaper")
    try:
        assert m.mechanism == "subreaper" and cgroups.is_subreaper()
        cg = m.unit("marked.service", invocation_id="abc123")
        assert cg.extra_env() == {MARKER_ENV: "abc123"}
        c = await spawn(sh("setsid sh -c 'sleep 1000 &' & wait", cg))
        await c.wait()
        await until(lambda: len(cg.pids()) == 1)
        (daemon,) = cg.pids()
        environ = Path(f"/proc/{daemon}/environ").read_bytes().split(b"\0")
        assert f"{MARKER_ENV}=abc123".encode() in environ
        # a process of another unit is not ours
        other = m.unit("other.service")
        c2: Child = await spawn(sh("exec sleep 1000", other))
        await until(lambda: other.pids() == [c2.pid])
        assert c2.pid not in cg.pids()
        assert m.snapshot_members() == {daemon: "marked.service", c2.pid: "other.service"}
    finally:
        await _teardown(m)


async def test_leftovers_of_earlier_runs_are_found_again(manager: CgroupManager) -> None:
    """The same unit object across restarts still sees old processes (KillMode=process)."""
    cg = manager.unit("restart.service")
    c = await spawn(sh("(setsid sleep 1000 &) ; exit 0", cg))
    await c.wait()
    assert manager.unit("restart.service") is cg
    c = await spawn(sh("exec sleep 1000", cg))
    await until(lambda: len(cg.pids()) == 2)


# -- limits and cleanup ---------------------------------------------------------


async def test_tasks_and_memory_limits(manager: CgroupManager, tmp_path: Path) -> None:
    if "pids" not in manager.v1 and "pids" not in manager._v2_controllers:
        pytest.skip("no pids controller")
    cg = manager.unit("limited.service")
    failed = cg.set_limits(memory_max=64 * 1024 * 1024, tasks_max=4, cpu_quota_percent=50)
    assert "pids" not in failed
    # the shell itself is one task; forking the 4th sleep fails and dash gives up
    c = await spawn(sh("for i in 1 2 3 4 5 6 7 8; do sleep 1000 & done; exec sleep 1000",
                       cg, stderr="null"))
    assert (await c.wait()).status != 0
    assert len(cg.pids()) == 3
    assert cg.tasks_current() == 3
    if "memory" not in failed:
        mem = cg.memory_current()
        assert mem is not None and mem > 0
        assert any("memory" in p for p in cg.join_paths())
    cg.signal_all(signal.SIGKILL)
    assert await cg.wait_empty(5)
    assert cg.remove()
    for p in cg.join_paths()[1 if manager.mechanism == "cgroup2" else 0:]:
        assert not os.path.exists(os.path.dirname(p))


async def test_cleanup_removes_empty_and_reports_busy() -> None:
    root = _root_name()
    a = CgroupManager.detect(root)
    b: CgroupManager | None = None
    try:
        if a.mechanism != "cgroup2":
            pytest.skip("cleanup concerns cgroup directories")
        a.unit("empty.service").ensure()  # created before a spawn, or here by hand
        busy = a.unit("busy.service")
        c = await spawn(sh("exec sleep 1000", busy))
        await until(lambda: busy.pids() == [c.pid])
        assert a.path is not None
        assert {"busy.service", "empty.service"} <= set(os.listdir(a.path))
        # a new supervisor starting up
        b = CgroupManager.detect(root)
        assert b.cleanup() == ["busy.service"]
        assert not os.path.exists(os.path.join(a.path, "empty.service"))
        assert not busy.remove()  # busy: tolerated, nothing removed
        assert os.path.isdir(busy.path)
    finally:
        await _teardown(a)
        if b is not None:
            b.cleanup()
            b.remove_root()


async def test_orphan_zombies_do_not_pile_up(manager: CgroupManager,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Orphans re-parented to us (subreaper) are reaped by the periodic sweeper.

    Double-forked daemons (in a session that is neither ours nor their own)
    and, in cgroup2 mode, anything in a unit cgroup are reaped at once; a
    single-fork ``setsid`` orphan nobody saw alive in subreaper mode looks
    like another component's child and waits for ORPHAN_GRACE.
    """
    monkeypatch.setattr(launcher, "ORPHAN_GRACE", 0.5)
    cg = manager.unit("zombies.service")
    c = await spawn(sh("for i in 1 2 3; do setsid sleep 0.1 & done; "
                       "for i in 1 2 3; do (setsid sh -c 'sleep 0.1 &' &); done; exit 0", cg))
    await c.wait()
    me = os.getpid()

    def my_zombies() -> list[int]:
        out = []
        for name in os.listdir("/proc"):
            if name.isdigit():
                st = read_stat(int(name))
                if st is not None and st.ppid == me and st.state == "Z":
                    out.append(st.pid)
        return out

    await asyncio.sleep(0.3)
    await until(lambda: not my_zombies(), 5)  # the periodic sweeper reaps them
