"""``flotte up`` and ``flotte agent``: the daemon verbs.

Configuration comes from, highest first: command-line flags, environment
variables ``FLOTTE_<FLAG>`` (``FLOTTE_REGISTRY``, ``FLOTTE_STATE_DIR``,
``FLOTTE_METADATA`` …), the ``[daemon]`` table of a TOML file given with
``--config`` (keys named like the flags, with ``_`` for ``-``), then defaults.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import tomllib
from pathlib import Path
from typing import Any

import click

from flotte.agent.identity import IdentityError
from flotte.daemon import DaemonConfig, DaemonError, run
from flotte.engine.rolling import max_unavailable_count
from flotte.paths import default_state_dir

_FLAGS = ("state_dir", "registry", "listen", "no_auth", "machine_id", "hostname", "public_ip",
          "metadata", "ttl", "takeover_grace", "fence_after", "max_unavailable", "no_engine",
          "log_level")


def _from_file(path: str | None) -> dict[str, Any]:
    if not path:
        return {}
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise click.BadParameter(f"{path}: {exc}", param_hint="--config") from None
    table = data.get("daemon", data)
    unknown = set(table) - set(_FLAGS)
    if unknown:
        raise click.BadParameter(f"{path}: unknown key(s) {', '.join(sorted(unknown))}; "
                                 f"known: {', '.join(_FLAGS)}", param_hint="--config")
    return dict(table)


def _merge(ctx: click.Context, given: dict[str, Any]) -> dict[str, Any]:
    """Flags and environment (click) beat the file; the file beats defaults."""
    merged = _from_file(given.get("config"))
    for name in _FLAGS:
        source = ctx.get_parameter_source(name)
        if source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT"):
            merged[name] = given[name]
        else:
            merged.setdefault(name, given[name])
    return merged


def _check_max_unavailable(ctx: click.Context, param: click.Parameter, value: str) -> str:
    try:
        max_unavailable_count(int(value) if value.isdigit() else value, 100)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    return value


def _options(f: Any) -> Any:
    opts = [
        click.option("--config", type=click.Path(dir_okay=False), envvar="FLOTTE_CONFIG",
                     help="TOML file with a [daemon] table (flags beat it)."),
        click.option("--state-dir", envvar="FLOTTE_STATE_DIR", default=None,
                     help="Where flotte keeps its state (default: /var/lib/flotte as root, "
                          "else ~/.local/state/flotte)."),
        click.option("--listen", multiple=True, envvar="FLOTTE_LISTEN",
                     help="unix:///path.sock or http://host:port; repeatable "
                          "(default: unix://<state-dir>/flotte.sock)."),
        click.option("--no-auth", is_flag=True, envvar="FLOTTE_NO_AUTH",
                     help="Serve TCP listeners without a bearer token (tests only)."),
        click.option("--machine-id", envvar="FLOTTE_MACHINE_ID",
                     help="32 hex characters (default: <state-dir>/machine-id, "
                          "else /etc/machine-id)."),
        click.option("--hostname", envvar="FLOTTE_HOSTNAME"),
        click.option("--public-ip", envvar="FLOTTE_PUBLIC_IP"),
        click.option("--metadata", default="", envvar="FLOTTE_METADATA",
                     help="k=v,k=v for MachineMetadata= constraints."),
        click.option("--ttl", type=float, default=10.0, envvar="FLOTTE_TTL", show_default=True,
                     help="Seconds before a silent machine's units move elsewhere."),
        click.option("--takeover-grace", type=float, default=0.0, show_default=True,
                     envvar="FLOTTE_TAKEOVER_GRACE",
                     help="After a lost lease, keep units the engine moved elsewhere this "
                          "many seconds before stopping them."),
        click.option("--fence-after", type=float, default=None, envvar="FLOTTE_FENCE_AFTER",
                     help="Stop local units after this many seconds without the registry "
                          "(default: never; units keep running through outages)."),
        click.option("--max-unavailable", default="1", envvar="FLOTTE_MAX_UNAVAILABLE",
                     show_default=True, callback=_check_max_unavailable,
                     help="Copies of a global unit (or instances of a template) that may be "
                          "down at once while a changed unit rolls out: a number or N%."),
        click.option("--no-engine", is_flag=True, envvar="FLOTTE_NO_ENGINE",
                     help="Never run for engine leader on this machine."),
        click.option("--log-level", default="info", envvar="FLOTTE_LOG_LEVEL",
                     type=click.Choice(["debug", "info", "warning", "error"]),
                     show_default=True),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def _start(settings: dict[str, Any], registry: str) -> None:
    logging.basicConfig(level=getattr(logging, str(settings["log_level"]).upper()),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    state = Path(settings["state_dir"] or default_state_dir())
    cfg = DaemonConfig(
        state_dir=state, registry=registry.replace("<state-dir>", str(state)),
        listen=list(settings["listen"] or []), no_auth=bool(settings["no_auth"]),
        machine_id=settings["machine_id"], hostname=settings["hostname"],
        public_ip=settings["public_ip"], metadata=settings["metadata"] or "",
        ttl=float(settings["ttl"]), takeover_grace=float(settings["takeover_grace"]),
        fence_after=settings["fence_after"], engine=not settings["no_engine"],
        max_unavailable=str(settings["max_unavailable"]))
    try:
        code = asyncio.run(run(cfg))
    except (DaemonError, IdentityError, ValueError, OSError) as exc:
        click.echo(f"flotte: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        code = 0
    sys.exit(code)


@click.command("up")
@_options
@click.option("--registry", default=None, envvar="FLOTTE_REGISTRY",
              help="Registry URL (default: sqlite:///<state-dir>/registry.db).")
@click.pass_context
def up(ctx: click.Context, /, **given: Any) -> None:
    """Run a one-machine cluster: embedded registry, engine, agent and API."""
    settings = _merge(ctx, given)
    _start(settings, settings["registry"] or "sqlite:///<state-dir>/registry.db")


@click.command("agent")
@_options
@click.option("--registry", envvar="FLOTTE_REGISTRY", default=None,
              help="etcd://host:2379[,host:2379…] (or any registry URL).")
@click.pass_context
def agent(ctx: click.Context, /, **given: Any) -> None:
    """Run this machine as a member of a cluster whose registry is --registry."""
    settings = _merge(ctx, given)
    if not settings["registry"]:
        raise click.UsageError("flotte agent needs --registry (for example "
                               "--registry etcd://10.0.0.1:2379,10.0.0.2:2379)")
    _start(settings, settings["registry"])

