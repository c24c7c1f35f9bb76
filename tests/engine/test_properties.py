"""Scheduler invariants over random clusters (hypothesis).

* after a pass, no two conflicting units share a machine and every placed
  unit passes the reference ``able_to_run`` (rules.py) where it is;
* a second full pass changes nothing (without Replaces=, which may move a
  unit once more, as documented);
* the indexed scheduler reaches exactly the reference's Decision, reason
  included, for every (machine, unit) pair;
* the plan does not depend on input order;
* an incremental scheduler fed random changes never misses work a full
  pass would do (checked by the harness after every pass).
"""

from __future__ import annotations

import os
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.harness import Harness
from flotte.engine.glob import glob_match
from flotte.engine.keyspace import DesiredState
from flotte.engine.model import Action, ClusterView, Machine, Unit
from flotte.engine.rules import able_to_run, global_units_for, residents
from flotte.engine.scheduler import Scheduler, reconcile

NAMES = ["a.service", "b.service", "c.service", "db.service", "web@1.service",
         "web@2.service", "web@3.service", "side@1.service", "side@2.service",
         "g1.service", "g2.service", "web@.service"]
GLOBS = ["web@*.service", "a.service", "b*", "*", "db.service", "side@?.service", "[",
         "g*.service", "web@[^1].service", "c.service"]
# two machines share a short ID, so MachineID=aaaaaaaa matches both (fleet's MatchID)
MACHINE_IDS = ["aaaaaaaa" + "0" * 24, "aaaaaaaa" + "1" * 24, "bbbbbbbb" + "2" * 24,
               "cccccccc" + "3" * 24, "dddddddd" + "4" * 24]
META = st.dictionaries(st.sampled_from(["region", "disk"]), st.sampled_from(["eu", "us", "ssd"]),
                       max_size=2)
DESIRED: list[DesiredState] = ["inactive", "loaded", "launched", "launched"]


@st.composite
def units(draw: st.DrawFn, name: str, *, replaces: bool = True) -> Unit:
    few = st.lists(st.sampled_from(GLOBS), max_size=2)
    return Unit.make(
        name,
        desired=draw(st.sampled_from(DESIRED)),
        machine_id=draw(st.one_of(st.none(), st.none(), st.none(),
                                  st.sampled_from([*MACHINE_IDS, "aaaaaaaa", "nowhere"]))),
        machine_of=draw(st.lists(st.sampled_from(NAMES), max_size=1)),
        metadata=draw(st.dictionaries(st.sampled_from(["region", "disk"]),
                                      st.lists(st.sampled_from(["eu", "us", "ssd"]),
                                               min_size=1, max_size=2), max_size=1)),
        conflicts=draw(few),
        replaces=draw(few) if replaces else (),
        global_=draw(st.sampled_from([False, False, False, False, True])))


def fleet_accepts(u: Unit) -> bool:
    """fleet's API validation (fleet.md §2.5): the combinations it rejected with 400."""
    xf = u.xfleet
    if xf.machine_id and (xf.machine_of or xf.conflicts or xf.global_ or xf.replaces):
        return False
    if xf.global_ and (xf.machine_of or xf.replaces):
        return False
    if xf.conflicts and xf.replaces:
        return False
    return not any(glob_match(p, peer) for peer in xf.machine_of
                   for p in (*xf.conflicts, *xf.replaces))


@st.composite
def valid_units(draw: st.DrawFn, name: str, *, replaces: bool = True) -> Unit:
    return draw(units(name, replaces=replaces).filter(fleet_accepts))


@st.composite
def views(draw: st.DrawFn, *, replaces: bool = True, valid: bool = False) -> ClusterView:
    """Random clusters; ``valid`` keeps to units fleet's API accepts (else anything goes:
    the scheduler must stay correct and terminate on whatever the registry holds)."""
    mids = draw(st.lists(st.sampled_from(MACHINE_IDS), unique=True, max_size=5))
    machines = [Machine(m, draw(META)) for m in mids]
    names = draw(st.lists(st.sampled_from(NAMES), unique=True, max_size=len(NAMES)))
    make = valid_units if valid else units
    us = [draw(make(n, replaces=replaces)) for n in names]
    schedule = {}
    for n in names:
        target = draw(st.one_of(st.none(), st.sampled_from([*MACHINE_IDS, "gone"])))
        if target is not None:
            schedule[n] = target
    return ClusterView.of(machines, us, schedule)


def check_invariants(view: ClusterView) -> None:
    for name, mid in view.schedule.items():
        assert view.placed_target(name) == mid, f"stale entry {name} → {mid}"
    for mid in view.machines:
        here = residents(mid, view)
        for name in here:
            u = view.units[name]
            if not u.is_global:
                d = able_to_run(mid, u, view)
                assert d.action is Action.RUN, (name, mid, d)
            for other in here - {name}:
                assert not any(glob_match(p, other) for p in u.xfleet.conflicts), (name, other)


# FLOTTE_ENGINE_EXAMPLES=5000 for a deep local run; CI keeps the default (derandomized).
EXAMPLES = int(os.environ.get("FLOTTE_ENGINE_EXAMPLES", "300"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(views())
def test_plan_leaves_a_valid_schedule(view: ClusterView) -> None:
    plan = reconcile(view)
    after = view.replace(schedule=plan.apply(view.schedule))
    check_invariants(after)
    for name in plan.unplaced:
        assert name not in after.schedule
        assert view.units[name].wants_placement or view.units[name].is_template


@SETTINGS
@given(views(replaces=False, valid=True))
def test_second_pass_is_a_no_op(view: ClusterView) -> None:
    plan = reconcile(view)
    after = view.replace(schedule=plan.apply(view.schedule))
    again = reconcile(after)
    assert again.steps == []
    assert again.unplaced == {n: r for n, r in plan.unplaced.items()}


@SETTINGS
@given(views())
def test_replaces_settles(view: ClusterView) -> None:
    for _ in range(4):
        plan = reconcile(view)
        view = view.replace(schedule=plan.apply(view.schedule))
        check_invariants(view)
        if not plan.steps:
            break


@SETTINGS
@given(views())
def test_indexes_agree_with_the_reference_rules(view: ClusterView) -> None:
    s = Scheduler(view)
    s.reconcile()
    after = s.view()
    for mid in after.machines:
        assert s.residents(mid) == residents(mid, after)
        assert s.load_of(mid) == len(residents(mid, after))
        for name, u in after.units.items():
            assert s.able_to_run(mid, name) == able_to_run(mid, u, after), (mid, name)


@SETTINGS
@given(views(), st.randoms(use_true_random=False))
def test_deterministic_whatever_the_input_order(view: ClusterView, rnd: random.Random) -> None:
    ms = list(view.machines.values())
    us = list(view.units.values())
    sched = list(view.schedule.items())
    rnd.shuffle(ms)
    rnd.shuffle(us)
    rnd.shuffle(sched)
    a = reconcile(view)
    b = reconcile(ClusterView.of(ms, us, dict(sched)))
    assert a.steps == b.steps
    assert a.unplaced == b.unplaced


@SETTINGS
@given(views())
def test_global_units_for_matches_scheduler(view: ClusterView) -> None:
    s = Scheduler(view)
    s.reconcile()
    after = s.view()
    for mid in after.machines:
        gs = global_units_for(mid, after)
        assert gs == sorted(gs)
        for g in gs:
            assert able_to_run(mid, after.units[g], after).action is Action.RUN


# ---------------------------------------------------------------- incremental vs full

CHANGES = st.one_of(
    st.tuples(st.just("add_machine"), st.sampled_from(MACHINE_IDS), META),
    st.tuples(st.just("remove_machine"), st.sampled_from(MACHINE_IDS)),
    st.tuples(st.just("set_desired"), st.sampled_from(NAMES), st.sampled_from(DESIRED)),
    st.tuples(st.just("destroy"), st.sampled_from(NAMES)),
    st.tuples(st.just("put"), st.sampled_from(NAMES)),
)


@settings(max_examples=max(1, EXAMPLES * 2 // 3), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(views(replaces=False, valid=True), st.lists(CHANGES, max_size=8), st.data())
def test_incremental_never_misses_work(view: ClusterView, changes: list[tuple[object, ...]],
                                       data: st.DataObject) -> None:
    h = Harness(mode="incremental")
    for m in view.machines.values():
        h.add_machine(m)
    for u in view.units.values():
        h.put(u)
    h.reconcile()
    for change in changes:
        kind = change[0]
        if kind == "add_machine":
            mid, meta = change[1], change[2]
            assert isinstance(mid, str) and isinstance(meta, dict)
            h.add_machine(Machine(mid, meta))
        elif kind == "remove_machine":
            if change[1] in h.machines:
                h.remove_machine(str(change[1]))
        elif kind == "set_desired":
            if change[1] in h.units:
                h.set_desired(str(change[1]), change[2])  # type: ignore[arg-type]
        elif kind == "destroy":
            if change[1] in h.units:
                h.destroy(str(change[1]))
        elif kind == "put":
            h.put(data.draw(valid_units(str(change[1]), replaces=False)))
        h.reconcile()  # the harness checks it against a full pass
