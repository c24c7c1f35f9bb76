"""``flotte kv``: etcdctl v2's key verbs for service-discovery keys.

The seed's sidekicks and ExecStop lines are ``etcdctl set … --ttl 30`` and
``etcdctl rm …``, and people debug with ``etcdctl ls /services/apache/``; so
the verbs, options, output and exit codes are etcdctl v2's (see
docs/discovery.md): ``get``, ``set``, ``mk``, ``update``, ``rm``, ``ls``,
``mkdir``, ``watch``, plus ``export``/``import`` for moving a subtree.

Where the keys are: through the flotte API (``--endpoint``, default
``unix://<state dir>/flotte.sock``; ``--token``/``$FLOTTE_TOKEN`` for TCP), or
straight on a registry with ``--registry etcd://host:port`` (no daemon
needed).  Both go through :mod:`flotte.discovery.kv`, so they behave alike.

Exit codes (etcdctl v2): 0 ok, 1 bad arguments (and ``get`` of a
directory), 2 API/registry unreachable, 3 token refused, 4 the store
refused (``100: Key not found``, ``101: Compare failed``, …).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

import click

from flotte.api.client import KVNode
from flotte.cli.connection import api_options, cli_state, connection
from flotte.discovery.kv import (
    EXIT_BAD_ARGS,
    EXIT_SERVER_ERROR,
    KEY_NOT_FOUND,
    NODE_EXIST,
    ApiKV,
    Change,
    KVBackend,
    KVError,
    KVFailure,
    RegistryKV,
    Unreachable,
    Written,
    flatten,
    normalize_key,
    under,
)
from flotte.engine.keyspace import Keys

F = TypeVar("F", bound=Callable[..., Any])
_META = "flotte.kv"
OUTPUTS = ("simple", "extended", "json")


@dataclass(slots=True)
class KVOptions:
    """Options of the kv group that its verbs may repeat (``flotte kv get -o json k``)."""

    registry: str | None = None
    output: str = "simple"


def kv_options(ctx: click.Context) -> KVOptions:
    opts = ctx.meta.get(_META)
    if not isinstance(opts, KVOptions):
        opts = KVOptions()
        ctx.meta[_META] = opts
    return opts


def _set_opt(name: str) -> Callable[[click.Context, click.Parameter, Any], None]:
    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> None:
        if value is not None:
            setattr(kv_options(ctx), name, value)
    return callback


def backend_options(f: F) -> F:
    """``--registry`` plus the API's ``--endpoint``/``--token``, usable before or after a verb."""
    f = click.option("--registry", default=None, metavar="URL", expose_value=False,
                     callback=_set_opt("registry"),
                     help="Use this registry directly instead of the flotte API: "
                          "etcd://host:port[,host:port…] (also etcds://, sqlite:///path, "
                          "memory://name).")(f)
    return api_options(f)


def output_option(f: F) -> F:
    return click.option("--output", "-o", type=click.Choice(OUTPUTS), default=None,
                        expose_value=False, callback=_set_opt("output"),
                        help="Output format, as etcdctl's: simple (values, keys), "
                             "extended (with indexes) or json (etcd v2 responses).")(f)


def open_backend(ctx: click.Context, *, poll_interval: float = 0.25) -> KVBackend:
    """The backend the options name: the registry if ``--registry``, else the API."""
    registry = kv_options(ctx).registry
    if registry:
        return RegistryKV(registry)
    # The root `flotte` group reads these variables; a verb run on its own (tests,
    # `python -c 'from flotte.cli.kv import kv; kv()'`) must behave the same.
    state = cli_state(ctx)
    if state.endpoint is None:
        state.endpoint = os.environ.get("FLOTTE_ENDPOINT") or \
            os.environ.get("FLEETCTL_ENDPOINT") or None
    if state.token is None:
        state.token = os.environ.get("FLOTTE_TOKEN") or None
    endpoint, token, timeout = connection(ctx)
    return ApiKV.open(endpoint, token, timeout=timeout, poll_interval=poll_interval)


def failure_text(exc: KVFailure, backend: KVBackend | None = None) -> str:
    """How a failure is printed: etcdctl's ``Error:  100: …`` line, then what to do."""
    lines = [f"Error:  {exc}"]
    if isinstance(exc, KVError) and exc.hint:
        lines.append(exc.hint)
    if isinstance(exc, Unreachable):
        if isinstance(backend, RegistryKV):
            lines.append("Is the registry running and reachable at that address?")
        else:
            lines.append("Is flotte running there?  Start it with `flotte up`, point "
                         "--endpoint at a running flotte API, or use --registry etcd://… "
                         "to talk to etcd directly.")
    return "\n".join(lines)


Action = Callable[[KVBackend], Awaitable[int]]


def run(ctx: click.Context, action: Action, *, interrupt_code: int = 130) -> NoReturn:
    """Run ``action`` on the selected backend and exit with its code (etcdctl's on failure)."""
    backend = open_backend(ctx)

    async def main() -> int:
        try:
            return await action(backend)
        finally:
            await backend.close()

    try:
        code = asyncio.run(main())
    except KVFailure as exc:
        click.echo(failure_text(exc, backend), err=True)
        code = exc.exit_code
    except KeyboardInterrupt:
        code = interrupt_code
    ctx.exit(code)


# -- output ------------------------------------------------------------------------------


def node_json(node: KVNode) -> dict[str, Any]:
    """A node in etcd v2's JSON shape (empty fields left out, as etcd does)."""
    out: dict[str, Any] = {"key": node.key}
    if node.dir:
        out["dir"] = True
    else:
        out["value"] = node.value or ""
    if node.nodes:
        out["nodes"] = [node_json(n) for n in node.nodes]
    if node.ttl:
        out["ttl"] = node.ttl
    if node.modified_index:
        out["modifiedIndex"] = node.modified_index
    if node.created_index:
        out["createdIndex"] = node.created_index
    return out


def print_response(action: str, node: KVNode, prev: KVNode | None, output: str) -> None:
    """etcdctl v2's ``printResponseKey``."""
    if output == "json":
        body: dict[str, Any] = {"action": action, "node": node_json(node)}
        if prev is not None:
            body["prevNode"] = node_json(prev)
        click.echo(json.dumps(body))
    elif output == "extended":
        click.echo(f"Key: {node.key}")
        click.echo(f"Created-Index: {node.created_index}")
        click.echo(f"Modified-Index: {node.modified_index}")
        if prev is not None:
            click.echo(f"PrevNode.Value: {prev.value or ''}")
        click.echo(f"TTL: {node.ttl or 0}")
        if action != "delete":
            click.echo("")
            click.echo(node.value or "")
    elif action != "delete":
        click.echo(node.value or "")


def _print_tree(node: KVNode, slash: bool) -> None:
    click.echo(f"{node.key}/" if node.dir and slash else node.key)
    for child in node.nodes:
        _print_tree(child, slash)


# -- the group -----------------------------------------------------------------------------


class BadArgs(click.UsageError):
    """A usage error that exits 1, as etcdctl's did (click's default is 2, which etcdctl
    used for "cannot connect")."""

    exit_code = EXIT_BAD_ARGS


class KVGroup(click.Group):
    """A group whose verbs' usage errors are :class:`BadArgs`."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BadArgs:
            raise
        except click.UsageError as exc:
            raise BadArgs(exc.format_message(), exc.ctx) from None


def verb(f: F) -> F:
    """The options every verb accepts after its name, like the group's."""
    return output_option(backend_options(f))


@click.group("kv", cls=KVGroup, context_settings={"help_option_names": ["-h", "--help"]})
@verb
def kv() -> None:
    """Read and write service-discovery keys (etcdctl v2 style).

    Keys are paths (/services/apache/10.0.0.1); a directory is every key
    under a prefix.  Keys under /flotte belong to flotte and are read-only
    here.  Exit codes: 0 ok, 1 bad arguments, 2 unreachable, 3 token refused,
    4 key error (100 Key not found, 101 Compare failed, 102 Not a file,
    105 Key already exists, 107 read only, 108 Directory not empty).
    """


def _value_arg(value: str | None) -> str:
    """The value argument, or stdin when it is left out (as etcdctl v2 did)."""
    if value is not None:
        return value
    if sys.stdin is None or sys.stdin.isatty():
        raise click.UsageError("a value is required (as an argument, or on stdin)")
    return sys.stdin.read().rstrip("\n")


@kv.command("get")
@click.argument("key")
@click.option("--sort", is_flag=True, help="Accepted for etcdctl; keys are always sorted.")
@click.option("--quorum", is_flag=True, hidden=True, help="Accepted for etcdctl; reads are "
                                                          "always linearizable.")
@verb
@click.pass_context
def get_cmd(ctx: click.Context, key: str, sort: bool, quorum: bool) -> None:
    """Print the value of KEY."""
    output = kv_options(ctx).output

    async def action(backend: KVBackend) -> int:
        node = await backend.read(key)
        if node is None:
            raise KVError(KEY_NOT_FOUND, normalize_key(key))
        if node.dir:
            click.echo(f"{node.key}: is a directory", err=True)
            return EXIT_BAD_ARGS
        print_response("get", node, None, output)
        return 0

    run(ctx, action)


def _ttl(ttl: int | None) -> int | None:
    return ttl or None


def _set(ctx: click.Context, key: str, value: str | None, ttl: int | None, action_name: str,
         **compare: Any) -> NoReturn:
    output = kv_options(ctx).output
    text = _value_arg(value)

    async def action(backend: KVBackend) -> int:
        written: Written = await backend.set(key, text, ttl=_ttl(ttl), **compare)
        name = "create" if action_name == "set" and written.created else action_name
        print_response(name, written.node, written.prev, output)
        return 0

    run(ctx, action)


TTL = click.option("--ttl", type=click.IntRange(min=0), default=None, metavar="SECONDS",
                   help="Time to live: the key vanishes unless written again (0: none).")


@kv.command("set")
@click.argument("key")
@click.argument("value", required=False)
@TTL
@click.option("--swap-with-value", default=None, metavar="VALUE",
              help="Only set if the current value is VALUE (compare-and-swap).")
@click.option("--swap-with-index", type=click.IntRange(min=1), default=None, metavar="INDEX",
              help="Only set if the key's modified index is INDEX.")
@verb
@click.pass_context
def set_cmd(ctx: click.Context, key: str, value: str | None, ttl: int | None,
            swap_with_value: str | None, swap_with_index: int | None) -> None:
    """Set KEY to VALUE (read from stdin when left out) and print it."""
    compare: dict[str, Any] = {}
    if swap_with_value is not None:
        compare["prev_value"] = swap_with_value
    if swap_with_index is not None:
        compare["prev_index"] = swap_with_index
    _set(ctx, key, value, ttl, "compareAndSwap" if compare else "set", **compare)


@kv.command("mk")
@click.argument("key")
@click.argument("value", required=False)
@TTL
@verb
@click.pass_context
def mk_cmd(ctx: click.Context, key: str, value: str | None, ttl: int | None) -> None:
    """Create KEY with VALUE; fail (105: Key already exists) if it exists."""
    _set(ctx, key, value, ttl, "create", prev_exist=False)


@kv.command("update")
@click.argument("key")
@click.argument("value", required=False)
@TTL
@verb
@click.pass_context
def update_cmd(ctx: click.Context, key: str, value: str | None, ttl: int | None) -> None:
    """Update the existing KEY; fail (100: Key not found) if it does not exist."""
    _set(ctx, key, value, ttl, "update", prev_exist=True)


@kv.command("rm")
@click.argument("key")
@click.option("--dir", "dir_", is_flag=True,
              help="KEY may be a directory (fails with 108 unless it is empty).")
@click.option("--recursive", "-r", is_flag=True, help="Remove KEY and every key under it.")
@click.option("--with-value", default=None, metavar="VALUE",
              help="Only remove if the current value is VALUE.")
@click.option("--with-index", type=click.IntRange(min=1), default=None, metavar="INDEX",
              help="Only remove if the key's modified index is INDEX.")
@verb
@click.pass_context
def rm_cmd(ctx: click.Context, key: str, dir_: bool, recursive: bool, with_value: str | None,
           with_index: int | None) -> None:
    """Remove KEY (prints nothing; -o json prints etcd's response)."""
    output = kv_options(ctx).output

    async def action(backend: KVBackend) -> int:
        prev = await backend.delete(key, recursive=recursive, dir=dir_, prev_value=with_value,
                                    prev_index=with_index)
        if output == "json":
            node = KVNode(normalize_key(key), None, prev is None and recursive)
            body: dict[str, Any] = {"action": "delete", "node": node_json(node)}
            if prev is not None:
                body["prevNode"] = node_json(prev)
            click.echo(json.dumps(body))
        return 0

    run(ctx, action)


@kv.command("mkdir")
@click.argument("key")
@click.option("--ttl", type=click.IntRange(min=0), default=None, hidden=True,
              help="Accepted for etcdctl; directories cannot expire.")
@verb
@click.pass_context
def mkdir_cmd(ctx: click.Context, key: str, ttl: int | None) -> None:
    """Make sure KEY can be used as a directory.

    Directories are key prefixes: one exists while a key is under it.  So
    mkdir stores nothing; it succeeds unless KEY is a key (105), and is
    idempotent (etcdctl v2 failed on an existing directory).
    """
    if ttl:
        click.echo("warning: directories are key prefixes and cannot expire; put --ttl on "
                   "the keys in it", err=True)

    async def action(backend: KVBackend) -> int:
        node = await backend.read(key)
        if node is not None and not node.dir:
            raise KVError(NODE_EXIST, node.key,
                          hint=f"{node.key} is a key with a value, not a directory")
        return 0

    run(ctx, action)


@kv.command("ls")
@click.argument("key", default="/")
@click.option("--sort", is_flag=True, help="Accepted for etcdctl; keys are always sorted.")
@click.option("--recursive", "-r", is_flag=True, help="List every key under KEY.")
@click.option("-p", "slash", is_flag=True, help="Append / to directories.")
@click.option("--quorum", is_flag=True, hidden=True)
@verb
@click.pass_context
def ls_cmd(ctx: click.Context, key: str, sort: bool, recursive: bool, slash: bool,
           quorum: bool) -> None:
    """List the keys and directories in KEY (default: the root)."""
    output = kv_options(ctx).output

    async def action(backend: KVBackend) -> int:
        node = await backend.read(key, recursive=recursive)
        if node is None:
            raise KVError(KEY_NOT_FOUND, normalize_key(key))
        if output != "simple":
            print_response("get", node, None, output)
            return 0
        if not node.dir:
            click.echo(node.key)
        for child in node.nodes:
            _print_tree(child, slash)
        return 0

    run(ctx, action)


def _print_change(change: Change, recursive: bool, output: str) -> None:
    if output == "json":
        body: dict[str, Any] = {"action": change.action, "node": {"key": change.key}}
        if change.value is not None:
            body["node"]["value"] = change.value
        if change.revision:
            body["node"]["modifiedIndex"] = change.revision
        if change.prev_value is not None:
            body["prevNode"] = {"key": change.key, "value": change.prev_value}
        click.echo(json.dumps(body))
        return
    if recursive:
        click.echo(f"[{change.action}] {change.key}")
    if change.action == "delete":
        click.echo(f"PrevNode.Value: {change.prev_value or ''}")
    else:
        click.echo(change.value or "")


@kv.command("watch")
@click.argument("key")
@click.option("--forever", "-f", is_flag=True, help="Keep watching (default: exit after one "
                                                   "change).")
@click.option("--recursive", "-r", is_flag=True, help="Watch every key under KEY too.")
@click.option("--after-index", type=click.IntRange(min=0), default=None, metavar="INDEX",
              help="Start after this index (replays history; needs --registry).")
@verb
@click.pass_context
def watch_cmd(ctx: click.Context, key: str, forever: bool, recursive: bool,
              after_index: int | None) -> None:
    """Print changes of KEY as they happen.

    Over the API changes are polled (every 0.25 s; brief changes between two
    polls are missed); with --registry they are streamed, each one.
    """
    output = kv_options(ctx).output

    async def action(backend: KVBackend) -> int:
        async for change in backend.watch(key, recursive=recursive, after=after_index):
            _print_change(change, recursive, output)
            sys.stdout.flush()
            if not forever:
                break
        return 0

    run(ctx, action, interrupt_code=0)


@kv.command("export")
@click.argument("key", default="/")
@verb
@click.pass_context
def export_cmd(ctx: click.Context, key: str) -> None:
    """Print every key under KEY as one JSON object {"key": "value", …}.

    Exporting the root leaves out flotte's own keys (/flotte), which
    `flotte kv import` could not write back; export /flotte to see them.
    """
    top = normalize_key(key)
    managed = Keys().prefix

    async def action(backend: KVBackend) -> int:
        node = await backend.read(top, recursive=True)
        if node is None:
            raise KVError(KEY_NOT_FOUND, top)
        values = flatten(node)
        if not under(top, managed):
            skipped = [k for k in values if under(k, managed)]
            for k in skipped:
                del values[k]
            if skipped:
                click.echo(f"note: left out {len(skipped)} keys under {managed} (flotte's own); "
                           f"`flotte kv export {managed}` shows them", err=True)
        click.echo(json.dumps(dict(sorted(values.items())), indent=2, ensure_ascii=False))
        return 0

    run(ctx, action)


def parse_import(text: str) -> dict[str, str]:
    """``{"key": "value"}`` (what export prints) or an etcd v2 ``{"node": …}`` tree
    (``ls -r -o json``, ``etcdctl -o json``) → ``{key: value}``."""
    try:
        obj = json.loads(text)
    except ValueError as exc:
        raise click.UsageError(f"the input is not JSON: {exc}") from None
    if isinstance(obj, dict) and isinstance(obj.get("node"), dict):
        out: dict[str, str] = {}

        def walk(n: dict[str, Any]) -> None:
            if not n.get("dir") and isinstance(n.get("key"), str):
                out[n["key"]] = str(n.get("value", ""))
            for c in n.get("nodes") or []:
                if isinstance(c, dict):
                    walk(c)

        walk(obj["node"])
        return out
    if isinstance(obj, dict) and all(isinstance(k, str) and isinstance(v, str)
                                     for k, v in obj.items()):
        return dict(obj)
    raise click.UsageError('the input must be a JSON object {"/key": "value", …} (as '
                           "`flotte kv export` prints) or an etcd v2 response with a node")


@kv.command("import")
@click.argument("source", type=click.File("r"), default="-")
@click.option("--no-overwrite", is_flag=True, help="Leave keys that already exist alone.")
@verb
@click.pass_context
def import_cmd(ctx: click.Context, source: Any, no_overwrite: bool) -> None:
    """Write the keys of an export (a file, or stdin: -) back.

    Keys are written one by one (not atomically); each failure is reported
    and the rest still written; the exit code is 4 if any key failed.
    """
    values = parse_import(source.read())

    async def action(backend: KVBackend) -> int:
        written = skipped = failed = 0
        for key, value in sorted(values.items()):
            try:
                await backend.set(key, value, prev_exist=False if no_overwrite else None)
                written += 1
            except KVError as exc:
                if no_overwrite and exc.code == NODE_EXIST:
                    skipped += 1
                    continue
                click.echo(failure_text(exc, backend), err=True)
                failed += 1
        summary = f"imported {written} keys"
        if skipped:
            summary += f", skipped {skipped} existing"
        if failed:
            summary += f", {failed} failed"
        click.echo(summary, err=True)
        return EXIT_SERVER_ERROR if failed else 0

    run(ctx, action)


__all__ = ["KVGroup", "KVOptions", "backend_options", "failure_text", "kv", "kv_options",
           "node_json", "open_backend", "output_option", "parse_import"]
