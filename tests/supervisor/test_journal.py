"""The per-unit journal: real pipes fed by real child processes."""

from __future__ import annotations

import asyncio
import os
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from flotte.supervisor.journal import (
    CURRENT,
    HEADER,
    LINE_MAX,
    Entry,
    Journal,
    JournalPipe,
    parse_level_prefix,
)

U = "web.service"


async def run_child(j: Journal, unit: str, script: str, *, ident: str = "child",
                    level_prefix: bool = True, priority: int = 6) -> int:
    """Run ``python -c script`` with stdout+stderr into the journal; wait for EOF."""
    pipe = j.writer(unit, ident, level_prefix=level_prefix, priority=priority)
    assert pipe.write_fd is not None
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=pipe.write_fd,
                            stderr=pipe.write_fd, stdin=subprocess.DEVNULL)
    pipe.set_pid(proc.pid)
    pipe.close_write()
    await asyncio.wait_for(pipe.wait_closed(), 10)
    assert await asyncio.to_thread(proc.wait) == 0
    return proc.pid


def msgs(entries: list[Entry]) -> list[str]:
    return [e.message for e in entries]


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    j = Journal(tmp_path / "journal")
    yield j
    j.close()


# -- pipes ---------------------------------------------------------------------------------


async def test_child_lines_priorities_and_pid(journal: Journal) -> None:
    script = r"""
import sys, os
print("hello")
print("<3>error line")
print("<7>debug line", file=sys.stderr)
print("<13>facility is not a level")
print("<05>zero padded")
print("<x>not a prefix")
sys.stdout.flush()
os.write(1, b"no newline at the end")
"""
    pid = await run_child(journal, U, script, ident="myapp")
    got = journal.read(U)
    assert [(e.priority, e.message) for e in got] == [
        (6, "hello"),
        (3, "error line"),
        (7, "debug line"),
        (6, "<13>facility is not a level"),
        (5, "zero padded"),
        (6, "<x>not a prefix"),
        (6, "no newline at the end"),
    ]
    assert {e.pid for e in got} == {pid}
    assert {e.identifier for e in got} == {"myapp"}
    assert {e.unit for e in got} == {U}
    assert all(abs(e.time - time.time()) < 30 for e in got)


async def test_level_prefix_off_and_default_priority(journal: Journal) -> None:
    await run_child(journal, U, 'print("<3>kept literally")', level_prefix=False, priority=4)
    [e] = journal.read(U)
    assert (e.priority, e.message) == (4, "<3>kept literally")


async def test_whitespace_nul_and_empty_lines(journal: Journal) -> None:
    script = r"""
import os
os.write(1, b"  leading kept, trailing dropped \t\r\n")
os.write(1, b"\n\n   \n<4>\n")          # empty lines (also after the prefix) are not stored
os.write(1, b"a\0b\n")                  # NUL ends a line, as in journald
os.write(1, b"back\\slash and \xff invalid utf-8\n")
"""
    await run_child(journal, U, script)
    assert msgs(journal.read(U)) == [
        "  leading kept, trailing dropped", "a", "b", "back\\slash and \ufffd invalid utf-8"]


async def test_long_lines_are_split_at_line_max(journal: Journal) -> None:
    # one complete 120 KiB line, then a 100 KiB partial line arriving in small writes
    script = r"""
import os, time
os.write(1, b"x" * (120 * 1024) + b"\n")
for i in range(100):
    os.write(1, b"y" * 1024)
os.write(1, b"\nshort\n")
"""
    await run_child(journal, U, script)
    got = msgs(journal.read(U))
    assert [len(m) for m in got[:3]] == [LINE_MAX, LINE_MAX, 120 * 1024 - 2 * LINE_MAX]
    assert set("".join(got[:3])) == {"x"}
    assert [len(m) for m in got[3:6]] == [LINE_MAX, LINE_MAX, 100 * 1024 - 2 * LINE_MAX]
    assert got[6] == "short"


async def test_long_line_split_keeps_utf8_characters_whole(journal: Journal) -> None:
    script = r"""
import os
os.write(1, ("é" * LINE).encode() + b"\n")
""".replace("LINE", str(LINE_MAX))
    await run_child(journal, U, script)
    got = msgs(journal.read(U))
    assert "".join(got) == "é" * LINE_MAX
    assert all(len(m.encode()) <= LINE_MAX for m in got)
    assert "\ufffd" not in "".join(got)


async def test_eof_waits_for_every_writer(journal: Journal) -> None:
    """A background grandchild holding stdout keeps the pipe open, as under journald."""
    pipe = journal.writer(U, "sh")
    proc = subprocess.Popen(["sh", "-c", "echo parent; (sleep 0.3; echo grandchild) &"],
                            stdout=pipe.write_fd, stdin=subprocess.DEVNULL)
    pipe.set_pid(proc.pid)
    pipe.close_write()
    await asyncio.to_thread(proc.wait)
    await asyncio.sleep(0.05)
    assert not pipe.closed
    await asyncio.wait_for(pipe.wait_closed(), 5)
    assert msgs(journal.read(U)) == ["parent", "grandchild"]


async def test_pipe_close_stores_buffered_partial_line(journal: Journal) -> None:
    pipe = journal.writer(U, "x", pid=42)
    assert pipe.write_fd is not None
    os.write(pipe.write_fd, b"one\ntwo without newline")
    pipe.close()  # drains the kernel buffer before closing
    assert pipe.closed and pipe.write_fd is None
    got = journal.read(U)
    assert msgs(got) == ["one", "two without newline"]
    assert {e.pid for e in got} == {42}
    await pipe.wait_closed()


def test_parse_level_prefix() -> None:
    assert parse_level_prefix(b"<0>x", 6) == (0, b"x")
    assert parse_level_prefix(b"<007>x", 6) == (7, b"x")
    assert parse_level_prefix(b"<8>x", 6) == (6, b"<8>x")
    assert parse_level_prefix(b"<0007>x", 6) == (6, b"<0007>x")
    assert parse_level_prefix(b"<>x", 6) == (6, b"<>x")
    assert parse_level_prefix(b"<3", 6) == (6, b"<3")
    assert parse_level_prefix(b"< 3>x", 6) == (6, b"< 3>x")
    assert parse_level_prefix(b"<3>", 6) == (3, b"")


# -- own lines, format, reading ---------------------------------------------------------------


def test_log_multiline_and_escaping_round_trip(tmp_path: Path) -> None:
    j = Journal(tmp_path)  # no event loop: writes synchronously
    j.log(U, "Starting Web…", identifier="flotte")
    j.log(U, "line one\nline two\\n not an escape", priority=3, identifier="odd name\\x",
          pid=7)
    got = j.read(U)
    assert got[0].pid == os.getpid() and got[0].message == "Starting Web…"
    assert got[1] == Entry(got[1].time, 3, "odd name\\x", 7,
                           "line one\nline two\\n not an escape", U)
    raw = (tmp_path / U / CURRENT).read_bytes()
    assert raw.startswith(HEADER)
    assert raw.count(b"\n") == 3  # header + one physical line per entry
    text = got[1].format(hostname="h")
    first, second = text.split("\n")
    assert first.endswith(" h odd name\\x[7]: line one")
    assert second.strip() == "line two\\n not an escape"
    assert len(second) - len(second.lstrip()) == first.index("line one")
    with pytest.raises(ValueError):
        j.log(U, "x", priority=8)
    with pytest.raises(ValueError):
        j.log(U, "x", identifier="")


def test_entry_format_short() -> None:
    t = time.mktime((2024, 11, 27, 12, 0, 0, 0, 0, -1))
    assert Entry(t, 6, "nginx", 1234, "hello", U).format(hostname="node1") == \
        "Nov 27 12:00:00 node1 nginx[1234]: hello"
    assert Entry(t, 6, "kernel", None, "x", U).format(hostname="n") == \
        "Nov 27 12:00:00 n kernel: x"
    assert Entry(t, 6, "a", 1, "b", U).as_dict()["pid"] == 1


@pytest.mark.parametrize("bad", ["", ".", "..", "a/b", "../x", "a\0b"])
def test_unit_names_that_escape_the_directory_are_refused(tmp_path: Path, bad: str) -> None:
    j = Journal(tmp_path)
    with pytest.raises(ValueError):
        j.log(bad, "x")
    with pytest.raises(ValueError):
        j.read(bad)


def test_read_lines_since_and_reopen(tmp_path: Path) -> None:
    j = Journal(tmp_path)
    for i in range(50):
        j.log(U, f"m{i}")
    cut = time.time()
    time.sleep(0.002)
    for i in range(50, 60):
        j.log(U, f"m{i}")
    j.close()

    j2 = Journal(tmp_path)  # a restarted supervisor
    assert msgs(j2.read(U)) == [f"m{i}" for i in range(60)]
    assert msgs(j2.read(U, lines=3)) == ["m57", "m58", "m59"]
    assert msgs(j2.read(U, since=cut)) == [f"m{i}" for i in range(50, 60)]
    assert msgs(j2.read(U, since=cut, lines=2)) == ["m58", "m59"]
    assert j2.read(U, lines=0) == []
    assert j2.read("never.service") == []
    assert j2.units() == [U]
    j2.log(U, "after restart")
    assert msgs(j2.read(U, lines=2)) == ["m59", "after restart"]


def test_torn_last_line_after_crash(tmp_path: Path) -> None:
    j = Journal(tmp_path)
    j.log(U, "good")
    j.close()
    with open(tmp_path / U / CURRENT, "ab") as f:
        f.write(b"1700000000000000 6 12 ident half-writ")  # crash mid-write: no newline
    j2 = Journal(tmp_path)
    j2.log(U, "next")
    got = msgs(j2.read(U))
    assert got[0] == "good" and got[-1] == "next"
    assert got == ["good", "half-writ", "next"]  # the torn line did not swallow "next"
    (tmp_path / U / CURRENT).write_bytes(HEADER + b"garbage\n1 2 3\n" +
                                         b"1700000000000000 9 1 x bad priority\n")
    j3 = Journal(tmp_path)
    assert j3.read(U) == []


def test_remove(tmp_path: Path) -> None:
    j = Journal(tmp_path)
    j.log(U, "x")
    j.log("other.service", "y")
    j.remove(U)
    assert j.read(U) == [] and not (tmp_path / U).exists()
    assert msgs(j.read("other.service")) == ["y"]
    j.log(U, "again")
    assert msgs(j.read(U)) == ["again"]


# -- rotation ----------------------------------------------------------------------------------


async def test_rotation_keeps_newest_under_bound(tmp_path: Path) -> None:
    bound = 64 * 1024
    j = Journal(tmp_path, max_bytes_per_unit=bound, keep_files=3)
    n = 20_000
    script = f"""
import sys
w = sys.stdout.write
for i in range({n}):
    w("line %06d some padding to make it longer\\n" % i)
"""
    await run_child(j, U, script)
    usage = j.disk_usage(U)
    assert usage <= bound
    assert usage > bound * 0.6  # the older files are really kept
    files = sorted(p.name for p in (tmp_path / U).iterdir())
    assert files == [CURRENT, CURRENT + ".1", CURRENT + ".2"]
    got = msgs(j.read(U))
    nums = [int(m.split()[1]) for m in got]
    assert nums[-1] == n - 1
    assert nums == list(range(nums[0], n))  # a contiguous newest suffix, oldest first
    assert len(nums) > 500
    assert msgs(j.read(U, lines=5)) == got[-5:]
    j.close()


def test_rotation_keep_files_1(tmp_path: Path) -> None:
    j = Journal(tmp_path, max_bytes_per_unit=4096, keep_files=1)
    for i in range(1000):
        j.log(U, f"entry {i}")
    assert j.disk_usage(U) <= 4096
    assert msgs(j.read(U))[-1] == "entry 999"
    assert [p.name for p in (tmp_path / U).iterdir()] == [CURRENT]


# -- follow ------------------------------------------------------------------------------------


async def test_follow_backlog_then_live_with_latency(journal: Journal) -> None:
    for i in range(20):
        journal.log(U, f"old {i}")
    pipe = journal.writer(U, "live", pid=99)
    assert pipe.write_fd is not None
    latencies: list[float] = []
    async with journal.follow(U, lines=3) as follower:
        seen = [(await asyncio.wait_for(follower.__anext__(), 2)).message for _ in range(3)]
        assert seen == ["old 17", "old 18", "old 19"]
        for i in range(20):
            t0 = time.perf_counter()
            os.write(pipe.write_fd, f"<4>live {i}\n".encode())
            e = await asyncio.wait_for(follower.__anext__(), 2)
            latencies.append(time.perf_counter() - t0)
            assert (e.message, e.priority, e.pid, e.identifier) == (f"live {i}", 4, 99, "live")
    latencies.sort()
    assert latencies[len(latencies) // 2] < 0.005, latencies  # median well under 5 ms
    pipe.close()
    # also on disk
    assert msgs(journal.read(U, lines=1)) == ["live 19"]


async def test_follow_survives_rotation_and_sees_everything(tmp_path: Path) -> None:
    j = Journal(tmp_path, max_bytes_per_unit=8 * 1024, keep_files=2)
    follower = j.follow(U, lines=0)
    n = 3000
    script = f"for i in range({n}): print('rot', i)"
    task = asyncio.create_task(run_child(j, U, script))
    got = []
    async for e in follower:
        got.append(int(e.message.split()[1]))
        if len(got) == n:
            break
    await task
    await follower.aclose()
    assert got == list(range(n))
    assert j.disk_usage(U) <= 8 * 1024
    j.close()


async def test_follow_ends_on_close_and_drops_for_slow_readers(tmp_path: Path) -> None:
    j = Journal(tmp_path)
    f = j.follow(U, lines=0, max_pending=5)
    for i in range(12):
        j.log(U, f"n{i}")
    first = await f.__anext__()
    assert "7 entries skipped" in first.message and first.priority == 4
    assert [(await f.__anext__()).message for _ in range(5)] == [f"n{i}" for i in range(7, 12)]
    j.close()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(f.__anext__(), 1)


async def test_abandoned_followers_are_released(journal: Journal) -> None:
    import gc

    f = journal.follow(U)
    assert len(journal._units[U].followers) == 1
    del f
    gc.collect()
    assert len(journal._units[U].followers) == 0


# -- scale ---------------------------------------------------------------------------------


async def test_thousand_concurrent_pipes(tmp_path: Path) -> None:
    n = 1000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = 2 * n + 200
    if soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {need}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    try:
        j = Journal(tmp_path)
        pipes: list[JournalPipe] = [j.writer(f"u{i}.service", f"id{i}") for i in range(n)]
        fds = [p.write_fd for p in pipes]
        # One real child writes two lines (the second split over time) into every pipe.
        script = f"""
import os, sys, time
fds = {fds!r}
for i, fd in enumerate(fds):
    os.write(fd, b"hello %d\\npart" % i)
time.sleep(0.05)
for fd in fds:
    os.write(fd, b"ial\\n")
"""
        proc = subprocess.Popen([sys.executable, "-c", script], pass_fds=fds,  # type: ignore[arg-type]
                                stdin=subprocess.DEVNULL)
        for p in pipes:
            p.set_pid(proc.pid)
            p.close_write()
        await asyncio.wait_for(asyncio.gather(*(p.wait_closed() for p in pipes)), 30)
        assert await asyncio.to_thread(proc.wait) == 0
        for i in (0, 1, 500, n - 1):
            assert msgs(j.read(f"u{i}.service")) == [f"hello {i}", "partial"]
        assert sum(len(j.read(f"u{i}.service")) for i in range(n)) == 2 * n
        assert len(j._open) <= 64  # descriptors for files stay bounded
        j.close()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def test_throughput_through_a_pipe(tmp_path: Path) -> None:
    """Not a benchmark gate, a sanity floor: a chatty service must not swamp us."""
    j = Journal(tmp_path, max_bytes_per_unit=64 * 1024 * 1024)
    n = 200_000
    script = f"""
import sys
w = sys.stdout.write
for i in range({n}):
    w("request %d handled in 3 ms status=200 path=/api/v1/items\\n" % i)
"""
    t0 = time.perf_counter()
    await run_child(j, U, script)
    elapsed = time.perf_counter() - t0
    assert len(j.read(U, lines=5)) == 5
    assert msgs(j.read(U, lines=1)) == [f"request {n - 1} handled in 3 ms status=200 path=/api/v1/items"]
    rate = n / elapsed
    print(f"\n{rate:,.0f} lines/s through one pipe")
    assert rate > 20_000
    j.close()
