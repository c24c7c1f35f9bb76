"""Entry point shared by ``flotte`` and ``fleetctl`` (one CLI, two names)."""

from __future__ import annotations

import click

from flotte import __version__
from flotte.cli.verify import verify


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="flotte")
def cli() -> None:
    """flotte runs systemd unit files across a cluster of machines, as fleet did."""


cli.add_command(verify)


def main() -> None:
    cli(prog_name="flotte")
