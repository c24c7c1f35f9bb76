"""Fixtures: an in-memory registry, the API app on it, and an aiohttp test client."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from flotte.api import make_app
from flotte.registry import Registry, connect


@pytest.fixture
async def registry() -> AsyncIterator[Registry]:
    reg = await connect("memory://")
    try:
        yield reg
    finally:
        if not reg.closed:
            await reg.close()


@pytest.fixture
def app(registry: Registry) -> web.Application:
    return make_app(registry, no_auth=True, heartbeat=0.2)


@pytest.fixture
async def client(app: web.Application) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    async with TestClient(TestServer(app)) as c:
        yield c
