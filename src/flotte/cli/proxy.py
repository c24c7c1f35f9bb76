"""``flotte proxy``: HTTP load balancing over the backends registered under a key prefix.

The Vulcand stand-in of the seed's chapter 10: instead of confd rendering an
nginx upstream list and reloading nginx, one process follows
``/services/apache/*`` and balances over whatever is there.  Runs in the
foreground (a unit's ``ExecStart=``), logs one line per backend change,
drains in-flight requests on SIGTERM.  Behaviour: :mod:`flotte.discovery.proxy`.
"""

from __future__ import annotations

import asyncio
import signal

import click

from flotte.cli.kv import backend_options, open_backend
from flotte.discovery.proxy import Proxy, ProxySettings, parse_listen

POSITIVE = click.FloatRange(min=0, min_open=True)


@click.command("proxy", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--listen", default="0.0.0.0:8181", show_default=True, metavar="HOST:PORT",
              help="Where to accept HTTP requests (:PORT for every interface; 8181 is "
                   "Vulcand's port).")
@click.option("--backends", "prefix", required=True, metavar="PREFIX",
              help="The directory whose keys are the backends, e.g. /services/apache; values "
                   "are host:port, http://host:port or JSON with ipv4_addr/ip/host and port.")
@click.option("--connect-timeout", type=POSITIVE, default=3.0, show_default=True,
              metavar="SECONDS", help="Give up connecting to a backend (then try the next).")
@click.option("--read-timeout", type=click.FloatRange(min=0), default=60.0,
              show_default=True, metavar="SECONDS",
              help="Give up when a backend sends nothing for this long (504); 0: never.")
@click.option("--max-tries", type=click.IntRange(min=1), default=3, show_default=True,
              help="Backends to try per request (retries go to the next backend).")
@click.option("--preserve-host/--backend-host", default=True, show_default=True,
              help="Send the client's Host header to the backend, or the backend's address.")
@click.option("--poll-interval", type=POSITIVE, default=0.25, show_default=True,
              metavar="SECONDS",
              help="Over the API, how often to look for backend changes (with --registry "
                   "changes are streamed instead).")
@click.option("--shutdown-timeout", type=click.FloatRange(min=0), default=10.0,
              show_default=True, metavar="SECONDS",
              help="On SIGTERM, how long requests in flight may take to finish.")
@click.option("--access-log", is_flag=True, help="Log one line per request.")
@backend_options
@click.pass_context
def proxy(ctx: click.Context, listen: str, prefix: str, connect_timeout: float,
          read_timeout: float, max_tries: int, preserve_host: bool, poll_interval: float,
          shutdown_timeout: float, access_log: bool) -> None:
    """Balance HTTP requests over the backends registered under PREFIX (round robin).

    Backends come and go with their keys, without a reload: a new key gets
    traffic at once, a removed one gets no new request and finishes the ones
    it has.  With no backend the answer is a 502 saying so.
    """
    try:
        host, port = parse_listen(listen)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param_hint="'--listen'") from None
    if not prefix.startswith("/"):
        raise click.BadParameter(f"{prefix!r} must be a key prefix such as /services/apache",
                                 ctx, param_hint="'--backends'")
    settings = ProxySettings(prefix, connect_timeout=connect_timeout,
                             read_timeout=read_timeout or None, max_tries=max_tries,
                             preserve_host=preserve_host, access_log=access_log,
                             shutdown_timeout=shutdown_timeout)
    backend = open_backend(ctx, poll_interval=poll_interval)

    def log(line: str) -> None:
        click.echo(line)

    async def main() -> int:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        lb = Proxy(backend, settings, log)
        try:
            try:
                await lb.start(host, port)
            except OSError as exc:
                click.echo(f"Error: cannot listen on {listen}: {exc.strerror or exc}", err=True)
                return 1
            await stop.wait()
            log("stopping: no new connections; letting requests in flight finish")
        finally:
            await lb.close()
            await backend.close()
        log("stopped")
        return 0

    ctx.exit(asyncio.run(main()))


__all__ = ["proxy"]
