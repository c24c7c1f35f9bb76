"""[X-Fleet] parsing and fleet's validation rules (fleet.md §2.4, §2.5, §3.2)."""

from __future__ import annotations

import pytest

from flotte.unit import load_text
from flotte.unit.xfleet import split_multivalue

BASE = "[Service]\nExecStart=/bin/true\n[X-Fleet]\n"


def xf(body: str, name: str = "u.service"):  # type: ignore[no-untyped-def]
    return load_text(BASE + body, name)


def test_multivalue_splitting_only_when_quoted() -> None:
    assert split_multivalue('"region=us-east-1" "diskType=SSD"') == ["region=us-east-1",
                                                                   "diskType=SSD"]
    assert split_multivalue("region=us east") == ["region=us east"]
    assert split_multivalue('"a b" "c"') == ["a b", "c"]


def test_metadata_grouping_or_within_and_across_keys() -> None:
    u = xf('MachineMetadata="region=us-east-1" "job=foo"\n'
           'MachineMetadata="region=us-west-1" "job=bar"\n')
    assert u.x_fleet.metadata == {"region": ["us-east-1", "us-west-1"], "job": ["foo", "bar"]}


def test_metadata_not_key_value_is_a_warning() -> None:
    u = xf("MachineMetadata=a=b=c\nMachineMetadata=noval=\n")
    assert u.load_state == "loaded"
    assert u.x_fleet.metadata == {}
    assert len([d for d in u.warnings if "not key=value" in d.message]) == 2


def test_legacy_names_and_specifiers() -> None:
    u = xf("X-ConditionMachineOf=apache@%i.service\nX-Conflicts=%p@*.service\n"
           "X-ConditionMachineMetadata=role=%N\n", "side@8080.service")
    assert u.x_fleet.machine_of == ["apache@8080.service"]
    assert u.x_fleet.conflicts == ["side@*.service"]
    assert u.x_fleet.metadata == {"role": ["side@8080"]}


def test_global_truthy_last_wins() -> None:
    assert xf("Global=YES\n").x_fleet.global_ is True
    assert xf("Global=true\nGlobal=no\n").x_fleet.global_ is False


def test_conflicts_glob_match() -> None:
    u = xf("Conflicts=apache@*.service other?.service\n", "apache@1.service")
    assert u.x_fleet.conflicts_with("apache@2.service")
    assert u.x_fleet.conflicts_with("other1.service")
    assert not u.x_fleet.conflicts_with("web.service")


@pytest.mark.parametrize(("body", "message"), [
    ("MachineID=abc\nMachineOf=x.service\n", "MachineID cannot be used with Peers"),
    ("MachineID=abc\nConflicts=x*\n", "MachineID cannot be used with Conflicts"),
    ("MachineID=abc\nGlobal=true\n", "MachineID cannot be used with Global"),
    ("MachineID=abc\nReplaces=x*\n", "MachineID cannot be used with Replaces"),
    ("Global=true\nMachineOf=x.service\n", "Global cannot be used with Peers"),
    ("Global=true\nReplaces=x.service\n", "Global cannot be used with Replaces"),
    ("Conflicts=a*\nReplaces=b*\n", "Conflicts cannot be used with Replaces"),
    ("MachineOf=db.service\nConflicts=db*\n", "unresolvable requirements"),
])
def test_mutual_exclusion(body: str, message: str) -> None:
    u = xf(body)
    assert u.load_state == "bad-setting"
    assert any(message in d.message for d in u.errors), u.diagnostics


def test_unknown_key_warns_with_fix() -> None:
    u = xf("ConditionMachineOf=apache@%i.service\n", "s@1.service")
    assert u.load_state == "loaded"
    (w,) = u.warnings
    assert "unrecognized requirement" in w.message and w.line == 4
    assert w.fix is not None and "MachineOf=" in w.fix


def test_template_machine_of_its_own_template_is_not_a_mistake() -> None:
    """``apache-secretary@.service`` with ``MachineOf=apache@%i.service`` (the seed's
    sidekick) names a template only in the template itself; instances get real names."""
    text = "[Service]\nExecStart=/bin/true\n[X-Fleet]\nMachineOf=apache@%i.service\n"
    assert load_text(text, "apache-secretary@.service").diagnostics == []
    inst = load_text(text, "apache-secretary@8080.service")
    assert inst.x_fleet.machine_of == ["apache@8080.service"]
