"""``flotte announce``: health-check a service and keep its discovery key while it is healthy.

Meant as a sidekick unit's ``ExecStart=`` (foreground, one log line per
state change on stdout, SIGTERM deletes the key and exits 0)::

    [Unit]
    BindsTo=apache@%i.service
    After=apache@%i.service
    [Service]
    ExecStart=/usr/bin/flotte announce --key /services/apache/{ip} \\
        --value '{"host": "{host}", "ipv4_addr": "{ip}", "port": {port}}' \\
        --check http://127.0.0.1:%i/ --port %i
    [X-Fleet]
    MachineOf=apache@%i.service

See :mod:`flotte.discovery.announce` for the behaviour, docs/discovery.md
for the options.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path

import click

from flotte.agent.identity import default_public_ip
from flotte.cli.kv import backend_options, open_backend
from flotte.discovery.announce import (
    AnnounceError,
    Announcer,
    Settings,
    check_port,
    local_values,
    parse_check,
    placeholders,
    read_machine_id,
    render,
)
from flotte.paths import default_state_dir

POSITIVE = click.FloatRange(min=0, min_open=True)


@click.command("announce", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--key", required=True, metavar="KEY",
              help="The key to keep, e.g. /services/apache/{ip} (placeholders as in --value).")
@click.option("--value", default="{ip}:{port}", show_default=True, metavar="TEMPLATE",
              help="The value; {host}, {ip}, {port}, {machine_id} are replaced, {{ip}} is a "
                   "literal {ip}, every other brace is literal (JSON needs no escaping).")
@click.option("--ttl", type=click.IntRange(min=1), default=30, show_default=True,
              metavar="SECONDS", help="The key vanishes this long after the last refresh "
                                      "(if flotte announce dies without deleting it).")
@click.option("--interval", type=POSITIVE, default=None, metavar="SECONDS",
              help="Refresh the key this often [default: ttl/3].")
@click.option("--check-interval", type=POSITIVE, default=None, metavar="SECONDS",
              help="Run the check this often; an unhealthy result deletes the key at once "
                   "[default: --interval].")
@click.option("--check", "check_spec", default=None, metavar="CHECK",
              help="http://host:port/path (healthy: status < 400, like curl -f), "
                   "tcp://host:port (connects), or exec:COMMAND (exit 0, run by /bin/sh). "
                   "Without it the service is always taken as healthy.")
@click.option("--check-timeout", type=POSITIVE, default=None, metavar="SECONDS",
              help="A check taking longer fails [default: 5, at most --check-interval].")
@click.option("--ip", envvar=["FLOTTE_PUBLIC_IP", "COREOS_PUBLIC_IPV4"], default=None,
              help="{ip} [env FLOTTE_PUBLIC_IP, COREOS_PUBLIC_IPV4; default: the address of "
                   "the default route].")
@click.option("--port", type=click.IntRange(1, 65535), default=None,
              help="{port} [default: the port of --check].")
@click.option("--hostname", default=None, help="{host} [default: this host's name].")
@click.option("--machine-id", envvar="FLOTTE_MACHINE_ID", default=None,
              help="{machine_id} [env FLOTTE_MACHINE_ID; default: the agent's, from the "
                   "state directory, else /etc/machine-id].")
@click.option("--state-dir", envvar="FLOTTE_STATE_DIR", default=None,
              type=click.Path(file_okay=False, path_type=Path),
              help="Where the agent keeps its machine id [default: flotte's state dir].")
@backend_options
@click.pass_context
def announce(ctx: click.Context, key: str, value: str, ttl: int, interval: float | None,
             check_interval: float | None, check_spec: str | None,
             check_timeout: float | None, ip: str | None, port: int | None,
             hostname: str | None, machine_id: str | None, state_dir: Path | None) -> None:
    """Keep KEY = VALUE (with a TTL) in the registry while the service is healthy.

    Healthy: the key is set, then refreshed every --interval.  Unhealthy:
    the key is deleted at once.  SIGTERM/SIGINT: the key is deleted, exit 0.
    Registry unreachable: logged once, retried, never fatal.
    """
    refresh = interval if interval is not None else ttl / 3
    every = check_interval if check_interval is not None else refresh
    timeout = check_timeout if check_timeout is not None else min(5.0, every)
    try:
        used = placeholders(key) | placeholders(value) | placeholders(check_spec or "")
        values = local_values(
            ip=(ip or default_public_ip()) if "ip" in used else ip,
            port=port, hostname=hostname,
            machine_id=machine_id or (read_machine_id(state_dir or default_state_dir())
                                      if "machine_id" in used else None))
        spec = render(check_spec, values) if check_spec else None
        if "port" not in values and check_port(spec) is not None:
            values["port"] = str(check_port(spec))
        settings = Settings(render(key, values), render(value, values), ttl, refresh, every)
        settings.validate()
        check = parse_check(spec, timeout)
    except AnnounceError as exc:
        raise click.UsageError(str(exc), ctx) from None
    backend = open_backend(ctx)

    def log(line: str) -> None:
        click.echo(line)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        log(f"announcing {settings.key} = {settings.value} on {backend.description}: "
            f"{check.description} every {every:g}s, refresh every {refresh:g}s, "
            f"ttl {ttl}s")
        try:
            await Announcer(backend, settings, check, log).run(stop)
        finally:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5):
                    await backend.close()

    asyncio.run(main())
    ctx.exit(0)


__all__ = ["announce"]
