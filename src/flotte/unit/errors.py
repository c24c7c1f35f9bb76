"""Diagnostics shared by every parser in :mod:`flotte.unit`.

systemd logs most problems and keeps going (the single assignment is dropped);
only a few problems make the unit unloadable.  We keep that distinction
explicit: a :class:`Diagnostic` has a severity, the 1-based line it came from
(``None`` for whole-unit problems such as "two ExecStart= on a simple
service"), the message systemd would log, and, where we know one, the fix.

Value parsers raise :class:`ValueParseError`; the loader turns it into a
warning carrying the line number, so the parsers stay free of bookkeeping.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, slots=True)
class Diagnostic:
    severity: Severity
    message: str
    line: int | None = None
    fix: str | None = None
    file: str | None = None

    def render(self) -> str:
        """``FILE:LINE: error|warning: MESSAGE (fix: …)`` as ``flotte verify`` prints it."""
        where = self.file or "<unit>"
        if self.line is not None:
            where = f"{where}:{self.line}"
        text = f"{where}: {self.severity.value}: {self.message}"
        if self.fix:
            text += f" — fix: {self.fix}"
        return text

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"line": self.line, "message": self.message}
        if self.fix:
            out["fix"] = self.fix
        return out


class ValueParseError(ValueError):
    """A setting's value could not be parsed.

    ``message`` is what systemd would log (e.g. ``Failed to parse time value,
    ignoring: garbage``); ``fix`` optionally tells the user what to write.
    """

    def __init__(self, message: str, fix: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix


class UnitFileError(Exception):
    """A unit file cannot be parsed at all (fatal lexical error).

    Raised by the go-systemd dialect for anything it rejects, and by both
    dialects for input that is not a unit file (binary data, invalid UTF-8,
    over-long lines).
    """

    def __init__(self, message: str, line: int | None = None, kind: str = "syntax",
                 fix: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.kind = kind
        self.fix = fix
