"""The agent's per-unit transitions (fleet.md §1.5), without processes."""

from __future__ import annotations

import pytest

from flotte.agent.plan import Actual, Wanted, steps


@pytest.mark.parametrize(("wanted", "actual", "expected"), [
    (None, None, []),
    (None, Actual("h", True, True), ["unload"]),
    (Wanted("h", "loaded"), None, ["load"]),
    (Wanted("h", "launched"), None, ["load", "start"]),
    (Wanted("h2", "launched"), Actual("h", True, True), ["unload", "load", "start"]),
    (Wanted("h2", "loaded"), Actual("h", False, False), ["unload", "load"]),
    (Wanted("h", "launched"), Actual("h", False, False), ["start"]),
    (Wanted("h", "launched"), Actual("h", True, True), []),
    # a launched unit that crashed and stayed failed is not restarted by the agent
    (Wanted("h", "launched"), Actual("h", False, True), []),
    (Wanted("h", "loaded"), Actual("h", True, True), ["stop"]),
    (Wanted("h", "loaded"), Actual("h", False, False), []),
    # loaded, running because a launched unit Requires= it (a sidekick): left alone
    (Wanted("h", "loaded"), Actual("h", True, False), []),
])
def test_steps(wanted: Wanted | None, actual: Actual | None, expected: list[str]) -> None:
    assert steps(wanted, actual) == expected
