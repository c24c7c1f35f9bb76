"""Loading a unit: lexed options + the schema → a typed :class:`Unit`.

This is systemd's ``unit_load_fragment`` + ``service_verify`` for the keys
flotte implements: apply every assignment in file order (main file, then
drop-ins), keep going past bad values with a warning, and decide the load
state:

``loaded``       usable;
``masked``       the file is empty (or a symlink to /dev/null);
``error``        the file cannot be parsed at all (bad section header,
                 line too long, not UTF-8);
``bad-setting``  it parsed, but a setting makes it unstartable (an
                 ``Exec*=`` line that does not parse, two ``ExecStart=`` on
                 a simple service, no ``ExecStart=``, a relative
                 ``WorkingDirectory=``, contradicting ``[X-Fleet]`` rules…).

Pure: the only input is text (and, for :func:`load_unit`, the files of a
search path).
"""

from __future__ import annotations

import difflib
import functools
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from flotte.unit import names as N
from flotte.unit import schema as S
from flotte.unit import values as V
from flotte.unit.errors import Diagnostic, Severity, ValueParseError
from flotte.unit.execline import ExecCommand, parse_exec
from flotte.unit.parser import Dialect, Option, ParseResult, parse
from flotte.unit.specifiers import SpecifierContext, errno_text, expand
from flotte.unit.words import Flags, WordError, extract_first_word
from flotte.unit.xfleet import XFleet, parse_x_fleet

_DEFAULT_CTX = SpecifierContext()

LOADED = "loaded"
MASKED = "masked"
ERROR = "error"
BAD_SETTING = "bad-setting"

_PATH_CONDITIONS = frozenset({
    "PathExists", "PathExistsGlob", "PathIsDirectory", "PathIsSymbolicLink",
    "PathIsMountPoint", "PathIsReadWrite", "PathIsEncrypted", "DirectoryNotEmpty",
    "FileNotEmpty", "FileIsExecutable",
})
#: Typed settings whose empty assignment resets silently (systemd 252).
_RESET_ON_EMPTY = frozenset({"Nice", "WorkingDirectory", "RootDirectory", "TimeoutAbortSec"})
#: Specifiers systemd's unit_name_printf knows (dependency names): name, host, creds.
_DEP_SPECIFIERS = "ijnNpaAbBHlmMoqvwWgGuU%"
_EXIT_STATUS_KEYS = frozenset({"SuccessExitStatus", "RestartPreventExitStatus",
                               "RestartForceExitStatus"})
#: Dependency types whose self-reference systemd reports.
_WARN_SELF_DEPS = frozenset({"Conflicts", "Before", "After", "OnSuccess", "OnFailure"})
_URL_PREFIXES = ("http://", "https://", "file:/", "info:", "man:")


@functools.lru_cache(maxsize=4096)
def _valid_dep_name(name: str) -> bool:
    return N.is_valid(name, N.NameFlags.PLAIN | N.NameFlags.INSTANCE)


@functools.lru_cache(maxsize=4096)
def _run_together(name: str) -> tuple[str, str] | None:
    """Split names systemd accepts but that are almost certainly typos.

    ``After=etcd.servicedocker.service`` (from the seed) is a valid unit
    name to systemd, which silently orders against a unit that does not
    exist.  We keep systemd's meaning and say what probably happened.
    """
    stem = name.rsplit(".", 1)[0]
    for t in N.UNIT_TYPES:
        i = stem.find(t)
        if i > 0 and i + len(t) < len(stem):
            first, second = stem[: i + len(t)], stem[i + len(t):] + name[len(stem):]
            if N.is_valid(first) and N.is_valid(second):
                return first, second
    return None


@dataclass(frozen=True, slots=True)
class Condition:
    """One ``Condition*=`` / ``Assert*=`` line: ``|`` trigger, ``!`` negation."""

    key: str  # e.g. "ConditionPathExists"
    value: str
    trigger: bool = False
    negate: bool = False
    line: int | None = None

    @property
    def is_assert(self) -> bool:
        return self.key.startswith("Assert")


@dataclass(slots=True)
class Unit:
    """A loaded unit file.  Build with :func:`load_text` or :func:`load_unit`."""

    name: str
    path: str | None = None
    dialect: str = "systemd"
    load_state: str = LOADED
    options: list[Option] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    settings: dict[tuple[str, str], Any] = field(default_factory=dict)
    conditions: list[Condition] = field(default_factory=list)
    unsupported: list[Option] = field(default_factory=list)
    x_fleet: XFleet = field(default_factory=XFleet)
    dropins: list[str] = field(default_factory=list)

    # -- queries ---------------------------------------------------------
    @property
    def ok(self) -> bool:
        return self.load_state == LOADED

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity is Severity.ERROR]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity is Severity.WARNING]

    @property
    def unit_type(self) -> str:
        return self.name.rsplit(".", 1)[-1] if "." in self.name else ""

    def value(self, section: str, key: str) -> Any:
        """The effective typed value of a setting, or systemd's default."""
        found = S.lookup(section, key)
        if found is None:
            raise KeyError(f"unknown setting [{section}] {key}=")
        sec, canon, setting = found
        k = (sec, canon)
        if k in self.settings:
            v = self.settings[k]
            return list(v) if isinstance(v, list) else v
        if setting is None:
            return None
        if k == ("Service", "Type"):
            if self.settings.get(("Service", "BusName")):
                return "dbus"
            return "simple" if self.settings.get(("Service", "ExecStart")) else "oneshot"
        if k == ("Service", "TimeoutStartSec") and self.value("Service", "Type") == "oneshot":
            return V.USEC_INFINITY
        if k == ("Service", "NotifyAccess"):
            return "main" if self.value("Service", "Type") == "notify" else "none"
        if k == ("Service", "RestartKillSignal"):
            return self.value("Service", "KillSignal")
        if k == ("Service", "TimeoutAbortSec"):
            return self.value("Service", "TimeoutStopSec")
        if setting.kind in (S.Kind.WORDS, S.Kind.DEPS, S.Kind.EXEC, S.Kind.ENVIRONMENT,
                            S.Kind.ENVFILE):
            return []
        if k == ("Unit", "Description"):
            return self.name
        return setting.default

    def exec_commands(self, key: str) -> list[ExecCommand]:
        return list(self.settings.get(("Service", key), []))

    @property
    def environment(self) -> list[tuple[str, str]]:
        env: list[tuple[str, str]] = self.value("Service", "Environment")
        return env

    @property
    def description(self) -> str:
        return str(self.value("Unit", "Description"))


# ---------------------------------------------------------------------------


class _Loader:
    def __init__(self, unit: Unit, ctx: SpecifierContext) -> None:
        self.u = unit
        self.ctx = ctx
        self.fatal = False
        self.fatal_by_setting = False
        self.timeout_start_set = False
        self.self_deps: set[str] = set()
        self.file: str | None = unit.path
        self.name = unit.name
        type_section = unit.unit_type.capitalize()
        self.sections = ("Unit", "Install", type_section)

    def specifier_warning(self, text: str, exc: ValueParseError, line: int) -> None:
        self.warn(f"Failed to resolve unit specifiers in '{text}', ignoring: "
                  f"{errno_text(exc)}", line, exc.fix)

    def section_header(self, name: str, line: int) -> None:
        if name in self.sections or name.startswith("X-"):
            return
        fix = None
        lower = {s.lower(): s for s in (*self.sections, "X-Fleet")}
        if name.lower() in lower:
            fix = f"section names are case-sensitive: write [{lower[name.lower()]}]"
        self.warn(f"Unknown section '{name}'. Ignoring.", line, fix)

    def late_warnings(self) -> None:
        """Whole-unit warnings systemd logs only for units it accepted."""
        u = self.u
        if u.unit_type == "service" and u.value("Service", "Type") == "oneshot" and \
                u.settings.get(("Service", "RuntimeMaxSec"), V.USEC_INFINITY) != V.USEC_INFINITY:
            self.warn("RuntimeMaxSec= has no effect in combination with Type=oneshot. "
                      "Ignoring.", None, "drop RuntimeMaxSec= or use another Type=")

    # -- diagnostics -----------------------------------------------------
    def warn(self, msg: str, line: int | None, fix: str | None = None) -> None:
        self.u.diagnostics.append(Diagnostic(Severity.WARNING, msg, line, fix, self.file))

    def error(self, msg: str, line: int | None, fix: str | None = None) -> None:
        self.u.diagnostics.append(Diagnostic(Severity.ERROR, msg, line, fix, self.file))
        self.fatal = True

    # -- specifiers ------------------------------------------------------
    def expand(self, text: str) -> str:
        if "%" not in text:
            return text
        return expand(text, self.name, self.ctx, fragment_path=self.u.path)

    # -- one assignment --------------------------------------------------
    def apply(self, opt: Option) -> None:
        sec, key, value, line = opt
        if sec not in self.sections:
            return  # unknown / X- sections: reported once per header
        found = S.lookup(sec, key)
        if found is None:
            if key.startswith("X-"):
                return
            self.warn(f"Unknown key '{key}' in section [{sec}], ignoring.", line,
                      self._suggest(sec, key))
            return
        tsec, canon, setting = found
        k = (tsec, canon)
        if setting is None:
            if sec == "Unit" and canon in S.CONDITION_KEYS:
                self._condition(canon, value, line)
                return
            self.u.unsupported.append(opt)
            self.u.settings[k] = value
            return
        kind = setting.kind
        settings = self.u.settings
        if kind is S.Kind.DEPS:
            self._deps(k, value, line)
            return
        if not value and (kind is not S.Kind.SCALAR or canon in _RESET_ON_EMPTY):
            # Empty assignment: reset (lists) or back to the default.  Typed
            # scalars (booleans, times, enums …) instead fail to parse "" and
            # keep their value, as in systemd.
            settings.pop(k, None)
            if canon == "TimeoutSec":
                settings.pop(("Service", "TimeoutStartSec"), None)
                settings.pop(("Service", "TimeoutStopSec"), None)
                self.timeout_start_set = False
            elif canon == "TimeoutStartSec":
                self.timeout_start_set = False
            return
        if kind is S.Kind.EXEC:
            self._exec(k, value, line)
            return
        if kind is S.Kind.ENVIRONMENT:
            self._environment(k, value, line)
            return
        if kind is S.Kind.ENVFILE:
            self._envfile(k, value, line)
            return
        if kind is S.Kind.WORDS:
            self._words(setting, k, value, line)
            return
        if setting.specifiers:
            try:
                value = self.expand(value)
            except ValueParseError as exc:
                if canon == "WorkingDirectory":
                    self.error("Failed to resolve unit specifiers in working directory path "
                               f"'{value}': {errno_text(exc)}", line, exc.fix)
                    self.fatal_by_setting = True
                    return
                self.specifier_warning(value, exc, line)
                return
        if kind is S.Kind.STRING:
            settings[k] = value
            return
        assert setting.parse is not None
        try:
            parsed = setting.parse(value)
        except ValueParseError as exc:
            if canon == "WorkingDirectory":
                self.error(exc.message, line, exc.fix)
                self.fatal_by_setting = True
            else:
                self.warn(exc.message, line, exc.fix)
            return
        if canon == "WorkingDirectory" and parsed[0] != "~":
            simple = N.simplify_path(parsed[0])
            if any(c == ".." for c in simple.split("/")):
                self.error(f"WorkingDirectory= path is not normalized: {simple}", line,
                           "write the directory without '..' components")
                self.fatal_by_setting = True
                return
            parsed = (simple, parsed[1])
        elif canon == "KillMode" and parsed == "none":
            self.warn("Unit uses KillMode=none. This is unsafe, as it disables systemd's "
                      "process lifecycle management for the service. Please update the service "
                      "to use a safer KillMode=, such as 'mixed' or 'control-group'. Support "
                      "for KillMode=none is deprecated and will eventually be removed.", line,
                      "use KillMode=mixed (flotte then signals only the main process first)")
        if canon == "TimeoutSec":
            settings[("Service", "TimeoutStartSec")] = parsed
            settings[("Service", "TimeoutStopSec")] = parsed
            self.timeout_start_set = True
        elif canon == "TimeoutStartSec":
            self.timeout_start_set = True
        settings[k] = parsed

    def _suggest(self, sec: str, key: str) -> str | None:
        known = S.known_keys(sec)
        lower = {k.lower(): k for k in known}
        if key.lower() in lower:
            return f"key names are case-sensitive: write {lower[key.lower()]}="
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.8)
        if close:
            return f"did you mean {close[0]}=?"
        for other in S.SERVICE_SECTIONS:
            if other != sec and key in S.known_keys(other):
                return f"{key}= belongs in the [{other}] section"
        if sec != "X-Fleet" and key in ("MachineOf", "MachineID", "MachineMetadata", "Global",
                                        "Replaces"):
            return f"{key}= belongs in the [X-Fleet] section"
        return None

    def _deps(self, k: tuple[str, str], value: str, line: int) -> None:
        # Dependency lists can never be reset; an empty value is a no-op.
        lst: list[str] = self.u.settings.setdefault(k, [])
        pos = 0
        while True:
            try:
                word, pos = extract_first_word(value, pos, Flags.NONE)
            except WordError:
                self.warn(f"Invalid syntax, ignoring: {value}", line)
                return
            if word is None:
                break
            try:
                name = expand(word, self.name, self.ctx, allowed=_DEP_SPECIFIERS) \
                    if "%" in word else word
            except ValueParseError as exc:
                self.specifier_warning(word, exc, line)
                continue
            if N.is_valid(name, N.NameFlags.TEMPLATE):
                # systemd instantiates a template dependency with this unit's
                # instance, or its prefix when it has none.
                own = N.split(self.name)
                name = N.replace_instance(name, own.instance or own.prefix)
            if not _valid_dep_name(name):
                fix = None
                if name.startswith("#"):
                    fix = ("'#' starts a comment only at the beginning of a line; "
                           "move the comment to its own line")
                elif N.is_valid(name, N.NameFlags.TEMPLATE):
                    fix = "name an instance (foo@bar.service), not the template"
                elif "." not in name:
                    fix = f"add the unit type suffix, e.g. {name}.service"
                elif ".service" in name.split(".", 1)[1] and not name.endswith(".service."):
                    fix = "separate unit names with spaces"
                self.warn(f"Failed to add dependency on {name}, ignoring: Invalid argument",
                          line, fix)
                continue
            if name == self.name:
                if k[1] in _WARN_SELF_DEPS and k[1] not in self.self_deps:
                    self.self_deps.add(k[1])
                    self.warn(f"Dependency {k[1]}={name} is dropped.", None,
                              "a unit cannot depend on itself; remove this name")
                continue
            typo = _run_together(name)
            if typo is not None:
                first, second = typo
                self.warn(f"{k[1]}={name} looks like two unit names run together; systemd "
                          "reads it as one unit of that name, which is unlikely to exist",
                          line, f"separate the names with a space: {k[1]}={first} {second}")
            if name not in lst:
                lst.append(name)

    def _exec(self, k: tuple[str, str], value: str, line: int) -> None:
        res = parse_exec(value, self.expand)
        for w in res.warnings:
            self.warn(w.message, line, w.fix)
        if res.fatal is not None:
            self.error(res.fatal.message, line, res.fatal.fix)
            self.fatal_by_setting = True
            return
        if res.commands:
            self.u.settings.setdefault(k, []).extend(res.commands)

    def _environment(self, k: tuple[str, str], value: str, line: int) -> None:
        env: list[tuple[str, str]] = self.u.settings.setdefault(k, [])
        pos = 0
        while True:
            try:
                word, pos = extract_first_word(value, pos, Flags.UNQUOTE | Flags.CUNESCAPE)
            except WordError:
                self.warn(f"Invalid syntax, ignoring: {value}", line,
                          'quote whole assignments: Environment="NAME=some value"')
                return
            if word is None:
                return
            try:
                word = self.expand(word)
            except ValueParseError as exc:
                self.warn(f"Failed to resolve specifiers in {word}, ignoring: "
                          f"{errno_text(exc)}", line, exc.fix)
                continue
            name, eq, val = word.partition("=")
            if not eq or not V.is_valid_env_name(name):
                self.warn(f"Invalid environment assignment, ignoring: {word}", line,
                          "write NAME=value; names use letters, digits and _ and do not "
                          "start with a digit")
                continue
            for i, (n, _) in enumerate(env):
                if n == name:
                    env[i] = (name, val)
                    break
            else:
                env.append((name, val))

    def _envfile(self, k: tuple[str, str], value: str, line: int) -> None:
        try:
            path = self.expand(value)
        except ValueParseError as exc:
            self.specifier_warning(value, exc, line)
            return
        ignore = path.startswith("-")
        p = path[1:] if ignore else path
        if not p.startswith("/"):
            self.warn(f"EnvironmentFile= path is not absolute, ignoring: {p}", line,
                      "write an absolute path; prefix it with '-' if it may be missing")
            return
        self.u.settings.setdefault(k, []).append((p, ignore))

    def _words(self, setting: S.Setting, k: tuple[str, str], value: str, line: int) -> None:
        canon = k[1]
        # systemd splits exit-status lists without removing quotes ("1 2" is
        # two bad words), other word lists with.
        flags = Flags.NONE if canon in _EXIT_STATUS_KEYS else Flags.UNQUOTE
        lst: list[str] = self.u.settings.setdefault(k, [])
        pos = 0
        while True:
            try:
                word, pos = extract_first_word(value, pos, flags)
            except WordError:
                self.warn(f"Invalid syntax, ignoring: {value}", line)
                return
            if word is None:
                return
            if setting.specifiers and k[0] != "Install":
                try:
                    word = self.expand(word)
                except ValueParseError as exc:
                    self.specifier_warning(word, exc, line)
                    continue
            if canon == "Documentation" and not word.startswith(_URL_PREFIXES):
                self.warn(f"Invalid URL, ignoring: {word}", line,
                          "use http://, https://, file:/, info: or man: URLs")
                continue
            if canon in _EXIT_STATUS_KEYS:
                try:
                    V.parse_exit_status_set(word)
                except ValueParseError:
                    self.warn(f"Failed to parse value, ignoring: {word}", line,
                              "use exit codes 0-255, names like TEMPFAIL, or signal names")
                    continue
            lst.append(word)

    def _condition(self, key: str, value: str, line: int) -> None:
        if not value:
            is_assert = key.startswith("Assert")
            self.u.conditions = [c for c in self.u.conditions if c.is_assert != is_assert]
            return
        v = value
        trigger = negate = False
        if v.startswith("|"):
            trigger, v = True, v[1:].lstrip()
        if v.startswith("!"):
            negate, v = True, v[1:].lstrip()
        try:
            v = self.expand(v)
        except ValueParseError as exc:
            self.specifier_warning(v, exc, line)
            return
        kind = key.removeprefix("Condition").removeprefix("Assert")
        if kind in _PATH_CONDITIONS and not v.startswith("/"):
            self.warn(f"{key}= path is not absolute, ignoring: {v}", line,
                      "condition paths must be absolute")
            return
        self.u.conditions.append(Condition(key, v, trigger, negate, line))

    # -- whole unit -------------------------------------------------------
    def verify_service(self) -> None:
        """systemd's ``service_verify``: refuse units that cannot be started."""
        u = self.u
        if u.unit_type != "service":
            return
        start = u.settings.get(("Service", "ExecStart")) or []
        stop = u.settings.get(("Service", "ExecStop")) or []
        typ = u.value("Service", "Type")
        if not start and not stop and not u.settings.get(("Unit", "SuccessAction")):
            self.error("Service has no ExecStart=, ExecStop=, or SuccessAction=. Refusing.",
                       None, "add an ExecStart= line with the command to run")
        elif typ != "oneshot" and not start:
            self.error("Service has no ExecStart= setting, which is only allowed for "
                       "Type=oneshot services. Refusing.", None,
                       "add ExecStart=, or set Type=oneshot")
        elif not u.value("Service", "RemainAfterExit") and not start and \
                not u.settings.get(("Unit", "SuccessAction")):
            self.error("Service has no ExecStart= and no SuccessAction= settings and does not "
                       "have RemainAfterExit=yes set. Refusing.", None,
                       "add ExecStart=, or set RemainAfterExit=yes")
        elif typ != "oneshot" and len(start) > 1:
            self.error("Service has more than one ExecStart= setting, which is only allowed "
                       "for Type=oneshot services. Refusing.", None,
                       "keep one ExecStart= (in a drop-in, reset the list with an empty "
                       "ExecStart= first), or use Type=oneshot")
        elif typ == "oneshot" and u.value("Service", "Restart") in ("always", "on-success"):
            self.error("Service has Restart= set to either always or on-success, which isn't "
                       "allowed for Type=oneshot services. Refusing.", None,
                       "use Restart=on-failure, or drop Restart=")
        elif typ == "dbus" and not u.settings.get(("Service", "BusName")):
            self.error("Service is of type D-Bus but no D-Bus service name has been "
                       "specified. Refusing.", None, "set BusName=")


def _events(result: ParseResult) -> list[tuple[int, int, object]]:
    """Everything the lexer found, in line order, as systemd meets it.

    systemd lexes and applies one line at a time and stops at the first
    fatal problem, so warnings after that line never appear.  Sorting by
    line (kind breaks ties: header, option, diagnostic) reproduces that.
    """
    ev: list[tuple[int, int, object]] = []
    for name, line in result.sections:
        ev.append((line, 0, ("section", name)))
    for opt in result.options:
        ev.append((opt.line, 1, opt))
    for d in result.diagnostics:
        ev.append((d.line or 0, 2, d))
    if result.fatal is not None:
        ev.append((result.fatal.line or 0, 3, ("fatal", result.fatal)))
    ev.sort(key=lambda e: (e[0], e[1]))
    return ev


def _apply_all(unit: Unit, ctx: SpecifierContext,
               parsed: Sequence[tuple[ParseResult, str | None]]) -> Unit:
    ld = _Loader(unit, ctx)
    lexer_fatal = False
    for index, (result, path) in enumerate(parsed):
        ld.file = path
        if index:
            unit.dropins.append(path or "")
        current: str | None = None
        for _line, _kind, item in _events(result):
            if isinstance(item, Option):
                unit.options.append(item)
                ld.apply(item)
            elif isinstance(item, Diagnostic):
                # systemd is silent about lines inside unknown and X- sections.
                if item.message.startswith("Missing") and current is not None and \
                        current not in ld.sections and current != "X-Fleet":
                    continue
                unit.diagnostics.append(Diagnostic(item.severity, item.message, item.line,
                                                   item.fix, path))
            else:
                tag, payload = cast(tuple[str, Any], item)
                if tag == "section":
                    current = payload
                    ld.section_header(payload, _line)
                else:
                    f = payload
                    unit.diagnostics.append(Diagnostic(f.severity, f.message, f.line, f.fix,
                                                       path))
                    lexer_fatal = True
            if ld.fatal_by_setting or lexer_fatal:
                break
        if ld.fatal_by_setting or lexer_fatal:
            break
    ld.file = unit.path
    if lexer_fatal:
        unit.load_state = ERROR
    elif ld.fatal_by_setting:
        unit.load_state = BAD_SETTING
        ld.warn("Unit configuration has fatal error, unit will not be started.", None)
    else:
        ld.verify_service()
        if ld.fatal:
            unit.load_state = BAD_SETTING
        else:
            ld.late_warnings()
    if unit.load_state == LOADED:
        xf, xdiags = parse_x_fleet(unit.options, unit.name, path=unit.path)
        unit.x_fleet = xf
        unit.diagnostics.extend(xdiags)
        if any(d.severity is Severity.ERROR for d in xdiags):
            unit.load_state = BAD_SETTING
    unit.diagnostics.sort(key=lambda d: (d.line is None, d.line or 0))
    return unit


def _name_problem(name: str) -> str | None:
    try:
        N.check_safe(name)
    except N.InvalidUnitName as exc:
        return str(exc)
    return None


def load_text(
    text: str | bytes,
    name: str,
    *,
    ctx: SpecifierContext | None = None,
    dialect: Dialect = "systemd",
    path: str | None = None,
    dropins: Iterable[tuple[str, str | bytes]] = (),
) -> Unit:
    """Load one unit from its text.  Never raises for bad input.

    ``name`` is the unit's name (``apache@8080.service``); for an instance
    loaded from its template's text, pass the instance name.  ``dropins`` are
    ``(path, text)`` pairs applied after the main text, in the given order.
    """
    ctx = ctx or _DEFAULT_CTX
    unit = Unit(name=name, path=path, dialect=dialect)
    problem = _name_problem(name)
    if problem is not None:
        unit.load_state = ERROR
        unit.diagnostics.append(Diagnostic(Severity.ERROR, problem, None, file=path))
        return unit
    result = parse(text, dialect)
    if result.masked:
        unit.load_state = MASKED
        return unit
    parsed: list[tuple[ParseResult, str | None]] = [(result, path)]
    for dpath, dtext in dropins:
        parsed.append((parse(dtext, dialect), dpath))
    return _apply_all(unit, ctx, parsed)


def _dropin_dirs(name: str) -> list[str]:
    """Drop-in directory names for ``name``, highest precedence first."""
    un = N.split(name)
    dirs = [name + ".d"]
    if un.is_instance and un.template:
        dirs.append(un.template + ".d")
    base = un.prefix
    parts = base.split("-")
    # dash-prefix dirs: foo-bar-baz → foo-bar-.service.d, foo-.service.d
    for i in range(len(parts) - 1, 0, -1):
        dirs.append("-".join(parts[:i]) + "-" + un.suffix + ".d")
    dirs.append(un.suffix.lstrip(".") + ".d")
    return dirs


def load_unit(
    name: str,
    search_path: Sequence[str],
    *,
    ctx: SpecifierContext | None = None,
    dialect: Dialect = "systemd",
) -> Unit:
    """Load ``name`` from directories in ``search_path`` (highest priority first).

    Follows systemd: the first directory holding the unit file wins; an
    instance falls back to its template's file; drop-ins (``*.conf`` in the
    instance, template, dash-prefix and type-wide ``.d`` directories of every
    search directory) are applied in lexicographic order of file name, a
    name appearing in several places being taken from the highest-precedence
    one; a drop-in symlinked to /dev/null masks that name.
    """
    problem = _name_problem(name)
    if problem is not None:
        unit = Unit(name=name, load_state=ERROR)
        unit.diagnostics.append(Diagnostic(Severity.ERROR, problem, None))
        return unit
    un = N.split(name)
    candidates = [name] + ([un.template] if un.is_instance and un.template else [])
    fragment: str | None = None
    for cand in candidates:
        for d in search_path:
            p = os.path.join(d, cand)
            if os.path.lexists(p):
                fragment = p
                break
        if fragment:
            break
    if fragment is None:
        unit = Unit(name=name, load_state="not-found")
        unit.diagnostics.append(Diagnostic(
            Severity.ERROR, f"Unit {name} not found in {', '.join(search_path)}", None,
            fix=f"create {name}" + (f" or {un.template}" if un.template else "")))
        return unit
    if os.path.realpath(fragment) == "/dev/null":
        return Unit(name=name, path=fragment, load_state=MASKED)
    with open(fragment, "rb") as fh:
        text = fh.read()
    # systemd's dropin.c: for each search directory (priority order), the
    # name-specific .d directories; then the type-wide ones ("service.d").
    # Among files with the same name, the first one found wins.
    dirnames = _dropin_dirs(name)
    ordered = [os.path.join(d, x) for d in search_path for x in dirnames[:-1]]
    ordered += [os.path.join(d, dirnames[-1]) for d in search_path]
    chosen: dict[str, str | None] = {}
    for full in ordered:
        if not os.path.isdir(full):
            continue
        for fname in os.listdir(full):
            if not fname.endswith(".conf") or fname in chosen:
                continue
            p = os.path.join(full, fname)
            chosen[fname] = None if os.path.realpath(p) == "/dev/null" else p
    # chosen was filled in precedence order: first seen wins.  Apply by name.
    dropins: list[tuple[str, bytes]] = []
    for fname in sorted(chosen):
        dropin = chosen[fname]
        if dropin is None:
            continue
        with open(dropin, "rb") as fh:
            dropins.append((dropin, fh.read()))
    return load_text(text, name, ctx=ctx, dialect=dialect, path=fragment, dropins=dropins)
