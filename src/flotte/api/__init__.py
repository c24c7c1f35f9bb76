"""The HTTP API: fleet's ``/fleet/v1`` routes, flotte's ``/v1`` routes, and a client.

Server side::

    app = make_app(registry, token=load_or_create_token(state_dir))
    served = await serve(app, ["unix:///run/flotte/api.sock", "http://0.0.0.0:49153"])
    ...
    await served.close()

Client side: :class:`flotte.api.client.Client`.
"""

from flotte.api.app import make_app
from flotte.api.client import ApiError, Client
from flotte.api.context import ApiContext, api_context
from flotte.api.journal import JournalSource
from flotte.api.server import Served, load_or_create_token, serve

__all__ = [
    "ApiContext",
    "ApiError",
    "Client",
    "JournalSource",
    "Served",
    "api_context",
    "load_or_create_token",
    "make_app",
    "serve",
]
