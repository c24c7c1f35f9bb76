"""Template resources: the ``conf.d/**/*.toml`` files of a confd ``-confdir``.

A resource says which keys to read (``prefix`` + ``keys``), which template
renders them (``src``, under ``<confdir>/templates``), where the result goes
(``dest``, with ``uid``/``gid``/``mode``) and which commands validate and
apply it (``check_cmd``, ``reload_cmd``).  Loading follows confd v0.16
(spec ``confd.md`` §1, §3 step 1) so existing confdirs work unchanged:

* files are found recursively under ``conf.d`` by the name glob ``*toml``,
  in Go's lexical ``filepath.Walk`` order (symlinked directories are not
  followed);
* key names are case-insensitive (BurntSushi/toml matches struct fields that
  way), so ``SRC`` and ``Dest`` work;
* ``src`` is always joined under ``templates/`` (an absolute ``src`` too);
* ``mode`` is a *string* parsed with Go's base detection: ``"0644"`` is
  octal, ``"0x1a4"`` hex, but ``"644"`` is **decimal** 644 (= ``0o1204``).
  We keep that (a confdir must mean the same thing under both tools) but warn;
* ``uid``/``gid`` default to this process's effective ids (v0.12+);
* ``owner``/``group`` were documented by confd ≤ 0.10 but never implemented:
  still ignored, with a warning, so the seed's ``owner = "root"`` loads.

Where confd silently ignores unknown keys we warn (a typo such as
``reload_command`` otherwise means "never reload", found only in production),
and every error names the file and, when we can tell, the line.
"""

from __future__ import annotations

import os
import re
import stat
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from flotte.unit import gopath

#: The keys confd's ``TemplateResource`` struct decodes (lower case).
KNOWN_KEYS: Final = ("src", "dest", "keys", "prefix", "uid", "gid", "mode", "check_cmd",
                     "reload_cmd")
#: Documented by confd 0.1–0.10, never implemented; ignored with this hint.
_NEVER_IMPLEMENTED: Final = {
    "owner": "confd never implemented 'owner' (it was only documented); set uid = <number>",
    "group": "confd never implemented 'group' (it was only documented); set gid = <number>",
}
_TOML_AT = re.compile(r"\(at line (\d+), column (\d+)\)")
DEFAULT_MODE: Final = 0o644


class ResourceError(Exception):
    """A template resource file that cannot be used, with where and why.

    ``str()`` reads ``<file>:<line>: <message>`` (or ``<file>: <message>``
    when the problem has no single line), the form editors jump to.
    """

    def __init__(self, path: Path | str, message: str, line: int | None = None) -> None:
        self.path = Path(path)
        self.message = message
        self.line = line
        where = f"{self.path}:{line}" if line else f"{self.path}"
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True, slots=True)
class TemplateResource:
    """One loaded ``[template]`` table, ready to process.

    ``prefix`` is the effective prefix (global ``-prefix`` applied, leading
    ``/`` added); ``mode`` is ``None`` when the file left it to the existing
    dest (or 0644).  ``warnings`` are problems worth a log line that do not
    stop the resource.
    """

    path: Path
    confdir: Path
    src: Path
    dest: Path
    keys: tuple[str, ...] = ()
    prefix: str = "/"
    uid: int = -1
    gid: int = -1
    mode: int | None = None
    check_cmd: str | None = None
    reload_cmd: str | None = None
    warnings: tuple[str, ...] = field(default=(), compare=False)

    @property
    def name(self) -> str:
        """The resource file relative to the confdir (``conf.d/nginx.toml``), for logs."""
        try:
            return str(self.path.relative_to(self.confdir))
        except ValueError:
            return str(self.path)

    @property
    def full_keys(self) -> tuple[str, ...]:
        """Backend keys to read: ``path.Join(prefix, key)`` for each key (confd §3 step 3)."""
        return tuple(gopath.join(self.prefix, k) for k in self.keys)

    def watches(self, key: str) -> bool:
        """Whether a change of backend ``key`` can change this resource's output.

        By path segments, not by string prefix (confd's etcd backends treat
        ``/app/upstream`` as covering ``/app/upstream2/x``; spec §12 "fix").
        """
        return any(covers(full, key) for full in self.full_keys)


def covers(full: str, key: str) -> bool:
    """``key`` is ``full`` or lies below it, segment-wise; ``/`` covers every key."""
    if full == "/":
        return key.startswith("/")
    return key == full or key.startswith(full + "/")


def parse_mode(text: str) -> tuple[int, str | None]:
    """``strconv.ParseUint(text, 0, 32)`` as confd does, plus a warning for decimals.

    Returns ``(mode, warning)``.  Go's base prefixes: ``0x``/``0X`` hex,
    ``0o``/``0O`` octal and ``0b``/``0B`` binary (Go 1.13+), a leading ``0``
    octal, else decimal; ``_`` separators are accepted after a prefix, as
    Go does.  Raises ``ValueError`` with the reason.
    """
    s = text.strip()
    if s != text or not s:
        raise ValueError(f"mode {text!r} is not a number; write it as an octal string like "
                         '"0644"')
    lowered = s.lower()
    base = 10
    digits = s
    if lowered.startswith("0x"):
        base, digits = 16, s[2:]
    elif lowered.startswith("0o"):
        base, digits = 8, s[2:]
    elif lowered.startswith("0b"):
        base, digits = 2, s[2:]
    elif s.startswith("0") and len(s) > 1:
        base, digits = 8, s[1:]
    if base != 10 and digits.startswith("_"):
        digits = digits[1:]
    if not digits or not all(c.isascii() and (c.isalnum() or c == "_") for c in digits) \
            or digits.startswith("_") or digits.endswith("_") or "__" in digits:
        raise ValueError(f"mode {text!r} is not a number; write it as an octal string like "
                         '"0644"')
    try:
        value = int(digits.replace("_", ""), base)
    except ValueError:
        raise ValueError(f"mode {text!r} is not a valid base-{base} number; write it as an "
                         'octal string like "0644"') from None
    if value > 0o7777:
        raise ValueError(f"mode {text!r} is {oct(value)}, more than the permission bits "
                         '(0o7777) allow; write it as an octal string like "0644"')
    warning = None
    if base == 10 and value > 7:
        warning = (f'mode = "{text}" is read as the decimal number {value} = octal '
                   f"{value:04o} ({stat.filemode(value)[1:]}), as confd does; write "
                   f'"0{text}" for octal')
    return value, warning


def _line_of(text: str, table: str | None, key: str, *, exact: bool = False) -> int | None:
    """Best-effort line number of ``key = …`` (in ``[table]`` when given), 1-based.

    Without ``exact`` the key matches in any case, as confd reads it.
    """
    current: str | None = None
    header = re.compile(r"^\s*\[\s*([^\]]+?)\s*\]")
    assign = re.compile(r'^\s*["\']?' + re.escape(key) + r'["\']?\s*=',
                        0 if exact else re.IGNORECASE)
    for number, line in enumerate(text.splitlines(), 1):
        m = header.match(line)
        if m:
            current = m.group(1).strip("\"'").lower()
            continue
        if (table is None or current == table) and assign.match(line):
            return number
    return None


def _table_line(text: str, table: str) -> int | None:
    rx = re.compile(r"^\s*\[\s*[\"']?" + re.escape(table) + r"[\"']?\s*\]", re.IGNORECASE)
    for number, line in enumerate(text.splitlines(), 1):
        if rx.match(line):
            return number
    return None


def _fold(path: Path, text: str, table: Mapping[str, Any], where: str | None
          ) -> dict[str, tuple[str, Any]]:
    """Keys lower-cased (confd matches them case-insensitively) → (as written, value)."""
    out: dict[str, tuple[str, Any]] = {}
    for key, value in table.items():
        low = key.lower()
        if low in out:
            raise ResourceError(path, f"{out[low][0]!r} and {key!r} are the same key (confd "
                                      "compares key names without case); keep one",
                                _line_of(text, where, key, exact=True))
        out[low] = (key, value)
    return out


def parse_resource(text: str, path: Path | str, confdir: Path | str, *,
                   global_prefix: str = "", prefix_join: bool = False,
                   euid: int | None = None, egid: int | None = None) -> TemplateResource:
    """Parse one resource file's ``text`` (named ``path`` in errors).

    ``global_prefix`` is the ``-prefix`` setting: when non-empty it replaces
    the resource's prefix (confd v0.12+), or is joined in front of it with
    ``prefix_join`` (confd ≤ 0.11, spec §10).  Raises :class:`ResourceError`.
    """
    path = Path(path)
    confdir = Path(confdir)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        m = _TOML_AT.search(msg)
        line = int(m.group(1)) if m else None
        bare = _TOML_AT.sub("", msg).strip()
        if m:
            bare += f" (column {m.group(2)})"
        raise ResourceError(path, f"invalid TOML: {bare}", line) from None
    top = _fold(path, text, doc, None)
    if "template" not in top:
        raise ResourceError(path, "no [template] table; a resource file needs [template] with "
                                  "at least src = \"<file in templates/>\" and dest = \"<path>\"")
    written_name, table = top["template"]
    if not isinstance(table, dict):
        raise ResourceError(path, f"{written_name} must be a table: write [template]",
                            _line_of(text, None, written_name))
    fields = _fold(path, text, table, "template")
    warnings: list[str] = []

    def line_of(key: str) -> int | None:
        return _line_of(text, "template", fields[key][0] if key in fields else key)

    def string(key: str) -> str | None:
        if key not in fields:
            return None
        value = fields[key][1]
        if not isinstance(value, str):
            hint = ' (quote it: mode = "0644")' if key == "mode" else ""
            raise ResourceError(path, f"{key} must be a string, not {_toml_type(value)}{hint}",
                                line_of(key))
        return value

    def integer(key: str) -> int:
        if key not in fields:
            return -1
        value = fields[key][1]
        if isinstance(value, bool) or not isinstance(value, int):
            raise ResourceError(path, f"{key} must be a number (a numeric id such as 0), not "
                                      f"{_toml_type(value)}", line_of(key))
        if value < -1:
            raise ResourceError(path, f"{key} = {value} is not a valid id", line_of(key))
        return value

    for low, (written, _value) in fields.items():
        if low in KNOWN_KEYS:
            continue
        hint = _NEVER_IMPLEMENTED.get(low)
        where = line_of(low)
        at = f"line {where}: " if where else ""
        if hint:
            warnings.append(f"{at}{written!r} is ignored: {hint}")
        else:
            warnings.append(f"{at}unknown key {written!r} is ignored (known: "
                            f"{', '.join(KNOWN_KEYS)})")
    for low, (written, _value) in top.items():
        if low != "template":
            warnings.append(f"top-level {written!r} is ignored: only [template] is read")

    src = string("src")
    if not src:
        raise ResourceError(path, 'empty src template: set src = "<file under templates/>"',
                            line_of("src") or _table_line(text, written_name))
    dest = string("dest")
    if not dest:
        raise ResourceError(path, 'empty dest: set dest = "<path of the file to write>"',
                            line_of("dest") or _table_line(text, written_name))
    keys_value = fields.get("keys", ("keys", []))[1]
    if not isinstance(keys_value, list) or not all(isinstance(k, str) for k in keys_value):
        raise ResourceError(path, 'keys must be an array of strings, e.g. keys = ["/services"]',
                            line_of("keys"))
    prefix = string("prefix") or ""
    if global_prefix:
        prefix = gopath.join("/", global_prefix, prefix) if prefix_join else global_prefix
    if not prefix.startswith("/"):
        prefix = "/" + prefix
    mode: int | None = None
    mode_text = string("mode")
    if mode_text is not None and mode_text != "":
        try:
            mode, warning = parse_mode(mode_text)
        except ValueError as exc:
            raise ResourceError(path, str(exc), line_of("mode")) from None
        if warning:
            where = line_of("mode")
            warnings.append((f"line {where}: " if where else "") + warning)
    uid = integer("uid")
    gid = integer("gid")
    if uid == -1:
        uid = os.geteuid() if euid is None else euid
    if gid == -1:
        gid = os.getegid() if egid is None else egid
    return TemplateResource(
        path=path,
        confdir=confdir,
        src=Path(os.path.normpath(os.path.join(confdir / "templates", src.lstrip("/")))),
        dest=Path(dest),
        keys=tuple(keys_value),
        prefix=prefix,
        uid=uid,
        gid=gid,
        mode=mode,
        check_cmd=string("check_cmd") or None,
        reload_cmd=string("reload_cmd") or None,
        warnings=tuple(warnings),
    )


def _toml_type(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return type(value).__name__


def load_resource(path: Path | str, confdir: Path | str, **kw: Any) -> TemplateResource:
    """Read and parse one resource file (see :func:`parse_resource`)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ResourceError(path, f"cannot read: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ResourceError(path, "invalid TOML: not UTF-8 text", line) from None
    return parse_resource(text, path, confdir, **kw)


def _walk(directory: Path) -> Iterator[Path]:
    """Go's ``filepath.Walk`` order: entries sorted by name, depth first, no dir symlinks."""
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return
    for name in names:
        entry = directory / name
        if entry.is_dir() and not entry.is_symlink():
            yield from _walk(entry)
        elif name.endswith("toml"):
            # filepath.Match("*toml", name); a symlink to a file is read through the link
            yield entry


def find_resources(confdir: Path | str) -> list[Path]:
    """Every ``*toml`` under ``<confdir>/conf.d``, in confd's order.

    Raises :class:`ResourceError` when ``conf.d`` is missing or not a directory
    (confd: "confdir without conf.d is an error").
    """
    conf_d = Path(confdir) / "conf.d"
    if not conf_d.is_dir():
        if not Path(confdir).is_dir():
            raise ResourceError(confdir, "confdir does not exist; pass -confdir <dir> holding "
                                         "conf.d/ and templates/")
        raise ResourceError(conf_d, "missing conf.d directory: the template resources "
                                    "(*.toml) go there")
    return list(_walk(conf_d))


@dataclass(frozen=True, slots=True)
class Loaded:
    """The outcome of loading a confdir: what loaded, and what did not."""

    resources: tuple[TemplateResource, ...]
    errors: tuple[ResourceError, ...]


def load_confdir(confdir: Path | str, **kw: Any) -> Loaded:
    """Load every resource of ``confdir``; a bad file is reported, the others still load.

    confd gives up entirely on one bad TOML (onetime) or exits (interval);
    skipping only that resource is spec §12's fix.  Raises
    :class:`ResourceError` for a missing ``conf.d``.
    """
    good: list[TemplateResource] = []
    bad: list[ResourceError] = []
    for path in find_resources(confdir):
        try:
            good.append(load_resource(path, confdir, **kw))
        except ResourceError as exc:
            bad.append(exc)
    return Loaded(tuple(good), tuple(bad))


def union_keys(resources: Sequence[TemplateResource]) -> list[str]:
    """The smallest set of backend keys covering every resource's keys.

    A key under another listed key is dropped (``/a`` covers ``/a/b``), so a
    watch is opened once per subtree.
    """
    keys = sorted({k for r in resources for k in r.full_keys})
    out: list[str] = []
    for key in keys:
        if not any(covers(kept, key) for kept in out):
            out.append(key)
    return out


__all__ = ["DEFAULT_MODE", "KNOWN_KEYS", "Loaded", "ResourceError", "TemplateResource",
           "covers", "find_resources", "load_confdir", "load_resource", "parse_mode",
           "parse_resource", "union_keys"]
