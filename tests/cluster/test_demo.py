"""``make run`` (``python -m flotte.demo``) on a fresh state dir, stopped after a few seconds."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from etcd_server import free_port

pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="needs root (cgroups)"),
              pytest.mark.timeout(120)]


def test_demo_runs_the_examples_and_stops_cleanly(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "FLOTTE_DEMO_SECONDS": "4", "FLOTTE_DEMO_STATE": str(tmp_path / "st"),
           "FLOTTE_DEMO_PORT": str(port)}
    out = subprocess.run([sys.executable, "-m", "flotte.demo"], env=env, capture_output=True,
                         text=True, timeout=100)
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout + out.stderr  # fleetctl prints reasons on stderr
    assert "ch08/apache@.service:3: warning: After=etcd.servicedocker.service" in text
    for unit in ("hello.service", f"web@{port}.service", f"web-announce@{port}.service"):
        assert f"Unit {unit} launched on " in text
    assert f"Unit web@{port + 1}.service cannot be placed" in text
    assert f"conflicts with web@{port}.service" in text
    assert out.stdout.rstrip().endswith("stopped cleanly")
