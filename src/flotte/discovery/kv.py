"""User keys (``/services/…``) behind one small interface, over the API or on a registry.

``flotte kv``, ``flotte announce`` and ``flotte proxy`` all read and write
service-discovery keys.  They do it in one of two ways, and nothing above
this module may care which:

* :class:`ApiKV` goes through the daemon's HTTP API (``/v1/kv``).  That is
  the default, because it works from any machine that can reach the API
  socket, with no registry credentials — the way fleet users kept using
  ``etcdctl`` against the local etcd proxy;
* :class:`RegistryKV` talks to a registry directly (``--registry
  etcd://…``): for clusters where the registry is etcd, for scripts that
  run before the daemon is up, and for watches (the API cannot stream user
  keys yet, so :class:`ApiKV` has to poll for them).

Directories are key prefixes, as in etcd v3: ``/services/apache`` is a
directory exactly when some key starts with ``/services/apache/``.  So an
empty directory cannot exist, ``mkdir`` only checks that nothing stands in
the way, and a directory vanishes with its last key (which is what confd
users wanted: issue #216, an emptied directory must read as empty, not fail).

Errors follow etcd v2's numbered errors (``100: Key not found``), because
``etcdctl`` scripts grep for them; every failure is a :class:`KVFailure`
whose :attr:`~KVFailure.exit_code` is etcdctl v2's.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from flotte.api.client import ApiError, Client, KVNode
from flotte.engine.keyspace import Keys
from flotte.registry import (
    CompactedError,
    Compare,
    Delete,
    EventType,
    Get,
    InvalidRequest,
    KeyValue,
    Lease,
    LeaseNotFound,
    Put,
    Range,
    Registry,
    RegistryError,
    Unavailable,
    connect,
    mod_revision,
    version,
)
from flotte.registry import lease as lease_of
from flotte.registry import value as value_of

# -- errors ------------------------------------------------------------------------------

#: etcdctl v2's exit codes (``etcdctl/command/error.go``), which scripts test.
EXIT_BAD_ARGS = 1
EXIT_BAD_CONNECTION = 2
EXIT_BAD_AUTH = 3
EXIT_SERVER_ERROR = 4

#: etcd v2 error codes (``etcd/error/error.go``) and their causes.
KEY_NOT_FOUND = 100
TEST_FAILED = 101
NOT_FILE = 102
NOT_DIR = 104
NODE_EXIST = 105
ROOT_READ_ONLY = 107
DIR_NOT_EMPTY = 108
INVALID_FIELD = 209
EVENT_INDEX_CLEARED = 401

MESSAGES = {
    KEY_NOT_FOUND: "Key not found",
    TEST_FAILED: "Compare failed",
    NOT_FILE: "Not a file",
    NOT_DIR: "Not a directory",
    NODE_EXIST: "Key already exists",
    ROOT_READ_ONLY: "Key is read only",
    DIR_NOT_EMPTY: "Directory not empty",
    INVALID_FIELD: "Invalid field",
    EVENT_INDEX_CLEARED: "The event in requested index is outdated and cleared",
}


RECURSIVE_HINT = "it is a directory: delete it and every key in it with --recursive"


class KVFailure(Exception):
    """Anything that made a kv operation fail; :attr:`exit_code` is etcdctl v2's."""

    exit_code = EXIT_SERVER_ERROR


class KVError(KVFailure):
    """The store refused: ``Error:  100: Key not found (/x) [7]`` in etcdctl's words.

    ``code`` is etcd v2's number (0 when none fits), ``cause`` usually the
    key, ``index`` the store revision when the backend knows it, and
    ``hint`` a sentence saying what to do (printed after the etcd line, so
    that scripts matching etcd's text keep working).
    """

    def __init__(self, code: int, cause: str, index: int | None = None, *,
                 message: str | None = None, hint: str = "") -> None:
        self.code = code
        self.cause = cause
        self.index = index
        self.message = message or MESSAGES.get(code, "Error")
        self.hint = hint
        text = f"{code}: {self.message} ({cause})" if code else f"{self.message} ({cause})"
        if index is not None:
            text += f" [{index}]"
        super().__init__(text)


class BadRequest(KVFailure):
    """The request itself is malformed (a key with NUL, a value too large …)."""

    exit_code = EXIT_BAD_ARGS


class Unreachable(KVFailure):
    """Neither the API nor the registry answered; a retry later may work."""

    exit_code = EXIT_BAD_CONNECTION


class AuthFailed(KVFailure):
    """The API refused our token."""

    exit_code = EXIT_BAD_AUTH


# -- keys --------------------------------------------------------------------------------

_SLASHES = re.compile(r"/{2,}")


def normalize_key(key: str) -> str:
    """``services//web/`` → ``/services/web``; ``""`` is the root ``/`` (as the API does).

    etcdctl v2 took relative keys as relative to the root, so ``foo`` is ``/foo``.
    """
    return "/" + _SLASHES.sub("/", key).strip("/")


def dir_prefix(key: str) -> str:
    return key if key.endswith("/") else key + "/"


def under(key: str, top: str) -> bool:
    """Is ``key`` ``top`` itself or inside directory ``top``?  (``/ab`` is not under ``/a``.)"""
    return top == "/" or key == top or key.startswith(dir_prefix(top))


def file_node(kv: KeyValue, ttl: int | None = None) -> KVNode:
    return KVNode(kv.key, kv.value.decode("utf-8", "replace"), False, [], kv.create_revision,
                  kv.mod_revision, ttl)


def dir_node(key: str, children: Sequence[KeyValue], recursive: bool) -> KVNode:
    """The directory ``key`` built from every key under it (sorted, as ``range`` gives them).

    Same shape as the API's: without ``recursive`` deeper levels are listed
    as empty ``dir`` nodes, so that ``ls`` shows them without reading the
    whole subtree into the answer.
    """
    base = dir_prefix(key)
    order: list[str] = []
    files: dict[str, KVNode] = {}
    groups: dict[str, list[KeyValue]] = {}
    for kv in children:
        head, sep, _ = kv.key[len(base):].partition("/")
        if not sep:
            files[head] = file_node(kv)
            order.append(head)
        elif head not in groups:
            groups[head] = [kv]
            order.append(head)
        else:
            groups[head].append(kv)
    nodes: list[KVNode] = []
    for name in order:
        if name in files and name not in groups:
            nodes.append(files[name])
        elif name in groups:
            sub = dir_node(base + name, groups[name], True) if recursive \
                else KVNode(base + name, None, True)
            nodes.append(sub)
    return KVNode(key, None, True, nodes)


def flatten(node: KVNode | None) -> dict[str, str]:
    """Every file under ``node`` (itself included) as ``{key: value}``."""
    out: dict[str, str] = {}
    if node is None:
        return out
    if not node.dir:
        out[node.key] = node.value or ""
    for child in node.nodes:
        out.update(flatten(child))
    return out


# -- the interface -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Written:
    """What a set did: the node now stored, and the one it replaced (when the backend says)."""

    node: KVNode
    prev: KVNode | None = None
    created: bool = False


@dataclass(frozen=True, slots=True)
class Change:
    """One change seen by :meth:`KVBackend.watch`.

    ``action`` is etcd v2's word: ``create`` / ``set`` for a write, ``delete``
    for a removal (an expired TTL too: v3 stores cannot tell them apart).
    ``revision`` is 0 when the backend cannot know it (:class:`ApiKV` polls).
    """

    action: str
    key: str
    value: str | None
    prev_value: str | None = None
    revision: int = 0


@runtime_checkable
class KVBackend(Protocol):
    """Service-discovery keys, wherever they live (see the module docs)."""

    #: Where the keys live, for messages: ``the flotte API at unix://…``.
    description: str

    async def read(self, key: str, *, recursive: bool = False) -> KVNode | None:
        """A key, or the directory ``key`` (``dir=True``), or ``None`` when neither exists."""
        ...

    async def set(self, key: str, value: str, *, ttl: int | None = None,
                  prev_exist: bool | None = None, prev_value: str | None = None,
                  prev_index: int | None = None) -> Written:
        """Write ``key``; ``ttl`` makes it vanish unless written again; ``prev_*`` compare
        first (``prev_exist=False``: create only; ``True``: update only)."""
        ...

    async def delete(self, key: str, *, recursive: bool = False, dir: bool = False,
                     prev_value: str | None = None, prev_index: int | None = None
                     ) -> KVNode | None:
        """Delete a key (or a directory with ``recursive``); returns the old node if known."""
        ...

    async def refresh(self, key: str, value: str, ttl: int) -> None:
        """Make sure ``key`` holds ``value`` for ``ttl`` more seconds, as cheaply as the
        backend can (on a registry: a lease keep-alive, no write, no watch event)."""
        ...

    def watch(self, key: str, *, recursive: bool = False, after: int | None = None
              ) -> AsyncIterator[Change]:
        """Changes to ``key`` (and, ``recursive``, everything under it), from now or
        from revision ``after + 1``; runs until the caller stops iterating."""
        ...

    def follow(self, prefix: str) -> AsyncIterator[dict[str, str]]:
        """Every key under directory ``prefix`` as ``{key: value}``: once now, then again
        after each change.  Raises :class:`KVFailure` when the store goes away; the
        caller keeps its last snapshot and calls again."""
        ...

    async def close(self) -> None: ...


def check_writable(key: str, managed_prefix: str | None, *, recursive: bool = False) -> None:
    """The API's rule, applied on direct registry access too: never write the root or
    flotte's own keys (those change through the fleet API so its invariants hold)."""
    if key == "/" and not recursive:
        raise KVError(ROOT_READ_ONLY, "/", message="Root is read only",
                      hint="name a key such as /services/web/10.0.0.1")
    if managed_prefix is None:
        return
    if under(key, managed_prefix) or (recursive and under(managed_prefix, key)):
        raise KVError(ROOT_READ_ONLY, key,
                      hint=f"keys under {managed_prefix} are managed by flotte; change units "
                           "and machines with the fleet verbs, or pick another key")


def _compares(key: str, prev_exist: bool | None, prev_value: str | None,
              prev_index: int | None) -> list[Compare]:
    out: list[Compare] = []
    if prev_exist is not None:
        out.append(version(key) > 0 if prev_exist else version(key) == 0)
    if prev_value is not None:
        out.append(value_of(key) == prev_value.encode())
    if prev_index is not None:
        out.append(mod_revision(key) == prev_index)
    return out


def compare_error(key: str, current: KeyValue | None, prev_exist: bool | None,
                  prev_value: str | None, prev_index: int | None, index: int) -> KVError:
    """The etcd v2 error for a failed compare-and-swap, saying what did not match."""
    if current is None:
        return KVError(KEY_NOT_FOUND, key, index)
    if prev_exist is False:
        return KVError(NODE_EXIST, key, index)
    why: list[str] = []
    if prev_value is not None and current.value != prev_value.encode():
        why.append(f"[{prev_value} != {current.value.decode('utf-8', 'replace')}]")
    if prev_index is not None and current.mod_revision != prev_index:
        why.append(f"[{prev_index} != {current.mod_revision}]")
    return KVError(TEST_FAILED, " ".join(why) or key, index)


# -- straight on a registry ----------------------------------------------------------------


@dataclass(slots=True)
class _Held:
    lease: Lease
    ttl: int  # as asked: etcd may grant more (its minimum TTL)
    value: bytes


class RegistryKV:
    """:class:`KVBackend` on a :class:`~flotte.registry.Registry` (etcd, usually).

    Give it a URL and it connects on first use and again after a failed
    connect, so a sidekick started before etcd is up keeps trying instead of
    dying; or give it an open registry (tests, the daemon), which it then
    does not close.
    """

    def __init__(self, registry: Registry | str, *,
                 managed_prefix: str | None = Keys().prefix) -> None:
        if isinstance(registry, str):
            self.url = registry
            self._registry: Registry | None = None
            self._owned = True
        else:
            self.url = registry.url or "registry"
            self._registry = registry
            self._owned = False
        # Never the query: etcd URLs may carry ?user=…&password=….
        self.description = f"the registry at {self.url.split('?', 1)[0]}"
        self.managed_prefix = managed_prefix
        self._held: dict[str, _Held] = {}
        self._connecting = asyncio.Lock()

    async def registry(self) -> Registry:
        if self._registry is not None:
            return self._registry
        async with self._connecting:
            if self._registry is None:
                try:
                    self._registry = await connect(self.url)
                except InvalidRequest as exc:
                    raise BadRequest(str(exc)) from None
                except (RegistryError, OSError) as exc:
                    raise Unreachable(f"cannot reach {self.description}: {exc}") from None
            return self._registry

    @contextlib.asynccontextmanager
    async def _errors(self) -> AsyncIterator[Registry]:
        """Registry errors as :class:`KVFailure`, so callers handle one family."""
        reg = await self.registry()
        try:
            yield reg
        except InvalidRequest as exc:
            raise BadRequest(str(exc)) from None
        except CompactedError as exc:
            raise KVError(EVENT_INDEX_CLEARED, f"{exc.requested}", exc.compact_revision,
                          hint=str(exc)) from None
        except Unavailable as exc:
            raise Unreachable(f"cannot reach {self.description}: {exc}") from None
        except RegistryError as exc:
            raise KVError(0, str(exc), message="registry error") from None
        except OSError as exc:
            raise Unreachable(f"cannot reach {self.description}: {exc}") from None

    async def read(self, key: str, *, recursive: bool = False) -> KVNode | None:
        key = normalize_key(key)
        async with self._errors() as reg:
            ops: list[Get | Range] = [Range("")] if key == "/" else \
                [Get(key), Range(dir_prefix(key))]
            res = await reg.txn([], ops)
        if key == "/":
            return dir_node("/", res.responses[0], recursive)
        kv, children = res.responses
        if kv is not None:
            return file_node(kv)
        if children:
            return dir_node(key, children, recursive)
        return None

    async def set(self, key: str, value: str, *, ttl: int | None = None,
                  prev_exist: bool | None = None, prev_value: str | None = None,
                  prev_index: int | None = None) -> Written:
        key = normalize_key(key)
        check_writable(key, self.managed_prefix)
        compares = _compares(key, prev_exist, prev_value, prev_index)
        data = value.encode("utf-8")
        async with self._errors() as reg:
            granted = await reg.grant(ttl) if ttl else None
            try:
                res = await reg.txn(compares, [Get(key), Put(key, data, granted.id if granted
                                                             else None)], [Get(key)])
            except BaseException:
                if granted is not None:
                    with contextlib.suppress(RegistryError, OSError):
                        await granted.revoke()
                raise
            if not res.succeeded and granted is not None:
                await granted.revoke()
        if not res.succeeded:
            raise compare_error(key, res.responses[0], prev_exist, prev_value, prev_index,
                                res.revision)
        self._forget(key)
        prev: KeyValue | None = res.responses[0]
        rev: int = res.responses[1]
        node = KVNode(key, value, False, [], prev.create_revision if prev else rev, rev, ttl)
        return Written(node, file_node(prev) if prev else None, prev is None)

    async def delete(self, key: str, *, recursive: bool = False, dir: bool = False,
                     prev_value: str | None = None, prev_index: int | None = None
                     ) -> KVNode | None:
        key = normalize_key(key)
        check_writable(key, self.managed_prefix, recursive=recursive)
        compares = _compares(key, None, prev_value, prev_index)
        ops: list[Get | Delete | Range] = [Get(key), Delete(key)]
        if recursive:
            ops.append(Delete(dir_prefix(key), prefix=True) if key != "/" else Delete("", True))
        else:
            ops.append(Range(dir_prefix(key), limit=1))
        async with self._errors() as reg:
            res = await reg.txn(compares, ops, [Get(key)])
        if not res.succeeded:
            raise compare_error(key, res.responses[0], None, prev_value, prev_index,
                                res.revision)
        prev: KeyValue | None = res.responses[0]
        deleted = res.responses[1] + (res.responses[2] if recursive else 0)
        if not deleted:
            if not recursive and res.responses[2]:
                raise KVError(DIR_NOT_EMPTY if dir else NOT_FILE, key, res.revision,
                              hint=RECURSIVE_HINT)
            raise KVError(KEY_NOT_FOUND, key, res.revision)
        await self._release(key)
        return file_node(prev) if prev else None

    async def refresh(self, key: str, value: str, ttl: int) -> None:
        """Keep-alive the key's lease and re-put only if the key changed or vanished.

        A re-put every interval (etcd v2's ``set --ttl`` loop) is a write that
        wakes every watcher: confd re-rendered nginx on every refresh of every
        announcer (deis/deis#3505).  A lease keep-alive is not an event.
        """
        key = normalize_key(key)
        check_writable(key, self.managed_prefix)
        data = value.encode("utf-8")
        async with self._errors() as reg:
            held = self._held.get(key)
            if held is not None and held.ttl == ttl:
                try:
                    granted = await held.lease.keepalive()
                except LeaseNotFound:
                    granted = 0  # expired (the registry was away longer than the TTL)
                if granted > 0:
                    # Write only when the key is no longer ours with this value (deleted
                    # or overwritten by someone, or the value changed): else no event.
                    await reg.txn([lease_of(key) == held.lease.id, value_of(key) == data], [],
                                  [Put(key, data, held.lease.id)])
                    held.value = data
                    return
            fresh = await reg.grant(ttl)
            await reg.put(key, data, fresh)
            self._held[key] = _Held(fresh, ttl, data)
        if held is not None:
            # The key moved to the new lease, so revoking the old one deletes nothing.
            with contextlib.suppress(RegistryError, OSError):
                await held.lease.revoke()

    def _forget(self, key: str) -> None:
        """A plain set replaced the key: its old lease (if ours) no longer guards it."""
        self._held.pop(key, None)

    async def _release(self, key: str) -> None:
        held = self._held.pop(key, None)
        if held is not None:
            with contextlib.suppress(RegistryError, OSError):
                await held.lease.revoke()

    def watch(self, key: str, *, recursive: bool = False, after: int | None = None
              ) -> AsyncIterator[Change]:
        return self._watch(normalize_key(key), recursive, after)

    async def _watch(self, key: str, recursive: bool, after: int | None
                     ) -> AsyncIterator[Change]:
        async with self._errors() as reg:
            # A recursive watch on /a must see /a itself and /a/…, not /ab: watch the
            # bare prefix and filter (one stream, not two).
            w = reg.watch("" if key == "/" else key, None if after is None else after + 1,
                          prefix=recursive)
            try:
                async for event in w:
                    if recursive and not under(event.kv.key, key):
                        continue
                    prev = event.prev_kv.value.decode("utf-8", "replace") \
                        if event.prev_kv is not None else None
                    if event.type is EventType.DELETE:
                        yield Change("delete", event.kv.key, None, prev, event.revision)
                    else:
                        yield Change("create" if event.kv.version == 1 else "set",
                                     event.kv.key, event.kv.value.decode("utf-8", "replace"),
                                     prev, event.revision)
            finally:
                await w.close()

    def follow(self, prefix: str) -> AsyncIterator[dict[str, str]]:
        return self._follow(normalize_key(prefix))

    async def _follow(self, prefix: str) -> AsyncIterator[dict[str, str]]:
        scan = "" if prefix == "/" else dir_prefix(prefix)
        async with self._errors() as reg:
            res = await reg.txn([], [Range(scan)])
            current = {kv.key: kv.value.decode("utf-8", "replace") for kv in res.responses[0]}
            yield dict(current)
            w = reg.watch(scan, res.revision + 1)
            try:
                async for event in w:
                    if event.type is EventType.DELETE:
                        if current.pop(event.kv.key, None) is None:
                            continue
                    else:
                        current[event.kv.key] = event.kv.value.decode("utf-8", "replace")
                    yield dict(current)
            finally:
                await w.close()

    async def close(self) -> None:
        for key in list(self._held):
            await self._release(key)
        if self._owned and self._registry is not None:
            reg, self._registry = self._registry, None
            await reg.close()


# -- through the API --------------------------------------------------------------------------


class ApiKV:
    """:class:`KVBackend` through the flotte API's ``/v1/kv`` routes.

    Watching re-reads the keys whenever ``/v1/events?prefix=`` reports a
    change under them (and every few seconds anyway); against a server without
    that parameter it polls, and ``poll_interval`` bounds how late a
    change is seen; a recursive read of a service directory is cheap.
    """

    def __init__(self, client: Client, *, poll_interval: float = 0.25) -> None:
        self.client = client
        self.description = f"the flotte API at {client.endpoint}"
        self.poll_interval = poll_interval

    @classmethod
    def open(cls, endpoint: str, token: str | None = None, *, timeout: float = 30.0,
             poll_interval: float = 0.25) -> ApiKV:
        return cls(Client(endpoint, token, timeout=timeout), poll_interval=poll_interval)

    def _failure(self, exc: ApiError, key: str) -> KVFailure:
        if exc.status == 0:
            return Unreachable(exc.message)
        if exc.status == 401:
            return AuthFailed(f"{self.description} refused the token: {exc.message}")
        if exc.status == 404:
            return KVError(KEY_NOT_FOUND, key)
        if exc.status == 403:
            if "is a directory" in exc.message:
                return KVError(NOT_FILE, key, hint=RECURSIVE_HINT)
            return KVError(ROOT_READ_ONLY, key, hint=exc.message)
        if exc.status == 400:
            return BadRequest(exc.message)
        return KVError(0, key, message=f"API error {exc.status}: {exc.message}")

    async def read(self, key: str, *, recursive: bool = False) -> KVNode | None:
        key = normalize_key(key)
        try:
            return await self.client.kv_get(key, recursive=recursive)
        except ApiError as exc:
            raise self._failure(exc, key) from None

    async def set(self, key: str, value: str, *, ttl: int | None = None,
                  prev_exist: bool | None = None, prev_value: str | None = None,
                  prev_index: int | None = None) -> Written:
        key = normalize_key(key)
        check_writable(key, None)  # the root; the server guards its own prefix
        try:
            node = await self.client.kv_set(key, value, ttl=ttl, prev_exist=prev_exist,
                                            prev_value=prev_value, prev_index=prev_index)
        except ApiError as exc:
            if exc.status != 412:
                raise self._failure(exc, key) from None
            if "does not exist" in exc.message:
                raise KVError(KEY_NOT_FOUND, key) from None
            if prev_exist is False:
                raise KVError(NODE_EXIST, key) from None
            raise KVError(TEST_FAILED, key, hint=exc.message) from None
        return Written(node, None, node.created_index == node.modified_index)

    async def delete(self, key: str, *, recursive: bool = False, dir: bool = False,
                     prev_value: str | None = None, prev_index: int | None = None
                     ) -> KVNode | None:
        key = normalize_key(key)
        check_writable(key, None, recursive=recursive)
        try:
            await self.client.kv_delete(key, recursive=recursive, prev_value=prev_value,
                                        prev_index=prev_index)
        except ApiError as exc:
            if exc.status == 412:
                if "does not exist" in exc.message:
                    raise KVError(KEY_NOT_FOUND, key) from None
                raise KVError(TEST_FAILED, key, hint=exc.message) from None
            if exc.status == 403 and dir and "is a directory" in exc.message:
                raise KVError(DIR_NOT_EMPTY, key, hint=RECURSIVE_HINT) from None
            raise self._failure(exc, key) from None
        return None  # the client does not return the API's prevNode

    async def refresh(self, key: str, value: str, ttl: int) -> None:
        """A plain ``PUT ?ttl=``: the API has no lease keep-alive for user keys yet."""
        await self.set(key, value, ttl=ttl)

    def watch(self, key: str, *, recursive: bool = False, after: int | None = None
              ) -> AsyncIterator[Change]:
        if after is not None:
            raise BadRequest("watching from an index needs --registry: the flotte API cannot "
                             "replay the history of user keys")
        return self._watch(normalize_key(key), recursive)

    async def _snapshot(self, key: str) -> dict[str, tuple[str, int]]:
        node = await self.read(key, recursive=True)
        out: dict[str, tuple[str, int]] = {}

        def walk(n: KVNode) -> None:
            if not n.dir:
                out[n.key] = (n.value or "", n.modified_index)
            for c in n.nodes:
                walk(c)

        if node is not None:
            walk(node)
        return out

    async def _snapshot_or_empty(self, key: str) -> dict[str, tuple[str, int]]:
        try:
            return await self._snapshot(key)
        except KVError as exc:
            if exc.code == KEY_NOT_FOUND:
                return {}
            raise

    async def _watch(self, key: str, recursive: bool) -> AsyncIterator[Change]:
        signal = self.client.change_signal(key)
        try:
            before = await self._snapshot_or_empty(key)
            if not recursive:
                before = {k: v for k, v in before.items() if k == key}
            while True:
                await signal.wait(self.poll_interval)
                signal.clear()
                now = await self._snapshot_or_empty(key)
                if not recursive:
                    now = {k: v for k, v in now.items() if k == key}
                for change in diff_snapshots(before, now):
                    yield change
                before = now
        finally:
            await signal.close()

    def follow(self, prefix: str) -> AsyncIterator[dict[str, str]]:
        return self._follow(normalize_key(prefix))

    async def _follow(self, prefix: str) -> AsyncIterator[dict[str, str]]:
        last: dict[str, str] | None = None
        signal = self.client.change_signal(prefix)
        try:
            while True:
                signal.clear()
                snap = await self._snapshot_or_empty(prefix)
                now = {k: v for k, (v, _) in snap.items() if k != prefix}
                if now != last:
                    last = now
                    yield dict(now)
                await signal.wait(self.poll_interval)
        finally:
            await signal.close()

    async def close(self) -> None:
        await self.client.close()


def diff_snapshots(before: Mapping[str, tuple[str, int]], now: Mapping[str, tuple[str, int]]
                   ) -> Iterable[Change]:
    """What changed between two polls (``{key: (value, modified index)}``), in key order."""
    for key in sorted(before.keys() | now.keys()):
        old, new = before.get(key), now.get(key)
        if new is None and old is not None:
            yield Change("delete", key, None, old[0])
        elif new is not None and old is None:
            yield Change("create", key, new[0], None, new[1])
        elif new is not None and old is not None and new[1] != old[1]:
            yield Change("set", key, new[0], old[0], new[1])


__all__ = [
    "EXIT_BAD_ARGS", "EXIT_BAD_AUTH", "EXIT_BAD_CONNECTION", "EXIT_SERVER_ERROR", "ApiKV",
    "AuthFailed", "BadRequest", "Change", "KVBackend", "KVError", "KVFailure", "KVNode",
    "RegistryKV", "Unreachable", "Written", "check_writable", "diff_snapshots", "dir_node",
    "dir_prefix", "file_node", "flatten", "normalize_key", "under",
]
