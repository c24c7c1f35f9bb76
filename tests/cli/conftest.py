"""Fixtures: a served API (``cluster``), the CLI runner against it, fast polling."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from cli_support import Cluster, Run
from click.testing import CliRunner, Result

from flotte.cli import waiting
from flotte.cli.main import cli


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    c = Cluster()
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def fast_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    """Poll every 20 ms instead of 250 ms (the fake engine reacts within 10 ms)."""
    monkeypatch.setattr(waiting, "POLL_INTERVAL", 0.02)


@pytest.fixture
def fleetctl(cluster: Cluster, fast_poll: None) -> Run:
    """``fleetctl(*args)`` → click Result, invoked as ``fleetctl`` against ``cluster``."""

    def run(*args: str, env: dict[str, Any] | None = None, prog: str = "fleetctl",
            input: str | None = None) -> Result:
        base: dict[str, Any] = {"FLOTTE_ENDPOINT": cluster.endpoint, "FLEETCTL_ENDPOINT": None,
                                "FLOTTE_TOKEN": None, "FLOTTE_STATE_DIR": None}
        base.update(env or {})
        result = CliRunner(env=base).invoke(cli, list(args), prog_name=prog, input=input)
        if result.exception and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result

    return run
