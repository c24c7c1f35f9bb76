"""The ``$NOTIFY_SOCKET`` server: sd_notify messages for Type=notify, notify-reload, WatchdogSec=.

One ``AF_UNIX``/``SOCK_DGRAM`` socket serves the whole supervisor, as
systemd's ``/run/systemd/notify`` does.  Each service gets
``NOTIFY_SOCKET=<path>`` in its environment (:meth:`NotifyServer.env_for`)
and sends datagrams of newline-separated ``KEY=VALUE`` assignments
(``READY=1``, ``STATUS=…``, ``MAINPID=…``, ``WATCHDOG=1`` …).

Who sent a datagram is told by the kernel, not by the payload: the socket has
``SO_PASSCRED`` set, so every datagram carries ``SCM_CREDENTIALS`` (pid, uid,
gid).  An unprivileged sender can only claim its own pid; a sender with
``CAP_SYS_ADMIN`` (root) may claim any existing pid — which is what
``systemd-notify`` does: it sends *on behalf of its parent* (see
:func:`send`).  The supervisor routes a datagram to the unit whose
``accept(pid)`` says the pid is one of its processes under ``NotifyAccess=``
(main / exec / all); unknown pids are dropped, as systemd drops them with
"Cannot find unit for notify message of PID …".

Limits copied from ``manager_dispatch_notify_fd``: payloads up to
:data:`NOTIFY_BUFFER_MAX` bytes (longer ones are dropped, not truncated), no
embedded NUL (one trailing NUL is tolerated), credentials required.  File
descriptors passed with a message (``FDSTORE=1``, and the pipe that
``BARRIER=1`` sends) are always closed at once: the fd store is not
supported, and closing the barrier pipe is precisely what tells
``sd_notify_barrier()`` (used by ``systemd-notify``) that everything before
it has been processed.

``python -m flotte.supervisor.notify READY=1 STATUS=…`` is a small
``systemd-notify`` for tests and shell services; see :func:`main`.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import logging
import os
import select
import socket
import stat
import struct
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Final

log = logging.getLogger("flotte.supervisor.notify")

#: systemd's NOTIFY_BUFFER_MAX (PIPE_BUF): bigger datagrams are ignored.
NOTIFY_BUFFER_MAX: Final = 4096
#: systemd's NOTIFY_FD_MAX: room for this many passed fds in one datagram.
NOTIFY_FD_MAX: Final = 768
#: Receive buffer asked for, so a burst from many services is not lost
#: (systemd asks for 8 MiB with SO_RCVBUFFORCE too).
RCVBUF: Final = 8 * 1024 * 1024
#: Datagrams handled per readiness callback before yielding to the loop.
_BATCH: Final = 256
#: sd_notify_barrier()'s default timeout.
BARRIER_TIMEOUT: Final = 5.0

_UCRED = struct.Struct("iII")
_ANCBUF = socket.CMSG_SPACE(_UCRED.size) + socket.CMSG_SPACE(4 * NOTIFY_FD_MAX)
_MSG_CMSG_CLOEXEC: Final = getattr(socket, "MSG_CMSG_CLOEXEC", 0)
_SO_RCVBUFFORCE: Final = 33  # Linux; not exported by the socket module


@dataclass(frozen=True, slots=True)
class NotifyMessage:
    """One parsed sd_notify datagram with the sender's kernel-verified credentials.

    ``fields`` maps each key to its **first** value, as systemd looks values
    up with ``strv_find_startswith``; ``lines`` keeps every assignment in
    order.  Flags such as ``READY=1`` are tested by exact membership in
    ``lines`` (systemd's ``strv_contains``), so ``READY=0`` is not ready.
    """

    pid: int
    uid: int
    gid: int
    fields: dict[str, str]
    raw: bytes
    lines: tuple[str, ...] = ()
    fds_received: int = 0
    """How many passed file descriptors came with it (already closed)."""
    received: float = field(default_factory=time.monotonic)
    """``time.monotonic()`` when it was read: use this for watchdog bookkeeping."""

    def _flag(self, assignment: str) -> bool:
        return assignment in self.lines

    def _uint(self, key: str) -> int | None:
        v = self.fields.get(key)
        if v is None or not v.isascii() or not v.isdigit():
            return None
        return int(v)

    @property
    def ready(self) -> bool:
        """``READY=1``: start-up (or a reload) finished."""
        return self._flag("READY=1")

    @property
    def reloading(self) -> bool:
        """``RELOADING=1``: a reload began (notify-reload expects it after the signal)."""
        return self._flag("RELOADING=1")

    @property
    def stopping(self) -> bool:
        """``STOPPING=1``: the service is shutting down on its own."""
        return self._flag("STOPPING=1")

    @property
    def status(self) -> str | None:
        """``STATUS=``: free-form text shown by ``status``."""
        return self.fields.get("STATUS")

    @property
    def main_pid(self) -> int | None:
        """``MAINPID=``: a new main process (only trust it per NotifyAccess= and uid)."""
        v = self._uint("MAINPID")
        return v if v else None

    @property
    def watchdog(self) -> bool:
        """``WATCHDOG=1``: keep-alive ping."""
        return self._flag("WATCHDOG=1")

    @property
    def watchdog_trigger(self) -> bool:
        """``WATCHDOG=trigger``: the service asks to be treated as hung now."""
        return self._flag("WATCHDOG=trigger")

    @property
    def watchdog_usec(self) -> int | None:
        """``WATCHDOG_USEC=``: new watchdog timeout for this run (0 disables)."""
        return self._uint("WATCHDOG_USEC")

    @property
    def extend_timeout_usec(self) -> int | None:
        """``EXTEND_TIMEOUT_USEC=``: push the current start/stop/runtime deadline out."""
        return self._uint("EXTEND_TIMEOUT_USEC")

    @property
    def errno(self) -> int | None:
        """``ERRNO=``: error code reported with a failure status."""
        return self._uint("ERRNO")

    @property
    def monotonic_usec(self) -> int | None:
        """``MONOTONIC_USEC=``: CLOCK_MONOTONIC when a reload began (notify-reload)."""
        return self._uint("MONOTONIC_USEC")

    @property
    def buserror(self) -> str | None:
        """``BUSERROR=``: D-Bus style error name reported with a failure."""
        return self.fields.get("BUSERROR")

    @property
    def fdstore(self) -> bool:
        """``FDSTORE=1``: fd store request (unsupported; the fds were closed)."""
        return self._flag("FDSTORE=1")

    @property
    def barrier(self) -> bool:
        """``BARRIER=1``: sd_notify_barrier(); answered by closing the passed fd."""
        return self._flag("BARRIER=1")


def parse_payload(raw: bytes) -> tuple[tuple[str, ...], dict[str, str]]:
    """sd_notify payload → (assignments in order, first value per key).

    Lines without ``=`` are kept in ``lines`` but give no field.  Bytes that
    are not UTF-8 become U+FFFD (systemd ignores a non-UTF-8 ``STATUS=``; a
    replacement character is more useful to show).
    """
    if raw.endswith(b"\0"):
        raw = raw[:-1]
    lines = tuple(line for line in raw.decode("utf-8", "replace").split("\n") if line)
    fields: dict[str, str] = {}
    for line in lines:
        key, sep, value = line.partition("=")
        if sep and key not in fields:
            fields[key] = value
    return lines, fields


def _sockaddr(path: str) -> str | bytes:
    """``@name`` is an abstract socket (as systemd's sd_notify understands it)."""
    if path.startswith("@"):
        return b"\0" + path[1:].encode()
    return path


def _close_fds(fds: Iterable[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


@dataclass(slots=True)
class _Subscription:
    unit: str
    callback: Callable[[NotifyMessage], None]
    accept: Callable[[int], bool]


class NotifyServer:
    """The supervisor's single notify socket.

    Use::

        server = NotifyServer("/run/flotte/notify")
        server.start()                       # needs the running loop
        server.subscribe("a.service", on_msg, accept=lambda pid: pid == main_pid)
        env.update(server.env_for("a.service"))
        …
        server.close()

    Callbacks run on the loop thread, synchronously, in the order datagrams
    arrived; an exception in one is logged and does not stop the server.
    """

    def __init__(self, path: str, *, max_message: int = NOTIFY_BUFFER_MAX) -> None:
        abstract = path.startswith("@")
        if not abstract and not os.path.isabs(path):
            raise ValueError(f"notify socket path must be absolute or @abstract: {path!r}")
        if len(os.fsencode(path)) >= 108:
            raise ValueError(f"notify socket path too long for AF_UNIX: {path!r}")
        self.path = path
        self.max_message = max_message
        self._abstract = abstract
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._subs: dict[str, _Subscription] = {}
        self._hints: dict[int, str] = {}  # pid → unit that accepted it last time
        self._unknown_window = 0.0
        self._unknown_logged = 0
        self._unknown_suppressed = 0
        #: Counters for tests and ``status`` output.
        self.stats: dict[str, int] = {
            "received": 0, "dispatched": 0, "unknown_pid": 0, "invalid": 0,
            "fds_closed": 0, "callback_errors": 0, "barriers": 0,
        }

    # -- lifecycle ----------------------------------------------------------------
    def start(self) -> None:
        """Bind the socket (removing a stale one) and start reading it."""
        if self._sock is not None:
            return
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        bound = False
        try:
            # Before bind, so that no datagram can ever arrive without credentials.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
            if not self._abstract:
                self._remove_stale()
            sock.bind(_sockaddr(self.path))
            bound = True
            if not self._abstract:
                # Services may run as any User=: everybody must be able to send.
                # (They also need search permission on the parent directories.)
                os.chmod(self.path, 0o777)
            try:
                sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, RCVBUF)
            except OSError:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
            sock.setblocking(False)
            loop.add_reader(sock.fileno(), self._on_readable)
        except BaseException:
            sock.close()
            if bound and not self._abstract:
                with contextlib.suppress(OSError):
                    os.unlink(self.path)
            raise
        self._sock, self._loop = sock, loop

    def _remove_stale(self) -> None:
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise FileExistsError(f"{self.path} exists and is not a socket; not removing it")
        os.unlink(self.path)

    def close(self) -> None:
        """Stop reading, close the socket and remove its file."""
        sock, self._sock = self._sock, None
        if sock is None:
            return
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(sock.fileno())
        sock.close()
        if not self._abstract:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)

    async def __aenter__(self) -> NotifyServer:
        self.start()
        return self

    async def __aexit__(self, et: type[BaseException] | None, ev: BaseException | None,
                        tb: TracebackType | None) -> None:
        self.close()

    # -- subscriptions --------------------------------------------------------------
    def env_for(self, unit: str) -> dict[str, str]:
        """Environment to add to every process of ``unit``."""
        return {"NOTIFY_SOCKET": self.path}

    def subscribe(self, unit: str, callback: Callable[[NotifyMessage], None],
                  accept: Callable[[int], bool]) -> None:
        """Route messages whose sender ``accept(pid)`` claims to ``callback``.

        ``accept`` implements the unit's ``NotifyAccess=`` (the supervisor
        knows the main, control and other pids); it must be cheap, since it
        may be asked about every datagram.  Subscribing again replaces the
        previous subscription of ``unit`` (keeping its place in the order).
        A datagram that is only ``BARRIER=1`` is answered by the server itself
        and never reaches a callback.
        """
        self._subs[unit] = _Subscription(unit, callback, accept)

    def unsubscribe(self, unit: str) -> None:
        """Stop routing to ``unit`` (unknown units are ignored)."""
        self._subs.pop(unit, None)

    register = subscribe
    unregister = unsubscribe

    def route(self, pid: int) -> str | None:
        """The unit a message from ``pid`` would go to (first accepting subscriber)."""
        sub = self._find(pid)
        return None if sub is None else sub.unit

    def _find(self, pid: int) -> _Subscription | None:
        """First subscriber whose ``accept(pid)`` is true.

        The unit that took this pid's previous message is asked first: pid
        sets of units are disjoint, so this changes no answer, but a watchdog
        ping then costs one ``accept`` call instead of one per unit.
        """
        hint = self._hints.get(pid)
        if hint is not None:
            sub = self._subs.get(hint)
            if sub is not None and self._accepts(sub, pid):
                return sub
        for sub in list(self._subs.values()):
            if sub.unit != hint and self._accepts(sub, pid):
                if len(self._hints) >= 4096:
                    self._hints.clear()
                self._hints[pid] = sub.unit
                return sub
        return None

    @staticmethod
    def _accepts(sub: _Subscription, pid: int) -> bool:
        try:
            return bool(sub.accept(pid))
        except Exception:
            log.exception("NotifyAccess check of %s failed for PID %d", sub.unit, pid)
            return False

    # -- receiving ---------------------------------------------------------------------
    def _on_readable(self) -> None:
        for _ in range(_BATCH):
            sock = self._sock
            if sock is None:
                return
            try:
                data, ancdata, flags, _addr = sock.recvmsg(
                    self.max_message + 1, _ANCBUF, _MSG_CMSG_CLOEXEC)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.error("notify socket %s: receive failed: %s", self.path, exc)
                return
            self._handle(data, ancdata, flags)

    def _handle(self, data: bytes, ancdata: list[tuple[int, int, bytes]], flags: int) -> None:
        self.stats["received"] += 1
        fds: list[int] = []
        creds: tuple[int, int, int] | None = None
        for level, kind, payload in ancdata:
            if level != socket.SOL_SOCKET:
                continue
            if kind == socket.SCM_RIGHTS:
                a = array.array("i")
                a.frombytes(payload[: len(payload) - len(payload) % a.itemsize])
                fds.extend(a)
            elif kind == socket.SCM_CREDENTIALS and len(payload) >= _UCRED.size:
                creds = _UCRED.unpack_from(payload)
        try:
            self._dispatch(data, creds, flags, len(fds))
        finally:
            if fds:
                # FDSTORE is not supported; closing also releases sd_notify_barrier().
                _close_fds(fds)
                self.stats["fds_closed"] += len(fds)

    def _dispatch(self, data: bytes, creds: tuple[int, int, int] | None, flags: int,
                  nfds: int) -> None:
        if flags & socket.MSG_CTRUNC:
            log.warning("notify message with truncated control data (too many fds?)")
        if creds is None or creds[0] <= 0:
            self.stats["invalid"] += 1
            log.warning("notify message without valid credentials, ignoring")
            return
        pid, uid, gid = creds
        if len(data) > self.max_message or flags & socket.MSG_TRUNC:
            self.stats["invalid"] += 1
            log.warning("notify message of PID %d exceeded maximum size %d, ignoring",
                        pid, self.max_message)
            return
        if b"\0" in data[:-1]:
            self.stats["invalid"] += 1
            log.warning("notify message of PID %d with embedded NUL bytes, ignoring", pid)
            return
        lines, fields = parse_payload(data)
        msg = NotifyMessage(pid, uid, gid, fields, data, lines, nfds)
        if nfds and not msg.barrier:
            log.info("notify message of PID %d passed %d file descriptor(s)%s; closing them",
                     pid, nfds, " (FDSTORE is not supported)" if msg.fdstore else "")
        if lines == ("BARRIER=1",):
            # Pure protocol: answered by closing the fd (done by our caller).
            # systemd-notify sends it from its *own* pid even when the state
            # message claimed the parent's, so it often matches no unit.
            self.stats["barriers"] += 1
            return
        sub = self._find(pid)
        if sub is None:
            self.stats["unknown_pid"] += 1
            self._log_unknown(pid, msg)
            return
        self.stats["dispatched"] += 1
        try:
            sub.callback(msg)
        except Exception:
            self.stats["callback_errors"] += 1
            log.exception("notify callback of %s failed", sub.unit)

    def _log_unknown(self, pid: int, msg: NotifyMessage) -> None:
        """"Cannot find unit …", at most 10 lines per 10 s (a flood costs nothing)."""
        now = time.monotonic()
        if now - self._unknown_window >= 10.0:
            if self._unknown_suppressed:
                log.debug("%d more notify messages from unknown PIDs were ignored",
                          self._unknown_suppressed)
            self._unknown_window, self._unknown_logged, self._unknown_suppressed = now, 0, 0
        if self._unknown_logged < 10:
            self._unknown_logged += 1
            log.debug("Cannot find unit for notify message of PID %d, ignoring: %r", pid,
                      msg.raw[:200])
        else:
            self._unknown_suppressed += 1


# -- the client side ----------------------------------------------------------------


class NotifyError(OSError):
    """Sending failed (no socket, refused, barrier timed out)."""


def send(state: str | Sequence[str] | Mapping[str, str], *, socket_path: str | None = None,
         source_pid: int | None = None, barrier: bool = False,
         barrier_timeout: float = BARRIER_TIMEOUT) -> bool:
    """sd_pid_notify() (+ optional sd_notify_barrier()) in Python.

    ``state`` is a payload (``"READY=1\\nSTATUS=x"``), a list of assignments
    or a mapping.  ``socket_path`` defaults to ``$NOTIFY_SOCKET``; returns
    False when there is none (like sd_notify returning 0).  ``source_pid``
    asks the kernel to present the datagram as coming from that pid, which
    only a privileged sender may do; when refused (EPERM/ESRCH) it is sent
    with our own credentials, exactly like libsystemd.  ``barrier`` then
    waits until the receiver has processed everything sent so far.
    """
    path = socket_path if socket_path is not None else os.environ.get("NOTIFY_SOCKET")
    if not path:
        return False
    if isinstance(state, str):
        payload = state
    elif isinstance(state, Mapping):
        payload = "\n".join(f"{k}={v}" for k, v in state.items())
    else:
        payload = "\n".join(state)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        addr = _sockaddr(path)
        try:
            sock.connect(addr)
            data = payload.encode()
            if source_pid is not None and source_pid != os.getpid():
                cred = _UCRED.pack(source_pid, os.getuid(), os.getgid())
                try:
                    sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_CREDENTIALS, cred)])
                except (PermissionError, ProcessLookupError):
                    sock.sendmsg([data])
            else:
                sock.sendmsg([data])
            if barrier:
                _barrier(sock, barrier_timeout)
        except OSError as exc:
            raise NotifyError(exc.errno, f"cannot notify {path}: {exc.strerror or exc}") from exc
    return True


def _barrier(sock: socket.socket, timeout: float) -> None:
    """Send ``BARRIER=1`` with a pipe's write end; wait until the receiver closes it."""
    r, w = os.pipe()
    try:
        try:
            fds = array.array("i", [w])
            sock.sendmsg([b"BARRIER=1"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds.tobytes())])
        finally:
            os.close(w)
        poller = select.poll()
        poller.register(r, select.POLLHUP)
        if not poller.poll(int(timeout * 1000)):
            raise TimeoutError(110, "barrier timed out (receiver did not close the fd)")
    finally:
        os.close(r)


_USAGE = """\
usage: python -m flotte.supervisor.notify [OPTIONS] [VARIABLE=VALUE ...]

Notify the service manager (flotte's NotifyServer, or systemd) through
$NOTIFY_SOCKET, like systemd-notify(1).

  --ready            READY=1
  --reloading        RELOADING=1 and MONOTONIC_USEC=now
  --stopping         STOPPING=1
  --status=TEXT      STATUS=TEXT
  --pid[=PID]        MAINPID=PID (default: our parent) and send on its behalf
  --source=WHO       whose pid the datagram claims: parent (default, as
                     systemd-notify does), self, or a number; a claim other
                     than our own needs CAP_SYS_ADMIN, else our own is used
  --no-block         do not wait for the manager to process the message
  --socket=PATH      instead of $NOTIFY_SOCKET
"""


def main(argv: Sequence[str] | None = None) -> int:
    """The ``systemd-notify`` work-alike (exit 0 on success, 1 on failure)."""
    args = list(sys.argv[1:] if argv is None else argv)
    assignments: list[str] = []
    source: str | None = None
    main_pid: int | None = None
    block = True
    socket_path: str | None = None
    for arg in args:
        opt, eq, val = arg.partition("=")
        if arg in ("-h", "--help"):
            print(_USAGE, end="")
            return 0
        if arg == "--ready":
            assignments.append("READY=1")
        elif arg == "--reloading":
            assignments += ["RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}"]
        elif arg == "--stopping":
            assignments.append("STOPPING=1")
        elif opt == "--status" and eq:
            assignments.append(f"STATUS={val}")
        elif opt == "--pid":
            if eq and val not in ("", "parent"):
                if not val.isdigit() or int(val) <= 0:
                    print(f"invalid --pid: {val}", file=sys.stderr)
                    return 1
                main_pid = int(val)
            else:
                main_pid = os.getppid()
        elif opt == "--source" and eq:
            source = val
        elif arg == "--no-block":
            block = False
        elif opt == "--socket" and eq:
            socket_path = val
        elif arg.startswith("-"):
            print(f"unknown option: {arg}\n{_USAGE}", end="", file=sys.stderr)
            return 1
        elif "=" in arg:
            assignments.append(arg)
        else:
            print(f"not an assignment: {arg!r}", file=sys.stderr)
            return 1
    if main_pid is not None:
        assignments.insert(0, f"MAINPID={main_pid}")
    if not assignments:
        print("no status data to send", file=sys.stderr)
        return 1
    if source in (None, "parent"):
        src = main_pid if main_pid is not None and source is None else os.getppid()
    elif source == "self":
        src = os.getpid()
    elif source.isdigit():
        src = int(source)
    else:
        print(f"invalid --source: {source}", file=sys.stderr)
        return 1
    try:
        sent = send(assignments, socket_path=socket_path, source_pid=src, barrier=block)
    except NotifyError as exc:
        print(f"Failed to notify: {exc}", file=sys.stderr)
        return 1
    if not sent:
        print("No status data could be sent: $NOTIFY_SOCKET was not set", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
