"""Loading whole units: the systemd 252 oracle vectors, drop-ins, the seed's units."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from vectors import load_vectors

from flotte.unit import load_text, load_unit
from flotte.unit.values import format_timespan, format_umask, signal_name

ORACLE = load_vectors()["systemd252_oracle"]
REPO = Path(__file__).resolve().parents[2]
SEED = REPO / "examples" / "seed"


def _dump(unit, field: str) -> list[str]:  # type: ignore[no-untyped-def]
    """Render a setting the way `systemd --test` dumps it."""
    sec = "Unit" if field in ("Description",) else "Service"
    if field == "Environment":
        return [f"{k}={v}" for k, v in unit.value("Service", "Environment")]
    if field == "WorkingDirectory":
        path, _missing_ok = unit.value(sec, field)
        return [path]
    v = unit.value(sec, field)
    if field.endswith("Sec"):
        return [format_timespan(v)]
    if isinstance(v, bool):
        return ["yes" if v else "no"]
    if field.endswith("Signal"):
        return [signal_name(v)]
    if field == "UMask":
        return [format_umask(v)]
    return [str(v)]


@pytest.mark.parametrize("entry", ORACLE, ids=[e["name"] for e in ORACLE])
def test_systemd252_oracle_vector(entry: dict, tmp_path: Path) -> None:
    if "files" in entry:
        for rel, text in entry["files"].items():
            p = tmp_path / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(text)
        for name, want in entry["expected"].items():
            unit = load_unit(name, [str(tmp_path)])
            if "load_state" in want:
                assert unit.load_state == want["load_state"]
                continue
            assert unit.load_state == "loaded", unit.diagnostics
            if "Environment" in want:
                got = [f"{k}={v}" for k, v in unit.environment]
                assert sorted(got) == sorted(want["Environment"])
            if "drop_in_order" in want:
                rel = [os.path.relpath(p, tmp_path) for p in unit.dropins]
                assert rel == want["drop_in_order"]
            if "argvs" in want:
                assert [c.argv for c in unit.exec_commands("ExecStart")] == want["argvs"]
        return
    # A unit without [Service] is probed as a target (the oracle's probes were).
    name = "probe.service" if "[Service]" in entry["unit_file"] else "probe.target"
    unit = load_text(entry["unit_file"], name)
    if entry.get("expected_error"):
        assert unit.load_state == "bad-setting"
    else:
        assert unit.load_state == "loaded", unit.diagnostics
    for field, want in entry.get("expected_dump", {}).items():
        assert _dump(unit, field) == want, field
    if "expected" in entry:
        for key, want in entry["expected"].items():
            assert sorted(unit.value("Unit", key)) == sorted(want), key
    if "expected_argvs" in entry:
        assert [c.argv for c in unit.exec_commands("ExecStart")] == entry["expected_argvs"]
    msgs = [f"line {d.line}: {d.message}" if d.line else d.message for d in unit.diagnostics]
    for w in entry.get("expected_warnings", []):
        assert w in msgs, msgs


def test_empty_assignment_resets_lists_but_not_dependencies() -> None:
    unit = load_text("[Unit]\nAfter=a.service\nAfter=\nWants=b.service\n[Service]\n"
                     "Environment=A=1\nEnvironment=\nEnvironment=B=2\nExecStart=/bin/true\n",
                     "x.service")
    assert unit.value("Unit", "After") == ["a.service"]
    assert unit.environment == [("B", "2")]


def test_case_sensitivity_and_suggestions() -> None:
    unit = load_text("[Unit]\ndescription=x\n[service]\nExecStart=/bin/true\n", "x.service")
    msgs = {(d.line, d.message, d.fix) for d in unit.warnings}
    assert (2, "Unknown key 'description' in section [Unit], ignoring.",
            "key names are case-sensitive: write Description=") in msgs
    assert (3, "Unknown section 'service'. Ignoring.",
            "section names are case-sensitive: write [Service]") in msgs
    assert unit.load_state == "bad-setting"  # no ExecStart= in a [Service] section


def test_oneshot_defaults() -> None:
    unit = load_text("[Service]\nType=oneshot\nExecStart=/bin/true\n", "o.service")
    assert format_timespan(unit.value("Service", "TimeoutStartSec")) == "infinity"
    assert unit.value("Service", "Type") == "oneshot"


def test_timeout_sec_order_matters() -> None:
    unit = load_text("[Service]\nExecStart=/bin/true\nTimeoutStartSec=5\nTimeoutSec=10\n"
                     "TimeoutStopSec=0\n", "t.service")
    assert unit.value("Service", "TimeoutStartSec") == 10_000_000
    assert format_timespan(unit.value("Service", "TimeoutStopSec")) == "infinity"


def test_relative_working_directory_is_fatal() -> None:
    unit = load_text("[Service]\nExecStart=/bin/true\nWorkingDirectory=rel\n", "w.service")
    assert unit.load_state == "bad-setting"
    assert unit.errors[0].line == 3


def test_bad_unit_name_is_an_error_not_a_traceback() -> None:
    for name in ("../x.service", "a/b.service", "x", "foo@%i.service", ""):
        unit = load_text("[Service]\nExecStart=/bin/true\n", name)
        assert unit.load_state == "error"
        assert unit.errors


def _seed_units() -> list[Path]:
    return sorted(p for p in SEED.rglob("*.service"))


def test_seed_units_are_all_present() -> None:
    names = {p.relative_to(SEED).as_posix() for p in _seed_units()}
    assert {"ch07/mongo.service", "ch07/employees.service", "ch08/docker.service",
            "ch08/apache.service", "ch08/apache@.service", "ch09/apache@.service",
            "ch09/apache-secretary@.service", "ch10/apache@.service",
            "ch10/apache-secretary@.service", "ch10/confdata.service", "ch10/confd.service",
            "ch10/nginx.service"} <= names


@pytest.mark.parametrize("path", _seed_units(), ids=lambda p: p.relative_to(SEED).as_posix())
def test_seed_unit_loads(path: Path) -> None:
    unit = load_unit(path.name, [str(path.parent)])
    assert unit.load_state == "loaded", unit.diagnostics


def test_seed_mistakes_are_reported_as_systemd_would() -> None:
    unit = load_unit("apache@.service", [str(SEED / "ch08")])
    msgs = [(d.line, d.message) for d in unit.warnings]
    # systemd accepts it as one (nonexistent) unit name; flotte keeps that
    # meaning and says what went wrong.
    assert any(line == 3 and "etcd.servicedocker.service looks like two unit names" in m
               for line, m in msgs)
    assert "etcd.servicedocker.service" in unit.value("Unit", "After")
    # ch09: the secretary uses ConditionMachineOf=, which fleet does not know.
    sec = load_unit("apache-secretary@8080.service", [str(SEED / "ch09")])
    assert any("ConditionMachineOf" in d.message for d in sec.warnings)
    assert sec.x_fleet.machine_of == []
    # ch10 names it correctly? No: same mistake; and apache@ trailing comments.
    ch10 = load_unit("apache@8080.service", [str(SEED / "ch10")])
    assert ch10.value("Unit", "Requires") == ["etcd.service", "docker.service",
                                              "apache-secretary@8080.service"]


def test_seed_secretary_exec_is_one_bash_argument() -> None:
    unit = load_unit("apache-secretary@8080.service", [str(SEED / "ch10")])
    (cmd,) = unit.exec_commands("ExecStart")
    assert cmd.argv[:2] == ["/bin/bash", "-c"]
    assert len(cmd.argv) == 3
    assert "--ttl 30" in cmd.argv[2] and ":8080" in cmd.argv[2]
    assert unit.value("Service", "Restart") == "on-failure"


def test_legacy_spellings_map_to_their_modern_homes() -> None:
    unit = load_text("[Unit]\nStartLimitInterval=20\nBindTo=b.service\n"
                     "PropagateReloadTo=c.service\n[Service]\nStartLimitBurst=3\n"
                     "ExecStart=/bin/true\n", "x.service")
    assert unit.load_state == "loaded" and unit.diagnostics == []
    assert unit.value("Unit", "StartLimitIntervalSec") == 20_000_000
    assert unit.value("Unit", "StartLimitBurst") == 3
    assert unit.value("Unit", "BindsTo") == ["b.service"]
    assert unit.value("Unit", "PropagatesReloadTo") == ["c.service"]


def test_known_but_unsupported_keys_are_listed_not_warned() -> None:
    unit = load_text("[Service]\nExecStart=/bin/true\nPrivateTmp=yes\nCPUQuota=20%\n",
                     "x.service")
    assert unit.warnings == []
    assert [o.key for o in unit.unsupported] == ["PrivateTmp", "CPUQuota"]


def test_conditions_keep_trigger_and_negation() -> None:
    unit = load_text("[Unit]\nConditionPathExists=|!/etc/%n\nConditionHost=web*\n"
                     "ConditionPathExists=relative\n[Service]\nExecStart=/bin/true\n",
                     "c.service")
    c1, c2 = unit.conditions
    assert (c1.key, c1.value, c1.trigger, c1.negate) == ("ConditionPathExists",
                                                         "/etc/c.service", True, True)
    assert (c2.key, c2.value) == ("ConditionHost", "web*")
    assert [d.line for d in unit.warnings] == [4]
