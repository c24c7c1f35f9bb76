"""``flotte announce``: the decision core, the checks, and the command as a real process.

The core is tested transition by transition and by a property (after any
history, once writes succeed the key is present exactly when the last check
was healthy).  The command runs as a subprocess against a real API (memory
registry) and a real etcd, checking a real HTTP server that the test makes
healthy or sick, and is stopped with real signals.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from discovery.discovery_support import (
    ApiThread,
    HttpBackend,
    LoopThread,
    flotte_cmd,
    popen,
    wait_for,
)
from etcd_server import EtcdServer
from flotte.discovery.announce import (
    Action,
    AnnounceError,
    Announcer,
    CheckResult,
    ExecCheck,
    Health,
    HttpCheck,
    NoCheck,
    Outcome,
    Published,
    Settings,
    State,
    TcpCheck,
    check_port,
    next_delay,
    on_check,
    on_stop,
    on_write,
    parse_check,
    placeholders,
    render,
)
from flotte.discovery.kv import RegistryKV
from flotte.registry import KeyValue, Registry, open_registry
from support import require

OK = CheckResult(True, "HTTP 200")
SICK = CheckResult(False, "HTTP 503")
KEY = "/services/apache/10.0.0.1"
VALUE = "10.0.0.1:8080"


# -- templates --------------------------------------------------------------------------------------


def test_render_the_seeds_json_value_without_escaping() -> None:
    values = {"host": "core-01", "ip": "10.0.0.1", "port": "8080", "machine_id": "ab" * 16}
    template = '{"host": "{host}", "ipv4_addr": "{ip}", "port": {port}}'
    assert render(template, values) == '{"host": "core-01", "ipv4_addr": "10.0.0.1", "port": 8080}'
    assert render("/services/apache/{ip}", values) == "/services/apache/10.0.0.1"
    assert render("{machine_id}", values) == "ab" * 16
    assert placeholders(template) == {"host", "ip", "port"}


def test_render_escapes_and_shell_variables() -> None:
    assert render("{{ip}} is {ip}", {"ip": "1.2.3.4"}) == "{ip} is 1.2.3.4"
    assert render("curl ${HOME}/x {a,b}", {}) == "curl ${HOME}/x {a,b}"
    assert placeholders("{{ip}} ${port}") == set()


def test_render_refuses_unknown_or_missing_placeholders() -> None:
    with pytest.raises(AnnounceError, match=r"unknown placeholder \{hots\}"):
        render("{hots}", {"host": "h"})
    with pytest.raises(AnnounceError, match=r"\{port\} is used .* pass --port"):
        render("{ip}:{port}", {"ip": "1.2.3.4"})


def test_check_port_and_parse_check() -> None:
    assert check_port("http://127.0.0.1:8080/health") == 8080
    assert check_port("http://example.com/") == 80
    assert check_port("https://example.com/") == 443
    assert check_port("tcp://h:5432") == 5432
    assert check_port("exec:true") is None
    assert check_port(None) is None
    assert isinstance(parse_check(None, 1), NoCheck)
    assert isinstance(parse_check("http://h:1/", 1), HttpCheck)
    assert isinstance(parse_check("tcp://h:1", 1), TcpCheck)
    assert isinstance(parse_check("exec:true", 1), ExecCheck)
    for bad in ("ftp://h/", "tcp://h", "exec:", "localhost:8080"):
        with pytest.raises(AnnounceError):
            parse_check(bad, 1)


def test_settings_refuse_an_interval_not_shorter_than_the_ttl() -> None:
    with pytest.raises(AnnounceError, match="shorter than --ttl"):
        Settings(KEY, VALUE, 30, 30, 30).validate()
    with pytest.raises(AnnounceError, match="absolute key"):
        Settings("services/x", VALUE, 30, 10, 10).validate()
    with pytest.raises(AnnounceError, match="flotte manages"):
        Settings("/flotte/machines/x", VALUE, 30, 10, 10).validate()
    Settings(KEY, VALUE, 30, 10, 1).validate()


# -- the decision core ------------------------------------------------------------------------------


def test_first_healthy_check_sets_and_logs() -> None:
    step = on_check(State(), OK, VALUE, 0.0, 10)
    assert step.action is Action.SET
    assert step.state.health is Health.HEALTHY
    assert step.logs == ("healthy: HTTP 200",)


def test_healthy_and_present_refreshes_only_when_due() -> None:
    present = State(Health.HEALTHY, Published.PRESENT, VALUE, written_at=100.0)
    assert on_check(present, OK, VALUE, 105.0, 10) == on_check(present, OK, VALUE, 105.0, 10)
    step = on_check(present, OK, VALUE, 105.0, 10)
    assert (step.action, step.logs) == (Action.NONE, ())
    step = on_check(present, OK, VALUE, 110.0, 10)
    assert (step.action, step.logs) == (Action.REFRESH, ())
    # a different value (template re-rendered) is a set, not a refresh
    assert on_check(present, OK, "other", 101.0, 10).action is Action.SET


def test_first_check_unhealthy_deletes_a_possibly_stale_key() -> None:
    """A crashed predecessor may have left the key: UNSURE + sick → delete."""
    step = on_check(State(), SICK, VALUE, 0.0, 10)
    assert step.action is Action.DELETE
    assert step.logs == ("unhealthy: HTTP 503",)
    gone = on_write(step.state, Action.DELETE, Outcome(None, existed=False), VALUE, 0.0, KEY, 30)
    assert gone.state.published is Published.ABSENT and gone.logs == ()


def test_unhealthy_deletes_at_once_and_then_does_nothing() -> None:
    present = State(Health.HEALTHY, Published.PRESENT, VALUE, written_at=0.0)
    step = on_check(present, SICK, VALUE, 1.0, 10)
    assert step.action is Action.DELETE
    after = on_write(step.state, Action.DELETE, Outcome(), VALUE, 1.0, KEY, 30)
    assert after.logs == (f"deleted {KEY}",)
    again = on_check(after.state, SICK, VALUE, 2.0, 10)
    assert (again.action, again.logs) == (Action.NONE, ())
    back = on_check(again.state, OK, VALUE, 3.0, 10)
    assert back.action is Action.SET and back.logs == ("healthy: HTTP 200",)


def test_write_failures_log_once_back_off_and_recover() -> None:
    healthy = on_check(State(), OK, VALUE, 0.0, 10).state
    fail1 = on_write(healthy, Action.SET, Outcome("connection refused"), VALUE, 0.0, KEY, 30)
    assert fail1.state.published is Published.UNSURE and fail1.state.failures == 1
    assert fail1.logs == ("registry unreachable (connection refused); retrying",)
    fail2 = on_write(fail1.state, Action.SET, Outcome("connection refused"), VALUE, 0.0, KEY,
                     30)
    assert fail2.logs == ()
    assert [next_delay(replace_failures(fail1.state, n), 10) for n in (0, 1, 2, 3, 4, 5, 6)] \
        == [10, 0.5, 1, 2, 4, 8, 10]
    # after a failed write the next healthy check sets again (not a refresh)
    assert on_check(fail2.state, OK, VALUE, 1.0, 10).action is Action.SET
    ok = on_write(fail2.state, Action.SET, Outcome(), VALUE, 2.0, KEY, 30)
    assert ok.logs == ("registry reachable again", f"set {KEY} = {VALUE} (ttl 30s)")
    assert ok.state.failures == 0 and ok.state.published is Published.PRESENT


def test_failed_refresh_of_a_present_key_warns_about_the_ttl() -> None:
    present = State(Health.HEALTHY, Published.PRESENT, VALUE, written_at=0.0)
    step = on_write(present, Action.REFRESH, Outcome("timeout"), VALUE, 10.0, KEY, 30)
    assert step.logs == (f"registry unreachable (timeout); retrying; {KEY} expires within 30s "
                         "unless refreshed",)


def test_on_stop_deletes_unless_known_absent() -> None:
    assert on_stop(State()) is Action.DELETE
    assert on_stop(State(published=Published.PRESENT)) is Action.DELETE
    assert on_stop(State(published=Published.ABSENT)) is Action.NONE


def replace_failures(state: State, n: int) -> State:
    return State(state.health, state.published, state.value, state.written_at, n)


@given(st.lists(st.tuples(st.booleans(), st.booleans()), min_size=1, max_size=40))
def test_property_published_follows_the_last_check_once_writes_succeed(
        history: list[tuple[bool, bool]]) -> None:
    """Whatever happened before, a check followed by a successful write leaves the key
    present iff that check was healthy; and a failed write never claims to know."""
    state = State()
    now = 0.0
    for healthy, write_ok in history:
        now += 1
        step = on_check(state, OK if healthy else SICK, VALUE, now, 5)
        state = step.state
        if step.action is not Action.NONE:
            outcome = Outcome() if write_ok else Outcome("down")
            state = on_write(state, step.action, outcome, VALUE, now, KEY, 15).state
            if not write_ok:
                assert state.published is Published.UNSURE
                continue
        expected = Published.PRESENT if healthy else Published.ABSENT
        assert state.published is expected, (history, state)


# -- the checks, against real things --------------------------------------------------------------


@pytest.fixture(scope="module")
def loop_thread() -> Iterator[LoopThread]:
    lt = LoopThread()
    try:
        yield lt
    finally:
        lt.stop()


@pytest.fixture
def app(loop_thread: LoopThread) -> Iterator[HttpBackend]:
    backend = HttpBackend(loop_thread, "apache")
    try:
        yield backend
    finally:
        backend.set_release()
        backend.stop()


async def test_http_check_like_curl_f(app: HttpBackend) -> None:
    check = HttpCheck(f"http://127.0.0.1:{app.port}/", 2)
    try:
        result = await check()
        assert result.ok and result.detail.startswith("HTTP 200 from")
        app.healthy = False
        result = await check()
        assert not result.ok and result.detail.startswith("HTTP 503")
    finally:
        await check.close()
    slow = HttpCheck(f"http://127.0.0.1:{app.port}/slow", 0.3)
    start = time.monotonic()
    result = await slow()
    await slow.close()
    assert not result.ok and "within 0.3s" in result.detail
    assert time.monotonic() - start < 2
    port = app.port
    app.stop()
    refused = HttpCheck(f"http://127.0.0.1:{port}/", 1)
    result = await refused()
    await refused.close()
    assert not result.ok and "failed" in result.detail


async def test_tcp_check(app: HttpBackend) -> None:
    assert (await TcpCheck("127.0.0.1", app.port, 1)()).ok
    port = app.port
    app.stop()
    result = await TcpCheck("127.0.0.1", port, 1)()
    assert not result.ok and "refused" in result.detail.lower()


async def test_exec_check_exit_status_stderr_and_timeout_kills_the_group(tmp_path: Any) -> None:
    assert (await ExecCheck("true", 1)()).ok
    result = await ExecCheck("echo first >&2; echo 'oops' >&2; exit 3", 1)()
    assert not result.ok and result.detail.endswith("exited 3: oops")
    marker = tmp_path / "child.pid"
    start = time.monotonic()
    result = await ExecCheck(f"sleep 30 & echo $! > {marker}; wait", 0.3)()
    assert not result.ok and "killed" in result.detail
    assert time.monotonic() - start < 3
    child = int(marker.read_text())
    await asyncio.sleep(0.1)
    assert not _alive(child)  # the background sleep died with the group


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for init to reap it is dead)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


async def test_announcer_never_raises_on_a_broken_backend() -> None:
    class Broken:
        description = "a broken backend"

        async def refresh(self, key: str, value: str, ttl: int) -> None:
            raise RuntimeError("boom")

        async def delete(self, key: str, **kw: Any) -> None:
            raise OSError("gone")

    lines: list[str] = []
    ann = Announcer(Broken(), Settings(KEY, VALUE, 3, 1, 0.05), NoCheck(),  # type: ignore[arg-type]
                    lines.append)
    stop = asyncio.Event()
    task = asyncio.create_task(ann.run(stop))
    await asyncio.sleep(0.5)
    stop.set()
    last = await asyncio.wait_for(task, 5)
    assert "registry unreachable (RuntimeError: boom); retrying" in lines
    assert last.startswith(f"stopped; could not delete {KEY} (OSError: gone)")


# -- the command, as a process -----------------------------------------------------------------------


class Output:
    """A process's output lines, read by a thread."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def has(self, prefix: str) -> bool:
        return any(line.startswith(prefix) for line in self.lines)


def announce_proc(*args: str) -> tuple[subprocess.Popen[str], Output]:
    proc = popen(flotte_cmd("flotte.cli.announce", "announce", *args))
    return proc, Output(proc)


def stop_proc(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(5)


@pytest.fixture
def api() -> Iterator[ApiThread]:
    server = ApiThread()
    try:
        yield server
    finally:
        server.close()


def test_announce_over_the_api_sets_withdraws_and_stops(api: ApiThread, app: HttpBackend) -> None:
    key = "/services/apache/127.0.0.1"
    proc, out = announce_proc(
        "--endpoint", api.endpoint, "--key", "/services/apache/{ip}", "--ip", "127.0.0.1",
        "--value", '{"host": "{host}", "ipv4_addr": "{ip}", "port": {port}}',
        "--hostname", "core-01", "--ttl", "5", "--check-interval", "0.2",
        "--check", f"http://127.0.0.1:{app.port}/")
    try:
        wait_for(lambda: api.get(key) is not None, timeout=15)
        kv = api.get(key)
        assert kv is not None and kv.lease != 0  # on a lease: it has a TTL
        assert kv.value.decode() == (f'{{"host": "core-01", "ipv4_addr": "127.0.0.1", '
                                     f'"port": {app.port}}}')
        app.healthy = False
        sick_at = time.monotonic()
        wait_for(lambda: api.get(key) is None, timeout=5, step=0.005)
        withdraw = time.monotonic() - sick_at
        assert withdraw < 1.5, withdraw
        app.healthy = True
        wait_for(lambda: api.get(key) is not None, timeout=5)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(5) == 0
        assert api.get(key) is None
        out.thread.join(5)
        print(f"\nannounce over API: key withdrawn {withdraw * 1000:.0f} ms after the app "
              "turned unhealthy (check interval 200 ms)")
        assert out.lines[0].startswith("announcing /services/apache/127.0.0.1 = ")
        assert [line.split(":")[0].split(" ")[0] for line in out.lines[1:]] == [
            "healthy", "set", "unhealthy", "deleted", "healthy", "set", "stopped;"]
        assert out.lines[-1] == f"stopped; deleted {key}"
    finally:
        stop_proc(proc)


def test_refresh_keeps_the_key_past_its_ttl_and_sigkill_lets_it_expire(
        api: ApiThread, app: HttpBackend) -> None:
    key = "/services/refresh/k"
    proc, _ = announce_proc("--endpoint", api.endpoint, "--key", key, "--value", "v",
                            "--ttl", "2", "--check", f"tcp://127.0.0.1:{app.port}")
    try:
        wait_for(lambda: api.get(key) is not None, timeout=15)
        time.sleep(3.5)  # > ttl: only refreshes keep it
        assert api.get(key) is not None
        proc.kill()
        proc.wait(5)
        killed = time.monotonic()
        wait_for(lambda: api.get(key) is None, timeout=6)
        assert time.monotonic() - killed <= 3.5  # the TTL is the safety net
    finally:
        stop_proc(proc)


def test_sigint_deletes_too(api: ApiThread) -> None:
    key = "/services/sigint/k"
    proc, _ = announce_proc("--endpoint", api.endpoint, "--key", key, "--value", "v")
    try:
        wait_for(lambda: api.get(key) is not None, timeout=15)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(5) == 0
        assert api.get(key) is None
    finally:
        stop_proc(proc)


def test_registry_unreachable_at_start_is_retried_not_fatal(app: HttpBackend) -> None:
    api = ApiThread(start=False)
    key = "/services/late/k"
    proc, out = announce_proc("--endpoint", api.endpoint, "--key", key, "--value", "v",
                              "--ttl", "3", "--check-interval", "0.2",
                              "--check", f"http://127.0.0.1:{app.port}/")
    try:
        wait_for(lambda: out.has("registry unreachable"), timeout=15)
        time.sleep(1.0)
        assert proc.poll() is None
        assert sum(line.startswith("registry unreachable") for line in out.lines) == 1
        api.start_api()
        wait_for(lambda: api.get(key) is not None, timeout=5)
        wait_for(lambda: out.has("registry reachable again"), timeout=5)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(5) == 0
        assert api.get(key) is None
    finally:
        stop_proc(proc)
        api.close()


def test_bad_options_are_usage_errors(api: ApiThread) -> None:
    for args, why in ((["--key", "/k", "--value", "v", "--ttl", "30", "--interval", "30"],
                       "shorter than"),
                      (["--key", "/k/{hots}", "--value", "v"], "unknown placeholder"),
                      (["--key", "/k", "--value", "{ip}:{port}", "--ip", "1.2.3.4"],
                       "pass --port"),
                      (["--key", "/k", "--value", "v", "--check", "ftp://x/"], "is not http")):
        proc = popen(flotte_cmd("flotte.cli.announce", "announce", "--endpoint", api.endpoint,
                                *args))
        text, _ = proc.communicate(timeout=20)
        assert proc.returncode == 2, (args, text)
        assert why in text, (args, text)


# -- on etcd: refreshes are lease keep-alives, not writes -----------------------------------------


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdServer]:
    require("etcd", "etcd-server")
    server = EtcdServer(tmp_path_factory.mktemp("etcd-announce"))
    server.start()
    try:
        yield server
    finally:
        server.close()


def test_announce_on_etcd_keeps_a_lease_without_rewriting(
        etcd: EtcdServer, app: HttpBackend, loop_thread: LoopThread) -> None:
    key = f"/services/etcd{uuid.uuid4().hex[:8]}/127.0.0.1"
    reg: Registry = loop_thread.call(open_registry(etcd.url))

    def get() -> KeyValue | None:
        return loop_thread.call(reg.get(key))

    proc, _ = announce_proc("--registry", etcd.url, "--key", key, "--value", "{ip}:{port}",
                              "--ip", "127.0.0.1", "--ttl", "3", "--interval", "0.3",
                              "--check-interval", "0.1",
                              "--check", f"http://127.0.0.1:{app.port}/")
    try:
        wait_for(lambda: get() is not None, timeout=15)
        first = get()
        assert first is not None and first.lease != 0
        assert first.value == f"127.0.0.1:{app.port}".encode()
        time.sleep(4)  # > ttl, ~13 refreshes
        later = get()
        assert later is not None
        assert later.mod_revision == first.mod_revision  # refreshed, never rewritten
        # someone deletes the key by hand: the next refresh puts it back
        loop_thread.call(reg.delete(key))
        wait_for(lambda: get() is not None, timeout=5)
        app.healthy = False
        sick_at = time.monotonic()
        wait_for(lambda: get() is None, timeout=5, step=0.005)
        withdraw = time.monotonic() - sick_at
        print(f"\nannounce on etcd: key withdrawn {withdraw * 1000:.0f} ms after the app "
              "turned unhealthy (check interval 100 ms)")
        app.healthy = True
        wait_for(lambda: get() is not None, timeout=5)
        # etcd goes away briefly: announce rides it out and the key is there after
        etcd.restart(down_for=0.5)
        time.sleep(1.5)
        assert proc.poll() is None
        wait_for(lambda: get() is not None, timeout=10)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        assert get() is None
    finally:
        stop_proc(proc)
        loop_thread.call(reg.close())


async def test_registry_refresh_regrants_after_the_lease_expired() -> None:
    reg = await open_registry(f"memory://announce-{uuid.uuid4().hex}")
    backend = RegistryKV(reg)
    try:
        await backend.refresh("/services/r/k", "v", 1)
        first = await reg.get("/services/r/k")
        assert first is not None
        await asyncio.sleep(2.2)  # the lease expires
        assert await reg.get("/services/r/k") is None
        await backend.refresh("/services/r/k", "v", 1)
        again = await reg.get("/services/r/k")
        assert again is not None and again.lease != first.lease
        await backend.refresh("/services/r/k", "v2", 1)  # a new value: re-put, same lease
        changed = await reg.get("/services/r/k")
        assert changed is not None and changed.value == b"v2" and changed.lease == again.lease
    finally:
        await backend.close()
        await reg.close()
