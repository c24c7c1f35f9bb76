"""Command-line arguments → unit names and unit files, the way fleetctl read them.

An argument is a path (``instances/apache@8082.service``, ``./mongo.service``)
or a bare name (``hello``).  fleetctl's rules (fleet.md §2.4, §2.5):

* a path without an extension gets ``.service`` (``hello`` → ``hello.service``);
* the unit name is the path's base name — for a symlink, the *link's* name
  (``instances/apache@8082.service`` → ``../apache@.service`` is the
  instance ``apache@8082.service`` with the template's content);
* a name without a known unit type gets ``.service`` appended.  fleetctl's
  list of known types lacked ``.target``, ``.slice`` and others, so
  ``foo.target`` became ``foo.target.service``; flotte knows every type
  fleet's API accepts (a deliberate fix, docs/cli.md);
* the content comes from the file at the path; for an instance without its
  own file, from the template in the registry, else from the template file
  next to the path (``dirname(path)/apache@.service``).

Local files are read with go-systemd's lexer (what fleetctl sent), so the
unit hashes match fleet's.  ``[X-Fleet]`` keys fleet does not know are
reported as warnings (fleetctl did so too), which is how the seed's
``ConditionMachineOf=`` typo gets noticed.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from flotte.unit import names
from flotte.unit.errors import Severity
from flotte.unit.parser import parse
from flotte.unit.serialize import unit_hash
from flotte.unit.xfleet import parse_x_fleet

#: No unit file is this big; refuse to read more (a mistyped path to a huge file).
MAX_UNIT_FILE = 16 * 1024 * 1024
_GLOB_CHARS = frozenset("*?[")

Options = tuple[tuple[str, str, str], ...]


class SourceError(Exception):
    """A unit's content could not be found or read; the message says which file and why."""


@dataclass(frozen=True, slots=True)
class LocalUnit:
    """A unit file read from disk: the path read, its options, and the file it resolved to."""

    path: str
    options: Options
    warnings: tuple[str, ...] = ()
    real_path: str = ""

    @property
    def hash(self) -> str:
        return unit_hash(self.options)


def _go_ext(path: str) -> str:
    """Go's ``filepath.Ext``: from the last dot of the last element, or ``""``."""
    base = path.rsplit("/", 1)[-1]
    dot = base.rfind(".")
    return base[dot:] if dot >= 0 else ""


def with_default_type(arg: str) -> str:
    """fleetctl's ``maybeAppendDefaultUnitType``: ``hello`` → ``hello.service`` (a path)."""
    return arg if _go_ext(arg) else arg + ".service"


def _base(path: str) -> str:
    stripped = path.rstrip("/")
    if not stripped:
        return "/" if path else "."
    return stripped.rsplit("/", 1)[-1]


def unit_name(arg: str) -> str:
    """The unit an argument names: its base name, ``.service`` added unless typed.

    ``instances/apache@8082.service`` → ``apache@8082.service``; ``hello`` →
    ``hello.service``; ``foo.target`` → ``foo.target`` (fleetctl:
    ``foo.target.service``).
    """
    base = _base(with_default_type(arg))
    suffix = base.rsplit(".", 1)[-1] if "." in base else ""
    if suffix in names.FLEET_UNIT_TYPES:
        return base
    return base + ".service"


def check_name(name: str) -> str | None:
    """Why fleet's API would refuse ``name`` (its own words and a fix), or ``None``."""
    try:
        names.fleet_api_check(name)
    except names.InvalidUnitName as exc:
        return exc.message
    return None


def is_template(name: str) -> bool:
    """``foo@.service``: stored only, never placed (fleet.md §2.4)."""
    stem = name.rsplit(".", 1)[0]
    return "@" in stem and stem.split("@", 1)[1] == ""


def template_of(name: str) -> str | None:
    """``foo@.service`` for the instance ``foo@bar.service``; ``None`` for anything else."""
    stem, dot, suffix = name.rpartition(".")
    if not dot or "@" not in stem:
        return None
    prefix, _, instance = stem.partition("@")
    if not prefix or not instance:
        return None
    return f"{prefix}@.{suffix}"


def instance_example(template: str) -> str:
    """``foo@1.service`` for ``foo@.service`` (for messages)."""
    return template.replace("@.", "@1.", 1)


def is_pattern(arg: str) -> bool:
    return any(c in _GLOB_CHARS for c in arg)


def match_units(pattern: str, known: Iterable[str]) -> list[str]:
    """Registry units matching a glob the shell left alone (``'apache@*'``), sorted."""
    name = unit_name(pattern)
    return sorted(n for n in known if fnmatch.fnmatchcase(n, name))


def resolve_existing(args: Sequence[str], known: Iterable[str]) -> tuple[list[str], list[str]]:
    """Arguments → (unit names in the registry, arguments naming none), for the verbs
    that act on existing units.  Globs not matching a local file match registry names.
    Each name appears once, in argument order."""
    known_set = set(known)
    found: list[str] = []
    missing: list[str] = []
    for arg in args:
        if is_pattern(arg) and not os.path.lexists(arg):
            hits = match_units(arg, known_set)
            if not hits:
                missing.append(unit_name(arg))
            found.extend(h for h in hits if h not in found)
            continue
        name = unit_name(arg)
        if name in known_set:
            if name not in found:
                found.append(name)
        else:
            missing.append(name)
    return found, missing


def read_unit_file(path: str, name: str) -> LocalUnit:
    """Read and lex the unit file at ``path`` as unit ``name`` (symlinks followed).

    Raises :class:`SourceError` when it cannot be read or lexed.
    """
    try:
        if os.path.isdir(path):
            raise SourceError(f"{path} is a directory, not a unit file")
        with open(path, "rb") as fh:
            data = fh.read(MAX_UNIT_FILE + 1)
    except OSError as exc:
        raise SourceError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_UNIT_FILE:
        raise SourceError(f"{path} is larger than {MAX_UNIT_FILE // (1024 * 1024)} MiB; "
                          "not a unit file")
    result = parse(data, "go-systemd")
    if result.fatal is not None:
        where = f"{path}:{result.fatal.line}" if result.fatal.line else path
        raise SourceError(f"{where}: {result.fatal.message}")
    if not result.options:
        raise SourceError(f"{path} is empty: a unit needs at least one option")
    _, diags = parse_x_fleet(result.options, name, path=path)
    warnings = tuple(f"{d.file or path}:{d.line}: {d.message}" if d.line else
                     f"{d.file or path}: {d.message}"
                     for d in diags if d.severity is Severity.WARNING)
    return LocalUnit(path, tuple((o.section, o.key, o.value) for o in result.options),
                     warnings, os.path.realpath(path))


def local_file(arg: str) -> str | None:
    """The file an argument names, if it exists (``hello`` → ``hello.service``)."""
    path = with_default_type(arg)
    return path if os.path.exists(path) else None


def local_template(arg: str, name: str) -> str | None:
    """``dirname(arg)/foo@.service`` for an instance argument, if that file exists."""
    template = template_of(name)
    if template is None:
        return None
    path = os.path.join(os.path.dirname(with_default_type(arg)), template)
    return path if os.path.exists(path) else None


__all__ = [
    "LocalUnit", "Options", "SourceError", "check_name", "instance_example", "is_pattern",
    "is_template", "local_file", "local_template", "match_units", "read_unit_file",
    "resolve_existing", "template_of", "unit_name", "with_default_type",
]
