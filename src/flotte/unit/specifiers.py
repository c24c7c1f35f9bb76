"""systemd specifiers (``%n``, ``%i``, ``%H`` …) as expanded when a unit loads.

Semantics follow ``specifier_printf`` (``src/shared/specifier.c``) and the
unit table in ``src/core/unit-printf.c`` (systemd.md §2.3):

* ``%%`` is a literal ``%``.
* ``%`` followed by a character that is not an ASCII letter or digit (``%,``,
  ``%é``) and a lone trailing ``%`` are kept literally.
* ``%`` followed by an ASCII letter *or digit* that has no meaning is an
  error: systemd's pool of "possible specifiers" is ``ALPHANUMERICAL "%"``,
  so ``%5`` fails just like ``%z`` ("Invalid slot", checked against systemd
  252).  In ``Exec*=`` lines that makes the unit fail to load; elsewhere the
  assignment is dropped — the caller decides, we only raise.

Host facts (host name, machine ID, the manager's user, directories) come
from a :class:`SpecifierContext`.  Its defaults describe a system manager on
an anonymous host, so expansion is deterministic in tests;
:meth:`SpecifierContext.from_host` reads the real machine and is the only
place in this module that does I/O.

Note the traps systemd users hit (systemd.md §8, rule 19): ``%u %h %g %s``
describe the *manager's* user (``root`` for the system manager), never
``User=``; and ``%I %P %J %f`` unescape ``-`` to ``/``.
"""

from __future__ import annotations

import os
import platform
import posixpath
import re
import shlex
import socket
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property, lru_cache

from flotte.unit import names
from flotte.unit.errors import ValueParseError

__all__ = [
    "INSTALL_ALLOWED",
    "KNOWN_SPECIFIERS",
    "SpecifierContext",
    "SpecifierError",
    "expand",
]

#: Specifiers ``[Install]`` settings accept (systemd.unit(5)); ``%%`` always works.
INSTALL_ALLOWED = "abBgGHijlmnNopuUvwW%"

_NAME_SPECIFIERS = "iIjJnNpPf"
_HOST_SPECIFIERS = "aAbBCEgGhHlLmMoqsStTuUvVwW"
#: Every specifier :func:`expand` knows.
KNOWN_SPECIFIERS = _NAME_SPECIFIERS + _HOST_SPECIFIERS + "dyY"

_ZERO_ID = "0" * 32

_FIX_LITERAL = "write %% for a literal percent sign"


class SpecifierError(ValueParseError):
    """A ``%`` specifier is unknown, not allowed in this setting, or cannot be resolved.

    ``text`` is the value being expanded and ``specifier`` the letter (or
    digit) at fault.
    """

    def __init__(
        self,
        message: str,
        fix: str | None = None,
        *,
        text: str = "",
        specifier: str = "",
    ) -> None:
        super().__init__(message, fix)
        self.text = text
        self.specifier = specifier


@dataclass(frozen=True)
class SpecifierContext:
    """Everything host-dependent that specifiers can expand to.

    Defaults are those of systemd's *system* manager (``root``, ``/run``,
    ``/var/lib`` …) on an unnamed host with all-zero IDs, and empty strings for
    facts that cannot be guessed (architecture, kernel, os-release fields —
    systemd also expands a missing os-release field to nothing).

    ``pretty_hostname`` of ``None`` falls back to the short host name, as
    systemd does when ``/etc/machine-info`` has no ``PRETTY_HOSTNAME``.
    ``credentials_dir`` is the *root* of the credential tree; ``%d`` is
    ``<credentials_dir>/<unit name>`` (systemd:
    ``<runtime dir>/credentials/<unit>``).
    """

    machine_id: str = _ZERO_ID
    boot_id: str = _ZERO_ID
    hostname: str = "localhost"
    pretty_hostname: str | None = None
    user: str = "root"
    uid: int = 0
    group: str = "root"
    gid: int = 0
    home: str = "/root"
    shell: str = "/bin/sh"
    runtime_dir: str = "/run"
    state_dir: str = "/var/lib"
    cache_dir: str = "/var/cache"
    logs_dir: str = "/var/log"
    config_dir: str = "/etc"
    tmp_dir: str = "/tmp"
    var_tmp_dir: str = "/var/tmp"
    credentials_dir: str = "/run/credentials"
    architecture: str = ""
    kernel_release: str = ""
    os_id: str = ""
    os_version_id: str = ""
    os_variant_id: str = ""
    os_build_id: str = ""
    os_image_id: str = ""
    os_image_version: str = ""

    @property
    def short_hostname(self) -> str:
        """``%l``: the host name up to the first dot."""
        return self.hostname.split(".", 1)[0]

    @cached_property
    def _table(self) -> dict[str, str]:
        """Letter → value for the host specifiers, built once per context."""
        short = self.short_hostname
        return {
            "a": self.architecture,
            "A": self.os_image_version,
            "b": self.boot_id,
            "B": self.os_build_id,
            "C": self.cache_dir,
            "E": self.config_dir,
            "g": self.group,
            "G": str(self.gid),
            "h": self.home,
            "H": self.hostname,
            "l": short,
            "L": self.logs_dir,
            "m": self.machine_id,
            "M": self.os_image_id,
            "o": self.os_id,
            "q": self.pretty_hostname if self.pretty_hostname else short,
            "s": self.shell,
            "S": self.state_dir,
            "t": self.runtime_dir,
            "T": self.tmp_dir,
            "u": self.user,
            "U": str(self.uid),
            "v": self.kernel_release,
            "V": self.var_tmp_dir,
            "w": self.os_version_id,
            "W": self.os_variant_id,
        }

    @classmethod
    def from_host(cls, *, system: bool = True) -> SpecifierContext:
        """Describe this machine as systemd's system (or, with ``system=False``, user) manager would.

        Reads ``/etc/machine-id``, the kernel boot ID, the host name,
        ``/etc/machine-info`` (pretty host name), ``os-release``, ``uname``
        and the user database.  Anything missing keeps the default rather
        than failing, so a minimal container still gets a usable context.

        System manager: user ``root``/0, home ``/root``, root's shell, and
        the FHS directories.  User manager (systemd.exec(5) table, 257): the
        calling user, ``$HOME``/``$SHELL`` falling back to the user database,
        ``$XDG_RUNTIME_DIR`` (``/run/user/UID``), ``$XDG_STATE_HOME``
        (``~/.local/state``; systemd ≤ 253 used ``$XDG_CONFIG_HOME``),
        ``$XDG_CACHE_HOME``, ``$XDG_STATE_HOME/log`` and ``$XDG_CONFIG_HOME``.
        ``%T``/``%V`` honour ``$TMPDIR``, ``$TEMP``, ``$TMP`` in both modes.
        """
        env = os.environ
        machine_id = _read_id128("/etc/machine-id") or _ZERO_ID
        boot_id = _read_id128("/proc/sys/kernel/random/boot_id") or _ZERO_ID
        hostname = socket.gethostname() or "localhost"
        pretty = _read_env_file("/etc/machine-info").get("PRETTY_HOSTNAME") or None
        os_release = _read_env_file("/etc/os-release") or _read_env_file("/usr/lib/os-release")
        tmp = _tmp_from_env(env)

        if system:
            shell = _passwd_shell(0) or "/bin/sh"
            user, uid, group, gid, home = "root", 0, "root", 0, "/root"
            dirs = {
                "runtime_dir": "/run",
                "state_dir": "/var/lib",
                "cache_dir": "/var/cache",
                "logs_dir": "/var/log",
                "config_dir": "/etc",
            }
        else:
            uid, gid = os.getuid(), os.getgid()
            user, pw_home, pw_shell = _passwd(uid)
            group = _group_name(gid)
            home = _abs(env.get("HOME")) or pw_home or "/"
            shell = _abs(env.get("SHELL")) or pw_shell or "/bin/sh"
            state = _abs(env.get("XDG_STATE_HOME")) or f"{home}/.local/state"
            dirs = {
                "runtime_dir": _abs(env.get("XDG_RUNTIME_DIR")) or f"/run/user/{uid}",
                "state_dir": state,
                "cache_dir": _abs(env.get("XDG_CACHE_HOME")) or f"{home}/.cache",
                "logs_dir": f"{state}/log",
                "config_dir": _abs(env.get("XDG_CONFIG_HOME")) or f"{home}/.config",
            }

        return cls(
            machine_id=machine_id,
            boot_id=boot_id,
            hostname=hostname,
            pretty_hostname=pretty,
            user=user,
            uid=uid,
            group=group,
            gid=gid,
            home=home,
            shell=shell,
            tmp_dir=tmp or "/tmp",
            var_tmp_dir=tmp or "/var/tmp",
            credentials_dir=dirs["runtime_dir"] + "/credentials",
            architecture=_architecture(platform.machine()),
            kernel_release=os.uname().release,
            os_id=os_release.get("ID", ""),
            os_version_id=os_release.get("VERSION_ID", ""),
            os_variant_id=os_release.get("VARIANT_ID", ""),
            os_build_id=os_release.get("BUILD_ID", ""),
            os_image_id=os_release.get("IMAGE_ID", ""),
            os_image_version=os_release.get("IMAGE_VERSION", ""),
            **dirs,
        )


_DEFAULT_CONTEXT = SpecifierContext()


# ----------------------------------------------------------------- name values


@lru_cache(maxsize=8192)
def _name_table(unit_name: str) -> dict[str, str | names.InvalidUnitName]:
    """The name-derived specifiers of *unit_name* (``unit-printf.c``).

    A value that cannot be computed (``%f`` of ``foo@a--b.service``: the
    instance is not a normalized escaped path) is stored as the exception, so
    it only fails when that specifier is actually used — as in systemd.
    """
    parts = names.split(unit_name)
    prefix = parts.prefix
    inst = parts.instance or ""
    dash = prefix.rfind("-")
    last = prefix[dash + 1 :] if dash != -1 else prefix
    table: dict[str, str | names.InvalidUnitName] = {
        "n": unit_name,
        "N": parts.stem,
        "p": prefix,
        "i": inst,
    }
    derived: tuple[tuple[str, Callable[[], str]], ...] = (
        ("P", lambda: names.unescape(prefix)),
        ("I", lambda: names.unescape(inst)),
        ("j", lambda: last),
        ("J", lambda: names.unescape(last)),
        # specifier_filename: path-unescape the instance if there is one, else the prefix.
        ("f", lambda: names.path_unescape(inst or prefix)),
    )
    for key, func in derived:
        try:
            table[key] = func()
        except names.InvalidUnitName as exc:
            table[key] = exc
    return table


# ------------------------------------------------------------------- expansion

_PERCENT_RE = re.compile(r"%(.?)", re.DOTALL)


def errno_text(exc: ValueParseError) -> str:
    """The errno text systemd appends to a specifier failure.

    An unknown (or disallowed) specifier is ``EBADSLT`` ("Invalid slot");
    one that exists but cannot be resolved for this unit (``%I`` of an
    instance that is not a valid escaped path) is ``EINVAL``.
    """
    if isinstance(exc, SpecifierError) and ("unknown specifier" in exc.message
                                            or "not allowed" in exc.message):
        return "Invalid slot"
    return "Invalid argument" if isinstance(exc, SpecifierError) else "Invalid slot"


def _error(text: str, spec: str, what: str, fix: str) -> SpecifierError:
    return SpecifierError(
        f'Failed to resolve unit specifiers in "{text}": {what}',
        fix,
        text=text,
        specifier=spec,
    )


def expand(
    text: str,
    unit_name: str,
    ctx: SpecifierContext | None = None,
    *,
    allowed: str | None = None,
    fragment_path: str | None = None,
) -> str:
    """Expand the specifiers in *text* for the unit *unit_name*.

    *allowed* restricts the letters accepted (e.g. :data:`INSTALL_ALLOWED`
    for ``[Install]``, ``"nNpi"`` for fleet's ``[X-Fleet]`` subset); ``%%``
    is always accepted.  *fragment_path* is the unit file's path for ``%y``
    (``%Y`` is its directory); systemd resolves symlinks first, so pass the
    real path.  Raises :class:`SpecifierError`.

    Runs for every setting of every unit, so text without ``%`` returns at
    once and the rest is a single regex scan.
    """
    if "%" not in text:
        return text
    if ctx is None:
        ctx = _DEFAULT_CONTEXT
    host = ctx._table
    name_table: dict[str, str | names.InvalidUnitName] | None = None
    out: list[str] = []
    pos = 0
    for m in _PERCENT_RE.finditer(text):
        out.append(text[pos : m.start()])
        pos = m.end()
        c = m.group(1)
        if c == "%":
            out.append("%")
            continue
        if not (c.isascii() and c.isalnum()):
            out.append(m.group(0))  # '%,' or a trailing '%': kept literally
            continue
        if c not in KNOWN_SPECIFIERS:
            raise _error(text, c, f"unknown specifier %{c}", _FIX_LITERAL)
        if allowed is not None and c not in allowed:
            listed = " ".join("%" + a for a in allowed if a != "%")
            raise _error(
                text,
                c,
                f"specifier %{c} is not allowed here",
                f"this setting accepts only {listed}; {_FIX_LITERAL}",
            )
        value = host.get(c)
        if value is None:
            if c in _NAME_SPECIFIERS:
                if name_table is None:
                    try:
                        name_table = _name_table(unit_name)
                    except names.InvalidUnitName as exc:
                        raise _error(
                            text, c, f"%{c} needs a valid unit name: {exc.message}", exc.fix or ""
                        ) from exc
                got = name_table[c]
                if isinstance(got, names.InvalidUnitName):
                    raise _error(
                        text,
                        c,
                        f"%{c} cannot be resolved for unit {unit_name!r}: {got.message}",
                        "use %i (the raw instance) or give the unit an instance that is an "
                        "escaped absolute path (`flotte escape --path`)",
                    ) from got
                value = got
            elif c == "d":
                value = f"{ctx.credentials_dir}/{unit_name}"
            else:  # 'y' or 'Y'
                value = _fragment(text, c, fragment_path)
        out.append(value)
    out.append(text[pos:])
    return "".join(out)


def _fragment(text: str, c: str, fragment_path: str | None) -> str:
    if not fragment_path:
        raise _error(
            text,
            c,
            f"%{c} needs the unit's file path, and this unit has none",
            "only use %y/%Y in units loaded from a file",
        )
    if c == "y":
        return fragment_path
    directory = posixpath.dirname(fragment_path.rstrip("/"))
    if not directory:
        raise _error(
            text,
            c,
            f"%Y needs a directory, but the unit's path {fragment_path!r} has none",
            "load the unit by absolute path",
        )
    return directory


# ------------------------------------------------------------------ host reads


def _read_text(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def _read_id128(path: str) -> str | None:
    """An ID in systemd's ``%m``/``%b`` format: 32 lower-case hex digits, no dashes."""
    raw = _read_text(path)
    if raw is None:
        return None
    value = raw.strip().replace("-", "").lower()
    if len(value) == 32 and all(ch in "0123456789abcdef" for ch in value):
        return value
    return None


def _read_env_file(path: str) -> dict[str, str]:
    """Parse an os-release style ``KEY=value`` file (shell quoting, ``#`` comments)."""
    raw = _read_text(path)
    out: dict[str, str] = {}
    if not raw:
        return out
    for line in raw.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        try:
            words = shlex.split(value, comments=False, posix=True)
            out[key.strip()] = " ".join(words)
        except ValueError:
            out[key.strip()] = value.strip()
    return out


def _abs(value: str | None) -> str | None:
    """systemd only honours environment directories that are absolute paths."""
    return value if value and value.startswith("/") else None


def _tmp_from_env(env: Mapping[str, str]) -> str | None:
    """``tmp_dir()``/``var_tmp_dir()``: the first absolute ``$TMPDIR``, ``$TEMP``, ``$TMP``."""
    for var in ("TMPDIR", "TEMP", "TMP"):
        value = _abs(env.get(var))
        if value:
            return value
    return None


def _passwd(uid: int) -> tuple[str, str | None, str | None]:
    try:
        import pwd

        entry = pwd.getpwuid(uid)
        return entry.pw_name, entry.pw_dir or None, entry.pw_shell or None
    except (ImportError, KeyError):
        return str(uid), None, None


def _passwd_shell(uid: int) -> str | None:
    return _passwd(uid)[2]


def _group_name(gid: int) -> str:
    try:
        import grp

        return grp.getgrgid(gid).gr_name
    except (ImportError, KeyError):
        return str(gid)


_ARCHITECTURES = {
    "x86_64": "x86-64",
    "amd64": "x86-64",
    "i386": "x86",
    "i486": "x86",
    "i586": "x86",
    "i686": "x86",
    "aarch64": "arm64",
    "arm64": "arm64",
    "aarch64_be": "arm64-be",
    "alpha": "alpha",
    "arc": "arc",
    "arceb": "arc-be",
    "cris": "cris",
    "ia64": "ia64",
    "loongarch64": "loongarch64",
    "m68k": "m68k",
    "nios2": "nios2",
    "parisc": "parisc",
    "parisc64": "parisc64",
    "ppc": "ppc",
    "ppcle": "ppc-le",
    "ppc64": "ppc64",
    "ppc64le": "ppc64-le",
    "riscv32": "riscv32",
    "riscv64": "riscv64",
    "s390": "s390",
    "s390x": "s390x",
    "sh5": "sh64",
    "sparc": "sparc",
    "sparc64": "sparc64",
    "tilegx": "tilegx",
}


def _architecture(machine: str) -> str:
    """Map ``uname -m`` to systemd's architecture names (``architecture.c``)."""
    m = machine.lower()
    if m in _ARCHITECTURES:
        return _ARCHITECTURES[m]
    if m.startswith("arm"):
        # armv7l, armv6l … are little-endian; a trailing 'b' marks big-endian.
        return "arm-be" if m.endswith("b") else "arm"
    if m.startswith("mips"):
        base = "mips64" if "64" in m else "mips"
        return base + "-le" if sys.byteorder == "little" else base
    if m.startswith("sh"):
        return "sh"
    return m
