"""Shared test plumbing.

System dependencies (systemd for the oracle, later etcd, nginx, podman) are
installed by ``make test``.  A test that needs one asks for it with the
``require_binary`` fixture: when it is missing the test is skipped on a
developer's machine, but under ``CI=true`` it fails, so CI can never pass by
silently skipping what it was meant to check.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import settings

from support import in_ci, require

# CI runs the property tests with a fixed seed so a landing never depends on
# luck; developers get fresh random examples every run.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("dev", deadline=None)


settings.load_profile("ci" if in_ci() else "dev")


@pytest.fixture
def require_binary() -> Callable[[str, str], str]:
    return require
