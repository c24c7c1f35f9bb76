"""fleet's HTTP API v1, route for route (spec: fleet.md §2.3, §5).

Served under ``/fleet/v1`` and the legacy ``/v1-alpha``.  Each resource
dispatches on the method itself (instead of aiohttp's per-method routes) so
that a wrong method gets fleet's own 405 message, e.g. ``only GET, PUT and
DELETE supported against this resource``.  Unknown paths, including an item
path with a trailing slash, fall through to the router's 404, which the
app's middleware renders in fleet's error shape.

Handlers only parse, call :class:`~flotte.api.store.Store` and shape; the
rules live in :mod:`~flotte.api.validation`, :mod:`~flotte.api.pagination`
and :mod:`~flotte.api.wire`.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from importlib import resources
from typing import Any

from aiohttp import web

from flotte.api.context import request_context
from flotte.api.pagination import find_page_token, paginate
from flotte.api.store import UNIT_NOT_FOUND, UnitView
from flotte.api.validation import (
    check_activatable,
    options_hash,
    parse_metadata_patch,
    parse_unit_body,
    validate_unit,
)
from flotte.api.wire import (
    JSON_TYPE,
    HttpError,
    check_content_type,
    go_json,
    machine_entity,
    page_entity,
    unit_entity,
    unit_state_entity,
)

PREFIXES = ("/fleet/v1", "/v1-alpha")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_response(obj: Any, status: int = 200) -> web.Response:
    """A JSON answer encoded the way fleet's Go server encoded it."""
    return web.Response(status=status, body=go_json(obj), content_type=JSON_TYPE)


def _dispatch(request: web.Request, handlers: Mapping[str, Handler], message: str,
              status: int = 405) -> Awaitable[web.StreamResponse]:
    handler = handlers.get(request.method)
    if handler is None:
        raise HttpError(status, message, {"Allow": ", ".join(handlers)} if status == 405 else {})
    return handler(request)


def unit_json(view: UnitView) -> dict[str, Any]:
    return unit_entity(view.record, desired=view.desired, current=view.current,
                       machine_id=view.machine_id)


# -- /units ----------------------------------------------------------------------


async def units_collection(request: web.Request) -> web.StreamResponse:
    return await _dispatch(request, {"GET": list_units},
                           "only GET supported against this resource")


async def list_units(request: web.Request) -> web.StreamResponse:
    ctx = request_context(request)
    tok = find_page_token(request.query.getall("nextPageToken", []), ctx.token_limit)
    items, nxt = paginate(await ctx.store.units(), tok)
    return json_response(page_entity("units", [unit_json(v) for v in items],
                                     nxt.encode() if nxt else None))


async def unit_item(request: web.Request) -> web.StreamResponse:
    return await _dispatch(request, {"GET": get_unit, "PUT": put_unit, "DELETE": delete_unit},
                           "only GET, PUT and DELETE supported against this resource")


async def get_unit(request: web.Request) -> web.StreamResponse:
    view = await request_context(request).store.unit(request.match_info["name"])
    if view is None:
        raise HttpError(404, UNIT_NOT_FOUND)
    return json_response(unit_json(view))


async def put_unit(request: web.Request) -> web.StreamResponse:
    """Create (201), replace (201) or change the desired state (204): fleet.md §2.3."""
    check_content_type(request.headers.getall("Content-Type", []))
    body = parse_unit_body(await request.read(), request.match_info["name"])
    store = request_context(request).store
    existing = await store.unit(body.name)
    if existing is None:
        if not body.options:
            raise HttpError(409, "unit does not exist and options field empty")
        record = validate_unit(body.name, body.options)
        desired = body.desired_state or "inactive"
        check_activatable(body.name, desired)
        await store.create_unit(record, desired)
        return web.Response(status=201)
    if body.options and options_hash(body.options) != existing.record.hash:
        # Different options: re-create in place (fleetctl --replace), desired state reset.
        record = validate_unit(body.name, body.options)
        desired = body.desired_state or "inactive"
        check_activatable(body.name, desired)
        await store.create_unit(record, desired, replacing=existing)
        return web.Response(status=201)
    if body.desired_state is None:
        raise HttpError(409, "must provide DesiredState to update existing unit")
    check_activatable(body.name, body.desired_state)
    await store.set_desired(existing, body.desired_state)
    return web.Response(status=204)


async def delete_unit(request: web.Request) -> web.StreamResponse:
    store = request_context(request).store
    view = await store.unit(request.match_info["name"])
    if view is None:
        raise HttpError(404, UNIT_NOT_FOUND)
    await store.destroy_unit(view)
    return web.Response(status=204)


# -- /state ----------------------------------------------------------------------


async def state_collection(request: web.Request) -> web.StreamResponse:
    return await _dispatch(request, {"GET": list_states},
                           "only GET supported against this resource")


async def list_states(request: web.Request) -> web.StreamResponse:
    """Unit states; ``machineID``/``unitName`` filter exactly (first value of each)."""
    ctx = request_context(request)
    tok = find_page_token(request.query.getall("nextPageToken", []), ctx.token_limit)
    machine_id = request.query.get("machineID", "")
    unit_name = request.query.get("unitName", "")
    states = [s for s in await ctx.store.states()
              if (not machine_id or s.machine_id == machine_id)
              and (not unit_name or s.name == unit_name)]
    items, nxt = paginate(states, tok)
    return json_response(page_entity("states", [unit_state_entity(s) for s in items],
                                     nxt.encode() if nxt else None))


async def state_item(request: web.Request) -> web.StreamResponse:
    return await _dispatch(request, {"GET": get_state},
                           "only GET supported against this resource")


async def get_state(request: web.Request) -> web.StreamResponse:
    """One unit's state; 404 when none is published (fleet dropped the connection)."""
    state = await request_context(request).store.state(request.match_info["name"])
    if state is None:
        raise HttpError(404, "unit state does not exist")
    return json_response(unit_state_entity(state))


# -- /machines ---------------------------------------------------------------------


async def machines(request: web.Request) -> web.StreamResponse:
    return await _dispatch(request, {"GET": list_machines, "PATCH": patch_machines},
                           "only GET and PATCH supported against this resource")


async def list_machines(request: web.Request) -> web.StreamResponse:
    ctx = request_context(request)
    tok = find_page_token(request.query.getall("nextPageToken", []), ctx.token_limit)
    items, nxt = paginate(await ctx.store.machines(), tok)
    return json_response(page_entity(
        "machines", [machine_entity(m.id, m.record.public_ip, m.metadata) for m in items],
        nxt.encode() if nxt else None))


async def patch_machines(request: web.Request) -> web.StreamResponse:
    """Dynamic metadata (fleet.md §5.4): validated as a whole, applied atomically."""
    ops = parse_metadata_patch(await request.read())
    await request_context(request).store.patch_metadata(ops)
    return web.Response(status=204)


# -- discovery, roots ----------------------------------------------------------------


@functools.cache
def discovery_document() -> bytes:
    """The Google-discovery description of these routes (served verbatim, as fleet did)."""
    return resources.files("flotte.api").joinpath("discovery.json").read_bytes()


async def discovery(request: web.Request) -> web.StreamResponse:
    if request.method != "GET":
        # fleet answered 400 here, not 405.
        raise HttpError(400, "only HTTP GET supported against this resource")
    return web.Response(body=discovery_document(), content_type=JSON_TYPE)


async def method_not_allowed(request: web.Request) -> web.StreamResponse:
    """``/`` and ``/fleet/v1`` themselves: fleet answered 405 with an empty message."""
    raise HttpError(405, "")


def add_routes(app: web.Application) -> None:
    router = app.router
    router.add_route("*", "/", method_not_allowed)
    for prefix in PREFIXES:
        router.add_route("*", prefix, method_not_allowed)
        router.add_route("*", f"{prefix}/units", units_collection)
        router.add_route("*", prefix + "/units/{name}", unit_item)
        router.add_route("*", f"{prefix}/state", state_collection)
        router.add_route("*", prefix + "/state/{name}", state_item)
        router.add_route("*", f"{prefix}/machines", machines)
        router.add_route("*", f"{prefix}/discovery", discovery)
