"""Value parsers (flotte.unit.values) against the shared vectors and systemd 252.

Every ``timespan`` and ``rlimit`` vector is a test case.  The remaining tables
were produced by running systemd 252.39 itself (``systemd --test --user`` unit
dumps and warnings, ``systemd-analyze timespan`` / ``exit-status``); the
``oracle``-marked tests at the end call the parsers inside Debian's
``libsystemd-shared-252.so`` directly through ctypes and compare on random
input, and are skipped where that library is not installed.
"""

from __future__ import annotations

import ctypes
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from vectors import load_vectors

from flotte.unit.errors import ValueParseError
from flotte.unit.values import (
    EXIT_STATUS_BY_NAME,
    RLIM_INFINITY,
    RLIMIT_KEYS,
    SIGNAL_BY_NAME,
    TIME_SETTING_WHAT,
    USEC_INFINITY,
    USEC_PER_MINUTE,
    USEC_PER_MONTH,
    USEC_PER_MSEC,
    USEC_PER_SEC,
    USEC_PER_YEAR,
    ExitStatusSet,
    exit_status_name,
    format_timespan,
    format_umask,
    is_valid_env_name,
    parse_bool,
    parse_bytes,
    parse_exit_status_set,
    parse_nice,
    parse_rlimit,
    parse_sec_fix_0,
    parse_signal,
    parse_timespan,
    parse_umask,
    signal_name,
)
from support import require_file

VECTORS = load_vectors()
TIMESPAN: list[dict[str, Any]] = VECTORS["timespan"]
RLIMIT: list[dict[str, Any]] = VECTORS["rlimit"]
ORACLE: list[dict[str, Any]] = VECTORS["systemd252_oracle"]


# ---------------------------------------------------------------------------
# Shared vectors
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "entry", TIMESPAN, ids=[f"{e['function'].split()[0]}:{e['input']!r}" for e in TIMESPAN]
)
def test_timespan_vector(entry: dict[str, Any]) -> None:
    parse = parse_sec_fix_0 if entry["function"].startswith("parse_sec_fix_0") else parse_timespan
    if entry.get("expected_error"):
        with pytest.raises(ValueParseError) as exc:
            parse(entry["input"])
        assert exc.value.message == f"Failed to parse time value, ignoring: {entry['input']}"
        assert exc.value.fix
        return
    want = entry["expected_usec"]
    assert parse(entry["input"]) == (USEC_INFINITY if want == "infinity" else want)


def _rl(v: int | str) -> int:
    return RLIM_INFINITY if v == "infinity" else int(v)


@pytest.mark.parametrize("entry", RLIMIT, ids=[f"{e['key']}={e['input']}" for e in RLIMIT])
def test_rlimit_vector(entry: dict[str, Any]) -> None:
    if "expected" in entry:  # "invalid: previous value kept"
        with pytest.raises(ValueParseError):
            parse_rlimit(entry["key"], entry["input"])
        return
    want = (_rl(entry["expected_soft"]), _rl(entry["expected_hard"]))
    assert parse_rlimit(entry["key"], entry["input"]) == want


# ---------------------------------------------------------------------------
# The systemd252_oracle entries: dumps of time spans, booleans, signals, UMask
# ---------------------------------------------------------------------------

_DEFAULTS: dict[str, Any] = {
    "TimeoutStartSec": 90 * USEC_PER_SEC,
    "TimeoutStopSec": 90 * USEC_PER_SEC,
    "RestartSec": 100 * USEC_PER_MSEC,
    "RuntimeMaxSec": USEC_INFINITY,
    "RemainAfterExit": False,
    "KillSignal": 15,
    "FinalKillSignal": 9,
    "UMask": 0o022,
    "Nice": None,
}
_FIX_0 = ("TimeoutSec", "TimeoutStartSec", "TimeoutStopSec")


def _render(key: str, v: Any) -> str:
    """A value the way the 252 unit dump prints it (time spans: whole-second accuracy)."""
    if key.endswith("Sec"):
        return format_timespan(v, USEC_PER_SEC)
    if isinstance(v, bool):
        return "yes" if v else "no"
    if key.endswith("Signal"):
        return signal_name(v)
    if key == "UMask":
        return format_umask(v)
    return str(v)


def _apply_settings(unit_file: str) -> tuple[dict[str, Any], list[str]]:
    """Apply the settings this module parses, last one wins, like systemd; collect warnings."""
    state = dict(_DEFAULTS)
    warnings: list[str] = []
    for lineno, line in enumerate(unit_file.splitlines(), 1):
        key, eq, value = line.partition("=")
        if not eq:
            continue
        try:
            if key in _FIX_0:
                v = parse_sec_fix_0(value, what=TIME_SETTING_WHAT[key])
                for k in ("TimeoutStartSec", "TimeoutStopSec") if key == "TimeoutSec" else (key,):
                    state[k] = v
            elif key in ("RestartSec", "RuntimeMaxSec"):
                state[key] = parse_timespan(value, what=TIME_SETTING_WHAT.get(key, "sec value"))
            elif key == "RemainAfterExit":
                state[key] = parse_bool(value)
            elif key.endswith("KillSignal"):
                state[key] = parse_signal(value)
            elif key == "UMask":
                state[key] = parse_umask(value)
            elif key == "Nice":
                state[key] = parse_nice(value)
        except ValueParseError as exc:
            warnings.append(f"line {lineno}: {exc.message}")
    return state, warnings


_ORACLE_DUMPS = [
    e for e in ORACLE if set(e.get("expected_dump", {})) & (set(_DEFAULTS) - {"Type", "Restart"})
]


@pytest.mark.parametrize("entry", _ORACLE_DUMPS, ids=[e["name"] for e in _ORACLE_DUMPS])
def test_systemd252_dump_values(entry: dict[str, Any]) -> None:
    state, warnings = _apply_settings(entry["unit_file"])
    checked = 0
    for key, want in entry["expected_dump"].items():
        if key in _DEFAULTS:
            assert [_render(key, state[key])] == want, key
            checked += 1
    assert checked
    for w in entry.get("expected_warnings", []):
        if "time value" in w:
            assert w in warnings


def test_oracle_booleans_are_covered() -> None:
    """'True', 'YeS' and 't' are the spellings systemd 252 was seen accepting."""
    spellings = [
        line.partition("=")[2]
        for e in ORACLE
        for line in e.get("unit_file", "").splitlines()
        if line.startswith("RemainAfterExit=")
    ]
    assert {"True", "YeS", "t"} <= set(spellings)
    assert all(parse_bool(s) is True for s in spellings)


# ---------------------------------------------------------------------------
# Booleans
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "want"),
    [
        *[(s, True) for s in ("1", "yes", "y", "true", "t", "on", "YES", "True", "oN", "Y", "T")],
        *[(s, False) for s in ("0", "no", "n", "false", "f", "off", "NO", "FaLsE", "OFF", "N")],
    ],
)
def test_parse_bool(text: str, want: bool) -> None:
    assert parse_bool(text) is want


@pytest.mark.parametrize("text", ["maybe", "", "2", "ye", "yes ", "oui", "ＹＥＳ", "ı"])
def test_parse_bool_rejects(text: str) -> None:
    with pytest.raises(ValueParseError) as exc:
        parse_bool(text)
    # the exact line systemd 252 logs (empty value included)
    assert exc.value.message == f"Failed to parse boolean value, ignoring: {text}"
    assert exc.value.fix and "yes" in exc.value.fix


# ---------------------------------------------------------------------------
# Time spans
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "usec"),
    [
        ("0", 0),
        ("1.5us", 1),  # below the resolution: dropped digit by digit
        ("1µs", 1),  # U+00B5 MICRO SIGN
        ("1μs", 1),  # U+03BC GREEK SMALL LETTER MU
        ("1M", USEC_PER_MONTH),
        ("1month", USEC_PER_MONTH),
        ("2 years", 2 * USEC_PER_YEAR),
        ("1m", USEC_PER_MINUTE),
        ("1ms", USEC_PER_MSEC),
        ("300ms20s 5day", 300_000 + 20_000_000 + 5 * 86_400_000_000),
        ("5s5", 10 * USEC_PER_SEC),  # a bare number after a unit is in the default unit
        ("5s+5", 10 * USEC_PER_SEC),
        ("010", 10 * USEC_PER_SEC),  # time spans are decimal, unlike integer settings
        ("  infinity  ", USEC_INFINITY),
        ("1min 30.5s", 90_500_000),
    ],
)
def test_parse_timespan_more(text: str, usec: int) -> None:
    assert parse_timespan(text) == usec


@pytest.mark.parametrize(
    "text", ["5secs", "5 mins", "5x", "5+5", "+.5", "1S", "5 sec x", "infinityx", "5.5.5", "1e3"]
)
def test_parse_timespan_rejects(text: str) -> None:
    with pytest.raises(ValueParseError):
        parse_timespan(text)


def test_parse_timespan_default_unit_and_overflow() -> None:
    assert parse_timespan("58", default_unit="us") == 58
    assert parse_timespan("2345ms", default_unit="us") == 2_345_000
    assert parse_timespan("18446744073709us") == 18_446_744_073_709
    with pytest.raises(ValueParseError):
        parse_timespan("584542y")  # beyond 2**64 µs
    with pytest.raises(ValueError):
        parse_timespan("5", default_unit="fortnight")


def test_parse_sec_fix_0() -> None:
    assert parse_sec_fix_0("0") == USEC_INFINITY
    assert parse_sec_fix_0("0.0s") == USEC_INFINITY
    assert parse_sec_fix_0("infinity") == USEC_INFINITY
    assert parse_sec_fix_0("42") == 42 * USEC_PER_SEC


@pytest.mark.parametrize(
    ("key", "message"),
    [
        # as logged by systemd 252 for "<key>=garbage"
        ("TimeoutStopSec", "Failed to parse time value, ignoring: garbage"),
        ("TimeoutStartSec", "Failed to parse TimeoutStartSec= parameter, ignoring: garbage"),
        ("TimeoutSec", "Failed to parse TimeoutSec= parameter, ignoring: garbage"),
        ("TimeoutAbortSec", "Failed to parse TimeoutAbortSec= setting, ignoring: garbage"),
        ("RestartSec", "Failed to parse sec value, ignoring: garbage"),
        ("WatchdogSec", "Failed to parse sec value, ignoring: garbage"),
    ],
)
def test_time_error_wording_per_setting(key: str, message: str) -> None:
    with pytest.raises(ValueParseError) as exc:
        parse_timespan("garbage", what=TIME_SETTING_WHAT.get(key, "sec value"))
    assert exc.value.message == message


@pytest.mark.parametrize(
    ("text", "fix_part"),
    [("-5s", "negative"), ("5.", "decimal point"), ("infinity 5s", "infinity"), ("x", "90s")],
)
def test_time_error_fix(text: str, fix_part: str) -> None:
    with pytest.raises(ValueParseError) as exc:
        parse_timespan(text)
    assert exc.value.fix and fix_part in exc.value.fix


@pytest.mark.parametrize(
    ("usec", "accuracy", "text"),
    [
        # systemd-analyze timespan (accuracy 1)
        (1_500_000, 1, "1.500000s"),
        (90_500_000, 1, "1min 30.500000s"),
        (USEC_PER_MONTH, 1, "1month"),
        (USEC_PER_YEAR + 2 * USEC_PER_MONTH, 1, "1y 2month"),
        (59_999_900, 1, "59.999900s"),
        (1_500, 1, "1.500ms"),
        (1, 1, "1us"),
        (0, 1, "0"),
        (USEC_INFINITY, 1, "infinity"),
        # systemd --test unit dump (accuracy USEC_PER_SEC)
        (90 * USEC_PER_SEC, USEC_PER_SEC, "1min 30s"),
        (100_000, USEC_PER_SEC, "100ms"),
        (42 * USEC_PER_SEC, USEC_PER_SEC, "42s"),
        (320 * USEC_PER_SEC, USEC_PER_SEC, "5min 20s"),
        (1_500_000, USEC_PER_SEC, "1s"),  # RestartSec=1.5
        (1_500, USEC_PER_SEC, "1ms"),  # RuntimeMaxSec=1.5ms
        (90_500_000, USEC_PER_SEC, "1min 30s"),
        (2_500_000, USEC_PER_SEC, "2s"),
        (86_400_000_000 + 500, USEC_PER_SEC, "1d"),  # 1d 0.5ms
        (5 * 86_400_000_000 + 20_300_000, USEC_PER_SEC, "5d 20s"),  # 300ms20s 5day
        (59_500_000, USEC_PER_SEC, "59s"),
        (USEC_INFINITY, USEC_PER_SEC, "infinity"),
        (
            parse_timespan("1y 2month 3w 4d 5h 6min 7s 8ms 9us"),
            USEC_PER_SEC,
            "1y 2month 3w 4d 5h 6min 7s",
        ),
    ],
)
def test_format_timespan(usec: int, accuracy: int, text: str) -> None:
    assert format_timespan(usec, accuracy) == text


# systemd cannot parse back its own output from 584542 years on: parse_time refuses a
# component whose count is >= USEC_INFINITY / unit ("584542y" → ERANGE, checked with
# systemd-analyze), so the round trip only holds below that.
_ROUND_TRIP_MAX = 584_542 * USEC_PER_YEAR - 1


def test_format_timespan_top_of_range_like_systemd() -> None:
    assert format_timespan(584_542 * USEC_PER_YEAR) == "584542y"
    with pytest.raises(ValueParseError):
        parse_timespan("584542y")
    assert parse_timespan("584541y") == 584_541 * USEC_PER_YEAR


@settings(max_examples=500)
@given(st.integers(min_value=0, max_value=_ROUND_TRIP_MAX // USEC_PER_MSEC))
def test_format_timespan_round_trips_whole_ms(ms: int) -> None:
    usec = ms * USEC_PER_MSEC
    assert parse_timespan(format_timespan(usec)) == usec


@settings(max_examples=500)
@given(st.integers(min_value=0, max_value=_ROUND_TRIP_MAX))
def test_format_timespan_round_trips_any_usec(usec: int) -> None:
    assert parse_timespan(format_timespan(usec)) == usec


@settings(max_examples=300)
@given(st.integers(min_value=0, max_value=_ROUND_TRIP_MAX))
def test_format_timespan_whole_second_accuracy_truncates(usec: int) -> None:
    """The dump form loses at most the sub-second part, never more."""
    back = parse_timespan(format_timespan(usec, USEC_PER_SEC))
    assert back <= usec
    if usec >= USEC_PER_SEC:
        assert usec - back < USEC_PER_SEC


@given(st.text(max_size=30))
def test_parse_timespan_only_raises_value_parse_error(text: str) -> None:
    try:
        v = parse_timespan(text)
    except ValueParseError:
        return
    assert 0 <= v <= USEC_INFINITY


# ---------------------------------------------------------------------------
# Sizes and resource limits
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "n"),
    [
        ("0", 0),
        ("512", 512),
        ("1K", 1024),
        ("4G", 4 * 1024**3),
        ("1.5G", 1_610_612_736),
        ("1G 512M", 1_610_612_736),
        ("1G1M", 1024**3 + 1024**2),
        ("9K287", 9 * 1024 + 287),  # the bare number after K is bytes
        ("10.M", 10 * 1024**2),
        ("5.", 5),
        ("1 G", 1024**3),
        ("7B", 7),
        ("15E", 15 * 1024**6),
    ],
)
def test_parse_bytes(text: str, n: int) -> None:
    assert parse_bytes(text) == n


@pytest.mark.parametrize("text", ["", "-1", "1KB", "1k", "512M 1G", "16E", "0x10", "x", "1 2 3"])
def test_parse_bytes_rejects(text: str) -> None:
    with pytest.raises(ValueParseError):
        parse_bytes(text)


@pytest.mark.parametrize(
    ("key", "text", "want"),
    [
        # all checked against systemd 252's unit dump
        ("LimitNOFILE", "0x10", (16, 16)),
        ("LimitNPROC", "010:0b1111", (8, 15)),
        ("LimitCORE", "1.5G", (1_610_612_736, 1_610_612_736)),
        ("LimitAS", "1G 512M", (1_610_612_736, 1_610_612_736)),
        ("LimitSTACK", "5 :6", (5, 6)),
        ("LimitFSIZE", "5: 6", (5, 6)),
        ("LimitNICE", "+5", (15, 15)),
        ("LimitNICE", "-20", (40, 40)),
        ("LimitNICE", "0", (0, 0)),
        ("LimitNICE", "40", (40, 40)),
        ("LimitCPU", "1.5s:infinity", (2, RLIM_INFINITY)),
        ("LimitCPU", "0", (0, 0)),
        ("LimitRTTIME", "1.5", (1, 1)),
        ("LimitNOFILE", "5:6:", (5, 6)),  # one trailing ':' is swallowed
        ("LimitNOFILE", "-0", (0, 0)),
        ("LimitCORE", "infinity:infinity", (RLIM_INFINITY, RLIM_INFINITY)),
    ],
)
def test_parse_rlimit_more(key: str, text: str, want: tuple[int, int]) -> None:
    assert parse_rlimit(key, text) == want


@pytest.mark.parametrize(
    ("key", "text", "message"),
    [
        ("LimitRTPRIO", "", "Failed to parse resource value, ignoring: "),
        ("LimitMSGQUEUE", "1K:1", "Soft resource limit chosen higher than hard limit, ignoring: 1K:1"),
        ("LimitNOFILE", "infinity:5", "Soft resource limit chosen higher than hard limit, ignoring: infinity:5"),
        ("LimitNOFILE", "18446744073709551615", "Failed to parse resource value, ignoring: 18446744073709551615"),
        ("LimitNOFILE", "-1", "Failed to parse resource value, ignoring: -1"),
        ("LimitNOFILE", "5::", "Failed to parse resource value, ignoring: 5::"),
        ("LimitNICE", "-21", "Failed to parse resource value, ignoring: -21"),
        ("LimitNICE", "41", "Failed to parse resource value, ignoring: 41"),
        ("LimitNICE", "+20", "Failed to parse resource value, ignoring: +20"),
        ("LimitCPU", "x", "Failed to parse resource value, ignoring: x"),
    ],
)  # fmt: skip
def test_parse_rlimit_rejects(key: str, text: str, message: str) -> None:
    with pytest.raises(ValueParseError) as exc:
        parse_rlimit(key, text)
    assert exc.value.message == message
    assert exc.value.fix


def test_rlimit_keys() -> None:
    import resource

    assert len(RLIMIT_KEYS) == 16
    assert RLIMIT_KEYS["LimitNOFILE"] == resource.RLIMIT_NOFILE
    assert RLIMIT_KEYS["LimitRTTIME"] == resource.RLIMIT_RTTIME
    assert RLIM_INFINITY == resource.RLIM_INFINITY
    for key in RLIMIT_KEYS:
        if key == "LimitNICE":  # systemd 252 has no infinity for it
            with pytest.raises(ValueParseError):
                parse_rlimit(key, "infinity")
            continue
        assert parse_rlimit(key, "infinity") == (RLIM_INFINITY, RLIM_INFINITY)
    with pytest.raises(KeyError):
        parse_rlimit("LimitBOGUS", "1")


# ---------------------------------------------------------------------------
# Signals
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "name"),
    [
        # KillSignal=<text> → "KillSignal: <name>" in the systemd 252 dump
        ("SIGINT", "SIGINT"),
        ("3", "SIGQUIT"),
        ("9", "SIGKILL"),
        ("0x9", "SIGKILL"),
        ("011", "SIGKILL"),
        ("0b1001", "SIGKILL"),
        ("0o11", "SIGKILL"),
        ("+9", "SIGKILL"),
        ("IO", "SIGIO"),
        ("SIGSYS", "SIGSYS"),
        ("SIGPWR", "SIGPWR"),
        ("SIGSTKFLT", "SIGSTKFLT"),
        ("64", "SIGRTMIN+30"),
        ("34", "SIGRTMIN+0"),
        ("33", "SIG33"),
        ("RTMIN", "SIGRTMIN+0"),
        ("SIGRTMIN", "SIGRTMIN+0"),
        ("RTMIN+0", "SIGRTMIN+0"),
        ("RTMIN+30", "SIGRTMIN+30"),
        ("RTMIN+030", "SIGRTMIN+24"),
        ("RTMIN+0x2", "SIGRTMIN+2"),
        ("SIGRTMIN+2", "SIGRTMIN+2"),
        ("RTMAX", "SIGRTMIN+30"),
        ("RTMAX-1", "SIGRTMIN+29"),
        ("RTMAX-30", "SIGRTMIN+0"),
    ],
)
def test_parse_signal(text: str, name: str) -> None:
    assert signal_name(parse_signal(text)) == name


@pytest.mark.parametrize(
    "text",
    [
        "term", "SIGIOT", "SIGPOLL", "SIGCLD", "SIGUNUSED", "SIG", "SIG9", "0", "65", "-9",
        "RTMIN+31", "SIGRTMAX-31", "RTMIN+ 2", "RTMIN+-0", "SIGRTMIN+0b11", "RTMIN-1", "",
    ],
)  # fmt: skip
def test_parse_signal_rejects(text: str) -> None:
    with pytest.raises(ValueParseError) as exc:
        parse_signal(text)
    assert exc.value.message == f"Failed to parse signal name, ignoring: {text}"


def test_signal_table() -> None:
    assert SIGNAL_BY_NAME["TERM"] == 15
    assert SIGNAL_BY_NAME["KILL"] == 9
    assert len(SIGNAL_BY_NAME) == 31
    for name, n in SIGNAL_BY_NAME.items():
        assert signal_name(n) == "SIG" + name
        assert parse_signal(name) == parse_signal("SIG" + name) == parse_signal(str(n)) == n


# ---------------------------------------------------------------------------
# UMask=, Nice=
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "mask"),
    [("0077", 0o077), ("77", 0o077), ("0", 0), ("7777", 0o7777), ("00000000000077", 0o77)],
)
def test_parse_umask(text: str, mask: int) -> None:
    assert parse_umask(text) == mask


@pytest.mark.parametrize("text", ["8", "+77", "-7", "010000", "0x7", "0o7", ""])
def test_parse_umask_rejects(text: str) -> None:
    with pytest.raises(ValueParseError) as exc:
        parse_umask(text)
    assert exc.value.message == f"Failed to parse mode value, ignoring: {text}"


def test_format_umask() -> None:
    assert format_umask(0o077) == "0077"
    assert format_umask(0o022) == "0022"
    assert format_umask(0o7777) == "7777"


@pytest.mark.parametrize(
    ("text", "nice"), [("5", 5), ("-5", -5), ("-20", -20), ("19", 19), ("0x5", 5), ("+3", 3)]
)
def test_parse_nice(text: str, nice: int) -> None:
    assert parse_nice(text) == nice


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("20", "Nice priority out of range, ignoring: 20"),
        ("-21", "Nice priority out of range, ignoring: -21"),
        ("99999999999", "Nice priority out of range, ignoring: 99999999999"),
        ("5x", "Failed to parse nice priority '5x', ignoring: Invalid argument"),
    ],
)
def test_parse_nice_rejects(text: str, message: str) -> None:
    with pytest.raises(ValueParseError) as exc:
        parse_nice(text)
    assert exc.value.message == message


# ---------------------------------------------------------------------------
# Exit statuses
# ---------------------------------------------------------------------------


def test_exit_status_table_matches_systemd_analyze() -> None:
    """Spot checks of ``systemd-analyze exit-status`` (252); 223 and 234 are retired."""
    assert len(EXIT_STATUS_BY_NAME) == 67
    assert EXIT_STATUS_BY_NAME["TEMPFAIL"] == 75
    assert EXIT_STATUS_BY_NAME["CHDIR"] == 200
    assert EXIT_STATUS_BY_NAME["EXEC"] == 203
    assert EXIT_STATUS_BY_NAME["USER"] == 217
    assert EXIT_STATUS_BY_NAME["BPF"] == 244
    assert EXIT_STATUS_BY_NAME["EXCEPTION"] == 255
    assert 223 not in EXIT_STATUS_BY_NAME.values()
    assert 234 not in EXIT_STATUS_BY_NAME.values()
    assert exit_status_name(203) == "EXEC"
    assert exit_status_name(100) is None


@pytest.mark.parametrize(
    ("text", "codes", "signals"),
    [
        ("TEMPFAIL 250 SIGKILL", {75, 250}, {9}),
        ("0 1 255", {0, 1, 255}, set()),
        ("15 TERM SIGTERM", {15}, {15}),  # numbers are exit codes, names are signals
        ("0x10 010 0b11 +5 -0", {16, 8, 3, 5, 0}, set()),
        ("EXEC CHDIR NOTINSTALLED", {203, 200, 5}, set()),
        ("RTMIN+3 SIGRTMAX-1", set(), {37, 63}),
        ("  1\t2  ", {1, 2}, set()),
        ("", set(), set()),
    ],
)
def test_parse_exit_status_set(text: str, codes: set[int], signals: set[int]) -> None:
    assert parse_exit_status_set(text) == ExitStatusSet(frozenset(codes), frozenset(signals))


def test_exit_status_set_keeps_good_words_like_systemd() -> None:
    """Warnings as systemd 252 logged them for this line; quotes are *not* removed."""
    errors: list[ValueParseError] = []
    got = parse_exit_status_set(
        "TEMPFAIL \"1 2\" 0x10 SIGKILL TERM 300 bogus SIGRTMIN+3 '5' EX_TEMPFAIL", errors=errors
    )
    assert got == ExitStatusSet(frozenset({75, 16}), frozenset({9, 15, 37}))
    assert [e.message for e in errors] == [
        'Failed to parse value, ignoring: "1',
        'Failed to parse value, ignoring: 2"',
        "Failed to parse value, ignoring: 300",
        "Failed to parse value, ignoring: bogus",
        "Failed to parse value, ignoring: '5'",
        "Failed to parse value, ignoring: EX_TEMPFAIL",
    ]
    with pytest.raises(ValueParseError, match="bogus"):
        parse_exit_status_set("1 bogus 2")


def test_exit_status_set_backslashes() -> None:
    assert parse_exit_status_set(r"1\5 2") == ExitStatusSet(frozenset({15, 2}))
    errors: list[ValueParseError] = []
    got = parse_exit_status_set("1 2 x\\", key="RestartPreventExitStatus", errors=errors)
    assert got.codes == {1, 2}
    assert [e.message for e in errors] == ["Failed to parse RestartPreventExitStatus: 1 2 x\\"]
    with pytest.raises(ValueParseError):
        parse_exit_status_set("1 \\")


def test_exit_status_set_union_and_truth() -> None:
    a = parse_exit_status_set("1 SIGKILL")
    b = parse_exit_status_set("2")
    assert a | b == ExitStatusSet(frozenset({1, 2}), frozenset({9}))
    assert a and not ExitStatusSet()


def test_exit_status_bad_word_reported_every_time() -> None:
    """The memo must not swallow warnings on a second parse of the same value."""
    for _ in range(2):
        errors: list[ValueParseError] = []
        parse_exit_status_set("1 nope", errors=errors)
        assert len(errors) == 1


# ---------------------------------------------------------------------------
# Environment variable names
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("FOO", True), ("_", True), ("a1_B", True), ("", False), ("1A", False),
        ("A-B", False), ("export X", False), ("A.B", False), ("Ä", False), ("A=B", False),
    ],
)  # fmt: skip
def test_is_valid_env_name(name: str, ok: bool) -> None:
    assert is_valid_env_name(name) is ok


# ---------------------------------------------------------------------------
# Differential tests against libsystemd-shared-252.so (the real parsers)
# ---------------------------------------------------------------------------

_LIBSHARED = "/usr/lib/x86_64-linux-gnu/systemd/libsystemd-shared-252.so"


def _libsystemd_shared() -> ctypes.CDLL:
    require_file(_LIBSHARED, "systemd")
    lib = ctypes.CDLL(_LIBSHARED)
    lib.parse_time.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_uint64), ctypes.c_uint64]
    lib.parse_size.argtypes = [ctypes.c_char_p, ctypes.c_uint64, ctypes.POINTER(ctypes.c_uint64)]
    lib.rlimit_parse.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.POINTER(_CRlimit)]
    lib.signal_from_string.argtypes = [ctypes.c_char_p]
    lib.exit_status_from_string.argtypes = [ctypes.c_char_p]
    lib.parse_boolean.argtypes = [ctypes.c_char_p]
    lib.format_timespan.argtypes = [
        ctypes.c_char_p,
        ctypes.c_size_t,
        ctypes.c_uint64,
        ctypes.c_uint64,
    ]
    lib.format_timespan.restype = ctypes.c_char_p
    return lib


class _CRlimit(ctypes.Structure):
    _fields_ = [("cur", ctypes.c_uint64), ("max", ctypes.c_uint64)]


_TIME_WORDS = [
    "s", "ms", "min", "m", "M", "h", "hr", "d", "w", "y", "us", "µs", "μs", "sec", "seconds",
    "minutes", "month", "year", "msec", "usec", "days", "weeks", "infinity", "secs", "x",
]  # fmt: skip
_NUMERIC_WORDS = [
    *"0123456789", "0123456789", " ", "\t", "\v", ".", "+", "-", ":", "x", "X", "b", "o",
    "K", "M", "G", "E", "B", "infinity", "RTMIN", "RTMAX", "SIG", "TERM", "TEMPFAIL",
]  # fmt: skip


def _joined(words: list[str], max_size: int = 8) -> st.SearchStrategy[str]:
    return st.lists(st.sampled_from(words), max_size=max_size).map("".join)


_ORACLE_SETTINGS = settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def _ours(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except ValueParseError:
        return None


@pytest.mark.oracle
@_ORACLE_SETTINGS
@given(_joined([*"0123456789", "0123456789", " ", "\t", ".", "+", "-", *_TIME_WORDS]))
def test_oracle_parse_time(text: str) -> None:
    lib = _libsystemd_shared()
    for default_usec, unit in ((1, "us"), (USEC_PER_SEC, "s"), (USEC_PER_MINUTE, "min")):
        out = ctypes.c_uint64()
        rc = lib.parse_time(text.encode(), ctypes.byref(out), default_usec)
        ours = _ours(lambda t, u=unit: parse_timespan(t, default_unit=u), text)
        assert ours == (None if rc < 0 else out.value), (text, unit)


@pytest.mark.oracle
@_ORACLE_SETTINGS
@given(
    st.one_of(
        st.integers(min_value=0, max_value=USEC_INFINITY),
        st.integers(min_value=0, max_value=10**9),
    ),
    st.sampled_from([0, 1, 10, 1000, 1500, USEC_PER_SEC, USEC_PER_MINUTE]),
)
def test_oracle_format_timespan(usec: int, accuracy: int) -> None:
    lib = _libsystemd_shared()
    buf = ctypes.create_string_buffer(256)
    theirs = lib.format_timespan(buf, len(buf), usec, accuracy).decode()
    assert format_timespan(usec, accuracy) == theirs


@pytest.mark.oracle
@_ORACLE_SETTINGS
@given(_joined(_NUMERIC_WORDS))
def test_oracle_numbers_sizes_limits_signals(text: str) -> None:
    lib = _libsystemd_shared()
    raw = text.encode()
    out = ctypes.c_uint64()
    rc = lib.parse_size(raw, 1024, ctypes.byref(out))
    assert _ours(parse_bytes, text) == (None if rc < 0 else out.value), text

    for key, res in RLIMIT_KEYS.items():
        rl = _CRlimit()
        rc = lib.rlimit_parse(res, raw, ctypes.byref(rl))
        ours = _ours(parse_rlimit, key, text)
        if ours is not None:
            ours = tuple(USEC_INFINITY if v == RLIM_INFINITY else v for v in ours)
        assert ours == (None if rc < 0 else (rl.cur, rl.max)), (key, text)

    rc = lib.signal_from_string(raw)
    assert _ours(parse_signal, text) == (None if rc < 0 else rc), text

    rc = lib.exit_status_from_string(raw)
    if re.fullmatch(r"[^ \t\n\r]+", text):  # one word, as SuccessExitStatus= sees it
        ours = _ours(parse_exit_status_set, text)
        ours_code = next(iter(ours.codes)) if ours and ours.codes else None
        assert ours_code == (None if rc < 0 else rc), text


@pytest.mark.oracle
@_ORACLE_SETTINGS
@given(_joined(["1", "0", "yes", "no", "y", "n", "true", "false", "t", "f", "on", "of", "Y", "E", "S", "O", " ", "x"], 4))  # fmt: skip
def test_oracle_parse_boolean(text: str) -> None:
    assume("\0" not in text)
    lib = _libsystemd_shared()
    rc = lib.parse_boolean(text.encode())
    assert _ours(parse_bool, text) == (None if rc < 0 else bool(rc)), text
