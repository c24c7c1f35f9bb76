"""Go's ``time.Time`` as seen from templates (confd's ``datetime``).

``{{datetime}}`` returns ``time.Now()``; templates call its methods, mostly
``.Format "2006-01-02"`` with Go's reference-time layouts, which are ported
here (``Jan 2 15:04:05 2006 MST``, ``.000`` / ``.999`` fractions, ``Z07:00``...).

Printing a ``time.Time`` gives ``2006-01-02 15:04:05.999999999 -0700 MST``.
Go also appends the monotonic clock reading (`` m=+0.0107``), which makes the
output differ on every run (confd then reloads on every cycle, spec §3); we
deliberately leave it out.
"""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from .values import K_STRUCT, T_INT, T_STRING, GoError, GoFunc, GoType, Int64

_MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
_DAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]


class Month(int):
    """Go ``time.Month``: prints as its English name, ``%d`` as a number."""

    __slots__ = ()
    go_type: ClassVar[str] = "time.Month"

    def go_string(self) -> str:
        if 1 <= self <= 12:
            return _MONTHS[self - 1]
        return f"%!Month({int(self)})"


class Weekday(int):
    """Go ``time.Weekday`` (Sunday = 0)."""

    __slots__ = ()
    go_type: ClassVar[str] = "time.Weekday"

    def go_string(self) -> str:
        if 0 <= self <= 6:
            return _DAYS[self]
        return f"%!Weekday({int(self)})"


# layout chunk codes
(
    _LONG_MONTH,
    _MONTH,
    _NUM_MONTH,
    _ZERO_MONTH,
    _LONG_WEEKDAY,
    _WEEKDAY,
    _DAY,
    _UNDER_DAY,
    _ZERO_DAY,
    _UNDER_YEARDAY,
    _ZERO_YEARDAY,
    _HOUR,
    _HOUR12,
    _ZERO_HOUR12,
    _MINUTE,
    _ZERO_MINUTE,
    _SECOND,
    _ZERO_SECOND,
    _LONG_YEAR,
    _YEAR,
    _PM,
    _PM_LOWER,
    _TZ,
    _ISO8601_TZ,
    _ISO8601_SECONDS_TZ,
    _ISO8601_SHORT_TZ,
    _ISO8601_COLON_TZ,
    _ISO8601_COLON_SECONDS_TZ,
    _NUM_TZ,
    _NUM_SECONDS_TZ,
    _NUM_SHORT_TZ,
    _NUM_COLON_TZ,
    _NUM_COLON_SECONDS_TZ,
    _FRAC0,
    _FRAC9,
) = range(1, 36)

_STD0X = [_ZERO_MONTH, _ZERO_DAY, _ZERO_HOUR12, _ZERO_MINUTE, _ZERO_SECOND, _YEAR]

_TZ_PREFIXED = [
    ("070000", _NUM_SECONDS_TZ, _ISO8601_SECONDS_TZ),
    ("07:00:00", _NUM_COLON_SECONDS_TZ, _ISO8601_COLON_SECONDS_TZ),
    ("0700", _NUM_TZ, _ISO8601_TZ),
    ("07:00", _NUM_COLON_TZ, _ISO8601_COLON_TZ),
    ("07", _NUM_SHORT_TZ, _ISO8601_SHORT_TZ),
]


def _starts_lower(s: str) -> bool:
    return bool(s) and "a" <= s[0] <= "z"


def next_std_chunk(layout: str) -> tuple[str, int, int, str, str]:
    """Go's ``nextStdChunk``: (prefix, code, frac digits, frac separator, suffix)."""
    n = len(layout)
    for i, c in enumerate(layout):
        if c == "J" and layout.startswith("Jan", i):
            if layout.startswith("January", i):
                return layout[:i], _LONG_MONTH, 0, "", layout[i + 7 :]
            if not _starts_lower(layout[i + 3 :]):
                return layout[:i], _MONTH, 0, "", layout[i + 3 :]
        elif c == "M" and n >= i + 3:
            if layout.startswith("Mon", i):
                if layout.startswith("Monday", i):
                    return layout[:i], _LONG_WEEKDAY, 0, "", layout[i + 6 :]
                if not _starts_lower(layout[i + 3 :]):
                    return layout[:i], _WEEKDAY, 0, "", layout[i + 3 :]
            if layout.startswith("MST", i):
                return layout[:i], _TZ, 0, "", layout[i + 3 :]
        elif c == "0":
            if n >= i + 2 and "1" <= layout[i + 1] <= "6":
                return layout[:i], _STD0X[ord(layout[i + 1]) - 49], 0, "", layout[i + 2 :]
            if layout.startswith("002", i):
                return layout[:i], _ZERO_YEARDAY, 0, "", layout[i + 3 :]
        elif c == "1":
            if n >= i + 2 and layout[i + 1] == "5":
                return layout[:i], _HOUR, 0, "", layout[i + 2 :]
            return layout[:i], _NUM_MONTH, 0, "", layout[i + 1 :]
        elif c == "2":
            if layout.startswith("2006", i):
                return layout[:i], _LONG_YEAR, 0, "", layout[i + 4 :]
            return layout[:i], _DAY, 0, "", layout[i + 1 :]
        elif c == "_":
            if n >= i + 2 and layout[i + 1] == "2":
                if layout.startswith("2006", i + 1):
                    return layout[: i + 1], _LONG_YEAR, 0, "", layout[i + 5 :]
                return layout[:i], _UNDER_DAY, 0, "", layout[i + 2 :]
            if layout.startswith("__2", i):
                return layout[:i], _UNDER_YEARDAY, 0, "", layout[i + 3 :]
        elif c == "3":
            return layout[:i], _HOUR12, 0, "", layout[i + 1 :]
        elif c == "4":
            return layout[:i], _MINUTE, 0, "", layout[i + 1 :]
        elif c == "5":
            return layout[:i], _SECOND, 0, "", layout[i + 1 :]
        elif c == "P" and layout.startswith("PM", i):
            return layout[:i], _PM, 0, "", layout[i + 2 :]
        elif c == "p" and layout.startswith("pm", i):
            return layout[:i], _PM_LOWER, 0, "", layout[i + 2 :]
        elif c in "-Z":
            for text, num_code, iso_code in _TZ_PREFIXED:
                if layout.startswith(text, i + 1):
                    code = num_code if c == "-" else iso_code
                    return layout[:i], code, 0, "", layout[i + 1 + len(text) :]
        elif c in ".," and i + 1 < n and layout[i + 1] in "09":
            ch = layout[i + 1]
            j = i + 1
            while j < n and layout[j] == ch:
                j += 1
            if not (j < n and "0" <= layout[j] <= "9"):
                code = _FRAC0 if ch == "0" else _FRAC9
                return layout[:i], code, j - (i + 1), c, layout[j:]
    return layout, 0, 0, "", ""


def _append_int(x: int, width: int) -> str:
    if x < 0:
        return "-" + str(-x).rjust(width, "0")
    return str(x).rjust(width, "0")


def _frac(nanos: int, digits: int, sep: str, trim: bool) -> str:
    if trim and (digits == 0 or nanos == 0):
        return ""
    s = f"{nanos:09d}"
    if digits < 9:
        s = s[:digits]
    out = sep + s
    if trim:
        out = out.rstrip("0")
        if out == sep:
            return ""
    return out


class GoTime:
    """A Go ``time.Time``: an aware ``datetime`` plus nanoseconds."""

    __slots__ = ("dt", "nanos")
    go_type: ClassVar[str] = "time.Time"
    go_methods: ClassVar[dict[str, GoFunc]]

    def __init__(self, dt: datetime, nanos: int | None = None) -> None:
        if dt.tzinfo is None:
            dt = dt.astimezone()
        self.dt = dt
        self.nanos = dt.microsecond * 1000 if nanos is None else nanos

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GoTime) and self.dt == other.dt and self.nanos == other.nanos

    def __hash__(self) -> int:
        return hash((self.dt, self.nanos))

    def __repr__(self) -> str:
        return f"GoTime({self.go_string()!r})"

    def go_string(self) -> str:
        return self.format("2006-01-02 15:04:05.999999999 -0700 MST")

    def _offset(self) -> int:
        off = self.dt.utcoffset()
        return int(off.total_seconds()) if off is not None else 0

    def format(self, layout: str) -> str:
        """``Time.Format`` with a Go reference-time layout."""
        dt = self.dt
        out: list[str] = []
        while layout:
            prefix, code, digits, sep, suffix = next_std_chunk(layout)
            out.append(prefix)
            if code == 0:
                break
            layout = suffix
            hour = dt.hour
            if code == _YEAR:
                out.append(_append_int(dt.year % 100, 2))
            elif code == _LONG_YEAR:
                out.append(_append_int(dt.year, 4))
            elif code == _MONTH:
                out.append(_MONTHS[dt.month - 1][:3])
            elif code == _LONG_MONTH:
                out.append(_MONTHS[dt.month - 1])
            elif code == _NUM_MONTH:
                out.append(str(dt.month))
            elif code == _ZERO_MONTH:
                out.append(_append_int(dt.month, 2))
            elif code == _WEEKDAY:
                out.append(_DAYS[(dt.weekday() + 1) % 7][:3])
            elif code == _LONG_WEEKDAY:
                out.append(_DAYS[(dt.weekday() + 1) % 7])
            elif code == _DAY:
                out.append(str(dt.day))
            elif code == _UNDER_DAY:
                out.append(str(dt.day).rjust(2, " "))
            elif code == _ZERO_DAY:
                out.append(_append_int(dt.day, 2))
            elif code == _UNDER_YEARDAY:
                out.append(str(dt.timetuple().tm_yday).rjust(3, " "))
            elif code == _ZERO_YEARDAY:
                out.append(_append_int(dt.timetuple().tm_yday, 3))
            elif code == _HOUR:
                out.append(_append_int(hour, 2))
            elif code == _HOUR12:
                out.append(str(hour % 12 or 12))
            elif code == _ZERO_HOUR12:
                out.append(_append_int(hour % 12 or 12, 2))
            elif code == _MINUTE:
                out.append(str(dt.minute))
            elif code == _ZERO_MINUTE:
                out.append(_append_int(dt.minute, 2))
            elif code == _SECOND:
                out.append(str(dt.second))
            elif code == _ZERO_SECOND:
                out.append(_append_int(dt.second, 2))
            elif code == _PM:
                out.append("PM" if hour >= 12 else "AM")
            elif code == _PM_LOWER:
                out.append("pm" if hour >= 12 else "am")
            elif code in (_FRAC0, _FRAC9):
                out.append(_frac(self.nanos, digits, sep, code == _FRAC9))
            elif code == _TZ:
                name = dt.tzname() or ""
                if name and not name.startswith(("+", "-")):
                    out.append(name)
                else:
                    zone = self._offset() // 60
                    sign = "-" if zone < 0 else "+"
                    zone = abs(zone)
                    out.append(sign + _append_int(zone // 60, 2) + _append_int(zone % 60, 2))
            else:
                out.append(self._format_zone(code))
        return "".join(out)

    def _format_zone(self, code: int) -> str:
        offset = self._offset()
        iso = code in (
            _ISO8601_TZ,
            _ISO8601_COLON_TZ,
            _ISO8601_SECONDS_TZ,
            _ISO8601_SHORT_TZ,
            _ISO8601_COLON_SECONDS_TZ,
        )
        if offset == 0 and iso:
            return "Z"
        zone = int(offset / 60)
        absoffset = offset
        if zone < 0:
            sign = "-"
            zone = -zone
            absoffset = -absoffset
        else:
            sign = "+"
        out = sign + _append_int(zone // 60, 2)
        if code in (_ISO8601_COLON_TZ, _NUM_COLON_TZ, _ISO8601_COLON_SECONDS_TZ, _NUM_COLON_SECONDS_TZ):
            out += ":"
        if code not in (_NUM_SHORT_TZ, _ISO8601_SHORT_TZ):
            out += _append_int(zone % 60, 2)
        if code in (_ISO8601_SECONDS_TZ, _NUM_SECONDS_TZ, _NUM_COLON_SECONDS_TZ, _ISO8601_COLON_SECONDS_TZ):
            if code in (_NUM_COLON_SECONDS_TZ, _ISO8601_COLON_SECONDS_TZ):
                out += ":"
            out += _append_int(absoffset % 60, 2)
        return out

    # -- Go methods --------------------------------------------------------

    def unix(self) -> int:
        return calendar.timegm(self.dt.astimezone(UTC).timetuple())

    def add_date(self, years: int, months: int, days: int) -> GoTime:
        """``AddDate``: Go normalises overflowing days/months like ``time.Date``."""
        dt = self.dt
        total_months = dt.year * 12 + (dt.month - 1) + months
        y, m = divmod(total_months, 12)
        y += years
        first = dt.replace(year=y, month=m + 1, day=1)
        shifted = first + timedelta(days=dt.day - 1 + days)
        return GoTime(shifted, self.nanos)


def _method(fn: Any, params: tuple[GoType, ...] = ()) -> GoFunc:
    return GoFunc(fn, params)


def _require_time(v: Any) -> GoTime:
    if not isinstance(v, GoTime):
        raise GoError("wrong type for value; expected time.Time")
    return v


T_TIME = GoType("time.Time", K_STRUCT, lambda v: type(v) is GoTime)

GoTime.go_methods = {
    "Format": _method(lambda t, layout: t.format(layout), (T_STRING,)),
    "String": _method(lambda t: t.go_string()),
    "Year": _method(lambda t: t.dt.year),
    "Month": _method(lambda t: Month(t.dt.month)),
    "Day": _method(lambda t: t.dt.day),
    "Hour": _method(lambda t: t.dt.hour),
    "Minute": _method(lambda t: t.dt.minute),
    "Second": _method(lambda t: t.dt.second),
    "Nanosecond": _method(lambda t: t.nanos),
    "YearDay": _method(lambda t: t.dt.timetuple().tm_yday),
    "Weekday": _method(lambda t: Weekday((t.dt.weekday() + 1) % 7)),
    "Unix": _method(lambda t: Int64(t.unix())),
    "UnixMilli": _method(lambda t: Int64(t.unix() * 1000 + t.nanos // 1_000_000)),
    "UnixMicro": _method(lambda t: Int64(t.unix() * 1_000_000 + t.nanos // 1000)),
    "UnixNano": _method(lambda t: Int64(t.unix() * 1_000_000_000 + t.nanos)),
    "UTC": _method(lambda t: GoTime(t.dt.astimezone(UTC), t.nanos)),
    "Local": _method(lambda t: GoTime(t.dt.astimezone(), t.nanos)),
    "IsZero": _method(lambda t: False),
    "AddDate": _method(lambda t, y, m, d: t.add_date(y, m, d), (T_INT, T_INT, T_INT)),
    "Before": _method(lambda t, u: (t.dt, t.nanos) < (_require_time(u).dt, u.nanos), (T_TIME,)),
    "After": _method(lambda t, u: (t.dt, t.nanos) > (_require_time(u).dt, u.nanos), (T_TIME,)),
    "Equal": _method(lambda t, u: (t.dt, t.nanos) == (_require_time(u).dt, u.nanos), (T_TIME,)),
}
