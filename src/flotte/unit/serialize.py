"""Writing options back out as a unit file.

The output of :func:`serialize` parses back (with the same dialect) to the
same options — the property ``parse(serialize(opts)) == opts`` is tested
with hypothesis.  systemd's format has no quoting at the file level, so
some values cannot be written at all (a newline in a systemd-dialect value,
leading or trailing whitespace, an odd run of trailing backslashes…); those
raise :class:`~flotte.unit.errors.UnitFileError` naming the option instead
of silently writing a different unit.  Content hashes (fleet's unit hash is
the SHA-1 of the re-serialized options) are computed over this output.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from flotte.unit.errors import UnitFileError
from flotte.unit.parser import Dialect, Option, string_is_safe

_WS = " \t\n\r"


def _go_multiline_ok(value: str) -> bool:
    lines = value.split("\n")
    return all(line.endswith("\\") for line in lines[:-1]) and all(
        line.strip() for line in lines[1:])


def _check(opt: Option, dialect: Dialect) -> None:
    sec, key, value = opt.section, opt.key, opt.value

    def bad(why: str) -> UnitFileError:
        return UnitFileError(f"cannot write [{sec}] {key}={value!r}: {why}", kind="serialize")

    if not sec or "]" in sec or not string_is_safe(sec):
        raise bad("section names may not be empty or contain ']', quotes, backslashes "
                  "or control characters")
    if not key or "=" in key or key != key.strip(_WS) or key[0] in "#;[" or \
            any(c in key for c in "\n\r\x00"):
        raise bad("keys may not be empty, contain '=' or line breaks, or start with # ; [")
    if "\x00" in value or "\r" in value:
        raise bad("values may not contain NUL or carriage returns")
    if dialect == "go-systemd":
        if value != value.strip() or ("\n" in value and not _go_multiline_ok(value)):
            raise bad("go-systemd values are trimmed and may only span lines after a "
                      "trailing backslash")
        return
    if value != value.strip(_WS):
        raise bad("leading/trailing whitespace would be trimmed when read back")
    if "\n" in value:
        raise bad("systemd-dialect values cannot contain line breaks")
    if value.endswith("\\") and (len(value) - len(value.rstrip("\\"))) % 2 == 1:
        raise bad("an odd number of trailing backslashes would continue the line")


def serialize(options: Iterable[Option | tuple[str, str, str]], dialect: Dialect = "systemd"
              ) -> str:
    """Render options as unit-file text, opening a section header when it changes."""
    out: list[str] = []
    current: str | None = None
    for item in options:
        opt = item if isinstance(item, Option) else Option(item[0], item[1], item[2], 0)
        _check(opt, dialect)
        if opt.section != current:
            if current is not None:
                out.append("")
            out.append(f"[{opt.section}]")
            current = opt.section
        out.append(f"{opt.key}={opt.value}")
    return "\n".join(out) + "\n" if out else ""


def unit_hash(options: Iterable[Option | tuple[str, str, str]]) -> str:
    """fleet's unit hash: SHA-1 hex of the re-serialized options."""
    return hashlib.sha1(serialize(options, "go-systemd").encode("utf-8")).hexdigest()
