"""The hook through which the daemon serves unit journals over the API.

A unit's journal lives on the machine that runs it (the supervisor writes
it there), so the API server cannot read it from the registry.  The daemon
passes a :class:`JournalSource` to :func:`flotte.api.make_app` (or sets
``api_context(app).journal`` later, e.g. once the agent is up); without one,
``GET /v1/units/<name>/journal`` answers 404.  A source on a machine that
does not run the unit may proxy to the one that does (``MachineRecord.api``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol, runtime_checkable


@runtime_checkable
class JournalSource(Protocol):
    """Where journal lines come from."""

    async def open_journal(self, unit: str, *, lines: int | None, follow: bool
                           ) -> AsyncIterator[str] | None:
        """Lines of ``unit``'s journal, oldest first, without trailing newlines.

        ``lines``: only the last N existing lines (``None``: all of them).
        ``follow``: after those, keep yielding new lines until the consumer
        stops iterating (the HTTP client disconnected), as ``journalctl -f``.
        Return ``None`` when this source knows no journal for ``unit``; the
        API then answers 404.  The iterator is closed with ``aclose()`` if it
        has one.
        """
        ...
