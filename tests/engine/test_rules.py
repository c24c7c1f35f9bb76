"""fleet's AbleToRun rules one at a time, their order, and their reason sentences."""

from __future__ import annotations

import pytest

from engine.harness import machine_id, service, unit_from_text
from flotte.engine.glob import compile_glob, glob_match, literal_prefix
from flotte.engine.keyspace import MachineRecord, UnitRecord
from flotte.engine.model import (
    Action,
    ClusterView,
    Decision,
    Machine,
    Unit,
    is_template_name,
)
from flotte.engine.rules import able_to_run, global_units_for, residents, units_for

M0 = machine_id(0)
M1 = machine_id(1)


def view(units: list[Unit], schedule: dict[str, str] | None = None,
         machines: list[Machine] | None = None) -> ClusterView:
    return ClusterView.of(machines or [Machine(M0, {"region": "eu", "disk": "ssd"}),
                                       Machine(M1, {"region": "us"})],
                          units, schedule or {})


# ---------------------------------------------------------------- each rule

def test_machine_id_full_or_short() -> None:
    for want in (M0, M0[:8]):
        u = Unit.make("pin.service", machine_id=want)
        assert able_to_run(M0, u, view([u])).action is Action.RUN
        d = able_to_run(M1, u, view([u]))
        assert d == Decision(Action.REFUSE, f"MachineID={want} is not this machine ({M1[:8]})",
                             "MachineID")
    # seven characters is not fleet's short ID
    u = Unit.make("pin.service", machine_id=M0[:7])
    assert able_to_run(M0, u, view([u])).action is Action.REFUSE


def test_legacy_boot_id_is_a_machine_requirement() -> None:
    u = unit_from_text("old.service", service(f"X-ConditionMachineBootID={M1}"))
    assert able_to_run(M1, u, view([u])).action is Action.RUN
    assert able_to_run(M0, u, view([u])).rule == "MachineID"


def test_metadata_or_within_key_and_across_keys() -> None:
    u = unit_from_text("m.service", service('MachineMetadata="region=us" "region=eu"\n'
                                            'MachineMetadata=disk=ssd'))
    assert u.xfleet.metadata == {"region": ["us", "eu"], "disk": ["ssd"]}
    v = view([u])
    assert able_to_run(M0, u, v).action is Action.RUN
    d = able_to_run(M1, u, v)
    assert d.reason == f"metadata disk=ssd not on {M1[:8]} (it has no disk)"
    u2 = Unit.make("m2.service", metadata={"region": ["asia", "mars"]})
    assert able_to_run(M1, u2, view([u2])).reason == (
        f"metadata region=asia or region=mars not on {M1[:8]} (it has region=us)")


def test_metadata_is_exact_string_equality() -> None:
    u = Unit.make("m.service", metadata={"region": ["EU"]})
    assert able_to_run(M0, u, view([u])).action is Action.REFUSE
    u = Unit.make("m.service", metadata={"region": ["e*"]})
    assert able_to_run(M0, u, view([u])).action is Action.REFUSE


def test_machine_of_peer_must_be_resident_here() -> None:
    peer = Unit.make("db.service")
    f = Unit.make("side.service", machine_of=["db.service"])
    v = view([peer, f], {"db.service": M0})
    assert able_to_run(M0, f, v).action is Action.RUN
    assert able_to_run(M1, f, v).reason == (
        f"MachineOf peer db.service is not scheduled on {M1[:8]} (it is on {M0[:8]})")
    v = view([peer, f])
    assert able_to_run(M0, f, v).reason == (
        f"MachineOf peer db.service is not scheduled on {M0[:8]} (it is not scheduled anywhere)")
    v = view([f])
    assert able_to_run(M0, f, v).reason.endswith("(no such unit)")
    selfish = Unit.make("s.service", machine_of=["s.service"])
    assert able_to_run(M0, selfish, view([selfish], {"s.service": M0})).reason.endswith(
        "(a unit cannot be its own MachineOf peer)")


def test_machine_of_a_peer_whose_desired_state_is_inactive() -> None:
    peer = Unit.make("db.service", desired="inactive")
    f = Unit.make("side.service", machine_of=["db.service"])
    v = view([peer, f], {"db.service": M0})
    assert able_to_run(M0, f, v).action is Action.REFUSE


def test_conflicts_both_directions_and_own_name_skipped() -> None:
    a = Unit.make("apache@8080.service", conflicts=["apache@*.service"])
    b = Unit.make("apache@8081.service", conflicts=["apache@*.service"])
    plain = Unit.make("hello.service")
    blocker = Unit.make("blocker.service", conflicts=["hello.service"])
    v = view([a, b, plain, blocker], {"apache@8081.service": M0, "blocker.service": M1})
    assert able_to_run(M0, a, v) == Decision(
        Action.REFUSE, f"conflicts with apache@8081.service on {M0[:8]}", "Conflicts",
        "apache@8081.service")
    assert able_to_run(M1, a, v).action is Action.RUN
    # b is scheduled on M0 and its own glob matches itself: that is skipped
    assert able_to_run(M0, b, v).action is Action.RUN
    # one-way: hello has no Conflicts but blocker's glob matches it
    assert able_to_run(M1, plain, v).reason == f"conflicts with blocker.service on {M1[:8]}"


def test_conflict_reason_names_the_first_by_name() -> None:
    u = Unit.make("x.service", conflicts=["*"])
    others = [Unit.make(n) for n in ("c.service", "a.service", "b.service")]
    v = view([u, *others], {o.name: M0 for o in others})
    assert able_to_run(M0, u, v).other == "a.service"


def test_rule_order_is_fleets() -> None:
    """MachineID, then metadata, then MachineOf, then Conflicts, then Replaces."""
    peer = Unit.make("db.service")
    clash = Unit.make("clash.service")
    u = Unit.make("u.service", machine_id=M0, metadata={"region": ["us"]},
                  machine_of=["db.service"], conflicts=["clash.service"])
    v = view([peer, clash, u], {"clash.service": M1})
    assert able_to_run(M1, u, v).rule == "MachineID"
    u = Unit.make("u.service", metadata={"region": ["us"]}, machine_of=["db.service"],
                  conflicts=["clash.service"])
    assert able_to_run(M0, u, view([peer, clash, u], {"clash.service": M0})).rule == \
        "MachineMetadata"
    assert able_to_run(M1, u, view([peer, clash, u], {"clash.service": M1})).rule == "MachineOf"
    v = view([peer, clash, u], {"clash.service": M1, "db.service": M1})
    assert able_to_run(M1, u, v).rule == "Conflicts"


def test_replaces_gives_reschedule_both_ways() -> None:
    old = Unit.make("replace.0.service")
    new = Unit.make("replace-kick0.service", replaces=["replace.0.service"])
    v = view([old, new], {"replace.0.service": M0, "replace-kick0.service": M1})
    d = able_to_run(M0, new, v)
    assert d == Decision(Action.RESCHEDULE, f"replaces replace.0.service on {M0[:8]}",
                         "Replaces", "replace.0.service", displaces=("replace.0.service",))
    assert d.runnable
    v = view([old, new], {"replace-kick0.service": M0})
    d = able_to_run(M0, old, v)
    assert d == Decision(Action.RESCHEDULE, f"replaced by replace-kick0.service on {M0[:8]}",
                         "Replaces", "replace-kick0.service",
                         replaced_by="replace-kick0.service")
    assert not d.runnable


def test_circular_replaces_is_ignored_per_machine() -> None:
    a = Unit.make("a.service", replaces=["b.service"])
    b = Unit.make("b.service", replaces=["a.service"])
    v = view([a, b], {"b.service": M0})
    assert able_to_run(M0, a, v).action is Action.RUN


def test_global_units_are_not_moved_by_replaces() -> None:
    g = Unit.make("g.service", global_=True)
    u = Unit.make("u.service", replaces=["g.service"])
    assert able_to_run(M0, u, view([g, u])).action is Action.RUN


# ---------------------------------------------------------------- global units

def test_global_units_for_metadata_and_conflicts() -> None:
    g1 = Unit.make("conflict-global.1.service", global_=True,
                   conflicts=["conflict-global.*.service"])
    g2 = Unit.make("conflict-global.2.service", global_=True,
                   conflicts=["conflict-global.*.service"])
    eu_only = Unit.make("eu.service", global_=True, metadata={"region": ["eu"]})
    off = Unit.make("off.service", global_=True, desired="inactive")
    v = view([g1, g2, eu_only, off])
    assert global_units_for(M0, v) == ["conflict-global.1.service", "eu.service"]
    assert global_units_for(M1, v) == ["conflict-global.1.service"]
    assert able_to_run(M0, g2, v).reason == (
        f"conflicts with conflict-global.1.service on {M0[:8]}")
    assert able_to_run(M0, g1, v).action is Action.RUN


def test_scheduled_units_take_precedence_over_global_ones() -> None:
    web = Unit.make("web.service")
    g = Unit.make("a-global.service", global_=True, conflicts=["web.service"])
    v = view([web, g], {"web.service": M0})
    assert global_units_for(M0, v) == []
    assert global_units_for(M1, v) == ["a-global.service"]
    assert residents(M0, v) == {"web.service"}
    assert units_for(M1, v) == ["a-global.service"]
    # and a conflicting unit may not go where the global unit runs
    assert able_to_run(M1, web, v).reason == f"conflicts with a-global.service on {M1[:8]}"


def test_unknown_machine() -> None:
    with pytest.raises(KeyError, match="not in the cluster view"):
        global_units_for("nope", view([]))


# ---------------------------------------------------------------- model helpers

def test_template_names() -> None:
    assert is_template_name("foo@.service")
    assert not is_template_name("foo@bar.service")
    assert not is_template_name("foo.service")
    assert not is_template_name("foo@.bar.service")
    assert not Unit.make("foo@.service").wants_placement


def test_machine_from_record_merges_dynamic_metadata() -> None:
    rec = MachineRecord("m1", "host", "10.0.0.1", {"region": "eu", "role": "web"})
    m = Machine.from_record(rec, {"role": "db", "region": "", "new": "x"})
    assert m.metadata == {"role": "db", "new": "x"}
    assert m.public_ip == "10.0.0.1"


def test_view_from_records() -> None:
    rec = UnitRecord.make("a@1.service", [("Service", "ExecStart", "/bin/true"),
                                          ("X-Fleet", "Conflicts", "a@*.service")])
    v = ClusterView.from_records([MachineRecord("m1")], [(rec, "launched")], {})
    assert v.units["a@1.service"].xfleet.conflicts == ["a@*.service"]
    assert v.units["a@1.service"].hash == rec.hash


# ---------------------------------------------------------------- Go globs

@pytest.mark.parametrize(("pattern", "name", "match"), [
    ("apache@*.service", "apache@8081.service", True),
    ("apache@*.service", "apache@.service", True),
    ("apache@*.service", "apache.service", False),
    ("conflict.?.service", "conflict.1.service", True),
    ("conflict.?.service", "conflict.10.service", False),
    ("[ab]*", "b.service", True),
    ("[a-c].service", "c.service", True),
    ("[^a].service", "b.service", True),   # Go negation
    ("[^a].service", "a.service", False),
    ("[!a].service", "!.service", True),    # '!' is literal in Go, negation in fnmatch
    ("[!a].service", "b.service", False),
    ("a\\*.service", "a*.service", True),   # Go escape
    ("a\\*.service", "ab.service", False),
    ("foo@a\\x2db.service", "foo@a\\x2db.service", False),  # \x is an escaped x in Go
    ("foo@a\\\\x2db.service", "foo@a\\x2db.service", True),
    ("[", "[", False),                       # malformed: never matches
    ("[]a]", "]a", False),
    ("[a-]", "a", False),
    ("abc\\", "abc\\", False),
    ("[c-a]x", "bx", False),                 # inverted range matches nothing
    ("*", "a/b", False),                     # * does not cross /
    ("", "", True),
])
def test_go_glob(pattern: str, name: str, match: bool) -> None:
    assert glob_match(pattern, name) is match


def test_glob_helpers() -> None:
    assert compile_glob("[") is None
    assert literal_prefix("apache@*.service") == "apache@"
    assert literal_prefix("a\\*b") == "a"
    assert literal_prefix("plain.service") == "plain.service"
