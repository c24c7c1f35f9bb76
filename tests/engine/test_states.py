"""Desired-state table (fleet.md §2.2), derived current state (§1.4), rolling restarts."""

from __future__ import annotations

import pytest

from flotte.engine.keyspace import StateRecord
from flotte.engine.rolling import (
    Member,
    max_unavailable_count,
    members_from_states,
    rolling_step,
)
from flotte.engine.states import (
    COMMANDS,
    command_allowed,
    current_state,
    transition_allowed,
    transition_path,
)

# (command, desired state it sets, valid previous states) — Documentation/states.md
TABLE = [
    ("submit", "inactive", {None}),
    ("load", "loaded", {None, "inactive"}),
    ("start", "launched", {None, "inactive", "loaded"}),
    ("stop", "loaded", {"launched"}),
    ("unload", "inactive", {"launched", "loaded"}),
    ("destroy", None, {None, "inactive", "loaded", "launched"}),
]
STATES = [None, "inactive", "loaded", "launched"]


@pytest.mark.parametrize(("command", "target", "valid"), TABLE)
def test_command_table(command: str, target: str | None, valid: set[str | None]) -> None:
    rule = COMMANDS[command]  # type: ignore[index]
    assert rule.target == target
    for s in STATES:
        assert command_allowed(command, s) is (s in valid), (command, s)  # type: ignore[arg-type]


def test_aliases() -> None:
    assert COMMANDS["start"].alias_for == ("submit", "load", "start")
    assert COMMANDS["destroy"].alias_for == ("stop", "unload", "destroy")


def test_transitions() -> None:
    assert transition_allowed(None, "launched")
    assert transition_allowed("launched", "inactive")
    assert transition_allowed("launched", None)
    assert transition_allowed("loaded", "loaded")      # a no-op is fine
    assert not transition_allowed(None, None)          # nothing to destroy
    assert transition_path("inactive", "launched") == ("loaded", "launched")
    assert transition_path(None, "launched") == ("inactive", "loaded", "launched")
    assert transition_path("launched", "inactive") == ("loaded", "inactive")
    assert transition_path("launched", None) == ("loaded", "inactive", None)
    assert transition_path("loaded", "loaded") == ()
    assert transition_path("inactive", None) == (None,)


def test_current_state_derivation() -> None:
    st = StateRecord("a.service", "m1", load_state="loaded", active_state="active")
    assert current_state(None, st) == "inactive"
    assert current_state("m1", None) == "inactive"
    assert current_state("m2", st) == "inactive"   # a report from the old machine does not count
    assert current_state("m1", st) == "loaded"
    launched = StateRecord("a.service", "m1", launched=True)
    assert current_state("m1", launched) == "launched"
    assert current_state("m1", launched, global_unit=True) is None


# ---------------------------------------------------------------- rolling

def members(spec: str, target: str = "new") -> list[Member]:
    """'nN o? ...': n = runs new hash, o = old hash; upper case healthy, '?' down."""
    out = []
    for i, tok in enumerate(spec.split()):
        out.append(Member(f"m{i}", target if tok[0] in "nN" else "old", tok[0].isupper()))
    return out


def test_rolling_one_at_a_time() -> None:
    step = rolling_step(members("O O O"), "new")
    assert step.restart == ("m0",) and step.waiting == ("m1", "m2")
    step = rolling_step(members("n O O"), "new")      # m0 restarting, not healthy yet
    assert step.restart == () and step.waiting == ("m1", "m2") and step.unavailable == 1
    step = rolling_step(members("N O O"), "new")
    assert step.restart == ("m1",) and step.updated == ("m0",)
    assert rolling_step(members("N N N"), "new").done


def test_rolling_down_members_restart_first_and_free() -> None:
    step = rolling_step(members("o O O"), "new", 1)
    assert step.restart == ("m0",) and step.budget == 0
    step = rolling_step(members("o o O O"), "new", 3)
    assert step.restart == ("m0", "m1", "m2")


def test_rolling_percentages() -> None:
    assert max_unavailable_count("25%", 8) == 2
    assert max_unavailable_count("10%", 3) == 1   # never zero while there are members
    assert max_unavailable_count(0, 3) == 1
    assert max_unavailable_count("2", 5) == 2
    assert max_unavailable_count(5, 0) == 0
    assert rolling_step(members("O O O O O O O O"), "new", "25%").restart == ("m0", "m1")
    for bad in ("x", "-1", "120%", "a%"):
        with pytest.raises(ValueError, match="max-unavailable"):
            max_unavailable_count(bad, 4)


def test_members_from_states() -> None:
    def st(name: str, mid: str, active: str, sub: str, h: str = "h1") -> StateRecord:
        return StateRecord(name, mid, h, "loaded", active, sub)

    states = [st("g.service", "m1", "active", "running"),
              st("g.service", "m2", "activating", "start-pre"),
              st("g.service", "m3", "active", "exited", "h2")]
    assert members_from_states(states, per_machine=True) == [
        Member("m1", "h1", True), Member("m2", "h1", False), Member("m3", "h2", True)]
    by_instance = members_from_states([st("a@1.service", "m1", "active", "running"),
                                       st("a@2.service", "m2", "failed", "failed")],
                                      per_machine=False)
    assert [(m.key, m.healthy) for m in by_instance] == [("a@1.service", True),
                                                         ("a@2.service", False)]
