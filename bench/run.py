"""``make bench``: every benchmark, one after the other, each printing its table.

Run one alone with ``python bench/run.py unit_load`` (or ``registry``, ``supervisor``,
``deps``, ``cluster``, ``confd``, ``discovery``).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

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
        # by path, under a name of its own: a bench that puts tests/ on sys.path
        # (confd) makes ``discovery`` the tests package, not bench/discovery.py
        spec = importlib.util.spec_from_file_location(f"flotte_bench_{name}", HERE / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        status |= module.main()
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
