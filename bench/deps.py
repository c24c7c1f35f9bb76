"""flotte's job engine: 1,000 units in a dependency tree, started by one request.

Next to the flat start of ``bench/supervisor.py`` (1,000 independent units,
1,000 start requests at once, each taking the supervisor's fast path), the
same 1,000 ``/bin/sleep 3600`` services are loaded as a tree with fan-out 10
(1 → 10 → 100 → 889 units, 4 levels): every unit ``Wants=`` its children, and
every child ``Requires=`` and is ordered ``After=`` its parent.  One ``start``
of the root builds a transaction of 1,000 jobs in 4 waves; a wave may only
begin once every start job of the wave before it has finished.

Both layouts run in the same flotte daemon program (``bench/supervisor.py
--flotte-daemon … flat|tree``) and are observed the same way, from outside
through ``/proc``: from the moment the start command is sent to the daemon
until 1,000 ``sleep`` children exist.  Each is measured ``ROUNDS`` times
(stop everything, wait for the processes to be gone, start again); the table
shows the median and the best round.  The daemon also reports how long
planning the tree's transaction takes on its own (``build_transaction``).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from supervisor import N_SERVICES, START_TIMEOUT, Children, Flotte, _sweep

ROUNDS = 3


class FlotteTree(Flotte):
    layout = "tree"


def _measure(cls: type[Flotte]) -> dict[str, object]:
    out: dict[str, object] = {"rounds": [], "note": ""}
    rounds: list[float] = out["rounds"]  # type: ignore[assignment]
    with tempfile.TemporaryDirectory(prefix=f"fb-deps-{cls.layout}-") as tmp:
        d = cls(Path(tmp))
        try:
            d.launch()
            kids = Children(d.pid)
            loaded = d.until("loaded", START_TIMEOUT)
            out["plan_s"], out["jobs"], out["waves"] = (loaded["plan_s"], loaded["jobs"],
                                                        loaded["waves"])
            t = kids.wait_count(N_SERVICES, START_TIMEOUT)
            out["cold"] = None if t is None else t - d.launched
            d.wait_ready(START_TIMEOUT)
            for _ in range(ROUNDS):
                d.stop_all()
                if kids.wait_count(0, 60.0, 0.01, at_most=True) is None:
                    out["note"] = f"stop left {len(kids.sleeping)} running"
                    break
                time.sleep(0.5)
                kids.poll()
                t0 = time.perf_counter()
                d.start_all()
                t = kids.wait_count(N_SERVICES, START_TIMEOUT)
                if t is None:
                    out["note"] = f"only {len(kids.sleeping)} ran"
                    break
                rounds.append(t - t0)
                d.until("started", START_TIMEOUT)
            out["after"] = d.verify()
        except Exception as exc:
            out["note"] = f"error: {exc!r}"
        finally:
            d.shutdown()
            _sweep()
    return out


def _fmt(v: object, scale: float = 1.0, nd: int = 2) -> str:
    return "n/a" if not isinstance(v, float) else f"{v * scale:.{nd}f}"


def main() -> int:
    results = {}
    for cls, label in ((Flotte, "flat"), (FlotteTree, "tree")):
        print(f"  {label} …", flush=True)
        results[label] = _measure(cls)
    flat, tree = results["flat"], results["tree"]

    def med(r: dict[str, object]) -> str:
        rs = r["rounds"]
        assert isinstance(rs, list)
        return "n/a" if not rs else f"{statistics.median(rs):.2f} [{min(rs):.2f}]"

    rows = [
        ("start request -> all running (s), median [best]", med(flat), med(tree)),
        ("cold incl. daemon start (s)", _fmt(flat.get("cold")), _fmt(tree.get("cold"))),
        ("requests sent", f"{N_SERVICES} (one per unit)", "1 (the root)"),
        ("jobs in the transaction / waves", "1 / 1 each",
         f"{tree.get('jobs')} / {tree.get('waves')}"),
        ("planning the transaction (ms)", "fast path", _fmt(tree.get("plan_s"), 1e3, 1)),
        ("states afterwards", str(flat.get("after")), str(tree.get("after"))),
    ]
    w0 = max(len(r[0]) for r in rows) + 2
    w1 = max(24, *(len(r[1]) + 2 for r in rows))
    w2 = max(24, *(len(r[2]) + 2 for r in rows))
    print(f"{N_SERVICES} x /bin/sleep 3600; {ROUNDS} rounds each")
    print("metric".ljust(w0) + "flat (#4)".rjust(w1) + "tree, fan-out 10".rjust(w2))
    for label, a, b in rows:
        print(label.ljust(w0) + a.rjust(w1) + b.rjust(w2))
    for name, r in results.items():
        if r["note"]:
            print(f"note {name}: {r['note']}")
    print("tree: every unit Wants= its 10 children; each child Requires= and is After= its "
          "parent;\nstart/stop of the root is the only request. Observed from /proc as in the "
          "supervisor benchmark.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
