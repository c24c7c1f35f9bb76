"""The embedded store: durability under SIGKILL, restart, ownership, bad files."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flotte import registry as R

WRITER = Path(__file__).with_name("sqlite_writer.py")
KILLS = 100


async def _check(db: Path, acked: dict[str, int]) -> int:
    async with R.connect(f"sqlite://{db}") as reg:
        missing = []
        for key, rev in acked.items():
            kv = await reg.get(key)
            if kv is None or kv.mod_revision != rev:
                missing.append((key, rev, kv))
        assert not missing, f"{len(missing)} acknowledged writes lost, e.g. {missing[:3]}"
        assert reg.revision >= max(acked.values(), default=0)
        return reg.revision


@pytest.mark.timeout(600)
async def test_acknowledged_writes_survive_sigkill(tmp_path: Path) -> None:
    """A writer is killed with SIGKILL at random moments 100 times; every write it had
    acknowledged is in the store afterwards, and the store always opens cleanly."""
    db = tmp_path / "registry.db"
    rnd = random.Random(20261127)
    acked: dict[str, int] = {}
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    total_acked = 0
    for i in range(KILLS):
        proc = subprocess.Popen([sys.executable, str(WRITER), str(db), f"/d/{i}/"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line == b"ready\n", (line, proc.stderr.read() if proc.stderr else b"")
        await asyncio.sleep(rnd.uniform(0.0, 0.15))
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate()
        for row in out.decode().splitlines():
            parts = row.split(" ")
            if len(parts) == 2 and parts[1].isdigit():  # a line cut by the kill is no ack
                acked[parts[0]] = int(parts[1])
                total_acked += 1
        await _check(db, acked)
    assert total_acked > KILLS  # the writers did get work done between kills


async def test_leases_survive_restart_then_expire(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path}/r.db"
    async with R.connect(url) as reg:
        lease = await reg.grant(2)
        await reg.put("/eph", b"x", lease=lease)
        await reg.put("/keep", b"y")
        rev = reg.revision
    # closed without revoking: like a crash of the owner
    async with R.connect(url) as reg:
        assert reg.revision == rev
        kv = await reg.get("/eph")
        assert kv is not None and kv.lease == lease.id
        w = reg.watch("/", start_revision=1)
        seen = []
        t0 = time.monotonic()
        async for ev in w:
            seen.append((ev.type.value, ev.kv.key))
            if ev.type is R.EventType.DELETE:
                break
        await w.close()
        assert seen == [("put", "/eph"), ("put", "/keep"), ("delete", "/eph")]
        assert 1.5 <= time.monotonic() - t0 <= 4
        assert await reg.get("/keep") is not None


async def test_history_replays_after_restart(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path}/r.db"
    async with R.connect(url) as reg:
        first = await reg.put("/a", b"1")
        await reg.put("/a", b"2")
        await reg.delete("/a")
    async with R.connect(url) as reg:
        w = reg.watch("/a", start_revision=first, prefix=False)
        got = []
        async for ev in w:
            got.append((ev.type.value, ev.kv.value, ev.prev_kv.value if ev.prev_kv else None))
            if len(got) == 3:
                break
        await w.close()
        assert got == [("put", b"1", None), ("put", b"2", b"1"), ("delete", b"", b"2")]


async def test_one_owner_per_file(tmp_path: Path) -> None:
    db = tmp_path / "owned.db"
    async with R.connect(f"sqlite://{db}"):
        code = ("import asyncio, sys\nfrom flotte import registry\n"
                "async def m():\n"
                f"    async with registry.connect('sqlite://{db}'): pass\n"
                "try:\n    asyncio.run(m())\n"
                "except registry.Unavailable as e:\n    print(e); sys.exit(3)\n")
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              check=False, env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
        assert proc.returncode == 3, proc.stderr
        assert "owned by another process" in proc.stdout and str(os.getpid()) in proc.stdout
    # in one process, handles share the store
    async with R.connect(f"sqlite://{db}") as a, R.connect(f"sqlite://{db}") as b:
        await a.put("/x", b"1")
        assert (await b.get("/x")) is not None


async def test_not_a_registry_file(tmp_path: Path) -> None:
    bad = tmp_path / "garbage.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(R.Unavailable) as exc:
        async with R.connect(f"sqlite://{bad}"):
            pass
    assert "garbage.db" in str(exc.value)
    with pytest.raises(R.Unavailable) as exc:
        async with R.connect(f"sqlite://{tmp_path}/no/such/dir/r.db"):
            pass
    assert "does not exist" in str(exc.value)


async def test_lagging_watcher_resumes_without_loss(monkeypatch: pytest.MonkeyPatch,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    from flotte.registry import local

    caplog.set_level("INFO", logger="flotte.registry")
    monkeypatch.setattr(local, "WATCHER_MAX_PENDING", 50)
    async with R.connect("memory://lag") as reg:
        w = reg.watch("/l/")
        await reg.put("/l/first", b"x")
        got = [(await w.__anext__()).revision]  # the watcher is now live in the store
        await asyncio.gather(*(reg.put(f"/l/{i}", b"x") for i in range(299)))
        async for ev in w:
            got.append(ev.revision)
            if len(got) == 300:
                break
        await w.close()
        assert got == sorted(set(got)) and len(got) == 300
    assert "fell behind" in caplog.text  # the lag path was taken, and resumed from history
