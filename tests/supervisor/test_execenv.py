"""The environment and ExecSpec of a unit's commands, and their effect on real processes."""

from __future__ import annotations

import os
import pwd
import resource
import signal
from pathlib import Path

import pytest

from flotte.supervisor.execenv import (
    MANAGER_PATH,
    EnvironmentFileError,
    build_environment,
    cgroup_limits,
    exec_spec_for,
)
from flotte.supervisor.launcher import ExitInfo, spawn
from flotte.unit.loader import Unit, load_text

pytestmark = pytest.mark.timeout(60)


def unit(text: str, name: str = "test.service") -> Unit:
    u = load_text("[Service]\n" + text, name)
    assert u.ok, u.diagnostics
    return u


SUP_ENV = {"LANG": "de_DE.UTF-8", "SECRET": "s3", "KEEP": "k", "PATH": "/supervisor/bin"}


def test_manager_variables_only() -> None:
    env = build_environment(unit("ExecStart=/bin/true\n"), invocation_id="ab" * 16,
                            supervisor_env=SUP_ENV)
    assert env == {"PATH": MANAGER_PATH, "LANG": "de_DE.UTF-8",
                   "INVOCATION_ID": "ab" * 16}
    env = build_environment(unit("ExecStart=/bin/true\n"), invocation_id="x", main_pid=42,
                            supervisor_env={})
    assert env["LANG"] == "C.UTF-8"
    assert env["MAINPID"] == "42"
    assert list(env)[:2] == ["PATH", "LANG"]


def test_user_variables_from_passwd() -> None:
    nobody = pwd.getpwnam("nobody")
    env = build_environment(unit("ExecStart=/bin/true\nUser=nobody\n"), invocation_id="x",
                            supervisor_env={})
    assert env["USER"] == env["LOGNAME"] == "nobody"
    assert env["HOME"] == nobody.pw_dir
    assert env["SHELL"] == nobody.pw_shell
    env = build_environment(unit(f"ExecStart=/bin/true\nUser={nobody.pw_uid}\n"),
                            invocation_id="x", supervisor_env={})
    assert env["USER"] == "nobody"
    env = build_environment(unit("ExecStart=/bin/true\n"), invocation_id="x",
                            supervisor_env={"USER": "root", "HOME": "/root"})
    assert "USER" not in env and "HOME" not in env  # not inherited


def test_order_later_wins(tmp_path: Path) -> None:
    f1 = tmp_path / "one.env"
    f1.write_text("FILE=one\nBOTH=file\nexport BAD=1\n1X=2\n")
    u = unit(f"ExecStart=/bin/true\n"
             f"PassEnvironment=SECRET KEEP MISSING LANG\n"
             f'Environment=KEEP=from-unit "BOTH=unit" INVOCATION_ID=mine\n'
             f"EnvironmentFile={f1}\n"
             f"UnsetEnvironment=SECRET FILE=other PATH\n")
    env = build_environment(u, invocation_id="inv", extra={"NOTIFY_SOCKET": "/run/n",
                                                           "KEEP": "extra"},
                            supervisor_env=SUP_ENV)
    assert env == {
        "LANG": "de_DE.UTF-8",           # PassEnvironment (same value here)
        "INVOCATION_ID": "mine",         # Environment= overrides manager variables
        "NOTIFY_SOCKET": "/run/n",
        "KEEP": "from-unit",             # Environment= beats PassEnvironment= and extra
        "BOTH": "file",                  # EnvironmentFile= beats Environment=
        "FILE": "one",                   # UnsetEnvironment=FILE=other does not match
    }                                    # SECRET, PATH unset; "export BAD", "1X" dropped


def test_environment_file_read_at_spawn_time_and_globs(tmp_path: Path) -> None:
    u = unit(f"ExecStart=/bin/true\nEnvironmentFile={tmp_path}/late.env\n"
             f"EnvironmentFile=-{tmp_path}/conf.d/*.env\n")
    with pytest.raises(EnvironmentFileError) as ei:
        build_environment(u, invocation_id="x", supervisor_env={})
    assert ei.value.path == f"{tmp_path}/late.env"
    # an ExecStartPre= creates it: the next spawn sees it
    (tmp_path / "late.env").write_text("V=1\n")
    assert build_environment(u, invocation_id="x", supervisor_env={})["V"] == "1"
    (tmp_path / "late.env").write_text("V=2\n")
    assert build_environment(u, invocation_id="x", supervisor_env={})["V"] == "2"
    d = tmp_path / "conf.d"
    d.mkdir()
    (d / "b.env").write_text("G=b\n")
    (d / "a.env").write_text("G=a\nA=1\n")
    env = build_environment(u, invocation_id="x", supervisor_env={})
    assert (env["G"], env["A"]) == ("b", "1")  # sorted: a then b


def test_environment_file_missing_with_dash_and_bad_file(tmp_path: Path) -> None:
    u = unit(f"ExecStart=/bin/true\nEnvironmentFile=-{tmp_path}/nope\n")
    assert "V" not in build_environment(u, invocation_id="x", supervisor_env={})
    bad = tmp_path / "bad.env"
    bad.write_bytes(b"A=\0\n")
    u = unit(f"ExecStart=/bin/true\nEnvironmentFile={bad}\n")
    with pytest.raises(EnvironmentFileError):
        build_environment(u, invocation_id="x", supervisor_env={})
    u = unit(f"ExecStart=/bin/true\nEnvironmentFile={tmp_path}/no*.env\n")
    with pytest.raises(EnvironmentFileError):
        build_environment(u, invocation_id="x", supervisor_env={})


def test_exec_spec_expansion_and_prefixes() -> None:
    u = unit('ExecStart=/bin/echo $WORDS ${ONE} x${ONE}y $UNSET "${UNSET2}" $$\n'
             'ExecStartPre=:/bin/echo $WORDS\n'
             "ExecStartPost=+/bin/true\nExecStop=!/bin/true\nExecReload=!!/bin/true\n"
             "User=nobody\n")
    env = {"WORDS": "a 'b c'", "ONE": "1 2"}
    (start,) = u.exec_commands("ExecStart")
    spec = exec_spec_for(u, start, env, cgroup=None, journal_fd=None)
    assert spec.argv == ["/bin/echo", "a", "b c", "1 2", "x1 2y", "", "$"]
    assert spec.path == "/bin/echo"
    assert any("UNSET" in w for w in spec.warnings)
    assert spec.user == "nobody" and not spec.privileged and not spec.no_setuid
    (pre,) = u.exec_commands("ExecStartPre")
    assert exec_spec_for(u, pre, env, cgroup=None, journal_fd=None).argv == [
        "/bin/echo", "$WORDS"]
    (post,) = u.exec_commands("ExecStartPost")
    assert exec_spec_for(u, post, env, cgroup=None, journal_fd=None).privileged
    for key in ("ExecStop", "ExecReload"):
        (cmd,) = u.exec_commands(key)
        s = exec_spec_for(u, cmd, env, cgroup=None, journal_fd=None)
        assert s.no_setuid and not s.privileged


def test_exec_spec_settings(tmp_path: Path) -> None:
    u = unit("ExecStart=/bin/true\nWorkingDirectory=-/srv/x\nRootDirectory=/srv/root\n"
             "Group=users\nSupplementaryGroups=tty adm\nUMask=0077\nNice=5\n"
             "LimitNOFILE=100:200\nLimitCORE=infinity\nStandardInput=tty\n"
             "StandardOutput=append:/tmp/o\nStandardError=null\n")
    (cmd,) = u.exec_commands("ExecStart")
    s = exec_spec_for(u, cmd, {}, cgroup=None, journal_fd=7)
    assert (s.working_directory, s.working_directory_missing_ok) == ("/srv/x", True)
    assert s.root_directory == "/srv/root"
    assert (s.user, s.group, s.supplementary_groups) == (None, "users", ["tty", "adm"])
    assert (s.umask, s.nice) == (0o077, 5)
    assert s.limits == {"LimitNOFILE": (100, 200),
                        "LimitCORE": (resource.RLIM_INFINITY, resource.RLIM_INFINITY)}
    assert (s.stdin, s.stdout, s.stderr, s.journal_fd) == ("tty", "append:/tmp/o", "null", 7)
    u = unit("ExecStart=/bin/true\nWorkingDirectory=~\n")
    s = exec_spec_for(u, u.exec_commands("ExecStart")[0], {}, cgroup=None, journal_fd=None)
    assert (s.working_directory, s.umask, s.stdout, s.stderr) == ("~", 0o022, "journal",
                                                                 "inherit")
    # systemd's DefaultLimitNOFILE=1024:524288, hard capped at ours
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    want_hard = 524288 if hard == resource.RLIM_INFINITY else min(524288, hard)
    assert s.limits == {"LimitNOFILE": (min(1024, want_hard), want_hard)}
    s = exec_spec_for(u, u.exec_commands("ExecStart")[0], {}, cgroup=None, journal_fd=None,
                      default_nofile=False)
    assert s.limits == {}


def test_cgroup_limits() -> None:
    u = unit("ExecStart=/bin/true\nMemoryMax=64M\nTasksMax=10\nCPUQuota=150%\n")
    assert cgroup_limits(u) == (64 * 1024 * 1024, 10, 150.0, [])
    u = unit("ExecStart=/bin/true\nMemoryLimit=1G\nTasksMax=infinity\nCPUQuota=lots\n")
    mem, tasks, cpu, warnings = cgroup_limits(u)
    assert (mem, tasks, cpu) == (1024**3, None, None)
    assert warnings and "CPU quota" in warnings[0]
    assert cgroup_limits(unit("ExecStart=/bin/true\n")) == (None, None, None, [])


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
async def test_end_to_end_environment_of_a_real_process(tmp_path: Path) -> None:
    envfile = tmp_path / "svc.env"
    out = tmp_path / "out"
    u = unit(f"ExecStart=/usr/bin/env ARGS=${{GREETING}}/${{NAME}}\n"
             f'Environment=GREETING=hello NAME="from unit" PASSED=unit\n'
             f"EnvironmentFile={envfile}\nPassEnvironment=PASSED\n"
             f"UnsetEnvironment=LANG\nStandardOutput=file:{out}\n"
             f"WorkingDirectory={tmp_path}\n")
    envfile.write_text("NAME=from file\n")
    env = build_environment(u, invocation_id="f" * 32, supervisor_env={"PASSED": "sup"})
    spec = exec_spec_for(u, u.exec_commands("ExecStart")[0], env, cgroup=None,
                         journal_fd=None)
    child = await spawn(spec)
    try:
        await child.wait()
    finally:
        child.signal(signal.SIGKILL)
    assert child.exit == ExitInfo("exited", 0)
    lines = out.read_text().splitlines()
    got = dict(ln.split("=", 1) for ln in lines if "=" in ln)
    assert got == {"PATH": MANAGER_PATH, "INVOCATION_ID": "f" * 32, "GREETING": "hello",
                   "NAME": "from file", "PASSED": "unit", "ARGS": "hello/from file"}
