"""Real components for the kv / announce / proxy tests.

:class:`ApiThread` runs the flotte API (``make_app`` + ``serve``) on a
``memory://`` registry, on a unix socket, in a background thread's event
loop: ``CliRunner`` (synchronous, with its own ``asyncio.run``) and
subprocesses can then talk to it while the test inspects the registry with
:meth:`ApiThread.call`.

:class:`HttpBackend` is a small aiohttp server on a loopback address whose
health and answers the test controls (the app the announcer checks, and the
backends the proxy balances).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from aiohttp import web

from flotte.api import make_app, serve
from flotte.api.server import Served
from flotte.registry import KeyValue, Registry, open_registry

T = TypeVar("T")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PYTHON = sys.executable


class LoopThread:
    """An event loop in a daemon thread; :meth:`call` runs a coroutine on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


class ApiThread(LoopThread):
    """The API on ``<dir>/flotte.sock`` (memory registry) in a background loop."""

    def __init__(self, *, start: bool = True, socket_dir: str | None = None) -> None:
        super().__init__()
        # Short path: unix socket paths are limited to 108 bytes.
        self.dir = socket_dir or tempfile.mkdtemp(prefix="fldisc", dir="/tmp")
        self._own_dir = socket_dir is None
        self.socket = f"{self.dir}/flotte.sock"
        self.endpoint = f"unix://{self.socket}"
        self.registry: Registry = self.call(open_registry("memory://"))
        self.served: Served | None = None
        if start:
            self.start_api()

    def start_api(self) -> None:
        async def go() -> Served:
            app = make_app(self.registry, no_auth=True, heartbeat=0.2)
            return await serve(app, [self.endpoint], shutdown_timeout=0.5)

        self.served = self.call(go())

    def stop_api(self) -> None:
        if self.served is not None:
            served, self.served = self.served, None
            self.call(served.close())

    def get(self, key: str) -> KeyValue | None:
        return self.call(self.registry.get(key))

    def put(self, key: str, value: str) -> int:
        return self.call(self.registry.put(key, value.encode()))

    def delete(self, key: str) -> int:
        return self.call(self.registry.delete(key))

    def close(self) -> None:
        try:
            self.stop_api()
            self.call(self.registry.close())
        finally:
            self.stop()
            if self._own_dir:
                shutil.rmtree(self.dir, ignore_errors=True)


def wait_for(pred: Callable[[], bool], timeout: float = 10.0, step: float = 0.01) -> float:
    """Poll ``pred`` until true; returns the seconds it took (fails after ``timeout``)."""
    start = time.monotonic()
    while not pred():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(step)
    return time.monotonic() - start


def flotte_cmd(module: str, obj: str, *args: str) -> list[str]:
    """argv running a click object of flotte in a fresh interpreter (no console script
    needed: ``main.py`` does not register these commands yet)."""
    return [PYTHON, "-c", f"from {module} import {obj}; {obj}()", *args]


def popen(argv: list[str], **kw: Any) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.update(kw.pop("env", {}))
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, cwd=REPO, **kw)


class HttpBackend:
    """An aiohttp app on ``host``:random port, run on a :class:`LoopThread`'s loop.

    ``GET /`` answers ``name`` (503 while ``healthy`` is false); ``/headers``
    echoes the request headers as JSON; ``/slow`` waits until :attr:`release`
    is set; ``/stream`` sends ``n`` chunks ``delay`` apart; ``/echo`` streams
    the request body back.  Every request is counted in :attr:`hits`.
    """

    def __init__(self, runner_loop: LoopThread, name: str, host: str = "127.0.0.1") -> None:
        self.lt = runner_loop
        self.name = name
        self.host = host
        self.healthy = True
        self.hits = 0
        self.hit_times: list[float] = []
        self.release: asyncio.Event | None = None
        self.runner: web.AppRunner | None = None
        self.port = 0
        self.lt.call(self._start())

    @property
    def addr(self) -> str:
        return f"{self.host}:{self.port}"

    async def _start(self) -> None:
        self.release = asyncio.Event()
        app = web.Application()
        app.router.add_route("*", "/", self._root)
        app.router.add_get("/headers", self._headers)
        app.router.add_get("/slow", self._slow)
        app.router.add_get("/stream", self._stream)
        app.router.add_route("*", "/echo", self._echo)
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.host, self.port or 0)
        await site.start()
        self.port = int(self.runner.addresses[0][1])

    def _count(self) -> None:
        self.hits += 1
        self.hit_times.append(time.monotonic())

    async def _root(self, request: web.Request) -> web.Response:
        self._count()
        if not self.healthy:
            return web.Response(status=503, text="sick\n")
        return web.Response(text=self.name)

    async def _headers(self, request: web.Request) -> web.Response:
        self._count()
        return web.json_response({"name": self.name, "headers": dict(request.headers),
                                  "path_qs": request.raw_path})

    async def _slow(self, request: web.Request) -> web.Response:
        self._count()
        assert self.release is not None
        await self.release.wait()
        return web.Response(text=f"{self.name} slow done")

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        self._count()
        n = int(request.query.get("n", "5"))
        delay = float(request.query.get("delay", "0"))
        size = int(request.query.get("size", "10"))
        resp = web.StreamResponse()
        await resp.prepare(request)
        for i in range(n):
            await resp.write(bytes([65 + i % 26]) * size)
            if delay:
                await asyncio.sleep(delay)
        await resp.write_eof()
        return resp

    async def _echo(self, request: web.Request) -> web.StreamResponse:
        self._count()
        resp = web.StreamResponse(headers={
            "X-Method": request.method,
            "X-Got-Length": request.headers.get("Content-Length", "-"),
            "X-Got-TE": request.headers.get("Transfer-Encoding", "-")})
        await resp.prepare(request)
        async for chunk in request.content.iter_any():
            await resp.write(chunk)
        await resp.write_eof()
        return resp

    def set_release(self) -> None:
        assert self.release is not None
        self.lt.loop.call_soon_threadsafe(self.release.set)

    def stop(self) -> None:
        if self.runner is not None:
            runner, self.runner = self.runner, None
            with contextlib.suppress(Exception):
                self.lt.call(runner.cleanup())

    def start(self) -> None:
        """Listen again on the same port (after :meth:`stop`)."""
        self.lt.call(self._start())
