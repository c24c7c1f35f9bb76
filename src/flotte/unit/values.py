"""Pure parsers for the values of unit-file settings, with systemd 252's grammar.

Every function here takes the (already whitespace-trimmed) right-hand side of
one assignment and either returns the parsed value or raises
:class:`~flotte.unit.errors.ValueParseError` whose ``message`` is the line
systemd itself logs for that mistake (``Failed to parse time value, ignoring:
garbage``).  The loader turns that into a warning and keeps the previous
value, which is what systemd does for everything parsed here.

Why re-implement instead of using ``int()``/``float()``: users' unit files
were written against systemd, and its number parsing has quirks people rely
on (or trip over) that Python's parsers do not share:

* integers go through ``strtol``/``strtoull`` with base 0 plus systemd's
  ``0b``/``0o`` prefixes, so ``Nice=0x5``, ``LimitNOFILE=010`` (octal 8) and
  ``KillSignal=0b1001`` are all accepted, while ``-0`` is fine and ``-1`` is
  out of range for unsigned settings;
* time spans add up components without needing spaces (``5s500ms``), accept
  ``.5`` but not ``5.``, and drop fractions below the unit's resolution
  digit by digit (``1.5us`` is 1 µs);
* sizes use powers of 1024, may be written as several decreasing components
  (``1G 512M``) and fractions are computed in C ``double`` arithmetic.

Everything that runs per option (booleans, time spans, signals, limits) uses
precompiled regular expressions and module-level tables, and the two most
repetitive parsers memoize successful results: the loader calls these for
every option of tens of thousands of units per second.

Fidelity was checked by differential fuzzing against systemd 252's own
functions in ``libsystemd-shared-252.so`` and its ``systemd --test`` dumps
(see the ``oracle`` tests).
"""

from __future__ import annotations

import os
import re
import resource
import signal as _signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from flotte.unit.errors import ValueParseError

__all__ = [
    "EXIT_STATUS_BY_NAME",
    "RLIMIT_KEYS",
    "RLIM_INFINITY",
    "SIGNAL_BY_NAME",
    "TIME_SETTING_WHAT",
    "USEC_INFINITY",
    "USEC_PER_DAY",
    "USEC_PER_HOUR",
    "USEC_PER_MINUTE",
    "USEC_PER_MONTH",
    "USEC_PER_MSEC",
    "USEC_PER_SEC",
    "USEC_PER_WEEK",
    "USEC_PER_YEAR",
    "ExitStatusSet",
    "exit_status_name",
    "format_timespan",
    "format_umask",
    "is_valid_env_name",
    "parse_bool",
    "parse_bytes",
    "parse_exit_status_set",
    "parse_nice",
    "parse_rlimit",
    "parse_sec_fix_0",
    "parse_signal",
    "parse_timespan",
    "parse_umask",
    "signal_name",
]

# systemd's WHITESPACE (" \t\n\r") is narrower than C's isspace(), which also
# skips \v and \f; strtol() & co. use the latter.  Both matter for exactness.
_WHITESPACE: Final = " \t\n\r"
_U64_MAX: Final = 2**64 - 1


class _Invalid(Exception):
    """systemd's -EINVAL from a helper (message chosen by the public caller)."""


class _Range(Exception):
    """systemd's -ERANGE from a helper (some callers word it differently)."""


# ---------------------------------------------------------------------------
# C-compatible integer parsing (safe_atoi / safe_atou / safe_atou64)
# ---------------------------------------------------------------------------

# After systemd skipped WHITESPACE and handled its own 0b/0o prefixes,
# strtol(..., base 0) skips isspace(), takes a sign, then "0x" (only if a hex
# digit follows), a leading "0" (octal) or decimal digits.
_STRTO_BASE0: Final = re.compile(
    r"([ \t\n\r\v\f]*)([+-]?)(?:0[xX]([0-9a-fA-F]+)|(0[0-7]*)|([1-9][0-9]*))\Z"
)
_STRTO_BASE2: Final = re.compile(r"([ \t\n\r\v\f]*)([+-]?)([01]+)\Z")
_STRTO_BASE8: Final = re.compile(r"([ \t\n\r\v\f]*)([+-]?)([0-7]+)\Z")


def _c_int(s: str) -> tuple[int, bool, bool]:
    """What ``strtol``/``strtoull`` (base 0, after systemd's 0b/0o) read from ``s``.

    Returns ``(magnitude, negative, sign_first)``; ``sign_first`` tells
    whether the ``-`` was the first character after systemd's WHITESPACE
    skip, which is the only place systemd looks for it (C's isspace() also
    skips ``\v``/``\f``, after which ``strtoull`` silently wraps).  Raises
    :class:`_Invalid` when the whole string is not consumed.
    """
    s = s.lstrip(_WHITESPACE)
    head = s[:2]
    if head in ("0b", "0B"):
        m = _STRTO_BASE2.match(s, 2)
        if m is None:
            raise _Invalid
        v = int(m.group(3), 2)
    elif head in ("0o", "0O"):
        m = _STRTO_BASE8.match(s, 2)
        if m is None:
            raise _Invalid
        v = int(m.group(3), 8)
    else:
        m = _STRTO_BASE0.match(s)
        if m is None:
            raise _Invalid
        if m.group(3) is not None:
            v = int(m.group(3), 16)
        elif m.group(4) is not None:
            v = int(m.group(4), 8)
        else:
            v = int(m.group(5))
    return v, m.group(2) == "-", not m.group(1)


def _safe_atou(s: str, maximum: int) -> int:
    """``safe_atou*``: base 0, no negative values except ``-0``, at most ``maximum``."""
    if s.isdigit() and s.isascii() and (s[0] != "0" or len(s) == 1):
        v = int(s)  # fast path: plain decimal, by far the common case
    else:
        v, negative, sign_first = _c_int(s)
        if v > _U64_MAX:
            raise _Range
        if negative and v:
            if sign_first:
                raise _Range
            v = 2**64 - v  # strtoull's wrap-around, which systemd misses here
    if v > maximum:
        raise _Range
    return v


def _safe_atoi(s: str) -> int:
    """``safe_atoi``: base 0, result must fit a 32-bit ``int``."""
    if s.isdigit() and s.isascii() and (s[0] != "0" or len(s) == 1):
        v = int(s)
    else:
        v, negative, _ = _c_int(s)
        if negative:
            v = -v
    if not -(2**31) <= v < 2**31:
        raise _Range
    return v


# ---------------------------------------------------------------------------
# Booleans
# ---------------------------------------------------------------------------

_BOOL: Final[dict[str, bool]] = {
    **dict.fromkeys(("1", "yes", "y", "true", "t", "on"), True),
    **dict.fromkeys(("0", "no", "n", "false", "f", "off"), False),
}


def parse_bool(s: str) -> bool:
    """systemd's ``parse_boolean``: ``1 yes y true t on`` / ``0 no n false f off``.

    Case-insensitive the way ``strcasecmp`` is, i.e. ASCII only: ``YeS`` is
    true but a Unicode look-alike is not.  An empty value is an error here
    too (systemd logs the same message with nothing after the colon).
    """
    v = _BOOL.get(s)
    if v is None:
        v = _BOOL.get(s.lower()) if s.isascii() else None
        if v is None:
            raise ValueParseError(
                f"Failed to parse boolean value, ignoring: {s}",
                fix="write yes or no (also accepted: true/false, on/off, 1/0, y/n, t/f)",
            )
    return v


# ---------------------------------------------------------------------------
# Time spans
# ---------------------------------------------------------------------------

USEC_INFINITY: Final[int] = 2**64 - 1
"""systemd's ``USEC_INFINITY``: "never" / "no limit"."""
USEC_PER_MSEC: Final[int] = 1_000
USEC_PER_SEC: Final[int] = 1_000_000
USEC_PER_MINUTE: Final[int] = 60 * USEC_PER_SEC
USEC_PER_HOUR: Final[int] = 60 * USEC_PER_MINUTE
USEC_PER_DAY: Final[int] = 24 * USEC_PER_HOUR
USEC_PER_WEEK: Final[int] = 7 * USEC_PER_DAY
USEC_PER_MONTH: Final[int] = 2_629_800 * USEC_PER_SEC  # 30.44 days
USEC_PER_YEAR: Final[int] = 31_557_600 * USEC_PER_SEC  # 365.25 days

# Order matters: systemd takes the first entry that is a *prefix* of the
# remaining text, so "ms" must come before "m", "min" before "m", "M"
# (month) is case-sensitive, and "5secs" fails ("sec" + stray "s").
_TIME_UNITS: Final[tuple[tuple[str, int], ...]] = (
    ("seconds", USEC_PER_SEC),
    ("second", USEC_PER_SEC),
    ("sec", USEC_PER_SEC),
    ("s", USEC_PER_SEC),
    ("minutes", USEC_PER_MINUTE),
    ("minute", USEC_PER_MINUTE),
    ("min", USEC_PER_MINUTE),
    ("months", USEC_PER_MONTH),
    ("month", USEC_PER_MONTH),
    ("M", USEC_PER_MONTH),
    ("msec", USEC_PER_MSEC),
    ("ms", USEC_PER_MSEC),
    ("m", USEC_PER_MINUTE),
    ("hours", USEC_PER_HOUR),
    ("hour", USEC_PER_HOUR),
    ("hr", USEC_PER_HOUR),
    ("h", USEC_PER_HOUR),
    ("days", USEC_PER_DAY),
    ("day", USEC_PER_DAY),
    ("d", USEC_PER_DAY),
    ("weeks", USEC_PER_WEEK),
    ("week", USEC_PER_WEEK),
    ("w", USEC_PER_WEEK),
    ("years", USEC_PER_YEAR),
    ("year", USEC_PER_YEAR),
    ("y", USEC_PER_YEAR),
    ("usec", 1),
    ("us", 1),
    ("μs", 1),  # U+03BC GREEK SMALL LETTER MU
    ("µs", 1),  # U+00B5 MICRO SIGN
)
_TIME_UNIT_USEC: Final[dict[str, int]] = dict(_TIME_UNITS)

# One component: optional whitespace, a number (strtoll: isspace, '+', digits,
# optionally '.' and digits; or '.' and digits with no integer part), then
# optional whitespace and a unit.  Regex alternation is ordered, which gives
# the same first-prefix-wins unit choice as systemd's table walk.
_TIME_COMPONENT: Final = re.compile(
    r"[ \t\n\r]*(?:[ \t\n\r\v\f]*([+-]?)([0-9]+)(\.[0-9]*)?|(\.[0-9]*))([ \t\n\r]*)("
    + "|".join(re.escape(u) for u, _ in _TIME_UNITS)
    + r")?"
)
# The overwhelmingly common shapes ("90", "5s", "100ms", "infinity") skip the loop.
_TIME_SIMPLE: Final = re.compile(r"([0-9]{1,15})(s|ms|min|h|d|us|sec|m)?\Z")
_TIME_INFINITY: Final = re.compile(r"[ \t\n\r]*infinity[ \t\n\r]*\Z")

TIME_SETTING_WHAT: Final[Mapping[str, str]] = MappingProxyType(
    {
        "TimeoutSec": "TimeoutSec= parameter",
        "TimeoutStartSec": "TimeoutStartSec= parameter",
        "TimeoutStopSec": "time value",
        "TimeoutAbortSec": "TimeoutAbortSec= setting",
        "JobTimeoutSec": "JobTimeoutSec= parameter",
        "JobRunningTimeoutSec": "JobRunningTimeoutSec= parameter",
    }
)
"""The ``what`` systemd 252 uses in "Failed to parse <what>, ignoring: …" per setting.

Checked against the real binary.  Settings not listed (``RestartSec=``,
``RuntimeMaxSec=``, ``WatchdogSec=``, ``StartLimitIntervalSec=`` …) go through
``config_parse_sec`` and say ``sec value``.
"""


def _time_error(s: str, what: str) -> ValueParseError:
    """Build the warning, with a fix aimed at the mistake actually made."""
    if "-" in s:
        fix = "time spans cannot be negative; write 0 or a positive duration"
    elif re.search(r"\.(?![0-9])", s):
        fix = "a decimal point must be followed by digits (write 5 or 5.5, not 5.)"
    elif "infinity" in s:
        fix = "'infinity' must be the whole value"
    else:
        fix = "write a duration such as 90, 90s, 1min 30s, 500ms or infinity"
    return ValueParseError(f"Failed to parse {what}, ignoring: {s}", fix=fix)


def parse_timespan(s: str, *, default_unit: str = "s", what: str = "time value") -> int:
    """systemd's ``parse_time``: a time span in microseconds.

    A bare number is in ``default_unit`` (seconds, except e.g. ``"us"`` for
    ``LimitRTTIME=``).  Components are summed and need no separating space
    (``5s500ms``); decimals (``2.5``, ``.5``) and a leading ``+`` are fine;
    ``infinity`` alone means :data:`USEC_INFINITY`.  Fraction digits are
    applied one at a time with integer division, exactly like systemd, so
    sub-microsecond parts vanish.  Negative values, ``5.``, ``3.s``,
    ``12..34``, ``infinity`` mixed with anything, and empty input are errors.

    ``what`` only changes the wording of the error message (see
    :data:`TIME_SETTING_WHAT`).
    """
    if default_unit == "s":
        v = _TIME_CACHE.get(s)
        if v is not None:
            return v
        try:
            v = _parse_time(s, USEC_PER_SEC)
        except (_Invalid, _Range):
            raise _time_error(s, what) from None
        if len(_TIME_CACHE) >= _CACHE_MAX:
            _TIME_CACHE.clear()
        _TIME_CACHE[s] = v
        return v
    default_usec = _TIME_UNIT_USEC.get(default_unit)
    if default_usec is None:
        raise ValueError(f"unknown default time unit {default_unit!r}")
    try:
        return _parse_time(s, default_usec)
    except (_Invalid, _Range):
        raise _time_error(s, what) from None


# Unit files repeat the same few values ("90", "5s", "infinity") endlessly;
# a small memo of successful parses makes the hot path a dict lookup.
_CACHE_MAX: Final = 4096
_TIME_CACHE: Final[dict[str, int]] = {}


def _parse_time(s: str, default_usec: int) -> int:
    """``parse_time`` with internal errors: fast paths first, then the full loop."""
    m = _TIME_SIMPLE.match(s)
    if m is not None:
        unit = m.group(2)
        mult = default_usec if unit is None else _TIME_UNIT_USEC[unit]
        num = int(m.group(1))
        if num < USEC_INFINITY // mult:
            return num * mult
        raise _Range
    if _TIME_INFINITY.match(s):
        return USEC_INFINITY
    return _parse_time_general(s, default_usec)


def _parse_time_general(s: str, default_usec: int) -> int:
    """The component loop of ``parse_time`` (everything but the fast paths)."""
    n = len(s)
    pos = 0
    usec = 0
    something = False
    match = _TIME_COMPONENT.match
    while True:
        while pos < n and s[pos] in _WHITESPACE:
            pos += 1
        if pos >= n:
            if not something:
                raise _Invalid
            return usec
        if s[pos] == "-":  # systemd refuses even "-0"
            raise _Range
        m = match(s, pos)
        if m is None:
            raise _Invalid
        sign, digits, frac, bare_frac, ws, unit = m.groups()
        if bare_frac is not None:
            num, frac = 0, bare_frac
        else:
            num = int(digits)
            if num >= 2**63:  # strtoll overflow
                raise _Range
            if sign == "-" and num:  # only reachable behind \v or \f
                raise _Range
        if unit is None:
            # "12.34.56" and "5x" are rejected; "12.34 .56" is two components.
            if not ws and m.end() < n:
                raise _Invalid
            multiplier = default_usec
        else:
            multiplier = _TIME_UNIT_USEC[unit]
        if num >= USEC_INFINITY // multiplier:
            raise _Range
        k = num * multiplier
        if k >= USEC_INFINITY - usec:
            raise _Range
        usec += k
        something = True
        if frac is not None:
            if len(frac) == 1:  # "5.", "3.s", "3. 1s": a dot needs digits
                raise _Invalid
            mult = multiplier // 10
            for ch in frac[1:]:
                k = (ord(ch) - 48) * mult
                if k >= USEC_INFINITY - usec:
                    raise _Range
                usec += k
                mult //= 10
        pos = m.end()


def parse_sec_fix_0(s: str, *, what: str = "time value") -> int:
    """``parse_sec_fix_0``: like :func:`parse_timespan` but ``0`` means infinity.

    Used by ``TimeoutSec=``, ``TimeoutStartSec=`` and ``TimeoutStopSec=``,
    where "no time at all" makes no sense and historically meant "no timeout".
    """
    v = parse_timespan(s, what=what)
    return USEC_INFINITY if v == 0 else v


_FORMAT_UNITS: Final[tuple[tuple[str, int, int], ...]] = (
    # suffix, µs per unit, decimal digits of the unit (only used below 1 min)
    ("y", USEC_PER_YEAR, 0),
    ("month", USEC_PER_MONTH, 0),
    ("w", USEC_PER_WEEK, 0),
    ("d", USEC_PER_DAY, 0),
    ("h", USEC_PER_HOUR, 0),
    ("min", USEC_PER_MINUTE, 0),
    ("s", USEC_PER_SEC, 6),
    ("ms", USEC_PER_MSEC, 3),
    ("us", 1, 0),
)


def format_timespan(usec: int, accuracy: int = 1) -> str:
    """systemd's ``format_timespan``: ``1min 30s``, ``100ms``, ``1.500000s``.

    Components are emitted largest first and stop once the remainder is below
    ``accuracy`` (after at least one component).  Under a minute a remainder
    is shown with a decimal point, but only with the digits that ``accuracy``
    leaves (none at all for whole-second accuracy).

    ``systemctl show`` and ``systemd-analyze timespan`` use ``accuracy=1``
    (``RestartSec=1.5`` → ``1.500000s``); the unit dump of
    ``systemd --test`` uses ``accuracy=USEC_PER_SEC``, which truncates
    (``RestartSec=1.5`` → ``1s``, ``TimeoutStopSec=1d 0.5ms`` → ``1d``).
    The output always parses back with :func:`parse_timespan` (to the
    truncated value when ``accuracy`` > 1).
    """
    if usec == USEC_INFINITY:
        return "infinity"
    if usec <= 0:
        return "0"
    t = usec
    parts: list[str] = []
    for suffix, unit, unit_digits in _FORMAT_UNITS:
        if t <= 0:
            break
        if t < accuracy and parts:
            break
        if t < unit:
            continue
        a, b = divmod(t, unit)
        if t < USEC_PER_MINUTE and b > 0:
            j = unit_digits
            cc = accuracy
            while cc > 1:
                b //= 10
                j -= 1
                cc //= 10
            if j > 0:
                parts.append(f"{a}.{b:0{j}d}{suffix}")
                t = 0
                continue
        parts.append(f"{a}{suffix}")
        t = b
    return " ".join(parts)


# ---------------------------------------------------------------------------
# Sizes
# ---------------------------------------------------------------------------

# Tried in order from the position after the previous component's suffix, so
# components must decrease ("1G 512M" ok, "512M 1G" not); "" (bytes) last.
_IEC_SUFFIXES: Final[tuple[tuple[str, int], ...]] = (
    ("E", 1024**6),
    ("P", 1024**5),
    ("T", 1024**4),
    ("G", 1024**3),
    ("M", 1024**2),
    ("K", 1024),
    ("B", 1),
    ("", 1),
)
_SIZE_NUMBER: Final = re.compile(
    r"[ \t\n\r]*([ \t\n\r\v\f]*)([+-]?)([0-9]+)(\.([0-9]*))?[ \t\n\r]*"
)
_SIZE_SIMPLE: Final = re.compile(r"([0-9]{1,15})([KMGTPE]?)\Z")


def _parse_size(s: str) -> int:
    """``parse_size(s, 1024)``; raises :class:`_Invalid`/:class:`_Range`."""
    m = _SIZE_SIMPLE.match(s)
    if m is not None:
        suffix = m.group(2)
        v = int(m.group(1)) * (_IEC_FACTOR[suffix] if suffix else 1)
        if v <= _U64_MAX:
            return v
        raise _Range
    n = len(s)
    pos = 0
    total = 0
    start = 0
    while True:
        m = _SIZE_NUMBER.match(s, pos)
        if m is None:
            raise _Invalid
        num = int(m.group(3))
        if num > _U64_MAX:
            raise _Range
        if m.group(2) == "-":
            if not m.group(1):
                raise _Range
            num = (2**64 - num) % 2**64  # strtoull wraps behind \v or \f
        frac = 0.0
        fdigits = m.group(5)
        if fdigits:
            l2 = int(fdigits)
            if l2 > _U64_MAX:
                raise _Range
            frac = float(l2)
            for _ in fdigits:
                frac /= 10
        e = m.end()
        for i in range(start, len(_IEC_SUFFIXES)):
            suffix, factor = _IEC_SUFFIXES[i]
            if s.startswith(suffix, e):
                break
        else:
            raise _Invalid
        if num + (frac > 0) > _U64_MAX // factor:
            raise _Range
        tmp = num * factor + int(frac * factor)
        if tmp > _U64_MAX - total:
            raise _Range
        total += tmp
        pos = e + len(suffix)
        start = i + 1
        if pos >= n:
            return total


_IEC_FACTOR: Final[dict[str, int]] = dict(_IEC_SUFFIXES[:6])


def parse_bytes(s: str) -> int:
    """systemd's ``parse_size(…, 1024)``: bytes with ``K M G T P E`` (×1024) suffixes.

    Accepts a trailing ``B``, decimals (``1.5G``, computed in ``double`` like
    systemd) and several decreasing components (``1G 512M``).
    """
    try:
        return _parse_size(s)
    except (_Invalid, _Range):
        raise ValueParseError(
            f"Failed to parse size value, ignoring: {s}",
            fix="write a byte count, optionally with K, M, G, T, P or E (powers of 1024)",
        ) from None


# ---------------------------------------------------------------------------
# Resource limits
# ---------------------------------------------------------------------------

RLIM_INFINITY: Final[int] = resource.RLIM_INFINITY
"""What :func:`parse_rlimit` returns for ``infinity``.

This is Python's ``resource.RLIM_INFINITY`` (``-1`` on Linux), so results can
be handed to :func:`resource.setrlimit` unchanged; systemd itself prints it
as 18446744073709551615.
"""

RLIMIT_KEYS: Final[Mapping[str, int]] = MappingProxyType(
    {
        "LimitCPU": resource.RLIMIT_CPU,
        "LimitFSIZE": resource.RLIMIT_FSIZE,
        "LimitDATA": resource.RLIMIT_DATA,
        "LimitSTACK": resource.RLIMIT_STACK,
        "LimitCORE": resource.RLIMIT_CORE,
        "LimitRSS": resource.RLIMIT_RSS,
        "LimitNOFILE": resource.RLIMIT_NOFILE,
        "LimitAS": resource.RLIMIT_AS,
        "LimitNPROC": resource.RLIMIT_NPROC,
        "LimitMEMLOCK": resource.RLIMIT_MEMLOCK,
        # Python's resource module does not export RLIMIT_LOCKS; 10 on Linux.
        "LimitLOCKS": getattr(resource, "RLIMIT_LOCKS", 10),
        "LimitSIGPENDING": resource.RLIMIT_SIGPENDING,
        "LimitMSGQUEUE": resource.RLIMIT_MSGQUEUE,
        "LimitNICE": resource.RLIMIT_NICE,
        "LimitRTPRIO": resource.RLIMIT_RTPRIO,
        "LimitRTTIME": resource.RLIMIT_RTTIME,
    }
)
"""``Limit*=`` setting name → ``resource.RLIMIT_*`` constant."""

# Internally limits are systemd's u64 values (infinity = 2**64-1) so that the
# "soft > hard" check orders infinity last; converted only on the way out.
_RLIM_INF_U64: Final = _U64_MAX


def _rlimit_u64(v: str) -> int:
    if v == "infinity":
        return _RLIM_INF_U64
    return _safe_atou(v, _RLIM_INF_U64 - 1)


def _rlimit_size(v: str) -> int:
    if v == "infinity":
        return _RLIM_INF_U64
    u = _parse_size(v)
    if u >= _RLIM_INF_U64:
        raise _Range
    return u


def _rlimit_sec(v: str) -> int:
    """LimitCPU=: a time span, rounded *up* to whole seconds (1234ms → 2)."""
    if v == "infinity":
        return _RLIM_INF_U64
    t = _parse_time(v, USEC_PER_SEC)
    if t == USEC_INFINITY:
        return _RLIM_INF_U64
    return -(-t // USEC_PER_SEC)


def _rlimit_usec(v: str) -> int:
    """LimitRTTIME=: a time span whose bare numbers are microseconds."""
    if v == "infinity":
        return _RLIM_INF_U64
    t = _parse_time(v, 1)
    return _RLIM_INF_U64 if t == USEC_INFINITY else t


def _rlimit_nice(v: str) -> int:
    """LimitNICE=: ``+N``/``-N`` are nice levels (mapped to 20-N), bare N is raw 0…40.

    The asymmetry (``+0``…``+19`` and ``-0``…``-20`` as nice levels, raw 0
    allowed) mirrors systemd, which mirrors the kernel's odd RLIMIT_NICE scale.
    """
    if v[:1] == "+":
        rl = _safe_atou(v[1:], _U64_MAX)
        if rl >= 20:
            raise _Range
        return 20 - rl
    if v[:1] == "-":
        rl = _safe_atou(v[1:], _U64_MAX)
        if rl > 20:
            raise _Range
        return 20 + rl
    rl = _safe_atou(v, _U64_MAX)
    if rl > 40:
        raise _Range
    return rl


_RLIMIT_PARSERS: Final[dict[str, Callable[[str], int]]] = {
    "LimitCPU": _rlimit_sec,
    "LimitFSIZE": _rlimit_size,
    "LimitDATA": _rlimit_size,
    "LimitSTACK": _rlimit_size,
    "LimitCORE": _rlimit_size,
    "LimitRSS": _rlimit_size,
    "LimitNOFILE": _rlimit_u64,
    "LimitAS": _rlimit_size,
    "LimitNPROC": _rlimit_u64,
    "LimitMEMLOCK": _rlimit_size,
    "LimitLOCKS": _rlimit_u64,
    "LimitSIGPENDING": _rlimit_u64,
    "LimitMSGQUEUE": _rlimit_size,
    "LimitNICE": _rlimit_nice,
    "LimitRTPRIO": _rlimit_u64,
    "LimitRTTIME": _rlimit_usec,
}


def _split_colon(value: str) -> list[str]:
    """``extract_first_word(…, ":", EXTRACT_DONT_COALESCE_SEPARATORS)`` twice.

    No quoting; a backslash makes the next character literal (so ``\\:`` is
    not a separator) and a trailing backslash is an error.
    """
    if "\\" not in value:
        return value.split(":")
    parts: list[str] = []
    cur: list[str] = []
    it = iter(value)
    for c in it:
        if c == "\\":
            nxt = next(it, None)
            if nxt is None:
                raise _Invalid
            cur.append(nxt)
        elif c == ":":
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(c)
    parts.append("".join(cur))
    return parts


def parse_rlimit(key: str, value: str) -> tuple[int, int]:
    """``config_parse_limit``: ``Limit*=`` value → ``(soft, hard)``.

    ``value`` sets both, ``soft:hard`` sets them separately, ``infinity`` is
    allowed on either side (returned as :data:`RLIM_INFINITY`).  The unit
    depends on ``key``: byte limits take K/M/G/T/P/E (×1024), ``LimitCPU=``
    takes a time span (bare number = seconds) rounded up to whole seconds,
    ``LimitRTTIME=`` a time span whose bare numbers are µs, ``LimitNICE=``
    nice levels; counts are C integers (``0x10`` and octal ``010`` work).
    ``10:20:30``, ``66:wat`` and soft > hard are errors.  An unknown ``key``
    raises :class:`KeyError` (a programming error, not a user one).
    """
    parse_one = _RLIMIT_PARSERS[key]
    try:
        parts = _split_colon(value)
        if len(parts) == 3 and not parts[2]:
            # systemd's second word extraction swallows one trailing ':',
            # so "5:6:" is 5:6; "10:20:30" and "5:6::" are not.
            del parts[2]
        if len(parts) > 2:
            raise _Invalid
        soft = parse_one(parts[0])
        hard = parse_one(parts[1]) if len(parts) == 2 else soft
    except (_Invalid, _Range):
        raise ValueParseError(
            f"Failed to parse resource value, ignoring: {value}",
            fix=_rlimit_fix(key),
        ) from None
    if soft > hard:
        raise ValueParseError(
            f"Soft resource limit chosen higher than hard limit, ignoring: {value}",
            fix="write SOFT:HARD with SOFT no larger than HARD, or a single value for both",
        )
    return (
        RLIM_INFINITY if soft == _RLIM_INF_U64 else soft,
        RLIM_INFINITY if hard == _RLIM_INF_U64 else hard,
    )


def _rlimit_fix(key: str) -> str:
    kind = _RLIMIT_PARSERS[key]
    if kind is _rlimit_size:
        what = "a byte count with optional K/M/G/T/P/E suffix"
    elif kind is _rlimit_sec:
        what = "a CPU time such as 30, 1min or 1h (rounded up to seconds)"
    elif kind is _rlimit_usec:
        what = "a time span; bare numbers are microseconds"
    elif kind is _rlimit_nice:
        what = "a nice level +0…+19 or -0…-20, or a raw value 0…40"
    else:
        what = "a number"
    return f"write {what}, 'infinity', or SOFT:HARD"


# ---------------------------------------------------------------------------
# Signals
# ---------------------------------------------------------------------------

_SIGNAL_NAMES: Final[tuple[str, ...]] = (
    "HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "BUS", "FPE", "KILL", "USR1",
    "SEGV", "USR2", "PIPE", "ALRM", "TERM", "STKFLT", "CHLD", "CONT", "STOP",
    "TSTP", "TTIN", "TTOU", "URG", "XCPU", "XFSZ", "VTALRM", "PROF", "WINCH",
    "IO", "PWR", "SYS",
)  # fmt: skip
# x86/arm numbering as a fallback for names the signal module lacks.
_SIGNAL_FALLBACK: Final = dict(zip(_SIGNAL_NAMES, range(1, 32), strict=True))

_SIGNAL_BY_NAME: Final[dict[str, int]] = {
    n: int(getattr(_signal, "SIG" + n, _SIGNAL_FALLBACK[n])) for n in _SIGNAL_NAMES
}
SIGNAL_BY_NAME: Final[Mapping[str, int]] = MappingProxyType(_SIGNAL_BY_NAME)
"""systemd's signal table, names without ``SIG``.

Only the canonical names: aliases such as ``SIGIOT``, ``SIGPOLL``,
``SIGCLD`` and ``SIGUNUSED`` are rejected by systemd 252 (checked), and
names are case-sensitive (``term`` is rejected).
"""
_NAME_BY_SIGNAL: Final[dict[int, str]] = {v: "SIG" + k for k, v in _SIGNAL_BY_NAME.items()}
# Both spellings, for a single lookup in the common case.
_SIGNAL_BY_NAME_SIG: Final[dict[str, int]] = {
    **_SIGNAL_BY_NAME,
    **{"SIG" + k: v for k, v in _SIGNAL_BY_NAME.items()},
}
_SIGRTMIN: Final[int] = int(getattr(_signal, "SIGRTMIN", 34))
_SIGRTMAX: Final[int] = int(getattr(_signal, "SIGRTMAX", 64))
_NSIG: Final[int] = int(getattr(_signal, "NSIG", 65))


def _signal_from_string(s: str) -> int:
    """``signal_from_string``: number, name with/without SIG, RTMIN+n, RTMAX-n."""
    n2 = _SIGNAL_BY_NAME_SIG.get(s)
    if n2 is not None:  # fast path: "SIGTERM", "TERM"
        return n2
    if not s[:1].isalpha():  # a letter cannot start a C integer
        try:
            n = _safe_atoi(s)
        except (_Invalid, _Range):
            pass  # not a number: try names (an overflowing number fails there too)
        else:
            if 0 < n < _NSIG:
                return n
            raise _Range
    name = s[3:] if s.startswith("SIG") else s
    n2 = _SIGNAL_BY_NAME.get(name)
    if n2 is not None:
        return n2
    if name.startswith("RTMIN"):
        rest = name[5:]
        if not rest:
            return _SIGRTMIN
        if rest[0] != "+":
            raise _Invalid
        off = _safe_atoi(rest)
        if not 0 <= off <= _SIGRTMAX - _SIGRTMIN:
            raise _Range
        return _SIGRTMIN + off
    if name.startswith("RTMAX"):
        rest = name[5:]
        if not rest:
            return _SIGRTMAX
        if rest[0] != "-":
            raise _Invalid
        off = _safe_atoi(rest)
        if not _SIGRTMIN - _SIGRTMAX <= off <= 0:
            raise _Range
        return _SIGRTMAX + off
    raise _Invalid


def parse_signal(s: str) -> int:
    """``KillSignal=``-style signal: ``SIGTERM``, ``TERM``, ``15``, ``RTMIN+2``, ``SIGRTMAX-1``.

    Numbers must be valid signals (1…64; parsed as C integers, so ``0x9``
    and ``011`` are SIGKILL too).  ``SIG9`` is not accepted, nor are
    lower-case names.
    """
    try:
        return _signal_from_string(s)
    except (_Invalid, _Range):
        raise ValueParseError(
            f"Failed to parse signal name, ignoring: {s}",
            fix="write a signal name such as SIGTERM, SIGINT, SIGKILL or a number 1…64",
        ) from None


def signal_name(n: int) -> str:
    """The name systemd's unit dump shows: ``SIGQUIT``, ``SIGRTMIN+2``, ``SIG33``.

    Real-time signals are always shown relative to SIGRTMIN (``RTMAX`` is
    ``SIGRTMIN+30``); numbers without a name get ``SIG`` + number.
    """
    name = _NAME_BY_SIGNAL.get(n)
    if name is not None:
        return name
    if _SIGRTMIN <= n <= _SIGRTMAX:
        return f"SIGRTMIN+{n - _SIGRTMIN}"
    return f"SIG{n}"


# ---------------------------------------------------------------------------
# UMask=, Nice=
# ---------------------------------------------------------------------------

_UMASK_RE: Final = re.compile(r"[ \t\n\r\v\f]*([0-7]+)\Z")


def parse_umask(s: str) -> int:
    """``parse_mode``: octal (with or without leading 0), at most ``07777``, no sign."""
    m = _UMASK_RE.match(s)
    if m is None or (v := int(m.group(1), 8)) > 0o7777:
        raise ValueParseError(
            f"Failed to parse mode value, ignoring: {s}",
            fix="write an octal mask such as 0022 or 0077",
        )
    return v


def format_umask(n: int) -> str:
    """``0077``: four octal digits, as systemd shows ``UMask=``."""
    return f"{n:04o}"


def parse_nice(s: str) -> int:
    """``Nice=``: an integer −20…19 (C syntax, so ``0x5`` is 5)."""
    try:
        n = _safe_atoi(s)
        if -20 <= n <= 19:
            return n
    except _Invalid:
        raise ValueParseError(
            f"Failed to parse nice priority '{s}', ignoring: Invalid argument",
            fix="write a whole number from -20 (highest priority) to 19 (lowest)",
        ) from None
    except _Range:
        pass
    raise ValueParseError(
        f"Nice priority out of range, ignoring: {s}",
        fix="the nice level must be between -20 and 19",
    )


# ---------------------------------------------------------------------------
# Exit statuses
# ---------------------------------------------------------------------------

_EXIT_STATUS_BY_NAME: Final[dict[str, int]] = {
    "SUCCESS": 0,
    "FAILURE": 1,
    # LSB init-script codes
    "INVALIDARGUMENT": 2,
    "NOTIMPLEMENTED": 3,
    "NOPERMISSION": 4,
    "NOTINSTALLED": 5,
    "NOTCONFIGURED": 6,
    "NOTRUNNING": 7,
    # BSD sysexits.h, without the EX_ prefix
    "USAGE": 64,
    "DATAERR": 65,
    "NOINPUT": 66,
    "NOUSER": 67,
    "NOHOST": 68,
    "UNAVAILABLE": 69,
    "SOFTWARE": 70,
    "OSERR": 71,
    "OSFILE": 72,
    "CANTCREAT": 73,
    "IOERR": 74,
    "TEMPFAIL": 75,
    "PROTOCOL": 76,
    "NOPERM": 77,
    "CONFIG": 78,
    # systemd's own process-setup failures (223 and 234 are retired)
    "CHDIR": 200,
    "NICE": 201,
    "FDS": 202,
    "EXEC": 203,
    "MEMORY": 204,
    "LIMITS": 205,
    "OOM_ADJUST": 206,
    "SIGNAL_MASK": 207,
    "STDIN": 208,
    "STDOUT": 209,
    "CHROOT": 210,
    "IOPRIO": 211,
    "TIMERSLACK": 212,
    "SECUREBITS": 213,
    "SETSCHEDULER": 214,
    "CPUAFFINITY": 215,
    "GROUP": 216,
    "USER": 217,
    "CAPABILITIES": 218,
    "CGROUP": 219,
    "SETSID": 220,
    "CONFIRM": 221,
    "STDERR": 222,
    "PAM": 224,
    "NETWORK": 225,
    "NAMESPACE": 226,
    "NO_NEW_PRIVILEGES": 227,
    "SECCOMP": 228,
    "SELINUX_CONTEXT": 229,
    "PERSONALITY": 230,
    "APPARMOR": 231,
    "ADDRESS_FAMILIES": 232,
    "RUNTIME_DIRECTORY": 233,
    "CHOWN": 235,
    "SMACK_PROCESS_LABEL": 236,
    "KEYRING": 237,
    "STATE_DIRECTORY": 238,
    "CACHE_DIRECTORY": 239,
    "LOGS_DIRECTORY": 240,
    "CONFIGURATION_DIRECTORY": 241,
    "NUMA_POLICY": 242,
    "CREDENTIALS": 243,
    "BPF": 244,
    "EXCEPTION": 255,
}
EXIT_STATUS_BY_NAME: Final[Mapping[str, int]] = MappingProxyType(_EXIT_STATUS_BY_NAME)
"""systemd 252's exit-status table (``systemd-analyze exit-status``), name → code.

Names are case-sensitive and have no ``EX_`` prefix (``EX_TEMPFAIL`` is
rejected by systemd).
"""
_EXIT_NAME_BY_CODE: Final[dict[int, str]] = {v: k for k, v in _EXIT_STATUS_BY_NAME.items()}


def exit_status_name(code: int) -> str | None:
    """``EXEC`` for 203 etc. (as in ``status=203/EXEC``); ``None`` if unnamed."""
    return _EXIT_NAME_BY_CODE.get(code)


@dataclass(frozen=True, slots=True)
class ExitStatusSet:
    """Exit codes and signals that ``SuccessExitStatus=`` & co. list.

    Kept apart because systemd keeps two bitmaps: ``15`` is the exit code
    15, ``SIGTERM``/``TERM`` is death by signal 15.
    """

    codes: frozenset[int] = frozenset()
    signals: frozenset[int] = frozenset()

    def __or__(self, other: ExitStatusSet) -> ExitStatusSet:
        """Repeated assignments accumulate: ``a | b`` is both lists."""
        return ExitStatusSet(self.codes | other.codes, self.signals | other.signals)

    def __bool__(self) -> bool:
        return bool(self.codes or self.signals)


_EMPTY_EXIT_STATUS_SET: Final = ExitStatusSet()
_EXIT_CACHE: Final[dict[str, ExitStatusSet]] = {}
_WORD_RE: Final = re.compile(r"[^ \t\n\r]+")


def _split_plain_words(value: str) -> tuple[list[str], bool]:
    """``extract_first_word(…, NULL, 0)`` repeatedly: whitespace-separated, *no* unquoting.

    Quotes stay part of the word (``"1 2"`` is the two words ``"1`` and
    ``2"``, both invalid — checked with systemd 252); a backslash makes the
    next character literal.  Returns the words and whether a trailing
    backslash stopped the split (systemd keeps the words before it).
    """
    if "\\" not in value:
        return _WORD_RE.findall(value), False
    words: list[str] = []
    cur: list[str] = []
    in_word = False
    it = iter(value)
    for c in it:
        if c == "\\":
            nxt = next(it, None)
            if nxt is None:
                return words, True
            cur.append(nxt)
            in_word = True
        elif c in _WHITESPACE:
            if in_word:
                words.append("".join(cur))
                cur = []
                in_word = False
        else:
            cur.append(c)
            in_word = True
    if in_word:
        words.append("".join(cur))
    return words, False


def parse_exit_status_set(
    value: str,
    *,
    key: str = "SuccessExitStatus",
    errors: list[ValueParseError] | None = None,
) -> ExitStatusSet:
    """``SuccessExitStatus=``/``RestartPreventExitStatus=``/``RestartForceExitStatus=``.

    Words are exit codes 0…255 (C integers) or names from
    :data:`EXIT_STATUS_BY_NAME`, else signals (:func:`parse_signal` syntax).
    Numbers are always exit codes, never signals.

    systemd drops only the bad *word* and keeps the rest of the line
    (``SuccessExitStatus=TEMPFAIL bogus 250`` keeps 75 and 250).  To get that,
    pass a list as ``errors``: each bad word appends a ``ValueParseError``
    ("Failed to parse value, ignoring: bogus") and parsing continues.  Without
    ``errors`` the first bad word raises.  An empty value gives an empty set;
    resetting the accumulated list on an empty assignment is the caller's job.
    """
    cached = _EXIT_CACHE.get(value)
    if cached is not None:
        return cached
    if not value:
        return _EMPTY_EXIT_STATUS_SET
    words, truncated = _split_plain_words(value)
    clean = not truncated
    codes: set[int] = set()
    signals: set[int] = set()
    for word in words:
        code = _EXIT_STATUS_BY_NAME.get(word)
        if code is not None:
            codes.add(code)
            continue
        if not word[0].isalpha():  # a letter cannot start a C integer
            try:
                codes.add(_safe_atou(word, 255))
                continue
            except (_Invalid, _Range):
                pass
        try:
            signals.add(_signal_from_string(word))
        except (_Invalid, _Range):
            exc = ValueParseError(
                f"Failed to parse value, ignoring: {word}",
                fix="use exit codes 0…255, names like TEMPFAIL or EXEC, or signals like SIGKILL",
            )
            if errors is None:
                raise exc from None
            errors.append(exc)
            clean = False
    if truncated:
        # systemd has applied the words before the bad spot, then gives up.
        if errors is None:
            raise _trailing_backslash(key, value)
        errors.append(_trailing_backslash(key, value))
    result = ExitStatusSet(frozenset(codes), frozenset(signals))
    if clean:
        # Only clean parses are memoized: bad words must be reported every time.
        if len(_EXIT_CACHE) >= _CACHE_MAX:
            _EXIT_CACHE.clear()
        _EXIT_CACHE[value] = result
    return result


def _trailing_backslash(key: str, value: str) -> ValueParseError:
    return ValueParseError(f"Failed to parse {key}: {value}", fix="remove the trailing backslash")


# ---------------------------------------------------------------------------
# Environment variable names
# ---------------------------------------------------------------------------

_ENV_NAME_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
def _arg_max() -> int:
    try:
        return os.sysconf("SC_ARG_MAX")
    except (ValueError, OSError):  # pragma: no cover - non-POSIX
        return 2 * 1024 * 1024


_ARG_MAX: Final[int] = _arg_max()


def is_valid_env_name(name: str) -> bool:
    """systemd's ``env_name_is_valid``: ASCII letters, digits, ``_``; no leading digit.

    Also bounded by ``ARG_MAX - 2`` like systemd, since a longer assignment
    could not be passed to ``execve`` anyway.
    """
    return _ENV_NAME_RE.match(name) is not None and len(name) <= _ARG_MAX - 2
