"""The fleetctl verbs as click commands: flags in, one call into lifecycle/views, exit code out.

Everything here is argument plumbing; the behaviour lives in
:mod:`flotte.cli.lifecycle` (state-changing verbs), :mod:`flotte.cli.views`
(read-only verbs) and the pure helpers they use.  docs/cli.md describes every
verb, flag and exit code.

Exit codes: 0 success, 1 failure (including an API that cannot be reached),
2 usage error (click's; fleetctl exited 0 on those).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from flotte import __version__
from flotte.cli import tables as T
from flotte.cli import views as V
from flotte.cli.completion import (
    SHELLS,
    complete_files_and_units,
    complete_local_files,
    complete_units,
    completion_script,
)
from flotte.cli.connection import api_options, run_api
from flotte.cli.lifecycle import Flags, Lifecycle

F = TypeVar("F", bound=Callable[..., Any])

UNIT_HELP_EPILOG = ("UNIT is a unit file path (instances/apache@8082.service), a unit name "
                    "(hello means hello.service), or an instance of a template.")


def block_options(f: F) -> F:
    f = click.option("--block-attempts", type=click.IntRange(min=0), default=0,
                     show_default=True, metavar="N",
                     help="Give up waiting after N attempts of 2 s each (0: no limit).")(f)
    f = click.option("--no-block", is_flag=True,
                     help="Do not wait for the units to reach the state.")(f)
    return f


def replace_option(f: F) -> F:
    return click.option("--replace", is_flag=True,
                        help="Replace units in the registry that differ from the local "
                             "files.")(f)


def list_options(f: F) -> F:
    f = click.option("--output", "-o", type=click.Choice(["table", "json"]), default="table",
                     show_default=True,
                     help="json: every field, full length, as a JSON array.")(f)
    f = click.option("--no-legend", is_flag=True, help="Do not print the header line.")(f)
    f = click.option("--full", "-l", "--l", "full", is_flag=True,
                     help="Full machine ids and hashes (-l: fleet ≤0.12's spelling).")(f)
    return f


def _columns(listing: T.Listing[Any], fields: str | None) -> list[str]:
    try:
        return listing.parse_fields(fields)
    except T.FieldsError as exc:
        raise click.BadParameter(str(exc), param_hint="'--fields'") from None


def _units_argument(completer: Any = complete_units, required: bool = True
                    ) -> Callable[[F], F]:
    return click.argument("units", nargs=-1, required=required, metavar="UNIT...",
                          shell_complete=completer)


# -- state-changing verbs ---------------------------------------------------------------------


@click.command("submit", epilog=UNIT_HELP_EPILOG)
@_units_argument(complete_local_files)
@replace_option
@api_options
@click.pass_context
def submit(ctx: click.Context, units: tuple[str, ...], replace: bool) -> None:
    """Upload units to the cluster without scheduling them (desired state inactive)."""
    run_api(ctx, lambda api, con: Lifecycle(api, con, Flags(replace=replace)).submit(units))


@click.command("load", epilog=UNIT_HELP_EPILOG)
@_units_argument(complete_files_and_units)
@replace_option
@block_options
@api_options
@click.pass_context
def load(ctx: click.Context, units: tuple[str, ...], replace: bool, no_block: bool,
         block_attempts: int) -> None:
    """Submit units if needed and schedule them onto machines, loaded but not started."""
    flags = Flags(replace, no_block, block_attempts)
    run_api(ctx, lambda api, con: Lifecycle(api, con, flags).load(units))


@click.command("start", epilog=UNIT_HELP_EPILOG)
@_units_argument(complete_files_and_units)
@replace_option
@block_options
@api_options
@click.pass_context
def start(ctx: click.Context, units: tuple[str, ...], replace: bool, no_block: bool,
          block_attempts: int) -> None:
    """Submit and load units if needed, then start them; wait until they run.

    A unit no machine can take ends the wait at once with the engine's
    reasons, machine by machine (exit 1).
    """
    flags = Flags(replace, no_block, block_attempts)
    run_api(ctx, lambda api, con: Lifecycle(api, con, flags).start(units))


@click.command("stop")
@_units_argument()
@block_options
@api_options
@click.pass_context
def stop(ctx: click.Context, units: tuple[str, ...], no_block: bool,
         block_attempts: int) -> None:
    """Stop units; they stay loaded on their machines (desired state loaded)."""
    flags = Flags(no_block=no_block, attempts=block_attempts)
    run_api(ctx, lambda api, con: Lifecycle(api, con, flags).stop(units))


@click.command("unload")
@_units_argument()
@block_options
@api_options
@click.pass_context
def unload(ctx: click.Context, units: tuple[str, ...], no_block: bool,
           block_attempts: int) -> None:
    """Stop units and unschedule them from their machines (desired state inactive)."""
    flags = Flags(no_block=no_block, attempts=block_attempts)
    run_api(ctx, lambda api, con: Lifecycle(api, con, flags).unload(units))


@click.command("destroy")
@_units_argument()
@block_options
@api_options
@click.pass_context
def destroy(ctx: click.Context, units: tuple[str, ...], no_block: bool,
            block_attempts: int) -> None:
    """Remove units from the cluster; waits until their machines have stopped them."""
    flags = Flags(no_block=no_block, attempts=block_attempts)
    run_api(ctx, lambda api, con: Lifecycle(api, con, flags).destroy(units))


@click.command("restart")
@_units_argument()
@click.option("--block-attempts", type=click.IntRange(min=0), default=0, show_default=True,
              metavar="N", help="Give up each wait after N attempts of 2 s each (0: no limit).")
@api_options
@click.pass_context
def restart(ctx: click.Context, units: tuple[str, ...], block_attempts: int) -> None:
    """Stop then start units, one after the other (a rolling restart)."""
    flags = Flags(attempts=block_attempts)
    run_api(ctx, lambda api, con: Lifecycle(api, con, flags).restart(units))


# -- listings -------------------------------------------------------------------------------


@click.command("list-units")
@click.option("--fields", default=None, metavar="LIST",
              help="Columns, comma-separated: unit,load,active,sub,machine,hash "
                   "(default unit,machine,active,sub).")
@list_options
@api_options
@click.pass_context
def list_units(ctx: click.Context, fields: str | None, full: bool, no_legend: bool,
               output: str) -> None:
    """List the units' states on the machines running them."""
    columns = _columns(T.UNITS, fields)
    opts = V.ListOptions(fields, full, no_legend, output == "json")
    run_api(ctx, lambda api, con: V.list_units(api, con, opts, columns))


@click.command("list-unit-files")
@click.option("--fields", default=None, metavar="LIST",
              help="Columns, comma-separated: unit,hash,dstate,state,target,global,desc "
                   "(default unit,hash,dstate,state,target).")
@list_options
@api_options
@click.pass_context
def list_unit_files(ctx: click.Context, fields: str | None, full: bool, no_legend: bool,
                    output: str) -> None:
    """List the units in the registry with desired and current states."""
    columns = _columns(T.UNIT_FILES, fields)
    if "tmachine" in columns and output == "table":
        click.echo(T.TMACHINE_WARNING, err=True)
    opts = V.ListOptions(fields, full, no_legend, output == "json")
    run_api(ctx, lambda api, con: V.list_unit_files(api, con, opts, columns))


@click.command("list-machines")
@click.option("--fields", default=None, metavar="LIST",
              help="Columns, comma-separated: machine,ip,metadata (the default).")
@list_options
@api_options
@click.pass_context
def list_machines(ctx: click.Context, fields: str | None, full: bool, no_legend: bool,
                  output: str) -> None:
    """List the machines in the cluster."""
    columns = _columns(T.MACHINES, fields)
    opts = V.ListOptions(fields, full, no_legend, output == "json")
    run_api(ctx, lambda api, con: V.list_machines(api, con, opts, columns))


# -- inspection -------------------------------------------------------------------------------


@click.command("status")
@_units_argument()
@click.option("--lines", "-n", type=click.IntRange(min=0), default=10, show_default=True,
              help="Journal lines to show.")
@api_options
@click.pass_context
def status(ctx: click.Context, units: tuple[str, ...], lines: int) -> None:
    """Show units' state, machine, dependencies and last journal lines (or why they are
    not placed), like systemctl status."""
    run_api(ctx, lambda api, con: V.status(api, con, units, lines))


@click.command("journal")
@click.argument("unit", shell_complete=complete_units)
@click.option("--lines", "-n", type=click.IntRange(min=0), default=10, show_default=True,
              help="Number of recent lines to show.")
@click.option("--follow", "-f", "--f", "follow", is_flag=True,
              help="Keep printing new lines (Ctrl-C ends).")
@api_options
@click.pass_context
def journal(ctx: click.Context, unit: str, lines: int, follow: bool) -> None:
    """Print a unit's journal from the machine running it."""
    run_api(ctx, lambda api, con: V.journal(api, con, unit, lines, follow), interrupt_code=0)


@click.command("cat")
@click.argument("unit", shell_complete=complete_units)
@api_options
@click.pass_context
def cat(ctx: click.Context, unit: str) -> None:
    """Print a unit file as stored in the registry."""
    run_api(ctx, lambda api, con: V.cat(api, con, unit))


# -- version, completion ----------------------------------------------------------------------


def program_name(ctx: click.Context) -> str:
    """``fleetctl`` when invoked under that name, ``flotte`` otherwise."""
    return "fleetctl" if ctx.find_root().info_name == "fleetctl" else "flotte"


def version_line(ctx: click.Context) -> str:
    return f"{program_name(ctx)} version {__version__}"


@click.command("version")
@click.pass_context
def version(ctx: click.Context) -> None:
    """Print the version (flotte's, also when run as fleetctl)."""
    click.echo(version_line(ctx))


@click.command("completion")
@click.argument("shell", type=click.Choice(SHELLS))
@click.pass_context
def completion(ctx: click.Context, shell: str) -> None:
    """Print the shell completion script: eval "$(flotte completion bash)"."""
    root = ctx.find_root()
    click.echo(completion_script(root.command, program_name(ctx), shell))


COMMANDS: tuple[click.Command, ...] = (
    cat, completion, destroy, journal, list_machines, list_unit_files, list_units, load,
    restart, start, status, stop, submit, unload, version,
)

__all__ = ["COMMANDS", "program_name", "version_line"]
