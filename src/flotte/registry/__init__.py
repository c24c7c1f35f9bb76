"""The registry: all cluster state, behind one async interface with etcd v3 semantics.

::

    async with flotte.registry.connect("sqlite:///var/lib/flotte/registry.db") as reg:
        rev = await reg.put("/services/web/10.0.0.1", b'{"port": 80}')
        async for event in reg.watch("/services/web/", start_revision=rev):
            ...

URLs:

``memory://[name]``
    in-process, not durable (tests).  Handles opened with the same name in
    one process share the store; without a name every call gets a new one.
``sqlite:///path/registry.db``
    the embedded default: durable, owned by one process.
``etcd://host:port[,host:port…]`` / ``etcds://…``
    a real etcd v3 cluster; options ``?ca=…&cert=…&key=…&user=…&password=…``.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Generator
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from flotte.registry.base import Lease, Registry, Watch
from flotte.registry.local import LocalRegistry, LocalStore
from flotte.registry.types import (
    MAX_VALUE_BYTES,
    CompactedError,
    Compare,
    Delete,
    Event,
    EventType,
    Get,
    InvalidRequest,
    KeyValue,
    LeaseNotFound,
    Put,
    Range,
    RegistryError,
    Txn,
    TxnResult,
    Unavailable,
    UnknownURL,
    WatchLagged,
    create_revision,
    lease,
    mod_revision,
    value,
    version,
)

_OPEN: dict[str, LocalStore] = {}
_anon = itertools.count(1)


async def _release(store: LocalStore) -> None:
    store.refs -= 1
    if store.refs <= 0:
        _OPEN.pop(store.name, None)
        await store.close()


async def _open_local(key: str, make: Any) -> LocalRegistry:
    store = _OPEN.get(key)
    if store is None:
        store = LocalStore(key, make())
        await store.open()
        _OPEN[key] = store
    store.refs += 1
    return LocalRegistry(store, key, _release)


async def open_registry(url: str) -> Registry:
    """Open a registry handle for ``url`` (see the module docs)."""
    if not isinstance(url, str) or "://" not in url:
        raise UnknownURL(f"registry URL {url!r} needs a scheme: memory://, sqlite:///path or "
                         "etcd://host:port")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "memory":
        name = (parts.netloc + parts.path) or f"anonymous-{next(_anon)}"
        return await _open_local(f"memory://{name}", lambda: None)
    if scheme == "sqlite":
        path = parts.netloc + parts.path
        if not path:
            raise UnknownURL(f"registry URL {url!r} names no file: write sqlite:///path/registry.db")
        path = os.path.realpath(path)
        from flotte.registry.sqlite import SqlitePersistence

        return await _open_local(f"sqlite://{path}", lambda: SqlitePersistence(path))
    if scheme in ("etcd", "etcds"):
        from flotte.registry.etcd import EtcdRegistry

        return await EtcdRegistry.from_url(url)
    raise UnknownURL(f"unknown registry URL scheme {parts.scheme!r} in {url!r}; use memory://, "
                     "sqlite:///path or etcd://host:port")


class connect:
    """``async with connect(url) as reg:`` or ``reg = await connect(url)``."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._reg: Registry | None = None

    def __await__(self) -> Generator[Any, None, Registry]:
        return open_registry(self.url).__await__()

    async def __aenter__(self) -> Registry:
        self._reg = await open_registry(self.url)
        return self._reg

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._reg is not None:
            await self._reg.close()


__all__ = [
    "MAX_VALUE_BYTES", "CompactedError", "Compare", "Delete", "Event", "EventType", "Get",
    "InvalidRequest", "KeyValue", "Lease", "LeaseNotFound", "Put", "Range", "Registry",
    "RegistryError", "Txn", "TxnResult", "Unavailable", "UnknownURL", "Watch", "WatchLagged",
    "connect", "create_revision", "lease", "mod_revision", "open_registry", "value", "version",
]
