"""Scheduler throughput: ``.venv/bin/python tests/engine/bench_scheduler.py [units] [machines]``.

Not collected by pytest (no ``test_`` prefix).  Scenarios, on 10,000 units
and 1,000 machines by default:

plain        units without [X-Fleet]
templates    100 templates × 100 instances, each ``Conflicts=<template>@*.service``
seed         the seed scenario at scale: ``apache@N`` (Conflicts=apache@*) each with a
             ``secretary@N`` sidekick (MachineOf=apache@N, Conflicts=secretary@*)
mixed        templates + metadata (4 regions) + MachineOf sidekicks + MachineID pins +
             3 global units
saturated    every unit is ``web@N`` with ``Conflicts=web@*.service``: only one per machine
             fits, the rest get a reason per machine (explain_limit 16, 100 = the
             default, and unlimited)

For each: a full reconcile from a fresh view (index build included), the
placements per second, then incremental passes on the long-lived scheduler:
one machine lost (its units move), one unit started, nothing changed.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from flotte.engine.model import ClusterView, Machine, Unit
from flotte.engine.scheduler import Scheduler

REGIONS = ["eu", "us", "asia", "sa"]


def machines(n: int) -> list[Machine]:
    return [Machine(f"{i:08x}" + "0" * 24, {"region": REGIONS[i % 4], "id": str(i)})
            for i in range(n)]


def plain(n: int) -> list[Unit]:
    return [Unit.make(f"u{i}.service") for i in range(n)]


def templates(n: int) -> list[Unit]:
    per = 100
    return [Unit.make(f"app{t}@{i}.service", conflicts=[f"app{t}@*.service"])
            for t in range(max(1, n // per)) for i in range(per)]


def seed(n: int) -> list[Unit]:
    out = []
    for i in range(n // 2):
        out.append(Unit.make(f"apache@{i}.service", conflicts=["apache@*.service"]))
        out.append(Unit.make(f"secretary@{i}.service", machine_of=[f"apache@{i}.service"],
                             conflicts=["secretary@*.service"]))
    return out


def mixed(n: int, ms: list[Machine]) -> list[Unit]:
    out: list[Unit] = templates(n * 4 // 10)
    for i in range(n * 2 // 10):
        out.append(Unit.make(f"regional{i}.service", metadata={"region": [REGIONS[i % 4]]}))
    for i in range(n * 15 // 100):
        out.append(Unit.make(f"main{i}.service", conflicts=["main*"]))
        out.append(Unit.make(f"side{i}.service", machine_of=[f"main{i}.service"]))
    for i in range(n * 5 // 100):
        out.append(Unit.make(f"pin{i}.service", machine_id=ms[i % len(ms)].id[:8]))
    for g in range(3):
        out.append(Unit.make(f"global{g}.service", global_=True,
                             metadata={"region": [REGIONS[g]]}))
    return out


def saturated(n: int) -> list[Unit]:
    return [Unit.make(f"web@{i}.service", conflicts=["web@*.service"]) for i in range(n)]


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def run(name: str, ms: list[Machine], us: list[Unit], explain_limit: int | None = 16) -> None:
    view = ClusterView.of(ms, us)
    build, sched = timed(lambda: Scheduler(view))
    assert isinstance(sched, Scheduler)
    secs, plan = timed(lambda: sched.reconcile(explain_limit=explain_limit))
    placed = len(plan.schedules)  # type: ignore[attr-defined]
    unplaced = len(plan.unplaced)  # type: ignore[attr-defined]
    total = build + secs
    print(f"{name:<22} units={len(us):>6} placed={placed:>6} unplaced={unplaced:>6} "
          f"build={build:6.3f}s reconcile={secs:6.3f}s → {placed / total:>7,.0f} placed/s, "
          f"{(placed + unplaced) / total:>7,.0f} decided/s (build included)")
    # incremental: lose the busiest machine, start one more unit, then an idle pass
    busiest = max(ms, key=lambda m: sched.load_of(m.id)).id
    sched.remove_machine(busiest)
    t_lost, p1 = timed(lambda: sched.reconcile(explain_limit=explain_limit))
    sched.set_unit(Unit.make("late-arrival.service"))
    t_new, p2 = timed(lambda: sched.reconcile(explain_limit=explain_limit))
    t_idle, _ = timed(lambda: sched.reconcile(explain_limit=explain_limit))
    print(f"{'':<22} incremental: machine lost {t_lost * 1000:7.1f} ms "
          f"({len(p1.moved)} moved, {len(p1.evaluated)} evaluated); "  # type: ignore[attr-defined]
          f"unit started {t_new * 1000:6.2f} ms ({len(p2.evaluated)} evaluated); "  # type: ignore[attr-defined]
          f"idle {t_idle * 1000:5.2f} ms")


def main() -> None:
    n_units = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    n_machines = int(sys.argv[2]) if len(sys.argv) > 2 else 1_000
    ms = machines(n_machines)
    run("plain", ms, plain(n_units))
    run("templates", ms, templates(n_units))
    run("seed (apache+sidekick)", ms, seed(min(n_units, 2 * n_machines)))
    run("mixed", ms, mixed(n_units, ms))
    run("saturated, limit 16", ms, saturated(n_units), 16)
    run("saturated, limit 100", ms, saturated(n_units), 100)
    run("saturated, unlimited", ms, saturated(n_units), None)


if __name__ == "__main__":
    main()
