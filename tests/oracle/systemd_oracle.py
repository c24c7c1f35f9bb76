"""Run the real systemd (``systemd --test --user``) on unit files and read its dump back.

systemd refuses ``--test --user`` as root, so when the tests run as root the manager is
started as ``nobody`` (``subprocess`` ``user=``/``group=``/``extra_groups=[]``); as any other
user it is started directly.  All probe units go into one private directory that is the
*only* unit search path (no trailing ``:``, so the host's user units are not loaded), and a
generated target ``Wants=`` every probe, so one manager run loads and dumps all of them.

What systemd prints, and how it is read back here (systemd 252):

* stderr: per-file messages ``/dir/units/NAME:LINE: message`` (``log_syntax``) and per-unit
  messages ``NAME: message`` (``log_unit_*``, e.g. "Service has more than one ExecStart=
  setting ... Refusing.").  Note that systemd stops reading a unit file at the first fatal
  line (an ``Exec*=`` that fails to parse without ``-``), so later lines are never warned
  about.
* stdout: ``-> By units:`` then per unit ``\\t-> Unit NAME:`` and tab-indented ``Key: value``
  lines; values are printed raw (an ``Environment=`` value containing a newline continues on
  an un-indented line).  Commands are printed under ``\\t\\t-> ExecStart:`` as
  ``\\t\\t\\tCommand Line: ARGV`` where ARGV is ``quote_command_line()``: each argument is
  printed bare unless it is empty or contains whitespace, a control character, invalid
  UTF-8 or one of ``"\\`$*?[]'()<>|&;!``; then it is wrapped in ``"..."`` with ``"``,
  ``\\``, `````` ` `````` and ``$`` backslash-escaped and control characters / invalid UTF-8
  bytes C-escaped (``\\n \\t \\r \\a \\b \\f \\v``, otherwise ``\\NNN`` octal).  Only argv is
  shown: the executable path (it differs from argv[0] with ``@``) and the prefixes ``-@:+!``
  are not part of the dump.  ``EnvironmentFile=`` shows ignore-missing as a ``-`` prefix.
* Dependencies are printed as ``Wants: other.target (origin-file ...)``; only entries with
  ``origin-file`` come from the unit file (``origin-default``/``origin-implicit`` and
  ``destination-*`` are added by the manager).
* Time spans use ``format_timespan(…, USEC_PER_SEC)``: once a whole second has been printed
  the sub-second remainder is dropped (``1.5`` -> ``1s``, ``500ms`` stays ``500ms``).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "BASELINE_UNIT",
    "DEPENDENCY_KEYS",
    "EXEC_KEYS",
    "LIMIT_NAMES",
    "FileMessage",
    "OracleError",
    "OracleResult",
    "OracleUnit",
    "find_systemd",
    "run_oracle",
    "split_command_line",
]

SYSTEMD_CANDIDATES = ("/lib/systemd/systemd", "/usr/lib/systemd/systemd")
PROBE_TARGET = "flotte-oracle-probe.target"
# A unit with nothing but ExecStart=: shows the defaults the user manager fills in
# (inherited resource limits, working directory = $HOME).
BASELINE_UNIT = "flotte-oracle-baseline.service"
BASELINE_TEXT = "[Service]\nExecStart=/bin/true\n"

EXEC_KEYS = (
    "ExecCondition",
    "ExecStartPre",
    "ExecStart",
    "ExecStartPost",
    "ExecReload",
    "ExecStop",
    "ExecStopPost",
)
DEPENDENCY_KEYS = (
    "Wants",
    "Requires",
    "Requisite",
    "BindsTo",
    "PartOf",
    "Conflicts",
    "Before",
    "After",
)
LIMIT_NAMES = (
    "CPU",
    "FSIZE",
    "DATA",
    "STACK",
    "CORE",
    "RSS",
    "NOFILE",
    "AS",
    "NPROC",
    "MEMLOCK",
    "LOCKS",
    "SIGPENDING",
    "MSGQUEUE",
    "NICE",
    "RTPRIO",
    "RTTIME",
)


class OracleError(RuntimeError):
    """systemd could not be run or its output could not be understood."""


@dataclass(frozen=True)
class FileMessage:
    """One ``/path/FILE:LINE: message`` line of systemd's log."""

    file: str
    line: int
    message: str


@dataclass
class OracleUnit:
    """The dump of one unit."""

    name: str
    load_state: str = ""
    # Every ``Key: value`` line of the unit's own block, in order (repeated keys kept).
    fields: dict[str, list[str]] = field(default_factory=dict)
    # ``ExecStart`` -> list of argv lists (``Command Line:`` un-quoted).
    exec_commands: dict[str, list[list[str]]] = field(default_factory=dict)
    # ``Wants`` -> names with ``origin-file`` in their origin list.
    dependencies: dict[str, list[str]] = field(default_factory=dict)
    # ``(ConditionPathExists, "|!/tmp")`` in dump order (systemd prepends, so reversed).
    conditions: list[tuple[str, str]] = field(default_factory=list)
    raw: str = ""

    def get(self, key: str) -> str | None:
        """Last value of a ``Key: value`` line, or None when the dump has no such line."""
        values = self.fields.get(key)
        return values[-1] if values else None

    def get_all(self, key: str) -> list[str]:
        return list(self.fields.get(key, ()))

    @property
    def environment(self) -> list[str]:
        return self.get_all("Environment")

    @property
    def environment_files(self) -> list[str]:
        return self.get_all("EnvironmentFile")

    @property
    def slice(self) -> str | None:
        return self.get("Slice")

    def limit(self, name: str) -> tuple[int, int] | None:
        """``(soft, hard)`` for ``Limit<name>``, or None when not in the dump."""
        hard = self.get(f"Limit{name}")
        soft = self.get(f"Limit{name}Soft")
        if hard is None or soft is None:
            return None
        return int(soft), int(hard)

    def deps(self, key: str) -> set[str]:
        return set(self.dependencies.get(key, ()))


@dataclass
class OracleResult:
    units: dict[str, OracleUnit]
    # keyed by unit *file* name (an instance's messages are filed under its template)
    file_messages: dict[str, list[FileMessage]]
    # ``NAME: message`` lines, keyed by unit name
    unit_messages: dict[str, list[str]]
    home: str
    baseline: OracleUnit
    stdout: str
    stderr: str
    returncode: int
    duration: float
    unparsed_stderr: list[str] = field(default_factory=list)

    def lines_warned(self, file_name: str) -> set[int]:
        return {m.line for m in self.file_messages.get(file_name, ())}

    def messages_for(self, file_name: str) -> list[FileMessage]:
        return list(self.file_messages.get(file_name, ()))


def find_systemd() -> str | None:
    for candidate in SYSTEMD_CANDIDATES:
        if os.access(candidate, os.X_OK):
            return candidate
    return None


# ---------------------------------------------------------------------------
# Command Line: un-quoting


_SIMPLE_ESCAPES = {
    "a": 0x07,
    "b": 0x08,
    "f": 0x0C,
    "n": 0x0A,
    "r": 0x0D,
    "t": 0x09,
    "v": 0x0B,
}


def split_command_line(text: str) -> list[str]:
    """Invert systemd's ``quote_command_line(argv, SHELL_ESCAPE_EMPTY)``.

    ``text`` is the dump line decoded as UTF-8 with ``surrogateescape``; the result uses the
    same convention for bytes that are not valid UTF-8 (``\\377`` -> ``"\\udcff"``).
    """
    args: list[str] = []
    i, n = 0, len(text)
    while i < n:
        if text[i] == " ":
            i += 1
            continue
        buf = bytearray()
        while i < n and text[i] != " ":
            ch = text[i]
            if ch != '"':
                buf += ch.encode("utf-8", "surrogateescape")
                i += 1
                continue
            i += 1  # opening quote
            while True:
                if i >= n:
                    raise OracleError(f"unterminated quote in Command Line: {text!r}")
                ch = text[i]
                if ch == '"':
                    i += 1
                    break
                if ch != "\\":
                    buf += ch.encode("utf-8", "surrogateescape")
                    i += 1
                    continue
                if i + 1 >= n:
                    raise OracleError(f"dangling backslash in Command Line: {text!r}")
                esc = text[i + 1]
                if esc in _SIMPLE_ESCAPES:
                    buf.append(_SIMPLE_ESCAPES[esc])
                    i += 2
                elif esc in "01234567":
                    digits = text[i + 1 : i + 4]
                    if len(digits) != 3 or any(c not in "01234567" for c in digits):
                        raise OracleError(f"bad octal escape in Command Line: {text!r}")
                    buf.append(int(digits, 8) & 0xFF)
                    i += 4
                elif esc == "x":
                    buf.append(int(text[i + 2 : i + 4], 16))
                    i += 4
                else:  # \\ \" \` \$ (and anything else: the character itself)
                    buf += esc.encode("utf-8", "surrogateescape")
                    i += 2
        args.append(buf.decode("utf-8", "surrogateescape"))
    return args


# ---------------------------------------------------------------------------
# dump parsing


def _parse_dump(stdout: str) -> dict[str, OracleUnit]:
    units: dict[str, OracleUnit] = {}
    unit: OracleUnit | None = None
    raw_lines: list[str] = []
    exec_key: str | None = None  # inside "\t\t-> ExecX:"
    in_job = False  # inside "\t\t-> Job N:" (skip)
    last_key: str | None = None  # for values continued on un-indented lines

    def finish() -> None:
        if unit is not None:
            unit.raw = "\n".join(raw_lines)

    for line in stdout.split("\n"):
        if line.startswith("-> "):  # "-> By units:" / "-> By jobs:"
            finish()
            unit = None
            raw_lines = []
            continue
        if line.startswith("\t-> Unit ") and line.endswith(":"):
            finish()
            name = line[len("\t-> Unit ") : -1]
            unit = OracleUnit(name=name)
            units[name] = unit
            raw_lines = [line]
            exec_key, in_job, last_key = None, False, None
            continue
        if unit is None:
            continue
        raw_lines.append(line)
        if line.startswith("\t\t\t"):
            if exec_key is not None and line.startswith("\t\t\tCommand Line: "):
                argv = split_command_line(line[len("\t\t\tCommand Line: ") :])
                unit.exec_commands.setdefault(exec_key, []).append(argv)
            last_key = None
            continue
        if line.startswith("\t\t-> "):
            header = line[len("\t\t-> ") :].rstrip(":")
            exec_key, in_job, last_key = None, False, None
            if header.startswith("Job "):
                in_job = True
            else:
                exec_key = header
            continue
        if line.startswith("\t\t"):
            exec_key, in_job = None, False
            body = line[2:]
            key, sep, value = body.partition(": ")
            if not sep:
                key, value = body.rstrip(":"), ""
            unit.fields.setdefault(key, []).append(value)
            last_key = key
            if key == "Unit Load State":
                unit.load_state = value
            elif key in DEPENDENCY_KEYS:
                target, _, origins = value.rpartition(" (")
                if "origin-file" in origins.rstrip(")").split():
                    unit.dependencies.setdefault(key, []).append(target)
            elif key.startswith(("Condition", "Assert")):
                if value.endswith(" untested"):
                    value = value[: -len(" untested")]
                unit.conditions.append((key, value))
            continue
        if line.startswith("\t"):
            continue
        # An un-indented line inside a unit block: a raw newline inside the previous value.
        if last_key is not None and not in_job:
            values = unit.fields[last_key]
            values[-1] = values[-1] + "\n" + line
    finish()
    return units


def _parse_stderr(
    stderr: str, units_dir: str, names: Iterable[str]
) -> tuple[dict[str, list[FileMessage]], dict[str, list[str]], list[str]]:
    prefix = units_dir.rstrip("/") + "/"
    # longest first, so that "a-b.service" is not taken for "a.service"-prefixed text
    name_list = sorted(set(names), key=len, reverse=True)
    file_messages: dict[str, list[FileMessage]] = {}
    unit_messages: dict[str, list[str]] = {}
    unparsed: list[str] = []
    last: tuple[str, str, int] | None = None  # ("file"|"unit", key, index)
    for line in stderr.split("\n"):
        if not line:
            continue
        if line.startswith(prefix):
            rest = line[len(prefix) :]
            # FILE:LINE: message -- unit names may contain ':' so scan for ":<digits>: "
            parsed = None
            pos = 0
            while True:
                colon = rest.find(":", pos)
                if colon < 0:
                    break
                j = colon + 1
                while j < len(rest) and rest[j].isdigit():
                    j += 1
                if j > colon + 1 and rest.startswith(": ", j) and "/" not in rest[:colon]:
                    parsed = (rest[:colon], int(rest[colon + 1 : j]), rest[j + 2 :])
                    break
                pos = colon + 1
            if parsed is not None:
                fname, lineno, msg = parsed
                lst = file_messages.setdefault(fname, [])
                lst.append(FileMessage(fname, lineno, msg))
                last = ("file", fname, len(lst) - 1)
                continue
        matched = False
        for name in name_list:
            if line.startswith(name + ": "):
                lst2 = unit_messages.setdefault(name, [])
                lst2.append(line[len(name) + 2 :])
                last = ("unit", name, len(lst2) - 1)
                matched = True
                break
        if matched:
            continue
        if line.startswith("Loaded units and determined initial transaction"):
            last = None
            continue
        # A message whose text contained a newline continues on the next line.
        if last is not None:
            kind, key, idx = last
            if kind == "file":
                old = file_messages[key][idx]
                file_messages[key][idx] = FileMessage(old.file, old.line, old.message + "\n" + line)
            else:
                unit_messages[key][idx] += "\n" + line
            continue
        unparsed.append(line)
    return file_messages, unit_messages, unparsed


# ---------------------------------------------------------------------------
# running


def _unprivileged_ids() -> tuple[int, int]:
    try:
        pw = pwd.getpwnam("nobody")
    except KeyError as exc:  # pragma: no cover - every Debian has nobody
        raise OracleError("running as root but there is no 'nobody' user to drop to") from exc
    return pw.pw_uid, pw.pw_gid


def run_oracle(
    units: Mapping[str, str],
    probes: Iterable[str] | None = None,
    *,
    systemd: str | None = None,
    timeout: float = 300.0,
    keep_dir: str | None = None,
) -> OracleResult:
    """Write ``units`` (file name -> text) into a private unit directory, run
    ``systemd --test --user`` once on all of them and parse what it prints.

    ``probes`` are the unit names to load (default: every file name that is not a template
    ``foo@.service``); instance names like ``foo@bar.service`` are loaded from their
    template file.  Files are written as UTF-8 exactly as given (no newline translation).
    """
    binary = systemd or find_systemd()
    if binary is None:
        raise OracleError("systemd binary not found (install Debian's 'systemd' package)")
    files = dict(units)
    if BASELINE_UNIT in files or PROBE_TARGET in files:
        raise OracleError(f"{BASELINE_UNIT} and {PROBE_TARGET} are reserved names")
    files[BASELINE_UNIT] = BASELINE_TEXT
    if probes is None:
        probe_names = [n for n in units if not n.endswith("@.service")]
    else:
        probe_names = list(probes)
    probe_names.append(BASELINE_UNIT)
    files[PROBE_TARGET] = "[Unit]\n" + "".join(f"Wants={n}\n" for n in probe_names)

    # As root the manager runs as "nobody", which must be able to reach the directory:
    # use /tmp rather than a $TMPDIR that may sit below a private home.
    tmp_parent = "/tmp" if os.geteuid() == 0 and os.path.isdir("/tmp") else None
    base = tempfile.mkdtemp(prefix="flotte-oracle-", dir=tmp_parent)
    try:
        root = Path(base)
        units_dir, rt_dir, home = root / "units", root / "rt", root / "home"
        for d in (units_dir, rt_dir, home):
            d.mkdir()
        for name, text in files.items():
            if "/" in name or name in ("", ".", ".."):
                raise OracleError(f"bad unit file name {name!r}")
            (units_dir / name).write_bytes(text.encode("utf-8"))

        env = {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": str(home),
            "SYSTEMD_UNIT_PATH": str(units_dir),
            "XDG_RUNTIME_DIR": str(rt_dir),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "SYSTEMD_LOG_COLOR": "0",
            "SYSTEMD_COLORS": "0",
            "SYSTEMD_LOG_LOCATION": "0",
            "SYSTEMD_LOG_TIME": "0",
            "SYSTEMD_LOG_TID": "0",
            "SYSTEMD_LOG_LEVEL": "info",
            "SYSTEMD_PAGER": "cat",
            "LANG": "C.UTF-8",
        }
        kwargs: dict = {}
        if os.geteuid() == 0:
            uid, gid = _unprivileged_ids()
            os.chmod(root, 0o755)
            os.chmod(units_dir, 0o755)
            for p in (rt_dir, home):
                os.chown(p, uid, gid)
                os.chmod(p, 0o700)
            for p in units_dir.iterdir():
                os.chmod(p, 0o644)
            kwargs = {"user": uid, "group": gid, "extra_groups": []}
        cmd = [binary, "--test", "--user", f"--unit={PROBE_TARGET}", "--no-pager"]
        start = time.monotonic()
        proc = subprocess.run(
            cmd,
            env=env,
            cwd=str(root),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            check=False,
            **kwargs,
        )
        duration = time.monotonic() - start
        stdout = proc.stdout.decode("utf-8", "surrogateescape")
        stderr = proc.stderr.decode("utf-8", "surrogateescape")
        if proc.returncode != 0 or "-> By units:" not in stdout:
            raise OracleError(
                f"{' '.join(cmd)} exited with {proc.returncode}\nstderr:\n{stderr[-4000:]}"
            )
        dumped = _parse_dump(stdout)
        file_messages, unit_messages, unparsed = _parse_stderr(
            stderr, str(units_dir), list(dumped) + probe_names
        )
        if BASELINE_UNIT not in dumped:
            raise OracleError("the baseline unit is missing from systemd's dump")
        missing = [n for n in probe_names if n not in dumped]
        if missing:
            raise OracleError(f"units missing from systemd's dump: {missing[:10]}")
        if keep_dir:
            shutil.copytree(units_dir, keep_dir, dirs_exist_ok=True)
            Path(keep_dir, "stdout.txt").write_text(stdout, errors="surrogateescape")
            Path(keep_dir, "stderr.txt").write_text(stderr, errors="surrogateescape")
        return OracleResult(
            units=dumped,
            file_messages=file_messages,
            unit_messages=unit_messages,
            home=str(home),
            baseline=dumped[BASELINE_UNIT],
            stdout=stdout,
            stderr=stderr,
            returncode=proc.returncode,
            duration=duration,
            unparsed_stderr=unparsed,
        )
    finally:
        shutil.rmtree(base, ignore_errors=True)
