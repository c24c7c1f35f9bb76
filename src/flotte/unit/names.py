"""Unit names: validation, templates and instances, and ``systemd-escape``.

Everything here is a pure function of its arguments (no I/O), so it can run in
the API server, the CLI and the agent alike.  Two rule sets live side by side:

systemd (``src/basic/unit-name.c``)
    What a unit name *is*.  ``prefix[@instance].type``; the prefix uses ASCII
    letters, digits and ``:-_.\\``, the instance may also contain ``@``; at
    most 255 bytes; the type is one of :data:`UNIT_TYPES`.  A name ending in
    ``@`` right before the suffix is a *template* (``foo@.service``); a
    non-empty text between the first ``@`` and the suffix is an *instance*.

fleet (``api/units.go`` ``ValidateName`` and ``fleetctl``'s name mangling)
    What fleet's HTTP API accepted and how ``fleetctl`` turned a command-line
    argument into a unit name.  Kept separate (:func:`fleet_api_check`,
    :func:`fleetctl_unit_name`) because fleet's rules differ in small ways
    (256 bytes, ``busname``/``snapshot`` types, no check of the template/
    instance shape) and fleet clients depend on them.

Escaping follows ``systemd-escape``: a byte that is not an ASCII letter,
digit, ``:``, ``_`` or ``.`` becomes ``\\xHH`` (one escape per UTF-8 byte),
``/`` becomes ``-``, and a leading ``.`` is escaped so that escaped names
never start with a dot.  Two flavours are offered where they disagree:
``strict=True`` is systemd's (refuses ``..``, rejects malformed escapes and
un-normalized paths), ``strict=False`` is go-systemd's ``unit/escape.go``
(never fails, keeps malformed ``\\x`` sequences verbatim, does not drop
``.`` path components).  fleet used the latter.

Strings are Python ``str``; bytes that are not valid UTF-8 are carried as
surrogate escapes (``os.fsdecode`` convention), so ``escape(os.fsdecode(p))``
equals ``systemd-escape`` run on the raw bytes of ``p``, and unescaping gives
those bytes back.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from functools import lru_cache

__all__ = [
    "FLEETCTL_UNIT_TYPES",
    "FLEET_UNIT_TYPES",
    "UNIT_NAME_MAX",
    "UNIT_TYPES",
    "InvalidUnitName",
    "NameFlags",
    "UnitName",
    "check_safe",
    "escape",
    "fleet_api_check",
    "fleetctl_unit_name",
    "from_path",
    "from_path_instance",
    "instance",
    "is_valid",
    "path_escape",
    "path_unescape",
    "prefix",
    "replace_instance",
    "simplify_path",
    "split",
    "template_escape",
    "template_of",
    "unescape",
]

#: Unit type suffixes systemd knows (``unit_type_table``), with the dot.
UNIT_TYPES: tuple[str, ...] = (
    ".service",
    ".socket",
    ".target",
    ".device",
    ".mount",
    ".automount",
    ".swap",
    ".timer",
    ".path",
    ".slice",
    ".scope",
)

#: systemd refuses ``strlen(name) >= UNIT_NAME_MAX (256)``: at most 255 bytes.
UNIT_NAME_MAX = 255

#: Linux ``NAME_MAX`` / ``PATH_MAX``: systemd's ``path_is_valid`` limits.
_NAME_MAX = 255
_PATH_MAX = 4096

#: Types fleet's API accepted (``validUnitTypes`` in ``api/units.go``).
FLEET_UNIT_TYPES: frozenset[str] = frozenset(
    {
        "automount",
        "busname",
        "device",
        "mount",
        "path",
        "scope",
        "service",
        "slice",
        "snapshot",
        "socket",
        "swap",
        "target",
        "timer",
    }
)
#: Types fleet accepted for template and instance names (fleet.md §2.5).
_FLEET_TEMPLATE_TYPES: frozenset[str] = frozenset({"path", "service", "socket", "target", "timer"})
#: Suffixes ``fleetctl`` recognises before appending ``.service``
#: (``unit.RecognizedUnitType``); note ``.target`` is *not* among them.
FLEETCTL_UNIT_TYPES: tuple[str, ...] = (
    ".service",
    ".socket",
    ".timer",
    ".path",
    ".device",
    ".mount",
    ".automount",
)

_ALNUM = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
#: systemd's VALID_CHARS (prefix characters); instances may add ``@``.
_VALID_CHARS = frozenset(_ALNUM + ":-_.\\")
_VALID_CHARS_WITH_AT = _VALID_CHARS | {"@"}
_ALLOWED_TEXT = "ASCII letters, digits and ':-_.\\@'"
_TYPES_TEXT = ", ".join(UNIT_TYPES)

_TYPE_ALT = "|".join(re.escape(t[1:]) for t in UNIT_TYPES)
# prefix (no '@'), optional '@' + instance (may contain '@'), '.' + known type.
# The type alternation contains no '.', so the suffix is always after the last dot.
_NAME_RE = re.compile(rf"([A-Za-z0-9:_.\\-]+)(?:@([A-Za-z0-9:_.\\@-]*))?(\.(?:{_TYPE_ALT}))")
_INSTANCE_RE = re.compile(r"[A-Za-z0-9:_.\\@-]+")
_PREFIX_RE = re.compile(r"[A-Za-z0-9:_.\\-]+")


class NameFlags(enum.IntFlag):
    """Which shapes of name a check accepts (systemd's ``UnitNameFlags``)."""

    PLAIN = 1  # foo.service
    INSTANCE = 2  # foo@bar.service
    TEMPLATE = 4  # foo@.service
    ANY = 7


class InvalidUnitName(ValueError):
    """A unit name (or a string meant to become one) is not acceptable.

    ``message`` says what is wrong and how to fix it; ``name`` is the
    offending input, ``fix`` the remedy on its own.  For
    :func:`fleet_api_check`, ``fleet_message`` is the exact text fleet's API
    answered with, so a fleet-compatible server can return it verbatim.
    """

    def __init__(
        self,
        message: str,
        *,
        name: str | None = None,
        fix: str | None = None,
        fleet_message: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.name = name
        self.fix = fix
        self.fleet_message = fleet_message


def _q(s: str, limit: int = 80) -> str:
    """Quote *s* for a message, shortening absurdly long input."""
    if len(s) > limit:
        s = s[:limit] + "…"
    # Plain quotes keep backslashes readable ('a-b\x2dc', not 'a-b\\x2dc').
    if s.isprintable() and "'" not in s:
        return f"'{s}'"
    return repr(s)


def _invalid(name: str, problem: str, fix: str, *, what: str = "unit name") -> InvalidUnitName:
    return InvalidUnitName(f"{what} {_q(name)} {problem}; {fix}", name=name, fix=fix)


def _char_problem(ch: str) -> str:
    shown = repr(ch) if ch.isprintable() else f"character U+{ord(ch):04X}"
    return f"contains {shown}: unit names may only use {_ALLOWED_TEXT}"


# --------------------------------------------------------------------------- names


@dataclass(frozen=True, slots=True)
class UnitName:
    """A unit name split into its parts.

    ``instance`` is ``None`` for a plain unit, ``""`` for a template
    (``foo@.service``) and the instance text otherwise.  ``suffix`` keeps its
    dot (``".service"``).
    """

    prefix: str
    instance: str | None
    suffix: str

    @property
    def name(self) -> str:
        """The full unit name (``%n``)."""
        if self.instance is None:
            return self.prefix + self.suffix
        return f"{self.prefix}@{self.instance}{self.suffix}"

    @property
    def stem(self) -> str:
        """The name without its type suffix (``%N``)."""
        return self.name[: -len(self.suffix)]

    @property
    def type(self) -> str:
        """The unit type without the dot (``"service"``)."""
        return self.suffix[1:]

    @property
    def is_plain(self) -> bool:
        return self.instance is None

    @property
    def is_template(self) -> bool:
        return self.instance == ""

    @property
    def is_instance(self) -> bool:
        return bool(self.instance)

    @property
    def flags(self) -> NameFlags:
        """The :class:`NameFlags` bit describing this name's shape."""
        if self.instance is None:
            return NameFlags.PLAIN
        return NameFlags.INSTANCE if self.instance else NameFlags.TEMPLATE

    @property
    def template(self) -> str | None:
        """``foo@.service`` for ``foo@bar.service`` or ``foo@.service``; ``None`` if plain."""
        if self.instance is None:
            return None
        return f"{self.prefix}@{self.suffix}"

    def __str__(self) -> str:
        return self.name


def is_valid(name: str, flags: NameFlags = NameFlags.ANY) -> bool:
    """systemd's ``unit_name_is_valid``: is *name* a unit name of a shape in *flags*?

    Rules (``unit-name.c``, ``test-unit-name.c``): non-empty, at most 255
    bytes, the text after the last ``.`` is a known type, the text before it
    uses only VALID_CHARS plus ``@``, and the first ``@`` is not at the start
    (``@.service`` and ``@foo.service`` are invalid).  ``%`` is not a name
    character, so unexpanded specifiers (``foo@%i.service``) are invalid.
    ``.test.service`` is valid: only a dot in *first* position before the
    suffix would leave the prefix empty (``.service``).
    """
    if not flags or len(name) > UNIT_NAME_MAX:
        return False
    m = _NAME_RE.fullmatch(name)
    if m is None:
        return False
    inst = m.group(2)
    if inst is None:
        kind = NameFlags.PLAIN
    else:
        kind = NameFlags.INSTANCE if inst else NameFlags.TEMPLATE
    return bool(kind & flags)


def _diagnose(name: str) -> InvalidUnitName:
    """Explain why *name* fails :func:`is_valid` with ``NameFlags.ANY``."""
    if not name:
        return _invalid(name, "is empty", "give a unit name such as 'web.service'")
    for ch in name:
        if ch not in _VALID_CHARS_WITH_AT:
            if ch == "%":
                return _invalid(
                    name,
                    "contains '%': specifiers such as %i are not expanded in unit names",
                    "write the instance value itself (e.g. 'foo@1.service'), "
                    "escaping it with `flotte escape` if needed",
                )
            if ch == "/":
                return _invalid(
                    name,
                    _char_problem(ch),
                    "pass the unit file's base name, or turn a path into a name with "
                    "`flotte escape --path`",
                )
            return _invalid(name, _char_problem(ch), "escape other characters with `flotte escape`")
    if len(name) > UNIT_NAME_MAX:
        return _invalid(
            name,
            f"is {len(name)} bytes long: unit names may be at most {UNIT_NAME_MAX} bytes",
            "shorten the prefix or the instance",
        )
    dot = name.rfind(".")
    if dot == -1:
        return _invalid(
            name,
            "has no type suffix",
            f"append one of {_TYPES_TEXT} (e.g. {name + '.service'!r})",
        )
    if name[dot:] not in UNIT_TYPES:
        return _invalid(
            name,
            f"has unknown type suffix {name[dot:]!r}",
            f"use one of {_TYPES_TEXT}",
        )
    if dot == 0:
        return _invalid(
            name,
            "has an empty prefix",
            f"put a name before the suffix (e.g. {'web' + name!r})",
        )
    if name.startswith("@"):
        return _invalid(
            name,
            "starts with '@': the text before the first '@' (the template prefix) must not be empty",
            "name templates like 'foo@.service' and instances like 'foo@bar.service'",
        )
    # _NAME_RE and the checks above agree; reaching here means a bug.
    raise AssertionError(f"unit name {name!r} rejected for no known reason")  # pragma: no cover


_SHAPE = {
    NameFlags.PLAIN: "a plain unit name",
    NameFlags.INSTANCE: "an instance name",
    NameFlags.TEMPLATE: "a template name",
}


def _shape_text(flags: NameFlags) -> str:
    parts = [text for bit, text in _SHAPE.items() if bit & flags]
    return " or ".join(parts) if parts else "no name at all"


@lru_cache(maxsize=4096)
def _split(name: str) -> UnitName:
    if len(name) <= UNIT_NAME_MAX:
        m = _NAME_RE.fullmatch(name)
        if m is not None:
            return UnitName(m.group(1), m.group(2), m.group(3))
    raise _diagnose(name)


def split(name: str, flags: NameFlags = NameFlags.ANY) -> UnitName:
    """Split a valid unit name into prefix, instance and suffix.

    Raises :class:`InvalidUnitName` (with the reason) if *name* is not valid
    or its shape is not in *flags*.  Results are cached: the same few names
    are split again and again while units load.
    """
    parts = _split(name)
    if not parts.flags & flags:
        kind = _SHAPE[parts.flags]
        raise InvalidUnitName(
            f"unit name {_q(name)} is {kind}, but {_shape_text(flags)} is required here; "
            f"use {_shape_text(flags)}",
            name=name,
            fix=f"use {_shape_text(flags)}",
        )
    return parts


def prefix(name: str) -> str:
    """``unit_name_to_prefix``: the text before the first ``@`` (or before the suffix)."""
    return _split(name).prefix


def instance(name: str) -> str | None:
    """``unit_name_to_instance``: ``None`` if plain, ``""`` for a template, else the instance."""
    return _split(name).instance


def template_of(name: str) -> str:
    """``unit_name_template``: ``foo@bar.service`` → ``foo@.service``.

    Templates map to themselves; plain names are an error, as in systemd.
    """
    parts = _split(name)
    if parts.instance is None:
        raise InvalidUnitName(
            f"unit name {_q(name)} is neither a template nor an instance, so it has no "
            "template; only names like 'foo@bar.service' or 'foo@.service' do",
            name=name,
            fix="use a template or instance name",
        )
    return f"{parts.prefix}@{parts.suffix}"


def _check_instance(value: str) -> None:
    """``unit_instance_is_valid``: non-empty, VALID_CHARS plus ``@``."""
    if _INSTANCE_RE.fullmatch(value):
        return
    if not value:
        raise InvalidUnitName(
            "instance name is empty; give the instance text (e.g. 'foo@1.service')",
            name=value,
            fix="give a non-empty instance",
        )
    bad = next(ch for ch in value if ch not in _VALID_CHARS_WITH_AT)
    raise _invalid(
        value,
        _char_problem(bad),
        "escape the instance with `flotte escape` (or `--path` for paths)",
        what="instance",
    )


def replace_instance(name: str, instance: str) -> str:
    """``unit_name_replace_instance``: ``foo@.service`` + ``bar`` → ``foo@bar.service``.

    *name* must be a template or an instance; the result must be a valid
    instance name (so it cannot exceed 255 bytes).
    """
    parts = _split(name)
    if parts.instance is None:
        raise InvalidUnitName(
            f"unit name {_q(name)} is not a template, so it has no instance to replace; "
            "templates look like 'foo@.service'",
            name=name,
            fix="use a template name",
        )
    _check_instance(instance)
    result = f"{parts.prefix}@{instance}{parts.suffix}"
    if len(result) > UNIT_NAME_MAX:
        raise _invalid(
            result,
            f"would be {len(result)} bytes long: unit names may be at most {UNIT_NAME_MAX} bytes",
            "use a shorter instance",
        )
    return result


# ------------------------------------------------------------------------ escaping


def _escape_table() -> tuple[str, ...]:
    table = []
    for b in range(256):
        ch = chr(b)
        if ch == "/":
            table.append("-")
        elif ch in _ALNUM or ch in ":_.":
            table.append(ch)
        else:
            table.append(f"\\x{b:02x}")
    return tuple(table)


_ESCAPE = _escape_table()
_NEEDS_ESCAPE_RE = re.compile(r"[^A-Za-z0-9:_./]")


def _to_bytes(s: str, what: str) -> bytes:
    try:
        return s.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError as exc:
        raise InvalidUnitName(
            f"{what} {_q(s)} contains a lone surrogate (U+{ord(s[exc.start]):04X}) that "
            "has no UTF-8 encoding; pass real text or bytes decoded with os.fsdecode",
            name=s,
            fix="pass valid text",
        ) from None


def escape(s: str) -> str:
    """``systemd-escape STRING`` (``unit_name_escape``).

    ``/`` → ``-``; ASCII letters, digits, ``:``, ``_`` and ``.`` are kept;
    every other byte (including ``-`` and ``\\``) becomes ``\\xHH`` with
    lower-case hex; a leading ``.`` is escaped too ("do not create units with a
    leading '.', like for /.dotdir mount points").
    """
    if not _NEEDS_ESCAPE_RE.search(s):
        out = s.replace("/", "-")
        return "\\x2e" + out[1:] if out.startswith(".") else out
    data = _to_bytes(s, "string")
    table = _ESCAPE
    out = "".join([table[b] for b in data])
    return "\\x2e" + out[1:] if out.startswith(".") else out


_ESCAPE_SPLIT_RE = re.compile(r"\\x([0-9a-fA-F]{2})")


def _malformed_escape(s: str) -> InvalidUnitName:
    at = s.index("\\")
    # Find the first backslash that does not start a valid \xHH sequence.
    for m in re.finditer(r"\\", s):
        if not _ESCAPE_SPLIT_RE.match(s, m.start()):
            at = m.start()
            break
    bad = s[at : at + 4]
    return _invalid(
        s,
        f"contains the malformed escape {_q(bad)}: a backslash must start a \\xHH sequence "
        "(two hex digits)",
        "produce escaped names with `flotte escape`",
        what="escaped string",
    )


def _unescape_bytes(s: str, strict: bool) -> bytes:
    if "\\" not in s:
        return _to_bytes(s.replace("-", "/"), "escaped string")
    pieces = _ESCAPE_SPLIT_RE.split(s)
    out = bytearray()
    for i, piece in enumerate(pieces):
        if i % 2:
            out.append(int(piece, 16))
        else:
            if strict and "\\" in piece:
                raise _malformed_escape(s)
            out += _to_bytes(piece.replace("-", "/"), "escaped string")
    return bytes(out)


def unescape(s: str, *, strict: bool = True) -> str:
    """``systemd-escape --unescape STRING`` (``unit_name_unescape``).

    ``-`` → ``/`` and ``\\xHH`` → that byte.  With ``strict`` (systemd) a
    backslash that does not start ``\\xHH`` is an error, and so is an escaped
    NUL (systemd would silently truncate the string there).  With
    ``strict=False`` (go-systemd) malformed sequences are kept verbatim and
    nothing fails.  go-systemd parsed the hex with ``ParseInt(…, 16, 8)`` and
    therefore left ``\\x80``–``\\xff`` undecoded; we decode them, so UTF-8
    escapes such as ``\\xc3\\xbc`` round-trip in both flavours.
    """
    data = _unescape_bytes(s, strict)
    if strict and 0 in data:
        raise _invalid(
            s,
            "contains an escaped NUL byte (\\x00), which no name or path can hold",
            "remove the \\x00 escape",
            what="escaped string",
        )
    return data.decode("utf-8", "surrogateescape")


def simplify_path(path: str) -> str:
    """systemd's ``path_simplify``: collapse ``//`` and ``/./``, drop a trailing
    ``/``, keep ``..`` (whether ``..`` is allowed is the caller's check)."""
    if "//" not in path and "/." not in path and not path.endswith("/"):
        return path
    absolute, comps = _simplify_path(path)
    out = "/".join(comps)
    if absolute:
        out = "/" + out
    return out or ("/" if absolute else ".")


def _simplify_path(path: str) -> tuple[bool, list[str]]:
    """systemd's ``path_simplify``: drop empty and ``.`` components."""
    comps = [c for c in path.split("/") if c and c != "."]
    return path.startswith("/"), comps


def _check_components(path: str, comps: list[str], what: str) -> None:
    """The ``path_is_normalized``/``path_is_valid`` checks that remain after simplifying."""
    if ".." in comps:
        raise _invalid(
            path,
            "is not a normalized file system path: it contains a '..' component",
            "resolve it first (e.g. with `realpath`)",
            what=what,
        )
    total = 0
    for c in comps:
        n = len(_to_bytes(c, what))
        total += n + 1
        if n > _NAME_MAX:
            raise _invalid(
                path,
                f"has a component of {n} bytes; file names may be at most {_NAME_MAX} bytes",
                "shorten that component",
                what=what,
            )
    if total >= _PATH_MAX:
        raise _invalid(
            path,
            f"is {total} bytes long; paths must be shorter than {_PATH_MAX} bytes",
            "use a shorter path",
            what=what,
        )


def path_escape(path: str, *, strict: bool = True) -> str:
    """``systemd-escape --path PATH`` (``unit_name_path_escape``).

    Strict (systemd): simplify the path (duplicate, leading and trailing
    ``/`` and ``.`` components go away), map the root (and the empty string)
    to ``-``, refuse ``..`` components and over-long paths, then
    :func:`escape`.  ``/foo//bar/baz/`` → ``foo-bar-baz``, ``/.foo/.bar`` →
    ``\\x2efoo-.bar``.

    ``strict=False`` is go-systemd's ``UnitNamePathEscape``: it only collapses
    slashes, so ``.`` and ``..`` components are kept and escaped like any text
    (``/.`` → ``\\x2e`` where systemd gives ``-``), and it never fails.
    """
    if not strict:
        return _go_path_escape(path)
    absolute, comps = _simplify_path(path)
    if not comps:
        if path and not absolute:
            # systemd keeps "." for a relative path that simplifies to nothing,
            # and path_is_normalized(".") is false.
            raise _invalid(
                path,
                "does not name a file system path",
                "pass an absolute path such as '/srv/data'",
                what="path",
            )
        return "-"
    _check_components(path, comps, "path")
    return escape("/".join(comps))


def _go_path_escape(path: str) -> str:
    out: list[str] = []
    in_slashes = False
    start = True
    for b in _to_bytes(path, "path"):
        if b == 0x2F:  # '/'
            in_slashes = True
            continue
        if in_slashes:
            in_slashes = False
            if not start:
                out.append("-")
        if start and b == 0x2E:  # leading '.'
            out.append("\\x2e")
        else:
            out.append(_ESCAPE[b])
        start = False
    return "".join(out) or "-"


def path_unescape(s: str, *, strict: bool = True) -> str:
    """``systemd-escape --unescape --path STRING`` (``unit_name_path_unescape``).

    Strict (systemd): ``-`` alone is ``/``; otherwise unescape, refuse a
    leading or trailing ``/`` (``-foo``, ``foo-``), prefix ``/`` and require a
    normalized path: no empty components (``foo--bar``), no ``.`` or ``..``.
    The empty string is refused.

    ``strict=False`` (go-systemd ``UnitNamePathUnescape``): unescape
    leniently and prefix ``/`` unless the result already starts with one;
    never fails.
    """
    if not strict:
        out = unescape(s, strict=False)
        return out if out.startswith("/") else "/" + out
    what = "escaped path"
    if not s:
        raise _invalid(s, "is empty", "the root directory is escaped as '-'", what=what)
    if s == "-":
        return "/"
    w = unescape(s)
    if w.startswith("/"):
        raise _invalid(
            s,
            "unescapes to a path with a leading '/': the leading slash is implied and "
            "must not be written",
            f"drop the leading '-' (e.g. {s.lstrip('-') or '-'!r})",
            what=what,
        )
    if w.endswith("/"):
        raise _invalid(
            s,
            "unescapes to a path with a trailing '/'",
            f"drop the trailing '-' (e.g. {s.rstrip('-')!r})",
            what=what,
        )
    comps = w.split("/")
    if "" in comps:
        raise _invalid(
            s,
            "contains an empty path component ('--' unescapes to '//')",
            "write a single '-' between components, and '\\x2d' for a literal '-'",
            what=what,
        )
    if "." in comps:
        raise _invalid(
            s,
            "contains a '.' path component, so it is not a normalized path",
            "remove the '.' component",
            what=what,
        )
    _check_components(s, comps, what)
    return "/" + w


def _check_suffix(suffix: str) -> None:
    """``unit_suffix_is_valid``: a dot followed by a known type."""
    if suffix not in UNIT_TYPES:
        fix = f"use one of {_TYPES_TEXT}"
        if "." + suffix in UNIT_TYPES:
            fix = f"write it with the dot: {'.' + suffix!r}"
        raise InvalidUnitName(f"unit suffix {_q(suffix)} is not valid; {fix}", name=suffix, fix=fix)


def from_path(path: str, suffix: str) -> str:
    """``unit_name_from_path``: ``/waldo/quuix/`` + ``.mount`` → ``waldo-quuix.mount``.

    Newer systemd falls back to a hashed name when the result is too long;
    we refuse instead (as systemd 252 does), naming the limit.
    """
    _check_suffix(suffix)
    name = path_escape(path) + suffix
    if len(name) > UNIT_NAME_MAX:
        raise _invalid(
            path,
            f"escapes to a {len(name)}-byte unit name; unit names may be at most "
            f"{UNIT_NAME_MAX} bytes",
            "use a shorter path",
            what="path",
        )
    split(name, NameFlags.PLAIN)
    return name


def from_path_instance(prefix: str, path: str, suffix: str) -> str:
    """``unit_name_from_path_instance``: ``waldo`` + ``/waldo`` + ``.mount`` → ``waldo@waldo.mount``."""
    if not _PREFIX_RE.fullmatch(prefix):
        if not prefix:
            raise InvalidUnitName(
                "unit prefix is empty; give a prefix such as 'backup'",
                name=prefix,
                fix="give a non-empty prefix",
            )
        bad = next(ch for ch in prefix if ch not in _VALID_CHARS)
        raise _invalid(
            prefix,
            f"contains {bad!r}: prefixes may only use ASCII letters, digits and ':-_.\\'",
            "escape it with `flotte escape`",
            what="unit prefix",
        )
    _check_suffix(suffix)
    name = f"{prefix}@{path_escape(path)}{suffix}"
    if len(name) > UNIT_NAME_MAX:
        raise _invalid(
            name,
            f"is {len(name)} bytes long: unit names may be at most {UNIT_NAME_MAX} bytes",
            "use a shorter prefix or path",
        )
    split(name, NameFlags.INSTANCE)
    return name


def template_escape(template: str, value: str, *, path: bool = False) -> str:
    """``systemd-escape --template=TEMPLATE [--path] VALUE``.

    Escapes *value* (as a path with ``path=True``) and puts it in as the
    instance: ``foo@.service`` + ``/dev/sda`` → ``foo@-dev-sda.service``.
    Like systemd-escape, *template* must be a template, not an instance.
    """
    split(template, NameFlags.TEMPLATE)
    return replace_instance(template, path_escape(value) if path else escape(value))


# ------------------------------------------------------------------ safety & fleet


def check_safe(name: str) -> str:
    """Refuse a unit name that must not become a file name in a state directory.

    Names reach the agent from the network; before ``state_dir / name`` is
    opened, this rules out anything that could leave the directory or confuse
    tools: empty, ``.``/``..``, ``/``, NUL and other control characters, more
    than 255 bytes (NAME_MAX), and any name that neither systemd
    (:func:`is_valid`) nor fleet's API (:func:`fleet_api_check`) accepts.
    Returns *name* so it can be used inline.
    """
    what = "unit name"
    if not name:
        raise _invalid(name, "is empty", "give a unit name such as 'web.service'")
    if name in (".", ".."):
        raise _invalid(
            name, "is a directory reference", "give a unit name such as 'web.service'", what=what
        )
    if "/" in name:
        raise _invalid(
            name,
            "contains '/', so as a file name it would point into another directory",
            "pass the unit file's base name, or escape paths with `flotte escape --path`",
        )
    for ch in name:
        if ord(ch) < 0x20 or ord(ch) == 0x7F:
            raise _invalid(
                name,
                f"contains the control character U+{ord(ch):04X}",
                "remove it; unit names may only use " + _ALLOWED_TEXT,
            )
    size = len(_to_bytes(name, what))
    if size > _NAME_MAX:
        raise _invalid(
            name,
            f"is {size} bytes long: file names may be at most {_NAME_MAX} bytes",
            "shorten it",
        )
    if not is_valid(name):
        fleet_api_check(name)
    return name


def _fleet_error(name: str, fleet_message: str, fix: str) -> InvalidUnitName:
    return InvalidUnitName(
        f"unit name {_q(name)}: {fleet_message}; {fix}",
        name=name,
        fix=fix,
        fleet_message=fleet_message,
    )


def fleet_api_check(name: str) -> None:
    """fleet's API unit-name validation (``ValidateName`` in ``api/units.go``, fleet.md §2.5).

    At most 256 bytes; must contain a ``.`` and not end with it; the text
    after the last ``.`` is one of :data:`FLEET_UNIT_TYPES`; a name with
    ``@`` must be a path, service, socket, target or timer; the part before
    the last dot uses only ASCII letters, digits and ``:-_.\\@``; and it must
    not start with ``@``.  Unlike systemd, fleet does not check the template
    shape further (``foo@@.service`` passes).  Raises
    :class:`InvalidUnitName` whose ``fleet_message`` is fleet's own text.
    """
    if not name:
        raise _fleet_error(name, "unit name cannot be empty", "give a name such as 'web.service'")
    size = len(name.encode("utf-8", "surrogatepass"))
    if size > 256:
        raise _fleet_error(
            name, "unit name exceeds maximum length (256)", f"shorten it ({size} bytes now)"
        )
    dot = name.rfind(".")
    if dot == -1:
        raise _fleet_error(
            name, 'unit name must contain "."', f"append a type, e.g. {name + '.service'!r}"
        )
    if dot == len(name) - 1:
        raise _fleet_error(
            name, 'unit name cannot end in "."', f"append a type, e.g. {name + 'service'!r}"
        )
    suffix = name[dot + 1 :]
    if suffix not in FLEET_UNIT_TYPES:
        raise _fleet_error(
            name,
            f'invalid unit type: "{suffix}"',
            "use one of " + ", ".join(sorted(FLEET_UNIT_TYPES)),
        )
    if "@" in name and suffix not in _FLEET_TEMPLATE_TYPES:
        raise _fleet_error(
            name,
            f'unit type "{suffix}" cannot be a template or instance',
            "only " + ", ".join(sorted(_FLEET_TEMPLATE_TYPES)) + " units may contain '@'",
        )
    for ch in name[:dot]:
        if ch not in _VALID_CHARS_WITH_AT:
            raise _fleet_error(
                name,
                f"invalid character {ch!r} in unit name",
                f"unit names may only use {_ALLOWED_TEXT}; escape other characters with "
                "`flotte escape`",
            )
    if name.startswith("@"):
        raise _fleet_error(
            name,
            'unit name cannot start in "@"',
            "put the template prefix before the '@' (e.g. 'foo@bar.service')",
        )


def _go_path_base(p: str) -> str:
    """Go's ``path.Base``: last element, trailing slashes ignored, ``""`` → ``"."``."""
    if not p:
        return "."
    p = p.rstrip("/")
    if not p:
        return "/"
    return p.rsplit("/", 1)[-1]


def fleetctl_unit_name(arg: str) -> str:
    """fleetctl's ``unitNameMangle``: base name, plus ``.service`` unless the type is known.

    Only ``.service .socket .timer .path .device .mount .automount`` count as
    known, so ``foo.target`` becomes ``foo.target.service`` — a fleet quirk
    kept for compatibility.  ``units/web@.service`` → ``web@.service``,
    ``hello`` → ``hello.service``.  The result is not validated.
    """
    base = _go_path_base(arg)
    if base.endswith(FLEETCTL_UNIT_TYPES):
        return base
    return base + ".service"
