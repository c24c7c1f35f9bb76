"""The three run modes of ``flotte confd``: onetime, interval and watch.

* **onetime** processes every resource once, in confd's walk order, and
  exits non-zero if any resource file did not load or any resource failed.
* **interval** re-reads ``conf.d`` and processes everything every
  ``interval`` seconds (confd v0.11+); SIGHUP starts a pass at once.
* **watch** renders every resource at start (so dest exists before the first
  change, as confd's first watch call returns at once), then waits for
  changes of the keys.  Unlike confd, which runs one goroutine per resource
  and renders on every event:

  - changes are **coalesced**: a resource is rendered once its keys have
    been quiet for ``debounce`` seconds (at most ``debounce_max`` after the
    first change of a burst), so fifty announcers starting together cause
    one render and one reload, not fifty (confd issue #634);
  - only resources whose keys changed are rendered, and a put that does
    not change a value (a TTL refresh) renders nothing (deis/deis#3505);
  - a batch reads all its keys in one registry transaction and runs each
    distinct reload command once, after all its files are written;
  - failures (backend down, template error, failed check or reload) are
    retried with backoff instead of waiting for the next key change;
  - SIGHUP re-reads ``conf.d`` (confd needs a restart, issue #588);
  - with an explicit interval, a full pass also runs every ``interval``.

SIGINT/SIGTERM are the caller's business: cancel the task running
:meth:`Confd.run`; a command in flight is killed and stage files removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Final

from flotte.discovery.confd.backends import (
    Backend,
    BackendError,
    Change,
    ChangeStream,
    Snapshot,
)
from flotte.discovery.confd.resource import (
    ResourceError,
    TemplateResource,
    load_confdir,
    union_keys,
)
from flotte.discovery.confd.settings import Settings
from flotte.discovery.confd.sync import Outcome, Processor, Result
from flotte.registry import CompactedError

log = logging.getLogger("flotte.confd")

#: Seconds before retrying a failed resource, by consecutive failures.
RETRY_DELAYS: Final = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)

BatchHook = Callable[[list[Result]], None]


class Confd:
    """One ``flotte confd`` process: settings, a backend, and the state between passes."""

    def __init__(self, settings: Settings, backend: Backend, *,
                 processor: Processor | None = None, on_batch: BatchHook | None = None,
                 retry_delays: tuple[float, ...] = RETRY_DELAYS) -> None:
        self.settings = settings
        self.backend = backend
        self.processor = processor or Processor(
            noop=settings.noop, sync_only=settings.sync_only,
            keep_stage_file=settings.keep_stage_file, cmd_timeout=settings.cmd_timeout)
        self.on_batch = on_batch
        self.retry_delays = retry_delays
        self.resources: list[TemplateResource] = []
        self.load_errors: list[ResourceError] = []
        #: batches processed and resources rendered, for tests and benchmarks
        self.batches = 0
        self.renders = 0
        self._pending: set[Path] = set()
        self._seen: dict[Path, Snapshot] = {}
        self._failures: dict[Path, int] = {}
        self._retries: dict[Path, asyncio.TimerHandle] = {}
        self._dirty: set[Path] = set()
        self._burst_start: float | None = None
        self._burst_last = 0.0
        self._wake = asyncio.Event()
        self._restart = False
        self._logged: set[str] = set()

    # -- control --------------------------------------------------------------------
    def hup(self) -> None:
        """Re-read ``conf.d`` now (SIGHUP)."""
        log.info("SIGHUP: re-reading %s", Path(self.settings.confdir) / "conf.d")
        self._restart = True
        self._wake.set()

    @property
    def pending_reloads(self) -> set[Path]:
        """Resources whose reload failed and is still owed."""
        return set(self._pending)

    # -- loading --------------------------------------------------------------------
    def load(self) -> list[TemplateResource]:
        """Load ``conf.d``; bad files are logged and skipped (see :attr:`load_errors`).

        Raises :class:`ResourceError` when there is no ``conf.d`` at all.
        """
        loaded = load_confdir(self.settings.confdir, global_prefix=self.settings.prefix,
                              prefix_join=self.settings.prefix_join)
        self.load_errors = list(loaded.errors)
        for err in loaded.errors:
            log.error("%s (resource skipped)", err)
        for res in loaded.resources:
            for warning in res.warnings:
                self._once(f"{res.name}: {warning}")
        if not loaded.resources and not loaded.errors:
            self._once(f"no template resources (*.toml) in {Path(self.settings.confdir)}/conf.d")
        self.resources = list(loaded.resources)
        return self.resources

    def _once(self, message: str) -> None:
        if message not in self._logged:
            self._logged.add(message)
            log.warning("%s", message)

    # -- one pass -------------------------------------------------------------------
    async def process(self, resources: list[TemplateResource]) -> list[Result]:
        """Fetch the keys of ``resources`` in one read, process each, then reload.

        Every resource of the batch sees the same snapshot, recorded before
        the first await so that changes arriving meanwhile are judged against
        what was really rendered.
        """
        if not resources:
            return []
        started = time.monotonic()
        try:
            snap = await self.backend.fetch(union_keys(resources))
        except BackendError as exc:
            log.error("%s (resources: %s)", exc, ", ".join(r.name for r in resources))
            results = [Result(r, Outcome.FAILED, error=str(exc)) for r in resources]
        else:
            views = [snap.under(r.full_keys) for r in resources]
            for res, values in zip(resources, views, strict=True):
                self._seen[res.path] = Snapshot(values, snap.revision)
            results = []
            for res, values in zip(resources, views, strict=True):
                results.append(await self.processor.process(
                    res, values, reload_pending=res.path in self._pending))
            await self.processor.reload(results)
        for r in results:
            path = r.resource.path
            if r.reload_failed:
                self._pending.add(path)
            elif r.reload is not None or (r.outcome is Outcome.UPDATED
                                          and r.resource.reload_cmd is None):
                self._pending.discard(path)
        self.batches += 1
        self.renders += len(resources)
        log.debug("processed %d resource(s) in %.1f ms", len(resources),
                  (time.monotonic() - started) * 1000)
        if self.on_batch is not None:
            self.on_batch(results)
        return results

    # -- modes ----------------------------------------------------------------------
    async def run(self) -> int:
        """Run in the mode the settings ask for; returns the exit code."""
        mode = self.settings.mode
        try:
            if mode == "onetime":
                return await self.onetime()
            if mode == "watch":
                return await self.watch()
            return await self.interval()
        except ResourceError as exc:
            log.error("%s", exc)
            return 1

    async def onetime(self) -> int:
        """One pass; 1 if any resource failed to load or to process."""
        results = await self.process(self.load())
        return 1 if self.load_errors or any(not r.ok for r in results) else 0

    async def interval(self) -> int:
        """Re-read ``conf.d`` and process everything every ``interval`` seconds."""
        while True:
            self._restart = False
            self._wake.clear()  # before the pass: a SIGHUP during it starts the next one
            await self.process(self.load())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.interval)

    async def watch(self) -> int:
        """Render everything, then re-render what changes (see the module docs)."""
        while True:
            self._restart = False
            resources = self.load()
            keys = union_keys(resources)
            stream: ChangeStream | None = None
            tasks: list[asyncio.Task[None]] = []
            try:
                if keys:
                    base = await self._fetch_until_ok(keys)
                    stream = self.backend.watch(keys, base)
                    tasks.append(asyncio.create_task(self._pump(stream), name="confd-changes"))
                if self.settings.interval_explicit:
                    tasks.append(asyncio.create_task(self._tick(), name="confd-interval"))
                self._mark({r.path for r in resources}, debounce=False)
                while not self._restart:
                    await self._next_batch(resources)
            finally:
                for task in tasks:
                    task.cancel()
                for task in tasks:
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                if stream is not None:
                    await stream.close()
                for handle in self._retries.values():
                    handle.cancel()
                self._retries.clear()

    # -- watch machinery ------------------------------------------------------------
    async def _fetch_until_ok(self, keys: list[str]) -> Snapshot:
        attempt = 0
        while True:
            try:
                return await self.backend.fetch(keys)
            except BackendError as exc:
                delay = self.retry_delays[min(attempt, len(self.retry_delays) - 1)]
                log.error("%s; retrying in %gs", exc, delay)
                attempt += 1
                await asyncio.sleep(delay)

    async def _pump(self, stream: ChangeStream) -> None:
        try:
            async for changes in stream:
                self.note(changes)
        except CompactedError as exc:
            log.warning("watch history is gone (%s); rendering everything again", exc)
        except BackendError as exc:
            log.error("%s; watching again in 2s", exc)
            await asyncio.sleep(2)
        self._restart = True
        self._wake.set()

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.settings.interval)
            self._mark({r.path for r in self.resources}, debounce=False)

    def note(self, changes: Iterable[Change]) -> set[Path]:
        """Mark the resources these changes affect; returns their paths.

        A change already reflected in a resource's last render (an older
        revision, or the value it rendered with) does not count.
        """
        paths: set[Path] = set()
        for change in changes:
            for res in self.resources:
                if res.path in paths or not res.watches(change.key):
                    continue
                seen = self._seen.get(res.path)
                if seen is not None:
                    if change.revision is not None and seen.revision is not None \
                            and change.revision <= seen.revision:
                        continue
                    if seen.values.get(change.key) == change.value:
                        continue
                paths.add(res.path)
        if paths:
            self._mark(paths, debounce=True)
        return paths

    def _mark(self, paths: set[Path], *, debounce: bool) -> None:
        if debounce:
            now = time.monotonic()
            if self._burst_start is None:
                self._burst_start = now
            self._burst_last = now
        self._dirty |= paths
        self._wake.set()

    async def _next_batch(self, resources: list[TemplateResource]) -> None:
        await self._wake.wait()
        self._wake.clear()
        if self._restart:
            return
        while self._burst_start is not None:
            due = min(self._burst_last + self.settings.debounce,
                      self._burst_start + self.settings.debounce_max)
            now = time.monotonic()
            if now >= due:
                break
            await asyncio.sleep(due - now)
        self._burst_start = None
        batch = [r for r in resources if r.path in self._dirty]
        self._dirty.clear()
        results = await self.process(batch)
        self._schedule_retries(results)

    def _schedule_retries(self, results: list[Result]) -> None:
        loop = asyncio.get_running_loop()
        for r in results:
            path = r.resource.path
            if r.ok:
                self._failures.pop(path, None)
                continue
            n = self._failures.get(path, 0)
            self._failures[path] = n + 1
            delay = self.retry_delays[min(n, len(self.retry_delays) - 1)]
            old = self._retries.pop(path, None)
            if old is not None:
                old.cancel()
            self._retries[path] = loop.call_later(delay, self._retry, path)

    def _retry(self, path: Path) -> None:
        self._retries.pop(path, None)
        self._mark({path}, debounce=False)


__all__ = ["RETRY_DELAYS", "Confd"]
