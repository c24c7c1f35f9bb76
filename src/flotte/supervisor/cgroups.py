"""Per-unit process tracking: "which processes belong to this unit?".

systemd answers that question with one cgroup per unit, and everything in
``KillMode=``, ``ExitType=cgroup``, ``GuessMainPID=`` and the stop sequence
depends on the answer being complete: a daemon that double-forks and calls
``setsid`` must still be found and killed.  A process group or session is not
enough (``setsid`` escapes both), so this module offers two mechanisms and
:meth:`CgroupManager.detect` picks the best one the machine allows
(spec: systemd.md §4.7, containers.md §0 and §5):

``cgroup2``
    A writable cgroup v2 hierarchy (``/sys/fs/cgroup`` on pure-v2 machines,
    ``/sys/fs/cgroup/unified`` on v1 hybrids such as our CI machine, where it
    has no controllers).  Every unit gets ``<own cgroup>/<root>/<unit>``; the
    child writes its own PID into ``cgroup.procs`` before it execs, so
    nothing it forks can escape.  Membership is ``cgroup.procs``, emptiness
    is ``cgroup.events`` (``populated 0``, delivered as ``POLLPRI`` so
    :meth:`UnitCgroup.wait_empty` sleeps in the event loop), and killing is
    ``cgroup.kill`` (kernel ≥ 5.14) or a freeze/kill/thaw loop.

``subreaper``
    No usable cgroup v2.  The supervisor becomes a *child subreaper*
    (``PR_SET_CHILD_SUBREAPER``), so orphans of its services are re-parented
    to it instead of to PID 1, and a unit's processes are found by walking
    ``/proc``: everything that descends (by parent PID) from a process the
    launcher started for the unit, plus orphans whose environment carries
    ``FLOTTE_UNIT_INVOCATION=<token>`` (the launcher puts it into every
    process it starts for the unit).  Limits of this fallback, by design:

    * a process that clears its environment (``env -i``, some daemons
      sanitise it) **and** is orphaned is not found any more;
    * an orphan adopted by another subreaper or by PID 1 (because it was
      orphaned before we became a subreaper, or a service runs its own
      subreaper such as ``tini``) is only found through its environment;
    * membership is a snapshot (shared by all units for up to 50 ms, so a
      mass stop does not walk /proc once per unit): a process forked after
      it misses a SIGTERM, and after SIGKILL it is caught by
      :meth:`UnitCgroup.wait_empty`, which keeps killing newcomers until a
      newer snapshot finds the unit empty;
    * the variable is visible to the service, unlike a cgroup;
    * a zombie cannot be asked for its environment: an orphan that was
      never seen alive in a snapshot and is its own session leader (a
      single-fork ``setsid`` daemon) looks like another component's child,
      so the launcher's sweeper only reaps it after ``ORPHAN_GRACE`` (30 s);
    * scanning costs O(number of processes) per snapshot (about 10 µs per
      process).

In both modes the limits ``MemoryMax=``/``TasksMax=``/``CPUQuota=`` need
controllers.  The v2 hierarchy is used when it offers them; otherwise (our
machine) the unit path is mirrored into the v1 ``memory``, ``pids`` and
``cpu`` hierarchies — only for units that set a limit — under the
supervisor's *own* cgroup in each hierarchy (from ``/proc/self/cgroup``; the
memory cgroup of the supervisor is not the root here), and the child joins
those too (:meth:`UnitCgroup.join_paths`).

Both modes make the supervisor a subreaper by default (``subreaper=True``):
that is what lets the state machine get the exit status of a ``Type=forking``
daemon's main process, which is not its child otherwise.  The launcher then
reaps orphans that belong to units (see :mod:`flotte.supervisor.launcher`).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import ctypes
import errno
import logging
import os
import signal
import time
import uuid
import weakref
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Final, Literal

__all__ = [
    "MARKER_ENV",
    "CgroupManager",
    "Mechanism",
    "UnitCgroup",
    "cg_escape",
    "is_subreaper",
    "owns_orphan",
    "set_child_subreaper",
]

log = logging.getLogger("flotte.supervisor.cgroups")

Mechanism = Literal["cgroup2", "subreaper"]

#: Environment variable marking every process started for a unit (subreaper mode).
MARKER_ENV: Final = "FLOTTE_UNIT_INVOCATION"

#: Where a cgroup v2 hierarchy may be mounted for us to use it.
V2_MOUNTPOINTS: Final = ("/sys/fs/cgroup", "/sys/fs/cgroup/unified")

#: v1 controllers mirrored for limits.
V1_CONTROLLERS: Final = ("memory", "pids", "cpu")

_CPU_PERIOD_US: Final = 100_000
_SNAPSHOT_TTL: Final = 0.05
_KILL_ROUNDS: Final = 20

_PR_SET_CHILD_SUBREAPER: Final = 36
_PR_GET_CHILD_SUBREAPER: Final = 37


# ---------------------------------------------------------------------------
# Subreaper
# ---------------------------------------------------------------------------

_libc: ctypes.CDLL | None = None


def _prctl(option: int, arg: int) -> int:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return int(_libc.prctl(ctypes.c_int(option), ctypes.c_ulong(arg), ctypes.c_ulong(0),
                           ctypes.c_ulong(0), ctypes.c_ulong(0)))


def set_child_subreaper(enable: bool = True) -> None:
    """Make orphaned descendants re-parent to this process instead of PID 1.

    Process-wide and inherited by nothing (it is cleared in children), so it
    only affects the supervisor.  Raises :class:`OSError` if ``prctl`` fails.
    """
    if _prctl(_PR_SET_CHILD_SUBREAPER, 1 if enable else 0) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def is_subreaper() -> bool:
    """Is this process currently a child subreaper?"""
    out = ctypes.c_int(0)
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    rc = _libc.prctl(ctypes.c_int(_PR_GET_CHILD_SUBREAPER), ctypes.byref(out),
                     ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0))
    return rc == 0 and out.value != 0


# ---------------------------------------------------------------------------
# Names and mounts
# ---------------------------------------------------------------------------

_RESERVED: Final = frozenset({"notify_on_release", "release_agent", "tasks"})


def cg_escape(name: str) -> str:
    """systemd's ``cg_escape``: make a unit name safe as a cgroup directory name.

    Names that could collide with the kernel's own files (``tasks``,
    ``cgroup.procs``, ``memory.max`` …) or start with ``_``/``.`` get a ``_``
    prefix.  Unit names cannot contain ``/``, but refuse it anyway.
    """
    if not name or "/" in name or name in (".", ".."):
        raise ValueError(f"invalid cgroup name: {name!r}")
    head = name.split(".", 1)[0]
    if (name[0] in "_." or name in _RESERVED
            or ("." in name and (head == "cgroup" or _is_controller_name(head)))):
        return "_" + name
    return name


_CONTROLLER_NAMES: Final = frozenset({
    "cpu", "cpuacct", "cpuset", "io", "blkio", "memory", "devices", "pids", "freezer",
    "net_cls", "net_prio", "perf_event", "hugetlb", "rdma", "misc", "systemd",
})


def _is_controller_name(s: str) -> bool:
    return s in _CONTROLLER_NAMES


@dataclass(frozen=True, slots=True)
class _Mount:
    root: str
    point: str
    fstype: str
    super_opts: frozenset[str]


def _unescape_mount(s: str) -> str:
    if "\\" not in s:
        return s
    out: list[str] = []
    i = 0
    while i < len(s):
        if s[i] == "\\" and i + 3 < len(s) and s[i + 1:i + 4].isdigit():
            out.append(chr(int(s[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


def _mounts() -> list[_Mount]:
    out: list[_Mount] = []
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
            lines = f.read().splitlines()
    except OSError:
        return out
    for line in lines:
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        lf = left.split()
        rf = right.split()
        if len(lf) < 5 or len(rf) < 3 or rf[0] not in ("cgroup", "cgroup2"):
            continue
        out.append(_Mount(_unescape_mount(lf[3]), _unescape_mount(lf[4]), rf[0],
                          frozenset(rf[2].split(","))))
    return out


def _own_cgroups(pid: int | str = "self") -> dict[str, str]:
    """``/proc/PID/cgroup`` as {controller: path}; the v2 entry has key ``""``."""
    out: dict[str, str] = {}
    try:
        with open(f"/proc/{pid}/cgroup", encoding="utf-8", errors="surrogateescape") as f:
            text = f.read()
    except OSError:
        return out
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        if parts[0] == "0" and parts[1] == "":
            out[""] = parts[2]
            continue
        for ctrl in parts[1].split(","):
            out[ctrl] = parts[2]
    return out


def _dir_in_mount(m: _Mount, own_path: str) -> str | None:
    """The directory of cgroup ``own_path`` inside mount ``m`` (None if not visible)."""
    rel = own_path
    if m.root != "/":
        if own_path == m.root:
            rel = "/"
        elif own_path.startswith(m.root.rstrip("/") + "/"):
            rel = own_path[len(m.root.rstrip("/")):]
        else:
            return None
    return os.path.normpath(m.point + "/" + rel.lstrip("/"))


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError:
        return None


def _write(path: str, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def _read_procs(path: str) -> list[int]:
    text = _read(path)
    if not text:
        return []
    return [int(x) for x in text.split()]


def _rmdir_tree(path: str) -> bool:
    """rmdir a cgroup and its child cgroups bottom-up; False if any stays (busy)."""
    ok = True
    try:
        entries = list(os.scandir(path))
    except FileNotFoundError:
        return True
    except OSError:
        return False
    for e in entries:
        if e.is_dir(follow_symlinks=False):
            ok = _rmdir_tree(e.path) and ok
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        if exc.errno not in (errno.EBUSY, errno.ENOTEMPTY):
            log.warning("cannot remove cgroup %s: %s", path, exc)
        return False
    return ok


# ---------------------------------------------------------------------------
# /proc snapshots (subreaper mode)
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProcStat:
    """The fields of ``/proc/PID/stat`` we need."""

    pid: int
    state: str
    ppid: int
    sid: int
    start: int  # starttime in clock ticks since boot; (pid, start) names a process


def read_stat(pid: int) -> ProcStat | None:
    """Parse ``/proc/PID/stat`` (works for zombies too); None if gone."""
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        data = os.read(fd, 2048)
    except OSError:
        return None
    finally:
        os.close(fd)
    # comm may contain spaces and parentheses: split at the *last* ')'.
    r = data.rfind(b")")
    if r < 0:
        return None
    f2 = data[r + 2:].split(None, 20)
    try:
        return ProcStat(pid, chr(f2[0][0]), int(f2[1]), int(f2[3]), int(f2[19]))
    except (IndexError, ValueError):
        return None


def _list_pids() -> list[int]:
    out: list[int] = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            out.append(int(name))
    return out


class _ProcTracker:
    """Shared /proc snapshots for all subreaper-mode units of one manager."""

    def __init__(self) -> None:
        self.self_pid = os.getpid()
        self.units: weakref.WeakSet[_ProcUnitCgroup] = weakref.WeakSet()
        self.taken = -1.0
        self._owner: dict[int, _ProcUnitCgroup] = {}
        self._marker_cache: dict[tuple[int, int], bytes | None] = {}
        # members of the previous and current snapshots, to recognise
        # orphaned zombies (their environ is gone once they are dead)
        self._recent_members: set[int] = set()

    def _marker_of(self, st: ProcStat) -> bytes | None:
        key = (st.pid, st.start)
        if key in self._marker_cache:
            return self._marker_cache[key]
        found: bytes | None = None
        try:
            with open(f"/proc/{st.pid}/environ", "rb") as f:
                data = f.read()
        except OSError:
            data = b""
        prefix = MARKER_ENV.encode() + b"="
        for item in data.split(b"\0"):
            if item.startswith(prefix):
                found = item[len(prefix):]
                break
        # /proc/PID/environ reads empty while the process is in execve (and
        # for zombies): only remember answers from a real environment.
        if data:
            self._marker_cache[key] = found
        return found

    def snapshot(self, max_age: float = _SNAPSHOT_TTL) -> dict[int, _ProcUnitCgroup]:
        """pid → owning unit, for every live process of every tracked unit."""
        now = time.monotonic()
        if now - self.taken <= max_age:
            return self._owner
        procs: dict[int, ProcStat] = {}
        for pid in _list_pids():
            st = read_stat(pid)
            if st is not None:
                procs[pid] = st
        roots: dict[tuple[int, int], _ProcUnitCgroup] = {}
        markers: dict[bytes, _ProcUnitCgroup] = {}
        for unit in list(self.units):
            markers[unit.token.encode()] = unit
            for key in list(unit._roots):
                st = procs.get(key[0])
                if st is None or st.start != key[1] or st.state in ("Z", "X"):
                    unit._roots.discard(key)
                else:
                    roots[key] = unit
        owner: dict[int, _ProcUnitCgroup] = {}
        memo: dict[int, _ProcUnitCgroup | None] = {}
        me = self.self_pid
        for pid, st in procs.items():
            if st.state in ("Z", "X"):
                continue
            chain: list[int] = []
            p: int = pid
            result: _ProcUnitCgroup | None = None
            while True:
                if p in memo:
                    result = memo[p]
                    break
                cur = procs.get(p)
                if cur is None or p in (1, 2, me):
                    result = None
                    break
                chain.append(p)
                root_unit = roots.get((p, cur.start))
                if root_unit is not None:
                    result = root_unit
                    break
                if cur.ppid in (me, 1, 0) or cur.ppid not in procs:
                    # top of a chain: a re-parented orphan (or someone else's
                    # process); only its environment can tell
                    marker = self._marker_of(cur) if markers else None
                    result = markers.get(marker) if marker is not None else None
                    break
                p = cur.ppid
            for c in chain:
                memo[c] = result
            if result is not None:
                owner[pid] = result
        # forget cached environments of processes that are gone
        if len(self._marker_cache) > 2 * len(procs) + 64:
            self._marker_cache = {k: v for k, v in self._marker_cache.items()
                                  if k[0] in procs and procs[k[0]].start == k[1]}
        self._recent_members = set(self._owner) | set(owner)
        self._owner = owner
        self.taken = now  # when the scan started: what it shows was true then
        return owner

    def knows(self, pid: int) -> bool:
        return pid in self._recent_members or pid in self._owner


# ---------------------------------------------------------------------------
# The manager
# ---------------------------------------------------------------------------

_MANAGERS: weakref.WeakSet[CgroupManager] = weakref.WeakSet()


def owns_orphan(pid: int) -> bool:
    """Does ``pid`` (typically a zombie re-parented to us) belong to a unit?

    Used by the launcher's orphan reaper to decide that a zombie child it did
    not spawn itself may be reaped: in cgroup2 mode the zombie still shows
    its cgroup in ``/proc/PID/cgroup``; in subreaper mode it was a member in
    one of the last two snapshots.
    """
    v2path: str | None = None
    for m in list(_MANAGERS):
        if m.mechanism == "cgroup2" and m.own_v2_path is not None:
            if v2path is None:
                v2path = _own_cgroups(pid).get("", "")
            prefix = m.own_v2_path.rstrip("/") + "/" + m.root_name + "/"
            if (v2path + "/").startswith(prefix):
                return True
        elif m._tracker is not None and m._tracker.knows(pid):
            return True
    return False


class CgroupManager:
    """Creates and finds the per-unit process groups of one supervisor.

    Build it with :meth:`detect`.  ``mechanism`` says what is used
    (``"cgroup2"`` or ``"subreaper"``); ``path`` is the directory holding the
    unit cgroups (cgroup2 mode) and ``v1`` maps the v1 controllers available
    for limits to the directory that will hold the unit mirrors.
    """

    def __init__(self, mechanism: Mechanism, root_name: str, *, path: str | None,
                 own_v2_path: str | None, v1: dict[str, str], subreaper: bool) -> None:
        self.mechanism: Mechanism = mechanism
        self.root_name = root_name
        self.path = path
        self.own_v2_path = own_v2_path
        self.v1 = v1
        self.subreaper = subreaper
        self._units: dict[str, UnitCgroup] = {}
        self._tracker = _ProcTracker() if mechanism == "subreaper" else None
        self._v2_controllers: frozenset[str] = frozenset()
        self._v1_dirs: dict[str, set[str]] | None = None  # ctrl → unit mirrors that exist
        if path is not None:
            text = _read(os.path.join(path, "cgroup.controllers")) or ""
            self._v2_controllers = frozenset(text.split())
        _MANAGERS.add(self)

    def v1_mirrors(self, esc: str) -> dict[str, str]:
        """The v1 mirror directories that exist for a unit (escaped name).

        Listed once per controller and then kept current by :meth:`note_v1`,
        so creating a unit's group does not stat every v1 hierarchy (mass
        starts create 1,000 of them)."""
        if self._v1_dirs is None:
            self._v1_dirs = {}
            for ctrl, base in self.v1.items():
                try:
                    self._v1_dirs[ctrl] = {e.name for e in os.scandir(base) if e.is_dir()}
                except OSError:
                    self._v1_dirs[ctrl] = set()
        return {ctrl: os.path.join(self.v1[ctrl], esc)
                for ctrl, names in self._v1_dirs.items() if esc in names}

    def note_v1(self, ctrl: str, esc: str, exists: bool) -> None:
        if self._v1_dirs is not None:
            names = self._v1_dirs.setdefault(ctrl, set())
            if exists:
                names.add(esc)
            else:
                names.discard(esc)

    def __repr__(self) -> str:
        return (f"CgroupManager(mechanism={self.mechanism!r}, path={self.path!r}, "
                f"v1={sorted(self.v1)}, subreaper={self.subreaper})")

    # -- construction -----------------------------------------------------
    @classmethod
    def detect(cls, root_name: str = "flotte", *, prefer: Mechanism | None = None,
               subreaper: bool = True) -> CgroupManager:
        """Pick the best mechanism on this machine (see the module docstring).

        ``prefer="subreaper"`` forces the fallback (tests; machines where the
        v2 hierarchy belongs to someone else); ``prefer="cgroup2"`` raises
        :class:`RuntimeError` when cgroup v2 is not usable.  ``subreaper``
        also makes the process a child subreaper in cgroup2 mode (always in
        subreaper mode).  Creates ``<own cgroup>/<root_name>`` in the v2
        hierarchy (cgroup2 mode); v1 mirrors are created lazily.
        """
        if not root_name or "/" in root_name or root_name in (".", ".."):
            raise ValueError(f"invalid cgroup root name: {root_name!r}")
        mounts = _mounts()
        own = _own_cgroups()
        v1: dict[str, str] = {}
        for ctrl in V1_CONTROLLERS:
            if ctrl not in own:
                continue
            for m in mounts:
                if m.fstype == "cgroup" and ctrl in m.super_opts:
                    d = _dir_in_mount(m, own[ctrl])
                    if d is not None and os.path.isdir(d) and os.access(d, os.W_OK):
                        v1[ctrl] = os.path.join(d, root_name)
                    break
        path: str | None = None
        own_v2: str | None = None
        if prefer != "subreaper" and "" in own:
            candidates = sorted((m for m in mounts if m.fstype == "cgroup2"
                                 and m.point in V2_MOUNTPOINTS),
                                key=lambda m: V2_MOUNTPOINTS.index(m.point))
            for m in candidates:
                d = _dir_in_mount(m, own[""])
                if d is None or not os.path.isdir(d):
                    continue
                root = os.path.join(d, root_name)
                try:
                    os.makedirs(root, exist_ok=True)
                except OSError as exc:
                    log.info("cgroup v2 at %s not usable: %s", m.point, exc)
                    continue
                if not os.access(os.path.join(root, "cgroup.procs"), os.W_OK):
                    continue
                path, own_v2 = root, own[""]
                break
        if path is None and prefer == "cgroup2":
            raise RuntimeError("no writable cgroup v2 hierarchy at "
                               + " or ".join(V2_MOUNTPOINTS))
        mechanism: Mechanism = "cgroup2" if path is not None else "subreaper"
        if subreaper or mechanism == "subreaper":
            try:
                set_child_subreaper()
            except OSError as exc:  # pragma: no cover - prctl exists since Linux 3.4
                log.warning("cannot become a child subreaper: %s", exc)
                subreaper = False
            else:
                subreaper = True
        mgr = cls(mechanism, root_name, path=path, own_v2_path=own_v2, v1=v1,
                  subreaper=subreaper)
        log.debug("process tracking: %r", mgr)
        return mgr

    # -- units -------------------------------------------------------------
    def unit(self, unit_name: str, *, invocation_id: str | None = None) -> UnitCgroup:
        """The process group of ``unit_name`` (created on first use, then reused).

        Keep using the same object across restarts of the unit: leftovers of
        an earlier run (``KillMode=process``) are then still found, as with
        systemd's per-unit cgroup.  ``invocation_id`` becomes the marker value
        in subreaper mode (default: a random token).
        """
        u = self._units.get(unit_name)
        if u is not None:
            return u
        esc = cg_escape(unit_name)
        if self.mechanism == "cgroup2":
            assert self.path is not None
            u = _V2UnitCgroup(self, unit_name, os.path.join(self.path, esc))
        else:
            assert self._tracker is not None
            u = _ProcUnitCgroup(self, unit_name, esc, invocation_id or uuid.uuid4().hex,
                                self._tracker)
        self._units[unit_name] = u
        return u

    def forget(self, unit_name: str) -> None:
        """Drop the cached object for a unit (after :meth:`UnitCgroup.remove`)."""
        self._units.pop(unit_name, None)

    def _dirs(self) -> Iterator[str]:
        if self.path is not None:
            yield self.path
        yield from self.v1.values()

    def cleanup(self) -> list[str]:
        """Remove empty unit cgroups left over from a previous run.

        Returns the (escaped) names of unit cgroups that still contain
        processes — survivors of a previous supervisor; kill or adopt them.
        """
        busy: set[str] = set()
        for base in self._dirs():
            try:
                entries = [e for e in os.scandir(base) if e.is_dir(follow_symlinks=False)]
            except OSError:
                continue
            for e in entries:
                if e.name in self._units_escaped():
                    continue
                if not _rmdir_tree(e.path):
                    busy.add(e.name)
        self._v1_dirs = None  # listed again on next use
        return sorted(busy)

    def _units_escaped(self) -> set[str]:
        return {cg_escape(n) for n in self._units}

    def remove_root(self) -> bool:
        """rmdir the ``<root_name>`` directories (only if empty); True if all gone."""
        ok = True
        for base in self._dirs():
            try:
                os.rmdir(base)
            except FileNotFoundError:
                pass
            except OSError:
                ok = False
        return ok

    def snapshot_members(self) -> dict[int, str]:
        """pid → unit name for every tracked process (debugging, ``status``)."""
        out: dict[int, str] = {}
        if self._tracker is not None:
            for pid, pu in self._tracker.snapshot(0).items():
                out[pid] = pu.name
            return out
        for name, u in self._units.items():
            for pid in u.pids():
                out[pid] = name
        return out


# ---------------------------------------------------------------------------
# One unit
# ---------------------------------------------------------------------------


class UnitCgroup(abc.ABC):
    """All processes of one unit, whichever mechanism tracks them.

    ``path`` is the cgroup directory (cgroup2 mode) or a descriptive
    pseudo-path ``subreaper:<root>/<unit>`` (not a file).  The launcher calls
    :meth:`join_paths` and :meth:`extra_env` before spawning and
    :meth:`attach` right after.
    """

    def __init__(self, manager: CgroupManager, name: str, path: str) -> None:
        self.manager = manager
        self.name = name
        self.path = path
        self._mirrors: dict[str, str] = {}  # v1 controller → unit dir

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, path={self.path!r})"

    # -- membership --------------------------------------------------------
    @abc.abstractmethod
    def pids(self) -> list[int]:
        """Every live process of the unit (no zombies), sorted."""

    def populated(self) -> bool:
        """Does the unit still have a process?"""
        return bool(self.pids())

    def contains(self, pid: int) -> bool:
        """Is ``pid`` a process of this unit (e.g. a PIDFile= value)?"""
        return pid in self.pids()

    @abc.abstractmethod
    async def wait_empty(self, timeout: float | None = None) -> bool:
        """Wait until no process is left; False on timeout (None = forever)."""

    # -- launcher hooks ----------------------------------------------------
    def join_paths(self) -> list[str]:
        """``cgroup.procs`` files the child writes its PID into before exec."""
        return [os.path.join(d, "cgroup.procs") for d in self._mirrors.values()]

    def extra_env(self) -> dict[str, str]:
        """Variables the launcher adds to the child's environment."""
        return {}

    def attach(self, pid: int) -> None:  # noqa: B027 - optional hook
        """Told the PID of every process spawned for the unit."""

    def ensure(self) -> None:  # noqa: B027 - optional hook
        """Create the unit's group if it is missing (the launcher calls it before each
        spawn, from its spawner thread: creating a cgroup costs ~0.3 ms of kernel time)."""

    # -- signals -----------------------------------------------------------
    @abc.abstractmethod
    def signal_all(self, sig: int) -> int:
        """Send ``sig`` to every process of the unit; returns how many were found.

        Other signals go to a snapshot of the members.  SIGKILL is complete in
        cgroup2 mode (``cgroup.kill``); in subreaper mode processes forked
        after the snapshot are killed by :meth:`wait_empty`, so always follow
        a SIGKILL with ``await wait_empty(…)``.  KillMode= policy (main
        process first, SIGCONT after SIGTERM …) is the caller's.
        """

    # -- limits ------------------------------------------------------------
    def set_limits(self, memory_max: int | None = None, tasks_max: int | None = None,
                   cpu_quota_percent: float | None = None) -> list[str]:
        """Apply ``MemoryMax=``/``TasksMax=``/``CPUQuota=`` (None = no limit).

        Call before spawning, so the child joins the mirrored v1 cgroups
        (:meth:`join_paths`).  Returns the names of limits that could not be
        applied (no controller) — the caller should warn, as systemd does
        when a controller is missing.
        """
        wanted = {"memory": memory_max, "pids": tasks_max, "cpu": cpu_quota_percent}
        failed: list[str] = []
        self.ensure()
        native = self._v2_native()
        for ctrl, value in wanted.items():
            if ctrl in native:
                try:
                    self._set_v2_limit(ctrl, value)
                    continue
                except OSError as exc:
                    log.warning("%s: cannot set v2 %s limit: %s", self.name, ctrl, exc)
            if value is None and ctrl not in self._mirrors:
                continue
            base = self.manager.v1.get(ctrl)
            if base is None:
                if value is not None:
                    failed.append(ctrl)
                continue
            d = self._mirrors.get(ctrl)
            try:
                if d is None:
                    esc = cg_escape(self.name)
                    d = os.path.join(base, esc)
                    os.makedirs(d, exist_ok=True)
                    self._mirrors[ctrl] = d
                    self.manager.note_v1(ctrl, esc, True)
                self._set_v1_limit(ctrl, d, value)
            except OSError as exc:
                log.warning("%s: cannot set v1 %s limit: %s", self.name, ctrl, exc)
                if value is not None:
                    failed.append(ctrl)
        return failed

    def _v2_native(self) -> frozenset[str]:
        return frozenset()

    def _set_v2_limit(self, ctrl: str, value: int | float | None) -> None:
        raise OSError(errno.ENOTSUP, "no v2 controller")

    @staticmethod
    def _set_v1_limit(ctrl: str, d: str, value: int | float | None) -> None:
        if ctrl == "memory":
            _write(os.path.join(d, "memory.limit_in_bytes"),
                   "-1" if value is None else str(int(value)))
        elif ctrl == "pids":
            _write(os.path.join(d, "pids.max"), "max" if value is None else str(int(value)))
        elif ctrl == "cpu":
            if value is None:
                _write(os.path.join(d, "cpu.cfs_quota_us"), "-1")
            else:
                _write(os.path.join(d, "cpu.cfs_period_us"), str(_CPU_PERIOD_US))
                quota = max(1000, round(float(value) * _CPU_PERIOD_US / 100))
                _write(os.path.join(d, "cpu.cfs_quota_us"), str(quota))

    def memory_current(self) -> int | None:
        """Memory in use (bytes) when a memory controller accounts the unit."""
        m = self._mirrors.get("memory")
        if m is not None:
            text = _read(os.path.join(m, "memory.usage_in_bytes"))
            if text:
                return int(text)
        return None

    def tasks_current(self) -> int:
        """Number of tasks (threads) of the unit, or of processes without a pids controller."""
        m = self._mirrors.get("pids")
        if m is not None:
            text = _read(os.path.join(m, "pids.current"))
            if text:
                return int(text)
        return len(self.pids())

    # -- removal -----------------------------------------------------------
    def remove(self) -> bool:
        """rmdir the unit's cgroups when empty; False (and nothing removed) if busy."""
        ok = True
        for ctrl, d in list(self._mirrors.items()):
            if _rmdir_tree(d):
                del self._mirrors[ctrl]
                self.manager.note_v1(ctrl, os.path.basename(d), False)
            else:
                ok = False
        return ok


class _V2UnitCgroup(UnitCgroup):
    def __init__(self, manager: CgroupManager, name: str, path: str) -> None:
        super().__init__(manager, name, path)
        # the directory is created by ensure() before each spawn (or by set_limits);
        # adopt v1 mirrors left by an earlier object for the same unit
        self._mirrors.update(manager.v1_mirrors(cg_escape(name)))

    def ensure(self) -> None:
        if not os.path.isdir(self.path):
            os.makedirs(self.path, exist_ok=True)

    def join_paths(self) -> list[str]:
        return [os.path.join(self.path, "cgroup.procs"), *super().join_paths()]

    def _walk(self) -> Iterator[str]:
        stack = [self.path]
        while stack:
            d = stack.pop()
            yield d
            try:
                with os.scandir(d) as it:
                    for e in it:
                        if e.is_dir(follow_symlinks=False):
                            stack.append(e.path)
            except OSError:
                continue

    def pids(self) -> list[int]:
        out: list[int] = []
        for d in self._walk():
            out.extend(_read_procs(os.path.join(d, "cgroup.procs")))
        return sorted(out)

    def populated(self) -> bool:
        text = _read(os.path.join(self.path, "cgroup.events"))
        if text is None:
            return False
        return _events_populated(text)

    async def wait_empty(self, timeout: float | None = None) -> bool:
        """Wait until no process is left (``populated 0``); False on timeout.

        Polls ``cgroup.events`` with a short back-off (5 ms growing to 50 ms).
        An epoll on its POLLPRI notification looked cheaper, but kernfs keeps
        the fd readable once notified, which made the event loop spin; a
        poll every 50 ms at worst is cheap and cannot starve the loop.
        """
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        path = os.path.join(self.path, "cgroup.events")
        step = 0.005
        while True:
            text = _read(path)
            if text is None or not _events_populated(text):
                return True
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                return False
            await asyncio.sleep(step if remaining is None else min(step, remaining))
            step = min(step * 2, 0.05)

    def signal_all(self, sig: int) -> int:
        found = self.pids()
        if sig == signal.SIGKILL:
            kill_file = os.path.join(self.path, "cgroup.kill")
            try:
                _write(kill_file, "1")
                return len(found)
            except FileNotFoundError:
                if not os.path.isdir(self.path):
                    return 0
            except OSError as exc:
                log.debug("%s: cgroup.kill failed (%s); freezing instead", self.name, exc)
            self._freeze_kill()
            return len(found)
        for pid in found:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        return len(found)

    def _freeze_kill(self) -> None:
        """Kernels before 5.14: freeze, SIGKILL everyone, thaw, until empty."""
        freeze = os.path.join(self.path, "cgroup.freeze")
        can_freeze = os.path.exists(freeze)
        for _ in range(_KILL_ROUNDS):
            if can_freeze:
                with contextlib.suppress(OSError):
                    _write(freeze, "1")
                    for _ in range(100):  # wait (≤ 0.1 s) for "frozen 1"
                        text = _read(os.path.join(self.path, "cgroup.events")) or ""
                        if "frozen 1" in text:
                            break
                        time.sleep(0.001)
            members = self.pids()
            for pid in members:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            if can_freeze:
                with contextlib.suppress(OSError):
                    _write(freeze, "0")
            if not members:
                return

    def _v2_native(self) -> frozenset[str]:
        return self.manager._v2_controllers & {"memory", "pids", "cpu"}

    def _set_v2_limit(self, ctrl: str, value: int | float | None) -> None:
        # enable the controller for the unit level (may fail with EBUSY when
        # our own cgroup holds processes and is not the root: then use v1)
        root = self.manager.path
        assert root is not None
        parent = os.path.dirname(root)
        for d in (parent, root):
            sub = _read(os.path.join(d, "cgroup.subtree_control")) or ""
            if ctrl not in sub.split():
                _write(os.path.join(d, "cgroup.subtree_control"), "+" + ctrl)
        if ctrl == "memory":
            _write(os.path.join(self.path, "memory.max"),
                   "max" if value is None else str(int(value)))
        elif ctrl == "pids":
            _write(os.path.join(self.path, "pids.max"),
                   "max" if value is None else str(int(value)))
        else:
            quota = "max" if value is None else str(
                max(1000, round(float(value) * _CPU_PERIOD_US / 100)))
            _write(os.path.join(self.path, "cpu.max"), f"{quota} {_CPU_PERIOD_US}")

    def memory_current(self) -> int | None:
        text = _read(os.path.join(self.path, "memory.current"))
        if text:
            return int(text)
        return super().memory_current()

    def tasks_current(self) -> int:
        text = _read(os.path.join(self.path, "pids.current"))
        if text:
            return int(text)
        return super().tasks_current()

    def remove(self) -> bool:
        if self.populated():
            return False
        ok = super().remove()
        return _rmdir_tree(self.path) and ok


def _pread_all(fd: int) -> str:
    os.lseek(fd, 0, os.SEEK_SET)
    return os.read(fd, 4096).decode("ascii", "replace")


def _events_populated(text: str) -> bool:
    for line in text.splitlines():
        if line.startswith("populated "):
            return line.split()[1] != "0"
    return False


class _ProcUnitCgroup(UnitCgroup):
    def __init__(self, manager: CgroupManager, name: str, esc: str, token: str,
                 tracker: _ProcTracker) -> None:
        super().__init__(manager, name, f"subreaper:{manager.root_name}/{esc}")
        self.token = token
        self._tracker = tracker
        self._roots: set[tuple[int, int]] = set()
        self._kill_pending = False
        tracker.units.add(self)
        self._mirrors.update(manager.v1_mirrors(esc))

    def extra_env(self) -> dict[str, str]:
        return {MARKER_ENV: self.token}

    def attach(self, pid: int) -> None:
        self._tracker.units.add(self)  # again, if remove() dropped it
        st = read_stat(pid)
        if st is not None:
            self._roots.add((pid, st.start))
            self._tracker.taken = -1.0  # the next query must see it

    def _members(self, max_age: float) -> list[int]:
        owner = self._tracker.snapshot(max_age)
        return sorted(pid for pid, u in owner.items() if u is self)

    def pids(self) -> list[int]:
        return self._members(0)

    def populated(self) -> bool:
        return bool(self._members(_SNAPSHOT_TTL))

    async def wait_empty(self, timeout: float | None = None) -> bool:
        """Wait on pidfds of the current members, then rescan (they may have forked).

        Snapshots are shared between units (≤ 50 ms old), so a mass stop
        does not scan /proc once per unit; "empty" is only believed from a
        snapshot taken after the last member was seen.  After
        :meth:`signal_all` with SIGKILL, members found here (forked after
        that snapshot) are killed too.
        """
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        last_seen = -1.0  # a snapshot without members is believed if newer than this
        while True:
            members = self._members(_SNAPSHOT_TTL)
            if members:
                last_seen = time.monotonic()
                if self._kill_pending:
                    self._kill(members, signal.SIGKILL)
            elif self._tracker.taken > last_seen:
                self._kill_pending = False
                return True
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                return False
            wait = 0.5 if remaining is None else min(0.5, remaining)
            if not members or not await _wait_pidfds(loop, members, wait):
                # nothing to wait on: let the shared snapshot age out
                age = time.monotonic() - self._tracker.taken
                await asyncio.sleep(min(wait, max(0.001, _SNAPSHOT_TTL - age)))

    @staticmethod
    def _kill(pids: Iterable[int], sig: int) -> None:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def signal_all(self, sig: int) -> int:
        """Signal the members of a ≤ 50 ms old snapshot (shared by all units).

        With SIGKILL the unit is marked so that :meth:`wait_empty` kills any
        member it still finds (forked after the snapshot) until the unit is
        empty: kill with SIGKILL, then ``await wait_empty()``.  A rescan per
        unit here would cost a /proc walk per unit (10 s for 1,000 units).
        """
        members = self._members(_SNAPSHOT_TTL)
        self._kill(members, sig)
        if sig == signal.SIGKILL:
            self._kill_pending = True
        return len(members)

    def remove(self) -> bool:
        if self._members(0):
            return False
        self._tracker.units.discard(self)
        return super().remove()


async def _wait_pidfds(loop: asyncio.AbstractEventLoop, pids: Iterable[int],
                       timeout: float) -> bool:
    """Sleep until every one of ``pids`` has exited, or ``timeout``.

    Returns False at once if none of them is alive any more.
    """
    fds: list[int] = []
    pending = 0
    done = loop.create_future()

    def fired(fd: int) -> None:
        nonlocal pending
        loop.remove_reader(fd)
        pending -= 1
        if pending == 0 and not done.done():
            done.set_result(None)

    try:
        for pid in pids:
            try:
                fd = os.pidfd_open(pid)
            except OSError:
                continue
            fds.append(fd)
            pending += 1
            loop.add_reader(fd, fired, fd)
        if pending == 0:
            return False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done, timeout)
        return True
    finally:
        for fd in fds:
            with contextlib.suppress(Exception):
                loop.remove_reader(fd)
            os.close(fd)
