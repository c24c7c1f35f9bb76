"""Unit files loaded per second (issue #2, target ≥ 20,000/s).

Measures, over 10,000 generated unit files written to a temp directory:

* lex only (``flotte.unit.parse``), single process;
* full load (read file + lex + schema + [X-Fleet] + verify), single process;
* full load on every core (``ProcessPoolExecutor``), what ``flotte verify``
  of a large tree and the API server's bulk submit can use;
* for reference, systemd 252 itself loading the same files
  (``systemd --test --user``; includes its start-up), when installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from corpus import corpus
from flotte.unit import load_text, parse

COUNT = 10_000
TARGET = 20_000


def _load_chunk(items: list[tuple[str, str]]) -> int:
    bad = 0
    for name, path in items:
        with open(path, "rb") as fh:
            unit = load_text(fh.read(), name, path=path)
        bad += unit.load_state != "loaded"
    return bad


def _best(fn, repeat: int = 3) -> float:  # type: ignore[no-untyped-def]
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def _systemd(tmp: Path, files: list[tuple[str, str]]) -> float | None:
    exe = "/lib/systemd/systemd"
    if not os.path.exists(exe) or os.geteuid() != 0 or shutil.which("setpriv") is None:
        return None
    units = tmp / "units"
    (tmp / "rt").mkdir()
    names = " ".join(n for n, _ in files)
    (units / "bench.target").write_text(f"[Unit]\nWants={names}\n")
    subprocess.run(["chown", "-R", "nobody", str(tmp)], check=True)
    os.chmod(tmp, 0o755)
    cmd = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "env", "-i",
           "PATH=/usr/bin:/bin", f"HOME={tmp}", f"SYSTEMD_UNIT_PATH={units}:",
           f"XDG_RUNTIME_DIR={tmp}/rt", exe, "--test", "--user", "--unit=bench.target",
           "--no-pager"]

    def run() -> None:
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)

    return _best(run, repeat=1)


def main() -> int:
    files = corpus(COUNT)
    with tempfile.TemporaryDirectory(prefix="flotte-bench-") as d:
        tmp = Path(d)
        units = tmp / "units"
        units.mkdir()
        items = []
        for name, text in files:
            p = units / name
            p.write_text(text)
            items.append((name, str(p)))
        texts = [t for _, t in files]

        rows = []
        dt = _best(lambda: [parse(t) for t in texts])
        rows.append(("flotte lex only (1 process)", dt))
        bad = _load_chunk(items)
        dt = _best(lambda: _load_chunk(items))
        rows.append(("flotte full load (1 process)", dt))
        workers = os.cpu_count() or 1
        chunks = [items[i::workers] for i in range(workers)]
        with ProcessPoolExecutor(workers) as pool:
            list(pool.map(_load_chunk, chunks))  # warm the workers
            dt = _best(lambda: list(pool.map(_load_chunk, chunks)))
        rows.append((f"flotte full load ({workers} processes)", dt))
        sd = _systemd(tmp, files)
        if sd is not None:
            rows.append(("systemd 252 --test (reference, incl. start-up)", sd))

    print(f"\nUnit files loaded per second, {COUNT} files ({bad} failed to load)\n")
    print(f"{'what':50} {'seconds':>9} {'units/s':>10}")
    print("-" * 71)
    for label, dt in rows:
        print(f"{label:50} {dt:9.3f} {COUNT / dt:10.0f}")
    best = max(COUNT / dt for label, dt in rows if label.startswith("flotte full"))
    verdict = "meets" if best >= TARGET else "MISSES"
    print(f"\ntarget {TARGET} units/s for a full load: {verdict} ({best:.0f}/s best)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
