"""The read-only verbs: the three listings, ``status``, ``journal`` and ``cat``.

Each reads what it needs from the API (the same requests as fleetctl,
fleet.md §5.5: ``list-units`` is ``GET /state`` + ``GET /machines``) and
hands it to the pure formatters in :mod:`flotte.cli.tables` and
:mod:`flotte.cli.statusview`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

from flotte.api.client import ApiError, Client, Machine, Unit
from flotte.cli import tables as T
from flotte.cli import unitargs as A
from flotte.cli.console import Console
from flotte.cli.lifecycle import options_hash, unit_is_global
from flotte.cli.statusview import StatusView, render_status
from flotte.unit.errors import UnitFileError
from flotte.unit.serialize import serialize

#: How long ``status`` waits for a unit's journal before showing the page without it.
JOURNAL_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class ListOptions:
    fields: str | None = None
    full: bool = False
    no_legend: bool = False
    as_json: bool = False


def _description(unit: Unit) -> str:
    """The raw ``[Unit] Description=`` (the last one), as fleetctl's DESC column showed it."""
    values = [o.value for o in unit.options if o.section == "Unit" and o.name == "Description"]
    return values[-1] if values else ""


async def _machines(api: Client) -> dict[str, Machine]:
    return {m.id: m for m in await api.list_machines()}


def _emit(console: Console, text: str) -> None:
    if text:
        console.out(text, nl=False)


async def list_units(api: Client, console: Console, opts: ListOptions,
                     columns: Sequence[str]) -> int:
    states = T.sort_states(await api.list_unit_states())
    need_machines = opts.as_json or "machine" in columns
    machines = await _machines(api) if need_machines else {}
    rows = [T.StateRow(s, machines) for s in states]
    if opts.as_json:
        _emit(console, T.dump_json(T.state_json(r) for r in rows))
    else:
        _emit(console, T.UNITS.render(rows, columns, full=opts.full, no_legend=opts.no_legend))
    return 0


async def list_unit_files(api: Client, console: Console, opts: ListOptions,
                          columns: Sequence[str]) -> int:
    units = T.sort_units(await api.list_units())
    need_machines = opts.as_json or "target" in columns or "tmachine" in columns
    machines = await _machines(api) if need_machines else {}
    rows = [T.UnitFileRow(u, options_hash(u), unit_is_global(u), _description(u), machines)
            for u in units]
    if opts.as_json:
        _emit(console, T.dump_json(T.unit_file_json(r) for r in rows))
    else:
        _emit(console, T.UNIT_FILES.render(rows, columns, full=opts.full,
                                           no_legend=opts.no_legend))
    return 0


async def list_machines(api: Client, console: Console, opts: ListOptions,
                        columns: Sequence[str]) -> int:
    machines = T.sort_machines(await api.list_machines())
    if opts.as_json:
        _emit(console, T.dump_json(T.machine_json(m) for m in machines))
    else:
        _emit(console, T.MACHINES.render(machines, columns, full=opts.full,
                                         no_legend=opts.no_legend))
    return 0


async def _names(api: Client, args: Sequence[str]) -> list[str]:
    """Arguments → unit names; a glob the shell left alone matches registry units."""
    out: list[str] = []
    known: list[str] | None = None
    for arg in args:
        if A.is_pattern(arg) and A.local_file(arg) is None:
            known = known if known is not None else [u.name for u in await api.list_units()]
            hits = A.match_units(arg, known)
            if hits:
                out.extend(h for h in hits if h not in out)
                continue
        name = A.unit_name(arg)
        if name not in out:
            out.append(name)
    return out


async def tail_journal(api: Client, name: str, lines: int,
                       timeout: float = JOURNAL_TIMEOUT) -> tuple[list[str], str | None]:
    """The last ``lines`` journal lines, or what stopped us reading them."""
    got: list[str] = []
    try:
        async with asyncio.timeout(timeout):
            async for line in api.journal(name, lines=lines):
                got.append(line)
    except ApiError as exc:
        if exc.status == 0:
            return got, "the machine running it did not answer"
        return got, f"unavailable ({exc.message})"
    except TimeoutError:
        return got, f"no answer within {timeout:g}s"
    return got, None


async def status(api: Client, console: Console, args: Sequence[str], lines: int) -> int:
    code = 0
    machines: dict[str, Machine] | None = None
    first = True
    for name in await _names(api, args):
        try:
            st = await api.status(name)
        except ApiError as exc:
            if exc.status != 404:
                raise
            console.err(f"Unit {name} does not exist.")
            code = 1
            continue
        unit = await api.get_unit(name)
        reasons: dict[str, str] = {}
        if unit is not None and not st.machine_id and not st.global_ \
                and st.desired_state in ("loaded", "launched"):
            try:
                reasons = (await api.reasons(name)).reasons
            except ApiError:
                reasons = {}
        if machines is None:
            machines = await _machines(api)
        journal: list[str] = []
        journal_error: str | None = None
        if st.state is not None and lines > 0:
            journal, journal_error = await tail_journal(api, name, lines)
        view = StatusView(st, unit, reasons, machines, journal, journal_error)
        if not first:
            console.out()
        first = False
        console.out(render_status(view, now=time.time()), nl=False)
    return code


async def journal(api: Client, console: Console, arg: str, lines: int, follow: bool) -> int:
    name = A.unit_name(arg)
    try:
        await api.status(name)
    except ApiError as exc:
        if exc.status != 404:
            raise
        console.err(f"Unit {name} does not exist.")
        return 1
    async for line in api.journal(name, lines=lines, follow=follow):
        console.out(line)
    return 0


async def cat(api: Client, console: Console, arg: str) -> int:
    name = A.unit_name(arg)
    unit = await api.get_unit(name)
    if unit is None:
        console.err(f"Unit {name} not found")
        return 1
    try:
        text = serialize(unit.options, "go-systemd")
    except UnitFileError as exc:
        console.err(f"Error: unit {name} cannot be written as a unit file: {exc}")
        return 1
    console.out(text, nl=False)
    return 0


__all__ = ["JOURNAL_TIMEOUT", "ListOptions", "cat", "journal", "list_machines",
           "list_unit_files", "list_units", "status", "tail_journal"]
