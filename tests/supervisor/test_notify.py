"""The $NOTIFY_SOCKET server, fed by real processes (Python and Debian's systemd-notify)."""

from __future__ import annotations

import array
import asyncio
import os
import select
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from flotte.supervisor.notify import (
    NOTIFY_BUFFER_MAX,
    NotifyMessage,
    NotifyServer,
    parse_payload,
    send,
)

SYSTEMD_NOTIFY = "/bin/systemd-notify"
IS_ROOT = os.geteuid() == 0


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[NotifyServer]:
    # AF_UNIX paths are limited to 107 bytes; pytest's tmp_path can be long.
    path = str(tmp_path / "notify")
    if len(path) > 100:
        path = f"/tmp/flotte-notify-test-{os.getpid()}-{id(tmp_path)}"
    s = NotifyServer(path)
    s.start()
    yield s
    s.close()


class Inbox:
    """Collects one unit's messages; ``get()`` waits for the next."""

    def __init__(self) -> None:
        self.messages: list[NotifyMessage] = []
        self._event = asyncio.Event()

    def __call__(self, msg: NotifyMessage) -> None:
        self.messages.append(msg)
        self._event.set()

    async def get(self, timeout: float = 5.0) -> NotifyMessage:
        async def wait() -> NotifyMessage:
            while not self.messages:
                self._event.clear()
                await self._event.wait()
            return self.messages.pop(0)

        return await asyncio.wait_for(wait(), timeout)


def env_with(server: NotifyServer, unit: str = "a.service") -> dict[str, str]:
    return {**os.environ, **server.env_for(unit)}


async def spawn(args: list[str], env: dict[str, str], **kw: object) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(*args, env=env, stdin=subprocess.DEVNULL, **kw)  # type: ignore[arg-type]


async def settle(server: NotifyServer, received: int) -> None:
    """Until the server has read ``received`` datagrams in total."""
    for _ in range(500):
        if server.stats["received"] >= received:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"only {server.stats['received']} datagrams received")


# -- parsing ------------------------------------------------------------------------------------


def test_parse_payload_first_value_wins_and_flags_are_exact() -> None:
    lines, fields = parse_payload(b"READY=0\nSTATUS=one\nSTATUS=two\nnoequals\n\nREADY=1\0")
    assert lines == ("READY=0", "STATUS=one", "STATUS=two", "noequals", "READY=1")
    assert fields == {"READY": "0", "STATUS": "one"}
    msg = NotifyMessage(1, 0, 0, fields, b"", lines)
    assert msg.ready and msg.status == "one"


def test_message_helpers() -> None:
    raw = (b"RELOADING=1\nMONOTONIC_USEC=123\nSTOPPING=1\nMAINPID=4242\nWATCHDOG=1\n"
           b"WATCHDOG_USEC=5000000\nEXTEND_TIMEOUT_USEC=10000000\nERRNO=2\nBUSERROR=org.x.E\n"
           b"FDSTORE=1\nCUSTOM=kept")
    lines, fields = parse_payload(raw)
    m = NotifyMessage(7, 1000, 1000, fields, raw, lines)
    assert (m.reloading, m.stopping, m.watchdog, m.fdstore, m.ready) == (True, True, True, True,
                                                                          False)
    assert (m.main_pid, m.watchdog_usec, m.extend_timeout_usec, m.errno, m.monotonic_usec) == (
        4242, 5_000_000, 10_000_000, 2, 123)
    assert m.buserror == "org.x.E" and m.fields["CUSTOM"] == "kept"
    lines, fields = parse_payload(b"WATCHDOG=trigger\nMAINPID=x")
    trig = NotifyMessage(7, 0, 0, fields, b"", lines)
    assert trig.watchdog_trigger and not trig.watchdog and trig.main_pid is None
    assert NotifyMessage(1, 0, 0, {"MAINPID": "0"}, b"").main_pid is None


# -- the socket ---------------------------------------------------------------------------------


async def test_socket_mode_stale_file_and_env(tmp_path: Path) -> None:
    path = str(tmp_path / "n.sock")
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    stale.bind(path)
    stale.close()  # a socket file left behind by a crashed supervisor
    async with NotifyServer(path) as s:
        st = os.stat(path)
        assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o777
        assert s.env_for("x.service") == {"NOTIFY_SOCKET": path}
    assert not os.path.exists(path)
    Path(path).write_text("not a socket")
    with pytest.raises(FileExistsError):
        NotifyServer(path).start()
    with pytest.raises(ValueError):
        NotifyServer("relative/path")
    with pytest.raises(ValueError):
        NotifyServer("/" + "x" * 120)


async def test_python_child_reaches_its_unit_with_its_pid(server: NotifyServer) -> None:
    a, b = Inbox(), Inbox()
    pids: dict[str, int] = {}
    server.subscribe("a.service", a, lambda pid: pid == pids.get("a"))
    server.subscribe("b.service", b, lambda pid: pid == pids.get("b"))
    one_liner = ("import os, socket; s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); "
                 "s.sendto(b'READY=1\\nSTATUS=serving %d\\nMAINPID=%d' % (os.getpid(), "
                 "os.getpid()), os.environ['NOTIFY_SOCKET']); import time; time.sleep(0.2)")
    procs = {}
    for unit in ("a", "b"):
        procs[unit] = await spawn([sys.executable, "-c", one_liner], env_with(server))
        pids[unit] = procs[unit].pid
    ma, mb = await a.get(), await b.get()
    for m, unit in ((ma, "a"), (mb, "b")):
        assert m.pid == pids[unit]
        assert m.ready and m.status == f"serving {pids[unit]}" and m.main_pid == pids[unit]
        assert (m.uid, m.gid) == (os.getuid(), os.getgid())
        assert m.received <= time.monotonic()
    for p in procs.values():
        assert await p.wait() == 0


async def test_systemd_notify_binary(server: NotifyServer,
                                     require_binary: Callable[[str, str], str]) -> None:
    """systemd-notify claims its *parent's* pid (when allowed) and waits on a barrier."""
    exe = require_binary(SYSTEMD_NOTIFY, "systemd")
    inbox = Inbox()
    sessions: set[int] = set()

    def accept(pid: int) -> bool:  # NotifyAccess=all, approximated by the session
        try:
            return os.getsid(pid) in sessions
        except ProcessLookupError:
            return False

    server.subscribe("a.service", inbox, accept)
    t0 = time.monotonic()
    proc = await spawn(["/bin/sh", "-c", f"{exe} --ready --status='up and running'; exit 7"],
                       env_with(server), start_new_session=True)
    sessions.add(proc.pid)
    msg = await inbox.get()
    assert await proc.wait() == 7
    # The barrier (BARRIER=1 with an fd) was answered by closing the fd: no 5 s timeout.
    assert time.monotonic() - t0 < 4
    assert msg.ready and msg.status == "up and running"
    if IS_ROOT:
        assert msg.pid == proc.pid  # the sh, i.e. the main process: NotifyAccess=main works
    else:
        assert msg.pid != proc.pid  # systemd-notify's own pid: needs NotifyAccess=all
    assert server.stats["barriers"] >= 1 and server.stats["fds_closed"] >= 1
    assert not inbox.messages  # the barrier never reaches the callback


async def test_systemd_notify_mainpid(server: NotifyServer,
                                      require_binary: Callable[[str, str], str]) -> None:
    exe = require_binary(SYSTEMD_NOTIFY, "systemd")
    inbox = Inbox()
    server.subscribe("a.service", inbox, lambda pid: True)
    proc = await spawn([exe, "--pid=4242", "--ready"], env_with(server))
    assert await proc.wait() == 0
    msg = await inbox.get()
    assert msg.main_pid == 4242 and msg.ready
    assert msg.pid == proc.pid  # 4242 does not exist: the kernel refused the claim


@pytest.mark.skipif(not IS_ROOT or shutil.which("setpriv") is None,
                    reason="needs root and setpriv to run as another user")
async def test_other_users_can_send(tmp_path: Path) -> None:
    # The socket is 0777; its directory must be searchable too (pytest's is 0700).
    d = Path(tempfile.mkdtemp(prefix="flotte-notify-"))
    d.chmod(0o755)
    server = NotifyServer(str(d / "notify"))
    server.start()
    try:
        await _other_user_sends(server)
    finally:
        server.close()
        d.rmdir()


async def _other_user_sends(server: NotifyServer) -> None:
    inbox = Inbox()
    server.subscribe("a.service", inbox, lambda pid: True)
    proc = await spawn(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                        sys.executable, "-m", "flotte.supervisor.notify", "--ready"],
                       {**env_with(server), "PYTHONPATH": os.pathsep.join(sys.path)})
    assert await proc.wait() == 0
    msg = await inbox.get()
    assert (msg.uid, msg.gid) == (65534, 65534) and msg.ready
    assert msg.pid == proc.pid  # an unprivileged sender cannot claim its parent


async def test_unknown_pid_is_ignored(server: NotifyServer) -> None:
    inbox = Inbox()
    server.subscribe("a.service", inbox, lambda pid: pid == 1)
    proc = await spawn([sys.executable, "-m", "flotte.supervisor.notify", "--source=self",
                        "READY=1"], env_with(server))
    assert await proc.wait() == 0  # barrier answered although the pid is unknown
    assert server.stats["unknown_pid"] == 1
    assert inbox.messages == []
    assert server.route(proc.pid) is None and server.route(1) == "a.service"


async def test_first_match_unsubscribe_and_failing_callbacks(server: NotifyServer) -> None:
    first, second = Inbox(), Inbox()
    me = os.getpid()

    def boom(msg: NotifyMessage) -> None:
        raise RuntimeError("callback bug")

    server.subscribe("broken.service", boom, lambda pid: pid == me)
    server.subscribe("first.service", first, lambda pid: pid == me)
    server.subscribe("second.service", second, lambda pid: pid == me)
    assert send("STATUS=1", socket_path=server.path)
    await settle(server, 1)
    assert server.stats["callback_errors"] == 1
    server.unsubscribe("broken.service")
    server.unsubscribe("never-subscribed.service")
    assert send("STATUS=2", socket_path=server.path)
    assert (await first.get()).status == "2"
    assert second.messages == []
    server.subscribe("first.service", first, lambda pid: False)  # replaced
    assert send({"STATUS": "3"}, socket_path=server.path)
    assert (await second.get()).status == "3"


async def test_garbage_and_oversized_datagrams(server: NotifyServer) -> None:
    inbox = Inbox()
    server.subscribe("a.service", inbox, lambda pid: pid == os.getpid())
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.connect(server.path)
    s.send(b"STATUS=" + b"x" * NOTIFY_BUFFER_MAX)  # one byte too long: dropped
    s.send(b"STATUS=a\0b")  # embedded NUL: dropped
    s.send(b"\xff\x00\xfe")  # garbage with embedded NUL
    s.send(b"")  # empty datagram
    s.send(b"\xff\xfegarbage without equals\nSTATUS=\xe9t\xe9")
    s.send(os.urandom(2000).replace(b"\0", b"."))
    ok = b"STATUS=" + b"y" * (NOTIFY_BUFFER_MAX - 8) + b"\n"
    assert len(ok) == NOTIFY_BUFFER_MAX
    s.send(ok)  # exactly the maximum: accepted
    s.send(b"READY=1\0")  # one trailing NUL is tolerated
    s.close()
    await settle(server, 8)
    got = [await inbox.get() for _ in range(5)]
    assert server.stats["invalid"] == 3
    assert got[0].lines == () and got[0].fields == {}
    assert got[1].status == "\ufffdt\ufffd"
    assert got[3].status == "y" * (NOTIFY_BUFFER_MAX - 8)
    assert got[4].ready and got[4].raw == b"READY=1\0"


def _hup(fd: int, timeout_ms: int = 2000) -> bool:
    p = select.poll()
    p.register(fd, select.POLLHUP)
    return bool(p.poll(timeout_ms))


@pytest.mark.parametrize("known", [True, False])
async def test_passed_fds_are_closed(server: NotifyServer, known: bool) -> None:
    inbox = Inbox()
    server.subscribe("a.service", inbox, lambda pid: known and pid == os.getpid())
    pipes = [os.pipe() for _ in range(3)]
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.connect(server.path)
    fds = array.array("i", [w for _, w in pipes])
    s.sendmsg([b"FDSTORE=1\nFDNAME=x"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds.tobytes())])
    s.close()
    for _, w in pipes:
        os.close(w)
    await settle(server, 1)
    try:
        # The only other copy of each write end was the server's: closing it gives POLLHUP.
        assert [await asyncio.to_thread(_hup, r) for r, _ in pipes] == [True] * 3
    finally:
        for r, _ in pipes:
            os.close(r)
    assert server.stats["fds_closed"] == 3
    if known:
        msg = await inbox.get()
        assert msg.fdstore and msg.fds_received == 3
    else:
        assert server.stats["unknown_pid"] == 1


async def test_helper_cli(server: NotifyServer) -> None:
    inbox = Inbox()
    server.subscribe("a.service", inbox, lambda pid: True)
    cli = [sys.executable, "-m", "flotte.supervisor.notify"]
    proc = await spawn([*cli, "--ready", "--status=hello world", "X=1"], env_with(server))
    assert await proc.wait() == 0
    m = await inbox.get()
    assert m.lines == ("READY=1", "STATUS=hello world", "X=1")
    # like systemd-notify, the claim is made for the parent (us) when privileged
    assert m.pid == (os.getpid() if IS_ROOT else proc.pid)
    proc = await spawn([*cli, "--source=self", "--reloading"], env_with(server))
    assert await proc.wait() == 0
    m = await inbox.get()
    assert m.pid == proc.pid and m.reloading and m.monotonic_usec is not None
    proc = await spawn([*cli, "--pid", "--source=self", "--stopping"], env_with(server))
    assert await proc.wait() == 0
    m = await inbox.get()
    assert m.main_pid == os.getpid() and m.stopping
    env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
    for bad in (["READY=1"], [], ["--bogus"], ["notanassignment"], ["--pid=x", "READY=1"]):
        proc = await spawn([*cli, *bad], env, stderr=subprocess.DEVNULL)
        assert await proc.wait() == 1, bad
    proc = await spawn([*cli, "READY=1"], {**env, "NOTIFY_SOCKET": server.path + ".missing"},
                       stderr=subprocess.DEVNULL)
    assert await proc.wait() == 1


async def test_abstract_socket() -> None:
    name = f"@flotte-test-{os.getpid()}-{time.monotonic_ns()}"
    inbox = Inbox()
    async with NotifyServer(name) as s:
        s.subscribe("a.service", inbox, lambda pid: True)
        proc = await spawn([sys.executable, "-m", "flotte.supervisor.notify", "--source=self",
                            "READY=1"], {**os.environ, **s.env_for("a.service")})
        assert await proc.wait() == 0
        assert (await inbox.get()).pid == proc.pid


async def test_many_senders_burst(server: NotifyServer) -> None:
    """A burst from many processes is neither lost nor misrouted."""
    n = 50
    inbox = Inbox()
    server.subscribe("a.service", inbox, lambda pid: True)
    script = ("import os, socket\ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
              "for i in range(20): s.sendto(b'WATCHDOG=1\\nSEQ=%d' % i, "
              "os.environ['NOTIFY_SOCKET'])\n")
    procs = [await spawn([sys.executable, "-c", script], env_with(server)) for _ in range(n)]
    for p in procs:
        assert await p.wait() == 0
    await settle(server, n * 20)
    got = inbox.messages
    assert len(got) == n * 20 and all(m.watchdog for m in got)
    by_pid: dict[int, list[int]] = {}
    for m in got:
        by_pid.setdefault(m.pid, []).append(int(m.fields["SEQ"]))
    assert sorted(by_pid) == sorted(p.pid for p in procs)
    assert all(seqs == list(range(20)) for seqs in by_pid.values())
