"""Where the fleetctl verbs write: results on stdout, messages on stderr, a live line on a TTY.

fleetctl wrote ``Unit X launched on …`` to stdout and its warnings and
``Successfully stopped units […].`` to stderr; scripts rely on the split.
While a verb waits, a one-line progress report is redrawn in place on
stderr, but only when stderr is a terminal (never in pipes, logs or tests),
and it is erased before any other line is printed.
"""

from __future__ import annotations

import shutil
import sys
from typing import TextIO

import click

_ERASE = "\r\x1b[K"


class Console:
    """Output for one command run.  ``progress=None`` enables it when stderr is a TTY."""

    def __init__(self, *, progress: bool | None = None) -> None:
        if progress is None:
            progress = _isatty(sys.stderr)
        self.progress_enabled = progress
        self._shown = ""

    def out(self, text: str = "", *, nl: bool = True) -> None:
        self.clear()
        click.echo(text, nl=nl)

    def err(self, text: str) -> None:
        self.clear()
        click.echo(text, err=True)

    def progress(self, text: str) -> None:
        """Redraw the live line (no-op unless enabled)."""
        if not self.progress_enabled or text == self._shown:
            return
        width = max(20, shutil.get_terminal_size((80, 24)).columns - 1)
        if len(text) > width:
            text = text[:width - 1] + "…"
        stream = sys.stderr
        stream.write(_ERASE + text)
        stream.flush()
        self._shown = text or ""

    def clear(self) -> None:
        if self._shown:
            stream = sys.stderr
            stream.write(_ERASE)
            stream.flush()
            self._shown = ""


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


__all__ = ["Console"]
