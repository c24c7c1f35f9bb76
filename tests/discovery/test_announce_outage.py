"""Issue #8, item 3: ``flotte announce`` survives a registry outage, keeps checking, re-registers.

A real etcd is stopped (by its PID) for longer than the key's TTL and started
again, twice: once while the checked app turns sick (the stale key must go
as soon as etcd is back, and the key return when the app recovers), and once
coming back *empty*, its data directory lost (the announcer's lease no longer
exists: it must notice and register the key again on a new lease).  The
announcer is a real ``flotte announce`` process; the app a real HTTP server
whose hit counter shows the checks going on during the outage.
"""

from __future__ import annotations

import shutil
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from discovery.discovery_support import HttpBackend, LoopThread, wait_for
from discovery.test_announce import announce_proc, stop_proc
from etcd_server import EtcdServer
from flotte.registry import KeyValue, Registry, open_registry
from flotte.registry.types import Unavailable
from support import require

pytestmark = [pytest.mark.etcd, pytest.mark.timeout(120)]

TTL = 2
CHECK_INTERVAL = 0.2


@pytest.fixture
def lt() -> Iterator[LoopThread]:
    loop = LoopThread()
    try:
        yield loop
    finally:
        loop.stop()


@pytest.fixture
def app(lt: LoopThread) -> Iterator[HttpBackend]:
    backend = HttpBackend(lt, "apache")
    try:
        yield backend
    finally:
        backend.set_release()
        backend.stop()


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[EtcdServer]:
    require("etcd", "etcd-server")
    server = EtcdServer(tmp_path / "etcd")
    server.start()
    try:
        yield server
    finally:
        server.close()


def test_announce_keeps_checking_through_an_etcd_outage_and_re_registers(
        etcd: EtcdServer, app: HttpBackend, lt: LoopThread) -> None:
    key = f"/services/outage{uuid.uuid4().hex[:8]}/127.0.0.1"
    value = f"127.0.0.1:{app.port}".encode()
    reg: Registry = lt.call(open_registry(etcd.url))

    def get() -> KeyValue | None:
        """The key, as soon as the test's own client reaches etcd again (after a restart
        its channel may still report the refused connections of the outage)."""
        deadline = time.monotonic() + 20
        while True:
            try:
                return lt.call(reg.get(key), timeout=20)
            except Unavailable:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    proc, out = announce_proc("--registry", etcd.url, "--key", key, "--value", "{ip}:{port}",
                              "--ip", "127.0.0.1", "--ttl", str(TTL), "--interval", "0.5",
                              "--check-interval", str(CHECK_INTERVAL),
                              "--check", f"http://127.0.0.1:{app.port}/")
    try:
        wait_for(lambda: get() is not None, timeout=15)
        first = get()
        assert first is not None and first.value == value and first.lease != 0

        # -- 1. etcd down longer than the TTL; the app turns sick meanwhile -------------------
        etcd.stop()
        down_at = time.monotonic()
        mark = len(out.lines)
        app.healthy = False
        hits = app.hits
        # checks go on at their interval, registry or not: 2 x TTL worth of them
        wait_for(lambda: app.hits >= hits + int(2 * TTL / CHECK_INTERVAL), timeout=30)
        assert proc.poll() is None, out.lines
        during = out.lines[mark:]
        assert any(line.startswith("unhealthy: HTTP 503") for line in during), during
        assert sum(line.startswith("registry unreachable") for line in during) == 1, during
        down_for = time.monotonic() - down_at
        etcd.start()
        back_at = time.monotonic()
        # the key the sick app left behind is deleted as soon as etcd answers
        wait_for(lambda: get() is None, timeout=20)
        stale_gone = time.monotonic() - back_at
        wait_for(lambda: out.has("registry reachable again"), timeout=5)
        app.healthy = True
        wait_for(lambda: get() is not None, timeout=10)
        again = get()
        assert again is not None and again.value == value

        # -- 2. etcd comes back empty (its data lost): the key is registered anew ----------------
        etcd.stop()
        shutil.rmtree(etcd.data_dir)
        hits = app.hits
        wait_for(lambda: app.hits >= hits + int(2 * TTL / CHECK_INTERVAL), timeout=30)
        assert proc.poll() is None, out.lines
        etcd.start()
        back_at = time.monotonic()
        wait_for(lambda: get() is not None, timeout=20)
        reregistered = time.monotonic() - back_at
        fresh = get()
        assert fresh is not None and fresh.value == value and fresh.lease != 0
        # and it is kept alive on that lease past its TTL (refreshes work again)
        time.sleep(TTL + 1)
        kept = get()
        assert kept is not None and kept.lease == fresh.lease
        assert kept.mod_revision == fresh.mod_revision  # refreshed, not rewritten

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        assert get() is None
        out.thread.join(5)
        assert out.lines[-1] == f"stopped; deleted {key}"
        print(f"\nannounce through etcd outages: down {down_for:.1f}s (TTL {TTL}s), "
              f"stale key deleted {stale_gone * 1000:.0f} ms after etcd was back; etcd "
              f"back empty: key registered again after {reregistered * 1000:.0f} ms")
    finally:
        stop_proc(proc)
        lt.call(reg.close())
