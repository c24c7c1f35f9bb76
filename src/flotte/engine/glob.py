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

So the scheduler translates each pattern once into a regular expression
with Go's meaning (:func:`compile_glob`, cached) and a malformed pattern
compiles to ``None``, which never matches.  The translation is exact
because Go's chunk-by-chunk leftmost matching of fixed-length chunks is
equivalent to a full regular-expression match.
"""

from __future__ import annotations

import re
from functools import lru_cache

__all__ = ["compile_glob", "glob_match", "is_literal", "literal_prefix"]

_META = frozenset("*?[\\")


class _BadPattern(ValueError):
    """Go's ``path.ErrBadPattern``."""


def _get_esc(p: str, i: int) -> tuple[str, int]:
    """Go's ``getEsc``: one (possibly escaped) class character at ``p[i]``."""
    if i >= len(p) or p[i] in "-]":
        raise _BadPattern
    if p[i] == "\\":
        i += 1
        if i >= len(p):
            raise _BadPattern
    ch = p[i]
    i += 1
    if i >= len(p):  # a class must be closed after this character
        raise _BadPattern
    return ch, i


def _class(p: str, i: int) -> tuple[str, int]:
    """Translate the class starting after ``[`` at ``p[i]``; return (regex, next index)."""
    negated = i < len(p) and p[i] == "^"
    if negated:
        i += 1
    items: list[str] = []
    nrange = 0
    while True:
        if i < len(p) and p[i] == "]" and nrange > 0:
            i += 1
            break
        lo, i = _get_esc(p, i)
        hi = lo
        if p[i] == "-":
            hi, i = _get_esc(p, i + 1)
        nrange += 1
        if lo <= hi:  # Go: an inverted range matches nothing (not an error)
            items.append(re.escape(lo) if lo == hi else f"{re.escape(lo)}-{re.escape(hi)}")
    if not items:
        return ("[\\s\\S]" if negated else "(?!)"), i
    return ("[^" if negated else "[") + "".join(items) + "]", i


def _translate(pattern: str) -> str:
    out: list[str] = []
    i = 0
    n = len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "*":
            out.append("[^/]*")
            i += 1
        elif ch == "?":
            out.append("[^/]")
            i += 1
        elif ch == "[":
            rx, i = _class(pattern, i + 1)
            out.append(rx)
        elif ch == "\\":
            if i + 1 >= n:
                raise _BadPattern
            out.append(re.escape(pattern[i + 1]))
            i += 2
        else:
            j = i
            while j < n and pattern[j] not in _META:
                j += 1
            out.append(re.escape(pattern[i:j]))
            i = j
    return "".join(out)


@lru_cache(maxsize=8192)
def compile_glob(pattern: str) -> re.Pattern[str] | None:
    """The compiled regular expression for a Go glob, or ``None`` if Go rejects it."""
    try:
        return re.compile(_translate(pattern), re.DOTALL)
    except _BadPattern:
        return None


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
