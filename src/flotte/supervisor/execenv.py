"""The execution context of one command: its environment and its :class:`ExecSpec`.

:func:`build_environment` assembles the environment in systemd's order
(systemd.md §5; later wins):

1. variables the manager sets: ``PATH`` (fixed, not the supervisor's),
   ``LANG``, ``USER``/``LOGNAME``/``HOME``/``SHELL`` when ``User=`` is set,
   ``INVOCATION_ID``, ``MAINPID`` when known, then ``extra`` (whatever else
   the caller sets as the manager: ``NOTIFY_SOCKET``, ``SERVICE_RESULT``,
   ``EXIT_CODE``, ``EXIT_STATUS`` …);
2. ``PassEnvironment=``: those names from the supervisor's own environment
   (system services inherit nothing else);
3. ``Environment=``;
4. ``EnvironmentFile=`` files, read *now* (call this right before every
   spawn, so an ``ExecStartPre=`` can create them), in order, globs expanded
   and sorted; a missing file without ``-`` raises
   :class:`EnvironmentFileError` (systemd fails the start with result
   ``resources``); invalid names (``export X``) are dropped;
5. ``UnsetEnvironment=`` removals (``NAME`` or an exact ``NAME=VALUE``).

:func:`exec_spec_for` then turns one :class:`ExecCommand` into an
:class:`~flotte.supervisor.launcher.ExecSpec`: run-time ``$VAR`` expansion
(not for the ``:`` prefix), the privilege prefixes and every ``[Service]``
execution setting.
"""

from __future__ import annotations

import glob
import os
import pwd
import resource
from collections.abc import Mapping
from typing import Any, Final

from flotte.supervisor.cgroups import UnitCgroup
from flotte.supervisor.launcher import ExecSpec
from flotte.unit.envfile import apply_env_file, parse_env_file
from flotte.unit.errors import ValueParseError
from flotte.unit.execline import (
    AMBIENT_MAGIC,
    FULLY_PRIVILEGED,
    NO_ENV_EXPAND,
    NO_SETUID,
    ExecCommand,
    expand_argv,
)
from flotte.unit.loader import Unit
from flotte.unit.values import RLIMIT_KEYS, parse_bytes

__all__ = [
    "MANAGER_PATH",
    "EnvironmentFileError",
    "build_environment",
    "cgroup_limits",
    "exec_spec_for",
]

#: ``$PATH`` systemd gives system services (no ``/sbin:/bin`` on merged-/usr systems).
MANAGER_PATH: Final = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin"


class EnvironmentFileError(Exception):
    """An ``EnvironmentFile=`` without ``-`` could not be read or parsed."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


def _user_vars(user: str) -> dict[str, str]:
    try:
        pw = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
    except (KeyError, OverflowError, ValueError):
        return {}  # the spawn fails with 217/USER anyway
    return {
        "USER": pw.pw_name,
        "LOGNAME": pw.pw_name,
        "HOME": pw.pw_dir or "/",
        "SHELL": pw.pw_shell or "/bin/sh",
    }


def _has_glob(p: str) -> bool:
    return any(c in p for c in "*?[")


def _load_env_files(env: dict[str, str], files: list[tuple[str, bool]]) -> list[str]:
    dropped: list[str] = []
    for pattern, ignore in files:
        paths = sorted(glob.glob(pattern)) if _has_glob(pattern) else [pattern]
        if not paths:
            if ignore:
                continue
            raise EnvironmentFileError(pattern, "No such file or directory")
        for path in paths:
            try:
                with open(path, "rb") as f:
                    data = f.read()
            except OSError as exc:
                if ignore:
                    continue
                raise EnvironmentFileError(path, exc.strerror or str(exc)) from None
            try:
                pairs = parse_env_file(data, path=path)
            except ValueParseError as exc:
                if ignore:
                    continue
                raise EnvironmentFileError(path, exc.message) from None
            dropped += apply_env_file(env, pairs)
    return dropped


def build_environment(unit: Unit, *, invocation_id: str, main_pid: int | None = None,
                      extra: Mapping[str, str] | None = None,
                      supervisor_env: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The final environment of a command of ``unit`` (see the module docstring).

    Reads ``EnvironmentFile=`` from disk: call it just before each spawn.
    Raises :class:`EnvironmentFileError`.
    """
    env: dict[str, str] = {
        "PATH": MANAGER_PATH,
        "LANG": supervisor_env.get("LANG") or "C.UTF-8",
    }
    user = unit.value("Service", "User")
    if user:
        env.update(_user_vars(str(user)))
    env["INVOCATION_ID"] = invocation_id
    if main_pid is not None:
        env["MAINPID"] = str(main_pid)
    if extra:
        env.update(extra)
    for name in unit.value("Service", "PassEnvironment"):
        value = supervisor_env.get(name)
        if value is not None:
            env[name] = value
    for name, value in unit.value("Service", "Environment"):
        env[name] = value
    _load_env_files(env, unit.value("Service", "EnvironmentFile"))
    for item in unit.value("Service", "UnsetEnvironment"):
        name, eq, value = item.partition("=")
        if not eq:
            env.pop(name, None)
        elif env.get(name) == value:
            del env[name]
    return env


#: systemd's ``DefaultLimitNOFILE=1024:524288`` (since v240): services get a
#: soft limit of 1024 (``select()`` breaks above it) whatever the manager has.
DEFAULT_LIMIT_NOFILE: Final = (1024, 524288)


def _default_nofile() -> tuple[int, int]:
    """systemd's default, capped by what this process may set (no raising of hard limits)."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want_soft, want_hard = DEFAULT_LIMIT_NOFILE
    if hard != resource.RLIM_INFINITY:
        want_hard = min(want_hard, hard)
        want_soft = min(want_soft, want_hard)
    return want_soft, want_hard


def exec_spec_for(unit: Unit, command: ExecCommand, env: dict[str, str], *,
                  cgroup: UnitCgroup | None, journal_fd: int | None,
                  default_nofile: bool = True) -> ExecSpec:
    """The :class:`ExecSpec` for one command of ``unit`` with environment ``env``.

    ``$VAR``/``${VAR}`` are expanded in argv with ``env`` unless the command
    has ``:``; references to unset variables become warnings on the spec, as
    systemd logs them.  ``+`` sets ``privileged`` (no User/Group/RootDirectory);
    ``!`` and ``!!`` set ``no_setuid`` — flotte does not implement
    ``AmbientCapabilities=``, so it behaves like a system without ambient
    capabilities, where ``!!`` means ``!``.  Without ``LimitNOFILE=`` the
    command gets systemd's default 1024 soft / 524288 hard (hard capped at
    the supervisor's own, which cannot be raised), not the supervisor's
    limits; ``default_nofile=False`` turns that off.
    """
    warnings: list[str] = []
    if NO_ENV_EXPAND in command.flags:
        argv = list(command.argv)
    else:
        exp = expand_argv(list(command.argv), env)
        argv = exp.argv
        for name in sorted(exp.unset):
            warnings.append("Referenced but unset environment variable evaluates to an "
                            f"empty string: {name}")
        for name in sorted(exp.bad):
            warnings.append(f"Ignoring invalid environment variable reference: {name}")
    v = unit.value
    wd_setting: Any = v("Service", "WorkingDirectory")
    wd: str | None = None
    wd_missing_ok = False
    if isinstance(wd_setting, tuple):
        wd, wd_missing_ok = str(wd_setting[0]), bool(wd_setting[1])
    elif isinstance(wd_setting, str):
        wd = wd_setting
    limits: dict[str, tuple[int, int]] = {}
    for key in RLIMIT_KEYS:
        lim = v("Service", key)
        if lim is not None:
            limits[key] = (int(lim[0]), int(lim[1]))
    if default_nofile and "LimitNOFILE" not in limits:
        limits["LimitNOFILE"] = _default_nofile()
    user = v("Service", "User") or None
    group = v("Service", "Group") or None
    return ExecSpec(
        path=command.path,
        argv=argv,
        env=env,
        user=user,
        group=group,
        supplementary_groups=list(v("Service", "SupplementaryGroups")),
        working_directory=wd,
        working_directory_missing_ok=wd_missing_ok,
        root_directory=v("Service", "RootDirectory") or None,
        umask=int(v("Service", "UMask")),
        nice=v("Service", "Nice"),
        limits=limits,
        stdin=str(v("Service", "StandardInput")),
        stdout=str(v("Service", "StandardOutput")),
        stderr=str(v("Service", "StandardError")),
        journal_fd=journal_fd,
        cgroup=cgroup,
        privileged=FULLY_PRIVILEGED in command.flags,
        no_setuid=bool(command.flags & {NO_SETUID, AMBIENT_MAGIC}),
        warnings=warnings,
    )


def _physical_memory() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _pid_max() -> int:
    try:
        with open("/proc/sys/kernel/pid_max", encoding="ascii") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 4_194_304


def _percent(s: str) -> float | None:
    if s.endswith("%"):
        try:
            return float(s[:-1])
        except ValueError:
            return None
    return None


def cgroup_limits(unit: Unit) -> tuple[int | None, int | None, float | None, list[str]]:
    """``(memory_max, tasks_max, cpu_quota_percent, warnings)`` for :meth:`UnitCgroup.set_limits`.

    flotte's unit loader keeps ``MemoryMax=``/``MemoryLimit=``/``TasksMax=``/
    ``CPUQuota=`` as raw text; this parses them as systemd does (bytes with
    K/M/G… suffixes or a percentage of physical memory; a count or a
    percentage of the kernel's PID limit; ``N%`` of one CPU) — ``infinity``
    and unparsable values give None (the latter with a warning).
    """
    warnings: list[str] = []
    raw = unit.settings

    def get(key: str) -> str | None:
        val = raw.get(("Service", key))
        return val.strip() if isinstance(val, str) and val.strip() else None

    memory: int | None = None
    mem_raw = get("MemoryMax") or get("MemoryLimit")
    if mem_raw is not None and mem_raw != "infinity":
        pct = _percent(mem_raw)
        try:
            memory = int(_physical_memory() * pct / 100) if pct is not None \
                else parse_bytes(mem_raw)
        except ValueParseError:
            warnings.append(f"Invalid memory limit '{mem_raw}', ignoring")
    tasks: int | None = None
    tasks_raw = get("TasksMax")
    if tasks_raw is not None and tasks_raw != "infinity":
        pct = _percent(tasks_raw)
        if pct is not None:
            tasks = max(1, int(_pid_max() * pct / 100))
        elif tasks_raw.isdigit() and int(tasks_raw) > 0:
            tasks = int(tasks_raw)
        else:
            warnings.append(f"Invalid maximum tasks value '{tasks_raw}', ignoring")
    cpu: float | None = None
    cpu_raw = get("CPUQuota")
    if cpu_raw is not None:
        pct = _percent(cpu_raw)
        if pct is not None and pct > 0:
            cpu = pct
        else:
            warnings.append(f"Invalid CPU quota '{cpu_raw}', ignoring")
    return memory, tasks, cpu, warnings
