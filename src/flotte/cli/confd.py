"""``flotte confd``: confd 0.16's command line on flotte's registry.

confd is a Go program, so its users type Go flags: ``-backend etcdv3 -node
http://10.0.0.1:2379 -watch``, ``-interval=60``, ``-watch=false``.  Every
confd flag is declared with its single-dash spelling *and* a ``--`` one, and
``-flag=true|false`` for booleans is rewritten to ``--flag``/``--no-flag``
before click parses, so unit files and Dockerfiles written for confd run
unchanged.

Keys come from the flotte API by default (the global ``--endpoint``, else
``unix://<state dir>/flotte.sock``), or from etcd with ``-backend etcdv3``
(also ``etcd``; flotte speaks etcd's v3 API only).  ``-node`` without
``-backend`` means etcd, as it did for the seed's ``confd -node=http://…:4001``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
import sys
from collections.abc import Sequence
from typing import Any, Final

import click
from click.core import ParameterSource

from flotte import __version__
from flotte.api.client import Client
from flotte.cli.connection import (
    EndpointError,
    api_options,
    cli_state,
    connection,
    find_token,
    normalize_endpoint,
)
from flotte.discovery.confd import logfmt
from flotte.discovery.confd.backends import ApiBackend, Backend, RegistryBackend
from flotte.discovery.confd.runner import RETRY_DELAYS, Confd
from flotte.discovery.confd.settings import (
    DEFAULT_CONFIG_FILE,
    LOG_LEVELS,
    BackendSpec,
    ConfigError,
    Settings,
    merge,
    parse_debounce,
    read_config_file,
    resolve_backend,
    validate,
)
from flotte.registry import RegistryError, connect

log = logging.getLogger("flotte.confd")

#: Boolean flags, for Go's ``-flag=true|false`` spelling.
BOOL_FLAGS: Final = ("watch", "onetime", "noop", "sync-only", "keep-stage-file", "basic-auth",
                     "prefix-join", "version")
_GO_TRUE: Final = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_GO_FALSE: Final = frozenset({"0", "f", "F", "FALSE", "false", "False"})
_BOOL_ASSIGN: Final = re.compile(r"^--?(" + "|".join(re.escape(f) for f in BOOL_FLAGS)
                                 + r")=(.*)$")

#: Settings fields a flag (or its environment variable) can set.
_FLAG_FIELDS: Final = ("backend", "nodes", "prefix", "prefix_join", "confdir", "config_file",
                       "interval", "watch", "onetime", "noop", "sync_only", "keep_stage_file",
                       "log_level", "poll", "cmd_timeout", "username", "password",
                       "client_cert", "client_key", "client_cakeys")


def go_flags(args: Sequence[str]) -> list[str]:
    """Rewrite Go's ``-bool=value`` into click's ``--bool``/``--no-bool``; stop at ``--``.

    Raises :class:`click.UsageError` for a value Go's ``strconv.ParseBool`` rejects.
    """
    out: list[str] = []
    for i, arg in enumerate(args):
        if arg == "--":
            out += args[i:]
            break
        m = _BOOL_ASSIGN.match(arg)
        if m is None:
            out.append(arg)
            continue
        name, value = m.groups()
        if value in _GO_TRUE:
            out.append(f"--{name}")
        elif value in _GO_FALSE:
            out.append(f"--no-{name}")
        else:
            raise click.UsageError(f"invalid boolean value {value!r} for -{name}: use true or "
                                   "false")
    return out


class GoFlagsCommand(click.Command):
    """A click command that also understands Go's ``-bool=false``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, go_flags(args))


def _flag(name: str, *more: str) -> tuple[str, ...]:
    return (f"-{name}", f"--{name}", *more)


def _bool(name: str) -> tuple[str, str]:
    return (f"-{name}", f"--{name}/--no-{name}")


def _debounce(ctx: click.Context, param: click.Parameter, value: str | None
              ) -> tuple[float, float] | None:
    if value is None:
        return None
    try:
        return parse_debounce(value)
    except ConfigError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command(cls=GoFlagsCommand,
               context_settings={"help_option_names": ["-h", "--help", "-help"]})
@click.option(*_flag("backend"), metavar="NAME",
              help="flotte (the flotte API; the default without -node) or etcdv3 (also "
                   "spelled etcd; the default with -node).")
@click.option(*_flag("node"), "nodes", multiple=True, metavar="URL",
              help="etcd endpoint http(s)://host:port, repeatable (or the API endpoint for "
                   "-backend flotte) [default etcd: $ETCDCTL_ENDPOINTS, else "
                   "http://127.0.0.1:2379].")
@click.option(*_flag("prefix"), metavar="PREFIX",
              help="Key prefix; when set it replaces every resource's prefix (confd 0.12+).")
@click.option(*_bool("prefix-join"), "prefix_join", default=False,
              help="Join -prefix in front of each resource's prefix instead (confd <= 0.11).")
@click.option(*_flag("confdir"), metavar="DIR",
              help="Directory with conf.d/ and templates/ [default /etc/confd].")
@click.option(*_flag("config-file"), "config_file", metavar="FILE",
              help=f"confd.toml with settings; flags beat it [default {DEFAULT_CONFIG_FILE}].")
@click.option(*_flag("interval"), type=click.FloatRange(min=0, min_open=True),
              metavar="SECONDS",
              help="Seconds between passes in interval mode [default 600]; with -watch, an "
                   "extra full pass at this period.")
@click.option(*_bool("watch"), default=False, help="Re-render when keys change.")
@click.option(*_bool("onetime"), default=False,
              help="Process every resource once and exit (1 if any failed).")
@click.option(*_bool("noop"), default=False,
              help="Render and run check_cmd, log what would change; never write or reload.")
@click.option(*_bool("sync-only"), "sync_only", default=False,
              help="Write files, never run check_cmd or reload_cmd.")
@click.option(*_bool("keep-stage-file"), "keep_stage_file", default=False,
              help="Keep stage files (.<dest><random>) of failed checks for inspection.")
@click.option(*_flag("log-level"), "log_level", metavar="LEVEL",
              help="panic, fatal, error, warn, info or debug [default info].")
@click.option(*_flag("username"), help="etcd user (with -password).")
@click.option(*_flag("password"), help="etcd password.")
@click.option(*_bool("basic-auth"), "basic_auth", default=False, hidden=True,
              help="Accepted for confd compatibility; -username/-password suffice.")
@click.option(*_flag("client-cert"), "client_cert", envvar="CONFD_CLIENT_CERT",
              metavar="FILE", help="Client certificate for etcd TLS [env CONFD_CLIENT_CERT].")
@click.option(*_flag("client-key"), "client_key", envvar="CONFD_CLIENT_KEY", metavar="FILE",
              help="Client key for etcd TLS [env CONFD_CLIENT_KEY].")
@click.option(*_flag("client-ca-keys"), "client_cakeys", envvar="CONFD_CLIENT_CAKEYS",
              metavar="FILE", help="CA certificate for etcd TLS [env CONFD_CLIENT_CAKEYS].")
@click.option("--debounce", callback=_debounce, metavar="MIN[:MAX]",
              help="Watch mode: render once keys were quiet MIN seconds, at most MAX after "
                   "the first change [default 0.1:1].")
@click.option("--poll", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
              help="Watch mode through the flotte API: seconds between reads [default 0.25].")
@click.option("--cmd-timeout", "cmd_timeout", type=click.FloatRange(min=0, min_open=True),
              metavar="SECONDS",
              help="Kill check_cmd/reload_cmd after this long [default 60].")
@click.option(*_bool("version"), default=False, help="Print the version and exit.")
@api_options
@click.pass_context
def confd(ctx: click.Context, /, **opts: Any) -> None:
    """Render config files from keys, confd-style (confd 0.16 flags and confdirs).

    \b
    Examples:
      flotte confd -onetime -confdir /etc/confd
      flotte confd -watch -confdir ./confd
      flotte confd -backend etcdv3 -node http://10.0.0.1:2379 -interval 60
    """
    if opts["version"]:
        click.echo(f"flotte confd {__version__} (confd 0.16.0 compatible)")
        ctx.exit(0)
    settings = _settings(ctx, opts)
    logfmt.setup(LOG_LEVELS[settings.log_level])
    for warning in _file_warnings(ctx):
        log.warning("%s", warning)
    try:
        spec = resolve_backend(settings, os.environ)
    except ConfigError as exc:
        raise click.UsageError(str(exc), ctx) from None
    endpoint, token, timeout = _api_target(ctx, spec)
    try:
        code = asyncio.run(_main(settings, spec, endpoint, token, timeout))
    except KeyboardInterrupt:
        code = 130
    ctx.exit(code)


def _settings(ctx: click.Context, opts: dict[str, Any]) -> Settings:
    """Defaults < confd.toml < environment < flags (see :mod:`flotte.discovery.confd.settings`)."""
    given = {name: opts[name] for name in _FLAG_FIELDS
             if ctx.get_parameter_source(name) in (ParameterSource.COMMANDLINE,
                                                   ParameterSource.ENVIRONMENT)
             and opts[name] is not None}
    if "nodes" in given:
        given["nodes"] = tuple(given["nodes"])
    if opts["debounce"] is not None:
        given["debounce"], given["debounce_max"] = opts["debounce"]
    config_file = given.get("config_file") or DEFAULT_CONFIG_FILE
    try:
        file_values, warnings = read_config_file(config_file,
                                                 required="config_file" in given)
        ctx.meta["flotte.confd.file_warnings"] = warnings
        return validate(merge(Settings(config_file=config_file), file_values, given))
    except ConfigError as exc:
        raise click.UsageError(str(exc), ctx) from None


def _file_warnings(ctx: click.Context) -> list[str]:
    warnings: list[str] = ctx.meta.get("flotte.confd.file_warnings", [])
    return warnings


def _api_target(ctx: click.Context, spec: BackendSpec) -> tuple[str, str | None, float]:
    """Endpoint, token and timeout for the flotte backend (unused for etcd)."""
    if spec.kind != "flotte":
        return "", None, 0.0
    state = cli_state(ctx)
    # The root `flotte` group reads these variables; run on its own (tests, scripts)
    # the command must behave the same.
    if state.endpoint is None:
        state.endpoint = os.environ.get("FLOTTE_ENDPOINT") or \
            os.environ.get("FLEETCTL_ENDPOINT") or None
    if state.token is None:
        state.token = os.environ.get("FLOTTE_TOKEN") or None
    if not spec.url:
        return connection(ctx)
    try:
        endpoint = normalize_endpoint(spec.url)
    except EndpointError as exc:
        raise click.UsageError(f"-node: {exc}", ctx) from None
    return endpoint, find_token(endpoint, state.token), state.timeout


async def _open_backend(settings: Settings, spec: BackendSpec, endpoint: str,
                        token: str | None, timeout: float) -> Backend | None:
    """The backend, or ``None`` when etcd cannot be reached in onetime mode.

    Long-running modes keep trying (with backoff) rather than exit: a unit
    that starts before etcd is up should simply wait for it.
    """
    if spec.kind == "flotte":
        client = Client(endpoint, token, timeout=timeout)
        return ApiBackend(client, poll=settings.poll, own=True)
    attempt = 0
    while True:
        try:
            registry = await connect(spec.url)
        except (RegistryError, OSError) as exc:
            if settings.mode == "onetime":
                log.error("cannot connect to etcd: %s", exc)
                return None
            delay = RETRY_DELAYS[min(attempt, len(RETRY_DELAYS) - 1)]
            log.error("cannot connect to etcd: %s; retrying in %gs", exc, delay)
            attempt += 1
            await asyncio.sleep(delay)
            continue
        return RegistryBackend(registry, own=True)


async def _main(settings: Settings, spec: BackendSpec, endpoint: str, token: str | None,
                timeout: float) -> int:
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    caught: list[str] = []

    def stop(sig: signal.Signals) -> None:
        caught.append(sig.name)
        task.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop, sig)
    confd_run: Confd | None = None
    loop.add_signal_handler(signal.SIGHUP,
                            lambda: confd_run.hup() if confd_run is not None else None)
    backend: Backend | None = None
    try:
        log.info("Starting flotte confd %s (%s mode)", __version__, settings.mode)
        backend = await _open_backend(settings, spec, endpoint, token, timeout)
        if backend is None:
            return 1
        log.info("Backend: %s", backend.description)
        confd_run = Confd(settings, backend)
        return await confd_run.run()
    except asyncio.CancelledError:
        if not caught:
            raise
        log.info("Captured %s. Exiting...", caught[0])
        return 0
    finally:
        if backend is not None:
            with contextlib.suppress(Exception):
                await backend.close()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        sys.stderr.flush()


__all__ = ["BOOL_FLAGS", "GoFlagsCommand", "confd", "go_flags"]
