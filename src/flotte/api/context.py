"""What every handler needs: the registry, the key layout and the server's settings.

One mutable :class:`ApiContext` per application, stored under
:data:`CONTEXT`.  It is mutable on purpose: the daemon builds the app
before the agent exists, then plugs in the journal source, and flips
``ready`` off while its health monitor restarts the registry connection
(fleet answered 503 to everything meanwhile, fleet.md §5.1).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web

from flotte import __version__
from flotte.api.journal import JournalSource
from flotte.api.pagination import DEFAULT_TOKEN_LIMIT
from flotte.api.store import Store
from flotte.engine.keyspace import Keys
from flotte.registry import Registry

#: fleet's version whose API we speak; ``Server: fleetd/<version>`` (fleet.md §5.1).
FLEET_API_VERSION = "1.0.0"
DEFAULT_SERVER_HEADER = f"fleetd/{FLEET_API_VERSION} flotte/{__version__}"


@dataclass(slots=True)
class ApiContext:
    """Settings and collaborators of one API application."""

    registry: Registry
    keys: Keys = field(default_factory=Keys)
    #: Bearer token required on TCP listeners (``None``: TCP refused unless ``no_auth``).
    token: str | None = None
    no_auth: bool = False
    token_limit: int = DEFAULT_TOKEN_LIMIT
    server_header: str = DEFAULT_SERVER_HEADER
    journal: JournalSource | None = None
    #: ``False`` makes every request answer 503 with ``not_ready_reason``.
    ready: bool = True
    not_ready_reason: str = "the server is starting"
    #: Seconds between keep-alive lines on ``/v1/events`` (lets clients and
    #: proxies tell an idle stream from a dead one).
    heartbeat: float = 15.0

    @property
    def store(self) -> Store:
        return Store(self.registry, self.keys)


CONTEXT: web.AppKey[ApiContext] = web.AppKey("flotte_api_context", ApiContext)


def api_context(app: web.Application) -> ApiContext:
    """The :class:`ApiContext` of an app made by :func:`flotte.api.make_app`."""
    return app[CONTEXT]


def request_context(request: web.Request) -> ApiContext:
    return request.app[CONTEXT]
