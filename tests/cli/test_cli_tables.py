"""The listings' columns, legends, ordering and field errors (fleet.md §4.3), without a server."""

from __future__ import annotations

import json

import pytest
from test_cli_tabwriter import LIST_MACHINES, LIST_UNIT_FILES, LIST_UNITS

from flotte.api.client import Machine, Unit, UnitOption, UnitState
from flotte.cli import tables as T

A = "113f16a7f5d34a8a9b1b5e1a0c1d2e3f"
B = "85c0c595a1b2c3d4e5f60718293a4b5c"
C = "e793afb9c8d7e6f5a4b3c2d1e0f9a8b7"
MACHINES = {
    A: Machine(A, "172.17.8.103", {"az": "us-west-1b"}),
    B: Machine(B, "172.17.8.102", {"region": "us-west", "az": "us-west-1b"}),
    C: Machine(C),
}
GLOBAL_HASH = "a0f275d" + "0" * 33
HELLO_HASH = "e55c0ae" + "1" * 33
STATES = [
    UnitState("hello.service", HELLO_HASH, A, "loaded", "inactive", "dead"),
    UnitState("global.service", GLOBAL_HASH, C, "loaded", "active", "running"),
    UnitState("goodbye.service", "f5f239d" + "2" * 33, B, "loaded", "active", "running"),
    UnitState("global.service", GLOBAL_HASH, A, "loaded", "active", "running"),
]


def state_rows() -> list[T.StateRow]:
    return [T.StateRow(s, MACHINES) for s in T.sort_states(STATES)]


def test_list_units_default_is_the_literal_table() -> None:
    assert T.UNITS.render(state_rows(), T.UNITS.parse_fields(None)) == LIST_UNITS


def test_list_units_all_fields() -> None:
    cols = T.UNITS.parse_fields("unit,load,active,sub,machine,hash")
    out = T.UNITS.render(state_rows(), cols).splitlines()
    # fleet.md §4.3 shows an excerpt of this table
    assert out[0] == "UNIT\t\tLOAD\tACTIVE\t\tSUB\tMACHINE\t\t\t\tHASH"
    assert "global.service\tloaded\tactive\t\trunning\t113f16a7.../172.17.8.103\ta0f275d" in out
    assert "hello.service\tloaded\tinactive\tdead\t113f16a7.../172.17.8.103\te55c0ae" in out


def test_list_units_full_no_legend() -> None:
    out = T.UNITS.render(state_rows(), T.UNITS.parse_fields(None), full=True,
                         no_legend=True).splitlines()
    assert "hello.service\t113f16a7f5d34a8a9b1b5e1a0c1d2e3f/172.17.8.103\tinactive\tdead" in out
    assert not out[0].startswith("UNIT")
    hashes = T.UNITS.render(state_rows(), ["hash"], full=True, no_legend=True).split()
    assert HELLO_HASH in hashes


def unit_file_rows() -> list[T.UnitFileRow]:
    def row(name: str, h: str, desired: str, current: str, mid: str, glob: bool = False,
            desc: str = "") -> T.UnitFileRow:
        return T.UnitFileRow(Unit(name, [], desired, current, mid), h, glob, desc, MACHINES)

    # the order fleet.md shows (the probe's fake API did not sort); we sort by name
    return [row("goodbye.service", "f5f239d" + "3" * 33, "launched", "launched", B),
            row("global.service", "055adf8" + "4" * 33, "launched", "", "", glob=True),
            row("hello.service", HELLO_HASH, "launched", "launched", A, desc="Hello World"),
            row("idle.service", HELLO_HASH, "inactive", "inactive", "", desc="Hello World")]


def test_list_unit_files_literal() -> None:
    cols = T.UNIT_FILES.parse_fields(None)
    assert T.UNIT_FILES.render(unit_file_rows(), cols) == LIST_UNIT_FILES


def test_list_unit_files_all_fields_excerpt() -> None:
    cols = T.UNIT_FILES.parse_fields("unit,global,dstate,state,target,desc,hash")
    out = T.UNIT_FILES.render(unit_file_rows(), cols).splitlines()
    assert out[0] == "UNIT\t\tGLOBAL\tDSTATE\t\tSTATE\t\tTARGET\t\t\t\tDESC\t\tHASH"
    assert out[1] == ("goodbye.service\tfalse\tlaunched\tlaunched\t85c0c595.../172.17.8.102\t-"
                      "\t\tf5f239d")
    assert out[2] == "global.service\ttrue\tlaunched\t-\t\tglobal\t\t\t\t-\t\t055adf8"


def test_list_machines_literal() -> None:
    machines = T.sort_machines(reversed(list(MACHINES.values())))
    assert T.MACHINES.render(machines, T.MACHINES.parse_fields(None)) == LIST_MACHINES
    full = T.MACHINES.render(machines, ["machine"], full=True, no_legend=True)
    assert full == f"{A}\n{B}\n{C}\n"


def test_ordering() -> None:
    assert [(s.name, s.machine_id[:1]) for s in T.sort_states(STATES)] == [
        ("global.service", "1"), ("global.service", "e"), ("goodbye.service", "8"),
        ("hello.service", "1")]
    units = [Unit("b.service"), Unit("a@2.service"), Unit("a@10.service")]
    assert [u.name for u in T.sort_units(units)] == ["a@10.service", "a@2.service", "b.service"]


def test_legends() -> None:
    assert T.machine_id_legend(A) == "113f16a7..."
    assert T.machine_id_legend(A, full=True) == A
    assert T.machine_legend(A, "10.0.0.5") == "113f16a7.../10.0.0.5"
    assert T.machine_legend(A) == "113f16a7..."
    assert T.machine_column("", MACHINES, False) == "-"
    assert T.machine_column("deadbeef00", {}, False) == "deadbeef..."  # machine gone: no IP
    assert T.short_hash("") == "-"
    assert T.short_hash("abc") == "abc"
    assert T.format_metadata({}) == "-"
    assert T.format_metadata({"z": "1", "a": "2"}) == "a=2,z=1"


def test_fields_errors_are_fleetctls() -> None:
    with pytest.raises(T.FieldsError, match=r'^Invalid key in output format: "bogus"'):
        T.UNITS.parse_fields("unit,bogus")
    with pytest.raises(T.FieldsError, match=r"^Must define output format$"):
        T.UNITS.parse_fields("")
    with pytest.raises(T.FieldsError, match=r'^Invalid key in output format: ""'):
        T.MACHINES.parse_fields("machine,")
    assert T.UNIT_FILES.parse_fields("tmachine") == ["tmachine"]


def test_empty_listing() -> None:
    assert T.UNITS.render([], ["unit"]) == "UNIT\n"
    assert T.UNITS.render([], ["unit"], no_legend=True) == ""


def test_json_rows() -> None:
    (row,) = [r for r in state_rows() if r.state.machine_id == C]
    assert T.state_json(row) == {"unit": "global.service", "machine": C, "ip": None,
                                 "load": "loaded", "active": "active", "sub": "running",
                                 "hash": GLOBAL_HASH}
    files = [T.unit_file_json(r) for r in unit_file_rows()]
    assert files[1] == {"unit": "global.service", "hash": "055adf8" + "4" * 33,
                        "dstate": "launched", "state": None, "machine": None, "ip": None,
                        "global": True, "desc": None}
    assert files[2]["machine"] == A and files[2]["ip"] == "172.17.8.103"
    assert T.machine_json(MACHINES[B]) == {"machine": B, "ip": "172.17.8.102", "metadata": {
        "az": "us-west-1b", "region": "us-west"}}
    assert json.loads(T.dump_json([{"a": 1}])) == [{"a": 1}]


def test_unit_option_is_a_tuple() -> None:
    # the client's options are passed to hashing and global detection as triples
    assert tuple(UnitOption("Service", "ExecStart", "/bin/true")) == \
        ("Service", "ExecStart", "/bin/true")
