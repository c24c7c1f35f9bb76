r"""Go's ``path`` package: ``Clean``, ``Base``, ``Dir``, ``Join`` and ``Match``.

One implementation for the whole project: confd's ``gets``/``getvs`` select
keys with ``path.Match``, and fleet matched ``[X-Fleet] Conflicts=`` and
``Replaces=`` globs with it (the engine and ``xfleet``).  Python's ``fnmatch``
is not equivalent (its ``*`` crosses ``/``, ``[^...]`` and ``\`` differ).
Patterns are compiled once to a regular expression with the same semantics
(``*`` = ``[^/]*``, ``?`` = ``[^/]``, classes may match ``/``); a malformed
pattern is an error for every key, as in Go 1.16+, which validates the whole
pattern even when an earlier chunk already failed to match.
"""

from __future__ import annotations

import re
from functools import lru_cache

BAD_PATTERN = "syntax error in pattern"


class BadPatternError(ValueError):
    """``path.ErrBadPattern``."""

    def __init__(self) -> None:
        super().__init__(BAD_PATTERN)


def clean(p: str) -> str:
    """``path.Clean``: the shortest equivalent path."""
    if p == "":
        return "."
    rooted = p[0] == "/"
    out: list[str] = []
    for seg in p.split("/"):
        if seg == "" or seg == ".":
            continue
        if seg == "..":
            if out and out[-1] != "..":
                out.pop()
            elif not rooted:
                out.append("..")
            continue
        out.append(seg)
    s = "/".join(out)
    if rooted:
        return "/" + s
    return s or "."


def base(p: str) -> str:
    """``path.Base``: ``""`` gives ``.``, trailing slashes are dropped, ``/`` stays."""
    if p == "":
        return "."
    p = p.rstrip("/")
    i = p.rfind("/")
    if i >= 0:
        p = p[i + 1 :]
    return p or "/"


def dir(p: str) -> str:
    """``path.Dir``: everything but the last element, cleaned."""
    i = p.rfind("/")
    return clean(p[: i + 1])


def join(*elems: str) -> str:
    """``path.Join``: non-empty elements joined with ``/`` and cleaned."""
    parts = [e for e in elems if e]
    if not parts:
        return ""
    return clean("/".join(parts))


def _get_esc(chunk: str, i: int) -> tuple[str, int]:
    """One (possibly escaped) character of a class; ``i`` is its index."""
    if i >= len(chunk) or chunk[i] in "-]":
        raise BadPatternError
    if chunk[i] == "\\":
        i += 1
        if i >= len(chunk):
            raise BadPatternError
    c = chunk[i]
    i += 1
    if i >= len(chunk):
        raise BadPatternError
    return c, i


def _class_regex(lo_hi: list[tuple[str, str]], negated: bool) -> str:
    ranges = [(lo, hi) for lo, hi in lo_hi if lo <= hi]
    if not ranges:
        return r"[\s\S]" if negated else "(?!)"
    body = "".join(
        re.escape(lo) if lo == hi else re.escape(lo) + "-" + re.escape(hi) for lo, hi in ranges
    )
    return "[" + ("^" if negated else "") + body + "]"


@lru_cache(maxsize=512)
def compile_glob(pattern: str) -> re.Pattern[str] | None:
    """A regex equivalent to ``path.Match(pattern, name)``.

    Returns ``None`` when the pattern has no metacharacters (an exact key);
    raises :class:`BadPatternError` for a malformed pattern.
    """
    if not any(c in pattern for c in "*?[\\"):
        return None
    out: list[str] = []
    i = 0
    n = len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "\\":
            i += 1
            if i >= n:
                raise BadPatternError
            out.append(re.escape(pattern[i]))
            i += 1
        elif c == "[":
            i += 1
            negated = False
            if i < n and pattern[i] == "^":
                negated = True
                i += 1
            ranges: list[tuple[str, str]] = []
            while True:
                if i < n and pattern[i] == "]" and ranges:
                    i += 1
                    break
                lo, i = _get_esc(pattern, i)
                hi = lo
                if pattern[i] == "-":
                    hi, i = _get_esc(pattern, i + 1)
                ranges.append((lo, hi))
            out.append(_class_regex(ranges, negated))
        else:
            out.append(re.escape(c))
            i += 1
    return re.compile("".join(out), re.DOTALL)


def match(pattern: str, name: str) -> bool:
    """``path.Match``; raises :class:`BadPatternError` for a malformed pattern."""
    rx = compile_glob(pattern)
    if rx is None:
        return pattern == name
    return rx.fullmatch(name) is not None
