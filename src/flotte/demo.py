"""``make run``: what flotte can do today with the seed's example units.

The seed (chapters 7–10 of a CoreOS guide) is the scenario flotte must run.
Until the cluster layers exist, the demo loads every unit file of the seed
exactly as systemd (and, for ``[X-Fleet]``, fleet) would, instantiates the
templates the way the guide does (``apache@8080.service`` …), and reports
what it checked and which of the guide's own mistakes it found.
"""

from __future__ import annotations

import sys
from pathlib import Path

from flotte.unit import Unit, load_unit
from flotte.unit.values import USEC_INFINITY, format_timespan

SEED = Path(__file__).resolve().parents[2] / "examples" / "seed"
INSTANCES = {"ch08": ("8080",), "ch09": ("8080", "8081"), "ch10": ("8080", "8081", "8082")}


def _summary(unit: Unit) -> str:
    parts = []
    typ = unit.value("Service", "Type") if unit.unit_type == "service" else "-"
    parts.append(f"Type={typ}")
    t = unit.value("Service", "TimeoutStartSec")
    parts.append("TimeoutStartSec=" + ("infinity" if t == USEC_INFINITY else format_timespan(t)))
    if unit.value("Service", "Restart") != "no":
        parts.append(f"Restart={unit.value('Service', 'Restart')}")
    deps = [f"{k}={','.join(unit.value('Unit', k))}" for k in ("Requires", "BindsTo")
            if unit.value("Unit", k)]
    parts.extend(deps)
    xf = unit.x_fleet
    if xf.conflicts:
        parts.append(f"X-Fleet Conflicts={' '.join(xf.conflicts)}")
    if xf.machine_of:
        parts.append(f"X-Fleet MachineOf={' '.join(xf.machine_of)}")
    return "; ".join(parts)


def main(argv: list[str] | None = None) -> int:
    root = Path(argv[0]) if argv else SEED
    if not root.is_dir():
        print(f"flotte demo: {root} is not a directory of unit files", file=sys.stderr)
        return 2
    checked = failed = 0
    print(f"flotte: loading the seed's unit files from {root}\n")
    for chapter in sorted(p for p in root.iterdir() if p.is_dir()):
        files = sorted(chapter.glob("*.service")) + sorted(chapter.glob("instances/*.service"))
        # Templates are checked through their instances, as systemd runs them.
        names = [(f.name, f.parent) for f in files if not f.name.endswith("@.service")]
        for tmpl in [f for f in files if f.name.endswith("@.service") and f.parent == chapter]:
            for inst in INSTANCES.get(chapter.name, ()):
                names.append((tmpl.name.replace("@.service", f"@{inst}.service"), chapter))
        print(f"== {chapter.name} ==")
        for name, directory in names:
            unit = load_unit(name, [str(directory)])
            checked += 1
            ok = unit.load_state == "loaded"
            failed += not ok
            shown = name if directory == chapter else f"instances/{name}"
            print(f"  {shown:38} {unit.load_state:11} {_summary(unit) if ok else ''}")
            for d in unit.diagnostics:
                where = f"line {d.line}" if d.line else "unit"
                print(f"      {d.severity.value} ({where}): {d.message}")
                if d.fix:
                    print(f"        fix: {d.fix}")
        print()
    print(f"checked {checked} units (templates, their instances and the guide's symlinked "
          f"instances): {checked - failed} loaded, {failed} failed.")
    print("Warnings above are the guide's own mistakes, reported as systemd/fleet would.")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
