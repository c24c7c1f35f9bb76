"""The launcher with real processes: setup failures, execution context, exits."""

from __future__ import annotations

import asyncio
import errno
import os
import pwd
import resource
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from flotte.supervisor import launcher
from flotte.supervisor.cgroups import MARKER_ENV, CgroupManager
from flotte.supervisor.launcher import (
    Child,
    ExecSpec,
    ExitInfo,
    SpawnFailure,
    resolve_executable,
    spawn,
    sweep_orphans,
    watch_pid,
)
from flotte.unit.values import RLIM_INFINITY

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (User=, cgroups)"),
    pytest.mark.timeout(60),
]


# -- helpers ------------------------------------------------------------------


async def wait_comm(pid: int, comm: str, timeout: float = 5.0) -> None:
    """Until the exec chain (sh → setpriv → …) has reached the real command."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() == comm:
                return
        except OSError:
            pass
        await asyncio.sleep(0.005)
    raise AssertionError(f"pid {pid} never became {comm}")


def status_field(pid: int, name: str) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return line.split(":", 1)[1].strip()
    raise KeyError(name)


def sh(script: str, **kw: object) -> ExecSpec:
    spec = ExecSpec("/bin/sh", ["/bin/sh", "-c", script])
    for k, v in kw.items():
        setattr(spec, k, v)
    return spec


class Procs:
    """Children started by a test, killed at teardown."""

    def __init__(self) -> None:
        self.children: list[Child] = []

    async def spawn(self, spec: ExecSpec) -> Child:
        child = await spawn(spec)
        self.children.append(child)
        return child


@pytest.fixture
async def procs() -> AsyncIterator[Procs]:
    p = Procs()
    yield p
    for c in p.children:
        c.signal(signal.SIGKILL)
    await asyncio.gather(*(c.wait() for c in p.children))


@pytest.fixture
async def manager() -> AsyncIterator[CgroupManager]:
    m = CgroupManager.detect(f"flotte-test-{uuid.uuid4().hex[:10]}")
    yield m
    for name in list(m._units):
        cg = m.unit(name)
        cg.signal_all(signal.SIGKILL)
        await cg.wait_empty(5)
        cg.remove()
    m.cleanup()
    m.remove_root()


# -- setup failures -----------------------------------------------------------


async def test_missing_binary_is_203_exec() -> None:
    with pytest.raises(SpawnFailure) as ei:
        await spawn(ExecSpec("/usr/bin/flotte-nope", ["/usr/bin/flotte-nope"]))
    e = ei.value
    assert (e.exit_code, e.status_name) == (203, "EXEC")
    assert e.message == "Failed to execute /usr/bin/flotte-nope: No such file or directory"
    assert e.step_message("/usr/bin/flotte-nope") == (
        "Failed at step EXEC spawning /usr/bin/flotte-nope: No such file or directory")
    assert e.exit_info() == ExitInfo("exited", 203)
    assert e.errno == errno.ENOENT


async def test_bare_name_not_found_and_not_executable(tmp_path: Path) -> None:
    with pytest.raises(SpawnFailure) as ei:
        await spawn(ExecSpec("flotte-nope", ["flotte-nope"]))
    assert ei.value.exit_code == 203
    assert ei.value.message == ("Unable to locate executable 'flotte-nope': "
                                "No such file or directory")
    script = tmp_path / "noexec"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o644)
    with pytest.raises(SpawnFailure) as ei:
        await spawn(ExecSpec(str(script), [str(script)]))
    assert ei.value.exit_code == 203
    assert ei.value.message.endswith(": Permission denied")
    with pytest.raises(SpawnFailure) as ei:
        await spawn(ExecSpec(str(tmp_path), [str(tmp_path)]))
    assert ei.value.exit_code == 203


def test_search_path_is_systemds_not_path(monkeypatch: pytest.MonkeyPatch,
                                          tmp_path: Path) -> None:
    fake = tmp_path / "true"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert resolve_executable("true") in ("/usr/bin/true", "/bin/true")
    assert resolve_executable("/x/y") == "/x/y"


async def test_unknown_user_is_217_user() -> None:
    with pytest.raises(SpawnFailure) as ei:
        await spawn(ExecSpec("/bin/true", ["/bin/true"], user="flotte-no-such-user"))
    e = ei.value
    assert (e.exit_code, e.status_name) == (217, "USER")
    assert e.message == "Failed to determine user credentials: No such process"
    # systemd looks the user up even for '+' commands
    with pytest.raises(SpawnFailure):
        await spawn(ExecSpec("/bin/true", ["/bin/true"], user="flotte-no-such-user",
                             privileged=True))


async def test_unknown_group_is_216_group() -> None:
    with pytest.raises(SpawnFailure) as ei:
        await spawn(ExecSpec("/bin/true", ["/bin/true"], group="flotte-no-such-group"))
    assert (ei.value.exit_code, ei.value.status_name) == (216, "GROUP")
    assert ei.value.message == "Failed to determine group credentials: No such process"


async def test_bad_working_directory_is_200_chdir(tmp_path: Path, procs: Procs) -> None:
    missing = str(tmp_path / "missing")
    with pytest.raises(SpawnFailure) as ei:
        await spawn(ExecSpec("/bin/true", ["/bin/true"], working_directory=missing))
    assert (ei.value.exit_code, ei.value.status_name) == (200, "CHDIR")
    assert ei.value.message == ("Changing to the requested working directory failed: "
                                "No such file or directory")
    # '-' prefix: not fatal, the command runs in /
    out = tmp_path / "out"
    c = await procs.spawn(sh("pwd", working_directory=missing,
                             working_directory_missing_ok=True, stdout=f"file:{out}"))
    assert await c.wait() == ExitInfo("exited", 0)
    assert out.read_text() == "/\n"


async def test_working_directory_default_tilde_and_path(tmp_path: Path, procs: Procs) -> None:
    out = tmp_path / "out"
    for wd, want in ((None, "/"), ("~", pwd.getpwuid(0).pw_dir), (str(tmp_path), str(tmp_path))):
        c = await procs.spawn(sh("pwd", working_directory=wd, stdout=f"truncate:{out}"))
        assert await c.wait() == ExitInfo("exited", 0)
        assert out.read_text() == want + "\n"


async def test_stdio_failures(tmp_path: Path) -> None:
    with pytest.raises(SpawnFailure) as ei:
        await spawn(ExecSpec("/bin/true", ["/bin/true"], stdin=f"file:{tmp_path}/none"))
    assert (ei.value.exit_code, ei.value.status_name) == (208, "STDIN")
    with pytest.raises(SpawnFailure) as ei:
        await spawn(ExecSpec("/bin/true", ["/bin/true"], stdout=f"file:{tmp_path}/no/x"))
    assert (ei.value.exit_code, ei.value.status_name) == (209, "STDOUT")
    assert ei.value.message.startswith("Failed to set up standard output: ")
    with pytest.raises(SpawnFailure) as ei:
        await spawn(ExecSpec("/bin/true", ["/bin/true"], stdout="null",
                             stderr=f"file:{tmp_path}/no/x"))
    assert (ei.value.exit_code, ei.value.status_name) == (222, "STDERR")


async def test_nice_out_of_range_is_201() -> None:
    with pytest.raises(SpawnFailure) as ei:
        await spawn(ExecSpec("/bin/true", ["/bin/true"], nice=40))
    assert (ei.value.exit_code, ei.value.status_name) == (201, "NICE")


async def test_missing_root_directory_is_210(tmp_path: Path) -> None:
    with pytest.raises(SpawnFailure) as ei:
        await spawn(ExecSpec("/bin/true", ["/bin/true"], root_directory=str(tmp_path / "r")))
    assert (ei.value.exit_code, ei.value.status_name) == (210, "CHROOT")


# -- execution context --------------------------------------------------------


async def test_user_nobody_really_drops_privileges(procs: Procs) -> None:
    nobody = pwd.getpwnam("nobody")
    c = await procs.spawn(ExecSpec("/bin/sleep", ["/bin/sleep", "30"], user="nobody",
                                   stdout="null"))
    await wait_comm(c.pid, "sleep")
    assert status_field(c.pid, "Uid").split() == [str(nobody.pw_uid)] * 4
    assert status_field(c.pid, "Gid").split() == [str(nobody.pw_gid)] * 4
    groups = status_field(c.pid, "Groups").split()
    assert "0" not in groups
    assert status_field(c.pid, "CapEff") == "0000000000000000"


async def test_supplementary_groups_and_group(procs: Procs) -> None:
    c = await procs.spawn(ExecSpec("/bin/sleep", ["/bin/sleep", "30"], user="nobody",
                                   group="users", supplementary_groups=["tty"],
                                   stdout="null"))
    await wait_comm(c.pid, "sleep")
    import grp
    users, tty = grp.getgrnam("users").gr_gid, grp.getgrnam("tty").gr_gid
    assert status_field(c.pid, "Gid").split()[0] == str(users)
    assert set(status_field(c.pid, "Groups").split()) >= {str(tty)}


async def test_no_setuid_and_privileged_prefixes_keep_root(procs: Procs) -> None:
    for kw in ({"no_setuid": True}, {"privileged": True}):
        c = await procs.spawn(ExecSpec("/bin/sleep", ["/bin/sleep", "30"], user="nobody",
                                       stdout="null", **kw))  # type: ignore[arg-type]
        await wait_comm(c.pid, "sleep")
        assert status_field(c.pid, "Uid").split()[0] == "0"


async def test_umask_nice_and_limits_are_in_place(procs: Procs) -> None:
    c = await procs.spawn(ExecSpec(
        "/bin/sleep", ["/bin/sleep", "30"], umask=0o027, nice=7, stdout="null",
        limits={"LimitNOFILE": (123, 456), "LimitCORE": (0, RLIM_INFINITY)
                if resource.getrlimit(resource.RLIMIT_CORE)[1] == RLIM_INFINITY else (0, 0)}))
    await wait_comm(c.pid, "sleep")
    assert status_field(c.pid, "Umask") == "0027"
    stat = Path(f"/proc/{c.pid}/stat").read_text()
    assert int(stat.rsplit(")", 1)[1].split()[16]) == 7  # field 19: nice
    limits = Path(f"/proc/{c.pid}/limits").read_text()
    line = next(ln for ln in limits.splitlines() if ln.startswith("Max open files"))
    assert line.split()[3:5] == ["123", "456"]
    assert resource.prlimit(c.pid, resource.RLIMIT_NOFILE) == (123, 456)


async def test_hard_limit_above_ours_is_clamped_or_fails(procs: Procs) -> None:
    if launcher._CAP_SYS_RESOURCE:
        pytest.skip("this process may raise hard limits")
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == RLIM_INFINITY:
        pytest.skip("hard NOFILE limit is infinite")
    want = (hard + 1000, hard + 1000)
    c = await procs.spawn(ExecSpec("/bin/sleep", ["/bin/sleep", "30"], stdout="null",
                                   limits={"LimitNOFILE": want}))
    await wait_comm(c.pid, "sleep")
    assert resource.prlimit(c.pid, resource.RLIMIT_NOFILE) == (hard, hard)
    assert any("CAP_SYS_RESOURCE" in w for w in c.warnings)
    with pytest.raises(SpawnFailure) as ei:
        await spawn(ExecSpec("/bin/true", ["/bin/true"], limits={"LimitNOFILE": want},
                             clamp_limits=False))
    assert (ei.value.exit_code, ei.value.status_name) == (205, "LIMITS")
    assert ei.value.message == "Failed to adjust resource limits: Operation not permitted"


async def test_environment_is_exactly_what_was_given(tmp_path: Path, procs: Procs) -> None:
    out = tmp_path / "env"
    env = {"A": "1", "B": "two words", "EMPTY": ""}
    c = await procs.spawn(ExecSpec("/usr/bin/env", ["/usr/bin/env"], env=env,
                                   working_directory=str(tmp_path), stdout=f"file:{out}"))
    assert await c.wait() == ExitInfo("exited", 0)
    got = dict(line.split("=", 1) for line in out.read_text().splitlines())
    assert got == env  # no PWD/OLDPWD from the wrapper shell
    env2 = {"PWD": "/keep", "OLDPWD": "/old"}
    c = await procs.spawn(ExecSpec("/usr/bin/env", ["/usr/bin/env"], env=env2,
                                   working_directory=str(tmp_path), stdout=f"truncate:{out}"))
    await c.wait()
    assert dict(line.split("=", 1) for line in out.read_text().splitlines()) == env2


async def test_argv0_and_bare_names(tmp_path: Path, procs: Procs) -> None:
    out = tmp_path / "out"
    # '@' prefix: the path runs, argv[0] is what the command is told
    c = await procs.spawn(ExecSpec("/bin/sh", ["my-shell", "-c", 'echo "$0"'],
                                   stdout=f"file:{out}"))
    assert await c.wait() == ExitInfo("exited", 0)
    assert out.read_text() == "my-shell\n"
    c = await procs.spawn(ExecSpec("sh", ["sh", "-c", 'echo "$0" "$1"', "x", "y z"],
                                   stdout=f"truncate:{out}"))
    await c.wait()
    assert out.read_text() == "x y z\n"


async def test_exit_statuses(procs: Procs) -> None:
    c = await procs.spawn(sh("exit 3", stdout="null"))
    assert await c.wait() == ExitInfo("exited", 3)
    assert c.returncode == 3
    c = await procs.spawn(sh("kill -TERM $$", stdout="null"))
    assert await c.wait() == ExitInfo("killed", signal.SIGTERM)
    assert c.returncode == -signal.SIGTERM
    # ignored signals are reset: SIGPIPE kills, as in systemd
    c = await procs.spawn(sh("kill -PIPE $$", stdout="null"))
    assert await c.wait() == ExitInfo("killed", signal.SIGPIPE)


async def test_signal_uses_pidfd_and_is_false_after_exit(procs: Procs) -> None:
    c = await procs.spawn(ExecSpec("/bin/sleep", ["/bin/sleep", "30"], stdout="null"))
    await wait_comm(c.pid, "sleep")
    assert c.signal(signal.SIGKILL)
    assert await c.wait() == ExitInfo("killed", signal.SIGKILL)
    assert not c.signal(signal.SIGKILL)
    seen: list[int] = []
    c.add_exit_callback(lambda ch: seen.append(ch.pid))
    assert seen == [c.pid]


async def test_new_session(procs: Procs) -> None:
    c = await procs.spawn(ExecSpec("/bin/sleep", ["/bin/sleep", "30"], stdout="null"))
    await wait_comm(c.pid, "sleep")
    assert os.getsid(c.pid) == c.pid


# -- stdio --------------------------------------------------------------------


async def test_stdout_file_append_truncate(tmp_path: Path, procs: Procs) -> None:
    f = tmp_path / "f"
    f.write_text("0123456789\n")
    c = await procs.spawn(sh("echo ab", stdout=f"file:{f}"))
    await c.wait()
    assert f.read_text() == "ab\n3456789\n"  # written at offset 0, not truncated
    c = await procs.spawn(sh("echo cd", stdout=f"append:{f}"))
    await c.wait()
    assert f.read_text() == "ab\n3456789\ncd\n"
    c = await procs.spawn(sh("echo ef; echo err >&2", stdout=f"truncate:{f}"))
    await c.wait()
    assert f.read_text() == "ef\nerr\n"  # stderr=inherit: same as stdout


async def test_stdout_null_stderr_file_and_stdin_file(tmp_path: Path, procs: Procs) -> None:
    err = tmp_path / "err"
    inp = tmp_path / "in"
    inp.write_text("hello\n")
    c = await procs.spawn(sh("cat; cat >&2", stdin=f"file:{inp}", stdout="null",
                             stderr=f"file:{err}"))
    assert await c.wait() == ExitInfo("exited", 0)
    assert err.read_text() == ""  # cat consumed stdin, to /dev/null; second cat got EOF
    c = await procs.spawn(sh("cat >&2", stdin=f"file:{inp}", stdout="null",
                             stderr=f"truncate:{err}"))
    await c.wait()
    assert err.read_text() == "hello\n"
    c = await procs.spawn(sh("cat >&2", stdout="null", stderr=f"truncate:{err}"))
    await c.wait()
    assert err.read_text() == ""  # stdin=null


async def test_journal_fd(procs: Procs) -> None:
    r, w = os.pipe()
    try:
        c = await procs.spawn(sh("echo out; echo err >&2", stdout="journal", journal_fd=w))
        os.close(w)
        w = -1
        assert await c.wait() == ExitInfo("exited", 0)
        data = b""
        while chunk := os.read(r, 4096):
            data += chunk
        assert data == b"out\nerr\n"  # EOF came: no other copy of the write end
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)


# -- cgroups, orphans, many children ------------------------------------------


async def test_cgroup_join_and_marker(manager: CgroupManager, procs: Procs,
                                      tmp_path: Path) -> None:
    cg = manager.unit("join.service")
    out = tmp_path / "env"
    c = await procs.spawn(ExecSpec("/bin/sh", ["/bin/sh", "-c", "env; exec sleep 30"],
                                   stdout=f"file:{out}", cgroup=cg))
    await wait_comm(c.pid, "sleep")
    assert cg.pids() == [c.pid]
    has_marker = f"{MARKER_ENV}=" in out.read_text()
    assert has_marker == (manager.mechanism == "subreaper")


async def test_200_concurrent_spawns_all_exits_reported(manager: CgroupManager,
                                                        procs: Procs) -> None:
    specs = [sh(f"exit {i % 7}", stdout="null", cgroup=manager.unit(f"c{i % 20}.service"))
             for i in range(200)]
    children = await asyncio.gather(*(procs.spawn(s) for s in specs))
    exits = await asyncio.wait_for(asyncio.gather(*(c.wait() for c in children)), 30)
    assert exits == [ExitInfo("exited", i % 7) for i in range(200)]
    assert len({c.pid for c in children}) == 200


async def test_other_codes_children_are_not_stolen(manager: CgroupManager) -> None:
    # a direct child of someone else, left unreaped for a while
    p = subprocess.Popen(["/bin/sh", "-c", "exit 7"])
    deadline = time.monotonic() + 5
    while Path(f"/proc/{p.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    c = await spawn(sh("exit 0", stdout="null"))
    await c.wait()
    sweep_orphans()
    sweep_orphans()
    assert p.wait(5) == 7
    # and asyncio's own subprocesses work alongside
    proc = await asyncio.create_subprocess_exec("/bin/sh", "-c", "exit 5")
    assert await proc.wait() == 5


async def test_unit_orphans_are_reaped(manager: CgroupManager) -> None:
    assert manager.subreaper
    cg = manager.unit("orphans.service")
    c = await spawn(sh("setsid sh -c 'sleep 0.3 & echo $!' & wait", stdout="null",
                       cgroup=cg))
    await c.wait()
    daemons = cg.pids()
    assert len(daemons) == 1
    d = daemons[0]
    # re-parented to us (subreaper), not to PID 1 (its parent may still be exiting)
    deadline = time.monotonic() + 5
    while Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()[1] != str(os.getpid()):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    deadline = time.monotonic() + 5
    while Path(f"/proc/{d}").exists():
        assert time.monotonic() < deadline, "orphan zombie was not reaped"
        await asyncio.sleep(0.05)
        sweep_orphans()


async def test_watch_pid_gets_forking_daemons_status(manager: CgroupManager,
                                                     tmp_path: Path) -> None:
    cg = manager.unit("forking.service")
    pidfile = tmp_path / "pid"
    c = await spawn(sh(f"(sleep 0.3; exit 4) & echo $! > {pidfile}", stdout="null",
                       cgroup=cg))
    assert await c.wait() == ExitInfo("exited", 0)
    main = int(pidfile.read_text())
    assert cg.contains(main)
    daemon = watch_pid(main)
    assert daemon is watch_pid(main)
    assert await asyncio.wait_for(daemon.wait(), 5) == ExitInfo("exited", 4)
    assert daemon.status_known
    gone = watch_pid(main)
    assert gone.exited


async def test_root_directory(tmp_path: Path, procs: Procs) -> None:
    """A chroot built from /bin/sh and the libraries ldd lists."""
    root = tmp_path / "root"
    sh_path = os.path.realpath("/bin/sh")
    libs = subprocess.run(["ldd", sh_path], capture_output=True, text=True, check=True).stdout
    files = [sh_path] + [w for w in libs.split() if w.startswith("/")]
    for f in files:
        dest = root / f.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, dest)
    (root / "bin").mkdir(exist_ok=True)
    if not (root / "bin" / "sh").exists():
        os.symlink(sh_path, root / "bin" / "sh")
    (root / "work").mkdir()
    (root / "marker").write_text("x")
    out = tmp_path / "out"
    c = await procs.spawn(ExecSpec(
        "/bin/sh", ["/bin/sh", "-c", 'pwd; [ -e /marker ] && echo inside'],
        root_directory=str(root), working_directory="/work", stdout=f"file:{out}"))
    assert await c.wait() == ExitInfo("exited", 0)
    assert out.read_text() == "/work\ninside\n"
    # '+' ignores RootDirectory= (but WorkingDirectory= stays relative to it)
    c = await procs.spawn(ExecSpec(
        "/bin/sh", ["/bin/sh", "-c", 'pwd; [ -e /marker ] || echo outside'],
        root_directory=str(root), working_directory="/work", privileged=True,
        stdout=f"truncate:{out}"))
    await c.wait()
    assert out.read_text() == f"{root}/work\noutside\n"


async def test_unsupported_stdio_become_null_with_warning(procs: Procs) -> None:
    spec = sh("echo x", stdout="socket", stdin="socket")
    c = await procs.spawn(spec)
    assert await c.wait() == ExitInfo("exited", 0)
    assert any(w.startswith("StandardOutput=socket is not supported") for w in c.warnings)
    assert any(w.startswith("StandardInput=socket is not supported") for w in c.warnings)
    assert spec.warnings == []  # the spec can be reused


async def test_cancelled_spawn_leaves_no_process() -> None:
    """A start cancelled while the spawner thread runs: the child is killed and reaped."""
    marker = f"{time.time_ns() % 100000}.25"
    for _ in range(20):
        task = asyncio.create_task(spawn(ExecSpec("/bin/sleep", ["/bin/sleep", marker])))
        await asyncio.sleep(0)  # into the spawner thread
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        left = [p for p in os.listdir("/proc") if p.isdigit() and _cmdline(p).endswith(marker)]
        if not left:
            break
        await asyncio.sleep(0.02)
    assert not left


def _cmdline(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""
