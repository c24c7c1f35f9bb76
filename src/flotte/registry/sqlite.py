"""Durable storage for the embedded registry (``sqlite:///path/registry.db``).

Why SQLite: it is in the standard library, crash-safe, and a single file.
Settings chosen for "every acknowledged write is durable":

* ``journal_mode=WAL`` and ``synchronous=FULL`` — a commit returns only after
  the WAL is fsynced, so a write acknowledged to a caller survives SIGKILL
  and power loss;
* one writer: the store is owned by one process, enforced with an
  exclusive ``flock`` on ``<db>.lock``; a second process gets a clear error
  telling it to use the owner's API instead of corrupting its view;
* the whole key space and a bounded history are loaded into memory at open
  (:class:`flotte.registry.local.LocalStore` serves reads from memory); the
  database is the durable log.

Schema: ``kv`` (current keys), ``history`` (events for watch replay, trimmed
by compaction), ``leases`` (id, TTL — deadlines are not stored: as in etcd,
after a restart every lease gets its full TTL again and then expires
normally), ``meta`` (revision, compact revision, schema version).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3

from flotte.registry.local import CommitBatch, LoadedState
from flotte.registry.types import Event, EventType, KeyValue, Unavailable

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY, value BLOB NOT NULL, create_revision INTEGER NOT NULL,
    mod_revision INTEGER NOT NULL, version INTEGER NOT NULL, lease INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS history (
    revision INTEGER NOT NULL, seq INTEGER NOT NULL, type INTEGER NOT NULL,
    key TEXT NOT NULL, value BLOB NOT NULL, create_revision INTEGER NOT NULL,
    version INTEGER NOT NULL, lease INTEGER NOT NULL,
    prev_value BLOB, prev_create INTEGER, prev_mod INTEGER, prev_version INTEGER,
    prev_lease INTEGER,
    PRIMARY KEY (revision, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS leases (id INTEGER PRIMARY KEY, ttl INTEGER NOT NULL);
"""


class StoreLocked(Unavailable):
    """Another process owns this registry file."""


class SqlitePersistence:
    """The :class:`flotte.registry.local.Persistence` for one SQLite file."""

    def __init__(self, path: str) -> None:
        self.path = path
        directory = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(directory):
            raise Unavailable(f"cannot open registry {path}: directory {directory} does not "
                              "exist (create it first)")
        self._lockfd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lockfd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = ""
            with contextlib.suppress(OSError):
                owner = os.pread(self._lockfd, 32, 0).decode(errors="replace").strip()
            os.close(self._lockfd)
            raise StoreLocked(
                f"registry {path} is owned by another process{f' (pid {owner})' if owner else ''};"
                " talk to it through its API (flotte --endpoint …) or stop it first") from None
        os.ftruncate(self._lockfd, 0)
        os.pwrite(self._lockfd, str(os.getpid()).encode(), 0)
        try:
            self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.execute("PRAGMA foreign_keys=OFF")
            self.db.executescript(_SCHEMA)
            row = self.db.execute("SELECT value FROM meta WHERE name='schema'").fetchone()
            if row is None:
                self.db.execute("INSERT INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
            elif row[0] != SCHEMA_VERSION:
                raise Unavailable(f"registry {path} has schema version {row[0]}; this flotte "
                                  f"understands version {SCHEMA_VERSION}")
        except sqlite3.DatabaseError as exc:
            self._unlock()
            raise Unavailable(f"cannot open registry {path}: {exc} (is it a flotte registry "
                              "file?)") from None

    def _unlock(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._lockfd)

    def load(self) -> LoadedState:
        db = self.db
        meta = dict(db.execute("SELECT name, value FROM meta").fetchall())
        state = LoadedState(revision=meta.get("revision", 0),
                            compact_revision=meta.get("compact", 0))
        state.kvs = [KeyValue(k, bytes(v), c, m, ver, lease) for k, v, c, m, ver, lease in
                     db.execute("SELECT key, value, create_revision, mod_revision, version, "
                                "lease FROM kv ORDER BY key")]
        for row in db.execute("SELECT revision, type, key, value, create_revision, version, "
                              "lease, prev_value, prev_create, prev_mod, prev_version, "
                              "prev_lease FROM history ORDER BY revision, seq"):
            rev, typ, key, value, create, ver, lease, pv, pc, pm, pver, pl = row
            prev = None if pv is None else KeyValue(key, bytes(pv), pc, pm, pver, pl)
            etype = EventType.PUT if typ == 0 else EventType.DELETE
            state.history.append(Event(etype, KeyValue(key, bytes(value), create, rev, ver, lease),
                                       prev))
        state.leases = [(i, t) for i, t in db.execute("SELECT id, ttl FROM leases")]
        return state

    def commit(self, batch: CommitBatch) -> None:
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            seq: dict[int, int] = {}
            hist = []
            for e in batch.events:
                kv, prev = e.kv, e.prev_kv
                rev = kv.mod_revision
                n = seq.get(rev, 0)
                seq[rev] = n + 1
                if e.type is EventType.PUT:
                    db.execute("INSERT OR REPLACE INTO kv VALUES (?, ?, ?, ?, ?, ?)",
                               (kv.key, kv.value, kv.create_revision, kv.mod_revision,
                                kv.version, kv.lease))
                else:
                    db.execute("DELETE FROM kv WHERE key = ?", (kv.key,))
                hist.append((rev, n, 0 if e.type is EventType.PUT else 1, kv.key, kv.value,
                             kv.create_revision, kv.version, kv.lease,
                             None if prev is None else prev.value,
                             None if prev is None else prev.create_revision,
                             None if prev is None else prev.mod_revision,
                             None if prev is None else prev.version,
                             None if prev is None else prev.lease))
            if hist:
                db.executemany("INSERT INTO history VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", hist)
            if batch.lease_grants:
                db.executemany("INSERT OR REPLACE INTO leases VALUES (?, ?)", batch.lease_grants)
            if batch.lease_revokes:
                db.executemany("DELETE FROM leases WHERE id = ?",
                               [(i,) for i in batch.lease_revokes])
            db.execute("INSERT OR REPLACE INTO meta VALUES ('revision', ?)", (batch.revision,))
            db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise

    def compact(self, revision: int) -> None:
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("DELETE FROM history WHERE revision < ?", (revision,))
            db.execute("INSERT OR REPLACE INTO meta VALUES ('compact', "
                       "MAX(?, COALESCE((SELECT value FROM meta WHERE name='compact'), 0)))",
                       (revision,))
            db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self.db.close()
        self._unlock()
