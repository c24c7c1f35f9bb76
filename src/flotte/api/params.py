"""Query parameters of flotte's own routes (``?lines=``, ``?follow``, ``?recursive`` …).

Lenient in what reads as true (etcd and journalctl users write ``?follow``,
``?follow=1`` or ``?follow=true``) but never silently wrong: a value that is
neither true nor false, or a number that is not one, is a 400 naming the
parameter, instead of being taken as the default.
"""

from __future__ import annotations

from collections.abc import Mapping

from flotte.api.wire import HttpError

_TRUE = frozenset({"1", "true", "yes", "on", "t", "y"})
_FALSE = frozenset({"0", "false", "no", "off", "f", "n"})


def int_param(query: Mapping[str, str], name: str, *, minimum: int = 0) -> int | None:
    """An optional integer parameter (``None`` when absent or empty), at least ``minimum``."""
    raw = query.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise HttpError(400, f"query parameter {name}={raw!r} must be an integer "
                             f">= {minimum}")
    return value


def bool_param(query: Mapping[str, str], name: str) -> bool:
    """``?x``, ``?x=1``, ``?x=true`` … are true; absent, ``0``, ``false`` … are false."""
    if name not in query:
        return False
    raw = query[name].strip().lower()
    if raw == "" or raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise HttpError(400, f"query parameter {name}={query[name]!r} must be true or false")
