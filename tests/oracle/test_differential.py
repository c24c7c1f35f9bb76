"""Differential test: flotte's unit parser against the real systemd (252) on a corpus.

The corpus (``corpus.py``, ≥ 220 hand-written and fuzzed unit files) is loaded once by
``systemd --test --user`` (``systemd_oracle.py``) and once by :func:`flotte.unit.load_text`,
and per unit we compare the load state, the lines systemd warns about (and the wording),
the whole-unit messages, and the dump fields listed in ``_compare_loaded``.  Every mismatch
fails the test unless it is listed, with a reason, in ``docs/systemd-differences.md``.

Without the systemd binary the oracle tests are skipped — except under ``CI=true``, where
they fail: ``make test`` installs Debian's ``systemd`` package, so a missing binary there is
a broken setup, not an optional dependency.
"""

from __future__ import annotations

import fnmatch
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .corpus import Probe, corpus, unit_files
from .systemd_oracle import (
    DEPENDENCY_KEYS,
    EXEC_KEYS,
    LIMIT_NAMES,
    OracleError,
    OracleResult,
    OracleUnit,
    find_systemd,
    run_oracle,
    split_command_line,
)

REPO = Path(__file__).resolve().parents[2]
DIFFERENCES_DOC = REPO / "docs" / "systemd-differences.md"
RLIM_INFINITY_DUMP = 2**64 - 1  # what the dump prints for "infinity" limits

# systemd messages about the transaction, not about the unit file.
_TRANSACTION_MESSAGES = ("Cannot add dependency job",)

TIME_FIELDS = ("RestartSec", "TimeoutStartSec", "TimeoutStopSec", "RuntimeMaxSec")
ENUM_FIELDS = ("Type", "Restart", "KillMode")
BOOL_FIELDS = ("RemainAfterExit", "SendSIGKILL")
SIGNAL_FIELDS = ("KillSignal", "FinalKillSignal")


# ---------------------------------------------------------------------------
# helpers


def _require_systemd() -> str:
    binary = find_systemd()
    if binary is None:
        msg = (
            "systemd binary not found (/lib/systemd/systemd): install Debian's 'systemd' "
            "package (make deps) to run the differential oracle test"
        )
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg + " — required under CI=true")
        pytest.skip(msg)
    return binary


@dataclass(frozen=True)
class Mismatch:
    probe: str
    field: str
    systemd: Any
    flotte: Any

    def render(self) -> str:
        return f"{self.probe} | {self.field} | systemd={self.systemd!r} | flotte={self.flotte!r}"


@dataclass(frozen=True)
class KnownDifference:
    probe: str  # exact name or fnmatch pattern
    field: str
    reason: str

    def matches(self, m: Mismatch) -> bool:
        return fnmatch.fnmatchcase(m.field, self.field) and (
            self.probe == m.probe or fnmatch.fnmatchcase(m.probe, self.probe)
        )


def load_known_differences(path: Path = DIFFERENCES_DOC) -> list[KnownDifference]:
    """Rows of the markdown table whose header is ``| probe | field | reason |``."""
    if not path.exists():
        return []
    rows: list[KnownDifference] = []
    in_table = False
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line.startswith("|"):
            in_table = False
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if [c.lower() for c in cells] == ["probe", "field", "reason"]:
            in_table = True
            continue
        if not in_table or all(set(c) <= set("-: ") for c in cells):
            continue
        if len(cells) != 3:
            raise AssertionError(f"{path}: table row needs 3 cells: {raw!r}")
        probe, fld, reason = (c.strip("`") for c in cells)
        if not reason:
            raise AssertionError(f"{path}: known difference without a reason: {raw!r}")
        rows.append(KnownDifference(probe, fld, reason))
    return rows


def _flotte_api():
    from flotte.unit import load_text
    from flotte.unit.specifiers import SpecifierContext
    from flotte.unit.values import RLIM_INFINITY, USEC_PER_SEC, format_timespan, signal_name

    def dump_timespan(usec: int) -> str:
        # the unit dump prints time spans with whole-second accuracy (1.5 -> "1s")
        return format_timespan(usec, USEC_PER_SEC)

    return load_text, SpecifierContext, RLIM_INFINITY, dump_timespan, signal_name


def _yes_no(v: Any) -> str:
    return "yes" if v else "no"


def _implicit_deps(o: OracleUnit) -> set[str]:
    """origin-file dependencies systemd adds by itself (not from Wants=/After=… lines)."""
    out: set[str] = set()
    if o.slice:
        out.add(o.slice)  # Slice= (default app.slice / app-<template>.slice): Requires+After
    if o.get("Type") == "dbus":
        out.add("dbus.socket")  # Type=dbus: Requires+After=dbus.socket
    return out


def _compare_loaded(
    probe: Probe, o: OracleUnit, u: Any, oracle: OracleResult, api: tuple
) -> list[Mismatch]:
    """Dump fields of a unit both sides loaded."""
    _load_text, _ctx, rlim_inf, format_timespan, signal_name = api
    out: list[Mismatch] = []

    def check(field: str, sd: Any, fl: Any) -> None:
        if sd != fl:
            out.append(Mismatch(probe.name, field, sd, fl))

    def fval(section: str, key: str) -> Any:
        try:
            return u.value(section, key)
        except Exception as exc:  # report, don't abort the whole comparison
            return f"<{type(exc).__name__}: {exc}>"

    desc = fval("Unit", "Description")
    check("Description", o.get("Description"), desc or probe.name)
    for key in ENUM_FIELDS:
        check(key, o.get(key), fval("Service", key))
    for key in TIME_FIELDS:
        v = fval("Service", key)
        check(key, o.get(key), format_timespan(v) if isinstance(v, int) else v)
    for key in BOOL_FIELDS:
        v = fval("Service", key)
        check(key, o.get(key), _yes_no(v) if isinstance(v, bool) else v)
    for key in SIGNAL_FIELDS:
        v = fval("Service", key)
        check(key, o.get(key), signal_name(v) if isinstance(v, int) else v)
    um = fval("Service", "UMask")
    check("UMask", o.get("UMask"), f"{um:04o}" if isinstance(um, int) else um)
    nice = fval("Service", "Nice")
    check("Nice", o.get("Nice"), None if nice is None else str(nice))

    # WorkingDirectory: the dump does not show the "-" (missing-ok) flag; a user manager
    # shows its $HOME both for an unset value and for "~" (home of the manager's user).
    wd = fval("Service", "WorkingDirectory")
    if isinstance(wd, tuple) and len(wd) == 2:  # (path, missing_ok)
        wd = wd[0]
    elif isinstance(wd, str) and wd.startswith("-"):
        wd = wd[1:]
    if wd is None or wd == "~":
        wd = oracle.home
    check("WorkingDirectory", o.get("WorkingDirectory"), wd)

    # Limit*: unset limits are inherited from the manager (shown as the baseline unit's).
    for name in LIMIT_NAMES:
        fl = fval("Service", f"Limit{name}")
        sd = o.limit(name)
        if fl is None:
            fl_cmp = oracle.baseline.limit(name)
        elif isinstance(fl, tuple) and len(fl) == 2:
            fl_cmp = tuple(RLIM_INFINITY_DUMP if x == rlim_inf else x for x in fl)
        else:
            fl_cmp = fl
        check(f"Limit{name}", sd, fl_cmp)

    env = fval("Service", "Environment")
    if isinstance(env, list):
        env = [f"{n}={v}" for n, v in env]
    check("Environment", o.environment, env)
    envf = fval("Service", "EnvironmentFile")
    if isinstance(envf, list):
        envf = [("-" if ign else "") + p for p, ign in envf]
    check("EnvironmentFile", o.environment_files, envf)

    for key in EXEC_KEYS:
        try:
            fl_cmds = [list(c.argv) for c in u.exec_commands(key)]
        except Exception as exc:
            fl_cmds = f"<{type(exc).__name__}: {exc}>"
        check(key, o.exec_commands.get(key, []), fl_cmds)

    implicit = _implicit_deps(o)
    for key in DEPENDENCY_KEYS:
        fl = fval("Unit", key)
        fl_set = set(fl) if isinstance(fl, list) else fl
        sd_set = o.deps(key)
        if isinstance(fl_set, set):
            # implicit deps (slice, mounts for absolute paths, dbus.socket) are the
            # manager's own unless the unit file names them too
            sd_set = {
                d for d in sd_set if d in fl_set or (d not in implicit and not d.endswith(".mount"))
            }
            check(key, sorted(sd_set), sorted(fl_set))
        else:
            check(key, sorted(sd_set), fl_set)

    sd_conds = sorted(o.conditions)
    try:
        fl_conds = sorted(
            (c.key, ("|" if c.trigger else "") + ("!" if c.negate else "") + c.value)
            for c in u.conditions
        )
    except Exception as exc:
        fl_conds = f"<{type(exc).__name__}: {exc}>"
    check("Conditions", sd_conds, fl_conds)
    return out


def compare_probe(probe: Probe, oracle: OracleResult, api: tuple) -> list[Mismatch]:
    load_text, SpecifierContext = api[0], api[1]
    o = oracle.units[probe.name]
    try:
        u = load_text(probe.text, probe.name, ctx=SpecifierContext())
    except Exception as exc:
        return [Mismatch(probe.name, "exception", None, f"{type(exc).__name__}: {exc}")]
    out: list[Mismatch] = []
    if o.load_state != u.load_state:
        out.append(Mismatch(probe.name, "load-state", o.load_state, u.load_state))

    # -- per-line messages ------------------------------------------------------------
    sd_by_line: dict[int, list[str]] = {}
    for m in oracle.messages_for(probe.file):
        sd_by_line.setdefault(m.line, []).append(m.message)
    fl_by_line: dict[int, list[str]] = {}
    fl_unit_msgs: list[str] = []
    for d in u.diagnostics:
        if d.line is None:
            fl_unit_msgs.append(d.message)
        else:
            fl_by_line.setdefault(d.line, []).append(d.message)
    if set(sd_by_line) != set(fl_by_line):
        only_sd = {ln: sd_by_line[ln] for ln in sorted(set(sd_by_line) - set(fl_by_line))}
        only_fl = {ln: fl_by_line[ln] for ln in sorted(set(fl_by_line) - set(sd_by_line))}
        out.append(Mismatch(probe.name, "warning-lines", only_sd, only_fl))
    for ln in sorted(set(sd_by_line) & set(fl_by_line)):
        if Counter(sd_by_line[ln]) != Counter(fl_by_line[ln]):
            out.append(
                Mismatch(probe.name, "warning-message", {ln: sd_by_line[ln]}, {ln: fl_by_line[ln]})
            )
    sd_unit_msgs = [
        m
        for m in oracle.unit_messages.get(probe.name, ())
        if not m.startswith(_TRANSACTION_MESSAGES)
    ]
    if Counter(sd_unit_msgs) != Counter(fl_unit_msgs):
        out.append(
            Mismatch(probe.name, "unit-messages", sorted(sd_unit_msgs), sorted(fl_unit_msgs))
        )

    if o.load_state == "loaded" and u.load_state == "loaded":
        out.extend(_compare_loaded(probe, o, u, oracle, api))
    return out


# ---------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def probes() -> list[Probe]:
    return corpus()


@pytest.fixture(scope="module")
def oracle(probes: list[Probe]) -> OracleResult:
    binary = _require_systemd()
    try:
        return run_oracle(unit_files(probes), [p.name for p in probes], systemd=binary)
    except OracleError as exc:
        pytest.fail(f"running systemd as the oracle failed: {exc}")


@pytest.fixture(scope="module")
def mismatches(probes: list[Probe], oracle: OracleResult) -> list[Mismatch]:
    api = _flotte_api()
    out: list[Mismatch] = []
    for probe in probes:
        out.extend(compare_probe(probe, oracle, api))
    return out


# ---------------------------------------------------------------------------
# tests that need no systemd


def test_corpus_is_large_deterministic_and_clean(probes: list[Probe]) -> None:
    assert len(probes) >= 220
    assert sum(p.kind == "fuzz" for p in probes) >= 100
    assert corpus() == probes, "the corpus must be deterministic"
    assert len({p.name for p in probes}) == len(probes)
    for p in probes:
        assert p.name.endswith(".service")
        assert "\0" not in p.text
        p.text.encode("utf-8")


def test_split_command_line_inverts_systemd_quoting() -> None:
    # Lines copied from systemd 252 dumps, with the argv systemd was given.
    cases = {
        '/bin/echo "a b" "c\\$d" "\\$\\$x" "\\${Y}" ";" "x\\\\ y"': [
            "/bin/echo",
            "a b",
            "c$d",
            "$$x",
            "${Y}",
            ";",
            "x\\ y",
        ],
        'argv0 "quote\\"d" "sq\'s" "back\\\\slash" ""': [
            "argv0",
            'quote"d',
            "sq's",
            "back\\slash",
            "",
        ],
        '/bin/echo "\\001\\r\\a" "\\377" "tab\\tin" "nl\\n" unié % # ~ = "\\`"': [
            "/bin/echo",
            "\x01\r\x07",
            "\udcff",
            "tab\tin",
            "nl\n",
            "unié",
            "%",
            "#",
            "~",
            "=",
            "`",
        ],
    }
    for line, argv in cases.items():
        assert split_command_line(line) == argv


def test_known_differences_table_parses() -> None:
    for row in load_known_differences():
        assert row.probe and row.field and row.reason


# ---------------------------------------------------------------------------
# oracle tests


@pytest.mark.oracle
def test_oracle_reads_argv_back(oracle: OracleResult) -> None:
    """Self-check of the dump reader on a probe whose argv is known from the man page."""
    u = oracle.units["h-exec-02.service"]
    assert u.exec_commands["ExecStart"] == [
        ["/bin/echo", "\n", "\t", "A", "A", "é", "😀", " ", "\x07", "\\", '"', "'"]
    ]
    assert oracle.units["h-syn-empty-file.service"].load_state == "masked"
    assert oracle.units["h-syn-bad-header1.service"].load_state == "error"
    assert oracle.units["h-exec-two-simple.service"].load_state == "bad-setting"
    assert oracle.baseline.load_state == "loaded"
    assert oracle.duration < 60


@pytest.mark.oracle
def test_comparison_detects_differences(oracle: OracleResult, probes: list[Probe]) -> None:
    """Feed flotte the wrong file for a probe: the comparison must notice."""
    api = _flotte_api()
    by_name = {p.name: p for p in probes}
    cases = {
        ("h-time-timeoutsec.service", "h-dep-all.service"): {
            "TimeoutStartSec",
            "TimeoutStopSec",
            "Wants",
            "After",
            "Conflicts",
        },
        ("h-env-00.service", "h-exec-10.service"): {"Environment", "ExecStart", "Type"},
        ("h-limit-01.service", "h-cond-basic.service"): {"LimitNOFILE", "Conditions"},
    }
    for (target, source), expected in cases.items():
        t = by_name[target]
        wrong = Probe(t.name, t.file, by_name[source].text, "hand")
        fields = {m.field for m in compare_probe(wrong, oracle, api)}
        assert expected <= fields, (target, source, fields)


@pytest.mark.oracle
def test_flotte_parses_like_systemd(mismatches: list[Mismatch]) -> None:
    known = load_known_differences()
    unexplained = [m for m in mismatches if not any(k.matches(m) for k in known)]
    if unexplained:
        by_field = Counter(m.field for m in unexplained)
        summary = ", ".join(f"{f}: {n}" for f, n in by_field.most_common())
        listing = "\n".join(m.render() for m in unexplained)
        pytest.fail(
            f"{len(unexplained)} difference(s) between flotte and systemd ({summary}); fix "
            f"them or list them with a reason in {DIFFERENCES_DOC.relative_to(REPO)}:\n"
            f"{listing}",
            pytrace=False,
        )


@pytest.mark.oracle
def test_known_differences_are_current(mismatches: list[Mismatch], probes: list[Probe]) -> None:
    """Every row of the table must still describe a real difference (no stale excuses)."""
    names = {p.name for p in probes}
    stale = []
    for row in load_known_differences():
        if not any(row.probe == n or fnmatch.fnmatchcase(n, row.probe) for n in names):
            stale.append(f"{row.probe} | {row.field}: no such probe in the corpus")
        elif not any(row.matches(m) for m in mismatches):
            stale.append(f"{row.probe} | {row.field}: flotte now agrees with systemd")
    assert not stale, "remove stale rows from docs/systemd-differences.md:\n" + "\n".join(stale)
