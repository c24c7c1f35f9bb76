"""The registry's data model, shared by every backend: records, events, txn ops, errors.

The model is etcd v3's, on purpose: a cluster runs on etcd, a single machine
on the embedded store, and the code above the registry must not be able to
tell them apart.  Key points of etcd's semantics that callers rely on:

* one revision counter per store; every write (put, delete, txn, lease
  expiry) that changes something gets the next revision, and all its changes
  share it;
* a record knows when its key was created (``create_revision``), last
  modified (``mod_revision``) and how many times it was written since
  creation (``version``; a deleted key's next put starts again at 1);
* compare-and-swap is a transaction whose comparisons look at those fields.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

#: etcd refuses requests over 1.5 MiB (the whole request, key and framing
#: included); values are limited to that less 1 KiB so every backend accepts
#: exactly the same values.
MAX_VALUE_BYTES = 1536 * 1024 - 1024
#: etcd's default --max-txn-ops: operations per transaction branch.
MAX_TXN_OPS = 128
#: Keys longer than this are refused (etcd has no hard limit; big keys are a mistake).
MAX_KEY_BYTES = 64 * 1024


class RegistryError(Exception):
    """Base class of every error the registry raises."""


class InvalidRequest(RegistryError, ValueError):
    """The caller asked for something malformed (empty key, str value, …)."""


class UnknownURL(InvalidRequest):
    """``connect()`` got a URL it does not understand."""


class CompactedError(RegistryError):
    """A watch asked for history that has been compacted away.

    As in etcd, ``compact(N)`` keeps revision N: the oldest revision a watch
    can start from is ``compact_revision``.  Recover by re-reading the keys
    and watching from the revision of that read + 1.
    """

    def __init__(self, requested: int, compact_revision: int) -> None:
        super().__init__(
            f"revision {requested} has been compacted (history starts at revision "
            f"{compact_revision}); re-read the keys and watch from the revision of that read + 1")
        self.requested = requested
        self.compact_revision = compact_revision


class LeaseNotFound(RegistryError):
    """The lease does not exist (expired, revoked, or never granted)."""

    def __init__(self, lease_id: int) -> None:
        super().__init__(f"lease {lease_id:x} not found (expired or revoked)")
        self.lease_id = lease_id


class Unavailable(RegistryError):
    """The store cannot be reached (every etcd endpoint failed, store closed…)."""


class WatchLagged(RegistryError):
    """A watcher fell too far behind and was cancelled; resume from ``next_revision``."""

    def __init__(self, next_revision: int) -> None:
        super().__init__(f"watcher fell behind; resume from revision {next_revision}")
        self.next_revision = next_revision


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int = 0


class EventType(StrEnum):
    PUT = "put"
    DELETE = "delete"


@dataclass(frozen=True, slots=True)
class Event:
    """One change.  For a delete, ``kv`` carries the key and the delete's
    revision as ``mod_revision`` (value empty, version 0), as in etcd."""

    type: EventType
    kv: KeyValue
    prev_kv: KeyValue | None = None

    @property
    def revision(self) -> int:
        return self.kv.mod_revision


# ---------------------------------------------------------------------------
# Transactions


CompareTarget = Literal["value", "version", "create_revision", "mod_revision", "lease"]
CompareOp = Literal["==", "!=", "<", ">"]


@dataclass(frozen=True, slots=True)
class Compare:
    """``target(key) op operand``, e.g. ``Compare("k", "mod_revision", "==", 7)``.

    For a missing key, version / create_revision / mod_revision / lease are 0
    and value compares as ``b""`` (etcd: a value compare on a missing key is
    false; we follow etcd — see :meth:`evaluate`).  Build them readably with
    :func:`value`, :func:`version`, :func:`create_revision`,
    :func:`mod_revision`: ``mod_revision("k") == 7``.
    """

    key: str
    target: CompareTarget
    op: CompareOp
    operand: bytes | int

    def evaluate(self, kv: KeyValue | None) -> bool:
        if self.target == "value":
            if kv is None:
                return False  # etcd: comparing the value of a missing key fails
            have: bytes | int = kv.value
        elif kv is None:
            have = 0
        else:
            have = {"version": kv.version, "create_revision": kv.create_revision,
                    "mod_revision": kv.mod_revision, "lease": kv.lease}[self.target]
        want = self.operand
        if self.op == "==":
            return have == want
        if self.op == "!=":
            return have != want
        if self.op == "<":
            return have < want  # type: ignore[operator]
        return have > want  # type: ignore[operator]


class _Target:
    __slots__ = ("key", "target")

    def __init__(self, key: str, target: CompareTarget) -> None:
        self.key = key
        self.target = target

    def _cmp(self, op: CompareOp, other: Any) -> Compare:
        if self.target == "value":
            if not isinstance(other, bytes | bytearray | memoryview):
                raise InvalidRequest("value comparisons take bytes")
            other = bytes(other)
        elif not isinstance(other, int) or isinstance(other, bool):
            raise InvalidRequest(f"{self.target} comparisons take an int")
        return Compare(self.key, self.target, op, other)

    def __eq__(self, other: object) -> Compare:  # type: ignore[override]
        return self._cmp("==", other)

    def __ne__(self, other: object) -> Compare:  # type: ignore[override]
        return self._cmp("!=", other)

    def __lt__(self, other: object) -> Compare:
        return self._cmp("<", other)

    def __gt__(self, other: object) -> Compare:
        return self._cmp(">", other)

    __hash__ = None  # type: ignore[assignment]


def value(key: str) -> _Target:
    return _Target(key, "value")


def version(key: str) -> _Target:
    return _Target(key, "version")


def create_revision(key: str) -> _Target:
    return _Target(key, "create_revision")


def mod_revision(key: str) -> _Target:
    return _Target(key, "mod_revision")


def lease(key: str) -> _Target:
    return _Target(key, "lease")


@dataclass(frozen=True, slots=True)
class Put:
    key: str
    value: bytes
    lease: int | None = None


@dataclass(frozen=True, slots=True)
class Delete:
    key: str
    prefix: bool = False


@dataclass(frozen=True, slots=True)
class Get:
    key: str


@dataclass(frozen=True, slots=True)
class Range:
    prefix: str
    limit: int | None = None


@dataclass(frozen=True, slots=True)
class Txn:
    """A transaction used as an op inside another one (etcd's nested txn, 3.3+).

    It runs atomically with the outer transaction; its response is a
    :class:`TxnResult`.  Used for fencing: ``txn([leader still me], [Txn(…)])``.
    """

    compare: tuple[Compare, ...]
    success: tuple[Op, ...]
    failure: tuple[Op, ...] = ()


Op = Put | Delete | Get | Range | Txn


@dataclass(frozen=True, slots=True)
class TxnResult:
    """``succeeded`` tells which branch ran; ``responses`` has one entry per op:
    the revision for a Put, the deleted count for a Delete, a ``KeyValue | None``
    for a Get, a ``list[KeyValue]`` for a Range."""

    succeeded: bool
    revision: int
    responses: list[Any] = field(default_factory=list)


# ---------------------------------------------------------------------------
# Input checks (every backend runs the same ones, so errors read the same)


def check_key(key: object, what: str = "key") -> str:
    if isinstance(key, bytes):
        try:
            key = key.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidRequest(f"{what} must be UTF-8 text: {key!r}") from None
    if not isinstance(key, str):
        raise InvalidRequest(f"{what} must be a str, not {type(key).__name__}")
    if not key:
        raise InvalidRequest(f"{what} must not be empty (write e.g. /services/web/1)")
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise InvalidRequest(f"{what} is longer than {MAX_KEY_BYTES} bytes")
    if "\x00" in key:
        raise InvalidRequest(f"{what} must not contain NUL: {key!r}")
    return key


def check_prefix(prefix: object) -> str:
    """Like :func:`check_key`, but the empty prefix (the whole keyspace) is allowed."""
    if prefix == "" or prefix == b"":
        return ""
    return check_key(prefix, "prefix")


def check_value(value: object, key: str = "") -> bytes:
    if isinstance(value, bytearray | memoryview):
        value = bytes(value)
    if not isinstance(value, bytes):
        hint = " (encode text first: value.encode())" if isinstance(value, str) else ""
        raise InvalidRequest(
            f"value for {key or 'key'} must be bytes, not {type(value).__name__}{hint}")
    if len(value) > MAX_VALUE_BYTES:
        raise InvalidRequest(
            f"value for {key or 'key'} is {len(value)} bytes; the limit is {MAX_VALUE_BYTES} "
            "(1.5 MiB, etcd's request limit): store large data elsewhere and keep a reference")
    return value


def check_ttl(ttl: object) -> int:
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not math.isfinite(ttl) \
            or ttl <= 0:
        raise InvalidRequest(f"lease TTL must be a positive number of seconds, not {ttl!r}")
    return max(1, math.ceil(ttl))


def check_ops(ops: Sequence[object], what: str) -> list[Op]:
    if len(ops) > MAX_TXN_OPS:
        raise InvalidRequest(f"{what} has {len(ops)} operations; the limit is {MAX_TXN_OPS} "
                             "(etcd's --max-txn-ops): split it into several transactions")
    out: list[Op] = []
    for op in ops:
        if isinstance(op, Put):
            out.append(Put(check_key(op.key), check_value(op.value, op.key), op.lease))
        elif isinstance(op, Delete):
            key = check_prefix(op.key) if op.prefix else check_key(op.key)
            out.append(Delete(key, op.prefix))
        elif isinstance(op, Get):
            out.append(Get(check_key(op.key)))
        elif isinstance(op, Range):
            out.append(Range(check_prefix(op.prefix), op.limit))
        elif isinstance(op, Txn):
            for c in op.compare:
                if not isinstance(c, Compare):
                    raise InvalidRequest(f"{what}: nested txn compare {c!r} is not a Compare")
                check_key(c.key)
            out.append(Txn(tuple(op.compare), tuple(check_ops(op.success, what)),
                           tuple(check_ops(op.failure, what))))
        else:
            raise InvalidRequest(f"{what}: {op!r} is not a Put, Delete, Get, Range or Txn")
    _check_writes(out, what)
    return out


def _check_writes(ops: Sequence[Op], what: str) -> None:
    """etcd's ``checkIntervals``: a txn may not write one key twice.

    Exactly as etcd 3.4–3.5 checks it (so the embedded store refuses what etcd
    refuses): the two branches of one nested txn may put the same key (only
    one runs), but sibling nested txns may not; a put may not fall under a
    delete made at the same level or in an earlier sibling; and direct puts
    may not repeat any put or fall under any delete of the level.
    """
    _intervals(ops, what)


def _dup(what: str, key: str) -> InvalidRequest:
    return InvalidRequest(f"{what} writes {key} twice; etcd refuses duplicate keys in one "
                          "transaction (also across nested txns, and a put under a delete)")


def _covered(dels: list[Delete], key: str) -> bool:
    return any(key == d.key or (d.prefix and key.startswith(d.key)) for d in dels)


def _intervals(ops: Sequence[Op], what: str) -> tuple[set[str], list[Delete]]:
    dels: list[Delete] = [o for o in ops if isinstance(o, Delete)]
    puts: set[str] = set()
    for nested in ops:
        if not isinstance(nested, Txn):
            continue
        puts_then, dels_then = _intervals(nested.success, what)
        puts_else, dels_else = _intervals(nested.failure, what)
        for k in puts_then:
            if k in puts or _covered(dels, k):
                raise _dup(what, k)
            puts.add(k)
        for k in puts_else:
            if (k in puts and k not in puts_then) or _covered(dels, k):
                raise _dup(what, k)
            puts.add(k)
        dels += dels_then + dels_else
    for op in ops:
        if isinstance(op, Put):
            if op.key in puts or _covered(dels, op.key):
                raise _dup(what, op.key)
            puts.add(op.key)
    return puts, dels
