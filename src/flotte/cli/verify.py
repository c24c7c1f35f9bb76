"""``flotte verify``: load unit files the way systemd would and report problems.

Like ``systemd-analyze verify``, each file is loaded as the unit named by its
file name (a symlink ``apache@8080.service`` → ``apache@.service`` loads the
instance, as fleet users lay units out).  Output is one line per problem,
``FILE:LINE: error|warning: MESSAGE``, followed by the fix where there is one.
``--json`` prints the stable machine-readable form documented in
docs/verify.md.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import click

from flotte.unit import Severity, Unit, load_text
from flotte.unit import names as N
from flotte.unit.errors import Diagnostic
from flotte.unit.loader import ERROR
from flotte.unit.parser import DIALECTS
from flotte.unit.specifiers import SpecifierContext

#: Refuse to read more than this: no unit file is this big, and reading a
#: multi-gigabyte file by mistake should not exhaust memory.
MAX_FILE_BYTES = 64 * 1024 * 1024
#: Instance used to check a template file (systemd-analyze verify uses the same).
TEST_INSTANCE = "test_instance"


def _read(path: str) -> tuple[bytes | None, str | None]:
    try:
        if path == "-":
            data = sys.stdin.buffer.read(MAX_FILE_BYTES + 1)
        else:
            if os.path.isdir(path):
                return None, "is a directory, not a unit file"
            with open(path, "rb") as fh:
                data = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        return None, f"cannot read: {exc.strerror or exc}"
    if len(data) > MAX_FILE_BYTES:
        return None, f"file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB; not a unit file"
    return data, None


def load_file(path: str, *, name: str | None = None, dialect: str = "systemd",
              ctx: SpecifierContext | None = None) -> Unit:
    """Load the unit file at ``path`` as ``name`` (default: its file name)."""
    unit_name = name or os.path.basename(path.rstrip("/")) or path
    data, problem = _read(path)
    if data is None:
        unit = Unit(name=unit_name, path=path, load_state=ERROR)
        unit.diagnostics.append(Diagnostic(Severity.ERROR, problem or "cannot read", None,
                                           file=path))
        return unit
    if N.is_valid(unit_name, N.NameFlags.TEMPLATE):
        # A template cannot run by itself; like systemd-analyze verify, check
        # it as an instance so that %i and dependencies on siblings resolve.
        unit_name = N.replace_instance(unit_name, TEST_INSTANCE)
    return load_text(data, unit_name, ctx=ctx, dialect=dialect,  # type: ignore[arg-type]
                     path=path)


def unit_report(path: str, unit: Unit) -> dict[str, Any]:
    """The ``--json`` object for one file (a stable interface; see docs/verify.md)."""
    exec_keys: dict[str, list[dict[str, object]]] = {}
    for (section, key), value in unit.settings.items():
        if section == "Service" and key.startswith("Exec") and isinstance(value, list):
            exec_keys[key] = [c.as_dict() for c in value]
    return {
        "file": path,
        "unit": unit.name,
        "ok": unit.ok,
        "load_state": unit.load_state,
        "errors": [d.as_dict() for d in unit.errors],
        "warnings": [d.as_dict() for d in unit.warnings],
        "options": [[o.section, o.key, o.value] for o in unit.options],
        "exec": exec_keys,
        "x_fleet": unit.x_fleet.as_dict(),
    }


def render(path: str, d: Diagnostic) -> str:
    where = f"{path}:{d.line}" if d.line is not None else path
    if d.file and d.file != path:
        where = f"{d.file}:{d.line}" if d.line is not None else d.file
    text = f"{where}: {d.severity.value}: {d.message}"
    if d.fix:
        text += f"\n{' ' * 4}fix: {d.fix}"
    return text


@click.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=True))
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array, one object per file.")
@click.option("--name", "unit_name", default=None,
              help="Load the (single) file as this unit name instead of its file name.")
@click.option("--dialect", type=click.Choice(DIALECTS), default="systemd", show_default=True,
              help="systemd's own parser, or go-systemd's (what fleet clients used).")
@click.option("--host-specifiers/--no-host-specifiers", default=False,
              help="Expand %H, %m, %b … from this host instead of neutral placeholders.")
def verify(files: tuple[str, ...], as_json: bool, unit_name: str | None, dialect: str,
           host_specifiers: bool) -> None:
    """Check unit FILES as systemd would load them.  Exit 1 if any fails to load.

    Each file is loaded as the unit named by its file name; use '-' for
    standard input (with --name).
    """
    if unit_name and len(files) != 1:
        raise click.UsageError("--name needs exactly one FILE")
    if "-" in files and not unit_name:
        raise click.UsageError("reading from '-' needs --name UNIT")
    ctx = SpecifierContext.from_host() if host_specifiers else SpecifierContext()
    reports = []
    failed = False
    for path in files:
        unit = load_file(path, name=unit_name, dialect=dialect, ctx=ctx)
        failed |= not unit.ok
        if as_json:
            reports.append(unit_report(path, unit))
            continue
        for d in unit.diagnostics:
            click.echo(render(path, d))
        if unit.ok:
            continue
        if not any(d.severity is Severity.ERROR for d in unit.diagnostics):
            click.echo(f"{path}: error: unit {unit.name} is {unit.load_state}")
    if as_json:
        click.echo(json.dumps(reports, indent=2, ensure_ascii=False))
    sys.exit(1 if failed else 0)
