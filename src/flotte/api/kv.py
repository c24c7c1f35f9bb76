"""``/v1/kv/<key>``: user keys (``/services/…``) over HTTP, etcd-v2 style.

fleet users kept their service-discovery data next to fleet's in etcd and
read it with ``etcdctl``; ``flotte kv`` does the same through this route, so
a machine without registry credentials can still use it.  Shapes follow the
etcd v2 keys API that those scripts know (``node``/``prevNode``, ``dir``,
``nodes``, ``createdIndex``/``modifiedIndex`` = registry revisions) while
errors use the API's ``{"error":{"code","message"}}`` shape:

* ``GET``: a key, or a directory (a key prefix ending in ``/``) listing its
  children; ``?recursive=true`` lists the whole subtree;
* ``PUT`` with ``{"value":"…"}``: set; ``?ttl=SECONDS`` puts it on a lease
  (it vanishes unless re-put, as announcers do); ``?prevExist=false`` only
  creates, ``?prevExist=true``/``?prevValue=``/``?prevIndex=`` compare-and-swap
  (412 when the comparison fails);
* ``DELETE``: a key; a directory needs ``?recursive=true``.

Keys under the cluster prefix (``/flotte``) can be read, for debugging, but
not written: they are changed through the fleet API so its rules hold.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from aiohttp import web

from flotte.api.context import request_context
from flotte.api.fleet_v1 import json_response
from flotte.api.params import bool_param, int_param
from flotte.api.validation import json_field
from flotte.api.wire import HttpError, check_content_type
from flotte.engine.keyspace import Keys
from flotte.registry import (
    Compare,
    Delete,
    Get,
    KeyValue,
    Put,
    Range,
    RegistryError,
    mod_revision,
    value,
    version,
)

_SLASHES = re.compile(r"/{2,}")


def normalize_key(tail: str) -> str:
    """``services//web/`` → ``/services/web``; the empty tail is the root ``/``."""
    key = "/" + _SLASHES.sub("/", tail).strip("/")
    return key


def dir_prefix(key: str) -> str:
    return key if key.endswith("/") else key + "/"


def file_node(kv: KeyValue) -> dict[str, Any]:
    return {"key": kv.key, "value": kv.value.decode("utf-8", "replace"),
            "createdIndex": kv.create_revision, "modifiedIndex": kv.mod_revision}


def dir_node(key: str, children: Sequence[KeyValue], recursive: bool) -> dict[str, Any]:
    """A directory node for ``key`` from every key under it (sorted, as ``range`` returns).

    Without ``recursive`` only the first level is listed and deeper levels
    appear as ``{"key":…,"dir":true}``; with it, the whole tree.
    """
    base = dir_prefix(key)
    nodes: list[dict[str, Any]] = []
    groups: dict[str, list[KeyValue]] = {}
    for kv in children:
        head, sep, _ = kv.key[len(base):].partition("/")
        if not sep:
            nodes.append(file_node(kv))
        else:
            sub = groups.get(head)
            if sub is None:
                groups[head] = sub = []
                nodes.append({"key": base + head, "dir": True})
            sub.append(kv)
    if recursive:
        for node in nodes:
            if node.get("dir"):
                name = node["key"][len(base):]
                node.update(dir_node(node["key"], groups[name], True))
    out: dict[str, Any] = {"key": key, "dir": True}
    if nodes:
        out["nodes"] = nodes
    return out


def _check_writable(key: str, keys: Keys, *, recursive: bool = False) -> None:
    if key == "/" and not recursive:
        raise HttpError(400, "the root / is a directory, not a key; name a key such as "
                             "/services/web/10.0.0.1")
    managed = keys.prefix
    if key == managed or key.startswith(managed + "/") or \
            (recursive and managed.startswith(dir_prefix(key))):
        raise HttpError(403, f"{key} is managed by flotte (cluster prefix {managed}); change "
                             "units and machines through the fleet API, or pick another key")


def compares_for(query: Mapping[str, str], key: str) -> list[Compare]:
    """The comparisons ``prevExist``/``prevValue``/``prevIndex`` ask for (all must hold)."""
    out: list[Compare] = []
    if "prevExist" in query:
        out.append(version(key) > 0 if bool_param(query, "prevExist") else version(key) == 0)
    if "prevValue" in query:
        out.append(value(key) == query["prevValue"].encode())
    prev_index = int_param(query, "prevIndex", minimum=1)
    if prev_index is not None:
        out.append(mod_revision(key) == prev_index)
    return out


def compare_failed(key: str, query: Mapping[str, str], current: KeyValue | None) -> HttpError:
    """The 412 for a failed compare, saying what the key holds now."""
    if current is None:
        return HttpError(412, f"compare failed: {key} does not exist")
    if "prevExist" in query and not bool_param(query, "prevExist"):
        return HttpError(412, f"compare failed: {key} already exists (revision "
                              f"{current.mod_revision})")
    return HttpError(412, f"compare failed: {key} is at revision {current.mod_revision} with a "
                          "different value than the request expected; read it and retry")


async def get_key(request: web.Request) -> web.StreamResponse:
    ctx = request_context(request)
    key = normalize_key(request.match_info.get("key", ""))
    recursive = bool_param(request.query, "recursive")
    res = await ctx.registry.txn([], [Get(key), Range(dir_prefix(key))])
    kv, children = res.responses
    if kv is not None and key != "/":
        return json_response({"action": "get", "node": file_node(kv)})
    if children or key == "/":
        return json_response({"action": "get", "node": dir_node(key, children, recursive)})
    raise HttpError(404, f"key not found: {key}")


async def put_key(request: web.Request) -> web.StreamResponse:
    ctx = request_context(request)
    key = normalize_key(request.match_info.get("key", ""))
    _check_writable(key, ctx.keys)
    check_content_type(request.headers.getall("Content-Type", []))
    body = await request.json(loads=_loads_object)
    raw = json_field(body, "value")
    if not isinstance(raw, str):
        raise HttpError(400, 'PUT needs a JSON body {"value": "<text>"} (value must be a string)')
    ttl = int_param(request.query, "ttl", minimum=1)
    if ttl is None and json_field(body, "ttl") is not None:
        ttl_body = json_field(body, "ttl")
        if isinstance(ttl_body, bool) or not isinstance(ttl_body, int) or ttl_body < 1:
            raise HttpError(400, "ttl must be a positive integer number of seconds")
        ttl = ttl_body
    compares = compares_for(request.query, key)
    lease = await ctx.registry.grant(ttl) if ttl else None
    put = Put(key, raw.encode("utf-8"), lease.id if lease else None)
    try:
        res = await ctx.registry.txn(compares, [Get(key), put], [Get(key)])
    except BaseException:
        if lease is not None:
            with contextlib.suppress(RegistryError):
                await lease.revoke()
        raise
    if not res.succeeded:
        if lease is not None:
            await lease.revoke()
        raise compare_failed(key, request.query, res.responses[0])
    prev: KeyValue | None = res.responses[0]
    rev: int = res.responses[1]
    node: dict[str, Any] = {"key": key, "value": raw, "modifiedIndex": rev,
                            "createdIndex": prev.create_revision if prev else rev}
    if ttl:
        node["ttl"] = ttl
    action = "compareAndSwap" if compares and prev is not None else \
        "create" if prev is None else "set"
    body_out: dict[str, Any] = {"action": action, "node": node}
    if prev is not None:
        body_out["prevNode"] = file_node(prev)
    return json_response(body_out, status=201 if prev is None else 200)


def _loads_object(text: str) -> dict[str, Any]:
    try:
        obj = json.loads(text)
    except ValueError as exc:
        raise HttpError(400, f"unable to decode body: {exc}") from None
    if not isinstance(obj, dict):
        raise HttpError(400, 'unable to decode body: expected a JSON object {"value": "…"}')
    return obj


async def delete_key(request: web.Request) -> web.StreamResponse:
    ctx = request_context(request)
    key = normalize_key(request.match_info.get("key", ""))
    recursive = bool_param(request.query, "recursive")
    _check_writable(key, ctx.keys, recursive=recursive)
    compares = compares_for(request.query, key)
    ops: list[Get | Delete | Range] = [Get(key)]
    if recursive:
        ops += [Delete(key), Delete(dir_prefix(key), prefix=True)]
    else:
        ops += [Delete(key), Range(dir_prefix(key), limit=1)]
    res = await ctx.registry.txn(compares, ops, [Get(key)])
    if not res.succeeded:
        raise compare_failed(key, request.query, res.responses[0])
    prev: KeyValue | None = res.responses[0]
    deleted = res.responses[1] + (res.responses[2] if recursive else 0)
    if not deleted:
        if not recursive and res.responses[2]:
            raise HttpError(403, f"{key} is a directory; delete it with ?recursive=true")
        raise HttpError(404, f"key not found: {key}")
    body: dict[str, Any] = {"action": "delete",
                            "node": {"key": key, "modifiedIndex": res.revision}}
    if recursive and prev is None:
        body["node"]["dir"] = True
    if prev is not None:
        body["prevNode"] = file_node(prev)
    return json_response(body)


def add_routes(app: web.Application) -> None:
    router = app.router
    for path in ("/v1/kv", "/v1/kv/{key:.*}"):
        router.add_get(path, get_key)
        router.add_put(path, put_key)
        router.add_delete(path, delete_key)
