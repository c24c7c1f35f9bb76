"""fleet's scheduling scenarios (fleet.md §3, §6) as pure, in-process decisions.

Every scenario runs in both harness modes: a full reconcile per pass
(fleet's behaviour) and one long-lived incremental scheduler fed changes.
"""

from __future__ import annotations

import random
import time

import pytest

from engine.harness import Harness, Mode, machine_id, service
from flotte.engine.model import ClusterView, Machine, Schedule, Unit, Unschedule
from flotte.engine.scheduler import NO_MACHINES, Scheduler, reconcile

MODES: list[Mode] = ["full", "incremental"]


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> Mode:
    return request.param  # type: ignore[no-any-return]


# ---------------------------------------------------------------- fleet's functional tests

def test_schedule_conflicts(mode: Mode) -> None:
    """TestScheduleConflicts: 5 mutually conflicting units on 3 machines → 3 run, distinct."""
    h = Harness(3, mode=mode)
    for i in range(5):
        h.start(f"conflict.{i}.service", service("Conflicts=conflict.*.service"))
    h.settle()
    placed = {n: m for n, m in h.schedule.items()}
    assert len(placed) == 3
    assert len(set(placed.values())) == 3
    assert h.active_count() == 3
    for name in ("conflict.3.service", "conflict.4.service"):
        reasons = h.reasons[name]
        assert set(reasons) == set(h.machines)
        for mid, why in reasons.items():
            other = next(n for n, m in placed.items() if m == mid)
            assert why == f"conflicts with {other} on {mid[:8]}"


def test_schedule_one_way_conflict(mode: Mode) -> None:
    """TestScheduleOneWayConflict: a unit without Conflicts is kept away by another's."""
    h = Harness(1, mode=mode)
    mid = machine_id(0)
    h.start("conflicts-with-hello.service", service("Conflicts=hello.service"))
    h.settle()
    h.start("hello.service", service())
    h.settle()
    assert h.active() == {"conflicts-with-hello.service": {mid}}
    assert h.reasons["hello.service"] == {
        mid: f"conflicts with conflicts-with-hello.service on {mid[:8]}"}
    h.destroy("conflicts-with-hello.service")
    plans = h.settle()
    assert Unschedule("conflicts-with-hello.service", mid, "unit was destroyed") \
        in plans[0].steps
    assert h.active() == {"hello.service": {mid}}
    assert "hello.service" not in h.reasons


def test_schedule_multiple_conflicts(mode: Mode) -> None:
    """TestScheduleMultipleConflicts: several names on one Conflicts= line (space-split)."""
    h = Harness(3, mode=mode)
    line = "Conflicts=conflict.2.service conflict.1.service conflict.0.service"
    for i in range(3):
        h.start(f"conflict.{i}.service", service(line))
    h.settle()
    assert len(set(h.schedule.values())) == 3
    assert h.units["conflict.0.service"].xfleet.conflicts == [
        "conflict.2.service", "conflict.1.service", "conflict.0.service"]


def test_schedule_machine_of_pairs_move_together(mode: Mode) -> None:
    """TestScheduleMachineOf: 3 ping/pong pairs co-located; a dead host moves its pair."""
    h = Harness(3, mode=mode)
    for i in range(3):
        h.start(f"ping.{i}.service", service())
        h.start(f"pong.{i}.service", service(f"MachineOf=ping.{i}.service"))
    h.settle()
    assert h.active_count() == 6
    for i in range(3):
        assert h.where(f"ping.{i}.service") == h.where(f"pong.{i}.service")
    # least-loaded spreads the pairs over the three machines
    assert len({h.where(f"ping.{i}.service") for i in range(3)}) == 3
    old = h.where("ping.1.service")
    assert old is not None
    others = {n: m for n, m in h.schedule.items() if m != old}
    h.remove_machine(old)
    plan = h.reconcile()
    assert not plan.unplaced
    new = h.where("ping.1.service")
    assert new is not None and new != old
    assert h.where("pong.1.service") == new
    assert {s.unit for s in plan.unschedules} == {"ping.1.service", "pong.1.service"}
    assert all(s.reason == f"machine {old[:8]} went away" for s in plan.unschedules)
    assert {n: m for n, m in h.schedule.items() if n in others} == others
    assert h.active_count() == 6


def test_follower_named_before_its_target_still_moves_in_one_pass(mode: Mode) -> None:
    """fleet took units in map order and a follower seen first waited a pass; we wait for it."""
    h = Harness(2, mode=mode)
    h.start("zz-target.service")
    h.start("aa-follower.service", service("MachineOf=zz-target.service"))
    h.settle()
    old = h.where("zz-target.service")
    assert old is not None and h.where("aa-follower.service") == old
    h.remove_machine(old)
    plan = h.reconcile()
    new = h.where("zz-target.service")
    assert new is not None and new != old
    assert h.where("aa-follower.service") == new
    order = [s.unit for s in plan.schedules]
    assert order == ["zz-target.service", "aa-follower.service"]


def test_schedule_replace(mode: Mode) -> None:
    """TestScheduleReplace: replace.1 (Replaces=replace.0) and replace.0 end up apart."""
    h = Harness(2, mode=mode)
    h.start("replace.0.service", service())
    h.settle()
    h.start("replace.1.service", service("Replaces=replace.0.service"))
    h.settle()
    assert h.where("replace.0.service") != h.where("replace.1.service")
    assert h.active_count() == 2


def test_replace_kicks_the_replaced_unit_off_in_the_same_pass(mode: Mode) -> None:
    """The newcomer lands on the replaced unit's machine (least-loaded tie): it moves away."""
    h = Harness(2, mode=mode)
    m0, m1 = machine_id(0), machine_id(1)
    h.start("replace.0.service", service())
    h.start("z-filler.service", service())
    h.settle()
    assert h.where("replace.0.service") == m0 and h.where("z-filler.service") == m1
    h.start("replace-kick0.service", service("Replaces=replace.0.service"))
    plan = h.reconcile()
    assert plan.steps == [
        Schedule("replace-kick0.service", m0, "target state launched and unit not scheduled"),
        Unschedule("replace.0.service", m0, f"replaced by replace-kick0.service on {m0[:8]}"),
        Schedule("replace.0.service", m1, "target state launched and unit not scheduled"),
    ]
    assert h.reconcile().steps == []


def test_replaced_unit_with_nowhere_to_go_waits(mode: Mode) -> None:
    """On one machine the replaced unit is unplaced (fleet flapped it back every pass)."""
    h = Harness(1, mode=mode)
    mid = machine_id(0)
    h.start("old.service")
    h.settle()
    h.start("new.service", service("Replaces=old.service"))
    h.settle()
    assert h.schedule == {"new.service": mid}
    assert h.reasons["old.service"] == {mid: f"replaced by new.service on {mid[:8]}"}


def test_schedule_circular_replace(mode: Mode) -> None:
    """TestScheduleCircularReplace: two units replacing each other: only one runs."""
    h = Harness(2, mode=mode)
    h.start("replace.0.service", service("Replaces=replace.1.service"))
    h.settle()
    assert h.active_count() == 1
    h.start("replace.1.service", service("Replaces=replace.0.service"))
    h.settle()
    assert set(h.schedule) == {"replace.0.service"}
    where = h.where("replace.0.service")
    assert where is not None
    assert h.reasons["replace.1.service"] == {"": (
        "replace.1.service and replace.0.service replace each other (circular Replaces=); "
        f"only one of them runs, and replace.0.service runs on {where[:8]}")}


def test_circular_replace_both_scheduled_keeps_the_first(mode: Mode) -> None:
    m = [machine_id(0), machine_id(1)]
    units = [Unit.make("a.service", replaces=["b.service"]),
             Unit.make("b.service", replaces=["a.service"])]
    plan = reconcile(ClusterView.of([Machine(x) for x in m], units,
                                    {"a.service": m[0], "b.service": m[1]}))
    assert [type(s).__name__ + ":" + s.unit for s in plan.steps] == ["Unschedule:b.service"]
    assert "replace each other" in plan.unplaced["b.service"][""]


def test_schedule_condition_machine_id(mode: Mode) -> None:
    """TestScheduleConditionMachineID: MachineID= pins each unit (full or 8-char short ID)."""
    h = Harness(3, mode=mode)
    ids = sorted(h.machines)
    for i, mid in enumerate(ids):
        pin = mid if i != 1 else mid[:8]
        h.start(f"pin{i}.service", service(f"MachineID={pin}"))
    h.start("legacy.service", service(f"X-ConditionMachineID={ids[2]}"))
    h.settle()
    assert h.schedule == {"pin0.service": ids[0], "pin1.service": ids[1],
                          "pin2.service": ids[2], "legacy.service": ids[2]}


def test_machine_id_of_absent_machine_stays_unplaced(mode: Mode) -> None:
    h = Harness(2, mode=mode)
    h.start("pin.service", service("MachineID=deadbeef"))
    h.settle()
    assert h.reasons["pin.service"] == {
        mid: f"MachineID=deadbeef is not this machine ({mid[:8]})" for mid in h.machines}
    h.add_machine("deadbeef" + "0" * 24)
    h.settle()
    assert h.where("pin.service") == "deadbeef" + "0" * 24


def test_schedule_global_units(mode: Mode) -> None:
    """TestScheduleGlobalUnits: 2 normal units + 1 global on 3 nodes: 5 active."""
    h = Harness(3, mode=mode)
    h.start("hello.service", service())
    h.start("goodbye.service", service())
    h.settle()
    assert h.active_count() == 2
    h.start("global.service", service("Global=true"))
    plan = h.reconcile()
    assert plan.steps == []  # the engine never schedules a global unit
    assert h.active_count() == 5
    assert h.hosts("global.service") == set(h.machines)
    assert "global.service" not in h.schedule
    for mid in h.machines:
        assert "global.service" in h.running_on(mid)


def test_schedule_global_conflicts(mode: Mode) -> None:
    """TestScheduleGlobalConflicts: of two conflicting global units the first by name wins."""
    h = Harness(3, mode=mode)
    for i in (1, 2):
        h.start(f"conflict-global.{i}.service",
                service("Global=true\nConflicts=conflict-global.*.service"))
    h.settle()
    assert h.hosts("conflict-global.1.service") == set(h.machines)
    assert h.hosts("conflict-global.2.service") == set()
    assert h.active_count() == 3


def test_global_units_count_toward_load_and_block_conflicting_units(mode: Mode) -> None:
    h = Harness(2, mode=mode)
    m0, m1 = sorted(h.machines)
    h.set_metadata(m0, role="edge")
    h.start("edge-agent.service", service("Global=true\nMachineMetadata=role=edge\n"
                                          "Conflicts=batch*"))
    h.start("a.service")
    h.start("batch.service")
    h.settle()
    # m0 runs the global unit, so it is the more loaded one; batch may not go there anyway
    assert h.where("a.service") == m1
    assert h.where("batch.service") == m1
    h.start("b.service")
    h.settle()
    assert h.where("b.service") == m0  # loads: m0 = 1 (global), m1 = 2
    h.start("batch-2.service")
    h.settle()
    assert h.where("batch-2.service") == m1


def test_global_unit_does_not_evict_a_conflicting_scheduled_unit(mode: Mode) -> None:
    h = Harness(1, mode=mode)
    mid = machine_id(0)
    h.start("web.service")
    h.settle()
    h.start("a-global.service", service("Global=true\nConflicts=web.service"))
    h.settle()
    assert h.where("web.service") == mid
    assert h.hosts("a-global.service") == set()
    h.stop("web.service")
    h.unload("web.service")
    h.settle()
    assert h.hosts("a-global.service") == {mid}
    h.start("web.service")
    h.settle()
    assert h.where("web.service") is None
    assert h.reasons["web.service"] == {mid: f"conflicts with a-global.service on {mid[:8]}"}


def test_templates_with_specifiers_in_metadata(mode: Mode) -> None:
    """TestTemplatesWithSpecifiersInMetadata: MachineMetadata=hostname=%i, one unsatisfiable."""
    h = Harness(mode=mode)
    for i in range(3):
        h.add_machine(machine_id(i), hostname=f"smoke{i}")
    template = service("MachineMetadata=hostname=%i")
    for i in range(3):
        h.start(f"metadata@smoke{i}.service", template)
    h.start("metadata@invalid.service", template)
    h.settle()
    for i in range(3):
        assert h.where(f"metadata@smoke{i}.service") == machine_id(i)
    assert h.where("metadata@invalid.service") is None
    assert h.reasons["metadata@invalid.service"] == {
        machine_id(i): f"metadata hostname=invalid not on {machine_id(i)[:8]} "
                       f"(it has hostname=smoke{i})" for i in range(3)}


def test_dynamic_cluster_new_member_unit_migration(mode: Mode) -> None:
    """TestDynamicClusterNewMemberUnitMigration: 4 nodes, 3 conflicting units, one host
    stops: its unit moves to the free node and no other unit moves."""
    h = Harness(4, mode=mode)
    for i in range(3):
        h.start(f"conflict.{i}.service", service("Conflicts=conflict.*.service"))
    h.settle()
    before = dict(h.schedule)
    free = (set(h.machines) - set(before.values())).pop()
    victim = before["conflict.1.service"]
    h.remove_machine(victim)
    plan = h.reconcile()
    assert plan.moved == {"conflict.1.service"}
    assert h.schedule == {**before, "conflict.1.service": free}


def test_dynamic_cluster_member_reboot(mode: Mode) -> None:
    """TestDynamicClusterMemberReboot: re-creating one of 3 members migrates exactly one of
    3 conflicting units (it is unplaced while the member is gone)."""
    h = Harness(3, mode=mode)
    for i in range(3):
        h.start(f"conflict.{i}.service", service("Conflicts=conflict.*.service"))
    h.settle()
    before = dict(h.schedule)
    gone = before["conflict.0.service"]
    h.remove_machine(gone)
    h.settle()
    assert "conflict.0.service" not in h.schedule
    assert set(h.reasons["conflict.0.service"]) == set(h.machines)
    h.add_machine(gone)
    plan = h.reconcile()
    assert plan.schedules == [Schedule("conflict.0.service", gone,
                                       "target state launched and unit not scheduled")]
    assert h.schedule == before


def test_node_shutdown_reschedules_at_once(mode: Mode) -> None:
    """TestNodeShutdown: the machine key goes, units move in the same pass."""
    h = Harness(2, mode=mode)
    h.start("hello.service")
    h.settle()
    old = h.where("hello.service")
    assert old is not None
    h.remove_machine(old)
    plan = h.reconcile()
    assert [type(s) for s in plan.steps] == [Unschedule, Schedule]
    assert h.where("hello.service") not in (None, old)


# ---------------------------------------------------------------- reconcile rules

def test_least_loaded_then_machine_id_order() -> None:
    h = Harness(3)
    ids = sorted(h.machines)
    for n in "abcdefg":
        h.start(f"{n}.service")
    h.settle()
    assert [h.where(f"{n}.service") for n in "abcdefg"] == [
        ids[0], ids[1], ids[2], ids[0], ids[1], ids[2], ids[0]]


def test_inactive_units_are_unscheduled_and_not_placed(mode: Mode) -> None:
    h = Harness(1, mode=mode)
    mid = machine_id(0)
    h.submit("a.service")
    assert h.reconcile().steps == []
    h.set_desired("a.service", "loaded")
    assert h.reconcile().schedules == [
        Schedule("a.service", mid, "target state loaded and unit not scheduled")]
    h.set_desired("a.service", "launched")
    assert h.reconcile().steps == []  # loaded → launched: the agent's business
    h.unload("a.service")
    assert h.reconcile().steps == [Unschedule("a.service", mid, "target state inactive")]


def test_no_machines(mode: Mode) -> None:
    h = Harness(0, mode=mode)
    h.start("a.service")
    h.reconcile()
    assert h.reasons == {"a.service": {"": NO_MACHINES}}
    h.add_machine(machine_id(0))
    h.reconcile()
    assert h.where("a.service") == machine_id(0)


def test_templates_are_never_placed(mode: Mode) -> None:
    h = Harness(1, mode=mode)
    h.start("web@.service")
    h.reconcile()
    assert h.schedule == {}
    assert "template" in h.reasons["web@.service"][""]


def test_stale_schedule_entries_are_cleaned() -> None:
    m = Machine(machine_id(0))
    view = ClusterView.of([m], [Unit.make("g.service", global_=True),
                                Unit.make("t@.service"), Unit.make("ok.service")],
                          {"gone.service": m.id, "g.service": m.id, "t@.service": m.id,
                           "ok.service": "feedface" + "0" * 24})
    plan = reconcile(view)
    assert {(s.unit, s.reason.split(" (")[0]) for s in plan.unschedules} == {
        ("gone.service", "unit was destroyed"),
        ("g.service", "global units are not scheduled by the engine"),
        ("t@.service", "templates are never placed; start an instance instead"),
        ("ok.service", "machine feedface went away")}
    assert plan.schedules == [Schedule("ok.service", m.id,
                                       "target state launched and unit not scheduled")]


def test_metadata_change_unschedules_and_moves(mode: Mode) -> None:
    h = Harness(mode=mode)
    eu = h.add_machine(machine_id(0), region="eu")
    us = h.add_machine(machine_id(1), region="us")
    h.start("db.service", service('MachineMetadata="region=eu" "region=asia"'))
    h.start("side.service", service("MachineOf=db.service"))
    h.settle()
    assert h.where("db.service") == eu == h.where("side.service")
    h.set_metadata(eu, region="us")
    h.set_metadata(us, region="asia")
    plan = h.reconcile()
    assert plan.unschedules == [
        Unschedule("db.service", eu, f"metadata region=eu or region=asia not on {eu[:8]} "
                                     "(it has region=us)"),
        Unschedule("side.service", eu, f"MachineOf peer db.service is not scheduled on "
                                       f"{eu[:8]} (it is not scheduled anywhere)")]
    assert h.where("db.service") == us == h.where("side.service")


def test_conflict_between_two_scheduled_units_keeps_one(mode: Mode) -> None:
    m = machine_id(0)
    view = ClusterView.of([Machine(m)], [Unit.make("a.service", conflicts=["b.service"]),
                                         Unit.make("b.service")],
                          {"a.service": m, "b.service": m})
    plan = reconcile(view)
    assert plan.unschedules == [Unschedule("a.service", m, f"conflicts with b.service on "
                                                           f"{m[:8]}")]


def test_machine_of_cycle_is_reported(mode: Mode) -> None:
    h = Harness(2, mode=mode)
    h.start("a.service", service("MachineOf=b.service"))
    h.start("b.service", service("MachineOf=a.service"))
    h.settle()
    assert h.schedule == {}
    for n in ("a.service", "b.service"):
        assert "MachineOf cycle" in h.reasons[n][""]


def test_machine_of_global_peer() -> None:
    h = Harness(2)
    _m0, m1 = sorted(h.machines)
    h.set_metadata(m1, role="lb")
    h.start("lb.service", service("Global=true\nMachineMetadata=role=lb"))
    h.start("lb-side.service", service("MachineOf=lb.service"))
    h.settle()
    assert h.where("lb-side.service") == m1


def test_explain_limit() -> None:
    h = Harness(5, explain_limit=2)
    h.start("pin.service", service("MachineID=nowhere"))
    h.reconcile()
    reasons = h.reasons["pin.service"]
    assert len(reasons) == 3
    assert reasons[""] == "no machine of 5 can take it; reasons for 3 more machines are not " \
                          "listed"


def test_determinism_independent_of_input_order() -> None:
    rng = random.Random(7)
    machines = [Machine(machine_id(i), {"r": "ab"[i % 2]}) for i in range(6)]
    units = [Unit.make(f"web@{i}.service", conflicts=["web@*.service"]) for i in range(8)]
    units += [Unit.make(f"side@{i}.service", machine_of=[f"web@{i}.service"]) for i in range(8)]
    units += [Unit.make(f"r{i}.service", metadata={"r": ["a"]}) for i in range(5)]
    plans = []
    for _ in range(5):
        rng.shuffle(machines)
        rng.shuffle(units)
        plans.append(reconcile(ClusterView.of(machines, units)))
    assert all(p.steps == plans[0].steps and p.unplaced == plans[0].unplaced for p in plans)


def test_incremental_pass_only_looks_at_changes() -> None:
    s = Scheduler(ClusterView.of([Machine(machine_id(i)) for i in range(3)],
                                 [Unit.make(f"u{i}.service") for i in range(9)]))
    first = s.reconcile()
    assert len(first.schedules) == 9 and len(first.evaluated) == 9
    assert s.reconcile().evaluated == set()
    s.set_unit(Unit.make("new.service"))
    plan = s.reconcile()
    assert plan.evaluated == {"new.service"}
    assert plan.schedules == [Schedule("new.service", machine_id(0),
                                       "target state launched and unit not scheduled")]


def test_echo_of_own_write_is_a_no_op() -> None:
    s = Scheduler(ClusterView.of([Machine(machine_id(0))], [Unit.make("a.service")]))
    plan = s.reconcile()
    for step in plan.schedules:
        s.set_target(step.unit, step.machine)
    assert s.reconcile().steps == []


def test_lost_write_is_repaired() -> None:
    """Another writer changed the schedule behind our back: the next pass fixes it."""
    m0, m1 = machine_id(0), machine_id(1)
    s = Scheduler(ClusterView.of([Machine(m0), Machine(m1)],
                                 [Unit.make("a.service", conflicts=["b.service"]),
                                  Unit.make("b.service")]))
    s.reconcile()
    assert s.schedule == {"a.service": m0, "b.service": m1}
    s.set_target("b.service", m0)
    plan = s.reconcile()
    assert plan.unschedules == [Unschedule("a.service", m0,
                                           f"conflicts with b.service on {m0[:8]}")]
    assert plan.schedules == [Schedule("a.service", m1,
                                       "target state launched and unit not scheduled")]


def test_incremental_reasons_change_only_where_room_appeared() -> None:
    """9 units for 3 slots: freeing one machine re-explains only that machine."""
    ms = [Machine(machine_id(i)) for i in range(3)]
    s = Scheduler(ClusterView.of(ms, [Unit.make(f"web@{i}.service", conflicts=["web@*.service"])
                                      for i in range(9)]))
    first = s.reconcile()
    assert len(first.schedules) == 3 and len(first.unplaced) == 6
    # web@0 leaves: web@3 takes its machine; the other waiting units now name web@3 there
    s.set_unit(Unit.make("web@0.service", desired="inactive", conflicts=["web@*.service"]))
    plan = s.reconcile()
    m0 = machine_id(0)
    assert plan.unschedules == [Unschedule("web@0.service", m0, "target state inactive")]
    assert plan.schedules == [Schedule("web@3.service", m0,
                                       "target state launched and unit not scheduled")]
    assert set(plan.unplaced) == {f"web@{i}.service" for i in range(4, 9)}
    for name, reasons in plan.unplaced.items():
        assert reasons[m0] == f"conflicts with web@3.service on {m0[:8]}"
        assert {m: r for m, r in reasons.items() if m != m0} == {
            m: r for m, r in first.unplaced[name].items() if m != m0}
    # nothing changed: nothing re-evaluated
    idle = s.reconcile()
    assert idle.unplaced == {} and idle.evaluated == set()


def test_a_unit_is_placed_at_most_once_per_pass() -> None:
    """A configuration fleet's API rejects (global units with MachineOf=) that would chase
    c.service round forever: c follows the global x, the global a follows c, and a (first
    by name) pushes x out when it arrives.  The pass ends; c waits for the next one."""
    m = Machine(machine_id(0))
    units = [Unit.make("c.service", machine_of=["x-global.service"]),
             Unit.make("a-global.service", global_=True, machine_of=["c.service"],
                       conflicts=["x-global.service"]),
             Unit.make("x-global.service", global_=True)]
    plan = reconcile(ClusterView.of([m], units))
    assert [(type(s).__name__, s.unit) for s in plan.steps] == [
        ("Schedule", "c.service"), ("Unschedule", "c.service")]
    assert "moved twice in one pass" in plan.unplaced["c.service"][""]


def test_full_pass_speed_smoke() -> None:
    """Guard against an accidental O(n^2): 4,000 units on 400 machines in well under 5 s."""
    ms = [Machine(machine_id(i), {"region": "ab"[i % 2]}) for i in range(400)]
    us = [Unit.make(f"app{t}@{i}.service", conflicts=[f"app{t}@*.service"])
          for t in range(20) for i in range(100)]
    us += [Unit.make(f"side{t}@{i}.service", machine_of=[f"app{t}@{i}.service"])
           for t in range(10) for i in range(100)]
    us += [Unit.make(f"r{i}.service", metadata={"region": ["a"]}) for i in range(1000)]
    t0 = time.perf_counter()
    plan = reconcile(ClusterView.of(ms, us))
    elapsed = time.perf_counter() - t0
    assert len(plan.schedules) == 4000
    assert elapsed < 5.0, f"full pass took {elapsed:.2f}s"
