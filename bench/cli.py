"""``fleetctl list-units`` with 10,000 units through the API (issue #7).

A real API server (``flotte.api.make_app`` + ``serve`` on a unix socket) over
an in-memory registry holding 10,000 units placed on 100 machines, each with a
published state.  Measured:

* the API part — what ``list-units`` asks the server (every page of
  ``/fleet/v1/state`` and the machines), in one process, median of 5;
* the whole command — ``fleetctl list-units`` as a user runs it (a new Python
  process: interpreter and imports included), median of 5.

Target: at most 300 ms.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from flotte.api import make_app, serve
from flotte.api.client import Client
from flotte.engine.keyspace import Keys, MachineRecord, StateRecord, UnitRecord
from flotte.registry import Put, Registry, connect

N_UNITS = 10_000
N_MACHINES = 100
KEYS = Keys()


async def _populate(reg: Registry) -> None:
    ops: list[Put] = []
    for m in range(N_MACHINES):
        mid = f"{m:04x}" + "a" * 28
        ops.append(Put(KEYS.machine(mid), MachineRecord(mid, f"m{m}", f"10.0.0.{m}").encode()))
    for i in range(N_UNITS):
        name = f"app{i:05d}.service"
        mid = f"{i % N_MACHINES:04x}" + "a" * 28
        rec = UnitRecord.make(name, [("Service", "ExecStart", f"/bin/sleep {i}")])
        ops += [Put(KEYS.unit(name), rec.encode()), Put(KEYS.desired_state(name), b"launched"),
                Put(KEYS.scheduled(name), mid.encode()),
                Put(KEYS.state(name, mid), StateRecord(name, mid, rec.hash, "loaded", "active",
                                                       "running", "success", 1000 + i,
                                                       time.time(), True).encode())]
    for i in range(0, len(ops), 100):
        await reg.txn([], ops[i:i + 100])


def _serve(sock: Path, ready: threading.Event, stop: threading.Event) -> None:
    async def main() -> None:
        reg = await connect("memory://bench-cli")
        await _populate(reg)
        served = await serve(make_app(reg), [f"unix://{sock}"])
        ready.set()
        while not stop.is_set():
            await asyncio.sleep(0.05)
        await served.close()
        await reg.close()

    asyncio.run(main())


async def _api_round(endpoint: str) -> float:
    async with Client(endpoint) as c:
        t0 = time.perf_counter()
        states = await c.list_unit_states()
        await c.list_machines()
        took = time.perf_counter() - t0
    assert len(states) == N_UNITS, len(states)
    return took


def main() -> int:
    tmp = Path(tempfile.mkdtemp(prefix="flotte-bench-cli-"))
    sock = tmp / "api.sock"
    ready, stop = threading.Event(), threading.Event()
    server = threading.Thread(target=_serve, args=(sock, ready, stop), daemon=True)
    server.start()
    ready.wait(120)
    endpoint = f"unix://{sock}"
    try:
        api = [asyncio.run(_api_round(endpoint)) for _ in range(5)]
        fleetctl = str(Path(sys.executable).parent / "fleetctl")
        whole: list[float] = []
        for _ in range(5):
            t0 = time.perf_counter()
            out = subprocess.run([fleetctl, "--endpoint", endpoint, "list-units"],
                                 capture_output=True, text=True, env=dict(os.environ))
            whole.append(time.perf_counter() - t0)
            assert out.returncode == 0 and out.stdout.count("\n") == N_UNITS + 1, out.stderr
        t0 = time.perf_counter()
        subprocess.run([fleetctl, "version"], capture_output=True, check=True)
        startup = time.perf_counter() - t0
    finally:
        stop.set()
        server.join(30)
    api_ms, whole_ms = statistics.median(api) * 1e3, statistics.median(whole) * 1e3
    print(f"{N_UNITS:,} units on {N_MACHINES} machines, through the API on a unix socket")
    print(f"{'metric':52s}{'flotte':>12s}")
    print(f"{'API: every state page + machines (ms, median of 5)':52s}{api_ms:>12.0f}")
    print(f"{'fleetctl list-units, whole command (ms, median of 5)':52s}{whole_ms:>12.0f}")
    print(f"{'  of which interpreter + imports (fleetctl version)':52s}{startup * 1e3:>12.0f}")
    print(f"\n  {'PASS' if whole_ms <= 300 else 'MISS':12s} list-units (10,000) <= 300 ms"
          f"{'':10s}{whole_ms:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
