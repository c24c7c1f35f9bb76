"""Unit files: parse, serialize, names, specifiers, exec lines, option schema.

The pure layer everything else in flotte builds on (DESIGN.md: ``unit/``
depends on nothing).  Start with :func:`load_text` / :func:`load_unit`.
"""

from flotte.unit.errors import Diagnostic, Severity, UnitFileError, ValueParseError
from flotte.unit.execline import ExecCommand, expand_argv, parse_exec
from flotte.unit.loader import (
    BAD_SETTING,
    ERROR,
    LOADED,
    MASKED,
    Condition,
    Unit,
    load_text,
    load_unit,
)
from flotte.unit.parser import Option, ParseResult, parse
from flotte.unit.serialize import serialize
from flotte.unit.specifiers import SpecifierContext
from flotte.unit.xfleet import XFleet

__all__ = [
    "BAD_SETTING",
    "ERROR",
    "LOADED",
    "MASKED",
    "Condition",
    "Diagnostic",
    "ExecCommand",
    "Option",
    "ParseResult",
    "Severity",
    "SpecifierContext",
    "Unit",
    "UnitFileError",
    "ValueParseError",
    "XFleet",
    "expand_argv",
    "load_text",
    "load_unit",
    "parse",
    "parse_exec",
    "serialize",
]
