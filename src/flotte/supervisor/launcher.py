"""Spawning one command with its execution context, and noticing when it ends.

How a command is started
------------------------
``os.posix_spawn`` (glibc: ``clone(CLONE_VM|CLONE_VFORK)``, so the parent's
size does not matter and no Python code runs in the child) starts
``/bin/sh`` (dash on Debian, ~0.5 ms) with a tiny per-spawn script and the
final environment.  The script, in this order:

1. *(only with ``Limit*=``/``Nice=``)* blocks on a pipe on fd 3 until the
   parent has applied the limits with ``prlimit(2)`` and the nice level with
   ``setpriority(2)`` to the waiting child — exact semantics for every
   ``RLIMIT_*``, no extra binary, and both are in place before anything of
   the service runs;
2. writes its own PID (``$$``, which every later ``exec`` keeps) into each
   ``cgroup.procs`` from :meth:`UnitCgroup.join_paths` — race-free: nothing
   can fork before it is in the unit's cgroup (failure: exit 219/CGROUP);
3. ``umask``; ``cd`` into the working directory (failure: exit 200/CHDIR);
   restores ``$PWD``/``$OLDPWD`` (dash exports them, systemd does not set them);
4. ``exec``s the command, through ``setpriv`` (util-linux; ``User=``,
   ``Group=``, supplementary groups, dropped last), ``nsenter --root --wd``
   (``RootDirectory=``, as a chroot) and ``perl`` (only when ``argv[0]``
   differs from the executed path — ``@`` prefix or a bare command name —
   since neither dash nor setpriv can set argv[0]).

stdin/stdout/stderr are opened in the parent and ``dup2``'d by
``posix_spawn``; the signal mask is emptied and ignored signals (Python
ignores SIGPIPE and SIGXFSZ) are reset to their defaults.  Descriptors are
not closed explicitly: everything Python opens is close-on-exec (PEP 446);
code that creates inheritable descriptors leaks them into services.

Setup failures
--------------
Everything that can be checked before forking is checked in the parent and
raised as :class:`SpawnFailure` with systemd's exit code, status name and log
message (user/group lookup, executable, working and root directory, stdio
files, nice range, limits).  That is fast, keeps the child trivial and gives
the clear message systemd logs.  The wrapper still exits 200/CHDIR or
219/CGROUP if something changes in between.  Known deviations: the working
directory is entered as root before privileges are dropped (systemd enters it
as the user, so a directory only root may enter works here), and a failing
``exec`` of the real command after the checks (a race) exits 126/127
(the helper's code), not 203.

Hard limits cannot be raised without ``CAP_SYS_RESOURCE`` (which the CI
machine lacks).  By default (``ExecSpec.clamp_limits``) a requested hard limit
above the supervisor's is lowered to the supervisor's (soft limit capped
accordingly) with a warning in :attr:`Child.warnings`; with
``clamp_limits=False`` the spawn fails with 205/LIMITS like systemd.

Noticing exits
--------------
Each child gets a ``pidfd`` watched with ``loop.add_reader`` and is reaped
with ``waitid(P_PIDFD)``: no thread per child, no ``waitpid(-1)``, so children
of other code in the process (``asyncio.create_subprocess_exec`` …) are never
stolen.  When the supervisor is a child subreaper (see
:mod:`flotte.supervisor.cgroups`) orphans of services become *our* zombies;
a sweeper (every second and after each exit) finds them with
``waitid(P_ALL, WNOWAIT)`` and reaps only those that provably are not direct
children of other code: zombies inside a unit cgroup / known unit members,
zombies in a session that is neither ours nor their own (re-parented orphans
of services), and — after :data:`ORPHAN_GRACE` seconds unreaped — anything
else nobody claimed.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import ctypes
import errno
import fcntl
import grp
import logging
import os
import pwd
import resource
import shlex
import signal
import stat
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from flotte.supervisor import cgroups
from flotte.supervisor.cgroups import UnitCgroup, read_stat
from flotte.supervisor.model import ExitInfo
from flotte.unit.values import RLIM_INFINITY, RLIMIT_KEYS, exit_status_name

__all__ = [
    "ORPHAN_GRACE",
    "SEARCH_PATH",
    "Child",
    "ExecSpec",
    "ExitInfo",
    "SpawnFailure",
    "resolve_executable",
    "spawn",
    "sweep_orphans",
    "watch_pid",
]

log = logging.getLogger("flotte.supervisor.launcher")

#: systemd's fixed search path for bare command names (not ``$PATH``).
SEARCH_PATH: Final = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin",
                      "/sbin", "/bin")

#: Seconds an unclaimed zombie child may stay before the sweeper reaps it.
ORPHAN_GRACE: float = 30.0
#: Seconds between orphan sweeps (subreaper only).
SWEEP_INTERVAL: float = 1.0
#: Seconds after the last spawn before freed heap memory is returned to the system.
TRIM_AFTER: float = 1.0


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, if this is glibc (musl and others: None)."""
    try:
        fn = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_size_t]
    fn.restype = ctypes.c_int
    return fn


_MALLOC_TRIM = _malloc_trim()

_SH: Final = "/bin/sh"
_SH_NAME: Final = "flotte-exec"
_JOURNAL_KINDS: Final = frozenset({"journal", "journal+console", "kmsg", "kmsg+console",
                                   "syslog", "syslog+console"})


def _find_tool(name: str) -> str | None:
    for d in SEARCH_PATH:
        p = os.path.join(d, name)
        if os.access(p, os.X_OK):
            return p
    return None


_SETPRIV: Final = _find_tool("setpriv")
_NSENTER: Final = _find_tool("nsenter")
_PERL: Final = _find_tool("perl")
_PERL_EXEC: Final = "my $p = shift @ARGV; exec {$p} @ARGV; exit 203"

# Signals to reset to SIG_DFL in the child: anything Python or a library may
# have set to SIG_IGN (ignored dispositions survive exec).
_SIGDEF: Final = frozenset(
    s for s in signal.Signals if s not in (signal.SIGKILL, signal.SIGSTOP)
)


def _has_cap_sys_resource() -> bool:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) & (1 << 24))
    except (OSError, ValueError):
        pass
    return False


_CAP_SYS_RESOURCE: Final = _has_cap_sys_resource()


# ---------------------------------------------------------------------------
# Public types
# ---------------------------------------------------------------------------


class SpawnFailure(Exception):
    """A setup step failed; what systemd reports as ``status=203/EXEC`` etc.

    ``exit_code`` and ``status_name`` are systemd's (``203``, ``"EXEC"``);
    ``message`` is the line systemd logs (``Failed to execute /usr/bin/nope:
    No such file or directory``); ``reason`` the bare error text used in
    ``Failed at step EXEC spawning /usr/bin/nope: No such file or directory``.
    Treat it like a process that exited with ``exit_code`` (for
    ``Type=simple`` systemd only notices it after the fork).
    """

    def __init__(self, exit_code: int, message: str, reason: str = "",
                 status_name: str | None = None, errno: int | None = None) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.status_name = status_name or exit_status_name(exit_code) or str(exit_code)
        self.message = message
        self.reason = reason
        #: The errno behind it: systemd treats a *missing* executable
        #: (203 with ENOENT) of a ``-`` command as success ("Executable …
        #: missing, skipping"), so the caller needs to tell it apart.
        self.errno = errno

    def exit_info(self) -> ExitInfo:
        """The exit this failure stands for (``code=exited, status=203/EXEC``)."""
        return ExitInfo("exited", self.exit_code)

    def step_message(self, path: str) -> str:
        """``Failed at step EXEC spawning /usr/bin/nope: No such file or directory``."""
        return f"Failed at step {self.status_name} spawning {path}: {self.reason}"


def _fail(code: int, message: str, err: int) -> SpawnFailure:
    reason = os.strerror(err)
    return SpawnFailure(code, f"{message}: {reason}", reason, errno=err)


@dataclass(slots=True)
class ExecSpec:
    """Everything needed to run one command (built by ``execenv.exec_spec_for``).

    ``stdout``/``stderr`` take ``journal`` (→ ``journal_fd``; the supervisor's
    own stdout when it is None), ``null``, ``inherit`` (stdout: the
    supervisor's stdout; stderr: same as stdout), ``tty`` (the supervisor's
    descriptor), ``file:/p``, ``append:/p``, ``truncate:/p``; ``kmsg`` and
    ``syslog`` variants count as journal; ``socket``/``fd:`` are not
    supported (null, with a warning).  ``stdin``: ``null``, ``tty*`` (treated
    as null) or ``file:/p``.  ``working_directory`` may be ``"~"``; None means
    ``/`` (systemd's default for system services).  ``limits`` maps
    ``LimitNOFILE``-style keys to (soft, hard) with
    :data:`~flotte.unit.values.RLIM_INFINITY`.  ``privileged`` (``+``)
    ignores User/Group/SupplementaryGroups and RootDirectory; ``no_setuid``
    (``!``) ignores only User/Group/SupplementaryGroups.
    """

    path: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    user: str | None = None
    group: str | None = None
    supplementary_groups: list[str] = field(default_factory=list)
    working_directory: str | None = None
    working_directory_missing_ok: bool = False
    root_directory: str | None = None
    umask: int = 0o022
    nice: int | None = None
    limits: dict[str, tuple[int, int]] = field(default_factory=dict)
    stdin: str = "null"
    stdout: str = "journal"
    stderr: str = "inherit"
    journal_fd: int | None = None
    cgroup: UnitCgroup | None = None
    privileged: bool = False
    no_setuid: bool = False
    new_session: bool = True
    clamp_limits: bool = True
    #: Non-fatal problems found while building the spec (unset variables …).
    warnings: list[str] = field(default_factory=list)


class Child:
    """A process we started (or adopted with :func:`watch_pid`).

    ``pid`` is the real command's PID (the wrapper ``exec``s it in place).
    ``exit`` / ``returncode`` are set once it has ended; ``status_known`` is
    False for an adopted process that was not our child when it ended (its
    status cannot be read; ``exit`` is then ``exited/0``).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, pid: int, pidfd: int | None, *,
                 argv: list[str], warnings: list[str]) -> None:
        self.pid = pid
        self.argv = argv
        self.warnings = warnings
        self.started = time.monotonic()
        self.exit: ExitInfo | None = None
        self.ended: float | None = None
        self.status_known = True
        self._pidfd = pidfd
        self._done: asyncio.Future[ExitInfo] = loop.create_future()
        self._callbacks: list[Callable[[Child], None]] = []

    def __repr__(self) -> str:
        state = "running" if self.exit is None else self.exit.describe()
        return f"<Child pid={self.pid} {state}>"

    @property
    def exited(self) -> bool:
        return self.exit is not None

    @property
    def returncode(self) -> int | None:
        """``subprocess`` style: exit status, or minus the signal number."""
        if self.exit is None:
            return None
        return self.exit.status if self.exit.code == "exited" else -self.exit.status

    async def wait(self) -> ExitInfo:
        """Until the process has ended (cancel-safe)."""
        return await asyncio.shield(self._done)

    def signal(self, sig: int) -> bool:
        """Send ``sig`` through the pidfd (never hits a recycled PID); False if gone."""
        fd = self._pidfd
        if fd is None:
            return False
        try:
            signal.pidfd_send_signal(fd, sig)
        except ProcessLookupError:
            return False
        return True

    def add_exit_callback(self, cb: Callable[[Child], None]) -> None:
        """Call ``cb(child)`` from the event loop when it ends (at once if it has)."""
        if self.exit is not None:
            cb(self)
        else:
            self._callbacks.append(cb)

    def _set_exit(self, info: ExitInfo) -> None:
        self.exit = info
        self.ended = time.monotonic()
        if not self._done.done():
            self._done.set_result(info)
        callbacks, self._callbacks = self._callbacks, []
        for cb in callbacks:
            try:
                cb(self)
            except Exception:  # a buggy callback must not stop the reaper
                log.exception("exit callback for pid %d failed", self.pid)


# ---------------------------------------------------------------------------
# The reaper (one per event loop)
# ---------------------------------------------------------------------------


def _exit_info(si_code: int, si_status: int) -> ExitInfo:
    if si_code == os.CLD_EXITED:
        return ExitInfo("exited", si_status)
    if si_code == os.CLD_DUMPED:
        return ExitInfo("dumped", si_status)
    return ExitInfo("killed", si_status)


class _Reaper:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.children: dict[int, Child] = {}
        self.me = os.getpid()
        self.sid = os.getsid(0)
        self._sweeper: asyncio.TimerHandle | None = None
        self._kicked = False
        self._ambiguous: dict[int, float] = {}
        self._last_scan = -1e9
        #: spawns running in the spawner thread: their children are not tracked yet
        self.inflight = 0
        self.spawn_slots = asyncio.Semaphore(SPAWNERS * 2)
        self._trim: asyncio.TimerHandle | None = None
        # exits of orphans we reaped, for watch_pid() on a PID that is gone
        self._recent: collections.OrderedDict[int, ExitInfo] = collections.OrderedDict()

    def spawned(self) -> None:
        """After a burst of starts, hand freed memory back to the system.

        A mass start allocates and frees many short-lived objects (environments,
        scripts, argument arrays in the spawner thread); glibc keeps the freed
        heap, so a daemon that started 1,000 units would stay ~1.5 MiB larger for
        good.  One ``malloc_trim(0)`` a second after the last start returns it.
        """
        if self._trim is not None:
            self._trim.cancel()
        self._trim = self.loop.call_later(TRIM_AFTER, self._do_trim)

    def _do_trim(self) -> None:
        self._trim = None
        if self.inflight == 0 and _MALLOC_TRIM is not None:
            _MALLOC_TRIM(0)

    # -- tracking --------------------------------------------------------
    def track(self, child: Child) -> None:
        fd = child._pidfd
        assert fd is not None
        self.children[child.pid] = child
        self.loop.add_reader(fd, self._ready, child)
        if self._sweeper is None and cgroups.is_subreaper():
            self._sweeper = self.loop.call_later(SWEEP_INTERVAL, self._periodic)

    def _ready(self, child: Child) -> None:
        fd = child._pidfd
        if fd is None:
            return
        try:
            res = os.waitid(os.P_PIDFD, fd, os.WEXITED | os.WNOHANG)
        except ChildProcessError:
            # not our child (adopted with watch_pid): it ended, status unknown
            info = self._recent.pop(child.pid, None)
            if info is None:
                child.status_known = False
                info = ExitInfo("exited", 0)
        else:
            if res is None:
                return
            info = _exit_info(res.si_code, res.si_status)
        self.loop.remove_reader(fd)
        os.close(fd)
        child._pidfd = None
        if self.children.get(child.pid) is child:
            del self.children[child.pid]
        child._set_exit(info)
        if self._sweeper is not None and not self._kicked:
            self._kicked = True
            self.loop.call_soon(self._kick)

    # -- orphans -----------------------------------------------------------
    def _kick(self) -> None:
        self._kicked = False
        self.sweep()

    def _periodic(self) -> None:
        self._sweeper = None
        try:
            self.sweep()
        finally:
            if not self.loop.is_closed():
                self._sweeper = self.loop.call_later(SWEEP_INTERVAL, self._periodic)

    def sweep(self) -> int:
        """Reap zombie children that are unit orphans; returns how many."""
        reaped = 0
        if self.inflight:
            return 0  # a new child may not be tracked yet; the next sweep gets them
        for _ in range(100_000):
            try:
                res = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                break
            if res is None or res.si_pid == 0:
                break
            pid = res.si_pid
            child = self.children.get(pid)
            if child is not None:
                self._ready(child)
                if pid in self.children:  # could not reap it: leave it
                    break
                continue
            if self._may_reap(pid):
                self._reap(pid)
                reaped += 1
                continue
            # an unclaimed zombie heads the list; look at all the others
            reaped += self._scan()
            break
        return reaped

    def _may_reap(self, pid: int) -> bool:
        st = read_stat(pid)
        if st is None or st.ppid != self.me:
            return False
        if cgroups.owns_orphan(pid):
            return True
        if st.sid not in (self.sid, pid):
            return True  # a re-parented orphan: no direct child lives in a foreign session
        now = time.monotonic()
        first = self._ambiguous.setdefault(pid, now)
        return now - first >= ORPHAN_GRACE

    def _reap(self, pid: int) -> None:
        self._ambiguous.pop(pid, None)
        try:
            res = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG)
        except ChildProcessError:
            return
        if res is not None:
            self._recent[pid] = _exit_info(res.si_code, res.si_status)
            while len(self._recent) > 1024:
                self._recent.popitem(last=False)

    def _scan(self) -> int:
        now = time.monotonic()
        if now - self._last_scan < 2.0:
            return 0
        self._last_scan = now
        reaped = 0
        zombies: set[int] = set()
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            pid = int(name)
            st = read_stat(pid)
            if st is None or st.ppid != self.me or st.state != "Z" or pid in self.children:
                continue
            zombies.add(pid)
            if self._may_reap(pid):
                self._reap(pid)
                reaped += 1
        for pid in list(self._ambiguous):
            if pid not in zombies:
                del self._ambiguous[pid]
        return reaped


_REAPERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Reaper] = (
    weakref.WeakKeyDictionary())


def _reaper_for(loop: asyncio.AbstractEventLoop) -> _Reaper:
    r = _REAPERS.get(loop)
    if r is None:
        r = _Reaper(loop)
        _REAPERS[loop] = r
    return r


def sweep_orphans() -> int:
    """Reap unit orphans now (normally done every second); returns how many."""
    return _reaper_for(asyncio.get_running_loop()).sweep()


def watch_pid(pid: int) -> Child:
    """Track a process we did not spawn (``Type=forking`` main PID, ``PIDFile=``).

    Thanks to the subreaper the daemon is normally our child by the time it
    ends, so its exit status is known; otherwise ``status_known`` is False.
    Must be called from the event loop.  Check membership first
    (:meth:`UnitCgroup.contains`): a stale PID file may name a recycled PID.
    """
    loop = asyncio.get_running_loop()
    reaper = _reaper_for(loop)
    existing = reaper.children.get(pid)
    if existing is not None:
        return existing
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        child = Child(loop, pid, None, argv=[], warnings=[])
        info = reaper._recent.pop(pid, None)
        if info is None:
            child.status_known = False
            info = ExitInfo("exited", 0)
        child._set_exit(info)
        return child
    child = Child(loop, pid, fd, argv=[], warnings=[])
    reaper.track(child)
    return child


# ---------------------------------------------------------------------------
# Preparing a spawn (parent side checks)
# ---------------------------------------------------------------------------

_devnull: dict[str, int] = {}
_devnull_pid = -1


def _null(mode: str) -> int:
    global _devnull_pid
    if _devnull_pid != os.getpid():
        _devnull.clear()
        _devnull_pid = os.getpid()
    fd = _devnull.get(mode)
    if fd is None:
        flags = os.O_RDONLY if mode == "r" else os.O_WRONLY
        fd = os.open(os.devnull, flags | os.O_CLOEXEC | os.O_NOCTTY)
        if fd < 3:
            fd2 = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
            os.close(fd)
            fd = fd2
        _devnull[mode] = fd
    return fd


@dataclass(slots=True)
class _Creds:
    uid: int | None
    gid: int | None
    groups: list[int]


def _lookup_user(user: str) -> pwd.struct_passwd:
    try:
        if user.isdigit():
            return pwd.getpwuid(int(user))
        return pwd.getpwnam(user)
    except (KeyError, OverflowError, ValueError):
        raise _fail(217, "Failed to determine user credentials", errno.ESRCH) from None


def _lookup_group(group: str) -> int:
    try:
        if group.isdigit():
            return grp.getgrgid(int(group)).gr_gid
        return grp.getgrnam(group).gr_gid
    except (KeyError, OverflowError, ValueError):
        raise _fail(216, "Failed to determine group credentials", errno.ESRCH) from None


def _root_home() -> str:
    try:
        return pwd.getpwuid(0).pw_dir or "/root"
    except KeyError:
        return "/root"


def _credentials(spec: ExecSpec) -> tuple[_Creds | None, str]:
    """User/group lookup as systemd does it: always (so an unknown user is
    217/USER even for ``+``), applied only without ``+``/``!``."""
    pw = _lookup_user(spec.user) if spec.user else None
    gid = _lookup_group(spec.group) if spec.group else None
    home = pw.pw_dir if pw is not None else ""  # root's: looked up only for "~"
    if spec.privileged or spec.no_setuid:
        return None, home
    if pw is None and gid is None and not spec.supplementary_groups:
        return None, home
    uid = pw.pw_uid if pw is not None else None
    if gid is None and pw is not None:
        gid = pw.pw_gid
    groups: list[int] = []
    if pw is not None and gid not in (None, 0):
        assert gid is not None
        try:
            groups = os.getgrouplist(pw.pw_name, gid)
        except OSError:
            groups = [gid]
    for g in spec.supplementary_groups:
        groups.append(_lookup_group(g))
    uniq = list(dict.fromkeys(groups))
    if uid in (None, 0) and gid in (None, 0) and not uniq:
        return None, home  # stays root; nothing to drop
    return _Creds(uid, gid, uniq), home


def _may_exec(st: os.stat_result, creds: _Creds | None) -> bool:
    if not stat.S_ISREG(st.st_mode):
        return False
    mode = st.st_mode
    if creds is None or creds.uid in (None, 0):
        return bool(mode & 0o111)
    if st.st_uid == creds.uid:
        return bool(mode & stat.S_IXUSR)
    if st.st_gid == creds.gid or st.st_gid in creds.groups:
        return bool(mode & stat.S_IXGRP)
    return bool(mode & stat.S_IXOTH)


def resolve_executable(path: str, root: str | None = None) -> str:
    """The absolute path ``path`` runs (inside ``root`` if given), systemd's way.

    A bare name is looked up in :data:`SEARCH_PATH`, never ``$PATH``.
    Raises :class:`SpawnFailure` 203/EXEC.
    """
    prefix = root.rstrip("/") if root else ""
    if "/" in path:
        return path
    for d in SEARCH_PATH:
        cand = f"{d}/{path}"
        try:
            st = os.stat(prefix + cand)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and st.st_mode & 0o111:
            return cand
    raise _fail(203, f"Unable to locate executable '{path}'", errno.ENOENT)


def _check_executable(exe: str, shown: str, root: str | None, creds: _Creds | None) -> None:
    full = (root.rstrip("/") if root else "") + exe
    try:
        st = os.stat(full)
    except OSError as exc:
        raise _fail(203, f"Failed to execute {shown}", exc.errno or errno.ENOENT) from None
    if not _may_exec(st, creds):
        raise _fail(203, f"Failed to execute {shown}", errno.EACCES)


def _open_output(value: str, spec: ExecSpec, which: str, code: int,
                 to_close: list[int]) -> int | None:
    """fd for stdout/stderr (None: keep the supervisor's own descriptor)."""
    kind, sep, path = value.partition(":")
    if sep and kind in ("file", "append", "truncate"):
        flags = os.O_WRONLY | os.O_CREAT | os.O_NOCTTY | os.O_CLOEXEC
        if kind == "append":
            flags |= os.O_APPEND
        elif kind == "truncate":
            flags |= os.O_TRUNC
        try:
            fd = os.open(path, flags, 0o666 & ~spec.umask)
        except OSError as exc:
            what = "standard output" if which == "stdout" else "standard error output"
            raise _fail(code, f"Failed to set up {what}", exc.errno or errno.EIO) from None
        to_close.append(fd)
        return fd
    if value in _JOURNAL_KINDS:
        return spec.journal_fd
    if value == "null":
        return _null("w")
    if value in ("inherit", "tty"):
        return None
    key = "StandardOutput" if which == "stdout" else "StandardError"
    spec.warnings.append(f"{key}={value} is not supported by flotte, using null")
    return _null("w")


def _high(fd: int, to_close: list[int]) -> int:
    """Make sure a source descriptor is ≥ 3 so the dup2 sequence cannot clobber it."""
    if fd >= 3:
        return fd
    new = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
    to_close.append(new)
    return new


def _stdio_actions(spec: ExecSpec, to_close: list[int]) -> list[tuple[int, int, int]]:
    actions: list[tuple[int, int, int]] = []
    if spec.stdin.startswith("file:"):
        try:
            fd_in = os.open(spec.stdin[5:], os.O_RDONLY | os.O_NOCTTY | os.O_CLOEXEC)
        except OSError as exc:
            raise _fail(208, "Failed to set up standard input",
                        exc.errno or errno.EIO) from None
        to_close.append(fd_in)
    else:
        if spec.stdin not in ("null", "tty", "tty-force", "tty-fail"):
            spec.warnings.append(f"StandardInput={spec.stdin} is not supported by flotte, "
                                 "using null")
        fd_in = _null("r")
    fd_out = _open_output(spec.stdout, spec, "stdout", 209, to_close)
    same = spec.stderr == "inherit" or (spec.stderr == spec.stdout and spec.stderr != "tty")
    fd_err = None if same else _open_output(spec.stderr, spec, "stderr", 222, to_close)
    fd_in = _high(fd_in, to_close)
    actions.append((os.POSIX_SPAWN_DUP2, fd_in, 0))
    if fd_out is not None:
        actions.append((os.POSIX_SPAWN_DUP2, _high(fd_out, to_close), 1))
    if same:
        actions.append((os.POSIX_SPAWN_DUP2, 1, 2))
    elif fd_err is not None:
        actions.append((os.POSIX_SPAWN_DUP2, _high(fd_err, to_close), 2))
    return actions


def _lim(v: int) -> float:
    return float("inf") if v == RLIM_INFINITY or v < 0 else float(v)


def _plan_limits(spec: ExecSpec) -> list[tuple[int, int, int]]:
    out: list[tuple[int, int, int]] = []
    for key, (soft, hard) in spec.limits.items():
        res = RLIMIT_KEYS.get(key)
        if res is None:
            spec.warnings.append(f"Unknown resource limit {key}=, ignoring")
            continue
        if _lim(soft) > _lim(hard):
            raise _fail(205, "Failed to adjust resource limits", errno.EINVAL)
        if not _CAP_SYS_RESOURCE:
            cur_hard = resource.getrlimit(res)[1]
            if _lim(hard) > _lim(cur_hard):
                if not spec.clamp_limits:
                    raise _fail(205, "Failed to adjust resource limits", errno.EPERM)
                spec.warnings.append(
                    f"{key}= hard limit {_fmt_lim(hard)} exceeds the supervisor's "
                    f"{_fmt_lim(cur_hard)} and cannot be raised without CAP_SYS_RESOURCE; "
                    f"using {_fmt_lim(cur_hard)}")
                hard = cur_hard
                if _lim(soft) > _lim(hard):
                    soft = hard
        out.append((res, soft, hard))
    return out


def _fmt_lim(v: int) -> str:
    return "infinity" if _lim(v) == float("inf") else str(v)


def _gate_var(env: dict[str, str]) -> str:
    name = "__flotte_gate"
    while name in env:
        name += "_"
    return name


@dataclass(slots=True)
class _Plan:
    argv: list[str]
    env: dict[str, str]
    actions: list[tuple[int, int, int]]
    limits: list[tuple[int, int, int]]
    nice: int | None
    gated: bool


def _prepare(spec: ExecSpec, to_close: list[int]) -> _Plan:
    """All parent-side checks, in systemd's order of steps; builds the wrapper.

    systemd's order: user, group, stdin, stdout, stderr, (cgroup), nice,
    limits, root directory, working directory, executable.
    """
    creds, home = _credentials(spec)
    actions = _stdio_actions(spec, to_close)
    if spec.nice is not None and not -20 <= spec.nice <= 19:
        raise _fail(201, "Failed to set up process scheduling priority (nice level)",
                    errno.EINVAL)
    limits = _plan_limits(spec)
    root = spec.root_directory if spec.root_directory and not spec.privileged else None
    if root is not None:
        if not os.path.isdir(root):
            raise _fail(210, "Chrooting to the requested root directory failed",
                        errno.ENOENT if not os.path.exists(root) else errno.ENOTDIR)
        if _NSENTER is None:
            raise SpawnFailure(210, "RootDirectory= needs nsenter(1) from util-linux",
                               "nsenter not found")
    if creds is not None and _SETPRIV is None:
        raise SpawnFailure(217, "User=/Group= need setpriv(1) from util-linux",
                           "setpriv not found")
    # working directory, on the host (relative to RootDirectory=, also for '+')
    wd = spec.working_directory
    if wd == "~":
        wd = home or _root_home()
    if not wd:
        wd = "/"
    base = (spec.root_directory or "").rstrip("/")
    host_wd = os.path.normpath(base + "/" + wd.lstrip("/")) if base else wd
    if not os.path.isdir(host_wd):
        if not spec.working_directory_missing_ok:
            err = errno.ENOTDIR if os.path.exists(host_wd) else errno.ENOENT
            raise _fail(200, "Changing to the requested working directory failed", err)
        host_wd = base or "/"
    # the executable
    exe = resolve_executable(spec.path, spec.root_directory if not spec.privileged else None)
    shown = spec.path if "/" in spec.path else exe
    _check_executable(exe, shown, root, creds)
    argv = list(spec.argv) or [exe]
    env = dict(spec.env)
    if spec.cgroup is not None:
        env.update(spec.cgroup.extra_env())

    q = shlex.quote
    lines: list[str] = []
    gated = bool(limits) or spec.nice is not None
    if gated:
        gv = _gate_var(env)
        lines.append(f"read -r {gv} <&3; exec 3<&-; unset {gv}")
    if spec.cgroup is not None:
        joins = spec.cgroup.join_paths()
        if joins:
            lines.append(" && ".join(f'echo "$$" >{q(p)}' for p in joins) + " || exit 219")
    lines.append(f"umask {spec.umask & 0o7777:04o}")
    if root is None:
        if spec.working_directory_missing_ok:
            lines.append(f"cd -P -- {q(host_wd)} 2>/dev/null || cd /")
        else:
            lines.append(f"cd -P -- {q(host_wd)} 2>/dev/null || exit 200")
    restore = []
    for var in ("PWD", "OLDPWD"):
        if var in env:
            restore.append(f"export {var}={q(env[var])}")
        else:
            restore.append(f"unset {var}")
    lines.append("; ".join(restore))
    prefix: list[str] = []
    if creds is not None:
        assert _SETPRIV is not None
        prefix.append(_SETPRIV)
        if creds.uid is not None and root is None:
            prefix.append(f"--reuid={creds.uid}")
        if creds.gid is not None:
            prefix.append(f"--regid={creds.gid}")
        if creds.groups:
            prefix.append("--groups=" + ",".join(str(g) for g in creds.groups))
        else:
            prefix.append("--clear-groups")
        prefix.append("--")
    if root is not None:
        assert _NSENTER is not None
        prefix += [_NSENTER, f"--root={root}", f"--wd={host_wd}"]
        if creds is not None and creds.uid is not None:
            prefix += ["-S", str(creds.uid)]
        prefix.append("--")
    use_perl = argv[0] != exe
    if use_perl and root is not None:
        spec.warnings.append("argv[0] cannot be set with RootDirectory=; using the path")
        use_perl = False
    if use_perl and _PERL is None:
        spec.warnings.append("argv[0] cannot be set without perl; using the path")
        use_perl = False
    if use_perl:
        assert _PERL is not None
        prefix += [_PERL, "-e", _PERL_EXEC, "--"]
        positional = [exe, *argv]
    else:
        positional = [exe, *argv[1:]]
    lines.append("exec " + "".join(q(p) + " " for p in prefix) + '"$@"')
    script = "\n".join(lines)
    return _Plan([_SH, "-c", script, _SH_NAME, *positional], env, actions, limits,
                 spec.nice, gated)


# ---------------------------------------------------------------------------
# spawn
# ---------------------------------------------------------------------------


async def spawn(spec: ExecSpec) -> Child:
    """Start ``spec`` and return its :class:`Child` (tracked until it ends).

    The checks and the wrapper script are built in the event loop thread; the
    ``posix_spawn`` itself (0.3–0.7 ms: the kernel's ``execve`` of the wrapper
    while the parent waits, plus copying the descriptor table, which grows
    with the number of running units) runs in a spawner thread, since CPython
    releases the GIL around it: the loop meanwhile prepares the next units, so
    a mass start uses both cores.  Raises :class:`SpawnFailure` for setup
    failures (systemd's 2xx codes) and :class:`OSError` when the fork itself
    fails (systemd's result ``resources``).  The caller may close its copy of
    ``spec.journal_fd`` right after this returns.
    """
    loop = asyncio.get_running_loop()
    reaper = _reaper_for(loop)
    # Prepare a start only when the spawner can take it: running ahead would hold
    # hundreds of prepared environments at once in a mass start (memory that
    # the allocator does not give back).
    async with reaper.spawn_slots:
        to_close: list[int] = []
        gate_w: int | None = None
        own_warnings = len(spec.warnings)  # the checks append theirs; the spec is left as it was
        try:
            plan = _prepare(spec, to_close)
            actions = plan.actions
            if plan.gated:
                gate_r, gate_w = os.pipe2(os.O_CLOEXEC)
                to_close.append(gate_r)
                actions = [*actions, (os.POSIX_SPAWN_DUP2, gate_r, 3)]
            try:
                pid, pidfd, failure = await _spawn_in_thread(reaper, spec, plan, actions, gate_w)
            except OSError as exc:
                if exc.errno == errno.E2BIG:
                    raise _fail(203, f"Failed to execute {spec.path}", errno.E2BIG) from None
                raise
            child = Child(loop, pid, pidfd, argv=list(spec.argv), warnings=list(spec.warnings))
            if pidfd is not None:
                reaper.track(child)
            else:  # pragma: no cover
                _track_blocking(loop, child)
            if failure is not None:
                child.signal(signal.SIGKILL)
                raise failure
            if spec.cgroup is not None:
                spec.cgroup.attach(pid)
            return child
        finally:
            del spec.warnings[own_warnings:]
            if gate_w is not None:
                os.close(gate_w)
            for fd in to_close:
                with contextlib.suppress(OSError):
                    os.close(fd)


_SPAWNER: concurrent.futures.ThreadPoolExecutor | None = None
#: Spawner threads.  One keeps the second core for the event loop; the kernel's
#: exec work does not scale further on the machines we measured (2 cores).
SPAWNERS: Final = 1


def _spawner() -> concurrent.futures.ThreadPoolExecutor:
    global _SPAWNER
    if _SPAWNER is None:
        _SPAWNER = concurrent.futures.ThreadPoolExecutor(SPAWNERS, thread_name_prefix="flotte-spawn")
    return _SPAWNER


def _posix_spawn(plan: _Plan, actions: list[tuple[int, int, int]], setsid: bool,
                 cgroup: UnitCgroup | None, gate_w: int | None
                 ) -> tuple[int, int | None, SpawnFailure | None]:
    """Runs in the spawner thread: every syscall of a start that may take a while.

    Creates the unit's cgroup if needed, fork+execs the wrapper, takes a
    pidfd at once, and — for a gated wrapper — applies ``Limit*=`` and
    ``Nice=`` to the waiting child before letting it go on.  A failure of
    those is returned (the child already killed), not raised: the caller
    still has to reap the child.
    """
    if cgroup is not None:
        try:
            cgroup.ensure()
        except OSError as exc:
            raise _fail(219, "Failed to attach to cgroup", exc.errno or errno.EIO) from None
    pid = os.posix_spawn(_SH, plan.argv, plan.env, file_actions=actions,
                         setsid=setsid, setsigmask=(), setsigdef=_SIGDEF)
    try:
        pidfd: int | None = os.pidfd_open(pid)
    except OSError:  # pragma: no cover - only if the kernel lacks pidfds
        pidfd = None
    if gate_w is None:
        return pid, pidfd, None
    try:
        for res, soft, hard in plan.limits:
            resource.prlimit(pid, res, (soft, hard))
    except (OSError, ValueError) as exc:
        os.kill(pid, signal.SIGKILL)
        return pid, pidfd, _fail(205, "Failed to adjust resource limits",
                                 getattr(exc, "errno", None) or errno.EINVAL)
    if plan.nice is not None:
        try:
            os.setpriority(os.PRIO_PROCESS, pid, plan.nice)
        except OSError as exc:
            os.kill(pid, signal.SIGKILL)
            return pid, pidfd, _fail(201, "Failed to set up process scheduling priority "
                                     "(nice level)", exc.errno or errno.EPERM)
    os.write(gate_w, b"\n")
    return pid, pidfd, None


async def _spawn_in_thread(reaper: _Reaper, spec: ExecSpec, plan: _Plan,
                           actions: list[tuple[int, int, int]], gate_w: int | None
                           ) -> tuple[int, int | None, SpawnFailure | None]:
    """``_posix_spawn`` in the spawner thread, safe against the sweeper and cancellation.

    While a spawn is in flight the orphan sweeper stands aside (``inflight``):
    the new child is our zombie-to-be before it is tracked, and must not be
    mistaken for an orphan.  If the awaiting task is cancelled, the spawn
    still completes (the descriptors it duplicates must stay open until
    then), and the process it started is killed and reaped, so nothing runs
    unsupervised.
    """
    reaper.inflight += 1
    cf = _spawner().submit(_posix_spawn, plan, actions, spec.new_session, spec.cgroup,
                           gate_w)
    try:
        return await asyncio.shield(asyncio.wrap_future(cf))
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            pid, pidfd, _ = cf.result()
            orphan = Child(reaper.loop, pid, pidfd, argv=list(spec.argv), warnings=[])
            if pidfd is not None:
                reaper.track(orphan)
            orphan.signal(signal.SIGKILL)
        raise
    finally:
        reaper.inflight -= 1
        reaper.spawned()


def _track_blocking(loop: asyncio.AbstractEventLoop,
                    child: Child) -> None:  # pragma: no cover - kernels < 5.3
    """Last resort without pidfds: one waitpid thread for this child."""

    def wait() -> None:
        _, status = os.waitpid(child.pid, 0)
        if os.WIFEXITED(status):
            info = ExitInfo("exited", os.WEXITSTATUS(status))
        elif os.WCOREDUMP(status):
            info = ExitInfo("dumped", os.WTERMSIG(status))
        else:
            info = ExitInfo("killed", os.WTERMSIG(status))
        loop.call_soon_threadsafe(child._set_exit, info)

    loop.run_in_executor(None, wait)
