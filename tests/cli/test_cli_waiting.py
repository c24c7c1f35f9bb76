"""The state-wait decisions and their messages (pure)."""

from __future__ import annotations

from flotte.api.client import Machine, Unit, UnitState
from flotte.cli import waiting as W

M = "113f16a7f5d34a8a9b1b5e1a0c1d2e3f"
MACHINES = {M: Machine(M, "10.0.0.5")}


def unit(current: str = "", desired: str = "launched", machine: str = "") -> Unit:
    return Unit("web.service", [], desired, current, machine)


def test_reached() -> None:
    assert W.judge_state("launched", unit("launched", machine=M)).kind is W.REACHED
    assert W.judge_state("inactive", unit("", desired="inactive")).kind is W.REACHED
    assert W.judge_state("loaded", unit("loaded", "loaded", M)).kind is W.REACHED


def test_pending_while_scheduling() -> None:
    v = W.judge_state("launched", unit("inactive"))
    assert v.kind is W.PENDING and v.detail == "waiting to be scheduled"
    v = W.judge_state("launched", unit("loaded", machine=M))
    assert v.kind is W.PENDING and v.detail == "loaded, waiting for launched"


def test_reasons_fail_only_when_unscheduled_and_settled() -> None:
    reasons = {M: "conflicts with web@1.service"}
    assert W.judge_state("launched", unit("inactive"), reasons, 1).kind is W.PENDING
    v = W.judge_state("launched", unit("inactive"), reasons, W.REASONS_SETTLE)
    assert v.kind is W.FAILED and v.reasons == reasons
    # scheduled after all: the reasons are stale
    assert W.judge_state("launched", unit("loaded", machine=M), reasons, 5).kind is W.PENDING
    # an inactive target never needs a machine
    assert W.judge_state("inactive", unit("loaded", "inactive", M), reasons, 5).kind \
        is W.PENDING


def test_failures() -> None:
    v = W.judge_state("launched", None)
    assert v.kind is W.FAILED and "disappeared" in v.detail
    v = W.judge_state("launched", unit("inactive", desired="loaded"))
    assert v.kind is W.FAILED and "changed to loaded by another client" in v.detail


def test_active_phase() -> None:
    u = unit("launched", machine=M)
    assert W.judge_active(u, []).kind is W.PENDING

    def st(active: str, sub: str = "", load: str = "loaded", machine: str = M) -> UnitState:
        return UnitState("web.service", "h", machine, load, active, sub)

    assert W.judge_active(u, [st("active", "running")]).kind is W.REACHED
    v = W.judge_active(u, [st("activating", "start-pre")])
    assert v.kind is W.PENDING and v.detail == "activating (start-pre)"
    v = W.judge_active(u, [st("failed", "failed")])
    assert v.kind is W.FAILED and v.detail == "it failed to start (failed)"
    v = W.judge_active(u, [st("inactive", "dead", load="bad-setting")])
    assert v.kind is W.FAILED and "load state bad-setting" in v.detail
    # a state published by another machine (the unit is moving) does not count
    assert W.judge_active(u, [st("active", "running", machine="other")]).kind is W.PENDING
    assert W.judge_active(u, [st("active", "running", machine="other"),
                              st("activating", "start")]).detail == "activating (start)"
    assert W.judge_active(None, []).kind is W.FAILED


def test_gone() -> None:
    assert W.judge_gone([]).kind is W.REACHED
    v = W.judge_gone([UnitState("web.service", "", M, "loaded", "deactivating", "stop")])
    assert v.kind is W.PENDING and v.detail == "still deactivating on 113f16a7..., stopping"
    v = W.judge_gone([UnitState("g.service", "", M, "loaded", "active", "running"),
                      UnitState("g.service", "", "f" * 32, "loaded", "active", "running")])
    assert v.detail == "still active on 113f16a7... (and 1 more machines), stopping"


def test_messages() -> None:
    assert W.reached_message("hello.service", "launched", M, MACHINES) == \
        "Unit hello.service launched on 113f16a7.../10.0.0.5"
    assert W.reached_message("hello.service", "inactive", "", MACHINES) == \
        "Unit hello.service inactive"
    assert W.reached_message("hello.service", "loaded", "abcdef0123", {}) == \
        "Unit hello.service loaded on abcdef01..."
    assert W.reasons_lines("web@2.service", "launched",
                           {M: "conflicts with web@1.service", "": "MachineOf cycle",
                            "99999999aaaa": "lacks metadata role=web"}, MACHINES) == [
        "Unit web@2.service cannot be placed (desired state launched):",
        "  cluster: MachineOf cycle",
        "  113f16a7.../10.0.0.5: conflicts with web@1.service",
        "  99999999...: lacks metadata role=web",
    ]
    assert W.timeout_message("a.service", "loaded") == \
        "Error waiting for units: timed out waiting for unit a.service to report state loaded"
    assert W.timeout_message("a.service", W.GONE).endswith("unit a.service to stop")


def test_progress_text() -> None:
    assert W.progress_text([], 1) == ""
    ts = [W.Tracker("a.service", "launched", detail="waiting to be scheduled"),
          W.Tracker("b.service", "launched")]
    assert W.progress_text(ts, 3.4) == \
        "[3s] waiting for a.service: waiting to be scheduled (+1 more)"
    assert W.progress_text(ts[1:], 0) == "[0s] waiting for b.service: checking"
