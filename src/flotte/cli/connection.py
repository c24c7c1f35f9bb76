"""Reaching the API from the CLI: endpoint, token, and running one verb against it.

Endpoint, first found: ``--endpoint`` (given before or after the verb, as
fleetctl's persistent flags could be), ``$FLOTTE_ENDPOINT``,
``$FLEETCTL_ENDPOINT``, then ``unix://<state dir>/flotte.sock``
(:func:`flotte.paths.default_endpoint`).  As in fleetctl, a comma-separated
list uses its first entry, and ``file://`` means ``unix://``.

Token (TCP only; the unix socket needs none): ``--token``, ``$FLOTTE_TOKEN``,
else ``<state dir>/api-token`` when this user can read it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TypeVar
from urllib.parse import urlsplit

import click

from flotte.api.client import ApiError, Client
from flotte.cli.console import Console
from flotte.paths import default_endpoint, token_path

DEFAULT_TIMEOUT = 30.0
F = TypeVar("F", bound=Callable[..., Any])


class EndpointError(ValueError):
    """An endpoint that is not ``unix:///abs/path.sock`` or ``http(s)://host[:port]``."""


@dataclass(slots=True)
class CliState:
    """Global options, shared by the group and the verbs (``ctx.obj``)."""

    endpoint: str | None = None
    token: str | None = None
    timeout: float = DEFAULT_TIMEOUT


def normalize_endpoint(raw: str) -> str:
    """The endpoint the client should dial, or :class:`EndpointError` saying how to fix it."""
    first = raw.split(",", 1)[0].strip()
    if not first:
        raise EndpointError("the endpoint is empty; give unix:///path/to/flotte.sock or "
                            "http(s)://host:port")
    if first.startswith("file://"):
        first = "unix://" + first[len("file://"):]
    if first.startswith("unix://"):
        path = first[len("unix://"):]
        if not path:
            raise EndpointError(f"endpoint {raw!r} names no socket file; write "
                                "unix:///path/to/flotte.sock")
        if not path.startswith("/"):
            raise EndpointError(f"endpoint {raw!r}: the socket path must be absolute (three "
                                f"slashes): unix:///{path}")
        return first
    if first.startswith(("http://", "https://")):
        parts = urlsplit(first)
        try:
            parts.port  # noqa: B018 - validates the port
        except ValueError as exc:
            raise EndpointError(f"endpoint {raw!r}: {exc}") from None
        if not parts.hostname:
            raise EndpointError(f"endpoint {raw!r} names no host; write http://host:port")
        return first.rstrip("/")
    raise EndpointError(f"endpoint {raw!r} must be unix:///path/to/flotte.sock or "
                        "http(s)://host:port")


def find_token(endpoint: str, explicit: str | None, token_file: Path | None = None
               ) -> str | None:
    """The bearer token to send: ``explicit``, else the local token file (TCP only)."""
    if explicit:
        return explicit.strip()
    if endpoint.startswith("unix://"):
        return None
    try:
        text = (token_file or token_path()).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text or None


def error_text(exc: ApiError, endpoint: str) -> str:
    """An API error as the CLI prints it, with what to do about the common ones."""
    text = f"Error: {exc.message}"
    if exc.status == 0:
        text += ("\nIs flotte running there?  Start it with `flotte up`, or point --endpoint "
                 "(or FLEETCTL_ENDPOINT) at a running flotte API.")
    elif exc.status == 401:
        text += (f"\nThe API at {endpoint} needs a token: pass --token or set FLOTTE_TOKEN "
                 "(the server keeps it in the api-token file of its state directory).")
    return text


def cli_state(ctx: click.Context) -> CliState:
    state = ctx.find_object(CliState)
    if state is None:
        state = CliState()
        ctx.obj = state
    return state


def _override(field: str) -> Callable[[click.Context, click.Parameter, Any], None]:
    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> None:
        if value is not None:
            setattr(cli_state(ctx), field, value)
    return callback


def api_options(f: F) -> F:
    """``--endpoint``/``--token`` after the verb too (fleetctl's flags were persistent)."""
    f = click.option("--token", default=None, expose_value=False, callback=_override("token"),
                     help="API token for http(s) endpoints (overrides the global one).")(f)
    f = click.option("--endpoint", default=None, expose_value=False,
                     callback=_override("endpoint"), metavar="URL",
                     help="API endpoint (overrides the global one).")(f)
    return f


def connection(ctx: click.Context) -> tuple[str, str | None, float]:
    """``(endpoint, token, timeout)`` for this run; a bad endpoint is a usage error (exit 2)."""
    state = cli_state(ctx)
    try:
        endpoint = normalize_endpoint(state.endpoint or default_endpoint())
    except EndpointError as exc:
        raise click.UsageError(str(exc), ctx) from None
    return endpoint, find_token(endpoint, state.token), state.timeout


Action = Callable[[Client, Console], Awaitable[int]]


def run_api(ctx: click.Context, action: Action, *, interrupt_code: int = 130) -> NoReturn:
    """Run ``action`` with a connected client and exit with its code.

    API errors end the command with exit 1 and a message (never a traceback);
    Ctrl-C exits with ``interrupt_code``.
    """
    endpoint, token, timeout = connection(ctx)
    console = Console()

    async def main() -> int:
        async with Client(endpoint, token, timeout=timeout) as api:
            return await action(api, console)

    try:
        code = asyncio.run(main())
    except ApiError as exc:
        console.err(error_text(exc, endpoint))
        code = 1
    except KeyboardInterrupt:
        console.clear()
        code = interrupt_code
    ctx.exit(code)


__all__ = ["CliState", "EndpointError", "api_options", "cli_state", "connection",
           "error_text", "find_token", "normalize_endpoint", "run_api"]
