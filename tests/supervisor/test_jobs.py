"""systemd's job engine in small: transactions, ordering, cycles, propagation."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flotte.supervisor.deps import DependencyGraph, HostUnits, Relation
from flotte.supervisor.jobs import (
    JobMode,
    JobResult,
    JobType,
    Request,
    Transaction,
    TransactionError,
    TransactionRun,
    build_transaction,
    collapse,
    is_conflicting,
    is_redundant,
    merge_types,
    on_unit_active,
    on_unit_removed,
    on_unit_restarted,
    on_unit_stopped,
    unneeded,
    verify_result,
)
from flotte.unit import load_text
from flotte.unit.loader import Unit

J = JobType
SEED = Path(__file__).resolve().parents[2] / "examples" / "seed"
APACHE = "apache@8080.service"
SECRETARY = "apache-secretary@8080.service"


def unit(name: str, deps: str = "", service: str = "", install: str = "") -> Unit:
    text = f"[Unit]\n{deps}\n[Service]\nExecStart=/bin/true\n{service}\n"
    if install:
        text += f"[Install]\n{install}\n"
    u = load_text(text, name)
    assert u.ok, u.diagnostics
    return u


def graph(*units: Unit, host: HostUnits | None = None) -> DependencyGraph:
    return DependencyGraph(units, host=host)


def seed_graph(chapter: str = "ch10", port: str = "8080") -> DependencyGraph:
    units = [load_text((SEED / chapter / t).read_text(), t.replace("@.", f"@{port}."))
             for t in ("apache@.service", "apache-secretary@.service")]
    return DependencyGraph(units)


def ids(tx: Transaction) -> list[str]:
    return tx.order


def waves(tx: Transaction) -> list[list[str]]:
    return [[s.id for s in w] for w in tx.waves()]


def reqs(requests: list[Request]) -> list[tuple[str, str, str]]:
    return [(r.unit, r.type.value, r.mode.value) for r in requests]


BOTH_UP = {APACHE: "active", SECRETARY: "active"}


# -- job type algebra ---------------------------------------------------------------------


def test_merge_table() -> None:
    assert merge_types(J.START, J.VERIFY_ACTIVE) is J.START
    assert merge_types(J.RELOAD, J.START) is J.RELOAD_OR_START
    assert merge_types(J.RELOAD, J.VERIFY_ACTIVE) is J.RELOAD
    assert merge_types(J.RESTART, J.START) is J.RESTART
    assert merge_types(J.RESTART, J.VERIFY_ACTIVE) is J.RESTART
    assert merge_types(J.RESTART, J.RELOAD) is J.RESTART
    for t in (J.START, J.VERIFY_ACTIVE, J.RELOAD, J.RESTART):
        assert merge_types(t, J.STOP) is None
        assert merge_types(J.STOP, t) is None
        assert merge_types(t, t) is t
        assert is_conflicting(t, J.STOP) and is_conflicting("stop", t.value)
    assert not is_conflicting(J.START, J.RESTART)
    assert not is_conflicting(J.NOP, J.STOP)


def test_collapse_and_redundancy() -> None:
    assert collapse(J.TRY_RESTART, "active") is J.RESTART
    assert collapse(J.TRY_RESTART, "activating") is J.RESTART
    assert collapse(J.TRY_RESTART, "inactive") is J.NOP
    assert collapse(J.TRY_RESTART, "failed") is J.NOP
    assert collapse(J.TRY_RELOAD, "active") is J.RELOAD
    assert collapse(J.TRY_RELOAD, "activating") is J.NOP
    assert collapse(J.RELOAD_OR_START, "inactive") is J.START
    assert collapse(J.RELOAD_OR_START, "active") is J.RELOAD
    assert collapse(J.START, "inactive") is J.START
    assert is_redundant(J.START, "active") and not is_redundant(J.START, "activating")
    assert is_redundant(J.STOP, "failed") and not is_redundant(J.STOP, "deactivating")
    assert is_redundant(J.VERIFY_ACTIVE, "reloading")
    assert not is_redundant(J.RESTART, "activating")  # never dropped
    assert is_redundant(J.RELOAD, "reloading") and not is_redundant(J.RELOAD, "active")


def test_verify_results() -> None:
    assert verify_result("active") is JobResult.DONE
    assert verify_result("reloading") is JobResult.DONE
    assert verify_result("activating") is None
    assert verify_result("inactive") is JobResult.SKIPPED
    assert verify_result("failed") is JobResult.SKIPPED


# -- the seed pair (ch10: apache Requires+Before its secretary, which BindsTo+After it) ----


def test_seed_start_apache_starts_it_then_its_secretary() -> None:
    tx = build_transaction(seed_graph(), APACHE, "start")
    assert waves(tx) == [[f"{APACHE}/start"], [f"{SECRETARY}/start"]]
    assert tx.anchor.unit == APACHE and tx.anchor.describe() == "requested"
    sec = tx.jobs[SECRETARY]
    assert sec.required and sec.after == {APACHE}
    assert sec.describe() == (f"start of {APACHE}: {APACHE} has Requires={SECRETARY}")
    # etcd.service and docker.service are host units, assumed up: no job for them
    assert set(tx.jobs) == {APACHE, SECRETARY}


def test_seed_start_secretary_pulls_apache_in_first() -> None:
    for chapter in ("ch09", "ch10"):
        tx = build_transaction(seed_graph(chapter), SECRETARY, "start")
        assert ids(tx) == [f"{APACHE}/start", f"{SECRETARY}/start"]


def test_seed_stop_apache_stops_the_secretary_first() -> None:
    for chapter in ("ch09", "ch10"):
        tx = build_transaction(seed_graph(chapter), APACHE, "stop", active=BOTH_UP)
        assert waves(tx) == [[f"{SECRETARY}/stop"], [f"{APACHE}/stop"]]
        assert tx.jobs[SECRETARY].reasons[0].relation == "RequiredBy"
        assert "propagates" in tx.jobs[SECRETARY].describe()


def test_seed_apache_crash_stops_the_secretary() -> None:
    g = seed_graph()
    act = {APACHE: "failed", SECRETARY: "active"}
    out = on_unit_stopped(g, APACHE, "signal", act)
    assert reqs(out) == [(SECRETARY, "stop", "replace")]
    assert "BindsTo=" in out[0].reason
    # a clean exit of apache (Type=simple main process ended) binds just the same
    assert reqs(on_unit_stopped(g, APACHE, "success", {SECRETARY: "active"})) == [
        (SECRETARY, "stop", "replace")]
    # nothing to do when the secretary is already down
    assert on_unit_stopped(g, APACHE, "signal", {SECRETARY: "inactive"}) == []


def test_seed_restart_apache_restarts_the_secretary() -> None:
    tx = build_transaction(seed_graph(), APACHE, "restart", active=BOTH_UP)
    assert tx.jobs[APACHE].type is J.RESTART
    assert tx.jobs[SECRETARY].type is J.RESTART
    # stops in reverse order, then starts in order (job_compare)
    assert waves(tx) == [[f"{SECRETARY}/stop"], [f"{APACHE}/stop"], [f"{APACHE}/start"],
                         [f"{SECRETARY}/start"]]


def test_seed_restart_apache_with_secretary_down_leaves_it_down_but_starts_it_as_required() -> None:
    # try-restart collapses to nothing, but apache's Requires= still pulls a start in
    tx = build_transaction(seed_graph(), APACHE, "restart",
                           active={APACHE: "active", SECRETARY: "inactive"})
    assert ids(tx) == [f"{APACHE}/stop", f"{APACHE}/start", f"{SECRETARY}/start"]
    # ch09's apache does not require its secretary: it stays down
    tx = build_transaction(seed_graph("ch09"), APACHE, "restart",
                           active={APACHE: "active", SECRETARY: "inactive"})
    assert ids(tx) == [f"{APACHE}/stop", f"{APACHE}/start"]


def test_seed_automatic_restart_restarts_the_secretary_but_not_apache_again() -> None:
    g = seed_graph()
    act = {APACHE: "activating", SECRETARY: "active"}
    (req,) = on_unit_restarted(g, APACHE, act)
    assert (req.unit, req.type, req.mode) == (APACHE, J.START, JobMode.RESTART_DEPENDENCIES)
    tx = build_transaction(g, req.unit, req.type, req.mode, act)
    assert tx.jobs[APACHE].type is J.START
    assert waves(tx) == [[f"{SECRETARY}/stop"], [f"{APACHE}/start"], [f"{SECRETARY}/start"]]
    # the crash that led there did not stop the secretary: it is restarted instead
    assert on_unit_stopped(g, APACHE, "signal", act, will_restart=True) == []
    assert on_unit_restarted(g, APACHE, {SECRETARY: "inactive"}) == []


# -- pulling jobs in -------------------------------------------------------------------------


def test_requires_pulls_in_a_start_without_ordering() -> None:
    tx = build_transaction(graph(unit("a.service", "Requires=b.service"), unit("b.service")),
                           "a.service", "start")
    assert waves(tx) == [["a.service/start", "b.service/start"]]  # parallel
    assert tx.jobs["b.service"].required


def test_wants_pulls_in_a_start_that_does_not_matter() -> None:
    tx = build_transaction(graph(unit("a.service", "Wants=b.service\nAfter=b.service"),
                                 unit("b.service")), "a.service", "start")
    assert waves(tx) == [["b.service/start"], ["a.service/start"]]
    assert not tx.jobs["b.service"].required


def test_wants_on_an_unknown_unit_is_ignored() -> None:
    tx = build_transaction(graph(unit("a.service", "Wants=ghost.service")), "a.service", "start")
    assert ids(tx) == ["a.service/start"]
    assert any("ghost.service not found" in n for n in tx.notes)


def test_requires_on_an_unknown_unit_fails_naming_it() -> None:
    g = graph(unit("a.service", "Requires=b.service"), unit("b.service", "BindsTo=nope.service"))
    with pytest.raises(TransactionError) as info:
        build_transaction(g, "a.service", "start")
    e = info.value
    assert e.code == "not-found" and e.units == ("nope.service",)
    assert e.message == "Unit nope.service not found."
    assert e.path == [("a.service", "Requires"), ("b.service", "BindsTo")]
    assert "a.service Requires= b.service BindsTo= nope.service" in str(e)
    assert "host units" in str(e)
    # the same for Requisite=
    with pytest.raises(TransactionError, match=r"Unit nope\.service not found"):
        build_transaction(graph(unit("c.service", "Requisite=nope.service")), "c.service",
                          "start")


@pytest.mark.parametrize(("text", "message"), [
    ("", "Unit b.service is masked."),
    ("[Service]\nType=simple\n", "Unit b.service has a bad unit file setting."),
])
def test_requires_on_a_broken_unit_fails(text: str, message: str) -> None:
    g = graph(unit("a.service", "Requires=b.service"), load_text(text, "b.service"))
    with pytest.raises(TransactionError) as info:
        build_transaction(g, "a.service", "start")
    assert info.value.message == message and info.value.code == "load-failed"
    # stopping it is fine: stop jobs do not need a loaded unit
    build_transaction(g, "b.service", "stop", active={"b.service": "active"})


def test_wants_pulled_unit_that_cannot_start_is_dropped_whole() -> None:
    g = graph(unit("a.service", "Wants=b.service"),
              unit("b.service", "Requires=c.service nope.service"), unit("c.service"))
    tx = build_transaction(g, "a.service", "start")
    assert ids(tx) == ["a.service/start"]  # neither b nor what it pulled in (c)
    assert any("Cannot add dependency job for b.service" in n for n in tx.notes)


def test_requisite_verifies_instead_of_starting() -> None:
    g = graph(unit("a.service", "Requisite=b.service\nAfter=b.service"), unit("b.service"))
    tx = build_transaction(g, "a.service", "start")
    assert waves(tx) == [["b.service/verify-active"], ["a.service/start"]]
    # already active: nothing to verify
    tx = build_transaction(g, "a.service", "start", active={"b.service": "active"})
    assert ids(tx) == ["a.service/start"]


def test_requisite_plus_wants_merges_into_a_start() -> None:
    g = graph(unit("a.service", "Requisite=b.service\nWants=b.service"), unit("b.service"))
    tx = build_transaction(g, "a.service", "start")
    assert tx.jobs["b.service"].type is J.START and tx.jobs["b.service"].required


def test_bindsto_pulls_in_like_requires() -> None:
    tx = build_transaction(graph(unit("a.service", "BindsTo=b.service\nAfter=b.service"),
                                 unit("b.service")), "a.service", "start")
    assert ids(tx) == ["b.service/start", "a.service/start"]


def test_partof_does_not_pull_in_but_carries_stop_and_restart() -> None:
    g = graph(unit("a.service", "PartOf=b.service"), unit("b.service"))
    assert ids(build_transaction(g, "a.service", "start")) == ["a.service/start"]
    up = {"a.service": "active", "b.service": "active"}
    assert ids(build_transaction(g, "b.service", "stop", active=up)) == [
        "a.service/stop", "b.service/stop"]
    tx = build_transaction(g, "b.service", "restart", active=up)
    assert tx.jobs["a.service"].type is J.RESTART
    # one way: stopping a does not stop b
    assert ids(build_transaction(g, "a.service", "stop", active=up)) == ["a.service/stop"]
    # try-restart only restarts what runs
    tx = build_transaction(g, "b.service", "restart", active={"b.service": "active"})
    assert ids(tx) == ["b.service/stop", "b.service/start"]


def test_requires_carries_stop_and_restart_but_not_a_crash() -> None:
    g = graph(unit("a.service", "Requires=b.service\nAfter=b.service"), unit("b.service"))
    up = {"a.service": "active", "b.service": "active"}
    assert ids(build_transaction(g, "b.service", "stop", active=up)) == [
        "a.service/stop", "b.service/stop"]
    assert waves(build_transaction(g, "b.service", "restart", active=up)) == [
        ["a.service/stop"], ["b.service/stop"], ["b.service/start"], ["a.service/start"]]
    assert on_unit_stopped(g, "b.service", "exit-code", {"a.service": "active"}) == []


def test_wants_carries_nothing_back() -> None:
    g = graph(unit("a.service", "Wants=b.service"), unit("b.service"))
    up = {"a.service": "active", "b.service": "active"}
    assert ids(build_transaction(g, "b.service", "stop", active=up)) == ["b.service/stop"]
    assert ids(build_transaction(g, "b.service", "restart", active=up)) == [
        "b.service/stop", "b.service/start"]


def test_propagates_stop_to() -> None:
    g = graph(unit("a.service", "PropagatesStopTo=b.service"), unit("b.service"))
    up = {"a.service": "active", "b.service": "active"}
    assert set(ids(build_transaction(g, "a.service", "stop", active=up))) == {
        "a.service/stop", "b.service/stop"}
    assert ids(build_transaction(g, "a.service", "start")) == ["a.service/start"]


def test_reload_propagates_and_needs_exec_reload() -> None:
    g = graph(unit("a.service", "PropagatesReloadTo=b.service c.service",
                   service="ExecReload=/bin/true"),
              unit("b.service", service="ExecReload=/bin/true"), unit("c.service"))
    tx = build_transaction(g, "a.service", "reload",
                           active={"a.service": "active", "b.service": "active",
                                   "c.service": "active"})
    assert ids(tx) == ["a.service/reload", "b.service/reload"]
    assert any("not applicable for unit c.service" in n for n in tx.notes)
    with pytest.raises(TransactionError, match="Job type reload is not applicable"):
        build_transaction(g, "c.service", "reload", active={"c.service": "active"})


def test_try_restart_of_an_inactive_unit_is_a_nop() -> None:
    g = graph(unit("a.service"))
    tx = build_transaction(g, "a.service", "try-restart")
    assert tx.anchor.type is J.NOP and tx.steps == ()
    run = TransactionRun(tx, g)
    assert run.finished and run.result is JobResult.DONE
    tx = build_transaction(g, "a.service", "try-restart", active={"a.service": "active"})
    assert ids(tx) == ["a.service/stop", "a.service/start"]


def test_start_of_an_active_unit_is_kept_for_the_anchor_only() -> None:
    g = graph(unit("a.service", "Requires=b.service"), unit("b.service"))
    tx = build_transaction(g, "a.service", "start",
                           active={"a.service": "active", "b.service": "active"})
    assert ids(tx) == ["a.service/start"]


def test_refuse_manual_start_and_stop() -> None:
    g = graph(unit("a.service", "RefuseManualStart=yes"), unit("b.service", "Requires=a.service"),
              unit("c.service", "RefuseManualStop=yes"))
    with pytest.raises(TransactionError, match="may be requested by dependency only"):
        build_transaction(g, "a.service", "start", manual=True)
    assert "a.service/start" in ids(build_transaction(g, "b.service", "start", manual=True))
    build_transaction(g, "a.service", "start")  # from a dependency: fine
    with pytest.raises(TransactionError, match="refuse manual stop"):
        build_transaction(g, "c.service", "stop", active={"c.service": "active"}, manual=True)


# -- host units -----------------------------------------------------------------------------


def test_host_units_are_verified_never_started() -> None:
    h = HostUnits()
    h.add("docker.service", "docker info")
    g = graph(unit("a.service", "Requires=docker.service etcd.service\n"
                                "After=docker.service etcd.service"), host=h)
    tx = build_transaction(g, "a.service", "start")
    # etcd.service has no check: assumed up; docker.service's check has to run first
    assert waves(tx) == [["docker.service/verify-active"], ["a.service/start"]]
    tx = build_transaction(g, "a.service", "start", active={"docker.service": "active"})
    assert ids(tx) == ["a.service/start"]
    # a start request for a host unit only verifies it
    assert ids(build_transaction(g, "docker.service", "start")) == [
        "docker.service/verify-active"]
    with pytest.raises(TransactionError, match="the machine provides it"):
        build_transaction(g, "docker.service", "stop", active={"docker.service": "active"})
    with pytest.raises(TransactionError, match="not applicable"):
        build_transaction(g, "docker.service", "restart", active={"docker.service": "active"})


def test_stopping_a_flotte_unit_never_stops_host_units() -> None:
    g = graph(unit("a.service", "Conflicts=sshd.service\nPropagatesStopTo=docker.service"))
    tx = build_transaction(g, "a.service", "start", active={"sshd.service": "active"})
    assert ids(tx) == ["a.service/start"]
    assert any("sshd.service" in n for n in tx.notes)
    tx = build_transaction(g, "a.service", "stop", active={"a.service": "active"})
    assert ids(tx) == ["a.service/stop"]


def test_failed_host_check_fails_the_dependent_start() -> None:
    h = HostUnits()
    h.add("docker.service", "docker info")
    g = graph(unit("a.service", "Description=App A\nRequires=docker.service\n"
                                "After=docker.service"), host=h)
    tx = build_transaction(g, "a.service", "start")
    run = TransactionRun(tx, g)
    (step,) = run.runnable()
    assert step.id == "docker.service/verify-active"
    run.begin(step)
    res = verify_result("inactive")
    assert res is not None
    out = run.finish(step, res)
    assert [f.message for f in out.failures] == ["Dependency failed for App A."]
    assert out.failures[0].explain() == (
        "Dependency failed for App A. (a.service has Requires=docker.service, whose job failed)")
    assert run.finished and run.result is JobResult.DEPENDENCY
    assert run.runnable() == []


# -- conflicts ------------------------------------------------------------------------------


def test_conflicts_stops_the_other_unit() -> None:
    g = graph(unit("a.service", "Conflicts=b.service"), unit("b.service"))
    tx = build_transaction(g, "a.service", "start", active={"b.service": "active"})
    # no ordering implied (systemd.unit(5)): both at once
    assert waves(tx) == [["a.service/start", "b.service/stop"]]
    assert tx.jobs["b.service"].required
    assert "a.service has Conflicts=b.service" in tx.jobs["b.service"].describe()
    # the reverse direction: starting b stops a (ConflictedBy, does not matter)
    tx = build_transaction(g, "b.service", "start", active={"a.service": "active"})
    assert waves(tx) == [["a.service/stop", "b.service/start"]]
    assert not tx.jobs["a.service"].required
    assert tx.jobs["a.service"].describe() == "start of b.service: a.service has Conflicts=b.service"
    # ... unless the mode is fail, which never stops a running unit it does not have to
    tx = build_transaction(g, "b.service", "start", "fail", active={"a.service": "active"})
    assert ids(tx) == ["b.service/start"]
    assert any("minimize impact" in n for n in tx.notes)


def test_stop_before_start_whatever_the_ordering_direction() -> None:
    for order in ("After=b.service", "Before=b.service"):
        g = graph(unit("a.service", f"Conflicts=b.service\n{order}"), unit("b.service"))
        tx = build_transaction(g, "a.service", "start", active={"b.service": "active"})
        assert ids(tx) == ["b.service/stop", "a.service/start"], order


def test_conflict_between_required_jobs_fails_the_transaction() -> None:
    g = graph(unit("a.service", "Requires=b.service c.service"), unit("b.service"),
              unit("c.service", "Conflicts=b.service"))
    with pytest.raises(TransactionError) as info:
        build_transaction(g, "a.service", "start")
    assert info.value.code == "conflicting-jobs"
    assert "Transaction contains conflicting jobs 'start' and 'stop'" in info.value.message


def test_conflict_with_a_wanted_unit_drops_the_wanted_one() -> None:
    # c's Conflicts=b would stop b, which a Requires= (so would stop a): c goes instead
    g = graph(unit("a.service", "Requires=b.service\nWants=c.service"), unit("b.service"),
              unit("c.service", "Conflicts=b.service"))
    tx = build_transaction(g, "a.service", "start")
    assert set(tx.jobs) == {"a.service", "b.service"}
    assert any("Fixing conflicting jobs" in n for n in tx.notes)


def test_unmergeable_jobs_that_do_not_matter_prefer_keeping_the_start() -> None:
    g = graph(unit("a.service", "Wants=b.service c.service"), unit("b.service"),
              unit("c.service", "Wants=d.service"), unit("d.service", "Conflicts=b.service"))
    tx = build_transaction(g, "a.service", "start")
    # b gets start (from a) and stop (from d's Conflicts=): the stop is conflicted-by,
    # so the start is removed instead, as systemd does
    assert "b.service" not in tx.jobs
    assert {"a.service", "c.service", "d.service"} <= set(tx.jobs)


# -- queued jobs and modes ---------------------------------------------------------------


def test_mode_fail_refuses_to_contradict_queued_jobs() -> None:
    g = graph(unit("a.service", "Requires=b.service"), unit("b.service"))
    with pytest.raises(TransactionError) as info:
        build_transaction(g, "a.service", "start", "fail", pending={"b.service": "stop"})
    assert info.value.code == "destructive"
    assert info.value.message == ("Transaction for a.service/start is destructive (b.service has "
                                  "'stop' job queued, but 'start' is included in transaction).")
    tx = build_transaction(g, "a.service", "start", "replace", pending={"b.service": "stop"})
    assert dict(tx.replaces) == {"b.service": J.STOP}
    # queued jobs that agree are fine in both modes
    tx = build_transaction(g, "a.service", "start", "fail", pending={"b.service": "start"})
    assert dict(tx.replaces) == {}


def test_mode_fail_drops_wanted_jobs_that_contradict_queued_ones() -> None:
    g = graph(unit("a.service", "Wants=b.service"), unit("b.service"))
    tx = build_transaction(g, "a.service", "start", "fail", pending={"b.service": "stop"})
    assert ids(tx) == ["a.service/start"]


# -- ordering -------------------------------------------------------------------------------


def test_ordering_applies_only_to_jobs_of_the_transaction() -> None:
    g = graph(unit("a.service", "After=b.service c.service\nWants=c.service"),
              unit("b.service"), unit("c.service"))
    tx = build_transaction(g, "a.service", "start")
    assert waves(tx) == [["c.service/start"], ["a.service/start"]]
    assert tx.jobs["a.service"].after == {"c.service"}


def test_stops_run_in_reverse_order() -> None:
    g = graph(unit("a.service", "After=b.service\nRequires=b.service"),
              unit("b.service", "After=c.service\nRequires=c.service"), unit("c.service"))
    up = dict.fromkeys(("a.service", "b.service", "c.service"), "active")
    assert ids(build_transaction(g, "a.service", "start")) == [
        "c.service/start", "b.service/start", "a.service/start"]
    assert ids(build_transaction(g, "c.service", "stop", active=up)) == [
        "a.service/stop", "b.service/stop", "c.service/stop"]


def test_steps_list_their_prerequisites() -> None:
    tx = build_transaction(seed_graph(), APACHE, "restart", active=BOTH_UP)
    by_id = {s.id: s for s in tx.steps}
    assert by_id[f"{APACHE}/stop"].after == {f"{SECRETARY}/stop"}
    assert by_id[f"{APACHE}/start"].after == {f"{APACHE}/stop", f"{SECRETARY}/stop"}
    assert by_id[f"{SECRETARY}/start"].after == {f"{APACHE}/start", f"{APACHE}/stop",
                                                 f"{SECRETARY}/stop"}
    assert tx.step(f"{APACHE}/stop").job is J.RESTART
    with pytest.raises(KeyError):
        tx.step("nope/start")


# -- cycles ---------------------------------------------------------------------------------


def test_required_ordering_cycle_fails_naming_the_units() -> None:
    g = graph(unit("a.service", "Requires=b.service\nAfter=b.service"),
              unit("b.service", "After=a.service"))
    with pytest.raises(TransactionError) as info:
        build_transaction(g, "a.service", "start")
    e = info.value
    assert e.code == "cycle" and e.cycle == ("a.service", "b.service")
    assert "Ordering cycle found: a.service → b.service → a.service" in str(e)
    assert "nothing was started" in str(e)


def test_three_unit_cycle_is_named_from_the_anchor() -> None:
    g = graph(unit("a.service", "Requires=b.service c.service\nAfter=c.service"),
              unit("b.service", "After=a.service"), unit("c.service", "After=b.service"))
    with pytest.raises(TransactionError) as info:
        build_transaction(g, "a.service", "start")
    assert info.value.message == "Ordering cycle found: a.service → c.service → b.service → a.service."


def test_wants_only_cycle_is_broken_by_dropping_the_wanted_job() -> None:
    g = graph(unit("a.service", "Wants=b.service\nAfter=b.service"),
              unit("b.service", "Wants=c.service\nAfter=a.service"), unit("c.service"))
    tx = build_transaction(g, "a.service", "start")
    # b is deleted, and c (which only b wanted) is garbage-collected with it
    assert ids(tx) == ["a.service/start"]
    assert tx.notes == ("Ordering cycle found: a.service → b.service → a.service; job "
                        "b.service/start deleted to break ordering cycle starting with a.service",)


def test_cycle_through_units_without_jobs_is_no_cycle() -> None:
    g = graph(unit("a.service", "After=b.service"), unit("b.service", "After=a.service"))
    assert ids(build_transaction(g, "a.service", "start")) == ["a.service/start"]
    # nor through a unit whose job was redundant
    g = graph(unit("a.service", "Requires=b.service\nAfter=b.service"),
              unit("b.service", "After=a.service"))
    assert ids(build_transaction(g, "a.service", "start", active={"b.service": "active"})) == [
        "a.service/start"]


def test_stop_cycles_are_found_too() -> None:
    g = graph(unit("a.service", "Requires=b.service\nAfter=b.service"),
              unit("b.service", "Requires=a.service\nAfter=a.service"))
    with pytest.raises(TransactionError, match="Ordering cycle found"):
        build_transaction(g, "a.service", "stop",
                          active={"a.service": "active", "b.service": "active"})


def test_a_stop_and_a_start_never_form_a_cycle() -> None:
    # mutual ordering, but one stops and one starts: the stop simply goes first
    g = graph(unit("a.service", "Conflicts=b.service\nAfter=b.service"),
              unit("b.service", "After=a.service"))
    tx = build_transaction(g, "a.service", "start", active={"b.service": "active"})
    assert ids(tx) == ["b.service/stop", "a.service/start"]


# -- running a transaction -------------------------------------------------------------------


def chain_graph() -> DependencyGraph:
    return graph(unit("a.service", "Description=Service A\nRequires=b.service\nAfter=b.service"),
                 unit("b.service", "Description=Service B\nRequires=c.service\nAfter=c.service"),
                 unit("c.service"), unit("w.service", "Wants=c.service\nAfter=c.service"))


def test_run_respects_the_order_and_completes() -> None:
    g = chain_graph()
    run = TransactionRun(build_transaction(g, "a.service", "start"), g)
    seen = []
    while not run.finished:
        steps = run.runnable()
        assert len(steps) == 1
        run.begin(steps[0])
        assert run.runnable() == []  # running: nothing after it may begin
        seen.append(steps[0].id)
        assert run.finish(steps[0], "done", "active") == run.finish(steps[0], "done")
    assert seen == ["c.service/start", "b.service/start", "a.service/start"]
    assert run.result is JobResult.DONE
    assert run.results == dict.fromkeys(("a.service", "b.service", "c.service"), JobResult.DONE)


def test_dependency_failed_propagates_recursively() -> None:
    g = chain_graph()
    g.add(unit("a.service", "Description=Service A\nRequires=b.service\nAfter=b.service\n"
                            "OnFailure=alert.service"))
    run = TransactionRun(build_transaction(g, "a.service", "start"), g)
    (c,) = run.runnable()
    out = run.finish(c, "failed")
    assert [(f.unit, f.result, f.cause, f.relation) for f in out.failures] == [
        ("b.service", JobResult.DEPENDENCY, "c.service", "Requires"),
        ("a.service", JobResult.DEPENDENCY, "b.service", "Requires")]
    assert [f.message for f in out.failures] == ["Dependency failed for Service B.",
                                                 "Dependency failed for Service A."]
    # a job ending with result "dependency" triggers the unit's OnFailure=
    assert reqs(list(out.requests)) == [("alert.service", "start", "replace")]
    assert run.finished and run.result is JobResult.DEPENDENCY
    assert run.results["c.service"] is JobResult.FAILED


def test_wants_does_not_fail_with_its_dependency() -> None:
    g = chain_graph()
    run = TransactionRun(build_transaction(g, "w.service", "start"), g)
    (c,) = run.runnable()
    assert run.finish(c, "failed").failures == ()
    (w,) = run.runnable()  # ordering waits for the result, whatever it is
    assert w.id == "w.service/start"
    run.finish(w, "done", "active")
    assert run.result is JobResult.DONE


def test_parallel_start_already_running_is_failed_but_not_taken_back() -> None:
    g = graph(unit("a.service", "Requires=b.service"), unit("b.service"))
    run = TransactionRun(build_transaction(g, "a.service", "start"), g)
    a, b = sorted(run.runnable(), key=lambda s: s.unit)
    run.begin(a)
    run.begin(b)
    out = run.finish(b, "timeout")
    assert [f.unit for f in out.failures] == ["a.service"]
    assert run.finish(a, "done", "active").failures == ()  # too late: ignored
    assert run.result is JobResult.DEPENDENCY


def test_condition_skip_fails_requisite_but_not_requires() -> None:
    g = graph(unit("a.service", "Requires=c.service\nAfter=c.service"),
              unit("b.service", "Requisite=c.service\nWants=c.service\nAfter=c.service"),
              unit("c.service"))
    run = TransactionRun(build_transaction(g, "a.service", "start"), g)
    run.finish("c.service/start", "skipped")  # Service.start()'s answer for a condition
    assert run.results["c.service"] is JobResult.DONE
    assert [s.id for s in run.runnable()] == ["a.service/start"]
    run = TransactionRun(build_transaction(g, "b.service", "start"), g)
    out = run.finish("c.service/start", "skipped")
    assert [f.unit for f in out.failures] == ["b.service"]


def test_requisite_of_an_inactive_unit_fails() -> None:
    g = graph(unit("a.service", "Requisite=b.service\nAfter=b.service"), unit("b.service"))
    run = TransactionRun(build_transaction(g, "a.service", "start"), g)
    (v,) = run.runnable()
    assert verify_result("activating") is None  # the executor waits and asks again
    out = run.finish(v, JobResult.SKIPPED)
    assert [(f.unit, f.relation) for f in out.failures] == [("a.service", "Requisite")]


def test_restart_counts_as_start_once_its_stop_is_done() -> None:
    g = graph(unit("a.service", "Requires=b.service\nAfter=b.service"), unit("b.service"))
    up = {"a.service": "active", "b.service": "active"}
    run = TransactionRun(build_transaction(g, "b.service", "restart", active=up), g)
    assert [s.id for s in run.runnable()] == ["a.service/stop"]
    run.finish("a.service/stop", "done")
    run.finish("b.service/stop", "done")
    assert [s.id for s in run.runnable()] == ["b.service/start"]
    out = run.finish("b.service/start", "failed")
    assert [f.unit for f in out.failures] == ["a.service"]
    assert run.results == {"b.service": JobResult.FAILED, "a.service": JobResult.DEPENDENCY}


def test_failed_stop_of_a_restart_fails_nothing_else() -> None:
    g = graph(unit("a.service", "Requires=b.service\nAfter=b.service"), unit("b.service"))
    up = {"a.service": "active", "b.service": "active"}
    run = TransactionRun(build_transaction(g, "b.service", "restart", active=up), g)
    run.finish("a.service/stop", "done")
    assert run.finish("b.service/stop", "timeout").failures == ()
    # a's start half still runs (its stop is done: ordering only waited for b's job)
    assert [s.id for s in run.runnable()] == ["a.service/start"]


def test_failed_stop_fails_the_conflicting_start() -> None:
    g = graph(unit("a.service", "Conflicts=b.service"), unit("b.service"))
    run = TransactionRun(build_transaction(g, "a.service", "start",
                                           active={"b.service": "active"}), g)
    out = run.finish("b.service/stop", "failed")
    assert [(f.unit, f.relation) for f in out.failures] == [("a.service", "Conflicts")]


def test_cancel() -> None:
    g = chain_graph()
    run = TransactionRun(build_transaction(g, "a.service", "start"), g)
    run.cancel("c.service")
    run.cancel("nope.service")
    assert run.results == {"c.service": JobResult.CANCELED}
    assert [s.id for s in run.runnable()] == ["b.service/start"]  # no propagation


# -- runtime events --------------------------------------------------------------------------


def test_bindsto_after_an_expected_stop_stops_what_is_still_running() -> None:
    g = graph(unit("a.service", "BindsTo=b.service"), unit("b.service"))
    out = on_unit_stopped(g, "b.service", "success", {"a.service": "active"}, expected=True)
    assert reqs(out) == [("a.service", "stop", "fail")]
    assert out[0].reason == "Unit is bound to inactive unit b.service. Stopping, too."
    assert on_unit_stopped(g, "b.service", "success", {"a.service": "active"}, expected=True,
                           pending={"a.service": "stop"}) == []


def test_on_failure_and_on_success_fire_on_every_run() -> None:
    g = graph(unit("a.service", "OnFailure=alert.service\nOnSuccess=next.service\n"
                                "OnFailureJobMode=fail"),
              unit("alert.service"), unit("next.service"))
    assert reqs(on_unit_stopped(g, "a.service", "exit-code", {})) == [
        ("alert.service", "start", "fail")]
    # v254+ timing: even when Restart= will start it again
    assert reqs(on_unit_stopped(g, "a.service", "exit-code", {}, will_restart=True)) == [
        ("alert.service", "start", "fail")]
    assert reqs(on_unit_stopped(g, "a.service", "success", {}, will_restart=True)) == [
        ("next.service", "start", "fail")]  # OnSuccessJobMode= defaults to fail (252)
    assert on_unit_stopped(g, "a.service", "success", {}, previous="inactive") == []
    assert on_unit_stopped(g, "a.service", "exit-code", {}, previous="failed") == []


def test_stop_when_unneeded() -> None:
    g = graph(unit("a.service", "Wants=helper.service"), unit("b.service", "Requires=helper.service"),
              unit("helper.service", "StopWhenUnneeded=yes"))
    act = {"a.service": "inactive", "b.service": "active", "helper.service": "active"}
    assert not unneeded(g, "helper.service", act)
    assert on_unit_stopped(g, "a.service", "success", act) == []
    act["b.service"] = "failed"
    assert unneeded(g, "helper.service", act)
    assert reqs(on_unit_stopped(g, "b.service", "exit-code", act)) == [
        ("helper.service", "stop", "fail")]
    # an auto-restarting user still pins it; so does a queued job
    assert on_unit_stopped(g, "b.service", "exit-code", act, will_restart=True) == []
    assert not unneeded(g, "helper.service", act, {"a.service": "start"})
    # started by hand with nobody needing it: stopped again at once
    act = {"helper.service": "active"}
    assert reqs(on_unit_active(g, "helper.service", act)) == [("helper.service", "stop", "fail")]
    assert on_unit_active(g, "a.service", {}) == []


def test_upholds_starts_the_unit_again() -> None:
    g = graph(unit("keeper.service", "Upholds=worker.service"), unit("worker.service"))
    assert ids(build_transaction(g, "keeper.service", "start")) == [
        "keeper.service/start", "worker.service/start"]
    out = on_unit_stopped(g, "worker.service", "exit-code", {"keeper.service": "active"})
    assert reqs(out) == [("worker.service", "start", "fail")]
    assert on_unit_stopped(g, "worker.service", "exit-code", {"keeper.service": "inactive"}) == []


def test_bound_unit_started_while_its_target_is_down_is_stopped() -> None:
    g = graph(unit("a.service", "BindsTo=b.service\nAfter=b.service"), unit("b.service"))
    out = on_unit_active(g, "a.service", {"b.service": "inactive"})
    assert reqs(out) == [("a.service", "stop", "fail")]
    assert on_unit_active(g, "a.service", {"b.service": "active"}) == []
    assert on_unit_active(g, "a.service", {}, pending={"b.service": "start"}) == []


def test_unit_removed_stops_bound_units() -> None:
    g = seed_graph()
    out = on_unit_removed(g, APACHE, BOTH_UP)
    assert reqs(out) == [(SECRETARY, "stop", "replace")]
    g.remove(APACHE)
    assert reqs(on_unit_removed(g, APACHE, BOTH_UP)) == [(SECRETARY, "stop", "replace")]
    assert on_unit_removed(g, APACHE, {}) == []


def test_enabled_sidekick_follows_its_unit() -> None:
    g = graph(unit("hello.service"),
              unit("hello-sk.service", "BindsTo=hello.service\nAfter=hello.service",
                   install="WantedBy=hello.service"))
    g.enable("hello-sk.service")
    assert ids(build_transaction(g, "hello.service", "start")) == [
        "hello.service/start", "hello-sk.service/start"]
    up = {"hello.service": "active", "hello-sk.service": "active"}
    assert ids(build_transaction(g, "hello.service", "stop", active=up)) == [
        "hello-sk.service/stop", "hello.service/stop"]
    assert on_unit_restarted(g, "hello.service", up)[0].mode is JobMode.RESTART_DEPENDENCIES


# -- properties -------------------------------------------------------------------------------

RELS = ["Requires", "Wants", "BindsTo", "PartOf", "Requisite", "Conflicts", "Upholds",
        "PropagatesStopTo"]
STATES = ["inactive", "active", "failed", "activating"]


@st.composite
def random_units(draw: st.DrawFn, *, acyclic_order: bool) -> tuple[DependencyGraph, dict[str, str]]:
    n = draw(st.integers(2, 8))
    names = [f"u{i}.service" for i in range(n)]
    lines: dict[str, list[str]] = {x: [] for x in names}
    for _ in range(draw(st.integers(0, 2 * n))):
        i, k = draw(st.integers(0, n - 1)), draw(st.integers(0, n - 1))
        if i == k:
            continue
        lines[names[i]].append(f"{draw(st.sampled_from(RELS))}={names[k]}")
    for _ in range(draw(st.integers(0, 2 * n))):
        i, k = draw(st.integers(0, n - 1)), draw(st.integers(0, n - 1))
        if i == k or (acyclic_order and i < k):
            continue
        lines[names[i]].append(f"{draw(st.sampled_from(['After', 'Before']))}={names[k]}"
                               if not acyclic_order else f"After={names[k]}")
    if draw(st.booleans()):
        lines[names[0]].append("Requires=ghost.service")
    units = [unit(x, "\n".join(lines[x])) for x in names]
    active = {x: draw(st.sampled_from(STATES)) for x in names}
    return DependencyGraph(units), active


def check_plan(tx: Transaction, g: DependencyGraph) -> None:
    pos = {s.id: i for i, s in enumerate(tx.steps)}
    assert len(pos) == len(tx.steps)
    for s in tx.steps:
        assert s.unit in tx.jobs
        for p in s.after:
            assert pos[p] < pos[s.id], (p, s.id)  # prerequisites come earlier
            assert tx.step(p).wave < s.wave
    # every job has its steps; every pulled-in job says why, and the anchor is there
    for u, job in tx.jobs.items():
        ops = [s.op for s in tx.steps if s.unit == u]
        expected = {J.RESTART: [J.STOP, J.START], J.NOP: []}.get(job.type, [job.type])
        assert ops == expected
        assert job.anchor or job.reasons
        for r in job.reasons:
            assert r.by in tx.jobs
    assert tx.anchor.unit in tx.jobs and tx.anchor.anchor
    # ordered units' steps are ordered, as job_compare says
    for a in tx.jobs:
        for b in g.deps(a, Relation.BEFORE):
            for x in (s for s in tx.steps if s.unit == a):
                for y in (s for s in tx.steps if s.unit == b):
                    if y.op is J.STOP:
                        assert pos[y.id] < pos[x.id]
                    else:
                        assert pos[x.id] < pos[y.id]


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(random_units(acyclic_order=True), st.sampled_from(["start", "stop", "restart"]),
       st.sampled_from(["replace", "fail"]), st.data())
def test_plans_from_acyclic_orderings_are_valid(gs: tuple[DependencyGraph, dict[str, str]],
                                                job_type: str, mode: str,
                                                data: st.DataObject) -> None:
    g, active = gs
    anchor = data.draw(st.sampled_from(g.names()))
    try:
        tx = build_transaction(g, anchor, job_type, mode, active)
    except TransactionError as e:
        # only a missing unit or contradicting requirements may fail it; never a cycle
        assert e.code in ("not-found", "conflicting-jobs"), str(e)
        if e.code == "not-found":
            assert e.units == ("ghost.service",)
        return
    check_plan(tx, g)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(random_units(acyclic_order=False), st.sampled_from(["start", "stop", "restart"]),
       st.data())
def test_cycles_are_broken_or_reported(gs: tuple[DependencyGraph, dict[str, str]],
                                       job_type: str, data: st.DataObject) -> None:
    g, active = gs
    anchor = data.draw(st.sampled_from(g.names()))
    try:
        tx = build_transaction(g, anchor, job_type, "replace", active)
    except TransactionError as e:
        if e.code == "cycle":
            ring = [*e.cycle, e.cycle[0]]
            for a, b in itertools.pairwise(ring):
                assert g.has(a, Relation.AFTER, b) or g.has(a, Relation.BEFORE, b)
            assert "Ordering cycle found: " + " → ".join(ring) in str(e)
        else:
            assert e.code in ("not-found", "conflicting-jobs")
        return
    check_plan(tx, g)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(random_units(acyclic_order=True), st.data())
def test_runs_always_terminate_consistently(gs: tuple[DependencyGraph, dict[str, str]],
                                           data: st.DataObject) -> None:
    g, active = gs
    anchor = data.draw(st.sampled_from(g.names()))
    try:
        tx = build_transaction(g, anchor, data.draw(st.sampled_from(["start", "restart"])),
                               "replace", active)
    except TransactionError:
        return
    run = TransactionRun(tx, g)
    finished: set[str] = set()
    for _ in range(2 * len(tx.steps) + 1):
        ready = run.runnable()
        if not ready:
            break
        step = data.draw(st.sampled_from(ready))
        for p in step.after:  # never before its prerequisites settled
            assert p in finished or tx.step(p).unit in run.results
        run.begin(step)
        result = data.draw(st.sampled_from(["done", "done", "failed", "skipped"]))
        run.finish(step, result, "active" if result == "done" else "inactive")
        finished.add(step.id)
    assert run.finished
    assert set(run.results) == set(tx.jobs)
    for f in run.failures:
        # a dependency failure has a culprit whose job did not succeed (or left it inactive)
        assert f.result is JobResult.DEPENDENCY
        assert f.cause in run.results
