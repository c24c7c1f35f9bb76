"""``Condition*=`` and ``Assert*=`` checks (systemd.md §3.2).

Evaluated when a start job runs.  Plain conditions must all hold (AND);
those written with ``|`` are "triggering": if there are any, at least one of
them must hold (OR).  ``!`` negates.  A failing condition skips the start
silently (the unit stays inactive, not failed); a failing assert fails the
start job loudly.  The host facts come from a :class:`Host` object so the
rules can be tested without touching the machine.
"""

from __future__ import annotations

import fnmatch
import glob
import os
import platform
import pwd
import re
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from flotte.unit.loader import Condition


@dataclass
class Host:
    """What conditions may ask about the machine (defaults: this machine)."""

    hostname: str = field(default_factory=socket.gethostname)
    machine_id: str = ""
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    architecture: str = field(default_factory=lambda: _arch(platform.machine()))
    kernel_release: str = field(default_factory=lambda: os.uname().release)
    user: str = field(default_factory=lambda: pwd.getpwuid(os.getuid()).pw_name)
    uid: int = field(default_factory=os.getuid)
    memory_bytes: int = field(default_factory=lambda: _meminfo())
    cpus: int = field(default_factory=lambda: len(os.sched_getaffinity(0)))


def _arch(machine: str) -> str:
    return {"x86_64": "x86-64", "aarch64": "arm64", "i686": "x86", "armv7l": "arm"}.get(
        machine, machine)


def _meminfo() -> int:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


_CMP = re.compile(r"\s*(<=|>=|!=|<|>|=)?\s*(.+)")


def _compare(have: float, expr: str) -> bool:
    m = _CMP.match(expr)
    if not m:
        return False
    op, raw = m.group(1) or "=", m.group(2).strip()
    try:
        from flotte.unit.values import parse_bytes

        want = float(parse_bytes(raw)) if raw[-1:].isalpha() else float(raw)
    except Exception:
        return False
    return {"<": have < want, "<=": have <= want, "=": have == want, "!=": have != want,
            ">=": have >= want, ">": have > want}[op]


def _dir_not_empty(p: str) -> bool:
    try:
        return os.path.isdir(p) and any(os.scandir(p))
    except OSError:
        return False


def _checks(host: Host) -> dict[str, Callable[[str], bool]]:
    return {
        "PathExists": os.path.exists,
        "PathExistsGlob": lambda v: bool(glob.glob(v)),
        "PathIsDirectory": os.path.isdir,
        "PathIsSymbolicLink": os.path.islink,
        "PathIsMountPoint": os.path.ismount,
        "PathIsReadWrite": lambda v: os.path.exists(v) and os.access(v, os.W_OK),
        "DirectoryNotEmpty": _dir_not_empty,
        "FileNotEmpty": lambda v: os.path.isfile(v) and os.path.getsize(v) > 0,
        "FileIsExecutable": lambda v: os.path.isfile(v) and os.access(v, os.X_OK),
        "Host": lambda v: fnmatch.fnmatchcase(host.hostname, v) or v == host.machine_id,
        "Environment": lambda v: (f"{v.split('=', 1)[0]}={host.environ.get(v.split('=')[0])}"
                                  == v) if "=" in v else v in host.environ,
        "Architecture": lambda v: v in (host.architecture, "native"),
        "User": lambda v: v in (host.user, str(host.uid)) or (v == "@system" and host.uid < 1000),
        "Memory": lambda v: _compare(host.memory_bytes, v),
        "CPUs": lambda v: _compare(host.cpus, v),
        "KernelVersion": lambda v: _kernel(host.kernel_release, v),
    }


def _kernel(release: str, expr: str) -> bool:
    m = _CMP.match(expr)
    if not m or not m.group(1):
        return fnmatch.fnmatchcase(release, expr.strip())
    want = m.group(2).strip()

    def key(s: str) -> list[int]:
        return [int(x) for x in re.findall(r"\d+", s)[:3]]

    a, b = key(release), key(want)
    return {"<": a < b, "<=": a <= b, "=": a == b, "!=": a != b, ">=": a >= b,
            ">": a > b}[m.group(1)]


@dataclass(frozen=True)
class Verdict:
    ok: bool
    failed: Condition | None = None  # the first plain condition that failed
    unsupported: tuple[str, ...] = ()


def evaluate(conditions: Iterable[Condition], host: Host | None = None) -> Verdict:
    """Evaluate conditions (or asserts: pass only those) the way systemd does."""
    checks = _checks(host or Host())
    triggers: list[bool] = []
    unsupported: list[str] = []
    for c in conditions:
        kind = c.key.removeprefix("Condition").removeprefix("Assert")
        check = checks.get(kind)
        if check is None:
            unsupported.append(c.key)
            continue
        ok = bool(check(c.value)) != c.negate
        if c.trigger:
            triggers.append(ok)
        elif not ok:
            return Verdict(False, c, tuple(unsupported))
    if triggers and not any(triggers):
        return Verdict(False, None, tuple(unsupported))
    return Verdict(True, None, tuple(unsupported))
