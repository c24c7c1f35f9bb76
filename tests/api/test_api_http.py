"""The API client's own HTTP/1.1 transport against aiohttp's server: bodies by length and
chunked, streamed lines, errors; and that the command line does not import aiohttp."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from aiohttp import web

from flotte.api.http import HttpFailure, Transport


async def _app_server(tmp_path: Path) -> tuple[web.AppRunner, str]:
    async def length(_: web.Request) -> web.Response:
        return web.Response(body=b"x" * 100_000)

    async def chunked(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        for i in range(5):
            await resp.write(f"line {i}\npart".encode())
            await resp.write(b"ial\n")
        await resp.write_eof()
        return resp

    async def echo(request: web.Request) -> web.Response:
        return web.json_response({"body": (await request.read()).decode(),
                                  "auth": request.headers.get("Authorization", ""),
                                  "query": dict(request.query)})

    app = web.Application()
    app.router.add_get("/length", length)
    app.router.add_get("/chunked", chunked)
    app.router.add_post("/echo", echo)
    runner = web.AppRunner(app)
    await runner.setup()
    sock = str(tmp_path / "t.sock")
    await web.UnixSite(runner, sock).start()
    return runner, sock


async def test_bodies_lines_and_headers(tmp_path: Path) -> None:
    runner, sock = await _app_server(tmp_path)
    try:
        t = Transport(socket_path=sock, headers={"Authorization": "Bearer tok"})
        resp = await t.send("GET", "/length")
        assert resp.status == 200 and len(await resp.body()) == 100_000
        await resp.close()
        resp = await t.send("GET", "/chunked")
        lines = [line async for line in resp.lines()]
        await resp.close()
        assert lines[:2] == [b"line 0\n", b"partial\n"] and len(lines) == 10
        resp = await t.send("POST", "/echo?a=%2Fx", body=b"hello",
                            headers={"Content-Type": "text/plain"})
        assert resp.status == 200
        assert json.loads(await resp.body()) == {"body": "hello", "auth": "Bearer tok",
                                                 "query": {"a": "/x"}}
        await resp.close()
    finally:
        await runner.cleanup()


async def test_unreachable_is_an_http_failure(tmp_path: Path) -> None:
    t = Transport(socket_path=str(tmp_path / "missing.sock"))
    try:
        await t.send("GET", "/")
    except HttpFailure as exc:
        assert "No such file" in str(exc)
    else:
        raise AssertionError("expected HttpFailure")


def test_the_command_line_does_not_import_aiohttp() -> None:
    code = "import sys, flotte.cli.main; print('aiohttp' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
