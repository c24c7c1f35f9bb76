"""flotte's supervisor against supervisord and circus: 1,000 services, crashes, memory.

Every system runs as its own daemon process (flotte's ``Supervisor`` in a child
Python process started from this file), supervising 1,000 copies of
``/bin/sleep 3600``.  All observation is done the same way for all three, from
outside, through ``/proc``: a service counts as *running* once a direct child of
the daemon has exec'd ``sleep`` (``/proc/<pid>/stat``: ppid = daemon, comm =
``sleep``; this kernel has no ``/proc/<pid>/task/*/children``, so new PIDs are
found by diffing ``/proc``'s listing every ~1 ms).

Metrics:

* **start-all** — daemon up, 1,000 services configured but not started; from
  the moment the start-everything command is sent (flotte: ``start`` of every
  unit under one ``gather`` inside the daemon, triggered over a pipe;
  supervisord: XML-RPC ``startAllProcesses``; circus: ``start`` over its zmq
  endpoint) until 1,000 ``sleep`` children exist.
* **cold start** — from launching the daemon process (Python start-up, config
  or unit load included) to 1,000 ``sleep`` children; supervisord/circus with
  ``autostart``, flotte starting every unit as soon as all are loaded.
* **restart p50/p99/max** — ``Restart=always``/``RestartSec=0`` (supervisord
  ``autorestart=true``; circus's default respawn): SIGKILL one service's main
  process, time until a new ``sleep`` child of the daemon exists; crashes are
  spread over distinct services, one at a time, 10 ms apart.  Afterwards every
  service is checked through the daemon's own API (flotte: active/running;
  supervisord: RUNNING) and the ``sleep`` children are counted again.
* **RSS** — ``VmRSS`` of the daemon process alone, 3 s after all 1,000 run.

Peers keep their defaults except: supervisord ``startsecs=0`` (otherwise a
program is only RUNNING after 1 s; its spawn time is unchanged) and
``minfds=20000``; logs, sockets and state go to a temp dir.  Every daemon gets
``RLIMIT_NOFILE`` soft = hard.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import resource
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import xmlrpc.client
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

N_SERVICES = 1_000
CRASHES = 200
CRASH_GAP = 0.010
CRASH_BUDGET = 12.0  # seconds of crash test per system at most
CRASH_TIMEOUT = 8.0  # one restart at most (circus: check_delay 5 s)
SETTLE = 3.0
START_TIMEOUT = 60.0
TOTAL_BUDGET = 180.0
SYSTEMS = ("flotte", "supervisord", "circus")
UNIT_TEXT = ("[Unit]\nStartLimitIntervalSec=0\n[Service]\nExecStart=/bin/sleep 3600\n"
             "Restart=always\nRestartSec=0\n")

BIN = Path(sys.executable).parent
_ALL_PIDS: set[int] = set()  # every sleep child seen, for the final sweep


# -- /proc -----------------------------------------------------------------------------
def _stat(pid: int) -> tuple[str, int] | None:
    """(comm, ppid) of a process, None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    lp, rp = data.find(b"("), data.rfind(b")")
    rest = data[rp + 2:].split(b" ", 3)
    return data[lp + 1:rp].decode(errors="replace"), int(rest[1])


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


class Children:
    """The daemon's direct children that have exec'd ``sleep``, kept current by diffing /proc."""

    def __init__(self, daemon: int) -> None:
        self.daemon = daemon
        self.sleeping: set[int] = set()
        self._other: set[int] = set()  # not ours, or ours and final

    def poll(self) -> set[int]:
        """Refresh; returns the PIDs that newly became sleep children."""
        listing = {int(p) for p in os.listdir("/proc") if p.isdigit()}
        self.sleeping &= listing
        self._other &= listing
        new: set[int] = set()
        for pid in listing - self.sleeping - self._other:
            st = _stat(pid)
            if st is None:
                continue
            comm, ppid = st
            if ppid != self.daemon:
                self._other.add(pid)
            elif comm == "sleep":
                new.add(pid)
            # else: our child that has not exec'd yet (flotte's /bin/sh): look again
        self.sleeping |= new
        _ALL_PIDS.update(new)
        return new

    def wait_count(self, n: int, timeout: float, interval: float = 0.002, *,
                   at_most: bool = False) -> float | None:
        """perf_counter() when at least (at most) n sleep children exist, None on timeout."""
        deadline = time.perf_counter() + timeout
        while True:
            self.poll()
            now = time.perf_counter()
            if (len(self.sleeping) <= n) if at_most else (len(self.sleeping) >= n):
                return now
            if now > deadline:
                return None
            time.sleep(interval)


def _raise_nofile() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pct(samples: list[float], q: float) -> float:
    if not samples:
        return float("nan")
    s = sorted(samples)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


# -- the daemons -------------------------------------------------------------------------
class Daemon:
    """One supervisor daemon under test."""

    name = ""

    def __init__(self, tmp: Path, env: dict[str, str] | None = None) -> None:
        self.tmp = tmp
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.launched = 0.0

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def _popen(self, argv: list[str], **kw: Any) -> None:
        self.launched = time.perf_counter()
        self.proc = subprocess.Popen(argv, preexec_fn=_raise_nofile, cwd=self.tmp, env=self.env,
                                     stderr=open(self.tmp / "daemon.stderr", "wb"),  # noqa: SIM115
                                     **kw)

    def launch(self) -> None:
        """Start the daemon; it starts every service on its own (autostart)."""
    def wait_ready(self, timeout: float) -> None: ...
    def start_all(self) -> None:
        """Send the start-everything command; must not wait for it to finish."""
    def stop_all(self) -> None:
        """Stop every service, keep the daemon."""
    def verify(self) -> str:
        return "-"
    def stop(self) -> None:
        """Graceful stop, if the daemon has one."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def shutdown(self, timeout: float = 15.0) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(Exception):
            self.stop()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Flotte(Daemon):
    name = "flotte"
    #: which units the daemon loads: "flat" (independent) or "tree" (bench/deps.py)
    layout = "flat"

    def launch(self) -> None:
        argv = [sys.executable, str(Path(__file__).resolve()), "--flotte-daemon",
                str(self.tmp / "state"), str(N_SERVICES), self.layout]
        self._popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)

    def _send(self, cmd: str) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(cmd.encode() + b"\n")

    def recv(self, timeout: float) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        out = self.proc.stdout
        line = b""
        deadline = time.monotonic() + timeout
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([out], [], [], left)[0]:
                raise TimeoutError("flotte daemon did not answer")
            ch = out.read(1)
            if not ch:
                raise RuntimeError("flotte daemon exited")
            line += ch
        msg: dict[str, Any] = json.loads(line)
        return msg

    def until(self, event: str, timeout: float) -> dict[str, Any]:
        while (msg := self.recv(timeout))["event"] != event:
            pass
        return msg

    def wait_ready(self, timeout: float) -> None:
        self.until("started", timeout)

    def start_all(self) -> None:
        self._send("start")

    def stop_all(self) -> None:
        self._send("stop")
        self.until("stopped", 60)

    def verify(self) -> str:
        self._send("status")
        msg = self.until("status", 30)
        ok = msg["states"].get("active/running", 0)
        return f"{ok}/{N_SERVICES} active/running"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self._send("quit")


class Supervisord(Daemon):
    name = "supervisord"

    def launch(self) -> None:
        self.port = _free_port()
        (self.tmp / "logs").mkdir()
        conf = [
            "[supervisord]", f"logfile={self.tmp}/supervisord.log",
            f"pidfile={self.tmp}/supervisord.pid", f"childlogdir={self.tmp}/logs",
            "nodaemon=true", "minfds=20000", "user=root",
            "[inet_http_server]", f"port=127.0.0.1:{self.port}",
            "[rpcinterface:supervisor]",
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        ]
        for i in range(N_SERVICES):
            conf += [f"[program:p{i:04d}]", "command=/bin/sleep 3600", "autostart=true",
                     "autorestart=true", "startsecs=0"]
        (self.tmp / "supervisord.conf").write_text("\n".join(conf) + "\n")
        self._popen([str(BIN / "supervisord"), "-c", str(self.tmp / "supervisord.conf")],
                    stdout=subprocess.DEVNULL)

    def rpc(self) -> Any:
        return xmlrpc.client.ServerProxy(f"http://127.0.0.1:{self.port}/RPC2").supervisor

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.rpc().getState()["statename"] == "RUNNING":
                    return
            except (OSError, xmlrpc.client.Error):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("supervisord did not come up")
            time.sleep(0.05)

    def start_all(self) -> None:
        def call() -> None:
            with contextlib.suppress(Exception):
                self.rpc().startAllProcesses(False)
        threading.Thread(target=call, daemon=True).start()

    def stop_all(self) -> None:
        self.rpc().stopAllProcesses(True)

    def verify(self) -> str:
        infos = self.rpc().getAllProcessInfo()
        ok = sum(1 for i in infos if i["statename"] == "RUNNING")
        return f"{ok}/{N_SERVICES} RUNNING"


class Circus(Daemon):
    name = "circus"

    def launch(self) -> None:
        ipc = f"ipc://{self.tmp}"
        self.endpoint = f"{ipc}/endpoint"
        conf = ["[circus]", f"endpoint = {self.endpoint}", f"pubsub_endpoint = {ipc}/pubsub"]
        for i in range(N_SERVICES):
            conf += [f"[watcher:p{i:04d}]", "cmd = /bin/sleep 3600", "numprocesses = 1",
                     "autostart = true"]
        (self.tmp / "circus.ini").write_text("\n".join(conf) + "\n")
        self._popen([str(BIN / "circusd"), str(self.tmp / "circus.ini")],
                    stdout=subprocess.DEVNULL)

    def call(self, command: str, timeout: float = 30.0, **props: Any) -> dict[str, Any]:
        from circus.client import CircusClient

        client = CircusClient(endpoint=self.endpoint, timeout=timeout)
        try:
            res: dict[str, Any] = client.call({"command": command, "properties": props})
            return res
        finally:
            client.stop()

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(Exception):
                if self.call("list", timeout=2.0).get("status") == "ok":
                    return
            if time.monotonic() > deadline:
                raise TimeoutError("circusd did not come up")
            time.sleep(0.05)

    def start_all(self) -> None:
        def call() -> None:
            with contextlib.suppress(Exception):
                self.call("start", timeout=120.0)
        threading.Thread(target=call, daemon=True).start()

    def stop_all(self) -> None:
        self.call("stop", timeout=120.0)

    def verify(self) -> str:
        res = self.call("status")
        ok = sum(1 for name, s in res.get("statuses", {}).items()
                 if name.startswith("p") and s == "active")
        return f"{ok}/{N_SERVICES} watchers active"


DAEMONS: dict[str, type[Daemon]] = {"flotte": Flotte, "supervisord": Supervisord,
                                    "circus": Circus}


# -- measuring ---------------------------------------------------------------------------
@dataclass
class Result:
    cold: float | None = None
    start_all: float | None = None
    rss_kib: int | None = None
    restarts: list[float] = field(default_factory=list)
    crash_timeouts: int = 0
    after: str = "-"
    children_after: int | None = None
    note: str = ""


def _run(system: str, deadline: float, profile: str | None) -> Result:
    """Launch (autostart: cold), stop all, start all, settle, RSS, crashes, verify."""
    res = Result()
    env = dict(os.environ)
    if profile and system == "flotte":
        env["FLOTTE_BENCH_PROFILE"] = profile
    mark = time.monotonic()

    def phase(what: str) -> None:
        nonlocal mark
        now = time.monotonic()
        print(f"    {what}: {now - mark:.1f}s", flush=True)
        mark = now

    with tempfile.TemporaryDirectory(prefix=f"fb-{system}-") as tmp:
        d = DAEMONS[system](Path(tmp), env)
        try:
            d.launch()
            kids = Children(d.pid)
            t = kids.wait_count(N_SERVICES, START_TIMEOUT)
            if t is None:
                res.note += f" cold: only {len(kids.sleeping)} ran;"
                return res
            res.cold = t - d.launched
            phase("cold start")
            d.wait_ready(START_TIMEOUT)
            d.stop_all()
            if kids.wait_count(0, 60.0, 0.01, at_most=True) is None:
                res.note += f" stop-all left {len(kids.sleeping)} running;"
                return res
            phase("stop all")
            time.sleep(0.5)
            kids.poll()
            t0 = time.perf_counter()
            d.start_all()
            t = kids.wait_count(N_SERVICES, START_TIMEOUT)
            if t is None:
                res.note += f" start-all: only {len(kids.sleeping)} ran;"
                return res
            res.start_all = t - t0
            phase("start all")
            time.sleep(SETTLE)
            res.rss_kib = _rss_kib(d.pid)
            _crash_test(kids, res, min(deadline - 10.0, time.monotonic() + CRASH_BUDGET))
            phase("settle + crashes")
            time.sleep(0.5)
            kids.poll()
            res.children_after = len(kids.sleeping)
            try:
                res.after = d.verify()
            except Exception as exc:
                res.after = f"verify failed: {exc!r}"
        except Exception as exc:
            res.note += f" error: {exc!r};"
        finally:
            d.shutdown()
            _sweep()
            phase("shutdown")
    return res


def _crash_test(kids: Children, res: Result, until: float) -> None:
    rng = random.Random(1)
    victims = rng.sample(sorted(kids.sleeping), min(CRASHES, len(kids.sleeping)))
    for victim in victims:
        if time.monotonic() > until:
            res.note += f" crash budget ({CRASH_BUDGET:.0f}s) used up after {len(res.restarts)};"
            break
        kids.poll()
        if victim not in kids.sleeping:
            continue
        t0 = time.perf_counter()
        os.kill(victim, signal.SIGKILL)
        end = t0 + CRASH_TIMEOUT
        while True:
            if kids.poll():
                res.restarts.append(time.perf_counter() - t0)
                break
            if time.perf_counter() > end:
                res.crash_timeouts += 1
                break
            time.sleep(0.0002)
        time.sleep(CRASH_GAP)


def _sweep() -> None:
    """Kill any sleep 3600 we saw that outlived its daemon (checked by PID, comm, argv)."""
    for pid in list(_ALL_PIDS):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            _ALL_PIDS.discard(pid)
            continue
        if argv[:2] == [b"/bin/sleep", b"3600"] or argv[:2] == [b"sleep", b"3600"]:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        _ALL_PIDS.discard(pid)


# -- report ------------------------------------------------------------------------------
def _fmt(v: float | None, scale: float = 1.0, unit: str = "", nd: int = 2) -> str:
    return "n/a" if v is None or v != v else f"{v * scale:.{nd}f}{unit}"


def _report(results: dict[str, Result], wall: float) -> int:
    rows: list[tuple[str, Callable[[Result], str]]] = [
        ("start-all, daemon up (s)", lambda r: _fmt(r.start_all)),
        ("cold incl. daemon start (s)", lambda r: _fmt(r.cold)),
        ("restart p50 (ms)", lambda r: _fmt(_pct(r.restarts, 0.5), 1e3, nd=1)),
        ("restart p99 (ms)", lambda r: _fmt(_pct(r.restarts, 0.99), 1e3, nd=1)),
        ("restart max (ms)", lambda r: _fmt(max(r.restarts) if r.restarts else None, 1e3,
                                             nd=1)),
        ("crashes measured / timed out", lambda r: f"{len(r.restarts)} / {r.crash_timeouts}"),
        ("daemon RSS (MiB)", lambda r: _fmt(None if r.rss_kib is None else r.rss_kib / 1024,
                                            nd=1)),
        ("sleep children after crashes", lambda r: str(r.children_after)),
        ("states after crashes", lambda r: r.after),
    ]
    w0 = max(len(r[0]) for r in rows) + 2
    cols = [max(22, *(len(f(results[s])) + 2 for _, f in rows)) for s in SYSTEMS]
    print(f"{N_SERVICES} x /bin/sleep 3600; {CRASHES} crashes planned; wall {wall:.1f}s")
    print("metric".ljust(w0) + "".join(s.rjust(c) for s, c in zip(SYSTEMS, cols, strict=True)))
    for label, f in rows:
        print(label.ljust(w0) + "".join(f(results[s]).rjust(c)
                                        for s, c in zip(SYSTEMS, cols, strict=True)))
    for s in SYSTEMS:
        if results[s].note:
            print(f"note {s}:{results[s].note}")
    fl, sv = results["flotte"], results["supervisord"]
    verdicts: list[tuple[str, bool | None, str]] = []
    if fl.start_all is None:
        verdicts.append(("all running <= 1.5 s", None, "not measured"))
    else:
        verdicts.append(("all running <= 1.5 s", fl.start_all <= 1.5,
                         f"{fl.start_all:.2f}s ({fl.start_all / 1.5:.2f}x the target)"))
    if fl.start_all and sv.start_all:
        ratio = sv.start_all / fl.start_all
        verdicts.append((">= 3x faster than supervisord", ratio >= 3,
                         f"{ratio:.2f}x (supervisord {sv.start_all:.2f}s / flotte "
                         f"{fl.start_all:.2f}s)"))
    else:
        verdicts.append((">= 3x faster than supervisord", None, "not measured"))
    p50 = _pct(fl.restarts, 0.5)
    if fl.restarts:
        verdicts.append(("restart p50 <= 20 ms", p50 <= 0.020,
                         f"{p50 * 1e3:.1f} ms ({p50 / 0.020:.2f}x the target)"))
    else:
        verdicts.append(("restart p50 <= 20 ms", None, "not measured"))
    if fl.rss_kib and sv.rss_kib:
        verdicts.append(("RSS <= supervisord's", fl.rss_kib <= sv.rss_kib,
                         f"{fl.rss_kib / 1024:.1f} MiB vs {sv.rss_kib / 1024:.1f} MiB "
                         f"({fl.rss_kib / sv.rss_kib:.2f}x)"))
    else:
        verdicts.append(("RSS <= supervisord's", None, "not measured"))
    print("start-all: start command sent to a running daemon (services configured, all stopped) ->"
          " 1,000 'sleep' children seen in /proc;")
    print("cold: daemon process launched (interpreter, config/unit load, autostart) -> same;")
    print("restart: SIGKILL of one main process -> a new 'sleep' child of the daemon, one at a"
          " time; RSS: VmRSS of the daemon process only, 3 s after start-all.")
    print("Peer defaults kept: supervisord's main loop wakes every 1 s, circus's check_delay is"
          " 5 s -- their restart latency is that poll.")
    print()
    for what, ok, detail in verdicts:
        tag = "MEASURE-FAIL" if ok is None else ("PASS" if ok else "MISS")
        print(f"  {tag:<12} {what:<32} {detail}")
    return 0


def main() -> int:
    t_begin = time.monotonic()
    deadline = t_begin + TOTAL_BUDGET
    profile = os.environ.get("FLOTTE_BENCH_PROFILE")
    only = os.environ.get("BENCH_SYSTEMS")
    results: dict[str, Result] = {}
    try:
        for system in SYSTEMS:
            if only and system not in only.split(","):
                results[system] = Result(note=" skipped (BENCH_SYSTEMS)")
                continue
            print(f"  {system} …", flush=True)
            results[system] = _run(system, deadline, profile)
    finally:
        _sweep()
    return _report(results, time.monotonic() - t_begin)


# -- the flotte daemon (child process) ---------------------------------------------------
def _emit(msg: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(msg) + "\n")
    sys.stdout.flush()


def tree_unit(i: int, n: int, fanout: int = 10) -> tuple[str, str]:
    """Unit ``i`` of an n-unit tree: it wants its children, each child requires and
    is ordered after its parent (a parent's start must finish before its children's)."""
    lines = []
    if i:
        parent = f"t{(i - 1) // fanout:04d}.service"
        lines += [f"Requires={parent}", f"After={parent}"]
    kids = [f"t{c:04d}.service" for c in range(fanout * i + 1, min(fanout * i + fanout + 1, n))]
    if kids:
        lines.append("Wants=" + " ".join(kids))
    return f"t{i:04d}.service", UNIT_TEXT.replace("[Unit]\n", "[Unit]\n" + "".join(
        f"{x}\n" for x in lines))


async def _flotte_daemon(state_dir: str, n: int, layout: str = "flat") -> None:
    import asyncio
    from collections import Counter

    import flotte.unit
    from flotte.supervisor.jobs import build_transaction
    from flotte.supervisor.supervisor import Supervisor

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    async with Supervisor(state_dir, cgroup_root=f"flotte-bench-{os.getpid()}") as sup:
        if layout == "tree":
            texts = [tree_unit(i, n) for i in range(n)]
        else:
            texts = [(f"b{i:04d}.service", UNIT_TEXT) for i in range(n)]
        names = [name for name, _ in texts]
        # a tree is started and stopped by one request for its root
        requested = names[:1] if layout == "tree" else names
        t = time.perf_counter()
        for name, text in texts:
            await sup.load(flotte.unit.load_text(text, name, ctx=sup.ctx))
        loaded = time.perf_counter() - t
        t = time.perf_counter()
        tx = build_transaction(sup.graph, names[0], "start", active={})
        _emit({"event": "loaded", "s": loaded, "plan_s": time.perf_counter() - t,
               "jobs": len(tx.jobs), "waves": len(tx.waves())})
        line = "start"  # autostart, like the peers
        while True:
            if line == "start":
                t = time.perf_counter()
                outcomes = await asyncio.gather(*(sup.start(x) for x in requested),
                                                return_exceptions=True)
                _emit({"event": "started", "s": time.perf_counter() - t,
                       "outcomes": Counter(map(str, outcomes))})
            elif line == "stop":
                t = time.perf_counter()
                await asyncio.gather(*(sup.stop(x) for x in requested),
                                     return_exceptions=True)
                _emit({"event": "stopped", "s": time.perf_counter() - t})
            elif line == "status":
                states = Counter(f"{s['active_state']}/{s['sub_state']}"
                                 for s in map(sup.status, names))
                _emit({"event": "status", "states": states,
                       "restarts": sum(sup.status(x)["restarts"] for x in names)})
            elif line == "quit":
                break
            line = (await reader.readline()).decode().strip()
            if not line:
                break
    _emit({"event": "closed"})


def _daemon_entry(argv: list[str]) -> int:
    import asyncio

    state_dir, n = argv[0], int(argv[1])
    layout = argv[2] if len(argv) > 2 else "flat"
    profile = os.environ.get("FLOTTE_BENCH_PROFILE")
    if profile:
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
        try:
            asyncio.run(_flotte_daemon(state_dir, n, layout))
        finally:
            prof.disable()
            prof.dump_stats(profile)
        return 0
    asyncio.run(_flotte_daemon(state_dir, n, layout))
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--flotte-daemon"]:
        sys.exit(_daemon_entry(sys.argv[2:]))
    sys.exit(main())

