"""A real API server for CLI tests, and a fake engine standing in for the real one.

:class:`Cluster` runs ``make_app`` + ``serve`` on a ``memory://`` registry,
listening on a unix socket, in a background thread's event loop, so that
``CliRunner`` can drive the CLI (which runs its own ``asyncio.run``) in the
test's thread against it.  Seeding goes through the keyspace, as the engine
and the agents would write it (``tests/api/api_support.py`` does the same).

:class:`FakeEngine` is test scaffolding until the engine and agents exist:
every few milliseconds it reads desired states and writes what the engine
(schedule, reasons) and the agents (state records) would: least-loaded
placement honouring ``Conflicts=``, ``launched`` → active/running, ``loaded``
→ inactive/dead, ``inactive`` → unscheduled, destroyed → state removed.
Units matching a ``unplaceable`` glob get reasons instead of a machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import os
import shutil
import tempfile
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from click.testing import Result

from flotte.api import make_app, serve
from flotte.api.server import Served
from flotte.engine.keyspace import (
    Keys,
    MachineRecord,
    StateRecord,
    UnitRecord,
    decode_reasons,
    encode_reasons,
)
from flotte.registry import Registry, connect
from flotte.unit.parser import parse

KEYS = Keys()
T = TypeVar("T")
#: The ``fleetctl`` fixture: ``fleetctl(*args, env=…, prog=…)`` → click's Result.
Run = Callable[..., Result]

M1 = "113f16a7f5d34a8a9b1b5e1a0c1d2e3f"
M2 = "85c0c595a1b2c3d4e5f60718293a4b5c"
M3 = "e793afb9c8d7e6f5a4b3c2d1e0f9a8b7"
SINCE = 1700000000.0

HELLO = "[Unit]\nDescription=Hello World\n\n[Service]\nExecStart=/bin/sleep 3000\n"


class FakeJournal:
    """A journal source: fixed lines per unit (``follow`` ends after them)."""

    def __init__(self) -> None:
        self.lines: dict[str, list[str]] = {}

    async def open_journal(self, unit: str, *, lines: int | None, follow: bool
                           ) -> AsyncIterator[str] | None:
        if unit not in self.lines:
            return None
        have = self.lines[unit]
        chosen = have if lines is None else have[len(have) - lines:] if lines else []

        async def gen() -> AsyncIterator[str]:
            for line in chosen:
                yield line
            if follow:
                yield "-- followed --"

        return gen()


@dataclass
class FakeEngine:
    """Stands in for engine + agents (see the module docs)."""

    registry: Registry
    interval: float = 0.01
    unplaceable: dict[str, dict[str, str]] = field(default_factory=dict)  # glob → reasons
    failing: set[str] = field(default_factory=set)  # launched → failed
    sticky: set[str] = field(default_factory=set)  # destroyed, but the state never goes
    pin: dict[str, str] = field(default_factory=dict)  # glob → the machine to use if free

    async def run(self) -> None:
        while True:
            await self.step()
            await asyncio.sleep(self.interval)

    async def _leaves(self, directory: str) -> dict[str, bytes]:
        return {Keys.leaf(kv.key, directory): kv.value
                for kv in await self.registry.range(directory)}

    def _reasons_for(self, name: str) -> dict[str, str] | None:
        for glob, reasons in self.unplaceable.items():
            if fnmatch.fnmatchcase(name, glob):
                return reasons
        return None

    async def step(self) -> None:
        reg = self.registry
        units = {n: UnitRecord.decode(v) for n, v in (await self._leaves(KEYS.units)).items()}
        desired = {n: v.decode() for n, v in (await self._leaves(KEYS.desired)).items()}
        sched = {n: v.decode() for n, v in (await self._leaves(KEYS.schedule)).items()}
        states: dict[str, dict[str, bytes]] = {}  # unit → machine → state
        for leaf, value in (await self._leaves(KEYS.states)).items():
            unit_name, _, machine = leaf.rpartition("/")
            states.setdefault(unit_name, {})[machine] = value
        reasons = await self._leaves(KEYS.reasons)
        machines = sorted(await self._leaves(KEYS.machines))
        for name in sorted(units):
            want = desired.get(name, "inactive")
            if want == "inactive" or "@." in name:
                if name in sched:
                    await reg.delete(KEYS.scheduled(name))
                    del sched[name]
                if name in states:
                    await reg.delete(KEYS.unit_states(name), prefix=True)
                continue
            why = self._reasons_for(name)
            if why is not None:
                if name not in reasons or decode_reasons(reasons[name]) != why:
                    await reg.put(KEYS.reason(name), encode_reasons(why))
                continue
            mid, why = (sched[name], {}) if name in sched else \
                self._place(units[name], sched, machines, self._pinned(name))
            if mid is None:
                if name not in reasons or decode_reasons(reasons[name]) != why:
                    await reg.put(KEYS.reason(name), encode_reasons(why))
                continue
            if sched.get(name) != mid:
                await reg.put(KEYS.scheduled(name), mid.encode())
                sched[name] = mid
                if name in reasons:
                    await reg.delete(KEYS.reason(name))
            launched = want == "launched"
            active, sub, result = ("active", "running", "success") if launched else \
                ("inactive", "dead", "success")
            if launched and name in self.failing:
                active, sub, result = "failed", "failed", "exit-code"
            state = StateRecord(name, mid, units[name].hash, "loaded", active, sub, result,
                                4242 if active == "active" else 0, SINCE, launched)
            if states.get(name, {}).get(mid) != state.encode():
                await reg.put(KEYS.state(name, mid), state.encode())
        for name in states:
            if name not in units and name not in self.sticky:
                await reg.delete(KEYS.unit_states(name), prefix=True)

    def _pinned(self, name: str) -> str | None:
        return next((m for g, m in self.pin.items() if fnmatch.fnmatchcase(name, g)), None)

    @staticmethod
    def _place(rec: UnitRecord, sched: Mapping[str, str], machines: list[str],
               pinned: str | None) -> tuple[str | None, dict[str, str]]:
        """Least-loaded machine without a conflicting unit (or ``pinned``), else the reasons."""
        if not machines:
            return None, {"": "no machines"}
        conflicts = [v for s, k, v in rec.options if s == "X-Fleet" and k == "Conflicts"]
        load = {m: 0 for m in machines}
        why: dict[str, str] = {}
        for other, mid in sorted(sched.items()):
            if mid in load:
                load[mid] += 1
            glob = next((g for g in conflicts if fnmatch.fnmatchcase(other, g)), None)
            if other != rec.name and glob and mid not in why:
                why[mid] = f"conflicts with {other} (Conflicts={glob})"
        free = [m for m in machines if m not in why]
        if pinned in free:
            return pinned, {}
        if free:
            return min(free, key=lambda m: (load[m], m)), {}
        return None, why


class Cluster:
    """The API on a unix socket in a background thread (see the module docs)."""

    def __init__(self) -> None:
        # Short path: unix socket paths are limited to 108 bytes.
        self.dir = tempfile.mkdtemp(prefix="flcli", dir="/tmp")
        self.endpoint = f"unix://{self.dir}/flotte.sock"
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.journal = FakeJournal()
        self.engine: FakeEngine | None = None
        self._engine_task: asyncio.Task[None] | None = None
        self._extra: list[Served] = []
        self.registry: Registry
        self.served: Served
        self.call(self._start())

    async def _start(self) -> None:
        self.registry = await connect("memory://")
        app = make_app(self.registry, no_auth=True, journal=self.journal, heartbeat=0.2)
        self.served = await serve(app, [self.endpoint], shutdown_timeout=0.5)

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        async def stop() -> None:
            if self._engine_task is not None:
                self._engine_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._engine_task
            for extra in self._extra:
                await extra.close()
            await self.served.close()
            await self.registry.close()

        try:
            self.call(stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)
            self.loop.close()
            shutil.rmtree(self.dir, ignore_errors=True)

    def serve_tcp(self, token: str) -> str:
        """Also serve the API on TCP (loopback, any port) with ``token``; returns its URL."""
        async def go() -> str:
            app = make_app(self.registry, token=token, journal=self.journal)
            served = await serve(app, ["http://127.0.0.1:0"], shutdown_timeout=0.5)
            self._extra.append(served)
            return served.urls[0]

        return self.call(go())

    # -- the fake engine ----------------------------------------------------------------------
    def start_engine(self, **kw: Any) -> FakeEngine:
        engine = FakeEngine(self.registry, **kw)

        async def go() -> asyncio.Task[None]:
            return asyncio.create_task(engine.run())

        self._engine_task = self.call(go())
        self.engine = engine
        return engine

    def settle(self) -> None:
        """One engine step now (tests that seed then list without waiting)."""
        assert self.engine is not None
        self.call(self.engine.step())

    # -- seeding ------------------------------------------------------------------------------
    def add_machine(self, machine_id: str, ip: str = "", metadata: Mapping[str, str] | None = None,
                    hostname: str = "") -> None:
        record = MachineRecord(machine_id, hostname or f"core-{machine_id[:4]}", ip,
                               dict(metadata or {}), "0.1.0")
        self.call(self.registry.put(KEYS.machine(machine_id), record.encode()))

    def add_unit(self, name: str, options: Iterable[tuple[str, str, str]],
                 desired: str = "inactive") -> UnitRecord:
        record = UnitRecord.make(name, options)

        async def put() -> None:
            await self.registry.put(KEYS.unit(name), record.encode())
            await self.registry.put(KEYS.desired_state(name), desired.encode())

        self.call(put())
        return record

    def place(self, name: str, machine_id: str, *, launched: bool = True,
              active: str = "active", sub: str = "running", unit_hash: str | None = None,
              load: str = "loaded") -> None:
        """Schedule ``name`` on ``machine_id`` and publish its state there."""
        async def put() -> None:
            kv = await self.registry.get(KEYS.unit(name))
            h = unit_hash if unit_hash is not None else \
                UnitRecord.decode(kv.value).hash if kv else ""
            await self.registry.put(KEYS.scheduled(name), machine_id.encode())
            state = StateRecord(name, machine_id, h, load, active, sub, "success",
                                4242 if active == "active" else 0, SINCE, launched)
            await self.registry.put(KEYS.state(name, machine_id), state.encode())

        self.call(put())

    def publish_state(self, name: str, machine_id: str, **kw: Any) -> None:
        """A state record without a unit or schedule (a destroyed unit still stopping)."""
        state = StateRecord(name, machine_id, kw.get("unit_hash", ""), "loaded",
                            kw.get("active", "active"), kw.get("sub", "running"), "success",
                            0, SINCE, True)
        self.call(self.registry.put(KEYS.state(name, machine_id), state.encode()))

    def set_reasons(self, name: str, reasons: Mapping[str, str]) -> None:
        self.call(self.registry.put(KEYS.reason(name), encode_reasons(reasons)))

    def desired(self, name: str) -> str | None:
        kv = self.call(self.registry.get(KEYS.desired_state(name)))
        return kv.value.decode() if kv else None

    def unit_names(self) -> list[str]:
        return sorted(Keys.leaf(kv.key, KEYS.units)
                      for kv in self.call(self.registry.range(KEYS.units)))


def options_of(text: str) -> list[tuple[str, str, str]]:
    """The options a unit file's text lexes to (go-systemd, as the CLI sends them)."""
    return [(o.section, o.key, o.value) for o in parse(text, "go-systemd").options]


def write(path: str | os.PathLike[str], text: str) -> str:
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
    return str(path)
