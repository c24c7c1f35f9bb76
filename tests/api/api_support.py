"""Seeding the keyspace the way the engine and agents would (import as ``from api_support import …``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from flotte.engine.keyspace import (
    Keys,
    MachineRecord,
    StateRecord,
    UnitRecord,
    encode_reasons,
)
from flotte.registry import Registry

KEYS = Keys()
SLEEP = (("Service", "ExecStart", "/bin/sleep 3000"),)


def unit_body(desired: str | None = "launched",
              options: Iterable[tuple[str, str, str]] = SLEEP, **extra: object) -> dict[str, object]:
    body: dict[str, object] = {"options": [{"section": s, "name": n, "value": v}
                                           for s, n, v in options]}
    if desired is not None:
        body["desiredState"] = desired
    body.update(extra)
    return body


async def add_unit(reg: Registry, name: str, desired: str = "launched",
                   options: Iterable[tuple[str, str, str]] = SLEEP) -> UnitRecord:
    record = UnitRecord.make(name, options)
    await reg.put(KEYS.unit(name), record.encode())
    await reg.put(KEYS.desired_state(name), desired.encode())
    return record


async def schedule(reg: Registry, name: str, machine_id: str) -> None:
    await reg.put(KEYS.scheduled(name), machine_id.encode())


async def publish_state(reg: Registry, name: str, machine_id: str, *, launched: bool = True,
                        active: str = "active", sub: str = "running",
                        unit_hash: str = "abc") -> StateRecord:
    state = StateRecord(name, machine_id, unit_hash, "loaded", active, sub, "success", 42,
                        1700000000.0, launched)
    await reg.put(KEYS.state(name, machine_id), state.encode())
    return state


async def add_machine(reg: Registry, machine_id: str, ip: str = "10.0.0.1",
                      metadata: Mapping[str, str] | None = None) -> MachineRecord:
    record = MachineRecord(machine_id, f"host-{machine_id}", ip, dict(metadata or {}), "0.1.0")
    await reg.put(KEYS.machine(machine_id), record.encode())
    return record


async def set_reasons(reg: Registry, name: str, reasons: Mapping[str, str]) -> None:
    await reg.put(KEYS.reason(name), encode_reasons(reasons))
