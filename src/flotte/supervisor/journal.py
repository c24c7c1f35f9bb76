"""The per-unit journal: flotte's stand-in for systemd-journald.

A service's stdout/stderr (``StandardOutput=journal``, the default) go into a
pipe whose read end the supervisor's event loop watches; every line becomes
an *entry* of the unit's journal, next to the supervisor's own lifecycle lines
("Starting …", "Main process exited, code=exited, status=1/FAILURE").
``flotte journal`` / ``fleetctl journal`` read it back, optionally following.

What is copied from journald (``journald-stream.c``), because users' programs
were written against it:

* lines end at ``\\n`` **or NUL**; a line longer than :data:`LINE_MAX`
  (journald's ``LineMax=`` default, 48 KiB) is cut into pieces of at most
  that size; a last line without a newline is stored when the pipe reaches
  EOF (no writer left);
* trailing whitespace (`` \\t\\r``) is dropped, leading whitespace kept;
* ``SyslogLevelPrefix=yes`` (the default): a line starting with ``<N>``,
  ``<0N>`` or ``<00N>`` with N in 0…7 gets priority N and loses the prefix
  (``<13>`` — a facility — is *not* parsed, exactly like journald for
  stdout streams);
* a line that is empty after that is not stored;
* default priority 6 (``info``, ``SyslogLevel=``).

On-disk format (version 1), one directory per unit, ``<dir>/<unit>/``::

    journal.log        current file, appended to
    journal.log.1      the previous one (newest rotated)
    journal.log.2 …    older, up to journal.log.<keep_files-1>

Each file starts with the header line ``#flotte-journal 1`` followed by one
entry per line::

    <realtime µs> <priority 0-7> <pid or -> <identifier> <message>\\n

``identifier`` escapes ``\\`` as ``\\\\``, space as ``\\s`` and newline as
``\\n``; ``message`` escapes ``\\`` and newline the same way and is otherwise
stored byte for byte (tabs, ``\\r`` and invalid UTF-8 included — readers
decode with U+FFFD replacement).  So every physical line is exactly one
entry, ``tail -f journal.log`` is readable, and a torn last line after a
crash damages only that line (it is terminated before the next append, and
unparsable lines are skipped by readers).  Escaping was chosen over length
prefixes for that self-synchronising property.

Size bound: a unit's files together stay under ``max_bytes_per_unit`` (each
file is limited to ``max_bytes_per_unit // keep_files`` and rotated before an
append would exceed it); only an entry larger than a whole file can overshoot,
by itself.

Writing never blocks the event loop on the disk: entries are formatted to
bytes and queued; a ``call_soon`` callback hands each loop iteration's batch
to the journal's writer thread, which issues one ``write(2)`` per unit (and
does the ``mkdir``/``open``/rotation, which on ext4 cost up to a millisecond
each — a mass start of 1,000 units would otherwise spend a second of loop
time creating journal files).  Reads (:meth:`Journal.read`) first wait until
everything queued is written, so a reader always sees everything appended
before the call.  Followers
(:meth:`Journal.follow`) are woken in process through an :class:`asyncio.Event`
when an entry is appended; they never poll or re-read the file, which makes
rotation invisible to them.  Everything but the file I/O runs on the event loop
thread; the class is not thread-safe.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import math
import os
import re
import shutil
import socket
import time
import weakref
from collections import OrderedDict, deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Final

log = logging.getLogger("flotte.supervisor.journal")

#: journald's ``LineMax=`` default: longer lines are split into pieces this long.
LINE_MAX: Final = 48 * 1024
#: Default bound for all files of one unit together.
DEFAULT_MAX_BYTES: Final = 8 * 1024 * 1024
#: First line of every journal file; bump the number if the format changes.
HEADER: Final = b"#flotte-journal 1\n"
#: Name of the current file inside a unit's directory.
CURRENT: Final = "journal.log"
#: Default priority of lines without a level prefix (``SyslogLevel=info``).
LOG_INFO: Final = 6

_READ_SIZE = 65536
#: os.read() calls per readiness callback: enough to drain a full pipe
#: buffer a few times over, few enough that one chatty service cannot starve
#: the loop (it will be called again on the next iteration).
_READS_PER_WAKEUP = 4
#: Entries a follower may have queued before the oldest are dropped.
FOLLOW_MAX_PENDING: Final = 10_000

_PRIO_DIGITS = {b"%d" % i: i for i in range(8)}
_UNESCAPE = re.compile(rb"\\(.)", re.DOTALL)
_UNESCAPE_MAP = {b"\\": b"\\", b"n": b"\n", b"s": b" "}

_hostname_cache: str | None = None


def _hostname() -> str:
    global _hostname_cache
    if _hostname_cache is None:
        _hostname_cache = socket.gethostname() or "localhost"
    return _hostname_cache


def check_unit_name(unit: str) -> str:
    """Refuse names that would escape the journal directory.

    Unit names reach us already validated by the unit loader; this is a
    second line of defence because the name becomes a path component.
    """
    if not unit or "/" in unit or "\0" in unit or unit in (".", ".."):
        raise ValueError(f"invalid unit name for the journal: {unit!r}")
    return unit


def _check_priority(priority: int) -> int:
    if not 0 <= priority <= 7:
        raise ValueError(f"syslog priority must be 0…7, not {priority}")
    return priority


def _escape_ident(ident: str) -> bytes:
    if not ident:
        raise ValueError("empty journal identifier")
    return (ident.encode("utf-8", "surrogateescape")
            .replace(b"\\", b"\\\\").replace(b"\n", b"\\n").replace(b" ", b"\\s"))


def _escape_message(msg: bytes) -> bytes:
    if b"\\" in msg:
        msg = msg.replace(b"\\", b"\\\\")
    if b"\n" in msg:
        msg = msg.replace(b"\n", b"\\n")
    return msg


def _unescape(raw: bytes) -> bytes:
    if b"\\" not in raw:
        return raw
    return _UNESCAPE.sub(lambda m: _UNESCAPE_MAP.get(m.group(1), m.group(0)), raw)


def parse_level_prefix(line: bytes, default: int) -> tuple[int, bytes]:
    """journald's ``syslog_parse_priority(…, with_facility=false)``.

    ``<N>``, ``<0N>`` and ``<00N>`` with N in 0…7 set the priority and are
    removed; anything else (``<13>``, ``<x>``, ``<1234>``) leaves the line
    untouched with the default priority.
    """
    if line[:1] != b"<":
        return default, line
    end = line.find(b">", 1, 5)
    if end < 2:
        return default, line
    digits = line[1:end]
    prio = _PRIO_DIGITS.get(digits.lstrip(b"0") or b"0")
    if prio is None or not digits.isdigit():
        return default, line
    return prio, line[end + 1:]


@dataclass(frozen=True, slots=True)
class Entry:
    """One journal entry, as read back or as delivered to followers."""

    time: float
    """Realtime clock, seconds since the epoch (stored with µs precision)."""
    priority: int
    """Syslog level 0 (emerg) … 7 (debug)."""
    identifier: str
    """``SyslogIdentifier=`` (or the executable's name); "flotte" for our own lines."""
    pid: int | None
    message: str
    unit: str

    @property
    def usec(self) -> int:
        """The timestamp in µs, exactly as stored."""
        return round(self.time * 1_000_000)

    def format(self, hostname: str | None = None) -> str:
        """journalctl's ``short`` output: ``Nov 27 12:00:00 host ident[pid]: message``.

        Continuation lines of a multi-line message are indented to the
        message column, as journalctl does.
        """
        stamp = time.strftime("%b %d %H:%M:%S", time.localtime(self.time))
        ident = self.identifier if self.pid is None else f"{self.identifier}[{self.pid}]"
        head = f"{stamp} {hostname or _hostname()} {ident}: "
        msg = self.message
        if "\n" in msg:
            msg = msg.replace("\n", "\n" + " " * len(head))
        return head + msg

    def as_dict(self) -> dict[str, object]:
        """JSON-friendly form (journalctl -o json field names, lower-cased)."""
        return {"time": self.time, "priority": self.priority, "identifier": self.identifier,
                "pid": self.pid, "message": self.message, "unit": self.unit}


def _parse_line(line: bytes, unit: str) -> Entry | None:
    """One stored line → :class:`Entry`; ``None`` for headers and damage."""
    if not line or line[:1] == b"#":
        return None
    parts = line.split(b" ", 4)
    if len(parts) != 5:
        return None
    usec_b, prio_b, pid_b, ident_b, msg_b = parts
    try:
        usec = int(usec_b)
        prio = int(prio_b)
        pid = None if pid_b == b"-" else int(pid_b)
    except ValueError:
        return None
    if not 0 <= prio <= 7 or not ident_b:
        return None
    return Entry(usec / 1_000_000, prio, _unescape(ident_b).decode("utf-8", "replace"), pid,
                 _unescape(msg_b).decode("utf-8", "replace"), unit)


def _reverse_lines(path: Path, block: int = 65536) -> Iterator[bytes]:
    """The lines of ``path`` from last to first, reading backwards in blocks.

    Lets ``read(lines=10)`` on a unit with 8 MiB of history touch only the
    tail of the newest file.
    """
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed in finally; generator
    except FileNotFoundError:
        return
    try:
        pos = f.seek(0, os.SEEK_END)
        rest = b""
        while pos > 0:
            step = min(block, pos)
            pos -= step
            f.seek(pos)
            chunk = f.read(step) + rest
            lines = chunk.split(b"\n")
            rest = lines[0]
            for line in reversed(lines[1:]):
                if line:
                    yield line
        if rest:
            yield rest
    finally:
        f.close()


class _UnitLog:
    """Write-side state of one unit: queued bytes, current file and size."""

    __slots__ = ("__weakref__", "dir", "fh", "followers", "name", "pending", "size")

    def __init__(self, name: str, directory: Path) -> None:
        self.name = name
        self.dir = directory / name
        self.pending: list[bytes] = []
        self.fh: BinaryIO | None = None
        self.size = 0
        # created with the first follower (a WeakSet is ~900 bytes; most units have none)
        self.followers: weakref.WeakSet[Follower] | None = None


class Journal:
    """All units' logs under one directory; survives supervisor restarts.

    ``max_bytes_per_unit`` bounds one unit's files together (current plus
    ``keep_files - 1`` rotated ones).  ``max_open_files`` caps how many
    journal files are kept open between writes (least recently written are
    closed), so thousands of units do not cost thousands of descriptors.
    """

    def __init__(self, directory: Path | str, *, max_bytes_per_unit: int = DEFAULT_MAX_BYTES,
                 keep_files: int = 3, max_open_files: int = 64) -> None:
        if keep_files < 1:
            raise ValueError("keep_files must be at least 1")
        if max_bytes_per_unit < 1024:
            raise ValueError("max_bytes_per_unit must be at least 1 KiB")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.max_bytes_per_unit = max_bytes_per_unit
        self.keep_files = keep_files
        self.file_limit = max_bytes_per_unit // keep_files
        self._max_open = max(1, max_open_files)
        self._units: dict[str, _UnitLog] = {}
        self._dirty: set[_UnitLog] = set()
        self._open: OrderedDict[str, _UnitLog] = OrderedDict()
        self._flush_handle: asyncio.Handle | None = None
        self._pipes: set[JournalPipe] = set()
        self._closed = False
        # the writer thread (created on first use) and its last batch
        self._io: concurrent.futures.ThreadPoolExecutor | None = None
        self._last_io: concurrent.futures.Future[None] | None = None

    # -- writing --------------------------------------------------------------
    def _unit(self, unit: str) -> _UnitLog:
        u = self._units.get(unit)
        if u is None:
            u = self._units[check_unit_name(unit)] = _UnitLog(unit, self.directory)
        return u

    def log(self, unit: str, message: str, priority: int = LOG_INFO,
            identifier: str = "flotte", pid: int | None = None) -> None:
        """Store one line of the supervisor's own (``pid`` defaults to ours).

        ``message`` is stored as one entry even if it contains newlines.
        """
        self._append(self._unit(unit), time.time_ns() // 1000, _check_priority(priority),
                     b"%d" % (os.getpid() if pid is None else pid), _escape_ident(identifier),
                     message.encode("utf-8", "surrogateescape"))

    def _append(self, u: _UnitLog, usec: int, prio: int, pid: bytes, ident: bytes,
                msg: bytes) -> None:
        """Queue one entry (raw message bytes, unescaped) and wake followers."""
        if self._closed:
            return
        line = b"%d %d %b %b %b\n" % (usec, prio, pid, ident, _escape_message(msg))
        u.pending.append(line)
        if u.followers:
            entry = Entry(usec / 1_000_000, prio, _unescape(ident).decode("utf-8", "replace"),
                          None if pid == b"-" else int(pid), msg.decode("utf-8", "replace"),
                          u.name)
            for f in list(u.followers):
                f._push(entry)
        self._mark_dirty(u)

    def _append_lines(self, u: _UnitLog, usec: int, pid: bytes, ident: bytes,
                      lines: list[tuple[int, bytes]]) -> None:
        """Hot path for pipes: many (priority, raw message) lines, one timestamp."""
        if self._closed:
            return
        if u.followers:
            for prio, msg in lines:
                self._append(u, usec, prio, pid, ident, msg)
            return
        head = b"%d " % usec
        tail = b" %b %b " % (pid, ident)
        out = [head + b"%d" % prio + tail + _escape_message(msg) + b"\n" for prio, msg in lines]
        u.pending.extend(out)
        self._mark_dirty(u)

    def _mark_dirty(self, u: _UnitLog) -> None:
        self._dirty.add(u)
        if self._flush_handle is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self.flush()  # no loop (synchronous use): write right away
                return
            self._flush_handle = loop.call_soon(self._scheduled_flush)

    def _scheduled_flush(self) -> None:
        self._flush_handle = None
        self._submit()

    def _submit(self) -> None:
        """Hand every queued entry to the writer thread (in order, one batch)."""
        if not self._dirty:
            return
        dirty, self._dirty = self._dirty, set()
        batch = []
        for u in dirty:
            if u.pending:
                batch.append((u, u.pending))
                u.pending = []
        if batch:
            if self._io is None:
                self._io = concurrent.futures.ThreadPoolExecutor(
                    1, thread_name_prefix="flotte-journal")
            self._last_io = self._io.submit(self._write_batch, batch)

    def flush(self, unit: str | None = None) -> None:
        """Write queued entries to disk now; returns once they are written.

        ``unit`` is accepted for callers that only care about one unit; all
        queued entries are written either way (they share one writer).
        """
        self._submit()
        last, self._last_io = self._last_io, None
        if last is not None:
            last.result()

    def _write_batch(self, batch: list[tuple[_UnitLog, list[bytes]]]) -> None:
        """Runs in the writer thread: the only place that touches files while the loop runs."""
        for u, lines in batch:
            self._write(u, lines)

    def _write(self, u: _UnitLog, lines: list[bytes]) -> None:
        try:
            fh = self._fh(u)
            total = sum(map(len, lines))
            if u.size + total <= self.file_limit:
                self._write_all(fh, b"".join(lines))
                u.size += total
                return
            # Slow path: the batch crosses the size limit; rotate between lines.
            chunk: list[bytes] = []
            chunk_len = 0
            for line in lines:
                if chunk_len + len(line) + u.size > self.file_limit and (
                        chunk or u.size > len(HEADER)):
                    if chunk:
                        self._write_all(fh, b"".join(chunk))
                        u.size += chunk_len
                        chunk, chunk_len = [], 0
                    fh = self._rotate(u)
                chunk.append(line)
                chunk_len += len(line)
            if chunk:
                self._write_all(fh, b"".join(chunk))
                u.size += chunk_len
        except OSError as exc:
            # Like journald on a full disk: drop, complain, keep the service running.
            log.error("journal for %s: cannot write %d entries: %s", u.name, len(lines), exc)
            self._close_fh(u)

    @staticmethod
    def _write_all(fh: BinaryIO, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = fh.write(view)
            if n is None or n <= 0:  # pragma: no cover - raw files do not do this
                raise OSError("short write")
            view = view[n:]

    def _fh(self, u: _UnitLog) -> BinaryIO:
        if u.fh is not None:
            self._open.move_to_end(u.name)
            return u.fh
        u.dir.mkdir(parents=True, exist_ok=True)
        fh: BinaryIO = open(u.dir / CURRENT, "ab", buffering=0)  # noqa: SIM115
        try:
            size = os.fstat(fh.fileno()).st_size
            if size == 0:
                self._write_all(fh, HEADER)
                size = len(HEADER)
            else:
                # A crash may have left a torn last line: terminate it so the
                # next entry starts on a line of its own.
                with open(u.dir / CURRENT, "rb") as r:
                    r.seek(size - 1)
                    if r.read(1) != b"\n":
                        self._write_all(fh, b"\n")
                        size += 1
        except BaseException:
            fh.close()
            raise
        u.fh, u.size = fh, size
        self._open[u.name] = u
        while len(self._open) > self._max_open:
            _, old = self._open.popitem(last=False)
            self._close_fh(old)
        return fh

    def _close_fh(self, u: _UnitLog) -> None:
        if u.fh is not None:
            with contextlib.suppress(OSError):
                u.fh.close()
            u.fh = None
        self._open.pop(u.name, None)

    def _rotate(self, u: _UnitLog) -> BinaryIO:
        """current → .1 → .2 …; the oldest beyond ``keep_files`` is deleted."""
        self._close_fh(u)
        base = u.dir / CURRENT
        if self.keep_files == 1:
            base.unlink(missing_ok=True)
        else:
            Path(f"{base}.{self.keep_files - 1}").unlink(missing_ok=True)
            for i in range(self.keep_files - 2, 0, -1):
                with contextlib.suppress(FileNotFoundError):
                    os.rename(f"{base}.{i}", f"{base}.{i + 1}")
            with contextlib.suppress(FileNotFoundError):
                os.rename(base, f"{base}.1")
        return self._fh(u)

    # -- pipes ------------------------------------------------------------------
    def writer(self, unit: str, identifier: str, pid: int | None = None, *,
               priority: int = LOG_INFO, level_prefix: bool = True) -> JournalPipe:
        """A pipe whose write end a child gets as stdout/stderr.

        Must be called with the event loop running (the read end is watched
        with ``loop.add_reader``).
        """
        pipe = JournalPipe(self, self._unit(unit), identifier, pid, priority=priority,
                           level_prefix=level_prefix)
        self._pipes.add(pipe)
        return pipe

    # -- reading ----------------------------------------------------------------
    def _files(self, unit: str) -> list[Path]:
        """The unit's files, newest first."""
        base = self.directory / check_unit_name(unit) / CURRENT
        return [base] + [Path(f"{base}.{i}") for i in range(1, self.keep_files)]

    def read(self, unit: str, *, lines: int | None = None,
             since: float | None = None) -> list[Entry]:
        """Entries of ``unit``, oldest first, across rotated files.

        ``lines`` keeps the last N (after the ``since`` filter); ``since`` is
        a realtime timestamp (seconds) and keeps entries at or after it.
        Synchronous: with ``lines`` only the needed tail is read; a full
        read parses up to ``max_bytes_per_unit`` of text.
        """
        self.flush(unit)
        if lines is not None and lines <= 0:
            return []
        out: list[Entry] = []
        since_us = None if since is None else math.ceil(since * 1_000_000)
        for path in self._files(unit):
            newest_in_file: float | None = None
            for raw in _reverse_lines(path):
                if since_us is not None and newest_in_file is not None:
                    # Cheap pre-filter on the timestamp field: skip the full parse.
                    stamp = raw[:raw.find(b" ")]
                    if stamp.isdigit() and int(stamp) < since_us:
                        continue
                e = _parse_line(raw, unit)
                if e is None:
                    continue
                if newest_in_file is None:
                    newest_in_file = e.time
                if since is not None and e.time < since:
                    continue
                out.append(e)
                if lines is not None and len(out) >= lines:
                    out.reverse()
                    return out
            # Files are written in time order: once a whole file is older
            # than ``since`` the older ones are too.
            if since is not None and newest_in_file is not None and newest_in_file < since:
                break
        out.reverse()
        return out

    def follow(self, unit: str, *, lines: int = 10,
               max_pending: int = FOLLOW_MAX_PENDING) -> Follower:
        """``journalctl -f``: the last ``lines`` entries, then new ones as they come.

        Returns an async iterator (also an async context manager); iterate it
        with ``async for``.  The snapshot and the subscription happen together
        in this call, so no entry is lost or seen twice between them.  New
        entries are pushed in process when appended — following across
        rotation needs nothing special.  A consumer more than ``max_pending``
        entries behind loses the oldest and gets one warning entry instead.
        Iteration ends when the journal is closed or :meth:`Follower.aclose`
        is called; an abandoned follower is garbage collected (weakly held).
        """
        u = self._unit(unit)
        backlog = self.read(unit, lines=lines) if lines > 0 else []
        f = Follower(self, u, backlog, max_pending)
        if not self._closed:
            if u.followers is None:
                u.followers = weakref.WeakSet()
            u.followers.add(f)
        else:
            f._closed = True
        return f

    # -- housekeeping -----------------------------------------------------------
    def units(self) -> list[str]:
        """Units that have a journal directory (sorted)."""
        self.flush()
        try:
            return sorted(p.name for p in self.directory.iterdir()
                          if p.is_dir() and (p / CURRENT).exists())
        except FileNotFoundError:
            return []

    def disk_usage(self, unit: str) -> int:
        """Bytes used by ``unit``'s files."""
        self.flush(unit)
        total = 0
        for p in self._files(unit):
            with contextlib.suppress(FileNotFoundError):
                total += p.stat().st_size
        return total

    def remove(self, unit: str) -> None:
        """Delete a unit's journal (queued entries included).

        Pipes still open for the unit keep working and start a new journal.
        """
        check_unit_name(unit)
        u = self._units.get(unit)
        if u is not None:
            self._dirty.discard(u)
            u.pending = []
            self.flush()  # the writer thread is idle afterwards
            self._close_fh(u)
            u.size = 0
        shutil.rmtree(self.directory / unit, ignore_errors=True)

    def close(self) -> None:
        """Stop all pipes (storing their partial lines), flush, close files, end followers."""
        if self._closed:
            return
        for pipe in list(self._pipes):
            pipe.close()
        self.flush()
        self._closed = True
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        for u in list(self._units.values()):
            self._close_fh(u)
            for f in list(u.followers or ()):
                f._end()
            u.followers = None
        if self._io is not None:
            self._io.shutdown(wait=True)
            self._io = None

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class Follower:
    """Async iterator over a unit's entries: a backlog, then live ones."""

    def __init__(self, journal: Journal, u: _UnitLog, backlog: list[Entry],
                 max_pending: int) -> None:
        self._journal = journal
        self._unit = u
        self._queue: deque[Entry] = deque(backlog)
        self._max = max(1, max_pending)
        self._dropped = 0
        self._event = asyncio.Event()
        self._closed = False
        if backlog:
            self._event.set()

    def _push(self, entry: Entry) -> None:
        if len(self._queue) >= self._max:
            self._queue.popleft()
            self._dropped += 1
        self._queue.append(entry)
        self._event.set()

    def _end(self) -> None:
        self._closed = True
        self._event.set()

    def __aiter__(self) -> Follower:
        return self

    async def __anext__(self) -> Entry:
        while True:
            if self._dropped:
                n, self._dropped = self._dropped, 0
                return Entry(time.time(), 4, "flotte", os.getpid(),
                             f"-- {n} entries skipped: the reader fell behind --",
                             self._unit.name)
            if self._queue:
                return self._queue.popleft()
            if self._closed:
                raise StopAsyncIteration
            self._event.clear()
            await self._event.wait()

    async def aclose(self) -> None:
        """Stop following (idempotent)."""
        if self._unit.followers is not None:
            self._unit.followers.discard(self)
        self._queue.clear()
        self._end()

    async def __aenter__(self) -> Follower:
        return self

    async def __aexit__(self, et: type[BaseException] | None, ev: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()


class JournalPipe:
    """One ``os.pipe()`` feeding a unit's journal through the event loop.

    Give :attr:`write_fd` to the child (``stdout=pipe.write_fd``, usually
    also ``stderr``), then call :meth:`close_write` so that EOF arrives when
    the child — and any descendant that inherited the descriptor — is gone.
    Both ends are created non-inheritable (``O_CLOEXEC``): the write end only
    reaches the child it is explicitly dup'ed into, never a sibling spawned
    concurrently.  The read end is non-blocking and watched with
    ``loop.add_reader``, so thousands of pipes cost no threads.
    """

    def __init__(self, journal: Journal, u: _UnitLog, identifier: str, pid: int | None, *,
                 priority: int = LOG_INFO, level_prefix: bool = True) -> None:
        self._journal = journal
        self._u = u
        self.unit = u.name
        self.identifier = identifier
        self._ident = _escape_ident(identifier)
        self.priority = _check_priority(priority)
        self.level_prefix = level_prefix
        self.pid = pid
        self._pid_b = b"-" if pid is None else b"%d" % pid
        self._partial = b""
        self._loop = asyncio.get_running_loop()
        rfd, wfd = os.pipe()
        os.set_blocking(rfd, False)
        self._rfd: int | None = rfd
        self.write_fd: int | None = wfd
        self._eof = self._loop.create_future()
        self._loop.add_reader(rfd, self._on_readable)

    def set_pid(self, pid: int | None) -> None:
        """Attribute lines read from now on to ``pid`` (the spawned child)."""
        self.pid = pid
        self._pid_b = b"-" if pid is None else b"%d" % pid

    def close_write(self) -> None:
        """Close our copy of the write end (after the child has been spawned)."""
        if self.write_fd is not None:
            fd, self.write_fd = self.write_fd, None
            os.close(fd)

    @property
    def closed(self) -> bool:
        """True once EOF was seen or :meth:`close` was called."""
        return self._rfd is None

    async def wait_closed(self) -> None:
        """Until EOF (every writer gone) or :meth:`close`; all lines are then stored."""
        await asyncio.shield(self._eof)

    def close(self) -> None:
        """Stop reading now: store what is buffered (partial line included), close both ends.

        Data still in the kernel pipe buffer is read first, non-blockingly.
        """
        if self._rfd is not None:
            with contextlib.suppress(OSError):
                self._drain()
        self.close_write()
        self._finish()

    # -- internals --------------------------------------------------------------
    def _drain(self) -> None:
        while self._rfd is not None:
            try:
                data = os.read(self._rfd, _READ_SIZE)
            except BlockingIOError:
                return
            if not data:
                return
            self._feed(data)

    def _on_readable(self) -> None:
        for _ in range(_READS_PER_WAKEUP):
            if self._rfd is None:
                return
            try:
                data = os.read(self._rfd, _READ_SIZE)
            except BlockingIOError:
                return
            except OSError as exc:
                log.warning("journal pipe of %s: read failed: %s", self.unit, exc)
                self._finish()
                return
            if not data:
                self._finish()
                return
            self._feed(data)

    def _feed(self, data: bytes) -> None:
        buf = self._partial + data if self._partial else data
        if b"\0" in buf:
            buf = buf.replace(b"\0", b"\n")  # journald: NUL ends a line too
        lines = buf.split(b"\n")
        partial = lines.pop()
        if len(partial) >= LINE_MAX:
            pieces = _split_long(partial)
            partial = pieces.pop() if len(pieces[-1]) < LINE_MAX else b""
            lines.extend(pieces)
        self._partial = partial
        if lines:
            self._emit(lines)

    def _emit(self, raw_lines: list[bytes]) -> None:
        default = self.priority
        prefix = self.level_prefix
        out: list[tuple[int, bytes]] = []
        for raw in raw_lines:
            if len(raw) > LINE_MAX:
                for piece in _split_long(raw):
                    self._one(piece, default, prefix, out)
                continue
            self._one(raw, default, prefix, out)
        if out:
            self._journal._append_lines(self._u, time.time_ns() // 1000, self._pid_b,
                                        self._ident, out)

    @staticmethod
    def _one(raw: bytes, default: int, prefix: bool, out: list[tuple[int, bytes]]) -> None:
        line = raw.rstrip(b" \t\r")
        prio = default
        if prefix and line[:1] == b"<":
            prio, line = parse_level_prefix(line, default)
        if line:
            out.append((prio, line))

    def _finish(self) -> None:
        rfd, self._rfd = self._rfd, None
        if rfd is not None:
            if not self._loop.is_closed():
                self._loop.remove_reader(rfd)
            os.close(rfd)
        if self._partial:
            partial, self._partial = self._partial, b""
            self._emit([partial])
        if not self._eof.done() and not self._loop.is_closed():
            self._eof.set_result(None)
        self._journal._pipes.discard(self)

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<JournalPipe {self.unit} {self.identifier}[{self.pid}] {state}>"


def _split_long(line: bytes) -> list[bytes]:
    """Cut ``line`` into pieces of at most :data:`LINE_MAX` bytes.

    journald cuts at exactly LineMax bytes; we back off to the start of a
    UTF-8 sequence (at most 3 bytes) so a multi-byte character is not torn in
    two replacement characters.
    """
    pieces = []
    start = 0
    n = len(line)
    while n - start > LINE_MAX:
        cut = start + LINE_MAX
        back = cut
        while back > cut - 3 and (line[back] & 0xC0) == 0x80:
            back -= 1
        if back > start and (line[back] & 0xC0) != 0x80:
            cut = back
        pieces.append(line[start:cut])
        start = cut
    pieces.append(line[start:])
    return pieces

