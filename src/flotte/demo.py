"""``make run``: a one-machine flotte cluster running the example units.

Starts ``flotte up`` in this process (embedded registry in ``.demo/``), then
drives it with the real ``fleetctl`` the way an operator would:

1. checks the seed's unit files (chapters 7–10 of the CoreOS guide) as
   systemd and fleet would read them, and reports the guide's own mistakes;
2. ``fleetctl start hello.service web@8080.service web-announce@8080.service``
   (a template instance with ``Conflicts=`` and its sidekick, which announces
   the page in the registry while it answers);
3. ``fleetctl start web@8081.service`` — which cannot be placed on one machine
   because of ``Conflicts=``, and says so instead of hanging as fleet did;
4. prints what to try next and runs until Ctrl-C, then stops everything.

``FLOTTE_DEMO_SECONDS=N`` stops it after N seconds, ``FLOTTE_DEMO_STATE`` and
``FLOTTE_DEMO_PORT`` move its state and web port (used by the tests).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
from pathlib import Path

from flotte.daemon import DaemonConfig, run
from flotte.unit import Unit, load_unit

ROOT = Path(__file__).resolve().parents[2]
SEED = ROOT / "examples" / "seed"
EXAMPLES = ROOT / "examples" / "demo"
INSTANCES = {"ch08": ("8080",), "ch09": ("8080", "8081"), "ch10": ("8080", "8081", "8082")}


def check_seed() -> tuple[int, list[str]]:
    """Load every seed unit (templates through their instances); the guide's mistakes."""
    count = 0
    problems: list[str] = []
    for chapter in sorted(p for p in SEED.iterdir() if p.is_dir()):
        for path in sorted(chapter.rglob("*.service")):
            names = [path.name]
            if path.name.endswith("@.service"):
                names = [path.name.replace("@.", f"@{i}.") for i in
                         INSTANCES.get(chapter.name, ("1",))]
            for name in names:
                unit: Unit = load_unit(name, [str(path.parent)])
                count += 1
                for d in unit.diagnostics:
                    problems.append(d.render().replace(f"{SEED}/", ""))
    return count, sorted(set(problems))


def _bin(name: str) -> str:
    found = Path(sys.executable).parent / name
    return str(found) if found.exists() else (shutil.which(name) or name)


def prepare_units(state: Path, endpoint: str) -> Path:
    """The example units with the demo's ``flotte`` and socket filled in."""
    out = state / "units"
    out.mkdir(parents=True, exist_ok=True)
    for src in EXAMPLES.glob("*.service"):
        text = src.read_text().replace("@FLOTTE@", _bin("flotte")).replace("@ENDPOINT@", endpoint)
        (out / src.name).write_text(text)
    return out


async def fleetctl(endpoint: str, *args: str) -> int:
    print(f"\n$ fleetctl {' '.join(args)}", flush=True)
    proc = await asyncio.create_subprocess_exec(
        _bin("fleetctl"), "--endpoint", endpoint, *args,
        env={**os.environ, "FLOTTE_ENDPOINT": endpoint})
    return await proc.wait()


async def demo(state: Path, seconds: float | None) -> int:
    endpoint = f"unix://{state / 'flotte.sock'}"
    stop = asyncio.Event()
    ready = asyncio.Event()

    def announce(line: str) -> None:
        print(line, flush=True)
        if line.startswith("listening on"):
            ready.set()

    cfg = DaemonConfig(state_dir=state, registry=f"sqlite:///{state / 'registry.db'}",
                       hostname=os.uname().nodename)
    daemon = asyncio.create_task(run(cfg, announce=announce, stop=stop))
    waiter = asyncio.ensure_future(ready.wait())
    await asyncio.wait({daemon, waiter}, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    if daemon.done():
        return daemon.result()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    units = prepare_units(state, endpoint)
    port = int(os.environ.get("FLOTTE_DEMO_PORT", "8080"))
    await fleetctl(endpoint, "start", *(str(units / n) for n in
                                        ("hello.service", f"web@{port}.service",
                                         f"web-announce@{port}.service")))
    await fleetctl(endpoint, "list-units")
    await fleetctl(endpoint, "start", "--block-attempts=3", str(units / f"web@{port + 1}.service"))
    print(f"""
flotte is running a one-machine cluster (state in {state}). Try, in another terminal:

  export FLOTTE_ENDPOINT={endpoint}
  {_bin('fleetctl')} list-unit-files
  {_bin('fleetctl')} status web@{port}.service
  {_bin('fleetctl')} journal -f hello.service
  {_bin('flotte')} kv ls --recursive /services
  curl http://127.0.0.1:{port}/
  {_bin('fleetctl')} stop web@{port}.service      # its sidekick stops with it (BindsTo=)

Ctrl-C stops the units and the daemon.""", flush=True)
    stopper = loop.call_later(seconds, stop.set) if seconds else None
    code = await daemon
    if stopper is not None:
        stopper.cancel()
    print("stopped cleanly", flush=True)
    return code


def main() -> int:
    count, problems = check_seed()
    print(f"checked {count} unit files of the seed (chapters 7-10) as systemd and fleet "
          f"would; the guide's own mistakes:")
    for p in problems:
        print(f"  {p}")
    state = Path(os.environ.get("FLOTTE_DEMO_STATE", ROOT / ".demo"))
    seconds = float(os.environ["FLOTTE_DEMO_SECONDS"]) if os.environ.get(
        "FLOTTE_DEMO_SECONDS") else None
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(demo(state, seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
