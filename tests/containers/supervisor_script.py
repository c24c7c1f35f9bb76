"""Drive a :class:`~flotte.supervisor.supervisor.Supervisor` inside a simulated machine.

The container tests run flotte inside a machine's namespaces (its
``/usr/bin/docker``, ``/etc/environment`` …), so a supervisor-level check
cannot run in the test process.  This script is started there with
``Machine.run``; it loads one unit and performs the operations named on its
command line, printing one JSON object per operation::

    supervisor_script.py STATE_DIR CGROUP_ROOT UNIT_FILE NAME OP…

    OP: start        start and wait for the job's result
        start&       start without waiting (the job's result is printed at the end)
        stop         stop and wait
        sleep:SECS
        state        print the state only

Each line: ``{"op", "result", "seconds", "active", "sub", "unit_result", "pids"}``
where ``pids`` lists the command lines of the unit's processes.  Processes a
``KillMode=none`` unit leaves behind are left alone, as the supervisor does.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

from flotte.supervisor.supervisor import Supervisor


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


async def main(state_dir: str, cgroup_root: str, unit_file: str, name: str,
               ops: list[str]) -> None:
    async with Supervisor(Path(state_dir), cgroup_root=cgroup_root) as sup:
        await sup.load(Path(unit_file), name=name)
        background: list[asyncio.Task[str]] = []
        for op in ops:
            t0 = time.monotonic()
            result = ""
            if op == "start":
                result = await sup.start(name)
            elif op == "start&":
                background.append(asyncio.create_task(sup.start(name)))
                await asyncio.sleep(0.1)
            elif op == "stop":
                result = await sup.stop(name)
            elif op.startswith("sleep:"):
                await asyncio.sleep(float(op.split(":", 1)[1]))
            st = sup.status(name)
            print(json.dumps({"op": op, "result": result, "seconds": time.monotonic() - t0,
                              "active": st["active_state"], "sub": st["sub_state"],
                              "unit_result": st.get("result"),
                              "pids": [_cmdline(p) for p in sup.unit_pids(name)]}), flush=True)
        for task in background:
            print(json.dumps({"op": "start& result", "result": await task}), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:]))
