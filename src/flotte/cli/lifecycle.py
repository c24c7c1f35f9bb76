"""What ``submit``, ``load``, ``start``, ``stop``, ``unload``, ``destroy`` and ``restart`` do.

Request for request and message for message these follow fleetctl v1.0
(fleet.md §2.2, §4.2, §5.5): each verb first makes sure the units exist
(``submit``: from the local file, or for an instance from its template in
the registry or next to the argument), then sets the desired state, then
waits (unless ``--no-block``) and prints ``Unit X launched on M``.

Where fleetctl was plainly wrong this does better, and docs/cli.md lists
each change: a unit that cannot be placed ends the wait with the engine's
reasons instead of hanging; ``destroy`` waits for the unit to stop unless
``--no-block`` (fleetctl had that inverted); ``restart`` waits for
``loaded`` and then ``launched`` (fleetctl waited for ``launched`` twice);
``load`` never stops a launched unit; a failing unit does not stop the
verb from handling the others; templates are refused before anything is
changed (fleet #1236).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from flotte.api.client import ApiError, Client, Unit
from flotte.api.validation import is_global
from flotte.cli import unitargs as A
from flotte.cli.console import Console
from flotte.cli.waiting import GONE, Tracker, Waiter
from flotte.engine.keyspace import UnitRecord
from flotte.unit.errors import UnitFileError
from flotte.unit.serialize import unit_hash

#: fleetctl's ``checkReplaceUnitState``: desired states from which ``--replace`` may act.
REPLACE_FROM: dict[str, frozenset[str]] = {
    "submit": frozenset({"inactive"}),
    "load": frozenset({"inactive", "loaded"}),
    "start": frozenset({"inactive", "loaded", "launched"}),
}


@dataclass(frozen=True, slots=True)
class Flags:
    replace: bool = False
    no_block: bool = False
    attempts: int = 0


def unit_is_global(unit: Unit) -> bool:
    return is_global(UnitRecord(unit.name, tuple(unit.options)))


def options_hash(unit: Unit) -> str:
    try:
        return unit_hash(unit.options)
    except UnitFileError:
        return ""


def go_list(names: Iterable[str]) -> str:
    """Go's ``%v`` of a ``[]string``: ``[a b c]``."""
    return "[" + " ".join(names) + "]"


class Lifecycle:
    """The unit verbs over one API client."""

    def __init__(self, api: Client, console: Console, flags: Flags = Flags()) -> None:
        self.api = api
        self.console = console
        self.flags = flags
        self.waiter = Waiter(api, console, attempts=flags.attempts)
        self._warned: set[str] = set()

    # -- helpers -------------------------------------------------------------------------
    def _warn_local(self, local: A.LocalUnit) -> None:
        """Print a file's warnings once per run, however many links point to it."""
        if local.real_path in self._warned:
            return
        self._warned.add(local.real_path)
        for w in local.warnings:
            self.console.err(f"WARNING: {w}")

    def _read(self, path: str, name: str, *, warn: bool = True) -> A.LocalUnit:
        local = A.read_unit_file(path, name)
        if warn:
            self._warn_local(local)
        return local

    async def _source(self, arg: str, name: str) -> A.Options:
        """The options of a new unit: local file, registry template, local template."""
        path = A.local_file(arg)
        if path is not None:
            return self._read(path, name).options
        template = A.template_of(name)
        if template is None:
            raise A.SourceError(f"unable to find Unit({name}) in Registry or on filesystem")
        registered = await self.api.get_unit(template)
        if registered is not None:
            return tuple(registered.options)
        tpath = A.local_template(arg, name)
        if tpath is not None:
            return self._read(tpath, name).options
        raise A.SourceError(f"unable to find Unit({name}) or its template {template} in "
                            "Registry or on filesystem")

    async def _maybe_replace(self, arg: str, name: str, existing: Unit, command: str) -> bool:
        """An existing unit: compare with the local file; replace with ``--replace``.

        Returns whether the unit was (re)created.
        """
        path = A.local_file(arg)
        source = path or A.local_template(arg, name)
        try:  # warnings only if it gets submitted (fleetctl warned when creating)
            local = self._read(source, name, warn=False) if source else None
        except A.SourceError:
            if self.flags.replace:
                raise
            return False
        if local is None:
            if self.flags.replace:
                raise A.SourceError(f"unable to find local Unit({A.with_default_type(arg)}) "
                                    "or its template")
            return False
        if local.hash == options_hash(existing):
            if self.flags.replace:
                self.console.out(f"Found same Unit({name}) in Registry, nothing to do")
            return False
        if not self.flags.replace:
            kind = "local unit file" if path else "local template unit file"
            self.console.err(f"WARNING: Unit {name} in registry differs from {kind} "
                             f"{A.with_default_type(arg)}. Add --replace to override.")
            return False
        if existing.desired_state not in REPLACE_FROM[command]:
            self.console.err(f"Warning: can not replace Unit({name}) in state "
                             f"'{existing.desired_state}', use the appropriate command")
            return False
        self._warn_local(local)
        await self.api.create_unit(name, local.options)
        return True

    async def _known(self) -> dict[str, Unit]:
        return {u.name: u for u in await self.api.list_units()}

    # -- submit (the first step of load and start) ----------------------------------------
    async def create(self, args: Sequence[str], command: str) -> tuple[list[str], bool]:
        """Make sure every argument's unit exists.  Returns (unit names, all went well).

        New and replaced units are waited for until they read back
        ``inactive`` (``Unit X inactive``), as fleetctl did.
        """
        names: list[str] = []
        created: list[str] = []
        ok = True
        known: dict[str, Unit] | None = None
        for arg in args:
            if command != "submit" and A.is_pattern(arg) and A.local_file(arg) is None:
                known = known if known is not None else await self._known()
                hits = [h for h in A.match_units(arg, known) if not A.is_template(h)]
                if hits:
                    names.extend(h for h in hits if h not in names)
                    continue
            name = A.unit_name(arg)
            problem = A.check_name(name)
            if problem is not None:
                self.console.err(f"Error creating units: {problem}")
                ok = False
                continue
            if name in names:
                continue
            names.append(name)
            try:
                existing = await self.api.get_unit(name)
                if existing is None:
                    await self.api.create_unit(name, await self._source(arg, name))
                    created.append(name)
                elif await self._maybe_replace(arg, name, existing, command):
                    created.append(name)
            except A.SourceError as exc:
                self.console.err(f"Error creating units: {exc}")
                ok = False
            except ApiError as exc:
                if exc.status == 0:
                    raise
                self.console.err(f"Error creating units: {name}: {exc.message}")
                ok = False
        if created and not self.flags.no_block:
            ok &= await self.waiter.wait([Tracker(n, "inactive") for n in created])
        return names, ok

    def _refuse_templates(self, args: Sequence[str], verb: str) -> bool:
        templates = [A.unit_name(a) for a in args
                     if not A.is_pattern(a) and A.is_template(A.unit_name(a))]
        for t in templates:
            self.console.err(f"Error: cannot {verb} template {t}: templates are only "
                             f"submitted; {verb} an instance such as {A.instance_example(t)}")
        return bool(templates)

    async def submit(self, args: Sequence[str]) -> int:
        _, ok = await self.create(args, "submit")
        return 0 if ok else 1

    # -- load / start ------------------------------------------------------------------------
    async def load(self, args: Sequence[str]) -> int:
        return await self._activate(args, "load", "loaded")

    async def start(self, args: Sequence[str]) -> int:
        return await self._activate(args, "start", "launched")

    async def _activate(self, args: Sequence[str], verb: str, target: str) -> int:
        if self._refuse_templates(args, verb):
            return 1
        names, ok = await self.create(args, verb)
        if not ok:
            return 1
        known = await self._known()
        waiting: list[str] = []
        failed = False
        for name in names:
            unit = known.get(name)
            if unit is None:
                self.console.err(f"Error: unit {name} was destroyed by another client")
                failed = True
                continue
            if A.is_template(name):
                self.console.err(f"Error: cannot {verb} template {name}; {verb} an instance "
                                 f"such as {A.instance_example(name)}")
                failed = True
                continue
            if target == "loaded" and unit.desired_state == "launched":
                self.console.err(f"Unit {name} is launched; load leaves it running (use stop "
                                 "to keep it only loaded)")
                continue
            changed = unit.desired_state != target
            if changed:
                await self.api.set_desired_state(name, target)
            if unit_is_global(unit):
                if changed:
                    self.console.out(f"Triggered global unit {name} {verb}")
                continue
            waiting.append(name)
        if self.flags.no_block:
            for name in waiting:
                self.console.out(f"Triggered unit {name} {verb}")
            return 1 if failed else 0
        trackers = [Tracker(n, target, active=target == "launched") for n in waiting]
        ok = await self.waiter.wait(trackers)
        return 0 if ok and not failed else 1

    # -- stop / unload -----------------------------------------------------------------------
    async def _existing(self, args: Sequence[str]) -> tuple[dict[str, Unit], list[str]]:
        known = await self._known()
        found, missing = A.resolve_existing(args, known)
        for name in missing:
            self.console.err(f"Unit {name} not found in registry")
        return known, found

    async def stop(self, args: Sequence[str]) -> int:
        known, found = await self._existing(args)
        stopping: list[str] = []
        failed = False
        for name in found:
            unit = known[name]
            if unit_is_global(unit):
                if unit.desired_state != "loaded":
                    await self.api.set_desired_state(name, "loaded")
                self.console.out(f"Triggered global unit {name} stop")
                continue
            current = unit.current_state or "inactive"
            if current == "inactive" and unit.desired_state == "inactive":
                self.console.err(f"Unable to stop unit {name} in state inactive")
                failed = True
                continue
            if current == "loaded" and unit.desired_state == "loaded":
                continue
            if unit.desired_state != "loaded":
                await self.api.set_desired_state(name, "loaded")
            stopping.append(name)
        ok = await self._wait_or_trigger(stopping, "loaded", "stop")
        if ok:
            self.console.err(f"Successfully stopped units {go_list(stopping)}.")
        else:
            self.console.err(f"Failed to stop units {go_list(stopping)}. exit == 1.")
        return 0 if ok and not failed else 1

    async def unload(self, args: Sequence[str]) -> int:
        known, found = await self._existing(args)
        unloading: list[str] = []
        for name in found:
            unit = known[name]
            if unit_is_global(unit):
                if unit.desired_state != "inactive":
                    await self.api.set_desired_state(name, "inactive")
                self.console.out(f"Triggered global unit {name} unload")
                continue
            if (unit.current_state or "inactive") == "inactive" \
                    and unit.desired_state == "inactive":
                continue
            if unit.desired_state != "inactive":
                await self.api.set_desired_state(name, "inactive")
            unloading.append(name)
        ok = await self._wait_or_trigger(unloading, "inactive", "unload")
        if ok:
            self.console.err(f"Successfully unloaded units {go_list(unloading)}.")
        else:
            self.console.err(f"Failed to unload units {go_list(unloading)}. exit == 1.")
        return 0 if ok else 1

    async def _wait_or_trigger(self, names: Sequence[str], target: str, verb: str) -> bool:
        if self.flags.no_block:
            for name in names:
                self.console.out(f"Triggered unit {name} {verb}")
            return True
        return await self.waiter.wait([Tracker(n, target) for n in names])

    # -- destroy --------------------------------------------------------------------------------
    async def destroy(self, args: Sequence[str]) -> int:
        known = await self._known()
        found, missing = A.resolve_existing(args, known)
        if not found:
            self.console.err("Units not found in registry")
            return 0
        for name in missing:
            self.console.err(f"Unit {name} not found in registry")
        destroyed: list[str] = []
        code = 0
        for name in found:
            try:
                await self.api.destroy_unit(name)
            except ApiError as exc:
                if exc.status == 404:
                    continue
                if exc.status == 0:
                    raise
                self.console.err(f"Error destroying units: {name}: {exc.message}")
                code = 1
                continue
            self.console.out(f"Destroyed {name}")
            destroyed.append(name)
        if destroyed and not self.flags.no_block \
                and not await self.waiter.wait([Tracker(n, GONE) for n in destroyed]):
            code = 1
        return code

    # -- restart --------------------------------------------------------------------------------
    async def restart(self, args: Sequence[str]) -> int:
        """Stop (wait for ``loaded``) then start (wait for ``launched`` and active), one unit
        after the other, so a set of instances restarts rolling, never all at once."""
        known = await self._known()
        found, missing = A.resolve_existing(args, known)
        failed = bool(missing)
        for name in missing:
            self.console.err(f"Unit {name} not found in registry")
        for name in found:
            unit = known[name]
            if unit_is_global(unit):
                self.console.err(f"Unable to restart global unit {name}: flotte cannot tell "
                                 "when every machine has stopped it; run stop, then start")
                failed = True
                continue
            current = unit.current_state or "inactive"
            if current == "inactive":
                self.console.err(f"Unable to restart unit {name} in state inactive")
                failed = True
                continue
            if current == "launched":
                await self.api.set_desired_state(name, "loaded")
                if not await self.waiter.wait([Tracker(name, "loaded")]):
                    failed = True
                    continue
            await self.api.set_desired_state(name, "launched")
            if not await self.waiter.wait([Tracker(name, "launched", active=True)]):
                failed = True
        return 1 if failed else 0


__all__ = ["REPLACE_FROM", "Flags", "Lifecycle", "go_list", "options_hash", "unit_is_global"]
