"""The HTTP API: fleet's ``/fleet/v1`` routes, flotte's ``/v1`` routes, and a client.

Server side::

    app = make_app(registry, token=load_or_create_token(state_dir))
    served = await serve(app, ["unix:///run/flotte/api.sock", "http://0.0.0.0:49153"])
    ...
    await served.close()

Client side: :class:`flotte.api.client.Client`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flotte.api.app import make_app
    from flotte.api.client import ApiError, Client
    from flotte.api.context import ApiContext, api_context
    from flotte.api.journal import JournalSource
    from flotte.api.server import Served, load_or_create_token, serve

# Loaded on first use (PEP 562): ``from flotte.api.client import Client`` in the
# command line must not import aiohttp's whole server side (~150 ms per command).
_WHERE = {
    "make_app": "flotte.api.app", "ApiError": "flotte.api.client", "Client": "flotte.api.client",
    "ApiContext": "flotte.api.context", "api_context": "flotte.api.context",
    "JournalSource": "flotte.api.journal", "Served": "flotte.api.server",
    "load_or_create_token": "flotte.api.server", "serve": "flotte.api.server",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'flotte.api' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)

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
