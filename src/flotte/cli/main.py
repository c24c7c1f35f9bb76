"""Entry point shared by ``flotte`` and ``fleetctl`` (one CLI, two names)."""

from __future__ import annotations

import importlib
import os
import sys

import click

from flotte.cli.connection import DEFAULT_TIMEOUT, CliState
from flotte.cli.fleetctl import COMMANDS, version_line

#: Verbs whose modules are imported only when they run: the daemon, confd and the
#: proxy pull in the supervisor, the template engine and aiohttp's server, which a
#: ``fleetctl list-units`` should not pay for on every call.
LAZY = {
    "verify": "flotte.cli.verify:verify",
    "up": "flotte.cli.daemon:up",
    "agent": "flotte.cli.daemon:agent",
    "kv": "flotte.cli.kv:kv",
    "announce": "flotte.cli.announce:announce",
    "proxy": "flotte.cli.proxy:proxy",
    "confd": "flotte.cli.confd:confd",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *LAZY})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = LAZY.get(cmd_name)
        if target is None:
            return super().get_command(ctx, cmd_name)
        module, attr = target.split(":")
        command = getattr(importlib.import_module(module), attr)
        assert isinstance(command, click.Command)
        return command


def _print_version(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(version_line(ctx))
        ctx.exit(0)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--version", "-v", is_flag=True, expose_value=False, is_eager=True,
              callback=_print_version, help="Print the version and exit.")
@click.option("--endpoint", envvar=["FLOTTE_ENDPOINT", "FLEETCTL_ENDPOINT"], default=None,
              metavar="URL",
              help="API endpoint: unix:///path.sock or http(s)://host:port "
                   "[env FLOTTE_ENDPOINT, FLEETCTL_ENDPOINT; default "
                   "unix://<state dir>/flotte.sock].")
@click.option("--token", envvar="FLOTTE_TOKEN", default=None,
              help="API token for http(s) endpoints [env FLOTTE_TOKEN; default: the "
                   "api-token file of the state directory, if readable].")
@click.option("--request-timeout", type=click.FloatRange(min=0, min_open=True),
              default=DEFAULT_TIMEOUT, show_default=True, metavar="SECONDS",
              help="Give up on an API request after this long.")
@click.option("--driver", default="API", hidden=True,
              help="fleetctl's driver; only API exists (any case).")
@click.pass_context
def cli(ctx: click.Context, endpoint: str | None, token: str | None, request_timeout: float,
        driver: str) -> None:
    """flotte runs systemd unit files across a cluster of machines, as fleet did."""
    if driver.lower() != "api":
        raise click.BadParameter(f"{driver!r}: flotte talks to the cluster through its HTTP "
                                 "API only (--driver=API); the etcd driver does not exist",
                                 param_hint="'--driver'")
    ctx.obj = CliState(endpoint, token, request_timeout)


for _command in COMMANDS:
    cli.add_command(_command)


def main() -> None:
    invoked = os.path.basename(sys.argv[0]) if sys.argv else ""
    cli(prog_name="fleetctl" if invoked == "fleetctl" else "flotte")
