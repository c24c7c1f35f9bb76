"""The typed option schema: which keys flotte understands and how to read them.

One :class:`Setting` per key flotte implements.  Each says how a value is
parsed, whether specifiers are expanded, what the default is, how repeated
and empty assignments behave, and which legacy spellings map onto it.  Every
other key systemd 252 knows (``systemd_keys.SYSTEMD_KEYS``) is accepted and
kept as a raw string so that valid systemd units never get "unknown key"
warnings; :attr:`flotte.unit.loader.Unit.unsupported` lists them so callers
can say that flotte will not act on them.

Semantics copied from systemd (see ``spec/systemd.md`` §1.6):

* single-valued settings: last assignment wins; an empty assignment resets
  to the default;
* list settings append; an empty assignment resets the list — except the
  dependency lists (``After=``, ``Wants=`` …), which can never be reset;
* an unparsable value is a warning and the previous value stays.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from flotte.unit import values as V
from flotte.unit.errors import ValueParseError
from flotte.unit.systemd_keys import SYSTEMD_KEYS


class Kind(StrEnum):
    STRING = "string"  # single value, raw text (after specifiers)
    SCALAR = "scalar"  # single value, parsed by Setting.parse
    WORDS = "words"  # list of words; empty resets
    DEPS = "deps"  # list of unit names; empty is a no-op
    EXEC = "exec"  # list of ExecCommand; empty resets
    ENVIRONMENT = "environment"  # NAME=value assignments; empty resets
    ENVFILE = "envfile"  # list of (path, ignore_missing); empty resets
    CONDITION = "condition"  # Condition*/Assert*; empty resets all of that family
    RAW = "raw"  # known to systemd, not interpreted by flotte


@dataclass(frozen=True, slots=True)
class Setting:
    section: str
    key: str
    kind: Kind
    parse: Callable[[str], Any] | None = None
    default: Any = None
    specifiers: bool = False
    doc: str = ""


def _enum(choices: tuple[str, ...], what: str, fix_name: str) -> Callable[[str], str]:
    allowed = frozenset(choices)
    hint = ", ".join(choices)

    def parse(v: str) -> str:
        if v in allowed:
            return v
        lower = {c.lower(): c for c in choices}
        fix = f"{fix_name}= takes one of: {hint}"
        if v.lower() in lower:
            fix = f"write {fix_name}={lower[v.lower()]} (values are case-sensitive)"
        raise ValueParseError(f"Failed to parse {what}, ignoring: {v}", fix)

    return parse


def _wrap(parse: Callable[[str], Any], what: str, fix: str | None = None) -> Callable[[str], Any]:
    """Give a value parser systemd's warning wording for this key."""

    def wrapped(v: str) -> Any:
        try:
            return parse(v)
        except ValueParseError as exc:
            raise ValueParseError(f"Failed to parse {what}, ignoring: {v}", exc.fix or fix) from None

    return wrapped


def _bool(v: str) -> bool:
    return V.parse_bool(v)


def _sec(v: str) -> int:
    return V.parse_timespan(v)


def _unsigned(v: str) -> int:
    if not v.isdigit():
        raise ValueParseError(f"Failed to parse unsigned value, ignoring: {v}",
                              "use a non-negative whole number")
    return int(v)


def _nice(v: str) -> int:
    try:
        n = int(v.strip(), 10)
    except ValueError:
        raise ValueParseError(f"Failed to parse nice priority '{v}', ignoring: Invalid argument",
                              "Nice= takes a number from -20 to 19") from None
    try:
        return V.parse_nice(str(n))
    except ValueParseError:
        raise ValueParseError(f"Nice priority out of range, ignoring: {v}",
                              "Nice= takes a number from -20 to 19") from None


def _abs_path(key: str, *, dash: bool = False, fatal: bool = False) -> Callable[[str], Any]:
    """Paths must be absolute (``-`` prefix allowed where systemd allows it)."""

    def parse(v: str) -> Any:
        missing_ok = False
        p = v
        if dash and p.startswith("-"):
            missing_ok, p = True, p[1:]
        if key == "WorkingDirectory" and p == "~":
            return (p, missing_ok)
        if not p.startswith("/"):
            suffix = "" if fatal else ", ignoring"
            raise ValueParseError(f"{key}= path is not absolute{suffix}: {v}",
                                  f"write an absolute path, e.g. /{p.lstrip('./')}")
        return (p, missing_ok) if dash else p

    return parse


TYPES = ("simple", "exec", "forking", "oneshot", "dbus", "notify", "idle")
RESTARTS = ("no", "on-success", "on-failure", "on-abnormal", "on-watchdog", "on-abort", "always")
KILL_MODES = ("control-group", "process", "mixed", "none")
NOTIFY_ACCESS = ("none", "main", "exec", "all")
EXIT_TYPES = ("main", "cgroup")
TIMEOUT_MODES = ("terminate", "abort", "kill")
STD_INPUT = ("null", "tty", "tty-force", "tty-fail", "data", "socket")
STD_OUTPUT = ("inherit", "null", "tty", "journal", "kmsg", "journal+console",
              "kmsg+console", "socket")
OOM_POLICIES = ("continue", "stop", "kill")
JOB_MODES = ("fail", "replace", "replace-irreversibly", "isolate", "flush",
             "ignore-dependencies", "ignore-requirements")
COLLECT_MODES = ("inactive", "inactive-or-failed")


def _std_output(v: str) -> str:
    if v in STD_OUTPUT or v.startswith(("file:/", "append:/", "truncate:/", "fd:")):
        return v
    raise ValueParseError(f"Failed to parse output specifier, ignoring: {v}",
                          "use journal, null, inherit, file:/path, append:/path or truncate:/path")


def _std_input(v: str) -> str:
    if v in STD_INPUT or v.startswith(("file:/", "fd:")):
        return v
    raise ValueParseError(f"Failed to parse input specifier, ignoring: {v}",
                          "use null, tty, data or file:/path")


# Keys whose dependency semantics flotte implements (all are lists of unit names).
DEPENDENCY_KEYS = (
    "Requires", "Requisite", "Wants", "BindsTo", "PartOf", "Upholds", "Conflicts",
    "Before", "After", "OnFailure", "OnSuccess", "PropagatesReloadTo",
    "ReloadPropagatedFrom", "PropagatesStopTo", "StopPropagatedFrom", "JoinsNamespaceOf",
)

#: Legacy spellings → canonical key (per section).
ALIASES: dict[tuple[str, str], str] = {
    ("Unit", "BindTo"): "BindsTo",
    ("Unit", "PropagateReloadTo"): "PropagatesReloadTo",
    ("Unit", "PropagateReloadFrom"): "ReloadPropagatedFrom",
    ("Unit", "StartLimitInterval"): "StartLimitIntervalSec",
    ("Service", "StartLimitInterval"): "StartLimitIntervalSec",
    ("Service", "StartLimitIntervalSec"): "StartLimitIntervalSec",
    ("Service", "StartLimitBurst"): "StartLimitBurst",
    ("Service", "StartLimitAction"): "StartLimitAction",
    ("Service", "FailureAction"): "FailureAction",
    ("Service", "SuccessAction"): "SuccessAction",
    ("Service", "RebootArgument"): "RebootArgument",
}
#: Legacy [Service] keys whose home is now [Unit].
MOVED_TO_UNIT = frozenset({"StartLimitIntervalSec", "StartLimitBurst", "StartLimitAction",
                           "FailureAction", "SuccessAction", "RebootArgument"})


def _settings() -> dict[tuple[str, str], Setting]:
    S: list[Setting] = []

    def add(section: str, key: str, kind: Kind, parse: Callable[[str], Any] | None = None,
            default: Any = None, specifiers: bool = False, doc: str = "") -> None:
        S.append(Setting(section, key, kind, parse, default, specifiers, doc=doc))

    # [Unit]
    add("Unit", "Description", Kind.STRING, specifiers=True, doc="human-readable name")
    add("Unit", "Documentation", Kind.WORDS, specifiers=True)
    for dep in DEPENDENCY_KEYS:
        add("Unit", dep, Kind.DEPS, specifiers=True)
    add("Unit", "StopWhenUnneeded", Kind.SCALAR, _wrap(_bool, "boolean value"), False)
    add("Unit", "RefuseManualStart", Kind.SCALAR, _wrap(_bool, "boolean value"), False)
    add("Unit", "RefuseManualStop", Kind.SCALAR, _wrap(_bool, "boolean value"), False)
    add("Unit", "DefaultDependencies", Kind.SCALAR, _wrap(_bool, "boolean value"), True)
    add("Unit", "OnFailureJobMode", Kind.SCALAR,
        _enum(JOB_MODES, "job mode", "OnFailureJobMode"), "replace")
    add("Unit", "OnSuccessJobMode", Kind.SCALAR,
        _enum(JOB_MODES, "job mode", "OnSuccessJobMode"), "fail")
    add("Unit", "CollectMode", Kind.SCALAR,
        _enum(COLLECT_MODES, "garbage collection mode", "CollectMode"), "inactive")
    add("Unit", "StartLimitIntervalSec", Kind.SCALAR, _wrap(_sec, "sec value"), 10_000_000)
    add("Unit", "StartLimitBurst", Kind.SCALAR, _unsigned, 5)
    add("Unit", "JobTimeoutSec", Kind.SCALAR,
        lambda v: _fix0_named(v, "JobTimeoutSec"), V.USEC_INFINITY)
    # [Service]
    add("Service", "Type", Kind.SCALAR, _enum(TYPES, "service type", "Type"), None,
        doc="default: simple with ExecStart=, else oneshot")
    add("Service", "ExitType", Kind.SCALAR, _enum(EXIT_TYPES, "service exit type", "ExitType"),
        "main")
    add("Service", "Restart", Kind.SCALAR,
        _enum(RESTARTS, "service restart specifier", "Restart"), "no")
    add("Service", "RemainAfterExit", Kind.SCALAR, _wrap(_bool, "boolean value"), False)
    add("Service", "GuessMainPID", Kind.SCALAR, _wrap(_bool, "boolean value"), True)
    add("Service", "PIDFile", Kind.STRING, specifiers=True)
    add("Service", "BusName", Kind.STRING, specifiers=True)
    for key in ("ExecCondition", "ExecStartPre", "ExecStart", "ExecStartPost", "ExecReload",
                "ExecStop", "ExecStopPost"):
        add("Service", key, Kind.EXEC, specifiers=True)
    add("Service", "RestartSec", Kind.SCALAR, _wrap(_sec, "sec value"), 100_000)
    add("Service", "TimeoutSec", Kind.SCALAR, lambda v: _fix0_named(v, "TimeoutSec"), None)
    add("Service", "TimeoutStartSec", Kind.SCALAR, lambda v: _fix0_named(v, "TimeoutStartSec"),
        90_000_000)
    add("Service", "TimeoutStopSec", Kind.SCALAR, lambda v: _fix0_named(v, "TimeoutStopSec"),
        90_000_000)
    add("Service", "TimeoutAbortSec", Kind.SCALAR, lambda v: _fix0_named(v, "TimeoutAbortSec"),
        None)
    add("Service", "TimeoutStartFailureMode", Kind.SCALAR,
        _enum(TIMEOUT_MODES, "timeout failure mode", "TimeoutStartFailureMode"), "terminate")
    add("Service", "TimeoutStopFailureMode", Kind.SCALAR,
        _enum(TIMEOUT_MODES, "timeout failure mode", "TimeoutStopFailureMode"), "terminate")
    add("Service", "RuntimeMaxSec", Kind.SCALAR, _wrap(_sec, "sec value"), V.USEC_INFINITY)
    add("Service", "WatchdogSec", Kind.SCALAR, _wrap(_sec, "sec value"), 0)
    add("Service", "SuccessExitStatus", Kind.WORDS)
    add("Service", "RestartPreventExitStatus", Kind.WORDS)
    add("Service", "RestartForceExitStatus", Kind.WORDS)
    add("Service", "NotifyAccess", Kind.SCALAR,
        _enum(NOTIFY_ACCESS, "notify access specifier", "NotifyAccess"), None)
    add("Service", "OOMPolicy", Kind.SCALAR, _enum(OOM_POLICIES, "OOM policy", "OOMPolicy"),
        "stop")
    add("Service", "FileDescriptorStoreMax", Kind.SCALAR, _unsigned, 0)
    # exec context
    add("Service", "WorkingDirectory", Kind.SCALAR,
        _abs_path("WorkingDirectory", dash=True, fatal=True), None, specifiers=True)
    add("Service", "RootDirectory", Kind.SCALAR, _abs_path("RootDirectory"), None,
        specifiers=True)
    add("Service", "User", Kind.STRING, specifiers=True)
    add("Service", "Group", Kind.STRING, specifiers=True)
    add("Service", "SupplementaryGroups", Kind.WORDS, specifiers=True)
    add("Service", "Nice", Kind.SCALAR, _nice, None)
    add("Service", "UMask", Kind.SCALAR, _wrap(V.parse_umask, "mode value"), 0o022)
    add("Service", "Environment", Kind.ENVIRONMENT, specifiers=True)
    add("Service", "EnvironmentFile", Kind.ENVFILE, specifiers=True)
    add("Service", "PassEnvironment", Kind.WORDS)
    add("Service", "UnsetEnvironment", Kind.WORDS, specifiers=True)
    add("Service", "StandardInput", Kind.SCALAR, _std_input, "null")
    add("Service", "StandardOutput", Kind.SCALAR, _std_output, "journal")
    add("Service", "StandardError", Kind.SCALAR, _std_output, "inherit")
    add("Service", "SyslogIdentifier", Kind.STRING, specifiers=True)
    add("Service", "KillMode", Kind.SCALAR,
        _enum(KILL_MODES, "kill mode specification", "KillMode"), "control-group")
    for key, default in (("KillSignal", 15), ("RestartKillSignal", None),
                         ("FinalKillSignal", 9), ("WatchdogSignal", 6)):
        add("Service", key, Kind.SCALAR, _wrap(V.parse_signal, "signal name"), default)
    add("Service", "SendSIGKILL", Kind.SCALAR, _wrap(_bool, "boolean value"), True)
    add("Service", "SendSIGHUP", Kind.SCALAR, _wrap(_bool, "boolean value"), False)
    for key in V.RLIMIT_KEYS:
        add("Service", key, Kind.SCALAR, _rlimit_parser(key), None)
    # [Install] — used by enable/disable only, never at run time; systemd
    # does not even parse it when loading, so neither do we beyond splitting.
    for key in ("WantedBy", "RequiredBy", "Also", "Alias"):
        add("Install", key, Kind.WORDS)
    add("Install", "DefaultInstance", Kind.STRING)
    return {(s.section, s.key): s for s in S}


_FIX0_WHAT = {"TimeoutStopSec": "time value", "TimeoutAbortSec": "TimeoutAbortSec= setting"}


def _fix0_named(v: str, key: str) -> int:
    """``Timeout*Sec=``: 0 means infinity; the warning wording differs per key in systemd."""
    try:
        return V.parse_sec_fix_0(v)
    except ValueParseError:
        what = _FIX0_WHAT.get(key, f"{key}= parameter")
        raise ValueParseError(f"Failed to parse {what}, ignoring: {v}",
                              "use a time span such as 90, 5min 20s or infinity") from None


def _rlimit_parser(key: str) -> Callable[[str], tuple[int, int]]:
    def parse(v: str) -> tuple[int, int]:
        try:
            return V.parse_rlimit(key, v)
        except ValueParseError as exc:
            if exc.message.startswith("Soft resource limit"):
                raise
            raise ValueParseError(f"Failed to parse resource value, ignoring: {v}",
                                  exc.fix or f"{key}= takes N, SOFT:HARD or infinity") from None

    return parse


SETTINGS: dict[tuple[str, str], Setting] = _settings()

#: The [Unit] condition and assert keys (Kind.CONDITION), from systemd's table.
CONDITION_KEYS: frozenset[str] = frozenset(
    k for k, t in SYSTEMD_KEYS["Unit"].items() if t == "CONDITION"
)

#: Sections a .service unit may have (others warn "Unknown section").
SERVICE_SECTIONS = ("Unit", "Service", "Install")


@functools.lru_cache(maxsize=4096)
def lookup(section: str, key: str) -> tuple[str, str, Setting | None] | None:
    """Resolve ``(section, key)`` to ``(section, canonical key, Setting)``.

    Returns ``None`` for keys systemd does not know.  A known key flotte
    does not interpret comes back with ``Setting`` ``None``.
    """
    canon = ALIASES.get((section, key), key)
    target = section
    if section == "Service" and canon in MOVED_TO_UNIT:
        target = "Unit"
    s = SETTINGS.get((target, canon))
    if s is not None:
        return target, canon, s
    if section in SYSTEMD_KEYS and key in SYSTEMD_KEYS[section]:
        return section, canon, None
    return None


def known_keys(section: str) -> list[str]:
    return list(SYSTEMD_KEYS.get(section, {}))
