"""``make bench``: every benchmark, one after the other, each printing its table.

Run one alone with ``python bench/run.py unit_load`` (or ``registry``, ``supervisor``,
``deps``, ``cluster``, ``confd``, ``discovery``).
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

BENCHMARKS = ["unit_load", "registry", "supervisor", "deps", "cluster", "cli", "confd",
              "discovery"]


def main(argv: list[str]) -> int:
    names = argv or BENCHMARKS
    status = 0
    for name in names:
        if name not in BENCHMARKS:
            print(f"unknown benchmark {name!r}; choose from {', '.join(BENCHMARKS)}")
            return 2
        print(f"\n=== {name} " + "=" * (60 - len(name)))
        module = importlib.import_module(name)
        status |= module.main()
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
