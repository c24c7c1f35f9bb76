"""Every fleetctl verb against a real API server (memory:// registry, unix socket).

Expected outputs are fleetctl's (fleet.md §4.3) byte for byte where fleet
defined them; ``cluster.start_engine()`` runs the fake engine of
cli_support.py in place of the real engine and agents.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from cli_support import HELLO, M1, M2, M3, Cluster, Run, options_of, write
from test_cli_tabwriter import LIST_MACHINES, LIST_UNITS

from flotte import __version__, paths
from flotte.cli import connection

HELLO2 = HELLO.replace("3000", "4000")
WEB_TEMPLATE = "[Unit]\nDescription=web %i\n\n[Service]\nExecStart=/bin/web %i\n"


@pytest.fixture
def three(cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cluster:
    """Three machines (the third without an IP), the fake engine, cwd with hello.service."""
    cluster.add_machine(M1, "10.0.0.5", {"az": "us-west-1b"})
    cluster.add_machine(M2, "10.0.0.6", {"region": "us-west", "az": "us-west-1b"})
    cluster.add_machine(M3)
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "hello.service", HELLO)
    return cluster


# -- start / stop / destroy: the literal session of fleet.md §4.3 ---------------------------


def test_start_stop_destroy_session(three: Cluster, fleetctl: Run) -> None:
    three.start_engine()
    r = fleetctl("start", "hello.service")
    assert (r.exit_code, r.stdout, r.stderr) == (
        0, "Unit hello.service inactive\nUnit hello.service launched on 113f16a7.../10.0.0.5\n",
        "")
    r = fleetctl("stop", "hello.service")
    assert (r.exit_code, r.stdout, r.stderr) == (
        0, "Unit hello.service loaded on 113f16a7.../10.0.0.5\n",
        "Successfully stopped units [hello.service].\n")
    r = fleetctl("destroy", "hello.service")
    assert (r.exit_code, r.stdout, r.stderr) == (0, "Destroyed hello.service\n", "")
    assert three.unit_names() == []
    # destroy waited until the machine withdrew the unit's state
    assert fleetctl("list-units", "--no-legend").stdout == ""


def test_start_already_running_reports_where(three: Cluster, fleetctl: Run) -> None:
    three.start_engine()
    assert fleetctl("start", "hello").exit_code == 0
    r = fleetctl("start", "hello")
    assert (r.exit_code, r.stdout) == (0, "Unit hello.service launched on 113f16a7.../10.0.0.5\n")


def test_no_block(three: Cluster, fleetctl: Run) -> None:
    r = fleetctl("start", "--no-block", "hello.service")  # no engine: nothing would happen
    assert (r.exit_code, r.stdout) == (0, "Triggered unit hello.service start\n")
    assert three.desired("hello.service") == "launched"
    r = fleetctl("stop", "--no-block", "hello.service")
    assert (r.exit_code, r.stdout, r.stderr) == (
        0, "Triggered unit hello.service stop\n", "Successfully stopped units [hello.service].\n")
    r = fleetctl("unload", "--no-block", "hello.service")
    assert r.stdout == "Triggered unit hello.service unload\n"
    assert three.desired("hello.service") == "inactive"
    r = fleetctl("load", "--no-block", "hello.service")
    assert r.stdout == "Triggered unit hello.service load\n"


def test_load_and_unload(three: Cluster, fleetctl: Run) -> None:
    three.start_engine()
    r = fleetctl("load", "hello")
    assert (r.exit_code, r.stdout) == (
        0, "Unit hello.service inactive\nUnit hello.service loaded on 113f16a7.../10.0.0.5\n")
    r = fleetctl("unload", "hello")
    assert (r.exit_code, r.stdout, r.stderr) == (
        0, "Unit hello.service inactive\n", "Successfully unloaded units [hello.service].\n")
    r = fleetctl("unload", "hello")  # already inactive: skipped
    assert (r.exit_code, r.stdout, r.stderr) == (0, "", "Successfully unloaded units [].\n")


def test_load_never_stops_a_launched_unit(three: Cluster, fleetctl: Run) -> None:
    three.start_engine()
    fleetctl("start", "hello")
    r = fleetctl("load", "hello")
    assert r.exit_code == 0
    assert "Unit hello.service is launched; load leaves it running" in r.stderr
    assert three.desired("hello.service") == "launched"


def test_stop_rules(three: Cluster, fleetctl: Run) -> None:
    three.start_engine()
    fleetctl("submit", "hello")
    r = fleetctl("stop", "hello.service")
    assert r.exit_code == 1
    assert r.stderr == ("Unable to stop unit hello.service in state inactive\n"
                        "Successfully stopped units [].\n")
    fleetctl("load", "hello")
    r = fleetctl("stop", "hello.service")  # already loaded: skipped
    assert (r.exit_code, r.stdout, r.stderr) == (0, "", "Successfully stopped units [].\n")
    r = fleetctl("stop", "nope.service")
    assert (r.exit_code, r.stderr) == (0, "Unit nope.service not found in registry\n"
                                          "Successfully stopped units [].\n")


def test_destroy_unknown_and_no_block(three: Cluster, fleetctl: Run) -> None:
    r = fleetctl("destroy", "nope.service")
    assert (r.exit_code, r.stdout, r.stderr) == (0, "", "Units not found in registry\n")
    three.start_engine(sticky={"hello.service"})
    fleetctl("start", "hello")
    r = fleetctl("destroy", "--no-block", "hello", "nope")
    assert (r.exit_code, r.stdout, r.stderr) == (0, "Destroyed hello.service\n",
                                                 "Unit nope.service not found in registry\n")


def test_destroy_waits_for_the_unit_to_stop(three: Cluster, fleetctl: Run) -> None:
    three.start_engine(sticky={"hello.service"})  # the "agent" never withdraws its state
    fleetctl("start", "hello")
    t0 = time.monotonic()
    r = fleetctl("destroy", "--block-attempts=1", "hello")
    assert time.monotonic() - t0 < 4
    assert (r.exit_code, r.stdout) == (1, "Destroyed hello.service\n")
    assert r.stderr == ("Error waiting for units: timed out waiting for unit hello.service "
                        "to stop\n")


# -- submit and --replace -----------------------------------------------------------------------


def test_submit(three: Cluster, fleetctl: Run, tmp_path: Path) -> None:
    r = fleetctl("submit", "hello.service")
    assert (r.exit_code, r.stdout, r.stderr) == (0, "Unit hello.service inactive\n", "")
    r = fleetctl("submit", "hello.service")  # identical: silent
    assert (r.exit_code, r.stdout, r.stderr) == (0, "", "")
    r = fleetctl("submit", "--replace", "hello.service")
    assert r.stdout == "Found same Unit(hello.service) in Registry, nothing to do\n"
    write(tmp_path / "hello.service", HELLO2)
    r = fleetctl("submit", "hello.service")
    assert (r.exit_code, r.stdout, r.stderr) == (
        0, "", "WARNING: Unit hello.service in registry differs from local unit file "
               "hello.service. Add --replace to override.\n")
    r = fleetctl("submit", "--replace", "hello.service")
    assert (r.exit_code, r.stdout, r.stderr) == (0, "Unit hello.service inactive\n", "")
    assert fleetctl("cat", "hello").stdout == HELLO2


def test_replace_is_refused_from_the_wrong_state(three: Cluster, fleetctl: Run,
                                                 tmp_path: Path) -> None:
    three.start_engine()
    fleetctl("start", "hello")
    write(tmp_path / "hello.service", HELLO2)
    r = fleetctl("submit", "--replace", "hello")
    assert (r.exit_code, r.stderr) == (
        0, "Warning: can not replace Unit(hello.service) in state 'launched', use the "
           "appropriate command\n")
    r = fleetctl("load", "--replace", "hello")
    assert "can not replace Unit(hello.service) in state 'launched'" in r.stderr
    # start may replace a launched unit: it is stopped, replaced and started again
    r = fleetctl("start", "--replace", "hello")
    assert (r.exit_code, r.stdout) == (
        0, "Unit hello.service inactive\nUnit hello.service launched on 113f16a7.../10.0.0.5\n")
    assert fleetctl("cat", "hello").stdout == HELLO2


def test_submit_errors(three: Cluster, fleetctl: Run, tmp_path: Path) -> None:
    r = fleetctl("submit", "nosuch.service")
    assert (r.exit_code, r.stderr) == (
        1, "Error creating units: unable to find Unit(nosuch.service) in Registry or on "
           "filesystem\n")
    write(tmp_path / "bad.service", "[Service]\nExecStart=/bin/true\nbroken line\n")
    r = fleetctl("submit", "bad.service", "hello")  # the good one is still submitted
    assert r.exit_code == 1
    assert r.stderr.startswith("Error creating units: bad.service:3: ")
    assert three.unit_names() == ["hello.service"]
    write(tmp_path / "nox.service", "[Unit]\nDescription=no ExecStart\n")
    r = fleetctl("submit", "nox.service")
    assert r.exit_code == 1 and "Error creating units: nox.service: invalid unit" in r.stderr
    r = fleetctl("submit", "inst@1.service")
    assert (r.exit_code, r.stderr) == (
        1, "Error creating units: unable to find Unit(inst@1.service) or its template "
           "inst@.service in Registry or on filesystem\n")


# -- templates ---------------------------------------------------------------------------------


def test_templates_cannot_be_started(three: Cluster, fleetctl: Run, tmp_path: Path) -> None:
    write(tmp_path / "web@.service", WEB_TEMPLATE)
    r = fleetctl("start", "web@.service")
    assert (r.exit_code, r.stdout) == (1, "")
    assert r.stderr == ("Error: cannot start template web@.service: templates are only "
                        "submitted; start an instance such as web@1.service\n")
    assert three.unit_names() == []  # refused before anything changed (fleet #1236 hung)
    assert fleetctl("submit", "web@.service").exit_code == 0


def test_instance_from_registry_template(three: Cluster, fleetctl: Run, tmp_path: Path) -> None:
    three.start_engine()
    write(tmp_path / "web@.service", WEB_TEMPLATE)
    assert fleetctl("submit", "web@.service").stdout == "Unit web@.service inactive\n"
    (tmp_path / "web@.service").unlink()  # only the registry has it now
    r = fleetctl("start", "web@1.service", "web@2")
    assert (r.exit_code, r.stdout) == (0, "Unit web@1.service inactive\n"
                                          "Unit web@2.service inactive\n"
                                          "Unit web@1.service launched on 113f16a7.../10.0.0.5\n"
                                          "Unit web@2.service launched on 85c0c595.../10.0.0.6\n")
    assert fleetctl("cat", "web@2.service").stdout == WEB_TEMPLATE


def test_instance_from_local_template_next_to_the_argument(three: Cluster, fleetctl: Run,
                                                           tmp_path: Path) -> None:
    three.start_engine()
    (tmp_path / "units").mkdir()
    write(tmp_path / "units" / "web@.service", WEB_TEMPLATE)
    r = fleetctl("start", "units/web@8080.service")
    assert (r.exit_code, r.stdout) == (0, "Unit web@8080.service inactive\n"
                                          "Unit web@8080.service launched on "
                                          "113f16a7.../10.0.0.5\n")
    assert three.unit_names() == ["web@8080.service"]  # the template itself is not submitted


def test_globs_the_shell_left_alone_match_registry_units(three: Cluster, fleetctl: Run,
                                                         tmp_path: Path) -> None:
    three.start_engine()
    write(tmp_path / "web@.service", WEB_TEMPLATE)
    fleetctl("submit", "web@.service")
    fleetctl("load", "web@1", "web@2")
    r = fleetctl("start", "web@*")  # matches the instances, not the template
    assert r.exit_code == 0
    assert r.stdout.splitlines() == ["Unit web@1.service launched on 113f16a7.../10.0.0.5",
                                     "Unit web@2.service launched on 85c0c595.../10.0.0.6"]
    r = fleetctl("stop", "web@[12].service")
    assert r.stderr == "Successfully stopped units [web@1.service web@2.service].\n"


# -- blocking, reasons, failures -------------------------------------------------------------


def test_unplaceable_start_returns_with_reasons_within_5s(three: Cluster, cluster: Cluster,
                                                          fleetctl: Run,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    monkeypatch.undo()  # real poll interval (250 ms), as users get it
    monkeypatch.chdir(Path(cluster.dir))
    write(Path(cluster.dir) / "hello.service", HELLO)
    reasons = {M1: "conflicts with web@1.service (Conflicts=web@*.service)",
               M2: "lacks metadata role=web", M3: "lacks metadata role=web"}
    three.start_engine(unplaceable={"hello.service": reasons})
    t0 = time.monotonic()
    r = fleetctl("start", "hello.service")
    assert time.monotonic() - t0 < 5
    assert (r.exit_code, r.stdout) == (1, "Unit hello.service inactive\n")
    assert r.stderr == (
        "Unit hello.service cannot be placed (desired state launched):\n"
        "  113f16a7.../10.0.0.5: conflicts with web@1.service (Conflicts=web@*.service)\n"
        "  85c0c595.../10.0.0.6: lacks metadata role=web\n"
        "  e793afb9...: lacks metadata role=web\n")


def test_unplaceable_among_others(three: Cluster, fleetctl: Run, tmp_path: Path) -> None:
    three.start_engine(unplaceable={"b.service": {"": "no machines"}})
    write(tmp_path / "a.service", HELLO)
    write(tmp_path / "b.service", HELLO)
    r = fleetctl("start", "a.service", "b.service")
    assert r.exit_code == 1
    assert "Unit a.service launched on 113f16a7.../10.0.0.5\n" in r.stdout
    assert r.stderr == ("Unit b.service cannot be placed (desired state launched):\n"
                        "  cluster: no machines\n")
    # status says why too
    r = fleetctl("status", "b")
    assert (r.exit_code, r.stderr) == (0, "")
    assert "     Active: inactive (not placed)\n        Why: cannot be placed:\n" \
           "             cluster: no machines\n" in r.stdout


def test_block_attempts_time_out(three: Cluster, fleetctl: Run) -> None:
    t0 = time.monotonic()
    r = fleetctl("start", "--block-attempts=1", "hello")  # no engine at all
    assert time.monotonic() - t0 < 4
    assert (r.exit_code, r.stdout) == (1, "Unit hello.service inactive\n")
    assert r.stderr == ("Error waiting for units: timed out waiting for unit hello.service "
                        "to report state launched\n")


def test_a_unit_that_fails_to_start(three: Cluster, fleetctl: Run) -> None:
    three.start_engine(failing={"hello.service"})
    r = fleetctl("start", "hello")
    assert (r.exit_code, r.stdout) == (
        1, "Unit hello.service inactive\nUnit hello.service launched on 113f16a7.../10.0.0.5\n")
    assert r.stderr == ("Error waiting for units: unit hello.service on 113f16a7.../10.0.0.5: "
                        "it failed to start (failed); see `journal hello.service`\n")


def test_global_units(three: Cluster, fleetctl: Run, tmp_path: Path) -> None:
    write(tmp_path / "g.service", HELLO + "\n[X-Fleet]\nGlobal=true\n")
    r = fleetctl("start", "g.service")
    assert (r.exit_code, r.stdout) == (0, "Unit g.service inactive\n"
                                          "Triggered global unit g.service start\n")
    assert fleetctl("stop", "g").stdout == "Triggered global unit g.service stop\n"
    assert fleetctl("unload", "g").stdout == "Triggered global unit g.service unload\n"
    r = fleetctl("list-unit-files", "--fields=unit,global,dstate,state,target")
    assert r.stdout == ("UNIT\t\tGLOBAL\tDSTATE\t\tSTATE\tTARGET\n"
                        "g.service\ttrue\tinactive\t-\tglobal\n")
    r = fleetctl("restart", "g")
    assert r.exit_code == 1 and "Unable to restart global unit g.service" in r.stderr


def test_restart(three: Cluster, fleetctl: Run) -> None:
    three.start_engine()
    fleetctl("submit", "hello")
    r = fleetctl("restart", "hello")
    assert (r.exit_code, r.stderr) == (1, "Unable to restart unit hello.service in state "
                                          "inactive\n")
    fleetctl("start", "hello")
    r = fleetctl("restart", "hello")
    assert (r.exit_code, r.stdout, r.stderr) == (
        0, "Unit hello.service loaded on 113f16a7.../10.0.0.5\n"
           "Unit hello.service launched on 113f16a7.../10.0.0.5\n", "")
    fleetctl("stop", "hello")
    r = fleetctl("restart", "hello")  # loaded: just started
    assert (r.exit_code, r.stdout) == (0, "Unit hello.service launched on 113f16a7.../10.0.0.5\n")
    r = fleetctl("restart", "nope")
    assert (r.exit_code, r.stderr) == (1, "Unit nope.service not found in registry\n")


# -- listings ---------------------------------------------------------------------------------


def seed_listing(c: Cluster) -> None:
    c.add_unit("hello.service", options_of(HELLO), "loaded")
    c.place("hello.service", M1, launched=False, active="inactive", sub="dead",
            unit_hash="e55c0ae" + "0" * 33)
    c.add_unit("goodbye.service", [("Service", "ExecStart", "/bin/true")], "launched")
    c.place("goodbye.service", M2, unit_hash="f5f239d" + "1" * 33)
    c.add_unit("zed.service", [("Service", "ExecStart", "/bin/zed")], "launched")
    c.place("zed.service", M3, unit_hash="a0f275d" + "2" * 33)
    c.add_unit("idle.service", options_of(HELLO), "inactive")


def test_list_units(three: Cluster, fleetctl: Run) -> None:
    seed_listing(three)
    r = fleetctl("list-units")
    assert (r.exit_code, r.stdout) == (0, "UNIT\t\tMACHINE\t\t\tACTIVE\t\tSUB\n"
                                          "goodbye.service\t85c0c595.../10.0.0.6\tactive\t\trunning\n"
                                          "hello.service\t113f16a7.../10.0.0.5\tinactive\tdead\n"
                                          "zed.service\te793afb9...\t\tactive\t\trunning\n")
    r = fleetctl("list-units", "--fields=unit,load,active,sub,machine,hash")
    assert r.stdout == ("UNIT\t\tLOAD\tACTIVE\t\tSUB\tMACHINE\t\t\tHASH\n"
                        "goodbye.service\tloaded\tactive\t\trunning\t85c0c595.../10.0.0.6\tf5f239d\n"
                        "hello.service\tloaded\tinactive\tdead\t113f16a7.../10.0.0.5\te55c0ae\n"
                        "zed.service\tloaded\tactive\t\trunning\te793afb9...\t\ta0f275d\n")
    full = fleetctl("list-units", "--full", "--no-legend")
    assert full.stdout == (f"goodbye.service\t{M2}/10.0.0.6\tactive\t\trunning\n"
                           f"hello.service\t{M1}/10.0.0.5\tinactive\tdead\n"
                           f"zed.service\t{M3}\t\tactive\t\trunning\n")
    # fleet ≤0.12's -l, and --l, which v1.0 accepted
    assert fleetctl("list-units", "-l", "--no-legend").stdout == full.stdout
    assert fleetctl("list-units", "--l", "--no-legend").stdout == full.stdout


def test_literal_listings_of_fleet_md(cluster: Cluster, fleetctl: Run) -> None:
    """fleet.md §4.3's captured list-units and list-machines, byte for byte, from the API."""
    cluster.add_machine(M1, "172.17.8.103", {"az": "us-west-1b"})
    cluster.add_machine(M2, "172.17.8.102", {"az": "us-west-1b", "region": "us-west"})
    cluster.add_machine(M3)
    cluster.add_unit("global.service", options_of(HELLO + "\n[X-Fleet]\nGlobal=true\n"),
                     "launched")
    cluster.publish_state("global.service", M1)  # a global unit reports from every machine
    cluster.publish_state("global.service", M3)
    cluster.add_unit("goodbye.service", [("Service", "ExecStart", "/bin/true")], "launched")
    cluster.place("goodbye.service", M2)
    cluster.add_unit("hello.service", options_of(HELLO), "loaded")
    cluster.place("hello.service", M1, launched=False, active="inactive", sub="dead")
    assert fleetctl("list-units").stdout == LIST_UNITS
    assert fleetctl("list-machines").stdout == LIST_MACHINES


def test_list_units_grep_apache_like_the_seed(three: Cluster, fleetctl: Run) -> None:
    three.add_unit("apache@8080.service", [("Service", "ExecStart", "/bin/a")], "launched")
    three.place("apache@8080.service", M1)
    three.add_unit("nginx.service", [("Service", "ExecStart", "/bin/n")], "launched")
    three.place("nginx.service", M2)
    lines = fleetctl("list-units").stdout.splitlines()
    assert [ln for ln in lines if "apache" in ln] == [
        "apache@8080.service\t113f16a7.../10.0.0.5\tactive\trunning"]


def test_list_unit_files(three: Cluster, fleetctl: Run) -> None:
    seed_listing(three)
    r = fleetctl("list-unit-files")
    hello_hash = fleetctl("list-unit-files", "--full", "--fields=hash", "--no-legend"
                          ).stdout.split()
    assert len(hello_hash[0]) == 40
    assert r.stdout == ("UNIT\t\tHASH\tDSTATE\t\tSTATE\t\tTARGET\n"
                        f"goodbye.service\t{hello_hash[0][:7]}\tlaunched\tlaunched\t"
                        "85c0c595.../10.0.0.6\n"
                        f"hello.service\t{hello_hash[1][:7]}\tloaded\t\tloaded\t\t"
                        "113f16a7.../10.0.0.5\n"
                        f"idle.service\t{hello_hash[2][:7]}\tinactive\tinactive\t-\n"
                        f"zed.service\t{hello_hash[3][:7]}\tlaunched\tlaunched\te793afb9...\n")
    assert hello_hash[1] == hello_hash[2]  # same options, same hash
    r = fleetctl("list-unit-files", "--fields=unit,desc")
    assert r.stdout == ("UNIT\t\tDESC\n"
                        "goodbye.service\t-\n"
                        "hello.service\tHello World\n"
                        "idle.service\tHello World\n"
                        "zed.service\t-\n")
    r = fleetctl("list-unit-files", "--fields=unit,tmachine", "--no-legend")
    assert r.stderr == "WARNING: The 'tmachine' field is deprecated. Use 'target' instead.\n"
    assert r.stdout.splitlines()[0] == "goodbye.service\t85c0c595.../10.0.0.6"


def test_list_machines(three: Cluster, fleetctl: Run) -> None:
    r = fleetctl("list-machines")
    assert (r.exit_code, r.stdout) == (0, "MACHINE\t\tIP\t\tMETADATA\n"
                                          "113f16a7...\t10.0.0.5\taz=us-west-1b\n"
                                          "85c0c595...\t10.0.0.6\taz=us-west-1b,region=us-west\n"
                                          "e793afb9...\t-\t\t-\n")
    r = fleetctl("list-machines", "-l", "--fields=machine", "--no-legend")
    assert r.stdout == f"{M1}\n{M2}\n{M3}\n"


def test_fields_errors_are_usage_errors(three: Cluster, fleetctl: Run) -> None:
    r = fleetctl("list-units", "--fields=unit,bogus")
    assert r.exit_code == 2
    assert 'Invalid key in output format: "bogus"' in r.stderr
    r = fleetctl("list-machines", "--fields=")
    assert r.exit_code == 2 and "Must define output format" in r.stderr


def test_output_json(three: Cluster, fleetctl: Run) -> None:
    seed_listing(three)
    units = json.loads(fleetctl("list-units", "--output", "json").stdout)
    assert units[0] == {"unit": "goodbye.service", "machine": M2, "ip": "10.0.0.6",
                        "load": "loaded", "active": "active", "sub": "running",
                        "hash": "f5f239d" + "1" * 33}
    assert [u["unit"] for u in units] == ["goodbye.service", "hello.service", "zed.service"]
    files = json.loads(fleetctl("list-unit-files", "-o", "json", "--fields=unit").stdout)
    assert files[2] == {"unit": "idle.service", "hash": files[2]["hash"], "dstate": "inactive",
                        "state": "inactive", "machine": None, "ip": None, "global": False,
                        "desc": "Hello World"}
    machines = json.loads(fleetctl("list-machines", "--output=json").stdout)
    assert machines[2] == {"machine": M3, "ip": None, "metadata": {}}
    assert json.loads(fleetctl("list-units", "-o", "json").stdout) == units


# -- status, journal, cat -------------------------------------------------------------------------


def test_status(three: Cluster, fleetctl: Run) -> None:
    three.start_engine()
    fleetctl("start", "hello")
    three.journal.lines["hello.service"] = [f"line {i}" for i in range(1, 13)]
    r = fleetctl("status", "hello", "nope")
    assert r.exit_code == 1
    assert r.stderr == "Unit nope.service does not exist.\n"
    assert re.fullmatch(
        r"● hello\.service - Hello World\n"
        r"     Loaded: loaded \(hash [0-9a-f]{7}; desired launched, current launched\)\n"
        r"     Active: active \(running\) since \w{3} 2023-11-1[45] \d\d:\d\d:\d\d \w+; .* ago\n"
        r"   Main PID: 4242\n"
        r"    Machine: 113f16a7\.\.\./10\.0\.0\.5 \(core-113f\)\n"
        r"\n" + "".join(f"line {i}\n" for i in range(3, 13)), r.stdout), r.stdout
    r = fleetctl("status", "-n", "2", "hello")
    assert r.stdout.endswith("\nline 11\nline 12\n")


def test_status_of_several_units_and_globs(three: Cluster, fleetctl: Run) -> None:
    seed_listing(three)
    r = fleetctl("status", "-n0", "goodbye", "idle")
    pages = r.stdout.split("\n\n")
    assert len(pages) == 2
    assert pages[0].startswith("● goodbye.service\n")
    assert pages[1].startswith("○ idle.service - Hello World\n"
                               "     Loaded: not loaded (hash ")
    assert "Active: inactive (dead)" in pages[1]
    assert fleetctl("status", "-n0", "*ll*").stdout.startswith("○ hello.service")


def test_journal(three: Cluster, fleetctl: Run) -> None:
    seed_listing(three)
    three.journal.lines["hello.service"] = [f"l{i}" for i in range(20)]
    r = fleetctl("journal", "hello")
    assert (r.exit_code, r.stdout) == (0, "".join(f"l{i}\n" for i in range(10, 20)))
    assert fleetctl("journal", "-n", "2", "hello").stdout == "l18\nl19\n"
    assert fleetctl("journal", "--lines=1", "-f", "hello").stdout == "l19\n-- followed --\n"
    assert fleetctl("journal", "--f", "--lines", "0", "hello").stdout == "-- followed --\n"
    r = fleetctl("journal", "nope")
    assert (r.exit_code, r.stderr) == (1, "Unit nope.service does not exist.\n")
    r = fleetctl("journal", "goodbye")  # no journal source for it
    assert r.exit_code == 1 and r.stderr.startswith("Error: no journal for goodbye.service")


def test_cat(three: Cluster, fleetctl: Run) -> None:
    fleetctl("submit", "hello")
    r = fleetctl("cat", "hello.service")
    assert (r.exit_code, r.stdout) == (0, HELLO)
    r = fleetctl("cat", "nope")
    assert (r.exit_code, r.stdout, r.stderr) == (1, "", "Unit nope.service not found\n")
    assert fleetctl("cat", "a", "b").exit_code == 2


# -- version, endpoints, tokens, usage --------------------------------------------------------------


def test_version(fleetctl: Run) -> None:
    assert fleetctl("version").stdout == f"fleetctl version {__version__}\n"
    assert fleetctl("version", prog="flotte").stdout == f"flotte version {__version__}\n"
    assert fleetctl("--version").stdout == f"fleetctl version {__version__}\n"
    assert fleetctl("-v", prog="flotte").stdout == f"flotte version {__version__}\n"


def test_endpoint_sources(three: Cluster, fleetctl: Run) -> None:
    seed_listing(three)
    expected = fleetctl("list-units").stdout
    # FLEETCTL_ENDPOINT, as fleet users have it in their environment
    r = fleetctl("list-units", env={"FLOTTE_ENDPOINT": None,
                                    "FLEETCTL_ENDPOINT": three.endpoint})
    assert (r.exit_code, r.stdout) == (0, expected)
    # FLOTTE_ENDPOINT wins over FLEETCTL_ENDPOINT; --endpoint over both, before or after the verb
    r = fleetctl("list-units", env={"FLEETCTL_ENDPOINT": "unix:///nonexistent/x.sock"})
    assert r.stdout == expected
    bad = {"FLOTTE_ENDPOINT": "unix:///nonexistent/x.sock"}
    assert fleetctl("--endpoint", three.endpoint, "list-units", env=bad).stdout == expected
    assert fleetctl("list-units", "--endpoint", three.endpoint, env=bad).stdout == expected
    assert fleetctl("list-units", f"--endpoint={three.endpoint},http://other:1",
                    env=bad).stdout == expected


def test_unreachable_and_bad_endpoints(fleetctl: Run) -> None:
    r = fleetctl("list-units", env={"FLOTTE_ENDPOINT": "unix:///nonexistent/x.sock"})
    assert r.exit_code == 1
    assert r.stderr.startswith("Error: cannot reach the flotte API at unix:///nonexistent/x.sock")
    assert "flotte up" in r.stderr
    r = fleetctl("--endpoint", "unix://var/run/fleet.sock", "list-units")
    assert r.exit_code == 2 and "unix:///var/run/fleet.sock" in r.stderr


def test_default_endpoint_is_in_the_state_dir(fleetctl: Run, tmp_path: Path) -> None:
    dirs = {"HOME": str(tmp_path), "XDG_STATE_HOME": str(tmp_path)}
    expected = paths.default_endpoint(paths.default_state_dir(env=dirs))  # root: /var/lib/flotte
    r = fleetctl("list-machines", env={"FLOTTE_ENDPOINT": None, **dirs})
    if r.exit_code == 1:  # no daemon there
        assert r.stderr.startswith(f"Error: cannot reach the flotte API at {expected}")


def test_tcp_endpoint_with_token(three: Cluster, fleetctl: Run, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    url = three.serve_tcp("tok3n")
    r = fleetctl("list-machines", "--no-legend", env={"FLOTTE_ENDPOINT": url})
    assert r.exit_code == 1 and "FLOTTE_TOKEN" in r.stderr
    r = fleetctl("--token", "tok3n", "list-machines", "--no-legend",
                 env={"FLOTTE_ENDPOINT": url})
    assert (r.exit_code, len(r.stdout.splitlines())) == (0, 3)
    r = fleetctl("list-machines", env={"FLOTTE_ENDPOINT": url, "FLOTTE_TOKEN": "tok3n"})
    assert r.exit_code == 0
    # else the api-token file of the state directory
    token_file = write(tmp_path / "api-token", "tok3n\n")
    monkeypatch.setattr(connection, "token_path", lambda: Path(token_file))
    r = fleetctl("list-machines", env={"FLOTTE_ENDPOINT": url})
    assert r.exit_code == 0, r.stderr


def test_usage_errors_exit_2(fleetctl: Run) -> None:
    for args in (["start"], ["submit"], ["list-units", "--bogus"], ["stop", "--block-attempts",
                                                                     "-1", "x"],
                 ["--driver=etcd", "list-units"], ["nosuchverb"]):
        r = fleetctl(*args)
        assert r.exit_code == 2, (args, r.output)
    r = fleetctl("--driver=api", "list-machines")  # fleet insisted on "API"
    assert r.exit_code == 0


def test_help_lists_the_verbs(fleetctl: Run) -> None:
    out = fleetctl("--help").stdout
    for verb in ("cat", "destroy", "journal", "list-machines", "list-unit-files", "list-units",
                 "load", "restart", "start", "status", "stop", "submit", "unload", "version",
                 "verify", "completion"):
        assert f"  {verb} " in out, verb
