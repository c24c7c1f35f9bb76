"""Unit files: parse, serialize, names, specifiers, exec lines, option schema.

The pure layer everything else in flotte builds on (DESIGN.md: ``unit/``
depends on nothing).  Start with :func:`load_text` / :func:`load_unit`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# ``serialize`` is both a submodule and the function exported here: import it
# eagerly, or the submodule (bound on first import) would shadow the function.
from flotte.unit.serialize import serialize

if TYPE_CHECKING:
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
    from flotte.unit.specifiers import SpecifierContext
    from flotte.unit.xfleet import XFleet

# Loaded on first use (PEP 562): tools that need one module (the command line
# reading a record's options) should not import the whole layer.
_WHERE = {
    "Diagnostic": "flotte.unit.errors",
    "Severity": "flotte.unit.errors",
    "UnitFileError": "flotte.unit.errors",
    "ValueParseError": "flotte.unit.errors",
    "ExecCommand": "flotte.unit.execline",
    "expand_argv": "flotte.unit.execline",
    "parse_exec": "flotte.unit.execline",
    "BAD_SETTING": "flotte.unit.loader",
    "ERROR": "flotte.unit.loader",
    "LOADED": "flotte.unit.loader",
    "MASKED": "flotte.unit.loader",
    "Condition": "flotte.unit.loader",
    "Unit": "flotte.unit.loader",
    "load_text": "flotte.unit.loader",
    "load_unit": "flotte.unit.loader",
    "Option": "flotte.unit.parser",
    "ParseResult": "flotte.unit.parser",
    "parse": "flotte.unit.parser",
    "SpecifierContext": "flotte.unit.specifiers",
    "XFleet": "flotte.unit.xfleet",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'flotte.unit' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


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
