"""Building the API application: routes, middlewares, the ``Server`` header.

Three middlewares, outermost first:

``errors``
    turns every failure into fleet's ``{"error":{"code","message"}}`` with
    ``Content-Type: application/json`` — our :class:`HttpError`, aiohttp's
    own 404/405/413, registry failures (503 "fleet server unable to
    communicate with etcd: <cause>", which fleetctl users recognise), a
    record that does not decode (500 naming the key), anything else (500,
    logged).  Users never see a traceback.
``auth``
    TCP connections must carry ``Authorization: Bearer <token>`` (fleet had
    no authentication at all, fleet.md §7.3 "Security"); the unix socket is
    protected by its file mode instead, so local tools need no token.
``ready``
    503 for everything while the daemon says it is not ready.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import socket

from aiohttp import web

from flotte.api import fleet_v1, flotte_v1, kv
from flotte.api.context import CONTEXT, DEFAULT_SERVER_HEADER, ApiContext
from flotte.api.journal import JournalSource
from flotte.api.pagination import DEFAULT_TOKEN_LIMIT
from flotte.api.wire import JSON_TYPE, UNAVAILABLE_MESSAGE, HttpError, error_body
from flotte.engine.keyspace import Keys, RecordError
from flotte.registry import CompactedError, InvalidRequest, Registry, RegistryError

log = logging.getLogger("flotte.api")

#: Unit bodies may be up to the registry's value limit (1.5 MiB) plus JSON framing.
MAX_BODY = 4 * 1024 * 1024


def error_response(status: int, message: str, headers: dict[str, str] | None = None
                   ) -> web.Response:
    return web.Response(status=status, body=error_body(status, message),
                        content_type=JSON_TYPE, headers=headers)


def _unavailable(exc: BaseException) -> web.Response:
    return error_response(503, f"{UNAVAILABLE_MESSAGE}: {exc}; check that the registry "
                               "(etcd or the embedded store) is running and reachable")


@web.middleware
async def errors_middleware(request: web.Request, handler: fleet_v1.Handler
                            ) -> web.StreamResponse:
    try:
        return await handler(request)
    except HttpError as exc:
        return error_response(exc.status, exc.message, exc.headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(exc.status, _http_exception_message(request, exc),
                              _kept_headers(exc))
    except CompactedError as exc:
        return error_response(410, str(exc))
    except InvalidRequest as exc:
        return error_response(400, str(exc))
    except RegistryError as exc:
        log.warning("%s %s: registry error: %s", request.method, request.path, exc)
        return _unavailable(exc)
    except RecordError as exc:
        log.error("%s %s: %s", request.method, request.path, exc)
        return error_response(500, str(exc))
    except asyncio.CancelledError:
        raise
    except ConnectionError:
        raise
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        return error_response(500, "internal server error; the flotte daemon's log has "
                                   "the details")


def _http_exception_message(request: web.Request, exc: web.HTTPException) -> str:
    if isinstance(exc, web.HTTPMethodNotAllowed):
        return (f"only {', '.join(sorted(exc.allowed_methods))} supported against this "
                "resource")
    if isinstance(exc, web.HTTPNotFound):
        return ""  # fleet's 404 for unknown paths carries no message
    return exc.text or exc.reason


def _kept_headers(exc: web.HTTPException) -> dict[str, str]:
    return {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "www-authenticate")}


def is_tcp(request: web.Request) -> bool:
    """Did the request come over TCP (as opposed to the unix socket)?

    Unknown transports count as TCP, so a mistake fails closed.
    """
    transport = request.transport
    sock = transport.get_extra_info("socket") if transport is not None else None
    return sock is None or sock.family != socket.AF_UNIX


def check_bearer(header: str | None, token: str | None) -> str | None:
    """``None`` if ``header`` carries ``token``, else the 401 message."""
    if token is None:
        return ("this server has no API token, so it refuses TCP requests; use its unix "
                "socket, or start it with a token")
    if not header:
        return ("missing API token: send 'Authorization: Bearer <token>' (the token is in the "
                "api-token file of the server's state directory), or use the unix socket")
    scheme, _, credential = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        return "malformed Authorization header: expected 'Authorization: Bearer <token>'"
    if not hmac.compare_digest(credential.strip().encode(), token.encode()):
        return ("invalid API token: it does not match the api-token file of the server's "
                "state directory")
    return None


@web.middleware
async def auth_middleware(request: web.Request, handler: fleet_v1.Handler
                          ) -> web.StreamResponse:
    ctx = request.app[CONTEXT]
    if not ctx.no_auth and is_tcp(request):
        problem = check_bearer(request.headers.get("Authorization"), ctx.token)
        if problem is not None:
            raise HttpError(401, problem, {"WWW-Authenticate": 'Bearer realm="flotte"'})
    return await handler(request)


@web.middleware
async def ready_middleware(request: web.Request, handler: fleet_v1.Handler
                           ) -> web.StreamResponse:
    ctx = request.app[CONTEXT]
    if not ctx.ready:
        raise HttpError(503, f"{UNAVAILABLE_MESSAGE}: {ctx.not_ready_reason}")
    if ctx.registry.closed:
        raise HttpError(503, f"{UNAVAILABLE_MESSAGE}: the registry connection is closed")
    return await handler(request)


async def _server_header(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["Server"] = request.app[CONTEXT].server_header


def make_app(registry: Registry, *, keys: Keys | None = None, token: str | None = None,
             no_auth: bool = False, token_limit: int = DEFAULT_TOKEN_LIMIT,
             journal: JournalSource | None = None,
             server_header: str = DEFAULT_SERVER_HEADER, heartbeat: float = 15.0
             ) -> web.Application:
    """The API as an aiohttp application; serve it with :func:`flotte.api.serve`.

    ``token`` is required from TCP clients unless ``no_auth``; the unix
    socket never needs it.  ``journal`` (or ``api_context(app).journal``
    later) serves ``/v1/units/<name>/journal``.  ``token_limit`` is fleet's
    page size (``token_limit`` in fleet.conf).
    """
    if not 1 <= token_limit <= 0xFFFF:
        raise ValueError(f"token_limit {token_limit} must be between 1 and 65535")
    app = web.Application(middlewares=[errors_middleware, auth_middleware, ready_middleware],
                          client_max_size=MAX_BODY)
    app[CONTEXT] = ApiContext(registry=registry, keys=keys or Keys(), token=token,
                              no_auth=no_auth, token_limit=token_limit,
                              server_header=server_header, journal=journal,
                              heartbeat=heartbeat)
    app.on_response_prepare.append(_server_header)
    fleet_v1.add_routes(app)
    flotte_v1.add_routes(app)
    kv.add_routes(app)
    return app


__all__ = ["ApiContext", "error_response", "make_app"]
