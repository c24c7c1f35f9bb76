"""Shared test plumbing.

System dependencies (systemd for the oracle, later etcd, nginx, podman) are
installed by ``make test``.  A test that needs one asks for it with the
``require_binary`` fixture: when it is missing the test is skipped on a
developer's machine, but under ``CI=true`` it fails, so CI can never pass by
silently skipping what it was meant to check.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable

import pytest
from hypothesis import settings

# CI runs the property tests with a fixed seed so a landing never depends on
# luck; developers get fresh random examples every run.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("dev", deadline=None)


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("true", "1", "yes")


settings.load_profile("ci" if _in_ci() else "dev")


def require(binary: str, package: str) -> str:
    """Path of ``binary`` (a name on PATH or an absolute path), or skip / fail."""
    path = binary if os.path.isabs(binary) and os.access(binary, os.X_OK) \
        else shutil.which(binary)
    if path:
        return path
    msg = f"{binary} not found: install Debian's '{package}' package (make deps)"
    if _in_ci():
        pytest.fail(msg + " — required under CI=true")
    pytest.skip(msg)


def require_file(path: str, package: str) -> str:
    """``path`` if it exists, else skip (fail under ``CI=true``)."""
    if os.path.exists(path):
        return path
    msg = f"{path} not found: install Debian's '{package}' package (make deps)"
    if _in_ci():
        pytest.fail(msg + " — required under CI=true")
    pytest.skip(msg)


@pytest.fixture
def require_binary() -> Callable[[str, str], str]:
    return require
