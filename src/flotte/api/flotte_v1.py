"""flotte's own ``/v1`` routes: what fleet's API could not tell you.

* ``GET /v1/units/<name>/reasons``: why the engine could not place a unit
  (fleet's #1 silent failure: ``fleetctl start`` hanging forever, fleet.md §7.3);
* ``GET /v1/units/<name>/status``: the published state record with the
  desired state, the schedule and the machine, in one answer;
* ``GET /v1/events``: a newline-delimited JSON stream of every change under
  the cluster prefix, resumable with ``?since=REV`` (for ``--watch``-style
  CLI output and tools that would otherwise poll);
* ``GET /v1/units/<name>/journal``: the unit's journal, from the daemon's
  :class:`~flotte.api.journal.JournalSource`.

All answers use fleet's JSON encoding and error shape.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from flotte.api.context import request_context
from flotte.api.fleet_v1 import json_response, unit_json
from flotte.api.params import bool_param, int_param
from flotte.api.store import UNIT_NOT_FOUND
from flotte.api.validation import check_unit_name
from flotte.api.wire import HttpError, go_json, omit_empty, unit_state_entity
from flotte.engine.keyspace import Keys
from flotte.registry import CompactedError, Event, EventType, Watch

#: How long /v1/events waits for the watch to fail (history compacted) before
#: committing to a 200 stream; past it, errors arrive as an "error" line.
_EVENTS_GRACE = 0.1


# -- reasons, status -------------------------------------------------------------------


async def reasons(request: web.Request) -> web.StreamResponse:
    """``{"name","machineID"?,"reasons":{machine id: sentence}}``; ``""`` = cluster-wide."""
    store = request_context(request).store
    name = request.match_info["name"]
    view = await store.unit(name)
    if view is None:
        raise HttpError(404, UNIT_NOT_FOUND)
    body = omit_empty({"name": name, "machineID": view.machine_id,
                       "desiredState": view.desired, "currentState": view.current})
    body["reasons"] = await store.reasons(name)
    return json_response(body)


async def status(request: web.Request) -> web.StreamResponse:
    """Desired + derived + published state, and the machine record, of one unit.

    A destroyed unit whose agent has not yet removed its state still
    answers (with only ``state``), so a client can watch it stop.
    """
    store = request_context(request).store
    name = request.match_info["name"]
    view = await store.unit(name)
    state = view.state if view is not None else await store.state(name)
    if view is None and state is None:
        raise HttpError(404, UNIT_NOT_FOUND)
    machine_id = view.scheduled if view is not None else state.machine_id if state else None
    machine = await store.machine(machine_id) if machine_id else None
    body: dict[str, Any] = {"name": name}
    if view is not None:
        body.update(omit_empty({"hash": view.record.hash, "desiredState": view.desired,
                                "currentState": view.current, "machineID": view.machine_id}))
        body["global"] = view.global_
    body["state"] = json.loads(state.encode()) if state is not None else None
    body["machine"] = json.loads(machine.encode()) if machine is not None else None
    return json_response(body)


# -- events ------------------------------------------------------------------------------


def event_entity(event: Event, keys: Keys) -> dict[str, Any]:
    """One change as a JSON object: revision, type, key, value (text), kind and name.

    ``kind``/``name`` split the key under the prefix (``/flotte/desired/a.service``
    → ``desired``, ``a.service``) so consumers need not know the layout.
    Values that are not UTF-8 (none of flotte's) are replaced lossily.
    """
    rel = event.kv.key[len(keys.prefix) + 1:] if event.kv.key.startswith(keys.prefix + "/") \
        else event.kv.key
    kind, _, name = rel.partition("/")
    out: dict[str, Any] = {"revision": event.revision, "type": event.type.value,
                           "key": event.kv.key, "kind": kind, "name": name}
    if event.type is EventType.PUT:
        out["value"] = event.kv.value.decode("utf-8", "replace")
    return out


class _End:
    pass


async def _pump(watch: Watch, queue: asyncio.Queue[Event | BaseException | _End]) -> None:
    try:
        async for event in watch:
            await queue.put(event)
        await queue.put(_End())
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        await queue.put(exc)


async def events(request: web.Request) -> web.StreamResponse:
    """``application/x-ndjson`` stream of changes under the cluster prefix.

    ``?since=REV`` replays history from revision REV first (resume with the
    last revision seen + 1); a compacted REV is 410.  Idle streams get a
    ``{"type":"heartbeat","revision":N}`` line every ``heartbeat`` seconds.
    The ``X-Flotte-Revision`` header is the newest revision at the start.
    ``?prefix=/services/`` follows user keys instead (confd, ``kv watch``,
    proxies): the answer then carries ``X-Flotte-Prefix``, so a client can tell
    a server that knows the parameter from one that ignores it.
    """
    ctx = request_context(request)
    since = int_param(request.query, "since", minimum=1)
    prefix = request.query.get("prefix", ctx.keys.prefix + "/")
    if not prefix.startswith("/"):
        raise HttpError(400, f"prefix {prefix!r} must start with '/' (for example "
                             "?prefix=/services/)")
    watch = ctx.registry.watch(prefix, start_revision=since)
    queue: asyncio.Queue[Event | BaseException | _End] = asyncio.Queue(maxsize=1024)
    pump = asyncio.create_task(_pump(watch, queue), name="api-events")
    try:
        first: Event | BaseException | _End | None = None
        with contextlib.suppress(TimeoutError):
            first = await asyncio.wait_for(queue.get(), _EVENTS_GRACE)
        if isinstance(first, CompactedError):
            raise HttpError(410, f"{first}; GET the units again and watch from the revision "
                                 "of that read + 1")
        if isinstance(first, BaseException):
            raise first
        resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson",
                                           "X-Flotte-Revision": str(ctx.registry.revision),
                                           "X-Flotte-Prefix": prefix})
        await resp.prepare(request)
        with contextlib.suppress(ConnectionError):
            await _stream_events(resp, queue, first, ctx.keys, ctx.heartbeat,
                                 lambda: ctx.registry.revision)
        return resp
    finally:
        pump.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pump
        await watch.close()


async def _stream_events(resp: web.StreamResponse,
                         queue: asyncio.Queue[Event | BaseException | _End],
                         item: Event | BaseException | _End | None, keys: Keys,
                         heartbeat: float, revision: Any) -> None:
    while True:
        if item is None:
            await resp.write(go_json({"type": "heartbeat", "revision": revision()}) + b"\n")
        elif isinstance(item, _End):
            return
        elif isinstance(item, BaseException):
            msg = f"{item}" if isinstance(item, CompactedError) else \
                f"event stream interrupted: {item}; reconnect with ?since=<last revision + 1>"
            await resp.write(go_json({"type": "error", "error": {"message": msg}}) + b"\n")
            return
        else:
            await resp.write(go_json(event_entity(item, keys)) + b"\n")
        try:
            item = await asyncio.wait_for(queue.get(), heartbeat)
        except TimeoutError:
            item = None


# -- journal -----------------------------------------------------------------------------


async def journal(request: web.Request) -> web.StreamResponse:
    """``text/plain`` journal lines; ``?lines=N`` (last N), ``?follow=1`` (keep streaming)."""
    ctx = request_context(request)
    name = request.match_info["name"]
    check_unit_name(name)
    lines = int_param(request.query, "lines", minimum=0)
    follow = bool_param(request.query, "follow")
    if ctx.journal is None:
        raise HttpError(404, f"no journal for {name}: this server has no journal source "
                             "(journals are served by the flotte agent running the unit)")
    lines_iter = await ctx.journal.open_journal(name, lines=lines, follow=follow)
    if lines_iter is None:
        raise HttpError(404, f"no journal for {name} on this machine; ask the machine "
                             f"running it (see /v1/units/{name}/status)")
    try:
        resp = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8"})
        await resp.prepare(request)
        with contextlib.suppress(ConnectionError):
            await _stream_lines(request, resp, lines_iter, ctx.heartbeat)
        return resp
    finally:
        aclose = getattr(lines_iter, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(Exception):
                await aclose()


def disconnected(request: web.Request) -> bool:
    """Has the client gone?  (aiohttp does not cancel handlers when it does.)"""
    transport = request.transport
    return transport is None or transport.is_closing()


async def _stream_lines(request: web.Request, resp: web.StreamResponse,
                        lines_iter: AsyncIterator[str], poll: float) -> None:
    """Copy lines to the client; while the source is idle (``follow``), check every
    ``poll`` seconds that the client is still there, so a followed journal nobody
    reads any more is closed instead of waiting forever for its next line."""
    pending: asyncio.Future[str] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(lines_iter))
            done, _ = await asyncio.wait({pending}, timeout=poll)
            if not done:
                if disconnected(request):
                    return
                continue
            try:
                line = pending.result()
            except StopAsyncIteration:
                return
            finally:
                if pending.done():
                    pending = None
            await resp.write(line.encode("utf-8", "replace") + b"\n")
    finally:
        if pending is not None and not pending.done():
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                await pending


async def all_units(request: web.Request) -> web.StreamResponse:
    """Every unit in one answer (fleet's ``Unit`` entities, no paging).

    fleet's pages are slices of a full listing, so a client walking 10,000
    units in pages of 100 makes the server read the registry 100 times;
    flotte's own client asks here once (``fleetctl list-unit-files``)."""
    units = await request_context(request).store.units()
    return json_response({"units": [unit_json(v) for v in units]})


async def all_states(request: web.Request) -> web.StreamResponse:
    """Every machine's unit states in one answer (``fleetctl list-units``)."""
    states = await request_context(request).store.states()
    return json_response({"states": [unit_state_entity(s) for s in states]})


def add_routes(app: web.Application) -> None:
    router = app.router
    router.add_get("/v1/units", all_units)
    router.add_get("/v1/states", all_states)
    router.add_get("/v1/units/{name}/reasons", reasons)
    router.add_get("/v1/units/{name}/status", status)
    # No HEAD on streams: a HEAD response has no body to notice a disconnect on.
    router.add_get("/v1/units/{name}/journal", journal, allow_head=False)
    router.add_get("/v1/events", events, allow_head=False)
