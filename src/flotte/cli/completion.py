"""Shell completion (bash, zsh, fish) through click's own mechanism.

Enable it with one line in the shell's start-up file (docs/cli.md)::

    eval "$(flotte completion bash)"      # ~/.bashrc   (or: fleetctl completion bash)
    eval "$(flotte completion zsh)"       # ~/.zshrc

which is click's ``_FLOTTE_COMPLETE=bash_source flotte`` script.  Verbs that
take unit names complete them from the API (same ``--endpoint``/token rules
as the verb itself, 2 s at most); when the API cannot be reached the
completion is silently empty, never an error on the terminal.  ``submit``,
``load`` and ``start`` also complete local file names.
"""

from __future__ import annotations

import asyncio

import click
from click.shell_completion import CompletionItem, get_completion_class

from flotte.api.client import Client
from flotte.cli.connection import CliState, find_token, normalize_endpoint
from flotte.paths import default_endpoint

COMPLETION_TIMEOUT = 2.0
SHELLS = ("bash", "zsh", "fish")


def _endpoint_and_token(ctx: click.Context) -> tuple[str, str | None]:
    state = ctx.find_object(CliState)
    root = ctx.find_root().params
    raw = (state.endpoint if state else None) or root.get("endpoint") or default_endpoint()
    endpoint = normalize_endpoint(str(raw))
    token = (state.token if state else None) or root.get("token")
    return endpoint, find_token(endpoint, str(token) if token else None)


def registry_unit_names(ctx: click.Context, timeout: float = COMPLETION_TIMEOUT) -> list[str]:
    """Unit names in the registry, or ``[]`` if anything goes wrong (completion must not fail)."""
    try:
        endpoint, token = _endpoint_and_token(ctx)

        async def fetch() -> list[str]:
            async with Client(endpoint, token, timeout=timeout) as api:
                return [u.name for u in await api.list_units()]

        return asyncio.run(asyncio.wait_for(fetch(), timeout))
    except Exception:  # any failure means "no suggestions"
        return []


def complete_units(ctx: click.Context, param: click.Parameter, incomplete: str
                   ) -> list[CompletionItem]:
    return [CompletionItem(n) for n in sorted(registry_unit_names(ctx))
            if n.startswith(incomplete)]


def complete_files_and_units(ctx: click.Context, param: click.Parameter, incomplete: str
                             ) -> list[CompletionItem]:
    """Local unit files (the shell's own file completion) and registry units."""
    items = [CompletionItem(incomplete, type="file")]
    if "/" not in incomplete:
        items += complete_units(ctx, param, incomplete)
    return items


def complete_local_files(ctx: click.Context, param: click.Parameter, incomplete: str
                         ) -> list[CompletionItem]:
    return [CompletionItem(incomplete, type="file")]


def completion_script(cli: click.Command, prog_name: str, shell: str) -> str:
    """The script ``eval "$(PROG completion SHELL)"`` installs (click's own)."""
    cls = get_completion_class(shell)
    if cls is None:
        raise click.BadParameter(f"no completion for {shell!r}; use one of "
                                 f"{', '.join(SHELLS)}", param_hint="SHELL")
    complete_var = f"_{prog_name}_COMPLETE".replace("-", "_").upper()
    return cls(cli, {}, prog_name, complete_var).source()


__all__ = ["COMPLETION_TIMEOUT", "SHELLS", "complete_files_and_units", "complete_local_files",
           "complete_units", "completion_script", "registry_unit_names"]
