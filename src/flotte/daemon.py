"""The flotte daemon: registry connection, engine, agent, supervisor and API in one process.

``flotte up`` runs it with the embedded registry (``sqlite:///<state>/registry.db``):
a one-machine cluster with nothing else installed.  ``flotte agent
--registry etcd://…`` runs it as one member of a cluster.  Every member runs
an engine candidate; the registry elects one leader.

Start-up order matters and is the reverse of shutdown:

1. registry, then the machine's presence (a duplicate machine id stops here);
2. supervisor, mirror, agent, engine;
3. API listeners, each announced as ``listening on ADDR`` once it accepts.

On SIGTERM/SIGINT: listeners close, the engine resigns, the agent stops its
units and deletes its presence (the cluster reschedules at once), the
registry closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import secrets
import signal
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

from flotte.agent.agent import Agent, AgentOptions, DuplicateMachine
from flotte.agent.identity import Identity, resolve
from flotte.api import make_app, serve
from flotte.api.client import ApiError, Client
from flotte.api.context import api_context
from flotte.api.server import store_token
from flotte.engine.engine import Engine
from flotte.engine.keyspace import Keys, MachineRecord, RecordError, StateRecord
from flotte.engine.mirror import ClusterMirror
from flotte.registry import Put, Registry, connect, create_revision
from flotte.supervisor.supervisor import Supervisor
from flotte.unit.specifiers import SpecifierContext

log = logging.getLogger("flotte.daemon")

@dataclass
class DaemonConfig:
    state_dir: Path
    registry: str
    listen: list[str] = field(default_factory=list)
    no_auth: bool = False
    machine_id: str | None = None
    hostname: str | None = None
    public_ip: str | None = None
    metadata: str = ""
    ttl: float = 10.0
    prefix: str = "/flotte"
    engine: bool = True
    takeover_grace: float = 0.0
    fence_after: float | None = None
    max_unavailable: str = "1"

    def listen_addresses(self) -> list[str]:
        return self.listen or [f"unix://{self.state_dir / 'flotte.sock'}"]


class DaemonError(RuntimeError):
    """A start-up problem the user must fix (the message says how)."""


async def cluster_token(registry: Registry, keys: Keys) -> str:
    """The token every member's TCP API accepts (created once, stored in the registry).

    One token per cluster, because members call each other's APIs (journal of
    a unit on another machine) and an operator's ``--token`` should work on any
    member.  Whoever can read the registry is trusted with it.
    """
    key = f"{keys.prefix}/cluster/api-token"
    token = secrets.token_urlsafe(32)
    res = await registry.txn([create_revision(key) == 0], [Put(key, token.encode())],
                             [])
    if res.succeeded:
        return token
    kv = await registry.get(key)
    assert kv is not None
    return kv.value.decode()


class JournalProxy:
    """Serves a unit's journal from this machine, or from the member that runs it."""

    def __init__(self, agent: Agent, registry: Registry, keys: Keys, token: str) -> None:
        self.agent = agent
        self.registry = registry
        self.keys = keys
        self.token = token

    async def open_journal(self, unit: str, *, lines: int | None, follow: bool
                           ) -> AsyncIterator[str] | None:
        sup = self.agent.sup
        store = sup.journal_store
        if store is not None and (unit in sup.units or unit in store.units()):
            return self._local(unit, lines, follow)
        machine: MachineRecord | None = None
        for kv in await self.registry.range(self.keys.unit_states(unit)):
            try:
                state = StateRecord.decode(kv.value, kv.key)
                mkv = await self.registry.get(self.keys.machine(state.machine_id))
                if mkv is not None and state.machine_id != self.agent.identity.machine_id:
                    machine = MachineRecord.decode(mkv.value, mkv.key)
            except RecordError:
                continue
            if machine is not None and machine.api:
                break
        if machine is None or not machine.api:
            return None
        return self._remote(machine.api, unit, lines, follow)

    async def _local(self, unit: str, lines: int | None, follow: bool) -> AsyncIterator[str]:
        store = self.agent.sup.journal_store
        assert store is not None
        if follow:
            async with store.follow(unit, lines=lines if lines is not None else 10) as f:
                async for entry in f:
                    yield entry.format()
        else:
            for entry in store.read(unit, lines=lines):
                yield entry.format()

    async def _remote(self, api: str, unit: str, lines: int | None, follow: bool
                      ) -> AsyncIterator[str]:
        async with Client(api, token=self.token) as client:
            try:
                async for line in client.journal(unit, lines=lines if lines is not None else 10,
                                                 follow=follow):
                    yield line
            except ApiError as exc:
                yield f"-- journal of {unit} on {api} unavailable: {exc} --"


def _tcp_url(listen: list[str]) -> str:
    for url in listen:
        if url.startswith("http://"):
            return url
    return ""


async def run(cfg: DaemonConfig, *, announce: Callable[[str], None] | None = None,
              stop: asyncio.Event | None = None) -> int:
    """Run the daemon until ``stop`` is set (or SIGTERM/SIGINT); returns an exit status."""
    say = announce or (lambda line: print(line, flush=True))
    keys = Keys(cfg.prefix)
    cfg.state_dir.mkdir(parents=True, exist_ok=True)
    identity: Identity = resolve(cfg.state_dir, machine_id_override=cfg.machine_id,
                                 hostname=cfg.hostname, public_ip=cfg.public_ip,
                                 metadata=cfg.metadata)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    async with connect(cfg.registry) as registry:
        token = await cluster_token(registry, keys)
        store_token(cfg.state_dir, token)
        ctx = dataclasses.replace(SpecifierContext.from_host(),
                                  machine_id=identity.machine_id, hostname=identity.hostname)
        async with Supervisor(cfg.state_dir / "supervisor", machine=ctx,
                              cgroup_root=f"flotte-{identity.short_id}") as sup:
            mirror = ClusterMirror(registry, keys)
            await mirror.start()
            agent = Agent(registry, sup, identity, keys=keys, mirror=mirror, options=AgentOptions(
                ttl=cfg.ttl, takeover_grace=cfg.takeover_grace, fence_after=cfg.fence_after,
                lease_file=cfg.state_dir / "presence-lease",
                max_unavailable=int(cfg.max_unavailable) if cfg.max_unavailable.isdigit()
                else cfg.max_unavailable))
            app = make_app(registry, keys=keys, token=token, no_auth=cfg.no_auth,
                           journal=JournalProxy(agent, registry, keys, token))
            api_context(app).ready = False  # 503 until this machine has joined
            served = await serve(app, cfg.listen_addresses())
            # other members reach this one's API over TCP (journal of a unit running here)
            agent.options.api_url = _tcp_url(served.urls)
            try:
                await agent.start()
            except DuplicateMachine as exc:
                await served.close()
                await mirror.close()
                raise DaemonError(str(exc)) from None
            engine_task: asyncio.Task[None] | None = None
            if cfg.engine:
                engine = Engine(registry, mirror, identity.machine_id, keys=keys, ttl=cfg.ttl)
                engine_task = asyncio.create_task(engine.run(), name="engine")
            api_context(app).ready = True
            for url in served.urls:
                say(f"listening on {url}")
            try:
                await stop.wait()
            finally:
                say("stopping")
                await served.close()
                if engine_task is not None:
                    engine_task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await engine_task
                await agent.stop(purge=True)
                await mirror.close()
    return 0

