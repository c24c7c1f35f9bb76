"""The ``status`` page (pure rendering) and systemd's relative timestamps."""

from __future__ import annotations

from datetime import UTC

import pytest
from cli_support import M1, M2, SINCE, options_of

from flotte.api.client import Machine, Unit, UnitOption, UnitStatus
from flotte.cli.statusview import StatusView, format_ago, format_timestamp, render_status
from flotte.engine.keyspace import MachineRecord, StateRecord

APACHE = """[Unit]
Description=Apache web server service listening on port %i
Requires=etcd.service
Requires=docker.service
After=etcd.service
After=docker.service

[Service]
ExecStart=/usr/bin/docker run --name apache.%i eboraas/apache

[X-Fleet]
Conflicts=apache@*.service
"""
MACHINES = {M1: Machine(M1, "10.0.0.5"), M2: Machine(M2, "10.0.0.6")}


def apache(name: str = "apache@8080.service", desired: str = "launched", current: str = "",
           machine: str = "") -> Unit:
    return Unit(name, [UnitOption(*o) for o in options_of(APACHE)], desired, current, machine)


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "now"), (0.0005, "500us ago"), (0.25, "250ms ago"), (1, "1s ago"), (59, "59s ago"),
    (61, "1min 1s ago"), (299, "4min 59s ago"), (300, "5min ago"), (3600, "1h 0min ago"),
    (3 * 3600 + 2 * 60, "3h 2min ago"), (6 * 3600 + 59, "6h ago"), (25 * 3600, "1 day 1h ago"),
    (2 * 86400 + 5, "2 days ago"), (8 * 86400, "1 week 1 day ago"),
    (40 * 86400, "1 month 9 days ago"), (400 * 86400, "1 year 1 month ago"),
])
def test_format_ago(seconds: float, text: str) -> None:
    assert format_ago(seconds) == text


def test_format_timestamp() -> None:
    assert format_timestamp(SINCE, UTC) == "Tue 2023-11-14 22:13:20 UTC"


def test_running_unit() -> None:
    state = StateRecord("apache@8080.service", M1, "d9b4bc4" + "0" * 33, "loaded", "active",
                        "running", "success", 4242, SINCE, True)
    st = UnitStatus("apache@8080.service", "d9b4bc4" + "0" * 33, "launched", "launched", M1,
                    False, state, MachineRecord(M1, "core-01", "10.0.0.5"))
    view = StatusView(st, apache(current="launched", machine=M1), {}, MACHINES,
                      ["Nov 14 22:13:20 core-01 docker[4242]: AH00558: apache2"], None)
    assert render_status(view, now=SINCE + 3 * 3600 + 120, tz=UTC) == (
        "● apache@8080.service - Apache web server service listening on port 8080\n"
        "     Loaded: loaded (hash d9b4bc4; desired launched, current launched)\n"
        "     Active: active (running) since Tue 2023-11-14 22:13:20 UTC; 3h 2min ago\n"
        "   Main PID: 4242\n"
        "    Machine: 113f16a7.../10.0.0.5 (core-01)\n"
        "   Requires: etcd.service docker.service\n"
        "      After: etcd.service docker.service\n"
        "    X-Fleet: Conflicts=apache@*.service\n"
        "\n"
        "Nov 14 22:13:20 core-01 docker[4242]: AH00558: apache2\n")


def test_unplaced_unit_says_why() -> None:
    st = UnitStatus("apache@8082.service", "d9b4bc4", "launched", "inactive")
    reasons = {M1: "conflicts with apache@8080.service", M2: "conflicts with apache@8081.service",
               "": "2 machines, none can take it"}
    view = StatusView(st, apache("apache@8082.service"), reasons, MACHINES)
    out = render_status(view, now=SINCE, tz=UTC)
    assert out.startswith("○ apache@8082.service - Apache web server service listening on "
                          "port 8082\n"
                          "     Loaded: not loaded (hash d9b4bc4; desired launched, current "
                          "inactive)\n"
                          "     Active: inactive (not placed)\n"
                          "        Why: cannot be placed:\n"
                          "             cluster: 2 machines, none can take it\n"
                          "             113f16a7.../10.0.0.5: conflicts with apache@8080.service\n"
                          "             85c0c595.../10.0.0.6: conflicts with apache@8081.service\n")


def test_failed_unit_and_journal_error() -> None:
    state = StateRecord("web.service", M2, "h", "loaded", "failed", "failed", "exit-code", 0,
                        SINCE, True)
    st = UnitStatus("web.service", "abcdef0123", "launched", "launched", M2, False, state, None)
    out = render_status(StatusView(st, None, journal_error="unavailable (x)"), now=SINCE + 5,
                        tz=UTC)
    assert out == ("× web.service\n"
                   "     Loaded: destroyed (its machine is stopping it)\n"
                   "     Active: failed (Result: exit-code) since Tue 2023-11-14 22:13:20 UTC; "
                   "5s ago\n"
                   "    Machine: 85c0c595...\n"
                   "    Journal: unavailable (x)\n")


def test_template_and_global() -> None:
    st = UnitStatus("apache@.service", "d9b4bc4", "inactive", "inactive")
    out = render_status(StatusView(st, apache("apache@.service", "inactive")), now=SINCE)
    assert "     Loaded: template (hash d9b4bc4; start an instance such as apache@1.service)\n" \
        in out
    assert "     Active: inactive (dead)\n" in out
    glob = Unit("g.service", [UnitOption("Service", "ExecStart", "/bin/true"),
                              UnitOption("X-Fleet", "Global", "true")], "launched")
    st = UnitStatus("g.service", "0123456789", "launched", "", "", True)
    out = render_status(StatusView(st, glob), now=SINCE)
    assert "     Loaded: not loaded (hash 0123456; desired launched)\n" in out
    assert "    Machine: global (every machine that may run it)\n" in out
    assert "    X-Fleet: Global=true\n" in out
