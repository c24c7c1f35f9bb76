"""Helpers for the confd tests: confdirs on disk, a dict backend, an API server in a thread."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from flotte.api import Served, make_app, serve
from flotte.discovery.confd.backends import (
    Backend,
    BackendError,
    Change,
    ChangeStream,
    Snapshot,
)
from flotte.discovery.confd.resource import covers
from flotte.registry import Registry, connect

T = TypeVar("T")

SEED_TEMPLATE = """\
upstream apache_pool {
{{ range getvs "/services/apache/*" }}
    server {{ . }};
{{ end }}
}
"""


def toml_value(value: object) -> str:
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return str(value)


def write_resource(confdir: Path, name: str, template: str | None = None,
                   **fields: object) -> Path:
    """``conf.d/<name>.toml`` with ``fields`` (src defaults to ``<name>.tmpl``), and the template."""
    (confdir / "conf.d").mkdir(parents=True, exist_ok=True)
    (confdir / "templates").mkdir(parents=True, exist_ok=True)
    fields.setdefault("src", f"{name}.tmpl")
    body = "[template]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in fields.items())
    path = confdir / "conf.d" / f"{name}.toml"
    path.write_text(body, encoding="utf-8")
    if template is not None:
        (confdir / "templates" / str(fields["src"])).write_text(template, encoding="utf-8")
    return path


class DictBackend(Backend):
    """Keys from a dict; changes pushed by the test with :meth:`set`/:meth:`delete`."""

    description = "dict"

    def __init__(self, values: dict[str, str] | None = None) -> None:
        self.values = dict(values or {})
        self.fetches = 0
        self.fail: str | None = None
        self.revision = 1
        self._streams: list[_DictStream] = []

    async def fetch(self, keys: Sequence[str]) -> Snapshot:
        self.fetches += 1
        if self.fail:
            raise BackendError(self.fail)
        return Snapshot({k: v for k, v in self.values.items()
                         if any(covers(full, k) for full in keys)}, self.revision)

    def watch(self, keys: Sequence[str], after: Snapshot) -> ChangeStream:
        stream = _DictStream(list(keys))
        self._streams.append(stream)
        return stream

    def _emit(self, change: Change) -> None:
        for stream in self._streams:
            if any(covers(k, change.key) for k in stream.keys):
                stream.queue.put_nowait([change])

    def set(self, key: str, value: str) -> None:
        self.revision += 1
        self.values[key] = value
        self._emit(Change(key, value, self.revision))

    def delete(self, key: str) -> None:
        self.revision += 1
        self.values.pop(key, None)
        self._emit(Change(key, None, self.revision))


class _DictStream(ChangeStream):
    def __init__(self, keys: list[str]) -> None:
        self.keys = keys
        self.queue: asyncio.Queue[list[Change]] = asyncio.Queue()

    async def __anext__(self) -> list[Change]:
        return await self.queue.get()

    async def close(self) -> None:
        return None


class ApiThread:
    """The flotte API on a ``memory://`` registry, served on 127.0.0.1 from its own thread.

    Lets synchronous tests (and subprocesses such as ``flotte confd``) use a
    real API while the test changes keys with :meth:`put` / :meth:`delete`.
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="api", daemon=True)
        self.registry: Registry | None = None
        self.served: Served | None = None
        self.url = ""

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def __enter__(self) -> ApiThread:
        self.thread.start()

        async def start() -> None:
            self.registry = await connect("memory://")
            self.served = await serve(make_app(self.registry, no_auth=True, heartbeat=1.0),
                                      ["http://127.0.0.1:0"])
            self.url = self.served.urls[0]

        self.call(start())
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            if self.served is not None:
                await self.served.close()
            if self.registry is not None:
                await self.registry.close()

        with contextlib.suppress(Exception):
            self.call(stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def put(self, key: str, value: str) -> int:
        assert self.registry is not None
        return self.call(self.registry.put(key, value.encode()))

    def delete(self, key: str) -> int:
        assert self.registry is not None
        return self.call(self.registry.delete(key))


def wait_for(predicate: Callable[[], T], timeout: float = 20.0, step: float = 0.01,
             what: str = "condition") -> T:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(step)


async def await_for(predicate: Callable[[], T], timeout: float = 20.0, step: float = 0.01,
                    what: str = "condition") -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(step)


def read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""


def stage_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


@contextlib.contextmanager
def api_thread() -> Iterator[ApiThread]:
    with ApiThread() as api:
        yield api


#: ``flotte confd`` without depending on its registration in the ``flotte`` group.
CONFD_CLI = (sys.executable, "-c",
             "from flotte.cli.confd import confd; confd(prog_name='flotte confd')")


class ConfdProcess:
    """``flotte confd ARGS`` as a child process, its log in a file, stopped by its PID."""

    def __init__(self, args: Sequence[str], log_path: Path,
                 env: dict[str, str] | None = None) -> None:
        self.args = list(args)
        self.log_path = log_path
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> ConfdProcess:
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen([*CONFD_CLI, *self.args], stdout=log, stderr=log,
                                         stdin=subprocess.DEVNULL,
                                         env={**os.environ, **(self.env or {})})
        return self

    @property
    def log(self) -> str:
        return read(self.log_path)

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, then SIGKILL after ``timeout``; returns the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_confd(args: Sequence[str], env: dict[str, str] | None = None,
              timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """``flotte confd ARGS`` to completion (``-onetime`` runs)."""
    return subprocess.run([*CONFD_CLI, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, check=False)
