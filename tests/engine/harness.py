"""An in-process fleet cluster for scheduler tests: no registry, no agents, no clock.

A :class:`Harness` holds what the registry would (machines, units with
their desired state, the schedule), applies the engine's plans to it, and
checks the scheduler's invariants after every pass.  fleet's functional
scheduling tests (fleet.md §6) ran on nspawn clusters for minutes; the pure
decisions they check run here in milliseconds.

Two modes: ``"full"`` runs :func:`flotte.engine.scheduler.reconcile` on a
fresh view every pass (fleet's behaviour); ``"incremental"`` keeps one
:class:`~flotte.engine.scheduler.Scheduler`, feeds it each change as the
engine loop will, and cross-checks it against the full answer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Literal

from flotte.engine.glob import glob_match
from flotte.engine.keyspace import DesiredState
from flotte.engine.model import Action, ClusterView, Machine, Plan, Schedule, Unit
from flotte.engine.rules import able_to_run, global_units_for, replaces, residents
from flotte.engine.scheduler import Scheduler, reconcile
from flotte.unit.parser import parse

Mode = Literal["full", "incremental"]


def machine_id(i: int) -> str:
    """A 32-character machine ID whose short form is distinct: ``0000000a…``."""
    return f"{i:08x}" + "5eedf1ee7c0de5" + f"{i:010x}"


def unit_from_text(name: str, text: str, desired: DesiredState = "launched") -> Unit:
    """A unit from its file text, through the real parser and [X-Fleet] reader."""
    opts = parse(text).options
    return Unit.from_options(name, [(o.section, o.key, o.value) for o in opts], desired)


def service(xfleet: str = "", exec_start: str = "/bin/sleep infinity") -> str:
    """A minimal unit file with an optional [X-Fleet] body."""
    text = f"[Service]\nExecStart={exec_start}\n"
    if xfleet:
        text += "\n[X-Fleet]\n" + xfleet.strip() + "\n"
    return text


class Harness:
    def __init__(self, machines: int | Iterable[Machine] = 0, *, mode: Mode = "full",
                 explain_limit: int | None = None) -> None:
        self.mode = mode
        self.explain_limit = explain_limit
        self.machines: dict[str, Machine] = {}
        self.units: dict[str, Unit] = {}
        self.schedule: dict[str, str] = {}
        self.reasons: dict[str, dict[str, str]] = {}
        self.plans: list[Plan] = []
        self.sched = Scheduler() if mode == "incremental" else None
        if isinstance(machines, int):
            for i in range(machines):
                self.add_machine(machine_id(i))
        else:
            for m in machines:
                self.add_machine(m)

    # ------------------------------------------------------------ cluster changes

    def add_machine(self, machine: Machine | str, **metadata: str) -> str:
        m = machine if isinstance(machine, Machine) else Machine(machine, dict(metadata))
        self.machines[m.id] = m
        if self.sched is not None:
            self.sched.set_machine(m)
        return m.id

    def remove_machine(self, mid: str) -> None:
        """The machine's presence key expired (a crash, a partition, fleet stopped)."""
        del self.machines[mid]
        if self.sched is not None:
            self.sched.remove_machine(mid)

    def set_metadata(self, mid: str, **metadata: str) -> None:
        self.add_machine(Machine(mid, dict(metadata)))

    def put(self, unit: Unit) -> Unit:
        self.units[unit.name] = unit
        if self.sched is not None:
            self.sched.set_unit(unit)
        return unit

    def submit(self, name: str, text: str | None = None, desired: DesiredState = "inactive",
               **constraints: object) -> Unit:
        if text is not None:
            return self.put(unit_from_text(name, text, desired))
        return self.put(Unit.make(name, desired=desired, **constraints))  # type: ignore[arg-type]

    def start(self, name: str, text: str | None = None, **constraints: object) -> Unit:
        """fleetctl start: submit if unknown, then desired state launched."""
        if name in self.units and text is None and not constraints:
            return self.set_desired(name, "launched")
        return self.submit(name, text, "launched", **constraints)

    def set_desired(self, name: str, desired: DesiredState) -> Unit:
        u = self.units[name]
        return self.put(Unit(u.name, u.xfleet, desired, u.hash))

    def stop(self, name: str) -> Unit:
        return self.set_desired(name, "loaded")

    def unload(self, name: str) -> Unit:
        return self.set_desired(name, "inactive")

    def destroy(self, name: str) -> None:
        del self.units[name]
        if self.sched is not None:
            self.sched.remove_unit(name)

    # ------------------------------------------------------------ engine passes

    def view(self) -> ClusterView:
        return ClusterView(dict(self.machines), dict(self.units), dict(self.schedule))

    def reconcile(self) -> Plan:
        """One engine pass: compute the plan, write it, check the invariants."""
        if self.sched is not None:
            plan = self.sched.reconcile(explain_limit=self.explain_limit)
        else:
            plan = reconcile(self.view(), explain_limit=self.explain_limit)
        self.schedule = plan.apply(self.schedule)
        for name in plan.evaluated - plan.unplaced.keys():
            self.reasons.pop(name, None)
        for name in list(self.reasons):
            u = self.units.get(name)
            if name in self.schedule or u is None or u.is_global or u.desired == "inactive":
                del self.reasons[name]
        self.reasons.update(plan.unplaced)
        self.plans.append(plan)
        self.check()
        return plan

    def settle(self, max_passes: int = 5) -> list[Plan]:
        """Reconcile until a pass changes nothing (fleet's periodic loop)."""
        out = []
        for _ in range(max_passes):
            plan = self.reconcile()
            out.append(plan)
            if not plan.steps:
                return out
        raise AssertionError(f"no fixpoint after {max_passes} passes: {out[-1].steps}")

    # ------------------------------------------------------------ questions

    def where(self, name: str) -> str | None:
        return self.schedule.get(name)

    def running_on(self, mid: str) -> set[str]:
        """Units the agent on ``mid`` runs (launched or loaded): its residents."""
        return set(residents(mid, self.view()))

    def hosts(self, name: str) -> set[str]:
        """Machines a unit runs on: one for a scheduled unit, many for a global one."""
        view = self.view()
        u = self.units[name]
        if u.is_global:
            return {mid for mid in self.machines if name in global_units_for(mid, view)}
        mid = view.placed_target(name)
        return set() if mid is None else {mid}

    def active(self) -> dict[str, set[str]]:
        """fleet's "active units": launched units and where they run."""
        return {n: self.hosts(n) for n, u in self.units.items()
                if u.desired == "launched" and self.hosts(n)}

    def active_count(self) -> int:
        """What fleet's ``WaitForNActiveUnits`` counts (one per unit per machine)."""
        return sum(len(h) for h in self.active().values())

    # ------------------------------------------------------------ invariants

    def check(self) -> None:
        """The scheduler's invariants, checked against the reference rules."""
        view = self.view()
        for name, mid in self.schedule.items():
            assert view.placed_target(name) == mid, f"stale schedule entry {name} → {mid}"
        for mid in self.machines:
            here = residents(mid, view)
            for name in here:
                if self.units[name].is_global:
                    continue
                d = able_to_run(mid, self.units[name], view)
                assert d.action is Action.RUN, f"{name} on {mid}: {d}"
            for a in here:
                for b in here:
                    if a != b:
                        assert not any(glob_match(p, b) for p in self.units[a].xfleet.conflicts),\
                            f"{a} and {b} conflict on {mid}"
        placed = [n for n in self.schedule]
        for a in placed:
            for b in placed:
                if a < b:
                    assert not (replaces(self.units[a], b) and replaces(self.units[b], a)), \
                        f"{a} and {b} replace each other and both run"
        for name in self.reasons:
            assert name not in self.schedule, f"{name} is placed but has unplaced reasons"
        if self.sched is not None:
            assert self.sched.schedule == self.schedule
            fresh = reconcile(view, explain_limit=self.explain_limit)
            assert {n: set(r) for n, r in self.reasons.items()} == \
                {n: set(r) for n, r in fresh.unplaced.items()}, "unplaced units differ"
            assert [s for s in fresh.steps if isinstance(s, Schedule)] == [] or any(
                u.xfleet.replaces for u in self.units.values()), \
                f"incremental pass missed work a full pass does: {fresh.steps}"
            assert not fresh.unschedules or any(u.xfleet.replaces for u in self.units.values()),\
                f"incremental pass left invalid entries: {fresh.unschedules}"
            for mid in self.machines:
                assert self.sched.residents(mid) == residents(mid, view), mid


def pairs(mapping: Mapping[str, str]) -> set[tuple[str, str]]:
    return set(mapping.items())
