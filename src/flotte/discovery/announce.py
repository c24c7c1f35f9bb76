"""``flotte announce``: the seed's "secretary" sidekick as one command.

The seed (chapter 9) runs, per service instance, a bash loop::

    while true; do
      curl -f ${COREOS_PUBLIC_IPV4}:%i
      if [ $? -eq 0 ]; then etcdctl set /services/apache/${COREOS_PUBLIC_IPV4} '{…}' --ttl 30
      else etcdctl rm /services/apache/${COREOS_PUBLIC_IPV4}; fi
      sleep 20
    done

with ``ExecStop=etcdctl rm …``.  What that loop gets wrong, and this module
does instead:

* it announces on the first healthy check and withdraws on the first failed
  one, like the loop, but checks can run more often than refreshes
  (``check_interval``), so a dead app leaves the pool in seconds, not 20 s;
* a refresh is not a write: on a registry it is a lease keep-alive, so
  watchers (confd, the proxy) are not woken every 20 s by nothing
  (deis/deis#3505, confd issue #390);
* ``etcdctl`` failing (registry down) made the loop print and carry on, but a
  ``set`` that fails is retried quickly, not after a full sleep;
* SIGTERM deletes the key *then* exits 0, so ``systemctl stop`` does not
  leave a stale backend for up to the TTL, and needs no ``ExecStop=``.

The decisions are a pure state machine (:func:`on_check`, :func:`on_write`,
:func:`on_stop`, :func:`next_delay`) so every transition is unit-tested;
:class:`Announcer` is the loop that performs them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

import aiohttp

from flotte.discovery.kv import KEY_NOT_FOUND, KVBackend, KVError, KVFailure, under
from flotte.engine.keyspace import Keys

T = TypeVar("T")

# -- value templates ------------------------------------------------------------------------

PLACEHOLDERS = ("host", "ip", "port", "machine_id")
#: ``{name}`` or the escape ``{{name}}``; never ``${name}`` (a shell variable in an
#: ``exec:`` check, left to the shell).
_PLACEHOLDER = re.compile(r"(?<!\$)(?:\{\{([A-Za-z_]\w*)\}\}|\{([A-Za-z_]\w*)\})")


class AnnounceError(ValueError):
    """A bad option (unknown placeholder, TTL shorter than the interval …): fix and rerun."""


def placeholders(template: str) -> set[str]:
    """The placeholder names ``template`` uses (``{{x}}`` escapes are not uses)."""
    return {m.group(2) for m in _PLACEHOLDER.finditer(template) if m.group(2)}


def render(template: str, values: Mapping[str, str]) -> str:
    """Replace ``{host}``, ``{ip}``, ``{port}``, ``{machine_id}``; ``{{ip}}`` is a literal ``{ip}``.

    Any other brace is literal, so JSON needs no escaping:
    ``{"host": "{host}", "port": {port}}`` works as written.  ``${…}`` was not
    chosen because systemd expands ``${VAR}`` in ExecStart= before we see it,
    and ``${name}`` is left alone (a shell variable in an ``exec:`` check).
    """
    unknown = sorted(placeholders(template) - set(PLACEHOLDERS))
    if unknown:
        raise AnnounceError(f"unknown placeholder {{{unknown[0]}}} in {template!r}; known: "
                            + ", ".join(f"{{{p}}}" for p in PLACEHOLDERS)
                            + " (write {{name}} for a literal {name})")

    def sub(m: re.Match[str]) -> str:
        if m.group(1):
            return "{" + m.group(1) + "}"
        name = m.group(2)
        if name not in values:
            raise AnnounceError(f"{{{name}}} is used in {template!r} but has no value; "
                                f"pass --{name.replace('_', '-')}")
        return values[name]

    return _PLACEHOLDER.sub(sub, template)


def read_machine_id(state_dir: Path | None, system_file: Path = Path("/etc/machine-id")
                    ) -> str | None:
    """The id the local agent uses (``<state dir>/machine-id``), else ``/etc/machine-id``.

    Read only: an announcer must never invent and store an id the agent
    would then adopt.
    """
    for path in ([state_dir / "machine-id"] if state_dir else []) + [system_file]:
        with contextlib.suppress(OSError, UnicodeDecodeError):
            text = path.read_text().strip().lower()
            if re.fullmatch(r"[0-9a-f]{32}", text):
                return text
    return None


def check_port(spec: str | None) -> int | None:
    """The port a check talks to (``http://h:8080/`` → 8080; ``http://h/`` → 80)."""
    if not spec or spec.startswith("exec:"):
        return None
    parts = urlsplit(spec)
    try:
        port = parts.port
    except ValueError:
        return None
    if port is not None:
        return port
    return {"http": 80, "https": 443}.get(parts.scheme)


# -- health checks ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CheckResult:
    ok: bool
    detail: str


class Check(Protocol):
    description: str

    async def __call__(self) -> CheckResult: ...

    async def close(self) -> None: ...


class NoCheck:
    """Always healthy: the unit's ``BindsTo=`` already ties the announcement to the app."""

    description = "no check (always healthy)"

    async def __call__(self) -> CheckResult:
        return CheckResult(True, "no check configured")

    async def close(self) -> None:
        return None


class HttpCheck:
    """``curl -f`` semantics: healthy on any status below 400; redirects are not followed.

    Every check opens a new connection (no keep-alive), so a server that
    stopped accepting connections fails the check even if an old pooled
    connection would still have answered.
    """

    def __init__(self, url: str, timeout: float) -> None:
        self.url = url
        self.timeout = timeout
        self.description = f"GET {url}"
        self._session: aiohttp.ClientSession | None = None

    async def __call__(self) -> CheckResult:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(force_close=True),
                timeout=aiohttp.ClientTimeout(total=self.timeout))
        start = time.monotonic()
        try:
            async with self._session.get(self.url, allow_redirects=False) as resp:
                await resp.read()
                ms = (time.monotonic() - start) * 1000
                return CheckResult(resp.status < 400, f"HTTP {resp.status} from {self.url} "
                                                      f"in {ms:.0f} ms")
        except TimeoutError:
            return CheckResult(False, f"no answer from {self.url} within {self.timeout:g}s")
        except aiohttp.ClientError as exc:
            return CheckResult(False, f"GET {self.url} failed: {exc or type(exc).__name__}")

    async def close(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()


class TcpCheck:
    """Healthy when a TCP connection to ``host:port`` opens within the timeout."""

    def __init__(self, host: str, port: int, timeout: float) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self.description = f"connect to {host}:{port}"

    async def __call__(self) -> CheckResult:
        try:
            async with asyncio.timeout(self.timeout):
                _, writer = await asyncio.open_connection(self.host, self.port)
        except TimeoutError:
            return CheckResult(False, f"tcp {self.host}:{self.port}: no connection within "
                                      f"{self.timeout:g}s")
        except OSError as exc:
            why = os.strerror(exc.errno) if exc.errno else str(exc)
            return CheckResult(False, f"tcp {self.host}:{self.port}: {why}")
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return CheckResult(True, f"tcp {self.host}:{self.port} accepts connections")

    async def close(self) -> None:
        return None


class ExecCheck:
    """Healthy when ``/bin/sh -c CMD`` exits 0 within the timeout.

    The command runs in its own process group, killed whole on timeout, so
    a hung ``curl`` in a pipeline cannot pile up one process per check.
    """

    def __init__(self, command: str, timeout: float) -> None:
        self.command = command
        self.timeout = timeout
        self.description = f"run {command!r}"

    async def __call__(self) -> CheckResult:
        try:
            proc = await asyncio.create_subprocess_exec(
                "/bin/sh", "-c", self.command, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
                start_new_session=True)
        except OSError as exc:
            return CheckResult(False, f"cannot run {self.command!r}: {exc}")
        try:
            async with asyncio.timeout(self.timeout):
                _, err = await proc.communicate()
        except BaseException as exc:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(Exception):
                await proc.wait()
            if isinstance(exc, TimeoutError):
                return CheckResult(False, f"{self.command!r} did not finish within "
                                          f"{self.timeout:g}s (killed)")
            raise
        if proc.returncode == 0:
            return CheckResult(True, f"{self.command!r} exited 0")
        lines = err.decode("utf-8", "replace").strip().splitlines()
        why = f": {lines[-1][:200]}" if lines else ""
        return CheckResult(False, f"{self.command!r} exited {proc.returncode}{why}")

    async def close(self) -> None:
        return None


def parse_check(spec: str | None, timeout: float) -> Check:
    """``http(s)://…``, ``tcp://host:port``, ``exec:CMD`` or nothing (always healthy)."""
    if not spec:
        return NoCheck()
    if spec.startswith("exec:"):
        command = spec[len("exec:"):].strip()
        if not command:
            raise AnnounceError("--check exec: needs a command, e.g. exec:curl -fsS "
                                "http://127.0.0.1:8080/")
        return ExecCheck(command, timeout)
    parts = urlsplit(spec)
    if parts.scheme in ("http", "https") and parts.hostname:
        return HttpCheck(spec, timeout)
    if parts.scheme == "tcp" and parts.hostname:
        port = check_port(spec)
        if port is None:
            raise AnnounceError(f"--check {spec!r} needs a port: tcp://host:port")
        return TcpCheck(parts.hostname, port, timeout)
    raise AnnounceError(f"--check {spec!r} is not http://host[:port]/path, https://…, "
                        "tcp://host:port or exec:COMMAND")


# -- the decision core (pure) ----------------------------------------------------------------


class Health(StrEnum):
    UNKNOWN = "unknown"
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"


class Published(StrEnum):
    """What we believe the registry holds for our key.

    ``UNSURE`` at start (a crashed predecessor may have left the key) and
    after a failed write: the next decision then writes (or deletes) instead
    of assuming.
    """

    UNSURE = "unsure"
    PRESENT = "present"
    ABSENT = "absent"


class Action(StrEnum):
    NONE = "none"
    SET = "set"
    REFRESH = "refresh"
    DELETE = "delete"


@dataclass(frozen=True, slots=True)
class State:
    health: Health = Health.UNKNOWN
    published: Published = Published.UNSURE
    value: str | None = None  # the value last written (when PRESENT)
    written_at: float | None = None  # clock of the last successful set/refresh
    failures: int = 0  # consecutive failed writes


@dataclass(frozen=True, slots=True)
class Step:
    state: State
    action: Action = Action.NONE
    logs: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a write went: ``error`` is ``None`` on success; ``existed`` is whether a
    delete found the key (so "deleted" is only logged when something was)."""

    error: str | None = None
    existed: bool = True


def on_check(state: State, result: CheckResult, value: str, now: float,
             refresh_every: float) -> Step:
    """The action a check result calls for.

    Healthy: set if the key is not known to hold ``value``, refresh when the
    last write is ``refresh_every`` old, else nothing.  Unhealthy: delete
    unless the key is known to be absent — at once, no grace count, as the
    seed's loop did.
    """
    logs: tuple[str, ...] = ()
    if result.ok:
        if state.health is not Health.HEALTHY:
            logs = (f"healthy: {result.detail}",)
        new = replace(state, health=Health.HEALTHY)
        if state.published is not Published.PRESENT or state.value != value:
            return Step(new, Action.SET, logs)
        if state.written_at is None or now - state.written_at >= refresh_every:
            return Step(new, Action.REFRESH, logs)
        return Step(new, Action.NONE, logs)
    if state.health is not Health.UNHEALTHY:
        logs = (f"unhealthy: {result.detail}",)
    new = replace(state, health=Health.UNHEALTHY)
    if state.published is Published.ABSENT:
        return Step(new, Action.NONE, logs)
    return Step(new, Action.DELETE, logs)


def on_write(state: State, action: Action, outcome: Outcome, value: str, now: float,
             key: str, ttl: int) -> Step:
    """The state after ``action`` went as ``outcome`` says, and what to log about it."""
    if outcome.error is not None:
        logs: tuple[str, ...] = ()
        if state.failures == 0:
            logs = (f"registry unreachable ({outcome.error}); retrying"
                    + (f"; {key} expires within {ttl}s unless refreshed"
                       if state.published is Published.PRESENT else ""),)
        return Step(replace(state, published=Published.UNSURE, failures=state.failures + 1),
                    Action.NONE, logs)
    out: list[str] = []
    if state.failures:
        out.append("registry reachable again")
    if action is Action.SET:
        out.append(f"set {key} = {value} (ttl {ttl}s)")
        return Step(replace(state, published=Published.PRESENT, value=value, written_at=now,
                            failures=0), Action.NONE, tuple(out))
    if action is Action.REFRESH:
        return Step(replace(state, written_at=now, failures=0), Action.NONE, tuple(out))
    if action is Action.DELETE:
        if outcome.existed:
            out.append(f"deleted {key}")
        return Step(replace(state, published=Published.ABSENT, value=None, written_at=None,
                            failures=0), Action.NONE, tuple(out))
    return Step(replace(state, failures=0), Action.NONE, tuple(out))


def on_stop(state: State) -> Action:
    """On SIGTERM: delete unless the key is known to be gone."""
    return Action.NONE if state.published is Published.ABSENT else Action.DELETE


def next_delay(state: State, check_interval: float, *, first_retry: float = 0.5) -> float:
    """Seconds until the next check: ``check_interval``, or sooner while writes fail
    (0.5 s, 1 s, 2 s … up to the interval), so a registry blip costs little."""
    if state.failures:
        return min(check_interval, first_retry * 2.0 ** (state.failures - 1))
    return check_interval


# -- the loop -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Settings:
    key: str
    value: str
    ttl: int
    interval: float  # refresh every
    check_interval: float

    def validate(self) -> None:
        if self.ttl < 1:
            raise AnnounceError("--ttl must be at least 1 second")
        if self.interval <= 0 or self.check_interval <= 0:
            raise AnnounceError("--interval and --check-interval must be positive")
        if self.interval >= self.ttl:
            raise AnnounceError(f"--interval {self.interval:g}s must be shorter than --ttl "
                                f"{self.ttl}s, or the key expires between refreshes "
                                f"(default: ttl/3)")
        if not self.key.startswith("/") or self.key.endswith("/"):
            raise AnnounceError(f"--key {self.key!r} must be an absolute key such as "
                                "/services/apache/10.0.0.1 (not a directory)")
        managed = Keys().prefix
        if under(self.key, managed):
            raise AnnounceError(f"--key {self.key} is under {managed}, which flotte manages; "
                                "announce under another prefix such as /services")


Log = Callable[[str], None]


class Announcer:
    """Performs what the decision core says, against a :class:`KVBackend`.

    Nothing here may end the loop but ``stop``: every backend failure is an
    :class:`Outcome` with an error, every check failure a failed check.
    """

    def __init__(self, backend: KVBackend, settings: Settings, check: Check, log: Log, *,
                 write_timeout: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.backend = backend
        self.s = settings
        self.check = check
        self.log = log
        self.write_timeout = write_timeout or max(1.0, min(10.0, settings.ttl / 3))
        self.clock = clock
        self.state = State()

    async def write(self, action: Action) -> Outcome:
        try:
            async with asyncio.timeout(self.write_timeout):
                if action in (Action.SET, Action.REFRESH):
                    # refresh() sets when needed: on a registry it also takes the lease
                    # that later refreshes keep alive (no write per refresh).
                    await self.backend.refresh(self.s.key, self.s.value, self.s.ttl)
                elif action is Action.DELETE:
                    try:
                        await self.backend.delete(self.s.key)
                    except KVError as exc:
                        if exc.code != KEY_NOT_FOUND:
                            raise
                        return Outcome(None, existed=False)
        except TimeoutError:
            return Outcome(f"{self.backend.description} did not answer within "
                           f"{self.write_timeout:g}s")
        except KVFailure as exc:
            return Outcome(str(exc))
        except Exception as exc:  # never crash on an unexpected backend error
            return Outcome(f"{type(exc).__name__}: {exc}")
        return Outcome()

    async def _apply(self, action: Action) -> None:
        if action is Action.NONE:
            return
        outcome = await self.write(action)
        step = on_write(self.state, action, outcome, self.s.value, self.clock(), self.s.key,
                        self.s.ttl)
        self.state = step.state
        for line in step.logs:
            self.log(line)

    async def _run_check(self) -> CheckResult:
        try:
            return await self.check()
        except Exception as exc:
            return CheckResult(False, f"check failed: {type(exc).__name__}: {exc}")

    async def run(self, stop: asyncio.Event) -> str:
        """Check, decide, write, sleep — until ``stop``; then withdraw.  Returns the last
        log line (what happened to the key)."""
        try:
            while not stop.is_set():
                result = await _until(self._run_check(), stop)
                if result is None:
                    break
                step = on_check(self.state, result, self.s.value, self.clock(),
                                self.s.interval)
                self.state = step.state
                for line in step.logs:
                    self.log(line)
                await self._apply(step.action)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), next_delay(self.state,
                                                                   self.s.check_interval))
        finally:
            await self.check.close()
        return await self.withdraw()

    async def withdraw(self) -> str:
        if on_stop(self.state) is Action.NONE:
            line = f"stopped; {self.s.key} was not announced"
        else:
            outcome = await self.write(Action.DELETE)
            if outcome.error is None:
                self.state = replace(self.state, published=Published.ABSENT)
                line = f"stopped; deleted {self.s.key}" if outcome.existed else \
                    f"stopped; {self.s.key} was already gone"
            else:
                line = (f"stopped; could not delete {self.s.key} ({outcome.error}); it "
                        f"expires within {self.s.ttl}s")
        self.log(line)
        return line


async def _until(coro: Coroutine[Any, Any, T], stop: asyncio.Event) -> T | None:
    """``await coro``, unless ``stop`` is set first: then cancel it and return ``None``
    (a SIGTERM must not wait for a 5 s health-check timeout)."""
    task = asyncio.ensure_future(coro)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        done, _ = await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    return task.result() if task in done else None


def local_values(*, ip: str | None, port: int | None, hostname: str | None,
                 machine_id: str | None) -> dict[str, str]:
    """The placeholder values available here (missing ones are left out)."""
    out = {"host": hostname or socket.gethostname()}
    if ip:
        out["ip"] = ip
    if port is not None:
        out["port"] = str(port)
    if machine_id:
        out["machine_id"] = machine_id
    return out


__all__ = [
    "PLACEHOLDERS", "Action", "AnnounceError", "Announcer", "Check", "CheckResult",
    "ExecCheck", "Health", "HttpCheck", "NoCheck", "Outcome", "Published", "Settings", "State",
    "Step", "TcpCheck", "check_port", "local_values", "next_delay", "on_check", "on_stop",
    "on_write", "parse_check", "placeholders", "read_machine_id", "render",
]
