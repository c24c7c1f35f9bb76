"""Go ``path.Match`` globs, as fleet evaluated ``Conflicts=`` and ``Replaces=``.

fleet matched these globs with Go's ``path.Match`` (``agent/state.go``
``globMatches``).  Python's :func:`fnmatch.fnmatchcase` is close but not the
same, and the difference shows on real unit names:

* a negated class is ``[^...]`` in Go; fnmatch spells it ``[!...]`` and
  reads ``[^...]`` as a class containing ``^``;
* ``\\`` escapes the next character in Go; fnmatch has no escapes, and
  systemd-escaped names (``foo@a\\x2db.service``) contain backslashes;
* ``*`` and ``?`` never match ``/`` in Go (irrelevant for unit names, kept
  for exactness);
* a malformed pattern (``[``, ``[]``, ``a\\``, ``[a-]``) is an error in Go,
  which fleet logged and treated as "no match"; fnmatch silently matches
  it as literal text.

So the scheduler compiles each pattern once with Go's meaning
(:mod:`flotte.unit.gopath`, shared with confd's ``gets``/``ls`` globs) and a
malformed pattern compiles to ``None``, which never matches.
"""

from __future__ import annotations

import re
from functools import lru_cache

from flotte.unit import gopath

__all__ = ["compile_glob", "glob_match", "is_literal", "literal_prefix"]

_META = frozenset("*?[\\")


@lru_cache(maxsize=8192)
def compile_glob(pattern: str) -> re.Pattern[str] | None:
    """The compiled regular expression for a Go glob, or ``None`` if Go rejects it."""
    try:
        rx = gopath.compile_glob(pattern)
    except gopath.BadPatternError:
        return None
    return rx if rx is not None else re.compile(re.escape(pattern), re.DOTALL)


def glob_match(pattern: str, name: str) -> bool:
    """``path.Match(pattern, name)`` as fleet used it: an error counts as no match."""
    rx = compile_glob(pattern)
    return rx is not None and rx.fullmatch(name) is not None


def literal_prefix(pattern: str) -> str:
    """The text before the first glob metacharacter (every match starts with it).

    Used to index many patterns so a name is tested only against those whose
    prefix it starts with, instead of against every pattern in the cluster.
    """
    for i, ch in enumerate(pattern):
        if ch in _META:
            return pattern[:i]
    return pattern


def is_literal(pattern: str) -> bool:
    """True when the pattern has no metacharacter, so it matches only itself."""
    return not any(ch in _META for ch in pattern)
