"""Processing one template resource: render, stage, compare, check, swap, reload.

The order is confd's (spec ``confd.md`` §3), because users' check and reload
commands were written for it:

1. render the template against the keys (a template error leaves dest alone);
2. compare the wanted file (content, uid, gid, permission bits) with dest:
   nothing differs → nothing happens, no stage file, **no reload**;
3. write a stage file *in dest's directory* (``.<name><random>``, so the
   rename stays on one filesystem), chown + chmod it;
4. run ``check_cmd`` with ``{{.src}}`` = the stage file, before the swap; a
   failure keeps the old dest and skips the reload;
5. ``rename(stage, dest)``: readers see the old file or the new one, never
   half of one (``EBUSY`` on a bind-mounted dest falls back to an in-place
   write, as confd does);
6. ``reload_cmd``.

The decisions are pure functions (:func:`differences`, :func:`decide`) so
they are tested without a filesystem.  Two deliberate departures from
confd, both from its issue tracker (spec §8, §12):

* a failed reload is remembered ("reload pending") and retried on the next
  pass even though dest is then in sync — confd never retries it;
* reload commands are returned to the caller instead of run inline, so a
  batch of resources sharing one ``reload_cmd`` (an nginx with several
  generated files) reloads once, after all its files are in place.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import errno
import hashlib
import logging
import os
import signal
import stat
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Final

from flotte.discovery.confd.resource import DEFAULT_MODE, TemplateResource
from flotte.discovery.template import (
    Hooks,
    Template,
    TemplateError,
    TemplateExecError,
    compile,
    store_view,
)

log = logging.getLogger("flotte.confd")

#: Lines of unified diff logged per file in -noop mode.
NOOP_DIFF_LINES: Final = 200
#: Bytes of a command's output kept for the log.
MAX_OUTPUT: Final = 64 * 1024


# -- pure decisions ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FileState:
    """What matters about a config file: bytes, owner, group, permission bits."""

    content: bytes
    uid: int
    gid: int
    mode: int


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def differences(dest: str, current: FileState | None, want: FileState) -> list[str]:
    """Why ``current`` (``None``: missing) is not ``want``, in confd's log wording.

    An empty list means "in sync": nothing to write and nothing to reload.
    """
    if current is None:
        return [f"{dest} does not exist"]
    out: list[str] = []
    if current.uid != want.uid:
        out.append(f"{dest} has UID {current.uid} should be {want.uid}")
    if current.gid != want.gid:
        out.append(f"{dest} has GID {current.gid} should be {want.gid}")
    if current.mode != want.mode:
        out.append(f"{dest} has mode {stat.filemode(current.mode)[1:]} ({current.mode:04o}) "
                   f"should be {stat.filemode(want.mode)[1:]} ({want.mode:04o})")
    if current.content != want.content:
        out.append(f"{dest} has md5sum {_md5(current.content)} should be "
                   f"{_md5(want.content)}")
    return out


@dataclass(frozen=True, slots=True)
class Actions:
    """What to do with a rendered resource."""

    check: bool
    write: bool
    reload: bool


def decide(changed: bool, *, noop: bool, sync_only: bool, has_check: bool, has_reload: bool,
           reload_pending: bool = False) -> Actions:
    """The step table of confd §3 (sync) with flotte's two changes.

    * unchanged → nothing, except a reload still owed from a failed one;
    * ``noop`` → check (it only reads the stage file; flotte runs it so a
      dry run also validates), never write or reload;
    * ``sync_only`` → write, never check or reload;
    * otherwise → check (if any), write, reload (if any).
    """
    if noop:
        return Actions(check=changed and has_check, write=False, reload=False)
    if sync_only:
        return Actions(check=False, write=changed, reload=False)
    if not changed:
        return Actions(check=False, write=False, reload=has_reload and reload_pending)
    return Actions(check=has_check, write=True, reload=has_reload)


def wanted_mode(resource_mode: int | None, current: FileState | None) -> int:
    """The mode to write: the resource's, else dest's current one, else 0644 (confd)."""
    if resource_mode is not None:
        return resource_mode
    return current.mode if current is not None else DEFAULT_MODE


# -- commands ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CommandResult:
    """``code`` is ``None`` when the command was killed after the timeout."""

    code: int | None
    output: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.code == 0

    def describe(self) -> str:
        if self.code is None:
            return "timed out"
        if self.code < 0:
            try:
                return f"killed by {signal.Signals(-self.code).name}"
            except ValueError:
                return f"killed by signal {-self.code}"
        return f"exit status {self.code}"


async def run_command(command: str, timeout: float) -> CommandResult:
    """``/bin/sh -c command`` with stdout and stderr combined, as confd runs them.

    The command gets its own process group, killed if the shell is still
    running after ``timeout`` seconds (confd waits forever, issue #360) or
    when we are cancelled.  Output goes to an anonymous file rather than a
    pipe: a daemon the command starts (``service nginx restart``) may keep
    its inherited stdout open for ever, and must not keep us waiting.
    """
    start = time.monotonic()
    with tempfile.TemporaryFile() as out:
        proc = await asyncio.create_subprocess_exec(
            "/bin/sh", "-c", command, stdin=asyncio.subprocess.DEVNULL, stdout=out,
            stderr=asyncio.subprocess.STDOUT, start_new_session=True)
        code: int | None
        try:
            code = await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            _killpg(proc.pid)
            await proc.wait()
            code = None
        except asyncio.CancelledError:
            _killpg(proc.pid)
            with contextlib.suppress(ProcessLookupError):
                await asyncio.shield(proc.wait())
            raise
        out.seek(0)
        output = out.read(MAX_OUTPUT)
    return CommandResult(code, output.decode("utf-8", "replace").rstrip(),
                         time.monotonic() - start)


def _killpg(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


# -- files ------------------------------------------------------------------------------


def read_state(path: Path) -> FileState | None:
    """dest as it is now (following symlinks, as confd's os.Stat); ``None`` if missing."""
    try:
        with open(path, "rb") as fh:
            st = os.fstat(fh.fileno())
            content = fh.read()
    except FileNotFoundError:
        return None
    return FileState(content, st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode))


def write_stage(dest: Path, want: FileState) -> tuple[Path, FileState]:
    """A stage file next to ``dest`` holding ``want``; returns it and what it really is.

    chown comes before chmod (a chown may clear set-id bits); a chown this
    process may not make is ignored, as in confd, and shows up in the
    returned state instead.  The content is fsynced so the rename that
    follows can never publish an empty file after a crash.
    """
    fd, name = tempfile.mkstemp(prefix="." + dest.name, dir=dest.parent)
    stage = Path(name)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(want.content)
            fh.flush()
            with contextlib.suppress(PermissionError):
                os.fchown(fh.fileno(), want.uid, want.gid)
            os.fchmod(fh.fileno(), want.mode)
            os.fsync(fh.fileno())
            st = os.fstat(fh.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            stage.unlink()
        raise
    return stage, FileState(want.content, st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode))


def replace(stage: Path, dest: Path, state: FileState) -> None:
    """Atomically put ``stage`` in place of ``dest``.

    A bind-mounted dest (Docker) cannot be renamed over: ``EBUSY``.  Then the
    content is written in place, not atomically, as confd does.
    """
    try:
        os.replace(stage, dest)
    except OSError as exc:
        if exc.errno != errno.EBUSY:
            raise
        with open(dest, "wb") as fh:
            fh.write(state.content)
            with contextlib.suppress(PermissionError):
                os.fchown(fh.fileno(), state.uid, state.gid)
            os.fchmod(fh.fileno(), state.mode)
        stage.unlink()


# -- one resource -----------------------------------------------------------------------


class Outcome(StrEnum):
    IN_SYNC = "in sync"
    UPDATED = "updated"
    NOOP = "noop"
    FAILED = "failed"


@dataclass(slots=True)
class Result:
    """What happened to one resource in one pass.

    ``reload`` is the command still to run (see :meth:`Processor.reload`);
    ``reload_failed`` says it ran and failed (dest is already replaced, so the
    reload stays owed).
    """

    resource: TemplateResource
    outcome: Outcome
    error: str | None = None
    reload: str | None = None
    reload_failed: bool = False
    changes: list[str] = field(default_factory=list)
    rendered_at: float = 0.0
    finished_at: float = 0.0

    @property
    def ok(self) -> bool:
        return self.outcome is not Outcome.FAILED and not self.reload_failed


class ProcessError(Exception):
    """A resource could not be processed; the message names resource, where and why."""


@dataclass(slots=True)
class _Cached:
    key: tuple[int, int, int]
    template: Template


class Processor:
    """Processes resources with fixed run flags; keeps parsed templates between passes.

    Templates are re-read when their file changes (mtime, size or inode), so
    editing a template takes effect at the next render without a restart,
    as in confd, without re-parsing an unchanged 1,000-line file every time.
    """

    def __init__(self, *, noop: bool = False, sync_only: bool = False,
                 keep_stage_file: bool = False, cmd_timeout: float = 60.0,
                 env: Mapping[str, str] | None = None, hooks: Hooks | None = None) -> None:
        self.noop = noop
        self.sync_only = sync_only
        self.keep_stage_file = keep_stage_file
        self.cmd_timeout = cmd_timeout
        self.env = env
        self.hooks = hooks
        self._templates: dict[Path, _Cached] = {}
        self._checks: dict[str, Template] = {}

    # -- rendering ----------------------------------------------------------------
    def template(self, res: TemplateResource) -> Template:
        """The parsed template of ``res``; raises :class:`ProcessError`."""
        shown = _shown(res, res.src)
        try:
            st = os.stat(res.src)
            key = (st.st_mtime_ns, st.st_size, st.st_ino)
            cached = self._templates.get(res.src)
            if cached is not None and cached.key == key:
                return cached.template
            text = res.src.read_bytes().decode("utf-8")
        except FileNotFoundError:
            raise ProcessError(f"{res.name}: Missing template: {shown}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ProcessError(f"{res.name}: cannot read template {shown}: {exc}") from None
        try:
            template = compile(text, res.src.name)
        except TemplateError as exc:
            raise ProcessError(f"{res.name}: {shown}:{exc.line}:{exc.col + 1}: {exc.message}"
                               ) from None
        self._templates[res.src] = _Cached(key, template)
        return template

    def render(self, res: TemplateResource, values: Mapping[str, str]) -> str:
        """Render ``res`` against backend ``values`` (full keys); raises :class:`ProcessError`."""
        template = self.template(res)
        store = store_view(values, res.prefix)
        try:
            return template.render(store, env=self.env, hooks=self.hooks)
        except TemplateExecError as exc:
            where = f"{exc.line}:{exc.col + 1}: " if exc.line else ": "
            at = f"at <{exc.context}>: " if exc.context else ""
            sub = f" (in template {exc.executing!r})" if exc.executing != exc.name else ""
            raise ProcessError(f"{res.name}: {_shown(res, res.src)}:{where}{at}{exc.reason}"
                               f"{sub}") from None

    def check_command(self, res: TemplateResource, stage: Path) -> str:
        """``check_cmd`` with ``{{.src}}`` = ``stage`` (plain text/template, as confd)."""
        assert res.check_cmd is not None
        template = self._checks.get(res.check_cmd)
        try:
            if template is None:
                template = compile(res.check_cmd, "check_cmd", confd=False)
                self._checks[res.check_cmd] = template
            return template.render(data={"src": str(stage)})
        except (TemplateError, TemplateExecError) as exc:
            raise ProcessError(f"{res.name}: check_cmd is not a valid template: {exc}"
                               ) from None

    # -- the pass -----------------------------------------------------------------
    async def process(self, res: TemplateResource, values: Mapping[str, str], *,
                      reload_pending: bool = False) -> Result:
        """One pass over ``res`` with backend ``values``; never raises for user errors.

        The returned :class:`Result` carries the reload command to run, if
        any: call :meth:`reload` with the batch's results.
        """
        result = Result(res, Outcome.IN_SYNC)
        try:
            await self._process(res, values, reload_pending, result)
        except ProcessError as exc:
            result.outcome = Outcome.FAILED
            result.error = str(exc)
            log.error("%s", exc)
        except Exception as exc:  # a bug must not stop the other resources or the watch
            result.outcome = Outcome.FAILED
            result.error = f"{res.name}: internal error: {exc!r}"
            log.exception("%s: internal error while processing (please report)", res.name)
        result.finished_at = time.monotonic()
        return result

    async def _process(self, res: TemplateResource, values: Mapping[str, str],
                       reload_pending: bool, result: Result) -> None:
        text = self.render(res, values)
        result.rendered_at = time.monotonic()
        dest = res.dest
        try:
            current = read_state(dest)
        except OSError as exc:
            log.info("%s: cannot read %s (%s); treating it as changed", res.name, dest, exc)
            current = None
        # surrogateescape: bytes that are not UTF-8 pass through as in Go's strings
        want = FileState(text.encode("utf-8", "surrogateescape"), res.uid, res.gid,
                         wanted_mode(res.mode, current))
        changes = differences(str(dest), current, want)
        stage: Path | None = None
        if changes and not dest.parent.is_dir():
            raise ProcessError(f"{res.name}: cannot write {dest}: directory {dest.parent} "
                               "does not exist")
        try:
            if changes:
                try:
                    stage, staged = write_stage(dest, want)
                except OSError as exc:
                    raise ProcessError(f"{res.name}: cannot create a stage file in "
                                       f"{dest.parent}: {exc.strerror or exc}") from None
                changes = differences(str(dest), current, staged)
                if not changes:
                    log.debug("%s: %s differs only in ownership this process cannot set",
                              res.name, dest)
            result.changes = changes
            actions = decide(bool(changes), noop=self.noop, sync_only=self.sync_only,
                             has_check=res.check_cmd is not None,
                             has_reload=res.reload_cmd is not None,
                             reload_pending=reload_pending)
            for line in changes:
                log.info("%s", line)
            if self.noop and changes:
                _log_diff(res, current, want)
            if actions.check and stage is not None:
                await self._check(res, stage)
            if self.noop:
                if changes:
                    log.info("Noop mode enabled. %s will not be modified", dest)
                    result.outcome = Outcome.NOOP
                return
            if not changes:
                log.debug("Target config %s in sync", dest)
            if actions.write and stage is not None:
                try:
                    replace(stage, dest, want)
                except OSError as exc:
                    raise ProcessError(f"{res.name}: cannot replace {dest}: "
                                       f"{exc.strerror or exc}") from None
                stage = None
                result.outcome = Outcome.UPDATED
                log.info("Target config %s has been updated", dest)
            if actions.reload:
                result.reload = res.reload_cmd
        finally:
            if stage is not None and not self.keep_stage_file:
                with contextlib.suppress(OSError):
                    stage.unlink()

    async def _check(self, res: TemplateResource, stage: Path) -> None:
        command = self.check_command(res, stage)
        log.debug("Running %s", command)
        outcome = await run_command(command, self.cmd_timeout)
        if outcome.ok:
            if outcome.output:
                log.debug("%s", outcome.output)
            return
        detail = f":\n{outcome.output}" if outcome.output else ""
        raise ProcessError(f"{res.name}: Config check failed: {outcome.describe()} "
                           f"({command}); {res.dest} left unchanged{detail}")

    async def reload(self, results: list[Result]) -> None:
        """Run the batch's reload commands, each distinct command once, in order.

        A failure marks every result that asked for that command
        ``reload_failed`` (dest is already in place; the caller keeps the
        reload pending and retries it).
        """
        commands: dict[str, list[Result]] = {}
        for r in results:
            if r.reload:
                commands.setdefault(r.reload, []).append(r)
        for command, asked in commands.items():
            log.debug("Running %s", command)
            outcome = await run_command(command, self.cmd_timeout)
            now = time.monotonic()
            for r in asked:
                r.finished_at = now
            if outcome.ok:
                if outcome.output:
                    log.debug("%s", outcome.output)
                continue
            names = ", ".join(r.resource.name for r in asked)
            detail = f":\n{outcome.output}" if outcome.output else ""
            log.error("%s: reload_cmd failed: %s (%s); the new config is in place, the "
                      "reload will be retried%s", names, outcome.describe(), command, detail)
            for r in asked:
                r.reload_failed = True
                r.error = f"reload_cmd failed: {outcome.describe()}"


def _shown(res: TemplateResource, path: Path) -> str:
    try:
        return str(path.relative_to(res.confdir))
    except ValueError:
        return str(path)


def _log_diff(res: TemplateResource, current: FileState | None, want: FileState) -> None:
    old = current.content if current is not None else b""
    if old == want.content:
        return
    lines = list(difflib.unified_diff(
        old.decode("utf-8", "replace").splitlines(),
        want.content.decode("utf-8", "replace").splitlines(),
        f"{res.dest} (now)", f"{res.dest} (rendered)", lineterm=""))
    for line in lines[:NOOP_DIFF_LINES]:
        log.info("%s", line)
    if len(lines) > NOOP_DIFF_LINES:
        log.info("... %d more diff lines", len(lines) - NOOP_DIFF_LINES)


__all__ = ["Actions", "CommandResult", "FileState", "Outcome", "ProcessError", "Processor",
           "Result", "decide", "differences", "read_state", "replace", "run_command",
           "wanted_mode", "write_stage"]
