"""Fixtures for the registry conformance suite: one test, every backend.

``registry_url`` is parametrized over ``memory://``, ``sqlite://`` (a file in
the test's temp dir) and a real etcd started on loopback (one server per
test session; each test works under its own key prefix).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from support import require

BACKENDS = ["memory", "sqlite", "etcd"]


@pytest.fixture(scope="session")
def etcd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    require("etcd", "etcd-server")
    from etcd_server import EtcdServer

    server = EtcdServer(tmp_path_factory.mktemp("etcd"))
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(params=BACKENDS)
def registry_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    kind = request.param
    if kind == "memory":
        return f"memory://conformance-{uuid.uuid4().hex}"
    if kind == "sqlite":
        return f"sqlite://{tmp_path}/registry.db"
    server = request.getfixturevalue("etcd_server")
    return str(server.url)  # type: ignore[attr-defined]


@pytest.fixture
def ns() -> str:
    """A key prefix of this test's own (etcd is shared by the session)."""
    return f"/t/{uuid.uuid4().hex[:12]}/"
